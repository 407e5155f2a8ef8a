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
/// request body back), `/stream` (5 chunks, 100 ms apart), `/big` (1 MiB),
/// `/ws` (WebSocket echo).
pub struct Origin {
    pub addr: SocketAddr,
    /// TCP connections accepted so far.
    pub connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
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
        let conns = connections.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    break;
                };
                conns.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service_fn(route))
                        .with_upgrades()
                        .await;
                });
            }
        });
        Origin {
            addr,
            connections,
            task,
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
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
/// answering `/hello` over HTTP/1.1.
pub struct TlsOrigin {
    pub addr: SocketAddr,
    pub cert_der: Vec<u8>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TlsOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TlsOrigin {
    pub async fn start(names: &[&str]) -> TlsOrigin {
        let ck = rcgen::generate_simple_self_signed(
            names.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )
        .unwrap();
        let cert_der = ck.cert.der().to_vec();
        let key = rustls::pki_types::PrivateKeyDer::try_from(ck.key_pair.serialize_der()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![ck.cert.der().clone()], key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    break;
                };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(stream).await {
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(tls), service_fn(route))
                            .await;
                    }
                });
            }
        });
        TlsOrigin {
            addr,
            cert_der,
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
}

impl TestProxy {
    pub async fn start(policy_yaml: &str) -> TestProxy {
        Self::start_in(PolicyDir::new(policy_yaml), |_| {}).await
    }

    pub async fn start_in(policy: PolicyDir, tweak: impl FnOnce(&mut AppConfig)) -> TestProxy {
        let log_path = policy.path().join("access.log");
        let mut resolve = std::collections::HashMap::new();
        for h in TEST_HOSTS {
            resolve.insert(h.to_string(), "127.0.0.1".parse().unwrap());
        }
        let mut cfg = AppConfig {
            policy_dir: policy.path().to_path_buf(),
            listen: vec!["127.0.0.1:0".parse().unwrap()],
            log: Some(LogConfig {
                path: Some(log_path.clone()),
                format: LogFormat::Json,
                capacity: 10_000,
            }),
            proxy: ProxyConfig {
                resolve,
                ..ProxyConfig::default()
            },
            watch_interval: Some(Duration::from_millis(100)),
            drain: Duration::from_secs(5),
            admin: None,
            pac_proxy: None,
            pseudonym_key: policy.path().join("pseudonym.key"),
        };
        tweak(&mut cfg);
        let app = App::start(cfg).await.expect("socialgate starts");
        let addr = app.proxy_addrs[0];
        TestProxy {
            app: Some(app),
            addr,
            policy,
            log_path,
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
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
            let lines: Vec<serde_json::Value> = text
                .lines()
                .map(|l| {
                    serde_json::from_str(l).unwrap_or_else(|e| panic!("bad log line {l}: {e}"))
                })
                .collect();
            if lines.len() >= n || tokio::time::Instant::now() > deadline {
                assert!(
                    lines.len() >= n,
                    "expected {n} log lines, found {}: {text}",
                    lines.len()
                );
                return lines;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until the policy generation reaches `gen`.
    pub async fn wait_for_generation(&self, gen: u64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while self.app().policy().generation() < gen {
            assert!(
                tokio::time::Instant::now() < deadline,
                "policy was not reloaded"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn stop(mut self) {
        if let Some(app) = self.app.take() {
            app.shutdown().await;
        }
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
