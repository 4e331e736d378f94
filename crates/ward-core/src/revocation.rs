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
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::Value;

use crate::Claims;

/// The namespace (in place of an issuer) of certificates denied by serial
/// number (lower-case hex).
pub const X509_SERIAL: &str = "x509-serial";
/// The namespace of certificates denied by SPIFFE ID.
pub const SPIFFE_ID: &str = "spiffe-id";

/// Whose tokens a cut-off ends: by the claim that names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenOwner {
    /// Tokens whose `sub` is the name: a user's, or a client's own
    /// (`client_credentials` tokens are about the client itself).
    Subject,
    /// Tokens whose `client_id` is the name: everything issued to a client.
    Client,
}

impl TokenOwner {
    /// The claim holding the owner's name.
    #[must_use]
    pub fn claim(self) -> &'static str {
        match self {
            Self::Subject => "sub",
            Self::Client => "client_id",
        }
    }

    fn index(self) -> usize {
        match self {
            Self::Subject => 0,
            Self::Client => 1,
        }
    }
}

/// Token ids (`jti`, per issuer) that must no longer be accepted — and
/// certificates, under the [`X509_SERIAL`] and [`SPIFFE_ID`] namespaces —
/// and cut-offs: every token of a user or a client issued up to a moment
/// (a password change, a disabled client, an operator ending a session).
pub trait RevocationList: Send + Sync + fmt::Debug {
    /// Whether `issuer`'s token `jti` is revoked.
    fn is_revoked(&self, issuer: &str, jti: &str) -> bool;
    /// Revoke `issuer`'s token `jti` until `exp` (seconds since the epoch;
    /// after that the token is refused as expired anyway).
    fn revoke(&self, issuer: &str, jti: &str, exp: u64);
    /// End every token of `issuer` whose [`TokenOwner::claim`] is `name` and
    /// whose `iat` is at or before `at`; kept until `until` (by then every
    /// such token has expired). A later cut-off for the same owner replaces
    /// an earlier one only if it is later.
    fn cut_off(&self, issuer: &str, owner: TokenOwner, name: &str, at: u64, until: u64);
    /// The cut-off in force for `issuer`'s tokens of `owner` `name`, if any.
    fn cut_off_at(&self, issuer: &str, owner: TokenOwner, name: &str) -> Option<u64>;
}

/// Whether `claims` (a verified token of `issuer`) fall under a cut-off of
/// `list`: issued (`iat`) at or before a cut-off of its subject or of its
/// client — or descended from a login (`auth_time`) at or before it, so a
/// token minted later from an old login (a held authorization code, a
/// session) dies with the rest. A token without a numeric `iat` cannot be
/// shown to be newer than a cut-off, so it falls under any cut-off there is.
pub fn is_cut_off(list: &dyn RevocationList, issuer: &str, claims: &Claims) -> bool {
    [TokenOwner::Subject, TokenOwner::Client].into_iter().any(|owner| {
        let Some(Value::String(name)) = claims.get(owner.claim()) else { return false };
        list.cut_off_at(issuer, owner, name).is_some_and(|at| {
            claims.get("iat").and_then(Value::as_u64).is_none_or(|iat| iat <= at)
                || claims.get("auth_time").and_then(Value::as_u64).is_some_and(|t| t <= at)
        })
    })
}

/// Names → (cut-off, kept until), of one issuer and one [`TokenOwner`].
type CutOffs = HashMap<String, (u64, u64)>;

/// The in-process list: per issuer (or certificate namespace), the revoked
/// ids and until when. Looked up by `&str` on every request, without
/// allocating.
#[derive(Debug, Default)]
pub struct LocalRevocations {
    revoked: RwLock<HashMap<String, HashMap<String, u64>>>,
    /// Per issuer, per [`TokenOwner`]: name → (cut-off, kept until).
    cut_offs: RwLock<HashMap<String, [CutOffs; 2]>>,
    /// Whether any cut-off was ever made: until then a lookup reads one
    /// atomic, so the request path pays nothing for the feature unused.
    any_cut_off: AtomicBool,
}

impl LocalRevocations {
    /// An empty list.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The cut-offs of `issuer` for `owner`: (name, cut-off, kept until).
    #[must_use]
    pub fn cut_offs_of(&self, issuer: &str, owner: TokenOwner) -> Vec<(String, u64, u64)> {
        self.cut_offs.read().map_or_else(
            |_| Vec::new(),
            |c| {
                c.get(issuer).map_or_else(Vec::new, |owners| {
                    owners[owner.index()].iter().map(|(n, (at, until))| (n.clone(), *at, *until)).collect()
                })
            },
        )
    }

    /// Drop entries that expired before `now`.
    pub fn prune(&self, now: u64) {
        if let Ok(mut r) = self.revoked.write() {
            for ids in r.values_mut() {
                ids.retain(|_, exp| *exp > now);
            }
            r.retain(|_, ids| !ids.is_empty());
        }
        if let Ok(mut c) = self.cut_offs.write() {
            for owners in c.values_mut() {
                for names in owners.iter_mut() {
                    names.retain(|_, (_, until)| *until > now);
                }
            }
            c.retain(|_, owners| owners.iter().any(|names| !names.is_empty()));
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

    fn cut_off(&self, issuer: &str, owner: TokenOwner, name: &str, at: u64, until: u64) {
        // Raised before the entry exists: a reader that sees the flag and
        // not yet the entry waits on the lock the writer holds.
        self.any_cut_off.store(true, Ordering::SeqCst);
        if let Ok(mut c) = self.cut_offs.write() {
            let names = &mut c.entry(issuer.to_owned()).or_default()[owner.index()];
            let entry = names.entry(name.to_owned()).or_insert((at, until));
            *entry = (entry.0.max(at), entry.1.max(until));
        }
    }

    fn cut_off_at(&self, issuer: &str, owner: TokenOwner, name: &str) -> Option<u64> {
        if !self.any_cut_off.load(Ordering::Acquire) {
            return None;
        }
        // A poisoned lock fails closed: everything up to now is cut off.
        let Ok(c) = self.cut_offs.read() else { return Some(u64::MAX) };
        c.get(issuer).and_then(|owners| owners[owner.index()].get(name)).map(|(at, _)| *at)
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

    fn claims(v: serde_json::Value) -> Claims {
        match v {
            Value::Object(m) => m,
            _ => Claims::new(),
        }
    }

    #[test]
    fn cut_offs_end_older_tokens_of_a_subject_or_client_only() {
        let list = LocalRevocations::new();
        let old = claims(serde_json::json!({"sub": "alice", "client_id": "web", "iat": 100}));
        let new = claims(serde_json::json!({"sub": "alice", "client_id": "web", "iat": 101}));
        let no_iat = claims(serde_json::json!({"sub": "alice", "client_id": "web"}));
        assert!(!is_cut_off(&list, "https://a", &old), "nothing cut off yet");
        list.cut_off("https://a", TokenOwner::Subject, "alice", 100, 1000);
        assert!(is_cut_off(&list, "https://a", &old), "issued at the cut-off");
        assert!(!is_cut_off(&list, "https://a", &new), "issued after it");
        assert!(is_cut_off(&list, "https://a", &no_iat), "no iat: cannot be shown newer");
        let old_login = claims(serde_json::json!({"sub": "alice", "iat": 500, "auth_time": 90}));
        assert!(is_cut_off(&list, "https://a", &old_login), "minted later from a login before the cut-off");
        let new_login = claims(serde_json::json!({"sub": "alice", "iat": 500, "auth_time": 101}));
        assert!(!is_cut_off(&list, "https://a", &new_login));
        assert!(!is_cut_off(&list, "https://b", &old), "per issuer");
        let bob = claims(serde_json::json!({"sub": "bob", "client_id": "web", "iat": 50}));
        assert!(!is_cut_off(&list, "https://a", &bob), "per subject");
        list.cut_off("https://a", TokenOwner::Client, "web", 60, 1000);
        assert!(is_cut_off(&list, "https://a", &bob), "everything issued to the client");
        // An earlier cut-off never moves one back.
        list.cut_off("https://a", TokenOwner::Subject, "alice", 10, 10);
        assert_eq!(list.cut_off_at("https://a", TokenOwner::Subject, "alice"), Some(100));
        list.prune(999);
        assert!(is_cut_off(&list, "https://a", &old));
        list.prune(1000);
        assert!(!is_cut_off(&list, "https://a", &old), "dropped once every such token has expired");
    }
}
