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

use crate::accesslog::{LogConfig, Recorder, UserMapper, WriterHandle};
use crate::policy::{load_dir, ConfigErrors};
use crate::proxy::{self, ProxyConfig, ProxyState};
use crate::reload::{self, PolicyHandle};

/// Everything needed to start.
#[derive(Debug, Clone)]
pub struct AppConfig {
    pub policy_dir: PathBuf,
    pub listen: Vec<SocketAddr>,
    /// `None`: no access log at all.
    pub log: Option<LogConfig>,
    pub proxy: ProxyConfig,
    /// Poll the policy directory this often; `None` disables file watching.
    pub watch_interval: Option<Duration>,
    /// How long shutdown waits for in-flight requests and tunnels.
    pub drain: Duration,
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
    /// The proxy listeners' bound addresses.
    pub proxy_addrs: Vec<SocketAddr>,
    pub state: Arc<ProxyState>,
    pub recorder: Recorder,
    shutdown: watch::Sender<bool>,
    servers: Vec<JoinHandle<()>>,
    background: Vec<JoinHandle<()>>,
    writer: Option<WriterHandle>,
}

impl App {
    pub async fn start(cfg: AppConfig) -> Result<App, StartError> {
        let dir = cfg.policy_dir.clone();
        let policy = tokio::task::spawn_blocking(move || load_dir(&dir))
            .await
            .context("policy loader panicked")?
            .map_err(|errors| StartError::Policy {
                dir: cfg.policy_dir.clone(),
                errors,
            })?;
        let handle = PolicyHandle::new(policy);

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

        let users: UserMapper = Arc::new(|u: &str| u.to_string());
        let (recorder, writer) = match &cfg.log {
            Some(log) => {
                let (r, w) = Recorder::start(log.clone(), users, Vec::new(), None).with_context(|| {
                    format!(
                        "cannot open the access log {}",
                        log.path.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "(stdout)".into())
                    )
                })?;
                (r, Some(w))
            }
            None => (Recorder::without_log(Vec::new()), None),
        };

        let state = ProxyState::new(handle.clone(), recorder.clone(), cfg.proxy.clone(), proxy_addrs.clone());
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
                proxy::serve(l, st, stop, drain).await;
            }));
        }
        let mut background = Vec::new();
        if let Some(every) = cfg.watch_interval {
            background.push(tokio::spawn(reload::watch_files(handle.clone(), every)));
        }
        #[cfg(unix)]
        background.push(tokio::spawn(reload::watch_sighup(handle.clone())));
        #[cfg(unix)]
        {
            let r = recorder.clone();
            background.push(tokio::spawn(async move {
                use tokio::signal::unix::{signal, SignalKind};
                if let Ok(mut usr1) = signal(SignalKind::user_defined1()) {
                    while usr1.recv().await.is_some() {
                        tracing::info!("reopening the access log");
                        r.reopen();
                    }
                }
            }));
        }
        Ok(App {
            proxy_addrs,
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

    /// Stops accepting, drains in-flight work (bounded), flushes the log.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        for s in self.servers.drain(..) {
            let _ = s.await;
        }
        for b in self.background.drain(..) {
            b.abort();
        }
        let App { writer, recorder, state, .. } = self;
        drop(state);
        drop(recorder);
        if let Some(w) = writer {
            let _ = tokio::task::spawn_blocking(move || w.finish()).await;
        }
    }
}
