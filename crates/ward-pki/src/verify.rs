//! Verifying X.509-SVIDs presented by TLS peers (X509-SVID.md §5).
//!
//! Path validation is rustls-webpki's (chain to a root of the trust bundle,
//! validity, key usage, `CA:FALSE` on the leaf — a CA certificate presented
//! as a leaf fails there). On top of it, the leaf must carry exactly one URI
//! SAN that is a valid SPIFFE ID of the configured trust domain; anything
//! else fails the handshake. x509-parser only reads the SAN of a chain
//! webpki has already accepted.

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};
use ward_core::SpiffeId;

/// Why a certificate is not an SVID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SvidError {
    /// The certificate does not parse.
    #[error("the certificate does not parse")]
    Unparsable,
    /// No URI SAN, or more than one (X509-SVID.md §2: exactly one).
    #[error("an SVID has exactly one URI SAN; this one has {0}")]
    UriSanCount(usize),
    /// The URI SAN is not a valid SPIFFE ID.
    #[error("the URI SAN is not a SPIFFE ID: {0}")]
    NotSpiffe(ward_core::SpiffeIdError),
    /// The SPIFFE ID belongs to another trust domain.
    #[error("{0} is not in the trusted trust domain")]
    OtherTrustDomain(String),
}

/// The root store of a trust bundle.
///
/// # Errors
/// A message when no certificate of the bundle is usable as a trust anchor.
pub fn trust_roots(bundle: &[CertificateDer<'static>]) -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(bundle.iter().cloned());
    if added == 0 {
        return Err("the trust bundle holds no usable certificate".into());
    }
    Ok(roots)
}

/// The SPIFFE ID of a leaf certificate (DER): its one URI SAN.
///
/// # Errors
/// [`SvidError`] for zero or several URI SANs, or one that is not a SPIFFE ID.
pub fn spiffe_id_of(der: &[u8]) -> Result<SpiffeId, SvidError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|_| SvidError::Unparsable)?;
    let san = cert.subject_alternative_name().map_err(|_| SvidError::Unparsable)?;
    let uris: Vec<&str> = san
        .map(|s| {
            s.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    x509_parser::extensions::GeneralName::URI(u) => Some(*u),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    match uris.as_slice() {
        [one] => SpiffeId::parse(one).map_err(SvidError::NotSpiffe),
        many => Err(SvidError::UriSanCount(many.len())),
    }
}

/// A client-certificate verifier for one trust domain: webpki path
/// validation against its bundle, then the SVID rules.
#[derive(Debug)]
pub struct SpiffeClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    trust_domain: String,
    /// Certificates denied by serial or SPIFFE ID (pushed by the control plane).
    denied: Option<Arc<dyn ward_core::RevocationList>>,
}

impl SpiffeClientVerifier {
    /// Trust `bundle` (the trust domain's root certificates) for SVIDs of
    /// `trust_domain`. With `optional`, a client may also connect without a
    /// certificate (PERMISSIVE); one that presents a certificate must still
    /// present a valid SVID.
    ///
    /// # Errors
    /// A message for an empty or unusable bundle.
    pub fn new(
        bundle: &[CertificateDer<'static>],
        trust_domain: &str,
        optional: bool,
        provider: Arc<rustls::crypto::CryptoProvider>,
    ) -> Result<Self, String> {
        let roots = trust_roots(bundle)?;
        let builder = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
        let builder = if optional { builder.allow_unauthenticated() } else { builder };
        let inner = builder.build().map_err(|e| e.to_string())?;
        Ok(Self { inner, trust_domain: trust_domain.to_owned(), denied: None })
    }

    /// Also refuse certificates `list` denies, by serial
    /// ([`ward_core::X509_SERIAL`], lower-case hex) or by SPIFFE ID
    /// ([`ward_core::SPIFFE_ID`]).
    #[must_use]
    pub fn with_denylist(mut self, list: Arc<dyn ward_core::RevocationList>) -> Self {
        self.denied = Some(list);
        self
    }
}

/// The serial number of a certificate (DER), lower-case hex.
///
/// # Errors
/// [`SvidError::Unparsable`].
pub fn serial_of(der: &[u8]) -> Result<String, SvidError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|_| SvidError::Unparsable)?;
    Ok(cert.raw_serial().iter().map(|b| format!("{b:02x}")).collect())
}

/// The three signature methods every rustls certificate verifier carries
/// (`ClientCertVerifier` and `ServerCertVerifier` alike), forwarded to the
/// verifier that `self.<path>` reaches: `forward_signature_checks!(inner)`,
/// `forward_signature_checks!(inner.get())`. A wrapper that adds checks to
/// the chain keeps the wrapped verifier's handshake-signature checks.
#[macro_export]
macro_rules! forward_signature_checks {
    ($($path:tt)+) => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &$crate::__rustls::pki_types::CertificateDer<'_>,
            dss: &$crate::__rustls::DigitallySignedStruct,
        ) -> Result<$crate::__rustls::client::danger::HandshakeSignatureValid, $crate::__rustls::Error> {
            self.$($path)+.verify_tls12_signature(message, cert, dss)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &$crate::__rustls::pki_types::CertificateDer<'_>,
            dss: &$crate::__rustls::DigitallySignedStruct,
        ) -> Result<$crate::__rustls::client::danger::HandshakeSignatureValid, $crate::__rustls::Error> {
            self.$($path)+.verify_tls13_signature(message, cert, dss)
        }

        fn supported_verify_schemes(&self) -> Vec<$crate::__rustls::SignatureScheme> {
            self.$($path)+.supported_verify_schemes()
        }
    };
}

impl ClientCertVerifier for SpiffeClientVerifier {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        let verified = self.inner.verify_client_cert(end_entity, intermediates, now)?;
        // The peer learns only that its certificate was refused.
        let refuse = |_: SvidError| Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure);
        let id = spiffe_id_of(end_entity).map_err(refuse)?;
        if id.trust_domain() != self.trust_domain {
            return Err(refuse(SvidError::OtherTrustDomain(id.to_string())));
        }
        if let Some(list) = &self.denied {
            let serial = serial_of(end_entity).map_err(refuse)?;
            if list.is_revoked(ward_core::X509_SERIAL, &serial) || list.is_revoked(ward_core::SPIFFE_ID, id.as_str()) {
                return Err(Error::InvalidCertificate(CertificateError::Revoked));
            }
        }
        Ok(verified)
    }

    forward_signature_checks!(inner);
}

/// Judges a finished handshake's client certificate as of *now*.
///
/// rustls verifies a client certificate only on a full handshake. A resumed
/// session (a TLS 1.2 session ID or a TLS 1.3 ticket) brings back the chain
/// verified when the session was made: without this check, a certificate
/// denied or expired since then would keep being served for as long as the
/// client kept its session. Every accept loop calls [`Self::check`] after the
/// handshake and before serving a byte, so every connection, resumed or not,
/// is judged on the certificate's validity, the trust bundle and the
/// deny-list in force now. Cloning is cheap (one `Arc`).
#[derive(Debug, Clone)]
pub struct PeerRecheck {
    verifier: Option<Arc<dyn ClientCertVerifier>>,
}

impl PeerRecheck {
    /// Re-run `verifier` (the listener's own client verifier) on resumed
    /// sessions. With `None` (a listener built without one), a resumed session
    /// that carries a client certificate cannot be judged and is refused.
    #[must_use]
    pub fn new(verifier: Option<Arc<dyn ClientCertVerifier>>) -> Self {
        Self { verifier }
    }

    /// `Ok` when `conn` (a completed handshake) may be served.
    ///
    /// # Errors
    /// The verifier's error for a resumed session whose certificate is no
    /// longer valid (expired, denied, no longer chaining to the bundle);
    /// [`CertificateError::ApplicationVerificationFailure`] for a resumed
    /// session with a certificate and no verifier to judge it, or without one
    /// where the verifier requires it.
    pub fn check(&self, conn: &rustls::ServerConnection) -> Result<(), Error> {
        self.check_at(conn, UnixTime::now())
    }

    /// [`Self::check`] as of `now`.
    ///
    /// # Errors
    /// As [`Self::check`].
    pub fn check_at(&self, conn: &rustls::ServerConnection, now: UnixTime) -> Result<(), Error> {
        if conn.handshake_kind() != Some(rustls::HandshakeKind::Resumed) {
            // A full handshake: the verifier has just judged the chain.
            return Ok(());
        }
        let refuse = || Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure);
        match (conn.peer_certificates(), &self.verifier) {
            (Some([leaf, intermediates @ ..]), Some(v)) => v.verify_client_cert(leaf, intermediates, now).map(|_| ()),
            (Some([_, ..]), None) => Err(refuse()),
            (None | Some([]), Some(v)) if v.client_auth_mandatory() => Err(refuse()),
            (None | Some([]), _) => Ok(()),
        }
    }
}

/// A server-certificate verifier for one expected SPIFFE ID (sidecar
/// egress): the chain must verify to the bundle for serverAuth, and the
/// leaf's one URI SAN must be exactly `expected`. The DNS name the client
/// connected to is not what is checked — the workload identity is.
#[derive(Debug)]
pub struct SpiffeServerVerifier {
    roots: Arc<rustls::RootCertStore>,
    expected: SpiffeId,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl SpiffeServerVerifier {
    /// Trust `bundle` for an upstream that must present `expected`.
    ///
    /// # Errors
    /// A message for an empty or unusable bundle.
    pub fn new(
        bundle: &[CertificateDer<'static>],
        expected: SpiffeId,
        provider: Arc<rustls::crypto::CryptoProvider>,
    ) -> Result<Self, String> {
        let roots = trust_roots(bundle)?;
        Ok(Self { roots: Arc::new(roots), expected, provider })
    }
}

impl rustls::client::danger::ServerCertVerifier for SpiffeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, Error> {
        let parsed = rustls::server::ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &parsed,
            &self.roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        let refuse = || Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure);
        match spiffe_id_of(end_entity) {
            Ok(id) if id == self.expected => Ok(rustls::client::danger::ServerCertVerified::assertion()),
            _ => Err(refuse()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// RFC 8705 §3.1 `x5t#S256`: base64url(SHA-256(certificate DER)).
#[must_use]
pub fn x5t_s256(der: &[u8]) -> String {
    use base64::Engine;
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(d.as_ref())
}

/// The certificate's SubjectPublicKeyInfo (DER), base64.
///
/// # Errors
/// [`SvidError::Unparsable`].
pub fn spki_of(der: &[u8]) -> Result<String, SvidError> {
    use base64::Engine;
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|_| SvidError::Unparsable)?;
    Ok(base64::engine::general_purpose::STANDARD.encode(cert.public_key().raw))
}

/// The validity period of a certificate (DER): not before, not after (unix seconds).
///
/// # Errors
/// [`SvidError::Unparsable`].
pub fn validity_of(der: &[u8]) -> Result<(i64, i64), SvidError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|_| SvidError::Unparsable)?;
    Ok((cert.validity().not_before.timestamp(), cert.validity().not_after.timestamp()))
}

#[cfg(test)]
mod tests {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SanType};
    use rustls::pki_types::pem::PemObject;

    use super::*;
    use crate::ca;

    struct Fixture {
        ca: ca::NewCa,
        verifier: SpiffeClientVerifier,
    }

    fn fixture(optional: bool) -> Fixture {
        let ca = ca::init("example.org").unwrap();
        let bundle = vec![CertificateDer::from_pem_slice(ca.root.cert_pem.as_bytes()).unwrap()];
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verifier = SpiffeClientVerifier::new(&bundle, "example.org", optional, provider).unwrap();
        Fixture { ca, verifier }
    }

    /// A leaf signed by the intermediate with `sans` and `is_ca`, bypassing Ward's issuer.
    fn odd_leaf(f: &Fixture, sans: &[&str], is_ca: bool) -> Vec<CertificateDer<'static>> {
        let issuer = Issuer::from_ca_cert_pem(
            &f.ca.intermediate.cert_pem,
            KeyPair::from_pem(&f.ca.intermediate.key_pem).unwrap(),
        )
        .unwrap();
        let mut params = CertificateParams::default();
        params.subject_alt_names = sans.iter().map(|s| SanType::URI((*s).try_into().unwrap())).collect();
        if is_ca {
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        }
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let leaf = params.signed_by(&key, &issuer).unwrap();
        vec![leaf.der().clone(), CertificateDer::from_pem_slice(f.ca.intermediate.cert_pem.as_bytes()).unwrap()]
    }

    fn check(f: &Fixture, chain: &[CertificateDer<'static>]) -> Result<ClientCertVerified, Error> {
        f.verifier.verify_client_cert(&chain[0], &chain[1..], UnixTime::now())
    }

    #[test]
    fn svids_of_the_trust_domain_pass_and_nothing_else_does() {
        let f = fixture(false);
        assert!(f.verifier.client_auth_mandatory());
        let issuer =
            ca::SvidIssuer::load(&f.ca.intermediate.cert_pem, &f.ca.intermediate.key_pem, "example.org").unwrap();
        let (svid, _) =
            issuer.issue(&SpiffeId::parse("spiffe://example.org/web").unwrap(), ca::DEFAULT_SVID_TTL).unwrap();
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(svid.chain_pem.as_bytes()).collect::<Result<_, _>>().unwrap();
        check(&f, &chain).unwrap();
        assert_eq!(spiffe_id_of(&chain[0]).unwrap().as_str(), "spiffe://example.org/web");

        let app = Err(Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure));
        assert_eq!(check(&f, &odd_leaf(&f, &[], false)).map(|_| ()), app.clone(), "no URI SAN");
        assert_eq!(
            check(&f, &odd_leaf(&f, &["spiffe://example.org/a", "spiffe://example.org/b"], false)).map(|_| ()),
            app.clone(),
            "two URI SANs"
        );
        assert_eq!(check(&f, &odd_leaf(&f, &["https://example.org/a"], false)).map(|_| ()), app.clone(), "not SPIFFE");
        assert_eq!(check(&f, &odd_leaf(&f, &["spiffe://evil.org/a"], false)).map(|_| ()), app, "another trust domain");
        assert!(check(&f, &odd_leaf(&f, &["spiffe://example.org/ca"], true)).is_err(), "a CA certificate as a leaf");
        // Another CA's SVID, and the intermediate itself presented as a leaf.
        let other = fixture(false);
        let other_issuer =
            ca::SvidIssuer::load(&other.ca.intermediate.cert_pem, &other.ca.intermediate.key_pem, "example.org")
                .unwrap();
        let (foreign, _) =
            other_issuer.issue(&SpiffeId::parse("spiffe://example.org/web").unwrap(), ca::DEFAULT_SVID_TTL).unwrap();
        let foreign: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(foreign.chain_pem.as_bytes()).collect::<Result<_, _>>().unwrap();
        assert!(check(&f, &foreign).is_err(), "same trust domain name, another CA");
        let intermediate = CertificateDer::from_pem_slice(f.ca.intermediate.cert_pem.as_bytes()).unwrap();
        assert!(f.verifier.verify_client_cert(&intermediate, &[], UnixTime::now()).is_err());
        assert!(!fixture(true).verifier.client_auth_mandatory(), "PERMISSIVE");
    }

    #[test]
    fn upstreams_must_present_exactly_the_expected_id() {
        use rustls::client::danger::ServerCertVerifier;
        let f = fixture(false);
        let issuer =
            ca::SvidIssuer::load(&f.ca.intermediate.cert_pem, &f.ca.intermediate.key_pem, "example.org").unwrap();
        let (svid, _) =
            issuer.issue(&SpiffeId::parse("spiffe://example.org/orders").unwrap(), ca::DEFAULT_SVID_TTL).unwrap();
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(svid.chain_pem.as_bytes()).collect::<Result<_, _>>().unwrap();
        let bundle = vec![CertificateDer::from_pem_slice(f.ca.root.cert_pem.as_bytes()).unwrap()];
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let name = rustls::pki_types::ServerName::try_from("anything.example").unwrap();
        let verify = |expected: &str| {
            SpiffeServerVerifier::new(&bundle, SpiffeId::parse(expected).unwrap(), Arc::clone(&provider))
                .unwrap()
                .verify_server_cert(&chain[0], &chain[1..], &name, &[], UnixTime::now())
        };
        assert!(verify("spiffe://example.org/orders").is_ok(), "the name connected to does not matter; the ID does");
        assert!(verify("spiffe://example.org/payments").is_err(), "another workload");
        assert!(verify("spiffe://example.org/orders/x").is_err(), "no prefix matching");
    }
}
