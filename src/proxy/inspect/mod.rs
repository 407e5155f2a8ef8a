//! TLS inspection (Tier B): what socialgate needs to decrypt a tunnel that
//! the policy core said to inspect.
//!
//! [`Inspector`] holds the company CA and its [`leaf::Leaves`], the TLS
//! client settings toward origins (verified against Mozilla's roots, the
//! operating system's store and any extra CA the admin names; never
//! unverified), and the hosts learned to pin their certificates. The
//! connection itself is run by [`conn`]: upstream TLS first (offering the
//! client's ALPN), then TLS toward the client with exactly the protocol the
//! origin chose, then hyper serving h1 or h2 whose every request goes
//! through the same request pipeline as plain HTTP ([`super::handler`]).
//!
//! This module decides nothing: whether to inspect is the policy core's
//! verdict ([`crate::policy::Inspect`]).

pub mod conn;
mod counted;
pub mod leaf;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::CertificateDer;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::ca::{CaError, CaPaths, CompanyCa};

pub use leaf::Leaves;

/// The application protocols socialgate can serve once decrypted.
pub const H2: &[u8] = b"h2";
pub const HTTP11: &[u8] = b"http/1.1";

/// Learned pinned hosts kept at most; expired entries are dropped first.
const MAX_PINNED: usize = 10_000;

/// Why inspection cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error(transparent)]
    Ca(#[from] CaError),
    #[error(transparent)]
    Leaf(#[from] leaf::LeafError),
    #[error("cannot read the upstream CA file {path}: {detail}; it must hold PEM certificates (--upstream-ca or inspection.upstream_ca)")]
    UpstreamCa { path: PathBuf, detail: String },
    #[error("TLS setup: {0}")]
    Tls(String),
}

/// What the inspector is built from.
#[derive(Debug, Clone)]
pub struct InspectConfig {
    pub ca: CaPaths,
    /// Extra PEM roots for origins (tests, internal CAs).
    pub upstream_ca: Vec<PathBuf>,
    pub leaf_validity: Duration,
    pub leaf_cache: usize,
}

/// Everything an inspected tunnel needs; built once at start.
pub struct Inspector {
    pub leaves: Leaves,
    provider: Arc<CryptoProvider>,
    /// Toward origins, one per ALPN offer (the client's, filtered).
    upstream: HashMap<Vec<Vec<u8>>, Arc<ClientConfig>>,
    /// Toward clients: cloned per connection with its leaf and protocol;
    /// the clones share the session cache and ticketer (resumption).
    server_base: Arc<ServerConfig>,
    pinned: Mutex<HashMap<String, Instant>>,
    /// How many roots origins are verified against (for the start-up log).
    pub roots: usize,
}

impl Inspector {
    pub fn new(cfg: &InspectConfig) -> Result<Inspector, InspectError> {
        let ca = CompanyCa::load(&cfg.ca)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let leaves = Leaves::new(ca, provider.clone(), cfg.leaf_validity, cfg.leaf_cache)?;

        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let native = rustls_native_certs::load_native_certs();
        for e in &native.errors {
            tracing::warn!(error = %e, "a system CA certificate could not be read; continuing without it");
        }
        let (_added, ignored) = roots.add_parsable_certificates(native.certs);
        if ignored > 0 {
            tracing::debug!(ignored, "system CA certificates rustls cannot use");
        }
        for path in &cfg.upstream_ca {
            use rustls::pki_types::pem::PemObject;
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .and_then(|it| it.collect::<Result<_, _>>())
                .map_err(|e| InspectError::UpstreamCa {
                    path: path.clone(),
                    detail: e.to_string(),
                })?;
            if certs.is_empty() {
                return Err(InspectError::UpstreamCa {
                    path: path.clone(),
                    detail: "no certificate in it".into(),
                });
            }
            for c in certs {
                roots.add(c).map_err(|e| InspectError::UpstreamCa {
                    path: path.clone(),
                    detail: e.to_string(),
                })?;
            }
        }
        let root_count = roots.len();
        let roots = Arc::new(roots);
        let offers: [&[&[u8]]; 5] = [&[], &[H2], &[HTTP11], &[H2, HTTP11], &[HTTP11, H2]];
        let mut upstream = HashMap::new();
        for offer in offers {
            let mut c = ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .map_err(|e| InspectError::Tls(e.to_string()))?
                .with_root_certificates(roots.clone())
                .with_no_client_auth();
            c.alpn_protocols = offer.iter().map(|p| p.to_vec()).collect();
            upstream.insert(c.alpn_protocols.clone(), Arc::new(c));
        }

        let mut server = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| InspectError::Tls(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(NoCert));
        server.session_storage = rustls::server::ServerSessionMemoryCache::new(16 * 1024);
        server.ticketer =
            rustls::crypto::ring::Ticketer::new().map_err(|e| InspectError::Tls(e.to_string()))?;
        Ok(Inspector {
            leaves,
            provider,
            upstream,
            server_base: Arc::new(server),
            pinned: Mutex::new(HashMap::new()),
            roots: root_count,
        })
    }

    /// The client settings toward an origin, offering the client's ALPN list
    /// restricted to what socialgate serves (in the client's order).
    pub fn client_config(&self, client_alpn: &[Vec<u8>]) -> Arc<ClientConfig> {
        let offer: Vec<Vec<u8>> = client_alpn
            .iter()
            .filter(|p| p.as_slice() == H2 || p.as_slice() == HTTP11)
            .take(2)
            .cloned()
            .collect();
        match self.upstream.get(&offer) {
            Some(c) => c.clone(),
            // Only a client that offers the same protocol twice gets here.
            None => self.upstream[&Vec::new()].clone(),
        }
    }

    /// The server settings toward the client: `leaf`, and exactly `alpn`
    /// (the origin's choice) or none.
    pub fn server_config(&self, leaf: Arc<CertifiedKey>, alpn: Option<&[u8]>) -> Arc<ServerConfig> {
        let mut c = (*self.server_base).clone();
        c.cert_resolver = Arc::new(Fixed(leaf));
        c.alpn_protocols = alpn.map(|p| vec![p.to_vec()]).unwrap_or_default();
        Arc::new(c)
    }

    pub fn provider(&self) -> &Arc<CryptoProvider> {
        &self.provider
    }

    /// True when the client refused our certificate for `host` within `for_`.
    pub fn is_pinned(&self, host: &str) -> bool {
        let now = Instant::now();
        self.lock_pinned()
            .get(host)
            .is_some_and(|until| *until > now)
    }

    /// Remembers that the client refused our certificate for `host`: it
    /// passes through undecrypted for `for_`.
    pub fn learn_pinned(&self, host: &str, for_: Duration) {
        let now = Instant::now();
        let mut map = self.lock_pinned();
        if map.len() >= MAX_PINNED {
            map.retain(|_, until| *until > now);
        }
        if map.len() < MAX_PINNED || map.contains_key(host) {
            map.insert(host.to_string(), now + for_);
        } else {
            tracing::warn!(host, "too many learned pinned hosts; not remembering this one (add it to inspection.never.domains)");
        }
    }

    /// Learned pinned hosts still in force.
    pub fn pinned_hosts(&self) -> usize {
        let now = Instant::now();
        self.lock_pinned().values().filter(|u| **u > now).count()
    }

    fn lock_pinned(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        // A panic while holding the lock leaves only this map behind.
        self.pinned.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The base server config's resolver: never used, each connection gets its
/// own [`Fixed`] one.
#[derive(Debug)]
struct NoCert;

impl ResolvesServerCert for NoCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        None
    }
}

/// One connection's leaf, made before the handshake for the name the
/// ClientHello sent.
#[derive(Debug)]
struct Fixed(Arc<CertifiedKey>);

impl ResolvesServerCert for Fixed {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}
