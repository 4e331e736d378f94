//! Tokens minted with the ring verify against the JWK set the ring
//! publishes (through Ward's own JWS verifier), across a rotation.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ward_authn::{Algorithm, JwkSet, verify_signature};
use ward_issuer::clients::{Client, ClientId, GrantType};
use ward_issuer::grant::{IssuerSettings, TokenRequest, client_credentials};
use ward_issuer::keys::{KeyRing, RingKey};

fn verifies(token: &str, jwks: &serde_json::Value) -> bool {
    let (signing_input, sig) = token.rsplit_once('.').unwrap();
    let header: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(signing_input.split('.').next().unwrap()).unwrap()).unwrap();
    let keys = JwkSet::parse(jwks.to_string().as_bytes()).unwrap().verifying_keys().unwrap();
    let Some((_, key)) = keys.iter().find(|(kid, _)| kid.as_deref() == header["kid"].as_str()) else { return false };
    let Ok(sig) = URL_SAFE_NO_PAD.decode(sig) else { return false };
    verify_signature(Algorithm::EdDsa, key, signing_input.as_bytes(), &sig)
}

#[test]
fn tokens_verify_against_the_published_set_through_a_rotation() {
    let settings = IssuerSettings { issuer: "https://ward.local".into(), max_ttl: 600 };
    let client = Client {
        id: ClientId::new("svc").unwrap(),
        secret_hash: None,
        public_jwks: None,
        grants: [GrantType::ClientCredentials].into(),
        scopes: ["read".to_owned()].into(),
        audiences: vec!["api".into()],
        token_ttl: 600,
        redirect_uris: Vec::new(),
        roles: Vec::new(),
    };
    let mut ring = KeyRing::new(RingKey::generate(Algorithm::EdDsa, 0, 0).unwrap());
    let mint = |ring: &KeyRing, now: u64| {
        let m = client_credentials(&settings, &client, &TokenRequest::default(), now, &format!("j{now}")).unwrap();
        ring.signing_key(now).unwrap().signer().sign(&m.claims).unwrap()
    };
    let old = mint(&ring, 100);
    ring.rotate(RingKey::generate(Algorithm::EdDsa, 200, 500).unwrap()).unwrap();
    let during_lead = mint(&ring, 300);
    let new = mint(&ring, 500);
    // At 500 every token verifies: the old key is still published.
    for t in [&old, &during_lead, &new] {
        assert!(verifies(t, &ring.jwks(500, 600)));
    }
    // Old-key tokens signed up to 500 expire by 1100; then the key goes.
    assert!(verifies(&during_lead, &ring.jwks(1099, 600)));
    assert!(!verifies(&during_lead, &ring.jwks(1100, 600)));
    assert!(verifies(&new, &ring.jwks(1100, 600)));
    // A forged signature never verifies (one character of the signature
    // changed, well inside it: the last one carries padding bits).
    let mut forged = new.clone().into_bytes();
    let at = forged.len() - 10;
    forged[at] = if forged[at] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    assert!(!verifies(&forged, &ring.jwks(600, 600)));
}
