//! Who is calling: the principal and the verified claims behind it.

use std::fmt;
use std::sync::Arc;

/// Verified token claims, shared between stages without copying.
pub type Claims = serde_json::Map<String, serde_json::Value>;

/// The authenticated subject of a request (a JWT `sub`, later a SPIFFE ID).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Principal(String);

impl Principal {
    /// Wrap a verified subject.
    #[must_use]
    pub fn new(subject: impl Into<String>) -> Self {
        Self(subject.into())
    }

    /// The subject as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A verified identity: who, vouched for by whom, with which claims.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The subject.
    pub principal: Principal,
    /// The issuer that vouched for it (the token's `iss`).
    pub issuer: Arc<str>,
    /// The name of the configured provider that verified it.
    pub provider: Arc<str>,
    /// All verified claims.
    pub claims: Arc<Claims>,
    /// When the credential stops being valid (seconds since the Unix epoch).
    pub expires_at: i64,
}

impl Identity {
    /// Look up a claim by a dotted path (`realm_access.roles`).
    #[must_use]
    pub fn claim(&self, path: &str) -> Option<&serde_json::Value> {
        let mut parts = path.split('.');
        let first = parts.next()?;
        let mut value = self.claims.get(first)?;
        for part in parts {
            value = value.as_object()?.get(part)?;
        }
        Some(value)
    }
}
