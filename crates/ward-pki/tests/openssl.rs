//! What OpenSSL, a verifier nobody here wrote, sees in Ward's SVIDs: the
//! chain verifies for both TLS purposes, and the leaf has exactly the
//! X509-SVID.md §4 constraints (one URI SAN, CA:FALSE, critical key usage
//! with digitalSignature only, serverAuth + clientAuth, no name constraints
//! anywhere). `./test` installs openssl.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

use ward_core::SpiffeId;
use ward_pki::ca;

fn openssl(dir: &std::path::Path, args: &[&str]) -> String {
    let out =
        Command::new("openssl").args(args).current_dir(dir).output().unwrap_or_else(|e| {
            panic!("openssl is needed for this test (apt-get install openssl; `./test` does it): {e}")
        });
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn openssl_verifies_svids_and_sees_the_x509_svid_constraints() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let new = ca::init("prod.example.org").unwrap();
    let issuer =
        ca::SvidIssuer::load(&new.intermediate.cert_pem, &new.intermediate.key_pem, "prod.example.org").unwrap();
    let id = SpiffeId::parse("spiffe://prod.example.org/ns/shop/sa/cart").unwrap();
    let (svid, _key) = issuer.issue(&id, ca::DEFAULT_SVID_TTL).unwrap();
    std::fs::write(d.join("root.pem"), &new.root.cert_pem).unwrap();
    std::fs::write(d.join("intermediate.pem"), &new.intermediate.cert_pem).unwrap();
    std::fs::write(d.join("leaf.pem"), &svid.cert_pem).unwrap();

    for purpose in ["sslclient", "sslserver"] {
        let ok = openssl(
            d,
            &["verify", "-CAfile", "root.pem", "-untrusted", "intermediate.pem", "-purpose", purpose, "leaf.pem"],
        );
        assert_eq!(ok.trim(), "leaf.pem: OK", "{purpose}");
    }
    let text = openssl(d, &["x509", "-in", "leaf.pem", "-noout", "-text"]);
    assert!(text.contains("X509v3 Key Usage: critical\n                Digital Signature\n"), "{text}");
    assert!(text.contains("CA:FALSE"), "{text}");
    assert!(text.contains("TLS Web Server Authentication, TLS Web Client Authentication"), "{text}");
    let sans: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.contains("X509v3 Subject Alternative Name"))
        .nth(1)
        .unwrap()
        .split(',')
        .map(str::trim)
        .collect();
    assert_eq!(sans, ["URI:spiffe://prod.example.org/ns/shop/sa/cart"], "exactly one URI SAN");
    for ca_pem in ["root.pem", "intermediate.pem"] {
        let ca_text = openssl(d, &["x509", "-in", ca_pem, "-noout", "-text"]);
        assert!(ca_text.contains("CA:TRUE"), "{ca_pem}");
        assert!(ca_text.contains("URI:spiffe://prod.example.org\n"), "{ca_pem}: the trust domain's own ID");
        assert!(!ca_text.contains("Name Constraints"), "{ca_pem}: no name constraints");
    }
    // The intermediate alone is not a trust anchor for the leaf's purpose checks to skip.
    let out = Command::new("openssl")
        .args(["verify", "-CAfile", "intermediate.pem", "leaf.pem"])
        .current_dir(d)
        .output()
        .unwrap();
    assert!(!out.status.success(), "the root is the anchor; an intermediate alone is not");
}
