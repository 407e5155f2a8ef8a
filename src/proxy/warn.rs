//! The warn gate: where an enforced `warn` rule meets a request.
//!
//! The request pipeline calls [`gate`] once, after identify and admit and
//! before a refusal is answered or anything is forwarded. It:
//!
//! - answers the reserved Continue path ([`CONTINUE_PATH`]) on any host
//!   itself, never forwarding it: it checks the token (made for this
//!   person, this site, not expired, not altered), remembers the
//!   acknowledgement and sends the browser back (303) to the page it asked
//!   for, on the same site;
//! - for a request the policy core holds at a warning
//!   ([`Warning::Unchecked`]), gathers the missing fact (did this person
//!   continue within `warn.remember`?) from the acknowledgement store and
//!   asks [`warn_stage`] again: acknowledged traffic passes; otherwise a
//!   page load gets the warning page with its Continue link, and anything
//!   else a short 403 (JSON when asked for).
//!
//! A store that cannot answer (Redis down) counts as "not acknowledged":
//! the warning is shown again. Every answer made here ends the exchange
//! with exactly one record, with its `warn` value.
//!
//! Nothing here depends on plain HTTP: the [`Target`] says which scheme
//! the client used, so an inspected HTTPS request that goes through the
//! same pipeline gets the same warning, and its Continue link stays on
//! its own (HTTPS) site.

use std::net::IpAddr;

use http::{header, HeaderMap, Method, Request, Response};

use super::context::Exchange;
use super::responses;
use super::upstream::ProxyBody;
use super::ProxyState;
use crate::outcome::WarnOutcome;
use crate::policy::{warn_stage, Admission, Decision, Entry, Host, Warning};
use crate::warn::token::from_query;
use crate::warn::{LinkError, Person, Scope, CONTINUE_PATH};

/// Where the request went, as the client addressed it.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// `http`, or `https` for an inspected request.
    pub scheme: &'a str,
    pub host: &'a Host,
    pub port: u16,
}

impl Target<'_> {
    /// `scheme://host[:port]`, the default port left out.
    fn origin(&self) -> String {
        let default = match self.scheme {
            "https" => 443,
            _ => 80,
        };
        let host = match self.host {
            Host::Ip(IpAddr::V6(v6)) => format!("[{v6}]"),
            h => h.to_string(),
        };
        if self.port == default {
            format!("{}://{host}", self.scheme)
        } else {
            format!("{}://{host}:{}", self.scheme, self.port)
        }
    }
}

/// Whether [`gate`] has anything to do: a warning to check against the
/// acknowledgements, or the Continue link. Without either, [`gate`] lets
/// the exchange go on as it is, so the caller skips it (and its future).
pub fn applies<B>(adm: &Admission, req: &Request<B>) -> bool {
    !adm.refuses() && (req.uri().path() == CONTINUE_PATH || adm.warning == Some(Warning::Unchecked))
}

/// Lets the exchange go on (with its admission, the warn stage settled),
/// or answers it here (recorded).
pub async fn gate<B>(
    state: &ProxyState,
    mut ex: Exchange,
    adm: Admission,
    user: Option<&str>,
    req: &Request<B>,
    target: Target<'_>,
) -> Result<(Exchange, Admission), Response<ProxyBody>> {
    if adm.refuses() {
        return Ok((ex, adm));
    }
    let person = Person::of(user, ex.peer.ip());
    if req.uri().path() == CONTINUE_PATH {
        return Err(take_continue(state, ex, adm, &person, req, target).await);
    }
    if adm.warning != Some(Warning::Unchecked) {
        return Ok((ex, adm));
    }
    let scope = scope_of(&adm.decision, target.host);
    let key = state.warn.key.ack_key(&person, &scope);
    let now = state.config.clock.now();
    // Fail toward the warning: a store that cannot answer means "not
    // acknowledged" (the store counts and logs the fault).
    let acknowledged = state
        .warn
        .store
        .acknowledged(&ex.policy.state, &key, now)
        .await
        .unwrap_or(false);
    let adm = warn_stage(&ex.policy, Entry::Request, acknowledged, adm);
    match adm.warning {
        Some(Warning::Due) => Err(show(state, ex, adm.decision, &person, &scope, req, target)),
        Some(Warning::Acknowledged) => {
            ex.event.warn = Some(WarnOutcome::Acknowledged);
            Ok((ex, adm))
        }
        _ => Ok((ex, adm)),
    }
}

/// What one acknowledgement covers for this decision.
fn scope_of(d: &Decision, host: &Host) -> Scope {
    Scope::new(&d.rule, d.platform.as_deref(), &host.to_string())
}

/// The warning: a page with a Continue link for a page load, a short 403
/// for anything else.
fn show<B>(
    state: &ProxyState,
    mut ex: Exchange,
    mut d: Decision,
    person: &Person,
    scope: &Scope,
    req: &Request<B>,
    target: Target<'_>,
) -> Response<ProxyBody> {
    ex.apply(&mut d);
    let policy = ex.policy.clone();
    let host = target.host.to_string();
    if shows_page(req.method(), req.headers()) {
        let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
        let now = state.config.clock.now();
        let expires = now.checked_add(policy.warn.link_expiry).unwrap_or(now);
        let token = state.warn.key.sign(person, scope, &host, path, expires);
        let href = format!("{CONTINUE_PATH}?t={token}");
        ex.event.warn = Some(WarnOutcome::Shown);
        ex.finish(state, responses::warning_page(&d, &policy, &host, &href))
    } else {
        let visit = format!("{}/", target.origin());
        ex.event.warn = Some(WarnOutcome::Held);
        let json = wants_json(req.headers());
        ex.finish(
            state,
            responses::warning_held(&d, &policy, &host, &visit, json),
        )
    }
}

/// The Continue path: check the token, remember, send back; or say why not.
async fn take_continue<B>(
    state: &ProxyState,
    mut ex: Exchange,
    adm: Admission,
    person: &Person,
    req: &Request<B>,
    target: Target<'_>,
) -> Response<ProxyBody> {
    // The token stays out of the access log.
    if ex.event.path.is_some() {
        ex.event.path = Some(CONTINUE_PATH.to_string());
    }
    let Admission {
        decision: mut d,
        warning,
        ..
    } = adm;
    ex.apply(&mut d);
    let policy = ex.policy.clone();
    let html = shows_page(req.method(), req.headers());
    let host = target.host.to_string();
    let now = state.config.clock.now();
    let checked = from_query(req.uri().query())
        .ok_or(LinkError::Forged)
        .and_then(|t| state.warn.key.verify(t, person, &host, now));
    let claims = match checked {
        Ok(c) => c,
        Err(e) => {
            ex.event.warn = Some(WarnOutcome::BadLink);
            let retry = format!("{}{}", target.origin(), e.retry_path());
            let resp = responses::continue_refused(
                &policy,
                &e.to_string(),
                e.advice(),
                &retry,
                html,
                false,
            );
            return ex.finish(state, resp);
        }
    };
    let location = format!("{}{}", target.origin(), claims.path);
    let Some(warning) = warning else {
        // No warning applies here (any more): nothing to remember.
        return ex.finish(state, responses::continue_redirect(&location));
    };
    if warning == Warning::Unshown || claims.scope() != scope_of(&d, target.host) {
        ex.event.warn = Some(WarnOutcome::BadLink);
        let resp = responses::continue_refused(
            &policy,
            "the policy changed since the warning was shown",
            "Load the page again to see what applies now.",
            &location,
            html,
            false,
        );
        return ex.finish(state, resp);
    }
    let key = state.warn.key.ack_key(person, &claims.scope());
    let end = now.checked_add(policy.warn.remember).unwrap_or(now);
    match state
        .warn
        .store
        .acknowledge(&policy.state, &key, now, end)
        .await
    {
        Ok(()) => {
            ex.event.warn = Some(WarnOutcome::Continued);
            ex.finish(state, responses::continue_redirect(&location))
        }
        Err(_) => {
            ex.event.warn = Some(WarnOutcome::Unsaved);
            let resp = responses::continue_refused(
                &policy,
                "your choice could not be saved (the proxy's state store is not answering)",
                "Try again in a minute; if it keeps happening, tell the help desk.",
                &location,
                html,
                true,
            );
            ex.finish(state, resp)
        }
    }
}

/// True for a page load: a GET the browser marks as a navigation
/// (`Sec-Fetch-Mode: navigate`), or, from clients that do not send
/// `Sec-Fetch-Mode`, one that accepts HTML.
pub fn shows_page(method: &Method, headers: &HeaderMap) -> bool {
    if method != Method::GET {
        return false;
    }
    if let Some(mode) = headers.get("sec-fetch-mode").and_then(|v| v.to_str().ok()) {
        return mode.eq_ignore_ascii_case("navigate");
    }
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"))
}

/// True when the client asks for JSON (`application/json` or `+json`).
fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|a| a.contains("application/json") || a.contains("+json"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::normalize_host;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn page_loads_get_the_page_everything_else_the_short_answer() {
        let get = Method::GET;
        type Headers<'a> = &'a [(&'a str, &'a str)];
        #[rustfmt::skip]
        let cases: &[(&Method, Headers, bool)] = &[
            (&get, &[("sec-fetch-mode", "navigate"), ("accept", "*/*")], true),
            (&get, &[("sec-fetch-mode", "no-cors"), ("accept", "text/html")], false),
            (&get, &[("sec-fetch-mode", "cors"), ("accept", "application/json")], false),
            (&get, &[("accept", "text/html,application/xhtml+xml")], true),
            (&get, &[("accept", "image/avif,image/webp,*/*")], false),
            (&get, &[], false),
            (&Method::POST, &[("sec-fetch-mode", "navigate")], false),
            (&Method::HEAD, &[("accept", "text/html")], false),
        ];
        for (m, h, want) in cases {
            assert_eq!(shows_page(m, &map(h)), *want, "{m} {h:?}");
        }
        assert!(wants_json(&map(&[("accept", "application/vnd.api+json")])));
        assert!(!wants_json(&map(&[("accept", "text/plain")])));
    }

    #[test]
    fn the_origin_leaves_default_ports_out_and_brackets_ipv6() {
        let h = normalize_host("www.tiktok.com").unwrap();
        let v6 = normalize_host("[::1]").unwrap();
        let t = |scheme, host, port| Target { scheme, host, port }.origin();
        assert_eq!(t("http", &h, 80), "http://www.tiktok.com");
        assert_eq!(t("https", &h, 443), "https://www.tiktok.com");
        assert_eq!(t("http", &h, 8080), "http://www.tiktok.com:8080");
        assert_eq!(t("https", &h, 80), "https://www.tiktok.com:80");
        assert_eq!(t("http", &v6, 8080), "http://[::1]:8080");
    }
}
