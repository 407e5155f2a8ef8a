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
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/cg-user.out \
//!   --toggle-collect='*budget_cost*one_request*' target/release/examples/budget_cost user
//! callgrind_annotate /tmp/cg.out | grep 'PROGRAM TOTALS'   # ÷ 100,000
//! ```
//!
//! `baseline` as the argument runs the same loop without the budget (the
//! admission copy only), to subtract; `user` runs it for signed-in users
//! (`user0` … `user9999`, the benchmark's
//! `budget_stage_and_charge_signed_in_user`) instead of people known by
//! address.

use std::hint::black_box;
use std::net::IpAddr;
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
    user: Option<&str>,
    client: IpAddr,
    mut adm: Admission,
    budget: bool,
) {
    if budget {
        // As the proxy does per request (`admit_as`): the person, then the
        // budget stage, a time hit when the traffic goes on, its bytes at
        // the end.
        let person = Person::of(user, client);
        let charge = budgets.settle(policy, Entry::Request, person, &mut adm);
        let mut charge = charge.expect("within budget");
        charge.hit();
        charge.account(black_box(20_000));
        black_box(adm);
    } else {
        black_box((user, client, adm));
    }
}

fn main() {
    let mode = std::env::args().nth(1);
    let budget = mode.as_deref() != Some("baseline");
    let signed_in = mode.as_deref() == Some("user");
    let scene = support::scene();
    let users: Vec<String> = (0..scene.people.len())
        .map(|n| format!("user{n}"))
        .collect();
    let user = |n: usize| signed_in.then_some(users[n].as_str());
    if signed_in {
        // Like the people known by address, every user has an entry today
        // already (not counted: outside `one_request`).
        for n in 0..users.len() {
            let person = Person::of(user(n), scene.people[n]);
            let mut adm = scene.admitted.clone();
            let charge = scene
                .budgets
                .settle(&scene.policy, Entry::Request, person, &mut adm);
            let mut charge = charge.expect("within budget");
            charge.hit();
            charge.account(50_000);
        }
    }
    for i in 0..REQUESTS {
        let n = i % scene.people.len();
        one_request(
            &scene.budgets,
            &scene.policy,
            user(n),
            scene.people[n],
            scene.admitted.clone(),
            budget,
        );
    }
}
