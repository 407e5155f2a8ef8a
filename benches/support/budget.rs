//! The scene `benches/budget.rs` and `examples/budget_cost.rs` both
//! measure: 10,000 people (by address) share a 30-minute, 500 MB rule,
//! and each has spent a little today already.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use socialgate::budget::Budgets;
use socialgate::metrics::Metrics;
use socialgate::policy::{admit, load_dir, normalize_host, Admission, Entry, Facts, Policy};
use socialgate::proxy::Clock;
use socialgate::warn::Person;

const POLICY: &str = r#"
version: 1
settings: {timezone: Europe/Berlin}
groups:
  staff: {networks: [10.0.0.0/8]}
rules:
  - {id: video, groups: [staff], categories: [video], action: block, budget: {minutes: 30, megabytes: 500}}
"#;

pub struct Scene {
    pub policy: Arc<Policy>,
    pub budgets: Arc<Budgets>,
    pub people: Vec<IpAddr>,
    /// A request to YouTube, admitted under the budgeted rule.
    pub admitted: Admission,
    _dir: tempfile::TempDir,
}

pub fn scene() -> Scene {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        shipped.join("catalog.yaml"),
        dir.path().join("catalog.yaml"),
    )
    .unwrap();
    std::fs::write(dir.path().join("policy.yaml"), POLICY).unwrap();
    let policy = Arc::new(load_dir(dir.path()).expect("the benchmark policy compiles"));
    let budgets = Budgets::new(&[7; 32], Metrics::new(), Clock::default());
    let host = normalize_host("www.youtube.com").unwrap();
    let people: Vec<IpAddr> = (0..10_000u32)
        .map(|i| IpAddr::from([10, 1, (i >> 8) as u8, i as u8]))
        .collect();
    let facts = Facts::new(Entry::Request, people[0], &host, 80);
    let admitted = admit(&policy, &facts, jiff::Timestamp::now());
    assert!(admitted.decision.budget.is_some(), "the rule has a budget");
    for &p in &people {
        let charge = budgets.settle(
            &policy,
            Entry::Request,
            Person::Address(p),
            &mut admitted.clone(),
        );
        let mut charge = charge.expect("within budget");
        charge.hit();
        charge.account(50_000);
    }
    Scene {
        policy,
        budgets,
        people,
        admitted,
        _dir: dir,
    }
}
