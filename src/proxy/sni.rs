//! Reading the TLS server name from a tunnel's first bytes.
//!
//! The ClientHello is parsed by rustls' `Acceptor` (server name, ALPN),
//! never by hand; the one extension rustls does not expose, Encrypted Client
//! Hello, is looked for with rusticata's `tls-parser`. The
//! bytes are only looked at, not consumed: the caller forwards every byte
//! read to the upstream unchanged, or replays them into socialgate's own
//! TLS server when the tunnel is inspected. [`server_name`] is a pure function over
//! the bytes seen so far; [`peek`] reads from the client until it can answer
//! or a limit is hit.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

/// The largest ClientHello we wait for (records can be fragmented; real
/// hellos with post-quantum key shares are under 4 KiB).
pub const MAX_HELLO_BYTES: usize = 16 * 1024 + 5;

/// The TLS extension number of encrypted_client_hello.
const ECH_EXTENSION: u16 = 0xfe0d;

/// What a ClientHello says.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientHello {
    /// The server name (SNI), if it sent one.
    pub server_name: Option<String>,
    /// The application protocols offered (ALPN), in the client's order.
    pub alpn: Vec<Vec<u8>>,
    /// It carries the encrypted_client_hello extension (real ECH, or the
    /// GREASE that Chromium sends on every connection).
    pub ech: bool,
}

impl ClientHello {
    /// No ALPN, or `h2` or `http/1.1` offered: HTTP can be served inside.
    pub fn offers_http(&self) -> bool {
        self.alpn.is_empty()
            || self
                .alpn
                .iter()
                .any(|p| p.as_slice() == b"h2" || p.as_slice() == b"http/1.1")
    }
}

/// What the first bytes of a tunnel say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hello {
    /// Not enough bytes yet.
    Incomplete,
    /// A TLS ClientHello.
    Tls(ClientHello),
    /// Not TLS (or a ClientHello rustls cannot read).
    NotTls,
}

impl Hello {
    /// The server name of a ClientHello that sent one.
    pub fn server_name(&self) -> Option<&str> {
        match self {
            Hello::Tls(h) => h.server_name.as_deref(),
            _ => None,
        }
    }
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
        Ok(Some(accepted)) => {
            let ch = accepted.client_hello();
            Hello::Tls(ClientHello {
                server_name: ch.server_name().map(str::to_string),
                alpn: ch
                    .alpn()
                    .map(|protos| protos.map(<[u8]>::to_vec).collect())
                    .unwrap_or_default(),
                ech: has_ech(bytes),
            })
        }
        Ok(None) if bytes.len() < MAX_HELLO_BYTES => Hello::Incomplete,
        Ok(None) => Hello::NotTls,
        Err(_) => Hello::NotTls,
    }
}

/// True when the ClientHello in `bytes` (already known to be complete)
/// carries the encrypted_client_hello extension. The handshake message may
/// span several records: their payloads are joined, then parsed.
fn has_ech(bytes: &[u8]) -> bool {
    use tls_parser::{
        parse_tls_extensions, parse_tls_message_handshake, parse_tls_raw_record, TlsMessage,
        TlsMessageHandshake, TlsRecordType,
    };
    let mut handshake = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let Ok((next, record)) = parse_tls_raw_record(rest) else {
            break;
        };
        if record.hdr.record_type != TlsRecordType::Handshake {
            break;
        }
        handshake.extend_from_slice(record.data);
        rest = next;
    }
    let Ok((_, TlsMessage::Handshake(TlsMessageHandshake::ClientHello(hello)))) =
        parse_tls_message_handshake(&handshake)
    else {
        return false;
    };
    let Some(Ok((_, extensions))) = hello.ext.map(parse_tls_extensions) else {
        return false;
    };
    extensions
        .iter()
        .any(|e| tls_parser::TlsExtensionType::from(e).0 == ECH_EXTENSION)
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
        let got = server_name(&hello);
        assert_eq!(got.server_name(), Some("www.tiktok.com"));
        let Hello::Tls(h) = got else { unreachable!() };
        assert!(!h.ech, "a rustls client sends no ECH extension");
        assert!(h.offers_http(), "no ALPN: HTTP/1.1 is assumed");
    }

    #[test]
    fn reads_the_offered_protocols() {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let server = rustls::pki_types::ServerName::try_from("example.org").unwrap();
        let mut conn = rustls::ClientConnection::new(Arc::new(config), server).unwrap();
        let mut out = Vec::new();
        while conn.wants_write() {
            conn.write_tls(&mut out).unwrap();
        }
        let Hello::Tls(h) = server_name(&out) else {
            panic!("not read")
        };
        assert_eq!(h.alpn, vec![b"h2".to_vec(), b"http/1.1".to_vec()]);
        assert!(h.offers_http());
        let imap = ClientHello {
            alpn: vec![b"imap".to_vec()],
            ..ClientHello::default()
        };
        assert!(!imap.offers_http());
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
        assert_eq!(server_name(&hello).server_name(), Some("www.linkedin.com"));
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
        let Hello::Tls(h) = server_name(CHROMIUM_HELLO) else {
            panic!("not read")
        };
        assert_eq!(h.server_name.as_deref(), Some("www.linkedin.com"));
        // Chromium sends ECH GREASE on every connection.
        assert!(h.ech, "the ECH extension was not seen");
        assert_eq!(h.alpn, vec![b"h2".to_vec(), b"http/1.1".to_vec()]);
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
    fn a_hello_split_over_two_records_is_read_whole() {
        // The same handshake message, in two TLS records (as a client that
        // fragments may send it).
        let payload = &CHROMIUM_HELLO[5..];
        let (a, b) = payload.split_at(700);
        let mut split = Vec::new();
        for part in [a, b] {
            split.extend_from_slice(&[0x16, 0x03, 0x01]);
            split.extend_from_slice(&(part.len() as u16).to_be_bytes());
            split.extend_from_slice(part);
        }
        let Hello::Tls(h) = server_name(&split) else {
            panic!("not read")
        };
        assert_eq!(h.server_name.as_deref(), Some("www.linkedin.com"));
        assert!(h.ech, "the ECH extension is found across records");
        for len in 1..split.len() {
            assert_eq!(
                server_name(&split[..len]),
                Hello::Incomplete,
                "prefix of {len} bytes"
            );
        }
    }

    #[test]
    fn a_hello_for_an_ip_address_has_no_server_name() {
        let hello = client_hello("192.0.2.7");
        assert_eq!(server_name(&hello), Hello::Tls(ClientHello::default()));
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
