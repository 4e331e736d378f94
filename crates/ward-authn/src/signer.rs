//! Signing tokens with the local issuer's key (ES256 or EdDSA), and
//! OpenID Connect ID tokens with RS256 (OIDC Core §15.1: every relying
//! party must be able to verify RS256).

use std::fmt;

use aws_lc_rs::digest;
use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use ward_core::Claims;

use crate::jws::Algorithm;

/// Why a signer could not be built or could not sign.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignerError {
    /// The PKCS#8 document is not a key for the algorithm.
    #[error("the private key is not a valid PKCS#8 {0} key")]
    InvalidKey(Algorithm),
    /// Only ES256, EdDSA and (2048-bit or larger) RS256 keys are issued by Ward.
    #[error("Ward signs with ES256, EdDSA or RS256, not {0}")]
    UnsupportedAlgorithm(Algorithm),
    /// Key generation or signing failed in the crypto library.
    #[error("signing failed")]
    Crypto,
}

enum Pair {
    Es256(EcdsaKeyPair),
    EdDsa(Ed25519KeyPair),
    Rs256(RsaKeyPair),
}

/// The smallest RSA modulus Ward signs with, in bytes (2048 bits).
const MIN_RSA_BYTES: usize = 256;

/// The local issuer's signing key.
pub struct TokenSigner {
    pair: Pair,
    kid: String,
    rng: SystemRandom,
}

impl fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSigner").field("alg", &self.algorithm()).field("kid", &self.kid).finish_non_exhaustive()
    }
}

impl TokenSigner {
    /// Generate a fresh PKCS#8 private key for `alg`.
    ///
    /// # Errors
    /// [`SignerError::UnsupportedAlgorithm`] or [`SignerError::Crypto`].
    pub fn generate_pkcs8(alg: Algorithm) -> Result<Vec<u8>, SignerError> {
        let rng = SystemRandom::new();
        match alg {
            Algorithm::Es256 => EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                .map(|d| d.as_ref().to_vec())
                .map_err(|_| SignerError::Crypto),
            Algorithm::EdDsa => {
                Ed25519KeyPair::generate_pkcs8(&rng).map(|d| d.as_ref().to_vec()).map_err(|_| SignerError::Crypto)
            }
            Algorithm::Rs256 => RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                .and_then(|k| k.as_der())
                .map(|d| d.as_ref().to_vec())
                .map_err(|_| SignerError::Crypto),
            other => Err(SignerError::UnsupportedAlgorithm(other)),
        }
    }

    /// Load a signer from a PKCS#8 private key. The `kid` is the key's
    /// RFC 7638 thumbprint, so it changes exactly when the key does.
    ///
    /// # Errors
    /// [`SignerError`] when the key does not fit the algorithm.
    pub fn from_pkcs8(alg: Algorithm, pkcs8: &[u8]) -> Result<Self, SignerError> {
        let pair = match alg {
            Algorithm::Es256 => Pair::Es256(
                EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8)
                    .map_err(|_| SignerError::InvalidKey(alg))?,
            ),
            Algorithm::EdDsa => {
                Pair::EdDsa(Ed25519KeyPair::from_pkcs8(pkcs8).map_err(|_| SignerError::InvalidKey(alg))?)
            }
            Algorithm::Rs256 => {
                let pair = RsaKeyPair::from_pkcs8(pkcs8).map_err(|_| SignerError::InvalidKey(alg))?;
                if pair.public_modulus_len() < MIN_RSA_BYTES {
                    return Err(SignerError::InvalidKey(alg));
                }
                Pair::Rs256(pair)
            }
            other => return Err(SignerError::UnsupportedAlgorithm(other)),
        };
        let mut signer = Self { pair, kid: String::new(), rng: SystemRandom::new() };
        signer.kid = signer.thumbprint();
        Ok(signer)
    }

    /// The signing algorithm.
    #[must_use]
    pub fn algorithm(&self) -> Algorithm {
        match self.pair {
            Pair::Es256(_) => Algorithm::Es256,
            Pair::EdDsa(_) => Algorithm::EdDsa,
            Pair::Rs256(_) => Algorithm::Rs256,
        }
    }

    /// The key identifier placed in every token header.
    #[must_use]
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key as a JWK (with `kid`, `alg` and `use`).
    #[must_use]
    pub fn public_jwk(&self) -> Value {
        let mut jwk = self.required_members();
        if let Value::Object(map) = &mut jwk {
            map.insert("kid".into(), Value::String(self.kid.clone()));
            map.insert("alg".into(), Value::String(self.algorithm().as_str().to_owned()));
            map.insert("use".into(), Value::String("sig".into()));
        }
        jwk
    }

    /// A JWK set holding the public key.
    #[must_use]
    pub fn public_jwk_set(&self) -> Value {
        json!({ "keys": [self.public_jwk()] })
    }

    fn required_members(&self) -> Value {
        match &self.pair {
            Pair::Es256(p) => {
                let point = p.public_key().as_ref();
                let x = point.get(1..33).unwrap_or_default();
                let y = point.get(33..65).unwrap_or_default();
                json!({"crv": "P-256", "kty": "EC", "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y)})
            }
            Pair::EdDsa(p) => {
                json!({"crv": "Ed25519", "kty": "OKP", "x": URL_SAFE_NO_PAD.encode(p.public_key().as_ref())})
            }
            Pair::Rs256(p) => {
                let (n, e) = (p.public_key().modulus(), p.public_key().exponent());
                json!({
                    "e": URL_SAFE_NO_PAD.encode(e.big_endian_without_leading_zero()),
                    "kty": "RSA",
                    "n": URL_SAFE_NO_PAD.encode(n.big_endian_without_leading_zero()),
                })
            }
        }
    }

    fn thumbprint(&self) -> String {
        // RFC 7638: the required members in lexicographic order, no whitespace;
        // serde_json's map is ordered, and json! above lists them sorted.
        let canonical = self.required_members().to_string();
        URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, canonical.as_bytes()).as_ref())
    }

    /// Sign `claims` as a compact JWS with `typ: JWT`.
    ///
    /// # Errors
    /// [`SignerError::Crypto`] if signing fails.
    pub fn sign(&self, claims: &Claims) -> Result<String, SignerError> {
        self.sign_typed(claims, "JWT")
    }

    /// Sign `claims` with an explicit `typ` (RFC 8725 §3.11), for documents
    /// that must never pass for access tokens (e.g. `ward-registry+jwt`).
    ///
    /// # Errors
    /// [`SignerError::Crypto`] if signing fails.
    pub fn sign_typed(&self, claims: &Claims, typ: &str) -> Result<String, SignerError> {
        let header = json!({"alg": self.algorithm().as_str(), "kid": self.kid, "typ": typ});
        let mut token = URL_SAFE_NO_PAD.encode(header.to_string());
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(Value::Object(claims.clone()).to_string()));
        let sig = match &self.pair {
            Pair::Es256(p) => p.sign(&self.rng, token.as_bytes()).map_err(|_| SignerError::Crypto)?.as_ref().to_vec(),
            Pair::EdDsa(p) => p.sign(token.as_bytes()).as_ref().to_vec(),
            Pair::Rs256(p) => {
                let mut sig = vec![0; p.public_modulus_len()];
                p.sign(&signature::RSA_PKCS1_SHA256, &self.rng, token.as_bytes(), &mut sig)
                    .map_err(|_| SignerError::Crypto)?;
                sig
            }
        };
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(sig));
        Ok(token)
    }
}
