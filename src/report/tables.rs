//! The report as named tables of typed values: the one layout that CSV
//! writes as is and the HTML page shows with its own number formats.
//!
//! This module must not compute metrics or decide suppression; it only
//! arranges what `aggregate` produced. A suppressed cell stays `Suppressed`.

use super::model::*;

/// A table value.
#[derive(Debug, Clone)]
pub(crate) enum Val {
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

pub(super) fn frac(c: Cell<f64>) -> Val {
    c.value().map_or(Val::Suppressed, Val::Frac)
}
pub(super) fn num(c: Cell<f64>) -> Val {
    c.value().map_or(Val::Suppressed, Val::Num)
}
pub(super) fn opt_frac(c: Cell<Option<f64>>) -> Val {
    match c {
        Cell::Suppressed => Val::Suppressed,
        Cell::Value(None) => Val::Empty,
        Cell::Value(Some(v)) => Val::Frac(v),
    }
}
fn bytes(c: Cell<u64>) -> Val {
    c.value().map_or(Val::Suppressed, Val::Bytes)
}
pub(super) fn text(s: &str) -> Val {
    Val::Text(s.to_owned())
}

/// One named table.
#[derive(Debug, Clone)]
pub(crate) struct Table {
    /// File-name-safe name (`adoption`, `refused`, ...).
    pub(crate) name: &'static str,
    pub(crate) title: &'static str,
    pub(crate) columns: Vec<&'static str>,
    pub(crate) rows: Vec<Vec<Val>>,
}

/// Every table of the report, in presentation order.
pub(crate) fn tables(r: &Report) -> Vec<Table> {
    let mut out = Vec::new();
    if let Some(s) = &r.strategy {
        out.push(Table {
            name: "maturity",
            title: "Social maturity by group",
            columns: vec![
                "group",
                "stage",
                "label",
                "members",
                "any_adoption",
                "regular_share",
                "minutes_per_active_user",
                "contributor_share",
                "platforms_adopted",
                "blocked_share",
                "held_back_by",
                "evidence",
                "next_step",
            ],
            rows: s
                .maturity
                .iter()
                .map(|m| {
                    vec![
                        text(&m.group),
                        m.stage.map_or(Val::Empty, |v| Val::Int(u64::from(v))),
                        text(&m.label),
                        m.members.into(),
                        frac(m.any_adoption),
                        frac(m.regular_share),
                        num(m.minutes_per_active_user),
                        opt_frac(m.contributor_share),
                        text(&m.platforms_adopted.join(" ")),
                        frac(m.blocked_share),
                        text(&m.held_back_by),
                        text(&m.evidence),
                        text(&m.next_step),
                    ]
                })
                .collect(),
        });
        out.push(Table {
            name: "adoption",
            title: "Adoption, active time and blocked demand by group and platform",
            columns: vec![
                "group",
                "platform",
                "active_users",
                "adoption",
                "sessions",
                "active_minutes",
                "minutes_per_active_user",
                "sessions_per_active_user",
                "blocked_attempts",
                "blocked_persons",
                "would_block_attempts",
                "would_block_persons",
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
                        a.blocked_attempts.into(),
                        a.blocked_persons.into(),
                        a.would_block_attempts.into(),
                        a.would_block_persons.into(),
                    ]
                })
                .collect(),
        });
        out.push(Table {
            name: "contribution",
            title: "Readers, contributors and what they did, by group and platform",
            columns: vec![
                "group",
                "platform",
                "readers",
                "contributors",
                "contributor_share",
                "reads",
                "logins",
                "posts",
                "comments",
                "reactions",
                "shares",
                "uploads",
                "messages",
                "generic",
                "generic_share",
            ],
            rows: s
                .contribution
                .iter()
                .map(|c| {
                    vec![
                        text(&c.group),
                        text(&c.platform),
                        c.readers.into(),
                        c.contributors.into(),
                        opt_frac(c.contributor_share),
                        c.reads.into(),
                        c.logins.into(),
                        c.posts.into(),
                        c.comments.into(),
                        c.reactions.into(),
                        c.shares.into(),
                        c.uploads.into(),
                        c.messages.into(),
                        c.generic.into(),
                        opt_frac(c.generic_share),
                    ]
                })
                .collect(),
        });
        out.push(Table {
            name: "warnings",
            title: "Warnings and continues by group and platform (demand signal)",
            columns: vec![
                "group",
                "platform",
                "warned_persons",
                "continued_persons",
                "continue_rate",
                "warnings_shown",
                "continues",
                "unshown_tunnels",
            ],
            rows: s
                .warnings
                .iter()
                .map(|w| {
                    vec![
                        text(&w.group),
                        text(&w.platform),
                        w.warned_persons.into(),
                        w.continued_persons.into(),
                        frac(w.continue_rate),
                        w.warnings_shown.into(),
                        w.continues.into(),
                        w.unshown_tunnels.into(),
                    ]
                })
                .collect(),
        });
        out.push(Table {
            name: "access_requests",
            title: "Requested access by group and platform (access requests sent from block pages)",
            columns: vec!["group", "platform", "persons", "requests"],
            rows: s
                .access_requests
                .iter()
                .map(|r| {
                    vec![
                        text(&r.group),
                        text(&r.platform),
                        r.persons.into(),
                        r.requests.into(),
                    ]
                })
                .collect(),
        });
        out.push(Table {
            name: "groups",
            title: "Active members and regular users by group",
            columns: vec!["group", "active_members", "regular_users"],
            rows: s
                .groups
                .iter()
                .map(|g| {
                    vec![
                        text(&g.group),
                        g.active_members.into(),
                        g.regular_users.into(),
                    ]
                })
                .collect(),
        });
        out.push(Table {
            name: "daily",
            title: "Daily active users by group and platform",
            columns: vec!["day", "group", "platform", "active_users"],
            rows: s
                .daily
                .iter()
                .map(|d| {
                    vec![
                        text(&d.day),
                        text(&d.group),
                        text(&d.platform),
                        d.active_users.into(),
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
                vec![text("refused_primary"), t.refused_primary.into()],
                vec![
                    text("refused_primary_members"),
                    t.refused_primary_members.into(),
                ],
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
                        x.class.as_deref().map_or(Val::Empty, text),
                        x.activity.as_deref().map_or(Val::Empty, text),
                        text(&x.rule),
                        x.requests.into(),
                        x.persons.into(),
                    ]
                })
                .collect()
        };
        out.push(Table {
            name: "refused_by_rule",
            title: "Refusals by rule",
            columns: vec![
                "rule",
                "outcome",
                "requests",
                "primary_requests",
                "persons",
                "platforms",
            ],
            rows: s
                .refused_by_rule
                .iter()
                .map(|x| {
                    vec![
                        text(&x.rule),
                        text(&x.outcome),
                        x.requests.into(),
                        x.primary_requests.into(),
                        x.persons.into(),
                        text(&x.platforms.join(" ")),
                    ]
                })
                .collect(),
        });
        out.push(Table {
            name: "top_refused_platforms",
            title: "Top refused platforms",
            columns: vec![
                "platform",
                "requests",
                "persons",
                "primary_requests",
                "primary_persons",
            ],
            rows: s
                .top_refused_platforms
                .iter()
                .map(|p| {
                    vec![
                        text(&p.platform),
                        p.requests.into(),
                        p.persons.into(),
                        p.primary_requests.into(),
                        p.primary_persons.into(),
                    ]
                })
                .collect(),
        });
        let refused_cols = vec![
            "group", "platform", "class", "activity", "rule", "requests", "persons",
        ];
        out.push(Table {
            name: "refused",
            title: "Refused requests by group, platform, class, activity and rule",
            columns: refused_cols.clone(),
            rows: refused_rows(&s.refused),
        });
        out.push(Table {
            name: "would_refuse",
            title: "Would-be refusals of rules in report mode (traffic passed)",
            columns: refused_cols,
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
        out.push(Table {
            name: "security_access_requests",
            title: "Requested access by group and platform, exact",
            columns: vec!["group", "platform", "persons", "requests"],
            rows: s
                .access_requests
                .iter()
                .map(|r| {
                    vec![
                        text(&r.group),
                        text(&r.platform),
                        r.persons.into(),
                        r.requests.into(),
                    ]
                })
                .collect(),
        });
        out.push(Table {
            name: "activity_unseen",
            title: "Tunnels that rules about activities could not judge (not inspected)",
            columns: vec!["rule", "platform", "tunnels", "persons"],
            rows: s
                .activity_unseen
                .iter()
                .map(|x| {
                    vec![
                        text(&x.rule),
                        text(&x.platform),
                        x.tunnels.into(),
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

/// Bytes with a decimal unit (`1.5 MB`).
pub(super) fn human_bytes(n: u64) -> String {
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

/// Digits grouped by thousands with a narrow no-break space.
pub(super) fn thousands(n: u64) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_for_people() {
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(1_500_000), "1.5 MB");
        assert_eq!(thousands(1234567), "1\u{202f}234\u{202f}567");
    }
}
