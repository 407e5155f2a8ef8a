//! Acknowledgements: who continued past which warning, until when.
//!
//! An acknowledgement is a key ([`super::AckKey`], a keyed hash of person,
//! rule and platform) and the instant it ends. Where they live follows the
//! policy snapshot in force (`state.redis`):
//!
//! - **memory** (no `state.redis`): per process, bounded to
//!   [`MEMORY_CAPACITY`] entries; when full, expired entries go first, then
//!   the one ending soonest. Lost on restart (people see the warning again).
//! - **Redis**: `SET socialgate:warn-ack:<hex> <end, ms since epoch> PX <ms>`
//!   and `GET`, so replicas sharing the server (and the pseudonym key the
//!   warn key is derived from) agree. Redis's own expiry only collects
//!   garbage: the end instant stored is compared with the proxy's clock.
//!   An acknowledgement is never withdrawn before its end, so each replica
//!   keeps the ones it has seen (saved, or found in Redis) in the same
//!   bounded memory map and answers them from there until they end: a
//!   person who continued costs Redis one `GET` per replica, not one per
//!   request. Only "not acknowledged" is always asked of Redis, since
//!   another replica may have taken the Continue.
//!
//! Redis is reached through one multiplexed connection, made on first use
//! and again after a failure, at most once per [`RECONNECT_AFTER`]; in
//! between, and whenever a command fails or takes longer than
//! [`COMMAND_TIMEOUT`], the store answers with a [`StoreFault`] at once.
//! The gate fails toward the warning on a fault (it is shown again; a
//! Continue is answered "try again"). Each fault is counted
//! (`socialgate_warn_store_errors_total`); the log says so once when a
//! failure episode starts and once when Redis answers again.
//!
//! A reload that changes `state.redis` switches servers on the next use;
//! acknowledgements are not carried over.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use redis::aio::MultiplexedConnection;
use redis::AsyncConnectionConfig;

use super::AckKey;
use crate::metrics::Metrics;
use crate::policy::{RedisUrl, State};

/// The most acknowledgements kept in memory.
pub const MEMORY_CAPACITY: usize = 100_000;
/// How long to wait for Redis to accept a connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// How long one command may take before it counts as a fault.
pub const COMMAND_TIMEOUT: Duration = Duration::from_millis(500);
/// After a failed connection, how long the store answers with a fault at
/// once before it tries again.
pub const RECONNECT_AFTER: Duration = Duration::from_secs(1);

const KEY_PREFIX: &str = "socialgate:warn-ack:";

/// The store could not answer; the caller fails toward the warning (an
/// acknowledgement this replica has already seen still counts).
#[derive(Debug, Clone, thiserror::Error)]
#[error("the acknowledgement store at {store} failed: {detail}")]
pub struct StoreFault {
    /// The Redis URL, password hidden.
    pub store: String,
    pub detail: String,
}

/// The two operations, for the fault metric's `op` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Lookup,
    Save,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Lookup => "lookup",
            Op::Save => "save",
        }
    }
}

/// Acknowledgements, in memory or in Redis (see the module docs).
pub struct AckStore {
    memory: Mutex<HashMap<AckKey, Timestamp>>,
    capacity: usize,
    /// The Redis backend for the URL last used; replaced when a reload
    /// names another.
    redis: Mutex<Option<Arc<Redis>>>,
    metrics: Arc<Metrics>,
}

impl AckStore {
    pub fn new(metrics: Arc<Metrics>) -> AckStore {
        Self::with_capacity(metrics, MEMORY_CAPACITY)
    }

    pub fn with_capacity(metrics: Arc<Metrics>, capacity: usize) -> AckStore {
        AckStore {
            memory: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
            redis: Mutex::new(None),
            metrics,
        }
    }

    /// True when `key` was acknowledged and its end is after `now`.
    pub async fn acknowledged(
        &self,
        state: &State,
        key: &AckKey,
        now: Timestamp,
    ) -> Result<bool, StoreFault> {
        if self.memory_get(key).is_some_and(|end| end > now) {
            return Ok(true);
        }
        let Some(url) = &state.redis else {
            return Ok(false);
        };
        let backend = self.backend(url);
        let got = backend.lookup(key).await;
        let end = self.settle(&backend, Op::Lookup, got)?;
        match end.and_then(|ms| Timestamp::from_millisecond(ms).ok()) {
            Some(end) if end > now => {
                // Seen once, known until it ends.
                self.memory_put(*key, now, end);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Remembers `key` until `end` (`now` + `warn.remember`).
    pub async fn acknowledge(
        &self,
        state: &State,
        key: &AckKey,
        now: Timestamp,
        end: Timestamp,
    ) -> Result<(), StoreFault> {
        match &state.redis {
            None => {
                self.memory_put(*key, now, end);
                Ok(())
            }
            Some(url) => {
                let backend = self.backend(url);
                let ttl_ms = (end.as_millisecond() - now.as_millisecond()).max(1);
                let done = backend.save(key, end.as_millisecond(), ttl_ms).await;
                self.settle(&backend, Op::Save, done)?;
                // Only once Redis has it: an unsaved Continue counts nowhere.
                self.memory_put(*key, now, end);
                Ok(())
            }
        }
    }

    /// Acknowledgements held in memory now (with Redis: the ones this
    /// replica has seen), expired ones included until they are swept.
    pub fn memory_len(&self) -> usize {
        self.lock_memory().len()
    }

    fn lock_memory(&self) -> std::sync::MutexGuard<'_, HashMap<AckKey, Timestamp>> {
        // A panic while holding this lock leaves a consistent map: keep going.
        self.memory.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn memory_get(&self, key: &AckKey) -> Option<Timestamp> {
        self.lock_memory().get(key).copied()
    }

    fn memory_put(&self, key: AckKey, now: Timestamp, end: Timestamp) {
        let mut m = self.lock_memory();
        if m.len() >= self.capacity && !m.contains_key(&key) {
            m.retain(|_, e| *e > now);
            if m.len() >= self.capacity {
                // Still full of live entries: the one ending soonest goes.
                if let Some(k) = m.iter().min_by_key(|(_, e)| **e).map(|(k, _)| *k) {
                    m.remove(&k);
                }
            }
        }
        m.insert(key, end);
    }

    fn backend(&self, url: &RedisUrl) -> Arc<Redis> {
        let mut slot = self.redis.lock().unwrap_or_else(|e| e.into_inner());
        match &*slot {
            Some(b) if &b.url == url => b.clone(),
            _ => {
                let b = Arc::new(Redis::new(url.clone()));
                *slot = Some(b.clone());
                b
            }
        }
    }

    /// Counts and logs a fault (once per episode), and notes recovery.
    fn settle<T>(
        &self,
        backend: &Redis,
        op: Op,
        result: Result<T, String>,
    ) -> Result<T, StoreFault> {
        match result {
            Ok(v) => {
                if backend.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!(
                        store = %backend.url.redacted(),
                        "warn acknowledgements: Redis answers again"
                    );
                }
                Ok(v)
            }
            Err(detail) => {
                self.metrics.warn_store_error(op.as_str());
                if !backend.failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        store = %backend.url.redacted(),
                        op = op.as_str(),
                        error = %detail,
                        "warn acknowledgements: Redis cannot be reached; warnings are shown again and Continue asks people to retry until it answers (counted in socialgate_warn_store_errors_total; logged once until then)"
                    );
                }
                Err(StoreFault {
                    store: backend.url.redacted(),
                    detail,
                })
            }
        }
    }
}

/// One Redis server and the connection to it (also used by the budgets'
/// Redis sync, `crate::budget::store`).
pub(crate) struct Redis {
    pub(crate) url: RedisUrl,
    conn: tokio::sync::Mutex<Conn>,
    /// In a failure episode (for logging once per episode).
    failing: AtomicBool,
}

enum Conn {
    /// Not connected; the next attempt is allowed at this instant.
    Down {
        retry_at: Option<Instant>,
    },
    Up(MultiplexedConnection),
}

impl Redis {
    pub(crate) fn new(url: RedisUrl) -> Redis {
        Redis {
            url,
            conn: tokio::sync::Mutex::new(Conn::Down { retry_at: None }),
            failing: AtomicBool::new(false),
        }
    }

    /// The connection, made now if there is none and the back-off allows.
    /// Single-flight: callers wait for one connection attempt.
    async fn connection(&self) -> Result<MultiplexedConnection, String> {
        let mut conn = self.conn.lock().await;
        match &*conn {
            Conn::Up(c) => return Ok(c.clone()),
            Conn::Down { retry_at: Some(at) } if Instant::now() < *at => {
                return Err("not connected (a connection failed moments ago)".into())
            }
            Conn::Down { .. } => {}
        }
        let made = async {
            let client = redis::Client::open(self.url.secret_url()).map_err(|e| e.to_string())?;
            let config = AsyncConnectionConfig::new()
                .set_connection_timeout(Some(CONNECT_TIMEOUT))
                .set_response_timeout(Some(COMMAND_TIMEOUT));
            // The handshake sends commands too: allow for one of them.
            tokio::time::timeout(
                CONNECT_TIMEOUT + COMMAND_TIMEOUT,
                client.get_multiplexed_async_connection_with_config(&config),
            )
            .await
            .map_err(|_| "connecting timed out".to_string())?
            .map_err(|e| e.to_string())
        }
        .await;
        match made {
            Ok(c) => {
                *conn = Conn::Up(c.clone());
                Ok(c)
            }
            Err(e) => {
                *conn = Conn::Down {
                    retry_at: Some(Instant::now() + RECONNECT_AFTER),
                };
                Err(e)
            }
        }
    }

    /// Runs one command; on failure the connection is dropped, so the next
    /// use reconnects (at once: the failure may have been the server
    /// restarting).
    async fn run<T: redis::FromRedisValue>(&self, cmd: redis::Cmd) -> Result<T, String> {
        let mut c = self.connection().await?;
        let result = tokio::time::timeout(COMMAND_TIMEOUT, cmd.query_async::<T>(&mut c)).await;
        let failure = match result {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) => e.to_string(),
            Err(_) => "the command timed out".to_string(),
        };
        *self.conn.lock().await = Conn::Down { retry_at: None };
        Err(failure)
    }

    /// Runs a pipeline within `limit`, like [`Redis::run`].
    pub(crate) async fn run_pipe<T: redis::FromRedisValue>(
        &self,
        pipe: &redis::Pipeline,
        limit: Duration,
    ) -> Result<T, String> {
        let mut c = self.connection().await?;
        let result = tokio::time::timeout(limit, pipe.query_async::<T>(&mut c)).await;
        let failure = match result {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) => e.to_string(),
            Err(_) => "the commands timed out".to_string(),
        };
        *self.conn.lock().await = Conn::Down { retry_at: None };
        Err(failure)
    }

    async fn lookup(&self, key: &AckKey) -> Result<Option<i64>, String> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(format!("{KEY_PREFIX}{}", key.hex()));
        let v: Option<String> = self.run(cmd).await?;
        // A value that is not a number (written by something else) is no
        // acknowledgement.
        Ok(v.and_then(|s| s.parse().ok()))
    }

    async fn save(&self, key: &AckKey, end_ms: i64, ttl_ms: i64) -> Result<(), String> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(format!("{KEY_PREFIX}{}", key.hex()))
            .arg(end_ms)
            .arg("PX")
            .arg(ttl_ms);
        self.run::<()>(cmd).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn k(n: u8) -> AckKey {
        AckKey([n; 16])
    }

    #[tokio::test]
    async fn memory_acknowledgements_end_on_the_clock_passed_in() {
        let store = AckStore::new(Metrics::new());
        let state = State::default();
        let now = at("2026-11-25T10:00:00Z");
        let end = at("2026-11-25T11:00:00Z");
        assert!(!store.acknowledged(&state, &k(1), now).await.unwrap());
        store.acknowledge(&state, &k(1), now, end).await.unwrap();
        assert!(store.acknowledged(&state, &k(1), now).await.unwrap());
        assert!(!store.acknowledged(&state, &k(2), now).await.unwrap());
        assert!(!store.acknowledged(&state, &k(1), end).await.unwrap());
    }

    #[tokio::test]
    async fn memory_is_bounded_expired_first_then_soonest_ending() {
        let store = AckStore::with_capacity(Metrics::new(), 3);
        let state = State::default();
        let now = at("2026-11-25T10:00:00Z");
        let t = |h: i64| now + jiff::SignedDuration::from_hours(h);
        store.acknowledge(&state, &k(1), now, t(3)).await.unwrap();
        store.acknowledge(&state, &k(2), now, t(1)).await.unwrap();
        store.acknowledge(&state, &k(3), now, t(2)).await.unwrap();
        // Full of live entries: k(2) ends soonest and goes.
        store.acknowledge(&state, &k(4), now, t(4)).await.unwrap();
        assert_eq!(store.memory_len(), 3);
        assert!(!store.acknowledged(&state, &k(2), now).await.unwrap());
        for n in [1, 3, 4] {
            assert!(store.acknowledged(&state, &k(n), now).await.unwrap(), "{n}");
        }
        // Later, k(3) and k(1) have expired: both are swept for the new one.
        store.acknowledge(&state, &k(5), t(3), t(6)).await.unwrap();
        assert_eq!(store.memory_len(), 2);
        // Renewing an existing key never evicts another.
        store.acknowledge(&state, &k(5), t(3), t(7)).await.unwrap();
        assert_eq!(store.memory_len(), 2);
    }

    #[tokio::test]
    async fn an_unreachable_redis_is_a_counted_fault_and_fails_fast_after() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("redis+unix://{}", dir.path().join("nothing.sock").display());
        let state = State {
            redis: Some(RedisUrl::parse(&url).unwrap()),
        };
        let metrics = Metrics::new();
        let store = AckStore::new(metrics.clone());
        let now = at("2026-11-25T10:00:00Z");
        let e = store.acknowledged(&state, &k(1), now).await.unwrap_err();
        assert!(e.to_string().contains("nothing.sock"), "{e}");
        let t0 = Instant::now();
        assert!(store
            .acknowledge(&state, &k(1), now, at("2026-11-25T11:00:00Z"))
            .await
            .is_err());
        assert!(
            t0.elapsed() < Duration::from_millis(100),
            "in back-off: no new attempt"
        );
        let text = metrics.render(&Default::default(), None);
        assert!(
            text.contains(r#"socialgate_warn_store_errors_total{op="lookup"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"socialgate_warn_store_errors_total{op="save"} 1"#));
    }
}
