//! The signing key ring and its rotation rules.
//!
//! A verifier caches the issuer's JWK set; a token signed with a key it has
//! not seen yet fails until its cache refreshes, and a token whose key was
//! dropped from the set fails outright. So:
//!
//! - a new key is **published before it signs**: [`KeyRing::rotate`] adds it
//!   with an activation time `publish_lead` in the future (at least the
//!   verifiers' JWK-set cache lifetime); until then the previous key keeps
//!   signing;
//! - an old key **stays published until every token it signed has expired**:
//!   it stopped signing when its successor activated, so it is needed until
//!   that moment plus the longest token lifetime.
//!
//! Times are seconds since the Unix epoch, passed in (the core reads no clock).

use serde_json::{Value, json};
use ward_authn::{Algorithm, SignerError, TokenSigner};
use zeroize::Zeroizing;

/// The algorithm of a key Ward keeps: those of access tokens
/// ([`issued_algorithm`]) and RS256, which signs only OpenID Connect ID
/// tokens (OIDC Core §15.1 requires relying parties to verify it).
#[must_use]
pub fn stored_algorithm(name: &str) -> Option<Algorithm> {
    issued_algorithm(name).or((name == "RS256").then_some(Algorithm::Rs256))
}

/// The algorithms Ward signs with (`TokenSigner` supports no others), by
/// JOSE name: what a stored key or one of Ward's own token headers may say.
#[must_use]
pub fn issued_algorithm(name: &str) -> Option<Algorithm> {
    match name {
        "EdDSA" => Some(Algorithm::EdDsa),
        "ES256" => Some(Algorithm::Es256),
        _ => None,
    }
}

/// One key of the ring.
#[derive(Debug)]
pub struct RingKey {
    signer: TokenSigner,
    pkcs8: Zeroizing<Vec<u8>>,
    /// When it was added.
    pub created: u64,
    /// When it starts signing.
    pub activates: u64,
}

impl RingKey {
    /// A key from its PKCS#8 document.
    ///
    /// # Errors
    /// [`SignerError`] when the document is not a key for `alg`.
    pub fn new(alg: Algorithm, pkcs8: Zeroizing<Vec<u8>>, created: u64, activates: u64) -> Result<Self, SignerError> {
        Ok(Self { signer: TokenSigner::from_pkcs8(alg, &pkcs8)?, pkcs8, created, activates })
    }

    /// A freshly generated key.
    ///
    /// # Errors
    /// [`SignerError`] from key generation.
    pub fn generate(alg: Algorithm, created: u64, activates: u64) -> Result<Self, SignerError> {
        Self::new(alg, Zeroizing::new(TokenSigner::generate_pkcs8(alg)?), created, activates)
    }

    /// The key id (RFC 7638 thumbprint).
    #[must_use]
    pub fn kid(&self) -> &str {
        self.signer.kid()
    }

    /// The signer.
    #[must_use]
    pub fn signer(&self) -> &TokenSigner {
        &self.signer
    }

    /// The private key document (for the store that persists the ring; zeroized on drop).
    #[must_use]
    pub fn pkcs8(&self) -> &[u8] {
        &self.pkcs8
    }
}

/// Why the ring cannot do what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RingError {
    /// No key has activated yet (a ring always starts with an active key).
    #[error("no signing key is active")]
    NoActiveKey,
    /// A key with that id is already in the ring.
    #[error("key {0} is already in the ring")]
    Duplicate(String),
    /// The key cannot be used.
    #[error("key: {0}")]
    Key(#[from] SignerError),
}

/// The issuer's keys, oldest first.
#[derive(Debug)]
pub struct KeyRing {
    keys: Vec<RingKey>,
}

impl KeyRing {
    /// A ring whose first key signs at once (nobody can have cached a JWK
    /// set of an issuer that had no keys).
    #[must_use]
    pub fn new(first: RingKey) -> Self {
        Self { keys: vec![first] }
    }

    /// A ring restored from storage (oldest first).
    ///
    /// # Errors
    /// [`RingError::NoActiveKey`] for an empty list.
    pub fn from_keys(mut keys: Vec<RingKey>) -> Result<Self, RingError> {
        keys.sort_by_key(|k| (k.activates, k.created));
        if keys.is_empty() {
            return Err(RingError::NoActiveKey);
        }
        Ok(Self { keys })
    }

    /// Every key, oldest activation first.
    #[must_use]
    pub fn keys(&self) -> &[RingKey] {
        &self.keys
    }

    /// Add `key` to sign from `key.activates` on. Until then it is only published.
    ///
    /// # Errors
    /// [`RingError::Duplicate`] for a key already in the ring.
    pub fn rotate(&mut self, key: RingKey) -> Result<(), RingError> {
        if self.keys.iter().any(|k| k.kid() == key.kid()) {
            return Err(RingError::Duplicate(key.kid().to_owned()));
        }
        self.keys.push(key);
        self.keys.sort_by_key(|k| (k.activates, k.created));
        Ok(())
    }

    /// The key that signs at `now`: the most recently activated one.
    ///
    /// # Errors
    /// [`RingError::NoActiveKey`] when every key activates in the future.
    pub fn signing_key(&self, now: u64) -> Result<&RingKey, RingError> {
        self.keys.iter().rev().find(|k| k.activates <= now).ok_or(RingError::NoActiveKey)
    }

    /// When the key at position `i` stopped (or will stop) signing: the
    /// activation of the next key, if any.
    fn stops_signing(&self, i: usize) -> Option<u64> {
        self.keys.get(i + 1).map(|next| next.activates)
    }

    /// Whether a verifier still needs key `i` at `now`: it signs, will sign,
    /// or signed tokens that may not have expired (`max_ttl` seconds).
    fn needed(&self, i: usize, now: u64, max_ttl: u64) -> bool {
        match self.stops_signing(i) {
            None => true,
            Some(stop) => stop > now || stop.saturating_add(max_ttl) > now,
        }
    }

    /// The JWK set to publish at `now`: future keys, the signing key, and
    /// retired keys whose tokens may still be valid.
    #[must_use]
    pub fn jwks(&self, now: u64, max_ttl: u64) -> Value {
        let keys: Vec<Value> = (0..self.keys.len())
            .filter(|&i| self.needed(i, now, max_ttl))
            .map(|i| self.keys[i].signer.public_jwk())
            .collect();
        json!({ "keys": keys })
    }

    /// Drop keys no verifier can need any more; returns their ids (for the
    /// audit log). The signing key and future keys are never dropped.
    pub fn prune(&mut self, now: u64, max_ttl: u64) -> Vec<String> {
        let keep: Vec<bool> = (0..self.keys.len()).map(|i| self.needed(i, now, max_ttl)).collect();
        let mut removed = Vec::new();
        let mut i = 0;
        self.keys.retain(|k| {
            let kept = keep[i];
            i += 1;
            if !kept {
                removed.push(k.kid().to_owned());
            }
            kept
        });
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: u64 = 3600;
    const LEAD: u64 = 600;

    fn kids(v: &Value) -> Vec<String> {
        v["keys"]
            .as_array()
            .map(|a| a.iter().filter_map(|k| k["kid"].as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    }

    #[test]
    fn a_new_key_is_published_before_it_signs_and_the_old_one_stays_until_its_tokens_expire() {
        let first = RingKey::generate(Algorithm::EdDsa, 0, 0).unwrap();
        let a = first.kid().to_owned();
        let mut ring = KeyRing::new(first);
        assert_eq!(ring.signing_key(0).unwrap().kid(), a);

        // Rotate at t=1000: b is published now, signs from t=1600.
        let second = RingKey::generate(Algorithm::EdDsa, 1000, 1000 + LEAD).unwrap();
        let b = second.kid().to_owned();
        ring.rotate(second).unwrap();
        assert_eq!(ring.signing_key(1000).unwrap().kid(), a, "a keeps signing during the lead");
        assert_eq!(kids(&ring.jwks(1000, TTL)), [a.clone(), b.clone()], "b is published before it signs");
        assert_eq!(ring.signing_key(1600).unwrap().kid(), b);

        // a signed until 1600; its tokens live up to 1600 + TTL.
        assert_eq!(kids(&ring.jwks(1600 + TTL - 1, TTL)), [a.clone(), b.clone()]);
        assert_eq!(kids(&ring.jwks(1600 + TTL, TTL)), std::slice::from_ref(&b));
        assert!(ring.prune(1600 + TTL - 1, TTL).is_empty());
        assert_eq!(ring.prune(1600 + TTL, TTL), [a]);
        assert_eq!(ring.keys().len(), 1);
        assert_eq!(ring.signing_key(99_999).unwrap().kid(), b);
    }

    #[test]
    fn the_ring_refuses_duplicates_and_needs_an_active_key() {
        let k = RingKey::generate(Algorithm::Es256, 0, 0).unwrap();
        let again = RingKey::new(Algorithm::Es256, Zeroizing::new(k.pkcs8().to_vec()), 5, 5).unwrap();
        let mut ring = KeyRing::new(k);
        assert!(matches!(ring.rotate(again), Err(RingError::Duplicate(_))));
        let future = RingKey::generate(Algorithm::EdDsa, 0, 100).unwrap();
        let ring2 = KeyRing::from_keys(vec![future]).unwrap();
        assert_eq!(ring2.signing_key(50).unwrap_err(), RingError::NoActiveKey);
        assert!(KeyRing::from_keys(Vec::new()).is_err());
    }
}
