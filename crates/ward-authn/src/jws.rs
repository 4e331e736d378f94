//! JWS algorithms and signature verification on aws-lc-rs.
//!
//! Every key is pinned to exactly one algorithm when it is loaded. A token's
//! `alg` header is only ever compared with that pin; it never chooses how a
//! key is used, which is what closes the `none` and key-confusion attacks.

use std::fmt;
use std::str::FromStr;

use aws_lc_rs::signature::{self, ParsedPublicKey};
use aws_lc_rs::{hmac, rsa};
use ward_crypto::SecretBytes;

/// A JWS algorithm Ward can verify. `none` is deliberately absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// Ed25519 (RFC 8037).
    EdDsa,
    /// ECDSA P-256 with SHA-256, signature as raw `r || s`.
    Es256,
    /// ECDSA P-384 with SHA-384, signature as raw `r || s`.
    Es384,
    /// RSASSA-PKCS1-v1_5 with SHA-256, keys of 2048 to 8192 bits.
    Rs256,
    /// RSASSA-PSS with SHA-256 and MGF1-SHA-256, keys of 2048 to 8192 bits.
    Ps256,
    /// HMAC-SHA-256 with a shared secret of at least 256 bits. Only for keys
    /// configured explicitly as secrets; never for a key from a JWK set.
    Hs256,
}

impl Algorithm {
    /// The JOSE name (`ES256`, `EdDSA`, ...).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::EdDsa => "EdDSA",
            Self::Es256 => "ES256",
            Self::Es384 => "ES384",
            Self::Rs256 => "RS256",
            Self::Ps256 => "PS256",
            Self::Hs256 => "HS256",
        }
    }

    /// Whether the algorithm uses a public key (as opposed to a shared secret).
    #[must_use]
    pub const fn is_asymmetric(self) -> bool {
        !matches!(self, Self::Hs256)
    }

    fn verification(self) -> Option<&'static dyn signature::VerificationAlgorithm> {
        Some(match self {
            Self::EdDsa => &signature::ED25519,
            Self::Es256 => &signature::ECDSA_P256_SHA256_FIXED,
            Self::Es384 => &signature::ECDSA_P384_SHA384_FIXED,
            Self::Rs256 => &signature::RSA_PKCS1_2048_8192_SHA256,
            Self::Ps256 => &signature::RSA_PSS_2048_8192_SHA256,
            Self::Hs256 => return None,
        })
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Algorithm {
    type Err = KeyError;

    /// Parse a JOSE algorithm name exactly (names are case-sensitive).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "EdDSA" => Self::EdDsa,
            "ES256" => Self::Es256,
            "ES384" => Self::Es384,
            "RS256" => Self::Rs256,
            "PS256" => Self::Ps256,
            "HS256" => Self::Hs256,
            other => return Err(KeyError::UnsupportedAlgorithm(other.to_owned())),
        })
    }
}

/// Why a key could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The algorithm name is not one Ward verifies.
    #[error("unsupported algorithm `{0}` (supported: EdDSA, ES256, ES384, RS256, PS256, HS256)")]
    UnsupportedAlgorithm(String),
    /// The public key bytes do not form a valid key for the algorithm.
    #[error("the key is not a valid {0} public key")]
    InvalidPublicKey(Algorithm),
    /// An HMAC secret is shorter than 256 bits.
    #[error("an HS256 secret must be at least 32 bytes, got {0}")]
    SecretTooShort(usize),
    /// A public-key algorithm was paired with a secret, or the reverse.
    #[error("algorithm {0} does not match the kind of key given")]
    KindMismatch(Algorithm),
}

/// A key that verifies exactly one algorithm.
#[derive(Clone)]
pub struct VerifyingKey {
    alg: Algorithm,
    material: Material,
}

#[derive(Clone)]
enum Material {
    Public(ParsedPublicKey),
    Secret(Box<hmac::Key>),
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey").field("alg", &self.alg).finish_non_exhaustive()
    }
}

impl VerifyingKey {
    /// A public key given as SubjectPublicKeyInfo DER, or in the raw form aws-lc-rs
    /// accepts for the algorithm (uncompressed SEC1 point for ECDSA, 32 bytes for
    /// Ed25519, PKCS#1 `RSAPublicKey` for RSA).
    ///
    /// # Errors
    /// [`KeyError::KindMismatch`] for HS256, [`KeyError::InvalidPublicKey`] for bad bytes.
    pub fn from_public_der(alg: Algorithm, der: &[u8]) -> Result<Self, KeyError> {
        let verification = alg.verification().ok_or(KeyError::KindMismatch(alg))?;
        let key = ParsedPublicKey::new(verification, der).map_err(|_| KeyError::InvalidPublicKey(alg))?;
        Ok(Self { alg, material: Material::Public(key) })
    }

    /// An RSA public key from its big-endian modulus and exponent (a JWK's `n` and `e`).
    ///
    /// # Errors
    /// [`KeyError::InvalidPublicKey`] when the components do not form a usable key.
    pub fn from_rsa_components(alg: Algorithm, n: &[u8], e: &[u8]) -> Result<Self, KeyError> {
        if !matches!(alg, Algorithm::Rs256 | Algorithm::Ps256) {
            return Err(KeyError::KindMismatch(alg));
        }
        use aws_lc_rs::encoding::AsDer;
        let components = rsa::PublicKeyComponents { n, e };
        let der = components.as_der().map_err(|_| KeyError::InvalidPublicKey(alg))?;
        Self::from_public_der(alg, der.as_ref())
    }

    /// An HS256 shared secret. Refuses secrets shorter than 256 bits.
    ///
    /// # Errors
    /// [`KeyError::SecretTooShort`] or [`KeyError::KindMismatch`].
    pub fn from_secret(alg: Algorithm, secret: &SecretBytes) -> Result<Self, KeyError> {
        if alg != Algorithm::Hs256 {
            return Err(KeyError::KindMismatch(alg));
        }
        if secret.len() < 32 {
            return Err(KeyError::SecretTooShort(secret.len()));
        }
        Ok(Self { alg, material: Material::Secret(Box::new(hmac::Key::new(hmac::HMAC_SHA256, secret.expose()))) })
    }

    /// The one algorithm this key verifies.
    #[must_use]
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

/// Verify `signature` over `message` with `key`, which must be pinned to `alg`.
///
/// This is the single signature path of the gateway: JWT verification calls
/// it and the Wycheproof conformance tests exercise it directly.
#[must_use]
pub fn verify_signature(alg: Algorithm, key: &VerifyingKey, message: &[u8], signature: &[u8]) -> bool {
    if key.alg != alg {
        return false;
    }
    match &key.material {
        Material::Public(k) => k.verify_sig(message, signature).is_ok(),
        Material::Secret(k) => hmac::verify(k, message, signature).is_ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair};

    #[test]
    fn a_key_never_verifies_another_algorithm() {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
        let key = VerifyingKey::from_public_der(Algorithm::Es256, pair.public_key().as_ref()).unwrap();
        let sig = pair.sign(&rng, b"msg").unwrap();
        assert!(verify_signature(Algorithm::Es256, &key, b"msg", sig.as_ref()));
        assert!(!verify_signature(Algorithm::Es256, &key, b"msh", sig.as_ref()));
        assert!(!verify_signature(Algorithm::Hs256, &key, b"msg", sig.as_ref()));
        assert!(!verify_signature(Algorithm::Es384, &key, b"msg", sig.as_ref()));
    }

    #[test]
    fn short_hmac_secrets_and_none_are_refused() {
        assert_eq!(
            VerifyingKey::from_secret(Algorithm::Hs256, &SecretBytes::new(vec![7; 31])).err(),
            Some(KeyError::SecretTooShort(31))
        );
        assert!("none".parse::<Algorithm>().is_err());
        assert!("es256".parse::<Algorithm>().is_err());
        assert!(VerifyingKey::from_public_der(Algorithm::Hs256, &[4; 65]).is_err());
    }
}
