//! The transparency page: what applies to me, and what is recorded.
//!
//! Browsing through the proxy to `http://socialgate.local/` (the policy's
//! `settings.transparency_host`) shows the person one page: who the proxy
//! thinks they are, the rules for them now and later today (with messages,
//! windows and what is left of their budgets), what is recorded about them
//! and for how long, and what is never decrypted. socialgate answers it
//! itself and never forwards or resolves the name; every refusal and
//! warning page links to it. Any other way to the name (a CONNECT, a TLS
//! server name) is refused by the policy core (`own-page`), before DNS.
//!
//! It is only ever served on its own name, never on a path of other
//! sites: there, the site's own scripts could read it (same origin) and
//! learn who the person is. On its own name no other origin can read it,
//! and it carries no CORS headers, may not be framed, and is not cached.
//! The person is identified exactly as for any request (proxy sign-in,
//! the trusted gateway header, the address); the page shows that person's
//! facts only, and looks nobody else up.
//!
//! This module gathers the facts (identity, the rules from
//! [`crate::policy::applies`], what the budget ledger holds); the page is
//! rendered by [`super::responses`], like the block page. Each view is
//! recorded (`reason: own-page`).

use http::{Method, Request, Response, StatusCode};

use super::context::{apply_keeping_groups, Exchange};
use super::identify::{identify, Identity};
use super::responses::{self, RuleToday, Transparency};
use super::upstream::ProxyBody;
use super::ProxyState;
use crate::policy::applies::applying;
use crate::policy::{is_own_page, Action, Decision, Host, Policy, Reason};
use crate::warn::Person;

/// True when a plain-HTTP request for `host` asks for socialgate's own
/// page (any path, any port).
pub fn asks_for(policy: &Policy, host: &Host) -> bool {
    is_own_page(policy, host)
}

/// Answers a request for socialgate's own page (recorded once).
pub async fn answer<B>(
    state: &ProxyState,
    mut ex: Exchange,
    req: &Request<B>,
) -> Response<ProxyBody> {
    let identity = match ex.original {
        // Transparent mode: the client does not know it talks to a proxy,
        // so it is known by its address, as for its other requests.
        Some(_) => Identity {
            user: None,
            auth: crate::event::AuthMethod::None,
        },
        None => match identify(state, &ex.policy, ex.peer.ip(), req.headers()).await {
            Ok(i) => i,
            Err(reason) => return ex.refuse(state, Decision::builtin(reason)),
        },
    };
    ex.identified(&identity);
    let policy = ex.policy.clone();
    let user = identity.user.as_deref();
    let now = state.config.clock.now();
    let (group_ids, rules) = applying(&policy, ex.peer.ip(), user, now);
    // The page is about a known person, as the proxy is only for them:
    // signing in is asked for where the policy wants everyone to, or where
    // the address alone is in no group; a stranger is refused.
    let signed_in = user.is_some();
    let can_sign_in = policy.auth.htpasswd.is_some() && ex.original.is_none();
    if !signed_in && can_sign_in && (policy.auth.required || group_ids.is_empty()) {
        return ex.refuse(state, Decision::builtin(Reason::AuthRequired));
    }
    if !signed_in && group_ids.is_empty() {
        return ex.refuse(state, Decision::builtin(Reason::NotAMember));
    }
    let mut d = Decision::builtin(Reason::OwnPage);
    d.action = Action::Allow;
    d.groups = group_ids
        .iter()
        .map(|&g| policy.groups[g as usize].name.clone())
        .collect();
    d.group = d.groups.first().cloned();
    ex.event.groups = d.groups.clone();
    apply_keeping_groups(&mut ex.event, &d);
    if ex.event.path.is_some() || policy.logging.log_paths {
        ex.event.path = req.uri().path_and_query().map(|p| p.to_string());
    }
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        let resp = responses::error(
            StatusCode::METHOD_NOT_ALLOWED,
            "own-page",
            "socialgate's own page is read with GET",
        );
        return ex.finish(state, resp);
    }
    let person = Person::of(user, ex.peer.ip());
    let mut not_today = 0;
    let mut today = Vec::new();
    for a in rules {
        if !a.when.today() {
            not_today += 1;
            continue;
        }
        let budget = a.rule.budget.as_ref().map(|b| {
            let spent = state.budgets.ledger.peek(&person, &a.rule.id, b, now);
            b.apply(spent, &b.day(now))
        });
        today.push(RuleToday {
            applying: a,
            budget,
        });
    }
    let page = Transparency {
        policy: &policy,
        address: ex.peer.ip(),
        user,
        auth: identity.auth,
        groups: &d.groups,
        now,
        rules: today,
        not_today,
        unavailable: state.budgets.store.unavailable(&policy.state),
        inspecting: state.inspector.is_some(),
    };
    let resp = responses::transparency_page(&page);
    ex.finish(state, resp)
}
