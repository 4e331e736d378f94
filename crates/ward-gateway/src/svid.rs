//! SVIDs and trust bundles that rotate under a running gateway.
//!
//! SVIDs live an hour and are renewed at half-life, and bundles change when
//! a CA rotates: the files are re-read when their modification times
//! change, checked at most once per [`CHECK_EVERY`] on the handshake path
//! (a mutex and a clock read otherwise). Connections that are open keep
//! their session; new handshakes use the new material. A file that does not
//! load keeps the previous material in service (and says so in the log).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use rustls::client::ResolvesClientCert;
use rustls::client::danger::{ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DistinguishedName, Error, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use ward_pki::verify::{SpiffeClientVerifier, SpiffeServerVerifier};

/// How often the files are looked at.
pub(crate) const CHECK_EVERY: Duration = Duration::from_secs(1);

type Loader<T> = Box<dyn Fn() -> Result<T, String> + Send + Sync>;

/// A value built from files, rebuilt when they change.
pub(crate) struct FileBacked<T> {
    current: ArcSwap<T>,
    paths: Vec<PathBuf>,
    /// Modification times of the last load, and when they were last looked at.
    seen: Mutex<(Vec<Option<SystemTime>>, Instant)>,
    load: Loader<T>,
    what: &'static str,
}

impl<T> std::fmt::Debug for FileBacked<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileBacked").field("what", &self.what).field("paths", &self.paths).finish_non_exhaustive()
    }
}

fn stamps(paths: &[PathBuf]) -> Vec<Option<SystemTime>> {
    paths.iter().map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok()).collect()
}

impl<T> FileBacked<T> {
    /// Load now (an error here stops the gateway from starting).
    pub(crate) fn new(what: &'static str, paths: Vec<PathBuf>, load: Loader<T>) -> Result<Self, String> {
        let seen = stamps(&paths);
        let first = load()?;
        Ok(Self { current: ArcSwap::from_pointee(first), paths, seen: Mutex::new((seen, Instant::now())), load, what })
    }

    /// The current value, re-read first if the files changed.
    pub(crate) fn get(&self) -> Arc<T> {
        if let Ok(mut seen) = self.seen.try_lock()
            && seen.1.elapsed() >= CHECK_EVERY
        {
            seen.1 = Instant::now();
            let now = stamps(&self.paths);
            if now != seen.0 {
                seen.0 = now;
                match (self.load)() {
                    Ok(v) => {
                        self.current.store(Arc::new(v));
                        tracing::info!(what = self.what, "reloaded after its files changed");
                    }
                    Err(e) => tracing::error!(what = self.what, error = %e, "reload failed; the previous one stays"),
                }
            }
        }
        self.current.load_full()
    }
}

fn read_bundle(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, String> {
    CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// The inbound SPIFFE verifier over a bundle file that may change.
#[derive(Debug)]
pub(crate) struct ReloadingClientVerifier {
    inner: FileBacked<SpiffeClientVerifier>,
    mandatory: bool,
}

impl ReloadingClientVerifier {
    pub(crate) fn new(
        bundle_file: PathBuf,
        trust_domain: String,
        optional: bool,
        denied: Option<Arc<dyn ward_core::RevocationList>>,
    ) -> Result<Self, String> {
        let path = bundle_file.clone();
        let load: Loader<SpiffeClientVerifier> = Box::new(move || {
            let v = SpiffeClientVerifier::new(&read_bundle(&path)?, &trust_domain, optional, crate::tls::provider())
                .map_err(|e| format!("{}: {e}", path.display()))?;
            Ok(match &denied {
                Some(list) => v.with_denylist(Arc::clone(list)),
                None => v,
            })
        });
        Ok(Self { inner: FileBacked::new("mTLS trust bundle", vec![bundle_file], load)?, mandatory: !optional })
    }
}

impl ClientCertVerifier for ReloadingClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // The hints would have to outlive a bundle reload; clients send their
        // SVID without them (curl, OpenSSL, rustls, Envoy do).
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        self.inner.get().verify_client_cert(end_entity, intermediates, now)
    }

    ward_pki::forward_signature_checks!(inner.get());
}

/// The egress verifier (expected SPIFFE ID) over a bundle file that may change.
#[derive(Debug)]
pub(crate) struct ReloadingServerVerifier {
    inner: FileBacked<SpiffeServerVerifier>,
}

impl ReloadingServerVerifier {
    pub(crate) fn new(bundle_file: PathBuf, expected: ward_core::SpiffeId) -> Result<Self, String> {
        let path = bundle_file.clone();
        let load: Loader<SpiffeServerVerifier> = Box::new(move || {
            SpiffeServerVerifier::new(&read_bundle(&path)?, expected.clone(), crate::tls::provider())
                .map_err(|e| format!("{}: {e}", path.display()))
        });
        Ok(Self { inner: FileBacked::new("upstream trust bundle", vec![bundle_file], load)? })
    }
}

impl ServerCertVerifier for ReloadingServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        self.inner.get().verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    ward_pki::forward_signature_checks!(inner.get());
}

/// The gateway's own SVID for egress, re-read when its files change.
#[derive(Debug)]
pub(crate) struct ReloadingClientCert {
    inner: FileBacked<CertifiedKey>,
}

impl ReloadingClientCert {
    pub(crate) fn new(cert: PathBuf, key: PathBuf) -> Result<Self, String> {
        let (c, k) = (cert.clone(), key.clone());
        let load: Loader<CertifiedKey> =
            Box::new(move || crate::tls::load_certified_key(&c, &k).map_err(|e| e.to_string()));
        Ok(Self { inner: FileBacked::new("egress SVID", vec![cert, key], load)? })
    }
}

impl ResolvesClientCert for ReloadingClientCert {
    fn resolve(&self, _root_hints: &[&[u8]], _sigschemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.inner.get())
    }

    fn has_certs(&self) -> bool {
        true
    }
}
