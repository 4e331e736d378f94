//! Ward's local users (for the authorization-code login page): passwords
//! hashed with argon2id (OWASP's parameters: 19 MiB, 2 passes, 1 lane),
//! never stored or logged in clear.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use crate::error::OAuthError;

/// Shortest accepted password (NIST SP 800-63B asks for at least 8).
pub const MIN_PASSWORD: usize = 12;

fn argon2() -> Result<Argon2<'static>, OAuthError> {
    let params = Params::new(19 * 1024, 2, 1, None).map_err(|e| OAuthError::InvalidRequest(e.to_string()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Validate a username: 1–64 of `[a-z0-9._-]` (lower case, so `Alice` and
/// `alice` cannot be two accounts).
///
/// # Errors
/// [`OAuthError::InvalidRequest`].
pub fn check_username(name: &str) -> Result<(), OAuthError> {
    if name.is_empty()
        || name.len() > 64
        || !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
    {
        return Err(OAuthError::InvalidRequest("username must be 1-64 of a-z 0-9 . _ -".into()));
    }
    Ok(())
}

/// Hash a new password (PHC string: algorithm, parameters, salt, hash).
///
/// # Errors
/// [`OAuthError::InvalidRequest`] for a password that is too short or too
/// long (over 1,024 bytes: hashing cost is a denial-of-service lever).
pub fn hash_password(password: &str) -> Result<String, OAuthError> {
    if password.chars().count() < MIN_PASSWORD || password.len() > 1024 {
        return Err(OAuthError::InvalidRequest(format!("password must be {MIN_PASSWORD} to 1024 characters")));
    }
    // The salt comes from aws-lc's generator, the one crypto stack.
    let raw: [u8; 16] = ward_crypto::random_bytes().map_err(|e| OAuthError::InvalidRequest(e.to_string()))?;
    let salt = SaltString::encode_b64(&raw).map_err(|e| OAuthError::InvalidRequest(e.to_string()))?;
    argon2()?
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| OAuthError::InvalidRequest(e.to_string()))
}

/// Check `password` against a stored PHC hash. Only argon2id hashes are accepted.
#[must_use]
pub fn verify_password(password: &str, phc: &str) -> bool {
    if password.len() > 1024 {
        return false;
    }
    let Ok(parsed) = PasswordHash::new(phc) else { return false };
    if parsed.algorithm.as_str() != "argon2id" {
        return false;
    }
    argon2().is_ok_and(|a| a.verify_password(password.as_bytes(), &parsed).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_with_argon2id_and_verify() {
        let h = hash_password("correct horse battery staple").unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(verify_password("correct horse battery staple", &h));
        assert!(!verify_password("correct horse battery stapler", &h));
        assert_ne!(h, hash_password("correct horse battery staple").unwrap(), "salted");
        assert!(hash_password("short").is_err());
        assert!(hash_password(&"x".repeat(2000)).is_err());
        assert!(!verify_password("x", "not a phc string"));
        // Other algorithms are not accepted even when well formed.
        assert!(!verify_password("correct horse battery staple", &h.replace("argon2id", "argon2i")));
    }

    #[test]
    fn usernames_are_lower_case_and_plain() {
        assert!(check_username("alice.smith-1").is_ok());
        for bad in ["", "Alice", "a b", "a/b", &"a".repeat(65)] {
            assert!(check_username(bad).is_err(), "{bad}");
        }
    }
}
