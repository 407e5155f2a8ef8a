//! Host normalisation: any string, never a panic; a name comes out
//! lowercase ASCII without a trailing dot, at most 253 bytes, and
//! normalising it again gives the same host.

use proptest::prelude::*;
use socialgate::policy::{normalize_host, Host};

fn check(raw: &str) {
    let Ok(host) = normalize_host(raw) else {
        return;
    };
    match &host {
        Host::Name(n) => {
            assert!(!n.is_empty() && n.len() <= 253, "{raw:?} -> {n:?}");
            assert!(n.is_ascii(), "{raw:?} -> {n:?}");
            assert_eq!(n, &n.to_ascii_lowercase(), "{raw:?}");
            assert!(!n.ends_with('.'), "{raw:?} -> {n:?}");
        }
        Host::Numeric(n) => assert!(!n.is_empty(), "{raw:?}"),
        Host::Ip(_) => {}
    }
    let again = match &host {
        Host::Ip(std::net::IpAddr::V6(ip)) => normalize_host(&format!("[{ip}]")),
        h => normalize_host(&h.to_string()),
    };
    assert_eq!(again.as_ref(), Ok(&host), "not idempotent: {raw:?}");
}

proptest! {
    #![proptest_config(crate::config(20_000))]

    #[test]
    fn host_normalisation_never_panics_and_is_idempotent(bytes in crate::seeded("host")) {
        let text = String::from_utf8_lossy(&bytes);
        for line in text.lines() {
            check(line);
        }
        check(&text);
    }

    #[test]
    fn any_unicode_host_normalises_or_is_refused(s in "\\PC{0,80}") {
        check(&s);
    }
}
