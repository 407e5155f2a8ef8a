//! The budget ledger: what each person spent today under each budgeted
//! rule, in memory.
//!
//! One entry per (person, rule) holds the local day it belongs to, the
//! minutes of that day that count as active (a bitmap, one bit a minute),
//! and the body bytes counted. Time comes from the shared sessionizer
//! ([`crate::activetime::Sessionizer::observe_span`]): each hit marks the
//! minutes the stretch it added touches, so the count is the report's
//! active-time estimate at minute resolution. Minutes are marks, not
//! sums: marking one twice counts once, which is what lets replicas share
//! one budget in Redis by OR-ing their bitmaps (`super::store`).
//!
//! The ledger is sharded (16 mutexes) so that concurrent requests rarely
//! wait on each other, and bounded: a shard that is full drops entries of
//! days that are over, and otherwise does not track a new person (the
//! caller fails open and counts it). It knows nothing about HTTP, tokio or
//! files; `now` is passed in.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, MutexGuard};

use jiff::Timestamp;

use crate::activetime::{Session, SessionRules, Sessionizer};
use crate::policy::budget::{Budget, Day, Spent};
use crate::warn::Person;

/// Words of a [`MinuteSet`]: 1536 bits, enough for a 25-hour day.
const WORDS: usize = 24;

/// Shards of the ledger (a power of two).
const SHARDS: usize = 16;

/// Minutes of one local day, one bit each.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct MinuteSet(pub [u64; WORDS]);

impl Default for MinuteSet {
    fn default() -> Self {
        MinuteSet([0; WORDS])
    }
}

impl std::fmt::Debug for MinuteSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.runs()).finish()
    }
}

impl MinuteSet {
    /// The most minutes a set holds.
    pub const CAPACITY: u32 = (WORDS * 64) as u32;

    /// Marks minutes `from..=to` (clamped to the set).
    /// Marks minutes `from..=to`; true when one of them was not marked.
    pub fn mark(&mut self, from: u32, to: u32) -> bool {
        let to = to.min(Self::CAPACITY - 1);
        let mut new = false;
        for m in from..=to {
            let (w, bit) = ((m / 64) as usize, 1u64 << (m % 64));
            new |= self.0[w] & bit == 0;
            self.0[w] |= bit;
        }
        new
    }

    pub fn contains(&self, m: u32) -> bool {
        m < Self::CAPACITY && self.0[(m / 64) as usize] & (1 << (m % 64)) != 0
    }

    /// Marked minutes before minute `m`.
    pub fn count_below(&self, m: u32) -> u32 {
        let m = m.min(Self::CAPACITY);
        let (full, rest) = ((m / 64) as usize, m % 64);
        // Most words of a day are empty: a test costs less than a count
        // (builds for baseline x86-64 count bits without POPCNT).
        let mut n: u32 = self.0[..full]
            .iter()
            .filter(|w| **w != 0)
            .map(|w| w.count_ones())
            .sum();
        if rest > 0 {
            n += (self.0[full] & ((1u64 << rest) - 1)).count_ones();
        }
        n
    }

    /// Minutes before minute `m` in this set or `other`.
    pub fn count_below_with(&self, other: &MinuteSet, m: u32) -> u32 {
        let m = m.min(Self::CAPACITY);
        let (full, rest) = ((m / 64) as usize, m % 64);
        let mut n: u32 = self.0[..full]
            .iter()
            .zip(&other.0[..full])
            .map(|(a, b)| a | b)
            .filter(|w| *w != 0)
            .map(|w| w.count_ones())
            .sum();
        if rest > 0 {
            n += ((self.0[full] | other.0[full]) & ((1u64 << rest) - 1)).count_ones();
        }
        n
    }

    pub fn count(&self) -> u32 {
        self.0.iter().map(|w| w.count_ones()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|w| *w == 0)
    }

    /// Both sets' minutes.
    pub fn union(&self, other: &MinuteSet) -> MinuteSet {
        let mut out = *self;
        for (a, b) in out.0.iter_mut().zip(other.0.iter()) {
            *a |= b;
        }
        out
    }

    /// Minutes in both sets.
    pub fn intersect(&self, other: &MinuteSet) -> MinuteSet {
        let mut out = *self;
        for (a, b) in out.0.iter_mut().zip(other.0.iter()) {
            *a &= b;
        }
        out
    }

    /// Minutes in `self` that are not in `other`.
    pub fn minus(&self, other: &MinuteSet) -> MinuteSet {
        let mut out = *self;
        for (a, b) in out.0.iter_mut().zip(other.0.iter()) {
            *a &= !b;
        }
        out
    }

    /// Marked minutes as runs `(first, length)`, in order.
    pub fn runs(&self) -> Vec<(u32, u32)> {
        let mut out: Vec<(u32, u32)> = Vec::new();
        for m in self.iter() {
            match out.last_mut() {
                Some((first, len)) if *first + *len == m => *len += 1,
                _ => out.push((m, 1)),
            }
        }
        out
    }

    /// Marked minutes, in order.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.0.iter().enumerate().flat_map(|(i, w)| {
            let base = i as u32 * 64;
            (0..64u32)
                .filter(move |b| w & (1 << b) != 0)
                .map(move |b| base + b)
        })
    }
}

/// Whose spending an entry counts: a person under one rule.
#[derive(Debug, Clone)]
pub struct Key {
    pub person: Person,
    /// The rule id (budgets are the rule's, across its platforms).
    pub rule: Arc<str>,
    /// Hash of the two with a per-process random key (see [`key_hasher`]),
    /// worked out once: the shard, the entry map and the sessions all
    /// index by it.
    hash: u64,
}

impl Key {
    pub fn new(person: Person, rule: Arc<str>) -> Key {
        use std::hash::Hasher;
        let mut h = key_hasher().build_hasher();
        match &person {
            Person::User(u) => {
                h.write_usize(u.len());
                h.write(u.as_bytes());
            }
            Person::Address(std::net::IpAddr::V4(a)) => {
                h.write_u64(u64::from(a.to_bits()) | 1 << 32)
            }
            Person::Address(std::net::IpAddr::V6(a)) => h.write_u128(a.to_bits()),
        }
        h.write(rule.as_bytes());
        let hash = h.finish();
        Key { person, rule, hash }
    }
}

/// The hasher of [`Key`]s: foldhash (quality), keyed once per process from
/// std's `RandomState` (OS randomness). Keyed is what matters for names an
/// attacker picks (a user name in `Proxy-Authorization` or an identity
/// header): without the key, collisions cannot be aimed at one shard or
/// bucket. SipHash costs several times more per request here.
fn key_hasher() -> &'static foldhash::quality::SeedableRandomState {
    static KEYS: std::sync::OnceLock<foldhash::quality::SeedableRandomState> =
        std::sync::OnceLock::new();
    KEYS.get_or_init(|| {
        let os = std::collections::hash_map::RandomState::new();
        let shared: &'static foldhash::SharedSeed =
            Box::leak(Box::new(foldhash::SharedSeed::from_u64(os.hash_one(1u8))));
        foldhash::quality::SeedableRandomState::with_seed(os.hash_one(2u8), shared)
    })
}

impl From<&Key> for Key {
    fn from(k: &Key) -> Key {
        k.clone()
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        self.hash == other.hash && self.person == other.person && self.rule == other.rule
    }
}

impl Eq for Key {}

impl std::hash::Hash for Key {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

/// Hashes a [`Key`] by the hash it carries, and a [`Tag`] by its first
/// bytes (both keyed and mixed already).
#[derive(Default)]
pub struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used by `Key`; anything else still hashes.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type ByKey = std::hash::BuildHasherDefault<KeyHasher>;

/// One person's spending under one rule on one day.
#[derive(Debug, Clone)]
pub struct Entry {
    /// A keyed hash of (person, rule): the name under which the entry is
    /// saved to the snapshot file and to Redis (never the person).
    pub tag: [u8; 16],
    pub day: Day,
    /// Minutes counted by this process.
    pub minutes: MinuteSet,
    /// Body bytes counted by this process today.
    pub bytes: u64,
    /// The exhaustion of this entry's day was counted already.
    pub noted: bool,
    /// Last time the entry was charged or looked up.
    pub touched: Timestamp,
    /// What is shared with other replicas through Redis; `None` until the
    /// entry is first synced (kept apart so that an entry stays small).
    pub shared: Option<Box<Shared>>,
    /// (minute, marked minutes of `minutes` before it), or `NO_COUNT`:
    /// every request in the same minute asks for the same count, and a
    /// mark at that minute or later does not change it. Cleared by
    /// [`Entry::mark`] when it marks an earlier minute.
    counted: (u32, u32),
    /// Unique in its shard of the ledger (0 until it is in one): what a
    /// [`Place`] checks.
    serial: u64,
}

/// [`Entry::counted`] when nothing is counted.
const NO_COUNT: (u32, u32) = (u32::MAX, 0);

/// An entry's part in Redis (see `super::store`).
#[derive(Debug, Clone, Default)]
pub struct Shared {
    /// Minutes every replica counted (read back from Redis).
    pub remote: MinuteSet,
    /// Of `Entry::minutes`, those already set in Redis.
    pub pushed: MinuteSet,
    /// Of `Entry::bytes`, those already added to Redis.
    pub pushed_bytes: u64,
    /// The day's total in Redis when last read (every replica's bytes).
    pub remote_bytes: u64,
}

impl Entry {
    fn new(tag: [u8; 16], day: Day, now: Timestamp) -> Entry {
        Entry {
            tag,
            day,
            minutes: MinuteSet::default(),
            bytes: 0,
            noted: false,
            touched: now,
            shared: None,
            counted: NO_COUNT,
            serial: 0,
        }
    }

    /// Marks minutes `from..=to` of `minutes`; true when one was new.
    pub fn mark(&mut self, from: u32, to: u32) -> bool {
        let new = self.minutes.mark(from, to);
        if new && from < self.counted.0 {
            self.counted = NO_COUNT;
        }
        new
    }

    /// [`Entry::spent`], counting the day's minutes only once a minute
    /// while no other replica shares them (the ledger's own lookups).
    fn spent_counted(&mut self, now: Timestamp) -> Spent {
        if self.shared.is_some() {
            return self.spent(now);
        }
        let minute = if now >= self.day.end {
            MinuteSet::CAPACITY
        } else {
            self.day.minute_of(now)
        };
        if self.counted.0 != minute {
            self.counted = (minute, self.minutes.count_below(minute));
        }
        Spent {
            minutes: self.counted.1,
            bytes: self.bytes,
        }
    }

    /// The Redis part, made on first use.
    pub fn shared_mut(&mut self) -> &mut Shared {
        self.shared.get_or_insert_with(Default::default)
    }

    /// Every minute known to be counted: here, and by other replicas.
    pub fn all_minutes(&self) -> MinuteSet {
        match &self.shared {
            Some(s) => self.minutes.union(&s.remote),
            None => self.minutes,
        }
    }

    /// Complete minutes and bytes spent at `now` (the minute in progress
    /// is not counted until it is over), every replica's included.
    pub fn spent(&self, now: Timestamp) -> Spent {
        let minute = if now >= self.day.end {
            MinuteSet::CAPACITY
        } else {
            self.day.minute_of(now)
        };
        match &self.shared {
            None => Spent {
                minutes: self.minutes.count_below(minute),
                bytes: self.bytes,
            },
            Some(s) => {
                let unpushed = self.bytes.saturating_sub(s.pushed_bytes);
                Spent {
                    minutes: self.minutes.count_below_with(&s.remote, minute),
                    bytes: self.bytes.max(s.remote_bytes.saturating_add(unpushed)),
                }
            }
        }
    }
}

/// An entry saved in the snapshot file, waiting for its person to come
/// back (it is found by its tag).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    pub day: jiff::civil::Date,
    pub minutes: MinuteSet,
    pub bytes: u64,
}

struct Shard {
    /// (key, entry) by the key's hash. A charge keeps where its entry lies
    /// ([`Place`]) and goes straight back to it, without comparing keys.
    entries: hashbrown::HashTable<(Key, Entry)>,
    /// Open sessions by the entry's tag (a keyed MAC of the person and the
    /// rule: one per key, hashed by its own bits; see [`Tag`]).
    sessions: Sessionizer<Tag, ByKey>,
    scratch: Vec<Session<Tag>>,
    /// The serial of the last entry made in this shard.
    serial: u64,
}

/// An entry's tag as the sessions' key: a keyed MAC already, so its first
/// eight bytes are its hash (nobody without the key can aim collisions),
/// and equal tags are equal keys (a 128-bit MAC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Tag([u8; 16]);

impl std::hash::Hash for Tag {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let mut first = [0u8; 8];
        first.copy_from_slice(&self.0[..8]);
        state.write_u64(u64::from_le_bytes(first));
    }
}

/// Where a key's entry was found last: an exchange keeps it and charges go
/// straight back to the entry. Checked by the entry's serial (unique in its
/// shard); an entry that moved (the table grew) or went (its day is over)
/// is looked up by its key again.
#[derive(Debug, Clone, Copy, Default)]
pub struct Place {
    bucket: usize,
    /// 0: not known.
    serial: u64,
}

/// Turns (person, rule) into the tag entries are saved under.
pub type Tagger = Box<dyn Fn(&Person, &str) -> [u8; 16] + Send + Sync>;

/// Every person's spending under every budgeted rule, today.
pub struct Ledger {
    shards: Box<[Mutex<Shard>]>,
    per_shard: usize,
    tagger: Tagger,
    /// Entries read from the snapshot file whose person has not come back
    /// yet, by tag.
    restored: Mutex<HashMap<[u8; 16], Restored>>,
}

/// What the ledger says about a person's budget at an instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standing {
    pub spent: Spent,
    pub day: Day,
    /// The exhaustion of this day was counted before.
    pub noted: bool,
}

impl Ledger {
    /// A ledger holding at most `capacity` entries (at least one per shard).
    pub fn new(capacity: usize, tagger: Tagger) -> Ledger {
        let shards = (0..SHARDS)
            .map(|_| {
                Mutex::new(Shard {
                    entries: hashbrown::HashTable::new(),
                    sessions: Sessionizer::with_hasher(SessionRules::default()),
                    scratch: Vec::new(),
                    serial: 0,
                })
            })
            .collect();
        Ledger {
            shards,
            per_shard: capacity.div_ceil(SHARDS).max(1),
            tagger,
            restored: Mutex::new(HashMap::new()),
        }
    }

    fn shard(&self, key: &Key) -> MutexGuard<'_, Shard> {
        // Middle bits: the maps inside use the low ones (buckets) and the
        // top seven (tags).
        let i = (key.hash >> 32) as usize & (SHARDS - 1);
        // A panic while holding a shard leaves consistent maps: keep going.
        self.shards[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Where `key` stands at `now` under `budget`; `None` when the ledger
    /// is full and cannot track the person.
    pub fn standing(&self, key: &Key, budget: &Budget, now: Timestamp) -> Option<Standing> {
        self.standing_at(key, &mut Place::default(), budget, now)
    }

    /// [`Ledger::standing`], going straight to `place` when the entry is
    /// still there, and saying in `place` where it is.
    pub fn standing_at(
        &self,
        key: &Key,
        place: &mut Place,
        budget: &Budget,
        now: Timestamp,
    ) -> Option<Standing> {
        let mut guard = self.shard(key);
        let shard = &mut *guard;
        let e = self.entry(
            &mut shard.entries,
            &mut shard.serial,
            key,
            place,
            budget,
            now,
        )?;
        e.touched = now;
        Some(Standing {
            spent: e.spent_counted(now),
            day: e.day,
            noted: e.noted,
        })
    }

    /// Charges `key` at `at`: a time hit when `hit`, and `bytes` of
    /// volume. Returns where it stands afterwards when that changed (a new
    /// minute or bytes); `None` when it did not, or the ledger is full.
    pub fn charge(
        &self,
        key: &Key,
        budget: &Budget,
        at: Timestamp,
        hit: bool,
        bytes: u64,
    ) -> Option<Standing> {
        self.charge_at(key, &mut Place::default(), budget, at, hit, bytes)
    }

    /// [`Ledger::charge`], going straight to `place` when the entry is
    /// still there, and saying in `place` where it is.
    pub fn charge_at(
        &self,
        key: &Key,
        place: &mut Place,
        budget: &Budget,
        at: Timestamp,
        hit: bool,
        bytes: u64,
    ) -> Option<Standing> {
        let mut guard = self.shard(key);
        let shard = &mut *guard;
        let e = self.entry(
            &mut shard.entries,
            &mut shard.serial,
            key,
            place,
            budget,
            at,
        )?;
        let span = if hit {
            shard
                .sessions
                .observe_span(&Tag(e.tag), at, &mut shard.scratch)
        } else {
            None
        };
        // Closed sessions are already marked: only the open ones matter.
        shard.scratch.clear();
        let mut changed = bytes > 0;
        if let Some((from, to)) = span {
            if to >= e.day.start && from < e.day.end {
                let first = if from < e.day.start {
                    0
                } else {
                    e.day.minute_of(from)
                };
                changed |= e.mark(first, e.day.minute_of(to));
            }
        }
        e.bytes = e.bytes.saturating_add(bytes);
        e.touched = at;
        if !changed {
            // The same minute again, no bytes: nothing new to stand on (a
            // minute that completes meanwhile is the open exchange's
            // deadline's business, and the next admission's).
            return None;
        }
        Some(Standing {
            spent: e.spent_counted(at),
            day: e.day,
            noted: e.noted,
        })
    }

    /// Marks `key`'s exhaustion on `day` as counted; true the first time.
    pub fn note_exhausted(&self, key: &Key, day: &Day) -> bool {
        let mut shard = self.shard(key);
        match shard.entries.find_mut(key.hash, |(k, _)| k == key) {
            Some((_, e)) if e.day == *day && !e.noted => {
                e.noted = true;
                true
            }
            _ => false,
        }
    }

    /// The entry of `key` for the day containing `now`: the one at `place`
    /// if it is still there, else found by the key, made (from the
    /// snapshot, if it has one), or started afresh on a new day; `place`
    /// says where it is afterwards.
    fn entry<'s>(
        &self,
        entries: &'s mut hashbrown::HashTable<(Key, Entry)>,
        serial: &mut u64,
        key: &Key,
        place: &mut Place,
        budget: &Budget,
        now: Timestamp,
    ) -> Option<&'s mut Entry> {
        let there = place.serial != 0
            && entries
                .get_bucket(place.bucket)
                .is_some_and(|(_, e)| e.serial == place.serial);
        let e = if there {
            &mut entries.get_bucket_mut(place.bucket)?.1
        } else {
            self.find_or_make(entries, serial, key, place, budget, now)?
        };
        if now < e.day.start || now >= e.day.end {
            // Another day: the budget renews.
            let (tag, serial) = (e.tag, e.serial);
            *e = Entry::new(tag, budget.day(now), now);
            e.serial = serial;
        }
        Some(e)
    }

    fn find_or_make<'s>(
        &self,
        entries: &'s mut hashbrown::HashTable<(Key, Entry)>,
        serial: &mut u64,
        key: &Key,
        place: &mut Place,
        budget: &Budget,
        now: Timestamp,
    ) -> Option<&'s mut Entry> {
        let same = |(k, _): &(Key, Entry)| k == key;
        if entries.len() >= self.per_shard && entries.find(key.hash, same).is_none() {
            // Full: make room from days that are over, or track nobody new.
            entries.retain(|(_, e)| e.day.end > now);
            if entries.len() >= self.per_shard {
                return None;
            }
        }
        let found = match entries.entry(key.hash, same, |(k, _)| k.hash) {
            hashbrown::hash_table::Entry::Occupied(o) => o,
            hashbrown::hash_table::Entry::Vacant(v) => {
                let tag = (self.tagger)(&key.person, &key.rule);
                let day = budget.day(now);
                let mut e = Entry::new(tag, day, now);
                *serial += 1;
                e.serial = *serial;
                let restored = self.lock_restored().remove(&tag);
                if let Some(r) = restored.filter(|r| r.day == day.date) {
                    e.minutes = r.minutes;
                    e.bytes = r.bytes;
                    // Counted by an earlier run: if Redis is used, that run
                    // wrote them there already (or Redis has only its share,
                    // and the larger count wins; see `Entry::spent`).
                    e.shared = Some(Box::new(Shared {
                        pushed: r.minutes,
                        pushed_bytes: r.bytes,
                        ..Shared::default()
                    }));
                }
                v.insert((key.clone(), e))
            }
        };
        place.bucket = found.bucket_index();
        let (_, e) = found.into_mut();
        place.serial = e.serial;
        Some(e)
    }

    fn lock_restored(&self) -> MutexGuard<'_, HashMap<[u8; 16], Restored>> {
        self.restored.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds entries read from the snapshot file (their persons are known
    /// again when they come back).
    pub fn restore(&self, entries: impl IntoIterator<Item = ([u8; 16], Restored)>) {
        let mut r = self.lock_restored();
        for (tag, e) in entries {
            if r.len() >= self.per_shard * SHARDS {
                break;
            }
            r.insert(tag, e);
        }
    }

    /// Drops entries and restored entries of days over at `now`, and
    /// sessions idle for long; keeps memory bounded when traffic stops.
    pub fn prune(&self, now: Timestamp) {
        for s in self.shards.iter() {
            let mut guard = s.lock().unwrap_or_else(|e| e.into_inner());
            let shard = &mut *guard;
            shard.entries.retain(|(_, e)| e.day.end > now);
            shard.sessions.expire(now, &mut shard.scratch);
            shard.scratch.clear();
        }
        let today = |d: &jiff::civil::Date| {
            // A restored entry older than yesterday (in any zone) is over.
            let t = now.to_zoned_datetime(jiff::tz::TimeZone::UTC).date();
            t.yesterday().is_ok_and(|y| *d >= y)
        };
        self.lock_restored().retain(|_, r| today(&r.day));
    }

    /// Entries tracked now (restored ones waiting not included).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).entries.len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Calls `f` on every entry (and the restored ones, as `None` keys),
    /// one shard at a time.
    pub fn for_each(&self, mut f: impl FnMut(Option<&Key>, &mut Entry)) {
        for s in self.shards.iter() {
            let mut shard = s.lock().unwrap_or_else(|e| e.into_inner());
            for (k, e) in shard.entries.iter_mut() {
                f(Some(&*k), e);
            }
        }
    }

    /// The restored entries still waiting for their person.
    pub fn waiting(&self) -> Vec<([u8; 16], Restored)> {
        self.lock_restored()
            .iter()
            .map(|(t, r)| (*t, r.clone()))
            .collect()
    }

    /// What `person` has spent of `rule`'s budget today, without tracking
    /// them if they are not yet (the transparency page asks this): what
    /// the ledger holds, else what the snapshot file brought back, else
    /// nothing.
    pub fn peek(&self, person: &Person, rule: &Arc<str>, budget: &Budget, now: Timestamp) -> Spent {
        let key = Key::new(person.clone(), rule.clone());
        let day = budget.day(now);
        let held = self.with_entry(&key, |e| (e.day.date == day.date).then(|| e.spent(now)));
        match held {
            Some(Some(spent)) => spent,
            Some(None) => Spent::default(),
            None => {
                let tag = (self.tagger)(person, rule);
                self.lock_restored()
                    .get(&tag)
                    .filter(|r| r.day == day.date)
                    .map(|r| Spent {
                        minutes: r.minutes.count_below(day.minute_of(now)),
                        bytes: r.bytes,
                    })
                    .unwrap_or_default()
            }
        }
    }

    /// Runs `f` on the entry of `key`, if tracked.
    pub fn with_entry<T>(&self, key: &Key, f: impl FnOnce(&mut Entry) -> T) -> Option<T> {
        let mut shard = self.shard(key);
        shard
            .entries
            .find_mut(key.hash, |(k, _)| k == key)
            .map(|(_, e)| f(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::tz::TimeZone;

    fn budget() -> Budget {
        Budget {
            minutes: Some(30),
            megabytes: Some(1),
            tz: TimeZone::get("Europe/Berlin").unwrap(),
            tz_name: "Europe/Berlin".into(),
            last_day: Default::default(),
        }
    }

    fn key(who: &str) -> Key {
        Key::new(Person::User(who.into()), Arc::from("video"))
    }

    fn at(hm: &str) -> Timestamp {
        format!("2026-11-25T{hm}+01:00").parse().unwrap()
    }

    fn ledger(capacity: usize) -> Ledger {
        Ledger::new(
            capacity,
            Box::new(|p, r| {
                let mut t = [0u8; 16];
                let s = format!("{p:?}{r}");
                for (i, b) in s.bytes().enumerate() {
                    t[i % 16] ^= b;
                }
                t
            }),
        )
    }

    #[test]
    fn minutes_count_once_complete_and_gaps_within_the_idle_gap_count() {
        let l = ledger(100);
        let b = budget();
        let k = key("alice");
        let charge = |t: &str| {
            l.charge(&k, &b, at(t), true, 0);
            l.standing(&k, &b, at(t)).unwrap()
        };
        // 10:00:20: the minute in progress is not counted yet.
        assert_eq!(charge("10:00:20").spent.minutes, 0);
        assert_eq!(charge("10:00:50").spent.minutes, 0);
        // 10:01:05: 10:00 is over and counts.
        assert_eq!(charge("10:01:05").spent.minutes, 1);
        // 10:04:00 after a gap of three minutes: 10:01-10:03 count too.
        assert_eq!(charge("10:04:00").spent.minutes, 4);
        // After a gap longer than 5 minutes, the gap does not count.
        assert_eq!(charge("10:20:00").spent.minutes, 5);
        assert_eq!(l.standing(&k, &b, at("10:21:00")).unwrap().spent.minutes, 6);
        // Another person is another entry.
        assert_eq!(
            l.standing(&key("bob"), &b, at("10:21:00"))
                .unwrap()
                .spent
                .minutes,
            0
        );
    }

    #[test]
    fn the_count_kept_for_a_minute_follows_marks_before_it() {
        let l = ledger(100);
        let b = budget();
        let k = key("alice");
        let minutes = |t: &str| l.standing(&k, &b, at(t)).unwrap().spent.minutes;
        l.charge(&k, &b, at("10:05:00"), true, 0);
        assert_eq!(minutes("10:05:30"), 0, "the minute in progress");
        // A hit the same minute marks nothing earlier: the same count.
        l.charge(&k, &b, at("10:05:40"), true, 0);
        assert_eq!(minutes("10:05:50"), 0);
        // A late hit extends the session back to 10:02: three complete
        // minutes now count in the same minute.
        l.charge(&k, &b, at("10:02:00"), true, 0);
        assert_eq!(minutes("10:05:55"), 3);
        // The next minute counts 10:05 too.
        assert_eq!(minutes("10:06:00"), 4);
    }

    #[test]
    fn a_place_goes_back_to_its_entry_and_a_stale_one_finds_it_by_its_key() {
        let l = ledger(10_000);
        let b = budget();
        let alice = key("alice");
        let mut place = Place::default();
        l.charge_at(&alice, &mut place, &b, at("10:00:00"), true, 100);
        assert_ne!(place.serial, 0, "the place is known after a charge");
        let kept = place;
        l.charge_at(&alice, &mut place, &b, at("10:00:10"), false, 100);
        assert_eq!((place.bucket, place.serial), (kept.bucket, kept.serial));
        // Thousands more people: the tables grow and entries move.
        for i in 0..3000 {
            l.charge(&key(&format!("u{i}")), &b, at("10:00:20"), true, 1);
        }
        l.charge_at(&alice, &mut place, &b, at("10:00:30"), false, 100);
        let spent = |k: &Key, t: &str| l.standing(k, &b, at(t)).unwrap().spent;
        assert_eq!(spent(&alice, "10:00:40").bytes, 300);
        assert_eq!(spent(&key("u7"), "10:00:40").bytes, 1);
        // A place on someone else's bucket, or on nobody, finds the key.
        let mut bobs = Place::default();
        l.charge_at(&key("bob"), &mut bobs, &b, at("10:00:50"), false, 1);
        for other in 1..3000 {
            let mut wrong = Place {
                bucket: other,
                serial: bobs.serial,
            };
            l.charge_at(&key("bob"), &mut wrong, &b, at("10:00:50"), false, 1);
        }
        assert_eq!(spent(&key("bob"), "10:01:00").bytes, 3000);
        assert_eq!(spent(&alice, "10:01:00").bytes, 300);
        // Tomorrow, after the entries of today are dropped, alice's place
        // leads to a new entry for the new day.
        let tomorrow: Timestamp = "2026-11-26T08:00:00+01:00".parse().unwrap();
        l.prune(tomorrow);
        assert_eq!(l.len(), 0);
        l.charge_at(&alice, &mut place, &b, tomorrow, true, 5);
        let s = l.standing(&alice, &b, tomorrow).unwrap();
        assert_eq!(
            (s.spent.bytes, s.day.date.to_string().as_str()),
            (5, "2026-11-26")
        );
    }

    #[test]
    fn bytes_add_up_and_a_new_day_renews_the_budget() {
        let l = ledger(100);
        let b = budget();
        let k = key("alice");
        l.charge(&k, &b, at("10:00:00"), true, 600_000);
        let s = l.charge(&k, &b, at("11:00:00"), false, 500_000).unwrap();
        assert_eq!(s.spent.bytes, 1_100_000);
        assert!(l.note_exhausted(&k, &s.day));
        assert!(!l.note_exhausted(&k, &s.day), "counted once a day");
        let tomorrow: Timestamp = "2026-11-26T08:00:00+01:00".parse().unwrap();
        let s = l.standing(&k, &b, tomorrow).unwrap();
        assert_eq!(s.spent, Spent::default());
        assert!(!s.noted);
        assert_eq!(s.day.date.to_string(), "2026-11-26");
    }

    #[test]
    fn a_full_ledger_drops_past_days_then_stops_tracking_new_people() {
        let l = ledger(32);
        let b = budget();
        let tracked = |l: &Ledger, range: std::ops::Range<i32>, t: Timestamp| {
            range
                .filter(|i| l.standing(&key(&format!("u{i}")), &b, t).is_some())
                .count()
        };
        // 200 people, room for 32 (two per shard): the rest are untracked.
        let today = tracked(&l, 0..200, at("10:00:00"));
        assert!((16..=32).contains(&today), "{today}");
        assert!(l.len() <= 32);
        // Tomorrow, yesterday's entries make room for new people.
        let tomorrow: Timestamp = "2026-11-26T08:00:00+01:00".parse().unwrap();
        assert!(tracked(&l, 200..400, tomorrow) >= 16);
        assert!(l.len() <= 32);
        l.prune(tomorrow);
        assert!(l.len() <= 32);
    }

    #[test]
    fn a_restored_entry_is_found_again_by_its_tag_on_its_day_only() {
        let l = ledger(100);
        let b = budget();
        let k = key("alice");
        let tag = (l.tagger)(&k.person, &k.rule);
        let mut minutes = MinuteSet::default();
        minutes.mark(600, 624);
        l.restore([(
            tag,
            Restored {
                day: "2026-11-25".parse().unwrap(),
                minutes,
                bytes: 42,
            },
        )]);
        let s = l.standing(&k, &b, at("12:00")).unwrap();
        assert_eq!(
            s.spent,
            Spent {
                minutes: 25,
                bytes: 42
            }
        );
        assert!(l.waiting().is_empty());
        // Yesterday's entry is not today's budget.
        let l = ledger(100);
        l.restore([(
            tag,
            Restored {
                day: "2026-11-24".parse().unwrap(),
                minutes,
                bytes: 42,
            },
        )]);
        assert_eq!(
            l.standing(&k, &b, at("12:00")).unwrap().spent,
            Spent::default()
        );
    }

    #[test]
    fn minute_sets_mark_count_and_run() {
        let mut m = MinuteSet::default();
        m.mark(0, 2);
        m.mark(63, 65);
        m.mark(1499, 1499);
        assert_eq!(m.count(), 7);
        assert_eq!(m.count_below(64), 4);
        assert_eq!(m.count_below(2000), 7);
        assert_eq!(m.runs(), vec![(0, 3), (63, 3), (1499, 1)]);
        let mut n = MinuteSet::default();
        n.mark(2, 3);
        assert_eq!(m.union(&n).count(), 8);
        assert_eq!(n.minus(&m).runs(), vec![(3, 1)]);
        assert!(m.contains(1499) && !m.contains(1500) && !m.contains(9999));
        assert_eq!(m.count_below_with(&n, 64), 5);
        assert_eq!(m.count_below_with(&n, 3), 3);
    }
}
