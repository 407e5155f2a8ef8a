//! Prometheus metrics, derived from the one `Event` per request or tunnel.
//!
//! [`Metrics`] owns its own registry, so a test can read exact counts. Labels
//! are bounded: groups, platforms and rules come from the policy (`none` /
//! `other` when absent), actions, modes, reasons, directions and error
//! labels are fixed sets. A user name or a raw host is never a label.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::accesslog::Observer;
use crate::event::{Event, Kind, Tls};
use crate::policy::{Policy, Reason};
use crate::proxy::inspect::Inspector;

/// Live counts the proxy keeps and the metrics read at scrape time.
#[derive(Debug, Default)]
pub struct Gauges {
    /// Client connections speaking HTTP (parked ones included).
    pub connections: std::sync::atomic::AtomicU64,
    /// Of those, parked: idle keep-alive connections holding no buffers.
    pub parked: std::sync::atomic::AtomicU64,
    /// Times a connection was parked, since start.
    pub parks: std::sync::atomic::AtomicU64,
    pub tunnels: std::sync::atomic::AtomicU64,
    pub in_flight: std::sync::atomic::AtomicU64,
    /// Plain-HTTP upstream connections idle in the shared set (not held by
    /// a client connection).
    pub upstream_idle: std::sync::atomic::AtomicU64,
}

/// Series whose labels come from fixed sets, created on first use (so an
/// unused one is not exported as 0) and then kept.
#[derive(Default)]
struct FixedHandles {
    /// By kind (request, tunnel) and status class (1xx..5xx, other).
    requests: [[std::sync::OnceLock<prometheus::IntCounter>; 6]; 3],
    /// By kind.
    request_seconds: [std::sync::OnceLock<Histogram>; 3],
    /// By error kind, in `ErrorKind::ALL` order.
    errors: [std::sync::OnceLock<prometheus::IntCounter>; crate::outcome::ErrorKind::ALL.len()],
}

/// The handles of one (group, platform, action, mode, rule) combination,
/// cached per thread: the hot path then neither hashes the label strings
/// nor touches the families' shared locks and reference counts. The entry
/// keeps the label strings alive, so a string's address can identify it.
struct Handles {
    _keep: (Option<Arc<str>>, Option<Arc<str>>, Arc<str>),
    decision: prometheus::IntCounter,
    up: std::cell::OnceCell<prometheus::IntCounter>,
    down: std::cell::OnceCell<prometheus::IntCounter>,
    activity: [std::cell::OnceCell<prometheus::IntCounter>; crate::outcome::Activity::ALL.len()],
}

/// (metrics instance, group, platform, rule addresses, action, mode)
type HandleKey = (u64, usize, usize, usize, u8, u8);

/// Entries kept per thread at most; the cache is cleared when full (a
/// policy with very many rules, or many reloads).
const HANDLE_CACHE_MAX: usize = 4096;

thread_local! {
    static HANDLES: std::cell::RefCell<std::collections::HashMap<HandleKey, Handles>> =
        std::cell::RefCell::new(std::collections::HashMap::new());
}

/// Tells `Metrics` instances apart in the per-thread cache (tests make many).
static METRICS_IDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

fn addr(s: Option<&Arc<str>>) -> usize {
    s.map_or(0, |a| Arc::as_ptr(a) as *const u8 as usize)
}

const KINDS: [&str; 3] = ["request", "tunnel", "access-request"];
const CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "other"];

/// Every metric socialgate exports (docs/metrics.md lists them).
pub struct Metrics {
    registry: Registry,
    decisions: IntCounterVec,
    bytes: IntCounterVec,
    requests: IntCounterVec,
    activities: IntCounterVec,
    activity_unseen: IntCounterVec,
    errors: IntCounterVec,
    auth_failures: IntCounterVec,
    decision_seconds: Histogram,
    upstream_connect_seconds: Histogram,
    request_seconds: HistogramVec,
    reloads: IntCounterVec,
    policy_info: IntGaugeVec,
    log_dropped: IntCounter,
    warnings: IntCounterVec,
    warn_store_errors: IntCounterVec,
    budgets_exhausted: IntCounterVec,
    access_requests: IntCounterVec,
    access_request_webhook: IntCounterVec,
    budget_untracked: IntCounter,
    budget_store_errors: IntCounterVec,
    log_failures: IntCounterVec,
    /// Handles of the fixed-label series, made on first use: the hot path
    /// then skips hashing labels and the family's lock.
    fixed: FixedHandles,
    /// This instance's key in the per-thread handle cache.
    id: u64,
    connections: IntGauge,
    parked: IntGauge,
    upstream_idle: IntGauge,
    tunnel_buffers: IntGauge,
    connections_refused: IntCounterVec,
    accept_errors: IntCounterVec,
    dns_lookups: IntCounterVec,
    tunnels: IntGauge,
    in_flight: IntGauge,
    tls_tunnels: IntCounterVec,
    pinned_hosts: IntGauge,
    leaves_cached: IntGauge,
    leaves_minted: IntGauge,
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    // Names and labels are constants of this module; a clash is a programming error caught by every test.
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(c.clone())).expect("unique metric");
    c
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("valid metric");
    r.register(Box::new(g.clone())).expect("unique metric");
    g
}

fn histogram(r: &Registry, name: &str, help: &str, buckets: Vec<f64>) -> Histogram {
    let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
        .expect("valid metric");
    r.register(Box::new(h.clone())).expect("unique metric");
    h
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let r = Registry::new();
        let decisions = counter_vec(
            &r,
            "socialgate_decisions_total",
            "Policy decisions, by the client's group, the destination platform, the action, the mode and the deciding rule.",
            &["group", "platform", "action", "mode", "rule"],
        );
        let bytes = counter_vec(
            &r,
            "socialgate_bytes_total",
            "Bytes relayed, by group, platform and direction (up = client to site, down = site to client).",
            &["group", "platform", "direction"],
        );
        let requests = counter_vec(
            &r,
            "socialgate_requests_total",
            "Finished requests and tunnels, by kind (request, tunnel) and status class (2xx, 4xx, ...).",
            &["kind", "status"],
        );
        let activities = counter_vec(
            &r,
            "socialgate_activities_total",
            "Requests seen (plain HTTP, inspected HTTPS), by platform and activity (read, post, comment, react, share, upload, message, login, write, unknown). A rising share of write or unknown on a platform means its signatures need updating.",
            &["platform", "activity"],
        );
        let activity_unseen = counter_vec(
            &r,
            "socialgate_activity_unseen_total",
            "Decisions where a rule about activities could not apply because the traffic was a tunnel that is not inspected, by rule.",
            &["rule"],
        );
        let errors = counter_vec(
            &r,
            "socialgate_errors_total",
            "Requests and tunnels that ended with an error, by error label (upstream-connect, client-closed, ...).",
            &["error"],
        );
        let auth_failures = counter_vec(
            &r,
            "socialgate_auth_failures_total",
            "Proxy authentication failures: reason auth-required (no credentials) or auth-failed (wrong credentials).",
            &["reason"],
        );
        let decision_seconds = histogram(
            &r,
            "socialgate_decision_seconds",
            "Time to identify the client and decide a request (bcrypt checks excluded once cached).",
            vec![1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 1e-3, 1e-2, 0.1],
        );
        let upstream_connect_seconds = histogram(
            &r,
            "socialgate_upstream_connect_seconds",
            "Time to resolve and connect to an upstream.",
            vec![
                1e-4, 5e-4, 1e-3, 5e-3, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ],
        );
        let request_seconds = HistogramVec::new(
            HistogramOpts::new(
                "socialgate_request_seconds",
                "Duration of requests (to the end of the response body) and tunnels (to close), by kind.",
            )
            .buckets(vec![0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0]),
            &["kind"],
        )
        .expect("valid metric");
        r.register(Box::new(request_seconds.clone()))
            .expect("unique metric");
        let reloads = counter_vec(
            &r,
            "socialgate_policy_reloads_total",
            "Policy reload attempts, by result (ok, error). On error the previous policy stays in force.",
            &["result"],
        );
        let policy_info = IntGaugeVec::new(
            Opts::new(
                "socialgate_policy_info",
                "The policy in force: 1 for its schema version and content hash.",
            ),
            &["version", "hash"],
        )
        .expect("valid metric");
        r.register(Box::new(policy_info.clone()))
            .expect("unique metric");
        let log_dropped = IntCounter::new(
            "socialgate_access_log_dropped_total",
            "Access-log records that did not reach the log: dropped because the writer could not keep up (queue full) or because writing failed (disk full, I/O error). Every lost record is counted here.",
        )
        .expect("valid metric");
        r.register(Box::new(log_dropped.clone()))
            .expect("unique metric");
        let warnings = counter_vec(
            &r,
            "socialgate_warnings_total",
            "What enforced warn rules did, by group, platform, rule and outcome (shown, held, continued, acknowledged, unshown, bad-link, unsaved).",
            &["group", "platform", "rule", "outcome"],
        );
        let warn_store_errors = counter_vec(
            &r,
            "socialgate_warn_store_errors_total",
            "Warn acknowledgement lookups and saves that failed because the Redis state store could not be reached or did not answer in time (the warning was shown again), by operation (lookup, save).",
            &["op"],
        );
        let budgets_exhausted = counter_vec(
            &r,
            "socialgate_budgets_exhausted_total",
            "Daily budgets that ran out: a person spent a rule's budget (once per person, rule and day on each replica), by rule.",
            &["rule"],
        );
        let access_requests = counter_vec(
            &r,
            "socialgate_access_requests_total",
            "Access requests people sent from block pages (rules with request_access), by the rule they asked about; each is an access-request record in the access log.",
            &["rule"],
        );
        let access_request_webhook = counter_vec(
            &r,
            "socialgate_access_request_webhook_total",
            "Access requests posted to requests.webhook, by result: delivered (a 2xx answer) or failed (no 2xx after every retry, or too many waiting; the access log still has them).",
            &["result"],
        );
        let budget_untracked = IntCounter::new(
            "socialgate_budget_untracked_total",
            "Decisions under a budget made without it because the budget ledger was full (it holds 100,000 person-rule entries a day).",
        )
        .expect("valid metric");
        r.register(Box::new(budget_untracked.clone()))
            .expect("unique metric");
        let budget_store_errors = counter_vec(
            &r,
            "socialgate_budget_store_errors_total",
            "Budget writes and reads to the Redis state store that failed (budgets then fail open until it answers), by operation (sync).",
            &["op"],
        );
        let log_failures = counter_vec(
            &r,
            "socialgate_access_log_failures_total",
            "Access-log failures, by what failed: write (a failure episode began; its lost records are in socialgate_access_log_dropped_total) or reopen (after SIGUSR1, or because the file was removed: records stay in the old file while it exists, else are dropped and counted).",
            &["what"],
        );
        let connections = gauge(
            &r,
            "socialgate_active_connections",
            "Open client connections.",
        );
        let parked = gauge(
            &r,
            "socialgate_parked_connections",
            "Idle keep-alive client connections parked: they hold no HTTP buffers until their next request.",
        );
        let upstream_idle = gauge(
            &r,
            "socialgate_upstream_idle_connections",
            "Plain-HTTP upstream connections kept alive and idle, waiting for any client's next request to their address (a client connection keeps the one it used until it parks or closes).",
        );
        let tunnel_buffers = gauge(
            &r,
            "socialgate_tunnel_buffers",
            "64 KiB copy buffers lent to tunnels right now: one per tunnel direction that is moving data (idle tunnels hold none).",
        );
        let connections_refused = counter_vec(
            &r,
            "socialgate_connections_refused_total",
            "Client connections refused before any request was read, by reason (client-limit: over --max-connections-per-client).",
            &["reason"],
        );
        let accept_errors = counter_vec(
            &r,
            "socialgate_accept_errors_total",
            "Failed accepts, by listener (proxy, transparent, admin); each waits 50 ms before the next try. EMFILE means the open-file limit is too low.",
            &["listener"],
        );
        let dns_lookups = counter_vec(
            &r,
            "socialgate_dns_lookups_total",
            "DNS lookups that missed the cache, by result: ok, no-such-name (NXDOMAIN or no address records; cached for 5-60 s), timeout, error.",
            &["result"],
        );
        let tunnels = gauge(
            &r,
            "socialgate_active_tunnels",
            "Open CONNECT tunnels and upgraded (WebSocket) connections.",
        );
        let in_flight = gauge(
            &r,
            "socialgate_requests_in_flight",
            "Requests being handled right now.",
        );
        let tls_tunnels = counter_vec(
            &r,
            "socialgate_tls_tunnels_total",
            "TLS tunnels by what socialgate did with them: intercepted (decrypted), passthrough (not asked, or never allowed), pinned (a rule asked, but the client refused socialgate's certificate for this host recently).",
            &["tls"],
        );
        let pinned_hosts = gauge(
            &r,
            "socialgate_inspection_pinned_hosts",
            "Hosts passed through undecrypted because a client refused socialgate's certificate for them recently (inspection.learn_pinned).",
        );
        let leaves_cached = gauge(
            &r,
            "socialgate_inspection_leaf_certificates",
            "Leaf certificates in the inspection cache (bounded by inspection.leaf_cache).",
        );
        let leaves_minted = gauge(
            &r,
            "socialgate_inspection_leaf_certificates_minted",
            "Leaf certificates minted since start.",
        );
        Arc::new(Metrics {
            registry: r,
            decisions,
            bytes,
            requests,
            activities,
            activity_unseen,
            errors,
            auth_failures,
            decision_seconds,
            upstream_connect_seconds,
            request_seconds,
            reloads,
            policy_info,
            log_dropped,
            warnings,
            warn_store_errors,
            budgets_exhausted,
            access_requests,
            access_request_webhook,
            budget_untracked,
            budget_store_errors,
            log_failures,
            fixed: FixedHandles::default(),
            id: METRICS_IDS.fetch_add(1, Ordering::Relaxed),
            connections,
            parked,
            upstream_idle,
            tunnel_buffers,
            connections_refused,
            accept_errors,
            dns_lookups,
            tunnels,
            in_flight,
            tls_tunnels,
            pinned_hosts,
            leaves_cached,
            leaves_minted,
        })
    }

    pub fn observe_decision_time(&self, d: Duration) {
        self.decision_seconds.observe(d.as_secs_f64());
    }

    pub fn observe_connect_time(&self, d: Duration) {
        self.upstream_connect_seconds.observe(d.as_secs_f64());
    }

    /// A client connection refused before any request, for `reason`.
    pub fn connection_refused(&self, reason: &str) {
        self.connections_refused.with_label_values(&[reason]).inc();
    }

    /// A DNS lookup that missed the cache ended with `result`.
    pub fn dns_lookup(&self, result: &str) {
        self.dns_lookups.with_label_values(&[result]).inc();
    }

    /// An accept failed on `listener`.
    pub fn accept_error(&self, listener: &str) {
        self.accept_errors.with_label_values(&[listener]).inc();
    }

    /// `n` access-log records did not reach the log (queue full or write failed).
    pub fn log_dropped(&self, n: u64) {
        self.log_dropped.inc_by(n);
    }

    /// A warn acknowledgement lookup or save failed (the store is unreachable).
    pub fn warn_store_error(&self, op: &str) {
        self.warn_store_errors.with_label_values(&[op]).inc();
    }

    /// A person's daily budget under `rule` ran out.
    pub fn budget_exhausted(&self, rule: &str) {
        self.budgets_exhausted.with_label_values(&[rule]).inc();
    }

    /// An access request's webhook post ended: `delivered` or `failed`.
    pub fn access_request_webhook(&self, result: &str) {
        self.access_request_webhook
            .with_label_values(&[result])
            .inc();
    }

    /// A decision under a budget was made without it (the ledger is full).
    pub fn budget_untracked(&self) {
        self.budget_untracked.inc();
    }

    /// A budget sync with Redis failed.
    pub fn budget_store_error(&self, op: &str) {
        self.budget_store_errors.with_label_values(&[op]).inc();
    }

    /// The access log failed to `what` ("write" or "reopen").
    pub fn log_fault(&self, what: &str) {
        self.log_failures.with_label_values(&[what]).inc();
    }

    /// Records a reload attempt and the policy now in force.
    pub fn reloaded(&self, policy: &Policy, ok: bool) {
        self.reloads
            .with_label_values(&[if ok { "ok" } else { "error" }])
            .inc();
        self.set_policy(policy);
    }

    pub fn set_policy(&self, policy: &Policy) {
        self.policy_info.reset();
        self.policy_info
            .with_label_values(&[&policy.source.version.to_string(), &policy.source.hash])
            .set(1);
    }

    /// The text exposition, with the live gauges read at scrape time.
    pub fn render(&self, gauges: &Gauges, inspector: Option<&Inspector>) -> String {
        if let Some(i) = inspector {
            self.pinned_hosts.set(i.pinned_hosts() as i64);
            self.leaves_cached.set(i.leaves.cached() as i64);
            self.leaves_minted.set(i.leaves.minted() as i64);
        }
        self.connections
            .set(gauges.connections.load(Ordering::Relaxed) as i64);
        self.tunnels
            .set(gauges.tunnels.load(Ordering::Relaxed) as i64);
        self.parked
            .set(gauges.parked.load(Ordering::Relaxed) as i64);
        self.upstream_idle
            .set(gauges.upstream_idle.load(Ordering::Relaxed) as i64);
        self.tunnel_buffers
            .set(crate::proxy::copy::POOL.lent() as i64);
        self.in_flight
            .set(gauges.in_flight.load(Ordering::Relaxed) as i64);
        let mut buf = Vec::new();
        // Encoding into a Vec only fails on invalid metric families, which `register` rejects.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }
}

impl Metrics {
    /// Every record counts as a finished request or tunnel, with its
    /// duration and error.
    fn requests_and_durations(&self, ev: &Event) {
        let kind = match ev.kind {
            Kind::Request => 0,
            Kind::Tunnel => 1,
            Kind::AccessRequest => 2,
        };
        let class = match ev.status {
            100..=199 => 0,
            200..=299 => 1,
            300..=399 => 2,
            400..=499 => 3,
            500..=599 => 4,
            _ => 5,
        };
        self.fixed.requests[kind][class]
            .get_or_init(|| {
                self.requests
                    .with_label_values(&[KINDS[kind], CLASSES[class]])
            })
            .inc();
        self.fixed.request_seconds[kind]
            .get_or_init(|| self.request_seconds.with_label_values(&[KINDS[kind]]))
            .observe(ev.duration_ms as f64 / 1000.0);
        if let Some(e) = ev.error {
            // Every kind is in ALL.
            let i = crate::outcome::ErrorKind::ALL
                .iter()
                .position(|k| *k == e)
                .unwrap_or(0);
            self.fixed.errors[i]
                .get_or_init(|| self.errors.with_label_values(&[e.as_str()]))
                .inc();
        }
    }
}

impl Observer for Metrics {
    fn observe(&self, ev: &Event) {
        let group = ev.group.as_deref().unwrap_or("none");
        let platform = ev.platform.as_deref().unwrap_or("other");
        if let (Kind::Tunnel, Some(tls)) = (ev.kind, ev.tls) {
            self.tls_tunnels.with_label_values(&[tls.as_str()]).inc();
        }
        // An inspected tunnel's requests each count as a decision with
        // their bytes; the tunnel record itself is their container.
        let container = ev.kind == Kind::Tunnel && ev.tls == Some(Tls::Intercepted);
        self.requests_and_durations(ev);
        if ev.kind == Kind::AccessRequest {
            // Not a decision: counted apart, by the rule asked about.
            self.access_requests.with_label_values(&[&ev.rule]).inc();
            return;
        }
        if container {
            return;
        }
        let key: HandleKey = (
            self.id,
            addr(ev.group.as_ref()),
            addr(ev.platform.as_ref()),
            addr(Some(&ev.rule)),
            ev.action as u8,
            ev.mode as u8,
        );
        HANDLES.with(|cache| {
            let mut cache = cache.borrow_mut();
            if cache.len() >= HANDLE_CACHE_MAX && !cache.contains_key(&key) {
                cache.clear();
            }
            let h = cache.entry(key).or_insert_with(|| Handles {
                _keep: (ev.group.clone(), ev.platform.clone(), ev.rule.clone()),
                decision: self.decisions.with_label_values(&[
                    group,
                    platform,
                    ev.action.as_str(),
                    ev.mode.as_str(),
                    &ev.rule,
                ]),
                up: Default::default(),
                down: Default::default(),
                activity: Default::default(),
            });
            h.decision.inc();
            if ev.bytes_up > 0 {
                h.up.get_or_init(|| self.bytes.with_label_values(&[group, platform, "up"]))
                    .inc_by(ev.bytes_up);
            }
            if ev.bytes_down > 0 {
                h.down
                    .get_or_init(|| self.bytes.with_label_values(&[group, platform, "down"]))
                    .inc_by(ev.bytes_down);
            }
            if let Some(a) = ev.activity {
                let i = crate::outcome::Activity::ALL
                    .iter()
                    .position(|x| *x == a)
                    .unwrap_or(0);
                h.activity[i]
                    .get_or_init(|| self.activities.with_label_values(&[platform, a.as_str()]))
                    .inc();
            }
        });
        if let Some(rule) = &ev.activity_unseen {
            self.activity_unseen.with_label_values(&[&**rule]).inc();
        }
        if let Some(w) = ev.warn {
            self.warnings
                .with_label_values(&[group, platform, &ev.rule, w.as_str()])
                .inc();
        }
        if matches!(ev.reason, Reason::AuthFailed | Reason::AuthRequired) {
            self.auth_failures
                .with_label_values(&[ev.reason.as_str()])
                .inc();
        }
    }
}
