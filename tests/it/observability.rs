//! Metrics scraped over HTTP with exact counts, the access log checked
//! against its documented schema in both formats, pseudonyms, and the
//! bounded writer that drops (and counts) instead of stalling traffic.

use std::collections::BTreeSet;
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

/// Every field documented in docs/access-log.md's schema table.
fn documented_fields() -> BTreeSet<String> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("docs/access-log.md")).unwrap();
    let schema = doc
        .split("## JSON schema")
        .nth(1)
        .unwrap()
        .split("\n#")
        .next()
        .unwrap();
    schema
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .map(str::to_string)
        .collect()
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
    alice
        .get(format!("http://example.org:{}/hello", origin.port()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    alice
        .get("http://www.tiktok.com/secret/path")
        .send()
        .await
        .unwrap();
    let lines = proxy.log_lines(2).await;
    let fields = documented_fields();
    let required: BTreeSet<String> = fields
        .iter()
        .filter(|f| !["path", "sni", "error"].contains(&f.as_str()))
        .cloned()
        .collect();
    for line in &lines {
        let obj = line.as_object().unwrap();
        let keys: BTreeSet<String> = obj.keys().cloned().collect();
        for k in &keys {
            assert!(fields.contains(k), "field {k} is not documented");
        }
        for k in &required {
            assert!(keys.contains(k), "field {k} missing from {line}");
        }
        assert!(obj["time"].as_str().unwrap().ends_with('Z'));
        assert!(["request", "tunnel"].contains(&obj["kind"].as_str().unwrap()));
        assert!(
            obj["bytes_up"].is_u64() && obj["bytes_down"].is_u64() && obj["duration_ms"].is_u64()
        );
        // Pseudonymised by default: p: + 16 hex digits, never the name.
        let user = obj["user"].as_str().unwrap();
        assert!(user.starts_with("p:") && user.len() == 18, "{user}");
        assert!(!line.to_string().contains("alice"));
        assert_eq!(obj["auth"], "basic");
    }
    // Paths of social platforms are not logged by default; other sites' are.
    assert_eq!(lines[0]["path"], "/hello");
    assert!(lines[1].get("path").is_none(), "{}", lines[1]);
    // The same user always gets the same pseudonym.
    assert_eq!(lines[0]["user"], lines[1]["user"]);
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
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let text = loop {
        let t = std::fs::read_to_string(&proxy.log_path).unwrap_or_default();
        if t.lines().count() >= 2 || tokio::time::Instant::now() > deadline {
            break t;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
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
