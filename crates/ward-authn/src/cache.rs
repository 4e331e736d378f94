//! A bounded cache of verified tokens.
//!
//! Keyed by the SHA-256 of the token, so the cache never holds a usable
//! credential. An entry never outlives the token's `exp`, and it is only
//! trusted while the provider's keys are of the generation that verified it.

use std::collections::HashMap;
use std::sync::Mutex;

use aws_lc_rs::digest;
use ward_core::Identity;

const SHARDS: usize = 16;

/// Cache of verified tokens, sharded to keep lock contention low.
#[derive(Debug)]
pub struct TokenCache {
    shards: Vec<Mutex<HashMap<[u8; 32], Entry>>>,
    per_shard: usize,
}

#[derive(Debug, Clone)]
struct Entry {
    identity: Identity,
    provider: usize,
    generation: u64,
    expires_at: i64,
}

/// A cache lookup key: the digest of a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheKey([u8; 32]);

impl TokenCache {
    /// A cache holding at most `capacity` tokens (at least one per shard).
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        let per_shard = capacity.div_ceil(SHARDS).max(1);
        Self { shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(), per_shard }
    }

    /// The cache key for a token.
    #[must_use]
    pub fn key(token: &str) -> CacheKey {
        let d = digest::digest(&digest::SHA256, token.as_bytes());
        let mut k = [0u8; 32];
        k.copy_from_slice(d.as_ref());
        CacheKey(k)
    }

    fn shard(&self, key: &CacheKey) -> Option<&Mutex<HashMap<[u8; 32], Entry>>> {
        self.shards.get(usize::from(key.0[0]) % SHARDS)
    }

    /// A cached identity for `key`, if present, unexpired at `now`, and
    /// verified by provider `provider` at key generation `generation`.
    #[must_use]
    pub fn get(&self, key: &CacheKey, now: i64, provider: impl Fn(usize) -> Option<u64>) -> Option<(usize, Identity)> {
        let shard = self.shard(key)?;
        let mut map = shard.lock().ok()?;
        let entry = map.get(&key.0)?;
        let fresh = now < entry.expires_at && provider(entry.provider) == Some(entry.generation);
        if fresh {
            Some((entry.provider, entry.identity.clone()))
        } else {
            map.remove(&key.0);
            None
        }
    }

    /// Remember a verified identity until `identity.expires_at`.
    pub fn insert(&self, key: CacheKey, provider: usize, generation: u64, identity: &Identity, now: i64) {
        let Some(shard) = self.shard(&key) else { return };
        let Ok(mut map) = shard.lock() else { return };
        if map.len() >= self.per_shard {
            map.retain(|_, e| e.expires_at > now);
            if map.len() >= self.per_shard {
                // Still full of live entries: drop an arbitrary one. The cache
                // is an optimisation; a miss only costs a verification.
                if let Some(victim) = map.keys().next().copied() {
                    map.remove(&victim);
                }
            }
        }
        map.insert(key.0, Entry { identity: identity.clone(), provider, generation, expires_at: identity.expires_at });
    }

    /// Number of cached tokens.
    #[must_use]
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().map(|m| m.len()).unwrap_or(0)).sum()
    }

    /// Whether the cache is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use ward_core::Principal;

    fn identity(exp: i64) -> Identity {
        Identity {
            principal: Principal::new("alice"),
            issuer: Arc::from("iss"),
            provider: Arc::from("p"),
            claims: Arc::default(),
            expires_at: exp,
        }
    }

    #[test]
    fn entries_expire_with_the_token_and_with_key_generation() {
        let cache = TokenCache::new(100);
        let k = TokenCache::key("tok");
        cache.insert(k, 0, 1, &identity(1000), 10);
        assert!(cache.get(&k, 999, |_| Some(1)).is_some());
        assert!(cache.get(&k, 999, |_| Some(2)).is_none(), "new key generation invalidates");
        cache.insert(k, 0, 1, &identity(1000), 10);
        assert!(cache.get(&k, 1000, |_| Some(1)).is_none(), "expired at exp");
        assert!(cache.get(&TokenCache::key("other"), 10, |_| Some(1)).is_none());
    }

    #[test]
    fn capacity_is_bounded() {
        let cache = TokenCache::new(32);
        for i in 0..1000 {
            cache.insert(TokenCache::key(&format!("t{i}")), 0, 0, &identity(i64::MAX), 0);
        }
        assert!(cache.len() <= 32, "{}", cache.len());
    }
}
