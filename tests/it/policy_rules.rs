//! Rules on the wire: per-group allow and block, first match wins, report
//! mode, and time windows.

use jiff::civil::Weekday;

use crate::support::*;

/// marketing (127.0.0.2) may use TikTok; everyone else on 127/8 may not.
const GROUPS_POLICY: &str = r#"
version: 1
settings:
  timezone: UTC
destinations:
  allow: [127.0.0.0/8]
groups:
  marketing:
    networks: [127.0.0.2/32]
  staff:
    networks: [127.0.0.0/8]
rules:
  - id: marketing-social
    groups: [marketing]
    categories: [social, video]
    action: allow
  - id: no-tiktok
    groups: [staff]
    platforms: [tiktok]
    action: block
    message: TikTok is not for work.
  - id: messaging-dry-run
    groups: [staff]
    categories: [messaging]
    action: block
    mode: report
"#;

#[tokio::test]
async fn allows_tiktok_for_marketing_because_its_rule_comes_first() {
    let origin = Origin::start().await;
    let proxy = TestProxy::start(GROUPS_POLICY).await;
    let url = format!("http://www.tiktok.com:{}/hello", origin.port());
    let resp = within(proxy.client_from("127.0.0.2").get(&url).send())
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "hello from origin");
    let log = proxy.log_lines(1).await;
    assert_eq!(log[0]["client"], "127.0.0.2");
    assert_eq!(log[0]["groups"], serde_json::json!(["marketing", "staff"]));
    assert_eq!(log[0]["group"], "marketing");
    assert_eq!(log[0]["rule"], "marketing-social");
    assert_eq!(log[0]["action"], "allow");
    assert_eq!(log[0]["platform"], "tiktok");
}

#[tokio::test]
async fn blocks_tiktok_for_staff_outside_marketing() {
    let origin = Origin::start().await;
    let proxy = TestProxy::start(GROUPS_POLICY).await;
    let url = format!("http://www.tiktok.com:{}/hello", origin.port());
    let resp = within(proxy.client_from("127.0.0.3").get(&url).send())
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(resp.headers()["x-socialgate-rule"], "no-tiktok");
    assert!(resp
        .text()
        .await
        .unwrap()
        .contains("TikTok is not for work."));
    assert_eq!(origin.connections(), 0);
    // An admin's check with curl -x gives the same answer.
    let (code, out) = curl(&["-x", &proxy.url(), "--interface", "127.0.0.3", "-i", &url]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("HTTP/1.1 403"), "{out}");
    assert!(
        out.to_ascii_lowercase()
            .contains("x-socialgate-reason: rule-matched"),
        "{out}"
    );
    let log = proxy.log_lines(2).await;
    assert_eq!(log[0]["group"], "staff");
    assert_eq!(log[0]["rule"], "no-tiktok");
    assert_eq!(log[0]["action"], "block");
    assert_eq!(log[0]["mode"], "enforce");
}

#[tokio::test]
async fn lets_traffic_pass_under_a_report_mode_block_and_logs_it() {
    let origin = Origin::start().await;
    let proxy = TestProxy::start(GROUPS_POLICY).await;
    let url = format!("http://web.whatsapp.com:{}/hello", origin.port());
    let resp = within(proxy.client_from("127.0.0.3").get(&url).send())
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "report mode never refuses");
    assert!(resp.headers().get("x-socialgate-rule").is_none());
    assert_eq!(resp.text().await.unwrap(), "hello from origin");
    let log = proxy.log_lines(1).await;
    assert_eq!(log[0]["platform"], "whatsapp");
    assert_eq!(log[0]["rule"], "messaging-dry-run");
    assert_eq!(log[0]["action"], "block");
    assert_eq!(log[0]["mode"], "report");
    assert_eq!(log[0]["status"], 200);
}

fn day_name(d: Weekday) -> &'static str {
    match d {
        Weekday::Monday => "mon",
        Weekday::Tuesday => "tue",
        Weekday::Wednesday => "wed",
        Weekday::Thursday => "thu",
        Weekday::Friday => "fri",
        Weekday::Saturday => "sat",
        Weekday::Sunday => "sun",
    }
}

fn window_policy(days: &[&str]) -> String {
    format!(
        r#"
version: 1
settings:
  timezone: UTC
destinations:
  allow: [127.0.0.0/8]
groups:
  staff:
    networks: [127.0.0.0/8]
rules:
  - id: video-in-window
    groups: [staff]
    platforms: [youtube]
    when:
      - days: [{}]
        from: "00:00"
        to: "24:00"
    action: block
"#,
        days.join(", ")
    )
}

#[tokio::test]
async fn blocks_youtube_inside_a_time_window_that_covers_now() {
    let origin = Origin::start().await;
    let proxy = TestProxy::start(&window_policy(&["all"])).await;
    let resp = within(
        proxy
            .client()
            .get(format!("http://www.youtube.com:{}/hello", origin.port()))
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(resp.headers()["x-socialgate-rule"], "video-in-window");
}

#[tokio::test]
async fn allows_youtube_when_the_time_window_excludes_today() {
    // Today and tomorrow (in the policy's zone, UTC) are left out, so the
    // test holds even if the date changes while it runs.
    let today = jiff::Timestamp::now()
        .to_zoned_datetime(jiff::tz::TimeZone::UTC)
        .weekday();
    let days: Vec<&str> = (0..7)
        .map(|i| today.wrapping_add(i))
        .filter(|d| *d != today && *d != today.wrapping_add(1))
        .map(day_name)
        .collect();
    assert_eq!(days.len(), 5);
    let origin = Origin::start().await;
    let proxy = TestProxy::start(&window_policy(&days)).await;
    let resp = within(
        proxy
            .client()
            .get(format!("http://www.youtube.com:{}/hello", origin.port()))
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    let log = proxy.log_lines(1).await;
    assert_eq!(log[0]["rule"], "default:catalog");
    assert_eq!(log[0]["platform"], "youtube");
}
