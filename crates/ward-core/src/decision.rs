//! Decisions and the reason codes that explain them.

use std::fmt;

/// Whether a request may proceed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    /// The request proceeds to the next stage.
    Allow,
    /// The request stops here and the client gets an error.
    Deny,
}

/// Why a stage decided what it did.
///
/// Reason codes are stable strings: they are written to the audit log and
/// operators alert on them, so a variant is never renamed. Clients never see
/// them; they get a generic error body instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ReasonCode {
    /// An ALLOW policy (or role binding) matched and no DENY policy did.
    AllowedByPolicy,
    /// No ALLOW policy applies to the route and `default_action = "allow"` was chosen.
    DefaultAllow,
    /// No credential was presented on a protected route.
    TokenMissing,
    /// The token is not a well-formed compact JWS (segments, base64url, JSON).
    TokenMalformed,
    /// The token is larger than the configured maximum.
    TokenTooLarge,
    /// The header names an algorithm that is not pinned for the key (includes `none`).
    TokenAlgorithmNotAllowed,
    /// The `kid` names no known key, or no key could be chosen.
    TokenUnknownKey,
    /// The signature does not verify with the selected key.
    TokenBadSignature,
    /// The header carries `crit` extensions Ward does not understand.
    TokenCriticalHeader,
    /// The header's `typ` is not a JWT type.
    TokenBadType,
    /// `exp` is in the past (beyond leeway).
    TokenExpired,
    /// `nbf` is in the future (beyond leeway).
    TokenNotYetValid,
    /// `iat` is in the future (beyond leeway).
    TokenIssuedInFuture,
    /// `iss` is not the provider's issuer, or no provider has that issuer.
    TokenBadIssuer,
    /// `aud` does not contain an accepted audience.
    TokenBadAudience,
    /// A required claim (`exp`, `sub`) is missing or has the wrong type.
    TokenMissingClaim,
    /// The token lives longer than the provider's maximum lifetime.
    TokenLifetimeTooLong,
    /// No route matches the request path: default deny.
    NoRoute,
    /// A DENY policy matched.
    DeniedByPolicy,
    /// ALLOW policies apply to the route but none matched.
    NoAllowPolicyMatched,
    /// No ALLOW policy applies to the route: default deny.
    DefaultDeny,
    /// A new policy bundle was loaded and is now enforced.
    PolicyApplied,
    /// A new policy bundle was refused; the previous one stays in force.
    PolicyRejected,
    /// A CUSTOM policy's external authorizer denied the request.
    ExternalAuthorizerDenied,
    /// A CUSTOM policy's external authorizer could not be asked (fail closed).
    ExternalAuthorizerUnavailable,
    /// The request path is not acceptable (encoded separators, escapes root, control bytes).
    PathRejected,
    /// The request is malformed (bad header values, bad request target).
    BadRequest,
    /// The request headers exceed the size or count limit.
    HeadersTooLarge,
    /// The request body exceeds the size limit.
    BodyTooLarge,
    /// The upstream could not be reached or broke the exchange.
    UpstreamUnavailable,
    /// The upstream did not answer in time.
    UpstreamTimeout,
    /// The audit log cannot take records, so nothing is served (fail closed).
    AuditUnavailable,
    /// A key or certificate was loaded at startup.
    KeyLoaded,
    /// A key or certificate was replaced while running.
    KeyRotated,
    /// A replacement key or certificate was refused; the previous one stays.
    KeyRejected,
    /// The gateway started serving.
    GatewayStarted,
    /// The gateway stopped serving.
    GatewayStopped,
    /// A request to the admin API.
    AdminRequest,
    /// The token service issued an access token.
    TokenIssued,
    /// A client failed to authenticate to the token service.
    ClientAuthenticationFailed,
    /// The token service refused a request (bad grant, scope, audience, parameters).
    TokenRequestRefused,
    /// The token service recorded a revocation.
    RevocationRecorded,
    /// The presented token was revoked.
    TokenRevoked,
    /// A user logged in on the token service's login page.
    LoginSucceeded,
    /// A login failed (unknown user or wrong password: one reason, so the
    /// log does not tell which names exist).
    LoginFailed,
    /// An authorization request was refused (bad client, redirect URI, PKCE, scope…).
    AuthorizationRefused,
    /// A redeemed authorization code was presented again: the tokens it
    /// produced are revoked.
    AuthorizationCodeReused,
    /// A rotated refresh token was presented again: its family is revoked.
    RefreshTokenReused,
    /// A browser without a session was sent to the OpenID provider to log in.
    LoginRequired,
    /// A browser session was ended (logout).
    SessionEnded,
    /// The CA issued a certificate (an X.509-SVID).
    CertificateIssued,
    /// A workload's request for an SVID was refused (bad or used join token, bad CSR, denied ID).
    JoinRefused,
    /// A certificate-bound token (RFC 8705 `cnf.x5t#S256`) arrived on a
    /// connection without that client certificate.
    TokenBindingMismatch,
    /// A STRICT route was reached without a verified client SVID.
    PeerCertificateRequired,
    /// A rate limit refused the request (429).
    RateLimited,
    /// The authenticated principal is blocked (by a detection or an operator).
    PrincipalBlocked,
    /// The client address is blocked (checked per request too, for
    /// keep-alive connections and clients behind trusted proxies).
    AddressBlocked,
    /// A detector noticed an attack pattern (an alert; a block, if any, is its own record).
    ThreatDetected,
    /// An address, range or principal was blocked.
    BlockAdded,
    /// A block was lifted before its time (by an operator).
    BlockRemoved,
    /// A block reached its end.
    BlockExpired,
    /// The token service showed a login page (a login ticket was made).
    LoginPageShown,
    /// A client certificate that was denied (by serial or SPIFFE ID) or has
    /// expired was refused on a connection that had already been accepted.
    CertificateDenied,
    /// The request target (path and query) is longer than `max_uri_bytes`.
    UriTooLong,
    /// A connection was closed at accept: its address held its share of
    /// connections, or the listener its limit.
    ConnectionLimited,
    /// Plain HTTP arrived on a TLS listener (answered 400).
    TlsRequired,
    /// The TLS handshake failed or did not finish within its deadline.
    TlsHandshakeFailed,
    /// A connection sent no request (or no complete request head) within
    /// `header_timeout`.
    RequestTimeout,
    /// The client's request body was malformed (bad chunked framing, an
    /// unsupported transfer coding).
    BadRequestBody,
    /// The witness cosigned a log's checkpoint (consistent with the last it cosigned).
    CheckpointCosigned,
    /// The witness refused a checkpoint: unknown log, untrusted signature,
    /// wrong old size, another root at the same size, or a consistency
    /// proof that does not verify.
    CheckpointRefused,
}

impl ReasonCode {
    /// The stable string written to the audit log.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::AllowedByPolicy => "allowed_by_policy",
            Self::DefaultAllow => "default_allow",
            Self::TokenMissing => "token_missing",
            Self::TokenMalformed => "token_malformed",
            Self::TokenTooLarge => "token_too_large",
            Self::TokenAlgorithmNotAllowed => "token_algorithm_not_allowed",
            Self::TokenUnknownKey => "token_unknown_key",
            Self::TokenBadSignature => "token_bad_signature",
            Self::TokenCriticalHeader => "token_critical_header",
            Self::TokenBadType => "token_bad_type",
            Self::TokenExpired => "token_expired",
            Self::TokenNotYetValid => "token_not_yet_valid",
            Self::TokenIssuedInFuture => "token_issued_in_future",
            Self::TokenBadIssuer => "token_bad_issuer",
            Self::TokenBadAudience => "token_bad_audience",
            Self::TokenMissingClaim => "token_missing_claim",
            Self::TokenLifetimeTooLong => "token_lifetime_too_long",
            Self::NoRoute => "no_route",
            Self::DeniedByPolicy => "denied_by_policy",
            Self::NoAllowPolicyMatched => "no_allow_policy_matched",
            Self::DefaultDeny => "default_deny",
            Self::PolicyApplied => "policy_applied",
            Self::PolicyRejected => "policy_rejected",
            Self::ExternalAuthorizerDenied => "external_authorizer_denied",
            Self::ExternalAuthorizerUnavailable => "external_authorizer_unavailable",
            Self::PathRejected => "path_rejected",
            Self::BadRequest => "bad_request",
            Self::HeadersTooLarge => "headers_too_large",
            Self::BodyTooLarge => "body_too_large",
            Self::UpstreamUnavailable => "upstream_unavailable",
            Self::UpstreamTimeout => "upstream_timeout",
            Self::AuditUnavailable => "audit_unavailable",
            Self::KeyLoaded => "key_loaded",
            Self::KeyRotated => "key_rotated",
            Self::KeyRejected => "key_rejected",
            Self::GatewayStarted => "gateway_started",
            Self::GatewayStopped => "gateway_stopped",
            Self::AdminRequest => "admin_request",
            Self::TokenIssued => "token_issued",
            Self::ClientAuthenticationFailed => "client_authentication_failed",
            Self::TokenRequestRefused => "token_request_refused",
            Self::RevocationRecorded => "revocation_recorded",
            Self::TokenRevoked => "token_revoked",
            Self::LoginSucceeded => "login_succeeded",
            Self::LoginFailed => "login_failed",
            Self::AuthorizationRefused => "authorization_refused",
            Self::AuthorizationCodeReused => "authorization_code_reused",
            Self::RefreshTokenReused => "refresh_token_reused",
            Self::LoginRequired => "login_required",
            Self::SessionEnded => "session_ended",
            Self::CertificateIssued => "certificate_issued",
            Self::JoinRefused => "join_refused",
            Self::TokenBindingMismatch => "token_binding_mismatch",
            Self::PeerCertificateRequired => "peer_certificate_required",
            Self::RateLimited => "rate_limited",
            Self::PrincipalBlocked => "principal_blocked",
            Self::AddressBlocked => "address_blocked",
            Self::ThreatDetected => "threat_detected",
            Self::BlockAdded => "block_added",
            Self::BlockRemoved => "block_removed",
            Self::BlockExpired => "block_expired",
            Self::LoginPageShown => "login_page_shown",
            Self::CertificateDenied => "certificate_denied",
            Self::UriTooLong => "uri_too_long",
            Self::ConnectionLimited => "connection_limited",
            Self::TlsRequired => "tls_required",
            Self::TlsHandshakeFailed => "tls_handshake_failed",
            Self::RequestTimeout => "request_timeout",
            Self::BadRequestBody => "bad_request_body",
            Self::CheckpointCosigned => "checkpoint_cosigned",
            Self::CheckpointRefused => "checkpoint_refused",
        }
    }

    /// Every reason code, in declaration order (`ALL[r.index()] == r`).
    pub const ALL: [Self; 71] = [
        Self::AllowedByPolicy,
        Self::DefaultAllow,
        Self::TokenMissing,
        Self::TokenMalformed,
        Self::TokenTooLarge,
        Self::TokenAlgorithmNotAllowed,
        Self::TokenUnknownKey,
        Self::TokenBadSignature,
        Self::TokenCriticalHeader,
        Self::TokenBadType,
        Self::TokenExpired,
        Self::TokenNotYetValid,
        Self::TokenIssuedInFuture,
        Self::TokenBadIssuer,
        Self::TokenBadAudience,
        Self::TokenMissingClaim,
        Self::TokenLifetimeTooLong,
        Self::NoRoute,
        Self::DeniedByPolicy,
        Self::NoAllowPolicyMatched,
        Self::DefaultDeny,
        Self::PolicyApplied,
        Self::PolicyRejected,
        Self::ExternalAuthorizerDenied,
        Self::ExternalAuthorizerUnavailable,
        Self::PathRejected,
        Self::BadRequest,
        Self::HeadersTooLarge,
        Self::BodyTooLarge,
        Self::UpstreamUnavailable,
        Self::UpstreamTimeout,
        Self::AuditUnavailable,
        Self::KeyLoaded,
        Self::KeyRotated,
        Self::KeyRejected,
        Self::GatewayStarted,
        Self::GatewayStopped,
        Self::AdminRequest,
        Self::TokenIssued,
        Self::ClientAuthenticationFailed,
        Self::TokenRequestRefused,
        Self::RevocationRecorded,
        Self::TokenRevoked,
        Self::LoginSucceeded,
        Self::LoginFailed,
        Self::AuthorizationRefused,
        Self::AuthorizationCodeReused,
        Self::RefreshTokenReused,
        Self::LoginRequired,
        Self::SessionEnded,
        Self::CertificateIssued,
        Self::JoinRefused,
        Self::TokenBindingMismatch,
        Self::PeerCertificateRequired,
        Self::RateLimited,
        Self::PrincipalBlocked,
        Self::AddressBlocked,
        Self::ThreatDetected,
        Self::BlockAdded,
        Self::BlockRemoved,
        Self::BlockExpired,
        Self::LoginPageShown,
        Self::CertificateDenied,
        Self::UriTooLong,
        Self::ConnectionLimited,
        Self::TlsRequired,
        Self::TlsHandshakeFailed,
        Self::RequestTimeout,
        Self::BadRequestBody,
        Self::CheckpointCosigned,
        Self::CheckpointRefused,
    ];

    /// The code's position in [`Self::ALL`] (below 128: detectors keep
    /// sets of reasons as one bit mask).
    #[must_use]
    pub const fn index(self) -> u8 {
        self as u8
    }

    /// The code named `name` (its [`Self::as_str`] form).
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|r| r.as_str() == name)
    }

    /// Whether this reason is an authentication failure (answered with 401).
    #[must_use]
    pub const fn is_authentication_failure(self) -> bool {
        matches!(
            self,
            Self::TokenMissing
                | Self::TokenMalformed
                | Self::TokenTooLarge
                | Self::TokenAlgorithmNotAllowed
                | Self::TokenUnknownKey
                | Self::TokenBadSignature
                | Self::TokenCriticalHeader
                | Self::TokenBadType
                | Self::TokenExpired
                | Self::TokenNotYetValid
                | Self::TokenIssuedInFuture
                | Self::TokenBadIssuer
                | Self::TokenBadAudience
                | Self::TokenMissingClaim
                | Self::TokenLifetimeTooLong
                | Self::TokenRevoked
                | Self::LoginFailed
                | Self::TokenBindingMismatch
                | Self::PeerCertificateRequired
                | Self::CertificateDenied
        )
    }
}

impl fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for ReasonCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// The outcome of one pipeline stage: an effect and the reason for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Allow or deny.
    pub effect: Effect,
    /// Why.
    pub reason: ReasonCode,
}

impl Decision {
    /// An allowing decision.
    #[must_use]
    pub const fn allow(reason: ReasonCode) -> Self {
        Self { effect: Effect::Allow, reason }
    }

    /// A denying decision.
    #[must_use]
    pub const fn deny(reason: ReasonCode) -> Self {
        Self { effect: Effect::Deny, reason }
    }

    /// Whether the request may proceed.
    #[must_use]
    pub const fn is_allow(&self) -> bool {
        matches!(self.effect, Effect::Allow)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_codes_serialize_as_stable_strings() {
        let json = serde_json::to_string(&ReasonCode::TokenExpired).unwrap_or_default();
        assert_eq!(json, "\"token_expired\"");
        assert!(ReasonCode::TokenBadSignature.is_authentication_failure());
        assert!(!ReasonCode::DefaultDeny.is_authentication_failure());
    }

    #[test]
    fn every_code_is_listed_once_and_found_by_name() {
        assert!(ReasonCode::ALL.len() < 128);
        for (i, r) in ReasonCode::ALL.iter().enumerate() {
            assert_eq!(usize::from(r.index()), i, "{r}");
            assert_eq!(ReasonCode::from_name(r.as_str()), Some(*r));
        }
        assert_eq!(ReasonCode::from_name("block_expired"), Some(ReasonCode::BlockExpired));
        assert_eq!(ReasonCode::from_name("nope"), None);
    }
}
