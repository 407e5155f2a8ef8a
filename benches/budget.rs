//! Budget bookkeeping per request, in memory: target under 1 µs.
//!
//! What a request under a budgeted rule costs beyond its admission: the
//! budget stage (the ledger lookup of what the person spent today, then
//! the pure stage), and the charge (a time hit when it goes on, its bytes
//! when it ends). 10,000 people share a 30-minute, 500 MB rule, as on a
//! busy proxy; each request is another person's. Run with
//! `cargo bench --bench budget`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use socialgate::policy::Entry;
use socialgate::warn::Person;

#[path = "support/budget.rs"]
mod support;

fn bench(c: &mut Criterion) {
    let support::Scene {
        policy,
        budgets,
        people,
        admitted,
        ..
    } = support::scene();
    let mut group = c.benchmark_group("budget_per_request");
    let mut i = 0usize;
    group.bench_function("admission_clone_baseline", |b| {
        b.iter(|| black_box(admitted.clone()))
    });
    group.bench_function("budget_stage", |b| {
        b.iter(|| {
            i = (i + 1) % people.len();
            let person = Person::Address(people[i]);
            let mut adm = admitted.clone();
            let charge = budgets.settle(black_box(&policy), Entry::Request, person, &mut adm);
            black_box((adm, charge))
        })
    });
    group.bench_function("budget_stage_and_charge", |b| {
        b.iter(|| {
            i = (i + 1) % people.len();
            let person = Person::Address(people[i]);
            let mut adm = admitted.clone();
            let charge = budgets.settle(black_box(&policy), Entry::Request, person, &mut adm);
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
            let mut adm = admitted.clone();
            let charge = budgets.settle(black_box(&policy), Entry::Request, person, &mut adm);
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
