//! The parent proxy (`--upstream-proxy`): socialgate in front of a second
//! socialgate acting as the corporate egress proxy. The parent's own access
//! log shows what reached it (absolute-form requests, CONNECT tunnels, the
//! user its credentials named); a raw parent shows the exact bytes.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use socialgate::proxy::parent::{NoProxy, ParentConfig, ParentDns};

use crate::support::*;

/// The egress proxy: only the service account `svc` may use it; the child
/// proxy (from 127.0.0.1) is in no group by address.
const PARENT_POLICY: &str = r#"
version: 1
settings:
  timezone: UTC
auth:
  htpasswd: users.htpasswd
destinations:
  allow: [127.0.0.0/8]
tunnels:
  ports: [any]
groups:
  gateways:
    users: [svc]
rules: []
"#;

async fn egress_proxy() -> TestProxy {
    let dir = PolicyDir::new(PARENT_POLICY);
    dir.write("users.htpasswd", &htpasswd_line("svc", "egress-pass"));
    TestProxy::start_in(dir, |cfg| {
        cfg.proxy.resolve.insert(
            "only-parent.example".to_string(),
            "127.0.0.1".parse().unwrap(),
        );
    })
    .await
}

/// `USER:PASSWORD` in a file socialgate accepts (mode 0600).
fn credentials_file(dir: &Path, line: &str) -> std::path::PathBuf {
    let path = dir.join("parent.credentials");
    std::fs::write(&path, format!("{line}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// socialgate with BASIC_POLICY whose traffic leaves through `parent`.
async fn behind(
    parent: SocketAddr,
    credentials: Option<&str>,
    no_proxy: &[&str],
    dns: ParentDns,
    policy: &str,
) -> TestProxy {
    let dir = PolicyDir::new(policy);
    let creds = credentials.map(|c| credentials_file(dir.path(), c));
    let no_proxy: Vec<String> = no_proxy.iter().map(|s| s.to_string()).collect();
    let config = ParentConfig::new(
        &format!("http://{parent}"),
        creds.as_deref(),
        NoProxy::parse(&no_proxy).unwrap(),
        dns,
    )
    .unwrap();
    TestProxy::start_in(dir, move |cfg| {
        cfg.proxy.upstream_proxy = Some(config);
        if dns == ParentDns::Parent {
            // Only the parent can resolve names, as in a locked-down network.
            cfg.proxy.resolve.clear();
        }
    })
    .await
}

#[tokio::test]
async fn plain_http_reaches_the_parent_in_absolute_form_with_the_credentials() {
    let parent = RawOrigin::replying(
        "HTTP/1.1 200 OK\r\ncontent-length: 11\r\n\r\nfrom parent",
        After::Close,
    )
    .await;
    let proxy = behind(
        parent.addr,
        Some("svc:egress-pass"),
        &[],
        ParentDns::Local,
        BASIC_POLICY,
    )
    .await;
    let resp = within(
        proxy
            .client()
            .get("http://www.linkedin.com:8080/feed?x=1")
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "from parent");
    let seen = parent.received();
    assert!(
        seen.starts_with("GET http://www.linkedin.com:8080/feed?x=1 HTTP/1.1\r\n"),
        "{seen}"
    );
    // base64("svc:egress-pass")
    assert!(
        seen.to_ascii_lowercase()
            .contains("proxy-authorization: basic c3zjomvncmvzcy1wyxnz"),
        "{seen}"
    );
    assert!(
        seen.to_ascii_lowercase()
            .contains("host: www.linkedin.com:8080"),
        "{seen}"
    );
    let lines = proxy.exactly_log_lines(1).await;
    assert_eq!(lines[0]["parent"], parent.addr.to_string());
    assert_eq!(lines[0]["status"], 200);
}

#[tokio::test]
async fn requests_and_tunnels_go_through_a_real_parent_that_sees_the_service_user() {
    let origin = Origin::start().await;
    let tls = TlsOrigin::start(&["www.linkedin.com"]).await;
    let parent = egress_proxy().await;
    let proxy = behind(
        parent.addr,
        Some("svc:egress-pass"),
        &[],
        ParentDns::Local,
        BASIC_POLICY,
    )
    .await;

    let url = format!("http://www.linkedin.com:{}/hello", origin.port());
    let resp = within(proxy.client().get(&url).send()).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "hello from origin");

    let url = format!("https://www.linkedin.com:{}/hello", tls.port());
    let resp = within(proxy.tls_client(&tls).get(&url).send())
        .await
        .unwrap();
    assert_eq!(resp.text().await.unwrap(), "hello from origin");

    // The parent served both, as the service user: a request in absolute
    // form (it refuses anything else) and a CONNECT tunnel.
    let seen = parent.exactly_log_lines(2).await;
    let svc = parent.pseudonym_of("svc");
    let request = seen.iter().find(|l| l["kind"] == "request").unwrap();
    assert_eq!(request["host"], "www.linkedin.com");
    assert_eq!(request["status"], 200);
    assert_eq!(request["user"], svc.as_str());
    let tunnel = seen.iter().find(|l| l["kind"] == "tunnel").unwrap();
    assert_eq!(tunnel["method"], "CONNECT");
    assert_eq!(tunnel["port"], tls.port());
    assert_eq!(tunnel["sni"], "www.linkedin.com");
    assert_eq!(tunnel["user"], svc.as_str());

    // Our own records say the traffic went through the parent; the SNI
    // stage ran here as well.
    let ours = proxy.exactly_log_lines(2).await;
    for l in &ours {
        assert_eq!(l["parent"], parent.addr.to_string(), "{l}");
    }
    let tunnel = ours.iter().find(|l| l["kind"] == "tunnel").unwrap();
    assert_eq!(tunnel["sni"], "www.linkedin.com");
    assert!(tunnel["bytes_down"].as_u64().unwrap() > 0, "{tunnel}");
}

#[tokio::test]
async fn the_policy_still_decides_before_anything_reaches_the_parent() {
    let parent = egress_proxy().await;
    let proxy = behind(
        parent.addr,
        Some("svc:egress-pass"),
        &[],
        ParentDns::Local,
        BASIC_POLICY,
    )
    .await;
    let resp = within(proxy.client().get("http://www.tiktok.com/").send())
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(resp.headers()["x-socialgate-rule"], "no-tiktok");
    let ours = proxy.exactly_log_lines(1).await;
    assert!(ours[0].get("parent").is_none(), "{}", ours[0]);
    // Nothing went to the parent.
    assert_eq!(parent.events_recorded(), 0);
}

#[tokio::test]
async fn a_parent_refusal_is_a_502_with_the_parents_status_blamed_on_upstream() {
    let origin = Origin::start().await;
    let tls = TlsOrigin::start(&["www.linkedin.com"]).await;
    let parent = egress_proxy().await;
    // No credentials: the parent answers 407.
    let proxy = behind(parent.addr, None, &[], ParentDns::Local, BASIC_POLICY).await;

    let url = format!("http://www.linkedin.com:{}/hello", origin.port());
    let resp = within(proxy.client().get(&url).send()).await.unwrap();
    assert_eq!(resp.status(), 502);
    assert_eq!(resp.headers()["x-socialgate-error"], "parent-refused");
    assert!(resp.headers().get("proxy-authenticate").is_none());
    let body = resp.text().await.unwrap();
    assert!(
        body.contains(&format!("the parent proxy {}", parent.addr)) && body.contains("407"),
        "{body}"
    );

    // A tunnel: curl shows the 502 the CONNECT got.
    let (code, out) = curl(&[
        "-x",
        &proxy.url(),
        "-k",
        &format!("https://www.linkedin.com:{}/hello", tls.port()),
    ])
    .await;
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("502"), "{out}");

    let lines = proxy.exactly_log_lines(2).await;
    for l in &lines {
        assert_eq!(l["status"], 502, "{l}");
        assert_eq!(l["error"], "parent-refused", "{l}");
        assert_eq!(l["parent_status"], 407, "{l}");
        assert_eq!(l["parent"], parent.addr.to_string(), "{l}");
    }
    let metrics = proxy.app().metrics.render(&proxy.app().state.gauges, None);
    assert!(
        metrics.contains("socialgate_errors_total{error=\"parent-refused\"} 2"),
        "{metrics}"
    );
}

#[tokio::test]
async fn no_proxy_destinations_go_direct() {
    let origin = Origin::start().await;
    let parent = egress_proxy().await;
    let proxy = behind(
        parent.addr,
        Some("svc:egress-pass"),
        &["example.org", "10.0.0.0/8"],
        ParentDns::Local,
        BASIC_POLICY,
    )
    .await;
    for host in ["internal.example.org", "www.linkedin.com"] {
        let url = format!("http://{host}:{}/hello", origin.port());
        let resp = within(proxy.client().get(&url).send()).await.unwrap();
        assert_eq!(resp.text().await.unwrap(), "hello from origin", "{host}");
    }
    let ours = proxy.exactly_log_lines(2).await;
    let direct = ours
        .iter()
        .find(|l| l["host"] == "internal.example.org")
        .unwrap();
    assert!(direct.get("parent").is_none(), "{direct}");
    let via = ours
        .iter()
        .find(|l| l["host"] == "www.linkedin.com")
        .unwrap();
    assert_eq!(via["parent"], parent.addr.to_string());
    // Only the LinkedIn request reached the parent.
    let seen = parent.exactly_log_lines(1).await;
    assert_eq!(seen[0]["host"], "www.linkedin.com");
}

#[tokio::test]
async fn a_parent_that_is_down_is_a_502_upstream_connect_that_names_the_parent() {
    let down = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let tls = TlsOrigin::start(&["www.linkedin.com"]).await;
    let proxy = behind(down, None, &[], ParentDns::Local, BASIC_POLICY).await;
    let resp = within(proxy.client().get("http://www.linkedin.com/").send())
        .await
        .unwrap();
    assert_eq!(resp.status(), 502);
    assert_eq!(resp.headers()["x-socialgate-error"], "upstream-connect");
    let body = resp.text().await.unwrap();
    assert!(
        body.contains(&format!("cannot connect to the parent proxy {down}")),
        "{body}"
    );
    let (code, out) = curl(&[
        "-x",
        &proxy.url(),
        "-k",
        &format!("https://www.linkedin.com:{}/", tls.port()),
    ])
    .await;
    assert_ne!(code, 0, "{out}");
    let lines = proxy.exactly_log_lines(2).await;
    for l in &lines {
        assert_eq!(l["status"], 502, "{l}");
        assert_eq!(l["error"], "upstream-connect", "{l}");
        assert_eq!(l["parent"], down.to_string(), "{l}");
        assert!(l.get("parent_status").is_none(), "{l}");
    }
}

/// BASIC_POLICY without `destinations.allow`: loopback is refused again.
const STRICT_POLICY: &str = r#"
version: 1
settings:
  timezone: UTC
tunnels:
  ports: [any]
groups:
  staff:
    networks: [127.0.0.0/8]
rules:
  - id: no-tiktok
    groups: [staff]
    platforms: [tiktok]
    action: block
"#;

#[tokio::test]
async fn when_only_the_parent_resolves_names_socialgate_checks_what_it_can() {
    let origin = Origin::start().await;
    let parent = egress_proxy().await;
    let proxy = behind(
        parent.addr,
        Some("svc:egress-pass"),
        &[],
        ParentDns::Parent,
        STRICT_POLICY,
    )
    .await;
    // A name only the parent can resolve: passed to it by name.
    let url = format!("http://only-parent.example:{}/hello", origin.port());
    let resp = within(proxy.client().get(&url).send()).await.unwrap();
    assert_eq!(resp.text().await.unwrap(), "hello from origin");
    // Local names and internal literals never reach the parent.
    for (url, reason) in [
        ("http://localhost:8080/", "destination-private"),
        ("http://intranet/", "destination-private"),
        ("http://printer.local/", "destination-private"),
        ("http://127.0.0.1:8080/", "destination-private"),
        (
            "http://169.254.169.254/latest/meta-data/",
            "destination-private",
        ),
    ] {
        let resp = within(proxy.client().get(url).send()).await.unwrap();
        assert_eq!(resp.status(), 403, "{url}");
        assert_eq!(resp.headers()["x-socialgate-reason"], reason, "{url}");
    }
    let ours = proxy.exactly_log_lines(6).await;
    assert_eq!(ours[0]["parent"], parent.addr.to_string());
    let seen = parent.exactly_log_lines(1).await;
    assert_eq!(seen[0]["host"], "only-parent.example");

    // `explain` with the same settings says the same.
    let (code, out, err) = socialgate(&[
        "explain",
        "--policy",
        proxy.policy.path().to_str().unwrap(),
        "--client",
        "127.0.0.1",
        "--upstream-proxy",
        &format!("http://{}", parent.addr),
        "--upstream-proxy-dns",
        "parent",
        "http://localhost:8080/",
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("reason destination-private"), "{out}");
    assert!(out.contains("local name"), "{out}");
    let (code, out, err) = socialgate(&[
        "explain",
        "--policy",
        proxy.policy.path().to_str().unwrap(),
        "--client",
        "127.0.0.1",
        "--upstream-proxy",
        &format!("http://{}", parent.addr),
        "--upstream-proxy-dns",
        "parent",
        "http://only-parent.example/",
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("decision: allow"), "{out}");
    assert!(out.contains("resolved by the parent proxy"), "{out}");
}

#[tokio::test]
async fn by_default_socialgate_resolves_and_checks_every_address_itself() {
    let parent = egress_proxy().await;
    let dir = PolicyDir::new(STRICT_POLICY);
    let config = ParentConfig::new(
        &format!("http://{}", parent.addr),
        None,
        NoProxy::default(),
        ParentDns::Local,
    )
    .unwrap();
    let proxy = TestProxy::start_in(dir, move |cfg| {
        cfg.proxy.upstream_proxy = Some(config);
    })
    .await;
    // www.linkedin.com is pinned to 127.0.0.1 here: refused before the parent.
    let resp = within(proxy.client().get("http://www.linkedin.com/").send())
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(resp.headers()["x-socialgate-reason"], "destination-private");
    // A name that does not resolve here is not handed to the parent.
    let resp = within(proxy.client().get("http://only-parent.example/").send())
        .await
        .unwrap();
    assert_eq!(resp.status(), 502);
    assert_eq!(resp.headers()["x-socialgate-error"], "upstream-resolve");
    proxy.exactly_log_lines(2).await;
    assert_eq!(parent.events_recorded(), 0);
}

#[tokio::test]
async fn the_command_line_refuses_bad_parent_settings_and_open_credentials() {
    let dir = PolicyDir::new(BASIC_POLICY);
    let policy = dir.path().to_str().unwrap();
    let (code, _, err) = socialgate(&[
        "run",
        "--policy",
        policy,
        "--upstream-proxy",
        "http://user:pw@parent.example:3128",
    ])
    .await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--upstream-proxy-credentials"), "{err}");
    let (code, _, err) =
        socialgate(&["run", "--policy", policy, "--no-proxy", "corp.example"]).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--upstream-proxy"), "{err}");
    let (code, _, err) = socialgate(&[
        "run",
        "--policy",
        policy,
        "--upstream-proxy",
        "http://parent.example:3128",
        "--no-proxy",
        "corp.example,not a domain",
    ])
    .await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("\"not a domain\""), "{err}");

    let creds = dir.path().join("open.credentials");
    std::fs::write(&creds, "svc:secret-pass\n").unwrap();
    std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, out, err) = socialgate(&[
        "run",
        "--policy",
        policy,
        "--listen",
        "127.0.0.1:0",
        "--admin",
        "off",
        "--upstream-proxy",
        "http://parent.example:3128",
        "--upstream-proxy-credentials",
        creds.to_str().unwrap(),
    ])
    .await;
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("mode 0644") && err.contains("chmod 600"),
        "{err}"
    );
    assert!(!err.contains("secret-pass") && !out.contains("secret-pass"));
}

#[tokio::test]
async fn a_websocket_upgrade_rides_a_connect_tunnel_through_the_parent() {
    use tokio::io::AsyncWriteExt;
    let origin = Origin::start().await;
    let parent = egress_proxy().await;
    let proxy = behind(
        parent.addr,
        Some("svc:egress-pass"),
        &[],
        ParentDns::Local,
        BASIC_POLICY,
    )
    .await;
    let mut s = within(tokio::net::TcpStream::connect(proxy.addr))
        .await
        .unwrap();
    let authority = format!("example.org:{}", origin.port());
    let head = crate::websocket::handshake(&format!("http://{authority}/ws"), &authority);
    s.write_all(head.as_bytes()).await.unwrap();
    let answer = read_head(&mut s).await;
    assert_eq!(status_of(&answer), 101, "{answer}");
    crate::websocket::echo_round_trip(s).await;
    // The parent carried it as a tunnel.
    let seen = parent.exactly_log_lines(1).await;
    assert_eq!(seen[0]["kind"], "tunnel");
    assert_eq!(seen[0]["host"], "example.org");
    let ours = proxy.exactly_log_lines(1).await;
    assert_eq!(ours[0]["status"], 101);
    assert_eq!(ours[0]["parent"], parent.addr.to_string());
}
