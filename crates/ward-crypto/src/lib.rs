//! Small, audited building blocks on aws-lc-rs: keyed hashing for personal
//! data, masking for logs, constant-time comparison, secret bytes that are
//! wiped when dropped, and authenticated encryption of values handed to
//! clients ([`aead`]).
//!
//! No primitive is implemented here; everything delegates to aws-lc-rs.
#![forbid(unsafe_code)]

pub mod aead;
mod keyed;
mod mask;
mod secret;

pub use aead::{Sealer, Unsealable};
pub use keyed::{KeyedHasher, constant_time_eq, random_bytes, sha256_hex};
pub use mask::{mask_email, mask_personal_data, mask_phone};
pub use secret::SecretBytes;

/// Errors from the crypto helpers.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// A key is shorter than the minimum for its use.
    #[error("key is {actual} bytes; at least {minimum} are required")]
    KeyTooShort {
        /// Bytes given.
        actual: usize,
        /// Bytes required.
        minimum: usize,
    },
    /// The system random generator failed.
    #[error("the system random generator failed")]
    Random,
}
