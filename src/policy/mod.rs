//! The policy core: model, compiler and decision function.
//!
//! Data flows one way: YAML files -> [`raw`] structs -> [`compile`] ->
//! an immutable [`Policy`] -> [`decide`]. Nothing downstream of `compile`
//! ever sees an invalid policy. This module does no network IO and reads no
//! clock: the proxy loads a snapshot once per request and passes `now` in.
//! Reading files happens only in [`load_dir`].
//! The same [`raw`] structs give the files' JSON Schemas ([`schema`]).

pub mod activity;
pub mod admit;
pub mod advice;
pub mod applies;
pub mod budget;
pub mod cases;
pub mod compile;
pub mod decide;
pub mod domains;
pub mod error;
pub mod host;
pub mod raw;
pub mod schedule;
pub mod schema;

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;

pub use admit::{
    admit, admit_in_groups, admit_traced, budget_stage, budget_stage_in_day, destination_check,
    destination_stage, inspect_stage, is_local_name, is_own_page, next_change_after, port_stage,
    sni_stage, warn_stage, Admission, Entry, Facts, Inspect, InspectWhy, Stage, TlsHello, Warning,
};
pub use budget::{Budget, BudgetState, BudgetView, Spent, SpentFact};
pub use cases::{run_cases, CaseOutcome};
pub use compile::load_dir;
pub use decide::{
    decide, decide_in_groups, decide_traced, Decision, Reason, RequestFacts, TraceStep,
};
pub use domains::DomainTable;
pub use error::{ConfigError, ConfigErrors};
pub use host::{normalize_host, Host};
pub use schedule::Schedule;

use crate::identity::Htpasswd;

/// What a rule does to matching traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Allow,
    Block,
    /// A page with the rule's message and a Continue button; once the
    /// person continues, the platform passes for `warn.remember`.
    Warn,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Block => "block",
            Action::Warn => "warn",
        }
    }
}

/// Whether a rule's action is applied or only recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Enforce,
    /// Dry run: the would-be action is logged and counted, traffic passes.
    Report,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Report => "report",
        }
    }
}

/// Whether a domain is the platform itself or one of its embeddable parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    Primary,
    Embedded,
}

impl Class {
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Primary => "primary",
            Class::Embedded => "embedded",
        }
    }
}

/// A platform from the catalog.
#[derive(Debug, Clone)]
pub struct Platform {
    pub id: Arc<str>,
    pub name: Arc<str>,
    pub category: Arc<str>,
    pub owner: Option<Arc<str>>,
}

/// What a catalog domain points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DomainHit {
    pub platform: u16,
    pub class: Class,
}

/// A named set of people.
#[derive(Debug, Clone)]
pub struct Group {
    pub name: Arc<str>,
    pub description: Option<String>,
    pub networks: Vec<IpNet>,
    pub users: HashSet<String>,
}

/// A compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub id: Arc<str>,
    pub description: Option<String>,
    /// Group indices; empty together with `users` means everyone.
    pub groups: Vec<u16>,
    pub users: HashSet<String>,
    /// Indexed by platform; `None` when the rule names no platform or
    /// category (then only `domains`, or everything, matches).
    pub platforms: Option<Vec<bool>>,
    /// True when the rule lists extra domains (kept in `Policy::rule_domains`).
    pub has_domains: bool,
    /// Those domains, as compiled (for the transparency page).
    pub domains: Vec<String>,
    pub include_embedded: bool,
    pub schedule: Option<Schedule>,
    /// The activities the rule is about; `None` means any.
    pub activities: Option<activity::ActivitySet>,
    /// The action, or for `read_only` rules [`Action::Allow`] (reads pass).
    pub action: Action,
    /// `Some` for an `action: read_only` rule: what an `unknown` request
    /// gets (`unknown: allow`, the default, or `block`).
    pub read_only: Option<Action>,
    pub mode: Mode,
    pub message: Option<Arc<str>>,
    /// `inspect:` as written: decrypt matching tunnels, never, or unset
    /// (`inspection.default` applies).
    pub inspect: Option<bool>,
    /// A daily budget per person: the rule allows until it is spent, then
    /// `action` (block or warn) applies.
    pub budget: Option<budget::Budget>,
    /// Its block page offers "Request access".
    pub request_access: bool,
}

impl Rule {
    /// The action as written in policy.yaml: `allow`, `block` or `read_only`.
    pub fn action_label(&self) -> &'static str {
        if self.read_only.is_some() {
            "read_only"
        } else {
            self.action.as_str()
        }
    }

    /// Whether the rule is for someone in `groups` (indices) or signed in
    /// as `user`, and the group it is for them through, if any. A rule
    /// with no `groups` and no `users` is for everyone.
    pub fn applies_to(&self, groups: &[u16], user: Option<&str>) -> (bool, Option<u16>) {
        if self.groups.is_empty() && self.users.is_empty() {
            return (true, None);
        }
        let group = self.groups.iter().find(|g| groups.contains(g)).copied();
        let who = group.is_some() || user.is_some_and(|u| self.users.contains(u));
        (who, group)
    }

    /// True when the rule names no platform, category or domain.
    pub fn matches_any_destination(&self) -> bool {
        self.platforms.is_none() && !self.has_domains
    }
}

/// Actions for traffic no rule matched.
#[derive(Debug, Clone, Copy)]
pub struct Defaults {
    pub catalog: Action,
    pub embedded: Action,
    pub other: Action,
}

/// Page texts and the default time zone.
#[derive(Debug, Clone)]
pub struct Settings {
    pub timezone: jiff::tz::TimeZone,
    pub timezone_name: String,
    pub organization: Option<Arc<str>>,
    pub help: Option<Arc<str>>,
    /// The host the transparency page answers on (normalised).
    pub transparency_host: String,
}

/// The transparency page's default host name.
pub const TRANSPARENCY_HOST: &str = "socialgate.local";

/// A header carrying the user name, trusted only from listed gateways.
#[derive(Debug, Clone)]
pub struct TrustedHeader {
    pub name: http::HeaderName,
    pub from: Vec<IpNet>,
}

/// How users authenticate.
#[derive(Debug, Clone)]
pub struct Auth {
    pub htpasswd: Option<Arc<Htpasswd>>,
    /// Where the htpasswd file was read from (watched for changes).
    pub htpasswd_path: Option<PathBuf>,
    pub realm: String,
    pub required: bool,
    pub cache_ttl: Duration,
    pub trusted_header: Option<TrustedHeader>,
}

/// CONNECT handling.
#[derive(Debug, Clone)]
pub struct Tunnels {
    /// Inclusive port ranges allowed for CONNECT.
    pub ports: Vec<(u16, u16)>,
    pub sni_mismatch: Action,
    pub sni_timeout: Duration,
    /// A ClientHello with Encrypted Client Hello whose public name is not
    /// the CONNECT host: `block`, or `allow` (the CONNECT decision stands).
    pub ech: Action,
}

/// Why a domain is never decrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NeverHit {
    /// It is in this never-inspect category of the catalog.
    Category(Arc<str>),
    /// `inspection.never.domains` lists it.
    Listed,
}

/// TLS inspection settings (`inspection:`).
#[derive(Debug, Clone)]
pub struct Inspection {
    /// The CA files the policy names (absolute); `None`: the run flags decide.
    pub ca_cert: Option<PathBuf>,
    pub ca_key: Option<PathBuf>,
    /// Inspect tunnels whose rule says nothing (`inspection.default`).
    pub default: bool,
    /// Domains never decrypted, with the reason.
    pub never_domains: DomainTable<NeverHit>,
    /// Platform categories never decrypted.
    pub never_platform_categories: Vec<Arc<str>>,
    /// The names of the catalog's never-inspect categories in force (for
    /// the transparency page), e.g. `Banking and finance`.
    pub never_names: Vec<Arc<str>>,
    /// `inspection.never.domains`, as compiled.
    pub never_listed: Vec<String>,
    /// Pass a host through for `pinned_for` after a client refused our leaf.
    pub learn_pinned: bool,
    pub pinned_for: Duration,
    /// How long a minted leaf is valid.
    pub leaf_validity: Duration,
    /// Leaves kept in memory.
    pub leaf_cache: usize,
    /// Extra roots for upstream servers (absolute path).
    pub upstream_ca: Option<PathBuf>,
}

impl Inspection {
    /// True when any rule, or the default, may ask for inspection: the
    /// company CA is needed then.
    pub fn asked(&self, rules: &[Rule]) -> Option<String> {
        if self.default {
            return Some("inspection.default".into());
        }
        rules
            .iter()
            .position(|r| r.inspect == Some(true))
            .map(|i| format!("rules[{i}].inspect"))
    }
}

/// What goes into the access log.
#[derive(Debug, Clone)]
pub struct Logging {
    pub pseudonymize: bool,
    pub key_file: Option<PathBuf>,
    pub log_paths: bool,
    /// How long logs are kept, in the admin's words (transparency page).
    pub retention: Option<Arc<str>>,
    /// Who may reveal a pseudonym, in the admin's words.
    pub reveal: Option<Arc<str>>,
}

/// What the PAC file (`/proxy.pac`) sends DIRECT; plain host names and
/// `localhost` always go direct.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pac {
    /// Lower-case domains; each covers its subdomains.
    pub direct_domains: Vec<String>,
    /// IPv4 networks (the PAC's `isInNet` takes no IPv6).
    pub direct_networks: Vec<ipnet::Ipv4Net>,
}

impl Pac {
    /// Without a `pac:` section: `.local` names, the private IPv4 ranges
    /// and loopback go direct.
    pub fn default_direct_domains() -> Vec<String> {
        vec!["local".to_string()]
    }

    pub fn default_direct_networks() -> Vec<ipnet::Ipv4Net> {
        [
            "10.0.0.0/8",
            "172.16.0.0/12",
            "192.168.0.0/16",
            "127.0.0.0/8",
        ]
        .iter()
        .map(|n| n.parse().expect("a valid literal CIDR"))
        .collect()
    }
}

/// How `action: warn` rules behave (`warn:`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warn {
    /// How long a Continue is remembered for (person, rule, platform).
    pub remember: Duration,
    /// How long the Continue link on a warning page can be used.
    pub link_expiry: Duration,
}

impl Default for Warn {
    fn default() -> Self {
        Warn {
            remember: Duration::from_secs(3600),
            link_expiry: Duration::from_secs(15 * 60),
        }
    }
}

/// Access requests (`requests:`).
#[derive(Debug, Clone)]
pub struct Requests {
    /// POSTed each access request as JSON (http or https, validated).
    pub webhook: Option<http::Uri>,
    /// Who gets the requests, in the admin's words.
    pub recipient: Arc<str>,
}

/// Whom an access request goes to, when `requests.recipient` is not set.
pub const DEFAULT_RECIPIENT: &str = "the people who look after this proxy's policy";

/// Where state shared by replicas lives (`state:`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    /// The Redis server for warn acknowledgements; `None` keeps them in
    /// memory, per process.
    pub redis: Option<RedisUrl>,
}

/// A Redis URL that was checked when the policy was compiled.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl {
    /// As written, credentials included: only ever given to the client.
    url: String,
}

impl RedisUrl {
    /// Checks that `url` is a Redis URL socialgate can use: `redis://`,
    /// `redis+unix://` or `unix://` (TLS, `rediss://`, is not built in).
    pub fn parse(url: &str) -> Result<RedisUrl, String> {
        use redis::IntoConnectionInfo;
        let url = url.trim();
        let scheme = url.split_once("://").map_or("", |(s, _)| s);
        match scheme {
            "redis" | "redis+unix" | "unix" => {}
            "rediss" => return Err("TLS to Redis (rediss://) is not built into socialgate".into()),
            _ => {
                return Err(format!(
                    "{url:?} is not a redis://, redis+unix:// or unix:// URL"
                ))
            }
        }
        url.into_connection_info()
            .map_err(|e| format!("{url:?} is not a usable Redis URL: {e}"))?;
        Ok(RedisUrl {
            url: url.to_string(),
        })
    }

    /// The URL to connect with (may hold a password: never log it).
    pub fn secret_url(&self) -> &str {
        &self.url
    }

    /// The URL with any password replaced by `***`, for logs and `explain`.
    pub fn redacted(&self) -> String {
        let Some((scheme, rest)) = self.url.split_once("://") else {
            return self.url.clone();
        };
        match rest.split_once('@') {
            Some((userinfo, host)) if userinfo.contains(':') => {
                let user = userinfo.split(':').next().unwrap_or("");
                format!("{scheme}://{user}:***@{host}")
            }
            _ => self.url.clone(),
        }
    }
}

impl std::fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RedisUrl({})", self.redacted())
    }
}

/// Identity of the loaded policy, for logs, metrics and `/readyz`.
#[derive(Debug, Clone)]
pub struct Source {
    pub dir: PathBuf,
    /// Schema version from `policy.yaml`.
    pub version: u32,
    /// First 16 hex digits of the SHA-256 over every policy file read.
    pub hash: String,
}

/// A compiled, immutable policy snapshot.
#[derive(Debug, Clone)]
pub struct Policy {
    pub source: Source,
    pub categories: Vec<Arc<str>>,
    pub platforms: Vec<Platform>,
    pub domains: DomainTable<DomainHit>,
    /// Extra domains named by rules -> indices of those rules.
    pub rule_domains: DomainTable<Vec<u16>>,
    pub groups: Vec<Group>,
    pub rules: Vec<Rule>,
    pub defaults: Defaults,
    pub settings: Settings,
    pub auth: Auth,
    /// Non-public networks the proxy may reach anyway.
    pub destinations: Vec<IpNet>,
    pub tunnels: Tunnels,
    pub logging: Logging,
    /// What `/proxy.pac` sends direct.
    pub pac: Pac,
    /// How warn rules behave.
    pub warn: Warn,
    /// Where shared state lives.
    pub state: State,
    /// Where access requests go, and what the person is told.
    pub requests: Requests,
    /// TLS inspection: what may be decrypted, and with which CA.
    pub inspection: Inspection,
    /// Test cases from `tests.yaml`, if present.
    pub cases: Vec<cases::Case>,
    /// Activity signatures from `activities.yaml` (empty when absent).
    pub activities: activity::Signatures,
}

impl Policy {
    /// Indices of every group `client`/`user` belongs to, in policy order.
    pub fn groups_of(&self, client: IpAddr, user: Option<&str>) -> Vec<u16> {
        let client = canonical_ip(client);
        self.groups
            .iter()
            .enumerate()
            .filter(|(_, g)| {
                g.networks.iter().any(|n| n.contains(&client))
                    || user.is_some_and(|u| g.users.contains(u))
            })
            .map(|(i, _)| i as u16)
            .collect()
    }

    pub fn platform(&self, id: &str) -> Option<&Platform> {
        self.platforms.iter().find(|p| &*p.id == id)
    }

    /// True when the proxy may connect to `ip`: public addresses always,
    /// non-public ones only when `destinations.allow` lists them.
    pub fn destination_allowed(&self, ip: IpAddr) -> bool {
        let ip = canonical_ip(ip);
        !is_non_public(ip) || self.destinations.iter().any(|n| n.contains(&ip))
    }

    pub fn tunnel_port_allowed(&self, port: u16) -> bool {
        self.tunnels
            .ports
            .iter()
            .any(|(a, b)| (*a..=*b).contains(&port))
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`) are treated as the IPv4
/// address they carry, so they cannot sidestep network rules.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// Loopback, private, link-local (cloud metadata), shared, unspecified,
/// multicast, broadcast and reserved addresses.
pub fn is_non_public(ip: IpAddr) -> bool {
    static RANGES: std::sync::OnceLock<Vec<IpNet>> = std::sync::OnceLock::new();
    let ranges = RANGES.get_or_init(|| {
        [
            "0.0.0.0/8",
            "10.0.0.0/8",
            "100.64.0.0/10",
            "127.0.0.0/8",
            "169.254.0.0/16",
            "172.16.0.0/12",
            "192.0.0.0/24",
            "192.0.2.0/24",
            "192.168.0.0/16",
            "198.18.0.0/15",
            "198.51.100.0/24",
            "203.0.113.0/24",
            "224.0.0.0/4",
            "240.0.0.0/4",
            "::/128",
            "::1/128",
            "64:ff9b:1::/48",
            "100::/64",
            "2001:db8::/32",
            "fc00::/7",
            "fe80::/10",
            "fec0::/10",
            "ff00::/8",
        ]
        .iter()
        // The list above is a constant of valid CIDRs; a typo would fail every test.
        .map(|s| s.parse().expect("constant CIDR"))
        .collect()
    });
    let ip = canonical_ip(ip);
    // NAT64 (64:ff9b::/96) embeds an IPv4 address: judge that address.
    if let IpAddr::V6(v6) = ip {
        let s = v6.segments();
        if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
            let o = v6.octets();
            return is_non_public(IpAddr::V4(std::net::Ipv4Addr::new(
                o[12], o[13], o[14], o[15],
            )));
        }
    }
    ranges.iter().any(|n| n.contains(&ip))
}

/// Resolves `p` against the policy directory unless it is absolute.
pub(crate) fn resolve_path(dir: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        dir.join(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_non_public_destinations() {
        let cases = [
            ("127.0.0.1", true),
            ("10.1.2.3", true),
            ("172.20.0.1", true),
            ("192.168.1.1", true),
            ("169.254.169.254", true),
            ("100.64.0.1", true),
            ("0.0.0.0", true),
            ("::1", true),
            ("fe80::1", true),
            ("fd00::1", true),
            ("::ffff:127.0.0.1", true),
            ("::ffff:10.0.0.1", true),
            ("64:ff9b::a9fe:a9fe", true),
            ("93.184.216.34", false),
            ("2606:4700::1111", false),
            ("64:ff9b::5db8:d822", false),
        ];
        for (ip, want) in cases {
            assert_eq!(is_non_public(ip.parse().unwrap()), want, "{ip}");
        }
    }
}
