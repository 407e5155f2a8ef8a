//! The policy clock: what "now" is for decisions, and the one timer that
//! wakes open tunnels when a time window opens or closes.
//!
//! The pure core answers [`crate::policy::next_change_after`]; [`run`]
//! sleeps until then and ticks a watch channel that every open tunnel and
//! WebSocket listens to, so they are decided again exactly at the window's
//! edge instead of being found by polling. After a reload the next edge is
//! computed again from the new policy.

use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use tokio::sync::watch;

use crate::reload::PolicyHandle;

/// Wall time plus a fixed offset. The offset is zero in production; tests
/// set it to stand a few seconds before a window's edge instead of waiting
/// for the real one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Clock {
    pub offset: SignedDuration,
}

impl Clock {
    pub fn now(&self) -> Timestamp {
        Timestamp::now()
            .checked_add(self.offset)
            .unwrap_or_else(|_| Timestamp::now())
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
