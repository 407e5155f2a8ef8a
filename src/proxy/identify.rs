//! The identify phase: who is asking.
//!
//! In order: a trusted identity header, honoured only from the policy's
//! gateway networks (and ignored from everyone else); then
//! `Proxy-Authorization: Basic`, checked against the htpasswd file with the
//! bcrypt work done on a blocking thread and cached; then the client address
//! alone. Wrong credentials are refused here (407, `auth-failed`): only
//! this phase can check a password. Whether missing credentials are needed
//! is the policy core's decision (`auth-required`, see
//! [`crate::policy::decide`]), so `explain` says the same.

use std::net::IpAddr;
use std::time::Instant;

use http::HeaderMap;

use super::ProxyState;
use crate::event::AuthMethod;
use crate::identity::{parse_basic, parse_identity_header, CredentialCache};
use crate::policy::{Policy, Reason};

/// How long a failed check is remembered: a client retrying stale
/// credentials on every request costs one bcrypt a minute, not one each.
const FAILED_TTL: std::time::Duration = std::time::Duration::from_secs(60);

/// An established identity.
#[derive(Debug, Clone)]
pub struct Identity {
    pub user: Option<String>,
    pub auth: AuthMethod,
}

/// Identifies the client, or refuses credentials that are wrong
/// (`AuthFailed`).
pub async fn identify(
    state: &ProxyState,
    policy: &Policy,
    peer: IpAddr,
    headers: &HeaderMap,
) -> Result<Identity, Reason> {
    if let Some(th) = &policy.auth.trusted_header {
        if let Some(v) = headers.get(&th.name) {
            let peer_c = crate::policy::canonical_ip(peer);
            if th.from.iter().any(|n| n.contains(&peer_c)) {
                if let Some(user) = parse_identity_header(v.as_bytes()) {
                    return Ok(Identity {
                        user: Some(user),
                        auth: AuthMethod::Header,
                    });
                }
            }
        }
    }
    if let Some(htpasswd) = &policy.auth.htpasswd {
        if let Some(value) = headers.get(http::header::PROXY_AUTHORIZATION) {
            // Keyed by the policy hash (which covers the htpasswd file), so a
            // cached check never outlives the file it was made against.
            let key = CredentialCache::key(value.as_bytes(), policy.source.hash.as_bytes());
            let now = Instant::now();
            match state.creds.get(&key, now) {
                Some(Some(user)) => {
                    return Ok(Identity {
                        user: Some(user),
                        auth: AuthMethod::Basic,
                    })
                }
                // The same wrong credentials again: refuse without another bcrypt.
                Some(None) => return Err(Reason::AuthFailed),
                None => {}
            }
            let Some(creds) = parse_basic(value.as_bytes()) else {
                return Err(Reason::AuthFailed);
            };
            let h = htpasswd.clone();
            let user = creds.user.clone();
            let ok = tokio::task::spawn_blocking(move || h.verify(&creds.user, &creds.password))
                .await
                .unwrap_or(false);
            if !ok {
                state.creds.insert(key, None, FAILED_TTL, now);
                return Err(Reason::AuthFailed);
            }
            state
                .creds
                .insert(key, Some(user.clone()), policy.auth.cache_ttl, now);
            return Ok(Identity {
                user: Some(user),
                auth: AuthMethod::Basic,
            });
        }
    }
    Ok(Identity {
        user: None,
        auth: AuthMethod::None,
    })
}
