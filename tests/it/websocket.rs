//! WebSocket through the proxy: absolute-form Upgrade, and inside a CONNECT tunnel.

use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::support::*;

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
/// RFC 6455's accept value for `KEY`.
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

pub(crate) fn handshake(target: &str, host: &str) -> String {
    format!(
        "GET {target} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

pub(crate) async fn echo_round_trip(stream: tokio::net::TcpStream) {
    let mut ws = WebSocketStream::from_raw_socket(stream, Role::Client, None).await;
    within(ws.send(Message::text("hello through socialgate")))
        .await
        .unwrap();
    let got = within(ws.next()).await.expect("an echo").unwrap();
    assert_eq!(got, Message::text("hello through socialgate"));
    within(ws.send(Message::binary(vec![1u8, 2, 3, 255])))
        .await
        .unwrap();
    let got = within(ws.next()).await.expect("an echo").unwrap();
    assert_eq!(got, Message::binary(vec![1u8, 2, 3, 255]));
    let _ = within(ws.close(None)).await;
}

#[tokio::test]
async fn relays_websocket_messages_after_an_absolute_form_upgrade() {
    let origin = Origin::start().await;
    let proxy = TestProxy::start(BASIC_POLICY).await;
    let mut s = within(tokio::net::TcpStream::connect(proxy.addr))
        .await
        .unwrap();
    let authority = format!("example.org:{}", origin.port());
    s.write_all(handshake(&format!("http://{authority}/ws"), &authority).as_bytes())
        .await
        .unwrap();
    let head = read_head(&mut s).await;
    assert_eq!(status_of(&head), 101, "{head}");
    let lower = head.to_ascii_lowercase();
    assert!(
        lower.contains(&format!(
            "sec-websocket-accept: {}",
            ACCEPT.to_ascii_lowercase()
        )),
        "{head}"
    );
    assert!(lower.contains("upgrade: websocket"), "{head}");
    echo_round_trip(s).await;

    let log = proxy.log_lines(1).await;
    assert_eq!(log[0]["kind"], "request");
    assert_eq!(log[0]["status"], 101);
    assert_eq!(log[0]["host"], "example.org");
    assert!(
        log[0]["bytes_up"].as_u64().unwrap() > 20,
        "frames counted: {}",
        log[0]
    );
    assert!(
        log[0]["bytes_down"].as_u64().unwrap() > 20,
        "frames counted: {}",
        log[0]
    );
}

#[tokio::test]
async fn relays_websocket_messages_inside_a_connect_tunnel() {
    let origin = Origin::start().await;
    let proxy = TestProxy::start(BASIC_POLICY).await;
    let mut s = within(tokio::net::TcpStream::connect(proxy.addr))
        .await
        .unwrap();
    let authority = format!("example.org:{}", origin.port());
    s.write_all(format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let head = read_head(&mut s).await;
    assert_eq!(status_of(&head), 200, "{head}");
    s.write_all(handshake("/ws", &authority).as_bytes())
        .await
        .unwrap();
    let head = read_head(&mut s).await;
    assert_eq!(status_of(&head), 101, "{head}");
    assert!(head.contains(ACCEPT), "{head}");
    echo_round_trip(s).await;

    let log = proxy.log_lines(1).await;
    assert_eq!(log[0]["kind"], "tunnel");
    assert_eq!(log[0]["status"], 200);
    assert_eq!(log[0]["host"], "example.org");
    assert!(
        log[0]["bytes_down"].as_u64().unwrap() > 100,
        "101 head and frames counted: {}",
        log[0]
    );
}

#[tokio::test]
async fn refuses_a_websocket_upgrade_to_a_blocked_platform() {
    let proxy = TestProxy::start(BASIC_POLICY).await;
    let mut s = within(tokio::net::TcpStream::connect(proxy.addr))
        .await
        .unwrap();
    s.write_all(handshake("http://www.tiktok.com/ws", "www.tiktok.com").as_bytes())
        .await
        .unwrap();
    let head = read_head(&mut s).await;
    assert_eq!(status_of(&head), 403, "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("x-socialgate-rule: no-tiktok"),
        "{head}"
    );
}
