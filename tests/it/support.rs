//! Test helpers that read like the scenario: a real origin, a real TLS
//! origin, and a real socialgate, all on 127.0.0.1 port 0.

#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use socialgate::accesslog::{LogConfig, LogFormat};
use socialgate::app::{App, AppConfig};
use socialgate::proxy::ProxyConfig;
use tokio::net::TcpListener;

type OriginBody = BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

fn full(s: impl Into<Bytes>) -> OriginBody {
    Full::new(s.into()).map_err(|e| match e {}).boxed()
}

/// A plain-HTTP origin server with a few routes:
/// `/hello`, `/headers` (echoes request headers), `/echo` (streams the
/// request body back), `/consume` (reads the whole body, then answers), `/stream` (5 chunks, 100 ms apart), `/big` (1 MiB),
/// `/ws` (WebSocket echo), `/sleep` (answers after 3 s), and any path ending
/// in `graphql` (echoes like `/echo`).
pub struct Origin {
    pub addr: SocketAddr,
    /// TCP connections accepted so far.
    pub connections: Arc<AtomicUsize>,
    /// Of those, still open.
    open: Arc<AtomicUsize>,
    /// Bumped to close every open connection.
    closer: tokio::sync::watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

/// Counts an origin connection as open while it lives.
struct OpenGuard(Arc<AtomicUsize>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Origin {
    pub async fn start() -> Origin {
        Self::bind("127.0.0.1:0").await
    }

    pub async fn bind(addr: &str) -> Origin {
        let listener = TcpListener::bind(addr).await.expect("bind origin");
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let open = Arc::new(AtomicUsize::new(0));
        let closer = tokio::sync::watch::channel(0u64).0;
        let (conns, opened, close) = (connections.clone(), open.clone(), closer.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    break;
                };
                conns.fetch_add(1, Ordering::SeqCst);
                opened.fetch_add(1, Ordering::SeqCst);
                let guard = OpenGuard(opened.clone());
                let mut closing = close.subscribe();
                tokio::spawn(async move {
                    let serve = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service_fn(route))
                        .with_upgrades();
                    tokio::select! {
                        _ = serve => {}
                        _ = closing.changed() => {}
                    }
                    drop(guard);
                });
            }
        });
        Origin {
            addr,
            connections,
            open,
            closer,
            task,
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Connections open now.
    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// Closes every open connection, as an origin's idle timeout would.
    pub fn close_connections(&self) {
        self.closer.send_modify(|g| *g += 1);
    }
}

async fn route(mut req: Request<Incoming>) -> Result<Response<OriginBody>, Infallible> {
    let path = req.uri().path().to_string();
    let resp = match path.as_str() {
        "/hello" => Response::new(full("hello from origin")),
        "/headers" => {
            let mut s = format!("{} {} {:?}\n", req.method(), req.uri(), req.version());
            for (k, v) in req.headers() {
                s.push_str(&format!("{}: {}\n", k, v.to_str().unwrap_or("?")));
            }
            Response::new(full(s))
        }
        "/echo" => Response::new(req.into_body().map_err(|e| e.into()).boxed()),
        // GraphQL endpoints of the platforms echo too: a body that socialgate
        // peeked at to find the operation comes back exactly as sent.
        p if p.trim_end_matches('/').ends_with("graphql") => {
            Response::new(req.into_body().map_err(|e| e.into()).boxed())
        }
        "/consume" => match req.into_body().collect().await {
            Ok(b) => Response::new(full(format!("consumed {} bytes", b.to_bytes().len()))),
            Err(e) => Response::builder()
                .status(400)
                .body(full(format!("body error: {e}")))
                .unwrap(),
        },
        "/stream" => {
            let (tx, rx) = tokio::sync::mpsc::channel::<
                Result<Frame<Bytes>, Box<dyn std::error::Error + Send + Sync>>,
            >(1);
            tokio::spawn(async move {
                for i in 0..5 {
                    if tx
                        .send(Ok(Frame::data(Bytes::from(format!("chunk-{i}\n")))))
                        .await
                        .is_err()
                    {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            });
            let stream = tokio_stream_from(rx);
            Response::new(BodyExt::boxed(StreamBody::new(stream)))
        }
        "/big" => Response::new(full(vec![b'x'; 1 << 20])),
        "/alt-svc" => Response::builder()
            .header("alt-svc", "h3=\":443\"; ma=86400")
            .header("x-origin", "kept")
            .body(full("offers HTTP/3"))
            .unwrap(),
        "/sleep" => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            Response::new(full("slept"))
        }
        "/ws" => {
            let key = req.headers().get("sec-websocket-key").cloned();
            let Some(key) = key else {
                return Ok(Response::builder()
                    .status(400)
                    .body(full("no key"))
                    .unwrap());
            };
            let accept =
                tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
            let on_upgrade = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                if let Ok(up) = on_upgrade.await {
                    let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
                        TokioIo::new(up),
                        tokio_tungstenite::tungstenite::protocol::Role::Server,
                        None,
                    )
                    .await;
                    while let Some(Ok(msg)) = ws.next().await {
                        if msg.is_text() || msg.is_binary() {
                            if ws.send(msg).await.is_err() {
                                break;
                            }
                        } else if msg.is_close() {
                            break;
                        }
                    }
                }
            });
            Response::builder()
                .status(StatusCode::SWITCHING_PROTOCOLS)
                .header("upgrade", "websocket")
                .header("connection", "Upgrade")
                .header("sec-websocket-accept", accept)
                .body(full(""))
                .unwrap()
        }
        _ => Response::builder()
            .status(404)
            .body(full("not found"))
            .unwrap(),
    };
    Ok(resp)
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> + Send + Sync + 'static {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// A TLS origin with a self-signed certificate for the given names,
/// serving the same routes as [`Origin`] over HTTP/1.1, or HTTP/2 when the
/// client offers `h2` (ALPN).
pub struct TlsOrigin {
    pub addr: SocketAddr,
    pub cert_der: Vec<u8>,
    /// The certificate as PEM (for `--upstream-ca`).
    pub cert_pem: String,
    /// TLS handshakes completed so far.
    pub handshakes: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TlsOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TlsOrigin {
    pub async fn start(names: &[&str]) -> TlsOrigin {
        Self::bind(names, "127.0.0.1:0").await
    }

    /// Like [`TlsOrigin::start`], listening on `addr`.
    pub async fn bind(names: &[&str], addr: &str) -> TlsOrigin {
        let ck = rcgen::generate_simple_self_signed(
            names.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )
        .unwrap();
        let cert_der = ck.cert.der().to_vec();
        let cert_pem = ck.cert.pem();
        let key =
            rustls::pki_types::PrivateKeyDer::try_from(ck.signing_key.serialize_der()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![ck.cert.der().clone()], key)
            .unwrap();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let handshakes = Arc::new(AtomicUsize::new(0));
        let counted = handshakes.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    break;
                };
                let acceptor = acceptor.clone();
                let counted = counted.clone();
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(stream).await {
                        counted.fetch_add(1, Ordering::SeqCst);
                        let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                        let io = TokioIo::new(tls);
                        if h2 {
                            let _ = hyper::server::conn::http2::Builder::new(
                                hyper_util::rt::TokioExecutor::new(),
                            )
                            .serve_connection(io, service_fn(route))
                            .await;
                        } else {
                            let _ = hyper::server::conn::http1::Builder::new()
                                .serve_connection(io, service_fn(route))
                                .with_upgrades()
                                .await;
                        }
                    }
                });
            }
        });
        TlsOrigin {
            addr,
            cert_der,
            cert_pem,
            handshakes,
            task,
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

/// Hosts the test proxy pins to 127.0.0.1 (like curl --resolve).
pub const TEST_HOSTS: &[&str] = &[
    "www.tiktok.com",
    "www.linkedin.com",
    "www.youtube.com",
    "web.whatsapp.com",
    "www.instagram.com",
    "connect.facebook.net",
    "www.facebook.com",
    "example.org",
    "internal.example.org",
];

/// A policy directory in a temp dir: the shipped catalog plus a given
/// policy.yaml (and optional extra files).
pub struct PolicyDir {
    pub dir: tempfile::TempDir,
}

impl PolicyDir {
    pub fn new(policy_yaml: &str) -> PolicyDir {
        let dir = tempfile::tempdir().unwrap();
        let catalog = std::fs::read_to_string(shipped_policies().join("catalog.yaml")).unwrap();
        std::fs::write(dir.path().join("catalog.yaml"), catalog).unwrap();
        let activities =
            std::fs::read_to_string(shipped_policies().join("activities.yaml")).unwrap();
        std::fs::write(dir.path().join("activities.yaml"), activities).unwrap();
        std::fs::write(dir.path().join("policy.yaml"), policy_yaml).unwrap();
        PolicyDir { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, name: &str, contents: &str) {
        let tmp = self.dir.path().join(format!(".{name}.tmp"));
        std::fs::write(&tmp, contents).unwrap();
        std::fs::rename(&tmp, self.dir.path().join(name)).unwrap();
    }
}

pub fn shipped_policies() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")
}

/// A minimal policy: 127.0.0.0/8 is `staff`, loopback destinations are
/// allowed (the test origins live there), any CONNECT port, TikTok blocked.
pub const BASIC_POLICY: &str = r#"
version: 1
settings:
  timezone: Europe/Berlin
  organization: Test Corp
  help: Ask the test desk.
destinations:
  allow: [127.0.0.0/8, "::1/128"]
tunnels:
  ports: [any]
  sni_timeout_ms: 500
groups:
  staff:
    networks: [127.0.0.0/8, "::1/128"]
rules:
  - id: no-tiktok
    groups: [staff]
    platforms: [tiktok]
    action: block
    message: TikTok is not for work.
"#;

/// socialgate running in this process on 127.0.0.1:0, logging JSON to a file.
pub struct TestProxy {
    pub app: Option<App>,
    pub addr: SocketAddr,
    pub policy: PolicyDir,
    pub log_path: PathBuf,
    /// Holds the access log, apart from the policy directory so that log
    /// writes never look like policy changes to the file watcher.
    log_dir: tempfile::TempDir,
}

impl TestProxy {
    pub async fn start(policy_yaml: &str) -> TestProxy {
        Self::start_in(PolicyDir::new(policy_yaml), |_| {}).await
    }

    pub async fn start_in(policy: PolicyDir, tweak: impl FnOnce(&mut AppConfig)) -> TestProxy {
        let log_dir = tempfile::tempdir().unwrap();
        let log_path = log_dir.path().join("access.log");
        let mut resolve = std::collections::HashMap::new();
        for h in TEST_HOSTS {
            resolve.insert(h.to_string(), "127.0.0.1".parse().unwrap());
        }
        let mut cfg = AppConfig {
            policy_dir: policy.path().to_path_buf(),
            listen: vec!["127.0.0.1:0".parse().unwrap()],
            transparent: Vec::new(),
            log: Some(LogConfig {
                path: Some(log_path.clone()),
                format: LogFormat::Json,
                capacity: 10_000,
                mode: socialgate::accesslog::DEFAULT_LOG_MODE,
            }),
            proxy: ProxyConfig {
                resolve,
                ..ProxyConfig::default()
            },
            watch_interval: Some(Duration::from_millis(100)),
            drain: Duration::from_secs(5),
            admin: Some("127.0.0.1:0".parse().unwrap()),
            pac_proxy: None,
            pseudonym_key: policy.path().join("pseudonym.key"),
            inspection: Default::default(),
            budget_state: Some(policy.path().join("budgets.json")),
        };
        tweak(&mut cfg);
        let app = App::start(cfg).await.expect("socialgate starts");
        let addr = app.proxy_addrs[0];
        TestProxy {
            app: Some(app),
            addr,
            policy,
            log_path,
            log_dir,
        }
    }

    pub fn app(&self) -> &App {
        self.app.as_ref().unwrap()
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A reqwest client that uses this proxy for everything.
    pub fn client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .proxy(reqwest::Proxy::all(self.url()).unwrap())
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap()
    }

    /// Waits until the access log holds at least `n` lines, and returns them.
    pub async fn log_lines(&self, n: usize) -> Vec<serde_json::Value> {
        let read = || std::fs::read_to_string(&self.log_path).unwrap_or_default();
        poll_until(Duration::from_secs(5), || read().lines().count() >= n).await;
        let text = read();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad log line {l}: {e}")))
            .collect();
        assert!(
            lines.len() >= n,
            "expected {n} log lines, found {}: {text}",
            lines.len()
        );
        lines
    }

    /// Waits until the policy generation reaches `gen`.
    pub async fn wait_for_generation(&self, gen: u64) {
        // The generation is a watch channel: wait for its change, no polling.
        let mut generation = self.app().policy().subscribe();
        tokio::time::timeout(Duration::from_secs(5), generation.wait_for(|g| *g >= gen))
            .await
            .expect("policy was not reloaded within 5 s")
            .expect("the policy handle is alive");
    }

    /// Shuts down gracefully; returns the access log as written at exit.
    pub async fn stop(mut self) -> String {
        if let Some(app) = self.app.take() {
            app.shutdown().await;
        }
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

/// Runs curl through the proxy and returns (exit status, stdout+stderr).
pub async fn curl(args: &[&str]) -> (i32, String) {
    let out = tokio::process::Command::new("curl")
        .args(["-s", "-S", "--max-time", "10"])
        .args(args)
        .output()
        .await
        .expect("curl is installed (.ci/run installs it)");
    let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
    s.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), s)
}

/// Connects to `addr` from a chosen loopback source address (127.x.y.z),
/// so one test can play clients on different networks.
pub async fn connect_from(local: &str, addr: SocketAddr) -> tokio::net::TcpStream {
    let local: std::net::IpAddr = local.parse().unwrap();
    let sock = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4().unwrap()
    } else {
        tokio::net::TcpSocket::new_v6().unwrap()
    };
    sock.bind(SocketAddr::new(local, 0)).unwrap();
    within(sock.connect(addr)).await.expect("connect")
}

/// Checks `cond` every 10 ms until it holds or `limit` passes; true if it
/// held. The one polling loop of the suite: tests wait for an observable
/// condition with a deadline, never for a fixed time.
pub async fn poll_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until `cond` holds; fails the test naming `what` after 10 s.
pub async fn eventually(what: &str, cond: impl FnMut() -> bool) {
    assert!(
        poll_until(Duration::from_secs(10), cond).await,
        "timed out after 10 s waiting until {what}"
    );
}

/// [`eventually`] for a condition that has to await (a scrape, a read).
pub async fn eventually_async<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !cond().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after 10 s waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Awaits `f`, failing the test after 10 seconds.
pub async fn within<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .expect("timed out after 10 s")
}

/// Reads a response head (up to and including the blank line).
pub async fn read_head(stream: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    within(async {
        while !buf.ends_with(b"\r\n\r\n") {
            let n = stream.read(&mut byte).await.expect("read head");
            assert!(
                n > 0,
                "connection closed before the end of the head: {:?}",
                String::from_utf8_lossy(&buf)
            );
            buf.push(byte[0]);
        }
    })
    .await;
    String::from_utf8_lossy(&buf).into_owned()
}

/// Sends raw bytes to `addr` from 127.0.0.1 and returns the first response:
/// its head and `Content-Length` body (or everything until the server
/// closes, or 5 s pass).
pub async fn raw_exchange(addr: SocketAddr, bytes: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = within(tokio::net::TcpStream::connect(addr)).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        let mut buf = [0u8; 8192];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
            if let Some(end) = out.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&out[..end]).to_ascii_lowercase();
                let len = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok());
                if let Some(len) = len {
                    if out.len() >= end + 4 + len {
                        return;
                    }
                }
            }
        }
    })
    .await;
    String::from_utf8_lossy(&out).into_owned()
}

/// The status code of a raw HTTP response.
pub fn status_of(response: &str) -> u16 {
    response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {response:?}"))
}

/// One htpasswd line with a bcrypt hash (cost 4: fast, still bcrypt).
pub fn htpasswd_line(user: &str, password: &str) -> String {
    format!("{user}:{}\n", bcrypt::hash(password, 4).unwrap())
}

impl TestProxy {
    /// A reqwest client using this proxy, connecting from `local` (127.x.y.z).
    pub fn client_from(&self, local: &str) -> reqwest::Client {
        reqwest::Client::builder()
            .proxy(reqwest::Proxy::all(self.url()).unwrap())
            .local_address(Some(local.parse().unwrap()))
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap()
    }

    /// A reqwest client through this proxy that trusts `origin`'s certificate.
    pub fn tls_client(&self, origin: &TlsOrigin) -> reqwest::Client {
        reqwest::Client::builder()
            .proxy(reqwest::Proxy::all(self.url()).unwrap())
            .add_root_certificate(reqwest::Certificate::from_der(&origin.cert_der).unwrap())
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap()
    }

    /// A reqwest client sending `Proxy-Authorization: Basic` from `local`.
    pub fn client_as(&self, local: &str, user: &str, password: &str) -> reqwest::Client {
        reqwest::Client::builder()
            .proxy(
                reqwest::Proxy::all(self.url())
                    .unwrap()
                    .basic_auth(user, password),
            )
            .local_address(Some(local.parse().unwrap()))
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap()
    }

    /// Waits for exactly `n` log lines: until nothing is in flight, no
    /// tunnel is open, at least `n` records were written and the writer
    /// has caught up with every event recorded (`socialgate_requests_total`
    /// counts each one); then the log must hold exactly `n` lines and
    /// nothing may have been dropped.
    pub async fn exactly_log_lines(&self, n: usize) -> Vec<serde_json::Value> {
        let app = self.app();
        let settled = || {
            let recorder = &app.recorder;
            let gauges = &app.state.gauges;
            gauges.in_flight.load(Ordering::SeqCst) == 0
                && gauges.tunnels.load(Ordering::SeqCst) == 0
                && recorder.written() >= n as u64
                && recorder.written() + recorder.dropped() == self.events_recorded()
        };
        // Not asserted here: the assertions below say what differed.
        poll_until(Duration::from_secs(5), settled).await;
        let (written, dropped) = (app.recorder.written(), app.recorder.dropped());
        let recorded = self.events_recorded();
        assert_eq!(dropped, 0, "records were dropped");
        assert_eq!(
            written, recorded,
            "the writer did not catch up with the events recorded"
        );
        let lines = self.log_lines(written as usize).await;
        assert_eq!(lines.len(), n, "expected exactly {n} log lines: {lines:#?}");
        lines
    }

    /// Every event recorded so far, as the metrics counted them.
    pub fn events_recorded(&self) -> u64 {
        self.app()
            .metrics
            .registry()
            .gather()
            .iter()
            .filter(|family| family.name() == "socialgate_requests_total")
            .flat_map(|family| family.get_metric())
            .map(|m| m.get_counter().get_value() as u64)
            .sum()
    }
}

/// The real `socialgate` binary, killed on drop.
pub struct Spawned {
    pub child: tokio::process::Child,
    pub addr: SocketAddr,
    /// The admin listener's address, from its "admin endpoints" line.
    pub admin: Option<SocketAddr>,
    /// Everything it wrote to stderr so far (tracing output).
    pub stderr: Arc<std::sync::Mutex<String>>,
}

impl Spawned {
    /// Runs `socialgate run --policy DIR --listen 127.0.0.1:0 ARGS...` and
    /// waits for its "socialgate listening" line. Unless `args` say
    /// otherwise (`--listen`, `--admin`), the admin listener takes port 0 too (the default,
    /// 127.0.0.1:9128, may be in use) and the pseudonym key lives in DIR.
    pub async fn run(policy: &Path, args: &[&str]) -> Spawned {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_socialgate"));
        cmd.arg("run").arg("--policy").arg(policy);
        if !args.contains(&"--listen") {
            cmd.args(["--listen", "127.0.0.1:0"]);
        }
        if !args.contains(&"--admin") {
            cmd.args(["--admin", "127.0.0.1:0"]);
        }
        if !args.contains(&"--pseudonym-key") {
            cmd.arg("--pseudonym-key").arg(policy.join("pseudonym.key"));
        }
        let child = cmd
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn socialgate");
        Spawned::attach(child).await
    }

    /// Takes over a `socialgate run` child whose stderr is piped: waits for
    /// its "socialgate listening" line (and the admin address before it),
    /// then keeps collecting stderr. Tests that need their own command line
    /// (limits, users, environment) spawn it themselves and attach here.
    pub async fn attach(mut child: tokio::process::Child) -> Spawned {
        use tokio::io::AsyncBufReadExt;
        let stderr = Arc::new(std::sync::Mutex::new(String::new()));
        let mut lines =
            tokio::io::BufReader::new(child.stderr.take().expect("piped stderr")).lines();
        let field = |line: &str, name: &str| -> SocketAddr {
            let at = line
                .find(name)
                .unwrap_or_else(|| panic!("{name} in {line:?}"))
                + name.len();
            line[at..]
                .split_whitespace()
                .next()
                .unwrap()
                .parse()
                .unwrap()
        };
        let (addr, admin) = within(async {
            let mut admin = None;
            loop {
                let Some(line) = lines.next_line().await.unwrap() else {
                    panic!(
                        "socialgate exited before listening:\n{}",
                        stderr.lock().unwrap()
                    );
                };
                stderr.lock().unwrap().push_str(&format!("{line}\n"));
                if line.contains("admin endpoints") {
                    admin = Some(field(&line, "admin="));
                }
                if line.contains("socialgate listening") {
                    return (field(&line, "proxy="), admin);
                }
            }
        })
        .await;
        let sink = stderr.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                sink.lock().unwrap().push_str(&format!("{line}\n"));
            }
        });
        Spawned {
            child,
            addr,
            admin,
            stderr,
        }
    }

    /// Waits until the process has a handler for `sig` (Linux: the
    /// SigCgt mask in /proc/PID/status), so sending it cannot kill it.
    pub async fn wait_until_catching(&self, sig: i32) {
        let status = format!("/proc/{}/status", self.pid());
        let catching = || {
            let text = std::fs::read_to_string(&status).expect("read /proc/PID/status");
            let mask = text
                .lines()
                .find_map(|l| l.strip_prefix("SigCgt:"))
                .expect("SigCgt in /proc/PID/status");
            let mask = u64::from_str_radix(mask.trim(), 16).expect("hex SigCgt");
            mask & (1 << (sig - 1)) != 0
        };
        eventually("the process catches the signal", catching).await;
    }

    pub fn pid(&self) -> i32 {
        self.child.id().expect("still running") as i32
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's PID has no memory-safety concerns.
        let rc = unsafe { libc::kill(self.pid(), sig) };
        assert_eq!(rc, 0, "kill failed");
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits (10 s at most) until stderr holds a line containing `text`, and returns that line.
    pub async fn stderr_line(&self, text: &str) -> String {
        let found = poll_until(Duration::from_secs(10), || {
            self.stderr().lines().any(|l| l.contains(text))
        })
        .await;
        let all = self.stderr();
        assert!(found, "no line with {text:?} on stderr within 10 s:\n{all}");
        let line = all.lines().find(|l| l.contains(text));
        line.unwrap_or_default().to_string()
    }

    pub fn client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .proxy(reqwest::Proxy::all(format!("http://{}", self.addr)).unwrap())
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap()
    }
}

/// Runs `socialgate ARGS...` to completion; returns (exit code, stdout, stderr).
pub async fn socialgate(args: &[&str]) -> (i32, String, String) {
    let out = within(
        tokio::process::Command::new(env!("CARGO_BIN_EXE_socialgate"))
            .args(args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("run socialgate");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// What a [`RawOrigin`] does after writing its canned response.
#[derive(Clone, Copy, Debug)]
pub enum After {
    /// Close the connection.
    Close,
    /// Keep the connection open and silent until the peer closes it.
    Stall,
    /// Reset the connection (`SO_LINGER` 0), as a crashing server does.
    Reset,
}

/// A misbehaving origin written for attacker tests: it reads each request
/// head, keeps every byte it received, answers with canned bytes (no HTTP
/// library on its side), then closes or stalls.
pub struct RawOrigin {
    pub addr: SocketAddr,
    received: Arc<std::sync::Mutex<Vec<u8>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RawOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RawOrigin {
    pub async fn replying(response: impl Into<Vec<u8>>, after: After) -> RawOrigin {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let response: Arc<Vec<u8>> = Arc::new(response.into());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(std::sync::Mutex::new(Vec::new()));
        let rx = received.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let response = response.clone();
                let rx = rx.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => {
                                head.extend_from_slice(&buf[..n]);
                                rx.lock().unwrap().extend_from_slice(&buf[..n]);
                            }
                        }
                    }
                    let _ = s.write_all(&response).await;
                    let _ = s.flush().await;
                    if let After::Reset = after {
                        let _ = s.set_zero_linger();
                        return;
                    }
                    if let After::Stall = after {
                        // Keep reading (and keeping) whatever comes, never answer more.
                        loop {
                            match s.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => rx.lock().unwrap().extend_from_slice(&buf[..n]),
                            }
                        }
                    }
                });
            }
        });
        RawOrigin {
            addr,
            received,
            task,
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Every byte the origin received so far, as text.
    pub fn received(&self) -> String {
        String::from_utf8_lossy(&self.received.lock().unwrap()).into_owned()
    }
}

/// Writes `bytes` to the proxy from 127.0.0.1 and reads until the proxy
/// closes the connection (failing the test after 10 s).
pub async fn raw_until_close(addr: SocketAddr, bytes: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = within(tokio::net::TcpStream::connect(addr)).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    within(async {
        let mut buf = [0u8; 8192];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    String::from_utf8_lossy(&out).into_owned()
}

/// The pseudonym socialgate must log for `user`, computed here from the
/// key file without the crate's own code: `p:` + the first 16 hex digits
/// of HMAC-SHA256 keyed with the file's contents (trailing whitespace
/// trimmed) over the user name.
pub fn expected_pseudonym(key_file: &Path, user: &str) -> String {
    use hmac::{Hmac, Mac};
    let text = std::fs::read_to_string(key_file).expect("read the pseudonym key");
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(text.trim_end().as_bytes())
        .expect("HMAC takes any key length");
    mac.update(user.as_bytes());
    let digest = mac.finalize().into_bytes();
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("p:{hex}")
}

impl TestProxy {
    /// The pseudonym this proxy must log for `user` (its key file is
    /// `pseudonym.key` in the policy directory).
    pub fn pseudonym_of(&self, user: &str) -> String {
        expected_pseudonym(&self.policy.path().join("pseudonym.key"), user)
    }
}

/// A real `redis-server` (Debian's package) on a unix socket in a temp
/// dir, no TCP port, no persistence; killed (by its PID) on drop.
pub struct RedisServer {
    child: Option<tokio::process::Child>,
    pub socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts one and waits until it answers PING; `None` (with a note on
    /// stderr) when `redis-server` is not installed here. CI installs it
    /// (`.ci/run`), so there the tests always run.
    pub async fn start(test: &str) -> Option<RedisServer> {
        let installed = std::process::Command::new("redis-server")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !installed {
            eprintln!(
                "skipping {test}: redis-server is not installed (apt-get install redis-server; .ci/run installs it)"
            );
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("redis.sock");
        let mut server = RedisServer {
            child: None,
            socket,
            _dir: dir,
        };
        server.restart().await;
        Some(server)
    }

    /// Starts the server again on the same socket (after [`Self::kill`]);
    /// it starts empty.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "redis-server is still running");
        let child = tokio::process::Command::new("redis-server")
            .args(["--port", "0", "--unixsocket"])
            .arg(&self.socket)
            .args([
                "--unixsocketperm",
                "700",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(self._dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn redis-server");
        self.child = Some(child);
        eventually_async("redis-server answers PING", || self.ping()).await;
    }

    /// `redis+unix://` URL of the server, for `state.redis`.
    pub fn url(&self) -> String {
        format!("redis+unix://{}", self.socket.display())
    }

    /// True when the server answers PING on its socket.
    pub async fn ping(&self) -> bool {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let Ok(mut s) = tokio::net::UnixStream::connect(&self.socket).await else {
            return false;
        };
        if s.write_all(b"PING\r\n").await.is_err() {
            return false;
        }
        let mut buf = [0u8; 16];
        matches!(s.read(&mut buf).await, Ok(n) if buf[..n].starts_with(b"+PONG"))
    }

    /// Kills the server (SIGKILL to its PID) and waits for it to exit.
    pub async fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().await.expect("kill redis-server");
        }
    }
}
impl PolicyDir {
    /// Where an inspecting test proxy keeps its company CA.
    pub fn ca_paths(&self) -> socialgate::ca::CaPaths {
        socialgate::ca::CaPaths {
            cert: self.path().join("ca.pem"),
            key: self.path().join("ca.key"),
        }
    }
}

impl TestProxy {
    /// socialgate with a company CA (made in its policy directory, as
    /// `socialgate ca init` would) that trusts `origins`' certificates
    /// upstream, as `--upstream-ca` does.
    pub async fn inspecting(policy_yaml: &str, origins: &[&TlsOrigin]) -> TestProxy {
        let dir = PolicyDir::new(policy_yaml);
        socialgate::ca::init(&dir.ca_paths(), Some("Test Corp")).unwrap();
        let upstream = dir.path().join("upstream-ca.pem");
        let pems: String = origins.iter().map(|o| o.cert_pem.clone()).collect();
        std::fs::write(&upstream, pems).unwrap();
        let ca = dir.ca_paths();
        Self::start_in(dir, move |cfg| {
            cfg.inspection = socialgate::app::InspectionFiles {
                ca,
                upstream_ca: vec![upstream],
            };
        })
        .await
    }

    /// The company CA certificate (PEM) of an inspecting proxy.
    pub fn ca_pem(&self) -> Vec<u8> {
        std::fs::read(self.policy.ca_paths().cert).unwrap()
    }

    /// A reqwest client through this proxy that trusts only the company
    /// CA: it reaches a TLS origin only through socialgate's inspection.
    /// `h2` offers HTTP/2 and HTTP/1.1 (ALPN); otherwise HTTP/1.1 only.
    pub fn inspected_client(&self, h2: bool) -> reqwest::Client {
        let b = reqwest::Client::builder()
            .proxy(reqwest::Proxy::all(self.url()).unwrap())
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&self.ca_pem()).unwrap())
            .timeout(Duration::from_secs(10));
        let b = if h2 { b } else { b.http1_only() };
        b.build().unwrap()
    }

    /// The current text of /metrics.
    pub async fn metrics(&self) -> String {
        let admin = self.app().admin_addr.expect("admin listener");
        reqwest::get(format!("http://{admin}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

/// Reads one response with a `Content-Length` body (head and body) from a
/// connection that stays open.
pub async fn read_response(stream: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let head = read_head(stream).await;
    let len = head
        .to_ascii_lowercase()
        .lines()
        .find_map(|l| {
            l.strip_prefix("content-length:")
                .map(|v| v.trim().to_string())
        })
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    within(stream.read_exact(&mut body))
        .await
        .expect("read body");
    format!("{head}{}", String::from_utf8_lossy(&body))
}

impl TestProxy {
    /// The proxy's live counts (connections, parked, tunnels, ...).
    pub fn gauges(&self) -> &socialgate::metrics::Gauges {
        &self.app().state.gauges
    }
}

/// What the test DNS server answers for a name.
#[derive(Clone, Copy, Debug)]
pub enum DnsAnswer {
    /// An A record with this TTL (AAAA: no data).
    A(std::net::Ipv4Addr, u32),
    /// The same, after a delay.
    Slow(Duration, std::net::Ipv4Addr),
    /// NXDOMAIN, with an SOA whose minimum (negative TTL) is this.
    NxDomain(u32),
}

/// A DNS server on 127.0.0.1 (UDP, port 0) for the tests: answers from a
/// table (anything else is NXDOMAIN), counts the questions it got, and the
/// most names it was working on at once. Messages are parsed and built by
/// hickory-proto.
pub struct DnsServer {
    pub addr: SocketAddr,
    /// (name without the final dot, record type) of every question.
    questions: Arc<std::sync::Mutex<Vec<(String, String)>>>,
    /// Names with a question pending, and the most there were at once.
    pending: Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>>,
    pub most_names: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl DnsServer {
    pub async fn start(table: &[(&str, DnsAnswer)]) -> DnsServer {
        use hickory_proto::op::{Message, ResponseCode};
        use hickory_proto::rr::rdata::{A, SOA};
        use hickory_proto::rr::{Name, RData, Record, RecordType};
        let sock = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let addr = sock.local_addr().unwrap();
        let table: std::collections::HashMap<String, DnsAnswer> = table
            .iter()
            .map(|(n, a)| (n.trim_end_matches('.').to_ascii_lowercase(), *a))
            .collect();
        let table = Arc::new(table);
        let questions = Arc::new(std::sync::Mutex::new(Vec::new()));
        let pending = Arc::new(std::sync::Mutex::new(std::collections::HashMap::new()));
        let most_names = Arc::new(AtomicUsize::new(0));
        let (q, b, m) = (questions.clone(), pending.clone(), most_names.clone());
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let Ok((n, from)) = sock.recv_from(&mut buf).await else {
                    return;
                };
                let Ok(req) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                let Some(query) = req.queries.first().cloned() else {
                    continue;
                };
                let name = query
                    .name()
                    .to_ascii()
                    .trim_end_matches('.')
                    .to_ascii_lowercase();
                let qtype = query.query_type();
                q.lock().unwrap().push((name.clone(), qtype.to_string()));
                let (sock, table, b, m) = (sock.clone(), table.clone(), b.clone(), m.clone());
                tokio::spawn(async move {
                    {
                        let mut p = b.lock().unwrap();
                        *p.entry(name.clone()).or_insert(0) += 1;
                        m.fetch_max(p.len(), Ordering::SeqCst);
                    }
                    let mut resp = Message::response(req.metadata.id, req.metadata.op_code);
                    resp.metadata.recursion_desired = req.metadata.recursion_desired;
                    resp.metadata.recursion_available = true;
                    resp.add_query(query.clone());
                    let soa = |min: u32| {
                        let zone = Name::from_ascii("test.").unwrap();
                        Record::from_rdata(
                            zone.clone(),
                            min,
                            RData::SOA(SOA::new(zone.clone(), zone, 1, 60, 60, 60, min)),
                        )
                    };
                    let a =
                        |ip, ttl| Record::from_rdata(query.name().clone(), ttl, RData::A(A(ip)));
                    match table.get(&name) {
                        Some(DnsAnswer::A(ip, ttl)) if qtype == RecordType::A => {
                            resp.add_answer(a(*ip, *ttl));
                        }
                        Some(DnsAnswer::Slow(delay, ip)) => {
                            tokio::time::sleep(*delay).await;
                            if qtype == RecordType::A {
                                resp.add_answer(a(*ip, 60));
                            }
                        }
                        Some(DnsAnswer::NxDomain(min)) => {
                            resp.metadata.response_code = ResponseCode::NXDomain;
                            resp.add_authority(soa(*min));
                        }
                        Some(_) => {
                            resp.add_authority(soa(60)); // no data for this type
                        }
                        None => {
                            resp.metadata.response_code = ResponseCode::NXDomain;
                            resp.add_authority(soa(30));
                        }
                    }
                    if let Ok(bytes) = resp.to_vec() {
                        let _ = sock.send_to(&bytes, from).await;
                    }
                    let mut p = b.lock().unwrap();
                    if let Some(n) = p.get_mut(&name) {
                        *n -= 1;
                        if *n == 0 {
                            p.remove(&name);
                        }
                    }
                });
            }
        });
        DnsServer {
            addr,
            questions,
            pending,
            most_names,
            task,
        }
    }

    /// How many questions of type `qtype` (A, AAAA) named `name`.
    pub fn asked(&self, name: &str, qtype: &str) -> usize {
        self.questions
            .lock()
            .unwrap()
            .iter()
            .filter(|(n, t)| n == name && t == qtype)
            .count()
    }
}

/// One request as a [`RecordingOrigin`] received it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    /// The request target as received (origin-form: path and query).
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// A keep-alive origin (hyper's server) that records every whole request
/// it receives (a request whose body breaks off is not recorded), and
/// answers each with `200` and `ok N` (N counting from 1).
pub struct RecordingOrigin {
    pub addr: SocketAddr,
    requests: Arc<std::sync::Mutex<Vec<Recorded>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RecordingOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RecordingOrigin {
    pub async fn start() -> RecordingOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(std::sync::Mutex::new(Vec::new()));
        let rec = requests.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let rec = rec.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let rec = rec.clone();
                        async move {
                            let (parts, body) = req.into_parts();
                            let Ok(body) = body.collect().await else {
                                return Ok::<_, Infallible>(
                                    Response::builder()
                                        .status(400)
                                        .body(full("broken body"))
                                        .unwrap(),
                                );
                            };
                            let n = {
                                let mut r = rec.lock().unwrap();
                                r.push(Recorded {
                                    method: parts.method.to_string(),
                                    target: parts.uri.to_string(),
                                    headers: parts
                                        .headers
                                        .iter()
                                        .map(|(k, v)| {
                                            (
                                                k.to_string(),
                                                String::from_utf8_lossy(v.as_bytes()).into_owned(),
                                            )
                                        })
                                        .collect(),
                                    body: body.to_bytes().to_vec(),
                                });
                                r.len()
                            };
                            Ok(Response::new(full(format!("ok {n}"))))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        RecordingOrigin {
            addr,
            requests,
            task,
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Every whole request received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }
}
