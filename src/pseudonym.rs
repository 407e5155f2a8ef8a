//! Keyed pseudonyms for user names.
//!
//! A pseudonym is `p:` followed by the first 16 hex digits of
//! HMAC-SHA256(key, user name). The same key always gives the same pseudonym,
//! so reports can count distinct persons without knowing who they are; without
//! the key a pseudonym cannot be turned back into a name, not even by trying
//! every name in the company directory. Revealing (the reverse map, built from
//! a list of candidate names) therefore needs the key file.
//!
//! The key file holds the key as text: its contents with trailing whitespace
//! trimmed are the key bytes, so `openssl rand -hex 32 > FILE` works as well as
//! [`Pseudonymizer::generate_key_file`]. It must hold at least 32 bytes and,
//! on unix, must not be readable or writable by group or others (mode 0600 or
//! stricter).
//!
//! This module must not log, print or store user names or keys; it does no IO
//! except reading and creating the key file and reading a candidate-name list.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The shortest key accepted, in bytes.
pub const MIN_KEY_LEN: usize = 32;

/// Why a key file could not be used or created. Every variant names the file
/// and says how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum PseudonymError {
    #[error("pseudonym key file {path}: does not exist; create one with `openssl rand -hex 32 > {path} && chmod 600 {path}`")]
    Missing { path: PathBuf },
    #[error(
        "pseudonym key file {path}: cannot be read: {source}; check that it is a readable file"
    )]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("pseudonym key file {path}: holds {len} bytes, at least {MIN_KEY_LEN} are needed; write a new key with `openssl rand -hex 32 > {path}`")]
    TooShort { path: PathBuf, len: usize },
    #[error("pseudonym key file {path}: mode {mode:04o} lets group or others access the key; run `chmod 600 {path}`")]
    TooOpen { path: PathBuf, mode: u32 },
    #[error("pseudonym key file {path}: already exists; refusing to overwrite a key (pseudonyms made with it would no longer match)")]
    Exists { path: PathBuf },
    #[error("pseudonym key file {path}: cannot be created: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("pseudonym key: at least {MIN_KEY_LEN} bytes are needed, got {0}")]
    KeyTooShort(usize),
}

/// Turns user names into pseudonyms with a secret key.
#[derive(Clone)]
pub struct Pseudonymizer {
    /// The keyed MAC, initialised once; cloned per pseudonym (a copy of two
    /// SHA-256 states, far cheaper than re-keying).
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for Pseudonymizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.write_str("Pseudonymizer { key: <hidden> }")
    }
}

impl Pseudonymizer {
    /// Builds a pseudonymizer from key bytes (at least [`MIN_KEY_LEN`]).
    pub fn from_key(key: &[u8]) -> Result<Self, PseudonymError> {
        if key.len() < MIN_KEY_LEN {
            return Err(PseudonymError::KeyTooShort(key.len()));
        }
        // HMAC accepts keys of any length, so this cannot fail.
        let mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
            .expect("HMAC-SHA256 accepts keys of any length");
        Ok(Pseudonymizer { mac })
    }

    /// Reads the key file: it must exist, be readable, hold at least 32 bytes
    /// (after trimming trailing whitespace) and, on unix, have mode 0600 or
    /// stricter.
    pub fn from_key_file(path: &Path) -> Result<Self, PseudonymError> {
        let meta = std::fs::metadata(path).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => PseudonymError::Missing {
                path: path.to_owned(),
            },
            _ => PseudonymError::Unreadable {
                path: path.to_owned(),
                source,
            },
        })?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode() & 0o7777;
            if mode & 0o077 != 0 {
                return Err(PseudonymError::TooOpen {
                    path: path.to_owned(),
                    mode,
                });
            }
        }
        #[cfg(not(unix))]
        let _ = meta;
        let bytes = std::fs::read(path).map_err(|source| PseudonymError::Unreadable {
            path: path.to_owned(),
            source,
        })?;
        let key = trim_end_whitespace(&bytes);
        if key.len() < MIN_KEY_LEN {
            return Err(PseudonymError::TooShort {
                path: path.to_owned(),
                len: key.len(),
            });
        }
        Self::from_key(key)
    }

    /// Creates a new key file with 32 random bytes written as 64 hex digits
    /// and a newline, mode 0600. Refuses to overwrite an existing file.
    pub fn generate_key_file(path: &Path) -> Result<Self, PseudonymError> {
        let mut raw = [0u8; 32];
        getrandom::fill(&mut raw).map_err(|e| PseudonymError::Create {
            path: path.to_owned(),
            source: std::io::Error::other(e.to_string()),
        })?;
        let mut text = hex(&raw);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(path).map_err(|source| match source.kind() {
            std::io::ErrorKind::AlreadyExists => PseudonymError::Exists {
                path: path.to_owned(),
            },
            _ => PseudonymError::Create {
                path: path.to_owned(),
                source,
            },
        })?;
        let key = Self::from_key(text.as_bytes())?;
        text.push('\n');
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|source| PseudonymError::Create {
                path: path.to_owned(),
                source,
            })?;
        Ok(key)
    }

    /// The pseudonym of `user`: `p:` + the first 16 hex digits of
    /// HMAC-SHA256(key, user).
    pub fn pseudonym(&self, user: &str) -> String {
        let mut mac = self.mac.clone();
        mac.update(user.as_bytes());
        let digest = mac.finalize().into_bytes();
        let mut out = String::with_capacity(18);
        out.push_str("p:");
        out.push_str(&hex(&digest[..8]));
        out
    }

    /// A key for another purpose, derived from this one: HMAC-SHA256(key,
    /// `label`). Different labels give independent keys, and a derived key
    /// does not give this one away. Replicas sharing the pseudonym key
    /// derive the same keys (the warn-token key: `crate::warn`).
    pub fn derive_key(&self, label: &str) -> [u8; 32] {
        let mut mac = self.mac.clone();
        mac.update(b"socialgate derived key\0");
        mac.update(label.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// The reveal map: pseudonym → name for every candidate name.
    pub fn reveal_map<'a>(
        &self,
        names: impl IntoIterator<Item = &'a str>,
    ) -> HashMap<String, String> {
        names
            .into_iter()
            .map(|name| (self.pseudonym(name), name.to_owned()))
            .collect()
    }
}

/// Reads candidate user names from `text`: an htpasswd file (`name:hash`) or
/// a plain list with one name per line. Blank lines and lines starting with
/// `#` are skipped; surrounding whitespace is trimmed.
pub fn parse_user_list(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.split(':').next().unwrap_or(l).trim().to_owned())
        .filter(|n| !n.is_empty())
        .collect()
}

fn trim_end_whitespace(bytes: &[u8]) -> &[u8] {
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(0, |i| i + 1);
    &bytes[..end]
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn pseudonym_is_p_colon_16_hex_digits_of_hmac() {
        let p = Pseudonymizer::from_key(KEY).unwrap();
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(KEY).unwrap();
        mac.update(b"alice");
        let expected = format!("p:{}", &hex(&mac.finalize().into_bytes())[..16]);
        assert_eq!(p.pseudonym("alice"), expected);
        assert_eq!(p.pseudonym("alice").len(), 18);
        assert_ne!(p.pseudonym("alice"), p.pseudonym("bob"));
    }

    #[test]
    fn pseudonym_matches_a_fixed_vector() {
        // Computed independently: HMAC-SHA256(KEY, "alice"), first 8 bytes.
        let p = Pseudonymizer::from_key(KEY).unwrap();
        assert_eq!(p.pseudonym("alice"), "p:433deb45467e4e53");
    }

    #[test]
    fn short_key_is_refused() {
        assert!(matches!(
            Pseudonymizer::from_key(b"short"),
            Err(PseudonymError::KeyTooShort(5))
        ));
    }

    #[test]
    fn key_file_rules_table() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.key");
        let err = Pseudonymizer::from_key_file(&missing).unwrap_err();
        assert!(matches!(err, PseudonymError::Missing { .. }));
        assert!(err.to_string().contains("missing.key"));

        let short = dir.path().join("short.key");
        std::fs::write(&short, "abc\n").unwrap();
        set_mode(&short, 0o600);
        assert!(matches!(
            Pseudonymizer::from_key_file(&short),
            Err(PseudonymError::TooShort { len: 3, .. })
        ));

        #[cfg(unix)]
        {
            let open = dir.path().join("open.key");
            std::fs::write(&open, "x".repeat(64)).unwrap();
            set_mode(&open, 0o644);
            let err = Pseudonymizer::from_key_file(&open).unwrap_err();
            assert!(matches!(err, PseudonymError::TooOpen { mode: 0o644, .. }));
            assert!(err.to_string().contains("chmod 600"), "{err}");
            set_mode(&open, 0o400);
            assert!(Pseudonymizer::from_key_file(&open).is_ok());
        }

        let good = dir.path().join("good.key");
        std::fs::write(&good, format!("{}\n", "k".repeat(40))).unwrap();
        set_mode(&good, 0o600);
        let p = Pseudonymizer::from_key_file(&good).unwrap();
        let same = Pseudonymizer::from_key("k".repeat(40).as_bytes()).unwrap();
        assert_eq!(p.pseudonym("alice"), same.pseudonym("alice"));
    }

    #[test]
    fn generated_key_file_is_private_and_loads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new.key");
        let made = Pseudonymizer::generate_key_file(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let loaded = Pseudonymizer::from_key_file(&path).unwrap();
        assert_eq!(made.pseudonym("bob"), loaded.pseudonym("bob"));
        assert!(matches!(
            Pseudonymizer::generate_key_file(&path),
            Err(PseudonymError::Exists { .. })
        ));
    }

    #[test]
    fn reveal_map_inverts_pseudonyms_of_candidates() {
        let p = Pseudonymizer::from_key(KEY).unwrap();
        let names = parse_user_list("# users\nalice:$2y$05$hash\n\n bob \ncarol:x\n");
        assert_eq!(names, ["alice", "bob", "carol"]);
        let map = p.reveal_map(names.iter().map(String::as_str));
        assert_eq!(
            map.get(&p.pseudonym("bob")).map(String::as_str),
            Some("bob")
        );
        assert_eq!(map.len(), 3);
    }

    #[test]
    fn derived_keys_are_per_label_and_not_pseudonyms() {
        let p = Pseudonymizer::from_key(KEY).unwrap();
        let a = p.derive_key("warn-token/v1");
        assert_eq!(
            a,
            Pseudonymizer::from_key(KEY)
                .unwrap()
                .derive_key("warn-token/v1")
        );
        assert_ne!(a, p.derive_key("other/v1"));
        let other = Pseudonymizer::from_key(b"another key, 32 bytes or longer!").unwrap();
        assert_ne!(a, other.derive_key("warn-token/v1"));
        assert!(!p.pseudonym("warn-token/v1").contains(&hex(&a[..8])));
    }

    #[test]
    fn debug_never_shows_the_key() {
        let p = Pseudonymizer::from_key(KEY).unwrap();
        assert!(!format!("{p:?}").contains("0123"));
    }

    fn set_mode(path: &Path, mode: u32) {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        #[cfg(not(unix))]
        let _ = (path, mode);
    }
}
