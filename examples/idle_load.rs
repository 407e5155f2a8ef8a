//! Memory per idle connection, measured on a real `socialgate run`.
//!
//! Starts an origin in this process (HTTP for keep-alive requests, a TCP
//! echo server for tunnels), spawns the proxy binary on 127.0.0.1:0 with a
//! policy that allows them, opens N client connections from several
//! loopback source addresses (127.0.1.x, so a per-client connection cap
//! does not interfere), has each do one exchange, keeps them all open and
//! idle, and reads the proxy's RSS (`VmRSS` in /proc/PID/status) before,
//! while they are open, and after they are closed. Every step is bounded in
//! time; the proxy is stopped by its PID at the end.
//!
//! ```sh
//! cargo build --release --example idle_load
//! target/release/examples/idle_load keepalive 10000 [PROXY_BINARY [EXTRA_FLAGS...]]
//! target/release/examples/idle_load tunnel 10000
//! ```
//!
//! Modes: `keepalive` (one 1 KiB GET per connection, then idle keep-alive)
//! and `tunnel` (CONNECT to the echo server, 64 KiB each way by default
//! (`IDLE_LOAD_BYTES`), then idle).
//! Prints one tab-separated line of figures (KiB) and a readable summary.
//! It raises its own open-file limit and the proxy's as far as it may
//! (root can raise the hard limit where the kernel lets it): N tunnels need
//! 2N descriptors in the proxy and 2N here.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

const BODY: usize = 1024;
/// Bytes each way through a tunnel before it goes idle (`IDLE_LOAD_BYTES`):
/// 64 KiB fills a copy buffer, as any page load through a tunnel does.
fn tunnel_bytes() -> usize {
    std::env::var("IDLE_LOAD_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64 * 1024)
}
/// Connections opened at once while ramping up.
const RAMP: usize = 64;
/// Client connections per loopback source address.
const PER_SOURCE: usize = 500;

fn raise_nofile(want: u64) {
    // SAFETY: getrlimit/setrlimit on our own process with valid pointers.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        let target = want.max(lim.rlim_cur);
        let new = libc::rlimit {
            rlim_cur: target as libc::rlim_t,
            rlim_max: (target as libc::rlim_t).max(lim.rlim_max),
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &new) != 0 {
            // Not allowed to raise the hard limit: go as far as it.
            let hard = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            libc::setrlimit(libc::RLIMIT_NOFILE, &hard);
            eprintln!(
                "idle_load: cannot raise RLIMIT_NOFILE to {target}; using the hard limit {}",
                lim.rlim_max
            );
        }
    }
}

fn status_kib(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Waits until RSS has not changed by more than 1 % for one second (at
/// most 10 s), and returns it.
async fn settled_rss(pid: u32) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = status_kib(pid, "VmRSS:");
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = status_kib(pid, "VmRSS:");
        if now.abs_diff(last) * 100 <= last || Instant::now() > deadline {
            return now;
        }
        last = now;
    }
}

async fn origin_http() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {BODY}\r\nContent-Type: text/plain\r\n\r\n{}",
        "a".repeat(BODY)
    );
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else {
                continue;
            };
            let response = response.clone();
            tokio::spawn(async move {
                // A minimal keep-alive origin: one canned response per head
                // (GETs only, no bodies), as the load sends nothing else.
                let mut s = tokio::io::BufReader::new(s);
                let mut line = String::new();
                loop {
                    line.clear();
                    match s.read_line(&mut line).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) if line == "\r\n" => {
                            if s.get_mut().write_all(response.as_bytes()).await.is_err() {
                                return;
                            }
                        }
                        Ok(_) => {}
                    }
                }
            });
        }
    });
    addr
}

async fn origin_echo() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let (mut r, mut w) = s.into_split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

async fn connect_from(i: usize, proxy: SocketAddr) -> std::io::Result<TcpStream> {
    let n = 1 + i / PER_SOURCE;
    let src = IpAddr::V4(Ipv4Addr::new(
        127,
        0,
        1 + (n / 250) as u8,
        (n % 250) as u8 + 1,
    ));
    let sock = TcpSocket::new_v4()?;
    sock.bind(SocketAddr::new(src, 0))?;
    sock.connect(proxy).await
}

/// Reads one response head; returns it and the Content-Length.
async fn read_head(s: &mut TcpStream) -> std::io::Result<(String, usize)> {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut b).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let len = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    Ok((head, len))
}

async fn keepalive_exchange(s: &mut TcpStream, origin: SocketAddr) -> std::io::Result<()> {
    let req = format!("GET http://{origin}/1k HTTP/1.1\r\nHost: {origin}\r\n\r\n");
    s.write_all(req.as_bytes()).await?;
    let (head, len) = read_head(s).await?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(std::io::Error::other(format!("not 200: {head}")));
    }
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).await?;
    Ok(())
}

async fn tunnel_exchange(s: &mut TcpStream, echo: SocketAddr) -> std::io::Result<()> {
    let req = format!("CONNECT {echo} HTTP/1.1\r\nHost: {echo}\r\n\r\n");
    s.write_all(req.as_bytes()).await?;
    let (head, _) = read_head(s).await?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(std::io::Error::other(format!("not 200: {head}")));
    }
    let payload = vec![b'x'; tunnel_bytes()];
    let mut back = vec![0u8; payload.len()];
    let (mut rd, mut wr) = s.split();
    tokio::try_join!(wr.write_all(&payload), rd.read_exact(&mut back))?;
    Ok(())
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: idle_load keepalive|tunnel N [PROXY_BINARY [EXTRA_FLAGS...]]";
    let mode = args.get(1).expect(usage).clone();
    let n: usize = args.get(2).and_then(|s| s.parse().ok()).expect(usage);
    let bin = args
        .get(3)
        .cloned()
        .unwrap_or_else(|| "target/release/socialgate".into());
    let extra: Vec<String> = args.iter().skip(4).cloned().collect();
    assert!(mode == "keepalive" || mode == "tunnel", "{usage}");
    raise_nofile((4 * n + 1000) as u64);

    let origin = origin_http().await;
    let echo = origin_echo().await;
    let dir = tempfile::tempdir().unwrap();
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    std::fs::copy(
        manifest.join("benches/loopback-policy/catalog.yaml"),
        dir.path().join("catalog.yaml"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("policy.yaml"),
        "version: 1\nsettings:\n  timezone: Europe/Berlin\ndestinations:\n  allow: [127.0.0.0/8]\n\
         tunnels:\n  ports: [any]\n  sni_timeout_ms: 2000\ngroups:\n  staff:\n    networks: [127.0.0.0/8]\n\
         rules:\n  - id: no-tiktok\n    groups: [staff]\n    platforms: [tiktok]\n    action: block\n",
    )
    .unwrap();

    let mut cmd = tokio::process::Command::new(&bin);
    cmd.arg("run")
        .arg("--policy")
        .arg(dir.path())
        .args(["--listen", "127.0.0.1:0", "--admin", "off", "--access-log"])
        .arg(dir.path().join("access.log"))
        .arg("--pseudonym-key")
        .arg(dir.path().join("key"))
        .args(["--max-connections", &(n + 1000).to_string()])
        .args(["--header-read-timeout", "600", "--idle-timeout", "600"])
        .args(&extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let nofile = (4 * n + 1000) as libc::rlim_t;
    // SAFETY: setrlimit is async-signal-safe; nothing is allocated.
    unsafe {
        cmd.pre_exec(move || {
            let lim = libc::rlimit {
                rlim_cur: nofile,
                rlim_max: nofile,
            };
            // Where the hard limit cannot be raised, socialgate raises its
            // soft limit to the hard one itself.
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("spawn the proxy");
    let pid = child.id().unwrap();
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let proxy: SocketAddr = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(l)) = lines.next_line().await {
            if let Some(at) = l.find("proxy=") {
                return l[at + 6..]
                    .split_whitespace()
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap();
            }
        }
        panic!("the proxy exited before listening");
    })
    .await
    .expect("the proxy listens within 30 s");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

    // Warm up: allocator arenas, the upstream pool, the policy's caches.
    let warm: Vec<_> = (0..RAMP)
        .map(|i| {
            tokio::spawn(async move {
                let mut s = connect_from(i, proxy).await.unwrap();
                for _ in 0..5 {
                    keepalive_exchange(&mut s, origin).await.unwrap();
                }
            })
        })
        .collect();
    for w in warm {
        w.await.unwrap();
    }
    let fds_before = open_fds(pid);
    let base = settled_rss(pid).await;

    let started = Instant::now();
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(RAMP));
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let permit = sem.clone().acquire_owned().await.unwrap();
        let mode = mode.clone();
        tasks.push(tokio::spawn(async move {
            let mut s = connect_from(i, proxy).await?;
            if mode == "keepalive" {
                keepalive_exchange(&mut s, origin).await?;
            } else {
                tunnel_exchange(&mut s, echo).await?;
            }
            drop(permit);
            Ok::<_, std::io::Error>(s)
        }));
    }
    let mut conns = Vec::with_capacity(n);
    let mut failed = 0;
    for t in tasks {
        match tokio::time::timeout(Duration::from_secs(60), t).await {
            Ok(Ok(Ok(s))) => conns.push(s),
            other => {
                failed += 1;
                if failed <= 3 {
                    eprintln!("idle_load: a connection failed: {other:?}");
                }
            }
        }
    }
    let ramp = started.elapsed();
    // Idle now: keep-alive connections park after a quiet second or two,
    // and socialgate gives freed memory back every few seconds; watch RSS
    // for a while (IDLE_LOAD_WATCH seconds, default 12) before settling.
    let watch: u64 = std::env::var("IDLE_LOAD_WATCH")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12);
    let mut timeline = Vec::new();
    for _ in 0..watch {
        tokio::time::sleep(Duration::from_secs(1)).await;
        timeline.push(status_kib(pid, "VmRSS:") / 1024);
    }
    eprintln!("idle_load: RSS (MiB) each second after the ramp: {timeline:?}");
    let loaded = settled_rss(pid).await;
    let anon = status_kib(pid, "RssAnon:");

    // The idle connections are alive: a second exchange on some of them.
    let mut alive = 0;
    for s in conns.iter_mut().step_by((n / 100).max(1)) {
        let ok = if mode == "keepalive" {
            keepalive_exchange(s, origin).await.is_ok()
        } else {
            let payload = [b'y'; 100];
            let mut back = [0u8; 100];
            s.write_all(&payload).await.is_ok() && s.read_exact(&mut back).await.is_ok()
        };
        alive += usize::from(ok);
    }
    let probed = conns.iter().step_by((n / 100).max(1)).count();

    let open = conns.len();
    drop(conns);
    let deadline = Instant::now() + Duration::from_secs(30);
    while open_fds(pid) > fds_before + 8 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut timeline = Vec::new();
    for _ in 0..watch {
        tokio::time::sleep(Duration::from_secs(1)).await;
        timeline.push(status_kib(pid, "VmRSS:") / 1024);
    }
    eprintln!("idle_load: RSS (MiB) each second after closing: {timeline:?}");
    let after = settled_rss(pid).await;
    let per_conn = (loaded.saturating_sub(base)) as f64 / open.max(1) as f64;
    println!(
        "mode\tconns\tfailed\tbase_kib\tloaded_kib\tper_conn_kib\tafter_close_kib\tramp_s\talive"
    );
    println!(
        "{mode}\t{open}\t{failed}\t{base}\t{loaded}\t{per_conn:.2}\t{after}\t{:.1}\t{alive}/{probed}",
        ramp.as_secs_f64()
    );
    eprintln!(
        "idle_load: {open} idle {mode} connections ({failed} failed): RSS {base} KiB -> {loaded} KiB \
         (anon {anon} KiB) = {per_conn:.2} KiB per connection; {after} KiB after closing them; \
         {alive}/{probed} probed connections still served"
    );
    // SAFETY: kill(2) on the child we spawned.
    unsafe {
        libc::kill(pid as i32, libc::SIGTERM);
    }
    let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
    let _ = child.kill().await;
}
