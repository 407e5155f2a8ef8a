//! Attacker tests: raw clients and misbehaving origins written for the test,
//! each a regression test for a defect found by hostile testing.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

/// A proxy over [`BASIC_POLICY`] whose forwarded bodies time out after 500 ms.
async fn proxy_with_short_body_timeout() -> TestProxy {
    TestProxy::start_in(PolicyDir::new(BASIC_POLICY), |cfg| {
        cfg.proxy.body_idle_timeout = Duration::from_millis(500);
    })
    .await
}

async fn metrics_text(proxy: &TestProxy) -> String {
    let admin = proxy.app().admin_addr.expect("admin listener");
    within(reqwest::get(format!("http://{admin}/metrics")))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

fn header_of<'a>(response: &'a str, name: &str) -> Option<&'a str> {
    let head = response.split("\r\n\r\n").next().unwrap_or("");
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn body_of(response: &str) -> &str {
    response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or("")
}

// --- 1. The Host header cannot steer a request to another site ------------

#[tokio::test]
async fn a_host_header_naming_another_site_is_replaced_by_the_judged_host() {
    let origin = Origin::start().await;
    let proxy = TestProxy::start(BASIC_POLICY).await;
    // Judged as LinkedIn (allowed); the Host header names TikTok (blocked).
    let req = format!(
        "GET http://www.linkedin.com:{}/headers HTTP/1.1\r\nHost: www.tiktok.com\r\nConnection: close\r\n\r\n",
        origin.port()
    );
    let resp = raw_until_close(proxy.addr, req.as_bytes()).await;
    assert_eq!(status_of(&resp), 200, "{resp}");
    let seen = body_of(&resp).to_ascii_lowercase();
    assert!(
        seen.contains(&format!("host: www.linkedin.com:{}", origin.port())),
        "the origin must get the judged host: {seen}"
    );
    assert!(!seen.contains("tiktok"), "TikTok leaked upstream: {seen}");
    let log = proxy.log_lines(1).await;
    assert_eq!(log[0]["host"], "www.linkedin.com");
    assert_eq!(log[0]["platform"], "linkedin");
}

#[tokio::test]
async fn a_duplicated_or_case_shifted_host_header_still_reaches_only_the_judged_host() {
    let origin = Origin::start().await;
    let proxy = TestProxy::start(BASIC_POLICY).await;
    let req = format!(
        "GET http://WWW.LinkedIn.COM.:{p}/headers HTTP/1.1\r\nHost: www.linkedin.com:{p}\r\nHost: www.tiktok.com\r\nConnection: close\r\n\r\n",
        p = origin.port()
    );
    let resp = raw_until_close(proxy.addr, req.as_bytes()).await;
    // hyper may refuse two Host lines outright; if it forwards, only the
    // judged host may arrive.
    if status_of(&resp) == 200 {
        let seen = body_of(&resp).to_ascii_lowercase();
        assert!(!seen.contains("tiktok"), "{seen}");
        assert_eq!(seen.matches("host:").count(), 1, "{seen}");
        assert!(seen.contains(&format!("host: www.linkedin.com:{}", origin.port())));
    } else {
        assert_eq!(status_of(&resp), 400, "{resp}");
    }
}

// --- 2. Response framing --------------------------------------------------

const CHUNKED_66: &str =
    "42\r\nxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n0\r\n\r\n";

#[tokio::test]
async fn a_response_with_both_content_length_and_chunked_gets_502_not_a_truncated_200() {
    let origin = RawOrigin::replying(
        format!("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n{CHUNKED_66}"),
        After::Close,
    )
    .await;
    let proxy = TestProxy::start(BASIC_POLICY).await;
    let req = format!(
        "GET http://example.org:{}/ HTTP/1.1\r\nHost: example.org\r\nConnection: close\r\n\r\n",
        origin.port()
    );
    let resp = raw_until_close(proxy.addr, req.as_bytes()).await;
    assert_eq!(status_of(&resp), 502, "{resp}");
    assert_eq!(
        header_of(&resp, "x-socialgate-error"),
        Some("upstream-protocol")
    );
    let log = proxy.log_lines(1).await;
    assert_eq!(log[0]["status"], 502);
    assert_eq!(log[0]["error"], "upstream-protocol");
}

#[tokio::test]
async fn a_chunked_response_reaches_the_client_whole() {
    let origin = RawOrigin::replying(
        format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{CHUNKED_66}"),
        After::Close,
    )
    .await;
    let proxy = TestProxy::start(BASIC_POLICY).await;
    let resp = within(
        proxy
            .client()
            .get(format!("http://example.org:{}/", origin.port()))
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("content-length").is_none());
    assert_eq!(resp.text().await.unwrap().len(), 66);
}

#[tokio::test]
async fn an_oversized_response_head_gets_502_upstream_protocol() {
    // 200 KiB in 20 fields: few enough for hyper's header count limit.
    let big = "a".repeat(10 * 1024);
    let mut head = String::from("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n");
    for i in 0..20 {
        head.push_str(&format!("x-filler-{i}: {big}\r\n"));
    }
    head.push_str("\r\nok");
    let origin = RawOrigin::replying(head, After::Close).await;
    let proxy = TestProxy::start(BASIC_POLICY).await;
    let req = format!(
        "GET http://example.org:{}/ HTTP/1.1\r\nHost: example.org\r\nConnection: close\r\n\r\n",
        origin.port()
    );
    let resp = raw_until_close(proxy.addr, req.as_bytes()).await;
    assert_eq!(status_of(&resp), 502, "{}", &resp[..resp.len().min(300)]);
    assert_eq!(
        header_of(&resp, "x-socialgate-error"),
        Some("upstream-protocol")
    );
    assert!(resp.len() < 4096, "the 200 KiB head was relayed");
    let log = proxy.log_lines(1).await;
    assert_eq!(log[0]["error"], "upstream-protocol");
}

#[tokio::test]
async fn a_response_head_just_over_the_limit_in_one_burst_gets_502() {
    // 8 KiB limit; the head (about 9.5 KiB) arrives in a single write.
    let mut head = String::from("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n");
    head.push_str(&format!("x-filler: {}\r\n\r\nok", "b".repeat(9500)));
    let origin = RawOrigin::replying(head, After::Close).await;
    let proxy = TestProxy::start_in(PolicyDir::new(BASIC_POLICY), |cfg| {
        cfg.proxy.max_header_bytes = 8192;
    })
    .await;
    let req = format!(
        "GET http://example.org:{}/ HTTP/1.1\r\nHost: example.org\r\nConnection: close\r\n\r\n",
        origin.port()
    );
    let resp = raw_until_close(proxy.addr, req.as_bytes()).await;
    assert_eq!(status_of(&resp), 502, "{}", &resp[..resp.len().min(300)]);
}

// --- 3. Stalled bodies ----------------------------------------------------

#[tokio::test]
async fn a_response_body_that_stalls_ends_with_upstream_timeout() {
    let origin = RawOrigin::replying(
        "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789",
        After::Stall,
    )
    .await;
    let proxy = proxy_with_short_body_timeout().await;
    let req = format!(
        "GET http://example.org:{}/ HTTP/1.1\r\nHost: example.org\r\n\r\n",
        origin.port()
    );
    // The proxy must give up on the silent origin and close the client.
    let resp = raw_until_close(proxy.addr, req.as_bytes()).await;
    assert_eq!(status_of(&resp), 200, "{resp}");
    assert_eq!(body_of(&resp), "0123456789", "only what arrived");
    let log = proxy.log_lines(1).await;
    assert_eq!(log[0]["error"], "upstream-timeout", "{:?}", log[0]);
    assert_eq!(log[0]["bytes_down"], 10);
}

#[tokio::test]
async fn a_request_body_that_stalls_ends_with_client_timeout() {
    let origin = Origin::start().await;
    let proxy = proxy_with_short_body_timeout().await;
    let req = format!(
        "POST http://example.org:{}/consume HTTP/1.1\r\nHost: example.org\r\nContent-Length: 100\r\n\r\n0123456789",
        origin.port()
    );
    let resp = raw_until_close(proxy.addr, req.as_bytes()).await;
    assert_eq!(status_of(&resp), 408, "{resp}");
    assert_eq!(
        header_of(&resp, "x-socialgate-error"),
        Some("client-timeout")
    );
    let log = proxy.log_lines(1).await;
    assert_eq!(log[0]["error"], "client-timeout", "{:?}", log[0]);
    assert_eq!(log[0]["status"], 408);
    let metrics = metrics_text(&proxy).await;
    assert!(
        !metrics.contains("error=\"upstream-"),
        "a client's stall is not an upstream error:\n{metrics}"
    );
}

#[tokio::test]
async fn a_request_body_that_stalls_while_the_origin_streams_back_is_blamed_on_the_client() {
    let origin = Origin::start().await;
    let proxy = proxy_with_short_body_timeout().await;
    let mut s = within(tokio::net::TcpStream::connect(proxy.addr))
        .await
        .unwrap();
    let req = format!(
        "POST http://example.org:{}/echo HTTP/1.1\r\nHost: example.org\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
        origin.port()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let head = read_head(&mut s).await;
    assert_eq!(status_of(&head), 200, "{head}");
    // Then never send the rest: the exchange must end, and the record say why.
    let mut rest = Vec::new();
    within(s.read_to_end(&mut rest)).await.ok();
    let log = proxy.log_lines(1).await;
    assert_eq!(log[0]["error"], "client-timeout", "{:?}", log[0]);
}

// --- 4. Malformed client bodies are the client's fault --------------------

async fn post_raw_body(framing_and_body: &str) -> (String, TestProxy, Origin) {
    let origin = Origin::start().await;
    let proxy = TestProxy::start(BASIC_POLICY).await;
    let req = format!(
        "POST http://example.org:{}/consume HTTP/1.1\r\nHost: example.org\r\n{framing_and_body}",
        origin.port()
    );
    let resp = raw_until_close(proxy.addr, req.as_bytes()).await;
    (resp, proxy, origin)
}

#[tokio::test]
async fn an_overflowing_chunk_size_gets_400_client_protocol_not_502() {
    let (resp, proxy, _origin) = post_raw_body(
        "Transfer-Encoding: chunked\r\n\r\nfffffffffffffffffffffff\r\nabc\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&resp), 400, "{resp}");
    assert_eq!(
        header_of(&resp, "x-socialgate-error"),
        Some("client-protocol")
    );
    let log = proxy.log_lines(1).await;
    assert_eq!(log[0]["error"], "client-protocol");
    assert_eq!(log[0]["status"], 400);
    let metrics = metrics_text(&proxy).await;
    assert!(
        metrics.contains("socialgate_errors_total{error=\"client-protocol\"} 1"),
        "{metrics}"
    );
    assert!(!metrics.contains("error=\"upstream-"), "{metrics}");
}

#[tokio::test]
async fn a_100_kib_chunk_extension_gets_400_client_protocol() {
    let ext = "x".repeat(100 * 1024);
    let (resp, proxy, _origin) = post_raw_body(&format!(
        "Transfer-Encoding: chunked\r\n\r\n3;{ext}\r\nabc\r\n0\r\n\r\n"
    ))
    .await;
    assert_eq!(status_of(&resp), 400, "{}", &resp[..resp.len().min(300)]);
    let log = proxy.log_lines(1).await;
    assert_eq!(log[0]["error"], "client-protocol");
}

#[tokio::test]
async fn transfer_codings_other_than_bare_chunked_get_501() {
    for coding in ["gzip, chunked", "chunked, chunked", "x-custom, chunked"] {
        let (resp, proxy, _origin) = post_raw_body(&format!(
            "Transfer-Encoding: {coding}\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
        ))
        .await;
        assert_eq!(status_of(&resp), 501, "{coding}: {resp}");
        assert_eq!(
            header_of(&resp, "x-socialgate-error"),
            Some("client-protocol")
        );
        let log = proxy.log_lines(1).await;
        assert_eq!(log[0]["status"], 501, "{coding}");
        assert_eq!(log[0]["error"], "client-protocol", "{coding}");
    }
}

#[tokio::test]
async fn a_chunked_body_is_still_forwarded_whole() {
    let (resp, _proxy, _origin) = post_raw_body(
        "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&resp), 200, "{resp}");
    assert!(resp.contains("consumed 7 bytes"), "{resp}");
}

#[tokio::test]
async fn content_length_with_chunked_never_smuggles_a_second_request() {
    // CL.TE: the bytes after the chunked body's end would be a second
    // request to a server that trusted Content-Length.
    let origin = RawOrigin::replying(
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        After::Stall,
    )
    .await;
    let proxy = TestProxy::start(BASIC_POLICY).await;
    let smuggled = "GET /admin HTTP/1.1\r\nHost: example.org\r\n\r\n";
    let req = format!(
        "POST http://example.org:{}/ HTTP/1.1\r\nHost: example.org\r\nContent-Length: {}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}",
        origin.port(),
        5 + smuggled.len()
    );
    let resp = raw_until_close(proxy.addr, req.as_bytes()).await;
    let status = status_of(&resp);
    assert!(matches!(status, 200 | 400), "{resp}");
    // Whatever the proxy answered, the origin never sees /admin, and never
    // sees both framings.
    let seen = origin.received().to_ascii_lowercase();
    assert!(!seen.contains("/admin"), "smuggled: {seen}");
    assert!(
        !(seen.contains("content-length") && seen.contains("transfer-encoding")),
        "{seen}"
    );
    assert_eq!(resp.matches("HTTP/1.1 ").count(), 1, "one response: {resp}");
}

// --- 6. The keep-alive timeout has a name ----------------------------------

#[tokio::test]
async fn help_says_which_timeout_closes_idle_keep_alive_connections() {
    let (code, out, _) = socialgate(&["run", "--help"]).await;
    assert_eq!(code, 0);
    let flat = out.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(flat.contains("idle keep-alive client connection"), "{out}");
    assert!(flat.contains("--body-idle-timeout"), "{out}");
}
