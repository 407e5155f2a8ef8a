//! Every response socialgate makes up itself: refusal pages, 407, the
//! 400/408/429/431/501/502/504 errors and the CONNECT 200.
//!
//! A browser navigation gets an HTML page that names the platform, group,
//! rule and reason, plus the policy's help text; anything else gets a short
//! text body. Every refusal carries `X-Socialgate-Rule` and
//! `X-Socialgate-Reason`, and errors carry `X-Socialgate-Error`, with the same
//! stable strings the access log and metrics use. Nothing here touches the
//! network.

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full};

use super::upstream::ProxyBody;
use crate::outcome::ErrorKind;
use crate::policy::{Decision, Policy, Reason};

pub const RULE_HEADER: &str = "x-socialgate-rule";
pub const REASON_HEADER: &str = "x-socialgate-reason";
pub const ERROR_HEADER: &str = "x-socialgate-error";

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
    pub navigation: bool,
    pub host: &'a str,
    pub connect: bool,
}

/// The response for a refused request.
pub fn refusal(decision: &Decision, policy: &Policy, req: &RequestView<'_>) -> Response<ProxyBody> {
    let status = match decision.reason {
        Reason::AuthRequired | Reason::AuthFailed => StatusCode::PROXY_AUTHENTICATION_REQUIRED,
        Reason::BadRequest => StatusCode::BAD_REQUEST,
        _ => StatusCode::FORBIDDEN,
    };
    let (content_type, body) = if req.navigation && !req.connect {
        (
            "text/html; charset=utf-8",
            html_page(decision, policy, req.host, status),
        )
    } else {
        (
            "text/plain; charset=utf-8",
            text_body(decision, policy, req.host),
        )
    };
    let mut resp = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CACHE_CONTROL, "no-store")
        .header(RULE_HEADER, header_value(&decision.rule))
        .header(REASON_HEADER, decision.reason.as_str());
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
    if let Some(h) = &policy.settings.help {
        s.push_str(&format!("help: {h}\n"));
    }
    s
}

fn html_page(d: &Decision, policy: &Policy, host: &str, status: StatusCode) -> String {
    let org = policy
        .settings
        .organization
        .as_deref()
        .unwrap_or("Your organisation");
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
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} – {org_e}</title>
<style>
body{{font:16px/1.5 system-ui,-apple-system,"Segoe UI",sans-serif;background:#f4f5f7;color:#1d2330;margin:0}}
main{{max-width:40rem;margin:8vh auto;background:#fff;border-radius:10px;padding:2rem 2.5rem;box-shadow:0 2px 12px rgba(0,0,0,.08)}}
h1{{font-size:1.5rem;margin:0 0 .5rem}} .org{{color:#5b6475;font-size:.9rem;text-transform:uppercase;letter-spacing:.05em}}
table{{border-collapse:collapse;margin:1.2rem 0;width:100%}} th{{text-align:left;color:#5b6475;font-weight:500;padding:.3rem 1rem .3rem 0;width:9rem}}
td{{padding:.3rem 0;font-family:ui-monospace,Menlo,monospace;font-size:.95rem}} .msg{{background:#fff6e5;border-left:4px solid #f0a020;padding:.6rem 1rem}}
.help{{color:#2a3a5e}}
</style></head>
<body><main>
<div class="org">{org_e} · socialgate</div>
<h1>{title}</h1>
<p>Access to {what} is not allowed: {reason}.</p>
{message}
<table>{rows}</table>
{help}
</main></body></html>
"#,
        org_e = escape(org),
        reason = escape(d.reason.explain()),
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

pub use crate::html::escape;
