//! The cost of issuing one `client_credentials` access token in process:
//! checking the client's secret, the grant (scope and audience narrowing,
//! claims), EdDSA (or ES256) signing and the response body. The HTTP
//! endpoint adds its own costs on top; BENCHMARKS.md compares the endpoint
//! with Hydra and Keycloak once it exists.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use ward_authn::Algorithm;
use ward_issuer::clients::{Client, ClientId, ClientSecret, GrantType};
use ward_issuer::grant::{IssuerSettings, TokenRequest, client_credentials, token_response};
use ward_issuer::keys::{KeyRing, RingKey};

fn bench(c: &mut Criterion) {
    let settings = IssuerSettings { issuer: "https://ward.local".into(), max_ttl: 3600 };
    let (secret, hash) = ClientSecret::generate().unwrap();
    let client = Client {
        id: ClientId::new("billing").unwrap(),
        secret_hash: Some(hash),
        public_jwks: None,
        grants: [GrantType::ClientCredentials].into(),
        scopes: ["orders:read".to_owned(), "orders:write".to_owned()].into(),
        audiences: vec!["orders".into()],
        token_ttl: 300,
        redirect_uris: Vec::new(),
        roles: Vec::new(),
    };
    let request = TokenRequest { scope: Some("orders:read".into()), audiences: Vec::new() };
    for (name, alg) in [("EdDSA", Algorithm::EdDsa), ("ES256", Algorithm::Es256)] {
        let ring = KeyRing::new(RingKey::generate(alg, 0, 0).unwrap());
        let mut n = 0u64;
        c.bench_function(&format!("issuer/client_credentials/{name}"), |b| {
            b.iter(|| {
                n += 1;
                client.authenticate(secret.expose()).unwrap();
                let jti = format!("{n:032x}");
                let minted = client_credentials(&settings, &client, &request, 1_800_000_000, &jti).unwrap();
                let token = ring.signing_key(1_800_000_000).unwrap().signer().sign(&minted.claims).unwrap();
                black_box(token_response(&token, &minted).to_string())
            });
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
