//! The parent proxy (`--upstream-proxy`): reaching admitted destinations
//! through a corporate egress proxy.
//!
//! Tunnels are chained with `CONNECT host:port` to the parent (its answer
//! must be 2xx, else the tunnel fails with `parent-refused` and the
//! parent's status); plain-HTTP requests go to the parent in absolute form
//! through a pooled client of their own, whose connections say they are
//! proxied, so hyper writes the absolute target. Destinations that match
//! `--no-proxy` go direct. Basic credentials come from a file with the
//! pseudonym key's mode rules and never appear in a log or `Debug` output.
//!
//! This module decides nothing about whether traffic may pass: the
//! admission ran before, on the same facts ([`crate::policy::admit`]). It
//! only says which way admitted traffic leaves ([`NoProxy::matches`]) and
//! carries it there.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::{HeaderValue, Method, Request, StatusCode};
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioIo, TokioTimer};
use ipnet::IpNet;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::upstream::{BoxIo, ProxyBody, UpstreamError};
use crate::policy::{normalize_host, DomainTable, Host};

/// Who resolves the names of destinations that go through the parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ParentDns {
    /// socialgate resolves every name and checks every address before
    /// anything is sent to the parent, exactly as when it connects itself.
    #[default]
    Local,
    /// The parent resolves names (networks where only the egress proxy
    /// can): socialgate checks IP literals and refuses local names only.
    Parent,
}

/// Destinations that bypass the parent, like curl's `NO_PROXY`: domains
/// (each covers its subdomains, on label boundaries), IP addresses and
/// CIDR networks, or `*` for everything.
#[derive(Debug, Clone, Default)]
pub struct NoProxy {
    all: bool,
    domains: DomainTable<()>,
    networks: Vec<IpNet>,
    /// The entries as written, for `Debug` and `explain`.
    written: Vec<String>,
}

impl NoProxy {
    /// Reads the entries of `--no-proxy`; every bad entry is named.
    pub fn parse(entries: &[String]) -> Result<NoProxy, String> {
        let mut np = NoProxy::default();
        let mut bad = Vec::new();
        for raw in entries.iter().flat_map(|e| e.split(',')) {
            let e = raw.trim();
            if e.is_empty() {
                continue;
            }
            np.written.push(e.to_string());
            if e == "*" {
                np.all = true;
            } else if let Ok(net) = e.parse::<IpNet>() {
                np.networks.push(net.trunc());
            } else if let Ok(ip) = e
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
            {
                np.networks.push(IpNet::from(ip));
            } else {
                let domain = e.trim_start_matches("*.").trim_start_matches('.');
                match normalize_host(domain) {
                    Ok(Host::Name(n)) => {
                        np.domains.insert(&n, ());
                    }
                    _ => bad.push(format!("{e:?}")),
                }
            }
        }
        if bad.is_empty() {
            Ok(np)
        } else {
            Err(format!(
                "{} in --no-proxy: write domains (corp.example covers its subdomains), IP addresses or CIDR networks (10.0.0.0/8), separated by commas",
                bad.join(", ")
            ))
        }
    }

    /// True when the destination goes direct: its name is (under) a listed
    /// domain, or it is, or resolved to, an address in a listed network.
    pub fn matches(&self, host: &Host, addrs: Option<&[IpAddr]>) -> bool {
        if self.all {
            return true;
        }
        let in_nets = |ip: &IpAddr| {
            let ip = crate::policy::canonical_ip(*ip);
            self.networks.iter().any(|n| n.contains(&ip))
        };
        match host {
            Host::Ip(ip) => in_nets(ip),
            Host::Name(n) | Host::Numeric(n) => {
                self.domains.lookup(n).is_some() || addrs.is_some_and(|a| a.iter().any(in_nets))
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        !self.all && self.domains.is_empty() && self.networks.is_empty()
    }

    /// The entries as written.
    pub fn entries(&self) -> &[String] {
        &self.written
    }
}

/// `--upstream-proxy` and its companions, read and checked at startup.
#[derive(Clone)]
pub struct ParentConfig {
    /// The parent's host (a name or an address) and port, as written.
    pub host: String,
    pub port: u16,
    /// `Basic …` for `Proxy-Authorization`, from the credentials file.
    authorization: Option<HeaderValue>,
    pub no_proxy: NoProxy,
    pub dns: ParentDns,
}

impl std::fmt::Debug for ParentConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParentConfig")
            .field("parent", &self.address())
            .field(
                "credentials",
                &self.authorization.as_ref().map(|_| "(redacted)"),
            )
            .field("no_proxy", &self.no_proxy.written)
            .field("dns", &self.dns)
            .finish()
    }
}

/// Why `--upstream-proxy` or its credentials file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ParentConfigError {
    #[error("--upstream-proxy {0:?}: {1}")]
    Url(String, &'static str),
    #[error("upstream proxy credentials file {path}: {source}")]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("upstream proxy credentials file {path}: mode {mode:04o} lets group or others read the password; run `chmod 600 {path}`")]
    TooOpen { path: PathBuf, mode: u32 },
    #[error("upstream proxy credentials file {path}: write one line USER:PASSWORD (the user name must not be empty or contain ':')")]
    Format { path: PathBuf },
}

impl ParentConfig {
    /// Reads `http://HOST:PORT` (credentials never in the URL: they would
    /// show in `ps` and in the environment), the credentials file and the
    /// bypass list.
    pub fn new(
        url: &str,
        credentials: Option<&Path>,
        no_proxy: NoProxy,
        dns: ParentDns,
    ) -> Result<ParentConfig, ParentConfigError> {
        let bad = |why| ParentConfigError::Url(url.to_string(), why);
        let uri: http::Uri = url.trim().parse().map_err(|_| {
            bad("not a URL; write http://HOST:PORT, e.g. http://proxy.corp.example:3128")
        })?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(_) => return Err(bad("only http:// parents are supported (socialgate talks to the parent in plain HTTP and tunnels TLS through it)")),
            None => return Err(bad("no scheme; write http://HOST:PORT, e.g. http://proxy.corp.example:3128")),
        }
        let authority = uri
            .authority()
            .ok_or_else(|| bad("no host; write http://HOST:PORT"))?;
        if authority.as_str().contains('@') {
            return Err(bad("credentials do not belong in the URL (they would show in the process list); put USER:PASSWORD in a file and name it with --upstream-proxy-credentials"));
        }
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(bad("a proxy URL has no path; write http://HOST:PORT"));
        }
        let port = authority.port_u16().ok_or_else(|| {
            bad("no port; write http://HOST:PORT, e.g. http://proxy.corp.example:3128")
        })?;
        let host = normalize_host(authority.host())
            .map_err(|_| bad("the host is not a valid name or address"))?;
        let authorization = credentials.map(read_credentials).transpose()?;
        Ok(ParentConfig {
            host: match host {
                Host::Ip(IpAddr::V6(ip)) => format!("[{ip}]"),
                h => h.to_string(),
            },
            port,
            authorization,
            no_proxy,
            dns,
        })
    }

    /// `HOST:PORT`, as logged (never with credentials).
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    pub fn has_credentials(&self) -> bool {
        self.authorization.is_some()
    }

    /// True when traffic to `host` (with the addresses it resolved to, if
    /// known) leaves through the parent: everything `--no-proxy` does not list.
    pub fn carries(&self, host: &Host, addrs: Option<&[IpAddr]>) -> bool {
        !self.no_proxy.matches(host, addrs)
    }

    /// True when the parent, not socialgate, resolves `host`: with
    /// `--upstream-proxy-dns parent`, for names bound for the parent.
    /// Never for a redirected connection, whose name must be compared with
    /// the address it was going to.
    pub fn resolves(&self, host: &Host, redirected: bool) -> bool {
        self.dns == ParentDns::Parent
            && !redirected
            && !matches!(host, Host::Ip(_))
            && self.carries(host, None)
    }
}

/// Reads `USER:PASSWORD` (one line; trailing whitespace ignored) into a
/// `Basic` header value. The file must not be readable by group or others.
pub fn read_credentials(path: &Path) -> Result<HeaderValue, ParentConfigError> {
    let unreadable = |source| ParentConfigError::Unreadable {
        path: path.to_owned(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(unreadable)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(ParentConfigError::TooOpen {
                path: path.to_owned(),
                mode,
            });
        }
    }
    #[cfg(not(unix))]
    let _ = meta;
    let text = std::fs::read_to_string(path).map_err(unreadable)?;
    let line = text.trim_end_matches(['\n', '\r', ' ', '\t']);
    let format = || ParentConfigError::Format {
        path: path.to_owned(),
    };
    let (user, _password) = line.split_once(':').ok_or_else(format)?;
    if user.is_empty() || line.contains('\n') {
        return Err(format());
    }
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(line.as_bytes());
    let mut value = HeaderValue::from_str(&format!("Basic {encoded}")).map_err(|_| format())?;
    value.set_sensitive(true);
    Ok(value)
}

/// The parent at run time: its settings and a pooled client for plain
/// HTTP, whose connections all lead to the parent.
pub struct Parent {
    pub config: ParentConfig,
    client: Client<ParentConnector, ProxyBody>,
}

impl Parent {
    pub fn new(
        config: ParentConfig,
        connect_timeout: Duration,
        idle: Duration,
        max_head: usize,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Parent {
        let connector = ParentConnector {
            host: config.host.clone(),
            port: config.port,
            timeout: connect_timeout,
            metrics,
        };
        let client = Client::builder(super::executor())
            .http1_max_buf_size(max_head.max(8192))
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(idle)
            .pool_max_idle_per_host(256)
            .set_host(false)
            .build(connector);
        Parent { config, client }
    }

    /// Sends a plain-HTTP request to the parent. Its URI must be the
    /// absolute `http://host:port/path` of the admitted destination: hyper
    /// writes it as is, because the connection says it is proxied.
    pub fn request(
        &self,
        mut req: Request<ProxyBody>,
    ) -> hyper_util::client::legacy::ResponseFuture {
        if let Some(auth) = &self.config.authorization {
            req.headers_mut()
                .insert(http::header::PROXY_AUTHORIZATION, auth.clone());
        }
        self.client.request(req)
    }

    /// Opens a tunnel to `host:port` through the parent: `CONNECT`, a 2xx
    /// answer, then the connection is the tunnel.
    pub async fn connect(
        &self,
        host: &Host,
        port: u16,
        connect_timeout: Duration,
        answer_timeout: Duration,
        max_head: usize,
        metrics: &crate::metrics::Metrics,
    ) -> Result<BoxIo, UpstreamError> {
        let parent = self.config.address();
        let stream = dial(
            &self.config.host,
            self.config.port,
            connect_timeout,
            metrics,
        )
        .await?;
        let protocol = |detail: String| UpstreamError::ParentProtocol {
            parent: parent.clone(),
            detail,
        };
        let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
            .max_buf_size(max_head.max(8192))
            .handshake::<_, ProxyBody>(TokioIo::new(stream))
            .await
            .map_err(|e| protocol(e.to_string()))?;
        tokio::spawn(async move {
            let _ = conn.with_upgrades().await;
        });
        let authority = match host {
            Host::Ip(IpAddr::V6(ip)) => format!("[{ip}]:{port}"),
            h => format!("{h}:{port}"),
        };
        let mut req = Request::builder()
            .method(Method::CONNECT)
            .uri(authority.as_str())
            .header(http::header::HOST, authority.as_str())
            .body(super::responses::empty())
            .map_err(|e| protocol(e.to_string()))?;
        if let Some(auth) = &self.config.authorization {
            req.headers_mut()
                .insert(http::header::PROXY_AUTHORIZATION, auth.clone());
        }
        let resp = match tokio::time::timeout(answer_timeout, sender.send_request(req)).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return Err(protocol(e.to_string())),
            Err(_) => {
                return Err(UpstreamError::Timeout(format!(
                    "the parent proxy {parent} (no answer to CONNECT)"
                )))
            }
        };
        if !resp.status().is_success() {
            return Err(UpstreamError::ParentRefused {
                parent,
                status: resp.status(),
            });
        }
        let upgraded = hyper::upgrade::on(resp)
            .await
            .map_err(|e| protocol(e.to_string()))?;
        Ok(Box::new(TokioIo::new(upgraded)))
    }
}

/// The plain-HTTP pool's connector: every connection goes to the parent,
/// whatever the request names, and says it is proxied (absolute form).
#[derive(Clone)]
struct ParentConnector {
    host: String,
    port: u16,
    timeout: Duration,
    metrics: Arc<crate::metrics::Metrics>,
}

impl tower_service::Service<http::Uri> for ParentConnector {
    type Response = TokioIo<ParentStream>;
    type Error = UpstreamError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, UpstreamError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: http::Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            dial(&this.host, this.port, this.timeout, &this.metrics)
                .await
                .map(|s| TokioIo::new(ParentStream(s)))
        })
    }
}

/// Connects to the parent: its name is resolved by the system resolver
/// (the parent is infrastructure the operator named, not a destination,
/// so the destination rules do not apply to it).
async fn dial(
    host: &str,
    port: u16,
    timeout: Duration,
    metrics: &crate::metrics::Metrics,
) -> Result<TcpStream, UpstreamError> {
    let started = Instant::now();
    let parent = format!("{host}:{port}");
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> =
        match tokio::time::timeout(timeout, tokio::net::lookup_host((bare, port))).await {
            Ok(Ok(a)) => a.collect(),
            Ok(Err(source)) => return Err(UpstreamError::ParentConnect { parent, source }),
            Err(_) => {
                return Err(UpstreamError::Timeout(format!(
                    "the parent proxy {parent} (resolving its name)"
                )))
            }
        };
    let mut last = None;
    for addr in addrs {
        match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                metrics.observe_connect_time(started.elapsed());
                return Ok(stream);
            }
            Ok(Err(source)) => {
                last = Some(UpstreamError::ParentConnect {
                    parent: parent.clone(),
                    source,
                })
            }
            Err(_) => last = Some(UpstreamError::Timeout(format!("the parent proxy {parent}"))),
        }
    }
    Err(last.unwrap_or(UpstreamError::ParentConnect {
        parent,
        source: std::io::Error::new(std::io::ErrorKind::NotFound, "its name has no address"),
    }))
}

/// A connection to the parent, marked as proxied for hyper's pool.
struct ParentStream(TcpStream);

impl Connection for ParentStream {
    fn connected(&self) -> Connected {
        Connected::new().proxy(true)
    }
}

impl AsyncRead for ParentStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for ParentStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
}

/// A parent's 407 to a plain-HTTP request is about socialgate's own
/// credentials, not the client's: it must not reach the client as a 407.
pub fn refused_plain_request(status: StatusCode) -> bool {
    status == StatusCode::PROXY_AUTHENTICATION_REQUIRED
}

#[cfg(test)]
mod tests {
    use super::*;

    fn np(s: &str) -> NoProxy {
        NoProxy::parse(&[s.to_string()]).unwrap()
    }

    #[test]
    fn no_proxy_matches_domains_on_label_boundaries_and_networks() {
        let list =
            np("corp.example, .intra.example,*.lab.example, 10.0.0.0/8, 192.0.2.7, [fd00::1]");
        let h = |s: &str| normalize_host(s).unwrap();
        let cases: &[(&str, Option<&[&str]>, bool)] = &[
            ("corp.example", None, true),
            ("www.corp.example", None, true),
            ("notcorp.example", None, false),
            ("x.intra.example", None, true),
            ("lab.example", None, true),
            ("www.linkedin.com", None, false),
            ("10.1.2.3", None, true),
            ("11.1.2.3", None, false),
            ("192.0.2.7", None, true),
            ("[fd00::1]", None, true),
            ("[::ffff:10.0.0.1]", None, true),
            ("wiki.example", Some(&["10.9.9.9"]), true),
            ("www.example", Some(&["93.184.216.34"]), false),
        ];
        for (host, addrs, want) in cases {
            let addrs: Option<Vec<IpAddr>> =
                addrs.map(|a| a.iter().map(|x| x.parse().unwrap()).collect());
            assert_eq!(list.matches(&h(host), addrs.as_deref()), *want, "{host}");
        }
        assert!(np("*").matches(&h("anything.example"), None));
        assert!(NoProxy::parse(&[]).unwrap().is_empty());
        let err = NoProxy::parse(&["corp.example,bad name!,10.0.0.0/33".into()]).unwrap_err();
        assert!(
            err.contains("\"bad name!\"") && err.contains("10.0.0.0/33"),
            "{err}"
        );
    }

    #[test]
    fn the_parent_url_is_http_host_and_port_without_credentials() {
        let ok = ParentConfig::new(
            "http://Parent.Corp.example:3128",
            None,
            NoProxy::default(),
            ParentDns::Local,
        )
        .unwrap();
        assert_eq!(ok.address(), "parent.corp.example:3128");
        let v6 = ParentConfig::new(
            "http://[::1]:8080/",
            None,
            NoProxy::default(),
            ParentDns::Local,
        )
        .unwrap();
        assert_eq!(v6.address(), "[::1]:8080");
        for (url, says) in [
            ("https://p:3128", "only http://"),
            ("p:3128", "no scheme"),
            ("http://user:pw@p:3128", "--upstream-proxy-credentials"),
            ("http://p", "no port"),
            ("http://p:3128/x", "no path"),
            ("http://bad host:3128", "not a URL"),
        ] {
            let e = ParentConfig::new(url, None, NoProxy::default(), ParentDns::Local)
                .unwrap_err()
                .to_string();
            assert!(e.contains(says), "{url}: {e}");
        }
    }

    #[test]
    fn credentials_come_from_a_private_file_and_never_show_in_debug() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("parent.cred");
        std::fs::write(&path, "svc-socialgate:s3cret:with:colons\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = read_credentials(&path).unwrap_err().to_string();
        assert!(e.contains("mode 0644") && e.contains("chmod 600"), "{e}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let v = read_credentials(&path).unwrap();
        use base64::Engine;
        let want =
            base64::engine::general_purpose::STANDARD.encode("svc-socialgate:s3cret:with:colons");
        assert_eq!(v.to_str().unwrap(), format!("Basic {want}"));
        assert!(v.is_sensitive());
        let cfg = ParentConfig::new(
            "http://p:3128",
            Some(&path),
            NoProxy::default(),
            ParentDns::Local,
        )
        .unwrap();
        let debug = format!("{cfg:?}");
        assert!(
            !debug.contains("s3cret") && !debug.contains(&want) && debug.contains("redacted"),
            "{debug}"
        );
        std::fs::write(&path, "no colon here\n").unwrap();
        assert!(matches!(
            read_credentials(&path),
            Err(ParentConfigError::Format { .. })
        ));
        std::fs::write(&path, ":empty-user\n").unwrap();
        assert!(matches!(
            read_credentials(&path),
            Err(ParentConfigError::Format { .. })
        ));
    }
}
