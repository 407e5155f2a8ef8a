//! Presents a computed [`Report`] as JSON, CSV tables or one HTML page.
//!
//! The HTML page is self-contained: inline CSS, inline SVG charts, no
//! JavaScript, no external URL of any kind, so it can be mailed or archived
//! and opened offline. Every suppressed cell is shown as "suppressed" (CSV,
//! JSON) or "<k" (HTML), never as a number.
//!
//! This module must not compute metrics or decide suppression; it only
//! formats what `aggregate` produced.

use std::fmt::Write as _;

use super::model::*;

/// JSON: the [`Report`] structure, pretty-printed.
pub fn json(report: &Report) -> String {
    // Serialising plain data with string keys cannot fail.
    let mut s =
        serde_json::to_string_pretty(report).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
    s.push('\n');
    s
}

/// A table value.
#[derive(Debug, Clone)]
pub enum Val {
    Text(String),
    Int(u64),
    /// A fraction 0–1 (CSV writes the fraction, HTML a percentage).
    Frac(f64),
    /// Minutes or a rate, shown with one decimal.
    Num(f64),
    Bytes(u64),
    Suppressed,
    Empty,
}

impl From<Cell<u64>> for Val {
    fn from(c: Cell<u64>) -> Self {
        c.value().map_or(Val::Suppressed, Val::Int)
    }
}

fn frac(c: Cell<f64>) -> Val {
    c.value().map_or(Val::Suppressed, Val::Frac)
}
fn num(c: Cell<f64>) -> Val {
    c.value().map_or(Val::Suppressed, Val::Num)
}
fn opt_frac(c: Cell<Option<f64>>) -> Val {
    match c {
        Cell::Suppressed => Val::Suppressed,
        Cell::Value(None) => Val::Empty,
        Cell::Value(Some(v)) => Val::Frac(v),
    }
}
fn bytes(c: Cell<u64>) -> Val {
    c.value().map_or(Val::Suppressed, Val::Bytes)
}
fn text(s: &str) -> Val {
    Val::Text(s.to_owned())
}

/// One named table.
#[derive(Debug, Clone)]
pub struct Table {
    /// File-name-safe name (`adoption`, `refused`, ...).
    pub name: &'static str,
    pub title: &'static str,
    pub columns: Vec<&'static str>,
    pub rows: Vec<Vec<Val>>,
}

/// Every table of the report, in presentation order.
pub fn tables(r: &Report) -> Vec<Table> {
    let mut out = Vec::new();
    if let Some(s) = &r.strategy {
        out.push(Table {
            name: "maturity",
            title: "Social maturity by group",
            columns: vec![
                "group",
                "label",
                "score",
                "platforms_adopted",
                "any_adoption",
                "write_share",
                "blocked_share",
                "minutes_per_member",
                "explanation",
            ],
            rows: s
                .maturity
                .iter()
                .map(|m| {
                    vec![
                        text(&m.group),
                        text(&m.label),
                        num(m.score),
                        m.platforms_adopted.into(),
                        frac(m.any_adoption),
                        opt_frac(m.write_share),
                        frac(m.blocked_share),
                        num(m.minutes_per_member),
                        text(&m.explanation),
                    ]
                })
                .collect(),
        });
        out.push(Table {
            name: "adoption",
            title: "Adoption, active time and read/write mix by group and platform",
            columns: vec![
                "group",
                "platform",
                "active_users",
                "adoption",
                "sessions",
                "active_minutes",
                "minutes_per_active_user",
                "sessions_per_active_user",
                "views",
                "writes",
                "write_share",
                "refused_requests",
                "refused_persons",
                "would_refuse_requests",
            ],
            rows: s
                .platforms
                .iter()
                .map(|a| {
                    vec![
                        text(&a.group),
                        text(&a.platform),
                        a.active_users.into(),
                        frac(a.adoption),
                        a.sessions.into(),
                        num(a.active_minutes),
                        num(a.minutes_per_active_user),
                        num(a.sessions_per_active_user),
                        a.views.into(),
                        a.writes.into(),
                        opt_frac(a.write_share),
                        a.refused_requests.into(),
                        a.refused_persons.into(),
                        a.would_refuse_requests.into(),
                    ]
                })
                .collect(),
        });
        out.push(Table {
            name: "groups",
            title: "Active members by group",
            columns: vec!["group", "active_members"],
            rows: s
                .groups
                .iter()
                .map(|g| vec![text(&g.group), g.active_members.into()])
                .collect(),
        });
        out.push(Table {
            name: "daily",
            title: "Daily trend by group and platform",
            columns: vec![
                "day",
                "group",
                "platform",
                "active_users",
                "foreground_requests",
                "sessions",
                "active_minutes",
                "refused_requests",
            ],
            rows: s
                .daily
                .iter()
                .map(|d| {
                    vec![
                        text(&d.day),
                        text(&d.group),
                        text(&d.platform),
                        d.active_users.into(),
                        d.foreground_requests.into(),
                        d.sessions.into(),
                        num(d.active_minutes),
                        d.refused_requests.into(),
                    ]
                })
                .collect(),
        });
        let mut cols = vec!["day"];
        cols.extend(HOURS);
        out.push(Table {
            name: "hour_of_week",
            title: "Foreground requests by hour of week",
            columns: cols,
            rows: s
                .hour_of_week
                .days
                .iter()
                .zip(&s.hour_of_week.foreground_requests)
                .map(|(d, row)| {
                    let mut v = vec![text(d)];
                    v.extend(row.iter().map(|c| Val::from(*c)));
                    v
                })
                .collect(),
        });
    }
    if let Some(s) = &r.security {
        let t = &s.totals;
        out.push(Table {
            name: "security_totals",
            title: "Totals",
            columns: vec!["metric", "value"],
            rows: vec![
                vec![text("requests"), Val::Int(t.requests)],
                vec![text("persons"), t.persons.into()],
                vec![text("refused"), t.refused.into()],
                vec![text("would_refuse"), t.would_refuse.into()],
                vec![text("unauthenticated"), t.unauthenticated.into()],
            ],
        });
        let refused_rows = |rows: &[RefusedRow]| {
            rows.iter()
                .map(|x| {
                    vec![
                        text(&x.group),
                        text(&x.platform),
                        text(&x.activity),
                        x.requests.into(),
                        x.persons.into(),
                    ]
                })
                .collect()
        };
        out.push(Table {
            name: "top_refused_platforms",
            title: "Top refused platforms",
            columns: vec!["platform", "requests", "persons"],
            rows: s
                .top_refused_platforms
                .iter()
                .map(|p| vec![text(&p.platform), p.requests.into(), p.persons.into()])
                .collect(),
        });
        out.push(Table {
            name: "refused",
            title: "Refused requests by group, platform and activity",
            columns: vec!["group", "platform", "activity", "requests", "persons"],
            rows: refused_rows(&s.refused),
        });
        out.push(Table {
            name: "would_refuse",
            title: "Would-be refusals of rules in report mode (traffic passed)",
            columns: vec!["group", "platform", "activity", "requests", "persons"],
            rows: refused_rows(&s.would_refuse),
        });
        out.push(Table {
            name: "refused_by_reason",
            title: "Refused requests by reason",
            columns: vec!["reason", "requests", "persons"],
            rows: s
                .refused_by_reason
                .iter()
                .map(|x| vec![text(&x.reason), x.requests.into(), x.persons.into()])
                .collect(),
        });
        out.push(Table {
            name: "unauthenticated",
            title: "Unauthenticated traffic by group",
            columns: vec!["group", "requests", "share", "persons"],
            rows: s
                .unauthenticated
                .iter()
                .map(|x| {
                    vec![
                        text(&x.group),
                        x.requests.into(),
                        frac(x.share),
                        x.persons.into(),
                    ]
                })
                .collect(),
        });
        out.push(Table {
            name: "bytes_to_platforms",
            title: "Bytes sent to and received from social platforms",
            columns: vec!["group", "platform", "bytes_up", "bytes_down", "persons"],
            rows: s
                .bytes_to_platforms
                .iter()
                .map(|x| {
                    vec![
                        text(&x.group),
                        text(&x.platform),
                        bytes(x.bytes_up),
                        bytes(x.bytes_down),
                        x.persons.into(),
                    ]
                })
                .collect(),
        });
        if !s.top_refused_persons.is_empty() {
            out.push(Table {
                name: "top_refused_persons",
                title: "Top refused persons (pseudonymous unless revealed)",
                columns: vec!["person", "name", "requests", "platforms"],
                rows: s
                    .top_refused_persons
                    .iter()
                    .map(|p| {
                        vec![
                            text(&p.person),
                            p.name.as_deref().map_or(Val::Empty, text),
                            Val::Int(p.requests),
                            Val::Int(p.platforms),
                        ]
                    })
                    .collect(),
            });
        }
    }
    out.push(Table {
        name: "input",
        title: "Inputs read",
        columns: vec![
            "path",
            "lines",
            "records",
            "malformed",
            "unknown_values",
            "error",
        ],
        rows: r
            .input
            .files
            .iter()
            .map(|f| {
                vec![
                    text(&f.path),
                    Val::Int(f.lines),
                    Val::Int(f.records),
                    Val::Int(f.malformed),
                    Val::Int(f.unknown_values),
                    f.error.as_deref().map_or(Val::Empty, text),
                ]
            })
            .collect(),
    });
    out
}

const HOURS: [&str; 24] = [
    "h00", "h01", "h02", "h03", "h04", "h05", "h06", "h07", "h08", "h09", "h10", "h11", "h12",
    "h13", "h14", "h15", "h16", "h17", "h18", "h19", "h20", "h21", "h22", "h23",
];

fn csv_field(out: &mut String, s: &str) {
    if s.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&s.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(s);
    }
}

fn csv_val(v: &Val) -> String {
    match v {
        Val::Text(s) => s.clone(),
        Val::Int(n) | Val::Bytes(n) => n.to_string(),
        Val::Frac(f) => format!("{f:.4}"),
        Val::Num(f) => format!("{f:.2}"),
        Val::Suppressed => "suppressed".to_owned(),
        Val::Empty => String::new(),
    }
}

/// One table as CSV: a header line, then one line per row (RFC 4180 quoting).
pub fn csv_table(t: &Table) -> String {
    let mut out = String::new();
    for (i, c) in t.columns.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        csv_field(&mut out, c);
    }
    out.push_str("\r\n");
    for row in &t.rows {
        for (i, v) in row.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            csv_field(&mut out, &csv_val(v));
        }
        out.push_str("\r\n");
    }
    out
}

/// All tables in one CSV stream: each section starts with a line
/// `# table: NAME`, then the table's header and rows, then an empty line.
pub fn csv_all(r: &Report) -> String {
    let mut out = String::new();
    for t in tables(r) {
        let _ = write!(out, "# table: {}\r\n", t.name);
        out.push_str(&csv_table(&t));
        out.push_str("\r\n");
    }
    out
}

// ---------------------------------------------------------------- HTML

fn esc(s: &str) -> String {
    crate::html::escape(s)
}

fn human_bytes(n: u64) -> String {
    const U: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1000.0 && i < U.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", U[i])
    }
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut o = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            o.push('\u{202f}');
        }
        o.push(c);
    }
    o
}

fn html_val(v: &Val, k: u64) -> String {
    match v {
        Val::Text(s) if s == ALL => "<b>all</b>".to_owned(),
        Val::Text(s) => esc(s),
        Val::Int(n) => thousands(*n),
        Val::Bytes(n) => human_bytes(*n),
        Val::Frac(f) => format!("{:.0}%", f * 100.0),
        Val::Num(f) => format!("{f:.1}"),
        Val::Suppressed => {
            format!("<span class=sup title=\"fewer than {k} persons\">&lt;{k}</span>")
        }
        Val::Empty => "<span class=dim>–</span>".to_owned(),
    }
}

fn html_table(t: &Table, k: u64, out: &mut String) {
    let _ = write!(out, "<h3>{}</h3>", esc(t.title));
    if t.rows.is_empty() {
        out.push_str("<p class=dim>Nothing in this period.</p>");
        return;
    }
    let _ = write!(out, "<div class=tw><table id=\"t-{}\"><thead><tr>", t.name);
    for c in &t.columns {
        let _ = write!(out, "<th>{}</th>", esc(&c.replace('_', " ")));
    }
    out.push_str("</tr></thead><tbody>");
    for row in &t.rows {
        let total = matches!(row.first(), Some(Val::Text(s)) if s == ALL);
        out.push_str(if total { "<tr class=tot>" } else { "<tr>" });
        for v in row {
            let cls = match v {
                Val::Text(_) | Val::Empty => "",
                _ => " class=n",
            };
            let _ = write!(out, "<td{cls}>{}</td>", html_val(v, k));
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table></div>");
}

const PALETTE: [&str; 8] = [
    "#2563eb", "#db2777", "#059669", "#d97706", "#7c3aed", "#0891b2", "#dc2626", "#4b5563",
];

/// Horizontal bar chart; `None` values are drawn as a hatched "suppressed" bar.
fn bar_chart(title: &str, items: &[(String, Option<f64>, String)], out: &mut String) {
    let row_h = 26.0;
    let left = 130.0;
    let width = 560.0;
    let bar_w = width - left - 80.0;
    let h = 30.0 + row_h * items.len().max(1) as f64;
    let max = items
        .iter()
        .filter_map(|i| i.1)
        .fold(0.0f64, f64::max)
        .max(1e-9);
    let _ = write!(
        out,
        "<figure class=chart><figcaption>{}</figcaption><svg class=bars viewBox=\"0 0 {width} {h}\" width=\"100%\" role=img aria-label=\"{}\">",
        esc(title),
        esc(title)
    );
    if items.is_empty() {
        out.push_str("<text x=10 y=30 class=lbl>no data</text>");
    }
    for (i, (label, value, shown)) in items.iter().enumerate() {
        let y = 20.0 + row_h * i as f64;
        let _ = write!(
            out,
            "<text x=\"{}\" y=\"{}\" text-anchor=end class=lbl>{}</text>",
            left - 8.0,
            y + 15.0,
            esc(label)
        );
        match value {
            Some(v) => {
                let w = (v / max * bar_w).max(1.0);
                let _ = write!(
                    out,
                    "<rect x=\"{left}\" y=\"{y}\" width=\"{w:.1}\" height=\"18\" rx=3 fill=\"{}\"/><text x=\"{:.1}\" y=\"{}\" class=val>{}</text>",
                    PALETTE[i % PALETTE.len()],
                    left + w + 6.0,
                    y + 14.0,
                    esc(shown)
                );
            }
            None => {
                let _ = write!(
                    out,
                    "<rect x=\"{left}\" y=\"{y}\" width=\"{bar_w:.1}\" height=\"18\" rx=3 fill=\"url(#hatch)\" stroke=\"#cbd5e1\"/><text x=\"{:.1}\" y=\"{}\" class=val>suppressed</text>",
                    left + 8.0,
                    y + 14.0
                );
            }
        }
    }
    out.push_str("</svg></figure>");
}

/// Multi-series daily line chart; missing (suppressed) points break the line.
fn line_chart(
    title: &str,
    days: &[String],
    series: &[(String, Vec<Option<f64>>)],
    out: &mut String,
) {
    let (w, h) = (1100.0, 300.0);
    let (l, r, t, b) = (50.0, 150.0, 20.0, 40.0);
    let pw = w - l - r;
    let ph = h - t - b;
    let max = series
        .iter()
        .flat_map(|s| s.1.iter().flatten())
        .fold(0.0f64, |a, &v| a.max(v))
        .max(1.0);
    let max = nice_ceiling(max);
    let n = days.len().max(1);
    let x = |i: usize| {
        if n == 1 {
            l + pw / 2.0
        } else {
            l + pw * i as f64 / (n - 1) as f64
        }
    };
    let y = |v: f64| t + ph - ph * v / max;
    let _ = write!(
        out,
        "<figure class=chart><figcaption>{}</figcaption><svg class=trend viewBox=\"0 0 {w} {h}\" width=\"100%\" role=img aria-label=\"{}\">",
        esc(title),
        esc(title)
    );
    for i in 0..=4 {
        let v = max * i as f64 / 4.0;
        let yy = y(v);
        let _ = write!(
            out,
            "<line x1=\"{l}\" x2=\"{}\" y1=\"{yy:.1}\" y2=\"{yy:.1}\" class=\"grid\"/><text x=\"{}\" y=\"{:.1}\" text-anchor=end class=ax>{}</text>",
            l + pw,
            l - 6.0,
            yy + 4.0,
            v.round()
        );
    }
    let step = n.div_ceil(10).max(1);
    for (i, d) in days.iter().enumerate() {
        if i % step == 0 || i + 1 == n {
            let _ = write!(
                out,
                "<text x=\"{:.1}\" y=\"{}\" text-anchor=middle class=ax>{}</text>",
                x(i),
                h - b + 18.0,
                esc(d.get(5..).unwrap_or(d))
            );
        }
    }
    if series.is_empty() {
        let _ = write!(
            out,
            "<text x=\"{}\" y=\"{}\" class=lbl>no data</text>",
            l + 10.0,
            t + 30.0
        );
    }
    for (si, (name, vals)) in series.iter().enumerate() {
        let color = PALETTE[si % PALETTE.len()];
        let mut path = String::new();
        let mut pen = false;
        for (i, v) in vals.iter().enumerate() {
            match v {
                Some(v) => {
                    let _ = write!(
                        path,
                        "{}{:.1},{:.1} ",
                        if pen { "L" } else { "M" },
                        x(i),
                        y(*v)
                    );
                    pen = true;
                }
                None => pen = false,
            }
        }
        let _ = write!(
            out,
            "<path d=\"{}\" fill=none stroke=\"{color}\" stroke-width=2.5 stroke-linejoin=\"round\"/>",
            path.trim_end()
        );
        for (i, v) in vals.iter().enumerate() {
            if let Some(v) = v {
                let _ = write!(
                    out,
                    "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=3 fill=\"{color}\"/>",
                    x(i),
                    y(*v)
                );
            }
        }
        let ly = t + 14.0 + 20.0 * si as f64;
        let _ = write!(
            out,
            "<rect x=\"{}\" y=\"{}\" width=14 height=4 fill=\"{color}\"/><text x=\"{}\" y=\"{}\" class=lbl>{}</text>",
            w - r + 16.0,
            ly - 4.0,
            w - r + 36.0,
            ly + 1.0,
            esc(name)
        );
    }
    out.push_str("</svg></figure>");
}

fn nice_ceiling(v: f64) -> f64 {
    let mag = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if v <= m * mag {
            return m * mag;
        }
    }
    10.0 * mag
}

fn heat_map(hm: &HeatMap, tz: &str, k: u64, out: &mut String) {
    let (cell, l, t) = (40.0, 50.0, 26.0);
    let w = l + cell * 24.0 + 10.0;
    let h = t + cell * 0.8 * 7.0 + 10.0;
    let ch = cell * 0.8;
    let max = hm
        .foreground_requests
        .iter()
        .flatten()
        .filter_map(Cell::value)
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let _ = write!(
        out,
        "<figure class=chart><figcaption>When social platforms are used: foreground requests by hour of week ({})</figcaption><svg class=heat viewBox=\"0 0 {w} {h}\" width=\"100%\" role=img aria-label=\"hour-of-week heat map\">",
        esc(tz)
    );
    for hr in 0..24 {
        let _ = write!(
            out,
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=middle class=ax>{hr:02}</text>",
            l + cell * hr as f64 + cell / 2.0,
            t - 8.0
        );
    }
    for (d, row) in hm.foreground_requests.iter().enumerate() {
        let y = t + ch * d as f64;
        let _ = write!(
            out,
            "<text x=\"{}\" y=\"{:.1}\" text-anchor=end class=lbl>{}</text>",
            l - 8.0,
            y + ch / 2.0 + 4.0,
            hm.days.get(d).copied().unwrap_or("")
        );
        for (hr, c) in row.iter().enumerate() {
            let x = l + cell * hr as f64;
            let (fill, title) = match c {
                Cell::Value(0) => ("#f1f5f9".to_owned(), "0".to_owned()),
                Cell::Value(v) => {
                    let a = 0.15 + 0.85 * (*v as f64 / max).sqrt();
                    (format!("rgba(37,99,235,{a:.2})"), v.to_string())
                }
                Cell::Suppressed => ("url(#hatch)".to_owned(), format!("fewer than {k} persons")),
            };
            let _ = write!(
                out,
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" rx=3 fill=\"{fill}\"><title>{} {hr:02}:00 {}</title></rect>",
                x + 1.0,
                y + 1.0,
                cell - 2.0,
                ch - 2.0,
                hm.days.get(d).copied().unwrap_or(""),
                esc(&title)
            );
        }
    }
    out.push_str("</svg></figure>");
}

const CSS: &str = r#"
:root{--fg:#0f172a;--dim:#64748b;--line:#e2e8f0;--bg:#f8fafc;--acc:#2563eb}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 "DejaVu Sans",system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif;color:var(--fg);background:var(--bg)}
main{max-width:1160px;margin:0 auto;padding:28px 32px 60px}
header{border-bottom:3px solid var(--acc);padding-bottom:14px;margin-bottom:20px}
h1{font-size:26px;margin:0 0 4px}
h2{font-size:20px;margin:36px 0 10px;padding-bottom:6px;border-bottom:1px solid var(--line)}
h3{font-size:15px;margin:22px 0 8px}
.meta{color:var(--dim)}
.note{background:#fff;border:1px solid var(--line);border-left:4px solid var(--acc);padding:10px 16px;border-radius:6px;margin:14px 0}
.note p{margin:6px 0}
.warn{border-left-color:#d97706}
.cards{display:flex;gap:14px;flex-wrap:wrap;margin:16px 0}
.card{background:#fff;border:1px solid var(--line);border-radius:8px;padding:12px 16px;min-width:170px;flex:1}
.card b{display:block;font-size:24px}
.card span{color:var(--dim);font-size:12px;text-transform:uppercase;letter-spacing:.04em}
.grid2{display:grid;grid-template-columns:1fr 1fr;gap:18px}
figure.chart{margin:10px 0;background:#fff;border:1px solid var(--line);border-radius:8px;padding:10px 14px}
figcaption{font-weight:600;margin-bottom:6px}
svg text{font-family:"DejaVu Sans",Arial,sans-serif}
svg .lbl{font-size:12px;fill:#334155}
svg .val{font-size:11px;fill:#334155}
svg .ax{font-size:11px;fill:#64748b}
svg .grid{stroke:#e2e8f0}
.tw{overflow-x:auto;background:#fff;border:1px solid var(--line);border-radius:8px}
table{border-collapse:collapse;width:100%;font-size:13px}
th{background:#f1f5f9;text-align:left;font-weight:600;padding:6px 8px;border-bottom:1px solid var(--line);white-space:nowrap}
td{padding:5px 8px;border-bottom:1px solid #f1f5f9}
td.n{text-align:right;font-variant-numeric:tabular-nums}
tr.tot td{background:#f8fafc;font-weight:600}
.sup{color:#94a3b8;font-style:italic}
.dim{color:var(--dim)}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600;background:#e2e8f0}
.b-broad{background:#dcfce7;color:#166534}.b-focused{background:#dbeafe;color:#1e40af}
.b-passive{background:#fef9c3;color:#854d0e}.b-held{background:#fee2e2;color:#991b1b}
.b-light{background:#f1f5f9;color:#475569}
footer{margin-top:40px;color:var(--dim);font-size:12px}
@media print{body{background:#fff}main{padding:0}}
"#;

fn badge(label: &str) -> String {
    let cls = match label {
        "broad and productive" | "broad, mix unknown" => "b-broad",
        "focused contributors" | "engaged, mix unknown" => "b-focused",
        "passive consumers" => "b-passive",
        "held back by policy" => "b-held",
        _ => "b-light",
    };
    format!("<span class=\"badge {cls}\">{}</span>", esc(label))
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

/// The HTML report: one self-contained page.
pub fn html(r: &Report) -> String {
    let k = r.settings.k;
    let tz = &r.period.time_zone;
    let mut o = String::with_capacity(64 * 1024);
    let period = format!(
        "{} – {}",
        r.period.from.map_or_else(
            || fmt_time(r.period.first_record, tz),
            |t| fmt_time(Some(t), tz)
        ),
        r.period.to.map_or_else(
            || fmt_time(r.period.last_record, tz),
            |t| fmt_time(Some(t), tz)
        ),
    );
    let _ = write!(
        o,
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8><meta name=viewport content=\"width=device-width,initial-scale=1\"><title>socialgate report {}</title><style>{CSS}</style></head><body>",
        esc(&period)
    );
    // One shared pattern for suppressed cells.
    o.push_str("<svg width=0 height=0 style=\"position:absolute\" aria-hidden=true><defs><pattern id=hatch width=6 height=6 patternUnits=userSpaceOnUse patternTransform=\"rotate(45)\"><rect width=6 height=6 fill=\"#f8fafc\"/><line x1=0 y1=0 x2=0 y2=6 stroke=\"#cbd5e1\" stroke-width=\"2\"/></pattern></defs></svg>");
    let _ = write!(
        o,
        "<main><header><h1>Social platform usage report</h1><div class=meta>Period <b>{}</b> ({}) · generated {} · {} records read from {} input(s)</div></header>",
        esc(&period),
        esc(tz),
        fmt_time(Some(r.generated_at), tz),
        thousands(r.input.in_period),
        r.input.files.len()
    );
    let _ = write!(
        o,
        "<section class=note><p><b>How to read this report.</b> A <i>person</i> is a pseudonymous user, or a client address when no user was known. \
<i>Active users</i> of a platform are persons who opened it in the foreground (page navigations or tunnels to its own domains, not embedded widgets) and were not refused. \
<i>Adoption</i> is active users divided by the group's active members (everyone seen in that group in the period).</p>\
<p><b>Estimated active time</b> groups a person's foreground hits on a platform into sessions that end after {} minutes without a hit; a session counts from its first to its last hit plus {} minute for reading after the last one. It is an estimate: pages read for a long time count little, background polling may count too much.</p>\
<p><b>Privacy.</b> Any number backed by fewer than <b>k = {k}</b> distinct persons is suppressed and shown as <span class=sup>&lt;{k}</span>; where one suppressed row could be recovered from a total, a second row is suppressed too. Strategy tables never list individuals.{}</p></section>",
        r.settings.idle_minutes,
        r.settings.credit_minutes,
        if r.settings.revealed {
            " <b>This report reveals real names in the per-person listing; the reveal was written to the audit log.</b>"
        } else {
            ""
        }
    );
    let failed: Vec<_> = r.input.files.iter().filter(|f| f.error.is_some()).collect();
    if !failed.is_empty() || r.input.malformed > 0 || r.input.unknown_values > 0 {
        o.push_str("<section class=\"note warn\"><p><b>Input problems.</b></p>");
        for f in failed {
            let _ = write!(
                o,
                "<p>{}: {}</p>",
                esc(&f.path),
                esc(f.error.as_deref().unwrap_or(""))
            );
        }
        if r.input.malformed > 0 {
            let _ = write!(
                o,
                "<p>{} malformed line(s) skipped, for example:</p><ul>",
                r.input.malformed
            );
            for e in &r.input.malformed_examples {
                let _ = write!(o, "<li><code>{}</code></li>", esc(e));
            }
            o.push_str("</ul>");
        }
        if r.input.unknown_values > 0 {
            let _ = write!(
                o,
                "<p>{} value(s) written by another version of socialgate were not known to this one; their records were kept and counted as passed traffic where the outcome was unknown.</p>",
                r.input.unknown_values
            );
        }
        o.push_str("</section>");
    }
    let tables = tables(r);
    let table = |name: &str| tables.iter().find(|t| t.name == name);

    if let Some(s) = &r.strategy {
        o.push_str("<h2>Strategy: how social platforms are used</h2>");
        let all = s
            .platforms
            .iter()
            .find(|a| a.group == ALL && a.platform == ALL);
        let members = s
            .groups
            .iter()
            .find(|g| g.group == ALL)
            .map(|g| g.active_members);
        let card = |o: &mut String, label: &str, v: String| {
            let _ = write!(
                o,
                "<div class=card><span>{}</span><b>{}</b></div>",
                esc(label),
                v
            );
        };
        o.push_str("<div class=cards>");
        let cell_txt = |c: Option<Val>| c.map_or("–".to_owned(), |v| html_val(&v, k));
        card(&mut o, "active members", cell_txt(members.map(Val::from)));
        card(
            &mut o,
            "active on any platform",
            cell_txt(all.map(|a| frac(a.adoption))),
        );
        card(
            &mut o,
            "minutes per active user",
            cell_txt(all.map(|a| num(a.minutes_per_active_user))),
        );
        card(
            &mut o,
            "write share (where known)",
            cell_txt(all.map(|a| opt_frac(a.write_share))),
        );
        card(
            &mut o,
            "refused requests",
            cell_txt(all.map(|a| Val::from(a.refused_requests))),
        );
        o.push_str("</div>");

        let per_platform: Vec<&AdoptionRow> = s
            .platforms
            .iter()
            .filter(|a| a.group == ALL && a.platform != ALL)
            .collect();
        let mut adoption: Vec<(String, Option<f64>, String)> = per_platform
            .iter()
            .map(|a| {
                let v = a.adoption.value();
                (
                    a.platform.clone(),
                    v.map(|x| x * 100.0),
                    v.map_or(String::new(), |x| format!("{:.0}%", x * 100.0)),
                )
            })
            .collect();
        adoption.sort_by(|a, b| b.1.unwrap_or(-1.0).total_cmp(&a.1.unwrap_or(-1.0)));
        let mut minutes: Vec<(String, Option<f64>, String)> = per_platform
            .iter()
            .map(|a| {
                let v = a.minutes_per_active_user.value();
                (
                    a.platform.clone(),
                    v,
                    v.map_or(String::new(), |x| format!("{x:.1} min")),
                )
            })
            .collect();
        minutes.sort_by(|a, b| b.1.unwrap_or(-1.0).total_cmp(&a.1.unwrap_or(-1.0)));
        o.push_str("<div class=grid2>");
        bar_chart("Adoption by platform (all groups)", &adoption, &mut o);
        bar_chart("Estimated active minutes per active user", &minutes, &mut o);
        o.push_str("</div>");

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
        line_chart(
            "Daily active users by platform (all groups; gaps are suppressed days)",
            &days,
            &series,
            &mut o,
        );
        heat_map(&s.hour_of_week, tz, k, &mut o);

        o.push_str("<h3>Social maturity by group</h3><div class=tw><table id=t-maturity><thead><tr><th>group</th><th>maturity</th><th>score</th><th>platforms adopted</th><th>active on any</th><th>write share</th><th>refused members</th><th>min / member</th><th>why</th></tr></thead><tbody>");
        for m in &s.maturity {
            let _ = write!(
                o,
                "<tr{}><td>{}</td><td>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td><td>{}</td></tr>",
                if m.group == ALL { " class=tot" } else { "" },
                html_val(&text(&m.group), k),
                badge(&m.label),
                html_val(&num(m.score), k),
                html_val(&m.platforms_adopted.into(), k),
                html_val(&frac(m.any_adoption), k),
                html_val(&opt_frac(m.write_share), k),
                html_val(&frac(m.blocked_share), k),
                html_val(&num(m.minutes_per_member), k),
                esc(&m.explanation)
            );
        }
        o.push_str("</tbody></table></div>");
        for name in ["adoption", "groups"] {
            if let Some(t) = table(name) {
                html_table(t, k, &mut o);
            }
        }
    }
    if let Some(s) = &r.security {
        o.push_str("<h2>Security: refusals, unauthenticated traffic and uploads</h2>");
        let t = &s.totals;
        o.push_str("<div class=cards>");
        for (label, v) in [
            ("requests", Val::Int(t.requests)),
            ("persons", t.persons.into()),
            ("refused", t.refused.into()),
            ("would refuse (report mode)", t.would_refuse.into()),
            ("unauthenticated", t.unauthenticated.into()),
        ] {
            let _ = write!(
                o,
                "<div class=card><span>{label}</span><b>{}</b></div>",
                html_val(&v, k)
            );
        }
        o.push_str("</div>");
        let refused: Vec<(String, Option<f64>, String)> = s
            .top_refused_platforms
            .iter()
            .map(|p| {
                let v = p.requests.value();
                (
                    p.platform.clone(),
                    v.map(|x| x as f64),
                    v.map_or(String::new(), thousands),
                )
            })
            .collect();
        let mut up: Vec<(String, Option<f64>, String)> = s
            .bytes_to_platforms
            .iter()
            .filter(|b| b.group == ALL && b.platform != ALL)
            .map(|b| {
                let v = b.bytes_up.value();
                (
                    b.platform.clone(),
                    v.map(|x| x as f64),
                    v.map_or(String::new(), human_bytes),
                )
            })
            .collect();
        up.sort_by(|a, b| b.1.unwrap_or(-1.0).total_cmp(&a.1.unwrap_or(-1.0)));
        up.truncate(10);
        o.push_str("<div class=grid2>");
        bar_chart("Top refused platforms (requests)", &refused, &mut o);
        bar_chart("Bytes sent to social platforms (all groups)", &up, &mut o);
        o.push_str("</div>");
        for name in [
            "refused",
            "would_refuse",
            "refused_by_reason",
            "unauthenticated",
            "bytes_to_platforms",
            "top_refused_persons",
        ] {
            if let Some(t) = table(name) {
                html_table(t, k, &mut o);
            }
        }
    }
    if let Some(t) = table("input") {
        html_table(t, k, &mut o);
    }
    let _ = writeln!(
        o,
        "<footer>socialgate report · schema {} · k = {k} · idle gap {} min · audience {} · metric definitions: docs/reports.md</footer></main></body></html>",
        r.schema, r.settings.idle_minutes, esc(&r.settings.audience)
    );
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_only_when_needed() {
        let t = Table {
            name: "x",
            title: "x",
            columns: vec!["a", "b"],
            rows: vec![
                vec![text("plain"), text("with, \"comma\"")],
                vec![Val::Suppressed, Val::Frac(0.5)],
            ],
        };
        assert_eq!(
            csv_table(&t),
            "a,b\r\nplain,\"with, \"\"comma\"\"\"\r\nsuppressed,0.5000\r\n"
        );
    }

    #[test]
    fn html_escaping_and_numbers() {
        assert_eq!(esc("<a href='x'>&"), "&lt;a href=&#39;x&#39;&gt;&amp;");
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(1_500_000), "1.5 MB");
        assert_eq!(thousands(1234567), "1\u{202f}234\u{202f}567");
        assert_eq!(nice_ceiling(37.0), 50.0);
    }
}
