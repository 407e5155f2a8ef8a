//! HTTP/1.0 clients and IPv6.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

#[tokio::test]
async fn answers_an_http_1_0_client_and_closes_the_connection() {
    let origin = Origin::start().await;
    let proxy = TestProxy::start(BASIC_POLICY).await;
    let mut s = within(tokio::net::TcpStream::connect(proxy.addr))
        .await
        .unwrap();
    s.write_all(
        format!(
            "GET http://example.org:{}/headers HTTP/1.0\r\nUser-Agent: old\r\n\r\n",
            origin.port()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .expect("an HTTP/1.0 exchange ends with the proxy closing the connection")
        .unwrap();
    let text = String::from_utf8_lossy(&out);
    assert_eq!(status_of(&text), 200, "{text}");
    assert!(text.starts_with("HTTP/1."), "{text}");
    assert!(
        text.contains("GET /headers"),
        "the origin got the request: {text}"
    );
    assert!(
        text.contains(&format!("host: example.org:{}", origin.port())),
        "Host added for HTTP/1.0: {text}"
    );
    let log = proxy.log_lines(1).await;
    assert_eq!(log[0]["status"], 200);
    assert_eq!(log[0]["host"], "example.org");
}

#[tokio::test]
async fn serves_ipv6_clients_and_reaches_ipv6_origins() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        println!("note: no IPv6 loopback on this machine; skipping the IPv6 test");
        return;
    }
    let origin = Origin::bind("[::1]:0").await;
    let proxy = TestProxy::start_in(PolicyDir::new(BASIC_POLICY), |cfg| {
        cfg.listen = vec!["[::1]:0".parse().unwrap()];
    })
    .await;
    assert!(proxy.addr.is_ipv6());
    let client = reqwest::Client::builder()
        .proxy(reqwest::Proxy::all(format!("http://{}", proxy.addr)).unwrap())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let resp = within(
        client
            .get(format!("http://[::1]:{}/hello", origin.port()))
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "hello from origin");
    assert_eq!(origin.connections(), 1);
    let log = proxy.log_lines(1).await;
    assert_eq!(log[0]["client"], "::1");
    assert_eq!(log[0]["host"], "::1");
    assert_eq!(log[0]["groups"], serde_json::json!(["staff"]));
}
