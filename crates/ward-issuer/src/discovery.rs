//! OpenID Connect discovery (`/.well-known/openid-configuration`).

use serde_json::{Value, json};

/// The discovery document for `issuer` (an https URL without a trailing
/// slash); endpoints live under it.
#[must_use]
pub fn document(issuer: &str, signing_algs: &[&str]) -> Value {
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
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ["ES256", "EdDSA", "RS256", "PS256"],
        "id_token_signing_alg_values_supported": signing_algs,
        "subject_types_supported": ["public"],
        "scopes_supported": ["openid"],
        "prompt_values_supported": ["login"],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_hang_off_the_issuer_and_only_s256_is_offered() {
        let d = document("https://ward.local:9443", &["EdDSA"]);
        assert_eq!(d["issuer"], "https://ward.local:9443");
        assert_eq!(d["jwks_uri"], "https://ward.local:9443/.well-known/jwks.json");
        assert_eq!(d["code_challenge_methods_supported"], json!(["S256"]));
        assert!(!d["grant_types_supported"].to_string().contains("password"));
        assert!(!d["grant_types_supported"].to_string().contains("implicit"));
    }
}
