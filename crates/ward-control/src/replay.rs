//! The `private_key_jwt` replay set: the ids of client assertions seen
//! while they are valid (RFC 7523 §3 item 7), so none is accepted twice.
//!
//! Entries are kept by the SHA-256 of (client, `jti`) — 32 bytes whatever
//! the client sends — and ordered by expiry, so every insert first drops
//! the entries that have expired (oldest first, each dropped once: the cost
//! is amortised O(log n) per assertion, never a scan of the set). A client
//! may hold at most [`PER_CLIENT`] live assertions: past that, its further
//! assertions are refused until some expire, so one client (or a stolen
//! key) cannot grow the set for everyone.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

/// Live assertions one client may hold in the set.
pub const PER_CLIENT: usize = 10_000;

/// What remembering an assertion found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// First use: remembered until it expires.
    First,
    /// Used before: a replay.
    Replayed,
    /// The client already holds [`PER_CLIENT`] live assertions.
    Full,
}

#[derive(Debug, Default)]
struct Inner {
    /// Hash of (client, jti) → (expiry, client).
    seen: HashMap<[u8; 32], (u64, Arc<str>)>,
    /// The same, by expiry.
    by_expiry: BTreeSet<(u64, [u8; 32])>,
    /// Live entries per client.
    per_client: HashMap<Arc<str>, usize>,
}

impl Inner {
    /// Drop every entry expired at `now`.
    fn expire(&mut self, now: u64) {
        while let Some(&(exp, key)) = self.by_expiry.first() {
            if exp > now {
                break;
            }
            self.by_expiry.pop_first();
            if let Some((_, client)) = self.seen.remove(&key)
                && let Some(n) = self.per_client.get_mut(&client)
            {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.per_client.remove(&client);
                }
            }
        }
    }
}

/// The set.
#[derive(Debug, Default)]
pub struct ReplaySet {
    inner: Mutex<Inner>,
}

fn key(client: &str, jti: &str) -> [u8; 32] {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    // Length-prefixed: ("a", "bc") and ("ab", "c") are different entries.
    ctx.update(&(client.len() as u64).to_be_bytes());
    ctx.update(client.as_bytes());
    ctx.update(jti.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

impl ReplaySet {
    /// Remember `client`'s assertion `jti`, valid until `exp`, at `now`.
    pub fn remember(&self, client: &str, jti: &str, exp: u64, now: u64) -> Seen {
        // A poisoned lock cannot tell a replay: refuse (fail closed).
        let Ok(mut inner) = self.inner.lock() else { return Seen::Replayed };
        inner.expire(now);
        let key = key(client, jti);
        if inner.seen.contains_key(&key) {
            return Seen::Replayed;
        }
        if exp <= now {
            // Already expired: the verifier refused it; nothing to hold.
            return Seen::First;
        }
        let held = inner.per_client.get(client).copied().unwrap_or(0);
        if held >= PER_CLIENT {
            return Seen::Full;
        }
        let client: Arc<str> =
            inner.per_client.get_key_value(client).map_or_else(|| Arc::from(client), |(k, _)| Arc::clone(k));
        inner.seen.insert(key, (exp, Arc::clone(&client)));
        inner.by_expiry.insert((exp, key));
        *inner.per_client.entry(client).or_insert(0) += 1;
        Seen::First
    }

    /// Entries held.
    #[must_use]
    pub fn len(&self) -> usize {
        self.inner.lock().map_or(0, |i| i.seen.len())
    }

    /// Whether none is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drop what has expired at `now` (a periodic sweep; inserts do it too).
    pub fn expire(&self, now: u64) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.expire(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_assertion_once_per_client_and_expired_ones_are_dropped() {
        let set = ReplaySet::default();
        assert_eq!(set.remember("a", "j1", 100, 10), Seen::First);
        assert_eq!(set.remember("a", "j1", 100, 11), Seen::Replayed);
        assert_eq!(set.remember("b", "j1", 100, 11), Seen::First, "per client");
        assert_eq!(set.remember("ab", "", 100, 11), Seen::First, "no ambiguity between client and jti");
        assert_eq!(set.len(), 3);
        assert_eq!(set.remember("c", "j", 200, 100), Seen::First);
        assert_eq!(set.len(), 1, "the three expired at 100 are gone");
        assert_eq!(set.remember("a", "j1", 300, 101), Seen::First, "forgotten once expired (and refused as such)");
    }

    #[test]
    fn a_client_cannot_hold_more_than_its_share() {
        let set = ReplaySet::default();
        for i in 0..PER_CLIENT {
            assert_eq!(set.remember("greedy", &i.to_string(), 1_000, 1), Seen::First);
        }
        assert_eq!(set.remember("greedy", "one-more", 1_000, 1), Seen::Full);
        assert_eq!(set.remember("other", "j", 1_000, 1), Seen::First, "others are not held back");
        assert_eq!(set.remember("greedy", "one-more", 2_000, 1_000), Seen::First, "room again once they expire");
        assert_eq!(set.len(), 1);
    }

    #[test]
    fn the_set_stays_at_its_live_size_however_many_pass_through() {
        // 300,000 assertions, each valid 2 s, 1,000 a second: the set holds
        // about the last two seconds' worth — before, it held every one
        // until it passed 100,000 and then scanned them all on each use.
        let set = ReplaySet::default();
        let mut most = 0;
        for i in 0..300_000u64 {
            let now = 1_000 + i / 1_000;
            assert_eq!(set.remember(&format!("client-{}", i % 50), &i.to_string(), now + 2, now), Seen::First);
            most = most.max(set.len());
        }
        assert!(most <= 3_000, "{most} held at most");
    }
}
