//! CONNECT tunnels.
//!
//! Identify; admit the CONNECT authority (rules, port, an IP literal);
//! resolve and admit the addresses; dial; answer 200; then peek the TLS
//! ClientHello and run the policy's SNI stage on its server name, on the
//! same snapshot. Then, as the admission's inspection verdict says, either
//! the bytes are spliced both ways under the policy's watch
//! ([`super::splice`]; Tier A: re-admitted on every reload and at every
//! time-window edge, and closed if refused), or the tunnel is decrypted
//! ([`super::inspect::conn`]; Tier B). A tunnel a rule refuses is opened
//! (without dialing) only when the verdict says to inspect it: that is how
//! the refusal page reaches the browser over HTTPS. Transparent TLS
//! connections, which arrive with their ClientHello already read, share
//! the undecrypted path ([`after_hello`]).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use tokio::io::AsyncWriteExt;

use super::context::{apply_keeping_groups, Exchange};
use super::identify::Identity;
use super::inspect::conn;
use super::responses;
use super::sni::{self, Hello, Peeked};
use super::splice::{splice, Admitted, Signals, Watch};
use super::upstream::{open, BoxIo, ProxyBody};
use super::ProxyState;
use crate::event::{Kind, Tls};
use crate::outcome::{ErrorKind, WarnOutcome};
use crate::policy::admit::decide_inspection;
use crate::policy::{
    normalize_host, sni_stage, Admission, Class, Entry, Facts, InspectWhy, Stage, TlsHello, Warning,
};

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
        super::handler::host_text(&host),
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
    // A refused tunnel is opened only to show the refusal page inside it.
    let show_refusal = admission.refuses();
    if show_refusal && !(admission.inspect.inspect && state.inspector.is_some()) {
        return ex.refuse(state, admission.decision);
    }
    ex.apply(&mut admission.decision);
    ex.event.warn = unshown(&admission);

    let (opened, resolved_by_parent) = if show_refusal {
        (None, false)
    } else {
        // Resolve a name, then admit the addresses it resolved to.
        let dest = match ex
            .resolve_and_admit(state, &host, port, &admission.decision)
            .await
        {
            Ok(d) => d,
            Err(stop) => return ex.stop(state, stop),
        };
        match open(state, &dest, &host, port).await {
            Ok(o) => (Some(o), dest.resolved_by_parent),
            Err(e) => return ex.fail_upstream(state, &e),
        }
    };

    ex.event.status = 200;
    let (pending, policy) = ex.into_pending(state);
    let on_upgrade = super::conn::on_upgrade(&mut req);
    let admitted = Admitted {
        entry: Entry::Connect,
        client: peer.ip(),
        user: identity.user.clone(),
        host,
        port,
        resolved: opened
            .as_ref()
            .map(|o| o.resolved.clone())
            .unwrap_or_default(),
        sni: None,
        hello: None,
        activity: None,
        resolved_by_parent,
        original: None,
    };
    let parts = TunnelParts {
        on_upgrade,
        upstream: opened.map(|o| o.stream),
        tunnel: Tunnel {
            policy,
            pending,
            admitted,
            admission,
            signals,
            identity,
            peer,
        },
    };
    // Spawned as it is: a block awaiting it would hold its parts twice.
    state.spawn_tunnel(run_tunnel(state.clone(), parts));
    responses::connect_established()
}

/// An admitted tunnel, handed to its task after the 200.
struct TunnelParts {
    on_upgrade: super::conn::OnClientUpgrade,
    /// The dialed origin; `None` for a refused tunnel opened to show the
    /// refusal page (never dialed).
    upstream: Option<BoxIo>,
    tunnel: Tunnel,
}

/// The tunnel after its 200: the ClientHello, then [`after_hello`].
async fn run_tunnel(state: Arc<ProxyState>, parts: TunnelParts) {
    let TunnelParts {
        on_upgrade,
        upstream,
        mut tunnel,
    } = parts;
    let mut client = match on_upgrade.await {
        Ok(u) => u,
        Err(_) => {
            tunnel.pending.event_mut().error = Some(ErrorKind::ClientClosed);
            tunnel.pending.complete();
            return;
        }
    };
    let mut first = Vec::new();
    let limit = tunnel.policy.tunnels.sni_timeout;
    let peeked = sni::peek(&mut client, &mut first, limit).await;
    // A refused CONNECT tunnel is simply closed.
    let _ = after_hello(state, tunnel, client, upstream, first, peeked).await;
}

/// A warn rule on a tunnel that is not inspected: no page can be shown in
/// it, so it passes, recorded `warn: unshown`.
pub(crate) fn unshown(adm: &Admission) -> Option<WarnOutcome> {
    (adm.warning == Some(Warning::Unshown)).then_some(WarnOutcome::Unshown)
}

/// An admitted tunnel, waiting for its first bytes.
pub(crate) struct Tunnel {
    /// The snapshot the tunnel was decided on; the SNI stage uses it too.
    pub policy: Arc<crate::policy::Policy>,
    pub pending: super::body::Pending,
    pub admitted: Admitted,
    pub admission: Admission,
    pub signals: Signals,
    /// Who the client is, for the requests of an inspected tunnel.
    pub identity: Identity,
    pub peer: SocketAddr,
}

/// A tunnel once the client's first bytes are in (`first`, judged as
/// `peeked`). Shared by CONNECT tunnels and transparent TLS connections.
///
/// The SNI stage runs on the ClientHello's server name and what the hello
/// offers, on the tunnel's snapshot. Then, as the verdict says, the tunnel
/// is decrypted ([`conn::run`]; also how a refusal page reaches the
/// browser over HTTPS, on a tunnel that was never dialed), or the bytes go
/// upstream and the two sides are spliced under the policy's watch.
///
/// Returns the client's stream, unused, when the tunnel ended before
/// anything was relayed (refused, or the upstream failed), so that the
/// caller closes it its own way; the record is complete either way.
pub(crate) async fn after_hello<C>(
    state: Arc<ProxyState>,
    tunnel: Tunnel,
    client: C,
    upstream: Option<BoxIo>,
    first: Vec<u8>,
    peeked: Peeked,
) -> Option<C>
where
    C: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let Tunnel {
        policy,
        mut pending,
        mut admitted,
        mut admission,
        signals,
        identity,
        peer,
    } = tunnel;
    pending
        .meter
        .up
        .fetch_add(first.len() as u64, Ordering::Relaxed);

    // Second look, on the same snapshot: the server name in the ClientHello.
    let hello = match &peeked {
        Peeked::Hello(Hello::Tls(h)) => Some(h.clone()),
        _ => None,
    };
    if let Some(h) = &hello {
        let tls = TlsHello {
            ech: h.ech,
            offers_http: h.offers_http(),
            learned_pinned: match (&h.server_name, &state.inspector) {
                (Some(name), Some(i)) => i.is_pinned(name),
                _ => false,
            },
        };
        admitted.hello = Some(tls);
        let facts = Facts {
            entry: admitted.entry,
            client: admitted.client,
            user: admitted.user.as_deref(),
            host: &admitted.host,
            port: admitted.port,
            resolved: (!admitted.resolved_by_parent).then_some(&admitted.resolved[..]),
            sni: h.server_name.as_deref(),
            listeners: &state.listeners,
            hello: Some(tls),
            activity: None,
            resolved_by_parent: admitted.resolved_by_parent,
            original: admitted.original,
            acknowledged: None,
            spent: None,
        };
        admission = match h.server_name.as_deref() {
            Some(name) => {
                let adm = sni_stage(&policy, &facts, name, admission, state.config.clock.now());
                let adm = budget_after_sni(&state, &policy, &admitted, adm, &mut pending);
                debug_assert!(matches!(
                    adm.stage,
                    Stage::Sni | Stage::Budget | Stage::Warn
                ));
                admitted.sni = Some(name.to_string());
                pending.event_mut().sni = Some(name.to_string());
                adm
            }
            // No name: the first decision stands; the verdict on
            // inspection is the hello's (no name, no certificate).
            None => {
                decide_inspection(&policy, &facts, &mut admission);
                admission
            }
        };
        let ev = pending.event_mut();
        if !admission.decision.groups.is_empty() {
            ev.groups = std::mem::take(&mut admission.decision.groups);
        }
        apply_keeping_groups(ev, &admission.decision);
        ev.foreground = admission.decision.class == Some(Class::Primary);
        ev.warn = unshown(&admission);
    }

    // Decrypt, if the verdict says so (and a CA is configured).
    // A tunnel opened only to show a refusal is decrypted only while it is
    // refused: it was never dialed.
    let dialed_or_refused = upstream.is_some() || admission.refuses();
    if let (Some(inspector), Some(h), true) = (
        state.inspector.clone(),
        hello,
        admission.inspect.inspect && dialed_or_refused,
    ) {
        if let Some(name) = h.server_name.clone() {
            // Each request inside is charged itself: the container is not.
            pending.charge = None;
            let t = conn::Tunnel {
                policy,
                pending,
                client: Box::new(client),
                first,
                hello: h,
                name,
                host: admission.decided_host.clone(),
                port: admitted.port,
                upstream: upstream.map(|u| (u, admitted.resolved.first().copied())),
                identity,
                peer,
            };
            // Boxed: inline, the decrypting path would make every tunnel's
            // task as large as its own state (about 22 KiB), inspected or not.
            Box::pin(conn::run(state, inspector, t)).await;
            return None;
        }
    }
    let Some(mut upstream) = upstream.filter(|_| !admission.refuses()) else {
        // Refused: by the SNI stage, or opened to show a refusal that
        // cannot be shown (no server name, a pinned app, not HTTP).
        pending.event_mut().error = Some(ErrorKind::TunnelClosedByPolicy);
        pending.complete();
        return Some(client);
    };
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
    // A TLS tunnel passed through undecrypted says so (and why, if a rule
    // asked for inspection but the client pins its certificates).
    if admitted.hello.is_some() {
        pending.event_mut().tls = Some(match admission.inspect.why {
            InspectWhy::LearnedPinned => Tls::Pinned,
            _ => Tls::Passthrough,
        });
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
    None
}

/// The budget stage for a tunnel the SNI stage decided again (its server
/// name named another host, under another rule): the spent amount is
/// looked up for that rule, and the tunnel's charge follows the decision.
fn budget_after_sni(
    state: &Arc<ProxyState>,
    policy: &Arc<crate::policy::Policy>,
    admitted: &Admitted,
    mut adm: Admission,
    pending: &mut super::body::Pending,
) -> Admission {
    let person = crate::warn::Person::of(admitted.user.as_deref(), admitted.client);
    match state
        .budgets
        .settle(policy, admitted.entry, person, &mut adm)
    {
        Some(mut c) => {
            c.hit();
            pending.charge = Some(c);
        }
        // Decided by a rule without a budget now.
        None if adm.decision.budget.is_none() => pending.charge = None,
        None => {}
    }
    adm
}
