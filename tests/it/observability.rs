//! Metrics scraped over HTTP with exact counts, the access log checked
//! against its documented schema in both formats, pseudonyms, and the
//! bounded writer that drops (and counts) instead of stalling traffic.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::support::*;

async fn scrape(proxy: &TestProxy) -> String {
    let admin = proxy.app().admin_addr.expect("admin listener");
    reqwest::get(format!("http://{admin}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The value of one sample, matched by name and an exact label set.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (head, value) = l.rsplit_once(' ')?;
        let (n, rest) = head.split_once('{').unwrap_or((head, "}"));
        if n != name {
            return None;
        }
        let got: BTreeSet<String> = rest
            .trim_end_matches('}')
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|s| s.replace('"', ""))
            .collect();
        let want: BTreeSet<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        (got == want).then(|| value.parse().ok()).flatten()
    })
}

const TWO_GROUPS: &str = r#"
version: 1
destinations:
  allow: [127.0.0.0/8]
tunnels:
  ports: [any]
groups:
  marketing:
    networks: [127.0.0.2/32]
  staff:
    networks: [127.0.0.0/8]
rules:
  - id: marketing-social
    groups: [marketing]
    platforms: [tiktok, instagram]
    action: allow
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

#[tokio::test]
async fn metrics_count_decisions_and_bytes_per_group_platform_and_rule() {
    let origin = Origin::start().await;
    let proxy = TestProxy::start(TWO_GROUPS).await;
    let staff = proxy.client_from("127.0.0.1");
    let marketing = proxy.client_from("127.0.0.2");
    let tiktok = format!("http://www.tiktok.com:{}/hello", origin.port());
    let insta = format!("http://www.instagram.com:{}/hello", origin.port());
    for _ in 0..3 {
        assert_eq!(staff.get(&tiktok).send().await.unwrap().status(), 403);
    }
    for _ in 0..2 {
        assert_eq!(marketing.get(&tiktok).send().await.unwrap().status(), 200);
    }
    for _ in 0..4 {
        let r = staff.get(&insta).send().await.unwrap();
        assert_eq!(r.status(), 200, "report mode lets traffic pass");
        r.bytes().await.unwrap();
    }
    let up = staff
        .post(format!("http://www.instagram.com:{}/upload", origin.port()))
        .body(vec![b'u'; 1000])
        .send()
        .await
        .unwrap();
    assert_eq!(up.status(), 404);
    up.bytes().await.unwrap();
    proxy.log_lines(10).await; // every event recorded

    let m = scrape(&proxy).await;
    let d = |g, p, a, mode, r| {
        sample(
            &m,
            "socialgate_decisions_total",
            &[
                ("group", g),
                ("platform", p),
                ("action", a),
                ("mode", mode),
                ("rule", r),
            ],
        )
    };
    assert_eq!(
        d("staff", "tiktok", "block", "enforce", "no-tiktok"),
        Some(3.0),
        "{m}"
    );
    assert_eq!(
        d(
            "marketing",
            "tiktok",
            "allow",
            "enforce",
            "marketing-social"
        ),
        Some(2.0),
        "{m}"
    );
    assert_eq!(
        d("staff", "instagram", "block", "report", "instagram-dry-run"),
        Some(5.0),
        "{m}"
    );
    let down = sample(
        &m,
        "socialgate_bytes_total",
        &[
            ("group", "marketing"),
            ("platform", "tiktok"),
            ("direction", "down"),
        ],
    );
    assert_eq!(down, Some(2.0 * "hello from origin".len() as f64), "{m}");
    let up = sample(
        &m,
        "socialgate_bytes_total",
        &[
            ("group", "staff"),
            ("platform", "instagram"),
            ("direction", "up"),
        ],
    );
    assert_eq!(up, Some(1000.0), "{m}");
    assert_eq!(
        sample(
            &m,
            "socialgate_requests_total",
            &[("kind", "request"), ("status", "4xx")]
        ),
        Some(4.0),
        "{m}"
    );
    assert_eq!(
        sample(&m, "socialgate_decision_seconds_count", &[]),
        Some(10.0),
        "{m}"
    );
    assert!(sample(&m, "socialgate_upstream_connect_seconds_count", &[]).unwrap() >= 1.0);
    let hash = proxy.app().policy().load().source.hash.clone();
    assert_eq!(
        sample(
            &m,
            "socialgate_policy_info",
            &[("version", "1"), ("hash", &hash)]
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        sample(&m, "socialgate_access_log_dropped_total", &[]),
        Some(0.0)
    );
    // Bounded labels: never a user or a raw host.
    assert!(!m.contains("www.tiktok.com"), "a raw host became a label");
    assert!(!m.contains("user="), "a user became a label");
}

#[tokio::test]
async fn metrics_count_reloads_auth_failures_and_serve_health_endpoints() {
    let dir = PolicyDir::new(
        &BASIC_POLICY
            .replace(
                "\ngroups:\n",
                "\nauth:\n  htpasswd: users.htpasswd\ngroups:\n",
            )
            .replace(
                "networks: [127.0.0.0/8, \"::1/128\"]",
                "networks: [127.0.0.1/32]",
            ),
    );
    dir.write(
        "users.htpasswd",
        &format!("alice:{}\n", bcrypt::hash("pw", 4).unwrap()),
    );
    let proxy = TestProxy::start_in(dir, |_| {}).await;
    let outsider = reqwest::Client::builder()
        .proxy(reqwest::Proxy::all(proxy.url()).unwrap())
        .local_address(Some("127.0.0.7".parse().unwrap()))
        .build()
        .unwrap();
    assert_eq!(
        outsider
            .get("http://example.org/")
            .send()
            .await
            .unwrap()
            .status(),
        407
    );
    let wrong = reqwest::Client::builder()
        .proxy(
            reqwest::Proxy::all(proxy.url())
                .unwrap()
                .basic_auth("alice", "nope"),
        )
        .local_address(Some("127.0.0.7".parse().unwrap()))
        .build()
        .unwrap();
    assert_eq!(
        wrong
            .get("http://example.org/")
            .send()
            .await
            .unwrap()
            .status(),
        407
    );

    // One good reload, one broken.
    let admin = proxy.app().admin_addr.unwrap();
    let http = reqwest::Client::new();
    let ok = http
        .post(format!("http://{admin}/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    std::fs::write(
        proxy.policy.path().join("policy.yaml"),
        "version: 1\nrules: [oops\n",
    )
    .unwrap();
    let bad = http
        .post(format!("http://{admin}/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 422);
    assert!(bad.text().await.unwrap().contains("policy.yaml"));

    proxy.log_lines(2).await;
    let m = scrape(&proxy).await;
    assert_eq!(
        sample(
            &m,
            "socialgate_auth_failures_total",
            &[("reason", "auth-required")]
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        sample(
            &m,
            "socialgate_auth_failures_total",
            &[("reason", "auth-failed")]
        ),
        Some(1.0),
        "{m}"
    );
    assert!(
        sample(&m, "socialgate_policy_reloads_total", &[("result", "ok")]).unwrap() >= 1.0,
        "{m}"
    );
    assert!(
        sample(
            &m,
            "socialgate_policy_reloads_total",
            &[("result", "error")]
        )
        .unwrap()
            >= 1.0,
        "{m}"
    );

    assert_eq!(
        http.get(format!("http://{admin}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let ready: serde_json::Value = serde_json::from_str(
        &http
            .get(format!("http://{admin}/readyz"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(ready["ready"], true);
    assert!(ready["policy_hash"].as_str().unwrap().len() == 16);
    let pac = http
        .get(format!("http://{admin}/proxy.pac"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(pac.contains(&format!("PROXY {}", proxy.addr)), "{pac}");
}

#[tokio::test]
async fn every_metric_is_documented_and_the_dashboard_uses_only_real_metrics() {
    let proxy = TestProxy::start(BASIC_POLICY).await;
    let _ = proxy
        .client()
        .get("http://www.tiktok.com/")
        .send()
        .await
        .unwrap();
    proxy.log_lines(1).await;
    let m = scrape(&proxy).await;
    let exported: BTreeSet<String> = m
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| l.split(' ').next().unwrap().to_string())
        .collect();
    assert!(exported.len() >= 8, "{exported:?}");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let docs = std::fs::read_to_string(root.join("docs/metrics.md")).unwrap();
    let documented: BTreeSet<String> = docs
        .lines()
        .filter_map(|l| l.strip_prefix("| `socialgate_"))
        .filter_map(|l| l.split('`').next())
        .map(|n| format!("socialgate_{n}"))
        .collect();
    for name in &exported {
        assert!(
            documented.contains(name),
            "docs/metrics.md does not list {name}"
        );
    }
    let dash = std::fs::read_to_string(root.join("deploy/grafana/socialgate.json")).unwrap();
    let _: serde_json::Value = serde_json::from_str(&dash).expect("dashboard is valid JSON");
    let mut used = BTreeSet::new();
    let mut rest = dash.as_str();
    while let Some(i) = rest.find("socialgate_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        used.insert(tail[..end].trim_end_matches("_bucket").to_string());
        rest = &tail[end..];
    }
    assert!(!used.is_empty());
    for name in used {
        assert!(
            documented.contains(&name),
            "the dashboard uses {name}, which socialgate does not export"
        );
    }
}

/// What docs/access-log.md allows in one field, read from its type column.
#[derive(Debug, Default)]
struct FieldSpec {
    /// "optional": the field may be absent.
    optional: bool,
    /// The quoted values of an enumerated field (`"allow"` \| `"block"`).
    values: Vec<String>,
    null: bool,
    /// "string", "integer", "bool" or "array of strings"; empty when only
    /// `values` (and null) are allowed.
    base: &'static str,
    /// "RFC 3339 UTC".
    utc_time: bool,
}

/// The access-log schema as docs/access-log.md documents it.
pub(crate) struct Schema {
    fields: BTreeMap<String, FieldSpec>,
    /// Reason label → its rule column (a pseudo-rule, or "the rule id").
    reasons: BTreeMap<String, String>,
    errors: BTreeSet<String>,
}

/// The rows of the first table after `heading`, as trimmed cells (the
/// header and separator rows left out). `\|` inside a cell is not a column.
fn table(doc: &str, heading: &str) -> Vec<Vec<String>> {
    let section = doc
        .split(heading)
        .nth(1)
        .unwrap_or_else(|| panic!("docs/access-log.md has no {heading:?}"));
    section
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2)
        .map(|l| {
            l.replace("\\|", "\u{1}")
                .trim_matches('|')
                .split('|')
                .map(|c| c.replace('\u{1}', "|").trim().to_string())
                .collect()
        })
        .collect()
}

fn unquote(cell: &str) -> String {
    cell.trim_matches('`').to_string()
}

pub(crate) fn documented_schema() -> Schema {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("docs/access-log.md")).unwrap();
    let mut fields = BTreeMap::new();
    for row in table(&doc, "## JSON schema") {
        let ty = row[1].as_str();
        let mut spec = FieldSpec {
            optional: ty.contains("optional"),
            null: ty.contains("null"),
            utc_time: ty.contains("RFC 3339 UTC"),
            ..FieldSpec::default()
        };
        for part in ty.split('`').skip(1).step_by(2) {
            if let Some(v) = part.strip_prefix('"').and_then(|p| p.strip_suffix('"')) {
                spec.values.push(v.to_string());
            }
        }
        spec.base = ["array of strings", "string", "integer", "bool"]
            .into_iter()
            .find(|b| ty.starts_with(b))
            .unwrap_or("");
        assert!(
            !spec.values.is_empty() || !spec.base.is_empty(),
            "cannot read the type of {}: {ty:?}",
            row[0]
        );
        fields.insert(unquote(&row[0]), spec);
    }
    let reasons = table(&doc, "### Reason labels")
        .into_iter()
        .map(|r| (unquote(&r[0]), r[1].clone()))
        .collect();
    let errors = table(&doc, "### Error labels")
        .into_iter()
        .map(|r| unquote(&r[0]))
        .collect();
    Schema {
        fields,
        reasons,
        errors,
    }
}

impl Schema {
    /// Fails unless `line` has every required field, only documented ones,
    /// each of its documented type or one of its documented values; a
    /// documented reason with its documented pseudo-rule (or one of
    /// `rule_ids`), and a documented error label if any.
    pub(crate) fn check(&self, line: &serde_json::Value, rule_ids: &[&str]) {
        let obj = line.as_object().unwrap();
        for k in obj.keys() {
            assert!(self.fields.contains_key(k), "{k} is not documented: {line}");
        }
        for (name, spec) in &self.fields {
            let Some(v) = obj.get(name) else {
                assert!(spec.optional, "{name} missing from {line}");
                continue;
            };
            let ok = if v.is_null() {
                spec.null
            } else if !spec.values.is_empty() {
                v.as_str()
                    .is_some_and(|s| spec.values.iter().any(|a| a == s))
            } else {
                match spec.base {
                    "string" => v.is_string(),
                    "integer" => v.is_u64() || v.is_i64(),
                    "bool" => v.is_boolean(),
                    "array of strings" => v
                        .as_array()
                        .is_some_and(|a| a.iter().all(serde_json::Value::is_string)),
                    other => panic!("unknown type {other}"),
                }
            };
            assert!(ok, "{name} = {v} is not a documented value ({spec:?})");
            if spec.utc_time {
                let t = v.as_str().unwrap();
                assert!(t.ends_with('Z'), "{name} is not UTC: {t}");
                t.parse::<jiff::Timestamp>()
                    .unwrap_or_else(|e| panic!("{name} is not RFC 3339: {t}: {e}"));
            }
        }
        obj["client"]
            .as_str()
            .unwrap()
            .parse::<std::net::IpAddr>()
            .expect("client is an IP address");
        let reason = obj["reason"].as_str().unwrap();
        let rule = obj["rule"].as_str().unwrap();
        let rule_column = self
            .reasons
            .get(reason)
            .unwrap_or_else(|| panic!("reason {reason} is not documented"));
        if rule_column == "the rule id" {
            assert!(rule_ids.contains(&rule), "rule {rule} for {reason}");
        } else {
            assert_eq!(&unquote(rule_column), rule, "the rule of {reason}");
        }
        if let Some(e) = obj.get("error") {
            let e = e.as_str().unwrap();
            assert!(self.errors.contains(e), "error {e} is not documented");
        }
    }
}

#[test]
fn the_schema_is_read_from_the_docs_with_every_enumeration() {
    // Guards the reader above: a table it failed to read would make every
    // check on real lines pass.
    let schema = documented_schema();
    assert_eq!(schema.fields.len(), 35, "{:?}", schema.fields.keys());
    for f in [
        "parent",
        "request_reason",
        "parent_status",
        "original_dst",
        "signature",
        "activity_unseen",
        "warn",
        "tls",
    ] {
        assert!(schema.fields[f].optional, "{f}");
    }
    let values = |f: &str| schema.fields[f].values.join(",");
    assert_eq!(values("kind"), "request,tunnel,access-request");
    assert_eq!(values("auth"), "none,basic,header");
    assert_eq!(values("class"), "primary,embedded");
    assert!(schema.fields["class"].null && !schema.fields["kind"].null);
    assert_eq!(values("action"), "allow,block,warn");
    assert_eq!(
        values("warn"),
        "shown,held,continued,acknowledged,unshown,bad-link,unsaved"
    );
    assert!(schema.fields["warn"].optional);
    assert_eq!(values("mode"), "enforce,report");
    assert_eq!(values("tls"), "intercepted,passthrough,pinned");
    assert!(schema.fields["tls"].optional);
    assert!(schema.fields["time"].utc_time);
    assert_eq!(schema.fields["port"].base, "integer");
    assert!(schema.fields["error"].optional && !schema.fields["status"].optional);
    assert_eq!(schema.reasons["default-other"], "`default:other`");
    assert_eq!(schema.reasons["rule-matched"], "the rule id");
    assert_eq!(schema.reasons.len(), 16);
    assert!(schema.errors.contains("upstream-connect") && schema.errors.len() >= 11);

    // And the check refuses what the docs do not allow.
    let good = serde_json::json!({
        "time": "2026-03-02T09:00:00.123Z", "kind": "tunnel", "client": "10.0.0.9",
        "user": null, "auth": "none", "groups": ["staff"], "group": "staff",
        "method": "CONNECT", "host": "www.tiktok.com", "port": 443,
        "sni": "www.tiktok.com", "platform": "tiktok", "category": "video",
        "class": "primary", "activity": null, "foreground": true,
        "action": "block", "mode": "enforce", "rule": "no-tiktok",
        "reason": "rule-matched", "status": 403, "bytes_up": 0, "bytes_down": 0,
        "duration_ms": 3
    });
    schema.check(&good, &["no-tiktok"]);
    let bad: &[(&str, serde_json::Value)] = &[
        ("action", "deny".into()),
        ("mode", "dry-run".into()),
        ("kind", "req".into()),
        ("auth", "digest".into()),
        ("class", "main".into()),
        ("reason", "because".into()),
        ("rule", "default:other".into()),
        ("error", "oops".into()),
        ("port", "443".into()),
        ("foreground", 1.into()),
        ("groups", serde_json::json!([1])),
        ("time", "2026-03-02T10:00:00+01:00".into()),
        ("client", "host.example".into()),
        ("undocumented", 1.into()),
        ("status", serde_json::Value::Null),
    ];
    for (field, value) in bad {
        let mut line = good.clone();
        line[*field] = value.clone();
        let refused = std::panic::catch_unwind(|| schema.check(&line, &["no-tiktok"]));
        assert!(refused.is_err(), "{field} = {value} passed the check");
    }
    let mut line = good.clone();
    line.as_object_mut().unwrap().remove("status");
    assert!(std::panic::catch_unwind(|| schema.check(&line, &["no-tiktok"])).is_err());
}

#[tokio::test]
async fn json_log_lines_follow_the_documented_schema_and_pseudonymise_users() {
    let origin = Origin::start().await;
    let dir = PolicyDir::new(&BASIC_POLICY.replace(
        "\ngroups:\n",
        "\nauth:\n  htpasswd: users.htpasswd\ngroups:\n",
    ));
    dir.write(
        "users.htpasswd",
        &format!("alice:{}\n", bcrypt::hash("pw", 4).unwrap()),
    );
    let proxy = TestProxy::start_in(dir, |_| {}).await;
    let alice = reqwest::Client::builder()
        .proxy(
            reqwest::Proxy::all(proxy.url())
                .unwrap()
                .basic_auth("alice", "pw"),
        )
        .build()
        .unwrap();
    let before = jiff::Timestamp::now();
    let started = std::time::Instant::now();
    let body = alice
        .get(format!("http://example.org:{}/hello", origin.port()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let elapsed = started.elapsed();
    let after = jiff::Timestamp::now();
    assert_eq!(body, "hello from origin");
    let refused = alice
        .get("http://www.tiktok.com/secret/path")
        .header("Accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    // A tunnel to a closed port, unauthenticated (127.0.0.1 is staff).
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let connect =
        format!("CONNECT example.org:{closed} HTTP/1.1\r\nHost: example.org:{closed}\r\n\r\n");
    assert_eq!(
        status_of(&raw_exchange(proxy.addr, connect.as_bytes()).await),
        502
    );
    let mut lines = proxy.exactly_log_lines(3).await;

    let schema = documented_schema();
    for line in &lines {
        schema.check(line, &["no-tiktok"]);
    }
    let text = std::fs::read_to_string(&proxy.log_path).unwrap();
    assert!(!text.contains("alice"), "{text}");

    // The first line, field by field; time and duration_ms vary, so they
    // are checked against the clock and then left out.
    let first = lines[0].as_object_mut().unwrap();
    let time: jiff::Timestamp = first
        .remove("time")
        .unwrap()
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        time >= before - jiff::SignedDuration::from_secs(1) && time <= after,
        "{time} is not between {before} and {after}"
    );
    let duration = first.remove("duration_ms").unwrap().as_u64().unwrap();
    assert!(duration as u128 <= elapsed.as_millis(), "{duration} ms");
    let alice_p = proxy.pseudonym_of("alice");
    let port = origin.port();
    assert_eq!(
        lines[0],
        serde_json::json!({
            "kind": "request", "client": "127.0.0.1", "user": alice_p, "auth": "basic",
            "groups": ["staff"], "group": "staff", "method": "GET",
            "host": "example.org", "port": port, "path": "/hello",
            "platform": null, "category": null, "class": null,
            "activity": "read", "foreground": false,
            "action": "allow", "mode": "enforce",
            "rule": "default:other", "reason": "default-other",
            "status": 200, "bytes_up": 0, "bytes_down": 17
        })
    );
    // The refusal: a social platform's path is not logged by default.
    for line in &mut lines[1..] {
        let obj = line.as_object_mut().unwrap();
        obj.remove("time");
        obj.remove("duration_ms");
    }
    assert_eq!(
        lines[1],
        serde_json::json!({
            "kind": "request", "client": "127.0.0.1", "user": alice_p, "auth": "basic",
            "groups": ["staff"], "group": "staff", "method": "GET",
            "host": "www.tiktok.com", "port": 80,
            "platform": "tiktok", "category": "video", "class": "primary",
            "activity": "read", "foreground": true,
            "action": "block", "mode": "enforce",
            "rule": "no-tiktok", "reason": "rule-matched",
            "status": 403, "bytes_up": 0, "bytes_down": 0
        })
    );
    assert_eq!(
        lines[2],
        serde_json::json!({
            "kind": "tunnel", "client": "127.0.0.1", "user": null, "auth": "none",
            "groups": ["staff"], "group": "staff", "method": "CONNECT",
            "host": "example.org", "port": closed,
            "platform": null, "category": null, "class": null,
            "activity": null, "foreground": false,
            "action": "allow", "mode": "enforce",
            "rule": "default:other", "reason": "default-other",
            "status": 502, "bytes_up": 0, "bytes_down": 0,
            "error": "upstream-connect"
        })
    );
}

#[tokio::test]
async fn squid_format_lines_work_for_squid_log_analyzers() {
    let origin = Origin::start().await;
    let proxy = TestProxy::start_in(PolicyDir::new(BASIC_POLICY), |cfg| {
        if let Some(log) = cfg.log.as_mut() {
            log.format = socialgate::accesslog::LogFormat::Squid;
        }
    })
    .await;
    let c = proxy.client();
    c.get(format!("http://example.org:{}/hello", origin.port()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    c.get("http://www.tiktok.com/").send().await.unwrap();
    let read = || std::fs::read_to_string(&proxy.log_path).unwrap_or_default();
    poll_until(Duration::from_secs(5), || read().lines().count() >= 2).await;
    let text = read();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    // time elapsed client code/status bytes method URL user hierarchy type
    for l in &lines {
        let f: Vec<&str> = l.split_whitespace().collect();
        assert_eq!(f.len(), 10, "{l}");
        assert!(
            f[0].contains('.') && f[0].split('.').next().unwrap().parse::<u64>().is_ok(),
            "{l}"
        );
        assert!(f[1].parse::<u64>().is_ok(), "{l}");
        assert_eq!(f[2], "127.0.0.1");
        assert!(f[3].contains('/'), "{l}");
    }
    assert!(lines[0].contains("TCP_MISS/200"), "{}", lines[0]);
    assert!(
        lines[0].contains(&format!("GET http://example.org:{}/hello", origin.port())),
        "{}",
        lines[0]
    );
    assert!(lines[1].contains("TCP_DENIED/403"), "{}", lines[1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_log_disk_never_stalls_traffic_and_drops_are_counted() {
    use std::os::unix::fs::OpenOptionsExt;
    let origin = Origin::start().await;
    let dir = PolicyDir::new(BASIC_POLICY);
    // A FIFO nobody reads: the writer blocks once the pipe buffer is full,
    // like a disk that stopped answering.
    let fifo = dir.path().join("stalled.log");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(status.success());
    let _reader = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .unwrap();
    let fifo_path = fifo.clone();
    let proxy = TestProxy::start_in(dir, move |cfg| {
        cfg.log = Some(socialgate::accesslog::LogConfig {
            path: Some(fifo_path),
            format: socialgate::accesslog::LogFormat::Json,
            capacity: 8,
            mode: socialgate::accesslog::DEFAULT_LOG_MODE,
        });
    })
    .await;
    let c = proxy.client();
    let url = format!("http://example.org:{}/hello", origin.port());
    let total = 400;
    for _ in 0..total {
        let r = tokio::time::timeout(Duration::from_secs(5), c.get(&url).send()).await;
        let r = r.expect("traffic must not stall behind the log").unwrap();
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap();
    }
    let recorder = &proxy.app().recorder;
    let dropped = recorder.dropped();
    assert!(
        dropped > 0,
        "the pipe holds at most 64 KiB; some records must have been dropped"
    );
    let m = scrape(&proxy).await;
    assert_eq!(
        sample(&m, "socialgate_access_log_dropped_total", &[]),
        Some(dropped as f64)
    );
    assert_eq!(
        sample(
            &m,
            "socialgate_decisions_total",
            &[
                ("group", "staff"),
                ("platform", "other"),
                ("action", "allow"),
                ("mode", "enforce"),
                ("rule", "default:other")
            ]
        ),
        Some(total as f64),
        "metrics still see every request"
    );
}
