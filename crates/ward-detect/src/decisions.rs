//! Decisions: who is blocked, since when, until when and why; repeat
//! offenders get longer blocks (fail2ban's `bantime.increment`: the base
//! duration times `factor` per earlier block within the offence window,
//! capped); the changes are numbered so bouncers can pull only what
//! changed (CrowdSec's stream). Pure state: the detector persists it.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::blocks::{BlockSet, Target};
use crate::scenario::Severity;

const fn low() -> Severity {
    Severity::Low
}

/// Where a decision came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// A scenario overflowed.
    Detection,
    /// An operator (`ward block add`).
    Manual,
}

/// One block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// Unique, increasing.
    pub id: u64,
    /// What is blocked.
    pub target: Target,
    /// When it began (ms since the Unix epoch).
    pub created: u64,
    /// When it ends (ms since the Unix epoch).
    pub until: u64,
    /// Who decided.
    pub origin: Origin,
    /// The scenario, or `manual`.
    pub scenario: String,
    /// Why, in words (no personal data).
    pub reason: String,
    /// Which block of this target this is within the offence window (1 = first).
    pub offence: u32,
    /// The severity of what caused it (`low` for an operator's block).
    #[serde(default = "low")]
    pub severity: Severity,
    /// Change number when it was made or last extended.
    pub seq: u64,
    /// Change number when it was made.
    #[serde(default)]
    pub first_seq: u64,
}

/// How blocks grow for repeat offenders.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Escalation {
    /// Each earlier block within the window multiplies the duration by this.
    pub factor: f64,
    /// No block is longer than this.
    pub max: Duration,
    /// Earlier blocks count for this long after they began.
    pub window: Duration,
}

impl Default for Escalation {
    fn default() -> Self {
        Self { factor: 2.0, max: Duration::from_secs(7 * 24 * 3600), window: Duration::from_secs(7 * 24 * 3600) }
    }
}

impl Escalation {
    /// The duration of offence number `offence` (1-based) for a `base` block.
    #[must_use]
    pub fn duration(&self, base: Duration, offence: u32) -> Duration {
        let exp = i32::try_from(offence.saturating_sub(1)).unwrap_or(i32::MAX).min(64);
        let secs = base.as_secs_f64() * self.factor.max(1.0).powi(exp);
        if !secs.is_finite() || secs >= self.max.as_secs_f64() {
            return self.max.max(base.min(self.max));
        }
        Duration::from_secs_f64(secs)
    }
}

/// A decision that ended or was lifted, kept for bouncers that have not
/// pulled since.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ended {
    /// The decision.
    pub decision: Decision,
    /// Change number of its end.
    pub seq: u64,
    /// When it ended (ms).
    pub at: u64,
    /// `expired` or `removed`.
    pub how: String,
}

/// A bouncer allowed to read the stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bouncer {
    /// Its name.
    pub name: String,
    /// SHA-256 of its API key (hex); the key itself is shown once.
    pub key_sha256: String,
    /// The change number it has seen up to.
    pub cursor: u64,
    /// When it last pulled (ms), 0 if never.
    pub last_pull: u64,
}

/// Why a decision cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecisionError {
    /// The target is on the allowlist.
    #[error("`{0}` is allowlisted: it is never blocked")]
    Allowlisted(String),
    /// A bad value.
    #[error("{0}")]
    Invalid(String),
}

/// The whole decision state (what the state file holds).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Decisions {
    next_id: u64,
    seq: u64,
    active: BTreeMap<u64, Decision>,
    ended: VecDeque<Ended>,
    /// Earlier block starts per target (its text form), for escalation.
    history: BTreeMap<String, Vec<u64>>,
    /// Active decision id per target (rebuilt after loading).
    #[serde(skip)]
    index: HashMap<Target, u64>,
    /// History size that triggers the next prune.
    #[serde(skip)]
    prune_at: usize,
    /// Bouncers by name.
    pub bouncers: BTreeMap<String, Bouncer>,
    /// When detection first ran here (starts the admin learning period).
    pub started: u64,
    /// Principals and addresses seen using admin APIs.
    pub admins: Vec<String>,
}

/// Ended decisions kept for bouncers at most.
const ENDED_KEPT: usize = 10_000;

impl Decisions {
    /// The active decisions, oldest first.
    pub fn active(&self) -> impl Iterator<Item = &Decision> {
        self.active.values()
    }

    /// The active decision on `target`, if any.
    #[must_use]
    pub fn on(&self, target: &Target) -> Option<&Decision> {
        self.index.get(target).and_then(|id| self.active.get(id))
    }

    /// Rebuild the target index (after deserializing).
    pub fn reindex(&mut self) {
        self.index = self.active.values().map(|d| (d.target.clone(), d.id)).collect();
    }

    /// The current change number.
    #[must_use]
    pub const fn seq(&self) -> u64 {
        self.seq
    }

    /// Block `target` from `now` for `base` (escalated for repeat
    /// offenders). A target already blocked keeps its block, extended if
    /// the new one would end later; `None` when nothing changed.
    pub fn add(
        &mut self,
        target: Target,
        base: Duration,
        escalation: &Escalation,
        (origin, scenario, reason, severity): (Origin, &str, &str, Severity),
        now: u64,
    ) -> Option<Decision> {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        // Already blocked: the same offence again, extended if it would end later.
        if let Some(existing) = self.index.get(&target).and_then(|id| self.active.get_mut(id)).filter(|d| d.until > now)
        {
            let until = now.saturating_add(ms(escalation.duration(base, existing.offence)));
            if existing.until >= until {
                return None;
            }
            existing.until = until;
            self.seq += 1;
            existing.seq = self.seq;
            return Some(existing.clone());
        }
        let window = ms(escalation.window);
        let starts = self.history.entry(target.to_string()).or_default();
        starts.retain(|s| now.saturating_sub(*s) < window);
        let offence = u32::try_from(starts.len()).unwrap_or(u32::MAX).saturating_add(1);
        let until = now.saturating_add(ms(escalation.duration(base, offence)));
        starts.push(now);
        if self.history.len() > self.prune_at.max(100_000) {
            self.history.retain(|_, s| s.iter().any(|t| now.saturating_sub(*t) < window));
            // Amortized: the next prune waits until the history has doubled.
            self.prune_at = self.history.len() * 2;
        }
        self.next_id += 1;
        self.seq += 1;
        let d = Decision {
            id: self.next_id,
            target,
            created: now,
            until,
            origin,
            scenario: scenario.to_owned(),
            reason: reason.to_owned(),
            offence,
            severity,
            seq: self.seq,
            first_seq: self.seq,
        };
        self.index.insert(d.target.clone(), d.id);
        self.active.insert(d.id, d.clone());
        Some(d)
    }

    /// Lift decision `id`.
    pub fn remove(&mut self, id: u64, now: u64) -> Option<Decision> {
        let d = self.active.remove(&id)?;
        if self.index.get(&d.target) == Some(&d.id) {
            self.index.remove(&d.target);
        }
        self.end(d.clone(), now, "removed");
        Some(d)
    }

    /// End every decision whose time has come; the ones that ended.
    pub fn expire(&mut self, now: u64) -> Vec<Decision> {
        let due: Vec<u64> = self.active.values().filter(|d| d.until <= now).map(|d| d.id).collect();
        let mut out = Vec::with_capacity(due.len());
        for id in due {
            if let Some(d) = self.active.remove(&id) {
                // A newer decision on the same target keeps its place.
                if self.index.get(&d.target) == Some(&d.id) {
                    self.index.remove(&d.target);
                }
                self.end(d.clone(), d.until, "expired");
                out.push(d);
            }
        }
        out
    }

    fn end(&mut self, decision: Decision, at: u64, how: &str) {
        self.seq += 1;
        self.ended.push_back(Ended { decision, seq: self.seq, at, how: how.to_owned() });
        while self.ended.len() > ENDED_KEPT {
            self.ended.pop_front();
        }
    }

    /// The block set for the request path.
    #[must_use]
    pub fn block_set(&self) -> BlockSet {
        BlockSet::new(self.active.values().map(|d| (&d.target, d.until)))
    }

    /// Changes after `cursor`: decisions made (and still active), and
    /// decisions ended.
    #[must_use]
    pub fn since(&self, cursor: u64) -> (Vec<&Decision>, Vec<&Ended>) {
        let new = self.active.values().filter(|d| d.seq > cursor).collect();
        // An end is news to a bouncer that saw the decision (in any version).
        let ended = self.ended.iter().filter(|e| e.seq > cursor && e.decision.first_seq <= cursor).collect();
        (new, ended)
    }

    /// Active decisions per target kind and origin, for status.
    #[must_use]
    pub fn counts(&self) -> HashMap<String, usize> {
        let mut c = HashMap::new();
        for d in self.active.values() {
            *c.entry(d.target.kind().to_owned()).or_insert(0) += 1;
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: u64 = 60_000;

    fn t(s: &str) -> Target {
        Target::parse(s).unwrap()
    }

    fn add(d: &mut Decisions, target: &str, now: u64) -> Option<Decision> {
        d.add(
            t(target),
            Duration::from_secs(600),
            &Escalation::default(),
            (Origin::Detection, "ward/scan", "test", Severity::Medium),
            now,
        )
    }

    #[test]
    fn repeat_offenders_get_longer_blocks() {
        let mut d = Decisions::default();
        let first = add(&mut d, "192.0.2.1", 0).unwrap();
        assert_eq!((first.offence, first.until), (1, 10 * M));
        // Detected again while blocked: the same offence, running from now.
        let again = add(&mut d, "192.0.2.1", M).unwrap();
        assert_eq!((again.id, again.offence, again.until), (first.id, 1, 11 * M));
        assert!(add(&mut d, "192.0.2.1", M).is_none(), "nothing changes");
        assert_eq!(d.expire(11 * M).len(), 1);
        let second = add(&mut d, "192.0.2.1", 12 * M).unwrap();
        assert_eq!((second.offence, second.until - second.created), (2, 20 * M));
        d.expire(32 * M);
        let third = add(&mut d, "192.0.2.1", 33 * M).unwrap();
        assert_eq!(third.until - third.created, 40 * M);
        assert!(third.id > second.id && second.id > first.id);
    }

    #[test]
    fn a_new_decision_after_an_unswept_expiry_survives_the_sweep() {
        let mut d = Decisions::default();
        let old = add(&mut d, "192.0.2.1", 0).unwrap();
        // Expired at 10 min but not swept yet; detected again at 11 min.
        let new = add(&mut d, "192.0.2.1", 11 * M).unwrap();
        assert_ne!(new.id, old.id);
        let ended: Vec<u64> = d.expire(11 * M).iter().map(|x| x.id).collect();
        assert_eq!(ended, [old.id]);
        assert_eq!(d.on(&t("192.0.2.1")).map(|x| x.id), Some(new.id), "the new block stands");
        assert!(d.block_set().ip("192.0.2.1".parse().unwrap(), 11 * M).is_some());
    }

    #[test]
    fn escalation_is_capped_and_forgets_old_offences() {
        let e = Escalation { factor: 3.0, max: Duration::from_secs(3600), window: Duration::from_secs(86_400) };
        assert_eq!(e.duration(Duration::from_secs(600), 1), Duration::from_secs(600));
        assert_eq!(e.duration(Duration::from_secs(600), 2), Duration::from_secs(1800));
        assert_eq!(e.duration(Duration::from_secs(600), 3), Duration::from_secs(3600));
        assert_eq!(e.duration(Duration::from_secs(600), 90), Duration::from_secs(3600));
        let mut d = Decisions::default();
        d.add(t("10.0.0.1"), Duration::from_secs(60), &e, (Origin::Manual, "manual", "x", Severity::Low), 0);
        d.expire(M);
        let later = d.add(
            t("10.0.0.1"),
            Duration::from_secs(60),
            &e,
            (Origin::Manual, "manual", "x", Severity::Low),
            86_400_000 + M,
        );
        assert_eq!(later.unwrap().offence, 1, "the first block left the window");
    }

    #[test]
    fn the_stream_reports_new_and_ended_decisions_once() {
        let mut d = Decisions::default();
        let a = add(&mut d, "192.0.2.1", 0).unwrap();
        let cursor0 = 0;
        let (new, ended) = d.since(cursor0);
        assert_eq!((new.len(), ended.len()), (1, 0));
        let cursor1 = d.seq();
        let b = add(&mut d, "principal:mallory", M).unwrap();
        d.remove(a.id, 2 * M).unwrap();
        let (new, ended) = d.since(cursor1);
        assert_eq!(new.iter().map(|x| x.id).collect::<Vec<_>>(), vec![b.id]);
        assert_eq!(ended.iter().map(|x| (x.decision.id, x.how.as_str())).collect::<Vec<_>>(), vec![(a.id, "removed")]);
        let cursor2 = d.seq();
        assert_eq!(d.expire(11 * M).len(), 1);
        let (new, ended) = d.since(cursor2);
        assert!(new.is_empty());
        assert_eq!(ended[0].how, "expired");
        assert!(d.since(d.seq()).0.is_empty() && d.since(d.seq()).1.is_empty());
    }

    #[test]
    fn a_decision_extended_then_lifted_between_pulls_is_reported_deleted() {
        let mut d = Decisions::default();
        let a = add(&mut d, "192.0.2.1", 0).unwrap();
        let cursor = d.seq();
        add(&mut d, "192.0.2.1", M).unwrap(); // extended
        d.remove(a.id, 2 * M).unwrap();
        let (new, ended) = d.since(cursor);
        assert!(new.is_empty());
        assert_eq!(ended.iter().map(|e| e.decision.id).collect::<Vec<_>>(), [a.id]);
    }

    #[test]
    fn state_round_trips_through_json() {
        let mut d = Decisions::default();
        add(&mut d, "192.0.2.0/24", 0);
        add(&mut d, "principal:x", 0);
        let json = serde_json::to_string(&d).unwrap();
        let mut back = serde_json::from_str::<Decisions>(&json).unwrap();
        back.reindex();
        assert_eq!(back, d);
        assert!(back.on(&t("principal:x")).is_some());
    }
}
