//! The state behind `action: warn`: who continued past which warning, and
//! the signed Continue links that record it.
//!
//! - [`token`]: the Continue link's token: HMAC-SHA256 signed, expiring,
//!   bound to the person, the rule, the platform and the page asked for.
//!   Pure: no IO, no clock (`now` is passed in).
//! - [`store`]: acknowledgements, kept for `warn.remember` per (person,
//!   rule, platform): in memory (bounded) or in Redis (`state.redis`), so
//!   that replicas agree. It fails toward the warning: an unreachable Redis
//!   means "not acknowledged".
//!
//! Whether a warning applies is the policy core's decision
//! ([`crate::policy::warn_stage`]); the proxy's gate (`proxy::warn`) looks
//! the acknowledgement up, answers the warning page and the Continue link,
//! and uses these two modules to do so. Neither stores a user name in the
//! clear: tokens carry a keyed tag of the person, and the store's keys are
//! keyed hashes of (person, rule, platform).

pub mod store;
pub mod token;

use std::net::IpAddr;

use hmac::{Hmac, Mac};
use sha2::Sha256;

pub use store::{AckStore, StoreFault};
pub use token::{Claims, LinkError};

/// What the proxy keeps for warn rules: the key and the store.
pub struct Warnings {
    pub key: WarnKey,
    pub store: AckStore,
}

/// The label the warn key is derived under from the pseudonym key
/// ([`crate::pseudonym::Pseudonymizer::derive_key`]).
pub const KEY_LABEL: &str = "warn-token/v1";

/// The reserved path, on any host, where socialgate takes Continue links.
/// Requests for it are never forwarded.
pub const CONTINUE_PATH: &str = "/__socialgate/continue";

/// Who acknowledges: the authenticated user, else the client's address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Person {
    User(String),
    Address(IpAddr),
}

impl Person {
    pub fn of(user: Option<&str>, client: IpAddr) -> Person {
        match user {
            Some(u) => Person::User(u.to_string()),
            None => Person::Address(crate::policy::canonical_ip(client)),
        }
    }

    /// A text that cannot confuse a user with an address.
    pub(crate) fn canonical(&self) -> String {
        match self {
            Person::User(u) => format!("user:{u}"),
            Person::Address(ip) => format!("address:{ip}"),
        }
    }
}

/// What one acknowledgement covers: the rule, and the platform (or, for a
/// warn rule on a host no platform claims, that host).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub rule: String,
    /// A platform id, or `host:NAME`.
    pub platform: String,
}

impl Scope {
    pub fn new(rule: &str, platform: Option<&str>, host: &str) -> Scope {
        Scope {
            rule: rule.to_string(),
            platform: match platform {
                Some(p) => p.to_string(),
                None => format!("host:{host}"),
            },
        }
    }
}

/// The secret behind Continue tokens and acknowledgement keys, derived
/// from the pseudonym key so that replicas sharing that key (as they must
/// for consistent pseudonyms) accept each other's tokens.
#[derive(Clone)]
pub struct WarnKey {
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for WarnKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WarnKey { key: <hidden> }")
    }
}

impl WarnKey {
    pub fn new(key: &[u8; 32]) -> WarnKey {
        // HMAC accepts keys of any length.
        let mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
        WarnKey { mac }
    }

    /// HMAC-SHA256 over `parts`, each followed by a NUL (no part holds one:
    /// they are ids, host names, paths and canonical persons).
    fn tag(&self, domain: &str, parts: &[&str]) -> [u8; 32] {
        let mut mac = self.mac.clone();
        mac.update(domain.as_bytes());
        mac.update(b"\0");
        for p in parts {
            mac.update(p.as_bytes());
            mac.update(b"\0");
        }
        mac.finalize().into_bytes().into()
    }

    /// The store key of (person, rule, platform): 128 bits of a keyed hash,
    /// so the store never holds who acknowledged what in the clear.
    pub fn ack_key(&self, person: &Person, scope: &Scope) -> AckKey {
        let t = self.tag("ack", &[&person.canonical(), &scope.rule, &scope.platform]);
        let mut k = [0u8; 16];
        k.copy_from_slice(&t[..16]);
        AckKey(k)
    }

    /// A short keyed tag of the person, carried in tokens so that another
    /// person's link is told apart from an altered one.
    pub(crate) fn person_tag(&self, person: &Person) -> String {
        hex(&self.tag("person", &[&person.canonical()])[..8])
    }
}

/// The store key of one acknowledgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AckKey(pub [u8; 16]);

impl AckKey {
    pub fn hex(&self) -> String {
        hex(&self.0)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acknowledgement_keys_separate_persons_rules_and_platforms() {
        let k = WarnKey::new(&[7; 32]);
        let alice = Person::User("alice".into());
        let addr = Person::of(None, "::ffff:10.1.2.3".parse().unwrap());
        assert_eq!(addr, Person::Address("10.1.2.3".parse().unwrap()));
        let s = Scope::new("caution", Some("tiktok"), "www.tiktok.com");
        let base = k.ack_key(&alice, &s);
        assert_eq!(base, WarnKey::new(&[7; 32]).ack_key(&alice, &s));
        assert_ne!(base, k.ack_key(&addr, &s));
        assert_ne!(
            base,
            k.ack_key(&alice, &Scope::new("other", Some("tiktok"), "x"))
        );
        assert_ne!(
            base,
            k.ack_key(&alice, &Scope::new("caution", Some("youtube"), "x"))
        );
        assert_ne!(base, WarnKey::new(&[8; 32]).ack_key(&alice, &s));
        // A user literally named like an address is still another person.
        assert_ne!(
            k.ack_key(&Person::User("10.1.2.3".into()), &s),
            k.ack_key(&addr, &s)
        );
        assert_eq!(
            Scope::new("r", None, "intranet.example").platform,
            "host:intranet.example"
        );
        assert_eq!(base.hex().len(), 32);
        assert!(!format!("{k:?}").contains('7'));
    }
}
