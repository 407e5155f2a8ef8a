//! The company CA that signs the leaf certificates of inspected tunnels.
//!
//! `socialgate ca init` makes it once: an ECDSA P-256 key (mode 0600) and a
//! self-signed CA certificate (path length 0, about ten years) whose subject
//! names `settings.organization`. It never overwrites an existing CA: the
//! company's devices trust that one. `socialgate ca show` and the proxy read
//! it back with [`CompanyCa::load`], which checks that the key belongs to
//! the certificate and that the certificate is a CA. Both print the SHA-256
//! fingerprint and the SPKI hash admins compare against what devices trust.
//!
//! This module reads and writes the two files and nothing else; minting
//! leaves is [`crate::proxy::inspect`]'s job.

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SerialNumber,
};
use rustls::pki_types::CertificateDer;
use sha2::{Digest, Sha256};

/// Where the CA's two files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaPaths {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The default file names, beside the pseudonym key (current directory).
pub const DEFAULT_CERT: &str = "socialgate-ca.pem";
pub const DEFAULT_KEY: &str = "socialgate-ca.key";

/// Validity of a new CA: ten years.
const CA_DAYS: i64 = 3650;

/// Why the CA cannot be made or used.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("{path} already exists: socialgate never overwrites a CA, since devices trust it; `socialgate ca show` prints it, or move it away to make a new one")]
    Exists { path: PathBuf },
    #[error("no company CA at {path}: create it with `socialgate ca init` (or name it with --ca-cert/--ca-key or inspection.ca_cert/ca_key)")]
    Missing { path: PathBuf },
    #[error("cannot read {path}: {source}")]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("CA key file {path}: mode {mode:04o} lets group or others read the key; run `chmod 600 {path}`")]
    TooOpen { path: PathBuf, mode: u32 },
    #[error("{path} is not a {what}: {detail}")]
    Invalid {
        path: PathBuf,
        what: &'static str,
        detail: String,
    },
    #[error("the key {key} does not belong to the certificate {cert}: name the pair `socialgate ca init` wrote")]
    Mismatch { cert: PathBuf, key: PathBuf },
    #[error("{path} is not a CA certificate (no basicConstraints CA:TRUE); use the certificate `socialgate ca init` wrote")]
    NotCa { path: PathBuf },
    #[error("cannot make the CA: {0}")]
    Generate(String),
}

/// What admins compare: the CA as devices will see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaInfo {
    pub subject: String,
    pub not_before: String,
    pub not_after: String,
    /// SHA-256 of the certificate, colon-separated upper-case hex (as
    /// browsers and `openssl x509 -fingerprint -sha256` show it).
    pub fingerprint: String,
    /// SHA-256 of the SubjectPublicKeyInfo, base64 (the `sha256//` pin
    /// format of curl and HPKP).
    pub spki_sha256: String,
}

impl std::fmt::Display for CaInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "subject:      {}", self.subject)?;
        writeln!(f, "valid:        {} to {}", self.not_before, self.not_after)?;
        writeln!(f, "SHA-256:      {}", self.fingerprint)?;
        write!(f, "SPKI SHA-256: sha256//{}", self.spki_sha256)
    }
}

/// The loaded CA: its certificate (sent after each leaf) and its signer.
pub struct CompanyCa {
    pub cert_der: CertificateDer<'static>,
    pub issuer: Issuer<'static, KeyPair>,
    pub info: CaInfo,
}

impl std::fmt::Debug for CompanyCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompanyCa")
            .field("info", &self.info)
            .finish()
    }
}

/// Makes a new CA for `organization` at `paths`; refuses if either file
/// exists. The key is written first (mode 0600, never replacing a file),
/// then the certificate; if the certificate cannot be written the new key
/// is removed again, so a failed run leaves nothing behind.
pub fn init(paths: &CaPaths, organization: Option<&str>) -> Result<CaInfo, CaError> {
    for p in [&paths.key, &paths.cert] {
        if p.exists() {
            return Err(CaError::Exists { path: p.clone() });
        }
    }
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| CaError::Generate(e.to_string()))?;
    let org = organization.unwrap_or("socialgate");
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, format!("{org} TLS inspection CA"));
    params
        .distinguished_name
        .push(DnType::OrganizationName, org.to_string());
    params
        .distinguished_name
        .push(DnType::OrganizationalUnitName, "socialgate".to_string());
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(CA_DAYS);
    params.serial_number = Some(random_serial());
    let cert = params
        .self_signed(&key)
        .map_err(|e| CaError::Generate(e.to_string()))?;

    write_new(&paths.key, key.serialize_pem().as_bytes(), 0o600)?;
    if let Err(e) = write_new(&paths.cert, cert.pem().as_bytes(), 0o644) {
        let _ = std::fs::remove_file(&paths.key);
        return Err(e);
    }
    info(&paths.cert, cert.der())
}

/// Reads the CA's certificate only (for `ca show`).
pub fn show(paths: &CaPaths) -> Result<CaInfo, CaError> {
    let der = read_cert(&paths.cert)?;
    info(&paths.cert, &der)
}

impl CompanyCa {
    /// Reads and checks both files: the key must be 0600 or stricter and
    /// belong to the certificate, and the certificate must be a CA.
    pub fn load(paths: &CaPaths) -> Result<CompanyCa, CaError> {
        let cert_der = read_cert(&paths.cert)?;
        let info = info(&paths.cert, &cert_der)?;
        let (_, parsed) =
            x509_parser::parse_x509_certificate(&cert_der).map_err(|e| CaError::Invalid {
                path: paths.cert.clone(),
                what: "certificate",
                detail: e.to_string(),
            })?;
        if !parsed.is_ca() {
            return Err(CaError::NotCa {
                path: paths.cert.clone(),
            });
        }
        let spki = parsed.public_key().raw.to_vec();
        let key_pem = read_key(&paths.key)?;
        let key = KeyPair::from_pem(&key_pem).map_err(|e| CaError::Invalid {
            path: paths.key.clone(),
            what: "PEM private key",
            detail: e.to_string(),
        })?;
        if rcgen::PublicKeyData::subject_public_key_info(&key) != spki {
            return Err(CaError::Mismatch {
                cert: paths.cert.clone(),
                key: paths.key.clone(),
            });
        }
        let issuer = Issuer::from_ca_cert_der(&cert_der, key).map_err(|e| CaError::Invalid {
            path: paths.cert.clone(),
            what: "CA certificate",
            detail: e.to_string(),
        })?;
        Ok(CompanyCa {
            cert_der,
            issuer,
            info,
        })
    }
}

/// A random, positive 16-byte serial: Firefox refuses a reused
/// issuer+serial pair, so every certificate gets its own.
pub fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    // The OS random source failing is not something to carry on after.
    getrandom::fill(&mut bytes).expect("the operating system's random source works");
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    SerialNumber::from_slice(&bytes)
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), CaError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::AlreadyExists => CaError::Exists {
            path: path.to_owned(),
        },
        _ => CaError::Write {
            path: path.to_owned(),
            source,
        },
    })?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|source| CaError::Write {
            path: path.to_owned(),
            source,
        })
}

fn read(path: &Path) -> Result<String, CaError> {
    std::fs::read_to_string(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => CaError::Missing {
            path: path.to_owned(),
        },
        _ => CaError::Unreadable {
            path: path.to_owned(),
            source,
        },
    })
}

fn read_cert(path: &Path) -> Result<CertificateDer<'static>, CaError> {
    use rustls::pki_types::pem::PemObject;
    let text = read(path)?;
    CertificateDer::from_pem_slice(text.as_bytes()).map_err(|e| CaError::Invalid {
        path: path.to_owned(),
        what: "PEM certificate",
        detail: e.to_string(),
    })
}

fn read_key(path: &Path) -> Result<String, CaError> {
    #[cfg(unix)]
    if let Ok(meta) = std::fs::metadata(path) {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(CaError::TooOpen {
                path: path.to_owned(),
                mode,
            });
        }
    }
    read(path)
}

fn info(path: &Path, der: &[u8]) -> Result<CaInfo, CaError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| CaError::Invalid {
        path: path.to_owned(),
        what: "certificate",
        detail: e.to_string(),
    })?;
    let fingerprint = Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":");
    let spki = Sha256::digest(cert.public_key().raw);
    Ok(CaInfo {
        subject: cert.subject().to_string(),
        not_before: cert.validity().not_before.to_string(),
        not_after: cert.validity().not_after.to_string(),
        fingerprint,
        spki_sha256: base64::engine::general_purpose::STANDARD.encode(spki),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(dir: &Path) -> CaPaths {
        CaPaths {
            cert: dir.join("ca.pem"),
            key: dir.join("ca.key"),
        }
    }

    #[test]
    fn a_new_ca_loads_back_and_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let p = paths(dir.path());
        let made = init(&p, Some("Example Corp")).unwrap();
        assert!(made.subject.contains("Example Corp"), "{made:?}");
        let ca = CompanyCa::load(&p).unwrap();
        assert_eq!(ca.info, made);
        assert_eq!(show(&p).unwrap(), made);
        let again = init(&p, Some("Example Corp")).unwrap_err();
        assert!(matches!(again, CaError::Exists { .. }), "{again}");
        assert_eq!(CompanyCa::load(&p).unwrap().info, made, "unchanged");
    }

    #[test]
    fn a_key_that_does_not_belong_is_refused() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        init(&paths(a.path()), None).unwrap();
        init(&paths(b.path()), None).unwrap();
        let mixed = CaPaths {
            cert: a.path().join("ca.pem"),
            key: b.path().join("ca.key"),
        };
        let e = CompanyCa::load(&mixed).unwrap_err();
        assert!(matches!(e, CaError::Mismatch { .. }), "{e}");
    }

    #[cfg(unix)]
    #[test]
    fn a_readable_key_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = paths(dir.path());
        init(&p, None).unwrap();
        let mode = std::fs::metadata(&p.key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        std::fs::set_permissions(&p.key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = CompanyCa::load(&p).unwrap_err();
        assert!(e.to_string().contains("chmod 600"), "{e}");
    }
}
