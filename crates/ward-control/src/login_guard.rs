//! What keeps the login page cheap to serve and expensive to abuse.
//!
//! - **Pages** (login tickets) are rate limited per source — an IPv4
//!   address or an IPv6 /64 — by a GCRA limiter: [`PAGES_PER_MINUTE`], in a
//!   burst of as many. A refusal is a 429 and an audit event (which the
//!   detector sees); the ticket table also bounds each source (see
//!   [`crate::flows`]).
//! - **Password checks** (argon2id, 19 MiB each) run at most one per core
//!   at once across the process; past that a login waits its turn, first
//!   come first served, for at most [`QUEUE_WAIT`], then is answered 503 —
//!   a waiting login holds no hash memory, so a flood costs memory for the
//!   checks in flight only. One source may hold [`HASHES_PER_SOURCE`] of them.
//!   There is no per-account slot: anyone could hold it and keep the
//!   account's owner out. The slots belong to the check: they are freed
//!   when the hash ends, not when its client hangs up.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use ward_detect::conns::{ConnectionCaps, ConnectionSlot};
use ward_detect::gcra::{Gcra, Limiter, Quota};

use crate::flows::Source;

/// Login pages one source may load per minute (and at once).
pub const PAGES_PER_MINUTE: u32 = 60;

/// Password checks one source may have running at once.
pub const HASHES_PER_SOURCE: u32 = 1;

/// How long a login waits in line for a core before it is answered 503.
pub const QUEUE_WAIT: Duration = Duration::from_secs(3);

/// Sources the page limiter remembers (more share one bucket).
const MAX_SOURCES: usize = 100_000;

/// The guards.
#[derive(Debug)]
pub struct LoginGuard {
    pages: Option<Limiter>,
    hashing: Arc<Semaphore>,
    per_source: Arc<ConnectionCaps>,
    /// How long a login waits in line for a core.
    wait: Duration,
    started: Instant,
}

/// A password check may run while this is held.
#[derive(Debug)]
pub struct HashPermit {
    _global: OwnedSemaphorePermit,
    _source: ConnectionSlot,
}

/// Why a password check may not run now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Busy {
    /// This source already has its share running.
    Source,
    /// Every core is checking a password.
    Everyone,
}

impl Default for LoginGuard {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        Self::new(cores, QUEUE_WAIT)
    }
}

impl LoginGuard {
    /// Guards allowing `hashes` password checks at once, a login waiting at
    /// most `wait` for one.
    #[must_use]
    pub fn new(hashes: usize, wait: Duration) -> Self {
        let quota = Quota { rate: PAGES_PER_MINUTE, period: Duration::from_secs(60), burst: PAGES_PER_MINUTE };
        Self {
            pages: Gcra::new(quota).ok().map(|g| Limiter::new(g, MAX_SOURCES)),
            hashing: Arc::new(Semaphore::new(hashes.max(1))),
            per_source: ConnectionCaps::new(HASHES_PER_SOURCE),
            wait,
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

    /// A slot for one password check for `ip`: at once `Busy::Source` if the
    /// source already has one (running or waiting), else a place in the
    /// first-come first-served line for a core, `Busy::Everyone` after
    /// [`Self::wait`]. Waiting costs a task, not a hash's memory.
    pub async fn hash(&self, ip: IpAddr) -> Result<HashPermit, Busy> {
        let source = self.per_source.admit(Source::of(ip).ip()).ok_or(Busy::Source)?;
        let global = tokio::time::timeout(self.wait, Arc::clone(&self.hashing).acquire_owned())
            .await
            .map_err(|_| Busy::Everyone)?
            .map_err(|_| Busy::Everyone)?;
        Ok(HashPermit { _global: global, _source: source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_limited_per_source_and_a_v6_64_is_one_source() {
        let g = LoginGuard::new(1, QUEUE_WAIT);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        for _ in 0..PAGES_PER_MINUTE {
            assert!(g.page(ip("2001:db8::1")).is_ok());
        }
        let wait = g.page(ip("2001:db8::ffff")).unwrap_err();
        assert!((1..=60).contains(&wait), "{wait}");
        assert!(g.page(ip("2001:db8:0:1::1")).is_ok(), "another /64");
        assert!(g.page(ip("192.0.2.1")).is_ok());
    }

    #[tokio::test]
    async fn password_checks_are_bounded_per_source_and_overall_and_wait_their_turn() {
        let g = Arc::new(LoginGuard::new(1, Duration::from_millis(300)));
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let a = g.hash(ip("192.0.2.1")).await.unwrap();
        assert_eq!(g.hash(ip("192.0.2.1")).await.unwrap_err(), Busy::Source, "one per source");
        assert_eq!(g.hash(ip("192.0.2.2")).await.unwrap_err(), Busy::Everyone, "no core within the wait");
        // A check that ends lets the next in line run.
        let g2 = Arc::clone(&g);
        let waiting = tokio::spawn(async move { g2.hash("192.0.2.3".parse().unwrap()).await.is_ok() });
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(a);
        assert!(waiting.await.unwrap(), "served once the running check ended");
    }
}
