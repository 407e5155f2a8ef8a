//! Policy test cases: `tests.yaml` beside the policy, run by `socialgate test`.
//!
//! Each case names a client, an optional user, a URL and an optional time,
//! and the expected action (and optionally mode, rule, platform, group and
//! reason). Cases are compiled with the policy, so a case naming an unknown
//! rule is a policy error, and run with the pure [`decide`].

use std::net::IpAddr;
use std::path::Path;

use jiff::Timestamp;

use super::activity::{Activity, Body, Classified, Classify, Seen, PEEK_LIMIT};
use super::admit::{admit, Entry, Facts};
use super::decide::Decision;
use super::host::{normalize_host, Host};
use super::raw::RawCases;
use super::{ConfigError, Policy};

/// A compiled test case.
#[derive(Debug, Clone)]
pub struct Case {
    pub name: String,
    pub client: IpAddr,
    pub user: Option<String>,
    pub url: String,
    pub host: Host,
    pub port: u16,
    /// `https://` URLs are decided as CONNECT tunnels, `http://` as requests.
    pub entry: Entry,
    /// When to evaluate; `None` means "now".
    pub at: Option<Timestamp>,
    /// Addresses the host resolves to; `None` checks IP literals only.
    pub resolved: Option<Vec<IpAddr>>,
    /// The ClientHello's server name, for tunnels.
    pub sni: Option<String>,
    /// The request as socialgate would see it, for activity cases.
    pub request: Option<SeenRequest>,
    /// How much of the deciding rule's daily budget was spent (default none).
    pub spent: super::budget::Spent,
    pub expect: Expect,
}

/// A request of an activity case: what the classifier reads.
#[derive(Debug, Clone)]
pub struct SeenRequest {
    pub method: http::Method,
    pub path: String,
    pub query: Option<String>,
    pub headers: http::HeaderMap,
    pub body: Option<Vec<u8>>,
}

impl SeenRequest {
    /// The activity of this request to `host`, as the proxy would find it:
    /// without the body first, then with at most the peek limit of it.
    pub fn classify(&self, policy: &Policy, host: &Host) -> Classified {
        let platform = host
            .name()
            .and_then(|n| policy.domains.lookup(n))
            .map(|(_, hit)| hit.platform);
        let name = host.name().unwrap_or("");
        let mut seen = Seen {
            method: &self.method,
            host: name,
            path: &self.path,
            query: self.query.as_deref(),
            headers: &self.headers,
            body: if self.body.as_ref().is_some_and(|b| !b.is_empty()) {
                Body::NotYet
            } else {
                Body::None
            },
        };
        match policy.activities.classify(platform, &seen) {
            Classify::Done(c) => c,
            Classify::NeedBody => {
                let body = self.body.as_deref().unwrap_or_default();
                let n = body.len().min(PEEK_LIMIT);
                seen.body = Body::Peeked {
                    bytes: &body[..n],
                    complete: n == body.len(),
                };
                match policy.activities.classify(platform, &seen) {
                    Classify::Done(c) => c,
                    Classify::NeedBody => unreachable!("a peeked body is never asked for again"),
                }
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct Expect {
    pub action: Option<String>,
    pub activity: Option<Activity>,
    /// A signature id, or `none`.
    pub signature: Option<String>,
    pub mode: Option<String>,
    pub rule: Option<String>,
    pub platform: Option<String>,
    pub group: Option<String>,
    pub reason: Option<String>,
    /// Whether the tunnel is decrypted (https:// cases only).
    pub inspect: Option<bool>,
}

/// The result of one case.
#[derive(Debug, Clone)]
pub struct CaseOutcome {
    pub name: String,
    pub passed: bool,
    /// What differed, one line per field.
    pub mismatches: Vec<String>,
    pub decision: Decision,
    /// The activity found, for activity cases.
    pub activity: Option<Classified>,
}

/// Parses a URL as used in cases and `explain`: scheme, host and port.
/// Also says how the proxy sees it: `https://` as a CONNECT tunnel,
/// `http://` as a plain request.
pub fn parse_target(url: &str) -> Result<(Host, u16, Entry), String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    let (default_port, entry) = match uri.scheme_str() {
        Some("http") => (80, Entry::Request),
        Some("https") => (443, Entry::Connect),
        Some(other) => {
            return Err(format!(
                "scheme {other:?} is not supported; use http:// or https://"
            ))
        }
        None => {
            return Err(format!(
                "{url:?} has no scheme; write http://host/ or https://host/"
            ))
        }
    };
    let host = uri.host().ok_or_else(|| format!("{url:?} has no host"))?;
    let host = normalize_host(host).map_err(|e| e.to_string())?;
    Ok((host, uri.port_u16().unwrap_or(default_port), entry))
}

/// Parses a time as RFC 3339 (`2026-11-25T12:00:00+01:00`, seconds optional).
pub fn parse_time(s: &str) -> Result<Timestamp, String> {
    let s = s.trim();
    if let Ok(t) = s.parse::<Timestamp>() {
        return Ok(t);
    }
    // Accept a missing seconds field: 2026-11-25T12:00+01:00.
    if let Some(tpos) = s.find('T') {
        let rest = &s[tpos + 1..];
        if rest.len() >= 5 && rest.as_bytes().get(5) != Some(&b':') {
            let patched = format!("{}:00{}", &s[..tpos + 6], &rest[5..]);
            if let Ok(t) = patched.parse::<Timestamp>() {
                return Ok(t);
            }
        }
    }
    Err(format!(
        "{s:?} is not a time; write RFC 3339 with an offset, e.g. 2026-11-25T12:00:00+01:00"
    ))
}

pub(crate) fn compile_cases(
    policy: &Policy,
    file: &Path,
    raw: RawCases,
) -> Result<Vec<Case>, Vec<ConfigError>> {
    let mut errs = Vec::new();
    let mut cases = Vec::new();
    for (i, c) in raw.tests.into_iter().enumerate() {
        let base = format!("tests[{i}]");
        let mut e = |path: String, msg: String, hint: &str| {
            errs.push(ConfigError::new(file, path, msg).hint(hint));
        };
        let client = match c.client.parse::<IpAddr>() {
            Ok(ip) => Some(ip),
            Err(_) => {
                e(
                    format!("{base}.client"),
                    format!("{:?} is not an IP address", c.client),
                    "write the client's address, e.g. 10.1.2.3",
                );
                None
            }
        };
        let target = match parse_target(&c.url) {
            Ok(t) => Some(t),
            Err(m) => {
                e(format!("{base}.url"), m, "e.g. https://www.tiktok.com/");
                None
            }
        };
        let at = match c.at.as_deref().map(parse_time) {
            None => Some(None),
            Some(Ok(t)) => Some(Some(t)),
            Some(Err(m)) => {
                e(
                    format!("{base}.at"),
                    m,
                    "include the offset so the case means the same everywhere",
                );
                None
            }
        };
        let entry = target.as_ref().map_or(Entry::Request, |t| t.2);
        let mut resolved = None;
        if let Some(list) = &c.resolved {
            let mut ips = Vec::new();
            for (j, a) in list.iter().enumerate() {
                match a.parse::<IpAddr>() {
                    Ok(ip) => ips.push(ip),
                    Err(_) => e(
                        format!("{base}.resolved[{j}]"),
                        format!("{a:?} is not an IP address"),
                        "list the addresses the host resolves to, e.g. [93.184.216.34]",
                    ),
                }
            }
            resolved = Some(ips);
        }
        let spent = match c.spent.as_deref().map(super::budget::parse_spent) {
            None => Some(super::budget::Spent::default()),
            Some(Ok(s)) => Some(s),
            Some(Err(m)) => {
                e(
                    format!("{base}.spent"),
                    m,
                    "e.g. spent: 25m (minutes of a time budget) or spent: 300MB",
                );
                None
            }
        };
        if c.sni.is_some() && entry != Entry::Connect {
            e(
                format!("{base}.sni"),
                "a server name only applies to https:// URLs (tunnels)".into(),
                "use an https:// URL, or remove sni",
            );
        }
        if let Some(a) = &c.expect.action {
            if !matches!(a.as_str(), "allow" | "block" | "warn") {
                e(
                    format!("{base}.expect.action"),
                    format!("unknown action {a:?}"),
                    "write allow, block or warn",
                );
            }
        }
        let activity = match c
            .expect
            .activity
            .as_deref()
            .map(|a| (a, Activity::parse(a)))
        {
            None => None,
            Some((_, Some(a))) => Some(a),
            Some((a, None)) => {
                let names: Vec<&str> = Activity::ALL.iter().map(|a| a.as_str()).collect();
                e(
                    format!("{base}.expect.activity"),
                    format!("unknown activity {a:?}"),
                    &format!("one of: {}", names.join(", ")),
                );
                None
            }
        };
        if c.expect.action.is_none() && c.expect.activity.is_none() {
            e(
                format!("{base}.expect"),
                "the case expects nothing".into(),
                "give expect.action (allow, block or warn), expect.activity, or both",
            );
        }
        if let Some(sig) = &c.expect.signature {
            let known = sig == "none"
                || policy
                    .activities
                    .platforms
                    .iter()
                    .flat_map(|p| &p.signatures)
                    .any(|s| &*s.id == sig.as_str());
            if !known {
                e(
                    format!("{base}.expect.signature"),
                    format!("no signature has id {sig:?}"),
                    "use a signature id from activities.yaml, or `none`",
                );
            }
        }
        let request = seen_request(&c, &base, &mut e);
        if let Some(m) = &c.expect.mode {
            if !matches!(m.as_str(), "enforce" | "report") {
                e(
                    format!("{base}.expect.mode"),
                    format!("unknown mode {m:?}"),
                    "write enforce or report",
                );
            }
        }
        if let Some(r) = &c.expect.rule {
            let known = policy.rules.iter().any(|x| &*x.id == r.as_str())
                || r.starts_with("default:")
                || r.starts_with("builtin:");
            if !known {
                e(format!("{base}.expect.rule"), format!("no rule has id {r:?}"), "use a rule id from policy.yaml, or default:catalog / default:other / default:embedded / builtin:identity");
            }
        }
        if c.expect.inspect.is_some() && entry != Entry::Connect {
            e(
                format!("{base}.expect.inspect"),
                "only https:// cases are tunnels that can be inspected".to_string(),
                "remove `inspect:` or make the URL https://",
            );
        }
        if let Some(r) = &c.expect.reason {
            if !super::Reason::ALL.iter().any(|x| x.as_str() == r) {
                e(format!("{base}.expect.reason"), format!("unknown reason {r:?}"), "see the reason labels in docs/access-log.md, e.g. rule-matched or default-other");
            }
        }
        if let Some(p) = &c.expect.platform {
            if policy.platform(p).is_none() {
                e(
                    format!("{base}.expect.platform"),
                    format!("unknown platform {p:?}"),
                    "use a platform id from catalog.yaml",
                );
            }
        }
        if let Some(g) = &c.expect.group {
            if !policy.groups.iter().any(|x| &*x.name == g.as_str()) {
                e(
                    format!("{base}.expect.group"),
                    format!("unknown group {g:?}"),
                    "use a group from policy.yaml",
                );
            }
        }
        if let (Some(client), Some((host, port, entry)), Some(at), Some(spent)) =
            (client, target, at, spent)
        {
            cases.push(Case {
                name: c.name,
                client,
                user: c.user,
                url: c.url,
                host,
                port,
                entry,
                at,
                resolved,
                sni: c.sni,
                request,
                spent,
                expect: Expect {
                    action: c.expect.action,
                    activity,
                    signature: c.expect.signature,
                    mode: c.expect.mode,
                    rule: c.expect.rule,
                    platform: c.expect.platform,
                    group: c.expect.group,
                    reason: c.expect.reason,
                    inspect: c.expect.inspect,
                },
            });
        }
    }
    if errs.is_empty() {
        Ok(cases)
    } else {
        Err(errs)
    }
}

/// The request of an activity case: one with a method, headers, a body, or
/// an expected activity or signature. Its path and query come from the URL.
fn seen_request(
    c: &super::raw::RawCase,
    base: &str,
    e: &mut impl FnMut(String, String, &str),
) -> Option<SeenRequest> {
    let wanted = c.method.is_some()
        || !c.headers.is_empty()
        || c.body.is_some()
        || c.expect.activity.is_some()
        || c.expect.signature.is_some();
    if !wanted {
        return None;
    }
    let method = match c.method.as_deref() {
        None => http::Method::GET,
        Some(m) => match http::Method::from_bytes(m.as_bytes()) {
            Ok(m) => m,
            Err(_) => {
                e(
                    format!("{base}.method"),
                    format!("{m:?} is not an HTTP method"),
                    "write a method such as GET or POST",
                );
                return None;
            }
        },
    };
    let mut headers = http::HeaderMap::new();
    for (k, v) in &c.headers {
        match (
            http::HeaderName::from_bytes(k.as_bytes()),
            http::HeaderValue::from_str(v),
        ) {
            (Ok(k), Ok(v)) => {
                headers.append(k, v);
            }
            _ => e(
                format!("{base}.headers.{k}"),
                format!("{k:?}: {v:?} is not a valid header"),
                "write header names of letters, digits and '-', and printable values",
            ),
        }
    }
    let uri: http::Uri = c.url.parse().ok()?;
    Some(SeenRequest {
        method,
        path: uri.path().to_string(),
        query: uri.query().map(str::to_string),
        headers,
        body: c.body.as_ref().map(|b| b.as_bytes().to_vec()),
    })
}

/// Runs every case of `policy`; cases without a time use `now`.
pub fn run_cases(policy: &Policy, now: Timestamp) -> Vec<CaseOutcome> {
    policy
        .cases
        .iter()
        .map(|c| {
            // What the request does, where the case gives one that can be seen.
            let activity = c.request.as_ref().map(|r| r.classify(policy, &c.host));
            // A browser sends the URL's host as the server name (tunnels only).
            let sni = c.sni.as_deref().or(match (c.entry, activity.is_some()) {
                (Entry::Connect, false) => c.host.name(),
                _ => None,
            });
            // A policy test has no running proxy: no own listeners to avoid.
            // A request that can be seen is decided as one, even over https://
            // (inspected): its activity is known.
            let facts = Facts {
                entry: if activity.is_some() {
                    Entry::Request
                } else {
                    c.entry
                },
                client: c.client,
                user: c.user.as_deref(),
                host: &c.host,
                port: c.port,
                resolved: c.resolved.as_deref(),
                sni,
                listeners: &[],
                activity: activity.as_ref().map(|a| a.activity),
                resolved_by_parent: false,
                original: None,
                acknowledged: None,
                hello: sni.map(|_| crate::policy::TlsHello::BROWSER),
                spent: Some(super::budget::SpentFact::Known(c.spent)),
            };
            let adm = admit(policy, &facts, c.at.unwrap_or(now));
            let inspected = adm.inspect.inspect;
            let d = adm.decision;
            let mut mismatches = Vec::new();
            let mut check = |field: &str, want: Option<&str>, got: Option<&str>| {
                if let Some(w) = want {
                    if Some(w) != got {
                        mismatches.push(format!(
                            "{field}: expected {w}, got {}",
                            got.unwrap_or("(none)")
                        ));
                    }
                }
            };
            check(
                "action",
                c.expect.action.as_deref(),
                Some(d.action.as_str()),
            );
            let activity = c.request.as_ref().map(|r| r.classify(policy, &c.host));
            if let Some(found) = &activity {
                check(
                    "activity",
                    c.expect.activity.map(Activity::as_str),
                    Some(found.activity.as_str()),
                );
                check(
                    "signature",
                    c.expect.signature.as_deref(),
                    Some(found.signature.as_deref().unwrap_or("none")),
                );
            }
            check("mode", c.expect.mode.as_deref(), Some(d.mode.as_str()));
            check("rule", c.expect.rule.as_deref(), Some(&d.rule));
            check(
                "platform",
                c.expect.platform.as_deref(),
                d.platform.as_deref(),
            );
            check("group", c.expect.group.as_deref(), d.group.as_deref());
            check(
                "reason",
                c.expect.reason.as_deref(),
                Some(d.reason.as_str()),
            );
            let yes_no = |b: bool| if b { "true" } else { "false" };
            check(
                "inspect",
                c.expect.inspect.map(yes_no),
                Some(yes_no(inspected)),
            );
            CaseOutcome {
                name: c.name.clone(),
                passed: mismatches.is_empty(),
                mismatches,
                decision: d,
                activity,
            }
        })
        .collect()
}
