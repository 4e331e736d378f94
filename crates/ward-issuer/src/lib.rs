//! The token service's decisions, apart from any I/O (issue #5).
//!
//! - [`keys`]: the signing key ring — a new key is published before it
//!   signs, an old one stays published until every token it signed has
//!   expired;
//! - [`clients`]: OAuth2 clients, their generated secrets (stored as
//!   SHA-256, compared in constant time), grants, scopes and audiences;
//! - [`grant`]: the `client_credentials` grant and token exchange (scopes
//!   and audiences can only narrow what the client is allowed);
//! - [`authorize`]: the authorization-code grant (request checks that never
//!   redirect to an unregistered URI, codes, PKCE, ID tokens), with
//!   [`pkce`], [`users`] (argon2id passwords) and [`refresh`] (rotation and
//!   reuse detection);
//! - [`opaque`]: codes and refresh tokens, stored only as hashes;
//! - [`error`]: RFC 6749 error codes, with the HTTP status each one takes;
//! - [`discovery`]: the OpenID Connect discovery document.
//!
//! The control plane's HTTP shell, storage and the other grants build on
//! these.
#![forbid(unsafe_code)]

pub mod assertion;
pub mod authorize;
pub mod clients;
pub mod discovery;
pub mod error;
pub mod grant;
pub mod keys;
pub mod opaque;
pub mod pkce;
pub mod refresh;
pub mod users;

pub use clients::{Client, ClientId, ClientSecret, GrantType};
pub use error::OAuthError;
pub use keys::KeyRing;
