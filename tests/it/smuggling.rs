//! Request smuggling and response desynchronisation: the framing
//! ambiguities of RFC 9112 (§6 message body length, §5 field syntax, §7
//! chunked coding, §9.3 pipelining), each sent by a raw client, and for
//! each the test counts what the origin really received. The invariant:
//! the origin receives exactly the requests the client framed
//! unambiguously, a request hidden in a body never becomes a request, and
//! the client never gets a response that answers another request.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

/// The status lines in a raw response stream.
fn statuses(raw: &str) -> Vec<u16> {
    raw.match_indices("HTTP/1.1 ")
        .filter_map(|(i, _)| raw[i + 9..].get(..3)?.parse().ok())
        .collect()
}

/// Sends `raw` on a fresh connection and returns what came back, the
/// requests the origin received meanwhile, and their targets.
async fn send(proxy: &TestProxy, origin: &RecordingOrigin, raw: &str) -> (String, Vec<Recorded>) {
    let before = origin.requests().len();
    let resp = raw_until_close(proxy.addr, raw.as_bytes()).await;
    let got = origin.requests()[before..].to_vec();
    (resp, got)
}

fn post_head(port: u16, path: &str) -> String {
    format!("POST http://example.org:{port}{path} HTTP/1.1\r\nHost: example.org\r\n")
}

/// Framings socialgate must refuse: nothing may reach the origin, and the
/// client gets exactly one error.
#[tokio::test]
async fn ambiguous_or_malformed_request_framing_is_refused_and_nothing_reaches_the_origin() {
    let origin = RecordingOrigin::start().await;
    let proxy = TestProxy::start(BASIC_POLICY).await;
    let p = origin.port();
    let smuggled = "GET /smuggled HTTP/1.1\r\nHost: example.org\r\n\r\n";
    let cases: Vec<(&str, String)> = vec![
        ("two different Content-Lengths", format!("{}Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", post_head(p, "/a"))),
        ("Content-Length with a sign", format!("{}Content-Length: +5\r\n\r\nhello", post_head(p, "/a"))),
        ("Content-Length in hex", format!("{}Content-Length: 0x5\r\n\r\nhello", post_head(p, "/a"))),
        ("Content-Length with two numbers", format!("{}Content-Length: 5 5\r\n\r\nhello", post_head(p, "/a"))),
        ("negative Content-Length", format!("{}Content-Length: -1\r\n\r\n{smuggled}", post_head(p, "/a"))),
        ("a coding other than chunked last", format!("{}Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n{smuggled}", post_head(p, "/a"))),
        ("an unknown coding", format!("{}Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n{smuggled}", post_head(p, "/a"))),
        ("chunked twice in one field", format!("{}Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n{smuggled}", post_head(p, "/a"))),
        ("chunked in two fields", format!("{}Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}", post_head(p, "/a"))),
        ("a space before the colon", format!("{}Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n{smuggled}", post_head(p, "/a"))),
        ("a vertical tab before the value", format!("{}Transfer-Encoding:\x0bchunked\r\n\r\n0\r\n\r\n{smuggled}", post_head(p, "/a"))),
        ("obs-fold of Transfer-Encoding", format!("{}Transfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n{smuggled}", post_head(p, "/a"))),
        ("obs-fold of another field", format!("{}X-Folded: a\r\n b\r\nContent-Length: 0\r\n\r\n", post_head(p, "/a"))),
        ("a NUL in a field value", format!("{}X-Nul: a\0b\r\nContent-Length: 0\r\n\r\n", post_head(p, "/a"))),
        ("a bare CR in a field value", format!("{}X-Cr: a\rb\r\nContent-Length: 0\r\n\r\n", post_head(p, "/a"))),
        ("a control byte in the request line", format!("GET http://example.org:{p}/a\x01b HTTP/1.1\r\nHost: example.org\r\n\r\n")),
        ("an 80 KiB request line", format!("GET http://example.org:{p}/{} HTTP/1.1\r\nHost: example.org\r\n\r\n", "a".repeat(80 * 1024))),
        ("a chunk size that overflows 64 bits", format!("{}Transfer-Encoding: chunked\r\n\r\n1{}\r\nhello\r\n0\r\n\r\n", post_head(p, "/a"), "0".repeat(16))),
        ("a chunk size that is not hex", format!("{}Transfer-Encoding: chunked\r\n\r\n5g\r\nhello\r\n0\r\n\r\n", post_head(p, "/a"))),
        ("a chunk without its CRLF", format!("{}Transfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n{smuggled}", post_head(p, "/a"))),
    ];
    let mut tried = 0;
    for (what, raw) in &cases {
        let (resp, got) = send(&proxy, &origin, raw).await;
        let st = statuses(&resp);
        assert_eq!(st.len(), 1, "{what}: exactly one response: {resp:.300}");
        assert!(
            matches!(st[0], 400 | 414 | 431 | 501),
            "{what}: refused, got {}: {resp:.300}",
            st[0]
        );
        assert!(got.is_empty(), "{what}: the origin received {got:#?}");
        tried += 1;
    }
    assert_eq!(tried, cases.len());
    // Refused heads that hyper itself rejects leave no record; the ones
    // the handler refuses leave one each, all blaming the client.
    let text = std::fs::read_to_string(&proxy.log_path).unwrap_or_default();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(
            v["error"] == "client-protocol" || v["status"] == 400,
            "{v:#}"
        );
    }
}

/// Framings that are unusual but unambiguous: forwarded exactly as framed,
/// and a request hidden in a body never becomes a request.
#[tokio::test]
async fn unambiguous_bodies_are_forwarded_as_framed_and_never_split_into_requests() {
    let origin = RecordingOrigin::start().await;
    let proxy = TestProxy::start(BASIC_POLICY).await;
    let p = origin.port();
    let smuggled = "GET /smuggled HTTP/1.1\r\nHost: example.org\r\n\r\n";

    // CL.TE: hyper takes the chunked framing, drops the length, and closes
    // the connection after the response.
    let raw = format!(
        "{}Content-Length: {}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}",
        post_head(p, "/clte"),
        5 + smuggled.len()
    );
    let (resp, got) = send(&proxy, &origin, &raw).await;
    assert!(
        got.iter().all(|r| r.target != "/smuggled"),
        "CL.TE: {got:#?}"
    );
    assert!(got.len() <= 1, "CL.TE: {got:#?}");
    if let Some(r) = got.first() {
        assert_eq!(r.target, "/clte");
        assert!(r.body.is_empty(), "CL.TE: the chunked body is empty");
        assert!(
            !r.headers.iter().any(|(k, _)| k == "content-length")
                || !r.headers.iter().any(|(k, _)| k == "transfer-encoding"),
            "CL.TE: both framings reached the origin: {r:#?}"
        );
    }
    assert_eq!(statuses(&resp).len(), 1, "CL.TE: {resp}");

    // TE.CL: the chunk holds what a length-trusting server would read as
    // a second request.
    let chunk = format!("{smuggled}xxxx");
    let raw = format!(
        "{}Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
        post_head(p, "/tecl"),
        chunk.len()
    );
    let (_, got) = send(&proxy, &origin, &raw).await;
    assert!(
        got.iter().all(|r| r.target != "/smuggled"),
        "TE.CL: {got:#?}"
    );
    if let Some(r) = got.first() {
        assert_eq!(
            r.body,
            chunk.as_bytes(),
            "TE.CL: the whole chunk is the body"
        );
    }

    // A chunked coding in capitals is still chunked.
    let raw = format!(
        "{}Transfer-Encoding: Chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        post_head(p, "/caps")
    );
    let (resp, got) = send(&proxy, &origin, &raw).await;
    assert_eq!(statuses(&resp), [200], "{resp}");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body, b"hello");

    // Leading zeros make a long but valid chunk size; the origin gets the
    // body re-framed by socialgate, not the client's chunk lines.
    let raw = format!(
        "{}Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n{}5\r\nhello\r\n0\r\n\r\n",
        post_head(p, "/zeros"),
        "0".repeat(100)
    );
    let (resp, got) = send(&proxy, &origin, &raw).await;
    assert_eq!(statuses(&resp), [200], "{resp}");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body, b"hello");

    // Identical repeated lengths (RFC 9110 §8.6 allows treating them as one).
    let raw = format!(
        "{}Content-Length: 5, 5\r\nConnection: close\r\n\r\nhello",
        post_head(p, "/cl-list")
    );
    let (resp, got) = send(&proxy, &origin, &raw).await;
    match statuses(&resp)[..] {
        [200] => {
            assert_eq!(got.len(), 1);
            assert_eq!(got[0].body, b"hello");
        }
        [400] => assert!(got.is_empty(), "{got:#?}"),
        ref other => panic!("repeated length: {other:?}: {resp}"),
    }

    // A body on GET and on HEAD travels with its request; a request inside
    // it stays body.
    for method in ["GET", "HEAD"] {
        let raw = format!(
            "{method} http://example.org:{p}/with-body HTTP/1.1\r\nHost: example.org\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{smuggled}",
            smuggled.len()
        );
        let (resp, got) = send(&proxy, &origin, &raw).await;
        assert_eq!(statuses(&resp), [200], "{method}: {resp}");
        assert_eq!(got.len(), 1, "{method}: {got:#?}");
        assert_eq!(got[0].method, method);
        assert_eq!(got[0].body, smuggled.as_bytes(), "{method}");
    }

    // Bare LF line endings (RFC 9112 §2.2 lets a recipient accept them):
    // one request, the right one.
    let raw =
        format!("GET http://example.org:{p}/lf HTTP/1.1\nHost: example.org\nConnection: close\n\n");
    let (_, got) = send(&proxy, &origin, &raw).await;
    assert!(
        got.len() <= 1 && got.iter().all(|r| r.target == "/lf"),
        "{got:#?}"
    );
}

#[tokio::test]
async fn pipelined_requests_behind_a_body_arrive_in_order_and_whole() {
    let origin = RecordingOrigin::start().await;
    let proxy = TestProxy::start(BASIC_POLICY).await;
    let p = origin.port();
    let raw = format!(
        "{}Content-Length: 5\r\n\r\nhello\
         {}Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n\
         GET http://example.org:{p}/third HTTP/1.1\r\nHost: example.org\r\nConnection: close\r\n\r\n",
        post_head(p, "/first"),
        post_head(p, "/second"),
    );
    let (resp, got) = send(&proxy, &origin, &raw).await;
    assert_eq!(statuses(&resp), [200, 200, 200], "{resp}");
    let targets: Vec<&str> = got.iter().map(|r| r.target.as_str()).collect();
    assert_eq!(targets, ["/first", "/second", "/third"]);
    assert_eq!(got[0].body, b"hello");
    assert_eq!(got[1].body, b"abc");
    // Each answer is the origin's answer to that request, in order.
    let bodies: Vec<&str> = resp
        .match_indices("ok ")
        .map(|(i, _)| &resp[i..i + 4])
        .collect();
    assert_eq!(bodies.len(), 3, "{resp}");
    proxy.exactly_log_lines(3).await;
}

#[tokio::test]
async fn the_unread_body_of_a_refused_request_is_never_read_as_a_request() {
    let origin = RecordingOrigin::start().await;
    let proxy = TestProxy::start(BASIC_POLICY).await;
    let p = origin.port();
    let hidden =
        format!("GET http://example.org:{p}/smuggled HTTP/1.1\r\nHost: example.org\r\n\r\n");
    // TikTok is blocked: refused before its body is read.
    let raw = format!(
        "POST http://www.tiktok.com/upload HTTP/1.1\r\nHost: www.tiktok.com\r\nContent-Length: {}\r\n\r\n{hidden}\
         GET http://example.org:{p}/after HTTP/1.1\r\nHost: example.org\r\nConnection: close\r\n\r\n",
        hidden.len()
    );
    let (resp, got) = send(&proxy, &origin, &raw).await;
    let st = statuses(&resp);
    assert_eq!(st.first(), Some(&403), "{resp}");
    assert!(got.iter().all(|r| r.target != "/smuggled"), "{got:#?}");
    // Either the connection closed after the refusal, or the real next
    // request was answered; never a third answer.
    assert!(st.len() <= 2, "{resp}");
    if st.len() == 2 {
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].target, "/after");
    }
}

/// An origin that answers the first request on each connection with
/// `first` and then stays silent (reading on).
async fn desync_origin(first: &str) -> RawOrigin {
    RawOrigin::replying(first.to_string(), After::Stall).await
}

/// Two requests, one after the other, on one client connection.
async fn two_on_one_connection(proxy: &TestProxy, first: &str, second: &str) -> (String, String) {
    let mut s = connect_from("127.0.0.1", proxy.addr).await;
    s.write_all(first.as_bytes()).await.unwrap();
    let a = read_head(&mut s).await;
    let len = a
        .to_ascii_lowercase()
        .lines()
        .find_map(|l| {
            l.strip_prefix("content-length:")
                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
        })
        .unwrap_or(0);
    let mut body = vec![0u8; if first.starts_with("HEAD") { 0 } else { len }];
    within(s.read_exact(&mut body)).await.unwrap();
    let a = format!("{a}{}", String::from_utf8_lossy(&body));
    s.write_all(second.as_bytes()).await.unwrap();
    let mut b = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(8), s.read_to_end(&mut b)).await;
    (a, String::from_utf8_lossy(&b).into_owned())
}

#[tokio::test]
async fn bytes_after_a_response_never_answer_the_next_request() {
    let smuggled = "HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled";
    let proxy = TestProxy::start_in(PolicyDir::new(BASIC_POLICY), |cfg| {
        cfg.proxy.upstream_timeout = std::time::Duration::from_secs(2);
    })
    .await;
    let cases = [
        (
            "extra bytes after a Content-Length body",
            "GET",
            format!("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok{smuggled}"),
        ),
        (
            "a body on a HEAD response",
            "HEAD",
            format!("HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\n{smuggled}"),
        ),
        (
            "a body on a 204",
            "GET",
            format!("HTTP/1.1 204 No Content\r\n\r\n{smuggled}"),
        ),
        (
            "a body on a 304",
            "GET",
            format!("HTTP/1.1 304 Not Modified\r\n\r\n{smuggled}"),
        ),
    ];
    for (what, method, first) in cases {
        let origin = desync_origin(&first).await;
        let p = origin.port();
        let req1 =
            format!("{method} http://example.org:{p}/one HTTP/1.1\r\nHost: example.org\r\n\r\n");
        let req2 = format!("GET http://example.org:{p}/two HTTP/1.1\r\nHost: example.org\r\nConnection: close\r\n\r\n");
        let (a, b) = two_on_one_connection(&proxy, &req1, &req2).await;
        assert!(!a.contains("smuggled"), "{what}: first answer: {a}");
        assert!(
            !b.contains("smuggled"),
            "{what}: the second request got the origin's extra bytes as its answer: {b}"
        );
        // The second request went out on a fresh upstream connection (the
        // origin answered it like a first one), or failed cleanly.
        let st = statuses(&b);
        assert_eq!(st.len(), 1, "{what}: {b}");
        assert!(matches!(st[0], 200 | 204 | 304 | 502 | 504), "{what}: {b}");
    }
}

#[tokio::test]
async fn malformed_response_framing_gets_502_never_a_relayed_guess() {
    let proxy = TestProxy::start(BASIC_POLICY).await;
    let cases = [
        (
            "two different Content-Lengths",
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nokk",
        ),
        (
            "a negative Content-Length",
            "HTTP/1.1 200 OK\r\nContent-Length: -2\r\n\r\nok",
        ),
        (
            "obs-fold in a field",
            "HTTP/1.1 200 OK\r\nX-Folded: a\r\n b\r\nContent-Length: 2\r\n\r\nok",
        ),
        (
            "a NUL in a field",
            "HTTP/1.1 200 OK\r\nX-Nul: a\0b\r\nContent-Length: 2\r\n\r\nok",
        ),
        (
            "a status that is not a number",
            "HTTP/1.1 2xx OK\r\nContent-Length: 2\r\n\r\nok",
        ),
        (
            "a chunk size that is not hex",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nok\r\n0\r\n\r\n",
        ),
    ];
    for (what, canned) in cases {
        let origin = RawOrigin::replying(canned, After::Close).await;
        let req = format!(
            "GET http://example.org:{}/ HTTP/1.1\r\nHost: example.org\r\nConnection: close\r\n\r\n",
            origin.port()
        );
        let resp = raw_until_close(proxy.addr, req.as_bytes()).await;
        let st = statuses(&resp);
        // A bad chunk shows only after the head went out: the body is cut.
        if what.contains("chunk") {
            assert!(!resp.contains("\r\n\r\nok"), "{what}: {resp}");
            continue;
        }
        assert_eq!(st, [502], "{what}: {resp}");
        assert!(resp.contains("upstream-protocol"), "{what}: {resp}");
    }
}
