//! The async shell: accept loop, HTTP forwarding, CONNECT tunnels.
//!
//! Each connection is served by hyper's HTTP/1 server. A request flows
//! through named phases: **identify** (who is asking), **decide** (the pure
//! policy core), **forward** (plain HTTP, Upgrade, or a CONNECT tunnel) and
//! **record** (exactly one [`crate::event::Event`], on success and on error).
//! Every response the proxy makes up itself comes from [`responses`].
//! This module holds no policy logic: it asks [`crate::policy::decide`].

pub mod body;
pub mod handler;
pub mod headers;
pub mod identify;
pub mod responses;
pub mod sni;
pub mod tunnel;
pub mod upstream;

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::accesslog::Recorder;
use crate::identity::CredentialCache;
use crate::reload::PolicyHandle;

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
    /// Largest request head accepted, in bytes.
    pub max_header_bytes: usize,
    /// Host name -> address overrides, like `curl --resolve`.
    pub resolve: HashMap<String, IpAddr>,
    /// Upstream keep-alive connections idle longer than this are closed.
    pub pool_idle_timeout: Duration,
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
        }
    }
}

/// Live counters the admin side reads.
#[derive(Debug, Default)]
pub struct Gauges {
    pub connections: AtomicU64,
    pub tunnels: AtomicU64,
    pub in_flight: AtomicU64,
}

/// Everything a request handler needs, shared by all connections.
pub struct ProxyState {
    /// The current policy snapshot; each request loads it once.
    pub policy: Arc<PolicyHandle>,
    /// Where every request's one `Event` goes.
    pub recorder: Recorder,
    /// Verified credentials, so bcrypt runs once per user, not per request.
    pub creds: CredentialCache,
    /// Pooled keep-alive client for plain-HTTP upstreams.
    pub client: upstream::PooledClient,
    /// Dials upstreams with destination checks; shared with the client.
    pub dialer: Arc<upstream::Dialer>,
    pub config: ProxyConfig,
    pub gauges: Arc<Gauges>,
    /// Decision and connect-time histograms (the rest derives from events).
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Set when the drain time is up: open tunnels close (and are recorded).
    pub hard_stop: tokio::sync::watch::Sender<bool>,
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
        listen_addrs: Vec<SocketAddr>,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Arc<Self> {
        let dialer = Arc::new(upstream::Dialer::new(
            policy.clone(),
            listen_addrs,
            config.resolve.clone(),
            config.connect_timeout,
            Some(metrics.clone()),
        ));
        let client = upstream::pooled_client(
            dialer.clone(),
            config.pool_idle_timeout,
            config.max_header_bytes,
        );
        Arc::new(Self {
            policy,
            recorder,
            creds: CredentialCache::default(),
            client,
            dialer,
            config,
            gauges: Arc::new(Gauges::default()),
            metrics,
            hard_stop: tokio::sync::watch::channel(false).0,
        })
    }
}

/// Serves proxy clients on `listener` until `shutdown` resolves, then stops
/// accepting and waits up to `drain` for in-flight requests and tunnels.
pub async fn serve(
    listener: TcpListener,
    state: Arc<ProxyState>,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) {
    // Connections watch this to start their graceful shutdown.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let permits = Arc::new(Semaphore::new(state.config.max_connections));
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
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(state.config.header_read_timeout)
            .max_buf_size(state.config.max_header_bytes.max(8192))
            .keep_alive(true);
        let conn = builder
            .serve_connection(TokioIo::new(stream), svc)
            .with_upgrades();
        let st = state.clone();
        let mut stop = stop_rx.clone();
        st.gauges.connections.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            tokio::pin!(conn);
            let result = tokio::select! {
                r = conn.as_mut() => r,
                _ = stop.changed() => {
                    // Finish the request in flight, then close.
                    conn.as_mut().graceful_shutdown();
                    conn.as_mut().await
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "client connection ended with an error");
            }
            st.gauges.connections.fetch_sub(1, Ordering::Relaxed);
            drop(permit);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let idle = || {
        state.gauges.connections.load(Ordering::Relaxed) == 0
            && state.gauges.tunnels.load(Ordering::Relaxed) == 0
    };
    let drained = tokio::time::timeout(drain, async {
        // Tunnels and upgraded connections outlive their HTTP connection.
        while !idle() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    if drained.is_err() {
        // Time is up: close what is still open, so every tunnel still ends
        // in its access-log record before the writer stops.
        tracing::warn!(
            tunnels = state.gauges.tunnels.load(Ordering::Relaxed),
            connections = state.gauges.connections.load(Ordering::Relaxed),
            "drain time is up; closing what is still open"
        );
        state.hard_stop.send_replace(true);
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            while state.gauges.tunnels.load(Ordering::Relaxed) > 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
    }
}

/// The executor hyper uses for background connection tasks.
pub(crate) fn executor() -> TokioExecutor {
    TokioExecutor::new()
}
