//! Access-log write failures, through the real proxy and real clients: a
//! full disk (a symlink to /dev/full), a file-size limit that cuts a write
//! in the middle of a line, a log that already ends in a torn line, and
//! rotation. Every record that does not reach the file is counted in
//! `socialgate_access_log_dropped_total`, the error is logged once per
//! episode, no line is ever torn, and writing resumes by itself.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::*;

/// Points `link` at `target`, atomically (a new symlink renamed over it).
fn point(link: &Path, target: &Path) {
    let tmp = link.with_extension("tmp-link");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp).unwrap();
    std::fs::rename(&tmp, link).unwrap();
}

/// `socialgate_access_log_dropped_total` as scraped from `/metrics`.
async fn dropped_metric(admin: &str) -> u64 {
    let text = reqwest::get(format!("http://{admin}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let v = text
        .lines()
        .find_map(|l| l.strip_prefix("socialgate_access_log_dropped_total "))
        .unwrap_or_else(|| panic!("no socialgate_access_log_dropped_total in {text}"));
    v.trim().parse::<f64>().unwrap() as u64
}

/// Polls `/metrics` until the dropped counter equals `n`; fails after 10 s.
async fn wait_for_dropped(admin: &str, n: u64) {
    let what = format!("socialgate_access_log_dropped_total is {n}");
    eventually_async(&what, || async { dropped_metric(admin).await == n }).await;
}

/// The file's lines; panics unless every one is a whole JSON record and
/// the file ends with a newline (no torn line).
fn whole_records(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "{} ends inside a line: {text:?}",
        path.display()
    );
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("torn line {l:?}: {e}")))
        .collect()
}

fn line_count(path: &Path) -> usize {
    std::fs::read(path)
        .map(|b| b.iter().filter(|&&c| c == b'\n').count())
        .unwrap_or(0)
}

async fn get_ok(c: &reqwest::Client, url: &str) {
    let r = c.get(url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.bytes().await.unwrap();
}

/// The address after `key=` in the binary's stderr.
fn field_addr(stderr: &str, key: &str) -> String {
    let at = stderr
        .find(key)
        .unwrap_or_else(|| panic!("no {key} in {stderr}"))
        + key.len();
    stderr[at..].split_whitespace().next().unwrap().to_string()
}

/// `socialgate run` with the access log at `log`, an admin listener, and
/// example.org pinned to 127.0.0.1; returns it and its admin address.
async fn run_binary(policy: &PolicyDir, log: &Path) -> (Spawned, String) {
    let key = policy.path().join("pseudonym.key");
    let p = run_args(log, &key);
    let args: Vec<&str> = p.iter().map(String::as_str).collect();
    let s = Spawned::run(policy.path(), &args).await;
    let admin = field_addr(&s.stderr(), "admin=");
    (s, admin)
}

fn run_args(log: &Path, key: &Path) -> Vec<String> {
    [
        "--access-log",
        log.to_str().unwrap(),
        "--admin",
        "127.0.0.1:0",
        "--resolve",
        "example.org=127.0.0.1",
        "--pseudonym-key",
        key.to_str().unwrap(),
        "--watch-interval-ms",
        "0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Like [`Spawned::run`], but no file the process writes may grow past
/// `max_file_bytes` (RLIMIT_FSIZE, SIGXFSZ ignored): a write that crosses
/// the limit is cut short, then fails with EFBIG, like a disk filling up.
async fn run_binary_with_file_limit(
    policy: &PolicyDir,
    log: &Path,
    max_file_bytes: u64,
) -> (Spawned, String) {
    let key = policy.path().join("pseudonym.key");
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_socialgate"));
    cmd.arg("run")
        .arg("--policy")
        .arg(policy.path())
        .args(["--listen", "127.0.0.1:0"])
        .args(run_args(log, &key))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    // SAFETY: setrlimit and signal are async-signal-safe; the closure
    // allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            let lim = libc::rlimit {
                rlim_cur: max_file_bytes as libc::rlim_t,
                rlim_max: max_file_bytes as libc::rlim_t,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            Ok(())
        });
    }
    let s = Spawned::attach(cmd.spawn().expect("spawn socialgate")).await;
    let admin = s.admin.expect("admin listener").to_string();
    (s, admin)
}

#[tokio::test]
async fn a_full_disk_counts_every_lost_record_and_writing_resumes_when_space_returns() {
    let origin = Origin::start().await;
    let logs = tempfile::tempdir().unwrap();
    let link = logs.path().join("access.log");
    point(&link, Path::new("/dev/full")); // every write: ENOSPC
    let path = link.clone();
    let proxy = TestProxy::start_in(PolicyDir::new(BASIC_POLICY), move |cfg| {
        cfg.log.as_mut().unwrap().path = Some(path);
    })
    .await;
    let admin = proxy.app().admin_addr.unwrap().to_string();
    let c = proxy.client();
    let url = format!("http://example.org:{}/hello", origin.port());
    const LOST: u64 = 25;
    for _ in 0..LOST {
        get_ok(&c, &url).await;
    }
    let rec = &proxy.app().recorder;
    eventually("every record was written or dropped", || {
        rec.written() + rec.dropped() >= LOST
    })
    .await;
    assert_eq!(
        (rec.written(), rec.dropped()),
        (0, LOST),
        "nothing reached the disk; every record must count as dropped"
    );
    wait_for_dropped(&admin, LOST).await;

    // Space returns: the same path now leads to a real file.
    let real = logs.path().join("real.log");
    point(&link, &real);
    for _ in 0..5 {
        get_ok(&c, &url).await;
    }
    eventually("the new records reach the file", || line_count(&real) >= 5).await;
    let lines = whole_records(&real);
    assert_eq!(lines.len(), 5);
    assert!(lines.iter().all(|l| l["host"] == "example.org"));
    assert_eq!((rec.written(), rec.dropped()), (5, LOST));
    assert_eq!(dropped_metric(&admin).await, LOST, "no new drops");
}

#[tokio::test]
async fn a_write_error_is_logged_once_per_episode_with_the_records_it_lost() {
    let origin = Origin::start().await;
    let policy = PolicyDir::new(BASIC_POLICY);
    let logs = tempfile::tempdir().unwrap();
    let link = logs.path().join("access.log");
    point(&link, Path::new("/dev/full"));
    let (sg, admin) = run_binary(&policy, &link).await;
    let c = sg.client();
    let url = format!("http://example.org:{}/hello", origin.port());
    // Sequential requests over real sockets span many writer batches.
    for _ in 0..30 {
        get_ok(&c, &url).await;
    }
    wait_for_dropped(&admin, 30).await;
    let failures = |s: &str| s.matches("access log: cannot write").count();
    let recoveries = |s: &str| s.matches("access log: writing resumed").count();
    assert_eq!(
        failures(&sg.stderr()),
        1,
        "once per episode:\n{}",
        sg.stderr()
    );
    assert!(
        sg.stderr().contains("dropped and counted"),
        "{}",
        sg.stderr()
    );

    let real = logs.path().join("real.log");
    point(&link, &real);
    for _ in 0..3 {
        get_ok(&c, &url).await;
    }
    eventually("the records reach the file", || line_count(&real) >= 3).await;
    eventually("the recovery is logged", || recoveries(&sg.stderr()) == 1).await;
    let err = sg.stderr();
    let recovery = err
        .lines()
        .find(|l| l.contains("access log: writing resumed"))
        .unwrap();
    assert!(
        recovery.contains("lost=30") && recovery.contains("30 records"),
        "{recovery}"
    );
    assert_eq!(whole_records(&real).len(), 3);

    // The open file keeps working whatever the path now points at; after
    // SIGUSR1 the writer reopens the path, fails again, and says so once.
    point(&link, Path::new("/dev/full"));
    sg.signal(libc::SIGUSR1);
    let mut sent = 33;
    loop {
        get_ok(&c, &url).await;
        sent += 1;
        if dropped_metric(&admin).await > 30 {
            break;
        }
        assert!(sent < 500, "no record was dropped after the reopen");
    }
    eventually_async("every record is written or counted", || async {
        dropped_metric(&admin).await as usize + line_count(&real) == sent
    })
    .await;
    whole_records(&real);
    assert_eq!(failures(&sg.stderr()), 2, "{}", sg.stderr());
    assert_eq!(recoveries(&sg.stderr()), 1);
}

#[tokio::test]
async fn a_write_cut_short_leaves_no_torn_line_and_rotation_with_sigusr1_resumes() {
    let origin = Origin::start().await;
    let policy = PolicyDir::new(BASIC_POLICY);
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("access.log");
    // Room for a few records of ~400 bytes; the next write is cut short.
    const LIMIT: u64 = 2500;
    let (sg, admin) = run_binary_with_file_limit(&policy, &log, LIMIT).await;
    let c = sg.client();
    let url = format!("http://example.org:{}/hello", origin.port());
    const SENT: usize = 20;
    for _ in 0..SENT {
        get_ok(&c, &url).await;
    }
    // Every record is either a whole line in the file or counted.
    eventually_async(
        "every record is a whole line in the file or counted",
        || async { dropped_metric(&admin).await as usize + line_count(&log) == SENT },
    )
    .await;
    let dropped = dropped_metric(&admin).await;
    let kept = whole_records(&log);
    assert!(!kept.is_empty() && dropped > 0, "{} kept", kept.len());
    assert!(std::fs::metadata(&log).unwrap().len() <= LIMIT);
    assert!(
        sg.stderr().contains("access log: cannot write"),
        "{}",
        sg.stderr()
    );

    // logrotate: move the file away, signal, and writing resumes in a new file.
    let rotated = logs.path().join("access.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    sg.signal(libc::SIGUSR1);
    eventually("the reopen is logged", || {
        sg.stderr().contains("reopening the access log")
    })
    .await;
    for _ in 0..4 {
        get_ok(&c, &url).await;
    }
    eventually("the records reach the new file", || line_count(&log) >= 4).await;
    assert_eq!(whole_records(&log).len(), 4);
    assert_eq!(whole_records(&rotated).len(), kept.len());
    assert_eq!(dropped_metric(&admin).await, dropped, "no new drops");
    eventually("the recovery is logged", || {
        sg.stderr().contains("access log: writing resumed")
    })
    .await;
}

#[tokio::test]
async fn a_log_ending_in_a_torn_line_gets_no_record_glued_to_it_and_the_report_counts_it() {
    let origin = Origin::start().await;
    // What a crash in the middle of a write leaves behind.
    const FRAGMENT: &str =
        r#"{"time":"2026-03-02T09:00:00Z","kind":"request","client":"127.0.0.1","us"#;
    let logs = tempfile::tempdir().unwrap();
    let log: PathBuf = logs.path().join("access.log");
    std::fs::write(&log, FRAGMENT).unwrap();
    let path = log.clone();
    let proxy = TestProxy::start_in(PolicyDir::new(BASIC_POLICY), move |cfg| {
        cfg.log.as_mut().unwrap().path = Some(path);
    })
    .await;
    let c = proxy.client();
    let url = format!("http://example.org:{}/hello", origin.port());
    for _ in 0..3 {
        get_ok(&c, &url).await;
    }
    let rec = &proxy.app().recorder;
    eventually("the records are written", || rec.written() >= 3).await;
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert_eq!(lines[0], FRAGMENT, "the fragment stays a line of its own");
    for l in &lines[1..] {
        let v: serde_json::Value =
            serde_json::from_str(l).unwrap_or_else(|e| panic!("glued line {l:?}: {e}"));
        assert_eq!(v["host"], "example.org");
    }
    proxy.stop().await;

    let (code, out, err) =
        socialgate(&["report", "--log", log.to_str().unwrap(), "--format", "json"]).await;
    assert_eq!(code, 0, "{err}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    let input = &r["input"];
    assert_eq!(input["records"], 3, "{input:#}");
    assert_eq!(input["malformed"], 1, "{input:#}");
    assert_eq!(input["files"][0]["partial"], 1, "{input:#}");
    assert!(
        input["malformed_examples"][0]
            .as_str()
            .unwrap()
            .contains("access.log:1: truncated JSON"),
        "{input:#}"
    );
}

/// `GET /readyz` on the admin listener answers 200.
async fn ready(admin: &str) -> bool {
    reqwest::get(format!("http://{admin}/readyz"))
        .await
        .is_ok_and(|r| r.status() == 200)
}

/// `socialgate_access_log_failures_total{what}` as scraped.
async fn failures_metric(admin: &str, what: &str) -> u64 {
    let text = reqwest::get(format!("http://{admin}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let key = format!("socialgate_access_log_failures_total{{what=\"{what}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(key.as_str()))
        .map_or(0, |v| v.trim().parse::<f64>().unwrap() as u64)
}

/// A proxy writing its access log to `path`.
async fn proxy_logging_to(path: PathBuf) -> TestProxy {
    TestProxy::start_in(PolicyDir::new(BASIC_POLICY), move |cfg| {
        cfg.log.as_mut().unwrap().path = Some(path);
    })
    .await
}

#[tokio::test]
async fn a_removed_log_directory_drops_and_counts_every_record_until_it_is_back() {
    let origin = Origin::start().await;
    let logs = tempfile::tempdir().unwrap();
    let dir = logs.path().join("socialgate");
    std::fs::create_dir(&dir).unwrap();
    let log = dir.join("access.log");
    let proxy = proxy_logging_to(log.clone()).await;
    let admin = proxy.app().admin_addr.unwrap().to_string();
    let c = proxy.client();
    let url = format!("http://example.org:{}/hello", origin.port());
    for _ in 0..3 {
        get_ok(&c, &url).await;
    }
    eventually("the first records are written", || line_count(&log) == 3).await;

    // Writes into the removed file would succeed and reach nobody.
    std::fs::remove_dir_all(&dir).unwrap();
    for _ in 0..20 {
        get_ok(&c, &url).await;
    }
    wait_for_dropped(&admin, 20).await;
    assert!(
        ready(&admin).await,
        "/readyz stays ready; the metric is the alarm"
    );
    assert!(failures_metric(&admin, "reopen").await >= 1);

    // The directory is back: the path is opened again by itself.
    std::fs::create_dir(&dir).unwrap();
    for _ in 0..4 {
        get_ok(&c, &url).await;
    }
    eventually("writing resumed in the new file", || line_count(&log) == 4).await;
    assert_eq!(whole_records(&log).len(), 4);
    assert_eq!(dropped_metric(&admin).await, 20, "no new drops");
    let rec = &proxy.app().recorder;
    assert_eq!(
        rec.written() + rec.dropped(),
        27,
        "every record written or counted"
    );
}

#[tokio::test]
async fn a_log_that_cannot_be_reopened_after_rotation_keeps_writing_the_rotated_file_until_it_goes()
{
    let origin = Origin::start().await;
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("access.log");
    let proxy = proxy_logging_to(log.clone()).await;
    let admin = proxy.app().admin_addr.unwrap().to_string();
    let c = proxy.client();
    let url = format!("http://example.org:{}/hello", origin.port());
    get_ok(&c, &url).await;
    eventually("the first record", || line_count(&log) == 1).await;

    // Rotated, and something unwritable took the name (here a directory:
    // the test runs as root, whom file modes do not stop).
    let rotated = logs.path().join("access.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    std::fs::create_dir(&log).unwrap();
    proxy.app().recorder.reopen();
    eventually_async("the failed reopen raises the alarm", || async {
        failures_metric(&admin, "reopen").await == 1
    })
    .await;
    for _ in 0..10 {
        get_ok(&c, &url).await;
    }
    eventually("the records went to the rotated file", || {
        line_count(&rotated) == 11
    })
    .await;
    assert_eq!(dropped_metric(&admin).await, 0, "nothing was lost");
    assert!(ready(&admin).await);

    // The rotated file is compressed away: now records would vanish, so
    // they are dropped and counted instead.
    std::fs::remove_file(&rotated).unwrap();
    for _ in 0..5 {
        get_ok(&c, &url).await;
    }
    wait_for_dropped(&admin, 5).await;

    // The name is writable again: the next batch goes to a new file.
    std::fs::remove_dir(&log).unwrap();
    for _ in 0..3 {
        get_ok(&c, &url).await;
    }
    eventually("writing resumed", || line_count(&log) == 3).await;
    assert_eq!(whole_records(&log).len(), 3);
    assert_eq!(dropped_metric(&admin).await, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_disk_never_stalls_traffic_and_every_record_is_written_or_counted() {
    use std::io::Read;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    let origin = Origin::start().await;
    let logs = tempfile::tempdir().unwrap();
    let fifo = logs.path().join("access.log");
    let c_path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo with a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    // The "disk": a pipe read 1 KiB every 20 ms (about 50 KiB/s) until told
    // to catch up.
    let fast = Arc::new(AtomicBool::new(false));
    let lines = Arc::new(AtomicUsize::new(0));
    let reader = {
        let (fifo, fast, lines) = (fifo.clone(), fast.clone(), lines.clone());
        std::thread::spawn(move || {
            let mut f = std::fs::File::open(&fifo).unwrap();
            let mut buf = [0u8; 1024];
            loop {
                match f.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        let nl = buf[..n].iter().filter(|&&b| b == b'\n').count();
                        lines.fetch_add(nl, Ordering::SeqCst);
                    }
                }
                if !fast.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        })
    };
    let path = fifo.clone();
    let proxy = TestProxy::start_in(PolicyDir::new(BASIC_POLICY), move |cfg| {
        let log = cfg.log.as_mut().unwrap();
        log.path = Some(path);
        log.capacity = 64;
    })
    .await;
    let admin = proxy.app().admin_addr.unwrap().to_string();
    let c = proxy.client();
    let url = format!("http://example.org:{}/hello", origin.port());
    const SENT: u64 = 600;
    let started = std::time::Instant::now();
    let mut slowest = Duration::ZERO;
    for _ in 0..SENT {
        let t = std::time::Instant::now();
        get_ok(&c, &url).await;
        slowest = slowest.max(t.elapsed());
    }
    let took = started.elapsed();
    let rec = &proxy.app().recorder;
    eprintln!(
        "slow disk: {SENT} requests in {took:?} (slowest {slowest:?}); {} written, {} dropped so far",
        rec.written(),
        rec.dropped()
    );
    assert!(
        slowest < Duration::from_secs(1),
        "a request waited for the disk: {slowest:?}"
    );
    assert!(
        rec.dropped() > 0,
        "the queue never filled: the disk was not slow enough"
    );
    assert!(ready(&admin).await);
    // The disk catches up: everything is written or was counted.
    fast.store(true, Ordering::SeqCst);
    eventually("every record is written or counted", || {
        rec.written() + rec.dropped() == SENT
    })
    .await;
    eventually("the written records reached the reader", || {
        lines.load(Ordering::SeqCst) as u64 == rec.written()
    })
    .await;
    assert_eq!(dropped_metric(&admin).await, rec.dropped());
    proxy.stop().await;
    reader.join().unwrap();
}
