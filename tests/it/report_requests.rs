//! The report's "Requested access" table: access requests sent from block
//! pages (`kind: access-request` records), by group and platform, checked
//! against hand-computed numbers, k-anonymous like the other person-backed
//! families, and no traffic (no members, no blocked demand).

use serde_json::{json, Value};
use socialgate::report::{self, build_report, ReportArgs};

use crate::report_log::{json_of, row, write_log, Line};

/// An access request `user` in `groups` sent about `platform` (`None`: a
/// site on no catalog platform).
fn ask(time: &str, user: &str, groups: &[&str], platform: Option<&str>) -> Line {
    let l = Line::tunnel(time, user, groups, platform.unwrap_or("x"))
        .set("kind", json!("access-request"))
        .set("method", json!("POST"))
        .set("port", json!(80))
        .set("sni", Value::Null)
        .set("class", Value::Null)
        .set("foreground", json!(false))
        .set("action", json!("block"))
        .set("rule", json!("no-tiktok"))
        .set("request_reason", json!("brand account"))
        .set("bytes_up", json!(0))
        .set("bytes_down", json!(0));
    match platform {
        Some(_) => l,
        None => l
            .set("platform", Value::Null)
            .set("category", Value::Null)
            .set("host", json!("forum.example")),
    }
}

const SALES: [&str; 6] = ["p:s1", "p:s2", "p:s3", "p:s4", "p:s5", "p:s6"];
const LEGAL: [&str; 2] = ["p:l1", "p:l2"];

/// staff holds sales (6) and legal (2); everyone reads LinkedIn. Access
/// requests: every salesperson asks for TikTok (s1 twice), s1 for X, s2 for
/// a site on no platform, l1 for TikTok; s3 asks again on 03-05, outside
/// the period the test reports on.
fn log(dir: &std::path::Path) -> std::path::PathBuf {
    let sales = &["staff", "sales"];
    let legal = &["staff", "legal"];
    let mut v = Vec::new();
    for u in SALES {
        v.push(Line::tunnel("2026-03-02T09:00:00Z", u, sales, "linkedin"));
        v.push(ask("2026-03-02T10:00:00Z", u, sales, Some("tiktok")));
    }
    for u in LEGAL {
        v.push(Line::tunnel("2026-03-02T09:00:00Z", u, legal, "linkedin"));
    }
    v.push(ask("2026-03-02T10:05:00Z", "p:s1", sales, Some("tiktok")));
    v.push(ask("2026-03-02T10:06:00Z", "p:s1", sales, Some("x")));
    v.push(ask("2026-03-02T10:07:00Z", "p:s2", sales, None));
    v.push(ask("2026-03-02T10:08:00Z", "p:l1", legal, Some("tiktok")));
    v.push(ask("2026-03-05T10:00:00Z", "p:s3", sales, Some("tiktok")));
    v.sort_by(|a, b| a.0["time"].as_str().cmp(&b.0["time"].as_str()));
    write_log(dir, "access.log", &v)
}

fn args(dir: &std::path::Path, k: u64) -> ReportArgs {
    let mut a = ReportArgs::new(vec![log(dir)]);
    a.from = Some("2026-03-02".to_owned());
    a.to = Some("2026-03-04".to_owned());
    a.k = k;
    a
}

fn pair(t: &Value, group: &str, platform: &str) -> (Value, Value) {
    let r = row(t, group, platform);
    (r["persons"].clone(), r["requests"].clone())
}

#[test]
fn requested_access_counts_persons_and_requests_by_group_and_platform() {
    let dir = tempfile::tempdir().unwrap();
    let a = args(dir.path(), 1);
    let r = json_of(&a);
    let s = &r["strategy"];
    let t = &s["access_requests"];
    let n = |p: u64, q: u64| (json!(p), json!(q));
    // By hand: TikTok 6 salespeople (7 requests) and 1 lawyer; X and the
    // site on no platform one salesperson each; 03-05 is outside.
    assert_eq!(pair(t, "sales", "tiktok"), n(6, 7));
    assert_eq!(pair(t, "legal", "tiktok"), n(1, 1));
    assert_eq!(pair(t, "staff", "tiktok"), n(7, 8));
    assert_eq!(pair(t, "*", "tiktok"), n(7, 8));
    assert_eq!(pair(t, "sales", "x"), n(1, 1));
    assert_eq!(pair(t, "sales", "(none)"), n(1, 1));
    assert_eq!(pair(t, "sales", "*"), n(6, 9));
    assert_eq!(pair(t, "legal", "*"), n(1, 1));
    assert_eq!(pair(t, "*", "*"), n(7, 10));
    assert!(
        !t.as_array()
            .unwrap()
            .iter()
            .any(|r| r["group"] == "legal" && r["platform"] == "x"),
        "no row where nobody asked: {t:#}"
    );
    // An access request is no traffic: not a record in the period, not a
    // member, not blocked demand.
    assert_eq!(r["input"]["in_period"], 8);
    assert_eq!(s["groups"][0]["group"], "*");
    assert_eq!(s["groups"][0]["active_members"], 8);
    assert!(!s["platforms"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["platform"] == "tiktok"));
    // Without --from/--to the later request counts too.
    let mut all = a.clone();
    all.from = None;
    all.to = None;
    assert_eq!(
        pair(
            &json_of(&all)["strategy"]["access_requests"],
            "sales",
            "tiktok"
        ),
        n(6, 8)
    );

    // CSV and HTML show the same numbers.
    let rep = build_report(&a).unwrap();
    let csv = report::csv_all(&rep);
    assert!(csv.contains("group,platform,persons,requests"), "{csv}");
    assert!(csv.lines().any(|l| l == "sales,tiktok,6,7"), "{csv}");
    let dir2 = tempfile::tempdir().unwrap();
    let mut h = a.clone();
    h.format = report::Format::Html;
    h.out = Some(dir2.path().join("r.html"));
    report::run(&h).unwrap();
    let html = std::fs::read_to_string(dir2.path().join("r.html")).unwrap();
    assert!(html.contains("Requested access by group and platform"));
    assert!(
        html.contains("people asked for access"),
        "the summary card names it"
    );
}

#[test]
fn requested_access_hides_a_small_group_and_what_would_give_it_away() {
    let dir = tempfile::tempdir().unwrap();
    let r = json_of(&args(dir.path(), 5));
    let t = &r["strategy"]["access_requests"];
    let rows = t.as_array().unwrap();
    let shown = |g: &str, p: &str| {
        rows.iter()
            .find(|r| r["group"] == g && r["platform"] == p)
            .is_some_and(|r| r["requests"].is_number())
    };
    // One lawyer asked: hidden, and so is the row (a hidden row reads as
    // none). X and the site on no platform: one person each.
    for (g, p) in [
        ("legal", "tiktok"),
        ("legal", "*"),
        ("sales", "x"),
        ("sales", "(none)"),
    ] {
        assert!(!shown(g, p), "{g}/{p} shown: {t:#}");
    }
    // staff (or all) minus sales would give the lawyer away: not both.
    assert!(
        !(shown("sales", "tiktok") && (shown("staff", "tiktok") || shown("*", "tiktok"))),
        "{t:#}"
    );
    // sales' total minus its TikTok row would give X and the forum away.
    assert!(!(shown("sales", "tiktok") && shown("sales", "*")), "{t:#}");
    // A shown cell is exact and a hidden one says "suppressed", in persons
    // and requests alike.
    for r in rows {
        assert_eq!(r["persons"].is_number(), r["requests"].is_number(), "{r}");
        if r["persons"].is_number() {
            assert!(r["persons"].as_u64().unwrap() >= 5, "{r}");
        } else {
            assert_eq!(r["persons"], "suppressed");
        }
    }
    assert!(
        rows.iter().any(|r| r["requests"].is_number()),
        "something is still shown: {t:#}"
    );
}

#[test]
fn the_security_audience_keeps_exact_requested_access_behind_k_persons() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = args(dir.path(), 5);
    a.audience = report::Audience::Security;
    let r = json_of(&a);
    assert!(
        r["strategy"].is_null(),
        "the security audience has no strategy part"
    );
    let t = &r["security"]["access_requests"];
    // Exact where 5 or more persons asked, without protection against
    // subtraction (like the other security tables); hidden below.
    assert_eq!(pair(t, "sales", "tiktok"), (json!(6), json!(7)));
    assert_eq!(pair(t, "staff", "tiktok"), (json!(7), json!(8)));
    assert_eq!(pair(t, "*", "*"), (json!(7), json!(10)));
    assert_eq!(
        pair(t, "legal", "tiktok"),
        (json!("suppressed"), json!("suppressed"))
    );
    let csv = report::csv_all(&build_report(&a).unwrap());
    assert!(csv.contains("# table: security_access_requests"), "{csv}");
    assert!(
        csv.lines()
            .any(|l| l == "legal,tiktok,suppressed,suppressed"),
        "{csv}"
    );
}
