//! Privacy: which numbers of the strategy section may be published.
//!
//! **The rule.** No number, and no sum or difference of published numbers,
//! may depend on the data of 1 to k−1 persons only.
//!
//! A *family* is a set of cells that add up: the same measure (say, active
//! users with their sessions and minutes) for every group × platform box,
//! including the `*` group (all groups) and the `*` platform (any platform).
//! Its *atoms* are the finest pieces of data: one per group set (the exact
//! list of groups a record was in) × platform. A box is the sum of the atoms
//! it covers: group `g` covers every group set that contains `g`, so a group
//! nested in another, departments inside `staff`, and overlapping groups are
//! all described exactly. The attacker knows which atoms each box covers and
//! may add and subtract any published boxes; what they can learn is exactly
//! the row space of the published boxes' 0/1 vectors over the atoms.
//!
//! Groups always add up (a group set is one list of groups). Platforms add
//! up for counts of requests and actions ([`Platforms::Sum`]); for distinct
//! persons and for time across platforms the `*` platform is a union, not a
//! sum ([`Platforms::Union`]), so each platform column, and the `*` column,
//! is protected over the groups on its own. Days never add up to a
//! published number: the only daily numbers are distinct persons per day,
//! protected one day at a time.
//!
//! [`protect`] publishes a box only when
//!
//! 1. *primary*: it is backed by at least k persons (or by nobody: a zero
//!    says nothing about anyone), and
//! 2. *complementary*: no vector in the span of the published boxes is
//!    supported by atoms that together hold fewer than k persons.
//!
//! Condition 2 is checked exactly ([`audit`]): Gaussian elimination over the
//! integers (fraction-free, with overflow checks) puts the atoms backed by k
//! or more persons first, so the rows left with a pivot among the small
//! atoms span every published combination that avoids the large ones; the
//! subsets of small atoms holding fewer than k persons are then searched for
//! one that supports such a combination. When one is found, the cheapest box
//! in that combination is suppressed (a group × platform cell before a
//! group's or a platform's total, the all-groups × any-platform total last;
//! the box with fewer persons first) and the audit runs again, until no
//! combination leaks. Whenever the arithmetic would overflow or the search
//! would grow too large, the audit reports a leak and suppresses more: it
//! errs towards hiding.
//!
//! Distinct-person counts (active users) are unions, not sums; treating
//! them as sums is the attacker's best case (no person on two platforms),
//! so the rule covers them too.
//!
//! This module decides what is hidden; it must not compute the numbers.

use rustc_hash::{FxHashMap, FxHashSet};

use super::aggregate::{PersonSet, ALLG, ANY};
use super::model::Cell;

impl<T: Copy> Cell<T> {
    /// `Value(v)` when `persons >= k` or nobody at all (0 persons say
    /// nothing about anyone), else `Suppressed`. The per-cell gate of the
    /// security section.
    pub(crate) fn gated(v: T, persons: u64, k: u64) -> Self {
        if persons >= k || persons == 0 {
            Cell::Value(v)
        } else {
            Cell::Suppressed
        }
    }
}

/// A box: (group or [`ALLG`], platform or [`ANY`]).
pub(super) type BoxKey = (u32, u32);

/// The finest piece of one family's data.
pub(super) struct Atom<'a> {
    /// Group set id.
    pub(super) region: u32,
    /// Platform id ([`ANY`] in families without a platform dimension).
    pub(super) platform: u32,
    pub(super) persons: &'a PersonSet,
}

/// How a family's numbers relate across platforms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Platforms {
    /// One number per group, no platform dimension.
    None,
    /// Per platform, and the `*` platform is their sum (counts of
    /// requests and actions).
    Sum,
    /// Per platform, and the `*` platform is not their sum but a union
    /// (distinct persons: someone on two platforms counts once) or a
    /// measure of its own (time across platforms): each platform column,
    /// and the `*` column, add up over groups only.
    Union,
}

/// A family of cells that add up (see the module documentation).
pub(super) struct Family<'a> {
    /// Groups of each group set (by group set id).
    pub(super) regions: &'a [Box<[u32]>],
    pub(super) atoms: Vec<Atom<'a>>,
    pub(super) platforms: Platforms,
    pub(super) k: u64,
}

/// What [`protect`] decided.
#[derive(Debug, Default)]
pub(super) struct Published {
    /// Boxes with data, and whether each is shown.
    shown: FxHashMap<BoxKey, bool>,
}

impl Published {
    /// Whether a box may be shown (boxes without data are zeros: shown).
    pub(super) fn shows(&self, key: BoxKey) -> bool {
        self.shown.get(&key).copied().unwrap_or(true)
    }

    /// `v` if the box may be shown.
    pub(super) fn cell<T: Copy>(&self, key: BoxKey, v: T) -> Cell<T> {
        if self.shows(key) {
            Cell::Value(v)
        } else {
            Cell::Suppressed
        }
    }

    /// Boxes with data that are hidden.
    #[cfg(test)]
    fn hidden(&self) -> usize {
        self.shown.values().filter(|s| !**s).count()
    }
}

/// Boxes that cover the same atoms (the same number under two names,
/// such as a platform only one group uses: that group's cell and the
/// platform's total): shown or hidden together.
struct BoxInfo {
    keys: Vec<BoxKey>,
    atoms: Vec<usize>,
    persons: u64,
}

/// Decides which boxes of the family may be shown.
pub(super) fn protect(f: &Family<'_>) -> Published {
    if f.platforms != Platforms::Union {
        return protect_sums(f, f.platforms == Platforms::Sum);
    }
    // Each platform column on its own, over the group hierarchy.
    let mut out = Published::default();
    let mut platforms: Vec<u32> = f.atoms.iter().map(|a| a.platform).collect();
    platforms.sort_unstable();
    platforms.dedup();
    let column = |atoms: Vec<Atom<'_>>| {
        protect_sums(
            &Family {
                regions: f.regions,
                atoms,
                platforms: Platforms::None,
                k: f.k,
            },
            false,
        )
    };
    for &p in &platforms {
        let atoms = f
            .atoms
            .iter()
            .filter(|a| a.platform == p)
            .map(|a| Atom {
                region: a.region,
                platform: ANY,
                persons: a.persons,
            })
            .collect();
        for ((g, _), shown) in column(atoms).shown {
            out.shown.insert((g, p), shown);
        }
    }
    // The "*" column: per group set, the union over platforms.
    let mut unions: FxHashMap<u32, PersonSet> = FxHashMap::default();
    for a in &f.atoms {
        *unions.entry(a.region).or_default() |= a.persons;
    }
    let atoms = unions
        .iter()
        .map(|(&region, persons)| Atom {
            region,
            platform: ANY,
            persons,
        })
        .collect();
    out.shown.extend(column(atoms).shown);
    out
}

/// [`protect`] for a family whose boxes are sums of atoms over groups and,
/// with `by_platform`, over platforms.
fn protect_sums(f: &Family<'_>, by_platform: bool) -> Published {
    let boxes = boxes_of(f, by_platform);
    let umbrellas = umbrellas(f);
    let mut shown: Vec<bool> = boxes.iter().map(|b| b.persons >= f.k).collect();
    let cost = |b: usize| {
        let keys = &boxes[b].keys;
        let tier = keys.iter().map(|&key| cost_tier(key, by_platform)).max();
        let leaf = keys.iter().any(|(g, _)| !umbrellas.contains(g));
        (tier, leaf, boxes[b].persons, b)
    };
    // Each round finds the leaks and hides, for each, the cheapest box of
    // its combination (unless an earlier fix of the round took one): a
    // group × platform cell before a total, an umbrella group's box (staff,
    // made of departments) before a leaf group's, then the one with fewer
    // persons. The last round, with a second prime, must find nothing.
    let mut prime = PRIMES[0];
    loop {
        let leaks = audit(f, &boxes, &shown, prime);
        if leaks.is_empty() {
            if prime == PRIMES[1] {
                break;
            }
            prime = PRIMES[1];
            continue;
        }
        prime = PRIMES[0];
        for combination in leaks {
            if combination.iter().any(|&b| !shown[b]) {
                continue; // fixed by an earlier choice of this round
            }
            match combination.iter().copied().min_by_key(|&b| cost(b)) {
                Some(b) => shown[b] = false,
                // Cannot happen (a leak combines shown boxes); hide
                // everything rather than loop.
                None => shown.iter_mut().for_each(|s| *s = false),
            }
        }
    }
    Published {
        shown: boxes
            .iter()
            .zip(shown)
            .flat_map(|(b, s)| b.keys.iter().map(move |&key| (key, s)))
            .collect(),
    }
}

/// Groups that contain another group (every record of the other is one of
/// theirs): `staff` around the departments. Their numbers are the sums of
/// more specific ones, and are given up first.
fn umbrellas(f: &Family<'_>) -> FxHashSet<u32> {
    let mut within: FxHashMap<u32, Vec<u32>> = FxHashMap::default();
    for a in &f.atoms {
        let groups = &f.regions[a.region as usize];
        for &h in groups.iter() {
            within
                .entry(h)
                .and_modify(|common| common.retain(|g| groups.contains(g)))
                .or_insert_with(|| groups.to_vec());
        }
    }
    within
        .into_iter()
        .flat_map(|(h, common)| common.into_iter().filter(move |&g| g != h))
        .collect()
}

/// Which boxes are given up first: group × platform cells, then a group's
/// or a platform's total, then the grand total.
fn cost_tier((g, p): BoxKey, by_platform: bool) -> u8 {
    u8::from(g == ALLG) + u8::from(by_platform && p == ANY)
}

/// Every box with data, with its atoms and persons.
fn boxes_of(f: &Family<'_>, by_platform: bool) -> Vec<BoxInfo> {
    let mut groups: Vec<u32> = f
        .atoms
        .iter()
        .flat_map(|a| f.regions[a.region as usize].iter().copied())
        .collect();
    groups.sort_unstable();
    groups.dedup();
    groups.push(ALLG);
    let mut platforms: Vec<u32> = if by_platform {
        f.atoms.iter().map(|a| a.platform).collect()
    } else {
        Vec::new()
    };
    platforms.sort_unstable();
    platforms.dedup();
    platforms.push(ANY);
    let mut out: Vec<BoxInfo> = Vec::new();
    let mut index: FxHashMap<Vec<usize>, usize> = FxHashMap::default();
    let mut union = PersonSet::new();
    for &g in &groups {
        for &p in &platforms {
            let atoms: Vec<usize> = f
                .atoms
                .iter()
                .enumerate()
                .filter(|(_, a)| {
                    (g == ALLG || f.regions[a.region as usize].contains(&g))
                        && (p == ANY || p == a.platform)
                })
                .map(|(i, _)| i)
                .collect();
            if atoms.is_empty() {
                continue;
            }
            if let Some(&i) = index.get(&atoms) {
                out[i].keys.push((g, p));
                continue;
            }
            union.clear();
            for &i in &atoms {
                union |= f.atoms[i].persons;
            }
            if union.is_empty() {
                continue;
            }
            index.insert(atoms.clone(), out.len());
            out.push(BoxInfo {
                keys: vec![(g, p)],
                atoms,
                persons: union.len(),
            });
        }
    }
    out
}

/// How many subsets of small atoms the search may try before it gives up
/// and reports a leak (erring towards hiding).
const SEARCH_LIMIT: usize = 20_000;
/// How many leaks one audit reports at most.
const LEAKS_PER_ROUND: usize = 64;

/// The arithmetic is modulo these primes (fast, and no number grows). A
/// linear dependency over the rationals is always one modulo a prime; the
/// converse can fail only when the prime divides a determinant of the 0/1
/// matrix, so the final audit repeats with a second prime, and a leak
/// would have to hide from both.
const PRIMES: [u64; 2] = [(1 << 61) - 1, (1 << 31) - 1];

#[inline]
fn mulm(a: u64, b: u64, p: u64) -> u64 {
    if p == PRIMES[0] {
        // A Mersenne prime: reduce with a shift and an add.
        let x = u128::from(a) * u128::from(b);
        let r = (x as u64 & p) + (x >> 61) as u64;
        if r >= p {
            r - p
        } else {
            r
        }
    } else {
        // Below 2^32: the product fits in 64 bits.
        (a * b) % p
    }
}

fn inv(a: u64, p: u64) -> u64 {
    // Fermat: a^(p-2).
    let (mut base, mut e, mut r) = (a % p, p - 2, 1u64);
    while e > 0 {
        if e & 1 == 1 {
            r = mulm(r, base, p);
        }
        base = mulm(base, base, p);
        e >>= 1;
    }
    r
}

/// A sparse row: (column, value) sorted by column, values non-zero modulo
/// the prime. Columns past the atoms' are the shown boxes (which boxes the
/// row combines).
type Row = Vec<(u32, u64)>;

/// `row − a × piv` modulo `p`.
fn sub_scaled(row: &[(u32, u64)], a: u64, piv: &[(u32, u64)], p: u64) -> Row {
    let mut out = Vec::with_capacity(row.len() + piv.len());
    let (mut i, mut j) = (0, 0);
    while i < row.len() || j < piv.len() {
        let take_row = j == piv.len() || (i < row.len() && row[i].0 < piv[j].0);
        let take_piv = i == row.len() || (j < piv.len() && piv[j].0 < row[i].0);
        if take_row {
            out.push(row[i]);
            i += 1;
        } else if take_piv {
            out.push((piv[j].0, p - mulm(a, piv[j].1, p)));
            j += 1;
        } else {
            let t = row[i].1 + p - mulm(a, piv[j].1, p);
            let t = if t >= p { t - p } else { t };
            if t != 0 {
                out.push((row[i].0, t));
            }
            i += 1;
            j += 1;
        }
    }
    out
}

/// An echelon basis built one row at a time (columns in the order that
/// matters: the lowest first). Sparse, so that rows of different
/// platforms never touch each other's columns.
struct Basis {
    /// Columns below this are the matrix; the rest ride along.
    ncols: u32,
    p: u64,
    rows: Vec<Row>,
    pivot: FxHashMap<u32, usize>,
}

impl Basis {
    fn new(ncols: usize, p: u64) -> Basis {
        Basis {
            ncols: ncols as u32,
            p,
            rows: Vec::new(),
            pivot: FxHashMap::default(),
        }
    }

    /// Reduces `r` by the basis; adds it when something is left on the
    /// matrix columns (returns its index), else returns what is left of it
    /// (the columns that ride along: a dependency).
    fn insert(&mut self, mut r: Row) -> Result<usize, Row> {
        loop {
            let Some(&(c, v)) = r.first().filter(|(c, _)| *c < self.ncols) else {
                return Err(r);
            };
            match self.pivot.get(&c) {
                Some(&i) => r = sub_scaled(&r, v, &self.rows[i], self.p),
                None => {
                    let scale = inv(v, self.p);
                    for x in &mut r {
                        x.1 = mulm(x.1, scale, self.p);
                    }
                    self.rows.push(r);
                    self.pivot.insert(c, self.rows.len() - 1);
                    return Ok(self.rows.len() - 1);
                }
            }
        }
    }
}

/// Finds published combinations that depend on fewer than k persons.
/// Returns, for each (at most [`LEAKS_PER_ROUND`]), the boxes it is made of
/// (hiding one of them removes it); none when the family is safe.
fn audit(f: &Family<'_>, boxes: &[BoxInfo], shown: &[bool], p: u64) -> Vec<Vec<usize>> {
    let rows: Vec<usize> = (0..boxes.len()).filter(|&b| shown[b]).collect();
    if rows.is_empty() {
        return Vec::new();
    }
    // Atoms covered by the same shown boxes are indistinguishable: merge
    // them into one column (with the union of their persons).
    let mut sig: Vec<Vec<u32>> = vec![Vec::new(); f.atoms.len()];
    for (r, &b) in rows.iter().enumerate() {
        for &a in &boxes[b].atoms {
            sig[a].push(r as u32);
        }
    }
    let mut col_of: FxHashMap<&[u32], usize> = FxHashMap::default();
    let mut cols: Vec<PersonSet> = Vec::new();
    let mut col_platform: Vec<u32> = Vec::new();
    let mut atom_col: Vec<Option<usize>> = vec![None; f.atoms.len()];
    for (a, s) in sig.iter().enumerate() {
        if s.is_empty() {
            continue; // in no shown box: never published
        }
        let c = *col_of.entry(s.as_slice()).or_insert_with(|| {
            cols.push(PersonSet::new());
            col_platform.push(f.atoms[a].platform);
            cols.len() - 1
        });
        cols[c] |= f.atoms[a].persons;
        atom_col[a] = Some(c);
    }
    let small = |c: usize| cols[c].len() < f.k;
    if !(0..cols.len()).any(small) {
        return Vec::new();
    }
    // Column order: large atoms first (platform by platform), then small.
    let mut order: Vec<usize> = (0..cols.len()).collect();
    order.sort_by_key(|&c| (small(c), col_platform[c], c));
    let mut pos = vec![0u32; cols.len()];
    for (i, &c) in order.iter().enumerate() {
        pos[c] = i as u32;
    }
    let nlarge = order.iter().filter(|&&c| !small(c)).count() as u32;
    let ncols = cols.len();
    // Rows: one platform's cells first, platform by platform, the totals
    // that span platforms last; each carries its own box as a ridealong.
    let mut by_block: Vec<usize> = (0..rows.len()).collect();
    by_block.sort_by_key(|&r| {
        let (g, pl) = boxes[rows[r]].keys[0];
        (pl == ANY, pl, g)
    });
    let mut basis = Basis::new(ncols, p);
    for r in by_block {
        let mut row: Row = boxes[rows[r]]
            .atoms
            .iter()
            .filter_map(|&a| atom_col[a].map(|c| (pos[c], 1)))
            .collect();
        row.sort_unstable();
        row.dedup_by_key(|x| x.0);
        row.push(((ncols + r) as u32, 1));
        let _ = basis.insert(row);
    }
    // Basis rows whose pivot is a small column are zero on every large
    // column, and span every published combination that avoids them.
    let w: Vec<&Row> = basis
        .rows
        .iter()
        .filter(|r| r.first().is_some_and(|&(c, _)| c >= nlarge))
        .collect();
    if w.is_empty() {
        return Vec::new();
    }
    let col_persons = |c: u32| &cols[order[c as usize]];
    let boxes_in = |row: &Row| -> Vec<usize> {
        row.iter()
            .filter(|&&(c, _)| c as usize >= ncols)
            .map(|&(c, _)| rows[c as usize - ncols])
            .collect()
    };
    fn support(row: &Row, ncols: usize) -> impl Iterator<Item = u32> + '_ {
        row.iter()
            .map(|x| x.0)
            .take_while(move |&c| (c as usize) < ncols)
    }
    let mut supp: Vec<u32> = w.iter().flat_map(|r| support(r, ncols)).collect();
    supp.sort_unstable();
    supp.dedup();
    let mut union = PersonSet::new();
    for &c in &supp {
        union |= col_persons(c);
    }
    if union.len() < f.k {
        // All of them together are too few: every combination leaks.
        return w
            .iter()
            .take(LEAKS_PER_ROUND)
            .map(|r| boxes_in(r))
            .collect();
    }
    // Combinations alone.
    let mut leaks = Vec::new();
    for r in &w {
        union.clear();
        for c in support(r, ncols) {
            union |= col_persons(c);
        }
        if union.len() < f.k {
            leaks.push(boxes_in(r));
            if leaks.len() == LEAKS_PER_ROUND {
                break;
            }
        }
    }
    if !leaks.is_empty() {
        return leaks;
    }
    // Subsets of small columns holding fewer than k persons: does some
    // combination live on one of them alone?
    let mut by_size = supp.clone();
    by_size.sort_by_key(|&c| (col_persons(c).len(), c));
    let mut tried = 0usize;
    let mut chosen: Vec<u32> = Vec::new();
    let mut found: Option<Row> = None;
    search(
        &by_size,
        0,
        &PersonSet::new(),
        &mut chosen,
        &mut tried,
        &mut found,
        &mut |s: &[u32]| combination_within(&w, s, ncols, p),
        &|c| col_persons(c),
        f.k,
    );
    match found {
        Some(row) => vec![boxes_in(&row)],
        None if tried > SEARCH_LIMIT => vec![boxes_in(w[0])],
        None => Vec::new(),
    }
}

/// Depth-first search over subsets of `cols` (sorted by persons) whose
/// persons stay below `k`; stops at the first subset `check` accepts, or
/// after [`SEARCH_LIMIT`] subsets.
#[allow(clippy::too_many_arguments)]
fn search<'p>(
    cols: &[u32],
    from: usize,
    persons: &PersonSet,
    chosen: &mut Vec<u32>,
    tried: &mut usize,
    found: &mut Option<Row>,
    check: &mut dyn FnMut(&[u32]) -> Option<Row>,
    persons_of: &dyn Fn(u32) -> &'p PersonSet,
    k: u64,
) {
    for i in from..cols.len() {
        if found.is_some() || *tried > SEARCH_LIMIT {
            return;
        }
        let union = persons | persons_of(cols[i]);
        if union.len() >= k {
            // Sorted by persons, but a union may still be small for a later
            // column that overlaps; keep looking.
            continue;
        }
        chosen.push(cols[i]);
        *tried += 1;
        if let Some(c) = check(chosen) {
            *found = Some(c);
            return;
        }
        search(
            cols,
            i + 1,
            &union,
            chosen,
            tried,
            found,
            check,
            persons_of,
            k,
        );
        chosen.pop();
    }
}

/// A non-zero combination of the rows `w` that is zero on every matrix
/// column outside `within`: the boxes it combines (as the columns from
/// `ncols` on), if one exists.
fn combination_within(w: &[&Row], within: &[u32], ncols: usize, p: u64) -> Option<Row> {
    // Renumber: columns outside `within` first (they must cancel), then
    // those inside and the boxes, which ride along.
    let inside: FxHashSet<u32> = within.iter().copied().collect();
    let shift = ncols as u32;
    let mut basis = Basis::new(ncols, p);
    for r in w {
        let mut row: Row = r
            .iter()
            .map(|&(c, v)| {
                if (c as usize) < ncols && !inside.contains(&c) {
                    (c, v)
                } else {
                    (c + shift, v) // past the matrix: rides along
                }
            })
            .collect();
        row.sort_unstable_by_key(|x| x.0);
        if let Err(left) = basis.insert(row) {
            // Zero outside `within`: what is left names its boxes.
            let boxes: Row = left
                .into_iter()
                .filter(|&(c, _)| c >= 2 * shift)
                .map(|(c, v)| (c - shift, v))
                .collect();
            if !boxes.is_empty() {
                return Some(boxes);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a family from (region groups, platform, person ids).
    struct Spec {
        regions: Vec<Box<[u32]>>,
        sets: Vec<(u32, u32, PersonSet)>,
    }

    impl Spec {
        fn new(regions: &[&[u32]]) -> Spec {
            Spec {
                regions: regions
                    .iter()
                    .map(|r| r.to_vec().into_boxed_slice())
                    .collect(),
                sets: Vec::new(),
            }
        }
        /// `n` persons (ids from `first`) in region `r` on platform `p`.
        fn add(mut self, r: u32, p: u32, first: u32, n: u32) -> Spec {
            self.sets.push((r, p, (first..first + n).collect()));
            self
        }
        fn protect(&self, k: u64, platforms: Platforms) -> Published {
            protect(&Family {
                regions: &self.regions,
                atoms: self
                    .sets
                    .iter()
                    .map(|(r, p, s)| Atom {
                        region: *r,
                        platform: if platforms == Platforms::None {
                            ANY
                        } else {
                            *p
                        },
                        persons: s,
                    })
                    .collect(),
                platforms,
                k,
            })
        }
    }

    // Groups: 0 = staff, 1 = eng, 2 = sales, 3 = legal, 4 = support.
    const STAFF: u32 = 0;

    #[test]
    fn a_small_department_inside_staff_hides_one_more_department() {
        // staff ⊃ eng (20), sales (12), legal (3): staff − eng − sales = legal.
        let s = Spec::new(&[&[0, 1], &[0, 2], &[0, 3]])
            .add(0, ANY, 0, 20)
            .add(1, ANY, 100, 12)
            .add(2, ANY, 200, 3);
        let p = s.protect(5, Platforms::None);
        assert!(!p.shows((3, ANY)), "legal: 3 persons");
        assert!(
            !p.shows((2, ANY)),
            "sales, the smaller department, protects it"
        );
        assert!(p.shows((1, ANY)) && p.shows((STAFF, ANY)) && p.shows((ALLG, ANY)));
    }

    #[test]
    fn an_umbrella_group_goes_before_a_department() {
        // staff ⊃ eng (20), hr (11), legal (3); guests (8) outside staff.
        // staff − eng − hr = legal: staff goes (it is made of the
        // departments), then guests, since * − guests = staff again.
        let s = Spec::new(&[&[0, 1], &[0, 2], &[0, 3], &[5]])
            .add(0, ANY, 0, 20)
            .add(1, ANY, 100, 11)
            .add(2, ANY, 200, 3)
            .add(3, ANY, 300, 8);
        let p = s.protect(5, Platforms::None);
        assert!(!p.shows((3, ANY)) && !p.shows((STAFF, ANY)) && !p.shows((5, ANY)));
        assert!(
            p.shows((1, ANY)) && p.shows((2, ANY)) && p.shows((ALLG, ANY)),
            "{p:?}"
        );
    }

    #[test]
    fn two_small_departments_protect_each_other() {
        // legal (3) + support (3) = 6 persons: staff − eng = both together.
        let s = Spec::new(&[&[0, 1], &[0, 3], &[0, 4]])
            .add(0, ANY, 0, 20)
            .add(1, ANY, 100, 3)
            .add(2, ANY, 200, 3);
        let p = s.protect(5, Platforms::None);
        assert!(!p.shows((3, ANY)) && !p.shows((4, ANY)));
        assert!(p.shows((1, ANY)) && p.shows((STAFF, ANY)));
        // With k = 7 the pair is too small too: eng goes (the cheapest
        // group box in the combination staff − eng), and with it every way
        // to single out the pair.
        let p = s.protect(7, Platforms::None);
        assert!(!p.shows((1, ANY)));
        assert!(p.shows((STAFF, ANY)), "staff alone covers 26 persons");
    }

    #[test]
    fn one_hidden_platform_of_a_group_hides_a_second_cell() {
        // One group, three platforms: 10, 8 and 2 persons (disjoint).
        let s = Spec::new(&[&[1]])
            .add(0, 10, 0, 10)
            .add(0, 11, 100, 8)
            .add(0, 12, 200, 2);
        let p = s.protect(5, Platforms::Sum);
        assert!(!p.shows((1, 12)), "2 persons");
        // eng/* − eng/10 − eng/11 = eng/12: the smaller other cell goes too,
        // with the platform total that is the same number (only eng).
        assert!(!p.shows((1, 11)) && !p.shows((ALLG, 11)), "{p:?}");
        for key in [(1, 10), (ALLG, 10), (1, ANY), (ALLG, ANY)] {
            assert!(p.shows(key), "{key:?} should stay: {p:?}");
        }
        assert_eq!(p.hidden(), 4);
    }

    #[test]
    fn a_union_total_is_no_sum_so_a_small_platform_hides_alone() {
        // Ten persons on platform 10, two of them also on 12: "*" is the
        // union (10), not 10 + 2, so "*" − 10 says nothing about 12.
        let s = Spec::new(&[&[1]]).add(0, 10, 0, 10).add(0, 12, 0, 2);
        let p = s.protect(5, Platforms::Union);
        assert!(!p.shows((1, 12)) && !p.shows((ALLG, 12)));
        for key in [(1, 10), (ALLG, 10), (1, ANY), (ALLG, ANY)] {
            assert!(p.shows(key), "{key:?}: {p:?}");
        }
        // As sums (counts of requests), the same shape needs a second cell.
        let p = s.protect(5, Platforms::Sum);
        assert!(!p.shows((1, 10)) || !p.shows((1, ANY)), "{p:?}");
    }

    #[test]
    fn large_cells_are_shown_and_nothing_is_hidden_without_reason() {
        let s = Spec::new(&[&[0, 1], &[0, 2]])
            .add(0, 10, 0, 10)
            .add(0, 11, 0, 10)
            .add(1, 10, 100, 9)
            .add(1, 11, 100, 6);
        let p = s.protect(5, Platforms::Sum);
        assert_eq!(p.hidden(), 0, "{p:?}");
    }

    #[test]
    fn a_rectangle_of_hidden_cells_is_enough_when_each_line_sums_to_k() {
        // Two groups × two platforms with 3 persons in each cell, and big
        // cells elsewhere: hiding the four small cells leaves each row and
        // column of hidden cells with 6 persons.
        let s = Spec::new(&[&[1], &[2]])
            .add(0, 10, 0, 3)
            .add(0, 11, 10, 3)
            .add(1, 10, 20, 3)
            .add(1, 11, 30, 3)
            .add(0, 12, 100, 20)
            .add(1, 12, 200, 20)
            .add(0, 13, 300, 20)
            .add(1, 13, 400, 20);
        let p = s.protect(5, Platforms::Sum);
        for key in [(1, 10), (1, 11), (2, 10), (2, 11)] {
            assert!(!p.shows(key), "{key:?}");
        }
        for key in [(1, ANY), (2, ANY), (ALLG, 10), (ALLG, 11), (ALLG, ANY)] {
            assert!(p.shows(key), "{key:?} should stay: {p:?}");
        }
    }

    #[test]
    fn a_box_with_nobody_is_a_zero_and_shown() {
        let p = Spec::new(&[&[1]])
            .add(0, 10, 0, 6)
            .protect(5, Platforms::Sum);
        assert!(p.shows((2, 10)), "no data: zero");
        assert_eq!(p.cell((1, 10), 6u64), Cell::Value(6));
    }

    #[test]
    fn elimination_finds_dependencies_modulo_both_primes() {
        let rows = |v: &[&[u32]]| -> Vec<Row> {
            v.iter()
                .map(|r| r.iter().map(|&c| (c, 1)).collect())
                .collect()
        };
        for p in PRIMES {
            // a+b, b+c, a+c: independent (rank 3).
            let mut b = Basis::new(3, p);
            for r in rows(&[&[0, 1], &[1, 2], &[0, 2]]) {
                assert!(b.insert(r).is_ok());
            }
            // a+b, b+c, then a−c = (a+b) − (b+c): dependent; what is left
            // is on the columns that ride along.
            let mut b = Basis::new(3, p);
            for r in rows(&[&[0, 1, 3], &[1, 2, 4]]) {
                assert!(b.insert(r).is_ok());
            }
            let left = b.insert(vec![(0, 1), (2, p - 1), (5, 1)]).unwrap_err();
            assert_eq!(left, vec![(3, p - 1), (4, 1), (5, 1)]);
            assert_eq!(mulm(inv(12345, p), 12345, p), 1);
        }
    }

    #[test]
    fn a_number_needs_k_persons_behind_it() {
        assert_eq!(Cell::gated(7u64, 4, 5), Cell::Suppressed);
        assert_eq!(Cell::gated(7u64, 5, 5), Cell::Value(7));
        assert_eq!(Cell::gated(0u64, 0, 5), Cell::Value(0));
    }
}

#[cfg(test)]
mod stress {
    use super::*;

    /// `cargo test --release --lib stress -- --ignored --nocapture`: a large
    /// company (40 group sets over 25 groups, 20 platforms, small cells
    /// everywhere), timed.
    #[test]
    #[ignore]
    fn a_large_company_is_protected_in_reasonable_time() {
        let mut seed = 7u64;
        let mut rnd = |n: u64| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) % n
        };
        let regions: Vec<Box<[u32]>> = (0..40u32)
            .map(|r| {
                let mut g = vec![0, 1 + r % 12, 13 + r % 7];
                if r % 5 == 0 {
                    g.push(20 + r % 5);
                }
                g.sort_unstable();
                g.dedup();
                g.into_boxed_slice()
            })
            .collect();
        let mut sets = Vec::new();
        let mut next = 0u32;
        for r in 0..40u32 {
            for p in 0..20u32 {
                let n = match rnd(10) {
                    0..=3 => 0,
                    4..=6 => 1 + rnd(4) as u32,
                    _ => 5 + rnd(30) as u32,
                };
                if n > 0 {
                    sets.push((r, p, (next..next + n).collect::<PersonSet>()));
                    next += n / 2 + 1; // persons on several platforms
                }
            }
        }
        for platforms in [Platforms::Sum, Platforms::Union] {
            let t = std::time::Instant::now();
            let p = protect(&Family {
                regions: &regions,
                atoms: sets
                    .iter()
                    .map(|(r, p, s)| Atom {
                        region: *r,
                        platform: *p,
                        persons: s,
                    })
                    .collect(),
                platforms,
                k: 5,
            });
            eprintln!(
                "{platforms:?}: {} atoms, {} hidden of {} boxes, {:?}",
                sets.len(),
                p.hidden(),
                p.shown.len(),
                t.elapsed()
            );
        }
    }
}
