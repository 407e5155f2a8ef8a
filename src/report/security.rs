//! The security section: refusals and would-be refusals by group, platform,
//! class (a platform's own domains or its widgets on other sites),
//! activity and rule; refusals by rule and by reason; unauthenticated
//! traffic; bytes sent to platforms; tunnels that rules about activities
//! could not judge; and the one per-person listing (top refused persons).
//!
//! The section is for security officers: its numbers are exact, each shown
//! when at least k persons back it (`Cell::gated`), without the protection
//! against subtraction that the strategy section has. Group "*" is all
//! traffic here, clients in no group included ("(no group)").
//!
//! This module must not read records or format output.

use std::collections::{BTreeSet, HashMap};

use rustc_hash::FxHashMap;

use super::aggregate::{
    activity_label, class_label, Aggregator, PersonSet, ALLG, CLASS_PRIMARY, NONE,
};
use super::expand::{count, ratio, Expanded, Who};
use super::model::*;

impl Aggregator {
    pub(super) fn security(
        &self,
        x: &Expanded,
        k: u64,
        reveal: Option<&HashMap<String, String>>,
    ) -> Security {
        let mut refused = Vec::new();
        let mut would_refuse = Vec::new();
        let mut sec_keys: Vec<_> = x.sec.keys().copied().collect();
        sec_keys.sort_by_key(|&(r, g, p, a, c, rule)| {
            (
                !r,
                self.gsort(g),
                self.psort(p),
                c,
                a,
                self.rules.name(rule),
            )
        });
        for key in sec_keys {
            let (is_refused, g, p, a, c, rule) = key;
            let n = count(&x.sec, key);
            let persons = count(&x.sec_persons, key);
            let row = RefusedRow {
                group: self.gname(g),
                platform: self.pname(p),
                class: class_label(c).map(str::to_owned),
                activity: activity_label(a).map(str::to_owned),
                rule: self.rules.name(rule).to_owned(),
                requests: Cell::gated(n, persons, k),
                persons: Cell::gated(persons, persons, k),
            };
            if is_refused {
                refused.push(row);
            } else {
                would_refuse.push(row);
            }
        }

        // By rule, and by platform: straight from the per-group-set rows.
        #[derive(Default)]
        struct Acc {
            requests: u64,
            primary: u64,
            persons: PersonSet,
            primary_persons: PersonSet,
            platforms: BTreeSet<u32>,
        }
        let mut by_rule: FxHashMap<(bool, u32), Acc> = FxHashMap::default();
        let mut by_platform: FxHashMap<u32, Acc> = FxHashMap::default();
        let mut refused_primary = 0;
        for (&(r, _, p, _, c, rule), (n, set)) in &self.sec {
            let e = by_rule.entry((r, rule)).or_default();
            e.requests += n;
            e.persons |= set;
            e.platforms.insert(p);
            if c == CLASS_PRIMARY {
                e.primary += n;
            }
            if r {
                let e = by_platform.entry(p).or_default();
                e.requests += n;
                e.persons |= set;
                if c == CLASS_PRIMARY {
                    e.primary += n;
                    e.primary_persons |= set;
                    refused_primary += n;
                }
            }
        }
        let mut refused_by_rule: Vec<RuleRow> = by_rule
            .into_iter()
            .map(|((r, rule), acc)| {
                let persons = acc.persons.len();
                RuleRow {
                    rule: self.rules.name(rule).to_owned(),
                    outcome: if r { "refused" } else { "would-refuse" }.to_owned(),
                    requests: Cell::gated(acc.requests, persons, k),
                    primary_requests: Cell::gated(acc.primary, persons, k),
                    persons: Cell::gated(persons, persons, k),
                    platforms: acc.platforms.iter().map(|&p| self.pname(p)).collect(),
                }
            })
            .collect();
        refused_by_rule.sort_by(|a, b| {
            (
                a.outcome != "refused",
                std::cmp::Reverse(a.requests.value()),
                &a.rule,
            )
                .cmp(&(
                    b.outcome != "refused",
                    std::cmp::Reverse(b.requests.value()),
                    &b.rule,
                ))
        });
        let mut refused_by_reason: Vec<ReasonRow> = self
            .reason_counts
            .iter()
            .map(|(&r, &(n, _))| {
                let persons = count(&x.reason_persons, r);
                ReasonRow {
                    reason: self.reasons.name(r).to_owned(),
                    requests: Cell::gated(n, persons, k),
                    persons: Cell::gated(persons, persons, k),
                }
            })
            .collect();
        refused_by_reason.sort_by(|a, b| a.reason.cmp(&b.reason));
        let mut unauthenticated = Vec::new();
        for g in self.group_order(x) {
            let (total, n) = x.group_requests.get(&g).copied().unwrap_or((0, 0));
            let persons = count(&x.unauth_persons, g);
            unauthenticated.push(UnauthRow {
                group: self.gname(g),
                requests: Cell::gated(n, persons, k),
                share: Cell::gated(ratio(n, total), persons, k),
                persons: Cell::gated(persons, persons, k),
            });
        }
        let mut bytes_to_platforms = Vec::new();
        for &(g, p) in &x.cell_order {
            let c = &x.cells[&(g, p)];
            let persons = x.who(Who::Seen, g, p);
            bytes_to_platforms.push(BytesRow {
                group: self.gname(g),
                platform: self.pname(p),
                bytes_up: Cell::gated(c.bytes_up, persons, k),
                bytes_down: Cell::gated(c.bytes_down, persons, k),
                persons: Cell::gated(persons, persons, k),
            });
        }
        let mut plat_ref: Vec<(u32, Acc)> = by_platform
            .into_iter()
            .filter(|&(p, _)| p != NONE)
            .collect();
        plat_ref.sort_by(|a, b| {
            b.1.requests
                .cmp(&a.1.requests)
                .then(self.psort(a.0).cmp(&self.psort(b.0)))
        });
        let top_refused_platforms = plat_ref
            .into_iter()
            .take(10)
            .map(|(p, acc)| {
                let persons = acc.persons.len();
                let primary_persons = acc.primary_persons.len();
                PlatformRow {
                    platform: self.pname(p),
                    requests: Cell::gated(acc.requests, persons, k),
                    persons: Cell::gated(persons, persons, k),
                    primary_requests: Cell::gated(acc.primary, primary_persons, k),
                    primary_persons: Cell::gated(primary_persons, primary_persons, k),
                }
            })
            .collect();
        let mut activity_unseen: Vec<UnseenRow> = self
            .unseen
            .iter()
            .map(|(&(rule, p), (n, set))| UnseenRow {
                rule: self.rules.name(rule).to_owned(),
                platform: self.pname(p),
                tunnels: Cell::gated(*n, set.len(), k),
                persons: Cell::gated(set.len(), set.len(), k),
            })
            .collect();
        activity_unseen.sort_by(|a, b| (&a.rule, &a.platform).cmp(&(&b.rule, &b.platform)));
        let mut people: Vec<(u32, u64)> =
            self.person_refused.iter().map(|(&p, &n)| (p, n)).collect();
        people.sort_by(|a, b| {
            b.1.cmp(&a.1)
                .then_with(|| self.person_names[a.0 as usize].cmp(&self.person_names[b.0 as usize]))
        });
        let mut plat_count: FxHashMap<u32, u64> = FxHashMap::default();
        for &(p, _) in &self.person_refused_platforms {
            *plat_count.entry(p).or_default() += 1;
        }
        let top_refused_persons = people
            .into_iter()
            .take(self.opt.top_persons)
            .map(|(p, n)| {
                let person = self.person_names[p as usize].to_string();
                PersonRow {
                    name: reveal.and_then(|m| m.get(&person).cloned()),
                    person,
                    requests: n,
                    platforms: plat_count.get(&p).copied().unwrap_or(0),
                }
            })
            .collect();
        let all_persons = count(&x.members, ALLG);
        let ref_persons = self.sec_people[1].len();
        let would_persons = self.sec_people[0].len();
        let total_refused: u64 = self.reason_counts.values().map(|v| v.0).sum();
        let would_total: u64 = self
            .sec
            .iter()
            .filter(|(&(r, ..), _)| !r)
            .map(|(_, &(n, _))| n)
            .sum();
        let (mut primary_persons, mut member_persons) = (PersonSet::new(), PersonSet::new());
        let mut primary_members = 0;
        for (&(r, gs, p, _, c, _), (n, set)) in &self.sec {
            if r && c == CLASS_PRIMARY {
                primary_persons |= set;
                if p != NONE && !self.group_set_members[gs as usize].is_empty() {
                    primary_members += n;
                    member_persons |= set;
                }
            }
        }
        let (primary_persons, member_persons) = (primary_persons.len(), member_persons.len());
        let unauth_persons = count(&x.unauth_persons, ALLG);
        let unauth_total = x.group_requests.get(&ALLG).map_or(0, |v| v.1);
        let mut asked: Vec<(u32, u32)> = x.asked.keys().copied().collect();
        asked.sort_by_key(|&(g, p)| (self.gsort(g), self.psort(p)));
        let access_requests = asked
            .into_iter()
            .map(|(g, p)| {
                let persons = x.who(Who::Asked, g, p);
                AccessRequestRow {
                    group: self.gname(g),
                    platform: self.pname(p),
                    persons: Cell::gated(persons, persons, k),
                    requests: Cell::gated(x.asked[&(g, p)], persons, k),
                }
            })
            .collect();
        Security {
            access_requests,
            totals: SecurityTotals {
                requests: self.total_requests,
                persons: Cell::gated(all_persons, all_persons, k),
                refused: Cell::gated(total_refused, ref_persons, k),
                refused_primary: Cell::gated(refused_primary, primary_persons, k),
                refused_primary_members: Cell::gated(primary_members, member_persons, k),
                would_refuse: Cell::gated(would_total, would_persons, k),
                unauthenticated: Cell::gated(unauth_total, unauth_persons, k),
            },
            refused,
            would_refuse,
            refused_by_rule,
            refused_by_reason,
            unauthenticated,
            bytes_to_platforms,
            top_refused_platforms,
            activity_unseen,
            top_refused_persons,
        }
    }
}
