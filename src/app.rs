//! A running socialgate: listeners, policy handle, recorder and background
//! tasks, started and stopped as one.
//!
//! `socialgate run` and the integration tests both use [`App::start`], so the
//! tests exercise exactly what ships. Listeners are bound here (port 0
//! works), and their real addresses are reported back.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::accesslog::{
    DropHook, FaultHook, LogConfig, Observer, Recorder, UserMapper, WriterHandle,
};
use crate::admin::{self, AdminState};
use crate::ca::{CaPaths, CompanyCa};
use crate::metrics::Metrics;
use crate::policy::{load_dir, ConfigErrors, Policy};
use crate::proxy::inspect::{InspectConfig, Inspector};
use crate::proxy::{self, ProxyConfig, ProxyState};
use crate::pseudonym::Pseudonymizer;
use crate::reload::{self, PolicyHandle};

/// How long shutdown waits for the access-log writer to write what is
/// queued.
pub const LOG_FLUSH_LIMIT: Duration = Duration::from_secs(5);

/// Everything needed to start.
#[derive(Debug, Clone)]
pub struct AppConfig {
    pub policy_dir: PathBuf,
    pub listen: Vec<SocketAddr>,
    /// Transparent listeners, for traffic a gateway redirects (`--transparent`).
    pub transparent: Vec<SocketAddr>,
    /// `None`: no access log at all.
    pub log: Option<LogConfig>,
    pub proxy: ProxyConfig,
    /// Poll the policy directory this often; `None` disables file watching.
    pub watch_interval: Option<Duration>,
    /// How long shutdown waits for in-flight requests and tunnels.
    pub drain: Duration,
    /// Admin listener (`/metrics`, `/healthz`, ...); `None` disables it.
    pub admin: Option<SocketAddr>,
    /// The proxy address advertised in `/proxy.pac` (default: the first listener).
    /// `HOST:PORT`, a name or an address.
    pub pac_proxy: Option<String>,
    /// HMAC key for user pseudonyms, used unless the policy names its own
    /// `logging.key_file`; created (mode 0600) if missing.
    pub pseudonym_key: PathBuf,
    /// The company CA and extra upstream roots, unless the policy's
    /// `inspection:` names its own.
    pub inspection: InspectionFiles,
    /// Where the budget ledger is saved so that a restart does not refill
    /// every budget (`--budget-state`); `None`: memory only.
    pub budget_state: Option<PathBuf>,
}

/// Where the inspection files are, from flags (`--ca-cert`, `--ca-key`,
/// `--upstream-ca`); the policy's `inspection:` paths take precedence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InspectionFiles {
    pub ca: CaPaths,
    pub upstream_ca: Vec<PathBuf>,
}

impl Default for InspectionFiles {
    fn default() -> Self {
        InspectionFiles {
            ca: CaPaths {
                cert: PathBuf::from(crate::ca::DEFAULT_CERT),
                key: PathBuf::from(crate::ca::DEFAULT_KEY),
            },
            upstream_ca: Vec::new(),
        }
    }
}

impl InspectionFiles {
    /// The CA files in force for `policy`: its own, else these.
    pub fn ca_for(&self, policy: &Policy) -> CaPaths {
        match (&policy.inspection.ca_cert, &policy.inspection.ca_key) {
            (Some(cert), Some(key)) => CaPaths {
                cert: cert.clone(),
                key: key.clone(),
            },
            _ => self.ca.clone(),
        }
    }

    /// What the inspector is built from under `policy`, or `None` when
    /// there is no CA and nothing asks for one. A policy that asks for
    /// inspection (a rule's `inspect: true`, `inspection.default`) without
    /// a usable CA is an error that says where it asks and how to fix it.
    pub fn setup(&self, policy: &Policy) -> Result<Option<InspectConfig>, String> {
        let ca = self.ca_for(policy);
        let asked = policy.inspection.asked(&policy.rules);
        if asked.is_none() && !ca.cert.exists() && !ca.key.exists() {
            return Ok(None);
        }
        if let Err(e) = CompanyCa::load(&ca) {
            return match asked {
                Some(at) => Err(format!(
                    "{}: {at}: asks for TLS inspection, but the company CA cannot be used: {e}",
                    policy
                        .source
                        .dir
                        .join(crate::policy::compile::POLICY_FILE)
                        .display()
                )),
                None => Err(format!("the company CA cannot be used: {e}")),
            };
        }
        let mut upstream_ca = self.upstream_ca.clone();
        upstream_ca.extend(policy.inspection.upstream_ca.clone());
        Ok(Some(InspectConfig {
            ca,
            upstream_ca,
            leaf_validity: policy.inspection.leaf_validity,
            leaf_cache: policy.inspection.leaf_cache,
        }))
    }
}

/// What a clean shutdown did, for its closing log line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stopped {
    /// Client connections open when shutdown began; each was let finish
    /// the request it was serving.
    pub connections_at_stop: u64,
    /// Tunnels and WebSockets open when shutdown began.
    pub tunnels_at_stop: u64,
    /// The drain deadline (`--drain-timeout`) passed before all had ended.
    pub deadline_hit: bool,
    /// Tunnels still open at the deadline, and closed.
    pub tunnels_cut: u64,
    /// Access-log records written, and dropped (counted), since start.
    pub log_records: u64,
    pub log_dropped: u64,
}

/// Why startup failed.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("the policy in {dir} has errors:\n{errors}")]
    Policy { dir: PathBuf, errors: ConfigErrors },
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

pub struct App {
    /// Where the budget ledger is saved (`--budget-state`).
    budget_state: Option<PathBuf>,
    /// The proxy listeners' bound addresses.
    pub proxy_addrs: Vec<SocketAddr>,
    /// The transparent listeners' bound addresses.
    pub transparent_addrs: Vec<SocketAddr>,
    /// The admin listener's bound address, if enabled.
    pub admin_addr: Option<SocketAddr>,
    pub metrics: Arc<Metrics>,
    pub state: Arc<ProxyState>,
    pub recorder: Recorder,
    shutdown: watch::Sender<bool>,
    /// Each returns the tunnels it had to cut at the drain deadline, if it passed.
    servers: Vec<JoinHandle<Option<u64>>>,
    background: Vec<JoinHandle<()>>,
    writer: Option<WriterHandle>,
}

impl App {
    pub async fn start(cfg: AppConfig) -> Result<App, StartError> {
        if cfg.listen.is_empty() {
            return Err(
                anyhow::anyhow!("no proxy listening address; give at least one --listen").into(),
            );
        }
        let dir = cfg.policy_dir.clone();
        // Taken before loading, so a change made while starting is seen.
        // The htpasswd file is only known after loading; a change to it in
        // that window is caught on the next policy change.
        let mut initial_fingerprint =
            reload::fingerprint(&reload::policy_files(&cfg.policy_dir, None));
        let policy = tokio::task::spawn_blocking(move || load_dir(&dir))
            .await
            .context("policy loader panicked")?
            .map_err(|errors| StartError::Policy {
                dir: cfg.policy_dir.clone(),
                errors,
            })?;
        let key_path = policy
            .logging
            .key_file
            .clone()
            .unwrap_or_else(|| cfg.pseudonym_key.clone());
        let pseudonymizer = if key_path.exists() {
            Pseudonymizer::from_key_file(&key_path)
        } else {
            let p = Pseudonymizer::generate_key_file(&key_path);
            if p.is_ok() {
                tracing::info!(key = %key_path.display(), "created a new pseudonym key (mode 0600); keep it to be able to reveal pseudonyms");
            }
            p
        }
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("cannot use the pseudonym key {} (set --pseudonym-key or logging.key_file)", key_path.display()))?;
        if let Some(p) = &policy.auth.htpasswd_path {
            initial_fingerprint.extend(reload::fingerprint(std::slice::from_ref(p)));
        }
        let inspector = match cfg
            .inspection
            .setup(&policy)
            .map_err(|e| anyhow::anyhow!(e))?
        {
            Some(ic) => {
                let i = tokio::task::spawn_blocking(move || Inspector::new(&ic))
                    .await
                    .context("inspection set-up panicked")?
                    .context("cannot set up TLS inspection")?;
                tracing::info!(ca = %i.leaves.ca_subject(), upstream_roots = i.roots, "TLS inspection ready");
                Some(Arc::new(i))
            }
            None => None,
        };
        let handle = PolicyHandle::new(policy);
        let metrics = Metrics::new();
        metrics.set_policy(&handle.load());
        {
            let m = metrics.clone();
            handle.on_reload(move |p, ok| m.reloaded(p, ok));
        }
        if inspector.is_none() {
            handle.on_reload(|p, ok| {
                if let (true, Some(at)) = (ok, p.inspection.asked(&p.rules)) {
                    tracing::warn!(%at, "the reloaded policy asks for TLS inspection, but socialgate started without a company CA: nothing is decrypted until it is restarted with one (`socialgate ca init`)");
                }
            });
        }

        let mut listeners = Vec::new();
        for addr in &cfg.listen {
            let l = TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} (is another proxy running there? choose another address with --listen)"))?;
            listeners.push(l);
        }
        let proxy_addrs: Vec<SocketAddr> = listeners
            .iter()
            .map(|l| l.local_addr())
            .collect::<Result<_, _>>()
            .context("cannot read the listening address")?;
        let mut transparent = Vec::new();
        for addr in &cfg.transparent {
            let l = TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} for redirected traffic (choose another address with --transparent)"))?;
            transparent.push(l);
        }
        let transparent_addrs: Vec<SocketAddr> = transparent
            .iter()
            .map(|l| l.local_addr())
            .collect::<Result<_, _>>()
            .context("cannot read the transparent listening address")?;

        // Continue links and acknowledgement keys: derived from the
        // pseudonym key, so replicas that share it accept each other's links.
        let warn_key = crate::warn::WarnKey::new(&pseudonymizer.derive_key(crate::warn::KEY_LABEL));
        // Budget entries in the state file and in Redis are tagged with a
        // key derived the same way, so replicas share one person's budget.
        let pseudonymizer_budget_key = pseudonymizer.derive_key(crate::budget::KEY_LABEL);
        // Whether to pseudonymise is the exchange's own policy snapshot's
        // choice (`Event::pseudonymize`); the writer only applies the key.
        let users: UserMapper = Arc::new(move |u: &str| pseudonymizer.pseudonym(u));
        let observers: Vec<Arc<dyn Observer>> = vec![metrics.clone()];
        // Every lost record, whatever the cause (queue full, write failed).
        let on_drop: DropHook = {
            let m = metrics.clone();
            Arc::new(move |n| m.log_dropped(n))
        };
        // Every failed write and failed reopen: the alarm when records are
        // kept in a rotated file because the new one cannot be opened.
        let on_fault: FaultHook = {
            let m = metrics.clone();
            Arc::new(move |what| m.log_fault(what))
        };
        let (recorder, writer) = match &cfg.log {
            Some(log) => {
                let (r, w) = Recorder::start(
                    log.clone(),
                    users.clone(),
                    observers,
                    Some(on_drop),
                    Some(on_fault),
                )
                .with_context(|| {
                    format!(
                        "cannot open the access log {}",
                        log.path
                            .as_ref()
                            .map(|p| p.display().to_string())
                            .unwrap_or_else(|| "(stdout)".into())
                    )
                })?;
                (r, Some(w))
            }
            None => (Recorder::without_log(observers), None),
        };

        let mut self_addrs = proxy_addrs.clone();
        self_addrs.extend(&transparent_addrs);
        let admin_listener = match cfg.admin {
            Some(addr) => {
                let l = TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on {addr} for the admin endpoints (choose another with --admin, or --admin off)"))?;
                self_addrs.push(l.local_addr().context("cannot read the admin address")?);
                Some(l)
            }
            None => None,
        };
        let admin_addr = admin_listener.as_ref().and_then(|l| l.local_addr().ok());
        let state = ProxyState::new(
            handle.clone(),
            recorder.clone(),
            cfg.proxy.clone(),
            self_addrs,
            metrics.clone(),
            proxy::DerivedKeys {
                warn: warn_key,
                budget: pseudonymizer_budget_key,
                users,
            },
            inspector,
        )
        .map_err(anyhow::Error::from)?;
        let (shutdown, shutdown_rx) = watch::channel(false);
        let mut servers = Vec::new();
        for l in listeners {
            let st = state.clone();
            let mut rx = shutdown_rx.clone();
            let drain = cfg.drain;
            servers.push(tokio::spawn(async move {
                let stop = async move {
                    let _ = rx.wait_for(|s| *s).await;
                };
                proxy::serve(l, st, stop, drain).await
            }));
        }
        for l in transparent {
            let st = state.clone();
            let mut rx = shutdown_rx.clone();
            let drain = cfg.drain;
            servers.push(tokio::spawn(async move {
                let stop = async move {
                    let _ = rx.wait_for(|s| *s).await;
                };
                proxy::transparent::serve(l, st, stop, drain).await
            }));
        }
        let mut background = Vec::new();
        if let Some(l) = admin_listener {
            let admin = Arc::new(AdminState {
                proxy: state.clone(),
                metrics: metrics.clone(),
                pac_proxy: cfg
                    .pac_proxy
                    .clone()
                    .unwrap_or_else(|| proxy_addrs[0].to_string()),
            });
            let mut rx = shutdown_rx.clone();
            background.push(tokio::spawn(async move {
                let stop = async move {
                    let _ = rx.wait_for(|s| *s).await;
                };
                admin::serve(l, admin, stop).await;
            }));
        }
        if let Some(every) = cfg.watch_interval {
            background.push(tokio::spawn(reload::watch_files(
                handle.clone(),
                every,
                initial_fingerprint,
            )));
        }
        if let Some(path) = &cfg.budget_state {
            match crate::budget::snapshot::load(&state.budgets, path) {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(file = %path.display(), entries = n, "budgets spent today restored")
                }
                Err(e) => tracing::warn!(
                    error = %e,
                    "budgets start empty: the budget state file cannot be used (it is replaced at the next save; move it away to keep it)"
                ),
            }
        }
        background.push(tokio::spawn(crate::budget::maintain(
            state.budgets.clone(),
            handle.clone(),
            cfg.budget_state.clone(),
        )));
        #[cfg(unix)]
        background.push(tokio::spawn(reload::watch_sighup(handle.clone())));
        background.push(tokio::spawn(crate::memory::trim_after_bursts(
            state.gauges.clone(),
        )));
        background.push(tokio::spawn(proxy::clock::run(
            handle.clone(),
            cfg.proxy.clock.clone(),
            state.ticks.clone(),
        )));
        #[cfg(unix)]
        {
            let r = recorder.clone();
            // Installed now, before "listening" is reported (see watch_sighup).
            let usr1 =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1());
            background.push(tokio::spawn(async move {
                if let Ok(mut usr1) = usr1 {
                    while usr1.recv().await.is_some() {
                        tracing::info!("reopening the access log");
                        r.reopen();
                    }
                }
            }));
        }
        Ok(App {
            budget_state: cfg.budget_state.clone(),
            proxy_addrs,
            transparent_addrs,
            admin_addr,
            metrics,
            state,
            recorder,
            shutdown,
            servers,
            background,
            writer,
        })
    }

    pub fn policy(&self) -> &Arc<PolicyHandle> {
        &self.state.policy
    }

    /// Stops accepting, drains in-flight work (bounded), flushes the log,
    /// and says what it drained.
    pub async fn shutdown(mut self) -> Stopped {
        let gauges = &self.state.gauges;
        let mut stopped = Stopped {
            connections_at_stop: gauges.connections.load(std::sync::atomic::Ordering::SeqCst),
            tunnels_at_stop: gauges.tunnels.load(std::sync::atomic::Ordering::SeqCst),
            ..Stopped::default()
        };
        let _ = self.shutdown.send(true);
        for s in self.servers.drain(..) {
            // Listeners share one set of tunnels: each counts the same ones.
            if let Ok(Some(cut)) = s.await {
                stopped.deadline_hit = true;
                stopped.tunnels_cut = stopped.tunnels_cut.max(cut);
            }
        }
        for b in self.background.drain(..) {
            b.abort();
        }
        // Every tunnel has been recorded (and charged): save what was spent.
        let budget_file = self
            .budget_state
            .clone()
            .filter(|p| !self.state.budgets.ledger.is_empty() || p.exists());
        if let Some(path) = budget_file {
            let budgets = self.state.budgets.clone();
            let saved = tokio::task::spawn_blocking(move || {
                crate::budget::snapshot::save(&budgets, &path).map_err(|e| (path, e))
            })
            .await;
            if let Ok(Err((path, e))) = saved {
                tracing::warn!(file = %path.display(), error = %e, "cannot save the budgets spent today");
            }
        }
        let App {
            writer,
            recorder,
            state,
            ..
        } = self;
        drop(state);
        if let Some(w) = writer {
            // A stalled disk must not keep the process from exiting; what
            // the writer could not write by then is counted as dropped.
            let _ = tokio::task::spawn_blocking(move || w.finish_within(LOG_FLUSH_LIMIT)).await;
        }
        stopped.log_records = recorder.written();
        stopped.log_dropped = recorder.dropped();
        stopped
    }
}
