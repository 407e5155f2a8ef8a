//! The strategy section: active members, adoption, estimated active time,
//! read/write mix and blocked demand by group and platform, the daily trend,
//! the hour-of-week heat map, the maturity label of each group, and the
//! continue rate behind warn rules (a demand signal).
//!
//! This module must not read records or format output, and never lists
//! individuals; every number goes through the privacy gate (`privacy`).

use super::aggregate::{Aggregator, Who, ANY};
use super::expand::ratio;
use super::expand::Expanded;
use super::model::*;
use super::privacy::suppress_complementary;

impl Aggregator {
    pub(super) fn strategy(&self, x: &Expanded, k: u64) -> Strategy {
        let members = |g| x.members.get(&g).copied().unwrap_or(0);
        let groups = self
            .group_order(x)
            .into_iter()
            .map(|g| GroupRow {
                group: self.gname(g),
                active_members: Cell::gated(members(g), members(g), k),
            })
            .collect();
        let mut platforms = Vec::new();
        for &(g, p) in &x.cell_order {
            let c = &x.cells[&(g, p)];
            let active = x.who(Who::Active, g, p);
            let users = x.who(Who::Users, g, p);
            let refused = x.who(Who::Refused, g, p);
            let would = x.who(Who::WouldRefuse, g, p);
            let minutes = c.active_ms as f64 / 60_000.0;
            let known = c.views + c.writes;
            platforms.push(AdoptionRow {
                group: self.gname(g),
                platform: self.pname(p),
                active_users: Cell::gated(active, active, k),
                adoption: Cell::gated(ratio(active, members(g)), active, k),
                sessions: Cell::gated(c.sessions, active, k),
                active_minutes: Cell::gated(minutes, active, k),
                minutes_per_active_user: Cell::gated(per(minutes, active), active, k),
                sessions_per_active_user: Cell::gated(per(c.sessions as f64, active), active, k),
                views: Cell::gated(c.views, users, k),
                writes: Cell::gated(c.writes, users, k),
                write_share: Cell::gated((known > 0).then(|| ratio(c.writes, known)), users, k),
                refused_requests: Cell::gated(c.refused, refused, k),
                refused_persons: Cell::gated(refused, refused, k),
                would_refuse_requests: Cell::gated(c.would_refuse, would, k),
            });
        }
        // Secondary suppression, one family of cells at a time.
        suppress_complementary(
            &mut platforms,
            |r| (&r.group, &r.platform, r.active_users.value()),
            |r| {
                r.active_users = Cell::Suppressed;
                r.adoption = Cell::Suppressed;
                r.sessions = Cell::Suppressed;
                r.active_minutes = Cell::Suppressed;
                r.minutes_per_active_user = Cell::Suppressed;
                r.sessions_per_active_user = Cell::Suppressed;
            },
        );
        suppress_complementary(
            &mut platforms,
            |r| {
                (
                    &r.group,
                    &r.platform,
                    r.views.value().zip(r.writes.value()).map(|(v, w)| v + w),
                )
            },
            |r| {
                r.views = Cell::Suppressed;
                r.writes = Cell::Suppressed;
                r.write_share = Cell::Suppressed;
            },
        );
        suppress_complementary(
            &mut platforms,
            |r| (&r.group, &r.platform, r.refused_persons.value()),
            |r| {
                r.refused_requests = Cell::Suppressed;
                r.refused_persons = Cell::Suppressed;
            },
        );
        let mut daily = Vec::new();
        let mut dkeys: Vec<_> = x.daily.keys().copied().collect();
        dkeys.sort_by_key(|&(g, p, d)| (d, self.gsort(g), self.psort(p)));
        for key in dkeys {
            let (g, p, d) = key;
            let c = &x.daily[&key];
            let active = x
                .daily_persons
                .get(&(Who::Active, g, p, d))
                .copied()
                .unwrap_or(0);
            let refused = x
                .daily_persons
                .get(&(Who::Refused, g, p, d))
                .copied()
                .unwrap_or(0);
            daily.push(DailyRow {
                day: format!("{:04}-{:02}-{:02}", d / 10_000, d / 100 % 100, d % 100),
                group: self.gname(g),
                platform: self.pname(p),
                active_users: Cell::gated(active, active, k),
                foreground_requests: Cell::gated(c.foreground, active, k),
                sessions: Cell::gated(c.sessions, active, k),
                active_minutes: Cell::gated(c.active_ms as f64 / 60_000.0, active, k),
                refused_requests: Cell::gated(c.refused, refused, k),
            });
        }
        let warnings = self.warnings(x, k);
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
            .map(|g| self.maturity(x, g, k))
            .collect();
        Strategy {
            groups,
            platforms,
            daily,
            hour_of_week,
            maturity,
            warnings,
        }
    }

    /// The continue rate behind warn rules, by group and platform: a cell
    /// is shown only when every person count it rests on is 0 or at least k.
    fn warnings(&self, x: &Expanded, k: u64) -> Vec<WarningRow> {
        let mut keys: Vec<(u32, u32)> = x.warn.keys().copied().collect();
        keys.sort_by_key(|&(g, p)| (self.gsort(g), self.psort(p)));
        let persons = |which: u8, g, p| x.warn_persons.get(&(which, g, p)).copied().unwrap_or(0);
        let mut rows: Vec<WarningRow> = keys
            .into_iter()
            .map(|(g, p)| {
                let [shown, continues, unshown] = x.warn[&(g, p)];
                let warned = persons(0, g, p);
                let continued = persons(1, g, p);
                let unshown_persons = persons(2, g, p);
                let rate = Cell::gated(ratio(continued, warned), warned, k);
                WarningRow {
                    group: self.gname(g),
                    platform: self.pname(p),
                    warned_persons: Cell::gated(warned, warned, k),
                    continued_persons: Cell::gated(continued, continued, k),
                    continue_rate: match Cell::gated((), continued, k) {
                        Cell::Value(()) => rate,
                        Cell::Suppressed => Cell::Suppressed,
                    },
                    warnings_shown: Cell::gated(shown, warned, k),
                    continues: Cell::gated(continues, continued, k),
                    unshown_tunnels: Cell::gated(unshown, unshown_persons, k),
                }
            })
            .collect();
        suppress_complementary(
            &mut rows,
            |r| (&r.group, &r.platform, r.warned_persons.value()),
            |r| {
                r.warned_persons = Cell::Suppressed;
                r.warnings_shown = Cell::Suppressed;
                r.continue_rate = Cell::Suppressed;
            },
        );
        suppress_complementary(
            &mut rows,
            |r| (&r.group, &r.platform, r.continued_persons.value()),
            |r| {
                r.continued_persons = Cell::Suppressed;
                r.continues = Cell::Suppressed;
                r.continue_rate = Cell::Suppressed;
            },
        );
        rows
    }

    fn maturity(&self, x: &Expanded, g: u32, k: u64) -> MaturityRow {
        let members = x.members.get(&g).copied().unwrap_or(0);
        let group = self.gname(g);
        if members < k {
            return MaturityRow {
                group,
                label: "suppressed".to_owned(),
                score: Cell::Suppressed,
                platforms_adopted: Cell::Suppressed,
                any_adoption: Cell::Suppressed,
                write_share: Cell::Suppressed,
                blocked_share: Cell::Suppressed,
                minutes_per_member: Cell::Suppressed,
                explanation: format!("fewer than {k} active members"),
            };
        }
        let adopted = x
            .cells
            .keys()
            .filter(|&&(gg, p)| gg == g && p != ANY)
            .filter(|&&(gg, p)| {
                let a = x.who(Who::Active, gg, p);
                a >= k && ratio(a, members) >= MATURITY_ADOPTED
            })
            .count() as u64;
        let any_active = x.who(Who::Active, g, ANY);
        let any_adoption = if any_active >= k {
            ratio(any_active, members)
        } else {
            0.0
        };
        let c = x.cells.get(&(g, ANY)).copied().unwrap_or_default();
        let users = x.who(Who::Users, g, ANY);
        let known = c.views + c.writes;
        let write_share = (known > 0 && users >= k).then(|| ratio(c.writes, known));
        let refused = x.who(Who::Refused, g, ANY);
        let blocked_share = if refused >= k {
            ratio(refused, members)
        } else {
            0.0
        };
        let minutes = if any_active >= k {
            c.active_ms as f64 / 60_000.0 / members as f64
        } else {
            0.0
        };
        let (label, explanation) =
            maturity_label(adopted, any_adoption, write_share, blocked_share);
        let score = 40.0 * (adopted as f64 / 4.0).min(1.0)
            + 40.0 * write_share.map_or(0.0, |w| (w / 0.25).min(1.0))
            + 20.0 * any_adoption;
        MaturityRow {
            group,
            label: label.to_owned(),
            score: Cell::Value((score * 10.0).round() / 10.0),
            platforms_adopted: Cell::Value(adopted),
            any_adoption: Cell::Value(any_adoption),
            write_share: Cell::Value(write_share),
            blocked_share: Cell::Value(blocked_share),
            minutes_per_member: Cell::Value(minutes),
            explanation,
        }
    }
}

/// A platform counts as adopted by a group from this adoption on.
pub const MATURITY_ADOPTED: f64 = 0.2;

/// The maturity label; the rules are documented in docs/reports.md.
pub fn maturity_label(
    adopted: u64,
    any_adoption: f64,
    write_share: Option<f64>,
    blocked_share: f64,
) -> (&'static str, String) {
    let pct = |v: f64| format!("{:.0}%", v * 100.0);
    if blocked_share >= 0.25 {
        return (
            "held back by policy",
            format!(
                "{} of members were refused a social platform",
                pct(blocked_share)
            ),
        );
    }
    if any_adoption < 0.2 {
        return (
            "light users",
            format!(
                "only {} of members used any social platform",
                pct(any_adoption)
            ),
        );
    }
    match write_share {
        Some(w) if w >= 0.10 && adopted >= 3 => (
            "broad and productive",
            format!(
                "{adopted} platforms adopted, {} of known activity is writing",
                pct(w)
            ),
        ),
        Some(w) if w >= 0.10 => (
            "focused contributors",
            format!(
                "{adopted} platform(s) adopted, {} of known activity is writing",
                pct(w)
            ),
        ),
        Some(w) => (
            "passive consumers",
            format!(
                "mostly reading: only {} of known activity is writing",
                pct(w)
            ),
        ),
        None if adopted >= 3 => (
            "broad, mix unknown",
            format!("{adopted} platforms adopted; read/write mix not visible (tunnels)"),
        ),
        None => (
            "engaged, mix unknown",
            format!(
                "{} of members active; read/write mix not visible (tunnels)",
                pct(any_adoption)
            ),
        ),
    }
}

fn per(a: f64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a / b as f64
    }
}
