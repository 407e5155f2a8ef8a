//! Instructions per access-log record, for `valgrind --tool=callgrind`
//! (which counts instructions whatever else the machine is doing): the
//! records of `benches/accesslog.rs`, each formatted 10,000 times into a
//! reused buffer, as the writer thread does.
//!
//! ```sh
//! cargo build --release --example accesslog_cost
//! for how in serde json squid; do for case in plain refused inspected tunnel; do
//!   valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.out \
//!     --toggle-collect='*accesslog_cost*one_record*' \
//!     target/release/examples/accesslog_cost $how $case 2>/dev/null
//!   echo "$how $case $(callgrind_annotate /tmp/cg.out | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1 / 10000}')"
//! done; done
//! ```
//!
//! `serde` is the derived `Serialize` through `serde_json::to_writer` (the
//! schema's reference); `json` and `squid` are what `format_event` writes.

use std::hint::black_box;

use socialgate::accesslog::{format_event, LogFormat};
use socialgate::event::Event;

#[path = "../benches/support/events.rs"]
mod events;

const RECORDS: usize = 10_000;

#[derive(Clone, Copy)]
enum How {
    Serde,
    Format(LogFormat),
}

#[inline(never)]
fn one_record(ev: &Event, how: How, buf: &mut Vec<u8>) {
    match how {
        How::Serde => {
            let _ = serde_json::to_writer(&mut *buf, ev);
            buf.push(b'\n');
        }
        How::Format(f) => format_event(ev, f, buf),
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let how = match args.next().as_deref() {
        Some("serde") => How::Serde,
        Some("json") | None => How::Format(LogFormat::Json),
        Some("squid") => How::Format(LogFormat::Squid),
        Some(other) => {
            eprintln!("accesslog_cost: unknown writer {other:?}; use serde, json or squid");
            std::process::exit(2);
        }
    };
    let case = args.next().unwrap_or_else(|| "plain".to_string());
    let Some((_, ev)) = events::cases().into_iter().find(|(n, _)| *n == case) else {
        eprintln!(
            "accesslog_cost: unknown record {case:?}; use plain, refused, inspected or tunnel"
        );
        std::process::exit(2);
    };
    let mut buf = Vec::with_capacity(64 * 1024);
    for _ in 0..RECORDS {
        buf.clear();
        one_record(black_box(&ev), how, &mut buf);
    }
    black_box(buf.len());
}
