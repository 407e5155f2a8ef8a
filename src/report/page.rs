//! The HTML report: one self-contained page (inline CSS, inline SVG, no
//! JavaScript, no external URL of any kind), so it can be mailed or archived
//! and opened offline.
//!
//! The markup is `templates/report/page.html`, compiled and checked by
//! askama, which escapes every value by default; this module only builds the
//! values it shows. A suppressed cell is shown as "<k", never as a number.
//! It must not compute metrics or decide suppression.

use askama::Template;

use super::model::*;
use super::svg::{bar_chart, heat_map, line_chart, Bar};
use super::tables::{frac, human_bytes, num, opt_frac, tables, text, thousands, Table, Val};

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
}

struct MaturityLine {
    total: bool,
    group: Shown,
    label: String,
    badge: &'static str,
    numbers: Vec<Shown>,
    explanation: String,
}

struct StrategyPage {
    cards: Vec<Card>,
    adoption_chart: String,
    minutes_chart: String,
    trend_chart: String,
    heat_chart: String,
    maturity: Vec<MaturityLine>,
    tables: Vec<HtmlTable>,
}

struct SecurityPage {
    cards: Vec<Card>,
    refused_chart: String,
    bytes_chart: String,
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
    revealed: bool,
    failed: Vec<(&'a str, &'a str)>,
    malformed: u64,
    malformed_examples: &'a [String],
    unknown_values: u64,
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
    let strategy = match &r.strategy {
        Some(s) => Some(strategy_page(
            s,
            tz,
            r.settings.k,
            find(&["adoption", "warnings", "groups"]),
        )?),
        None => None,
    };
    let security = match &r.security {
        Some(s) => Some(security_page(
            s,
            find(&[
                "refused",
                "would_refuse",
                "refused_by_reason",
                "unauthenticated",
                "bytes_to_platforms",
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
        strategy,
        security,
        input: find(&["input"]).pop(),
        schema: r.schema,
        audience: &r.settings.audience,
    }
    .render()
}

fn strategy_page(
    s: &Strategy,
    tz: &str,
    k: u64,
    tables: Vec<HtmlTable>,
) -> askama::Result<StrategyPage> {
    let all = s
        .platforms
        .iter()
        .find(|a| a.group == ALL && a.platform == ALL);
    let members = s.groups.iter().find(|g| g.group == ALL);
    let shown = |v: Option<Val>| v.map_or(Shown::Text("–".to_owned()), |v| Shown::of(&v));
    let cards = vec![
        Card {
            label: "active members",
            value: shown(members.map(|g| g.active_members.into())),
        },
        Card {
            label: "active on any platform",
            value: shown(all.map(|a| frac(a.adoption))),
        },
        Card {
            label: "minutes per active user",
            value: shown(all.map(|a| num(a.minutes_per_active_user))),
        },
        Card {
            label: "write share (where known)",
            value: shown(all.map(|a| opt_frac(a.write_share))),
        },
        Card {
            label: "refused requests",
            value: shown(all.map(|a| a.refused_requests.into())),
        },
    ];
    let per_platform: Vec<&AdoptionRow> = s
        .platforms
        .iter()
        .filter(|a| a.group == ALL && a.platform != ALL)
        .collect();
    let mut adoption: Vec<Bar> = per_platform
        .iter()
        .map(|a| {
            let v = a.adoption.value();
            Bar {
                label: a.platform.clone(),
                value: v.map(|x| x * 100.0),
                shown: v.map_or(String::new(), |x| format!("{:.0}%", x * 100.0)),
            }
        })
        .collect();
    sort_bars(&mut adoption);
    let mut minutes: Vec<Bar> = per_platform
        .iter()
        .map(|a| {
            let v = a.minutes_per_active_user.value();
            Bar {
                label: a.platform.clone(),
                value: v,
                shown: v.map_or(String::new(), |x| format!("{x:.1} min")),
            }
        })
        .collect();
    sort_bars(&mut minutes);

    // Daily trend: active users per platform (all groups), top 6.
    let mut days: Vec<String> = s.daily.iter().map(|d| d.day.clone()).collect();
    days.sort();
    days.dedup();
    let mut plats: Vec<(&str, u64)> = per_platform
        .iter()
        .map(|a| (a.platform.as_str(), a.active_users.value().unwrap_or(0)))
        .filter(|p| p.1 > 0)
        .collect();
    plats.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let series: Vec<(String, Vec<Option<f64>>)> = plats
        .iter()
        .take(6)
        .map(|(p, _)| {
            let vals = days
                .iter()
                .map(|d| {
                    s.daily
                        .iter()
                        .find(|r| r.group == ALL && r.platform == *p && &r.day == d)
                        .map_or(Some(0.0), |r| r.active_users.value().map(|v| v as f64))
                })
                .collect();
            (p.to_string(), vals)
        })
        .collect();
    let maturity = s
        .maturity
        .iter()
        .map(|m| MaturityLine {
            total: m.group == ALL,
            group: Shown::of(&text(&m.group)),
            label: m.label.clone(),
            badge: badge(&m.label),
            numbers: [
                num(m.score),
                m.platforms_adopted.into(),
                frac(m.any_adoption),
                opt_frac(m.write_share),
                frac(m.blocked_share),
                num(m.minutes_per_member),
            ]
            .iter()
            .map(Shown::of)
            .collect(),
            explanation: m.explanation.clone(),
        })
        .collect();
    Ok(StrategyPage {
        cards,
        adoption_chart: bar_chart("Adoption by platform (all groups)", &adoption)?,
        minutes_chart: bar_chart("Estimated active minutes per active user", &minutes)?,
        trend_chart: line_chart(
            "Daily active users by platform (all groups; gaps are suppressed days)",
            &days,
            &series,
        )?,
        heat_chart: heat_map(&s.hour_of_week, tz, k)?,
        maturity,
        tables,
    })
}

fn security_page(s: &Security, tables: Vec<HtmlTable>) -> askama::Result<SecurityPage> {
    let t = &s.totals;
    let cards = [
        ("requests", Val::Int(t.requests)),
        ("persons", t.persons.into()),
        ("refused", t.refused.into()),
        ("would refuse (report mode)", t.would_refuse.into()),
        ("unauthenticated", t.unauthenticated.into()),
    ]
    .into_iter()
    .map(|(label, v)| Card {
        label,
        value: Shown::of(&v),
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
                shown: v.map_or(String::new(), thousands),
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
        tables,
    })
}

/// Largest first; suppressed bars last.
fn sort_bars(bars: &mut [Bar]) {
    bars.sort_by(|a, b| b.value.unwrap_or(-1.0).total_cmp(&a.value.unwrap_or(-1.0)));
}

/// The CSS class of a maturity label's badge.
fn badge(label: &str) -> &'static str {
    match label {
        "broad and productive" | "broad, mix unknown" => "b-broad",
        "focused contributors" | "engaged, mix unknown" => "b-focused",
        "passive consumers" => "b-passive",
        "held back by policy" => "b-held",
        _ => "b-light",
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
