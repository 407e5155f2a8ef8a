//! Giving memory back to the operating system after a burst.
//!
//! glibc's allocator keeps memory that was freed in its arenas for reuse
//! and returns little of it by itself, so after a burst of connections (or
//! of tunnels moving data) closes, or goes idle and is parked, the
//! process's RSS would stay at the burst's peak. A background task watches
//! how much is busy (client connections that are not parked, plus tunnel
//! copy buffers lent out) and how much is open (client connections and
//! tunnels) and, when either has fallen well below its recent peak, asks
//! glibc to release its free pages (`malloc_trim`), off the runtime's
//! threads. Only whole free pages go back: pages that also hold live
//! objects stay (docs/benchmarks.md shows what remains). Elsewhere (musl,
//! other systems) it does nothing.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::metrics::Gauges;

/// How often the busy count is looked at.
pub const CHECK_EVERY: Duration = Duration::from_secs(5);

/// A fall of at least this many busy connections and buffers ...
const MIN_FALL: u64 = 256;
/// ... and to at most this share (in percent) of the peak triggers a trim;
const FALL_TO_PERCENT: u64 = 75;
/// so does going quiet (a tenth of the peak or less) after at least this
/// much was busy: a burst of tunnels that moved their data and went idle.
const QUIET_AFTER: u64 = 64;

/// What holds memory that a burst leaves behind: (busy, open). Busy:
/// client connections not parked, requests being handled, and copy
/// buffers lent out (their buffers are freed when they park or go idle). Open: client connections
/// and tunnels (their state is freed when they close).
fn load(gauges: &Gauges) -> (u64, u64) {
    let open = gauges.connections.load(Ordering::Relaxed);
    let parked = gauges.parked.load(Ordering::Relaxed);
    let tunnels = gauges.tunnels.load(Ordering::Relaxed);
    let in_flight = gauges.in_flight.load(Ordering::Relaxed);
    let lent = crate::proxy::copy::POOL.lent();
    (
        open.saturating_sub(parked) + lent + in_flight,
        open + tunnels,
    )
}

/// Whether the busy count fell far enough from `peak` to trim.
pub fn fell_enough(peak: u64, now: u64) -> bool {
    (peak >= now + MIN_FALL && now * 100 <= peak * FALL_TO_PERCENT)
        || (peak >= QUIET_AFTER && now * 10 <= peak)
}

/// Runs until the runtime stops: trims after every large enough fall.
pub async fn trim_after_bursts(gauges: Arc<Gauges>) {
    let (mut busy_peak, mut open_peak) = (0, 0);
    let mut ticks = tokio::time::interval(CHECK_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let (busy, open) = load(&gauges);
        busy_peak = busy_peak.max(busy);
        open_peak = open_peak.max(open);
        if fell_enough(busy_peak, busy) || fell_enough(open_peak, open) {
            let released = tokio::task::spawn_blocking(trim).await.unwrap_or(false);
            tracing::debug!(
                busy_peak,
                busy,
                open_peak,
                open,
                released,
                "gave freed memory back after a burst"
            );
            (busy_peak, open_peak) = (busy, open);
        }
    }
}

/// Asks the allocator to return free memory; true if it released some.
pub fn trim() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim only walks the allocator's own free lists.
        unsafe { libc::malloc_trim(0) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_only_after_a_large_fall() {
        assert!(!fell_enough(50, 0), "too small to matter");
        assert!(fell_enough(100, 0), "went quiet");
        assert!(!fell_enough(200, 100), "busy still");
        assert!(!fell_enough(10_000, 9_000), "not far enough below the peak");
        assert!(fell_enough(10_000, 7_000));
        assert!(fell_enough(10_000, 0));
        assert!(!fell_enough(0, 0));
    }
}
