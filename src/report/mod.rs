//! `socialgate report`: offline reports from access logs, private by design.
//!
//! Revealing pseudonyms in the per-person listing needs the HMAC key and a
//! reason, and is written to an audit log before any name is shown (this
//! file, with the arguments and the output files). Metric definitions:
//! docs/reports.md. The data flows through:
//!
//! - `read`: ingest. Access logs as a stream of typed records; unknown
//!   values are counted, bad lines reported, never fatal.
//! - `aggregate`: per-record accumulation into bounded per group set ×
//!   platform × day counters and person sets.
//! - `keys`: interned names, local day and hour.
//! - `expand`: group sets expanded to single groups and "*".
//! - `security`, `strategy`: the two sections.
//! - `privacy`: which strategy numbers may be shown: per-cell and
//!   complementary suppression over the group hierarchy, with an exact
//!   audit of every sum and difference.
//! - `maturity`: the social-maturity model (pure).
//! - [`model`]: the computed report (the `--format json` structure).
//! - `tables`, `csv`, `svg`, `page`: presentation; the HTML page and its
//!   charts are askama templates in `templates/report/`.
//!
//! This module must never see hyper, tokio or the proxy's internals, never
//! load a whole log into memory, and never list individuals in the strategy
//! section.

mod aggregate;
mod csv;
mod expand;
mod keys;
mod maturity;
pub mod model;
mod page;
mod privacy;
pub mod read;
mod security;
mod strategy;
mod svg;
mod tables;

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use jiff::tz::TimeZone;
use jiff::Timestamp;

pub use csv::csv_all;
pub use model::Report;
use read::read_logs_and_requests;
pub use read::{FileStats, ReadStats};

use crate::activetime::SessionRules;
use crate::pseudonym::{parse_user_list, Pseudonymizer};

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One self-contained HTML file (inline CSS and SVG, works offline).
    Html,
    /// CSV tables: sections in one file, or one file per table when --out is a directory.
    Csv,
    /// The report structure documented in docs/reports.md.
    Json,
}

/// Which sections a report holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Audience {
    /// Both the security and the strategy sections.
    All,
    /// Refusals, unauthenticated traffic, bytes sent, top refused persons.
    Security,
    /// Aggregate adoption, time, trends and maturity; never individuals.
    Strategy,
}

impl Audience {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Audience::All => "all",
            Audience::Security => "security",
            Audience::Strategy => "strategy",
        }
    }
}

/// Arguments of `socialgate report`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReportArgs {
    /// Access-log files to read (JSON lines). Rotated gzip files are detected by content; `-` reads standard input.
    #[arg(long = "log", value_name = "FILE", num_args = 1.., required = true)]
    pub logs: Vec<PathBuf>,
    /// Start of the period (inclusive): RFC 3339 time or a date YYYY-MM-DD (start of that day in --tz).
    #[arg(long, value_name = "TIME")]
    pub from: Option<String>,
    /// End of the period: RFC 3339 time (exclusive) or a date YYYY-MM-DD (that whole day included, in --tz).
    #[arg(long, value_name = "TIME")]
    pub to: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Html)]
    pub format: Format,
    /// Write the report here instead of standard output. For csv, an existing directory gets one file per table.
    #[arg(long, value_name = "PATH")]
    pub out: Option<PathBuf>,
    /// Privacy threshold: no strategy number, nor any sum or difference of them, describes fewer than this many persons (the security section hides each number backed by fewer).
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub k: u64,
    /// Idle gap in minutes that ends an active-time session.
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub idle_minutes: u32,
    /// IANA time zone for days, hours and the heat map (e.g. Europe/Berlin).
    #[arg(long, value_name = "ZONE", default_value = "UTC")]
    pub tz: String,
    /// Which sections to produce: the strategy audience never sees per-person listings.
    #[arg(long, value_enum, default_value_t = Audience::All)]
    pub audience: Audience,
    /// How many persons the security section's "top refused persons" lists (0 hides it).
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub top_persons: usize,
    /// Show real names instead of pseudonyms in the per-person listing (needs --key, --users and --reason; audited).
    #[arg(long, requires_all = ["key", "users", "reason"])]
    pub reveal: bool,
    /// The pseudonym HMAC key file (mode 0600), for --reveal.
    #[arg(long, value_name = "FILE", requires = "reveal")]
    pub key: Option<PathBuf>,
    /// Candidate user names for --reveal: an htpasswd file or one name per line.
    #[arg(long, value_name = "FILE", requires = "reveal")]
    pub users: Option<PathBuf>,
    /// Why the names are revealed (case number, request); written to the audit log.
    #[arg(long, value_name = "TEXT", requires = "reveal")]
    pub reason: Option<String>,
    /// Append-only audit log for --reveal.
    #[arg(long, value_name = "FILE", default_value = "socialgate-audit.log")]
    pub audit_log: PathBuf,
}

impl ReportArgs {
    /// Arguments with defaults for `logs` (as the command line would give).
    pub fn new(logs: Vec<PathBuf>) -> Self {
        ReportArgs {
            logs,
            from: None,
            to: None,
            format: Format::Html,
            out: None,
            k: 5,
            idle_minutes: 5,
            tz: "UTC".to_owned(),
            audience: Audience::All,
            top_persons: 10,
            reveal: false,
            key: None,
            users: None,
            reason: None,
            audit_log: PathBuf::from("socialgate-audit.log"),
        }
    }

    /// The arguments as a command line, for the audit log.
    pub fn command_line(&self) -> Vec<String> {
        let mut v = vec!["report".to_owned()];
        let mut push = |flag: &str, val: String| {
            v.push(flag.to_owned());
            v.push(val);
        };
        for l in &self.logs {
            push("--log", l.display().to_string());
        }
        if let Some(f) = &self.from {
            push("--from", f.clone());
        }
        if let Some(t) = &self.to {
            push("--to", t.clone());
        }
        push("--format", format!("{:?}", self.format).to_lowercase());
        if let Some(o) = &self.out {
            push("--out", o.display().to_string());
        }
        push("--k", self.k.to_string());
        push("--idle-minutes", self.idle_minutes.to_string());
        push("--tz", self.tz.clone());
        push("--audience", format!("{:?}", self.audience).to_lowercase());
        push("--top-persons", self.top_persons.to_string());
        if self.reveal {
            v.push("--reveal".to_owned());
        }
        if let Some(k) = &self.key {
            v.push("--key".to_owned());
            v.push(k.display().to_string());
        }
        if let Some(u) = &self.users {
            v.push("--users".to_owned());
            v.push(u.display().to_string());
        }
        v
    }
}

/// Runs `socialgate report`: builds the report, writes it, prints warnings
/// (unreadable inputs, malformed lines) to stderr.
///
/// Exit code: 0 when at least one input was read (even with malformed lines
/// or some missing files, which the report lists); 1 when no input at all
/// could be read. Invalid arguments and a refused `--reveal` are errors.
pub fn run(args: &ReportArgs) -> anyhow::Result<ExitCode> {
    let report = build_report(args)?;
    write_report(&report, args.format, args.out.as_deref())?;
    let input = &report.input;
    let mut stderr = std::io::stderr().lock();
    for f in input.files.iter().filter(|f| f.error.is_some()) {
        let _ = writeln!(
            stderr,
            "warning: {}: {}",
            f.path,
            f.error.as_deref().unwrap_or_default()
        );
    }
    if input.malformed > 0 {
        let _ = writeln!(
            stderr,
            "warning: {} malformed line(s) skipped, first ones:",
            input.malformed
        );
        for e in &input.malformed_examples {
            let _ = writeln!(stderr, "  {e}");
        }
    }
    if input.unknown_values > 0 {
        let _ = writeln!(
            stderr,
            "warning: {} value(s) not known to this version (written by another version?); records kept",
            input.unknown_values
        );
    }
    let any_read = input.files.iter().any(|f| f.error.is_none() || f.lines > 0);
    Ok(if any_read {
        ExitCode::SUCCESS
    } else {
        let _ = writeln!(stderr, "error: no input could be read");
        ExitCode::from(1)
    })
}

/// Builds the report without writing it. With `--reveal`, checks the key and
/// writes the audit line first.
pub fn build_report(args: &ReportArgs) -> anyhow::Result<Report> {
    let tz = TimeZone::get(&args.tz).with_context(|| {
        format!(
            "--tz {}: not a known IANA time zone (try Europe/Berlin or UTC)",
            args.tz
        )
    })?;
    let from = args
        .from
        .as_deref()
        .map(|s| parse_time(s, &tz, false).with_context(|| format!("--from {s}")))
        .transpose()?;
    let to = args
        .to
        .as_deref()
        .map(|s| parse_time(s, &tz, true).with_context(|| format!("--to {s}")))
        .transpose()?;
    if let (Some(f), Some(t)) = (from, to) {
        if f >= t {
            bail!("--from {f} is not before --to {t}");
        }
    }
    if args.k == 0 {
        bail!("--k 0: k must be at least 1 (5 or more is recommended)");
    }
    let reveal = if args.reveal {
        Some(prepare_reveal(args)?)
    } else {
        None
    };
    let opt = aggregate::Options {
        from,
        to,
        tz,
        tz_name: args.tz.clone(),
        k: args.k,
        rules: SessionRules::with_idle_minutes(args.idle_minutes),
        top_persons: args.top_persons,
        audience: args.audience,
    };
    let agg = aggregate::Aggregator::new(opt);
    read::refuse_squid_format(&args.logs).map_err(anyhow::Error::msg)?;
    let mut stats = ReadStats::default();
    // The aggregator is needed by both callbacks, one at a time.
    let agg = std::cell::RefCell::new(agg);
    read_logs_and_requests(
        &order_inputs(&args.logs),
        &mut stats,
        |rec| agg.borrow_mut().observe(rec),
        |rec| agg.borrow_mut().observe_access_request(rec),
    );
    let agg = agg.into_inner();
    let input = model::Input {
        files: stats.files,
        lines: stats.lines,
        records: stats.records,
        malformed: stats.malformed,
        unknown_values: stats.unknown_values,
        malformed_examples: stats.malformed_examples,
        in_period: 0,
    };
    Ok(agg.finish(input, reveal.as_ref()))
}

/// Checks the key, reads the candidate names and appends the audit line;
/// only then returns the pseudonym → name map.
fn prepare_reveal(args: &ReportArgs) -> anyhow::Result<HashMap<String, String>> {
    let Some(key) = &args.key else {
        bail!("--reveal refused: it needs the pseudonym key (--key FILE)");
    };
    let keyer = Pseudonymizer::from_key_file(key).context("--reveal refused")?;
    let reason = args.reason.as_deref().map(str::trim).unwrap_or_default();
    if reason.is_empty() {
        bail!("--reveal refused: say why with --reason TEXT (it is written to the audit log)");
    }
    let Some(users) = &args.users else {
        bail!("--reveal refused: it needs the candidate names (--users FILE: htpasswd or one name per line)");
    };
    let text = std::fs::read_to_string(users)
        .with_context(|| format!("--reveal refused: cannot read --users {}", users.display()))?;
    let names = parse_user_list(&text);
    append_audit(&args.audit_log, args, reason).with_context(|| {
        format!(
            "--reveal refused: cannot write the audit log {}",
            args.audit_log.display()
        )
    })?;
    Ok(keyer.reveal_map(names.iter().map(String::as_str)))
}

fn append_audit(path: &Path, args: &ReportArgs, reason: &str) -> std::io::Result<()> {
    let line = serde_json::json!({
        "time": Timestamp::now(),
        "event": "reveal",
        "os_user": std::env::var("USER").unwrap_or_else(|_| "unknown".to_owned()),
        "reason": reason,
        "args": args.command_line(),
    });
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options.open(path)?;
    writeln!(f, "{line}")?;
    f.sync_all()
}

/// Parses `--from`/`--to`: RFC 3339, or a date meaning the start of that day
/// in `tz` (for `--to`, the start of the next day, so the day is included).
fn parse_time(s: &str, tz: &TimeZone, end: bool) -> anyhow::Result<Timestamp> {
    if let Ok(t) = s.parse::<Timestamp>() {
        return Ok(t);
    }
    let date: jiff::civil::Date = s.parse().map_err(|_| {
        anyhow::anyhow!("expected an RFC 3339 time (2026-03-01T00:00:00Z) or a date (2026-03-01)")
    })?;
    let date = if end {
        date.tomorrow().context("date out of range")?
    } else {
        date
    };
    Ok(date.to_zoned_datetime(tz.clone())?.timestamp())
}

/// Orders inputs by the time of their first record, so rotated files given
/// newest-first (`access.log access.log.1.gz ...`) are read oldest-first.
/// Standard input and files without a readable record keep their place at
/// the end, in the order given.
fn order_inputs(paths: &[PathBuf]) -> Vec<PathBuf> {
    let mut keyed: Vec<(Option<Timestamp>, usize, &PathBuf)> = paths
        .iter()
        .enumerate()
        .map(|(i, p)| (first_time(p), i, p))
        .collect();
    keyed.sort_by_key(|&(t, i, _)| (t.is_none(), t, i));
    keyed.into_iter().map(|(_, _, p)| p.clone()).collect()
}

fn first_time(path: &Path) -> Option<Timestamp> {
    #[derive(serde::Deserialize)]
    struct TimeOnly {
        time: Timestamp,
    }
    if path.as_os_str() == "-" {
        return None;
    }
    let reader = read::open_input(path).ok()?;
    use std::io::BufRead;
    reader
        .lines()
        .take(100)
        .map_while(Result::ok)
        .find_map(|l| serde_json::from_str::<TimeOnly>(&l).ok())
        .map(|t| t.time)
}

/// Writes the report in `format` to `out` (a file, a directory for csv) or stdout.
fn write_report(report: &Report, format: Format, out: Option<&Path>) -> anyhow::Result<()> {
    let write = |path: Option<&Path>, text: &str| -> anyhow::Result<()> {
        match path {
            Some(p) => {
                std::fs::write(p, text).with_context(|| format!("cannot write {}", p.display()))
            }
            None => {
                let mut o = std::io::stdout().lock();
                o.write_all(text.as_bytes())?;
                o.flush()?;
                Ok(())
            }
        }
    };
    match format {
        Format::Json => write(out, &json(report)?),
        Format::Html => write(
            out,
            &page::html(report).context("cannot render the HTML report")?,
        ),
        Format::Csv => match out {
            Some(dir) if dir.is_dir() => {
                for t in tables::tables(report) {
                    let path = dir.join(format!("{}.csv", t.name));
                    write(Some(&path), &csv::csv_table(&t))?;
                }
                Ok(())
            }
            _ => write(out, &csv_all(report)),
        },
    }
}

/// JSON: the [`Report`] structure, pretty-printed.
fn json(report: &Report) -> anyhow::Result<String> {
    let mut s = serde_json::to_string_pretty(report)?;
    s.push('\n');
    Ok(s)
}
