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

/// Called after each reload attempt with the policy in force and whether
/// the attempt succeeded.
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
        crate::notify::reloading();
        let result = load_dir(&self.dir);
        crate::notify::reloaded(if result.is_ok() {
            "serving the reloaded policy"
        } else {
            "reload failed; serving the previous policy"
        });
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

/// What identifies the policy's files cheaply: for each, its path, size,
/// modification time and inode (an atomic rename changes the inode even
/// within one mtime tick). Only the files a policy is made of are watched,
/// so logs or keys kept beside them do not trigger reloads.
pub type Fingerprint = Vec<(PathBuf, Option<(u64, Option<SystemTime>, u64)>)>;

/// The files of the policy in `dir` (the htpasswd file as named by `policy`).
pub fn policy_files(dir: &Path, policy: Option<&Policy>) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = [
        crate::policy::compile::CATALOG_FILE,
        crate::policy::compile::POLICY_FILE,
        crate::policy::compile::CASES_FILE,
    ]
    .iter()
    .map(|f| dir.join(f))
    .collect();
    if let Some(p) = policy.and_then(|p| p.auth.htpasswd_path.clone()) {
        files.push(p);
    }
    files
}

pub fn fingerprint(files: &[PathBuf]) -> Fingerprint {
    files
        .iter()
        .map(|f| {
            // Follow symlinks: ConfigMaps swap a `..data` link.
            let meta = std::fs::metadata(f).ok().map(|m| {
                #[cfg(unix)]
                let ino = std::os::unix::fs::MetadataExt::ino(&m);
                #[cfg(not(unix))]
                let ino = 0;
                (m.len(), m.modified().ok(), ino)
            });
            (f.clone(), meta)
        })
        .collect()
}

/// Polls the policy directory and reloads when it changes. `initial` is
/// the fingerprint taken before the running policy was loaded, so a change
/// made while starting up is not missed.
pub async fn watch_files(handle: Arc<PolicyHandle>, every: Duration, initial: Fingerprint) {
    let dir = handle.dir().to_path_buf();
    let mut last = initial;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let files = policy_files(&dir, Some(&handle.load()));
        let now = match tokio::task::spawn_blocking(move || fingerprint(&files)).await {
            Ok(f) => f,
            Err(_) => continue,
        };
        if now != last {
            // Editors write files in several steps; let them finish.
            tokio::time::sleep(Duration::from_millis(100)).await;
            // Fingerprint what is about to be loaded, before loading it: a
            // write that lands during the reload then shows up as a change.
            let files = policy_files(&dir, Some(&handle.load()));
            let list = files.clone();
            last = match tokio::task::spawn_blocking(move || fingerprint(&list)).await {
                Ok(f) => f,
                Err(_) => now,
            };
            let _ = handle.reload_async("file-change").await;
            // A reload may name another htpasswd file: watch what is in force now.
            let after = policy_files(&dir, Some(&handle.load()));
            if after != files {
                if let Ok(f) = tokio::task::spawn_blocking(move || fingerprint(&after)).await {
                    last = f;
                }
            }
        }
    }
}

/// Reloads on every SIGHUP.
#[cfg(unix)]
///
/// The handler is installed when this is called, not when the returned
/// future first runs: a SIGHUP that arrives right after start-up reloads
/// instead of killing the process (SIGHUP's default action).
pub fn watch_sighup(handle: Arc<PolicyHandle>) -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let hup = signal(SignalKind::hangup());
    async move {
        let Ok(mut hup) = hup else {
            tracing::warn!("cannot listen for SIGHUP; reload by file change only");
            return;
        };
        while hup.recv().await.is_some() {
            let _ = handle.reload_async("sighup").await;
        }
    }
}
