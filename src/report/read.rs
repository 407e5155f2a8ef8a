//! Streaming access-log reader shared by `report` and `simulate`.
//!
//! Reads JSON-lines access logs from files, gzip files (by magic bytes, so
//! rotated `.gz` files work whatever their name) or standard input (`-`), one
//! line at a time into a reused buffer, and hands each record to a callback as
//! a [`Record`] that borrows from that buffer. A bad line (truncated JSON,
//! wrong types, missing fields, invalid UTF-8) is counted and a few examples
//! kept as `file:line: problem`; a file that cannot be opened is recorded in
//! [`ReadStats`]. Neither stops the reading.
//!
//! A *partial* line is JSON that ends early: the start of a record whose
//! write was cut short (disk full, crash). The writer never glues a record
//! to such a fragment (it cuts it off or ends the line first), so the
//! fragment is a line of its own: it is skipped, counted as malformed and
//! as partial, and the next line reads normally.
//!
//! This module must never hold more than one line in memory, and never
//! interpret records (no policy, no aggregation).

use std::borrow::Cow;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde::Deserialize;

use crate::event::{AuthMethod, Kind, Tls};
use crate::outcome::{
    Action, Activity, Class, ErrorKind, Lenient, Mode, Reason, Verdict, WarnOutcome,
};

/// How many malformed-line examples are kept.
pub const MAX_EXAMPLES: usize = 10;

/// One access-log line, borrowed from the line buffer. Mirrors
/// [`crate::event::Event`]; unknown fields are ignored so newer logs still
/// read. Outcomes are typed, and a value this version does not know is kept
/// as [`Lenient::Unknown`] and counted ([`FileStats::unknown_values`])
/// instead of failing the line. Strings with JSON escapes and unknown values
/// are the only ones that allocate.
///
/// The fields check the line's shape (a line without them is malformed);
/// `method`, `path`, `category`, `rule`, `status` and `duration_ms` are
/// checked but read by nobody, hence the `allow`.
#[allow(dead_code)]
#[derive(Debug, Deserialize)]
pub struct Record<'a> {
    pub time: Timestamp,
    pub kind: Lenient<Kind>,
    #[serde(borrow)]
    pub client: Cow<'a, str>,
    #[serde(borrow)]
    pub user: Option<Cow<'a, str>>,
    pub auth: Lenient<AuthMethod>,
    #[serde(borrow)]
    pub groups: Vec<Cow<'a, str>>,
    #[serde(borrow)]
    pub group: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub method: Cow<'a, str>,
    #[serde(borrow)]
    pub host: Cow<'a, str>,
    pub port: u16,
    #[serde(borrow, default)]
    pub path: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub sni: Option<Cow<'a, str>>,
    /// What socialgate did with the tunnel's TLS (absent in older logs).
    #[serde(default)]
    pub tls: Option<Lenient<Tls>>,
    #[serde(borrow)]
    pub platform: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub category: Option<Cow<'a, str>>,
    pub class: Option<Lenient<Class>>,
    pub activity: Option<Lenient<Activity>>,
    /// A rule about activities that could not judge this tunnel (it was
    /// not inspected).
    #[serde(borrow, default)]
    pub activity_unseen: Option<Cow<'a, str>>,
    pub foreground: bool,
    pub action: Lenient<Action>,
    pub mode: Lenient<Mode>,
    #[serde(borrow)]
    pub rule: Cow<'a, str>,
    pub reason: Lenient<Reason>,
    /// What an enforced warn rule did (absent in older logs and on records
    /// no warn rule decided).
    #[serde(default)]
    pub warn: Option<Lenient<WarnOutcome>>,
    pub status: u16,
    pub bytes_up: u64,
    pub bytes_down: u64,
    pub duration_ms: u64,
    #[serde(default)]
    pub error: Option<Lenient<ErrorKind>>,
}

impl Record<'_> {
    /// The record of an inspected tunnel: a container whose requests have
    /// records of their own (with their decisions, activities and bytes),
    /// so reports and simulate count those and skip this one.
    pub fn is_inspected_tunnel(&self) -> bool {
        self.kind == Lenient::Known(Kind::Tunnel)
            && self.tls == Some(Lenient::Known(Tls::Intercepted))
    }

    /// What happened to the traffic ([`Verdict::of_record`] the recorded
    /// action, mode and warn outcome); `None` when the action or mode is a
    /// value this version does not know. An unknown warn outcome counts as
    /// held at the warning.
    pub fn verdict(&self) -> Option<Verdict> {
        let warn = self.warn.as_ref().map(|w| match w {
            Lenient::Known(w) => *w,
            Lenient::Unknown(_) => WarnOutcome::Shown,
        });
        Some(Verdict::of_record(
            *self.action.known()?,
            *self.mode.known()?,
            warn,
        ))
    }

    /// How many of the record's typed values this version does not know.
    pub fn unknown_values(&self) -> u64 {
        fn n<T>(v: Option<&Lenient<T>>) -> u64 {
            u64::from(v.is_some_and(Lenient::is_unknown))
        }
        n(Some(&self.kind))
            + n(Some(&self.auth))
            + n(self.class.as_ref())
            + n(self.activity.as_ref())
            + n(Some(&self.action))
            + n(Some(&self.mode))
            + n(Some(&self.reason))
            + n(self.error.as_ref())
            + n(self.warn.as_ref())
            + n(self.tls.as_ref())
    }
}

/// Counts for one input.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct FileStats {
    pub path: String,
    /// Non-empty lines read.
    pub lines: u64,
    /// Lines that parsed into a record.
    pub records: u64,
    pub malformed: u64,
    /// Of the malformed lines, those cut short (truncated JSON, e.g. a
    /// write that failed half-way); skipped like any malformed line.
    pub partial: u64,
    /// Values (action, mode, reason, class, activity, error, kind, auth) that
    /// this version does not know, in records that were kept.
    pub unknown_values: u64,
    /// Why the file could not be opened or read to its end, if so.
    pub error: Option<String>,
}

/// Counts for all inputs, with the first few malformed-line examples.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ReadStats {
    pub files: Vec<FileStats>,
    pub lines: u64,
    pub records: u64,
    pub malformed: u64,
    /// Of the malformed lines, those cut short (see [`FileStats::partial`]).
    pub partial: u64,
    /// See [`FileStats::unknown_values`].
    pub unknown_values: u64,
    /// `file:line: problem`, at most `MAX_EXAMPLES`.
    pub malformed_examples: Vec<String>,
}

impl ReadStats {
    /// Inputs that could not be opened or were cut short by a read error.
    pub fn failed_files(&self) -> impl Iterator<Item = &FileStats> {
        self.files.iter().filter(|f| f.error.is_some())
    }
}

/// Reads every input in turn and calls `f` for each well-formed record.
/// `-` is standard input. Inputs are read in the order given.
pub fn read_logs<F>(inputs: &[PathBuf], stats: &mut ReadStats, mut f: F)
where
    F: FnMut(&Record<'_>),
{
    for path in inputs {
        read_one(path, stats, &mut f);
    }
}

/// Like [`read_logs`], with the `access-request` records (which
/// [`read_logs`] leaves out: they are no traffic) handed to `requests`.
pub fn read_logs_and_requests<F, G>(
    inputs: &[PathBuf],
    stats: &mut ReadStats,
    mut traffic: F,
    mut requests: G,
) where
    F: FnMut(&Record<'_>),
    G: FnMut(&Record<'_>),
{
    for path in inputs {
        read_one_with(path, stats, &mut |line: &[u8]| {
            let rec = parse_line(line)?;
            if rec.kind == Lenient::Known(Kind::AccessRequest) {
                requests(&rec);
            } else {
                traffic(&rec);
            }
            Ok(rec.unknown_values())
        });
    }
}

/// Reads one input (see [`read_logs`]).
pub fn read_one<F>(path: &Path, stats: &mut ReadStats, f: &mut F)
where
    F: FnMut(&Record<'_>),
{
    read_one_with(path, stats, &mut |line: &[u8]| {
        let rec = parse_line(line)?;
        // An access request is no traffic: not a request, refusal or use.
        if rec.kind != Lenient::Known(Kind::AccessRequest) {
            f(&rec);
        }
        Ok(rec.unknown_values())
    });
}

/// Reads one access-log line (without its newline) as a [`Record`].
pub fn parse_line(line: &[u8]) -> Result<Record<'_>, serde_json::Error> {
    // One UTF-8 check of the whole line costs less than serde_json's check
    // of each string in it; a line that fails it gets the parse (and the
    // error) it always had.
    match std::str::from_utf8(line) {
        Ok(text) => serde_json::from_str(text),
        Err(_) => serde_json::from_slice(line),
    }
}

/// Calls `handle` with each non-empty line of one input (trimmed of
/// surrounding blanks); `handle` returns how many unknown values the line's
/// record held, or the error that makes the line malformed (kept as an
/// example).
fn read_one_with<H>(path: &Path, stats: &mut ReadStats, handle: &mut H)
where
    H: FnMut(&[u8]) -> Result<u64, serde_json::Error>,
{
    let name = path.display().to_string();
    let mut fs = FileStats {
        path: name.clone(),
        ..FileStats::default()
    };
    match open_input(path) {
        Ok(reader) => {
            if let Err(e) = read_lines(reader, &name, &mut fs, stats, handle) {
                fs.error = Some(format!("read error after line {}: {e}", fs.lines));
            }
        }
        Err(e) => fs.error = Some(e),
    }
    stats.lines += fs.lines;
    stats.records += fs.records;
    stats.malformed += fs.malformed;
    stats.partial += fs.partial;
    stats.unknown_values += fs.unknown_values;
    stats.files.push(fs);
}

/// Refuses an input whose first non-empty line is in Squid's native
/// format (`socialgate run --log-format squid` writes it): read as JSON,
/// every line would be malformed and the report silently empty. Standard
/// input is not looked at, since peeking would consume it.
pub fn refuse_squid_format(inputs: &[PathBuf]) -> Result<(), String> {
    for path in inputs.iter().filter(|p| p.as_os_str() != "-") {
        let Ok(reader) = open_input(path) else {
            continue; // reported as unreadable by the reader
        };
        let first = reader
            .split(b'\n')
            .map_while(Result::ok)
            .find(|l| !trim_line(l).is_empty());
        if first.is_some_and(|l| is_squid_line(&String::from_utf8_lossy(&l))) {
            return Err(format!(
                "{} is a Squid-format access log; report and simulate read socialgate's JSON access log. \
                 Run socialgate with `--log-format json` (the default) and use that log",
                path.display()
            ));
        }
    }
    Ok(())
}

/// Squid's native format: `time elapsed client code/status bytes method URL …`,
/// time a float epoch (`1732560157.559`), elapsed whole milliseconds.
pub fn is_squid_line(line: &str) -> bool {
    let f: Vec<&str> = line.split_whitespace().take(5).collect();
    let [time, elapsed, client, code, bytes] = f[..] else {
        return false;
    };
    let number = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let epoch = time
        .split_once('.')
        .is_some_and(|(s, ms)| number(s) && number(ms));
    let code = code.split_once('/').is_some_and(|(c, status)| {
        c.starts_with(|ch: char| ch.is_ascii_uppercase())
            && c.bytes().all(|b| b.is_ascii_uppercase() || b == b'_')
            && number(status)
    });
    epoch && number(elapsed) && !client.is_empty() && code && number(bytes)
}

/// Opens a path (or `-` for stdin), transparently decompressing gzip.
pub fn open_input(path: &Path) -> Result<Box<dyn BufRead>, String> {
    const CAP: usize = 256 * 1024;
    let raw: Box<dyn Read> = if path.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        let file = File::open(path).map_err(|e| format!("cannot open: {e}"))?;
        if file.metadata().map(|m| m.is_dir()).unwrap_or(false) {
            return Err("is a directory, not a log file".to_owned());
        }
        Box::new(file)
    };
    let mut buffered = BufReader::with_capacity(CAP, raw);
    let is_gzip = {
        let head = buffered
            .fill_buf()
            .map_err(|e| format!("cannot read: {e}"))?;
        head.len() >= 2 && head[0] == 0x1f && head[1] == 0x8b
    };
    if is_gzip {
        let gz = flate2::bufread::MultiGzDecoder::new(buffered);
        Ok(Box::new(BufReader::with_capacity(CAP, gz)))
    } else {
        Ok(Box::new(buffered))
    }
}

fn read_lines<H>(
    mut reader: Box<dyn BufRead>,
    name: &str,
    fs: &mut FileStats,
    stats: &mut ReadStats,
    handle: &mut H,
) -> std::io::Result<()>
where
    H: FnMut(&[u8]) -> Result<u64, serde_json::Error>,
{
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut line_no: u64 = 0;
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf)? == 0 {
            return Ok(());
        }
        line_no += 1;
        let line = trim_line(&buf);
        if line.is_empty() {
            continue;
        }
        fs.lines += 1;
        match handle(line) {
            Ok(unknown) => {
                fs.records += 1;
                fs.unknown_values += unknown;
            }
            Err(e) => {
                fs.malformed += 1;
                if e.classify() == serde_json::error::Category::Eof {
                    fs.partial += 1;
                }
                if stats.malformed_examples.len() < MAX_EXAMPLES {
                    stats
                        .malformed_examples
                        .push(format!("{name}:{line_no}: {}", describe(&e)));
                }
            }
        }
    }
}

fn trim_line(buf: &[u8]) -> &[u8] {
    let mut end = buf.len();
    while end > 0 && matches!(buf[end - 1], b'\n' | b'\r' | b' ' | b'\t') {
        end -= 1;
    }
    let mut start = 0;
    while start < end && matches!(buf[start], b' ' | b'\t') {
        start += 1;
    }
    &buf[start..end]
}

fn describe(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let what = match e.classify() {
        Category::Eof => "truncated JSON",
        Category::Syntax => "not valid JSON",
        Category::Data => "not an access-log record",
        Category::Io => "read error",
    };
    format!("{what}: {e}")
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const LINE: &str = r#"{"time":"2026-03-02T09:00:00Z","kind":"tunnel","client":"10.0.0.1","user":"p:0123456789abcdef","auth":"basic","groups":["sales","all"],"group":"sales","method":"CONNECT","host":"www.linkedin.com","port":443,"sni":"www.linkedin.com","platform":"linkedin","category":"professional","class":"primary","activity":null,"foreground":true,"action":"allow","mode":"enforce","rule":"r1","reason":"rule-matched","status":200,"bytes_up":1200,"bytes_down":50000,"duration_ms":30000}"#;

    fn read_str(text: &str) -> (Vec<String>, ReadStats) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.log");
        std::fs::write(&p, text).unwrap();
        let mut stats = ReadStats::default();
        let mut hosts = Vec::new();
        read_logs(&[p], &mut stats, |r| hosts.push(r.host.to_string()));
        (hosts, stats)
    }

    #[test]
    fn an_inspected_tunnel_is_a_container() {
        let line = LINE.replace(
            r#""sni":"www.linkedin.com","#,
            r#""sni":"www.linkedin.com","tls":"intercepted","#,
        );
        let rec: Record<'_> = serde_json::from_str(&line).unwrap();
        assert!(rec.is_inspected_tunnel());
        let plain: Record<'_> = serde_json::from_str(LINE).unwrap();
        assert!(!plain.is_inspected_tunnel(), "older logs have no tls field");
        let future = LINE.replace(r#""sni":"www.linkedin.com","#, r#""tls":"quantum","#);
        let rec: Record<'_> = serde_json::from_str(&future).unwrap();
        assert_eq!(rec.unknown_values(), 1);
    }

    #[test]
    fn reads_a_record_and_borrows_its_strings() {
        let rec: Record<'_> = serde_json::from_str(LINE).unwrap();
        assert!(matches!(rec.host, Cow::Borrowed(_)));
        assert_eq!(rec.groups.len(), 2);
        assert_eq!(rec.kind, Lenient::Known(Kind::Tunnel));
        assert_eq!(rec.verdict(), Some(Verdict::Passed));
        assert_eq!(rec.unknown_values(), 0);
    }

    #[test]
    fn values_from_a_newer_version_are_kept_and_counted_not_fatal() {
        let newer = LINE
            .replace(r#""action":"allow""#, r#""action":"throttle""#)
            .replace(r#""activity":null"#, r#""activity":"teleport""#)
            .replace(r#""auth":"basic""#, r#""auth":"mtls""#)
            .replace(
                r#""duration_ms":30000"#,
                r#""duration_ms":30000,"error":"quic-reset""#,
            );
        let rec: Record<'_> = serde_json::from_str(&newer).unwrap();
        assert_eq!(rec.action, Lenient::Unknown("throttle".into()));
        assert_eq!(rec.verdict(), None, "an unknown action has no verdict");
        assert_eq!(rec.unknown_values(), 4);
        let refused = LINE.replace(r#""action":"allow""#, r#""action":"block""#);
        let rec: Record<'_> = serde_json::from_str(&refused).unwrap();
        assert_eq!(rec.verdict(), Some(Verdict::Refused));
        let (hosts, stats) = read_str(&format!("{LINE}\n{newer}\n{newer}\n"));
        assert_eq!(hosts.len(), 3);
        assert_eq!((stats.malformed, stats.unknown_values), (0, 8));
        assert_eq!(stats.files[0].unknown_values, 8);
    }

    #[test]
    fn an_origins_own_403_is_not_a_refusal() {
        let line = LINE.replace(r#""status":200"#, r#""status":403"#);
        let rec: Record<'_> = serde_json::from_str(&line).unwrap();
        assert_eq!(rec.verdict(), Some(Verdict::Passed));
    }

    #[test]
    fn squid_native_lines_are_recognised_and_json_is_not() {
        assert!(is_squid_line("1764113057.559    12 10.1.2.3 TCP_MISS/200 1532 GET http://example.org/ - HIER_DIRECT/93.184.216.34 text/html"));
        assert!(is_squid_line("1764113057.560 0 127.0.0.1 TCP_DENIED/403 0 CONNECT www.tiktok.com:443 p:ab12 HIER_NONE/- -"));
        assert!(!is_squid_line(
            r#"{"time":"2026-11-25T17:42:37Z","kind":"tunnel"}"#
        ));
        assert!(!is_squid_line("1764113057 12 10.1.2.3 TCP_MISS/200 1532"));
        assert!(!is_squid_line("hello world"));
    }

    #[test]
    fn malformed_lines_are_counted_with_examples() {
        let bad_type = LINE.replace(r#""status":200"#, r#""status":"ok""#);
        let missing = LINE.replace(r#""kind":"tunnel","#, "");
        let truncated = &LINE[..LINE.len() / 2];
        let text = format!("{LINE}\n\n{bad_type}\n{missing}\n{truncated}\n\u{0}garbage\n{LINE}");
        let (hosts, stats) = read_str(&text);
        assert_eq!(hosts.len(), 2);
        assert_eq!(stats.lines, 6);
        assert_eq!(stats.malformed, 4);
        assert_eq!(stats.partial, 1, "the truncated line");
        assert!(
            stats.malformed_examples[0].contains(
                ".log:3: not an access-log record: invalid type: string \"ok\", expected u16"
            ),
            "{}",
            stats.malformed_examples[0]
        );
        assert!(stats.malformed_examples[1]
            .contains(":4: not an access-log record: missing field `kind`"));
        assert!(stats.malformed_examples[2].contains(":5: truncated JSON"));
        assert!(stats.malformed_examples[3].contains(":6: not valid JSON"));
    }

    #[test]
    fn invalid_utf8_makes_a_line_malformed_not_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.log");
        let mut bytes = LINE
            .replace("www.linkedin.com", "www.l\u{e9}nkedin.com")
            .into_bytes();
        let at = bytes.iter().position(|&b| b == 0xc3).unwrap();
        bytes.remove(at + 1); // a lone lead byte
        bytes.push(b'\n');
        bytes.extend_from_slice(LINE.as_bytes());
        std::fs::write(&p, bytes).unwrap();
        let mut stats = ReadStats::default();
        let mut n = 0;
        read_logs(&[p], &mut stats, |_| n += 1);
        assert_eq!((n, stats.malformed), (1, 1));
        assert!(
            stats.malformed_examples[0].contains(":1: not valid JSON: invalid unicode code point"),
            "{}",
            stats.malformed_examples[0]
        );
    }

    #[test]
    fn gzip_is_detected_by_magic_bytes_and_missing_files_are_reported() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let gz = dir.path().join("access.log.1"); // no .gz extension on purpose
        let mut enc =
            flate2::write::GzEncoder::new(File::create(&gz).unwrap(), flate2::Compression::fast());
        writeln!(enc, "{LINE}\n{LINE}").unwrap();
        enc.finish().unwrap();
        let missing = dir.path().join("nope.log");
        let mut stats = ReadStats::default();
        let mut n = 0;
        read_logs(&[missing, gz], &mut stats, |_| n += 1);
        assert_eq!(n, 2);
        assert_eq!(stats.failed_files().count(), 1);
        assert!(stats.files[0]
            .error
            .as_deref()
            .unwrap()
            .starts_with("cannot open"));
    }

    #[test]
    fn a_torn_line_is_skipped_counted_as_partial_and_the_next_line_reads() {
        // A fragment ended by the writer's newline, one cut inside a string
        // (and a multi-byte character), and one at the very end of the file
        // without a newline.
        let torn = &LINE[..LINE.find("\"group\"").unwrap()];
        let mut cut_utf8 = LINE.as_bytes()[..40].to_vec();
        cut_utf8.push("é".as_bytes()[0]);
        let mut text = format!("{LINE}\n{torn}\n{LINE}\n").into_bytes();
        text.extend_from_slice(&cut_utf8);
        text.extend_from_slice(b"\n");
        text.extend_from_slice(format!("{LINE}\n{torn}").as_bytes());
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.log");
        std::fs::write(&p, &text).unwrap();
        let mut stats = ReadStats::default();
        let mut n = 0;
        read_logs(&[p], &mut stats, |r| {
            assert_eq!(r.host, "www.linkedin.com");
            n += 1;
        });
        assert_eq!(n, 3, "every whole record after a fragment is read");
        assert_eq!((stats.lines, stats.records), (6, 3));
        assert_eq!((stats.malformed, stats.partial), (3, 3));
        assert_eq!(stats.files[0].partial, 3);
        assert!(stats.files[0].error.is_none());
        assert!(stats.malformed_examples[0].contains(":2: truncated JSON"));
    }

    #[test]
    fn a_large_input_keeps_its_order_and_line_numbers() {
        // About 9 MiB, with blank and malformed lines at known places.
        let n = 20_000;
        let mut text = String::new();
        let mut line = 0;
        for i in 0..n {
            if i % 7_001 == 0 {
                text.push('\n');
                line += 1;
            }
            if i == 12_345 {
                text.push_str("{\"time\":\n");
                line += 1;
            }
            text.push_str(&LINE.replace("www.linkedin.com", &format!("h{i}.example")));
            text.push('\n');
            line += 1;
            if i == 12_345 {
                assert_eq!(line, 12_345 + 3 + 1);
            }
        }
        assert!(text.len() > 8 << 20);
        let (hosts, stats) = read_str(&text);
        let want: Vec<String> = (0..n).map(|i| format!("h{i}.example")).collect();
        assert!(hosts == want, "records come in the input's order");
        assert_eq!((stats.lines, stats.records, stats.malformed), (n + 1, n, 1));
        // The malformed line is the 12,348th: 12,345 records and 2 blank
        // lines before it, then it.
        assert_eq!(stats.malformed_examples.len(), 1);
        assert!(
            stats.malformed_examples[0].contains("a.log:12348: "),
            "{:?}",
            stats.malformed_examples
        );
    }
}
