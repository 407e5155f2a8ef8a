//! The computed report: plain data, serialised as the `--format json` output.
//!
//! Every number that describes people sits in a [`Cell`], which is either a
//! value or `"suppressed"` (the rules are in `privacy`). Group `"*"` means
//! all members of the policy's groups, and platform `"*"` any platform. The
//! structure is versioned by [`SCHEMA`]; within a version, fields are only
//! ever added.
//!
//! This module must not compute anything: aggregation lives in `aggregate`,
//! presentation in `tables` and `page`.

use serde::{Serialize, Serializer};

use super::read::FileStats;

/// Version tag of the JSON structure.
pub const SCHEMA: &str = "socialgate-report/2";
/// The name that stands for "all groups" / "any platform".
pub const ALL: &str = "*";
/// The group of clients in no group (security section only).
pub const NO_GROUP: &str = "(no group)";

/// A number shown only when the privacy rules allow it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cell<T> {
    Value(T),
    Suppressed,
}

impl<T: Copy> Cell<T> {
    pub fn value(&self) -> Option<T> {
        match self {
            Cell::Value(v) => Some(*v),
            Cell::Suppressed => None,
        }
    }
    pub fn is_suppressed(&self) -> bool {
        matches!(self, Cell::Suppressed)
    }
    /// `Value(f(v))`, or `Suppressed`.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Cell<U> {
        match self {
            Cell::Value(v) => Cell::Value(f(v)),
            Cell::Suppressed => Cell::Suppressed,
        }
    }
}

impl<T: Serialize> Serialize for Cell<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Cell::Value(v) => v.serialize(s),
            Cell::Suppressed => s.serialize_str("suppressed"),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub schema: &'static str,
    pub generated_at: jiff::Timestamp,
    pub period: Period,
    pub settings: Settings,
    pub input: Input,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub security: Option<Security>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strategy: Option<Strategy>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Period {
    /// `--from` (inclusive), if given.
    pub from: Option<jiff::Timestamp>,
    /// `--to` (exclusive), if given.
    pub to: Option<jiff::Timestamp>,
    /// Earliest and latest record time within the period.
    pub first_record: Option<jiff::Timestamp>,
    pub last_record: Option<jiff::Timestamp>,
    /// IANA time zone for days and hours.
    pub time_zone: String,
    /// Local days with at least one record.
    pub days_observed: u64,
    /// Days the period or the log covers only in part (the first or last).
    pub partial_days: Vec<PartialDay>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PartialDay {
    /// Local date (YYYY-MM-DD).
    pub day: String,
    /// Local times (HH:MM) of the day's first and last record.
    pub from: String,
    pub until: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    pub k: u64,
    pub idle_minutes: u32,
    pub credit_minutes: u32,
    /// Active days (on any platform) that make a person a regular user.
    pub regular_days: u64,
    pub audience: String,
    /// True when real names replace pseudonyms in per-person listings.
    pub revealed: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Input {
    pub files: Vec<FileStats>,
    pub lines: u64,
    pub records: u64,
    pub malformed: u64,
    /// Values this version does not know (see `read::FileStats`); their
    /// records are kept.
    pub unknown_values: u64,
    pub malformed_examples: Vec<String>,
    /// Records within --from/--to.
    pub in_period: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Security {
    pub totals: SecurityTotals,
    /// Refused requests by group × platform × class × activity × rule.
    pub refused: Vec<RefusedRow>,
    /// Would-be refusals of rules in report mode (traffic passed).
    pub would_refuse: Vec<RefusedRow>,
    /// Refusals and would-be refusals per rule.
    pub refused_by_rule: Vec<RuleRow>,
    pub refused_by_reason: Vec<ReasonRow>,
    pub unauthenticated: Vec<UnauthRow>,
    pub bytes_to_platforms: Vec<BytesRow>,
    pub top_refused_platforms: Vec<PlatformRow>,
    /// Tunnels that a rule about activities could not judge (not inspected).
    pub activity_unseen: Vec<UnseenRow>,
    /// The only per-person listing: pseudonyms, or names when revealed.
    pub top_refused_persons: Vec<PersonRow>,
    /// Requested access, exact: each number shown when k persons back it.
    pub access_requests: Vec<AccessRequestRow>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SecurityTotals {
    pub requests: u64,
    pub persons: Cell<u64>,
    pub refused: Cell<u64>,
    /// Refused attempts on a platform's own domains (not its widgets).
    pub refused_primary: Cell<u64>,
    /// Of them, those by members of the policy's groups: the strategy
    /// section's blocked attempts.
    pub refused_primary_members: Cell<u64>,
    pub would_refuse: Cell<u64>,
    pub unauthenticated: Cell<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RefusedRow {
    pub group: String,
    /// `"(none)"` for hosts on no catalog platform.
    pub platform: String,
    /// `primary` (the platform's own domains), `embedded` (its widgets and
    /// trackers on other sites), or null (no platform).
    pub class: Option<String>,
    /// The activity (`post`, `read`, ...), or null for a tunnel.
    pub activity: Option<String>,
    /// The rule (or pseudo-rule) that refused.
    pub rule: String,
    pub requests: Cell<u64>,
    pub persons: Cell<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RuleRow {
    pub rule: String,
    /// `refused`, or `would-refuse` (report mode).
    pub outcome: String,
    pub requests: Cell<u64>,
    /// Of them, attempts on a platform's own domains.
    pub primary_requests: Cell<u64>,
    pub persons: Cell<u64>,
    /// Platforms the rule refused (`(none)` for other hosts).
    pub platforms: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReasonRow {
    pub reason: String,
    pub requests: Cell<u64>,
    pub persons: Cell<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct UnauthRow {
    pub group: String,
    pub requests: Cell<u64>,
    /// Share of the group's requests that came without a user.
    pub share: Cell<f64>,
    pub persons: Cell<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BytesRow {
    pub group: String,
    pub platform: String,
    pub bytes_up: Cell<u64>,
    pub bytes_down: Cell<u64>,
    pub persons: Cell<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlatformRow {
    pub platform: String,
    pub requests: Cell<u64>,
    pub persons: Cell<u64>,
    /// Of them, attempts on the platform's own domains, and their persons.
    pub primary_requests: Cell<u64>,
    pub primary_persons: Cell<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct UnseenRow {
    pub rule: String,
    pub platform: String,
    pub tunnels: Cell<u64>,
    pub persons: Cell<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PersonRow {
    /// The pseudonym (`p:…`) or `ip:ADDRESS` as logged.
    pub person: String,
    /// The real name, only with `--reveal` and when known from `--users`.
    pub name: Option<String>,
    pub requests: u64,
    pub platforms: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Strategy {
    pub groups: Vec<GroupRow>,
    pub platforms: Vec<AdoptionRow>,
    pub contribution: Vec<ContributionRow>,
    pub daily: Vec<DailyRow>,
    pub hour_of_week: HeatMap,
    pub maturity: Vec<MaturityRow>,
    /// What warn rules did, as a demand signal: how many of those warned
    /// chose to continue.
    pub warnings: Vec<WarningRow>,
    /// Requested access: access requests people sent from block pages, by
    /// group and platform (beside blocked demand).
    pub access_requests: Vec<AccessRequestRow>,
    /// How many numbers this section holds (shown or suppressed), and how
    /// many of them are suppressed.
    pub numbers: u64,
    pub suppressed_cells: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct AccessRequestRow {
    pub group: String,
    /// `"(none)"` for sites on no catalog platform.
    pub platform: String,
    /// Distinct persons who sent at least one access request.
    pub persons: Cell<u64>,
    /// Access requests sent (`kind: access-request` records).
    pub requests: Cell<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct WarningRow {
    pub group: String,
    /// `"(none)"` for hosts on no catalog platform.
    pub platform: String,
    /// Persons shown a warning page or who continued past one.
    pub warned_persons: Cell<u64>,
    /// Persons who took a Continue.
    pub continued_persons: Cell<u64>,
    /// continued_persons / warned_persons.
    pub continue_rate: Cell<f64>,
    /// Warning pages shown, and Continues taken.
    pub warnings_shown: Cell<u64>,
    pub continues: Cell<u64>,
    /// HTTPS tunnels a warn rule let pass without a warning (not
    /// inspected).
    pub unshown_tunnels: Cell<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct GroupRow {
    pub group: String,
    /// Distinct persons seen in the group in the period.
    pub active_members: Cell<u64>,
    /// Persons with active use on at least `settings.regular_days` days.
    pub regular_users: Cell<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AdoptionRow {
    pub group: String,
    pub platform: String,
    /// Persons with foreground, primary, not-refused traffic to the platform.
    pub active_users: Cell<u64>,
    /// active_users / group's active members.
    pub adoption: Cell<f64>,
    pub sessions: Cell<u64>,
    pub active_minutes: Cell<f64>,
    pub minutes_per_active_user: Cell<f64>,
    pub sessions_per_active_user: Cell<f64>,
    /// Blocked demand: refused attempts on the platform's own domains (not
    /// its widgets on other sites), and the persons who made them.
    pub blocked_attempts: Cell<u64>,
    pub blocked_persons: Cell<u64>,
    /// The same for rules in report mode (traffic passed).
    pub would_block_attempts: Cell<u64>,
    pub would_block_persons: Cell<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ContributionRow {
    pub group: String,
    pub platform: String,
    /// Persons whose visible activity was reading (or signing in) only.
    pub readers: Cell<u64>,
    /// Persons with at least one write (post, comment, react, share,
    /// upload, message or a generic write) that passed.
    pub contributors: Cell<u64>,
    /// contributors / (readers + contributors).
    pub contributor_share: Cell<Option<f64>>,
    pub reads: Cell<u64>,
    pub logins: Cell<u64>,
    pub posts: Cell<u64>,
    pub comments: Cell<u64>,
    pub reactions: Cell<u64>,
    pub shares: Cell<u64>,
    pub uploads: Cell<u64>,
    pub messages: Cell<u64>,
    /// `write` + `unknown`: requests no signature named.
    pub generic: Cell<u64>,
    /// generic / every activity but `read`: the signature-health signal.
    pub generic_share: Cell<Option<f64>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DailyRow {
    /// Local date (YYYY-MM-DD) in the report's time zone.
    pub day: String,
    pub group: String,
    pub platform: String,
    /// Persons with active use that day.
    pub active_users: Cell<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct HeatMap {
    /// Row labels, Monday first.
    pub days: Vec<&'static str>,
    /// 7 rows × 24 hours: foreground requests to any platform.
    pub foreground_requests: Vec<Vec<Cell<u64>>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MaturityRow {
    pub group: String,
    /// 1–5 (docs/reports.md), null when the group is too small to assess.
    pub stage: Option<u8>,
    /// `dormant`, `exploring`, `regular use`, `contributing`, `leading`,
    /// or `suppressed`.
    pub label: String,
    pub members: Cell<u64>,
    /// Share of members active on any platform.
    pub any_adoption: Cell<f64>,
    /// Share of members who are regular users.
    pub regular_share: Cell<f64>,
    pub minutes_per_active_user: Cell<f64>,
    /// Share of members who contributed; null when no activity was visible.
    pub contributor_share: Cell<Option<f64>>,
    /// Platforms with an adoption of 20 % or more (among those shown).
    pub platforms_adopted: Vec<String>,
    /// Share of members refused on a primary attempt.
    pub blocked_share: Cell<f64>,
    /// What holds the group back: `adoption`, `regular use`,
    /// `contribution`, `breadth`, `policy`, `hidden` or `nothing`.
    pub held_back_by: String,
    /// The evidence, in one sentence.
    pub evidence: String,
    /// The next step it suggests.
    pub next_step: String,
}
