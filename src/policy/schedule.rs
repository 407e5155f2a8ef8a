//! Weekly time windows in a named IANA time zone.
//!
//! A window is a set of weekdays plus a `from`..`to` span of local wall-clock
//! time; `to` earlier than `from` runs past midnight into the next day (the
//! window belongs to the day it starts on). Time-zone rules, including
//! daylight-saving changes, come from `jiff`. Pure: `now` is passed in.

use jiff::tz::TimeZone;
use jiff::Timestamp;

/// A rule's schedule: it applies when any window contains `now`.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub tz: TimeZone,
    pub tz_name: String,
    pub windows: Vec<Window>,
}

/// One weekly window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// Bit 0 = Monday ... bit 6 = Sunday.
    pub days: u8,
    /// Minutes after local midnight, inclusive.
    pub from: u16,
    /// Minutes after local midnight, exclusive (1440 = end of day).
    pub to: u16,
}

impl Schedule {
    pub fn contains(&self, now: Timestamp) -> bool {
        let local = now.to_zoned_datetime(self.tz.clone());
        let day = local.weekday().to_monday_zero_offset() as u8;
        let minute = local.hour() as u16 * 60 + local.minute() as u16;
        self.windows.iter().any(|w| w.contains(day, minute))
    }
}

impl Schedule {
    /// The first instant strictly after `now` at which a window opens or
    /// closes. Windows repeat weekly, so one is always found within eight
    /// days; `None` only for a schedule without windows.
    pub fn next_boundary_after(&self, now: Timestamp) -> Option<Timestamp> {
        let today = now.to_zoned_datetime(self.tz.clone()).date();
        let mut best: Option<Timestamp> = None;
        // From yesterday (a window past midnight may still be open) to a week on.
        for offset in -1..=8i32 {
            let Ok(date) = today.checked_add(jiff::Span::new().days(offset)) else {
                continue;
            };
            let day = date.weekday().to_monday_zero_offset() as u8;
            for w in &self.windows {
                if w.days & (1 << day) == 0 {
                    continue;
                }
                let end_day_offset = if w.from < w.to { 0 } else { 1 };
                for (d, minute) in [(0, w.from), (end_day_offset, w.to)] {
                    let Some(t) = self.instant(date, d, minute) else {
                        continue;
                    };
                    if t > now && best.is_none_or(|b| t < b) {
                        best = Some(t);
                    }
                }
            }
        }
        best
    }

    /// `minute` minutes after local midnight of `date` + `days`, as an
    /// instant (DST gaps resolve forward, as clocks do).
    fn instant(&self, date: jiff::civil::Date, days: i32, minute: u16) -> Option<Timestamp> {
        let date = date.checked_add(jiff::Span::new().days(days)).ok()?;
        let dt = date.to_datetime(jiff::civil::Time::midnight());
        let dt = dt
            .checked_add(jiff::Span::new().minutes(i64::from(minute)))
            .ok()?;
        self.tz
            .to_ambiguous_zoned_datetime(dt)
            .compatible()
            .ok()
            .map(|z| z.timestamp())
    }
}

impl Window {
    fn contains(&self, day: u8, minute: u16) -> bool {
        let on = |d: u8| self.days & (1 << d) != 0;
        if self.from < self.to {
            on(day) && minute >= self.from && minute < self.to
        } else {
            // Past midnight: the evening part today, the morning part belongs
            // to the window that started yesterday.
            let yesterday = (day + 6) % 7;
            (on(day) && minute >= self.from) || (on(yesterday) && minute < self.to)
        }
    }
}

/// Parses `HH:MM` (00:00 to 24:00) into minutes after midnight.
pub fn parse_clock(s: &str) -> Result<u16, String> {
    let bad = || format!("{s:?} is not a time of day; write HH:MM between 00:00 and 24:00");
    let (h, m) = s.trim().split_once(':').ok_or_else(bad)?;
    if h.is_empty() || h.len() > 2 || m.len() != 2 {
        return Err(bad());
    }
    let h: u16 = h.parse().map_err(|_| bad())?;
    let m: u16 = m.parse().map_err(|_| bad())?;
    if m > 59 || h > 24 || (h == 24 && m != 0) {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const DAY_FULL: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

/// A day name (`mon` or `monday`, any case) as 0 = Monday .. 6 = Sunday.
fn day_index(s: &str) -> Option<u8> {
    let s = s.trim().to_ascii_lowercase();
    DAY_NAMES
        .iter()
        .position(|d| *d == s)
        .or_else(|| DAY_FULL.iter().position(|d| *d == s))
        .map(|i| i as u8)
}

/// Parses a day spec: `mon`, `monday`, `mon-fri`, `fri-mon` (wraps),
/// `weekdays`, `weekend`, `all`.
pub fn parse_days(s: &str) -> Result<u8, String> {
    let t = s.trim().to_ascii_lowercase();
    match t.as_str() {
        "all" | "daily" | "everyday" => return Ok(0x7f),
        "weekdays" => return Ok(0x1f),
        "weekend" | "weekends" => return Ok(0x60),
        _ => {}
    }
    let bad = || {
        format!(
            "{s:?} is not a day; write mon..sun, a range such as mon-fri, weekdays, weekend or all"
        )
    };
    if let Some((a, b)) = t.split_once('-') {
        let (a, b) = (day_index(a).ok_or_else(bad)?, day_index(b).ok_or_else(bad)?);
        let mut mask = 0u8;
        let mut d = a;
        loop {
            mask |= 1 << d;
            if d == b {
                break;
            }
            d = (d + 1) % 7;
        }
        return Ok(mask);
    }
    day_index(&t).map(|i| 1 << i).ok_or_else(bad)
}

/// Looks up an IANA time-zone name.
pub fn parse_tz(name: &str) -> Result<TimeZone, String> {
    if name.eq_ignore_ascii_case("utc") {
        return Ok(TimeZone::UTC);
    }
    TimeZone::get(name).map_err(|_| {
        format!("{name:?} is not a known IANA time zone; write a name such as Europe/Berlin, America/New_York or UTC")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn work_hours(tz: &str) -> Schedule {
        Schedule {
            tz: parse_tz(tz).unwrap(),
            tz_name: tz.into(),
            windows: vec![Window {
                days: parse_days("mon-fri").unwrap(),
                from: parse_clock("09:00").unwrap(),
                to: parse_clock("17:00").unwrap(),
            }],
        }
    }

    #[test]
    fn work_hours_follow_the_named_time_zone() {
        let s = work_hours("Europe/Berlin");
        // 2026-11-25 is a Wednesday; Berlin is UTC+1 in November.
        let cases = [
            ("2026-11-25T07:59:00Z", false),
            ("2026-11-25T08:00:00Z", true),
            ("2026-11-25T15:59:00Z", true),
            ("2026-11-25T16:00:00Z", false),
            ("2026-11-28T10:00:00Z", false), // Saturday
            // Summer time: UTC+2.
            ("2026-07-01T07:00:00Z", true),
            ("2026-07-01T06:59:00Z", false),
        ];
        for (t, want) in cases {
            assert_eq!(s.contains(at(t)), want, "at {t}");
        }
    }

    #[test]
    fn windows_past_midnight_belong_to_the_day_they_start() {
        let w = Window {
            days: parse_days("fri").unwrap(),
            from: parse_clock("22:00").unwrap(),
            to: parse_clock("06:00").unwrap(),
        };
        assert!(w.contains(4, 23 * 60)); // Friday 23:00
        assert!(w.contains(5, 5 * 60)); // Saturday 05:00
        assert!(!w.contains(5, 23 * 60)); // Saturday 23:00
        assert!(!w.contains(4, 5 * 60)); // Friday 05:00
    }

    #[test]
    fn parses_clock_and_days_or_says_how_to_fix_them() {
        assert_eq!(parse_clock("00:00"), Ok(0));
        assert_eq!(parse_clock("9:30"), Ok(570));
        assert_eq!(parse_clock("24:00"), Ok(1440));
        for bad in ["25:00", "24:01", "12:60", "noon", "12", "12:5", ":30"] {
            let err = parse_clock(bad).unwrap_err();
            assert!(err.contains("HH:MM"), "{bad}: {err}");
        }
        assert_eq!(parse_days("mon-fri"), Ok(0x1f));
        assert_eq!(parse_days("sat-sun"), Ok(0x60));
        assert_eq!(parse_days("fri-mon"), Ok(0b111_0001));
        assert_eq!(parse_days("Wednesday"), Ok(0b100));
        assert_eq!(parse_days("weekend"), Ok(0x60));
        assert!(parse_days("funday").is_err());
        assert!(parse_days("mon-xyz").is_err());
        assert!(parse_days("monkey-fri").is_err());
        assert!(parse_days("thurs").is_err());
        assert!(parse_tz("Europe/Berlin").is_ok());
        assert!(parse_tz("Mars/Olympus").unwrap_err().contains("IANA"));
    }
}
