//! The detection hot paths: the engine over a realistic event mix (target
//! ≥ 1,000,000 events/s per core), the same through the shared detector
//! (its mutex included), and the checks every request pays — address
//! block, principal block, rate limit (target < 100 ns each).
//!
//! `cargo bench -p ward-detect --bench detect`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::HashSet;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use ward_core::ReasonCode;
use ward_detect::anomaly::AnomalySpec;
use ward_detect::engine::{Engine, EngineSpec, PrivilegeSpec};
use ward_detect::gcra::{Gcra, Limiter, Quota};
use ward_detect::scenario::defaults;
use ward_detect::{BlockSet, DetectSettings, Detector, Escalation, Event, Source, Target};

const T0: u64 = 1_800_000_000_000;

fn spec() -> EngineSpec {
    EngineSpec {
        scenarios: defaults(),
        anomaly: Some(AnomalySpec::default()),
        privilege: PrivilegeSpec::default(),
        max_keys: 1_000_000,
    }
}

/// 4,096 events: 85 % allowed requests by 1,000 principals from 200
/// addresses, 6 % bad tokens, 4 % 404s, 3 % failed logins, 2 % 403s.
fn mix() -> Vec<(IpAddr, String, String, ReasonCode, u16, Source)> {
    (0..4096u32)
        .map(|i| {
            let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + (i * 7919) % 200));
            let principal = format!("user-{}", (i * 104_729) % 1000);
            let path = format!("/api/items/{}", i % 300);
            let (reason, status, source) = match i % 100 {
                0..85 => (ReasonCode::AllowedByPolicy, 200, Source::Gateway),
                85..91 => (ReasonCode::TokenExpired, 401, Source::Gateway),
                91..95 => (ReasonCode::AllowedByPolicy, 404, Source::Gateway),
                95..98 => (ReasonCode::LoginFailed, 401, Source::TokenService),
                _ => (ReasonCode::DeniedByPolicy, 403, Source::Gateway),
            };
            (ip, principal, path, reason, status, source)
        })
        .collect()
}

fn engine(c: &mut Criterion) {
    let events = mix();
    let mut g = c.benchmark_group("engine");
    g.throughput(Throughput::Elements(events.len() as u64));
    g.bench_function("observe_mix_4096", |b| {
        b.iter_batched_ref(
            || (Engine::new(spec(), T0, HashSet::new()), 0u64),
            |(engine, tick)| {
                for (ip, p, path, reason, status, source) in &events {
                    *tick += 1;
                    let e = Event::new(*source, *reason, *status, *ip, path).principal(Some(p));
                    black_box(engine.observe(&e, T0 + *tick).len());
                }
            },
            BatchSize::LargeInput,
        );
    });
    // Steady state: the same engine keeps observing (buckets and baselines warm).
    let mut warm = Engine::new(spec(), T0, HashSet::new());
    let mut tick = 0u64;
    g.bench_function("observe_mix_4096_warm", |b| {
        b.iter(|| {
            for (ip, p, path, reason, status, source) in &events {
                tick += 1;
                let e = Event::new(*source, *reason, *status, *ip, path).principal(Some(p));
                black_box(warm.observe(&e, T0 + tick).len());
            }
        });
    });
    g.finish();
}

fn detector(c: &mut Criterion) {
    let events = mix();
    let settings =
        DetectSettings { engine: spec(), allowlist: Vec::new(), escalation: Escalation::default(), state_file: None };
    let d = Detector::open(settings, None).unwrap();
    let mut g = c.benchmark_group("detector");
    g.throughput(Throughput::Elements(events.len() as u64));
    g.bench_function("observe_mix_4096", |b| {
        b.iter(|| {
            for (ip, p, path, reason, status, source) in &events {
                d.observe(&Event::new(*source, *reason, *status, *ip, path).principal(Some(p)));
            }
        });
    });
    g.finish();

    // The request path's checks, with nothing blocked and with 100,000 blocks.
    let mut g = c.benchmark_group("checks");
    let empty = {
        let s = DetectSettings {
            engine: EngineSpec::default(),
            allowlist: Vec::new(),
            escalation: Escalation::default(),
            state_file: None,
        };
        Detector::open(s, None).unwrap()
    };
    let busy = {
        let s = DetectSettings {
            engine: EngineSpec::default(),
            allowlist: vec![Target::parse("10.255.0.0/16").unwrap()],
            escalation: Escalation::default(),
            state_file: None,
        };
        Detector::open(s, None).unwrap()
    };
    for i in 0..100_000u32 {
        let ip = IpAddr::V4(Ipv4Addr::from(0xc000_0000 + i));
        busy.block(Target::Address(ward_core::Cidr::around(ip, 32)), Duration::from_secs(3600), "bench").unwrap();
        if i % 10 == 0 {
            busy.block(Target::Principal(format!("p-{i}")), Duration::from_secs(3600), "bench").unwrap();
        }
    }
    busy.block(Target::parse("198.51.100.0/24").unwrap(), Duration::from_secs(3600), "bench").unwrap();
    let miss: IpAddr = "203.0.113.7".parse().unwrap();
    let hit: IpAddr = IpAddr::V4(Ipv4Addr::from(0xc000_0000 + 4242));
    g.bench_function("ip_blocked_none_blocked", |b| b.iter(|| black_box(empty.ip_blocked(black_box(miss)))));
    g.bench_function("ip_blocked_100k_miss", |b| b.iter(|| black_box(busy.ip_blocked(black_box(miss)))));
    g.bench_function("ip_blocked_100k_hit", |b| b.iter(|| black_box(busy.ip_blocked(black_box(hit)))));
    g.bench_function("principal_blocked_10k_miss", |b| {
        b.iter(|| black_box(busy.principal_blocked(black_box("alice"))))
    });
    g.bench_function("principal_blocked_10k_hit", |b| {
        b.iter(|| black_box(busy.principal_blocked(black_box("p-4240"))))
    });
    // The snapshot alone (no clock read).
    let set = BlockSet::new([(&Target::parse("192.0.2.0/24").unwrap(), u64::MAX)]);
    g.bench_function("blockset_ip_lookup", |b| b.iter(|| black_box(set.ip(black_box(miss), T0))));

    let gcra = Gcra::new(Quota { rate: 100, period: Duration::from_secs(1), burst: 50 }).unwrap();
    let limiter = Limiter::new(gcra, 1 << 20);
    let epoch = Instant::now();
    let one: IpAddr = "192.0.2.1".parse().unwrap();
    g.bench_function("rate_limit_one_key", |b| {
        b.iter(|| {
            let now = u64::try_from(epoch.elapsed().as_nanos()).unwrap();
            black_box(limiter.check(black_box(&one), now))
        });
    });
    // 100,000 live keys visited in a scattered order; each address is
    // computed, not read from an array, so only the limiter's own memory
    // traffic is measured (a request has its client's address at hand).
    for i in 0..100_000u32 {
        limiter.check(&IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)), 0);
    }
    let mut k = 0u32;
    g.bench_function("rate_limit_100k_keys", |b| {
        b.iter(|| {
            k = (k + 7919) % 100_000;
            let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + k));
            let now = u64::try_from(epoch.elapsed().as_nanos()).unwrap();
            black_box(limiter.check(&ip, now))
        });
    });
    g.finish();
}

criterion_group!(benches, engine, detector);
criterion_main!(benches);
