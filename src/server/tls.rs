//! HTTPS and WSS without a proxy: `--tls-cert` and `--tls-key` (PEM files, as
//! certbot, acme.sh or an internal CA write them), served with rustls (aws-lc-rs).
//!
//! The certificate is reloaded without a restart, so renewals drop no call: on
//! SIGHUP, and when either file's modification time changes (checked every
//! [`WATCH_EVERY`]). A file that does not load (half written, wrong key) is reported
//! and the previous certificate stays in use.

use rustls::crypto::aws_lc_rs;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

/// How often the files' modification times are looked at.
pub const WATCH_EVERY: Duration = Duration::from_secs(2);
/// The largest certificate chain or key file read (a chain is a few KiB).
const MAX_PEM: u64 = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("{0} is larger than 1 MiB; it is not a certificate or key file")]
    TooLarge(PathBuf),
    #[error("{0} holds no PEM certificate (-----BEGIN CERTIFICATE-----)")]
    NoCertificate(PathBuf),
    #[error("{0}: {1}")]
    BadCertificate(PathBuf, String),
    #[error("{0} holds no PEM private key (PKCS#8, PKCS#1 or SEC1): {1}")]
    NoKey(PathBuf, String),
    #[error("{0}: this kind of private key cannot sign TLS handshakes: {1}")]
    BadKey(PathBuf, String),
    #[error("the key in {key} does not belong to the certificate in {cert}")]
    Mismatch { cert: PathBuf, key: PathBuf },
    #[error("TLS setup: {0}")]
    Setup(String),
}

/// The certificate handshakes are answered with; replaced on reload.
#[derive(Debug)]
struct Current(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for Current {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.read().unwrap_or_else(|p| p.into_inner()).clone())
    }
}

/// SIGHUP, caught from now on (before the server says it is up: a signal sent
/// once it has said so must not end it); None, with a warning, if it cannot be.
pub fn hangups() -> Option<tokio::signal::unix::Signal> {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch for SIGHUP");
            None
        }
    }
}

/// Without TLS, SIGHUP has nothing to reload: it is noted, and the server goes on.
pub async fn ignore_hangups(hangup: Option<tokio::signal::unix::Signal>, mut shutdown: watch::Receiver<bool>) {
    let Some(mut hangup) = hangup else { return };
    loop {
        tokio::select! {
            Some(()) = hangup.recv() => tracing::info!("SIGHUP: no TLS certificate to reload"),
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}

/// A TLS acceptor whose certificate follows its files.
pub struct Tls {
    pub acceptor: TlsAcceptor,
    current: Arc<Current>,
    cert: PathBuf,
    key: PathBuf,
    /// The files' modification times when last loaded.
    loaded: Mutex<(Option<SystemTime>, Option<SystemTime>)>,
}

fn read_pem(path: &Path) -> Result<Vec<u8>, TlsError> {
    let meta = std::fs::metadata(path).map_err(|e| TlsError::Read(path.to_owned(), e))?;
    if meta.len() > MAX_PEM {
        return Err(TlsError::TooLarge(path.to_owned()));
    }
    std::fs::read(path).map_err(|e| TlsError::Read(path.to_owned(), e))
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Reads a certificate chain and its key, and checks that they belong together.
pub fn load_pair(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&read_pem(cert)?)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::BadCertificate(cert.to_owned(), e.to_string()))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate(cert.to_owned()));
    }
    let private =
        PrivateKeyDer::from_pem_slice(&read_pem(key)?).map_err(|e| TlsError::NoKey(key.to_owned(), e.to_string()))?;
    let signing =
        aws_lc_rs::sign::any_supported_type(&private).map_err(|e| TlsError::BadKey(key.to_owned(), e.to_string()))?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|_| TlsError::Mismatch { cert: cert.to_owned(), key: key.to_owned() })?;
    Ok(certified)
}

impl Tls {
    /// Loads the pair and builds the acceptor (HTTP/1.1, TLS 1.2 and 1.3).
    pub fn load(cert: &Path, key: &Path) -> Result<Tls, TlsError> {
        let stamps = (modified(cert), modified(key));
        let current = Arc::new(Current(RwLock::new(Arc::new(load_pair(cert, key)?))));
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Setup(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(current.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Tls {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            current,
            cert: cert.to_owned(),
            key: key.to_owned(),
            loaded: Mutex::new(stamps),
        })
    }

    /// Loads the files again and, if they load, answers with them from now on.
    pub fn reload(&self) -> Result<(), TlsError> {
        let stamps = (modified(&self.cert), modified(&self.key));
        let pair = load_pair(&self.cert, &self.key);
        // Whatever the outcome, these files were looked at: a broken file is
        // reported once, not every few seconds, and tried again when it changes.
        *self.loaded.lock().unwrap_or_else(|p| p.into_inner()) = stamps;
        *self.current.0.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(pair?);
        Ok(())
    }

    fn changed(&self) -> bool {
        let now = (modified(&self.cert), modified(&self.key));
        *self.loaded.lock().unwrap_or_else(|p| p.into_inner()) != now
    }

    fn reload_and_say(&self, why: &str) {
        match self.reload() {
            Ok(()) => tracing::info!(cert = %self.cert.display(), "TLS certificate reloaded ({why})"),
            Err(e) => {
                tracing::error!(error = %e, "TLS certificate not reloaded ({why}); still serving the previous one")
            }
        }
    }

    /// Reloads on SIGHUP and when the files change, until shutdown.
    /// Without `hangup`, the certificate reloads only when its files change.
    pub async fn follow(
        self: Arc<Self>,
        mut hangup: Option<tokio::signal::unix::Signal>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        loop {
            tokio::select! {
                Some(()) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => {
                    self.reload_and_say("SIGHUP");
                }
                _ = tokio::time::sleep(WATCH_EVERY) => {
                    if self.changed() {
                        self.reload_and_say("its files changed");
                    }
                }
                _ = shutdown.wait_for(|s| *s) => return,
            }
        }
    }
}
