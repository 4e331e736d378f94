//! The shell around the engine and the decisions: one [`Detector`] per
//! process, shared by the gateway's workers and the control plane. It
//! feeds events to the engine, turns overflows into audited alerts and
//! blocks, publishes the block set the request path reads, expires
//! blocks on time, persists its state and serves bouncers.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, mpsc};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use ward_audit::{AuditRecord, AuditSink, Detection};
use ward_core::{Effect, ReasonCode};
use ward_crypto::KeyedHasher;

use crate::blocks::{Allowlist, BlockSet, Target};
use crate::crowdsec::{self, Scopes};
use crate::decisions::{Bouncer, Decision, DecisionError, Decisions, Escalation, Origin};
use crate::engine::{Alert, Engine, EngineSpec};
use crate::event::Event;
use crate::gcra::Limiter;
use crate::scenario::Severity;

/// Detection settings (from `[detect]`).
#[derive(Debug, Clone, PartialEq)]
pub struct DetectSettings {
    /// Scenarios, baselines, privilege checks.
    pub engine: EngineSpec,
    /// Never blocked, never rate limited.
    pub allowlist: Vec<Target>,
    /// Longer blocks for repeat offenders.
    pub escalation: Escalation,
    /// Where decisions, bouncers and learned admins are kept (0600);
    /// `None` keeps them in memory only.
    pub state_file: Option<PathBuf>,
}

/// Why the detector cannot start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DetectError {
    /// The state file exists but cannot be read.
    #[error("{path}: {message} (move it aside to start without the blocks it holds)")]
    State {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// Counters of what the detector did.
#[derive(Debug, Default)]
struct Counters {
    ip_refused: AtomicU64,
    principal_refused: AtomicU64,
    alerts: [AtomicU64; 4],
    blocks: AtomicU64,
}

enum Wake {
    Persist,
    Stop,
}

/// The process's detector.
#[derive(Debug)]
pub struct Detector {
    engine: Mutex<Engine>,
    state: Mutex<Decisions>,
    /// The blocks in force. Read on every request (a shared lock held for
    /// one or two hash probes); changed one target at a time, so a flood of
    /// new blocks costs O(1) each, not a rebuild.
    blocks: RwLock<BlockSet>,
    /// Targets in `blocks`: when none, checks skip the lock entirely.
    blocked: AtomicUsize,
    allow: Allowlist,
    escalation: Escalation,
    audit: Option<(Arc<dyn AuditSink>, KeyedHasher)>,
    state_file: Option<PathBuf>,
    counters: Counters,
    dirty: AtomicBool,
    wake: Mutex<Option<mpsc::Sender<Wake>>>,
    /// The sweeper thread, joined by [`Self::stop`].
    sweeper: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Rate limits registered by the gateway, for status: (name, shadow, limiter).
    limits: Mutex<Vec<(String, bool, Arc<Limiter>)>>,
    /// The state file's lock, held while the detector lives: one process per file.
    _lock: Option<std::fs::File>,
}

impl std::fmt::Debug for Wake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Persist => "Persist",
            Self::Stop => "Stop",
        })
    }
}

/// Milliseconds since the Unix epoch.
#[must_use]
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn rfc3339(ms: u64) -> String {
    ward_audit::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms))
}

impl Detector {
    /// Load the state file (if any), end the blocks that expired while
    /// Ward was down, and publish the rest.
    ///
    /// # Errors
    /// [`DetectError::State`] when the state file is unreadable or corrupt:
    /// starting without the blocks it holds would lift them silently.
    pub fn open(
        settings: DetectSettings,
        audit: Option<(Arc<dyn AuditSink>, KeyedHasher)>,
    ) -> Result<Arc<Self>, DetectError> {
        let now = now_ms();
        let lock = settings.state_file.as_deref().map(lock).transpose()?;
        let mut state = match &settings.state_file {
            Some(path) => load(path)?,
            None => None,
        }
        .unwrap_or_default();
        state.reindex();
        if state.started == 0 {
            state.started = now;
        }
        let admins = state.admins.iter().cloned().collect();
        let engine = Engine::new(settings.engine, state.started, admins);
        let detector = Arc::new(Self {
            engine: Mutex::new(engine),
            blocks: RwLock::new(BlockSet::default()),
            blocked: AtomicUsize::new(0),
            allow: Allowlist::new(&settings.allowlist),
            escalation: settings.escalation,
            audit,
            state_file: settings.state_file,
            counters: Counters::default(),
            dirty: AtomicBool::new(true),
            wake: Mutex::new(None),
            sweeper: Mutex::new(None),
            limits: Mutex::new(Vec::new()),
            _lock: lock,
            state: Mutex::new(state),
        });
        detector.sweep(now);
        detector.republish();
        detector.persist();
        Ok(detector)
    }

    /// Start the thread that ends blocks on time (every second) and
    /// writes the state file after changes. Stops with [`Self::stop`].
    ///
    /// # Errors
    /// When the thread cannot be started.
    pub fn spawn_sweeper(self: &Arc<Self>) -> std::io::Result<()> {
        let (tx, rx) = mpsc::channel();
        if let Ok(mut w) = self.wake.lock() {
            *w = Some(tx);
        }
        let me = Arc::clone(self);
        let handle = std::thread::Builder::new().name("ward-detect".into()).spawn(move || {
            loop {
                let mut stop = matches!(
                    rx.recv_timeout(Duration::from_secs(1)),
                    Ok(Wake::Stop) | Err(mpsc::RecvTimeoutError::Disconnected)
                );
                // Many changes at once (a distributed attack) are written once.
                while let Ok(more) = rx.try_recv() {
                    stop |= matches!(more, Wake::Stop);
                }
                if stop {
                    me.persist();
                    return;
                }
                me.sweep(now_ms());
                me.persist();
            }
        })?;
        if let Ok(mut s) = self.sweeper.lock() {
            *s = Some(handle);
        }
        Ok(())
    }

    /// Stop the sweeper and wait for it: the state is written one last
    /// time, and the sweeper's hold on the detector (and its state file's
    /// lock) is gone when this returns.
    pub fn stop(&self) {
        if let Ok(mut w) = self.wake.lock()
            && let Some(tx) = w.take()
        {
            let _ = tx.send(Wake::Stop);
        }
        let handle = self.sweeper.lock().ok().and_then(|mut s| s.take());
        if let Some(h) = handle {
            let _ = h.join();
        }
    }

    fn nudge(&self) {
        self.dirty.store(true, Ordering::Release);
        if let Ok(w) = self.wake.lock()
            && let Some(tx) = w.as_ref()
        {
            let _ = tx.send(Wake::Persist);
        }
    }

    /// Publish every active decision at once (after loading).
    fn republish(&self) {
        let (Ok(s), Ok(mut b)) = (self.state.lock(), self.blocks.write()) else { return };
        *b = s.block_set();
        self.blocked.store(b.len(), Ordering::Release);
    }

    /// Change the published blocks (`until` = `None` lifts the target's block).
    fn publish(&self, target: &Target, until: Option<u64>) {
        let Ok(mut b) = self.blocks.write() else { return };
        match until {
            Some(until) => b.insert(target, until),
            None => b.remove(target),
        }
        self.blocked.store(b.len(), Ordering::Release);
    }

    /// End the blocks whose time has come (audited) and unpublish them.
    pub fn sweep(&self, now: u64) {
        let ended = match self.state.lock() {
            Ok(mut s) => {
                let ended = s.expire(now);
                for d in &ended {
                    // Re-detected since it expired: the newer decision stays published.
                    let newer = s.on(&d.target).map(|n| n.until);
                    self.publish(&d.target, newer);
                }
                ended
            }
            Err(_) => return,
        };
        if !ended.is_empty() {
            self.dirty.store(true, Ordering::Release);
        }
        for d in &ended {
            self.record_decision(d, "expire", ReasonCode::BlockExpired);
        }
    }

    /// Write the state file if something changed.
    pub fn persist(&self) {
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return;
        }
        let Some(path) = &self.state_file else { return };
        let json = {
            let (Ok(mut s), Ok(e)) = (self.state.lock(), self.engine.lock()) else { return };
            let mut admins: Vec<String> = e.admins().iter().cloned().collect();
            admins.sort();
            s.admins = admins;
            serde_json::to_vec_pretty(&*s)
        };
        let written = json
            .map_err(std::io::Error::other)
            .and_then(|bytes| ward_audit::checkpoints::write_atomic(path, &bytes, 0o600));
        if let Err(e) = written {
            self.dirty.store(true, Ordering::Release);
            tracing::error!(path = %path.display(), error = %e, "detection state not written; retrying");
        }
    }

    /// Observe one event: run the detectors, and audit and enforce what
    /// they raise. The block is in force before this returns, so the
    /// offender's very next request meets it. Refusals that enforce a
    /// decision already taken (a rate limit, a block) are not new evidence
    /// and are passed over.
    pub fn observe(&self, event: &Event<'_>) {
        if matches!(event.reason, ReasonCode::RateLimited | ReasonCode::PrincipalBlocked | ReasonCode::AddressBlocked) {
            return;
        }
        let now = now_ms();
        let alerts: Vec<Alert> = {
            let Ok(mut engine) = self.engine.lock() else { return };
            let raised = engine.observe(event, now);
            if raised.is_empty() {
                return;
            }
            raised.to_vec()
        };
        for alert in alerts {
            self.raise(&alert, now);
        }
    }

    fn raise(&self, alert: &Alert, now: u64) {
        let i = match alert.severity {
            Severity::Low => 0,
            Severity::Medium => 1,
            Severity::High => 2,
            Severity::Critical => 3,
        };
        self.counters.alerts[i].fetch_add(1, Ordering::Relaxed);
        let allowlisted = self.allow.covers(&alert.target);
        let mut detail = alert.detail.clone();
        if allowlisted && alert.block.is_some() {
            detail.push_str("; allowlisted, so not blocked");
        }
        self.record(
            ReasonCode::ThreatDetected,
            Detection {
                scenario: alert.scenario.to_string(),
                severity: alert.severity.as_str(),
                action: "alert",
                target_kind: alert.target.kind(),
                target_hmac: self.hmac(&alert.target),
                decision_id: None,
                until: None,
                offence: None,
                count: Some(alert.count),
                detail: Some(detail),
            },
        );
        tracing::warn!(scenario = %alert.scenario, severity = alert.severity.as_str(), "threat detected");
        if let (Some(base), false) = (alert.block, allowlisted) {
            let why = (Origin::Detection, &*alert.scenario, alert.detail.as_str(), alert.severity);
            let made = self.decide(|s| s.add(alert.target.clone(), base, &self.escalation, why, now));
            if let Some(d) = made {
                self.record_decision(&d, "block", ReasonCode::BlockAdded);
            }
        }
    }

    fn decide(&self, change: impl FnOnce(&mut Decisions) -> Option<Decision>) -> Option<Decision> {
        let made = {
            let mut s = self.state.lock().ok()?;
            let made = change(&mut s)?;
            // Published before the lock on the decisions is released, so a
            // concurrent lift cannot be overtaken.
            self.publish(&made.target, Some(made.until));
            made
        };
        self.counters.blocks.fetch_add(1, Ordering::Relaxed);
        self.nudge();
        Some(made)
    }

    fn hmac(&self, target: &Target) -> String {
        self.audit.as_ref().map(|(_, h)| h.tag_hex(target.value().as_bytes())).unwrap_or_default()
    }

    fn record_decision(&self, d: &Decision, action: &'static str, reason: ReasonCode) {
        let severity = d.severity;
        self.record(
            reason,
            Detection {
                scenario: d.scenario.clone(),
                severity: severity.as_str(),
                action,
                target_kind: d.target.kind(),
                target_hmac: self.hmac(&d.target),
                decision_id: Some(d.id),
                until: Some(rfc3339(d.until)),
                offence: Some(d.offence),
                count: None,
                detail: Some(d.reason.clone()),
            },
        );
    }

    fn record(&self, reason: ReasonCode, detection: Detection) {
        let Some((sink, _)) = &self.audit else { return };
        let effect = if reason == ReasonCode::ThreatDetected { Effect::Allow } else { Effect::Deny };
        let mut r =
            AuditRecord::event("detection", "DETECT", reason, effect, rfc3339(now_ms()), ward_audit::new_event_id());
        r.detection = Some(detection);
        if let Err(e) = sink.record(r) {
            tracing::error!(error = %e, "detection event could not be audited");
        }
    }

    /// Whether connections from `ip` are refused now. Allowlisted
    /// addresses never are.
    #[must_use]
    pub fn ip_blocked(&self, ip: IpAddr) -> bool {
        self.check(|b, now| b.ip(ip, now).is_some(), || self.allow.allows_ip(ip), &self.counters.ip_refused)
    }

    /// Whether requests by `principal` are refused now.
    #[must_use]
    pub fn principal_blocked(&self, principal: &str) -> bool {
        self.check(
            |b, now| b.principal(principal, now).is_some(),
            || self.allow.allows_principal(principal),
            &self.counters.principal_refused,
        )
    }

    /// Whether requests by `name`, vouched for by `issuer`, are refused
    /// now: blocked by name alone (an operator's `principal:NAME`, every
    /// issuer) or in that issuer's namespace (`principal:ISSUER#NAME`, what
    /// detections raise). Nothing is formatted while nothing is blocked.
    #[must_use]
    pub fn principal_blocked_in(&self, issuer: &str, name: &str) -> bool {
        self.check(
            |b, now| b.principal_in(issuer, name, now).is_some(),
            // Asked only on a hit; a bare allowlisted name covers every issuer.
            || {
                self.allow.allows_principal(name)
                    || self.allow.allows_principal(&crate::event::qualified(Some(issuer), name))
            },
            &self.counters.principal_refused,
        )
    }

    /// One block check: nothing to do while nothing is blocked; a poisoned
    /// lock fails closed; the allowlist is asked only on a hit.
    fn check(
        &self,
        hit: impl FnOnce(&BlockSet, u64) -> bool,
        allowed: impl FnOnce() -> bool,
        refused: &AtomicU64,
    ) -> bool {
        if self.blocked.load(Ordering::Acquire) == 0 {
            return false;
        }
        let now = now_ms();
        let blocked = self.blocks.read().map_or(true, |b| hit(&b, now)) && !allowed();
        if blocked {
            refused.fetch_add(1, Ordering::Relaxed);
        }
        blocked
    }

    /// Whether `ip` or `principal` is on the allowlist (never rate limited).
    #[must_use]
    pub fn allowlisted(&self, ip: IpAddr, principal: Option<&str>) -> bool {
        self.allow.allows_ip(ip) || principal.is_some_and(|p| self.allow.allows_principal(p))
    }

    /// The allowlist.
    #[must_use]
    pub fn allowlist(&self) -> &Allowlist {
        &self.allow
    }

    /// Block `target` for exactly `duration` (an operator's decision),
    /// persisted before this returns.
    ///
    /// # Errors
    /// [`DecisionError`] for an allowlisted target or a zero duration.
    pub fn block(&self, target: Target, duration: Duration, reason: &str) -> Result<Decision, DecisionError> {
        if self.allow.covers(&target) {
            return Err(DecisionError::Allowlisted(target.to_string()));
        }
        if duration.is_zero() {
            return Err(DecisionError::Invalid("the duration must be greater than zero".into()));
        }
        let exact = Escalation { factor: 1.0, max: duration, window: Duration::ZERO };
        let reason = if reason.trim().is_empty() { "blocked by an operator" } else { reason };
        let why = (Origin::Manual, "manual", reason, Severity::Low);
        let now = now_ms();
        let made = self
            .decide(|s| s.add(target.clone(), duration, &exact, why, now))
            .or_else(|| self.state.lock().ok().and_then(|s| s.on(&target).cloned()))
            .ok_or_else(|| DecisionError::Invalid("the decision could not be stored".into()))?;
        self.record_decision(&made, "block", ReasonCode::BlockAdded);
        self.persist();
        Ok(made)
    }

    /// Lift decision `id`; the decision, if it was active.
    pub fn unblock(&self, id: u64) -> Option<Decision> {
        let now = now_ms();
        let d = {
            let mut s = self.state.lock().ok()?;
            let d = s.remove(id, now)?;
            let newer = s.on(&d.target).map(|n| n.until);
            self.publish(&d.target, newer);
            d
        };
        self.record_decision(&d, "unblock", ReasonCode::BlockRemoved);
        self.dirty.store(true, Ordering::Release);
        self.persist();
        Some(d)
    }

    /// The active decisions.
    #[must_use]
    pub fn decisions(&self) -> Vec<Decision> {
        self.state.lock().map(|s| s.active().cloned().collect()).unwrap_or_default()
    }

    /// Show rate limit `name`'s counts in [`Self::status`].
    pub fn register_limit(&self, name: &str, shadow: bool, limiter: Arc<Limiter>) {
        if let Ok(mut l) = self.limits.lock() {
            l.push((name.to_owned(), shadow, limiter));
        }
    }

    /// What `ward detect status` shows.
    #[must_use]
    pub fn status(&self) -> Value {
        let engine = self.engine.lock().map(|e| e.stats()).unwrap_or_default();
        let (active, bouncers) = self
            .state
            .lock()
            .map(|s| {
                let b: Vec<Value> = s
                    .bouncers
                    .values()
                    .map(|b| json!({"name": b.name, "last_pull": (b.last_pull > 0).then(|| rfc3339(b.last_pull))}))
                    .collect();
                (s.counts(), b)
            })
            .unwrap_or_default();
        let a = &self.counters.alerts;
        let limits: Vec<Value> = self
            .limits
            .lock()
            .map(|l| {
                l.iter()
                    .map(|(name, shadow, limiter)| {
                        json!({
                            "name": name,
                            "shadow": shadow,
                            "allowed": limiter.stats.allowed.load(Ordering::Relaxed),
                            "limited": limiter.stats.limited.load(Ordering::Relaxed),
                            "keys": limiter.keys(),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        json!({
            "events": engine.events,
            "alerts": {
                "low": a[0].load(Ordering::Relaxed),
                "medium": a[1].load(Ordering::Relaxed),
                "high": a[2].load(Ordering::Relaxed),
                "critical": a[3].load(Ordering::Relaxed),
            },
            "blocks_made": self.counters.blocks.load(Ordering::Relaxed),
            "active_blocks": active,
            "refused": {
                "connections": self.counters.ip_refused.load(Ordering::Relaxed),
                "principal_requests": self.counters.principal_refused.load(Ordering::Relaxed),
            },
            "buckets": engine.buckets,
            "baselines": engine.baselines,
            "allowlist": self.allow.entries().iter().map(ToString::to_string).collect::<Vec<_>>(),
            "bouncers": bouncers,
            "rate_limits": limits,
        })
    }

    /// Register bouncer `name`; its API key (shown once, stored as SHA-256).
    ///
    /// # Errors
    /// [`DecisionError::Invalid`] for a bad or existing name.
    pub fn add_bouncer(&self, name: &str) -> Result<String, DecisionError> {
        if name.is_empty() || name.len() > 64 || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            return Err(DecisionError::Invalid("a bouncer name is 1-64 of A-Z a-z 0-9 - _ .".into()));
        }
        let key = ward_crypto::random_bytes::<32>()
            .map(|b| b.iter().map(|x| format!("{x:02x}")).collect::<String>())
            .map_err(|e| DecisionError::Invalid(e.to_string()))?;
        {
            let mut s = self.state.lock().map_err(|_| DecisionError::Invalid("state lock poisoned".into()))?;
            if s.bouncers.contains_key(name) {
                return Err(DecisionError::Invalid(format!("bouncer `{name}` exists")));
            }
            let b = Bouncer {
                name: name.to_owned(),
                key_sha256: ward_crypto::sha256_hex(key.as_bytes()),
                cursor: 0,
                last_pull: 0,
            };
            s.bouncers.insert(name.to_owned(), b);
        }
        self.dirty.store(true, Ordering::Release);
        self.persist();
        Ok(key)
    }

    /// Remove bouncer `name`; whether it existed.
    pub fn remove_bouncer(&self, name: &str) -> bool {
        let removed = self.state.lock().is_ok_and(|mut s| s.bouncers.remove(name).is_some());
        if removed {
            self.dirty.store(true, Ordering::Release);
            self.persist();
        }
        removed
    }

    /// Whether `api_key` is a registered bouncer's.
    #[must_use]
    pub fn is_bouncer(&self, api_key: &str) -> bool {
        self.state.lock().is_ok_and(|s| bouncer_of(&s, api_key).is_some())
    }

    /// The active decisions on addresses and ranges covering `ip`
    /// (`GET /v1/decisions?ip=`), read under the lock, not copied whole.
    #[must_use]
    pub fn covering(&self, ip: IpAddr) -> Vec<Decision> {
        let now = now_ms();
        self.state
            .lock()
            .map(|s| {
                s.active()
                    .filter(|d| d.until > now && matches!(&d.target, Target::Address(c) if c.contains(ip)))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Answer a bouncer's pull (`GET /v1/decisions/stream`): `None` when
    /// `api_key` is no bouncer's (403).
    #[must_use]
    pub fn stream(&self, api_key: &str, startup: bool, scopes: Scopes) -> Option<Value> {
        let now = now_ms();
        let answer = {
            let mut s = self.state.lock().ok()?;
            let name = bouncer_of(&s, api_key)?;
            let cursor = if startup { 0 } else { s.bouncers.get(&name).map_or(0, |b| b.cursor) };
            let (new, ended) = s.since(cursor);
            let ended = if startup { Vec::new() } else { ended };
            let answer = crowdsec::stream(&new, &ended, scopes, now);
            let seq = s.seq();
            if let Some(b) = s.bouncers.get_mut(&name) {
                b.cursor = seq;
                b.last_pull = now;
            }
            answer
        };
        self.dirty.store(true, Ordering::Release);
        Some(answer)
    }
}

/// The name of the bouncer whose key is `api_key`. Every stored hash is
/// compared, matching or not, in constant time.
fn bouncer_of(s: &Decisions, api_key: &str) -> Option<String> {
    let presented = ward_crypto::sha256_hex(api_key.trim().as_bytes());
    let mut found = None;
    for b in s.bouncers.values() {
        if ward_crypto::constant_time_eq(b.key_sha256.as_bytes(), presented.as_bytes()) {
            found = Some(b.name.clone());
        }
    }
    found
}

/// Take `<state file>.lock`: two processes writing one state file would
/// lose each other's blocks.
fn lock(path: &Path) -> Result<std::fs::File, DetectError> {
    let lock_path = path.with_extension("lock");
    let err = |message: String| DetectError::State { path: lock_path.clone(), message };
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| err(e.to_string()))?;
    file.try_lock()
        .map_err(|_| err("held by another Ward process; give each process its own [detect] state_file".into()))?;
    Ok(file)
}

fn load(path: &Path) -> Result<Option<Decisions>, DetectError> {
    let err = |message: String| DetectError::State { path: path.to_owned(), message };
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| err(e.to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(err(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use ward_core::ReasonCode;

    use super::*;
    use crate::engine::PrivilegeSpec;
    use crate::event::Source;
    use crate::scenario::defaults;

    /// Keeps records in memory.
    #[derive(Debug, Default)]
    struct Recorder(Mutex<Vec<AuditRecord>>);

    impl AuditSink for Recorder {
        fn record(&self, record: AuditRecord) -> Result<u64, ward_audit::AuditError> {
            let mut v = self.0.lock().unwrap();
            v.push(record);
            Ok(v.len() as u64 - 1)
        }

        fn durable(&self, _: u64) -> ward_audit::AuditFuture<()> {
            Box::pin(async { Ok(()) })
        }

        fn flush(&self) -> ward_audit::AuditFuture<()> {
            Box::pin(async { Ok(()) })
        }
    }

    impl Recorder {
        fn actions(&self) -> Vec<(String, &'static str)> {
            let v = self.0.lock().unwrap();
            v.iter().filter_map(|r| r.detection.as_ref().map(|d| (d.scenario.clone(), d.action))).collect()
        }
    }

    fn settings(state: Option<PathBuf>, allow: &[&str]) -> DetectSettings {
        DetectSettings {
            engine: EngineSpec {
                scenarios: defaults(),
                anomaly: None,
                privilege: PrivilegeSpec::default(),
                max_keys: 10_000,
            },
            allowlist: allow.iter().map(|a| Target::parse(a).unwrap()).collect(),
            escalation: Escalation::default(),
            state_file: state,
        }
    }

    fn open(state: Option<PathBuf>, allow: &[&str]) -> (Arc<Detector>, Arc<Recorder>) {
        let rec = Arc::new(Recorder::default());
        let hasher = KeyedHasher::new(&ward_crypto::SecretBytes::new(vec![7; 32])).unwrap();
        let sink = Arc::clone(&rec) as Arc<dyn AuditSink>;
        (Detector::open(settings(state, allow), Some((sink, hasher))).unwrap(), rec)
    }

    fn spray(d: &Detector, from: &str) {
        let ip: IpAddr = from.parse().unwrap();
        for i in 0..6 {
            let user = format!("user{i}");
            let e = Event::new(Source::TokenService, ReasonCode::LoginFailed, 200, ip, "/oauth2/authorize")
                .principal(Some(&user));
            d.observe(&e);
        }
    }

    #[test]
    fn a_detection_blocks_at_once_and_is_audited() {
        let (d, rec) = open(None, &[]);
        let ip: IpAddr = "198.51.100.7".parse().unwrap();
        assert!(!d.ip_blocked(ip));
        spray(&d, "198.51.100.7");
        assert!(d.ip_blocked(ip), "in force before observe returned");
        assert!(!d.ip_blocked("198.51.100.8".parse().unwrap()));
        assert_eq!(
            rec.actions(),
            [("ward/password-spraying".to_owned(), "alert"), ("ward/password-spraying".to_owned(), "block")]
        );
        let records = rec.0.lock().unwrap();
        let block = records.iter().find(|r| r.reason == ReasonCode::BlockAdded).unwrap();
        let det = block.detection.as_ref().unwrap();
        assert_eq!((det.target_kind, det.offence, det.severity), ("ip", Some(1), "high"));
        assert_ne!(det.target_hmac, "198.51.100.7", "the address is an HMAC in the log");
        assert_eq!(det.target_hmac.len(), 32);
    }

    #[test]
    fn refusals_that_enforce_a_decision_are_not_evidence() {
        let (d, rec) = open(None, &[]);
        let ip: IpAddr = "198.51.100.9".parse().unwrap();
        for reason in [ReasonCode::AddressBlocked, ReasonCode::PrincipalBlocked, ReasonCode::RateLimited] {
            for i in 0..50 {
                let path = format!("/p/{i}");
                d.observe(&Event::new(Source::Gateway, reason, 403, ip, &path));
            }
        }
        assert!(rec.actions().is_empty(), "403s of blocks do not look like a scan");
        assert!(!d.ip_blocked(ip));
    }

    #[test]
    fn allowlisted_clients_are_alerted_on_but_never_blocked() {
        let (d, rec) = open(None, &["198.51.100.0/24", "principal:ops"]);
        spray(&d, "198.51.100.7");
        assert!(!d.ip_blocked("198.51.100.7".parse().unwrap()));
        assert_eq!(rec.actions(), [("ward/password-spraying".to_owned(), "alert")]);
        assert!(matches!(
            d.block(Target::parse("198.51.100.0/16").unwrap(), Duration::from_secs(60), ""),
            Err(DecisionError::Allowlisted(_))
        ));
        assert!(d.block(Target::parse("principal:ops").unwrap(), Duration::from_secs(60), "").is_err());
        assert!(d.allowlisted("198.51.100.9".parse().unwrap(), None));
        assert!(d.allowlisted("10.0.0.1".parse().unwrap(), Some("ops")));
    }

    #[test]
    fn blocks_survive_a_restart_and_expired_ones_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("detect.json");
        let (d, _) = open(Some(state.clone()), &[]);
        let long = d.block(Target::parse("192.0.2.1").unwrap(), Duration::from_secs(3600), "long").unwrap();
        d.block(Target::parse("principal:eve").unwrap(), Duration::from_millis(300), "short").unwrap();
        let key = d.add_bouncer("fw").unwrap();
        assert!(d.principal_blocked("eve"));
        drop(d);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&state).unwrap().permissions().mode() & 0o777, 0o600);
        std::thread::sleep(Duration::from_millis(400));
        let (d, rec) = open(Some(state.clone()), &[]);
        assert!(d.ip_blocked("192.0.2.1".parse().unwrap()), "restart keeps active blocks");
        assert!(!d.principal_blocked("eve"), "an expired block is gone");
        let ids: Vec<u64> = d.decisions().iter().map(|x| x.id).collect();
        assert_eq!(ids, [long.id]);
        assert_eq!(rec.actions(), [("manual".to_owned(), "expire")], "its end is audited");
        assert_eq!(rec.0.lock().unwrap()[0].reason, ReasonCode::BlockExpired);
        assert!(d.stream(&key, true, Scopes::default()).is_some(), "bouncers survive too");
        let held = Detector::open(settings(Some(state.clone()), &[]), None).unwrap_err();
        assert!(held.to_string().contains("another Ward process"), "{held}");
        drop(d);
        std::fs::write(&state, b"{not json").unwrap();
        let err = Detector::open(settings(Some(state.clone()), &[]), None).unwrap_err();
        assert!(err.to_string().contains("detect.json"), "{err}");
    }

    #[test]
    fn blocks_end_on_time_and_the_sweeper_audits_them() {
        let (d, rec) = open(None, &[]);
        d.block(Target::parse("192.0.2.0/24").unwrap(), Duration::from_millis(200), "x").unwrap();
        assert!(d.ip_blocked("192.0.2.77".parse().unwrap()));
        std::thread::sleep(Duration::from_millis(250));
        assert!(!d.ip_blocked("192.0.2.77".parse().unwrap()), "ends at its time, before any sweep");
        d.sweep(now_ms());
        assert!(d.decisions().is_empty());
        assert_eq!(rec.actions().last().unwrap().1, "expire");
    }

    #[test]
    fn bouncers_pull_new_and_deleted_decisions() {
        let (d, _) = open(None, &[]);
        let key = d.add_bouncer("nginx").unwrap();
        assert!(d.add_bouncer("nginx").is_err());
        assert!(d.stream("wrong", true, Scopes::default()).is_none());
        let a = d.block(Target::parse("192.0.2.1").unwrap(), Duration::from_secs(60), "").unwrap();
        let first = d.stream(&key, true, Scopes::default()).unwrap();
        assert_eq!(first["new"][0]["value"], "192.0.2.1");
        assert_eq!(first["new"][0]["id"], a.id);
        let quiet = d.stream(&key, false, Scopes::default()).unwrap();
        assert_eq!(quiet, json!({"new": null, "deleted": null}));
        d.unblock(a.id).unwrap();
        let b = d.block(Target::parse("192.0.2.0/24").unwrap(), Duration::from_secs(60), "").unwrap();
        let next = d.stream(&key, false, Scopes::default()).unwrap();
        assert_eq!(next["deleted"][0]["value"], "192.0.2.1");
        assert_eq!(next["new"][0]["value"], "192.0.2.0/24");
        assert_eq!(next["new"][0]["id"], b.id);
        assert!(d.remove_bouncer("nginx"));
        assert!(d.stream(&key, true, Scopes::default()).is_none());
    }

    #[test]
    fn learned_admins_persist() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("detect.json");
        let (d, _) = open(Some(state.clone()), &[]);
        let e = Event::new(Source::Gateway, ReasonCode::AllowedByPolicy, 200, "10.0.0.1".parse().unwrap(), "/admin")
            .principal(Some("ops"))
            .privileged(crate::event::Privileged::AdminUse);
        d.observe(&e);
        d.dirty.store(true, Ordering::Release);
        d.persist();
        let saved: Decisions = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
        assert_eq!(saved.admins.iter().collect::<HashSet<_>>(), [&"principal:ops".to_owned()].into());
    }
}
