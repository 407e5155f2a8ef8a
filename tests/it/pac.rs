//! `/proxy.pac` as a browser uses it: headless Chromium configured with
//! `--proxy-pac-url` sends a public site through socialgate and an
//! intranet name from the policy's `pac.direct_domains` straight to its
//! server.

use std::path::Path;
use std::time::Duration;

use crate::support::*;

const CHROMIUM: &str = "/usr/bin/chromium";

/// Loads `url` in headless Chromium with `flags` and returns the DOM it
/// printed (60 s at most: starting a browser on a busy machine is slow).
async fn chromium_dom(profile: &Path, flags: &[String], url: &str) -> String {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: install it with `apt-get update && apt-get install -y chromium` (.ci/run does)"
    );
    let run = tokio::process::Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(flags)
        .arg("--dump-dom")
        .arg(url)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("chromium finished within 60 s")
        .expect("chromium runs");
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        dom.contains("hello from origin"),
        "chromium did not load {url}: {dom}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    dom
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_sends_public_sites_through_the_proxy_and_intranet_names_direct() {
    let public = Origin::start().await;
    let intranet = Origin::start().await;
    let policy = format!(
        "{BASIC_POLICY}pac:\n  direct_domains: [example.test]\n  direct_networks: [10.0.0.0/8]\n"
    );
    let proxy = TestProxy::start(&policy).await;
    let admin = proxy.app().admin_addr.unwrap();
    let profile = tempfile::tempdir().unwrap();
    let flags = [
        format!("--proxy-pac-url=http://{admin}/proxy.pac"),
        // The intranet name lives on the intranet origin; the public name
        // resolves (for the PAC's isInNet) outside every direct network.
        format!(
            "--host-resolver-rules=MAP intranet.example.test 127.0.0.1:{}, MAP example.org 192.0.2.1",
            intranet.port()
        ),
    ];

    // Direct: Chromium connects to the intranet origin itself.
    chromium_dom(profile.path(), &flags, "http://intranet.example.test/hello").await;
    assert!(
        intranet.connections() >= 1,
        "the intranet origin was not reached"
    );

    // Proxied: socialgate fetches the page and logs it.
    chromium_dom(
        profile.path(),
        &flags,
        &format!("http://example.org:{}/hello", public.port()),
    )
    .await;
    assert!(public.connections() >= 1);
    let lines = proxy.log_lines(1).await;
    assert!(
        lines
            .iter()
            .any(|l| l["host"] == "example.org" && l["path"] == "/hello" && l["status"] == 200),
        "{lines:#?}"
    );
    // The intranet page was loaded first, so its line would be there by now.
    assert!(
        !lines
            .iter()
            .any(|l| l["host"].as_str().unwrap_or("").ends_with("example.test")),
        "the intranet request went through socialgate: {lines:#?}"
    );
}

async fn fetch_pac(proxy: &TestProxy) -> String {
    let admin = proxy.app().admin_addr.unwrap();
    let resp = reqwest::get(format!("http://{admin}/proxy.pac"))
        .await
        .unwrap();
    assert_eq!(
        resp.headers()["content-type"],
        "application/x-ns-proxy-autoconfig"
    );
    resp.text().await.unwrap()
}

#[tokio::test]
async fn the_pac_file_follows_the_policy_bypass_list_and_its_reloads() {
    // No `pac:` section: .local names, the private ranges and loopback.
    let proxy = TestProxy::start(BASIC_POLICY).await;
    let pac = fetch_pac(&proxy).await;
    for line in [
        "if (isPlainHostName(host) || host === \"localhost\") {",
        "if (host === \"local\" || dnsDomainIs(host, \".local\")) {",
        "var ip = dnsResolve(host);",
        "if (ip && (isInNet(ip, \"10.0.0.0\", \"255.0.0.0\") ||",
        "isInNet(ip, \"172.16.0.0\", \"255.240.0.0\") ||",
        "isInNet(ip, \"127.0.0.0\", \"255.0.0.0\"))) {",
        &format!("return \"PROXY {}\";", proxy.addr),
    ] {
        assert!(pac.lines().any(|l| l.trim() == line), "{line}\n{pac}");
    }
    // The transparency page's name goes to the proxy, before `.local`
    // names are sent direct.
    let own = pac
        .find("if (host === \"socialgate.local\") {\n    return \"PROXY ")
        .unwrap_or_else(|| panic!("{pac}"));
    assert!(
        own < pac.find("dnsDomainIs(host, \".local\")").unwrap(),
        "{pac}"
    );

    // Domains only: no DNS lookup in the client for every host.
    proxy.policy.write(
        "policy.yaml",
        &format!(
            "{BASIC_POLICY}pac:\n  direct_domains: [Corp.Example, .intranet.example.net]\n  direct_networks: []\n"
        ),
    );
    proxy.wait_for_generation(1).await;
    let pac = fetch_pac(&proxy).await;
    assert!(
        pac.contains(
            "if (host === \"corp.example\" || dnsDomainIs(host, \".corp.example\") ||\n      \
             host === \"intranet.example.net\" || dnsDomainIs(host, \".intranet.example.net\")) {"
        ),
        "{pac}"
    );
    assert!(!pac.contains("dnsResolve"), "{pac}");
    // The name WPAD clients ask for.
    let admin = proxy.app().admin_addr.unwrap();
    let wpad = reqwest::get(format!("http://{admin}/wpad.dat"))
        .await
        .unwrap();
    assert_eq!(wpad.text().await.unwrap(), pac);
    assert!(!pac.contains("isInNet"), "{pac}");
}

#[tokio::test]
async fn advertises_the_proxy_by_the_name_clients_use() {
    let dir = PolicyDir::new(BASIC_POLICY);
    let bin = Spawned::run(dir.path(), &["--pac-proxy", "Proxy.Corp.Example:3128"]).await;
    let pac = reqwest::get(format!("http://{}/proxy.pac", bin.admin.unwrap()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        pac.contains("return \"PROXY proxy.corp.example:3128\";"),
        "{pac}"
    );
    for (bad, says) in [
        ("proxy.corp.example", "write HOST:PORT"),
        ("proxy.corp.example:0", "port must be 1-65535"),
        ("bad host!:3128", "is not a host name or IP address"),
    ] {
        let (code, _, err) = socialgate(&["run", "--pac-proxy", bad]).await;
        assert_eq!(code, 2, "{bad}");
        assert!(err.contains(says), "{bad}: {err}");
    }
}
