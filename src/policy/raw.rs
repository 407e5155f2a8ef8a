//! Raw policy files, exactly as written.
//!
//! These structs mirror the YAML one to one and reject unknown keys. They are
//! never used to make a decision: `compile` turns them into the immutable
//! [`crate::policy::Policy`], checking every reference on the way. Optional
//! keys default here so that the compiled form never has to guess.

use indexmap::IndexMap;
use serde::Deserialize;

/// `catalog.yaml`: the platforms socialgate knows.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCatalog {
    pub version: u32,
    /// Category id -> description.
    pub categories: IndexMap<String, String>,
    /// Platform id -> platform.
    pub platforms: IndexMap<String, RawPlatform>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPlatform {
    pub name: String,
    pub category: String,
    #[serde(default)]
    pub owner: Option<String>,
    /// The platform's own domains: using them is using the platform.
    pub domains: Vec<String>,
    /// Widget, SDK and pixel domains embedded in other sites.
    #[serde(default)]
    pub embedded: Vec<String>,
}

/// `policy.yaml`: who may use what, when.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    pub version: u32,
    #[serde(default)]
    pub settings: RawSettings,
    #[serde(default)]
    pub auth: RawAuth,
    #[serde(default)]
    pub destinations: RawDestinations,
    #[serde(default)]
    pub tunnels: RawTunnels,
    #[serde(default)]
    pub logging: RawLogging,
    #[serde(default)]
    pub pac: RawPac,
    #[serde(default)]
    pub groups: IndexMap<String, RawGroup>,
    #[serde(default)]
    pub defaults: RawDefaults,
    #[serde(default)]
    pub rules: Vec<RawRule>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSettings {
    /// Default IANA time zone for rule windows.
    #[serde(default)]
    pub timezone: Option<String>,
    /// Organisation name shown on refusal pages.
    #[serde(default)]
    pub organization: Option<String>,
    /// Help/contact text shown on refusal pages.
    #[serde(default)]
    pub help: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    /// htpasswd file (bcrypt entries), relative to the policy directory.
    #[serde(default)]
    pub htpasswd: Option<String>,
    #[serde(default)]
    pub realm: Option<String>,
    /// Require credentials from every client, even ones whose network is in a group.
    #[serde(default)]
    pub required: bool,
    /// Minutes a verified credential stays cached (default 15).
    #[serde(default)]
    pub cache_minutes: Option<u32>,
    #[serde(default)]
    pub trusted_header: Option<RawTrustedHeader>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTrustedHeader {
    pub name: String,
    /// Gateways allowed to send the header.
    pub from: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDestinations {
    /// Non-public networks the proxy may nevertheless reach.
    #[serde(default)]
    pub allow: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTunnels {
    /// CONNECT ports allowed: numbers, `"a-b"` ranges, or `"any"`. Default: 443.
    #[serde(default)]
    pub ports: Option<Vec<RawPort>>,
    /// What to do when the ClientHello names another host than CONNECT.
    #[serde(default)]
    pub sni_mismatch: Option<String>,
    /// Milliseconds to wait for the ClientHello (default 3000).
    #[serde(default)]
    pub sni_timeout_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawPort {
    Number(u32),
    Text(String),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLogging {
    #[serde(default)]
    pub pseudonymize: Option<bool>,
    /// HMAC key file for pseudonyms, relative to the policy directory.
    #[serde(default)]
    pub key_file: Option<String>,
    /// Log URL paths of social-platform requests (default false).
    #[serde(default)]
    pub log_paths: Option<bool>,
}

/// What `/proxy.pac` sends DIRECT instead of through the proxy.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPac {
    /// Domains (and their subdomains); default `[local]`.
    #[serde(default)]
    pub direct_domains: Option<Vec<String>>,
    /// IPv4 networks the host resolves into; default the private ranges and loopback.
    #[serde(default)]
    pub direct_networks: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGroup {
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub networks: Vec<String>,
    #[serde(default)]
    pub users: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDefaults {
    #[serde(default)]
    pub catalog: Option<String>,
    #[serde(default)]
    pub embedded: Option<String>,
    #[serde(default)]
    pub other: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    pub id: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub users: Vec<String>,
    #[serde(default)]
    pub platforms: Vec<String>,
    #[serde(default)]
    pub categories: Vec<String>,
    #[serde(default)]
    pub domains: Vec<String>,
    #[serde(default)]
    pub include_embedded: bool,
    #[serde(default)]
    pub timezone: Option<String>,
    #[serde(default)]
    pub when: Vec<RawWindow>,
    pub action: String,
    #[serde(default)]
    pub mode: Option<String>,
    /// Shown on the refusal page.
    #[serde(default)]
    pub message: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWindow {
    /// Day names or ranges: `mon`, `mon-fri`, `weekdays`, `weekend`, `all`.
    pub days: Vec<String>,
    /// `HH:MM`, inclusive.
    pub from: String,
    /// `HH:MM`, exclusive; `24:00` is the end of the day; earlier than
    /// `from` means the window runs past midnight.
    pub to: String,
}

/// `tests.yaml`: policy test cases.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCases {
    pub tests: Vec<RawCase>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCase {
    pub name: String,
    pub client: String,
    #[serde(default)]
    pub user: Option<String>,
    pub url: String,
    #[serde(default)]
    pub at: Option<String>,
    /// The addresses the URL's host resolves to, as the proxy would see them.
    #[serde(default)]
    pub resolved: Option<Vec<String>>,
    /// The TLS server name of the ClientHello (https:// cases only).
    #[serde(default)]
    pub sni: Option<String>,
    pub expect: RawExpect,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExpect {
    pub action: String,
    #[serde(default)]
    pub mode: Option<String>,
    #[serde(default)]
    pub rule: Option<String>,
    #[serde(default)]
    pub platform: Option<String>,
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
}
