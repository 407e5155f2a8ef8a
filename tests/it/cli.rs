//! The command line an admin uses before deploying: `check`, `test`,
//! `explain`, on the real binary; the broken policies `check` refuses are a
//! table run through the loader in process.

use crate::support::*;

/// Where a policy error must point.
#[derive(Debug)]
enum At {
    /// `line:col` from the YAML parser.
    Line(usize, usize),
    /// A value path such as `rules[0].platforms[0]`.
    Path(&'static str),
}

/// One broken policy: its files, and the error the loader must report.
struct Broken {
    name: &'static str,
    policy: String,
    extra: Vec<(&'static str, String)>,
    file: &'static str,
    at: At,
    message: &'static str,
    /// Text the error (message or hint) must also carry.
    also: Option<&'static str>,
}

fn broken_policies() -> Vec<Broken> {
    let staff = "version: 1\ngroups:\n  staff:\n    networks: [10.0.0.0/8]\n";
    vec![
        Broken {
            name: "bad YAML",
            policy: "version: 1\nrules: [\n  - id: broken\n    action: : block\n".into(),
            extra: vec![],
            file: "policy.yaml",
            at: At::Line(3, 3),
            message: "did not find expected",
            also: None,
        },
        Broken {
            name: "an unknown key",
            policy: "version: 1\nsetings:\n  timezone: UTC\n".into(),
            extra: vec![],
            file: "policy.yaml",
            at: At::Line(2, 1),
            message: "unknown field `setings`",
            also: None,
        },
        Broken {
            name: "a platform typo",
            policy: format!("{staff}rules:\n  - id: r\n    platforms: [tiktk]\n    action: block\n"),
            extra: vec![],
            file: "policy.yaml",
            at: At::Path("rules[0].platforms[0]"),
            message: "unknown platform \"tiktk\"",
            also: Some("did you mean \"tiktok\"?"),
        },
        Broken {
            name: "a bad CIDR",
            policy: "version: 1\ngroups:\n  staff:\n    networks: [10.0.0.0/33]\n".into(),
            extra: vec![],
            file: "policy.yaml",
            at: At::Path("groups.staff.networks[0]"),
            message: "is not a network",
            also: None,
        },
        Broken {
            name: "a time of 25:00",
            policy: format!("{staff}rules:\n  - id: r\n    platforms: [youtube]\n    when:\n      - days: [mon-fri]\n        from: \"25:00\"\n        to: \"26:00\"\n    action: block\n"),
            extra: vec![],
            file: "policy.yaml",
            at: At::Path("rules[0].when[0].from"),
            message: "\"25:00\" is not a time of day",
            also: None,
        },
        Broken {
            name: "the second bad time, reported too",
            policy: format!("{staff}rules:\n  - id: r\n    platforms: [youtube]\n    when:\n      - days: [mon-fri]\n        from: \"25:00\"\n        to: \"26:00\"\n    action: block\n"),
            extra: vec![],
            file: "policy.yaml",
            at: At::Path("rules[0].when[0].to"),
            message: "\"26:00\" is not a time of day",
            also: None,
        },
        Broken {
            name: "an unknown time zone",
            policy: "version: 1\nsettings:\n  timezone: Europe/Berlinn\n".into(),
            extra: vec![],
            file: "policy.yaml",
            at: At::Path("settings.timezone"),
            message: "Europe/Berlinn",
            also: None,
        },
        Broken {
            name: "a duplicate rule id",
            policy: format!("{staff}rules:\n  - id: same\n    platforms: [tiktok]\n    action: block\n  - id: same\n    platforms: [x]\n    action: block\n"),
            extra: vec![],
            file: "policy.yaml",
            at: At::Path("rules[1].id"),
            message: "rule id \"same\" is used twice",
            also: None,
        },
        Broken {
            name: "an htpasswd line without a bcrypt hash",
            policy: "version: 1\nauth:\n  htpasswd: users.htpasswd\ngroups:\n  staff:\n    networks: [10.0.0.0/8]\n".into(),
            extra: vec![(
                "users.htpasswd",
                format!(
                    "{}carol:$apr1$abc$0123456789abcdefghijk/\n",
                    htpasswd_line("alice", "pw")
                ),
            )],
            file: "users.htpasswd",
            at: At::Line(2, 1),
            message: "\"carol\" does not have a bcrypt hash",
            also: Some("htpasswd -B"),
        },
        Broken {
            name: "an IPv6 network in the PAC bypass list",
            policy: format!("{staff}pac:\n  direct_networks: [10.0.0.0/8, \"fd00::/8\"]\n"),
            extra: vec![],
            file: "policy.yaml",
            at: At::Path("pac.direct_networks[1]"),
            message: "\"fd00::/8\" is an IPv6 network",
            also: Some("isInNet() tests IPv4 only"),
        },
        Broken {
            name: "a wildcard in the PAC bypass list",
            policy: format!("{staff}pac:\n  direct_domains: [\"*.corp.example\"]\n"),
            extra: vec![],
            file: "policy.yaml",
            at: At::Path("pac.direct_domains[0]"),
            message: "contains a wildcard",
            also: Some("covers the domain and all of its subdomains"),
        },
        Broken {
            name: "a bad CIDR in the PAC bypass list",
            policy: format!("{staff}pac:\n  direct_networks: [10.0.0.0/33]\n"),
            extra: vec![],
            file: "policy.yaml",
            at: At::Path("pac.direct_networks[0]"),
            message: "is not a network",
            also: None,
        },
    ]
}

#[test]
fn the_loader_refuses_each_broken_policy_naming_the_file_the_place_and_a_fix() {
    for case in broken_policies() {
        let dir = PolicyDir::new(&case.policy);
        for (name, text) in &case.extra {
            dir.write(name, text);
        }
        let errors = match socialgate::policy::load_dir(dir.path()) {
            Ok(_) => panic!("{}: the policy was accepted", case.name),
            Err(e) => e.0,
        };
        let found = errors.iter().find(|e| {
            e.file.file_name().is_some_and(|f| f == case.file)
                && match case.at {
                    At::Line(l, c) => e.location == Some((l, c)),
                    At::Path(p) => e.path == p,
                }
        });
        let Some(e) = found else {
            panic!(
                "{}: no error in {} at {:?}: {errors:#?}",
                case.name, case.file, case.at
            );
        };
        assert!(e.message.contains(case.message), "{}: {e:?}", case.name);
        assert!(e.hint.is_some(), "{}: no hint to fix it: {e:?}", case.name);
        if let Some(also) = case.also {
            assert!(e.to_string().contains(also), "{}: {e}", case.name);
        }
    }
}

#[tokio::test]
async fn check_exits_2_and_prints_each_error_with_its_place_and_hint() {
    let dir = PolicyDir::new("version: 1\nrules: [\n  - id: broken\n    action: : block\n");
    let path = dir.path().to_str().unwrap();
    let (code, out, err) = socialgate(&["check", path]).await;
    assert_eq!(code, 2, "{err}");
    assert_eq!(out, "", "errors go to stderr");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 3, "{err}");
    let first = format!("{path}/policy.yaml:3:3: ");
    assert!(
        lines[0].starts_with(&first) && lines[0].contains("did not find expected"),
        "{err}"
    );
    assert!(lines[1].starts_with("  hint: "), "{err}");
    assert_eq!(lines[2], format!("1 error(s) in {path}"));
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
