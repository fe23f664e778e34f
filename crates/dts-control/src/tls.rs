//! HTTPS for the API listener: a certificate and key from PEM files,
//! re-read when either file changes, so a renewed certificate (certbot,
//! cert-manager) is served without a restart; optionally, client
//! certificates required and verified against a CA (mutual TLS).

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// How often the files are checked for a change.
const RELOAD_CHECK: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("TLS certificate file {path}: {reason}")]
    Cert { path: PathBuf, reason: String },
    #[error("TLS key file {path}: {reason}")]
    Key { path: PathBuf, reason: String },
    #[error("TLS certificate {cert} and key {key} do not go together: {reason}")]
    Mismatch { cert: PathBuf, key: PathBuf, reason: String },
    #[error("TLS client CA file {path}: {reason}")]
    ClientCa { path: PathBuf, reason: String },
}

/// A verifier that accepts only clients with a certificate from `ca`.
fn client_verifier(ca: &Path) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, TlsError> {
    let err = |reason: String| TlsError::ClientCa { path: ca.into(), reason };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(|e| err(e.to_string()))? {
        roots.add(cert.map_err(|e| err(e.to_string()))?).map_err(|e| err(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(err("holds no CERTIFICATE block".into()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| err(e.to_string()))
}

fn load(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| TlsError::Cert { path: cert.into(), reason: e.to_string() })?;
    if chain.is_empty() {
        return Err(TlsError::Cert { path: cert.into(), reason: "holds no CERTIFICATE block".into() });
    }
    let der =
        PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key { path: key.into(), reason: e.to_string() })?;
    let provider = rustls::crypto::ring::default_provider();
    let certified = CertifiedKey::from_der(chain, der, &provider).map_err(|e| TlsError::Mismatch {
        cert: cert.into(),
        key: key.into(),
        reason: e.to_string(),
    })?;
    Ok(Arc::new(certified))
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Serves the current certificate; a background thread swaps in a new one
/// when the files change and both parse (a half-written pair keeps the old).
#[derive(Debug)]
struct Reloading {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for Reloading {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok().map(|c| Arc::clone(&c))
    }
}

/// A rustls server configuration for `cert` and `key` (PEM), offering
/// HTTP/2 and HTTP/1.1, and with `client_ca` requiring a client certificate
/// it signed. Fails at start when the files are unusable.
pub fn server_config(cert: &Path, key: &Path, client_ca: Option<&Path>) -> Result<rustls::ServerConfig, TlsError> {
    let clients = client_ca.map(client_verifier).transpose()?;
    let resolver = Arc::new(Reloading { current: RwLock::new(load(cert, key)?) });
    let watched = Arc::downgrade(&resolver);
    let (cert, key) = (cert.to_owned(), key.to_owned());
    let mut seen = (modified(&cert), modified(&key));
    std::thread::Builder::new()
        .name("dts-tls-reload".into())
        .spawn(move || loop {
            std::thread::sleep(RELOAD_CHECK);
            let Some(resolver) = watched.upgrade() else { return };
            let now = (modified(&cert), modified(&key));
            if now == seen {
                continue;
            }
            match load(&cert, &key) {
                Ok(fresh) => {
                    if let Ok(mut current) = resolver.current.write() {
                        *current = fresh;
                    }
                    seen = now;
                    tracing::info!(cert = %cert.display(), "TLS certificate reloaded");
                }
                Err(e) => {
                    tracing::warn!(error = %e, "TLS certificate changed but cannot be loaded; serving the old one")
                }
            }
        })
        .map_err(|e| TlsError::Cert { path: PathBuf::new(), reason: format!("cannot start the reload thread: {e}") })?;
    let builder = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Cert { path: PathBuf::new(), reason: e.to_string() })?;
    let mut config = match clients {
        Some(verifier) => builder.with_client_cert_verifier(verifier),
        None => builder.with_no_client_auth(),
    }
    .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}
