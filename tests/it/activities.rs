//! Activities on the wire: read_only lets reads through and refuses writes,
//! an activity rule refuses uploads before the origin sees a byte, a body
//! peeked at for its operation reaches the origin unchanged, and the log
//! and metrics carry the activity.

use crate::support::*;

const POLICY: &str = r#"
version: 1
settings:
  timezone: UTC
tunnels:
  ports: [any]
destinations:
  allow: [127.0.0.0/8]
groups:
  staff:
    networks: [127.0.0.0/8]
rules:
  - id: no-instagram-uploads
    groups: [staff]
    platforms: [instagram]
    activities: [upload]
    action: block
    message: Uploading to Instagram is not allowed from company networks.
  - id: read-only-social
    groups: [staff]
    platforms: [linkedin, facebook]
    action: read_only
    message: Reading is fine; posting as the company goes through Marketing.
"#;

async fn scrape(proxy: &TestProxy) -> String {
    let admin = proxy.app().admin_addr.expect("admin listener");
    reqwest::get(format!("http://{admin}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

fn page(c: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    c.header("accept", "text/html,application/xhtml+xml")
        .header("sec-fetch-mode", "navigate")
}

#[tokio::test]
async fn read_only_lets_reads_through_and_refuses_a_post_before_the_origin_sees_it() {
    let origin = Origin::start().await;
    let proxy = TestProxy::start(POLICY).await;
    let base = format!("http://www.linkedin.com:{}", origin.port());
    let client = proxy.client();

    // A read passes.
    let resp = within(page(client.get(format!("{base}/hello"))).send())
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "hello from origin");
    let before = origin.connections();

    // A post in a page gets the block page.
    let resp = within(
        page(client.post(format!("{base}/voyager/api/contentcreation/normShares")))
            .body("{\"commentary\":\"hello\"}")
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(resp.headers()["x-socialgate-rule"], "read-only-social");
    let html = resp.text().await.unwrap();
    assert!(
        html.contains("posting as the company goes through Marketing"),
        "{html}"
    );

    // The same post as an API call (the platform's page is the client) is refused too.
    let resp = within(
        client
            .post(format!("{base}/voyager/api/contentcreation/normShares"))
            .header("accept", "application/json")
            .header("sec-fetch-mode", "cors")
            .body("{}")
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(resp.headers()["x-socialgate-rule"], "read-only-social");
    assert_eq!(
        origin.connections(),
        before,
        "a refused write never reaches the origin"
    );

    let log = proxy.exactly_log_lines(3).await;
    assert_eq!(log[0]["activity"], "read");
    assert_eq!(log[0]["action"], "allow");
    assert_eq!(log[0]["rule"], "read-only-social");
    assert_eq!(log[1]["activity"], "post");
    assert_eq!(log[1]["signature"], "linkedin-post");
    assert_eq!(log[1]["action"], "block");
    assert_eq!(log[1]["status"], 403);
    assert_eq!(log[2]["activity"], "post");

    // The metric carries the activity label, from the fixed set.
    let metrics = scrape(&proxy).await;
    assert!(
        metrics.contains(r#"socialgate_activities_total{activity="post",platform="linkedin"} 2"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"socialgate_activities_total{activity="read",platform="linkedin"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_body_peeked_for_its_operation_reaches_the_origin_unchanged() {
    let origin = Origin::start().await;
    let proxy = TestProxy::start(POLICY).await;
    let url = format!("http://www.facebook.com:{}/api/graphql/", origin.port());
    let client = proxy.client();
    // A read sent as POST (Facebook reads through GraphQL), its operation
    // in a form body larger than the peek: it passes, byte for byte.
    let mut body = String::from("fb_api_req_friendly_name=CometNewsFeedPaginationQuery&variables=");
    body.push_str(&"x".repeat(200 * 1024));
    let resp = within(
        client
            .post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.clone())
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), body);

    // A post named in the body is refused; the origin never sees it.
    let before = origin.connections();
    let resp = within(
        client
            .post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body("av=1&fb_api_req_friendly_name=ComposerStoryCreateMutation&doc_id=2")
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(origin.connections(), before);

    let log = proxy.exactly_log_lines(2).await;
    assert_eq!(log[0]["activity"], "read");
    assert_eq!(log[0]["signature"], "facebook-query");
    assert_eq!(log[0]["bytes_up"], body.len());
    assert_eq!(log[1]["activity"], "post");
    assert_eq!(log[1]["signature"], "facebook-post");
    assert_eq!(log[1]["action"], "block");
}

#[tokio::test]
async fn an_upload_rule_refuses_a_multipart_post_and_the_origin_never_gets_its_body() {
    let origin = Origin::start().await;
    let proxy = TestProxy::start(POLICY).await;
    let base = format!("http://www.instagram.com:{}", origin.port());
    // curl -F, as an admin would try it: a multipart upload.
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), vec![b'p'; 300 * 1024]).unwrap();
    let form = format!("photo=@{}", file.path().display());
    let (code, out) = curl(&[
        "-x",
        &proxy.url(),
        "-i",
        "-F",
        &form,
        &format!("{base}/create/upload"),
    ])
    .await;
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("HTTP/1.1 403"), "{out}");
    assert!(
        out.contains("Uploading to Instagram is not allowed"),
        "{out}"
    );
    assert_eq!(origin.connections(), 0);
    // Reading Instagram is untouched by the upload rule.
    let resp = within(proxy.client().get(format!("{base}/hello")).send())
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    let log = proxy.exactly_log_lines(2).await;
    assert_eq!(log[0]["activity"], "upload");
    assert_eq!(log[0]["rule"], "no-instagram-uploads");
    assert_eq!(log[0]["action"], "block");
    assert!(
        log[0]["bytes_up"].as_u64().unwrap() < 300 * 1024,
        "the refused upload's body was not forwarded: {}",
        log[0]
    );
    assert_eq!(log[1]["activity"], "read");
    assert_eq!(log[1]["action"], "allow");
}

#[tokio::test]
async fn a_tunnel_shows_no_activity_so_activity_rules_fall_back_and_say_so() {
    let origin = TlsOrigin::start(&["www.linkedin.com"]).await;
    let proxy = TestProxy::start(POLICY).await;
    let resp = within(
        proxy
            .tls_client(&origin)
            .get(format!("https://www.linkedin.com:{}/hello", origin.port()))
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(
        resp.status(),
        200,
        "read_only cannot see writes in a tunnel: it passes"
    );
    drop(resp);
    let log = proxy.exactly_log_lines(1).await;
    assert_eq!(log[0]["kind"], "tunnel");
    assert!(log[0]["activity"].is_null());
    assert_eq!(log[0]["activity_unseen"], "read-only-social");
    assert_eq!(log[0]["action"], "allow");
    let metrics = scrape(&proxy).await;
    assert!(
        metrics.contains(r#"socialgate_activity_unseen_total{rule="read-only-social"} 1"#),
        "{metrics}"
    );
}

/// Raw sockets against the body peek: a client that stalls mid-body while
/// socialgate looks for the operation gets 408, a broken chunk gets 400,
/// and neither reaches the origin.
#[tokio::test]
async fn a_stalled_or_broken_body_during_the_peek_is_the_clients_fault() {
    let origin = Origin::start().await;
    let proxy = TestProxy::start_in(PolicyDir::new(POLICY), |cfg| {
        cfg.proxy.body_idle_timeout = std::time::Duration::from_millis(300);
    })
    .await;
    let port = origin.port();
    let stalled = format!(
        "POST http://www.facebook.com:{port}/api/graphql/ HTTP/1.1\r\nHost: www.facebook.com:{port}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100000\r\n\r\nfb_api_req"
    );
    let out = raw_until_close(proxy.addr, stalled.as_bytes()).await;
    assert!(out.starts_with("HTTP/1.1 408"), "{out}");
    let broken = format!(
        "POST http://www.facebook.com:{port}/api/graphql/ HTTP/1.1\r\nHost: www.facebook.com:{port}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"
    );
    let out = raw_until_close(proxy.addr, broken.as_bytes()).await;
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    assert_eq!(origin.connections(), 0);
    let log = proxy.exactly_log_lines(2).await;
    assert_eq!(log[0]["error"], "client-timeout");
    assert_eq!(log[1]["error"], "client-protocol");
}

/// Every shipped signature has a line in docs/activities.md with the date
/// it was checked, and the docs name no signature that is gone.
#[test]
fn every_shipped_signature_is_documented_with_its_date() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let raw: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(root.join("policies/activities.yaml")).unwrap(),
    )
    .unwrap();
    let docs = std::fs::read_to_string(root.join("docs/activities.md")).unwrap();
    let mut ids = Vec::new();
    for (_, p) in raw["platforms"].as_mapping().unwrap() {
        for s in p["signatures"].as_sequence().unwrap() {
            let id = s["id"].as_str().unwrap();
            let checked = s["checked"].as_str().unwrap();
            let line = docs
                .lines()
                .find(|l| l.starts_with(&format!("| `{id}` |")))
                .unwrap_or_else(|| panic!("docs/activities.md has no line for {id}"));
            assert!(
                line.trim_end().ends_with(&format!("| {checked} |")),
                "docs/activities.md: {id} was checked on {checked}: {line}"
            );
            ids.push(id.to_string());
        }
    }
    for line in docs.lines().filter(|l| l.starts_with("| `")) {
        let id = line.split('`').nth(1).unwrap();
        assert!(
            ids.iter().any(|i| i == id),
            "docs/activities.md names {id}, which activities.yaml does not have"
        );
    }
}
