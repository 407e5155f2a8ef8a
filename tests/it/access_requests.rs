//! Access requests (`request_access: true`): a real client through the
//! proxy gets the block page with the form, posts a reason to the own
//! name, and the request is recorded as an `access-request` record and
//! posted to a real local webhook server; a webhook that fails is retried,
//! counted and the request is still in the log; forged, expired and
//! someone else's forms are refused.

use std::time::Duration;

use crate::support::*;

fn policy(webhook: &str) -> String {
    format!(
        r#"
version: 1
settings:
  timezone: Europe/Berlin
  organization: Test Corp
auth:
  htpasswd: users.htpasswd
groups:
  staff:
    networks: [127.0.0.0/8]
logging:
  retention: 30 days
requests:
  recipient: the brand team <social@example.com>
{webhook}
rules:
  - id: no-tiktok
    groups: [staff]
    platforms: [tiktok]
    action: block
    request_access: true
    message: TikTok is not for work.
  - id: no-instagram
    groups: [staff]
    platforms: [instagram]
    action: block
"#
    )
}

async fn start(webhook: &str) -> TestProxy {
    let dir = PolicyDir::new(&policy(webhook));
    let mut users = htpasswd_line("alice", "wonderland");
    users.push_str(&htpasswd_line("bob", "builder"));
    dir.write("users.htpasswd", &users);
    TestProxy::start_in(dir, |cfg| {
        cfg.proxy.webhook_backoff = Duration::from_millis(20);
    })
    .await
}

/// The block page as a browser loads it, and the form's token.
async fn blocked_page(c: &reqwest::Client, url: &str) -> (String, Option<String>) {
    let r = within(c.get(url).header("Accept", "text/html").send())
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let body = r.text().await.unwrap();
    let token = body
        .split(r#"name="t" value=""#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .map(str::to_string);
    (body, token)
}

async fn send(c: &reqwest::Client, token: &str, reason: &str) -> (u16, String) {
    let r = within(
        c.post("http://socialgate.local/request-access")
            .form(&[("t", token), ("reason", reason)])
            .send(),
    )
    .await
    .unwrap();
    let status = r.status().as_u16();
    (status, r.text().await.unwrap())
}

fn metric(proxy: &TestProxy, name: &str, labels: &[(&str, &str)]) -> u64 {
    let text = proxy.app().metrics.render(&proxy.app().state.gauges, None);
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_blocked_person_requests_access_and_it_is_logged_and_posted_to_the_webhook() {
    let hook = RecordingOrigin::start().await;
    let proxy = start(&format!(
        "  webhook: http://127.0.0.1:{}/hooks/socialgate?secret=s3",
        hook.port()
    ))
    .await;
    let alice = proxy.client_as("127.0.0.2", "alice", "wonderland");

    // The block page offers the form (and a rule without it does not).
    let (page, token) = blocked_page(&alice, "http://www.tiktok.com/").await;
    let token = token.unwrap_or_else(|| panic!("no form on {page}"));
    assert!(page.contains("Request access"), "{page}");
    assert!(
        page.contains("the brand team &lt;social@example.com&gt;"),
        "{page}"
    );
    assert!(
        page.contains(r#"action="http://socialgate.local/request-access""#),
        "{page}"
    );
    let (other, none) = blocked_page(&alice, "http://www.instagram.com/").await;
    assert!(
        none.is_none() && !other.contains("Request access"),
        "{other}"
    );

    // Sent: the person is told it went, and to whom.
    let reason = "I run the brand account\r\nfor the <spring> campaign\u{7}";
    let (status, done) = send(&alice, &token, reason).await;
    assert_eq!(status, 200, "{done}");
    assert!(done.contains("was sent to the brand team"), "{done}");
    assert!(
        done.contains("I run the brand account for the &lt;spring&gt; campaign"),
        "{done}"
    );

    // One access-request record, pseudonymised, with rule, platform, group,
    // and every line as docs/access-log.md documents it.
    let lines = proxy.exactly_log_lines(3).await;
    let schema = crate::observability::documented_schema();
    for l in &lines {
        schema.check(l, &["no-tiktok", "no-instagram"]);
    }
    let req = lines
        .iter()
        .find(|l| l["kind"] == "access-request")
        .unwrap_or_else(|| panic!("{lines:#?}"));
    assert_eq!(req["host"], "www.tiktok.com");
    assert_eq!(req["platform"], "tiktok");
    assert_eq!(req["category"], "video");
    assert_eq!(req["rule"], "no-tiktok");
    assert_eq!(req["group"], "staff");
    assert_eq!(req["method"], "POST");
    assert_eq!(req["status"], 200);
    assert_eq!(
        req["request_reason"],
        "I run the brand account for the <spring> campaign"
    );
    let pseudonym = proxy.pseudonym_of("alice");
    assert_eq!(req["user"], pseudonym.as_str());
    assert!(!serde_json::to_string(&lines).unwrap().contains("alice"));
    assert_eq!(
        metric(
            &proxy,
            "socialgate_access_requests_total",
            &[("rule", "no-tiktok")]
        ),
        1
    );

    // The webhook got the same, as JSON, with the pseudonym.
    eventually("the webhook receives the request", || {
        !hook.requests().is_empty()
    })
    .await;
    let got = hook.requests();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].method, "POST");
    assert_eq!(got[0].target, "/hooks/socialgate?secret=s3");
    let body: serde_json::Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(body["event"], "access-request");
    assert_eq!(body["rule"], "no-tiktok");
    assert_eq!(body["platform"], "tiktok");
    assert_eq!(body["group"], "staff");
    assert_eq!(body["user"], pseudonym.as_str());
    assert_eq!(
        body["reason"],
        "I run the brand account for the <spring> campaign"
    );
    eventually("the delivery is counted", || {
        metric(
            &proxy,
            "socialgate_access_request_webhook_total",
            &[("result", "delivered")],
        ) == 1
    })
    .await;
}

#[tokio::test]
async fn forged_expired_and_other_peoples_forms_are_refused() {
    let proxy = start("").await;
    let alice = proxy.client_as("127.0.0.2", "alice", "wonderland");
    let bob = proxy.client_as("127.0.0.3", "bob", "builder");
    let (_, token) = blocked_page(&alice, "http://www.tiktok.com/").await;
    let token = token.unwrap();

    // Someone else's form.
    let (status, body) = send(&bob, &token, "me too").await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("made for someone else"), "{body}");
    // Altered: one character of the payload changed.
    let mut forged = token.clone().into_bytes();
    forged[5] = if forged[5] == b'A' { b'B' } else { b'A' };
    let (status, body) = send(&alice, &String::from_utf8(forged).unwrap(), "x").await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains("damaged or was not made by this proxy"),
        "{body}"
    );
    // No token, or a Continue-style query token: refused.
    let (status, _) = send(&alice, "", "x").await;
    assert_eq!(status, 403);
    // No reason.
    let (status, body) = send(&alice, &token, " \r\n ").await;
    assert_eq!(status, 400, "{body}");
    // A form far too large.
    let big = "x".repeat(20_000);
    let (status, _) = send(&alice, &token, &big).await;
    assert_eq!(status, 400);
    // A GET to the path is the page, not a request.
    let r = within(alice.get("http://socialgate.local/request-access").send())
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Expired: an hour later.
    proxy
        .app()
        .state
        .config
        .clock
        .advance(Duration::from_secs(3601));
    let (status, body) = send(&alice, &token, "still need it").await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("expired"), "{body}");

    // None of them is an access request in the log.
    let lines = proxy.exactly_log_lines(8).await;
    assert!(
        lines.iter().all(|l| l["kind"] != "access-request"),
        "{lines:#?}"
    );
    assert_eq!(metric(&proxy, "socialgate_access_requests_total", &[]), 0);
}

#[tokio::test]
async fn a_failing_webhook_is_retried_counted_and_the_request_stays_in_the_log() {
    // A port nothing listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let proxy = start(&format!("  webhook: http://127.0.0.1:{port}/hook")).await;
    let alice = proxy.client_as("127.0.0.2", "alice", "wonderland");
    let (_, token) = blocked_page(&alice, "http://www.tiktok.com/").await;
    let (status, _) = send(&alice, &token.unwrap(), "for the campaign").await;
    assert_eq!(status, 200);
    eventually_async(
        "the webhook failure is counted after every retry",
        || async {
            metric(
                &proxy,
                "socialgate_access_request_webhook_total",
                &[("result", "failed")],
            ) == 1
        },
    )
    .await;
    let lines = proxy.exactly_log_lines(2).await;
    assert!(
        lines
            .iter()
            .any(|l| l["kind"] == "access-request" && l["request_reason"] == "for the campaign"),
        "{lines:#?}"
    );
}

#[tokio::test]
async fn bad_request_settings_are_refused_with_where_and_how() {
    let cases = [
        (
            "requests: {webhook: 'ftp://hooks.example.com/x'}\n",
            "requests.webhook",
        ),
        (
            "requests: {webhook: 'https://user:pw@hooks.example.com/x'}\n",
            "user name or password",
        ),
        (
            "rules:\n  - {id: ok-tiktok, groups: [staff], platforms: [tiktok], action: allow, request_access: true}\n",
            "rules[0].request_access",
        ),
    ];
    for (extra, want) in cases {
        let dir = PolicyDir::new(&format!(
            "version: 1\ngroups: {{staff: {{networks: [127.0.0.0/8]}}}}\n{extra}"
        ));
        let (code, _, err) = socialgate(&["check", dir.path().to_str().unwrap()]).await;
        assert_ne!(code, 0, "{extra}");
        assert!(err.contains(want), "{extra}: {err}");
    }
}

/// One access-request record as the proxy writes it.
fn request_line(
    at: &str,
    user: &str,
    client: &str,
    group: &str,
    host: &str,
    platform: &str,
) -> String {
    serde_json::json!({
        "time": at, "kind": "access-request", "client": client, "user": user, "auth": "basic",
        "groups": [group], "group": group, "method": "POST", "host": host, "port": 80,
        "platform": platform, "category": "video", "class": null, "activity": null,
        "foreground": false, "action": "block", "mode": "enforce", "rule": "no-video",
        "reason": "rule-matched", "request_reason": "for work", "status": 200,
        "bytes_up": 0, "bytes_down": 0, "duration_ms": 1
    })
    .to_string()
}

#[test]
fn simulate_shows_which_access_requests_a_candidate_would_grant() {
    // Three marketing people asked for TikTok, one staff member for
    // YouTube; the candidate allows TikTok for marketing only.
    let mut lines: Vec<String> = ["p:m1", "p:m2", "p:m3"]
        .iter()
        .enumerate()
        .map(|(i, u)| {
            request_line(
                &format!("2026-03-02T10:0{i}:00Z"),
                u,
                "10.2.0.9",
                "marketing",
                "www.tiktok.com",
                "tiktok",
            )
        })
        .collect();
    lines.push(request_line(
        "2026-03-02T10:05:00Z",
        "p:s1",
        "10.1.0.9",
        "staff",
        "www.youtube.com",
        "youtube",
    ));
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    std::fs::write(&log, lines.join("\n") + "\n").unwrap();
    let candidate = PolicyDir::new(
        r#"
version: 1
groups:
  marketing: {networks: [10.2.0.0/16]}
  staff: {networks: [10.0.0.0/8]}
rules:
  - {id: marketing-tiktok, groups: [marketing], platforms: [tiktok], action: allow}
  - {id: no-video, groups: [staff], categories: [video], action: block}
"#,
    );
    let run = |format: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_socialgate"))
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
    let json: serde_json::Value = serde_json::from_str(&run("json")).unwrap();
    assert_eq!(json["access_requests"], 4, "{json}");
    assert_eq!(
        json["replayed"], 0,
        "access requests are no traffic: {json}"
    );
    assert_eq!(
        json["would_grant"],
        serde_json::json!([{"group": "marketing", "platform": "tiktok", "rule": "no-video",
            "requests": 3, "users": 3, "activities": {}}]),
        "{json}"
    );
    let text = run("text");
    assert!(
        text.contains("access requests: 4; the candidate would grant 3 of them:")
            && text.contains(
                "3 requests by 3 users of marketing for tiktok (refused then by `no-video`)"
            ),
        "{text}"
    );
}

/// A block page shown inside an inspected tunnel posts its form back to
/// the blocked site's own origin, over the same TLS session, so the
/// browser never sends a form from an HTTPS page to an `http://` address;
/// socialgate answers that one path itself, checks the token as on the own
/// name, and records the request.
#[tokio::test]
async fn inside_an_inspected_tunnel_the_form_posts_back_over_the_same_tls_session() {
    const INSPECTED: &str = r#"
version: 1
settings:
  timezone: Europe/Berlin
  organization: Test Corp
destinations:
  allow: [127.0.0.0/8]
tunnels:
  ports: [any]
groups:
  staff:
    networks: [127.0.0.0/8]
requests:
  recipient: the brand team
rules:
  - id: no-tiktok
    groups: [staff]
    platforms: [tiktok]
    action: block
    inspect: true
    request_access: true
"#;
    let origin = TlsOrigin::start(&["www.tiktok.com"]).await;
    let proxy = TestProxy::inspecting(INSPECTED, &[&origin]).await;
    let c = proxy.inspected_client(false);
    let site = format!("https://www.tiktok.com:{}", origin.port());

    let (page, token) = blocked_page(&c, &format!("{site}/")).await;
    let token = token.unwrap_or_else(|| panic!("no form on {page}"));
    assert!(
        page.contains(r#"action="/.well-known/socialgate/request-access""#),
        "{page}"
    );
    let post = format!("{site}/.well-known/socialgate/request-access");
    let sent = within(
        c.post(&post)
            .form(&[("t", token.as_str()), ("reason", "I run the brand account")])
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(sent.status(), 200);
    let done = sent.text().await.unwrap();
    assert!(done.contains("was sent to the brand team"), "{done}");
    // A forged form on the same path is refused, and never reaches the site.
    let forged = within(
        c.post(&post)
            .form(&[("t", "forged"), ("reason", "let me in")])
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(forged.status(), 403);
    drop(c);

    // The block, the request (its exchange's record is the access-request
    // record), the forged form, and the tunnel.
    let lines = proxy.exactly_log_lines(4).await;
    let req = lines
        .iter()
        .find(|l| l["kind"] == "access-request")
        .unwrap_or_else(|| panic!("{lines:#?}"));
    assert_eq!(req["host"], "www.tiktok.com");
    assert_eq!(req["platform"], "tiktok");
    assert_eq!(req["rule"], "no-tiktok");
    assert_eq!(req["group"], "staff");
    assert_eq!(req["request_reason"], "I run the brand account");
    assert_eq!(
        lines
            .iter()
            .filter(|l| l["kind"] == "access-request")
            .count(),
        1,
        "{lines:#?}"
    );
    for l in lines.iter().filter(|l| l["kind"] != "tunnel") {
        assert_eq!(l["tls"], "intercepted", "{l}");
    }
    let refused = lines
        .iter()
        .find(|l| l["kind"] == "request" && l["status"] == 403 && l["reason"] == "own-page")
        .unwrap_or_else(|| panic!("the forged form's record: {lines:#?}"));
    assert_eq!(refused["path"], "/.well-known/socialgate/request-access");
}
