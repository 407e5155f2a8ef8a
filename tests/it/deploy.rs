//! The deployment files in deploy/ checked against the real binary: the
//! systemd unit (systemd-analyze, and socialgate started with the unit's
//! user rights, directories and environment), sd_notify for real over a
//! Unix datagram socket, the Containerfile's ENTRYPOINT/CMD/ENV/USER and
//! HEALTHCHECK, and hot reload through a Kubernetes ConfigMap's symlink
//! swap.
//!
//! The unit and the Containerfile are parsed here, so a change to them is
//! what gets tested. Paths such as /etc/socialgate are mapped into a fake
//! root in a temp dir; only the listening addresses are replaced (port 0).
//! Tests that switch to an unprivileged user need root, and say so when
//! they skip.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncBufReadExt;

use crate::support::*;

const UNIT: &str = include_str!("../../deploy/systemd/socialgate.service");
const CONTAINERFILE: &str = include_str!("../../deploy/container/Containerfile");
const LOGROTATE: &str = include_str!("../../deploy/systemd/socialgate.logrotate");

/// The user the unprivileged tests run socialgate as (`nobody` on Debian).
const NOBODY: u32 = 65534;

fn skip(test: &str, why: &str) {
    println!("SKIPPED {test}: {why}");
    eprintln!("SKIPPED {test}: {why}");
}

fn is_root() -> bool {
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

// ---------------------------------------------------------------- systemd

/// `Key=value` lines of the unit, in order (repeated keys kept).
fn unit_settings(unit: &str) -> Vec<(String, String)> {
    unit.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

fn unit_value<'a>(settings: &'a [(String, String)], key: &str) -> Vec<&'a str> {
    settings
        .iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .collect()
}

/// The unit's `Environment=` assignments.
fn unit_env(settings: &[(String, String)]) -> BTreeMap<String, String> {
    unit_value(settings, "Environment")
        .iter()
        .filter_map(|v| v.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// `systemd-analyze verify` on a known-good unit: if even that fails, the
/// reason lies in this machine (no systemd to load units into), not in ours.
fn systemd_analyze_works(dir: &Path) -> Result<(), String> {
    let probe = dir.join("probe.service");
    std::fs::write(&probe, "[Service]\nExecStart=/bin/true\n").unwrap();
    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&probe)
        .output()
        .expect("systemd-analyze is installed (.ci/run installs Debian's systemd package)");
    if out.status.success() && out.stderr.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "systemd-analyze verify fails on a trivial unit here (exit {:?}): {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

#[test]
fn the_systemd_unit_passes_systemd_analyze_verify_without_warnings() {
    let dir = tempfile::tempdir().unwrap();
    if let Err(why) = systemd_analyze_works(dir.path()) {
        return skip("systemd unit verify", &why);
    }
    // verify insists that ExecStart's program exists: point it at the
    // binary just built; every other line is the shipped unit's.
    let unit = UNIT.replace(
        "/usr/local/bin/socialgate",
        env!("CARGO_BIN_EXE_socialgate"),
    );
    let path = dir.path().join("socialgate.service");
    std::fs::write(&path, unit).unwrap();
    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Warnings such as "Unknown key" leave the exit code 0.
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify: {stderr}"
    );
    let out = std::process::Command::new("systemd-analyze")
        // Exposure 0.0-10.0, given in tenths: fail above 2.0 ("OK" is below 4.0).
        .args(["security", "--offline=true", "--threshold=20"])
        .arg(&path)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "exposure above 2.0 (the scale is tenths):\n{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_systemd_unit_is_hardened_and_notifies() {
    let s = unit_settings(UNIT);
    let one = |k: &str| -> &str {
        let v = unit_value(&s, k);
        assert_eq!(v.len(), 1, "{k} once in the unit: {v:?}");
        v[0]
    };
    assert_eq!(one("Type"), "notify");
    assert_eq!(one("ExecReload"), "/bin/kill -HUP $MAINPID");
    assert_eq!(one("ProtectSystem"), "strict");
    assert_eq!(one("ProtectHome"), "yes");
    assert_eq!(one("PrivateTmp"), "yes");
    assert_eq!(one("NoNewPrivileges"), "yes");
    assert_eq!(one("CapabilityBoundingSet"), "");
    assert_eq!(one("ConfigurationDirectory"), "socialgate");
    assert_eq!(one("StateDirectory"), "socialgate");
    assert_eq!(one("LogsDirectory"), "socialgate");
    assert!(unit_value(&s, "SystemCallFilter").contains(&"@system-service"));
    assert!(one("RestrictAddressFamilies").contains("AF_INET6"));
    assert_ne!(one("User"), "root");
}

/// A directory standing in for `/`, readable but not writable by the
/// unprivileged user, with the files a package or an image would install.
struct FakeRoot {
    dir: tempfile::TempDir,
}

impl FakeRoot {
    fn new() -> FakeRoot {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        FakeRoot { dir }
    }

    /// Where the absolute path `abs` lives in the fake root.
    fn at(&self, abs: &str) -> PathBuf {
        self.dir.path().join(abs.trim_start_matches('/'))
    }

    /// `value` with any of `prefixes` moved into the fake root.
    fn map(&self, value: &str, prefixes: &[&str]) -> String {
        for p in prefixes {
            if let Some(rest) = value.strip_prefix(p) {
                return format!("{}{rest}", self.at(p).display());
            }
        }
        value.to_string()
    }

    /// Creates `abs` and its parents, root-owned, mode 0755.
    fn mkdir(&self, abs: &str) -> PathBuf {
        let path = self.at(abs);
        std::fs::create_dir_all(&path).unwrap();
        let mut p = path.as_path();
        while p != self.dir.path() {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
            p = p.parent().unwrap();
        }
        path
    }

    /// A directory owned by `uid` with `mode`, as systemd's
    /// StateDirectory= or a volume's mount point is.
    fn owned_dir(&self, abs: &str, uid: u32, mode: u32) -> PathBuf {
        let path = self.mkdir(abs);
        std::os::unix::fs::chown(&path, Some(uid), Some(uid)).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    /// The shipped policy, read-only (files 0444, directory 0555, root's).
    fn install_policy(&self, abs: &str) -> PathBuf {
        let path = self.mkdir(abs);
        for f in [
            "catalog.yaml",
            "policy.yaml",
            "tests.yaml",
            "activities.yaml",
        ] {
            let to = path.join(f);
            std::fs::copy(shipped_policies().join(f), &to).unwrap();
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o444)).unwrap();
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o555)).unwrap();
        path
    }

    /// The binary just built, installed at `abs` (the build directory may
    /// not be reachable for an unprivileged user).
    fn install_binary(&self, abs: &str) -> PathBuf {
        self.mkdir(Path::new(abs).parent().unwrap().to_str().unwrap());
        let path = self.at(abs);
        // A hard link where possible: the debug binary is large.
        let built = env!("CARGO_BIN_EXE_socialgate");
        if std::fs::hard_link(built, &path).is_err() {
            std::fs::copy(built, &path).unwrap();
        }
        let mode = std::fs::metadata(&path).unwrap().mode();
        assert_eq!(mode & 0o005, 0o005, "others may run {}", path.display());
        path
    }

    /// Every file under the fake root that `uid` owns: what the process wrote.
    fn files_owned_by(&self, uid: u32) -> Vec<String> {
        fn walk(dir: &Path, root: &Path, uid: u32, out: &mut Vec<String>) {
            for e in std::fs::read_dir(dir).unwrap() {
                let e = e.unwrap();
                let meta = std::fs::symlink_metadata(e.path()).unwrap();
                if meta.is_dir() {
                    walk(&e.path(), root, uid, out);
                } else if meta.uid() == uid {
                    let rel = e.path().strip_prefix(root).unwrap().display().to_string();
                    out.push(format!("/{rel}"));
                }
            }
        }
        let mut out = Vec::new();
        walk(self.dir.path(), self.dir.path(), uid, &mut out);
        out.sort();
        out
    }
}

/// The real binary started by a test from its own command, killed on drop.
struct Launched {
    child: tokio::process::Child,
    proxy: SocketAddr,
    admin: SocketAddr,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
}

impl Launched {
    /// Spawns `cmd` and waits for its "socialgate listening" line.
    async fn start(mut cmd: tokio::process::Command) -> Launched {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn socialgate");
        let stdout = Arc::new(Mutex::new(String::new()));

        let mut out = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let sink = stdout.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = out.next_line().await {
                sink.lock().unwrap().push_str(&format!("{line}\n"));
            }
        });
        let spawned = Spawned::attach(child).await;
        let (proxy, admin) = (spawned.addr, spawned.admin.expect("admin listener"));
        let stderr = spawned.stderr.clone();
        let child = spawned.child;
        Launched {
            child,
            proxy,
            admin,
            stdout,
            stderr,
        }
    }

    fn pid(&self) -> i32 {
        self.child.id().expect("still running") as i32
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's PID has no memory-safety concerns.
        assert_eq!(unsafe { libc::kill(self.pid(), sig) }, 0, "kill failed");
    }

    fn client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .proxy(reqwest::Proxy::all(format!("http://{}", self.proxy)).unwrap())
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap()
    }

    /// Stops it with SIGTERM and returns its exit code.
    async fn stop(mut self) -> Option<i32> {
        self.signal(libc::SIGTERM);
        within(self.child.wait()).await.unwrap().code()
    }
}

/// A command that runs `program` as `uid`:`uid`, without supplementary
/// groups and with no_new_privs, as systemd's User= and NoNewPrivileges= do.
fn as_user(uid: u32, program: &Path) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new("setpriv");
    cmd.arg(format!("--reuid={uid}"))
        .arg(format!("--regid={uid}"))
        .args(["--clear-groups", "--no-new-privs"])
        .arg(program);
    cmd
}

#[tokio::test]
async fn runs_as_the_unit_does_unprivileged_with_a_read_only_policy_and_its_key_in_the_state_directory(
) {
    if !is_root() {
        return skip(
            "systemd-style start",
            "switching to an unprivileged user needs root; run the tests as root (CI does)",
        );
    }
    let s = unit_settings(UNIT);
    let dirs = [
        "/etc/socialgate",
        "/var/lib/socialgate",
        "/var/log/socialgate",
    ];
    let root = FakeRoot::new();
    // What systemd prepares: ConfigurationDirectory= (root's, read-only
    // here), StateDirectory= (0700) and LogsDirectory= (0750), the latter
    // two owned by the service's user.
    root.install_policy("/etc/socialgate");
    root.owned_dir("/var/lib/socialgate", NOBODY, 0o700);
    root.owned_dir("/var/log/socialgate", NOBODY, 0o750);
    let exec: Vec<&str> = unit_value(&s, "ExecStart")[0].split_whitespace().collect();
    let program = root.install_binary(exec[0]);
    let mut cmd = as_user(NOBODY, &program);
    cmd.args(&exec[1..])
        .env_clear()
        .current_dir(root.at(unit_value(&s, "WorkingDirectory")[0]));
    for (k, v) in unit_env(&s) {
        cmd.env(k, root.map(&v, &dirs));
    }
    // The one change: ports picked by the kernel.
    cmd.env("SOCIALGATE_LISTEN", "127.0.0.1:0")
        .env("SOCIALGATE_ADMIN", "127.0.0.1:0");

    let sg = Launched::start(cmd).await;
    let resp = within(sg.client().get("http://www.tiktok.com/").send())
        .await
        .unwrap();
    assert_eq!(resp.status(), 403, "the shipped policy blocks TikTok");
    let log = root.at("/var/log/socialgate/access.log");
    eventually("an access-log line", || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.contains("www.tiktok.com"))
    })
    .await;
    assert_eq!(sg.stop().await, Some(0));

    assert_eq!(
        root.files_owned_by(NOBODY),
        [
            "/var/lib/socialgate/pseudonym.key",
            "/var/log/socialgate/access.log"
        ],
        "socialgate wrote only its key and its log"
    );
    let key = std::fs::metadata(root.at("/var/lib/socialgate/pseudonym.key")).unwrap();
    assert_eq!(key.mode() & 0o777, 0o600);
}

/// `text` with `from` replaced by `to`, which must be there.
fn replaced(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "{from:?} not found in:\n{text}");
    text.replace(from, to)
}

#[tokio::test]
async fn the_logrotate_file_rotates_the_access_log_and_socialgate_reopens_it_on_sigusr1() {
    if !is_root() {
        return skip(
            "logrotate",
            "logrotate's `create 0640 USER GROUP` needs root; run the tests as root (CI does)",
        );
    }
    let policy = PolicyDir::new(BASIC_POLICY);
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("access.log");
    let sg = Spawned::run(policy.path(), &["--access-log", log.to_str().unwrap()]).await;
    sg.wait_until_catching(libc::SIGUSR1).await;
    let client = sg.client();
    let get = |url: &'static str| {
        let client = client.clone();
        async move { within(client.get(url).send()).await.unwrap().status() }
    };
    let lines = |path: &Path| std::fs::read_to_string(path).map_or(0, |t| t.lines().count());
    assert_eq!(get("http://www.tiktok.com/").await, 403);
    eventually("the first line", || lines(&log) == 1).await;

    // The shipped file with three things swapped: the log's path, the
    // owner (there is no socialgate user here), and systemctl (no systemd
    // here) for the signal it sends.
    let config = replaced(
        LOGROTATE,
        "/var/log/socialgate/access.log",
        log.to_str().unwrap(),
    );
    let config = replaced(
        &config,
        "create 0640 socialgate socialgate",
        "create 0640 root root",
    );
    let config = replaced(
        &config,
        "systemctl kill --kill-whom=main --signal=USR1 socialgate.service",
        &format!("kill -USR1 {}", sg.pid()),
    );
    let conf_dir = tempfile::tempdir().unwrap();
    let conf = conf_dir.path().join("socialgate");
    std::fs::write(&conf, config).unwrap();
    let out = std::process::Command::new("logrotate")
        .arg("--force")
        .arg("--state")
        .arg(conf_dir.path().join("state"))
        .arg(&conf)
        .output()
        .expect("logrotate is installed (.ci/run installs it)");
    assert!(
        out.status.success(),
        "logrotate: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let rotated = logs.path().join("access.log.1");
    assert_eq!(lines(&rotated), 1, "the first line moved with the old file");
    let mode = std::fs::metadata(&log).unwrap().mode() & 0o777;
    assert_eq!(mode, 0o640, "logrotate created the new log 0640");
    assert_eq!(get("http://www.tiktok.com/").await, 403);
    eventually("the next line in the new file", || lines(&log) == 1).await;
    assert_eq!(lines(&rotated), 1, "nothing more went to the old file");
}

/// Reads datagrams from the notify socket until one contains `want`.
async fn notified(sock: &tokio::net::UnixDatagram, want: &str) -> String {
    within(async {
        let mut buf = vec![0u8; 4096];
        loop {
            let n = sock.recv(&mut buf).await.unwrap();
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            if msg.lines().any(|l| l == want) {
                return msg;
            }
        }
    })
    .await
}

#[tokio::test]
async fn tells_the_service_manager_ready_watchdog_reloading_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let sock = tokio::net::UnixDatagram::bind(&path).unwrap();
    let policy = PolicyDir::new(BASIC_POLICY);
    // WATCHDOG_PID must be socialgate's own PID: set it in a shell that
    // then becomes socialgate (exec keeps the PID).
    let mut cmd = tokio::process::Command::new("sh");
    cmd.arg("-c")
        .arg(r#"WATCHDOG_PID=$$ exec "$0" "$@""#)
        .arg(env!("CARGO_BIN_EXE_socialgate"))
        .args(["run", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
        .arg("--policy")
        .arg(policy.path())
        .arg("--pseudonym-key")
        .arg(dir.path().join("key"))
        .env("NOTIFY_SOCKET", &path)
        .env("WATCHDOG_USEC", "200000");
    let sg = Launched::start(cmd).await;

    let ready = notified(&sock, "READY=1").await;
    assert!(ready.contains("STATUS="), "{ready}");
    notified(&sock, "WATCHDOG=1").await;
    notified(&sock, "WATCHDOG=1").await;

    let reloading = {
        let sg_pid = sg.pid();
        wait_for_handler(sg_pid, libc::SIGHUP).await;
        sg.signal(libc::SIGHUP);
        notified(&sock, "RELOADING=1").await
    };
    assert!(reloading.contains("MONOTONIC_USEC="), "{reloading}");
    notified(&sock, "READY=1").await;

    let stderr = sg.stderr.clone();
    let stop = tokio::spawn(sg.stop());
    notified(&sock, "STOPPING=1").await;
    assert_eq!(stop.await.unwrap(), Some(0), "{}", stderr.lock().unwrap());
}

/// Waits until `pid` catches `sig` (SigCgt in /proc/PID/status).
async fn wait_for_handler(pid: i32, sig: i32) {
    let status = format!("/proc/{pid}/status");
    eventually("the signal handler is installed", || {
        let text = std::fs::read_to_string(&status).unwrap();
        let mask = text
            .lines()
            .find_map(|l| l.strip_prefix("SigCgt:"))
            .unwrap();
        u64::from_str_radix(mask.trim(), 16).unwrap() & (1 << (sig - 1)) != 0
    })
    .await;
}

// -------------------------------------------------------------- container

/// The final stage of the Containerfile: ENV, USER, ENTRYPOINT, CMD,
/// HEALTHCHECK's command and VOLUMEs.
#[derive(Debug, Default)]
struct Image {
    env: BTreeMap<String, String>,
    user: Option<String>,
    entrypoint: Vec<String>,
    cmd: Vec<String>,
    healthcheck: Vec<String>,
    volumes: Vec<String>,
}

/// Parses the instructions this project's Containerfile uses; exec (JSON)
/// forms only, so what the test runs is what the runtime runs.
fn parse_containerfile(text: &str) -> Image {
    let joined = text.replace("\\\n", " ");
    let json = |s: &str| -> Vec<String> {
        serde_json::from_str(s.trim())
            .unwrap_or_else(|e| panic!("{s:?} must be in exec form (a JSON array): {e}"))
    };
    let mut image = Image::default();
    for line in joined.lines().map(str::trim) {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (op, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        match op.to_ascii_uppercase().as_str() {
            "FROM" => image = Image::default(),
            "ENV" => {
                for kv in rest.split_whitespace() {
                    let (k, v) = kv.split_once('=').expect("ENV KEY=VALUE");
                    image.env.insert(k.into(), v.into());
                }
            }
            "USER" => image.user = Some(rest.trim().into()),
            "ENTRYPOINT" => image.entrypoint = json(rest),
            "CMD" => image.cmd = json(rest),
            "VOLUME" => image.volumes.extend(json(rest)),
            "HEALTHCHECK" => {
                let at = rest.find("CMD").expect("HEALTHCHECK ... CMD [...]");
                image.healthcheck = json(&rest[at + 3..]);
            }
            _ => {}
        }
    }
    image
}

#[tokio::test]
async fn starts_as_the_container_image_does_and_passes_its_healthcheck() {
    if !is_root() {
        return skip(
            "container-style start",
            "switching to the image's non-root USER needs root; run the tests as root (CI does)",
        );
    }
    let image = parse_containerfile(CONTAINERFILE);
    let user = image.user.as_deref().expect("the image sets USER");
    let uid: u32 = user
        .split(':')
        .next()
        .unwrap()
        .parse()
        .expect("numeric USER");
    assert_ne!(uid, 0, "the image runs as non-root");
    assert_eq!(image.volumes, ["/var/lib/socialgate"]);
    assert_eq!(image.env["SOCIALGATE_POLICY"], "/etc/socialgate");
    assert_eq!(
        image.env["SOCIALGATE_ACCESS_LOG"], "-",
        "JSON log on stdout"
    );

    let root = FakeRoot::new();
    let dirs = ["/etc/socialgate", "/var/lib/socialgate"];
    root.install_policy("/etc/socialgate");
    root.owned_dir("/var/lib/socialgate", uid, 0o755);
    let program = root.install_binary(&image.entrypoint[0]);
    let env = |cmd: &mut tokio::process::Command| {
        cmd.env_clear();
        for (k, v) in &image.env {
            cmd.env(k, root.map(v, &dirs));
        }
    };
    let mut cmd = as_user(uid, &program);
    cmd.args(&image.entrypoint[1..])
        .args(&image.cmd)
        .current_dir(root.at("/"));
    env(&mut cmd);
    // As `-e` would: ports picked by the kernel instead of 3128 and 9128.
    cmd.env("SOCIALGATE_LISTEN", "127.0.0.1:0")
        .env("SOCIALGATE_ADMIN", "127.0.0.1:0");
    let sg = Launched::start(cmd).await;

    let resp = within(sg.client().get("http://www.tiktok.com/").send())
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let stdout = sg.stdout.clone();
    eventually("a JSON access-log line on stdout", || {
        stdout.lock().unwrap().lines().any(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .is_ok_and(|v| v["host"] == "www.tiktok.com")
        })
    })
    .await;

    // The HEALTHCHECK, run the same way, against the running admin listener.
    let health = |admin: SocketAddr| {
        let program = root.at(&image.healthcheck[0]);
        let mut cmd = as_user(uid, &program);
        cmd.args(&image.healthcheck[1..]);
        env(&mut cmd);
        cmd.env("SOCIALGATE_ADMIN", admin.to_string());
        cmd
    };
    let out = within(health(sg.admin).output()).await.unwrap();
    assert!(
        out.status.success(),
        "healthcheck failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let admin = sg.admin;
    let stderr = sg.stderr.clone();
    assert_eq!(sg.stop().await, Some(0), "{}", stderr.lock().unwrap());
    let out = within(health(admin).output()).await.unwrap();
    assert!(!out.status.success(), "unhealthy once stopped");

    assert_eq!(
        root.files_owned_by(uid),
        ["/var/lib/socialgate/pseudonym.key"],
        "only the volume was written"
    );
}

#[test]
fn the_containerfile_keeps_to_a_minimal_non_root_runtime() {
    let image = parse_containerfile(CONTAINERFILE);
    assert_eq!(image.entrypoint, ["/usr/local/bin/socialgate"]);
    assert_eq!(image.cmd, ["run"]);
    assert_eq!(image.healthcheck, ["/usr/local/bin/socialgate", "health"]);
    // Every env var the image sets is one `socialgate run` reads.
    let cli = include_str!("../../src/cli.rs");
    for k in image.env.keys() {
        assert!(
            cli.contains(&format!("env = \"{k}\"")),
            "{k} is not a flag's env var in src/cli.rs"
        );
    }
}

// ------------------------------------------------------------- kubernetes

/// Writes `files` into a ConfigMap volume at `dir` the way the kubelet
/// does: a new timestamped directory, a `..data_tmp` link to it renamed
/// atomically over `..data`, and top-level links `NAME -> ..data/NAME`.
fn kubelet_writes_configmap(dir: &Path, version: u32, files: &[(&str, &str)]) {
    let stamp = format!("..2026_11_25_10_00_{version:02}.000000001");
    let data = dir.join(&stamp);
    std::fs::create_dir(&data).unwrap();
    for (name, text) in files {
        std::fs::write(data.join(name), text).unwrap();
    }
    let old = std::fs::read_link(dir.join("..data")).ok();
    std::os::unix::fs::symlink(&stamp, dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    for (name, _) in files {
        let link = dir.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(Path::new("..data").join(name), &link).unwrap();
        }
    }
    if let Some(old) = old {
        std::fs::remove_dir_all(dir.join(old)).unwrap();
    }
}

#[tokio::test]
async fn reloads_a_mounted_configmap_when_the_kubelet_swaps_its_data_link_and_refuses_a_broken_one()
{
    let origin = Origin::start().await;
    let catalog = std::fs::read_to_string(shipped_policies().join("catalog.yaml")).unwrap();
    let configmap = tempfile::tempdir().unwrap();
    kubelet_writes_configmap(
        configmap.path(),
        1,
        &[("catalog.yaml", &catalog), ("policy.yaml", BASIC_POLICY)],
    );
    assert!(
        std::fs::symlink_metadata(configmap.path().join("policy.yaml"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    let path = configmap.path().to_path_buf();
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("pseudonym.key");
    let proxy = TestProxy::start_in(PolicyDir { dir: configmap }, |cfg| {
        cfg.pseudonym_key = key;
    })
    .await;
    let client = proxy.client();
    let url = format!("http://www.linkedin.com:{}/hello", origin.port());
    assert_eq!(within(client.get(&url).send()).await.unwrap().status(), 200);

    let blocking = format!(
        "{BASIC_POLICY}  - id: no-linkedin\n    groups: [staff]\n    platforms: [linkedin]\n    action: block\n"
    );
    kubelet_writes_configmap(
        &path,
        2,
        &[("catalog.yaml", &catalog), ("policy.yaml", &blocking)],
    );
    proxy.wait_for_generation(1).await;
    let resp = within(client.get(&url).send()).await.unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(resp.headers()["x-socialgate-rule"], "no-linkedin");

    kubelet_writes_configmap(
        &path,
        3,
        &[
            ("catalog.yaml", &catalog),
            ("policy.yaml", "version: 1\nrules: [oops\n"),
        ],
    );
    let handle = proxy.app().policy().clone();
    eventually("the broken policy is refused", || {
        handle
            .stats
            .failed
            .load(std::sync::atomic::Ordering::Relaxed)
            == 1
    })
    .await;
    assert_eq!(handle.generation(), 1, "nothing was swapped in");
    let resp = within(client.get(&url).send()).await.unwrap();
    assert_eq!(resp.status(), 403, "the previous policy stays in force");
}

#[test]
fn the_kubernetes_example_ships_the_repository_policy_and_only_known_env_vars() {
    let k8s = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes");
    let overlay = k8s.join("overlays/example/policy");
    for f in [
        "catalog.yaml",
        "policy.yaml",
        "tests.yaml",
        "activities.yaml",
    ] {
        // The same file but for the yaml-language-server modeline, whose
        // relative path to docs/schema/ differs here.
        let copy = std::fs::read_to_string(overlay.join(f)).unwrap();
        let shipped = std::fs::read_to_string(shipped_policies().join(f)).unwrap();
        let (modeline, rest) = copy.split_once('\n').unwrap();
        assert_eq!(
            rest,
            shipped.split_once('\n').unwrap().1,
            "overlays/example/policy/{f} differs from policies/{f}: copy it again, \
             keeping its first line (the schema modeline)"
        );
        let schema = modeline
            .strip_prefix("# yaml-language-server: $schema=")
            .unwrap_or_else(|| panic!("overlays/example/policy/{f} starts with {modeline:?}"));
        assert!(
            overlay.join(schema).is_file(),
            "overlays/example/policy/{f}: {schema} is not a file"
        );
        assert!(
            schema.ends_with(&f.replace(".yaml", ".schema.json")),
            "{schema}"
        );
    }
    let deployment: serde_json::Value = socialgate::yaml::from_str(
        &std::fs::read_to_string(k8s.join("base/deployment.yaml")).unwrap(),
    )
    .unwrap();
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let cli = include_str!("../../src/cli.rs");
    for e in container["env"].as_array().unwrap() {
        let k = e["name"].as_str().unwrap();
        assert!(
            cli.contains(&format!("env = \"{k}\"")),
            "{k} is not a flag's env var"
        );
    }
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    let sc = &container["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"][0], "ALL");
}

#[test]
fn every_run_flag_can_be_set_from_the_environment_and_the_flags_table_says_how() {
    use clap::CommandFactory;
    let cli = socialgate::cli::Cli::command();
    let run = cli.find_subcommand("run").expect("a run subcommand");
    let ops =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/operations.md"))
            .unwrap();
    for arg in run.get_arguments().filter(|a| a.get_long().is_some()) {
        let long = arg.get_long().unwrap();
        if long == "help" {
            continue;
        }
        let env = arg
            .get_env()
            .unwrap_or_else(|| {
                panic!("--{long} has no env = \"SOCIALGATE_...\" (containers set flags by env)")
            })
            .to_str()
            .unwrap();
        let row = ops
            .lines()
            .find(|l| l.starts_with(&format!("| `--{long}")))
            .unwrap_or_else(|| {
                panic!("--{long} is missing from the flags table in docs/operations.md")
            });
        assert!(
            row.contains(&format!("`{env}`")),
            "the flags table's row for --{long} lacks `{env}`"
        );
    }
}

#[tokio::test]
async fn the_init_container_turns_the_mounted_secret_into_a_key_socialgate_accepts() {
    if !is_root() {
        return skip(
            "Secret key copy",
            "files owned by root and another user need root; run the tests as root (CI does)",
        );
    }
    let k8s = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes/base");
    let deployment: serde_json::Value =
        socialgate::yaml::from_str(&std::fs::read_to_string(k8s.join("deployment.yaml")).unwrap())
            .unwrap();
    let pod = &deployment["spec"]["template"]["spec"];
    let uid = pod["securityContext"]["runAsUser"].as_u64().unwrap() as u32;
    let fs_group = pod["securityContext"]["fsGroup"].as_u64().unwrap() as u32;
    let command: Vec<&str> = pod["initContainers"][0]["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let env = &pod["containers"][0]["env"];
    let key_env = env
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "SOCIALGATE_PSEUDONYM_KEY")
        .unwrap()["value"]
        .as_str()
        .unwrap();

    // What the kubelet mounts: the Secret's file root's, group fsGroup,
    // 0440 (defaultMode 0400 plus the group read fsGroup adds), and an
    // emptyDir (0777, setgid group fsGroup).
    let root = FakeRoot::new();
    let secrets = root.mkdir("/run/secrets/socialgate");
    let secret_key = secrets.join("pseudonym.key");
    std::fs::write(&secret_key, format!("{}\n", "ab".repeat(32))).unwrap();
    std::os::unix::fs::chown(&secret_key, Some(0), Some(fs_group)).unwrap();
    std::fs::set_permissions(&secret_key, std::fs::Permissions::from_mode(0o440)).unwrap();
    let keys = root.mkdir("/var/lib/socialgate");
    std::os::unix::fs::chown(&keys, Some(0), Some(fs_group)).unwrap();
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o2777)).unwrap();
    let dirs = ["/run/secrets/socialgate", "/var/lib/socialgate"];
    let program = root.install_binary("/usr/local/bin/socialgate");
    let run_with_key = |key: &Path| {
        let mut cmd = as_user(uid, &program);
        cmd.args(["run", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
            .arg("--policy")
            .arg(shipped_policies())
            .arg("--pseudonym-key")
            .arg(key)
            .env_remove("NOTIFY_SOCKET");
        cmd
    };

    // Used directly, socialgate refuses the Secret's file.
    let out = within(run_with_key(&secret_key).kill_on_drop(true).output())
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("lets group or others access the key"),
        "{stderr}"
    );

    // The init container's command (coreutils' install here, busybox's
    // in the pod), as the pod's user with fsGroup as a supplementary group.
    let mut init = std::process::Command::new("setpriv");
    init.arg(format!("--reuid={uid}"))
        .arg(format!("--regid={uid}"))
        .arg(format!("--groups={fs_group}"))
        .arg("--no-new-privs");
    for a in &command {
        init.arg(root.map(a, &dirs));
    }
    let out = init.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let copied = PathBuf::from(root.map(key_env, &dirs));
    let meta = std::fs::metadata(&copied).unwrap();
    assert_eq!((meta.uid(), meta.mode() & 0o777), (uid, 0o400));
    let sg = Launched::start(run_with_key(&copied)).await;
    assert_eq!(sg.stop().await, Some(0));
}
