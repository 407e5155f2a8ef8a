//! The recorder and the access-log writer.
//!
//! [`Recorder::record`] is called exactly once per request or tunnel. It
//! feeds the in-process observers (metrics) and hands the event to a bounded
//! channel; a dedicated writer thread formats and writes it, so a slow disk
//! never stalls traffic. Users are pseudonymised in the writer, off the hot
//! path.
//!
//! Nothing is lost silently. A record that does not reach the log is
//! counted in [`Recorder::dropped`] (and passed to the `on_drop` hook, which
//! feeds `socialgate_access_log_dropped_total`), whatever the cause: the
//! queue was full, or the write failed (disk full, I/O error, log directory
//! gone). The writer keeps no buffer of its own: it collects complete lines
//! in a batch and writes the batch with its own loop over `write()`, so it
//! knows exactly which lines the OS accepted; only those count as written.
//!
//! A write that fails half-way never leaves a torn line behind that a
//! later record would be glued to: the fragment is cut off again
//! (`set_len`, regular files), or, where that is impossible, the next write
//! starts with a newline so that the fragment stays a line of its own, which
//! readers skip and count (see `report::read`).
//!
//! A log file that disappears under the writer (`rm`, its directory
//! removed, a rotated file compressed away) would swallow every write
//! without an error; before each batch the writer checks that its file is
//! still linked, and if not, opens the path again, or drops (and counts) the
//! batch while it cannot. A writer stuck on a stalled disk blocks only its
//! own thread: the queue fills and new records are dropped and counted, and
//! shutdown waits for it a bounded time ([`WriterHandle::finish_within`]),
//! counting what it could not write.
//!
//! A failure is logged once when it starts and once when writing works
//! again (with the number of records lost in between), not once per record.
//! While writing fails, the writer reopens the configured path before each
//! new batch, so freed space, a recreated directory or a rotated file all
//! resume without a restart; SIGUSR1 ([`Recorder::reopen`]) reopens too.
//!
//! Why one long file: the queue, the batch writer and its failure episodes
//! share private state whose invariants (what counts as written, what as
//! dropped) are easier to check in one place; a third of the file is tests
//! against a fake disk.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::event::{Event, Kind};
use crate::outcome::Verdict;

/// How often the writer looks for new records. Lines reach the file at
/// most this late; the queue (`--log-queue`) absorbs bursts in between.
const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// A batch is written once it holds this many bytes, even mid-drain.
const BATCH_BYTES: usize = 64 * 1024;

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
    /// Permission bits of a log file socialgate creates (also on reopen
    /// after rotation); an existing file keeps its own. The log is personal
    /// data, so the default is 0640.
    pub mode: u32,
}

/// The access log's default file mode: owner read/write, group read.
pub const DEFAULT_LOG_MODE: u32 = 0o640;

/// Turns a user name into its pseudonym, for events decided on a policy
/// that pseudonymises (`Event::pseudonymize`).
pub type UserMapper = Arc<dyn Fn(&str) -> String + Send + Sync>;

/// Called with the number of records just lost (queue full or write
/// failed); the metrics count them.
pub type DropHook = Arc<dyn Fn(u64) + Send + Sync>;

/// Called when a write fails, or the log cannot be opened again (after
/// SIGUSR1, or because the file was removed), with `"write"` or `"reopen"`;
/// the metrics count them.
pub type FaultHook = Arc<dyn Fn(&'static str) + Send + Sync>;

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
    /// Write what is queued, and exit.
    Stop,
}

/// The one count of lost records, shared by the recorder (queue full) and
/// the writer (write failed).
struct Drops {
    count: AtomicU64,
    hook: Option<DropHook>,
}

impl Drops {
    fn add(&self, n: u64) {
        if n == 0 {
            return;
        }
        self.count.fetch_add(n, Ordering::Relaxed);
        if let Some(f) = &self.hook {
            f(n);
        }
    }
}

struct Inner {
    drops: Arc<Drops>,
    written: Arc<AtomicU64>,
    /// Records in the queue or the writer's batch, not yet written or
    /// dropped: what a writer that never finishes would lose.
    queued: Arc<AtomicU64>,
    reopen: Arc<AtomicBool>,
    observers: Vec<Arc<dyn Observer>>,
}

/// Cheap to clone; every clone feeds the same writer.
#[derive(Clone)]
pub struct Recorder {
    inner: Arc<Inner>,
    tx: Option<SyncSender<Msg>>,
}

/// Owns the writer thread; `finish` writes what is queued and joins it.
pub struct WriterHandle {
    thread: Option<JoinHandle<()>>,
    recorder: Recorder,
}

impl Recorder {
    /// A recorder with no log: observers only.
    pub fn without_log(observers: Vec<Arc<dyn Observer>>) -> Recorder {
        Recorder {
            inner: Arc::new(Inner {
                drops: Arc::new(Drops {
                    count: AtomicU64::new(0),
                    hook: None,
                }),
                written: Arc::new(AtomicU64::new(0)),
                queued: Arc::new(AtomicU64::new(0)),
                reopen: Arc::new(AtomicBool::new(false)),
                observers,
            }),
            tx: None,
        }
    }

    /// Starts the writer thread. Fails if the log file cannot be opened.
    /// `on_drop` is called with the number of records lost, whatever the
    /// cause (queue full, write failed).
    pub fn start(
        config: LogConfig,
        users: UserMapper,
        observers: Vec<Arc<dyn Observer>>,
        on_drop: Option<DropHook>,
        on_fault: Option<FaultHook>,
    ) -> io::Result<(Recorder, WriterHandle)> {
        let (sink, mid_line) = Sink::open(config.path.as_deref(), config.mode)?;
        let (tx, rx) = sync_channel(config.capacity.max(1));
        let written = Arc::new(AtomicU64::new(0));
        let queued = Arc::new(AtomicU64::new(0));
        let reopen = Arc::new(AtomicBool::new(false));
        let drops = Arc::new(Drops {
            count: AtomicU64::new(0),
            hook: on_drop,
        });
        let writer = Writer {
            rx,
            sink,
            path: config.path.clone(),
            mode: config.mode,
            format: config.format,
            users,
            written: written.clone(),
            queued: queued.clone(),
            drops: drops.clone(),
            on_fault,
            reopen: reopen.clone(),
            batch: Batch::default(),
            need_newline: mid_line,
            failing: None,
        };
        let thread = std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || writer.run())?;
        let recorder = Recorder {
            inner: Arc::new(Inner {
                drops,
                written,
                queued,
                reopen,
                observers,
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
            // Counted before it is sent, so the writer never sees it first.
            self.inner.queued.fetch_add(1, Ordering::Relaxed);
            match tx.try_send(Msg::Event(ev)) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                    self.inner.queued.fetch_sub(1, Ordering::Relaxed);
                    self.inner.drops.add(1);
                }
            }
        }
    }

    /// Records that did not reach the log: the queue was full (the writer
    /// could not keep up) or writing them failed.
    pub fn dropped(&self) -> u64 {
        self.inner.drops.count.load(Ordering::Relaxed)
    }

    /// Records whose line the OS accepted so far.
    pub fn written(&self) -> u64 {
        self.inner.written.load(Ordering::Relaxed)
    }

    /// Asks the writer to reopen its file (after logrotate moved it).
    pub fn reopen(&self) {
        self.inner.reopen.store(true, Ordering::Relaxed);
    }
}

impl WriterHandle {
    /// Stops accepting events, writes what is queued, and joins.
    pub fn finish(mut self) {
        if let Some(tx) = self.recorder.tx.take() {
            // Blocks only while the writer works through the queue.
            let _ = tx.send(Msg::Stop);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    /// Like [`finish`](Self::finish), but waits at most `limit` for the
    /// writer (a disk that stopped answering must not keep the process from
    /// exiting). What it could not write by then is counted as dropped and
    /// said on stderr. Returns whether the writer finished.
    pub fn finish_within(mut self, limit: std::time::Duration) -> bool {
        let deadline = Instant::now() + limit;
        if let Some(tx) = self.recorder.tx.take() {
            // The queue may be full while the writer is stuck: keep trying
            // until the deadline rather than blocking on `send`.
            let mut msg = Msg::Stop;
            loop {
                match tx.try_send(msg) {
                    Ok(()) | Err(TrySendError::Disconnected(_)) => break,
                    Err(TrySendError::Full(m)) if Instant::now() < deadline => {
                        msg = m;
                        std::thread::sleep(POLL_INTERVAL);
                    }
                    Err(TrySendError::Full(_)) => break,
                }
            }
        }
        let Some(t) = self.thread.take() else {
            return true;
        };
        while !t.is_finished() && Instant::now() < deadline {
            std::thread::sleep(POLL_INTERVAL);
        }
        if t.is_finished() {
            let _ = t.join();
            return true;
        }
        let lost = self.recorder.inner.queued.swap(0, Ordering::Relaxed);
        self.recorder.inner.drops.add(lost);
        tracing::error!(
            lost,
            "access log: the writer did not finish within {} s (the disk stopped answering?); {lost} records were not written and are counted as dropped",
            limit.as_secs()
        );
        false
    }
}

/// Where the writer's bytes go. `write` must not buffer: a record counts as
/// written once `write` accepted its line. A trait so that tests can plug
/// in a disk that fills up.
trait Output: Write {
    /// Cuts the last `n` bytes off again (a line cut short by a failed
    /// write). Only regular files can; other outputs return an error.
    fn unwrite(&mut self, n: u64) -> io::Result<()>;
}

/// The log's output. No `BufWriter`: the batch is the buffer, so nothing is
/// ever held where it could be lost uncounted. (`Stdout` buffers only what
/// follows the last newline, and a batch always ends with one.)
enum Sink {
    Stdout(io::Stdout),
    File(File),
}

impl Sink {
    /// Opens the log (appending) and tells whether it ends inside a line,
    /// e.g. after a crash mid-write, so the first write can end that line.
    /// A file it creates gets `mode` (less the umask).
    fn open(path: Option<&Path>, mode: u32) -> io::Result<(Sink, bool)> {
        Ok(match path {
            None => (Sink::Stdout(io::stdout()), false),
            Some(p) => {
                let mut options = OpenOptions::new();
                options.create(true).append(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
                #[cfg(not(unix))]
                let _ = mode;
                let f = options.open(p)?;
                (Sink::File(f), ends_mid_line(p))
            }
        })
    }
}

/// True when `path` is a regular file whose last byte is not a newline.
/// Anything else (a FIFO, a device) is not opened a second time.
fn ends_mid_line(path: &Path) -> bool {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() && m.len() > 0 => {}
        _ => return false,
    }
    let Ok(mut f) = File::open(path) else {
        return false;
    };
    let mut last = [0u8; 1];
    f.seek(SeekFrom::End(-1)).is_ok() && f.read_exact(&mut last).is_ok() && last[0] != b'\n'
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sink::Stdout(w) => w.write(buf),
            Sink::File(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::Stdout(w) => w.flush(),
            Sink::File(w) => w.flush(),
        }
    }
}

impl Sink {
    /// The open file no longer has a name: it was removed (or its
    /// directory was), so what is written to it is lost.
    fn removed(&self) -> bool {
        #[cfg(unix)]
        if let Sink::File(f) = self {
            use std::os::unix::fs::MetadataExt;
            return f.metadata().is_ok_and(|m| m.nlink() == 0);
        }
        false
    }
}

impl Output for Sink {
    fn unwrite(&mut self, n: u64) -> io::Result<()> {
        let Sink::File(f) = self else {
            return Err(io::ErrorKind::Unsupported.into());
        };
        let meta = f.metadata()?;
        if !meta.is_file() || meta.len() < n {
            return Err(io::ErrorKind::Unsupported.into());
        }
        f.set_len(meta.len() - n)
    }
}

/// Complete formatted lines waiting to be written, and where each ends.
#[derive(Default)]
struct Batch {
    buf: Vec<u8>,
    ends: Vec<usize>,
}

impl Batch {
    fn records(&self) -> u64 {
        self.ends.len() as u64
    }

    fn clear(&mut self) {
        self.buf.clear();
        self.ends.clear();
    }
}

/// What became of one batch: `written + dropped` is its record count.
#[derive(Debug)]
struct Outcome {
    written: u64,
    dropped: u64,
    error: Option<io::Error>,
}

/// Writes until everything went out or `write` fails; returns how many
/// bytes the output accepted, and the error if it stopped short.
fn write_counted<O: Output + ?Sized>(out: &mut O, buf: &[u8]) -> (usize, Option<io::Error>) {
    let mut done = 0;
    while done < buf.len() {
        match out.write(&buf[done..]) {
            Ok(0) => return (done, Some(io::ErrorKind::WriteZero.into())),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (done, Some(e)),
        }
    }
    (done, None)
}

/// Writes one batch. A record counts as written when its whole line went
/// out; the rest of a failed batch counts as dropped. A line cut short is
/// cut off the output again, or, if that fails, `need_newline` makes the
/// next write end it first, so that no record is ever glued to a fragment.
/// (A line short of only its newline is a readable record: it counts as
/// written, and the next write supplies the newline.)
fn write_batch<O: Output + ?Sized>(out: &mut O, batch: &Batch, need_newline: &mut bool) -> Outcome {
    let total = batch.records();
    if total == 0 {
        return Outcome {
            written: 0,
            dropped: 0,
            error: None,
        };
    }
    if *need_newline {
        match write_counted(out, b"\n") {
            (_, None) => *need_newline = false,
            (_, Some(e)) => {
                return Outcome {
                    written: 0,
                    dropped: total,
                    error: Some(e),
                }
            }
        }
    }
    let (done, error) = write_counted(out, &batch.buf);
    let Some(error) = error else {
        return Outcome {
            written: total,
            dropped: 0,
            error: None,
        };
    };
    // Records whose whole line (newline included) went out.
    let mut whole = batch.ends.partition_point(|&end| end <= done);
    let line_start = whole.checked_sub(1).map_or(0, |i| batch.ends[i]);
    let fragment = done - line_start;
    if fragment > 0 && out.unwrite(fragment as u64).is_err() {
        *need_newline = true;
        if done + 1 == batch.ends[whole] {
            // Only the newline is missing: the record is there to read.
            whole += 1;
        }
    }
    Outcome {
        written: whole as u64,
        dropped: total - whole as u64,
        error: Some(error),
    }
}

/// A run of failed writes: logged when it starts and when it ends.
struct Episode {
    since: Instant,
    lost: u64,
}

struct Writer {
    rx: Receiver<Msg>,
    sink: Sink,
    path: Option<PathBuf>,
    /// Mode of a newly created file (see [`LogConfig::mode`]).
    mode: u32,
    format: LogFormat,
    users: UserMapper,
    written: Arc<AtomicU64>,
    queued: Arc<AtomicU64>,
    drops: Arc<Drops>,
    on_fault: Option<FaultHook>,
    reopen: Arc<AtomicBool>,
    batch: Batch,
    /// The output ends inside a line (see [`write_batch`]).
    need_newline: bool,
    /// Set while writing fails.
    failing: Option<Episode>,
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
        loop {
            if self.reopen.swap(false, Ordering::Relaxed) {
                let _ = self.reopen_sink(true);
            }
            let mut stop = false;
            loop {
                match self.rx.try_recv() {
                    Ok(Msg::Event(ev)) => {
                        self.add(ev);
                        if self.batch.buf.len() >= BATCH_BYTES {
                            self.write_batch();
                        }
                    }
                    Ok(Msg::Stop) => stop = true,
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        stop = true;
                        break;
                    }
                }
            }
            self.write_batch();
            if stop {
                break;
            }
            std::thread::sleep(POLL_INTERVAL);
        }
        if let Some(ep) = &self.failing {
            tracing::error!(
                path = %self.path_name(),
                lost = ep.lost,
                "access log: still failing at exit; {} records were dropped (and counted) since writing failed",
                ep.lost
            );
        }
    }

    fn path_name(&self) -> String {
        self.path
            .as_ref()
            .map_or_else(|| "(stdout)".to_string(), |p| p.display().to_string())
    }

    fn fault(&self, what: &'static str) {
        if let Some(f) = &self.on_fault {
            f(what);
        }
    }

    /// Reopens the configured path; on failure keeps the current output
    /// (which may be a file that was removed: see `write_batch`).
    fn reopen_sink(&mut self, asked: bool) -> Result<(), io::Error> {
        if self.path.is_none() {
            return Ok(()); // standard output stays what it is
        }
        match Sink::open(self.path.as_deref(), self.mode) {
            Ok((sink, mid_line)) => {
                self.sink = sink;
                self.need_newline = mid_line;
                Ok(())
            }
            // While writing fails, the episode's messages say enough.
            Err(e) if asked || self.failing.is_none() => {
                self.fault("reopen");
                let path = self.path_name();
                if self.sink.removed() {
                    tracing::error!(path = %path, error = %e, "access log: the log file was removed and {path} cannot be opened again: {e}; records are dropped and counted until it can")
                } else {
                    tracing::error!(path = %path, error = %e, "access log: cannot reopen {path}: {e}; still writing to the old file (socialgate_access_log_failures_total counts this)")
                }
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    fn add(&mut self, mut ev: Event) {
        if ev.pseudonymize {
            if let Some(u) = ev.user.take() {
                ev.user = Some((self.users)(&u));
            }
        }
        format_event(&ev, self.format, &mut self.batch.buf);
        self.batch.ends.push(self.batch.buf.len());
    }

    /// Writes the batch, counts its records, and logs the start and the end
    /// of a failure episode.
    fn write_batch(&mut self) {
        if self.batch.ends.is_empty() {
            return;
        }
        let mut reopened = Ok(());
        if self.failing.is_some() || self.sink.removed() {
            // Freed space, a recreated directory or a rotated file: try the
            // path afresh before each attempt; and a file that was removed
            // under us is opened again by name.
            reopened = self.reopen_sink(false);
        }
        let out = if self.sink.removed() {
            // Writing on would "succeed" into a file nobody can read.
            let why = reopened
                .err()
                .map_or_else(|| "gone".to_string(), |e| e.to_string());
            Outcome {
                written: 0,
                dropped: self.batch.records(),
                error: Some(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("the log file was removed and cannot be opened again ({why})"),
                )),
            }
        } else {
            write_batch(&mut self.sink, &self.batch, &mut self.need_newline)
        };
        let records = self.batch.records();
        self.batch.clear();
        self.written.fetch_add(out.written, Ordering::Relaxed);
        self.drops.add(out.dropped);
        self.queued.fetch_sub(records, Ordering::Relaxed);
        let path = self.path_name();
        match (out.error, &mut self.failing) {
            (Some(e), None) => {
                self.fault("write");
                tracing::error!(
                    path = %path,
                    error = %e,
                    "access log: cannot write {path}: {e}; records are dropped and counted (socialgate_access_log_dropped_total) until the log can be written again"
                );
                self.failing = Some(Episode {
                    since: Instant::now(),
                    lost: out.dropped,
                });
            }
            (Some(_), Some(ep)) => ep.lost += out.dropped,
            (None, Some(ep)) => {
                tracing::warn!(
                    path = %path,
                    lost = ep.lost,
                    failed_for_s = ep.since.elapsed().as_secs(),
                    "access log: writing resumed; {} records were dropped (and counted) while it failed",
                    ep.lost
                );
                self.failing = None;
            }
            (None, None) => {}
        }
    }
}

/// Formats one record, newline included.
pub fn format_event(ev: &Event, format: LogFormat, out: &mut Vec<u8>) {
    match format {
        LogFormat::Json => write_json(ev, out),
        LogFormat::Squid => write_squid(ev, out),
    }
}

/// The JSON line of `ev`: byte for byte what `serde_json::to_writer` makes
/// of the derived `Serialize` (the schema's reference; the test
/// `json_lines_are_byte_identical_to_serde_for_varied_and_hostile_events`
/// holds the two together), at a fraction of the cost (docs/benchmarks.md,
/// "Access-log records").
///
/// Keys are literal bytes, not serialised and escaped one by one. Values
/// that can never need escaping are written as they are: the enums' fixed
/// labels, numbers (itoa), the timestamp (jiff's printer, straight into the
/// buffer) and addresses. Every string that comes from outside (user, host,
/// path, method, groups, rule, ...) is escaped by serde_json itself.
///
/// The destructuring below names every field, so a field added to
/// [`Event`] does not compile until it is written here too.
fn write_json(ev: &Event, out: &mut Vec<u8>) {
    let Event {
        time,
        kind,
        client,
        user,
        auth,
        groups,
        group,
        method,
        host,
        port,
        path,
        sni,
        tls,
        platform,
        category,
        class,
        activity,
        signature,
        activity_unseen,
        foreground,
        action,
        mode,
        rule,
        reason,
        warn,
        budget,
        status,
        bytes_up,
        bytes_down,
        duration_ms,
        error,
        parent,
        parent_status,
        original_dst,
        request_reason,
        pseudonymize: _,
    } = ev;
    out.extend_from_slice(b"{\"time\":\"");
    // Printing into a Vec cannot fail; RFC 3339 never needs escaping.
    let _ = jiff::fmt::temporal::DateTimePrinter::new().print_timestamp(time, &mut *out);
    out.extend_from_slice(b"\",\"kind\":");
    json_label(out, kind.as_str());
    out.extend_from_slice(b",\"client\":\"");
    write_ip(out, *client);
    out.extend_from_slice(b"\",\"user\":");
    json_opt_text(out, user.as_deref());
    out.extend_from_slice(b",\"auth\":");
    json_label(out, auth.as_str());
    out.extend_from_slice(b",\"groups\":[");
    for (i, g) in groups.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        json_text(out, g);
    }
    out.extend_from_slice(b"],\"group\":");
    json_opt_text(out, group.as_deref());
    out.extend_from_slice(b",\"method\":");
    json_text(out, method.as_str());
    out.extend_from_slice(b",\"host\":");
    json_text(out, host);
    out.extend_from_slice(b",\"port\":");
    json_number(out, u64::from(*port));
    if let Some(path) = path {
        out.extend_from_slice(b",\"path\":");
        json_text(out, path);
    }
    if let Some(sni) = sni {
        out.extend_from_slice(b",\"sni\":");
        json_text(out, sni);
    }
    if let Some(tls) = tls {
        out.extend_from_slice(b",\"tls\":");
        json_label(out, tls.as_str());
    }
    out.extend_from_slice(b",\"platform\":");
    json_opt_text(out, platform.as_deref());
    out.extend_from_slice(b",\"category\":");
    json_opt_text(out, category.as_deref());
    out.extend_from_slice(b",\"class\":");
    json_opt_label(out, class.map(|c| c.as_str()));
    out.extend_from_slice(b",\"activity\":");
    json_opt_label(out, activity.map(|a| a.as_str()));
    if let Some(signature) = signature {
        out.extend_from_slice(b",\"signature\":");
        json_text(out, signature);
    }
    if let Some(unseen) = activity_unseen {
        out.extend_from_slice(b",\"activity_unseen\":");
        json_text(out, unseen);
    }
    out.extend_from_slice(if *foreground {
        b",\"foreground\":true,\"action\":"
    } else {
        b",\"foreground\":false,\"action\":"
    });
    json_label(out, action.as_str());
    out.extend_from_slice(b",\"mode\":");
    json_label(out, mode.as_str());
    out.extend_from_slice(b",\"rule\":");
    json_text(out, rule);
    out.extend_from_slice(b",\"reason\":");
    json_label(out, reason.as_str());
    if let Some(warn) = warn {
        out.extend_from_slice(b",\"warn\":");
        json_label(out, warn.as_str());
    }
    if let Some(budget) = budget {
        out.extend_from_slice(b",\"budget\":");
        json_label(out, budget.as_str());
    }
    out.extend_from_slice(b",\"status\":");
    json_number(out, u64::from(*status));
    out.extend_from_slice(b",\"bytes_up\":");
    json_number(out, *bytes_up);
    out.extend_from_slice(b",\"bytes_down\":");
    json_number(out, *bytes_down);
    out.extend_from_slice(b",\"duration_ms\":");
    json_number(out, *duration_ms);
    if let Some(error) = error {
        out.extend_from_slice(b",\"error\":");
        json_label(out, error.as_str());
    }
    if let Some(parent) = parent {
        out.extend_from_slice(b",\"parent\":");
        json_text(out, parent);
    }
    if let Some(status) = parent_status {
        out.extend_from_slice(b",\"parent_status\":");
        json_number(out, u64::from(*status));
    }
    if let Some(dst) = original_dst {
        out.extend_from_slice(b",\"original_dst\":\"");
        // `SocketAddr`'s serde form is its `Display`: IPv6 in brackets.
        match dst {
            std::net::SocketAddr::V4(v4) => {
                write_ip(out, std::net::IpAddr::V4(*v4.ip()));
                out.push(b':');
                json_number(out, u64::from(v4.port()));
            }
            std::net::SocketAddr::V6(v6) => {
                let _ = write!(out, "{v6}");
            }
        }
        out.push(b'"');
    }
    if let Some(reason) = request_reason {
        out.extend_from_slice(b",\"request_reason\":");
        json_text(out, reason);
    }
    out.extend_from_slice(b"}\n");
}

/// A string from outside, quoted and escaped by serde_json (never by hand).
fn json_text(out: &mut Vec<u8>, s: &str) {
    // Serialising a string into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

fn json_opt_text(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => json_text(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

/// One of the schema's fixed labels (an enum's `as_str`, its serde name):
/// lowercase words and hyphens, which JSON never escapes (the test
/// `labels_need_no_escaping_and_are_the_serde_names` checks every one).
fn json_label(out: &mut Vec<u8>, label: &'static str) {
    out.push(b'"');
    out.extend_from_slice(label.as_bytes());
    out.push(b'"');
}

fn json_opt_label(out: &mut Vec<u8>, label: Option<&'static str>) {
    match label {
        Some(l) => json_label(out, l),
        None => out.extend_from_slice(b"null"),
    }
}

fn json_number(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// An address as its `Display` writes it (digits, dots, colons, hex: never
/// escaped); IPv4 without `fmt`, as `event::push_ip` does.
fn write_ip(out: &mut Vec<u8>, ip: std::net::IpAddr) {
    match ip {
        std::net::IpAddr::V4(v4) => {
            let mut digits = itoa::Buffer::new();
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                out.extend_from_slice(digits.format(octet).as_bytes());
            }
        }
        std::net::IpAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
}

/// Squid's native format:
/// `time elapsed client code/status bytes method URL user hierarchy/peer type`.
///
/// Written piece by piece into the buffer, without `fmt` or a `String` per
/// part (the test `squid_lines_are_byte_identical_to_the_fmt_writer` holds
/// it to the `fmt` version it replaced). Nothing is escaped: the fields are
/// the ones Squid's analyzers split on spaces, as before.
fn write_squid(ev: &Event, out: &mut Vec<u8>) {
    let mut digits = itoa::Buffer::new();
    // Seconds with three decimals, from the milliseconds: what `{:.3}` of
    // `ms as f64 / 1000.0` writes for every time jiff can hold (the double
    // is within 2e-5 of the exact value there, far from a rounding edge).
    let ms = ev.time.as_millisecond();
    if ms < 0 {
        out.push(b'-');
    }
    let ms = ms.unsigned_abs();
    out.extend_from_slice(digits.format(ms / 1000).as_bytes());
    out.push(b'.');
    pad_number(out, ms % 1000, 3, b'0');
    out.push(b' ');
    pad_number(out, ev.duration_ms, 6, b' ');
    out.push(b' ');
    write_ip(out, ev.client);
    out.push(b' ');
    let (refused, code) = squid_code(ev);
    out.extend_from_slice(code.as_bytes());
    out.push(b'/');
    pad_number(out, u64::from(ev.status), 3, b'0');
    out.push(b' ');
    out.extend_from_slice(digits.format(ev.bytes_down).as_bytes());
    out.push(b' ');
    out.extend_from_slice(ev.method.as_str().as_bytes());
    out.push(b' ');
    match ev.kind {
        Kind::Tunnel => {
            url_host(out, &ev.host);
            out.push(b':');
            out.extend_from_slice(digits.format(ev.port).as_bytes());
        }
        Kind::Request | Kind::AccessRequest => {
            // A request inside an inspected tunnel is an https:// URL.
            let (scheme, default_port): (&[u8], u16) = match ev.tls {
                Some(crate::event::Tls::Intercepted) => (b"https://", 443),
                _ => (b"http://", 80),
            };
            out.extend_from_slice(scheme);
            url_host(out, &ev.host);
            if ev.port != default_port {
                out.push(b':');
                out.extend_from_slice(digits.format(ev.port).as_bytes());
            }
            out.extend_from_slice(ev.path.as_deref().unwrap_or("/").as_bytes());
        }
    }
    out.push(b' ');
    out.extend_from_slice(ev.user.as_deref().unwrap_or("-").as_bytes());
    out.push(b' ');
    match &ev.parent {
        _ if refused || ev.status >= 500 => out.extend_from_slice(b"HIER_NONE/-"),
        // Squid's code for a request sent to its first parent that answered.
        Some(parent) => {
            let host = parent.rsplit_once(':').map_or(&**parent, |(h, _)| h);
            out.extend_from_slice(b"FIRSTUP_PARENT/");
            out.extend_from_slice(host.as_bytes());
        }
        None => {
            out.extend_from_slice(b"HIER_DIRECT/");
            out.extend_from_slice(ev.host.as_bytes());
        }
    }
    out.extend_from_slice(b" -\n");
}

/// Whether socialgate answered itself (a refusal, or a request held at a
/// warning), and the Squid result code.
fn squid_code(ev: &Event) -> (bool, &'static str) {
    let refused = matches!(
        Verdict::of_record(ev.action, ev.mode, ev.warn),
        Verdict::Refused | Verdict::Warned
    );
    let code = if ev.kind == Kind::AccessRequest {
        "NONE_NONE"
    } else if refused {
        "TCP_DENIED"
    } else if ev.error.is_some() && ev.status >= 500 {
        "TCP_MISS_ABORTED"
    } else if ev.kind == Kind::Tunnel {
        "TCP_TUNNEL"
    } else {
        "TCP_MISS"
    };
    (refused, code)
}

/// `n` in decimal, padded on the left with `pad` to `width` (as `{:>6}` or
/// `{:03}` do; a longer number is written whole).
fn pad_number(out: &mut Vec<u8>, n: u64, width: usize, pad: u8) {
    let mut digits = itoa::Buffer::new();
    let s = digits.format(n);
    out.extend(std::iter::repeat_n(pad, width.saturating_sub(s.len())));
    out.extend_from_slice(s.as_bytes());
}

/// A URL's host: an IPv6 address in brackets.
fn url_host(out: &mut Vec<u8>, host: &str) {
    if host.contains(':') {
        out.push(b'[');
        out.extend_from_slice(host.as_bytes());
        out.push(b']');
    } else {
        out.extend_from_slice(host.as_bytes());
    }
}

/// The Squid line as it was written with `fmt` before `write_squid`: the
/// reference the tests hold `write_squid` to, byte for byte.
#[cfg(test)]
fn write_squid_reference(ev: &Event, out: &mut Vec<u8>) -> io::Result<()> {
    let secs = ev.time.as_millisecond() as f64 / 1000.0;
    // Answered by socialgate itself: a refusal, or a request held at a warning.
    let (refused, code) = squid_code(ev);
    let url = match ev.kind {
        Kind::Tunnel => format!("{}:{}", host_for_url(&ev.host), ev.port),
        Kind::Request | Kind::AccessRequest => {
            // A request inside an inspected tunnel is an https:// URL.
            let (scheme, default_port) = match ev.tls {
                Some(crate::event::Tls::Intercepted) => ("https", 443),
                _ => ("http", 80),
            };
            let port = if ev.port == default_port {
                String::new()
            } else {
                format!(":{}", ev.port)
            };
            format!(
                "{scheme}://{}{}{}",
                host_for_url(&ev.host),
                port,
                ev.path.as_deref().unwrap_or("/")
            )
        }
    };
    let hier = match &ev.parent {
        _ if refused || ev.status >= 500 => "HIER_NONE/-".to_string(),
        // Squid's code for a request sent to its first parent that answered.
        Some(parent) => {
            let host = parent.rsplit_once(':').map_or(&**parent, |(h, _)| h);
            format!("FIRSTUP_PARENT/{host}")
        }
        None => format!("HIER_DIRECT/{}", ev.host),
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

#[cfg(test)]
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
            tls: None,
            platform: None,
            category: Some(Arc::from("video")),
            class: Some(Class::Primary),
            activity: Some(Activity::Write),
            signature: None,
            activity_unseen: None,
            foreground: true,
            action: Action::Block,
            mode: Mode::Report,
            rule: Arc::from("no-tiktok"),
            reason: Reason::RuleMatched,
            warn: None,
            budget: None,
            status: 403,
            bytes_up: 12,
            bytes_down: u64::MAX,
            duration_ms: 0,
            error,
            parent: None,
            parent_status: None,
            original_dst: None,
            request_reason: None,
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

    /// The schema's reference: the derived `Serialize` through serde_json,
    /// as the log was written before `write_json`.
    fn serde_line(ev: &Event) -> Vec<u8> {
        let mut line = serde_json::to_vec(ev).unwrap();
        line.push(b'\n');
        line
    }

    fn assert_same_json(ev: &Event) {
        let mut line = Vec::new();
        format_event(ev, LogFormat::Json, &mut line);
        let reference = serde_line(ev);
        assert!(
            line == reference,
            "write_json and serde differ:\n  write_json: {}\n  serde:      {}",
            String::from_utf8_lossy(&line),
            String::from_utf8_lossy(&reference)
        );
    }

    /// Strings that need every kind of escape serde_json knows, and some
    /// it does not escape (DEL, U+2028, non-ASCII) that must stay as they are.
    const HOSTILE: &[&str] = &[
        "",
        "\"",
        "\\",
        "\"},\"user\":\"root",
        "a\"b\\c\nd\re\tf\u{1}g\u{7f}h é 😀 </script>",
        "\u{0}\u{1}\u{2}\u{3}\u{4}\u{5}\u{6}\u{7}\u{8}\u{9}\u{a}\u{b}\u{c}\u{d}\u{e}\u{f}",
        "\u{10}\u{11}\u{12}\u{13}\u{14}\u{15}\u{16}\u{17}\u{18}\u{19}\u{1a}\u{1b}\u{1c}\u{1d}\u{1e}\u{1f}",
        "line\u{2028}sep\u{2029}para\u{85}nel",
        "\u{feff}bom and \u{fffd} and \u{10ffff}",
        "/a?b=c&d=\"e\"#f",
        "xn--bcher-kva.example",
        "p:0123456789abcdef",
        "ends with a backslash \\",
    ];

    /// A record with every optional field present.
    fn full_event() -> Event {
        Event {
            kind: Kind::Tunnel,
            client: "10.0.0.21".parse().unwrap(),
            tls: Some(crate::event::Tls::Intercepted),
            platform: Some(Arc::from("tiktok")),
            signature: Some(Arc::from("x-post")),
            activity_unseen: Some(Arc::from("read-only")),
            warn: Some(crate::outcome::WarnOutcome::Shown),
            budget: Some(crate::outcome::BudgetOutcome::Left),
            parent: Some(Arc::from("parent.example:3128")),
            parent_status: Some(407),
            original_dst: Some("[2001:db8::1]:443".parse().unwrap()),
            request_reason: Some("I run the brand account".to_string()),
            ..event(
                Some("alice"),
                "www.tiktok.com",
                Some("/@a/video/1"),
                Some(ErrorKind::ParentRefused),
            )
        }
    }

    #[test]
    fn json_lines_are_byte_identical_to_serde_for_the_edge_cases() {
        for base in [event(None, "a.example", None, None), full_event()] {
            assert_same_json(&base);
            for s in HOSTILE {
                let a: Arc<str> = Arc::from(*s);
                let mut ev = base.clone();
                ev.user = Some(s.to_string());
                ev.host = s.to_string();
                ev.path = ev.path.as_ref().map(|_| s.to_string());
                ev.sni = ev.sni.as_ref().map(|_| s.to_string());
                ev.request_reason = ev.request_reason.as_ref().map(|_| s.to_string());
                ev.groups = vec![a.clone(), Arc::from("staff"), a.clone()];
                ev.group = Some(a.clone());
                ev.platform = Some(a.clone());
                ev.category = Some(a.clone());
                ev.signature = ev.signature.as_ref().map(|_| a.clone());
                ev.activity_unseen = ev.activity_unseen.as_ref().map(|_| a.clone());
                ev.rule = a.clone();
                ev.parent = ev.parent.as_ref().map(|_| a.clone());
                assert_same_json(&ev);
            }
            let mut ev = base.clone();
            ev.groups = Vec::new();
            ev.group = None;
            ev.category = None;
            ev.class = None;
            ev.activity = None;
            assert_same_json(&ev);
            for (port, status, n) in [(0, 0, 0), (1, 100, 9), (u16::MAX, u16::MAX, u64::MAX)] {
                let mut ev = base.clone();
                ev.port = port;
                ev.status = status;
                ev.parent_status = ev.parent_status.map(|_| status);
                (ev.bytes_up, ev.bytes_down, ev.duration_ms) = (n, n / 3, n / 7);
                assert_same_json(&ev);
            }
            for t in [
                "1970-01-01T00:00:00Z",
                "2026-11-26T08:40:12.5Z",
                "2026-11-26T08:40:12.000000001Z",
                "2026-11-26T08:40:12.120Z",
                "2026-11-26T08:40:12.123456789Z",
                "1969-12-31T23:59:59.999999999Z",
                "-009999-01-03T00:00:00Z",
                "9999-12-30T21:59:59.999999999Z",
            ] {
                let mut ev = base.clone();
                ev.time = t.parse().unwrap();
                assert_same_json(&ev);
            }
            for time in [jiff::Timestamp::MIN, jiff::Timestamp::MAX] {
                assert_same_json(&Event {
                    time,
                    ..base.clone()
                });
            }
            for ip in [
                "0.0.0.0",
                "255.255.255.255",
                "::",
                "::1",
                "::ffff:10.0.0.1",
                "fe80::1:2:3:4",
            ] {
                let mut ev = base.clone();
                ev.client = ip.parse().unwrap();
                assert_same_json(&ev);
            }
            for dst in ["10.0.0.1:80", "0.0.0.0:0", "[::1]:443", "[fe80::1%7]:8080"] {
                let mut ev = base.clone();
                ev.original_dst = Some(dst.parse().unwrap());
                assert_same_json(&ev);
            }
            let v6: std::net::SocketAddrV6 = "[2001:db8::2]:3128".parse().unwrap();
            let mut ev = base.clone();
            ev.original_dst = Some(std::net::SocketAddrV6::new(*v6.ip(), 3128, 99, 4).into());
            assert_same_json(&ev);
            for m in [
                "GET",
                "CONNECT",
                "PROPFIND",
                "M-SEARCH",
                "!#$%&'*+-.^_`|~09az",
            ] {
                let mut ev = base.clone();
                ev.method = http::Method::from_bytes(m.as_bytes()).unwrap();
                assert_same_json(&ev);
            }
        }
    }

    #[test]
    fn json_lines_are_byte_identical_to_serde_for_every_label() {
        use crate::event::{AuthMethod, Tls};
        use crate::outcome::{BudgetOutcome, WarnOutcome};
        let base = full_event();
        let mut events = Vec::new();
        for kind in [Kind::Request, Kind::Tunnel, Kind::AccessRequest] {
            events.push(Event {
                kind,
                ..base.clone()
            });
        }
        for auth in [AuthMethod::None, AuthMethod::Basic, AuthMethod::Header] {
            events.push(Event {
                auth,
                ..base.clone()
            });
        }
        for tls in [Tls::Intercepted, Tls::Passthrough, Tls::Pinned] {
            events.push(Event {
                tls: Some(tls),
                ..base.clone()
            });
        }
        for class in [Class::Primary, Class::Embedded] {
            events.push(Event {
                class: Some(class),
                ..base.clone()
            });
        }
        for activity in Activity::ALL {
            events.push(Event {
                activity: Some(activity),
                ..base.clone()
            });
        }
        for action in [Action::Allow, Action::Block, Action::Warn] {
            for mode in [Mode::Enforce, Mode::Report] {
                events.push(Event {
                    action,
                    mode,
                    ..base.clone()
                });
            }
        }
        for reason in Reason::ALL {
            events.push(Event {
                reason,
                ..base.clone()
            });
        }
        for warn in WarnOutcome::ALL {
            events.push(Event {
                warn: Some(warn),
                ..base.clone()
            });
        }
        for budget in [
            BudgetOutcome::Left,
            BudgetOutcome::Exhausted,
            BudgetOutcome::Unavailable,
        ] {
            events.push(Event {
                budget: Some(budget),
                ..base.clone()
            });
        }
        for error in ErrorKind::ALL {
            events.push(Event {
                error: Some(error),
                ..base.clone()
            });
        }
        for foreground in [false, true] {
            events.push(Event {
                foreground,
                ..base.clone()
            });
        }
        for ev in &events {
            assert_same_json(ev);
        }
    }

    /// `write_json` writes labels without escaping them: each must be the
    /// serde name and plain lowercase words.
    #[test]
    fn labels_need_no_escaping_and_are_the_serde_names() {
        use crate::event::{AuthMethod, Tls};
        use crate::outcome::{BudgetOutcome, WarnOutcome};
        fn check<T: serde::Serialize>(v: T, label: &str) {
            assert_eq!(serde_json::to_string(&v).unwrap(), format!("\"{label}\""));
            assert!(
                !label.is_empty() && label.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'),
                "{label:?}"
            );
        }
        for v in [Kind::Request, Kind::Tunnel, Kind::AccessRequest] {
            check(v, v.as_str());
        }
        for v in [AuthMethod::None, AuthMethod::Basic, AuthMethod::Header] {
            check(v, v.as_str());
        }
        for v in [Tls::Intercepted, Tls::Passthrough, Tls::Pinned] {
            check(v, v.as_str());
        }
        for v in [Class::Primary, Class::Embedded] {
            check(v, v.as_str());
        }
        for v in Activity::ALL {
            check(v, v.as_str());
        }
        for v in [Action::Allow, Action::Block, Action::Warn] {
            check(v, v.as_str());
        }
        for v in [Mode::Enforce, Mode::Report] {
            check(v, v.as_str());
        }
        for v in Reason::ALL {
            check(v, v.as_str());
        }
        for v in WarnOutcome::ALL {
            check(v, v.as_str());
        }
        for v in [
            BudgetOutcome::Left,
            BudgetOutcome::Exhausted,
            BudgetOutcome::Unavailable,
        ] {
            check(v, v.as_str());
        }
        for v in ErrorKind::ALL {
            check(v, v.as_str());
        }
    }

    /// A string from outside: mostly the bytes JSON escapes, with the ones
    /// it does not escape (DEL, U+2028, non-ASCII) mixed in; or any text.
    fn hostile_text() -> impl proptest::strategy::Strategy<Value = String> {
        proptest::prop_oneof![
            "[\"\\\\\\x00-\\x1f\\x7f a-z0-9:/.?=&%é\u{2028}\u{2029}\u{85}😀]{0,12}",
            "(?s).{0,12}",
        ]
    }

    fn arb_event() -> impl proptest::strategy::Strategy<Value = Event> {
        use crate::event::{AuthMethod, Tls};
        use crate::outcome::{BudgetOutcome, WarnOutcome};
        use proptest::prelude::*;
        use proptest::sample::select;
        let arc = || hostile_text().prop_map(Arc::<str>::from);
        let time = (
            -377_705_023_201i64..=253_402_207_199,
            prop_oneof![
                Just(0i32),
                (0i32..1000).prop_map(|ms| ms * 1_000_000),
                (0i32..1_000_000).prop_map(|us| us * 1000),
                0i32..1_000_000_000,
            ],
        )
            .prop_map(|(s, ns)| jiff::Timestamp::new(s, ns).unwrap_or(jiff::Timestamp::UNIX_EPOCH));
        let who = (
            time,
            select(vec![Kind::Request, Kind::Tunnel, Kind::AccessRequest]),
            any::<std::net::IpAddr>(),
            proptest::option::of(hostile_text()),
            select(vec![
                AuthMethod::None,
                AuthMethod::Basic,
                AuthMethod::Header,
            ]),
            proptest::collection::vec(arc(), 0..4),
            proptest::option::of(arc()),
            select(vec![
                "GET",
                "POST",
                "CONNECT",
                "PROPFIND",
                "M-SEARCH",
                "X!#$%&'*+.^_`|~",
            ]),
        );
        let what = (
            prop_oneof![
                hostile_text(),
                Just("2001:db8::1".to_string()),
                Just("www.tiktok.com".to_string())
            ],
            prop_oneof![Just(80u16), Just(443), any::<u16>()],
            proptest::option::of(hostile_text()),
            proptest::option::of(hostile_text()),
            proptest::option::of(select(vec![
                Tls::Intercepted,
                Tls::Passthrough,
                Tls::Pinned,
            ])),
            proptest::option::of(arc()),
            proptest::option::of(arc()),
            proptest::option::of(select(vec![Class::Primary, Class::Embedded])),
            proptest::option::of(select(Activity::ALL.to_vec())),
            proptest::option::of(arc()),
            proptest::option::of(arc()),
        );
        let decided = (
            any::<bool>(),
            select(vec![Action::Allow, Action::Block, Action::Warn]),
            select(vec![Mode::Enforce, Mode::Report]),
            arc(),
            select(Reason::ALL.to_vec()),
            proptest::option::of(select(WarnOutcome::ALL.to_vec())),
            proptest::option::of(select(vec![
                BudgetOutcome::Left,
                BudgetOutcome::Exhausted,
                BudgetOutcome::Unavailable,
            ])),
        );
        // Small numbers as often as any: the Squid line pads them.
        let small = || prop_oneof![0u64..100_000, any::<u64>()];
        let ended = (
            prop_oneof![100u16..600, any::<u16>()],
            small(),
            small(),
            small(),
            proptest::option::of(select(ErrorKind::ALL.to_vec())),
            proptest::option::of(arc()),
            proptest::option::of(any::<u16>()),
            proptest::option::of(any::<std::net::SocketAddr>()),
            proptest::option::of(hostile_text()),
            any::<bool>(),
        );
        (who, what, decided, ended).prop_map(
            |(
                (time, kind, client, user, auth, groups, group, method),
                (
                    host,
                    port,
                    path,
                    sni,
                    tls,
                    platform,
                    category,
                    class,
                    activity,
                    signature,
                    activity_unseen,
                ),
                (foreground, action, mode, rule, reason, warn, budget),
                (
                    status,
                    bytes_up,
                    bytes_down,
                    duration_ms,
                    error,
                    parent,
                    parent_status,
                    original_dst,
                    request_reason,
                    pseudonymize,
                ),
            )| Event {
                time,
                kind,
                client,
                user,
                auth,
                groups,
                group,
                method: http::Method::from_bytes(method.as_bytes()).unwrap(),
                host,
                port,
                path,
                sni,
                tls,
                platform,
                category,
                class,
                activity,
                signature,
                activity_unseen,
                foreground,
                action,
                mode,
                rule,
                reason,
                warn,
                budget,
                status,
                bytes_up,
                bytes_down,
                duration_ms,
                error,
                parent,
                parent_status,
                original_dst,
                request_reason,
                pseudonymize,
            },
        )
    }

    fn assert_same_squid(ev: &Event) {
        let mut line = Vec::new();
        format_event(ev, LogFormat::Squid, &mut line);
        let mut reference = Vec::new();
        write_squid_reference(ev, &mut reference).unwrap();
        assert!(
            line == reference,
            "write_squid and the fmt writer differ:\n  write_squid: {}\n  fmt:         {}",
            String::from_utf8_lossy(&line),
            String::from_utf8_lossy(&reference)
        );
    }

    #[test]
    fn squid_lines_are_byte_identical_to_the_fmt_writer() {
        for base in [event(None, "a.example", None, None), full_event()] {
            for kind in [Kind::Request, Kind::Tunnel, Kind::AccessRequest] {
                for tls in [
                    None,
                    Some(crate::event::Tls::Intercepted),
                    Some(crate::event::Tls::Pinned),
                ] {
                    for port in [80, 443, 8080] {
                        for host in ["www.tiktok.com", "2001:db8::1", "10.0.0.1"] {
                            for (action, mode) in [
                                (Action::Allow, Mode::Enforce),
                                (Action::Block, Mode::Enforce),
                                (Action::Block, Mode::Report),
                            ] {
                                for (status, error) in [
                                    (200, None),
                                    (502, Some(ErrorKind::UpstreamConnect)),
                                    (499, Some(ErrorKind::ClientClosed)),
                                ] {
                                    assert_same_squid(&Event {
                                        kind,
                                        tls,
                                        port,
                                        host: host.to_string(),
                                        action,
                                        mode,
                                        status,
                                        error,
                                        ..base.clone()
                                    });
                                }
                            }
                        }
                    }
                }
            }
            for parent in [
                None,
                Some("proxy.example:3128"),
                Some("[2001:db8::3]:3128"),
                Some("no-port"),
            ] {
                assert_same_squid(&Event {
                    parent: parent.map(Arc::from),
                    ..base.clone()
                });
            }
            for warn in crate::outcome::WarnOutcome::ALL {
                assert_same_squid(&Event {
                    action: Action::Warn,
                    warn: Some(warn),
                    ..base.clone()
                });
            }
            for t in [
                "1970-01-01T00:00:00Z",
                "1970-01-01T00:00:00.0015Z",
                "1969-12-31T23:59:59.999Z",
                "1969-12-31T23:59:59.9999Z",
                "1969-12-31T23:59:58.5Z",
                "2026-11-26T08:40:12.5Z",
                "2026-11-26T08:40:12.0009Z",
                "2026-11-26T08:40:12.999999999Z",
            ] {
                assert_same_squid(&Event {
                    time: t.parse().unwrap(),
                    ..base.clone()
                });
            }
            for time in [jiff::Timestamp::MIN, jiff::Timestamp::MAX] {
                assert_same_squid(&Event {
                    time,
                    ..base.clone()
                });
            }
            for (duration_ms, status, bytes_down) in [
                (0, 0, 0),
                (5, 7, 1),
                (999_999, 99, 10),
                (1_000_000, 1000, u64::MAX),
                (u64::MAX, u16::MAX, 0),
            ] {
                assert_same_squid(&Event {
                    duration_ms,
                    status,
                    bytes_down,
                    ..base.clone()
                });
            }
            for s in HOSTILE {
                assert_same_squid(&Event {
                    user: Some(s.to_string()),
                    host: s.to_string(),
                    path: Some(s.to_string()),
                    ..base.clone()
                });
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config { cases: 3000, ..Default::default() })]
        /// Any record, hostile strings in every field from outside: the
        /// line is the one serde_json makes of the derived `Serialize`.
        #[test]
        fn json_lines_are_byte_identical_to_serde_for_varied_and_hostile_events(ev in arb_event()) {
            let mut line = Vec::new();
            format_event(&ev, LogFormat::Json, &mut line);
            let reference = serde_line(&ev);
            proptest::prop_assert_eq!(
                String::from_utf8_lossy(&line),
                String::from_utf8_lossy(&reference)
            );
            proptest::prop_assert_eq!(line, reference);
        }

        /// Any record: the Squid line is the one the `fmt` writer made.
        #[test]
        fn squid_lines_are_byte_identical_to_the_fmt_writer_for_varied_events(ev in arb_event()) {
            let mut line = Vec::new();
            format_event(&ev, LogFormat::Squid, &mut line);
            let mut reference = Vec::new();
            write_squid_reference(&ev, &mut reference).unwrap();
            proptest::prop_assert_eq!(
                String::from_utf8_lossy(&line),
                String::from_utf8_lossy(&reference)
            );
        }
    }

    /// A disk with `room` bytes: `write` accepts what fits, then fails with
    /// ENOSPC. `can_cut` says whether a torn line can be cut off again.
    struct Disk {
        data: Vec<u8>,
        room: usize,
        can_cut: bool,
    }

    impl Disk {
        fn new(room: usize, can_cut: bool) -> Disk {
            Disk {
                data: Vec::new(),
                room,
                can_cut,
            }
        }
    }

    impl Write for Disk {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let free = self.room.saturating_sub(self.data.len());
            if free == 0 {
                return Err(io::Error::from_raw_os_error(libc::ENOSPC));
            }
            let n = free.min(buf.len());
            self.data.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Output for Disk {
        fn unwrite(&mut self, n: u64) -> io::Result<()> {
            if !self.can_cut {
                return Err(io::ErrorKind::Unsupported.into());
            }
            self.data.truncate(self.data.len() - n as usize);
            Ok(())
        }
    }

    /// A batch of real JSON lines, one per host.
    fn batch(hosts: &[&str]) -> Batch {
        let mut b = Batch::default();
        for h in hosts {
            format_event(&event(None, h, None, None), LogFormat::Json, &mut b.buf);
            b.ends.push(b.buf.len());
        }
        b
    }

    fn lines(data: &[u8]) -> Vec<&str> {
        std::str::from_utf8(data).unwrap().lines().collect()
    }

    #[test]
    fn a_failed_write_counts_only_whole_lines_and_cuts_the_torn_one_off() {
        let b = batch(&["a.example", "b.example", "c.example"]);
        let first = b.ends[0];
        // The disk fills up in the middle of the second line.
        let mut disk = Disk::new(first + 40, true);
        let mut need_newline = false;
        let out = write_batch(&mut disk, &b, &mut need_newline);
        assert_eq!((out.written, out.dropped), (1, 2));
        assert_eq!(out.error.unwrap().raw_os_error(), Some(libc::ENOSPC));
        assert_eq!(disk.data, b.buf[..first], "the fragment is cut off again");
        assert!(!need_newline);
        // Space returns: writing resumes on a clean line.
        disk.room = usize::MAX;
        let out = write_batch(&mut disk, &batch(&["d.example"]), &mut need_newline);
        assert_eq!((out.written, out.dropped), (1, 0));
        assert!(out.error.is_none());
        let l = lines(&disk.data);
        assert_eq!(l.len(), 2);
        for line in l {
            serde_json::from_str::<serde_json::Value>(line).expect("only whole records");
        }
    }

    #[test]
    fn a_torn_line_that_cannot_be_cut_off_stays_a_line_of_its_own() {
        let b = batch(&["a.example", "b.example", "c.example"]);
        let mut disk = Disk::new(b.ends[0] + 40, false);
        let mut need_newline = false;
        let out = write_batch(&mut disk, &b, &mut need_newline);
        assert_eq!((out.written, out.dropped), (1, 2));
        assert!(need_newline, "the next write must end the fragment first");
        // Still full: nothing more goes out, the whole batch is dropped.
        let out = write_batch(&mut disk, &batch(&["x.example"]), &mut need_newline);
        assert_eq!((out.written, out.dropped), (0, 1));
        assert!(out.error.is_some() && need_newline);
        disk.room = usize::MAX;
        let out = write_batch(&mut disk, &batch(&["d.example"]), &mut need_newline);
        assert_eq!((out.written, out.dropped), (1, 0));
        assert!(!need_newline);
        let l = lines(&disk.data);
        assert_eq!(l.len(), 3, "{l:?}");
        assert!(serde_json::from_str::<serde_json::Value>(l[0]).is_ok());
        assert!(serde_json::from_str::<serde_json::Value>(l[1]).is_err());
        assert!(
            l[2].contains("d.example") && serde_json::from_str::<serde_json::Value>(l[2]).is_ok()
        );

        // The report reader skips the fragment, counts it, and reads on.
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("access.log");
        std::fs::write(&p, &disk.data).unwrap();
        let mut stats = crate::report::read::ReadStats::default();
        let mut hosts = Vec::new();
        crate::report::read::read_logs(&[p], &mut stats, |r| hosts.push(r.host.to_string()));
        assert_eq!(hosts, ["a.example", "d.example"]);
        assert_eq!((stats.malformed, stats.partial), (1, 1));
    }

    #[test]
    fn a_line_short_of_only_its_newline_counts_as_written_if_it_stays() {
        let b = batch(&["a.example", "b.example", "c.example"]);
        let mut need_newline = false;
        let mut disk = Disk::new(b.ends[1] - 1, false);
        let out = write_batch(&mut disk, &b, &mut need_newline);
        assert_eq!(
            (out.written, out.dropped),
            (2, 1),
            "the second record is readable"
        );
        assert!(need_newline);
        // Where it can be cut off, it is, and counts as dropped.
        let mut need_newline = false;
        let mut disk = Disk::new(b.ends[1] - 1, true);
        let out = write_batch(&mut disk, &b, &mut need_newline);
        assert_eq!((out.written, out.dropped), (1, 2));
        assert_eq!(disk.data, b.buf[..b.ends[0]]);
        assert!(!need_newline);
    }

    #[test]
    fn a_full_disk_drops_and_counts_the_whole_batch() {
        let b = batch(&["a.example", "b.example"]);
        let mut disk = Disk::new(0, true);
        let mut need_newline = false;
        let out = write_batch(&mut disk, &b, &mut need_newline);
        assert_eq!((out.written, out.dropped), (0, 2));
        assert!(disk.data.is_empty() && !need_newline);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_writer_counts_records_it_cannot_write_in_the_drop_count_and_hook() {
        let hooked = Arc::new(AtomicU64::new(0));
        let h = hooked.clone();
        let (rec, writer) = Recorder::start(
            LogConfig {
                path: Some(PathBuf::from("/dev/full")),
                format: LogFormat::Json,
                capacity: 100,
                mode: DEFAULT_LOG_MODE,
            },
            Arc::new(|u: &str| u.to_string()),
            Vec::new(),
            Some(Arc::new(move |n| {
                h.fetch_add(n, Ordering::Relaxed);
            })),
            None,
        )
        .unwrap();
        for _ in 0..7 {
            rec.record(event(Some("alice"), "a.example", None, None));
        }
        writer.finish();
        assert_eq!((rec.written(), rec.dropped()), (0, 7));
        assert_eq!(hooked.load(Ordering::Relaxed), 7);
    }
}
