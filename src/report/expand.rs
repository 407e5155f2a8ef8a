//! Group-set expansion: the aggregates are kept per group set (the groups
//! of one record, interned as a whole); this turns them into per-group
//! counts (and "*" for all groups), with distinct persons counted over the
//! union of the sets of every group set a group is in.
//!
//! For the strategy section "*" is all members of the policy's groups:
//! records of clients in no group (refused as not-a-member, 407) belong to
//! no group and are left out. The security section keeps them, as the
//! group "(no group)", and its "*" is all traffic.
//!
//! This module must not read records, suppress or format anything.

use std::hash::Hash;

use rustc_hash::FxHashMap;

use super::aggregate::{
    regular_days, Aggregator, Counters, GroupSetAgg, PersonSet, SecKey, ACTS, ALLG, ANY, NOGROUP,
};
use crate::outcome::Activity;

/// Which distinct-person set a count is of.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub(super) enum Who {
    /// Any traffic to the platform (backs bytes).
    Seen,
    /// Foreground, primary, not refused (adoption, time, sessions).
    Active,
    /// Refused, any class.
    Refused,
    /// Refused on the platform's own domains (blocked demand).
    RefusedPrimary,
    /// Would be refused (report mode) on the platform's own domains.
    WouldPrimary,
    /// Visible activity was reading or signing in only.
    Readers,
    /// At least one write that passed.
    Contributors,
    /// Did this activity (index into [`Activity::ALL`]).
    Act(u8),
    /// Shown a warning page, or continued past one (the base of the
    /// continue rate).
    Warned,
    /// Shown a warning page.
    Shown,
    /// Took a Continue.
    Continued,
    /// Passed a warn rule unshown (a tunnel).
    Unshown,
    /// Sent an access request from a block page.
    Asked,
}

/// Distinct persons per key over the union of the sets listed for it.
/// Keys whose union is empty are left out.
fn distinct<K: Ord + Hash + Copy>(mut items: Vec<(K, &PersonSet)>) -> FxHashMap<K, u64> {
    items.sort_unstable_by_key(|&(k, _)| k);
    let mut out: FxHashMap<K, u64> = FxHashMap::default();
    let mut union = PersonSet::new();
    for run in items.chunk_by(|a, b| a.0 == b.0) {
        let n = if let [(_, one)] = run {
            one.len()
        } else {
            union.clear();
            for (_, set) in run {
                union |= *set;
            }
            union.len()
        };
        if n > 0 {
            out.insert(run[0].0, n);
        }
    }
    out
}

/// Per (group set, platform): the contributors and the readers (read or
/// signed in, never contributed) among its persons.
pub(super) fn readers_and_contributors(a: &Aggregator) -> FxHashMap<(u32, u32), [PersonSet; 2]> {
    a.cells
        .iter()
        .filter(|(&(_, p), _)| p != ANY)
        .map(|(&key, c)| {
            let mut contributors = PersonSet::new();
            let mut readers = PersonSet::new();
            for act in Activity::ALL {
                if act.is_write() {
                    contributors |= &c.acts[act as usize];
                } else if matches!(act, Activity::Read | Activity::Login) {
                    readers |= &c.acts[act as usize];
                }
            }
            readers -= &contributors;
            (key, [readers, contributors])
        })
        .collect()
}

/// Per group set: the regular users (active on at least
/// [`regular_days`] days).
pub(super) fn regular_users(a: &Aggregator, days_observed: u64) -> Vec<PersonSet> {
    let need = regular_days(days_observed);
    let mut out = vec![PersonSet::new(); a.gsets.len()];
    for (&(gs, p), &(_, days)) in &a.active_days {
        if u64::from(days) >= need {
            out[gs as usize].insert(p);
        }
    }
    out
}

/// Aggregates expanded from group sets to single groups (and "*").
pub(super) struct Expanded {
    /// group → distinct persons
    pub(super) members: FxHashMap<u32, u64>,
    pub(super) unauth_persons: FxHashMap<u32, u64>,
    pub(super) group_requests: FxHashMap<u32, (u64, u64)>,
    pub(super) cells: FxHashMap<(u32, u32), Counters>,
    pub(super) cell_order: Vec<(u32, u32)>,
    pub(super) who: FxHashMap<(Who, u32, u32), u64>,
    /// (group, platform, day) → persons with active use that day
    pub(super) daily: FxHashMap<(u32, u32, u32), u64>,
    pub(super) sec: FxHashMap<SecKey, u64>,
    pub(super) sec_persons: FxHashMap<SecKey, u64>,
    pub(super) reason_persons: FxHashMap<u32, u64>,
    /// (group, platform or "*") → [shown, continued, unshown]
    pub(super) warn: FxHashMap<(u32, u32), [u64; 3]>,
    /// (group, platform or "*") → access requests (the persons who asked
    /// are `Who::Asked`).
    pub(super) asked: FxHashMap<(u32, u32), u64>,
}

impl Expanded {
    pub(super) fn who(&self, w: Who, g: u32, p: u32) -> u64 {
        self.who.get(&(w, g, p)).copied().unwrap_or(0)
    }

    /// Expands for the strategy section (`strategy`: clients in no group
    /// are left out) or the security section (they form "(no group)").
    pub(super) fn build(a: &Aggregator, strategy: bool) -> Self {
        // Each group set expands to its groups plus "*"; the empty set to
        // nothing (strategy) or "(no group)" plus "*" (security).
        let expand = |gs: u32| -> Vec<u32> {
            let m = &a.group_set_members[gs as usize];
            match (m.is_empty(), strategy) {
                (true, true) => Vec::new(),
                (true, false) => vec![NOGROUP, ALLG],
                (false, _) => m.iter().copied().chain(std::iter::once(ALLG)).collect(),
            }
        };
        let expanded: Vec<Vec<u32>> = (0..a.gsets.len() as u32).map(expand).collect();
        let ex = |gs: u32| expanded[gs as usize].iter().copied();
        let by_group = |pick: fn(&GroupSetAgg) -> &PersonSet| {
            let items = a
                .gsets
                .iter()
                .enumerate()
                .flat_map(|(gs, agg)| ex(gs as u32).map(move |g| (g, pick(agg))))
                .collect();
            distinct(items)
        };
        let members = by_group(|g| &g.members);
        let unauth_persons = by_group(|g| &g.unauth_persons);
        let mut group_requests: FxHashMap<u32, (u64, u64)> = FxHashMap::default();
        for (gs, agg) in a.gsets.iter().enumerate() {
            for g in ex(gs as u32) {
                let e = group_requests.entry(g).or_default();
                e.0 += agg.requests;
                e.1 += agg.unauth;
            }
        }
        let mut cells: FxHashMap<(u32, u32), Counters> = FxHashMap::default();
        for (&(gs, p), c) in &a.cells {
            for g in ex(gs) {
                cells.entry((g, p)).or_default().add(&c.c);
            }
        }
        let mut cell_order: Vec<(u32, u32)> = cells.keys().copied().collect();
        cell_order.sort_by_key(|&(g, p)| (a.gsort(g), a.psort(p)));
        let rc = readers_and_contributors(a);
        // The aggregator keeps person sets per platform only; "any platform"
        // is their union.
        let mut who = distinct(
            a.cells
                .iter()
                .filter(|(&(_, p), _)| p != ANY)
                .flat_map(|(&(gs, p), c)| {
                    let mut sets: Vec<(Who, &PersonSet)> = if strategy {
                        vec![
                            (Who::Active, &c.active),
                            (Who::RefusedPrimary, &c.refused_primary),
                            (Who::WouldPrimary, &c.would_primary),
                        ]
                    } else {
                        vec![(Who::Seen, &c.seen), (Who::Refused, &c.refused)]
                    };
                    if strategy {
                        sets.extend((0..ACTS).map(|i| (Who::Act(i as u8), &c.acts[i])));
                        if let Some([readers, contributors]) = rc.get(&(gs, p)) {
                            sets.push((Who::Readers, readers));
                            sets.push((Who::Contributors, contributors));
                        }
                    }
                    sets.into_iter()
                        .filter(|(_, set)| !set.is_empty())
                        .flat_map(move |(w, set)| {
                            ex(gs).flat_map(move |g| {
                                [p, ANY].into_iter().map(move |pp| ((w, g, pp), set))
                            })
                        })
                        .collect::<Vec<_>>()
                })
                .collect(),
        );
        let daily = if strategy {
            distinct(
                a.daily
                    .iter()
                    .flat_map(|(&(gs, p, d), set)| {
                        ex(gs).flat_map(move |g| {
                            [p, ANY].into_iter().map(move |pp| ((g, pp, d), set))
                        })
                    })
                    .collect(),
            )
        } else {
            FxHashMap::default()
        };
        // Security rows: per group (and "*") and platform.
        let mut sec: FxHashMap<SecKey, u64> = FxHashMap::default();
        let mut sec_persons = FxHashMap::default();
        if !strategy {
            for (&(r, gs, p, act, class, rule), &(n, _)) in &a.sec {
                for g in ex(gs) {
                    *sec.entry((r, g, p, act, class, rule)).or_default() += n;
                }
            }
            sec_persons = distinct(
                a.sec
                    .iter()
                    .flat_map(|(&(r, gs, p, act, class, rule), (_, set))| {
                        ex(gs).map(move |g| ((r, g, p, act, class, rule), set))
                    })
                    .collect(),
            );
        }
        let reason_persons = a
            .reason_counts
            .iter()
            .map(|(&r, (_, set))| (r, set.len()))
            .filter(|&(_, n)| n > 0)
            .collect();
        // What warn rules did (strategy only): counts per group and
        // platform, and the persons behind each.
        let mut warn: FxHashMap<(u32, u32), [u64; 3]> = FxHashMap::default();
        if strategy {
            let warned: Vec<(u32, u32, PersonSet)> = a
                .warn
                .iter()
                .map(|(&(gs, p), w)| (gs, p, w.warned()))
                .collect();
            for (&(gs, p), w) in &a.warn {
                for g in ex(gs) {
                    for pp in [p, ANY] {
                        let e = warn.entry((g, pp)).or_default();
                        e[0] += w.shown;
                        e[1] += w.continued;
                        e[2] += w.unshown;
                    }
                }
            }
            let sets = a
                .warn
                .iter()
                .flat_map(|(&(gs, p), w)| {
                    [
                        (Who::Shown, &w.shown_persons),
                        (Who::Continued, &w.continuers),
                        (Who::Unshown, &w.unshown_persons),
                    ]
                    .map(|(which, set)| (which, gs, p, set))
                })
                .chain(
                    warned
                        .iter()
                        .map(|(gs, p, set)| (Who::Warned, *gs, *p, set)),
                )
                .filter(|(_, _, _, set)| !set.is_empty())
                .flat_map(|(which, gs, p, set)| {
                    ex(gs).flat_map(move |g| {
                        [p, ANY].into_iter().map(move |pp| ((which, g, pp), set))
                    })
                })
                .collect();
            who.extend(distinct(sets));
        }
        // Access requests: counts and persons per group and platform (the
        // security section's groups include "(no group)").
        let mut asked: FxHashMap<(u32, u32), u64> = FxHashMap::default();
        {
            for (&(gs, p), (n, _)) in &a.asked {
                for g in ex(gs) {
                    for pp in [p, ANY] {
                        *asked.entry((g, pp)).or_default() += n;
                    }
                }
            }
            who.extend(distinct(
                a.asked
                    .iter()
                    .filter(|(_, (_, set))| !set.is_empty())
                    .flat_map(|(&(gs, p), (_, set))| {
                        ex(gs).flat_map(move |g| {
                            [p, ANY]
                                .into_iter()
                                .map(move |pp| ((Who::Asked, g, pp), set))
                        })
                    })
                    .collect(),
            ));
        }
        Expanded {
            members,
            unauth_persons,
            group_requests,
            cells,
            cell_order,
            who,
            daily,
            sec,
            sec_persons,
            reason_persons,
            warn,
            asked,
        }
    }
}

/// The count for `key`, 0 when absent.
pub(super) fn count<K: std::hash::Hash + Eq>(m: &FxHashMap<K, u64>, key: K) -> u64 {
    m.get(&key).copied().unwrap_or(0)
}

/// a ÷ b, or 0 when b is 0.
pub(super) fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}
