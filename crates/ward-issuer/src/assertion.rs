//! `private_key_jwt` client authentication (RFC 7523 §2.2, OIDC Core §9).
//!
//! The client signs a short-lived JWT with its own private key; Ward holds
//! only the public JWK set registered for the client. The assertion must:
//! carry `iss` = `sub` = the client id; name the token endpoint (or the
//! issuer) in `aud`; expire soon (`exp`, at most `max_lifetime` ahead); not
//! be used before `nbf`; and have a `jti` never seen before while it is
//! valid (the caller keeps that replay set). Only asymmetric algorithms are
//! accepted, and the key's own algorithm decides — never the header's.

use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;
use ward_authn::{Algorithm, JwkSet, verify_signature};

use crate::clients::Client;
use crate::error::OAuthError;

/// The `client_assertion_type` of RFC 7523.
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// A verified assertion: its id and expiry, for the replay set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// `jti`.
    pub jti: String,
    /// `exp`.
    pub exp: u64,
}

fn bad(client: &Client, why: &str) -> OAuthError {
    OAuthError::InvalidClient(format!("client {}: assertion {why}", client.id))
}

/// Verify `assertion` for `client`. `audiences` are the values `aud` may
/// hold (the token endpoint URL, the issuer).
///
/// # Errors
/// [`OAuthError::InvalidClient`] for anything wrong (the client learns no more).
pub fn verify(
    client: &Client,
    assertion: &str,
    audiences: &[&str],
    now: u64,
    max_lifetime: u64,
) -> Result<Verified, OAuthError> {
    let Some(jwks) = &client.public_jwks else { return Err(bad(client, "used by a client without registered keys")) };
    let (signing_input, sig) = assertion.rsplit_once('.').ok_or_else(|| bad(client, "is not a JWS"))?;
    let (header, payload) = signing_input.split_once('.').ok_or_else(|| bad(client, "is not a JWS"))?;
    let header: Value = URL_SAFE_NO_PAD
        .decode(header)
        .ok()
        .and_then(|h| serde_json::from_slice(&h).ok())
        .ok_or_else(|| bad(client, "header is malformed"))?;
    if header.get("crit").is_some() {
        return Err(bad(client, "has a crit header"));
    }
    let alg = header["alg"]
        .as_str()
        .and_then(|a| Algorithm::from_str(a).ok())
        .ok_or_else(|| bad(client, "alg is unsupported"))?;
    if !alg.is_asymmetric() {
        return Err(bad(client, "uses a shared-secret algorithm"));
    }
    let keys =
        JwkSet::parse(jwks.as_bytes()).and_then(|s| s.verifying_keys()).map_err(|_| bad(client, "keys do not load"))?;
    let kid = header["kid"].as_str();
    let candidates: Vec<_> = keys.iter().filter(|(k, _)| kid.is_none() || k.as_deref() == kid).collect();
    let [(_, key)] = candidates.as_slice() else { return Err(bad(client, "names no single registered key")) };
    let signature = URL_SAFE_NO_PAD.decode(sig).map_err(|_| bad(client, "signature is malformed"))?;
    if key.algorithm() != alg || !verify_signature(alg, key, signing_input.as_bytes(), &signature) {
        return Err(bad(client, "signature does not verify"));
    }
    let claims: Value = URL_SAFE_NO_PAD
        .decode(payload)
        .ok()
        .and_then(|p| serde_json::from_slice(&p).ok())
        .ok_or_else(|| bad(client, "claims are malformed"))?;
    let id = client.id.as_str();
    if claims["iss"].as_str() != Some(id) || claims["sub"].as_str() != Some(id) {
        return Err(bad(client, "iss and sub must both be the client id"));
    }
    let aud_ok = match &claims["aud"] {
        Value::String(a) => audiences.contains(&a.as_str()),
        Value::Array(list) => list.iter().any(|a| a.as_str().is_some_and(|a| audiences.contains(&a))),
        _ => false,
    };
    if !aud_ok {
        return Err(bad(client, "is not addressed to this token endpoint"));
    }
    let exp = claims["exp"].as_u64().ok_or_else(|| bad(client, "has no exp"))?;
    if exp <= now {
        return Err(bad(client, "expired"));
    }
    if exp > now + max_lifetime {
        return Err(bad(client, "lives too long"));
    }
    if claims.get("nbf").is_some_and(|n| n.as_u64().is_none_or(|n| n > now + 60)) {
        return Err(bad(client, "is not valid yet"));
    }
    let jti =
        claims["jti"].as_str().filter(|j| !j.is_empty() && j.len() <= 256).ok_or_else(|| bad(client, "has no jti"))?;
    Ok(Verified { jti: jti.to_owned(), exp })
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use ward_authn::TokenSigner;

    use super::*;
    use crate::clients::{ClientId, GrantType};

    const AUD: &str = "https://ward.local/oauth2/token";

    fn setup() -> (Client, TokenSigner) {
        let key =
            TokenSigner::from_pkcs8(Algorithm::Es256, &TokenSigner::generate_pkcs8(Algorithm::Es256).unwrap()).unwrap();
        let client = Client {
            id: ClientId::new("svc").unwrap(),
            secret_hash: None,
            public_jwks: Some(key.public_jwk_set().to_string()),
            grants: [GrantType::ClientCredentials].into(),
            scopes: Default::default(),
            audiences: vec!["api".into()],
            token_ttl: 60,
            redirect_uris: Vec::new(),
            roles: Vec::new(),
        };
        (client, key)
    }

    fn assertion(key: &TokenSigner, claims: Value) -> String {
        key.sign(claims.as_object().unwrap()).unwrap()
    }

    #[test]
    fn a_fresh_assertion_by_the_clients_key_authenticates() {
        let (client, key) = setup();
        let a = assertion(&key, json!({"iss": "svc", "sub": "svc", "aud": AUD, "exp": 1100, "jti": "a1"}));
        assert_eq!(verify(&client, &a, &[AUD], 1000, 300), Ok(Verified { jti: "a1".into(), exp: 1100 }));
    }

    #[test]
    fn every_flaw_is_invalid_client() {
        let (client, key) = setup();
        let (_, other) = setup();
        let base = json!({"iss": "svc", "sub": "svc", "aud": AUD, "exp": 1100, "jti": "a1"});
        let with = |k: &str, v: Value| {
            let mut c = base.clone();
            c[k] = v;
            c
        };
        let cases = [
            ("other key", assertion(&other, base.clone())),
            ("wrong iss", assertion(&key, with("iss", json!("x")))),
            ("wrong sub", assertion(&key, with("sub", json!("x")))),
            ("wrong aud", assertion(&key, with("aud", json!("https://evil/token")))),
            ("expired", assertion(&key, with("exp", json!(1000)))),
            ("too long", assertion(&key, with("exp", json!(1000 + 301)))),
            ("no jti", assertion(&key, with("jti", json!("")))),
            ("future nbf", assertion(&key, with("nbf", json!(2000)))),
            ("garbage", "a.b.c".to_owned()),
        ];
        for (name, a) in cases {
            assert_eq!(verify(&client, &a, &[AUD], 1000, 300).map_err(|e| e.code()), Err("invalid_client"), "{name}");
        }
        // A tampered payload fails the signature.
        let good = assertion(&key, base.clone());
        let mut parts: Vec<&str> = good.split('.').collect();
        let forged = URL_SAFE_NO_PAD.encode(with("exp", json!(1200)).to_string());
        parts[1] = &forged;
        assert!(verify(&client, &parts.join("."), &[AUD], 1000, 300).is_err());
        // A secret-only client cannot use assertions.
        let mut secret_only = client.clone();
        secret_only.public_jwks = None;
        assert!(verify(&secret_only, &good, &[AUD], 1000, 300).is_err());
    }
}
