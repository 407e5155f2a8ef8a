//! The policy clock: what "now" is for decisions, and the one timer that
//! wakes open tunnels when a time window opens or closes.
//!
//! The pure core answers [`crate::policy::next_change_after`]; [`run`]
//! sleeps until then and ticks a watch channel that every open tunnel and
//! WebSocket listens to, so they are decided again exactly at the window's
//! edge instead of being found by polling. After a reload the next edge is
//! computed again from the new policy.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use tokio::sync::watch;

use crate::reload::PolicyHandle;

/// The wall clock, read straight into a [`Timestamp`]: the same instant as
/// `Timestamp::now()`, without going through `SystemTime` and its
/// subtraction from the epoch (about 100 instructions of the ~2,000 that
/// budget bookkeeping costs a request, and it reads the clock twice).
pub fn wall_now() -> Timestamp {
    #[cfg(unix)]
    {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime only writes the timespec it is given, which
        // lives for the call; CLOCK_REALTIME exists on every Unix.
        if unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) } == 0 {
            #[allow(clippy::unnecessary_cast)] // i32 or i64, by platform
            if let Ok(t) = Timestamp::new(ts.tv_sec as i64, ts.tv_nsec as i32) {
                return t;
            }
        }
    }
    Timestamp::now()
}

/// Wall time plus an offset. The offset is zero in production; tests set
/// it to stand a few seconds before a window's edge instead of waiting for
/// the real one, and [`Clock::advance`] it to let an hour pass at once
/// (warn acknowledgements expiring).
#[derive(Debug, Clone, Default)]
pub struct Clock {
    pub offset: SignedDuration,
    /// Milliseconds added by [`Clock::advance`], shared by every clone, so
    /// a test moves the running proxy's clock.
    advanced_ms: Arc<AtomicI64>,
    /// Ticks on every [`Clock::advance`], so timers set from this clock
    /// (a budget running out) are planned again instead of waiting for
    /// wall time. Never ticks in production.
    jumps: Arc<watch::Sender<u64>>,
}

impl Clock {
    /// A clock that reads `offset` away from wall time.
    pub fn with_offset(offset: SignedDuration) -> Clock {
        Clock {
            offset,
            ..Clock::default()
        }
    }

    pub fn now(&self) -> Timestamp {
        let advanced = self.advanced_ms.load(Ordering::Relaxed);
        if advanced == 0 && self.offset.is_zero() {
            // The real clock (every run but a test's).
            return wall_now();
        }
        let offset = self
            .offset
            .saturating_add(SignedDuration::from_millis(advanced));
        wall_now()
            .checked_add(offset)
            .unwrap_or_else(|_| wall_now())
    }

    /// Moves this clock and all its clones forward by `by` (for tests).
    /// The window-edge timer ([`run`]) is not re-planned: tests that need
    /// an edge set `offset` before starting instead.
    pub fn advance(&self, by: Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.advanced_ms.fetch_add(ms, Ordering::Relaxed);
        self.jumps.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Ticks whenever [`Clock::advance`] moves this clock.
    pub fn jumps(&self) -> watch::Receiver<u64> {
        self.jumps.subscribe()
    }

    /// The tokio instant at which this clock reads `t` (now, if past).
    pub fn instant_of(&self, t: Timestamp) -> tokio::time::Instant {
        let wait = t.duration_since(self.now());
        tokio::time::Instant::now() + Duration::try_from(wait).unwrap_or_default()
    }
}

/// Ticks `ticks` at every window edge of the current policy, until the
/// policy handle goes away.
pub async fn run(handle: Arc<PolicyHandle>, clock: Clock, ticks: watch::Sender<u64>) {
    let mut generation = handle.subscribe();
    loop {
        let now = clock.now();
        let wait = crate::policy::next_change_after(&handle.load(), now).map(|edge| {
            // A little past the edge, so the decision taken on waking is on
            // the far side of it.
            let d = edge.duration_since(now);
            Duration::try_from(d).unwrap_or_default() + Duration::from_millis(5)
        });
        let sleep = async {
            match wait {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = sleep => {
                ticks.send_modify(|n| *n = n.wrapping_add(1));
            }
            changed = generation.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fast_wall_clock_reads_what_jiff_reads() {
        let before = Timestamp::now();
        let t = wall_now();
        let after = Timestamp::now();
        assert!(before <= t && t <= after, "{before} <= {t} <= {after}");
        assert!(t.subsec_nanosecond() >= 0);
    }
}
