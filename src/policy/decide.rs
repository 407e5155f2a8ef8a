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

use super::activity::Activity;
use super::{Action, Class, Host, Mode, Policy};

/// What is known about a request when it is decided.
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts<'a> {
    pub client: IpAddr,
    /// The authenticated user, if any.
    pub user: Option<&'a str>,
    pub host: &'a Host,
    pub port: u16,
    /// What the request does; `None` where it cannot be seen (a tunnel).
    pub activity: Option<Activity>,
}

/// Why a decision came out as it did. Stable labels: used in logs, metric
/// labels, response headers and refusal pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
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
    DestinationMismatch,
    /// The ClientHello carries Encrypted Client Hello behind a public name
    /// other than the CONNECT host; `tunnels.ech` decides.
    Ech,
    /// The deciding rule's daily budget is spent: its action applies.
    BudgetExhausted,
    /// socialgate's own page (`settings.transparency_host`): answered by
    /// the proxy itself over plain HTTP, never forwarded, resolved or
    /// tunnelled to.
    OwnPage,
}

impl Reason {
    /// Every reason, in declaration order (`ALL[r as usize] == r`).
    pub const ALL: [Reason; 16] = [
        Reason::RuleMatched,
        Reason::DefaultCatalog,
        Reason::DefaultEmbedded,
        Reason::DefaultOther,
        Reason::NotAMember,
        Reason::AuthRequired,
        Reason::AuthFailed,
        Reason::DestinationPrivate,
        Reason::DestinationSelf,
        Reason::PortNotAllowed,
        Reason::SniMismatch,
        Reason::BadRequest,
        Reason::DestinationMismatch,
        Reason::Ech,
        Reason::BudgetExhausted,
        Reason::OwnPage,
    ];

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
            Reason::DestinationMismatch => "destination-mismatch",
            Reason::Ech => "ech",
            Reason::BudgetExhausted => "budget-exhausted",
            Reason::OwnPage => "own-page",
        }
    }

    /// The pseudo-rule id recorded when no policy rule decided.
    pub fn builtin_rule(self) -> &'static str {
        match self {
            Reason::RuleMatched | Reason::BudgetExhausted => "",
            Reason::DefaultCatalog => "default:catalog",
            Reason::DefaultEmbedded => "default:embedded",
            Reason::DefaultOther => "default:other",
            Reason::NotAMember | Reason::AuthRequired | Reason::AuthFailed => "builtin:identity",
            Reason::DestinationPrivate | Reason::DestinationSelf | Reason::DestinationMismatch => {
                "builtin:destination"
            }
            Reason::PortNotAllowed => "builtin:tunnel",
            Reason::SniMismatch | Reason::Ech => "builtin:sni",
            Reason::BadRequest => "builtin:request",
            Reason::OwnPage => "builtin:own-page",
        }
    }

    /// [`Self::builtin_rule`] as a shared string, allocated once per process.
    pub fn builtin_rule_arc(self) -> Arc<str> {
        static ALL: std::sync::OnceLock<[Arc<str>; Reason::ALL.len()]> = std::sync::OnceLock::new();
        let all = ALL.get_or_init(|| Reason::ALL.map(|r| Arc::from(r.builtin_rule())));
        all[self as usize].clone()
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
            Reason::DestinationMismatch => "the site the request names is not where the connection was going",
            Reason::Ech => "the encrypted connection hides the site it goes to behind a public name (Encrypted Client Hello)",
            Reason::BudgetExhausted => "your daily budget for this site under a policy rule is used up",
            Reason::OwnPage => "this name is socialgate's own page about what applies to you: the proxy answers it itself, over plain HTTP only, and never connects anywhere for it",
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
    /// The first rule that would have applied had the activity been seen
    /// (an `activities:` condition or `read_only` on a tunnel that is not
    /// inspected): the decision fell back to the site level.
    pub activity_unseen: Option<Arc<str>>,
    /// The deciding rule's `inspect:`; `None` when it says nothing or no
    /// rule decided (then `inspection.default` applies).
    pub inspect: Option<bool>,
    /// Set when the deciding rule has a daily budget: where the person
    /// stands with it (see [`super::budget`]).
    pub budget: Option<super::budget::BudgetView>,
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
            rule: reason.builtin_rule_arc(),
            reason,
            platform: None,
            platform_name: None,
            category: None,
            class: None,
            group: None,
            groups: Vec::new(),
            message: None,
            activity_unseen: None,
            inspect: None,
            budget: None,
        }
    }

    /// Turns this decision into a built-in refusal, keeping what is known
    /// about the destination and the client.
    pub fn refused_for(&self, reason: Reason) -> Self {
        Decision {
            action: Action::Block,
            mode: Mode::Enforce,
            rule: reason.builtin_rule_arc(),
            reason,
            message: None,
            inspect: None,
            budget: None,
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
    let groups = policy.groups_of(facts.client, facts.user);
    decide_inner(policy, facts, &groups, now, None)
}

/// Like [`decide`], with the client's group indices given instead of
/// derived from its address and user (used to replay logs, where users are
/// pseudonyms).
pub fn decide_in_groups(
    policy: &Policy,
    facts: &RequestFacts<'_>,
    groups: &[u16],
    now: Timestamp,
) -> Decision {
    decide_inner(policy, facts, groups, now, None)
}

/// Like [`decide`], and also records every rule considered.
pub fn decide_traced(
    policy: &Policy,
    facts: &RequestFacts<'_>,
    now: Timestamp,
    trace: &mut Vec<TraceStep>,
) -> Decision {
    let groups = policy.groups_of(facts.client, facts.user);
    decide_inner(policy, facts, &groups, now, Some(trace))
}

/// The rules stage of [`super::admit`]: [`decide`] with the client's group
/// indices given or derived, and an optional trace.
pub(crate) fn decide_with(
    policy: &Policy,
    facts: &RequestFacts<'_>,
    groups: Option<&[u16]>,
    now: Timestamp,
    trace: Option<&mut Vec<TraceStep>>,
) -> Decision {
    match groups {
        Some(g) => decide_inner(policy, facts, g, now, trace),
        None => {
            let g = policy.groups_of(facts.client, facts.user);
            decide_inner(policy, facts, &g, now, trace)
        }
    }
}

fn decide_inner(
    policy: &Policy,
    facts: &RequestFacts<'_>,
    group_ids: &[u16],
    now: Timestamp,
    mut trace: Option<&mut Vec<TraceStep>>,
) -> Decision {
    let groups: Vec<Arc<str>> = group_ids
        .iter()
        .map(|&g| policy.groups[g as usize].name.clone())
        .collect();

    // Where the request goes: a catalog platform (primary or embedded), and
    // which rules name the host among their extra domains.
    let name = facts.host.name();
    let hit = name.and_then(|n| policy.domains.lookup(n)).map(|(_, h)| *h);
    // A rule naming `example.com` covers `www.example.com` even when another
    // rule names `www.example.com` itself: gather every level.
    let mut rule_domain_hits: Vec<u16> = Vec::new();
    if let Some(n) = name {
        for v in policy.rule_domains.lookup_all(n) {
            rule_domain_hits.extend_from_slice(v);
        }
    }
    let platform = hit.map(|h| &policy.platforms[h.platform as usize]);

    let mut decision = Decision {
        action: Action::Allow,
        mode: Mode::Enforce,
        rule: Reason::RuleMatched.builtin_rule_arc(),
        reason: Reason::DefaultOther,
        platform: platform.map(|p| p.id.clone()),
        platform_name: platform.map(|p| p.name.clone()),
        category: platform.map(|p| p.category.clone()),
        class: hit.map(|h| h.class),
        group: groups.first().cloned(),
        groups,
        message: None,
        activity_unseen: None,
        inspect: None,
        budget: None,
    };

    // Who may use the proxy at all: a client with no user must be in a
    // group by its address, and must sign in when the policy requires it
    // from everyone; where an htpasswd file exists, missing credentials are
    // asked for (407) instead of refused outright.
    if facts.user.is_none() {
        let can_sign_in = policy.auth.htpasswd.is_some();
        let refusal = if can_sign_in && (policy.auth.required || group_ids.is_empty()) {
            Some((
                Reason::AuthRequired,
                if policy.auth.required {
                    "the policy requires every client to sign in".to_string()
                } else {
                    format!(
                        "client {} is in no group: credentials are needed",
                        facts.client
                    )
                },
            ))
        } else if group_ids.is_empty() {
            Some((
                Reason::NotAMember,
                format!(
                    "client {} is in no group and not authenticated",
                    facts.client
                ),
            ))
        } else {
            None
        };
        if let Some((reason, note)) = refusal {
            if let Some(t) = trace.as_deref_mut() {
                t.push(TraceStep {
                    rule: reason.builtin_rule().into(),
                    matched: true,
                    note,
                });
            }
            return decision.refused_for(reason);
        }
    }

    // The `inspect:` of the first activity rule that covers a tunnel but
    // cannot judge it: it applies unless the deciding rule says otherwise.
    let mut unseen_inspect: Option<bool> = None;
    for (idx, rule) in policy.rules.iter().enumerate() {
        // Who.
        let (who, rule_group) = rule.applies_to(group_ids, facts.user);
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
        // Activity: what the person does, where it can be seen.
        if let Some(mask) = rule.activities {
            match facts.activity {
                Some(a) if mask.contains(a) => {}
                Some(a) => {
                    note(&mut trace, rule, false, || {
                        format!("not for this activity ({})", a.as_str())
                    });
                    continue;
                }
                None => {
                    decision
                        .activity_unseen
                        .get_or_insert_with(|| rule.id.clone());
                    // It cannot judge a tunnel, but it can ask for the
                    // tunnel to be decrypted so that it judges each request.
                    if unseen_inspect.is_none() {
                        unseen_inspect = rule.inspect;
                    }
                    note(&mut trace, rule, false, || {
                        match rule.inspect {
                        Some(true) => "its activities are judged on each request: it asks for the tunnel to be inspected; \
                             the site-level rules decide the tunnel"
                            .into(),
                        _ => "its activities cannot be seen in a tunnel that is not inspected; \
                             the site-level rules decide"
                            .into(),
                    }
                    });
                    continue;
                }
            }
        }
        let action = match rule.read_only {
            None => rule.action,
            Some(unknown) => match facts.activity {
                Some(a) if a.is_write() => Action::Block,
                Some(Activity::Unknown) if unknown == Action::Block => Action::Block,
                Some(_) => Action::Allow,
                None => {
                    decision
                        .activity_unseen
                        .get_or_insert_with(|| rule.id.clone());
                    Action::Allow
                }
            },
        };
        let budgeted = rule.budget.as_ref().filter(|_| rule.read_only.is_none());
        note(&mut trace, rule, true, || {
            if let Some(b) = budgeted {
                return format!(
                    "matches: allow until the person's daily budget of {} is spent, then {} ({})",
                    b.describe(),
                    action.as_str(),
                    rule.mode.as_str()
                );
            }
            match (rule.read_only, facts.activity) {
            (Some(_), Some(a)) => format!(
                "matches: read_only, {} is {} ({})",
                a.as_str(),
                if action == Action::Block { "refused" } else { "allowed" },
                rule.mode.as_str()
            ),
            (Some(_), None) => format!(
                "matches: read_only, but writes cannot be seen in a tunnel that is not inspected: allow ({})",
                rule.mode.as_str()
            ),
            (None, _) => format!("matches: {} ({})", action.as_str(), rule.mode.as_str()),
        }
        });
        decision.action = action;
        if budgeted.is_some() {
            // Allowed until the spent amount (a fact the shell looks up)
            // says otherwise: see `super::admit::budget_stage`.
            decision.action = Action::Allow;
            decision.budget = Some(super::budget::BudgetView {
                rule: idx as u16,
                state: super::budget::BudgetState::Unchecked,
            });
        }
        decision.mode = rule.mode;
        decision.rule = rule.id.clone();
        decision.reason = Reason::RuleMatched;
        decision.message = rule.message.clone();
        decision.inspect = rule.inspect.or(unseen_inspect);
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
    decision.rule = reason.builtin_rule_arc();
    decision.inspect = unseen_inspect;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{load_dir, normalize_host};

    const CATALOG: &str = r#"
version: 1
categories: {social: Social, video: Video, professional: Professional}
platforms:
  facebook: {name: Facebook, category: social, domains: [facebook.com, fbcdn.net], embedded: [facebook.net]}
  tiktok: {name: TikTok, category: video, domains: [tiktok.com, tiktokcdn.com]}
  youtube: {name: YouTube, category: video, domains: [youtube.com, youtu.be]}
  linkedin: {name: LinkedIn, category: professional, domains: [linkedin.com], embedded: [platform.linkedin.com]}
"#;

    const POLICY: &str = r#"
version: 1
settings: {timezone: Europe/Berlin}
groups:
  marketing: {networks: [10.10.0.0/16]}
  hr: {users: [alice]}
  staff: {networks: [10.0.0.0/8, "fd00::/8"]}
defaults: {catalog: allow, embedded: allow, other: allow}
rules:
  - {id: marketing-all, groups: [marketing], categories: [social, video], action: allow}
  - {id: hr-linkedin, groups: [hr], platforms: [linkedin], action: allow}
  - {id: no-tiktok, groups: [staff], platforms: [tiktok], action: block}
  - id: no-video-at-work
    groups: [staff]
    categories: [video]
    when: [{days: [mon-fri], from: "09:00", to: "17:00"}]
    action: block
  - {id: fb-dry-run, groups: [staff], platforms: [facebook], action: block, mode: report}
  - {id: no-fb-widgets, users: [bob], platforms: [facebook], include_embedded: true, action: block}
  - {id: intranet-social, domains: [social.example.org], action: block}
  - {id: deep-allow, domains: [www.social.example.org], action: allow}
"#;

    fn policy() -> (tempfile::TempDir, Policy) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("catalog.yaml"), CATALOG).unwrap();
        std::fs::write(dir.path().join("policy.yaml"), POLICY).unwrap();
        let p = load_dir(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        (dir, p)
    }

    // Wednesday 2026-11-25, Berlin is UTC+1.
    const WORK: &str = "2026-11-25T10:00:00+01:00";
    const EVENING: &str = "2026-11-25T19:00:00+01:00";
    const SATURDAY: &str = "2026-11-28T10:00:00+01:00";

    /// client, user, host, time => action, mode, rule, group, platform
    type Case<'a> = (
        &'a str,
        Option<&'a str>,
        &'a str,
        &'a str,
        &'a str,
        &'a str,
        &'a str,
        Option<&'a str>,
        Option<&'a str>,
    );

    #[test]
    fn decides_by_group_platform_time_and_mode() {
        let (_d, p) = policy();
        // client, user, host, time => action, mode, rule, group, platform
        #[rustfmt::skip]
        let cases: &[Case] = &[
            ("10.1.2.3", None, "www.tiktok.com", WORK, "block", "enforce", "no-tiktok", Some("staff"), Some("tiktok")),
            ("10.1.2.3", None, "v16.tiktokcdn.com", EVENING, "block", "enforce", "no-tiktok", Some("staff"), Some("tiktok")),
            ("10.10.0.5", None, "www.tiktok.com", WORK, "allow", "enforce", "marketing-all", Some("marketing"), Some("tiktok")),
            ("10.1.2.3", None, "m.youtube.com", WORK, "block", "enforce", "no-video-at-work", Some("staff"), Some("youtube")),
            ("10.1.2.3", None, "youtu.be", EVENING, "allow", "enforce", "default:catalog", Some("staff"), Some("youtube")),
            ("10.1.2.3", None, "youtu.be", SATURDAY, "allow", "enforce", "default:catalog", Some("staff"), Some("youtube")),
            ("10.1.2.3", None, "www.facebook.com", WORK, "block", "report", "fb-dry-run", Some("staff"), Some("facebook")),
            ("10.1.2.3", None, "connect.facebook.net", WORK, "allow", "enforce", "default:embedded", Some("staff"), Some("facebook")),
            ("192.0.2.1", Some("bob"), "connect.facebook.net", WORK, "block", "enforce", "no-fb-widgets", None, Some("facebook")),
            ("192.0.2.1", Some("alice"), "www.linkedin.com", WORK, "allow", "enforce", "hr-linkedin", Some("hr"), Some("linkedin")),
            ("192.0.2.1", Some("carol"), "www.linkedin.com", WORK, "allow", "enforce", "default:catalog", None, Some("linkedin")),
            ("192.0.2.1", None, "www.linkedin.com", WORK, "block", "enforce", "builtin:identity", None, Some("linkedin")),
            ("fd00::7", None, "www.tiktok.com", WORK, "block", "enforce", "no-tiktok", Some("staff"), Some("tiktok")),
            ("::ffff:10.1.2.3", None, "www.tiktok.com", WORK, "block", "enforce", "no-tiktok", Some("staff"), Some("tiktok")),
            ("10.1.2.3", None, "notfacebook.com", WORK, "allow", "enforce", "default:other", Some("staff"), None),
            ("10.1.2.3", None, "social.example.org", WORK, "block", "enforce", "intranet-social", Some("staff"), None),
            ("10.1.2.3", None, "www.social.example.org", WORK, "block", "enforce", "intranet-social", Some("staff"), None),
            ("10.1.2.3", None, "127.0.0.1", WORK, "allow", "enforce", "default:other", Some("staff"), None),
        ];
        for (client, user, host, at, action, mode, rule, group, platform) in cases {
            let host = normalize_host(host).unwrap();
            let facts = RequestFacts {
                client: client.parse().unwrap(),
                user: *user,
                host: &host,
                port: 443,
                activity: None,
            };
            let d = decide(&p, &facts, at.parse().unwrap());
            let what = format!("{client} {user:?} {host} {at}");
            assert_eq!(d.action.as_str(), *action, "action for {what}");
            assert_eq!(d.mode.as_str(), *mode, "mode for {what}");
            assert_eq!(&*d.rule, *rule, "rule for {what}");
            assert_eq!(d.group.as_deref(), *group, "group for {what}");
            assert_eq!(d.platform.as_deref(), *platform, "platform for {what}");
        }
    }

    #[test]
    fn refusals_are_report_aware_and_reasons_are_stable_labels() {
        let (_d, p) = policy();
        let host = normalize_host("www.facebook.com").unwrap();
        let facts = RequestFacts {
            client: "10.1.2.3".parse().unwrap(),
            user: None,
            host: &host,
            port: 443,
            activity: None,
        };
        let d = decide(&p, &facts, WORK.parse().unwrap());
        assert!(!d.refuses(), "a report-mode block lets traffic pass");
        assert_eq!(d.reason.as_str(), "rule-matched");
        for (i, r) in Reason::ALL.into_iter().enumerate() {
            assert_eq!(r as usize, i, "ALL is in declaration order");
            assert_eq!(&*r.builtin_rule_arc(), r.builtin_rule());
        }
    }

    #[test]
    fn explain_traces_every_rule_considered() {
        let (_d, p) = policy();
        let host = normalize_host("www.youtube.com").unwrap();
        let facts = RequestFacts {
            client: "10.1.2.3".parse().unwrap(),
            user: None,
            host: &host,
            port: 443,
            activity: None,
        };
        let mut trace = Vec::new();
        let d = decide_traced(&p, &facts, EVENING.parse().unwrap(), &mut trace);
        assert_eq!(&*d.rule, "default:catalog");
        let rules: Vec<&str> = trace.iter().map(|t| t.rule.as_str()).collect();
        assert_eq!(
            rules,
            [
                "marketing-all",
                "hr-linkedin",
                "no-tiktok",
                "no-video-at-work",
                "fb-dry-run",
                "no-fb-widgets",
                "intranet-social",
                "deep-allow",
                "default:catalog"
            ]
        );
        assert!(
            trace[3].note.contains("outside its time windows"),
            "{:?}",
            trace[3]
        );
    }
}
