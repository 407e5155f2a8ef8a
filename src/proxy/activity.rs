//! Recognising what a request does, before it is decided.
//!
//! The pure classifier ([`crate::policy::activity`]) reads the method, the
//! host, the path, the query and the headers. Only where one of the
//! platform's signatures names its operation in the body does the shell
//! peek: it reads frames until it holds [`PEEK_LIMIT`] bytes or the body
//! ends, never more, and the bytes it read are sent on first, unchanged
//! ([`PeekedBody`]). A client that stalls during the peek is timed out like
//! any stalled body.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::request::Parts;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;

use super::body::ClientFault;
use crate::policy::activity::{Body as Seen, Classified, Classify, Seen as Request, PEEK_LIMIT};
use crate::policy::{Host, Policy};

/// A request body whose first bytes were read to classify it, then sent on.
pub struct PeekedBody<B> {
    /// Frames read during the peek, in order, not yet passed on.
    head: std::collections::VecDeque<Frame<Bytes>>,
    /// The rest of the body; `None` once it ended during the peek.
    rest: Option<B>,
}

impl<B> PeekedBody<B> {
    /// A body that was not peeked at.
    pub fn whole(body: B) -> Self {
        Self {
            head: Default::default(),
            rest: Some(body),
        }
    }
}

impl<B> Body for PeekedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        if let Some(f) = self.head.pop_front() {
            return Poll::Ready(Some(Ok(f)));
        }
        match self.rest.as_mut() {
            Some(b) => Pin::new(b).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.head.is_empty() && self.rest.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        let head: u64 = self
            .head
            .iter()
            .filter_map(|f| f.data_ref().map(|d| d.len() as u64))
            .sum();
        let rest = self
            .rest
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), |b| b.size_hint());
        let mut hint = SizeHint::new();
        // Upper first: a lower bound above the current upper one panics.
        if let Some(u) = rest.upper() {
            hint.set_upper(u.saturating_add(head));
        }
        hint.set_lower(rest.lower().saturating_add(head));
        hint
    }
}

/// The activity of a request about to be decided, and its body (peeked at
/// only where a signature needs it). `idle` bounds each wait for the client.
pub async fn recognise<B>(
    policy: &Policy,
    host: &Host,
    parts: &Parts,
    body: B,
    idle: Duration,
) -> Result<(Classified, PeekedBody<B>), ClientFault>
where
    B: Body<Data = Bytes> + Unpin,
{
    let platform = host
        .name()
        .and_then(|n| policy.domains.lookup(n))
        .map(|(_, hit)| hit.platform);
    let mut seen = Request {
        method: &parts.method,
        host: host.name().unwrap_or(""),
        path: parts.uri.path(),
        query: parts.uri.query(),
        headers: &parts.headers,
        body: if body.is_end_stream() {
            Seen::None
        } else {
            Seen::NotYet
        },
    };
    match policy.activities.classify(platform, &seen) {
        Classify::Done(c) => Ok((c, PeekedBody::whole(body))),
        Classify::NeedBody => {
            // Boxed: most requests never wait here, and the peek's state
            // would otherwise enlarge every request's future.
            let peeked = Box::pin(peek(body, idle)).await?;
            let bytes = peeked.bytes();
            let n = bytes.len().min(PEEK_LIMIT);
            seen.body = Seen::Peeked {
                bytes: &bytes[..n],
                complete: peeked.body.rest.is_none(),
            };
            let c = match policy.activities.classify(platform, &seen) {
                Classify::Done(c) => c,
                // A peeked body is never asked for again; be safe anyway.
                Classify::NeedBody => Classified {
                    activity: crate::policy::activity::Activity::Unknown,
                    signature: None,
                },
            };
            Ok((c, peeked.body))
        }
    }
}

struct Peeked<B> {
    body: PeekedBody<B>,
}

impl<B> Peeked<B> {
    /// The data read, joined (at most one frame past the limit).
    fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for f in &self.body.head {
            if let Some(d) = f.data_ref() {
                out.extend_from_slice(d);
            }
        }
        out
    }
}

/// Reads frames until [`PEEK_LIMIT`] bytes or the end of the body.
async fn peek<B>(mut body: B, idle: Duration) -> Result<Peeked<B>, ClientFault>
where
    B: Body<Data = Bytes> + Unpin,
{
    let mut head = std::collections::VecDeque::new();
    let mut held = 0usize;
    while held < PEEK_LIMIT {
        match tokio::time::timeout(idle, body.frame()).await {
            Err(_) => return Err(ClientFault::Timeout),
            Ok(None) => {
                return Ok(Peeked {
                    body: PeekedBody { head, rest: None },
                })
            }
            Ok(Some(Err(_))) => return Err(ClientFault::Protocol),
            Ok(Some(Ok(frame))) => {
                held += frame.data_ref().map_or(0, |d| d.len());
                head.push_back(frame);
            }
        }
    }
    Ok(Peeked {
        body: PeekedBody {
            head,
            rest: Some(body),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};

    fn chunks(
        n: usize,
        size: usize,
    ) -> impl Body<Data = Bytes, Error = std::convert::Infallible> + Unpin {
        let frames: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = (0..n)
            .map(|i| Ok(Frame::data(Bytes::from(vec![b'a' + (i % 26) as u8; size]))))
            .collect();
        StreamBody::new(futures_util::stream::iter(frames))
    }

    #[tokio::test]
    async fn a_peek_stops_at_the_limit_and_the_body_passes_on_unchanged() {
        // 40 chunks of 4 KiB = 160 KiB: the peek holds 64 KiB, no more.
        let peeked = peek(chunks(40, 4096), Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(peeked.bytes().len(), PEEK_LIMIT);
        assert!(peeked.body.rest.is_some());
        let all = peeked.body.collect().await.unwrap().to_bytes();
        let want = chunks(40, 4096).collect().await.unwrap().to_bytes();
        assert_eq!(all, want);
    }

    #[tokio::test]
    async fn a_small_body_is_read_whole_and_ends() {
        let peeked = peek(chunks(3, 10), Duration::from_secs(5)).await.unwrap();
        assert!(peeked.body.rest.is_none());
        assert!(!peeked.body.is_end_stream());
        let all = peeked.body.collect().await.unwrap().to_bytes();
        assert_eq!(all.len(), 30);
    }
}
