//! Property: the indexed evaluator and the reference evaluator (scan every
//! rule of every selected policy) agree on random policies and requests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use proptest::prelude::*;
use ward_policy::{EngineConfig, PolicySet, Request, Target, load_texts};

const PATHS: &[&str] =
    &["/a", "/a/*", "/a/b", "/A/b", "/b/*", "*.png", "*", "/a/{*}/c", "/b/{**}", "/c", "/a/b/*", "/B/*", "/x/{*}"];
const REQUEST_PATHS: &[&str] =
    &["/a", "/a/b", "/A/B", "/a/x/c", "/b/", "/b/q/r", "/c", "/img.png", "/B/z", "/x/y", "/", "/a/b/c"];
const METHODS: &[&str] = &["GET", "POST", "DELETE"];

fn list(items: &[&str]) -> String {
    format!("[{}]", items.iter().map(|s| format!("\"{s}\"")).collect::<Vec<_>>().join(", "))
}

prop_compose! {
    fn operation()(paths in proptest::sample::subsequence(PATHS, 0..3),
                   not_paths in proptest::sample::subsequence(PATHS, 0..2),
                   methods in proptest::sample::subsequence(METHODS, 0..2)) -> String {
        let mut fields = Vec::new();
        if !paths.is_empty() { fields.push(format!("paths: {}", list(&paths))); }
        if !not_paths.is_empty() { fields.push(format!("notPaths: {}", list(&not_paths))); }
        if !methods.is_empty() { fields.push(format!("methods: {}", list(&methods))); }
        if fields.is_empty() { fields.push("methods: [\"GET\"]".into()); }
        format!("{{operation: {{{}}}}}", fields.join(", "))
    }
}

prop_compose! {
    fn rule()(ops in proptest::collection::vec(operation(), 0..3), claim in proptest::option::of(0u8..3)) -> String {
        let mut parts = Vec::new();
        if !ops.is_empty() { parts.push(format!("to: [{}]", ops.join(", "))); }
        if let Some(c) = claim { parts.push(format!("when: [{{key: \"request.auth.claims[r]\", values: [\"r{c}\"]}}]")); }
        format!("{{{}}}", parts.join(", "))
    }
}

prop_compose! {
    fn policy()(action in proptest::sample::select(vec!["ALLOW", "DENY", "AUDIT"]),
                rules in proptest::collection::vec(rule(), 0..4),
                selected in any::<bool>()) -> (String, Vec<String>, bool) {
        (action.to_owned(), rules, selected)
    }
}

fn documents(policies: &[(String, Vec<String>, bool)]) -> String {
    let mut out = String::new();
    for (i, (action, rules, selected)) in policies.iter().enumerate() {
        let selector = if *selected { "\n  selector: {matchLabels: {app: a}}" } else { "" };
        let rules = if rules.is_empty() { String::new() } else { format!("\n  rules: [{}]", rules.join(", ")) };
        out.push_str(&format!(
            "---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: p{i}}}\nspec:\n  action: {action}{selector}{rules}\n"
        ));
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]
    #[test]
    fn indexed_and_reference_evaluators_agree(
        policies in proptest::collection::vec(policy(), 0..8),
        requests in proptest::collection::vec(
            (proptest::sample::select(METHODS), proptest::sample::select(REQUEST_PATHS), proptest::option::of(0u8..3)),
            1..12),
    ) {
        let config = EngineConfig::default();
        let text = documents(&policies);
        let loaded = load_texts(&[("p.yaml".into(), text.clone())], &config).unwrap();
        let targets = [
            Target { name: "a".into(), labels: BTreeMap::from([("app".into(), "a".into())]) },
            Target { name: "b".into(), labels: BTreeMap::new() },
        ];
        let set = PolicySet::compile(loaded, &targets, &config).unwrap();
        for (method, path, role) in requests {
            let claims = role.map(|r| serde_json::json!({"r": format!("r{r}")}).as_object().cloned().unwrap());
            let mut req = Request::new(method, path);
            req.claims = claims.as_ref();
            for target in 0..2 {
                prop_assert_eq!(set.evaluate(target, req), set.evaluate_reference(target, req), "{}\n{} {}", text, method, path);
            }
        }
    }
}
