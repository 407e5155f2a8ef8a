//! The activity matcher over the shipped signatures: any request (method,
//! host, path, query, headers, a peeked body), never a panic; a request
//! that asks for its body is decided once the body is peeked, and the
//! same request is always classified the same way.

use std::sync::OnceLock;

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use proptest::prelude::*;
use socialgate::policy::activity::{Body, Classify, Seen};
use socialgate::policy::{load_dir, Policy};

fn policy() -> &'static Policy {
    static P: OnceLock<Policy> = OnceLock::new();
    P.get_or_init(|| {
        load_dir(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies"))
            .expect("the shipped policy loads")
    })
}

/// Hosts of platforms with signatures, and one outside the catalog.
const HOSTS: [&str; 10] = [
    "www.facebook.com",
    "x.com",
    "www.linkedin.com",
    "www.youtube.com",
    "www.instagram.com",
    "www.tiktok.com",
    "www.reddit.com",
    "www.threads.net",
    "upload.youtube.com",
    "example.org",
];

fn method() -> impl Strategy<Value = Method> {
    prop_oneof![
        Just(Method::GET),
        Just(Method::POST),
        Just(Method::PUT),
        Just(Method::DELETE),
        Just(Method::PATCH),
        "[A-Z]{1,10}".prop_map(|m| Method::from_bytes(m.as_bytes()).unwrap()),
    ]
}

fn classify(platform: Option<u16>, seen: &Seen<'_>) -> String {
    match policy().activities.classify(platform, seen) {
        Classify::Done(c) => format!("{:?}/{:?}", c.activity, c.signature),
        Classify::NeedBody => "need-body".into(),
    }
}

proptest! {
    #![proptest_config(crate::config(20_000))]

    #[test]
    fn any_request_is_classified_and_a_peeked_body_decides(
        method in method(),
        host_pick in any::<prop::sample::Index>(),
        path in "(/[a-zA-Z0-9_.~%-]{0,12}){0,6}/?",
        query in proptest::option::of("[a-zA-Z0-9_=&%.-]{0,40}"),
        header in proptest::option::of(("x-[a-z-]{1,20}|x-fb-friendly-name|content-type", "[ -~]{0,40}")),
        body in crate::seeded("activity"),
        complete in any::<bool>(),
    ) {
        let p = policy();
        let host = HOSTS[host_pick.index(HOSTS.len())];
        let platform = p.domains.lookup(host).map(|(_, hit)| hit.platform);
        let mut headers = HeaderMap::new();
        if let Some((k, v)) = &header {
            if let (Ok(k), Ok(v)) = (HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_str(v)) {
                headers.insert(k, v);
            }
        }
        let mut seen = Seen {
            method: &method,
            host,
            path: if path.is_empty() { "/" } else { &path },
            query: query.as_deref(),
            headers: &headers,
            body: Body::NotYet,
        };
        let first = classify(platform, &seen);
        prop_assert_eq!(&first, &classify(platform, &seen), "not deterministic");
        let n = body.len().min(socialgate::policy::activity::PEEK_LIMIT);
        seen.body = Body::Peeked { bytes: &body[..n], complete };
        let peeked = classify(platform, &seen);
        prop_assert_ne!(peeked, "need-body", "asked for the body again after peeking");
        seen.body = Body::None;
        prop_assert_ne!(classify(platform, &seen), "need-body", "asked for a body the request does not have");
    }
}
