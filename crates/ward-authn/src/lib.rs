//! Authentication: JWS/JWT verification (RFC 7515/7519, hardened per RFC 8725),
//! JWK sets with single-flight refresh, a bounded cache of verified tokens,
//! and token issuing for the local issuer.
//!
//! The verification core is pure: it takes the token, the keys and the
//! current time and returns an [`Identity`](ward_core::Identity) or a
//! [`TokenRejected`] carrying the reason code. Fetching keys is delegated to
//! a [`JwksSource`] supplied by the I/O shell.
#![forbid(unsafe_code)]

mod cache;
mod jwk;
mod jws;
mod keystore;
mod provider;
mod signer;

pub use cache::TokenCache;
pub use jwk::{Jwk, JwkError, JwkSet};
pub use jws::{Algorithm, KeyError, VerifyingKey, verify_signature};
pub use keystore::{JwksSource, KeyObserver, KeySet, KeyStore, SourceError};
pub use provider::{Authenticator, MAX_NUMERIC_DATE, Provider, ProviderSettings, TokenRejected, is_access_token_type};
pub use signer::{SignerError, TokenSigner};
