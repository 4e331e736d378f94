//! Signed service-to-service messages: detached JWS (RFC 7515 Appendix F,
//! with the unencoded-payload option of RFC 7797) made with an SVID's key
//! and carrying the SVID chain in `x5c`, so a receiver needs only the trust
//! bundle to know which workload signed.
//!
//! `sign` produces `<header>..<signature>`; `verify` checks the chain
//! against the bundle (path validation by rustls-webpki, exactly one SPIFFE
//! URI SAN), optionally that the signer is an expected SPIFFE ID, and the
//! ES256 signature over the message bytes. Nothing in the header chooses
//! the algorithm: it must say ES256.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls_pki_types::pem::PemObject;
use serde_json::{Value, json};
use ward_core::SpiffeId;

use crate::verify::spiffe_id_of;

/// Why a signature was not made or not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    /// The key or certificates could not be used.
    #[error("unusable signing material: {0}")]
    Material(String),
    /// Not a detached JWS of the expected form.
    #[error("not a detached ES256 JWS with an x5c chain")]
    Malformed,
    /// The chain does not verify to the bundle, or its leaf is no SVID.
    #[error("the signer's certificate is not trusted: {0}")]
    Untrusted(String),
    /// Signed by another workload than expected.
    #[error("signed by {0}, not the expected workload")]
    OtherSigner(String),
    /// The signature does not match the message.
    #[error("the signature does not match the message")]
    BadSignature,
}

fn signing_input(header_b64: &str, message: &[u8]) -> Vec<u8> {
    // RFC 7797: with "b64": false the payload is used as is.
    let mut input = Vec::with_capacity(header_b64.len() + 1 + message.len());
    input.extend_from_slice(header_b64.as_bytes());
    input.push(b'.');
    input.extend_from_slice(message);
    input
}

/// Sign `message` with the SVID whose chain (leaf first) and PKCS#8 key
/// are given (PEM).
///
/// # Errors
/// [`SignError::Material`] for an unusable key or chain.
pub fn sign(chain_pem: &str, key_pem: &str, message: &[u8]) -> Result<String, SignError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| SignError::Material(e.to_string()))?;
    let leaf = chain.first().ok_or_else(|| SignError::Material("no certificate".into()))?;
    spiffe_id_of(leaf).map_err(|e| SignError::Material(e.to_string()))?;
    let key = rustls_pki_types::PrivatePkcs8KeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| SignError::Material(format!("key: {e}")))?;
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pair = aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        key.secret_pkcs8_der(),
    )
    .map_err(|_| SignError::Material("the key is not a P-256 PKCS#8 key".into()))?;
    let x5c: Vec<String> = chain.iter().map(|c| STANDARD.encode(c.as_ref())).collect();
    let header = json!({"alg": "ES256", "b64": false, "crit": ["b64"], "x5c": x5c});
    let header_b64 = URL_SAFE_NO_PAD.encode(header.to_string());
    let sig = pair
        .sign(&rng, &signing_input(&header_b64, message))
        .map_err(|_| SignError::Material("signing failed".into()))?;
    Ok(format!("{header_b64}..{}", URL_SAFE_NO_PAD.encode(sig.as_ref())))
}

/// Verify a detached signature over `message` against the trust `bundle`
/// (PEM roots); the signer's SPIFFE ID, which must be `expected` if given.
///
/// # Errors
/// [`SignError`] naming what did not hold.
pub fn verify(
    signature: &str,
    message: &[u8],
    bundle_pem: &str,
    expected: Option<&SpiffeId>,
) -> Result<SpiffeId, SignError> {
    verify_signer(signature, message, bundle_pem, expected).map(|s| s.id)
}

/// Who signed: the SPIFFE ID and the public key (SubjectPublicKeyInfo,
/// base64) of the signing SVID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signer {
    /// The signer's SPIFFE ID.
    pub id: SpiffeId,
    /// Its public key, as registry entries carry it.
    pub public_key: String,
}

/// As [`verify`], also returning the signer's public key (to match a registry entry).
///
/// # Errors
/// [`SignError`] naming what did not hold.
pub fn verify_signer(
    signature: &str,
    message: &[u8],
    bundle_pem: &str,
    expected: Option<&SpiffeId>,
) -> Result<Signer, SignError> {
    let mut parts = signature.trim().split('.');
    let (Some(header_b64), Some(""), Some(sig_b64), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(SignError::Malformed);
    };
    let header: Value = URL_SAFE_NO_PAD
        .decode(header_b64)
        .ok()
        .and_then(|h| serde_json::from_slice(&h).ok())
        .ok_or(SignError::Malformed)?;
    if header["alg"] != "ES256" || header["b64"] != false || header["crit"] != json!(["b64"]) {
        return Err(SignError::Malformed);
    }
    let chain: Vec<CertificateDer<'static>> = header["x5c"]
        .as_array()
        .ok_or(SignError::Malformed)?
        .iter()
        .map(|c| c.as_str().and_then(|s| STANDARD.decode(s).ok()).map(CertificateDer::from))
        .collect::<Option<_>>()
        .ok_or(SignError::Malformed)?;
    let (leaf, intermediates) = chain.split_first().ok_or(SignError::Malformed)?;
    let bundle: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(bundle_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| SignError::Untrusted(format!("bundle: {e}")))?;
    let roots = crate::verify::trust_roots(&bundle).map_err(SignError::Untrusted)?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let parsed = rustls::server::ParsedCertificate::try_from(leaf).map_err(|e| SignError::Untrusted(e.to_string()))?;
    rustls::client::verify_server_cert_signed_by_trust_anchor(
        &parsed,
        &roots,
        intermediates,
        UnixTime::now(),
        provider.signature_verification_algorithms.all,
    )
    .map_err(|e| SignError::Untrusted(e.to_string()))?;
    let signer = spiffe_id_of(leaf).map_err(|e| SignError::Untrusted(e.to_string()))?;
    if let Some(want) = expected
        && *want != signer
    {
        return Err(SignError::OtherSigner(signer.to_string()));
    }
    let (_, cert) = x509_parser::parse_x509_certificate(leaf).map_err(|_| SignError::Malformed)?;
    let public = cert.public_key().subject_public_key.data.to_vec();
    let sig = URL_SAFE_NO_PAD.decode(sig_b64).map_err(|_| SignError::Malformed)?;
    aws_lc_rs::signature::UnparsedPublicKey::new(&aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED, public)
        .verify(&signing_input(header_b64, message), &sig)
        .map_err(|_| SignError::BadSignature)?;
    Ok(Signer { id: signer, public_key: STANDARD.encode(cert.public_key().raw) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca;

    #[test]
    fn messages_signed_with_an_svid_verify_against_the_bundle_only() {
        let new = ca::init("example.org").unwrap();
        let issuer =
            ca::SvidIssuer::load(&new.intermediate.cert_pem, &new.intermediate.key_pem, "example.org").unwrap();
        let id = SpiffeId::parse("spiffe://example.org/billing").unwrap();
        let (svid, key) = issuer.issue(&id, ca::DEFAULT_SVID_TTL).unwrap();
        let jws = sign(&svid.chain_pem, &key, b"pay 10 EUR to alice").unwrap();
        assert_eq!(jws.split('.').nth(1), Some(""), "detached");
        assert_eq!(verify(&jws, b"pay 10 EUR to alice", &new.root.cert_pem, Some(&id)).unwrap(), id);
        assert_eq!(verify(&jws, b"pay 10 EUR to alice", &new.root.cert_pem, None).unwrap(), id);

        assert_eq!(verify(&jws, b"pay 99 EUR to alice", &new.root.cert_pem, None), Err(SignError::BadSignature));
        let other = SpiffeId::parse("spiffe://example.org/payroll").unwrap();
        assert!(matches!(
            verify(&jws, b"pay 10 EUR to alice", &new.root.cert_pem, Some(&other)),
            Err(SignError::OtherSigner(_))
        ));
        let stranger = ca::init("example.org").unwrap();
        assert!(matches!(
            verify(&jws, b"pay 10 EUR to alice", &stranger.root.cert_pem, None),
            Err(SignError::Untrusted(_))
        ));
        // The header cannot choose another algorithm.
        let (h, s) = jws.split_once("..").unwrap();
        let mut header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).unwrap()).unwrap();
        header["alg"] = json!("none");
        let forged = format!("{}..{s}", URL_SAFE_NO_PAD.encode(header.to_string()));
        assert_eq!(verify(&forged, b"pay 10 EUR to alice", &new.root.cert_pem, None), Err(SignError::Malformed));
        assert_eq!(verify("a.b.c", b"x", &new.root.cert_pem, None), Err(SignError::Malformed));
    }
}
