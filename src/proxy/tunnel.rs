//! CONNECT tunnels (Tier A: no decryption).
//!
//! Identify; admit the CONNECT authority (rules, port, an IP literal);
//! resolve and admit the addresses; dial; answer 200; then peek the TLS
//! ClientHello and run the policy's SNI stage on its server name, on the
//! same snapshot. Then the bytes are spliced both ways under the policy's
//! watch ([`super::splice`]): re-admitted on every reload and at every
//! time-window edge, and closed if refused. Everything after the
//! ClientHello ([`after_hello`]) is shared with transparent TLS
//! connections, which arrive with their ClientHello already read.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use tokio::io::AsyncWriteExt;

use super::context::{apply_keeping_groups, Exchange};
use super::responses;
use super::sni::{self, Hello, Peeked};
use super::splice::{splice, Admitted, Signals, Watch};
use super::upstream::{open, BoxIo, ProxyBody};
use super::ProxyState;
use crate::event::Kind;
use crate::outcome::ErrorKind;
use crate::policy::{normalize_host, sni_stage, Admission, Class, Entry, Facts, Stage};

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

    // Resolve a name, then admit the addresses it resolved to.
    let dest = match ex
        .resolve_and_admit(state, &host, port, &admission.decision)
        .await
    {
        Ok(d) => d,
        Err(stop) => return ex.stop(state, stop),
    };
    let opened = match open(state, &dest, &host, port).await {
        Ok(o) => o,
        Err(e) => return ex.fail_upstream(state, &e),
    };

    ex.event.status = 200;
    let (pending, policy) = ex.into_pending(state);
    let on_upgrade = super::conn::on_upgrade(&mut req);
    let admitted = Admitted {
        entry: Entry::Connect,
        client: peer.ip(),
        user: identity.user,
        host,
        port,
        resolved: opened.resolved,
        sni: None,
        activity: None,
        resolved_by_parent: dest.resolved_by_parent,
        original: None,
    };
    let st = state.clone();
    state.spawn_tunnel(async move {
        let parts = TunnelParts {
            on_upgrade,
            upstream: opened.stream,
            tunnel: Tunnel {
                policy,
                pending,
                admitted,
                admission,
                signals,
            },
        };
        run_tunnel(st, parts).await;
    });
    responses::connect_established()
}

/// An admitted tunnel, handed to its task after the 200.
struct TunnelParts {
    on_upgrade: super::conn::OnClientUpgrade,
    upstream: BoxIo,
    tunnel: Tunnel,
}

/// An admitted tunnel with its upstream open, waiting for its first bytes.
pub(crate) struct Tunnel {
    /// The snapshot the tunnel was decided on; the SNI stage uses it too.
    pub policy: Arc<crate::policy::Policy>,
    pub pending: super::body::Pending,
    pub admitted: Admitted,
    pub admission: Admission,
    pub signals: Signals,
}

/// The tunnel after its 200: the ClientHello, then [`after_hello`].
async fn run_tunnel(state: Arc<ProxyState>, parts: TunnelParts) {
    let TunnelParts {
        on_upgrade,
        upstream,
        mut tunnel,
    } = parts;
    let upgraded = match on_upgrade.await {
        Ok(u) => u,
        Err(_) => {
            tunnel.pending.event_mut().error = Some(ErrorKind::ClientClosed);
            tunnel.pending.complete();
            return;
        }
    };
    let mut client = upgraded;
    let mut first = Vec::new();
    let limit = tunnel.policy.tunnels.sni_timeout;
    let peeked = sni::peek(&mut client, &mut first, limit).await;
    // A refused CONNECT tunnel is simply closed.
    let _ = after_hello(state, tunnel, client, upstream, first, peeked).await;
}

/// A tunnel once the client's first bytes are in (`first`, judged as
/// `peeked`): the SNI stage on the ClientHello's server name, on the
/// tunnel's snapshot; then those bytes go upstream and the two sides are
/// spliced under the policy's watch. Shared by CONNECT tunnels and
/// transparent TLS connections. Returns the client's stream, unused, when
/// the tunnel ended before anything was relayed (refused, or the upstream
/// failed), so that the caller closes it its own way; the record is
/// complete either way.
pub(crate) async fn after_hello<C>(
    state: Arc<ProxyState>,
    tunnel: Tunnel,
    client: C,
    mut upstream: BoxIo,
    first: Vec<u8>,
    peeked: Peeked,
) -> Option<C>
where
    C: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let Tunnel {
        policy,
        mut pending,
        mut admitted,
        admission,
        signals,
    } = tunnel;
    pending
        .meter
        .up
        .fetch_add(first.len() as u64, Ordering::Relaxed);

    // Second look, on the same snapshot: the server name in the ClientHello.
    if let Peeked::Hello(Hello::Tls(Some(name))) = &peeked {
        pending.event_mut().sni = Some(name.clone());
        let facts = Facts {
            entry: admitted.entry,
            client: admitted.client,
            user: admitted.user.as_deref(),
            host: &admitted.host,
            port: admitted.port,
            resolved: (!admitted.resolved_by_parent).then_some(&admitted.resolved[..]),
            sni: Some(name),
            listeners: &state.listeners,
            activity: admitted.activity,
            resolved_by_parent: admitted.resolved_by_parent,
            original: admitted.original,
        };
        let mut adm = sni_stage(&policy, &facts, name, admission, state.config.clock.now());
        debug_assert_eq!(adm.stage, Stage::Sni);
        let ev = pending.event_mut();
        if !adm.decision.groups.is_empty() {
            ev.groups = std::mem::take(&mut adm.decision.groups);
        }
        apply_keeping_groups(ev, &adm.decision);
        ev.foreground = adm.decision.class == Some(Class::Primary);
        if adm.refuses() {
            ev.error = Some(ErrorKind::TunnelClosedByPolicy);
            pending.complete();
            return Some(client);
        }
        admitted.sni = Some(name.clone());
    }
    if matches!(peeked, Peeked::Closed) && first.is_empty() {
        pending.complete();
        return None;
    }
    if !first.is_empty() && upstream.write_all(&first).await.is_err() {
        pending.event_mut().error = Some(ErrorKind::UpstreamConnect);
        pending.complete();
        return Some(client);
    }
    // The hello is upstream now; the tunnel must not keep it for its life.
    drop(first);
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
    None
}
