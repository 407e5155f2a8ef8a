//! The attacker: takes the strategy section of a report (the published
//! JSON) on a company where small groups sit inside larger ones and others
//! cut across them, and searches every combination of published numbers
//! for one that depends on fewer than k persons.
//!
//! The log is built from a scenario whose ground truth the test knows: for
//! every measure, which persons stand behind each group set × platform
//! ("atom"). A published number is the sum of the atoms it covers: groups
//! add up over group sets (`staff` covers every department, `*` covers
//! all), and for counts of requests the `*` platform adds up the platforms;
//! for distinct persons it is a union, so each platform column (and `*`)
//! stands on its own, and every day is its own table. The attacker may add
//! and subtract any published numbers of a measure. A leak is a set S of
//! atoms holding 1 to k−1 persons such that some combination of published
//! numbers depends on S alone. With N a basis of the vectors the published
//! numbers cannot see (their null space), such a combination exists exactly
//! when the rows of N for S are linearly dependent: a different method from
//! the report's own search, in exact rational arithmetic.
//!
//! The same attacker, run on a report that only hides numbers with fewer
//! than k persons behind them, finds the recoveries the issue describes.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};
use socialgate::report::ReportArgs;

use crate::report_log::{json_of, write_log, Line};

const DAYS: [&str; 3] = ["2026-03-02", "2026-03-03", "2026-03-04"];

#[derive(Clone, Copy, PartialEq)]
enum Ev {
    /// A page read: inspected request, foreground.
    Nav(&'static str),
    /// A tunnel, foreground.
    Tunnel(&'static str),
    /// An inspected request with an activity (not a page).
    Act(&'static str, &'static str),
    /// A refused tunnel: the platform's own site, or its tracker elsewhere.
    Refused(&'static str, bool),
    /// A refused write (read-only rule).
    RefusedAct(&'static str, &'static str),
    /// A tunnel a report-mode rule would refuse (it passes).
    Would(&'static str),
    /// A warn rule's warning page (held: not use of the platform).
    Warn(&'static str),
    /// The Continue past it.
    Continue(&'static str),
    /// A page read after the Continue (passed: use).
    Ack(&'static str),
    /// A tunnel a warn rule let pass without a warning.
    Unshown(&'static str),
    /// An access request sent from a block page about the platform (no
    /// traffic: not a member, not use).
    Ask(&'static str),
}

struct Person {
    id: String,
    groups: Vec<&'static str>,
}

/// (person, day, event)
type Events = Vec<(usize, usize, Ev)>;

/// The company: eng (24, with oncall 4 inside it), sales (14), support
/// (11), legal (3), all in staff; managers (5) across departments; guests
/// (12) outside staff.
fn company() -> (Vec<Person>, Events) {
    let mut people = Vec::new();
    let mut add = |prefix: &str, n: usize, groups: &dyn Fn(usize) -> Vec<&'static str>| {
        let first = people.len();
        for i in 0..n {
            people.push(Person {
                id: format!("p:{prefix}{i:02}"),
                groups: groups(i),
            });
        }
        first
    };
    let eng = add("e", 24, &|i| match i {
        0..=3 => vec!["eng", "oncall", "staff"],
        4 | 5 => vec!["eng", "managers", "staff"],
        _ => vec!["eng", "staff"],
    });
    let sales = add("s", 14, &|i| match i {
        0 => vec!["sales", "managers", "staff"],
        _ => vec!["sales", "staff"],
    });
    let support = add("u", 11, &|i| match i {
        0 => vec!["support", "managers", "staff"],
        _ => vec!["support", "staff"],
    });
    let legal = add("l", 3, &|i| match i {
        0 => vec!["legal", "managers", "staff"],
        _ => vec!["legal", "staff"],
    });
    let guests = add("g", 12, &|_| vec!["guests"]);
    let mut ev: Events = Vec::new();
    let mut on = |who: usize, days: &[usize], e: Ev| {
        for &d in days {
            ev.push((who, d, e));
        }
    };
    let varied =
        |i: usize| -> Vec<usize> { (0..3).filter(|d| !(i + d).is_multiple_of(3)).collect() };
    // LinkedIn (inspected): most of staff read on two of three days.
    for (first, n, skip) in [
        (eng, 24, 20),
        (sales, 14, 14),
        (support, 11, 8),
        (legal, 3, 3),
    ] {
        for i in 0..n.min(skip) {
            on(first + i, &varied(i), Ev::Nav("linkedin"));
        }
    }
    // Writers on LinkedIn, one activity each (some twice).
    let writes: [(usize, &str, usize); 15] = [
        (eng, "post", 1),
        (eng + 1, "post", 2),
        (eng + 2, "comment", 1),
        (eng + 3, "react", 2),
        (eng + 4, "share", 1),
        (eng + 5, "upload", 1),
        (eng + 6, "message", 1),
        (eng + 7, "write", 1),
        (sales, "react", 1),
        (sales + 1, "comment", 1),
        (sales + 2, "post", 1),
        (sales + 3, "unknown", 1),
        (support, "message", 1),
        (support + 1, "react", 1),
        (legal, "post", 1),
    ];
    for (who, a, times) in writes {
        for _ in 0..times {
            on(who, &[1], Ev::Act("linkedin", a));
        }
    }
    on(legal + 2, &[2], Ev::RefusedAct("linkedin", "post"));
    // YouTube, Reddit, Mastodon (tunnels).
    for i in 0..18 {
        on(eng + i, &[i % 3], Ev::Tunnel("youtube"));
    }
    for i in 0..7 {
        on(support + i, &[i % 3, (i + 1) % 3], Ev::Tunnel("youtube"));
    }
    for i in 0..12 {
        on(guests + i, &[i % 3], Ev::Tunnel("youtube"));
    }
    for i in 0..10 {
        on(eng + i, &[0, 2], Ev::Tunnel("reddit"));
    }
    on(sales, &[1], Ev::Tunnel("reddit"));
    on(eng + 10, &[0], Ev::Tunnel("mastodon"));
    on(eng + 11, &[1, 2], Ev::Tunnel("mastodon"));
    // X (inspected) in support.
    for i in 0..6 {
        on(support + i, &[i % 3], Ev::Nav("x"));
    }
    on(support, &[1], Ev::Act("x", "post"));
    on(support + 1, &[2], Ev::Act("x", "comment"));
    // TikTok refused: the site (demand) and its tracker (not demand).
    for i in 0..6 {
        on(sales + i, &[i % 3], Ev::Refused("tiktok", true));
    }
    on(legal + 1, &[0], Ev::Refused("tiktok", true));
    on(support + 9, &[2], Ev::Refused("tiktok", true));
    for i in 0..24 {
        on(eng + i, &[1], Ev::Refused("tiktok", false));
    }
    // Instagram under a rule in report mode.
    for i in 0..7 {
        on(eng + i, &[i % 3], Ev::Would("instagram"));
    }
    // Facebook under a warn rule: warned in every department and among the
    // guests, some continue and read; Pinterest's tunnels pass unshown.
    for (first, warned, continued) in [(eng, 10, 6), (sales, 6, 2), (legal, 2, 1), (guests, 4, 1)] {
        for i in 0..warned {
            on(first + i, &[i % 3], Ev::Warn("facebook"));
        }
        for i in 0..continued {
            on(first + i, &[i % 3], Ev::Continue("facebook"));
            on(first + i, &[i % 3, (i + 1) % 3], Ev::Ack("facebook"));
        }
    }
    for (first, n) in [(eng + 12, 8), (support, 3), (legal + 2, 1)] {
        for i in 0..n {
            on(first + i, &[(i + 1) % 3], Ev::Unshown("pinterest"));
        }
    }
    // Access requests from block pages, in nested groups: TikTok from most
    // of sales (managers among them, one twice), one lawyer and one in
    // support; X from oncall and other engineers; Instagram from a few
    // guests and one manager in legal.
    for i in 0..6 {
        on(sales + i, &[i % 3], Ev::Ask("tiktok"));
    }
    on(sales, &[2], Ev::Ask("tiktok"));
    on(legal + 1, &[0], Ev::Ask("tiktok"));
    on(support + 9, &[2], Ev::Ask("tiktok"));
    for i in [0, 1, 4, 8, 9, 10] {
        on(eng + i, &[i % 3], Ev::Ask("x"));
    }
    on(eng + 2, &[1], Ev::Ask("x"));
    for i in 0..3 {
        on(guests + i, &[i % 3], Ev::Ask("instagram"));
    }
    on(legal, &[1], Ev::Ask("instagram"));
    (people, ev)
}

/// A record a warn rule decided, with what it did.
fn warn(l: Line, outcome: &str) -> Line {
    l.set("action", json!("warn"))
        .set("rule", json!("warn-facebook"))
        .set("warn", json!(outcome))
}

fn log_lines(people: &[Person], events: &Events) -> Vec<Line> {
    let mut out = Vec::new();
    for (n, &(who, day, e)) in events.iter().enumerate() {
        let p = &people[who];
        let time = format!(
            "{}T{:02}:{:02}:{:02}Z",
            DAYS[day],
            8 + n % 9,
            n % 60,
            n % 53
        );
        let groups: Vec<&str> = p.groups.clone();
        let line = |platform: &str| Line::tunnel(&time, &p.id, &groups, platform);
        out.push(match e {
            Ev::Nav(pl) => line(pl).act("read", true),
            Ev::Tunnel(pl) => line(pl),
            Ev::Act(pl, a) => line(pl).act(a, false),
            Ev::Refused(pl, primary) => {
                let l = line(pl).refused().set("rule", json!("no-tiktok"));
                if primary {
                    l
                } else {
                    l.set("class", json!("embedded"))
                        .set("host", json!("pixel.tiktok.example"))
                        .set("foreground", json!(false))
                }
            }
            Ev::RefusedAct(pl, a) => line(pl)
                .act(a, false)
                .refused()
                .set("rule", json!("legal-read-only")),
            Ev::Would(pl) => line(pl)
                .set("action", json!("block"))
                .set("mode", json!("report"))
                .set("rule", json!("instagram-dry-run")),
            // The warning page of a page read: held, so not a read either.
            Ev::Warn(pl) => warn(line(pl).act("read", true), "shown").set("status", json!(200)),
            Ev::Continue(pl) => warn(line(pl).act("read", true), "continued")
                .set("activity", Value::Null)
                .set("status", json!(303)),
            Ev::Ack(pl) => warn(line(pl).act("read", true), "acknowledged"),
            Ev::Unshown(pl) => warn(line(pl), "unshown"),
            Ev::Ask(pl) => line(pl)
                .set("kind", json!("access-request"))
                .set("method", json!("POST"))
                .set("class", Value::Null)
                .set("foreground", json!(false))
                .set("action", json!("block"))
                .set("rule", json!("no-social"))
                .set("request_reason", json!("work")),
        });
    }
    out.sort_by(|a, b| a.0["time"].as_str().cmp(&b.0["time"].as_str()));
    out
}

type Persons = BTreeSet<usize>;
/// (group set, platform or "*") → persons.
type Atoms = BTreeMap<(Vec<&'static str>, String), Persons>;

/// How a measure adds up across platforms.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Plat {
    /// One number per group.
    Groups,
    /// The "*" platform is the sum of the platforms.
    Sum,
    /// Each platform column (and "*", a union) on its own.
    Columns,
}

/// Ground truth: per measure, the persons behind each atom.
struct Truth {
    /// measure → atoms
    atoms: BTreeMap<String, Atoms>,
}

fn truth(people: &[Person], events: &Events) -> Truth {
    let mut atoms: BTreeMap<String, Atoms> = BTreeMap::new();
    let mut put = |measure: &str, who: usize, platform: &str| {
        atoms
            .entry(measure.to_owned())
            .or_default()
            .entry((people[who].groups.clone(), platform.to_owned()))
            .or_default()
            .insert(who);
    };
    let mut active_days: BTreeMap<usize, BTreeSet<usize>> = BTreeMap::new();
    let mut acts: BTreeMap<(usize, &str), BTreeSet<&str>> = BTreeMap::new();
    for &(who, day, e) in events {
        // An access request is no traffic: it counts only itself.
        if let Ev::Ask(p) = e {
            put("asked", who, p);
            continue;
        }
        put("members", who, "*");
        let active = match e {
            Ev::Nav(p) | Ev::Ack(p) | Ev::Tunnel(p) | Ev::Would(p) | Ev::Unshown(p) => Some(p),
            _ => None,
        };
        if let Some(p) = active {
            put("active", who, p);
            put(&format!("daily {}", DAYS[day]), who, p);
            active_days.entry(who).or_default().insert(day);
        }
        match e {
            Ev::Nav(p) | Ev::Ack(p) => {
                put("reads", who, p);
                acts.entry((who, p)).or_default().insert("read");
            }
            Ev::Act(p, a) => {
                let measure = match a {
                    "post" => "posts",
                    "comment" => "comments",
                    "react" => "reactions",
                    "share" => "shares",
                    "upload" => "uploads",
                    "message" => "messages",
                    "login" => "logins",
                    _ => "generic",
                };
                put(measure, who, p);
                acts.entry((who, p)).or_default().insert(a);
            }
            Ev::Refused(p, true) | Ev::RefusedAct(p, _) => put("blocked", who, p),
            Ev::Would(p) => put("would", who, p),
            Ev::Warn(p) => {
                put("warned", who, p);
                put("shows", who, p);
            }
            Ev::Continue(p) => {
                put("warned", who, p);
                put("continued", who, p);
            }
            Ev::Unshown(p) => put("unshown", who, p),
            _ => {}
        }
    }
    for ((who, p), a) in acts {
        let writes = a
            .iter()
            .any(|a| !matches!(*a, "read" | "login" | "unknown"));
        if writes {
            put("contributors", who, p);
        } else if a.contains("read") || a.contains("login") {
            put("readers", who, p);
        }
    }
    for (who, days) in active_days {
        if days.len() >= 2 {
            put("regular", who, "*");
        }
    }
    Truth { atoms }
}

/// Where each measure is published: (table, column, how it adds up).
fn measures() -> Vec<(&'static str, &'static str, &'static str, Plat)> {
    let mut v = vec![
        ("members", "groups", "active_members", Plat::Groups),
        ("regular", "groups", "regular_users", Plat::Groups),
        ("active", "platforms", "active_users", Plat::Columns),
        ("active", "platforms", "sessions", Plat::Sum),
        ("active", "platforms", "active_minutes", Plat::Sum),
        ("blocked", "platforms", "blocked_attempts", Plat::Sum),
        ("blocked", "platforms", "blocked_persons", Plat::Sum),
        ("would", "platforms", "would_block_attempts", Plat::Sum),
        ("readers", "contribution", "readers", Plat::Columns),
        (
            "contributors",
            "contribution",
            "contributors",
            Plat::Columns,
        ),
    ];
    // What warn rules did: persons (distinct; "*" a union) and counts.
    v.extend([
        ("warned", "warnings", "warned_persons", Plat::Columns),
        ("continued", "warnings", "continued_persons", Plat::Columns),
        ("shows", "warnings", "warnings_shown", Plat::Sum),
        ("continued", "warnings", "continues", Plat::Sum),
        ("unshown", "warnings", "unshown_tunnels", Plat::Sum),
    ]);
    // Requested access: requests add up over platforms, and the persons
    // who asked are shown with them (the stricter rule for both).
    v.extend([
        ("asked", "access_requests", "persons", Plat::Sum),
        ("asked", "access_requests", "requests", Plat::Sum),
    ]);
    for m in [
        "reads",
        "logins",
        "posts",
        "comments",
        "reactions",
        "shares",
        "uploads",
        "messages",
        "generic",
    ] {
        v.push((m, "contribution", m, Plat::Sum));
    }
    v
}

/// The published cells of one table column: (group, platform, day) → shown.
fn cells(strategy: &Value, table: &str, column: &str) -> Vec<(String, String, String, bool)> {
    strategy[table]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["group"].as_str().unwrap().to_owned(),
                r.get("platform")
                    .and_then(Value::as_str)
                    .unwrap_or("*")
                    .to_owned(),
                r.get("day")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
                r[column].is_number(),
            )
        })
        .collect()
}

/// Exact rationals, enough for small 0/1 systems.
#[derive(Clone, Copy, PartialEq, Debug)]
struct Q(i128, i128);

impl Q {
    const ZERO: Q = Q(0, 1);
    fn new(n: i128, d: i128) -> Q {
        fn gcd(a: i128, b: i128) -> i128 {
            if b == 0 {
                a.abs()
            } else {
                gcd(b, a % b)
            }
        }
        let g = gcd(n, d).max(1) * d.signum();
        Q(n / g, d / g)
    }
    fn sub(self, o: Q) -> Q {
        Q::new(self.0 * o.1 - o.0 * self.1, self.1 * o.1)
    }
    fn mul(self, o: Q) -> Q {
        Q::new(self.0 * o.0, self.1 * o.1)
    }
    fn div(self, o: Q) -> Q {
        Q::new(self.0 * o.1, self.1 * o.0)
    }
}

/// Reduced row echelon form; returns the pivot columns.
fn rref(m: &mut [Vec<Q>]) -> Vec<usize> {
    let cols = m.first().map_or(0, Vec::len);
    let mut pivots = Vec::new();
    let mut r = 0;
    for c in 0..cols {
        let Some(p) = (r..m.len()).find(|&i| m[i][c] != Q::ZERO) else {
            continue;
        };
        m.swap(r, p);
        let pv = m[r][c];
        for x in m[r].iter_mut() {
            *x = x.div(pv);
        }
        for i in 0..m.len() {
            if i != r && m[i][c] != Q::ZERO {
                let f = m[i][c];
                let row = m[r].clone();
                for (x, y) in m[i].iter_mut().zip(row) {
                    *x = x.sub(f.mul(y));
                }
            }
        }
        pivots.push(c);
        r += 1;
    }
    pivots
}

/// A basis of the null space of `rows` (each over `n` columns), as one
/// vector per column: `null[col]` is that column's coordinates.
fn null_rows(rows: &[Vec<Q>], n: usize) -> Vec<Vec<Q>> {
    let mut m = rows.to_vec();
    let pivots = if m.is_empty() {
        Vec::new()
    } else {
        rref(&mut m)
    };
    let free: Vec<usize> = (0..n).filter(|c| !pivots.contains(c)).collect();
    let mut null = vec![vec![Q::ZERO; free.len()]; n];
    for (j, &f) in free.iter().enumerate() {
        null[f][j] = Q(1, 1);
        for (r, &p) in pivots.iter().enumerate() {
            null[p][j] = Q::ZERO.sub(m[r][f]);
        }
    }
    null
}

/// Searches one table (a measure in one platform column or in all of
/// them, on one day or the period) for a leak; returns a description.
fn attack(
    atoms: &[(Vec<&'static str>, String, &Persons)],
    shown: &[(String, String)],
    sum_platforms: bool,
    k: usize,
) -> Option<String> {
    let covers = |(g, p): &(String, String), (gs, ap, _): &(Vec<&str>, String, &Persons)| {
        (g == "*" || gs.iter().any(|x| x == g)) && (!sum_platforms || p == "*" || p == ap)
    };
    let rows: Vec<Vec<Q>> = shown
        .iter()
        .map(|b| {
            atoms
                .iter()
                .map(|a| if covers(b, a) { Q(1, 1) } else { Q::ZERO })
                .collect()
        })
        .collect();
    let null = null_rows(&rows, atoms.len());
    let small: Vec<usize> = (0..atoms.len()).filter(|&i| atoms[i].2.len() < k).collect();
    // A leak is a dependency among the null rows of small atoms. Those
    // dependencies form the null space of the matrix whose columns are the
    // small atoms' null rows: only atoms some dependency uses can be in a
    // leak (the support of a dependency inside a leak is a leak too).
    let width = null.first().map_or(0, Vec::len);
    let by_coordinate: Vec<Vec<Q>> = (0..width)
        .map(|j| small.iter().map(|&a| null[a][j]).collect())
        .collect();
    let deps = null_rows(&by_coordinate, small.len());
    let candidates: Vec<usize> = small
        .iter()
        .zip(&deps)
        .filter(|(_, d)| d.iter().any(|&x| x != Q::ZERO))
        .map(|(&a, _)| a)
        .collect();
    /// Every set of candidate atoms holding fewer than k persons, depth
    /// first; `basis` holds the chosen atoms' null rows in echelon form
    /// (pivot, row), so that each step reduces one row.
    #[allow(clippy::too_many_arguments)]
    fn search(
        from: usize,
        chosen: &mut Vec<usize>,
        basis: &mut Vec<(usize, Vec<Q>)>,
        persons: &Persons,
        small: &[usize],
        atoms: &[(Vec<&'static str>, String, &Persons)],
        null: &[Vec<Q>],
        k: usize,
    ) -> Option<Vec<usize>> {
        for i in from..small.len() {
            let a = small[i];
            let union: Persons = persons.union(atoms[a].2).copied().collect();
            if union.len() >= k {
                continue;
            }
            chosen.push(a);
            let mut row = null[a].clone();
            for (pivot, b) in basis.iter() {
                let f = row[*pivot];
                if f != Q::ZERO {
                    for (x, &y) in row.iter_mut().zip(b) {
                        *x = x.sub(f.mul(y));
                    }
                }
            }
            let Some(pivot) = row.iter().position(|&x| x != Q::ZERO) else {
                return Some(chosen.clone()); // dependent: a leak
            };
            let pv = row[pivot];
            for x in row.iter_mut() {
                *x = x.div(pv);
            }
            basis.push((pivot, row));
            if let Some(found) = search(i + 1, chosen, basis, &union, small, atoms, null, k) {
                return Some(found);
            }
            basis.pop();
            chosen.pop();
        }
        None
    }
    if candidates.is_empty() {
        return None;
    }
    search(
        0,
        &mut Vec::new(),
        &mut Vec::new(),
        &Persons::new(),
        &candidates,
        atoms,
        &null,
        k,
    )
    .map(|set| {
        let names: Vec<String> = set
            .iter()
            .map(|&a| {
                format!(
                    "{}/{} ({} persons)",
                    atoms[a].0.join("+"),
                    atoms[a].1,
                    atoms[a].2.len()
                )
            })
            .collect();
        names.join(", ")
    })
}

/// Every leak the attacker finds in a strategy section.
fn leaks(strategy: &Value, truth: &Truth, k: usize) -> Vec<String> {
    let mut found = Vec::new();
    let mut searched = BTreeSet::new();
    let mut measures = measures();
    for d in DAYS {
        measures.push((
            Box::leak(format!("daily {d}").into_boxed_str()),
            "daily",
            "active_users",
            Plat::Columns,
        ));
    }
    for (measure, table, column, plat) in measures {
        let Some(atoms) = truth.atoms.get(measure) else {
            continue;
        };
        let day = measure.strip_prefix("daily ").unwrap_or("");
        let published: Vec<(String, String, bool)> = cells(strategy, table, column)
            .into_iter()
            .filter(|c| c.2 == day)
            .map(|(g, p, _, s)| (g, p, s))
            .collect();
        /// (platform column, its atoms)
        type Tables = Vec<(String, Vec<(Vec<&'static str>, String, Persons)>)>;
        let tables: Tables = match plat {
            Plat::Groups | Plat::Sum => vec![(
                "all".to_owned(),
                atoms
                    .iter()
                    .map(|((gs, p), s)| (gs.clone(), p.clone(), s.clone()))
                    .collect(),
            )],
            Plat::Columns => {
                let mut cols: BTreeMap<String, BTreeMap<Vec<&'static str>, Persons>> =
                    BTreeMap::new();
                for ((gs, p), s) in atoms {
                    for col in [p.as_str(), "*"] {
                        cols.entry(col.to_owned())
                            .or_default()
                            .entry(gs.clone())
                            .or_default()
                            .extend(s);
                    }
                }
                cols.into_iter()
                    .map(|(col, m)| {
                        (
                            col.clone(),
                            m.into_iter().map(|(gs, s)| (gs, col.clone(), s)).collect(),
                        )
                    })
                    .collect()
            }
        };
        for (col, atoms) in tables {
            let shown: Vec<(String, String)> = published
                .iter()
                .filter(|(_, p, s)| *s && (plat != Plat::Columns || *p == col))
                .map(|(g, p, _)| (g.clone(), p.clone()))
                .collect();
            let atoms: Vec<(Vec<&'static str>, String, &Persons)> = atoms
                .iter()
                .map(|(gs, p, s)| (gs.clone(), p.clone(), s))
                .collect();
            // Sessions and minutes are shown and hidden together: one
            // search does for both.
            let key = (measure, col.clone(), plat, shown.clone());
            if !searched.insert(key) {
                continue;
            }
            if let Some(leak) = attack(&atoms, &shown, plat == Plat::Sum, k) {
                found.push(format!("{table}.{column} [{col}] {day}: {leak}"));
            }
        }
    }
    found
}

/// The strategy section of `report` with every number that fewer than k
/// persons stand behind hidden, and nothing else: per-cell suppression.
fn per_cell_only(report_k1: &Value, truth: &Truth, k: usize) -> Value {
    let mut s = report_k1["strategy"].clone();
    for (measure, table, column, plat) in measures() {
        let atoms = truth.atoms.get(measure).cloned().unwrap_or_default();
        for row in s[table].as_array_mut().unwrap() {
            let g = row["group"].as_str().unwrap().to_owned();
            let p = row
                .get("platform")
                .and_then(Value::as_str)
                .unwrap_or("*")
                .to_owned();
            let persons: Persons = atoms
                .iter()
                .filter(|((gs, ap), _)| {
                    (g == "*" || gs.iter().any(|x| *x == g))
                        && (plat == Plat::Groups || p == "*" || *ap == p)
                })
                .flat_map(|(_, s)| s.iter().copied())
                .collect();
            if !persons.is_empty() && persons.len() < k {
                row[column] = json!("suppressed");
            }
        }
    }
    s
}

#[test]
fn no_combination_of_published_numbers_singles_out_fewer_than_k_persons() {
    let (people, events) = company();
    let truth = truth(&people, &events);
    let dir = tempfile::tempdir().unwrap();
    let log = write_log(dir.path(), "access.log", &log_lines(&people, &events));
    let mut args = ReportArgs::new(vec![log]);
    args.k = 1;
    let all = json_of(&args);
    // The scenario has the small groups the attacks need.
    let legal = |m: &str| {
        all["strategy"]["groups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["group"] == "legal")
            .unwrap()[m]
            .clone()
    };
    assert_eq!(legal("active_members"), 3);

    // Per-cell suppression alone leaks, in the ways issue #13 describes.
    for k in [5, 10] {
        let naive = per_cell_only(&all, &truth, k);
        let found = leaks(&naive, &truth, k);
        assert!(found.len() >= 3, "k={k}: {found:#?}");
        if k != 5 {
            continue;
        }
        assert!(
            found
                .iter()
                .any(|l| l.starts_with("groups.active_members") && l.contains("legal")),
            "k={k}: staff minus the other departments gives a small one away: {found:#?}"
        );
        assert!(
            found.iter().any(|l| l.starts_with("platforms.sessions")),
            "k={k}: a group's total minus its platform rows: {found:#?}"
        );
        assert!(
            found.iter().any(|l| l.starts_with("daily.")),
            "k={k}: a day's all-groups row minus the groups: {found:#?}"
        );
        assert!(
            found
                .iter()
                .any(|l| l.starts_with("warnings.warned_persons") && l.contains("legal")),
            "k={k}: staff's warned persons minus the other departments': {found:#?}"
        );
        assert!(
            found.iter().any(|l| l.starts_with("access_requests.")),
            "k={k}: who asked for access, by subtraction: {found:#?}"
        );
    }

    // The report's own protection: nothing found, for k = 5 and 10.
    for k in [5, 10] {
        args.k = k as u64;
        let r = json_of(&args);
        let s = &r["strategy"];
        let found = leaks(s, &truth, k);
        assert!(found.is_empty(), "k={k}: recoveries found: {found:#?}");
        // Shown numbers are exact (no noise), and something is still shown.
        let shown_all = &s["platforms"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["group"] == "*" && r["platform"] == "*")
            .unwrap()["active_users"];
        assert!(shown_all.is_number(), "k={k}: the company total is shown");
        assert!(
            k != 5
                || s["access_requests"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|r| r["persons"].is_number() && r["group"] != "*"),
            "k={k}: some group's requested access is shown: {:#}",
            s["access_requests"]
        );
        for (table, column) in [
            ("platforms", "active_users"),
            ("contribution", "posts"),
            ("groups", "active_members"),
            ("warnings", "warned_persons"),
            ("warnings", "continues"),
            ("access_requests", "persons"),
            ("access_requests", "requests"),
        ] {
            let key = |r: &Value| {
                (
                    r["group"].clone(),
                    r.get("platform").cloned(),
                    r.get("day").cloned(),
                )
            };
            for a in s[table].as_array().unwrap() {
                let b = all["strategy"][table]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|b| key(b) == key(a))
                    .unwrap();
                if a[column].is_number() {
                    assert_eq!(a[column], b[column], "k={k} {table}.{column}: {a}");
                }
            }
        }
        // A suppressed cell says "suppressed", never a bound or a number.
        assert!(!serde_json::to_string(s).unwrap().contains("<"), "k={k}");
    }
}
