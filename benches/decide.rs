//! `decide` with a 100,000-domain catalog: target under 1 µs per decision.
//!
//! The catalog is the shipped one plus 1,000 generated platforms of 100
//! domains each; the policy is the shipped policy. Run with
//! `cargo bench --bench decide`.

use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};
use socialgate::policy::{decide, load_dir, normalize_host, RequestFacts};

fn big_policy_dir() -> tempfile::TempDir {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let dir = tempfile::tempdir().unwrap();
    let mut catalog = std::fs::read_to_string(shipped.join("catalog.yaml")).unwrap();
    for p in 0..1000 {
        catalog.push_str(&format!(
            "  gen{p}:\n    name: Generated {p}\n    category: social\n    domains: ["
        ));
        for d in 0..100 {
            if d > 0 {
                catalog.push_str(", ");
            }
            catalog.push_str(&format!("site{d}-{p}.gen{}.example", p % 37));
        }
        catalog.push_str("]\n");
    }
    std::fs::write(dir.path().join("catalog.yaml"), catalog).unwrap();
    std::fs::copy(shipped.join("policy.yaml"), dir.path().join("policy.yaml")).unwrap();
    dir
}

fn bench(c: &mut Criterion) {
    let dir = big_policy_dir();
    let policy = load_dir(dir.path()).expect("benchmark policy compiles");
    assert!(
        policy.domains.len() >= 100_000,
        "catalog has {} domains",
        policy.domains.len()
    );
    let now: jiff::Timestamp = "2026-11-25T10:30:00+01:00".parse().unwrap();
    let cases = [
        ("blocked_platform", "127.0.0.1", "www.tiktok.com"),
        ("allowed_platform", "127.0.0.1", "www.linkedin.com"),
        ("time_window_rule", "10.9.9.9", "www.youtube.com"),
        (
            "generated_platform",
            "10.10.1.1",
            "a.b.site42-512.gen31.example",
        ),
        (
            "not_a_platform",
            "127.0.0.1",
            "static.assets.docs.example.org",
        ),
        ("no_group", "192.0.2.1", "www.linkedin.com"),
    ];
    let mut group = c.benchmark_group("decide_100k_domains");
    for (name, client, host) in cases {
        let host = normalize_host(host).unwrap();
        let facts = RequestFacts {
            client: client.parse().unwrap(),
            user: None,
            host: &host,
            port: 443,
            activity: None,
        };
        group.bench_function(name, |b| {
            b.iter(|| decide(black_box(&policy), black_box(&facts), black_box(now)))
        });
    }
    group.bench_function("normalize_host", |b| {
        b.iter(|| normalize_host(black_box("WWW.TikTok.com.")))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
