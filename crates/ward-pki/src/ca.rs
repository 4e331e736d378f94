//! The trust domain's CA and its X.509-SVIDs (SPIFFE X509-SVID.md).
//!
//! Two tiers: a root (10 years, path length 1) that only signs
//! intermediates, and can be kept offline, and an intermediate (path length
//! 0) that signs SVIDs. Both carry the trust domain's own SPIFFE ID
//! (`spiffe://<td>`, no path) as their one URI SAN (SPIFFE-ID.md §3.1).
//! Neither emits name constraints: current rustls-webpki refuses URI name
//! constraints, and a CA that breaks every verifier helps nobody.
//!
//! An SVID has exactly one URI SAN, the SPIFFE ID; is not a CA; has a
//! critical key usage of digitalSignature only; serverAuth and clientAuth
//! extended key usages; a random 128-bit serial; and a short life (1 hour by
//! default), starting a minute early for clock skew.

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SanType, SerialNumber,
};
use time::{Duration, OffsetDateTime};
use ward_core::SpiffeId;
use zeroize::Zeroizing;

use crate::{CertAndKey, PkiError};

/// Default SVID lifetime.
pub const DEFAULT_SVID_TTL: std::time::Duration = std::time::Duration::from_secs(3600);
/// Longest SVID lifetime Ward issues (SVIDs are meant to be short-lived).
pub const MAX_SVID_TTL: std::time::Duration = std::time::Duration::from_secs(24 * 3600);
/// Intermediate lifetime.
pub const INTERMEDIATE_TTL: Duration = Duration::days(365);

fn dn(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Ward");
    dn.push(DnType::CommonName, common_name);
    dn
}

fn random_serial() -> Result<SerialNumber, PkiError> {
    let mut bytes = ward_crypto::random_bytes::<16>().map_err(|_| PkiError::Random)?;
    // Positive, and never starting with a zero byte DER would strip.
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    Ok(SerialNumber::from_slice(&bytes))
}

fn ca_params(
    trust_domain: &SpiffeId,
    name: &str,
    path_len: u8,
    lifetime: Duration,
) -> Result<CertificateParams, PkiError> {
    let now = OffsetDateTime::now_utc();
    let mut params = CertificateParams::default();
    params.distinguished_name = dn(&format!("{name} {}", trust_domain.trust_domain()));
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(path_len));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.subject_alt_names = vec![SanType::URI(trust_domain.as_str().try_into()?)];
    params.serial_number = Some(random_serial()?);
    params.use_authority_key_identifier_extension = true;
    params.not_before = now - Duration::minutes(5);
    params.not_after = now + lifetime;
    Ok(params)
}

/// A new trust domain: its root and a first intermediate.
#[derive(Debug)]
pub struct NewCa {
    /// The root (self-signed; its key can go offline once intermediates exist).
    pub root: CertAndKey,
    /// The intermediate that signs SVIDs.
    pub intermediate: CertAndKey,
}

/// Create the CA of `trust_domain`.
///
/// # Errors
/// [`PkiError`] for a bad trust domain name or a generation failure.
pub fn init(trust_domain: &str) -> Result<NewCa, PkiError> {
    let td = SpiffeId::of_trust_domain(trust_domain).map_err(|e| PkiError::BadName(format!("{trust_domain}: {e}")))?;
    let root_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let root_params = ca_params(&td, "Ward root CA", 1, Duration::days(3650))?;
    let root_cert = root_params.self_signed(&root_key)?;
    let root = CertAndKey { cert_pem: root_cert.pem(), key_pem: Zeroizing::new(root_key.serialize_pem()) };
    let intermediate = new_intermediate(&root.cert_pem, &root.key_pem, trust_domain)?;
    Ok(NewCa { root, intermediate })
}

/// A new intermediate signed by the root (`ward ca rotate`): SVIDs signed by
/// the old one stay valid, since verifiers trust the root.
///
/// # Errors
/// [`PkiError`] for unusable root material or a generation failure.
pub fn new_intermediate(root_cert_pem: &str, root_key_pem: &str, trust_domain: &str) -> Result<CertAndKey, PkiError> {
    let td = SpiffeId::of_trust_domain(trust_domain).map_err(|e| PkiError::BadName(format!("{trust_domain}: {e}")))?;
    let root = Issuer::from_ca_cert_pem(root_cert_pem, KeyPair::from_pem(root_key_pem)?)?;
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let cert = ca_params(&td, "Ward intermediate CA", 0, INTERMEDIATE_TTL)?.signed_by(&key, &root)?;
    Ok(CertAndKey { cert_pem: cert.pem(), key_pem: Zeroizing::new(key.serialize_pem()) })
}

/// An issued SVID: the leaf, and the chain to present with it.
#[derive(Debug)]
pub struct Svid {
    /// The leaf certificate (PEM).
    pub cert_pem: String,
    /// The leaf followed by the intermediate (PEM), as a server or client presents it.
    pub chain_pem: String,
    /// Its serial, hex (for revocation lists and the audit log).
    pub serial: String,
    /// When it expires.
    pub not_after: OffsetDateTime,
}

/// The intermediate, loaded to sign SVIDs of its trust domain.
pub struct SvidIssuer {
    issuer: Issuer<'static, KeyPair>,
    intermediate_pem: String,
    trust_domain: String,
}

impl std::fmt::Debug for SvidIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SvidIssuer").field("trust_domain", &self.trust_domain).finish_non_exhaustive()
    }
}

impl SvidIssuer {
    /// Load the intermediate of `trust_domain`.
    ///
    /// # Errors
    /// [`PkiError`] for unusable PEM or key.
    pub fn load(intermediate_cert_pem: &str, intermediate_key_pem: &str, trust_domain: &str) -> Result<Self, PkiError> {
        SpiffeId::of_trust_domain(trust_domain).map_err(|e| PkiError::BadName(format!("{trust_domain}: {e}")))?;
        let key = KeyPair::from_pem(intermediate_key_pem)?;
        Ok(Self {
            issuer: Issuer::from_ca_cert_pem(intermediate_cert_pem, key)?,
            intermediate_pem: intermediate_cert_pem.to_owned(),
            trust_domain: trust_domain.to_owned(),
        })
    }

    /// The trust domain it issues for.
    #[must_use]
    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    fn sign(&self, id: &SpiffeId, public_key: &impl PublicKeyData, ttl: std::time::Duration) -> Result<Svid, PkiError> {
        if id.trust_domain() != self.trust_domain {
            return Err(PkiError::BadName(format!("{id} is not in trust domain {}", self.trust_domain)));
        }
        if ttl.is_zero() || ttl > MAX_SVID_TTL {
            return Err(PkiError::BadName(format!("SVID lifetime must be 1s..={}s", MAX_SVID_TTL.as_secs())));
        }
        let now = OffsetDateTime::now_utc();
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(id.path().rsplit('/').next().filter(|s| !s.is_empty()).unwrap_or("workload"));
        params.subject_alt_names = vec![SanType::URI(id.as_str().try_into()?)];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        let serial = random_serial()?;
        let serial_hex: String = serial.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        params.serial_number = Some(serial);
        params.use_authority_key_identifier_extension = true;
        params.not_before = now - Duration::minutes(1);
        let ttl = Duration::try_from(ttl).map_err(|_| PkiError::BadName("SVID lifetime".into()))?;
        params.not_after = now + ttl;
        let cert = params.signed_by(public_key, &self.issuer)?;
        let cert_pem = cert.pem();
        Ok(Svid {
            chain_pem: format!("{cert_pem}{}", self.intermediate_pem),
            cert_pem,
            serial: serial_hex,
            not_after: now + ttl,
        })
    }

    /// An SVID for `id` with a new key pair (for operators: `ward cert
    /// issue`); the key is returned with it.
    ///
    /// # Errors
    /// [`PkiError`] for an ID of another trust domain, a bad lifetime, or a signing failure.
    pub fn issue(&self, id: &SpiffeId, ttl: std::time::Duration) -> Result<(Svid, Zeroizing<String>), PkiError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let svid = self.sign(id, &key, ttl)?;
        Ok((svid, Zeroizing::new(key.serialize_pem())))
    }

    /// An SVID for `id` over the key in a PKCS#10 request (the workload
    /// keeps its private key). The request's signature must verify (proof
    /// of possession); everything else it asks for is ignored: the SVID's
    /// names and usages are Ward's.
    ///
    /// # Errors
    /// [`PkiError`] for an unparsable or badly signed request, or as [`Self::issue`].
    pub fn issue_for_csr(&self, id: &SpiffeId, csr_pem: &str, ttl: std::time::Duration) -> Result<Svid, PkiError> {
        let csr = CertificateSigningRequestParams::from_pem(csr_pem)?;
        self.sign(id, &csr.public_key, ttl)
    }
}

/// The trust bundle in the SPIFFE bundle format (SPIFFE Trust Domain and
/// Bundle §4: a JWK set whose keys have `use: x509-svid` and carry the CA
/// certificate in `x5c`), for federation and for SPIFFE-aware clients that
/// read bundles as JSON. Only P-256 CA keys are expressed (Ward's CA makes
/// nothing else); others are an error rather than silently left out.
///
/// # Errors
/// [`PkiError::BadName`] for a PEM that does not parse or a key that is not P-256.
pub fn spiffe_bundle(bundle_pem: &str, sequence: u64, refresh_hint_secs: u64) -> Result<serde_json::Value, PkiError> {
    use base64::Engine;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    const P256: &str = "1.2.840.10045.3.1.7";
    let bad = |why: &str| PkiError::BadName(format!("trust bundle: {why}"));
    let mut keys = Vec::new();
    for der in CertificateDer::pem_slice_iter(bundle_pem.as_bytes()) {
        let der = der.map_err(|e| bad(&e.to_string()))?;
        let (_, cert) = x509_parser::parse_x509_certificate(&der).map_err(|e| bad(&e.to_string()))?;
        let spki = cert.public_key();
        let curve = spki.algorithm.parameters.as_ref().and_then(|p| p.as_oid().ok()).map(|o| o.to_id_string());
        let point = &spki.subject_public_key.data;
        if curve.as_deref() != Some(P256) || point.len() != 65 || point[0] != 4 {
            return Err(bad("only uncompressed P-256 CA keys are supported"));
        }
        keys.push(serde_json::json!({
            "use": "x509-svid",
            "kty": "EC",
            "crv": "P-256",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
            "x5c": [STANDARD.encode(der.as_ref())],
        }));
    }
    if keys.is_empty() {
        return Err(bad("no certificate"));
    }
    Ok(serde_json::json!({ "keys": keys, "spiffe_sequence": sequence, "spiffe_refresh_hint": refresh_hint_secs }))
}

/// A new P-256 key and a PKCS#10 request over it (for a workload joining or
/// renewing; the request carries no names — the CA decides them).
///
/// # Errors
/// [`PkiError`] if generation fails.
pub fn key_and_csr() -> Result<(Zeroizing<String>, String), PkiError> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    let csr = params.serialize_request(&key)?.pem()?;
    Ok((Zeroizing::new(key.serialize_pem()), csr))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rustls::server::danger::ClientCertVerifier;
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, UnixTime};

    use super::*;

    fn verifier(root_pem: &str) -> Arc<dyn ClientCertVerifier> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from_pem_slice(root_pem.as_bytes()).unwrap()).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider).build().unwrap()
    }

    fn chain(pem: &str) -> Vec<CertificateDer<'static>> {
        CertificateDer::pem_slice_iter(pem.as_bytes()).collect::<Result<Vec<_>, _>>().unwrap()
    }

    #[test]
    fn svids_chain_to_the_root_through_the_intermediate() {
        let ca = init("example.org").unwrap();
        let issuer = SvidIssuer::load(&ca.intermediate.cert_pem, &ca.intermediate.key_pem, "example.org").unwrap();
        let id = SpiffeId::parse("spiffe://example.org/ns/prod/sa/billing").unwrap();
        let (svid, key) = issuer.issue(&id, DEFAULT_SVID_TTL).unwrap();
        assert!(key.contains("PRIVATE KEY"));
        assert_eq!(svid.serial.len(), 32);
        let certs = chain(&svid.chain_pem);
        assert_eq!(certs.len(), 2, "leaf and intermediate");
        verifier(&ca.root.cert_pem).verify_client_cert(&certs[0], &certs[1..], UnixTime::now()).unwrap();
        // Not without the intermediate, not under another trust domain's root.
        assert!(verifier(&ca.root.cert_pem).verify_client_cert(&certs[0], &[], UnixTime::now()).is_err());
        let other = init("other.org").unwrap();
        assert!(verifier(&other.root.cert_pem).verify_client_cert(&certs[0], &certs[1..], UnixTime::now()).is_err());
        // A rotated intermediate's SVIDs verify under the same root.
        let next = new_intermediate(&ca.root.cert_pem, &ca.root.key_pem, "example.org").unwrap();
        let issuer2 = SvidIssuer::load(&next.cert_pem, &next.key_pem, "example.org").unwrap();
        let (svid2, _) = issuer2.issue(&id, DEFAULT_SVID_TTL).unwrap();
        let certs2 = chain(&svid2.chain_pem);
        verifier(&ca.root.cert_pem).verify_client_cert(&certs2[0], &certs2[1..], UnixTime::now()).unwrap();
    }

    #[test]
    fn the_issuer_keeps_to_its_trust_domain_and_short_lifetimes() {
        let ca = init("example.org").unwrap();
        let issuer = SvidIssuer::load(&ca.intermediate.cert_pem, &ca.intermediate.key_pem, "example.org").unwrap();
        let foreign = SpiffeId::parse("spiffe://evil.org/x").unwrap();
        assert!(issuer.issue(&foreign, DEFAULT_SVID_TTL).is_err());
        let id = SpiffeId::parse("spiffe://example.org/x").unwrap();
        assert!(issuer.issue(&id, std::time::Duration::ZERO).is_err());
        assert!(issuer.issue(&id, MAX_SVID_TTL + std::time::Duration::from_secs(1)).is_err());
        assert!(init("Bad Domain").is_err());
    }

    #[test]
    fn a_csr_gets_ward_s_names_over_its_own_key() {
        let ca = init("example.org").unwrap();
        let issuer = SvidIssuer::load(&ca.intermediate.cert_pem, &ca.intermediate.key_pem, "example.org").unwrap();
        let workload_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut asks = CertificateParams::new(vec!["evil.example".to_owned()]).unwrap();
        asks.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let csr = asks.serialize_request(&workload_key).unwrap().pem().unwrap();
        let id = SpiffeId::parse("spiffe://example.org/payments").unwrap();
        let svid = issuer.issue_for_csr(&id, &csr, DEFAULT_SVID_TTL).unwrap();
        let certs = chain(&svid.chain_pem);
        verifier(&ca.root.cert_pem).verify_client_cert(&certs[0], &certs[1..], UnixTime::now()).unwrap();
        // The leaf's key is the workload's: its DER contains the public key.
        let der = certs[0].as_ref();
        let public = workload_key.public_key_raw();
        assert!(der.windows(public.len()).any(|w| w == public));
        assert!(
            issuer
                .issue_for_csr(
                    &id,
                    "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
                    DEFAULT_SVID_TTL
                )
                .is_err()
        );
    }
}

#[cfg(test)]
mod bundle_tests {
    use super::*;

    #[test]
    fn the_spiffe_bundle_carries_the_roots_as_x509_svid_keys() {
        use base64::Engine;
        use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
        let ca = init("example.org").unwrap();
        let other = init("example.org").unwrap();
        let pem = format!("{}{}", ca.root.cert_pem, other.root.cert_pem);
        let b = spiffe_bundle(&pem, 7, 300).unwrap();
        assert_eq!((b["spiffe_sequence"].as_u64(), b["spiffe_refresh_hint"].as_u64()), (Some(7), Some(300)));
        let keys = b["keys"].as_array().unwrap();
        assert_eq!(keys.len(), 2);
        let root_key = KeyPair::from_pem(&ca.root.key_pem).unwrap();
        let raw = root_key.public_key_raw();
        assert_eq!(keys[0]["use"], "x509-svid");
        assert_eq!(URL_SAFE_NO_PAD.decode(keys[0]["x"].as_str().unwrap()).unwrap(), &raw[1..33]);
        assert_eq!(URL_SAFE_NO_PAD.decode(keys[0]["y"].as_str().unwrap()).unwrap(), &raw[33..65]);
        let der = STANDARD.decode(keys[0]["x5c"][0].as_str().unwrap()).unwrap();
        let expected = rustls_pki_types::pem::PemObject::from_pem_slice(ca.root.cert_pem.as_bytes())
            .map(|c: rustls_pki_types::CertificateDer<'static>| c.to_vec())
            .unwrap();
        assert_eq!(der, expected);
        assert!(spiffe_bundle("", 1, 1).is_err());
    }
}
