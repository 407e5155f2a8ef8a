//! Outcomes as types: how a request or tunnel ended, shared by the proxy
//! that writes the access log and the offline tools that read it.
//!
//! The decision's own outcomes ([`Action`], [`Mode`], [`Class`],
//! [`Reason`]) live in the pure policy core and are re-exported here; this
//! module adds what happened on the wire ([`Activity`], [`ErrorKind`] with
//! the [`Side`] it blames) and the one definition of what "refused" means
//! ([`Verdict`]). Every type serialises to the exact strings documented in
//! `docs/access-log.md`, so the log schema is the serde form of these enums.
//! Readers of older or newer logs use [`Lenient`], which keeps a value it
//! does not know instead of failing the line, so it can be counted.

use serde::{Deserialize, Serialize};

pub use crate::policy::activity::Activity;
pub use crate::policy::{Action, Class, Mode, Reason};

/// What happened to the traffic: the one definition of "refused" that the
/// log, the metrics, the report and simulate share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// The traffic went through (an allow, or no decision against it).
    Passed,
    /// The traffic was stopped: a `block` that was enforced.
    Refused,
    /// A `block` rule in `report` mode: recorded, traffic passed.
    WouldRefuse,
    /// Held at a warning: the proxy answered itself (the warning page, a
    /// 403, the Continue); the person may continue. Not a refusal.
    Warned,
    /// A `warn` rule in `report` mode: recorded, traffic passed.
    WouldWarn,
}

impl Verdict {
    /// What the policy's outcome means for the traffic. An enforced `warn`
    /// is [`Verdict::Warned`] until the person continues; with the record's
    /// [`WarnOutcome`] known, use [`Verdict::of_record`].
    pub fn of(action: Action, mode: Mode) -> Verdict {
        match (action, mode) {
            (Action::Block, Mode::Enforce) => Verdict::Refused,
            (Action::Block, Mode::Report) => Verdict::WouldRefuse,
            (Action::Warn, Mode::Enforce) => Verdict::Warned,
            (Action::Warn, Mode::Report) => Verdict::WouldWarn,
            (Action::Allow, _) => Verdict::Passed,
        }
    }

    /// Like [`Verdict::of`], for a recorded request or tunnel: an enforced
    /// `warn` whose traffic went through (acknowledged, or an HTTPS tunnel
    /// that could not show it) passed.
    pub fn of_record(action: Action, mode: Mode, warn: Option<WarnOutcome>) -> Verdict {
        match (Verdict::of(action, mode), warn) {
            (Verdict::Warned, Some(w)) if w.forwarded() => Verdict::Passed,
            (v, _) => v,
        }
    }

    pub fn refused(self) -> bool {
        self == Verdict::Refused
    }
}

/// What an enforced `warn` rule did with one request or tunnel: the
/// access log's `warn` field and the `outcome` label of
/// `socialgate_warnings_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WarnOutcome {
    /// A page load got the warning page with its Continue button.
    Shown,
    /// Another request (image, script, API call) got a short 403: the
    /// person has not continued yet.
    Held,
    /// The person followed a valid Continue link: remembered, then sent
    /// back (303) to the page they asked for.
    Continued,
    /// Passed: the person continued within `warn.remember`.
    Acknowledged,
    /// An HTTPS tunnel that is not inspected: the warning cannot be shown
    /// inside it, so it passed.
    Unshown,
    /// A Continue link that was altered, expired, or made for another
    /// person or site: refused with a page that says which.
    BadLink,
    /// A valid Continue that could not be remembered (the Redis state store
    /// was unreachable): the person is asked to try again.
    Unsaved,
}

impl WarnOutcome {
    pub const ALL: [WarnOutcome; 7] = [
        WarnOutcome::Shown,
        WarnOutcome::Held,
        WarnOutcome::Continued,
        WarnOutcome::Acknowledged,
        WarnOutcome::Unshown,
        WarnOutcome::BadLink,
        WarnOutcome::Unsaved,
    ];

    /// The stable label (the serde name).
    pub fn as_str(self) -> &'static str {
        match self {
            WarnOutcome::Shown => "shown",
            WarnOutcome::Held => "held",
            WarnOutcome::Continued => "continued",
            WarnOutcome::Acknowledged => "acknowledged",
            WarnOutcome::Unshown => "unshown",
            WarnOutcome::BadLink => "bad-link",
            WarnOutcome::Unsaved => "unsaved",
        }
    }

    /// True when the traffic went on to the site; false when socialgate
    /// answered itself.
    pub fn forwarded(self) -> bool {
        matches!(self, WarnOutcome::Acknowledged | WarnOutcome::Unshown)
    }
}

/// Where the person stood with the deciding rule's daily budget: the
/// access log's `budget` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BudgetOutcome {
    /// Within budget: allowed, and counted toward it.
    Left,
    /// Spent: the rule's action applied (`reason: budget-exhausted`).
    Exhausted,
    /// The shared state store could not be reached: decided without the
    /// budget (fail open), still counted.
    Unavailable,
}

impl BudgetOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            BudgetOutcome::Left => "left",
            BudgetOutcome::Exhausted => "exhausted",
            BudgetOutcome::Unavailable => "unavailable",
        }
    }

    /// The outcome for a settled budget state; `None` while unchecked.
    pub fn of(state: &crate::policy::BudgetState) -> Option<BudgetOutcome> {
        use crate::policy::BudgetState;
        match state {
            BudgetState::Unchecked => None,
            BudgetState::Left { .. } => Some(BudgetOutcome::Left),
            BudgetState::Exhausted { .. } => Some(BudgetOutcome::Exhausted),
            BudgetState::Unavailable => Some(BudgetOutcome::Unavailable),
        }
    }
}

/// Whose fault an error is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The client broke the exchange (left, stalled, sent bad framing).
    Client,
    /// The policy ended it (a refusal that came while traffic flowed).
    Policy,
    /// The destination failed (resolve, connect, timeout, bad response).
    Upstream,
    /// socialgate's own limits or lifecycle (idle timeout, shutdown).
    Internal,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Policy => "policy",
            Side::Upstream => "upstream",
            Side::Internal => "internal",
        }
    }
}

/// How a request or tunnel failed. The serde names are the access log's
/// `error` labels and the `error` label of `socialgate_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorKind {
    UpstreamResolve,
    UpstreamConnect,
    UpstreamTimeout,
    UpstreamProtocol,
    ClientClosed,
    ClientTimeout,
    ClientProtocol,
    IdleTimeout,
    TunnelClosedByPolicy,
    TunnelRefusedAfterReload,
    TunnelRefusedOnSchedule,
    Shutdown,
    ParentRefused,
    /// An inspected origin's certificate failed verification.
    UpstreamCertificate,
    /// The client refused socialgate's certificate (a pinned app).
    ClientRefusedCertificate,
    /// The person's daily budget under the deciding rule ran out while the
    /// tunnel or WebSocket was open.
    TunnelBudgetExhausted,
}

impl ErrorKind {
    /// Every kind, in declaration order.
    pub const ALL: [ErrorKind; 16] = [
        ErrorKind::UpstreamResolve,
        ErrorKind::UpstreamConnect,
        ErrorKind::UpstreamTimeout,
        ErrorKind::UpstreamProtocol,
        ErrorKind::ClientClosed,
        ErrorKind::ClientTimeout,
        ErrorKind::ClientProtocol,
        ErrorKind::IdleTimeout,
        ErrorKind::TunnelClosedByPolicy,
        ErrorKind::TunnelRefusedAfterReload,
        ErrorKind::TunnelRefusedOnSchedule,
        ErrorKind::Shutdown,
        ErrorKind::ParentRefused,
        ErrorKind::UpstreamCertificate,
        ErrorKind::ClientRefusedCertificate,
        ErrorKind::TunnelBudgetExhausted,
    ];

    /// The stable label (the serde name).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::UpstreamResolve => "upstream-resolve",
            ErrorKind::UpstreamConnect => "upstream-connect",
            ErrorKind::UpstreamTimeout => "upstream-timeout",
            ErrorKind::UpstreamProtocol => "upstream-protocol",
            ErrorKind::ClientClosed => "client-closed",
            ErrorKind::ClientTimeout => "client-timeout",
            ErrorKind::ClientProtocol => "client-protocol",
            ErrorKind::IdleTimeout => "idle-timeout",
            ErrorKind::TunnelClosedByPolicy => "tunnel-closed-by-policy",
            ErrorKind::TunnelRefusedAfterReload => "tunnel-refused-after-reload",
            ErrorKind::TunnelRefusedOnSchedule => "tunnel-refused-on-schedule",
            ErrorKind::Shutdown => "shutdown",
            ErrorKind::ParentRefused => "parent-refused",
            ErrorKind::UpstreamCertificate => "upstream-certificate",
            ErrorKind::ClientRefusedCertificate => "client-refused-certificate",
            ErrorKind::TunnelBudgetExhausted => "tunnel-budget-exhausted",
        }
    }

    pub fn side(self) -> Side {
        use ErrorKind::*;
        match self {
            UpstreamResolve | UpstreamConnect | UpstreamTimeout | UpstreamProtocol
            | ParentRefused | UpstreamCertificate => Side::Upstream,
            ClientClosed | ClientTimeout | ClientProtocol | ClientRefusedCertificate => {
                Side::Client
            }
            TunnelClosedByPolicy
            | TunnelRefusedAfterReload
            | TunnelRefusedOnSchedule
            | TunnelBudgetExhausted => Side::Policy,
            IdleTimeout | Shutdown => Side::Internal,
        }
    }

    /// The status socialgate answers with when this error ends an exchange
    /// before any response went out.
    pub fn status(self) -> http::StatusCode {
        use http::StatusCode;
        use ErrorKind::*;
        match self {
            UpstreamResolve | UpstreamConnect | UpstreamProtocol | ParentRefused
            | UpstreamCertificate => StatusCode::BAD_GATEWAY,
            UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            ClientTimeout => StatusCode::REQUEST_TIMEOUT,
            ClientClosed | ClientProtocol | ClientRefusedCertificate => StatusCode::BAD_REQUEST,
            TunnelClosedByPolicy
            | TunnelRefusedAfterReload
            | TunnelRefusedOnSchedule
            | TunnelBudgetExhausted => StatusCode::FORBIDDEN,
            IdleTimeout | Shutdown => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A value read from a log that may have been written by another version:
/// a known variant, or the text of one this version does not know. Readers
/// count `Unknown` values instead of rejecting the line.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Lenient<T> {
    Known(T),
    Unknown(String),
}

impl<T> Lenient<T> {
    pub fn known(&self) -> Option<&T> {
        match self {
            Lenient::Known(t) => Some(t),
            Lenient::Unknown(_) => None,
        }
    }

    pub fn is_unknown(&self) -> bool {
        matches!(self, Lenient::Unknown(_))
    }
}

/// Reads a string without allocating when it names a known variant (the
/// common case, once per field on every line a report reads); only an
/// unknown value is copied.
impl<'de, T: serde::de::DeserializeOwned> Deserialize<'de> for Lenient<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct LenientVisitor<T>(std::marker::PhantomData<T>);
        impl<T: serde::de::DeserializeOwned> serde::de::Visitor<'_> for LenientVisitor<T> {
            type Value = Lenient<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Lenient<T>, E> {
                use serde::de::IntoDeserializer;
                let de: serde::de::value::StrDeserializer<'_, serde::de::value::Error> =
                    s.into_deserializer();
                Ok(match T::deserialize(de) {
                    Ok(t) => Lenient::Known(t),
                    Err(_) => Lenient::Unknown(s.to_owned()),
                })
            }
        }
        d.deserialize_str(LenientVisitor(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_kinds_serialise_to_their_labels_and_blame_a_side() {
        for k in ErrorKind::ALL {
            let json = serde_json::to_string(&k).unwrap();
            assert_eq!(json, format!("\"{}\"", k.as_str()));
            let back: ErrorKind = serde_json::from_str(&json).unwrap();
            assert_eq!(back, k);
        }
        assert_eq!(ErrorKind::ClientProtocol.side(), Side::Client);
        assert_eq!(ErrorKind::UpstreamTimeout.side(), Side::Upstream);
        assert_eq!(ErrorKind::ClientTimeout.status(), 408);
    }

    #[test]
    fn reasons_actions_and_modes_serialise_to_the_documented_strings() {
        for r in Reason::ALL {
            assert_eq!(
                serde_json::to_string(&r).unwrap(),
                format!("\"{}\"", r.as_str())
            );
        }
        assert_eq!(serde_json::to_string(&Action::Block).unwrap(), "\"block\"");
        assert_eq!(serde_json::to_string(&Mode::Report).unwrap(), "\"report\"");
        assert_eq!(
            serde_json::to_string(&Class::Embedded).unwrap(),
            "\"embedded\""
        );
        assert_eq!(
            serde_json::to_string(&Activity::Write).unwrap(),
            "\"write\""
        );
    }

    #[test]
    fn one_definition_of_refused() {
        assert_eq!(Verdict::of(Action::Block, Mode::Enforce), Verdict::Refused);
        assert_eq!(
            Verdict::of(Action::Block, Mode::Report),
            Verdict::WouldRefuse
        );
        assert_eq!(Verdict::of(Action::Allow, Mode::Enforce), Verdict::Passed);
        assert_eq!(Verdict::of(Action::Allow, Mode::Report), Verdict::Passed);
        assert!(!Verdict::of(Action::Warn, Mode::Enforce).refused());
        assert_eq!(Verdict::of(Action::Warn, Mode::Report), Verdict::WouldWarn);
    }

    #[test]
    fn a_warning_passes_only_once_acknowledged_or_unshowable() {
        use WarnOutcome::*;
        for w in WarnOutcome::ALL {
            let json = serde_json::to_string(&w).unwrap();
            assert_eq!(json, format!("\"{}\"", w.as_str()));
            let want = if matches!(w, Acknowledged | Unshown) {
                Verdict::Passed
            } else {
                Verdict::Warned
            };
            assert_eq!(
                Verdict::of_record(Action::Warn, Mode::Enforce, Some(w)),
                want,
                "{w:?}"
            );
        }
        assert_eq!(
            Verdict::of_record(Action::Block, Mode::Enforce, Some(Acknowledged)),
            Verdict::Refused,
            "a warn outcome never turns a refusal into a pass"
        );
    }

    #[test]
    fn lenient_values_keep_what_they_do_not_know() {
        let v: Vec<Lenient<ErrorKind>> =
            serde_json::from_str(r#"["client-closed","from-the-future"]"#).unwrap();
        assert_eq!(v[0], Lenient::Known(ErrorKind::ClientClosed));
        assert_eq!(v[1], Lenient::Unknown("from-the-future".into()));
        let escaped: Lenient<Action> = serde_json::from_str(r#""bl\u006fck""#).unwrap();
        assert_eq!(escaped, Lenient::Known(Action::Block));
        assert!(serde_json::from_str::<Lenient<Action>>("7").is_err());
    }
}
