//! The command line an admin uses before deploying: `check`, `test`,
//! `explain`, on the real binary.

use crate::support::*;

/// Runs `socialgate check` on a policy directory holding `policy_yaml`
/// (plus `extra` files) and returns (exit code, stderr).
async fn check(policy_yaml: &str, extra: &[(&str, &str)]) -> (i32, String) {
    let dir = PolicyDir::new(policy_yaml);
    for (name, text) in extra {
        dir.write(name, text);
    }
    let (code, _out, err) = socialgate(&["check", dir.path().to_str().unwrap()]).await;
    (code, err)
}

/// Asserts a refused policy: exit code 2, the file and `location` named,
/// the `message` and a hint.
fn assert_refused(code: i32, err: &str, file: &str, location: &str, message: &str) {
    assert_eq!(code, 2, "{err}");
    let line = err
        .lines()
        .find(|l| l.contains(file) && l.contains(location))
        .unwrap_or_else(|| panic!("no line names {file} at {location}:\n{err}"));
    assert!(line.contains(message), "{line}");
    assert!(err.contains("hint:"), "{err}");
}

#[tokio::test]
async fn check_points_at_the_line_and_column_of_bad_yaml() {
    let (code, err) = check(
        "version: 1\nrules: [\n  - id: broken\n    action: : block\n",
        &[],
    )
    .await;
    assert_refused(
        code,
        &err,
        "policy.yaml",
        "policy.yaml:3:3",
        "did not find expected",
    );
}

#[tokio::test]
async fn check_refuses_an_unknown_key() {
    let (code, err) = check("version: 1\nsetings:\n  timezone: UTC\n", &[]).await;
    assert_refused(
        code,
        &err,
        "policy.yaml",
        "policy.yaml:2:1",
        "unknown field `setings`",
    );
}

#[tokio::test]
async fn check_suggests_the_platform_meant_by_a_typo() {
    let policy = "version: 1\ngroups:\n  staff:\n    networks: [10.0.0.0/8]\nrules:\n  - id: r\n    platforms: [tiktk]\n    action: block\n";
    let (code, err) = check(policy, &[]).await;
    assert_refused(
        code,
        &err,
        "policy.yaml",
        "rules[0].platforms[0]",
        "unknown platform \"tiktk\"",
    );
    assert!(err.contains("did you mean \"tiktok\"?"), "{err}");
}

#[tokio::test]
async fn check_refuses_a_bad_cidr() {
    let policy = "version: 1\ngroups:\n  staff:\n    networks: [10.0.0.0/33]\n";
    let (code, err) = check(policy, &[]).await;
    assert_refused(
        code,
        &err,
        "policy.yaml",
        "groups.staff.networks[0]",
        "is not a network",
    );
}

#[tokio::test]
async fn check_refuses_a_time_of_25_00() {
    let policy = "version: 1\ngroups:\n  staff:\n    networks: [10.0.0.0/8]\nrules:\n  - id: r\n    platforms: [youtube]\n    when:\n      - days: [mon-fri]\n        from: \"25:00\"\n        to: \"26:00\"\n    action: block\n";
    let (code, err) = check(policy, &[]).await;
    assert_refused(
        code,
        &err,
        "policy.yaml",
        "rules[0].when[0].from",
        "\"25:00\" is not a time of day",
    );
    assert!(
        err.contains("rules[0].when[0].to"),
        "every error is reported, not just the first: {err}"
    );
}

#[tokio::test]
async fn check_refuses_an_unknown_time_zone() {
    let (code, err) = check("version: 1\nsettings:\n  timezone: Europe/Berlinn\n", &[]).await;
    assert_refused(
        code,
        &err,
        "policy.yaml",
        "settings.timezone",
        "Europe/Berlinn",
    );
}

#[tokio::test]
async fn check_refuses_a_duplicate_rule_id() {
    let policy = "version: 1\ngroups:\n  staff:\n    networks: [10.0.0.0/8]\nrules:\n  - id: same\n    platforms: [tiktok]\n    action: block\n  - id: same\n    platforms: [x]\n    action: block\n";
    let (code, err) = check(policy, &[]).await;
    assert_refused(
        code,
        &err,
        "policy.yaml",
        "rules[1].id",
        "rule id \"same\" is used twice",
    );
}

#[tokio::test]
async fn check_refuses_an_htpasswd_line_without_a_bcrypt_hash() {
    let policy = "version: 1\nauth:\n  htpasswd: users.htpasswd\ngroups:\n  staff:\n    networks: [10.0.0.0/8]\n";
    let users = format!(
        "{}carol:$apr1$abc$0123456789abcdefghijk/\n",
        htpasswd_line("alice", "pw")
    );
    let (code, err) = check(policy, &[("users.htpasswd", &users)]).await;
    assert_refused(
        code,
        &err,
        "users.htpasswd",
        "users.htpasswd:2:1",
        "\"carol\" does not have a bcrypt hash",
    );
    assert!(err.contains("htpasswd -B"), "{err}");
}

#[tokio::test]
async fn check_and_test_pass_on_the_shipped_policies() {
    let dir = shipped_policies();
    let dir = dir.to_str().unwrap();
    let (code, out, err) = socialgate(&["check", dir]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(": ok ("), "{out}");
    let (code, out, err) = socialgate(&["test", dir]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(" passed, 0 failed"), "{out}");
    assert!(out.contains("ok    staff cannot use TikTok"), "{out}");
}

#[tokio::test]
async fn test_fails_when_a_case_expects_another_decision() {
    let dir =
        PolicyDir::new(&std::fs::read_to_string(shipped_policies().join("policy.yaml")).unwrap());
    dir.write(
        "tests.yaml",
        "tests:\n  - name: wrongly expects TikTok allowed\n    client: 127.0.0.1\n    url: https://www.tiktok.com/\n    expect: {action: allow}\n",
    );
    let (code, out, _) = socialgate(&["test", dir.path().to_str().unwrap()]).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("FAIL  wrongly expects TikTok allowed"),
        "{out}"
    );
    assert!(out.contains("0 passed, 1 failed"), "{out}");
}

#[tokio::test]
async fn explain_prints_the_decision_and_the_rules_considered() {
    let policy = shipped_policies();
    let (code, out, err) = socialgate(&[
        "explain",
        "--policy",
        policy.to_str().unwrap(),
        "--client",
        "10.99.1.1",
        "--at",
        "2026-11-25T10:30:00+01:00",
        "https://www.youtube.com/watch?v=abc",
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("groups:   staff"), "{out}");
    assert!(out.contains("platform: youtube"), "{out}");
    assert!(out.contains("rules and stages considered:"), "{out}");
    // Rules for other groups are listed as not matching, the decider with =>.
    assert!(
        out.lines()
            .any(|l| l.trim_start().starts_with("marketing-social")),
        "{out}"
    );
    assert!(
        out.lines().any(|l| l.contains("=> video-after-hours")),
        "{out}"
    );
    assert!(
        out.contains("decision: block (enforce) by video-after-hours, reason rule-matched"),
        "{out}"
    );

    let (_, out, _) = socialgate(&[
        "explain",
        "--policy",
        policy.to_str().unwrap(),
        "--client",
        "10.99.1.1",
        "--at",
        "2026-11-25T12:30:00+01:00",
        "https://www.youtube.com/",
    ])
    .await;
    assert!(
        out.contains("decision: allow (enforce) by default:catalog"),
        "lunch hour: {out}"
    );
}
