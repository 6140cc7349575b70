//! The kubelet server's TLS: a serving certificate from files, or one made and kept under
//! the root dir (self-signed, as the kubelet does without `--tls-cert-file`); client
//! certificates required and checked against `--client-ca-file` when it is given.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{Error, Result};

/// Where the serving certificate and key come from, and who may connect.
#[derive(Clone, Debug, Default)]
pub struct TlsFiles {
    /// Both or neither; neither: self-signed under `self_signed_dir`.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// Where a self-signed pair is kept (`kubelet.crt`, `kubelet.key`).
    pub self_signed_dir: PathBuf,
    /// Client certificates must be signed by this CA; none: anonymous clients are served.
    pub client_ca_file: Option<PathBuf>,
}

fn tls_err(what: impl std::fmt::Display) -> Error {
    Error::Tls(what.to_string())
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| tls_err(format!("read {}: {e}", path.display())))
}

/// The certificate and key PEM: the given files, or a self-signed pair for `hostname` and
/// `ips`, made once and reused.
pub fn serving_pair(
    files: &TlsFiles,
    hostname: &str,
    ips: &[IpAddr],
) -> Result<(Vec<u8>, Vec<u8>)> {
    match (&files.cert_file, &files.key_file) {
        (Some(c), Some(k)) => return Ok((read(c)?, read(k)?)),
        (None, None) => {}
        _ => {
            return Err(tls_err(
                "--tls-cert-file and --tls-private-key-file go together",
            ));
        }
    }
    let cert = files.self_signed_dir.join("kubelet.crt");
    let key = files.self_signed_dir.join("kubelet.key");
    if cert.exists() && key.exists() {
        return Ok((read(&cert)?, read(&key)?));
    }
    std::fs::create_dir_all(&files.self_signed_dir)
        .map_err(|e| tls_err(format!("create {}: {e}", files.self_signed_dir.display())))?;
    let mut names = vec![hostname.to_string(), "localhost".to_string()];
    names.extend(ips.iter().map(IpAddr::to_string));
    names.push("127.0.0.1".into());
    names.dedup();
    let mut params =
        rcgen::CertificateParams::new(names).map_err(|e| tls_err(format!("certificate: {e}")))?;
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        format!("{hostname}@{}", jiff::Timestamp::now().as_second()),
    );
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(365);
    let pair = rcgen::KeyPair::generate().map_err(|e| tls_err(format!("key: {e}")))?;
    let signed = params
        .self_signed(&pair)
        .map_err(|e| tls_err(format!("self-sign: {e}")))?;
    let (cert_pem, key_pem) = (signed.pem(), pair.serialize_pem());
    write(&key, key_pem.as_bytes(), 0o600)?;
    write(&cert, cert_pem.as_bytes(), 0o644)?;
    tracing::info!(cert = %cert.display(), "made a self-signed kubelet serving certificate");
    Ok((cert_pem.into_bytes(), key_pem.into_bytes()))
}

fn write(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, data)
        .and_then(|()| std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode)))
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| tls_err(format!("write {}: {e}", path.display())))
}

/// The rustls server configuration (HTTP/1.1 only: exec upgrades to WebSocket).
pub fn server_config(
    files: &TlsFiles,
    hostname: &str,
    ips: &[IpAddr],
) -> Result<Arc<rustls::ServerConfig>> {
    let (cert_pem, key_pem) = serving_pair(files, hostname, ips)?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| tls_err(format!("serving certificate: {e}")))?;
    if certs.is_empty() {
        return Err(tls_err("serving certificate: no certificate in PEM"));
    }
    let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|e| tls_err(format!("serving key: {e}")))?
        .ok_or_else(|| tls_err("serving key: no key in PEM"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(tls_err)?;
    let builder = match &files.client_ca_file {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in rustls_pemfile::certs(&mut read(ca)?.as_slice()) {
                let c = c.map_err(|e| tls_err(format!("client CA {}: {e}", ca.display())))?;
                roots
                    .add(c)
                    .map_err(|e| tls_err(format!("client CA {}: {e}", ca.display())))?;
            }
            if roots.is_empty() {
                return Err(tls_err(format!(
                    "client CA {}: no certificate in PEM",
                    ca.display()
                )));
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .map_err(|e| tls_err(format!("client verifier: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| tls_err(format!("serving certificate: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_pair_is_made_once() {
        let dir = tempfile::tempdir().expect("dir");
        let files = TlsFiles {
            self_signed_dir: dir.path().join("pki"),
            ..Default::default()
        };
        let ips = ["10.0.0.5".parse().expect("ip")];
        let first = serving_pair(&files, "node-a", &ips).expect("pair");
        let again = serving_pair(&files, "node-a", &ips).expect("pair");
        assert_eq!(first, again);
        server_config(&files, "node-a", &ips).expect("config");
        let half = TlsFiles {
            cert_file: Some(dir.path().join("x.crt")),
            ..files
        };
        assert!(serving_pair(&half, "node-a", &ips).is_err());
    }
}
