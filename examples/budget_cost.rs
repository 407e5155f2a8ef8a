//! Instructions per request for budget bookkeeping, for
//! `valgrind --tool=callgrind` (which counts instructions whatever else the
//! machine is doing): the budget stage (`Budgets::settle`: the ledger
//! lookup and the pure stage) and the charge of one request (a time hit
//! and its bytes), as in `benches/budget.rs`: 10,000 people share a
//! 30-minute, 500 MB rule, each request is another person's.
//!
//! ```sh
//! cargo build --release --example budget_cost
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.out \
//!   --toggle-collect='*budget_cost*one_request*' target/release/examples/budget_cost
//! callgrind_annotate /tmp/cg.out | grep 'PROGRAM TOTALS'   # ÷ 100,000
//! ```
//!
//! `baseline` as the argument runs the same loop without the budget (the
//! admission copy only), to subtract.

use std::hint::black_box;
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

const REQUESTS: usize = 100_000;

#[inline(never)]
fn one_request(
    budgets: &Arc<Budgets>,
    policy: &Arc<Policy>,
    person: Person,
    adm: Admission,
    budget: bool,
) {
    if budget {
        let (adm, charge) = budgets.settle(policy, Entry::Request, person, adm);
        let mut charge = charge.expect("within budget");
        charge.hit();
        charge.account(black_box(20_000));
        black_box(adm);
    } else {
        black_box((person, adm));
    }
}

fn main() {
    let budget = std::env::args().nth(1).as_deref() != Some("baseline");
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        shipped.join("catalog.yaml"),
        dir.path().join("catalog.yaml"),
    )
    .unwrap();
    std::fs::write(dir.path().join("policy.yaml"), POLICY).unwrap();
    let policy = Arc::new(load_dir(dir.path()).expect("the policy compiles"));
    let budgets = Budgets::new(&[7; 32], Metrics::new(), Clock::default());
    let host = normalize_host("www.youtube.com").unwrap();
    let people: Vec<IpAddr> = (0..10_000u32)
        .map(|i| IpAddr::from([10, 1, (i >> 8) as u8, i as u8]))
        .collect();
    let facts = Facts {
        entry: Entry::Request,
        client: people[0],
        user: None,
        host: &host,
        port: 80,
        resolved: None,
        sni: None,
        listeners: &[],
        activity: None,
        resolved_by_parent: false,
        original: None,
        acknowledged: None,
        hello: None,
        spent: None,
    };
    let admitted = admit(&policy, &facts, jiff::Timestamp::now());
    // Everyone has spent a little already (outside the counted function).
    for &p in &people {
        let (_, c) = budgets.settle(
            &policy,
            Entry::Request,
            Person::Address(p),
            admitted.clone(),
        );
        let mut c = c.expect("within budget");
        c.hit();
        c.account(50_000);
    }
    for i in 0..REQUESTS {
        let person = Person::Address(people[i % people.len()]);
        one_request(&budgets, &policy, person, admitted.clone(), budget);
    }
}
