//! Group-set expansion: the aggregates are kept per group set (the groups
//! of one record, interned as a whole); this turns them into per-group
//! counts (and "*" for all groups), with distinct persons counted over the
//! union of the sets of every group set a group is in.
//!
//! This module must not read records, suppress or format anything.

use std::hash::Hash;

use rustc_hash::FxHashMap;

use super::aggregate::{Aggregator, Counters, GroupSetAgg, PersonSet, Who, ALLG, ANY};

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

/// Aggregates expanded from group sets to single groups (and "*").
pub(super) struct Expanded {
    /// group → distinct persons
    pub(super) members: FxHashMap<u32, u64>,
    pub(super) unauth_persons: FxHashMap<u32, u64>,
    pub(super) group_requests: FxHashMap<u32, (u64, u64)>,
    pub(super) cells: FxHashMap<(u32, u32), Counters>,
    pub(super) cell_order: Vec<(u32, u32)>,
    pub(super) who: FxHashMap<(Who, u32, u32), u64>,
    pub(super) daily: FxHashMap<(u32, u32, u32), Counters>,
    pub(super) daily_persons: FxHashMap<(Who, u32, u32, u32), u64>,
    pub(super) sec: FxHashMap<(bool, u32, u32, u8), u64>,
    pub(super) sec_persons: FxHashMap<(bool, u32, u32, u8), u64>,
    pub(super) reason_persons: FxHashMap<u32, u64>,
    /// (group, platform or "*") → [shown, continued, unshown]
    pub(super) warn: FxHashMap<(u32, u32), [u64; 3]>,
    /// (0 warned | 1 continued | 2 unshown, group, platform) → persons
    pub(super) warn_persons: FxHashMap<(u8, u32, u32), u64>,
}

impl Expanded {
    pub(super) fn who(&self, w: Who, g: u32, p: u32) -> u64 {
        self.who.get(&(w, g, p)).copied().unwrap_or(0)
    }

    pub(super) fn build(a: &Aggregator) -> Self {
        // Each group set expands to its groups plus "*".
        let expand = |gs: u32| {
            a.group_set_members[gs as usize]
                .iter()
                .copied()
                .chain(std::iter::once(ALLG))
        };
        let by_group = |pick: fn(&GroupSetAgg) -> &PersonSet| {
            let items = a
                .gsets
                .iter()
                .enumerate()
                .flat_map(|(gs, agg)| expand(gs as u32).map(move |g| (g, pick(agg))))
                .collect();
            distinct(items)
        };
        let members = by_group(|g| &g.members);
        let unauth_persons = by_group(|g| &g.unauth_persons);
        let mut group_requests: FxHashMap<u32, (u64, u64)> = FxHashMap::default();
        for (gs, agg) in a.gsets.iter().enumerate() {
            for g in expand(gs as u32) {
                let e = group_requests.entry(g).or_default();
                e.0 += agg.requests;
                e.1 += agg.unauth;
            }
        }
        let mut cells: FxHashMap<(u32, u32), Counters> = FxHashMap::default();
        for (&(gs, p), c) in &a.cells {
            for g in expand(gs) {
                cells.entry((g, p)).or_default().add(&c.c);
            }
        }
        let mut cell_order: Vec<(u32, u32)> = cells.keys().copied().collect();
        cell_order.sort_by_key(|&(g, p)| (a.gsort(g), a.psort(p)));
        // The aggregator keeps person sets per platform only; "any platform"
        // is their union.
        let who = distinct(
            a.cells
                .iter()
                .flat_map(|(&(gs, p), c)| {
                    [
                        (Who::Seen, &c.seen),
                        (Who::Users, &c.users),
                        (Who::Active, &c.active),
                        (Who::Refused, &c.refused),
                        (Who::WouldRefuse, &c.would),
                    ]
                    .into_iter()
                    .filter(|(_, set)| !set.is_empty())
                    .flat_map(move |(w, set)| {
                        expand(gs).flat_map(move |g| {
                            [p, ANY].into_iter().map(move |pp| ((w, g, pp), set))
                        })
                    })
                })
                .collect(),
        );
        let mut daily: FxHashMap<(u32, u32, u32), Counters> = FxHashMap::default();
        for (&(gs, p, d), c) in &a.daily {
            for g in expand(gs) {
                daily.entry((g, p, d)).or_default().add(&c.c);
            }
        }
        let daily_persons = distinct(
            a.daily
                .iter()
                .flat_map(|(&(gs, p, d), c)| {
                    [(Who::Active, &c.active), (Who::Refused, &c.refused)]
                        .into_iter()
                        .filter(|(_, set)| !set.is_empty())
                        .flat_map(move |(w, set)| {
                            expand(gs).flat_map(move |g| {
                                [p, ANY].into_iter().map(move |pp| ((w, g, pp, d), set))
                            })
                        })
                })
                .collect(),
        );
        // Security rows: per group and platform, plus "*" group and "*"
        // platform totals.
        let mut sec: FxHashMap<(bool, u32, u32, u8), u64> = FxHashMap::default();
        for (&(r, gs, p, act), &(n, _)) in &a.sec {
            for g in expand(gs) {
                for pp in [p, ANY] {
                    *sec.entry((r, g, pp, act)).or_default() += n;
                }
            }
        }
        let sec_persons = distinct(
            a.sec
                .iter()
                .flat_map(|(&(r, gs, p, act), (_, set))| {
                    expand(gs).flat_map(move |g| {
                        [p, ANY].into_iter().map(move |pp| ((r, g, pp, act), set))
                    })
                })
                .collect(),
        );
        let reason_persons = a
            .reason_counts
            .iter()
            .map(|(&r, (_, set))| (r, set.len()))
            .filter(|&(_, n)| n > 0)
            .collect();
        let mut warn: FxHashMap<(u32, u32), [u64; 3]> = FxHashMap::default();
        for (&(gs, p), w) in &a.warn {
            for g in expand(gs) {
                for pp in [p, ANY] {
                    let e = warn.entry((g, pp)).or_default();
                    e[0] += w.shown;
                    e[1] += w.continued;
                    e[2] += w.unshown;
                }
            }
        }
        let warn_persons = distinct(
            a.warn
                .iter()
                .flat_map(|(&(gs, p), w)| {
                    [
                        (0u8, &w.warned),
                        (1, &w.continuers),
                        (2, &w.unshown_persons),
                    ]
                    .into_iter()
                    .flat_map(move |(which, set)| {
                        expand(gs).flat_map(move |g| {
                            [p, ANY].into_iter().map(move |pp| ((which, g, pp), set))
                        })
                    })
                })
                .collect(),
        );
        Expanded {
            members,
            unauth_persons,
            group_requests,
            cells,
            cell_order,
            who,
            daily,
            daily_persons,
            sec,
            sec_persons,
            reason_persons,
            warn,
            warn_persons,
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
