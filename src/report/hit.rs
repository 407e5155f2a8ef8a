//! The report's view of an access-log line: [`Hit`], the fields the report
//! uses, borrowed from a [`Record`](super::read::Record) that serde_json
//! parsed (strings are borrowed from the line unless they hold escapes).
//!
//! Lines are parsed by serde_json only; an earlier hand-written fast path
//! was twice as fast but not needed for the 500k lines/s target (see
//! docs/benchmarks-report.md). This module must not interpret records.

use std::borrow::Cow;
use std::path::PathBuf;

use jiff::Timestamp;

use super::read::{read_lines_with, ReadStats, Record};
use crate::event::AuthMethod;

/// Reads every input (see [`super::read::read_logs`]) and calls `f` with the
/// lean view of each well-formed record, with the same counting and
/// malformed-line reporting as `read_logs`.
pub fn read_hits<F>(inputs: &[PathBuf], stats: &mut ReadStats, mut f: F)
where
    F: FnMut(&Hit<'_>),
{
    read_lines_with(inputs, stats, |line| {
        let rec: Record<'_> = serde_json::from_slice(line)?;
        f(&Hit::from_record(&rec));
        Ok(())
    });
}

/// A record's group names.
#[derive(Debug, Clone, Copy)]
pub enum Groups<'a> {
    /// The names of a record parsed by serde.
    Names(&'a [Cow<'a, str>]),
}

impl<'a> Groups<'a> {
    pub fn len(&self) -> usize {
        match self {
            Groups::Names(n) => n.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn iter(&self) -> GroupIter<'a> {
        GroupIter { g: *self, i: 0 }
    }
}

/// Iterator over [`Groups`].
pub struct GroupIter<'a> {
    g: Groups<'a>,
    i: usize,
}

impl<'a> Iterator for GroupIter<'a> {
    type Item = &'a str;
    #[inline]
    fn next(&mut self) -> Option<&'a str> {
        let s = match self.g {
            Groups::Names(n) => n.get(self.i).map(|c| c.as_ref()),
        };
        self.i += 1;
        s
    }
}

impl PartialEq for Groups<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

/// The fields of an access-log record that the report uses.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit<'a> {
    pub time: Timestamp,
    pub client: &'a str,
    pub user: Option<&'a str>,
    pub auth: AuthMethod,
    pub groups: Groups<'a>,
    pub platform: Option<&'a str>,
    pub class: Option<&'a str>,
    pub activity: Option<&'a str>,
    pub foreground: bool,
    pub action: &'a str,
    pub mode: &'a str,
    pub reason: &'a str,
    pub status: u16,
    pub bytes_up: u64,
    pub bytes_down: u64,
}

impl<'a> Hit<'a> {
    /// The lean view of a record parsed by serde.
    pub fn from_record(r: &'a Record<'_>) -> Hit<'a> {
        Hit {
            time: r.time,
            client: &r.client,
            user: r.user.as_deref(),
            auth: r.auth,
            groups: Groups::Names(&r.groups),
            platform: r.platform.as_deref(),
            class: r.class.as_deref(),
            activity: r.activity.as_deref(),
            foreground: r.foreground,
            action: &r.action,
            mode: &r.mode,
            reason: &r.reason,
            status: r.status,
            bytes_up: r.bytes_up,
            bytes_down: r.bytes_down,
        }
    }

    /// Refused: `block` enforced, or a 403/407 answer (as [`Record::refused`]).
    #[inline]
    pub fn refused(&self) -> bool {
        (self.action == "block" && self.mode == "enforce")
            || self.status == 403
            || self.status == 407
    }

    /// Would have been refused: a `block` rule in `report` mode (traffic passed).
    #[inline]
    pub fn would_refuse(&self) -> bool {
        self.action == "block" && self.mode == "report" && !self.refused()
    }
}
