//! Revoked tokens, shared between the token service and the gateways.
//!
//! The embedded default ([`LocalRevocations`]) is one in-process list that
//! the control plane writes and every gateway worker reads, so a revocation
//! is enforced on the very next request. A scale-out deployment implements
//! [`RevocationList`] over a shared store (Redis pub/sub), unchanged for
//! callers.

use std::collections::HashMap;
use std::fmt;
use std::sync::RwLock;

/// The namespace (in place of an issuer) of certificates denied by serial
/// number (lower-case hex).
pub const X509_SERIAL: &str = "x509-serial";
/// The namespace of certificates denied by SPIFFE ID.
pub const SPIFFE_ID: &str = "spiffe-id";

/// Token ids (`jti`, per issuer) that must no longer be accepted — and
/// certificates, under the [`X509_SERIAL`] and [`SPIFFE_ID`] namespaces.
pub trait RevocationList: Send + Sync + fmt::Debug {
    /// Whether `issuer`'s token `jti` is revoked.
    fn is_revoked(&self, issuer: &str, jti: &str) -> bool;
    /// Revoke `issuer`'s token `jti` until `exp` (seconds since the epoch;
    /// after that the token is refused as expired anyway).
    fn revoke(&self, issuer: &str, jti: &str, exp: u64);
}

/// The in-process list: per issuer (or certificate namespace), the revoked
/// ids and until when. Looked up by `&str` on every request, without
/// allocating.
#[derive(Debug, Default)]
pub struct LocalRevocations {
    revoked: RwLock<HashMap<String, HashMap<String, u64>>>,
}

impl LocalRevocations {
    /// An empty list.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Drop entries that expired before `now`.
    pub fn prune(&self, now: u64) {
        if let Ok(mut r) = self.revoked.write() {
            for ids in r.values_mut() {
                ids.retain(|_, exp| *exp > now);
            }
            r.retain(|_, ids| !ids.is_empty());
        }
    }
}

impl RevocationList for LocalRevocations {
    fn is_revoked(&self, issuer: &str, jti: &str) -> bool {
        // A poisoned lock fails closed: every token counts as revoked.
        self.revoked.read().map_or(true, |r| r.get(issuer).is_some_and(|ids| ids.contains_key(jti)))
    }

    fn revoke(&self, issuer: &str, jti: &str, exp: u64) {
        if let Ok(mut r) = self.revoked.write() {
            r.entry(issuer.to_owned()).or_default().insert(jti.to_owned(), exp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revocations_are_per_issuer_and_pruned_after_expiry() {
        let list = LocalRevocations::new();
        list.revoke("https://a", "j1", 100);
        assert!(list.is_revoked("https://a", "j1"));
        assert!(!list.is_revoked("https://b", "j1"));
        assert!(!list.is_revoked("https://a", "j2"));
        list.prune(99);
        assert!(list.is_revoked("https://a", "j1"));
        list.prune(100);
        assert!(!list.is_revoked("https://a", "j1"));
    }
}
