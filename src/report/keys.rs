//! The small keys a record is counted under: names interned to dense ids,
//! and the local day and hour of a time (cached per hour, since a log is
//! read in time order).
//!
//! This module must not count anything.

use jiff::tz::TimeZone;
use jiff::Timestamp;
use rustc_hash::FxHashMap;

/// Names ↔ dense ids.
#[derive(Default)]
pub(super) struct Interner {
    map: FxHashMap<Box<str>, u32>,
    names: Vec<Box<str>>,
}
impl Interner {
    #[inline]
    pub(super) fn id(&mut self, s: &str) -> u32 {
        if let Some(&i) = self.map.get(s) {
            return i;
        }
        let i = self.names.len() as u32;
        self.names.push(s.into());
        self.map.insert(s.into(), i);
        i
    }
    pub(super) fn name(&self, i: u32) -> &str {
        &self.names[i as usize]
    }
}

/// Per local hour: [start, end) in ms, day (yyyymmdd) and hour of week.
#[derive(Clone, Copy)]
pub(super) struct HourSlot {
    start: i64,
    end: i64,
    /// Local date as yyyymmdd.
    pub(super) day: u32,
    /// Hour of week, Monday 00:00 = 0.
    pub(super) how: u8,
}

/// The local hour of `t`, from `cache` when `t` is in the cached hour.
#[inline]
pub(super) fn hour_slot(cache: &mut Option<HourSlot>, tz: &TimeZone, t: Timestamp) -> HourSlot {
    let ms = t.as_millisecond();
    if let Some(s) = *cache {
        if ms >= s.start && ms < s.end {
            return s;
        }
    }
    let z = t.to_zoned_datetime(tz.clone());
    let into_hour =
        i64::from(z.minute()) * 60_000 + i64::from(z.second()) * 1000 + i64::from(z.millisecond());
    let start = ms - into_hour;
    let d = z.date();
    let slot = HourSlot {
        start,
        end: start + 3_600_000,
        day: (d.year() as u32) * 10_000 + (d.month() as u32) * 100 + d.day() as u32,
        how: (z.weekday().to_monday_zero_offset() as u8) * 24 + z.hour() as u8,
    };
    *cache = Some(slot);
    slot
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_hours_follow_the_zone_offset_including_quarter_hours() {
        let tz = TimeZone::get("Asia/Kathmandu").unwrap(); // UTC+05:45
        let mut cache = None;
        let at = |s: &str| s.parse::<Timestamp>().unwrap();
        let a = hour_slot(&mut cache, &tz, at("2026-03-02T09:10:00Z")); // Mon 14:55
        assert_eq!((a.day, a.how), (20260302, 14));
        let b = hour_slot(&mut cache, &tz, at("2026-03-02T09:14:59Z")); // 14:59:59
        assert_eq!(b.how, 14);
        let c = hour_slot(&mut cache, &tz, at("2026-03-02T09:15:00Z")); // 15:00
        assert_eq!(c.how, 15);
        let d = hour_slot(&mut cache, &tz, at("2026-03-08T18:30:00Z")); // Mon 00:15
        assert_eq!((d.day, d.how), (20260309, 0));
    }
}
