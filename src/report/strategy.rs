//! The strategy section: active members and regular users, adoption,
//! estimated active time and blocked demand by group and platform, readers,
//! contributors and what they did, daily active users, the hour-of-week
//! heat map, the maturity of each group, and the continue rate behind warn
//! rules (a demand signal).
//!
//! Every number goes through `privacy`: each family of numbers that add up
//! is protected as a whole, so that no sum or difference of what is shown
//! singles out fewer than k persons. Derived numbers (shares, per-user
//! rates, the continue rate, the maturity assessment) are computed from
//! shown numbers only.
//!
//! This module must not read records or format output, and never lists
//! individuals.

use rustc_hash::FxHashMap;

use super::aggregate::{day_name, Aggregator, CellAgg, PersonSet, ACTS, ALLG, ANY};
use super::expand::{ratio, readers_and_contributors, regular_users, Expanded, Who};
use super::maturity::{self, Profile};
use super::model::*;
use super::privacy::{protect, Atom, Family, Platforms, Published};
use crate::outcome::Activity;

/// The shown/hidden decisions of every family of the section.
struct Shown {
    members: Published,
    regular: Published,
    /// Active users: distinct persons, "*" a union.
    active: Published,
    /// Their sessions and minutes: "*" counts time across platforms, which
    /// adds up when a person uses one platform at a time.
    time: Published,
    blocked: Published,
    would: Published,
    readers: Published,
    contributors: Published,
    acts: Vec<Published>,
    generic: Published,
    daily: FxHashMap<u32, Published>,
    /// What warn rules did: persons warned and who continued (distinct
    /// persons, "*" a union); warnings shown, continues and unshown
    /// tunnels (counts: "*" their sum).
    warned: Published,
    continued: Published,
    shows: Published,
    continues: Published,
    unshown: Published,
    /// Access requests and the persons who sent them (counts add up over
    /// platforms; the persons are shown with them, so the stricter rule
    /// holds for both, as for blocked demand).
    asked: Published,
}

impl Aggregator {
    /// A family over (group set, platform) atoms: the sets `pick` returns,
    /// for group sets of members of some group.
    fn family<'a>(
        &'a self,
        k: u64,
        platforms: Platforms,
        atoms: impl Iterator<Item = (u32, u32, &'a PersonSet)>,
    ) -> Published {
        let regions = &self.group_set_members;
        protect(&Family {
            regions,
            atoms: atoms
                .filter(|&(gs, _, set)| !regions[gs as usize].is_empty() && !set.is_empty())
                .map(|(region, platform, persons)| Atom {
                    region,
                    platform,
                    persons,
                })
                .collect(),
            platforms,
            k,
        })
    }

    /// A family of one number per group.
    fn group_family<'a>(
        &'a self,
        k: u64,
        sets: impl Iterator<Item = (u32, &'a PersonSet)>,
    ) -> Published {
        let regions = &self.group_set_members;
        protect(&Family {
            regions,
            atoms: sets
                .filter(|&(gs, set)| !regions[gs as usize].is_empty() && !set.is_empty())
                .map(|(region, persons)| Atom {
                    region,
                    platform: ANY,
                    persons,
                })
                .collect(),
            platforms: Platforms::None,
            k,
        })
    }

    fn cells_of(&self) -> impl Iterator<Item = (u32, u32, &CellAgg)> {
        self.cells
            .iter()
            .filter(|(&(_, p), _)| p != ANY)
            .map(|(&(gs, p), c)| (gs, p, c))
    }

    /// Distinct persons per group (and "*") over per-group-set sets.
    fn per_group(&self, sets: &[PersonSet]) -> FxHashMap<u32, u64> {
        let mut by_group: FxHashMap<u32, PersonSet> = FxHashMap::default();
        for (gs, set) in sets.iter().enumerate() {
            let groups = &self.group_set_members[gs];
            if groups.is_empty() {
                continue;
            }
            for &g in groups.iter().chain(std::iter::once(&ALLG)) {
                *by_group.entry(g).or_default() |= set;
            }
        }
        by_group.into_iter().map(|(g, s)| (g, s.len())).collect()
    }

    pub(super) fn strategy(&self, x: &Expanded, k: u64, days_observed: u64) -> Strategy {
        let rc = readers_and_contributors(self);
        let regular_sets = regular_users(self, days_observed);
        let generic_sets: Vec<(u32, u32, PersonSet)> = self
            .cells_of()
            .map(|(gs, p, c)| {
                (
                    gs,
                    p,
                    &c.acts[Activity::Write as usize] | &c.acts[Activity::Unknown as usize],
                )
            })
            .collect();
        let warned_sets: Vec<(u32, u32, PersonSet)> = self
            .warn
            .iter()
            .map(|(&(gs, p), w)| (gs, p, w.warned()))
            .collect();
        let mut day_atoms: FxHashMap<u32, Vec<(u32, u32, &PersonSet)>> = FxHashMap::default();
        for (&(gs, p, d), set) in &self.daily {
            day_atoms.entry(d).or_default().push((gs, p, set));
        }
        let shown = Shown {
            members: self.group_family(
                k,
                self.gsets
                    .iter()
                    .enumerate()
                    .map(|(gs, g)| (gs as u32, &g.members)),
            ),
            regular: self.group_family(
                k,
                regular_sets
                    .iter()
                    .enumerate()
                    .map(|(gs, s)| (gs as u32, s)),
            ),
            // Distinct persons: "*" is a union.
            active: self.family(
                k,
                Platforms::Union,
                self.cells_of().map(|(gs, p, c)| (gs, p, &c.active)),
            ),
            time: self.family(
                k,
                Platforms::Sum,
                self.cells_of().map(|(gs, p, c)| (gs, p, &c.active)),
            ),
            // Attempts add up over platforms (their persons are shown with
            // them, so the stricter rule holds for both).
            blocked: self.family(
                k,
                Platforms::Sum,
                self.cells_of()
                    .map(|(gs, p, c)| (gs, p, &c.refused_primary)),
            ),
            would: self.family(
                k,
                Platforms::Sum,
                self.cells_of().map(|(gs, p, c)| (gs, p, &c.would_primary)),
            ),
            readers: self.family(
                k,
                Platforms::Union,
                rc.iter().map(|(&(gs, p), s)| (gs, p, &s[0])),
            ),
            contributors: self.family(
                k,
                Platforms::Union,
                rc.iter().map(|(&(gs, p), s)| (gs, p, &s[1])),
            ),
            acts: (0..ACTS)
                .map(|a| {
                    self.family(
                        k,
                        Platforms::Sum,
                        self.cells_of().map(|(gs, p, c)| (gs, p, &c.acts[a])),
                    )
                })
                .collect(),
            generic: self.family(
                k,
                Platforms::Sum,
                generic_sets.iter().map(|(gs, p, s)| (*gs, *p, s)),
            ),
            daily: day_atoms
                .into_iter()
                .map(|(d, atoms)| (d, self.family(k, Platforms::Union, atoms.into_iter())))
                .collect(),
            warned: self.family(
                k,
                Platforms::Union,
                warned_sets.iter().map(|(gs, p, s)| (*gs, *p, s)),
            ),
            continued: self.family(
                k,
                Platforms::Union,
                self.warn.iter().map(|(&(gs, p), w)| (gs, p, &w.continuers)),
            ),
            shows: self.family(
                k,
                Platforms::Sum,
                self.warn
                    .iter()
                    .map(|(&(gs, p), w)| (gs, p, &w.shown_persons)),
            ),
            continues: self.family(
                k,
                Platforms::Sum,
                self.warn.iter().map(|(&(gs, p), w)| (gs, p, &w.continuers)),
            ),
            unshown: self.family(
                k,
                Platforms::Sum,
                self.warn
                    .iter()
                    .map(|(&(gs, p), w)| (gs, p, &w.unshown_persons)),
            ),
            asked: self.family(
                k,
                Platforms::Sum,
                self.asked.iter().map(|(&(gs, p), (_, set))| (gs, p, set)),
            ),
        };

        let members = |g| x.members.get(&g).copied().unwrap_or(0);
        let regular = self.per_group(&regular_sets);
        let groups: Vec<GroupRow> = self
            .group_order(x)
            .into_iter()
            .map(|g| GroupRow {
                group: self.gname(g),
                active_members: shown.members.cell((g, ANY), members(g)),
                regular_users: shown
                    .regular
                    .cell((g, ANY), regular.get(&g).copied().unwrap_or(0)),
            })
            .collect();

        let mut platforms = Vec::new();
        let mut contribution = Vec::new();
        for &(g, p) in &x.cell_order {
            let c = &x.cells[&(g, p)];
            let key = (g, p);
            let active = x.who(Who::Active, g, p);
            let minutes = c.active_ms as f64 / 60_000.0;
            let act = shown.active.shows(key);
            let time = shown.time.shows(key);
            fn on<T>(shown: bool, v: T) -> Cell<T> {
                if shown {
                    Cell::Value(v)
                } else {
                    Cell::Suppressed
                }
            }
            platforms.push(AdoptionRow {
                group: self.gname(g),
                platform: self.pname(p),
                active_users: on(act, active),
                adoption: if act && shown.members.shows((g, ANY)) {
                    Cell::Value(ratio(active, members(g)))
                } else {
                    Cell::Suppressed
                },
                sessions: on(time, c.sessions),
                active_minutes: on(time, minutes),
                minutes_per_active_user: on(act && time, per(minutes, active)),
                sessions_per_active_user: on(act && time, per(c.sessions as f64, active)),
                blocked_attempts: shown.blocked.cell(key, c.refused_primary),
                blocked_persons: shown.blocked.cell(key, x.who(Who::RefusedPrimary, g, p)),
                would_block_attempts: shown.would.cell(key, c.would_primary),
                would_block_persons: shown.would.cell(key, x.who(Who::WouldPrimary, g, p)),
            });
            if c.acts.iter().all(|&n| n == 0) {
                continue; // nothing visible: no row
            }
            let a = |act: Activity| shown.acts[act as usize].cell(key, c.acts[act as usize]);
            let readers = shown.readers.cell(key, x.who(Who::Readers, g, p));
            let contributors = shown.contributors.cell(key, x.who(Who::Contributors, g, p));
            let generic = shown.generic.cell(
                key,
                c.acts[Activity::Write as usize] + c.acts[Activity::Unknown as usize],
            );
            let non_read: Vec<Cell<u64>> = Activity::ALL
                .iter()
                .filter(|&&x| !matches!(x, Activity::Read | Activity::Write | Activity::Unknown))
                .map(|&x| a(x))
                .chain(std::iter::once(generic))
                .collect();
            let generic_share = if non_read.iter().all(|c| !c.is_suppressed()) {
                let total: u64 = non_read.iter().filter_map(Cell::value).sum();
                Cell::Value((total > 0).then(|| ratio(generic.value().unwrap_or(0), total)))
            } else {
                Cell::Suppressed
            };
            contribution.push(ContributionRow {
                group: self.gname(g),
                platform: self.pname(p),
                readers,
                contributors,
                contributor_share: match (readers, contributors) {
                    (Cell::Value(r), Cell::Value(c)) => {
                        Cell::Value((r + c > 0).then(|| ratio(c, r + c)))
                    }
                    _ => Cell::Suppressed,
                },
                reads: a(Activity::Read),
                logins: a(Activity::Login),
                posts: a(Activity::Post),
                comments: a(Activity::Comment),
                reactions: a(Activity::React),
                shares: a(Activity::Share),
                uploads: a(Activity::Upload),
                messages: a(Activity::Message),
                generic,
                generic_share,
            });
        }

        // A row whose every number is hidden or zero would still say that
        // someone is behind it: leave it out (it reads as none).
        platforms.retain(|r| {
            [
                r.active_users,
                r.sessions,
                r.blocked_attempts,
                r.blocked_persons,
                r.would_block_attempts,
                r.would_block_persons,
            ]
            .iter()
            .any(|c| c.value().is_some_and(|v| v > 0))
        });
        contribution.retain(|r| {
            [
                r.readers,
                r.contributors,
                r.reads,
                r.logins,
                r.posts,
                r.comments,
                r.reactions,
                r.shares,
                r.uploads,
                r.messages,
                r.generic,
            ]
            .iter()
            .any(|c| c.value().is_some_and(|v| v > 0))
        });
        let mut daily = Vec::new();
        let mut dkeys: Vec<_> = x.daily.keys().copied().collect();
        dkeys.sort_by_key(|&(g, p, d)| (d, self.gsort(g), self.psort(p)));
        for (g, p, d) in dkeys {
            let n = x.daily[&(g, p, d)];
            let active_users = shown
                .daily
                .get(&d)
                .map_or(Cell::Value(n), |s| s.cell((g, p), n));
            if active_users.is_suppressed() {
                continue; // see above: a hidden row reads as none
            }
            daily.push(DailyRow {
                day: day_name(d),
                group: self.gname(g),
                platform: self.pname(p),
                active_users,
            });
        }

        let warnings = self.warnings(x, &shown);
        let access_requests = self.access_requests(x, &shown);

        // Hour-of-week cells add up to no published number: each needs k
        // persons of its own.
        let heat_persons: Vec<u64> = self.heat_persons.iter().map(|s| s.len()).collect();
        let hour_of_week = HeatMap {
            days: vec!["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"],
            foreground_requests: (0..7)
                .map(|d| {
                    (0..24)
                        .map(|h| {
                            let i = d * 24 + h;
                            Cell::gated(self.heat[i], heat_persons[i], k)
                        })
                        .collect()
                })
                .collect(),
        };

        let maturity = self
            .group_order(x)
            .into_iter()
            .map(|g| self.maturity_row(x, g, &shown, &platforms, &regular))
            .collect();
        let mut strategy = Strategy {
            groups,
            platforms,
            contribution,
            daily,
            hour_of_week,
            maturity,
            warnings,
            access_requests,
            numbers: 0,
            suppressed_cells: 0,
        };
        // Count what the section shows and hides, as its JSON does.
        if let Ok(v) = serde_json::to_value(&strategy) {
            let (numbers, hidden) = count_numbers(&v);
            strategy.numbers = numbers;
            strategy.suppressed_cells = hidden;
        }
        strategy
    }

    /// What warn rules did, by group and platform: each count from its
    /// own family, the continue rate only from two shown person counts.
    fn warnings(&self, x: &Expanded, shown: &Shown) -> Vec<WarningRow> {
        let mut keys: Vec<(u32, u32)> = x.warn.keys().copied().collect();
        keys.sort_by_key(|&(g, p)| (self.gsort(g), self.psort(p)));
        let mut rows: Vec<WarningRow> = keys
            .into_iter()
            .map(|key| {
                let (g, p) = key;
                let [shows, continues, unshown] = x.warn[&key];
                let warned = shown.warned.cell(key, x.who(Who::Warned, g, p));
                let continued = shown.continued.cell(key, x.who(Who::Continued, g, p));
                WarningRow {
                    group: self.gname(g),
                    platform: self.pname(p),
                    warned_persons: warned,
                    continued_persons: continued,
                    continue_rate: match (warned, continued) {
                        (Cell::Value(w), Cell::Value(c)) => Cell::Value(ratio(c, w)),
                        _ => Cell::Suppressed,
                    },
                    warnings_shown: shown.shows.cell(key, shows),
                    continues: shown.continues.cell(key, continues),
                    unshown_tunnels: shown.unshown.cell(key, unshown),
                }
            })
            .collect();
        // See `strategy`: a hidden row reads as none.
        rows.retain(|r| {
            [
                r.warned_persons,
                r.continued_persons,
                r.warnings_shown,
                r.continues,
                r.unshown_tunnels,
            ]
            .iter()
            .any(|c| c.value().is_some_and(|v| v > 0))
        });
        rows
    }

    /// Requested access by group and platform: persons who asked and
    /// requests, one family (see [`Shown::asked`]).
    fn access_requests(&self, x: &Expanded, shown: &Shown) -> Vec<AccessRequestRow> {
        let mut keys: Vec<(u32, u32)> = x.asked.keys().copied().collect();
        keys.sort_by_key(|&(g, p)| (self.gsort(g), self.psort(p)));
        let mut rows: Vec<AccessRequestRow> = keys
            .into_iter()
            .map(|key| {
                let (g, p) = key;
                AccessRequestRow {
                    group: self.gname(g),
                    platform: self.pname(p),
                    persons: shown.asked.cell(key, x.who(Who::Asked, g, p)),
                    requests: shown.asked.cell(key, x.asked[&key]),
                }
            })
            .collect();
        // See `strategy`: a hidden row reads as none.
        rows.retain(|r| {
            [r.persons, r.requests]
                .iter()
                .any(|c| c.value().is_some_and(|v| v > 0))
        });
        rows
    }

    /// The maturity of group `g`, from shown numbers only.
    fn maturity_row(
        &self,
        x: &Expanded,
        g: u32,
        shown: &Shown,
        platforms: &[AdoptionRow],
        regular: &FxHashMap<u32, u64>,
    ) -> MaturityRow {
        let group = self.gname(g);
        let members = x.members.get(&g).copied().unwrap_or(0);
        if !shown.members.shows((g, ANY)) || members == 0 {
            return MaturityRow {
                group,
                stage: None,
                label: "suppressed".to_owned(),
                members: Cell::Suppressed,
                any_adoption: Cell::Suppressed,
                regular_share: Cell::Suppressed,
                minutes_per_active_user: Cell::Suppressed,
                contributor_share: Cell::Suppressed,
                platforms_adopted: Vec::new(),
                blocked_share: Cell::Suppressed,
                held_back_by: "hidden".to_owned(),
                evidence: "fewer than k members, or hidden to protect a smaller group".to_owned(),
                next_step: String::new(),
            };
        }
        let key = (g, ANY);
        let when = |p: &Published, v: u64| p.shows(key).then_some(v);
        let active = when(&shown.active, x.who(Who::Active, g, ANY));
        let minutes = x
            .cells
            .get(&key)
            .map_or(0.0, |c| c.active_ms as f64 / 60_000.0);
        let readers = when(&shown.readers, x.who(Who::Readers, g, ANY));
        let contributors = when(&shown.contributors, x.who(Who::Contributors, g, ANY));
        let gname = self.gname(g);
        // This group's platforms by shown adoption, most adopted first.
        let mut own: Vec<(&str, f64)> = platforms
            .iter()
            .filter(|r| r.group == gname && r.platform != ALL)
            .filter_map(|r| Some((r.platform.as_str(), r.adoption.value()?)))
            .filter(|&(_, a)| a > 0.0)
            .collect();
        own.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
        let adopted: Vec<String> = own
            .iter()
            .filter(|&&(_, a)| a >= maturity::ADOPTED)
            .map(|&(p, _)| p.to_owned())
            .collect();
        // The platform the most groups adopted, that this one did not.
        let mut wide: FxHashMap<&str, usize> = FxHashMap::default();
        for r in platforms
            .iter()
            .filter(|r| r.group != ALL && r.platform != ALL)
        {
            if r.adoption.value().is_some_and(|a| a >= maturity::ADOPTED) {
                *wide.entry(r.platform.as_str()).or_default() += 1;
            }
        }
        let suggestion = wide
            .into_iter()
            .filter(|(p, _)| !adopted.iter().any(|a| a == p))
            .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(a.0)))
            .map(|(p, _)| p.to_owned());
        let top_blocked = platforms
            .iter()
            .filter(|r| r.group == gname && r.platform != ALL)
            .filter_map(|r| Some((r.platform.clone(), r.blocked_persons.value()?)))
            .filter(|&(_, n)| n > 0)
            .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)));
        let profile = Profile {
            group: group.clone(),
            members,
            active,
            regular: when(&shown.regular, regular.get(&g).copied().unwrap_or(0)),
            minutes_per_active_user: active
                .filter(|_| shown.time.shows(key))
                .map(|a| per(minutes, a)),
            // A hidden count is never zero.
            inspected: readers != Some(0) || contributors != Some(0),
            contributors,
            adopted,
            top_platform: own.first().map(|&(p, _)| p.to_owned()),
            blocked: when(&shown.blocked, x.who(Who::RefusedPrimary, g, ANY)),
            top_blocked,
            suggestion,
        };
        let a = maturity::assess(&profile);
        let share = |v: Option<u64>| v.map_or(Cell::Suppressed, |v| Cell::Value(ratio(v, members)));
        MaturityRow {
            group,
            stage: Some(a.stage as u8),
            label: a.stage.label().to_owned(),
            members: Cell::Value(members),
            any_adoption: share(profile.active),
            regular_share: share(profile.regular),
            minutes_per_active_user: profile
                .minutes_per_active_user
                .map_or(Cell::Suppressed, Cell::Value),
            contributor_share: match (profile.inspected, profile.contributors) {
                (false, _) => Cell::Value(None),
                (true, Some(c)) => Cell::Value(Some(ratio(c, members))),
                (true, None) => Cell::Suppressed,
            },
            platforms_adopted: profile.adopted,
            blocked_share: share(profile.blocked),
            held_back_by: a.held_back_by.as_str().to_owned(),
            evidence: a.evidence,
            next_step: a.next_step,
        }
    }
}

/// Numbers (shown or `"suppressed"`) in a JSON value, and of them the
/// suppressed ones.
fn count_numbers(v: &serde_json::Value) -> (u64, u64) {
    use serde_json::Value;
    match v {
        Value::Number(_) => (1, 0),
        Value::String(s) if s == "suppressed" => (1, 1),
        Value::Array(a) => a
            .iter()
            .map(count_numbers)
            .fold((0, 0), |x, y| (x.0 + y.0, x.1 + y.1)),
        Value::Object(o) => o
            .values()
            .map(count_numbers)
            .fold((0, 0), |x, y| (x.0 + y.0, x.1 + y.1)),
        _ => (0, 0),
    }
}

fn per(a: f64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a / b as f64
    }
}
