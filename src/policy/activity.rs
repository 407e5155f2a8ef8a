//! Activities: what a person does on a platform (read, post, upload, ...),
//! recognised from a request by signatures that are data, not code.
//!
//! `activities.yaml` in the policy directory lists, per catalog platform,
//! signatures that match on the method, the host (label boundaries), a path
//! pattern, optionally an operation name (a header, a query parameter, a
//! form field or a top-level JSON key of the body) and optionally a content
//! type. They are compiled once: one [`PathSet`] of path patterns per
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
use regex::Regex;
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

/// The standard methods, each a bit for [`Signature::method_bits`].
const STANDARD_METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE",
];

/// The bit of a standard method, spelled in any case (`post` is POST to a
/// signature); 0 for any other method.
fn method_bit(method: &str) -> u16 {
    STANDARD_METHODS
        .iter()
        .position(|m| m.eq_ignore_ascii_case(method))
        .map_or(0, |i| 1 << i)
}

/// [`method_bit`] of a request's method, without a string comparison for
/// the methods `http` knows by name.
fn request_method_bit(method: &Method) -> u16 {
    match *method {
        Method::GET => 1,
        Method::HEAD => 1 << 1,
        Method::POST => 1 << 2,
        Method::PUT => 1 << 3,
        Method::DELETE => 1 << 4,
        Method::PATCH => 1 << 5,
        Method::OPTIONS => 1 << 6,
        Method::CONNECT => 1 << 7,
        Method::TRACE => 1 << 8,
        _ => method_bit(method.as_str()),
    }
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
    /// Its pattern in the platform's [`PlatformSignatures::operations`]
    /// (signatures with the same pattern share one).
    pub pattern: usize,
}

/// One compiled signature.
#[derive(Debug, Clone)]
pub struct Signature {
    pub id: Arc<str>,
    pub activity: Activity,
    /// Its path pattern in the platform's [`PlatformSignatures::paths`]
    /// (signatures with the same path share one).
    pub path: usize,
    /// Upper-case methods; empty means any. Compared without regard to
    /// case, so `post` cannot slip past a POST signature.
    pub methods: Vec<String>,
    /// The standard methods among `methods`, as [`method_bit`]s: a request
    /// with a standard method is checked with one AND.
    pub method_bits: u16,
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
    /// The distinct path patterns of its signatures, in file order,
    /// matched together in one pass.
    pub paths: Option<PathSet>,
    /// The distinct operation patterns of its signatures, matched together
    /// once per operation source a request names.
    pub operations: Option<MatchSet>,
    pub signatures: Vec<Signature>,
}

/// Most distinct path patterns (and, separately, operation patterns) one
/// platform may have: a bit each in the mask [`MatchSet::matches`] returns.
pub const MAX_PATHS: usize = 64;
/// Most distinct operation sources one platform's signatures may read.
pub const MAX_SOURCES: usize = 8;
/// The most memory one platform's built DFA may take; a set that needs more
/// is matched by the regex crate's lazy engine instead (same answers, slower).
const DFA_SIZE_LIMIT: usize = 1 << 20;

/// Several patterns matched together in one pass over a string (a path, or
/// an operation name), reporting every pattern that matches, not just the
/// first (overlapping matches, `MatchKind::All`).
///
/// Built once per platform as a full DFA: one table lookup per byte, and a
/// set whose patterns all start with `^` stops at the first byte that no
/// pattern can continue (a path outside every signature's prefix costs a few
/// bytes). A set whose DFA would exceed [`DFA_SIZE_LIMIT`], or that the DFA
/// cannot express (Unicode word boundaries), is matched by the regex crate's
/// own engine, which gives the same answers.
#[derive(Debug, Clone)]
pub struct MatchSet {
    dfa: Option<regex_automata::dfa::dense::DFA<Vec<u32>>>,
    /// Every pattern begins with `^`: search anchored, stop when none can match.
    anchored: bool,
    meta: regex_automata::meta::Regex,
}

/// The name the first version gave a platform's path patterns.
pub type PathSet = MatchSet;

thread_local! {
    /// The match set each thread reuses when the lazy engine is used:
    /// matching allocates nothing.
    static MATCHED: std::cell::RefCell<regex_automata::PatternSet> =
        std::cell::RefCell::new(regex_automata::PatternSet::new(MAX_PATHS));
}

impl MatchSet {
    fn new(patterns: &[String]) -> Result<MatchSet, String> {
        use regex_automata::dfa::{dense, StartKind};
        use regex_automata::MatchKind;
        if patterns.len() > MAX_PATHS {
            return Err(format!(
                "{} distinct patterns; at most {MAX_PATHS} per platform",
                patterns.len()
            ));
        }
        // Every pattern that matches, not just the leftmost-first one (as
        // `regex::RegexSet` builds it).
        let meta = regex_automata::meta::Builder::new()
            .configure(regex_automata::meta::Config::new().match_kind(MatchKind::All))
            .build_many(patterns)
            .map_err(|e| e.to_string())?;
        let nfa = regex_automata::nfa::thompson::Compiler::new()
            .build_many(patterns)
            .map_err(|e| e.to_string())?;
        let anchored = nfa.is_always_start_anchored();
        let dfa = dense::Builder::new()
            .configure(
                dense::Config::new()
                    .match_kind(MatchKind::All)
                    .start_kind(if anchored {
                        StartKind::Anchored
                    } else {
                        StartKind::Unanchored
                    })
                    // Paths and names are short: a memchr call per
                    // state costs more than the bytes it would skip.
                    .accelerate(false)
                    .dfa_size_limit(Some(DFA_SIZE_LIMIT))
                    .determinize_size_limit(Some(4 * DFA_SIZE_LIMIT)),
            )
            .build_from_nfa(&nfa)
            .ok();
        Ok(MatchSet {
            dfa,
            anchored,
            meta,
        })
    }

    /// Bit `i` is set when pattern `i` matches `hay`.
    pub fn matches(&self, hay: &str) -> u64 {
        if let Some(bits) = self.dfa.as_ref().and_then(|dfa| self.walk(dfa, hay)) {
            return bits;
        }
        MATCHED.with(|m| {
            let mut m = m.borrow_mut();
            m.clear();
            self.meta
                .which_overlapping_matches(&regex_automata::Input::new(hay), &mut m);
            m.iter().fold(0u64, |acc, p| acc | 1 << p.as_usize())
        })
    }

    /// The DFA's walk over `hay`, a transition per byte, collecting the
    /// patterns of every match state it passes (what an overlapping search
    /// reports, without its per-call bookkeeping). `None` if the DFA cannot
    /// answer (a quit state: not built here, but then the lazy engine does).
    fn walk(&self, dfa: &regex_automata::dfa::dense::DFA<Vec<u32>>, hay: &str) -> Option<u64> {
        use regex_automata::dfa::Automaton;
        let anchored = if self.anchored {
            regex_automata::Anchored::Yes
        } else {
            regex_automata::Anchored::No
        };
        let mut sid = dfa
            .start_state(&regex_automata::util::start::Config::new().anchored(anchored))
            .ok()?;
        let mut bits = 0u64;
        let collect = |sid, bits: &mut u64| {
            for i in 0..dfa.match_len(sid) {
                *bits |= 1 << dfa.match_pattern(sid, i).as_usize();
            }
        };
        for &b in hay.as_bytes() {
            sid = dfa.next_state(sid, b);
            if dfa.is_special_state(sid) {
                if dfa.is_dead_state(sid) {
                    return Some(bits);
                } else if dfa.is_match_state(sid) {
                    collect(sid, &mut bits);
                } else if dfa.is_quit_state(sid) {
                    return None;
                }
            }
        }
        sid = dfa.next_eoi_state(sid);
        if dfa.is_match_state(sid) {
            collect(sid, &mut bits);
        }
        Some(bits)
    }

    /// Whether the full DFA is used (false: the lazy engine).
    pub fn is_dfa(&self) -> bool {
        self.dfa.is_some()
    }
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
            let matched = set.matches(seen.path);
            if matched == 0 {
                return Classify::Done(unmatched(seen, p.unmatched));
            }
            let mut ops = Ops::new(seen, &p.sources, p.operations.as_ref());
            let method = request_method_bit(seen.method);
            for sig in &p.signatures {
                if matched & (1 << sig.path) == 0 {
                    continue;
                }
                match sig.check(seen, method, &mut ops) {
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
    // A safe method reads whatever its body: the header is not looked up.
    let multipart = || {
        seen.headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| starts_with_ignore_case(ct, "multipart/"))
    };
    let activity = if !is_safe(seen.method) && multipart() {
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
    /// `method` is the request's [`request_method_bit`].
    fn check(&self, seen: &Seen<'_>, method: u16, ops: &mut Ops<'_, '_>) -> Check {
        if !self.methods.is_empty() {
            let listed = if method != 0 {
                self.method_bits & method != 0
            } else {
                self.methods
                    .iter()
                    .any(|m| m.eq_ignore_ascii_case(seen.method.as_str()))
            };
            if !listed {
                return Check::NoMatch;
            }
        }
        if !self.hosts.is_empty() && !self.hosts.iter().any(|h| on_label_boundary(seen.host, h)) {
            return Check::NoMatch;
        }
        if let Some(prefix) = &self.content_type {
            if !starts_with_ignore_case(ops.content_type(), prefix) {
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
                Value::Found(matched) if matched & (1 << op.pattern) != 0 => return Check::Match,
                Value::Found(_) => return Check::NoMatch,
            }
        }
        Check::NoMatch
    }
}

/// An operation source's value for one request.
enum Value {
    Absent,
    /// In the body, which has not been peeked at yet.
    InBody,
    /// The operation patterns (bits of the platform's
    /// [`PlatformSignatures::operations`]) the value matched.
    Found(u64),
}

/// The operation sources of one request, each read and matched at most
/// once, however many signatures name it.
struct Ops<'s, 'r> {
    seen: &'s Seen<'r>,
    sources: &'s [OpSource],
    operations: Option<&'s MatchSet>,
    /// Looked up when a signature first needs it.
    content_type: Option<&'r str>,
    /// `None` until read; then the patterns its value matched, if the
    /// source had a value.
    values: [Option<Option<u64>>; MAX_SOURCES],
}

impl<'s, 'r> Ops<'s, 'r> {
    fn new(seen: &'s Seen<'r>, sources: &'s [OpSource], operations: Option<&'s MatchSet>) -> Self {
        Ops {
            seen,
            sources,
            operations,
            content_type: None,
            values: Default::default(),
        }
    }

    fn content_type(&mut self) -> &'r str {
        if let Some(ct) = self.content_type {
            return ct;
        }
        let headers: &'r HeaderMap = self.seen.headers;
        let ct = headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        self.content_type = Some(ct);
        ct
    }

    fn value(&mut self, i: usize) -> Value {
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
                            self.content_type(),
                            "application/x-www-form-urlencoded",
                        ),
                        _ => is_json(self.content_type()),
                    };
                    match (fits, seen.body) {
                        (false, _) | (_, Body::None) => None,
                        (true, Body::NotYet) => return Value::InBody,
                        (true, Body::Peeked { bytes, .. }) => match source {
                            OpSource::Form(_) => form_value(bytes, name),
                            _ => json_value(bytes, name),
                        },
                    }
                }
            };
            let operations = self.operations;
            self.values[i] = Some(read.map(|v| operations.map_or(0, |set| set.matches(&v))));
        }
        match self.values[i] {
            Some(Some(matched)) => Value::Found(matched),
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
/// other keys of a long query cost a length check or a comparison, not a
/// decode. A cut-off last pair in a peeked body is simply not found whole.
fn form_value<'b>(bytes: &'b [u8], name: &str) -> Option<std::borrow::Cow<'b, str>> {
    let mut rest = bytes;
    loop {
        let (pair, next) = match memchr::memchr(b'&', rest) {
            Some(i) => (&rest[..i], Some(&rest[i + 1..])),
            None => (rest, None),
        };
        if let Some(v) = pair_value(pair, name) {
            return Some(v);
        }
        rest = next?;
    }
}

/// The value of one `key=value` pair when its key, decoded, is `name`.
fn pair_value<'b>(pair: &'b [u8], name: &str) -> Option<std::borrow::Cow<'b, str>> {
    let eq = memchr::memchr(b'=', pair);
    let key = &pair[..eq.unwrap_or(pair.len())];
    // Decoding never lengthens a key (`%41` is one byte, `+` one), so a
    // shorter key cannot be the name.
    if key.len() < name.len() {
        return None;
    }
    let matches = if memchr::memchr2(b'%', b'+', key).is_some() {
        form_urlencoded::parse(key)
            .next()
            .is_some_and(|(k, _)| k == name)
    } else {
        key == name.as_bytes()
    };
    if !matches {
        return None;
    }
    let value = eq.map_or(&[][..], |i| &pair[i + 1..]);
    if memchr::memchr2(b'%', b'+', value).is_none() {
        // Nothing to decode: the bytes are the value.
        if let Ok(v) = std::str::from_utf8(value) {
            return Some(std::borrow::Cow::Borrowed(v));
        }
    }
    form_urlencoded::parse(pair).next().map(|(_, v)| v)
}

/// A top-level string value of a JSON object: the first string under `key`
/// (a key whose value is not a string is passed over, as a later one with a
/// string value still counts). When the peek did not hold the whole body,
/// the key is still found if it comes before the cut.
///
/// A scan, not a parse: it walks the object's keys, skipping each value
/// (strings, nested objects and arrays, scalars) without building it, and
/// decodes only the key and value it returns (serde_json does that when
/// they hold escapes). It stops (not found) at the first byte that cannot
/// continue a JSON object. On valid JSON, and on any prefix of it, it gives
/// the same answer as walking the object with serde_json (a test checks
/// that on generated documents); it costs one pass over the bytes up to the
/// key and allocates nothing unless the value holds escapes.
fn json_value<'b>(bytes: &'b [u8], key: &str) -> Option<std::borrow::Cow<'b, str>> {
    let mut s = JsonScan { b: bytes, i: 0 };
    s.ws();
    if !s.eat(b'{') {
        return None;
    }
    s.ws();
    if s.eat(b'}') {
        return None;
    }
    loop {
        s.ws();
        let (k, k_escaped) = s.string()?;
        s.ws();
        if !s.eat(b':') {
            return None;
        }
        s.ws();
        if s.peek()? == b'"' {
            let (v, v_escaped) = s.string()?;
            if json_key_is(k, k_escaped, key) {
                // The key's first string value: the answer, whatever follows.
                return json_str(v, v_escaped);
            }
        } else {
            s.skip_value()?;
        }
        s.ws();
        match s.next()? {
            b',' => {}
            _ => return None,
        }
    }
}

/// Whether a raw JSON string (between its quotes) is `key`.
fn json_key_is(raw: &[u8], escaped: bool, key: &str) -> bool {
    if escaped {
        json_str(raw, true).is_some_and(|k| k == key)
    } else {
        raw == key.as_bytes()
    }
}

/// A raw JSON string (between its quotes), decoded.
fn json_str(raw: &[u8], escaped: bool) -> Option<std::borrow::Cow<'_, str>> {
    if escaped {
        // The quotes are around `raw` in the body; serde_json decodes it.
        let mut quoted = Vec::with_capacity(raw.len() + 2);
        quoted.push(b'"');
        quoted.extend_from_slice(raw);
        quoted.push(b'"');
        serde_json::from_slice::<String>(&quoted)
            .ok()
            .map(std::borrow::Cow::Owned)
    } else {
        std::str::from_utf8(raw)
            .ok()
            .map(std::borrow::Cow::Borrowed)
    }
}

/// A cursor over a JSON body for [`json_value`].
struct JsonScan<'b> {
    b: &'b [u8],
    i: usize,
}

impl<'b> JsonScan<'b> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.i += 1;
        Some(c)
    }

    fn eat(&mut self, c: u8) -> bool {
        let hit = self.peek() == Some(c);
        self.i += hit as usize;
        hit
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    /// A string at the cursor: its raw bytes between the quotes, and
    /// whether they hold an escape. `None` when it is cut off, holds a
    /// control byte or a bad escape.
    fn string(&mut self) -> Option<(&'b [u8], bool)> {
        if !self.eat(b'"') {
            return None;
        }
        let start = self.i;
        let mut escaped = false;
        loop {
            let at = self.i + memchr::memchr2(b'"', b'\\', &self.b[self.i..])?;
            if self.b[self.i..at].iter().any(|c| *c < 0x20) {
                return None;
            }
            self.i = at + 1;
            if self.b[at] == b'"' {
                return Some((&self.b[start..at], escaped));
            }
            escaped = true;
            match self.next()? {
                b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {}
                b'u' => {
                    let hex = self.b.get(self.i..self.i + 4)?;
                    if !hex.iter().all(u8::is_ascii_hexdigit) {
                        return None;
                    }
                    self.i += 4;
                }
                _ => return None,
            }
        }
    }

    /// Skips the value at the cursor: a string, an object or array (its
    /// brackets counted, strings inside skipped whole), or a scalar.
    fn skip_value(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(drop),
            b'{' | b'[' => {
                let mut depth = 0usize;
                loop {
                    match self.peek()? {
                        b'"' => {
                            self.string()?;
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth -= 1;
                            if depth == 0 {
                                self.i += 1;
                                return Some(());
                            }
                        }
                        _ => {}
                    }
                    self.i += 1;
                }
            }
            _ => {
                let start = self.i;
                while !matches!(
                    self.peek(),
                    None | Some(b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
                ) {
                    self.i += 1;
                }
                // A scalar cut by the end of the peek may be incomplete.
                (self.i > start && self.i < self.b.len()).then_some(())
            }
        }
    }
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
        let mut op_patterns: Vec<String> = Vec::new();
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
                Some(mut sig) => {
                    sig.path = index_of(&mut patterns, &rs.path);
                    if let (Some(op), Some(raw)) = (&mut sig.operation, &rs.operation) {
                        op.pattern = index_of(&mut op_patterns, &raw.pattern);
                    }
                    signatures.push(sig);
                }
                None => continue,
            }
        }
        let paths = if patterns.is_empty() {
            None
        } else {
            match PathSet::new(&patterns) {
                Ok(set) => Some(set),
                Err(e) => {
                    err(
                        format!("{base}.signatures"),
                        format!("the path patterns do not compile together: {e}"),
                        "use fewer distinct path patterns (signatures with the same path share one)",
                    );
                    None
                }
            }
        };
        let operations = if op_patterns.is_empty() {
            None
        } else {
            match MatchSet::new(&op_patterns) {
                Ok(set) => Some(set),
                Err(e) => {
                    err(
                        format!("{base}.signatures"),
                        format!("the operation patterns do not compile together: {e}"),
                        "use fewer distinct operation patterns (one pattern with alternatives, `^(A|B)$`, counts once)",
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
            operations,
            signatures,
        };
    }
    out
}

/// The index of `pattern` in `patterns`, added at the end when new.
fn index_of(patterns: &mut Vec<String>, pattern: &str) -> usize {
    match patterns.iter().position(|p| p == pattern) {
        Some(i) => i,
        None => {
            patterns.push(pattern.to_string());
            patterns.len() - 1
        }
    }
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
                    Ok(s) => match sources.iter().position(|x| *x == s) {
                        Some(i) => from.push(i),
                        None if sources.len() < MAX_SOURCES => {
                            sources.push(s);
                            from.push(sources.len() - 1);
                        }
                        None => {
                            err(
                                format!("{path}.operation.from[{j}]"),
                                format!("a platform's signatures may read at most {MAX_SOURCES} different operation sources"),
                                "reuse a source another signature of this platform reads, or split the platform",
                            );
                            ok = false;
                        }
                    },
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
                // `pattern` is set by the caller, which dedupes the
                // platform's operation patterns.
                Ok(_) => Some(Operation { from, pattern: 0 }),
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
        // Set by the caller, which dedupes the platform's paths.
        path: 0,
        id: Arc::from(rs.id.as_str()),
        activity,
        method_bits: methods.iter().fold(0, |acc, m| acc | method_bit(m)),
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

    #[test]
    fn a_path_set_reports_every_pattern_that_matches_and_refuses_too_many() {
        let set = PathSet::new(&[
            "^/api/graphql/?$".to_string(),
            "^/api/".to_string(),
            "^/upload$".to_string(),
        ])
        .unwrap();
        assert_eq!(set.matches("/api/graphql/"), 0b011, "overlapping: both");
        assert_eq!(set.matches("/api/other"), 0b010);
        assert_eq!(set.matches("/upload"), 0b100);
        assert_eq!(set.matches("/feed"), 0);
        let many: Vec<String> = (0..=MAX_PATHS).map(|i| format!("^/p{i}$")).collect();
        let e = PathSet::new(&many).unwrap_err();
        assert!(e.contains("at most 64"), "{e}");
    }

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
    fn every_shipped_platform_is_matched_by_a_built_dfa() {
        let p = shipped();
        for (i, sigs) in p.activities.platforms.iter().enumerate() {
            for set in [&sigs.paths, &sigs.operations].into_iter().flatten() {
                assert!(
                    set.is_dfa(),
                    "platform {} falls back to the lazy engine",
                    p.platforms[i].id
                );
            }
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

    /// The first version's JSON lookup (serde_json walking the object): the
    /// reference the scan is checked against.
    fn json_value_serde(bytes: &[u8], key: &str) -> Option<String> {
        use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};
        use std::fmt;
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

    #[test]
    fn json_scan_edges_agree_with_serde() {
        let k = "operationName";
        #[rustfmt::skip]
        let table: &[(&[u8], Option<&str>)] = &[
            (br#"{"operationName":"A"}"#, Some("A")),
            (b" \r\n\t{ \"operationName\" :\n \"A\" }", Some("A")),
            // Escapes in the value and in the key are decoded.
            (br#"{"operationName":"Get\u0041\n\"x\""}"#, Some("GetA\n\"x\"")),
            (br#"{"operation\u004eame":"B"}"#, Some("B")),
            // The first string value counts; a non-string one is passed over.
            (br#"{"operationName":5,"operationName":"Late"}"#, Some("Late")),
            (br#"{"operationName":"First","operationName":"Second"}"#, Some("First")),
            (br#"{"operationName":null}"#, None),
            // Nested keys, keys inside strings and arrays do not count.
            (br#"{"v":{"operationName":"Fake"},"w":["operationName","x"],"s":"\"operationName\":\"y\"","operationName":"Real"}"#, Some("Real")),
            (br#"{"v":[{"a":[[]]},"]}",{}],"operationName":"Deep"}"#, Some("Deep")),
            (br#"{"n":-1.5e+3,"t":true,"f":false,"z":null,"operationName":"S"}"#, Some("S")),
            // Not an object; empty; garbage; a bad escape; a raw control byte.
            (b"[1,2]", None), (b"{}", None), (b"", None), (b"\xff\xfe", None),
            (br#"{"operationName":"a\qb"}"#, None),
            (b"{\"operationName\":\"a\x01b\"}", None),
            (br#"{"a" "operationName":"X"}"#, None),
            (br#"{"a":1 "operationName":"X"}"#, None),
            // Cut inside the value, after it, inside a number before it.
            (br#"{"operationName":"Creat"#, None),
            (br#"{"operationName":"CreateTweet""#, Some("CreateTweet")),
            (br#"{"a":12"#, None),
            (br#"{"a":"\u00"#, None),
        ];
        for (body, want) in table {
            let got = json_value(body, k);
            assert_eq!(got.as_deref(), *want, "{:?}", String::from_utf8_lossy(body));
            assert_eq!(
                json_value_serde(body, k).as_deref(),
                *want,
                "the reference disagrees on {:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    /// Any JSON value, nested a few levels, with keys that sometimes are
    /// the one looked for.
    fn json_doc() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
        use proptest::prelude::*;
        let key = prop_oneof![
            Just("operationName".to_string()),
            Just("operation\"Name".to_string()),
            "[a-zA-Z\\\\\"é\u{1F600}\n ]{0,6}",
        ];
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::Bool),
            any::<i64>().prop_map(|n| serde_json::json!(n)),
            any::<f64>().prop_map(|n| serde_json::json!(n)),
            "[ -~é\u{1F600}\t\n\\\\\"]{0,12}".prop_map(serde_json::Value::String),
        ];
        leaf.prop_recursive(4, 40, 6, move |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..5).prop_map(serde_json::Value::Array),
                proptest::collection::vec((key.clone(), inner), 0..6).prop_map(|kv| {
                    // Keys may repeat: serialise pairs in order, as text,
                    // below; a Map would keep only one.
                    serde_json::Value::Array(
                        kv.into_iter()
                            .map(|(k, v)| serde_json::json!({ "k": k, "v": v }))
                            .collect(),
                    )
                }),
            ]
        })
    }

    /// A top-level object of `pairs`, repeated keys kept, as JSON text.
    fn object_text(pairs: &[(String, serde_json::Value)], pretty: bool) -> String {
        let ser = |v: &serde_json::Value| {
            if pretty {
                serde_json::to_string_pretty(v).unwrap()
            } else {
                serde_json::to_string(v).unwrap()
            }
        };
        let body: Vec<String> = pairs
            .iter()
            .map(|(k, v)| format!("{}:{}", ser(&serde_json::Value::String(k.clone())), ser(v)))
            .collect();
        if pretty {
            format!("{{\n  {}\n}}", body.join(",\n  "))
        } else {
            format!("{{{}}}", body.join(","))
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config { cases: 2000, ..Default::default() })]
        /// On valid JSON and on every prefix of it (a peek cut anywhere), the
        /// scan finds what serde_json walking the object finds.
        #[test]
        fn json_scan_agrees_with_serde_on_documents_and_their_prefixes(
            pairs in proptest::collection::vec(
                (proptest::prop_oneof![
                    proptest::strategy::Just("operationName".to_string()),
                    "[a-zA-Z\\\\\"]{0,4}",
                    proptest::strategy::Just("operation\\u004eame".to_string()),
                ], json_doc()),
                0..6,
            ),
            pretty in proptest::bool::ANY,
        ) {
            let text = object_text(&pairs, pretty);
            let bytes = text.as_bytes();
            for cut in 0..=bytes.len() {
                let part = &bytes[..cut];
                proptest::prop_assert_eq!(
                    json_value(part, "operationName").map(|c| c.into_owned()),
                    json_value_serde(part, "operationName"),
                    "{:?}", String::from_utf8_lossy(part)
                );
            }
        }
    }

    #[test]
    fn form_values_decode_only_the_pair_asked_for() {
        #[rustfmt::skip]
        let table: &[(&str, &str, Option<&str>)] = &[
            ("queryId=a.b&x=1", "queryId", Some("a.b")),
            ("x=1&queryId=a.b", "queryId", Some("a.b")),
            ("queryIdx=1&queryId=2", "queryId", Some("2")),
            ("query=1&queryId", "queryId", Some("")),
            ("q%75eryId=enc", "queryId", Some("enc")),
            ("queryId=a%2Eb+c", "queryId", Some("a.b c")),
            ("a+b=sp", "a b", Some("sp")),
            ("a+b=sp", "a+b", None),
            ("&&queryId=x&", "queryId", Some("x")),
            ("queryid=x", "queryId", None),
            ("QUERYID=x", "queryId", None),
            ("", "queryId", None),
            ("queryId=%ff", "queryId", Some("\u{FFFD}")),
            ("queryId=a=b", "queryId", Some("a=b")),
        ];
        for (q, name, want) in table {
            assert_eq!(
                form_value(q.as_bytes(), name).as_deref(),
                *want,
                "{q} {name}"
            );
            // The reference: the first pair form_urlencoded decodes to `name`.
            let reference = form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned());
            assert_eq!(reference.as_deref(), *want, "reference on {q} {name}");
        }
    }

    #[test]
    fn match_sets_built_as_a_dfa_answer_as_the_lazy_engine_does() {
        let sets: &[&[&str]] = &[
            // Anchored: the search stops when no pattern can continue.
            &[
                "^/api/graphql/?$",
                "^/",
                "^/chat",
                "^/login(/device-based/regular)?/login\\.php$|^/login/",
            ],
            &[
                "^/i/api/graphql/[^/]+/Create(Note)?Tweet$",
                "^/i/api/graphql/[^/]+/CreateRetweet$",
                "^/(i/api/)?1\\.1/jot/",
            ],
            // Unanchored (operation names), mixed, case-insensitive, Unicode.
            &[
                "^ComposerStoryCreateMutation$",
                "Mutation$",
                "Query$",
                "^(Get|Fetch|Search|Load)",
            ],
            &["upload", "^/x", "(?i)^/API/", "é+$", "^/\\w+$"],
        ];
        let hays = [
            "/",
            "",
            "/api/graphql",
            "/api/graphql/",
            "/api/graphqlx",
            "/chat/x",
            "/login/",
            "/login/device-based/regular/login.php",
            "/login/login.php",
            "/login",
            "/i/api/graphql/abc/CreateTweet",
            "/i/api/graphql/a/b/CreateTweet",
            "/i/api/graphql//CreateTweet",
            "/i/api/graphql/é/CreateNoteTweet",
            "/1.1/jot/x",
            "/i/api/1.1/jot/",
            "ComposerStoryCreateMutation",
            "XComposerStoryCreateMutation",
            "AMutation",
            "Mutation\n",
            "CometQuery",
            "GetX",
            "getX",
            "/upload",
            "x/upload/y",
            "/Api/x",
            "/café",
            "/abc_1",
            "/ab/c",
        ];
        for patterns in sets {
            let patterns: Vec<String> = patterns.iter().map(|p| p.to_string()).collect();
            let set = MatchSet::new(&patterns).unwrap();
            assert!(set.is_dfa(), "{patterns:?} should build as a DFA");
            let mut lazy = set.clone();
            lazy.dfa = None;
            for h in hays {
                let want = patterns
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| Regex::new(p).unwrap().is_match(h))
                    .fold(0u64, |acc, (i, _)| acc | 1 << i);
                assert_eq!(set.matches(h), want, "DFA: {patterns:?} on {h:?}");
                assert_eq!(lazy.matches(h), want, "lazy: {patterns:?} on {h:?}");
            }
        }
        // A Unicode word boundary is beyond a built DFA: the lazy engine
        // answers, the same way.
        let set = MatchSet::new(&["\\bpost\\b".to_string(), "^/".to_string()]).unwrap();
        assert!(!set.is_dfa());
        assert_eq!(set.matches("/a post here"), 0b11);
        assert_eq!(set.matches("/apostle"), 0b10);
    }

    #[test]
    fn operation_patterns_past_the_limit_are_refused_with_their_place() {
        let dir = tempfile::tempdir().unwrap();
        let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
        for f in ["catalog.yaml", "policy.yaml"] {
            std::fs::copy(shipped.join(f), dir.path().join(f)).unwrap();
        }
        let mut yaml = "version: 1\nplatforms:\n  x:\n    signatures:\n".to_string();
        for i in 0..=MAX_PATHS {
            yaml.push_str(&format!(
                "      - {{id: s{i}, activity: post, path: \"^/api$\", source: s, checked: \"2026-11-26\", operation: {{from: [\"query:op\"], pattern: \"^op{i}$\"}}}}\n"
            ));
        }
        std::fs::write(dir.path().join("activities.yaml"), yaml).unwrap();
        let errs = crate::policy::load_dir(dir.path()).unwrap_err().to_string();
        assert!(errs.contains("platforms.x.signatures"), "{errs}");
        assert!(errs.contains("operation patterns"), "{errs}");
        assert!(errs.contains("at most 64"), "{errs}");
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
