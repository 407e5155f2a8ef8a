//! Budgets shared by replicas through Redis (`state.redis`).
//!
//! Filled in with the Redis part of issue #12; until then every budget
//! lives in this process's ledger.

use std::sync::Arc;

use crate::metrics::Metrics;
use crate::policy::State;

/// How often the ledger is synced with Redis.
pub const SYNC_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Where budgets are shared, if anywhere.
pub struct Store {
    #[allow(dead_code)]
    metrics: Arc<Metrics>,
}

impl Store {
    pub fn new(metrics: Arc<Metrics>) -> Store {
        Store { metrics }
    }

    /// True while the shared store cannot be reached: budgets fail open.
    pub fn unavailable(&self, _state: &State) -> bool {
        false
    }

    /// Writes what this replica counted and reads what the others did.
    pub async fn sync(&self, _budgets: &super::Budgets, _state: &State) {}
}
