//! The ClientHello peek: any bytes, never a panic; a hello that names a
//! server is found in any prefix only as incomplete, and a real rustls
//! hello for any valid name gives that name back.

use std::sync::Arc;

use proptest::prelude::*;
use socialgate::proxy::sni::{server_name, Hello, MAX_HELLO_BYTES};

fn client_hello(name: &str) -> Option<Vec<u8>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .ok()?
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let server = rustls::pki_types::ServerName::try_from(name.to_string()).ok()?;
    let mut conn = rustls::ClientConnection::new(Arc::new(config), server).ok()?;
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).ok()?;
    }
    Some(out)
}

proptest! {
    #![proptest_config(crate::config(20_000))]

    #[test]
    fn the_hello_peek_never_panics(bytes in crate::seeded("hello")) {
        let verdict = server_name(&bytes);
        if bytes.len() >= MAX_HELLO_BYTES {
            prop_assert_ne!(verdict, Hello::Incomplete, "waits past the limit");
        }
    }

    #[test]
    fn a_real_hello_gives_back_its_name_and_no_prefix_guesses(
        name in "[a-z]([a-z0-9-]{0,18}[a-z0-9])?(\\.[a-z]([a-z0-9-]{0,18}[a-z0-9])?){1,3}",
        cut in any::<prop::sample::Index>(),
    ) {
        let hello = client_hello(&name).expect("a valid name");
        match server_name(&hello) {
            Hello::Tls(h) => prop_assert_eq!(h.server_name, Some(name.clone())),
            other => prop_assert!(false, "not a TLS hello: {:?}", other),
        }
        let prefix = &hello[..cut.index(hello.len())];
        prop_assert_eq!(server_name(prefix), Hello::Incomplete);
    }
}
