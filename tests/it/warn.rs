//! `action: warn` end to end: the warning page on a page load, the short
//! 403 for everything else, Continue (a signed link, a 303 back, then the
//! whole platform passes), links that must be refused, `warn.remember`
//! running out on the proxy's clock, HTTPS tunnels that cannot show it,
//! the report's continue rate, and two replicas sharing acknowledgements
//! through a real `redis-server` (and what happens when it dies).

use std::path::PathBuf;
use std::time::Duration;

use crate::support::*;
use socialgate::report::model::Cell;

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
warn:
  remember: 2h
rules:
  - id: tiktok-caution
    groups: [staff]
    platforms: [tiktok]
    action: warn
    message: TikTok is for breaks, not for work.
"#;

/// Another TikTok domain (a CDN), pinned to 127.0.0.1 like the test hosts.
const CDN: &str = "v16.tiktokcdn.com";

async fn start(policy: &str) -> TestProxy {
    start_with(PolicyDir::new(policy), None).await
}

/// Starts a proxy that also resolves [`CDN`]; `key` shares a pseudonym
/// key file between replicas.
async fn start_with(dir: PolicyDir, key: Option<PathBuf>) -> TestProxy {
    TestProxy::start_in(dir, |cfg| {
        cfg.proxy
            .resolve
            .insert(CDN.to_string(), "127.0.0.1".parse().unwrap());
        if let Some(k) = key {
            cfg.pseudonym_key = k;
        }
    })
    .await
}

/// A browser through `proxy` from `from`: follows no redirects, so each
/// step is seen.
fn browser(proxy: &TestProxy, from: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .proxy(reqwest::Proxy::all(proxy.url()).unwrap())
        .local_address(Some(from.parse().unwrap()))
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
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

/// An image on a page.
async fn subresource(c: &reqwest::Client, url: &str) -> reqwest::Response {
    c.get(url)
        .header("Sec-Fetch-Mode", "no-cors")
        .header("Sec-Fetch-Dest", "image")
        .header("Accept", "image/avif,image/webp,*/*")
        .send()
        .await
        .unwrap()
}

fn warn_header(r: &reqwest::Response) -> String {
    r.headers()
        .get("x-socialgate-warn")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

/// The Continue link on a warning page (relative, on the same site).
fn continue_href(page: &str) -> String {
    let at = page
        .find("href=\"/__socialgate/continue?t=")
        .unwrap_or_else(|| panic!("no Continue link in {page}"));
    let rest = &page[at + 6..];
    rest[..rest.find('"').unwrap()].to_string()
}

/// Loads `url` as a page, expects the warning, returns the Continue link.
async fn warned(c: &reqwest::Client, url: &str) -> String {
    let r = navigate(c, url).await;
    assert_eq!(r.status(), 403, "{url}");
    assert_eq!(warn_header(&r), "shown");
    continue_href(&r.text().await.unwrap())
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

/// The `warn` value of each line, after checking every line against the
/// schema docs/access-log.md documents.
fn warns_logged(lines: &[serde_json::Value]) -> Vec<String> {
    let schema = crate::observability::documented_schema();
    for l in lines {
        schema.check(l, &["tiktok-caution"]);
    }
    lines
        .iter()
        .map(|l| l["warn"].as_str().unwrap_or("-").to_string())
        .collect()
}

#[tokio::test]
async fn warns_on_a_page_load_holds_subresources_and_continue_lets_the_whole_platform_through() {
    let origin = Origin::start().await;
    let proxy = start(POLICY).await;
    let c = browser(&proxy, "127.0.0.1");
    let port = origin.port();
    let page = format!("http://www.tiktok.com:{port}/hello");

    // The page load gets the warning, in the block page's style.
    let r = navigate(&c, &page).await;
    assert_eq!(r.status(), 403);
    assert_eq!(warn_header(&r), "shown");
    assert_eq!(r.headers()["x-socialgate-rule"], "tiktok-caution");
    assert_eq!(r.headers()["cache-control"], "no-store");
    let body = r.text().await.unwrap();
    for text in [
        "Before you continue",
        "TikTok is for breaks, not for work.",
        "Test Corp",
        "Ask the test desk.",
        "Continue to TikTok",
        "remembered for 2 hours",
    ] {
        assert!(body.contains(text), "{text:?} missing from {body}");
    }
    let href = continue_href(&body);

    // An image, and an API call, get a short 403 while not acknowledged.
    let r = subresource(&c, &page).await;
    assert_eq!(r.status(), 403);
    assert_eq!(warn_header(&r), "held");
    let text = r.text().await.unwrap();
    assert!(text.contains("has not been acknowledged"), "{text}");
    assert!(text.contains(&format!(
        "Open http://www.tiktok.com:{port}/ in your browser"
    )));
    let r = c
        .get(&page)
        .header("Sec-Fetch-Mode", "cors")
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(r.headers()["content-type"], "application/json");
    let json: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert_eq!(json["warn"], "held");
    assert_eq!(json["rule"], "tiktok-caution");
    assert_eq!(json["platform"], "tiktok");

    // Continue: remembered, then a 303 back to the page, on the same site.
    let r = navigate(&c, &format!("http://www.tiktok.com:{port}{href}")).await;
    assert_eq!(r.status(), 303);
    assert_eq!(warn_header(&r), "continued");
    assert_eq!(r.headers()["location"], page.as_str());
    let r = navigate(&c, &page).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "hello from origin");

    // Still allowed on the next request, and on another domain of the
    // platform (its CDN), which no cookie could have covered.
    assert_eq!(subresource(&c, &page).await.status(), 200);
    let r = subresource(&c, &format!("http://{CDN}:{port}/hello")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "hello from origin");

    // Another person on the same network has not continued.
    let other = browser(&proxy, "127.0.0.2");
    assert_eq!(warn_header(&subresource(&other, &page).await), "held");

    let lines = proxy.exactly_log_lines(8).await;
    assert_eq!(
        warns_logged(&lines),
        [
            "shown",
            "held",
            "held",
            "continued",
            "acknowledged",
            "acknowledged",
            "acknowledged",
            "held"
        ]
    );
    for l in &lines {
        assert_eq!(l["action"], "warn", "{l}");
        assert_eq!(l["rule"], "tiktok-caution", "{l}");
        assert_eq!(l["platform"], "tiktok", "{l}");
    }
    let cont = &lines[3];
    assert_eq!(cont["status"], 303);
    assert!(
        !cont.to_string().contains("t="),
        "the token stays out of the log: {cont}"
    );
    let outcome = |o: &str| {
        metric(
            &proxy,
            "socialgate_warnings_total",
            &[
                ("group", "staff"),
                ("platform", "tiktok"),
                ("rule", "tiktok-caution"),
                ("outcome", o),
            ],
        )
    };
    assert_eq!(outcome("shown"), 1);
    assert_eq!(outcome("held"), 3);
    assert_eq!(outcome("continued"), 1);
    assert_eq!(outcome("acknowledged"), 3);
}

#[tokio::test]
async fn a_forged_expired_or_borrowed_continue_link_is_refused_and_remembers_nothing() {
    let origin = Origin::start().await;
    let proxy = start(POLICY).await;
    let port = origin.port();
    let page = format!("http://www.tiktok.com:{port}/hello");
    let alice = browser(&proxy, "127.0.0.1");
    let bob = browser(&proxy, "127.0.0.2");
    let href = warned(&alice, &page).await;
    let at = |host: &str, href: &str| format!("http://{host}:{port}{href}");

    // Each refusal is a page saying what is wrong and what to do.
    let forged = href.replacen("continue?t=e", "continue?t=f", 1);
    let forged = if forged == href {
        format!("{href}x")
    } else {
        forged
    };
    #[rustfmt::skip]
    let cases: Vec<(&reqwest::Client, String, &str)> = vec![
        (&alice, at("www.tiktok.com", &forged), "damaged or was not made by this proxy"),
        (&alice, at("www.tiktok.com", "/__socialgate/continue"), "damaged or was not made by this proxy"),
        (&bob, at("www.tiktok.com", &href), "made for someone else"),
        (&alice, at(CDN, &href), "made for another site (www.tiktok.com)"),
    ];
    for (client, url, says) in &cases {
        let r = navigate(client, url).await;
        assert_eq!(r.status(), 403, "{url}");
        assert_eq!(warn_header(&r), "bad-link", "{url}");
        let body = r.text().await.unwrap();
        assert!(body.contains(says), "{says:?} missing for {url}: {body}");
        assert!(body.contains("Load the page again"), "{body}");
    }

    // Expired: the link is valid for warn.link_expiry (15 minutes).
    proxy
        .app()
        .state
        .config
        .clock
        .advance(Duration::from_secs(15 * 60 + 1));
    let r = navigate(&alice, &at("www.tiktok.com", &href)).await;
    assert_eq!(r.status(), 403);
    let body = r.text().await.unwrap();
    assert!(body.contains("has expired"), "{body}");
    assert!(
        body.contains(&format!("href=\"{page}\"")),
        "retry goes back to the page asked for: {body}"
    );

    // None of it acknowledged anything: both are still held.
    assert_eq!(warn_header(&subresource(&alice, &page).await), "held");
    assert_eq!(warn_header(&subresource(&bob, &page).await), "held");
    // A fresh link still works.
    let href = warned(&alice, &page).await;
    assert_eq!(
        navigate(&alice, &at("www.tiktok.com", &href))
            .await
            .status(),
        303
    );
    assert_eq!(subresource(&alice, &page).await.status(), 200);
}

#[tokio::test]
async fn a_continue_is_forgotten_after_warn_remember() {
    let origin = Origin::start().await;
    let proxy = start(POLICY).await;
    let c = browser(&proxy, "127.0.0.1");
    let page = format!("http://www.tiktok.com:{}/hello", origin.port());
    let href = warned(&c, &page).await;
    let url = format!("http://www.tiktok.com:{}{href}", origin.port());
    assert_eq!(navigate(&c, &url).await.status(), 303);
    let clock = &proxy.app().state.config.clock;
    // warn.remember is 2h: at 1h59m it still holds...
    clock.advance(Duration::from_secs(119 * 60));
    assert_eq!(navigate(&c, &page).await.status(), 200);
    // ...and at 2h01m the warning is back.
    clock.advance(Duration::from_secs(2 * 60));
    let r = navigate(&c, &page).await;
    assert_eq!(r.status(), 403);
    assert_eq!(warn_header(&r), "shown");
}

#[tokio::test]
async fn an_https_tunnel_under_a_warn_rule_passes_and_is_recorded_unshown() {
    let tls = TlsOrigin::start(&["www.tiktok.com"]).await;
    let proxy = start(POLICY).await;
    let r = proxy
        .tls_client(&tls)
        .get(format!("https://www.tiktok.com:{}/hello", tls.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "hello from origin");
    let lines = proxy.exactly_log_lines(1).await;
    let t = &lines[0];
    assert_eq!(t["kind"], "tunnel");
    assert_eq!(t["action"], "warn");
    assert_eq!(t["warn"], "unshown");
    assert_eq!(t["sni"], "www.tiktok.com");
    assert_eq!(
        metric(
            &proxy,
            "socialgate_warnings_total",
            &[("outcome", "unshown")]
        ),
        1
    );
}

#[tokio::test]
async fn the_continue_path_is_never_forwarded_and_never_leads_off_site() {
    let origin = Origin::start().await;
    let proxy = start(POLICY).await;
    let port = origin.port();
    let c = browser(&proxy, "127.0.0.1");
    // A WebSocket to the platform is held, not upgraded, until the person
    // continued.
    let resp = raw_exchange(
        proxy.addr,
        format!("GET http://www.tiktok.com:{port}/ws HTTP/1.1\r\nHost: www.tiktok.com\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!(status_of(&resp), 403, "{resp}");

    // A page whose path looks like another site: the Continue still lands
    // on the site the warning was shown for.
    let odd = format!("http://www.tiktok.com:{port}//evil.example/x?y=1");
    let href = warned(&c, &odd).await;
    let r = navigate(&c, &format!("http://www.tiktok.com:{port}{href}")).await;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], odd.as_str());

    // On a site no warning covers, a valid link is refused and nothing
    // reaches the origin; the same goes for raw, hostile requests.
    let before = origin.connections();
    let r = navigate(&c, &format!("http://www.linkedin.com:{port}{href}")).await;
    assert_eq!(r.status(), 403);
    assert_eq!(warn_header(&r), "bad-link");
    let huge = "A".repeat(5000);
    for raw in [
        format!("GET http://www.linkedin.com:{port}/__socialgate/continue?t={huge}.{huge} HTTP/1.1\r\nHost: www.linkedin.com\r\nConnection: close\r\n\r\n"),
        format!("GET http://www.tiktok.com:{port}/__socialgate/continue?t=%65yJ2.abc HTTP/1.1\r\nHost: www.tiktok.com\r\nConnection: close\r\n\r\n"),
        format!("POST http://www.tiktok.com:{port}/__socialgate/continue?t=a.b HTTP/1.1\r\nHost: www.tiktok.com\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello"),
        format!("GET http://www.tiktok.com:{port}/__socialgate/continue?t=..&t=. HTTP/1.0\r\n\r\n"),
    ] {
        let resp = raw_exchange(proxy.addr, raw.as_bytes()).await;
        assert_eq!(status_of(&resp), 403, "{resp}");
        assert!(resp.to_ascii_lowercase().contains("x-socialgate-warn: bad-link"), "{resp}");
    }
    assert_eq!(origin.connections(), before, "nothing was forwarded");
}

#[tokio::test]
async fn explain_and_check_say_what_a_warn_rule_does() {
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
        ];
        args.extend_from_slice(extra);
        args.push(url);
        let (code, out, err) = socialgate(&args).await;
        assert_eq!(code, 0, "{err}");
        out
    };
    let out = explain("http://www.tiktok.com/", &[]).await;
    assert!(
        out.contains("decision: warn (enforce) by tiktok-caution"),
        "{out}"
    );
    assert!(out.contains("stage:warn"), "{out}");
    assert!(
        out.contains("warning:  shown until the person continues"),
        "{out}"
    );
    assert!(out.contains("remembered for 2h"), "{out}");
    let out = explain("http://www.tiktok.com/", &["--acknowledged"]).await;
    assert!(out.contains("warning:  acknowledged"), "{out}");
    let out = explain("https://www.tiktok.com/", &[]).await;
    assert!(out.contains("warning:  not shown"), "{out}");
    assert!(out.contains("recorded warn: unshown"), "{out}");

    let (code, out, err) = socialgate(&["check", policy]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(": ok ("), "{out}");

    // Policy tests can expect a warning.
    dir.write(
        "tests.yaml",
        "tests:\n  - {name: warned, client: 127.0.0.1, url: \"http://www.tiktok.com/\", expect: {action: warn, rule: tiktok-caution}}\n  - {name: tunnel, client: 127.0.0.1, url: \"https://www.tiktok.com/\", expect: {action: warn, mode: enforce}}\n",
    );
    let (code, out, err) = socialgate(&["test", policy]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("2 passed, 0 failed"), "{out}");
    let (code, out, err) = socialgate(&["check", policy]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("note: policy.yaml: rules[0]: rule \"tiktok-caution\" warns on TikTok"),
        "{out}"
    );
    assert!(out.contains("recorded warn: unshown"), "{out}");
}

#[test]
fn warn_settings_that_cannot_work_are_refused_with_a_fix() {
    let staff = "version: 1\ngroups:\n  staff:\n    networks: [10.0.0.0/8]\n";
    #[rustfmt::skip]
    let cases: &[(String, &str, &str, &str)] = &[
        (format!("{staff}defaults:\n  catalog: warn\n"), "defaults.catalog", "a rule's action", "add a rule with `action: warn`"),
        (format!("{staff}tunnels:\n  sni_mismatch: warn\n"), "tunnels.sni_mismatch", "a rule's action", "write `allow` or `block`"),
        (format!("{staff}defaults:\n  other: read_only\n"), "defaults.other", "a rule's action", "`action: read_only`"),
        (format!("{staff}rules:\n  - {{id: r, platforms: [tiktok], action: block, unknown: block}}\n"), "rules[0].unknown", "only applies to `action: read_only`", "make the rule read_only"),
        (format!("{staff}rules:\n  - {{id: r, platforms: [tiktok], action: read_only, unknown: maybe}}\n"), "rules[0].unknown", "unknown value", "`block`"),
        (format!("{staff}rules:\n  - {{id: r, platforms: [tiktok], action: caution}}\n"), "rules[0].action", "unknown action", "`allow`, `block`, `warn` or `read_only`"),
        (format!("{staff}warn:\n  remember: forever\n"), "warn.remember", "is not a duration", "e.g. `1h`"),
        (format!("{staff}warn:\n  remember: 10s\n"), "warn.remember", "out of range", "between 1m and 30d"),
        (format!("{staff}warn:\n  link_expiry: 2d\n"), "warn.link_expiry", "out of range", "between 1m and 1d"),
        (format!("{staff}warn:\n  remember: 1 month\n"), "warn.remember", "is not a duration", "(s, m, h, d)"),
        (format!("{staff}state:\n  redis: http://redis:6379/\n"), "state.redis", "is not a redis://", "redis+unix://"),
        (format!("{staff}state:\n  redis: rediss://redis:6379/\n"), "state.redis", "TLS to Redis", "trusted network"),
        (format!("{staff}warn:\n  remeber: 1h\n"), "", "unknown field `remeber`", "did you mean `remember`?"),
    ];
    for (policy, path, message, hint) in cases {
        let dir = PolicyDir::new(policy);
        let errors = match socialgate::policy::load_dir(dir.path()) {
            Ok(_) => panic!("accepted: {policy}"),
            Err(e) => e.0,
        };
        let e = errors
            .iter()
            .find(|e| e.path == *path || (path.is_empty() && e.location.is_some()))
            .unwrap_or_else(|| panic!("no error at {path:?}: {errors:#?}"));
        let text = e.to_string();
        assert!(text.contains(message), "{message:?} not in {text}");
        assert!(text.contains(hint), "{hint:?} not in {text}");
    }
    // And the good ones load.
    let ok = format!("{staff}warn: {{remember: 1d, link_expiry: 10m}}\nstate: {{redis: \"redis+unix:///run/redis/redis.sock\"}}\n");
    let p = socialgate::policy::load_dir(PolicyDir::new(&ok).path()).unwrap();
    assert_eq!(p.warn.remember, Duration::from_secs(86_400));
    assert_eq!(p.warn.link_expiry, Duration::from_secs(600));
    assert!(p.state.redis.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_shows_the_continue_rate_per_group_and_platform_k_anonymously() {
    // Six signed-in users are warned on TikTok; five continue and use it.
    let origin = Origin::start().await;
    let dir = PolicyDir::new(&POLICY.replace(
        "groups:\n  staff:\n    networks: [127.0.0.0/8]",
        "auth:\n  htpasswd: users.htpasswd\ngroups:\n  staff:\n    users: [u1, u2, u3, u4, u5, u6]",
    ));
    let hash = bcrypt::hash("pw", 4).unwrap();
    dir.write(
        "users.htpasswd",
        &(1..=6)
            .map(|i| format!("u{i}:{hash}\n"))
            .collect::<String>(),
    );
    let proxy = start_with(dir, None).await;
    let port = origin.port();
    let page = format!("http://www.tiktok.com:{port}/hello");
    for i in 1..=6 {
        let c = reqwest::Client::builder()
            .proxy(
                reqwest::Proxy::all(proxy.url())
                    .unwrap()
                    .basic_auth(&format!("u{i}"), "pw"),
            )
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let href = warned(&c, &page).await;
        if i <= 5 {
            let r = navigate(&c, &format!("http://www.tiktok.com:{port}{href}")).await;
            assert_eq!(r.status(), 303);
            assert_eq!(navigate(&c, &page).await.status(), 200);
        }
    }
    proxy.exactly_log_lines(6 + 5 * 2).await;
    let row = |k: u64| {
        let mut args = socialgate::report::ReportArgs::new(vec![proxy.log_path.clone()]);
        args.k = k;
        let report = socialgate::report::build_report(&args).unwrap();
        let strategy = report.strategy.unwrap();
        let tiktok = strategy
            .warnings
            .iter()
            .find(|r| r.group == "staff" && r.platform == "tiktok")
            .unwrap_or_else(|| panic!("{:?}", strategy.warnings))
            .clone();
        // A row whose numbers would all be hidden is left out.
        let adoption = strategy
            .platforms
            .iter()
            .find(|r| r.group == "staff" && r.platform == "tiktok")
            .cloned();
        (tiktok, adoption)
    };
    let (w, adoption) = row(5);
    let adoption = adoption.expect("the adoption row, with 5 active users");
    assert_eq!(w.warned_persons, Cell::Value(6));
    assert_eq!(w.continued_persons, Cell::Value(5));
    assert_eq!(w.continue_rate, Cell::Value(5.0 / 6.0));
    assert_eq!(w.warnings_shown, Cell::Value(6));
    assert_eq!(w.continues, Cell::Value(5));
    // Only the pages after Continue are use of the platform.
    assert_eq!(adoption.active_users, Cell::Value(5));
    // With k = 6, the five who continued are too few to show.
    let (w, adoption) = row(6);
    assert!(
        adoption.is_none(),
        "5 active users and their time are hidden, so the row is left out"
    );
    assert_eq!(w.warned_persons, Cell::Value(6));
    assert!(w.continued_persons.is_suppressed());
    assert!(w.continue_rate.is_suppressed());
    assert!(w.continues.is_suppressed());

    // The HTML report carries the table.
    let mut args = socialgate::report::ReportArgs::new(vec![proxy.log_path.clone()]);
    let out = tempfile::tempdir().unwrap();
    args.out = Some(out.path().join("r.html"));
    socialgate::report::run(&args).unwrap();
    let html = std::fs::read_to_string(out.path().join("r.html")).unwrap();
    assert!(html.contains("Warnings and continues by group and platform"));
    assert!(html.contains("t-warnings"));

    // simulate: the same policy changes nothing (continuing is the person's
    // doing, not the policy's); blocking TikTok instead would refuse it all.
    let log = proxy.log_path.to_str().unwrap();
    let simulate = |dir: std::path::PathBuf| async move {
        let (code, out, err) = socialgate(&[
            "simulate",
            "--format",
            "json",
            "--log",
            log,
            "--policy",
            dir.to_str().unwrap(),
        ])
        .await;
        assert_eq!(code, 0, "{err}");
        serde_json::from_str::<serde_json::Value>(&out).unwrap()
    };
    let same = simulate(proxy.policy.path().to_path_buf()).await;
    assert_eq!(same["changed"], 0, "{same}");
    let block = PolicyDir::new(
        &std::fs::read_to_string(proxy.policy.path().join("policy.yaml"))
            .unwrap()
            .replace("action: warn", "action: block"),
    );
    std::fs::copy(
        proxy.policy.path().join("users.htpasswd"),
        block.path().join("users.htpasswd"),
    )
    .unwrap();
    let doc = simulate(block.path().to_path_buf()).await;
    assert_eq!(doc["changed"], 16, "{doc}");
    assert_eq!(doc["changes"][0]["from"], "warned", "{doc}");
    assert_eq!(doc["changes"][0]["to"], "refused", "{doc}");
}

/// [`POLICY`] with acknowledgements in `redis`.
fn in_redis(redis: &RedisServer) -> String {
    format!("{POLICY}state:\n  redis: \"{}\"\n", redis.url())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_one_acknowledgement_through_redis() {
    let Some(redis) =
        RedisServer::start("two_replicas_share_one_acknowledgement_through_redis").await
    else {
        return;
    };
    let origin = Origin::start().await;
    // Replicas share the pseudonym key (a Secret in Kubernetes), and so
    // the warn key derived from it.
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("pseudonym.key");
    let a = start_with(PolicyDir::new(&in_redis(&redis)), Some(key.clone())).await;
    let b = start_with(PolicyDir::new(&in_redis(&redis)), Some(key)).await;
    let port = origin.port();
    let page = format!("http://www.tiktok.com:{port}/hello");
    let (on_a, on_b) = (browser(&a, "127.0.0.1"), browser(&b, "127.0.0.1"));

    // Warned on A; the Continue link is taken on B.
    let href = warned(&on_a, &page).await;
    assert_eq!(warn_header(&subresource(&on_b, &page).await), "held");
    let r = navigate(&on_b, &format!("http://www.tiktok.com:{port}{href}")).await;
    assert_eq!(r.status(), 303, "B accepts A's link");
    // Both now let the person through, on every TikTok domain.
    assert_eq!(navigate(&on_a, &page).await.status(), 200);
    assert_eq!(
        subresource(&on_b, &format!("http://{CDN}:{port}/hello"))
            .await
            .status(),
        200
    );
    let lines = a.exactly_log_lines(2).await;
    assert_eq!(warns_logged(&lines), ["shown", "acknowledged"]);
    let lines = b.exactly_log_lines(3).await;
    assert_eq!(warns_logged(&lines), ["held", "continued", "acknowledged"]);
    // Another person is still warned on both.
    assert_eq!(
        warn_header(&subresource(&browser(&a, "127.0.0.3"), &page).await),
        "held"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_redis_dies_the_warning_comes_back_and_the_fault_is_counted() {
    let Some(mut redis) =
        RedisServer::start("when_redis_dies_the_warning_comes_back_and_the_fault_is_counted").await
    else {
        return;
    };
    let origin = Origin::start().await;
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("pseudonym.key");
    let a = start_with(PolicyDir::new(&in_redis(&redis)), Some(key.clone())).await;
    let b = start_with(PolicyDir::new(&in_redis(&redis)), Some(key)).await;
    let port = origin.port();
    let page = format!("http://www.tiktok.com:{port}/hello");
    let (on_a, on_b) = (browser(&a, "127.0.0.1"), browser(&b, "127.0.0.1"));
    // The person continues through B; A has not seen it yet.
    let href = warned(&on_a, &page).await;
    assert_eq!(
        navigate(&on_b, &format!("http://www.tiktok.com:{port}{href}"))
            .await
            .status(),
        303
    );
    let errors =
        |p: &TestProxy, op: &str| metric(p, "socialgate_warn_store_errors_total", &[("op", op)]);

    redis.kill().await;
    // A cannot ask Redis: it fails toward the warning, and counts it.
    let r = navigate(&on_a, &page).await;
    assert_eq!(r.status(), 403);
    assert_eq!(warn_header(&r), "shown");
    assert_eq!(errors(&a, "lookup"), 1);
    // A Continue cannot be remembered: the person is told to try again.
    let href = continue_href(&r.text().await.unwrap());
    let r = navigate(&on_a, &format!("http://www.tiktok.com:{port}{href}")).await;
    assert_eq!(r.status(), 503);
    assert_eq!(warn_header(&r), "unsaved");
    assert!(r.text().await.unwrap().contains("could not be saved"));
    assert_eq!(errors(&a, "save"), 1);
    // B saved the Continue itself and knows until when it holds: the
    // person passes there without Redis. Someone else is warned again.
    assert_eq!(navigate(&on_b, &page).await.status(), 200);
    assert_eq!(errors(&b, "lookup"), 0);
    let other = browser(&b, "127.0.0.4");
    assert_eq!(warn_header(&subresource(&other, &page).await), "held");
    assert_eq!(errors(&b, "lookup"), 1);

    assert_eq!(
        warns_logged(&a.exactly_log_lines(3).await),
        ["shown", "shown", "unsaved"]
    );
    assert_eq!(
        warns_logged(&b.exactly_log_lines(3).await),
        ["continued", "acknowledged", "held"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_is_logged_once_when_it_starts_and_once_when_it_ends() {
    let Some(mut redis) =
        RedisServer::start("a_redis_outage_is_logged_once_when_it_starts_and_once_when_it_ends")
            .await
    else {
        return;
    };
    let origin = Origin::start().await;
    let dir = PolicyDir::new(&in_redis(&redis));
    let port = origin.port();
    let sg = Spawned::run(
        dir.path(),
        &[
            "--resolve",
            "www.tiktok.com=127.0.0.1",
            "--access-log",
            "off",
        ],
    )
    .await;
    let c = reqwest::Client::builder()
        .proxy(reqwest::Proxy::all(format!("http://{}", sg.addr)).unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let page = format!("http://www.tiktok.com:{port}/hello");
    assert_eq!(warn_header(&subresource(&c, &page).await), "held");
    redis.kill().await;
    for _ in 0..5 {
        assert_eq!(warn_header(&subresource(&c, &page).await), "held");
    }
    let line = sg.stderr_line("Redis cannot be reached").await;
    assert!(line.contains("redis.sock"), "{line}");
    redis.restart().await;
    // The back-off lets a new connection be tried within a second.
    eventually_async("socialgate reconnects to Redis", || async {
        subresource(&c, &page).await;
        sg.stderr().contains("Redis answers again")
    })
    .await;
    let log = sg.stderr();
    assert_eq!(
        log.matches("Redis cannot be reached").count(),
        1,
        "one line per episode, not per request:\n{log}"
    );
}
