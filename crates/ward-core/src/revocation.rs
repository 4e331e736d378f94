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
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

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
    /// Drop what ended at or before `until` (a periodic sweep; a shared
    /// store that expires entries by itself has nothing to do).
    fn sweep(&self, until: u64) {
        let _ = until;
    }
}

/// The claim of a token made by token exchange naming the tokens it came
/// from, nearest first: `{"jti": [...], "client_id": [...]}` (the subject
/// token's id and client, then its own subject's, …).
pub const EXCHANGED_FROM: &str = "exchanged_from";

/// The ids or clients an exchanged token came from (`field` = `jti` or
/// `client_id`); none for any other token.
fn exchanged_from<'a>(claims: &'a Claims, field: &str) -> impl Iterator<Item = &'a str> {
    claims
        .get(EXCHANGED_FROM)
        .and_then(|f| f.get(field))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
}

/// Whether a token `claims` was exchanged from (directly or down a chain)
/// is revoked: revoking a token, or the refresh family that produced it,
/// ends what was exchanged from it. One map lookup for any other token.
pub fn ancestors_revoked(list: &dyn RevocationList, issuer: &str, claims: &Claims) -> bool {
    exchanged_from(claims, "jti").any(|jti| list.is_revoked(issuer, jti))
}

/// Whether a verified token of `issuer` (its `claims`) may no longer be
/// used: its `jti` revoked, a token it was exchanged from revoked, or a
/// cut-off over it. The one check gateways and the control plane share.
pub fn is_ended(list: &dyn RevocationList, issuer: &str, claims: &Claims) -> bool {
    claims.get("jti").and_then(Value::as_str).is_some_and(|jti| list.is_revoked(issuer, jti))
        || ancestors_revoked(list, issuer, claims)
        || is_cut_off(list, issuer, claims)
}

/// Whether `claims` (a verified token of `issuer`) fall under a cut-off of
/// `list`: issued (`iat`) at or before a cut-off of its subject or of its
/// client — or descended from a login (`auth_time`) at or before it, so a
/// token minted later from an old login (a held authorization code, a
/// session) dies with the rest. A token without a numeric `iat` cannot be
/// shown to be newer than a cut-off, so it falls under any cut-off there is.
pub fn is_cut_off(list: &dyn RevocationList, issuer: &str, claims: &Claims) -> bool {
    let ended = |owner: TokenOwner, name: &str| {
        list.cut_off_at(issuer, owner, name).is_some_and(|at| {
            claims.get("iat").and_then(Value::as_u64).is_none_or(|iat| iat <= at)
                || claims.get("auth_time").and_then(Value::as_u64).is_some_and(|t| t <= at)
        })
    };
    [TokenOwner::Subject, TokenOwner::Client].into_iter().any(|owner| {
        let Some(Value::String(name)) = claims.get(owner.claim()) else { return false };
        ended(owner, name)
    })
        // An exchanged token ends with every client it came through: its
        // `iat` is at or after its subject's, so a cut-off that ends the
        // subject token also ends this one.
        || exchanged_from(claims, "client_id").any(|client| ended(TokenOwner::Client, client))
}

/// Names → (cut-off, kept until), of one issuer and one [`TokenOwner`].
type CutOffs = HashMap<String, (u64, u64)>;

/// Writes between two prunes at least (a small list is not swept on
/// every write).
const PRUNE_EVERY: usize = 1024;

/// How long past its time an entry is still kept when the list sweeps
/// itself (and when the control plane sweeps its store): verifiers accept a
/// token for their clock leeway past `exp`, and a revocation must outlive
/// that; it also absorbs a wall clock stepped forward a little.
pub const SWEEP_GRACE: u64 = 600;

/// A sweep is skipped when the wall clock advanced this much more than the
/// monotonic clock since the last one: a clock stepped forward (and maybe
/// soon back) must not drop live revocations.
const CLOCK_JUMP: u64 = 300;

/// The in-process list: per issuer (or certificate namespace), the revoked
/// ids and until when. Looked up by `&str` on every request, without
/// allocating.
///
/// Every write is one insert under the write lock — never a copy of the
/// list, so parallel writers cannot lose each other's entries — and entries
/// past their time are swept as the list grows: a sweep comes after as many
/// writes as there were live entries at the last one, so its cost spreads
/// over the writes (amortised O(1)) and the list holds at most about twice
/// its live entries. [`Self::prune`] sweeps on demand (a periodic task).
#[derive(Debug, Default)]
pub struct LocalRevocations {
    revoked: RwLock<HashMap<String, HashMap<String, u64>>>,
    /// Per issuer, per [`TokenOwner`]: name → (cut-off, kept until).
    cut_offs: RwLock<HashMap<String, [CutOffs; 2]>>,
    /// Whether any cut-off was ever made: until then a lookup reads one
    /// atomic, so the request path pays nothing for the feature unused.
    any_cut_off: AtomicBool,
    /// Writes since the last sweep.
    writes: AtomicUsize,
    /// Writes that trigger the next sweep.
    sweep_after: AtomicUsize,
    /// When the last self-sweep ran: monotonic and wall (seconds).
    last_sweep: std::sync::Mutex<Option<(std::time::Instant, u64)>>,
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
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

    /// Until when `issuer`'s (or the namespace's) `id` is revoked, if it is
    /// listed (a poisoned lock fails closed: listed for ever).
    #[must_use]
    pub fn revoked_until(&self, issuer: &str, id: &str) -> Option<u64> {
        self.revoked.read().map_or(Some(u64::MAX), |r| r.get(issuer).and_then(|ids| ids.get(id)).copied())
    }

    /// Every revoked id: (issuer or namespace, id, until).
    #[must_use]
    pub fn revoked_entries(&self) -> Vec<(String, String, u64)> {
        self.revoked.read().map_or_else(
            |_| Vec::new(),
            |r| {
                r.iter()
                    .flat_map(|(iss, ids)| ids.iter().map(move |(id, until)| (iss.clone(), id.clone(), *until)))
                    .collect()
            },
        )
    }

    /// Entries held (revoked ids and cut-offs), expired or not.
    #[must_use]
    pub fn len(&self) -> usize {
        let revoked = self.revoked.read().map_or(0, |r| r.values().map(HashMap::len).sum());
        let cut = self.cut_offs.read().map_or(0, |c| c.values().flat_map(|o| o.iter().map(HashMap::len)).sum());
        revoked + cut
    }

    /// Whether nothing is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drop entries that expired before `now`; how many are left.
    pub fn prune(&self, now: u64) -> usize {
        let mut left = 0;
        if let Ok(mut r) = self.revoked.write() {
            for ids in r.values_mut() {
                ids.retain(|_, exp| *exp > now);
                left += ids.len();
            }
            r.retain(|_, ids| !ids.is_empty());
        }
        if let Ok(mut c) = self.cut_offs.write() {
            for owners in c.values_mut() {
                for names in owners.iter_mut() {
                    names.retain(|_, (_, until)| *until > now);
                    left += names.len();
                }
            }
            c.retain(|_, owners| owners.iter().any(|names| !names.is_empty()));
        }
        self.writes.store(0, Ordering::Relaxed);
        self.sweep_after.store(left.max(PRUNE_EVERY), Ordering::Relaxed);
        left
    }

    /// Count a write; sweep (keeping [`SWEEP_GRACE`] past each entry's
    /// time) when enough have come since the last sweep — unless the wall
    /// clock jumped ahead of the monotonic one since then.
    fn wrote(&self) {
        let writes = self.writes.fetch_add(1, Ordering::Relaxed) + 1;
        if writes < self.sweep_after.load(Ordering::Relaxed).max(PRUNE_EVERY) {
            return;
        }
        let wall = unix_now();
        let Ok(mut last) = self.last_sweep.lock() else { return };
        if let Some((at, then)) = *last
            && wall.saturating_sub(then) > at.elapsed().as_secs().saturating_add(CLOCK_JUMP)
        {
            // Skipped, not recorded: the next sweep compares with the same base.
            self.writes.store(0, Ordering::Relaxed);
            return;
        }
        *last = Some((std::time::Instant::now(), wall));
        drop(last);
        self.prune(wall.saturating_sub(SWEEP_GRACE));
    }
}

impl RevocationList for LocalRevocations {
    fn is_revoked(&self, issuer: &str, jti: &str) -> bool {
        // A poisoned lock fails closed: every token counts as revoked.
        self.revoked.read().map_or(true, |r| r.get(issuer).is_some_and(|ids| ids.contains_key(jti)))
    }

    fn revoke(&self, issuer: &str, jti: &str, exp: u64) {
        if let Ok(mut r) = self.revoked.write() {
            let until = r.entry(issuer.to_owned()).or_default().entry(jti.to_owned()).or_insert(exp);
            // Revoked twice: the longer one stands.
            *until = (*until).max(exp);
        }
        self.wrote();
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
        self.wrote();
    }

    fn sweep(&self, until: u64) {
        self.prune(until);
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

    #[test]
    fn parallel_writers_lose_nothing() {
        let list = std::sync::Arc::new(LocalRevocations::new());
        let far = unix_now() + 3600;
        let threads: Vec<_> = (0..16)
            .map(|t| {
                let list = std::sync::Arc::clone(&list);
                std::thread::spawn(move || {
                    for i in 0..500 {
                        list.revoke("https://a", &format!("{t}-{i}"), far);
                        list.cut_off("https://a", TokenOwner::Subject, &format!("{t}-{i}"), 1, far);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        for t in 0..16 {
            for i in 0..500 {
                assert!(list.is_revoked("https://a", &format!("{t}-{i}")), "{t}-{i} lost");
                assert_eq!(list.cut_off_at("https://a", TokenOwner::Subject, &format!("{t}-{i}")), Some(1));
            }
        }
        assert_eq!(list.len(), 16_000);
    }

    #[test]
    fn expired_entries_are_swept_as_the_list_grows() {
        let list = LocalRevocations::new();
        // Expired ten seconds ago: within verifiers' leeway, so kept by sweeps.
        list.revoke("https://a", "recent", unix_now() - 10);
        // 100,000 revocations of tokens that are already past their expiry:
        // sweeps keep the list near the sweep threshold, not at 100,000.
        for i in 0..100_000 {
            list.revoke("https://a", &format!("j{i}"), 1);
            assert!(list.len() <= 2 * PRUNE_EVERY, "{} held after {i} writes", list.len());
        }
        assert!(list.is_revoked("https://a", "recent"), "kept for the grace past its time");
        // Live ones all stay.
        let far = unix_now() + 3600;
        for i in 0..5_000 {
            list.revoke("https://a", &format!("live{i}"), far);
        }
        assert!((0..5_000).all(|i| list.is_revoked("https://a", &format!("live{i}"))));
        assert!(list.len() <= 5_000 + 2 * PRUNE_EVERY);
        assert_eq!(list.revoked_until("https://a", "live0"), Some(far));
        list.revoke("https://a", "live0", 5);
        assert_eq!(list.revoked_until("https://a", "live0"), Some(far), "a shorter revocation never shortens one");
    }

    #[test]
    fn exchanged_tokens_end_with_what_they_came_from() {
        let list = LocalRevocations::new();
        let exchanged = claims(serde_json::json!({
            "sub": "alice", "client_id": "backend", "iat": 200,
            "exchanged_from": {"jti": ["x1", "s1"], "client_id": ["middle", "frontend"]},
        }));
        assert!(!ancestors_revoked(&list, "https://a", &exchanged));
        assert!(!is_cut_off(&list, "https://a", &exchanged));
        list.revoke("https://a", "s1", u64::MAX);
        assert!(ancestors_revoked(&list, "https://a", &exchanged), "its subject's subject was revoked");
        assert!(!ancestors_revoked(&list, "https://b", &exchanged), "per issuer");
        list.cut_off("https://a", TokenOwner::Client, "frontend", 150, u64::MAX);
        assert!(!is_cut_off(&list, "https://a", &exchanged), "issued after the cut-off");
        list.cut_off("https://a", TokenOwner::Client, "frontend", 250, u64::MAX);
        assert!(is_cut_off(&list, "https://a", &exchanged), "a client it came through was cut off");
        let plain = claims(serde_json::json!({"sub": "bob", "client_id": "frontend2", "iat": 200, "jti": "s1"}));
        assert!(!ancestors_revoked(&list, "https://a", &plain), "no lineage, nothing inherited");
        assert!(is_ended(&list, "https://a", &plain), "its own jti is revoked");
        assert!(is_ended(&list, "https://a", &exchanged), "a token it came from is revoked");
        let fresh = claims(serde_json::json!({"sub": "carol", "client_id": "other", "iat": 200, "jti": "s2"}));
        assert!(!is_ended(&list, "https://a", &fresh));
    }
}
