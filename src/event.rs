//! The one record every request and every tunnel ends in.
//!
//! The proxy builds exactly one [`Event`] per request or tunnel, on success and
//! on error, and hands it to the recorder. The access log, the metrics and the
//! usage counters all derive from it; nothing else in the proxy logs traffic.
//! This module holds data only: no IO, no formatting policy beyond serde.
//! The JSON form is the access-log schema documented in `docs/access-log.md`;
//! changing a field here is a schema change and must be documented there.
//! The derived `Serialize` is that form's reference: the access log writes
//! the same bytes with `accesslog::format_event`, which names every field
//! (a new one does not compile until it is written there) and is tested
//! byte for byte against serde_json's output of this derive.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::outcome::{
    Action, Activity, BudgetOutcome, Class, ErrorKind, Mode, Reason, WarnOutcome,
};

/// What kind of traffic a record describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A plain-HTTP request forwarded (or refused) by the proxy.
    Request,
    /// A CONNECT tunnel, from the CONNECT line to the close of both sides.
    Tunnel,
    /// A person asked for access from a block page (`request_access`): the
    /// record names the site, platform, rule and group asked about, and
    /// carries the reason they gave. Not traffic: reports and `simulate`
    /// count it apart.
    #[serde(rename = "access-request")]
    AccessRequest,
}

impl Kind {
    /// The stable label (the serde name).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Request => "request",
            Kind::Tunnel => "tunnel",
            Kind::AccessRequest => "access-request",
        }
    }
}

/// What socialgate did with a tunnel's TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Tls {
    /// Decrypted: the tunnel record, and each request inside it (which has
    /// its own record), carry this.
    Intercepted,
    /// Passed through undecrypted (the policy did not ask, or never allows it).
    Passthrough,
    /// Passed through undecrypted although a rule asked: the client refused
    /// socialgate's certificate for this host recently (a pinned app).
    Pinned,
}

impl Tls {
    pub fn as_str(self) -> &'static str {
        match self {
            Tls::Intercepted => "intercepted",
            Tls::Passthrough => "passthrough",
            Tls::Pinned => "pinned",
        }
    }
}

/// How the user name in a record was established.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    /// No user: the client was identified by its address only.
    None,
    /// `Proxy-Authorization: Basic` checked against the htpasswd file.
    Basic,
    /// A trusted identity header sent by a listed gateway.
    Header,
}

impl AuthMethod {
    /// The stable label (the serde name).
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::None => "none",
            AuthMethod::Basic => "basic",
            AuthMethod::Header => "header",
        }
    }
}

/// One request or tunnel, as recorded.
///
/// Strings that repeat on every request (groups, platform, rule) are cheap
/// clones of the compiled policy's `Arc<str>`s, and outcomes are enums whose
/// serde names are the documented labels: building an event allocates
/// little on the hot path.
/// Readers of the log (`report`, `simulate`) have their own lenient,
/// borrowing record type; this one is only ever written.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// When the request line or CONNECT line was read (RFC 3339, UTC).
    pub time: jiff::Timestamp,
    pub kind: Kind,
    /// The client's address, without port.
    #[serde(serialize_with = "serialize_ip")]
    pub client: std::net::IpAddr,
    /// The user: a pseudonym (`p:` + hex) by default, the plain name only when
    /// the policy turns pseudonymisation off; `null` when unauthenticated.
    pub user: Option<String>,
    pub auth: AuthMethod,
    /// Every group the client is in, in policy order.
    pub groups: Vec<Arc<str>>,
    /// The group the decision was made for (the rule's group, else the first).
    pub group: Option<Arc<str>>,
    #[serde(serialize_with = "method_str")]
    pub method: http::Method,
    /// The normalised destination host (lowercase, punycode, no trailing dot).
    pub host: String,
    pub port: u16,
    /// The URL path and query; logged only where the policy allows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The TLS server name seen in a tunnel's ClientHello.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    /// For a TLS tunnel and the requests inside an inspected one: whether
    /// socialgate decrypted it. Absent for plain HTTP and non-TLS tunnels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<Tls>,
    /// The catalog platform, if the host belongs to one.
    pub platform: Option<Arc<str>>,
    pub category: Option<Arc<str>>,
    /// `primary` for the platform's own domains, `embedded` for its widgets/SDKs.
    pub class: Option<Class>,
    /// What the user did, where it can be seen (plain HTTP, inspected
    /// HTTPS): `read`, `post`, `upload`, ... (docs/activities.md); `null`
    /// for a tunnel.
    pub activity: Option<Activity>,
    /// The activity signature that matched (activities.yaml), if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<Arc<str>>,
    /// A rule about activities that could not be applied because the
    /// traffic was not visible (a tunnel that is not inspected): the
    /// decision fell back to the site level.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activity_unseen: Option<Arc<str>>,
    /// A top-level navigation or a tunnel to a platform's own domain: the
    /// requests that count towards estimated active time.
    pub foreground: bool,
    /// The action of the deciding rule (`allow`, `block` or `warn`).
    pub action: Action,
    /// `enforce`, or `report` when the action was only recorded.
    pub mode: Mode,
    /// The deciding rule's id, or a `default:*` pseudo-rule.
    pub rule: Arc<str>,
    /// A stable, short reason label (see docs/access-log.md).
    pub reason: Reason,
    /// What an enforced `warn` rule did: `shown`, `held`, `continued`,
    /// `acknowledged`, `unshown`, `bad-link` or `unsaved`; absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warn: Option<WarnOutcome>,
    /// Where the person stood with the deciding rule's daily budget:
    /// `left`, `exhausted` or `unavailable`; absent without a budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<BudgetOutcome>,
    /// The HTTP status sent to the client (200 for an established tunnel).
    pub status: u16,
    /// Bytes from the client to the upstream (request body / tunnel upstream).
    pub bytes_up: u64,
    /// Bytes from the upstream to the client (response body / tunnel downstream).
    pub bytes_down: u64,
    pub duration_ms: u64,
    /// A short, fixed error label when the request failed (`upstream-connect`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorKind>,
    /// The parent proxy (`HOST:PORT`) the traffic went through, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<Arc<str>>,
    /// The status the parent proxy refused with (`error: parent-refused`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_status: Option<u16>,
    /// Where a redirected connection was going (transparent mode: the
    /// socket's original destination, `IP:PORT`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_dst: Option<std::net::SocketAddr>,
    /// An access request's reason, as the person wrote it (one line, at
    /// most 200 characters, control characters removed); only on
    /// `kind: access-request`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_reason: Option<String>,
    /// Whether the writer pseudonymises `user`: taken from the policy
    /// snapshot the exchange was decided on, not from the one current when
    /// the line is written. Not part of the log line.
    #[serde(skip)]
    pub pseudonymize: bool,
}

fn method_str<S: serde::Serializer>(m: &http::Method, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(m.as_str())
}

/// Writes an address as its `Display` does; IPv4 without the standard
/// library's padding-aware formatter, which costs about a thousand
/// instructions an address (a few per request: the record, the upstream
/// target, the `Host` header).
pub fn push_ip(s: &mut String, ip: std::net::IpAddr) {
    match ip {
        std::net::IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    s.push('.');
                }
                push_decimal(s, octet.into());
            }
        }
        std::net::IpAddr::V6(v6) => {
            use std::fmt::Write as _;
            let _ = write!(s, "{v6}");
        }
    }
}

/// Appends `n` in decimal.
pub fn push_decimal(s: &mut String, n: u32) {
    s.push_str(itoa::Buffer::new().format(n));
}

fn serialize_ip<S: serde::Serializer>(ip: &std::net::IpAddr, ser: S) -> Result<S::Ok, S::Error> {
    let mut s = String::with_capacity(39);
    push_ip(&mut s, *ip);
    ser.serialize_str(&s)
}

#[cfg(test)]
mod ip_tests {
    #[test]
    fn addresses_are_written_as_display_writes_them() {
        for ip in [
            "0.0.0.0",
            "10.0.0.21",
            "255.255.255.255",
            "::1",
            "2001:db8::1",
            "::ffff:10.0.0.1",
        ] {
            let ip: std::net::IpAddr = ip.parse().unwrap();
            let mut s = String::new();
            super::push_ip(&mut s, ip);
            assert_eq!(s, ip.to_string());
        }
    }
}
