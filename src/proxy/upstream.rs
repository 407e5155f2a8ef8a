//! Dialing upstreams, with the destination checks that keep socialgate from
//! being used against its own network.
//!
//! Every upstream TCP connection, pooled or tunnelled, is made by
//! [`Dialer::dial`]: resolve (or take the `--resolve` override), refuse
//! addresses that are socialgate's own listeners or non-public unless the
//! policy's `destinations.allow` lists them, then connect with a timeout.
//! Checking the resolved address (not the name) defeats DNS names that point
//! at internal addresses. A refusal here is a typed [`DialError`], which the
//! handler turns into a 403 with the right reason.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpStream;

use crate::policy::canonical_ip;
use crate::reload::PolicyHandle;

/// Why no upstream connection was made.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    #[error("cannot resolve {host}: {source}")]
    Resolve {
        host: String,
        source: std::io::Error,
    },
    #[error("{host} resolves to no address")]
    NoAddress { host: String },
    #[error("destination {0} is not public and not allowed by the policy")]
    Private(IpAddr),
    #[error("destination {0} is this proxy itself")]
    SelfLoop(SocketAddr),
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("timed out connecting to {0}")]
    Timeout(String),
}

impl DialError {
    /// A short fixed label for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            DialError::Resolve { .. } | DialError::NoAddress { .. } => "upstream-resolve",
            DialError::Private(_) => "destination-private",
            DialError::SelfLoop(_) => "destination-self",
            DialError::Connect { .. } => "upstream-connect",
            DialError::Timeout(_) => "upstream-timeout",
        }
    }
}

/// Makes upstream connections.
pub struct Dialer {
    policy: Arc<PolicyHandle>,
    /// socialgate's own listening addresses, never a destination.
    listen_addrs: Vec<SocketAddr>,
    resolve: HashMap<String, IpAddr>,
    connect_timeout: Duration,
    metrics: Option<Arc<crate::metrics::Metrics>>,
}

/// An established upstream connection and how long it took.
pub struct Dialed {
    pub stream: TcpStream,
    pub addr: SocketAddr,
    pub connect_time: Duration,
}

impl Dialer {
    pub fn new(
        policy: Arc<PolicyHandle>,
        listen_addrs: Vec<SocketAddr>,
        resolve: HashMap<String, IpAddr>,
        connect_timeout: Duration,
        metrics: Option<Arc<crate::metrics::Metrics>>,
    ) -> Self {
        Self {
            policy,
            listen_addrs,
            resolve,
            connect_timeout,
            metrics,
        }
    }

    fn is_self(&self, addr: SocketAddr) -> bool {
        let ip = canonical_ip(addr.ip());
        self.listen_addrs.iter().any(|l| {
            l.port() == addr.port()
                && (canonical_ip(l.ip()) == ip
                    || l.ip().is_unspecified()
                    || ip.is_loopback()
                    || ip.is_unspecified())
        })
    }

    /// Resolves and checks `host:port` without connecting.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, DialError> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let candidates: Vec<SocketAddr> = if let Ok(ip) = bare.parse::<IpAddr>() {
            vec![SocketAddr::new(ip, port)]
        } else if let Some(ip) = self.resolve.get(bare) {
            vec![SocketAddr::new(*ip, port)]
        } else {
            let lookup = tokio::net::lookup_host((bare, port));
            match tokio::time::timeout(self.connect_timeout, lookup).await {
                Ok(Ok(addrs)) => addrs.collect(),
                Ok(Err(source)) => {
                    return Err(DialError::Resolve {
                        host: bare.to_string(),
                        source,
                    })
                }
                Err(_) => return Err(DialError::Timeout(bare.to_string())),
            }
        };
        if candidates.is_empty() {
            return Err(DialError::NoAddress {
                host: bare.to_string(),
            });
        }
        let policy = self.policy.load();
        let mut first_refusal = None;
        let allowed: Vec<SocketAddr> = candidates
            .into_iter()
            .filter(|a| {
                let refusal = if self.is_self(*a) {
                    Some(DialError::SelfLoop(*a))
                } else if !policy.destination_allowed(a.ip()) {
                    Some(DialError::Private(a.ip()))
                } else {
                    None
                };
                match refusal {
                    Some(r) => {
                        first_refusal.get_or_insert(r);
                        false
                    }
                    None => true,
                }
            })
            .collect();
        match (allowed.is_empty(), first_refusal) {
            (true, Some(r)) => Err(r),
            _ => Ok(allowed),
        }
    }

    /// Resolves, checks and connects to `host:port`.
    pub async fn dial(&self, host: &str, port: u16) -> Result<Dialed, DialError> {
        let started = Instant::now();
        let addrs = self.resolve(host, port).await?;
        let mut last = None;
        for addr in addrs {
            match tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => {
                    let _ = stream.set_nodelay(true);
                    let connect_time = started.elapsed();
                    if let Some(m) = &self.metrics {
                        m.observe_connect_time(connect_time);
                    }
                    return Ok(Dialed {
                        stream,
                        addr,
                        connect_time,
                    });
                }
                Ok(Err(source)) => last = Some(DialError::Connect { addr, source }),
                Err(_) => last = Some(DialError::Timeout(addr.to_string())),
            }
        }
        Err(last.unwrap_or(DialError::NoAddress {
            host: host.to_string(),
        }))
    }
}

/// The connector the pooled client uses: every new pooled connection goes
/// through [`Dialer::dial`].
#[derive(Clone)]
pub struct Connector {
    dialer: Arc<Dialer>,
}

impl tower_service::Service<http::Uri> for Connector {
    type Response = TokioIo<TcpStream>;
    type Error = DialError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, DialError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let dialer = self.dialer.clone();
        Box::pin(async move {
            let host = uri.host().unwrap_or_default().to_string();
            let port = uri.port_u16().unwrap_or(80);
            dialer
                .dial(&host, port)
                .await
                .map(|d| TokioIo::new(d.stream))
        })
    }
}

pub type ProxyBody = http_body_util::combinators::BoxBody<bytes::Bytes, super::body::BoxError>;

/// A keep-alive client that reuses upstream connections.
pub type PooledClient = Client<Connector, ProxyBody>;

/// `max_head` bounds the upstream's response head as `--max-header-bytes`
/// bounds the client's request head (hyper's read buffer cannot go below
/// 8 KiB; the handler measures the parsed head exactly).
pub fn pooled_client(dialer: Arc<Dialer>, idle: Duration, max_head: usize) -> PooledClient {
    Client::builder(super::executor())
        .http1_max_buf_size(max_head.max(8192))
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(idle)
        .pool_max_idle_per_host(256)
        .set_host(false)
        .build(Connector { dialer })
}

/// Finds a [`DialError`] in an error's source chain.
pub fn find_dial_error<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a DialError> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(d) = e.downcast_ref::<DialError>() {
            return Some(d);
        }
        cur = e.source();
    }
    None
}
