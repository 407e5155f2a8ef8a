//! Upstream errors and malformed requests: a clear status, one log line,
//! and the proxy keeps serving the next client.

use std::time::{Duration, Instant};

use crate::support::*;

/// After a bad exchange, the proxy still serves an ordinary client.
async fn still_serves(proxy: &TestProxy, origin: &Origin) {
    let resp = within(
        proxy
            .client()
            .get(format!("http://example.org:{}/hello", origin.port()))
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "hello from origin");
}

#[tokio::test]
async fn answers_502_when_the_origin_is_down() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let proxy = TestProxy::start(BASIC_POLICY).await;
    let resp = within(
        proxy
            .client()
            .get(format!("http://example.org:{port}/hello"))
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 502);
    assert_eq!(resp.headers()["x-socialgate-error"], "upstream-connect");
    let connect =
        format!("CONNECT example.org:{port} HTTP/1.1\r\nHost: example.org:{port}\r\n\r\n");
    let raw = raw_exchange(proxy.addr, connect.as_bytes()).await;
    assert_eq!(status_of(&raw), 502, "{raw}");
    let log = proxy.exactly_log_lines(2).await;
    for l in &log {
        assert_eq!(l["error"], "upstream-connect", "{l}");
        assert_eq!(l["status"], 502);
    }
    let origin = Origin::start().await;
    still_serves(&proxy, &origin).await;
}

#[tokio::test]
async fn answers_504_when_the_origin_is_too_slow() {
    let origin = Origin::start().await;
    let proxy = TestProxy::start_in(PolicyDir::new(BASIC_POLICY), |cfg| {
        cfg.proxy.upstream_timeout = Duration::from_millis(300);
    })
    .await;
    let started = Instant::now();
    let resp = within(
        proxy
            .client()
            .get(format!("http://example.org:{}/sleep", origin.port()))
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 504);
    assert_eq!(resp.headers()["x-socialgate-error"], "upstream-timeout");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let log = proxy.exactly_log_lines(1).await;
    assert_eq!(log[0]["error"], "upstream-timeout");
    assert_eq!(log[0]["status"], 504);
}

#[tokio::test]
async fn rejects_garbage_bytes_with_400_and_keeps_serving() {
    let origin = Origin::start().await;
    let proxy = TestProxy::start(BASIC_POLICY).await;
    let resp = raw_exchange(proxy.addr, b"\x16\x03\x01\x00\xffthis is not http\r\n\r\n").await;
    assert_eq!(status_of(&resp), 400, "{resp}");
    still_serves(&proxy, &origin).await;
}

#[tokio::test]
async fn rejects_an_origin_form_request_with_400_that_says_how_to_fix_it() {
    let origin = Origin::start().await;
    let proxy = TestProxy::start(BASIC_POLICY).await;
    let resp = raw_exchange(proxy.addr, b"GET / HTTP/1.1\r\nHost: example.org\r\n\r\n").await;
    assert_eq!(status_of(&resp), 400, "{resp}");
    assert!(
        resp.to_ascii_lowercase()
            .contains("x-socialgate-error: bad-request"),
        "{resp}"
    );
    assert!(resp.contains("absolute-form"), "{resp}");
    let log = proxy.exactly_log_lines(1).await;
    assert_eq!(log[0]["reason"], "bad-request");
    assert_eq!(log[0]["status"], 400);
    still_serves(&proxy, &origin).await;
    proxy.exactly_log_lines(2).await;
}

#[tokio::test]
async fn rejects_connect_without_a_port_with_400() {
    let origin = Origin::start().await;
    let proxy = TestProxy::start(BASIC_POLICY).await;
    let resp = raw_exchange(
        proxy.addr,
        b"CONNECT www.linkedin.com HTTP/1.1\r\nHost: www.linkedin.com\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&resp), 400, "{resp}");
    still_serves(&proxy, &origin).await;
}

#[tokio::test]
async fn rejects_oversized_request_headers_and_keeps_serving() {
    let origin = Origin::start().await;
    let proxy = TestProxy::start(BASIC_POLICY).await;
    let big = "a".repeat(100 * 1024);
    let req = format!(
        "GET http://example.org:{}/hello HTTP/1.1\r\nHost: example.org\r\nX-Big: {big}\r\n\r\n",
        origin.port()
    );
    let resp = raw_exchange(proxy.addr, req.as_bytes()).await;
    assert_eq!(status_of(&resp), 431, "{resp}");
    assert_eq!(
        origin.connections(),
        0,
        "an oversized request is never forwarded"
    );
    // Far larger than hyper's read buffer: refused while reading.
    let huge = format!(
        "GET http://example.org:{}/hello HTTP/1.1\r\nX-Big: {}\r\n\r\n",
        origin.port(),
        "a".repeat(400 * 1024)
    );
    let resp = raw_exchange(proxy.addr, huge.as_bytes()).await;
    assert_eq!(status_of(&resp), 431, "{resp}");
    assert_eq!(origin.connections(), 0);
    still_serves(&proxy, &origin).await;
    let log = proxy.log_lines(2).await;
    assert_eq!(log[0]["reason"], "bad-request");
    assert_eq!(log[0]["status"], 431);
}

#[tokio::test]
async fn records_exactly_one_log_line_per_request_and_tunnel() {
    let origin = Origin::start().await;
    let tls = TlsOrigin::start(&["www.linkedin.com"]).await;
    let proxy = TestProxy::start(BASIC_POLICY).await;
    let client = proxy.client();
    let ok = within(
        client
            .get(format!("http://example.org:{}/stream", origin.port()))
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(ok.text().await.unwrap().lines().count(), 5);
    let blocked = within(client.get("http://www.tiktok.com/").send())
        .await
        .unwrap();
    assert_eq!(blocked.status(), 403);
    let tls_client = proxy.tls_client(&tls);
    let resp = within(
        tls_client
            .get(format!("https://www.linkedin.com:{}/hello", tls.port()))
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    // Read to the end: an HTTP/2 response holds its connection (and so
    // the tunnel) open while it lives.
    assert_eq!(resp.text().await.unwrap(), "hello from origin");
    drop(tls_client);
    // A client that gives up mid-response still ends in one record.
    let mut cut = within(
        client
            .get(format!("http://example.org:{}/stream", origin.port()))
            .send(),
    )
    .await
    .unwrap();
    let _ = within(cut.chunk()).await;
    drop(cut);
    let log = proxy.exactly_log_lines(4).await;
    let kinds: Vec<_> = log
        .iter()
        .map(|l| l["kind"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| *k == "tunnel").count(),
        1,
        "{log:#?}"
    );
    assert!(
        log.iter().any(|l| l["error"] == "client-closed"),
        "{log:#?}"
    );
}
