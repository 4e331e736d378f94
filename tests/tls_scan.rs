//! An external TLS scanner (sslscan, from Debian; `./test` installs it)
//! against the gateway's listener: only TLS 1.2 and 1.3 are enabled, every
//! accepted suite is an AEAD with forward secrecy (TLS 1.3 suites, or ECDHE
//! with AES-GCM or ChaCha20-Poly1305 on 1.2), no compression, no
//! Heartbleed, no insecure renegotiation. Any weaker finding fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Command;

/// The value of attribute `name` in an XML element's text.
fn attr<'a>(element: &'a str, name: &str) -> Option<&'a str> {
    let at = element.find(&format!(" {name}=\""))? + name.len() + 3;
    element[at..].split('"').next()
}

fn elements<'a>(xml: &'a str, tag: &str) -> Vec<&'a str> {
    xml.match_indices(&format!("<{tag} ")).map(|(i, _)| &xml[i..i + xml[i..].find('>').unwrap_or(0)]).collect()
}

fn forward_secret_aead(version: &str, cipher: &str) -> bool {
    match version {
        "TLSv1.3" => {
            matches!(cipher, "TLS_AES_128_GCM_SHA256" | "TLS_AES_256_GCM_SHA384" | "TLS_CHACHA20_POLY1305_SHA256")
        }
        "TLSv1.2" => cipher.starts_with("ECDHE-") && (cipher.contains("-GCM-") || cipher.contains("CHACHA20-POLY1305")),
        _ => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sslscan_finds_only_tls_1_2_and_1_3_with_forward_secret_aead_suites() {
    let h = common::start().await;
    let port = h.addr.port();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("sslscan")
            .args(["--no-colour", "--xml=-", "--sni-name=localhost", &format!("127.0.0.1:{port}")])
            .output()
            .expect("sslscan is needed for this test (apt-get install sslscan; `./test` does it)")
    })
    .await
    .unwrap();
    let xml = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && xml.contains("<ssltest"),
        "sslscan failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let enabled: Vec<String> = elements(&xml, "protocol")
        .iter()
        .filter(|p| attr(p, "enabled") == Some("1"))
        .map(|p| format!("{}v{}", attr(p, "type").unwrap_or("?").to_uppercase(), attr(p, "version").unwrap_or("?")))
        .collect();
    assert_eq!(enabled, ["TLSv1.2", "TLSv1.3"], "{xml}");
    let accepted: Vec<(String, String)> = elements(&xml, "cipher")
        .iter()
        .filter(|c| matches!(attr(c, "status"), Some("accepted" | "preferred")))
        .map(|c| (attr(c, "sslversion").unwrap_or("?").to_owned(), attr(c, "cipher").unwrap_or("?").to_owned()))
        .collect();
    assert!(accepted.len() >= 4, "some suites are accepted: {xml}");
    let weak: Vec<&(String, String)> = accepted.iter().filter(|(v, c)| !forward_secret_aead(v, c)).collect();
    assert!(weak.is_empty(), "weak suites accepted: {weak:?}");
    for (tag, name, bad) in [("compression", "supported", "1"), ("heartbleed", "vulnerable", "1")] {
        for e in elements(&xml, tag) {
            assert_ne!(attr(e, name), Some(bad), "{tag}: {e}");
        }
    }
    for e in elements(&xml, "renegotiation") {
        assert!(!(attr(e, "supported") == Some("1") && attr(e, "secure") == Some("0")), "insecure renegotiation: {e}");
    }
    h.finish().await;
}
