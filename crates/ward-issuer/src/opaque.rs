//! Opaque bearer values Ward hands out — authorization codes, refresh
//! tokens, login tickets: 256 random bits, base64url, behind a short prefix
//! that secret scanners can match. Only their SHA-256 is stored, so a copy
//! of the store does not hold usable credentials.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use zeroize::Zeroizing;

/// Prefix of refresh tokens.
pub const REFRESH_PREFIX: &str = "wrt_";
/// Prefix of authorization codes.
pub const CODE_PREFIX: &str = "wac_";

/// A new value with `prefix`, and the hash to store.
///
/// # Errors
/// [`ward_crypto::CryptoError`] if the system random source fails.
pub fn generate(prefix: &str) -> Result<(Zeroizing<String>, [u8; 32]), ward_crypto::CryptoError> {
    let raw: Zeroizing<[u8; 32]> = Zeroizing::new(ward_crypto::random_bytes()?);
    let mut text = Zeroizing::new(String::with_capacity(prefix.len() + 43));
    text.push_str(prefix);
    text.push_str(&URL_SAFE_NO_PAD.encode(raw.as_ref()));
    let hash = hash(&text);
    Ok((text, hash))
}

/// SHA-256 of a presented value: the key it is stored under.
#[must_use]
pub fn hash(value: &str) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, value.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_prefixed_random_and_stored_by_hash() {
        let (a, ha) = generate(REFRESH_PREFIX).unwrap();
        let (b, hb) = generate(REFRESH_PREFIX).unwrap();
        assert!(a.starts_with("wrt_") && a.len() == 4 + 43);
        assert_ne!((a.as_str(), ha), (b.as_str(), hb));
        assert_eq!(hash(&a), ha);
    }
}
