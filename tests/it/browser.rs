//! A real browser through socialgate's TLS inspection: Chromium with the
//! company CA trusted the way an admin does it (`certutil` into the NSS
//! database of the profile's home), going through the proxy to local TLS
//! origins that the proxy pins (`www.tiktok.com`, `www.youtube.com` →
//! 127.0.0.1). It sees the block page over HTTPS, and it clicks Continue on
//! a warning through WebDriver (Debian's `chromium-driver`) and lands on
//! the origin's page.
//!
//! `.ci/run` installs chromium, chromium-driver and libnss3-tools. Set
//! `SOCIALGATE_SCREENSHOTS=docs/img` to write the screenshots kept in
//! `docs/` (the test always takes them and checks they are PNG images):
//!
//! ```sh
//! SOCIALGATE_SCREENSHOTS=docs/img cargo test --test it browser
//! ```

use std::path::{Path, PathBuf};
use std::process::Stdio;

use base64::Engine;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::support::*;

const POLICY: &str = r#"
version: 1
settings:
  timezone: UTC
  organization: Test Corp
  help: Ask the IT desk (extension 4242).
destinations:
  allow: [127.0.0.0/8]
tunnels:
  ports: [any]
  sni_timeout_ms: 2000
groups:
  staff:
    networks: [127.0.0.0/8]
# The browser's own background requests (updates, sign-in) never leave
# the machine: anything no rule allows is refused before it is resolved.
defaults:
  catalog: block
  embedded: block
  other: block
warn:
  remember: 2h
rules:
  - id: no-tiktok
    groups: [staff]
    platforms: [tiktok]
    action: block
    inspect: true
    message: TikTok is not for work.
  - id: youtube-caution
    groups: [staff]
    platforms: [youtube]
    action: warn
    inspect: true
    message: YouTube is fine for training videos; please keep it short.
"#;

const CHROMIUM: &str = "/usr/bin/chromium";
const DRIVER: &str = "/usr/bin/chromedriver";

fn require(path: &str, package: &str) {
    assert!(
        Path::new(path).exists(),
        "{path} is missing: install it with `apt-get install -y {package}` (.ci/run does)"
    );
}

/// A home directory whose NSS database trusts the company CA, as
/// `certutil` would set it up on a managed Linux desktop.
fn home_trusting(ca_pem: &Path) -> tempfile::TempDir {
    require("/usr/bin/certutil", "libnss3-tools");
    let home = tempfile::tempdir().unwrap();
    let db = home.path().join(".pki/nssdb");
    std::fs::create_dir_all(&db).unwrap();
    let db = format!("sql:{}", db.display());
    let run = |args: &[&str]| {
        let out = std::process::Command::new("certutil")
            .args(args)
            .output()
            .expect("run certutil");
        assert!(
            out.status.success(),
            "certutil {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&["-d", &db, "-N", "--empty-password"]);
    run(&[
        "-d",
        &db,
        "-A",
        "-t",
        "C,,",
        "-n",
        "Test Corp socialgate CA",
        "-i",
        ca_pem.to_str().unwrap(),
    ]);
    home
}

/// Where screenshots go: `SOCIALGATE_SCREENSHOTS` (relative to the
/// repository), else a temp dir that is dropped with the test.
fn screenshots() -> (PathBuf, Option<tempfile::TempDir>) {
    match std::env::var_os("SOCIALGATE_SCREENSHOTS") {
        Some(d) => {
            let d = Path::new(env!("CARGO_MANIFEST_DIR")).join(d);
            std::fs::create_dir_all(&d).unwrap();
            (d, None)
        }
        None => {
            let t = tempfile::tempdir().unwrap();
            (t.path().to_path_buf(), Some(t))
        }
    }
}

fn assert_png(path: &Path) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 2_000,
        "{} is not a screenshot",
        path.display()
    );
}

/// Headless Chromium through `proxy`, with `home` as its home: the DOM of
/// `url` (and a screenshot of it at a laptop's width, to `shot`).
async fn chromium_dump(proxy: &TestProxy, home: &Path, url: &str, shot: &Path) -> String {
    require(CHROMIUM, "chromium");
    let profile = home.join("profile");
    let common = |cmd: &mut tokio::process::Command| {
        cmd.env("HOME", home)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--window-size=1366,768",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-default-apps",
                "--disable-domain-reliability",
                "--disable-client-side-phishing-detection",
                "--disable-features=OptimizationHints,MediaRouter,Translate,AutofillServerCommunication",
                "--no-default-browser-check",
                "--metrics-recording-only",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(format!("--proxy-server=http://{}", proxy.addr))
            .stdin(Stdio::null())
            .kill_on_drop(true);
    };
    let mut cmd = tokio::process::Command::new(CHROMIUM);
    common(&mut cmd);
    let out = within_secs(60, cmd.arg("--dump-dom").arg(url).output())
        .await
        .expect("run chromium");
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut cmd = tokio::process::Command::new(CHROMIUM);
    common(&mut cmd);
    let shot_out = within_secs(
        60,
        cmd.arg(format!("--screenshot={}", shot.display()))
            .arg(url)
            .output(),
    )
    .await
    .expect("run chromium");
    assert!(
        shot_out.status.success(),
        "{}",
        String::from_utf8_lossy(&shot_out.stderr)
    );
    dom
}

async fn within_secs<F: std::future::Future>(secs: u64, f: F) -> F::Output {
    tokio::time::timeout(std::time::Duration::from_secs(secs), f)
        .await
        .expect("the browser did not finish in time")
}

#[tokio::test]
async fn chromium_trusting_the_company_ca_sees_the_block_page_over_https() {
    let origin = TlsOrigin::start(&["www.tiktok.com"]).await;
    let proxy = TestProxy::inspecting(POLICY, &[&origin]).await;
    let ca = proxy.policy.ca_paths().cert;
    let home = home_trusting(&ca);
    let (dir, _keep) = screenshots();
    let shot = dir.join("block-page-https.png");
    let url = format!("https://www.tiktok.com:{}/", origin.port());
    let dom = chromium_dump(&proxy, home.path(), &url, &shot).await;
    assert!(dom.contains("TikTok is not for work."), "{dom}");
    assert!(dom.contains("no-tiktok"), "the rule is named: {dom}");
    assert!(dom.contains("extension 4242"), "whom to ask: {dom}");
    assert_png(&shot);
    assert_eq!(
        origin.handshakes.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "a refused site is never contacted"
    );
    let log = proxy.log_lines(1).await;
    let t = log
        .iter()
        .find(|r| r["kind"] == "tunnel" && r["host"] == "www.tiktok.com")
        .unwrap_or_else(|| panic!("no tunnel record: {log:#?}"));
    assert_eq!(
        (t["tls"].as_str(), t["rule"].as_str()),
        (Some("intercepted"), Some("no-tiktok"))
    );
    let elsewhere: Vec<&Value> = log
        .iter()
        .filter(|r| r["host"] != "www.tiktok.com" && r["action"] != "block")
        .collect();
    assert!(
        elsewhere.is_empty(),
        "the browser got elsewhere: {elsewhere:#?}"
    );
}

/// chromedriver on a port of its choosing (`--port=0`), with `home` as
/// the browser's home; killed on drop.
struct Driver {
    _child: tokio::process::Child,
    base: String,
    http: reqwest::Client,
}

impl Driver {
    async fn start(home: &Path) -> Driver {
        require(DRIVER, "chromium-driver");
        let mut child = tokio::process::Command::new(DRIVER)
            .arg("--port=0")
            .env("HOME", home)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn chromedriver");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let port = within_secs(30, async {
            while let Ok(Some(line)) = lines.next_line().await {
                // "ChromeDriver was started successfully on port 37399."
                if let Some(rest) = line.split("successfully on port ").nth(1) {
                    return rest.trim_end_matches('.').trim().parse::<u16>().ok();
                }
            }
            None
        })
        .await
        .expect("chromedriver says which port it listens on");
        // Keep reading its stdout, so it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Driver {
            _child: child,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let resp = within_secs(60, req.send()).await.expect("webdriver call");
        let text = resp.text().await.expect("webdriver answer");
        let v: Value = serde_json::from_str(&text).expect("webdriver JSON");
        assert!(v["value"]["error"].is_null(), "{path}: {v}");
        v["value"].clone()
    }
}

/// One WebDriver session; ended on drop of the driver process.
struct Session<'a> {
    driver: &'a Driver,
    id: String,
}

impl Session<'_> {
    async fn open<'a>(driver: &'a Driver, proxy: &TestProxy, home: &Path) -> Session<'a> {
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--no-first-run",
                    "--window-size=1366,768",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--disable-default-apps",
                    "--disable-domain-reliability",
                    "--disable-client-side-phishing-detection",
                    "--disable-features=OptimizationHints,MediaRouter,Translate,AutofillServerCommunication",
                    "--no-default-browser-check",
                    "--metrics-recording-only",
                    format!("--user-data-dir={}", home.join("driver-profile").display()),
                    format!("--proxy-server=http://{}", proxy.addr),
                ]
            }
        }}});
        let v = driver
            .call(reqwest::Method::POST, "/session", Some(caps))
            .await;
        Session {
            driver,
            id: v["sessionId"].as_str().expect("a session id").to_string(),
        }
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.driver
            .call(
                reqwest::Method::POST,
                &format!("/session/{}{path}", self.id),
                Some(body),
            )
            .await
    }

    async fn get(&self, path: &str) -> Value {
        self.driver
            .call(
                reqwest::Method::GET,
                &format!("/session/{}{path}", self.id),
                None,
            )
            .await
    }

    async fn go(&self, url: &str) {
        self.post("/url", json!({ "url": url })).await;
    }

    async fn text(&self) -> String {
        self.post(
            "/execute/sync",
            json!({"script": "return document.body ? document.body.innerText : ''", "args": []}),
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_string()
    }

    async fn screenshot(&self, to: &Path) {
        let b64 = self.get("/screenshot").await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().expect("base64 PNG"))
            .unwrap();
        std::fs::write(to, png).unwrap();
        assert_png(to);
    }

    async fn close(self) {
        self.driver
            .call(
                reqwest::Method::DELETE,
                &format!("/session/{}", self.id),
                None,
            )
            .await;
    }
}

#[tokio::test]
async fn chromium_clicks_continue_on_a_warning_and_lands_on_the_site() {
    let origin = TlsOrigin::start(&["www.youtube.com"]).await;
    let proxy = TestProxy::inspecting(POLICY, &[&origin]).await;
    let ca = proxy.policy.ca_paths().cert;
    let home = home_trusting(&ca);
    let (dir, _keep) = screenshots();
    let driver = Driver::start(home.path()).await;
    let s = Session::open(&driver, &proxy, home.path()).await;
    let url = format!("https://www.youtube.com:{}/hello", origin.port());

    // The warning, over HTTPS, with the rule's message.
    s.go(&url).await;
    let text = s.text().await;
    assert!(text.contains("please keep it short"), "{text}");
    assert!(text.contains("Continue"), "{text}");
    s.screenshot(&dir.join("warn-page-https.png")).await;
    assert!(
        origin.handshakes.load(std::sync::atomic::Ordering::SeqCst) >= 1,
        "socialgate connects upstream before it answers the browser"
    );

    // A real click on Continue: the browser follows the 303 to the page.
    let el = s
        .post(
            "/element",
            json!({"using": "css selector", "value": "a.continue"}),
        )
        .await;
    let id = el
        .as_object()
        .and_then(|o| o.values().next())
        .and_then(Value::as_str)
        .expect("the Continue link")
        .to_string();
    s.post(&format!("/element/{id}/click"), json!({})).await;
    eventually_async(
        "the page after Continue shows the origin's answer",
        || async { s.text().await.contains("hello from origin") },
    )
    .await;
    assert_eq!(
        s.get("/url").await.as_str(),
        Some(url.as_str()),
        "back on the page asked for"
    );

    // Still allowed on the next load: no warning again.
    s.go(&url).await;
    let text = s.text().await;
    assert!(text.contains("hello from origin"), "{text}");
    s.close().await;

    drop(driver);
    let log = proxy.log_lines(4).await;
    let elsewhere: Vec<&Value> = log
        .iter()
        .filter(|r| r["host"] != "www.youtube.com" && r["action"] != "block")
        .collect();
    assert!(
        elsewhere.is_empty(),
        "the browser got elsewhere: {elsewhere:#?}"
    );
    let warns: Vec<&str> = log
        .iter()
        .filter(|r| r["kind"] == "request")
        .filter_map(|r| r["warn"].as_str())
        .collect();
    assert!(warns.contains(&"shown"), "{warns:?}");
    assert!(warns.contains(&"continued"), "{warns:?}");
    assert!(warns.contains(&"acknowledged"), "{warns:?}");
}

/// The transparency page, with a rule of each kind, a budget partly
/// spent, a long message and the never-inspect list.
const TRANSPARENCY_POLICY: &str = r#"
version: 1
settings:
  timezone: Europe/Berlin
  organization: Test Corp
  help: Ask the IT desk (extension 4242).
destinations:
  allow: [127.0.0.0/8]
groups:
  staff:
    networks: [127.0.0.0/8]
    description: Everyone in the office
  marketing:
    networks: [127.0.0.0/8]
defaults:
  catalog: block
  embedded: block
  other: block
logging:
  retention: 90 days in the access log, then deleted; reports keep only counts
  reveal: the security officer, together with a works council member, for a documented case
rules:
  - id: marketing-social
    description: Marketing posts for the brand
    groups: [marketing]
    platforms: [tiktok, instagram, facebook, x, linkedin, youtube, pinterest, reddit]
    action: allow
    message: Post only from the brand accounts, and follow the social-media guidelines on the intranet (https://intranet.example.internal/guidelines/social-media-publishing-and-approval).
  - id: youtube-caution
    groups: [staff]
    platforms: [youtube]
    action: warn
    message: YouTube is fine for training videos; please keep it short.
  - id: lunch-video
    groups: [staff]
    categories: [video]
    when: [{days: [mon-fri], from: "12:00", to: "13:30"}]
    action: block
    budget: {minutes: 30, megabytes: 500}
  - id: no-tiktok
    groups: [staff]
    platforms: [tiktok]
    action: block
    message: TikTok is not for work.
"#;

#[tokio::test]
async fn chromium_shows_the_transparency_page_on_a_laptop_screen_without_overflow() {
    // Inspecting (the page then lists what is never decrypted); the
    // origin is never visited.
    let origin = TlsOrigin::start(&["www.youtube.com"]).await;
    let proxy = TestProxy::inspecting(TRANSPARENCY_POLICY, &[&origin]).await;
    let home = tempfile::tempdir().unwrap();
    let (dir, _keep) = screenshots();
    let driver = Driver::start(home.path()).await;
    let s = Session::open(&driver, &proxy, home.path()).await;
    s.go("http://socialgate.local/").await;
    let text = s.text().await;
    for want in [
        "What applies to you",
        "Who the proxy thinks you are",
        "staff, marketing",
        "marketing-social",
        "Rules for you today",
        "What is recorded about you",
        "90 days in the access log",
        "What is never inspected",
    ] {
        assert!(text.contains(want), "the page lacks {want:?}: {text}");
    }
    let probe = s
        .post(
            "/execute/sync",
            json!({"script": r#"
var wide = [];
document.querySelectorAll('table, main, .rule').forEach(function (e) {
  var box = e.getBoundingClientRect();
  var main = document.querySelector('main').getBoundingClientRect();
  if (e.scrollWidth > e.clientWidth + 1 || box.right > main.right + 1) {
    wide.push(e.tagName + ' ' + e.scrollWidth + '>' + e.clientWidth);
  }
});
return {overflow: wide, page: document.documentElement.scrollWidth, view: window.innerWidth};
"#, "args": []}),
        )
        .await;
    assert_eq!(probe["overflow"], json!([]), "wider than the page: {probe}");
    assert!(
        probe["page"].as_u64() <= probe["view"].as_u64(),
        "scrolls sideways at 1366 px: {probe}"
    );
    assert_eq!(probe["view"].as_u64(), Some(1366), "{probe}");
    // The whole page in one picture, at the same width.
    let height = s
        .post(
            "/execute/sync",
            json!({"script": "return document.documentElement.scrollHeight", "args": []}),
        )
        .await;
    let height = height.as_u64().unwrap_or(768).clamp(768, 4000);
    s.post(
        "/window/rect",
        json!({"width": 1366, "height": height + 400}),
    )
    .await;
    s.screenshot(&dir.join("transparency-page.png")).await;
    s.close().await;
    drop(driver);
    let log = proxy.log_lines(1).await;
    assert!(
        log.iter()
            .any(|r| r["host"] == "socialgate.local" && r["reason"] == "own-page"),
        "{log:#?}"
    );
}
