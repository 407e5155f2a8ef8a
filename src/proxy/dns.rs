//! Name resolution for upstream destinations. No policy.
//!
//! `--resolve` pins come first; everything else goes to an asynchronous
//! DNS resolver (hickory) that asks the name servers of `--dns-server`
//! (default: those in /etc/resolv.conf, with its search list, and
//! /etc/hosts first), never the system resolver on blocking threads. Both
//! A and AAAA records are asked for, so the destination stage sees every
//! address a name has.
//!
//! Answers are cached for their TTL (at most [`MAX_TTL`]); names that do
//! not exist are cached too (negative caching, [`NEGATIVE_MIN_TTL`] to
//! [`NEGATIVE_MAX_TTL`]), so a flood of requests for a bogus name costs one
//! query, not one per request. At most `--dns-max-in-flight` lookups run at
//! once; the rest wait for a turn within the same time limit
//! (`--connect-timeout`), so a slow DNS server cannot pile up unbounded
//! work. A small front cache answers repeated names without a lock on the
//! resolver's own cache.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_resolver::config::{
    LookupIpStrategy, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::TokioResolver;
use tokio::sync::Semaphore;

use super::upstream::UpstreamError;

/// Answers are kept at most this long, whatever their TTL.
pub const MAX_TTL: Duration = Duration::from_secs(3600);
/// A name that does not exist is remembered at least this long ...
pub const NEGATIVE_MIN_TTL: Duration = Duration::from_secs(5);
/// ... and at most this long.
pub const NEGATIVE_MAX_TTL: Duration = Duration::from_secs(60);
/// Names kept in the front cache at most; it is cleared when full.
const FRONT_MAX: usize = 10_000;

/// How names are resolved (`--dns-server`, `--dns-max-in-flight`).
#[derive(Debug, Clone)]
pub struct DnsConfig {
    /// Name servers to ask; empty: those of /etc/resolv.conf.
    pub servers: Vec<SocketAddr>,
    /// Lookups that may be in flight at once.
    pub max_in_flight: usize,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            servers: Vec::new(),
            max_in_flight: 256,
        }
    }
}

/// Why the resolver could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("cannot set up name resolution: {0}; name the DNS servers with --dns-server IP[:PORT]")]
pub struct DnsSetupError(String);

/// name -> (addresses, valid until)
type Front = HashMap<String, (Arc<[IpAddr]>, Instant)>;

/// Resolves names: `--resolve` overrides first, then DNS.
pub struct Resolver {
    overrides: HashMap<String, IpAddr>,
    timeout: Duration,
    dns: TokioResolver,
    in_flight: Arc<Semaphore>,
    front: Mutex<Front>,
    metrics: Option<Arc<crate::metrics::Metrics>>,
}

impl Resolver {
    /// A resolver that asks `config.servers` (or the system's), each
    /// lookup bounded by `timeout`.
    pub fn new(
        overrides: HashMap<String, IpAddr>,
        timeout: Duration,
        config: &DnsConfig,
        metrics: Option<Arc<crate::metrics::Metrics>>,
    ) -> Result<Resolver, DnsSetupError> {
        let provider = TokioRuntimeProvider::default();
        let mut builder = if config.servers.is_empty() {
            TokioResolver::builder(provider)
                .map_err(|e| DnsSetupError(format!("cannot read /etc/resolv.conf: {e}")))?
        } else {
            let mut rc = ResolverConfig::default();
            for s in &config.servers {
                let mut ns = NameServerConfig::udp_and_tcp(s.ip());
                for c in &mut ns.connections {
                    c.port = s.port();
                }
                rc.add_name_server(ns);
            }
            TokioResolver::builder_with_config(rc, provider)
        };
        let opts: &mut ResolverOpts = builder.options_mut();
        opts.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
        opts.timeout = timeout;
        opts.attempts = 1;
        opts.cache_size = 10_000;
        opts.positive_max_ttl = Some(MAX_TTL);
        opts.negative_min_ttl = Some(NEGATIVE_MIN_TTL);
        opts.negative_max_ttl = Some(NEGATIVE_MAX_TTL);
        opts.use_hosts_file = ResolveHosts::Auto;
        let dns = builder.build().map_err(|e| DnsSetupError(e.to_string()))?;
        Ok(Resolver {
            overrides,
            timeout,
            dns,
            in_flight: Arc::new(Semaphore::new(config.max_in_flight.max(1))),
            front: Mutex::new(HashMap::new()),
            metrics,
        })
    }

    fn count(&self, result: &'static str) {
        if let Some(m) = &self.metrics {
            m.dns_lookup(result);
        }
    }

    /// The addresses of `name` (a DNS name, not an IP literal).
    pub async fn resolve(&self, name: &str) -> Result<Arc<[IpAddr]>, UpstreamError> {
        if let Some(ip) = self.overrides.get(name) {
            return Ok(Arc::from([*ip]));
        }
        // `127.1`, `2130706433`, `0xa9.0xfe.0xa9.0xfe`: what the system's
        // resolver (and every browser) reads as an IPv4 address is that
        // address, never a question to DNS.
        if let Some(ip) = numeric_ipv4(name) {
            return Ok(Arc::from([IpAddr::V4(ip)]));
        }
        if let Some((addrs, until)) = self.lock().get(name) {
            if Instant::now() < *until {
                return Ok(addrs.clone());
            }
        }
        // Boxed: the resolver's future is large, and every request's
        // future would carry it even when the answer is cached.
        Box::pin(self.look_up(name)).await
    }

    /// Asks DNS (the front cache missed).
    async fn look_up(&self, name: &str) -> Result<Arc<[IpAddr]>, UpstreamError> {
        let now = Instant::now();
        let looked_up = tokio::time::timeout(self.timeout, async {
            // Waiting for a turn counts against the same time limit.
            let _turn = self.in_flight.acquire().await;
            self.dns.lookup_ip(name).await
        })
        .await;
        let lookup = match looked_up {
            Err(_) => {
                self.count("timeout");
                return Err(UpstreamError::Timeout(format!("resolving {name}")));
            }
            Ok(Err(e)) if e.is_no_records_found() => {
                self.count("no-such-name");
                return Err(UpstreamError::NoSuchName {
                    host: name.to_string(),
                });
            }
            Ok(Err(hickory_resolver::net::NetError::Timeout)) => {
                self.count("timeout");
                return Err(UpstreamError::Timeout(format!("resolving {name}")));
            }
            Ok(Err(e)) => {
                self.count("error");
                return Err(UpstreamError::Resolve {
                    host: name.to_string(),
                    source: std::io::Error::other(e.to_string()),
                });
            }
            Ok(Ok(l)) => l,
        };
        let addrs: Vec<IpAddr> = lookup.iter().collect();
        if addrs.is_empty() {
            self.count("no-such-name");
            return Err(UpstreamError::NoSuchName {
                host: name.to_string(),
            });
        }
        self.count("ok");
        let addrs: Arc<[IpAddr]> = Arc::from(addrs);
        let until = lookup.valid_until().min(now + MAX_TTL);
        let mut front = self.lock();
        if front.len() >= FRONT_MAX {
            front.clear();
        }
        front.insert(name.to_string(), (addrs.clone(), until));
        Ok(addrs)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Front> {
        // A panic while holding this lock leaves only a cache behind.
        self.front.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::ErrorKind;

    #[tokio::test]
    async fn pinned_names_win_and_answers_are_cached() {
        let pins = HashMap::from([("www.example.org".to_string(), "127.0.0.9".parse().unwrap())]);
        let r = Resolver::new(pins, Duration::from_secs(5), &DnsConfig::default(), None).unwrap();
        let pinned = r.resolve("www.example.org").await.unwrap();
        assert_eq!(&pinned[..], &["127.0.0.9".parse::<IpAddr>().unwrap()]);
        // localhost comes from /etc/hosts; the second answer is the cached one.
        let first = r.resolve("localhost").await.unwrap();
        let second = r.resolve("localhost").await.unwrap();
        assert!(first.iter().all(|a| a.is_loopback()), "{first:?}");
        assert!(
            Arc::ptr_eq(&first, &second),
            "the second lookup was not cached"
        );
        // Refused by the resolver, or timed out where no resolver answers.
        let err = r.resolve("no-such-host.invalid").await.unwrap_err();
        assert!(
            matches!(
                err.kind(),
                ErrorKind::UpstreamResolve | ErrorKind::UpstreamTimeout
            ),
            "{err}"
        );
    }
}

/// The IPv4 address a numeric host names, read by the C library's
/// `inet_aton` (decimal, octal and hex parts, 1 to 4 of them), the same
/// reading `getaddrinfo` gives it; `None` for anything else.
pub fn numeric_ipv4(name: &str) -> Option<std::net::Ipv4Addr> {
    if !name
        .bytes()
        .all(|b| b.is_ascii_hexdigit() || b == b'.' || b == b'x' || b == b'X')
    {
        return None;
    }
    extern "C" {
        // glibc's and musl's; the `libc` crate does not bind it.
        fn inet_aton(cp: *const libc::c_char, inp: *mut libc::in_addr) -> libc::c_int;
    }
    let c = std::ffi::CString::new(name).ok()?;
    let mut addr = libc::in_addr { s_addr: 0 };
    // SAFETY: `c` is a NUL-terminated string and `addr` a valid in_addr.
    let ok = unsafe { inet_aton(c.as_ptr(), &mut addr) };
    (ok == 1).then(|| std::net::Ipv4Addr::from(u32::from_be(addr.s_addr)))
}

#[cfg(test)]
mod numeric_tests {
    use super::numeric_ipv4;

    #[test]
    fn numeric_hosts_read_as_the_system_reads_them() {
        let ip = |s: &str| numeric_ipv4(s).map(|a| a.to_string());
        assert_eq!(
            ip("0xa9.0xfe.0xa9.0xfe").as_deref(),
            Some("169.254.169.254")
        );
        assert_eq!(ip("127.1").as_deref(), Some("127.0.0.1"));
        assert_eq!(ip("2130706433").as_deref(), Some("127.0.0.1"));
        assert_eq!(ip("0177.0.0.1").as_deref(), Some("127.0.0.1"));
        assert_eq!(ip("example.com"), None);
        assert_eq!(ip("1.2.3.4.5"), None);
        assert_eq!(ip("deadbeef"), None);
    }
}
