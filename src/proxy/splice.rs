//! Splicing an open tunnel or upgraded connection, and keeping it under the
//! policy while it lives.
//!
//! Bytes are copied both ways and counted ([`super::copy`], with buffers
//! lent only while data flows) until either side closes, the connection is
//! idle for `--idle-timeout`, the drain time runs out, or the policy
//! refuses it: on every reload and at every time-window edge (the
//! [`super::clock`] ticks) the tunnel is admitted again with all its facts
//! by [`crate::policy::admit`], and closed and recorded if refused.
//!
//! A connection under a daily budget is charged while it carries traffic
//! (every [`BUDGET_TICK`], and when it ends), and looked at again when its
//! budget can run out: at the earliest instant the time left allows
//! (planned from the budget left, like a session timeout, not found by
//! polling), when the bytes it moved reach what was left, and when anyone's
//! budget runs out (it may be this person's, spent through another
//! connection). A connection whose budget ran out is closed and recorded
//! (`tunnel-budget-exhausted`).

use std::net::IpAddr;
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

/// The refusal, if the current policy refuses this connection now (its
/// budget included: how much the person spent is looked up again).
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
        let mut adm = admit(&policy, &facts, state.config.clock.now());
        let person = crate::warn::Person::of(a.user.as_deref(), a.client);
        state.budgets.settle(&policy, a.entry, person, &mut adm);
        adm.refuses().then_some(adm.decision)
    }
}

/// How often an open tunnel under a budget is charged while it carries
/// traffic (a time hit when bytes moved, and the bytes). Minutes between
/// two hits up to the idle gap (5 minutes) apart count in full, so this
/// loses nothing; the close when a budget runs out is timed separately.
pub const BUDGET_TICK: Duration = Duration::from_secs(20);

/// An open connection under a daily budget: when it can run out next.
struct Budgeted {
    /// Someone's budget ran out (maybe this person's).
    exhausted: tokio::sync::watch::Receiver<u64>,
    /// The test clock moved.
    jumps: tokio::sync::watch::Receiver<u64>,
    /// The earliest the time budget can run out (every minute from now on
    /// active), or the day's end; planned again when it passes.
    deadline: Option<tokio::time::Instant>,
    charging: tokio::time::Interval,
}

impl Budgeted {
    /// Plans the next look: the time deadline, and the bytes the tunnel
    /// may move before the volume budget can be spent.
    fn plan(&mut self, state: &ProxyState, pending: &Pending) {
        let Some(charge) = &pending.charge else {
            return;
        };
        let (deadline, bytes) = charge.left();
        self.deadline = deadline.map(|t| state.config.clock.instant_of(t) + EDGE);
        pending
            .meter
            .set_allowance(bytes.map(|b| pending.meter.total().saturating_add(b)));
    }
}

/// A little past a budget's deadline, so the look taken then is on the
/// far side of the minute edge.
const EDGE: Duration = Duration::from_millis(5);

/// What woke the loop.
enum Wake {
    Done,
    Look(ErrorKind),
    Charge,
    Plan,
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
    let meter = pending.meter.clone();
    let mut budgeted = match (&watch, &pending.charge) {
        (Some((state, _)), Some(_)) => {
            let mut charging = tokio::time::interval(BUDGET_TICK);
            charging.tick().await;
            let mut b = Budgeted {
                exhausted: state.budgets.subscribe(),
                jumps: state.config.clock.jumps(),
                deadline: None,
                charging,
            };
            b.plan(state, pending);
            Some(b)
        }
        _ => None,
    };
    let copy = Bidi::new(&mut client, &mut upstream, meter.clone());
    tokio::pin!(copy);
    let mut ticker = tokio::time::interval(idle.max(Duration::from_millis(10)));
    ticker.tick().await;
    let mut last_total = u64::MAX;
    loop {
        let wake = tokio::select! {
            // A reset from either side is an ordinary way for a tunnel to end.
            _ = &mut copy => Wake::Done,
            changed = changed(&mut generation) => {
                if changed.is_err() {
                    generation = None;
                    continue;
                }
                Wake::Look(ErrorKind::TunnelRefusedAfterReload)
            }
            changed = changed(&mut ticks) => {
                if changed.is_err() {
                    ticks = None;
                    continue;
                }
                Wake::Look(ErrorKind::TunnelRefusedOnSchedule)
            }
            _ = hard_stop.wait_for(|s| *s) => {
                pending.event_mut().error = Some(ErrorKind::Shutdown);
                break;
            }
            _ = ticker.tick() => {
                let total = meter.total();
                if total == last_total {
                    pending.event_mut().error = Some(ErrorKind::IdleTimeout);
                    break;
                }
                last_total = total;
                continue;
            }
            // Budgets: someone's ran out, this one's deadline or
            // allowance came, or it is time to charge what flowed.
            w = next_budget(budgeted.as_mut(), &meter) => w,
        };
        if let Some(charge) = pending.charge.as_mut() {
            // What flowed until now counts before anything is decided.
            charge.account(meter.total());
        }
        let refused_because = match wake {
            Wake::Done => break,
            Wake::Charge => continue,
            Wake::Plan => ErrorKind::TunnelBudgetExhausted,
            Wake::Look(k) => k,
        };
        if let Some(mut d) = watch.as_ref().and_then(|(s, a)| refusal(s, a)) {
            let ev = pending.event_mut();
            ev.groups = std::mem::take(&mut d.groups);
            apply_keeping_groups(ev, &d);
            ev.error = Some(if d.reason == crate::policy::Reason::BudgetExhausted {
                ErrorKind::TunnelBudgetExhausted
            } else {
                refused_because
            });
            break;
        }
        if let (Some(b), Some((state, _))) = (budgeted.as_mut(), &watch) {
            b.plan(state, pending);
        }
    }
}

/// The next budget event of a connection under a budget (never, without).
async fn next_budget(b: Option<&mut Budgeted>, meter: &super::body::Meter) -> Wake {
    let Some(b) = b else {
        return std::future::pending().await;
    };
    let deadline = async {
        match b.deadline {
            Some(d) => tokio::time::sleep_until(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        Ok(()) = b.exhausted.changed() => Wake::Look(ErrorKind::TunnelBudgetExhausted),
        _ = deadline => Wake::Look(ErrorKind::TunnelBudgetExhausted),
        _ = meter.over_allowance() => Wake::Look(ErrorKind::TunnelBudgetExhausted),
        Ok(()) = b.jumps.changed() => Wake::Plan,
        _ = b.charging.tick() => Wake::Charge,
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
