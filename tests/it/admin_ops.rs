//! What admins tripped over when deploying socialgate the way they run
//! other proxies: `curl -I` on the admin endpoints, Squid-style `--listen`
//! values, the access log's file mode, the pid file, and the closing line
//! of a clean shutdown.

use std::os::unix::fs::PermissionsExt;

use crate::support::*;

#[tokio::test]
async fn answers_head_on_the_admin_endpoints_like_get_without_a_body() {
    let proxy = TestProxy::start(BASIC_POLICY).await;
    let admin = proxy.app().admin_addr.unwrap();
    for path in ["/healthz", "/readyz", "/metrics", "/proxy.pac"] {
        let (code, out) = curl(&["-I", &format!("http://{admin}{path}")]).await;
        assert_eq!(code, 0, "{path}: {out}");
        assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{path}: {out}");
        let get = reqwest::get(format!("http://{admin}{path}")).await.unwrap();
        let content_type = get.headers()["content-type"].to_str().unwrap().to_string();
        assert!(
            out.contains(&format!("content-type: {content_type}\r\n")),
            "{path}: {out}"
        );
        assert!(out.contains("content-length: "), "{path}: {out}");
    }
    // The head, and nothing after it.
    let raw = raw_exchange(
        admin,
        b"HEAD /healthz HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&raw), 200, "{raw}");
    assert!(raw.contains("content-length: 3\r\n"), "{raw}");
    assert!(
        raw.ends_with("\r\n\r\n"),
        "a body followed the head: {raw:?}"
    );
}

#[test]
fn reads_listen_addresses_the_way_squid_admins_write_them() {
    use socialgate::cli::parse_listen;
    for (input, expected) in [
        ("3128", "127.0.0.1:3128"),
        (":3128", "127.0.0.1:3128"),
        ("localhost:3128", "127.0.0.1:3128"),
        ("LOCALHOST:8080", "127.0.0.1:8080"),
        ("0.0.0.0:3128", "0.0.0.0:3128"),
        ("[::]:3128", "[::]:3128"),
        ("10.1.2.3:8080", "10.1.2.3:8080"),
        ("[2001:db8::1]:3128", "[2001:db8::1]:3128"),
        ("127.0.0.1:0", "127.0.0.1:0"),
    ] {
        assert_eq!(
            parse_listen(input),
            Ok(expected.parse().unwrap()),
            "--listen {input}"
        );
    }
    for (input, says) in [
        ("99999", "port must be 1-65535"),
        (":70000", "port must be 1-65535"),
        ("127.0.0.1:65536", "port must be 1-65535"),
        ("localhost", "not an address; write IP:PORT"),
        ("10.1.2.3", "no port; write e.g. 10.1.2.3:3128"),
        ("127.0.0.1:http", "port \"http\" is not a number"),
        (
            "proxy.example.com:3128",
            "\"proxy.example.com\" is not an IP address",
        ),
        ("[::1:3128", "is not an IPv6 address in brackets"),
        ("", "empty address"),
    ] {
        let err = parse_listen(input).expect_err(input);
        assert!(err.contains(says), "--listen {input:?}: {err}");
    }
}

#[tokio::test]
async fn refuses_a_listen_port_out_of_range_saying_which_flag_and_why() {
    for flag in ["--listen", "--admin"] {
        let (code, out, err) = socialgate(&["run", flag, "99999"]).await;
        assert_eq!(code, 2, "{out}{err}");
        assert!(
            err.contains(&format!(
                "invalid value '99999' for '{flag} <ADDR>': port must be 1-65535"
            )),
            "{err}"
        );
    }
}

#[tokio::test]
async fn listens_on_loopback_for_a_bare_port_and_for_localhost() {
    let dir = PolicyDir::new(BASIC_POLICY);
    let bin = Spawned::run(dir.path(), &["--listen", "0", "--admin", "localhost:0"]).await;
    assert_eq!(bin.addr.ip().to_string(), "127.0.0.1");
    assert_ne!(bin.addr.port(), 0);
    assert_eq!(bin.admin.unwrap().ip().to_string(), "127.0.0.1");
    let bin = Spawned::run(dir.path(), &["--listen", ":0", "--admin", "off"]).await;
    assert_eq!(bin.addr.ip().to_string(), "127.0.0.1");
    assert_eq!(bin.admin, None);
}

#[tokio::test]
async fn creates_the_access_log_readable_by_owner_and_group_only() {
    let dir = PolicyDir::new(BASIC_POLICY);
    let logs = tempfile::tempdir().unwrap();
    let default = logs.path().join("default.log");
    let bin = Spawned::run(dir.path(), &["--access-log", default.to_str().unwrap()]).await;
    let mode = std::fs::metadata(&default).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640, "{mode:o}");

    // After rotation: logrotate moves the file away, SIGUSR1 reopens it.
    std::fs::rename(&default, logs.path().join("default.log.1")).unwrap();
    bin.wait_until_catching(libc::SIGUSR1).await;
    bin.signal(libc::SIGUSR1);
    eventually("SIGUSR1 recreated the log", || default.exists()).await;
    let mode = std::fs::metadata(&default).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640, "reopened after rotation: {mode:o}");

    let strict = logs.path().join("strict.log");
    let _bin = Spawned::run(
        dir.path(),
        &[
            "--access-log",
            strict.to_str().unwrap(),
            "--access-log-mode",
            "0600",
        ],
    )
    .await;
    let mode = std::fs::metadata(&strict).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{mode:o}");

    let (code, _, err) = socialgate(&["run", "--access-log-mode", "0986"]).await;
    assert_eq!(code, 2);
    assert!(err.contains("\"0986\" is not an octal file mode"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_a_pid_file_and_says_it_stopped_with_what_it_drained() {
    let origin = Origin::start().await;
    let dir = PolicyDir::new(BASIC_POLICY);
    let run = tempfile::tempdir().unwrap();
    let pid_file = run.path().join("socialgate.pid");
    let mut bin = Spawned::run(
        dir.path(),
        &[
            "--access-log",
            "off",
            "--resolve",
            "example.org=127.0.0.1",
            "--pid-file",
            pid_file.to_str().unwrap(),
        ],
    )
    .await;
    // Written before "listening" is reported.
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    assert_eq!(pid, format!("{}\n", bin.pid()));

    // One request still streaming when SIGTERM arrives: it is drained.
    let resp = within(
        bin.client()
            .get(format!("http://example.org:{}/stream", origin.port()))
            .send(),
    )
    .await
    .unwrap();
    let mut body = resp.bytes_stream();
    use futures_util::StreamExt;
    within(body.next()).await.unwrap().unwrap();
    bin.wait_until_catching(libc::SIGTERM).await;
    bin.signal(libc::SIGTERM);
    while let Some(chunk) = within(body.next()).await {
        chunk.unwrap();
    }
    let status = within(bin.child.wait()).await.unwrap();
    assert!(status.success(), "{status:?}; stderr:\n{}", bin.stderr());
    let stopped = bin.stderr_line("socialgate stopped").await;
    assert!(
        stopped.contains(
            "connections=1 tunnels=0 drain_deadline_hit=false tunnels_cut=0 log_records=0 log_dropped=0"
        ),
        "{stopped}"
    );
    assert!(
        !pid_file.exists(),
        "the pid file is removed on a clean exit"
    );
}

#[tokio::test]
async fn names_an_unknown_key_once_and_suggests_the_key_it_resembles() {
    let dir = PolicyDir::new(
        "version: 1\ngroups:\n  staff:\n    networks: [10.0.0.0/8]\nrules:\n  - id: r\n    platforms: [tiktok]\n    action: block\n  - id: s\n    platforms: [youtube]\n    action: block\n    mesage: no videos\n",
    );
    let path = dir.path().to_str().unwrap();
    let (code, out, err) = socialgate(&["check", path]).await;
    assert_eq!(code, 2, "{out}");
    assert_eq!(
        err,
        format!(
            "{path}/policy.yaml:12:5: rules[1].mesage: unknown field `mesage`\n  \
             hint: did you mean `message`? unknown keys are refused so that typos cannot hide\n\
             1 error(s) in {path}\n"
        )
    );
    // Nothing close: the keys allowed there instead.
    dir.write("policy.yaml", "version: 1\ntunnels:\n  xyzzy: 1\n");
    let (code, _, err) = socialgate(&["check", path]).await;
    assert_eq!(code, 2);
    assert!(
        err.starts_with(&format!(
            "{path}/policy.yaml:3:3: tunnels.xyzzy: unknown field `xyzzy`\n  \
             hint: the keys here are `ports`, `sni_mismatch`, `sni_timeout_ms`, `ech`; unknown keys are refused"
        )),
        "{err}"
    );
}

#[tokio::test]
async fn report_refuses_a_squid_format_log_and_says_how_to_get_a_json_one() {
    let origin = Origin::start().await;
    let proxy = TestProxy::start_in(PolicyDir::new(BASIC_POLICY), |cfg| {
        cfg.log.as_mut().unwrap().format = socialgate::accesslog::LogFormat::Squid;
    })
    .await;
    let client = proxy.client();
    client
        .get(format!("http://example.org:{}/hello", origin.port()))
        .send()
        .await
        .unwrap();
    client.get("http://www.tiktok.com/").send().await.unwrap();
    let written = proxy.stop().await;
    assert_eq!(written.lines().count(), 2, "{written}");
    assert!(written.contains(" TCP_DENIED/403 "), "{written}");

    let dir = tempfile::tempdir().unwrap();
    let ours = dir.path().join("access.log");
    std::fs::write(&ours, &written).unwrap();
    // socialgate's own Squid lines after one written by Squid itself.
    let squid = dir.path().join("squid.log");
    std::fs::write(
        &squid,
        format!(
            "\n1764113057.559    112 10.1.2.3 TCP_MISS/200 1532 GET http://example.org/ - HIER_DIRECT/93.184.216.34 text/html\n{written}"
        ),
    )
    .unwrap();
    for log in [&ours, &squid] {
        let log = log.to_str().unwrap();
        let (code, out, err) = socialgate(&["report", "--log", log, "--format", "json"]).await;
        assert_eq!(code, 2, "{out}{err}");
        assert_eq!(out, "", "no report is written");
        assert_eq!(
            err,
            format!(
                "socialgate report: {log} is a Squid-format access log; report and simulate read \
                 socialgate's JSON access log. Run socialgate with `--log-format json` (the default) \
                 and use that log\n"
            )
        );
    }
    let (code, _, err) = socialgate(&[
        "simulate",
        "--log",
        squid.to_str().unwrap(),
        "--policy",
        shipped_policies().to_str().unwrap(),
    ])
    .await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("is a Squid-format access log"), "{err}");
}

#[tokio::test]
async fn prints_shell_completions_generated_from_the_command_line() {
    let (code, bash, err) = socialgate(&["completions", "bash"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(bash.contains("_socialgate()"), "{bash}");
    for word in ["explain", "simulate", "--pid-file", "--access-log-mode"] {
        assert!(bash.contains(word), "bash completion lacks {word}");
    }
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let (code, out, err) = socialgate(&["completions", shell]).await;
        assert_eq!(code, 0, "{shell}: {err}");
        assert!(out.contains("explain"), "{shell}: {out}");
    }
    let (code, _, err) = socialgate(&["completions", "tcsh"]).await;
    assert_eq!(code, 2);
    assert!(err.contains("invalid value 'tcsh'"), "{err}");
}

#[tokio::test]
async fn prints_man_pages_for_socialgate_and_each_subcommand() {
    let (code, page, err) = socialgate(&["man"]).await;
    assert_eq!(code, 0, "{err}");
    let title = page.lines().find(|l| l.starts_with(".TH")).unwrap_or("");
    assert!(title.starts_with(".TH socialgate 1 "), "{page}");
    assert!(page.contains(".SH NAME\nsocialgate \\- "), "{page}");
    assert!(page.contains("socialgate\\-explain(1)"), "{page}");

    let (code, run, err) = socialgate(&["man", "run"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        run.contains(".TH socialgate\\-run 1 ") || run.contains(".TH socialgate-run 1 "),
        "{run}"
    );
    assert!(run.contains("\\-\\-pid\\-file"), "{run}");
    assert!(run.contains("mean 127.0.0.1:PORT"), "{run}");

    let (code, _, err) = socialgate(&["man", "rnu"]).await;
    assert_eq!(code, 2);
    assert!(
        err.contains("no subcommand \"rnu\"; the pages are: run, check"),
        "{err}"
    );
}

#[tokio::test]
async fn refuses_to_run_when_the_pid_file_cannot_be_written() {
    let dir = PolicyDir::new(BASIC_POLICY);
    let policy = dir.path().to_str().unwrap();
    let key = dir.path().join("pseudonym.key");
    let (code, _, err) = socialgate(&[
        "run",
        "--policy",
        policy,
        "--listen",
        "127.0.0.1:0",
        "--admin",
        "off",
        "--access-log",
        "off",
        "--pseudonym-key",
        key.to_str().unwrap(),
        "--pid-file",
        "/nonexistent/socialgate/socialgate.pid",
    ])
    .await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("cannot write the pid file; stopping"), "{err}");
    assert!(!err.contains("socialgate listening"), "{err}");
}
