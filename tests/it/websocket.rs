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

#[tokio::test]
async fn an_upgrade_to_anything_but_websocket_is_forwarded_as_an_ordinary_request() {
    // `Upgrade: h2c` (or any protocol an origin agrees to) would turn the
    // connection into bytes no per-request rule reads: read_only, upload
    // and path rules would stop at the first request.
    let origin = RecordingOrigin::start().await;
    let proxy = TestProxy::start(BASIC_POLICY).await;
    let authority = format!("example.org:{}", origin.port());
    for upgrade in ["h2c", "H2C", "foo/1, h2c", "websocketx"] {
        let head = format!(
            "GET http://{authority}/x HTTP/1.1\r\nHost: {authority}\r\nConnection: Upgrade, HTTP2-Settings\r\n\
             Upgrade: {upgrade}\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n"
        );
        let out = raw_exchange(proxy.addr, head.as_bytes()).await;
        assert_eq!(status_of(&out), 200, "{upgrade}: {out}");
    }
    // Offered together with WebSocket, only WebSocket goes on.
    let mut s = connect_from("127.0.0.1", proxy.addr).await;
    let both = handshake(&format!("http://{authority}/ws"), &authority)
        .replace("Upgrade: websocket", "Upgrade: h2c, websocket");
    s.write_all(both.as_bytes()).await.unwrap();
    let _ = read_head(&mut s).await;
    let got = origin.requests();
    assert_eq!(got.len(), 5, "{got:#?}");
    for r in &got[..4] {
        let names: Vec<&str> = r.headers.iter().map(|(k, _)| k.as_str()).collect();
        assert!(
            !names.contains(&"upgrade") && !names.contains(&"http2-settings"),
            "{names:?}"
        );
    }
    let upgrade: Vec<&str> = got[4]
        .headers
        .iter()
        .filter(|(k, _)| k == "upgrade")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(upgrade, ["websocket"]);
}

#[tokio::test]
async fn an_origin_that_switches_a_websocket_request_to_another_protocol_gets_502() {
    // A misbehaving origin: 101 to `h2c` whatever was asked.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = read_head(&mut s).await;
                let _ = s
                    .write_all(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n")
                    .await;
                let _ = s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await;
                let mut sink = [0u8; 256];
                let _ = tokio::io::AsyncReadExt::read(&mut s, &mut sink).await;
            });
        }
    });
    let proxy = TestProxy::start(BASIC_POLICY).await;
    let authority = format!("example.org:{port}");
    let mut s = connect_from("127.0.0.1", proxy.addr).await;
    s.write_all(handshake(&format!("http://{authority}/ws"), &authority).as_bytes())
        .await
        .unwrap();
    let head = read_head(&mut s).await;
    assert_eq!(status_of(&head), 502, "{head}");
    let log = proxy.log_lines(1).await;
    assert_eq!(log[0]["error"], "upstream-protocol", "{}", log[0]);
    server.abort();
}
