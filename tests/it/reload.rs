//! Hot reload (file change, SIGHUP, under traffic, broken policy, open
//! tunnels re-checked) and graceful shutdown (in-process and SIGTERM).

use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

/// BASIC_POLICY plus a rule that blocks LinkedIn.
fn blocking_linkedin() -> String {
    format!(
        "{BASIC_POLICY}  - id: no-linkedin\n    groups: [staff]\n    platforms: [linkedin]\n    action: block\n"
    )
}

#[tokio::test]
async fn applies_a_changed_policy_file_without_a_restart() {
    let origin = Origin::start().await;
    let proxy = TestProxy::start(BASIC_POLICY).await;
    let client = proxy.client();
    let url = format!("http://www.linkedin.com:{}/hello", origin.port());
    assert_eq!(within(client.get(&url).send()).await.unwrap().status(), 200);
    proxy.policy.write("policy.yaml", &blocking_linkedin());
    proxy.wait_for_generation(1).await;
    let resp = within(client.get(&url).send()).await.unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(resp.headers()["x-socialgate-rule"], "no-linkedin");
    assert_eq!(proxy.app().policy().stats.ok.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn keeps_the_old_policy_when_the_new_one_is_broken() {
    let origin = Origin::start().await;
    let proxy = TestProxy::start(BASIC_POLICY).await;
    let handle = proxy.app().policy().clone();
    let hash = handle.load().source.hash.clone();
    // No wait for the watcher: App::start fingerprints the directory before
    // loading it, so a write from here on is a change on its first tick.
    proxy.policy.write(
        "policy.yaml",
        "version: 1\nrules: [\n  - id: broken\n    action: : block\n",
    );
    eventually("the broken policy is refused", || {
        handle.stats.failed.load(Ordering::Relaxed) > 0
    })
    .await;
    assert_eq!(handle.generation(), 0, "nothing was swapped in");
    assert_eq!(handle.load().source.hash, hash);
    let client = proxy.client();
    let resp = within(client.get("http://www.tiktok.com/").send())
        .await
        .unwrap();
    assert_eq!(resp.status(), 403, "the old policy still blocks TikTok");
    let resp = within(
        client
            .get(format!("http://example.org:{}/hello", origin.port()))
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200, "and still serves everything else");
    // Fixing the file is picked up again.
    proxy.policy.write("policy.yaml", &blocking_linkedin());
    proxy.wait_for_generation(1).await;
    assert!(handle.stats.failed.load(Ordering::Relaxed) >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_under_traffic_without_failing_a_request() {
    let origin = Origin::start().await;
    let proxy = TestProxy::start(BASIC_POLICY).await;
    let url = format!("http://example.org:{}/hello", origin.port());
    // Workers send requests back to back until told to stop; `served`
    // counts the requests answered so far, so each reload below can wait
    // for traffic to have flowed since the previous one.
    let (served, mut progress) = tokio::sync::watch::channel(0usize);
    let served = std::sync::Arc::new(served);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let client = proxy.client();
        let url = url.clone();
        let served = served.clone();
        let stop = stop.clone();
        workers.push(tokio::spawn(async move {
            let mut ok = 0;
            while !stop.load(Ordering::SeqCst) {
                let resp = client
                    .get(&url)
                    .send()
                    .await
                    .expect("request failed during reload");
                assert_eq!(resp.status(), 200);
                assert_eq!(resp.text().await.unwrap(), "hello from origin");
                ok += 1;
                served.send_modify(|n| *n += 1);
            }
            ok
        }));
    }
    for i in 1..=4u64 {
        let floor = 20 * i as usize;
        within(progress.wait_for(|n| *n >= floor)).await.unwrap();
        // Each revision has another size: the watcher compares names, sizes
        // and mtimes, and two same-size writes within one mtime tick look equal.
        let policy = format!("{BASIC_POLICY}\n# revision{}\n", "!".repeat(i as usize));
        proxy.policy.write("policy.yaml", &policy);
        proxy.wait_for_generation(i).await;
    }
    // And more traffic under the last revision.
    within(progress.wait_for(|n| *n >= 100)).await.unwrap();
    stop.store(true, Ordering::SeqCst);
    let mut total = 0;
    for w in workers {
        total += within(w).await.unwrap();
    }
    assert!(total >= 100, "{total}");
    assert_eq!(proxy.app().policy().stats.ok.load(Ordering::Relaxed), 4);
    assert_eq!(proxy.app().policy().stats.failed.load(Ordering::Relaxed), 0);
    let log = proxy.exactly_log_lines(total).await;
    assert!(log.iter().all(|l| l["status"] == 200), "{log:#?}");
}

#[tokio::test]
async fn closes_an_open_tunnel_when_a_reload_refuses_it() {
    let origin = Origin::start().await;
    let proxy = TestProxy::start(BASIC_POLICY).await;
    let mut s = within(tokio::net::TcpStream::connect(proxy.addr))
        .await
        .unwrap();
    let authority = format!("www.linkedin.com:{}", origin.port());
    s.write_all(format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    assert_eq!(status_of(&read_head(&mut s).await), 200);
    s.write_all(format!("GET /hello HTTP/1.1\r\nHost: {authority}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let head = read_head(&mut s).await;
    assert_eq!(status_of(&head), 200, "the tunnel works: {head}");
    let mut body = [0u8; 17];
    within(s.read_exact(&mut body)).await.unwrap();
    assert_eq!(&body, b"hello from origin");

    proxy.policy.write("policy.yaml", &blocking_linkedin());
    proxy.wait_for_generation(1).await;
    let mut rest = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut rest))
        .await
        .expect("the tunnel is closed after the reload");
    assert!(n.is_err() || rest.is_empty(), "{rest:?}");
    let log = proxy.exactly_log_lines(1).await;
    assert_eq!(log[0]["kind"], "tunnel");
    assert_eq!(log[0]["error"], "tunnel-refused-after-reload");
    assert_eq!(log[0]["rule"], "no-linkedin");
}

#[tokio::test]
async fn keeps_an_open_tunnel_that_the_new_policy_still_allows() {
    let origin = Origin::start().await;
    let proxy = TestProxy::start(BASIC_POLICY).await;
    let mut s = within(tokio::net::TcpStream::connect(proxy.addr))
        .await
        .unwrap();
    let authority = format!("www.youtube.com:{}", origin.port());
    s.write_all(format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    assert_eq!(status_of(&read_head(&mut s).await), 200);
    proxy.policy.write("policy.yaml", &blocking_linkedin());
    proxy.wait_for_generation(1).await;
    s.write_all(format!("GET /hello HTTP/1.1\r\nHost: {authority}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    assert_eq!(
        status_of(&read_head(&mut s).await),
        200,
        "YouTube is still allowed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finishes_a_streaming_response_during_graceful_shutdown() {
    let origin = Origin::start().await;
    let proxy = TestProxy::start(BASIC_POLICY).await;
    let addr = proxy.addr;
    let resp = within(
        proxy
            .client()
            .get(format!("http://example.org:{}/stream", origin.port()))
            .send(),
    )
    .await
    .unwrap();
    let mut body = resp.bytes_stream();
    let mut got = within(body.next()).await.unwrap().unwrap().to_vec();
    let stopping = tokio::spawn(proxy.stop());
    // Shutdown begins by closing the listener: wait until connecting fails.
    eventually_async("the listener is closed", || async {
        tokio::net::TcpStream::connect(addr).await.is_err()
    })
    .await;
    while let Some(chunk) = within(body.next()).await {
        got.extend_from_slice(&chunk.expect("the in-flight response is not cut"));
    }
    assert_eq!(String::from_utf8(got).unwrap().lines().count(), 5);
    let text = within(stopping).await.unwrap();
    assert_eq!(
        text.lines().count(),
        1,
        "the drained request was logged: {text}"
    );
    assert!(!text.contains("client-closed"), "{text}");
}

#[tokio::test]
async fn reloads_the_running_binary_on_sighup() {
    let origin = Origin::start().await;
    let dir = PolicyDir::new(BASIC_POLICY);
    let bin = Spawned::run(
        dir.path(),
        &[
            "--watch-interval-ms",
            "0",
            "--access-log",
            "off",
            "--resolve",
            "www.linkedin.com=127.0.0.1",
        ],
    )
    .await;
    let client = bin.client();
    let url = format!("http://www.linkedin.com:{}/hello", origin.port());
    assert_eq!(within(client.get(&url).send()).await.unwrap().status(), 200);
    // The handler is installed before "listening" is reported.
    bin.wait_until_catching(libc::SIGHUP).await;
    dir.write("policy.yaml", &blocking_linkedin());
    assert_eq!(
        within(client.get(&url).send()).await.unwrap().status(),
        200,
        "file watching is off: the write alone changes nothing"
    );
    bin.signal(libc::SIGHUP);
    let reloads = |text: &str| {
        text.lines()
            .filter(|l| l.contains("policy reloaded"))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    eventually("SIGHUP reloaded the policy", || {
        !reloads(&bin.stderr()).is_empty()
    })
    .await;
    let stderr = bin.stderr();
    let reloaded = reloads(&stderr);
    assert_eq!(reloaded.len(), 1, "one reload, by the signal:\n{stderr}");
    assert!(reloaded[0].contains("sighup"), "{}", reloaded[0]);
    assert_eq!(
        within(client.get(&url).send()).await.unwrap().status(),
        403,
        "SIGHUP reloaded the policy; stderr:\n{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drains_in_flight_requests_and_exits_cleanly_on_sigterm() {
    let origin = Origin::start().await;
    let dir = PolicyDir::new(BASIC_POLICY);
    let mut bin = Spawned::run(
        dir.path(),
        &[
            "--access-log",
            "off",
            "--resolve",
            "example.org=127.0.0.1",
            "--drain-timeout",
            "5",
        ],
    )
    .await;
    let resp = within(
        bin.client()
            .get(format!("http://example.org:{}/stream", origin.port()))
            .send(),
    )
    .await
    .unwrap();
    let mut body = resp.bytes_stream();
    let mut got = within(body.next()).await.unwrap().unwrap().to_vec();
    // `run` registers its SIGTERM handler before it starts listening; make
    // sure, since the signal would otherwise kill it outright.
    bin.wait_until_catching(libc::SIGTERM).await;
    bin.signal(libc::SIGTERM);
    let mut cut = None;
    while let Some(chunk) = within(body.next()).await {
        match chunk {
            Ok(c) => got.extend_from_slice(&c),
            Err(e) => {
                cut = Some(e);
                break;
            }
        }
    }
    let status = within(bin.child.wait()).await.unwrap();
    assert!(
        cut.is_none(),
        "the in-flight response was cut ({cut:?}); exit {status:?}"
    );
    assert_eq!(String::from_utf8(got).unwrap().lines().count(), 5);
    assert!(status.success(), "{status:?}; stderr:\n{}", bin.stderr());
}

#[tokio::test]
async fn a_sighup_right_after_start_reloads_instead_of_killing_the_process() {
    let dir = PolicyDir::new(BASIC_POLICY);
    let mut bin = Spawned::run(
        dir.path(),
        &["--watch-interval-ms", "0", "--access-log", "off"],
    )
    .await;
    // No wait for the handler: "listening" means it is installed.
    bin.signal(libc::SIGHUP);
    let line = bin.stderr_line("policy reloaded").await;
    assert!(line.contains("sighup"), "{line}");
    assert!(
        bin.child.try_wait().unwrap().is_none(),
        "SIGHUP killed socialgate:\n{}",
        bin.stderr()
    );
}
