//! One plain-HTTP request, through its phases: parse the target, identify,
//! decide, forward (or refuse), record.
//!
//! CONNECT requests are handed to [`super::tunnel`]. Upgrade requests
//! (WebSocket) are forwarded on a dedicated upstream connection and then
//! spliced. Everything else goes through the pooled keep-alive client with
//! streaming bodies in both directions.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use super::body::{ClientFault, Counted, Pending};
use super::headers::{add_via, is_navigation, strip_hop_by_hop, wants_upgrade};
use super::identify::identify;
use super::responses::{self, RequestView};
use super::upstream::{find_dial_error, DialError, ProxyBody};
use super::{tunnel, ProxyState};
use crate::event::{AuthMethod, Event, Kind};
use crate::policy::{decide, normalize_host, Decision, Host, Policy, Reason, RequestFacts};

/// hyper's service entry point.
pub async fn handle(
    state: Arc<ProxyState>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    state.gauges.in_flight.fetch_add(1, Ordering::Relaxed);
    let resp = if head_size(&req) > state.config.max_header_bytes {
        too_large(&state, peer, &req)
    } else if req.method() == Method::CONNECT {
        tunnel::handle_connect(&state, peer, req).await
    } else {
        forward(&state, peer, req).await
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
    let mut ev = new_event(kind, peer, req.method(), host, port);
    apply_decision(&mut ev, &Decision::builtin(Reason::BadRequest));
    let limit = state.config.max_header_bytes;
    let detail = format!("the request head is larger than {limit} bytes");
    let status = StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE;
    let resp = responses::error(status, "bad-request", &detail);
    finish_now(state, ev, Instant::now(), resp)
}

/// A fresh event with what is known before identification.
pub(crate) fn new_event(
    kind: Kind,
    peer: SocketAddr,
    method: &Method,
    host: String,
    port: u16,
) -> Event {
    Event {
        time: jiff::Timestamp::now(),
        kind,
        client: crate::policy::canonical_ip(peer.ip()),
        user: None,
        auth: AuthMethod::None,
        groups: Vec::new(),
        group: None,
        method: method.clone(),
        host,
        port,
        path: None,
        sni: None,
        platform: None,
        category: None,
        class: None,
        activity: None,
        foreground: false,
        action: "allow",
        mode: "enforce",
        rule: crate::policy::Reason::RuleMatched.builtin_rule_arc(),
        reason: "",
        status: 0,
        bytes_up: 0,
        bytes_down: 0,
        duration_ms: 0,
        error: None,
    }
}

/// Copies a decision into the event.
pub(crate) fn apply_decision(ev: &mut Event, d: &Decision) {
    ev.groups.clone_from(&d.groups);
    apply_decision_keeping_groups(ev, d);
}

/// Like [`apply_decision`], leaving `ev.groups` as it is.
fn apply_decision_keeping_groups(ev: &mut Event, d: &Decision) {
    ev.group.clone_from(&d.group);
    ev.platform.clone_from(&d.platform);
    ev.category.clone_from(&d.category);
    ev.class = d.class.map(|c| c.as_str());
    ev.action = d.action.as_str();
    ev.mode = d.mode.as_str();
    ev.rule = d.rule.clone();
    ev.reason = d.reason.as_str();
}

fn host_string(h: &Host) -> String {
    h.to_string()
}

async fn forward(
    state: &ProxyState,
    peer: SocketAddr,
    mut req: Request<Incoming>,
) -> Response<ProxyBody> {
    let started = Instant::now();
    let policy = state.policy.load();
    let navigation = is_navigation(req.method(), req.headers());

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
    let raw_host = uri.host().unwrap_or("-").to_string();
    let host = match target {
        Ok(h) => h,
        Err(detail) => {
            let mut ev = new_event(Kind::Request, peer, req.method(), raw_host, port);
            apply_decision(&mut ev, &Decision::builtin(Reason::BadRequest));
            let resp = responses::error(StatusCode::BAD_REQUEST, "bad-request", &detail);
            return finish_now(state, ev, started, resp);
        }
    };
    let mut ev = new_event(Kind::Request, peer, req.method(), host_string(&host), port);
    if let Err((status, detail)) = check_request_framing(req.headers()) {
        apply_decision(&mut ev, &Decision::builtin(Reason::BadRequest));
        ev.error = Some(ClientFault::Protocol.label());
        let resp = responses::error(status, ClientFault::Protocol.label(), detail);
        return finish_now(state, ev, started, close_after(resp));
    }

    // Identify.
    let identity = match identify(state, &policy, peer.ip(), req.headers()).await {
        Ok(i) => i,
        Err(reason) => {
            let d = Decision::builtin(reason);
            apply_decision(&mut ev, &d);
            let view = RequestView {
                navigation,
                host: &ev.host,
                connect: false,
            };
            let resp = responses::refusal(&d, &policy, &view);
            return finish_now(state, ev, started, resp);
        }
    };
    ev.user = identity.user.clone();
    ev.auth = identity.auth;

    // Decide.
    let facts = RequestFacts {
        client: peer.ip(),
        user: identity.user.as_deref(),
        host: &host,
        port,
    };
    let t0 = Instant::now();
    let mut decision = decide(&policy, &facts, jiff::Timestamp::now());
    state.metrics.observe_decision_time(t0.elapsed());
    // The event takes the group list; nothing below reads it from the decision.
    ev.groups = std::mem::take(&mut decision.groups);
    apply_decision_keeping_groups(&mut ev, &decision);
    let write = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    ev.activity = Some(if write { "write" } else { "view" });
    ev.foreground = navigation && decision.class == Some(crate::policy::Class::Primary);
    if decision.platform.is_none() || policy.logging.log_paths {
        ev.path = uri.path_and_query().map(|p| p.as_str().to_string());
    }
    if decision.refuses() {
        let view = RequestView {
            navigation,
            host: &ev.host,
            connect: false,
        };
        let resp = responses::refusal(&decision, &policy, &view);
        return finish_now(state, ev, started, resp);
    }

    // Forward.
    let upgrade = wants_upgrade(req.headers());
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    strip_hop_by_hop(&mut parts.headers, upgrade);
    if let Some(th) = &policy.auth.trusted_header {
        parts.headers.remove(&th.name);
    }
    add_via(&mut parts.headers);
    target_judged_host(&mut parts, &host, port);
    let pending = Pending::new(ev, started, state.recorder.clone());
    let idle = Some(state.config.body_idle_timeout);
    let body = Counted::request(body, pending.meter.clone(), idle).boxed();

    if let Some(client_upgrade) = client_upgrade {
        return forward_upgrade(
            state,
            &policy,
            &decision,
            navigation,
            parts,
            body,
            pending,
            client_upgrade,
        )
        .await;
    }

    let request = Request::from_parts(parts, body);
    let result =
        tokio::time::timeout(state.config.upstream_timeout, state.client.request(request)).await;
    match result {
        Ok(Ok(resp)) => relay_response(state, resp, pending),
        Ok(Err(e)) => upstream_failure(
            &policy,
            &decision,
            navigation,
            pending,
            find_dial_error(&e),
            &e.to_string(),
        ),
        Err(_) => upstream_head_timeout(pending),
    }
}

/// No response head in time. If the client was still holding back its own
/// request body, the stall is the client's; otherwise the site's.
fn upstream_head_timeout(mut pending: Pending) -> Response<ProxyBody> {
    if pending.meter.waiting_on_client() {
        return client_failure(pending, ClientFault::Timeout);
    }
    pending.event_mut().error = Some("upstream-timeout");
    respond_pending(
        pending,
        responses::error(
            StatusCode::GATEWAY_TIMEOUT,
            "upstream-timeout",
            "the site did not answer in time",
        ),
    )
}

/// Answers an exchange that failed because of the client's request body:
/// 400 for broken framing, 408 for a stall. The connection is closed, since
/// the rest of the client's stream can no longer be trusted.
fn client_failure(pending: Pending, fault: ClientFault) -> Response<ProxyBody> {
    let (status, detail) = match fault {
        ClientFault::Protocol => (
            StatusCode::BAD_REQUEST,
            "the request body is not validly framed",
        ),
        ClientFault::Timeout => (
            StatusCode::REQUEST_TIMEOUT,
            "the request body stopped arriving",
        ),
        ClientFault::Closed => (
            StatusCode::BAD_REQUEST,
            "the client closed the connection before its request body was complete",
        ),
    };
    // The meter holds the fault; the record takes its label from there.
    let resp = responses::error(status, fault.label(), detail);
    respond_pending(pending, close_after(resp))
}

/// Asks hyper to close the client connection after this response.
fn close_after(mut resp: Response<ProxyBody>) -> Response<ProxyBody> {
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
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

/// Makes the request go to exactly the host that was judged (RFC 9112
/// §3.2.2): the request target and `Host` both name it. A client's `Host`
/// naming some other site is replaced, never forwarded, so a shared front
/// end (CDN, virtual hosting) cannot be steered to a site the policy did
/// not decide on.
fn target_judged_host(parts: &mut http::request::Parts, host: &Host, port: u16) {
    let authority = match (host, port) {
        (Host::Ip(std::net::IpAddr::V6(ip)), 80) => format!("[{ip}]"),
        (Host::Ip(std::net::IpAddr::V6(ip)), p) => format!("[{ip}]:{p}"),
        (h, 80) => h.to_string(),
        (h, p) => format!("{h}:{p}"),
    };
    let same_host = parts
        .headers
        .get(header::HOST)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(authority.as_bytes()));
    if !same_host || parts.headers.get_all(header::HOST).iter().count() > 1 {
        // `authority` is a normalised host and a port: always a valid value.
        if let Ok(v) = HeaderValue::from_str(&authority) {
            parts.headers.insert(header::HOST, v);
        }
    }
    if parts.uri.authority().map(|a| a.as_str()) != Some(authority.as_str()) {
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        if let Ok(uri) = format!("http://{authority}{path}").parse() {
            parts.uri = uri;
        }
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
        pending.event_mut().error = Some("upstream-protocol");
        let resp = responses::error(StatusCode::BAD_GATEWAY, "upstream-protocol", detail);
        return respond_pending(pending, resp);
    }
    strip_hop_by_hop(&mut parts.headers, false);
    add_via(&mut parts.headers);
    pending.event_mut().status = parts.status.as_u16();
    let idle = Some(state.config.body_idle_timeout);
    Response::from_parts(parts, Counted::response(body, pending, idle).boxed())
}

/// Maps a failed upstream exchange to a refusal (destination checks) or a
/// 502/504, and records it.
fn upstream_failure(
    policy: &Policy,
    decision: &Decision,
    navigation: bool,
    mut pending: Pending,
    dial: Option<&DialError>,
    detail: &str,
) -> Response<ProxyBody> {
    if let Some(fault) = pending.meter.client_fault() {
        return client_failure(pending, fault);
    }
    match dial {
        Some(DialError::Private(_)) | Some(DialError::SelfLoop(_)) => {
            let reason = if matches!(dial, Some(DialError::SelfLoop(_))) {
                Reason::DestinationSelf
            } else {
                Reason::DestinationPrivate
            };
            let d = decision.refused_for(reason);
            // The event already holds the client's groups (moved out of `decision`).
            apply_decision_keeping_groups(pending.event_mut(), &d);
            let host = pending.event_mut().host.clone();
            let view = RequestView {
                navigation,
                host: &host,
                connect: false,
            };
            let resp = responses::refusal(&d, policy, &view);
            respond_pending(pending, resp)
        }
        Some(e) => {
            let label = e.label();
            pending.event_mut().error = Some(label);
            let status = if label == "upstream-timeout" {
                StatusCode::GATEWAY_TIMEOUT
            } else {
                StatusCode::BAD_GATEWAY
            };
            respond_pending(pending, responses::error(status, label, &e.to_string()))
        }
        None => {
            pending.event_mut().error = Some("upstream-protocol");
            tracing::debug!(error = detail, "upstream exchange failed");
            respond_pending(
                pending,
                responses::error(
                    StatusCode::BAD_GATEWAY,
                    "upstream-protocol",
                    "the site closed the connection or sent an invalid response",
                ),
            )
        }
    }
}

fn respond_pending(mut pending: Pending, resp: Response<ProxyBody>) -> Response<ProxyBody> {
    pending.event_mut().status = resp.status().as_u16();
    pending.complete();
    drop(pending);
    resp
}

/// Records an exchange that ends with a response made by the proxy.
pub(crate) fn finish_now(
    state: &ProxyState,
    mut ev: Event,
    started: Instant,
    resp: Response<ProxyBody>,
) -> Response<ProxyBody> {
    ev.status = resp.status().as_u16();
    ev.duration_ms = started.elapsed().as_millis() as u64;
    state.recorder.record(ev);
    resp
}

#[allow(clippy::too_many_arguments)]
async fn forward_upgrade(
    state: &ProxyState,
    policy: &Policy,
    decision: &Decision,
    navigation: bool,
    mut parts: http::request::Parts,
    body: ProxyBody,
    mut pending: Pending,
    client_upgrade: hyper::upgrade::OnUpgrade,
) -> Response<ProxyBody> {
    let host = pending.event_mut().host.clone();
    let port = pending.event_mut().port;
    let dialed = match state.dialer.dial(&host, port).await {
        Ok(d) => d,
        Err(e) => return upstream_failure(policy, decision, navigation, pending, Some(&e), ""),
    };
    let handshake = hyper::client::conn::http1::Builder::new()
        .handshake::<_, ProxyBody>(TokioIo::new(dialed.stream))
        .await;
    let (mut sender, conn) = match handshake {
        Ok(x) => x,
        Err(e) => {
            return upstream_failure(policy, decision, navigation, pending, None, &e.to_string())
        }
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
        Ok(Err(e)) => {
            return upstream_failure(policy, decision, navigation, pending, None, &e.to_string())
        }
        Err(_) => return upstream_head_timeout(pending),
    };
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        return relay_response(state, resp, pending);
    }
    let mut resp = resp;
    let upstream_upgrade = hyper::upgrade::on(&mut resp);
    let (mut parts, _) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers, true);
    add_via(&mut parts.headers);
    pending.event_mut().status = 101;
    let idle = state.config.idle_timeout;
    let tunnels_gauge = super::TunnelGauge::new(&state.gauges);
    let hard_stop = state.hard_stop.subscribe();
    tokio::spawn(async move {
        let _gauge = tunnels_gauge;
        match tokio::try_join!(client_upgrade, upstream_upgrade) {
            Ok((c, u)) => {
                tunnel::splice(
                    TokioIo::new(c),
                    TokioIo::new(u),
                    &mut pending,
                    idle,
                    None,
                    hard_stop,
                )
                .await;
            }
            Err(_) => pending.event_mut().error = Some("upstream-protocol"),
        }
        pending.complete();
    });
    Response::from_parts(parts, responses::empty())
}
