//! The request context: one [`Exchange`] carries a request or tunnel from
//! identify through admit and forward to its record.
//!
//! It holds the policy snapshot taken when the request arrived (every phase
//! uses that one snapshot, the writer's pseudonymisation choice included),
//! the event being filled in, and what the refusal pages need to know. It
//! ends in exactly one of two ways: a response the proxy makes up itself,
//! recorded at once ([`Exchange::refuse`], [`Exchange::fail`],
//! [`Exchange::finish`]), or a [`Pending`] record that the forwarded bodies
//! or the tunnel complete.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http::{Method, Response, StatusCode};

use super::body::Pending;
use super::headers::Presentation;
use super::identify::{identify, Identity};
use super::responses::{self, RequestView};
use super::upstream::{Destination, ProxyBody, UpstreamError};
use super::ProxyState;
use crate::event::{AuthMethod, Event, Kind};
use crate::outcome::{Action, ErrorKind, Mode, Reason};
use crate::policy::{admit, destination_check, Admission, Decision, Entry, Facts, Host, Policy};

/// Why an exchange ends before anything is forwarded.
pub enum Stop {
    /// The policy refuses it.
    Refuse(Decision),
    /// The destination cannot be reached (resolution failed).
    Fail(ErrorKind, String),
}

pub struct Exchange {
    /// The snapshot this exchange is decided on, from start to record.
    pub policy: Arc<Policy>,
    pub started: Instant,
    pub peer: SocketAddr,
    pub event: Event,
    /// A browser page load: counts as foreground use.
    pub navigation: bool,
    /// What the request does, once recognised; `None` for a tunnel.
    pub activity: Option<crate::policy::activity::Activity>,
    /// Where a redirected connection was going (transparent mode): the
    /// client is known by its address only, and the destination must be
    /// where it was going.
    pub original: Option<SocketAddr>,
    /// How the proxy's own answers are shown: an HTML page, JSON for API
    /// calls, or plain text.
    pub presentation: Presentation,
    /// What the traffic spends of the deciding rule's daily budget, once
    /// admitted under one; handed to the record with the event.
    pub charge: Option<crate::budget::Charge>,
}

impl Exchange {
    /// Starts an exchange on the current policy snapshot.
    pub fn begin(
        state: &ProxyState,
        kind: Kind,
        peer: SocketAddr,
        method: &Method,
        host: String,
        port: u16,
    ) -> Exchange {
        let policy = state.policy.load();
        let event = Event {
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
            tls: None,
            platform: None,
            category: None,
            class: None,
            activity: None,
            signature: None,
            activity_unseen: None,
            foreground: false,
            action: Action::Allow,
            mode: Mode::Enforce,
            rule: Reason::RuleMatched.builtin_rule_arc(),
            reason: Reason::RuleMatched,
            warn: None,
            budget: None,
            status: 0,
            bytes_up: 0,
            bytes_down: 0,
            duration_ms: 0,
            error: None,
            parent: None,
            parent_status: None,
            original_dst: None,
            request_reason: None,
            pseudonymize: policy.logging.pseudonymize,
        };
        Exchange {
            policy,
            started: Instant::now(),
            peer,
            event,
            navigation: false,
            activity: None,
            original: None,
            presentation: Presentation::Text,
            charge: None,
        }
    }

    /// Marks the exchange as arriving on the transparent listener, bound
    /// for `original`.
    pub fn redirected(&mut self, original: SocketAddr) {
        self.original = Some(original);
        self.event.original_dst = Some(original);
    }

    pub fn identified(&mut self, id: &Identity) {
        self.event.user.clone_from(&id.user);
        self.event.auth = id.auth;
    }

    /// The identify and admit phases, on this exchange's snapshot: who is
    /// asking, then the stages that need no DNS answer (rules, port, an IP
    /// literal's address). A refusal comes back as the decision to answer.
    pub async fn identify_and_admit(
        &mut self,
        state: &ProxyState,
        headers: &http::HeaderMap,
        entry: Entry,
        host: &Host,
        port: u16,
    ) -> Result<(Identity, Admission), Decision> {
        let identity = match self.original {
            // A redirected client does not know it talks to a proxy: it
            // sends no proxy credentials, and no identity header is trusted.
            Some(_) => Identity {
                user: None,
                auth: AuthMethod::None,
            },
            None => identify(state, &self.policy, self.peer.ip(), headers)
                .await
                .map_err(Decision::builtin)?,
        };
        self.identified(&identity);
        let admission = self.admit_as(state, &identity, entry, host, port, None);
        Ok((identity, admission))
    }

    /// The admit phase for a client identified already (a request inside
    /// an inspected tunnel is the tunnel's client), on this exchange's
    /// snapshot; `resolved` is the address already connected to, if any.
    /// A deciding rule with a budget is settled here too: the spent amount
    /// comes from the budget ledger (memory), and the exchange keeps the
    /// charge for what it lets through.
    pub fn admit_as(
        &mut self,
        state: &ProxyState,
        identity: &Identity,
        entry: Entry,
        host: &Host,
        port: u16,
        resolved: Option<&[std::net::IpAddr]>,
    ) -> Admission {
        let facts = Facts {
            entry,
            client: self.peer.ip(),
            user: identity.user.as_deref(),
            host,
            port,
            resolved,
            sni: None,
            listeners: &state.listeners,
            activity: self.activity,
            resolved_by_parent: false,
            original: self.original,
            acknowledged: None,
            hello: None,
            spent: None,
        };
        let t0 = Instant::now();
        let mut admission = admit(&self.policy, &facts, state.config.clock.now());
        let person = crate::warn::Person::of(identity.user.as_deref(), self.peer.ip());
        self.charge = state
            .budgets
            .settle(&self.policy, entry, person, &mut admission);
        state.metrics.observe_decision_time(t0.elapsed());
        admission
    }

    /// Answers 421 Misdirected Request (RFC 9110 §15.5.20): this
    /// connection cannot serve the request, and the client may retry it on
    /// a new one, which is then judged for what it names. Recorded.
    pub fn misdirected(self, state: &ProxyState, detail: &str) -> Response<ProxyBody> {
        let resp = responses::error(StatusCode::MISDIRECTED_REQUEST, "misdirected", detail);
        self.finish(state, resp)
    }

    /// Resolves `host` (an IP literal is its own address) and runs the
    /// policy's destination stage on every address, on this exchange's
    /// snapshot; says which way the traffic leaves (direct, or through the
    /// parent proxy unless `--no-proxy` lists it). With
    /// `--upstream-proxy-dns parent`, a name bound for the parent is not
    /// resolved here and the stage checks what it can without addresses.
    /// `decision` is what the earlier stages allowed.
    pub async fn resolve_and_admit(
        &mut self,
        state: &ProxyState,
        host: &Host,
        port: u16,
        decision: &Decision,
    ) -> Result<Destination, Stop> {
        let parent = state.parent.as_ref().map(|p| &p.config);
        let parent_resolves = parent.is_some_and(|p| p.resolves(host, self.original.is_some()));
        let addrs: Arc<[std::net::IpAddr]> = match host {
            _ if parent_resolves => Arc::from([]),
            Host::Ip(ip) => Arc::from([*ip]),
            Host::Name(n) | Host::Numeric(n) => state
                .resolver
                .resolve(n)
                .await
                .map_err(|e| Stop::Fail(e.kind(), e.to_string()))?,
        };
        let facts = Facts {
            entry: match self.event.kind {
                Kind::Tunnel => Entry::Connect,
                Kind::Request | Kind::AccessRequest => Entry::Request,
            },
            client: self.peer.ip(),
            user: self.event.user.as_deref(),
            host,
            port,
            resolved: (!parent_resolves).then_some(&addrs[..]),
            sni: None,
            listeners: &state.listeners,
            resolved_by_parent: parent_resolves,
            original: self.original,
            activity: self.activity,
            acknowledged: None,
            hello: None,
            spent: None,
        };
        if let Some(reason) = destination_check(&self.policy, &facts) {
            return Err(Stop::Refuse(decision.refused_for(reason)));
        }
        let via_parent = parent_resolves || parent.is_some_and(|p| p.carries(host, Some(&addrs)));
        if via_parent {
            self.event.parent = parent.map(|p| Arc::from(p.address()));
        }
        Ok(Destination {
            addrs,
            via_parent,
            resolved_by_parent: parent_resolves,
            pinned: self.original.map(|o| o.ip()),
        })
    }

    /// Ends the exchange with the error for a failed upstream connection
    /// (the parent's status recorded when the parent refused), and records it.
    pub fn fail_upstream(mut self, state: &ProxyState, e: &UpstreamError) -> Response<ProxyBody> {
        self.event.parent_status = e.parent_status();
        self.fail(state, e.kind(), &e.to_string())
    }

    /// Ends the exchange with the response for `stop`, and records it.
    pub fn stop(self, state: &ProxyState, stop: Stop) -> Response<ProxyBody> {
        match stop {
            Stop::Refuse(d) => self.refuse(state, d),
            Stop::Fail(kind, detail) => self.fail(state, kind, &detail),
        }
    }

    /// Copies a decision into the event (the group list is moved out).
    pub fn apply(&mut self, d: &mut Decision) {
        self.event.groups = std::mem::take(&mut d.groups);
        apply_keeping_groups(&mut self.event, d);
    }

    /// Answers with the refusal for `d`, and records it.
    pub fn refuse(mut self, state: &ProxyState, mut d: Decision) -> Response<ProxyBody> {
        if !d.groups.is_empty() || self.event.groups.is_empty() {
            self.apply(&mut d);
        } else {
            apply_keeping_groups(&mut self.event, &d);
        }
        let connect = self.event.kind == Kind::Tunnel;
        let access = if connect || self.presentation != Presentation::Html {
            None
        } else {
            self.access_offer(state, &d)
        };
        let view = RequestView {
            presentation: self.presentation,
            host: &self.event.host,
            connect,
            access,
        };
        let mut resp = responses::refusal(&d, &self.policy, &view);
        if self.original.is_some() {
            resp = responses::for_redirected_client(resp);
        }
        self.finish(state, resp)
    }

    /// The "Request access" form for a page refused by an enforced block
    /// rule with `request_access`: a token for this person, rule and
    /// platform, valid for an hour, made for the own name.
    fn access_offer(&self, state: &ProxyState, d: &Decision) -> Option<responses::AccessOffer> {
        if d.action != Action::Block || d.mode != Mode::Enforce {
            return None;
        }
        let rule = self.policy.rules.iter().find(|r| r.id == d.rule)?;
        if !rule.request_access {
            return None;
        }
        let person = crate::warn::Person::of(self.event.user.as_deref(), self.peer.ip());
        let scope = crate::warn::Scope::new(&d.rule, d.platform.as_deref(), &self.event.host);
        let now = state.config.clock.now();
        let expires = now
            .checked_add(std::time::Duration::from_secs(3600))
            .unwrap_or(now);
        let own = &self.policy.settings.transparency_host;
        let path = crate::requests::token_path(&self.event.host);
        let token = state.warn.key.sign(&person, &scope, own, &path, expires);
        // Inside an inspected tunnel the form posts back to the site's own
        // origin over the same TLS session (see INSPECTED_REQUEST_PATH).
        let action = if self.event.tls == Some(crate::event::Tls::Intercepted) {
            crate::requests::INSPECTED_REQUEST_PATH.to_string()
        } else {
            format!("http://{own}{}", crate::requests::REQUEST_PATH)
        };
        Some(responses::AccessOffer { action, token })
    }

    /// Refuses a malformed request (400, 431, 501) as the client's fault.
    pub fn bad_request(
        mut self,
        state: &ProxyState,
        status: StatusCode,
        error: Option<ErrorKind>,
        detail: &str,
    ) -> Response<ProxyBody> {
        apply_keeping_groups(&mut self.event, &Decision::builtin(Reason::BadRequest));
        self.event.error = error;
        let label = error.map_or("bad-request", ErrorKind::as_str);
        let mut resp = responses::error(status, label, detail);
        // What follows a malformed request on the connection cannot be trusted.
        resp.headers_mut().insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
        self.finish(state, resp)
    }

    /// Answers with the error response for `kind`, and records it.
    pub fn fail(
        mut self,
        state: &ProxyState,
        kind: ErrorKind,
        detail: &str,
    ) -> Response<ProxyBody> {
        self.event.error = Some(kind);
        let resp = responses::failure_for(
            kind,
            detail,
            self.presentation,
            &self.event.host,
            &self.policy,
        );
        self.finish(state, resp)
    }

    /// Records the exchange as ending with `resp`, made by the proxy.
    pub fn finish(mut self, state: &ProxyState, resp: Response<ProxyBody>) -> Response<ProxyBody> {
        self.event.status = resp.status().as_u16();
        self.event.duration_ms = self.started.elapsed().as_millis() as u64;
        state.recorder.record(self.event);
        resp
    }

    /// Hands the event to a [`Pending`] record that the forwarded bodies or
    /// the tunnel complete; keeps the snapshot for what follows.
    pub fn into_pending(mut self, state: &ProxyState) -> (Pending, Arc<Policy>) {
        let mut pending = Pending::new(self.event, self.started, state.recorder.clone());
        if let Some(mut charge) = self.charge.take() {
            // The traffic goes on: it is use from now.
            charge.hit();
            pending.charge = Some(charge);
        }
        (pending, self.policy)
    }
}

/// Copies a decision into an event, leaving `groups` as it is.
pub fn apply_keeping_groups(ev: &mut Event, d: &Decision) {
    ev.group.clone_from(&d.group);
    ev.platform.clone_from(&d.platform);
    ev.category.clone_from(&d.category);
    ev.class = d.class;
    ev.action = d.action;
    ev.mode = d.mode;
    ev.rule = d.rule.clone();
    ev.reason = d.reason;
    ev.activity_unseen.clone_from(&d.activity_unseen);
    ev.budget = d
        .budget
        .and_then(|b| crate::outcome::BudgetOutcome::of(&b.state));
}
