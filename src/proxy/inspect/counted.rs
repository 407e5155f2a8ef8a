//! The client's side of an inspected tunnel, counted: the only place its
//! raw bytes pass (what the client sends is `up`, what it is sent `down`).

use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::proxy::body::Meter;

/// A stream that counts the bytes read from it into the exchange's meter.
pub(crate) struct CountedIo<S> {
    inner: S,
    meter: Arc<Meter>,
    /// Bytes read from this side travel upstream (the client side).
    up: bool,
    /// Also count what is written to this side, as `down` (an inspected
    /// tunnel's client side: the only place its raw bytes pass).
    writes: bool,
}

impl<S> CountedIo<S> {
    /// The client's side of an inspected tunnel: what it sends counts as
    /// `up`, and what it is sent as `down`.
    pub(crate) fn client(inner: S, meter: Arc<Meter>) -> Self {
        CountedIo {
            inner,
            meter,
            up: true,
            writes: true,
        }
    }

    fn wrote(&self, r: &Poll<std::io::Result<usize>>) {
        if let Poll::Ready(Ok(n)) = r {
            if self.writes {
                self.meter.down.fetch_add(*n as u64, Ordering::Relaxed);
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for CountedIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = buf.filled().len() - before;
        if read > 0 {
            let n = if self.up {
                &self.meter.up
            } else {
                &self.meter.down
            };
            n.fetch_add(read as u64, Ordering::Relaxed);
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for CountedIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.wrote(&r);
        r
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.wrote(&r);
        r
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
