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
async fn bytes_sent_in_the_same_write_as_the_connect_reach_the_origin_once() {
    let origin = Origin::start().await;
    let proxy = TestProxy::start(BASIC_POLICY).await;
    let mut s = connect_from("127.0.0.1", proxy.addr).await;
    // The CONNECT and the tunnel's first request in one write: the server
    // connection reads both, and must hand the second to the tunnel (kept
    // in a buffer of its own, not a view of the server's read buffer).
    let inner = "GET /hello HTTP/1.1\r\nHost: example.org\r\n\r\n";
    let connect = format!("CONNECT 127.0.0.1:{} HTTP/1.1\r\n\r\n", origin.port());
    s.write_all(format!("{connect}{inner}").as_bytes())
        .await
        .unwrap();
    assert_eq!(status_of(&read_head(&mut s).await), 200);
    let resp = read_response(&mut s).await;
    assert_eq!(status_of(&resp), 200, "{resp}");
    assert!(resp.ends_with("hello from origin"), "{resp}");
    // The same tunnel carries the next request too.
    s.write_all(inner.as_bytes()).await.unwrap();
    let again = read_response(&mut s).await;
    assert!(again.ends_with("hello from origin"), "{again}");
    assert_eq!(origin.connections(), 1, "one tunnel, one origin connection");
    drop(s);
    let log = proxy.exactly_log_lines(1).await;
    assert_eq!(log[0]["kind"], "tunnel", "{}", log[0]);
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

/// `socialgate run` with the open-file limit set to `soft`/`hard` before it
/// starts.
async fn binary_with_nofile(policy: &PolicyDir, soft: u64, hard: u64, extra: &[&str]) -> Spawned {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_socialgate"));
    cmd.arg("run")
        .arg("--policy")
        .arg(policy.path())
        .args([
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "off",
            "--access-log",
            "off",
        ])
        .arg("--pseudonym-key")
        .arg(policy.path().join("pseudonym.key"))
        .args([
            "--resolve",
            "example.org=127.0.0.1",
            "--watch-interval-ms",
            "0",
        ])
        .args(extra)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    // SAFETY: setrlimit is async-signal-safe; the closure allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            let lim = libc::rlimit {
                rlim_cur: soft as libc::rlim_t,
                rlim_max: hard as libc::rlim_t,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Spawned::attach(cmd.spawn().expect("spawn socialgate")).await
}

/// The soft open-file limit of a running process.
fn soft_nofile(pid: i32) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    line.split_whitespace().nth(3).unwrap().parse().unwrap()
}

/// CPU time (user + system) a process has used, in clock ticks.
fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after_name.split_whitespace().collect();
    // Fields 14 and 15 (utime, stime), counted from the state field (3).
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

#[tokio::test]
async fn at_start_the_open_file_limit_is_raised_and_a_limit_too_low_is_named() {
    let policy = PolicyDir::new(BASIC_POLICY);
    let sg = binary_with_nofile(&policy, 256, 4096, &[]).await;
    assert_eq!(soft_nofile(sg.pid()), 4096, "raised to the hard limit");
    let line = sg.stderr_line("open-file limit").await;
    assert!(
        line.contains("(4096) is below what --max-connections 10000 needs"),
        "{line}"
    );
    assert!(line.contains("LimitNOFILE="), "says how to fix it: {line}");
    // Enough for the connections asked for: raised, and no warning.
    let sg = binary_with_nofile(&policy, 256, 4096, &["--max-connections", "1000"]).await;
    assert_eq!(soft_nofile(sg.pid()), 4096);
    sg.stderr_line("raised the open-file limit").await;
    assert!(!sg.stderr().contains("is below what"), "{}", sg.stderr());
}

#[tokio::test]
async fn out_of_descriptors_the_listener_backs_off_instead_of_spinning_and_recovers() {
    let origin = Origin::start().await;
    let policy = PolicyDir::new(BASIC_POLICY);
    let sg = binary_with_nofile(&policy, 48, 48, &[]).await;
    let pid = sg.pid();
    // More connections than descriptors: the kernel completes them into the
    // listen queue, the proxy's accept fails with EMFILE.
    let mut held = Vec::new();
    for _ in 0..80 {
        held.push(
            within(tokio::net::TcpStream::connect(sg.addr))
                .await
                .unwrap(),
        );
    }
    let line = sg.stderr_line("accept failed").await;
    assert!(line.contains("open-file limit"), "{line}");
    // Out of descriptors for a whole second (the window is the
    // measurement, not a synchronisation): a spinning accept loop would
    // use the whole second of CPU.
    let before = cpu_ticks(pid);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let used = cpu_ticks(pid) - before;
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    assert!(
        used * 5 < hz,
        "{used} ticks of {hz} in one second: spinning"
    );
    assert_eq!(
        sg.stderr().matches("accept failed").count(),
        1,
        "said once, not once per try:\n{}",
        sg.stderr()
    );
    // Descriptors come back: served again.
    drop(held);
    let url = format!("http://example.org:{}/hello", origin.port());
    let c = sg.client();
    eventually_async("the proxy serves again", || async {
        matches!(c.get(&url).send().await, Ok(r) if r.status() == 200)
    })
    .await;
}

#[tokio::test]
async fn the_transparent_listener_resets_a_client_over_its_connection_cap() {
    let proxy = proxy_with_client_cap(|cfg| {
        cfg.transparent = vec!["127.0.0.1:0".parse().unwrap()];
    })
    .await;
    let transparent = proxy.app().transparent_addrs[0];
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(connect_from("127.0.0.5", transparent).await);
    }
    let slots = &proxy.app().state.client_slots;
    eventually("three connections counted", || {
        slots.open("127.0.0.5".parse().unwrap()) == 3
    })
    .await;
    let mut fourth = connect_from("127.0.0.5", transparent).await;
    let _ = fourth
        .write_all(b"GET / HTTP/1.1\r\nHost: example.org\r\n\r\n")
        .await;
    let mut buf = [0u8; 64];
    let r = within(fourth.read(&mut buf)).await;
    assert!(
        matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset)
            || matches!(r, Ok(0)),
        "{r:?}"
    );
    // Another client is not affected.
    let other = connect_from("127.0.0.6", transparent).await;
    drop(other);
    assert_eq!(slots.open("127.0.0.5".parse().unwrap()), 3);
}

#[tokio::test]
async fn max_connections_is_one_limit_shared_by_every_listener() {
    // Two proxy addresses and a transparent one, and room for two
    // connections in all: each listener counting on its own would let
    // three times as many in, and a flood spread over them would pass
    // the memory and descriptor bounds `--max-connections` stands for.
    let origin = Origin::start().await;
    let proxy = TestProxy::start_in(PolicyDir::new(BASIC_POLICY), |cfg| {
        cfg.listen = vec!["127.0.0.1:0".parse().unwrap(); 2];
        cfg.transparent = vec!["127.0.0.1:0".parse().unwrap()];
        cfg.proxy.max_connections = 2;
    })
    .await;
    let app = proxy.app();
    let (a, b, t) = (
        app.proxy_addrs[0],
        app.proxy_addrs[1],
        app.transparent_addrs[0],
    );
    let mut held = Vec::new();
    for addr in [a, b] {
        let mut s = connect_from("127.0.0.1", addr).await;
        s.write_all(get(&origin, "/hello").as_bytes())
            .await
            .unwrap();
        let r = read_response(&mut s).await;
        assert_eq!(status_of(&r), 200, "{r}");
        held.push(s);
    }
    assert_eq!(app.state.permits.available_permits(), 0);
    // A third connection, on the transparent listener: the kernel takes
    // it into the listen queue, socialgate does not accept it yet.
    let mut third = connect_from("127.0.0.1", t).await;
    third
        .write_all(b"GET / HTTP/1.1\r\nHost: www.linkedin.com\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    // Observed in the kernel: the connection waits in the transparent
    // listener's accept queue, which socialgate does not read while it
    // has no place to give.
    eventually("the third connection waits in the listen queue", || {
        accept_queue(t.port()) == Some(1)
    })
    .await;
    assert_eq!(proxy.gauges().connections.load(Ordering::SeqCst), 2);
    // And it stays unanswered (a bounded look: that nothing happens is
    // the behaviour under test).
    let mut buf = [0u8; 512];
    let early = tokio::time::timeout(Duration::from_millis(300), third.read(&mut buf)).await;
    assert!(
        early.is_err(),
        "answered while both places were taken: {early:?}"
    );
    assert_eq!(accept_queue(t.port()), Some(1), "still waiting");
    // One closes: the waiting connection gets its place and its answer
    // (straight to the transparent listener: destination-self).
    drop(held.pop());
    let mut out = Vec::new();
    within(third.read_to_end(&mut out)).await.unwrap();
    let out = String::from_utf8_lossy(&out);
    assert_eq!(status_of(&out), 403, "{out}");
}

/// Connections waiting to be accepted on the IPv4 listener of `port`, as
/// the kernel counts them (`/proc/net/tcp`: a listening socket's
/// `rx_queue` is its accept queue).
fn accept_queue(port: u16) -> Option<u64> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let want = format!(":{port:04X}");
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (local, state, queues) = (f.get(1)?, f.get(3)?, f.get(4)?);
        if !local.ends_with(&want) || *state != "0A" {
            return None;
        }
        u64::from_str_radix(queues.split(':').nth(1)?, 16).ok()
    })
}
