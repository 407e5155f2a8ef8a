//! Reading and compiling a policy directory.
//!
//! Three steps, kept apart: read the files, parse them into the raw structs,
//! then compile and validate into an immutable [`Policy`]. Every problem is
//! collected (not just the first), each with its file, a location or value
//! path, and a hint. A policy with any error is never returned.
//!
//! The directory holds `catalog.yaml` (platforms), `policy.yaml` (groups,
//! rules, settings), optionally `tests.yaml` (policy test cases) and the files
//! those name (the htpasswd file).
//!
//! Why one long file: each section's compile step sits next to the error
//! messages and hints it produces, and they all share one error collector;
//! split by section, every file would repeat that plumbing.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use sha2::{Digest, Sha256};

use super::error::closest;
use super::host::{normalize_host, Host};
use super::raw::*;
use super::schedule::{parse_clock, parse_days, parse_tz, Schedule, Window};
use super::*;
use crate::identity::Htpasswd;

pub const CATALOG_FILE: &str = "catalog.yaml";
pub const POLICY_FILE: &str = "policy.yaml";
pub const CASES_FILE: &str = "tests.yaml";
pub const ACTIVITIES_FILE: &str = "activities.yaml";

/// Loads, validates and compiles the policy in `dir`.
pub fn load_dir(dir: &Path) -> Result<Policy, ConfigErrors> {
    let mut errs = Vec::new();
    let mut hasher = Sha256::new();

    let catalog_path = dir.join(CATALOG_FILE);
    let policy_path = dir.join(POLICY_FILE);
    let cases_path = dir.join(CASES_FILE);
    let activities_path = dir.join(ACTIVITIES_FILE);

    let catalog: Option<RawCatalog> = read_yaml(&catalog_path, true, &mut hasher, &mut errs);
    let raw: Option<RawPolicy> = read_yaml(&policy_path, true, &mut hasher, &mut errs);
    let raw_activities: Option<RawActivities> =
        read_yaml(&activities_path, false, &mut hasher, &mut errs);
    let raw_cases: Option<RawCases> = read_yaml(&cases_path, false, &mut hasher, &mut errs);

    let (Some(catalog), Some(raw)) = (catalog, raw) else {
        return Err(ConfigErrors(errs));
    };
    let mut c = Compiler {
        dir,
        file: policy_path.clone(),
        errs: &mut errs,
    };
    let policy = c.compile(catalog, &catalog_path, raw, &mut hasher);
    let Some(mut policy) = policy else {
        return Err(ConfigErrors(errs));
    };
    if let Some(raw) = raw_activities {
        policy.activities = activity::compile(raw, &activities_path, &policy, &mut errs);
    }
    if let Some(raw_cases) = raw_cases {
        match cases::compile_cases(&policy, &cases_path, raw_cases) {
            Ok(cases) => policy.cases = cases,
            Err(mut e) => errs.append(&mut e),
        }
    }
    if !errs.is_empty() {
        return Err(ConfigErrors(errs));
    }
    let digest = hasher.finalize();
    policy.source.hash = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    Ok(policy)
}

fn read_yaml<T: serde::de::DeserializeOwned>(
    path: &Path,
    required: bool,
    hasher: &mut Sha256,
    errs: &mut Vec<ConfigError>,
) -> Option<T> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => return None,
        Err(e) => {
            errs.push(
                ConfigError::new(path, "", format!("cannot read: {e}")).hint(
                    "a policy directory holds catalog.yaml and policy.yaml (tests.yaml is optional)",
                ),
            );
            return None;
        }
    };
    hasher.update(
        path.file_name()
            .map(|n| n.as_encoded_bytes())
            .unwrap_or_default(),
    );
    hasher.update(text.as_bytes());
    match crate::yaml::from_str::<T>(&text) {
        Ok(v) => Some(v),
        Err(mut e) => {
            let hint = match unknown_field(&e.message) {
                Some((field, expected)) => {
                    let hint = unknown_field_hint(&field, &expected);
                    e.message = format!("unknown field `{field}`");
                    Some(hint)
                }
                None => yaml_hint(&e.message),
            };
            let mut err = ConfigError::new(path, e.path, e.message).at(e.location);
            if let Some(h) = hint {
                err = err.hint(h);
            }
            errs.push(err);
            None
        }
    }
}

/// The key and the keys allowed there, from serde's "unknown field `x`,
/// expected one of `a`, `b`" (or "expected `a`", or "there are no fields").
fn unknown_field(message: &str) -> Option<(String, Vec<String>)> {
    let rest = message.strip_prefix("unknown field `")?;
    let (field, rest) = rest.split_once('`')?;
    let expected = rest
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect();
    Some((field.to_string(), expected))
}

fn unknown_field_hint(field: &str, expected: &[String]) -> String {
    let typo = "unknown keys are refused so that typos cannot hide";
    match closest(field, expected.iter().map(String::as_str)) {
        Some(k) => format!("did you mean `{k}`? {typo}"),
        None if expected.is_empty() => format!("this place takes no keys; {typo}"),
        None => {
            let keys: Vec<String> = expected.iter().map(|k| format!("`{k}`")).collect();
            format!(
                "the keys here are {}; {typo} (docs/policy.md)",
                keys.join(", ")
            )
        }
    }
}

fn yaml_hint(message: &str) -> Option<String> {
    if message.starts_with("unknown field") {
        Some("check the spelling against docs/policy.md; unknown keys are refused so typos cannot hide".into())
    } else if message.starts_with("missing field") {
        Some("add the field; docs/policy.md lists the required keys".into())
    } else if message.contains("invalid type") {
        Some(
            "check the value's type (a list needs [a, b] or '- ' items; text may need quotes)"
                .into(),
        )
    } else if message.contains("did not find expected")
        || message.contains("mapping values are not allowed")
    {
        Some("YAML syntax: check indentation and that text containing ': ' is quoted".into())
    } else {
        None
    }
}

struct Compiler<'a> {
    dir: &'a Path,
    file: PathBuf,
    errs: &'a mut Vec<ConfigError>,
}

impl Compiler<'_> {
    fn err(
        &mut self,
        path: impl Into<String>,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) {
        self.errs
            .push(ConfigError::new(&self.file, path, message).hint(hint));
    }

    fn compile(
        &mut self,
        catalog: RawCatalog,
        catalog_path: &Path,
        raw: RawPolicy,
        hasher: &mut Sha256,
    ) -> Option<Policy> {
        let start_errors = self.errs.len();

        // Catalog.
        self.file = catalog_path.to_path_buf();
        if catalog.version != 1 {
            self.err(
                "version",
                format!("unsupported catalog version {}", catalog.version),
                "this socialgate reads version: 1",
            );
        }
        let categories: Vec<Arc<str>> = catalog
            .categories
            .keys()
            .map(|k| Arc::from(k.as_str()))
            .collect();
        let mut platforms = Vec::new();
        let mut domains: DomainTable<DomainHit> = DomainTable::new();
        let mut domain_owner: HashMap<String, String> = HashMap::new();
        for (i, (id, p)) in catalog.platforms.iter().enumerate() {
            let base = format!("platforms.{id}");
            if !valid_id(id) {
                self.err(
                    &base,
                    format!("platform id {id:?} is not a valid id"),
                    "use letters, digits, '-', '_' and '.' (at most 64)",
                );
            }
            if !catalog.categories.contains_key(&p.category) {
                let hint = match closest(&p.category, catalog.categories.keys().map(String::as_str))
                {
                    Some(s) => {
                        format!("did you mean {s:?}? categories are declared under `categories:`")
                    }
                    None => {
                        "declare the category under `categories:` or use an existing one".into()
                    }
                };
                self.err(
                    format!("{base}.category"),
                    format!("unknown category {:?}", p.category),
                    hint,
                );
            }
            if p.domains.is_empty() {
                self.err(
                    format!("{base}.domains"),
                    "a platform needs at least one domain",
                    "list the platform's own domains, e.g. [example.com]",
                );
            }
            for (class, list, key) in [
                (Class::Primary, &p.domains, "domains"),
                (Class::Embedded, &p.embedded, "embedded"),
            ] {
                for (j, d) in list.iter().enumerate() {
                    let path = format!("{base}.{key}[{j}]");
                    let Some(name) = self.domain(&path, d) else {
                        continue;
                    };
                    if let Some(prev) = domain_owner.get(&name) {
                        self.err(
                            &path,
                            format!("domain {name:?} is already listed by {prev}"),
                            "a domain belongs to one platform and class; remove one of the entries",
                        );
                        continue;
                    }
                    domain_owner.insert(name.clone(), path.clone());
                    domains.insert(
                        &name,
                        DomainHit {
                            platform: i as u16,
                            class,
                        },
                    );
                }
            }
            platforms.push(Platform {
                id: Arc::from(id.as_str()),
                name: Arc::from(p.name.as_str()),
                category: Arc::from(p.category.as_str()),
                owner: p.owner.as_deref().map(Arc::from),
            });
        }
        if platforms.len() > u16::MAX as usize {
            self.err("platforms", "too many platforms", "at most 65535 platforms");
        }

        // Policy.
        self.file = self.dir.join(POLICY_FILE);
        if raw.version != 1 {
            self.err(
                "version",
                format!("unsupported policy version {}", raw.version),
                "this socialgate reads version: 1",
            );
        }
        let tz_name = raw
            .settings
            .timezone
            .clone()
            .unwrap_or_else(|| "UTC".into());
        let timezone = match parse_tz(&tz_name) {
            Ok(tz) => tz,
            Err(e) => {
                self.err(
                    "settings.timezone",
                    e,
                    "see the tz database names, e.g. Europe/Berlin",
                );
                jiff::tz::TimeZone::UTC
            }
        };
        let settings = Settings {
            timezone: timezone.clone(),
            timezone_name: tz_name.clone(),
            organization: raw.settings.organization.as_deref().map(Arc::from),
            help: raw.settings.help.as_deref().map(Arc::from),
            transparency_host: match raw.settings.transparency_host.as_deref() {
                None => TRANSPARENCY_HOST.to_string(),
                Some(h) => self
                    .domain("settings.transparency_host", h)
                    .unwrap_or_else(|| TRANSPARENCY_HOST.to_string()),
            },
        };

        let auth = self.auth(&raw.auth, hasher);

        let destinations = raw
            .destinations
            .allow
            .iter()
            .enumerate()
            .filter_map(|(i, n)| self.network(&format!("destinations.allow[{i}]"), n))
            .collect();

        let tunnels = self.tunnels(&raw.tunnels);
        let logging = Logging {
            pseudonymize: raw.logging.pseudonymize.unwrap_or(true),
            key_file: raw
                .logging
                .key_file
                .as_deref()
                .map(|p| resolve_path(self.dir, p)),
            log_paths: raw.logging.log_paths.unwrap_or(false),
            retention: raw.logging.retention.as_deref().map(Arc::from),
            reveal: raw.logging.reveal.as_deref().map(Arc::from),
        };

        let pac = self.pac(&raw.pac);
        let warn = self.warn(&raw.warn);
        let state = self.state(&raw.state);
        let requests = self.requests(&raw.requests);
        let inspection = self.inspection(&raw.inspection, &catalog, catalog_path, &categories);

        // Groups.
        let mut groups = Vec::new();
        for (name, g) in &raw.groups {
            let base = format!("groups.{name}");
            if !valid_id(name) {
                self.err(
                    &base,
                    format!("group name {name:?} is not a valid name"),
                    "use letters, digits, '-', '_' and '.' (at most 64)",
                );
            }
            if g.networks.is_empty() && g.users.is_empty() {
                self.err(
                    &base,
                    "the group has neither networks nor users",
                    "add `networks:` (CIDRs) and/or `users:`",
                );
            }
            let networks = g
                .networks
                .iter()
                .enumerate()
                .filter_map(|(i, n)| self.network(&format!("{base}.networks[{i}]"), n))
                .collect();
            groups.push(Group {
                name: Arc::from(name.as_str()),
                description: g.description.clone(),
                networks,
                users: g.users.iter().cloned().collect(),
            });
        }
        if groups.len() > u16::MAX as usize {
            self.err("groups", "too many groups", "at most 65535 groups");
        }

        let defaults = Defaults {
            catalog: self.action(
                "defaults.catalog",
                raw.defaults.catalog.as_deref().unwrap_or("allow"),
            ),
            embedded: self.action(
                "defaults.embedded",
                raw.defaults.embedded.as_deref().unwrap_or("allow"),
            ),
            other: self.action(
                "defaults.other",
                raw.defaults.other.as_deref().unwrap_or("allow"),
            ),
        };

        // Rules.
        let mut rules = Vec::new();
        let mut rule_domains: DomainTable<Vec<u16>> = DomainTable::new();
        let mut seen_ids = HashSet::new();
        for (i, r) in raw.rules.iter().enumerate() {
            let base = format!("rules[{i}]");
            if !valid_id(&r.id) {
                self.err(format!("{base}.id"), format!("rule id {:?} is not a valid id", r.id), "use letters, digits, '-', '_' and '.' (at most 64; the id appears in logs and metrics)");
            } else if !seen_ids.insert(r.id.clone()) {
                self.err(
                    format!("{base}.id"),
                    format!("rule id {:?} is used twice", r.id),
                    "give every rule its own id",
                );
            }
            let mut group_ids = Vec::new();
            for (j, g) in r.groups.iter().enumerate() {
                match groups.iter().position(|x| &*x.name == g.as_str()) {
                    Some(idx) => group_ids.push(idx as u16),
                    None => {
                        let hint = match closest(g, groups.iter().map(|x| &*x.name)) {
                            Some(s) => {
                                format!("did you mean {s:?}? groups are defined under `groups:`")
                            }
                            None => "define the group under `groups:`".into(),
                        };
                        self.err(
                            format!("{base}.groups[{j}]"),
                            format!("unknown group {g:?}"),
                            hint,
                        );
                    }
                }
            }
            let mut mask: Option<Vec<bool>> = None;
            for (j, p) in r.platforms.iter().enumerate() {
                match platforms.iter().position(|x| &*x.id == p.as_str()) {
                    Some(idx) => {
                        mask.get_or_insert_with(|| vec![false; platforms.len()])[idx] = true
                    }
                    None => {
                        let hint = match closest(p, platforms.iter().map(|x| &*x.id)) {
                            Some(s) => format!("did you mean {s:?}? platforms are defined in catalog.yaml"),
                            None => "use a platform id from catalog.yaml, or list the site under `domains:`".into(),
                        };
                        self.err(
                            format!("{base}.platforms[{j}]"),
                            format!("unknown platform {p:?}"),
                            hint,
                        );
                    }
                }
            }
            for (j, cat) in r.categories.iter().enumerate() {
                if !categories.iter().any(|c| &**c == cat.as_str()) {
                    let hint = match closest(cat, categories.iter().map(|c| &**c)) {
                        Some(s) => format!("did you mean {s:?}?"),
                        None => format!("known categories: {}", categories.join(", ")),
                    };
                    self.err(
                        format!("{base}.categories[{j}]"),
                        format!("unknown category {cat:?}"),
                        hint,
                    );
                    continue;
                }
                let m = mask.get_or_insert_with(|| vec![false; platforms.len()]);
                for (k, p) in platforms.iter().enumerate() {
                    if &*p.category == cat.as_str() {
                        m[k] = true;
                    }
                }
            }
            for (j, d) in r.domains.iter().enumerate() {
                let path = format!("{base}.domains[{j}]");
                if let Some(name) = self.domain(&path, d) {
                    match rule_domains.get_exact_mut(&name) {
                        Some(v) => v.push(i as u16),
                        None => {
                            rule_domains.insert(&name, vec![i as u16]);
                        }
                    }
                }
            }
            let (action, read_only) = if r.action == "read_only" {
                let unknown = match r.unknown.as_deref().unwrap_or("allow") {
                    "allow" => Action::Allow,
                    "block" => Action::Block,
                    other => {
                        self.err(
                            format!("{base}.unknown"),
                            format!("unknown value {other:?}"),
                            "write `allow` (the default: a request that may be a read passes) or `block`",
                        );
                        Action::Allow
                    }
                };
                (Action::Allow, Some(unknown))
            } else {
                if r.unknown.is_some() {
                    self.err(
                        format!("{base}.unknown"),
                        "`unknown:` only applies to `action: read_only`",
                        "remove it, or make the rule read_only",
                    );
                }
                (self.rule_action(&format!("{base}.action"), &r.action), None)
            };
            let activities = if r.activities.is_empty() {
                None
            } else {
                let mut set = super::activity::ActivitySet::default();
                for (j, a) in r.activities.iter().enumerate() {
                    match super::activity::Activity::parse(a) {
                        Some(a) => set.insert(a),
                        None => {
                            let names = super::activity::Activity::ALL.map(|a| a.as_str());
                            let hint = match closest(a, names) {
                                Some(s) => {
                                    format!("did you mean {s:?}? one of: {}", names.join(", "))
                                }
                                None => format!("one of: {}", names.join(", ")),
                            };
                            self.err(
                                format!("{base}.activities[{j}]"),
                                format!("unknown activity {a:?}"),
                                hint,
                            );
                        }
                    }
                }
                Some(set)
            };
            let mode = match r.mode.as_deref().unwrap_or("enforce") {
                "enforce" => Mode::Enforce,
                "report" => Mode::Report,
                other => {
                    self.err(format!("{base}.mode"), format!("unknown mode {other:?}"), "write `enforce`, or `report` to log the would-be action and let traffic pass");
                    Mode::Enforce
                }
            };
            let (rule_tz, rule_tz_name) = match &r.timezone {
                Some(name) => match parse_tz(name) {
                    Ok(tz) => (tz, name.clone()),
                    Err(e) => {
                        self.err(
                            format!("{base}.timezone"),
                            e,
                            "see the tz database names, e.g. Europe/Berlin",
                        );
                        (timezone.clone(), tz_name.clone())
                    }
                },
                None => (timezone.clone(), tz_name.clone()),
            };
            if r.request_access && (action != Action::Block || read_only.is_some()) {
                self.err(
                    format!("{base}.request_access"),
                    format!("`request_access` needs `action: block`; this rule is `{}`", r.action),
                    "remove `request_access`, or make the rule `action: block` (only a block page offers Request access)",
                );
            }
            let budget = r.budget.as_ref().and_then(|b| {
                self.budget(&base, b, &r.action, (rule_tz.clone(), rule_tz_name.clone()))
            });
            let schedule = if r.when.is_empty() {
                if r.timezone.is_some() && r.budget.is_none() {
                    self.err(
                        format!("{base}.timezone"),
                        "a time zone without `when:` windows or a `budget:` has no effect",
                        "add `when:` windows or remove `timezone:`",
                    );
                }
                None
            } else {
                let (tz, tz_name) = (rule_tz, rule_tz_name);
                let windows = r
                    .when
                    .iter()
                    .enumerate()
                    .filter_map(|(j, w)| self.window(&format!("{base}.when[{j}]"), w))
                    .collect();
                Some(Schedule {
                    tz,
                    tz_name,
                    windows,
                })
            };
            rules.push(Rule {
                id: Arc::from(r.id.as_str()),
                description: r.description.clone(),
                groups: group_ids,
                users: r.users.iter().cloned().collect(),
                platforms: mask,
                has_domains: !r.domains.is_empty(),
                domains: r
                    .domains
                    .iter()
                    .filter_map(|d| normalize_host(d).ok().map(|h| h.to_string()))
                    .collect(),
                include_embedded: r.include_embedded,
                schedule,
                activities,
                action,
                read_only,
                mode,
                message: r.message.as_deref().map(Arc::from),
                inspect: r.inspect,
                budget,
                request_access: r.request_access,
            });
        }
        if rules.len() > u16::MAX as usize {
            self.err("rules", "too many rules", "at most 65535 rules");
        }

        if self.errs.len() > start_errors {
            return None;
        }
        Some(Policy {
            source: Source {
                dir: self.dir.to_path_buf(),
                version: raw.version,
                hash: String::new(),
            },
            categories,
            platforms,
            domains,
            rule_domains,
            groups,
            rules,
            defaults,
            settings,
            auth,
            destinations,
            tunnels,
            logging,
            pac,
            warn,
            state,
            requests,
            inspection,
            cases: Vec::new(),
            activities: Default::default(),
        })
    }

    /// `inspection:`, with the catalog's never-inspect categories.
    fn inspection(
        &mut self,
        raw: &RawInspection,
        catalog: &RawCatalog,
        catalog_path: &Path,
        platform_categories: &[Arc<str>],
    ) -> Inspection {
        // The catalog's never-inspect categories: their domains are checked
        // here (in catalog.yaml) whether or not the policy uses them.
        let policy_file = std::mem::replace(&mut self.file, catalog_path.to_path_buf());
        let mut sensitive: Vec<(Arc<str>, Vec<String>)> = Vec::new();
        let mut names: HashMap<Arc<str>, Arc<str>> = HashMap::new();
        for (id, cat) in &catalog.never_inspect {
            let base = format!("never_inspect.{id}");
            if !valid_id(id) {
                self.err(
                    &base,
                    format!("category id {id:?} is not a valid id"),
                    "use letters, digits, '-', '_' and '.' (at most 64)",
                );
            }
            if catalog.categories.contains_key(id) {
                self.err(
                    &base,
                    format!("{id:?} is also a platform category"),
                    format!("give the never-inspect category its own id, e.g. `{id}-private`"),
                );
            }
            let domains = cat
                .domains
                .iter()
                .enumerate()
                .filter_map(|(j, d)| self.domain(&format!("{base}.domains[{j}]"), d))
                .collect();
            names.insert(Arc::from(id.as_str()), Arc::from(cat.name.as_str()));
            sensitive.push((Arc::from(id.as_str()), domains));
        }
        self.file = policy_file;

        let mut never_domains: DomainTable<NeverHit> = DomainTable::new();
        let mut never_platform_categories = Vec::new();
        let mut never_names: Vec<Arc<str>> = Vec::new();
        let mut never_listed: Vec<String> = Vec::new();
        let never = raw.never.as_ref();
        match never.and_then(|n| n.categories.as_ref()) {
            // Default: every never-inspect category of the catalog.
            None => {
                for (id, domains) in &sensitive {
                    never_names.extend(names.get(id).cloned());
                    for d in domains {
                        never_domains.insert(d, NeverHit::Category(id.clone()));
                    }
                }
            }
            Some(list) => {
                for (i, c) in list.iter().enumerate() {
                    if let Some((id, domains)) = sensitive.iter().find(|(id, _)| &**id == c) {
                        never_names.extend(names.get(id).cloned());
                        for d in domains {
                            never_domains.insert(d, NeverHit::Category(id.clone()));
                        }
                    } else if let Some(cat) = platform_categories.iter().find(|p| &***p == c) {
                        never_platform_categories.push(cat.clone());
                    } else {
                        let known = sensitive
                            .iter()
                            .map(|(id, _)| &**id)
                            .chain(platform_categories.iter().map(|c| &**c));
                        let hint = match closest(c, known) {
                            Some(s) => format!("did you mean {s:?}?"),
                            None => "name a category from catalog.yaml's `never_inspect:` or `categories:`".into(),
                        };
                        self.err(
                            format!("inspection.never.categories[{i}]"),
                            format!("unknown category {c:?}"),
                            hint,
                        );
                    }
                }
            }
        }
        for (i, d) in never
            .map(|n| n.domains.as_slice())
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            if let Some(name) = self.domain(&format!("inspection.never.domains[{i}]"), d) {
                never_listed.push(name.clone());
                if never_domains.get_exact_mut(&name).is_none() {
                    never_domains.insert(&name, NeverHit::Listed);
                }
            }
        }
        let hours = raw.learn_pinned_hours.unwrap_or(24);
        if !(1..=720).contains(&hours) {
            self.err(
                "inspection.learn_pinned_hours",
                format!("{hours} hours is out of range"),
                "write 1 to 720 (30 days); the default is 24",
            );
        }
        let days = raw.leaf_days.unwrap_or(7);
        if !(1..=90).contains(&days) {
            self.err(
                "inspection.leaf_days",
                format!("{days} days is out of range"),
                "write 1 to 90; short-lived leaves limit the harm of a leaked leaf key (default 7)",
            );
        }
        let leaf_cache = raw.leaf_cache.unwrap_or(10_000);
        if leaf_cache == 0 {
            self.err(
                "inspection.leaf_cache",
                "the leaf cache cannot be empty",
                "write at least 1; the default 10000 holds a leaf per site for a large office",
            );
        }
        if raw.ca_cert.is_some() != raw.ca_key.is_some() {
            let (given, missing) = if raw.ca_cert.is_some() {
                ("ca_cert", "ca_key")
            } else {
                ("ca_key", "ca_cert")
            };
            self.err(
                format!("inspection.{missing}"),
                format!("`inspection.{given}` is set but `inspection.{missing}` is not"),
                "name both files of the company CA (made by `socialgate ca init`), or neither to use --ca-cert/--ca-key",
            );
        }
        Inspection {
            ca_cert: raw.ca_cert.as_deref().map(|p| resolve_path(self.dir, p)),
            ca_key: raw.ca_key.as_deref().map(|p| resolve_path(self.dir, p)),
            default: raw.default.unwrap_or(false),
            never_domains,
            never_platform_categories,
            never_names,
            never_listed,
            learn_pinned: raw.learn_pinned.unwrap_or(true),
            pinned_for: Duration::from_secs(3600 * u64::from(hours.clamp(1, 720))),
            leaf_validity: Duration::from_secs(86_400 * u64::from(days.clamp(1, 90))),
            leaf_cache: leaf_cache.max(1),
            upstream_ca: raw
                .upstream_ca
                .as_deref()
                .map(|p| resolve_path(self.dir, p)),
        }
    }

    fn auth(&mut self, raw: &RawAuth, hasher: &mut Sha256) -> Auth {
        let htpasswd = raw.htpasswd.as_ref().and_then(|p| {
            let path = resolve_path(self.dir, p);
            match std::fs::read_to_string(&path) {
                Ok(text) => {
                    hasher.update(text.as_bytes());
                    match Htpasswd::parse(&text) {
                        Ok(h) => Some(Arc::new(h)),
                        Err(errors) => {
                            for e in errors {
                                self.errs.push(
                                    ConfigError::new(&path, "", e.message)
                                        .at(Some((e.line, 1)))
                                        .hint(e.hint),
                                );
                            }
                            None
                        }
                    }
                }
                Err(e) => {
                    self.err("auth.htpasswd", format!("cannot read {}: {e}", path.display()), "create it with `htpasswd -B -c FILE USER`; relative paths are relative to the policy directory");
                    None
                }
            }
        });
        let trusted_header = raw.trusted_header.as_ref().and_then(|t| {
            let name = match http::HeaderName::from_bytes(t.name.as_bytes()) {
                Ok(n) => Some(n),
                Err(_) => {
                    self.err("auth.trusted_header.name", format!("{:?} is not a valid header name", t.name), "write a header name such as X-Authenticated-User");
                    None
                }
            };
            if t.from.is_empty() {
                self.err("auth.trusted_header.from", "no gateway networks listed", "list the networks of the gateways allowed to send the header; it is ignored from everyone else");
            }
            let from: Vec<IpNet> = t
                .from
                .iter()
                .enumerate()
                .filter_map(|(i, n)| self.network(&format!("auth.trusted_header.from[{i}]"), n))
                .collect();
            Some(TrustedHeader { name: name?, from })
        });
        if raw.required && raw.htpasswd.is_none() {
            self.err("auth.required", "`required: true` needs an htpasswd file to check credentials against", "add `auth.htpasswd: FILE` (made with `htpasswd -B -c FILE USER`) or remove `required`");
        }
        Auth {
            htpasswd,
            htpasswd_path: raw.htpasswd.as_ref().map(|p| resolve_path(self.dir, p)),
            realm: raw.realm.clone().unwrap_or_else(|| "socialgate".into()),
            required: raw.required,
            cache_ttl: Duration::from_secs(60 * u64::from(raw.cache_minutes.unwrap_or(15))),
            trusted_header,
        }
    }

    fn tunnels(&mut self, raw: &RawTunnels) -> Tunnels {
        let mut ports = Vec::new();
        match &raw.ports {
            None => ports.push((443, 443)),
            Some(list) => {
                for (i, p) in list.iter().enumerate() {
                    let path = format!("tunnels.ports[{i}]");
                    let hint = "write a port (443), a range (\"8000-8999\") or \"any\"";
                    match p {
                        RawPort::Number(n) if (1..=65535).contains(n) => {
                            ports.push((*n as u16, *n as u16))
                        }
                        RawPort::Number(n) => self.err(&path, format!("{n} is not a port"), hint),
                        RawPort::Text(t) if t == "any" => ports.push((1, 65535)),
                        RawPort::Text(t) => {
                            let parsed = t.split_once('-').and_then(|(a, b)| {
                                let a: u16 = a.trim().parse().ok()?;
                                let b: u16 = b.trim().parse().ok()?;
                                (a >= 1 && a <= b).then_some((a, b))
                            });
                            match parsed {
                                Some(r) => ports.push(r),
                                None => self.err(&path, format!("{t:?} is not a port range"), hint),
                            }
                        }
                    }
                }
            }
        }
        let sni_mismatch = self.action(
            "tunnels.sni_mismatch",
            raw.sni_mismatch.as_deref().unwrap_or("block"),
        );
        let ech = self.action("tunnels.ech", raw.ech.as_deref().unwrap_or("block"));
        Tunnels {
            ports,
            sni_mismatch,
            sni_timeout: Duration::from_millis(raw.sni_timeout_ms.unwrap_or(3000)),
            ech,
        }
    }

    /// A rule's action: `allow`, `block` or `warn` (`read_only` is taken
    /// apart before, with its `unknown:`).
    fn rule_action(&mut self, path: &str, s: &str) -> Action {
        match s {
            "warn" => Action::Warn,
            "read_only" => {
                self.err(
                    path,
                    "`read_only` is decided with the rule",
                    "this is a bug in socialgate: please report it",
                );
                Action::Block
            }
            other => {
                self.action_among(path, other, "write `allow`, `block`, `warn` or `read_only`")
            }
        }
    }

    /// An action outside rules (defaults, `tunnels.sni_mismatch`): `allow`
    /// or `block`. A warning needs a rule: its Continue is remembered per
    /// rule.
    fn action(&mut self, path: &str, s: &str) -> Action {
        match s {
            "warn" => {
                self.err(
                    path,
                    "`warn` is a rule's action, not available here",
                    "write `allow` or `block` here, and add a rule with `action: warn` for the traffic to warn about",
                );
                Action::Block
            }
            "read_only" => {
                self.err(
                    path,
                    "`read_only` is a rule's action, not available here",
                    "write `allow` or `block` here, and add a rule with `action: read_only` for the platforms to keep read-only",
                );
                Action::Block
            }
            other => self.action_among(path, other, "write `allow` or `block`"),
        }
    }

    fn action_among(&mut self, path: &str, s: &str, hint: &str) -> Action {
        match s {
            "allow" => Action::Allow,
            "block" => Action::Block,
            other => {
                self.err(path, format!("unknown action {other:?}"), hint);
                Action::Block
            }
        }
    }

    /// A rule's `budget:`: at least one limit, each in range, on a rule
    /// whose action says what happens once it is spent.
    fn budget(
        &mut self,
        base: &str,
        raw: &RawBudget,
        action: &str,
        (tz, tz_name): (jiff::tz::TimeZone, String),
    ) -> Option<super::budget::Budget> {
        use super::budget::{MAX_MEGABYTES, MAX_MINUTES};
        let mut ok = true;
        if raw.minutes.is_none() && raw.megabytes.is_none() {
            self.err(
                format!("{base}.budget"),
                "a budget needs `minutes:` or `megabytes:` (or both)",
                "write e.g. `budget: {minutes: 30}` or `budget: {megabytes: 500}`",
            );
            ok = false;
        }
        if let Some(m) = raw.minutes {
            if m == 0 || m > MAX_MINUTES {
                self.err(
                    format!("{base}.budget.minutes"),
                    format!("{m} minutes is out of range"),
                    format!("use 1 to {MAX_MINUTES} (a day); to refuse the traffic outright, drop the budget"),
                );
                ok = false;
            }
        }
        if let Some(mb) = raw.megabytes {
            if mb == 0 || mb > MAX_MEGABYTES {
                self.err(
                    format!("{base}.budget.megabytes"),
                    format!("{mb} megabytes is out of range"),
                    format!(
                        "use 1 to {MAX_MEGABYTES}; to refuse the traffic outright, drop the budget"
                    ),
                );
                ok = false;
            }
        }
        match action {
            "block" | "warn" => {}
            "allow" | "read_only" => {
                self.err(
                    format!("{base}.action"),
                    format!("a rule with a budget cannot be `{action}`: the action says what happens once the budget is spent"),
                    "write `action: block` (the rule allows until the budget is spent, then refuses) or `action: warn` (then warns)",
                );
                ok = false;
            }
            // An unknown action is reported by the action check.
            _ => {}
        }
        ok.then_some(super::budget::Budget {
            minutes: raw.minutes,
            megabytes: raw.megabytes,
            tz,
            tz_name,
            last_day: Default::default(),
        })
    }

    /// `warn:`: durations within sane bounds.
    fn warn(&mut self, raw: &RawWarn) -> Warn {
        let d = Warn::default();
        let minute = Duration::from_secs(60);
        let day = Duration::from_secs(86_400);
        let remember = match &raw.remember {
            None => d.remember,
            Some(s) => self
                .duration(
                    "warn.remember",
                    s,
                    minute,
                    30 * day,
                    "e.g. `1h`, `30m` or `8h`",
                )
                .unwrap_or(d.remember),
        };
        let link_expiry = match &raw.link_expiry {
            None => d.link_expiry,
            Some(s) => self
                .duration("warn.link_expiry", s, minute, day, "e.g. `15m`")
                .unwrap_or(d.link_expiry),
        };
        Warn {
            remember,
            link_expiry,
        }
    }

    /// A duration written like `1h`, `30m`, `1h30m`, `2d` or `90s`, between
    /// `min` and `max`.
    fn duration(
        &mut self,
        path: &str,
        s: &str,
        min: Duration,
        max: Duration,
        example: &str,
    ) -> Option<Duration> {
        // Days count as 24 hours; months and years are not durations.
        let parsed = s
            .trim()
            .parse::<jiff::Span>()
            .ok()
            .and_then(|span| {
                span.to_duration(jiff::SpanRelativeTo::days_are_24_hours())
                    .ok()
            })
            .and_then(|d| Duration::try_from(d).ok());
        let Some(d) = parsed else {
            self.err(
                path,
                format!("{s:?} is not a duration"),
                format!("write a number with a unit (s, m, h, d), {example}"),
            );
            return None;
        };
        if d < min || d > max {
            self.err(
                path,
                format!("{s:?} is out of range"),
                format!(
                    "use between {} and {}, {example}",
                    human_duration(min),
                    human_duration(max)
                ),
            );
            return None;
        }
        Some(d)
    }

    /// `state:`: a Redis URL, checked but not connected to.
    fn requests(&mut self, raw: &RawRequests) -> Requests {
        let webhook = raw.webhook.as_deref().and_then(|u| {
            let hint = "write an absolute http:// or https:// URL, e.g. https://tickets.example.internal/hooks/socialgate, or remove `webhook` to keep requests in the access log only";
            let uri = match u.parse::<http::Uri>() {
                Ok(uri) => uri,
                Err(e) => {
                    self.err("requests.webhook", format!("{u:?} is not a URL: {e}"), hint);
                    return None;
                }
            };
            let scheme_ok = matches!(uri.scheme_str(), Some("http" | "https"));
            let host_ok = uri.host().is_some_and(|h| !h.is_empty());
            if !scheme_ok || !host_ok {
                self.err(
                    "requests.webhook",
                    format!("{u:?} is not an http:// or https:// URL with a host"),
                    hint,
                );
                return None;
            }
            if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
                self.err(
                    "requests.webhook",
                    "the URL carries a user name or password",
                    "put a secret in the URL's path or query instead (the URL is never logged)",
                );
                return None;
            }
            Some(uri)
        });
        Requests {
            webhook,
            recipient: Arc::from(
                raw.recipient
                    .as_deref()
                    .map(str::trim)
                    .filter(|r| !r.is_empty())
                    .unwrap_or(DEFAULT_RECIPIENT),
            ),
        }
    }

    fn state(&mut self, raw: &RawState) -> State {
        let redis = raw.redis.as_deref().and_then(|u| {
            RedisUrl::parse(u)
                .map_err(|e| {
                    self.err(
                        "state.redis",
                        e,
                        "write e.g. redis://redis.internal:6379/0 or redis+unix:///run/redis/redis.sock (a Redis reached over the network needs a trusted network or an ACL'd user; TLS is not built in), or remove `redis` to keep acknowledgements in memory",
                    )
                })
                .ok()
        });
        State { redis }
    }

    fn pac(&mut self, raw: &RawPac) -> Pac {
        let direct_domains = match &raw.direct_domains {
            None => Pac::default_direct_domains(),
            Some(list) => list
                .iter()
                .enumerate()
                .filter_map(|(i, d)| {
                    let path = format!("pac.direct_domains[{i}]");
                    let d = d.trim().trim_start_matches('.');
                    if d.parse::<IpNet>().is_ok() || d.parse::<std::net::IpAddr>().is_ok() {
                        self.err(
                            &path,
                            format!("{d:?} is an address, not a domain"),
                            "list addresses and networks under pac.direct_networks",
                        );
                        return None;
                    }
                    self.domain(&path, d)
                })
                .collect(),
        };
        let direct_networks = match &raw.direct_networks {
            None => Pac::default_direct_networks(),
            Some(list) => list
                .iter()
                .enumerate()
                .filter_map(|(i, n)| {
                    let path = format!("pac.direct_networks[{i}]");
                    match self.network(&path, n)? {
                        IpNet::V4(v4) => Some(v4),
                        IpNet::V6(_) => {
                            self.err(
                                &path,
                                format!("{:?} is an IPv6 network", n.trim()),
                                "a PAC file's isInNet() tests IPv4 only; list IPv6 intranet hosts by name under pac.direct_domains",
                            );
                            None
                        }
                    }
                })
                .collect(),
        };
        Pac {
            direct_domains,
            direct_networks,
        }
    }

    fn network(&mut self, path: &str, s: &str) -> Option<IpNet> {
        let s = s.trim();
        let parsed = s
            .parse::<IpNet>()
            .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from));
        match parsed {
            Ok(n) => Some(n.trunc()),
            Err(_) => {
                self.err(path, format!("{s:?} is not a network"), "write a CIDR such as 10.1.0.0/16 or 2001:db8::/32, or a single address such as 10.1.2.3");
                None
            }
        }
    }

    fn domain(&mut self, path: &str, s: &str) -> Option<String> {
        if s.contains('*') {
            self.err(
                path,
                format!("{s:?} contains a wildcard"),
                "write the domain itself: an entry covers the domain and all of its subdomains",
            );
            return None;
        }
        if s.contains('/') || s.contains(':') {
            self.err(
                path,
                format!("{s:?} is not a domain"),
                "write a bare domain such as example.com, without scheme, port or path",
            );
            return None;
        }
        match normalize_host(s) {
            Ok(Host::Name(n)) => Some(n),
            Ok(_) => {
                self.err(
                    path,
                    format!("{s:?} is an address, not a domain"),
                    "platforms are recognised by name; destinations.allow takes networks",
                );
                None
            }
            Err(e) => {
                self.err(
                    path,
                    e.to_string(),
                    "write a bare domain such as example.com",
                );
                None
            }
        }
    }

    fn window(&mut self, path: &str, w: &RawWindow) -> Option<Window> {
        let mut days = 0u8;
        let mut ok = true;
        if w.days.is_empty() {
            self.err(
                format!("{path}.days"),
                "no days listed",
                "write e.g. [mon-fri] or [all]",
            );
            ok = false;
        }
        for (i, d) in w.days.iter().enumerate() {
            match parse_days(d) {
                Ok(m) => days |= m,
                Err(e) => {
                    self.err(
                        format!("{path}.days[{i}]"),
                        e,
                        "days are mon tue wed thu fri sat sun",
                    );
                    ok = false;
                }
            }
        }
        let from = parse_clock(&w.from)
            .map_err(|e| self.err(format!("{path}.from"), e, "e.g. from: \"09:00\""))
            .ok();
        let to = parse_clock(&w.to)
            .map_err(|e| {
                self.err(
                    format!("{path}.to"),
                    e,
                    "e.g. to: \"17:30\"; 24:00 is the end of the day",
                )
            })
            .ok();
        let (from, to) = (from?, to?);
        if from == to {
            self.err(
                path,
                "the window is empty (from equals to)",
                "for a whole day write from: \"00:00\", to: \"24:00\"",
            );
            return None;
        }
        if from == 1440 {
            self.err(
                format!("{path}.from"),
                "a window cannot start at 24:00",
                "start at 00:00 of the next day",
            );
            return None;
        }
        ok.then_some(Window { days, from, to })
    }
}

/// `1h`, `15m`, `2d` or `90s`: the largest unit that divides `d`.
pub fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => "0s".into(),
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}
