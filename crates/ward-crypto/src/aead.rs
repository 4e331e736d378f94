//! Authenticated encryption for values Ward hands to clients and reads
//! back — the gateway's login state and session cookies: AES-256-GCM-SIV
//! (RFC 8452) from aws-lc-rs with a random 96-bit nonce per message
//! (aws-lc-rs draws it), so the client can neither read nor change what it
//! carries.
//!
//! GCM-SIV rather than GCM: with random nonces, plain GCM allows only about
//! 2^32 messages per key (NIST SP 800-38D §8.3) and a repeated nonce leaks
//! the authentication key; GCM-SIV derives a key per nonce and a repeat only
//! reveals that two messages were equal, so one long-lived session key is
//! safe far beyond any gateway's lifetime (RFC 8452 §9).
//!
//! The additional data names the purpose (`ward-session`,
//! `ward-login-state`): a value sealed for one purpose does not open as
//! another.

use aws_lc_rs::aead::{AES_256_GCM_SIV, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};

use crate::{CryptoError, SecretBytes};

/// Key length (AES-256-GCM-SIV).
pub const KEY_LEN: usize = 32;

/// Seals and opens values under one key.
pub struct Sealer {
    key: RandomizedNonceKey,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(…)")
    }
}

/// A sealed value did not open: wrong key, wrong purpose, or changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the value does not open with this key and purpose")]
pub struct Unsealable;

impl Sealer {
    /// A sealer over exactly [`KEY_LEN`] key bytes.
    ///
    /// # Errors
    /// [`CryptoError::KeyTooShort`] for any other length.
    pub fn new(key: &SecretBytes) -> Result<Self, CryptoError> {
        if key.len() != KEY_LEN {
            return Err(CryptoError::KeyTooShort { actual: key.len(), minimum: KEY_LEN });
        }
        let key = RandomizedNonceKey::new(&AES_256_GCM_SIV, key.expose()).map_err(|_| CryptoError::Random)?;
        Ok(Self { key })
    }

    /// `nonce ‖ ciphertext ‖ tag` of `plaintext`, bound to `purpose`.
    ///
    /// # Errors
    /// [`CryptoError::Random`] if no nonce could be drawn.
    pub fn seal(&self, purpose: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let mut in_out = plaintext.to_vec();
        let nonce =
            self.key.seal_in_place_append_tag(Aad::from(purpose), &mut in_out).map_err(|_| CryptoError::Random)?;
        let mut out = Vec::with_capacity(NONCE_LEN + in_out.len());
        out.extend_from_slice(nonce.as_ref());
        out.extend_from_slice(&in_out);
        Ok(out)
    }

    /// The plaintext of a value [`Self::seal`]ed under this key for `purpose`.
    ///
    /// # Errors
    /// [`Unsealable`] for anything else.
    pub fn open(&self, purpose: &[u8], sealed: &[u8]) -> Result<Vec<u8>, Unsealable> {
        if sealed.len() < NONCE_LEN + AES_256_GCM_SIV.tag_len() {
            return Err(Unsealable);
        }
        let (nonce, rest) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| Unsealable)?;
        let mut in_out = rest.to_vec();
        let plain = self.key.open_in_place(nonce, Aad::from(purpose), &mut in_out).map_err(|_| Unsealable)?;
        Ok(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealer(byte: u8) -> Sealer {
        Sealer::new(&SecretBytes::new(vec![byte; KEY_LEN])).unwrap()
    }

    #[test]
    fn values_open_only_with_their_key_and_purpose_and_unchanged() {
        let s = sealer(1);
        let sealed = s.seal(b"ward-session", b"alice").unwrap();
        assert_eq!(s.open(b"ward-session", &sealed).unwrap(), b"alice");
        assert_ne!(s.seal(b"ward-session", b"alice").unwrap(), sealed, "a fresh nonce every time");
        assert_eq!(s.open(b"ward-login-state", &sealed), Err(Unsealable), "another purpose");
        assert_eq!(sealer(2).open(b"ward-session", &sealed), Err(Unsealable), "another key");
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 1;
            assert_eq!(s.open(b"ward-session", &bad), Err(Unsealable), "byte {i} flipped");
        }
        assert_eq!(s.open(b"ward-session", &sealed[..20]), Err(Unsealable));
        assert!(Sealer::new(&SecretBytes::new(vec![0; 16])).is_err());
    }
}
