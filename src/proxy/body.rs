//! Streaming bodies that count bytes, time out when they stall, and the
//! guard that records a request exactly once.
//!
//! Bodies are never buffered: [`Counted`] passes each frame through as it
//! arrives and adds its length to the exchange's [`Meter`]. A body that
//! carries nothing for the configured idle time ends with an error, so a
//! stalled origin or client cannot pin a connection and a task forever.
//! [`Pending`] holds the request's `Event` until the exchange is over,
//! whichever way it ends: the response body finished, the client went away
//! (the body is dropped), or an error response was sent. Its `Drop` is the
//! one logging phase. This module decides nothing about policy.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::Sleep;

use crate::accesslog::Recorder;
use crate::event::Event;
use crate::outcome::ErrorKind;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What the client did wrong while sending its request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ClientFault {
    /// The body's framing was invalid (bad chunk size, oversized extension).
    Protocol = 1,
    /// The client stopped sending for longer than the body idle timeout.
    Timeout = 2,
    /// The client closed the connection before its body was complete.
    Closed = 3,
}

impl ClientFault {
    /// The error kind recorded for it.
    pub fn kind(self) -> ErrorKind {
        match self {
            ClientFault::Protocol => ErrorKind::ClientProtocol,
            ClientFault::Timeout => ErrorKind::ClientTimeout,
            ClientFault::Closed => ErrorKind::ClientClosed,
        }
    }

    fn from_u8(v: u8) -> Option<ClientFault> {
        match v {
            1 => Some(ClientFault::Protocol),
            2 => Some(ClientFault::Timeout),
            3 => Some(ClientFault::Closed),
            _ => None,
        }
    }
}

/// Byte counts of one exchange, and whether the client broke its side.
/// Shared by the request body, the response body and the record.
#[derive(Debug, Default)]
pub struct Meter {
    /// Bytes client -> upstream (request body, tunnel upstream).
    pub up: AtomicU64,
    /// Bytes upstream -> client (response body, tunnel downstream).
    pub down: AtomicU64,
    fault: AtomicU8,
    /// The request body is waiting for the client to send more.
    waiting: std::sync::atomic::AtomicBool,
    /// A tunnel under a volume budget: when `up + down` reaches this,
    /// `over` is notified (the budget may have run out). `0`: none.
    allowance: AtomicU64,
    over: tokio::sync::Notify,
    /// Set when the allowance is reached: the tunnel's copy reads nothing
    /// more until it is looked at again and a new allowance is set.
    held: std::sync::atomic::AtomicBool,
}

impl Meter {
    /// The first fault the client's request body showed, if any.
    pub fn client_fault(&self) -> Option<ClientFault> {
        ClientFault::from_u8(self.fault.load(Ordering::Relaxed))
    }

    /// True while the request body waits for data from the client: a stall
    /// at this moment is the client's, not the upstream's.
    pub fn waiting_on_client(&self) -> bool {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Counts `n` bytes read from the client (`up`) or the upstream, and
    /// notifies when they reach the allowance.
    pub fn count(&self, up: bool, n: u64) {
        let (this, other) = if up {
            (&self.up, &self.down)
        } else {
            (&self.down, &self.up)
        };
        let total = this.fetch_add(n, Ordering::Relaxed) + n;
        let allowance = self.allowance.load(Ordering::Relaxed);
        if allowance != 0 && total + other.load(Ordering::Relaxed) >= allowance {
            self.held.store(true, Ordering::Relaxed);
            self.over.notify_one();
        }
    }

    /// True while the bytes have reached the allowance and nobody has
    /// looked yet: the copy reads nothing more until then.
    pub fn held(&self) -> bool {
        self.held.load(Ordering::Relaxed)
    }

    /// Bytes both ways so far.
    pub fn total(&self) -> u64 {
        self.up.load(Ordering::Relaxed) + self.down.load(Ordering::Relaxed)
    }

    /// Asks to be told (by [`Meter::over_allowance`]) once `up + down`
    /// reaches `total`; `None` clears it.
    pub fn set_allowance(&self, total: Option<u64>) {
        self.allowance
            .store(total.map_or(0, |t| t.max(1)), Ordering::Relaxed);
        self.held.store(false, Ordering::Relaxed);
    }

    /// Resolves once the bytes reached the allowance.
    pub async fn over_allowance(&self) {
        self.over.notified().await
    }

    fn set_client_fault(&self, f: ClientFault) {
        let _ = self
            .fault
            .compare_exchange(0, f as u8, Ordering::Relaxed, Ordering::Relaxed);
    }
}

/// An `Event` waiting for its exchange to end.
pub struct Pending {
    event: Option<Event>,
    started: Instant,
    pub meter: Arc<Meter>,
    recorder: Recorder,
    completed: bool,
    /// What the exchange spends of a daily budget: charged its bytes (and
    /// a last time hit) when the record is made.
    pub charge: Option<crate::budget::Charge>,
}

impl Pending {
    pub fn new(event: Event, started: Instant, recorder: Recorder) -> Self {
        Self {
            event: Some(event),
            started,
            meter: Arc::new(Meter::default()),
            recorder,
            completed: false,
            charge: None,
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
            ev.bytes_up = self.meter.up.load(Ordering::Relaxed);
            ev.bytes_down = self.meter.down.load(Ordering::Relaxed);
            if let Some(mut charge) = self.charge.take() {
                charge.account(ev.bytes_up.saturating_add(ev.bytes_down));
            }
            ev.duration_ms = self.started.elapsed().as_millis() as u64;
            if let Some(fault) = self.meter.client_fault() {
                // The client broke the exchange; whatever failed upstream
                // afterwards followed from that.
                ev.error = Some(fault.kind());
            } else if !self.completed && ev.error.is_none() {
                ev.error = Some(ErrorKind::ClientClosed);
            }
            self.recorder.record(ev);
        }
    }
}

/// Which way a [`Counted`] body flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    /// The client's request body, on its way upstream.
    Request,
    /// The upstream's response body, on its way to the client.
    Response,
}

/// The error a body yields when it carried nothing for its idle time.
#[derive(Debug, thiserror::Error)]
#[error("no body data for {0:?}")]
pub struct BodyIdle(pub Duration);

/// A body that counts the bytes of its data frames, ends with an error when
/// it stalls for longer than its idle time, and optionally owns the
/// request's [`Pending`] record, which it completes at end of stream.
pub struct Counted<B> {
    inner: B,
    meter: Arc<Meter>,
    flow: Flow,
    pending: Option<Pending>,
    idle: Option<Duration>,
    /// Armed lazily, the first time the body waits: most small bodies end
    /// without ever waiting, and then cost no timer at all.
    timer: Option<Pin<Box<Sleep>>>,
    /// A frame went through since the timer was last armed.
    progressed: bool,
}

impl<B> Counted<B> {
    /// The client's request body: counts into `meter.up`; a stall or a
    /// framing error is marked as the client's fault on the meter.
    pub fn request(inner: B, meter: Arc<Meter>, idle: Option<Duration>) -> Self {
        Self {
            inner,
            meter,
            flow: Flow::Request,
            pending: None,
            idle,
            timer: None,
            progressed: false,
        }
    }

    /// The upstream's response body: counts into `pending.meter.down` and
    /// records when the body ends or is dropped.
    pub fn response(inner: B, mut pending: Pending, idle: Option<Duration>) -> Self
    where
        B: Body,
    {
        if inner.is_end_stream() {
            pending.complete();
        }
        Self {
            inner,
            meter: pending.meter.clone(),
            flow: Flow::Response,
            pending: Some(pending),
            idle,
            timer: None,
            progressed: false,
        }
    }

    fn finish(&mut self, error: Option<ErrorKind>) {
        if let Some(mut p) = self.pending.take() {
            if let Some(e) = error {
                p.event_mut().error = Some(e);
            }
            p.complete();
        }
    }

    /// Polls the idle timer; true when the body has stalled too long.
    fn stalled(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(idle) = self.idle else {
            return false;
        };
        let deadline = tokio::time::Instant::now() + idle;
        match &mut self.timer {
            Some(t) if self.progressed => t.as_mut().reset(deadline),
            Some(_) => {}
            None => self.timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
        }
        self.progressed = false;
        // Just set above when it was missing.
        let timer = self.timer.as_mut().expect("timer armed");
        timer.as_mut().poll(cx).is_ready()
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
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if this.flow == Flow::Request {
            this.meter
                .waiting
                .store(polled.is_pending(), Ordering::Relaxed);
        }
        match polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let n = data.len() as u64;
                    match this.flow {
                        Flow::Request => this.meter.up.fetch_add(n, Ordering::Relaxed),
                        Flow::Response => this.meter.down.fetch_add(n, Ordering::Relaxed),
                    };
                }
                this.progressed = true;
                if this.inner.is_end_stream() {
                    this.finish(None);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                let e: BoxError = e.into();
                match this.flow {
                    Flow::Request => this.meter.set_client_fault(request_fault(&*e)),
                    Flow::Response => this.finish(Some(ErrorKind::UpstreamProtocol)),
                }
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                this.finish(None);
                Poll::Ready(None)
            }
            Poll::Pending => {
                if !this.stalled(cx) {
                    return Poll::Pending;
                }
                let idle = this.idle.unwrap_or_default();
                match this.flow {
                    Flow::Request => this.meter.set_client_fault(ClientFault::Timeout),
                    Flow::Response => this.finish(Some(ErrorKind::UpstreamTimeout)),
                }
                Poll::Ready(Some(Err(Box::new(BodyIdle(idle)))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Classifies an error from the client's request body: a connection that
/// ended early is the client leaving, anything else is broken framing.
fn request_fault(e: &(dyn std::error::Error + 'static)) -> ClientFault {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            if matches!(
                io.kind(),
                UnexpectedEof | ConnectionReset | BrokenPipe | ConnectionAborted
            ) {
                return ClientFault::Closed;
            }
        }
        if let Some(h) = err.downcast_ref::<hyper::Error>() {
            if h.is_incomplete_message() || h.is_canceled() || h.is_closed() {
                return ClientFault::Closed;
            }
        }
        cur = err.source();
    }
    ClientFault::Protocol
}
