//! Daily budgets end to end: `explain --spent`, policy tests with `spent:`,
//! and (below) a running proxy counting time and volume with real clients,
//! closing what is open when a budget runs out, keeping spent budgets over
//! a restart, and replicas sharing one budget through a real `redis-server`.

use crate::support::*;

/// Video 1 minute a day, LinkedIn 1 MB a day (then a warning), both per
/// person in Berlin days.
const POLICY: &str = r#"
version: 1
settings:
  timezone: Europe/Berlin
  organization: Test Corp
  help: Ask the test desk.
destinations:
  allow: [127.0.0.0/8]
tunnels:
  ports: [any]
  sni_timeout_ms: 2000
groups:
  staff:
    networks: [127.0.0.0/8]
rules:
  - id: video-1m
    groups: [staff]
    platforms: [tiktok, youtube]
    action: block
    budget: {minutes: 1}
    message: One minute of video a day.
  - id: linkedin-1mb
    groups: [staff]
    platforms: [linkedin]
    action: warn
    budget: {megabytes: 1}
"#;

#[tokio::test]
async fn explain_and_policy_tests_say_what_a_spent_budget_decides() {
    let dir = PolicyDir::new(POLICY);
    let policy = dir.path().to_str().unwrap();
    let explain = |url: &'static str, extra: &'static [&'static str]| async move {
        let mut args = vec![
            "explain",
            "--policy",
            policy,
            "--client",
            "127.0.0.1",
            "--no-resolve",
            "--at",
            "2026-11-25T10:00+01:00",
        ];
        args.extend_from_slice(extra);
        args.push(url);
        socialgate(&args).await
    };
    let (code, out, err) = explain("http://www.tiktok.com/", &[]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("decision: allow (enforce) by video-1m"),
        "{out}"
    );
    assert!(out.contains("stage:budget"), "{out}");
    assert!(
        out.contains("1 minute left (assumed nothing spent today"),
        "{out}"
    );
    assert!(out.contains("renews 2026-11-26 00:00 CET"), "{out}");
    let (code, out, _) = explain("https://www.youtube.com/", &["--spent", "1m"]).await;
    assert_eq!(code, 0);
    assert!(
        out.contains(
            "decision: block (enforce) by video-1m, reason budget-exhausted, stage budget"
        ),
        "{out}"
    );
    assert!(
        out.contains("used up, so the rule's action applies (block)"),
        "{out}"
    );
    // A volume budget that runs out warns (and cannot warn in a tunnel).
    let (_, out, _) = explain("http://www.linkedin.com/", &["--spent", "900KB"]).await;
    assert!(
        out.contains("decision: allow (enforce) by linkedin-1mb"),
        "{out}"
    );
    assert!(out.contains("0.1 MB left"), "{out}");
    let (_, out, _) = explain("http://www.linkedin.com/", &["--spent", "2m,1MB"]).await;
    assert!(
        out.contains("decision: warn (enforce) by linkedin-1mb, reason budget-exhausted"),
        "{out}"
    );
    assert!(
        out.contains("warning:  shown until the person continues"),
        "{out}"
    );
    // A spent amount that cannot be read says how to write it.
    let (code, _, err) = explain("http://www.tiktok.com/", &["--spent", "lots"]).await;
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--spent") && err.contains("25m") && err.contains("300MB"),
        "{err}"
    );

    dir.write(
        "tests.yaml",
        r#"tests:
  - {name: fresh, client: 127.0.0.1, url: "http://www.tiktok.com/", at: "2026-11-25T10:00:00+01:00", expect: {action: allow, rule: video-1m}}
  - {name: spent, client: 127.0.0.1, url: "https://www.tiktok.com/", spent: 1m, at: "2026-11-25T10:00:00+01:00", expect: {action: block, rule: video-1m, reason: budget-exhausted}}
  - {name: volume, client: 127.0.0.1, url: "http://www.linkedin.com/", spent: "1MB", expect: {action: warn, reason: budget-exhausted}}
"#,
    );
    let (code, out, err) = socialgate(&["test", policy]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("3 passed, 0 failed"), "{out}");
    dir.write(
        "tests.yaml",
        "tests:\n  - {name: bad, client: 127.0.0.1, url: \"http://www.tiktok.com/\", spent: a while, expect: {action: allow}}\n",
    );
    let (code, out, err) = socialgate(&["check", policy]).await;
    assert_eq!(code, 2, "{out}");
    assert!(err.contains("tests[0].spent"), "{err}");
    assert!(err.contains("spent: 25m"), "{err}");
}
