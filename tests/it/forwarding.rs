//! Plain-HTTP forwarding, keep-alive, streaming, and CONNECT tunnels.

use crate::support::*;

#[tokio::test]
async fn forwards_plain_http_with_via_and_without_hop_by_hop_headers() {
    let origin = Origin::start().await;
    let proxy = TestProxy::start(BASIC_POLICY).await;
    let resp = proxy
        .client()
        .get(format!("http://example.org:{}/headers", origin.port()))
        .header("Connection", "keep-alive, X-Private")
        .header("X-Private", "secret")
        .header("Keep-Alive", "timeout=5")
        .header("X-Kept", "yes")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["via"], "1.1 socialgate");
    let body = resp.text().await.unwrap();
    assert!(
        body.starts_with("GET /headers HTTP/1.1"),
        "origin saw origin-form: {body}"
    );
    assert!(body.contains("via: 1.1 socialgate"), "{body}");
    assert!(body.contains("x-kept: yes"), "{body}");
    assert!(
        !body.contains("x-private"),
        "header named by Connection leaked: {body}"
    );
    assert!(!body.contains("keep-alive: timeout"), "{body}");
    assert!(!body.contains("proxy-"), "{body}");

    let log = proxy.log_lines(1).await;
    assert_eq!(log[0]["kind"], "request");
    assert_eq!(log[0]["host"], "example.org");
    assert_eq!(log[0]["status"], 200);
    assert_eq!(log[0]["action"], "allow");
    assert_eq!(log[0]["rule"], "default:other");
    assert!(log[0]["bytes_down"].as_u64().unwrap() > 20);
}

#[tokio::test]
async fn reuses_upstream_connections_across_keep_alive_requests() {
    let origin = Origin::start().await;
    let proxy = TestProxy::start(BASIC_POLICY).await;
    let client = proxy.client();
    for _ in 0..20 {
        let r = client
            .get(format!("http://example.org:{}/hello", origin.port()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.text().await.unwrap(), "hello from origin");
    }
    assert_eq!(
        origin.connections(),
        1,
        "the proxy should keep one upstream connection alive"
    );
    assert_eq!(proxy.log_lines(20).await.len(), 20);
}

/// A client refused before its request body was read keeps sending the
/// body after the refusal arrived; the proxy reads and discards it while it
/// closes (a lingering close). Closed at once, the connection would answer
/// the client's next writes with a reset: the client fails to send, and may
/// lose the refusal it has not read yet.
#[tokio::test]
async fn a_client_refused_in_the_middle_of_its_body_can_finish_sending_it() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let proxy = TestProxy::start(BASIC_POLICY).await;
    let mut stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let body = 256 * 1024;
    let head = format!(
        "POST http://www.tiktok.com/upload HTTP/1.1\r\nHost: www.tiktok.com\r\nContent-Length: {body}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&[b'v'; 8192]).await.unwrap();
    let answer = within(read_head(&mut stream)).await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    // The rest of the body, after the refusal, as an upload still under
    // way sends it.
    let rest = async {
        for _ in 0..31 {
            stream.write_all(&[b'v'; 8192]).await?;
            tokio::task::yield_now().await;
        }
        stream.shutdown().await
    };
    within(rest)
        .await
        .expect("the proxy took the rest of the body");
    let mut tail = Vec::new();
    within(stream.read_to_end(&mut tail))
        .await
        .expect("closed without a reset");
    let log = proxy.log_lines(1).await;
    assert_eq!(log[0]["action"], "block");
}

/// The lingering close is bounded: a client that goes on sending after its
/// refusal is cut off once the proxy has discarded about a MiB (or after
/// two seconds).
#[tokio::test]
async fn a_client_that_never_stops_sending_is_cut_off_after_the_refusal() {
    use tokio::io::AsyncWriteExt;
    let proxy = TestProxy::start(BASIC_POLICY).await;
    let mut stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let head = "POST http://www.tiktok.com/upload HTTP/1.1\r\nHost: www.tiktok.com\r\nContent-Length: 1000000000\r\n\r\n";
    stream.write_all(head.as_bytes()).await.unwrap();
    let answer = within(read_head(&mut stream)).await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    let mut sent = 0usize;
    let flood = async {
        loop {
            if stream.write_all(&[b'v'; 65536]).await.is_err() {
                return;
            }
            sent += 65536;
        }
    };
    within(flood).await;
    // What the proxy discarded, plus what the two sockets' buffers held.
    assert!(sent < 64 << 20, "{sent} bytes went in before the cut");
}

/// A client connection keeps its upstream connection between requests;
/// when it parks, the upstream connection waits in the shared idle set,
/// where another client's first request to that address takes it.
#[tokio::test]
async fn an_upstream_connection_outlives_the_client_connection_that_opened_it() {
    use std::sync::atomic::Ordering;
    let origin = Origin::start().await;
    let proxy = TestProxy::start(BASIC_POLICY).await;
    let url = format!("http://example.org:{}/hello", origin.port());
    let first = proxy.client();
    assert_eq!(
        first.get(&url).send().await.unwrap().text().await.unwrap(),
        "hello from origin"
    );
    let g = proxy.gauges();
    assert_eq!(
        g.upstream_idle.load(Ordering::Relaxed),
        0,
        "held by its client, not idle"
    );
    // Quiet for a second, the client connection parks and lets go of it.
    eventually("the client connection parked", || {
        g.parked.load(Ordering::Relaxed) == 1
    })
    .await;
    assert_eq!(g.upstream_idle.load(Ordering::Relaxed), 1);
    let metrics = proxy.metrics().await;
    assert!(
        metrics.contains("\nsocialgate_upstream_idle_connections 1\n"),
        "{metrics}"
    );

    // Another client connection's first request takes it back.
    let second = proxy.client();
    assert_eq!(
        second.get(&url).send().await.unwrap().text().await.unwrap(),
        "hello from origin"
    );
    assert_eq!(g.upstream_idle.load(Ordering::Relaxed), 0);
    assert_eq!(
        origin.connections(),
        1,
        "one upstream connection served both clients"
    );

    // Going elsewhere on one client connection, its upstream connection
    // goes idle, and is found again when it comes back.
    let other = Origin::start().await;
    let stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let mut get = |port: u16| {
        let req = http::Request::get(format!("http://example.org:{port}/hello"))
            .header("host", format!("example.org:{port}"))
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let sent = send.send_request(req);
        async move {
            let resp = sent.await.unwrap();
            let status = resp.status();
            http_body_util::BodyExt::collect(resp.into_body())
                .await
                .unwrap();
            status
        }
    };
    assert_eq!(get(other.port()).await, 200);
    assert_eq!(g.upstream_idle.load(Ordering::Relaxed), 0);
    // The first origin's connection is still held by `second`: a new one.
    assert_eq!(get(origin.port()).await, 200);
    assert_eq!(
        g.upstream_idle.load(Ordering::Relaxed),
        1,
        "the one to the other origin"
    );
    assert_eq!(get(other.port()).await, 200);
    assert_eq!(other.connections(), 1, "taken back from the idle set");
    assert_eq!(origin.connections(), 2);
    assert_eq!(g.upstream_idle.load(Ordering::Relaxed), 1);
    assert_eq!(proxy.log_lines(5).await.len(), 5);
}

/// Idle upstream connections are closed once they have waited the pool's
/// idle timeout.
#[tokio::test]
async fn idle_upstream_connections_expire() {
    use std::sync::atomic::Ordering;
    let origin = Origin::start().await;
    let proxy = TestProxy::start_in(PolicyDir::new(BASIC_POLICY), |cfg| {
        cfg.proxy.pool_idle_timeout = std::time::Duration::from_millis(300);
    })
    .await;
    let url = format!("http://example.org:{}/hello", origin.port());
    let client = proxy.client();
    assert_eq!(client.get(&url).send().await.unwrap().status(), 200);
    let g = proxy.gauges();
    eventually("the client connection parked", || {
        g.parked.load(Ordering::Relaxed) == 1
    })
    .await;
    eventually("the idle upstream connection was closed", || {
        g.upstream_idle.load(Ordering::Relaxed) == 0 && origin.open_connections() == 0
    })
    .await;
    // The client connection is still open, and still served.
    assert_eq!(client.get(&url).send().await.unwrap().status(), 200);
    assert_eq!(origin.connections(), 2);
}

/// An idle upstream connection that the origin closed is not used: the
/// next request goes out on a new one and is answered.
#[tokio::test]
async fn an_upstream_connection_the_origin_closed_is_replaced() {
    let origin = Origin::start().await;
    let proxy = TestProxy::start(BASIC_POLICY).await;
    let client = proxy.client();
    let url = format!("http://example.org:{}/hello", origin.port());
    assert_eq!(client.get(&url).send().await.unwrap().status(), 200);
    // The origin drops every connection it holds (as after its idle
    // timeout), and the client connection parks meanwhile: the closed
    // upstream connection does not go to the idle set.
    origin.close_connections();
    eventually("the origin closed its connections", || {
        origin.open_connections() == 0
    })
    .await;
    let g = proxy.gauges();
    eventually("the client connection parked", || {
        g.parked.load(std::sync::atomic::Ordering::Relaxed) == 1
    })
    .await;
    assert_eq!(
        g.upstream_idle.load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    for _ in 0..3 {
        let r = client.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.unwrap(), "hello from origin");
    }
    assert_eq!(origin.connections(), 2);
}

#[tokio::test]
async fn blocks_tiktok_for_staff_and_names_the_rule() {
    let proxy = TestProxy::start(BASIC_POLICY).await;
    let resp = proxy
        .client()
        .get("http://www.tiktok.com/foryou")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(resp.headers()["x-socialgate-rule"], "no-tiktok");
    assert_eq!(resp.headers()["x-socialgate-reason"], "rule-matched");
    let body = resp.text().await.unwrap();
    assert!(body.contains("TikTok is not for work."), "{body}");

    // A browser navigation gets the HTML page naming platform, group, rule and help.
    let resp = proxy
        .client()
        .get("http://www.tiktok.com/")
        .header("Accept", "text/html,application/xhtml+xml")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let page = resp.text().await.unwrap();
    for needle in [
        "TikTok",
        "staff",
        "no-tiktok",
        "rule-matched",
        "Ask the test desk.",
        "Test Corp",
    ] {
        assert!(page.contains(needle), "page lacks {needle}: {page}");
    }
    let log = proxy.log_lines(2).await;
    assert_eq!(log[0]["platform"], "tiktok");
    assert_eq!(log[0]["action"], "block");
    assert_eq!(log[0]["status"], 403);
}

#[tokio::test]
async fn tunnels_https_to_a_tls_origin_and_records_the_server_name() {
    let origin = TlsOrigin::start(&["www.linkedin.com"]).await;
    let proxy = TestProxy::start(BASIC_POLICY).await;
    let client = proxy.tls_client(&origin);
    let resp = client
        .get(format!("https://www.linkedin.com:{}/hello", origin.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "hello from origin");
    drop(client); // closes the tunnel
    let log = proxy.log_lines(1).await;
    assert_eq!(log[0]["kind"], "tunnel");
    assert_eq!(log[0]["method"], "CONNECT");
    assert_eq!(log[0]["sni"], "www.linkedin.com");
    assert_eq!(log[0]["platform"], "linkedin");
    assert_eq!(log[0]["status"], 200);
    assert!(
        log[0]["bytes_up"].as_u64().unwrap() > 100,
        "ClientHello and request counted"
    );
    assert!(log[0]["bytes_down"].as_u64().unwrap() > 100);
}

#[tokio::test]
async fn refuses_connect_to_a_blocked_platform_with_403() {
    let proxy = TestProxy::start(BASIC_POLICY).await;
    let (code, out) = curl(&["-x", &proxy.url(), "-i", "https://www.tiktok.com/"]).await;
    assert_ne!(code, 0, "curl must fail: {out}");
    assert!(out.contains("403"), "{out}");
    assert!(
        out.to_ascii_lowercase()
            .contains("x-socialgate-rule: no-tiktok"),
        "{out}"
    );
}
