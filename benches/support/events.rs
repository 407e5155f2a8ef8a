//! Realistic access-log records, shared by `benches/accesslog.rs` and
//! `examples/accesslog_cost.rs`: what the writer thread formats per
//! request.

use std::sync::Arc;

use socialgate::event::{AuthMethod, Event, Kind, Tls};
use socialgate::outcome::{Action, Activity, Class, ErrorKind, Mode, Reason};

/// Each case's name and record.
pub fn cases() -> Vec<(&'static str, Event)> {
    // A keep-alive GET of the loopback benchmark (benches/loopback-policy):
    // a host on no platform, allowed by default, no user, no path logged.
    let plain = Event {
        time: "2026-11-26T13:41:07.123456789Z".parse().unwrap(),
        kind: Kind::Request,
        client: "127.0.0.1".parse().unwrap(),
        user: None,
        auth: AuthMethod::None,
        groups: vec![Arc::from("staff")],
        group: Some(Arc::from("staff")),
        method: http::Method::GET,
        host: "127.0.0.1".to_string(),
        port: 18096,
        path: None,
        sni: None,
        tls: None,
        platform: None,
        category: None,
        class: None,
        activity: Some(Activity::Read),
        signature: None,
        activity_unseen: None,
        foreground: false,
        action: Action::Allow,
        mode: Mode::Enforce,
        rule: Arc::from("default:other"),
        reason: Reason::DefaultOther,
        warn: None,
        budget: None,
        status: 200,
        bytes_up: 0,
        bytes_down: 1024,
        duration_ms: 0,
        error: None,
        parent: None,
        parent_status: None,
        original_dst: None,
        request_reason: None,
        pseudonymize: true,
    };
    // A refusal: a signed-in user in two groups, a platform rule.
    let refused = Event {
        time: "2026-11-26T09:05:31.5Z".parse().unwrap(),
        client: "10.20.30.40".parse().unwrap(),
        user: Some("p:5f0c3a9e1b2d4c6e".to_string()),
        auth: AuthMethod::Basic,
        groups: vec![Arc::from("staff"), Arc::from("marketing")],
        group: Some(Arc::from("marketing")),
        host: "www.tiktok.com".to_string(),
        port: 80,
        path: Some("/@someone/video/7301234567890123456?lang=en".to_string()),
        platform: Some(Arc::from("tiktok")),
        category: Some(Arc::from("video")),
        class: Some(Class::Primary),
        foreground: true,
        action: Action::Block,
        rule: Arc::from("no-tiktok"),
        reason: Reason::RuleMatched,
        status: 403,
        bytes_down: 2311,
        duration_ms: 1,
        ..plain.clone()
    };
    // A request inside an inspected tunnel: an activity with its signature.
    let inspected = Event {
        time: "2026-11-26T10:12:44.007Z".parse().unwrap(),
        client: "10.20.30.41".parse().unwrap(),
        user: Some("p:0123456789abcdef".to_string()),
        auth: AuthMethod::Header,
        method: http::Method::POST,
        host: "x.com".to_string(),
        port: 443,
        path: Some("/i/api/graphql/abc123/CreateTweet".to_string()),
        tls: Some(Tls::Intercepted),
        platform: Some(Arc::from("x")),
        category: Some(Arc::from("social")),
        class: Some(Class::Primary),
        activity: Some(Activity::Post),
        signature: Some(Arc::from("x-post")),
        action: Action::Allow,
        rule: Arc::from("social-read-write"),
        reason: Reason::RuleMatched,
        bytes_up: 1893,
        bytes_down: 40211,
        duration_ms: 212,
        ..plain.clone()
    };
    // A CONNECT tunnel passed through, closed by the client.
    let tunnel = Event {
        time: "2026-11-26T11:00:00Z".parse().unwrap(),
        kind: Kind::Tunnel,
        client: "2001:db8::17".parse().unwrap(),
        method: http::Method::CONNECT,
        host: "www.linkedin.com".to_string(),
        port: 443,
        sni: Some("www.linkedin.com".to_string()),
        tls: Some(Tls::Passthrough),
        platform: Some(Arc::from("linkedin")),
        category: Some(Arc::from("professional")),
        class: Some(Class::Primary),
        activity: None,
        activity_unseen: Some(Arc::from("linkedin-read-only")),
        foreground: true,
        rule: Arc::from("professional-networks"),
        reason: Reason::RuleMatched,
        bytes_up: 48_213,
        bytes_down: 1_932_411,
        duration_ms: 93_118,
        error: Some(ErrorKind::ClientClosed),
        ..plain.clone()
    };
    vec![
        ("plain", plain),
        ("refused", refused),
        ("inspected", inspected),
        ("tunnel", tunnel),
    ]
}
