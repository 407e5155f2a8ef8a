//! Budget bookkeeping per request, in memory: target under 1 µs.
//!
//! What a request under a budgeted rule costs beyond its admission: the
//! budget stage (the ledger lookup of what the person spent today, then
//! the pure stage), and the charge (a time hit when it goes on, its bytes
//! when it ends). 10,000 people share a 30-minute, 500 MB rule, as on a
//! busy proxy; each request is another person's. Run with
//! `cargo bench --bench budget`.

use std::hint::black_box;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use socialgate::budget::Budgets;
use socialgate::metrics::Metrics;
use socialgate::policy::{admit, load_dir, normalize_host, Entry, Facts};
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

fn bench(c: &mut Criterion) {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        shipped.join("catalog.yaml"),
        dir.path().join("catalog.yaml"),
    )
    .unwrap();
    std::fs::write(dir.path().join("policy.yaml"), POLICY).unwrap();
    let policy = Arc::new(load_dir(dir.path()).expect("benchmark policy compiles"));
    let budgets = Budgets::new(&[7; 32], Metrics::new(), Clock::default());
    let host = normalize_host("www.youtube.com").unwrap();
    let people: Vec<IpAddr> = (0..10_000u32)
        .map(|i| IpAddr::from([10, 1, (i >> 8) as u8, i as u8]))
        .collect();
    let facts = |client| Facts {
        entry: Entry::Request,
        client,
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
    let now = jiff::Timestamp::now();
    let admitted = admit(&policy, &facts(people[0]), now);
    assert!(admitted.decision.budget.is_some(), "the rule has a budget");
    // Everyone has spent a little already.
    for &p in &people {
        let (_, charge) = budgets.settle(
            &policy,
            Entry::Request,
            Person::Address(p),
            admitted.clone(),
        );
        let mut charge = charge.expect("within budget");
        charge.hit();
        charge.account(50_000);
    }

    let mut group = c.benchmark_group("budget_per_request");
    let mut i = 0usize;
    group.bench_function("admission_clone_baseline", |b| {
        b.iter(|| black_box(admitted.clone()))
    });
    group.bench_function("budget_stage", |b| {
        b.iter(|| {
            i = (i + 1) % people.len();
            let person = Person::Address(people[i]);
            let (adm, charge) =
                budgets.settle(black_box(&policy), Entry::Request, person, admitted.clone());
            black_box((adm, charge))
        })
    });
    group.bench_function("budget_stage_and_charge", |b| {
        b.iter(|| {
            i = (i + 1) % people.len();
            let person = Person::Address(people[i]);
            let (adm, charge) =
                budgets.settle(black_box(&policy), Entry::Request, person, admitted.clone());
            let mut charge = charge.expect("within budget");
            charge.hit();
            charge.account(black_box(20_000));
            black_box(adm)
        })
    });
    group.bench_function("budget_stage_and_charge_signed_in_user", |b| {
        let users: Vec<String> = (0..10_000).map(|n| format!("user{n}")).collect();
        b.iter(|| {
            i = (i + 1) % users.len();
            let person = Person::of(Some(&users[i]), people[i]);
            let (adm, charge) =
                budgets.settle(black_box(&policy), Entry::Request, person, admitted.clone());
            let mut charge = charge.expect("within budget");
            charge.hit();
            charge.account(black_box(20_000));
            black_box(adm)
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
