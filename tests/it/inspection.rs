//! TLS inspection, end to end: a company CA made like `socialgate ca init`,
//! real TLS origins on 127.0.0.1 (HTTP/1.1 and HTTP/2), and rustls clients
//! (reqwest) that trust only what a company device would.

use std::time::Duration;

use crate::support::*;

/// Staff on loopback; LinkedIn inspected, TikTok refused with inspection
/// (so the refusal page shows over HTTPS), YouTube not inspected.
const INSPECTING: &str = r#"
version: 1
settings:
  timezone: Europe/Berlin
  organization: Test Corp
  help: Ask the test desk.
destinations:
  allow: [127.0.0.0/8, "::1/128"]
tunnels:
  ports: [any]
  sni_timeout_ms: 2000
groups:
  staff:
    networks: [127.0.0.0/8, "::1/128"]
rules:
  - id: no-tiktok
    groups: [staff]
    platforms: [tiktok]
    action: block
    message: TikTok is not for work.
    inspect: true
  - id: linkedin-inspected
    platforms: [linkedin]
    action: allow
    inspect: true
"#;

fn url(host: &str, origin: &TlsOrigin, path: &str) -> String {
    format!("https://{host}:{}{path}", origin.port())
}

#[tokio::test]
async fn inspects_http1_and_h2_and_records_every_request() {
    let origin = TlsOrigin::start(&["www.linkedin.com"]).await;
    let proxy = TestProxy::inspecting(INSPECTING, &[&origin]).await;

    // HTTP/1.1: the client trusts only the company CA, so an answer proves
    // socialgate made the TLS session; the origin saw socialgate's request.
    let h1 = proxy.inspected_client(false);
    let resp = h1
        .get(url("www.linkedin.com", &origin, "/headers"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), reqwest::Version::HTTP_11);
    let body = resp.text().await.unwrap();
    assert!(body.starts_with("GET /headers HTTP/1.1"), "{body}");
    assert!(body.contains("via: 1.1 socialgate"), "{body}");
    assert!(body.contains("host: www.linkedin.com"), "{body}");

    // HTTP/2 end to end: offered by the client, chosen by the origin, so
    // socialgate speaks it on both sides.
    let h2 = proxy.inspected_client(true);
    let resp = h2
        .get(url("www.linkedin.com", &origin, "/headers"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    let body = resp.text().await.unwrap();
    assert!(body.starts_with("GET "), "{body}");
    assert!(body.contains("HTTP/2.0"), "the origin saw HTTP/2: {body}");
    // Streams multiplex on the one connection; a 1 MiB body streams through.
    let (a, b) = tokio::join!(
        h2.get(url("www.linkedin.com", &origin, "/big")).send(),
        h2.get(url("www.linkedin.com", &origin, "/hello")).send()
    );
    assert_eq!(a.unwrap().bytes().await.unwrap().len(), 1 << 20);
    assert_eq!(b.unwrap().text().await.unwrap(), "hello from origin");

    drop((h1, h2));
    // Two tunnels (one per client) and four requests inside them.
    let lines = proxy.exactly_log_lines(6).await;
    let requests: Vec<_> = lines.iter().filter(|l| l["kind"] == "request").collect();
    let tunnels: Vec<_> = lines.iter().filter(|l| l["kind"] == "tunnel").collect();
    assert_eq!(requests.len(), 4, "{lines:#?}");
    assert_eq!(tunnels.len(), 2, "{lines:#?}");
    for r in &requests {
        assert_eq!(r["tls"], "intercepted", "{r}");
        assert_eq!(r["host"], "www.linkedin.com");
        assert_eq!(r["platform"], "linkedin");
        assert_eq!(r["rule"], "linkedin-inspected");
        assert_eq!(r["activity"], "read");
        assert_eq!(r["status"], 200);
        assert!(r.get("error").is_none(), "{r}");
    }
    let big = requests.iter().find(|r| r["bytes_down"] == 1 << 20);
    assert!(big.is_some(), "the 1 MiB body is counted: {requests:#?}");
    for t in &tunnels {
        assert_eq!(t["tls"], "intercepted", "{t}");
        assert_eq!(t["sni"], "www.linkedin.com");
        assert!(
            t["bytes_down"].as_u64().unwrap() > 1 << 20 || t["bytes_down"].as_u64().unwrap() > 100
        );
    }
}

#[tokio::test]
async fn a_refusal_shows_the_block_page_over_https_without_reaching_the_site() {
    let origin = TlsOrigin::start(&["www.tiktok.com"]).await;
    let proxy = TestProxy::inspecting(INSPECTING, &[&origin]).await;
    let client = proxy.inspected_client(true);

    let page = client
        .get(url("www.tiktok.com", &origin, "/"))
        .header("sec-fetch-mode", "navigate")
        .header("accept", "text/html,application/xhtml+xml")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 403);
    assert_eq!(page.headers()["x-socialgate-rule"], "no-tiktok");
    assert_eq!(page.headers()["x-socialgate-reason"], "rule-matched");
    assert!(page.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let html = page.text().await.unwrap();
    assert!(html.contains("TikTok is not for work."), "{html}");
    assert!(html.contains("Test Corp"), "{html}");

    // An API call gets the same facts as JSON; a script gets text.
    let api = client
        .post(url("www.tiktok.com", &origin, "/api/commit/item/digg/"))
        .header("sec-fetch-mode", "cors")
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), 403);
    assert_eq!(api.headers()["content-type"], "application/json");
    let json: serde_json::Value = serde_json::from_str(&api.text().await.unwrap()).unwrap();
    assert_eq!(json["rule"], "no-tiktok");
    assert_eq!(json["platform"], "tiktok");
    assert_eq!(json["message"], "TikTok is not for work.");
    let text = client
        .get(url("www.tiktok.com", &origin, "/script.js"))
        .header("accept", "*/*")
        .send()
        .await
        .unwrap();
    assert!(text.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    assert!(text.text().await.unwrap().contains("rule: no-tiktok"));

    assert_eq!(
        origin.handshakes.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "a refused site is never contacted"
    );
    drop(client);
    let lines = proxy.exactly_log_lines(4).await;
    let refused: Vec<_> = lines.iter().filter(|l| l["kind"] == "request").collect();
    assert_eq!(refused.len(), 3);
    for r in refused {
        assert_eq!(r["action"], "block");
        assert_eq!(r["status"], 403);
        assert_eq!(r["tls"], "intercepted");
    }
}

#[tokio::test]
async fn a_plain_http_refusal_negotiates_its_format_too() {
    let origin = Origin::start().await;
    let proxy = TestProxy::start(BASIC_POLICY).await;
    let client = proxy.client();
    let at = format!("http://www.tiktok.com:{}/api/x", origin.port());
    let json = client
        .get(&at)
        .header("sec-fetch-mode", "cors")
        .send()
        .await
        .unwrap();
    assert_eq!(json.status(), 403);
    assert_eq!(json.headers()["content-type"], "application/json");
    let v: serde_json::Value = serde_json::from_str(&json.text().await.unwrap()).unwrap();
    assert_eq!(v["reason"], "rule-matched");
    let html = client
        .get(&at)
        .header("sec-fetch-mode", "navigate")
        .send()
        .await
        .unwrap();
    assert!(html.text().await.unwrap().starts_with("<!doctype html>"));
}

#[tokio::test]
async fn alt_svc_is_removed_so_browsers_stay_on_tcp() {
    let plain = Origin::start().await;
    let tls = TlsOrigin::start(&["www.linkedin.com"]).await;
    let proxy = TestProxy::inspecting(INSPECTING, &[&tls]).await;
    let resp = proxy
        .client()
        .get(format!("http://www.linkedin.com:{}/alt-svc", plain.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-origin"], "kept");
    assert!(resp.headers().get("alt-svc").is_none(), "plain HTTP");
    for h2 in [false, true] {
        let resp = proxy
            .inspected_client(h2)
            .get(url("www.linkedin.com", &tls, "/alt-svc"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.headers()["x-origin"], "kept");
        assert!(
            resp.headers().get("alt-svc").is_none(),
            "inspected, h2 {h2}"
        );
    }
}

#[tokio::test]
async fn a_never_inspect_site_passes_as_a_plain_tunnel() {
    let origin = TlsOrigin::start(&["example.org"]).await;
    let policy = INSPECTING.replace(
        "rules:",
        "inspection:\n  default: true\n  never:\n    domains: [example.org]\nrules:",
    );
    let proxy = TestProxy::inspecting(&policy, &[&origin]).await;
    // This client trusts the origin's own certificate and not the company
    // CA: it gets through only if socialgate does not decrypt.
    let client = proxy.tls_client(&origin);
    let body = client
        .get(url("example.org", &origin, "/hello"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(body, "hello from origin");
    drop(client);
    let lines = proxy.exactly_log_lines(1).await;
    assert_eq!(lines[0]["kind"], "tunnel");
    assert_eq!(lines[0]["tls"], "passthrough");
    assert_eq!(lines[0]["sni"], "example.org");
}

#[tokio::test]
async fn an_origin_with_an_untrusted_certificate_gets_the_error_page() {
    let trusted = TlsOrigin::start(&["www.linkedin.com"]).await;
    let impostor = TlsOrigin::start(&["www.linkedin.com"]).await;
    // Only `trusted`'s certificate is an upstream root.
    let proxy = TestProxy::inspecting(INSPECTING, &[&trusted]).await;
    let client = proxy.inspected_client(true);
    let resp = client
        .get(url("www.linkedin.com", &impostor, "/hello"))
        .header("sec-fetch-mode", "navigate")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 502);
    assert_eq!(resp.headers()["x-socialgate-error"], "upstream-certificate");
    let html = resp.text().await.unwrap();
    assert!(html.contains("certificate is not trusted"), "{html}");
    assert!(!html.contains("hello from origin"));
    drop(client);
    let lines = proxy.exactly_log_lines(2).await;
    let req = lines.iter().find(|l| l["kind"] == "request").unwrap();
    assert_eq!(req["error"], "upstream-certificate");
    assert_eq!(req["status"], 502);
    assert_eq!(req["tls"], "intercepted");
}

#[tokio::test]
async fn a_request_for_another_host_than_the_server_name_gets_421() {
    let origin = TlsOrigin::start(&["www.linkedin.com"]).await;
    let proxy = TestProxy::inspecting(INSPECTING, &[&origin]).await;
    let resp = proxy
        .inspected_client(false)
        .get(url("www.linkedin.com", &origin, "/hello"))
        .header("host", "www.tiktok.com")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 421);
    let lines = proxy.log_lines(1).await;
    let r = &lines[0];
    assert_eq!(r["status"], 421);
    assert_eq!(r["reason"], "sni-mismatch");
}

#[tokio::test]
async fn a_client_that_refuses_the_company_certificate_is_passed_through_next_time() {
    let origin = TlsOrigin::start(&["www.linkedin.com"]).await;
    let proxy = TestProxy::inspecting(INSPECTING, &[&origin]).await;
    // A "pinned app": it trusts only the origin's own certificate.
    let pinned = proxy.tls_client(&origin);
    let first = pinned
        .get(url("www.linkedin.com", &origin, "/hello"))
        .send()
        .await;
    assert!(first.is_err(), "the app refuses socialgate's certificate");
    let lines = proxy.log_lines(1).await;
    assert_eq!(
        lines[0]["error"], "client-refused-certificate",
        "{lines:#?}"
    );
    assert_eq!(lines[0]["tls"], "intercepted");
    eventually_async("the learned host shows in /metrics", || async {
        proxy
            .metrics()
            .await
            .contains("socialgate_inspection_pinned_hosts 1")
    })
    .await;

    // Next time the host passes through: the app sees the origin itself.
    let body = pinned
        .get(url("www.linkedin.com", &origin, "/hello"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(body, "hello from origin");
    drop(pinned);
    let lines = proxy.exactly_log_lines(2).await;
    assert_eq!(lines[1]["tls"], "pinned", "{lines:#?}");
    let metrics = proxy.metrics().await;
    assert!(
        metrics.contains("socialgate_tls_tunnels_total{tls=\"pinned\"} 1"),
        "{metrics}"
    );
    let _ = Duration::ZERO;
}

/// Chromium's ClientHello (tests/fixtures): server name www.linkedin.com,
/// with the encrypted_client_hello extension (Chromium's ECH GREASE).
const CHROMIUM_HELLO: &[u8] = include_bytes!("../fixtures/chromium-clienthello.bin");

/// Opens a CONNECT tunnel to `authority` over a raw socket, sends `hello`
/// once it is open, and reads until the proxy closes it (or 2 s pass).
async fn tunnel_with_hello(proxy: &TestProxy, authority: &str, hello: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = within(tokio::net::TcpStream::connect(proxy.addr))
        .await
        .unwrap();
    let connect = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n");
    s.write_all(connect.as_bytes()).await.unwrap();
    let head = read_head(&mut s).await;
    assert_eq!(status_of(&head), 200, "{head}");
    s.write_all(hello).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn encrypted_client_hello_behind_another_name_is_refused_by_default() {
    let origin = Origin::start().await;
    let proxy = TestProxy::start(BASIC_POLICY).await;
    // The hello names www.linkedin.com and carries the ECH extension; the
    // CONNECT asked for www.youtube.com: the named site is not where the
    // client says it goes.
    let authority = format!("www.youtube.com:{}", origin.port());
    tunnel_with_hello(&proxy, &authority, CHROMIUM_HELLO).await;
    let lines = proxy.exactly_log_lines(1).await;
    let t = &lines[0];
    assert_eq!(t["reason"], "ech", "{t}");
    assert_eq!(t["rule"], "builtin:sni");
    assert_eq!(t["action"], "block");
    assert_eq!(t["error"], "tunnel-closed-by-policy");
    assert_eq!(t["sni"], "www.linkedin.com");
}

#[tokio::test]
async fn encrypted_client_hello_passes_on_the_connect_decision_when_allowed() {
    let origin = Origin::start().await;
    let policy = BASIC_POLICY.replace("sni_timeout_ms: 500", "sni_timeout_ms: 500\n  ech: allow");
    let proxy = TestProxy::start(&policy).await;
    let authority = format!("www.youtube.com:{}", origin.port());
    tunnel_with_hello(&proxy, &authority, CHROMIUM_HELLO).await;
    let lines = proxy.exactly_log_lines(1).await;
    let t = &lines[0];
    assert_eq!(t["reason"], "ech", "{t}");
    assert_eq!(t["action"], "allow");
    assert_eq!(t["platform"], "youtube", "decided on the CONNECT host");
    assert_eq!(t["tls"], "passthrough");
    assert!(t["bytes_up"].as_u64().unwrap() >= CHROMIUM_HELLO.len() as u64);
    assert_eq!(origin.connections(), 1, "the hello went on to the site");
}

#[tokio::test]
async fn ca_init_writes_a_private_key_prints_fingerprints_and_never_overwrites() {
    let dir = PolicyDir::new(INSPECTING);
    let policy = dir.path().to_str().unwrap();
    let cert = dir.path().join("company-ca.pem");
    let key = dir.path().join("company-ca.key");
    let files = [
        "--ca-cert",
        cert.to_str().unwrap(),
        "--ca-key",
        key.to_str().unwrap(),
    ];
    let mut init = vec!["ca", "init", "--policy", policy];
    init.extend(files);
    let (code, out, err) = socialgate(&init).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("O=Test Corp"),
        "the subject names the organisation: {out}"
    );
    let fingerprint = out
        .lines()
        .find(|l| l.starts_with("SHA-256:"))
        .unwrap_or_else(|| panic!("no fingerprint in {out}"))
        .to_string();
    assert_eq!(fingerprint.matches(':').count(), 32, "{fingerprint}");
    assert!(out.contains("SPKI SHA-256: sha256//"), "{out}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the CA key is private");
    }
    let key_before = std::fs::read(&key).unwrap();

    // Never overwritten: devices trust this one.
    let (code, _, err) = socialgate(&init).await;
    assert_eq!(code, 2);
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(std::fs::read(&key).unwrap(), key_before);

    // `ca show` prints the same fingerprint.
    let mut show = vec!["ca", "show", "--policy", policy];
    show.extend(files);
    let (code, out, err) = socialgate(&show).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&fingerprint), "{out}");
    // The certificate is a CA with path length 0 (openssl's view, as an
    // admin would check it), when openssl is installed.
    if let Ok(o) = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(&cert)
        .output()
    {
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(text.contains("CA:TRUE, pathlen:0"), "{text}");
    }
}

#[tokio::test]
async fn check_reports_a_rule_asking_for_inspection_without_a_ca() {
    let dir = PolicyDir::new(INSPECTING);
    let path = dir.path().to_str().unwrap();
    let missing = dir.path().join("no-such-ca.pem");
    let (code, out, err) = socialgate(&[
        "check",
        path,
        "--ca-cert",
        missing.to_str().unwrap(),
        "--ca-key",
        dir.path().join("no-such-ca.key").to_str().unwrap(),
    ])
    .await;
    assert_eq!(code, 2, "{out}");
    assert!(
        err.contains("policy.yaml: rules[0].inspect: asks for TLS inspection"),
        "{err}"
    );
    assert!(err.contains("socialgate ca init"), "{err}");

    // With the CA made, the same policy passes.
    socialgate::ca::init(&dir.ca_paths(), None).unwrap();
    let ca = dir.ca_paths();
    let (code, out, err) = socialgate(&[
        "check",
        path,
        "--ca-cert",
        ca.cert.to_str().unwrap(),
        "--ca-key",
        ca.key.to_str().unwrap(),
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(": ok ("), "{out}");
}

#[tokio::test]
async fn explain_says_whether_a_tunnel_is_inspected_and_why() {
    let dir = PolicyDir::new(INSPECTING);
    let path = dir.path().to_str().unwrap();
    let explain = |url: &'static str| {
        let path = path.to_string();
        async move {
            let (code, out, err) = socialgate(&[
                "explain",
                "--policy",
                &path,
                "--client",
                "127.0.0.1",
                "--no-resolve",
                url,
            ])
            .await;
            assert_eq!(code, 0, "{err}");
            out.lines()
                .find(|l| l.starts_with("inspect:"))
                .unwrap_or_else(|| panic!("no inspect line in {out}"))
                .to_string()
        }
    };
    let line = explain("https://www.linkedin.com/feed/").await;
    assert!(line.starts_with("inspect:  yes (rule:"), "{line}");
    let line = explain("https://www.tiktok.com/").await;
    assert!(
        line.contains("yes (rule:") && line.contains("refusal page"),
        "{line}"
    );
    let line = explain("https://www.youtube.com/").await;
    assert!(line.starts_with("inspect:  no (not-asked:"), "{line}");
    // The shipped catalog's never-inspect categories.
    let line = explain("https://www.paypal.com/").await;
    assert!(line.starts_with("inspect:  no (not-asked"), "{line}");
    let line = explain("http://www.linkedin.com/").await;
    assert!(line.starts_with("inspect:  no (not-a-tunnel"), "{line}");
}

#[tokio::test]
async fn explain_names_the_never_inspect_category() {
    let policy = INSPECTING.replace("rules:", "inspection:\n  default: true\nrules:");
    let dir = PolicyDir::new(&policy);
    let (code, out, err) = socialgate(&[
        "explain",
        "--policy",
        dir.path().to_str().unwrap(),
        "--client",
        "127.0.0.1",
        "--no-resolve",
        "https://www.paypal.com/",
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(
            "inspect:  no (never-category: the site is in the never-inspect category finance"
        ),
        "{out}"
    );
}

#[tokio::test]
async fn the_leaf_cache_stays_within_its_bound() {
    let names = ["www.linkedin.com", "www.instagram.com", "www.facebook.com"];
    let origin = TlsOrigin::start(&names).await;
    let policy = INSPECTING.replace(
        "rules:",
        "inspection:\n  default: true\n  leaf_cache: 2\nrules:",
    );
    let proxy = TestProxy::inspecting(&policy, &[&origin]).await;
    let client = proxy.inspected_client(false);
    for host in names.iter().chain(names.iter()) {
        let body = client
            .get(url(host, &origin, "/hello"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(body, "hello from origin", "{host}");
    }
    let metrics = proxy.metrics().await;
    assert!(
        metrics.contains("socialgate_inspection_leaf_certificates 2"),
        "at most leaf_cache leaves are kept: {metrics}"
    );
    // Each connection is reused per host, so each host minted once.
    assert!(
        metrics.contains("socialgate_inspection_leaf_certificates_minted 3"),
        "{metrics}"
    );
}

#[tokio::test]
async fn an_oversized_request_head_inside_an_inspected_tunnel_gets_431() {
    let origin = TlsOrigin::start(&["www.linkedin.com"]).await;
    let proxy = TestProxy::inspecting(INSPECTING, &[&origin]).await;
    let client = proxy.inspected_client(false);
    // Over --max-header-bytes (64 KiB) but under hyper's own buffer limit.
    let resp = client
        .get(url("www.linkedin.com", &origin, "/hello"))
        .header("x-filler", "a".repeat(70 * 1024))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 431);
    let lines = proxy.log_lines(1).await;
    assert_eq!(lines[0]["status"], 431);
    assert_eq!(lines[0]["host"], "www.linkedin.com");
    assert_eq!(lines[0]["tls"], "intercepted");
    // The origin never saw it; the connection still serves the next one.
    let ok = client
        .get(url("www.linkedin.com", &origin, "/hello"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.text().await.unwrap(), "hello from origin");
}

#[tokio::test]
async fn garbage_after_the_handshake_is_refused_by_the_http_layer() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let origin = TlsOrigin::start(&["www.linkedin.com"]).await;
    let proxy = TestProxy::inspecting(INSPECTING, &[&origin]).await;
    let mut tls = inspected_tls(&proxy, "www.linkedin.com", origin.port(), &[]).await;
    tls.write_all(b"\x00\x01GARBAGE \xff\xfe\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = within(tls.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    drop(tls);
    let lines = proxy.exactly_log_lines(1).await;
    assert_eq!(lines[0]["kind"], "tunnel");
    assert_eq!(lines[0]["tls"], "intercepted");
}

/// A raw CONNECT to `host:port` through `proxy`, then TLS inside it with a
/// rustls client that trusts only the company CA, offering `alpn`.
async fn inspected_tls(
    proxy: &TestProxy,
    host: &str,
    port: u16,
    alpn: &[&[u8]],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    use rustls::pki_types::pem::PemObject;
    use tokio::io::AsyncWriteExt;
    let mut s = within(tokio::net::TcpStream::connect(proxy.addr))
        .await
        .unwrap();
    let authority = format!("{host}:{port}");
    s.write_all(format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    assert_eq!(status_of(&read_head(&mut s).await), 200);
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(&proxy.ca_pem()) {
        roots.add(c.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let name = rustls::pki_types::ServerName::try_from(host.to_string()).unwrap();
    within(connector.connect(name, s)).await.unwrap()
}

#[tokio::test]
async fn a_websocket_inside_an_inspected_tunnel_is_relayed_and_recorded() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let origin = TlsOrigin::start(&["www.linkedin.com"]).await;
    let proxy = TestProxy::inspecting(INSPECTING, &[&origin]).await;
    let tls = inspected_tls(&proxy, "www.linkedin.com", origin.port(), &[b"http/1.1"]).await;
    let url = format!("wss://www.linkedin.com:{}/ws", origin.port());
    let (mut ws, resp) = within(tokio_tungstenite::client_async(url, tls))
        .await
        .expect("the upgrade goes through");
    assert_eq!(resp.status(), 101);
    within(ws.send(Message::text("hello inside TLS")))
        .await
        .unwrap();
    let got = within(ws.next()).await.expect("an echo").unwrap();
    assert_eq!(got, Message::text("hello inside TLS"));
    let _ = within(ws.close(None)).await;
    drop(ws);
    let lines = proxy.exactly_log_lines(2).await;
    let upgrade = lines.iter().find(|l| l["kind"] == "request").unwrap();
    assert_eq!(upgrade["status"], 101, "{upgrade}");
    assert_eq!(upgrade["tls"], "intercepted");
    assert!(upgrade["bytes_up"].as_u64().unwrap() > 0, "{upgrade}");
}

#[tokio::test]
async fn policy_tests_can_expect_inspection() {
    let dir = PolicyDir::new(INSPECTING);
    dir.write(
        "tests.yaml",
        r#"
tests:
  - name: LinkedIn is inspected
    client: 127.0.0.1
    url: https://www.linkedin.com/feed/
    expect: {action: allow, inspect: true}
  - name: TikTok is refused inside a decrypted tunnel
    client: 127.0.0.1
    url: https://www.tiktok.com/
    expect: {action: block, rule: no-tiktok, inspect: true}
  - name: banks are never decrypted
    client: 127.0.0.1
    url: https://www.paypal.com/
    expect: {action: allow, inspect: true}
"#,
    );
    let (code, out, _) = socialgate(&["test", dir.path().to_str().unwrap()]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("ok    LinkedIn is inspected"), "{out}");
    assert!(
        out.contains("ok    TikTok is refused inside a decrypted tunnel"),
        "{out}"
    );
    assert!(out.contains("FAIL  banks are never decrypted"), "{out}");
    assert!(out.contains("inspect: expected true, got false"), "{out}");
    assert!(out.contains("2 passed, 1 failed"), "{out}");
}

/// HTTP/2 inside an inspected tunnel, attacked. The proxy advertises its
/// stream bound in its SETTINGS; a client that opens streams and resets
/// them as fast as it can ("rapid reset", CVE-2023-44487: each reset
/// stream is free for the client and may cost the proxy an upstream
/// request) is cut off with GOAWAY, having had few of its streams served;
/// the next client is served as usual.
#[tokio::test]
async fn an_inspected_h2_client_gets_a_stream_bound_and_rapid_reset_is_cut_off() {
    let origin = TlsOrigin::start(&["www.linkedin.com"]).await;
    let proxy = TestProxy::inspecting(INSPECTING, &[&origin]).await;
    let tls = inspected_tls(&proxy, "www.linkedin.com", origin.port(), &[b"h2"]).await;
    let (client, conn) = within(h2::client::handshake(tls)).await.unwrap();
    let conn = tokio::spawn(conn);
    let mut client = within(client.ready()).await.unwrap();
    eventually("the proxy's SETTINGS bound the streams to 100", || {
        client.current_max_send_streams() == 100
    })
    .await;

    let uri = format!("https://www.linkedin.com:{}/hello", origin.port());
    const ATTEMPTS: usize = 5_000;
    let mut sent = 0;
    // In batches: the HEADERS of a batch are flushed (the connection task
    // runs while this one yields) before its streams are reset, as an
    // attacker's client would; a stream reset before its HEADERS left
    // would never be sent at all.
    'attack: while sent < ATTEMPTS {
        let mut batch = Vec::new();
        for _ in 0..50 {
            client = match within(client.clone().ready()).await {
                Ok(c) => c,
                Err(_) => break 'attack, // the proxy sent GOAWAY
            };
            let req = http::Request::get(uri.as_str()).body(()).unwrap();
            let Ok((response, stream)) = client.send_request(req, true) else {
                break 'attack;
            };
            batch.push((response, stream));
        }
        tokio::task::yield_now().await;
        for (response, mut stream) in batch {
            stream.send_reset(h2::Reason::CANCEL);
            drop(response);
            sent += 1;
        }
    }
    drop(client);
    let ended = within(conn).await.unwrap();
    // Cut off: GOAWAY (ENHANCE_YOUR_CALM), seen as such or, while this
    // client was still writing, as the socket closing under it.
    let err = ended.expect_err("the proxy ends the connection");
    assert!(
        sent < ATTEMPTS,
        "all {sent} streams were sent: the connection was not cut ({err:?})"
    );
    if err.is_go_away() {
        assert_eq!(err.reason(), Some(h2::Reason::ENHANCE_YOUR_CALM), "{err:?}");
    }

    // Once nothing is in flight and the writer has caught up, the log
    // holds the tunnel's record and one per stream served before the cut.
    let app = proxy.app();
    eventually("the tunnel and its streams are recorded", || {
        let g = &app.state.gauges;
        g.in_flight.load(std::sync::atomic::Ordering::SeqCst) == 0
            && g.tunnels.load(std::sync::atomic::Ordering::SeqCst) == 0
            && app.recorder.written() >= 1
            && app.recorder.written() + app.recorder.dropped() == proxy.events_recorded()
    })
    .await;
    let lines = proxy.log_lines(app.recorder.written() as usize).await;
    assert_eq!(lines.iter().filter(|l| l["kind"] == "tunnel").count(), 1);
    let served = lines.iter().filter(|l| l["kind"] == "request").count();
    assert!(
        served < 100,
        "{served} of {sent} reset streams were served before the cut"
    );

    // The next client is served.
    let resp = proxy
        .inspected_client(true)
        .get(url("www.linkedin.com", &origin, "/hello"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.text().await.unwrap(), "hello from origin");
}
