//! `socialgate simulate`: replay recorded traffic under a candidate policy.
//!
//! Each access-log record is decided again with the proxy's own admission
//! function (`policy::admit`), using the recorded client address, user,
//! destination, kind (tunnel or request), TLS server name and time. The
//! log holds no resolved addresses, so the destination stage checks IP
//! literals only. Records whose outcome changes are
//! grouped by group, platform, old and new outcome and deciding rule, and
//! printed as sentences an admin can act on, with the activities behind
//! them. A logged request carries its activity, so a candidate `read_only`
//! or `activities:` rule is decided as the proxy would decide it: the write
//! actions it would refuse are summed per group, platform and rule, and the
//! tunnels it could not judge (not inspected) are counted with the fix.
//! Like `report`, it reads the log
//! as a stream and never sees the proxy. Users in the log are pseudonyms:
//! with `--key` the candidate policy's user names are pseudonymised the same
//! way and match exactly; without it, the groups recorded in the log stand
//! in for user-based membership. Groups by network replay exactly.

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::outcome::{Activity, Lenient, Reason, Verdict, WarnOutcome};
use crate::policy::{admit_in_groups, load_dir, normalize_host, Decision, Entry, Facts, Warning};
use crate::report::read::{read_logs_and_requests, ReadStats, Record};

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
    /// Requests per activity (index into [`Activity::ALL`]).
    activities: [u64; Activity::ALL.len()],
}

impl Change {
    fn add(&mut self, person: &str, activity: Option<Activity>) {
        self.requests += 1;
        if !self.persons.contains(person) {
            self.persons.insert(person.to_owned());
        }
        if let Some(a) = activity {
            self.activities[a as usize] += 1;
        }
    }

    /// "2 posts, 1 comment": the activities, most frequent first.
    fn activities_text(&self) -> String {
        let mut v: Vec<(u64, Activity)> = Activity::ALL
            .into_iter()
            .map(|a| (self.activities[a as usize], a))
            .filter(|&(n, _)| n > 0)
            .collect();
        v.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        v.iter()
            .map(|&(n, a)| format!("{n} {}", activity_noun(a, n)))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn activities_json(&self) -> serde_json::Value {
        Activity::ALL
            .into_iter()
            .filter(|&a| self.activities[a as usize] > 0)
            .map(|a| (a.as_str().to_owned(), self.activities[a as usize].into()))
            .collect::<serde_json::Map<_, _>>()
            .into()
    }
}

/// An activity as a noun for `n` requests.
fn activity_noun(a: Activity, n: u64) -> &'static str {
    let one = n == 1;
    match a {
        Activity::Login => {
            if one {
                "login"
            } else {
                "logins"
            }
        }
        Activity::Read => {
            if one {
                "read"
            } else {
                "reads"
            }
        }
        Activity::Post => {
            if one {
                "post"
            } else {
                "posts"
            }
        }
        Activity::Comment => {
            if one {
                "comment"
            } else {
                "comments"
            }
        }
        Activity::React => {
            if one {
                "reaction"
            } else {
                "reactions"
            }
        }
        Activity::Share => {
            if one {
                "share"
            } else {
                "shares"
            }
        }
        Activity::Upload => {
            if one {
                "upload"
            } else {
                "uploads"
            }
        }
        Activity::Message => {
            if one {
                "message"
            } else {
                "messages"
            }
        }
        Activity::Write => {
            if one {
                "generic write"
            } else {
                "generic writes"
            }
        }
        Activity::Unknown => {
            if one {
                "unknown request"
            } else {
                "unknown requests"
            }
        }
    }
}

/// A write action: what `read_only` refuses (and `unknown`, which it may).
fn is_write_action(a: Activity) -> bool {
    a.is_write() || a == Activity::Unknown
}

/// Key: group, platform, old outcome, new outcome, new rule.
type ChangeKey = (String, String, Verdict, Verdict, String);
/// Key: group, platform, rule.
type RuleKey = (String, String, String);

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
    /// Write actions that passed and the candidate refuses, by group,
    /// platform and rule.
    writes: BTreeMap<RuleKey, Change>,
    /// Tunnels a candidate rule about activities could not judge (not
    /// inspected): the site-level rules decided.
    unseen: BTreeMap<RuleKey, Change>,
    /// Access requests in the logs (`kind: access-request`).
    pub access_requests: u64,
    /// Those the candidate would grant (it allows the site for that
    /// person), by group, platform and the rule that refused then.
    granted: BTreeMap<RuleKey, Change>,
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
    let mut access_requests = 0u64;
    let mut granted: BTreeMap<RuleKey, Change> = BTreeMap::new();
    let grants = |rec: &Record<'_>| {
        access_requests += 1;
        let (Ok(client), Ok(host)) = (rec.client.parse(), normalize_host(&rec.host)) else {
            return;
        };
        let facts = Facts {
            user: rec.user.as_deref(),
            ..Facts::new(Entry::Request, client, &host, 80)
        };
        let groups = groups_for(&policy, rec, client, exact);
        let adm = admit_in_groups(&policy, &facts, &groups, rec.time);
        if Verdict::of(adm.decision.action, adm.decision.mode) != Verdict::Passed {
            return;
        }
        let person = match &rec.user {
            Some(u) => u.to_string(),
            None => format!("ip:{}", rec.client),
        };
        let key = (
            rec.group.as_deref().unwrap_or("(no group)").to_string(),
            rec.platform
                .as_deref()
                .unwrap_or("(other sites)")
                .to_string(),
            rec.rule.to_string(),
        );
        granted.entry(key).or_default().add(&person, None);
    };
    read_logs_and_requests(
        &args.logs,
        &mut read,
        |rec: &Record<'_>| {
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
                // Filtered out by the reader; never traffic.
                Some(crate::event::Kind::AccessRequest) | None => {
                    sim.skipped += 1;
                    return;
                }
            };
            let facts = Facts {
                user: rec.user.as_deref(),
                sni: rec.sni.as_deref(),
                // What the proxy saw then: a logged request carries its activity.
                activity: rec.activity.as_ref().and_then(|a| a.known()).copied(),
                ..Facts::new(entry, client, &host, rec.port)
            };
            let groups = groups_for(&policy, rec, client, exact);
            let adm = admit_in_groups(&policy, &facts, &groups, rec.time);
            let unshown = adm.warning == Some(Warning::Unshown);
            let d: Decision = adm.decision;
            sim.replayed += 1;
            let new = Verdict::of_record(d.action, d.mode, unshown.then_some(WarnOutcome::Unshown));
            let group = || {
                d.group
                    .as_deref()
                    .or(rec.group.as_deref())
                    .unwrap_or("(no group)")
                    .to_string()
            };
            let platform = || {
                rec.platform
                    .as_deref()
                    .unwrap_or("(other sites)")
                    .to_string()
            };
            let person = match &rec.user {
                Some(u) => u.to_string(),
                None => format!("ip:{}", rec.client),
            };
            if let Some(rule) = &d.activity_unseen {
                sim.unseen
                    .entry((group(), platform(), rule.to_string()))
                    .or_default()
                    .add(&person, None);
            }
            if old == new {
                return;
            }
            sim.changed += 1;
            // A write that went through then (an acknowledged warning included)
            // and that the candidate refuses.
            let passed = matches!(
                rec.verdict(),
                Some(Verdict::Passed | Verdict::WouldRefuse | Verdict::WouldWarn)
            );
            if new == Verdict::Refused && passed && facts.activity.is_some_and(is_write_action) {
                sim.writes
                    .entry((group(), platform(), d.rule.to_string()))
                    .or_default()
                    .add(&person, facts.activity);
            }
            let key = (group(), platform(), old, new, d.rule.to_string());
            sim.changes
                .entry(key)
                .or_default()
                .add(&person, facts.activity);
        },
        grants,
    );
    sim.read = read;
    sim.access_requests = access_requests;
    sim.granted = granted;
    Ok(sim)
}

/// The candidate's groups for a recorded person: from the address and the
/// (pseudonymised) user, and, without the key, the groups the record names.
fn groups_for(
    policy: &crate::policy::Policy,
    rec: &Record<'_>,
    client: std::net::IpAddr,
    exact: bool,
) -> Vec<u16> {
    let mut groups = policy.groups_of(client, rec.user.as_deref());
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
    groups
}

fn users_json(c: &Change, k: usize) -> serde_json::Value {
    let n = c.persons.len();
    if n < k {
        serde_json::Value::from("suppressed")
    } else {
        n.into()
    }
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
                    serde_json::json!({
                        "group": g, "platform": p, "from": outcome_word(*old), "to": outcome_word(*new), "rule": rule,
                        "requests": c.requests,
                        "users": users_json(c, args.k),
                        "activities": c.activities_json(),
                    })
                })
                .collect();
            let by_rule = |m: &BTreeMap<RuleKey, Change>, what: &str| -> Vec<serde_json::Value> {
                m.iter()
                    .map(|((g, p, rule), c)| {
                        serde_json::json!({
                            "group": g, "platform": p, "rule": rule,
                            what: c.requests,
                            "users": users_json(c, args.k),
                            "activities": c.activities_json(),
                        })
                    })
                    .collect()
            };
            let doc = serde_json::json!({
                "lines": sim.read.lines, "records": sim.read.records, "malformed": sim.read.malformed,
                "replayed": sim.replayed, "skipped": sim.skipped, "changed": sim.changed,
                "changes": changes,
                "refused_writes": by_rule(&sim.writes, "requests"),
                "activity_unseen": by_rule(&sim.unseen, "tunnels"),
                "access_requests": sim.access_requests,
                "would_grant": by_rule(&sim.granted, "requests"),
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
                    let acts = c.activities_text();
                    writeln!(
                        out,
                        "  {} requests by {} of {g} to {p} {} by rule `{rule}` (now {old}){}",
                        c.requests,
                        persons(c.persons.len(), args.k),
                        verb(*new),
                        if acts.is_empty() {
                            String::new()
                        } else {
                            format!(": {acts}")
                        },
                        old = outcome_word(*old),
                    )?;
                }
            }
            if !sim.writes.is_empty() {
                writeln!(
                    out,
                    "write actions the candidate would refuse (they passed):"
                )?;
                for ((g, p, rule), c) in &sim.writes {
                    writeln!(
                        out,
                        "  {g} on {p}: {} by {}, rule `{rule}` ({})",
                        c.requests,
                        persons(c.persons.len(), args.k),
                        c.activities_text()
                    )?;
                }
            }
            if !sim.unseen.is_empty() {
                writeln!(
                    out,
                    "tunnels that rules about activities could not judge (not inspected; the site-level rules decided):"
                )?;
                for ((g, p, rule), c) in &sim.unseen {
                    writeln!(
                        out,
                        "  {} tunnels by {} of {g} to {p}, rule `{rule}`: inspect {p} (`inspect: true`) to see what they do",
                        c.requests,
                        persons(c.persons.len(), args.k),
                    )?;
                }
            }
            if sim.access_requests > 0 {
                let n: u64 = sim.granted.values().map(|c| c.requests).sum();
                writeln!(
                    out,
                    "access requests: {}; the candidate would grant {n} of them:",
                    sim.access_requests
                )?;
                for ((g, p, rule), c) in &sim.granted {
                    writeln!(
                        out,
                        "  {} requests by {} of {g} for {p} (refused then by `{rule}`)",
                        c.requests,
                        persons(c.persons.len(), args.k),
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
