//! OpenID Connect discovery (`/.well-known/openid-configuration`) and OAuth
//! 2.0 authorization server metadata (RFC 8414,
//! `/.well-known/oauth-authorization-server`): one document serves both.

use serde_json::{Value, json};

/// The discovery document for `issuer` (an https URL without a trailing
/// slash); endpoints live under it. `scopes` are the scopes clients are
/// registered for (`scopes_supported` lists them, with `openid`). Access
/// tokens are signed with `access_alg`; ID tokens always with RS256, which
/// OpenID Connect Discovery §3 requires every provider to offer.
#[must_use]
pub fn document(issuer: &str, access_alg: &str, scopes: &[String]) -> Value {
    let mut scopes_supported: Vec<&str> = scopes.iter().map(String::as_str).collect();
    scopes_supported.push(crate::authorize::OPENID);
    scopes_supported.sort_unstable();
    scopes_supported.dedup();
    let at = |path: &str| format!("{issuer}{path}");
    json!({
        "issuer": issuer,
        "jwks_uri": at("/.well-known/jwks.json"),
        "token_endpoint": at("/oauth2/token"),
        "authorization_endpoint": at("/oauth2/authorize"),
        "revocation_endpoint": at("/oauth2/revoke"),
        "introspection_endpoint": at("/oauth2/introspect"),
        "grant_types_supported": [
            "client_credentials", "authorization_code", "refresh_token",
            "urn:ietf:params:oauth:grant-type:token-exchange"
        ],
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "authorization_response_iss_parameter_supported": true,
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "azp", "jti"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"],
        "token_endpoint_auth_signing_alg_values_supported": ["ES256", "EdDSA", "RS256", "PS256"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "access_token_signing_alg_values_supported": [access_alg],
        "subject_types_supported": ["public"],
        "scopes_supported": scopes_supported,
        "prompt_values_supported": ["login"],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_hang_off_the_issuer_and_only_s256_is_offered() {
        let d = document("https://ward.local:9443", "EdDSA", &["orders:read".to_owned(), "openid".to_owned()]);
        assert_eq!(d["id_token_signing_alg_values_supported"], json!(["RS256"]), "OIDC Discovery §3");
        assert_eq!(d["scopes_supported"], json!(["openid", "orders:read"]));
        assert!(d["token_endpoint_auth_methods_supported"].as_array().unwrap().contains(&json!("none")));
        assert_eq!(d["issuer"], "https://ward.local:9443");
        assert_eq!(d["jwks_uri"], "https://ward.local:9443/.well-known/jwks.json");
        assert_eq!(d["code_challenge_methods_supported"], json!(["S256"]));
        assert!(!d["grant_types_supported"].to_string().contains("password"));
        assert!(!d["grant_types_supported"].to_string().contains("implicit"));
    }
}
