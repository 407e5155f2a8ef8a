//! The proxy under steady keep-alive load: a hundred policy reloads (one of
//! them broken) without a failed request, and a graceful shutdown that
//! finishes what is in flight, refuses newcomers, cuts tunnels at the drain
//! deadline with a record each, and flushes the log. Each test prints its
//! counts (run with `--nocapture` to see them; docs/reliability.md quotes
//! them).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

/// BASIC_POLICY with a revision mark, so every reload is a new policy.
fn revision(n: usize) -> String {
    format!("{BASIC_POLICY}\n# revision {n}\n")
}

/// Compiles nowhere (a rule names a group that does not exist), and would
/// block the load's site if it were ever served.
const BROKEN: &str = r#"
version: 1
settings:
  timezone: Europe/Berlin
destinations:
  allow: [127.0.0.0/8]
groups:
  staff:
    networks: [127.0.0.0/8]
rules:
  - id: block-everything
    groups: [no-such-group]
    domains: [example.org]
    action: block
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_reloads_under_64_connections_fail_no_request_and_never_serve_a_broken_policy() {
    let origin = Origin::start().await;
    let proxy = TestProxy::start_in(PolicyDir::new(&revision(0)), |cfg| {
        // Reloads come from this test only.
        cfg.watch_interval = None;
    })
    .await;
    let handle = proxy.app().policy().clone();
    let url = format!("http://example.org:{}/hello", origin.port());
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicUsize::new(0));
    let client = reqwest::Client::builder()
        .proxy(reqwest::Proxy::all(proxy.url()).unwrap())
        .pool_max_idle_per_host(64)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut workers = Vec::new();
    for _ in 0..64 {
        let (client, url, stop, served) =
            (client.clone(), url.clone(), stop.clone(), served.clone());
        workers.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                match client.get(&url).send().await {
                    Ok(r) if r.status() == 200 => match r.text().await {
                        Ok(t) if t == "hello from origin" => {
                            served.fetch_add(1, Ordering::Relaxed);
                        }
                        other => failures.push(format!("body: {other:?}")),
                    },
                    Ok(r) => failures.push(format!("status {}", r.status())),
                    Err(e) => failures.push(format!("error {e}")),
                }
            }
            failures
        }));
    }
    let broken_at = 50;
    let mut hashes = std::collections::HashSet::new();
    for n in 1..=100 {
        // Some traffic under every revision.
        let floor = served.load(Ordering::Relaxed) + 16;
        eventually("requests are served between reloads", || {
            served.load(Ordering::Relaxed) >= floor
        })
        .await;
        if n == broken_at {
            proxy.policy.write("policy.yaml", BROKEN);
            let r = handle.reload_async("test").await;
            assert!(r.is_err(), "the broken policy was accepted");
        } else {
            proxy.policy.write("policy.yaml", &revision(n));
            let p = handle
                .reload_async("test")
                .await
                .expect("a valid revision reloads");
            hashes.insert(p.source.hash.clone());
        }
    }
    let floor = served.load(Ordering::Relaxed) + 64;
    eventually("traffic after the last reload", || {
        served.load(Ordering::Relaxed) >= floor
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let mut failures = Vec::new();
    for w in workers {
        failures.extend(within(w).await.unwrap());
    }
    let total = served.load(Ordering::Relaxed);
    eprintln!(
        "reload under load: 100 reloads (1 broken), 64 connections, {total} requests, {} failed",
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert_eq!(handle.stats.ok.load(Ordering::Relaxed), 99);
    assert_eq!(handle.stats.failed.load(Ordering::Relaxed), 1);
    assert_eq!(hashes.len(), 99, "every revision was a new policy");
    // Every request was decided and logged as allowed: the broken policy,
    // which blocks this site, never decided one.
    let log = proxy.exactly_log_lines(total).await;
    assert!(log
        .iter()
        .all(|l| l["status"] == 200 && l["action"] == "allow"));
    assert!(log.iter().all(|l| l["rule"] != "block-everything"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_shutdown_under_load_finishes_requests_refuses_newcomers_and_records_cut_tunnels(
) {
    let origin = Origin::start().await;
    let mut proxy = TestProxy::start_in(PolicyDir::new(BASIC_POLICY), |cfg| {
        cfg.drain = Duration::from_secs(2);
    })
    .await;
    let addr = proxy.addr;
    let p = origin.port();
    // 16 streaming responses in flight (5 chunks, 100 ms apart) ...
    let mut streams = Vec::new();
    for _ in 0..16 {
        let mut s = connect_from("127.0.0.1", addr).await;
        s.write_all(
            format!("GET http://example.org:{p}/stream HTTP/1.1\r\nHost: example.org\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
        streams.push(s);
    }
    // ... 4 tunnels with nothing to say ...
    let mut tunnels = Vec::new();
    for _ in 0..4 {
        let mut t = connect_from("127.0.0.1", addr).await;
        t.write_all(format!("CONNECT 127.0.0.1:{p} HTTP/1.1\r\n\r\n").as_bytes())
            .await
            .unwrap();
        assert_eq!(status_of(&read_head(&mut t).await), 200);
        tunnels.push(t);
    }
    // ... and 8 idle keep-alive connections that have been served once.
    let mut idle = Vec::new();
    for _ in 0..8 {
        let mut s = connect_from("127.0.0.1", addr).await;
        s.write_all(
            format!("GET http://example.org:{p}/hello HTTP/1.1\r\nHost: example.org\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
        assert_eq!(status_of(&read_response(&mut s).await), 200);
        idle.push(s);
    }
    // The streams are under way: each has its head.
    for s in &mut streams {
        assert_eq!(status_of(&read_head(s).await), 200);
    }

    let app = proxy.app.take().unwrap();
    let stopping = tokio::spawn(app.shutdown());
    // Newcomers are refused once the listener is gone.
    let refused = poll_until(Duration::from_secs(5), || {
        std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err()
    })
    .await;
    assert!(
        refused,
        "new connections were still accepted while draining"
    );

    // Every in-flight response finishes whole.
    let mut finished = 0;
    for s in &mut streams {
        let mut out = Vec::new();
        within(s.read_to_end(&mut out)).await.unwrap();
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("chunk-4"), "cut short: {text}");
        finished += 1;
    }
    // Idle connections close at once.
    for s in &mut idle {
        let mut b = [0u8; 1];
        assert_eq!(
            within(s.read(&mut b)).await.unwrap_or(0),
            0,
            "an idle connection stayed open"
        );
    }
    // Tunnels are cut at the drain deadline.
    for t in &mut tunnels {
        let mut b = [0u8; 1];
        let n = within(t.read(&mut b)).await.unwrap_or(0);
        assert_eq!(n, 0, "a tunnel outlived the drain");
    }
    let stopped = within(stopping).await.unwrap();
    eprintln!("shutdown under load: {stopped:?}; {finished} streams finished");
    assert!(stopped.deadline_hit);
    assert_eq!(stopped.tunnels_cut, 4);
    assert_eq!(stopped.log_dropped, 0);
    // The log holds everything, flushed: 8 + 16 requests, 4 tunnels.
    let text = std::fs::read_to_string(&proxy.log_path).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len() as u64, stopped.log_records, "{text}");
    assert_eq!(lines.len(), 28, "{text}");
    let cut: Vec<_> = lines.iter().filter(|l| l["kind"] == "tunnel").collect();
    assert_eq!(cut.len(), 4);
    assert!(cut.iter().all(|l| l["error"] == "shutdown"), "{cut:#?}");
    let streamed = lines.iter().filter(|l| l["path"] == "/stream").count();
    assert_eq!(streamed, 16);
    assert!(lines
        .iter()
        .filter(|l| l["kind"] == "request")
        .all(|l| l["status"] == 200 && l["error"].is_null()));
}
