//! Estimated active time: idle-gap sessions, the one algorithm that reports
//! and daily time budgets share.
//!
//! Hits (timestamps of foreground requests or tunnels) are grouped per key —
//! typically (person, platform) — into *sessions*. A session stays open while
//! hits keep coming; it closes when the next hit for the same key comes more
//! than the *idle gap* (default 5 minutes) after its last hit, or when the
//! newest time seen anywhere (the *watermark*) has moved past
//! `last hit + idle gap + grace`, or on [`Sessionizer::flush`].
//!
//! **Duration.** A session's estimated active time is
//! `(last hit − first hit) + credit`, where the *credit* (default 1 minute)
//! stands for the reading done after the last hit, so a single hit counts as
//! one minute and never as zero. Time between hits that are at most one idle
//! gap apart counts in full; a gap longer than the idle gap counts nothing.
//!
//! **Out-of-order hits.** Log lines are written when a request ends but carry
//! its start time, so hits arrive slightly out of order. A hit earlier than
//! the open session's first hit, but within one idle gap of it, extends the
//! session backwards. A hit that comes later than `grace` after its session
//! was closed, or lies more than one idle gap before the open session, is
//! counted as a session of its own (at most one extra credit per such hit).
//!
//! The core is pure: no clock (every time is passed in), no IO, no tokio, no
//! knowledge of log records. It must stay usable on the proxy's request path:
//! the proxy's budget ledger (`crate::budget`) feeds it every hit under a
//! budget and marks the minutes [`Sessionizer::observe_span`] says a hit
//! added. Memory holds only open sessions.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};

use jiff::{SignedDuration, Timestamp};

/// Default idle gap that closes a session.
pub const DEFAULT_IDLE: SignedDuration = SignedDuration::from_secs(5 * 60);
/// Default credit added to every session for reading after its last hit.
pub const DEFAULT_CREDIT: SignedDuration = SignedDuration::from_secs(60);

/// How sessions are cut and credited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionRules {
    /// A gap longer than this between two hits closes the session.
    pub idle: SignedDuration,
    /// Added to every session's span (last − first hit).
    pub credit: SignedDuration,
    /// How long after its idle gap an open session waits for late hits
    /// before the watermark closes it.
    pub grace: SignedDuration,
}

impl Default for SessionRules {
    fn default() -> Self {
        SessionRules {
            idle: DEFAULT_IDLE,
            credit: DEFAULT_CREDIT,
            grace: DEFAULT_IDLE,
        }
    }
}

impl SessionRules {
    /// Rules with the given idle gap in minutes (grace = idle), default credit.
    pub fn with_idle_minutes(minutes: u32) -> Self {
        let idle = SignedDuration::from_secs(i64::from(minutes.max(1)) * 60);
        SessionRules {
            idle,
            credit: DEFAULT_CREDIT,
            grace: idle,
        }
    }
}

/// A closed session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session<K> {
    pub key: K,
    pub first: Timestamp,
    pub last: Timestamp,
    /// How many hits the session holds.
    pub hits: u32,
    /// Estimated active time: (last − first) + credit.
    pub active: SignedDuration,
}

#[derive(Debug, Clone, Copy)]
struct Open {
    /// Milliseconds since the epoch.
    first: i64,
    last: i64,
    hits: u32,
}

/// Streaming sessionizer: feed hits with [`observe`](Self::observe), collect
/// closed sessions from its return value and from [`flush`](Self::flush).
/// `S` hashes the keys (std's `RandomState` by default; `report` uses a
/// faster one for its integer keys).
#[derive(Debug)]
pub struct Sessionizer<K, S = RandomState> {
    rules: SessionRules,
    idle_ms: i64,
    credit_ms: i64,
    grace_ms: i64,
    open: HashMap<K, Open, S>,
    /// Newest hit time seen (ms).
    watermark: i64,
    /// Watermark at the last sweep of expired sessions (ms).
    swept_at: i64,
}

impl<K: Hash + Eq + Clone> Sessionizer<K> {
    pub fn new(rules: SessionRules) -> Self {
        Self::with_hasher(rules)
    }
}

impl<K: Hash + Eq + Clone, S: BuildHasher + Default> Sessionizer<K, S> {
    /// Like [`Sessionizer::new`], with the key hasher `S`.
    pub fn with_hasher(rules: SessionRules) -> Self {
        Sessionizer {
            rules,
            idle_ms: rules.idle.as_millis() as i64,
            credit_ms: rules.credit.as_millis() as i64,
            grace_ms: rules.grace.as_millis() as i64,
            open: HashMap::with_hasher(S::default()),
            watermark: i64::MIN,
            swept_at: i64::MIN,
        }
    }

    pub fn rules(&self) -> SessionRules {
        self.rules
    }

    /// Number of sessions currently open.
    pub fn open_sessions(&self) -> usize {
        self.open.len()
    }

    /// Records a hit for `key` at `at`, pushing any session that this closes
    /// (for this key, or for others the watermark has passed) into `closed`.
    pub fn observe_into(&mut self, key: &K, at: Timestamp, closed: &mut Vec<Session<K>>) {
        self.observe_inner(key, at, closed);
    }

    /// Like [`observe_into`](Self::observe_into), and says which stretch of
    /// time the hit added to what its key's sessions cover (each session
    /// covers its first to its last hit): the instant of the hit alone
    /// when it starts a session, the gap since the session's last hit when
    /// it continues one (at most the idle gap, counted in full), the time
    /// up to its first hit when it extends one backwards, and `None` when
    /// the session already covered it. Budgets mark the minutes these
    /// stretches touch, so their time is this estimate at minute
    /// resolution.
    pub fn observe_span(
        &mut self,
        key: &K,
        at: Timestamp,
        closed: &mut Vec<Session<K>>,
    ) -> Option<(Timestamp, Timestamp)> {
        self.observe_inner(key, at, closed)
            .map(|(from, to)| (ts(from), ts(to)))
    }

    fn observe_inner(
        &mut self,
        key: &K,
        at: Timestamp,
        closed: &mut Vec<Session<K>>,
    ) -> Option<(i64, i64)> {
        let t = at.as_millisecond();
        let added = match self.open.get_mut(key) {
            Some(s) if t > s.last + self.idle_ms => {
                let old = *s;
                *s = Open {
                    first: t,
                    last: t,
                    hits: 1,
                };
                closed.push(self.session(key.clone(), old));
                Some((t, t))
            }
            Some(s) if t >= s.first - self.idle_ms => {
                let added = if t > s.last {
                    Some((s.last, t))
                } else if t < s.first {
                    Some((t, s.first))
                } else {
                    None
                };
                s.first = s.first.min(t);
                s.last = s.last.max(t);
                s.hits = s.hits.saturating_add(1);
                added
            }
            Some(_) => {
                // Far earlier than the open session: a session of its own.
                let lone = Open {
                    first: t,
                    last: t,
                    hits: 1,
                };
                closed.push(self.session(key.clone(), lone));
                Some((t, t))
            }
            None => {
                self.open.insert(
                    key.clone(),
                    Open {
                        first: t,
                        last: t,
                        hits: 1,
                    },
                );
                Some((t, t))
            }
        };
        if t > self.watermark {
            self.watermark = t;
            if self.swept_at == i64::MIN {
                self.swept_at = t;
            } else if t - self.swept_at >= self.idle_ms {
                self.sweep(closed);
            }
        }
        added
    }

    /// Like [`observe_into`](Self::observe_into), returning the closed sessions.
    pub fn observe(&mut self, key: K, at: Timestamp) -> Vec<Session<K>> {
        let mut closed = Vec::new();
        self.observe_into(&key, at, &mut closed);
        closed
    }

    /// Closes every open session whose last hit is more than idle + grace
    /// before `now` (for callers with a clock, e.g. the proxy's budget
    /// bookkeeping, to keep memory bounded when traffic stops).
    pub fn expire(&mut self, now: Timestamp, closed: &mut Vec<Session<K>>) {
        self.watermark = self.watermark.max(now.as_millisecond());
        self.sweep(closed);
    }

    /// Closes all open sessions.
    pub fn flush(&mut self) -> Vec<Session<K>> {
        let mut out: Vec<Session<K>> = Vec::with_capacity(self.open.len());
        let open = std::mem::replace(&mut self.open, HashMap::with_hasher(S::default()));
        for (k, s) in open {
            out.push(self.session(k, s));
        }
        out.sort_by_key(|s| s.first);
        out
    }

    /// The open session of `key` as (first, last, estimated active time so far).
    pub fn open_session(&self, key: &K) -> Option<(Timestamp, Timestamp, SignedDuration)> {
        self.open.get(key).map(|s| {
            (
                ts(s.first),
                ts(s.last),
                SignedDuration::from_millis(s.last - s.first + self.credit_ms),
            )
        })
    }

    fn sweep(&mut self, closed: &mut Vec<Session<K>>) {
        self.swept_at = self.watermark;
        let limit = self.watermark - self.idle_ms - self.grace_ms;
        let credit = self.credit_ms;
        self.open.retain(|k, s| {
            if s.last < limit {
                closed.push(make_session(k.clone(), *s, credit));
                false
            } else {
                true
            }
        });
    }

    fn session(&self, key: K, s: Open) -> Session<K> {
        make_session(key, s, self.credit_ms)
    }
}

fn make_session<K>(key: K, s: Open, credit_ms: i64) -> Session<K> {
    Session {
        key,
        first: ts(s.first),
        last: ts(s.last),
        hits: s.hits,
        active: SignedDuration::from_millis(s.last - s.first + credit_ms),
    }
}

fn ts(ms: i64) -> Timestamp {
    // Every value here came from a valid Timestamp (or a difference between
    // two), so it is in range; fall back to the epoch rather than panic.
    Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(hms: &str) -> Timestamp {
        format!("2026-03-02T{hms}Z").parse().unwrap()
    }

    fn mins(s: &Session<&str>) -> f64 {
        s.active.as_secs_f64() / 60.0
    }

    #[test]
    fn sessions_table() {
        // (hits, expected sessions as (first, last, hits, active minutes))
        type Case = (
            &'static [&'static str],
            &'static [(&'static str, &'static str, u32, f64)],
        );
        let cases: &[Case] = &[
            (&["09:00:00"], &[("09:00:00", "09:00:00", 1, 1.0)]),
            (
                &["09:00:00", "09:04:00", "09:09:00"],
                &[("09:00:00", "09:09:00", 3, 10.0)],
            ),
            // A gap of exactly the idle time keeps the session open.
            (
                &["09:00:00", "09:05:00"],
                &[("09:00:00", "09:05:00", 2, 6.0)],
            ),
            // A gap one second longer closes it.
            (
                &["09:00:00", "09:05:01"],
                &[
                    ("09:00:00", "09:00:00", 1, 1.0),
                    ("09:05:01", "09:05:01", 1, 1.0),
                ],
            ),
            // Slightly out of order: extends the session backwards.
            (
                &["09:10:00", "09:12:00", "09:08:00"],
                &[("09:08:00", "09:12:00", 3, 5.0)],
            ),
            // Far earlier than the open session: a session of its own.
            (
                &["09:30:00", "09:00:00"],
                &[
                    ("09:00:00", "09:00:00", 1, 1.0),
                    ("09:30:00", "09:30:00", 1, 1.0),
                ],
            ),
        ];
        for (hits, expected) in cases {
            let mut s = Sessionizer::new(SessionRules::default());
            let mut got = Vec::new();
            for h in *hits {
                got.extend(s.observe("alice/x", t(h)));
            }
            got.extend(s.flush());
            got.sort_by_key(|s| s.first);
            let got: Vec<_> = got
                .iter()
                .map(|x| (x.first, x.last, x.hits, mins(x)))
                .collect();
            let want: Vec<_> = expected
                .iter()
                .map(|&(f, l, h, m)| (t(f), t(l), h, m))
                .collect();
            assert_eq!(got, want, "hits {hits:?}");
        }
    }

    #[test]
    fn keys_are_independent() {
        let mut s = Sessionizer::new(SessionRules::default());
        assert!(s.observe("a", t("09:00:00")).is_empty());
        assert!(s.observe("b", t("09:01:00")).is_empty());
        assert!(s.observe("a", t("09:02:00")).is_empty());
        assert_eq!(s.open_sessions(), 2);
        let all = s.flush();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].key, "a");
        assert_eq!(all[0].active, SignedDuration::from_secs(180));
        assert_eq!(s.open_sessions(), 0);
    }

    #[test]
    fn watermark_closes_idle_sessions_of_other_keys() {
        let mut s = Sessionizer::new(SessionRules::default());
        s.observe("a", t("09:00:00"));
        // Still within idle + grace (10 min) of a's last hit.
        assert!(s.observe("b", t("09:09:00")).is_empty());
        let closed = s.observe("c", t("09:16:00"));
        assert_eq!(closed.len(), 1);
        assert_eq!(closed[0].key, "a");
        assert_eq!(s.open_sessions(), 2);
    }

    #[test]
    fn memory_holds_only_open_sessions() {
        let mut s = Sessionizer::new(SessionRules::default());
        let start = t("00:00:00");
        let mut closed = 0;
        for i in 0..10_000i64 {
            let at = start + SignedDuration::from_secs(i * 30);
            let key = format!("user{}", i % 1000);
            closed += s.observe(key, at).len();
        }
        // 1000 users, each hit every 500 minutes: every hit is a session.
        assert!(s.open_sessions() <= 40, "{}", s.open_sessions());
        closed += s.flush().len();
        assert_eq!(closed, 10_000);
    }

    #[test]
    fn custom_idle_gap() {
        let mut s = Sessionizer::new(SessionRules::with_idle_minutes(10));
        s.observe("a", t("09:00:00"));
        assert!(s.observe("a", t("09:08:00")).is_empty());
        let all = s.flush();
        assert_eq!(all[0].active, SignedDuration::from_secs(9 * 60));
    }

    #[test]
    fn observed_spans_add_up_to_the_sessions_covered_time() {
        let mut s = Sessionizer::new(SessionRules::default());
        let mut closed = Vec::new();
        let mut span = |h: &str| s.observe_span(&"a", t(h), &mut closed);
        // A new session: the hit alone.
        assert_eq!(span("09:00:00"), Some((t("09:00:00"), t("09:00:00"))));
        // Continued within the idle gap: the whole gap counts.
        assert_eq!(span("09:04:00"), Some((t("09:00:00"), t("09:04:00"))));
        // Already covered: nothing new.
        assert_eq!(span("09:02:00"), None);
        // Slightly earlier than the first hit: extends it backwards.
        assert_eq!(span("08:58:00"), Some((t("08:58:00"), t("09:00:00"))));
        // After more than the idle gap: a new session, the hit alone.
        assert_eq!(span("09:10:00"), Some((t("09:10:00"), t("09:10:00"))));
        let _ = s.flush();
    }
}
