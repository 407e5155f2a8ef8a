//! The security section: refusals and would-be refusals by group, platform,
//! activity and reason, unauthenticated traffic, bytes sent to platforms,
//! and the one per-person listing (top refused persons).
//!
//! This module must not read records or format output; every number goes
//! through the privacy gate (`privacy`) except the per-person listing, which
//! is for security officers only.

use std::collections::HashMap;

use rustc_hash::FxHashMap;

use super::aggregate::{activity_label, Aggregator, Who, ALLG, ANY};
use super::expand::Expanded;
use super::expand::{count, ratio};
use super::model::*;
use super::privacy::suppress_complementary;

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
        sec_keys.sort_by_key(|&(r, g, p, a)| (!r, self.gsort(g), self.psort(p), a));
        for key in sec_keys {
            let (is_refused, g, p, a) = key;
            let n = count(&x.sec, key);
            let persons = count(&x.sec_persons, key);
            let row = RefusedRow {
                group: self.gname(g),
                platform: self.pname(p),
                activity: activity_label(a).to_owned(),
                requests: Cell::gated(n, persons, k),
                persons: Cell::gated(persons, persons, k),
            };
            if is_refused {
                refused.push(row);
            } else {
                would_refuse.push(row);
            }
        }
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
        suppress_complementary(
            &mut bytes_to_platforms,
            |r| (&r.group, &r.platform, r.persons.value()),
            |r| {
                r.bytes_up = Cell::Suppressed;
                r.bytes_down = Cell::Suppressed;
                r.persons = Cell::Suppressed;
            },
        );
        let mut top_refused_platforms: Vec<PlatformRow> = Vec::new();
        let mut plat_ref: Vec<(u32, u64, u64)> = x
            .cells
            .iter()
            .filter(|(&(g, p), c)| g == ALLG && p != ANY && c.refused > 0)
            .map(|(&(_, p), c)| (p, c.refused, x.who(Who::Refused, ALLG, p)))
            .collect();
        plat_ref.sort_by(|a, b| b.1.cmp(&a.1).then(self.psort(a.0).cmp(&self.psort(b.0))));
        for (p, n, persons) in plat_ref.into_iter().take(10) {
            top_refused_platforms.push(PlatformRow {
                platform: self.pname(p),
                requests: Cell::gated(n, persons, k),
                persons: Cell::gated(persons, persons, k),
            });
        }
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
        let would_total: u64 = x
            .sec
            .iter()
            .filter(|(&(r, g, p, _), _)| !r && g == ALLG && p == ANY)
            .map(|(_, &n)| n)
            .sum();
        let unauth_persons = count(&x.unauth_persons, ALLG);
        let unauth_total = x.group_requests.get(&ALLG).map_or(0, |v| v.1);
        Security {
            totals: SecurityTotals {
                requests: self.total_requests,
                persons: Cell::gated(all_persons, all_persons, k),
                refused: Cell::gated(total_refused, ref_persons, k),
                would_refuse: Cell::gated(would_total, would_persons, k),
                unauthenticated: Cell::gated(unauth_total, unauth_persons, k),
            },
            refused,
            would_refuse,
            refused_by_reason,
            unauthenticated,
            bytes_to_platforms,
            top_refused_platforms,
            top_refused_persons,
        }
    }
}
