//! The embedded deployment's PKI: a local CA and the gateway's server
//! certificate, generated with rcgen on aws-lc-rs.
//!
//! [`ca`] is the trust domain's CA: a root, an intermediate, and the
//! X.509-SVIDs it signs. Nothing here touches the file system: callers
//! write the PEM text (keys with mode 0600).
#![forbid(unsafe_code)]

pub mod ca;
pub mod sign;
pub mod verify;

/// For [`forward_signature_checks!`]'s paths in other crates.
#[doc(hidden)]
pub use rustls as __rustls;

use std::fmt;
use std::net::IpAddr;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};
use zeroize::Zeroizing;

/// Errors from certificate generation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PkiError {
    /// rcgen refused the parameters or the signing failed.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    /// A name is not usable: a SAN that is neither a DNS name nor an IP
    /// address, a SPIFFE ID or trust domain that does not parse or belongs
    /// elsewhere, a lifetime out of bounds.
    #[error("`{0}` is not a valid name here")]
    BadName(String),
    /// The system random source failed.
    #[error("the system random generator failed")]
    Random,
}

/// A certificate and its private key, both PEM. The key is wiped on drop and
/// never shown by `Debug`.
pub struct CertAndKey {
    /// The certificate (PEM).
    pub cert_pem: String,
    /// The PKCS#8 private key (PEM).
    pub key_pem: Zeroizing<String>,
}

impl fmt::Debug for CertAndKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertAndKey").field("cert_pem", &self.cert_pem).field("key_pem", &"[redacted]").finish()
    }
}

/// A freshly generated CA together with a server certificate it signed.
#[derive(Debug)]
pub struct LocalPki {
    /// The CA (10 years, path length 0, ECDSA P-256).
    pub ca: CertAndKey,
    /// The server certificate (1 year, serverAuth, ECDSA P-256).
    pub server: CertAndKey,
}

/// Generate a CA named `ca_name` and a server certificate for `names`
/// (DNS names or IP addresses).
///
/// # Errors
/// [`PkiError`] for a bad name or a generation failure.
pub fn generate_local_pki(ca_name: &str, names: &[&str]) -> Result<LocalPki, PkiError> {
    let now = OffsetDateTime::now_utc();
    let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut ca_params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, ca_name);
    dn.push(DnType::OrganizationName, "Ward");
    ca_params.distinguished_name = dn;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages =
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    ca_params.not_before = now - Duration::hours(1);
    ca_params.not_after = now + Duration::days(3650);
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let ca = CertAndKey { cert_pem: ca_cert.pem(), key_pem: Zeroizing::new(ca_key.serialize_pem()) };
    let issuer = Issuer::new(ca_params, ca_key);

    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, names.first().copied().unwrap_or("localhost"));
    params.distinguished_name = dn;
    params.subject_alt_names = names
        .iter()
        .map(|n| match n.parse::<IpAddr>() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => n.to_string().try_into().map(SanType::DnsName).map_err(|_| PkiError::BadName((*n).to_owned())),
        })
        .collect::<Result<_, _>>()?;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(365);
    let server_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let server_cert = params.signed_by(&server_key, &issuer)?;
    let server = CertAndKey { cert_pem: server_cert.pem(), key_pem: Zeroizing::new(server_key.serialize_pem()) };
    Ok(LocalPki { ca, server })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_certificate_chains_to_the_ca() {
        use rustls::client::danger::ServerCertVerifier;
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

        let pki = generate_local_pki("Ward test CA", &["localhost", "127.0.0.1"]).unwrap();
        let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from_pem_slice(pki.ca.cert_pem.as_bytes()).unwrap()).unwrap();
        let verifier =
            rustls::client::WebPkiServerVerifier::builder_with_provider(roots.into(), provider).build().unwrap();
        let leaf = CertificateDer::from_pem_slice(pki.server.cert_pem.as_bytes()).unwrap();
        for name in ["localhost", "127.0.0.1"] {
            let name = ServerName::try_from(name).unwrap();
            verifier.verify_server_cert(&leaf, &[], &name, &[], UnixTime::now()).unwrap();
        }
        let other = ServerName::try_from("example.com").unwrap();
        assert!(verifier.verify_server_cert(&leaf, &[], &other, &[], UnixTime::now()).is_err());
        assert!(!format!("{pki:?}").contains("PRIVATE KEY"));
    }
}
