//! The authorization decision: path normalisation, route lookup, rule evaluation.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;
use ward_core::{Identity, Principal};
use ward_policy::{AllowRule, ClaimRequirement, Route, RouteTable, authorize, normalize_path};

fn table() -> RouteTable {
    let mut routes = Vec::new();
    for i in 0..20 {
        routes.push(Route {
            name: format!("svc{i}"),
            prefix: format!("/svc{i}/"),
            upstream: "u".into(),
            public: false,
            providers: vec![],
            rules: vec![AllowRule { methods: Some(vec!["GET".into()]), ..AllowRule::default() }],
        });
    }
    routes.push(Route {
        name: "api".into(),
        prefix: "/api/".into(),
        upstream: "u".into(),
        public: false,
        providers: vec![],
        rules: vec![
            AllowRule {
                methods: Some(vec!["POST".into(), "DELETE".into()]),
                paths: vec!["/api/admin/*".parse().unwrap()],
                claims: vec![ClaimRequirement { claim: "roles".into(), any_of: vec!["admin".into()] }],
            },
            AllowRule {
                methods: Some(vec!["GET".into(), "HEAD".into()]),
                paths: vec!["/api/{*}/items".parse().unwrap(), "/api/*".parse().unwrap()],
                claims: vec![ClaimRequirement {
                    claim: "roles".into(),
                    any_of: vec!["reader".into(), "writer".into()],
                }],
            },
        ],
    });
    RouteTable::new(routes)
}

fn bench(c: &mut Criterion) {
    let table = table();
    let claims = json!({"sub": "alice", "roles": ["reader"]}).as_object().unwrap().clone();
    let identity = Identity {
        principal: Principal::new("alice"),
        issuer: Arc::from("https://issuer.test"),
        provider: Arc::from("p"),
        claims: Arc::new(claims),
        expires_at: i64::MAX,
    };
    let mut group = c.benchmark_group("authz");
    group.bench_function("normalize_path", |b| {
        b.iter(|| normalize_path(std::hint::black_box("/api/v1/../orders//7/items")).unwrap())
    });
    group.bench_function("decision", |b| {
        b.iter(|| {
            let path = std::hint::black_box("/api/orders/7");
            let route = table.find(path).unwrap();
            let d = authorize(route, "GET", path, Some(&identity));
            assert!(d.is_allow());
            d
        })
    });
    group.bench_function("decision_deny", |b| {
        b.iter(|| {
            let path = std::hint::black_box("/api/admin/x");
            let route = table.find(path).unwrap();
            authorize(route, "POST", path, Some(&identity))
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
