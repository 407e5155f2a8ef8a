//! The access-log reader: any line, never a panic; any file of lines is
//! read to the end with every line counted as a record or as malformed.

use proptest::prelude::*;
use socialgate::report::read::{parse_line, read_logs, ReadStats};

proptest! {
    #![proptest_config(crate::config(20_000))]

    #[test]
    fn any_log_line_parses_or_is_refused(bytes in crate::seeded("log")) {
        for line in bytes.split(|&b| b == b'\n') {
            if let Ok(r) = parse_line(line) {
                // A record that parsed is usable.
                let _ = (r.verdict(), r.unknown_values(), r.host.len());
            }
        }
    }
}

proptest! {
    #![proptest_config(crate::config(300))]

    #[test]
    fn any_log_file_is_read_to_the_end_and_every_line_counted(bytes in crate::seeded("log")) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("access.log");
        std::fs::write(&p, &bytes).unwrap();
        let mut stats = ReadStats::default();
        let mut seen = 0u64;
        read_logs(&[p], &mut stats, |_| seen += 1);
        prop_assert_eq!(seen, stats.records);
        prop_assert_eq!(stats.records + stats.malformed, stats.lines, "{:?}", stats);
        prop_assert!(stats.failed_files().next().is_none() || bytes.starts_with(b"\x1f\x8b"));
    }
}
