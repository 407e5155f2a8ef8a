//! Turns a stream of records into the bounded aggregates behind a report.
//!
//! Names (groups, platforms, reasons, persons) are interned to small integers
//! once; a record's group list is interned as a whole ("group set"), so each
//! record costs a handful of hash operations whatever the number of groups it
//! is in. Counters and distinct-person sets are keyed by (group set, platform,
//! ...) and expanded to single groups only in [`Aggregator::finish`].
//! Persons are interned to dense ids, and every distinct-person count is a
//! [`PersonSet`] per key: a small hash set of ids that turns into a bitset
//! once the bitset is the smaller of the two, so a record costs a few lookups
//! in small tables and a bit set, whatever the number of lines. Memory is
//! bounded by (distinct keys: group sets × platforms × days, plus reasons and
//! refusal rows) × min(persons in the key × 8 bytes, all persons / 8 bytes),
//! plus one name per person and the open sessions; never by the number of
//! lines.
//!
//! This module must not read files or format output, and must not let any
//! number that describes fewer than k persons out of [`Aggregator::finish`]
//! except in the per-person listing for security officers.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hash, Hasher};

use jiff::tz::TimeZone;
use jiff::Timestamp;

use super::model::*;
use super::read::Record;
use crate::activetime::{SessionRules, Sessionizer};
use crate::event::AuthMethod;
use crate::outcome::{Activity, Class, Lenient, Reason, Verdict};

/// A small, fast hasher for integer keys and short names (FxHash).
#[derive(Default, Clone, Copy)]
pub struct Fx(u64);
impl Fx {
    #[inline]
    fn add(&mut self, x: u64) {
        self.0 = (self.0.rotate_left(5) ^ x).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}
impl Hasher for Fx {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut b = [0u8; 8];
            b.copy_from_slice(c);
            self.add(u64::from_le_bytes(b));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut b = [0u8; 8];
            b[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(b));
        }
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }
    #[inline]
    fn write_u16(&mut self, i: u16) {
        self.add(u64::from(i));
    }
    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}
type FxBuild = BuildHasherDefault<Fx>;
type FxMap<K, V> = HashMap<K, V, FxBuild>;
type FxSet<K> = HashSet<K, FxBuild>;

/// Distinct persons (dense ids): a hash set while small, a bitset once the
/// bitset (one bit per person known so far) takes less memory.
#[derive(Clone, Debug)]
pub enum PersonSet {
    Sparse(FxSet<u32>),
    Dense(Vec<u64>),
}

impl Default for PersonSet {
    fn default() -> Self {
        PersonSet::Sparse(FxSet::default())
    }
}

impl PersonSet {
    /// Adds person `p`; `universe` is the number of persons known so far
    /// (every id is below it).
    #[inline]
    pub fn insert(&mut self, p: u32, universe: u32) {
        match self {
            PersonSet::Dense(words) => set_bit(words, p),
            PersonSet::Sparse(set) => {
                // A hash set costs about 8 bytes per person, a bitset
                // universe / 8 bytes.
                if set.insert(p) && set.len() >= 16 && set.len() * 64 >= universe as usize {
                    let mut words = vec![0u64; universe as usize / 64 + 1];
                    for &q in set.iter() {
                        set_bit(&mut words, q);
                    }
                    *self = PersonSet::Dense(words);
                }
            }
        }
    }

    /// Number of persons in the set.
    pub fn len(&self) -> u64 {
        match self {
            PersonSet::Sparse(set) => set.len() as u64,
            PersonSet::Dense(words) => words.iter().map(|w| u64::from(w.count_ones())).sum(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Empty without counting: a set only turns dense when it is large.
    fn is_sparse_empty(&self) -> bool {
        matches!(self, PersonSet::Sparse(set) if set.is_empty())
    }

    /// ORs the set into a bitset.
    fn add_to(&self, bits: &mut Vec<u64>) {
        match self {
            PersonSet::Sparse(set) => {
                for &p in set {
                    set_bit(bits, p);
                }
            }
            PersonSet::Dense(words) => {
                if bits.len() < words.len() {
                    bits.resize(words.len(), 0);
                }
                for (b, w) in bits.iter_mut().zip(words) {
                    *b |= w;
                }
            }
        }
    }
}

#[inline]
fn set_bit(words: &mut Vec<u64>, p: u32) {
    let w = (p >> 6) as usize;
    if w >= words.len() {
        words.resize(w + 1, 0);
    }
    words[w] |= 1u64 << (p & 63);
}

/// Distinct persons per key over the union of the sets listed for it.
/// Keys whose union is empty are left out.
fn distinct<K: Ord + Hash + Copy>(mut items: Vec<(K, &PersonSet)>) -> FxMap<K, u64> {
    items.sort_unstable_by_key(|&(k, _)| k);
    let mut out: FxMap<K, u64> = FxMap::default();
    let mut bits: Vec<u64> = Vec::new();
    for run in items.chunk_by(|a, b| a.0 == b.0) {
        let n = if let [(_, one)] = run {
            one.len()
        } else {
            bits.clear();
            for (_, set) in run {
                set.add_to(&mut bits);
            }
            bits.iter().map(|w| u64::from(w.count_ones())).sum()
        };
        if n > 0 {
            out.insert(run[0].0, n);
        }
    }
    out
}

/// Names ↔ dense ids.
#[derive(Default)]
struct Interner {
    map: FxMap<Box<str>, u32>,
    names: Vec<Box<str>>,
}
impl Interner {
    #[inline]
    fn id(&mut self, s: &str) -> u32 {
        if let Some(&i) = self.map.get(s) {
            return i;
        }
        let i = self.names.len() as u32;
        self.names.push(s.into());
        self.map.insert(s.into(), i);
        i
    }
    fn name(&self, i: u32) -> &str {
        &self.names[i as usize]
    }
}

/// Platform id standing for "any platform".
const ANY: u32 = u32::MAX;
/// Platform id for records on no catalog platform.
const NONE: u32 = u32::MAX - 1;
/// Group id standing for "all groups".
const ALLG: u32 = u32::MAX;

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Audience {
    /// Both the security and the strategy sections.
    All,
    /// Refusals, unauthenticated traffic, bytes sent, top refused persons.
    Security,
    /// Aggregate adoption, time, trends and maturity; never individuals.
    Strategy,
}

impl Audience {
    fn name(self) -> &'static str {
        match self {
            Audience::All => "all",
            Audience::Security => "security",
            Audience::Strategy => "strategy",
        }
    }
}

#[derive(Default, Clone, Copy)]
struct Counters {
    requests: u64,
    bytes_up: u64,
    bytes_down: u64,
    views: u64,
    writes: u64,
    foreground: u64,
    refused: u64,
    would_refuse: u64,
    sessions: u64,
    active_ms: i64,
}
impl Counters {
    fn add(&mut self, o: &Counters) {
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
enum Who {
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
type SessKey = (u32, u32, u32);

/// Per local hour: [start, end) in ms, day (yyyymmdd) and hour of week.
#[derive(Clone, Copy)]
struct HourSlot {
    start: i64,
    end: i64,
    day: u32,
    how: u8,
}

/// The local hour of `t`, from `cache` when `t` is in the cached hour.
#[inline]
fn hour_slot(cache: &mut Option<HourSlot>, tz: &TimeZone, t: Timestamp) -> HourSlot {
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

/// Per group set: requests and distinct persons.
#[derive(Default)]
struct GroupSetAgg {
    requests: u64,
    unauth: u64,
    members: PersonSet,
    unauth_persons: PersonSet,
}

/// Per (group set, platform or ANY).
#[derive(Default)]
struct CellAgg {
    c: Counters,
    /// Any traffic to the platform (backs bytes).
    seen: PersonSet,
    /// Not-refused primary traffic (backs the read/write mix).
    users: PersonSet,
    /// Foreground, primary, not refused (adoption, time, sessions).
    active: PersonSet,
    refused: PersonSet,
    would: PersonSet,
}

/// Per (group set, platform or ANY, day).
#[derive(Default)]
struct DayAgg {
    c: Counters,
    active: PersonSet,
    refused: PersonSet,
}

/// Aggregates records; call [`observe`](Self::observe) per record and
/// [`finish`](Self::finish) once.
pub struct Aggregator {
    opt: Options,
    groups: Interner,
    platforms: Interner,
    reasons: Interner,
    users: FxMap<Box<str>, u32>,
    ips: FxMap<Box<str>, u32>,
    person_names: Vec<Box<str>>,
    group_sets: FxMap<Box<[u32]>, u32>,
    group_set_members: Vec<Box<[u32]>>,
    scratch: Vec<u32>,
    /// Hour of the latest record, and of the latest closed session's start.
    slot: Option<HourSlot>,
    session_slot: Option<HourSlot>,

    in_period: u64,
    first: Option<Timestamp>,
    last: Option<Timestamp>,

    /// Indexed by group set id.
    gsets: Vec<GroupSetAgg>,
    /// (group set, platform)
    cells: FxMap<(u32, u32), CellAgg>,
    /// (group set, platform, day); only for refused or active traffic and sessions.
    daily: FxMap<(u32, u32, u32), DayAgg>,
    /// (refused?, group set, platform or NONE, activity) → requests, persons
    sec: FxMap<(bool, u32, u32, u8), (u64, PersonSet)>,
    /// reason → refused requests, persons
    reason_counts: FxMap<u32, (u64, PersonSet)>,
    /// person → refused requests; (person, platform)
    person_refused: FxMap<u32, u64>,
    person_refused_platforms: FxSet<(u32, u32)>,
    /// [would-refuse, refused] persons, over all groups and hosts
    sec_people: [PersonSet; 2],
    heat: [u64; 168],
    heat_persons: Vec<PersonSet>,
    sessions: Sessionizer<SessKey, FxBuild>,
    closed: Vec<crate::activetime::Session<SessKey>>,
    total_requests: u64,
}

const ACT_VIEW: u8 = 0;
const ACT_WRITE: u8 = 1;
const ACT_UNKNOWN: u8 = 2;

impl Aggregator {
    pub fn new(opt: Options) -> Self {
        let rules = opt.rules;
        Aggregator {
            opt,
            groups: Interner::default(),
            platforms: Interner::default(),
            reasons: Interner::default(),
            users: FxMap::default(),
            ips: FxMap::default(),
            person_names: Vec::new(),
            group_sets: FxMap::default(),
            group_set_members: Vec::new(),
            scratch: Vec::new(),
            slot: None,
            session_slot: None,
            in_period: 0,
            first: None,
            last: None,
            gsets: Vec::new(),
            cells: FxMap::default(),
            daily: FxMap::default(),
            sec: FxMap::default(),
            reason_counts: FxMap::default(),
            person_refused: FxMap::default(),
            person_refused_platforms: FxSet::default(),
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
        self.in_period += 1;
        self.first = Some(self.first.map_or(rec.time, |f| f.min(rec.time)));
        self.last = Some(self.last.map_or(rec.time, |l| l.max(rec.time)));
        let slot = hour_slot(&mut self.slot, &self.opt.tz, rec.time);
        let gs = self.group_set(rec);
        let p = self.person(rec);
        let universe = self.person_names.len() as u32;
        let unauth = rec.auth == Lenient::Known(AuthMethod::None);
        self.total_requests += 1;
        let g = &mut self.gsets[gs as usize];
        g.requests += 1;
        g.members.insert(p, universe);
        if unauth {
            g.unauth += 1;
            g.unauth_persons.insert(p, universe);
        }
        // A verdict this version cannot tell (unknown action or mode) counts
        // as traffic that passed; the unknown value is counted by the reader.
        let verdict = rec.verdict().unwrap_or(Verdict::Passed);
        let refused = verdict == Verdict::Refused;
        let would = verdict == Verdict::WouldRefuse;
        let act = match rec.activity {
            Some(Lenient::Known(Activity::View)) => ACT_VIEW,
            Some(Lenient::Known(Activity::Write)) => ACT_WRITE,
            _ => ACT_UNKNOWN,
        };
        let plat = rec.platform.as_deref().map(|name| self.platforms.id(name));
        if refused || would {
            let pl = plat.unwrap_or(NONE);
            let e = self.sec.entry((refused, gs, pl, act)).or_default();
            e.0 += 1;
            e.1.insert(p, universe);
            self.sec_people[usize::from(refused)].insert(p, universe);
            if refused {
                let r = self.reasons.id(reason_name(&rec.reason));
                let e = self.reason_counts.entry(r).or_default();
                e.0 += 1;
                e.1.insert(p, universe);
                *self.person_refused.entry(p).or_default() += 1;
                self.person_refused_platforms.insert((p, pl));
            }
        }
        let Some(pl) = plat else { return };
        let primary = rec.class == Some(Lenient::Known(Class::Primary));
        let active = !refused && primary && rec.foreground;
        for pp in [pl, ANY] {
            let cell = self.cells.entry((gs, pp)).or_default();
            let c = &mut cell.c;
            c.requests += 1;
            c.bytes_up += rec.bytes_up;
            c.bytes_down += rec.bytes_down;
            cell.seen.insert(p, universe);
            if refused {
                c.refused += 1;
                cell.refused.insert(p, universe);
                let d = self.daily.entry((gs, pp, slot.day)).or_default();
                d.c.refused += 1;
                d.refused.insert(p, universe);
                continue;
            }
            if would {
                c.would_refuse += 1;
                cell.would.insert(p, universe);
            }
            if !primary {
                continue;
            }
            match act {
                ACT_VIEW => c.views += 1,
                ACT_WRITE => c.writes += 1,
                _ => {}
            }
            cell.users.insert(p, universe);
            if active {
                c.foreground += 1;
                cell.active.insert(p, universe);
                let d = self.daily.entry((gs, pp, slot.day)).or_default();
                d.c.foreground += 1;
                d.active.insert(p, universe);
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
            self.heat_persons[slot.how as usize].insert(p, universe);
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

    fn gname(&self, g: u32) -> String {
        if g == ALLG {
            ALL.to_owned()
        } else {
            self.groups.name(g).to_owned()
        }
    }
    fn pname(&self, p: u32) -> String {
        match p {
            ANY => ALL.to_owned(),
            NONE => "(none)".to_owned(),
            _ => self.platforms.name(p).to_owned(),
        }
    }

    fn security(&self, x: &Expanded, k: u64, reveal: Option<&HashMap<String, String>>) -> Security {
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
                activity: ["view", "write", "unknown"][a as usize].to_owned(),
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
        secondary_suppress(
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
        let mut plat_count: FxMap<u32, u64> = FxMap::default();
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

    fn strategy(&self, x: &Expanded, k: u64) -> Strategy {
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
        secondary_suppress(
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
        secondary_suppress(
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
        secondary_suppress(
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
        let heat_persons: Vec<u64> = self.heat_persons.iter().map(PersonSet::len).collect();
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
        }
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

    /// "*" first, then groups by name.
    fn group_order(&self, x: &Expanded) -> Vec<u32> {
        let mut gs: Vec<u32> = x.members.keys().copied().collect();
        gs.sort_by_key(|&g| self.gsort(g));
        gs
    }
    fn gsort(&self, g: u32) -> (bool, &str) {
        if g == ALLG {
            (false, "")
        } else {
            (true, self.groups.name(g))
        }
    }
    fn psort(&self, p: u32) -> (u8, &str) {
        match p {
            ANY => (0, ""),
            NONE => (2, ""),
            _ => (1, self.platforms.name(p)),
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

/// A reason's stable label, or the text of one this version does not know.
fn reason_name(r: &Lenient<Reason>) -> &str {
    match r {
        Lenient::Known(r) => r.as_str(),
        Lenient::Unknown(s) => s,
    }
}

fn count<K: Hash + Eq>(m: &FxMap<K, u64>, key: K) -> u64 {
    m.get(&key).copied().unwrap_or(0)
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}
fn per(a: f64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a / b as f64
    }
}

/// When exactly one platform row of a group is suppressed while the group's
/// "*" row is shown, the suppressed value could be recovered by subtraction;
/// suppress the smallest other row too.
fn secondary_suppress<R>(
    rows: &mut [R],
    view: impl Fn(&R) -> (&String, &String, Option<u64>),
    suppress: impl Fn(&mut R),
) {
    let mut by_group: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, r) in rows.iter().enumerate() {
        let (g, p, _) = view(r);
        if p != ALL {
            by_group.entry(g.clone()).or_default().push(i);
        }
    }
    for idx in by_group.values() {
        let hidden = idx.iter().filter(|&&i| view(&rows[i]).2.is_none()).count();
        if hidden != 1 {
            continue;
        }
        let smallest = idx
            .iter()
            .filter_map(|&i| view(&rows[i]).2.filter(|&v| v > 0).map(|v| (v, i)))
            .min();
        if let Some((_, i)) = smallest {
            suppress(&mut rows[i]);
        }
    }
}

/// Aggregates expanded from group sets to single groups (and "*").
struct Expanded {
    /// group → distinct persons
    members: FxMap<u32, u64>,
    unauth_persons: FxMap<u32, u64>,
    group_requests: FxMap<u32, (u64, u64)>,
    cells: FxMap<(u32, u32), Counters>,
    cell_order: Vec<(u32, u32)>,
    who: FxMap<(Who, u32, u32), u64>,
    daily: FxMap<(u32, u32, u32), Counters>,
    daily_persons: FxMap<(Who, u32, u32, u32), u64>,
    sec: FxMap<(bool, u32, u32, u8), u64>,
    sec_persons: FxMap<(bool, u32, u32, u8), u64>,
    reason_persons: FxMap<u32, u64>,
}

impl Expanded {
    fn who(&self, w: Who, g: u32, p: u32) -> u64 {
        self.who.get(&(w, g, p)).copied().unwrap_or(0)
    }

    fn build(a: &Aggregator) -> Self {
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
        let mut group_requests: FxMap<u32, (u64, u64)> = FxMap::default();
        for (gs, agg) in a.gsets.iter().enumerate() {
            for g in expand(gs as u32) {
                let e = group_requests.entry(g).or_default();
                e.0 += agg.requests;
                e.1 += agg.unauth;
            }
        }
        let mut cells: FxMap<(u32, u32), Counters> = FxMap::default();
        for (&(gs, p), c) in &a.cells {
            for g in expand(gs) {
                cells.entry((g, p)).or_default().add(&c.c);
            }
        }
        let mut cell_order: Vec<(u32, u32)> = cells.keys().copied().collect();
        cell_order.sort_by_key(|&(g, p)| (a.gsort(g), a.psort(p)));
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
                    .filter(|(_, set)| !set.is_sparse_empty())
                    .flat_map(move |(w, set)| expand(gs).map(move |g| ((w, g, p), set)))
                })
                .collect(),
        );
        let mut daily: FxMap<(u32, u32, u32), Counters> = FxMap::default();
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
                        .filter(|(_, set)| !set.is_sparse_empty())
                        .flat_map(move |(w, set)| expand(gs).map(move |g| ((w, g, p, d), set)))
                })
                .collect(),
        );
        // Security rows: per group and platform, plus "*" group and "*"
        // platform totals.
        let mut sec: FxMap<(bool, u32, u32, u8), u64> = FxMap::default();
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
        }
    }
}
