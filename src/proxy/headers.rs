//! Header hygiene for forwarded messages (RFC 9110 §7.6.1).
//!
//! Hop-by-hop headers (`Connection` and every header it names, `Keep-Alive`,
//! `Proxy-Connection`, `TE`, `Trailer`, `Transfer-Encoding`, `Upgrade`, and
//! the proxy's own `Proxy-Authorization`/`Proxy-Authenticate`) never cross
//! the proxy; hyper re-frames the body on each side. A `Via` entry is added.
//! For a WebSocket upgrade, `Connection: upgrade` and `Upgrade: websocket`
//! are kept; no other protocol is offered onward (see [`wants_upgrade`]).

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Hop-by-hop headers, lowercase; with `Proxy-Authenticate`, which is the
/// proxy's own too.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authorization",
    "proxy-authenticate",
];

/// The `Via` entry socialgate adds.
pub const VIA: &str = "1.1 socialgate";

/// Removes hop-by-hop headers. With `keep_upgrade`, `Upgrade: websocket`
/// and `Connection: upgrade` are written back so the next hop sees the
/// upgrade, and only that one ([`wants_upgrade`] said it was offered).
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    // Headers named by Connection are hop-by-hop too. Its usual tokens
    // (`keep-alive`, `close`, `upgrade`) name headers removed below anyway
    // or none at all; only other names are parsed and collected.
    let mut named: Vec<HeaderName> = Vec::new();
    for value in headers.get_all(header::CONNECTION) {
        let Ok(value) = value.to_str() else { continue };
        for token in value.split(',').map(str::trim) {
            if token.eq_ignore_ascii_case("close") || is_hop_by_hop(token) {
                continue;
            }
            if let Ok(name) = HeaderName::from_bytes(token.as_bytes()) {
                named.push(name);
            }
        }
    }
    for name in named {
        headers.remove(&name);
    }
    // One pass over the names present (most messages carry none or one of
    // these), instead of a hashed removal per hop-by-hop name.
    let mut present: [Option<HeaderName>; 9] = Default::default();
    let mut n = 0;
    for name in headers.keys() {
        let hop = is_hop_by_hop(name.as_str());
        if hop && n < present.len() && !present[..n].iter().any(|p| p.as_ref() == Some(name)) {
            present[n] = Some(name.clone());
            n += 1;
        }
    }
    for name in present.iter().flatten() {
        headers.remove(name);
    }
    if keep_upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static(WEBSOCKET));
    }
}

/// A hop-by-hop header's name, in any case: compared as text, which is
/// cheaper than comparing header names.
fn is_hop_by_hop(name: &str) -> bool {
    HOP_BY_HOP
        .iter()
        .any(|h| h.len() == name.len() && h.eq_ignore_ascii_case(name))
}

/// Appends socialgate's entry to `Via`.
pub fn add_via(headers: &mut HeaderMap) {
    match headers.get(header::VIA).and_then(|v| v.to_str().ok()) {
        Some(prev) if !prev.is_empty() => {
            if let Ok(v) = HeaderValue::from_str(&format!("{prev}, {VIA}")) {
                headers.insert(header::VIA, v);
            }
        }
        _ => {
            headers.insert(header::VIA, HeaderValue::from_static(VIA));
        }
    }
}

/// The one protocol a request may switch to through socialgate.
const WEBSOCKET: &str = "websocket";

/// True when the request asks to switch to WebSocket (`Connection: upgrade`
/// and `websocket` among the `Upgrade` protocols). Any other protocol
/// (`h2c`, or one an origin makes up) would turn the connection into bytes
/// the policy cannot read, around the per-request decisions (`read_only`,
/// activities, paths): such a request is forwarded as an ordinary one, its
/// `Upgrade` dropped like any hop-by-hop header, as nginx does unless told.
pub fn wants_upgrade(headers: &HeaderMap) -> bool {
    let tokens = |name| {
        headers
            .get_all(name)
            .into_iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
    };
    tokens(header::CONNECTION).any(|t| t.eq_ignore_ascii_case("upgrade"))
        && tokens(header::UPGRADE).any(is_websocket)
}

/// True when a `101` switches to what was asked: WebSocket.
pub fn switches_to_websocket(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| is_websocket(v.trim()))
}

/// `websocket`, in any case, optionally with a version (`websocket/13`).
fn is_websocket(protocol: &str) -> bool {
    let name = protocol.split('/').next().unwrap_or_default();
    name.eq_ignore_ascii_case(WEBSOCKET)
}

/// Removes `Alt-Svc` from a response: it would invite browsers to HTTP/3
/// (QUIC over UDP), around the proxy and its policy.
pub fn strip_alt_svc(headers: &mut HeaderMap) {
    headers.remove(header::ALT_SVC);
}

/// How the proxy's own answer to a request is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presentation {
    /// A page for a person: a browser navigation.
    Html,
    /// An API call (`fetch`/XHR): a JSON object.
    Json,
    /// Anything else (scripts, curl): short plain text.
    Text,
}

/// Content negotiation for refusal and error bodies. A navigation
/// (`Sec-Fetch-Mode: navigate`, or without fetch metadata an `Accept` that
/// asks for `text/html`) gets the HTML page. An API call
/// (`Sec-Fetch-Mode: cors`, or an `Accept` naming JSON) gets JSON. The rest
/// gets plain text.
pub fn presentation(method: &http::Method, headers: &HeaderMap) -> Presentation {
    let text = |name: &HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    let mode = text(&SEC_FETCH_MODE).map(str::trim);
    let is = |word: &str| mode.is_some_and(|m| m.eq_ignore_ascii_case(word));
    if is("navigate") {
        Presentation::Html
    } else if is("cors") || text(&header::ACCEPT).is_some_and(|a| contains_ignoring_case(a, "json"))
    {
        Presentation::Json
    } else if mode.is_some() || !is_navigation(method, headers) {
        Presentation::Text
    } else {
        Presentation::Html
    }
}

const SEC_FETCH_MODE: HeaderName = HeaderName::from_static("sec-fetch-mode");
const SEC_FETCH_DEST: HeaderName = HeaderName::from_static("sec-fetch-dest");

/// `needle` (lowercase ASCII) in `haystack`, in any case.
fn contains_ignoring_case(haystack: &str, needle: &str) -> bool {
    haystack
        .as_bytes()
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

/// True when the request is a browser's top-level page load, which gets an
/// HTML refusal page rather than a short text body.
pub fn is_navigation(method: &http::Method, headers: &HeaderMap) -> bool {
    if method != http::Method::GET {
        return false;
    }
    if let Some(dest) = headers.get(&SEC_FETCH_DEST).and_then(|v| v.to_str().ok()) {
        return dest.eq_ignore_ascii_case("document");
    }
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn removes_hop_by_hop_headers_and_those_named_by_connection() {
        let mut h = map(&[
            ("connection", "keep-alive, x-secret"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("proxy-authorization", "Basic abc"),
            ("proxy-connection", "keep-alive"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("x-keep", "yes"),
        ]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1, "{h:?}");
        assert_eq!(h["x-keep"], "yes");
    }

    #[test]
    fn connection_tokens_in_any_case_and_spacing_name_hop_by_hop_headers() {
        let mut h = map(&[
            ("connection", " Close ,X-Secret"),
            ("connection", "KEEP-ALIVE,\tx-other , Upgrade, bad name, "),
            ("x-secret", "1"),
            ("x-other", "2"),
            ("keep-alive", "timeout=5"),
            ("proxy-authenticate", "Basic"),
            ("x-keep", "yes"),
        ]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1, "{h:?}");
        assert_eq!(h["x-keep"], "yes");
        for name in HOP_BY_HOP {
            assert!(is_hop_by_hop(name) && is_hop_by_hop(&name.to_ascii_uppercase()));
        }
        assert!(!is_hop_by_hop("x-connection") && !is_hop_by_hop("t") && !is_hop_by_hop(""));
    }

    #[test]
    fn keeps_the_upgrade_handshake_when_asked() {
        let mut h = map(&[("connection", "Upgrade"), ("upgrade", "websocket")]);
        assert!(wants_upgrade(&h));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h["connection"], "upgrade");
        assert_eq!(h["upgrade"], "websocket");
    }

    #[test]
    fn only_websocket_is_an_upgrade() {
        let cases = [
            ("Upgrade", "websocket", true),
            ("keep-alive, Upgrade", "WebSocket", true),
            ("upgrade", "websocket/13", true),
            ("Upgrade", "h2c, websocket", true),
            ("Upgrade", "h2c", false),
            ("Upgrade", "websocketx", false),
            ("Upgrade", "tls/1.2", false),
            ("keep-alive", "websocket", false),
        ];
        for (connection, upgrade, want) in cases {
            let h = map(&[("connection", connection), ("upgrade", upgrade)]);
            assert_eq!(wants_upgrade(&h), want, "{connection:?} {upgrade:?}");
        }
        // What goes on is WebSocket alone, whatever else was offered.
        let mut h = map(&[("connection", "Upgrade"), ("upgrade", "h2c, websocket")]);
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h["upgrade"], "websocket");
        assert!(switches_to_websocket(&map(&[("upgrade", "WebSocket")])));
        assert!(!switches_to_websocket(&map(&[("upgrade", "h2c")])));
        assert!(!switches_to_websocket(&HeaderMap::new()));
    }

    #[test]
    fn appends_via() {
        let mut h = HeaderMap::new();
        add_via(&mut h);
        assert_eq!(h["via"], VIA);
        let mut h = map(&[("via", "1.0 fred")]);
        add_via(&mut h);
        assert_eq!(h["via"], "1.0 fred, 1.1 socialgate");
    }

    #[test]
    fn negotiates_how_a_refusal_is_shown() {
        use Presentation::*;
        let get = http::Method::GET;
        let cases: [(&[(&str, &str)], Presentation); 8] = [
            (
                &[("sec-fetch-mode", "navigate"), ("accept", "text/html")],
                Html,
            ),
            (&[("sec-fetch-mode", "cors"), ("accept", "*/*")], Json),
            (&[("sec-fetch-mode", "cors"), ("accept", "text/html")], Json),
            (
                &[("sec-fetch-mode", "no-cors"), ("accept", "image/avif,*/*")],
                Text,
            ),
            (&[("accept", "application/json")], Json),
            (&[("accept", "text/html,application/xhtml+xml")], Html),
            (&[("accept", "*/*")], Text),
            (&[], Text),
        ];
        for (headers, want) in cases {
            assert_eq!(presentation(&get, &map(headers)), want, "{headers:?}");
        }
        assert_eq!(
            presentation(&http::Method::POST, &map(&[("sec-fetch-mode", "navigate")])),
            Html,
            "a form post is a navigation too"
        );
    }

    #[test]
    fn removes_alt_svc() {
        let mut h = map(&[("alt-svc", "h3=\":443\"; ma=86400"), ("x-keep", "1")]);
        strip_alt_svc(&mut h);
        assert!(!h.contains_key("alt-svc"));
        assert_eq!(h.len(), 1);
    }

    #[test]
    fn tells_navigations_from_other_requests() {
        let get = http::Method::GET;
        assert!(is_navigation(&get, &map(&[("sec-fetch-dest", "document")])));
        assert!(!is_navigation(
            &get,
            &map(&[("sec-fetch-dest", "script"), ("accept", "text/html")])
        ));
        assert!(is_navigation(
            &get,
            &map(&[("accept", "text/html,application/xhtml+xml")])
        ));
        assert!(!is_navigation(&get, &map(&[("accept", "*/*")])));
        assert!(!is_navigation(
            &http::Method::POST,
            &map(&[("accept", "text/html")])
        ));
    }
}
