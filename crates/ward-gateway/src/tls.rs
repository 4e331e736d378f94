//! TLS termination: rustls on aws-lc-rs, TLS 1.2+ with forward-secret AEAD
//! suites only, ALPN `h2` and `http/1.1`, and a certificate that is reloaded
//! from disk (on SIGHUP and when the files change) without touching open
//! connections.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ServerConfig, version};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use ward_config::{TlsSettings, TlsVersion};

use crate::GatewayError;

/// The crypto provider every TLS endpoint of Ward uses: aws-lc-rs.
#[must_use]
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Read a certificate chain and its private key, checking that they belong together.
///
/// # Errors
/// [`GatewayError::Tls`] naming the file that is wrong.
pub fn load_certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey, GatewayError> {
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| GatewayError::Tls(format!("{}: cannot read certificates: {e}", cert.display())))?;
    if certs.is_empty() {
        return Err(GatewayError::Tls(format!("{}: no certificate found", cert.display())));
    }
    warn_if_readable_by_others(key);
    let der = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| GatewayError::Tls(format!("{}: cannot read the private key: {e}", key.display())))?;
    CertifiedKey::from_der(certs, der, &provider())
        .map_err(|e| GatewayError::Tls(format!("{} and {}: {e}", cert.display(), key.display())))
}

/// `sha256:<hex>` of the leaf certificate.
fn fingerprint(key: &CertifiedKey) -> String {
    key.cert.first().map_or_else(String::new, |c| format!("sha256:{}", ward_crypto::sha256_hex(c.as_ref())))
}

/// Warn when a key file can be read by group or others.
pub(crate) fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(file = %path.display(), "key file is readable by group or others; chmod 600 it");
    }
}

/// Serves whichever certificate was loaded last.
#[derive(Debug)]
pub struct ReloadingResolver {
    current: ArcSwap<CertifiedKey>,
}

impl ResolvesServerCert for ReloadingResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// The server TLS state: configuration plus the files it reloads from.
#[derive(Debug)]
pub struct ServerTls {
    /// The rustls configuration handed to every accepted connection.
    pub config: Arc<ServerConfig>,
    /// Client certificates: none (`DISABLE`), `STRICT` or `PERMISSIVE`.
    pub mtls: Option<ward_config::MtlsMode>,
    /// Judges resumed sessions' client certificates again, as of now, with
    /// the same verifier (bundle, trust domain, deny-list) as full handshakes.
    pub recheck: ward_pki::verify::PeerRecheck,
    resolver: Arc<ReloadingResolver>,
    cert_file: PathBuf,
    key_file: PathBuf,
    stamp: std::sync::Mutex<Option<(SystemTime, SystemTime)>>,
}

fn stamp(cert: &Path, key: &Path) -> Option<(SystemTime, SystemTime)> {
    let m = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    Some((m(cert)?, m(key)?))
}

impl ServerTls {
    /// Load the certificate and build the server configuration.
    ///
    /// # Errors
    /// [`GatewayError::Tls`] if the files are unusable.
    pub fn new(settings: &TlsSettings) -> Result<Self, GatewayError> {
        Self::with_denylist(settings, None)
    }

    /// As [`Self::new`], refusing client certificates `denied` lists (by
    /// serial or SPIFFE ID) on every new handshake.
    ///
    /// # Errors
    /// [`GatewayError::Tls`] if the files are unusable.
    pub fn with_denylist(
        settings: &TlsSettings,
        denied: Option<Arc<dyn ward_core::RevocationList>>,
    ) -> Result<Self, GatewayError> {
        let key = load_certified_key(&settings.cert_file, &settings.key_file)?;
        let resolver = Arc::new(ReloadingResolver { current: ArcSwap::from_pointee(key) });
        let versions: &[&'static rustls::SupportedProtocolVersion] = match settings.min_version {
            TlsVersion::Tls12 => &[&version::TLS13, &version::TLS12],
            TlsVersion::Tls13 => &[&version::TLS13],
        };
        let builder = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(versions)
            .map_err(|e| GatewayError::Tls(e.to_string()))?;
        let (builder, verifier) = match &settings.mtls {
            None => (builder.with_no_client_auth(), None),
            Some(m) => {
                // The bundle is re-read when it changes (CA rotation).
                let optional = m.mode == ward_config::MtlsMode::Permissive;
                let verifier = crate::svid::ReloadingClientVerifier::new(
                    m.bundle_file.clone(),
                    m.trust_domain.clone(),
                    optional,
                    denied,
                )
                .map_err(GatewayError::Tls)?;
                let verifier: Arc<dyn rustls::server::danger::ClientCertVerifier> = Arc::new(verifier);
                (builder.with_client_cert_verifier(Arc::clone(&verifier)), Some(verifier))
            }
        };
        let mut config = builder.with_cert_resolver(resolver.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        config.ignore_client_order = true;
        Ok(Self {
            config: Arc::new(config),
            mtls: settings.mtls.as_ref().map(|m| m.mode),
            recheck: ward_pki::verify::PeerRecheck::new(verifier),
            resolver,
            cert_file: settings.cert_file.clone(),
            key_file: settings.key_file.clone(),
            stamp: std::sync::Mutex::new(stamp(&settings.cert_file, &settings.key_file)),
        })
    }

    /// Reload the files if they changed since the last load (or if `force`).
    /// A bad pair is reported and the current certificate stays in service.
    /// Returns whether a new certificate is now served.
    pub fn reload(&self, force: bool) -> bool {
        matches!(self.reload_outcome(force), Some(Ok(_)))
    }

    /// Like [`Self::reload`], saying what happened: `None` when nothing
    /// changed, else the new certificate's SHA-256 fingerprint or the error.
    pub fn reload_outcome(&self, force: bool) -> Option<Result<String, String>> {
        let now = stamp(&self.cert_file, &self.key_file);
        let Ok(mut last) = self.stamp.lock() else { return None };
        if !force && (now.is_none() || now == *last) {
            return None;
        }
        match load_certified_key(&self.cert_file, &self.key_file) {
            Ok(key) => {
                let fingerprint = fingerprint(&key);
                self.resolver.current.store(Arc::new(key));
                *last = now;
                tracing::info!(cert = %self.cert_file.display(), "TLS certificate reloaded");
                Some(Ok(fingerprint))
            }
            Err(e) => {
                // Files are often replaced one at a time: keep serving the old pair.
                tracing::error!(error = %e, "TLS reload failed; still serving the previous certificate");
                *last = now;
                Some(Err(e.to_string()))
            }
        }
    }

    /// The SHA-256 fingerprint of the certificate being served.
    #[must_use]
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.resolver.current.load())
    }
}
