//! Upstream faults against the real binary: an origin that resets in the
//! middle of a body, stalls before or during its response, sends garbage
//! or an oversized head, closes without answering, reads slowly or not at
//! all, and a name that does not exist. Each gets a clear 502 or 504 (or,
//! once the response has started, a cut body), exactly one access-log
//! record that blames the upstream, and afterwards the proxy's open file
//! descriptors are back to what they were before (read from
//! /proc/PID/fd), so no fault leaks a socket.

use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::support::*;

fn open_fds(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

fn records(log: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The binary with short upstream and body timeouts, `example.org` pinned
/// to 127.0.0.1, and the test's DNS server for everything else.
async fn binary(log: &Path, dns: &DnsServer) -> (Spawned, PolicyDir) {
    let policy = PolicyDir::new(BASIC_POLICY);
    let dns = dns.addr.to_string();
    let sg = Spawned::run(
        policy.path(),
        &[
            "--access-log",
            log.to_str().unwrap(),
            "--resolve",
            "example.org=127.0.0.1",
            "--dns-server",
            &dns,
            "--upstream-timeout",
            "1",
            "--body-idle-timeout",
            "1",
            "--connect-timeout",
            "2",
            "--watch-interval-ms",
            "0",
        ],
    )
    .await;
    (sg, policy)
}

/// One fault case: what the client sees, and the record it leaves.
struct Seen {
    response: String,
    record: serde_json::Value,
}

/// Runs `exchange` against the binary; waits for its one record and for
/// the descriptors to return to their count before it.
async fn case<F, Fut>(sg: &Spawned, log: &Path, what: &str, exchange: F) -> Seen
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = String>,
{
    eprintln!("fault case: {what}");
    let pid = sg.pid();
    let before_records = records(log).len();
    let baseline = open_fds(pid);
    let response = exchange().await;
    eventually(&format!("{what}: one record"), || {
        records(log).len() > before_records
    })
    .await;
    eventually(&format!("{what}: descriptors back to {baseline}"), || {
        open_fds(pid) <= baseline
    })
    .await;
    let all = records(log);
    assert_eq!(
        all.len(),
        before_records + 1,
        "{what}: exactly one record: {all:#?}"
    );
    Seen {
        response,
        record: all[before_records].clone(),
    }
}

/// A GET through the proxy at `addr` to the origin on `port`; what came back.
async fn fetch(addr: std::net::SocketAddr, port: u16) -> String {
    raw_until_close(addr, get(port).as_bytes()).await
}

fn get(port: u16) -> String {
    format!(
        "GET http://example.org:{port}/ HTTP/1.1\r\nHost: example.org\r\nConnection: close\r\n\r\n"
    )
}

fn error_header(resp: &str) -> Option<String> {
    resp.split("\r\n\r\n")
        .next()
        .unwrap_or("")
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("x-socialgate-error")
                .then(|| v.trim().to_string())
        })
}

/// Checks a fault answered by the proxy itself: `status`, the error label
/// in the header and in the one record, which blames the upstream.
fn answered(seen: &Seen, what: &str, status: u16, error: &str) {
    assert_eq!(
        status_of(&seen.response),
        status,
        "{what}: {}",
        seen.response
    );
    assert_eq!(
        error_header(&seen.response).as_deref(),
        Some(error),
        "{what}"
    );
    assert_eq!(seen.record["status"], status, "{what}: {:#}", seen.record);
    assert_eq!(seen.record["error"], error, "{what}: {:#}", seen.record);
    assert!(
        error.starts_with("upstream-"),
        "{what}: the upstream is blamed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_upstream_fault_gets_a_clear_answer_one_record_and_leaks_no_descriptor() {
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("access.log");
    let dns = DnsServer::start(&[("gone.socialgate.test", DnsAnswer::NxDomain(30))]).await;
    let (sg, _policy) = binary(&log, &dns).await;
    let addr = sg.addr;

    // A healthy exchange first, so the process has opened what it keeps.
    let origin = Origin::start().await;
    let warm = format!(
        "GET http://example.org:{}/hello HTTP/1.1\r\nHost: example.org\r\nConnection: close\r\n\r\n",
        origin.port()
    );
    let warm = raw_until_close(addr, warm.as_bytes()).await;
    assert_eq!(status_of(&warm), 200, "{warm}");
    eventually("the warm-up record", || records(&log).len() == 1).await;

    // The origin resets in the middle of the body: the head went out, so
    // the client sees a cut body; the record says the upstream broke it.
    let o = RawOrigin::replying(
        "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789",
        After::Reset,
    )
    .await;
    let seen = case(&sg, &log, "reset mid-body", || fetch(addr, o.port())).await;
    assert_eq!(status_of(&seen.response), 200);
    assert!(seen.response.ends_with("0123456789"), "{}", seen.response);
    assert_eq!(
        seen.record["error"], "upstream-protocol",
        "{:#}",
        seen.record
    );
    assert_eq!(seen.record["bytes_down"], 10);

    // Silent after reading the request: 504 after --upstream-timeout.
    let o = RawOrigin::replying("", After::Stall).await;
    let seen = case(&sg, &log, "stall before the head", || fetch(addr, o.port())).await;
    answered(&seen, "stall before the head", 504, "upstream-timeout");

    // Silent in the middle of the body: cut after --body-idle-timeout.
    let o = RawOrigin::replying(
        "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789",
        After::Stall,
    )
    .await;
    let seen = case(&sg, &log, "stall in the body", || fetch(addr, o.port())).await;
    assert_eq!(status_of(&seen.response), 200);
    assert_eq!(
        seen.record["error"], "upstream-timeout",
        "{:#}",
        seen.record
    );

    // Not HTTP at all.
    let o = RawOrigin::replying("SSH-2.0-OpenSSH_9.2\r\n\r\n", After::Close).await;
    let seen = case(&sg, &log, "garbage head", || fetch(addr, o.port())).await;
    answered(&seen, "garbage head", 502, "upstream-protocol");

    // A head far over --max-header-bytes.
    let mut big = String::from("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n");
    for i in 0..20 {
        big.push_str(&format!("x-filler-{i}: {}\r\n", "a".repeat(10_000)));
    }
    big.push_str("\r\nok");
    let o = RawOrigin::replying(big, After::Close).await;
    let seen = case(&sg, &log, "oversized head", || fetch(addr, o.port())).await;
    answered(&seen, "oversized head", 502, "upstream-protocol");

    // Closes without a word.
    let o = RawOrigin::replying("", After::Close).await;
    let seen = case(&sg, &log, "closed without answering", || {
        fetch(addr, o.port())
    })
    .await;
    answered(&seen, "closed without answering", 502, "upstream-protocol");

    // Nobody listens there.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let seen = case(&sg, &log, "connection refused", || fetch(addr, port)).await;
    answered(&seen, "connection refused", 502, "upstream-connect");

    // The name does not exist.
    let seen = case(&sg, &log, "no such name", || {
        raw_until_close(
            addr,
            b"GET http://gone.socialgate.test/ HTTP/1.1\r\nHost: gone.socialgate.test\r\nConnection: close\r\n\r\n",
        )
    })
    .await;
    answered(&seen, "no such name", 502, "upstream-resolve");

    // An origin that reads the request body slowly: back-pressure, not a
    // timeout, and every byte arrives.
    let slow = slow_reader(Some(Duration::from_millis(5))).await;
    let body = 256 * 1024;
    let seen = case(&sg, &log, "slow reader", || post(addr, slow, body)).await;
    assert_eq!(status_of(&seen.response), 200, "{}", seen.response);
    assert!(
        seen.response.ends_with(&format!("got {body}")),
        "{}",
        seen.response
    );
    assert_eq!(seen.record["bytes_up"], body);
    assert!(seen.record["error"].is_null(), "{:#}", seen.record);

    // An origin that stops reading: the request cannot finish; 504, and
    // the origin, not the client who was still sending, is blamed.
    let stuck = slow_reader(None).await;
    let seen = case(&sg, &log, "origin stops reading", || {
        post(addr, stuck, 8 << 20)
    })
    .await;
    answered(&seen, "origin stops reading", 504, "upstream-timeout");
}

/// An origin that reads a request body 8 KiB at a time, `pause` apart (or
/// stops reading after the head when `None`), then answers `got N`.
async fn slow_reader(pause: Option<Duration>) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut got = Vec::new();
                let mut buf = vec![0u8; 8192];
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let head_end = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                let head = String::from_utf8_lossy(&got[..head_end]).to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                let Some(pause) = pause else {
                    // Never read again; keep the socket until the peer goes.
                    let _ = s.readable().await;
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    return;
                };
                let mut seen = got.len() - head_end;
                while seen < len {
                    tokio::time::sleep(pause).await;
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen += n,
                    }
                }
                let body = format!("got {seen}");
                let _ = s
                    .write_all(format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).as_bytes())
                    .await;
            });
        }
    });
    port
}

/// POSTs `len` bytes to `port` through the proxy, writing and reading at
/// once; returns what came back.
async fn post(proxy: std::net::SocketAddr, port: u16, len: usize) -> String {
    let s = within(tokio::net::TcpStream::connect(proxy)).await.unwrap();
    let (mut rd, mut wr) = s.into_split();
    let head = format!(
        "POST http://example.org:{port}/upload HTTP/1.1\r\nHost: example.org\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
    );
    let writer = tokio::spawn(async move {
        wr.write_all(head.as_bytes()).await?;
        let chunk = vec![b'u'; 64 * 1024];
        let mut left = len;
        while left > 0 {
            let n = left.min(chunk.len());
            wr.write_all(&chunk[..n]).await?;
            left -= n;
        }
        Ok::<_, std::io::Error>(wr)
    });
    let mut out = Vec::new();
    within(rd.read_to_end(&mut out)).await.ok();
    writer.abort();
    String::from_utf8_lossy(&out).into_owned()
}
