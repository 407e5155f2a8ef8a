//! Giving memory back to the operating system after a burst.
//!
//! glibc's allocator keeps memory that was freed in its arenas for reuse
//! and returns little of it by itself, so after a burst of connections (or
//! of tunnels moving data) closes, or goes idle and is parked, the
//! process's RSS would stay at the burst's peak. A background task watches
//! how much is busy (client connections that are not parked, plus tunnel
//! copy buffers lent out) and, when that has fallen well below its recent
//! peak, asks glibc to release its free pages (`malloc_trim`), off the
//! runtime's threads. Elsewhere (musl, other systems) it does nothing.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::metrics::Gauges;

/// How often the busy count is looked at.
pub const CHECK_EVERY: Duration = Duration::from_secs(5);

/// A fall of at least this many busy connections and buffers ...
const MIN_FALL: u64 = 256;
/// ... and to at most this share (in percent) of the peak triggers a trim.
const FALL_TO_PERCENT: u64 = 75;

/// Client connections not parked plus copy buffers lent out.
fn busy(gauges: &Gauges) -> u64 {
    let open = gauges.connections.load(Ordering::Relaxed);
    let parked = gauges.parked.load(Ordering::Relaxed);
    open.saturating_sub(parked) + crate::proxy::copy::POOL.lent()
}

/// Whether the busy count fell far enough from `peak` to trim.
pub fn fell_enough(peak: u64, now: u64) -> bool {
    peak >= now + MIN_FALL && now * 100 <= peak * FALL_TO_PERCENT
}

/// Runs until the runtime stops: trims after every large enough fall.
pub async fn trim_after_bursts(gauges: Arc<Gauges>) {
    let mut peak = 0;
    let mut ticks = tokio::time::interval(CHECK_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let now = busy(&gauges);
        peak = peak.max(now);
        if fell_enough(peak, now) {
            let released = tokio::task::spawn_blocking(trim).await.unwrap_or(false);
            tracing::debug!(peak, now, released, "gave freed memory back after a burst");
            peak = now;
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
        assert!(!fell_enough(100, 0), "too small to matter");
        assert!(!fell_enough(10_000, 9_000), "not far enough below the peak");
        assert!(fell_enough(10_000, 7_000));
        assert!(fell_enough(10_000, 0));
        assert!(!fell_enough(0, 0));
    }
}
