//! HTTPS: a rustls server configuration whose certificate can be replaced while serving.
//!
//! [`ReloadingTls`] reads a PEM certificate chain and a PEM private key, checks that they belong
//! together, and serves them through a [`ResolvesServerCert`] that holds the current
//! [`CertifiedKey`]. [`ReloadingTls::reload`] re-reads both files and swaps the key pair for *new*
//! handshakes; established connections keep the certificate they negotiated, and the acceptor is
//! never rebuilt. A reload that fails (missing file, bad PEM, key not matching the certificate)
//! leaves the previous certificate in place.
//!
//! Two ways to trigger a reload: the binary calls [`ReloadingTls::reload`] on SIGHUP, and
//! [`ReloadingTls::spawn_watch`] polls the files. The watcher compares file *contents* (hashes),
//! not modification times: Kubernetes updates mounted secrets by swapping a symlink, which
//! changes neither the path nor, reliably, the mtime seen through it. A renewal tool writing the
//! certificate and the key one after the other may be caught in between (new certificate, old
//! key): that reload fails, is logged as a warning, and the next poll picks up the complete pair.
//!
//! Protocol: TLS 1.2 and 1.3 with the aws-lc-rs provider, ALPN `h2` and `http/1.1`, no client
//! certificates. Key material is never logged nor kept beyond the signing key: change detection
//! keeps only SHA-256 digests of the files.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use sha2::{Digest, Sha256};
use tokio_rustls::TlsAcceptor;

/// Where the certificate chain and the private key live (PEM files).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The server certificate first, then intermediates.
    pub cert_file: PathBuf,
    /// PKCS#8, PKCS#1 (RSA) or SEC1 (EC) private key; other PEM sections are ignored.
    pub key_file: PathBuf,
}

/// Why a certificate could not be loaded. Messages name the file; none carries key bytes.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read certificate file {path}: {source}")]
    ReadCert { path: PathBuf, source: io::Error },
    #[error("cannot read private key file {path}: {source}")]
    ReadKey { path: PathBuf, source: io::Error },
    #[error("invalid PEM in certificate file {path}: {detail}")]
    CertPem { path: PathBuf, detail: String },
    #[error("no certificate in {path}")]
    NoCertificate { path: PathBuf },
    #[error("invalid certificate in {path}: {source}")]
    BadCertificate {
        path: PathBuf,
        source: rustls::Error,
    },
    #[error("invalid PEM in private key file {path}: {detail}")]
    KeyPem { path: PathBuf, detail: String },
    #[error("no private key in {path}")]
    NoKey { path: PathBuf },
    #[error("unusable private key in {path}: {source}")]
    BadKey {
        path: PathBuf,
        source: rustls::Error,
    },
    #[error("key {key} does not match certificate {cert}")]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("TLS configuration: {0}")]
    Config(rustls::Error),
}

/// A TLS server configuration whose certificate can be swapped at run time. Share it as an
/// `Arc`: the connection loop takes its [`acceptor`](Self::acceptor), the binary keeps it for
/// SIGHUP and the watcher.
pub struct ReloadingTls {
    files: TlsFiles,
    resolver: Arc<CurrentCert>,
    config: Arc<ServerConfig>,
    provider: Arc<CryptoProvider>,
    /// Held for a whole reload, so concurrent reloads (SIGHUP racing the watcher) cannot swap in
    /// an older pair after a newer one.
    state: Mutex<LoadState>,
}

/// Which file contents are served, and which were last rejected (so the watcher warns once per
/// broken content, not at every poll).
struct LoadState {
    served: FileDigests,
    rejected: Option<FileDigests>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
struct FileDigests {
    cert: [u8; 32],
    key: [u8; 32],
}

impl FileDigests {
    fn of(cert_pem: &[u8], key_pem: &[u8]) -> Self {
        FileDigests {
            cert: Sha256::digest(cert_pem).into(),
            key: Sha256::digest(key_pem).into(),
        }
    }
}

impl ReloadingTls {
    /// Reads and checks both files and builds the server configuration.
    pub fn load(files: TlsFiles) -> Result<ReloadingTls, TlsError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let (cert_pem, key_pem) = read_files(&files)?;
        let key = certified_key(&files, &provider, &cert_pem, &key_pem)?;
        let resolver = Arc::new(CurrentCert(RwLock::new(Arc::new(key))));
        let mut config = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(TlsError::Config)?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(ReloadingTls {
            files,
            resolver,
            config: Arc::new(config),
            provider,
            state: Mutex::new(LoadState {
                served: FileDigests::of(&cert_pem, &key_pem),
                rejected: None,
            }),
        })
    }

    /// The files this configuration is loaded from.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// An acceptor for the connection loop. Every acceptor shares the swappable certificate.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.config.clone())
    }

    /// Hex SHA-256 of the served leaf certificate (DER), the fingerprint `openssl x509
    /// -fingerprint -sha256` prints: for logs, to tell which certificate is live.
    pub fn cert_sha256(&self) -> String {
        let key = self.resolver.get();
        key.cert
            .first()
            .map(|c| hex(&Sha256::digest(c)))
            .unwrap_or_default()
    }

    /// Re-reads both files. `Ok(true)`: the new pair is served to new handshakes; `Ok(false)`:
    /// the files did not change. On error the previous certificate stays in place (the caller
    /// logs the error). Safe to call concurrently.
    ///
    /// On SIGHUP, for instance:
    ///
    /// ```no_run
    /// # async fn doc(tls: std::sync::Arc<agora_server::ReloadingTls>) -> std::io::Result<()> {
    /// use tokio::signal::unix::{signal, SignalKind};
    ///
    /// let mut hangups = signal(SignalKind::hangup())?;
    /// tokio::spawn(async move {
    ///     while hangups.recv().await.is_some() {
    ///         match tls.reload() {
    ///             Ok(true) => tracing::info!(tls.cert_sha256 = %tls.cert_sha256(), "TLS certificate reloaded"),
    ///             Ok(false) => tracing::info!("TLS certificate files unchanged"),
    ///             Err(err) => tracing::error!(error = %err, "TLS certificate reload failed"),
    ///         }
    ///     }
    /// });
    /// # Ok(())
    /// # }
    /// ```
    pub fn reload(&self) -> Result<bool, TlsError> {
        self.reload_files(false)
    }

    /// `skip_rejected`: answer `Ok(false)` for contents already rejected (the watcher, which
    /// has warned about them once).
    fn reload_files(&self, skip_rejected: bool) -> Result<bool, TlsError> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let (cert_pem, key_pem) = read_files(&self.files)?;
        let digests = FileDigests::of(&cert_pem, &key_pem);
        if digests == state.served || (skip_rejected && state.rejected == Some(digests)) {
            return Ok(false);
        }
        match certified_key(&self.files, &self.provider, &cert_pem, &key_pem) {
            Ok(key) => {
                self.resolver.set(Arc::new(key));
                state.served = digests;
                state.rejected = None;
                Ok(true)
            }
            Err(err) => {
                state.rejected = Some(digests);
                Err(err)
            }
        }
    }

    /// Polls the files every `interval` and reloads when their contents change: `info` on a
    /// reload, `warn` on a failed one (once per distinct content or error). The task ends when
    /// every other handle to `self` is gone.
    pub fn spawn_watch(self: Arc<Self>, interval: Duration) -> tokio::task::JoinHandle<()> {
        let weak: Weak<Self> = Arc::downgrade(&self);
        drop(self);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // The first tick is immediate, and the files were just loaded.
            ticks.tick().await;
            // A missing file fails the same way at every poll: say it once.
            let mut last_error: Option<String> = None;
            loop {
                ticks.tick().await;
                let Some(this) = weak.upgrade() else { return };
                // File reads may block (network filesystems); keep them off the async workers.
                let polled = tokio::task::spawn_blocking(move || {
                    let result = this.reload_files(true);
                    (this, result)
                })
                .await;
                let Ok((this, result)) = polled else { return };
                match result {
                    Ok(false) => {}
                    Ok(true) => {
                        last_error = None;
                        tracing::info!(
                            tls.cert_file = %this.files.cert_file.display(),
                            tls.cert_sha256 = %this.cert_sha256(),
                            "TLS certificate reloaded"
                        );
                    }
                    Err(err) => {
                        let message = err.to_string();
                        if last_error.as_deref() != Some(message.as_str()) {
                            tracing::warn!(
                                error = %message,
                                "TLS certificate reload failed; still serving the previous one"
                            );
                            last_error = Some(message);
                        }
                    }
                }
            }
        })
    }
}

impl fmt::Debug for ReloadingTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadingTls")
            .field("files", &self.files)
            .field("cert_sha256", &self.cert_sha256())
            .finish_non_exhaustive()
    }
}

/// The [`ResolvesServerCert`] behind a [`ReloadingTls`]: one key pair for every server name,
/// replaced as a whole by a reload.
struct CurrentCert(RwLock<Arc<CertifiedKey>>);

impl CurrentCert {
    fn get(&self) -> Arc<CertifiedKey> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set(&self, key: Arc<CertifiedKey>) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = key;
    }
}

impl ResolvesServerCert for CurrentCert {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.get())
    }
}

// Written by hand: the derived form would print the signing key's debug output.
impl fmt::Debug for CurrentCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CurrentCert").finish_non_exhaustive()
    }
}

fn read_files(files: &TlsFiles) -> Result<(Vec<u8>, Vec<u8>), TlsError> {
    let cert = std::fs::read(&files.cert_file).map_err(|source| TlsError::ReadCert {
        path: files.cert_file.clone(),
        source,
    })?;
    let key = std::fs::read(&files.key_file).map_err(|source| TlsError::ReadKey {
        path: files.key_file.clone(),
        source,
    })?;
    Ok((cert, key))
}

/// Parses both PEM files and checks that the key signs for the leaf certificate.
fn certified_key(
    files: &TlsFiles,
    provider: &CryptoProvider,
    cert_pem: &[u8],
    key_pem: &[u8],
) -> Result<CertifiedKey, TlsError> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| TlsError::CertPem {
            path: files.cert_file.clone(),
            detail: pem_error(&err),
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: files.cert_file.clone(),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|err| match err {
        pem::Error::NoItemsFound => TlsError::NoKey {
            path: files.key_file.clone(),
        },
        err => TlsError::KeyPem {
            path: files.key_file.clone(),
            detail: pem_error(&err),
        },
    })?;
    let signing_key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|source| TlsError::BadKey {
            path: files.key_file.clone(),
            source,
        })?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        // `Unknown`: the key cannot tell its public half; the handshake will reveal a mismatch.
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            Ok(certified)
        }
        Err(rustls::Error::InconsistentKeys(_)) => Err(TlsError::KeyMismatch {
            cert: files.cert_file.clone(),
            key: files.key_file.clone(),
        }),
        Err(source) => Err(TlsError::BadCertificate {
            path: files.cert_file.clone(),
            source,
        }),
    }
}

/// A PEM error without the offending line: in a key file, that line could be key material.
fn pem_error(err: &pem::Error) -> String {
    match err {
        pem::Error::MissingSectionEnd { .. } => "a section has no END line".into(),
        pem::Error::IllegalSectionStart { .. } => "malformed BEGIN line".into(),
        pem::Error::Base64Decode(_) => "invalid base64".into(),
        pem::Error::Io(err) => err.to_string(),
        pem::Error::NoItemsFound => "no PEM section found".into(),
        pem::Error::SectionTooLarge => "a PEM section is too large".into(),
        _ => "unreadable PEM".into(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn pem_errors_never_echo_the_input() {
        let secret = b"-----BEGIN PRIVATE KEY-----\nc2VjcmV0IGtleSBieXRlcw==\n";
        let err = PrivateKeyDer::from_pem_slice(secret).unwrap_err();
        let detail = pem_error(&err);
        assert!(!detail.contains("c2Vj"), "{detail}");
    }

    #[test]
    fn missing_files_are_named() {
        let dir = Path::new("/nonexistent-agora-test");
        let err = ReloadingTls::load(TlsFiles {
            cert_file: dir.join("tls.crt"),
            key_file: dir.join("tls.key"),
        })
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cannot read certificate file /nonexistent-agora-test/tls.crt: "),
            "{err}"
        );
    }
}
