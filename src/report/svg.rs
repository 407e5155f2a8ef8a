//! The page's charts as inline SVG: horizontal bars, a daily trend and the
//! hour-of-week heat map. Geometry is computed here; the markup is in
//! `templates/report/*.svg` (askama, escaped by default).
//!
//! Charts only draw what they are given: a suppressed value arrives as
//! `None` (or [`Cell::Suppressed`]) and is drawn hatched or left out, never
//! as a number. This module must not compute metrics or decide suppression.

use askama::Template;

use super::model::{Cell, HeatMap};

const PALETTE: [&str; 8] = [
    "#2563eb", "#db2777", "#059669", "#d97706", "#7c3aed", "#0891b2", "#dc2626", "#4b5563",
];

/// One bar: its label, its value (`None` when suppressed) and the value as
/// shown next to the bar.
pub(super) struct Bar {
    pub(super) label: String,
    pub(super) value: Option<f64>,
    pub(super) shown: String,
}

#[derive(Template)]
#[template(path = "report/bars.svg")]
struct Bars<'a> {
    title: &'a str,
    width: String,
    height: String,
    left: String,
    label_x: String,
    rows: Vec<BarRow>,
}

struct BarRow {
    label: String,
    label_y: String,
    y: String,
    width: String,
    /// `None`: suppressed, drawn hatched.
    fill: Option<&'static str>,
    text_x: String,
    text_y: String,
    text: String,
}

/// Horizontal bar chart; suppressed values are drawn as a hatched bar.
pub(super) fn bar_chart(title: &str, items: &[Bar]) -> askama::Result<String> {
    let row_h = 26.0;
    let left = 130.0;
    let width = 560.0;
    // Room for the longest value text after the longest bar.
    let text_w = items
        .iter()
        .map(|i| i.shown.chars().count())
        .max()
        .unwrap_or(0) as f64
        * 6.8
        + 12.0;
    let bar_w = width - left - text_w.max(60.0);
    let h = 30.0 + row_h * items.len().max(1) as f64;
    let max = items
        .iter()
        .filter_map(|i| i.value)
        .fold(0.0f64, f64::max)
        .max(1e-9);
    let rows = items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let y = 20.0 + row_h * i as f64;
            let (w, fill, text_x, text) = match item.value {
                Some(v) => {
                    let w = (v / max * bar_w).max(1.0);
                    let fill = PALETTE[i % PALETTE.len()];
                    (w, Some(fill), left + w + 6.0, item.shown.clone())
                }
                None => (bar_w, None, left + 8.0, "hidden".to_owned()),
            };
            BarRow {
                label: item.label.clone(),
                label_y: (y + 15.0).to_string(),
                y: y.to_string(),
                width: format!("{w:.1}"),
                fill,
                text_x: format!("{text_x:.1}"),
                text_y: (y + 14.0).to_string(),
                text,
            }
        })
        .collect();
    Bars {
        title,
        width: width.to_string(),
        height: h.to_string(),
        left: left.to_string(),
        label_x: (left - 8.0).to_string(),
        rows,
    }
    .render()
}

#[derive(Template)]
#[template(path = "report/trend.svg")]
struct Trend<'a> {
    title: &'a str,
    width: String,
    height: String,
    grid: Vec<GridLine>,
    days: Vec<Label>,
    no_data: Option<(String, String)>,
    series: Vec<Line>,
}

struct GridLine {
    x1: String,
    x2: String,
    y: String,
    text_x: String,
    text_y: String,
    value: String,
}

struct Label {
    x: String,
    y: String,
    text: String,
}

struct Line {
    color: &'static str,
    /// Segments between two complete days.
    solid: String,
    /// Segments that touch a partial day (dashed).
    dashed: String,
    /// (x, y, hollow: a partial day)
    points: Vec<(String, String, bool)>,
}

/// One line of the daily chart: a value per day (`None`: suppressed).
pub(super) struct Series {
    pub(super) name: String,
    pub(super) values: Vec<Option<f64>>,
}

/// Multi-series daily line chart. A missing (suppressed) value breaks the
/// line; a partial day (`partial[i]`) is drawn hollow and joined by dashes,
/// so a day cut short does not read as a drop. Returns the SVG and the
/// legend (colour, name) of every series drawn, for the page to list.
pub(super) fn line_chart(
    title: &str,
    days: &[String],
    partial: &[bool],
    series: &[Series],
) -> askama::Result<(String, Vec<(&'static str, String)>)> {
    let (w, h) = (1100.0, 260.0);
    let (l, r, t, b) = (50.0, 20.0, 16.0, 36.0);
    let pw = w - l - r;
    let ph = h - t - b;
    let max = series
        .iter()
        .flat_map(|s| s.values.iter().flatten())
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
    let grid = (0..=4)
        .map(|i| {
            let v = max * i as f64 / 4.0;
            let yy = y(v);
            GridLine {
                x1: l.to_string(),
                x2: (l + pw).to_string(),
                y: format!("{yy:.1}"),
                text_x: (l - 6.0).to_string(),
                text_y: format!("{:.1}", yy + 4.0),
                value: v.round().to_string(),
            }
        })
        .collect();
    let step = n.div_ceil(12).max(1);
    let is_partial = |i: usize| partial.get(i).copied().unwrap_or(false);
    let day_labels = days
        .iter()
        .enumerate()
        .filter(|&(i, _)| i % step == 0 || i + 1 == n)
        .map(|(i, d)| Label {
            x: format!("{:.1}", x(i)),
            y: (h - b + 18.0).to_string(),
            text: format!(
                "{}{}",
                d.get(5..).unwrap_or(d),
                if is_partial(i) { "*" } else { "" }
            ),
        })
        .collect();
    let no_data = series
        .is_empty()
        .then(|| ((l + 10.0).to_string(), (t + 30.0).to_string()));
    let mut legend = Vec::new();
    let lines = series
        .iter()
        .enumerate()
        .map(|(si, s)| {
            let color = PALETTE[si % PALETTE.len()];
            legend.push((color, s.name.clone()));
            let mut solid = Vec::new();
            let mut dashed = Vec::new();
            let mut points = Vec::new();
            let mut prev: Option<(usize, String, String)> = None;
            for (i, v) in s.values.iter().enumerate() {
                match v {
                    Some(v) => {
                        let (px, py) = (format!("{:.1}", x(i)), format!("{:.1}", y(*v)));
                        if let Some((pi, ppx, ppy)) = &prev {
                            let seg = format!("M{ppx},{ppy} L{px},{py}");
                            if is_partial(*pi) || is_partial(i) {
                                dashed.push(seg);
                            } else {
                                solid.push(seg);
                            }
                        }
                        points.push((px.clone(), py.clone(), is_partial(i)));
                        prev = Some((i, px, py));
                    }
                    None => prev = None,
                }
            }
            Line {
                color,
                solid: solid.join(" "),
                dashed: dashed.join(" "),
                points,
            }
        })
        .collect();
    let svg = Trend {
        title,
        width: w.to_string(),
        height: h.to_string(),
        grid,
        days: day_labels,
        no_data,
        series: lines,
    }
    .render()?;
    Ok((svg, legend))
}

#[derive(Template)]
#[template(path = "report/group.svg")]
struct GroupChart<'a> {
    caption: &'a str,
    height: String,
    rows: Vec<GroupRowSvg>,
}

struct GroupRowSvg {
    label: String,
    label_y: String,
    y: String,
    /// Adoption bar width, or `None` when hidden (hatched).
    adoption: Option<String>,
    /// Contributors bar width (of members), when shown.
    contributors: Option<String>,
    text: String,
    text_x: String,
}

/// One platform in a group's small chart.
pub(super) struct GroupBar {
    pub(super) label: String,
    /// Share of members active (`None`: hidden).
    pub(super) adoption: Option<f64>,
    /// Share of members who contributed (`None`: hidden or not visible).
    pub(super) contributors: Option<f64>,
}

/// A group's small chart: adoption per platform on a 0–100 % scale (the
/// same for every group, so the charts compare), contributors as a darker
/// inner bar.
pub(super) fn group_bars(caption: &str, bars: &[GroupBar]) -> askama::Result<String> {
    let (left, width) = (78.0, 150.0);
    let row_h = 18.0;
    let rows = bars
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let y = 4.0 + row_h * i as f64;
            let w = |v: f64| format!("{:.1}", (v.clamp(0.0, 1.0) * width).max(1.0));
            GroupRowSvg {
                label: b.label.clone(),
                label_y: format!("{:.1}", y + 11.0),
                y: format!("{y:.1}"),
                adoption: b.adoption.map(w),
                contributors: b.contributors.filter(|&c| c > 0.0).map(w),
                text: match (b.adoption, b.contributors) {
                    (Some(a), Some(c)) if c > 0.0 => {
                        format!("{:.0}% · {:.0}% write", a * 100.0, c * 100.0)
                    }
                    (Some(a), _) => format!("{:.0}%", a * 100.0),
                    (None, _) => "—".to_owned(),
                },
                text_x: format!(
                    "{:.1}",
                    left + b.adoption.map_or(width, |a| a.clamp(0.0, 1.0) * width) + 4.0
                ),
            }
        })
        .collect();
    GroupChart {
        caption,
        height: format!("{:.0}", 8.0 + row_h * bars.len().max(1) as f64),
        rows,
    }
    .render()
}

/// The smallest of 1, 2, 2.5, 5 × a power of ten that is at least `v`.
fn nice_ceiling(v: f64) -> f64 {
    let mag = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if v <= m * mag {
            return m * mag;
        }
    }
    10.0 * mag
}

#[derive(Template)]
#[template(path = "report/heat.svg")]
struct Heat<'a> {
    tz: &'a str,
    width: String,
    height: String,
    hours: Vec<Label>,
    rows: Vec<HeatRow>,
}

struct HeatRow {
    day: &'static str,
    label: Label,
    cells: Vec<HeatCell>,
}

struct HeatCell {
    x: String,
    y: String,
    width: String,
    height: String,
    fill: String,
    hour: String,
    title: String,
}

/// Hour-of-week heat map; suppressed hours are hatched.
pub(super) fn heat_map(hm: &HeatMap, tz: &str, k: u64) -> askama::Result<String> {
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
    let hours = (0..24)
        .map(|hr| Label {
            x: format!("{:.1}", l + cell * hr as f64 + cell / 2.0),
            y: (t - 8.0).to_string(),
            text: format!("{hr:02}"),
        })
        .collect();
    let rows = hm
        .foreground_requests
        .iter()
        .enumerate()
        .map(|(d, row)| {
            let y = t + ch * d as f64;
            let day = hm.days.get(d).copied().unwrap_or("");
            let cells = row
                .iter()
                .enumerate()
                .map(|(hr, c)| {
                    let (fill, title) = match c {
                        Cell::Value(0) => ("#f1f5f9".to_owned(), "0".to_owned()),
                        Cell::Value(v) => {
                            let a = 0.15 + 0.85 * (*v as f64 / max).sqrt();
                            (format!("rgba(37,99,235,{a:.2})"), v.to_string())
                        }
                        Cell::Suppressed => (
                            "url(#hatch)".to_owned(),
                            format!("hidden: fewer than {k} persons"),
                        ),
                    };
                    HeatCell {
                        x: format!("{:.1}", l + cell * hr as f64 + 1.0),
                        y: format!("{:.1}", y + 1.0),
                        width: format!("{:.1}", cell - 2.0),
                        height: format!("{:.1}", ch - 2.0),
                        fill,
                        hour: format!("{hr:02}"),
                        title,
                    }
                })
                .collect();
            HeatRow {
                day,
                label: Label {
                    x: (l - 8.0).to_string(),
                    y: format!("{:.1}", y + ch / 2.0 + 4.0),
                    text: day.to_owned(),
                },
                cells,
            }
        })
        .collect();
    Heat {
        tz,
        width: w.to_string(),
        height: h.to_string(),
        hours,
        rows,
    }
    .render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_ceilings_are_round() {
        assert_eq!(nice_ceiling(37.0), 50.0);
        assert_eq!(nice_ceiling(1.0), 1.0);
        assert_eq!(nice_ceiling(201.0), 250.0);
    }

    #[test]
    fn labels_are_escaped_and_suppressed_bars_show_no_number() {
        let svg = bar_chart(
            "<b>x</b>",
            &[
                Bar {
                    label: "a&b".into(),
                    value: Some(3.0),
                    shown: "3".into(),
                },
                Bar {
                    label: "c".into(),
                    value: None,
                    shown: "7".into(),
                },
            ],
        )
        .unwrap();
        assert!(
            svg.contains("&#60;b&#62;x&#60;/b&#62;") && svg.contains("a&#38;b"),
            "{svg}"
        );
        assert!(svg.contains("url(#hatch)") && !svg.contains(">7<"), "{svg}");
    }
}
