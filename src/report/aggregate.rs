//! Turns a stream of records into the bounded per-key aggregates behind a
//! report: the ingest-side half of the report (the sections are built from
//! them in `security` and `strategy`, after `expand`).
//!
//! Names (groups, platforms, rules, reasons, persons) are interned to small
//! integers once; a record's group list is interned as a whole ("group
//! set"), so each record costs a handful of hash operations whatever the
//! number of groups it is in. Counters and distinct-person sets are keyed by
//! (group set, platform, ...) and expanded to single groups only in
//! [`Aggregator::finish`]. Persons are interned to dense ids, and every
//! distinct-person count is a [`PersonSet`] per key: a compressed bitmap
//! (roaring), so a record costs a few lookups in small tables and a bit set,
//! whatever the number of lines. Memory is bounded by (distinct keys: group
//! sets × platforms × days, plus refusal rows) × min(persons in the key × 2
//! bytes, all persons / 8 bytes), plus one name and one active-day counter
//! per person and the open sessions; never by the number of lines.
//!
//! This module must not read files or format output, and must not let any
//! number that describes fewer than k persons out of [`Aggregator::finish`]
//! except in the per-person listing for security officers.

use std::collections::HashMap;

use jiff::tz::TimeZone;
use jiff::Timestamp;
use rustc_hash::{FxBuildHasher, FxHashMap, FxHashSet};

use super::expand::Expanded;
use super::keys::{hour_slot, HourSlot, Interner};
use super::model::*;
use super::read::Record;
use super::Audience;
use crate::activetime::{SessionRules, Sessionizer};
use crate::event::AuthMethod;
use crate::outcome::{Activity, Class, Lenient, Reason, Verdict, WarnOutcome};

/// Distinct persons, as dense person ids.
pub(super) type PersonSet = roaring::RoaringBitmap;

/// Platform id standing for "any platform".
pub(super) const ANY: u32 = u32::MAX;
/// Platform id for records on no catalog platform.
pub(super) const NONE: u32 = u32::MAX - 1;
/// Group id standing for "all groups".
pub(super) const ALLG: u32 = u32::MAX;
/// Group id for records of clients in no group (security section only).
pub(super) const NOGROUP: u32 = u32::MAX - 1;

/// How many activities there are ([`Activity::ALL`]); an activity's index
/// is `activity as usize`.
pub(super) const ACTS: usize = Activity::ALL.len();
/// Activity code of a record without a (known) activity: a tunnel.
pub(super) const ACT_NONE: u8 = ACTS as u8;
/// Class codes of the security rows.
pub(super) const CLASS_PRIMARY: u8 = 0;
pub(super) const CLASS_EMBEDDED: u8 = 1;
pub(super) const CLASS_NONE: u8 = 2;

/// What to aggregate and how.
#[derive(Debug, Clone)]
pub struct Options {
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
    pub tz: TimeZone,
    pub tz_name: String,
    pub k: u64,
    pub rules: SessionRules,
    pub top_persons: usize,
    pub audience: Audience,
}

#[derive(Default, Clone, Copy)]
pub(super) struct Counters {
    pub(super) requests: u64,
    pub(super) bytes_up: u64,
    pub(super) bytes_down: u64,
    pub(super) foreground: u64,
    /// Refused requests of any class, and of the platform's own domains.
    pub(super) refused: u64,
    pub(super) refused_primary: u64,
    pub(super) would_primary: u64,
    pub(super) sessions: u64,
    pub(super) active_ms: i64,
    /// Not-refused primary requests per activity.
    pub(super) acts: [u64; ACTS],
}
impl Counters {
    pub(super) fn add(&mut self, o: &Counters) {
        self.requests += o.requests;
        self.bytes_up += o.bytes_up;
        self.bytes_down += o.bytes_down;
        self.foreground += o.foreground;
        self.refused += o.refused;
        self.refused_primary += o.refused_primary;
        self.would_primary += o.would_primary;
        self.sessions += o.sessions;
        self.active_ms += o.active_ms;
        for (a, b) in self.acts.iter_mut().zip(o.acts) {
            *a += b;
        }
    }
}

/// Session key: person, platform (or ANY), group set.
pub(super) type SessKey = (u32, u32, u32);

/// Per group set: requests and distinct persons.
#[derive(Default)]
pub(super) struct GroupSetAgg {
    pub(super) requests: u64,
    pub(super) unauth: u64,
    pub(super) members: PersonSet,
    pub(super) unauth_persons: PersonSet,
}

/// Per (group set, platform). "Any platform" keeps counters only: its
/// distinct persons are the union of the platforms' sets.
#[derive(Default)]
pub(super) struct CellAgg {
    pub(super) c: Counters,
    /// Any traffic to the platform (backs bytes).
    pub(super) seen: PersonSet,
    /// Foreground, primary, not refused (adoption, time, sessions).
    pub(super) active: PersonSet,
    /// Refused, any class (security).
    pub(super) refused: PersonSet,
    /// Refused and would-be refused attempts on the platform's own domains
    /// (blocked demand).
    pub(super) refused_primary: PersonSet,
    pub(super) would_primary: PersonSet,
    /// Not-refused primary requests per activity.
    pub(super) acts: [PersonSet; ACTS],
}

/// Key of a security row: refused (else would-refuse), group set, platform
/// (or NONE), activity code, class code, rule id.
pub(super) type SecKey = (bool, u32, u32, u8, u8, u32);

/// Per (group set, platform or NONE): what enforced warn rules did. Each
/// count has the persons behind it, for the privacy audit.
#[derive(Default)]
pub(super) struct WarnAgg {
    /// Warning pages shown, Continues taken, tunnels passed unshown.
    pub(super) shown: u64,
    pub(super) continued: u64,
    pub(super) unshown: u64,
    /// Persons shown a warning page.
    pub(super) shown_persons: PersonSet,
    /// Persons who took a Continue.
    pub(super) continuers: PersonSet,
    /// Persons whose tunnels passed unshown.
    pub(super) unshown_persons: PersonSet,
}

impl WarnAgg {
    /// Persons warned: shown a warning page or who continued past one (the
    /// base of the continue rate).
    pub(super) fn warned(&self) -> PersonSet {
        &self.shown_persons | &self.continuers
    }
}

/// Aggregates records; call [`observe`](Self::observe) per record and
/// [`finish`](Self::finish) once.
pub struct Aggregator {
    pub(super) opt: Options,
    pub(super) groups: Interner,
    pub(super) platforms: Interner,
    pub(super) reasons: Interner,
    pub(super) rules: Interner,
    pub(super) users: FxHashMap<Box<str>, u32>,
    pub(super) ips: FxHashMap<Box<str>, u32>,
    pub(super) person_names: Vec<Box<str>>,
    pub(super) group_sets: FxHashMap<Box<[u32]>, u32>,
    pub(super) group_set_members: Vec<Box<[u32]>>,
    pub(super) scratch: Vec<u32>,
    /// Hour of the latest record.
    pub(super) slot: Option<HourSlot>,

    pub(super) in_period: u64,
    pub(super) first: Option<Timestamp>,
    pub(super) last: Option<Timestamp>,
    /// Local day → earliest and latest record time (ms) on it.
    pub(super) day_span: FxHashMap<u32, (i64, i64)>,
    /// The day being read and its span, flushed into `day_span` on change.
    pub(super) cur_day: Option<(u32, i64, i64)>,

    /// Indexed by group set id.
    pub(super) gsets: Vec<GroupSetAgg>,
    /// (group set, platform)
    pub(super) cells: FxHashMap<(u32, u32), CellAgg>,
    /// (group set, platform or NONE): warnings shown, continues, unshown.
    pub(super) warn: FxHashMap<(u32, u32), WarnAgg>,
    /// (group set, platform, day) → persons with active use that day.
    pub(super) daily: FxHashMap<(u32, u32, u32), PersonSet>,
    /// (group set, person) → (latest local day with active use, active days).
    pub(super) active_days: FxHashMap<(u32, u32), (u32, u32)>,
    pub(super) sec: FxHashMap<SecKey, (u64, PersonSet)>,
    /// reason → refused requests, persons
    pub(super) reason_counts: FxHashMap<u32, (u64, PersonSet)>,
    /// rule → tunnels that an activity rule could not judge, persons.
    pub(super) unseen: FxHashMap<(u32, u32), (u64, PersonSet)>,
    /// (group set, platform or NONE) → access requests, persons who asked
    /// (`kind: access-request` records: no traffic, counted only here).
    pub(super) asked: FxHashMap<(u32, u32), (u64, PersonSet)>,
    /// person → refused requests; (person, platform)
    pub(super) person_refused: FxHashMap<u32, u64>,
    pub(super) person_refused_platforms: FxHashSet<(u32, u32)>,
    /// [would-refuse, refused] persons, over all groups and hosts
    pub(super) sec_people: [PersonSet; 2],
    pub(super) heat: [u64; 168],
    pub(super) heat_persons: Vec<PersonSet>,
    pub(super) sessions: Sessionizer<SessKey, FxBuildHasher>,
    pub(super) closed: Vec<crate::activetime::Session<SessKey>>,
    pub(super) total_requests: u64,
}

/// The activity code of a record ([`ACT_NONE`] for a tunnel or an activity
/// this version does not know).
fn activity_code(a: Option<&Lenient<Activity>>) -> u8 {
    match a {
        Some(Lenient::Known(a)) => *a as u8,
        _ => ACT_NONE,
    }
}

/// The label of an activity code (`None` for [`ACT_NONE`]).
pub(super) fn activity_label(code: u8) -> Option<&'static str> {
    Activity::ALL.get(usize::from(code)).map(|a| a.as_str())
}

/// The label of a class code.
pub(super) fn class_label(code: u8) -> Option<&'static str> {
    match code {
        CLASS_PRIMARY => Some("primary"),
        CLASS_EMBEDDED => Some("embedded"),
        _ => None,
    }
}

impl Aggregator {
    pub fn new(opt: Options) -> Self {
        let rules = opt.rules;
        Aggregator {
            opt,
            groups: Interner::default(),
            platforms: Interner::default(),
            reasons: Interner::default(),
            rules: Interner::default(),
            users: FxHashMap::default(),
            ips: FxHashMap::default(),
            person_names: Vec::new(),
            group_sets: FxHashMap::default(),
            group_set_members: Vec::new(),
            scratch: Vec::new(),
            slot: None,
            in_period: 0,
            first: None,
            last: None,
            day_span: FxHashMap::default(),
            cur_day: None,
            gsets: Vec::new(),
            cells: FxHashMap::default(),
            warn: FxHashMap::default(),
            daily: FxHashMap::default(),
            active_days: FxHashMap::default(),
            sec: FxHashMap::default(),
            reason_counts: FxHashMap::default(),
            unseen: FxHashMap::default(),
            asked: FxHashMap::default(),
            person_refused: FxHashMap::default(),
            person_refused_platforms: FxHashSet::default(),
            sec_people: Default::default(),
            heat: [0; 168],
            heat_persons: vec![PersonSet::default(); 168],
            sessions: Sessionizer::with_hasher(rules),
            closed: Vec::new(),
            total_requests: 0,
        }
    }

    #[inline]
    fn person(&mut self, rec: &Record<'_>) -> u32 {
        let next = self.person_names.len() as u32;
        match rec.user.as_deref() {
            Some(u) => {
                if let Some(&p) = self.users.get(u) {
                    return p;
                }
                self.users.insert(u.into(), next);
                self.person_names.push(u.into());
            }
            None => {
                let c: &str = &rec.client;
                if let Some(&p) = self.ips.get(c) {
                    return p;
                }
                self.ips.insert(c.into(), next);
                self.person_names.push(format!("ip:{c}").into());
            }
        }
        next
    }

    #[inline]
    fn group_set(&mut self, rec: &Record<'_>) -> u32 {
        let mut ids = std::mem::take(&mut self.scratch);
        ids.clear();
        for g in rec.groups.iter() {
            ids.push(self.groups.id(g));
        }
        ids.sort_unstable();
        ids.dedup();
        let id = match self.group_sets.get(ids.as_slice()) {
            Some(&id) => id,
            None => {
                let id = self.group_set_members.len() as u32;
                self.group_set_members.push(ids.clone().into_boxed_slice());
                self.group_sets.insert(ids.clone().into_boxed_slice(), id);
                self.gsets.push(GroupSetAgg::default());
                id
            }
        };
        self.scratch = ids;
        id
    }

    /// Notes the record's local day and time, for the days covered.
    #[inline]
    fn note_day(&mut self, day: u32, ms: i64) {
        match &mut self.cur_day {
            Some((d, lo, hi)) if *d == day => {
                *lo = (*lo).min(ms);
                *hi = (*hi).max(ms);
            }
            cur => {
                if let Some((d, lo, hi)) = cur.replace((day, ms, ms)) {
                    let e = self.day_span.entry(d).or_insert((lo, hi));
                    e.0 = e.0.min(lo);
                    e.1 = e.1.max(hi);
                }
            }
        }
    }

    /// Adds one record (records outside --from/--to are skipped here).
    pub fn observe(&mut self, rec: &Record<'_>) {
        if self.opt.from.is_some_and(|f| rec.time < f) || self.opt.to.is_some_and(|t| rec.time >= t)
        {
            return;
        }
        // Counted through the requests inside it.
        if rec.is_inspected_tunnel() {
            return;
        }
        self.in_period += 1;
        self.first = Some(self.first.map_or(rec.time, |f| f.min(rec.time)));
        self.last = Some(self.last.map_or(rec.time, |l| l.max(rec.time)));
        let slot = hour_slot(&mut self.slot, &self.opt.tz, rec.time);
        self.note_day(slot.day, rec.time.as_millisecond());
        let gs = self.group_set(rec);
        let p = self.person(rec);
        let unauth = rec.auth == Lenient::Known(AuthMethod::None);
        self.total_requests += 1;
        let g = &mut self.gsets[gs as usize];
        g.requests += 1;
        g.members.insert(p);
        if unauth {
            g.unauth += 1;
            g.unauth_persons.insert(p);
        }
        // A verdict this version cannot tell (unknown action or mode) counts
        // as traffic that passed; the unknown value is counted by the reader.
        let verdict = rec.verdict().unwrap_or(Verdict::Passed);
        let refused = verdict == Verdict::Refused;
        let would = verdict == Verdict::WouldRefuse;
        // Held at a warning: socialgate answered, the platform was not used.
        let warned = verdict == Verdict::Warned;
        let act = activity_code(rec.activity.as_ref());
        let class = match &rec.class {
            Some(Lenient::Known(Class::Primary)) => CLASS_PRIMARY,
            Some(Lenient::Known(Class::Embedded)) => CLASS_EMBEDDED,
            _ => CLASS_NONE,
        };
        let primary = class == CLASS_PRIMARY;
        let plat = rec.platform.as_deref().map(|name| self.platforms.id(name));
        if let Some(rule) = rec.activity_unseen.as_deref() {
            let r = self.rules.id(rule);
            let e = self.unseen.entry((r, plat.unwrap_or(NONE))).or_default();
            e.0 += 1;
            e.1.insert(p);
        }
        if let Some(Lenient::Known(w)) = &rec.warn {
            self.observe_warning(*w, gs, plat.unwrap_or(NONE), p);
        }
        if refused || would {
            let pl = plat.unwrap_or(NONE);
            let rule = self.rules.id(&rec.rule);
            let e = self
                .sec
                .entry((refused, gs, pl, act, class, rule))
                .or_default();
            e.0 += 1;
            e.1.insert(p);
            self.sec_people[usize::from(refused)].insert(p);
            if refused {
                let r = self.reasons.id(reason_name(&rec.reason));
                let e = self.reason_counts.entry(r).or_default();
                e.0 += 1;
                e.1.insert(p);
                *self.person_refused.entry(p).or_default() += 1;
                self.person_refused_platforms.insert((p, pl));
            }
        }
        let Some(pl) = plat else { return };
        let active = !refused && !warned && primary && rec.foreground;
        for pp in [pl, ANY] {
            // "Any platform" keeps counters only: its distinct persons are
            // the union of the platforms' sets, formed in `expand` (half the
            // set inserts per record).
            let own = pp != ANY;
            let cell = self.cells.entry((gs, pp)).or_default();
            let c = &mut cell.c;
            c.requests += 1;
            c.bytes_up += rec.bytes_up;
            c.bytes_down += rec.bytes_down;
            if own {
                cell.seen.insert(p);
            }
            if refused {
                c.refused += 1;
                if own {
                    cell.refused.insert(p);
                }
                if primary {
                    c.refused_primary += 1;
                    if own {
                        cell.refused_primary.insert(p);
                    }
                }
                continue;
            }
            // Held at a warning: neither use nor an activity that passed.
            if warned {
                continue;
            }
            if !primary {
                continue;
            }
            if would {
                c.would_primary += 1;
                if own {
                    cell.would_primary.insert(p);
                }
            }
            if act != ACT_NONE {
                c.acts[usize::from(act)] += 1;
                if own {
                    cell.acts[usize::from(act)].insert(p);
                }
            }
            if active {
                c.foreground += 1;
                if own {
                    cell.active.insert(p);
                    self.daily.entry((gs, pp, slot.day)).or_default().insert(p);
                }
                self.sessions
                    .observe_into(&(p, pp, gs), rec.time, &mut self.closed);
            }
        }
        if !self.closed.is_empty() {
            let mut closed = std::mem::take(&mut self.closed);
            for s in closed.drain(..) {
                self.add_session(s);
            }
            self.closed = closed;
        }
        if active {
            self.heat[slot.how as usize] += 1;
            self.heat_persons[slot.how as usize].insert(p);
            // Active days per person: a day counts once, when it is later
            // than the last one counted (a straggler from an earlier day
            // does not count it twice).
            let e = self.active_days.entry((gs, p)).or_insert((0, 0));
            if slot.day > e.0 {
                *e = (slot.day, e.1 + 1);
            }
        }
    }

    /// Adds one access request (a `kind: access-request` record) made in
    /// the period: the group set and platform asked about, and who asked.
    /// It is no traffic: no request, refusal, use, day or group membership.
    pub fn observe_access_request(&mut self, rec: &Record<'_>) {
        if self.opt.from.is_some_and(|f| rec.time < f) || self.opt.to.is_some_and(|t| rec.time >= t)
        {
            return;
        }
        let gs = self.group_set(rec);
        let p = self.person(rec);
        let pl = rec
            .platform
            .as_deref()
            .map_or(NONE, |name| self.platforms.id(name));
        let e = self.asked.entry((gs, pl)).or_default();
        e.0 += 1;
        e.1.insert(p);
    }

    fn observe_warning(&mut self, w: WarnOutcome, gs: u32, pl: u32, p: u32) {
        let agg = self.warn.entry((gs, pl)).or_default();
        match w {
            WarnOutcome::Shown => {
                agg.shown += 1;
                agg.shown_persons.insert(p);
            }
            WarnOutcome::Continued => {
                agg.continued += 1;
                agg.continuers.insert(p);
            }
            WarnOutcome::Unshown => {
                agg.unshown += 1;
                agg.unshown_persons.insert(p);
            }
            WarnOutcome::Held
            | WarnOutcome::Acknowledged
            | WarnOutcome::BadLink
            | WarnOutcome::Unsaved => {}
        }
    }

    fn add_session(&mut self, s: crate::activetime::Session<SessKey>) {
        let (_, pp, gs) = s.key;
        let ms = s.active.as_millis() as i64;
        let c = &mut self.cells.entry((gs, pp)).or_default().c;
        c.sessions += 1;
        c.active_ms += ms;
    }

    /// Closes open sessions and builds the report.
    pub fn finish(mut self, input: Input, reveal: Option<&HashMap<String, String>>) -> Report {
        for s in self.sessions.flush() {
            self.add_session(s);
        }
        if let Some((d, lo, hi)) = self.cur_day.take() {
            let e = self.day_span.entry(d).or_insert((lo, hi));
            e.0 = e.0.min(lo);
            e.1 = e.1.max(hi);
        }
        let k = self.opt.k.max(1);
        let security = (self.opt.audience != Audience::Strategy).then(|| {
            let x = Expanded::build(&self, false);
            self.security(&x, k, reveal)
        });
        let (days, partial_days) = self.days();
        let strategy = (self.opt.audience != Audience::Security).then(|| {
            let x = Expanded::build(&self, true);
            self.strategy(&x, k, days.len() as u64)
        });
        Report {
            schema: SCHEMA,
            generated_at: Timestamp::now(),
            period: Period {
                from: self.opt.from,
                to: self.opt.to,
                first_record: self.first,
                last_record: self.last,
                time_zone: self.opt.tz_name.clone(),
                days_observed: days.len() as u64,
                partial_days,
            },
            settings: Settings {
                k,
                idle_minutes: (self.opt.rules.idle.as_secs() / 60) as u32,
                credit_minutes: (self.opt.rules.credit.as_secs() / 60) as u32,
                regular_days: regular_days(days.len() as u64),
                audience: self.opt.audience.name().to_owned(),
                revealed: reveal.is_some(),
            },
            input: Input {
                in_period: self.in_period,
                ..input
            },
            security,
            strategy,
        }
    }

    /// The local days with records, and those the period covers only in
    /// part: the first and last day, when `--from`/`--to` cut them, or
    /// (without them) when the log starts later or ends earlier on that day
    /// than it usually does (median over the other days, with an hour's
    /// slack), so a log cut at 10:00 is not read as a quiet day.
    fn days(&self) -> (Vec<u32>, Vec<PartialDay>) {
        let mut days: Vec<u32> = self.day_span.keys().copied().collect();
        days.sort_unstable();
        let mut partial = Vec::new();
        let (Some(&first), Some(&last)) = (days.first(), days.last()) else {
            return (days, partial);
        };
        let tz = &self.opt.tz;
        let start_of = |day: u32| -> Option<i64> {
            let date = jiff::civil::Date::new(
                (day / 10_000) as i16,
                (day / 100 % 100) as i8,
                (day % 100) as i8,
            )
            .ok()?;
            Some(
                date.to_zoned_datetime(tz.clone())
                    .ok()?
                    .timestamp()
                    .as_millisecond(),
            )
        };
        let next_start = |day: u32| -> Option<i64> {
            let date = jiff::civil::Date::new(
                (day / 10_000) as i16,
                (day / 100 % 100) as i8,
                (day % 100) as i8,
            )
            .ok()?;
            Some(
                date.tomorrow()
                    .ok()?
                    .to_zoned_datetime(tz.clone())
                    .ok()?
                    .timestamp()
                    .as_millisecond(),
            )
        };
        // Time of day (ms since local midnight) of each day's first and last record.
        let offsets = |pick: fn(&(i64, i64)) -> i64| -> Vec<i64> {
            let mut v: Vec<i64> = days
                .iter()
                .filter(|&&d| d != first && d != last)
                .filter_map(|d| Some(pick(self.day_span.get(d)?) - start_of(*d)?))
                .collect();
            v.sort_unstable();
            v
        };
        const HOUR: i64 = 3_600_000;
        let median = |v: &[i64]| v.get(v.len() / 2).copied();
        let late_start = median(&offsets(|s| s.0));
        let early_end = median(&offsets(|s| s.1));
        let local = |ms: i64| -> String {
            Timestamp::from_millisecond(ms)
                .map(|t| {
                    t.to_zoned_datetime(tz.clone())
                        .strftime("%H:%M")
                        .to_string()
                })
                .unwrap_or_default()
        };
        let mut check = |day: u32, head: bool, tail: bool| {
            let (Some(&(lo, hi)), Some(start), Some(end)) =
                (self.day_span.get(&day), start_of(day), next_start(day))
            else {
                return;
            };
            let cut_head = head
                && match self.opt.from {
                    Some(f) => f.as_millisecond() > start,
                    None => late_start.is_some_and(|m| lo - start > m + HOUR),
                };
            let cut_tail = tail
                && match self.opt.to {
                    Some(t) => t.as_millisecond() < end,
                    None => early_end.is_some_and(|m| hi - start < m - HOUR),
                };
            if cut_head || cut_tail {
                partial.push(PartialDay {
                    day: day_name(day),
                    from: local(lo),
                    until: local(hi),
                });
            }
        };
        if first == last {
            check(first, true, true);
        } else {
            check(first, true, false);
            check(last, false, true);
        }
        (days, partial)
    }

    pub(super) fn gname(&self, g: u32) -> String {
        match g {
            ALLG => ALL.to_owned(),
            NOGROUP => NO_GROUP.to_owned(),
            _ => self.groups.name(g).to_owned(),
        }
    }
    pub(super) fn pname(&self, p: u32) -> String {
        match p {
            ANY => ALL.to_owned(),
            NONE => "(none)".to_owned(),
            _ => self.platforms.name(p).to_owned(),
        }
    }

    /// "*" first, then groups by name, then "(no group)".
    pub(super) fn group_order(&self, x: &Expanded) -> Vec<u32> {
        let mut gs: Vec<u32> = x.members.keys().copied().collect();
        gs.sort_by_key(|&g| self.gsort(g));
        gs
    }
    pub(super) fn gsort(&self, g: u32) -> (u8, &str) {
        match g {
            ALLG => (0, ""),
            NOGROUP => (2, ""),
            _ => (1, self.groups.name(g)),
        }
    }
    pub(super) fn psort(&self, p: u32) -> (u8, &str) {
        match p {
            ANY => (0, ""),
            NONE => (2, ""),
            _ => (1, self.platforms.name(p)),
        }
    }
}

/// The fewest active days (on any platform) that make a person a regular
/// user: a quarter of the days observed, at least 2.
pub(super) fn regular_days(days_observed: u64) -> u64 {
    days_observed.div_ceil(4).max(2)
}

/// A local day (yyyymmdd) as `YYYY-MM-DD`.
pub(super) fn day_name(d: u32) -> String {
    format!("{:04}-{:02}-{:02}", d / 10_000, d / 100 % 100, d % 100)
}

/// A reason's stable label, or the text of one this version does not know.
fn reason_name(r: &Lenient<Reason>) -> &str {
    match r {
        Lenient::Known(r) => r.as_str(),
        Lenient::Unknown(s) => s,
    }
}
