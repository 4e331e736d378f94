//! Arbitrary text as a policy file: loading must never panic, and for every
//! set that compiles, the indexed and the reference evaluator must agree.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ward_policy::{EngineConfig, PolicySet, Request, Target, load_texts};

const PATHS: &[&str] = &["/", "/a", "/a/b", "/A/B", "/api/x/items", "/b/", "/x.png", "/admin/x", "/%41"];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let config = EngineConfig { authorizers: vec!["ext".into()], ..EngineConfig::default() };
    let Ok(loaded) = load_texts(&[("f.yaml".into(), text.to_owned())], &config) else { return };
    let targets = [Target { name: "t".into(), labels: [("app".to_owned(), "a".to_owned())].into() }];
    let Ok(set) = PolicySet::compile(loaded, &targets, &config) else { return };
    let claims = serde_json::json!({"iss": "i", "sub": "s", "roles": ["r"], "aud": "a", "groups": "g"});
    let claims = claims.as_object().cloned().unwrap_or_default();
    for (i, path) in PATHS.iter().enumerate() {
        for method in ["GET", "POST"] {
            let mut r = Request::new(method, path);
            if i % 2 == 0 {
                r.claims = Some(&claims);
                r.request_principal = Some("i/s");
                r.source_ip = "10.1.2.3".parse().ok();
                r.host = Some("Example.com");
            }
            assert_eq!(set.evaluate(0, r), set.evaluate_reference(0, r));
            let _ = set.explain(0, r);
        }
    }
});
