//! Who is asking: htpasswd credentials, `Proxy-Authorization: Basic`, and
//! the trusted identity header.
//!
//! Parsing is pure. Verification calls bcrypt, which is slow on purpose
//! (tens of milliseconds), so the proxy runs it on a blocking thread and
//! remembers successful checks in a [`CredentialCache`] keyed by a SHA-256 of
//! the credentials (the password itself is never stored). This module does
//! no network IO.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use sha2::{Digest, Sha256};

/// Users and bcrypt hashes from an htpasswd file (`htpasswd -B`).
#[derive(Debug, Clone, Default)]
pub struct Htpasswd {
    entries: HashMap<String, String>,
}

/// A line of an htpasswd file that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HtpasswdError {
    pub line: usize,
    pub message: String,
    pub hint: String,
}

/// A bcrypt hash used when the user is unknown, so that unknown and known
/// users take the same time to refuse.
const DUMMY_HASH: &str = "$2y$10$7EqJtq98hPqEX7fNZaFWoOHi5BWUo6CW5E8l9aUzDMwlxXdlBfn4W";

impl Htpasswd {
    /// Parses `user:hash` lines; blank lines and `#` comments are skipped.
    /// Only bcrypt hashes (`$2y$`, `$2b$`, `$2a$`) are accepted.
    pub fn parse(text: &str) -> Result<Self, Vec<HtpasswdError>> {
        let mut entries = HashMap::new();
        let mut errors = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line_no = i + 1;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((user, hash)) = line.split_once(':') else {
                errors.push(HtpasswdError {
                    line: line_no,
                    message: "expected user:hash".into(),
                    hint: "create entries with `htpasswd -B FILE USER`".into(),
                });
                continue;
            };
            if user.is_empty() {
                errors.push(HtpasswdError {
                    line: line_no,
                    message: "empty user name".into(),
                    hint: "create entries with `htpasswd -B FILE USER`".into(),
                });
                continue;
            }
            let is_bcrypt = ["$2y$", "$2b$", "$2a$"].iter().any(|p| hash.starts_with(p));
            if !is_bcrypt {
                errors.push(HtpasswdError {
                    line: line_no,
                    message: format!("user {user:?} does not have a bcrypt hash"),
                    hint: "MD5, SHA-1 and crypt hashes are too weak; re-create the entry with `htpasswd -B FILE USER`".into(),
                });
                continue;
            }
            if entries.insert(user.to_string(), hash.to_string()).is_some() {
                errors.push(HtpasswdError {
                    line: line_no,
                    message: format!("user {user:?} appears twice"),
                    hint: "keep one line per user".into(),
                });
            }
        }
        if errors.is_empty() {
            Ok(Self { entries })
        } else {
            Err(errors)
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn users(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// Checks a password. Slow (bcrypt): call it off the async runtime.
    pub fn verify(&self, user: &str, password: &str) -> bool {
        match self.entries.get(user) {
            Some(hash) => bcrypt::verify(password, hash).unwrap_or(false),
            None => {
                let _ = bcrypt::verify(password, DUMMY_HASH);
                false
            }
        }
    }
}

/// Credentials from a `Proxy-Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BasicCredentials {
    pub user: String,
    pub password: String,
}

/// Parses `Basic base64(user:password)`. `None` for any other scheme or a
/// malformed value.
pub fn parse_basic(value: &[u8]) -> Option<BasicCredentials> {
    let value = std::str::from_utf8(value).ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(token.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    if user.is_empty() {
        return None;
    }
    Some(BasicCredentials {
        user: user.to_string(),
        password: password.to_string(),
    })
}

/// Reads a user name from a trusted identity header. Accepts a plain name
/// or the ICAP form `WinNT://DOMAIN/user`.
pub fn parse_identity_header(value: &[u8]) -> Option<String> {
    let value = std::str::from_utf8(value).ok()?.trim();
    let user = match value.strip_prefix("WinNT://") {
        Some(rest) => rest.rsplit('/').next()?,
        None => value,
    };
    if user.is_empty() || user.len() > 256 || user.chars().any(char::is_control) {
        return None;
    }
    Some(user.to_string())
}

/// Remembers checked credentials for a while, so bcrypt runs once per
/// user and password rather than once per request. Failures are remembered
/// too (as `None`), so a client that keeps sending a stale password cannot
/// make the proxy run bcrypt on every request.
#[derive(Debug, Default)]
pub struct CredentialCache {
    entries: Mutex<HashMap<[u8; 32], Cached>>,
}

/// The user (`None` for a refusal) and when the entry expires.
type Cached = (Option<String>, Instant);

/// Upper bound on cached credentials; the cache is cleared when reached.
const CACHE_LIMIT: usize = 100_000;

impl CredentialCache {
    pub fn key(header: &[u8], generation: &[u8]) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(generation);
        h.update([0]);
        h.update(header);
        h.finalize().into()
    }

    /// `Some(Some(user))` for credentials verified recently, `Some(None)`
    /// for credentials refused recently, `None` when not cached (or stale).
    pub fn get(&self, key: &[u8; 32], now: Instant) -> Option<Option<String>> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        match entries.get(key) {
            Some((user, expires)) if *expires > now => Some(user.clone()),
            _ => None,
        }
    }

    pub fn insert(&self, key: [u8; 32], user: Option<String>, ttl: Duration, now: Instant) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= CACHE_LIMIT {
            entries.retain(|_, (_, exp)| *exp > now);
            if entries.len() >= CACHE_LIMIT {
                entries.clear();
            }
        }
        entries.insert(key, (user, now + ttl));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_basic_credentials_and_rejects_everything_else() {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let ok = parse_basic(format!("Basic {}", b64("alice:s3cret:x")).as_bytes()).unwrap();
        assert_eq!(ok.user, "alice");
        assert_eq!(ok.password, "s3cret:x");
        assert!(parse_basic(format!("basic {}", b64("bob:")).as_bytes()).is_some());
        for bad in [
            "Bearer abc".to_string(),
            "Basic !!!".to_string(),
            format!("Basic {}", b64("nocolon")),
            format!("Basic {}", b64(":pw")),
            "Basic".to_string(),
        ] {
            assert!(parse_basic(bad.as_bytes()).is_none(), "{bad}");
        }
    }

    #[test]
    fn htpasswd_takes_bcrypt_only_and_says_how_to_fix_other_hashes() {
        let hash = bcrypt::hash("pw", 4).unwrap();
        let text = format!("# users\nalice:{hash}\n\nbob:$apr1$abc$def\ncarol\n");
        let errs = Htpasswd::parse(&text).unwrap_err();
        assert_eq!(errs.len(), 2);
        assert_eq!(errs[0].line, 4);
        assert!(errs[0].hint.contains("htpasswd -B"));
        assert_eq!(errs[1].line, 5);
        let ok = Htpasswd::parse(&format!("alice:{hash}\n")).unwrap();
        assert!(ok.verify("alice", "pw"));
        assert!(!ok.verify("alice", "wrong"));
        assert!(!ok.verify("mallory", "pw"));
    }

    #[test]
    fn remembers_successes_and_failures_until_they_expire() {
        let cache = CredentialCache::default();
        let now = Instant::now();
        let ok = CredentialCache::key(b"Basic YWxpY2U6cHc=", b"gen1");
        let bad = CredentialCache::key(b"Basic YWxpY2U6bm9wZQ==", b"gen1");
        assert_ne!(
            ok,
            CredentialCache::key(b"Basic YWxpY2U6cHc=", b"gen2"),
            "a new policy starts afresh"
        );
        cache.insert(ok, Some("alice".into()), Duration::from_secs(60), now);
        cache.insert(bad, None, Duration::from_secs(60), now);
        assert_eq!(cache.get(&ok, now), Some(Some("alice".into())));
        assert_eq!(cache.get(&bad, now), Some(None));
        let later = now + Duration::from_secs(61);
        assert_eq!(cache.get(&ok, later), None);
        assert_eq!(cache.get(&bad, later), None);
    }

    #[test]
    fn reads_identity_headers() {
        assert_eq!(parse_identity_header(b"alice").as_deref(), Some("alice"));
        assert_eq!(
            parse_identity_header(b"WinNT://CORP/bob").as_deref(),
            Some("bob")
        );
        assert_eq!(parse_identity_header(b""), None);
        assert_eq!(parse_identity_header(b"a\x01b"), None);
    }
}
