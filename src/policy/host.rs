//! Host normalisation: the one way a destination name becomes comparable.
//!
//! Lowercase, no trailing dot, IDNA (UTS #46) to punycode, brackets removed
//! from IPv6 literals. IP literals and numeric look-alikes (`127.1`,
//! `0x7f.0.0.1`, `2130706433`) are kept apart from names so they can never
//! match a platform domain by accident. Pure: no DNS, no IO.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

/// A normalised destination host.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// A DNS name: lowercase ASCII (punycode), no trailing dot.
    Name(String),
    /// An IPv4 or IPv6 literal.
    Ip(IpAddr),
    /// A name that resolvers may read as an address (`127.1`, `0x7f.1`):
    /// never a platform.
    Numeric(String),
}

impl Host {
    /// The name, if this host is a DNS name.
    pub fn name(&self) -> Option<&str> {
        match self {
            Host::Name(n) => Some(n),
            _ => None,
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Name(n) | Host::Numeric(n) => f.write_str(n),
            Host::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// Why a host could not be normalised.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    #[error("empty host")]
    Empty,
    #[error("host is longer than 253 characters")]
    TooLong,
    #[error("host {0:?} is not a valid name (IDNA): {1}")]
    Invalid(String, String),
}

/// Normalises a host as found in a URL, a `Host` header, a CONNECT authority
/// or a TLS server name. A `:port` suffix must already be removed, except
/// that bracketed IPv6 literals are accepted.
pub fn normalize_host(raw: &str) -> Result<Host, HostError> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Err(HostError::Empty);
    }
    if let Some(inner) = raw.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        // Zone ids (`%eth0`) are not routable through a proxy; reject them.
        return inner
            .parse::<Ipv6Addr>()
            .map(|ip| Host::Ip(IpAddr::V6(ip)))
            .map_err(|e| HostError::Invalid(raw.to_string(), e.to_string()));
    }
    if let Ok(ip) = raw.parse::<IpAddr>() {
        return Ok(Host::Ip(ip));
    }
    let trimmed = raw.strip_suffix('.').unwrap_or(raw);
    if trimmed.is_empty() {
        return Err(HostError::Empty);
    }
    // `1.2.3.4.` is that address (the URL standard's IPv4 parser drops one
    // final dot); as a "name" it would normalise to a different host when
    // normalised again.
    if let Ok(ip) = trimmed.parse::<std::net::Ipv4Addr>() {
        return Ok(Host::Ip(IpAddr::V4(ip)));
    }
    let name = if trimmed
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
    {
        trimmed.to_ascii_lowercase()
    } else {
        idna::domain_to_ascii(trimmed)
            .map_err(|e| HostError::Invalid(raw.to_string(), e.to_string()))?
    };
    if name.len() > 253 {
        return Err(HostError::TooLong);
    }
    let clean = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
    if !clean {
        return Err(HostError::Invalid(
            raw.to_string(),
            "only letters, digits, '-', '_' and '.' are allowed".to_string(),
        ));
    }
    if name.is_empty() || name.split('.').any(str::is_empty) {
        return Err(HostError::Invalid(
            raw.to_string(),
            "empty label".to_string(),
        ));
    }
    if looks_numeric(&name) {
        return Ok(Host::Numeric(name));
    }
    Ok(Host::Name(name))
}

/// True when the last label is a decimal or `0x` number: inet_aton and
/// browsers read such names as IPv4 addresses.
fn looks_numeric(name: &str) -> bool {
    let last = name.rsplit('.').next().unwrap_or(name);
    let digits = last.strip_prefix("0x").unwrap_or(last);
    if last.starts_with("0x") {
        digits.bytes().all(|b| b.is_ascii_hexdigit())
    } else {
        !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
    }
}

/// Splits `host:port`, `[v6]:port` or a bare host. Returns the host part
/// (brackets kept for IPv6) and the port, if any.
pub fn split_host_port(authority: &str) -> Option<(&str, Option<u16>)> {
    if authority.starts_with('[') {
        let end = authority.find(']')?;
        let host = &authority[..=end];
        let rest = &authority[end + 1..];
        if rest.is_empty() {
            return Some((host, None));
        }
        let port = rest.strip_prefix(':')?.parse().ok()?;
        return Some((host, Some(port)));
    }
    match authority.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => Some((h, Some(p.parse().ok()?))),
        Some(_) => None,
        None => Some((authority, None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> Host {
        Host::Name(s.to_string())
    }

    #[test]
    fn normalises_hosts_to_one_comparable_form() {
        let cases: &[(&str, Host)] = &[
            ("WWW.TikTok.COM", name("www.tiktok.com")),
            ("www.tiktok.com.", name("www.tiktok.com")),
            ("bücher.example", name("xn--bcher-kva.example")),
            ("BÜCHER.example.", name("xn--bcher-kva.example")),
            ("127.0.0.1", Host::Ip("127.0.0.1".parse().unwrap())),
            ("127.0.0.1.", Host::Ip("127.0.0.1".parse().unwrap())),
            ("[::1]", Host::Ip("::1".parse().unwrap())),
            ("::1", Host::Ip("::1".parse().unwrap())),
            ("127.1", Host::Numeric("127.1".into())),
            ("2130706433", Host::Numeric("2130706433".into())),
            ("0x7f.0.0.1", Host::Numeric("0x7f.0.0.1".into())),
            ("facebook.com.123abc", name("facebook.com.123abc")),
        ];
        for (raw, want) in cases {
            assert_eq!(&normalize_host(raw).unwrap(), want, "input {raw:?}");
        }
    }

    #[test]
    fn rejects_hosts_that_are_not_names() {
        for raw in ["", ".", "a..b", "[::1", "[zz::1]", "exa mple.com"] {
            assert!(normalize_host(raw).is_err(), "input {raw:?} was accepted");
        }
    }

    #[test]
    fn splits_authorities() {
        assert_eq!(split_host_port("a.b:443"), Some(("a.b", Some(443))));
        assert_eq!(split_host_port("a.b"), Some(("a.b", None)));
        assert_eq!(split_host_port("[::1]:8080"), Some(("[::1]", Some(8080))));
        assert_eq!(split_host_port("[::1]"), Some(("[::1]", None)));
        assert_eq!(split_host_port("a.b:x"), None);
        assert_eq!(split_host_port("a.b:70000"), None);
    }
}
