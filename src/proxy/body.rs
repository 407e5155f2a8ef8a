//! Streaming bodies that count bytes, and the guard that records a request
//! exactly once.
//!
//! Bodies are never buffered: [`Counted`] passes each frame through as it
//! arrives and adds its length to a counter. [`Pending`] holds the request's
//! `Event` until the exchange is over, whichever way it ends: the response
//! body finished, the client went away (the body is dropped), or an error
//! response was sent. Its `Drop` is the one logging phase.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use crate::accesslog::Recorder;
use crate::event::Event;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// An `Event` waiting for its exchange to end.
pub struct Pending {
    event: Option<Event>,
    started: Instant,
    /// Bytes client -> upstream, counted by the request body wrapper.
    pub up: Arc<AtomicU64>,
    /// Bytes upstream -> client.
    pub down: Arc<AtomicU64>,
    recorder: Recorder,
    completed: bool,
}

impl Pending {
    pub fn new(event: Event, started: Instant, recorder: Recorder) -> Self {
        Self {
            event: Some(event),
            started,
            up: Arc::new(AtomicU64::new(0)),
            down: Arc::new(AtomicU64::new(0)),
            recorder,
            completed: false,
        }
    }

    pub fn event_mut(&mut self) -> &mut Event {
        // `event` is only taken in `Drop`, so it is always present here.
        self.event.as_mut().expect("event present until drop")
    }

    /// Marks the exchange as complete: no `client-closed` error is recorded.
    pub fn complete(&mut self) {
        self.completed = true;
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(mut ev) = self.event.take() {
            ev.bytes_up = self.up.load(Ordering::Relaxed);
            ev.bytes_down = self.down.load(Ordering::Relaxed);
            ev.duration_ms = self.started.elapsed().as_millis() as u64;
            if !self.completed && ev.error.is_none() {
                ev.error = Some("client-closed");
            }
            self.recorder.record(ev);
        }
    }
}

/// A body that counts the bytes of its data frames, and optionally owns the
/// request's [`Pending`] record, which it completes at end of stream.
pub struct Counted<B> {
    inner: B,
    counter: Arc<AtomicU64>,
    pending: Option<Pending>,
}

impl<B> Counted<B> {
    pub fn new(inner: B, counter: Arc<AtomicU64>) -> Self {
        Self {
            inner,
            counter,
            pending: None,
        }
    }

    /// Counts into `pending.down` and records when the body ends or is dropped.
    pub fn recording(inner: B, mut pending: Pending) -> Self
    where
        B: Body,
    {
        if inner.is_end_stream() {
            pending.complete();
        }
        Self {
            inner,
            counter: pending.down.clone(),
            pending: Some(pending),
        }
    }
}

impl<B> Body for Counted<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.counter.fetch_add(data.len() as u64, Ordering::Relaxed);
                }
                if this.inner.is_end_stream() {
                    this.finish(None);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.finish(Some("upstream-protocol"));
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Ready(None) => {
                this.finish(None);
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> Counted<B> {
    fn finish(&mut self, error: Option<&'static str>) {
        if let Some(mut p) = self.pending.take() {
            if let Some(e) = error {
                p.event_mut().error = Some(e);
            }
            p.complete();
        }
    }
}
