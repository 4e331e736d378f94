//! Refresh tokens (RFC 6749 §6) with rotation and reuse detection (OAuth
//! 2.0 Security BCP, RFC 9700 §4.14.2).
//!
//! Every refresh returns a new refresh token and retires the old one. All
//! the tokens descending from one authorization form a *family*; presenting
//! a retired token means two parties hold the family (one of them stole it),
//! so the whole family is revoked — with the access tokens it produced — and
//! the user has to log in again.

use std::collections::BTreeSet;

use crate::clients::{Client, GrantType};
use crate::error::OAuthError;
use crate::grant::narrow_scope;

/// How long a family lives by default from the login that started it,
/// whatever the rotations (seconds): a day, then the user logs in again.
pub const FAMILY_TTL: u64 = 24 * 3600;

/// What a refresh token stands for.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RefreshGrant {
    /// The family (random id shared by every rotation of one authorization).
    pub family: String,
    /// The client it was issued to.
    pub client_id: String,
    /// The user.
    pub subject: String,
    /// Scopes of the original authorization (a refresh can only narrow).
    pub scopes: BTreeSet<String>,
    /// Audiences of the access tokens.
    pub audiences: Vec<String>,
    /// When the user logged in.
    pub auth_time: u64,
    /// When the family ends.
    pub family_expires: u64,
}

/// Check a refresh request for a token that was not used before (the store
/// decides that, atomically); returns the scopes of the new access token.
///
/// # Errors
/// [`OAuthError::InvalidGrant`] for another client's token or an expired
/// family; [`OAuthError::InvalidScope`] for a scope beyond the original grant.
pub fn check(
    grant: &RefreshGrant,
    client: &Client,
    scope: Option<&str>,
    now: u64,
) -> Result<BTreeSet<String>, OAuthError> {
    client.may_use(GrantType::RefreshToken)?;
    if grant.client_id != client.id.as_str() {
        return Err(OAuthError::InvalidGrant(format!("refresh token was issued to another client than {}", client.id)));
    }
    if now >= grant.family_expires {
        return Err(OAuthError::InvalidGrant("refresh token family expired".into()));
    }
    // RFC 6749 §6: the scope can only narrow what the user granted, and
    // what the client may still have (its scopes may have shrunk since).
    let mut allowed: BTreeSet<String> = grant.scopes.intersection(&client.scopes).cloned().collect();
    if grant.scopes.contains(crate::authorize::OPENID) {
        allowed.insert(crate::authorize::OPENID.to_owned());
    }
    narrow_scope(scope, &allowed, "the refresh request")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clients::ClientId;

    fn client(id: &str) -> Client {
        Client {
            id: ClientId::new(id).unwrap(),
            secret_hash: None,
            public_jwks: None,
            grants: [GrantType::AuthorizationCode, GrantType::RefreshToken].into(),
            scopes: ["a".to_owned(), "b".to_owned()].into(),
            audiences: vec![],
            token_ttl: 300,
            redirect_uris: vec![],
            roles: Vec::new(),
        }
    }

    fn grant() -> RefreshGrant {
        RefreshGrant {
            family: "f".into(),
            client_id: "web".into(),
            subject: "alice".into(),
            scopes: ["openid".to_owned(), "a".to_owned()].into(),
            audiences: vec!["web".into()],
            auth_time: 0,
            family_expires: FAMILY_TTL,
        }
    }

    #[test]
    fn refreshes_only_narrow_and_stay_with_their_client_and_family_lifetime() {
        let all = check(&grant(), &client("web"), None, 10).unwrap();
        assert_eq!(all, ["a".to_owned(), "openid".to_owned()].into());
        assert_eq!(check(&grant(), &client("web"), Some("a"), 10).unwrap(), ["a".to_owned()].into());
        let code = |r: Result<BTreeSet<String>, OAuthError>| r.unwrap_err().code();
        assert_eq!(code(check(&grant(), &client("web"), Some("a b"), 10)), "invalid_scope", "b was never granted");
        assert_eq!(code(check(&grant(), &client("other"), None, 10)), "invalid_grant");
        assert_eq!(code(check(&grant(), &client("web"), None, FAMILY_TTL)), "invalid_grant");
        let mut no_refresh = client("web");
        no_refresh.grants = [GrantType::AuthorizationCode].into();
        assert_eq!(code(check(&grant(), &no_refresh, None, 10)), "unauthorized_client");
        let mut shrunk = client("web");
        shrunk.scopes = ["b".to_owned()].into();
        assert_eq!(check(&grant(), &shrunk, None, 10).unwrap(), ["openid".to_owned()].into(), "a was taken away");
    }
}
