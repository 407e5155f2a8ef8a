//! One HTTP request, through its phases: parse the target, identify,
//! recognise its activity ([`super::activity`]), admit, the warn gate
//! ([`super::warn`]), resolve and admit the addresses, forward (or refuse),
//! record.
//!
//! Two kinds of request take this pipeline: plain-HTTP requests from the
//! proxy connection ([`handle`]), and requests inside an inspected tunnel
//! ([`handle_inspected`]), whose target and identity come from the tunnel.
//! Both are decided by the same admission, refused with the same pages,
//! and recorded the same way; only the forward step differs: a kept-alive
//! plain connection ([`super::keepalive`]) or the parent proxy, or
//! socialgate's own TLS session to the origin ([`Upstream`]).
//!
//! CONNECT requests are handed to [`super::tunnel`]. Upgrade requests
//! (WebSocket) are forwarded on a dedicated upstream connection and then
//! spliced under the policy's watch. Everything else goes out on a
//! kept-alive upstream connection, with streaming bodies in both
//! directions.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use super::body::{BoxError, ClientFault, Counted, Pending};
use super::context::{apply_keeping_groups, Exchange};
use super::headers::{
    add_via, is_navigation, presentation, strip_alt_svc, strip_hop_by_hop, switches_to_websocket,
    wants_upgrade,
};
use super::inspect::conn::{Inside, Link, Reach};
use super::keepalive::{Failed, Kept};
use super::responses;
use super::splice::{splice, Admitted, Signals, Watch};
use super::upstream::{find_upstream_error, open, Destination, ProxyBody, UpstreamError};
use super::{activity, me, parent, tunnel, warn, ProxyState};
use crate::event::{Kind, Tls};
use crate::outcome::ErrorKind;
use crate::policy::{normalize_host, Class, Decision, Entry, Host, Policy};

/// hyper's service entry point.
pub async fn handle(
    state: Arc<ProxyState>,
    peer: SocketAddr,
    req: Request<Incoming>,
    kept: Arc<Kept>,
) -> Result<Response<ProxyBody>, Infallible> {
    state.gauges.in_flight.fetch_add(1, Ordering::Relaxed);
    let resp = if head_size(&req) > state.config.max_header_bytes {
        too_large(&state, peer, &req)
    } else if req.method() == Method::CONNECT {
        // Boxed, like the other rare or large branches below: the future
        // of a plain request stays small (it is allocated per request).
        Box::pin(tunnel::handle_connect(&state, peer, req)).await
    } else {
        forward(&state, peer, None, req, &kept).await
    };
    state.gauges.in_flight.fetch_sub(1, Ordering::Relaxed);
    Ok(resp)
}

/// The size of a request head as sent: hyper's read-buffer limit alone lets
/// a head that arrives in one burst grow past `max_header_bytes`.
fn head_size(req: &Request<Incoming>) -> usize {
    let uri = req.uri();
    let target = uri.scheme_str().map_or(0, |s| s.len() + 3)
        + uri.authority().map_or(0, |a| a.as_str().len())
        + uri.path_and_query().map_or(0, |p| p.as_str().len());
    req.method().as_str().len() + target + 12 + headers_size(req.headers())
}

/// The size of a header block as sent (`name: value\r\n` per field).
fn headers_size(headers: &http::HeaderMap) -> usize {
    headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum::<usize>()
}

/// Refuses a request head larger than the configured limit, with a 431.
fn too_large(state: &ProxyState, peer: SocketAddr, req: &Request<Incoming>) -> Response<ProxyBody> {
    let host = req.uri().host().unwrap_or("-").to_string();
    let port = req.uri().port_u16().unwrap_or(0);
    let kind = if req.method() == Method::CONNECT {
        Kind::Tunnel
    } else {
        Kind::Request
    };
    let ex = Exchange::begin(state, kind, peer, req.method(), host, port);
    let limit = state.config.max_header_bytes;
    let detail = format!("the request head is larger than {limit} bytes");
    ex.bad_request(
        state,
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        None,
        &detail,
    )
}

/// A plain-HTTP request that came through the transparent listener, bound
/// for `original`, its target already made absolute from its `Host`.
pub async fn handle_redirected(
    state: Arc<ProxyState>,
    peer: SocketAddr,
    original: SocketAddr,
    req: Request<Incoming>,
    kept: &Kept,
) -> Response<ProxyBody> {
    state.gauges.in_flight.fetch_add(1, Ordering::Relaxed);
    let resp = if head_size(&req) > state.config.max_header_bytes {
        too_large(&state, peer, &req)
    } else {
        forward(&state, peer, Some(original), req, kept).await
    };
    state.gauges.in_flight.fetch_sub(1, Ordering::Relaxed);
    resp
}

/// `original`: where a redirected (transparent) connection was going.
async fn forward(
    state: &Arc<ProxyState>,
    peer: SocketAddr,
    original: Option<SocketAddr>,
    req: Request<Incoming>,
    kept: &Kept,
) -> Response<ProxyBody> {
    // Parse the target: absolute-form http:// only.
    let uri = req.uri().clone();
    let target = match (uri.scheme_str(), uri.host()) {
        (Some("http"), Some(h)) => normalize_host(h).map_err(|e| e.to_string()),
        (Some(s), Some(_)) => Err(format!(
            "only http:// URLs are forwarded; for {s}:// the client must use CONNECT"
        )),
        _ => Err("socialgate is a forward proxy: send absolute-form requests (configure it as the HTTP proxy)".into()),
    };
    let port = uri.port_u16().unwrap_or(80);
    let host = match target {
        Ok(h) => h,
        Err(detail) => {
            let raw = uri.host().unwrap_or("-").to_string();
            let ex = Exchange::begin(state, Kind::Request, peer, req.method(), raw, port);
            return ex.bad_request(state, StatusCode::BAD_REQUEST, None, &detail);
        }
    };
    // Subscribed before the snapshot is taken: an upgraded connection then
    // misses no reload or window edge.
    let signals = wants_upgrade(req.headers()).then(|| Signals::subscribe(state));
    let mut ex = Exchange::begin(
        state,
        Kind::Request,
        peer,
        req.method(),
        host_text(&host),
        port,
    );
    ex.navigation = is_navigation(req.method(), req.headers());
    if let Some(o) = original {
        ex.redirected(o);
    }
    ex.presentation = presentation(req.method(), req.headers());
    if let Err((status, detail)) = check_request_framing(req.headers()) {
        return ex.bad_request(state, status, Some(ErrorKind::ClientProtocol), detail);
    }
    // socialgate's own page: answered here, never forwarded or resolved.
    if me::asks_for(&ex.policy, &host) {
        return Box::pin(me::answer(state, ex, req)).await;
    }

    // Recognise what the request does (peeking at its body only where a
    // signature needs it), so the rules see the activity.
    let (mut parts, body) = req.into_parts();
    let idle = state.config.body_idle_timeout;
    let (found, body) = match activity::recognise(&ex.policy, &host, &parts, body, idle).await {
        Ok(x) => x,
        Err(fault) => {
            let status = match fault {
                ClientFault::Timeout => StatusCode::REQUEST_TIMEOUT,
                _ => StatusCode::BAD_REQUEST,
            };
            let detail = "the request body could not be read";
            return ex.bad_request(state, status, Some(fault.kind()), detail);
        }
    };
    ex.activity = Some(found.activity);
    ex.event.activity = Some(found.activity);
    ex.event.signature = found.signature;
    let mut req = Request::from_parts(parts, body);

    // Identify and admit: rules, and the address if the target is an IP literal.
    let (identity, mut admission) = match ex
        .identify_and_admit(state, req.headers(), Entry::Request, &host, port)
        .await
    {
        Ok(x) => x,
        Err(refusal) => return ex.refuse(state, refusal),
    };
    ex.event.foreground = ex.navigation && admission.decision.class == Some(Class::Primary);
    if admission.decision.platform.is_none() || ex.policy.logging.log_paths {
        ex.event.path = uri.path_and_query().map(|p| p.as_str().to_string());
    }
    // Warn rules: the warning, the Continue link, or a pass once acknowledged.
    let target = warn::Target {
        scheme: uri.scheme_str().unwrap_or("http"),
        host: &host,
        port,
    };
    // Boxed, and only where it has work: its future (several KiB, the
    // acknowledgement store's included) would otherwise be part of every
    // request's future, copied into hyper's box on every request. The
    // exchange and admission come back into the same variables: new
    // bindings would keep the moved-from ones' room in this future too.
    if warn::applies(&admission, &req) {
        let user = identity.user.as_deref();
        match Box::pin(warn::gate(state, ex, admission, user, &req, target)).await {
            Ok(x) => (ex, admission) = x,
            Err(answered) => return answered,
        }
    }
    let mut decision = admission.decision;
    if refuses(&mut ex, &mut decision, &uri) {
        return ex.refuse(state, decision);
    }

    // Resolve a name, then admit the addresses it resolved to.
    let dest = match ex.resolve_and_admit(state, &host, port, &decision).await {
        Ok(d) => d,
        Err(stop) => return ex.stop(state, stop),
    };

    // Forward.
    let upgrade = wants_upgrade(req.headers());
    let client_upgrade = upgrade.then(|| super::conn::on_upgrade(&mut req));
    // Back into the same `parts`: a new binding would keep room for a
    // second one in this future.
    let body;
    (parts, body) = req.into_parts();
    clean_request_headers(&mut parts.headers, &ex.policy, upgrade);
    set_judged_host(&mut parts.headers, &host, port);
    let user = identity.user;
    let ex_activity = ex.activity;
    let (pending, _policy) = ex.into_pending(state);
    let idle = Some(state.config.body_idle_timeout);
    let body = Counted::request(body, pending.meter.clone(), idle).boxed();

    if let (Some(client_upgrade), Some(signals)) = (client_upgrade, signals) {
        let admitted = Admitted {
            entry: Entry::Request,
            client: peer.ip(),
            user,
            host,
            port,
            resolved: Vec::new(),
            sni: None,
            activity: ex_activity,
            resolved_by_parent: dest.resolved_by_parent,
            original,
            hello: None,
        };
        let up = Upgrade {
            client: client_upgrade,
            admitted,
            signals,
        };
        return Box::pin(forward_upgrade(state, parts, body, pending, up, &dest)).await;
    }

    let sent = match &state.parent {
        // The parent gets the judged host in absolute form, and resolves it.
        Some(parent) if dest.via_parent => {
            let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
            parts.uri = match judged_uri(&host, port, path) {
                Some(u) => u,
                None => return respond_pending(pending, ErrorKind::UpstreamConnect, "bad host"),
            };
            // Boxed: the rare case, kept out of every request's future.
            Box::pin(via_parent(state, parent, Request::from_parts(parts, body))).await
        }
        // Exactly the admitted address, on the connection this client
        // kept, an idle one or a new one; `Host` names the judged host.
        _ => {
            let addr = SocketAddr::new(dest.pinned.unwrap_or(dest.addrs[0]), port);
            parts.uri = origin_form(&parts.uri);
            let deadline = tokio::time::Instant::now() + state.config.upstream_timeout;
            let req = Request::from_parts(parts, body);
            state.upstreams.send(kept, addr, req, deadline).await
        }
    };
    match sent {
        Ok(resp) => relay_response(state, resp, pending),
        Err(Failed::Connect(e)) => respond_upstream(pending, &e),
        Err(Failed::Http(e)) => upstream_failure(pending, &*e),
        Err(Failed::Timeout) => upstream_head_timeout(pending),
    }
}

/// Sends a request (absolute-form, naming the judged host) through the
/// parent proxy's pooled client, and waits (bounded) for the head.
async fn via_parent(
    state: &ProxyState,
    parent: &parent::Parent,
    req: Request<ProxyBody>,
) -> Result<Response<Incoming>, Failed> {
    match tokio::time::timeout(state.config.upstream_timeout, parent.request(req)).await {
        Ok(Ok(resp)) if parent::refused_plain_request(resp.status()) => {
            Err(Failed::Connect(UpstreamError::ParentRefused {
                parent: parent.config.address(),
                status: resp.status(),
            }))
        }
        Ok(Ok(resp)) => Ok(resp),
        Ok(Err(e)) => Err(Failed::Http(Box::new(e))),
        Err(_) => Err(Failed::Timeout),
    }
}

/// The request target as an origin server takes it: the path and query.
fn origin_form(uri: &http::Uri) -> http::Uri {
    let mut parts = http::uri::Parts::default();
    parts.path_and_query = Some(
        uri.path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/")),
    );
    http::Uri::from_parts(parts).unwrap_or_else(|_| http::Uri::from_static("/"))
}

/// The decide phase after admission, shared by plain and inspected
/// requests: what the record says about the request; then true when
/// `decision` refuses it (answer with `ex.refuse`), else the decision is
/// applied to the record and the request goes on under it.
fn refuses(ex: &mut Exchange, decision: &mut Decision, uri: &http::Uri) -> bool {
    ex.event.foreground = ex.navigation && decision.class == Some(Class::Primary);
    if decision.platform.is_none() || ex.policy.logging.log_paths {
        ex.event.path = uri.path_and_query().map(|p| p.as_str().to_string());
    }
    if decision.refuses() {
        return true;
    }
    ex.apply(decision);
    false
}

/// Header hygiene for a forwarded request: hop-by-hop headers, the trusted
/// identity header (it must not reach the site), and `Via`.
fn clean_request_headers(headers: &mut http::HeaderMap, policy: &Policy, upgrade: bool) {
    strip_hop_by_hop(headers, upgrade);
    if let Some(th) = &policy.auth.trusted_header {
        headers.remove(&th.name);
    }
    add_via(headers);
}

/// Where an inspected request goes (plain HTTP has its own forward step,
/// which also knows the parent proxy).
pub(crate) enum Upstream<'a> {
    /// socialgate's own TLS session to the origin of an inspected tunnel
    /// (HTTP/1.1 or HTTP/2, as the origin chose).
    Tls(&'a Link),
}

impl Upstream<'_> {
    async fn send(&self, req: Request<ProxyBody>) -> Result<Response<Incoming>, BoxError> {
        match self {
            Upstream::Tls(link) => link.send(req).await,
        }
    }
}

/// The forward step: sends the request, waits (bounded) for the response
/// head, and relays the response; failures become the proxy's own error
/// response. Either way the exchange is recorded once.
async fn send_and_relay(
    state: &ProxyState,
    upstream: Upstream<'_>,
    request: Request<ProxyBody>,
    pending: Pending,
) -> Response<ProxyBody> {
    let result = tokio::time::timeout(state.config.upstream_timeout, upstream.send(request)).await;
    match result {
        Ok(Ok(resp)) => relay_response(state, resp, pending),
        Ok(Err(e)) => upstream_failure(pending, &*e),
        Err(_) => upstream_head_timeout(pending),
    }
}

/// `http://HOST:PORT/path` naming the judged host, for the parent proxy.
fn judged_uri(host: &Host, port: u16, path: &str) -> Option<http::Uri> {
    uri_to(host, port, path)
}

/// A request inside an inspected tunnel: its target and identity are the
/// tunnel's; a `Host` (`:authority`) naming another site than the
/// ClientHello did gets 421 Misdirected Request, so the client opens a
/// connection that is judged for that site. Otherwise it is decided,
/// refused or forwarded, and recorded exactly like a plain-HTTP request
/// (with `tls: intercepted`).
pub async fn handle_inspected(
    state: Arc<ProxyState>,
    tunnel: Arc<Inside>,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    state.gauges.in_flight.fetch_add(1, Ordering::Relaxed);
    let resp = if head_size(&req) > state.config.max_header_bytes {
        let mut ex = Exchange::begin(
            &state,
            Kind::Request,
            tunnel.peer,
            req.method(),
            host_text(&tunnel.host),
            tunnel.port,
        );
        ex.event.tls = Some(Tls::Intercepted);
        ex.identified(&tunnel.identity);
        let limit = state.config.max_header_bytes;
        let detail = format!("the request head is larger than {limit} bytes");
        let status = StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE;
        let mut r = ex.bad_request(&state, status, None, &detail);
        // The TLS session stays usable: hyper frames the next request.
        r.headers_mut().remove(header::CONNECTION);
        r
    } else {
        inspected(&state, &tunnel, req).await
    };
    state.gauges.in_flight.fetch_sub(1, Ordering::Relaxed);
    Ok(resp)
}

async fn inspected(
    state: &Arc<ProxyState>,
    tunnel: &Inside,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    let host = &tunnel.host;
    let port = tunnel.port;
    // A WebSocket over an HTTP/1.1 origin session; subscribed before the
    // snapshot is taken, like a plain-HTTP upgrade.
    let upgrade =
        wants_upgrade(req.headers()) && matches!(&tunnel.upstream, Reach::Origin(Link::H1 { .. }));
    let signals = upgrade.then(|| Signals::subscribe(state));
    let mut ex = Exchange::begin(
        state,
        Kind::Request,
        tunnel.peer,
        req.method(),
        host_text(host),
        port,
    );
    ex.event.tls = Some(Tls::Intercepted);
    ex.navigation = is_navigation(req.method(), req.headers());
    ex.presentation = presentation(req.method(), req.headers());
    ex.identified(&tunnel.identity);
    if let Err(named) = same_site(&req, host, port) {
        // Another site than the ClientHello named: fronting inside TLS.
        let d = Decision::builtin(crate::policy::Reason::SniMismatch);
        apply_keeping_groups(&mut ex.event, &d);
        let detail = format!(
            "this connection is for {host}, the request names {named}: open a new connection for it"
        );
        return ex.misdirected(state, &detail);
    }
    if let Err((status, detail)) = check_request_framing(req.headers()) {
        return ex.bad_request(state, status, Some(ErrorKind::ClientProtocol), detail);
    }
    // The "Request access" form of a block page shown in this tunnel.
    if req.method() == Method::POST && req.uri().path() == crate::requests::INSPECTED_REQUEST_PATH {
        let user = tunnel.identity.user.clone();
        return Box::pin(me::access_request_inside(state, ex, user, req)).await;
    }
    // Recognise what the request does, as on plain HTTP.
    let (mut parts, body) = req.into_parts();
    let idle = state.config.body_idle_timeout;
    let (found, body) = match activity::recognise(&ex.policy, host, &parts, body, idle).await {
        Ok(x) => x,
        Err(fault) => {
            let status = match fault {
                ClientFault::Timeout => StatusCode::REQUEST_TIMEOUT,
                _ => StatusCode::BAD_REQUEST,
            };
            let detail = "the request body could not be read";
            return ex.bad_request(state, status, Some(fault.kind()), detail);
        }
    };
    ex.activity = Some(found.activity);
    ex.event.activity = Some(found.activity);
    ex.event.signature = found.signature;
    let mut req = Request::from_parts(parts, body);
    let resolved = tunnel.resolved.as_ref().map(std::slice::from_ref);
    let mut admission = ex.admit_as(
        state,
        &tunnel.identity,
        Entry::Request,
        host,
        port,
        resolved,
    );
    // Warn rules: inside an inspected tunnel the warning can be shown.
    let target = warn::Target {
        scheme: "https",
        host,
        port,
    };
    let user = tunnel.identity.user.as_deref();
    if warn::applies(&admission, &req) {
        // Into the same variables, as in `forward`.
        match Box::pin(warn::gate(state, ex, admission, user, &req, target)).await {
            Ok(x) => (ex, admission) = x,
            Err(answered) => return answered,
        }
    }
    let uri = req.uri().clone();
    let mut decision = admission.decision;
    if refuses(&mut ex, &mut decision, &uri) {
        return ex.refuse(state, decision);
    }
    let link = match &tunnel.upstream {
        Reach::Origin(link) => link,
        Reach::Failed(kind, detail) => return ex.fail(state, *kind, detail),
        Reach::None => {
            // A tunnel opened only to show a refusal, and the policy now
            // allows the request (it was reloaded): the client retries on
            // a new connection, which is decided and dialed afresh.
            return ex.misdirected(
                state,
                "the policy changed; open a new connection for this site",
            );
        }
    };
    let client_upgrade = upgrade.then(|| super::conn::on_upgrade(&mut req));
    // Back into the same `parts`: a new binding would keep room for a
    // second one in this future.
    let body;
    (parts, body) = req.into_parts();
    clean_request_headers(&mut parts.headers, &ex.policy, upgrade);
    link.prepare(&mut parts, host, port);
    let ex_activity = ex.activity;
    let (pending, _policy) = ex.into_pending(state);
    let idle = Some(state.config.body_idle_timeout);
    let body = Counted::request(body, pending.meter.clone(), idle).boxed();
    let request = Request::from_parts(parts, body);
    let (Some(client_upgrade), Some(signals)) = (client_upgrade, signals) else {
        return send_and_relay(state, Upstream::Tls(link), request, pending).await;
    };
    link.upgrading();
    let resp = match tokio::time::timeout(state.config.upstream_timeout, link.send(request)).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return upstream_failure(pending, &*e),
        Err(_) => return upstream_head_timeout(pending),
    };
    let admitted = Admitted {
        entry: Entry::Request,
        client: tunnel.peer.ip(),
        user: tunnel.identity.user.clone(),
        host: host.clone(),
        port,
        resolved: tunnel.resolved.into_iter().collect(),
        sni: None,
        hello: None,
        activity: ex_activity,
        resolved_by_parent: false,
        original: None,
    };
    let watch = Watch::new(state.clone(), admitted, signals);
    switched(state, resp, pending, client_upgrade, watch)
}

/// `Ok` when the request's `:authority` or `Host` names the tunnel's host
/// (and port, if it names one); else the name it gave.
fn same_site(req: &Request<Incoming>, host: &Host, port: u16) -> Result<(), String> {
    let authority = match req.uri().authority() {
        Some(a) => Some(a.clone()),
        None => req
            .headers()
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<http::uri::Authority>().ok()),
    };
    let Some(a) = authority else {
        // HTTP/1.1 requires Host; an HTTP/1.0 request without one is for
        // the tunnel's host by construction.
        return if req.version() == http::Version::HTTP_10 {
            Ok(())
        } else {
            Err("no host at all".into())
        };
    };
    let same_host = normalize_host(a.host()).is_ok_and(|h| &h == host);
    let same_port = a.port_u16().is_none_or(|p| p == port);
    if same_host && same_port {
        Ok(())
    } else {
        Err(a.to_string())
    }
}

/// `http://HOST:PORT/path`, built without `format!` (whose machinery, and
/// the standard library's address formatting, cost a few thousand
/// instructions a request) and parsed by `http`.
fn uri_to(host: &Host, port: u16, path: &str) -> Option<http::Uri> {
    let mut s = String::with_capacity(16 + 48 + path.len());
    s.push_str("http://");
    push_authority(&mut s, host, port, false);
    s.push_str(path);
    s.parse().ok()
}

/// `host` as its `Display` writes it, without the formatting machinery
/// (a thousand instructions a request for an address).
pub(crate) fn host_text(host: &Host) -> String {
    match host {
        Host::Name(n) | Host::Numeric(n) => n.clone(),
        Host::Ip(ip) => {
            let mut s = String::with_capacity(39);
            crate::event::push_ip(&mut s, *ip);
            s
        }
    }
}

/// Appends `host:port` (IPv6 in brackets); with `omit_80`, `:80` is left
/// out, as a `Host` header writes it.
fn push_authority(s: &mut String, host: &Host, port: u16, omit_80: bool) {
    use crate::event::{push_decimal, push_ip};
    match host {
        Host::Name(n) | Host::Numeric(n) => s.push_str(n),
        Host::Ip(ip @ IpAddr::V4(_)) => push_ip(s, *ip),
        Host::Ip(ip @ IpAddr::V6(_)) => {
            s.push('[');
            push_ip(s, *ip);
            s.push(']');
        }
    }
    if !(omit_80 && port == 80) {
        s.push(':');
        push_decimal(s, port.into());
    }
}

/// Sends the upstream's response on, recording when its body ends.
///
/// A response whose framing is ambiguous (`Transfer-Encoding` together with
/// `Content-Length`, RFC 9112 §6.3) or whose head is larger than
/// `--max-header-bytes` is not relayed: the client gets a 502
/// `upstream-protocol` and the upstream connection is dropped.
fn relay_response(
    state: &ProxyState,
    resp: Response<Incoming>,
    mut pending: Pending,
) -> Response<ProxyBody> {
    let (mut parts, body) = resp.into_parts();
    let problem = if parts.headers.contains_key(header::TRANSFER_ENCODING)
        && parts.headers.contains_key(header::CONTENT_LENGTH)
    {
        Some("the site sent both Transfer-Encoding and Content-Length (ambiguous framing)")
    } else if 20 + headers_size(&parts.headers) > state.config.max_header_bytes {
        Some("the site's response head is larger than the proxy accepts")
    } else {
        None
    };
    if let Some(detail) = problem {
        drop(body);
        return respond_pending(pending, ErrorKind::UpstreamProtocol, detail);
    }
    strip_hop_by_hop(&mut parts.headers, false);
    // Browsers must stay on TCP through the proxy: no HTTP/3 (QUIC) hints.
    strip_alt_svc(&mut parts.headers);
    add_via(&mut parts.headers);
    if let Some(v) = pending
        .charge
        .as_ref()
        .and_then(|c| c.remaining_header())
        .and_then(|v| HeaderValue::from_str(&v).ok())
    {
        parts.headers.insert(responses::BUDGET_HEADER, v);
    }
    pending.event_mut().status = parts.status.as_u16();
    let idle = Some(state.config.body_idle_timeout);
    Response::from_parts(parts, Counted::response(body, pending, idle).boxed())
}

/// Maps a failed upstream exchange to its error response, and records it.
/// A client that broke its own request body is blamed, not the site.
fn upstream_failure(
    pending: Pending,
    e: &(dyn std::error::Error + 'static),
) -> Response<ProxyBody> {
    if let Some(fault) = pending.meter.client_fault() {
        return client_failure(pending, fault);
    }
    match find_upstream_error(e) {
        Some(u) => respond_upstream(pending, u),
        None => {
            tracing::debug!(error = %e, "upstream exchange failed");
            respond_pending(
                pending,
                ErrorKind::UpstreamProtocol,
                "the site closed the connection or sent an invalid response",
            )
        }
    }
}

/// No response head in time. If the client was still holding back its own
/// request body, the stall is the client's; otherwise the site's.
fn upstream_head_timeout(pending: Pending) -> Response<ProxyBody> {
    if pending.meter.waiting_on_client() {
        return client_failure(pending, ClientFault::Timeout);
    }
    respond_pending(
        pending,
        ErrorKind::UpstreamTimeout,
        "the site did not answer in time",
    )
}

/// Answers an exchange that failed because of the client's request body:
/// 400 for broken framing, 408 for a stall; the connection is closed.
fn client_failure(pending: Pending, fault: ClientFault) -> Response<ProxyBody> {
    let detail = match fault {
        ClientFault::Protocol => "the request body is not validly framed",
        ClientFault::Timeout => "the request body stopped arriving",
        ClientFault::Closed => {
            "the client closed the connection before its request body was complete"
        }
    };
    respond_pending(pending, fault.kind(), detail)
}

/// Ends a pending exchange whose upstream connection failed, recording the
/// parent proxy's status when it refused.
fn respond_upstream(mut pending: Pending, e: &UpstreamError) -> Response<ProxyBody> {
    pending.event_mut().parent_status = e.parent_status();
    respond_pending(pending, e.kind(), &e.to_string())
}

/// Ends a pending exchange with the proxy's own error response.
fn respond_pending(mut pending: Pending, kind: ErrorKind, detail: &str) -> Response<ProxyBody> {
    let resp = responses::failure(kind, detail);
    let ev = pending.event_mut();
    ev.status = resp.status().as_u16();
    ev.error = Some(kind);
    pending.complete();
    drop(pending);
    resp
}

/// Request framing that socialgate refuses to forward (RFC 9112 §6):
/// transfer codings other than a bare `chunked` (501), and a message that
/// carries both `Content-Length` and `Transfer-Encoding` (400). hyper
/// already rejects a final coding other than chunked and drops the
/// `Content-Length` of a chunked request; these checks hold whatever the
/// HTTP layer lets through.
fn check_request_framing(headers: &http::HeaderMap) -> Result<(), (StatusCode, &'static str)> {
    let mut codings = headers.get_all(header::TRANSFER_ENCODING).iter();
    let Some(first) = codings.next() else {
        return Ok(());
    };
    if headers.contains_key(header::CONTENT_LENGTH) {
        return Err((
            StatusCode::BAD_REQUEST,
            "a request must not carry both Content-Length and Transfer-Encoding",
        ));
    }
    let bare_chunked = first
        .to_str()
        .is_ok_and(|v| v.trim().eq_ignore_ascii_case("chunked"));
    if !bare_chunked || codings.next().is_some() {
        return Err((
            StatusCode::NOT_IMPLEMENTED,
            "only the chunked transfer coding is supported in requests",
        ));
    }
    Ok(())
}

/// Makes `Host` name exactly the host that was judged (RFC 9112 §3.2.2). A
/// client's `Host` naming some other site is replaced, never forwarded, so
/// a shared front end (CDN, virtual hosting) cannot be steered to a site
/// the policy did not decide on.
fn set_judged_host(headers: &mut http::HeaderMap, host: &Host, port: u16) {
    let mut authority = String::with_capacity(64);
    push_authority(&mut authority, host, port, true);
    let same = headers
        .get(header::HOST)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(authority.as_bytes()));
    if !same || headers.get_all(header::HOST).iter().count() > 1 {
        // A normalised host and a port: always a valid header value.
        if let Ok(v) = HeaderValue::from_str(&authority) {
            headers.insert(header::HOST, v);
        }
    }
}

/// What an Upgrade request brings besides its head and body.
struct Upgrade {
    client: super::conn::OnClientUpgrade,
    admitted: Admitted,
    signals: Signals,
}

/// Forwards an Upgrade request (WebSocket) on its own upstream connection,
/// then splices the two under the policy's watch.
async fn forward_upgrade(
    state: &Arc<ProxyState>,
    mut parts: http::request::Parts,
    body: ProxyBody,
    pending: Pending,
    up: Upgrade,
    dest: &Destination,
) -> Response<ProxyBody> {
    let Upgrade {
        client: client_upgrade,
        mut admitted,
        signals,
    } = up;
    // Through the parent, an upgrade rides a CONNECT tunnel (as browsers'
    // WebSockets do through a proxy); inside it, the request is origin-form.
    let opened = match open(state, dest, &admitted.host, admitted.port).await {
        Ok(o) => o,
        Err(e) => return respond_upstream(pending, &e),
    };
    admitted.resolved = opened.resolved;
    let handshake = hyper::client::conn::http1::Builder::new()
        .max_buf_size(state.config.max_header_bytes.max(8192))
        .handshake::<_, ProxyBody>(TokioIo::new(opened.stream))
        .await;
    let (mut sender, conn) = match handshake {
        Ok(x) => x,
        Err(e) => return upstream_failure(pending, &e),
    };
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    // A connection-level client sends the URI as given: use origin-form.
    parts.uri = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/")
        .parse()
        .unwrap_or_else(|_| http::Uri::from_static("/"));
    let resp = match tokio::time::timeout(
        state.config.upstream_timeout,
        sender.send_request(Request::from_parts(parts, body)),
    )
    .await
    {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return upstream_failure(pending, &e),
        Err(_) => return upstream_head_timeout(pending),
    };
    switched(
        state,
        resp,
        pending,
        client_upgrade,
        Watch::new(state.clone(), admitted, signals),
    )
}

/// The upstream's answer to an Upgrade request: a `101` splices the two
/// upgraded connections under the policy's watch (recorded when they
/// close); anything else is relayed as a response.
fn switched(
    state: &Arc<ProxyState>,
    resp: Response<Incoming>,
    mut pending: Pending,
    client_upgrade: super::conn::OnClientUpgrade,
    watch: Watch,
) -> Response<ProxyBody> {
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        return relay_response(state, resp, pending);
    }
    if !switches_to_websocket(resp.headers()) {
        // Only WebSocket was asked for; bytes of another protocol would
        // pass unread.
        return respond_pending(
            pending,
            ErrorKind::UpstreamProtocol,
            "the site switched to a protocol other than the WebSocket asked for",
        );
    }
    let mut resp = resp;
    let upstream_upgrade = hyper::upgrade::on(&mut resp);
    let (mut parts, _) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers, true);
    strip_alt_svc(&mut parts.headers);
    add_via(&mut parts.headers);
    pending.event_mut().status = 101;
    let idle = state.config.idle_timeout;
    let hard_stop = state.hard_stop.subscribe();
    state.spawn_tunnel(async move {
        match tokio::join!(client_upgrade, upstream_upgrade) {
            (Ok(c), Ok(u)) => {
                splice(
                    c,
                    TokioIo::new(u),
                    &mut pending,
                    idle,
                    Some(watch),
                    hard_stop,
                )
                .await;
            }
            _ => pending.event_mut().error = Some(ErrorKind::UpstreamProtocol),
        }
        pending.complete();
    });
    Response::from_parts(parts, responses::empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_bare_chunked_coding_passes() {
        let map = |pairs: &[(&str, &str)]| {
            let mut h = http::HeaderMap::new();
            for (k, v) in pairs {
                h.append(
                    http::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    v.parse().unwrap(),
                );
            }
            h
        };
        assert!(check_request_framing(&map(&[])).is_ok());
        assert!(check_request_framing(&map(&[("transfer-encoding", "Chunked")])).is_ok());
        for bad in ["gzip, chunked", "chunked, chunked", "identity"] {
            let e = check_request_framing(&map(&[("transfer-encoding", bad)])).unwrap_err();
            assert_eq!(e.0, StatusCode::NOT_IMPLEMENTED, "{bad}");
        }
        let both = map(&[("transfer-encoding", "chunked"), ("content-length", "3")]);
        assert_eq!(
            check_request_framing(&both).unwrap_err().0,
            StatusCode::BAD_REQUEST
        );
    }

    #[test]
    fn the_host_header_names_the_judged_authority() {
        let mut h = http::HeaderMap::new();
        h.insert(header::HOST, "www.tiktok.com".parse().unwrap());
        set_judged_host(&mut h, &normalize_host("www.linkedin.com").unwrap(), 8080);
        assert_eq!(h[header::HOST], "www.linkedin.com:8080");
        set_judged_host(&mut h, &normalize_host("[::1]").unwrap(), 80);
        assert_eq!(h[header::HOST], "[::1]");
        assert!(uri_to(&Host::Ip("::1".parse().unwrap()), 80, "/a?b").is_some());
    }

    #[test]
    fn host_text_writes_what_display_writes() {
        for raw in [
            "www.linkedin.com",
            "10.0.0.9",
            "[2001:db8::8a2e:370:7334]",
            "[::1]",
            "127.1",
        ] {
            let host = normalize_host(raw).unwrap();
            assert_eq!(host_text(&host), host.to_string(), "{raw}");
        }
    }

    #[test]
    fn an_origin_gets_the_path_and_query_only() {
        for (target, want) in [
            ("http://10.0.0.9:8080/a/b?c=d", "/a/b?c=d"),
            ("http://www.linkedin.com/", "/"),
            ("http://www.linkedin.com", "/"),
            ("http://[::1]:81/x?", "/x?"),
        ] {
            let uri: http::Uri = target.parse().unwrap();
            assert_eq!(origin_form(&uri).to_string(), want, "{target}");
        }
    }

    #[test]
    fn targets_are_written_as_format_would_write_them() {
        for (ip, port) in [
            ("127.0.0.1", 80),
            ("0.0.0.0", 0),
            ("255.255.255.255", 65535),
            ("10.20.3.4", 8080),
            ("::1", 443),
            ("2001:db8::8a2e:370:7334", 80),
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            let want = match ip {
                IpAddr::V4(v4) => format!("http://{v4}:{port}/a?b=1"),
                IpAddr::V6(v6) => format!("http://[{v6}]:{port}/a?b=1"),
            };
            let got = uri_to(&Host::Ip(ip), port, "/a?b=1").unwrap();
            assert_eq!(got.to_string(), want);
        }
        let name = normalize_host("www.linkedin.com").unwrap();
        assert_eq!(
            judged_uri(&name, 8080, "/x").unwrap().to_string(),
            "http://www.linkedin.com:8080/x"
        );
        let mut h = http::HeaderMap::new();
        set_judged_host(&mut h, &Host::Ip("10.0.0.9".parse().unwrap()), 80);
        assert_eq!(h[header::HOST], "10.0.0.9");
        set_judged_host(&mut h, &Host::Ip("10.0.0.9".parse().unwrap()), 81);
        assert_eq!(h[header::HOST], "10.0.0.9:81");
    }
}

#[cfg(test)]
mod future_size {
    use super::*;

    fn size_of_future<A, B, C, D, F: std::future::Future>(
        _: impl FnOnce(A, B, C, D) -> F,
    ) -> usize {
        std::mem::size_of::<F>()
    }

    /// hyper's service boxes each request's future, copying all of it: a
    /// rare phase inlined into it (the warn gate's acknowledgement lookup
    /// was 7 KiB of its 12) is paid for by every request, and so is a
    /// moved-from value that a new binding leaves behind (the exchange and
    /// admission after the warn gate, the request's parts: 1.1 KiB).
    /// Measured in the test build: 5,144 bytes, of which about 1,250 are
    /// the kept-alive upstream send (the pooled client it replaced boxed
    /// its own future instead, and cost 8,000 instructions more a request).
    #[test]
    fn a_plain_request_future_stays_small() {
        let size =
            size_of_future::<Arc<ProxyState>, SocketAddr, Request<Incoming>, Arc<Kept>, _>(handle);
        assert!(
            size <= 5376,
            "a plain request's future is {size} bytes: box the large, rare phases where they are awaited"
        );
    }
}
