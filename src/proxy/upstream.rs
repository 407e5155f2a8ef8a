//! Reaching upstreams: name resolution and TCP connections. No policy.
//!
//! The handler resolves a name with [`Resolver`] (the `--resolve`
//! overrides, then DNS, see [`super::dns`]), hands the
//! addresses to the policy core's destination stage, and dials only what it
//! admitted: [`connect`] for tunnels and upgrades, and for the kept-alive
//! plain-HTTP connections of [`super::keepalive`], which are keyed by the
//! admitted address and so never resolve anything themselves. Failures are
//! typed [`UpstreamError`]s that map onto the log's error kinds.

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

use crate::outcome::ErrorKind;

/// Why no upstream connection was made.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot resolve {host}: {source}")]
    Resolve {
        host: String,
        source: std::io::Error,
    },
    #[error("{host} resolves to no address")]
    NoAddress { host: String },
    #[error("{host} does not exist in DNS (no such name, or no address for it)")]
    NoSuchName { host: String },
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("timed out connecting to {0}")]
    Timeout(String),
    /// The parent proxy (`--upstream-proxy`) cannot be resolved or reached.
    #[error("cannot connect to the parent proxy {parent}: {source}")]
    ParentConnect {
        parent: String,
        source: std::io::Error,
    },
    /// The parent proxy answered, but not with a tunnel.
    #[error("the parent proxy {parent} refused: {status}")]
    ParentRefused {
        parent: String,
        status: http::StatusCode,
    },
    #[error("the parent proxy {parent} sent an invalid answer: {detail}")]
    ParentProtocol { parent: String, detail: String },
}

impl UpstreamError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            UpstreamError::Resolve { .. }
            | UpstreamError::NoAddress { .. }
            | UpstreamError::NoSuchName { .. } => ErrorKind::UpstreamResolve,
            UpstreamError::Connect { .. } | UpstreamError::ParentConnect { .. } => {
                ErrorKind::UpstreamConnect
            }
            UpstreamError::Timeout(_) => ErrorKind::UpstreamTimeout,
            UpstreamError::ParentRefused { .. } => ErrorKind::ParentRefused,
            UpstreamError::ParentProtocol { .. } => ErrorKind::UpstreamProtocol,
        }
    }

    /// The status the parent proxy refused with, for the access log.
    pub fn parent_status(&self) -> Option<u16> {
        match self {
            UpstreamError::ParentRefused { status, .. } => Some(status.as_u16()),
            _ => None,
        }
    }
}

/// Any byte stream to an upstream: a TCP connection, or a tunnel through
/// the parent proxy.
pub trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> Io for T {}
pub type BoxIo = Box<dyn Io>;

/// Where admitted traffic goes: the addresses the destination stage
/// admitted, and whether it leaves through the parent proxy.
#[derive(Debug, Clone)]
pub struct Destination {
    /// Every address the name resolved to (an IP literal: itself); empty
    /// when the parent proxy resolves the name.
    pub addrs: Arc<[IpAddr]>,
    /// Through `--upstream-proxy` (else direct).
    pub via_parent: bool,
    /// The parent resolves the name (`--upstream-proxy-dns parent`).
    pub resolved_by_parent: bool,
    /// Connect to this address only (transparent mode: where the client
    /// was going, which the policy checked is one of `addrs`).
    pub pinned: Option<IpAddr>,
}

impl Destination {
    /// The addresses a direct connection may use.
    fn dial_addrs(&self) -> Vec<IpAddr> {
        match self.pinned {
            Some(ip) => vec![ip],
            None => self.addrs.to_vec(),
        }
    }
}

/// An open upstream connection for a tunnel or an upgrade.
pub struct Opened {
    pub stream: BoxIo,
    /// The destination addresses it stands for: the address connected to
    /// directly, or what was admitted when it goes through the parent.
    pub resolved: Vec<IpAddr>,
}

/// Opens a byte stream to an admitted destination: a TCP connection to one
/// of its addresses, or a `CONNECT` tunnel through the parent proxy.
pub async fn open(
    state: &super::ProxyState,
    dest: &Destination,
    host: &crate::policy::Host,
    port: u16,
) -> Result<Opened, UpstreamError> {
    let cfg = &state.config;
    match (&state.parent, dest.via_parent) {
        (Some(parent), true) => {
            let stream = parent
                .connect(
                    host,
                    port,
                    cfg.connect_timeout,
                    cfg.upstream_timeout,
                    cfg.max_header_bytes,
                    &state.metrics,
                )
                .await?;
            Ok(Opened {
                stream,
                resolved: dest.addrs.to_vec(),
            })
        }
        _ => {
            let d = connect(
                &dest.dial_addrs(),
                port,
                cfg.connect_timeout,
                &state.metrics,
            )
            .await?;
            Ok(Opened {
                stream: Box::new(d.stream),
                resolved: vec![d.addr.ip()],
            })
        }
    }
}

pub use super::dns::Resolver;

/// An established upstream connection and how long it took.
pub struct Dialed {
    pub stream: TcpStream,
    pub addr: SocketAddr,
}

/// Connects to the first of `addrs` that answers, each within `timeout`.
pub async fn connect(
    addrs: &[IpAddr],
    port: u16,
    timeout: Duration,
    metrics: &crate::metrics::Metrics,
) -> Result<Dialed, UpstreamError> {
    let started = Instant::now();
    let mut last = None;
    for &ip in addrs {
        let addr = SocketAddr::new(ip, port);
        match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                metrics.observe_connect_time(started.elapsed());
                return Ok(Dialed { stream, addr });
            }
            Ok(Err(source)) => last = Some(UpstreamError::Connect { addr, source }),
            Err(_) => last = Some(UpstreamError::Timeout(addr.to_string())),
        }
    }
    Err(last.unwrap_or(UpstreamError::NoAddress {
        host: format!("port {port}"),
    }))
}

/// Lets an exchange cut the upstream connection its request went out on. hyper keeps a connection's task alive while it still sends a
/// request body, even after the exchange gave up on the response: an
/// origin that stops reading would then hold the connection (and the
/// client's body) forever. Cutting makes the connection's next read or
/// write fail, at once, so its task ends and the socket closes.
#[derive(Debug, Default)]
pub struct Cut {
    cut: std::sync::atomic::AtomicBool,
    waker: std::sync::Mutex<Option<std::task::Waker>>,
}

impl Cut {
    /// Fails the connection's I/O from now on, and wakes its task.
    pub fn cut(&self) {
        self.cut.store(true, std::sync::atomic::Ordering::Release);
        let waker = self.waker.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// `Some(error)` once cut; otherwise notes whom to wake.
    fn check(&self, cx: &Context<'_>) -> Option<std::io::Error> {
        if self.cut.load(std::sync::atomic::Ordering::Acquire) {
            return Some(std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                "the exchange using this upstream connection ended",
            ));
        }
        let mut w = self.waker.lock().unwrap_or_else(|e| e.into_inner());
        if !w.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            *w = Some(cx.waker().clone());
        }
        None
    }
}

/// An upstream TCP connection that its exchange can [`Cut`].
pub struct Cuttable {
    stream: TcpStream,
    cut: Arc<Cut>,
}

impl Cuttable {
    pub fn new(stream: TcpStream, cut: Arc<Cut>) -> Self {
        Self { stream, cut }
    }
}

impl tokio::io::AsyncRead for Cuttable {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if let Some(e) = self.cut.check(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Cuttable {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if let Some(e) = self.cut.check(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        if let Some(e) = self.cut.check(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

pub type ProxyBody = http_body_util::combinators::BoxBody<bytes::Bytes, super::body::BoxError>;

/// Finds an [`UpstreamError`] in an error's source chain.
pub fn find_upstream_error<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a UpstreamError> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(d) = e.downcast_ref::<UpstreamError>() {
            return Some(d);
        }
        cur = e.source();
    }
    None
}
