//! JWT verification per algorithm, uncached and cached.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use aws_lc_rs::{hmac, rsa};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;
use ward_authn::{Algorithm, Authenticator, KeyStore, Provider, ProviderSettings, TokenCache, VerifyingKey};

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

fn signing_input(alg: &str) -> String {
    let header = json!({"alg": alg, "kid": "k1", "typ": "JWT"});
    let n = now();
    let claims = json!({"iss": "https://issuer.test", "aud": "orders", "sub": "alice", "exp": n + 3600, "iat": n, "roles": ["reader"]});
    format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()))
}

/// A token and its verifying key for `alg`.
fn token_and_key(alg: Algorithm) -> (String, VerifyingKey) {
    let rng = SystemRandom::new();
    let input = signing_input(alg.as_str());
    let (sig, key) = match alg {
        Algorithm::Es256 | Algorithm::Es384 => {
            let a = if alg == Algorithm::Es256 {
                &signature::ECDSA_P256_SHA256_FIXED_SIGNING
            } else {
                &signature::ECDSA_P384_SHA384_FIXED_SIGNING
            };
            let pkcs8 = EcdsaKeyPair::generate_pkcs8(a, &rng).unwrap();
            let pair = EcdsaKeyPair::from_pkcs8(a, pkcs8.as_ref()).unwrap();
            let sig = pair.sign(&rng, input.as_bytes()).unwrap().as_ref().to_vec();
            (sig, VerifyingKey::from_public_der(alg, pair.public_key().as_ref()).unwrap())
        }
        Algorithm::EdDsa => {
            let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
            let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
            let sig = pair.sign(input.as_bytes()).as_ref().to_vec();
            (sig, VerifyingKey::from_public_der(alg, pair.public_key().as_ref()).unwrap())
        }
        Algorithm::Rs256 | Algorithm::Ps256 => {
            let pair = RsaKeyPair::generate(rsa::KeySize::Rsa2048).unwrap();
            let pad: &'static dyn signature::RsaEncoding =
                if alg == Algorithm::Rs256 { &signature::RSA_PKCS1_SHA256 } else { &signature::RSA_PSS_SHA256 };
            let mut sig = vec![0; pair.public_modulus_len()];
            pair.sign(pad, &rng, input.as_bytes(), &mut sig).unwrap();
            let parts = rsa::PublicKeyComponents::<Vec<u8>>::from(pair.public_key());
            (sig, VerifyingKey::from_rsa_components(alg, &parts.n, &parts.e).unwrap())
        }
        Algorithm::Hs256 => {
            let secret = ward_crypto::SecretBytes::new(vec![9; 32]);
            let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret.expose()), input.as_bytes());
            (tag.as_ref().to_vec(), VerifyingKey::from_secret(alg, &secret).unwrap())
        }
    };
    (format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig)), key)
}

fn authenticator(key: VerifyingKey, cache: bool) -> Authenticator {
    let settings = ProviderSettings {
        name: "bench".into(),
        issuer: "https://issuer.test".into(),
        audiences: vec!["orders".into()],
        leeway: std::time::Duration::from_secs(60),
        max_lifetime: ProviderSettings::DEFAULT_MAX_LIFETIME,
        max_token_bytes: 8192,
        require_at_jwt: false,
        id_tokens: false,
    };
    let provider = Provider::new(settings, KeyStore::fixed(vec![(Some("k1".into()), key)]));
    Authenticator::new(vec![provider], cache.then(|| TokenCache::new(10_000)))
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let mut group = c.benchmark_group("jwt_verify");
    for alg in
        [Algorithm::Es256, Algorithm::Es384, Algorithm::EdDsa, Algorithm::Rs256, Algorithm::Ps256, Algorithm::Hs256]
    {
        let (token, key) = token_and_key(alg);
        let auth = authenticator(key, false);
        assert!(rt.block_on(auth.authenticate(&token, now(), |_| true)).is_ok());
        group.bench_function(format!("{alg}/uncached"), |b| {
            b.iter(|| rt.block_on(auth.authenticate(std::hint::black_box(&token), now(), |_| true)).unwrap())
        });
    }
    let (token, key) = token_and_key(Algorithm::Es256);
    let auth = authenticator(key, true);
    group.bench_function("ES256/cached", |b| {
        b.iter(|| rt.block_on(auth.authenticate(std::hint::black_box(&token), now(), |_| true)).unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
