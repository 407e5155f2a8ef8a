//! The ledger saved to a file, so that a restart does not refill every
//! budget (`--budget-state`, in the state directory).
//!
//! The file is JSON: a version, when it was written, and one entry per
//! (person, rule) whose day is not over: its tag (a keyed hash of person
//! and rule, never the person), the local date, the counted minutes as
//! runs, and the bytes. It is bounded by the ledger's capacity and pruned
//! to days that are not over each time it is written. It is written
//! atomically: to a temporary file beside it (mode 0600), flushed to disk,
//! then renamed over the old one, so a crash leaves the old file or the
//! new one, never half of one. A file that cannot be read is reported
//! with its path and left alone; budgets then start empty.

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::ledger::{MinuteSet, Restored};
use super::Budgets;

/// The format version this socialgate writes and reads.
pub const VERSION: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    version: u32,
    /// When it was written (RFC 3339, UTC).
    written: jiff::Timestamp,
    entries: Vec<FileEntry>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileEntry {
    /// 32 hex digits.
    tag: String,
    /// The local day (in the rule's time zone) the entry counts.
    date: jiff::civil::Date,
    /// Counted minutes of that day as `[first, length]` runs.
    minutes: Vec<(u32, u32)>,
    bytes: u64,
}

fn hex(tag: &[u8; 16]) -> String {
    tag.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<[u8; 16]> {
    if s.len() != 32 || !s.is_ascii() {
        return None;
    }
    let mut t = [0u8; 16];
    for (i, b) in t.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(t)
}

/// Writes the ledger (days not over, and restored entries still waiting)
/// to `path`, atomically. Returns the entries written.
pub fn save(budgets: &Budgets, path: &Path) -> std::io::Result<usize> {
    let now = budgets.now();
    let mut entries = Vec::new();
    budgets.ledger.for_each(|_, e| {
        let minutes = e.all_minutes();
        if e.day.end > now && (!minutes.is_empty() || e.bytes > 0) {
            entries.push(FileEntry {
                tag: hex(&e.tag),
                date: e.day.date,
                minutes: minutes.runs(),
                bytes: e.spent(now).bytes,
            });
        }
    });
    for (tag, r) in budgets.ledger.waiting() {
        entries.push(FileEntry {
            tag: hex(&tag),
            date: r.day,
            minutes: r.minutes.runs(),
            bytes: r.bytes,
        });
    }
    let n = entries.len();
    let file = File {
        version: VERSION,
        written: now,
        entries,
    };
    let text = serde_json::to_vec(&file).map_err(std::io::Error::other)?;
    write_atomically(path, &text)?;
    Ok(n)
}

/// Reads `path` into the ledger's restored entries; `Ok(0)` when there is
/// no file. Entries of days long over are skipped.
pub fn load(budgets: &Budgets, path: &Path) -> Result<usize, String> {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let file: File = serde_json::from_slice(&text)
        .map_err(|e| format!("{} is not a budget state file: {e}", path.display()))?;
    if file.version != VERSION {
        return Err(format!(
            "{} has version {}; this socialgate reads version {VERSION}",
            path.display(),
            file.version
        ));
    }
    let mut restored = Vec::with_capacity(file.entries.len());
    for (i, e) in file.entries.into_iter().enumerate() {
        let tag = unhex(&e.tag)
            .ok_or_else(|| format!("{}: entries[{i}].tag is not 32 hex digits", path.display()))?;
        let mut minutes = MinuteSet::default();
        for (first, len) in e.minutes {
            if len > 0 && first < MinuteSet::CAPACITY {
                minutes.mark(first, first.saturating_add(len - 1));
            }
        }
        restored.push((
            tag,
            Restored {
                day: e.date,
                minutes,
                bytes: e.bytes,
            },
        ));
    }
    let n = restored.len();
    budgets.ledger.restore(restored);
    budgets.ledger.prune(budgets.now());
    Ok(n)
}

/// Writes `bytes` to `path` through a temporary file beside it: written,
/// flushed to disk, renamed over `path`, and the directory flushed.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "budgets".into());
    let tmp = dir.join(format!(".{name}.tmp"));
    {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::budget::Key;
    use crate::policy::budget::Budget;
    use crate::warn::Person;

    fn budget() -> Budget {
        Budget {
            minutes: Some(30),
            megabytes: None,
            tz: jiff::tz::TimeZone::get("Europe/Berlin").unwrap(),
            tz_name: "Europe/Berlin".into(),
            last_day: Default::default(),
        }
    }

    /// A clock at noon in Berlin, so the minutes charged lie in one day.
    fn noon() -> crate::proxy::Clock {
        let noon: jiff::Timestamp = "2026-11-25T12:00:00+01:00".parse().unwrap();
        crate::proxy::Clock::with_offset(noon.duration_since(jiff::Timestamp::now()))
    }

    #[test]
    fn a_saved_ledger_comes_back_for_the_same_person_and_day() {
        let clock = noon();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("budgets.json");
        let key = Key::new(Person::User("alice".into()), "video".into());
        let a = Budgets::new(&[3; 32], crate::metrics::Metrics::new(), clock.clone());
        let b = budget();
        let now = clock.now();
        let t = |mins: i64| now - jiff::SignedDuration::from_mins(mins);
        for m in [4, 3, 2] {
            a.ledger.charge(&key, &b, t(m), true, 1000);
        }
        let before = a.ledger.standing(&key, &b, now).unwrap().spent;
        assert_eq!(save(&a, &path).unwrap(), 1);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("alice"), "no names in the file: {text}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // Another process with the same key finds it again...
        let again = Budgets::new(&[3; 32], crate::metrics::Metrics::new(), clock.clone());
        assert_eq!(load(&again, &path).unwrap(), 1);
        let after = again.ledger.standing(&key, &b, now).unwrap().spent;
        assert_eq!(before.bytes, 3000);
        assert_eq!(after, before);
        // ...one with another key does not.
        let other = Budgets::new(&[4; 32], crate::metrics::Metrics::new(), clock);
        load(&other, &path).unwrap();
        assert_eq!(other.ledger.standing(&key, &b, now).unwrap().spent.bytes, 0);
    }

    #[test]
    fn a_damaged_file_is_refused_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("budgets.json");
        let b = Budgets::new(
            &[3; 32],
            crate::metrics::Metrics::new(),
            crate::proxy::Clock::default(),
        );
        assert_eq!(load(&b, &path).unwrap(), 0, "no file yet");
        for bad in [
            "{\"version\":1",
            "{\"version\":9,\"written\":\"2026-01-01T00:00:00Z\",\"entries\":[]}",
            "{\"version\":1,\"written\":\"2026-01-01T00:00:00Z\",\"entries\":[{\"tag\":\"zz\",\"date\":\"2026-01-01\",\"minutes\":[],\"bytes\":0}]}",
        ] {
            std::fs::write(&path, bad).unwrap();
            let e = load(&b, &path).unwrap_err();
            assert!(e.contains("budgets.json"), "{e}");
        }
    }
}
