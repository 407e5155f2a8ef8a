//! Budgets shared by replicas through Redis (`state.redis`).
//!
//! Two keys per ledger entry and local day, named by the entry's tag (a
//! keyed hash of person and rule, never the person) and the date:
//!
//! - `socialgate:budget:TAG:DATE:m`, a bitmap with one bit per minute of
//!   the day (`SETBIT`). Setting a bit twice counts once, so two replicas
//!   that both saw a person's minute never count it twice; each replica
//!   reads the bitmap back and counts the union with its own.
//! - `socialgate:budget:TAG:DATE:b`, the day's body bytes (`INCRBY`).
//!
//! Both expire 48 hours after their last write. Nothing touches Redis on
//! the request path: decisions read the ledger in memory, and [`Store::sync`]
//! runs in the background once a second ([`SYNC_EVERY`], so each person and
//! rule is written at most once a second): one pipeline sets the minutes
//! and adds the bytes counted since the last sync, and reads back the
//! entries used in the last two minutes (what other replicas counted), at
//! most [`MAX_BATCH`] entries a round. A first request of a person on a
//! replica that has not read their entry yet is decided on what it knows;
//! the next second it knows the rest. A bitmap or count that Redis lost (a
//! restart without persistence) is written again from what the replicas
//! still hold.
//!
//! **Redis down**: a sync that fails or takes longer than [`SYNC_LIMIT`]
//! starts an outage; until a sync succeeds again, budgets fail open: the
//! traffic is decided without them ([`Store::unavailable`]; the log's
//! `budget: unavailable`). A shared budget that one replica cannot see is
//! not one it can enforce fairly, and refusing everyone would turn a cache
//! outage into a platform outage. Counting goes on in memory and is written
//! when Redis answers. The outage is logged once when it starts and once
//! when it ends, each failed sync is counted
//! (`socialgate_budget_store_errors_total{op="sync"}`), and `/readyz` says
//! so ([`Store::status`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use super::ledger::{Key, MinuteSet};
use super::Budgets;
use crate::metrics::Metrics;
use crate::policy::{RedisUrl, State};
use crate::warn::store::Redis;

/// How often the ledger is synced with Redis.
pub const SYNC_EVERY: Duration = Duration::from_secs(1);

/// How long one sync may take before it counts as a fault.
pub const SYNC_LIMIT: Duration = Duration::from_secs(2);

/// Entries written or read in one sync at most; the rest wait a second.
pub const MAX_BATCH: usize = 2_000;

/// Entries used this recently are read back on every sync.
pub const READ_WINDOW: SignedDuration = SignedDuration::from_mins(2);

/// Keys expire this long after their last write.
pub const TTL_SECS: u64 = 48 * 3600;

const PREFIX: &str = "socialgate:budget:";

/// Where budgets are shared, and whether it can be reached.
pub struct Store {
    metrics: Arc<Metrics>,
    /// The Redis backend for the URL last used; replaced when a reload
    /// names another.
    backend: Mutex<Option<Arc<Redis>>>,
    /// In an outage: budgets fail open until a sync succeeds.
    failing: AtomicBool,
    /// The last failure, and since when the outage lasts (for `/readyz`).
    outage: Mutex<Option<(Timestamp, String)>>,
}

/// One entry's part of a sync.
struct Work {
    key: Key,
    tag: [u8; 16],
    date: jiff::civil::Date,
    minutes: MinuteSet,
    bytes: u64,
    read: bool,
}

impl Store {
    pub fn new(metrics: Arc<Metrics>) -> Store {
        Store {
            metrics,
            backend: Mutex::new(None),
            failing: AtomicBool::new(false),
            outage: Mutex::new(None),
        }
    }

    /// True while the policy names a Redis that cannot be reached: budgets
    /// fail open.
    pub fn unavailable(&self, state: &State) -> bool {
        state.redis.is_some() && self.failing.load(Ordering::Relaxed)
    }

    /// What `/readyz` says about the budgets' store.
    pub fn status(&self, state: &State) -> serde_json::Value {
        match &state.redis {
            None => serde_json::json!({"store": "memory"}),
            Some(url) => {
                let outage = self.outage.lock().unwrap_or_else(|e| e.into_inner());
                match &*outage {
                    Some((since, error)) if self.failing.load(Ordering::Relaxed) => {
                        serde_json::json!({
                            "store": "redis",
                            "redis": url.redacted(),
                            "reachable": false,
                            "since": since.to_string(),
                            "error": error,
                            "effect": "budgets fail open: traffic under budgets is decided without them until Redis answers",
                        })
                    }
                    _ => {
                        serde_json::json!({"store": "redis", "redis": url.redacted(), "reachable": true})
                    }
                }
            }
        }
    }

    fn backend(&self, url: &RedisUrl) -> Arc<Redis> {
        let mut slot = self.backend.lock().unwrap_or_else(|e| e.into_inner());
        match &*slot {
            Some(b) if &b.url == url => b.clone(),
            _ => {
                let b = Arc::new(Redis::new(url.clone()));
                *slot = Some(b.clone());
                b
            }
        }
    }

    /// Writes what this replica counted since the last sync and reads back
    /// what every replica counted for the entries in use.
    pub async fn sync(&self, budgets: &Budgets, state: &State) {
        let Some(url) = &state.redis else {
            self.failing.store(false, Ordering::Relaxed);
            return;
        };
        let now = budgets.now();
        let mut work = Vec::new();
        budgets.ledger.for_each(|key, e| {
            let Some(key) = key else { return };
            if work.len() >= MAX_BATCH || e.day.end <= now {
                return;
            }
            let (minutes, bytes) = match &e.shared {
                Some(s) => (
                    e.minutes.minus(&s.pushed),
                    e.bytes.saturating_sub(s.pushed_bytes),
                ),
                None => (e.minutes, e.bytes),
            };
            let read = now.duration_since(e.touched) <= READ_WINDOW;
            if minutes.is_empty() && bytes == 0 && !read {
                return;
            }
            work.push(Work {
                key: key.clone(),
                tag: e.tag,
                date: e.day.date,
                minutes,
                bytes,
                read,
            });
        });
        if work.is_empty() {
            return;
        }
        let mut pipe = redis::pipe();
        for w in &work {
            let (m, b) = keys(&w.tag, w.date);
            for minute in w.minutes.iter() {
                pipe.cmd("SETBIT").arg(&m).arg(minute).arg(1).ignore();
            }
            if w.bytes > 0 {
                pipe.cmd("INCRBY").arg(&b).arg(w.bytes).ignore();
            }
            if !w.minutes.is_empty() || w.bytes > 0 {
                pipe.cmd("EXPIRE").arg(&m).arg(TTL_SECS).ignore();
                pipe.cmd("EXPIRE").arg(&b).arg(TTL_SECS).ignore();
            }
            if w.read {
                pipe.cmd("GET").arg(&m);
                pipe.cmd("GET").arg(&b);
            }
        }
        let backend = self.backend(url);
        let result: Result<Vec<redis::Value>, String> = backend.run_pipe(&pipe, SYNC_LIMIT).await;
        let values = match result {
            Ok(v) => v,
            Err(e) => return self.fault(url, now, e),
        };
        if self.failing.swap(false, Ordering::Relaxed) {
            tracing::info!(store = %url.redacted(), "budgets: Redis answers again; budgets apply again");
        }
        let mut read = values.into_iter();
        let mut changed = false;
        for w in work {
            let remote = if w.read {
                let m = read.next();
                let b = read.next();
                Some((bitmap(m), count(b)))
            } else {
                None
            };
            budgets.ledger.with_entry(&w.key, |e| {
                if e.day.date != w.date {
                    return;
                }
                let known = e.all_minutes();
                let s = e.shared_mut();
                s.pushed = s.pushed.union(&w.minutes);
                s.pushed_bytes = s.pushed_bytes.saturating_add(w.bytes);
                if let Some((minutes, bytes)) = remote {
                    changed |= !minutes.minus(&known).is_empty() || bytes > s.remote_bytes;
                    // Lost from Redis (a restart): written again next time.
                    s.pushed = s.pushed.intersect(&minutes);
                    if bytes < s.pushed_bytes {
                        s.pushed_bytes = 0;
                    }
                    s.remote = minutes;
                    s.remote_bytes = bytes;
                }
            });
        }
        if changed {
            // Other replicas counted more: open connections plan again.
            budgets.changed();
        }
    }

    fn fault(&self, url: &RedisUrl, now: Timestamp, error: String) {
        self.metrics.budget_store_error("sync");
        {
            let mut outage = self.outage.lock().unwrap_or_else(|e| e.into_inner());
            let since = match &*outage {
                Some((since, _)) if self.failing.load(Ordering::Relaxed) => *since,
                _ => now,
            };
            *outage = Some((since, error.clone()));
        }
        if !self.failing.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                store = %url.redacted(),
                error = %error,
                "budgets: Redis cannot be reached; budgets fail open (traffic under them is decided without them) until it answers; counting goes on here and is written then (socialgate_budget_store_errors_total counts failed syncs; logged once until then)"
            );
        }
    }
}

/// The two keys of an entry's day.
fn keys(tag: &[u8; 16], date: jiff::civil::Date) -> (String, String) {
    let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
    (
        format!("{PREFIX}{hex}:{date}:m"),
        format!("{PREFIX}{hex}:{date}:b"),
    )
}

/// A `GET` of a bitmap key: byte `i`'s most significant bit is minute
/// `8 * i` (Redis's `SETBIT` numbering). Anything else is no minutes.
fn bitmap(v: Option<redis::Value>) -> MinuteSet {
    let mut set = MinuteSet::default();
    if let Some(redis::Value::BulkString(bytes)) = v {
        for (i, byte) in bytes.iter().enumerate() {
            for bit in 0..8u32 {
                if byte & (0x80 >> bit) != 0 {
                    let m = i as u32 * 8 + bit;
                    if m < MinuteSet::CAPACITY {
                        set.mark(m, m);
                    }
                }
            }
        }
    }
    set
}

/// A `GET` of a counter key; anything that is not a number is 0.
fn count(v: Option<redis::Value>) -> u64 {
    match v {
        Some(redis::Value::BulkString(b)) => std::str::from_utf8(&b)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
        Some(redis::Value::Int(n)) => u64::try_from(n).unwrap_or(0),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitmaps_read_in_setbit_order_and_garbage_counts_nothing() {
        let set = bitmap(Some(redis::Value::BulkString(vec![
            0b1000_0001,
            0,
            0b0100_0000,
        ])));
        assert_eq!(set.iter().collect::<Vec<_>>(), [0, 7, 17]);
        assert!(bitmap(None).is_empty());
        assert!(bitmap(Some(redis::Value::Int(3))).is_empty());
        assert_eq!(
            count(Some(redis::Value::BulkString(b"1234".to_vec()))),
            1234
        );
        assert_eq!(count(Some(redis::Value::BulkString(b"x".to_vec()))), 0);
        assert_eq!(count(None), 0);
        let (m, b) = keys(&[0xab; 16], "2026-11-25".parse().unwrap());
        assert_eq!(
            m,
            format!("socialgate:budget:{}:2026-11-25:m", "ab".repeat(16))
        );
        assert!(b.ends_with(":b"));
    }
}
