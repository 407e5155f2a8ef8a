//! The policy snapshot and hot reload.
//!
//! The compiled policy is immutable. A reload reads, validates and compiles
//! the directory aside, then swaps the snapshot once ([`arc_swap`]); requests
//! in flight keep the snapshot they loaded, and new requests see the new
//! one. On any error the old policy keeps serving and the error is logged
//! with its location. Reloads are triggered by SIGHUP, by a change of any
//! file in the policy directory (polled, which also works for Kubernetes
//! ConfigMap symlink swaps where inotify does not), and by the admin API.
//! Open tunnels subscribe to the generation counter and re-check themselves.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use tokio::sync::watch;

use crate::policy::{load_dir, ConfigErrors, Policy};

/// Outcome counters, read by metrics.
#[derive(Debug, Default)]
pub struct ReloadStats {
    pub ok: AtomicU64,
    pub failed: AtomicU64,
}

/// A callback run after each reload attempt.
type ReloadHook = Box<dyn Fn(&Policy, bool) + Send + Sync>;

/// The current policy, and the means to replace it.
pub struct PolicyHandle {
    current: ArcSwap<Policy>,
    dir: PathBuf,
    generation: watch::Sender<u64>,
    /// Serialises reloads so two triggers cannot interleave.
    reloading: Mutex<()>,
    pub stats: ReloadStats,
    /// Called after each reload attempt with its result (metrics hook).
    on_reload: Mutex<Vec<ReloadHook>>,
}

impl PolicyHandle {
    pub fn new(policy: Policy) -> Arc<Self> {
        let dir = policy.source.dir.clone();
        let (generation, _) = watch::channel(0);
        Arc::new(Self {
            current: ArcSwap::from_pointee(policy),
            dir,
            generation,
            reloading: Mutex::new(()),
            stats: ReloadStats::default(),
            on_reload: Mutex::new(Vec::new()),
        })
    }

    /// The snapshot to use for one request.
    pub fn load(&self) -> Arc<Policy> {
        self.current.load_full()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Changes whenever a new policy is swapped in.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    pub fn generation(&self) -> u64 {
        *self.generation.borrow()
    }

    /// Registers a hook called after every reload attempt.
    pub fn on_reload(&self, f: impl Fn(&Policy, bool) + Send + Sync + 'static) {
        self.on_reload
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Box::new(f));
    }

    /// Compiles the directory aside and swaps it in; keeps the old policy on
    /// error. Blocking (file reads): call from a blocking context.
    pub fn reload(&self, trigger: &str) -> Result<Arc<Policy>, ConfigErrors> {
        let _guard = self.reloading.lock().unwrap_or_else(|e| e.into_inner());
        let result = load_dir(&self.dir);
        let hooks = self.on_reload.lock().unwrap_or_else(|e| e.into_inner());
        match result {
            Ok(policy) => {
                let policy = Arc::new(policy);
                self.current.store(policy.clone());
                self.stats.ok.fetch_add(1, Ordering::Relaxed);
                self.generation.send_modify(|g| *g += 1);
                tracing::info!(trigger, hash = %policy.source.hash, rules = policy.rules.len(), "policy reloaded");
                for h in hooks.iter() {
                    h(&policy, true);
                }
                Ok(policy)
            }
            Err(errors) => {
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    trigger,
                    "policy reload failed; the previous policy stays in force:\n{errors}"
                );
                let current = self.load();
                for h in hooks.iter() {
                    h(&current, false);
                }
                Err(errors)
            }
        }
    }

    /// Reloads from an async context.
    pub async fn reload_async(
        self: &Arc<Self>,
        trigger: &'static str,
    ) -> Result<Arc<Policy>, ConfigErrors> {
        let me = self.clone();
        match tokio::task::spawn_blocking(move || me.reload(trigger)).await {
            Ok(r) => r,
            Err(_) => Err(ConfigErrors(vec![crate::policy::ConfigError::new(
                &self.dir,
                "",
                "the reload task panicked",
            )])),
        }
    }
}

/// What identifies the directory's content cheaply: names, sizes, mtimes.
pub fn fingerprint(dir: &Path) -> Vec<(String, u64, Option<SystemTime>)> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            // Follow symlinks: ConfigMaps swap a `..data` link.
            if let Ok(m) = std::fs::metadata(e.path()) {
                if m.is_file() {
                    out.push((name, m.len(), m.modified().ok()));
                }
            }
        }
    }
    out.sort();
    out
}

/// Polls the policy directory and reloads when it changes.
pub async fn watch_files(handle: Arc<PolicyHandle>, every: Duration) {
    let dir = handle.dir().to_path_buf();
    let mut last = fingerprint(&dir);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let d = dir.clone();
        let now = match tokio::task::spawn_blocking(move || fingerprint(&d)).await {
            Ok(f) => f,
            Err(_) => continue,
        };
        if now != last {
            last = now;
            // Editors write files in several steps; let them finish.
            tokio::time::sleep(Duration::from_millis(100)).await;
            let d = dir.clone();
            if let Ok(f) = tokio::task::spawn_blocking(move || fingerprint(&d)).await {
                last = f;
            }
            let _ = handle.reload_async("file-change").await;
        }
    }
}

/// Reloads on every SIGHUP.
#[cfg(unix)]
pub async fn watch_sighup(handle: Arc<PolicyHandle>) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP; reload by file change only");
        return;
    };
    while hup.recv().await.is_some() {
        let _ = handle.reload_async("sighup").await;
    }
}
