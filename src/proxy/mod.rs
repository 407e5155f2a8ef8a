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
//! Client connections are driven by [`conn`] (hyper while requests flow,
//! parked with no buffers while idle, the socket handed to a tunnel on
//! upgrade); tunnels copy with buffers lent only while data flows
//! ([`copy`]).
//!
//! Module graph (no cycles): `transparent` → `handler` → `tunnel` →
//! `inspect`, all → `conn`, `context`, `splice` (→ `copy`), `upstream`
//! (→ `parent`), `responses`, `identify`, `body`, `headers`; `handler` →
//! `activity` (what a request does) and `warn` (the warn rules' gate) →
//! `context`, `responses`; `inspect::conn` serves its requests with
//! `handler::handle_inspected`.

pub mod activity;
pub mod body;
pub mod clock;
pub mod conn;
pub mod context;
pub mod copy;
pub mod dns;
pub mod handler;
pub mod headers;
pub mod identify;
pub mod inspect;
pub mod keepalive;
pub mod me;
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

use hyper_util::rt::TokioExecutor;
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
    /// Concurrent client connections from one client address (0: no cap);
    /// further ones are answered `429` (proxy) or reset (transparent).
    pub max_connections_per_client: usize,
    /// Largest request (and upstream response) head accepted, in bytes.
    pub max_header_bytes: usize,
    /// Host name -> address overrides, like `curl --resolve`.
    pub resolve: HashMap<String, IpAddr>,
    /// DNS servers and the bound on lookups in flight.
    pub dns: dns::DnsConfig,
    /// Upstream keep-alive connections idle longer than this are closed.
    pub pool_idle_timeout: Duration,
    /// The policy clock: wall time plus an offset (zero outside tests).
    pub clock: Clock,
    /// The parent proxy admitted traffic leaves through (`--upstream-proxy`).
    pub upstream_proxy: Option<parent::ParentConfig>,
    /// The wait before the first retry of an access-request webhook post
    /// (each later one waits four times longer).
    pub webhook_backoff: Duration,
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
            max_connections_per_client: 1_000,
            max_header_bytes: 64 * 1024,
            resolve: HashMap::new(),
            dns: dns::DnsConfig::default(),
            pool_idle_timeout: Duration::from_secs(90),
            clock: Clock::default(),
            upstream_proxy: None,
            webhook_backoff: Duration::from_secs(1),
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
    /// Kept-alive plain-HTTP upstream connections not held by a client
    /// connection; they go to the address a request was admitted to,
    /// nothing else.
    pub upstreams: Arc<keepalive::Upstreams>,
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
    /// What each person spent today under budgeted rules (see
    /// [`crate::budget`]).
    pub budgets: Arc<crate::budget::Budgets>,
    /// TLS inspection (the company CA, leaves, origin verification);
    /// `None` when no CA is configured: then nothing is decrypted.
    pub inspector: Option<Arc<inspect::Inspector>>,
    /// Posts access requests to `requests.webhook` in the background.
    pub webhook: crate::requests::Webhook,
    /// The access log's pseudonyms (see [`DerivedKeys::users`]).
    pub users: crate::accesslog::UserMapper,
    /// Set when shutdown begins: parked client connections close, busy
    /// ones finish the exchange in flight and then close.
    pub stopping: tokio::sync::watch::Sender<bool>,
    /// Client connections (their HTTP part; tunnels are in `tracker`):
    /// shutdown waits for them.
    pub conns: TaskTracker,
    /// Open connections per client address (`--max-connections-per-client`).
    pub client_slots: Arc<conn::ClientSlots>,
    /// Places in `--max-connections`, shared by every listener (proxy and
    /// transparent, however many addresses each has): a place is held until
    /// the connection, or the tunnel it became, closes.
    pub permits: Arc<Semaphore>,
    /// Bounds the 429 answers to connections over the per-client cap.
    pub refusing: Arc<Semaphore>,
    /// When the per-client cap was last reported (seconds since start), so
    /// a flood logs one line every few seconds, not one per connection.
    limit_warned: std::sync::atomic::AtomicU64,
    /// The same for accept errors (EMFILE and friends).
    accept_warned: std::sync::atomic::AtomicU64,
    started: std::time::Instant,
}

/// Secrets derived from the pseudonym key, so that replicas sharing that
/// key agree: Continue links and acknowledgements, and budget entries.
pub struct DerivedKeys {
    pub warn: crate::warn::WarnKey,
    pub budget: [u8; 32],
    /// The access log's pseudonyms, for what leaves the proxy besides the
    /// log (the access-request webhook).
    pub users: crate::accesslog::UserMapper,
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
        keys: DerivedKeys,
        inspector: Option<Arc<inspect::Inspector>>,
    ) -> Result<Arc<Self>, dns::DnsSetupError> {
        let gauges = Arc::new(Gauges::default());
        let upstreams = keepalive::Upstreams::new(
            config.connect_timeout,
            config.pool_idle_timeout,
            config.max_header_bytes,
            metrics.clone(),
            gauges.clone(),
        );
        let client_slots = conn::ClientSlots::new(config.max_connections_per_client);
        let permits = Arc::new(Semaphore::new(config.max_connections));
        let resolver = upstream::Resolver::new(
            config.resolve.clone(),
            config.connect_timeout,
            &config.dns,
            Some(metrics.clone()),
        )?;
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
            key: keys.warn,
            store: crate::warn::AckStore::new(metrics.clone()),
        };
        let budgets =
            crate::budget::Budgets::new(&keys.budget, metrics.clone(), config.clock.clone());
        let metrics_for_webhook = metrics.clone();
        let webhook_backoff = config.webhook_backoff;
        Ok(Arc::new(Self {
            policy,
            recorder,
            creds: CredentialCache::default(),
            upstreams,
            resolver,
            parent,
            config,
            gauges,
            metrics,
            listeners,
            ticks: tokio::sync::watch::channel(0).0,
            tracker: TaskTracker::new(),
            hard_stop: tokio::sync::watch::channel(false).0,
            warn,
            budgets,
            inspector,
            webhook: crate::requests::Webhook::new(metrics_for_webhook, webhook_backoff),
            users: keys.users,
            stopping: tokio::sync::watch::channel(false).0,
            conns: TaskTracker::new(),
            client_slots,
            permits,
            refusing: conn::refusing_semaphore(),
            limit_warned: Default::default(),
            accept_warned: Default::default(),
            started: std::time::Instant::now(),
        }))
    }

    /// True at most once per `every` for the throttle `last`.
    fn throttle(&self, last: &std::sync::atomic::AtomicU64, every: Duration) -> bool {
        let now = self.started.elapsed().as_secs() + every.as_secs();
        let prev = last.load(Ordering::Relaxed);
        (prev == 0 || now >= prev + every.as_secs())
            && last
                .compare_exchange(prev, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }

    /// A connection from `client` went over `--max-connections-per-client`:
    /// counted, and said on stderr at most every 10 seconds.
    pub(crate) fn note_client_limit(&self, client: IpAddr) {
        self.metrics.connection_refused("client-limit");
        if self.throttle(&self.limit_warned, Duration::from_secs(10)) {
            tracing::warn!(
                %client,
                limit = self.client_slots.limit(),
                "a client went over --max-connections-per-client; its further connections are refused (socialgate_connections_refused_total counts them)"
            );
        }
    }

    /// An accept on `listener` failed (EMFILE and friends): counted, said
    /// at most every 10 seconds, and the listener waits before it tries
    /// again instead of spinning.
    pub(crate) async fn accept_failed(&self, listener: &'static str, e: &std::io::Error) {
        self.metrics.accept_error(listener);
        if self.throttle(&self.accept_warned, Duration::from_secs(10)) {
            tracing::warn!(listener, error = %e, "accept failed; retrying every 50 ms (socialgate_accept_errors_total counts them; raise the open-file limit if this is EMFILE)");
        }
        tokio::time::sleep(ACCEPT_BACKOFF).await;
    }

    /// Runs `task` as a tunnel or upgraded connection: counted in the
    /// tunnel gauge and waited for at shutdown.
    pub(crate) fn spawn_tunnel<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let gauge = TunnelGauge::new(&self.gauges);
        // Boxed: a block awaiting `task` itself would hold it twice (as
        // what it captured and as what it awaits), and every open tunnel
        // would pay for both copies for as long as it lives.
        let task = Box::pin(task);
        self.tracker.spawn(async move {
            let _gauge = gauge;
            task.await;
        });
    }
}

/// How long a listener waits after a failed accept (EMFILE and friends).
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// What one turn of a listener's accept loop got.
pub(crate) enum Accepted {
    /// A connection with its places in `--max-connections` and
    /// `--max-connections-per-client`.
    Client(conn::Client),
    /// A connection from a client already at `--max-connections-per-client`
    /// (it holds no place; the listener says no in its own way).
    OverClientLimit(tokio::net::TcpStream, SocketAddr),
}

/// Waits for a place in `--max-connections` (shared by every listener),
/// then for the next connection on `listener` (named in metrics and
/// warnings), and checks the client's cap. A failed accept (EMFILE) backs
/// off and tries again. `None` once `shutdown` resolves.
pub(crate) async fn accept<S>(
    listener: &TcpListener,
    state: &ProxyState,
    name: &'static str,
    shutdown: &mut S,
) -> Option<Accepted>
where
    S: Future<Output = ()> + Unpin,
{
    let permit = tokio::select! {
        p = state.permits.clone().acquire_owned() => p.ok()?,
        _ = &mut *shutdown => return None,
    };
    let (stream, peer) = loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => break x,
                Err(e) => state.accept_failed(name, &e).await,
            },
            _ = &mut *shutdown => return None,
        }
    };
    let Some(slot) = state.client_slots.acquire(peer.ip()) else {
        return Some(Accepted::OverClientLimit(stream, peer));
    };
    let _ = stream.set_nodelay(true);
    Some(Accepted::Client(conn::Client {
        stream,
        peer,
        held: conn::Held { permit, slot },
    }))
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
    let builder = conn::builder(&state.config);
    tokio::pin!(shutdown);
    while let Some(accepted) = accept(&listener, &state, "proxy", &mut shutdown).await {
        let client = match accepted {
            Accepted::Client(c) => c,
            Accepted::OverClientLimit(stream, peer) => {
                conn::refuse_over_client_limit(&state, stream, peer);
                continue;
            }
        };
        let peer = client.peer;
        let st = state.clone();
        let handle = move |req, kept| {
            let answer = handler::handle(st.clone(), peer, req, kept);
            async move {
                match answer.await {
                    Ok(resp) => resp,
                    Err(never) => match never {},
                }
            }
        };
        state
            .conns
            .spawn(conn::serve(state.clone(), builder.clone(), client, handle));
    }
    drop(listener);
    drain_connections(&state, drain).await
}

/// After a listener stopped accepting: tells client connections to finish,
/// waits up to `drain` for them and every tunnel, then closes what is still
/// open. Returns `None` when everything drained in time, else the tunnels
/// cut.
pub(crate) async fn drain_connections(state: &ProxyState, drain: Duration) -> Option<u64> {
    state.stopping.send_replace(true);
    let conns = state.conns.clone();
    let tracker = state.tracker.clone();
    let drained = tokio::time::timeout(drain, async {
        conns.close();
        conns.wait().await;
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
