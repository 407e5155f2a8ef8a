//! Admission: everything socialgate decides about a request or a tunnel, in
//! one pure function.
//!
//! [`admit`] runs five stages over the facts the shell gathered, in order,
//! and stops at the first refusal:
//!
//! 1. **rules**: groups, the ordered rules and the defaults ([`decide`]);
//! 2. **port**: a CONNECT must name a port in `tunnels.ports`;
//! 3. **destination**: the address (an IP literal, or every address the name
//!    resolved to) must be public or listed in `destinations.allow`, and
//!    never one of socialgate's own listeners. When a parent proxy resolves
//!    names instead (`--upstream-proxy-dns parent`), names that only mean
//!    something inside a network (`localhost`, `.local`, `.internal`,
//!    single labels, numeric look-alikes) are refused. A redirected
//!    connection (transparent mode) must also be going where its `Host` or
//!    server name says: the original destination must be one of the name's
//!    addresses, on the same port (`destination-mismatch`);
//! 4. **sni**: the ClientHello's server name against the CONNECT authority
//!    (a different name is domain fronting, `tunnels.sni_mismatch`), and the
//!    rules again on that name;
//! 5. **warn**: what an enforced `warn` rule asks of traffic that passed the
//!    other stages ([`Warning`]): a request is held at the warning unless
//!    the person continued (a fact the shell looks up in its acknowledgement
//!    store), a CONNECT tunnel passes since no page can be shown inside it.
//!
//! With the tunnel's decision comes the **inspection** verdict ([`Inspect`]):
//! whether socialgate decrypts the tunnel, computed from the deciding rule's
//! `inspect:`, `inspection.default`, the never-inspect list, and what the
//! ClientHello showed (a server name, Encrypted Client Hello, an HTTP ALPN)
//! and whether the host was learned to pin its certificates.
//!
//! The proxy learns its facts over time: the DNS answer after the rules
//! passed, the ClientHello after the tunnel is open. It runs the later
//! stages ([`destination_stage`], [`sni_stage`]) as those facts arrive, on
//! the same policy snapshot, and [`warn_stage`] once it knows whether the
//! person acknowledged the warning; `explain`, `test` and `simulate` run [`admit`]
//! with all facts at once. Either way the same functions decide, so they
//! cannot disagree. No IO, no clock, no DNS here: the shell passes `now`
//! and the resolved addresses in.

use std::net::{IpAddr, SocketAddr};

use jiff::Timestamp;

use std::sync::Arc;

use super::activity::Activity;
use super::budget::{megabytes_words, minutes_words, BudgetState, BudgetView, SpentFact};
use super::compile::human_duration;
use super::decide::{decide_with, Decision, Reason, RequestFacts, TraceStep};
use super::host::{normalize_host, Host};
use super::{canonical_ip, Action, Mode, NeverHit, Policy};

/// How the traffic reached socialgate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// A plain-HTTP request in absolute form.
    Request,
    /// A CONNECT tunnel.
    Connect,
}

/// Everything the shell knows about a request or tunnel when it asks.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    pub entry: Entry,
    pub client: IpAddr,
    /// The authenticated user, if any.
    pub user: Option<&'a str>,
    /// The normalised host of the request target or CONNECT authority.
    pub host: &'a Host,
    pub port: u16,
    /// The addresses `host` resolved to; `None` when not resolved (yet).
    /// Ignored for IP literals, which are their own address.
    pub resolved: Option<&'a [IpAddr]>,
    /// The server name of the tunnel's ClientHello, as sent; `None` when no
    /// ClientHello was seen (yet) or it carried no name.
    pub sni: Option<&'a str>,
    /// socialgate's own listening addresses: never a destination.
    pub listeners: &'a [SocketAddr],
    /// What the request does (from activities.yaml); `None` where it cannot
    /// be seen: a tunnel, before or without inspection.
    pub activity: Option<Activity>,
    /// The name is resolved by a parent proxy, not by socialgate
    /// (`--upstream-proxy-dns parent`): its addresses are never known here.
    pub resolved_by_parent: bool,
    /// Where a redirected connection was going (transparent mode: the
    /// socket's original destination); `None` for proxy clients.
    pub original: Option<SocketAddr>,
    /// Whether the person continued past the deciding `warn` rule's warning
    /// for this platform within `warn.remember`; `None` when not looked up
    /// (yet). Only asked when a warn rule decides.
    pub acknowledged: Option<bool>,
    /// What the tunnel's ClientHello showed besides its name; `None` when
    /// none was seen (yet).
    pub hello: Option<TlsHello>,
    /// How much of the deciding rule's daily budget the person has spent
    /// today; `None` when not looked up (yet). Only asked when a rule with
    /// a `budget:` decides.
    pub spent: Option<SpentFact>,
}

impl<'a> Facts<'a> {
    /// The facts of a request or tunnel from `client` to `host:port` as
    /// known before anything else is looked up: no user, not resolved, no
    /// ClientHello, no activity, no acknowledgement, no budget spent.
    /// Callers set what they know with struct update syntax.
    pub fn new(entry: Entry, client: IpAddr, host: &'a Host, port: u16) -> Facts<'a> {
        Facts {
            entry,
            client,
            user: None,
            host,
            port,
            resolved: None,
            sni: None,
            listeners: &[],
            activity: None,
            resolved_by_parent: false,
            original: None,
            acknowledged: None,
            hello: None,
            spent: None,
        }
    }
}

/// What a ClientHello shows that the inspection verdict needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TlsHello {
    /// It carries the encrypted_client_hello extension (real ECH or the
    /// GREASE every Chromium sends; only a public name other than the
    /// CONNECT host tells real ECH apart).
    pub ech: bool,
    /// It offers no ALPN, or `h2` or `http/1.1` among its protocols: what
    /// socialgate can serve once decrypted.
    pub offers_http: bool,
    /// The client refused socialgate's certificate for this host recently
    /// (`inspection.learn_pinned`): a fact the proxy learned at run time.
    pub learned_pinned: bool,
}

impl TlsHello {
    /// What a browser's ClientHello shows (for `explain` and `test`).
    pub const BROWSER: TlsHello = TlsHello {
        ech: false,
        offers_http: true,
        learned_pinned: false,
    };
}

/// Whether a tunnel is decrypted, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspect {
    pub inspect: bool,
    pub why: InspectWhy,
}

/// Why a tunnel is or is not decrypted. Stable labels (`explain`, docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InspectWhy {
    /// A plain-HTTP request: nothing to decrypt.
    NotATunnel,
    /// Refused before any rule could ask (identity, port, destination,
    /// server name): the tunnel never opens.
    Refused,
    /// The deciding rule says `inspect: true`.
    Rule,
    /// No rule says; `inspection.default: true`.
    Default,
    /// The deciding rule says `inspect: false`.
    RuleSaysNo,
    /// No rule says and `inspection.default` is false (the default).
    NotAsked,
    /// A never-inspect category of the catalog covers the host.
    NeverCategory(Arc<str>),
    /// `inspection.never.domains` covers the host.
    NeverDomain,
    /// The platform's category is in `inspection.never.categories`.
    NeverPlatformCategory(Arc<str>),
    /// The ClientHello names no server: no certificate can be made for it.
    NoServerName,
    /// Encrypted Client Hello: the real server name is hidden.
    Ech,
    /// The client offers only protocols other than HTTP (ALPN).
    NotHttp,
    /// The client refused socialgate's certificate for this host recently.
    LearnedPinned,
}

impl InspectWhy {
    pub fn as_str(&self) -> &'static str {
        match self {
            InspectWhy::NotATunnel => "not-a-tunnel",
            InspectWhy::Refused => "refused",
            InspectWhy::Rule => "rule",
            InspectWhy::Default => "default",
            InspectWhy::RuleSaysNo => "rule-says-no",
            InspectWhy::NotAsked => "not-asked",
            InspectWhy::NeverCategory(_) => "never-category",
            InspectWhy::NeverDomain => "never-domain",
            InspectWhy::NeverPlatformCategory(_) => "never-category",
            InspectWhy::NoServerName => "no-server-name",
            InspectWhy::Ech => "ech",
            InspectWhy::NotHttp => "not-http",
            InspectWhy::LearnedPinned => "learned-pinned",
        }
    }

    /// A sentence for `explain`.
    pub fn explain(&self) -> String {
        match self {
            InspectWhy::NotATunnel => "plain HTTP is seen as it is; nothing to decrypt".into(),
            InspectWhy::Refused => "the tunnel is refused before any rule could ask for inspection".into(),
            InspectWhy::Rule => "a rule says inspect: true (the deciding rule, or an activity rule that judges each request inside)".into(),
            InspectWhy::Default => "no rule says; inspection.default is true".into(),
            InspectWhy::RuleSaysNo => "the deciding rule says inspect: false".into(),
            InspectWhy::NotAsked => "no rule asks for inspection and inspection.default is false".into(),
            InspectWhy::NeverCategory(c) => format!("the site is in the never-inspect category {c} (catalog.yaml never_inspect)"),
            InspectWhy::NeverDomain => "inspection.never.domains lists the site".into(),
            InspectWhy::NeverPlatformCategory(c) => format!("inspection.never.categories lists the platform's category {c}"),
            InspectWhy::NoServerName => "the ClientHello names no server, so no certificate can be made for it".into(),
            InspectWhy::Ech => "Encrypted Client Hello hides the real server name".into(),
            InspectWhy::NotHttp => "the client offers only protocols other than HTTP (ALPN)".into(),
            InspectWhy::LearnedPinned => "the client refused socialgate's certificate for this host recently (a pinned app; inspection.learn_pinned)".into(),
        }
    }
}

/// The stage that settled the outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Rules,
    Port,
    Destination,
    Sni,
    Budget,
    Warn,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Rules => "rules",
            Stage::Port => "port",
            Stage::Destination => "destination",
            Stage::Sni => "sni",
            Stage::Budget => "budget",
            Stage::Warn => "warn",
        }
    }
}

/// What an enforced `warn` rule asks of traffic the other stages passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Warning {
    /// Not known yet whether the person continued: the shell looks it up
    /// and runs [`warn_stage`] with the answer.
    Unchecked,
    /// The person has not continued: hold the request at the warning (the
    /// page on a navigation, a short 403 otherwise).
    Due,
    /// The person continued within `warn.remember`: the traffic passes.
    Acknowledged,
    /// A CONNECT tunnel: no page can be shown inside it, so it passes
    /// (recorded `warn: unshown`).
    Unshown,
}

impl Warning {
    /// True when the traffic must not go on yet.
    pub fn holds(self) -> bool {
        matches!(self, Warning::Unchecked | Warning::Due)
    }
}

/// The outcome of [`admit`].
#[derive(Debug, Clone, PartialEq)]
pub struct Admission {
    pub decision: Decision,
    /// The stage that refused, or the last stage that ran.
    pub stage: Stage,
    /// The host the final decision was made on: the SNI's when the tunnel
    /// named another host and that was allowed, else the target's.
    pub decided_host: Host,
    /// Set when an enforced `warn` rule decided and nothing refused.
    pub warning: Option<Warning>,
    /// Whether the tunnel is decrypted. Before the ClientHello is seen it
    /// says whether it would be, if the hello allows.
    pub inspect: Inspect,
}

impl Admission {
    pub fn refuses(&self) -> bool {
        self.decision.refuses()
    }

    /// True when a warning holds the traffic (or still has to be looked up).
    pub fn warning_holds(&self) -> bool {
        self.warning.is_some_and(Warning::holds)
    }
}

/// Decides a request or tunnel under `policy` at `now`, with every fact given.
pub fn admit(policy: &Policy, facts: &Facts<'_>, now: Timestamp) -> Admission {
    admit_inner(policy, facts, None, now, None)
}

/// Like [`admit`], with the client's group indices given instead of derived
/// from its address and user (`simulate` replays logs whose users are
/// pseudonyms, and takes the recorded groups).
pub fn admit_in_groups(
    policy: &Policy,
    facts: &Facts<'_>,
    groups: &[u16],
    now: Timestamp,
) -> Admission {
    admit_inner(policy, facts, Some(groups), now, None)
}

/// Like [`admit`], recording every rule and stage considered (for `explain`).
pub fn admit_traced(
    policy: &Policy,
    facts: &Facts<'_>,
    now: Timestamp,
    trace: &mut Vec<TraceStep>,
) -> Admission {
    admit_inner(policy, facts, None, now, Some(trace))
}

fn admit_inner(
    policy: &Policy,
    facts: &Facts<'_>,
    groups: Option<&[u16]>,
    now: Timestamp,
    mut trace: Option<&mut Vec<TraceStep>>,
) -> Admission {
    let mut adm = stages(policy, facts, groups, now, trace.as_deref_mut());
    decide_inspection(policy, facts, &mut adm);
    budget_stage_inner(
        policy,
        facts.spent,
        None,
        now,
        &mut adm,
        trace.as_deref_mut(),
    );
    warn_stage_inner(policy, facts.entry, facts.acknowledged, &mut adm, trace);
    adm
}

fn stages(
    policy: &Policy,
    facts: &Facts<'_>,
    groups: Option<&[u16]>,
    now: Timestamp,
    mut trace: Option<&mut Vec<TraceStep>>,
) -> Admission {
    let rf = RequestFacts {
        client: facts.client,
        user: facts.user,
        host: facts.host,
        port: facts.port,
        activity: facts.activity,
    };
    let decision = decide_with(policy, &rf, groups, now, trace.as_deref_mut());
    let mut adm = Admission {
        decision,
        stage: Stage::Rules,
        decided_host: facts.host.clone(),
        warning: None,
        inspect: Inspect {
            inspect: false,
            why: InspectWhy::NotAsked,
        },
    };
    if adm.refuses() {
        return adm;
    }
    if let Some(reason) = port_stage(policy, facts.entry, facts.port) {
        step(&mut trace, Stage::Port, true, || {
            format!("port {} is not in tunnels.ports", facts.port)
        });
        adm.decision = adm.decision.refused_for(reason);
        adm.stage = Stage::Port;
        return adm;
    }
    if facts.entry == Entry::Connect {
        step(&mut trace, Stage::Port, false, || {
            format!("port {} is allowed", facts.port)
        });
    }
    if let Some(reason) = destination_check(policy, facts) {
        step(&mut trace, Stage::Destination, true, || {
            destination_note(facts, Some(reason))
        });
        adm.decision = adm.decision.refused_for(reason);
        adm.stage = Stage::Destination;
        return adm;
    }
    step(&mut trace, Stage::Destination, false, || {
        destination_note(facts, None)
    });
    adm.stage = Stage::Destination;
    if let Some(name) = facts.sni {
        adm = sni_stage_inner(policy, facts, groups, name, adm, now, trace);
    }
    adm
}

/// Stage 2: a CONNECT must go to a port in `tunnels.ports`.
pub fn port_stage(policy: &Policy, entry: Entry, port: u16) -> Option<Reason> {
    (entry == Entry::Connect && !policy.tunnel_port_allowed(port)).then_some(Reason::PortNotAllowed)
}

/// Stage 3: every address must be one the proxy may reach. All of them, not
/// just one: a name that mixes public and internal addresses is refused,
/// so DNS cannot be used to slip an internal address in beside a public one.
pub fn destination_stage(
    policy: &Policy,
    addrs: &[IpAddr],
    port: u16,
    listeners: &[SocketAddr],
) -> Option<Reason> {
    addrs.iter().find_map(|&ip| {
        if is_own_listener(ip, port, listeners) {
            Some(Reason::DestinationSelf)
        } else if !policy.destination_allowed(ip) {
            Some(Reason::DestinationPrivate)
        } else {
            None
        }
    })
}

/// Stage 3 over every fact the shell has about the destination: the
/// addresses ([`destination_stage`]), or, when a parent proxy resolves the
/// name, the name itself; and for a redirected connection, the original
/// destination. `None` when nothing refuses (yet: an unresolved name is
/// checked once its addresses are known).
pub fn destination_check(policy: &Policy, facts: &Facts<'_>) -> Option<Reason> {
    // socialgate's own page: answered by the proxy over plain HTTP before
    // admission, so any other way to it (a CONNECT, a server name, a
    // redirected connection) stops here, before the name is resolved.
    if is_own_page(policy, facts.host) {
        return Some(Reason::OwnPage);
    }
    let literal = match facts.host {
        Host::Ip(ip) => Some([*ip]),
        _ => None,
    };
    let addrs: Option<&[IpAddr]> = literal.as_ref().map(|a| &a[..]).or(facts.resolved);
    if let Some(orig) = facts.original {
        // Where the bytes would really go: never a listener of ours (a
        // connection that was not redirected), never an internal address.
        if let Some(reason) = destination_stage(policy, &[orig.ip()], orig.port(), facts.listeners)
        {
            return Some(reason);
        }
    }
    match addrs {
        Some(addrs) => {
            if let Some(reason) = destination_stage(policy, addrs, facts.port, facts.listeners) {
                return Some(reason);
            }
        }
        None if facts.resolved_by_parent && is_local_name(facts.host) => {
            return Some(Reason::DestinationPrivate);
        }
        None => {}
    }
    let orig = facts.original?;
    let orig_ip = canonical_ip(orig.ip());
    let same_address = match addrs {
        Some(addrs) => addrs.iter().any(|&a| canonical_ip(a) == orig_ip),
        // The parent would resolve it: it can never be compared.
        None if facts.resolved_by_parent => false,
        // Not resolved yet: compared when it is.
        None => true,
    };
    (!same_address || orig.port() != facts.port).then_some(Reason::DestinationMismatch)
}

/// True when `host` is socialgate's own page (`settings.transparency_host`).
pub fn is_own_page(policy: &Policy, host: &Host) -> bool {
    host.name() == Some(policy.settings.transparency_host.as_str())
}

/// A host that only means something inside a network, so a parent proxy
/// that resolves it may reach an internal address: `localhost` and the
/// special-use suffixes (RFC 6761, 6762, 8375, ICANN's `.internal`), a
/// single label (completed by the resolver's search domains) and numeric
/// look-alikes that resolvers read as addresses (`127.1`).
pub fn is_local_name(host: &Host) -> bool {
    const SUFFIXES: [&str; 6] = [
        "localhost",
        "local",
        "internal",
        "home.arpa",
        "localdomain",
        "lan",
    ];
    match host {
        Host::Ip(_) => false,
        Host::Numeric(_) => true,
        Host::Name(n) => {
            !n.contains('.')
                || SUFFIXES.iter().any(|s| {
                    n == s
                        || (n.len() > s.len()
                            && n.ends_with(s)
                            && n.as_bytes()[n.len() - s.len() - 1] == b'.')
                })
        }
    }
}

/// What `explain` says about the destination stage.
fn destination_note(facts: &Facts<'_>, refused: Option<Reason>) -> String {
    let literal = match facts.host {
        Host::Ip(ip) => Some(vec![*ip]),
        _ => None,
    };
    let addrs = literal.or_else(|| facts.resolved.map(<[IpAddr]>::to_vec));
    let original = facts
        .original
        .map(|o| format!("; the connection was going to {o}"))
        .unwrap_or_default();
    match (refused, &addrs) {
        (Some(Reason::OwnPage), _) => format!(
            "{} is socialgate's own page (settings.transparency_host): answered at http://{}/, never resolved or connected to",
            facts.host, facts.host
        ),
        (Some(Reason::DestinationMismatch), Some(a)) => format!(
            "{} ({}:{} is {}{original})",
            Reason::DestinationMismatch.explain(),
            facts.host,
            facts.port,
            list(a)
        ),
        (Some(Reason::DestinationMismatch), None) => format!(
            "{} (the parent proxy resolves {}, so it cannot be compared{original})",
            Reason::DestinationMismatch.explain(),
            facts.host
        ),
        (Some(reason), Some(a)) => format!("{} ({}{original})", reason.explain(), list(a)),
        (Some(reason), None) => format!(
            "{} ({} is a local name, and the parent proxy would resolve it)",
            reason.explain(),
            facts.host
        ),
        (None, Some(a)) => format!("{} may be reached{original}", list(a)),
        (None, None) if facts.resolved_by_parent => format!(
            "{} is resolved by the parent proxy: socialgate checks IP literals and local names only",
            facts.host
        ),
        (None, None) => "not resolved: the addresses are checked when the name resolves".into(),
    }
}

/// True when `ip:port` would reach one of socialgate's own listeners.
fn is_own_listener(ip: IpAddr, port: u16, listeners: &[SocketAddr]) -> bool {
    let ip = canonical_ip(ip);
    listeners.iter().any(|l| {
        l.port() == port
            && (canonical_ip(l.ip()) == ip
                || l.ip().is_unspecified()
                || ip.is_loopback()
                || ip.is_unspecified())
    })
}

/// Stage 4, for a tunnel whose ClientHello arrived: `admitted` is what the
/// earlier stages said (on the same snapshot); the result is the tunnel's
/// final admission (the warn stage included).
pub fn sni_stage(
    policy: &Policy,
    facts: &Facts<'_>,
    name: &str,
    admitted: Admission,
    now: Timestamp,
) -> Admission {
    let mut adm = sni_stage_inner(policy, facts, None, name, admitted, now, None);
    decide_inspection(policy, facts, &mut adm);
    budget_stage_inner(policy, facts.spent, None, now, &mut adm, None);
    warn_stage_inner(policy, facts.entry, facts.acknowledged, &mut adm, None);
    adm
}

/// The budget stage, once the shell knows how much of the deciding rule's
/// budget the person spent today: `admitted` is what the earlier stages
/// said (on the same snapshot, with the budget unchecked). Within budget
/// the traffic is allowed; once it is spent the rule's action applies (and
/// for `warn`, the warn stage runs again: whether the person continued is
/// looked up next). A store that cannot say (`SpentFact::Unavailable`)
/// leaves the traffic allowed: budgets fail open. The admission is
/// decided in place (it is large, and this runs on every request under a
/// budget).
pub fn budget_stage(
    policy: &Policy,
    entry: Entry,
    spent: SpentFact,
    now: Timestamp,
    admitted: &mut Admission,
) {
    budget_stage_inner(policy, Some(spent), None, now, admitted, None);
    warn_stage_inner(policy, entry, None, admitted, None);
}

/// [`budget_stage`] for a spent amount counted in the local `day` (the
/// budget's day containing `now`, as the shell's ledger knows it already):
/// the day is not worked out again from the time zone.
pub fn budget_stage_in_day(
    policy: &Policy,
    entry: Entry,
    spent: SpentFact,
    day: super::budget::Day,
    now: Timestamp,
    admitted: &mut Admission,
) {
    budget_stage_inner(policy, Some(spent), Some(day), now, admitted, None);
    warn_stage_inner(policy, entry, None, admitted, None);
}

fn budget_stage_inner(
    policy: &Policy,
    spent: Option<SpentFact>,
    day: Option<super::budget::Day>,
    now: Timestamp,
    adm: &mut Admission,
    mut trace: Option<&mut Vec<TraceStep>>,
) {
    let Some(view) = adm.decision.budget else {
        return;
    };
    if view.state != BudgetState::Unchecked || adm.refuses() {
        return;
    }
    let rule = &policy.rules[view.rule as usize];
    let Some(budget) = &rule.budget else {
        return;
    };
    let Some(fact) = spent else {
        // The shell looks the spent amount up and calls `budget_stage`.
        return;
    };
    adm.stage = Stage::Budget;
    let day = match day {
        Some(d) if d.start <= now && now < d.end => d,
        _ => budget.day(now),
    };
    let state = match fact {
        SpentFact::Known(s) => budget.apply(s, &day),
        SpentFact::Unavailable => BudgetState::Unavailable,
    };
    adm.decision.budget = Some(BudgetView {
        rule: view.rule,
        state,
    });
    let exhausted = matches!(state, BudgetState::Exhausted { .. });
    if exhausted {
        adm.decision.action = rule.action;
        adm.decision.reason = Reason::BudgetExhausted;
    }
    step(&mut trace, Stage::Budget, adm.refuses(), || {
        let renews = day
            .end
            .to_zoned_datetime(budget.tz.clone())
            .strftime("%Y-%m-%d %H:%M %Z");
        match (fact, state) {
            (SpentFact::Known(s), BudgetState::Left { minutes, bytes, .. }) => format!(
                "{} of rule {}'s {} a day spent ({}): allowed, {} left until {renews}",
                spent_words(s, budget),
                rule.id,
                budget.describe(),
                budget.tz_name,
                left_words(minutes, bytes),
            ),
            (SpentFact::Known(s), _) => format!(
                "{} of rule {}'s {} a day spent: the budget is used up until {renews}, so the rule's action applies: {} ({})",
                spent_words(s, budget),
                rule.id,
                budget.describe(),
                rule.action.as_str(),
                rule.mode.as_str()
            ),
            (SpentFact::Unavailable, _) => format!(
                "rule {}'s budget cannot be looked up (the state store is unreachable): budgets fail open, allowed",
                rule.id
            ),
        }
    });
}

/// `25 minutes and 120 MB`, for the parts the budget limits.
fn spent_words(s: super::budget::Spent, budget: &super::budget::Budget) -> String {
    let mut parts = Vec::new();
    if budget.minutes.is_some() {
        parts.push(minutes_words(s.minutes));
    }
    if budget.megabytes.is_some() {
        parts.push(megabytes_words(s.bytes));
    }
    parts.join(" and ")
}

/// `5 minutes and 380 MB`.
fn left_words(minutes: Option<u32>, bytes: Option<u64>) -> String {
    let mut parts = Vec::new();
    if let Some(m) = minutes {
        parts.push(minutes_words(m));
    }
    if let Some(b) = bytes {
        parts.push(megabytes_words(b));
    }
    parts.join(" and ")
}

/// Stage 5, once the shell knows whether the person acknowledged the
/// deciding rule's warning: `admitted` is what the earlier stages said (on
/// the same snapshot). A refusal, an allow, or a warn rule in report mode
/// is left as it is.
pub fn warn_stage(
    policy: &Policy,
    entry: Entry,
    acknowledged: bool,
    mut admitted: Admission,
) -> Admission {
    warn_stage_inner(policy, entry, Some(acknowledged), &mut admitted, None);
    admitted
}

fn warn_stage_inner(
    policy: &Policy,
    entry: Entry,
    acknowledged: Option<bool>,
    adm: &mut Admission,
    mut trace: Option<&mut Vec<TraceStep>>,
) {
    let d = &adm.decision;
    if d.refuses() || d.action != Action::Warn || d.mode != Mode::Enforce {
        adm.warning = None;
        return;
    }
    if entry == Entry::Connect && adm.inspect.inspect {
        // Decrypted: each request inside meets the warning itself.
        adm.warning = None;
        return;
    }
    adm.stage = Stage::Warn;
    let remember = human_duration(policy.warn.remember);
    let (warning, note) = match (entry, acknowledged) {
        (Entry::Connect, _) => (
            Warning::Unshown,
            format!(
                "rule {} warns, but no page can be shown inside an HTTPS tunnel that is not inspected: the tunnel passes (recorded warn: unshown)",
                d.rule
            ),
        ),
        (Entry::Request, None) => (
            Warning::Unchecked,
            format!(
                "rule {} warns: the person gets the warning unless they continued within {remember} (warn.remember)",
                d.rule
            ),
        ),
        (Entry::Request, Some(true)) => (
            Warning::Acknowledged,
            format!(
                "the person continued past rule {}'s warning within {remember}: passes",
                d.rule
            ),
        ),
        (Entry::Request, Some(false)) => (
            Warning::Due,
            format!(
                "the person has not continued past rule {}'s warning: it is shown (a page on page loads, a 403 otherwise)",
                d.rule
            ),
        ),
    };
    step(&mut trace, Stage::Warn, warning.holds(), || note);
    adm.warning = Some(warning);
}

/// The inspection verdict for an admitted (or rule-refused) tunnel: the
/// deciding rule's `inspect:` or `inspection.default`, then the never list
/// on every name the tunnel goes by, then what the ClientHello showed. A
/// tunnel a rule refuses may still be inspected: that is how the refusal
/// page reaches the browser over HTTPS.
pub fn inspect_stage(policy: &Policy, facts: &Facts<'_>, adm: &Admission) -> Inspect {
    let no = |why| Inspect {
        inspect: false,
        why,
    };
    if facts.entry != Entry::Connect {
        return no(InspectWhy::NotATunnel);
    }
    let d = &adm.decision;
    let by_rules = matches!(
        d.reason,
        Reason::RuleMatched
            | Reason::BudgetExhausted
            | Reason::DefaultCatalog
            | Reason::DefaultEmbedded
            | Reason::DefaultOther
    );
    if d.reason == Reason::Ech {
        return no(InspectWhy::Ech);
    }
    // A port outside tunnels.ports is refused whatever the rules say (the
    // rules stage may have refused first and left the port unchecked).
    if !by_rules || port_stage(policy, facts.entry, facts.port).is_some() {
        return no(InspectWhy::Refused);
    }
    let why = match d.inspect {
        Some(true) => InspectWhy::Rule,
        Some(false) => return no(InspectWhy::RuleSaysNo),
        None if policy.inspection.default => InspectWhy::Default,
        None => return no(InspectWhy::NotAsked),
    };
    let sni = facts.sni.and_then(|n| normalize_host(n).ok());
    for host in [Some(facts.host), Some(&adm.decided_host), sni.as_ref()]
        .into_iter()
        .flatten()
    {
        if let Some(why) = never(policy, host) {
            return no(why);
        }
    }
    if let Some(c) = d
        .category
        .as_ref()
        .filter(|c| policy.inspection.never_platform_categories.contains(c))
    {
        return no(InspectWhy::NeverPlatformCategory(c.clone()));
    }
    if let Some(hello) = facts.hello {
        if facts.sni.is_none() {
            return no(InspectWhy::NoServerName);
        }
        if !hello.offers_http {
            return no(InspectWhy::NotHttp);
        }
        if hello.learned_pinned {
            return no(InspectWhy::LearnedPinned);
        }
    }
    Inspect { inspect: true, why }
}

/// Sets the admission's inspection verdict. A tunnel that will be
/// decrypted shows its requests: no activity goes unseen in it.
pub fn decide_inspection(policy: &Policy, facts: &Facts<'_>, adm: &mut Admission) {
    adm.inspect = inspect_stage(policy, facts, adm);
    if adm.inspect.inspect {
        adm.decision.activity_unseen = None;
    }
}

/// Why `host` is never decrypted, if it is.
fn never(policy: &Policy, host: &Host) -> Option<InspectWhy> {
    let name = host.name()?;
    let (_, hit) = policy.inspection.never_domains.lookup(name)?;
    Some(match hit {
        NeverHit::Category(c) => InspectWhy::NeverCategory(c.clone()),
        NeverHit::Listed => InspectWhy::NeverDomain,
    })
}

fn sni_stage_inner(
    policy: &Policy,
    facts: &Facts<'_>,
    groups: Option<&[u16]>,
    name: &str,
    mut adm: Admission,
    now: Timestamp,
    mut trace: Option<&mut Vec<TraceStep>>,
) -> Admission {
    adm.stage = Stage::Sni;
    let Ok(sni_host) = normalize_host(name) else {
        step(&mut trace, Stage::Sni, false, || {
            format!("server name {name:?} is not a host name; the CONNECT decision stands")
        });
        return adm;
    };
    if &sni_host == facts.host {
        step(&mut trace, Stage::Sni, false, || {
            format!("server name {sni_host} is the CONNECT host")
        });
        return adm;
    }
    // Encrypted Client Hello: the name sent is the public (outer) name of a
    // front end, and the real one is encrypted. Not fronting in intent, but
    // the policy cannot see where the client goes: `tunnels.ech` decides.
    if facts.hello.is_some_and(|h| h.ech) {
        let refused = policy.tunnels.ech == Action::Block;
        step(&mut trace, Stage::Sni, refused, || {
            format!(
                "Encrypted Client Hello behind the public name {sni_host}; tunnels.ech is {}{}",
                policy.tunnels.ech.as_str(),
                if refused {
                    ""
                } else {
                    ": the CONNECT decision stands"
                }
            )
        });
        adm.decision = if refused {
            adm.decision.refused_for(Reason::Ech)
        } else {
            Decision {
                reason: Reason::Ech,
                ..adm.decision
            }
        };
        return adm;
    }
    // A different name behind a named CONNECT is domain fronting. Behind an
    // IP literal the name is the only statement of where the client goes.
    let fronting = matches!(facts.host, Host::Name(_));
    if fronting && policy.tunnels.sni_mismatch == Action::Block {
        step(&mut trace, Stage::Sni, true, || {
            format!(
                "server name {sni_host} differs from the CONNECT host {} (domain fronting)",
                facts.host
            )
        });
        adm.decision = adm.decision.refused_for(Reason::SniMismatch);
        return adm;
    }
    step(&mut trace, Stage::Sni, false, || {
        format!("server name {sni_host} differs from the CONNECT host; deciding again on it")
    });
    let rf = RequestFacts {
        client: facts.client,
        user: facts.user,
        host: &sni_host,
        port: facts.port,
        activity: facts.activity,
    };
    adm.decision = decide_with(policy, &rf, groups, now, trace);
    adm.decided_host = sni_host;
    adm
}

fn step(
    trace: &mut Option<&mut Vec<TraceStep>>,
    stage: Stage,
    refused: bool,
    note: impl FnOnce() -> String,
) {
    if let Some(t) = trace.as_deref_mut() {
        t.push(TraceStep {
            rule: format!("stage:{}", stage.as_str()),
            matched: refused,
            note: note(),
        });
    }
}

fn list(addrs: &[IpAddr]) -> String {
    addrs
        .iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The first instant after `now` at which any rule's time window opens or
/// closes: until then, every decision that depends on time stays the same.
/// `None` when no rule has a schedule.
pub fn next_change_after(policy: &Policy, now: Timestamp) -> Option<Timestamp> {
    policy
        .rules
        .iter()
        .filter_map(|r| r.schedule.as_ref())
        .filter_map(|s| s.next_boundary_after(now))
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::load_dir;

    const CATALOG: &str = r#"
version: 1
categories: {social: Social, video: Video, professional: Professional}
platforms:
  tiktok: {name: TikTok, category: video, domains: [tiktok.com]}
  youtube: {name: YouTube, category: video, domains: [youtube.com]}
  linkedin: {name: LinkedIn, category: professional, domains: [linkedin.com]}
"#;

    const POLICY: &str = r#"
version: 1
settings: {timezone: Europe/Berlin}
destinations: {allow: [10.9.0.0/16]}
tunnels: {ports: [443, 8000-8010]}
groups:
  staff: {networks: [10.0.0.0/8]}
rules:
  - {id: no-tiktok, groups: [staff], platforms: [tiktok], action: block}
  - id: video-after-hours
    groups: [staff]
    platforms: [youtube]
    when: [{days: [mon-fri], from: "09:00", to: "17:30"}]
    action: block
"#;

    fn policy(extra: &str) -> (tempfile::TempDir, Policy) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("catalog.yaml"), CATALOG).unwrap();
        std::fs::write(dir.path().join("policy.yaml"), format!("{POLICY}{extra}")).unwrap();
        let p = load_dir(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        (dir, p)
    }

    const WORK: &str = "2026-11-25T10:00:00+01:00";

    struct Case {
        entry: Entry,
        host: &'static str,
        port: u16,
        resolved: Option<&'static [&'static str]>,
        sni: Option<&'static str>,
        want: (&'static str, &'static str, Stage),
    }

    fn run(p: &Policy, c: &Case) -> Admission {
        let host = normalize_host(c.host).unwrap();
        let resolved: Option<Vec<IpAddr>> = c
            .resolved
            .map(|r| r.iter().map(|a| a.parse().unwrap()).collect());
        let listeners: [SocketAddr; 1] = ["127.0.0.1:3128".parse().unwrap()];
        let facts = Facts {
            entry: c.entry,
            client: "10.1.2.3".parse().unwrap(),
            user: None,
            host: &host,
            port: c.port,
            resolved: resolved.as_deref(),
            sni: c.sni,
            listeners: &listeners,
            activity: None,
            resolved_by_parent: false,
            original: None,
            acknowledged: None,
            hello: c.sni.map(|_| TlsHello::BROWSER),
            spent: None,
        };
        admit(p, &facts, WORK.parse().unwrap())
    }

    #[test]
    fn every_stage_decides_in_one_function() {
        let (_d, p) = policy("");
        use Entry::*;
        #[rustfmt::skip]
        let cases = [
            Case { entry: Connect, host: "www.linkedin.com", port: 443, resolved: None, sni: None, want: ("allow", "default:catalog", Stage::Destination) },
            Case { entry: Connect, host: "www.linkedin.com", port: 8443, resolved: None, sni: None, want: ("block", "builtin:tunnel", Stage::Port) },
            Case { entry: Connect, host: "www.linkedin.com", port: 8005, resolved: None, sni: None, want: ("allow", "default:catalog", Stage::Destination) },
            Case { entry: Request, host: "www.linkedin.com", port: 8443, resolved: None, sni: None, want: ("allow", "default:catalog", Stage::Destination) },
            Case { entry: Connect, host: "www.tiktok.com", port: 8443, resolved: None, sni: None, want: ("block", "no-tiktok", Stage::Rules) },
            Case { entry: Request, host: "169.254.169.254", port: 80, resolved: None, sni: None, want: ("block", "builtin:destination", Stage::Destination) },
            Case { entry: Request, host: "10.9.1.1", port: 80, resolved: None, sni: None, want: ("allow", "default:other", Stage::Destination) },
            Case { entry: Request, host: "example.org", port: 80, resolved: Some(&["93.184.216.34", "10.1.1.1"]), sni: None, want: ("block", "builtin:destination", Stage::Destination) },
            Case { entry: Request, host: "example.org", port: 80, resolved: Some(&["93.184.216.34"]), sni: None, want: ("allow", "default:other", Stage::Destination) },
            Case { entry: Request, host: "example.org", port: 3128, resolved: Some(&["127.0.0.1"]), sni: None, want: ("block", "builtin:destination", Stage::Destination) },
            Case { entry: Connect, host: "www.linkedin.com", port: 443, resolved: Some(&["93.184.216.34"]), sni: Some("www.tiktok.com"), want: ("block", "builtin:sni", Stage::Sni) },
            Case { entry: Connect, host: "www.linkedin.com", port: 443, resolved: Some(&["93.184.216.34"]), sni: Some("WWW.LinkedIn.com."), want: ("allow", "default:catalog", Stage::Sni) },
            Case { entry: Connect, host: "93.184.216.34", port: 443, resolved: None, sni: Some("www.tiktok.com"), want: ("block", "no-tiktok", Stage::Sni) },
        ];
        for c in &cases {
            let a = run(&p, c);
            let what = format!(
                "{:?} {}:{} {:?} {:?}",
                c.entry, c.host, c.port, c.resolved, c.sni
            );
            assert_eq!(a.decision.action.as_str(), c.want.0, "action for {what}");
            assert_eq!(&*a.decision.rule, c.want.1, "rule for {what}");
            assert_eq!(a.stage, c.want.2, "stage for {what}");
        }
    }

    #[test]
    fn a_mismatched_server_name_is_decided_on_its_own_when_fronting_is_allowed() {
        let (_d, p) = {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("catalog.yaml"), CATALOG).unwrap();
            let policy = POLICY.replace(
                "tunnels: {ports: [443, 8000-8010]}",
                "tunnels: {ports: [443], sni_mismatch: allow}",
            );
            std::fs::write(dir.path().join("policy.yaml"), policy).unwrap();
            let p = load_dir(dir.path()).unwrap_or_else(|e| panic!("{e}"));
            (dir, p)
        };
        let c = Case {
            entry: Entry::Connect,
            host: "www.linkedin.com",
            port: 443,
            resolved: None,
            sni: Some("www.tiktok.com"),
            want: ("block", "no-tiktok", Stage::Sni),
        };
        let a = run(&p, &c);
        assert_eq!(a.decision.action.as_str(), c.want.0);
        assert_eq!(&*a.decision.rule, c.want.1);
        assert_eq!(a.stage, c.want.2);
        assert_eq!(a.decided_host, normalize_host("www.tiktok.com").unwrap());
    }

    #[test]
    fn the_destination_stage_checks_redirected_connections_and_parent_resolved_names() {
        let (_d, p) = policy("");
        let listeners: [SocketAddr; 2] = [
            "127.0.0.1:3128".parse().unwrap(),
            "0.0.0.0:3129".parse().unwrap(),
        ];
        struct C {
            host: &'static str,
            port: u16,
            resolved: Option<&'static [&'static str]>,
            by_parent: bool,
            original: Option<&'static str>,
            want: Option<Reason>,
        }
        use Reason::*;
        #[rustfmt::skip]
        let cases = [
            // Transparent: the original destination must be one of the name's addresses, same port.
            C { host: "www.linkedin.com", port: 443, resolved: Some(&["93.184.216.34", "93.184.216.35"]), by_parent: false, original: Some("93.184.216.35:443"), want: None },
            C { host: "www.linkedin.com", port: 443, resolved: Some(&["93.184.216.34"]), by_parent: false, original: Some("93.184.216.99:443"), want: Some(DestinationMismatch) },
            C { host: "www.linkedin.com", port: 8443, resolved: Some(&["93.184.216.34"]), by_parent: false, original: Some("93.184.216.34:443"), want: Some(DestinationMismatch) },
            C { host: "www.linkedin.com", port: 443, resolved: Some(&["::ffff:93.184.216.34"]), by_parent: false, original: Some("93.184.216.34:443"), want: None },
            C { host: "93.184.216.34", port: 80, resolved: None, by_parent: false, original: Some("93.184.216.34:80"), want: None },
            C { host: "93.184.216.34", port: 80, resolved: None, by_parent: false, original: Some("93.184.216.99:80"), want: Some(DestinationMismatch) },
            // Not resolved yet: compared once it is.
            C { host: "www.linkedin.com", port: 443, resolved: None, by_parent: false, original: Some("93.184.216.34:443"), want: None },
            // Where the bytes would go is checked first: a private or own address.
            C { host: "www.linkedin.com", port: 443, resolved: Some(&["93.184.216.34"]), by_parent: false, original: Some("192.168.1.1:443"), want: Some(DestinationPrivate) },
            C { host: "www.linkedin.com", port: 3129, resolved: Some(&["93.184.216.34"]), by_parent: false, original: Some("10.9.0.1:3129"), want: Some(DestinationSelf) },
            // A name that only the parent resolves cannot be compared.
            C { host: "www.linkedin.com", port: 443, resolved: None, by_parent: true, original: Some("93.184.216.34:443"), want: Some(DestinationMismatch) },
            // The parent resolves: names pass, local names and internal literals do not.
            C { host: "www.linkedin.com", port: 443, resolved: None, by_parent: true, original: None, want: None },
            C { host: "localhost", port: 80, resolved: None, by_parent: true, original: None, want: Some(DestinationPrivate) },
            C { host: "db.localhost", port: 80, resolved: None, by_parent: true, original: None, want: Some(DestinationPrivate) },
            C { host: "intranet", port: 80, resolved: None, by_parent: true, original: None, want: Some(DestinationPrivate) },
            C { host: "nas.home.arpa", port: 80, resolved: None, by_parent: true, original: None, want: Some(DestinationPrivate) },
            C { host: "wiki.internal", port: 80, resolved: None, by_parent: true, original: None, want: Some(DestinationPrivate) },
            C { host: "127.1", port: 80, resolved: None, by_parent: true, original: None, want: Some(DestinationPrivate) },
            C { host: "notlocal.example", port: 80, resolved: None, by_parent: true, original: None, want: None },
            C { host: "169.254.169.254", port: 80, resolved: None, by_parent: true, original: None, want: Some(DestinationPrivate) },
            C { host: "10.9.1.1", port: 80, resolved: None, by_parent: true, original: None, want: None },
        ];
        for c in &cases {
            let host = normalize_host(c.host).unwrap();
            let resolved: Option<Vec<IpAddr>> = c
                .resolved
                .map(|r| r.iter().map(|a| a.parse().unwrap()).collect());
            let facts = Facts {
                // Requests: the port stage (tunnels only) stays out of the way.
                entry: Entry::Request,
                client: "10.1.2.3".parse().unwrap(),
                user: None,
                host: &host,
                port: c.port,
                resolved: resolved.as_deref(),
                sni: None,
                listeners: &listeners,
                resolved_by_parent: c.by_parent,
                original: c.original.map(|o| o.parse().unwrap()),
                activity: None,
                acknowledged: None,
                hello: None,
                spent: None,
            };
            let what = format!(
                "{}:{} {:?} parent={} original={:?}",
                c.host, c.port, c.resolved, c.by_parent, c.original
            );
            assert_eq!(destination_check(&p, &facts), c.want, "{what}");
            // admit runs the same check, and explain's trace says why.
            let mut trace = Vec::new();
            let a = admit_traced(&p, &facts, WORK.parse().unwrap(), &mut trace);
            match c.want {
                Some(r) => {
                    assert_eq!(
                        (a.decision.reason, a.stage),
                        (r, Stage::Destination),
                        "{what}"
                    );
                    assert!(
                        trace
                            .iter()
                            .any(|t| t.rule == "stage:destination" && t.matched),
                        "{what}"
                    );
                }
                None => assert!(!a.refuses(), "{what}"),
            }
        }
    }

    #[test]
    fn a_warn_rule_holds_requests_until_acknowledged_and_lets_tunnels_pass_unshown() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("catalog.yaml"), CATALOG).unwrap();
        let policy = POLICY
            .replace(
                "  - {id: no-tiktok, groups: [staff], platforms: [tiktok], action: block}",
                "  - {id: tiktok-caution, groups: [staff], platforms: [tiktok], action: warn}\n  - {id: linkedin-dry, groups: [staff], platforms: [linkedin], action: warn, mode: report}",
            );
        std::fs::write(dir.path().join("policy.yaml"), policy).unwrap();
        let p = load_dir(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        let listeners: [SocketAddr; 1] = ["127.0.0.1:3128".parse().unwrap()];
        let public: [IpAddr; 1] = ["93.184.216.34".parse().unwrap()];
        let internal: [IpAddr; 1] = ["10.1.1.1".parse().unwrap()];
        use Entry::*;
        use Warning::*;
        /// action, mode, rule, stage, warning
        type Want = (
            &'static str,
            &'static str,
            &'static str,
            Stage,
            Option<Warning>,
        );
        /// entry, host, port, resolved, acknowledged => want
        type Row<'a> = (Entry, &'a str, u16, &'a [IpAddr], Option<bool>, Want);
        #[rustfmt::skip]
        let cases: &[Row] = &[
            (Request, "www.tiktok.com", 80, &public, None, ("warn", "enforce", "tiktok-caution", Stage::Warn, Some(Unchecked))),
            (Request, "v16.tiktok.com", 80, &public, Some(false), ("warn", "enforce", "tiktok-caution", Stage::Warn, Some(Due))),
            (Request, "www.tiktok.com", 80, &public, Some(true), ("warn", "enforce", "tiktok-caution", Stage::Warn, Some(Acknowledged))),
            (Connect, "www.tiktok.com", 443, &public, None, ("warn", "enforce", "tiktok-caution", Stage::Warn, Some(Unshown))),
            (Connect, "www.tiktok.com", 443, &public, Some(false), ("warn", "enforce", "tiktok-caution", Stage::Warn, Some(Unshown))),
            // Other stages refuse first: no warning to show.
            (Connect, "www.tiktok.com", 8443, &public, None, ("block", "enforce", "builtin:tunnel", Stage::Port, None)),
            (Request, "www.tiktok.com", 80, &internal, None, ("block", "enforce", "builtin:destination", Stage::Destination, None)),
            // Report mode: recorded as warn, nothing held.
            (Request, "www.linkedin.com", 80, &public, None, ("warn", "report", "linkedin-dry", Stage::Destination, None)),
        ];
        for (entry, host, port, resolved, ack, want) in cases {
            let h = normalize_host(host).unwrap();
            let facts = Facts {
                entry: *entry,
                client: "10.1.2.3".parse().unwrap(),
                user: None,
                host: &h,
                port: *port,
                resolved: Some(resolved),
                sni: None,
                listeners: &listeners,
                acknowledged: *ack,
                activity: None,
                resolved_by_parent: false,
                original: None,
                hello: None,
                spent: None,
            };
            let mut trace = Vec::new();
            let a = admit_traced(&p, &facts, WORK.parse().unwrap(), &mut trace);
            let what = format!("{entry:?} {host}:{port} {ack:?}");
            assert_eq!(a.decision.action.as_str(), want.0, "action for {what}");
            assert_eq!(a.decision.mode.as_str(), want.1, "mode for {what}");
            assert_eq!(&*a.decision.rule, want.2, "rule for {what}");
            assert_eq!(a.stage, want.3, "stage for {what}");
            assert_eq!(a.warning, want.4, "warning for {what}");
            assert!(!a.decision.refuses() || a.warning.is_none(), "{what}");
            if a.stage == Stage::Warn {
                let last = trace.last().unwrap();
                assert_eq!(last.rule, "stage:warn", "{what}");
                assert_eq!(last.matched, a.warning_holds(), "{what}");
            }
            // The shell's later call agrees with admit given the fact at once.
            if *entry == Request && ack.is_none() && a.warning.is_some() {
                for fact in [false, true] {
                    let later = warn_stage(&p, Request, fact, a.clone());
                    let direct = admit(
                        &p,
                        &Facts {
                            acknowledged: Some(fact),
                            ..facts
                        },
                        WORK.parse().unwrap(),
                    );
                    assert_eq!(later, direct, "{what} acknowledged={fact}");
                }
            }
        }
    }

    #[test]
    fn the_next_change_is_the_next_window_edge() {
        let (_d, p) = policy("");
        let at = |s: &str| s.parse::<Timestamp>().unwrap();
        // Wednesday 10:00 Berlin: the window closes at 17:30.
        assert_eq!(
            next_change_after(&p, at("2026-11-25T10:00:00+01:00")),
            Some(at("2026-11-25T17:30:00+01:00"))
        );
        // Wednesday 18:00: it opens again on Thursday 09:00.
        assert_eq!(
            next_change_after(&p, at("2026-11-25T18:00:00+01:00")),
            Some(at("2026-11-26T09:00:00+01:00"))
        );
        // Friday evening: Monday 09:00.
        assert_eq!(
            next_change_after(&p, at("2026-11-27T18:00:00+01:00")),
            Some(at("2026-11-30T09:00:00+01:00"))
        );
        // Exactly at an edge: the next one, never `now` itself.
        assert_eq!(
            next_change_after(&p, at("2026-11-25T09:00:00+01:00")),
            Some(at("2026-11-25T17:30:00+01:00"))
        );
    }

    /// The inspection verdict, as a table: rule, default, never list and
    /// what the ClientHello showed.
    mod inspection {
        use super::super::*;
        use crate::policy::load_dir;

        const CATALOG: &str = r#"
version: 1
categories: {social: Social, video: Video, professional: Professional, messaging: Messaging}
platforms:
  tiktok: {name: TikTok, category: video, domains: [tiktok.com]}
  linkedin: {name: LinkedIn, category: professional, domains: [linkedin.com]}
  whatsapp: {name: WhatsApp, category: messaging, domains: [whatsapp.com]}
  instagram: {name: Instagram, category: social, domains: [instagram.com]}
  reddit: {name: Reddit, category: social, domains: [reddit.com]}
never_inspect:
  finance: {name: Finance, domains: [bank.example]}
  health: {name: Health, domains: [clinic.example]}
"#;

        fn policy(inspection: &str, ech: &str) -> (tempfile::TempDir, Policy) {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("catalog.yaml"), CATALOG).unwrap();
            let policy = format!(
                r#"
version: 1
tunnels: {{ports: [443], ech: {ech}}}
groups: {{staff: {{networks: [10.0.0.0/8]}}}}
{inspection}
rules:
  - {{id: tiktok-page, platforms: [tiktok], action: block, inspect: true}}
  - {{id: linkedin-in, platforms: [linkedin], action: allow, inspect: true}}
  - {{id: bank-in, domains: [bank.example, news.example], action: allow, inspect: true}}
  - {{id: quiet, domains: [quiet.example], action: allow, inspect: false}}
  - {{id: ig-uploads, platforms: [instagram], activities: [upload], action: block, inspect: true}}
  - {{id: reddit-uploads, platforms: [reddit], activities: [upload], action: block}}
"#
            );
            std::fs::write(dir.path().join("policy.yaml"), policy).unwrap();
            let p = load_dir(dir.path()).unwrap_or_else(|e| panic!("{e}"));
            (dir, p)
        }

        struct Case {
            entry: Entry,
            host: &'static str,
            port: u16,
            sni: Option<&'static str>,
            hello: Option<TlsHello>,
            want: (bool, &'static str),
        }

        const BROWSER: Option<TlsHello> = Some(TlsHello::BROWSER);

        fn verdict(p: &Policy, c: &Case) -> Admission {
            let host = normalize_host(c.host).unwrap();
            let facts = Facts {
                entry: c.entry,
                client: "10.1.2.3".parse().unwrap(),
                user: None,
                host: &host,
                port: c.port,
                resolved: Some(&["93.184.216.34".parse().unwrap()]),
                sni: c.sni,
                listeners: &[],
                hello: c.hello,
                spent: None,
                acknowledged: None,
                activity: None,
                original: None,
                resolved_by_parent: false,
            };
            admit(p, &facts, "2026-11-25T10:00:00Z".parse().unwrap())
        }

        #[test]
        fn an_activity_rule_that_asks_has_the_tunnel_inspected_to_judge_each_request() {
            let (_d, p) = policy("", "block");
            let tunnel = |host| Case {
                entry: Entry::Connect,
                host,
                port: 443,
                sni: Some(host),
                hello: BROWSER,
                want: (false, ""),
            };
            // The upload rule cannot judge a tunnel; the default decides it,
            // but the rule's inspect: true has it decrypted, so nothing goes
            // unseen.
            let a = verdict(&p, &tunnel("www.instagram.com"));
            assert_eq!(&*a.decision.rule, "default:catalog");
            assert_eq!((a.inspect.inspect, a.inspect.why.as_str()), (true, "rule"));
            assert_eq!(a.decision.activity_unseen, None);
            // Without inspect: the tunnel passes undecrypted, and says which
            // rule could not see it.
            let a = verdict(&p, &tunnel("www.reddit.com"));
            assert_eq!(
                (a.inspect.inspect, a.inspect.why.as_str()),
                (false, "not-asked")
            );
            assert_eq!(
                a.decision.activity_unseen.as_deref(),
                Some("reddit-uploads")
            );
        }

        #[test]
        fn inspection_is_decided_from_the_rule_the_never_list_and_the_hello() {
            use Entry::*;
            let (_d, p) = policy("", "block");
            let pinned = Some(TlsHello {
                learned_pinned: true,
                ..TlsHello::BROWSER
            });
            let imap = Some(TlsHello {
                offers_http: false,
                ..TlsHello::BROWSER
            });
            #[rustfmt::skip]
            let cases = [
                Case { entry: Connect, host: "www.linkedin.com", port: 443, sni: None, hello: None, want: (true, "rule") },
                Case { entry: Connect, host: "www.linkedin.com", port: 443, sni: Some("www.linkedin.com"), hello: BROWSER, want: (true, "rule") },
                // A refusal is inspected to show its page over HTTPS.
                Case { entry: Connect, host: "www.tiktok.com", port: 443, sni: None, hello: None, want: (true, "rule") },
                // Refused by a built-in stage: no tunnel, nothing to decrypt.
                Case { entry: Connect, host: "www.tiktok.com", port: 8443, sni: None, hello: None, want: (false, "refused") },
                Case { entry: Request, host: "www.linkedin.com", port: 80, sni: None, hello: None, want: (false, "not-a-tunnel") },
                Case { entry: Connect, host: "www.whatsapp.com", port: 443, sni: None, hello: None, want: (false, "not-asked") },
                Case { entry: Connect, host: "quiet.example", port: 443, sni: None, hello: None, want: (false, "rule-says-no") },
                // The never list beats the rule that asks.
                Case { entry: Connect, host: "online.bank.example", port: 443, sni: None, hello: None, want: (false, "never-category") },
                Case { entry: Connect, host: "www.linkedin.com", port: 443, sni: Some("www.linkedin.com"), hello: None, want: (true, "rule") },
                Case { entry: Connect, host: "www.linkedin.com", port: 443, sni: Some("www.linkedin.com"), hello: pinned, want: (false, "learned-pinned") },
                Case { entry: Connect, host: "www.linkedin.com", port: 443, sni: Some("www.linkedin.com"), hello: imap, want: (false, "not-http") },
                Case { entry: Connect, host: "93.184.216.34", port: 443, sni: None, hello: BROWSER, want: (false, "not-asked") },
            ];
            for c in &cases {
                let a = verdict(&p, c);
                let what = format!(
                    "{:?} {}:{} sni {:?} hello {:?}",
                    c.entry, c.host, c.port, c.sni, c.hello
                );
                assert_eq!(
                    (a.inspect.inspect, a.inspect.why.as_str()),
                    c.want,
                    "{what}"
                );
            }
        }

        #[test]
        fn a_hello_without_a_name_cannot_be_inspected() {
            let (_d, p) = policy("", "block");
            let host = normalize_host("www.linkedin.com").unwrap();
            let facts = Facts {
                entry: Entry::Connect,
                client: "10.1.2.3".parse().unwrap(),
                user: None,
                host: &host,
                port: 443,
                resolved: None,
                sni: None,
                listeners: &[],
                hello: Some(TlsHello::BROWSER),
                spent: None,
                acknowledged: None,
                activity: None,
                original: None,
                resolved_by_parent: false,
            };
            let a = admit(&p, &facts, "2026-11-25T10:00:00Z".parse().unwrap());
            assert_eq!(a.inspect.why, InspectWhy::NoServerName);
        }

        #[test]
        fn the_default_and_the_never_lists_as_configured() {
            let (_d, p) = policy(
                "inspection: {default: true, never: {categories: [messaging, health], domains: [news.example]}}",
                "block",
            );
            use Entry::*;
            #[rustfmt::skip]
            let cases = [
                Case { entry: Connect, host: "example.org", port: 443, sni: None, hello: None, want: (true, "default") },
                Case { entry: Connect, host: "www.whatsapp.com", port: 443, sni: None, hello: None, want: (false, "never-category") },
                Case { entry: Connect, host: "www.clinic.example", port: 443, sni: None, hello: None, want: (false, "never-category") },
                Case { entry: Connect, host: "news.example", port: 443, sni: None, hello: None, want: (false, "never-domain") },
                // Categories listed replace the default list: finance is no longer in it.
                Case { entry: Connect, host: "bank.example", port: 443, sni: None, hello: None, want: (true, "rule") },
                Case { entry: Connect, host: "quiet.example", port: 443, sni: None, hello: None, want: (false, "rule-says-no") },
            ];
            for c in &cases {
                let a = verdict(&p, c);
                assert_eq!(
                    (a.inspect.inspect, a.inspect.why.as_str()),
                    c.want,
                    "{}",
                    c.host
                );
            }
        }

        #[test]
        fn encrypted_client_hello_behind_another_name_has_its_own_reason() {
            let ech = Some(TlsHello {
                ech: true,
                ..TlsHello::BROWSER
            });
            let c = Case {
                entry: Entry::Connect,
                host: "www.linkedin.com",
                port: 443,
                sni: Some("cloudflare-ech.com"),
                hello: ech,
                want: (false, "ech"),
            };
            let (_d, p) = policy("", "block");
            let a = verdict(&p, &c);
            assert!(a.refuses());
            assert_eq!(a.decision.reason, Reason::Ech);
            assert_eq!(&*a.decision.rule, "builtin:sni");
            assert!(!a.inspect.inspect);
            let (_d, p) = policy("", "allow");
            let a = verdict(&p, &c);
            assert!(
                !a.refuses(),
                "tunnels.ech: allow keeps the CONNECT decision"
            );
            assert_eq!(&*a.decision.rule, "linkedin-in");
            assert_eq!(a.decision.reason, Reason::Ech);
            assert_eq!((a.inspect.inspect, a.inspect.why.as_str()), c.want);
            // ECH GREASE (every Chromium hello) with the CONNECT host as its
            // name is an ordinary hello.
            let grease = Case {
                sni: Some("www.linkedin.com"),
                ..c
            };
            let a = verdict(&p, &grease);
            assert_eq!(a.decision.reason, Reason::RuleMatched);
            assert!(a.inspect.inspect);
            // Without ECH a different name is domain fronting.
            let fronting = Case {
                hello: BROWSER,
                ..grease
            };
            let fronting = Case {
                sni: Some("cloudflare-ech.com"),
                ..fronting
            };
            assert_eq!(verdict(&p, &fronting).decision.reason, Reason::SniMismatch);
        }

        #[test]
        fn a_never_category_must_exist() {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("catalog.yaml"), CATALOG).unwrap();
            std::fs::write(
                dir.path().join("policy.yaml"),
                "version: 1\ninspection: {never: {categories: [finanse]}, leaf_days: 400, ca_cert: x.pem}\n",
            )
            .unwrap();
            let e = load_dir(dir.path()).unwrap_err().to_string();
            assert!(
                e.contains("inspection.never.categories[0]: unknown category \"finanse\""),
                "{e}"
            );
            assert!(e.contains("did you mean \"finance\"?"), "{e}");
            assert!(
                e.contains("inspection.leaf_days: 400 days is out of range"),
                "{e}"
            );
            assert!(
                e.contains(
                    "inspection.ca_key: `inspection.ca_cert` is set but `inspection.ca_key` is not"
                ),
                "{e}"
            );
        }
    }

    /// Daily budgets, as a table: the spent amount is a fact like the
    /// acknowledgement, and the budget stage turns it into allow or the
    /// rule's action.
    mod budgets {
        use super::super::*;
        use crate::policy::budget::{BudgetState, Spent, SpentFact, MB};
        use crate::policy::load_dir;

        const CATALOG: &str = r#"
version: 1
categories: {social: Social, video: Video, professional: Professional}
platforms:
  tiktok: {name: TikTok, category: video, domains: [tiktok.com]}
  youtube: {name: YouTube, category: video, domains: [youtube.com]}
  linkedin: {name: LinkedIn, category: professional, domains: [linkedin.com]}
  facebook: {name: Facebook, category: social, domains: [facebook.com]}
"#;

        const POLICY: &str = r#"
version: 1
settings: {timezone: Europe/Berlin}
tunnels: {ports: [443]}
groups:
  staff: {networks: [10.0.0.0/8]}
rules:
  - {id: video-30m, groups: [staff], categories: [video], action: block, budget: {minutes: 30}, message: Thirty minutes of video a day.}
  - {id: linkedin-volume, groups: [staff], platforms: [linkedin], action: warn, budget: {megabytes: 500}, timezone: America/New_York}
  - {id: facebook-dry, groups: [staff], platforms: [facebook], action: block, mode: report, budget: {minutes: 10, megabytes: 100}}
"#;

        fn policy() -> (tempfile::TempDir, Policy) {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("catalog.yaml"), CATALOG).unwrap();
            std::fs::write(dir.path().join("policy.yaml"), POLICY).unwrap();
            let p = load_dir(dir.path()).unwrap_or_else(|e| panic!("{e}"));
            (dir, p)
        }

        const WORK: &str = "2026-11-25T10:00:00+01:00";

        fn facts<'a>(entry: Entry, host: &'a Host, spent: Option<SpentFact>) -> Facts<'a> {
            let port = if entry == Entry::Connect { 443 } else { 80 };
            Facts {
                resolved: Some(&[]),
                spent,
                ..Facts::new(entry, "10.1.2.3".parse().unwrap(), host, port)
            }
        }

        /// entry, host, spent => action, mode, reason, stage, budget state, warning
        type Case<'a> = (
            Entry,
            &'a str,
            Option<SpentFact>,
            (&'a str, &'a str, &'a str, Stage, &'a str, Option<Warning>),
        );

        fn known(minutes: u32, mb: u64) -> Option<SpentFact> {
            Some(SpentFact::Known(Spent {
                minutes,
                bytes: mb * MB,
            }))
        }

        #[test]
        fn a_budget_allows_until_spent_then_the_rules_action_applies() {
            use Entry::*;
            let (_d, p) = policy();
            let unavailable = Some(SpentFact::Unavailable);
            // entry, host, spent => action, mode, reason, stage, budget state, warning
            #[rustfmt::skip]
            let cases: &[Case] = &[
                // Not looked up yet: allowed for now, the shell looks it up.
                (Request, "www.youtube.com", None, ("allow", "enforce", "rule-matched", Stage::Destination, "unchecked", None)),
                (Request, "www.youtube.com", known(0, 0), ("allow", "enforce", "rule-matched", Stage::Budget, "left", None)),
                (Request, "www.tiktok.com", known(29, 9000), ("allow", "enforce", "rule-matched", Stage::Budget, "left", None)),
                (Request, "www.tiktok.com", known(30, 0), ("block", "enforce", "budget-exhausted", Stage::Budget, "exhausted", None)),
                (Connect, "www.youtube.com", known(45, 0), ("block", "enforce", "budget-exhausted", Stage::Budget, "exhausted", None)),
                // Redis down: decided without the budget.
                (Request, "www.tiktok.com", unavailable, ("allow", "enforce", "rule-matched", Stage::Budget, "unavailable", None)),
                // A warn rule warns once spent (a tunnel cannot show it).
                (Request, "www.linkedin.com", known(999, 499), ("allow", "enforce", "rule-matched", Stage::Budget, "left", None)),
                (Request, "www.linkedin.com", known(0, 500), ("warn", "enforce", "budget-exhausted", Stage::Warn, "exhausted", Some(Warning::Unchecked))),
                (Connect, "www.linkedin.com", known(0, 501), ("warn", "enforce", "budget-exhausted", Stage::Warn, "exhausted", Some(Warning::Unshown))),
                // Report mode: the would-be block is recorded, traffic passes.
                (Request, "www.facebook.com", known(10, 0), ("block", "report", "budget-exhausted", Stage::Budget, "exhausted", None)),
                (Request, "www.facebook.com", known(9, 99), ("allow", "report", "rule-matched", Stage::Budget, "left", None)),
            ];
            for (entry, host, spent, want) in cases {
                let h = normalize_host(host).unwrap();
                let f = facts(*entry, &h, *spent);
                let mut trace = Vec::new();
                let a = admit_traced(&p, &f, WORK.parse().unwrap(), &mut trace);
                let what = format!("{entry:?} {host} {spent:?}");
                let d = &a.decision;
                assert_eq!(d.action.as_str(), want.0, "action for {what}");
                assert_eq!(d.mode.as_str(), want.1, "mode for {what}");
                assert_eq!(d.reason.as_str(), want.2, "reason for {what}");
                assert_eq!(a.stage, want.3, "stage for {what}");
                assert_eq!(
                    d.budget.unwrap().state.as_str(),
                    want.4,
                    "budget for {what}"
                );
                assert_eq!(a.warning, want.5, "warning for {what}");
                if spent.is_some() {
                    let t = trace.iter().find(|t| t.rule == "stage:budget").unwrap();
                    assert_eq!(t.matched, a.refuses(), "{what}: {t:?}");
                    // The shell's later call agrees with admit given the fact at once.
                    let before = admit(&p, &facts(*entry, &h, None), WORK.parse().unwrap());
                    assert_eq!(
                        before.decision.budget.unwrap().state,
                        BudgetState::Unchecked
                    );
                    assert!(!before.refuses(), "unchecked never refuses: {what}");
                    let mut later = before.clone();
                    budget_stage(
                        &p,
                        *entry,
                        spent.unwrap(),
                        WORK.parse().unwrap(),
                        &mut later,
                    );
                    assert_eq!(later, a, "{what}");
                    // Given the day the ledger counted in, the same; a day
                    // that does not hold `now` is worked out again.
                    let rule = &p.rules[before.decision.budget.unwrap().rule as usize];
                    let b = rule.budget.as_ref().unwrap();
                    let now: Timestamp = WORK.parse().unwrap();
                    let yesterday = b.day(now - jiff::SignedDuration::from_hours(24));
                    for day in [b.day(now), yesterday] {
                        let mut later = before.clone();
                        budget_stage_in_day(&p, *entry, spent.unwrap(), day, now, &mut later);
                        assert_eq!(later, a, "{what}, counted in {}", day.date);
                    }
                }
            }
            // Rules without a budget carry none.
            let h = normalize_host("www.example.org").unwrap();
            let a = admit(
                &p,
                &facts(Request, &h, known(999, 999)),
                WORK.parse().unwrap(),
            );
            assert!(a.decision.budget.is_none());
        }

        #[test]
        fn what_is_left_and_when_it_renews_in_the_rules_time_zone() {
            let (_d, p) = policy();
            let h = normalize_host("www.tiktok.com").unwrap();
            let a = admit(
                &p,
                &facts(Entry::Request, &h, known(25, 0)),
                WORK.parse().unwrap(),
            );
            assert_eq!(
                a.decision.budget.unwrap().state,
                BudgetState::Left {
                    minutes: Some(5),
                    bytes: None,
                    renews: "2026-11-26T00:00:00+01:00".parse().unwrap(),
                }
            );
            // LinkedIn's budget renews at midnight in New York.
            let h = normalize_host("www.linkedin.com").unwrap();
            let a = admit(
                &p,
                &facts(Entry::Request, &h, known(0, 600)),
                WORK.parse().unwrap(),
            );
            assert_eq!(
                a.decision.budget.unwrap().state.renews(),
                Some("2026-11-26T00:00:00-05:00".parse().unwrap())
            );
            // Spent is per day: at 23:30 Berlin time it is already tomorrow
            // in Berlin, still today in New York.
            let late: Timestamp = "2026-11-25T23:30:00+01:00".parse().unwrap();
            let a = admit(&p, &facts(Entry::Request, &h, known(0, 0)), late);
            assert_eq!(
                a.decision.budget.unwrap().state.renews(),
                Some("2026-11-26T00:00:00-05:00".parse().unwrap())
            );
        }

        #[test]
        fn budget_settings_that_cannot_work_are_refused_with_a_fix() {
            let staff = "version: 1\ngroups:\n  staff:\n    networks: [10.0.0.0/8]\nrules:\n";
            #[rustfmt::skip]
            let cases: &[(&str, &str, &str, &str)] = &[
                ("  - {id: r, platforms: [tiktok], action: block, budget: {}}\n", "rules[0].budget", "needs `minutes:` or `megabytes:`", "budget: {minutes: 30}"),
                ("  - {id: r, platforms: [tiktok], action: block, budget: {minutes: 0}}\n", "rules[0].budget.minutes", "0 minutes is out of range", "use 1 to 1440"),
                ("  - {id: r, platforms: [tiktok], action: block, budget: {minutes: 1441}}\n", "rules[0].budget.minutes", "out of range", "use 1 to 1440"),
                ("  - {id: r, platforms: [tiktok], action: block, budget: {megabytes: 0}}\n", "rules[0].budget.megabytes", "out of range", "drop the budget"),
                ("  - {id: r, platforms: [tiktok], action: allow, budget: {minutes: 30}}\n", "rules[0].action", "cannot be `allow`", "`action: block`"),
                ("  - {id: r, platforms: [tiktok], action: read_only, budget: {minutes: 30}}\n", "rules[0].action", "cannot be `read_only`", "`action: warn`"),
                ("  - {id: r, platforms: [tiktok], action: block, budget: {minutes: 30}, timezone: Mars/Olympus}\n", "rules[0].timezone", "Mars/Olympus", "tz database"),
                ("  - {id: r, platforms: [tiktok], action: block, timezone: Europe/Berlin}\n", "rules[0].timezone", "without `when:` windows or a `budget:`", "remove `timezone:`"),
            ];
            for (rules, path, message, hint) in cases {
                let dir = tempfile::tempdir().unwrap();
                std::fs::write(dir.path().join("catalog.yaml"), CATALOG).unwrap();
                std::fs::write(dir.path().join("policy.yaml"), format!("{staff}{rules}")).unwrap();
                let errors = load_dir(dir.path()).unwrap_err().0;
                let e = errors
                    .iter()
                    .find(|e| e.path == *path)
                    .unwrap_or_else(|| panic!("no error at {path}: {errors:#?}"));
                let text = e.to_string();
                assert!(text.contains(message), "{message:?} not in {text}");
                assert!(text.contains(hint), "{hint:?} not in {text}");
            }
            // Keys the budget does not know, and negative amounts, are
            // refused by the parser with a place.
            for bad in ["budget: {hours: 1}", "budget: {minutes: -5}"] {
                let dir = tempfile::tempdir().unwrap();
                std::fs::write(dir.path().join("catalog.yaml"), CATALOG).unwrap();
                let text =
                    format!("{staff}  - {{id: r, platforms: [tiktok], action: block, {bad}}}\n");
                std::fs::write(dir.path().join("policy.yaml"), text).unwrap();
                let e = load_dir(dir.path()).unwrap_err().to_string();
                assert!(e.contains("policy.yaml:"), "{e}");
            }
        }
    }
}
