//! The access-log writer's cost per record (issue #11, item 9): one record
//! formatted into a reused buffer, as the writer thread does, for a plain
//! allowed request (the loopback benchmark's), a refusal, a request inside
//! an inspected tunnel and a tunnel. `serde` is the derived `Serialize`
//! through `serde_json::to_writer` (the schema's reference), `json` and
//! `squid` are what `format_event` writes. Run with
//! `cargo bench --bench accesslog`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use socialgate::accesslog::{format_event, LogFormat};

#[path = "support/events.rs"]
mod events;

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("accesslog_record");
    let mut buf = Vec::with_capacity(64 * 1024);
    for (name, ev) in events::cases() {
        group.bench_function(format!("{name}/serde"), |b| {
            b.iter(|| {
                buf.clear();
                let _ = serde_json::to_writer(&mut buf, black_box(&ev));
                buf.push(b'\n');
                black_box(buf.len())
            })
        });
        group.bench_function(format!("{name}/json"), |b| {
            b.iter(|| {
                buf.clear();
                format_event(black_box(&ev), LogFormat::Json, &mut buf);
                black_box(buf.len())
            })
        });
        group.bench_function(format!("{name}/squid"), |b| {
            b.iter(|| {
                buf.clear();
                format_event(black_box(&ev), LogFormat::Squid, &mut buf);
                black_box(buf.len())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
