//! The grants that act for a user: `authorization_code` (with PKCE, ID
//! token, first refresh token) and `refresh_token` (rotation, reuse
//! detection). They write to the store, so they run off the async runtime.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use ward_core::ReasonCode;
use ward_issuer::OAuthError;
use ward_issuer::authorize::{self, OPENID};
use ward_issuer::clients::{Client, GrantType};
use ward_issuer::grant::{self, Access, Minted};
use ward_issuer::opaque;
use ward_issuer::refresh::{self, RefreshGrant};

use crate::ControlPlane;
use crate::flows::{CodeTake, Redeemed};
use crate::store::{NewRefresh, RefreshUse};

/// Tokens issued for a user.
#[derive(Debug)]
pub(crate) struct Issued {
    /// The token response body.
    pub body: Value,
    /// The user (for the audit record's principal HMAC).
    pub subject: String,
}

/// A refusal and the reason it is audited with.
#[derive(Debug)]
pub(crate) struct Refusal {
    pub error: OAuthError,
    pub reason: ReasonCode,
    /// The user the grant was about, when known.
    pub subject: Option<String>,
}

impl From<OAuthError> for Refusal {
    fn from(error: OAuthError) -> Self {
        Self { error, reason: ReasonCode::TokenRequestRefused, subject: None }
    }
}

fn unavailable(what: &str) -> Refusal {
    // Not an OAuth error code a client can act on; the shell answers 503
    // for `temporarily_unavailable` (RFC 6749 §4.1.2.1).
    Refusal::from(OAuthError::TemporarilyUnavailable(what.to_owned()))
}

/// A new token id.
pub(crate) fn new_jti() -> Option<String> {
    ward_crypto::random_bytes::<16>().ok().map(|b| URL_SAFE_NO_PAD.encode(b))
}

/// An access token (and an ID token when `openid` was granted) for `subject`.
struct UserTokens {
    minted: Minted,
    access_token: String,
    id_token: Option<String>,
}

fn user_tokens(
    cp: &ControlPlane,
    access: &Access<'_>,
    auth_time: u64,
    nonce: Option<&str>,
    now: u64,
) -> Result<UserTokens, Refusal> {
    let Access { subject, client, .. } = *access;
    let jti = new_jti().ok_or_else(|| unavailable("no randomness"))?;
    let ttl = client.token_ttl.min(cp.issuer.max_ttl).max(1);
    let mut minted = access.mint(&cp.issuer, now, now + ttl, &jti);
    minted.claims.insert("auth_time".into(), json!(auth_time));
    // The user's roles as they are now: a role taken away is gone at the next refresh.
    let roles = cp.user_roles(subject);
    minted.set_roles(&roles);
    let access_token = cp.sign_access(&minted.claims, now).ok_or_else(|| unavailable("signing failed"))?;
    let id_token = if access.scopes.contains(OPENID) {
        let id_jti = new_jti().ok_or_else(|| unavailable("no randomness"))?;
        let mut claims = authorize::id_token_claims(&cp.issuer, client, subject, auth_time, nonce, now, &id_jti);
        // OIDC Core §3.1.3.6: the left half of the access token's SHA-256
        // (RS256). It also marks the token as an ID token for every gateway,
        // which refuses one as an access token whatever its audience.
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, access_token.as_bytes());
        let half = digest.as_ref().get(..16).unwrap_or_default();
        claims.insert("at_hash".into(), json!(URL_SAFE_NO_PAD.encode(half)));
        if !roles.is_empty() {
            claims.insert("roles".into(), json!(roles));
        }
        Some(cp.sign_id_token(&claims, now).ok_or_else(|| unavailable("signing failed"))?)
    } else {
        None
    };
    Ok(UserTokens { minted, access_token, id_token })
}

fn body(tokens: &UserTokens, refresh_token: Option<&str>) -> Value {
    let mut b = grant::token_response(&tokens.access_token, &tokens.minted);
    if let Some(id) = &tokens.id_token {
        b["id_token"] = json!(id);
    }
    if let Some(r) = refresh_token {
        b["refresh_token"] = json!(r);
    }
    b
}

fn access_of(tokens: &UserTokens) -> (String, u64) {
    let m = &tokens.minted.claims;
    (
        m.get("jti").and_then(Value::as_str).unwrap_or_default().to_owned(),
        m.get("exp").and_then(Value::as_u64).unwrap_or_default(),
    )
}

/// Revoke what a reused code produced.
fn revoke_redeemed(cp: &ControlPlane, r: &Redeemed, now: u64) {
    let _ = cp.revoke_all(std::slice::from_ref(&r.access));
    if let Some(family) = &r.family {
        match cp.store.revoke_family(family, now) {
            Ok(access) => {
                let _ = cp.revoke_all(&access);
            }
            Err(e) => tracing::error!(error = %e, "could not revoke the refresh family of a reused code"),
        }
    }
}

/// `grant_type=authorization_code` (RFC 6749 §4.1.3).
pub(crate) fn authorization_code(
    cp: &ControlPlane,
    client: &Client,
    params: &HashMap<String, String>,
    now: u64,
) -> Result<Issued, Refusal> {
    client.may_use(GrantType::AuthorizationCode)?;
    let code = params.get("code").ok_or_else(|| OAuthError::InvalidRequest("code missing".into()))?;
    let hash = opaque::hash(code);
    let grant = match cp.flows.take_code(&hash, now) {
        CodeTake::Unknown => {
            return Err(OAuthError::InvalidGrant("unknown or expired authorization code".into()).into());
        }
        CodeTake::Reused(produced) => {
            // RFC 6749 §4.1.2: revoke what the code produced; someone else holds it.
            if let Some(r) = &produced {
                revoke_redeemed(cp, r, now);
            }
            return Err(Refusal {
                error: OAuthError::InvalidGrant("authorization code reused: the tokens it produced are revoked".into()),
                reason: ReasonCode::AuthorizationCodeReused,
                subject: None,
            });
        }
        CodeTake::Fresh(g) => g,
    };
    let redirect_uri = params.get("redirect_uri").map(String::as_str);
    let verifier = params.get("code_verifier").map(String::as_str);
    if let Err(e) = authorize::redeem(&grant, client, redirect_uri, verifier, now) {
        // A failed attempt burns the code: whoever holds a stolen code does
        // not get to try verifiers.
        cp.flows.forget_code(&hash);
        return Err(Refusal { error: e, reason: ReasonCode::TokenRequestRefused, subject: Some(grant.subject) });
    }
    // A code from a login that a cut-off has since ended (a password change,
    // `ward token revoke --user`) buys nothing, however long it was held.
    if cp.login_ended(&grant.subject, client.id.as_str(), grant.auth_time) {
        return Err(Refusal {
            error: OAuthError::InvalidGrant("the login behind this code was ended".into()),
            reason: ReasonCode::TokenRequestRefused,
            subject: Some(grant.subject),
        });
    }
    let r = &grant.request;
    let access = Access { subject: &grant.subject, client, audiences: &r.audiences, scopes: &r.scopes };
    let tokens = user_tokens(cp, &access, grant.auth_time, r.nonce.as_deref(), now)?;
    let mut refresh_token = None;
    let mut family = None;
    if client.may_use(GrantType::RefreshToken).is_ok() {
        let (token, token_hash) = opaque::generate(opaque::REFRESH_PREFIX).map_err(|_| unavailable("no randomness"))?;
        let fid = new_jti().ok_or_else(|| unavailable("no randomness"))?;
        let new = NewRefresh {
            hash: token_hash,
            grant: RefreshGrant {
                family: fid.clone(),
                client_id: client.id.as_str().to_owned(),
                subject: grant.subject.clone(),
                scopes: r.scopes.clone(),
                audiences: r.audiences.clone(),
                auth_time: grant.auth_time,
                family_expires: now + cp.settings.refresh_ttl,
            },
            access: access_of(&tokens),
        };
        cp.store.start_family(&new).map_err(|_| unavailable("store"))?;
        // A cut-off made while this redemption ran found no family to end:
        // look again now that it exists (a cut-off's in-memory entry is set
        // before it ends the stored families, so one of the two sees it).
        if cp.login_ended(&grant.subject, client.id.as_str(), grant.auth_time) {
            if let Ok(access) = cp.store.revoke_family(&fid, now) {
                let _ = cp.revoke_all(&access);
            }
            return Err(Refusal {
                error: OAuthError::InvalidGrant("the login behind this code was ended".into()),
                reason: ReasonCode::TokenRequestRefused,
                subject: Some(grant.subject),
            });
        }
        refresh_token = Some(token);
        family = Some(fid);
    }
    let produced = Redeemed { access: access_of(&tokens), family };
    if let Some(r) = cp.flows.redeemed(&hash, produced) {
        revoke_redeemed(cp, &r, now);
        return Err(Refusal {
            error: OAuthError::InvalidGrant("authorization code reused during redemption".into()),
            reason: ReasonCode::AuthorizationCodeReused,
            subject: Some(grant.subject),
        });
    }
    Ok(Issued { body: body(&tokens, refresh_token.as_deref().map(String::as_str)), subject: grant.subject })
}

/// `grant_type=refresh_token` (RFC 6749 §6) with rotation: the presented
/// token is retired and a new one returned; presenting a retired one
/// revokes the family.
pub(crate) fn refresh_token(
    cp: &ControlPlane,
    client: &Client,
    params: &HashMap<String, String>,
    now: u64,
) -> Result<Issued, Refusal> {
    client.may_use(GrantType::RefreshToken)?;
    let presented =
        params.get("refresh_token").ok_or_else(|| OAuthError::InvalidRequest("refresh_token missing".into()))?;
    let scope = params.get("scope").map(String::as_str);
    let outcome = cp
        .store
        .use_refresh(&opaque::hash(presented), now, |g| {
            // A family whose login a cut-off ended refreshes nothing, even
            // one started while the cut-off was being made.
            if cp.login_ended(&g.subject, &g.client_id, g.auth_time) {
                return Err(OAuthError::InvalidGrant("the login behind this refresh token was ended".into()));
            }
            let scopes = refresh::check(g, client, scope, now)?;
            let access = Access { subject: &g.subject, client, audiences: &g.audiences, scopes: &scopes };
            let tokens = user_tokens(cp, &access, g.auth_time, None, now).map_err(|r| r.error)?;
            let (token, hash) = opaque::generate(opaque::REFRESH_PREFIX)
                .map_err(|_| OAuthError::TemporarilyUnavailable("no randomness".into()))?;
            let new = NewRefresh { hash, grant: g.clone(), access: access_of(&tokens) };
            Ok(((tokens, token, g.subject.clone()), new))
        })
        .map_err(|_| unavailable("store"))?;
    match outcome {
        RefreshUse::Unknown => Err(OAuthError::InvalidGrant("unknown or expired refresh token".into()).into()),
        RefreshUse::FamilyRevoked => Err(OAuthError::InvalidGrant("refresh token family was revoked".into()).into()),
        RefreshUse::Refused(e) => Err(e.into()),
        RefreshUse::Reused { family, access } => {
            let _ = cp.revoke_all(&access);
            Err(Refusal {
                error: OAuthError::InvalidGrant(format!("refresh token reused: family {family} revoked")),
                reason: ReasonCode::RefreshTokenReused,
                subject: None,
            })
        }
        RefreshUse::Rotated((tokens, token, subject)) => Ok(Issued { body: body(&tokens, Some(&token)), subject }),
    }
}
