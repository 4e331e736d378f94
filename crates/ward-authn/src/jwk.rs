//! JSON Web Keys (RFC 7517) and key sets, turned into pinned verifying keys.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;

use crate::jws::{Algorithm, KeyError, VerifyingKey};

/// One key from a JWK set, as published.
#[derive(Debug, Clone, Deserialize)]
pub struct Jwk {
    /// Key type: `EC`, `OKP`, `RSA` (and `oct`, which is always refused).
    pub kty: String,
    /// Key identifier.
    #[serde(default)]
    pub kid: Option<String>,
    /// The algorithm the key is meant for; when absent it is inferred for EC and
    /// OKP keys from the curve, and required for RSA keys.
    #[serde(default)]
    pub alg: Option<String>,
    /// Intended use: only `sig` (or absent) keys are loaded.
    #[serde(default, rename = "use")]
    pub use_: Option<String>,
    /// Curve for EC and OKP keys.
    #[serde(default)]
    pub crv: Option<String>,
    /// EC x coordinate or OKP public key.
    #[serde(default)]
    pub x: Option<String>,
    /// EC y coordinate.
    #[serde(default)]
    pub y: Option<String>,
    /// RSA modulus.
    #[serde(default)]
    pub n: Option<String>,
    /// RSA public exponent.
    #[serde(default)]
    pub e: Option<String>,
    /// Private parts must never be published; their presence is an error.
    #[serde(default)]
    pub d: Option<String>,
}

/// A JWK set document.
#[derive(Debug, Clone, Deserialize)]
pub struct JwkSet {
    /// The keys.
    pub keys: Vec<Jwk>,
}

/// Why a JWK could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwkError {
    /// The document is not a JWK set.
    #[error("not a JWK set: {0}")]
    Syntax(String),
    /// A member is missing or not base64url.
    #[error("key `{kid}`: member `{member}` is missing or not base64url")]
    BadMember {
        /// The key's `kid` (or `?`).
        kid: String,
        /// The member name.
        member: &'static str,
    },
    /// Symmetric keys and private keys are never taken from a JWK set.
    #[error("key `{0}` is a symmetric or private key; JWK sets may only publish public keys")]
    NotPublic(String),
    /// The key type, curve or algorithm is not supported or does not fit.
    #[error("key `{kid}`: {reason}")]
    Unsupported {
        /// The key's `kid` (or `?`).
        kid: String,
        /// What is wrong.
        reason: String,
    },
    /// The key material is invalid.
    #[error("key `{kid}`: {source}")]
    Key {
        /// The key's `kid` (or `?`).
        kid: String,
        /// The underlying error.
        source: KeyError,
    },
}

impl Jwk {
    /// Turn this JWK into a key pinned to one algorithm.
    ///
    /// # Errors
    /// [`JwkError`] when the key is symmetric or private, of an unsupported
    /// type, inconsistent with its `alg`, or malformed.
    pub fn to_verifying_key(&self) -> Result<VerifyingKey, JwkError> {
        let kid = self.kid.clone().unwrap_or_else(|| "?".to_owned());
        if self.kty == "oct" || self.d.is_some() {
            return Err(JwkError::NotPublic(kid));
        }
        let unsupported = |reason: String| JwkError::Unsupported { kid: kid.clone(), reason };
        let declared = match self.alg.as_deref() {
            Some(a) => Some(a.parse::<Algorithm>().map_err(|e| unsupported(e.to_string()))?),
            None => None,
        };
        let member = |value: &Option<String>, member: &'static str| -> Result<Vec<u8>, JwkError> {
            value
                .as_deref()
                .and_then(|v| URL_SAFE_NO_PAD.decode(v).ok())
                .ok_or_else(|| JwkError::BadMember { kid: kid.clone(), member })
        };
        let key_err = |source: KeyError| JwkError::Key { kid: kid.clone(), source };
        match self.kty.as_str() {
            "EC" => {
                let (alg, len) = match self.crv.as_deref() {
                    Some("P-256") => (Algorithm::Es256, 32),
                    Some("P-384") => (Algorithm::Es384, 48),
                    other => return Err(unsupported(format!("unsupported EC curve {other:?}"))),
                };
                check_declared(declared, alg).map_err(unsupported)?;
                let (x, y) = (member(&self.x, "x")?, member(&self.y, "y")?);
                if x.len() != len || y.len() != len {
                    return Err(JwkError::BadMember { kid: kid.clone(), member: "x/y" });
                }
                let mut point = Vec::with_capacity(1 + 2 * len);
                point.push(0x04);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                VerifyingKey::from_public_der(alg, &point).map_err(key_err)
            }
            "OKP" => {
                if self.crv.as_deref() != Some("Ed25519") {
                    return Err(unsupported(format!("unsupported OKP curve {:?}", self.crv)));
                }
                check_declared(declared, Algorithm::EdDsa).map_err(unsupported)?;
                let x = member(&self.x, "x")?;
                if x.len() != 32 {
                    return Err(JwkError::BadMember { kid: kid.clone(), member: "x" });
                }
                VerifyingKey::from_public_der(Algorithm::EdDsa, &x).map_err(key_err)
            }
            "RSA" => {
                let alg = match declared {
                    Some(a @ (Algorithm::Rs256 | Algorithm::Ps256)) => a,
                    Some(other) => return Err(unsupported(format!("algorithm {other} does not fit an RSA key"))),
                    None => return Err(unsupported("RSA keys must declare `alg` (RS256 or PS256)".to_owned())),
                };
                let (n, e) = (member(&self.n, "n")?, member(&self.e, "e")?);
                VerifyingKey::from_rsa_components(alg, &n, &e).map_err(key_err)
            }
            other => Err(unsupported(format!("unsupported key type `{other}`"))),
        }
    }
}

fn check_declared(declared: Option<Algorithm>, implied: Algorithm) -> Result<(), String> {
    match declared {
        Some(d) if d != implied => Err(format!("declared alg {d} does not fit the key, which implies {implied}")),
        _ => Ok(()),
    }
}

impl JwkSet {
    /// Parse a JWK set document.
    ///
    /// # Errors
    /// [`JwkError::Syntax`] when the JSON is not a JWK set.
    pub fn parse(json: &[u8]) -> Result<Self, JwkError> {
        serde_json::from_slice(json).map_err(|e| JwkError::Syntax(e.to_string()))
    }

    /// The signature keys of this set, each pinned to its algorithm, with
    /// their `kid`. Keys whose `use` is not `sig` are skipped; any other bad
    /// key fails the whole set, so a typo is noticed rather than ignored.
    ///
    /// # Errors
    /// The first [`JwkError`] met.
    pub fn verifying_keys(&self) -> Result<Vec<(Option<String>, VerifyingKey)>, JwkError> {
        self.keys
            .iter()
            .filter(|k| k.use_.as_deref().is_none_or(|u| u == "sig"))
            .map(|k| Ok((k.kid.clone(), k.to_verifying_key()?)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_symmetric_and_private_keys() {
        let set = JwkSet::parse(br#"{"keys":[{"kty":"oct","kid":"h","k":"AAAA"}]}"#).unwrap();
        assert!(matches!(set.verifying_keys(), Err(JwkError::NotPublic(_))));
        let set = JwkSet::parse(
            br#"{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"p","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","d":"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"}]}"#,
        )
        .unwrap();
        assert!(matches!(set.verifying_keys(), Err(JwkError::NotPublic(_))));
    }

    #[test]
    fn loads_ed25519_and_checks_declared_alg() {
        let ok =
            br#"{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"e","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#;
        let keys = JwkSet::parse(ok).unwrap().verifying_keys().unwrap();
        assert_eq!(keys[0].1.algorithm(), Algorithm::EdDsa);
        let bad = br#"{"keys":[{"kty":"OKP","crv":"Ed25519","alg":"ES256","kid":"e","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#;
        assert!(JwkSet::parse(bad).unwrap().verifying_keys().is_err());
    }

    #[test]
    fn rsa_keys_need_an_alg_and_enc_keys_are_skipped() {
        let set = br#"{"keys":[{"kty":"RSA","kid":"r","n":"AQAB","e":"AQAB"},{"kty":"EC","use":"enc","crv":"P-256","x":"","y":""}]}"#;
        let parsed = JwkSet::parse(set).unwrap();
        assert!(matches!(parsed.verifying_keys(), Err(JwkError::Unsupported { .. })));
        let only_enc = br#"{"keys":[{"kty":"EC","use":"enc","crv":"P-256","x":"","y":""}]}"#;
        assert!(JwkSet::parse(only_enc).unwrap().verifying_keys().unwrap().is_empty());
    }
}
