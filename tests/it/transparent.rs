//! Transparent mode in network namespaces this test creates: a client
//! namespace behind a gateway namespace whose iptables REDIRECT sends every
//! TCP connection from the client to socialgate's `--transparent` listener;
//! the origins live in the root namespace. curl runs in the client
//! namespace and knows nothing of a proxy.
//!
//! ```text
//! client ns 198.19.N.2 ── 198.19.N.1 gateway ns 198.18.N.2 ── 198.18.N.1 root ns (origins)
//!                          (socialgate, REDIRECT)
//! ```
//!
//! Needs root (namespaces, iptables); skipped with a message otherwise.
//! The namespaces carry the test's pid and a counter, and are deleted on
//! drop, also when an assertion fails.

use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::support::*;

fn skip(why: &str) {
    println!("SKIPPED transparent mode in network namespaces: {why}");
    eprintln!("SKIPPED transparent mode in network namespaces: {why}");
}

/// Runs a command; its stderr on failure.
fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The namespaces and links of one test; all gone on drop.
struct Topology {
    gateway: String,
    client: String,
    /// The root namespace's end of the origin link.
    root_link: String,
    /// The gateway's end of the client link (where REDIRECT applies).
    client_link: String,
    /// 198.18.N.1: the origins' address in the root namespace.
    origin_ip: String,
}

impl Drop for Topology {
    fn drop(&mut self) {
        // Deleting a namespace deletes its links, their peers and its rules.
        let _ = run("ip", &["netns", "del", &self.client]);
        let _ = run("ip", &["netns", "del", &self.gateway]);
        let _ = run("ip", &["link", "del", &self.root_link]);
    }
}

static NEXT: AtomicU32 = AtomicU32::new(0);

impl Topology {
    fn build() -> Result<Topology, String> {
        let pid = std::process::id();
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let tag = format!("{}{n}", pid % 100_000);
        let net = (pid + n) % 250 + 1;
        let t = Topology {
            gateway: format!("sgg{tag}"),
            client: format!("sgc{tag}"),
            root_link: format!("sgr{tag}"),
            client_link: format!("sga{tag}"),
            origin_ip: format!("198.18.{net}.1"),
        };
        run("ip", &["netns", "add", &t.gateway])?;
        run("ip", &["netns", "add", &t.client])?;
        let peer = format!("sgb{tag}");
        let gw_origin = format!("sgo{tag}");
        let (g, c) = (t.gateway.as_str(), t.client.as_str());
        let steps: Vec<Vec<String>> = vec![
            format!(
                "link add {} netns {g} type veth peer name {peer} netns {c}",
                t.client_link
            ),
            format!(
                "link add {} type veth peer name {gw_origin} netns {g}",
                t.root_link
            ),
            format!("-n {g} addr add 198.19.{net}.1/24 dev {}", t.client_link),
            format!("-n {g} addr add 198.18.{net}.2/24 dev {gw_origin}"),
            format!("-n {g} link set lo up"),
            format!("-n {g} link set {} up", t.client_link),
            format!("-n {g} link set {gw_origin} up"),
            format!("-n {c} addr add 198.19.{net}.2/24 dev {peer}"),
            format!("-n {c} link set lo up"),
            format!("-n {c} link set {peer} up"),
            format!("-n {c} route add default via 198.19.{net}.1"),
            format!("addr add {}/24 dev {}", t.origin_ip, t.root_link),
            format!("link set {} up", t.root_link),
        ]
        .into_iter()
        .map(|s| s.split(' ').map(str::to_string).collect())
        .collect();
        for step in &steps {
            let args: Vec<&str> = step.iter().map(String::as_str).collect();
            run("ip", &args)?;
        }
        Ok(t)
    }

    /// Sends every TCP connection from the client namespace to `port`.
    fn redirect_to(&self, port: u16) -> Result<(), String> {
        let port = port.to_string();
        run(
            "ip",
            &[
                "netns",
                "exec",
                &self.gateway,
                "iptables",
                "-t",
                "nat",
                "-A",
                "PREROUTING",
                "-i",
                &self.client_link,
                "-p",
                "tcp",
                "-j",
                "REDIRECT",
                "--to-ports",
                &port,
            ],
        )
    }

    /// curl in the client namespace: (exit code, stdout + stderr).
    async fn curl(&self, args: &[&str]) -> (i32, String) {
        let out = tokio::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.client,
                "curl",
                "-s",
                "-S",
                "--max-time",
                "10",
            ])
            .args(args)
            .kill_on_drop(true)
            .output()
            .await
            .expect("curl is installed");
        let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
        s.push_str(&String::from_utf8_lossy(&out.stderr));
        (out.status.code().unwrap_or(-1), s)
    }
}

const POLICY: &str = r#"
version: 1
settings:
  timezone: UTC
  organization: Test Corp
destinations:
  allow: [198.18.0.0/15]
tunnels:
  ports: [any]
  sni_timeout_ms: 2000
groups:
  lan:
    networks: [198.19.0.0/16]
rules:
  - id: no-tiktok
    groups: [lan]
    platforms: [tiktok]
    action: block
    message: TikTok is not for work.
"#;

/// Everything that can be missing where the test does not run as root.
fn unavailable() -> Option<String> {
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Some("needs root for network namespaces and iptables (CI runs as root)".into());
    }
    for tool in ["ip", "iptables", "curl"] {
        let found = std::process::Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            return Some(format!("{tool} is not installed (.ci/run installs it)"));
        }
    }
    None
}

fn read_log(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test]
async fn redirected_http_and_tls_are_decided_on_host_and_sni_checked_against_the_original_destination(
) {
    if let Some(why) = unavailable() {
        return skip(&why);
    }
    let net = match Topology::build() {
        Ok(t) => t,
        Err(e) => return skip(&format!("cannot build the namespaces here: {e}")),
    };
    let ip = net.origin_ip.clone();
    let origin = Origin::bind(&format!("{ip}:0")).await;
    let tls = TlsOrigin::bind(
        &["www.linkedin.com", "www.youtube.com", "www.tiktok.com"],
        &format!("{ip}:0"),
    )
    .await;
    let (http_port, tls_port) = (origin.port().to_string(), tls.port().to_string());
    let dir = PolicyDir::new(POLICY);
    let log = dir.path().join("access.log");
    let cert = dir.path().join("origin.pem");
    std::fs::write(&cert, pem(&tls.cert_der)).unwrap();

    // socialgate in the gateway namespace. www.youtube.com resolves there
    // to another address than the one the client connects to.
    let pins = format!("www.linkedin.com={ip},www.tiktok.com={ip},www.youtube.com=198.18.0.99");
    let sg = match start_in_gateway(&net, dir.path(), &log, &["--resolve", &pins]).await {
        Ok(sg) => sg,
        Err(why) => return skip(&why),
    };

    // Plain HTTP: allowed, blocked (the block page), and a Host that is
    // not where the connection goes.
    let resolve = |name: &str, port: &str| format!("{name}:{port}:{ip}");
    let (code, out) = net
        .curl(&[
            "--resolve",
            &resolve("www.linkedin.com", &http_port),
            &format!("http://www.linkedin.com:{http_port}/hello"),
        ])
        .await;
    assert_eq!((code, out.as_str()), (0, "hello from origin"));
    let (code, out) = net
        .curl(&[
            "-i",
            "-H",
            "Accept: text/html",
            "--resolve",
            &resolve("www.tiktok.com", &http_port),
            &format!("http://www.tiktok.com:{http_port}/"),
        ])
        .await;
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("HTTP/1.1 403"), "{out}");
    assert!(
        out.contains("TikTok is not for work.") && out.contains("<html"),
        "{out}"
    );
    let (code, out) = net
        .curl(&[
            "-i",
            "-H",
            &format!("Host: www.youtube.com:{http_port}"),
            &format!("http://{ip}:{http_port}/hello"),
        ])
        .await;
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("HTTP/1.1 403"), "{out}");
    assert!(
        out.to_ascii_lowercase()
            .contains("x-socialgate-reason: destination-mismatch"),
        "{out}"
    );

    // TLS: allowed and spliced; a refused name and a mismatched one are reset.
    let cacert = cert.to_str().unwrap();
    let (code, out) = net
        .curl(&[
            "--cacert",
            cacert,
            "--resolve",
            &resolve("www.linkedin.com", &tls_port),
            &format!("https://www.linkedin.com:{tls_port}/hello"),
        ])
        .await;
    assert_eq!((code, out.as_str()), (0, "hello from origin"));
    for name in ["www.tiktok.com", "www.youtube.com"] {
        let (code, out) = net
            .curl(&[
                "--cacert",
                cacert,
                "--resolve",
                &resolve(name, &tls_port),
                &format!("https://{name}:{tls_port}/hello"),
            ])
            .await;
        assert_ne!(code, 0, "{name}: {out}");
        assert!(out.to_ascii_lowercase().contains("reset"), "{name}: {out}");
    }

    // socialgate's own page, by its name in Host: answered by the proxy
    // (the client is known by its address), never sent to the address.
    let (code, out) = net
        .curl(&[
            "-i",
            "--resolve",
            &resolve("socialgate.local", &http_port),
            &format!("http://socialgate.local:{http_port}/"),
        ])
        .await;
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(
        out.contains("your address only") && out.contains("<td>lan</td>"),
        "{out}"
    );

    let ok = poll_until(std::time::Duration::from_secs(10), || {
        read_log(&log).len() >= 7
    })
    .await;
    let lines = read_log(&log);
    assert!(ok, "expected 7 records, got {lines:#?}");
    let find = |kind: &str, host: &str| {
        lines
            .iter()
            .find(|l| l["kind"] == kind && l["host"] == host)
            .unwrap_or_else(|| panic!("no {kind} record for {host}: {lines:#?}"))
    };
    let to = |port: &str| format!("{ip}:{port}");
    let r = find("request", "www.linkedin.com");
    assert_eq!(
        (r["status"].as_u64(), r["original_dst"].as_str()),
        (Some(200), Some(to(&http_port).as_str()))
    );
    assert_eq!(r["auth"], "none");
    let r = find("request", "www.tiktok.com");
    assert_eq!(
        (r["status"].as_u64(), r["rule"].as_str()),
        (Some(403), Some("no-tiktok"))
    );
    let r = find("request", "www.youtube.com");
    assert_eq!(r["reason"], "destination-mismatch");
    let r = find("tunnel", "www.linkedin.com");
    assert_eq!(r["sni"], "www.linkedin.com");
    assert_eq!(r["original_dst"], to(&tls_port));
    assert!(r["bytes_down"].as_u64().unwrap() > 0, "{r}");
    assert!(r.get("error").is_none(), "{r}");
    let r = find("tunnel", "www.tiktok.com");
    assert_eq!(
        (r["rule"].as_str(), r["action"].as_str()),
        (Some("no-tiktok"), Some("block"))
    );
    let r = find("tunnel", "www.youtube.com");
    assert_eq!(r["reason"], "destination-mismatch");
    assert_eq!(r["method"], "CONNECT");

    // `explain --original-dst` decides the same way.
    let (code, out, _) = socialgate(&[
        "explain",
        "--policy",
        dir.path().to_str().unwrap(),
        "--client",
        "198.19.1.2",
        "--resolve",
        "www.youtube.com=198.18.0.99",
        "--original-dst",
        &to(&tls_port),
        &format!("https://www.youtube.com:{tls_port}/"),
    ])
    .await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("reason destination-mismatch"), "{out}");
    drop(sg);
}

/// socialgate in the gateway namespace with a transparent listener, and
/// the client namespace's connections redirected to it; `Err` (a reason to
/// skip) when iptables REDIRECT is not available.
async fn start_in_gateway(
    net: &Topology,
    policy: &Path,
    log: &Path,
    extra: &[&str],
) -> Result<Spawned, String> {
    let child = tokio::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &net.gateway,
            env!("CARGO_BIN_EXE_socialgate"),
            "run",
        ])
        .arg("--policy")
        .arg(policy)
        .args(["--listen", "127.0.0.1:0", "--admin", "off"])
        .args(["--transparent", "0.0.0.0:0"])
        .args(extra)
        .arg("--access-log")
        .arg(log)
        .arg("--pseudonym-key")
        .arg(policy.join("pseudonym.key"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn socialgate in the gateway namespace");
    let sg = Spawned::attach(child).await;
    let line = sg.stderr_line("transparent listening").await;
    let port: u16 = line
        .split("transparent=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|a| a.parse::<std::net::SocketAddr>().ok())
        .map(|a| a.port())
        .unwrap_or_else(|| panic!("no transparent address in {line:?}"));
    net.redirect_to(port)
        .map_err(|e| format!("iptables REDIRECT is not available here: {e}"))?;
    Ok(sg)
}

const INSPECT_POLICY: &str = r#"
version: 1
settings:
  timezone: UTC
  organization: Test Corp
destinations:
  allow: [198.18.0.0/15]
tunnels:
  ports: [any]
  sni_timeout_ms: 2000
groups:
  lan:
    networks: [198.19.0.0/16]
rules:
  - id: no-tiktok
    groups: [lan]
    platforms: [tiktok]
    action: block
    inspect: true
    message: TikTok is not for work.
  - id: linkedin-read-only
    groups: [lan]
    platforms: [linkedin]
    action: read_only
    inspect: true
    message: Read LinkedIn, do not post as the company.
"#;

/// Redirected TLS is inspected as a CONNECT tunnel would be: a client
/// that trusts the company CA (and only it) gets the origin's answer
/// through socialgate's leaf, a post under `read_only` is refused before
/// the origin sees it, and a blocked platform gets the block page over
/// HTTPS instead of a reset.
#[tokio::test]
async fn redirected_tls_is_inspected_when_a_rule_asks_and_refusals_show_their_page_over_https() {
    if let Some(why) = unavailable() {
        return skip(&why);
    }
    let net = match Topology::build() {
        Ok(t) => t,
        Err(e) => return skip(&format!("cannot build the namespaces here: {e}")),
    };
    let ip = net.origin_ip.clone();
    let tls = TlsOrigin::bind(&["www.linkedin.com", "www.tiktok.com"], &format!("{ip}:0")).await;
    let tls_port = tls.port().to_string();
    let dir = PolicyDir::new(INSPECT_POLICY);
    let log = dir.path().join("access.log");
    let origin_ca = dir.path().join("origin.pem");
    std::fs::write(&origin_ca, pem(&tls.cert_der)).unwrap();
    let ca = dir.ca_paths();
    socialgate::ca::init(&ca, Some("Test Corp")).unwrap();
    let pins = format!("www.linkedin.com={ip},www.tiktok.com={ip}");
    let extra = [
        "--resolve",
        pins.as_str(),
        "--ca-cert",
        ca.cert.to_str().unwrap(),
        "--ca-key",
        ca.key.to_str().unwrap(),
        "--upstream-ca",
        origin_ca.to_str().unwrap(),
    ];
    let sg = match start_in_gateway(&net, dir.path(), &log, &extra).await {
        Ok(sg) => sg,
        Err(why) => return skip(&why),
    };
    let resolve = |name: &str| format!("{name}:{tls_port}:{ip}");
    let company_ca = ca.cert.to_str().unwrap();

    // A read: through socialgate's leaf (curl trusts only the company CA).
    let (code, out) = net
        .curl(&[
            "--cacert",
            company_ca,
            "--resolve",
            &resolve("www.linkedin.com"),
            &format!("https://www.linkedin.com:{tls_port}/hello"),
        ])
        .await;
    assert_eq!((code, out.as_str()), (0, "hello from origin"));
    // A post: refused inside the tunnel, JSON for an API call.
    let (code, out) = net
        .curl(&[
            "-i",
            "--cacert",
            company_ca,
            "--resolve",
            &resolve("www.linkedin.com"),
            "-X",
            "POST",
            "-H",
            "Accept: application/json",
            "-H",
            "Content-Type: application/json",
            "--data",
            "{}",
            &format!("https://www.linkedin.com:{tls_port}/voyager/api/contentcreation/normShares"),
        ])
        .await;
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("HTTP/"), "{out}");
    assert!(out.contains(" 403"), "{out}");
    assert!(out.contains("Read LinkedIn, do not post"), "{out}");
    // A blocked platform: the block page, over HTTPS, not a reset.
    let (code, out) = net
        .curl(&[
            "-i",
            "--cacert",
            company_ca,
            "-H",
            "Accept: text/html",
            "--resolve",
            &resolve("www.tiktok.com"),
            &format!("https://www.tiktok.com:{tls_port}/"),
        ])
        .await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(" 403") && out.contains("TikTok is not for work."),
        "{out}"
    );

    let ok = poll_until(std::time::Duration::from_secs(10), || {
        let l = read_log(&log);
        l.iter().filter(|r| r["kind"] == "tunnel").count() >= 3
            && l.iter().filter(|r| r["kind"] == "request").count() >= 3
    })
    .await;
    let lines = read_log(&log);
    assert!(ok, "expected 3 tunnels and 3 requests, got {lines:#?}");
    let tunnels: Vec<_> = lines.iter().filter(|r| r["kind"] == "tunnel").collect();
    for t in &tunnels {
        assert_eq!(t["tls"], "intercepted", "{t}");
        assert_eq!(t["original_dst"], format!("{ip}:{tls_port}"), "{t}");
    }
    let post = lines
        .iter()
        .find(|r| r["kind"] == "request" && r["method"] == "POST")
        .expect("the post's record");
    assert_eq!(
        (
            post["rule"].as_str(),
            post["activity"].as_str(),
            post["status"].as_u64()
        ),
        (Some("linkedin-read-only"), Some("post"), Some(403))
    );
    assert_eq!(
        tls.handshakes.load(Ordering::SeqCst),
        2,
        "tiktok was never dialed"
    );
    drop(sg);
}

/// PEM for curl's --cacert.
fn pem(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut s = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        s.push_str(std::str::from_utf8(chunk).unwrap());
        s.push('\n');
    }
    s.push_str("-----END CERTIFICATE-----\n");
    s
}

/// socialgate with a transparent listener on 127.0.0.1 and no redirect.
async fn unredirected() -> (TestProxy, std::net::SocketAddr) {
    let proxy = TestProxy::start_in(PolicyDir::new(BASIC_POLICY), |cfg| {
        cfg.transparent = vec!["127.0.0.1:0".parse().unwrap()];
    })
    .await;
    let addr = proxy.app().transparent_addrs[0];
    (proxy, addr)
}

#[tokio::test]
async fn a_connection_straight_to_the_transparent_listener_is_refused_as_destination_self() {
    let (proxy, addr) = unredirected().await;
    // Plain HTTP, as an attacker on the LAN would try it: whatever Host it
    // names, the connection was going to socialgate itself.
    let out = raw_until_close(
        addr,
        b"GET /hello HTTP/1.1\r\nHost: www.linkedin.com\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&out), 403, "{out}");
    assert!(
        out.to_ascii_lowercase()
            .contains("x-socialgate-reason: destination-self"),
        "{out}"
    );
    // Hostile heads: two Hosts, a Host with credentials, a port out of range, CONNECT.
    for head in [
        "GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: user@www.linkedin.com\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: www.linkedin.com:99999\r\n\r\n",
        "CONNECT www.linkedin.com:443 HTTP/1.1\r\nHost: www.linkedin.com:443\r\n\r\n",
    ] {
        let out = raw_until_close(addr, head.as_bytes()).await;
        assert_eq!(status_of(&out), 400, "{head:?}: {out}");
    }
    // TLS: reset, and recorded.
    let (code, out) = curl(&[
        "-k",
        "--connect-to",
        &format!("www.linkedin.com:443:{addr}"),
        "https://www.linkedin.com/",
    ])
    .await;
    assert_ne!(code, 0, "{out}");
    let lines = proxy.exactly_log_lines(6).await;
    let tunnel = lines
        .iter()
        .find(|l| l["kind"] == "tunnel" && l["sni"] == "www.linkedin.com")
        .unwrap();
    assert_eq!(tunnel["reason"], "destination-self");
    assert_eq!(tunnel["original_dst"], addr.to_string());
    assert!(
        lines.iter().all(|l| l["original_dst"] == addr.to_string()),
        "{lines:#?}"
    );
}
