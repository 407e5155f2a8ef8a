//! The recorder and the access-log writer.
//!
//! [`Recorder::record`] is called exactly once per request or tunnel. It
//! feeds the in-process observers (metrics) and hands the event to a bounded
//! channel; a dedicated writer thread formats and writes it, so a slow disk
//! never stalls traffic. When the channel is full the event is dropped and
//! counted (`dropped()`), never lost silently. The writer reopens its file
//! when asked (SIGUSR1, for logrotate) and flushes whenever it catches up.
//! Users are pseudonymised in the writer, off the hot path.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::event::{Event, Kind};

/// How often the writer looks for new records. Lines reach the file at
/// most this late; the queue (`--log-queue`) absorbs bursts in between.
const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// Access-log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line (docs/access-log.md).
    Json,
    /// Squid's native access.log format, for SARG, Calamaris and friends.
    Squid,
}

/// Where and how the access log is written.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// `None` writes to standard output.
    pub path: Option<PathBuf>,
    pub format: LogFormat,
    /// Events that may wait for the writer before new ones are dropped.
    pub capacity: usize,
}

/// Turns a user name into what the log shows.
pub type UserMapper = Arc<dyn Fn(&str) -> String + Send + Sync>;

/// Something that sees every event on the hot path (metrics).
pub trait Observer: Send + Sync {
    fn observe(&self, ev: &Event);
}

// Events travel by value: no allocation and no cross-thread free per record.
// The queue's slots are preallocated (and touched) at start, which is why
// the default queue is 4096 records (~1.6 MB), not more.
#[allow(clippy::large_enum_variant)]
enum Msg {
    Event(Event),
    /// Write what is queued, flush, and exit.
    Stop,
}

struct Inner {
    dropped: AtomicU64,
    written: Arc<AtomicU64>,
    reopen: Arc<AtomicBool>,
    observers: Vec<Arc<dyn Observer>>,
    on_drop: Option<Arc<dyn Fn() + Send + Sync>>,
}

/// Cheap to clone; every clone feeds the same writer.
#[derive(Clone)]
pub struct Recorder {
    inner: Arc<Inner>,
    tx: Option<SyncSender<Msg>>,
}

/// Owns the writer thread; `finish` flushes and joins it.
pub struct WriterHandle {
    thread: Option<JoinHandle<()>>,
    recorder: Recorder,
}

impl Recorder {
    /// A recorder with no log: observers only.
    pub fn without_log(observers: Vec<Arc<dyn Observer>>) -> Recorder {
        Recorder {
            inner: Arc::new(Inner {
                dropped: AtomicU64::new(0),
                written: Arc::new(AtomicU64::new(0)),
                reopen: Arc::new(AtomicBool::new(false)),
                observers,
                on_drop: None,
            }),
            tx: None,
        }
    }

    /// Starts the writer thread. Fails if the log file cannot be opened.
    pub fn start(
        config: LogConfig,
        users: UserMapper,
        observers: Vec<Arc<dyn Observer>>,
        on_drop: Option<Arc<dyn Fn() + Send + Sync>>,
    ) -> io::Result<(Recorder, WriterHandle)> {
        let sink = Sink::open(config.path.as_ref())?;
        let (tx, rx) = sync_channel(config.capacity.max(1));
        let written = Arc::new(AtomicU64::new(0));
        let reopen = Arc::new(AtomicBool::new(false));
        let writer = Writer {
            rx,
            sink,
            path: config.path.clone(),
            format: config.format,
            users,
            written: written.clone(),
            reopen: reopen.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || writer.run())?;
        let recorder = Recorder {
            inner: Arc::new(Inner {
                dropped: AtomicU64::new(0),
                written,
                reopen,
                observers,
                on_drop,
            }),
            tx: Some(tx),
        };
        Ok((
            recorder.clone(),
            WriterHandle {
                thread: Some(thread),
                recorder,
            },
        ))
    }

    /// Records one finished request or tunnel.
    pub fn record(&self, ev: Event) {
        for o in &self.inner.observers {
            o.observe(&ev);
        }
        if let Some(tx) = &self.tx {
            match tx.try_send(Msg::Event(ev)) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                    self.inner.dropped.fetch_add(1, Ordering::Relaxed);
                    if let Some(f) = &self.inner.on_drop {
                        f();
                    }
                }
            }
        }
    }

    /// Records dropped because the writer could not keep up.
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    /// Records written so far.
    pub fn written(&self) -> u64 {
        self.inner.written.load(Ordering::Relaxed)
    }

    /// Asks the writer to reopen its file (after logrotate moved it).
    pub fn reopen(&self) {
        self.inner.reopen.store(true, Ordering::Relaxed);
    }
}

impl WriterHandle {
    /// Stops accepting events, writes what is queued, flushes, and joins.
    pub fn finish(mut self) {
        if let Some(tx) = self.recorder.tx.take() {
            // Blocks only while the writer works through the queue.
            let _ = tx.send(Msg::Stop);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

enum Sink {
    Stdout(BufWriter<io::Stdout>),
    File(BufWriter<File>),
}

impl Sink {
    fn open(path: Option<&PathBuf>) -> io::Result<Sink> {
        Ok(match path {
            None => Sink::Stdout(BufWriter::with_capacity(64 * 1024, io::stdout())),
            Some(p) => Sink::File(BufWriter::with_capacity(
                64 * 1024,
                OpenOptions::new().create(true).append(true).open(p)?,
            )),
        })
    }

    fn writer(&mut self) -> &mut dyn Write {
        match self {
            Sink::Stdout(w) => w,
            Sink::File(w) => w,
        }
    }
}

struct Writer {
    rx: Receiver<Msg>,
    sink: Sink,
    path: Option<PathBuf>,
    format: LogFormat,
    users: UserMapper,
    written: Arc<AtomicU64>,
    reopen: Arc<AtomicBool>,
}

impl Writer {
    /// Polls the queue instead of blocking on it: a blocked receiver would
    /// have every `record` wake this thread (a futex call and a context
    /// switch per request); polling every few milliseconds batches the
    /// writes and keeps senders wait-free.
    fn run(mut self) {
        // Lower this thread's priority (Linux applies it per thread): when it
        // shares a core with the request workers, its bursts every few
        // milliseconds yield to them instead of adding to their tail latency.
        #[cfg(target_os = "linux")]
        // SAFETY: setpriority only reads its integer arguments.
        unsafe {
            libc::setpriority(libc::PRIO_PROCESS, 0, 10);
        }
        let mut line = Vec::with_capacity(1024);
        loop {
            if self.reopen.swap(false, Ordering::Relaxed) {
                let _ = self.sink.writer().flush();
                match Sink::open(self.path.as_ref()) {
                    Ok(s) => self.sink = s,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot reopen the access log; still writing to the old file")
                    }
                }
            }
            let mut wrote = false;
            let mut stop = false;
            loop {
                match self.rx.try_recv() {
                    Ok(Msg::Event(ev)) => {
                        self.write_one(ev, &mut line);
                        wrote = true;
                    }
                    Ok(Msg::Stop) => stop = true,
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        stop = true;
                        break;
                    }
                }
            }
            if wrote {
                let _ = self.sink.writer().flush();
            }
            if stop {
                break;
            }
            std::thread::sleep(POLL_INTERVAL);
        }
        let _ = self.sink.writer().flush();
    }

    fn write_one(&mut self, mut ev: Event, line: &mut Vec<u8>) {
        if let Some(u) = ev.user.take() {
            ev.user = Some((self.users)(&u));
        }
        line.clear();
        format_event(&ev, self.format, line);
        match self.sink.writer().write_all(line) {
            Ok(()) => {
                self.written.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => tracing::error!(error = %e, "cannot write the access log"),
        }
    }
}

/// Formats one record, newline included.
pub fn format_event(ev: &Event, format: LogFormat, out: &mut Vec<u8>) {
    match format {
        LogFormat::Json => write_json(ev, out),
        LogFormat::Squid => {
            let _ = write_squid(ev, out);
        }
    }
}

/// Writes the JSON form of `ev` (the same document `serde_json` makes from
/// its `Serialize` impl, field for field; a test holds the two together)
/// without serde's per-field machinery: keys are literals, and only values
/// are escaped. This runs once per record on the writer thread.
fn write_json(ev: &Event, out: &mut Vec<u8>) {
    use std::io::Write as _;
    fn s(out: &mut Vec<u8>, v: &str) {
        out.push(b'"');
        let bytes = v.as_bytes();
        let mut start = 0;
        for (i, &b) in bytes.iter().enumerate() {
            let esc: &[u8] = match b {
                b'"' => b"\\\"",
                b'\\' => b"\\\\",
                b'\n' => b"\\n",
                b'\r' => b"\\r",
                b'\t' => b"\\t",
                0..=0x1f | 0x7f => {
                    out.extend_from_slice(&bytes[start..i]);
                    let _ = write!(out, "\\u{:04x}", b);
                    start = i + 1;
                    continue;
                }
                _ => continue,
            };
            out.extend_from_slice(&bytes[start..i]);
            out.extend_from_slice(esc);
            start = i + 1;
        }
        out.extend_from_slice(&bytes[start..]);
        out.push(b'"');
    }
    fn opt(out: &mut Vec<u8>, v: Option<&str>) {
        match v {
            Some(v) => s(out, v),
            None => out.extend_from_slice(b"null"),
        }
    }
    fn num(out: &mut Vec<u8>, n: u64) {
        let _ = write!(out, "{n}");
    }
    out.extend_from_slice(b"{\"time\":\"");
    let _ = write!(out, "{}", ev.time);
    out.extend_from_slice(b"\",\"kind\":");
    out.extend_from_slice(match ev.kind {
        Kind::Request => b"\"request\"",
        Kind::Tunnel => b"\"tunnel\"",
    });
    out.extend_from_slice(b",\"client\":\"");
    let _ = write!(out, "{}", ev.client);
    out.extend_from_slice(b"\",\"user\":");
    opt(out, ev.user.as_deref());
    out.extend_from_slice(b",\"auth\":");
    out.extend_from_slice(match ev.auth {
        crate::event::AuthMethod::None => b"\"none\"" as &[u8],
        crate::event::AuthMethod::Basic => b"\"basic\"",
        crate::event::AuthMethod::Header => b"\"header\"",
    });
    out.extend_from_slice(b",\"groups\":[");
    for (i, g) in ev.groups.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        s(out, g);
    }
    out.extend_from_slice(b"],\"group\":");
    opt(out, ev.group.as_deref());
    out.extend_from_slice(b",\"method\":");
    s(out, ev.method.as_str());
    out.extend_from_slice(b",\"host\":");
    s(out, &ev.host);
    out.extend_from_slice(b",\"port\":");
    num(out, u64::from(ev.port));
    if let Some(p) = &ev.path {
        out.extend_from_slice(b",\"path\":");
        s(out, p);
    }
    if let Some(v) = &ev.sni {
        out.extend_from_slice(b",\"sni\":");
        s(out, v);
    }
    out.extend_from_slice(b",\"platform\":");
    opt(out, ev.platform.as_deref());
    out.extend_from_slice(b",\"category\":");
    opt(out, ev.category.as_deref());
    out.extend_from_slice(b",\"class\":");
    opt(out, ev.class);
    out.extend_from_slice(b",\"activity\":");
    opt(out, ev.activity);
    out.extend_from_slice(if ev.foreground {
        b",\"foreground\":true,\"action\":" as &[u8]
    } else {
        b",\"foreground\":false,\"action\":"
    });
    s(out, ev.action);
    out.extend_from_slice(b",\"mode\":");
    s(out, ev.mode);
    out.extend_from_slice(b",\"rule\":");
    s(out, &ev.rule);
    out.extend_from_slice(b",\"reason\":");
    s(out, ev.reason);
    out.extend_from_slice(b",\"status\":");
    num(out, u64::from(ev.status));
    out.extend_from_slice(b",\"bytes_up\":");
    num(out, ev.bytes_up);
    out.extend_from_slice(b",\"bytes_down\":");
    num(out, ev.bytes_down);
    out.extend_from_slice(b",\"duration_ms\":");
    num(out, ev.duration_ms);
    if let Some(e) = &ev.error {
        out.extend_from_slice(b",\"error\":");
        s(out, e);
    }
    out.extend_from_slice(b"}\n");
}

/// Squid's native format:
/// `time elapsed client code/status bytes method URL user hierarchy/peer type`.
fn write_squid(ev: &Event, out: &mut Vec<u8>) -> io::Result<()> {
    let secs = ev.time.as_millisecond() as f64 / 1000.0;
    let refused = ev.action == "block" && ev.mode == "enforce" || matches!(ev.status, 403 | 407);
    let code = if refused {
        "TCP_DENIED"
    } else if ev.error.is_some() && ev.status >= 500 {
        "TCP_MISS_ABORTED"
    } else if ev.kind == Kind::Tunnel {
        "TCP_TUNNEL"
    } else {
        "TCP_MISS"
    };
    let url = match ev.kind {
        Kind::Tunnel => format!("{}:{}", host_for_url(&ev.host), ev.port),
        Kind::Request => {
            let port = if ev.port == 80 {
                String::new()
            } else {
                format!(":{}", ev.port)
            };
            format!(
                "http://{}{}{}",
                host_for_url(&ev.host),
                port,
                ev.path.as_deref().unwrap_or("/")
            )
        }
    };
    let hier = if refused || ev.status >= 500 {
        "HIER_NONE/-".to_string()
    } else {
        format!("HIER_DIRECT/{}", ev.host)
    };
    writeln!(
        out,
        "{secs:.3} {:>6} {} {code}/{:03} {} {} {} {} {hier} -",
        ev.duration_ms,
        ev.client,
        ev.status,
        ev.bytes_down,
        ev.method,
        url,
        ev.user.as_deref().unwrap_or("-"),
    )
}

fn host_for_url(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::AuthMethod;

    fn event(
        user: Option<&str>,
        host: &str,
        path: Option<&str>,
        error: Option<&'static str>,
    ) -> Event {
        Event {
            time: "2026-11-25T12:34:56.789Z".parse().unwrap(),
            kind: Kind::Request,
            client: "2001:db8::7".parse().unwrap(),
            user: user.map(str::to_string),
            auth: AuthMethod::Basic,
            groups: vec![Arc::from("staff"), Arc::from("mar\"keting")],
            group: Some(Arc::from("staff")),
            method: http::Method::from_bytes(b"PROPFIND").unwrap(),
            host: host.to_string(),
            port: 8080,
            path: path.map(str::to_string),
            sni: Some("www.example.org".into()),
            platform: None,
            category: Some(Arc::from("video")),
            class: Some("primary"),
            activity: Some("write"),
            foreground: true,
            action: "block",
            mode: "report",
            rule: Arc::from("no-tiktok"),
            reason: "rule-matched",
            status: 403,
            bytes_up: 12,
            bytes_down: u64::MAX,
            duration_ms: 0,
            error,
        }
    }

    #[test]
    fn the_fast_json_writer_matches_serde_field_for_field() {
        let weird = "a\"b\\c\nd\re\tf\u{1}g\u{7f}h é 😀 </script>";
        for ev in [
            event(None, "www.tiktok.com", None, None),
            event(
                Some("p:0123456789abcdef"),
                "xn--bcher-kva.example",
                Some("/a?b=c&d=\"e\""),
                Some("client-closed"),
            ),
            event(Some(weird), weird, Some(weird), Some("shutdown")),
        ] {
            let mut line = Vec::new();
            format_event(&ev, LogFormat::Json, &mut line);
            assert_eq!(line.last(), Some(&b'\n'));
            let fast: serde_json::Value = serde_json::from_slice(&line).expect("valid JSON");
            let reference = serde_json::to_value(&ev).unwrap();
            assert_eq!(fast, reference, "{}", String::from_utf8_lossy(&line));
            // Same field order as the documented schema / serde.
            let keys: Vec<String> =
                serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&line)
                    .unwrap()
                    .keys()
                    .cloned()
                    .collect();
            assert!(keys.len() >= 24, "{keys:?}");
        }
    }
}
