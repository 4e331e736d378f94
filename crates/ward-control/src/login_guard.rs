//! What keeps the login page cheap to serve and expensive to abuse.
//!
//! - **Pages** (login tickets) are rate limited per source — an IPv4
//!   address or an IPv6 /64 — by a GCRA limiter: [`PAGES_PER_MINUTE`], in a
//!   burst of as many. A refusal is a 429 and an audit event (which the
//!   detector sees); the ticket table also bounds each source (see
//!   [`crate::flows`]).
//! - **Password checks** (argon2id, 19 MiB each) run at most one per core
//!   at once across the process; past that a login is answered 503 at once
//!   rather than queued, so a flood of logins costs memory for the checks
//!   in flight only. One source may hold [`HASHES_PER_SOURCE`] of them, and
//!   one account one at a time: guesses at one account from many addresses
//!   queue behind each other (answered 429 at once) instead of running in
//!   parallel. The slots belong to the check: they are freed when the hash
//!   ends, not when its client hangs up.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use ward_detect::conns::{ConnectionCaps, ConnectionSlot};
use ward_detect::gcra::{Gcra, Limiter, Quota};

use crate::flows::Source;

/// Login pages one source may load per minute (and at once).
pub const PAGES_PER_MINUTE: u32 = 60;

/// Password checks one source may have running at once.
pub const HASHES_PER_SOURCE: u32 = 1;

/// Sources the page limiter remembers (more share one bucket).
const MAX_SOURCES: usize = 100_000;

/// The guards.
#[derive(Debug)]
pub struct LoginGuard {
    pages: Option<Limiter>,
    hashing: Arc<Semaphore>,
    per_source: Arc<ConnectionCaps>,
    /// Accounts (SHA-256 of the name) with a check running.
    accounts: Arc<Mutex<HashSet<[u8; 32]>>>,
    started: Instant,
}

/// A password check may run while this is held.
#[derive(Debug)]
pub struct HashPermit {
    _global: OwnedSemaphorePermit,
    _source: ConnectionSlot,
    _account: AccountSlot,
}

/// One account's check in flight; dropping it frees the account.
#[derive(Debug)]
struct AccountSlot {
    accounts: Arc<Mutex<HashSet<[u8; 32]>>>,
    key: [u8; 32],
}

impl Drop for AccountSlot {
    fn drop(&mut self) {
        if let Ok(mut a) = self.accounts.lock() {
            a.remove(&self.key);
        }
    }
}

/// Why a password check may not run now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Busy {
    /// This source already has its share running.
    Source,
    /// A check of this account is running.
    Account,
    /// Every core is checking a password.
    Everyone,
}

impl Default for LoginGuard {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        Self::new(cores)
    }
}

impl LoginGuard {
    /// Guards allowing `hashes` password checks at once.
    #[must_use]
    pub fn new(hashes: usize) -> Self {
        let quota = Quota { rate: PAGES_PER_MINUTE, period: Duration::from_secs(60), burst: PAGES_PER_MINUTE };
        Self {
            pages: Gcra::new(quota).ok().map(|g| Limiter::new(g, MAX_SOURCES)),
            hashing: Arc::new(Semaphore::new(hashes.max(1))),
            per_source: ConnectionCaps::new(HASHES_PER_SOURCE),
            accounts: Arc::new(Mutex::new(HashSet::new())),
            started: Instant::now(),
        }
    }

    /// Whether `ip` may be shown one more login page now, and if not, in
    /// how many seconds it may.
    pub fn page(&self, ip: IpAddr) -> Result<(), u64> {
        let Some(pages) = &self.pages else { return Err(60) };
        let now = u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX).saturating_add(1);
        let verdict = pages.check(&Source::of(ip), now);
        if verdict.allowed { Ok(()) } else { Err(verdict.retry_after.div_ceil(1_000_000_000).max(1)) }
    }

    /// A slot for one password check of `account` for `ip`, without waiting.
    pub fn hash(&self, ip: IpAddr, account: &str) -> Result<HashPermit, Busy> {
        let source = self.per_source.admit(Source::of(ip).ip()).ok_or(Busy::Source)?;
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, account.as_bytes());
        let mut key = [0u8; 32];
        key.copy_from_slice(digest.as_ref());
        // A poisoned lock admits no check (fail closed).
        if !self.accounts.lock().map_err(|_| Busy::Everyone)?.insert(key) {
            return Err(Busy::Account);
        }
        let account = AccountSlot { accounts: Arc::clone(&self.accounts), key };
        let global = Arc::clone(&self.hashing).try_acquire_owned().map_err(|_| Busy::Everyone)?;
        Ok(HashPermit { _global: global, _source: source, _account: account })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_limited_per_source_and_a_v6_64_is_one_source() {
        let g = LoginGuard::new(1);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        for _ in 0..PAGES_PER_MINUTE {
            assert!(g.page(ip("2001:db8::1")).is_ok());
        }
        let wait = g.page(ip("2001:db8::ffff")).unwrap_err();
        assert!((1..=60).contains(&wait), "{wait}");
        assert!(g.page(ip("2001:db8:0:1::1")).is_ok(), "another /64");
        assert!(g.page(ip("192.0.2.1")).is_ok());
    }

    #[test]
    fn password_checks_are_bounded_per_source_per_account_and_overall() {
        let g = LoginGuard::new(2);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let a = g.hash(ip("192.0.2.1"), "alice").unwrap();
        assert_eq!(g.hash(ip("192.0.2.1"), "bob").unwrap_err(), Busy::Source);
        assert_eq!(g.hash(ip("192.0.2.2"), "alice").unwrap_err(), Busy::Account, "one check of an account at a time");
        let _b = g.hash(ip("192.0.2.2"), "bob").unwrap();
        assert_eq!(g.hash(ip("192.0.2.3"), "carol").unwrap_err(), Busy::Everyone);
        drop(a);
        assert!(g.hash(ip("192.0.2.3"), "alice").is_ok(), "a finished check frees its slots");
    }
}
