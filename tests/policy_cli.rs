//! `ward policy check | explain | test`, run as a user would run them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Command, Output};

fn ward(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ward")).args(args).current_dir(env!("CARGO_MANIFEST_DIR")).output().unwrap()
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn the_corpus_passes_through_ward_policy_test() {
    let out = ward(&["policy", "test", "tests/policy-corpus/policies", "tests/policy-corpus/cases.yaml"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    let summary = t.lines().last().unwrap();
    let passed: usize = summary.split(' ').next().unwrap().parse().unwrap();
    assert!(passed >= 100 && summary.ends_with("0 failed"), "{summary}");
}

#[test]
fn a_wrong_expectation_fails_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let cases =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/policy-corpus/cases.yaml")).unwrap();
    let flipped = cases.replacen("\"expect\": \"allow\"", "\"expect\": \"deny\"", 1);
    let path = dir.path().join("cases.yaml");
    std::fs::write(&path, flipped).unwrap();
    let out = ward(&["policy", "test", "tests/policy-corpus/policies", path.to_str().unwrap()]);
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(t.contains("FAIL  reader GETs an api path: expected Deny, got Allow"), "{t}");
}

#[test]
fn check_names_file_line_and_field() {
    let out = ward(&["policy", "check", "tests/policy-corpus/policies"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("digest sha256:"), "{}", text(&out));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.yaml"),
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: x}\nspec:\n  rules:\n  - from:\n    - source:\n        ipBlocks: [\"10.0.0.0/33\"]\n",
    )
    .unwrap();
    let out = ward(&["policy", "check", dir.path().to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains(
            "bad.yaml:8: spec.rules[0].from[0].source.ipBlocks[0]: `10.0.0.0/33`: prefix length 33 exceeds 32"
        ),
        "{}",
        text(&out)
    );
}

#[test]
fn explain_shows_every_rule_and_why() {
    let out = ward(&[
        "policy",
        "explain",
        "--policies",
        "tests/policy-corpus/policies",
        "--request",
        r#"{"method":"POST","path":"/api/orders/7","claims":{"iss":"https://idp.example.com","sub":"r","roles":["reader"],"aud":"orders"}}"#,
    ]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    // Without --config the route is `default`, which only root policies select.
    assert!(t.contains("decision: deny (default_deny)"), "{t}");
    assert!(t.contains("DENY ward-system/protect-admin-paths"), "{t}");
    assert!(t.contains("rule 0: no match: to[0].operation.paths: /api/orders/7 does not match"), "{t}");
    assert!(t.contains("AUDIT ward-system/audit-deletes"), "{t}");
    assert!(t.contains("default/api-users: its selector {\"app\": \"api\"} does not match"), "{t}");
    assert!(t.contains("elsewhere/other-team: namespace `elsewhere` is neither"), "{t}");
}
