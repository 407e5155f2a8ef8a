//! Raw policy files, exactly as written.
//!
//! These structs mirror the YAML one to one and reject unknown keys. They are
//! never used to make a decision: `compile` turns them into the immutable
//! [`crate::policy::Policy`], checking every reference on the way. Optional
//! keys default here so that the compiled form never has to guess.
//!
//! The same structs derive `JsonSchema`: `socialgate schema` prints the JSON
//! Schemas editors use, so a key added here reaches the schema too. Values
//! that are plain strings here and checked by `compile` (networks, times,
//! port ranges, actions) say what they accept in their doc comment, which
//! becomes the schema's description.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::Deserialize;

/// `catalog.yaml`: the platforms socialgate knows.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawCatalog {
    /// Format version; `1`.
    pub version: u32,
    /// Category id -> description.
    pub categories: IndexMap<String, String>,
    /// Platform id -> platform.
    pub platforms: IndexMap<String, RawPlatform>,
    /// Sites that are never decrypted, by category (health, finance,
    /// government, pinned apps): category id -> its name and domains.
    /// `inspection.never.categories` in policy.yaml names these.
    #[serde(default)]
    pub never_inspect: IndexMap<String, RawSensitive>,
}

/// A never-inspect category of the catalog.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawSensitive {
    /// Display name, e.g. `Banking and finance`.
    pub name: String,
    /// Domains (each covers its subdomains) that are never decrypted.
    pub domains: Vec<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawPlatform {
    /// Display name, e.g. `Facebook`.
    pub name: String,
    /// A category id from `categories`.
    pub category: String,
    /// The company that runs the platform.
    #[serde(default)]
    pub owner: Option<String>,
    /// The platform's own domains: using them is using the platform.
    pub domains: Vec<String>,
    /// Widget, SDK and pixel domains embedded in other sites.
    #[serde(default)]
    pub embedded: Vec<String>,
}

/// `policy.yaml`: who may use what, when.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    /// Format version; `1`.
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
    pub warn: RawWarn,
    #[serde(default)]
    pub state: RawState,
    #[serde(default)]
    pub inspection: RawInspection,
    #[serde(default)]
    pub requests: RawRequests,
    #[serde(default)]
    pub groups: IndexMap<String, RawGroup>,
    #[serde(default)]
    pub defaults: RawDefaults,
    #[serde(default)]
    pub rules: Vec<RawRule>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
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
    /// The name of the page that shows people what applies to them and what
    /// is recorded (the proxy answers it itself; every refusal page links
    /// to it): a host name; default `socialgate.local`.
    #[serde(default)]
    pub transparency_host: Option<String>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    /// htpasswd file (bcrypt entries), relative to the policy directory.
    #[serde(default)]
    pub htpasswd: Option<String>,
    /// Basic-auth realm shown in the browser's credential prompt.
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

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawTrustedHeader {
    /// Header carrying the user name, set by an authenticating gateway.
    pub name: String,
    /// Gateways allowed to send the header: IP addresses or CIDR networks.
    pub from: Vec<String>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawDestinations {
    /// Non-public networks the proxy may nevertheless reach: IP addresses or
    /// CIDR networks, e.g. `10.20.0.0/16`.
    #[serde(default)]
    pub allow: Vec<String>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawTunnels {
    /// CONNECT ports allowed: numbers, `"a-b"` ranges, or `"any"`. Default: 443.
    #[serde(default)]
    pub ports: Option<Vec<RawPort>>,
    /// What to do when the ClientHello names another host than CONNECT:
    /// `block` (default) or `allow`.
    #[serde(default)]
    pub sni_mismatch: Option<String>,
    /// Milliseconds to wait for the ClientHello (default 3000).
    #[serde(default)]
    pub sni_timeout_ms: Option<u64>,
    /// What to do with a ClientHello that carries Encrypted Client Hello
    /// and a public (outer) name other than the CONNECT host: `block`
    /// (default) or `allow` (the CONNECT decision stands).
    #[serde(default)]
    pub ech: Option<String>,
}

/// TLS inspection: which tunnels socialgate decrypts, and with what.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawInspection {
    /// The company CA certificate (PEM), relative to the policy directory;
    /// default `--ca-cert` (made by `socialgate ca init`).
    #[serde(default)]
    pub ca_cert: Option<String>,
    /// The company CA's private key (PEM, mode 0600), relative to the policy
    /// directory; default `--ca-key`.
    #[serde(default)]
    pub ca_key: Option<String>,
    /// Inspect tunnels whose rule says nothing about inspection (default false).
    #[serde(default)]
    pub default: Option<bool>,
    /// What is never decrypted, whatever a rule says.
    #[serde(default)]
    pub never: Option<RawNever>,
    /// When a client refuses socialgate's certificate (a pinned app), pass
    /// that host through undecrypted for `learn_pinned_hours` (default true).
    #[serde(default)]
    pub learn_pinned: Option<bool>,
    /// Hours a learned pinned host passes through (default 24, 1-720).
    #[serde(default)]
    pub learn_pinned_hours: Option<u32>,
    /// Days a minted leaf certificate is valid (default 7, 1-90); leaves are
    /// renewed a day before they expire and backdated an hour for clock skew.
    #[serde(default)]
    pub leaf_days: Option<u32>,
    /// Leaf certificates kept in memory, least recently used evicted
    /// (default 10000, at least 1).
    #[serde(default)]
    pub leaf_cache: Option<usize>,
    /// Extra CA certificates (PEM) trusted for upstream servers, besides the
    /// bundled Mozilla roots and the system store; relative to the policy
    /// directory. `--upstream-ca` adds more.
    #[serde(default)]
    pub upstream_ca: Option<String>,
}

/// What is never decrypted.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawNever {
    /// Categories: the catalog's `never_inspect` categories (health,
    /// finance, government, pinned) or platform categories. Default: every
    /// `never_inspect` category of the catalog.
    #[serde(default)]
    pub categories: Option<Vec<String>>,
    /// Domains (each covers its subdomains), added to the categories.
    #[serde(default)]
    pub domains: Vec<String>,
}

/// A CONNECT port: a number, or a string `"a-b"` (a range) or `"any"`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum RawPort {
    /// A port number, 1-65535.
    Number(u32),
    /// `"a-b"` (inclusive range, e.g. `"8443-8444"`) or `"any"`.
    Text(String),
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawLogging {
    /// Log users as `p:` + 16 hex digits (keyed HMAC-SHA256) instead of their names (default true).
    #[serde(default)]
    pub pseudonymize: Option<bool>,
    /// HMAC key file for pseudonyms, relative to the policy directory.
    #[serde(default)]
    pub key_file: Option<String>,
    /// Log URL paths of social-platform requests (default false).
    #[serde(default)]
    pub log_paths: Option<bool>,
    /// How long access logs are kept, as people should read it on the
    /// transparency page, e.g. `90 days, then deleted`.
    #[serde(default)]
    pub retention: Option<String>,
    /// Who may reveal the person behind a pseudonym, for the transparency
    /// page, e.g. `the security officer, with the works council`.
    #[serde(default)]
    pub reveal: Option<String>,
}

/// What `/proxy.pac` sends DIRECT instead of through the proxy.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawPac {
    /// Domains (and their subdomains); default `[local]`.
    #[serde(default)]
    pub direct_domains: Option<Vec<String>>,
    /// IPv4 CIDR networks the host resolves into, e.g. `10.0.0.0/8`; default
    /// the private ranges and loopback.
    #[serde(default)]
    pub direct_networks: Option<Vec<String>>,
}

/// How `action: warn` rules behave.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawWarn {
    /// How long a Continue is remembered for the person, rule and platform:
    /// a duration such as `1h`, `30m` or `1h30m` (1 minute to 30 days;
    /// default `1h`).
    #[serde(default)]
    pub remember: Option<String>,
    /// How long the Continue link on a warning page can be used: a duration
    /// such as `15m` (1 minute to 1 day; default `15m`).
    #[serde(default)]
    pub link_expiry: Option<String>,
}

/// Access requests (`rules[].request_access`): where they go besides the
/// access log, and what the person is told.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRequests {
    /// An http:// or https:// URL that each request is POSTed to as JSON
    /// (in the background, retried with back-off); default: the access
    /// log only.
    #[serde(default)]
    pub webhook: Option<String>,
    /// Who gets the requests, as the person should read it after sending
    /// one, e.g. `your team lead and the IT desk`.
    #[serde(default)]
    pub recipient: Option<String>,
}

/// Where state shared by replicas lives (warn acknowledgements).
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawState {
    /// Redis URL, e.g. `redis://redis.internal:6379/0` or
    /// `redis+unix:///run/redis/redis.sock`; default: in memory, per process.
    #[serde(default)]
    pub redis: Option<String>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawGroup {
    #[serde(default)]
    pub description: Option<String>,
    /// Client networks in the group: IP addresses or CIDR networks, e.g. `10.1.0.0/16`.
    #[serde(default)]
    pub networks: Vec<String>,
    /// User names (from htpasswd or the trusted header) in the group.
    #[serde(default)]
    pub users: Vec<String>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawDefaults {
    /// Action for catalog platforms no rule matched: `allow` (default) or `block`.
    #[serde(default)]
    pub catalog: Option<String>,
    /// Action for embedded (widget, SDK, pixel) domains no rule matched: `allow` (default) or `block`.
    #[serde(default)]
    pub embedded: Option<String>,
    /// Action for every other destination: `allow` (default) or `block`.
    #[serde(default)]
    pub other: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    /// Unique rule id, shown in logs and on refusal pages.
    pub id: String,
    #[serde(default)]
    pub description: Option<String>,
    /// Group names from `groups`; empty means everyone.
    #[serde(default)]
    pub groups: Vec<String>,
    /// User names; empty means everyone.
    #[serde(default)]
    pub users: Vec<String>,
    /// Platform ids from the catalog.
    #[serde(default)]
    pub platforms: Vec<String>,
    /// Category ids from the catalog.
    #[serde(default)]
    pub categories: Vec<String>,
    /// Domains (each covers its subdomains).
    #[serde(default)]
    pub domains: Vec<String>,
    /// Also match the platforms' embedded (widget, SDK, pixel) domains.
    #[serde(default)]
    pub include_embedded: bool,
    /// IANA time zone for `when` windows and the days of `budget`, e.g.
    /// `Europe/Berlin`; default `settings.timezone`.
    #[serde(default)]
    pub timezone: Option<String>,
    /// Time windows the rule applies in; empty means always.
    #[serde(default)]
    pub when: Vec<RawWindow>,
    /// The activities the rule is about (`login`, `read`, `post`, `comment`,
    /// `react`, `share`, `upload`, `message`, `write`, `unknown`); empty
    /// means any. Activities are seen on plain HTTP and inspected HTTPS only.
    #[serde(default)]
    pub activities: Vec<String>,
    /// `allow`, `block`, `warn` (a page with a Continue button; see `warn:`),
    /// or `read_only` (reads pass, writes are refused). With `budget:`,
    /// `block` or `warn`: what happens once the budget is spent.
    pub action: String,
    /// A daily budget per person: the rule allows what it matches until the
    /// person has spent it today (in the rule's time zone), then applies its
    /// `action` (`block` or `warn`).
    #[serde(default)]
    pub budget: Option<RawBudget>,
    /// For `read_only`: what a request that may be a read or a write gets,
    /// `allow` (default) or `block`.
    #[serde(default)]
    pub unknown: Option<String>,
    /// `enforce` (default), or `report` to log the would-be action and let traffic pass.
    #[serde(default)]
    pub mode: Option<String>,
    /// Shown on the refusal or warning page.
    #[serde(default)]
    pub message: Option<String>,
    /// Decrypt matching HTTPS tunnels (`true`) or never (`false`); unset:
    /// `inspection.default`. Needs the company CA (`socialgate ca init`).
    #[serde(default)]
    pub inspect: Option<bool>,
    /// The block page offers "Request access": the person writes one line
    /// of reason, recorded as an `access-request` event (and posted to
    /// `requests.webhook`). Only for `action: block`.
    #[serde(default)]
    pub request_access: bool,
}

/// A rule's daily budget per person; at least one of the two.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawBudget {
    /// Active minutes a day (1-1440): minutes in which the person's traffic
    /// under the rule moved, joined across gaps of up to 5 minutes (the
    /// report's active-time estimate).
    #[serde(default)]
    pub minutes: Option<u32>,
    /// Megabytes a day (1 MB = 1,000,000 bytes; 1-10000000): request and
    /// response bodies and tunnel bytes, both ways.
    #[serde(default)]
    pub megabytes: Option<u64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
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
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawCases {
    pub tests: Vec<RawCase>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawCase {
    pub name: String,
    /// Client IP address.
    pub client: String,
    /// Authenticated user name.
    #[serde(default)]
    pub user: Option<String>,
    /// `http://` or `https://` URL (https:// is checked as a CONNECT tunnel).
    pub url: String,
    /// RFC 3339 time with offset, e.g. `2026-03-02T09:30:00+01:00`; default now.
    #[serde(default)]
    pub at: Option<String>,
    /// The addresses the URL's host resolves to, as the proxy would see them.
    #[serde(default)]
    pub resolved: Option<Vec<String>>,
    /// The TLS server name of the ClientHello (https:// cases only).
    #[serde(default)]
    pub sni: Option<String>,
    /// How much of the deciding rule's daily budget the person has spent
    /// today, e.g. `25m`, `300MB` or `25m,300MB`; default nothing.
    #[serde(default)]
    pub spent: Option<String>,
    /// The request method, for activity cases; default GET. A case with a
    /// method, headers or a body is a request socialgate can see: plain
    /// HTTP, or HTTPS that a rule inspects.
    #[serde(default)]
    pub method: Option<String>,
    /// Request headers, for activity cases, e.g. `{X-FB-Friendly-Name: ComposerStoryCreateMutation}`.
    #[serde(default)]
    pub headers: IndexMap<String, String>,
    /// The request body, for activity cases (give `Content-Type` in `headers`).
    #[serde(default)]
    pub body: Option<String>,
    pub expect: RawExpect,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawExpect {
    /// `allow`, `block` or `warn`.
    #[serde(default)]
    pub action: Option<String>,
    /// The activity the request is, e.g. `post` or `read` (see activities.yaml).
    #[serde(default)]
    pub activity: Option<String>,
    /// The id of the signature that must match, or `none` for no signature.
    #[serde(default)]
    pub signature: Option<String>,
    /// `enforce` or `report`.
    #[serde(default)]
    pub mode: Option<String>,
    /// A rule id, or `default:catalog`, `default:other`, `default:embedded`, `builtin:identity`.
    #[serde(default)]
    pub rule: Option<String>,
    /// A platform id from the catalog.
    #[serde(default)]
    pub platform: Option<String>,
    /// A group name from policy.yaml.
    #[serde(default)]
    pub group: Option<String>,
    /// A reason label from docs/access-log.md, e.g. `rule-matched`.
    #[serde(default)]
    pub reason: Option<String>,
    /// Whether the tunnel is decrypted (https:// cases only; the ClientHello
    /// is taken to be a browser's, naming `sni` or the URL's host).
    #[serde(default)]
    pub inspect: Option<bool>,
}

/// `activities.yaml`: activity signatures per catalog platform (optional).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawActivities {
    /// Schema version; this socialgate reads `1`.
    pub version: u32,
    /// When the shipped signatures were last checked against the platforms' web clients (`YYYY-MM-DD`).
    #[serde(default)]
    pub checked: Option<String>,
    /// Catalog platform id -> its signatures.
    #[serde(default)]
    pub platforms: IndexMap<String, RawPlatformActivities>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawPlatformActivities {
    /// What a non-safe request that no signature matches is: `write` (the
    /// platform's clients use POST only for writes; the default) or
    /// `unknown` (they also read with POST).
    #[serde(default)]
    pub unmatched: Option<String>,
    /// Signatures, tried in order; the first that matches decides.
    #[serde(default)]
    pub signatures: Vec<RawSignature>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawSignature {
    /// Unique id, shown in the access log and by `explain`, e.g. `x-post`.
    pub id: String,
    /// `login`, `read`, `post`, `comment`, `react`, `share`, `upload`, `message`,
    /// or `write` (a write of a kind no other signature names).
    pub activity: String,
    /// Methods, e.g. `[POST]`; empty means any.
    #[serde(default)]
    pub methods: Vec<String>,
    /// Hosts (each covers its subdomains); empty means any host of the platform.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// A regular expression on the URL path (without the query), e.g. `^/i/api/graphql/[^/]+/CreateTweet$`.
    pub path: String,
    /// The operation name, where the path does not tell.
    #[serde(default)]
    pub operation: Option<RawOperation>,
    /// A content-type prefix, e.g. `multipart/form-data`.
    #[serde(default)]
    pub content_type: Option<String>,
    /// Where the pattern comes from (a public source).
    pub source: String,
    /// When it was last checked (`YYYY-MM-DD`).
    pub checked: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawOperation {
    /// Where to read it, first that is present wins: `header:NAME`,
    /// `query:NAME`, `form:NAME` (urlencoded body) or `json:NAME` (a
    /// top-level key of a JSON body). Bodies are read up to 64 KiB.
    pub from: Vec<String>,
    /// A regular expression the operation name must match.
    pub pattern: String,
}
