//! One client connection, from accept to close: hyper's HTTP/1 server
//! while requests flow, nothing but the socket while it idles.
//!
//! hyper keeps a read and a write buffer (8 KiB each) for as long as it
//! serves a connection. A keep-alive connection that has been quiet for
//! [`PARK_AFTER`] with no request in flight is **parked**: hyper is asked
//! to stop (an idle hyper connection stops at once), gives back the socket
//! and the bytes it read but did not use, and is dropped with its buffers.
//! The parked connection waits for its next byte holding no buffer
//! (`TcpStream::readable`); then a new hyper connection takes over, first
//! reading the bytes the old one left. A parked connection closes quietly
//! when `--header-read-timeout` has passed since its last request (what
//! hyper does with an idle keep-alive connection) or when socialgate stops.
//!
//! Upgrades go through the same hand-back: a CONNECT answered with a 2xx or
//! a 101 ends the hyper connection, and [`on_upgrade`] delivers the socket,
//! with any bytes already read after the request head (a ClientHello sent
//! right behind the CONNECT), to the tunnel.
//!
//! A connection holds its slot in `--max-connections` and in
//! `--max-connections-per-client` ([`Held`]) until its socket closes,
//! tunnels included. Nothing here decides policy or records events.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use http::{Method, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;

use super::body::BoxError;
use super::keepalive::{Kept, Upstreams};
use super::upstream::ProxyBody;
use super::{responses, ProxyState};

/// A connection quiet this long, with no request in flight, is parked:
/// its hyper buffers are freed until its next byte arrives. Long enough
/// that a busy keep-alive connection is never parked between requests
/// (parking costs a new hyper connection, about a microsecond), short
/// enough that idle connections cost almost nothing.
pub const PARK_AFTER: Duration = Duration::from_secs(1);

/// Connections over the per-client cap being answered at once; beyond
/// this, further ones are reset without an answer.
const MAX_REFUSING: usize = 256;

/// What a client connection holds until its socket closes (a tunnel's
/// included): its place in `--max-connections` and in
/// `--max-connections-per-client`.
pub struct Held {
    pub permit: OwnedSemaphorePermit,
    pub slot: ClientSlot,
}

/// Open client connections per client address, against
/// `--max-connections-per-client` (0: no cap). IPv4-mapped IPv6 addresses
/// count as their IPv4 address.
pub struct ClientSlots {
    limit: usize,
    counts: Mutex<HashMap<IpAddr, usize>>,
}

impl ClientSlots {
    pub fn new(limit: usize) -> Arc<ClientSlots> {
        Arc::new(ClientSlots {
            limit,
            counts: Mutex::new(HashMap::new()),
        })
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// A slot for one more connection from `ip`, or `None` when that
    /// client already has `limit` open.
    pub fn acquire(self: &Arc<Self>, ip: IpAddr) -> Option<ClientSlot> {
        let ip = crate::policy::canonical_ip(ip);
        let mut counts = self.lock();
        let n = counts.entry(ip).or_insert(0);
        if self.limit > 0 && *n >= self.limit {
            return None;
        }
        *n += 1;
        Some(ClientSlot {
            slots: self.clone(),
            ip,
        })
    }

    /// Connections open from `ip` now.
    pub fn open(&self, ip: IpAddr) -> usize {
        let ip = crate::policy::canonical_ip(ip);
        self.lock().get(&ip).copied().unwrap_or(0)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        // A panic while holding the lock leaves only counts behind.
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One open connection's place in [`ClientSlots`]; freed on drop.
pub struct ClientSlot {
    slots: Arc<ClientSlots>,
    ip: IpAddr,
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut counts = self.slots.lock();
        if let Some(n) = counts.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

/// What the connection's I/O and its requests tell its driver.
#[derive(Default)]
struct Shared {
    /// Reads and writes that moved bytes, so far.
    activity: AtomicU64,
    /// The last read found nothing to read.
    read_waiting: AtomicBool,
    /// The last write could not be completed (the client is not reading).
    write_blocked: AtomicBool,
    /// Requests whose response hyper has not finished sending.
    in_flight: AtomicUsize,
    /// The response just given upgrades the connection (CONNECT 2xx, 101).
    upgrading: AtomicBool,
    /// Parked with part of a request head unread: no parking again until a
    /// request arrives, so a head sent a byte at a time cannot restart
    /// `--header-read-timeout` forever.
    hold_off: AtomicBool,
    /// Where the socket goes when the connection upgrades.
    upgrade: Mutex<Option<tokio::sync::oneshot::Sender<Socket>>>,
}

impl Shared {
    /// Nothing in flight, nothing to write, waiting for the client.
    fn idle(&self) -> bool {
        self.in_flight.load(Ordering::Relaxed) == 0
            && self.read_waiting.load(Ordering::Relaxed)
            && !self.write_blocked.load(Ordering::Relaxed)
            && !self.hold_off.load(Ordering::Relaxed)
    }
}

/// The client's socket, with bytes already read from it in front.
pub struct Socket {
    stream: TcpStream,
    prefix: Bytes,
    /// Reports activity to the driver while hyper serves the connection.
    shared: Option<Arc<Shared>>,
    /// The connection's limits, released when the socket closes.
    _held: Option<Held>,
}

impl Socket {
    fn note(&self, f: impl FnOnce(&Shared)) {
        if let Some(s) = &self.shared {
            f(s);
        }
    }
}

impl AsyncRead for Socket {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix[..n]);
            this.prefix.advance(n);
            if this.prefix.is_empty() {
                // Drop the view, and with it the old hyper read buffer.
                this.prefix = Bytes::new();
            }
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let r = Pin::new(&mut this.stream).poll_read(cx, buf);
        let moved = buf.filled().len() > before;
        this.note(|s| {
            s.read_waiting.store(r.is_pending(), Ordering::Relaxed);
            if moved {
                s.activity.fetch_add(1, Ordering::Relaxed);
            }
        });
        r
    }
}

impl Socket {
    fn wrote(&self, r: &Poll<io::Result<usize>>) {
        self.note(|s| {
            s.write_blocked.store(r.is_pending(), Ordering::Relaxed);
            if matches!(r, Poll::Ready(Ok(n)) if *n > 0) {
                s.activity.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.wrote(&r);
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.wrote(&r);
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// The client side of an upgraded connection: a CONNECT tunnel or a
/// WebSocket.
pub enum ClientUpgraded {
    /// From this module's connections: the socket itself.
    Socket(Box<Socket>),
    /// From a connection hyper upgraded itself.
    Hyper(TokioIo<hyper::upgrade::Upgraded>),
}

impl AsyncRead for ClientUpgraded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientUpgraded::Socket(s) => Pin::new(&mut **s).poll_read(cx, buf),
            ClientUpgraded::Hyper(h) => Pin::new(h).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ClientUpgraded {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientUpgraded::Socket(s) => Pin::new(&mut **s).poll_write(cx, buf),
            ClientUpgraded::Hyper(h) => Pin::new(h).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientUpgraded::Socket(s) => Pin::new(&mut **s).poll_write_vectored(cx, bufs),
            ClientUpgraded::Hyper(h) => Pin::new(h).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            ClientUpgraded::Socket(s) => s.is_write_vectored(),
            ClientUpgraded::Hyper(h) => h.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientUpgraded::Socket(s) => Pin::new(&mut **s).poll_flush(cx),
            ClientUpgraded::Hyper(h) => Pin::new(h).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientUpgraded::Socket(s) => Pin::new(&mut **s).poll_shutdown(cx),
            ClientUpgraded::Hyper(h) => Pin::new(h).poll_shutdown(cx),
        }
    }
}

impl ClientUpgraded {
    /// Closes with a reset (`SO_LINGER` 0) where the socket is at hand.
    pub fn reset(self) {
        if let ClientUpgraded::Socket(s) = self {
            let _ = s.stream.set_zero_linger();
        }
    }
}

/// The request's connection did not upgrade (it closed, or the response
/// was not a 2xx to CONNECT or a 101).
#[derive(Debug, thiserror::Error)]
#[error("the client connection did not upgrade")]
pub struct NotUpgraded;

/// Put on CONNECT and Upgrade requests: where [`on_upgrade`] registers.
#[derive(Clone)]
struct UpgradeSlot(Arc<Shared>);

/// The client connection once the response to `req` upgrades it; use it
/// instead of `hyper::upgrade::on` for requests from proxy clients.
pub fn on_upgrade<B>(req: &mut Request<B>) -> OnClientUpgrade {
    match req.extensions_mut().remove::<UpgradeSlot>() {
        Some(UpgradeSlot(shared)) => {
            let (tx, rx) = tokio::sync::oneshot::channel();
            *shared.upgrade.lock().unwrap_or_else(|e| e.into_inner()) = Some(tx);
            OnClientUpgrade::Slot(rx)
        }
        None => OnClientUpgrade::Hyper(hyper::upgrade::on(req)),
    }
}

/// Resolves to the upgraded client connection (see [`on_upgrade`]).
pub enum OnClientUpgrade {
    Slot(tokio::sync::oneshot::Receiver<Socket>),
    Hyper(hyper::upgrade::OnUpgrade),
}

impl Future for OnClientUpgrade {
    type Output = Result<ClientUpgraded, NotUpgraded>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            OnClientUpgrade::Slot(rx) => Pin::new(rx).poll(cx).map(|r| {
                r.map(|s| ClientUpgraded::Socket(Box::new(s)))
                    .map_err(|_| NotUpgraded)
            }),
            OnClientUpgrade::Hyper(h) => Pin::new(h).poll(cx).map(|r| {
                r.map(|u| ClientUpgraded::Hyper(TokioIo::new(u)))
                    .map_err(|_| NotUpgraded)
            }),
        }
    }
}

/// A response body that tells the driver when hyper is done with it.
pub struct Tracked {
    inner: ProxyBody,
    _in_flight: InFlight,
}

struct InFlight(Arc<Shared>);

impl InFlight {
    fn new(shared: &Arc<Shared>) -> InFlight {
        shared.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(shared.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// hyper's settings for client connections, shared by all of them.
pub fn builder(cfg: &super::ProxyConfig) -> Arc<http1::Builder> {
    let mut b = http1::Builder::new();
    b.timer(TokioTimer::new())
        .header_read_timeout(cfg.header_read_timeout)
        // Room for heads up to twice the limit: the handler refuses those
        // over the limit with a recorded 431; hyper refuses larger ones
        // while reading (431, no record; docs/access-log.md says so).
        .max_buf_size(cfg.max_header_bytes.saturating_mul(2).max(8192))
        .keep_alive(true);
    Arc::new(b)
}

/// An accepted client connection and what it holds.
pub struct Client {
    pub stream: TcpStream,
    pub peer: SocketAddr,
    pub held: Held,
}

/// How one hyper connection on the socket ended.
enum Ended {
    /// Quiet: parked (hyper gave the socket back, with unused bytes).
    Parked(Socket, Bytes),
    /// The response upgraded it: the socket goes to the tunnel.
    Upgraded(Socket, Bytes),
    /// Done (the client closed, `Connection: close`, shutdown): close it.
    Done(Socket),
    /// hyper failed (bad request, timeout); it answered what it could.
    Failed,
}

/// Serves one client connection until it closes or upgrades. `handle`
/// answers each request.
pub async fn serve<H, Fut>(
    state: Arc<ProxyState>,
    builder: Arc<http1::Builder>,
    client: Client,
    handle: H,
) where
    H: Fn(Request<Incoming>, Arc<Kept>) -> Fut + Clone + Send + Sync + Unpin + 'static,
    Fut: Future<Output = Response<ProxyBody>> + Send + 'static,
{
    let Client { stream, peer, held } = client;
    // The upstream connection kept between this client's requests; it goes
    // to the shared idle set when the connection parks or ends.
    let upstream = Arc::new(Kept::default());
    let _release = Release(&state.upstreams, &upstream);
    let gauges = state.gauges.clone();
    gauges.connections.fetch_add(1, Ordering::Relaxed);
    let _counted = Decrement(&gauges.connections);
    let shared = Arc::new(Shared::default());
    let mut stop = state.stopping.subscribe();
    let mut socket = Socket {
        stream,
        prefix: Bytes::new(),
        shared: Some(shared.clone()),
        _held: Some(held),
    };
    // Until the first request, --header-read-timeout runs from the accept.
    let mut quiet_since = tokio::time::Instant::now();
    let mut fresh = true;
    loop {
        if !fresh && socket.prefix.is_empty() {
            // Parked: no hyper, no buffers, until the next byte arrives.
            gauges.parked.fetch_add(1, Ordering::Relaxed);
            let deadline = quiet_since + state.config.header_read_timeout;
            let woke = tokio::select! {
                biased;
                _ = async { let _ = stop.wait_for(|s| *s).await; } => false,
                _ = tokio::time::sleep_until(deadline) => false,
                r = socket.stream.readable() => r.is_ok(),
            };
            gauges.parked.fetch_sub(1, Ordering::Relaxed);
            if !woke {
                return;
            }
        }
        fresh = false;
        shared.read_waiting.store(false, Ordering::Relaxed);
        shared.write_blocked.store(false, Ordering::Relaxed);
        let svc = service(&shared, &upstream, handle.clone());
        let conn = builder.serve_connection(TokioIo::new(socket), svc);
        let (ended, last_active) = drive(Box::new(conn), &shared, &stop).await;
        if let Some(t) = last_active {
            quiet_since = t;
        }
        match ended {
            Ended::Parked(s, unread) => {
                gauges.parks.fetch_add(1, Ordering::Relaxed);
                upstream.release(&state.upstreams);
                socket = s;
                socket.prefix = join(unread, std::mem::take(&mut socket.prefix));
                if !socket.prefix.is_empty() {
                    shared.hold_off.store(true, Ordering::Relaxed);
                }
            }
            Ended::Upgraded(mut s, unread) => {
                s.prefix = join(unread, std::mem::take(&mut s.prefix));
                s.shared = None;
                let tx = shared
                    .upgrade
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .take();
                if let Some(tx) = tx {
                    // A tunnel that no longer waits drops the socket: closed.
                    let _ = tx.send(s);
                }
                return;
            }
            Ended::Done(mut s) => {
                let _ = tokio::time::timeout(
                    Duration::from_secs(1),
                    tokio::io::AsyncWriteExt::shutdown(&mut s),
                )
                .await;
                linger(&mut s).await;
                return;
            }
            Ended::Failed => {
                tracing::debug!(%peer, "client connection ended with an error");
                return;
            }
        }
    }
}

/// How long, and how many bytes, a closing connection reads and discards
/// after the proxy's last response (see [`linger`]).
pub const LINGER: Duration = Duration::from_secs(2);
pub const LINGER_BYTES: usize = 1 << 20;

/// After the last response on a connection, its sending side shut: reads
/// and discards what the client still sends, until it closes, for at most
/// [`LINGER`] and [`LINGER_BYTES`]. A client refused in the middle of its
/// request body is still sending it; closing the socket with those bytes
/// unread would reset the connection, and the reset can destroy the
/// response before the client has read it (the "lingering close" of
/// Apache and nginx).
async fn linger(s: &mut Socket) {
    use tokio::io::AsyncReadExt;
    let deadline = tokio::time::Instant::now() + LINGER;
    let mut buf = vec![0u8; 16 * 1024];
    let mut left = LINGER_BYTES;
    while left > 0 {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => left = left.saturating_sub(n),
            _ => return,
        }
    }
}

/// Bytes hyper read but did not use, then bytes it never got to read, in
/// an allocation of their own. `unread` is a view into hyper's read buffer
/// (8 KiB or more), and a view, even an empty one, keeps the whole buffer
/// alive: kept as it is, every parked connection and every tunnel would
/// hold the buffer parking is meant to free.
fn join(unread: Bytes, rest: Bytes) -> Bytes {
    if unread.is_empty() && rest.is_empty() {
        return Bytes::new();
    }
    let mut b = Vec::with_capacity(unread.len() + rest.len());
    b.extend_from_slice(&unread);
    b.extend_from_slice(&rest);
    // Length equals capacity: the `Bytes` owns exactly these bytes.
    Bytes::from(b)
}

/// Gives a client connection's held upstream connection to the idle set
/// when the client connection ends, however it ends.
struct Release<'a>(&'a Arc<Upstreams>, &'a Kept);

impl Drop for Release<'_> {
    fn drop(&mut self) {
        self.1.release(self.0);
    }
}

struct Decrement<'a>(&'a AtomicU64);

impl Drop for Decrement<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What the service of a connection returns for each request.
type Answer = Pin<Box<dyn Future<Output = Result<Response<Tracked>, Infallible>> + Send>>;

/// The hyper service of one connection: marks requests in flight until
/// hyper drops their response body, offers upgrades a slot, and notes
/// responses that upgrade the connection.
fn service<H, Fut>(
    shared: &Arc<Shared>,
    upstream: &Arc<Kept>,
    handle: H,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = Response<Tracked>,
    Error = Infallible,
    Future = Answer,
> + Unpin
       + Send
where
    H: Fn(Request<Incoming>, Arc<Kept>) -> Fut + Send + Sync + Unpin + 'static,
    Fut: Future<Output = Response<ProxyBody>> + Send + 'static,
{
    let shared = shared.clone();
    let upstream = upstream.clone();
    service_fn(move |mut req: Request<Incoming>| {
        let in_flight = InFlight::new(&shared);
        shared.hold_off.store(false, Ordering::Relaxed);
        let connect = req.method() == Method::CONNECT;
        if connect || req.headers().contains_key(http::header::UPGRADE) {
            req.extensions_mut().insert(UpgradeSlot(shared.clone()));
        }
        // Boxed where it is made and awaited through the box: the block
        // below awaiting it by value would hold it twice and copy it
        // (several KiB) on every request.
        let fut = Box::pin(handle(req, upstream.clone()));
        let shared = shared.clone();
        let boxed: Answer = Box::pin(async move {
            let resp = fut.await;
            let s = resp.status();
            if s == StatusCode::SWITCHING_PROTOCOLS || (connect && s.is_success()) {
                shared.upgrading.store(true, Ordering::Relaxed);
            }
            Ok(resp.map(|inner| Tracked {
                inner,
                _in_flight: in_flight,
            }))
        });
        boxed
    })
}

/// Runs one hyper connection until it ends; parks it when it has been
/// quiet for [`PARK_AFTER`], and asks it to finish within a tick of
/// shutdown beginning. Also returns when the connection was last seen
/// active, if it was after it started.
async fn drive<S>(
    mut conn: Box<http1::Connection<TokioIo<Socket>, S>>,
    shared: &Shared,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> (Ended, Option<tokio::time::Instant>)
where
    S: hyper::service::HttpService<Incoming, ResBody = Tracked> + Unpin,
    S::Future: Unpin,
    S::Error: Into<BoxError>,
{
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + PARK_AFTER, PARK_AFTER);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen = shared.activity.load(Ordering::Relaxed);
    let mut last_active = None;
    let mut parking = false;
    let mut stopping = false;
    let result = loop {
        // Shutdown is looked for at each tick, not on every wake-up: a
        // watch on the stop signal would take a lock shared by all
        // connections each time a busy connection is polled.
        if !stopping && *stop.borrow() {
            stopping = true;
            // Finishes the exchange in flight (with `Connection: close`), then ends.
            Pin::new(&mut *conn).graceful_shutdown();
        }
        tokio::select! {
            biased;
            r = std::future::poll_fn(|cx| conn.poll_without_shutdown(cx)) => break r,
            _ = ticker.tick(), if !parking => {
                if stopping {
                    continue;
                }
                let now = shared.activity.load(Ordering::Relaxed);
                if now != seen {
                    seen = now;
                    last_active = Some(tokio::time::Instant::now());
                    continue;
                }
                if !shared.idle() {
                    continue;
                }
                // Idle: hyper stops at once and hands the socket back.
                Pin::new(&mut *conn).graceful_shutdown();
                let now = std::future::poll_fn(|cx| Poll::Ready(conn.poll_without_shutdown(cx))).await;
                match now {
                    Poll::Ready(r) => {
                        parking = true;
                        break r;
                    }
                    // It was busy after all: it finishes its exchange with
                    // `Connection: close` and the client reconnects.
                    Poll::Pending => stopping = true,
                }
            }
        }
    };
    let ended = match result {
        Err(_) => Ended::Failed,
        Ok(()) => {
            let upgrading = shared.upgrading.swap(false, Ordering::Relaxed);
            let parts = conn.into_parts();
            let socket = parts.io.into_inner();
            if upgrading {
                Ended::Upgraded(socket, parts.read_buf)
            } else if parking {
                Ended::Parked(socket, parts.read_buf)
            } else {
                Ended::Done(socket)
            }
        }
    };
    (ended, last_active)
}

/// Answers a connection over `--max-connections-per-client` with a 429
/// (read its request first, so the answer is not lost to a reset), or
/// resets it when too many such answers are already under way.
pub fn refuse_over_client_limit(state: &Arc<ProxyState>, stream: TcpStream, peer: SocketAddr) {
    state.note_client_limit(peer.ip());
    let Ok(permit) = state.refusing.clone().try_acquire_owned() else {
        let _ = stream.set_zero_linger();
        return;
    };
    let limit = state.client_slots.limit();
    tokio::spawn(async move {
        let svc = service_fn(move |_req: Request<Incoming>| async move {
            Ok::<_, Infallible>(responses::over_client_limit(limit))
        });
        let mut b = http1::Builder::new();
        b.timer(TokioTimer::new())
            .header_read_timeout(Duration::from_secs(5))
            .keep_alive(false);
        let conn = b.serve_connection(TokioIo::new(stream), svc);
        let _ = tokio::time::timeout(Duration::from_secs(10), conn).await;
        drop(permit);
    });
}

/// The most connections over the per-client cap answered at once.
pub fn refusing_semaphore() -> Arc<tokio::sync::Semaphore> {
    Arc::new(tokio::sync::Semaphore::new(MAX_REFUSING))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_kept_at_a_park_or_an_upgrade_never_hold_hyper_s_read_buffer() {
        // hyper hands back its read buffer as a view; here 8 KiB, of which
        // the request used everything (nothing left) or all but 3 bytes.
        for left in [0, 3] {
            let read_buf = Bytes::from(vec![b'x'; 8192]);
            let unread = read_buf.slice(8192 - left..);
            let kept = join(unread, Bytes::new());
            assert_eq!(kept.len(), left);
            assert!(
                read_buf.is_unique(),
                "{left} bytes kept must not pin the 8 KiB buffer"
            );
            let mut want = vec![b'x'; left];
            want.extend_from_slice(b"ab");
            assert_eq!(join(kept, Bytes::from_static(b"ab")), want);
        }
        assert!(join(Bytes::new(), Bytes::new()).is_empty());
    }

    #[test]
    fn a_client_gets_at_most_its_limit_and_slots_come_back() {
        let slots = ClientSlots::new(2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let one = slots.acquire(a).unwrap();
        let two = slots
            .acquire(mapped)
            .expect("the same client, counted once");
        assert!(slots.acquire(a).is_none(), "a third from the same address");
        assert!(slots.acquire(b).is_some(), "another client is not affected");
        drop(one);
        assert_eq!(slots.open(a), 1);
        let _three = slots.acquire(a).expect("a slot came back");
        drop(two);
        assert_eq!(slots.open(mapped), 1);
        let unlimited = ClientSlots::new(0);
        let many: Vec<_> = (0..1000).map(|_| unlimited.acquire(a).unwrap()).collect();
        assert_eq!(unlimited.open(a), 1000);
        drop(many);
        assert_eq!(unlimited.open(a), 0);
        assert!(unlimited.lock().is_empty(), "no entry left behind");
    }
}
