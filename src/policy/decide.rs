//! The decision function: who may reach what, now.
//!
//! [`decide`] is pure: it reads the compiled policy, the request facts and
//! the `now` it is given, and returns a [`Decision`] value. No IO, no clock,
//! no allocation beyond the decision itself. A deny is an outcome here, not
//! an error. The same decision feeds the refusal page, the response headers,
//! the access log and the metrics, so its strings are stable labels.

use std::net::IpAddr;
use std::sync::Arc;

use jiff::Timestamp;

use super::{Action, Class, Host, Mode, Policy};

/// What is known about a request when it is decided.
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts<'a> {
    pub client: IpAddr,
    /// The authenticated user, if any.
    pub user: Option<&'a str>,
    pub host: &'a Host,
    pub port: u16,
}

/// Why a decision came out as it did. Stable labels: used in logs, metric
/// labels, response headers and refusal pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    RuleMatched,
    DefaultCatalog,
    DefaultEmbedded,
    DefaultOther,
    NotAMember,
    AuthRequired,
    AuthFailed,
    DestinationPrivate,
    DestinationSelf,
    PortNotAllowed,
    SniMismatch,
    BadRequest,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::RuleMatched => "rule-matched",
            Reason::DefaultCatalog => "default-catalog",
            Reason::DefaultEmbedded => "default-embedded",
            Reason::DefaultOther => "default-other",
            Reason::NotAMember => "not-a-member",
            Reason::AuthRequired => "auth-required",
            Reason::AuthFailed => "auth-failed",
            Reason::DestinationPrivate => "destination-private",
            Reason::DestinationSelf => "destination-self",
            Reason::PortNotAllowed => "port-not-allowed",
            Reason::SniMismatch => "sni-mismatch",
            Reason::BadRequest => "bad-request",
        }
    }

    /// The pseudo-rule id recorded when no policy rule decided.
    pub fn builtin_rule(self) -> &'static str {
        match self {
            Reason::RuleMatched => "",
            Reason::DefaultCatalog => "default:catalog",
            Reason::DefaultEmbedded => "default:embedded",
            Reason::DefaultOther => "default:other",
            Reason::NotAMember | Reason::AuthRequired | Reason::AuthFailed => "builtin:identity",
            Reason::DestinationPrivate | Reason::DestinationSelf => "builtin:destination",
            Reason::PortNotAllowed => "builtin:tunnel",
            Reason::SniMismatch => "builtin:sni",
            Reason::BadRequest => "builtin:request",
        }
    }

    /// A sentence for people, used on refusal pages and by `explain`.
    pub fn explain(self) -> &'static str {
        match self {
            Reason::RuleMatched => "a policy rule applies to this site for you",
            Reason::DefaultCatalog => "no rule matched; the policy default for catalog platforms applies",
            Reason::DefaultEmbedded => "no rule matched; the policy default for embedded widgets applies",
            Reason::DefaultOther => "the site is on no catalog platform; the policy default applies",
            Reason::NotAMember => "your computer is not in any group allowed to use this proxy",
            Reason::AuthRequired => "this proxy needs your user name and password",
            Reason::AuthFailed => "the user name or password was not accepted",
            Reason::DestinationPrivate => "the destination is an internal, loopback or link-local address",
            Reason::DestinationSelf => "the destination is this proxy itself",
            Reason::PortNotAllowed => "encrypted tunnels are only allowed to the configured ports",
            Reason::SniMismatch => "the encrypted connection named a different site than it asked for (domain fronting)",
            Reason::BadRequest => "the request could not be understood",
        }
    }
}

/// The outcome for one request, as a value.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub action: Action,
    pub mode: Mode,
    /// The deciding rule's id, or a pseudo-rule (`default:catalog`, ...).
    pub rule: Arc<str>,
    pub reason: Reason,
    pub platform: Option<Arc<str>>,
    pub platform_name: Option<Arc<str>>,
    pub category: Option<Arc<str>>,
    pub class: Option<Class>,
    /// The group the decision was made for.
    pub group: Option<Arc<str>>,
    /// Every group the client is in.
    pub groups: Vec<Arc<str>>,
    /// The rule's message for refusal pages.
    pub message: Option<Arc<str>>,
}

impl Decision {
    /// True when traffic must be refused: a block that is enforced.
    pub fn refuses(&self) -> bool {
        self.action == Action::Block && self.mode == Mode::Enforce
    }

    /// A refusal made before any rule was consulted (identity, request shape,
    /// destination).
    pub fn builtin(reason: Reason) -> Self {
        Decision {
            action: Action::Block,
            mode: Mode::Enforce,
            rule: Arc::from(reason.builtin_rule()),
            reason,
            platform: None,
            platform_name: None,
            category: None,
            class: None,
            group: None,
            groups: Vec::new(),
            message: None,
        }
    }

    /// Turns this decision into a built-in refusal, keeping what is known
    /// about the destination and the client.
    pub fn refused_for(&self, reason: Reason) -> Self {
        Decision {
            action: Action::Block,
            mode: Mode::Enforce,
            rule: Arc::from(reason.builtin_rule()),
            reason,
            message: None,
            ..self.clone()
        }
    }
}

/// One rule considered by [`decide_traced`], for `explain`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceStep {
    pub rule: String,
    pub matched: bool,
    /// Why the rule did or did not match.
    pub note: String,
}

/// Decides a request under `policy` at `now`.
pub fn decide(policy: &Policy, facts: &RequestFacts<'_>, now: Timestamp) -> Decision {
    decide_inner(policy, facts, now, None)
}

/// Like [`decide`], and also records every rule considered.
pub fn decide_traced(
    policy: &Policy,
    facts: &RequestFacts<'_>,
    now: Timestamp,
    trace: &mut Vec<TraceStep>,
) -> Decision {
    decide_inner(policy, facts, now, Some(trace))
}

fn decide_inner(
    policy: &Policy,
    facts: &RequestFacts<'_>,
    now: Timestamp,
    mut trace: Option<&mut Vec<TraceStep>>,
) -> Decision {
    let group_ids = policy.groups_of(facts.client, facts.user);
    let groups: Vec<Arc<str>> = group_ids
        .iter()
        .map(|&g| policy.groups[g as usize].name.clone())
        .collect();

    // Where the request goes: a catalog platform (primary or embedded), and
    // which rules name the host among their extra domains.
    let name = facts.host.name();
    let hit = name.and_then(|n| policy.domains.lookup(n)).map(|(_, h)| *h);
    let rule_domain_hits: &[u16] = name
        .and_then(|n| policy.rule_domains.lookup(n))
        .map(|(_, v)| v.as_slice())
        .unwrap_or(&[]);
    let platform = hit.map(|h| &policy.platforms[h.platform as usize]);

    let mut decision = Decision {
        action: Action::Allow,
        mode: Mode::Enforce,
        rule: Arc::from(""),
        reason: Reason::DefaultOther,
        platform: platform.map(|p| p.id.clone()),
        platform_name: platform.map(|p| p.name.clone()),
        category: platform.map(|p| p.category.clone()),
        class: hit.map(|h| h.class),
        group: groups.first().cloned(),
        groups,
        message: None,
    };

    if group_ids.is_empty() && facts.user.is_none() {
        if let Some(t) = trace.as_deref_mut() {
            t.push(TraceStep {
                rule: Reason::NotAMember.builtin_rule().into(),
                matched: true,
                note: format!(
                    "client {} is in no group and not authenticated",
                    facts.client
                ),
            });
        }
        return decision.refused_for(Reason::NotAMember);
    }

    for (idx, rule) in policy.rules.iter().enumerate() {
        // Who.
        let mut rule_group = None;
        let who = if rule.groups.is_empty() && rule.users.is_empty() {
            true
        } else {
            rule_group = rule.groups.iter().find(|g| group_ids.contains(g)).copied();
            rule_group.is_some() || facts.user.is_some_and(|u| rule.users.contains(u))
        };
        if !who {
            note(&mut trace, rule, false, || {
                "not for this client's groups or user".into()
            });
            continue;
        }
        // What.
        let what = if rule.matches_any_destination() {
            true
        } else {
            let by_platform = match (&rule.platforms, hit) {
                (Some(mask), Some(h)) => {
                    mask[h.platform as usize]
                        && (h.class == Class::Primary || rule.include_embedded)
                }
                _ => false,
            };
            by_platform || (rule.has_domains && rule_domain_hits.contains(&(idx as u16)))
        };
        if !what {
            note(&mut trace, rule, false, || {
                "does not cover this destination".into()
            });
            continue;
        }
        // When.
        if let Some(schedule) = &rule.schedule {
            if !schedule.contains(now) {
                note(&mut trace, rule, false, || {
                    format!("outside its time windows ({})", schedule.tz_name)
                });
                continue;
            }
        }
        note(&mut trace, rule, true, || {
            format!("matches: {} ({})", rule.action.as_str(), rule.mode.as_str())
        });
        decision.action = rule.action;
        decision.mode = rule.mode;
        decision.rule = rule.id.clone();
        decision.reason = Reason::RuleMatched;
        decision.message = rule.message.clone();
        if let Some(g) = rule_group {
            decision.group = Some(policy.groups[g as usize].name.clone());
        }
        return decision;
    }

    let (action, reason) = match hit.map(|h| h.class) {
        Some(Class::Primary) => (policy.defaults.catalog, Reason::DefaultCatalog),
        Some(Class::Embedded) => (policy.defaults.embedded, Reason::DefaultEmbedded),
        None => (policy.defaults.other, Reason::DefaultOther),
    };
    if let Some(t) = trace {
        t.push(TraceStep {
            rule: reason.builtin_rule().into(),
            matched: true,
            note: format!("no rule matched; default {}", action.as_str()),
        });
    }
    decision.action = action;
    decision.reason = reason;
    decision.rule = Arc::from(reason.builtin_rule());
    decision
}

fn note(
    trace: &mut Option<&mut Vec<TraceStep>>,
    rule: &super::Rule,
    matched: bool,
    text: impl FnOnce() -> String,
) {
    if let Some(t) = trace.as_deref_mut() {
        t.push(TraceStep {
            rule: rule.id.to_string(),
            matched,
            note: text(),
        });
    }
}
