//! Daily budgets, the pure part: what a rule's `budget:` allows, given how
//! much the person has spent today.
//!
//! A rule with `budget: {minutes: 30}` and/or `{megabytes: 500}` allows the
//! traffic it matches until the person (the user, else the client address)
//! has spent the budget on the local day in the rule's time zone, and then
//! applies its `action` (block or warn). How much was spent is a fact the
//! shell gathers (its budget ledger, see `crate::budget`) and passes in,
//! like whether a warning was acknowledged: [`super::admit`] takes it in
//! [`super::Facts::spent`], and [`super::budget_stage`] applies it once the
//! shell has looked it up. `explain --spent 25m` and `tests.yaml`'s `spent:`
//! give it by hand.
//!
//! The current minute is not counted until it is over: a person whose
//! spent minutes (complete ones) are below the budget may go on until the
//! end of the minute in which the budget is reached. So a budget of one
//! minute is one minute of use, not one request.
//!
//! No IO, no clock: `now` is passed in; days come from the rule's IANA
//! time zone (jiff), so daylight-saving days have 23 or 25 hours.

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

/// One megabyte, as budgets count it (SI: 1,000,000 bytes).
pub const MB: u64 = 1_000_000;

/// The most minutes a daily budget may name (a day).
pub const MAX_MINUTES: u32 = 1440;

/// The most megabytes a daily budget may name (10 TB).
pub const MAX_MEGABYTES: u64 = 10_000_000;

/// A rule's daily budget, compiled.
#[derive(Debug, Clone)]
pub struct Budget {
    /// Active minutes a day, if limited.
    pub minutes: Option<u32>,
    /// Megabytes a day (body bytes both ways), if limited.
    pub megabytes: Option<u64>,
    /// The zone whose local days the budget renews on.
    pub tz: TimeZone,
    pub tz_name: String,
    /// The day [`Budget::day`] found last: asked for every request under
    /// the budget, it changes once a day, and working it out from the time
    /// zone costs more than the rest of the budget stage. A cache only:
    /// the answer is the same with or without it.
    pub last_day: DayCache,
}

/// The last [`Day`] a budget worked out (see [`Budget::last_day`]).
#[derive(Debug, Clone, Default)]
pub struct DayCache(std::sync::Arc<arc_swap::ArcSwapOption<Day>>);

/// A local day in a budget's time zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Day {
    pub date: Date,
    /// Local midnight that starts it.
    pub start: Timestamp,
    /// Local midnight that ends it: when the budget renews.
    pub end: Timestamp,
}

impl Day {
    /// Minutes since the day's start (0-based) of `t`, which lies in it.
    pub fn minute_of(&self, t: Timestamp) -> u32 {
        let ms = t.as_millisecond() - self.start.as_millisecond();
        (ms.max(0) / 60_000) as u32
    }

    /// How many minutes the day has (1380, 1440 or 1500).
    pub fn minutes(&self) -> u32 {
        ((self.end.as_millisecond() - self.start.as_millisecond()) / 60_000) as u32
    }

    /// The instant `minute` minutes after the day's start.
    pub fn at_minute(&self, minute: u32) -> Timestamp {
        self.start
            .checked_add(SignedDuration::from_mins(i64::from(minute)))
            .unwrap_or(self.end)
    }
}

impl Budget {
    /// The byte limit, if the budget has one.
    pub fn bytes(&self) -> Option<u64> {
        self.megabytes.map(|m| m.saturating_mul(MB))
    }

    /// The local day containing `now`.
    pub fn day(&self, now: Timestamp) -> Day {
        if let Some(d) = &*self.last_day.0.load() {
            if d.start <= now && now < d.end {
                return **d;
            }
        }
        let day = self.work_out_day(now);
        self.last_day.0.store(Some(std::sync::Arc::new(day)));
        day
    }

    fn work_out_day(&self, now: Timestamp) -> Day {
        let local = now.to_zoned_datetime(self.tz.clone());
        let date = local.date();
        let start = local.start_of_day().map(|z| z.timestamp()).unwrap_or(now);
        let end = date
            .tomorrow()
            .ok()
            .and_then(|d| d.to_zoned_datetime(self.tz.clone()).ok())
            .and_then(|z| z.start_of_day().ok())
            .map(|z| z.timestamp())
            .unwrap_or_else(|| start + SignedDuration::from_hours(24));
        Day { date, start, end }
    }

    /// `30 minutes`, `500 MB`, `30 minutes and 500 MB`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(m) = self.minutes {
            parts.push(minutes_words(m));
        }
        if let Some(mb) = self.megabytes {
            parts.push(format!("{mb} MB"));
        }
        parts.join(" and ")
    }

    /// What is left of this budget after `spent`, or which part ran out.
    pub fn apply(&self, spent: Spent, day: &Day) -> BudgetState {
        let minutes_left = self.minutes.map(|m| m.saturating_sub(spent.minutes));
        let bytes_left = self.bytes().map(|b| b.saturating_sub(spent.bytes));
        if minutes_left == Some(0) || bytes_left == Some(0) {
            BudgetState::Exhausted {
                spent,
                renews: day.end,
            }
        } else {
            BudgetState::Left {
                minutes: minutes_left,
                bytes: bytes_left,
                renews: day.end,
            }
        }
    }
}

/// How much of a budget the person has spent today: complete active
/// minutes, and body bytes both ways.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Spent {
    pub minutes: u32,
    pub bytes: u64,
}

/// What the shell knows about the spent amount of the deciding rule's
/// budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpentFact {
    Known(Spent),
    /// The shared state store (Redis) cannot be reached: budgets fail open,
    /// the traffic is decided without them.
    Unavailable,
}

/// The budget part of a decision, when the deciding rule has a budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetView {
    /// Index of the rule whose budget applies.
    pub rule: u16,
    pub state: BudgetState,
}

/// Where the person stands with the deciding rule's budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetState {
    /// Not looked up yet: the shell asks its ledger and runs
    /// [`super::budget_stage`]. Until then the traffic counts as allowed.
    Unchecked,
    /// Within budget: the traffic is allowed (and counted). `None` where
    /// the budget does not limit that dimension.
    Left {
        minutes: Option<u32>,
        bytes: Option<u64>,
        renews: Timestamp,
    },
    /// Spent: the rule's action applies until `renews`.
    Exhausted { spent: Spent, renews: Timestamp },
    /// The state store cannot say: decided without the budget (allowed).
    Unavailable,
}

impl BudgetState {
    /// A short stable label (`explain`, docs).
    pub fn as_str(&self) -> &'static str {
        match self {
            BudgetState::Unchecked => "unchecked",
            BudgetState::Left { .. } => "left",
            BudgetState::Exhausted { .. } => "exhausted",
            BudgetState::Unavailable => "unavailable",
        }
    }

    /// When the budget renews, where known.
    pub fn renews(&self) -> Option<Timestamp> {
        match self {
            BudgetState::Left { renews, .. } | BudgetState::Exhausted { renews, .. } => {
                Some(*renews)
            }
            _ => None,
        }
    }
}

/// `1 minute`, `90 minutes`.
pub fn minutes_words(m: u32) -> String {
    format!("{m} minute{}", if m == 1 { "" } else { "s" })
}

/// `12.5 MB`, `0 MB`, `3 MB`.
pub fn megabytes_words(bytes: u64) -> String {
    let tenths = bytes / (MB / 10);
    if tenths.is_multiple_of(10) {
        format!("{} MB", tenths / 10)
    } else {
        format!("{}.{} MB", tenths / 10, tenths % 10)
    }
}

/// Reads a spent amount as `explain --spent` and `tests.yaml` write it:
/// `25m`, `1h30m`, `300MB`, `1.5GB`, or several joined by `,`
/// (`25m,300MB`). Minutes round down to whole minutes.
pub fn parse_spent(s: &str) -> Result<Spent, String> {
    let mut spent = Spent::default();
    let mut any = false;
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        any = true;
        let lower: String = part
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect::<String>()
            .to_ascii_lowercase();
        let volume = [("gb", 1000 * MB), ("mb", MB), ("kb", 1000)]
            .iter()
            .find_map(|(unit, mult)| lower.strip_suffix(unit).map(|n| (n, *mult)));
        if let Some((n, mult)) = volume {
            let v: f64 = n
                .trim()
                .parse()
                .ok()
                .filter(|v: &f64| v.is_finite() && *v >= 0.0)
                .ok_or_else(|| format!("{part:?} is not an amount such as 300MB or 1.5GB"))?;
            spent.bytes = spent.bytes.saturating_add((v * mult as f64) as u64);
            continue;
        }
        let d = lower
            .parse::<jiff::Span>()
            .ok()
            .and_then(|span| {
                span.to_duration(jiff::SpanRelativeTo::days_are_24_hours())
                    .ok()
            })
            .filter(|d| !d.is_negative())
            .ok_or_else(|| {
                format!(
                    "{part:?} is neither a time such as 25m or 1h30m nor an amount such as 300MB"
                )
            })?;
        let m = u32::try_from(d.as_secs() / 60).unwrap_or(u32::MAX);
        spent.minutes = spent.minutes.saturating_add(m);
    }
    if !any {
        return Err("give a time such as 25m, an amount such as 300MB, or both (25m,300MB)".into());
    }
    Ok(spent)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(minutes: Option<u32>, megabytes: Option<u64>) -> Budget {
        Budget {
            minutes,
            megabytes,
            tz: TimeZone::get("Europe/Berlin").unwrap(),
            tz_name: "Europe/Berlin".into(),
            last_day: Default::default(),
        }
    }

    #[test]
    fn days_are_local_and_daylight_saving_days_have_23_or_25_hours() {
        let b = budget(Some(30), None);
        let d = b.day("2026-11-25T10:00:00+01:00".parse().unwrap());
        assert_eq!(d.date.to_string(), "2026-11-25");
        assert_eq!(d.start, "2026-11-24T23:00:00Z".parse().unwrap());
        assert_eq!(d.end, "2026-11-25T23:00:00Z".parse().unwrap());
        assert_eq!(d.minutes(), 1440);
        // 23:30 UTC is already the next day in Berlin.
        let late = b.day("2026-11-25T23:30:00Z".parse().unwrap());
        assert_eq!(late.date.to_string(), "2026-11-26");
        assert_eq!(late.minute_of("2026-11-25T23:30:00Z".parse().unwrap()), 30);
        // 29 March 2026: clocks go forward, the day is 23 hours long.
        let spring = b.day("2026-03-29T12:00:00+02:00".parse().unwrap());
        assert_eq!(spring.minutes(), 1380);
        // 25 October 2026: back, 25 hours.
        let autumn = b.day("2026-10-25T12:00:00+01:00".parse().unwrap());
        assert_eq!(autumn.minutes(), 1500);
    }

    #[test]
    fn a_budget_runs_out_on_either_limit() {
        let b = budget(Some(30), Some(500));
        let day = b.day("2026-11-25T10:00:00+01:00".parse().unwrap());
        let at = |minutes, mb: u64| {
            b.apply(
                Spent {
                    minutes,
                    bytes: mb * MB,
                },
                &day,
            )
        };
        assert_eq!(
            at(25, 100),
            BudgetState::Left {
                minutes: Some(5),
                bytes: Some(400 * MB),
                renews: day.end
            }
        );
        assert_eq!(at(30, 0).as_str(), "exhausted");
        assert_eq!(at(0, 500).as_str(), "exhausted");
        assert_eq!(at(29, 499).as_str(), "left");
        let time_only = budget(Some(1), None);
        assert_eq!(
            time_only.apply(
                Spent {
                    minutes: 0,
                    bytes: u64::MAX
                },
                &day
            ),
            BudgetState::Left {
                minutes: Some(1),
                bytes: None,
                renews: day.end
            }
        );
        assert_eq!(b.describe(), "30 minutes and 500 MB");
        assert_eq!(budget(Some(1), None).describe(), "1 minute");
    }

    #[test]
    fn spent_amounts_read_as_people_write_them() {
        let ok = |s: &str, minutes, bytes| {
            assert_eq!(parse_spent(s).unwrap(), Spent { minutes, bytes }, "{s}")
        };
        ok("25m", 25, 0);
        ok("1h30m", 90, 0);
        ok("300MB", 0, 300 * MB);
        ok("300 mb", 0, 300 * MB);
        ok("1.5GB", 0, 1500 * MB);
        ok("25m,300MB", 25, 300 * MB);
        ok("90s", 1, 0);
        for bad in ["", "lots", "-5m", "5 parsecs", "NaNMB", "1 month"] {
            let e = parse_spent(bad).unwrap_err();
            assert!(e.contains("25m") || e.contains("300MB"), "{bad}: {e}");
        }
        assert_eq!(megabytes_words(12_500_000), "12.5 MB");
        assert_eq!(megabytes_words(3 * MB), "3 MB");
    }
}
