//! Keyed hashing (HMAC-SHA256) and constant-time comparison.

use aws_lc_rs::{constant_time, hmac, rand};

use crate::{CryptoError, SecretBytes};

/// Keyed hashing for values that must be correlatable but not readable in
/// logs (client IP addresses, subjects): the same input gives the same tag
/// under one key, and without the key the input cannot be recovered by
/// brute-forcing the small space of IP addresses.
#[derive(Clone)]
pub struct KeyedHasher {
    key: hmac::Key,
}

impl std::fmt::Debug for KeyedHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyedHasher(HMAC-SHA256, [redacted])")
    }
}

impl KeyedHasher {
    /// Shortest key accepted: 256 bits.
    pub const MIN_KEY_LEN: usize = 32;

    /// Create a hasher from a secret key of at least 32 bytes.
    ///
    /// # Errors
    /// [`CryptoError::KeyTooShort`] for a shorter key.
    pub fn new(key: &SecretBytes) -> Result<Self, CryptoError> {
        if key.len() < Self::MIN_KEY_LEN {
            return Err(CryptoError::KeyTooShort { actual: key.len(), minimum: Self::MIN_KEY_LEN });
        }
        Ok(Self { key: hmac::Key::new(hmac::HMAC_SHA256, key.expose()) })
    }

    /// The tag of `data`, hex encoded and truncated to 128 bits (enough to
    /// correlate, short enough for a log line).
    #[must_use]
    pub fn tag_hex(&self, data: &[u8]) -> String {
        let tag = hmac::sign(&self.key, data);
        hex(tag.as_ref().get(..16).unwrap_or_default())
    }
}

/// Compare two secrets in time that depends only on their lengths.
#[must_use]
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    constant_time::verify_slices_are_equal(a, b).is_ok()
}

/// Fill a fresh array from the system random generator.
///
/// # Errors
/// [`CryptoError::Random`] if the generator fails.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], CryptoError> {
    rand::generate(&rand::SystemRandom::new())
        .map(|r: rand::Random<[u8; N]>| r.expose())
        .map_err(|_| CryptoError::Random)
}

/// SHA-256 of `data`, hex encoded (content digests, not secrets).
#[must_use]
pub fn sha256_hex(data: &[u8]) -> String {
    hex(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data).as_ref())
}

fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_stable_per_key_and_differ_across_keys() {
        let a = KeyedHasher::new(&SecretBytes::new(vec![1; 32])).unwrap();
        let b = KeyedHasher::new(&SecretBytes::new(vec![2; 32])).unwrap();
        assert_eq!(a.tag_hex(b"10.0.0.1"), a.tag_hex(b"10.0.0.1"));
        assert_ne!(a.tag_hex(b"10.0.0.1"), a.tag_hex(b"10.0.0.2"));
        assert_ne!(a.tag_hex(b"10.0.0.1"), b.tag_hex(b"10.0.0.1"));
        assert_eq!(a.tag_hex(b"x").len(), 32);
    }

    #[test]
    fn short_keys_are_rejected() {
        assert!(KeyedHasher::new(&SecretBytes::new(vec![1; 31])).is_err());
    }

    #[test]
    fn constant_time_eq_compares() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }

    #[test]
    fn sha256_matches_the_standard_vector() {
        assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn random_bytes_differ() {
        let a: [u8; 16] = random_bytes().unwrap();
        let b: [u8; 16] = random_bytes().unwrap();
        assert_ne!(a, b);
    }
}
