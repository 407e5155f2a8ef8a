//! Reports and simulation built from an access log that real traffic
//! through socialgate produced.

use crate::support::*;
use socialgate::report::model::Cell;

const POLICY: &str = r#"
version: 1
destinations:
  allow: [127.0.0.0/8]
auth:
  htpasswd: users.htpasswd
groups:
  staff:
    users: [u1, u2, u3, u4, u5, u6]
rules:
  - id: no-tiktok
    groups: [staff]
    platforms: [tiktok]
    action: block
  - id: instagram-dry-run
    groups: [staff]
    platforms: [instagram]
    action: block
    mode: report
"#;

/// Six users browse LinkedIn, four try TikTok, five use Instagram (report
/// mode), one posts to LinkedIn. Returns the proxy (with its log).
async fn traffic() -> (TestProxy, Origin) {
    let origin = Origin::start().await;
    let dir = PolicyDir::new(POLICY);
    let hash = bcrypt::hash("pw", 4).unwrap();
    let users: String = (1..=6).map(|i| format!("u{i}:{hash}\n")).collect();
    dir.write("users.htpasswd", &users);
    let proxy = TestProxy::start_in(dir, |_| {}).await;
    let port = origin.port();
    let mut expected = 0;
    for i in 1..=6 {
        let c = proxy.client_as("127.0.0.1", &format!("u{i}"), "pw");
        let r = c
            .get(format!("http://www.linkedin.com:{port}/hello"))
            .header("Accept", "text/html")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap();
        expected += 1;
        if i <= 4 {
            assert_eq!(
                c.get(format!("http://www.tiktok.com:{port}/"))
                    .send()
                    .await
                    .unwrap()
                    .status(),
                403
            );
            expected += 1;
        }
        if i <= 5 {
            let r = c
                .get(format!("http://www.instagram.com:{port}/hello"))
                .header("Accept", "text/html")
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            r.bytes().await.unwrap();
            expected += 1;
        }
        if i == 1 {
            let r = c
                .post(format!("http://www.linkedin.com:{port}/echo"))
                .body("a post")
                .send()
                .await
                .unwrap();
            r.bytes().await.unwrap();
            expected += 1;
        }
    }
    proxy.log_lines(expected).await;
    (proxy, origin)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_from_real_traffic_has_the_expected_numbers_and_suppresses_small_cells() {
    let (proxy, _origin) = traffic().await;
    let args = socialgate::report::ReportArgs::new(vec![proxy.log_path.clone()]);
    let report = socialgate::report::build_report(&args).unwrap();
    assert_eq!(report.input.malformed, 0);
    assert_eq!(report.input.records, 6 + 4 + 5 + 1);

    let strategy = report.strategy.as_ref().unwrap();
    let staff = strategy.groups.iter().find(|g| g.group == "staff").unwrap();
    assert_eq!(staff.active_members, Cell::Value(6));
    let linkedin = strategy
        .platforms
        .iter()
        .find(|r| r.group == "staff" && r.platform == "linkedin")
        .unwrap();
    assert_eq!(
        linkedin.active_users,
        Cell::Value(6),
        "{}",
        serde_json::to_string(&strategy.platforms).unwrap()
    );
    assert_eq!(linkedin.adoption, Cell::Value(1.0));
    // Six page reads and one POST that no signature names: a generic write,
    // by one contributor (fewer than k: hidden); five read only.
    let contribution = strategy
        .contribution
        .iter()
        .find(|r| r.group == "staff" && r.platform == "linkedin")
        .unwrap();
    assert_eq!(contribution.reads, Cell::Value(6));
    assert!(contribution.contributors.is_suppressed());
    assert!(contribution.generic.is_suppressed());
    assert_eq!(contribution.readers, Cell::Value(5), "{contribution:?}");
    assert!(contribution.contributor_share.is_suppressed());

    let security = report.security.as_ref().unwrap();
    let insta = security
        .would_refuse
        .iter()
        .find(|r| r.platform == "instagram" && r.group == "staff")
        .unwrap();
    assert_eq!(insta.requests, Cell::Value(5), "5 persons = k: shown");
    assert_eq!(insta.persons, Cell::Value(5));
    let tiktok = security
        .refused
        .iter()
        .find(|r| r.platform == "tiktok" && r.group == "staff")
        .unwrap();
    assert_eq!(tiktok.rule, "no-tiktok");
    assert_eq!(tiktok.class.as_deref(), Some("primary"));
    assert!(
        tiktok.requests.is_suppressed(),
        "4 persons = k-1: suppressed"
    );
    assert!(tiktok.persons.is_suppressed());
    let insta_use = strategy
        .platforms
        .iter()
        .find(|r| r.group == "staff" && r.platform == "instagram")
        .unwrap();
    assert_eq!(insta_use.active_users, Cell::Value(5));
    assert_eq!(insta_use.adoption, Cell::Value(5.0 / 6.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_and_simulate_commands_work_on_a_real_log() {
    let (proxy, _origin) = traffic().await;
    let bin = env!("CARGO_BIN_EXE_socialgate");
    let html = proxy.policy.path().join("report.html");
    let out = std::process::Command::new(bin)
        .args(["report", "--log"])
        .arg(&proxy.log_path)
        .args(["--format", "html", "--out"])
        .arg(&html)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(
        page.contains("<svg") && page.contains("<table"),
        "the HTML report has charts and tables"
    );
    // u1 was refused TikTok: the log holds u1's pseudonym (computed here from
    // the key), and so does the report's top refused persons; the name is
    // in neither.
    let u1 = proxy.pseudonym_of("u1");
    let log = std::fs::read_to_string(&proxy.log_path).unwrap();
    assert!(log.contains(&format!("\"user\":\"{u1}\"")), "{log}");
    assert!(
        page.contains(&u1),
        "u1's pseudonym {u1} is not in the report"
    );
    assert!(!log.contains("u1"), "a user name in the log: {log}");
    assert!(
        !page.contains(">u1<"),
        "no real user names without --reveal"
    );
    // With --reveal the same report shows the name: the check above looks
    // for something a report can contain.
    let revealed = proxy.policy.path().join("revealed.html");
    let out = std::process::Command::new(bin)
        .args(["report", "--log"])
        .arg(&proxy.log_path)
        .args(["--format", "html", "--out"])
        .arg(&revealed)
        .args([
            "--reveal",
            "--reason",
            "test: names appear only when revealed",
        ])
        .arg("--key")
        .arg(proxy.policy.path().join("pseudonym.key"))
        .arg("--users")
        .arg(proxy.policy.path().join("users.htpasswd"))
        .arg("--audit-log")
        .arg(proxy.policy.path().join("audit.log"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let revealed = std::fs::read_to_string(&revealed).unwrap();
    assert!(revealed.contains(">u1<"), "--reveal shows u1 by name");

    // Enforcing the dry-run rule: the 4 Instagram requests would be refused.
    let candidate = PolicyDir::new(&POLICY.replace("    mode: report\n", ""));
    std::fs::copy(
        proxy.policy.path().join("users.htpasswd"),
        candidate.path().join("users.htpasswd"),
    )
    .unwrap();
    let out = std::process::Command::new(bin)
        .args(["simulate", "--log"])
        .arg(&proxy.log_path)
        .arg("--policy")
        .arg(candidate.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("5 requests by 5 users of staff to instagram would be refused by rule `instagram-dry-run` (now reported)"),
        "{text}"
    );
    assert!(
        text.contains("5 requests would be treated differently"),
        "{text}"
    );

    // With the pseudonym key, user names in the candidate match exactly.
    let out = std::process::Command::new(bin)
        .args(["simulate", "--format", "json", "--log"])
        .arg(&proxy.log_path)
        .arg("--policy")
        .arg(candidate.path())
        .arg("--key")
        .arg(proxy.policy.path().join("pseudonym.key"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["changed"], 5);
    assert_eq!(doc["changes"][0]["platform"], "instagram");
    assert_eq!(doc["changes"][0]["to"], "refused");
    assert_eq!(doc["changes"][0]["users"], 5);
}

#[test]
fn simulate_counts_the_write_actions_a_candidate_read_only_rule_would_refuse() {
    use crate::report_log::{write_log, Line};
    use serde_json::json;
    // Sales on LinkedIn: s1 posts three times, s2 comments twice, s3 sends
    // a request that may read or write, everyone reads; s4 and s5 only use
    // tunnels (not inspected: their activity cannot be seen).
    let g: &[&str] = &["sales"];
    let at = |n: u32| format!("2026-03-02T10:{n:02}:00Z");
    let mut lines = Vec::new();
    for (i, who) in ["s1", "s2", "s3"].iter().enumerate() {
        lines.push(
            Line::tunnel(&at(i as u32), &format!("p:{who}"), g, "linkedin").act("read", true),
        );
    }
    for n in 0..3 {
        lines.push(Line::tunnel(&at(10 + n), "p:s1", g, "linkedin").act("post", false));
    }
    for n in 0..2 {
        lines.push(Line::tunnel(&at(20 + n), "p:s2", g, "linkedin").act("comment", false));
    }
    lines.push(Line::tunnel(&at(30), "p:s3", g, "linkedin").act("unknown", false));
    lines.push(Line::tunnel(&at(40), "p:s4", g, "linkedin"));
    lines.push(Line::tunnel(&at(41), "p:s5", g, "linkedin"));
    let dir = tempfile::tempdir().unwrap();
    let log = write_log(dir.path(), "access.log", &lines);
    let candidate = PolicyDir::new(
        r#"
version: 1
groups:
  sales:
    networks: [10.99.0.0/16]
rules:
  - id: sales-read-only
    groups: [sales]
    platforms: [linkedin]
    action: read_only
"#,
    );
    let bin = env!("CARGO_BIN_EXE_socialgate");
    let run = |format: &str| {
        let out = std::process::Command::new(bin)
            .args(["simulate", "--k", "2", "--format", format, "--log"])
            .arg(&log)
            .arg("--policy")
            .arg(candidate.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let text = run("text");
    // Five writes refused (the unknown request passes: `unknown: allow`).
    assert!(
        text.contains(
            "sales on linkedin: 5 by 2 users, rule `sales-read-only` (3 posts, 2 comments)"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "2 tunnels by 2 users of sales to linkedin, rule `sales-read-only`: inspect linkedin"
        ),
        "{text}"
    );
    let doc: serde_json::Value = serde_json::from_str(&run("json")).unwrap();
    assert_eq!(
        doc["refused_writes"],
        json!([{"group": "sales", "platform": "linkedin", "rule": "sales-read-only",
                "requests": 5, "users": 2, "activities": {"post": 3, "comment": 2}}])
    );
    assert_eq!(doc["activity_unseen"][0]["tunnels"], 2);
    assert_eq!(doc["changed"], 5);

    // A strict rule (`unknown: block`) refuses s3's request too, and counts
    // it as a write action.
    std::fs::write(
        candidate.path().join("policy.yaml"),
        std::fs::read_to_string(candidate.path().join("policy.yaml"))
            .unwrap()
            .replace("action: read_only", "action: read_only\n    unknown: block"),
    )
    .unwrap();
    let doc: serde_json::Value = serde_json::from_str(&run("json")).unwrap();
    assert_eq!(
        doc["refused_writes"],
        json!([{"group": "sales", "platform": "linkedin", "rule": "sales-read-only",
                "requests": 6, "users": 3, "activities": {"post": 3, "comment": 2, "unknown": 1}}]),
        "{doc}"
    );
    assert_eq!(doc["changed"], 6);
}

#[test]
fn simulate_counts_a_write_past_an_acknowledged_warning_but_not_one_held_at_it() {
    use crate::report_log::{write_log, Line};
    use serde_json::json;
    // Under a warn rule: s1 had continued, so its post went through; s2's
    // post was held at the warning (socialgate answered, nothing was
    // written).
    let g: &[&str] = &["sales"];
    let warned = |time: &str, who: &str, outcome: &str| {
        Line::tunnel(time, who, g, "linkedin")
            .act("post", false)
            .set("action", json!("warn"))
            .set("rule", json!("sales-warn"))
            .set("warn", json!(outcome))
    };
    let lines = vec![
        warned("2026-03-02T10:00:00Z", "p:s1", "acknowledged"),
        warned("2026-03-02T10:01:00Z", "p:s2", "held"),
    ];
    let dir = tempfile::tempdir().unwrap();
    let log = write_log(dir.path(), "access.log", &lines);
    let candidate = PolicyDir::new(
        r#"
version: 1
groups:
  sales:
    networks: [10.99.0.0/16]
rules:
  - id: sales-read-only
    groups: [sales]
    platforms: [linkedin]
    action: read_only
"#,
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_socialgate"))
        .args(["simulate", "--k", "1", "--format", "json", "--log"])
        .arg(&log)
        .arg("--policy")
        .arg(candidate.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // Both change from warned to refused ...
    assert_eq!(doc["changed"], 2, "{doc}");
    assert_eq!(doc["changes"][0]["from"], "warned", "{doc}");
    assert_eq!(doc["changes"][0]["to"], "refused", "{doc}");
    // ... but only s1's post had passed: one write the candidate refuses.
    assert_eq!(
        doc["refused_writes"],
        json!([{"group": "sales", "platform": "linkedin", "rule": "sales-read-only",
                "requests": 1, "users": 1, "activities": {"post": 1}}]),
        "{doc}"
    );
}
