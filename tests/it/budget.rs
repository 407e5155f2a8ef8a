//! Daily budgets end to end: `explain --spent`, policy tests with `spent:`,
//! and (below) a running proxy counting time and volume with real clients,
//! closing what is open when a budget runs out, keeping spent budgets over
//! a restart, and replicas sharing one budget through a real `redis-server`.

use crate::support::*;

/// Video 1 minute a day, LinkedIn 1 MB a day (then a warning), both per
/// person in Berlin days.
const POLICY: &str = r#"
version: 1
settings:
  timezone: Europe/Berlin
  organization: Test Corp
  help: Ask the test desk.
destinations:
  allow: [127.0.0.0/8]
tunnels:
  ports: [any]
  sni_timeout_ms: 2000
groups:
  staff:
    networks: [127.0.0.0/8]
rules:
  - id: video-1m
    groups: [staff]
    platforms: [tiktok, youtube]
    action: block
    budget: {minutes: 1}
    message: One minute of video a day.
  - id: linkedin-1mb
    groups: [staff]
    platforms: [linkedin]
    action: warn
    budget: {megabytes: 1}
"#;

#[tokio::test]
async fn explain_and_policy_tests_say_what_a_spent_budget_decides() {
    let dir = PolicyDir::new(POLICY);
    let policy = dir.path().to_str().unwrap();
    let explain = |url: &'static str, extra: &'static [&'static str]| async move {
        let mut args = vec![
            "explain",
            "--policy",
            policy,
            "--client",
            "127.0.0.1",
            "--no-resolve",
            "--at",
            "2026-11-25T10:00+01:00",
        ];
        args.extend_from_slice(extra);
        args.push(url);
        socialgate(&args).await
    };
    let (code, out, err) = explain("http://www.tiktok.com/", &[]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("decision: allow (enforce) by video-1m"),
        "{out}"
    );
    assert!(out.contains("stage:budget"), "{out}");
    assert!(
        out.contains("1 minute left (assumed nothing spent today"),
        "{out}"
    );
    assert!(out.contains("renews 2026-11-26 00:00 CET"), "{out}");
    let (code, out, _) = explain("https://www.youtube.com/", &["--spent", "1m"]).await;
    assert_eq!(code, 0);
    assert!(
        out.contains(
            "decision: block (enforce) by video-1m, reason budget-exhausted, stage budget"
        ),
        "{out}"
    );
    assert!(
        out.contains("used up, so the rule's action applies (block)"),
        "{out}"
    );
    // A volume budget that runs out warns (and cannot warn in a tunnel).
    let (_, out, _) = explain("http://www.linkedin.com/", &["--spent", "900KB"]).await;
    assert!(
        out.contains("decision: allow (enforce) by linkedin-1mb"),
        "{out}"
    );
    assert!(out.contains("0.1 MB left"), "{out}");
    let (_, out, _) = explain("http://www.linkedin.com/", &["--spent", "2m,1MB"]).await;
    assert!(
        out.contains("decision: warn (enforce) by linkedin-1mb, reason budget-exhausted"),
        "{out}"
    );
    assert!(
        out.contains("warning:  shown until the person continues"),
        "{out}"
    );
    // A spent amount that cannot be read says how to write it.
    let (code, _, err) = explain("http://www.tiktok.com/", &["--spent", "lots"]).await;
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--spent") && err.contains("25m") && err.contains("300MB"),
        "{err}"
    );

    dir.write(
        "tests.yaml",
        r#"tests:
  - {name: fresh, client: 127.0.0.1, url: "http://www.tiktok.com/", at: "2026-11-25T10:00:00+01:00", expect: {action: allow, rule: video-1m}}
  - {name: spent, client: 127.0.0.1, url: "https://www.tiktok.com/", spent: 1m, at: "2026-11-25T10:00:00+01:00", expect: {action: block, rule: video-1m, reason: budget-exhausted}}
  - {name: volume, client: 127.0.0.1, url: "http://www.linkedin.com/", spent: "1MB", expect: {action: warn, reason: budget-exhausted}}
"#,
    );
    let (code, out, err) = socialgate(&["test", policy]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("3 passed, 0 failed"), "{out}");
    dir.write(
        "tests.yaml",
        "tests:\n  - {name: bad, client: 127.0.0.1, url: \"http://www.tiktok.com/\", spent: a while, expect: {action: allow}}\n",
    );
    let (code, out, err) = socialgate(&["check", policy]).await;
    assert_eq!(code, 2, "{out}");
    assert!(err.contains("tests[0].spent"), "{err}");
    assert!(err.contains("spent: 25m"), "{err}");
}

/// A clock reading 10:00:10 in Berlin on Wednesday 25 November 2026, so a
/// test has most of a minute before the minute turns by itself.
fn ten_in_the_morning() -> socialgate::proxy::Clock {
    let at: jiff::Timestamp = "2026-11-25T10:00:10+01:00".parse().unwrap();
    socialgate::proxy::Clock::with_offset(at.duration_since(jiff::Timestamp::now()))
}

async fn start(policy: &str) -> TestProxy {
    start_in(PolicyDir::new(policy)).await
}

async fn start_in(dir: PolicyDir) -> TestProxy {
    TestProxy::start_in(dir, |cfg| cfg.proxy.clock = ten_in_the_morning()).await
}

/// A browser through `proxy` from `from`.
fn browser(proxy: &TestProxy, from: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .proxy(reqwest::Proxy::all(proxy.url()).unwrap())
        .local_address(Some(from.parse().unwrap()))
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .unwrap()
}

/// A page load, as Chromium sends it.
async fn navigate(c: &reqwest::Client, url: &str) -> reqwest::Response {
    c.get(url)
        .header("Sec-Fetch-Mode", "navigate")
        .header("Sec-Fetch-Dest", "document")
        .header("Accept", "text/html,application/xhtml+xml,*/*;q=0.8")
        .send()
        .await
        .unwrap()
}

fn remaining(r: &reqwest::Response) -> String {
    r.headers()
        .get("x-socialgate-budget-remaining")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

/// One series of `proxy`'s metrics, by name and labels (0 when absent).
fn metric(proxy: &TestProxy, name: &str, labels: &[(&str, &str)]) -> u64 {
    let text = proxy.app().metrics.render(&proxy.app().state.gauges, None);
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0)
}

/// Every line checked against the schema docs/access-log.md documents.
fn documented(lines: &[serde_json::Value]) {
    let schema = crate::observability::documented_schema();
    for l in lines {
        schema.check(l, &["video-1m", "linkedin-1mb", "video-volume"]);
    }
}

#[tokio::test]
async fn a_one_minute_budget_allows_a_minute_of_use_then_refuses_and_says_when_it_renews() {
    let origin = Origin::start().await;
    let proxy = start(POLICY).await;
    let c = browser(&proxy, "127.0.0.1");
    let page = format!("http://www.tiktok.com:{}/hello", origin.port());

    // Within the first minute: allowed, and told what is left.
    for _ in 0..3 {
        let r = navigate(&c, &page).await;
        assert_eq!(r.status(), 200);
        assert_eq!(remaining(&r), "minutes=1; renews=2026-11-26T00:00:00+01:00");
        assert_eq!(r.text().await.unwrap(), "hello from origin");
    }
    // The minute is over: the budget is spent, on every platform of the rule.
    proxy
        .app()
        .state
        .config
        .clock
        .advance(std::time::Duration::from_secs(60));
    let r = navigate(
        &c,
        &format!("http://www.youtube.com:{}/hello", origin.port()),
    )
    .await;
    assert_eq!(r.status(), 403);
    assert_eq!(r.headers()["x-socialgate-reason"], "budget-exhausted");
    assert_eq!(r.headers()["x-socialgate-rule"], "video-1m");
    assert_eq!(remaining(&r), "minutes=0; renews=2026-11-26T00:00:00+01:00");
    let body = r.text().await.unwrap();
    for text in [
        "One minute of video a day.",
        "Your daily budget of 1 minute under this rule is used up.",
        "It renews at 00:00 on Thursday, 26 November (Europe/Berlin).",
    ] {
        assert!(body.contains(text), "{text:?} missing from {body}");
    }
    // An API call gets the same facts as JSON.
    let r = c
        .get(&page)
        .header("Accept", "application/json")
        .header("Sec-Fetch-Mode", "cors")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let json: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert_eq!(json["reason"], "budget-exhausted");
    assert_eq!(json["budget"]["limit"], "1 minute");
    assert_eq!(json["budget"]["renews"], "2026-11-26T00:00:00+01:00");
    // Another person has their own budget.
    let other = browser(&proxy, "127.0.0.2");
    assert_eq!(navigate(&other, &page).await.status(), 200);

    let lines = proxy.exactly_log_lines(6).await;
    documented(&lines);
    let budget: Vec<&str> = lines
        .iter()
        .map(|l| l["budget"].as_str().unwrap())
        .collect();
    assert_eq!(
        budget,
        ["left", "left", "left", "exhausted", "exhausted", "left"]
    );
    assert_eq!(lines[3]["reason"], "budget-exhausted");
    assert_eq!(lines[3]["action"], "block");
    assert_eq!(lines[0]["reason"], "rule-matched");
    assert_eq!(lines[0]["action"], "allow");
    assert_eq!(
        metric(
            &proxy,
            "socialgate_budgets_exhausted_total",
            &[("rule", "video-1m")]
        ),
        1,
        "one person's budget ran out, once"
    );
}

#[tokio::test]
async fn an_open_tunnel_is_closed_and_recorded_when_its_budget_runs_out() {
    let tls = TlsOrigin::start(&["www.youtube.com"]).await;
    let proxy = start(POLICY).await;
    let c = proxy.tls_client(&tls);
    let url = format!("https://www.youtube.com:{}/hello", tls.port());
    // One tunnel, kept alive between requests.
    for _ in 0..2 {
        let r = c.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.unwrap(), "hello from origin");
    }
    assert_eq!(
        proxy
            .app()
            .state
            .gauges
            .tunnels
            .load(std::sync::atomic::Ordering::SeqCst),
        1
    );
    // A minute passes with the tunnel in use: it is closed at once, not
    // at the next poll.
    proxy
        .app()
        .state
        .config
        .clock
        .advance(std::time::Duration::from_secs(60));
    let lines = proxy.exactly_log_lines(1).await;
    documented(&lines);
    let t = &lines[0];
    assert_eq!(t["kind"], "tunnel");
    assert_eq!(t["error"], "tunnel-budget-exhausted");
    assert_eq!(t["reason"], "budget-exhausted");
    assert_eq!(t["action"], "block");
    assert_eq!(t["budget"], "exhausted");
    assert!(t["bytes_down"].as_u64().unwrap() > 0);
    // A new tunnel is refused.
    assert!(c.get(&url).send().await.is_err());
    let lines = proxy.exactly_log_lines(2).await;
    assert_eq!(lines[1]["status"], 403);
    assert_eq!(lines[1]["reason"], "budget-exhausted");
}

#[tokio::test]
async fn an_open_websocket_is_closed_when_its_budget_runs_out() {
    use futures_util::{SinkExt, StreamExt};
    let origin = Origin::start().await;
    let proxy = start(POLICY).await;
    // A WebSocket to TikTok through the proxy (plain HTTP upgrade).
    let mut stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    use tokio::io::AsyncWriteExt;
    let port = origin.port();
    stream
        .write_all(format!("GET http://www.tiktok.com:{port}/ws HTTP/1.1\r\nHost: www.tiktok.com:{port}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let head = read_head(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
        stream,
        tokio_tungstenite::tungstenite::protocol::Role::Client,
        None,
    )
    .await;
    ws.send("ping".into()).await.unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap().into_text().unwrap(),
        "ping"
    );
    // The minute turns with the WebSocket in use: it is closed, and so
    // YouTube is refused too.
    proxy
        .app()
        .state
        .config
        .clock
        .advance(std::time::Duration::from_secs(60));
    let r = navigate(
        &browser(&proxy, "127.0.0.1"),
        &format!("http://www.youtube.com:{port}/hello"),
    )
    .await;
    assert_eq!(r.status(), 403);
    within(async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) => break,
                Some(Ok(m)) if m.is_close() => break,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    let lines = proxy.exactly_log_lines(2).await;
    documented(&lines);
    let ws_line = lines.iter().find(|l| l["status"] == 101).unwrap();
    assert_eq!(ws_line["error"], "tunnel-budget-exhausted", "{ws_line}");
}

/// Video 1 MB a day, then refused.
const VOLUME: &str = r#"
version: 1
settings: {timezone: Europe/Berlin}
destinations: {allow: [127.0.0.0/8]}
tunnels: {ports: [any], sni_timeout_ms: 2000}
groups:
  staff: {networks: [127.0.0.0/8]}
rules:
  - {id: video-volume, groups: [staff], platforms: [tiktok, youtube], action: block, budget: {megabytes: 1}}
"#;

/// Opens a WebSocket to `host` through `proxy` (a plain-HTTP upgrade).
async fn websocket(
    proxy: &TestProxy,
    host: &str,
    port: u16,
) -> tokio_tungstenite::WebSocketStream<tokio::net::TcpStream> {
    use tokio::io::AsyncWriteExt;
    let mut stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    stream
        .write_all(format!("GET http://{host}:{port}/ws HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let head = read_head(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    tokio_tungstenite::WebSocketStream::from_raw_socket(
        stream,
        tokio_tungstenite::tungstenite::protocol::Role::Client,
        None,
    )
    .await
}

#[tokio::test]
async fn a_volume_budget_counts_both_ways_and_closes_what_is_open_when_another_connection_spends_it(
) {
    use futures_util::{SinkExt, StreamExt};
    let origin = Origin::start().await;
    let proxy = start(VOLUME).await;
    let port = origin.port();
    let c = browser(&proxy, "127.0.0.1");
    // A WebSocket to TikTok stays open meanwhile.
    let mut ws = websocket(&proxy, "www.tiktok.com", port).await;
    ws.send("ping".into()).await.unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap().into_text().unwrap(),
        "ping"
    );

    // 400 kB up, echoed back: 800 kB of the 1 MB.
    let r = c
        .post(format!("http://www.youtube.com:{port}/echo"))
        .body(vec![b'v'; 400_000])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        remaining(&r),
        "megabytes=1; renews=2026-11-26T00:00:00+01:00"
    );
    assert_eq!(r.bytes().await.unwrap().len(), 400_000);
    let r = navigate(&c, &format!("http://www.youtube.com:{port}/big")).await;
    assert_eq!(r.status(), 200);
    let left = remaining(&r);
    assert!(left.starts_with("megabytes=0.2;"), "{left}");
    assert_eq!(r.bytes().await.unwrap().len(), 1 << 20);
    // That download spent it: the WebSocket is closed now, not at its
    // next look.
    within(async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) => break,
                Some(Ok(m)) if m.is_close() => break,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    let r = navigate(&c, &format!("http://www.tiktok.com:{port}/hello")).await;
    assert_eq!(r.status(), 403);
    assert_eq!(r.headers()["x-socialgate-reason"], "budget-exhausted");
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("Your daily budget of 1 MB"));

    let lines = proxy.exactly_log_lines(4).await;
    documented(&lines);
    let ws_line = lines.iter().find(|l| l["status"] == 101).unwrap();
    assert_eq!(ws_line["error"], "tunnel-budget-exhausted", "{ws_line}");
    assert_eq!(ws_line["budget"], "exhausted");
    let echo = lines.iter().find(|l| l["method"] == "POST").unwrap();
    assert_eq!(echo["bytes_up"], 400_000);
    assert_eq!(echo["bytes_down"], 400_000);
}

#[tokio::test]
async fn a_tunnel_is_cut_when_the_bytes_it_moves_spend_the_volume_budget() {
    let tls = TlsOrigin::start(&["www.youtube.com"]).await;
    let proxy = start(VOLUME).await;
    let c = proxy.tls_client(&tls);
    // 1 MiB through a tunnel under a 1 MB budget: cut when the bytes reach
    // what was left, before the response is through.
    let got = async {
        let r = c
            .get(format!("https://www.youtube.com:{}/big", tls.port()))
            .send()
            .await?;
        r.bytes().await
    }
    .await;
    assert!(
        got.as_ref().map_or(true, |b| b.len() < 1 << 20),
        "the tunnel was not cut: {:?}",
        got.map(|b| b.len())
    );
    let lines = proxy.exactly_log_lines(1).await;
    documented(&lines);
    let t = &lines[0];
    assert_eq!(t["error"], "tunnel-budget-exhausted", "{t}");
    let moved = t["bytes_up"].as_u64().unwrap() + t["bytes_down"].as_u64().unwrap();
    assert!(
        (1_000_000..1_000_000 + 4 * 65_536).contains(&moved),
        "cut within a few buffers of the budget: {moved}"
    );
}

#[tokio::test]
async fn a_restart_keeps_what_was_spent_today() {
    let origin = Origin::start().await;
    let mut proxy = start(POLICY).await;
    let page = format!("http://www.tiktok.com:{}/hello", origin.port());
    assert_eq!(
        navigate(&browser(&proxy, "127.0.0.1"), &page)
            .await
            .status(),
        200
    );
    let clock = proxy.app().state.config.clock.clone();
    clock.advance(std::time::Duration::from_secs(60));
    let r = navigate(&browser(&proxy, "127.0.0.1"), &page).await;
    assert_eq!(r.status(), 403);
    // A clean stop saves the ledger; the file names no one.
    let dir = std::mem::replace(&mut proxy.policy, PolicyDir::new(POLICY));
    proxy.stop().await;
    let saved = std::fs::read_to_string(dir.path().join("budgets.json")).unwrap();
    assert!(!saved.contains("127.0.0.1"), "{saved}");
    // Started again, at the same moment: still spent.
    let again = TestProxy::start_in(dir, move |cfg| cfg.proxy.clock = clock).await;
    let r = navigate(&browser(&again, "127.0.0.1"), &page).await;
    assert_eq!(r.status(), 403);
    assert_eq!(r.headers()["x-socialgate-reason"], "budget-exhausted");
    // Someone else was never counted.
    assert_eq!(
        navigate(&browser(&again, "127.0.0.2"), &page)
            .await
            .status(),
        200
    );
}

/// Video 2 minutes a day, shared by replicas through `redis`.
fn shared(redis: &RedisServer) -> String {
    format!(
        r#"
version: 1
settings: {{timezone: Europe/Berlin}}
destinations: {{allow: [127.0.0.0/8]}}
groups:
  staff: {{networks: [127.0.0.0/8]}}
rules:
  - {{id: video-2m, groups: [staff], platforms: [tiktok, youtube], action: block, budget: {{minutes: 2}}}}
state:
  redis: "{}"
"#,
        redis.url()
    )
}

/// Minutes this replica knows other replicas (or itself, read back) wrote
/// to Redis, over every entry.
fn minutes_in_redis(proxy: &TestProxy) -> u32 {
    let mut n = 0;
    proxy
        .app()
        .state
        .budgets
        .ledger
        .for_each(|_, e| n += e.shared.as_ref().map_or(0, |s| s.remote.count()));
    n
}

/// A replica sharing `key` (the pseudonym key) and `clock` with others.
async fn replica(
    policy: &str,
    key: &std::path::Path,
    clock: &socialgate::proxy::Clock,
) -> TestProxy {
    let (key, clock) = (key.to_path_buf(), clock.clone());
    TestProxy::start_in(PolicyDir::new(policy), move |cfg| {
        cfg.pseudonym_key = key;
        cfg.proxy.clock = clock;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_one_budget_through_redis_and_never_count_a_minute_twice() {
    let Some(redis) = RedisServer::start("two_replicas_share_one_budget_through_redis").await
    else {
        return;
    };
    let origin = Origin::start().await;
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("pseudonym.key");
    let clock = ten_in_the_morning();
    let a = replica(&shared(&redis), &key, &clock).await;
    let b = replica(&shared(&redis), &key, &clock).await;
    let page = format!("http://www.tiktok.com:{}/hello", origin.port());
    let minute = std::time::Duration::from_secs(60);
    let (alice_a, alice_b) = (browser(&a, "127.0.0.1"), browser(&b, "127.0.0.1"));
    let bob_a = browser(&a, "127.0.0.2");

    // 10:00: Alice uses both replicas, Bob only A.
    assert_eq!(navigate(&alice_a, &page).await.status(), 200);
    assert_eq!(navigate(&alice_b, &page).await.status(), 200);
    assert_eq!(navigate(&bob_a, &page).await.status(), 200);
    // Both replicas wrote minute 10:00 of Alice; read back, it is one.
    eventually("B reads Alice's and Bob's minutes from Redis", || {
        minutes_in_redis(&b) == 1
    })
    .await;
    eventually("A reads both back", || minutes_in_redis(&a) == 2).await;

    // 10:01: one minute spent each, not two: still allowed everywhere.
    clock.advance(minute);
    for c in [&alice_a, &alice_b, &bob_a] {
        let r = navigate(c, &page).await;
        assert_eq!(r.status(), 200);
        assert_eq!(remaining(&r), "minutes=1; renews=2026-11-26T00:00:00+01:00");
    }
    eventually("A has read every minute back", || minutes_in_redis(&a) == 4).await;

    // 10:02: two minutes spent. Both replicas refuse Alice; Bob, who never
    // used B, is refused there too once B has read his minutes (within a
    // second; never a Redis round trip on the request).
    clock.advance(minute);
    assert_eq!(navigate(&alice_a, &page).await.status(), 403);
    assert_eq!(navigate(&alice_b, &page).await.status(), 403);
    let bob_b = browser(&b, "127.0.0.2");
    eventually_async("B refuses Bob, who spent his budget through A", || async {
        navigate(&bob_b, &page).await.status() == 403
    })
    .await;
    eventually_async("B logs Bob's refusal", || async {
        b.log_lines(1).await.iter().any(|l| {
            l["client"] == "127.0.0.2"
                && l["reason"] == "budget-exhausted"
                && l["budget"] == "exhausted"
        })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_redis_is_down_budgets_fail_open_and_say_so_then_apply_again() {
    let Some(mut redis) = RedisServer::start("when_redis_is_down_budgets_fail_open").await else {
        return;
    };
    let origin = Origin::start().await;
    let keys = tempfile::tempdir().unwrap();
    let clock = ten_in_the_morning();
    let a = replica(&shared(&redis), &keys.path().join("pseudonym.key"), &clock).await;
    let page = format!("http://www.tiktok.com:{}/hello", origin.port());
    let c = browser(&a, "127.0.0.1");
    assert_eq!(navigate(&c, &page).await.status(), 200);
    clock.advance(std::time::Duration::from_secs(60));
    assert_eq!(navigate(&c, &page).await.status(), 200);
    clock.advance(std::time::Duration::from_secs(60));
    assert_eq!(navigate(&c, &page).await.status(), 403);
    let readyz = || async {
        let url = format!("http://{}/readyz", a.app().admin_addr.unwrap());
        let body = reqwest::get(url).await.unwrap().text().await.unwrap();
        serde_json::from_str::<serde_json::Value>(&body).unwrap()
    };
    assert_eq!(readyz().await["budgets"]["reachable"], true);

    redis.kill().await;
    eventually("a failed sync is counted", || {
        metric(
            &a,
            "socialgate_budget_store_errors_total",
            &[("op", "sync")],
        ) >= 1
    })
    .await;
    // Decided without the budget while Redis is away, and recorded so.
    let r = navigate(&c, &page).await;
    assert_eq!(r.status(), 200);
    let ready = readyz().await;
    assert_eq!(ready["ready"], true, "{ready}");
    assert_eq!(ready["budgets"]["reachable"], false, "{ready}");
    assert!(
        !ready["budgets"]["error"].as_str().unwrap().is_empty(),
        "{ready}"
    );
    eventually_async("the pass is logged budget: unavailable", || async {
        a.log_lines(4)
            .await
            .iter()
            .any(|l| l["budget"] == "unavailable")
    })
    .await;

    // Back: what was counted here still counts, and is written again.
    redis.restart().await;
    eventually_async("budgets apply again once Redis answers", || async {
        navigate(&c, &page).await.status() == 403
    })
    .await;
    eventually("the minutes counted here are in Redis again", || {
        minutes_in_redis(&a) >= 2
    })
    .await;
}
