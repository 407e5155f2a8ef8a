//! Splicing an open tunnel or upgraded connection, and keeping it under the
//! policy while it lives.
//!
//! Bytes are copied both ways and counted ([`super::copy`], with buffers
//! lent only while data flows) until either side closes, the connection is
//! idle for `--idle-timeout`, the drain time runs out, or the policy
//! refuses it: on every reload and at every time-window edge (the
//! [`super::clock`] ticks) the tunnel is admitted again with all its facts
//! by [`crate::policy::admit`], and closed and recorded if refused.

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};

use super::body::Pending;
use super::context::apply_keeping_groups;
use super::copy::Bidi;
use super::ProxyState;
use crate::outcome::ErrorKind;
use crate::policy::{admit, Decision, Entry, Facts, Host};

/// The facts an open connection was admitted on, kept to admit it again.
#[derive(Debug, Clone)]
pub struct Admitted {
    pub entry: Entry,
    pub client: IpAddr,
    pub user: Option<String>,
    pub host: Host,
    pub port: u16,
    /// The address actually connected to (through the parent proxy: the
    /// addresses admitted, none when the parent resolves the name).
    pub resolved: Vec<IpAddr>,
    pub sni: Option<String>,
    /// What the request that opened it does (an upgraded request), or
    /// `None` for a tunnel.
    pub activity: Option<crate::policy::activity::Activity>,
    /// The parent proxy resolves the name (`--upstream-proxy-dns parent`).
    pub resolved_by_parent: bool,
    /// Where a redirected connection was going (transparent mode).
    pub original: Option<std::net::SocketAddr>,
    /// What the ClientHello showed, when one was seen.
    pub hello: Option<crate::policy::TlsHello>,
}

/// Admits an open connection again under the current policy and clock.
pub struct Watch {
    pub state: Arc<ProxyState>,
    pub admitted: Admitted,
    /// Reloads and window edges since the exchange began (subscribed
    /// before its snapshot was taken, so none is missed in between).
    signals: Signals,
}

/// Subscriptions to what can change a decision while a connection is open.
pub struct Signals {
    generation: tokio::sync::watch::Receiver<u64>,
    ticks: tokio::sync::watch::Receiver<u64>,
}

impl Signals {
    /// Subscribes now: call before loading the snapshot the exchange is
    /// decided on.
    pub fn subscribe(state: &ProxyState) -> Signals {
        Signals {
            generation: state.policy.subscribe(),
            ticks: state.ticks.subscribe(),
        }
    }
}

impl Watch {
    pub fn new(state: Arc<ProxyState>, admitted: Admitted, signals: Signals) -> Watch {
        Watch {
            state,
            admitted,
            signals,
        }
    }
}

/// The refusal, if the current policy refuses this connection now.
fn refusal(state: &ProxyState, a: &Admitted) -> Option<Decision> {
    {
        let policy = state.policy.load();
        let facts = Facts {
            entry: a.entry,
            client: a.client,
            user: a.user.as_deref(),
            host: &a.host,
            port: a.port,
            resolved: (!a.resolved_by_parent).then_some(&a.resolved[..]),
            sni: a.sni.as_deref(),
            listeners: &state.listeners,
            activity: a.activity,
            resolved_by_parent: a.resolved_by_parent,
            original: a.original,
            acknowledged: None,
            hello: a.hello,
            spent: None,
        };
        let adm = admit(&policy, &facts, state.config.clock.now());
        adm.refuses().then_some(adm.decision)
    }
}

/// Copies bytes both ways until either side closes, the connection is idle
/// for `idle`, the drain time runs out, or `watch` finds it refused.
pub async fn splice<A, B>(
    mut client: A,
    mut upstream: B,
    pending: &mut Pending,
    idle: Duration,
    watch: Option<Watch>,
    mut hard_stop: tokio::sync::watch::Receiver<bool>,
) where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let (watch, mut generation, mut ticks) = match watch {
        Some(w) => {
            let Watch {
                state,
                admitted,
                signals,
            } = w;
            (
                Some((state, admitted)),
                Some(signals.generation),
                Some(signals.ticks),
            )
        }
        None => (None, None, None),
    };
    let copy = Bidi::new(&mut client, &mut upstream, pending.meter.clone());
    tokio::pin!(copy);
    let mut ticker = tokio::time::interval(idle.max(Duration::from_millis(10)));
    ticker.tick().await;
    let mut last_total = u64::MAX;
    loop {
        let refused_because = tokio::select! {
            // A reset from either side is an ordinary way for a tunnel to end.
            _ = &mut copy => break,
            changed = changed(&mut generation) => {
                if changed.is_err() {
                    generation = None;
                    continue;
                }
                ErrorKind::TunnelRefusedAfterReload
            }
            changed = changed(&mut ticks) => {
                if changed.is_err() {
                    ticks = None;
                    continue;
                }
                ErrorKind::TunnelRefusedOnSchedule
            }
            _ = hard_stop.wait_for(|s| *s) => {
                pending.event_mut().error = Some(ErrorKind::Shutdown);
                break;
            }
            _ = ticker.tick() => {
                let m = &pending.meter;
                let total = m.up.load(Ordering::Relaxed) + m.down.load(Ordering::Relaxed);
                if total == last_total {
                    pending.event_mut().error = Some(ErrorKind::IdleTimeout);
                    break;
                }
                last_total = total;
                continue;
            }
        };
        if let Some(mut d) = watch.as_ref().and_then(|(s, a)| refusal(s, a)) {
            let ev = pending.event_mut();
            ev.groups = std::mem::take(&mut d.groups);
            apply_keeping_groups(ev, &d);
            ev.error = Some(refused_because);
            break;
        }
    }
}

async fn changed(
    rx: &mut Option<tokio::sync::watch::Receiver<u64>>,
) -> Result<(), tokio::sync::watch::error::RecvError> {
    match rx.as_mut() {
        Some(r) => r.changed().await,
        None => std::future::pending().await,
    }
}
