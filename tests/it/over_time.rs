//! Open tunnels and WebSockets follow the policy over time: a time window
//! that starts while they are open closes them at its edge, and a reload
//! that narrows `tunnels.ports` closes tunnels it no longer allows. Each
//! close is recorded with the reason that refused it.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use socialgate::proxy::Clock;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

/// YouTube is blocked from 09:00 (Berlin) every day; TLS origins run on
/// loopback, any port may be tunnelled.
const VIDEO_POLICY: &str = r#"
version: 1
settings:
  timezone: Europe/Berlin
destinations:
  allow: [127.0.0.0/8]
tunnels:
  ports: [any]
  sni_timeout_ms: 200
groups:
  staff:
    networks: [127.0.0.0/8]
rules:
  - id: video-during-work
    groups: [staff]
    platforms: [youtube]
    when: [{days: [mon-sun], from: "09:00", to: "17:00"}]
    action: block
"#;

/// A clock that reads `secs` seconds before the next 09:00 in Berlin.
fn seconds_before_nine(secs: i64) -> Clock {
    let now = Timestamp::now();
    let berlin = now.in_tz("Europe/Berlin").unwrap();
    let mut nine = berlin
        .with()
        .hour(9)
        .minute(0)
        .second(0)
        .subsec_nanosecond(0)
        .build()
        .unwrap();
    if nine.timestamp() <= now {
        nine = nine.tomorrow().unwrap();
    }
    let target = nine.timestamp() - SignedDuration::from_secs(secs);
    Clock::with_offset(target.duration_since(now))
}

/// Opens a CONNECT tunnel through the proxy and checks it is established.
async fn open_tunnel(proxy: &TestProxy, authority: &str) -> tokio::net::TcpStream {
    let mut s = within(tokio::net::TcpStream::connect(proxy.addr))
        .await
        .unwrap();
    s.write_all(format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let head = read_head(&mut s).await;
    assert_eq!(status_of(&head), 200, "{head}");
    s
}

/// Waits until the proxy closes `s` (EOF or reset), failing after 10 s.
async fn closed_by_proxy(mut s: tokio::net::TcpStream) {
    let mut buf = [0u8; 1024];
    within(async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
}

#[tokio::test]
async fn a_tunnel_open_when_a_blocking_window_starts_is_closed_at_its_edge() {
    let tls = TlsOrigin::start(&["www.youtube.com"]).await;
    let proxy = TestProxy::start_in(PolicyDir::new(VIDEO_POLICY), |cfg| {
        cfg.proxy.clock = seconds_before_nine(2);
    })
    .await;
    let s = open_tunnel(&proxy, &format!("www.youtube.com:{}", tls.port())).await;
    // Allowed at 08:59:58; the window opens two seconds later.
    let opened = std::time::Instant::now();
    closed_by_proxy(s).await;
    assert!(
        opened.elapsed() >= Duration::from_millis(1500),
        "closed before the window's edge"
    );
    let log = proxy.log_lines(1).await;
    assert_eq!(log[0]["kind"], "tunnel");
    assert_eq!(
        log[0]["error"], "tunnel-refused-on-schedule",
        "{:?}",
        log[0]
    );
    assert_eq!(log[0]["rule"], "video-during-work");
    assert_eq!(log[0]["action"], "block");
    assert_eq!(log[0]["status"], 200, "it was open before it was refused");
}

#[tokio::test]
async fn a_websocket_open_when_a_blocking_window_starts_is_closed_at_its_edge() {
    let origin = Origin::start().await;
    let proxy = TestProxy::start_in(PolicyDir::new(VIDEO_POLICY), |cfg| {
        cfg.proxy.clock = seconds_before_nine(2);
    })
    .await;
    let mut s = within(tokio::net::TcpStream::connect(proxy.addr))
        .await
        .unwrap();
    s.write_all(
        format!(
            "GET http://www.youtube.com:{}/ws HTTP/1.1\r\nHost: www.youtube.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            origin.port()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let head = read_head(&mut s).await;
    assert_eq!(status_of(&head), 101, "{head}");
    closed_by_proxy(s).await;
    let log = proxy.log_lines(1).await;
    assert_eq!(
        log[0]["error"], "tunnel-refused-on-schedule",
        "{:?}",
        log[0]
    );
    assert_eq!(log[0]["rule"], "video-during-work");
}

#[tokio::test]
async fn a_tunnel_outside_any_window_stays_open_across_an_edge_of_another_rule() {
    // LinkedIn is in no rule: the 09:00 edge re-admits the tunnel and it stays.
    let tls = TlsOrigin::start(&["www.linkedin.com"]).await;
    let proxy = TestProxy::start_in(PolicyDir::new(VIDEO_POLICY), |cfg| {
        cfg.proxy.clock = seconds_before_nine(1);
    })
    .await;
    let mut s = open_tunnel(&proxy, &format!("www.linkedin.com:{}", tls.port())).await;
    // Wait for the edge to pass: the tick counter moves once it fired.
    let mut ticks = proxy.app().state.ticks.subscribe();
    within(ticks.changed()).await.unwrap();
    // The tunnel still carries bytes: a TLS handshake through it completes.
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(
            tls.cert_der.clone(),
        ))
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let name = rustls::pki_types::ServerName::try_from("www.linkedin.com").unwrap();
    s.flush().await.unwrap();
    let tls_stream = within(connector.connect(name, s)).await;
    assert!(
        tls_stream.is_ok(),
        "the tunnel was cut: {:?}",
        tls_stream.err()
    );
}

#[tokio::test]
async fn a_reload_that_narrows_tunnel_ports_closes_open_tunnels_to_other_ports() {
    let tls = TlsOrigin::start(&["www.linkedin.com"]).await;
    let policy = |ports: &str| VIDEO_POLICY.replace("ports: [any]", &format!("ports: [{ports}]"));
    let proxy = TestProxy::start(&policy(&format!("443, {}", tls.port()))).await;
    let s = open_tunnel(&proxy, &format!("www.linkedin.com:{}", tls.port())).await;
    let generation = proxy.app().policy().generation();
    proxy.policy.write("policy.yaml", &policy("443"));
    proxy.wait_for_generation(generation + 1).await;
    closed_by_proxy(s).await;
    let log = proxy.log_lines(1).await;
    assert_eq!(
        log[0]["error"], "tunnel-refused-after-reload",
        "{:?}",
        log[0]
    );
    assert_eq!(log[0]["reason"], "port-not-allowed");
    assert_eq!(log[0]["rule"], "builtin:tunnel");
}
