//! The admin listener: `/metrics`, `/healthz`, `/readyz`, `/proxy.pac`, and
//! `POST /reload`. `HEAD` is answered like `GET`, without the body;
//! `/wpad.dat` is the PAC file under the name WPAD clients ask for.
//!
//! It binds to loopback by default and serves operators and Prometheus, not
//! proxy clients; it never forwards anything. `/readyz` answers 200 once a
//! policy is loaded and the proxy listeners are bound (always true once the
//! app has started), with the policy hash, so a rollout can check which
//! policy each instance runs, and where budgets are kept (with Redis:
//! whether it can be reached; budgets fail open, the instance stays ready).

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::metrics::Metrics;
use crate::policy::Pac;
use crate::proxy::ProxyState;

/// What the admin handlers read.
pub struct AdminState {
    pub proxy: Arc<ProxyState>,
    pub metrics: Arc<Metrics>,
    /// The proxy written into the PAC file, `HOST:PORT`.
    pub pac_proxy: String,
}

/// Serves the admin endpoints until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AdminState>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: counted, said, and retried after a pause.
                    state.proxy.accept_failed("admin", &e).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let st = state.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| handle(st.clone(), req));
            let _ = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn text(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CACHE_CONTROL, "no-store")
        .body(Full::new(body.into()))
        .expect("valid admin response")
}

async fn handle(
    state: Arc<AdminState>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let policy = state.proxy.policy.load();
    // HEAD is answered like GET (`curl -I`); hyper sends the head, with the
    // Content-Length the body would have had, and never the body.
    let method = match req.method() {
        &Method::HEAD => &Method::GET,
        m => m,
    };
    let resp = match (method, req.uri().path()) {
        (&Method::GET, "/metrics") => text(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            state.metrics.render(&state.proxy.gauges, state.proxy.inspector.as_deref()),
        ),
        (&Method::GET, "/healthz") => text(StatusCode::OK, "text/plain; charset=utf-8", "ok\n"),
        (&Method::GET, "/readyz") => text(
            StatusCode::OK,
            "application/json",
            serde_json::json!({
                "ready": true,
                "policy_hash": policy.source.hash,
                "policy_version": policy.source.version,
                "rules": policy.rules.len(),
                "platforms": policy.platforms.len(),
                "reloads_ok": state.proxy.policy.stats.ok.load(std::sync::atomic::Ordering::Relaxed),
                "reloads_failed": state.proxy.policy.stats.failed.load(std::sync::atomic::Ordering::Relaxed),
                "budgets": state.proxy.budgets.status(&policy),
            })
            .to_string(),
        ),
        // /wpad.dat: the name WPAD clients ask for (docs/operations.md).
        (&Method::GET, "/proxy.pac" | "/wpad.dat") => text(
            StatusCode::OK,
            "application/x-ns-proxy-autoconfig",
            pac_file(
                &state.pac_proxy,
                &policy.pac,
                &policy.settings.transparency_host,
                &policy.source.hash,
            ),
        ),
        (&Method::POST, "/reload") => match state.proxy.policy.reload_async("admin").await {
            Ok(p) => text(StatusCode::OK, "text/plain; charset=utf-8", format!("reloaded; policy hash {}\n", p.source.hash)),
            Err(e) => text(
                StatusCode::UNPROCESSABLE_ENTITY,
                "text/plain; charset=utf-8",
                format!("reload failed; the previous policy stays in force:\n{e}\n"),
            ),
        },
        (_, "/reload") => text(StatusCode::METHOD_NOT_ALLOWED, "text/plain; charset=utf-8", "use POST /reload\n"),
        _ => text(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "socialgate admin: /metrics /healthz /readyz /proxy.pac, POST /reload\n",
        ),
    };
    Ok(resp)
}

/// A PAC file sending web traffic through the proxy, except what the
/// policy's `pac:` section sends direct: plain host names and `localhost`
/// always, then `direct_domains` (each with its subdomains) by name, then
/// `direct_networks` by the address the host resolves to (only when some
/// are listed, since resolving costs the client a DNS lookup). The
/// transparency page's name (`own`) always goes to the proxy, first: it
/// exists nowhere else (and `.local` is direct by default).
pub fn pac_file(proxy: &str, pac: &Pac, own: &str, policy_hash: &str) -> String {
    use std::fmt::Write;
    // Names and addresses were validated (the policy compiler, and
    // --pac-proxy's parser): letters, digits, '-', '.', ':', '[', ']' only,
    // so nothing here needs escaping.
    let mut js = format!(
        "// socialgate proxy auto-configuration (policy {policy_hash})\n\
         function FindProxyForURL(url, host) {{\n  \
         host = host.toLowerCase();\n  \
         if (host === \"{own}\") {{\n    return \"PROXY {proxy}\";\n  }}\n  \
         if (isPlainHostName(host) || host === \"localhost\") {{\n    return \"DIRECT\";\n  }}\n"
    );
    if !pac.direct_domains.is_empty() {
        let tests: Vec<String> = pac
            .direct_domains
            .iter()
            .map(|d| format!("host === \"{d}\" || dnsDomainIs(host, \".{d}\")"))
            .collect();
        let _ = write!(
            js,
            "  if ({}) {{\n    return \"DIRECT\";\n  }}\n",
            tests.join(" ||\n      ")
        );
    }
    if !pac.direct_networks.is_empty() {
        let tests: Vec<String> = pac
            .direct_networks
            .iter()
            .map(|n| format!("isInNet(ip, \"{}\", \"{}\")", n.network(), n.netmask()))
            .collect();
        let _ = write!(
            js,
            "  var ip = dnsResolve(host);\n  \
             if (ip && ({})) {{\n    return \"DIRECT\";\n  }}\n",
            tests.join(" ||\n      ")
        );
    }
    let _ = write!(js, "  return \"PROXY {proxy}\";\n}}\n");
    js
}
