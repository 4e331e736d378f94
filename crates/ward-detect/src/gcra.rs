//! Rate limits as the Generic Cell Rate Algorithm (GCRA, ITU-T I.371):
//! one timestamp per key — the theoretical arrival time (TAT) — instead of
//! a counter and a window, so a limit is exact at every instant, needs no
//! refill timer and costs one compare-and-store per request.
//!
//! A quota of `rate` requests per `period` with `burst` is emission
//! interval `T = period / rate` and tolerance `τ = T · burst`: a request at
//! `t` is allowed when `max(TAT, t) + T − t ≤ τ`, and then
//! `TAT ← max(TAT, t) + T`. From idle, `burst` requests pass at once; after
//! that one every `T`.

use std::hash::{BuildHasher, Hash};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::prehashed::Keyed;

/// A limit as configured: `rate` requests per `period`, `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Requests per period (≥ 1).
    pub rate: u32,
    /// The period (> 0).
    pub period: Duration,
    /// Requests allowed back to back from idle (≥ 1).
    pub burst: u32,
}

/// Why a quota cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct QuotaError(&'static str);

/// A quota compiled to nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gcra {
    quota: Quota,
    /// Emission interval `T` (ns).
    interval: u64,
    /// Tolerance `τ = T · burst` (ns).
    tolerance: u64,
}

/// What one check decided, with what the `RateLimit` fields report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// Whether the request may pass.
    pub allowed: bool,
    /// Requests that may still pass at once.
    pub remaining: u32,
    /// When a denied request may be retried (ns from now; 0 when allowed).
    pub retry_after: u64,
    /// When the quota is whole again (ns from now).
    pub reset: u64,
}

impl Gcra {
    /// Compile `quota`.
    ///
    /// # Errors
    /// [`QuotaError`] for a zero rate, period or burst, or an interval
    /// below one nanosecond.
    pub fn new(quota: Quota) -> Result<Self, QuotaError> {
        if quota.rate == 0 || quota.burst == 0 {
            return Err(QuotaError("rate and burst must be at least 1"));
        }
        let period = u64::try_from(quota.period.as_nanos()).map_err(|_| QuotaError("period is too long"))?;
        let interval = period / u64::from(quota.rate);
        if interval == 0 {
            return Err(QuotaError("more than one request per nanosecond"));
        }
        let tolerance = interval.checked_mul(u64::from(quota.burst)).ok_or(QuotaError("burst is too large"))?;
        Ok(Self { quota, interval, tolerance })
    }

    /// The quota.
    #[must_use]
    pub const fn quota(&self) -> Quota {
        self.quota
    }

    /// One request at `now` against stored `tat` (0 for a new key): the
    /// verdict and the TAT to store (unchanged when denied).
    #[must_use]
    pub fn check(&self, tat: u64, now: u64) -> (Verdict, u64) {
        let next = tat.max(now).saturating_add(self.interval);
        let ahead = next - now;
        if ahead > self.tolerance {
            let retry_after = ahead - self.tolerance;
            let reset = tat.saturating_sub(now);
            let verdict = Verdict { allowed: false, remaining: 0, retry_after, reset };
            return (verdict, tat);
        }
        let remaining = u32::try_from((self.tolerance - ahead) / self.interval).unwrap_or(u32::MAX);
        (Verdict { allowed: true, remaining, retry_after: 0, reset: ahead }, next)
    }
}

/// Counts of one limiter's verdicts.
#[derive(Debug, Default)]
pub struct LimiterStats {
    /// Requests allowed.
    pub allowed: AtomicU64,
    /// Requests over the limit (refused, or only counted in shadow mode).
    pub limited: AtomicU64,
    /// Keys that found the table full and shared the overflow bucket.
    pub overflowed: AtomicU64,
}

const SHARDS: usize = 64;

/// One GCRA limit over many keys, shared by every worker thread.
///
/// The table is split into shards behind their own mutex (held for one
/// hash-map probe), keyed by a 64-bit keyed hash of the caller's key: the
/// hasher is seeded at random per process, so clients cannot aim for
/// collisions. A key whose TAT is in the past carries no state and is
/// pruned when a shard fills up; if a shard is still full, new keys share
/// one overflow bucket — a flood of fresh addresses is limited together
/// rather than growing memory without bound.
#[derive(Debug)]
pub struct Limiter {
    gcra: Gcra,
    shards: Box<[Mutex<Keyed<u64>>]>,
    per_shard: usize,
    hasher: std::collections::hash_map::RandomState,
    /// Verdict counts.
    pub stats: LimiterStats,
}

/// The overflow bucket's key (a real key hashing to it merely shares it).
const OVERFLOW: u64 = 0;

impl Limiter {
    /// A limiter for `gcra` keeping at most about `max_keys` keys.
    #[must_use]
    pub fn new(gcra: Gcra, max_keys: usize) -> Self {
        let shards = (0..SHARDS).map(|_| Mutex::new(Keyed::default())).collect();
        Self {
            gcra,
            shards,
            per_shard: (max_keys / SHARDS).max(16),
            hasher: std::collections::hash_map::RandomState::new(),
            stats: LimiterStats::default(),
        }
    }

    /// The 64-bit key of `key` under this limiter's seed.
    #[must_use]
    pub fn key_of<K: Hash + ?Sized>(&self, key: &K) -> u64 {
        self.hasher.hash_one(key)
    }

    /// One request for `key` at `now` (ns on a monotonic clock).
    pub fn check<K: Hash + ?Sized>(&self, key: &K, now: u64) -> Verdict {
        self.check_hashed(self.key_of(key), now)
    }

    /// [`Self::check`] for a key already hashed with [`Self::key_of`].
    pub fn check_hashed(&self, mut key: u64, now: u64) -> Verdict {
        // Middle bits pick the shard: the map inside indexes by the low bits
        // and tags by the top ones, which must still vary within a shard.
        #[allow(clippy::cast_possible_truncation)]
        let shard = &self.shards[((key >> 32) as usize) % SHARDS];
        let Ok(mut map) = shard.lock() else {
            // A poisoned shard fails closed.
            return Verdict { allowed: false, remaining: 0, retry_after: self.gcra.interval, reset: 0 };
        };
        if map.len() >= self.per_shard && !map.contains_key(&key) {
            map.retain(|_, tat| *tat > now);
            if map.len() >= self.per_shard {
                self.stats.overflowed.fetch_add(1, Ordering::Relaxed);
                key = OVERFLOW;
            }
        }
        // One probe: the entry is read and, when allowed, advanced in place.
        let slot = map.entry(key).or_insert(0);
        let (verdict, next) = self.gcra.check(*slot, now);
        *slot = next;
        drop(map);
        let counter = if verdict.allowed { &self.stats.allowed } else { &self.stats.limited };
        counter.fetch_add(1, Ordering::Relaxed);
        verdict
    }

    /// Keys currently held.
    #[must_use]
    pub fn keys(&self) -> usize {
        self.shards.iter().map(|s| s.lock().map_or(0, |m| m.len())).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn gcra(rate: u32, period: Duration, burst: u32) -> Gcra {
        Gcra::new(Quota { rate, period, burst }).unwrap()
    }

    #[test]
    fn burst_then_one_per_interval() {
        let g = gcra(10, Duration::from_secs(1), 3);
        let (mut tat, now) = (0, 100 * S);
        for i in 0..3 {
            let (v, next) = g.check(tat, now);
            assert!(v.allowed, "request {i} of the burst");
            assert_eq!(v.remaining, 2 - i);
            tat = next;
        }
        let (v, _) = g.check(tat, now);
        assert!(!v.allowed);
        assert_eq!(v.retry_after, S / 10, "one interval until the next slot");
        let (v, _) = g.check(tat, now + S / 10);
        assert!(v.allowed);
    }

    #[test]
    fn long_run_admits_exactly_the_rate() {
        // 1,000 per second with burst 10, offered 5,000 per second for 10 s.
        let g = gcra(1000, Duration::from_secs(1), 10);
        let (mut tat, mut allowed) = (0, 0u64);
        let start = 50 * S;
        for i in 0..50_000u64 {
            let (v, next) = g.check(tat, start + i * (S / 5000));
            if v.allowed {
                allowed += 1;
                tat = next;
            }
        }
        // 10 s at 1,000/s plus the burst, minus the slot still pending at the end.
        assert!((10_000..=10_010).contains(&allowed), "{allowed}");
    }

    #[test]
    fn bad_quotas() {
        assert!(Gcra::new(Quota { rate: 0, period: Duration::from_secs(1), burst: 1 }).is_err());
        assert!(Gcra::new(Quota { rate: 1, period: Duration::from_secs(1), burst: 0 }).is_err());
        assert!(Gcra::new(Quota { rate: 10, period: Duration::from_nanos(5), burst: 1 }).is_err());
    }

    #[test]
    fn keys_are_independent_and_pruned() {
        let l = Limiter::new(gcra(1, Duration::from_secs(1), 1), 16 * SHARDS);
        assert!(l.check("a", S).allowed);
        assert!(!l.check("a", S).allowed);
        assert!(l.check("b", S).allowed);
        for i in 0..10_000u32 {
            l.check(&i, 2 * S + u64::from(i));
        }
        assert!(l.keys() <= 17 * SHARDS, "pruned or overflowed, never unbounded: {}", l.keys());
        assert!(l.stats.overflowed.load(Ordering::Relaxed) > 0);
        // Much later every stored TAT is past: new keys get room again.
        assert!(l.check("c", 1_000 * S).allowed);
    }
}
