//! CONNECT tunnels (Tier A: no decryption).
//!
//! Identify; admit the CONNECT authority (rules, port, an IP literal);
//! resolve and admit the addresses; dial; answer 200; then peek the TLS
//! ClientHello and run the policy's SNI stage on its server name, on the
//! same snapshot. Then the bytes are spliced both ways under the policy's
//! watch ([`super::splice`]): re-admitted on every reload and at every
//! time-window edge, and closed if refused.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;

use super::context::{apply_keeping_groups, Exchange};
use super::responses;
use super::sni::{self, Hello, Peeked};
use super::splice::{splice, Admitted, Signals, Watch};
use super::upstream::{connect, ProxyBody};
use super::ProxyState;
use crate::event::Kind;
use crate::outcome::{ErrorKind, WarnOutcome};
use crate::policy::{normalize_host, sni_stage, Admission, Class, Entry, Facts, Stage, Warning};

pub async fn handle_connect(
    state: &Arc<ProxyState>,
    peer: SocketAddr,
    mut req: Request<Incoming>,
) -> Response<ProxyBody> {
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
        let ex = Exchange::begin(state, Kind::Tunnel, peer, req.method(), raw, 0);
        return ex.bad_request(
            state,
            StatusCode::BAD_REQUEST,
            None,
            "CONNECT needs host:port",
        );
    };
    let signals = Signals::subscribe(state);
    let mut ex = Exchange::begin(
        state,
        Kind::Tunnel,
        peer,
        req.method(),
        host.to_string(),
        port,
    );

    let (identity, mut admission) = match ex
        .identify_and_admit(state, req.headers(), Entry::Connect, &host, port)
        .await
    {
        Ok(x) => x,
        Err(refusal) => return ex.refuse(state, refusal),
    };
    ex.event.foreground = admission.decision.class == Some(Class::Primary);
    if admission.refuses() {
        return ex.refuse(state, admission.decision);
    }
    ex.apply(&mut admission.decision);
    ex.event.warn = unshown(&admission);

    // Resolve a name, then admit the addresses it resolved to.
    let addrs = match ex
        .resolve_and_admit(state, &host, port, &admission.decision)
        .await
    {
        Ok(a) => a,
        Err(stop) => return ex.stop(state, stop),
    };
    let dialed = match connect(&addrs, port, state.config.connect_timeout, &state.metrics).await {
        Ok(d) => d,
        Err(e) => return ex.fail(state, e.kind(), &e.to_string()),
    };

    ex.event.status = 200;
    let (pending, policy) = ex.into_pending(state);
    let on_upgrade = hyper::upgrade::on(&mut req);
    let admitted = Admitted {
        entry: Entry::Connect,
        client: peer.ip(),
        user: identity.user,
        host,
        port,
        resolved: vec![dialed.addr.ip()],
        sni: None,
    };
    let st = state.clone();
    state.spawn_tunnel(async move {
        let parts = TunnelParts {
            policy,
            pending,
            on_upgrade,
            upstream: dialed.stream,
            admitted,
            admission,
            signals,
        };
        run_tunnel(st, parts).await;
    });
    responses::connect_established()
}

/// A warn rule on a tunnel that is not inspected: no page can be shown in
/// it, so it passes, recorded `warn: unshown`.
fn unshown(adm: &Admission) -> Option<WarnOutcome> {
    (adm.warning == Some(Warning::Unshown)).then_some(WarnOutcome::Unshown)
}

/// An admitted tunnel, handed to its task after the 200.
struct TunnelParts {
    /// The snapshot the CONNECT was decided on; the SNI stage uses it too.
    policy: Arc<crate::policy::Policy>,
    pending: super::body::Pending,
    on_upgrade: hyper::upgrade::OnUpgrade,
    upstream: tokio::net::TcpStream,
    admitted: Admitted,
    admission: Admission,
    signals: Signals,
}

/// The tunnel after its 200: the SNI stage, then the splice.
async fn run_tunnel(state: Arc<ProxyState>, parts: TunnelParts) {
    let TunnelParts {
        policy,
        mut pending,
        on_upgrade,
        mut upstream,
        mut admitted,
        admission,
        signals,
    } = parts;
    let upgraded = match on_upgrade.await {
        Ok(u) => u,
        Err(_) => {
            pending.event_mut().error = Some(ErrorKind::ClientClosed);
            pending.complete();
            return;
        }
    };
    let mut client = TokioIo::new(upgraded);

    // Second look, on the same snapshot: the server name in the ClientHello.
    let mut first = Vec::new();
    let peeked = sni::peek(&mut client, &mut first, policy.tunnels.sni_timeout).await;
    pending
        .meter
        .up
        .fetch_add(first.len() as u64, Ordering::Relaxed);
    if let Peeked::Hello(Hello::Tls(Some(name))) = &peeked {
        pending.event_mut().sni = Some(name.clone());
        let facts = Facts {
            entry: admitted.entry,
            client: admitted.client,
            user: admitted.user.as_deref(),
            host: &admitted.host,
            port: admitted.port,
            resolved: Some(&admitted.resolved),
            sni: Some(name),
            listeners: &state.listeners,
            acknowledged: None,
        };
        let mut adm = sni_stage(&policy, &facts, name, admission, state.config.clock.now());
        debug_assert!(matches!(adm.stage, Stage::Sni | Stage::Warn));
        let ev = pending.event_mut();
        if !adm.decision.groups.is_empty() {
            ev.groups = std::mem::take(&mut adm.decision.groups);
        }
        apply_keeping_groups(ev, &adm.decision);
        ev.foreground = adm.decision.class == Some(Class::Primary);
        ev.warn = unshown(&adm);
        if adm.refuses() {
            ev.error = Some(ErrorKind::TunnelClosedByPolicy);
            pending.complete();
            return;
        }
        admitted.sni = Some(name.clone());
    }
    if matches!(peeked, Peeked::Closed) && first.is_empty() {
        pending.complete();
        return;
    }
    if !first.is_empty() && upstream.write_all(&first).await.is_err() {
        pending.event_mut().error = Some(ErrorKind::UpstreamConnect);
        pending.complete();
        return;
    }
    let watch = Watch::new(state.clone(), admitted, signals);
    splice(
        client,
        upstream,
        &mut pending,
        state.config.idle_timeout,
        Some(watch),
        state.hard_stop.subscribe(),
    )
    .await;
    pending.complete();
}
