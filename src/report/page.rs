//! The HTML report: one self-contained page (inline CSS, inline SVG, no
//! JavaScript, no external URL of any kind), so it can be mailed or archived
//! and opened offline.
//!
//! It reads in two minutes: a one-screen summary first (what changed, who
//! is ahead, what is blocked, what people ask for), then a group × platform
//! matrix, the maturity of each group, one small chart per group, the
//! trends, and every table collapsed below (`<details>`, which needs no
//! script). The markup is `templates/report/page.html`, compiled and
//! checked by askama, which escapes every value by default; this module
//! only builds the values it shows, from the report's shown numbers. A
//! suppressed cell is shown as "—" (with a legend), never as a number or a
//! bound. It must not compute metrics or decide suppression.

use askama::Template;

use super::model::*;
use super::svg::{bar_chart, group_bars, heat_map, line_chart, Bar, GroupBar, Series};
use super::tables::{human_bytes, tables, text, thousands, Table, Val};

/// A value as the page shows it.
enum Shown {
    /// The `*` of "all groups" / "any platform".
    All,
    Text(String),
    /// A formatted number (right-aligned).
    Num(String),
    Suppressed,
    Empty,
}

impl Shown {
    fn of(v: &Val) -> Shown {
        match v {
            Val::Text(s) if s == ALL => Shown::All,
            Val::Text(s) => Shown::Text(s.clone()),
            Val::Int(n) => Shown::Num(thousands(*n)),
            Val::Bytes(n) => Shown::Num(human_bytes(*n)),
            Val::Frac(f) => Shown::Num(format!("{:.0}%", f * 100.0)),
            Val::Num(f) => Shown::Num(format!("{f:.1}")),
            Val::Suppressed => Shown::Suppressed,
            Val::Empty => Shown::Empty,
        }
    }

    /// Whether its table cell is right-aligned.
    fn numeric(&self) -> bool {
        matches!(self, Shown::Num(_) | Shown::Suppressed)
    }
}

struct HtmlTable {
    name: &'static str,
    title: &'static str,
    columns: Vec<String>,
    rows: Vec<HtmlRow>,
}

struct HtmlRow {
    /// A `*` (all groups) row, shown in bold.
    total: bool,
    cells: Vec<Shown>,
}

impl HtmlTable {
    fn of(t: &Table) -> HtmlTable {
        HtmlTable {
            name: t.name,
            title: t.title,
            columns: t.columns.iter().map(|c| c.replace('_', " ")).collect(),
            rows: t
                .rows
                .iter()
                .map(|row| HtmlRow {
                    total: matches!(row.first(), Some(Val::Text(s)) if s == ALL),
                    cells: row.iter().map(Shown::of).collect(),
                })
                .collect(),
        }
    }
}

struct Card {
    label: &'static str,
    value: Shown,
    /// A short line under the value.
    note: String,
}

/// One line of a summary list: a bold head and the rest.
struct Line {
    head: String,
    text: String,
    /// CSS class: `up`, `down` or empty.
    tone: &'static str,
}

struct Summary {
    cards: Vec<Card>,
    changed: Vec<Line>,
    changed_note: String,
    ahead: Vec<Line>,
    blocked: Vec<Line>,
    asks: Vec<Line>,
    hidden: u64,
    numbers: u64,
}

struct MatrixCell {
    text: String,
    /// Inline background for the heat colour.
    style: String,
    title: String,
    suppressed: bool,
}

struct MatrixRow {
    total: bool,
    group: Shown,
    members: Shown,
    cells: Vec<MatrixCell>,
}

struct Matrix {
    platforms: Vec<String>,
    rows: Vec<MatrixRow>,
}

struct MaturityLine {
    total: bool,
    group: Shown,
    label: String,
    badge: &'static str,
    held: String,
    evidence: String,
    next_step: String,
}

struct StrategyPage {
    matrix: Matrix,
    maturity: Vec<MaturityLine>,
    multiples: Vec<String>,
    trend_chart: String,
    legend: Vec<(&'static str, String)>,
    trend_note: String,
    heat_chart: String,
    tables: Vec<HtmlTable>,
}

struct SecurityPage {
    cards: Vec<Card>,
    refused_chart: String,
    bytes_chart: String,
    by_rule: Option<HtmlTable>,
    tables: Vec<HtmlTable>,
}

#[derive(Template)]
#[template(path = "report/page.html")]
struct Page<'a> {
    k: u64,
    period: String,
    tz: &'a str,
    generated: String,
    records: String,
    inputs: usize,
    idle_minutes: u32,
    credit_minutes: u32,
    regular_days: u64,
    revealed: bool,
    failed: Vec<(&'a str, &'a str)>,
    malformed: u64,
    malformed_examples: &'a [String],
    unknown_values: u64,
    summary: Option<Summary>,
    strategy: Option<StrategyPage>,
    security: Option<SecurityPage>,
    input: Option<HtmlTable>,
    schema: &'a str,
    audience: &'a str,
}

/// The HTML report: one self-contained page.
pub(crate) fn html(r: &Report) -> askama::Result<String> {
    let tz = &r.period.time_zone;
    let period = format!(
        "{} – {}",
        fmt_time(r.period.from.or(r.period.first_record), tz),
        fmt_time(r.period.to.or(r.period.last_record), tz),
    );
    let all_tables = tables(r);
    let find = |names: &[&str]| -> Vec<HtmlTable> {
        names
            .iter()
            .filter_map(|n| all_tables.iter().find(|t| t.name == *n))
            .map(HtmlTable::of)
            .collect()
    };
    let summary = r
        .strategy
        .as_ref()
        .map(|s| summary(s, r.security.as_ref(), &r.period));
    let strategy = match &r.strategy {
        Some(s) => Some(strategy_page(
            s,
            &r.period,
            r.settings.k,
            find(&[
                "adoption",
                "access_requests",
                "contribution",
                "warnings",
                "groups",
                "maturity",
            ]),
        )?),
        None => None,
    };
    let security = match &r.security {
        Some(s) => Some(security_page(
            s,
            find(&["refused_by_rule"]).pop(),
            find(&[
                "refused",
                "would_refuse",
                "top_refused_platforms",
                "refused_by_reason",
                "unauthenticated",
                "bytes_to_platforms",
                "activity_unseen",
                "security_access_requests",
                "top_refused_persons",
            ]),
        )?),
        None => None,
    };
    Page {
        k: r.settings.k,
        period,
        tz,
        generated: fmt_time(Some(r.generated_at), tz),
        records: thousands(r.input.in_period),
        inputs: r.input.files.len(),
        idle_minutes: r.settings.idle_minutes,
        credit_minutes: r.settings.credit_minutes,
        regular_days: r.settings.regular_days,
        revealed: r.settings.revealed,
        failed: r
            .input
            .files
            .iter()
            .filter_map(|f| f.error.as_deref().map(|e| (f.path.as_str(), e)))
            .collect(),
        malformed: r.input.malformed,
        malformed_examples: &r.input.malformed_examples,
        unknown_values: r.input.unknown_values,
        summary,
        strategy,
        security,
        input: find(&["input"]).pop(),
        schema: r.schema,
        audience: &r.settings.audience,
    }
    .render()
}

fn pct(v: f64) -> String {
    format!("{:.0}%", v * 100.0)
}

fn row<'a>(s: &'a Strategy, group: &str, platform: &str) -> Option<&'a AdoptionRow> {
    s.platforms
        .iter()
        .find(|a| a.group == group && a.platform == platform)
}

/// The one-screen summary, from shown numbers only.
fn summary(s: &Strategy, sec: Option<&Security>, period: &Period) -> Summary {
    let all = row(s, ALL, ALL);
    let members = s.groups.iter().find(|g| g.group == ALL);
    let m = members.and_then(|g| g.active_members.value());
    let of_members = |n: Option<u64>| match (n, m) {
        (Some(n), Some(m)) if m > 0 => format!("{} of {} members", thousands(n), thousands(m)),
        _ => String::new(),
    };
    let share = |n: Option<u64>| -> Shown {
        match (n, m) {
            (Some(n), Some(m)) if m > 0 => Shown::Num(pct(n as f64 / m as f64)),
            _ => Shown::Suppressed,
        }
    };
    let active = all.and_then(|a| a.active_users.value());
    let regular = members.and_then(|g| g.regular_users.value());
    let contrib = s
        .contribution
        .iter()
        .find(|c| c.group == ALL && c.platform == ALL);
    let contributors = contrib.and_then(|c| c.contributors.value());
    let blocked = all.and_then(|a| a.blocked_persons.value());
    let cards = vec![
        Card {
            label: "members",
            value: m.map_or(Shown::Suppressed, |m| Shown::Num(thousands(m))),
            note: "seen in the policy's groups".to_owned(),
        },
        Card {
            label: "active on social platforms",
            value: share(active),
            note: of_members(active),
        },
        Card {
            label: "regular users",
            value: share(regular),
            note: of_members(regular),
        },
        Card {
            label: "contributors",
            value: match contrib {
                None => Shown::Empty,
                Some(_) => share(contributors),
            },
            note: if contrib.is_none() {
                "no inspected traffic: contribution not visible".to_owned()
            } else {
                of_members(contributors)
            },
        },
        Card {
            label: "blocked demand",
            value: blocked.map_or(Shown::Suppressed, |b| Shown::Num(thousands(b))),
            note: all
                .and_then(|a| a.blocked_attempts.value())
                .map(|n| {
                    format!(
                        "people refused on a platform's own site ({} attempts)",
                        thousands(n)
                    )
                })
                .unwrap_or_default(),
        },
    ];

    // What changed: mean daily active users on working days (Monday to
    // Friday, complete days, values shown), the last working week against
    // the one before (halves of the period when it is shorter).
    let partial: Vec<&str> = period.partial_days.iter().map(|p| p.day.as_str()).collect();
    let working = |d: &str| {
        d.parse::<jiff::civil::Date>()
            .is_ok_and(|d| d.weekday().to_monday_zero_offset() < 5)
    };
    let mut days: Vec<&str> = s
        .daily
        .iter()
        .filter(|d| d.group == ALL)
        .map(|d| d.day.as_str())
        .filter(|d| !partial.contains(d) && working(d))
        .collect();
    days.sort_unstable();
    days.dedup();
    let half = if days.len() >= 10 { 5 } else { days.len() / 2 };
    let (before, after) = (
        &days[days.len() - 2 * half..days.len() - half],
        &days[days.len() - half..],
    );
    let changed_note = if half == 5 {
        "mean daily active users on working days: the last working week against the one before"
            .to_owned()
    } else {
        format!(
            "mean daily active users on working days: the last {half} against the {half} before"
        )
    };
    // The mean of the shown values of a window, when at least half are shown.
    let mean = |p: &str, window: &[&str]| -> Option<f64> {
        let shown: Vec<u64> = window
            .iter()
            .filter_map(|d| {
                // A missing row is none or too few to show: not counted.
                s.daily
                    .iter()
                    .find(|r| r.group == ALL && r.platform == p && r.day == *d)
                    .and_then(|r| r.active_users.value())
            })
            .collect();
        (!window.is_empty() && shown.len() * 2 >= window.len())
            .then(|| shown.iter().sum::<u64>() as f64 / shown.len() as f64)
    };
    let mut changes: Vec<(f64, String, f64, f64)> = s
        .platforms
        .iter()
        .filter(|a| a.group == ALL)
        .filter_map(|a| {
            let (b, x) = (mean(&a.platform, before)?, mean(&a.platform, after)?);
            ((x - b).abs() >= 0.05).then(|| ((x - b).abs() / b.max(1.0), a.platform.clone(), b, x))
        })
        .collect();
    changes.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let changed = changes
        .into_iter()
        .take(4)
        .map(|(_, p, b, x)| Line {
            head: if p == ALL {
                "any platform".to_owned()
            } else {
                p
            },
            text: format!(
                "{} {b:.1} → {x:.1} ({:+.0}%)",
                if x > b { "▲" } else { "▼" },
                (x - b) / b.max(1.0) * 100.0
            ),
            tone: if x > b { "up" } else { "down" },
        })
        .collect();

    // Who is ahead: the groups at the highest stages.
    let mut ranked: Vec<&MaturityRow> = s
        .maturity
        .iter()
        .filter(|m| m.group != ALL && m.stage.is_some())
        .collect();
    let key = |m: &MaturityRow| {
        (
            m.stage,
            m.contributor_share.value().flatten().unwrap_or(-1.0),
            m.any_adoption.value().unwrap_or(-1.0),
        )
    };
    ranked.sort_by(|a, b| {
        let (ka, kb) = (key(a), key(b));
        kb.0.cmp(&ka.0)
            .then(kb.1.total_cmp(&ka.1))
            .then(kb.2.total_cmp(&ka.2))
            .then(a.group.cmp(&b.group))
    });
    let ahead = ranked
        .iter()
        .take(4)
        .map(|m| {
            let mut facts = vec![m.label.clone()];
            if let Some(a) = m.any_adoption.value() {
                facts.push(format!("{} active", pct(a)));
            }
            match m.contributor_share {
                Cell::Value(Some(c)) => facts.push(format!("{} contribute", pct(c))),
                Cell::Value(None) => facts.push("contribution not visible".to_owned()),
                Cell::Suppressed => {}
            }
            if !m.platforms_adopted.is_empty() {
                facts.push(format!("{} platform(s)", m.platforms_adopted.len()));
            }
            Line {
                head: m.group.clone(),
                text: facts.join(" · "),
                tone: "",
            }
        })
        .collect();

    // What is blocked: platforms by people refused on their own site.
    let mut plats: Vec<&AdoptionRow> = s
        .platforms
        .iter()
        .filter(|a| a.group == ALL && a.platform != ALL)
        .filter(|a| a.blocked_persons.value().is_some_and(|n| n > 0))
        .collect();
    plats.sort_by(|a, b| {
        b.blocked_persons
            .value()
            .cmp(&a.blocked_persons.value())
            .then(a.platform.cmp(&b.platform))
    });
    let rules_for = |p: &str| -> String {
        let Some(sec) = sec else { return String::new() };
        let names: Vec<&str> = sec
            .refused_by_rule
            .iter()
            .filter(|r| r.outcome == "refused" && r.platforms.iter().any(|x| x == p))
            .map(|r| r.rule.as_str())
            .take(3)
            .collect();
        if names.is_empty() {
            String::new()
        } else {
            format!(" (rule {})", names.join(", "))
        }
    };
    let blocked_lines = plats
        .iter()
        .take(4)
        .map(|a| Line {
            head: a.platform.clone(),
            text: format!(
                "{} people refused, {} attempts{}",
                a.blocked_persons.value().unwrap_or(0),
                a.blocked_attempts
                    .value()
                    .map_or("hidden".to_owned(), thousands),
                rules_for(&a.platform)
            ),
            tone: "",
        })
        .collect();

    // What people ask for: the groups where the largest share of members
    // tried a refused platform, then what report-mode rules would refuse.
    let group_members = |g: &str| {
        s.groups
            .iter()
            .find(|x| x.group == g)
            .and_then(|x| x.active_members.value())
    };
    let mut asks: Vec<(f64, Line)> = s
        .platforms
        .iter()
        .filter(|a| a.group != ALL && a.platform != ALL)
        .filter_map(|a| {
            let n = a.blocked_persons.value().filter(|&n| n > 0)?;
            let m = group_members(&a.group).filter(|&m| m > 0)?;
            Some((
                n as f64 / m as f64,
                Line {
                    head: a.group.clone(),
                    text: format!("{n} of {m} members tried {}", a.platform),
                    tone: "",
                },
            ))
        })
        .collect();
    asks.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.head.cmp(&b.1.head)));
    let mut asks: Vec<Line> = asks.into_iter().take(3).map(|(_, l)| l).collect();
    if let Some(w) = s
        .platforms
        .iter()
        .filter(|a| a.group == ALL && a.platform != ALL)
        .filter(|a| a.would_block_persons.value().is_some_and(|n| n > 0))
        .max_by_key(|a| a.would_block_persons.value())
    {
        asks.push(Line {
            head: w.platform.clone(),
            text: format!(
                "a rule in report mode would refuse {} people",
                w.would_block_persons.value().unwrap_or(0)
            ),
            tone: "",
        });
    }
    // The platform most people asked access to (shown numbers only).
    if let Some(r) = s
        .access_requests
        .iter()
        .filter(|r| r.group == ALL && r.platform != ALL)
        .filter(|r| r.persons.value().is_some_and(|n| n > 0))
        .max_by(|a, b| {
            a.persons
                .value()
                .cmp(&b.persons.value())
                .then(b.platform.cmp(&a.platform))
        })
    {
        asks.push(Line {
            head: r.platform.clone(),
            text: format!(
                "{} people asked for access ({} requests)",
                r.persons.value().unwrap_or(0),
                r.requests.value().map_or("hidden".to_owned(), thousands)
            ),
            tone: "",
        });
    }
    // The warning most people continued past (shown numbers only).
    if let Some((w, warned, continued)) = s
        .warnings
        .iter()
        .filter(|w| w.group == ALL && w.platform != ALL)
        .filter_map(|w| {
            let (n, c) = (w.warned_persons.value()?, w.continued_persons.value()?);
            (n > 0 && c > 0).then_some((w, n, c))
        })
        .max_by(|a, b| {
            let rate = |x: &(&WarningRow, u64, u64)| x.2 as f64 / x.1 as f64;
            rate(a)
                .total_cmp(&rate(b))
                .then(b.0.platform.cmp(&a.0.platform))
        })
    {
        asks.push(Line {
            head: w.platform.clone(),
            text: format!(
                "{continued} of {warned} warned people went on past the warning ({})",
                pct(continued as f64 / warned as f64)
            ),
            tone: "",
        });
    }
    Summary {
        cards,
        changed,
        changed_note,
        ahead,
        blocked: blocked_lines,
        asks,
        hidden: s.suppressed_cells,
        numbers: s.numbers,
    }
}

/// Platforms in the order of their adoption across all groups.
fn platform_order(s: &Strategy) -> Vec<String> {
    let mut p: Vec<(&str, f64)> = s
        .platforms
        .iter()
        .filter(|a| a.group == ALL && a.platform != ALL)
        .filter(|a| a.active_users.value() != Some(0))
        .map(|a| (a.platform.as_str(), a.adoption.value().unwrap_or(-1.0)))
        .collect();
    p.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
    p.into_iter().map(|(p, _)| p.to_owned()).collect()
}

fn matrix(s: &Strategy) -> Matrix {
    let mut platforms = vec![ALL.to_owned()];
    platforms.extend(platform_order(s));
    let rows = s
        .groups
        .iter()
        .map(|g| MatrixRow {
            total: g.group == ALL,
            group: Shown::of(&text(&g.group)),
            members: Shown::of(&g.active_members.into()),
            cells: platforms
                .iter()
                .map(|p| match row(s, &g.group, p) {
                    None => MatrixCell {
                        text: String::new(),
                        style: String::new(),
                        title: "nobody, or too few to show".to_owned(),
                        suppressed: false,
                    },
                    Some(a) => match (a.adoption.value(), a.active_users.value()) {
                        (Some(v), Some(n)) => MatrixCell {
                            text: if n == 0 { String::new() } else { pct(v) },
                            style: if n == 0 {
                                String::new()
                            } else {
                                format!(
                                    "background:rgba(37,99,235,{:.2})",
                                    0.08 + 0.8 * v.clamp(0.0, 1.0)
                                )
                            },
                            title: format!("{n} active users"),
                            suppressed: false,
                        },
                        _ => MatrixCell {
                            text: "—".to_owned(),
                            style: String::new(),
                            title: "hidden to protect a small number of persons".to_owned(),
                            suppressed: true,
                        },
                    },
                })
                .collect(),
        })
        .collect();
    platforms[0] = "any".to_owned();
    Matrix { platforms, rows }
}

fn strategy_page(
    s: &Strategy,
    period: &Period,
    k: u64,
    tables: Vec<HtmlTable>,
) -> askama::Result<StrategyPage> {
    let tz = &period.time_zone;
    let maturity = s
        .maturity
        .iter()
        .map(|m| MaturityLine {
            total: m.group == ALL,
            group: Shown::of(&text(&m.group)),
            label: match m.stage {
                Some(st) => format!("{st} · {}", m.label),
                None => "—".to_owned(),
            },
            badge: badge(m.stage),
            held: m.held_back_by.clone(),
            evidence: m.evidence.clone(),
            next_step: m.next_step.clone(),
        })
        .collect();

    // One small chart per group: adoption and contributors per platform.
    let order = platform_order(s);
    let mut multiples = Vec::new();
    for g in s.groups.iter().filter(|g| g.group != ALL) {
        let members = g.active_members.value();
        let bars: Vec<GroupBar> = order
            .iter()
            .filter_map(|p| {
                let a = row(s, &g.group, p)?;
                if a.active_users.value() == Some(0) {
                    return None;
                }
                let contributors = s
                    .contribution
                    .iter()
                    .find(|c| c.group == g.group && &c.platform == p)
                    .and_then(|c| c.contributors.value());
                Some(GroupBar {
                    label: p.clone(),
                    adoption: a.adoption.value(),
                    contributors: match (contributors, members) {
                        (Some(c), Some(m)) if m > 0 => Some(c as f64 / m as f64),
                        _ => None,
                    },
                })
            })
            .take(6)
            .collect();
        let caption = match members {
            Some(m) => format!("{} · {m} members", g.group),
            None => format!("{} · members hidden", g.group),
        };
        multiples.push(group_bars(&caption, &bars)?);
    }

    // Daily trend: active users per platform (all groups), top 6.
    let partial: Vec<&str> = period.partial_days.iter().map(|p| p.day.as_str()).collect();
    let mut days: Vec<String> = s.daily.iter().map(|d| d.day.clone()).collect();
    days.sort();
    days.dedup();
    let is_partial: Vec<bool> = days.iter().map(|d| partial.contains(&d.as_str())).collect();
    let series: Vec<Series> = order
        .iter()
        .take(6)
        .map(|p| Series {
            name: p.clone(),
            values: days
                .iter()
                .map(|d| {
                    s.daily
                        .iter()
                        .find(|r| r.group == ALL && &r.platform == p && &r.day == d)
                        .and_then(|r| r.active_users.value().map(|v| v as f64))
                })
                .collect(),
        })
        .collect();
    let (trend_chart, legend) = line_chart(
        "Daily active users by platform (all groups)",
        &days,
        &is_partial,
        &series,
    )?;
    let mut notes = Vec::new();
    for p in &period.partial_days {
        notes.push(format!(
            "* {} is a partial day (data {}–{}), drawn hollow and dashed",
            p.day, p.from, p.until
        ));
    }
    if order.len() > 6 {
        notes.push(format!("not drawn: {}", order[6..].join(", ")));
    }
    notes.push("gaps: nobody, or too few to show".to_owned());
    Ok(StrategyPage {
        matrix: matrix(s),
        maturity,
        multiples,
        trend_chart,
        legend,
        trend_note: notes.join("; "),
        heat_chart: heat_map(&s.hour_of_week, tz, k)?,
        tables,
    })
}

fn security_page(
    s: &Security,
    by_rule: Option<HtmlTable>,
    tables: Vec<HtmlTable>,
) -> askama::Result<SecurityPage> {
    let t = &s.totals;
    let cards = [
        (
            "requests (all traffic)",
            Val::Int(t.requests),
            String::new(),
        ),
        ("persons", t.persons.into(), String::new()),
        (
            "refused requests",
            t.refused.into(),
            match (t.refused_primary.value(), t.refused_primary_members.value()) {
                (Some(p), Some(m)) if p != m => format!(
                    "{} on a platform's own site, {} of them by members of the policy's groups (blocked demand)",
                    thousands(p),
                    thousands(m)
                ),
                (Some(p), _) => format!("{} on a platform's own site", thousands(p)),
                _ => String::new(),
            },
        ),
        (
            "would refuse (report mode)",
            t.would_refuse.into(),
            String::new(),
        ),
        ("unauthenticated", t.unauthenticated.into(), String::new()),
    ]
    .into_iter()
    .map(|(label, v, note)| Card {
        label,
        value: Shown::of(&v),
        note,
    })
    .collect();
    let refused: Vec<Bar> = s
        .top_refused_platforms
        .iter()
        .map(|p| {
            let v = p.requests.value();
            Bar {
                label: p.platform.clone(),
                value: v.map(|x| x as f64),
                shown: match (v, p.primary_requests.value()) {
                    (Some(v), Some(pr)) => format!("{} ({} primary)", thousands(v), thousands(pr)),
                    (Some(v), None) => thousands(v),
                    _ => String::new(),
                },
            }
        })
        .collect();
    let mut up: Vec<Bar> = s
        .bytes_to_platforms
        .iter()
        .filter(|b| b.group == ALL && b.platform != ALL)
        .map(|b| {
            let v = b.bytes_up.value();
            Bar {
                label: b.platform.clone(),
                value: v.map(|x| x as f64),
                shown: v.map_or(String::new(), human_bytes),
            }
        })
        .collect();
    sort_bars(&mut up);
    up.truncate(10);
    Ok(SecurityPage {
        cards,
        refused_chart: bar_chart("Top refused platforms (requests)", &refused)?,
        bytes_chart: bar_chart("Bytes sent to social platforms (all groups)", &up)?,
        by_rule,
        tables,
    })
}

/// Largest first; suppressed bars last.
fn sort_bars(bars: &mut [Bar]) {
    bars.sort_by(|a, b| b.value.unwrap_or(-1.0).total_cmp(&a.value.unwrap_or(-1.0)));
}

/// The CSS class of a maturity stage's badge.
fn badge(stage: Option<u8>) -> &'static str {
    match stage {
        Some(5) => "b-5",
        Some(4) => "b-4",
        Some(3) => "b-3",
        Some(2) => "b-2",
        _ => "b-1",
    }
}

fn fmt_time(t: Option<jiff::Timestamp>, tz: &str) -> String {
    match t {
        None => "–".to_owned(),
        Some(t) => match jiff::tz::TimeZone::get(tz) {
            Ok(z) => t
                .to_zoned_datetime(z)
                .strftime("%Y-%m-%d %H:%M")
                .to_string(),
            Err(_) => t.to_string(),
        },
    }
}
