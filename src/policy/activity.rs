//! Activities: what a person does on a platform (read, post, upload, ...),
//! recognised from a request by signatures that are data, not code.
//!
//! `activities.yaml` in the policy directory lists, per catalog platform,
//! signatures that match on the method, the host (label boundaries), a path
//! pattern, optionally an operation name (a header, a query parameter, a
//! form field or a top-level JSON key of the body) and optionally a content
//! type. They are compiled once: one [`RegexSet`] of path patterns per
//! platform, so a request runs one automaton over its path and then checks
//! the few signatures whose path matched, in file order.
//!
//! Method alone does not tell read from write: Facebook, Instagram and
//! YouTube read with POST. Writes are recognised by operation; where nothing
//! matches, a safe method is `read` and any other method is what the
//! platform's `unmatched` says (`write` or `unknown`).
//!
//! [`Signatures::classify`] is pure. Where a signature needs the body and
//! the shell has not peeked at it yet, it answers [`Classify::NeedBody`];
//! the shell peeks at most [`PEEK_LIMIT`] bytes (streaming them on
//! unchanged) and asks again.

use std::sync::Arc;

use http::{HeaderMap, HeaderName, Method};
use regex::{Regex, RegexSet};
use serde::{Deserialize, Serialize};

/// The most of a request body a signature may look at.
pub const PEEK_LIMIT: usize = 64 * 1024;

/// What a person did. A bounded set: it is a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Activity {
    /// Signing in (not a write: `read_only` lets it pass).
    Login,
    /// Reading: a safe method, or a signature that says so.
    #[serde(alias = "view")]
    Read,
    Post,
    Comment,
    React,
    Share,
    Upload,
    Message,
    /// A write that no signature names (a platform whose clients use POST
    /// only for writes, or a site outside the catalog).
    Write,
    /// Not a safe method, on a platform that also reads with POST, and no
    /// signature matched: read or write cannot be told.
    Unknown,
}

impl Activity {
    /// Every activity, in declaration order (`ALL[a as usize] == a`).
    pub const ALL: [Activity; 10] = [
        Activity::Login,
        Activity::Read,
        Activity::Post,
        Activity::Comment,
        Activity::React,
        Activity::Share,
        Activity::Upload,
        Activity::Message,
        Activity::Write,
        Activity::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Activity::Login => "login",
            Activity::Read => "read",
            Activity::Post => "post",
            Activity::Comment => "comment",
            Activity::React => "react",
            Activity::Share => "share",
            Activity::Upload => "upload",
            Activity::Message => "message",
            Activity::Write => "write",
            Activity::Unknown => "unknown",
        }
    }

    pub fn parse(s: &str) -> Option<Activity> {
        Activity::ALL.into_iter().find(|a| a.as_str() == s)
    }

    /// A contribution: something `read_only` refuses.
    pub fn is_write(self) -> bool {
        matches!(
            self,
            Activity::Post
                | Activity::Comment
                | Activity::React
                | Activity::Share
                | Activity::Upload
                | Activity::Message
                | Activity::Write
        )
    }

    /// The activity of a request that no signature matched.
    pub fn of_method(method: &Method, unmatched: Unmatched) -> Activity {
        if is_safe(method) {
            Activity::Read
        } else {
            match unmatched {
                Unmatched::Write => Activity::Write,
                Unmatched::Unknown => Activity::Unknown,
            }
        }
    }
}

/// A set of activities, as a rule's `activities:` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ActivitySet(u16);

impl ActivitySet {
    pub fn insert(&mut self, a: Activity) {
        self.0 |= 1 << a as u16;
    }

    pub fn contains(self, a: Activity) -> bool {
        self.0 & (1 << a as u16) != 0
    }

    pub fn iter(self) -> impl Iterator<Item = Activity> {
        Activity::ALL.into_iter().filter(move |a| self.contains(*a))
    }
}

/// GET, HEAD and OPTIONS, spelled exactly (a method is case-sensitive, so
/// `get` is not safe).
pub fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// What a platform's unmatched non-safe request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Unmatched {
    /// Its web client uses POST (PUT, DELETE...) only for writes.
    #[default]
    Write,
    /// Its web client also reads with POST (GraphQL, InnerTube).
    Unknown,
}

/// Where an operation name is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpSource {
    /// A request header, e.g. Meta's `X-FB-Friendly-Name`.
    Header(HeaderName),
    /// A query-string parameter, e.g. LinkedIn's `queryId`.
    Query(String),
    /// A field of an `application/x-www-form-urlencoded` body.
    Form(String),
    /// A top-level key of a JSON object body, e.g. `operationName`.
    Json(String),
}

impl OpSource {
    /// Parses `header:NAME`, `query:NAME`, `form:NAME` or `json:NAME`.
    pub fn parse(s: &str) -> Result<OpSource, String> {
        let (kind, name) = s
            .split_once(':')
            .ok_or_else(|| format!("{s:?} names no source"))?;
        if name.is_empty() {
            return Err(format!("{s:?} has no name after the colon"));
        }
        match kind {
            "header" => HeaderName::from_bytes(name.as_bytes())
                .map(OpSource::Header)
                .map_err(|_| format!("{name:?} is not a valid header name")),
            "query" => Ok(OpSource::Query(name.into())),
            "form" => Ok(OpSource::Form(name.into())),
            "json" => Ok(OpSource::Json(name.into())),
            other => Err(format!("unknown source {other:?}")),
        }
    }
}

/// An operation condition: the first source that yields a value is matched
/// against the pattern.
#[derive(Debug, Clone)]
pub struct Operation {
    /// Indices into the platform's [`PlatformSignatures::sources`].
    pub from: Vec<usize>,
    pub pattern: Regex,
}

/// One compiled signature.
#[derive(Debug, Clone)]
pub struct Signature {
    pub id: Arc<str>,
    pub activity: Activity,
    /// Upper-case methods; empty means any. Compared without regard to
    /// case, so `post` cannot slip past a POST signature.
    pub methods: Vec<String>,
    /// Host suffixes (label boundaries); empty means any host of the platform.
    pub hosts: Vec<String>,
    pub operation: Option<Operation>,
    /// A content-type prefix, lower case, e.g. `multipart/`.
    pub content_type: Option<String>,
}

/// One platform's signatures.
#[derive(Debug, Clone, Default)]
pub struct PlatformSignatures {
    pub unmatched: Unmatched,
    /// Every operation source its signatures read, once each: a request
    /// reads each at most once, however many signatures name it.
    pub sources: Vec<OpSource>,
    /// True when some signature may match a GET, HEAD or OPTIONS; when
    /// false, a safe request is a read without looking further.
    pub safe_methods: bool,
    /// Path patterns, one per signature, in file order.
    pub paths: Option<RegexSet>,
    pub signatures: Vec<Signature>,
}

/// All platforms' signatures, indexed like `Policy::platforms`.
#[derive(Debug, Clone, Default)]
pub struct Signatures {
    pub platforms: Vec<PlatformSignatures>,
    /// The data's version and date, from `activities.yaml`.
    pub version: u32,
    pub checked: Option<String>,
}

/// A request as the classifier sees it.
#[derive(Debug, Clone, Copy)]
pub struct Seen<'a> {
    pub method: &'a Method,
    /// The normalised host name.
    pub host: &'a str,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
    pub body: Body<'a>,
}

/// What the shell knows of the request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body<'a> {
    /// The request has no body.
    None,
    /// It has one, not looked at yet.
    NotYet,
    /// Its first bytes (at most [`PEEK_LIMIT`]); `complete` when that is all of it.
    Peeked { bytes: &'a [u8], complete: bool },
}

/// The classifier's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classified {
    pub activity: Activity,
    /// The signature that matched, if one did.
    pub signature: Option<Arc<str>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Classify {
    Done(Classified),
    /// A signature's operation is in the body: peek, then ask again.
    NeedBody,
}

impl Signatures {
    /// The activity of a request to catalog platform `platform` (its index),
    /// or to a site outside the catalog (`None`).
    pub fn classify(&self, platform: Option<u16>, seen: &Seen<'_>) -> Classify {
        let Some(p) = platform.and_then(|i| self.platforms.get(i as usize)) else {
            return Classify::Done(unmatched(seen, Unmatched::Write));
        };
        if is_safe(seen.method) && !p.safe_methods {
            return Classify::Done(unmatched(seen, p.unmatched));
        }
        if let Some(set) = &p.paths {
            let mut ops = Ops::new(seen, &p.sources);
            for i in set.matches(seen.path).iter() {
                let sig = &p.signatures[i];
                match sig.check(seen, &mut ops) {
                    Check::Match => {
                        return Classify::Done(Classified {
                            activity: sig.activity,
                            signature: Some(sig.id.clone()),
                        })
                    }
                    Check::NeedBody => return Classify::NeedBody,
                    Check::NoMatch => {}
                }
            }
        }
        Classify::Done(unmatched(seen, p.unmatched))
    }
}

/// A request no signature matched: a safe method reads, a multipart body
/// uploads, anything else is what the platform says.
fn unmatched(seen: &Seen<'_>, unmatched: Unmatched) -> Classified {
    let multipart = seen
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| starts_with_ignore_case(ct, "multipart/"));
    let activity = if !is_safe(seen.method) && multipart {
        Activity::Upload
    } else {
        Activity::of_method(seen.method, unmatched)
    };
    Classified {
        activity,
        signature: None,
    }
}

enum Check {
    Match,
    NoMatch,
    NeedBody,
}

impl Signature {
    fn check(&self, seen: &Seen<'_>, ops: &mut Ops<'_, '_>) -> Check {
        if !self.methods.is_empty()
            && !self
                .methods
                .iter()
                .any(|m| m.eq_ignore_ascii_case(seen.method.as_str()))
        {
            return Check::NoMatch;
        }
        if !self.hosts.is_empty() && !self.hosts.iter().any(|h| on_label_boundary(seen.host, h)) {
            return Check::NoMatch;
        }
        if let Some(prefix) = &self.content_type {
            if !starts_with_ignore_case(ops.content_type, prefix) {
                return Check::NoMatch;
            }
        }
        let Some(op) = &self.operation else {
            return Check::Match;
        };
        for &source in &op.from {
            match ops.value(source) {
                Value::Absent => {}
                Value::InBody => return Check::NeedBody,
                // The first source that names the operation decides.
                Value::Found(v) if op.pattern.is_match(v) => return Check::Match,
                Value::Found(_) => return Check::NoMatch,
            }
        }
        Check::NoMatch
    }
}

/// An operation source's value for one request.
enum Value<'v> {
    Absent,
    /// In the body, which has not been peeked at yet.
    InBody,
    Found(&'v str),
}

/// The operation sources of one request, each read at most once.
struct Ops<'s, 'r> {
    seen: &'s Seen<'r>,
    sources: &'s [OpSource],
    content_type: &'r str,
    /// `None` until read; then the value, if the source had one.
    values: Vec<Option<Option<std::borrow::Cow<'r, str>>>>,
}

impl<'s, 'r> Ops<'s, 'r> {
    fn new(seen: &'s Seen<'r>, sources: &'s [OpSource]) -> Self {
        let content_type = seen
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        Ops {
            seen,
            sources,
            content_type,
            values: Vec::new(),
        }
    }

    fn value(&mut self, i: usize) -> Value<'_> {
        if self.values.is_empty() {
            self.values = vec![None; self.sources.len()];
        }
        if self.values[i].is_none() {
            let seen = self.seen;
            let read = match &self.sources[i] {
                OpSource::Header(name) => seen
                    .headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(std::borrow::Cow::Borrowed),
                OpSource::Query(name) => seen.query.and_then(|q| form_value(q.as_bytes(), name)),
                source @ (OpSource::Form(name) | OpSource::Json(name)) => {
                    let fits = match source {
                        OpSource::Form(_) => starts_with_ignore_case(
                            self.content_type,
                            "application/x-www-form-urlencoded",
                        ),
                        _ => is_json(self.content_type),
                    };
                    match (fits, seen.body) {
                        (false, _) | (_, Body::None) => None,
                        (true, Body::NotYet) => return Value::InBody,
                        (true, Body::Peeked { bytes, .. }) => match source {
                            OpSource::Form(_) => form_value(bytes, name),
                            _ => json_value(bytes, name).map(std::borrow::Cow::Owned),
                        },
                    }
                }
            };
            self.values[i] = Some(read);
        }
        match &self.values[i] {
            Some(Some(v)) => Value::Found(v),
            _ => Value::Absent,
        }
    }
}

/// `host` is `suffix` or a subdomain of it.
fn on_label_boundary(host: &str, suffix: &str) -> bool {
    host == suffix
        || (host.len() > suffix.len()
            && host.ends_with(suffix)
            && host.as_bytes()[host.len() - suffix.len() - 1] == b'.')
}

fn starts_with_ignore_case(s: &str, prefix: &str) -> bool {
    s.len() >= prefix.len() && s.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
        || (essence.len() > 5 && essence[essence.len() - 5..].eq_ignore_ascii_case("+json"))
}

/// The first value of `name` in an urlencoded string (a query or a form
/// body). Pairs are told apart on `&` and `=` as `form_urlencoded` does, and
/// only the pair whose key matches is decoded (by `form_urlencoded`): the
/// other keys of a long query cost a comparison, not a decode. A cut-off
/// last pair in a peeked body is simply not found whole.
fn form_value<'b>(bytes: &'b [u8], name: &str) -> Option<std::borrow::Cow<'b, str>> {
    bytes.split(|b| *b == b'&').find_map(|pair| {
        let key = pair.split(|b| *b == b'=').next().unwrap_or_default();
        let matches = if key.iter().any(|b| matches!(b, b'%' | b'+')) {
            form_urlencoded::parse(key)
                .next()
                .is_some_and(|(k, _)| k == name)
        } else {
            key == name.as_bytes()
        };
        if !matches {
            return None;
        }
        let value = pair.splitn(2, |b| *b == b'=').nth(1).unwrap_or_default();
        match std::str::from_utf8(value) {
            // Nothing to decode: the bytes are the value.
            Ok(v) if !value.iter().any(|b| matches!(b, b'%' | b'+')) => {
                Some(std::borrow::Cow::Borrowed(v))
            }
            _ => form_urlencoded::parse(pair).next().map(|(_, v)| v),
        }
    })
}

/// A top-level string value of a JSON object. When the peek did not hold
/// the whole body, the key is still found if it comes before the cut
/// (serde_json reads the object in order and stops there).
fn json_value(bytes: &[u8], key: &str) -> Option<String> {
    use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};
    use std::fmt;

    /// Walks the top-level object; the first string under `key` is the
    /// answer. The rest is skipped without building values, so a complete
    /// body costs no error; a truncated one ends in an error that is
    /// ignored, with the answer already kept if it came before the cut.
    struct Find<'k> {
        key: &'k str,
        found: Option<String>,
    }
    impl<'de> Visitor<'de> for &mut Find<'_> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            while let Some(k) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                if self.found.is_none() && k == self.key {
                    if let serde_json::Value::String(s) = map.next_value()? {
                        self.found = Some(s);
                    }
                } else {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            Ok(())
        }
    }
    impl<'de> DeserializeSeed<'de> for &mut Find<'_> {
        type Value = ();
        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_map(self)
        }
    }
    let mut find = Find { key, found: None };
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let _ = (&mut find).deserialize(&mut de);
    find.found
}

// ---------------------------------------------------------------------------
// Compiling `activities.yaml`.

use super::error::{closest, ConfigError};
use super::raw::{RawActivities, RawSignature};
use super::Policy;
use std::path::Path;

/// Compiles `activities.yaml` against the compiled catalog in `policy`.
/// Every problem is pushed to `errs` with its path and a hint.
pub(super) fn compile(
    raw: RawActivities,
    file: &Path,
    policy: &Policy,
    errs: &mut Vec<ConfigError>,
) -> Signatures {
    let mut err = |path: String, msg: String, hint: &str| {
        errs.push(ConfigError::new(file, path, msg).hint(hint));
    };
    if raw.version != 1 {
        err(
            "version".into(),
            format!("unsupported activities version {}", raw.version),
            "this socialgate reads version: 1",
        );
    }
    if let Some(d) = &raw.checked {
        if d.parse::<jiff::civil::Date>().is_err() {
            err(
                "checked".into(),
                format!("{d:?} is not a date"),
                "write YYYY-MM-DD",
            );
        }
    }
    let mut out = Signatures {
        platforms: vec![PlatformSignatures::default(); policy.platforms.len()],
        version: raw.version,
        checked: raw.checked.clone(),
    };
    let mut ids = std::collections::HashSet::new();
    for (pid, rp) in raw.platforms {
        let base = format!("platforms.{pid}");
        let Some(index) = policy.platforms.iter().position(|p| *p.id == *pid) else {
            let hint = match closest(&pid, policy.platforms.iter().map(|p| &*p.id)) {
                Some(s) => format!("did you mean {s:?}? platforms are defined in catalog.yaml"),
                None => "use a platform id from catalog.yaml".into(),
            };
            err(base, format!("unknown platform {pid:?}"), &hint);
            continue;
        };
        let unmatched = match rp.unmatched.as_deref() {
            None | Some("write") => Unmatched::Write,
            Some("unknown") => Unmatched::Unknown,
            Some(other) => {
                err(
                    format!("{base}.unmatched"),
                    format!("unknown value {other:?}"),
                    "write `write` (the platform's clients use POST only for writes) or `unknown` (they also read with POST)",
                );
                Unmatched::Write
            }
        };
        let mut patterns = Vec::new();
        let mut signatures = Vec::new();
        let mut sources = Vec::new();
        for (i, rs) in rp.signatures.into_iter().enumerate() {
            let path = format!("{base}.signatures[{i}]");
            if !ids.insert(rs.id.clone()) {
                err(
                    format!("{path}.id"),
                    format!("signature id {:?} is used twice", rs.id),
                    "give every signature its own id, e.g. `<platform>-<activity>`",
                );
            }
            match compile_signature(&rs, &path, index as u16, policy, &mut sources, &mut err) {
                Some(sig) => {
                    patterns.push(rs.path.clone());
                    signatures.push(sig);
                }
                None => continue,
            }
        }
        let paths = if patterns.is_empty() {
            None
        } else {
            match RegexSet::new(&patterns) {
                Ok(set) => Some(set),
                Err(e) => {
                    err(
                        format!("{base}.signatures"),
                        format!("the path patterns do not compile together: {e}"),
                        "simplify the patterns",
                    );
                    None
                }
            }
        };
        let safe_methods = signatures.iter().any(|s: &Signature| {
            s.methods.is_empty()
                || s.methods
                    .iter()
                    .any(|m| matches!(m.as_str(), "GET" | "HEAD" | "OPTIONS"))
        });
        out.platforms[index] = PlatformSignatures {
            unmatched,
            sources,
            safe_methods,
            paths,
            signatures,
        };
    }
    out
}

fn compile_signature(
    rs: &RawSignature,
    path: &str,
    platform: u16,
    policy: &Policy,
    sources: &mut Vec<OpSource>,
    err: &mut impl FnMut(String, String, &str),
) -> Option<Signature> {
    let mut ok = true;
    let activity = match Activity::parse(&rs.activity) {
        Some(a) if a != Activity::Unknown => a,
        _ => {
            let names: Vec<&str> = Activity::ALL
                .iter()
                .filter(|a| **a != Activity::Unknown)
                .map(|a| a.as_str())
                .collect();
            let hint = match closest(&rs.activity, names.iter().copied()) {
                Some(s) => format!("did you mean {s:?}? one of: {}", names.join(", ")),
                None => format!("one of: {}", names.join(", ")),
            };
            err(
                format!("{path}.activity"),
                format!("unknown activity {:?}", rs.activity),
                &hint,
            );
            ok = false;
            Activity::Read
        }
    };
    let mut methods = Vec::new();
    for (j, m) in rs.methods.iter().enumerate() {
        let up = m.to_ascii_uppercase();
        if Method::from_bytes(up.as_bytes()).is_err() {
            err(
                format!("{path}.methods[{j}]"),
                format!("{m:?} is not an HTTP method"),
                "write a method such as POST, PUT or DELETE",
            );
            ok = false;
        }
        methods.push(up);
    }
    let mut hosts = Vec::new();
    for (j, h) in rs.hosts.iter().enumerate() {
        let h = h.trim().trim_start_matches('.').to_ascii_lowercase();
        let on_platform = policy
            .domains
            .lookup(&h)
            .is_some_and(|(_, hit)| hit.platform == platform);
        if !on_platform {
            err(
                format!("{path}.hosts[{j}]"),
                format!("{h:?} is not one of this platform's domains in catalog.yaml"),
                "signatures only see the platform's own traffic; name one of its domains or subdomains",
            );
            ok = false;
        }
        hosts.push(h);
    }
    if let Err(e) = Regex::new(&rs.path) {
        err(
            format!("{path}.path"),
            format!("not a regular expression: {e}"),
            "write a pattern on the path, e.g. `^/api/v1/statuses$`",
        );
        ok = false;
    }
    let operation = match &rs.operation {
        None => None,
        Some(op) => {
            let mut from = Vec::new();
            if op.from.is_empty() {
                err(
                    format!("{path}.operation.from"),
                    "no source for the operation name".into(),
                    "list at least one of header:NAME, query:NAME, form:NAME, json:NAME",
                );
                ok = false;
            }
            for (j, f) in op.from.iter().enumerate() {
                match OpSource::parse(f) {
                    Ok(s) => from.push(match sources.iter().position(|x| *x == s) {
                        Some(i) => i,
                        None => {
                            sources.push(s);
                            sources.len() - 1
                        }
                    }),
                    Err(e) => {
                        err(
                            format!("{path}.operation.from[{j}]"),
                            e,
                            "write header:NAME, query:NAME, form:NAME or json:NAME",
                        );
                        ok = false;
                    }
                }
            }
            match Regex::new(&op.pattern) {
                Ok(pattern) => Some(Operation { from, pattern }),
                Err(e) => {
                    err(
                        format!("{path}.operation.pattern"),
                        format!("not a regular expression: {e}"),
                        "write a pattern on the operation name, e.g. `^CreateTweet$`",
                    );
                    ok = false;
                    None
                }
            }
        }
    };
    if rs.checked.parse::<jiff::civil::Date>().is_err() {
        err(
            format!("{path}.checked"),
            format!("{:?} is not a date", rs.checked),
            "write the day the pattern was last checked, YYYY-MM-DD",
        );
        ok = false;
    }
    if rs.source.trim().is_empty() {
        err(
            format!("{path}.source"),
            "empty source".into(),
            "say where the pattern comes from, so the next person can check it again",
        );
        ok = false;
    }
    ok.then(|| Signature {
        id: Arc::from(rs.id.as_str()),
        activity,
        methods,
        hosts,
        operation,
        content_type: rs
            .content_type
            .as_ref()
            .map(|c| c.trim().to_ascii_lowercase()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shipped policy directory, compiled.
    fn shipped() -> Policy {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
        crate::policy::load_dir(&dir).expect("the shipped policy compiles")
    }

    fn headers(list: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in list {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    /// Classifies like the shell: without the body, then with a peek.
    fn classify(
        p: &Policy,
        method: &str,
        url: &str,
        hdrs: &[(&str, &str)],
        body: &[u8],
    ) -> (Activity, Option<String>, bool) {
        let uri: http::Uri = url.parse().unwrap();
        let host = uri.host().unwrap();
        let platform = p.domains.lookup(host).map(|(_, hit)| hit.platform);
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let h = headers(hdrs);
        let mut seen = Seen {
            method: &method,
            host,
            path: uri.path(),
            query: uri.query(),
            headers: &h,
            body: if body.is_empty() {
                Body::None
            } else {
                Body::NotYet
            },
        };
        let mut peeked = false;
        let c = match p.activities.classify(platform, &seen) {
            Classify::Done(c) => c,
            Classify::NeedBody => {
                peeked = true;
                let n = body.len().min(PEEK_LIMIT);
                seen.body = Body::Peeked {
                    bytes: &body[..n],
                    complete: n == body.len(),
                };
                match p.activities.classify(platform, &seen) {
                    Classify::Done(c) => c,
                    Classify::NeedBody => panic!("asked for the body twice"),
                }
            }
        };
        (c.activity, c.signature.map(|s| s.to_string()), peeked)
    }

    /// Method, URL, headers, body, expected activity and signature.
    type Row<'a> = (
        &'a str,
        &'a str,
        &'a [(&'a str, &'a str)],
        &'a [u8],
        Activity,
        Option<&'a str>,
    );

    #[test]
    fn shipped_signatures_table() {
        let p = shipped();
        let form = ("content-type", "application/x-www-form-urlencoded");
        let json = ("content-type", "application/json");
        #[rustfmt::skip]
        let table: &[Row] = &[
            // Safe methods read; an unmatched POST is what the platform says.
            ("GET", "https://www.linkedin.com/feed/", &[], b"", Activity::Read, None),
            ("POST", "https://www.linkedin.com/some/new/endpoint", &[], b"", Activity::Write, None),
            ("POST", "https://www.facebook.com/api/graphql/", &[], b"", Activity::Unknown, None),
            // Outside the catalog: safe reads, anything else a generic write.
            ("POST", "http://intranet.example.com/form", &[], b"", Activity::Write, None),
            ("GET", "http://intranet.example.com/", &[], b"", Activity::Read, None),
            // A multipart body is an upload, on a platform or elsewhere.
            ("POST", "https://www.facebook.com/photos/new", &[("content-type", "multipart/form-data; boundary=x")], b"", Activity::Upload, None),
            ("PUT", "http://files.example.com/a", &[("Content-Type", "Multipart/Form-Data; boundary=x")], b"", Activity::Upload, None),
            ("GET", "https://www.facebook.com/x", &[("content-type", "multipart/form-data; boundary=x")], b"", Activity::Read, None),
            // Method case: `post` is not POST, but cannot slip past a POST signature.
            ("post", "https://x.com/i/api/graphql/abc/CreateTweet", &[], b"", Activity::Post, Some("x-post")),
            // `get` is not a safe method.
            ("get", "https://www.linkedin.com/feed/", &[], b"", Activity::Write, None),
            // The same path with a read method is not a write.
            ("GET", "https://x.com/i/api/graphql/abc/CreateTweet", &[], b"", Activity::Read, None),
            // Path case matters: URLs are case-sensitive.
            ("POST", "https://x.com/i/api/graphql/abc/createtweet", &[], b"", Activity::Unknown, None),
            // Label boundaries: upload.x.com is X's upload host, a look-alike is not X.
            ("POST", "https://upload.x.com/i/media/upload.json", &[], b"", Activity::Upload, Some("x-upload")),
            ("POST", "https://upload.notx.com/i/media/upload.json", &[], b"", Activity::Write, None),
            // Operation in a header, whatever its case.
            ("POST", "https://www.facebook.com/api/graphql/", &[("X-FB-FRIENDLY-NAME", "ComposerStoryCreateMutation")], b"", Activity::Post, Some("facebook-post")),
            // Operation in the form body.
            ("POST", "https://www.facebook.com/api/graphql/", &[form], b"fb_api_req_friendly_name=CometUFIFeedbackReactMutation&doc_id=1", Activity::React, Some("facebook-react")),
            // The header names the operation first: the body is not read.
            ("POST", "https://www.facebook.com/api/graphql/", &[form, ("x-fb-friendly-name", "CometNewsFeedPaginationQuery")], b"fb_api_req_friendly_name=ComposerStoryCreateMutation", Activity::Read, Some("facebook-query")),
            // A form field only counts in a form body.
            ("POST", "https://www.facebook.com/api/graphql/", &[json], b"{\"fb_api_req_friendly_name\":\"ComposerStoryCreateMutation\"}", Activity::Unknown, None),
            // Operation in the query string.
            ("POST", "https://www.linkedin.com/voyager/api/graphql?action=execute&queryId=voyagerContentcreationDashShares.abc", &[], b"", Activity::Post, Some("linkedin-post-graphql")),
            // A percent-encoded query is decoded first.
            ("POST", "https://www.linkedin.com/voyager/api/graphql?queryId=voyagerContentcreationDashShares%2Eabc", &[], b"", Activity::Post, Some("linkedin-post-graphql")),
            // Operation in a JSON body.
            ("POST", "https://www.reddit.com/svc/shreddit/graphql", &[json], b"{\"operationName\":\"GetSubredditInfo\"}", Activity::Read, Some("reddit-graphql-read")),
            ("POST", "https://www.reddit.com/svc/shreddit/graphql", &[("content-type", "application/json; charset=utf-8")], b"{\"variables\":{},\"operationName\":\"FetchFeed\"}", Activity::Read, Some("reddit-graphql-read")),
            ("POST", "https://www.reddit.com/svc/shreddit/graphql", &[json], b"{\"operationName\":\"UpdatePostVote\"}", Activity::Unknown, None),
        ];
        for (method, url, hdrs, body, want, sig) in table {
            let (got, got_sig, _) = classify(&p, method, url, hdrs, body);
            assert_eq!(
                (got, got_sig.as_deref()),
                (*want, *sig),
                "{method} {url} {hdrs:?}"
            );
        }
    }

    #[test]
    fn a_body_is_read_only_when_a_signature_needs_it_and_never_past_the_limit() {
        let p = shipped();
        let json = [("content-type", "application/json")];
        // No body source on X: no peek.
        let (_, _, peeked) = classify(
            &p,
            "POST",
            "https://x.com/i/api/graphql/a/CreateTweet",
            &json,
            b"{}",
        );
        assert!(!peeked);
        // The key within the first 64 KiB of a larger body is found.
        let mut big = br#"{"operationName":"GetPosts","variables":{"pad":""#.to_vec();
        big.extend(std::iter::repeat_n(b'a', PEEK_LIMIT * 2));
        big.extend(br#""}}"#);
        let (a, s, peeked) = classify(
            &p,
            "POST",
            "https://www.reddit.com/svc/shreddit/graphql",
            &json,
            &big,
        );
        assert!(peeked);
        assert_eq!(
            (a, s.as_deref()),
            (Activity::Read, Some("reddit-graphql-read"))
        );
        // A key past the limit is not seen: the platform's unmatched applies.
        let mut late = br#"{"variables":{"pad":""#.to_vec();
        late.extend(std::iter::repeat_n(b'a', PEEK_LIMIT));
        late.extend(br#""},"operationName":"GetPosts"}"#);
        let (a, s, _) = classify(
            &p,
            "POST",
            "https://www.reddit.com/svc/shreddit/graphql",
            &json,
            &late,
        );
        assert_eq!((a, s), (Activity::Unknown, None));
        // A form field cut by the limit is not read as a shorter name.
        let mut form = b"pad=".to_vec();
        form.extend(std::iter::repeat_n(b'a', PEEK_LIMIT - 30));
        form.extend(b"&fb_api_req_friendly_name=ComposerStoryCreateMutation");
        let (a, _, _) = classify(
            &p,
            "POST",
            "https://www.facebook.com/api/graphql/",
            &[("content-type", "application/x-www-form-urlencoded")],
            &form,
        );
        assert_ne!(
            a,
            Activity::Post,
            "a cut name must not match the full pattern"
        );
    }

    #[test]
    fn every_shipped_signature_has_a_match_and_a_near_miss_in_tests_yaml() {
        let p = shipped();
        for sig in p.activities.platforms.iter().flat_map(|x| &x.signatures) {
            let matches = p.cases.iter().any(|c| {
                c.name == format!("{} matches", sig.id)
                    && c.expect.signature.as_deref() == Some(&*sig.id)
            });
            let misses = p.cases.iter().any(|c| {
                c.name.starts_with(&format!("{} does not match", sig.id))
                    && c.expect.signature.as_deref() != Some(&*sig.id)
                    && c.expect.signature.is_some()
            });
            assert!(
                matches && misses,
                "{}: needs a case that matches and a near miss",
                sig.id
            );
        }
    }

    #[test]
    fn bad_signatures_are_refused_with_their_place() {
        let dir = tempfile::tempdir().unwrap();
        let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
        for f in ["catalog.yaml", "policy.yaml"] {
            std::fs::copy(shipped.join(f), dir.path().join(f)).unwrap();
        }
        std::fs::write(
            dir.path().join("activities.yaml"),
            r#"version: 1
platforms:
  facebok:
    signatures: []
  x:
    unmatched: sometimes
    signatures:
      - {id: a, activity: psot, path: "^/", source: s, checked: "2026-11-26"}
      - {id: a, activity: post, path: "^/(", source: s, checked: "yesterday"}
      - {id: b, activity: post, path: "^/", hosts: [linkedin.com], methods: ["P OST"], source: s, checked: "2026-11-26",
         operation: {from: [cookie:x], pattern: "("}}
"#,
        )
        .unwrap();
        let errs = crate::policy::load_dir(dir.path()).unwrap_err().to_string();
        for want in [
            "platforms.facebok",
            "did you mean \"facebook\"",
            "platforms.x.unmatched",
            "platforms.x.signatures[0].activity",
            "did you mean \"post\"",
            "platforms.x.signatures[1].id",
            "platforms.x.signatures[1].path",
            "platforms.x.signatures[1].checked",
            "platforms.x.signatures[2].hosts[0]",
            "platforms.x.signatures[2].methods[0]",
            "platforms.x.signatures[2].operation.from[0]",
            "platforms.x.signatures[2].operation.pattern",
        ] {
            assert!(errs.contains(want), "missing {want:?} in:\n{errs}");
        }
    }

    #[test]
    fn json_key_is_found_before_a_cut() {
        let body = br#"{"variables":{"a":[1,2,{"b":"c"}]},"operationName":"CreateTweet","query":"mutation { x"#;
        assert_eq!(
            json_value(body, "operationName").as_deref(),
            Some("CreateTweet")
        );
        // Nested keys of the same name do not count.
        let nested = br#"{"variables":{"operationName":"Fake"},"operationName":"Real"}"#;
        assert_eq!(json_value(nested, "operationName").as_deref(), Some("Real"));
        // Cut before the key: not found.
        let cut = br#"{"variables":{"a":"aaaaaaaa"#;
        assert_eq!(json_value(cut, "operationName"), None);
        // Not an object, a number, garbage.
        assert_eq!(json_value(b"[1,2]", "operationName"), None);
        assert_eq!(json_value(br#"{"operationName":5}"#, "operationName"), None);
        assert_eq!(json_value(b"\xff\xfe", "operationName"), None);
    }

    #[test]
    fn label_boundaries() {
        assert!(on_label_boundary("x.com", "x.com"));
        assert!(on_label_boundary("api.x.com", "x.com"));
        assert!(!on_label_boundary("notx.com", "x.com"));
        assert!(!on_label_boundary("com", "x.com"));
    }

    #[test]
    fn op_sources_parse() {
        assert_eq!(
            OpSource::parse("query:queryId"),
            Ok(OpSource::Query("queryId".into()))
        );
        assert!(OpSource::parse("header:X-FB-Friendly-Name").is_ok());
        assert!(OpSource::parse("cookie:x").is_err());
        assert!(OpSource::parse("form:").is_err());
        assert!(OpSource::parse("header:bad name").is_err());
        assert!(OpSource::parse("operationName").is_err());
    }
}
