//! Continue tokens: what the warning page's Continue link carries.
//!
//! A token is `PAYLOAD.MAC`, both base64url without padding: the payload is
//! a small JSON object ([`Claims`]: version, expiry, a keyed tag of the
//! person, the rule, the platform, the host and the path asked for) and the
//! MAC is HMAC-SHA256 over the payload's text with the warn key. It is
//! checked in a fixed order, so the refusal says what is wrong: the MAC
//! (altered, or not made by a socialgate with this key), the expiry, the
//! person, the site. The person is never in it in the clear.
//!
//! The redirect after a Continue goes to the token's path on the host of
//! the Continue request itself, which must be the token's host: the target
//! is signed and same-site, so the link cannot send anyone elsewhere.
//!
//! Pure: no IO and no clock; `now` is passed in.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::Mac;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::{Person, Scope, WarnKey};

/// The longest token accepted; anything longer is refused before any work.
pub const MAX_TOKEN_LEN: usize = 4096;

/// The longest path (with query) a token carries; a longer one is replaced
/// by `/` (the Continue then lands on the site's front page).
pub const MAX_PATH_LEN: usize = 2048;

const VERSION: u8 = 1;

/// What a token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Claims {
    pub v: u8,
    /// Expiry, in seconds since the Unix epoch.
    pub exp: i64,
    /// [`WarnKey::person_tag`] of the person it was made for.
    pub who: String,
    pub rule: String,
    /// The platform id, or `host:NAME` (see [`Scope`]).
    pub platform: String,
    /// The normalised host the warning was shown on.
    pub host: String,
    /// The path and query asked for, starting with `/`.
    pub path: String,
}

impl Claims {
    pub fn scope(&self) -> Scope {
        Scope {
            rule: self.rule.clone(),
            platform: self.platform.clone(),
        }
    }
}

/// Why a Continue link is refused. Each says what to do next.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("the link is damaged or was not made by this proxy")]
    Forged,
    /// `path`: the page the link was for (its MAC was valid).
    #[error("the link has expired")]
    Expired { path: String },
    #[error("the link was made for someone else")]
    OtherPerson { path: String },
    #[error("the link was made for another site ({0})")]
    OtherSite(String),
}

impl LinkError {
    /// The sentence the refusal page adds.
    pub fn advice(&self) -> &'static str {
        match self {
            LinkError::Forged => "Load the page again and use the Continue button it shows.",
            LinkError::Expired { .. } => {
                "Continue links are valid for a short time. Load the page again to get a new one."
            }
            LinkError::OtherPerson { .. } => {
                "Each person continues for themselves: load the page yourself and choose Continue there."
            }
            LinkError::OtherSite(_) => {
                "Load the page you want and use the Continue button shown there."
            }
        }
    }

    /// A short fixed label (for the text body of non-browser clients).
    pub fn label(&self) -> &'static str {
        match self {
            LinkError::Forged => "forged",
            LinkError::Expired { .. } => "expired",
            LinkError::OtherPerson { .. } => "other-person",
            LinkError::OtherSite(_) => "other-site",
        }
    }

    /// Where to load the page again, on the site the link was used on: the
    /// page the link was for when that is known and trustworthy, else `/`.
    pub fn retry_path(&self) -> &str {
        match self {
            LinkError::Expired { path } | LinkError::OtherPerson { path } => path,
            LinkError::Forged | LinkError::OtherSite(_) => "/",
        }
    }
}

impl WarnKey {
    /// Makes the token for `person` continuing past `scope`'s warning on
    /// `host`, back to `path` (path and query, starting with `/`), valid
    /// until `expires`.
    pub fn sign(
        &self,
        person: &Person,
        scope: &Scope,
        host: &str,
        path: &str,
        expires: Timestamp,
    ) -> String {
        let path = if path.starts_with('/') && path.len() <= MAX_PATH_LEN {
            path
        } else {
            "/"
        };
        let claims = Claims {
            v: VERSION,
            exp: expires.as_second(),
            who: self.person_tag(person),
            rule: scope.rule.clone(),
            platform: scope.platform.clone(),
            host: host.to_string(),
            path: path.to_string(),
        };
        // Plain data: serialising it cannot fail.
        let json = serde_json::to_vec(&claims).expect("claims serialise");
        let payload = URL_SAFE_NO_PAD.encode(json);
        let mac = self.token_mac(&payload).finalize().into_bytes();
        format!("{payload}.{}", URL_SAFE_NO_PAD.encode(mac))
    }

    /// Checks `token` for `person` asking on `host` at `now`: the MAC, then
    /// the expiry, the person and the site.
    pub fn verify(
        &self,
        token: &str,
        person: &Person,
        host: &str,
        now: Timestamp,
    ) -> Result<Claims, LinkError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(LinkError::Forged);
        }
        let (payload, mac) = token.split_once('.').ok_or(LinkError::Forged)?;
        let mac = URL_SAFE_NO_PAD.decode(mac).map_err(|_| LinkError::Forged)?;
        // Constant-time comparison.
        self.token_mac(payload)
            .verify_slice(&mac)
            .map_err(|_| LinkError::Forged)?;
        let json = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| LinkError::Forged)?;
        let claims: Claims = serde_json::from_slice(&json).map_err(|_| LinkError::Forged)?;
        if claims.v != VERSION || !claims.path.starts_with('/') {
            return Err(LinkError::Forged);
        }
        if now.as_second() >= claims.exp {
            return Err(LinkError::Expired { path: claims.path });
        }
        if claims.who != self.person_tag(person) {
            return Err(LinkError::OtherPerson { path: claims.path });
        }
        if claims.host != host {
            return Err(LinkError::OtherSite(claims.host));
        }
        Ok(claims)
    }

    fn token_mac(&self, payload: &str) -> hmac::Hmac<sha2::Sha256> {
        let mut mac = self.mac.clone();
        mac.update(b"continue-token\0");
        mac.update(payload.as_bytes());
        mac
    }
}

/// The token in a Continue request's query (`t=...`), if any. Tokens are
/// base64url and a dot, so they are never percent-encoded; anything else
/// is no token.
pub fn from_query(query: Option<&str>) -> Option<&str> {
    query?
        .split('&')
        .find_map(|kv| kv.strip_prefix("t="))
        .filter(|t| {
            !t.is_empty()
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> WarnKey {
        WarnKey::new(&[b; 32])
    }

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    const NOW: &str = "2026-11-25T10:00:00Z";

    fn alice() -> Person {
        Person::User("alice".into())
    }

    fn token() -> String {
        key(1).sign(
            &alice(),
            &Scope::new("caution", Some("tiktok"), "www.tiktok.com"),
            "www.tiktok.com",
            "/@someone?lang=en",
            at("2026-11-25T10:15:00Z"),
        )
    }

    #[test]
    fn a_token_round_trips_for_its_person_and_site_until_it_expires() {
        let t = token();
        let c = key(1)
            .verify(&t, &alice(), "www.tiktok.com", at(NOW))
            .unwrap();
        assert_eq!(c.path, "/@someone?lang=en");
        assert_eq!(c.scope(), Scope::new("caution", Some("tiktok"), "-"));
        assert!(!t.contains("alice"), "the person is not in the clear");
        assert_eq!(from_query(Some(&format!("x=1&t={t}"))), Some(t.as_str()));
    }

    #[test]
    fn refusals_say_what_is_wrong_in_a_fixed_order() {
        let t = token();
        let k = key(1);
        let now = at(NOW);
        let site = "www.tiktok.com";
        #[rustfmt::skip]
        let path = || "/@someone?lang=en".to_string();
        let cases: Vec<(String, &str, Person, Timestamp, LinkError)> = vec![
            (
                t.clone(),
                site,
                alice(),
                at("2026-11-25T10:15:00Z"),
                LinkError::Expired { path: path() },
            ),
            (
                t.clone(),
                site,
                Person::User("bob".into()),
                now,
                LinkError::OtherPerson { path: path() },
            ),
            (
                t.clone(),
                site,
                Person::Address("10.1.2.3".parse().unwrap()),
                now,
                LinkError::OtherPerson { path: path() },
            ),
            (
                t.clone(),
                "m.tiktok.com",
                alice(),
                now,
                LinkError::OtherSite(site.into()),
            ),
            // Another key (another deployment): not ours.
            (
                key(2).sign(
                    &alice(),
                    &Scope::new("caution", Some("tiktok"), site),
                    site,
                    "/",
                    at("2027-01-01T00:00:00Z"),
                ),
                site,
                alice(),
                now,
                LinkError::Forged,
            ),
            // An expired token is refused as forged once altered: the MAC comes first.
            (
                t.replacen('e', "f", 1),
                site,
                alice(),
                at("2030-01-01T00:00:00Z"),
                LinkError::Forged,
            ),
            ("".into(), site, alice(), now, LinkError::Forged),
            ("no-dot".into(), site, alice(), now, LinkError::Forged),
            (
                format!("{t}{}", "A".repeat(MAX_TOKEN_LEN)),
                site,
                alice(),
                now,
                LinkError::Forged,
            ),
        ];
        for (tok, host, person, when, want) in cases {
            assert_eq!(
                k.verify(&tok, &person, host, when),
                Err(want.clone()),
                "{want:?} for {tok:.40}"
            );
        }
    }

    #[test]
    fn a_re_signed_payload_with_another_path_is_refused() {
        // Swapping in a payload that names another path or host, keeping
        // the MAC, fails the MAC check.
        let t = token();
        let (_, mac) = t.split_once('.').unwrap();
        let evil = Claims {
            v: 1,
            exp: at("2026-11-25T10:15:00Z").as_second(),
            who: key(1).person_tag(&alice()),
            rule: "caution".into(),
            platform: "tiktok".into(),
            host: "www.tiktok.com".into(),
            path: "//evil.example/".into(),
        };
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&evil).unwrap());
        assert_eq!(
            key(1).verify(
                &format!("{payload}.{mac}"),
                &alice(),
                "www.tiktok.com",
                at(NOW)
            ),
            Err(LinkError::Forged)
        );
    }

    #[test]
    fn overlong_or_odd_paths_land_on_the_front_page() {
        let k = key(1);
        let s = Scope::new("r", Some("p"), "h");
        for path in ["*".to_string(), "/".repeat(MAX_PATH_LEN + 1)] {
            let t = k.sign(&alice(), &s, "h", &path, at("2027-01-01T00:00:00Z"));
            assert_eq!(k.verify(&t, &alice(), "h", at(NOW)).unwrap().path, "/");
        }
    }

    #[test]
    fn only_a_plain_t_parameter_is_a_token() {
        assert_eq!(from_query(None), None);
        assert_eq!(from_query(Some("t=")), None);
        assert_eq!(from_query(Some("t=a%2Eb")), None);
        assert_eq!(from_query(Some("tt=ab.cd")), None);
        assert_eq!(from_query(Some("a=1&t=ab.cd")), Some("ab.cd"));
    }
}
