//! The cluster's certificates: a CA made on first start, the API server's serving certificate,
//! the admin client certificate, the kubeconfig that carries them, and the key pair that signs
//! service-account tokens.
//!
//! Everything lives in the data dir so that a restart reuses the same identity: clients that
//! trusted the CA before keep trusting it.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

use crate::{Error, Result};

/// Paths of the PKI files inside `<data-dir>/pki`.
#[derive(Clone, Debug)]
pub struct PkiPaths {
    pub dir: PathBuf,
}

impl PkiPaths {
    pub fn new(data_dir: &Path) -> Self {
        Self {
            dir: data_dir.join("pki"),
        }
    }
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }
    pub fn ca_key(&self) -> PathBuf {
        self.dir.join("ca.key")
    }
    pub fn serving_cert(&self) -> PathBuf {
        self.dir.join("apiserver.crt")
    }
    pub fn serving_key(&self) -> PathBuf {
        self.dir.join("apiserver.key")
    }
    pub fn admin_cert(&self) -> PathBuf {
        self.dir.join("admin.crt")
    }
    pub fn admin_key(&self) -> PathBuf {
        self.dir.join("admin.key")
    }
    /// The service-account token signing key (PKCS#8 PEM, 0600); the controller manager's
    /// token controller signs with it.
    pub fn sa_key(&self) -> PathBuf {
        self.dir.join("sa.key")
    }
    /// The public half of [`PkiPaths::sa_key`] (SPKI PEM, 0644); the API server verifies
    /// bearer tokens with it.
    pub fn sa_pub(&self) -> PathBuf {
        self.dir.join("sa.pub")
    }
}

/// The loaded PKI: PEM strings, ready for rustls and kubeconfig.
#[derive(Clone, Debug)]
pub struct Pki {
    pub ca_cert_pem: String,
    ca_key_pem: String,
    pub serving_cert_pem: String,
    pub serving_key_pem: String,
    pub admin_cert_pem: String,
    pub admin_key_pem: String,
    /// Private key that signs service-account tokens (PKCS#8 PEM, ECDSA P-256).
    pub sa_key_pem: String,
    /// Public key that verifies service-account tokens (SPKI PEM).
    pub sa_pub_pem: String,
}

fn pki_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Pki(format!("{what}: {e}"))
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| pki_err(&format!("read {}", path.display()), e))
}

fn write_private(path: &Path, contents: &str, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).map_err(|e| pki_err(&format!("write {}", tmp.display()), e))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))
        .map_err(|e| pki_err(&format!("chmod {}", tmp.display()), e))?;
    std::fs::rename(&tmp, path).map_err(|e| pki_err(&format!("rename {}", path.display()), e))
}

impl Pki {
    /// Loads the PKI from `paths`, creating whatever is missing. The serving certificate is
    /// re-issued when it lacks one of `sans` (so a new `--tls-san` takes effect on restart).
    pub fn ensure(paths: &PkiPaths, sans: &[String]) -> Result<Self> {
        std::fs::create_dir_all(&paths.dir)
            .map_err(|e| pki_err(&format!("create {}", paths.dir.display()), e))?;

        if !paths.ca_cert().exists() || !paths.ca_key().exists() {
            let key = KeyPair::generate().map_err(|e| pki_err("generate CA key", e))?;
            let mut params = CertificateParams::new(Vec::<String>::new())
                .map_err(|e| pki_err("CA params", e))?;
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params
                .distinguished_name
                .push(DnType::CommonName, "keelson-ca");
            params.key_usages = vec![
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::CrlSign,
                KeyUsagePurpose::DigitalSignature,
            ];
            validity(&mut params, 3650);
            let cert = params
                .self_signed(&key)
                .map_err(|e| pki_err("self-sign CA", e))?;
            write_private(&paths.ca_key(), &key.serialize_pem(), 0o600)?;
            write_private(&paths.ca_cert(), &cert.pem(), 0o644)?;
            // A new CA invalidates every certificate signed by an old one.
            for p in [
                paths.serving_cert(),
                paths.serving_key(),
                paths.admin_cert(),
                paths.admin_key(),
            ] {
                let _ = std::fs::remove_file(p);
            }
        }
        let ca_cert_pem = read(&paths.ca_cert())?;
        let ca_key_pem = read(&paths.ca_key())?;

        let ca_key = KeyPair::from_pem(&ca_key_pem).map_err(|e| pki_err("parse CA key", e))?;
        let issuer = Issuer::from_ca_cert_pem(&ca_cert_pem, ca_key)
            .map_err(|e| pki_err("parse CA certificate", e))?;

        let serving_ok = paths.serving_cert().exists()
            && paths.serving_key().exists()
            && serving_cert_covers(&read(&paths.serving_cert())?, sans);
        if !serving_ok {
            let (cert, key) = issue_serving(&issuer, sans)?;
            write_private(&paths.serving_key(), &key, 0o600)?;
            write_private(&paths.serving_cert(), &cert, 0o644)?;
        }
        if !paths.admin_cert().exists() || !paths.admin_key().exists() {
            let (cert, key) = issue_client(&issuer, "admin", &["system:masters"])?;
            write_private(&paths.admin_key(), &key, 0o600)?;
            write_private(&paths.admin_cert(), &cert, 0o644)?;
        }

        // The token signing key is independent of the CA: it is made once and kept, since
        // replacing it would invalidate every service-account token already handed out.
        if !paths.sa_key().exists() {
            let key =
                KeyPair::generate().map_err(|e| pki_err("generate service-account key", e))?;
            write_private(&paths.sa_key(), &key.serialize_pem(), 0o600)?;
            write_private(&paths.sa_pub(), &key.public_key_pem(), 0o644)?;
        } else if !paths.sa_pub().exists() {
            // The public key can always be derived again from the private one.
            let key = KeyPair::from_pem(&read(&paths.sa_key())?)
                .map_err(|e| pki_err("parse service-account key", e))?;
            write_private(&paths.sa_pub(), &key.public_key_pem(), 0o644)?;
        }

        Ok(Self {
            ca_cert_pem,
            ca_key_pem,
            serving_cert_pem: read(&paths.serving_cert())?,
            serving_key_pem: read(&paths.serving_key())?,
            admin_cert_pem: read(&paths.admin_cert())?,
            admin_key_pem: read(&paths.admin_key())?,
            sa_key_pem: read(&paths.sa_key())?,
            sa_pub_pem: read(&paths.sa_pub())?,
        })
    }

    /// Issues a client certificate for `user` in `groups`, signed by the cluster CA.
    /// Returns (certificate PEM, key PEM).
    pub fn issue_client_cert(&self, user: &str, groups: &[&str]) -> Result<(String, String)> {
        let ca_key = KeyPair::from_pem(&self.ca_key_pem).map_err(|e| pki_err("parse CA key", e))?;
        let issuer = Issuer::from_ca_cert_pem(&self.ca_cert_pem, ca_key)
            .map_err(|e| pki_err("parse CA certificate", e))?;
        issue_client(&issuer, user, groups)
    }

    /// A kubeconfig for the admin user talking to `server`.
    pub fn admin_kubeconfig(&self, server: &str) -> String {
        kubeconfig(
            server,
            &self.ca_cert_pem,
            "admin",
            &self.admin_cert_pem,
            &self.admin_key_pem,
        )
    }
}

/// Renders a kubeconfig with embedded certificate data.
pub fn kubeconfig(server: &str, ca_pem: &str, user: &str, cert_pem: &str, key_pem: &str) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: keelson\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\nusers:\n- name: {user}\n  user:\n    client-certificate-data: {cert}\n    client-key-data: {key}\ncontexts:\n- name: keelson\n  context:\n    cluster: keelson\n    user: {user}\n    namespace: default\ncurrent-context: keelson\npreferences: {{}}\n",
        ca = b64(ca_pem),
        cert = b64(cert_pem),
        key = b64(key_pem),
    )
}

/// Writes a kubeconfig with mode 0600 (it holds a private key).
pub fn write_kubeconfig(path: &Path, contents: &str) -> Result<()> {
    if let Some(parent) = path.parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent)
            .map_err(|e| pki_err(&format!("create {}", parent.display()), e))?;
    }
    write_private(path, contents, 0o600)
}

fn validity(params: &mut CertificateParams, days: i64) {
    let start = time_now() - time::Duration::hours(1);
    params.not_before = start;
    params.not_after = start + time::Duration::days(days);
}

fn time_now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

fn san(name: &str) -> Result<SanType> {
    if let Ok(ip) = name.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    Ok(SanType::DnsName(name.try_into().map_err(|e| {
        pki_err(&format!("invalid SAN {name:?}"), e)
    })?))
}

fn issue_serving(issuer: &Issuer<'_, KeyPair>, sans: &[String]) -> Result<(String, String)> {
    let key = KeyPair::generate().map_err(|e| pki_err("generate serving key", e))?;
    let mut params =
        CertificateParams::new(Vec::<String>::new()).map_err(|e| pki_err("serving params", e))?;
    params
        .distinguished_name
        .push(DnType::CommonName, "keelson-apiserver");
    params.subject_alt_names = sans.iter().map(|s| san(s)).collect::<Result<_>>()?;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    validity(&mut params, 3650);
    let cert = params
        .signed_by(&key, issuer)
        .map_err(|e| pki_err("sign serving certificate", e))?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn issue_client(
    issuer: &Issuer<'_, KeyPair>,
    user: &str,
    groups: &[&str],
) -> Result<(String, String)> {
    let key = KeyPair::generate().map_err(|e| pki_err("generate client key", e))?;
    let mut params =
        CertificateParams::new(Vec::<String>::new()).map_err(|e| pki_err("client params", e))?;
    params.distinguished_name.push(DnType::CommonName, user);
    for g in groups {
        params.distinguished_name.push(DnType::OrganizationName, *g);
    }
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    validity(&mut params, 3650);
    let cert = params
        .signed_by(&key, issuer)
        .map_err(|e| pki_err("sign client certificate", e))?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// True when the PEM certificate lists every name in `sans` as a SAN.
fn serving_cert_covers(pem: &str, sans: &[String]) -> bool {
    let Ok((_, pem)) = x509_parser::pem::parse_x509_pem(pem.as_bytes()) else {
        return false;
    };
    let Ok(cert) = pem.parse_x509() else {
        return false;
    };
    let Ok(Some(ext)) = cert.subject_alternative_name() else {
        return false;
    };
    let have: Vec<String> = ext
        .value
        .general_names
        .iter()
        .filter_map(|n| match n {
            x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_string()),
            x509_parser::extensions::GeneralName::IPAddress(b) => match b.len() {
                4 => Some(IpAddr::from(<[u8; 4]>::try_from(*b).ok()?).to_string()),
                16 => Some(IpAddr::from(<[u8; 16]>::try_from(*b).ok()?).to_string()),
                _ => None,
            },
            _ => None,
        })
        .collect();
    sans.iter().all(|s| {
        let norm = s
            .parse::<IpAddr>()
            .map(|ip| ip.to_string())
            .unwrap_or_else(|_| s.clone());
        have.contains(&norm)
    })
}

/// The user a verified client certificate names: CN is the user, each O a group.
pub fn identity_from_cert(der: &[u8]) -> Option<(String, Vec<String>)> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let user = subject
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())?
        .to_string();
    let groups = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_string))
        .collect();
    Some((user, groups))
}

/// Default SANs: localhost, loopback, the host's name and addresses, plus extras.
pub fn default_sans(extra: &[String]) -> Vec<String> {
    let mut sans = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
        "kubernetes".to_string(),
        "kubernetes.default".to_string(),
        "kubernetes.default.svc".to_string(),
        "kubernetes.default.svc.cluster.local".to_string(),
    ];
    if let Ok(h) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        let h = h.trim();
        if !h.is_empty() && h.parse::<IpAddr>().is_err() && san(h).is_ok() {
            sans.push(h.to_string());
        }
    }
    for ip in host_addresses() {
        sans.push(ip.to_string());
    }
    for e in extra {
        sans.push(e.clone());
    }
    let mut seen = std::collections::HashSet::new();
    sans.retain(|s| seen.insert(s.clone()));
    sans
}

/// The host's IPv4 addresses, read from /proc (no extra crate, no syscalls beyond reading files).
pub fn host_addresses() -> Vec<IpAddr> {
    // /proc/net/fib_trie lists local addresses as "/32 host LOCAL" entries.
    let Ok(trie) = std::fs::read_to_string("/proc/net/fib_trie") else {
        return Vec::new();
    };
    let mut out: Vec<IpAddr> = Vec::new();
    let mut last: Option<IpAddr> = None;
    for line in trie.lines() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("|-- ") {
            last = rest.parse().ok();
        } else if t.contains("/32 host LOCAL")
            && let Some(ip) = last
            && !ip.is_loopback()
            && !out.contains(&ip)
        {
            out.push(ip);
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn service_account_key_is_made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let paths = PkiPaths::new(dir.path());
        let sans = vec!["localhost".to_string()];
        let first = Pki::ensure(&paths, &sans).unwrap();
        assert!(first.sa_key_pem.contains("BEGIN PRIVATE KEY"));
        assert!(first.sa_pub_pem.contains("BEGIN PUBLIC KEY"));
        assert_eq!(mode(&paths.sa_key()), 0o600);
        assert_eq!(mode(&paths.sa_pub()), 0o644);

        let again = Pki::ensure(&paths, &sans).unwrap();
        assert_eq!(again.sa_key_pem, first.sa_key_pem);
        assert_eq!(again.sa_pub_pem, first.sa_pub_pem);

        // A lost public key is derived again from the private one, not replaced by a new pair.
        std::fs::remove_file(paths.sa_pub()).unwrap();
        let derived = Pki::ensure(&paths, &sans).unwrap();
        assert_eq!(derived.sa_key_pem, first.sa_key_pem);
        assert_eq!(derived.sa_pub_pem, first.sa_pub_pem);

        // Tokens signed with the private key verify with the public one.
        let claims = keelson_api::sa_token::LegacyClaims::new("default", "a", "uid-1", "a-token");
        let token = keelson_api::sa_token::sign(&first.sa_key_pem, &claims).unwrap();
        assert_eq!(
            keelson_api::sa_token::verify(&derived.sa_pub_pem, &token).unwrap(),
            claims
        );
    }
}
