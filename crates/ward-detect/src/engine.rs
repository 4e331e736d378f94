//! The detection engine: every event passes through the scenarios' leaky
//! buckets, the per-principal baselines and the privilege-escalation
//! checks; what overflows comes out as [`Alert`]s. Pure: time is an
//! argument and nothing here touches a file or a socket.
//!
//! Cost per event: a bit test per scenario to see whether it cares (a
//! reason-code mask), then one hash probe per interested scenario and one
//! for the principal's baseline. No allocation unless something fires.

use std::collections::HashSet;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use ward_core::Cidr;
use ward_core::net::canonical_ip;

use crate::anomaly::{AnomalySpec, Baseline, Observed};
use crate::blocks::Target;
use crate::event::{Event, Privileged, Source};
use crate::scenario::{Action, Distinct, Key, ScenarioSpec, Severity};

/// Subnet prefixes for [`Key::Subnet`].
pub const SUBNET_V4: u8 = 24;
/// See [`SUBNET_V4`].
pub const SUBNET_V6: u8 = 64;

/// Privilege-escalation checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrivilegeSpec {
    /// Roles whose grant, or a token acting for whose holder, is CRITICAL.
    pub roles: Vec<String>,
    /// First use of an admin API by a principal (or, without one, an
    /// address) is CRITICAL once this learning period after the first
    /// start is over (ms since the Unix epoch; the state file keeps it).
    pub learning: Duration,
}

impl Default for PrivilegeSpec {
    fn default() -> Self {
        Self { roles: vec!["admin".to_owned()], learning: Duration::from_secs(24 * 3600) }
    }
}

/// Everything the engine runs.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EngineSpec {
    /// Leaky-bucket scenarios.
    pub scenarios: Vec<ScenarioSpec>,
    /// Per-principal baselines, if enabled.
    pub anomaly: Option<AnomalySpec>,
    /// Privilege-escalation checks.
    pub privilege: PrivilegeSpec,
    /// Buckets and baselines kept at most (each); quiet ones are pruned first.
    pub max_keys: usize,
}

/// Names of the built-in detectors (scenarios are named by their spec).
pub mod names {
    /// A principal far above its own baseline.
    pub const ANOMALY: &str = "ward/anomaly";
    /// A privileged role granted.
    pub const ROLE_GRANT: &str = "ward/privileged-role-grant";
    /// An admin API used by a principal never seen doing it.
    pub const NEW_ADMIN: &str = "ward/new-admin";
    /// A token exchange acting for a privileged subject.
    pub const ACTS_FOR_ADMIN: &str = "ward/exchange-acts-for-admin";
}

/// Something a detector noticed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    /// The scenario or detector (`ward/scan`).
    pub scenario: Arc<str>,
    /// How bad.
    pub severity: Severity,
    /// Whom it is about.
    pub target: Target,
    /// Block the target for at least this long (before escalation), or only alert.
    pub block: Option<Duration>,
    /// Events (or distinct values) that overflowed the bucket, or the
    /// anomalous window's count.
    pub count: u32,
    /// A short human explanation (no personal data: it goes to the audit log as is).
    pub detail: String,
}

use crate::prehashed::Keyed;

#[derive(Debug)]
struct Compiled {
    spec: ScenarioSpec,
    name: Arc<str>,
    reasons: u128,
    leak_ms: f64,
    horizon_ms: u64,
}

impl Compiled {
    fn wants(&self, e: &Event<'_>) -> bool {
        self.spec.source.is_none_or(|s| s == e.source)
            && (self.reasons & (1u128 << e.reason.index()) != 0 || self.spec.statuses.contains(&e.status))
    }
}

#[derive(Debug, Clone, Default)]
struct Bucket {
    level: f64,
    last: u64,
    /// Distinct values seen (hash, when), at most capacity + 1.
    seen: Vec<(u64, u64)>,
    quiet_until: u64,
}

/// Engine counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct EngineStats {
    /// Events observed.
    pub events: u64,
    /// Alerts raised.
    pub alerts: u64,
    /// Live buckets.
    pub buckets: usize,
    /// Principals with a baseline.
    pub baselines: usize,
}

/// The detection engine.
#[derive(Debug)]
pub struct Engine {
    scenarios: Vec<Compiled>,
    buckets: Keyed<Bucket>,
    anomaly: Option<AnomalySpec>,
    baselines: Keyed<Baseline>,
    privileged_roles: HashSet<String>,
    /// Principals (or addresses) seen using an admin API.
    admins: HashSet<String>,
    /// When learning ends (ms since the Unix epoch).
    learning_until: u64,
    max_keys: usize,
    hasher: std::collections::hash_map::RandomState,
    events: u64,
    alerts: u64,
    out: Vec<Alert>,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Engine {
    /// An engine for `spec`, whose admin learning period began at
    /// `started` (ms) and which has already seen `admins`.
    #[must_use]
    pub fn new(spec: EngineSpec, started: u64, admins: HashSet<String>) -> Self {
        let scenarios = spec
            .scenarios
            .into_iter()
            .map(|s| {
                let reasons = s.reasons.iter().fold(0u128, |m, r| m | (1u128 << r.index()));
                let leak = ms(s.leak).max(1);
                #[allow(clippy::cast_precision_loss)] // durations in ms are far below 2^52
                let leak_ms = leak as f64;
                Compiled {
                    name: Arc::from(s.name.as_str()),
                    reasons,
                    leak_ms,
                    horizon_ms: leak.saturating_mul(u64::from(s.capacity) + 1),
                    spec: s,
                }
            })
            .collect();
        Self {
            scenarios,
            buckets: Keyed::default(),
            anomaly: spec.anomaly,
            baselines: Keyed::default(),
            privileged_roles: spec.privilege.roles.iter().cloned().collect(),
            learning_until: started.saturating_add(ms(spec.privilege.learning)),
            admins,
            max_keys: spec.max_keys.max(1024),
            hasher: std::collections::hash_map::RandomState::new(),
            events: 0,
            alerts: 0,
            out: Vec::new(),
        }
    }

    /// Principals and addresses seen using admin APIs (persisted by the caller).
    #[must_use]
    pub fn admins(&self) -> &HashSet<String> {
        &self.admins
    }

    /// Counters.
    #[must_use]
    pub fn stats(&self) -> EngineStats {
        EngineStats {
            events: self.events,
            alerts: self.alerts,
            buckets: self.buckets.len(),
            baselines: self.baselines.len(),
        }
    }

    fn hash_ip(&self, tag: u64, ip: IpAddr) -> u64 {
        self.hasher.hash_one((tag, canonical_ip(ip)))
    }

    fn hash_str(&self, tag: u64, s: &str) -> u64 {
        self.hasher.hash_one((tag, s))
    }

    /// A principal's key: the same name under two issuers is two principals.
    fn hash_principal(&self, tag: u64, issuer: Option<&str>, p: &str) -> u64 {
        self.hasher.hash_one((tag, issuer, p))
    }

    /// Observe one event at `now` (ms since the Unix epoch); the alerts it raised.
    pub fn observe(&mut self, e: &Event<'_>, now: u64) -> &[Alert] {
        self.out.clear();
        self.events += 1;
        for i in 0..self.scenarios.len() {
            self.scenario(i, e, now);
        }
        if e.source == Source::Gateway
            && let Some(spec) = self.anomaly
            && e.principal.is_some()
        {
            self.baseline(&spec, e, now);
        }
        if let Some(what) = e.privileged {
            self.privileged(what, e, now);
        }
        self.alerts += self.out.len() as u64;
        &self.out
    }

    fn scenario(&mut self, i: usize, e: &Event<'_>, now: u64) {
        let sc = &self.scenarios[i];
        if !sc.wants(e) {
            return;
        }
        let tag = i as u64;
        let key = match sc.spec.key {
            Key::Ip => self.hash_ip(tag, source(e.ip).network()),
            Key::Subnet => self.hash_ip(tag, subnet(e.ip).network()),
            Key::Principal => match e.principal {
                Some(p) => self.hash_principal(tag, e.issuer, p),
                None => return,
            },
        };
        let distinct = match sc.spec.distinct {
            None => None,
            // Names nobody holds count for one address only: a subnet's
            // bucket would let a few addresses block their neighbours.
            Some(Distinct::Principal) => match e.principal.or(e.claimed.filter(|_| sc.spec.key == Key::Ip)) {
                Some(p) => Some(self.hash_principal(u64::MAX, e.issuer, p)),
                None => return,
            },
            Some(Distinct::Path) => Some(self.hash_str(u64::MAX, e.path)),
            Some(Distinct::Ip) => Some(self.hash_ip(u64::MAX, e.ip)),
        };
        if self.buckets.len() >= self.max_keys && !self.buckets.contains_key(&key) {
            self.prune_buckets(now);
        }
        let sc = &self.scenarios[i];
        let b = self.buckets.entry(key).or_insert_with(|| Bucket { last: now, ..Bucket::default() });
        if now < b.quiet_until {
            return;
        }
        #[allow(clippy::cast_precision_loss)]
        let leaked = now.saturating_sub(b.last) as f64 / sc.leak_ms;
        b.level = (b.level - leaked).max(0.0);
        b.last = now;
        if let Some(d) = distinct {
            let horizon = sc.horizon_ms;
            b.seen.retain(|(_, at)| now.saturating_sub(*at) < horizon);
            if let Some(entry) = b.seen.iter_mut().find(|(h, _)| *h == d) {
                entry.1 = now;
                return;
            }
            if b.seen.len() > sc.spec.capacity as usize {
                b.seen.remove(0);
            }
            b.seen.push((d, now));
        }
        b.level += 1.0;
        if b.level <= f64::from(sc.spec.capacity) {
            return;
        }
        // Overflow: the bucket empties and stays quiet for one leak period.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let count = b.level.ceil() as u32;
        *b = Bucket { last: now, quiet_until: now.saturating_add(ms(sc.spec.leak)), ..Bucket::default() };
        let target = match sc.spec.key {
            Key::Ip => Target::Address(source(e.ip)),
            Key::Subnet => Target::Address(subnet(e.ip)),
            Key::Principal => Target::Principal(e.principal_target().unwrap_or_default()),
        };
        let what = match sc.spec.distinct {
            Some(Distinct::Principal) => "distinct principals",
            Some(Distinct::Path) => "distinct paths",
            Some(Distinct::Ip) => "distinct addresses",
            None => "events",
        };
        let detail = format!(
            "{count} {what} within the bucket (capacity {}, one leaks per {} s); last reason {}",
            sc.spec.capacity,
            sc.spec.leak.as_secs(),
            e.reason
        );
        self.out.push(Alert {
            scenario: Arc::clone(&sc.name),
            severity: sc.spec.severity,
            target,
            block: (sc.spec.action == Action::Block).then_some(sc.spec.duration),
            count,
            detail,
        });
    }

    fn prune_buckets(&mut self, now: u64) {
        let scenarios = &self.scenarios;
        let longest = scenarios.iter().map(|s| s.horizon_ms).max().unwrap_or(0);
        self.buckets.retain(|_, b| now < b.quiet_until || now.saturating_sub(b.last) < longest);
        if self.buckets.len() >= self.max_keys {
            // Still full of live buckets: drop the quietest half.
            let mut lasts: Vec<u64> = self.buckets.values().map(|b| b.last).collect();
            let mid = lasts.len() / 2;
            let (_, cut, _) = lasts.select_nth_unstable(mid);
            let cut = *cut;
            self.buckets.retain(|_, b| b.last > cut);
        }
    }

    fn baseline(&mut self, spec: &AnomalySpec, e: &Event<'_>, now: u64) {
        let principal = e.principal.unwrap_or_default();
        let key = self.hash_principal(u64::MAX - 1, e.issuer, principal);
        if self.baselines.len() >= self.max_keys && !self.baselines.contains_key(&key) {
            let idle = ms(spec.window).saturating_mul(u64::from(spec.warmup).max(60));
            self.baselines.retain(|_, b| now.saturating_sub(b.last_seen) < idle);
            if self.baselines.len() >= self.max_keys {
                return;
            }
        }
        let b = self.baselines.entry(key).or_default();
        if let Observed::Anomalous { count, threshold } = spec.observe(b, now) {
            self.out.push(Alert {
                scenario: Arc::from(names::ANOMALY),
                severity: Severity::Medium,
                target: Target::Principal(e.principal_target().unwrap_or_default()),
                block: None,
                count,
                detail: format!(
                    "{count} requests in one {} s window; this principal's baseline allows {threshold:.0}",
                    spec.window.as_secs()
                ),
            });
        }
    }

    fn privileged(&mut self, what: Privileged<'_>, e: &Event<'_>, now: u64) {
        let target = || match e.principal_target() {
            Some(p) => Target::Principal(p),
            None => Target::Address(Cidr::around(e.ip, 128)),
        };
        let privileged = |roles: &[String]| -> Vec<String> {
            roles.iter().filter(|r| self.privileged_roles.contains(r.as_str())).cloned().collect()
        };
        let alert = match what {
            Privileged::RoleGrant(roles) => {
                let granted = privileged(roles);
                (!granted.is_empty()).then(|| (names::ROLE_GRANT, format!("roles granted: {}", granted.join(", "))))
            }
            Privileged::ActsFor(roles) => {
                let held = privileged(roles);
                (!held.is_empty()).then(|| {
                    (names::ACTS_FOR_ADMIN, format!("token exchange acting for a subject holding {}", held.join(", ")))
                })
            }
            Privileged::AdminUse => {
                let who = target().to_string();
                let new = !self.admins.contains(&who);
                if new && self.admins.len() < 100_000 {
                    self.admins.insert(who);
                }
                (new && now >= self.learning_until)
                    .then(|| (names::NEW_ADMIN, format!("first admin call seen from this {}", target().kind())))
            }
        };
        if let Some((name, detail)) = alert {
            self.out.push(Alert {
                scenario: Arc::from(name),
                severity: Severity::Critical,
                target: target(),
                block: None,
                count: 1,
                detail,
            });
        }
    }
}

/// The source [`Key::Ip`] groups `ip` into: the address itself for IPv4,
/// its /64 for IPv6 (one host commonly holds a whole /64, so rotating
/// addresses inside it must not reset the count — or escape the block).
#[must_use]
pub fn source(ip: IpAddr) -> Cidr {
    let ip = canonical_ip(ip);
    Cidr::around(ip, if ip.is_ipv4() { 32 } else { SUBNET_V6 })
}

/// The subnet [`Key::Subnet`] groups `ip` into.
#[must_use]
pub fn subnet(ip: IpAddr) -> Cidr {
    let ip = canonical_ip(ip);
    Cidr::around(ip, if ip.is_ipv4() { SUBNET_V4 } else { SUBNET_V6 })
}

#[cfg(test)]
mod tests {
    use ward_core::ReasonCode;

    use super::*;
    use crate::scenario::defaults;

    const T0: u64 = 1_800_000_000_000;

    fn engine() -> Engine {
        let spec = EngineSpec {
            scenarios: defaults(),
            anomaly: Some(AnomalySpec::default()),
            privilege: PrivilegeSpec { roles: vec!["admin".into()], learning: Duration::ZERO },
            max_keys: 10_000,
        };
        Engine::new(spec, T0, HashSet::new())
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn login_failed<'a>(from: &str, user: &'a str) -> Event<'a> {
        Event::new(Source::TokenService, ReasonCode::LoginFailed, 200, ip(from), "/oauth2/authorize")
            .principal(Some(user))
    }

    #[test]
    fn spraying_blocks_the_address_after_capacity_distinct_users() {
        let mut e = engine();
        let users = ["u1", "u2", "u3", "u4", "u5", "u6"];
        // The same user again does not count twice.
        assert!(e.observe(&login_failed("198.51.100.7", users[0]), T0).is_empty());
        for (i, u) in users.iter().enumerate().take(5) {
            assert!(e.observe(&login_failed("198.51.100.7", u), T0 + i as u64).is_empty());
        }
        let alerts = e.observe(&login_failed("198.51.100.7", users[5]), T0 + 10).to_vec();
        assert_eq!(alerts.len(), 1, "{alerts:?}");
        assert_eq!(&*alerts[0].scenario, "ward/password-spraying");
        assert_eq!(alerts[0].target, Target::parse("198.51.100.7").unwrap());
        assert_eq!(alerts[0].severity, Severity::High);
        assert!(alerts[0].block.is_some());
    }

    #[test]
    fn rotating_addresses_inside_an_ipv6_64_is_one_source() {
        let mut e = engine();
        let mut alerts = Vec::new();
        for i in 0..11u64 {
            let event = Event::new(
                Source::TokenService,
                ReasonCode::LoginFailed,
                401,
                ip(&format!("2001:db8:1:2::{i:x}")),
                "/oauth2/authorize",
            )
            .claimed(Some("alice"));
            alerts.extend(e.observe(&event, T0 + i).iter().cloned());
        }
        let brute: Vec<_> = alerts.iter().filter(|a| &*a.scenario == "ward/brute-force-ip").collect();
        assert_eq!(brute.len(), 1, "{alerts:?}");
        assert_eq!(brute[0].target, Target::parse("2001:db8:1:2::/64").unwrap(), "the /64 is blocked");
    }

    #[test]
    fn names_nobody_holds_count_for_spraying_but_never_as_principals() {
        let mut e = engine();
        let mut fired = Vec::new();
        // 30 failures, from 30 addresses, on a name no account holds.
        for i in 0..30u64 {
            let event = Event::new(
                Source::TokenService,
                ReasonCode::ClientAuthenticationFailed,
                401,
                ip(&format!("203.0.{i}.9")),
                "/oauth2/token",
            )
            .claimed(Some("alice"));
            fired.extend(e.observe(&event, T0 + i).iter().cloned());
        }
        assert!(fired.is_empty(), "nothing about `alice`: {fired:?}");
        // One address trying six names nobody holds is still spraying.
        let mut alerts = Vec::new();
        for (i, name) in ["a1", "a2", "a3", "a4", "a5", "a6"].iter().enumerate() {
            let event =
                Event::new(Source::TokenService, ReasonCode::LoginFailed, 401, ip("198.51.100.9"), "/oauth2/authorize")
                    .claimed(Some(name));
            alerts.extend(e.observe(&event, T0 + 100 + i as u64).iter().cloned());
        }
        assert_eq!(alerts.len(), 1, "{alerts:?}");
        assert_eq!(alerts[0].target, Target::parse("198.51.100.9").unwrap());
        // Six addresses of one /24, four made-up names each (under the
        // per-address limit): the /24 is not blocked for their neighbours.
        let mut alerts = Vec::new();
        for a in 1..=6u64 {
            for k in 0..4 {
                let name = format!("ghost{a}_{k}");
                let event = Event::new(
                    Source::TokenService,
                    ReasonCode::LoginFailed,
                    401,
                    ip(&format!("203.0.113.{a}")),
                    "/oauth2/authorize",
                )
                .claimed(Some(&name));
                alerts.extend(e.observe(&event, T0 + 200 + a * 10 + k).iter().cloned());
            }
        }
        assert!(alerts.is_empty(), "{alerts:?}");
    }

    #[test]
    fn slow_brute_force_from_many_addresses_alerts_on_the_principal_in_its_namespace() {
        let mut e = engine();
        let mut fired = Vec::new();
        for i in 0..11u64 {
            let from = format!("203.0.{i}.9");
            let event = login_failed(&from, "alice").issuer(Some("https://ward.example"));
            fired.extend(e.observe(&event, T0 + i * 5_000).iter().cloned());
        }
        assert_eq!(fired.len(), 1, "{fired:?}");
        assert_eq!(&*fired[0].scenario, "ward/brute-force-principal");
        assert_eq!(fired[0].target, Target::Principal("https://ward.example#alice".into()));
        assert_eq!(fired[0].block, None, "an alert: blocking would lock the owner out");
        // The same name under another issuer is another principal.
        let mut e = engine();
        let mut fired = Vec::new();
        for i in 0..11u64 {
            let iss = if i % 2 == 0 { "https://a.example" } else { "https://b.example" };
            let event = login_failed(&format!("203.0.{i}.9"), "alice").issuer(Some(iss));
            fired.extend(e.observe(&event, T0 + i * 5_000).iter().cloned());
        }
        assert!(fired.is_empty(), "{fired:?}");
    }

    #[test]
    fn leaking_keeps_a_slow_trickle_under_capacity() {
        let mut e = engine();
        for i in 0..100u64 {
            // One failure every three minutes: leaks faster than it fills.
            assert!(e.observe(&login_failed("192.0.2.1", "bob"), T0 + i * 180_000).is_empty(), "{i}");
        }
    }

    #[test]
    fn scanning_distinct_paths_blocks() {
        let mut e = engine();
        let mut fired = Vec::new();
        for i in 0..200 {
            let path = format!("/probe/{i}");
            let ev = Event::new(Source::Gateway, ReasonCode::NoRoute, 403, ip("192.0.2.50"), &path);
            fired.extend(e.observe(&ev, T0 + i).iter().cloned());
        }
        assert_eq!(fired.len(), 1, "quiet after the overflow: {fired:?}");
        assert_eq!(&*fired[0].scenario, "ward/scan");
        // Upstream 404s count too (matched by status).
        let mut e = engine();
        let n = (0..31)
            .filter(|i| {
                let path = format!("/x/{i}");
                let ev = Event::new(Source::Gateway, ReasonCode::AllowedByPolicy, 404, ip("192.0.2.51"), &path);
                !e.observe(&ev, T0).is_empty()
            })
            .count();
        assert_eq!(n, 1);
    }

    #[test]
    fn a_revoked_token_replay_alerts_at_once() {
        let mut e = engine();
        let ev = Event::new(Source::Gateway, ReasonCode::TokenRevoked, 401, ip("192.0.2.9"), "/api");
        let alerts = e.observe(&ev, T0).to_vec();
        assert_eq!(alerts.len(), 1);
        assert_eq!(&*alerts[0].scenario, "ward/token-replay");
        assert_eq!(alerts[0].block, None);
    }

    #[test]
    fn privilege_escalation_signals_are_critical() {
        let mut e = engine();
        let admin = vec!["admin".to_owned()];
        let grant = Event::new(Source::TokenService, ReasonCode::AdminRequest, 201, ip("127.0.0.1"), "/admin/users")
            .principal(Some("eve"))
            .privileged(Privileged::RoleGrant(&admin));
        let a = e.observe(&grant, T0).to_vec();
        assert_eq!((a.len(), &*a[0].scenario, a[0].severity), (1, names::ROLE_GRANT, Severity::Critical));
        let reader = vec!["reader".to_owned()];
        let plain = grant.privileged(Privileged::RoleGrant(&reader));
        assert!(e.observe(&plain, T0).is_empty());
        let use1 = Event::new(Source::Gateway, ReasonCode::AllowedByPolicy, 200, ip("10.0.0.1"), "/admin")
            .principal(Some("ops"))
            .privileged(Privileged::AdminUse);
        assert_eq!(e.observe(&use1, T0).len(), 1, "first admin use by ops");
        assert!(e.observe(&use1, T0 + 1).is_empty(), "seen before");
        let acts = Event::new(Source::TokenService, ReasonCode::TokenIssued, 200, ip("10.0.0.2"), "/oauth2/token")
            .principal(Some("svc"))
            .privileged(Privileged::ActsFor(&admin));
        assert_eq!(&*e.observe(&acts, T0)[0].scenario, names::ACTS_FOR_ADMIN);
    }

    #[test]
    fn admin_use_is_learned_silently_during_learning() {
        let spec = EngineSpec { scenarios: vec![], privilege: PrivilegeSpec::default(), ..EngineSpec::default() };
        let mut e = Engine::new(spec, T0, HashSet::new());
        let ev = Event::new(Source::Gateway, ReasonCode::AllowedByPolicy, 200, ip("10.0.0.1"), "/admin")
            .principal(Some("ops"))
            .privileged(Privileged::AdminUse);
        assert!(e.observe(&ev, T0 + 1).is_empty());
        assert!(e.admins().contains("principal:ops"));
    }

    #[test]
    fn buckets_stay_bounded_under_a_flood_of_keys() {
        let mut e = engine();
        for i in 0..50_000u32 {
            let addr = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            let ev = Event::new(Source::Gateway, ReasonCode::TokenBadSignature, 401, addr, "/");
            e.observe(&ev, T0 + u64::from(i));
        }
        assert!(e.stats().buckets <= 10_000, "{}", e.stats().buckets);
    }
}
