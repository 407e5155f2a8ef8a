//! The async shell: accept loop, HTTP forwarding, CONNECT tunnels.
//!
//! Each connection is served by hyper's HTTP/1 server. A request flows
//! through named phases, carried by one [`context::Exchange`]: **identify**
//! (who is asking), **admit** (the pure policy core, on one snapshot),
//! **forward** (plain HTTP, Upgrade, or a CONNECT tunnel) and **record**
//! (exactly one [`crate::event::Event`], on success and on error). The shell
//! gathers facts (identity, DNS answers, the ClientHello) and asks
//! [`crate::policy::admit`] and its stages; it never decides itself. Every
//! response the proxy makes up itself comes from [`responses`].
//!
//! A tunnel the policy core says to inspect is decrypted by [`inspect`]:
//! its requests come back through `handler`, decided like plain HTTP.
//!
//! Module graph (no cycles): `transparent` → `handler` → `tunnel` →
//! `inspect`, all → `context`, `splice`, `upstream` (→ `parent`),
//! `responses`, `identify`, `body`, `headers`; `handler` → `activity` (what
//! a request does) and `warn` (the warn rules' gate) → `context`,
//! `responses`; `inspect::conn` serves its requests with
//! `handler::handle_inspected`.

pub mod activity;
pub mod body;
pub mod clock;
pub mod context;
pub mod handler;
pub mod headers;
pub mod identify;
pub mod inspect;
pub mod parent;
pub mod responses;
pub mod sni;
pub mod splice;
pub mod transparent;
pub mod tunnel;
pub mod upstream;
pub mod warn;

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

use crate::accesslog::Recorder;
use crate::identity::CredentialCache;
pub use crate::metrics::Gauges;
use crate::reload::PolicyHandle;

pub use clock::Clock;

/// Limits and network settings of a running proxy (from flags, not policy).
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Time a client has to send a complete request head. It also closes an
    /// idle keep-alive client connection: hyper starts this timer as soon as
    /// the connection waits for its next request head.
    pub header_read_timeout: Duration,
    /// A tunnel or upgraded connection with no traffic this long is closed.
    pub idle_timeout: Duration,
    /// Time to establish an upstream TCP connection.
    pub connect_timeout: Duration,
    /// Time to wait for the upstream's response head.
    pub upstream_timeout: Duration,
    /// A forwarded body (request or response) that carries no data this
    /// long ends the exchange (`client-timeout` / `upstream-timeout`).
    pub body_idle_timeout: Duration,
    /// Concurrent client connections; further clients wait in the backlog.
    pub max_connections: usize,
    /// Largest request (and upstream response) head accepted, in bytes.
    pub max_header_bytes: usize,
    /// Host name -> address overrides, like `curl --resolve`.
    pub resolve: HashMap<String, IpAddr>,
    /// Upstream keep-alive connections idle longer than this are closed.
    pub pool_idle_timeout: Duration,
    /// The policy clock: wall time plus an offset (zero outside tests).
    pub clock: Clock,
    /// The parent proxy admitted traffic leaves through (`--upstream-proxy`).
    pub upstream_proxy: Option<parent::ParentConfig>,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(300),
            connect_timeout: Duration::from_secs(10),
            upstream_timeout: Duration::from_secs(60),
            body_idle_timeout: Duration::from_secs(120),
            max_connections: 10_000,
            max_header_bytes: 64 * 1024,
            resolve: HashMap::new(),
            pool_idle_timeout: Duration::from_secs(90),
            clock: Clock::default(),
            upstream_proxy: None,
        }
    }
}

/// Everything a request handler needs, shared by all connections.
pub struct ProxyState {
    /// The current policy snapshot; each request or tunnel loads it once.
    pub policy: Arc<PolicyHandle>,
    /// Where every request's one `Event` goes.
    pub recorder: Recorder,
    /// Verified credentials, so bcrypt runs once per user, not per request.
    pub creds: CredentialCache,
    /// Pooled keep-alive client for plain-HTTP upstreams; it dials the
    /// address the request was admitted to, nothing else.
    pub client: upstream::PooledClient,
    /// Name resolution (with `--resolve` overrides and a small cache).
    pub resolver: upstream::Resolver,
    /// The parent proxy, with its own pooled client, when one is set.
    pub parent: Option<parent::Parent>,
    pub config: ProxyConfig,
    pub gauges: Arc<Gauges>,
    /// Decision and connect-time histograms (the rest derives from events).
    pub metrics: Arc<crate::metrics::Metrics>,
    /// socialgate's own listening addresses (proxy and admin): a fact every
    /// admission gets, so the core can refuse them as destinations.
    pub listeners: Vec<SocketAddr>,
    /// Ticks whenever a time window in the policy opens or closes, so open
    /// tunnels are decided again then (see [`clock::run`]).
    pub ticks: tokio::sync::watch::Sender<u64>,
    /// Tunnels and upgraded connections, which outlive their HTTP request:
    /// shutdown waits for them.
    pub tracker: TaskTracker,
    /// Set when the drain time is up: open tunnels close (and are recorded).
    pub hard_stop: tokio::sync::watch::Sender<bool>,
    /// The warn key and the acknowledgement store (see [`crate::warn`]).
    pub warn: crate::warn::Warnings,
    /// TLS inspection (the company CA, leaves, origin verification);
    /// `None` when no CA is configured: then nothing is decrypted.
    pub inspector: Option<Arc<inspect::Inspector>>,
}

/// Counts an open tunnel or upgraded connection for as long as it lives.
pub(crate) struct TunnelGauge(Arc<Gauges>);

impl TunnelGauge {
    pub(crate) fn new(gauges: &Arc<Gauges>) -> Self {
        gauges.tunnels.fetch_add(1, Ordering::Relaxed);
        Self(gauges.clone())
    }
}

impl Drop for TunnelGauge {
    fn drop(&mut self) {
        self.0.tunnels.fetch_sub(1, Ordering::Relaxed);
    }
}

impl ProxyState {
    pub fn new(
        policy: Arc<PolicyHandle>,
        recorder: Recorder,
        config: ProxyConfig,
        listeners: Vec<SocketAddr>,
        metrics: Arc<crate::metrics::Metrics>,
        warn_key: crate::warn::WarnKey,
        inspector: Option<Arc<inspect::Inspector>>,
    ) -> Arc<Self> {
        let client = upstream::pooled_client(
            config.connect_timeout,
            config.pool_idle_timeout,
            config.max_header_bytes,
            metrics.clone(),
        );
        let resolver = upstream::Resolver::new(config.resolve.clone(), config.connect_timeout);
        let parent = config.upstream_proxy.clone().map(|p| {
            parent::Parent::new(
                p,
                config.connect_timeout,
                config.pool_idle_timeout,
                config.max_header_bytes,
                metrics.clone(),
            )
        });
        let warn = crate::warn::Warnings {
            key: warn_key,
            store: crate::warn::AckStore::new(metrics.clone()),
        };
        Arc::new(Self {
            policy,
            recorder,
            creds: CredentialCache::default(),
            client,
            resolver,
            parent,
            config,
            gauges: Arc::new(Gauges::default()),
            metrics,
            listeners,
            ticks: tokio::sync::watch::channel(0).0,
            tracker: TaskTracker::new(),
            hard_stop: tokio::sync::watch::channel(false).0,
            warn,
            inspector,
        })
    }

    /// Runs `task` as a tunnel or upgraded connection: counted in the
    /// tunnel gauge and waited for at shutdown.
    pub(crate) fn spawn_tunnel<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let gauge = TunnelGauge::new(&self.gauges);
        self.tracker.spawn(async move {
            let _gauge = gauge;
            task.await;
        });
    }
}

/// Serves proxy clients on `listener` until `shutdown` resolves, then stops
/// accepting and waits up to `drain` for in-flight requests and tunnels.
/// Returns `None` when everything drained in time, else how many tunnels
/// were still open at the deadline and were cut.
pub async fn serve(
    listener: TcpListener,
    state: Arc<ProxyState>,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) -> Option<u64> {
    let graceful = GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(state.config.max_connections));
    let mut builder = auto::Builder::new(executor()).http1_only();
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(state.config.header_read_timeout)
        // Room for heads up to twice the limit: the handler refuses those
        // over the limit with a recorded 431; hyper refuses larger ones
        // while reading (431, no record; docs/access-log.md says so).
        .max_buf_size(state.config.max_header_bytes.saturating_mul(2).max(8192))
        .keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let st = state.clone();
        let svc = service_fn(move |req| handler::handle(st.clone(), peer, req));
        let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
        // Watched: at shutdown hyper finishes the request in flight, then closes.
        let conn = graceful.watch(conn.into_owned());
        let gauges = state.gauges.clone();
        gauges.connections.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "client connection ended with an error");
            }
            gauges.connections.fetch_sub(1, Ordering::Relaxed);
            drop(permit);
        });
    }
    drop(listener);
    drain_connections(&state, graceful, drain).await
}

/// After a listener stopped accepting: waits up to `drain` for its
/// connections and every tunnel, then closes what is still open. Returns
/// `None` when everything drained in time, else the tunnels cut.
pub(crate) async fn drain_connections(
    state: &ProxyState,
    graceful: GracefulShutdown,
    drain: Duration,
) -> Option<u64> {
    let tracker = state.tracker.clone();
    let drained = tokio::time::timeout(drain, async {
        graceful.shutdown().await;
        // Tunnels and upgraded connections outlive their HTTP connection.
        tracker.close();
        tracker.wait().await;
    })
    .await;
    if drained.is_err() {
        // Time is up: close what is still open, so every tunnel still ends
        // in its access-log record before the writer stops.
        let cut = state.gauges.tunnels.load(Ordering::Relaxed);
        tracing::warn!(
            tunnels = cut,
            connections = state.gauges.connections.load(Ordering::Relaxed),
            "drain time is up; closing what is still open"
        );
        state.hard_stop.send_replace(true);
        tracker.close();
        let _ = tokio::time::timeout(Duration::from_secs(1), tracker.wait()).await;
        return Some(cut);
    }
    None
}

/// The executor hyper uses for background connection tasks.
pub(crate) fn executor() -> TokioExecutor {
    TokioExecutor::new()
}
