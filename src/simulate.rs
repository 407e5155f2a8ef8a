//! `socialgate simulate`: replay recorded traffic under a candidate policy.
//!
//! Each access-log record is decided again with the proxy's own admission
//! function (`policy::admit`), using the recorded client address, user,
//! destination, kind (tunnel or request), TLS server name and time. The
//! log holds no resolved addresses, so the destination stage checks IP
//! literals only. Records whose outcome changes are
//! grouped by group, platform, old and new outcome and deciding rule, and
//! printed as sentences an admin can act on. Like `report`, it reads the log
//! as a stream and never sees the proxy. Users in the log are pseudonyms:
//! with `--key` the candidate policy's user names are pseudonymised the same
//! way and match exactly; without it, the groups recorded in the log stand
//! in for user-based membership. Groups by network replay exactly.

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::outcome::{Lenient, Reason, Verdict, WarnOutcome};
use crate::policy::{admit_in_groups, load_dir, normalize_host, Decision, Entry, Facts, Warning};
use crate::report::read::{read_logs, ReadStats, Record};

#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Access-log files to replay (JSON lines; .gz and `-` for stdin work).
    #[arg(long = "log", value_name = "FILE", num_args = 1.., required = true)]
    pub logs: Vec<PathBuf>,
    /// The candidate policy directory.
    #[arg(long, value_name = "DIR")]
    pub policy: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: SimFormat,
    /// Person counts below this are shown as "fewer than K".
    #[arg(long, default_value_t = 5)]
    pub k: usize,
    /// The pseudonym key the log was written with. With it, user names in
    /// the candidate policy are matched against the log's pseudonyms exactly;
    /// without it, the groups recorded in the log stand in for user-based
    /// membership.
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SimFormat {
    Text,
    Json,
}

/// How an outcome is named in simulate's output.
fn outcome_word(v: Verdict) -> &'static str {
    match v {
        Verdict::Refused => "refused",
        Verdict::WouldRefuse => "reported",
        Verdict::Passed => "allowed",
        Verdict::Warned => "warned",
        Verdict::WouldWarn => "reported-warn",
    }
}

/// The recorded outcome as a replay compares it: whether a person had
/// continued past a warning is not the policy's doing, so only an
/// unshowable warning (an HTTPS tunnel, which passed) counts as passed.
fn replay_verdict(rec: &Record<'_>) -> Option<Verdict> {
    let unshown = rec.warn.as_ref().and_then(Lenient::known) == Some(&WarnOutcome::Unshown);
    Some(Verdict::of_record(
        *rec.action.known()?,
        *rec.mode.known()?,
        unshown.then_some(WarnOutcome::Unshown),
    ))
}

/// Refusals made before any rule was consulted, for reasons a replay cannot
/// re-check: who the user was, and whether the request was well-formed.
fn not_replayable(reason: &Lenient<Reason>) -> bool {
    matches!(
        reason,
        Lenient::Known(
            Reason::NotAMember | Reason::AuthRequired | Reason::AuthFailed | Reason::BadRequest
        )
    )
}

#[derive(Debug, Default)]
struct Change {
    requests: u64,
    persons: HashSet<String>,
}

/// Key: group, platform, old outcome, new outcome, new rule.
type ChangeKey = (String, String, Verdict, Verdict, String);

/// The replay's result.
#[derive(Debug, Default)]
pub struct Simulation {
    pub read: ReadStats,
    pub replayed: u64,
    /// Records not replayed: identity refusals, malformed requests, and
    /// records whose outcome this version does not know.
    pub skipped: u64,
    pub changed: u64,
    changes: BTreeMap<ChangeKey, Change>,
}

/// Replays `args.logs` under the policy in `args.policy`.
pub fn simulate(args: &SimulateArgs) -> anyhow::Result<Simulation> {
    crate::report::read::refuse_squid_format(&args.logs).map_err(anyhow::Error::msg)?;
    let mut policy = load_dir(&args.policy)
        .map_err(|e| anyhow::anyhow!("the candidate policy has errors:\n{e}"))?;
    let exact = match &args.key {
        Some(path) => {
            let p = crate::pseudonym::Pseudonymizer::from_key_file(path)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            for g in &mut policy.groups {
                g.users = g.users.iter().map(|u| p.pseudonym(u)).collect();
            }
            for r in &mut policy.rules {
                r.users = r.users.iter().map(|u| p.pseudonym(u)).collect();
            }
            true
        }
        None => false,
    };
    let mut sim = Simulation::default();
    let mut read = ReadStats::default();
    read_logs(&args.logs, &mut read, |rec: &Record<'_>| {
        // Its requests are replayed one by one.
        if rec.is_inspected_tunnel() {
            sim.skipped += 1;
            return;
        }
        let Some(old) = replay_verdict(rec).filter(|_| !not_replayable(&rec.reason)) else {
            sim.skipped += 1;
            return;
        };
        let Ok(client) = rec.client.parse() else {
            sim.skipped += 1;
            return;
        };
        let Ok(host) = normalize_host(&rec.host) else {
            sim.skipped += 1;
            return;
        };
        let entry = match rec.kind.known() {
            Some(crate::event::Kind::Tunnel) => Entry::Connect,
            Some(crate::event::Kind::Request) => Entry::Request,
            None => {
                sim.skipped += 1;
                return;
            }
        };
        let facts = Facts {
            entry,
            client,
            user: rec.user.as_deref(),
            host: &host,
            port: rec.port,
            resolved: None,
            sni: rec.sni.as_deref(),
            listeners: &[],
            // What the proxy saw then: a logged request carries its activity.
            activity: rec.activity.as_ref().and_then(|a| a.known()).copied(),
            resolved_by_parent: false,
            original: None,
            acknowledged: None,
            hello: None,
            spent: None,
        };
        let mut groups = policy.groups_of(client, facts.user);
        if !exact {
            for name in &rec.groups {
                if let Some(i) = policy.groups.iter().position(|g| &*g.name == name.as_ref()) {
                    if !groups.contains(&(i as u16)) {
                        groups.push(i as u16);
                    }
                }
            }
            groups.sort_unstable();
        }
        let adm = admit_in_groups(&policy, &facts, &groups, rec.time);
        let unshown = adm.warning == Some(Warning::Unshown);
        let d: Decision = adm.decision;
        sim.replayed += 1;
        let new = Verdict::of_record(d.action, d.mode, unshown.then_some(WarnOutcome::Unshown));
        if old == new {
            return;
        }
        sim.changed += 1;
        let group = d
            .group
            .as_deref()
            .or(rec.group.as_deref())
            .unwrap_or("(no group)")
            .to_string();
        let platform = rec
            .platform
            .as_deref()
            .unwrap_or("(other sites)")
            .to_string();
        let key = (group, platform, old, new, d.rule.to_string());
        let c = sim.changes.entry(key).or_default();
        c.requests += 1;
        let person = match &rec.user {
            Some(u) => u.to_string(),
            None => format!("ip:{}", rec.client),
        };
        c.persons.insert(person);
    });
    sim.read = read;
    Ok(sim)
}

fn persons(n: usize, k: usize) -> String {
    if n < k {
        format!("fewer than {k} users")
    } else if n == 1 {
        "1 user".into()
    } else {
        format!("{n} users")
    }
}

fn verb(new: Verdict) -> &'static str {
    match new {
        Verdict::Refused => "would be refused",
        Verdict::WouldRefuse => "would pass but be reported as would-refuse",
        Verdict::Passed => "would be allowed",
        Verdict::Warned => "would be warned (until each person continues)",
        Verdict::WouldWarn => "would pass but be reported as would-warn",
    }
}

pub fn run(args: &SimulateArgs) -> anyhow::Result<ExitCode> {
    let sim = simulate(args)?;
    let mut out = std::io::stdout().lock();
    for f in sim.read.failed_files() {
        eprintln!(
            "socialgate simulate: {}",
            f.error.as_deref().unwrap_or("unreadable input")
        );
    }
    if sim.read.malformed > 0 {
        eprintln!(
            "socialgate simulate: {} malformed line(s) skipped, e.g.:",
            sim.read.malformed
        );
        for e in &sim.read.malformed_examples {
            eprintln!("  {e}");
        }
    }
    match args.format {
        SimFormat::Json => {
            let changes: Vec<serde_json::Value> = sim
                .changes
                .iter()
                .map(|((g, p, old, new, rule), c)| {
                    let n = c.persons.len();
                    serde_json::json!({
                        "group": g, "platform": p, "from": outcome_word(*old), "to": outcome_word(*new), "rule": rule,
                        "requests": c.requests,
                        "users": if n < args.k { serde_json::Value::from("suppressed") } else { n.into() },
                    })
                })
                .collect();
            let doc = serde_json::json!({
                "lines": sim.read.lines, "records": sim.read.records, "malformed": sim.read.malformed,
                "replayed": sim.replayed, "skipped": sim.skipped, "changed": sim.changed,
                "changes": changes,
            });
            writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
        }
        SimFormat::Text => {
            writeln!(
                out,
                "replayed {} of {} records under {} ({} skipped: identity refusals, malformed requests, unknown outcomes)",
                sim.replayed,
                sim.read.records,
                args.policy.display(),
                sim.skipped
            )?;
            if sim.changes.is_empty() {
                writeln!(out, "no request would be treated differently")?;
            } else {
                writeln!(
                    out,
                    "{} requests would be treated differently:",
                    sim.changed
                )?;
                let mut rows: Vec<_> = sim.changes.iter().collect();
                rows.sort_by_key(|r| std::cmp::Reverse(r.1.requests));
                for ((g, p, old, new, rule), c) in rows {
                    writeln!(
                        out,
                        "  {} requests by {} of {g} to {p} {} by rule `{rule}` (now {old})",
                        c.requests,
                        persons(c.persons.len(), args.k),
                        verb(*new),
                        old = outcome_word(*old),
                    )?;
                }
            }
        }
    }
    Ok(
        if sim.read.records == 0 && sim.read.lines == 0 && sim.read.failed_files().count() > 0 {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        },
    )
}
