//! CONNECT tunnels (Tier A: no decryption).
//!
//! Decide on the CONNECT authority; dial; answer 200; then peek the TLS
//! ClientHello and decide again on its server name. A name that differs
//! from the CONNECT host is domain fronting, handled by the policy's
//! `tunnels.sni_mismatch` action. Then the bytes are spliced both ways,
//! counted, with an idle timeout, and re-checked whenever the policy is
//! reloaded: a tunnel the new policy refuses is closed.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

use super::body::{Meter, Pending};
use super::handler::{apply_decision, finish_now, new_event};
use super::identify::identify;
use super::responses::{self, RequestView};
use super::sni::{self, Hello, Peeked};
use super::upstream::{DialError, ProxyBody};
use super::ProxyState;
use crate::event::Kind;
use crate::policy::{decide, normalize_host, Action, Decision, Host, Reason, RequestFacts};
use crate::reload::PolicyHandle;

pub async fn handle_connect(
    state: &Arc<ProxyState>,
    peer: SocketAddr,
    mut req: Request<Incoming>,
) -> Response<ProxyBody> {
    let started = Instant::now();
    let policy = state.policy.load();
    let authority = req.uri().authority().cloned();
    let parsed = authority.as_ref().and_then(|a| {
        let port = a.port_u16()?;
        let host = normalize_host(a.host()).ok()?;
        Some((host, port))
    });
    let Some((host, port)) = parsed else {
        let raw = authority
            .map(|a| a.to_string())
            .unwrap_or_else(|| "-".into());
        let mut ev = new_event(Kind::Tunnel, peer, req.method(), raw, 0);
        apply_decision(&mut ev, &Decision::builtin(Reason::BadRequest));
        let resp = responses::error(
            StatusCode::BAD_REQUEST,
            "bad-request",
            "CONNECT needs host:port",
        );
        return finish_now(state, ev, started, resp);
    };
    let mut ev = new_event(Kind::Tunnel, peer, req.method(), host.to_string(), port);
    let view = RequestView {
        navigation: false,
        host: &host.to_string(),
        connect: true,
    };

    let identity = match identify(state, &policy, peer.ip(), req.headers()).await {
        Ok(i) => i,
        Err(reason) => {
            let d = Decision::builtin(reason);
            apply_decision(&mut ev, &d);
            return finish_now(state, ev, started, responses::refusal(&d, &policy, &view));
        }
    };
    ev.user = identity.user.clone();
    ev.auth = identity.auth;

    let facts = RequestFacts {
        client: peer.ip(),
        user: identity.user.as_deref(),
        host: &host,
        port,
    };
    let t0 = Instant::now();
    let mut decision = decide(&policy, &facts, jiff::Timestamp::now());
    state.metrics.observe_decision_time(t0.elapsed());
    if !policy.tunnel_port_allowed(port) && !decision.refuses() {
        decision = decision.refused_for(Reason::PortNotAllowed);
    }
    apply_decision(&mut ev, &decision);
    ev.foreground = decision.class == Some(crate::policy::Class::Primary);
    if decision.refuses() {
        return finish_now(
            state,
            ev,
            started,
            responses::refusal(&decision, &policy, &view),
        );
    }

    let dialed = match state.dialer.dial(&host.to_string(), port).await {
        Ok(d) => d,
        Err(e) => {
            let resp = match &e {
                DialError::Private(_) | DialError::SelfLoop(_) => {
                    let reason = if matches!(e, DialError::SelfLoop(_)) {
                        Reason::DestinationSelf
                    } else {
                        Reason::DestinationPrivate
                    };
                    let d = decision.refused_for(reason);
                    apply_decision(&mut ev, &d);
                    responses::refusal(&d, &policy, &view)
                }
                other => {
                    ev.error = Some(other.label());
                    let status = if other.label() == "upstream-timeout" {
                        StatusCode::GATEWAY_TIMEOUT
                    } else {
                        StatusCode::BAD_GATEWAY
                    };
                    responses::error(status, other.label(), &other.to_string())
                }
            };
            return finish_now(state, ev, started, resp);
        }
    };

    ev.status = 200;
    let mut pending = Pending::new(ev, started, state.recorder.clone());
    let on_upgrade = hyper::upgrade::on(&mut req);
    let gauge = super::TunnelGauge::new(&state.gauges);
    let state = state.clone();
    let user = identity.user;
    tokio::spawn(async move {
        let _gauge = gauge;
        let upgraded = match on_upgrade.await {
            Ok(u) => u,
            Err(_) => {
                pending.event_mut().error = Some("client-closed");
                pending.complete();
                return;
            }
        };
        let mut client = TokioIo::new(upgraded);
        let mut upstream = dialed.stream;
        let policy = state.policy.load();

        // Second look: the server name in the ClientHello.
        let mut first = Vec::new();
        let peeked = sni::peek(&mut client, &mut first, policy.tunnels.sni_timeout).await;
        pending
            .meter
            .up
            .fetch_add(first.len() as u64, Ordering::Relaxed);
        let mut decided_host = host.clone();
        if let Peeked::Hello(Hello::Tls(Some(name))) = &peeked {
            pending.event_mut().sni = Some(name.clone());
            if let Ok(sni_host) = normalize_host(name) {
                let fronting = matches!(host, Host::Name(_)) && sni_host != host;
                if fronting && policy.tunnels.sni_mismatch == Action::Block {
                    let d = decision.refused_for(Reason::SniMismatch);
                    apply_decision(pending.event_mut(), &d);
                    pending.event_mut().error = Some("tunnel-closed-by-policy");
                    pending.complete();
                    return;
                }
                let facts = RequestFacts {
                    client: peer.ip(),
                    user: user.as_deref(),
                    host: &sni_host,
                    port,
                };
                let d = decide(&policy, &facts, jiff::Timestamp::now());
                apply_decision(pending.event_mut(), &d);
                pending.event_mut().foreground = d.class == Some(crate::policy::Class::Primary);
                if d.refuses() {
                    pending.event_mut().error = Some("tunnel-closed-by-policy");
                    pending.complete();
                    return;
                }
                decided_host = sni_host;
            }
        }
        if matches!(peeked, Peeked::Closed) && first.is_empty() {
            pending.complete();
            return;
        }
        if !first.is_empty() && upstream.write_all(&first).await.is_err() {
            pending.event_mut().error = Some("upstream-connect");
            pending.complete();
            return;
        }
        let recheck = Recheck {
            handle: state.policy.clone(),
            peer,
            user,
            host: decided_host,
            port,
        };
        splice(
            client,
            upstream,
            &mut pending,
            state.config.idle_timeout,
            Some(recheck),
            state.hard_stop.subscribe(),
        )
        .await;
        pending.complete();
    });
    Response::builder()
        .status(StatusCode::OK)
        .body(responses::empty())
        .expect("valid 200 response")
}

/// What a tunnel needs to be decided again after a policy reload.
pub struct Recheck {
    pub handle: Arc<PolicyHandle>,
    pub peer: SocketAddr,
    pub user: Option<String>,
    pub host: Host,
    pub port: u16,
}

impl Recheck {
    fn still_allowed(&self) -> Option<Decision> {
        let policy = self.handle.load();
        let facts = RequestFacts {
            client: self.peer.ip(),
            user: self.user.as_deref(),
            host: &self.host,
            port: self.port,
        };
        let d = decide(&policy, &facts, jiff::Timestamp::now());
        d.refuses().then_some(d)
    }
}

/// Copies bytes both ways until either side closes, the tunnel is idle for
/// `idle`, or a reload makes the policy refuse it.
pub async fn splice<A, B>(
    client: A,
    upstream: B,
    pending: &mut Pending,
    idle: Duration,
    recheck: Option<Recheck>,
    mut hard_stop: tokio::sync::watch::Receiver<bool>,
) where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let mut c = CountedIo {
        inner: client,
        meter: pending.meter.clone(),
        up: true,
    };
    let mut u = CountedIo {
        inner: upstream,
        meter: pending.meter.clone(),
        up: false,
    };
    let mut generation = recheck.as_ref().map(|r| r.handle.subscribe());
    // 64 KiB buffers: fewer, larger reads and writes for bulk tunnels.
    let copy = tokio::io::copy_bidirectional_with_sizes(&mut c, &mut u, 64 * 1024, 64 * 1024);
    tokio::pin!(copy);
    let mut ticker = tokio::time::interval(idle.max(Duration::from_millis(10)));
    ticker.tick().await;
    let mut last_total = u64::MAX;
    loop {
        tokio::select! {
            r = &mut copy => {
                if r.is_err() && pending.event_mut().error.is_none() {
                    // A reset from either side is an ordinary way for a tunnel to end.
                }
                break;
            }
            changed = async {
                match generation.as_mut() {
                    Some(g) => g.changed().await,
                    None => std::future::pending().await,
                }
            } => {
                if changed.is_err() {
                    generation = None;
                    continue;
                }
                if let Some(d) = recheck.as_ref().and_then(Recheck::still_allowed) {
                    apply_decision(pending.event_mut(), &d);
                    pending.event_mut().error = Some("tunnel-refused-after-reload");
                    break;
                }
            }
            _ = hard_stop.wait_for(|s| *s) => {
                pending.event_mut().error = Some("shutdown");
                break;
            }
            _ = ticker.tick() => {
                let total = pending.meter.up.load(Ordering::Relaxed) + pending.meter.down.load(Ordering::Relaxed);
                if total == last_total {
                    pending.event_mut().error = Some("idle-timeout");
                    break;
                }
                last_total = total;
            }
        }
    }
}

/// A stream that counts the bytes read from it.
struct CountedIo<S> {
    inner: S,
    meter: Arc<Meter>,
    /// Bytes read from this side travel upstream (the client side).
    up: bool,
}

impl<S: AsyncRead + Unpin> AsyncRead for CountedIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = buf.filled().len() - before;
        if read > 0 {
            let n = if self.up {
                &self.meter.up
            } else {
                &self.meter.down
            };
            n.fetch_add(read as u64, Ordering::Relaxed);
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for CountedIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
