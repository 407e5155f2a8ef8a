//! Fuzzing on stable Rust: every parser that takes outside input, fed
//! mutated seeds from committed corpora (`tests/fuzz/corpus/TARGET/`) and
//! random input, checked for panics and for the properties each must keep.
//! proptest mutates and shrinks; a failure is written to
//! `tests/fuzz/TARGET.proptest-regressions` (commit it) and replayed first
//! on every later run. `host.proptest-regressions` holds the first find:
//! `1.2.3.4.` normalised to a "numeric name" that normalised again to an
//! address (fixed: it is the address, as in browsers).
//!
//! `cargo test --test fuzz` runs a bounded pass (about a minute in all, in
//! debug, as CI does). A longer run:
//!
//! ```sh
//! FUZZ_CASES=200000 cargo test --release --test fuzz -- --nocapture
//! ```
//!
//! Targets: the policy loader (YAML → compile never panics, every error
//! names its file and a place), host normalisation, the ClientHello peek,
//! the access-log reader, and the activity matcher.

mod activity;
mod hello;
mod host;
mod log;
mod policy;

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence};

/// Cases per target: `FUZZ_CASES`, or `default` (sized so that the whole
/// bounded pass takes about a minute in a debug build).
pub fn config(default: u32) -> Config {
    let cases = std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    Config {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        ..Config::default()
    }
}

/// The committed seeds of `target`, as bytes.
pub fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let seeds: Vec<Vec<u8>> = files.iter().map(|p| std::fs::read(p).unwrap()).collect();
    assert!(!seeds.is_empty(), "no seeds in {}", dir.display());
    seeds
}

/// One way to change an input.
#[derive(Debug, Clone)]
pub enum Mutation {
    Flip(usize, u8),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    /// Copy a range of the input over another place (duplicates structure).
    Splice(usize, usize, usize),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    // Bytes that matter to the parsers here: YAML and JSON punctuation,
    // line ends, quotes, control bytes, high bytes.
    let interesting = prop_oneof![
        Just(b"\n".to_vec()),
        Just(b": ".to_vec()),
        Just(b"- ".to_vec()),
        Just(b"\"".to_vec()),
        Just(b"{}".to_vec()),
        Just(b"[]".to_vec()),
        Just(b"*a".to_vec()),
        Just(b"&a ".to_vec()),
        Just(b"!!binary ".to_vec()),
        Just(b"\0".to_vec()),
        Just(b"\xff\xfe".to_vec()),
        Just(b"\\u0000".to_vec()),
        Just(b"99999999999999999999".to_vec()),
        Just(b"-1".to_vec()),
        Just(b"~".to_vec()),
        proptest::collection::vec(any::<u8>(), 1..8),
    ];
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<usize>(), interesting).prop_map(|(i, v)| Mutation::Insert(i, v)),
        (any::<usize>(), 1usize..64).prop_map(|(i, n)| Mutation::Delete(i, n)),
        (any::<usize>(), 1usize..256, any::<usize>())
            .prop_map(|(a, n, b)| Mutation::Splice(a, n, b)),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

/// Applies `muts` to `input`.
pub fn mutate(mut input: Vec<u8>, muts: &[Mutation]) -> Vec<u8> {
    for m in muts {
        let len = input.len();
        match m {
            Mutation::Flip(i, b) if len > 0 => input[i % len] ^= b | 1,
            Mutation::Insert(i, v) => {
                let at = if len == 0 { 0 } else { i % (len + 1) };
                input.splice(at..at, v.iter().copied());
            }
            Mutation::Delete(i, n) if len > 0 => {
                let at = i % len;
                let end = (at + n).min(len);
                input.drain(at..end);
            }
            Mutation::Splice(a, n, b) if len > 0 => {
                let from = a % len;
                let end = (from + n).min(len);
                let piece = input[from..end].to_vec();
                let at = b % (len + 1);
                input.splice(at..at, piece);
                input.truncate(1 << 20);
            }
            Mutation::Truncate(i) if len > 0 => input.truncate(i % len),
            _ => {}
        }
    }
    input
}

/// A seed of `target`, mutated up to eight times, or (one case in eight)
/// entirely random bytes.
pub fn seeded(target: &str) -> impl Strategy<Value = Vec<u8>> {
    let seeds = corpus(target);
    let n = seeds.len();
    prop_oneof![
        7 => (0..n, proptest::collection::vec(mutation(), 0..8))
            .prop_map(move |(i, m)| mutate(seeds[i].clone(), &m)),
        1 => proptest::collection::vec(any::<u8>(), 0..512),
    ]
}
