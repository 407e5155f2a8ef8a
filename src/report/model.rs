//! The computed report: plain data, serialised as the `--format json` output.
//!
//! Every number that describes people sits in a [`Cell`], which is either a
//! value or `"suppressed"` (backed by fewer than k distinct persons; the
//! rule is in `privacy`). Group
//! `"*"` means all groups together and platform `"*"` any platform. The
//! structure is versioned by [`SCHEMA`]; fields are only ever added.
//!
//! This module must not compute anything: aggregation lives in `aggregate`,
//! presentation in `render`.

use serde::{Serialize, Serializer};

use super::read::FileStats;

/// Version tag of the JSON structure.
pub const SCHEMA: &str = "socialgate-report/1";
/// The name that stands for "all groups" / "any platform".
pub const ALL: &str = "*";

/// A number shown only when at least k distinct persons back it.
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
}

#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    pub k: u64,
    pub idle_minutes: u32,
    pub credit_minutes: u32,
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
    /// Refused requests by group × platform × activity.
    pub refused: Vec<RefusedRow>,
    /// Would-be refusals of rules in report mode (traffic passed).
    pub would_refuse: Vec<RefusedRow>,
    pub refused_by_reason: Vec<ReasonRow>,
    pub unauthenticated: Vec<UnauthRow>,
    pub bytes_to_platforms: Vec<BytesRow>,
    pub top_refused_platforms: Vec<PlatformRow>,
    /// The only per-person listing: pseudonyms, or names when revealed.
    pub top_refused_persons: Vec<PersonRow>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SecurityTotals {
    pub requests: u64,
    pub persons: Cell<u64>,
    pub refused: Cell<u64>,
    pub would_refuse: Cell<u64>,
    pub unauthenticated: Cell<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RefusedRow {
    pub group: String,
    /// `"(none)"` for hosts on no catalog platform.
    pub platform: String,
    /// `view`, `write` or `unknown` (tunnels).
    pub activity: String,
    pub requests: Cell<u64>,
    pub persons: Cell<u64>,
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
    pub daily: Vec<DailyRow>,
    pub hour_of_week: HeatMap,
    pub maturity: Vec<MaturityRow>,
    /// What warn rules did, as a demand signal: how many of those warned
    /// chose to continue.
    pub warnings: Vec<WarningRow>,
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
    /// Not-refused primary requests with a known activity.
    pub views: Cell<u64>,
    pub writes: Cell<u64>,
    /// writes / (views + writes); null when no activity was known.
    pub write_share: Cell<Option<f64>>,
    pub refused_requests: Cell<u64>,
    pub refused_persons: Cell<u64>,
    pub would_refuse_requests: Cell<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DailyRow {
    /// Local date (YYYY-MM-DD) in the report's time zone.
    pub day: String,
    pub group: String,
    pub platform: String,
    pub active_users: Cell<u64>,
    pub foreground_requests: Cell<u64>,
    /// Sessions that started that day, and their active minutes.
    pub sessions: Cell<u64>,
    pub active_minutes: Cell<f64>,
    pub refused_requests: Cell<u64>,
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
    /// One of the labels in docs/reports.md, or `suppressed`.
    pub label: String,
    /// 0–100, see docs/reports.md.
    pub score: Cell<f64>,
    pub platforms_adopted: Cell<u64>,
    pub any_adoption: Cell<f64>,
    pub write_share: Cell<Option<f64>>,
    pub blocked_share: Cell<f64>,
    pub minutes_per_member: Cell<f64>,
    /// One sentence saying why the label was chosen.
    pub explanation: String,
}
