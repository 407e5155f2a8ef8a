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
use http_body_util::BodyExt;

use super::context::{apply_keeping_groups, Exchange};
use super::identify::{identify, Identity};
use super::responses::{self, RuleToday, Transparency};
use super::upstream::ProxyBody;
use super::ProxyState;
use crate::policy::applies::applying;
use crate::policy::{is_own_page, Action, Decision, Host, Policy, Reason};
use crate::requests::{clean_reason, form_field, site_of, MAX_FORM_BYTES, REQUEST_PATH};
use crate::warn::{LinkError, Person};

/// True when a plain-HTTP request for `host` asks for socialgate's own
/// page (any path, any port).
pub fn asks_for(policy: &Policy, host: &Host) -> bool {
    is_own_page(policy, host)
}

/// Answers a request for socialgate's own page, or an access request
/// posted to it (recorded once either way).
pub async fn answer(
    state: &ProxyState,
    mut ex: Exchange,
    req: Request<hyper::body::Incoming>,
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
    if req.method() == Method::POST && req.uri().path() == REQUEST_PATH {
        return access_request(state, ex, identity.user, group_ids, req).await;
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

/// An access request from a block page's form: checked (the token for
/// this person, the rule still offering it, a reason), recorded as one
/// `access-request` record, posted to the webhook in the background, and
/// answered with the page that says it was sent and to whom.
/// An access request posted inside an inspected tunnel to the blocked
/// site's own origin (`INSPECTED_REQUEST_PATH`): the person is who opened
/// the tunnel, as for every request inside it; the form and its token are
/// checked exactly as on the own name.
pub async fn access_request_inside(
    state: &ProxyState,
    ex: Exchange,
    user: Option<String>,
    req: Request<hyper::body::Incoming>,
) -> Response<ProxyBody> {
    let now = state.config.clock.now();
    let (group_ids, _) = applying(&ex.policy, ex.peer.ip(), user.as_deref(), now);
    if user.is_none() && group_ids.is_empty() {
        return ex.refuse(state, Decision::builtin(Reason::NotAMember));
    }
    access_request(state, ex, user, group_ids, req).await
}

async fn access_request(
    state: &ProxyState,
    mut ex: Exchange,
    user: Option<String>,
    group_ids: Vec<u16>,
    req: Request<hyper::body::Incoming>,
) -> Response<ProxyBody> {
    let policy = ex.policy.clone();
    let mut d = Decision::builtin(Reason::OwnPage);
    d.action = Action::Allow;
    d.groups = group_ids
        .iter()
        .map(|&g| policy.groups[g as usize].name.clone())
        .collect();
    d.group = d.groups.first().cloned();
    ex.apply(&mut d);
    // Either path (the own name's, or the one inside an inspected tunnel).
    ex.event.path = Some(req.uri().path().to_string());
    let refuse = |ex: Exchange, status: StatusCode, problem: &str, advice: &str| {
        let resp = responses::access_refused(&policy, status, problem, advice);
        ex.finish(state, resp)
    };
    let again = "Load the blocked page again and send the request from there.";

    // The form: bounded in size and time.
    let body = http_body_util::Limited::new(req.into_body(), MAX_FORM_BYTES);
    let read = tokio::time::timeout(state.config.body_idle_timeout, body.collect()).await;
    let bytes = match read {
        Ok(Ok(c)) => c.to_bytes(),
        Ok(Err(_)) => {
            let problem = format!("the form is larger than {MAX_FORM_BYTES} bytes or was cut off");
            return refuse(ex, StatusCode::BAD_REQUEST, &problem, again);
        }
        Err(_) => {
            return refuse(
                ex,
                StatusCode::REQUEST_TIMEOUT,
                "the form did not arrive in time",
                again,
            )
        }
    };
    let pairs: Vec<(String, String)> = form_urlencoded::parse(&bytes).into_owned().collect();
    let person = Person::of(user.as_deref(), ex.peer.ip());
    let now = state.config.clock.now();
    let own = policy.settings.transparency_host.clone();
    let checked = form_field(&pairs, "t")
        .ok_or(LinkError::Forged)
        .and_then(|t| state.warn.key.verify(t, &person, &own, now));
    let claims = match checked {
        Ok(c) => c,
        Err(e) => {
            let problem = e.to_string().replace("link", "form");
            return refuse(ex, StatusCode::FORBIDDEN, &problem, again);
        }
    };
    let Some(site) = site_of(&claims.path).map(str::to_string) else {
        return refuse(
            ex,
            StatusCode::FORBIDDEN,
            "the form is damaged or was not made by this proxy",
            again,
        );
    };
    let Some(rule) = policy
        .rules
        .iter()
        .find(|r| *r.id == *claims.rule && r.request_access)
    else {
        return refuse(
            ex,
            StatusCode::FORBIDDEN,
            "the policy changed since the page was shown",
            again,
        );
    };
    let Some(reason) = form_field(&pairs, "reason").and_then(clean_reason) else {
        return refuse(
            ex,
            StatusCode::BAD_REQUEST,
            "no reason was given",
            "Go back and write in one line why you need the site for work.",
        );
    };

    // The record: the site, platform, rule and group asked about.
    let platform = (!claims.platform.starts_with("host:"))
        .then(|| policy.platform(&claims.platform))
        .flatten();
    let (_, group) = rule.applies_to(&group_ids, user.as_deref());
    let ev = &mut ex.event;
    ev.kind = crate::event::Kind::AccessRequest;
    ev.host = site.clone();
    ev.path = None;
    ev.platform = platform.map(|p| p.id.clone());
    ev.category = platform.map(|p| p.category.clone());
    ev.group = group
        .map(|g| policy.groups[g as usize].name.clone())
        .or_else(|| ev.groups.first().cloned());
    ev.rule = rule.id.clone();
    ev.action = rule.action;
    ev.mode = rule.mode;
    ev.reason = Reason::RuleMatched;
    ev.request_reason = Some(reason.clone());

    if let Some(url) = &policy.requests.webhook {
        let who = match (&ex.event.user, policy.logging.pseudonymize) {
            (Some(u), true) => Some((state.users)(u)),
            (Some(u), false) => Some(u.clone()),
            (None, _) => None,
        };
        let body = serde_json::json!({
            "event": "access-request",
            "time": now.to_string(),
            "user": who,
            "client": if who.is_none() { Some(ex.event.client.to_string()) } else { None },
            "groups": &ex.event.groups,
            "group": ex.event.group.as_deref(),
            "site": site,
            "platform": ex.event.platform.as_deref(),
            "category": ex.event.category.as_deref(),
            "rule": &*rule.id,
            "reason": reason,
        });
        state.webhook.post(url.clone(), body);
    }
    let resp = responses::access_requested(
        &policy,
        &site,
        platform.map(|p| &*p.name),
        &rule.id,
        &reason,
    );
    ex.finish(state, resp)
}
