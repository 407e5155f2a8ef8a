//! CSV: each table as RFC 4180 CSV (header line, CRLF line ends, quoting
//! only where needed), or every table in one stream. Suppressed cells are
//! written as `suppressed`, never as a number.

use std::fmt::Write as _;

use super::model::Report;
use super::tables::{tables, Table, Val};

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
pub(crate) fn csv_table(t: &Table) -> String {
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
                vec![
                    Val::Text("plain".into()),
                    Val::Text("with, \"comma\"".into()),
                ],
                vec![Val::Suppressed, Val::Frac(0.5)],
            ],
        };
        assert_eq!(
            csv_table(&t),
            "a,b\r\nplain,\"with, \"\"comma\"\"\"\r\nsuppressed,0.5000\r\n"
        );
    }
}
