//! Writes N deterministic synthetic access-log lines (JSON lines) to stdout
//! or a file, for measuring `socialgate report` on large inputs.
//!
//! Usage: `cargo run --release --example gen_log -- 1000000 > /tmp/access.log`
//! (optional second argument: output file). 2000 persons in 6 groups over
//! 30 days, time ordered, with tunnels, plain requests, refusals and
//! report-mode would-be refusals. It must stay dependency-free and
//! deterministic (same N, same bytes).

use std::io::{BufWriter, Write};

const GROUPS: [&str; 6] = [
    "sales",
    "marketing",
    "engineering",
    "finance",
    "support",
    "hr",
];
const PLATFORMS: [(&str, &str); 10] = [
    ("linkedin", "professional"),
    ("youtube", "video"),
    ("x", "social"),
    ("facebook", "social"),
    ("instagram", "social"),
    ("tiktok", "video"),
    ("reddit", "social"),
    ("mastodon", "social"),
    ("bluesky", "social"),
    ("whatsapp", "messaging"),
];

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let n: u64 = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let out: Box<dyn Write> = match args.next() {
        Some(path) => Box::new(std::fs::File::create(path)?),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut w = BufWriter::with_capacity(1 << 20, out);
    let mut seed: u64 = 0x5eed;
    let mut rnd = move |m: u64| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) % m
    };
    let start: i64 = 1_772_409_600; // 2026-03-02T00:00:00Z
    let span: i64 = 30 * 86_400;
    for i in 0..n {
        let secs = start + (i as i128 * span as i128 / n.max(1) as i128) as i64;
        let t = jiff::Timestamp::from_second(secs).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        let person = rnd(2000);
        let group = GROUPS[(person % 6) as usize];
        let (platform, category) = PLATFORMS[rnd(10) as usize];
        let tunnel = rnd(4) != 0;
        let refused = (group == "finance" && platform == "tiktok") || rnd(50) == 0;
        let report_mode = !refused && rnd(40) == 0;
        let (kind, method, activity) = if tunnel {
            ("tunnel", "CONNECT", "null")
        } else if rnd(5) == 0 {
            ("request", "POST", "\"write\"")
        } else {
            ("request", "GET", "\"view\"")
        };
        let class = if rnd(8) == 0 { "embedded" } else { "primary" };
        let foreground = class == "primary" && (tunnel || rnd(3) == 0);
        let (action, mode, status) = if refused {
            ("block", "enforce", 403)
        } else if report_mode {
            ("block", "report", 200)
        } else {
            ("allow", "enforce", 200)
        };
        let (user, auth) = if person % 50 == 0 {
            ("null".to_owned(), "none")
        } else {
            (
                format!("\"p:{:016x}\"", person.wrapping_mul(0x9e3779b97f4a7c15)),
                "basic",
            )
        };
        writeln!(
            w,
            r#"{{"time":"{t}","kind":"{kind}","client":"10.{}.{}.{}","user":{user},"auth":"{auth}","groups":["{group}","staff"],"group":"{group}","method":"{method}","host":"www.{platform}.com","port":443,"platform":"{platform}","category":"{category}","class":"{class}","activity":{activity},"foreground":{foreground},"action":"{action}","mode":"{mode}","rule":"r-{group}-{platform}","reason":"rule-matched","status":{status},"bytes_up":{},"bytes_down":{},"duration_ms":{}}}"#,
            person / 256,
            person % 256,
            1 + person % 200,
            if refused { 0 } else { rnd(20_000) },
            if refused { 0 } else { rnd(500_000) },
            rnd(60_000),
        )?;
    }
    w.flush()
}
