//! The state behind daily budgets: what each person spent today under each
//! budgeted rule, and the charges that count requests, tunnels and
//! WebSockets into it.
//!
//! - [`ledger`]: the in-memory ledger (minute bitmaps and bytes per person,
//!   rule and day), fed by the shared sessionizer. Bounded and sharded.
//! - [`snapshot`]: the ledger saved to a file in the state directory
//!   (`--budget-state`), atomically, pruned to today, so that a restart
//!   does not refill every budget.
//! - [`store`]: with `state.redis`, replicas share one budget: minute bits
//!   and byte counts written to Redis in the background, at most once a
//!   second, and read back; never on the request path. Redis down: budgets
//!   fail open (the traffic is decided without them), said once, counted.
//!
//! Whether a budget allows traffic is the policy core's decision
//! ([`crate::policy::budget_stage`]); [`Budgets::settle`] gathers the fact
//! it needs (how much was spent) from the ledger, in memory, and hands the
//! exchange a [`Charge`] that counts what the allowed traffic then spends.
//! Nothing here stores a user name in the clear outside the process: the
//! file and Redis know entries by a keyed hash of (person, rule).

pub mod ledger;
pub mod snapshot;
pub mod store;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use hmac::{Hmac, Mac};
use jiff::Timestamp;
use sha2::Sha256;

pub use ledger::{Key, Ledger, MinuteSet, Place, Standing};

use crate::metrics::Metrics;
use crate::policy::budget::{Budget, BudgetState, SpentFact};
use crate::policy::{budget_stage, budget_stage_in_day, Admission, Class, Entry, Policy};
use crate::proxy::Clock;
use crate::warn::Person;

/// The label the budget key is derived under from the pseudonym key.
pub const KEY_LABEL: &str = "budget/v1";

/// Entries the ledger holds at most (about 300 bytes each).
pub const CAPACITY: usize = 100_000;

/// Everything the proxy keeps for budgets.
pub struct Budgets {
    pub ledger: Ledger,
    metrics: Arc<Metrics>,
    /// The policy clock (a test moves it).
    clock: Clock,
    /// Ticks when some person's budget runs out: open tunnels and
    /// WebSockets under budgets then check whether it is theirs.
    exhausted: tokio::sync::watch::Sender<u64>,
    /// Charged since the last snapshot.
    dirty: AtomicBool,
    /// A full ledger was reported (once per episode).
    full_warned: AtomicBool,
    /// Redis, when the policy names it (see [`store`]).
    pub store: store::Store,
}

impl Budgets {
    /// `key`: the secret entries are tagged with (derived from the
    /// pseudonym key, so replicas sharing that key share Redis entries).
    pub fn new(key: &[u8; 32], metrics: Arc<Metrics>, clock: Clock) -> Arc<Budgets> {
        Self::with_capacity(key, metrics, clock, CAPACITY)
    }

    pub fn with_capacity(
        key: &[u8; 32],
        metrics: Arc<Metrics>,
        clock: Clock,
        capacity: usize,
    ) -> Arc<Budgets> {
        // HMAC accepts keys of any length.
        let mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
        let tagger: ledger::Tagger = Box::new(move |person: &Person, rule: &str| {
            let mut m = mac.clone();
            m.update(b"budget\0");
            m.update(person.canonical().as_bytes());
            m.update(b"\0");
            m.update(rule.as_bytes());
            let full: [u8; 32] = m.finalize().into_bytes().into();
            let mut t = [0u8; 16];
            t.copy_from_slice(&full[..16]);
            t
        });
        Arc::new(Budgets {
            ledger: Ledger::new(capacity, tagger),
            store: store::Store::new(metrics.clone()),
            metrics,
            clock,
            exhausted: tokio::sync::watch::channel(0).0,
            dirty: AtomicBool::new(false),
            full_warned: AtomicBool::new(false),
        })
    }

    /// Open tunnels and WebSockets under a budget subscribe to this: it
    /// ticks whenever someone's budget runs out.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.exhausted.subscribe()
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// The budget stage for `adm` (decided on `policy`) when its deciding
    /// rule has a budget that was not looked up yet: how much `person`
    /// spent today, from the ledger (memory only), then [`budget_stage`],
    /// which decides `adm` again in place. Returns a [`Charge`] for the
    /// traffic it lets through (none when refused or without a budget).
    pub fn settle(
        self: &Arc<Self>,
        policy: &Arc<Policy>,
        entry: Entry,
        person: Person,
        adm: &mut Admission,
    ) -> Option<Charge> {
        let view = adm.decision.budget?;
        if view.state != BudgetState::Unchecked {
            return None;
        }
        let rule = &policy.rules[view.rule as usize];
        let budget = rule.budget.as_ref()?;
        let now = self.clock.now();
        let key = Key::new(person, rule.id.clone());
        let mut place = Place::default();
        let standing = self.ledger.standing_at(&key, &mut place, budget, now);
        if standing.is_none() {
            self.ledger_full();
        }
        let fact = match standing {
            _ if self.store.unavailable(&policy.state) => SpentFact::Unavailable,
            Some(s) => SpentFact::Known(s.spent),
            None => SpentFact::Unavailable,
        };
        match standing {
            Some(s) => budget_stage_in_day(policy, entry, fact, s.day, now, adm),
            None => budget_stage(policy, entry, fact, now, adm),
        }
        let state = adm
            .decision
            .budget
            .map_or(BudgetState::Unavailable, |v| v.state);
        if let (BudgetState::Exhausted { .. }, Some(s)) = (state, standing) {
            self.exhausted(&key, &s);
        }
        if adm.refuses() {
            return None;
        }
        Some(Charge {
            budgets: self.clone(),
            policy: policy.clone(),
            rule: view.rule,
            key,
            place,
            state,
            time: adm.decision.class != Some(Class::Embedded),
            charged: 0,
            at_last_hit: 0,
            admitted_at: Some(now),
        })
    }

    /// Counts a person's budget running out (once per day and replica),
    /// and tells open tunnels and WebSockets to check themselves.
    fn exhausted(&self, key: &Key, standing: &Standing) {
        if standing.noted || !self.ledger.note_exhausted(key, &standing.day) {
            return;
        }
        self.metrics.budget_exhausted(&key.rule);
        self.exhausted.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Tells open tunnels and WebSockets under budgets to look again (other
    /// replicas counted more: a budget may run out sooner).
    pub fn changed(&self) {
        self.exhausted.send_modify(|n| *n = n.wrapping_add(1));
    }

    fn ledger_full(&self) {
        self.metrics.budget_untracked();
        if !self.full_warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                capacity = CAPACITY,
                "the budget ledger is full: people it cannot track are decided without their budget until a day ends (socialgate_budget_untracked_total counts them)"
            );
        }
    }

    /// What `/readyz` says about budgets: where they are kept, how many
    /// entries, and whether Redis can be reached.
    pub fn status(&self, policy: &Policy) -> serde_json::Value {
        let mut v = self.store.status(&policy.state);
        v["entries"] = self.ledger.len().into();
        v["rules"] = policy
            .rules
            .iter()
            .filter(|r| r.budget.is_some())
            .count()
            .into();
        v
    }

    /// True when something was charged since the last call.
    pub fn take_dirty(&self) -> bool {
        self.dirty.swap(false, Ordering::Relaxed)
    }
}

/// How often the ledger is pruned and, when something was charged, saved.
pub const SAVE_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

/// The budgets' background work, for as long as the proxy runs: every
/// [`SAVE_EVERY`], days that are over are dropped and, when something was
/// charged, the ledger is saved to `file`; with `state.redis` in the
/// policy, the ledger is synced with Redis every second ([`store`]).
pub async fn maintain(
    budgets: Arc<Budgets>,
    policy: Arc<crate::reload::PolicyHandle>,
    file: Option<std::path::PathBuf>,
) {
    let mut save = tokio::time::interval(SAVE_EVERY);
    save.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sync = tokio::time::interval(store::SYNC_EVERY);
    sync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut save_failed = false;
    loop {
        tokio::select! {
            _ = save.tick() => {
                budgets.ledger.prune(budgets.now());
                let Some(path) = file.clone() else { continue };
                if !budgets.take_dirty() {
                    continue;
                }
                let b = budgets.clone();
                let saved = tokio::task::spawn_blocking(move || snapshot::save(&b, &path).map_err(|e| (path, e))).await;
                match saved {
                    Ok(Ok(_)) if save_failed => {
                        save_failed = false;
                        tracing::info!("the budget state file is written again");
                    }
                    Ok(Err((path, e))) if !save_failed => {
                        save_failed = true;
                        tracing::warn!(file = %path.display(), error = %e, "cannot save the budgets spent today (a restart would refill them); retrying every 30 s, said once");
                    }
                    _ => {}
                }
            }
            _ = sync.tick() => {
                let state = policy.load().state.clone();
                budgets.store.sync(&budgets, &state).await;
            }
        }
    }
}

/// What one allowed request, tunnel or WebSocket under a budget spends:
/// held by its exchange, then its record; counts time hits and bytes into
/// the ledger as the traffic flows, and once more when it ends.
pub struct Charge {
    budgets: Arc<Budgets>,
    /// The snapshot the traffic was decided on (the rule and its budget).
    policy: Arc<Policy>,
    rule: u16,
    key: Key,
    /// Where the key's entry was in the ledger last (the time hit and the
    /// bytes go straight there).
    place: Place,
    /// Where the person stood when admitted.
    pub state: BudgetState,
    /// Time counts (not for a platform's embedded widgets on other sites).
    time: bool,
    /// Bytes of this exchange already charged.
    charged: u64,
    /// Bytes of this exchange at its last time hit.
    at_last_hit: u64,
    /// When the exchange was admitted, for its first time hit (the clock
    /// is read once for both; what lies between is at most a DNS lookup
    /// and a connect, well inside a minute's mark).
    admitted_at: Option<Timestamp>,
}

impl std::fmt::Debug for Charge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Charge")
            .field("rule", &self.key.rule)
            .field("state", &self.state)
            .finish()
    }
}

impl Charge {
    fn budget(&self) -> &Budget {
        // A charge is only made for a rule with a budget, on this snapshot.
        self.policy.rules[self.rule as usize]
            .budget
            .as_ref()
            .expect("a charged rule has a budget")
    }

    /// The rule whose budget this is.
    pub fn rule(&self) -> &str {
        &self.key.rule
    }

    /// A time hit now (traffic is moving, or an exchange starts).
    pub fn hit(&mut self) {
        let now = match self.admitted_at.take() {
            Some(t) => t,
            None => self.budgets.now(),
        };
        self.at_last_hit = self.charged;
        self.charge(now, self.time, 0);
    }

    /// Brings the charge up to `total` bytes of the exchange (both ways):
    /// the new bytes, and a time hit if any moved since the last one.
    /// Returns where the person stands now, when that changed.
    pub fn account(&mut self, total: u64) -> Option<Standing> {
        let now = self.budgets.now();
        let bytes = total.saturating_sub(self.charged);
        let moved = total > self.at_last_hit;
        if moved {
            self.at_last_hit = total;
        }
        self.charged = self.charged.max(total);
        self.charge(now, self.time && moved, bytes)
    }

    fn charge(&mut self, now: Timestamp, hit: bool, bytes: u64) -> Option<Standing> {
        if !hit && bytes == 0 {
            return None;
        }
        let budgets = self.budgets.clone();
        let mut place = self.place;
        let standing =
            budgets
                .ledger
                .charge_at(&self.key, &mut place, self.budget(), now, hit, bytes);
        self.place = place;
        let standing = standing?;
        budgets.dirty.store(true, Ordering::Relaxed);
        if matches!(
            self.budget().apply(standing.spent, &standing.day),
            BudgetState::Exhausted { .. }
        ) {
            budgets.exhausted(&self.key, &standing);
        }
        Some(standing)
    }

    /// What is left now: the earliest instant the time budget can run out
    /// (every minute from now on active), and the bytes left; `None` for a
    /// dimension the budget does not limit or that is spent already. The
    /// deadline is capped at the day's end, when the budget renews.
    pub fn left(&self) -> (Option<Timestamp>, Option<u64>) {
        let now = self.budgets.now();
        let budget = self.budget();
        let mut place = self.place;
        let Some(s) = self
            .budgets
            .ledger
            .standing_at(&self.key, &mut place, budget, now)
        else {
            return (None, None);
        };
        // Nothing left (a warn rule's tunnel, or report mode, goes on):
        // there is nothing to wait for until the day ends.
        let deadline = budget.minutes.and_then(|limit| {
            let minute = s.day.minute_of(now);
            let left = limit.saturating_sub(s.spent.minutes);
            (left > 0).then(|| s.day.at_minute(minute + left).min(s.day.end))
        });
        let bytes = budget
            .bytes()
            .map(|b| b.saturating_sub(s.spent.bytes))
            .filter(|b| *b > 0);
        (deadline, bytes)
    }

    /// `X-Socialgate-Budget-Remaining` for this exchange, from where the
    /// person stood when admitted.
    pub fn remaining_header(&self) -> Option<String> {
        remaining_header(self.budget(), &self.state)
    }
}

/// `minutes=12; megabytes=480.5; renews=2026-11-26T00:00:00+01:00`: what is
/// left of `budget` in `state` (0 once spent), and when it renews.
pub fn remaining_header(budget: &Budget, state: &BudgetState) -> Option<String> {
    let (minutes, bytes, renews) = match *state {
        BudgetState::Left {
            minutes,
            bytes,
            renews,
        } => (minutes, bytes, renews),
        BudgetState::Exhausted { renews, .. } => (
            budget.minutes.map(|_| 0),
            budget.megabytes.map(|_| 0),
            renews,
        ),
        _ => return None,
    };
    let mut parts = Vec::new();
    if let Some(m) = minutes {
        parts.push(format!("minutes={m}"));
    }
    if let Some(b) = bytes {
        let mb = crate::policy::budget::megabytes_words(b);
        parts.push(format!("megabytes={}", mb.trim_end_matches(" MB")));
    }
    parts.push(format!(
        "renews={}",
        renews
            .to_zoned_datetime(budget.tz.clone())
            .strftime("%Y-%m-%dT%H:%M:%S%:z")
    ));
    Some(parts.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_says_what_is_left_and_when_it_renews() {
        let b = Budget {
            minutes: Some(30),
            megabytes: Some(500),
            tz: jiff::tz::TimeZone::get("Europe/Berlin").unwrap(),
            tz_name: "Europe/Berlin".into(),
            last_day: Default::default(),
        };
        let renews: Timestamp = "2026-11-26T00:00:00+01:00".parse().unwrap();
        let left = BudgetState::Left {
            minutes: Some(12),
            bytes: Some(480_500_000),
            renews,
        };
        assert_eq!(
            remaining_header(&b, &left).unwrap(),
            "minutes=12; megabytes=480.5; renews=2026-11-26T00:00:00+01:00"
        );
        let spent = BudgetState::Exhausted {
            spent: Default::default(),
            renews,
        };
        assert_eq!(
            remaining_header(&b, &spent).unwrap(),
            "minutes=0; megabytes=0; renews=2026-11-26T00:00:00+01:00"
        );
        assert!(remaining_header(&b, &BudgetState::Unavailable).is_none());
    }
}
