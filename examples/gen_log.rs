//! Writes N deterministic synthetic access-log lines (JSON lines) of a
//! company that behaves like one, for the report's screenshot and for
//! measuring `socialgate report` on large inputs.
//!
//! Usage: `cargo run --release --example gen_log -- [LINES] [FILE] [PERSONS]`
//! (default 1,000,000 lines to stdout; PERSONS defaults to LINES / 2000,
//! at least 150). Same arguments, same bytes. It must stay deterministic
//! and need nothing beyond the crate's own dependencies.
//!
//! The company: departments of different sizes inside `staff` (one of
//! them, legal, very small), a `managers` group across departments, and
//! unauthenticated guests. Each department has its own platforms and its
//! own share of writers; TikTok is refused to everyone but marketing (its
//! tracking pixel on other sites too: embedded, not demand), Instagram to
//! sales, most platforms to finance, which may read LinkedIn but not
//! write there, and engineering has Instagram under a rule in report mode.
//! Reddit shows support a warning once a day; most of them continue.
//! LinkedIn, X, Facebook and Reddit are inspected (requests carry their
//! activity); the others are tunnels. Working hours are Europe/Berlin
//! (the period crosses the change to summer time on 2026-03-29), weekends
//! are quiet, and the log ends where LINES runs out, usually in the middle
//! of the last day.

use std::io::{BufWriter, Write};

/// (platform, category, inspected, host, embedded host) as in the shipped
/// catalog, so `simulate` replays the log against policies/ faithfully.
const PLATFORMS: [(&str, &str, bool, &str, &str); 10] = [
    (
        "linkedin",
        "professional",
        true,
        "www.linkedin.com",
        "platform.linkedin.com",
    ),
    (
        "youtube",
        "video",
        false,
        "www.youtube.com",
        "www.youtube-nocookie.com",
    ),
    ("x", "social", true, "x.com", "platform.twitter.com"),
    (
        "facebook",
        "social",
        true,
        "www.facebook.com",
        "connect.facebook.net",
    ),
    (
        "instagram",
        "social",
        false,
        "www.instagram.com",
        "www.instagram.com",
    ),
    (
        "tiktok",
        "video",
        false,
        "www.tiktok.com",
        "analytics.tiktok.com",
    ),
    ("reddit", "social", true, "www.reddit.com", "alb.reddit.com"),
    (
        "mastodon",
        "social",
        false,
        "mastodon.social",
        "mastodon.social",
    ),
    ("bluesky", "social", false, "bsky.app", "bsky.app"),
    (
        "whatsapp",
        "messaging",
        false,
        "web.whatsapp.com",
        "web.whatsapp.com",
    ),
];
const LI: usize = 0;
const FB: usize = 3;
const IG: usize = 4;
const TT: usize = 5;
const RD: usize = 6;

/// (department, share of persons, adoption per platform in PLATFORMS
/// order, share of writers among adopters)
type Dept = (&'static str, f64, [f64; 10], f64);
const DEPTS: [Dept; 7] = [
    (
        "marketing",
        0.14,
        [0.95, 0.6, 0.7, 0.6, 0.75, 0.55, 0.1, 0.05, 0.2, 0.3],
        0.6,
    ),
    (
        "sales",
        0.22,
        [0.9, 0.35, 0.2, 0.3, 0.0, 0.0, 0.05, 0.0, 0.0, 0.3],
        0.25,
    ),
    (
        "engineering",
        0.30,
        [0.4, 0.7, 0.25, 0.05, 0.15, 0.0, 0.6, 0.25, 0.15, 0.2],
        0.12,
    ),
    (
        "support",
        0.14,
        [0.3, 0.3, 0.55, 0.4, 0.05, 0.0, 0.3, 0.0, 0.0, 0.2],
        0.45,
    ),
    (
        "finance",
        0.10,
        [0.5, 0.2, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.1],
        0.2,
    ),
    (
        "hr",
        0.08,
        [0.9, 0.15, 0.0, 0.1, 0.0, 0.0, 0.0, 0.0, 0.0, 0.1],
        0.4,
    ),
    (
        "legal",
        0.02,
        [0.67, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        0.0,
    ),
];
/// Share of a department that wants a platform its policy refuses.
const DEMAND: [(&str, usize, f64); 5] = [
    ("sales", IG, 0.4),
    ("engineering", TT, 0.2),
    ("sales", TT, 0.25),
    ("finance", FB, 0.3),
    ("support", TT, 0.3),
];

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, p: f64) -> bool {
        (self.next() as f64 / (1u64 << 31) as f64) < p
    }
}

struct Person {
    user: Option<String>,
    client: String,
    dept: usize,
    manager: bool,
    guest: bool,
    /// Per platform: probability of a session on a working day (0: never).
    use_p: [f64; 10],
    writer: bool,
    /// Platforms refused to them that they try.
    wants: Vec<usize>,
}

#[derive(Clone, Copy)]
enum What {
    /// A tunnel to the platform's site.
    Tunnel,
    /// An inspected request: activity index into ACTIVITIES, foreground.
    Request(usize, bool),
    /// The platform's tracker embedded in another site.
    Embedded,
    /// A site on no platform.
    Other,
    /// A client in no group asking without credentials.
    NoGroup,
    /// A warn rule's warning page (`false`) or the Continue past it
    /// (`true`); the requests after it are acknowledged.
    Warn(bool),
}

const ACTIVITIES: [&str; 10] = [
    "login", "read", "post", "comment", "react", "share", "upload", "message", "write", "unknown",
];

struct Event {
    ms: i64,
    person: u32,
    platform: u8,
    what: What,
    bytes: u32,
}

fn build_people(n: usize, rng: &mut Rng) -> Vec<Person> {
    let mut people = Vec::new();
    let guests = 4 + n / 60;
    let staff = n.saturating_sub(guests).max(1);
    let mut start = 0usize;
    for (d, dept) in DEPTS.iter().enumerate() {
        let size = if d + 1 == DEPTS.len() {
            ((staff as f64 * dept.1).round() as usize).max(3)
        } else {
            (staff as f64 * dept.1).round() as usize
        };
        for i in 0..size {
            let id = start + i;
            let mut use_p = [0.0; 10];
            for (p, &adopt) in dept.2.iter().enumerate() {
                if rng.chance(adopt) {
                    // Regular users come most days, the rest now and then.
                    use_p[p] = if rng.chance(0.45) { 0.75 } else { 0.12 };
                }
            }
            let wants = DEMAND
                .iter()
                .filter(|(name, _, share)| *name == dept.0 && rng.chance(*share))
                .map(|&(_, p, _)| p)
                .collect();
            people.push(Person {
                user: Some(format!(
                    "p:{:016x}",
                    (id as u64 + 1).wrapping_mul(0x9e3779b97f4a7c15)
                )),
                client: format!("10.{}.{}.{}", d, id / 250, 1 + id % 250),
                dept: d,
                manager: rng.chance(0.1),
                guest: false,
                use_p,
                writer: rng.chance(dept.3),
                wants,
            });
        }
        start += size;
    }
    for g in 0..guests {
        let mut use_p = [0.0; 10];
        use_p[1] = 0.3;
        people.push(Person {
            user: None,
            client: format!("192.0.2.{}", 1 + g % 250),
            dept: 0,
            manager: false,
            guest: true,
            use_p,
            writer: false,
            wants: Vec::new(),
        });
    }
    people
}

/// (action, mode, rule, reason, status) for a person's request.
fn decide(
    p: &Person,
    platform: usize,
    what: What,
) -> (&'static str, &'static str, &'static str, &'static str, u16) {
    let dept = DEPTS[p.dept].0;
    let block = |rule| ("block", "enforce", rule, "rule-matched", 403);
    match what {
        What::NoGroup => ("block", "enforce", "builtin:identity", "auth-required", 407),
        What::Other => ("allow", "enforce", "default:other", "default-other", 200),
        _ if p.guest => ("allow", "enforce", "guests-video", "rule-matched", 200),
        _ if platform == TT && dept != "marketing" => block("no-tiktok"),
        What::Embedded => (
            "allow",
            "enforce",
            "default:embedded",
            "default-embedded",
            200,
        ),
        _ if platform == IG && dept == "sales" => block("sales-no-instagram"),
        _ if platform == RD && dept == "support" => (
            "warn",
            "enforce",
            "support-reddit-warn",
            "rule-matched",
            match what {
                What::Warn(true) => 303,
                _ => 200,
            },
        ),
        _ if dept == "finance" && matches!(platform, 2..=4) => block("finance-no-social"),
        What::Request(a, _) if dept == "finance" && platform == LI && (2..=8).contains(&a) => {
            block("finance-linkedin-read-only")
        }
        _ if dept == "engineering" && platform == IG => {
            ("block", "report", "instagram-dry-run", "rule-matched", 200)
        }
        _ => (
            "allow",
            "enforce",
            "default:catalog",
            "default-catalog",
            200,
        ),
    }
}

/// How a platform's use changes over the month: Bluesky and Instagram
/// grow, Facebook fades.
fn trend(platform: usize, day: i64) -> f64 {
    let t = day as f64 / 30.0;
    match PLATFORMS[platform].0 {
        "bluesky" => 0.4 + 1.2 * t,
        "instagram" => 0.7 + 0.6 * t,
        "facebook" => 1.2 - 0.5 * t,
        _ => 1.0,
    }
}

/// Relative activity by local hour on a working day.
const HOURS: [f64; 24] = [
    0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.05, 0.3, 0.8, 1.0, 0.9, 0.7, 0.6, 0.9, 0.8, 0.7, 0.6, 0.4, 0.2,
    0.1, 0.08, 0.05, 0.02, 0.0,
];

fn local_start(day: i64, hour: u64, minute: u64) -> i64 {
    // Europe/Berlin: UTC+1, UTC+2 from 2026-03-29 (day 27 of the period).
    let offset = if day >= 27 { 2 } else { 1 };
    START_MS + day * 86_400_000 + ((hour as i64 - offset) * 60 + minute as i64) * 60_000
}

/// 2026-03-02T00:00:00Z, a Monday.
const START_MS: i64 = 1_772_409_600_000;

/// The events of one day. `scale` stretches the number of hits per session.
fn day_events(people: &[Person], day: i64, scale: f64, rng: &mut Rng, out: &mut Vec<Event>) {
    let weekend = day % 7 >= 5;
    let pick_hour = |rng: &mut Rng| -> u64 {
        loop {
            let h = rng.below(24);
            if rng.chance(HOURS[h as usize]) {
                return h;
            }
        }
    };
    let hits = |rng: &mut Rng, base: f64| -> u64 {
        let x = base * scale * (0.5 + rng.below(100) as f64 / 100.0);
        x.floor() as u64 + u64::from(rng.chance(x.fract()))
    };
    for (i, p) in people.iter().enumerate() {
        let person = i as u32;
        let present = if weekend { 0.08 } else { 0.92 };
        if !rng.chance(present) {
            continue;
        }
        // Other sites, with the platforms' embedded trackers on them.
        for _ in 0..hits(rng, 3.0) {
            let ms = local_start(day, pick_hour(rng), rng.below(60)) + rng.below(60_000) as i64;
            out.push(Event {
                ms,
                person,
                platform: 0,
                what: What::Other,
                bytes: 800 + rng.below(4000) as u32,
            });
            if !p.guest && rng.chance(0.3) {
                let platform = if rng.chance(0.5) { FB } else { TT } as u8;
                out.push(Event {
                    ms: ms + 300,
                    person,
                    platform,
                    what: What::Embedded,
                    bytes: 600,
                });
            }
        }
        for (platform, &(_, _, inspected, _, _)) in PLATFORMS.iter().enumerate() {
            let mut chance = p.use_p[platform] * trend(platform, day);
            if p.manager && platform == LI {
                chance = (chance + 0.2).min(0.9);
            }
            if rng.chance(chance) {
                let sessions = 1 + rng.below(2);
                for s in 0..sessions {
                    let mut ms = local_start(day, pick_hour(rng), rng.below(60));
                    // The day's first visit meets the warning; most go on.
                    if platform == RD && DEPTS[p.dept].0 == "support" && !p.guest && s == 0 {
                        out.push(Event {
                            ms,
                            person,
                            platform: platform as u8,
                            what: What::Warn(false),
                            bytes: 3000,
                        });
                        if !rng.chance(0.7) {
                            break;
                        }
                        out.push(Event {
                            ms: ms + 20_000,
                            person,
                            platform: platform as u8,
                            what: What::Warn(true),
                            bytes: 400,
                        });
                        ms += 40_000;
                    }
                    for h in 0..hits(rng, 5.0).max(1) {
                        let what = if !inspected {
                            What::Tunnel
                        } else if h == 0 {
                            What::Request(1, true)
                        } else if p.writer && rng.chance(0.18) {
                            // post, comment, react, share, upload, message;
                            // a few no signature knows.
                            let a = match rng.below(100) {
                                0..=14 => 2,
                                15..=39 => 3,
                                40..=69 => 4,
                                70..=79 => 5,
                                80..=84 => 6,
                                85..=91 => 7,
                                _ => {
                                    if platform == LI {
                                        8
                                    } else {
                                        9
                                    }
                                }
                            };
                            What::Request(a, false)
                        } else if rng.chance(0.02) {
                            What::Request(0, false)
                        } else {
                            What::Request(1, h % 4 == 0)
                        };
                        out.push(Event {
                            ms,
                            person,
                            platform: platform as u8,
                            what,
                            bytes: 500 + rng.below(30_000) as u32,
                        });
                        ms += 15_000 + rng.below(150_000) as i64;
                    }
                }
            }
        }
        // Refused platforms they want: a few tries on some days.
        for &platform in &p.wants {
            if rng.chance(0.2) {
                let ms = local_start(day, pick_hour(rng), rng.below(60));
                for t in 0..(1 + rng.below(3)) {
                    out.push(Event {
                        ms: ms + t as i64 * 20_000,
                        person,
                        platform: platform as u8,
                        what: What::Tunnel,
                        bytes: 0,
                    });
                }
            }
        }
    }
    // Clients in no group: a laptop without proxy credentials.
    for _ in 0..(1 + rng.below(4)) {
        let ms = local_start(day, pick_hour(rng), rng.below(60));
        out.push(Event {
            ms,
            person: u32::MAX,
            platform: 2,
            what: What::NoGroup,
            bytes: 0,
        });
    }
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let n: u64 = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let out: Box<dyn Write> = match args.next().filter(|a| a != "-") {
        Some(path) => Box::new(std::fs::File::create(path)?),
        None => Box::new(std::io::stdout().lock()),
    };
    let persons: usize = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(((n / 2000) as usize).clamp(150, 20_000));
    let people = build_people(persons, &mut Rng(0x5eed));
    // Scale hits so that 30 days hold about n lines.
    let mut probe = Vec::new();
    let mut rng = Rng(0xface);
    for day in 0..30 {
        day_events(&people, day, 1.0, &mut rng, &mut probe);
    }
    let scale = n as f64 / probe.len().max(1) as f64;
    drop(probe);
    let mut w = BufWriter::with_capacity(1 << 20, out);
    let mut rng = Rng(0xbeef);
    let mut written = 0u64;
    let mut events = Vec::new();
    let no_group = Person {
        user: None,
        client: "172.16.9.9".into(),
        dept: 0,
        manager: false,
        guest: false,
        use_p: [0.0; 10],
        writer: false,
        wants: Vec::new(),
    };
    let mut day = 0;
    while written < n {
        events.clear();
        day_events(&people, day, scale, &mut rng, &mut events);
        events.sort_by_key(|e| (e.ms, e.person));
        for e in &events {
            if written == n {
                break;
            }
            let p = people.get(e.person as usize).unwrap_or(&no_group);
            write_line(&mut w, p, e)?;
            written += 1;
        }
        day += 1;
    }
    w.flush()
}

fn write_line(w: &mut impl Write, p: &Person, e: &Event) -> std::io::Result<()> {
    let t = jiff::Timestamp::from_millisecond(e.ms).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    let (platform, category, _, site, pixel) = PLATFORMS[e.platform as usize];
    let dept = DEPTS[p.dept].0;
    let groups = match e.what {
        What::NoGroup => String::new(),
        _ if p.guest => "\"guests\"".to_owned(),
        _ if p.manager => format!("\"{dept}\",\"managers\",\"staff\""),
        _ => format!("\"{dept}\",\"staff\""),
    };
    let group = match e.what {
        What::NoGroup => "null".to_owned(),
        _ if p.guest => "\"guests\"".to_owned(),
        _ => format!("\"{dept}\""),
    };
    let (action, mode, rule, reason, status) = decide(p, e.platform as usize, e.what);
    let refused = action == "block" && mode == "enforce";
    let (kind, method, host, plat, class, activity, foreground) = match e.what {
        What::Tunnel => (
            "tunnel",
            "CONNECT",
            site.to_owned(),
            true,
            "\"primary\"",
            "null".to_owned(),
            true,
        ),
        What::Request(a, fg) => (
            "request",
            if a == 1 { "GET" } else { "POST" },
            site.to_owned(),
            true,
            "\"primary\"",
            format!("\"{}\"", ACTIVITIES[a]),
            fg,
        ),
        What::Embedded => (
            "request",
            "GET",
            pixel.to_owned(),
            true,
            "\"embedded\"",
            "null".to_owned(),
            false,
        ),
        What::Other => (
            "tunnel",
            "CONNECT",
            "news.example.org".to_owned(),
            false,
            "null",
            "null".to_owned(),
            false,
        ),
        What::NoGroup => (
            "tunnel",
            "CONNECT",
            site.to_owned(),
            true,
            "\"primary\"",
            "null".to_owned(),
            false,
        ),
        What::Warn(_) => (
            "request",
            "GET",
            site.to_owned(),
            true,
            "\"primary\"",
            "\"read\"".to_owned(),
            true,
        ),
    };
    let warn = match (action, e.what) {
        (_, What::Warn(false)) => r#","warn":"shown""#,
        (_, What::Warn(true)) => r#","warn":"continued""#,
        ("warn", _) => r#","warn":"acknowledged""#,
        _ => "",
    };
    let (plat_json, cat_json) = if plat {
        (format!("\"{platform}\""), format!("\"{category}\""))
    } else {
        ("null".to_owned(), "null".to_owned())
    };
    let user = p
        .user
        .as_deref()
        .map_or("null".to_owned(), |u| format!("\"{u}\""));
    let auth = if p.user.is_some() { "basic" } else { "none" };
    let (up, down) = if refused {
        (0, 0)
    } else {
        (e.bytes / 4, e.bytes * 6)
    };
    writeln!(
        w,
        r#"{{"time":"{t}","kind":"{kind}","client":"{}","user":{user},"auth":"{auth}","groups":[{groups}],"group":{group},"method":"{method}","host":"{host}","port":443,"platform":{plat_json},"category":{cat_json},"class":{class},"activity":{activity},"foreground":{},"action":"{action}","mode":"{mode}","rule":"{rule}","reason":"{reason}","status":{status}{warn},"bytes_up":{up},"bytes_down":{down},"duration_ms":{}}}"#,
        p.client,
        foreground,
        e.bytes % 60_000,
    )
}
