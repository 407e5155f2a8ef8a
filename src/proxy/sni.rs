//! Reading the TLS server name from a tunnel's first bytes.
//!
//! The ClientHello is parsed by rustls' `Acceptor`, never by hand. The
//! bytes are only looked at, not consumed: the caller forwards every byte
//! read to the upstream unchanged. [`server_name`] is a pure function over
//! the bytes seen so far; [`peek`] reads from the client until it can answer
//! or a limit is hit.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

/// The largest ClientHello we wait for (records can be fragmented; real
/// hellos with post-quantum key shares are under 4 KiB).
pub const MAX_HELLO_BYTES: usize = 16 * 1024 + 5;

/// What the first bytes of a tunnel say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hello {
    /// Not enough bytes yet.
    Incomplete,
    /// A TLS ClientHello, with its server name if it sent one.
    Tls(Option<String>),
    /// Not TLS (or a ClientHello rustls cannot read).
    NotTls,
}

/// Looks for a ClientHello in `bytes`.
pub fn server_name(bytes: &[u8]) -> Hello {
    if bytes.is_empty() {
        return Hello::Incomplete;
    }
    // A TLS handshake record starts with content type 22.
    if bytes[0] != 0x16 {
        return Hello::NotTls;
    }
    let mut acceptor = rustls::server::Acceptor::default();
    let mut rd = bytes;
    while !rd.is_empty() {
        match acceptor.read_tls(&mut rd) {
            Ok(0) => break,
            Ok(_) => {}
            Err(_) => return Hello::NotTls,
        }
    }
    match acceptor.accept() {
        Ok(Some(accepted)) => Hello::Tls(accepted.client_hello().server_name().map(str::to_string)),
        Ok(None) if bytes.len() < MAX_HELLO_BYTES => Hello::Incomplete,
        Ok(None) => Hello::NotTls,
        Err(_) => Hello::NotTls,
    }
}

/// How a peek ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peeked {
    Hello(Hello),
    /// The client sent nothing within the time limit.
    Timeout,
    /// The client closed before saying anything useful.
    Closed,
}

/// Reads from `io` into `buf` until the ClientHello can be judged, the
/// client closes, or `limit` passes.
pub async fn peek<S: AsyncRead + Unpin>(io: &mut S, buf: &mut Vec<u8>, limit: Duration) -> Peeked {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        // Read straight into `buf`: a buffer on the stack here would be
        // part of every tunnel task's state for the tunnel's whole life.
        buf.reserve(4096);
        match tokio::time::timeout_at(deadline, io.read_buf(buf)).await {
            Ok(Ok(0)) => return Peeked::Closed,
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return Peeked::Closed,
            Err(_) => return Peeked::Timeout,
        };
        match server_name(buf) {
            Hello::Incomplete => continue,
            other => return Peeked::Hello(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// A ClientHello as a real rustls client writes it.
    fn client_hello(name: &str) -> Vec<u8> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        let server = rustls::pki_types::ServerName::try_from(name.to_string()).unwrap();
        let mut conn = rustls::ClientConnection::new(Arc::new(config), server).unwrap();
        let mut out = Vec::new();
        while conn.wants_write() {
            conn.write_tls(&mut out).unwrap();
        }
        out
    }

    #[test]
    fn reads_the_server_name_from_a_real_client_hello() {
        let hello = client_hello("www.tiktok.com");
        assert_eq!(
            server_name(&hello),
            Hello::Tls(Some("www.tiktok.com".into()))
        );
    }

    #[test]
    fn every_prefix_of_a_client_hello_is_incomplete_never_wrong() {
        let hello = client_hello("www.linkedin.com");
        for len in 1..hello.len() {
            assert_eq!(
                server_name(&hello[..len]),
                Hello::Incomplete,
                "prefix of {len} bytes"
            );
        }
        assert_eq!(
            server_name(&hello),
            Hello::Tls(Some("www.linkedin.com".into()))
        );
    }

    /// A ClientHello captured from real Chromium (156.0.8078.108, Debian 12)
    /// through a CONNECT proxy: one TLS record of 1988 bytes with GREASE,
    /// ECH GREASE and a post-quantum key share. Captured with
    /// tests/fixtures/capture-clienthello.py (it answers the CONNECT with
    /// 200 and saves the next TLS record) and
    /// `chromium --headless --no-sandbox --disable-gpu --disable-quic
    /// --no-first-run --disable-background-networking
    /// --disable-component-update --disable-sync --user-data-dir=$(mktemp -d)
    /// --proxy-server=http://127.0.0.1:PORT https://www.linkedin.com/`.
    const CHROMIUM_HELLO: &[u8] = include_bytes!("../../tests/fixtures/chromium-clienthello.bin");

    #[test]
    fn reads_the_server_name_from_a_chromium_client_hello() {
        assert_eq!(
            server_name(CHROMIUM_HELLO),
            Hello::Tls(Some("www.linkedin.com".into()))
        );
    }

    #[test]
    fn every_prefix_of_a_chromium_client_hello_is_incomplete_never_wrong() {
        assert!(
            CHROMIUM_HELLO.len() > 1024,
            "a real Chromium hello is large"
        );
        for len in 1..CHROMIUM_HELLO.len() {
            assert_eq!(
                server_name(&CHROMIUM_HELLO[..len]),
                Hello::Incomplete,
                "prefix of {len} bytes"
            );
        }
    }

    #[test]
    fn a_hello_for_an_ip_address_has_no_server_name() {
        let hello = client_hello("192.0.2.7");
        assert_eq!(server_name(&hello), Hello::Tls(None));
    }

    #[test]
    fn plain_text_is_not_tls() {
        assert_eq!(server_name(b"GET / HTTP/1.1\r\n"), Hello::NotTls);
        assert_eq!(server_name(b"SSH-2.0-OpenSSH_9.2\r\n"), Hello::NotTls);
        assert_eq!(
            server_name(&[0x16, 0x03, 0x01, 0x00, 0x05, 0xff, 0, 0, 0, 0]),
            Hello::NotTls
        );
    }
}
