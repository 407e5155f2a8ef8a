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

/// The same rules with `inspect: true`: the platforms' HTTPS is decrypted,
/// so the requests inside are judged by activity.
fn inspected_policy() -> String {
    POLICY
        .replace(
            "    action: block\n",
            "    action: block\n    inspect: true\n",
        )
        .replace(
            "    action: read_only\n",
            "    action: read_only\n    inspect: true\n",
        )
}

#[tokio::test]
async fn over_inspected_https_read_only_and_upload_rules_see_each_request_in_h1_and_h2() {
    let origin = TlsOrigin::start(&["www.linkedin.com", "www.instagram.com"]).await;
    let proxy = TestProxy::inspecting(&inspected_policy(), &[&origin]).await;
    let li = format!("https://www.linkedin.com:{}", origin.port());
    let ig = format!("https://www.instagram.com:{}", origin.port());
    let h2 = proxy.inspected_client(true);

    // A read passes, over HTTP/2 end to end.
    let resp = within(page(h2.get(format!("{li}/hello"))).send())
        .await
        .unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "hello from origin");

    // A post as an API call: a short JSON 403, so the platform's page shows
    // its own error.
    let resp = within(
        h2.post(format!("{li}/voyager/api/contentcreation/normShares"))
            .header("accept", "application/json")
            .header("sec-fetch-mode", "cors")
            .header("content-type", "application/json")
            .body("{\"commentary\":\"hello\"}")
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(resp.headers()["x-socialgate-rule"], "read-only-social");
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json"),
        "{:?}",
        resp.headers()
    );
    let body: serde_json::Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
    assert_eq!(body["rule"], "read-only-social", "{body}");

    // The same post in a page: the block page, over HTTPS.
    let resp = within(
        page(h2.post(format!("{li}/voyager/api/contentcreation/normShares")))
            .body("{}")
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 403);
    let html = resp.text().await.unwrap();
    assert!(
        html.contains("posting as the company goes through Marketing"),
        "{html}"
    );

    // A multipart upload over HTTP/1.1 inside the tunnel: refused before
    // the origin reads it (`/consume` would answer 200 with its size).
    let h1 = proxy.inspected_client(false);
    let mut form = b"--sg\r\ncontent-disposition: form-data; name=\"photo\"; filename=\"p.jpg\"\r\ncontent-type: image/jpeg\r\n\r\n".to_vec();
    form.extend(vec![b'p'; 200 * 1024]);
    form.extend(b"\r\n--sg--\r\n");
    let resp = within(
        h1.post(format!("{ig}/consume"))
            .header("content-type", "multipart/form-data; boundary=sg")
            .body(form)
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(resp.headers()["x-socialgate-rule"], "no-instagram-uploads");
    // Reading Instagram stays allowed.
    let resp = within(h1.get(format!("{ig}/hello")).send()).await.unwrap();
    assert_eq!(resp.status(), 200);

    // Five requests, and the Instagram tunnel the refused upload closed
    // (the others are still open).
    let log = proxy.log_lines(6).await;
    let requests: Vec<&serde_json::Value> = log.iter().filter(|r| r["kind"] == "request").collect();
    let seen: Vec<(&str, &str, u64)> = requests
        .iter()
        .map(|r| {
            (
                r["activity"].as_str().unwrap_or("-"),
                r["action"].as_str().unwrap_or("-"),
                r["status"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("read", "allow", 200),
            ("post", "block", 403),
            ("post", "block", 403),
            ("upload", "block", 403),
            ("read", "allow", 200),
        ],
        "{requests:#?}"
    );
    assert_eq!(requests[1]["signature"], "linkedin-post");
    assert!(
        requests[3]["bytes_up"].as_u64().unwrap() < 200 * 1024,
        "the refused upload's body was not forwarded: {}",
        requests[3]
    );
    let tunnel = log
        .iter()
        .find(|r| r["kind"] == "tunnel")
        .expect("the closed tunnel's record");
    // Decrypted because the upload rule asked, though the site-level
    // default decides the tunnel itself; no activity went unseen.
    assert_eq!(
        (tunnel["host"].as_str(), tunnel["tls"].as_str()),
        (Some("www.instagram.com"), Some("intercepted")),
        "{tunnel}"
    );
    assert!(tunnel.get("activity_unseen").is_none(), "{tunnel}");
    let metrics = scrape(&proxy).await;
    assert!(
        metrics.contains(r#"socialgate_activities_total{activity="post",platform="linkedin"} 2"#),
        "{metrics}"
    );
    assert!(
        metrics
            .contains(r#"socialgate_activities_total{activity="upload",platform="instagram"} 1"#),
        "{metrics}"
    );
}
