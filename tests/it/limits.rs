//! Resource bounds, from the attacker's side: idle connections parked with
//! no buffers and served again, a head or body sent a byte at a time,
//! floods of headers and of pipelined requests, and the per-client
//! connection cap on both listeners.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

fn get(origin: &Origin, path: &str) -> String {
    format!(
        "GET http://example.org:{p}{path} HTTP/1.1\r\nHost: example.org:{p}\r\n\r\n",
        p = origin.port()
    )
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_parked_and_serves_its_next_request() {
    let origin = Origin::start().await;
    let proxy = TestProxy::start(BASIC_POLICY).await;
    let mut s = connect_from("127.0.0.1", proxy.addr).await;
    s.write_all(get(&origin, "/hello").as_bytes())
        .await
        .unwrap();
    let first = read_response(&mut s).await;
    assert_eq!(status_of(&first), 200, "{first}");
    // Quiet for a second: parked, its hyper buffers freed.
    let g = proxy.gauges();
    eventually("the idle connection is parked", || {
        g.parked.load(Ordering::SeqCst) == 1
    })
    .await;
    assert_eq!(g.connections.load(Ordering::SeqCst), 1, "still open");
    // The same connection serves the next request, and the one after.
    for _ in 0..2 {
        s.write_all(get(&origin, "/hello").as_bytes())
            .await
            .unwrap();
        let next = read_response(&mut s).await;
        assert_eq!(status_of(&next), 200, "{next}");
        assert!(next.ends_with("hello from origin"), "{next}");
    }
    assert_eq!(g.parked.load(Ordering::SeqCst), 0, "busy again");
    let log = proxy.exactly_log_lines(3).await;
    assert!(log.iter().all(|l| l["status"] == 200));
}

#[tokio::test]
async fn a_request_head_split_around_a_park_is_read_whole() {
    let origin = Origin::start().await;
    let proxy = TestProxy::start(BASIC_POLICY).await;
    let mut s = connect_from("127.0.0.1", proxy.addr).await;
    // The first request and the first half of the second, pipelined.
    let second = get(&origin, "/headers");
    let (a, b) = second.split_at(20);
    s.write_all(format!("{}{a}", get(&origin, "/hello")).as_bytes())
        .await
        .unwrap();
    let first = read_response(&mut s).await;
    assert_eq!(status_of(&first), 200, "{first}");
    // Quiet with half a head buffered: the connection is parked and
    // handed to a new server connection that starts with those bytes.
    let g = proxy.gauges();
    eventually("the connection was parked", || {
        g.parks.load(Ordering::SeqCst) >= 1
    })
    .await;
    s.write_all(b.as_bytes()).await.unwrap();
    let resp = read_response(&mut s).await;
    assert_eq!(status_of(&resp), 200, "{resp}");
    assert!(resp.contains("GET /headers HTTP/1.1"), "{resp}");
    proxy.exactly_log_lines(2).await;
}

#[tokio::test]
async fn a_head_sent_a_byte_at_a_time_is_cut_off_at_the_header_read_timeout() {
    let proxy = TestProxy::start_in(PolicyDir::new(BASIC_POLICY), |cfg| {
        cfg.proxy.header_read_timeout = Duration::from_secs(2);
    })
    .await;
    let mut s = connect_from("127.0.0.1", proxy.addr).await;
    let started = tokio::time::Instant::now();
    let head = b"GET http://example.org/ HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut closed = false;
    // One byte every 300 ms, never finishing the head (this pacing is the
    // attack, not a synchronisation).
    for byte in head.iter().cycle().take(200) {
        if s.write_all(&[*byte]).await.is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 512];
        match tokio::time::timeout(Duration::from_millis(300), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(_)) => {
                closed = true; // a 408 and then the close
                break;
            }
            Err(_) => {}
        }
    }
    let took = started.elapsed();
    assert!(closed, "the slow head was never cut off");
    // hyper's timer (2 s), at most restarted once by a park: under 5 s.
    assert!(took < Duration::from_secs(5), "cut off after {took:?}");
    assert!(
        took >= Duration::from_millis(1500),
        "cut off too early: {took:?}"
    );
    assert_eq!(proxy.events_recorded(), 0, "no request, no record");
}

#[tokio::test]
async fn a_flood_of_header_fields_gets_431_and_the_proxy_keeps_serving() {
    let origin = Origin::start().await;
    let proxy = TestProxy::start(BASIC_POLICY).await;
    let mut req = format!(
        "GET http://example.org:{}/hello HTTP/1.1\r\nHost: example.org\r\n",
        origin.port()
    );
    for i in 0..150 {
        req.push_str(&format!("x-flood-{i}: 1\r\n"));
    }
    req.push_str("\r\n");
    let resp = raw_until_close(proxy.addr, req.as_bytes()).await;
    assert_eq!(status_of(&resp), 431, "{resp}");
    assert_eq!(origin.connections(), 0, "nothing reached the origin");
    // 100 fields pass.
    let mut ok = format!(
        "GET http://example.org:{}/hello HTTP/1.1\r\nHost: example.org\r\nConnection: close\r\n",
        origin.port()
    );
    for i in 0..90 {
        ok.push_str(&format!("x-many-{i}: 1\r\n"));
    }
    ok.push_str("\r\n");
    let resp = raw_until_close(proxy.addr, ok.as_bytes()).await;
    assert_eq!(status_of(&resp), 200, "{resp}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_pipelined_requests_is_answered_in_order_with_one_record_each() {
    let origin = Origin::start().await;
    let proxy = TestProxy::start(BASIC_POLICY).await;
    const N: usize = 1000;
    let mut flood = String::new();
    for i in 0..N {
        flood.push_str(&format!(
            "GET http://example.org:{p}/headers?n={i} HTTP/1.1\r\nHost: example.org:{p}\r\n\r\n",
            p = origin.port()
        ));
    }
    let mut s = connect_from("127.0.0.1", proxy.addr).await;
    let (mut rd, mut wr) = s.split();
    // Written in one go while the answers are read: the proxy must apply
    // back-pressure, not buffer the flood or drop part of it.
    let write = async {
        wr.write_all(flood.as_bytes()).await.unwrap();
    };
    let read = async {
        let mut seen = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut text = String::new();
        while seen.len() < N {
            let n = rd.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed after {} answers", seen.len());
            text.push_str(&String::from_utf8_lossy(&buf[..n]));
            while let Some(at) = text.find("GET /headers?n=") {
                let rest = &text[at + 15..];
                let Some(end) = rest.find(' ') else { break };
                seen.push(rest[..end].parse::<usize>().unwrap());
                text = rest[end..].to_string();
            }
        }
        seen
    };
    let (_, seen) = within(async { tokio::join!(write, read) }).await;
    assert_eq!(seen, (0..N).collect::<Vec<_>>(), "in order, none lost");
    proxy.exactly_log_lines(N).await;
}

/// A proxy whose clients may each hold three connections.
async fn proxy_with_client_cap(tweak: impl FnOnce(&mut socialgate::app::AppConfig)) -> TestProxy {
    TestProxy::start_in(PolicyDir::new(BASIC_POLICY), |cfg| {
        cfg.proxy.max_connections_per_client = 3;
        tweak(cfg);
    })
    .await
}

#[tokio::test]
async fn one_client_over_its_connection_cap_gets_429_while_others_are_served() {
    let origin = Origin::start().await;
    let proxy = proxy_with_client_cap(|_| {}).await;
    // The noisy client holds three connections: two idle, one a tunnel.
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(connect_from("127.0.0.2", proxy.addr).await);
    }
    let mut tunnel = connect_from("127.0.0.2", proxy.addr).await;
    tunnel
        .write_all(format!("CONNECT 127.0.0.1:{} HTTP/1.1\r\n\r\n", origin.port()).as_bytes())
        .await
        .unwrap();
    assert_eq!(status_of(&read_head(&mut tunnel).await), 200);
    let slots = &proxy.app().state.client_slots;
    eventually("the three connections are counted", || {
        slots.open("127.0.0.2".parse().unwrap()) == 3
    })
    .await;
    // Its fourth is refused, with a reason it can read.
    let mut fourth = connect_from("127.0.0.2", proxy.addr).await;
    fourth
        .write_all(get(&origin, "/hello").as_bytes())
        .await
        .unwrap();
    let mut resp = String::new();
    within(fourth.read_to_string(&mut resp)).await.unwrap();
    assert_eq!(status_of(&resp), 429, "{resp}");
    assert!(
        resp.to_ascii_lowercase()
            .contains("x-socialgate-error: client-connection-limit"),
        "{resp}"
    );
    assert!(resp.contains("--max-connections-per-client"), "{resp}");
    // Another client is served meanwhile.
    let other = proxy.client_from("127.0.0.3");
    let r = within(
        other
            .get(format!("http://example.org:{}/hello", origin.port()))
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    // The tunnel ends: its slot comes back, and the client is served again.
    drop(tunnel);
    eventually("the tunnel's slot is free again", || {
        slots.open("127.0.0.2".parse().unwrap()) == 2
    })
    .await;
    let mut again = connect_from("127.0.0.2", proxy.addr).await;
    again
        .write_all(get(&origin, "/hello").as_bytes())
        .await
        .unwrap();
    assert_eq!(status_of(&read_response(&mut again).await), 200);
    let admin = proxy.app().admin_addr.unwrap();
    let metrics = within(reqwest::get(format!("http://{admin}/metrics")))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("socialgate_connections_refused_total{reason=\"client-limit\"} 1"),
        "{metrics}"
    );
    drop(held);
}
