//! Wycheproof conformance for the signature path every JWT goes through:
//! keys are loaded the way the gateway loads them (from a JWK) and checked
//! with [`ward_authn::verify_signature`].
//!
//! The vectors come from the `wycheproof` crate, which ships C2SP/wycheproof's
//! `testvectors_v1` files as data (Apache-2.0), so they run everywhere.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use ward_authn::{Algorithm, Jwk, verify_signature};

fn hex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

fn strip_leading_zeros(mut v: Vec<u8>) -> Vec<u8> {
    while v.len() > 1 && v[0] == 0 {
        v.remove(0);
    }
    v
}

/// Run every test of every group; `key` builds the group's JWK (or None to
/// check that the key itself is refused, which also counts as rejection).
/// `json` is the vector file as the crate ships it, read as plain JSON so the
/// test sees every field whatever the crate's typed view keeps.
fn run(file: &str, json: &str, alg: Algorithm, key: impl Fn(&Value) -> Value) {
    let doc: Value = serde_json::from_str(json).unwrap();
    let (mut valid, mut invalid, mut skipped) = (0, 0, 0);
    for group in doc["testGroups"].as_array().unwrap() {
        let jwk: Jwk = serde_json::from_value(key(group)).unwrap();
        let loaded = jwk.to_verifying_key();
        for test in group["tests"].as_array().unwrap() {
            let id = test["tcId"].as_u64().unwrap();
            let msg = hex(test["msg"].as_str().unwrap());
            let sig = hex(test["sig"].as_str().unwrap());
            let accepted = loaded.as_ref().is_ok_and(|k| verify_signature(alg, k, &msg, &sig));
            match test["result"].as_str().unwrap() {
                "valid" => {
                    assert!(accepted, "{file} tcId {id} is valid but was rejected ({})", test["comment"]);
                    valid += 1;
                }
                "invalid" => {
                    assert!(!accepted, "{file} tcId {id} is invalid but was accepted ({})", test["comment"]);
                    invalid += 1;
                }
                _ => skipped += 1, // "acceptable": either answer conforms
            }
        }
    }
    eprintln!("{file}: {valid} valid accepted, {invalid} invalid rejected, {skipped} acceptable not judged");
    assert!(valid > 0 && invalid > 0, "{file}: the corpus had no vectors");
}

/// The group's EC key as a JWK built from its coordinates (some groups carry
/// no `publicKeyJwk`, because their points are deliberately odd).
fn ec_jwk(group: &Value, crv: &str, len: usize) -> Value {
    let pk = &group["publicKey"];
    let coord = |name: &str| {
        let v = strip_leading_zeros(hex(pk[name].as_str().unwrap()));
        let mut padded = vec![0; len.saturating_sub(v.len())];
        padded.extend(v);
        URL_SAFE_NO_PAD.encode(padded)
    };
    json!({"kty": "EC", "crv": crv, "kid": "w", "x": coord("wx"), "y": coord("wy")})
}

#[test]
fn es256_p1363() {
    let t = wycheproof::ecdsa::TestName::EcdsaSecp256r1Sha256P1363;
    run("ecdsa_secp256r1_sha256_p1363", t.json_data(), Algorithm::Es256, |g| ec_jwk(g, "P-256", 32));
}

#[test]
fn es384_p1363() {
    let t = wycheproof::ecdsa::TestName::EcdsaSecp384r1Sha384P1363;
    run("ecdsa_secp384r1_sha384_p1363", t.json_data(), Algorithm::Es384, |g| ec_jwk(g, "P-384", 48));
}

#[test]
fn ed25519() {
    run("ed25519", wycheproof::eddsa::TestName::Ed25519.json_data(), Algorithm::EdDsa, |g| g["publicKeyJwk"].clone());
}

fn rsa_jwk(group: &Value, alg: &str) -> Value {
    let pk = &group["publicKey"];
    let n = strip_leading_zeros(hex(pk["modulus"].as_str().unwrap()));
    let e = strip_leading_zeros(hex(pk["publicExponent"].as_str().unwrap()));
    json!({"kty": "RSA", "alg": alg, "kid": "w", "n": URL_SAFE_NO_PAD.encode(n), "e": URL_SAFE_NO_PAD.encode(e)})
}

#[test]
fn rs256_pkcs1() {
    let t = wycheproof::rsa_pkcs1_verify::TestName::Rsa2048Sha256;
    run("rsa_signature_2048_sha256", t.json_data(), Algorithm::Rs256, |g| rsa_jwk(g, "RS256"));
}

#[test]
fn ps256_pss() {
    let t = wycheproof::rsa_pss_verify::TestName::RsaPss2048Sha256Mgf1SaltLen32;
    run("rsa_pss_2048_sha256_mgf1_32", t.json_data(), Algorithm::Ps256, |g| rsa_jwk(g, "PS256"));
}
