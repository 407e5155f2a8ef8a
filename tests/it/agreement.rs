//! `explain` says what the proxy does: one table of cases, each run through
//! the live proxy (real clients, raw sockets, a real TLS ClientHello) and
//! through the `socialgate explain` binary, which must give the same
//! action, mode, rule and reason. Ports, IP literals and numeric
//! look-alikes, private, metadata and loopback ranges, names resolving
//! inside, the proxy's own listeners, SNI mismatches, identity and groups.

use std::net::SocketAddr;
use std::sync::Arc;

use base64::Engine;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

/// The test's policy; `{ORIGIN}`, `{TLS}` and `{PROXY}` are ports filled in
/// at run time. Only 127.0.0.1 among the internal addresses may be reached.
const POLICY: &str = r#"
version: 1
settings:
  timezone: Europe/Berlin
auth:
  htpasswd: users.htpasswd
destinations:
  allow: [127.0.0.1/32]
tunnels:
  ports: [443, {TLS}, {PROXY}]
  sni_timeout_ms: 2000
groups:
  staff:
    networks: [127.0.0.0/24]
  recruiters:
    users: [alice]
rules:
  - {id: recruiters-linkedin, groups: [recruiters], platforms: [linkedin], action: allow}
  - {id: no-linkedin-for-bob, users: [bob], platforms: [linkedin], action: block}
  - {id: no-tiktok, groups: [staff], platforms: [tiktok], action: block}
  - {id: fb-dry-run, groups: [staff], platforms: [facebook], action: block, mode: report}
"#;

/// One case: who asks, for what, and (tunnels) which server name the
/// ClientHello carries.
struct Case {
    from: &'static str,
    user: Option<&'static str>,
    url: String,
    sni: Option<&'static str>,
    /// The rule the proxy and explain must both name.
    rule: &'static str,
}

fn case(from: &'static str, url: String, rule: &'static str) -> Case {
    Case {
        from,
        user: None,
        url,
        sni: None,
        rule,
    }
}

/// (action, mode, rule, reason) as the proxy recorded it.
type Outcome = (String, String, String, String);

#[tokio::test]
async fn explain_and_the_live_proxy_agree_on_every_case() {
    let origin = Origin::start().await;
    let tls = TlsOrigin::start(&["www.linkedin.com", "www.tiktok.com"]).await;
    let policy = |proxy_port: u16| {
        POLICY
            .replace("{TLS}", &tls.port().to_string())
            .replace("{PROXY}", &proxy_port.to_string())
    };
    let dir = PolicyDir::new(&policy(443));
    let mut users = htpasswd_line("alice", "wonderland");
    users.push_str(&htpasswd_line("bob", "builder"));
    dir.write("users.htpasswd", &users);
    let proxy = TestProxy::start_in(dir, |cfg| {
        cfg.proxy
            .resolve
            .insert("internal.example.org".into(), "10.1.2.3".parse().unwrap());
        cfg.proxy.resolve.insert(
            "metadata.example.org".into(),
            "169.254.169.254".parse().unwrap(),
        );
    })
    .await;
    // The proxy listens on port 0; name its port in tunnels.ports now.
    let proxy_port = proxy.addr.port();
    let generation = proxy.app().policy().generation();
    proxy.policy.write("policy.yaml", &policy(proxy_port));
    proxy.wait_for_generation(generation + 1).await;
    let admin = proxy.app().admin_addr.unwrap();
    let (o, t, p, a) = (origin.port(), tls.port(), proxy_port, admin.port());

    #[rustfmt::skip]
    let mut cases = vec![
        // Plain HTTP: rules and defaults.
        case("127.0.0.1", format!("http://example.org:{o}/hello"), "default:other"),
        case("127.0.0.1", format!("http://www.tiktok.com:{o}/"), "no-tiktok"),
        case("127.0.0.1", format!("http://www.linkedin.com:{o}/"), "default:catalog"),
        case("127.0.0.1", format!("http://connect.facebook.net:{o}/sdk.js"), "default:embedded"),
        case("127.0.0.1", format!("http://www.facebook.com:{o}/"), "fb-dry-run"),
        // Plain HTTP: IP literals, numeric look-alikes, internal ranges.
        case("127.0.0.1", format!("http://127.0.0.1:{o}/hello"), "default:other"),
        case("127.0.0.1", format!("http://127.0.0.2:{o}/"), "builtin:destination"),
        case("127.0.0.1", "http://169.254.169.254/latest/meta-data".into(), "builtin:destination"),
        case("127.0.0.1", "http://10.1.2.3/".into(), "builtin:destination"),
        case("127.0.0.1", "http://192.168.1.1:8080/".into(), "builtin:destination"),
        case("127.0.0.1", format!("http://[::1]:{o}/"), "builtin:destination"),
        case("127.0.0.1", "http://[::ffff:169.254.169.254]/".into(), "builtin:destination"),
        case("127.0.0.1", format!("http://127.1:{o}/hello"), "default:other"),
        case("127.0.0.1", format!("http://2130706433:{o}/hello"), "default:other"),
        case("127.0.0.1", "http://0xa9.0xfe.0xa9.0xfe/".into(), "builtin:destination"),
        // Names that resolve inside.
        case("127.0.0.1", format!("http://internal.example.org:{o}/"), "builtin:destination"),
        case("127.0.0.1", "http://metadata.example.org/latest/meta-data".into(), "builtin:destination"),
        // The proxy's own listeners.
        case("127.0.0.1", format!("http://example.org:{p}/"), "builtin:destination"),
        case("127.0.0.1", format!("http://127.0.0.1:{a}/metrics"), "builtin:destination"),
        // Identity and groups.
        case("127.0.1.5", format!("http://example.org:{o}/hello"), "builtin:identity"),
        Case { user: Some("alice"), ..case("127.0.1.5", format!("http://www.linkedin.com:{o}/"), "recruiters-linkedin") },
        Case { user: Some("bob"), ..case("127.0.1.5", format!("http://www.linkedin.com:{o}/"), "no-linkedin-for-bob") },
        Case { user: Some("bob"), ..case("127.0.0.1", format!("http://www.tiktok.com:{o}/"), "no-tiktok") },
        // CONNECT: ports.
        case("127.0.0.1", format!("https://www.linkedin.com:{t}/"), "default:catalog"),
        case("127.0.0.1", "https://www.linkedin.com:8443/".into(), "builtin:tunnel"),
        case("127.0.0.1", format!("https://www.tiktok.com:{t}/"), "no-tiktok"),
        // CONNECT: destinations.
        case("127.0.0.1", format!("https://127.0.0.1:{t}/"), "default:other"),
        case("127.0.0.1", "https://169.254.169.254/".into(), "builtin:destination"),
        case("127.0.0.1", format!("https://[::1]:{t}/"), "builtin:destination"),
        case("127.0.0.1", format!("https://internal.example.org:{t}/"), "builtin:destination"),
        case("127.0.0.1", format!("https://example.org:{p}/"), "builtin:destination"),
        // CONNECT: the ClientHello's server name.
        Case { sni: Some("www.tiktok.com"), ..case("127.0.0.1", format!("https://www.linkedin.com:{t}/"), "builtin:sni") },
        Case { sni: Some("www.linkedin.com"), ..case("127.0.0.1", format!("https://www.linkedin.com:{t}/"), "default:catalog") },
        Case { sni: Some("www.tiktok.com"), ..case("127.0.0.1", format!("https://127.0.0.1:{t}/"), "no-tiktok") },
        Case { sni: Some("www.linkedin.com"), ..case("127.0.0.1", format!("https://127.0.0.1:{t}/"), "default:catalog") },
        // CONNECT: identity.
        case("127.0.1.5", format!("https://www.linkedin.com:{t}/"), "builtin:identity"),
        Case { user: Some("alice"), ..case("127.0.1.5", format!("https://www.linkedin.com:{t}/"), "recruiters-linkedin") },
    ];
    assert!(cases.len() >= 30);

    let mut resolve_args = Vec::new();
    for h in TEST_HOSTS.iter().filter(|h| **h != "internal.example.org") {
        resolve_args.push(format!("{h}=127.0.0.1"));
    }
    resolve_args.push("internal.example.org=10.1.2.3".into());
    resolve_args.push("metadata.example.org=169.254.169.254".into());

    let mut disagreements = Vec::new();
    for (i, c) in cases.drain(..).enumerate() {
        let live = live_outcome(&proxy, &c, i + 1).await;
        let explained = explain_outcome(&proxy, &c, &resolve_args, admin).await;
        let what = format!(
            "case {i}: {} {:?} {} sni={:?}",
            c.from, c.user, c.url, c.sni
        );
        if live != explained {
            disagreements.push(format!(
                "{what}\n   proxy:   {live:?}\n   explain: {explained:?}"
            ));
        } else if live.2 != c.rule {
            disagreements.push(format!(
                "{what}: both say {live:?}, expected rule {}",
                c.rule
            ));
        }
    }
    assert!(
        disagreements.is_empty(),
        "{} disagreement(s):\n{}",
        disagreements.len(),
        disagreements.join("\n")
    );
}

/// Runs the case through the proxy and returns what its log recorded.
async fn live_outcome(proxy: &TestProxy, c: &Case, nth: usize) -> Outcome {
    let mut s = connect_from(c.from, proxy.addr).await;
    let auth = c
        .user
        .map(|u| {
            let password = if u == "alice" {
                "wonderland"
            } else {
                "builder"
            };
            let token = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{password}"));
            format!("Proxy-Authorization: Basic {token}\r\n")
        })
        .unwrap_or_default();
    if let Some(rest) = c.url.strip_prefix("https://") {
        let authority = rest.trim_end_matches('/');
        let authority = if authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
            && !authority.ends_with(']')
        {
            authority.to_string()
        } else {
            format!("{authority}:443")
        };
        s.write_all(
            format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n{auth}\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let head = read_head(&mut s).await;
        if status_of(&head) == 200 {
            if let Some(sni) = c.sni {
                let config = rustls::ClientConfig::builder_with_provider(Arc::new(
                    rustls::crypto::ring::default_provider(),
                ))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth();
                let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
                let name = rustls::pki_types::ServerName::try_from(sni.to_string()).unwrap();
                // The handshake fails (nothing is trusted); the ClientHello went out.
                let _ = within(connector.connect(name, s)).await;
            } else {
                // No ClientHello: closing ends the tunnel and its record.
                drop(s);
            }
        }
    } else {
        s.write_all(
            format!("GET {} HTTP/1.1\r\nConnection: close\r\n{auth}\r\n", c.url).as_bytes(),
        )
        .await
        .unwrap();
        let mut out = Vec::new();
        let _ = within(s.read_to_end(&mut out)).await;
    }
    let log = proxy.log_lines(nth).await;
    let rec = &log[nth - 1];
    let field = |k: &str| rec[k].as_str().unwrap_or("?").to_string();
    (
        field("action"),
        field("mode"),
        field("rule"),
        field("reason"),
    )
}

/// Asks `socialgate explain` about the same case.
async fn explain_outcome(
    proxy: &TestProxy,
    c: &Case,
    resolve: &[String],
    admin: SocketAddr,
) -> Outcome {
    let policy = proxy.policy.path().to_str().unwrap().to_string();
    let proxy_addr = proxy.addr.to_string();
    let admin_addr = admin.to_string();
    let mut args: Vec<&str> = vec![
        "explain",
        "--policy",
        &policy,
        "--client",
        c.from,
        "--listen",
        &proxy_addr,
        "--listen",
        &admin_addr,
    ];
    for r in resolve {
        args.push("--resolve");
        args.push(r);
    }
    if let Some(u) = c.user {
        args.extend(["--user", u]);
    }
    if let Some(sni) = c.sni {
        args.extend(["--sni", sni]);
    }
    args.push(&c.url);
    let (code, out, err) = socialgate(&args).await;
    assert_eq!(code, 0, "explain failed: {err}{out}");
    let line = out
        .lines()
        .find(|l| l.starts_with("decision:"))
        .unwrap_or_else(|| panic!("no decision line in {out}"));
    // decision: ACTION (MODE) by RULE, reason REASON, stage STAGE
    let rest = line.trim_start_matches("decision:").trim();
    let (action, rest) = rest.split_once(' ').unwrap();
    let (mode, rest) = rest.split_once(") by ").unwrap();
    let (rule, rest) = rest.split_once(", reason ").unwrap();
    let reason = rest.split(',').next().unwrap();
    (
        action.to_string(),
        mode.trim_start_matches('(').to_string(),
        rule.to_string(),
        reason.to_string(),
    )
}
