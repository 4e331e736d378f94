//! The authorization decision: path normalisation, and the policy engine's
//! decision with 10, 1,000 and 10,000 rules (indexed, and the reference scan
//! for comparison). With `--features cedar-anchor`, the same decisions written
//! as Cedar policies are evaluated by the `cedar-policy` crate as the anchor.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::fmt::Write as _;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use serde_json::json;
use ward_policy::{EngineConfig, PolicySet, Request, Target, load_texts, normalize_path};

/// `n` rules in `n / 10` ALLOW policies (ten rules each, one service path per
/// rule, a role claim), plus one DENY policy with ten rules.
fn policies(n: usize) -> String {
    let mut out = String::new();
    for p in 0..n.div_ceil(10) {
        let _ = write!(
            out,
            "---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: p{p}}}\nspec:\n  rules:\n"
        );
        for r in 0..10.min(n - p * 10) {
            let i = p * 10 + r;
            let _ = write!(
                out,
                "  - to: [{{operation: {{methods: [GET, HEAD], paths: [\"/svc{i}/*\", \"/svc{i}/{{*}}/items\"]}}}}]\n    when: [{{key: \"request.auth.claims[roles]\", values: [\"role{}\"]}}]\n",
                i % 7
            );
        }
    }
    out.push_str("---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: deny}\nspec:\n  action: DENY\n  rules:\n");
    for i in 0..10 {
        let _ = writeln!(out, "  - to: [{{operation: {{paths: [\"/svc{i}/admin/*\"]}}}}]");
    }
    out
}

fn bench(c: &mut Criterion) {
    c.bench_function("authz/normalize_path", |b| b.iter(|| normalize_path("/api//v1/./orders/../items/%7e42")));
    let claims = json!({"sub": "alice", "roles": ["role3", "role5"]}).as_object().unwrap().clone();
    let config = EngineConfig::default();
    let targets = [Target { name: "r".into(), labels: Default::default() }];
    let mut group = c.benchmark_group("authz/decision");
    for n in [10usize, 1_000, 10_000] {
        let loaded = load_texts(&[("p.yaml".into(), policies(n))], &config).unwrap();
        let set = PolicySet::compile(loaded, &targets, &config).unwrap();
        // The middle rule's path, with a claim it accepts: allowed.
        let path = format!("/svc{}/x", (n / 2 / 7) * 7 + 3);
        let mut allow = Request::new("GET", &path);
        allow.claims = Some(&claims);
        allow.request_principal = Some("https://idp/alice");
        assert!(set.evaluate(0, allow).effect == ward_core::Effect::Allow, "{path}");
        let mut miss = Request::new("POST", "/nowhere/x");
        miss.claims = Some(&claims);
        group.bench_with_input(BenchmarkId::new("allow", n), &n, |b, _| b.iter(|| set.evaluate(0, allow)));
        group.bench_with_input(BenchmarkId::new("deny", n), &n, |b, _| b.iter(|| set.evaluate(0, miss)));
        if n <= 1_000 {
            group.bench_with_input(BenchmarkId::new("reference_scan_allow", n), &n, |b, _| {
                b.iter(|| set.evaluate_reference(0, allow))
            });
        }
    }
    group.finish();
    #[cfg(feature = "cedar-anchor")]
    cedar::bench(c);
}

/// The same policies in Cedar: one `permit` per Ward rule (paths as `like`
/// patterns, the role as a context set), one `forbid` per DENY rule.
#[cfg(feature = "cedar-anchor")]
mod cedar {
    use std::str::FromStr;

    use cedar_policy::{Authorizer, Context, Decision, Entities, EntityUid, PolicySet, Request};
    use criterion::{BenchmarkId, Criterion};
    use serde_json::json;

    fn policies(n: usize) -> PolicySet {
        let mut src = String::new();
        for i in 0..n {
            src.push_str(&format!(
                "permit(principal, action in [Action::\"GET\", Action::\"HEAD\"], resource) when {{ (context.path like \"/svc{i}/*\" || context.path like \"/svc{i}/*/items\") && context.roles.contains(\"role{}\") }};\n",
                i % 7
            ));
        }
        for i in 0..10 {
            src.push_str(&format!(
                "forbid(principal, action, resource) when {{ context.path like \"/svc{i}/admin/*\" }};\n"
            ));
        }
        src.parse().unwrap()
    }

    fn request(method: &str, path: &str) -> Request {
        let context = Context::from_json_value(json!({"path": path, "roles": ["role3", "role5"]}), None).unwrap();
        Request::new(
            EntityUid::from_str(r#"User::"alice""#).unwrap(),
            EntityUid::from_str(&format!("Action::\"{method}\"")).unwrap(),
            EntityUid::from_str(r#"Api::"gateway""#).unwrap(),
            context,
            None,
        )
        .unwrap()
    }

    pub fn bench(c: &mut Criterion) {
        let mut group = c.benchmark_group("authz/cedar");
        let authorizer = Authorizer::new();
        let entities = Entities::empty();
        for n in [10usize, 1_000, 10_000] {
            let set = policies(n);
            let allow = request("GET", &format!("/svc{}/x", (n / 2 / 7) * 7 + 3));
            assert_eq!(authorizer.is_authorized(&allow, &set, &entities).decision(), Decision::Allow);
            let miss = request("POST", "/nowhere/x");
            assert_eq!(authorizer.is_authorized(&miss, &set, &entities).decision(), Decision::Deny);
            group.bench_with_input(BenchmarkId::new("allow", n), &n, |b, _| {
                b.iter(|| authorizer.is_authorized(&allow, &set, &entities))
            });
            group.bench_with_input(BenchmarkId::new("deny", n), &n, |b, _| {
                b.iter(|| authorizer.is_authorized(&miss, &set, &entities))
            });
        }
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
