//! The trust domain's CA from the command line: `ward ca init` writes the
//! root and intermediate (keys 0600), `ward control` loads the intermediate,
//! `ward cert issue` gets X.509-SVIDs through the admin API — with a new key,
//! or over a CSR made by OpenSSL (the key never leaves its owner) — which
//! OpenSSL verifies against the published bundle; every issuance is in the
//! audit log with its subject and serial. `./test` installs openssl and curl.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

fn run(dir: &Path, program: &str, args: &[&str]) -> std::process::Output {
    Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{program} is needed for this test (`./test` installs it): {e}"))
}

fn ward(dir: &Path, args: &[&str]) -> std::process::Output {
    common::ward_cli(dir, args)
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn a_ca_issues_svids_that_openssl_verifies_and_the_audit_log_records() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let port = common::write_control_dir(d, "prod.example.org", "");

    let init = ward(d, &["ca", "init", "--trust-domain", "prod.example.org", "--dir", "ca"]);
    assert!(init.status.success(), "{}", String::from_utf8_lossy(&init.stderr));
    assert_eq!((mode(&d.join("ca/root.key")), mode(&d.join("ca/intermediate.key"))), (0o600, 0o600));
    let again = ward(d, &["ca", "init", "--trust-domain", "prod.example.org", "--dir", "ca"]);
    assert!(!again.status.success(), "an existing CA is never overwritten");
    assert!(!ward(d, &["ca", "init", "--trust-domain", "Prod.Example.org", "--dir", "ca2"]).status.success());

    let control = common::ControlProcess::start(d, port);
    let cfg = ["--config", "ward.toml", "--ca", "ca.crt"];

    // A new key pair, returned once.
    let id = "spiffe://prod.example.org/ns/shop/sa/cart";
    let out = ward(d, &[&["cert", "issue", "--spiffe-id", id, "--out", "cart"][..], &cfg[..]].concat());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(mode(&d.join("cart.key")), 0o600);
    let bundle = run(d, "curl", &["-sS", "--cacert", "ca.crt", &format!("https://localhost:{port}/ca/bundle.pem")]);
    assert_eq!(bundle.stdout, std::fs::read(d.join("ca/bundle.pem")).unwrap(), "the published bundle is the root");
    std::fs::write(d.join("fetched-bundle.pem"), &bundle.stdout).unwrap();
    let jwks =
        run(d, "curl", &["-sS", "--cacert", "ca.crt", &format!("https://localhost:{port}/.well-known/spiffe-bundle")]);
    let jwks: serde_json::Value = serde_json::from_slice(&jwks.stdout).unwrap();
    assert_eq!((jwks["keys"][0]["use"].as_str(), jwks["keys"][0]["crv"].as_str()), (Some("x509-svid"), Some("P-256")));
    assert!(jwks["spiffe_sequence"].as_u64().is_some() && jwks["keys"][0]["x5c"][0].as_str().is_some());
    let verify = |cert: &str| {
        let v = run(
            d,
            "openssl",
            &["verify", "-CAfile", "fetched-bundle.pem", "-untrusted", cert, "-purpose", "sslclient", cert],
        );
        String::from_utf8_lossy(&v.stdout).trim().to_owned()
    };
    assert_eq!(verify("cart.crt"), "cart.crt: OK");

    // Over a CSR: OpenSSL makes the key; only the request goes to Ward.
    let req = run(
        d,
        "openssl",
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "w.key",
            "-out",
            "w.csr",
            "-subj",
            "/CN=ignored",
        ],
    );
    assert!(req.status.success(), "{}", String::from_utf8_lossy(&req.stderr));
    let id2 = "spiffe://prod.example.org/payments";
    let out = ward(
        d,
        &[&["cert", "issue", "--spiffe-id", id2, "--csr", "w.csr", "--ttl", "10m", "--out", "w"][..], &cfg[..]]
            .concat(),
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        std::fs::read_to_string(d.join("w.key")).unwrap().lines().next(),
        Some("-----BEGIN PRIVATE KEY-----"),
        "the workload's own key, untouched"
    );
    assert_eq!(verify("w.crt"), "w.crt: OK");
    let cert_key = run(d, "openssl", &["x509", "-in", "w.crt", "-noout", "-pubkey"]).stdout;
    let own_key = run(d, "openssl", &["pkey", "-in", "w.key", "-pubout"]).stdout;
    assert_eq!(cert_key, own_key, "the SVID certifies the CSR's key");
    let text = String::from_utf8(run(d, "openssl", &["x509", "-in", "w.crt", "-noout", "-text"]).stdout).unwrap();
    assert!(text.contains(&format!("URI:{id2}")) && !text.contains("ignored"), "Ward's names, not the CSR's");

    // A workload joins with a one-time token and its own CSR (curl speaks for it).
    let token =
        ward(d, &[&["cert", "join-token", "--spiffe-id", "spiffe://prod.example.org/batch"][..], &cfg[..]].concat());
    assert!(token.status.success(), "{}", String::from_utf8_lossy(&token.stderr));
    let token = String::from_utf8(token.stdout).unwrap().trim().to_owned();
    assert!(token.starts_with("wjt_"));
    let csr = std::fs::read_to_string(d.join("w.csr")).unwrap();
    std::fs::write(d.join("join.json"), serde_json::json!({"join_token": token, "csr": csr}).to_string()).unwrap();
    let join = || {
        run(
            d,
            "curl",
            &[
                "-sS",
                "--cacert",
                "ca.crt",
                "-H",
                "content-type: application/json",
                "--data-binary",
                "@join.json",
                "-w",
                "\n%{http_code}",
                &format!("https://localhost:{port}/svid/join"),
            ],
        )
    };
    let first = String::from_utf8(join().stdout).unwrap();
    let (body, code) = first.rsplit_once('\n').unwrap();
    assert_eq!(code, "201", "{body}");
    let joined: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(joined["spiffe_id"], "spiffe://prod.example.org/batch");
    std::fs::write(d.join("batch.crt"), joined["certificate_chain"].as_str().unwrap()).unwrap();
    assert_eq!(verify("batch.crt"), "batch.crt: OK");
    let again = String::from_utf8(join().stdout).unwrap();
    assert!(again.ends_with("\n401"), "a join token is single-use: {again}");

    // The intermediate rotates: new SVIDs come from the new one, old ones still verify.
    let before = std::fs::read_to_string(d.join("ca/intermediate.crt")).unwrap();
    let rotated = ward(d, &[&["ca", "rotate"][..], &cfg[..]].concat());
    assert!(rotated.status.success(), "{}", String::from_utf8_lossy(&rotated.stderr));
    let after = std::fs::read_to_string(d.join("ca/intermediate.crt")).unwrap();
    assert_ne!(before, after);
    let out = ward(d, &[&["cert", "issue", "--spiffe-id", id, "--out", "cart2"][..], &cfg[..]].concat());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let said = String::from_utf8(out.stdout).unwrap();
    let serial = said.split("(serial ").nth(1).and_then(|s| s.split(',').next()).unwrap().to_owned();
    let revoked = ward(d, &[&["cert", "revoke", "--serial", &serial][..], &cfg[..]].concat());
    assert!(revoked.status.success(), "{}", String::from_utf8_lossy(&revoked.stderr));
    assert!(String::from_utf8_lossy(&revoked.stdout).starts_with(&format!("denied {serial} until")));
    assert!(std::fs::read_to_string(d.join("cart2.crt")).unwrap().ends_with(&after), "signed by the new intermediate");
    assert_eq!(verify("cart2.crt"), "cart2.crt: OK");
    assert_eq!(verify("cart.crt"), "cart.crt: OK", "SVIDs of the old intermediate stay valid");

    // Another trust domain, or no admin token: refused.
    let foreign =
        ward(d, &[&["cert", "issue", "--spiffe-id", "spiffe://evil.org/x", "--out", "x"][..], &cfg[..]].concat());
    assert!(!foreign.status.success());
    let anonymous = run(
        d,
        "curl",
        &[
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--cacert",
            "ca.crt",
            "-X",
            "POST",
            "-d",
            "{}",
            &format!("https://localhost:{port}/admin/certs"),
        ],
    );
    assert_eq!(String::from_utf8_lossy(&anonymous.stdout), "401");

    // `ward agent`: joins with a token, then renews over mTLS at half-life (4 s SVIDs here).
    let agent_id = "spiffe://prod.example.org/agent";
    let token = ward(d, &[&["cert", "join-token", "--spiffe-id", agent_id][..], &cfg[..]].concat());
    std::fs::write(d.join("token.txt"), &token.stdout).unwrap();
    let base = format!("https://localhost:{port}");
    let agent_args = ["agent", "--control", &base, "--ca", "ca.crt", "--dir", "svid", "--ttl", "4s"];
    let joined = ward(d, &[&agent_args[..], &["--join-token-file", "token.txt", "--once"][..]].concat());
    assert!(joined.status.success(), "{}", String::from_utf8_lossy(&joined.stderr));
    assert_eq!(mode(&d.join("svid/svid.key")), 0o600);
    assert_eq!(verify("svid/svid.crt"), "svid/svid.crt: OK");
    let first = std::fs::read_to_string(d.join("svid/svid.crt")).unwrap();
    let mut agent = Command::new(env!("CARGO_BIN_EXE_ward"))
        .args(agent_args)
        .current_dir(d)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut seen = vec![first];
    let started = std::time::Instant::now();
    while seen.len() < 3 && started.elapsed() < std::time::Duration::from_secs(10) {
        std::thread::sleep(std::time::Duration::from_millis(200));
        let now = std::fs::read_to_string(d.join("svid/svid.crt")).unwrap_or_default();
        if !now.is_empty() && seen.last() != Some(&now) {
            assert_eq!(verify("svid/svid.crt"), "svid/svid.crt: OK", "every renewed SVID verifies");
            seen.push(now);
        }
    }
    let _ = agent.kill();
    let _ = agent.wait();
    assert!(seen.len() >= 3, "the agent renewed twice within 10 s ({} versions)", seen.len());

    // Messages signed with the agent's SVID, checked against the bundle.
    std::fs::write(d.join("order.json"), br#"{"pay": 10}"#).unwrap();
    let signed = ward(d, &["sign", "--cert", "svid/svid.crt", "--key", "svid/svid.key", "order.json"]);
    assert!(signed.status.success(), "{}", String::from_utf8_lossy(&signed.stderr));
    std::fs::write(d.join("order.jws"), &signed.stdout).unwrap();
    let check = |file: &str, who: &str| {
        ward(d, &["verify", "--bundle", "ca/bundle.pem", "--signature", "order.jws", "--spiffe-id", who, file])
    };
    let ok = check("order.json", agent_id);
    assert_eq!(String::from_utf8_lossy(&ok.stdout), format!("signed by {agent_id}\n"));
    std::fs::write(d.join("tampered.json"), br#"{"pay": 99}"#).unwrap();
    assert!(!check("tampered.json", agent_id).status.success(), "a changed message fails");
    assert!(!check("order.json", id).status.success(), "another signer than expected fails");

    drop(control);
    let agent_issuances = common::read_log(&d.join("audit"))
        .iter()
        .filter(|r| r["key_change"]["key"] == format!("x509-svid {agent_id}").as_str())
        .count();
    assert!(agent_issuances >= 3, "the join and the renewals are audited ({agent_issuances})");
    let issued: Vec<(String, String)> = common::read_log(&d.join("audit"))
        .iter()
        .filter(|r| {
            r["reason"] == "certificate_issued" && r["key_change"]["key"] != format!("x509-svid {agent_id}").as_str()
        })
        .map(|r| {
            (
                r["key_change"]["key"].as_str().unwrap().to_owned(),
                r["key_change"]["outcome"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        issued,
        [
            (format!("x509-svid {id}"), "issued".to_owned()),
            (format!("x509-svid {id2}"), "issued".to_owned()),
            ("x509-svid spiffe://prod.example.org/batch".to_owned(), "issued".to_owned()),
            (format!("x509-svid {id}"), "issued".to_owned()),
        ]
    );
    let refused_joins = common::read_log(&d.join("audit")).iter().filter(|r| r["reason"] == "join_refused").count();
    assert_eq!(refused_joins, 1, "the reused token is audited");
    let rotations = common::read_log(&d.join("audit"))
        .iter()
        .filter(|r| r["key_change"]["key"] == "ca_intermediate" && r["key_change"]["outcome"] == "rotated")
        .count();
    assert_eq!(rotations, 1, "the rotation is audited");
    let denials = common::read_log(&d.join("audit"))
        .iter()
        .filter(|r| r["key_change"]["key"] == format!("x509-svid x509-serial:{serial}").as_str())
        .count();
    assert_eq!(denials, 1, "the denial is audited");
}
