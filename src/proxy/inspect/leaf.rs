//! Leaf certificates for inspected tunnels: minted on demand, signed by the
//! company CA, kept in a bounded cache.
//!
//! Every leaf names exactly one host (SAN), has the serverAuth extended key
//! usage, a random serial, and a short validity backdated an hour for
//! clients whose clocks run late. Leaves share one ECDSA P-256 key pair,
//! replaced every [`KEY_ROTATION`]: a new key for new leaves, so a key that
//! leaks is useful only briefly. The cache is an LRU bounded by
//! `inspection.leaf_cache`; a leaf is renewed once half its validity (at
//! most a day before expiry) has passed. Minting is a P-256 signature and
//! some DER (well under a millisecond), done inline.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use lru::LruCache;
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;

use crate::ca::CompanyCa;

/// How often the shared leaf key is replaced.
pub const KEY_ROTATION: Duration = Duration::from_secs(3600);
/// Leaves start this long before they were made (clock skew).
const BACKDATE: Duration = Duration::from_secs(3600);

/// Why no leaf could be made.
#[derive(Debug, thiserror::Error)]
pub enum LeafError {
    #[error("cannot make a certificate for {name:?}: {detail}")]
    Mint { name: String, detail: String },
}

struct LeafKey {
    pair: KeyPair,
    signer: Arc<dyn rustls::sign::SigningKey>,
    born: Instant,
}

struct Cached {
    key: Arc<CertifiedKey>,
    renew_at: Instant,
}

/// Mints and caches leaves.
pub struct Leaves {
    ca: CompanyCa,
    provider: Arc<CryptoProvider>,
    validity: Duration,
    key: RwLock<LeafKey>,
    cache: Mutex<LruCache<String, Cached>>,
    minted: std::sync::atomic::AtomicU64,
}

impl Leaves {
    pub fn new(
        ca: CompanyCa,
        provider: Arc<CryptoProvider>,
        validity: Duration,
        capacity: usize,
    ) -> Result<Leaves, LeafError> {
        let key = new_key(&provider)?;
        let capacity = NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN);
        Ok(Leaves {
            ca,
            provider,
            validity,
            key: RwLock::new(key),
            cache: Mutex::new(LruCache::new(capacity)),
            minted: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// The leaf for `name` (a DNS name, as the ClientHello sent it), from the
    /// cache or newly minted.
    pub fn get(&self, name: &str) -> Result<Arc<CertifiedKey>, LeafError> {
        let now = Instant::now();
        if let Some(c) = self.lock().get(name) {
            if now < c.renew_at {
                return Ok(c.key.clone());
            }
        }
        let key = self.mint(name)?;
        // Renewed a day before expiry, or at half-life for short validities.
        let renew_in = self.validity - (self.validity / 2).min(Duration::from_secs(86_400));
        self.lock().put(
            name.to_string(),
            Cached {
                key: key.clone(),
                renew_at: now + renew_in,
            },
        );
        Ok(key)
    }

    /// Leaves in the cache now.
    pub fn cached(&self) -> usize {
        self.lock().len()
    }

    /// Leaves minted since start.
    pub fn minted(&self) -> u64 {
        self.minted.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The company CA's subject, for logs.
    pub fn ca_subject(&self) -> &str {
        &self.ca.info.subject
    }

    /// The company CA's certificate.
    pub fn ca_der(&self) -> &CertificateDer<'static> {
        &self.ca.cert_der
    }

    /// Makes a new leaf for `name`, signed by the CA, with the current key.
    pub fn mint(&self, name: &str) -> Result<Arc<CertifiedKey>, LeafError> {
        let err = |detail: String| LeafError::Mint {
            name: name.to_string(),
            detail,
        };
        self.rotate_if_due()?;
        let mut params = CertificateParams::default();
        let dns = name
            .to_string()
            .try_into()
            .map_err(|e: rcgen::Error| err(e.to_string()))?;
        params.subject_alt_names = vec![SanType::DnsName(dns)];
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name.to_string());
        params.distinguished_name = dn;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(crate::ca::random_serial());
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - BACKDATE;
        params.not_after = now + self.validity;
        let (cert, signer) = {
            let key = self.key.read().unwrap_or_else(|e| e.into_inner());
            let cert = params
                .signed_by(&key.pair, &self.ca.issuer)
                .map_err(|e| err(e.to_string()))?;
            (cert, key.signer.clone())
        };
        self.minted
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let chain = vec![cert.der().clone(), self.ca.cert_der.clone()];
        Ok(Arc::new(CertifiedKey::new(chain, signer)))
    }

    fn rotate_if_due(&self) -> Result<(), LeafError> {
        let due = {
            let key = self.key.read().unwrap_or_else(|e| e.into_inner());
            key.born.elapsed() >= KEY_ROTATION
        };
        if due {
            let fresh = new_key(&self.provider)?;
            let mut key = self.key.write().unwrap_or_else(|e| e.into_inner());
            if key.born.elapsed() >= KEY_ROTATION {
                *key = fresh;
            }
        }
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<String, Cached>> {
        // A panic while holding the lock leaves only a cache behind.
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn new_key(provider: &CryptoProvider) -> Result<LeafKey, LeafError> {
    let err = |detail: String| LeafError::Mint {
        name: "(leaf key)".into(),
        detail,
    };
    let pair =
        KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| err(e.to_string()))?;
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pair.serialize_der()));
    let signer = provider
        .key_provider
        .load_private_key(der)
        .map_err(|e| err(e.to_string()))?;
    Ok(LeafKey {
        pair,
        signer,
        born: Instant::now(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(capacity: usize) -> (tempfile::TempDir, Leaves) {
        let dir = tempfile::tempdir().unwrap();
        let paths = crate::ca::CaPaths {
            cert: dir.path().join("ca.pem"),
            key: dir.path().join("ca.key"),
        };
        crate::ca::init(&paths, Some("Test Corp")).unwrap();
        let ca = CompanyCa::load(&paths).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let l = Leaves::new(ca, provider, Duration::from_secs(7 * 86_400), capacity).unwrap();
        (dir, l)
    }

    #[test]
    fn a_leaf_names_its_host_and_chains_to_the_ca() {
        let (_d, l) = leaves(10);
        let key = l.get("www.tiktok.com").unwrap();
        assert_eq!(key.cert.len(), 2, "leaf and CA");
        assert_eq!(&key.cert[1], l.ca_der());
        let (_, cert) = x509_parser::parse_x509_certificate(&key.cert[0]).unwrap();
        let san = cert.subject_alternative_name().unwrap().unwrap();
        assert_eq!(
            format!("{:?}", san.value.general_names),
            r#"[DNSName("www.tiktok.com")]"#
        );
        let eku = cert.extended_key_usage().unwrap().unwrap();
        assert!(eku.value.server_auth);
        assert!(!cert.is_ca());
        // Backdated for skew, valid for the configured days.
        let nb = cert.validity().not_before.timestamp();
        let na = cert.validity().not_after.timestamp();
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        assert!(now - nb >= 3500, "backdated about an hour");
        assert!((na - now - 7 * 86_400).abs() < 60, "seven days");
        // A webpki verifier that trusts the CA accepts it for the name.
        let mut roots = rustls::RootCertStore::empty();
        roots.add(l.ca_der().clone()).unwrap();
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .unwrap();
        let name = rustls::pki_types::ServerName::try_from("www.tiktok.com").unwrap();
        rustls::client::danger::ServerCertVerifier::verify_server_cert(
            &*verifier,
            &key.cert[0],
            &key.cert[1..],
            &name,
            &[],
            rustls::pki_types::UnixTime::now(),
        )
        .expect("the leaf verifies against the company CA");
    }

    #[test]
    fn every_leaf_has_its_own_serial_and_the_cache_is_bounded() {
        let (_d, l) = leaves(3);
        let serial = |k: &CertifiedKey| {
            let (_, c) = x509_parser::parse_x509_certificate(&k.cert[0]).unwrap();
            c.raw_serial().to_vec()
        };
        let a = l.mint("a.example").unwrap();
        let b = l.mint("a.example").unwrap();
        assert_ne!(serial(&a), serial(&b), "a reused serial breaks Firefox");
        for n in [
            "a.example",
            "b.example",
            "c.example",
            "d.example",
            "e.example",
        ] {
            l.get(n).unwrap();
        }
        assert_eq!(l.cached(), 3, "least recently used leaves are evicted");
        let before = l.minted();
        l.get("e.example").unwrap();
        assert_eq!(l.minted(), before, "a cached leaf is not minted again");
        l.get("a.example").unwrap();
        assert_eq!(l.minted(), before + 1, "an evicted leaf is minted again");
    }
}
