//! Minting a leaf certificate for an inspected tunnel: target under 1 ms.
//!
//! `mint` is the cost of a cache miss (a new name, or a renewal): an ECDSA
//! P-256 signature by the company CA and the DER of the certificate.
//! `cached` is the cost of a hit. `server_config` adds what each inspected
//! connection costs besides: the per-connection rustls server settings.
//! Run with `cargo bench --bench leaf`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use socialgate::ca::{self, CaPaths, CompanyCa};
use socialgate::proxy::inspect::{InspectConfig, Inspector, Leaves};

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let paths = CaPaths {
        cert: dir.path().join("ca.pem"),
        key: dir.path().join("ca.key"),
    };
    ca::init(&paths, Some("Bench Corp")).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let leaves = Leaves::new(
        CompanyCa::load(&paths).unwrap(),
        provider,
        Duration::from_secs(7 * 86_400),
        10_000,
    )
    .unwrap();
    let mut n = 0u64;
    c.bench_function("mint a leaf", |b| {
        b.iter(|| {
            n += 1;
            black_box(leaves.mint(&format!("host{n}.example.com")).unwrap())
        })
    });
    leaves.get("www.linkedin.com").unwrap();
    c.bench_function("cached leaf", |b| {
        b.iter(|| black_box(leaves.get("www.linkedin.com").unwrap()))
    });
    let inspector = Inspector::new(&InspectConfig {
        ca: paths.clone(),
        upstream_ca: Vec::new(),
        leaf_validity: Duration::from_secs(7 * 86_400),
        leaf_cache: 10_000,
    })
    .unwrap();
    let leaf = inspector.leaves.get("www.linkedin.com").unwrap();
    c.bench_function("per-connection server config", |b| {
        b.iter(|| black_box(inspector.server_config(leaf.clone(), Some(b"h2"))))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50).measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
