//! OAuth2 errors (RFC 6749 §4.1.2.1 and §5.2, RFC 8707 §2, RFC 8693 §2.2.2,
//! OIDC Core §3.1.2.6).
//!
//! The `error` code is what a client may see; `detail` goes to the audit log
//! only (it may name the client's mistake more precisely than a client
//! should learn, e.g. which of its scopes was refused).

use serde_json::{Value, json};

/// Why a token request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OAuthError {
    /// Malformed request: a missing or repeated parameter, a bad value.
    #[error("invalid_request: {0}")]
    InvalidRequest(String),
    /// Client authentication failed (unknown client, wrong secret, bad assertion).
    #[error("invalid_client: {0}")]
    InvalidClient(String),
    /// The grant (code, refresh token, subject token) is invalid, expired, revoked or used.
    #[error("invalid_grant: {0}")]
    InvalidGrant(String),
    /// The client may not use this grant type.
    #[error("unauthorized_client: {0}")]
    UnauthorizedClient(String),
    /// The grant type is not supported at all.
    #[error("unsupported_grant_type: {0}")]
    UnsupportedGrantType(String),
    /// A requested scope exceeds what the client (or the original grant) allows.
    #[error("invalid_scope: {0}")]
    InvalidScope(String),
    /// A requested audience/resource is not one the client may obtain tokens for.
    #[error("invalid_target: {0}")]
    InvalidTarget(String),
    /// The authorization request asks for a `response_type` other than `code`.
    #[error("unsupported_response_type: {0}")]
    UnsupportedResponseType(String),
    /// The user (or the login page) refused the authorization.
    #[error("access_denied: {0}")]
    AccessDenied(String),
    /// `prompt=none`, but the user would have to log in (OIDC Core §3.1.2.6).
    #[error("login_required: {0}")]
    LoginRequired(String),
    /// Ward cannot serve the request right now (store, randomness, signing); answered 503.
    #[error("temporarily_unavailable: {0}")]
    TemporarilyUnavailable(String),
}

impl OAuthError {
    /// The RFC error code.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_) => "invalid_request",
            Self::InvalidClient(_) => "invalid_client",
            Self::InvalidGrant(_) => "invalid_grant",
            Self::UnauthorizedClient(_) => "unauthorized_client",
            Self::UnsupportedGrantType(_) => "unsupported_grant_type",
            Self::InvalidScope(_) => "invalid_scope",
            Self::InvalidTarget(_) => "invalid_target",
            Self::UnsupportedResponseType(_) => "unsupported_response_type",
            Self::AccessDenied(_) => "access_denied",
            Self::LoginRequired(_) => "login_required",
            Self::TemporarilyUnavailable(_) => "temporarily_unavailable",
        }
    }

    /// The HTTP status: 401 for client authentication failures (RFC 6749
    /// §5.2, with `WWW-Authenticate` when the client used HTTP auth), 503
    /// when Ward cannot serve, 400 for everything else.
    #[must_use]
    pub fn status(&self) -> u16 {
        match self {
            Self::InvalidClient(_) => 401,
            Self::TemporarilyUnavailable(_) => 503,
            _ => 400,
        }
    }

    /// What the client is told: the code, and a request id to quote.
    /// The detail stays in the audit log.
    #[must_use]
    pub fn body(&self, request_id: &str) -> Value {
        json!({ "error": self.code(), "request_id": request_id })
    }

    /// The reason recorded in the audit log.
    #[must_use]
    pub fn detail(&self) -> &str {
        match self {
            Self::InvalidRequest(d)
            | Self::InvalidClient(d)
            | Self::InvalidGrant(d)
            | Self::UnauthorizedClient(d)
            | Self::UnsupportedGrantType(d)
            | Self::InvalidScope(d)
            | Self::InvalidTarget(d)
            | Self::UnsupportedResponseType(d)
            | Self::AccessDenied(d)
            | Self::LoginRequired(d)
            | Self::TemporarilyUnavailable(d) => d,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_statuses_and_bodies() {
        let e = OAuthError::InvalidClient("secret mismatch for client x".into());
        assert_eq!((e.code(), e.status()), ("invalid_client", 401));
        assert_eq!(e.body("r1"), json!({"error": "invalid_client", "request_id": "r1"}));
        assert!(!e.body("r1").to_string().contains("mismatch"), "the detail is not for the client");
        assert_eq!(OAuthError::InvalidScope("admin".into()).status(), 400);
        assert_eq!(OAuthError::InvalidTarget("x".into()).code(), "invalid_target");
    }
}
