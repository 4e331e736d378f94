//! False positives: a day of benign traffic, replayed through Ward's default
//! detectors on simulated time, raises no block and no alert above LOW —
//! and the same day with an attack spliced in is caught, so the silence
//! is the detectors' judgement, not their absence.
//!
//! The traffic is a recording model, fixed by its seed so every run replays
//! the same events:
//! - five people behind one office NAT address, each at up to 20 requests
//!   a minute, with a day-shaped swing (a quarter of the peak at night),
//!   three-minute bursts at three times their rate now and then, a mistyped
//!   password about twice a day (sometimes twice in a row), a stale bookmark
//!   (one of ten paths, 404) a few times an hour;
//! - two services at 200 requests a minute (±20 %) following the same swing,
//!   each presenting an expired token every quarter of an hour (refresh races);
//! - a batch job that wakes every two hours and sends 1,500 requests a
//!   minute for ten minutes, and is silent otherwise;
//! - an operator using the admin routes a few times an hour.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashSet;
use std::net::IpAddr;

use ward_core::ReasonCode;
use ward_detect::anomaly::AnomalySpec;
use ward_detect::engine::{Engine, EngineSpec, PrivilegeSpec};
use ward_detect::scenario::{Severity, defaults};
use ward_detect::{Alert, Event, Privileged, Source};

const MIN: u64 = 60_000;
const T0: u64 = 1_800_000_000_000;

/// xorshift64*: the recording's deterministic randomness.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        #[allow(clippy::cast_precision_loss)]
        let x = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        x
    }
}

struct Step {
    at: u64,
    reason: ReasonCode,
    status: u16,
    ip: IpAddr,
    principal: &'static str,
    path: String,
    admin: bool,
}

const USERS: [&str; 5] = ["ana", "ben", "chen", "dara", "eli"];
const NAT: &str = "198.51.100.10";

/// The day-shaped swing: a quarter of the peak at midnight, the peak at noon.
fn swing(minute: u64) -> f64 {
    #[allow(clippy::cast_precision_loss)]
    let phase = std::f64::consts::PI * (minute % 1440) as f64 / 1440.0;
    0.25 + 0.75 * phase.sin().powi(2)
}

#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
fn count(rate: f64) -> u64 {
    rate.round().max(0.0) as u64
}

/// `n` events spread evenly over the minute from `start`.
fn spread(out: &mut Vec<Step>, start: u64, n: u64, mut f: impl FnMut(u64) -> Step) {
    for i in 0..n {
        out.push(f(start + i * (MIN / n.max(1))));
    }
}

/// The events of minute `m` of the recording, in time order.
fn minute(rng: &mut Rng, m: u64, bursts: &mut [u64; 5]) -> Vec<Step> {
    let start = T0 + m * MIN;
    let nat: IpAddr = NAT.parse().unwrap();
    let mut out = Vec::new();
    for (u, user) in USERS.iter().enumerate() {
        if bursts[u] == 0 && rng.unit() < 1.0 / 120.0 {
            bursts[u] = 3;
        }
        let burst = if bursts[u] > 0 { 3.0 } else { 1.0 };
        bursts[u] = bursts[u].saturating_sub(1);
        let n = count(20.0 * swing(m) * burst * (0.8 + 0.4 * rng.unit()));
        spread(&mut out, start, n, |at| Step {
            at,
            reason: ReasonCode::AllowedByPolicy,
            status: 200,
            ip: nat,
            principal: user,
            path: "/api/orders".into(),
            admin: false,
        });
        if rng.unit() < 2.0 / 1440.0 {
            let twice = rng.unit() < 0.3;
            for k in 0..(1 + u64::from(twice)) {
                out.push(Step {
                    at: start + 1_000 + k * 8_000,
                    reason: ReasonCode::LoginFailed,
                    status: 401,
                    ip: nat,
                    principal: user,
                    path: "/oauth2/authorize".into(),
                    admin: false,
                });
            }
        }
        if rng.unit() < 3.0 / 60.0 {
            let path = format!("/old/page-{}", rng.next() % 10);
            out.push(Step {
                at: start + 2_000,
                reason: ReasonCode::AllowedByPolicy,
                status: 404,
                ip: nat,
                principal: user,
                path,
                admin: false,
            });
        }
    }
    for (s, (svc, ip)) in [("svc-orders", "10.0.1.5"), ("svc-billing", "10.0.1.6")].into_iter().enumerate() {
        let ip: IpAddr = ip.parse().unwrap();
        let n = count(200.0 * swing(m) * (0.8 + 0.4 * rng.unit()));
        spread(&mut out, start, n, |at| Step {
            at,
            reason: ReasonCode::AllowedByPolicy,
            status: 200,
            ip,
            principal: svc,
            path: "/api/internal".into(),
            admin: false,
        });
        if (m + s as u64 * 7).is_multiple_of(15) {
            out.push(Step {
                at: start + 500,
                reason: ReasonCode::TokenExpired,
                status: 401,
                ip,
                principal: svc,
                path: "/api/internal".into(),
                admin: false,
            });
        }
    }
    if m % 120 < 10 {
        let ip: IpAddr = "10.0.2.9".parse().unwrap();
        spread(&mut out, start, 1_500, |at| Step {
            at,
            reason: ReasonCode::AllowedByPolicy,
            status: 200,
            ip,
            principal: "svc-batch",
            path: "/api/import".into(),
            admin: false,
        });
    }
    if rng.unit() < 4.0 / 60.0 {
        out.push(Step {
            at: start + 30_000,
            reason: ReasonCode::AllowedByPolicy,
            status: 200,
            ip: "10.0.3.3".parse().unwrap(),
            principal: "ops",
            path: "/admin/users".into(),
            admin: true,
        });
    }
    out.sort_by_key(|s| s.at);
    out
}

fn engine() -> Engine {
    let spec = EngineSpec {
        scenarios: defaults(),
        anomaly: Some(AnomalySpec::default()),
        privilege: PrivilegeSpec::default(),
        max_keys: 100_000,
    };
    Engine::new(spec, T0, HashSet::new())
}

fn feed(engine: &mut Engine, step: &Step) -> Vec<Alert> {
    let source = if step.path.starts_with("/oauth2/") { Source::TokenService } else { Source::Gateway };
    let mut e = Event::new(source, step.reason, step.status, step.ip, &step.path).principal(Some(step.principal));
    if step.admin {
        e = e.privileged(Privileged::AdminUse);
    }
    engine.observe(&e, step.at).to_vec()
}

/// Replay `hours` of the recording (with `splice` adding events to a minute).
fn replay(hours: u64, mut splice: impl FnMut(u64) -> Vec<Step>) -> (u64, Vec<Alert>) {
    let mut rng = Rng(0x005E_ED0F_B3A1_6A11);
    let mut bursts = [0u64; 5];
    let mut engine = engine();
    let (mut events, mut alerts) = (0u64, Vec::new());
    for m in 0..hours * 60 {
        let mut steps = minute(&mut rng, m, &mut bursts);
        steps.extend(splice(m));
        steps.sort_by_key(|s| s.at);
        for s in &steps {
            events += 1;
            alerts.extend(feed(&mut engine, s));
        }
    }
    (events, alerts)
}

#[test]
fn a_benign_day_raises_no_block_and_nothing_above_low() {
    let (events, alerts) = replay(24, |_| Vec::new());
    assert!(events > 500_000, "a day of traffic: {events} events");
    let loud: Vec<&Alert> = alerts.iter().filter(|a| a.severity > Severity::Low || a.block.is_some()).collect();
    assert!(loud.is_empty(), "{} alerts above LOW or blocking on benign traffic: {loud:#?}", loud.len());
}

#[test]
fn the_same_day_with_attacks_spliced_in_is_caught() {
    let (_, alerts) = replay(24, |m| {
        let start = T0 + m * MIN;
        match m {
            // 14:00: svc-orders' credential used at twenty times its rate for five minutes.
            840..845 => (0..4_000)
                .map(|i| Step {
                    at: start + i * 15,
                    reason: ReasonCode::AllowedByPolicy,
                    status: 200,
                    ip: "203.0.113.66".parse().unwrap(),
                    principal: "svc-orders",
                    path: "/api/internal".into(),
                    admin: false,
                })
                .collect(),
            // 16:00: one address tries eight of the office's user names.
            960 => ["ana", "ben", "chen", "dara", "eli", "fred", "gus", "hal"]
                .into_iter()
                .enumerate()
                .map(|(i, p)| Step {
                    at: start + i as u64 * 2_000,
                    reason: ReasonCode::LoginFailed,
                    status: 401,
                    ip: "203.0.113.77".parse().unwrap(),
                    principal: p,
                    path: "/oauth2/authorize".into(),
                    admin: false,
                })
                .collect(),
            _ => Vec::new(),
        }
    });
    let names: Vec<&str> = alerts.iter().map(|a| &*a.scenario).collect();
    assert!(names.contains(&"ward/anomaly"), "{names:?}");
    assert!(names.contains(&"ward/password-spraying"), "{names:?}");
    assert!(alerts.iter().any(|a| a.block.is_some()), "the spraying address is blocked");
}
