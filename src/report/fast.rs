//! The report's hot path: a lean view of an access-log line ([`Hit`]) and a
//! hand-written parser for the exact shape the proxy writes, with serde as
//! the fallback for everything else.
//!
//! [`HitParser::parse`] accepts a line only when it is certain serde would
//! parse the same line into the same [`Record`](super::read::Record): one
//! JSON object, keys and strings without escapes or control characters, the
//! time as `YYYY-MM-DDTHH:MM:SS[.fraction]Z`, every known field with its
//! documented type, no duplicate known field, every required field present,
//! unknown fields only with scalar values. Anything else (escapes, time
//! offsets, nested unknown values, any error) returns `None`, and the caller
//! parses the line with serde into a full `Record`, which gives exactly the
//! old results and error messages. The fields the report does not use are
//! checked but not kept.
//!
//! This module must not allocate per line and must not interpret records.

use std::borrow::Cow;
use std::path::PathBuf;

use jiff::Timestamp;

use super::read::{read_lines_with, ReadStats, Record};
use crate::event::AuthMethod;

/// Reads every input (see [`super::read::read_logs`]) and calls `f` with the
/// lean view of each well-formed record. Same counting and malformed-line
/// reporting as `read_logs`, about three times faster.
pub fn read_hits<F>(inputs: &[PathBuf], stats: &mut ReadStats, mut f: F)
where
    F: FnMut(&Hit<'_>),
{
    let mut parser = HitParser::default();
    read_lines_with(inputs, stats, |line| {
        match parser.parse(line) {
            Some(hit) => f(&hit),
            None => {
                let rec: Record<'_> = serde_json::from_slice(line)?;
                f(&Hit::from_record(&rec));
            }
        }
        Ok(())
    });
}

/// A record's group names, borrowed from the line or from a parsed record.
#[derive(Debug, Clone, Copy)]
pub enum Groups<'a> {
    /// Byte ranges of the names in the line (fast path).
    Ranges(&'a str, &'a [(u32, u32)]),
    /// The names of a record parsed by serde.
    Names(&'a [Cow<'a, str>]),
}

impl<'a> Groups<'a> {
    pub fn len(&self) -> usize {
        match self {
            Groups::Ranges(_, r) => r.len(),
            Groups::Names(n) => n.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn iter(&self) -> GroupIter<'a> {
        GroupIter { g: *self, i: 0 }
    }
}

/// Iterator over [`Groups`].
pub struct GroupIter<'a> {
    g: Groups<'a>,
    i: usize,
}

impl<'a> Iterator for GroupIter<'a> {
    type Item = &'a str;
    #[inline]
    fn next(&mut self) -> Option<&'a str> {
        let s = match self.g {
            Groups::Ranges(line, r) => r.get(self.i).map(|&(a, b)| &line[a as usize..b as usize]),
            Groups::Names(n) => n.get(self.i).map(|c| c.as_ref()),
        };
        self.i += 1;
        s
    }
}

impl PartialEq for Groups<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

/// The fields of an access-log record that the report uses.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit<'a> {
    pub time: Timestamp,
    pub client: &'a str,
    pub user: Option<&'a str>,
    pub auth: AuthMethod,
    pub groups: Groups<'a>,
    pub platform: Option<&'a str>,
    pub class: Option<&'a str>,
    pub activity: Option<&'a str>,
    pub foreground: bool,
    pub action: &'a str,
    pub mode: &'a str,
    pub reason: &'a str,
    pub status: u16,
    pub bytes_up: u64,
    pub bytes_down: u64,
}

impl<'a> Hit<'a> {
    /// The lean view of a record parsed by serde.
    pub fn from_record(r: &'a Record<'_>) -> Hit<'a> {
        Hit {
            time: r.time,
            client: &r.client,
            user: r.user.as_deref(),
            auth: r.auth,
            groups: Groups::Names(&r.groups),
            platform: r.platform.as_deref(),
            class: r.class.as_deref(),
            activity: r.activity.as_deref(),
            foreground: r.foreground,
            action: &r.action,
            mode: &r.mode,
            reason: &r.reason,
            status: r.status,
            bytes_up: r.bytes_up,
            bytes_down: r.bytes_down,
        }
    }

    /// Refused: `block` enforced, or a 403/407 answer (as [`Record::refused`]).
    #[inline]
    pub fn refused(&self) -> bool {
        (self.action == "block" && self.mode == "enforce")
            || self.status == 403
            || self.status == 407
    }

    /// Would have been refused: a `block` rule in `report` mode (traffic passed).
    #[inline]
    pub fn would_refuse(&self) -> bool {
        self.action == "block" && self.mode == "report" && !self.refused()
    }
}

/// The fast-path parser; keeps its scratch space between lines.
#[derive(Default)]
pub struct HitParser {
    ranges: Vec<(u32, u32)>,
}

// One bit per known field, for duplicates and required fields.
const F_TIME: u32 = 1 << 0;
const F_KIND: u32 = 1 << 1;
const F_CLIENT: u32 = 1 << 2;
const F_USER: u32 = 1 << 3;
const F_AUTH: u32 = 1 << 4;
const F_GROUPS: u32 = 1 << 5;
const F_GROUP: u32 = 1 << 6;
const F_METHOD: u32 = 1 << 7;
const F_HOST: u32 = 1 << 8;
const F_PORT: u32 = 1 << 9;
const F_PATH: u32 = 1 << 10;
const F_SNI: u32 = 1 << 11;
const F_PLATFORM: u32 = 1 << 12;
const F_CATEGORY: u32 = 1 << 13;
const F_CLASS: u32 = 1 << 14;
const F_ACTIVITY: u32 = 1 << 15;
const F_FOREGROUND: u32 = 1 << 16;
const F_ACTION: u32 = 1 << 17;
const F_MODE: u32 = 1 << 18;
const F_RULE: u32 = 1 << 19;
const F_REASON: u32 = 1 << 20;
const F_STATUS: u32 = 1 << 21;
const F_BYTES_UP: u32 = 1 << 22;
const F_BYTES_DOWN: u32 = 1 << 23;
const F_DURATION: u32 = 1 << 24;
const F_ERROR: u32 = 1 << 25;
/// Fields that are not `Option` in [`Record`].
const REQUIRED: u32 = F_TIME
    | F_KIND
    | F_CLIENT
    | F_AUTH
    | F_GROUPS
    | F_METHOD
    | F_HOST
    | F_PORT
    | F_FOREGROUND
    | F_ACTION
    | F_MODE
    | F_RULE
    | F_REASON
    | F_STATUS
    | F_BYTES_UP
    | F_BYTES_DOWN
    | F_DURATION;

impl HitParser {
    /// Parses `line` if it has the plain shape described in the module
    /// docs; `None` means "let serde decide", not "malformed".
    pub fn parse<'a>(&'a mut self, line: &'a [u8]) -> Option<Hit<'a>> {
        let text = std::str::from_utf8(line).ok()?;
        self.ranges.clear();
        let mut c = Cur {
            b: text.as_bytes(),
            i: 0,
        };
        let mut seen = 0u32;
        let mut time = None;
        let mut client = "";
        let mut user = None;
        let mut auth = AuthMethod::None;
        let mut platform = None;
        let mut class = None;
        let mut activity = None;
        let mut foreground = false;
        let mut action = "";
        let mut mode = "";
        let mut reason = "";
        let mut status = 0u16;
        let mut bytes_up = 0u64;
        let mut bytes_down = 0u64;

        c.ws();
        c.eat(b'{')?;
        c.ws();
        if c.peek() == Some(b'}') {
            return None; // no fields: serde reports the missing one
        }
        let bytes = c.b;
        loop {
            let (ka, kb) = c.string()?;
            c.ws();
            c.eat(b':')?;
            c.ws();
            let bit = match &bytes[ka..kb] {
                b"time" => {
                    let (a, b) = c.string()?;
                    time = Some(parse_time(&bytes[a..b])?);
                    F_TIME
                }
                b"kind" => {
                    let (a, b) = c.string()?;
                    if !matches!(&bytes[a..b], b"request" | b"tunnel") {
                        return None;
                    }
                    F_KIND
                }
                b"client" => {
                    client = c.str_in(text)?;
                    F_CLIENT
                }
                b"user" => {
                    user = c.opt_str(text)?;
                    F_USER
                }
                b"auth" => {
                    let (a, b) = c.string()?;
                    auth = match &bytes[a..b] {
                        b"none" => AuthMethod::None,
                        b"basic" => AuthMethod::Basic,
                        b"header" => AuthMethod::Header,
                        _ => return None,
                    };
                    F_AUTH
                }
                b"groups" => {
                    c.eat(b'[')?;
                    c.ws();
                    if c.peek() == Some(b']') {
                        c.i += 1;
                    } else {
                        loop {
                            let (a, b) = c.string()?;
                            self.ranges.push((a as u32, b as u32));
                            c.ws();
                            match c.next()? {
                                b',' => c.ws(),
                                b']' => break,
                                _ => return None,
                            }
                        }
                    }
                    F_GROUPS
                }
                b"group" => {
                    c.opt_str(text)?;
                    F_GROUP
                }
                b"method" => {
                    c.string()?;
                    F_METHOD
                }
                b"host" => {
                    c.string()?;
                    F_HOST
                }
                b"port" => {
                    u16::try_from(c.uint()?).ok()?;
                    F_PORT
                }
                b"path" => {
                    c.opt_str(text)?;
                    F_PATH
                }
                b"sni" => {
                    c.opt_str(text)?;
                    F_SNI
                }
                b"platform" => {
                    platform = c.opt_str(text)?;
                    F_PLATFORM
                }
                b"category" => {
                    c.opt_str(text)?;
                    F_CATEGORY
                }
                b"class" => {
                    class = c.opt_str(text)?;
                    F_CLASS
                }
                b"activity" => {
                    activity = c.opt_str(text)?;
                    F_ACTIVITY
                }
                b"foreground" => {
                    foreground = c.boolean()?;
                    F_FOREGROUND
                }
                b"action" => {
                    action = c.str_in(text)?;
                    F_ACTION
                }
                b"mode" => {
                    mode = c.str_in(text)?;
                    F_MODE
                }
                b"rule" => {
                    c.string()?;
                    F_RULE
                }
                b"reason" => {
                    reason = c.str_in(text)?;
                    F_REASON
                }
                b"status" => {
                    status = u16::try_from(c.uint()?).ok()?;
                    F_STATUS
                }
                b"bytes_up" => {
                    bytes_up = c.uint()?;
                    F_BYTES_UP
                }
                b"bytes_down" => {
                    bytes_down = c.uint()?;
                    F_BYTES_DOWN
                }
                b"duration_ms" => {
                    c.uint()?;
                    F_DURATION
                }
                b"error" => {
                    c.opt_str(text)?;
                    F_ERROR
                }
                _ => {
                    c.scalar()?;
                    0
                }
            };
            if seen & bit != 0 {
                return None; // duplicate field
            }
            seen |= bit;
            c.ws();
            match c.next()? {
                b',' => c.ws(),
                b'}' => break,
                _ => return None,
            }
        }
        c.ws();
        if c.i != c.b.len() || seen & REQUIRED != REQUIRED {
            return None;
        }
        Some(Hit {
            time: time?,
            client,
            user,
            auth,
            groups: Groups::Ranges(text, &self.ranges),
            platform,
            class,
            activity,
            foreground,
            action,
            mode,
            reason,
            status,
            bytes_up,
            bytes_down,
        })
    }
}

/// A cursor over one line (already valid UTF-8).
struct Cur<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Cur<'a> {
    #[inline]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }
    #[inline]
    fn next(&mut self) -> Option<u8> {
        let x = self.peek()?;
        self.i += 1;
        Some(x)
    }
    #[inline]
    fn eat(&mut self, x: u8) -> Option<()> {
        (self.next()? == x).then_some(())
    }
    #[inline]
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.i += 1;
        }
    }
    /// A string without escapes or control characters: its byte range.
    #[inline]
    fn string(&mut self) -> Option<(usize, usize)> {
        self.eat(b'"')?;
        let start = self.i;
        loop {
            match self.next()? {
                b'"' => return Some((start, self.i - 1)),
                b'\\' | 0..=0x1f => return None,
                _ => {}
            }
        }
    }
    /// A string as `&str` (the ranges come from `text` itself and end at
    /// ASCII quotes, so they are char boundaries).
    #[inline]
    fn str_in(&mut self, text: &'a str) -> Option<&'a str> {
        let (a, b) = self.string()?;
        text.get(a..b)
    }
    /// A string or `null`.
    #[inline]
    fn opt_str(&mut self, text: &'a str) -> Option<Option<&'a str>> {
        if self.peek() == Some(b'n') {
            self.literal(b"null")?;
            return Some(None);
        }
        self.str_in(text).map(Some)
    }
    #[inline]
    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.i + word.len();
        if self.b.get(self.i..end)? != word {
            return None;
        }
        self.i = end;
        Some(())
    }
    #[inline]
    fn boolean(&mut self) -> Option<bool> {
        match self.peek()? {
            b't' => self.literal(b"true").map(|_| true),
            b'f' => self.literal(b"false").map(|_| false),
            _ => None,
        }
    }
    /// A non-negative integer without fraction or exponent that fits u64.
    #[inline]
    fn uint(&mut self) -> Option<u64> {
        let first = self.next()?;
        if !first.is_ascii_digit() {
            return None;
        }
        let mut v = u64::from(first - b'0');
        while let Some(d @ b'0'..=b'9') = self.peek() {
            if first == b'0' {
                return None; // leading zero: let serde report it
            }
            v = v.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
            self.i += 1;
        }
        // A fraction or exponent would make it a float for serde.
        if matches!(self.peek(), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        Some(v)
    }
    /// The value of an unknown field: a string, number, boolean or null.
    fn scalar(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(drop),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None, // objects and arrays: serde
        }
    }
    /// Any JSON number: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
    fn number(&mut self) -> Option<()> {
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.next()? {
            b'0' => {}
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            self.digit()?;
            self.digits();
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            self.digit()?;
            self.digits();
        }
        Some(())
    }
    fn digit(&mut self) -> Option<()> {
        self.next()?.is_ascii_digit().then_some(())
    }
    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.i += 1;
        }
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.f{1,9}]Z`, the form the proxy writes; anything
/// else (offsets, lower-case separators, leap seconds) is left to jiff.
pub fn parse_time(s: &[u8]) -> Option<Timestamp> {
    if s.len() < 20
        || s[4] != b'-'
        || s[7] != b'-'
        || s[10] != b'T'
        || s[13] != b':'
        || s[16] != b':'
    {
        return None;
    }
    let num = |a: usize, b: usize| -> Option<i64> {
        let mut v = 0i64;
        for &d in &s[a..b] {
            if !d.is_ascii_digit() {
                return None;
            }
            v = v * 10 + i64::from(d - b'0');
        }
        Some(v)
    };
    let (year, month, day) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (hour, minute, second) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    let mut i = 19;
    let mut nanos = 0i32;
    if s[i] == b'.' {
        i += 1;
        let start = i;
        while i < s.len() && s[i].is_ascii_digit() {
            if i - start == 9 {
                return None;
            }
            nanos = nanos * 10 + i32::from(s[i] - b'0');
            i += 1;
        }
        let n = i - start;
        if n == 0 {
            return None;
        }
        nanos *= 10i32.pow(9 - n as u32);
    }
    if i + 1 != s.len() || s[i] != b'Z' {
        return None;
    }
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let secs = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second;
    Timestamp::new(secs, nanos).ok()
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = r#"{"time":"2026-03-02T09:00:00Z","kind":"tunnel","client":"10.0.0.1","user":"p:0123456789abcdef","auth":"basic","groups":["sales","all"],"group":"sales","method":"CONNECT","host":"www.linkedin.com","port":443,"sni":"www.linkedin.com","platform":"linkedin","category":"professional","class":"primary","activity":null,"foreground":true,"action":"allow","mode":"enforce","rule":"r1","reason":"rule-matched","status":200,"bytes_up":1200,"bytes_down":50000,"duration_ms":30000}"#;

    /// The fast path either declines or agrees with serde exactly.
    fn check(line: &str) -> bool {
        let mut p = HitParser::default();
        let fast = p.parse(line.as_bytes());
        let slow = serde_json::from_slice::<Record<'_>>(line.as_bytes());
        match (fast, &slow) {
            (Some(f), Ok(r)) => {
                assert_eq!(f, Hit::from_record(r), "{line}");
                true
            }
            (Some(_), Err(e)) => panic!("fast path accepted what serde refuses ({e}): {line}"),
            (None, _) => false,
        }
    }

    #[test]
    fn plain_lines_take_the_fast_path_and_agree_with_serde() {
        assert!(check(LINE));
        let variants = [
            LINE.replace(r#""user":"p:0123456789abcdef""#, r#""user":null"#),
            LINE.replace(r#""user":"p:0123456789abcdef","#, ""),
            LINE.replace(r#""activity":null"#, r#""activity":"write""#),
            LINE.replace(r#""groups":["sales","all"]"#, r#""groups":[]"#),
            LINE.replace(
                r#""groups":["sales","all"]"#,
                r#""groups" : [ "ü" , "b" ] "#,
            ),
            LINE.replace("09:00:00Z", "09:00:00.5Z"),
            LINE.replace("09:00:00Z", "09:00:00.123456789Z"),
            LINE.replace("2026-03-02", "2024-02-29"),
            LINE.replace("2026-03-02", "1969-12-31"),
            LINE.replace(r#""port":443"#, r#""port":0"#),
            LINE.replace(r#""port":443"#, r#""port":65535"#),
            LINE.replace(r#""bytes_up":1200"#, r#""bytes_up":18446744073709551615"#),
            LINE.replace("}", r#","extra":-1.5e+3,"x":"y","t":true,"n":null}"#),
            format!("  {LINE}  "),
        ];
        for v in &variants {
            assert!(check(v), "should be fast: {v}");
        }
    }

    #[test]
    fn unusual_lines_fall_back_to_serde() {
        let variants = [
            LINE.replace(
                r#""reason":"rule-matched""#,
                r#""reason":"rule\u002dmatched""#,
            ),
            LINE.replace(r#""time""#, r#""ti\u006de""#),
            LINE.replace("09:00:00Z", "09:00:00+02:00"),
            LINE.replace("09:00:00Z", "09:00:60Z"),
            LINE.replace("09:00:00Z", "09:00:00z"),
            LINE.replace("09:00:00Z", "09:00:00.1234567890Z"),
            LINE.replace("2026-03-02", "2026-02-29"),
            LINE.replace(r#""port":443"#, r#""port":65536"#),
            LINE.replace(r#""port":443"#, r#""port":0443"#),
            LINE.replace(r#""port":443"#, r#""port":443.0"#),
            LINE.replace(r#""port":443"#, r#""port":-1"#),
            LINE.replace(r#""port":443"#, r#""port":"443""#),
            LINE.replace(r#""bytes_up":1200"#, r#""bytes_up":18446744073709551616"#),
            LINE.replace(r#""kind":"tunnel","#, ""),
            LINE.replace(r#""kind":"tunnel""#, r#""kind":"other""#),
            LINE.replace(r#""auth":"basic""#, r#""auth":"BASIC""#),
            LINE.replace(r#""status":200"#, r#""status":200,"status":200"#),
            LINE.replace(r#""foreground":true"#, r#""foreground":1"#),
            LINE.replace(r#""groups":["sales","all"]"#, r#""groups":null"#),
            LINE.replace(r#""groups":["sales","all"]"#, r#""groups":["a",]"#),
            LINE.replace("}", r#","extra":{"a":[1]}}"#),
            LINE.replace("}", r#","extra":01}"#),
            LINE.replace("sales", "sa\tles"),
            format!("{LINE} x"),
            format!("[{LINE}]"),
            "{}".to_owned(),
            LINE[..LINE.len() - 1].to_owned(),
        ];
        for v in &variants {
            assert!(!check(v), "should fall back: {v}");
        }
    }

    #[test]
    fn mutated_lines_never_disagree_with_serde() {
        // Deterministic fuzzing: delete, duplicate or replace single bytes.
        let bytes = LINE.as_bytes();
        let alphabet = b"\"\\{}[],: 0123456789.-eEtfnulZT+x\x01";
        let mut fast = 0;
        for i in 0..bytes.len() {
            let mut del = bytes.to_vec();
            del.remove(i);
            let mut dup = bytes.to_vec();
            dup.insert(i, bytes[i]);
            for v in [del, dup] {
                if let Ok(s) = String::from_utf8(v) {
                    fast += usize::from(check(&s));
                }
            }
            for &a in alphabet {
                let mut rep = bytes.to_vec();
                rep[i] = a;
                let s = String::from_utf8(rep).unwrap();
                fast += usize::from(check(&s));
            }
        }
        assert!(fast > 100, "{fast}");
    }

    #[test]
    fn time_parser_agrees_with_jiff() {
        let mut seed: u64 = 7;
        let mut rnd = |m: i64| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 33) % m as u64) as i64
        };
        for _ in 0..20_000 {
            let s = format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{}Z",
                1 + rnd(9998),
                1 + rnd(13),
                1 + rnd(31),
                rnd(25),
                rnd(61),
                rnd(62),
                match rnd(4) {
                    0 => String::new(),
                    1 => format!(".{}", rnd(1000)),
                    2 => format!(".{:09}", rnd(1_000_000_000)),
                    _ => format!(".{:03}", rnd(1000)),
                }
            );
            let jiff = s.parse::<Timestamp>().ok();
            if let Some(fast) = parse_time(s.as_bytes()) {
                assert_eq!(Some(fast), jiff, "{s}");
            } else {
                // Declined: only leap seconds and invalid dates or times.
                let ok_parts = jiff.is_none() || s[17..19].parse::<u32>().unwrap() == 60;
                assert!(ok_parts, "{s} should have been fast");
            }
        }
    }
}
