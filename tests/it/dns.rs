//! Name resolution against a DNS server the test starts: answers cached
//! for their TTL, names that do not exist cached too, slow answers bounded
//! by the connect timeout, lookups in flight bounded, and answers that
//! point at private addresses refused as before.

use std::net::Ipv4Addr;
use std::time::Duration;

use socialgate::proxy::dns::DnsConfig;

use crate::support::*;

const LOCAL: Ipv4Addr = Ipv4Addr::LOCALHOST;

async fn proxy_asking(
    dns: &DnsServer,
    tweak: impl FnOnce(&mut socialgate::app::AppConfig),
) -> TestProxy {
    let servers = vec![dns.addr];
    TestProxy::start_in(PolicyDir::new(BASIC_POLICY), move |cfg| {
        cfg.proxy.dns = DnsConfig {
            servers,
            ..DnsConfig::default()
        };
        tweak(cfg);
    })
    .await
}

fn header<'a>(resp: &'a reqwest::Response, name: &str) -> &'a str {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

#[tokio::test]
async fn answers_come_from_the_configured_server_and_are_cached_for_their_ttl() {
    let origin = Origin::start().await;
    let dns = DnsServer::start(&[("ok.socialgate.test", DnsAnswer::A(LOCAL, 300))]).await;
    let proxy = proxy_asking(&dns, |_| {}).await;
    let c = proxy.client();
    let url = format!("http://ok.socialgate.test:{}/hello", origin.port());
    for _ in 0..3 {
        let r = within(c.get(&url).send()).await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.unwrap(), "hello from origin");
    }
    assert_eq!(
        dns.asked("ok.socialgate.test", "A"),
        1,
        "one question for three requests"
    );
    let log = proxy.exactly_log_lines(3).await;
    assert!(log.iter().all(|l| l["host"] == "ok.socialgate.test"));
}

#[tokio::test]
async fn a_name_that_does_not_exist_gets_502_and_is_asked_for_once() {
    let dns = DnsServer::start(&[("gone.socialgate.test", DnsAnswer::NxDomain(30))]).await;
    let proxy = proxy_asking(&dns, |_| {}).await;
    let c = proxy.client();
    for _ in 0..3 {
        let r = within(c.get("http://gone.socialgate.test/").send())
            .await
            .unwrap();
        assert_eq!(r.status(), 502);
        assert_eq!(header(&r, "x-socialgate-error"), "upstream-resolve");
        let body = r.text().await.unwrap();
        assert!(body.contains("does not exist"), "{body}");
    }
    assert_eq!(
        dns.asked("gone.socialgate.test", "A"),
        1,
        "NXDOMAIN is cached (negative caching)"
    );
    let log = proxy.exactly_log_lines(3).await;
    assert!(log
        .iter()
        .all(|l| l["error"] == "upstream-resolve" && l["status"] == 502));
}

#[tokio::test]
async fn answers_pointing_at_private_or_link_local_addresses_are_refused() {
    let dns = DnsServer::start(&[
        (
            "intranet.socialgate.test",
            DnsAnswer::A(Ipv4Addr::new(10, 9, 8, 7), 60),
        ),
        (
            "metadata.socialgate.test",
            DnsAnswer::A(Ipv4Addr::new(169, 254, 169, 254), 60),
        ),
    ])
    .await;
    let proxy = proxy_asking(&dns, |_| {}).await;
    let c = proxy.client();
    for name in ["intranet.socialgate.test", "metadata.socialgate.test"] {
        let r = within(c.get(format!("http://{name}/latest/meta-data/")).send())
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{name}");
        assert_eq!(
            header(&r, "x-socialgate-reason"),
            "destination-private",
            "{name}"
        );
        // And as a tunnel.
        let (code, out) = curl(&["-x", &proxy.url(), "-p", &format!("https://{name}/")]).await;
        assert_ne!(code, 0, "{name}: {out}");
    }
    let log = proxy.exactly_log_lines(4).await;
    assert!(
        log.iter().all(|l| l["reason"] == "destination-private"),
        "{log:#?}"
    );
}

#[tokio::test]
async fn a_slow_answer_gets_504_while_other_names_still_resolve() {
    let origin = Origin::start().await;
    let dns = DnsServer::start(&[
        (
            "slow.socialgate.test",
            DnsAnswer::Slow(Duration::from_secs(4), LOCAL),
        ),
        ("ok.socialgate.test", DnsAnswer::A(LOCAL, 60)),
    ])
    .await;
    let proxy = proxy_asking(&dns, |cfg| {
        cfg.proxy.connect_timeout = Duration::from_secs(1);
    })
    .await;
    let c = proxy.client();
    let slow = c
        .get(format!(
            "http://slow.socialgate.test:{}/hello",
            origin.port()
        ))
        .send();
    let ok = async {
        // Asked while the slow lookup is pending.
        let r = c
            .get(format!("http://ok.socialgate.test:{}/hello", origin.port()))
            .send()
            .await
            .unwrap();
        (r.status(), tokio::time::Instant::now())
    };
    let started = tokio::time::Instant::now();
    let (slow, (ok_status, ok_at)) = within(async { tokio::join!(slow, ok) }).await;
    let slow = slow.unwrap();
    assert_eq!(ok_status, 200);
    assert!(
        ok_at - started < Duration::from_millis(900),
        "the fast name waited"
    );
    assert_eq!(slow.status(), 504);
    assert_eq!(header(&slow, "x-socialgate-error"), "upstream-timeout");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "bounded by --connect-timeout"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookups_in_flight_are_bounded() {
    let table: Vec<(String, DnsAnswer)> = (0..6)
        .map(|i| {
            (
                format!("slow{i}.socialgate.test"),
                DnsAnswer::Slow(Duration::from_millis(400), LOCAL),
            )
        })
        .collect();
    let refs: Vec<(&str, DnsAnswer)> = table.iter().map(|(n, a)| (n.as_str(), *a)).collect();
    let dns = DnsServer::start(&refs).await;
    let origin = Origin::start().await;
    let proxy = proxy_asking(&dns, |cfg| {
        cfg.proxy.dns.max_in_flight = 2;
        cfg.proxy.connect_timeout = Duration::from_secs(5);
    })
    .await;
    let c = proxy.client();
    let started = tokio::time::Instant::now();
    let all = (0..6).map(|i| {
        c.get(format!(
            "http://slow{i}.socialgate.test:{}/hello",
            origin.port()
        ))
        .send()
    });
    let results = within(futures_util::future::join_all(all)).await;
    for r in results {
        assert_eq!(r.unwrap().status(), 200, "each got its turn");
    }
    // Six lookups of 400 ms, two at a time, take at least three rounds.
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(1150), "not bounded: {took:?}");
    // Each lookup asks several questions (A, AAAA, perhaps twice); the
    // server had questions about at most two names pending at once, give
    // or take a duplicate answered a moment after its lookup finished.
    let most = dns.most_names.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        (2..=4).contains(&most),
        "names with questions pending at once: {most}"
    );
}
