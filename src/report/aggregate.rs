//! Turns a stream of records into the bounded per-key aggregates behind a
//! report: the ingest-side half of the report (the sections are built from
//! them in `security` and `strategy`, after `expand`).
//!
//! Names (groups, platforms, reasons, persons) are interned to small integers
//! once; a record's group list is interned as a whole ("group set"), so each
//! record costs a handful of hash operations whatever the number of groups it
//! is in. Counters and distinct-person sets are keyed by (group set, platform,
//! ...) and expanded to single groups only in [`Aggregator::finish`].
//! Persons are interned to dense ids, and every distinct-person count is a
//! [`PersonSet`] per key: a compressed bitmap (roaring), so a record costs a
//! few lookups in small tables and a bit set, whatever the number of lines.
//! Memory is bounded by (distinct keys: group sets × platforms × days, plus
//! reasons and refusal rows) × min(persons in the key × 2 bytes, all persons
//! / 8 bytes), plus one name per person and the open sessions; never by the
//! number of lines.
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
    pub(super) views: u64,
    pub(super) writes: u64,
    pub(super) foreground: u64,
    pub(super) refused: u64,
    pub(super) would_refuse: u64,
    pub(super) sessions: u64,
    pub(super) active_ms: i64,
}
impl Counters {
    pub(super) fn add(&mut self, o: &Counters) {
        self.requests += o.requests;
        self.bytes_up += o.bytes_up;
        self.bytes_down += o.bytes_down;
        self.views += o.views;
        self.writes += o.writes;
        self.foreground += o.foreground;
        self.refused += o.refused;
        self.would_refuse += o.would_refuse;
        self.sessions += o.sessions;
        self.active_ms += o.active_ms;
    }
}

/// Which distinct-person set a tuple belongs to.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub(super) enum Who {
    /// Any traffic to the platform (backs bytes).
    Seen,
    /// Not-refused primary traffic (backs the read/write mix).
    Users,
    /// Foreground, primary, not refused (adoption, time, sessions).
    Active,
    Refused,
    WouldRefuse,
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

/// Per (group set, platform or ANY).
#[derive(Default)]
pub(super) struct CellAgg {
    pub(super) c: Counters,
    /// Any traffic to the platform (backs bytes).
    pub(super) seen: PersonSet,
    /// Not-refused primary traffic (backs the read/write mix).
    pub(super) users: PersonSet,
    /// Foreground, primary, not refused (adoption, time, sessions).
    pub(super) active: PersonSet,
    pub(super) refused: PersonSet,
    pub(super) would: PersonSet,
}

/// Per (group set, platform): what enforced warn rules did.
#[derive(Default)]
pub(super) struct WarnAgg {
    /// Warning pages shown, Continues taken, tunnels passed unshown.
    pub(super) shown: u64,
    pub(super) continued: u64,
    pub(super) unshown: u64,
    /// Persons shown a warning page or who continued: the base of the
    /// continue rate.
    pub(super) warned: PersonSet,
    pub(super) continuers: PersonSet,
    pub(super) unshown_persons: PersonSet,
}

/// Per (group set, platform or ANY, day).
#[derive(Default)]
pub(super) struct DayAgg {
    pub(super) c: Counters,
    pub(super) active: PersonSet,
    pub(super) refused: PersonSet,
}

/// Aggregates records; call [`observe`](Self::observe) per record and
/// [`finish`](Self::finish) once.
pub struct Aggregator {
    pub(super) opt: Options,
    pub(super) groups: Interner,
    pub(super) platforms: Interner,
    pub(super) reasons: Interner,
    pub(super) users: FxHashMap<Box<str>, u32>,
    pub(super) ips: FxHashMap<Box<str>, u32>,
    pub(super) person_names: Vec<Box<str>>,
    pub(super) group_sets: FxHashMap<Box<[u32]>, u32>,
    pub(super) group_set_members: Vec<Box<[u32]>>,
    pub(super) scratch: Vec<u32>,
    /// Hour of the latest record, and of the latest closed session's start.
    pub(super) slot: Option<HourSlot>,
    pub(super) session_slot: Option<HourSlot>,

    pub(super) in_period: u64,
    pub(super) first: Option<Timestamp>,
    pub(super) last: Option<Timestamp>,

    /// Indexed by group set id.
    pub(super) gsets: Vec<GroupSetAgg>,
    /// (group set, platform)
    pub(super) cells: FxHashMap<(u32, u32), CellAgg>,
    /// (group set, platform or NONE): warnings shown, continues, unshown.
    pub(super) warn: FxHashMap<(u32, u32), WarnAgg>,
    /// (group set, platform, day); only for refused or active traffic and sessions.
    pub(super) daily: FxHashMap<(u32, u32, u32), DayAgg>,
    /// (refused?, group set, platform or NONE, activity) → requests, persons
    pub(super) sec: FxHashMap<(bool, u32, u32, u8), (u64, PersonSet)>,
    /// reason → refused requests, persons
    pub(super) reason_counts: FxHashMap<u32, (u64, PersonSet)>,
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

const ACT_VIEW: u8 = 0;
const ACT_WRITE: u8 = 1;
const ACT_UNKNOWN: u8 = 2;

/// The label of an activity code in the security rows.
pub(super) fn activity_label(code: u8) -> &'static str {
    match code {
        ACT_VIEW => Activity::Read.as_str(),
        ACT_WRITE => Activity::Write.as_str(),
        _ => "unknown",
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
            users: FxHashMap::default(),
            ips: FxHashMap::default(),
            person_names: Vec::new(),
            group_sets: FxHashMap::default(),
            group_set_members: Vec::new(),
            scratch: Vec::new(),
            slot: None,
            session_slot: None,
            in_period: 0,
            first: None,
            last: None,
            gsets: Vec::new(),
            cells: FxHashMap::default(),
            warn: FxHashMap::default(),
            daily: FxHashMap::default(),
            sec: FxHashMap::default(),
            reason_counts: FxHashMap::default(),
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
        let act = match rec.activity {
            Some(Lenient::Known(a)) if a.is_write() => ACT_WRITE,
            Some(Lenient::Known(Activity::Read | Activity::Login)) => ACT_VIEW,
            _ => ACT_UNKNOWN,
        };
        let plat = rec.platform.as_deref().map(|name| self.platforms.id(name));
        if let Some(Lenient::Known(w)) = &rec.warn {
            self.observe_warning(*w, gs, plat.unwrap_or(NONE), p);
        }
        if refused || would {
            let pl = plat.unwrap_or(NONE);
            let e = self.sec.entry((refused, gs, pl, act)).or_default();
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
        let primary = rec.class == Some(Lenient::Known(Class::Primary));
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
                let d = self.daily.entry((gs, pp, slot.day)).or_default();
                d.c.refused += 1;
                if own {
                    d.refused.insert(p);
                }
                continue;
            }
            if warned {
                continue;
            }
            if would {
                c.would_refuse += 1;
                if own {
                    cell.would.insert(p);
                }
            }
            if !primary {
                continue;
            }
            match act {
                ACT_VIEW => c.views += 1,
                ACT_WRITE => c.writes += 1,
                _ => {}
            }
            if own {
                cell.users.insert(p);
            }
            if active {
                c.foreground += 1;
                if own {
                    cell.active.insert(p);
                }
                let d = self.daily.entry((gs, pp, slot.day)).or_default();
                d.c.foreground += 1;
                if own {
                    d.active.insert(p);
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
        }
    }

    fn observe_warning(&mut self, w: WarnOutcome, gs: u32, pl: u32, p: u32) {
        let agg = self.warn.entry((gs, pl)).or_default();
        match w {
            WarnOutcome::Shown => {
                agg.shown += 1;
                agg.warned.insert(p);
            }
            WarnOutcome::Continued => {
                agg.continued += 1;
                agg.warned.insert(p);
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
        let day = hour_slot(&mut self.session_slot, &self.opt.tz, s.first).day;
        let d = &mut self.daily.entry((gs, pp, day)).or_default().c;
        d.sessions += 1;
        d.active_ms += ms;
    }

    /// Closes open sessions and builds the report.
    pub fn finish(mut self, input: Input, reveal: Option<&HashMap<String, String>>) -> Report {
        for s in self.sessions.flush() {
            self.add_session(s);
        }
        let k = self.opt.k.max(1);
        let x = Expanded::build(&self);
        let security =
            (self.opt.audience != Audience::Strategy).then(|| self.security(&x, k, reveal));
        let strategy = (self.opt.audience != Audience::Security).then(|| self.strategy(&x, k));
        Report {
            schema: SCHEMA,
            generated_at: Timestamp::now(),
            period: Period {
                from: self.opt.from,
                to: self.opt.to,
                first_record: self.first,
                last_record: self.last,
                time_zone: self.opt.tz_name.clone(),
            },
            settings: Settings {
                k,
                idle_minutes: (self.opt.rules.idle.as_secs() / 60) as u32,
                credit_minutes: (self.opt.rules.credit.as_secs() / 60) as u32,
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

    pub(super) fn gname(&self, g: u32) -> String {
        if g == ALLG {
            ALL.to_owned()
        } else {
            self.groups.name(g).to_owned()
        }
    }
    pub(super) fn pname(&self, p: u32) -> String {
        match p {
            ANY => ALL.to_owned(),
            NONE => "(none)".to_owned(),
            _ => self.platforms.name(p).to_owned(),
        }
    }

    /// "*" first, then groups by name.
    pub(super) fn group_order(&self, x: &Expanded) -> Vec<u32> {
        let mut gs: Vec<u32> = x.members.keys().copied().collect();
        gs.sort_by_key(|&g| self.gsort(g));
        gs
    }
    pub(super) fn gsort(&self, g: u32) -> (bool, &str) {
        if g == ALLG {
            (false, "")
        } else {
            (true, self.groups.name(g))
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

/// A reason's stable label, or the text of one this version does not know.
fn reason_name(r: &Lenient<Reason>) -> &str {
    match r {
        Lenient::Known(r) => r.as_str(),
        Lenient::Unknown(s) => s,
    }
}
