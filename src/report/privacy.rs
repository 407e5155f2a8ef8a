//! Privacy: k-suppression and complementary suppression.
//!
//! A number that describes people is shown only when at least k distinct
//! persons back it ([`Cell::gated`]). Where a group's "*" total is shown and
//! exactly one of its platform rows is suppressed, that row could be
//! recovered by subtraction, so the smallest other row is suppressed too
//! ([`suppress_complementary`]).
//!
//! This module decides what is hidden; it must not compute the numbers.

use std::collections::HashMap;

use super::model::{Cell, ALL};

impl<T: Copy> Cell<T> {
    /// `Value(v)` when `persons >= k` or nobody at all (0 persons say
    /// nothing about anyone), else `Suppressed`.
    pub(crate) fn gated(v: T, persons: u64, k: u64) -> Self {
        if persons >= k || persons == 0 {
            Cell::Value(v)
        } else {
            Cell::Suppressed
        }
    }
}

/// When exactly one platform row of a group is suppressed while the group's
/// "*" row is shown, the suppressed value could be recovered by subtraction;
/// suppress the smallest other row too.
pub(super) fn suppress_complementary<R>(
    rows: &mut [R],
    view: impl Fn(&R) -> (&String, &String, Option<u64>),
    suppress: impl Fn(&mut R),
) {
    let mut by_group: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, r) in rows.iter().enumerate() {
        let (g, p, _) = view(r);
        if p != ALL {
            by_group.entry(g.clone()).or_default().push(i);
        }
    }
    for idx in by_group.values() {
        let hidden = idx.iter().filter(|&&i| view(&rows[i]).2.is_none()).count();
        if hidden != 1 {
            continue;
        }
        let smallest = idx
            .iter()
            .filter_map(|&i| view(&rows[i]).2.filter(|&v| v > 0).map(|v| (v, i)))
            .min();
        if let Some((_, i)) = smallest {
            suppress(&mut rows[i]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_number_needs_k_persons_behind_it() {
        assert_eq!(Cell::gated(7u64, 4, 5), Cell::Suppressed);
        assert_eq!(Cell::gated(7u64, 5, 5), Cell::Value(7));
        assert_eq!(
            Cell::gated(0u64, 0, 5),
            Cell::Value(0),
            "nobody: says nothing about anyone"
        );
        assert_eq!(Cell::gated(0.5f64, 1, 1), Cell::Value(0.5));
    }

    struct Row {
        group: String,
        platform: String,
        value: Cell<u64>,
    }

    fn rows(spec: &[(&str, &str, Option<u64>)]) -> Vec<Row> {
        spec.iter()
            .map(|&(g, p, v)| Row {
                group: g.to_owned(),
                platform: p.to_owned(),
                value: v.map_or(Cell::Suppressed, Cell::Value),
            })
            .collect()
    }

    fn suppress(rows: &mut [Row]) {
        suppress_complementary(
            rows,
            |r| (&r.group, &r.platform, r.value.value()),
            |r| r.value = Cell::Suppressed,
        );
    }

    fn shown(rows: &[Row]) -> Vec<Option<u64>> {
        rows.iter().map(|r| r.value.value()).collect()
    }

    #[test]
    fn one_hidden_row_of_a_group_hides_its_smallest_nonzero_sibling() {
        let mut r = rows(&[
            ("sales", ALL, Some(20)),
            ("sales", "linkedin", Some(12)),
            ("sales", "reddit", None),
            ("sales", "x", Some(0)),
            ("sales", "tiktok", Some(6)),
            ("dev", ALL, Some(9)),
            ("dev", "linkedin", Some(9)),
        ]);
        suppress(&mut r);
        assert_eq!(
            shown(&r),
            [Some(20), Some(12), None, Some(0), None, Some(9), Some(9)],
            "tiktok (6) goes, the zero row and other groups stay"
        );
    }

    #[test]
    fn two_hidden_rows_already_protect_each_other() {
        let mut r = rows(&[
            ("sales", ALL, Some(20)),
            ("sales", "linkedin", Some(12)),
            ("sales", "reddit", None),
            ("sales", "tiktok", None),
        ]);
        suppress(&mut r);
        assert_eq!(shown(&r), [Some(20), Some(12), None, None]);
    }

    #[test]
    fn the_group_total_is_never_the_complement() {
        let mut r = rows(&[("sales", ALL, Some(3)), ("sales", "reddit", None)]);
        suppress(&mut r);
        assert_eq!(shown(&r), [Some(3), None], "no other platform row to hide");
    }
}
