//! Copying an open tunnel's bytes both ways, with buffers lent from a
//! shared pool only while data flows.
//!
//! An idle tunnel holds no copy buffer at all: each direction borrows a
//! 64 KiB buffer from [`POOL`] when it polls its reader, hands it back at
//! once when the reader has nothing (`Pending`), and keeps it only while
//! bytes it read wait to be written. So memory follows the tunnels that
//! are moving data, not the tunnels that are open (nginx frees a
//! connection's buffers while it is idle for the same reason). Large
//! buffers keep bulk transfers to few, large reads and writes.
//!
//! Bytes are counted into the exchange's [`Meter`] as they are read (which
//! also tells a tunnel under a volume budget when it reached its allowance). This
//! module knows nothing about policy or HTTP.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::body::Meter;

/// Size of one copy buffer. Measured through TLS tunnels (1 MiB bodies,
/// docs/benchmarks.md, "Bulk tunnel throughput"): 16 KiB moved about a
/// fifth less; 256 KiB made 2.4 times fewer reads and writes per MiB but
/// moved no more (the load generator's core is the limit there), at four
/// times the memory per busy direction.
pub const BUF_SIZE: usize = 64 * 1024;

/// Free buffers the pool keeps for reuse (4 MiB); a buffer handed back
/// when the pool is full is freed. Busy tunnels beyond this allocate.
pub const POOL_KEEP: usize = 64;

/// The shared pool of free copy buffers.
pub static POOL: BufPool = BufPool::new(POOL_KEEP);

/// Free copy buffers, lent out while data flows.
pub struct BufPool {
    free: Mutex<Vec<Box<[u8]>>>,
    keep: usize,
    /// Buffers currently lent out (for the metrics and the tests).
    lent: AtomicU64,
}

impl BufPool {
    pub const fn new(keep: usize) -> BufPool {
        BufPool {
            free: Mutex::new(Vec::new()),
            keep,
            lent: AtomicU64::new(0),
        }
    }

    fn take(&self) -> Box<[u8]> {
        self.lent.fetch_add(1, Ordering::Relaxed);
        let reused = self.lock().pop();
        reused.unwrap_or_else(|| vec![0u8; BUF_SIZE].into_boxed_slice())
    }

    fn give(&self, buf: Box<[u8]>) {
        self.lent.fetch_sub(1, Ordering::Relaxed);
        let mut free = self.lock();
        if free.len() < self.keep {
            free.push(buf);
        }
    }

    /// Buffers lent out right now: one per direction that is moving data.
    pub fn lent(&self) -> u64 {
        self.lent.load(Ordering::Relaxed)
    }

    /// Free buffers kept for reuse.
    pub fn kept(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Box<[u8]>>> {
        // A panic while holding the lock leaves only a list of buffers.
        self.free.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One direction of a tunnel.
struct Half {
    /// Lent from the pool while it holds bytes to write.
    buf: Option<Box<[u8]>>,
    pos: usize,
    cap: usize,
    read_done: bool,
    need_flush: bool,
    done: bool,
}

impl Half {
    fn new() -> Half {
        Half {
            buf: None,
            pos: 0,
            cap: 0,
            read_done: false,
            need_flush: false,
            done: false,
        }
    }

    /// Hands the buffer back when it holds nothing to write.
    fn release_if_empty(&mut self, pool: &BufPool) {
        if self.pos == self.cap {
            if let Some(b) = self.buf.take() {
                pool.give(b);
            }
            self.pos = 0;
            self.cap = 0;
        }
    }

    /// Copies from `r` to `w` until `r` ends (then shuts `w` down).
    fn poll_copy<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        pool: &BufPool,
        (meter, up): (&Meter, bool),
        mut r: Pin<&mut R>,
        mut w: Pin<&mut W>,
    ) -> Poll<io::Result<()>>
    where
        R: AsyncRead + ?Sized,
        W: AsyncWrite + ?Sized,
    {
        loop {
            // A tunnel under a volume budget that reached its allowance
            // reads nothing more until the splice looked at the budget
            // (it polls this copy again then).
            if !self.read_done && self.pos == self.cap && meter.held() {
                self.release_if_empty(pool);
                if self.need_flush {
                    ready!(w.as_mut().poll_flush(cx))?;
                    self.need_flush = false;
                }
                return Poll::Pending;
            }
            // Read while there is room, so that writes are large.
            if !self.read_done && self.pos == self.cap {
                let mut buf = self.buf.take().unwrap_or_else(|| pool.take());
                let mut rb = ReadBuf::new(&mut buf);
                let polled = r.as_mut().poll_read(cx, &mut rb);
                let n = rb.filled().len();
                self.buf = Some(buf);
                match polled {
                    Poll::Pending => {
                        // Nothing to hold on to while the reader is idle.
                        self.release_if_empty(pool);
                        if self.need_flush {
                            ready!(w.as_mut().poll_flush(cx))?;
                            self.need_flush = false;
                        }
                        return Poll::Pending;
                    }
                    Poll::Ready(Err(e)) => {
                        self.release_if_empty(pool);
                        return Poll::Ready(Err(e));
                    }
                    Poll::Ready(Ok(())) if n == 0 => {
                        self.read_done = true;
                        self.release_if_empty(pool);
                    }
                    Poll::Ready(Ok(())) => {
                        meter.count(up, n as u64);
                        self.pos = 0;
                        self.cap = n;
                    }
                }
            }
            while self.pos < self.cap {
                // A buffer holding bytes is always present.
                let buf = self.buf.as_ref().expect("buffer with data");
                let n = ready!(w.as_mut().poll_write(cx, &buf[self.pos..self.cap]))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                self.pos += n;
                self.need_flush = true;
            }
            if self.read_done {
                self.release_if_empty(pool);
                if self.need_flush {
                    ready!(w.as_mut().poll_flush(cx))?;
                    self.need_flush = false;
                }
                ready!(w.as_mut().poll_shutdown(cx))?;
                return Poll::Ready(Ok(()));
            }
        }
    }
}

/// Copies both ways between `a` (the client) and `b` (the upstream) until
/// both directions ended or either failed; bytes read from `a` count as
/// `up`, bytes read from `b` as `down`. When one side ends its stream, the
/// other side's write half is shut down and the other direction goes on.
pub struct Bidi<'a, A, B> {
    a: &'a mut A,
    b: &'a mut B,
    meter: Arc<Meter>,
    up: Half,
    down: Half,
    pool: &'static BufPool,
}

impl<'a, A, B> Bidi<'a, A, B> {
    pub fn new(a: &'a mut A, b: &'a mut B, meter: Arc<Meter>) -> Self {
        Bidi {
            a,
            b,
            meter,
            up: Half::new(),
            down: Half::new(),
            pool: &POOL,
        }
    }
}

impl<A, B> Drop for Bidi<'_, A, B> {
    fn drop(&mut self) {
        for h in [&mut self.up, &mut self.down] {
            if let Some(b) = h.buf.take() {
                self.pool.give(b);
            }
        }
    }
}

impl<A, B> Future for Bidi<'_, A, B>
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    type Output = io::Result<()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if !this.up.done {
            if let Poll::Ready(r) = this.up.poll_copy(
                cx,
                this.pool,
                (&this.meter, true),
                Pin::new(&mut *this.a),
                Pin::new(&mut *this.b),
            ) {
                r?;
                this.up.done = true;
            }
        }
        if !this.down.done {
            if let Poll::Ready(r) = this.down.poll_copy(
                cx,
                this.pool,
                (&this.meter, false),
                Pin::new(&mut *this.b),
                Pin::new(&mut *this.a),
            ) {
                r?;
                this.down.done = true;
            }
        }
        if this.up.done && this.down.done {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn copies_both_ways_counts_and_holds_no_buffer_while_idle() {
        let pool: &'static BufPool = Box::leak(Box::new(BufPool::new(4)));
        let (mut client, mut a) = tokio::io::duplex(1 << 20);
        let (mut b, mut upstream) = tokio::io::duplex(1 << 20);
        let meter = Arc::new(Meter::default());
        let m = meter.clone();
        let copy = tokio::spawn(async move {
            let mut bidi = Bidi::new(&mut a, &mut b, m);
            bidi.pool = pool;
            (&mut bidi).await
        });
        client.write_all(&[7u8; 200_000]).await.unwrap();
        let mut got = vec![0u8; 200_000];
        upstream.read_exact(&mut got).await.unwrap();
        assert!(got.iter().all(|&x| x == 7));
        upstream.write_all(b"pong").await.unwrap();
        let mut pong = [0u8; 4];
        client.read_exact(&mut pong).await.unwrap();
        assert_eq!(&pong, b"pong");
        // Everything was written on: both directions are idle now and
        // hold no buffer (the copy task is parked on its reads).
        let idle = async {
            while pool.lent() != 0 {
                tokio::task::yield_now().await;
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(5), idle)
            .await
            .expect("an idle tunnel holds no copy buffer");
        assert!(pool.kept() >= 1, "buffers are kept for reuse");
        // One side ends; the other direction still works, then both end.
        drop(client);
        let mut rest = Vec::new();
        upstream.write_all(b"bye").await.unwrap();
        upstream.shutdown().await.unwrap();
        upstream.read_to_end(&mut rest).await.unwrap();
        copy.await.unwrap().unwrap_or(());
        assert_eq!(meter.up.load(Ordering::Relaxed), 200_000);
        assert!(meter.down.load(Ordering::Relaxed) >= 4);
        assert_eq!(pool.lent(), 0);
    }
}
