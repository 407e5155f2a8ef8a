//! The transparency page (`http://socialgate.local/`, the policy's
//! `settings.transparency_host`): real clients through the proxy see their
//! own identity, rules, budgets and what is recorded; never someone
//! else's. The name is never resolved nor dialled, however it is asked for
//! (absolute-form, a `Host` header, CONNECT). The Chromium layout check is
//! in `browser.rs`.

use crate::support::*;

/// Alice is in marketing (by user name), Bob only in staff; one rule is
/// for everyone (a one-minute video budget).
const POLICY: &str = r#"
version: 1
settings:
  timezone: Europe/Berlin
  organization: Test Corp
  help: Ask the test desk.
auth:
  htpasswd: users.htpasswd
destinations:
  allow: [127.0.0.0/8]
tunnels:
  ports: [any]
groups:
  staff:
    networks: [127.0.0.0/8]
  marketing:
    users: [alice]
logging:
  retention: 90 days, then deleted
  reveal: the security officer, with the works council
rules:
  - id: marketing-tiktok
    groups: [marketing]
    platforms: [tiktok]
    action: allow
    message: Post for the brand <b>only</b>.
  - id: no-tiktok
    groups: [staff]
    platforms: [tiktok]
    action: block
    message: TikTok is not for work.
  - id: lunch-linkedin
    groups: [staff]
    platforms: [linkedin]
    when: [{days: [mon-fri], from: "12:00", to: "13:00"}]
    action: allow
  - id: video-1m
    platforms: [youtube]
    action: block
    budget: {minutes: 1}
"#;

/// 10:00:10 in Berlin on Wednesday 25 November 2026.
fn ten_in_the_morning() -> socialgate::proxy::Clock {
    let at: jiff::Timestamp = "2026-11-25T10:00:10+01:00".parse().unwrap();
    socialgate::proxy::Clock::with_offset(at.duration_since(jiff::Timestamp::now()))
}

fn policy_dir() -> PolicyDir {
    let dir = PolicyDir::new(POLICY);
    let mut users = htpasswd_line("alice", "wonderland");
    users.push_str(&htpasswd_line("bob", "builder"));
    dir.write("users.htpasswd", &users);
    dir
}

async fn start() -> TestProxy {
    TestProxy::start_in(policy_dir(), |cfg| cfg.proxy.clock = ten_in_the_morning()).await
}

async fn page(c: &reqwest::Client) -> (u16, String, reqwest::header::HeaderMap) {
    let r = within(c.get("http://socialgate.local/").send())
        .await
        .unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, r.text().await.unwrap(), headers)
}

#[tokio::test]
async fn each_person_sees_their_own_identity_rules_budget_and_what_is_recorded() {
    let origin = Origin::start().await;
    let proxy = start().await;
    let alice = proxy.client_as("127.0.0.2", "alice", "wonderland");
    let bob = proxy.client_as("127.0.0.3", "bob", "builder");

    let (status, a, headers) = page(&alice).await;
    assert_eq!(status, 200, "{a}");
    assert_eq!(headers["x-frame-options"], "DENY");
    assert_eq!(headers["cache-control"], "no-store");
    assert!(headers.get("access-control-allow-origin").is_none());
    for want in [
        "127.0.0.2",
        "<td>alice</td>",
        "your sign-in to the proxy",
        "staff, marketing",
        "marketing-tiktok",
        // The message, escaped.
        "Post for the brand &lt;b&gt;only&lt;/b&gt;.",
        "no-tiktok",
        "later today, from 12:00 (Europe/Berlin)",
        "Mon–Fri 12:00–13:00 (Europe/Berlin)",
        "1 minute a day: 1 minute left; renews at 00:00 on Thursday (Europe/Berlin)",
        "allowed until your daily budget is spent, then refused",
        "90 days, then deleted",
        "the security officer, with the works council",
        "as a pseudonym",
        "every reveal is itself recorded",
        "decrypts nothing",
        "Ask the test desk.",
    ] {
        assert!(a.contains(want), "Alice's page lacks {want:?}:\n{a}");
    }
    assert!(!a.contains("<b>only"), "the message is escaped");

    // Bob spends his video minute; Alice does not.
    let video = format!("http://www.youtube.com:{}/hello", origin.port());
    let r = within(bob.get(&video).send()).await.unwrap();
    assert_eq!(r.status(), 200);
    proxy
        .app()
        .state
        .config
        .clock
        .advance(std::time::Duration::from_secs(60));

    let (status, b, _) = page(&bob).await;
    assert_eq!(status, 200, "{b}");
    for want in [
        "127.0.0.3",
        "<td>bob</td>",
        "<td>staff</td>",
        "no-tiktok",
        "1 minute a day: used up; renews at 00:00 on Thursday (Europe/Berlin)",
    ] {
        assert!(b.contains(want), "Bob's page lacks {want:?}:\n{b}");
    }
    for never in ["alice", "marketing", "127.0.0.2"] {
        assert!(!b.contains(never), "Bob's page shows {never:?}:\n{b}");
    }
    let (_, a, _) = page(&alice).await;
    assert!(
        a.contains("1 minute a day: 1 minute left"),
        "Bob's spending is not Alice's:\n{a}"
    );

    // Not signed in (sign-in is optional here): known by the address, as
    // for any request from it; a wrong password is asked again.
    let (status, anon, _) = page(&proxy.client_from("127.0.0.4")).await;
    assert_eq!(status, 200, "{anon}");
    assert!(
        anon.contains("not signed in") && anon.contains("<td>staff</td>"),
        "{anon}"
    );
    assert!(
        !anon.contains("alice") && !anon.contains("marketing-tiktok"),
        "{anon}"
    );
    let (status, _, headers) = page(&proxy.client_as("127.0.0.4", "alice", "wrong")).await;
    assert_eq!(status, 407);
    assert!(headers.contains_key("proxy-authenticate"));

    // Each view is recorded once, as socialgate's own page.
    let lines = proxy.exactly_log_lines(6).await;
    let own: Vec<_> = lines
        .iter()
        .filter(|l| l["host"] == "socialgate.local" && l["status"] == 200)
        .collect();
    assert_eq!(own.len(), 4, "{lines:#?}");
    for l in &own {
        assert_eq!(l["reason"], "own-page");
        assert_eq!(l["rule"], "builtin:own-page");
        assert_eq!(l["action"], "allow");
        assert!(
            l["user"].is_null() || l["user"].as_str().unwrap().starts_with("p:"),
            "{l}"
        );
    }
}

#[tokio::test]
async fn the_name_is_never_resolved_nor_dialled_however_it_is_asked_for() {
    let origin = Origin::start().await;
    let dns = DnsServer::start(&[]).await;
    let servers = vec![dns.addr];
    let dir = PolicyDir::new(
        r#"
version: 1
destinations:
  allow: [127.0.0.0/8]
tunnels:
  ports: [any]
groups:
  staff: {networks: [127.0.0.0/8]}
rules:
  - {id: no-tiktok, groups: [staff], platforms: [tiktok], action: block}
"#,
    );
    let proxy = TestProxy::start_in(dir, move |cfg| {
        cfg.proxy.dns = socialgate::proxy::dns::DnsConfig {
            servers,
            ..Default::default()
        };
    })
    .await;

    // Absolute-form names the page, whatever Host says.
    let raw = raw_exchange(
        proxy.addr,
        b"GET http://socialgate.local/ HTTP/1.1\r\nHost: example.org\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&raw), 200, "{raw}");
    assert!(raw.contains("What applies to you"), "{raw}");
    // A Host naming the page does not make another target the page.
    let req = format!(
        "GET http://www.linkedin.com:{}/hello HTTP/1.1\r\nHost: socialgate.local\r\nConnection: close\r\n\r\n",
        origin.port()
    );
    let raw = raw_exchange(proxy.addr, req.as_bytes()).await;
    assert!(raw.ends_with("hello from origin"), "{raw}");
    // Any port, any path, any case: still the page, never forwarded.
    let (code, out) = curl(&[
        "-x",
        &proxy.url(),
        "-i",
        "http://SocialGate.Local.:8080/anything?x=1",
    ])
    .await;
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    // A CONNECT to it is refused before DNS: the page is plain HTTP.
    let raw = raw_exchange(
        proxy.addr,
        b"CONNECT socialgate.local:443 HTTP/1.1\r\nHost: socialgate.local:443\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&raw), 403, "{raw}");
    assert!(
        raw.to_ascii_lowercase()
            .contains("x-socialgate-reason: own-page"),
        "{raw}"
    );
    // Other methods are refused, and nothing else is dialled.
    let r = within(
        proxy
            .client()
            .put("http://socialgate.local/")
            .body("x")
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 405);

    let lines = proxy.exactly_log_lines(5).await;
    let tunnel = lines.iter().find(|l| l["kind"] == "tunnel").unwrap();
    assert_eq!(tunnel["reason"], "own-page", "{tunnel}");
    assert_eq!(dns.asked("socialgate.local", "A"), 0);
    assert_eq!(dns.asked("socialgate.local", "AAAA"), 0);
    assert_eq!(origin.connections(), 1, "only the linkedin request");

    // explain says the same.
    let (code, out, err) = socialgate(&[
        "explain",
        "--policy",
        proxy.policy.path().to_str().unwrap(),
        "--client",
        "127.0.0.1",
        "--no-resolve",
        "https://socialgate.local/",
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("own-page"), "{out}");
}

#[tokio::test]
async fn the_name_is_configurable_and_every_refusal_links_to_it() {
    let dir = PolicyDir::new(
        r#"
version: 1
settings: {transparency_host: Proxy-Info.Example.Internal}
groups:
  staff: {networks: [127.0.0.0/8]}
rules:
  - {id: no-tiktok, groups: [staff], platforms: [tiktok], action: block}
"#,
    );
    let proxy = TestProxy::start_in(dir, |_| {}).await;
    let c = proxy.client();
    let r = within(
        c.get("http://www.tiktok.com/")
            .header("Accept", "text/html")
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 403);
    let body = r.text().await.unwrap();
    assert!(
        body.contains(r#"<a href="http://proxy-info.example.internal/">"#),
        "{body}"
    );
    let r = within(c.get("http://www.tiktok.com/").send())
        .await
        .unwrap();
    let body = r.text().await.unwrap();
    assert!(
        body.contains("what applies to you: http://proxy-info.example.internal/"),
        "{body}"
    );
    let (status, body, _) = {
        let r = within(c.get("http://proxy-info.example.internal/").send())
            .await
            .unwrap();
        let s = r.status().as_u16();
        let h = r.headers().clone();
        (s, r.text().await.unwrap(), h)
    };
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("no-tiktok"), "{body}");
    // A name that is no host name is refused at load, with where and how.
    let bad = PolicyDir::new(
        "version: 1\nsettings: {transparency_host: 'not a name/'}\ngroups: {staff: {networks: [127.0.0.0/8]}}\n",
    );
    let (code, _, err) = socialgate(&["check", bad.path().to_str().unwrap()]).await;
    assert_ne!(code, 0);
    assert!(err.contains("settings.transparency_host"), "{err}");
}
