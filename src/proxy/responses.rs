//! Every response socialgate makes up itself: refusal pages, 407, the
//! 400/408/429/431/501/502/504 errors, the CONNECT 200, and the warn rules'
//! pages (the warning with its Continue link, the short 403 for other
//! requests, the 303 after a Continue, a refused or unsaved Continue).
//!
//! A browser navigation gets an HTML page that names the platform, group,
//! rule and reason, plus the policy's help text; an API call (`fetch`,
//! XHR) gets the same facts as a JSON object; anything else gets a short
//! text body ([`Presentation`]). The same holds inside inspected tunnels,
//! where an origin whose certificate fails verification gets its own page. Every refusal carries `X-Socialgate-Rule` and
//! `X-Socialgate-Reason`, and errors carry `X-Socialgate-Error`, with the same
//! stable strings the access log and metrics use. Nothing here touches the
//! network.

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full};

use super::headers::Presentation;
use super::upstream::ProxyBody;
use crate::outcome::ErrorKind;
use crate::policy::applies::{Applying, When};
use crate::policy::{Decision, Policy, Reason};

pub const RULE_HEADER: &str = "x-socialgate-rule";
pub const REASON_HEADER: &str = "x-socialgate-reason";
pub const ERROR_HEADER: &str = "x-socialgate-error";
/// On the warn rules' responses: the access log's `warn` value.
pub const WARN_HEADER: &str = "x-socialgate-warn";
/// On responses under a daily budget: what is left and when it renews.
pub const BUDGET_HEADER: &str = "x-socialgate-budget-remaining";

pub fn full(body: impl Into<Bytes>) -> ProxyBody {
    Full::new(body.into())
        .map_err(|never| match never {})
        .boxed()
}

pub fn empty() -> ProxyBody {
    full(Bytes::new())
}

/// What the refusal needs to know about the request.
pub struct RequestView<'a> {
    pub presentation: Presentation,
    pub host: &'a str,
    pub connect: bool,
    /// The "Request access" form, when the deciding rule offers it.
    pub access: Option<AccessOffer>,
}

/// A block page's "Request access" form: where it posts, and its token.
pub struct AccessOffer {
    /// `http://socialgate.local/request-access`, or inside an inspected
    /// tunnel the site-relative `/.well-known/socialgate/request-access`.
    pub action: String,
    pub token: String,
}

/// The response for a refused request.
pub fn refusal(decision: &Decision, policy: &Policy, req: &RequestView<'_>) -> Response<ProxyBody> {
    let status = match decision.reason {
        Reason::AuthRequired | Reason::AuthFailed => StatusCode::PROXY_AUTHENTICATION_REQUIRED,
        Reason::BadRequest => StatusCode::BAD_REQUEST,
        _ => StatusCode::FORBIDDEN,
    };
    let presentation = if req.connect {
        Presentation::Text
    } else {
        req.presentation
    };
    let (content_type, body) = match presentation {
        Presentation::Html => (
            "text/html; charset=utf-8",
            html_page(decision, policy, req.host, status, req.access.as_ref()),
        ),
        Presentation::Json => ("application/json", json_body(decision, policy, req.host)),
        Presentation::Text => (
            "text/plain; charset=utf-8",
            text_body(decision, policy, req.host),
        ),
    };
    let mut resp = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CACHE_CONTROL, "no-store")
        .header(RULE_HEADER, header_value(&decision.rule))
        .header(REASON_HEADER, decision.reason.as_str());
    if let Some(b) = Spent::of(decision, policy) {
        resp = resp.header(BUDGET_HEADER, header_value(&b.header));
    }
    if status == StatusCode::PROXY_AUTHENTICATION_REQUIRED {
        let realm = policy.auth.realm.replace(['"', '\\'], "");
        resp = resp.header(
            header::PROXY_AUTHENTICATE,
            header_value(&format!("Basic realm=\"{realm}\", charset=\"UTF-8\"")),
        );
    }
    // Every header value above is valid ASCII or sanitised by `header_value`.
    resp.body(full(body)).expect("valid refusal response")
}

/// The label of the answer to a connection over the per-client cap.
pub const CLIENT_LIMIT: &str = "client-connection-limit";

/// The answer to a connection over `--max-connections-per-client`: `429`,
/// and the connection closes.
pub fn over_client_limit(limit: usize) -> Response<ProxyBody> {
    let detail = format!(
        "this client address already has {limit} connections open through the proxy \
         (--max-connections-per-client); close some, or ask the administrator to raise the limit"
    );
    let mut resp = error(StatusCode::TOO_MANY_REQUESTS, CLIENT_LIMIT, &detail);
    let h = resp.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    resp
}

/// The answer to a CONNECT whose tunnel is open.
pub fn connect_established() -> Response<ProxyBody> {
    let mut resp = Response::new(empty());
    *resp.status_mut() = StatusCode::OK;
    resp
}

/// The response for an exchange that failed with `kind` before any
/// response went out: the status comes from the kind (502, 504, 400, 408).
/// Client-side failures also close the connection, since the rest of the
/// client's stream can no longer be trusted.
pub fn failure(kind: ErrorKind, detail: &str) -> Response<ProxyBody> {
    let mut resp = error(kind.status(), kind.as_str(), detail);
    if kind.side() == crate::outcome::Side::Client {
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

/// [`failure`], shown for a person where it helps: an origin whose
/// certificate failed verification gets a page (or JSON for an API call)
/// that says what happened and that it was not accepted.
pub fn failure_for(
    kind: ErrorKind,
    detail: &str,
    presentation: Presentation,
    host: &str,
    policy: &Policy,
) -> Response<ProxyBody> {
    if kind != ErrorKind::UpstreamCertificate || presentation == Presentation::Text {
        return failure(kind, detail);
    }
    let status = kind.status();
    let (content_type, body) = match presentation {
        Presentation::Json => (
            "application/json",
            serde_json::json!({
                "error": kind.as_str(),
                "site": host,
                "detail": detail,
                "explanation": UPSTREAM_CERTIFICATE,
                "help": policy.settings.help.as_deref(),
            })
            .to_string(),
        ),
        _ => (
            "text/html; charset=utf-8",
            page(
                policy,
                "This site's certificate is not trusted",
                &format!(
                    "<p>{} {}</p><table><tr><th>Site</th><td>{}</td></tr><tr><th>Problem</th><td>{}</td></tr><tr><th>Error</th><td>{}</td></tr></table>",
                    escape(UPSTREAM_CERTIFICATE),
                    "If you expected to reach this site, tell your IT department; do not try to get around this.",
                    escape(host),
                    escape(detail),
                    kind.as_str()
                ),
            ),
        ),
    };
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CACHE_CONTROL, "no-store")
        .header(ERROR_HEADER, kind.as_str())
        .body(full(body))
        .expect("valid error response")
}

const UPSTREAM_CERTIFICATE: &str = "socialgate checked the certificate this site presented and it did not pass: it may be expired, issued for another name, or signed by an authority nobody trusts. The connection was not made, so nothing you send can reach an impostor.";

/// A 400, 429, 502 or 504 made by the proxy, with a short text body.
pub fn error(status: StatusCode, label: &str, detail: &str) -> Response<ProxyBody> {
    let body = format!(
        "socialgate: {} ({label})\n{detail}\n",
        status.canonical_reason().unwrap_or("error")
    );
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-store")
        .header(ERROR_HEADER, header_value(label))
        .body(full(body))
        .expect("valid error response")
}

fn header_value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| {
        let cleaned: String = s
            .chars()
            .filter(|c| c.is_ascii_graphic() || *c == ' ')
            .collect();
        HeaderValue::from_str(&cleaned).unwrap_or(HeaderValue::from_static("-"))
    })
}

/// What a page says about a daily budget that ran out.
struct Spent {
    /// `30 minutes`, `500 MB`.
    limit: String,
    /// `00:00 on Thursday, 26 November (Europe/Berlin)`.
    renews: String,
    /// RFC 3339 with the zone's offset.
    renews_at: String,
    /// `X-Socialgate-Budget-Remaining`.
    header: String,
}

impl Spent {
    /// Set when `d` applied its rule's action because the budget was spent.
    fn of(d: &Decision, policy: &Policy) -> Option<Spent> {
        let view = d.budget?;
        let crate::policy::BudgetState::Exhausted { renews, .. } = view.state else {
            return None;
        };
        let budget = policy.rules.get(view.rule as usize)?.budget.as_ref()?;
        let local = renews.to_zoned_datetime(budget.tz.clone());
        Some(Spent {
            limit: budget.describe(),
            renews: format!(
                "{} ({})",
                local.strftime("%H:%M on %A, %-d %B"),
                budget.tz_name
            ),
            renews_at: local.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string(),
            header: crate::budget::remaining_header(budget, &view.state)?,
        })
    }

    fn sentence(&self) -> String {
        format!(
            "Your daily budget of {} under this rule is used up. It renews at {}.",
            self.limit, self.renews
        )
    }

    fn html(&self) -> String {
        format!("<p class=\"budget\">{}</p>", escape(&self.sentence()))
    }
}

fn text_body(d: &Decision, policy: &Policy, host: &str) -> String {
    let mut s = format!("socialgate refused this request.\nsite: {host}\n",);
    if let Some(p) = &d.platform_name {
        s.push_str(&format!("platform: {p}\n"));
    }
    if let Some(g) = &d.group {
        s.push_str(&format!("group: {g}\n"));
    }
    s.push_str(&format!(
        "rule: {}\nreason: {} ({})\n",
        d.rule,
        d.reason.as_str(),
        d.reason.explain()
    ));
    if let Some(m) = &d.message {
        s.push_str(&format!("{m}\n"));
    }
    if let Some(b) = Spent::of(d, policy) {
        s.push_str(&format!("{}\n", b.sentence()));
    }
    if let Some(h) = &policy.settings.help {
        s.push_str(&format!("help: {h}\n"));
    }
    s.push_str(&format!("what applies to you: {}\n", own_page_url(policy)));
    s
}

fn json_body(d: &Decision, policy: &Policy, host: &str) -> String {
    serde_json::json!({
        "error": "refused",
        "site": host,
        "platform": d.platform.as_deref(),
        "group": d.group.as_deref(),
        "rule": &*d.rule,
        "reason": d.reason.as_str(),
        "explanation": d.reason.explain(),
        "message": d.message.as_deref(),
        "budget": Spent::of(d, policy).map(|b| serde_json::json!({
            "limit": b.limit,
            "left": 0,
            "renews": b.renews_at,
        })),
        "help": policy.settings.help.as_deref(),
        "about": own_page_url(policy),
    })
    .to_string()
}

fn html_page(
    d: &Decision,
    policy: &Policy,
    host: &str,
    status: StatusCode,
    access: Option<&AccessOffer>,
) -> String {
    let title = match status {
        StatusCode::PROXY_AUTHENTICATION_REQUIRED => "Sign-in needed",
        _ => "This site is not available",
    };
    let what = match &d.platform_name {
        Some(p) => format!("{} ({})", escape(p), escape(host)),
        None => escape(host),
    };
    let mut rows = String::new();
    let mut row = |k: &str, v: &str| {
        rows.push_str(&format!("<tr><th>{k}</th><td>{}</td></tr>", escape(v)));
    };
    if let Some(p) = &d.platform_name {
        row("Platform", p);
    }
    row("Site", host);
    if let Some(g) = &d.group {
        row("Your group", g);
    }
    row("Rule", &d.rule);
    row("Reason", d.reason.as_str());
    let message = d
        .message
        .as_deref()
        .map(|m| format!("<p class=\"msg\">{}</p>", escape(m)))
        .unwrap_or_default();
    let help = policy
        .settings
        .help
        .as_deref()
        .map(|h| format!("<p class=\"help\">{}</p>", escape(h)))
        .unwrap_or_default();
    let budget = Spent::of(d, policy).map(|b| b.html()).unwrap_or_default();
    let form = access
        .map(|a| {
            format!(
                r#"<form class="request" method="post" action="{action}">
<input type="hidden" name="t" value="{token}">
<label for="why">Need it for work? Say why in one line, and your request goes to {recipient}.</label>
<input id="why" name="reason" maxlength="{max}" required placeholder="e.g. I run the brand account for the spring campaign">
<button type="submit">Request access</button>
</form>"#,
                action = escape(&a.action),
                token = escape(&a.token),
                recipient = escape(&policy.requests.recipient),
                max = crate::requests::MAX_REASON_CHARS,
            )
        })
        .unwrap_or_default();
    let body = format!(
        "<p>Access to {what} is not allowed: {reason}.</p>\n{message}\n{budget}\n<table>{rows}</table>\n{form}\n{help}\n{about}",
        reason = escape(d.reason.explain()),
        about = about_link(policy),
    );
    page(policy, title, &body)
}

/// The look every socialgate page shares: the organisation, a title, and
/// `body` (HTML, already escaped).
fn page(policy: &Policy, title: &str, body: &str) -> String {
    let org = policy
        .settings
        .organization
        .as_deref()
        .unwrap_or("Your organisation");
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{title} – {org_e}</title>
<style>
body{{font:16px/1.5 system-ui,-apple-system,"Segoe UI",sans-serif;background:#f4f5f7;color:#1d2330;margin:0}}
main{{max-width:40rem;margin:8vh auto;background:#fff;border-radius:10px;padding:2rem 2.5rem;box-shadow:0 2px 12px rgba(0,0,0,.08)}}
h1{{font-size:1.5rem;margin:0 0 .5rem}} .org{{color:#5b6475;font-size:.9rem;text-transform:uppercase;letter-spacing:.05em}}
table{{border-collapse:collapse;margin:1.2rem 0;width:100%}} th{{text-align:left;color:#5b6475;font-weight:500;padding:.3rem 1rem .3rem 0;width:9rem}}
td{{padding:.3rem 0;font-family:ui-monospace,Menlo,monospace;font-size:.95rem;overflow-wrap:anywhere}}
h2{{font-size:1.15rem;margin:1.8rem 0 .4rem}} h3{{font-size:1rem;margin:1.2rem 0 .2rem}} .rule{{border-top:1px solid #e3e6ec;padding-top:.4rem}}
ul.plain{{padding-left:1.2rem;margin:.4rem 0}} form.request{{margin:1.2rem 0;display:flex;flex-wrap:wrap;gap:.5rem;align-items:center}}
form.request label{{flex-basis:100%}} form.request input[name=reason]{{flex:1 1 16rem;min-width:0;padding:.5rem;border:1px solid #c5cad6;border-radius:6px;font:inherit}}
form.request button{{background:#2457c5;color:#fff;border:0;border-radius:6px;padding:.6rem 1.2rem;font-weight:600;font:inherit}} .about{{color:#5b6475;font-size:.9rem;margin-top:1.5rem}} .msg{{background:#fff6e5;border-left:4px solid #f0a020;padding:.6rem 1rem}}
.help{{color:#2a3a5e}} .budget{{background:#eef3ff;border-left:4px solid #2457c5;padding:.6rem 1rem}}
.actions{{margin:1.5rem 0 .5rem}} a.continue{{display:inline-block;background:#2457c5;color:#fff;text-decoration:none;border-radius:6px;padding:.6rem 1.2rem;font-weight:600}}
a.continue:hover{{background:#1b449d}} .note{{color:#5b6475;font-size:.9rem}}
</style></head>
<body><main>
<div class="org">{org_e} · socialgate</div>
<h1>{title}</h1>
{body}
</main></body></html>
"#,
        org_e = escape(org),
        title = escape(title),
    )
}

/// A refusal for a client that reached socialgate through a redirect
/// (transparent mode): it does not know it talks to a proxy, so it cannot
/// answer a `407`; that becomes a `403` without `Proxy-Authenticate`.
pub fn for_redirected_client(mut resp: Response<ProxyBody>) -> Response<ProxyBody> {
    if resp.status() == StatusCode::PROXY_AUTHENTICATION_REQUIRED {
        *resp.status_mut() = StatusCode::FORBIDDEN;
        resp.headers_mut().remove(header::PROXY_AUTHENTICATE);
    }
    resp
}

/// A warn rule's answer to a page load: the warning, with the rule's
/// message and a Continue link (`continue_href`, on the same site). 403:
/// the page asked for is not what this is.
pub fn warning_page(
    d: &Decision,
    policy: &Policy,
    host: &str,
    continue_href: &str,
) -> Response<ProxyBody> {
    let what = match &d.platform_name {
        Some(p) => format!("{} ({})", escape(p), escape(host)),
        None => escape(host),
    };
    let mut rows = String::new();
    let mut row = |k: &str, v: &str| {
        rows.push_str(&format!("<tr><th>{k}</th><td>{}</td></tr>", escape(v)));
    };
    if let Some(p) = &d.platform_name {
        row("Platform", p);
    }
    row("Site", host);
    if let Some(g) = &d.group {
        row("Your group", g);
    }
    row("Rule", &d.rule);
    let message = d
        .message
        .as_deref()
        .map(|m| format!("<p class=\"msg\">{}</p>", escape(m)))
        .unwrap_or_default();
    let remember = in_words(policy.warn.remember);
    let scope = match &d.platform_name {
        Some(p) => format!("all of {}'s sites", escape(p)),
        None => escape(host),
    };
    let help = policy
        .settings
        .help
        .as_deref()
        .map(|h| format!("<p class=\"help\">{}</p>", escape(h)))
        .unwrap_or_default();
    let spent = Spent::of(d, policy);
    let budget = spent.as_ref().map(Spent::html).unwrap_or_default();
    let body = format!(
        r#"<p>A company rule asks you to think twice before using {what}.</p>
{message}
{budget}
<table>{rows}</table>
<p class="actions"><a class="continue" href="{href}" rel="nofollow noreferrer">Continue to {what_short}</a></p>
<p class="note">If you continue, your choice is remembered for {remember} for {scope}, and counted (without your name) to show how much the site is needed. If you do not need it, close this page.</p>
{help}
{about}"#,
        about = about_link(policy),
        href = escape(continue_href),
        what_short = d
            .platform_name
            .as_deref()
            .map_or_else(|| escape(host), escape),
    );
    let mut resp = Response::builder()
        .status(StatusCode::FORBIDDEN)
        .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-store")
        .header(RULE_HEADER, header_value(&d.rule))
        .header(REASON_HEADER, d.reason.as_str())
        .header(WARN_HEADER, "shown");
    if let Some(b) = &spent {
        resp = resp.header(BUDGET_HEADER, header_value(&b.header));
    }
    resp.body(full(page(policy, "Before you continue", &body)))
        .expect("valid warning response")
}

/// A warn rule's answer to any other request (an image, a script, an API
/// call) while the person has not continued: a short 403, JSON when the
/// client asks for JSON. `visit` is the page to open to see the warning.
pub fn warning_held(
    d: &Decision,
    policy: &Policy,
    host: &str,
    visit: &str,
    json: bool,
) -> Response<ProxyBody> {
    let (content_type, body) = if json {
        let v = serde_json::json!({
            "socialgate": "warning",
            "warn": "held",
            "rule": &*d.rule,
            "reason": d.reason.as_str(),
            "platform": d.platform.as_deref(),
            "site": host,
            "message": d.message.as_deref(),
            "open": visit,
            "help": policy.settings.help.as_deref(),
        });
        ("application/json", format!("{v}\n"))
    } else {
        let mut s = format!(
            "socialgate: a warning applies to this site and has not been acknowledged.\nsite: {host}\n"
        );
        if let Some(p) = &d.platform_name {
            s.push_str(&format!("platform: {p}\n"));
        }
        s.push_str(&format!("rule: {}\n", d.rule));
        if let Some(m) = &d.message {
            s.push_str(&format!("{m}\n"));
        }
        s.push_str(&format!(
            "Open {visit} in your browser, read the warning and choose Continue.\n"
        ));
        ("text/plain; charset=utf-8", s)
    };
    Response::builder()
        .status(StatusCode::FORBIDDEN)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CACHE_CONTROL, "no-store")
        .header(RULE_HEADER, header_value(&d.rule))
        .header(REASON_HEADER, d.reason.as_str())
        .header(WARN_HEADER, "held")
        .body(full(body))
        .expect("valid held response")
}

/// `1 hour`, `90 minutes`, `1 day 12 hours`: a duration for people.
fn in_words(d: std::time::Duration) -> String {
    let s = d.as_secs();
    let parts = [
        (s / 86_400, "day"),
        (s % 86_400 / 3600, "hour"),
        (s % 3600 / 60, "minute"),
    ];
    let words: Vec<String> = parts
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, unit)| format!("{n} {unit}{}", if *n == 1 { "" } else { "s" }))
        .collect();
    if words.is_empty() {
        format!("{s} seconds")
    } else {
        words.join(" ")
    }
}

/// After a valid Continue: back to the page asked for (`location`, on the
/// same site).
pub fn continue_redirect(location: &str) -> Response<ProxyBody> {
    Response::builder()
        .status(StatusCode::SEE_OTHER)
        .header(header::LOCATION, header_value(location))
        .header(header::CACHE_CONTROL, "no-store")
        .header(header::REFERRER_POLICY, "no-referrer")
        .header(WARN_HEADER, "continued")
        .body(empty())
        .expect("valid redirect")
}

/// A Continue link that cannot be used (`problem`, `advice`), or a valid
/// one that could not be saved (`unsaved`, 503). `retry` is where to load
/// the page again, on the same site.
pub fn continue_refused(
    policy: &Policy,
    problem: &str,
    advice: &str,
    retry: &str,
    html: bool,
    unsaved: bool,
) -> Response<ProxyBody> {
    let (status, label) = if unsaved {
        (StatusCode::SERVICE_UNAVAILABLE, "unsaved")
    } else {
        (StatusCode::FORBIDDEN, "bad-link")
    };
    let (content_type, body) = if html {
        let help = policy
            .settings
            .help
            .as_deref()
            .map(|h| format!("<p class=\"help\">{}</p>", escape(h)))
            .unwrap_or_default();
        let body = format!(
            r#"<p>This Continue link cannot be used: {}.</p>
<p>{}</p>
<p class="actions"><a class="continue" href="{}">Load the page again</a></p>
{help}"#,
            escape(problem),
            escape(advice),
            escape(retry),
        );
        (
            "text/html; charset=utf-8",
            page(policy, "Continue link not accepted", &body),
        )
    } else {
        (
            "text/plain; charset=utf-8",
            format!("socialgate: this Continue link cannot be used: {problem}.\n{advice}\n"),
        )
    };
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CACHE_CONTROL, "no-store")
        .header(WARN_HEADER, label)
        .body(full(body))
        .expect("valid continue refusal")
}

/// After an access request: it was sent, and to whom.
pub fn access_requested(
    policy: &Policy,
    site: &str,
    platform: Option<&str>,
    rule: &str,
    reason: &str,
) -> Response<ProxyBody> {
    let what = match platform {
        Some(p) => format!("{} ({})", escape(p), escape(site)),
        None => escape(site),
    };
    let body = format!(
        r#"<p>Your request for access to {what} was sent to {recipient}.</p>
<table><tr><th>Rule</th><td>{rule}</td></tr><tr><th>Your reason</th><td>{reason}</td></tr></table>
<p class="note">It is recorded like the rest of your traffic (see below), and counted with others' requests to show how much the site is needed. The site stays blocked until the policy changes.</p>
{about}"#,
        recipient = escape(&policy.requests.recipient),
        rule = escape(rule),
        reason = escape(reason),
        about = about_link(policy),
    );
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-store")
        .header(header::X_FRAME_OPTIONS, "DENY")
        .header(RULE_HEADER, header_value(rule))
        .body(full(page(policy, "Request sent", &body)))
        .expect("valid access-request page")
}

/// An access request that cannot be taken (`problem`, `advice`): 403 for
/// a bad or expired form, 400 for a missing reason.
pub fn access_refused(
    policy: &Policy,
    status: StatusCode,
    problem: &str,
    advice: &str,
) -> Response<ProxyBody> {
    let body = format!(
        "<p>This access request cannot be sent: {}.</p>\n<p>{}</p>\n{}",
        escape(problem),
        escape(advice),
        about_link(policy)
    );
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-store")
        .header(header::X_FRAME_OPTIONS, "DENY")
        .header(ERROR_HEADER, "access-request")
        .body(full(page(policy, "Request not sent", &body)))
        .expect("valid access-request refusal")
}

/// `http://NAME/`: socialgate's own page about what applies to a person.
pub fn own_page_url(policy: &Policy) -> String {
    format!("http://{}/", policy.settings.transparency_host)
}

/// The link every refusal and warning page carries to the own page.
fn about_link(policy: &Policy) -> String {
    let url = escape(&own_page_url(policy));
    format!(
        "<p class=\"about\">What applies to you, and what is recorded: <a href=\"{url}\">{url}</a></p>"
    )
}

/// One rule on the transparency page: for the person, today.
pub struct RuleToday<'p> {
    pub applying: Applying<'p>,
    /// Where the person stands with its budget (`None`: no budget).
    pub budget: Option<crate::policy::BudgetState>,
}

/// Everything the transparency page shows, gathered by [`super::me`].
pub struct Transparency<'a> {
    pub policy: &'a Policy,
    pub address: std::net::IpAddr,
    pub user: Option<&'a str>,
    pub auth: crate::event::AuthMethod,
    pub groups: &'a [std::sync::Arc<str>],
    pub now: jiff::Timestamp,
    /// The rules for the person that apply now or later today, in order.
    pub rules: Vec<RuleToday<'a>>,
    /// Rules for the person whose windows do not open again today.
    pub not_today: usize,
    /// The shared budget store is not answering (budgets fail open).
    pub unavailable: bool,
    /// The proxy has a CA and may decrypt what rules ask for.
    pub inspecting: bool,
}

/// The transparency page (`settings.transparency_host`): who the proxy
/// thinks the person is, the rules for them today, what is recorded and
/// what is never decrypted. 200, never cached, never framed.
pub fn transparency_page(t: &Transparency<'_>) -> Response<ProxyBody> {
    let policy = t.policy;
    let mut body = String::new();
    body.push_str("<p>This page is made by the proxy for you alone: it shows what socialgate knows about you and what it does with your web traffic. Nobody else can open it for you.</p>\n");

    // Who.
    body.push_str("<h2>Who the proxy thinks you are</h2>\n<table class=\"who\">");
    let mut row = |k: &str, v: &str| {
        body.push_str(&format!("<tr><th>{k}</th><td>{}</td></tr>", escape(v)));
    };
    row(
        "Your address",
        &crate::policy::canonical_ip(t.address).to_string(),
    );
    let (user, how) = match (t.user, t.auth) {
        (Some(u), crate::event::AuthMethod::Header) => (u, "your company's sign-in gateway"),
        (Some(u), _) => (u, "your sign-in to the proxy"),
        (None, _) => ("not signed in", "your address only"),
    };
    row("User", user);
    row("Known by", how);
    let groups = if t.groups.is_empty() {
        "none".to_string()
    } else {
        t.groups.join(", ")
    };
    row("Your groups", &groups);
    body.push_str("</table>\n");

    // Rules.
    body.push_str("<h2>Rules for you today</h2>\n");
    if t.rules.is_empty() {
        body.push_str("<p>No rule is for you today: sites on the platform catalog get the policy's default, other sites pass.</p>\n");
    } else {
        body.push_str("<p>For each site the first rule that matches it decides; those below it only decide sites the ones above do not cover.</p>\n");
    }
    if t.unavailable {
        body.push_str("<p class=\"budget\">The shared budget store is not answering: daily budgets are not applied just now (your use is still counted).</p>\n");
    }
    for r in &t.rules {
        body.push_str(&rule_today(policy, r));
    }
    if t.not_today > 0 {
        body.push_str(&format!(
            "<p class=\"note\">{} more rule{} for you apply on other days of the week.</p>\n",
            t.not_today,
            if t.not_today == 1 { "" } else { "s" }
        ));
    }
    let defaults = &policy.defaults;
    let words = |a: crate::policy::Action| match a {
        crate::policy::Action::Allow => "allowed",
        crate::policy::Action::Block => "refused",
        crate::policy::Action::Warn => "shown a warning first",
    };
    body.push_str(&format!(
        "<p class=\"note\">Sites no rule covers: social platforms of the catalog are {}, other sites {}.</p>\n",
        words(defaults.catalog),
        words(defaults.other),
    ));

    // What is recorded.
    body.push_str("<h2>What is recorded about you</h2>\n<p>One line per request or encrypted connection, with:</p>\n<ul class=\"plain\">");
    let user_field = if policy.logging.pseudonymize {
        "your user name as a pseudonym (a keyed code, not your name), when you are signed in"
    } else {
        "your user name, in plain text, when you are signed in"
    };
    let paths = if policy.logging.log_paths {
        "the full address (path) of pages you open over plain HTTP or on inspected connections, social platforms included"
    } else {
        "the address (path) of plain-HTTP pages on sites that are no social platform; on social platforms only the site, never the page"
    };
    for item in [
        "the time, your address and your groups",
        user_field,
        "the site (host name and port), its platform and category",
        paths,
        "what a request did where it can be seen (read, post, upload, …)",
        "the rule that decided and its outcome, warnings you continued past, your daily budget's standing",
        "bytes sent and received, and how long it took",
    ] {
        body.push_str(&format!("<li>{}</li>", escape(item)));
    }
    body.push_str("</ul>\n<table>");
    let retention = policy
        .logging
        .retention
        .as_deref()
        .unwrap_or("not stated by your administrator (logging.retention)");
    body.push_str(&format!(
        "<tr><th>Kept for</th><td>{}</td></tr>",
        escape(retention)
    ));
    if policy.logging.pseudonymize {
        let who = policy.logging.reveal.as_deref().unwrap_or(
            "whoever holds the pseudonym key (not stated by your administrator: logging.reveal)",
        );
        body.push_str(&format!(
            "<tr><th>Who may reveal a pseudonym</th><td>{}</td></tr>",
            escape(who)
        ));
    }
    body.push_str("</table>\n");
    if policy.logging.pseudonymize {
        body.push_str("<p>Revealing the name behind a pseudonym needs the key, and every reveal is itself recorded with who did it and why (an audit log).</p>\n");
    }
    body.push_str("<p>Reports show groups and platforms, never a person; a number that describes fewer than a handful of people is left out.</p>\n");

    // Never inspected.
    body.push_str("<h2>What is never inspected</h2>\n");
    if !t.inspecting {
        body.push_str("<p>socialgate decrypts nothing here: encrypted (HTTPS) connections pass as they are, and it sees only the site's name and how much data went each way.</p>\n");
    } else {
        body.push_str("<p>Encrypted connections are decrypted only where a rule asks for it, to see what a request does on a social platform. These are never decrypted, whatever a rule says:</p>\n<ul class=\"plain\">");
        for n in &policy.inspection.never_names {
            body.push_str(&format!("<li>{}</li>", escape(n)));
        }
        for d in &policy.inspection.never_listed {
            body.push_str(&format!("<li>{} and its subdomains</li>", escape(d)));
        }
        if policy.inspection.never_names.is_empty() && policy.inspection.never_listed.is_empty() {
            body.push_str("<li>(no category or site is listed: ask your administrator)</li>");
        }
        body.push_str("</ul>\n<p>Apps that refuse the proxy's certificate are passed through undecrypted.</p>\n");
    }
    if let Some(h) = &policy.settings.help {
        body.push_str(&format!("<p class=\"help\">{}</p>\n", escape(h)));
    }
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-store")
        .header(header::X_FRAME_OPTIONS, "DENY")
        .header(
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
        )
        .header(header::REFERRER_POLICY, "no-referrer")
        .header(REASON_HEADER, crate::policy::Reason::OwnPage.as_str())
        .body(full(page(policy, "What applies to you", &body)))
        .expect("valid transparency page")
}

/// One rule's block on the transparency page.
fn rule_today(policy: &Policy, r: &RuleToday<'_>) -> String {
    let rule = r.applying.rule;
    let mut rows = String::new();
    let mut row = |k: &str, v: &str| {
        rows.push_str(&format!("<tr><th>{k}</th><td>{}</td></tr>", escape(v)));
    };
    let mut sites: Vec<String> = match &rule.platforms {
        Some(mask) => policy
            .platforms
            .iter()
            .zip(mask)
            .filter(|(_, on)| **on)
            .map(|(p, _)| p.name.to_string())
            .collect(),
        None => Vec::new(),
    };
    sites.extend(rule.domains.iter().cloned());
    if sites.is_empty() {
        sites.push("every site".into());
    }
    row("Sites", &sites.join(", "));
    if let Some(a) = &rule.activities {
        let names: Vec<&str> = a.iter().map(|x| x.as_str()).collect();
        row("Only when you", &names.join(", "));
    }
    let does = match (rule.read_only.is_some(), rule.action) {
        (true, _) => "reading allowed; posting, commenting, uploading and other writing refused",
        (false, crate::policy::Action::Allow) => "allowed",
        (false, crate::policy::Action::Block) => "refused",
        (false, crate::policy::Action::Warn) => "a warning first; you may continue",
    };
    let does = match (&rule.budget, rule.action) {
        (Some(_), crate::policy::Action::Warn) => {
            "allowed until your daily budget is spent, then a warning first"
        }
        (Some(_), _) => "allowed until your daily budget is spent, then refused",
        (None, _) => does,
    };
    let does = if rule.mode == crate::policy::Mode::Report {
        format!("trial run: traffic passes, and what the rule would do is recorded ({does})")
    } else {
        does.to_string()
    };
    row("What happens", &does);
    if let Some(g) = &r.applying.group {
        row("For you as", &format!("group {g}"));
    } else if !rule.users.is_empty() {
        row("For you as", "your user name");
    } else {
        row("For you as", "everyone");
    }
    let hm = |t: jiff::Timestamp, tz: &jiff::tz::TimeZone| {
        t.to_zoned_datetime(tz.clone())
            .strftime("%H:%M")
            .to_string()
    };
    let when = match (&rule.schedule, r.applying.when) {
        (_, When::Always) => "all day, every day".to_string(),
        (Some(s), When::Now { until }) => {
            format!("now, until {} ({})", hm(until, &s.tz), s.tz_name)
        }
        (Some(s), When::LaterToday { from }) => {
            format!("later today, from {} ({})", hm(from, &s.tz), s.tz_name)
        }
        _ => "not today".to_string(),
    };
    row("When", &when);
    if let Some(s) = &rule.schedule {
        row("Windows", &windows_words(s));
    }
    if let (Some(b), Some(state)) = (&rule.budget, &r.budget) {
        let renews = |t: jiff::Timestamp| {
            format!(
                "{} ({})",
                t.to_zoned_datetime(b.tz.clone()).strftime("%H:%M on %A"),
                b.tz_name
            )
        };
        let standing = match state {
            crate::policy::BudgetState::Left {
                minutes,
                bytes,
                renews: at,
            } => {
                let mut left = Vec::new();
                if let Some(m) = minutes {
                    left.push(crate::policy::budget::minutes_words(*m));
                }
                if let Some(by) = bytes {
                    left.push(crate::policy::budget::megabytes_words(*by));
                }
                format!("{} left; renews at {}", left.join(" and "), renews(*at))
            }
            crate::policy::BudgetState::Exhausted { renews: at, .. } => {
                format!("used up; renews at {}", renews(*at))
            }
            _ => "not known just now".to_string(),
        };
        row(
            "Daily budget",
            &format!("{} a day: {standing}", b.describe()),
        );
    }
    let message = rule
        .message
        .as_deref()
        .map(|m| format!("<p class=\"msg\">{}</p>", escape(m)))
        .unwrap_or_default();
    let title = match &rule.description {
        Some(d) => format!(
            "{} <span class=\"note\">({})</span>",
            escape(d),
            escape(&rule.id)
        ),
        None => escape(&rule.id),
    };
    format!("<div class=\"rule\"><h3>{title}</h3>{message}<table>{rows}</table></div>\n")
}

/// `Mon–Fri 12:00–13:00; Sat 10:00–12:00 (Europe/Berlin)`.
fn windows_words(s: &crate::policy::Schedule) -> String {
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    let clock = |m: u16| format!("{:02}:{:02}", m / 60, m % 60);
    let parts: Vec<String> = s
        .windows
        .iter()
        .map(|w| {
            let days: Vec<&str> = (0..7)
                .filter(|d| w.days & (1 << d) != 0)
                .map(|d| DAYS[d as usize])
                .collect();
            let first = w.days.trailing_zeros();
            let run = (w.days >> first) as u16 == (1u16 << days.len()) - 1;
            let days = match days.len() {
                7 => "every day".to_string(),
                n if n > 2 && run => format!("{}–{}", days[0], days[n - 1]),
                _ => days.join(", "),
            };
            format!("{days} {}–{}", clock(w.from), clock(w.to))
        })
        .collect();
    format!("{} ({})", parts.join("; "), s.tz_name)
}

pub use crate::html::escape;

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn durations_read_as_words() {
        assert_eq!(in_words(Duration::from_secs(3600)), "1 hour");
        assert_eq!(in_words(Duration::from_secs(5400)), "1 hour 30 minutes");
        assert_eq!(in_words(Duration::from_secs(2 * 86_400)), "2 days");
        assert_eq!(in_words(Duration::from_secs(60)), "1 minute");
    }
}
