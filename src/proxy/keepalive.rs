//! Plain-HTTP upstream connections, kept alive between requests.
//!
//! A client connection keeps the upstream connection its last request went
//! out on ([`Kept`]): its next request to the same address takes it back
//! without a lookup, a lock on anything shared, or a task spawned to watch
//! for the connection becoming free again. Only when the client connection
//! parks (quiet, its own buffers freed) or closes does its upstream
//! connection go to the shared idle set ([`Upstreams`]), keyed by address,
//! where any client connection's first request to that address finds it.
//! Idle connections are closed after
//! [`super::ProxyConfig::pool_idle_timeout`] (90 s), or as soon as the
//! upstream closes them, and at most [`MAX_IDLE_PER_ADDRESS`] wait per
//! address.
//!
//! Every connection is dialled to an address the policy admitted (the
//! handler names it); nothing here resolves a name. Each is an HTTP/1.1
//! connection from hyper's connection-level client, its I/O driven by a
//! task of its own, and [`Cut`] lets an exchange that gave up on it make
//! that task end at once.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::time::Instant;

use super::upstream::{connect, Cut, Cuttable, ProxyBody, UpstreamError};

/// Idle connections kept per upstream address.
pub const MAX_IDLE_PER_ADDRESS: usize = 256;

/// One upstream HTTP/1.1 connection: the sending half (its I/O runs in a
/// task of its own) and the switch that cuts it.
pub struct Conn {
    addr: SocketAddr,
    sender: http1::SendRequest<ProxyBody>,
    cut: Arc<Cut>,
}

impl Conn {
    /// Makes the connection's I/O fail from now on, so its task ends and
    /// the socket closes even while it is still sending a request body.
    pub fn cut(&self) {
        self.cut.cut();
    }
}

/// The upstream connection a client connection keeps between its requests.
#[derive(Default)]
pub struct Kept(Mutex<Option<Conn>>);

impl Kept {
    fn take_for(&self, addr: SocketAddr) -> Option<Conn> {
        let mut slot = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if slot.as_ref().is_some_and(|c| c.addr == addr) {
            slot.take()
        } else {
            None
        }
    }

    /// Keeps `conn`; the one held before (to another address) goes idle.
    fn keep(&self, conn: Conn, upstreams: &Arc<Upstreams>) {
        let before = self
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .replace(conn);
        if let Some(before) = before {
            upstreams.put_idle(before);
        }
    }

    /// Gives the held connection, if any, to the shared idle set.
    pub fn release(&self, upstreams: &Arc<Upstreams>) {
        let conn = self.0.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(conn) = conn {
            upstreams.put_idle(conn);
        }
    }
}

/// Why an exchange with an upstream got no response head.
#[derive(Debug)]
pub enum Failed {
    /// No connection: the dial failed, or the parent proxy refused.
    Connect(UpstreamError),
    /// The connection failed, or the response was not valid HTTP.
    Http(super::body::BoxError),
    /// No response head within the deadline; the connection was cut.
    Timeout,
}

/// How sending on one connection went.
enum Sent {
    /// A response head, or a failure to blame on the exchange.
    Answered(Result<Response<Incoming>, Failed>),
    /// The connection closed before it took the request, which comes back
    /// unsent.
    NotTaken(Request<ProxyBody>, hyper::Error),
}

struct Idle {
    conn: Conn,
    since: Instant,
}

impl Idle {
    /// Idle since `fresh_since` or later (`None`: no limit), and open.
    fn usable(&self, fresh_since: Option<Instant>) -> bool {
        fresh_since.is_none_or(|t| self.since >= t) && !self.conn.sender.is_closed()
    }
}

/// Upstream connections not held by any client connection, keyed by
/// address, and how new ones are made.
pub struct Upstreams {
    idle: Mutex<std::collections::HashMap<SocketAddr, Vec<Idle>>>,
    idle_timeout: Duration,
    connect_timeout: Duration,
    max_head: usize,
    metrics: Arc<crate::metrics::Metrics>,
    /// `upstream_idle` counts the idle set, for the metrics.
    gauges: Arc<crate::metrics::Gauges>,
    sweeping: std::sync::atomic::AtomicBool,
}

impl Upstreams {
    /// `max_head` bounds the upstream's response head as
    /// `--max-header-bytes` bounds the client's request head (hyper's read
    /// buffer cannot go below 8 KiB; the handler measures the parsed head
    /// exactly).
    pub fn new(
        connect_timeout: Duration,
        idle_timeout: Duration,
        max_head: usize,
        metrics: Arc<crate::metrics::Metrics>,
        gauges: Arc<crate::metrics::Gauges>,
    ) -> Arc<Self> {
        Arc::new(Self {
            idle: Mutex::default(),
            idle_timeout,
            connect_timeout,
            max_head,
            metrics,
            gauges,
            sweeping: Default::default(),
        })
    }

    /// Sends `req` (origin-form) to `addr` and waits until `deadline` for
    /// the response head: on the connection `kept` holds if it goes to
    /// `addr`, else on an idle one, else on a new one. A request that a
    /// reused connection closed before taking is sent again on a new
    /// connection (it was never written, so this is safe for any method).
    /// The connection used is kept by `kept` for the client's next request.
    pub async fn send(
        self: &Arc<Self>,
        kept: &Kept,
        addr: SocketAddr,
        req: Request<ProxyBody>,
        deadline: Instant,
    ) -> Result<Response<Incoming>, Failed> {
        let reused = match kept.take_for(addr) {
            // Closed by the upstream since: dropped.
            Some(conn) if conn.sender.is_closed() => self.take_idle(addr),
            // Still busy with this client's last exchange (an origin that
            // answered before reading the whole request body, say): not
            // waited for; it goes idle once free.
            Some(conn) if !conn.sender.is_ready() => {
                self.settle_later(conn);
                None
            }
            Some(conn) => Some(conn),
            None => self.take_idle(addr),
        };
        let req = match reused {
            Some(conn) => match self.send_on(kept, conn, req, deadline).await {
                Sent::Answered(r) => return r,
                Sent::NotTaken(req, _) => req,
            },
            None => req,
        };
        // Boxed: a new connection is the rare case, and its future would
        // otherwise be part of every request's.
        Box::pin(self.send_new(kept, addr, req, deadline)).await
    }

    /// On a new connection.
    async fn send_new(
        self: &Arc<Self>,
        kept: &Kept,
        addr: SocketAddr,
        req: Request<ProxyBody>,
        deadline: Instant,
    ) -> Result<Response<Incoming>, Failed> {
        let conn = match tokio::time::timeout_at(deadline, self.dial(addr)).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return Err(Failed::Connect(e)),
            Err(_) => return Err(Failed::Timeout),
        };
        match self.send_on(kept, conn, req, deadline).await {
            Sent::Answered(r) => r,
            Sent::NotTaken(_, e) => Err(Failed::Http(Box::new(e))),
        }
    }

    /// On `conn`, once it is free (at once, unless this client's previous
    /// response is still being read).
    async fn send_on(
        self: &Arc<Self>,
        kept: &Kept,
        mut conn: Conn,
        req: Request<ProxyBody>,
        deadline: Instant,
    ) -> Sent {
        // Free at once, as a rule; waiting (boxed, like any rare phase)
        // only while the connection still settles the last response.
        if !conn.sender.is_ready() {
            match Box::pin(tokio::time::timeout_at(deadline, conn.sender.ready())).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Sent::NotTaken(req, e),
                Err(_) => {
                    conn.cut();
                    return Sent::Answered(Err(Failed::Timeout));
                }
            }
        }
        let sent = conn.sender.try_send_request(req);
        match tokio::time::timeout_at(deadline, sent).await {
            Ok(Ok(resp)) => {
                kept.keep(conn, self);
                Sent::Answered(Ok(resp))
            }
            Ok(Err(mut e)) => match e.take_message() {
                Some(req) => Sent::NotTaken(req, e.into_error()),
                None => Sent::Answered(Err(Failed::Http(Box::new(e.into_error())))),
            },
            Err(_) => {
                conn.cut();
                Sent::Answered(Err(Failed::Timeout))
            }
        }
    }

    /// Puts `conn` in the idle set once it is free, if that happens within
    /// the idle timeout; otherwise it is closed.
    fn settle_later(self: &Arc<Self>, mut conn: Conn) {
        let weak = Arc::downgrade(self);
        let wait = self.idle_timeout;
        tokio::spawn(async move {
            if let Ok(Ok(())) = tokio::time::timeout(wait, conn.sender.ready()).await {
                if let Some(this) = weak.upgrade() {
                    this.put_idle(conn);
                }
            }
        });
    }

    /// A new connection to `addr`, its I/O running in a task of its own.
    async fn dial(&self, addr: SocketAddr) -> Result<Conn, UpstreamError> {
        let d = connect(
            &[addr.ip()],
            addr.port(),
            self.connect_timeout,
            &self.metrics,
        )
        .await?;
        let cut = Arc::new(Cut::default());
        let io = TokioIo::new(Cuttable::new(d.stream, cut.clone()));
        let (sender, connection) = http1::Builder::new()
            .max_buf_size(self.max_head.max(8192))
            .handshake::<_, ProxyBody>(io)
            .await
            .map_err(|e| UpstreamError::Connect {
                addr,
                source: std::io::Error::other(e),
            })?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "upstream connection ended with an error");
            }
        });
        Ok(Conn { addr, sender, cut })
    }

    fn take_idle(&self, addr: SocketAddr) -> Option<Conn> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.get_mut(&addr)?;
        let fresh_since = Instant::now().checked_sub(self.idle_timeout);
        let before = list.len();
        let mut found = None;
        // The most recently used first: the likeliest to be still open.
        while let Some(i) = list.pop() {
            if i.usable(fresh_since) {
                found = Some(i.conn);
                break;
            }
        }
        self.idle_less(before - list.len());
        if list.is_empty() {
            idle.remove(&addr);
        }
        found
    }

    fn idle_less(&self, n: usize) {
        use std::sync::atomic::Ordering;
        self.gauges
            .upstream_idle
            .fetch_sub(n as u64, Ordering::Relaxed);
    }

    /// Keeps `conn` idle for another client connection, if it is free and
    /// open and there is room; otherwise it is dropped, which closes it
    /// once any exchange still on it ends.
    fn put_idle(self: &Arc<Self>, conn: Conn) {
        if !conn.sender.is_ready() {
            return;
        }
        {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            let list = idle.entry(conn.addr).or_default();
            if list.len() >= MAX_IDLE_PER_ADDRESS {
                return;
            }
            list.push(Idle {
                conn,
                since: Instant::now(),
            });
            let gauge = &self.gauges.upstream_idle;
            gauge.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        self.start_sweeping();
    }

    /// Once: a task that closes expired and closed idle connections, for as
    /// long as the set exists.
    fn start_sweeping(self: &Arc<Self>) {
        use std::sync::atomic::Ordering;
        if self.sweeping.swap(true, Ordering::Relaxed) {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            self.sweeping.store(false, Ordering::Relaxed);
            return;
        };
        let weak: Weak<Self> = Arc::downgrade(self);
        let every =
            (self.idle_timeout / 4).clamp(Duration::from_millis(100), Duration::from_secs(15));
        rt.spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(this) = weak.upgrade() else { return };
                this.sweep();
            }
        });
    }

    /// Closes idle connections that expired or that the upstream closed.
    fn sweep(&self) {
        let fresh_since = Instant::now().checked_sub(self.idle_timeout);
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let mut closed = 0;
        idle.retain(|_, list| {
            let before = list.len();
            list.retain(|i| i.usable(fresh_since));
            closed += before - list.len();
            !list.is_empty()
        });
        self.idle_less(closed);
    }

    /// Idle connections right now (all addresses).
    pub fn idle_count(&self) -> usize {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.values().map(Vec::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[test]
    fn the_send_future_is_small() {
        let up = Upstreams::new(
            Duration::from_secs(1),
            Duration::from_secs(1),
            8192,
            crate::metrics::Metrics::new(),
            Default::default(),
        );
        let kept = Kept::default();
        let body: ProxyBody = http_body_util::Empty::new()
            .map_err(|never| match never {})
            .boxed();
        let send = up.send(
            &kept,
            "127.0.0.1:1".parse().unwrap(),
            Request::new(body),
            Instant::now(),
        );
        // Part of every plain request's future: dialling and waiting for a
        // busy connection are boxed.
        let size = std::mem::size_of_val(&send);
        assert!(size <= 1280, "the send future is {size} bytes");
    }
}
