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
use crate::outcome::Verdict;

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

/// Turns a user name into its pseudonym, for events decided on a policy
/// that pseudonymises (`Event::pseudonymize`).
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
        if ev.pseudonymize {
            if let Some(u) = ev.user.take() {
                ev.user = Some((self.users)(&u));
            }
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
        LogFormat::Json => {
            // Serialising plain data into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *out, ev);
            out.push(b'\n');
        }
        LogFormat::Squid => {
            let _ = write_squid(ev, out);
        }
    }
}

/// Squid's native format:
/// `time elapsed client code/status bytes method URL user hierarchy/peer type`.
fn write_squid(ev: &Event, out: &mut Vec<u8>) -> io::Result<()> {
    let secs = ev.time.as_millisecond() as f64 / 1000.0;
    let refused = Verdict::of(ev.action, ev.mode).refused();
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
    use crate::outcome::{Action, Activity, Class, ErrorKind, Mode, Reason};

    fn event(
        user: Option<&str>,
        host: &str,
        path: Option<&str>,
        error: Option<ErrorKind>,
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
            class: Some(Class::Primary),
            activity: Some(Activity::Write),
            foreground: true,
            action: Action::Block,
            mode: Mode::Report,
            rule: Arc::from("no-tiktok"),
            reason: Reason::RuleMatched,
            status: 403,
            bytes_up: 12,
            bytes_down: u64::MAX,
            duration_ms: 0,
            error,
            pseudonymize: true,
        }
    }

    #[test]
    fn json_lines_escape_every_value_and_keep_the_schema_fields() {
        let weird = "a\"b\\c\nd\re\tf\u{1}g\u{7f}h é 😀 </script>";
        for ev in [
            event(None, "www.tiktok.com", None, None),
            event(
                Some("p:0123456789abcdef"),
                "xn--bcher-kva.example",
                Some("/a?b=c&d=\"e\""),
                Some(ErrorKind::ClientClosed),
            ),
            event(Some(weird), weird, Some(weird), Some(ErrorKind::Shutdown)),
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
