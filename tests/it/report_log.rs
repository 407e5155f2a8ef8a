//! `socialgate report` end to end through the library: synthetic access logs
//! in a temp dir, the report built with `socialgate::report`, exact numbers
//! checked against hand-computed ones.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use socialgate::report::{self, build_report, Format, ReportArgs};

/// One access-log line with sensible defaults; tweak with the builder.
pub(crate) struct Line(pub(crate) Value);

impl Line {
    pub(crate) fn tunnel(time: &str, user: &str, groups: &[&str], platform: &str) -> Line {
        Line(json!({
            "time": time, "kind": "tunnel", "client": "10.0.0.9", "user": user,
            "auth": "basic", "groups": groups, "group": groups.first(),
            "method": "CONNECT", "host": format!("www.{platform}.com"), "port": 443,
            "sni": format!("www.{platform}.com"), "platform": platform, "category": "social",
            "class": "primary", "activity": null, "foreground": true,
            "action": "allow", "mode": "enforce", "rule": "r-allow", "reason": "rule-matched",
            "status": 200, "bytes_up": 1000, "bytes_down": 20000, "duration_ms": 1000
        }))
    }
    pub(crate) fn set(mut self, k: &str, v: Value) -> Line {
        self.0[k] = v;
        self
    }
    pub(crate) fn refused(self) -> Line {
        self.set("action", json!("block"))
            .set("status", json!(403))
            .set("bytes_up", json!(0))
            .set("bytes_down", json!(0))
    }
    fn write_act(self) -> Line {
        self.act("write", false)
    }
    /// An inspected request with this activity: GET for `read` (a page
    /// navigation when `foreground`), POST for the others.
    pub(crate) fn act(self, activity: &str, foreground: bool) -> Line {
        let method = if activity == "read" { "GET" } else { "POST" };
        self.set("kind", json!("request"))
            .set("method", json!(method))
            .set("activity", json!(activity))
            .set("foreground", json!(foreground))
    }
}

pub(crate) fn write_log(dir: &Path, name: &str, lines: &[Line]) -> PathBuf {
    let path = dir.join(name);
    let mut f = std::fs::File::create(&path).unwrap();
    for l in lines {
        writeln!(f, "{}", l.0).unwrap();
    }
    path
}

fn users(prefix: &str, n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("p:{prefix}{i:03}")).collect()
}

/// Sales: `n` persons on linkedin, each with sessions 09:00–09:04 and 11:00,
/// one write each, and two refused tiktok requests each. Dev: 5 persons who
/// only browse a non-catalog host.
fn scenario(n: usize) -> Vec<Line> {
    let mut v = Vec::new();
    for u in users("s", n) {
        let g = &["sales"];
        v.push(Line::tunnel("2026-03-02T09:00:00Z", &u, g, "linkedin"));
        v.push(Line::tunnel("2026-03-02T09:04:00Z", &u, g, "linkedin"));
        v.push(Line::tunnel("2026-03-02T11:00:00Z", &u, g, "linkedin"));
        v.push(Line::tunnel("2026-03-02T11:00:10Z", &u, g, "linkedin").write_act());
        v.push(Line::tunnel("2026-03-02T10:00:00Z", &u, g, "tiktok").refused());
        v.push(Line::tunnel("2026-03-03T10:00:00Z", &u, g, "tiktok").refused());
    }
    for u in users("d", 5) {
        v.push(
            Line::tunnel("2026-03-02T09:30:00Z", &u, &["dev"], "x")
                .set("platform", Value::Null)
                .set("class", Value::Null)
                .set("host", json!("docs.rs")),
        );
    }
    v
}

fn args(logs: Vec<PathBuf>) -> ReportArgs {
    ReportArgs::new(logs)
}

pub(crate) fn json_of(a: &ReportArgs) -> Value {
    serde_json::to_value(build_report(a).unwrap()).unwrap()
}

pub(crate) fn row<'a>(rows: &'a Value, group: &str, platform: &str) -> &'a Value {
    rows.as_array()
        .unwrap()
        .iter()
        .find(|r| r["group"] == group && r["platform"] == platform)
        .unwrap_or_else(|| panic!("no row {group}/{platform} in {rows:#}"))
}

#[test]
fn adoption_active_time_and_sessions_are_exact() {
    let dir = tempfile::tempdir().unwrap();
    let log = write_log(dir.path(), "access.log", &scenario(5));
    let r = json_of(&args(vec![log]));
    let s = &r["strategy"];
    let li = row(&s["platforms"], "sales", "linkedin");
    assert_eq!(li["active_users"], 5);
    assert_eq!(li["adoption"], 1.0);
    // Per person: session 09:00–09:04 (4 + 1 min) and 11:00 (1 min).
    assert_eq!(li["sessions"], 10);
    assert_eq!(li["active_minutes"], 30.0);
    assert_eq!(li["minutes_per_active_user"], 6.0);
    // Each wrote once, with no signature naming the write: contributors,
    // and generic writes are all of their non-read activity.
    let c = row(&s["contribution"], "sales", "linkedin");
    assert_eq!(c["contributors"], 5);
    assert_eq!(c["readers"], 0);
    assert_eq!(c["generic"], 5);
    assert_eq!(c["posts"], 0);
    assert_eq!(c["generic_share"], 1.0);
    let tt = row(&s["platforms"], "sales", "tiktok");
    assert_eq!(tt["blocked_attempts"], 10);
    assert_eq!(tt["blocked_persons"], 5);
    assert_eq!(tt["active_users"], 0); // nobody: shown, it says nothing about anyone
                                       // "*" = all members: 10, 5 of them on linkedin.
    assert_eq!(row(&s["platforms"], "*", "linkedin")["adoption"], 0.5);
    let members: Vec<_> = s["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["active_members"].clone())
        .collect();
    assert_eq!(members, [json!(10), json!(5), json!(5)]);
    // Days and trends.
    let day1 = s["daily"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["day"] == "2026-03-02" && d["group"] == "sales" && d["platform"] == "linkedin")
        .unwrap();
    assert_eq!(day1["active_users"], 5);
    // Heat map: Monday 09:00 holds 2 hits × 5 persons.
    assert_eq!(s["hour_of_week"]["foreground_requests"][0][9], 10);
    assert_eq!(s["hour_of_week"]["foreground_requests"][0][10], 0);
    // Security.
    let sec = &r["security"];
    assert_eq!(sec["totals"]["refused"], 10);
    assert_eq!(sec["totals"]["refused_primary"], 10);
    assert_eq!(sec["top_refused_platforms"][0]["platform"], "tiktok");
    assert_eq!(sec["top_refused_persons"][0]["requests"], 2);
    assert!(sec["top_refused_persons"][0]["name"].is_null());
    let by_rule = &sec["refused_by_rule"][0];
    assert_eq!(
        (by_rule["rule"].as_str(), by_rule["requests"].as_u64()),
        (Some("r-allow"), Some(10))
    );
    // Maturity: sales uses LinkedIn on one of two days (not regular yet),
    // and every member was refused TikTok: policy holds it back.
    let m = s["maturity"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["group"] == "sales")
        .unwrap();
    assert_eq!(m["label"], "exploring");
    assert_eq!(m["held_back_by"], "policy");
    assert_eq!(m["blocked_share"], 1.0);
    assert_eq!(r["settings"]["regular_days"], 2);
    assert_eq!(r["input"]["records"], 35);
}

/// Marketing (m1–m6) and sales (s1–s5), all also in staff, on inspected
/// LinkedIn (and a little X), with known readers and contributors. Day 1:
///
/// | person | LinkedIn | X |
/// |---|---|---|
/// | m1 | read (page), read, post, comment, comment | post |
/// | m2 | read (page), react ×3 | |
/// | m3 | read (page), share, upload | |
/// | m4 | read (page), read | |
/// | m5 | login, read (page) | |
/// | m6 | message ×2, a write no signature names | |
/// | s1 | read (page), a request that may read or write (`unknown`) | |
/// | s2 | read (page), post — refused (read-only rule) | |
/// | s3 | read (page) | read (page) |
/// | s4, s5 | read (page) | |
///
/// Day 2: everyone but m6 reads one LinkedIn page.
fn contributors_log() -> Vec<Line> {
    let mut v = Vec::new();
    let mut n = 0;
    let mut at = |day: u32| {
        n += 1;
        format!("2026-03-0{}T10:{:02}:{:02}Z", 1 + day, n / 60, n % 60)
    };
    let mk = |time: String, who: &str, platform: &str, activity: &str, fg: bool| {
        let groups: &[&str] = if who.starts_with('m') {
            &["marketing", "staff"]
        } else {
            &["sales", "staff"]
        };
        Line::tunnel(&time, &format!("p:{who}"), groups, platform).act(activity, fg)
    };
    /// (person, platform, [(activity, a page?)])
    type Day = [(&'static str, &'static str, &'static [(&'static str, bool)])];
    let day1: &Day = &[
        (
            "m1",
            "linkedin",
            &[
                ("read", true),
                ("read", false),
                ("post", false),
                ("comment", false),
                ("comment", false),
            ],
        ),
        ("m1", "x", &[("post", false)]),
        (
            "m2",
            "linkedin",
            &[
                ("read", true),
                ("react", false),
                ("react", false),
                ("react", false),
            ],
        ),
        (
            "m3",
            "linkedin",
            &[("read", true), ("share", false), ("upload", false)],
        ),
        ("m4", "linkedin", &[("read", true), ("read", false)]),
        ("m5", "linkedin", &[("login", false), ("read", true)]),
        (
            "m6",
            "linkedin",
            &[("message", false), ("message", false), ("write", false)],
        ),
        ("s1", "linkedin", &[("read", true), ("unknown", false)]),
        ("s2", "linkedin", &[("read", true)]),
        ("s3", "linkedin", &[("read", true)]),
        ("s3", "x", &[("read", true)]),
        ("s4", "linkedin", &[("read", true)]),
        ("s5", "linkedin", &[("read", true)]),
    ];
    for (who, platform, acts) in day1 {
        for (a, fg) in acts.iter() {
            v.push(mk(at(1), who, platform, a, *fg));
        }
    }
    v.push(
        mk(at(1), "s2", "linkedin", "post", false)
            .refused()
            .set("rule", json!("sales-read-only")),
    );
    for who in ["m1", "m2", "m3", "m4", "m5", "s1", "s2", "s3", "s4", "s5"] {
        v.push(mk(at(2), who, "linkedin", "read", true));
    }
    v
}

#[test]
fn readers_contributors_and_activities_match_hand_computed_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let log = write_log(dir.path(), "a.log", &contributors_log());
    let mut a = args(vec![log]);
    a.k = 1; // every number shown: the arithmetic alone
    let r = json_of(&a);
    let c = &r["strategy"]["contribution"];
    let m = row(c, "marketing", "linkedin");
    // Readers: m4, m5. Contributors: m1, m2, m3, m6 (m6 only by a generic write).
    assert_eq!(
        (m["readers"].as_u64(), m["contributors"].as_u64()),
        (Some(2), Some(4))
    );
    assert_eq!(m["contributor_share"], 4.0 / 6.0);
    // Reads: m1 2 + m2 1 + m3 1 + m4 2 + m5 1 on day 1, five on day 2.
    assert_eq!(m["reads"], 12);
    let counts: Vec<u64> = [
        "logins",
        "posts",
        "comments",
        "reactions",
        "shares",
        "uploads",
        "messages",
        "generic",
    ]
    .iter()
    .map(|f| m[*f].as_u64().unwrap())
    .collect();
    assert_eq!(counts, [1, 1, 2, 3, 1, 1, 2, 1]);
    // Generic share: 1 of the 12 requests that are not reads.
    assert_eq!(m["generic_share"], 1.0 / 12.0);
    let s = row(c, "sales", "linkedin");
    // s1's unknown request is generic but no contribution; s2's post was refused.
    assert_eq!(
        (s["readers"].as_u64(), s["contributors"].as_u64()),
        (Some(5), Some(0))
    );
    assert_eq!(
        (s["reads"].as_u64(), s["generic"].as_u64()),
        (Some(10), Some(1))
    );
    assert_eq!(s["generic_share"], 1.0);
    assert_eq!(s["contributor_share"], 0.0);
    let st = row(c, "staff", "linkedin");
    assert_eq!(
        (st["readers"].as_u64(), st["contributors"].as_u64()),
        (Some(7), Some(4))
    );
    assert_eq!(
        (st["reads"].as_u64(), st["generic"].as_u64()),
        (Some(22), Some(2))
    );
    // Not reads: login 1, post 1, comment 2, react 3, share 1, upload 1,
    // message 2, generic 2 = 13.
    assert_eq!(st["generic_share"], 2.0 / 13.0);
    let mx = row(c, "marketing", "x");
    assert_eq!(
        (
            mx["contributors"].as_u64(),
            mx["posts"].as_u64(),
            mx["readers"].as_u64()
        ),
        (Some(1), Some(1), Some(0))
    );
    let all = row(c, "*", "*");
    assert_eq!(
        (all["readers"].as_u64(), all["contributors"].as_u64()),
        (Some(7), Some(4))
    );
    assert_eq!(
        (all["posts"].as_u64(), all["reads"].as_u64()),
        (Some(2), Some(23))
    );
    // The refused post is blocked demand, not a contribution.
    let p = row(&r["strategy"]["platforms"], "sales", "linkedin");
    assert_eq!(
        (
            p["blocked_attempts"].as_u64(),
            p["blocked_persons"].as_u64()
        ),
        (Some(1), Some(1))
    );
    assert_eq!(
        row(&r["strategy"]["platforms"], "marketing", "linkedin")["active_users"],
        5
    );
    // Regular users: active on both days (m6 never opened a page).
    let groups = r["strategy"]["groups"].as_array().unwrap();
    let regular: Vec<(&str, u64)> = groups
        .iter()
        .map(|g| {
            (
                g["group"].as_str().unwrap(),
                g["regular_users"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        regular,
        [("*", 10), ("marketing", 5), ("sales", 5), ("staff", 10)]
    );
    // Maturity uses contribution: marketing contributes (4 of 6) on one
    // platform; sales reads regularly, writes nothing, and one in five was
    // refused: policy holds it back.
    let maturity = |r: &Value, g: &str| {
        r["strategy"]["maturity"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["group"] == g)
            .unwrap()
            .clone()
    };
    let mk = maturity(&r, "marketing");
    assert_eq!(
        (mk["stage"].as_u64(), mk["label"].as_str()),
        (Some(4), Some("contributing"))
    );
    assert_eq!(mk["held_back_by"], "breadth");
    assert!(
        mk["next_step"].as_str().unwrap().starts_with("Try x"),
        "{mk}"
    );
    let sl = maturity(&r, "sales");
    assert_eq!(
        (sl["stage"].as_u64(), sl["held_back_by"].as_str()),
        (Some(3), Some("policy"))
    );
    assert_eq!(sl["blocked_share"], 0.2);
    assert!(
        sl["evidence"]
            .as_str()
            .unwrap()
            .contains("1 tried linkedin"),
        "{sl}"
    );

    // With k = 5: four contributors are too few to show, and the model does
    // not read the hidden number as zero: it stops where it is needed.
    a.k = 5;
    let r = json_of(&a);
    let m = row(&r["strategy"]["contribution"], "marketing", "linkedin");
    assert_eq!(m["contributors"], "suppressed");
    let mk = maturity(&r, "marketing");
    assert_eq!(mk["contributor_share"], "suppressed");
    assert_eq!(
        (mk["label"].as_str(), mk["held_back_by"].as_str()),
        (Some("regular use"), Some("hidden"))
    );
    // One refused person in sales: hidden, and not friction.
    let sl = maturity(&r, "sales");
    assert_eq!(sl["blocked_share"], "suppressed");
    assert_eq!(sl["held_back_by"], "contribution");
}

#[test]
fn a_write_held_at_a_warning_is_no_contribution_and_one_past_it_is() {
    // Marketing on LinkedIn under a warn rule: m1..m3 continued and posted
    // (acknowledged); m4 and m5 posted while held at the warning, so
    // nothing was written: neither contributors nor use.
    let g: &[&str] = &["marketing"];
    let warned = |n: u32, who: &str, outcome: &str| {
        Line::tunnel(&format!("2026-03-02T10:{n:02}:00Z"), who, g, "linkedin")
            .act("post", false)
            .set("action", json!("warn"))
            .set("rule", json!("marketing-warn"))
            .set("warn", json!(outcome))
    };
    let mut lines = Vec::new();
    for (n, who) in ["p:m1", "p:m2", "p:m3"].iter().enumerate() {
        lines.push(warned(n as u32, who, "acknowledged"));
    }
    for (n, who) in ["p:m4", "p:m5"].iter().enumerate() {
        lines.push(warned(10 + n as u32, who, "held"));
    }
    let dir = tempfile::tempdir().unwrap();
    let log = write_log(dir.path(), "a.log", &lines);
    let mut a = args(vec![log]);
    a.k = 1;
    let r = json_of(&a);
    let c = row(&r["strategy"]["contribution"], "marketing", "linkedin");
    assert_eq!(
        (
            c["contributors"].as_u64(),
            c["posts"].as_u64(),
            c["readers"].as_u64()
        ),
        (Some(3), Some(3), Some(0)),
        "{c}"
    );
    // Every member was seen; the held posts are no refusal either (and no
    // page was opened): the adoption table has nothing to show, no row.
    assert_eq!(r["strategy"]["platforms"], json!([]));
    let groups = &r["strategy"]["groups"];
    assert_eq!(row_of(groups, "marketing")["active_members"], 5);
}

fn row_of<'a>(rows: &'a Value, group: &str) -> &'a Value {
    rows.as_array()
        .unwrap()
        .iter()
        .find(|r| r["group"] == group)
        .unwrap_or_else(|| panic!("no row for {group}: {rows}"))
}

#[test]
fn all_means_members_of_groups_and_blocked_demand_counts_only_primary_attempts() {
    let dir = tempfile::tempdir().unwrap();
    let mut lines = scenario(5);
    // A laptop without credentials (in no group) knocking on X, twice.
    for t in ["2026-03-02T09:10:00Z", "2026-03-02T09:11:00Z"] {
        lines.push(
            Line::tunnel(t, "x", &[], "x")
                .set("user", Value::Null)
                .set("auth", json!("none"))
                .set("client", json!("172.16.0.9"))
                .set("group", Value::Null)
                .set("reason", json!("auth-required"))
                .set("rule", json!("builtin:identity"))
                .refused()
                .set("status", json!(407)),
        );
    }
    // TikTok's pixel refused on other sites for the dev people: not demand.
    for u in users("d", 5) {
        lines.push(
            Line::tunnel("2026-03-02T09:40:00Z", &u, &["dev"], "tiktok")
                .refused()
                .set("class", json!("embedded"))
                .set("host", json!("analytics.tiktok.com"))
                .set("foreground", json!(false))
                .set("rule", json!("no-tiktok")),
        );
    }
    let mut a = args(vec![write_log(dir.path(), "a.log", &lines)]);
    a.k = 1;
    let r = json_of(&a);
    let s = &r["strategy"];
    // "*" is sales + dev: the client in no group is no member.
    assert_eq!(s["groups"][0]["group"], "*");
    assert_eq!(s["groups"][0]["active_members"], 10);
    assert_eq!(row(&s["platforms"], "*", "linkedin")["adoption"], 0.5);
    assert!(s["platforms"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["group"] != "(no group)"));
    // Blocked demand: sales' ten attempts on tiktok.com; the pixel is not.
    assert_eq!(row(&s["platforms"], "*", "tiktok")["blocked_attempts"], 10);
    assert!(
        !s["platforms"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["group"] == "dev" && r["platform"] == "tiktok"),
        "nothing to show for dev on tiktok: only the pixel was refused"
    );
    // The security part keeps everything, and says which is which.
    let sec = &r["security"];
    let t = &sec["totals"];
    assert_eq!(
        (
            t["refused"].as_u64(),
            t["refused_primary"].as_u64(),
            t["refused_primary_members"].as_u64()
        ),
        (Some(17), Some(12), Some(10))
    );
    let pixel = sec["refused"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["group"] == "dev")
        .unwrap();
    assert_eq!(
        (pixel["class"].as_str(), pixel["rule"].as_str()),
        (Some("embedded"), Some("no-tiktok"))
    );
    assert_eq!(pixel["requests"], 5);
    assert!(sec["refused"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["group"] == "(no group)"
            && r["rule"] == "builtin:identity"
            && r["requests"] == 2));
    let tiktok = sec["top_refused_platforms"][0].clone();
    assert_eq!(
        (
            tiktok["requests"].as_u64(),
            tiktok["primary_requests"].as_u64()
        ),
        (Some(15), Some(10))
    );
}

#[test]
fn cells_with_k_minus_1_persons_are_suppressed_and_k_are_shown() {
    let dir = tempfile::tempdir().unwrap();
    for (n, shown) in [(4, false), (5, true)] {
        let log = write_log(dir.path(), &format!("k{n}.log"), &scenario(n));
        let r = json_of(&args(vec![log]));
        let s = &r["strategy"];
        if shown {
            let li = row(&s["platforms"], "sales", "linkedin");
            for field in ["active_users", "adoption", "sessions", "active_minutes"] {
                assert!(li[field].is_number(), "n={n} {field}: {}", li[field]);
            }
            let c = row(&s["contribution"], "sales", "linkedin");
            assert!(c["contributors"].is_number(), "n={n}");
        } else {
            // Everything about sales on linkedin is hidden: the row is left
            // out, so its presence does not say that someone is behind it.
            for table in ["platforms", "contribution"] {
                assert!(
                    !s[table]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|r| r["group"] == "sales" && r["platform"] == "linkedin"),
                    "n={n} {table}"
                );
            }
            let m = s["groups"].as_array().unwrap();
            assert!(m
                .iter()
                .any(|g| g["group"] == "sales" && g["active_members"] == "suppressed"));
        }
        let refused = row(&r["security"]["refused"], "sales", "tiktok");
        assert_eq!(refused["requests"].is_number(), shown, "n={n}");
        // CSV and HTML never show the number either.
        let rep = build_report(&args(vec![dir.path().join(format!("k{n}.log"))])).unwrap();
        let csv = report::csv_all(&rep);
        let line = csv
            .lines()
            .find(|l| l.starts_with("sales,linkedin,"))
            .unwrap();
        assert_eq!(line.contains("suppressed"), !shown, "{line}");
    }
}

#[test]
fn one_suppressed_platform_row_does_not_leak_through_the_group_total() {
    let dir = tempfile::tempdir().unwrap();
    let mut lines = scenario(6);
    // Two persons of sales also use reddit: that row is suppressed, and so
    // must be one more row of the group (else reddit = total − linkedin).
    for u in users("s", 2) {
        lines.push(Line::tunnel(
            "2026-03-02T13:00:00Z",
            &u,
            &["sales"],
            "reddit",
        ));
    }
    let r = json_of(&args(vec![write_log(dir.path(), "a.log", &lines)]));
    let p = &r["strategy"]["platforms"];
    // reddit: nothing can be shown, so no row; linkedin's time goes too
    // (the group's time on any platform − linkedin's = reddit's), its
    // active users stay (a union: "*" − linkedin is not reddit's).
    assert!(!p
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["platform"] == "reddit"));
    let li = row(p, "sales", "linkedin");
    assert_eq!(li["active_minutes"], "suppressed");
    assert_eq!(li["sessions"], "suppressed");
    assert_eq!(li["active_users"], 6);
    assert!(row(p, "sales", "*")["active_minutes"].is_number());
}

#[test]
fn malformed_lines_gz_input_and_missing_files_are_reported_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let good = write_log(dir.path(), "access.log", &scenario(5));
    // A rotated, gzipped file from the day before, named without .gz.
    let old = dir.path().join("access.log.1");
    let mut gz = flate2::write::GzEncoder::new(
        std::fs::File::create(&old).unwrap(),
        flate2::Compression::fast(),
    );
    for u in users("s", 5) {
        writeln!(
            gz,
            "{}",
            Line::tunnel("2026-03-01T09:00:00Z", &u, &["sales"], "linkedin").0
        )
        .unwrap();
    }
    writeln!(gz, "{{\"time\":\"2026-03-01T09:00:00Z\",\"kind\":").unwrap();
    writeln!(
        gz,
        "{}",
        Line::tunnel("2026-03-01T09:00:00Z", "p:x", &["sales"], "x")
            .set("status", json!("200"))
            .0
    )
    .unwrap();
    gz.finish().unwrap();
    let missing = dir.path().join("access.log.2.gz");
    let r = json_of(&args(vec![good.clone(), old.clone(), missing.clone()]));
    let input = &r["input"];
    assert_eq!(input["records"], 40);
    assert_eq!(input["malformed"], 2);
    let ex = input["malformed_examples"].as_array().unwrap();
    assert!(
        ex[0].as_str().unwrap().ends_with(
            "access.log.1:6: truncated JSON: EOF while parsing a value at line 1 column 38"
        ),
        "{ex:?}"
    );
    assert!(ex[1]
        .as_str()
        .unwrap()
        .contains("access.log.1:7: not an access-log record: invalid type: string \"200\""));
    let files = input["files"].as_array().unwrap();
    // Inputs are read oldest first.
    assert!(files[0]["path"].as_str().unwrap().ends_with("access.log.1"));
    let miss = files
        .iter()
        .find(|f| f["path"].as_str().unwrap().ends_with(".2.gz"))
        .unwrap();
    assert!(miss["error"].as_str().unwrap().starts_with("cannot open"));
    // The linkedin day of the gz file counts.
    assert_eq!(
        row(&r["strategy"]["platforms"], "sales", "linkedin")["sessions"],
        15
    );
    // run() succeeds with a partial input, fails when nothing can be read.
    let mut a = args(vec![good, missing.clone()]);
    a.format = Format::Json;
    a.out = Some(dir.path().join("r.json"));
    assert_eq!(report::run(&a).unwrap(), std::process::ExitCode::SUCCESS);
    let written: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("r.json")).unwrap()).unwrap();
    assert_eq!(written["schema"], "socialgate-report/2");
    a.logs = vec![missing];
    assert_eq!(report::run(&a).unwrap(), std::process::ExitCode::from(1));
}

#[test]
fn from_and_to_limit_the_period_with_whole_days() {
    let dir = tempfile::tempdir().unwrap();
    let log = write_log(dir.path(), "a.log", &scenario(5));
    let mut a = args(vec![log]);
    a.from = Some("2026-03-03".into());
    a.to = Some("2026-03-03".into());
    let r = json_of(&a);
    assert_eq!(r["input"]["in_period"], 5); // the five refused tiktok requests of 03-03
    a.from = Some("2026-03-02T09:00:00Z".into());
    a.to = Some("2026-03-02T09:04:00Z".into());
    assert_eq!(json_of(&a)["input"]["in_period"], 5);
    a.from = Some("yesterday".into());
    let err = build_report(&a).unwrap_err();
    assert!(format!("{err:#}").contains("--from yesterday"), "{err:#}");
}

#[test]
fn reveal_is_refused_without_a_readable_key() {
    let dir = tempfile::tempdir().unwrap();
    let log = write_log(dir.path(), "a.log", &scenario(5));
    let mut a = args(vec![log]);
    a.reveal = true;
    a.reason = Some("case 42".into());
    a.users = Some(dir.path().join("users"));
    a.audit_log = dir.path().join("audit.log");
    let err = build_report(&a).unwrap_err();
    assert!(format!("{err:#}").contains("--key"), "{err:#}");
    a.key = Some(dir.path().join("missing.key"));
    let err = format!("{:#}", build_report(&a).unwrap_err());
    assert!(
        err.contains("--reveal refused") && err.contains("missing.key"),
        "{err}"
    );
    let open_key = dir.path().join("open.key");
    std::fs::write(&open_key, "k".repeat(64)).unwrap();
    set_mode(&open_key, 0o644);
    a.key = Some(open_key);
    let err = format!("{:#}", build_report(&a).unwrap_err());
    assert!(err.contains("chmod 600"), "{err}");
    assert!(
        !dir.path().join("audit.log").exists(),
        "nothing audited when refused"
    );
}

#[test]
fn reveal_writes_the_audit_line_first_then_shows_names() {
    let dir = tempfile::tempdir().unwrap();
    let key_path = dir.path().join("pseudonym.key");
    let keyer = socialgate::pseudonym::Pseudonymizer::generate_key_file(&key_path).unwrap();
    let names = ["alice", "bob", "carol", "dave", "erin"];
    let mut lines = Vec::new();
    for (i, n) in names.iter().enumerate() {
        let p = keyer.pseudonym(n);
        for _ in 0..=i {
            lines.push(Line::tunnel("2026-03-02T10:00:00Z", &p, &["sales"], "tiktok").refused());
        }
    }
    let log = write_log(dir.path(), "a.log", &lines);
    std::fs::write(
        dir.path().join("htpasswd"),
        "alice:$2y$05$x\nbob:$2y$05$y\nerin:$2y$05$z\n",
    )
    .unwrap();
    let audit = dir.path().join("audit.log");
    let mut a = args(vec![log]);
    a.reveal = true;
    a.key = Some(key_path);
    a.users = Some(dir.path().join("htpasswd"));
    a.reason = Some("case 42: upload investigation".into());
    a.audit_log = audit.clone();
    // Unwritable audit log: the reveal is refused.
    let bad = a.clone();
    let mut bad = bad;
    bad.audit_log = dir.path().join("no/such/dir/audit.log");
    assert!(format!("{:#}", build_report(&bad).unwrap_err()).contains("audit log"));
    let r = json_of(&a);
    let audit_text = std::fs::read_to_string(&audit).unwrap();
    let entry: Value = serde_json::from_str(audit_text.lines().next().unwrap()).unwrap();
    assert_eq!(entry["event"], "reveal");
    assert_eq!(entry["reason"], "case 42: upload investigation");
    assert!(entry["args"]
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x == "--reveal"));
    assert!(entry["time"].is_string() && entry["os_user"].is_string());
    let top = r["security"]["top_refused_persons"].as_array().unwrap();
    assert_eq!(top[0]["name"], "erin");
    assert_eq!(top[0]["requests"], 5);
    assert!(top[1]["name"].is_null()); // dave is not in the htpasswd file
    assert_eq!(top[1]["person"], keyer.pseudonym("dave"));
    assert_eq!(r["settings"]["revealed"], true);
    // The strategy audience never lists persons.
    a.audience = report::Audience::Strategy;
    let r = json_of(&a);
    assert!(r.get("security").is_none());
    assert!(!serde_json::to_string(&r).unwrap().contains("erin"));
}

#[test]
fn csv_to_a_directory_writes_one_file_per_table() {
    let dir = tempfile::tempdir().unwrap();
    let log = write_log(dir.path(), "a.log", &scenario(5));
    let out = dir.path().join("csv");
    std::fs::create_dir(&out).unwrap();
    let mut a = args(vec![log]);
    a.format = Format::Csv;
    a.out = Some(out.clone());
    report::run(&a).unwrap();
    let adoption = std::fs::read_to_string(out.join("adoption.csv")).unwrap();
    assert!(adoption.starts_with("group,platform,active_users,adoption,"));
    assert!(
        adoption.contains("sales,linkedin,5,1.0000,10,30.00,6.00,"),
        "{adoption}"
    );
    assert!(out.join("hour_of_week.csv").exists() && out.join("refused.csv").exists());
}

/// A realistic report for the HTML check and the screenshot in docs/.
fn realistic_log(dir: &Path) -> PathBuf {
    /// (platform, how many of the group use it, do they write)
    type Uses = &'static [(&'static str, usize, bool)];
    let groups: &[(&str, usize, Uses)] = &[
        (
            "marketing",
            14,
            &[
                ("linkedin", 12, true),
                ("instagram", 10, true),
                ("x", 8, true),
                ("youtube", 9, false),
                ("tiktok", 6, true),
            ],
        ),
        (
            "sales",
            20,
            &[
                ("linkedin", 18, true),
                ("x", 5, false),
                ("youtube", 8, false),
                ("facebook", 7, false),
            ],
        ),
        (
            "engineering",
            30,
            &[
                ("reddit", 14, false),
                ("youtube", 16, false),
                ("mastodon", 6, true),
                ("linkedin", 9, false),
            ],
        ),
        (
            "finance",
            12,
            &[("linkedin", 4, false), ("youtube", 3, false)],
        ),
        // A long name and many platforms: the widest rows of every table.
        (
            "customer-success-emea",
            9,
            &[
                ("linkedin", 9, true),
                ("x", 7, true),
                ("facebook", 6, true),
                ("instagram", 6, false),
                ("pinterest", 5, false),
                ("threads", 5, true),
                ("bluesky", 6, true),
                ("discord", 5, false),
                ("snapchat", 5, false),
                ("whatsapp", 8, true),
                ("telegram", 5, false),
                ("reddit", 5, false),
            ],
        ),
        ("legal", 3, &[("linkedin", 3, false)]),
    ];
    let mut lines = Vec::new();
    let mut seed: u64 = 7;
    let mut rnd = |n: u64| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) % n
    };
    for day in 2..=13u32 {
        let date = format!("2026-03-{day:02}");
        let weekday = (day - 2) % 7; // 2026-03-02 is a Monday
        if weekday >= 5 && rnd(3) > 0 {
            continue;
        }
        for (g, size, plats) in groups {
            for i in 0..*size {
                let user = format!("p:{g}{i:03}");
                // Everybody browses something outside the catalog.
                lines.push(
                    Line::tunnel(
                        &format!("{date}T08:{:02}:00Z", rnd(60)),
                        &user,
                        &[g, "staff"],
                        "x",
                    )
                    .set("platform", Value::Null)
                    .set("class", Value::Null)
                    .set("host", json!("intranet.example")),
                );
                for (p, users, writes) in plats.iter() {
                    if i >= *users || rnd(10) < 3 {
                        continue;
                    }
                    let hour = 8 + rnd(10);
                    let start = rnd(50);
                    for m in 0..(1 + rnd(6)) {
                        lines.push(
                            Line::tunnel(
                                &format!("{date}T{hour:02}:{:02}:00Z", start + m * 2),
                                &user,
                                &[g, "staff"],
                                p,
                            )
                            .set("bytes_up", json!(2000 + rnd(50000))),
                        );
                    }
                    if *writes && rnd(3) == 0 {
                        lines.push(
                            Line::tunnel(
                                &format!("{date}T{hour:02}:{:02}:30Z", start),
                                &user,
                                &[g, "staff"],
                                p,
                            )
                            .write_act(),
                        );
                    }
                    lines.push(
                        Line::tunnel(
                            &format!("{date}T{hour:02}:{:02}:40Z", start),
                            &user,
                            &[g, "staff"],
                            p,
                        )
                        .set("kind", json!("request"))
                        .set("method", json!("GET"))
                        .set("activity", json!("read"))
                        .set("foreground", json!(false)),
                    );
                }
                if *g == "finance" || (*g == "sales" && i < 8) {
                    if rnd(2) == 0 {
                        lines.push(
                            Line::tunnel(
                                &format!("{date}T12:{:02}:00Z", rnd(60)),
                                &user,
                                &[g, "staff"],
                                "tiktok",
                            )
                            .refused(),
                        );
                    }
                    if rnd(3) == 0 {
                        lines.push(
                            Line::tunnel(
                                &format!("{date}T13:{:02}:00Z", rnd(60)),
                                &user,
                                &[g, "staff"],
                                "instagram",
                            )
                            .refused(),
                        );
                    }
                }
                if *g == "engineering" && rnd(4) == 0 {
                    lines.push(
                        Line::tunnel(
                            &format!("{date}T15:{:02}:00Z", rnd(60)),
                            &user,
                            &[g, "staff"],
                            "tiktok",
                        )
                        .set("action", json!("block"))
                        .set("mode", json!("report")),
                    );
                }
                // Access requests for Instagram from its block page (no
                // random draw: the rest of the log stays as it was).
                if day % 3 == 0 && i % 3 == 0 {
                    lines.push(
                        Line::tunnel(
                            &format!("{date}T16:{:02}:00Z", i % 60),
                            &user,
                            &[g, "staff"],
                            "instagram",
                        )
                        .set("kind", json!("access-request"))
                        .set("method", json!("POST"))
                        .set("foreground", json!(false))
                        .set("action", json!("block"))
                        .set("request_reason", json!("campaign")),
                    );
                }
                // A warn rule on Facebook for engineering: some continue.
                if *g == "engineering" && i < 20 && rnd(3) == 0 {
                    let at = |m: u64| format!("{date}T14:{m:02}:00Z");
                    let warned = |time: &str, outcome: &str| {
                        Line::tunnel(time, &user, &[g, "staff"], "facebook")
                            .set("kind", json!("request"))
                            .set("method", json!("GET"))
                            .set("action", json!("warn"))
                            .set("rule", json!("warn-facebook"))
                            .set("warn", json!(outcome))
                    };
                    let m = rnd(50);
                    lines.push(warned(&at(m), "shown"));
                    if rnd(2) == 0 {
                        lines.push(warned(&at(m + 1), "continued").set("status", json!(303)));
                        lines.push(warned(&at(m + 2), "acknowledged"));
                    }
                }
            }
        }
        for i in 0..6 {
            lines.push(
                Line::tunnel(
                    &format!("{date}T10:{:02}:00Z", rnd(60)),
                    "x",
                    &["guests"],
                    "youtube",
                )
                .set("user", Value::Null)
                .set("auth", json!("none"))
                .set("client", json!(format!("192.0.2.{i}"))),
            );
        }
    }
    lines.sort_by(|a, b| a.0["time"].as_str().cmp(&b.0["time"].as_str()));
    write_log(dir, "access.log", &lines)
}

/// The page's layout, measured in the browser by a script added to a copy
/// of the page (the report itself has none).
const PROBE: &str = r#"<script>
document.querySelectorAll('details').forEach(function (d) { d.open = true; });
var wide = [];
document.querySelectorAll('.tw, figure, .box, .card').forEach(function (e) {
  if (e.scrollWidth > e.clientWidth + 1) {
    var t = e.querySelector('table');
    wide.push((t ? t.id : e.className) + ' ' + e.scrollWidth + '>' + e.clientWidth);
  }
});
document.querySelectorAll('details').forEach(function (d) { d.open = false; });
var s = document.getElementById('summary');
document.body.setAttribute('data-probe', JSON.stringify({
  overflow: wide,
  page_width: document.documentElement.scrollWidth,
  summary_bottom: s ? s.getBoundingClientRect().bottom : -1,
  height: document.documentElement.scrollHeight
}));
</script>"#;

#[test]
fn html_report_reads_on_a_laptop_screen_in_chromium() {
    let chromium = Path::new("/usr/bin/chromium");
    assert!(
        chromium.exists(),
        "/usr/bin/chromium is missing: install it with `apt-get update && apt-get install -y chromium fonts-dejavu-core`"
    );
    let dir = tempfile::tempdir().unwrap();
    let log = realistic_log(dir.path());
    let html_path = dir.path().join("report.html");
    let mut a = args(vec![log]);
    a.format = Format::Html;
    a.out = Some(html_path.clone());
    a.from = Some("2026-03-02".into());
    // The last day cut at noon: a partial day, drawn as one.
    a.to = Some("2026-03-13T12:00:00Z".into());
    report::run(&a).unwrap();
    let html = std::fs::read_to_string(&html_path).unwrap();
    assert!(
        html.contains("* 2026-03-13 is a partial day"),
        "partial day marked"
    );
    // Self-contained: no scripts, no external references.
    assert!(!html.contains("<script"), "no JavaScript");
    for needle in ["http:", "https:", "@import", "//cdn"] {
        assert!(!html.contains(needle), "external reference {needle}");
    }
    // An unquoted attribute before "/>" swallows the slash in HTML, and the
    // element then swallows every following sibling.
    for (i, _) in html.match_indices("/>") {
        assert_eq!(
            &html[i - 1..i],
            "\"",
            "unquoted attribute before />: {}",
            &html[i.saturating_sub(60)..i + 2]
        );
    }
    // A suppressed cell is a dash, never a bound such as "<5".
    assert!(html.contains("class=sup") && !html.contains("&lt;5"));
    let profile = tempfile::tempdir().unwrap();
    let common = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        // A laptop screen.
        "--window-size=1366,768",
    ];
    let png = dir.path().join("report.png");
    let url = format!("file://{}", html_path.display());
    let shot = std::process::Command::new(chromium)
        .args(common)
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--screenshot={}", png.display()))
        .arg(&url)
        .output()
        .unwrap();
    assert!(
        png.exists(),
        "no screenshot: {}",
        String::from_utf8_lossy(&shot.stderr)
    );
    assert!(
        std::fs::metadata(&png).unwrap().len() > 20_000,
        "screenshot looks empty"
    );
    let probed = dir.path().join("probed.html");
    std::fs::write(&probed, html.replace("</body>", &format!("{PROBE}</body>"))).unwrap();
    let dom = std::process::Command::new(chromium)
        .args(common)
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", probed.display()))
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&dom.stdout);
    for needle in [
        "<svg class=\"bars\"",
        "<svg class=\"trend\"",
        "<svg class=\"heat\"",
        "id=\"t-matrix\"",
        "id=\"t-maturity\"",
        "id=\"t-adoption\"",
        "id=\"t-contribution\"",
        "id=\"t-warnings\"",
        "id=\"t-access_requests\"",
        "people asked for access",
        "id=\"t-refused_by_rule\"",
        "id=\"t-refused\"",
        "What people ask for",
        "customer-success-emea",
    ] {
        assert!(dom.contains(needle), "DOM lacks {needle}");
    }
    let probe = dom
        .split("data-probe=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the probe ran")
        .replace("&quot;", "\"")
        .replace("&gt;", ">");
    let probe: Value = serde_json::from_str(&probe).unwrap();
    assert_eq!(
        probe["overflow"],
        json!([]),
        "boxes wider than the page at 1366 px: {probe}"
    );
    assert!(probe["page_width"].as_u64().unwrap() <= 1366, "{probe}");
    let bottom = probe["summary_bottom"].as_f64().unwrap();
    assert!(
        bottom > 0.0 && bottom <= 768.0,
        "the summary fits one laptop screen: {probe}"
    );
    if let Ok(dest) = std::env::var("SOCIALGATE_SCREENSHOT") {
        std::fs::copy(&png, dest).unwrap();
    }
}

fn set_mode(path: &Path, mode: u32) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
}
