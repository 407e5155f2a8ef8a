//! Safety: domain fronting, tunnel ports, non-public destinations, the
//! proxy's own listener, and clients in no group.

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

/// Loopback is *not* allowed as a destination; only port 443 tunnels.
const STRICT_POLICY: &str = r#"
version: 1
tunnels:
  ports: [443]
groups:
  staff:
    networks: [127.0.0.0/8]
"#;

fn allowing(dest: &str) -> String {
    format!(
        r#"
version: 1
destinations:
  allow: [{dest}]
tunnels:
  ports: [any]
groups:
  staff:
    networks: [127.0.0.0/8]
"#
    )
}

#[tokio::test]
async fn closes_a_tunnel_whose_client_hello_names_another_site() {
    let origin = TlsOrigin::start(&["www.linkedin.com", "www.tiktok.com"]).await;
    let proxy = TestProxy::start(BASIC_POLICY).await;
    let mut s = within(tokio::net::TcpStream::connect(proxy.addr))
        .await
        .unwrap();
    let authority = format!("www.linkedin.com:{}", origin.port());
    s.write_all(format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let head = read_head(&mut s).await;
    assert_eq!(
        status_of(&head),
        200,
        "the CONNECT itself names LinkedIn: {head}"
    );

    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(
            origin.cert_der.clone(),
        ))
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = rustls::pki_types::ServerName::try_from("www.tiktok.com").unwrap();
    let result = within(connector.connect(name, s)).await;
    assert!(
        result.is_err(),
        "the fronted TLS handshake must not complete"
    );

    let log = proxy.exactly_log_lines(1).await;
    assert_eq!(log[0]["kind"], "tunnel");
    assert_eq!(log[0]["host"], "www.linkedin.com");
    assert_eq!(log[0]["sni"], "www.tiktok.com");
    assert_eq!(log[0]["reason"], "sni-mismatch");
    assert_eq!(log[0]["rule"], "builtin:sni");
    assert_eq!(log[0]["action"], "block");
    assert_eq!(
        log[0]["bytes_down"], 0,
        "nothing from the origin reached the client"
    );
}

#[tokio::test]
async fn refuses_connect_to_a_port_not_in_tunnels_ports() {
    let proxy = TestProxy::start(STRICT_POLICY).await;
    let resp = raw_exchange(
        proxy.addr,
        b"CONNECT www.linkedin.com:8443 HTTP/1.1\r\nHost: www.linkedin.com:8443\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&resp), 403, "{resp}");
    assert!(
        resp.to_ascii_lowercase()
            .contains("x-socialgate-reason: port-not-allowed"),
        "{resp}"
    );
    let log = proxy.exactly_log_lines(1).await;
    assert_eq!(log[0]["reason"], "port-not-allowed");
    assert_eq!(log[0]["rule"], "builtin:tunnel");
    assert_eq!(log[0]["port"], 8443);
    assert_eq!(log[0]["status"], 403);
}

#[tokio::test]
async fn refuses_loopback_destinations_by_ip_by_name_and_by_connect() {
    let origin = Origin::start().await;
    let proxy = TestProxy::start(STRICT_POLICY).await;
    let client = proxy.client();
    for url in [
        format!("http://127.0.0.1:{}/hello", origin.port()),
        // example.org resolves to 127.0.0.1 through the proxy's override.
        format!("http://example.org:{}/hello", origin.port()),
    ] {
        let resp = within(client.get(&url).send()).await.unwrap();
        assert_eq!(resp.status(), 403, "{url}");
        assert_eq!(
            resp.headers()["x-socialgate-reason"],
            "destination-private",
            "{url}"
        );
        assert_eq!(
            resp.headers()["x-socialgate-rule"],
            "builtin:destination",
            "{url}"
        );
    }
    let resp = raw_exchange(
        proxy.addr,
        b"CONNECT example.org:443 HTTP/1.1\r\nHost: example.org:443\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&resp), 403, "{resp}");
    assert!(
        resp.to_ascii_lowercase()
            .contains("x-socialgate-reason: destination-private"),
        "{resp}"
    );
    assert_eq!(
        origin.connections(),
        0,
        "the origin must never be contacted"
    );
    let log = proxy.exactly_log_lines(3).await;
    for line in &log {
        assert_eq!(line["reason"], "destination-private", "{line}");
        assert_eq!(line["status"], 403);
        assert_eq!(
            line["groups"],
            serde_json::json!(["staff"]),
            "the client's groups are still recorded: {line}"
        );
    }
    assert_eq!(log[2]["kind"], "tunnel");
}

#[tokio::test]
async fn reaches_loopback_destinations_that_the_policy_allows() {
    let origin = Origin::start().await;
    let tls = TlsOrigin::start(&["www.linkedin.com"]).await;
    let proxy = TestProxy::start(&allowing("127.0.0.1/32")).await;
    let client = proxy.client();
    let resp = within(
        client
            .get(format!("http://127.0.0.1:{}/hello", origin.port()))
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = within(
        client
            .get(format!("http://example.org:{}/hello", origin.port()))
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200, "a name resolving to an allowed address");
    let tls_client = proxy.tls_client(&tls);
    let resp = within(
        tls_client
            .get(format!("https://www.linkedin.com:{}/hello", tls.port()))
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200, "CONNECT to an allowed address");
}

#[tokio::test]
async fn refuses_its_own_listener_even_when_loopback_is_allowed() {
    let proxy = TestProxy::start(BASIC_POLICY).await;
    let port = proxy.addr.port();
    let resp = within(
        proxy
            .client()
            .get(format!("http://127.0.0.1:{port}/"))
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(resp.headers()["x-socialgate-reason"], "destination-self");
    let resp = within(
        proxy
            .client()
            .get(format!("http://example.org:{port}/"))
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 403, "a name pointing back at the proxy");
    assert_eq!(resp.headers()["x-socialgate-reason"], "destination-self");
    let connect = format!("CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n");
    let resp = raw_exchange(proxy.addr, connect.as_bytes()).await;
    assert_eq!(status_of(&resp), 403, "{resp}");
    assert!(
        resp.to_ascii_lowercase()
            .contains("x-socialgate-reason: destination-self"),
        "{resp}"
    );
    // Three refusals, no loop: exactly three records.
    let log = proxy.exactly_log_lines(3).await;
    assert!(
        log.iter().all(|l| l["reason"] == "destination-self"),
        "{log:#?}"
    );
}

#[tokio::test]
async fn refuses_clients_in_no_group() {
    let origin = Origin::start().await;
    let policy = r#"
version: 1
destinations:
  allow: [127.0.0.0/8]
tunnels:
  ports: [any]
groups:
  office:
    networks: [127.0.0.2/32]
"#;
    let proxy = TestProxy::start(policy).await;
    let url = format!("http://example.org:{}/hello", origin.port());
    let resp = within(proxy.client_from("127.0.0.3").get(&url).send())
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(resp.headers()["x-socialgate-reason"], "not-a-member");
    assert!(
        resp.headers().get("proxy-authenticate").is_none(),
        "no htpasswd: no 407"
    );
    let resp = within(proxy.client_from("127.0.0.2").get(&url).send())
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "a member is served");
    // CONNECT from outside every group is refused too.
    // It names the origin, so a tunnel opened by mistake would reach it.
    let mut s = connect_from("127.0.0.3", proxy.addr).await;
    let authority = format!("www.linkedin.com:{}", origin.port());
    s.write_all(format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let head = read_head(&mut s).await;
    assert_eq!(status_of(&head), 403, "{head}");
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap_or_else(|| panic!("no content-length: {head}"));
    let mut body = vec![0; len];
    within(s.read_exact(&mut body)).await.unwrap();
    let body = String::from_utf8(body).unwrap();
    assert!(
        body.contains("reason: not-a-member") && body.contains("rule: builtin:identity"),
        "{body}"
    );
    // No tunnel was opened: what the client sends next is read as another
    // proxy request (origin-form, so 400), and never reaches the origin.
    s.write_all(format!("GET /hello HTTP/1.1\r\nHost: {authority}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let next = read_head(&mut s).await;
    assert_eq!(status_of(&next), 400, "{next}");
    let log = proxy.exactly_log_lines(4).await;
    assert_eq!(log[0]["client"], "127.0.0.3");
    assert_eq!(log[0]["reason"], "not-a-member");
    assert_eq!(log[0]["rule"], "builtin:identity");
    assert_eq!(log[1]["client"], "127.0.0.2");
    assert_eq!(log[1]["groups"], serde_json::json!(["office"]));
    assert_eq!(log[2]["kind"], "tunnel");
    assert_eq!(log[2]["reason"], "not-a-member");
    assert_eq!(log[3]["reason"], "bad-request");
    assert_eq!(origin.connections(), 1, "only the member's request");
}
