//! The gateway's decisions in the tamper-evident log, proved through the
//! admin API and checked by the verifier anyone can run.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Command;

use serde_json::{Value, json};
use ward_audit::checkpoints::SignedCheckpoint;
use ward_merkle::NoteVerifier;

use common::read_log;

const ADMIN: &str = "\n[admin]\nlisten = \"127.0.0.1:0\"\n";

#[tokio::test(flavor = "multi_thread")]
async fn decisions_are_provable_through_the_admin_api() {
    let dir = tempfile::tempdir().unwrap();
    let (up, _) = common::start_upstream().await;
    let (path, signer, ca_pem) = common::write_config(dir.path(), &format!("http://{up}"), ADMIN, false);
    let config = ward_config::load(&path).unwrap();
    let gateway = ward_gateway::Gateway::bind(&config).await.unwrap();
    let addr = gateway.local_addr().unwrap();
    let admin = gateway.admin_addr().unwrap();
    assert!(admin.ip().is_loopback());
    let running = gateway.spawn().unwrap();
    let client = common::client(&ca_pem);

    let token = signer
        .sign(
            &serde_json::from_value(json!({
                "iss": common::ISSUER, "aud": common::AUDIENCE, "sub": "alice",
                "iat": common::now(), "exp": common::now() + 300, "roles": ["reader"]
            }))
            .unwrap(),
        )
        .unwrap();
    let mut ids = Vec::new();
    for i in 0..20 {
        let r = client
            .get(format!("https://localhost:{}/api/items/{i}", addr.port()))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        ids.push(r.headers()["x-request-id"].to_str().unwrap().to_owned());
    }
    let denied = client.get(format!("https://localhost:{}/api/items/x", addr.port())).send().await.unwrap();
    assert_eq!(denied.status(), 401);

    // A checkpoint covering every decision so far.
    running.audit_log().checkpoint_now().await.unwrap();
    let http = reqwest::Client::new();
    let base = format!("http://{admin}");
    let note = http.get(format!("{base}/audit/checkpoint")).send().await.unwrap().text().await.unwrap();
    let vkey = std::fs::read_to_string(dir.path().join("audit/checkpoint.vkey")).unwrap();
    let verifier = NoteVerifier::new(vkey.trim()).unwrap();

    // The admin API goes through the same front door: its limits answer
    // 414 and 431 as generic JSON with the security headers, audited with
    // the caller's address and a bounded path.
    let long = format!("{base}/audit/{}", "a".repeat(9000));
    let r = http.get(&long).send().await.unwrap();
    assert_eq!(r.status(), 414);
    assert_eq!(r.headers().get("x-frame-options").and_then(|v| v.to_str().ok()), Some("DENY"));
    let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "uri_too_long");
    let mut many = http.get(format!("{base}/audit/checkpoint"));
    for i in 0..150 {
        many = many.header(format!("x-h{i}"), "v");
    }
    assert_eq!(many.send().await.unwrap().status(), 431);
    running.flush_audit().await.unwrap();
    let records = read_log(&dir.path().join("audit"));
    let long_record = records.iter().find(|r| r["request_id"] == id.as_str()).expect("the 414 is audited");
    assert_eq!(long_record["reason"], "uri_too_long");
    assert!(long_record["path"].as_str().unwrap().len() < 1200, "long paths are kept short");
    assert!(!long_record["client_ip_hmac"].as_str().unwrap().is_empty());
    let checkpoint = SignedCheckpoint::verify(&note, &verifier).unwrap();

    // Prove the record of request 7 is in the signed tree.
    let records = read_log(&dir.path().join("audit"));
    let index = records.iter().position(|r| r["request_id"] == ids[7].as_str()).unwrap() as u64;
    assert!(index < checkpoint.checkpoint.size);
    let proof: Value =
        http.get(format!("{base}/audit/proof/inclusion?index={index}")).send().await.unwrap().json().await.unwrap();
    assert!(proof.get("record").is_none(), "the API serves hashes, never record bodies");
    let raw = ward_audit::segments::SegmentReader::new(&dir.path().join("audit/segments"), index)
        .unwrap()
        .find_map(|item| match item {
            ward_audit::segments::ReadItem::Record(r) if r.index == index => Some(r.payload),
            _ => None,
        })
        .unwrap();
    let leaf = ward_merkle::leaf_hash(&raw);
    assert_eq!(proof["leaf_hash"], base64_of(&leaf), "the proof is for exactly that record's bytes");
    ward_audit::proofs::check(&proof, &verifier, None).unwrap();
    // The same document through the CLI, with only the verifier key.
    let file = dir.path().join("proof.json");
    std::fs::write(&file, proof.to_string()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ward"))
        .args(["audit", "--data-dir", "/nonexistent", "verify-proof", file.to_str().unwrap(), "--vkey", vkey.trim()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // Consistency from an early size to the checkpoint.
    let c: Value =
        http.get(format!("{base}/audit/proof/consistency?from=3")).send().await.unwrap().json().await.unwrap();
    // Without a checkpoint of size 3 kept by the checker it proves only
    // that the log extends *a* tree of that size: not a success.
    assert!(ward_audit::proofs::check(&c, &verifier, None).unwrap_err().starts_with("unanchored"));

    // Bad requests get generic errors; health and readiness answer.
    for (path, status) in [
        ("/audit/proof/inclusion?index=99999", 400),
        ("/audit/proof/inclusion?index=x", 400),
        ("/audit/proof/consistency", 400),
        ("/nope", 404),
        ("/healthz", 200),
        ("/readyz", 200),
    ] {
        let r = http.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(r.status().as_u16(), status, "{path}");
    }
    let post = http.post(format!("{base}/audit/checkpoint")).send().await.unwrap();
    assert_eq!(post.status().as_u16(), 405);

    running.shutdown().await;
    // Admin requests are audit events too (health probes are not).
    let records = read_log(&dir.path().join("audit"));
    let admin_events: Vec<&Value> = records.iter().filter(|r| r["event"] == "admin").collect();
    assert_eq!(admin_events.len(), 10, "{admin_events:?}");
    assert!(admin_events.iter().any(|r| r["path"] == "/audit/proof/inclusion" && r["status"] == 200));
    assert!(admin_events.iter().any(|r| r["status"] == 405 && r["decision"] == "deny"));
    let report = ward_audit::verify::verify(&dir.path().join("audit"), &verifier, Some(&note), |_, _| {}).unwrap();
    assert!(report.ok() && report.consistent_with_saved == Some(true), "{:?}", report.problems);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_non_loopback_admin_listener_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _, _) =
        common::write_config(dir.path(), "http://127.0.0.1:9", "\n[admin]\nlisten = \"0.0.0.0:9901\"\n", false);
    let e = ward_config::load(&path).unwrap_err().to_string();
    assert!(e.contains("admin.listen: must be a loopback address"), "{e}");
}

fn base64_of(h: &ward_merkle::Hash) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(h.as_bytes())
}

#[tokio::test(flavor = "multi_thread")]
async fn key_loads_and_a_rotated_jwk_set_are_audited() {
    use ward_authn::{Algorithm, TokenSigner};
    let dir = tempfile::tempdir().unwrap();
    let (up, _) = common::start_upstream().await;
    let (path, _, ca_pem) = common::write_config(dir.path(), &format!("http://{up}"), "", false);
    let config = ward_config::load(&path).unwrap();
    let gateway = ward_gateway::Gateway::bind(&config).await.unwrap();
    let addr = gateway.local_addr().unwrap();
    let running = gateway.spawn().unwrap();

    // The issuer rotates: a new key appears in the JWK set; a token signed
    // with it makes the gateway fetch the set again.
    let new =
        TokenSigner::from_pkcs8(Algorithm::Es256, &TokenSigner::generate_pkcs8(Algorithm::Es256).unwrap()).unwrap();
    std::fs::write(dir.path().join("jwks.json"), new.public_jwk_set().to_string()).unwrap();
    let claims = json!({"iss": common::ISSUER, "aud": common::AUDIENCE, "sub": "bob", "iat": common::now(),
                        "exp": common::now() + 300, "roles": ["reader"]});
    let token = new.sign(&serde_json::from_value(claims).unwrap()).unwrap();
    let r = common::client(&ca_pem)
        .get(format!("https://localhost:{}/api/items/1", addr.port()))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the new key is in service");
    running.shutdown().await;

    let records = read_log(&dir.path().join("audit"));
    let keys: Vec<(&str, &str)> = records
        .iter()
        .filter(|r| r["event"] == "key_change")
        .map(|r| (r["key_change"]["key"].as_str().unwrap(), r["key_change"]["outcome"].as_str().unwrap()))
        .collect();
    assert_eq!(
        keys,
        [
            ("tls_certificate", "loaded"),
            ("audit_checkpoint_key", "loaded"),
            ("jwks:test", "loaded"),
            ("jwks:test", "rotated")
        ]
    );
    let rotated = records.iter().rfind(|r| r["event"] == "key_change").unwrap();
    assert!(rotated["key_change"]["fingerprint"].as_str().unwrap().contains(&format!("kids={}", new.kid())));
}
