//! Identity: Basic proxy authentication against a bcrypt htpasswd, group
//! membership by user name, and the trusted identity header.

use crate::support::*;

/// 127.0.0.2 is the office network; alice is a recruiter by name; the
/// SSO gateway at 127.0.0.5 may vouch for users with a header.
const AUTH_POLICY: &str = r#"
version: 1
settings:
  timezone: UTC
auth:
  htpasswd: users.htpasswd
  realm: Test Corp proxy
  trusted_header:
    name: X-Authenticated-User
    from: [127.0.0.5/32]
destinations:
  allow: [127.0.0.0/8]
groups:
  office:
    networks: [127.0.0.2/32]
  recruiters:
    users: [alice]
rules:
  - id: recruiters-linkedin
    groups: [recruiters]
    platforms: [linkedin]
    action: allow
  - id: no-linkedin
    platforms: [linkedin]
    action: block
"#;

async fn auth_proxy() -> TestProxy {
    let dir = PolicyDir::new(AUTH_POLICY);
    let mut users = htpasswd_line("alice", "wonderland");
    users.push_str(&htpasswd_line("bob", "builder"));
    dir.write("users.htpasswd", &users);
    TestProxy::start_in(dir, |_| {}).await
}

#[tokio::test]
async fn demands_credentials_with_407_from_a_client_in_no_group() {
    let origin = Origin::start().await;
    let proxy = auth_proxy().await;
    let url = format!("http://example.org:{}/hello", origin.port());
    let resp = within(proxy.client_from("127.0.0.3").get(&url).send())
        .await
        .unwrap();
    assert_eq!(resp.status(), 407);
    let challenge = resp.headers()["proxy-authenticate"].to_str().unwrap();
    assert!(
        challenge.starts_with("Basic realm=\"Test Corp proxy\""),
        "{challenge}"
    );
    assert_eq!(resp.headers()["x-socialgate-reason"], "auth-required");
    // curl, as an admin would check it.
    let (code, out) = curl(&["-x", &proxy.url(), "--interface", "127.0.0.3", "-i", &url]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("HTTP/1.1 407"), "{out}");
    let log = proxy.log_lines(2).await;
    assert_eq!(log[0]["reason"], "auth-required");
    assert_eq!(log[0]["status"], 407);
    assert_eq!(origin.connections(), 0);
}

#[tokio::test]
async fn answers_a_wrong_password_with_407() {
    let origin = Origin::start().await;
    let proxy = auth_proxy().await;
    let url = format!("http://example.org:{}/hello", origin.port());
    for (user, pass) in [("alice", "not-her-password"), ("mallory", "wonderland")] {
        let resp = within(proxy.client_as("127.0.0.3", user, pass).get(&url).send())
            .await
            .unwrap();
        assert_eq!(resp.status(), 407, "{user}");
        assert_eq!(resp.headers()["x-socialgate-reason"], "auth-failed");
        assert!(resp.headers().contains_key("proxy-authenticate"));
    }
    // Even from the office network, wrong credentials are refused.
    let resp = within(
        proxy
            .client_as("127.0.0.2", "alice", "nope")
            .get(&url)
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 407);
    let log = proxy.log_lines(3).await;
    assert!(
        log.iter()
            .all(|l| l["reason"] == "auth-failed" && l["user"].is_null()),
        "{log:#?}"
    );
}

#[tokio::test]
async fn accepts_correct_credentials_and_logs_the_user() {
    let origin = Origin::start().await;
    let proxy = auth_proxy().await;
    let url = format!("http://example.org:{}/headers", origin.port());
    let client = proxy.client_as("127.0.0.3", "bob", "builder");
    for _ in 0..2 {
        let resp = within(client.get(&url).send()).await.unwrap();
        assert_eq!(resp.status(), 200);
        let seen = resp.text().await.unwrap();
        assert!(
            !seen.contains("proxy-authorization"),
            "credentials leaked upstream: {seen}"
        );
    }
    let (code, out) = curl(&[
        "-x",
        &proxy.url(),
        "-U",
        "bob:builder",
        "--interface",
        "127.0.0.3",
        &url,
    ])
    .await;
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("GET /headers"), "{out}");
    let log = proxy.log_lines(3).await;
    for l in &log {
        assert_eq!(l["auth"], "basic");
        assert_eq!(l["user"], proxy.pseudonym_of("bob"), "{l}");
        assert_eq!(l["status"], 200);
    }
}

#[tokio::test]
async fn places_users_in_groups_by_name() {
    let origin = Origin::start().await;
    let proxy = auth_proxy().await;
    let url = format!("http://www.linkedin.com:{}/hello", origin.port());
    let resp = within(
        proxy
            .client_as("127.0.0.3", "alice", "wonderland")
            .get(&url)
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200, "alice is a recruiter");
    let resp = within(
        proxy
            .client_as("127.0.0.3", "bob", "builder")
            .get(&url)
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 403, "bob is not");
    assert_eq!(resp.headers()["x-socialgate-rule"], "no-linkedin");
    let log = proxy.log_lines(2).await;
    assert_eq!(log[0]["group"], "recruiters");
    assert_eq!(log[0]["rule"], "recruiters-linkedin");
    assert_eq!(log[0]["user"], proxy.pseudonym_of("alice"));
    assert_eq!(log[1]["rule"], "no-linkedin");
    assert_eq!(log[1]["user"], proxy.pseudonym_of("bob"));
}

#[tokio::test]
async fn serves_a_client_in_a_group_by_network_without_credentials() {
    let origin = Origin::start().await;
    let proxy = auth_proxy().await;
    let resp = within(
        proxy
            .client_from("127.0.0.2")
            .get(format!("http://example.org:{}/hello", origin.port()))
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    let log = proxy.log_lines(1).await;
    assert_eq!(log[0]["auth"], "none");
    assert!(log[0]["user"].is_null());
    assert_eq!(log[0]["group"], "office");
}

#[tokio::test]
async fn trusts_the_identity_header_only_from_the_gateway_and_never_forwards_it() {
    let origin = Origin::start().await;
    let proxy = auth_proxy().await;
    let url = format!("http://www.linkedin.com:{}/headers", origin.port());
    let resp = within(
        proxy
            .client_from("127.0.0.5")
            .get(&url)
            .header("X-Authenticated-User", "alice")
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(
        resp.status(),
        200,
        "the gateway vouches for alice, a recruiter"
    );
    let seen = resp.text().await.unwrap();
    assert!(
        !seen.to_ascii_lowercase().contains("x-authenticated-user"),
        "identity header forwarded: {seen}"
    );

    let resp = within(
        proxy
            .client_from("127.0.0.6")
            .get(&url)
            .header("X-Authenticated-User", "alice")
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 407, "from anyone else the header is ignored");

    // A client in a group by network cannot promote itself with the header either.
    let resp = within(
        proxy
            .client_from("127.0.0.2")
            .get(&url)
            .header("X-Authenticated-User", "alice")
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(resp.headers()["x-socialgate-rule"], "no-linkedin");

    let log = proxy.log_lines(3).await;
    assert_eq!(log[0]["auth"], "header");
    assert_eq!(log[0]["user"], proxy.pseudonym_of("alice"), "{}", log[0]);
    assert_eq!(log[0]["rule"], "recruiters-linkedin");
    assert_eq!(log[1]["auth"], "none");
    assert_eq!(log[1]["reason"], "auth-required");
    assert_eq!(log[2]["auth"], "none");
}

#[test]
fn the_expected_pseudonym_is_hmac_sha256_of_the_name_keyed_with_the_file() {
    // The vector in src/pseudonym.rs, for a key file as `openssl rand`
    // writes it (trailing newline): guards the helper the tests above use.
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("pseudonym.key");
    std::fs::write(&key, "0123456789abcdef0123456789abcdef\n").unwrap();
    assert_eq!(expected_pseudonym(&key, "alice"), "p:433deb45467e4e53");
}
