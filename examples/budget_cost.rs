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
use std::sync::Arc;

use socialgate::budget::Budgets;
use socialgate::policy::{Admission, Entry, Policy};
use socialgate::warn::Person;

#[path = "../benches/support/budget.rs"]
mod support;

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
    let scene = support::scene();
    for i in 0..REQUESTS {
        let person = Person::Address(scene.people[i % scene.people.len()]);
        one_request(
            &scene.budgets,
            &scene.policy,
            person,
            scene.admitted.clone(),
            budget,
        );
    }
}
