//! The policy loader: any policy directory, never a panic; a directory
//! that does not load fails with errors that each name one of its files
//! and, unless the problem is the whole file, where in it.

use proptest::prelude::*;
use socialgate::policy::load_dir;

/// Which file of the directory is mutated.
const FILES: [(&str, &str); 4] = [
    ("policy.yaml", "policy"),
    ("catalog.yaml", "catalog"),
    ("activities.yaml", "activities"),
    ("tests.yaml", "cases"),
];

fn shipped(name: &str) -> Vec<u8> {
    let corpus = match name {
        "policy.yaml" => "policy",
        "catalog.yaml" => "catalog",
        "activities.yaml" => "activities",
        _ => "cases",
    };
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz/corpus")
        .join(corpus);
    // The first seed in name order is the shipped file (or its head).
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let pick = files.iter().find(|p| {
        p.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("shipped")
    });
    std::fs::read(pick.unwrap_or(&files[0])).unwrap()
}

fn directory() -> impl Strategy<Value = (usize, Vec<u8>)> {
    (0..FILES.len()).prop_flat_map(|i| (Just(i), crate::seeded(FILES[i].1)))
}

proptest! {
    #![proptest_config(crate::config(1_500))]

    #[test]
    fn any_policy_directory_loads_or_says_where_it_is_wrong((which, bytes) in directory()) {
        let dir = tempfile::tempdir().unwrap();
        for (i, (name, _)) in FILES.iter().enumerate() {
            let content = if i == which { bytes.clone() } else { shipped(name) };
            std::fs::write(dir.path().join(name), content).unwrap();
        }
        let Err(errors) = load_dir(dir.path()) else {
            return Ok(());
        };
        prop_assert!(!errors.0.is_empty(), "an error without errors");
        for e in &errors.0 {
            let file = e.file.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
            prop_assert!(FILES.iter().any(|(n, _)| *n == file), "error names no file of the directory: {e}");
            prop_assert!(!e.message.trim().is_empty(), "an error without a message: {e:?}");
            let whole_file = e.message.contains("cannot read")
                || e.message.contains("empty")
                || e.message.contains("UTF-8")
                || e.message.contains("not valid");
            prop_assert!(
                e.location.is_some() || !e.path.is_empty() || whole_file,
                "no place in the file: {e:?}"
            );
            let shown = e.to_string();
            prop_assert!(shown.contains(&file), "the message names the file: {shown}");
        }
    }
}
