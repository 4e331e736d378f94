//! Grants: from an authenticated client and its request to the claims of
//! an access token. Scopes and audiences can only narrow what the client is
//! allowed; nothing a request says can widen them.

use std::collections::BTreeSet;

use serde_json::{Value, json};
use ward_core::Claims;

use crate::clients::{Client, GrantType};
use crate::error::OAuthError;

/// The issuer's own settings for minting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerSettings {
    /// `iss` of every token (also the OIDC issuer URL).
    pub issuer: String,
    /// No access token lives longer than this (seconds); also how long a
    /// retired signing key stays published.
    pub max_ttl: u64,
}

/// The parts of a token request the grant looks at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenRequest {
    /// `scope`: space-separated; absent means every scope the client has.
    pub scope: Option<String>,
    /// `resource` / `audience` values (RFC 8707, RFC 8693); absent means the
    /// client's default audience.
    pub audiences: Vec<String>,
}

/// An access token's claims and what the response says about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Minted {
    /// The claims to sign.
    pub claims: Claims,
    /// Seconds until it expires.
    pub expires_in: u64,
    /// The granted scopes, space-separated.
    pub scope: String,
}

/// Parse a `scope` parameter (RFC 6749 §3.3: space-separated `%x21 / %x23-5B / %x5D-7E`).
///
/// # Errors
/// [`OAuthError::InvalidScope`] for a malformed value.
pub fn parse_scope(v: &str) -> Result<BTreeSet<String>, OAuthError> {
    let mut out = BTreeSet::new();
    for s in v.split(' ') {
        if s.is_empty() || !s.bytes().all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b)) {
            return Err(OAuthError::InvalidScope("malformed scope parameter".into()));
        }
        out.insert(s.to_owned());
    }
    Ok(out)
}

/// The `client_credentials` grant (RFC 6749 §4.4) for an authenticated
/// client: the subject is the client itself.
///
/// # Errors
/// [`OAuthError`] when the client may not use the grant, or asks for a scope
/// or audience it does not have.
pub fn client_credentials(
    settings: &IssuerSettings,
    client: &Client,
    request: &TokenRequest,
    now: u64,
    jti: &str,
) -> Result<Minted, OAuthError> {
    client.may_use(GrantType::ClientCredentials)?;
    let scopes = narrow_scope(request.scope.as_deref(), &client.scopes, &format!("client {}", client.id))?;
    let audiences = narrow_audience(&request.audiences, client)?;
    let ttl = client.token_ttl.min(settings.max_ttl).max(1);
    let access = Access { subject: client.id.as_str(), client, audiences: &audiences, scopes: &scopes };
    let mut minted = access.mint(settings, now, now + ttl, jti);
    minted.set_roles(&client.roles);
    Ok(minted)
}

impl Minted {
    /// Add a `roles` claim (nothing when `roles` is empty).
    pub fn set_roles(&mut self, roles: &[String]) {
        if !roles.is_empty() {
            self.claims.insert("roles".into(), json!(roles));
        }
    }
}

/// What an access token says: who it is about, for which client, where it
/// may be used and what it allows.
#[derive(Debug, Clone, Copy)]
pub struct Access<'a> {
    /// `sub`: a user, or the client itself.
    pub subject: &'a str,
    /// The client the token is issued to (`client_id`).
    pub client: &'a Client,
    /// `aud`.
    pub audiences: &'a [String],
    /// `scope`.
    pub scopes: &'a BTreeSet<String>,
}

impl Access<'_> {
    /// The claims of an access token valid from `now` until `exp`.
    #[must_use]
    pub fn mint(&self, settings: &IssuerSettings, now: u64, exp: u64, jti: &str) -> Minted {
        let scope = self.scopes.iter().map(String::as_str).collect::<Vec<_>>().join(" ");
        let aud: Value = match self.audiences {
            [one] => json!(one),
            many => json!(many),
        };
        let mut claims = Claims::new();
        claims.insert("iss".into(), json!(settings.issuer));
        claims.insert("sub".into(), json!(self.subject));
        claims.insert("aud".into(), aud);
        claims.insert("iat".into(), json!(now));
        claims.insert("nbf".into(), json!(now));
        claims.insert("exp".into(), json!(exp));
        claims.insert("jti".into(), json!(jti));
        claims.insert("client_id".into(), json!(self.client.id.as_str()));
        if !scope.is_empty() {
            claims.insert("scope".into(), json!(scope));
        }
        Minted { claims, expires_in: exp.saturating_sub(now), scope }
    }
}

/// The scopes a request asks for, which must all be in `allowed`; none
/// asked means all of `allowed`.
///
/// # Errors
/// [`OAuthError::InvalidScope`] naming the first scope outside `allowed`.
pub fn narrow_scope(
    asked: Option<&str>,
    allowed: &BTreeSet<String>,
    who: &str,
) -> Result<BTreeSet<String>, OAuthError> {
    let Some(s) = asked else { return Ok(allowed.clone()) };
    let asked = parse_scope(s)?;
    if let Some(extra) = asked.iter().find(|s| !allowed.contains(*s)) {
        return Err(OAuthError::InvalidScope(format!("{who} may not have scope `{extra}`")));
    }
    Ok(asked)
}

/// The audiences a request asks for, which must all be the client's; none
/// asked means the client's default (its first).
///
/// # Errors
/// [`OAuthError::InvalidTarget`] for an audience the client may not have, or none at all.
pub fn narrow_audience(asked: &[String], client: &Client) -> Result<Vec<String>, OAuthError> {
    let audiences: Vec<String> = if asked.is_empty() {
        client.audiences.first().cloned().into_iter().collect()
    } else {
        if let Some(extra) = asked.iter().find(|a| !client.audiences.contains(a)) {
            return Err(OAuthError::InvalidTarget(format!("client {} may not have audience `{extra}`", client.id)));
        }
        asked.to_vec()
    };
    if audiences.is_empty() {
        return Err(OAuthError::InvalidTarget(format!("client {} has no audience", client.id)));
    }
    Ok(audiences)
}

/// The token endpoint's success body (RFC 6749 §5.1).
#[must_use]
pub fn token_response(access_token: &str, minted: &Minted) -> Value {
    let mut v = json!({ "access_token": access_token, "token_type": "Bearer", "expires_in": minted.expires_in });
    if !minted.scope.is_empty() {
        v["scope"] = json!(minted.scope);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clients::ClientId;

    fn settings() -> IssuerSettings {
        IssuerSettings { issuer: "https://ward.local".into(), max_ttl: 3600 }
    }

    fn client() -> Client {
        Client {
            id: ClientId::new("billing").unwrap(),
            secret_hash: None,
            public_jwks: None,
            grants: [GrantType::ClientCredentials].into(),
            scopes: ["orders:read".to_owned(), "orders:write".to_owned()].into(),
            audiences: vec!["orders".into(), "invoices".into()],
            token_ttl: 7200,
            redirect_uris: Vec::new(),
            roles: Vec::new(),
        }
    }

    #[test]
    fn defaults_to_everything_the_client_has_capped_by_the_issuer() {
        let m = client_credentials(&settings(), &client(), &TokenRequest::default(), 1000, "j1").unwrap();
        assert_eq!(m.scope, "orders:read orders:write");
        assert_eq!(m.expires_in, 3600, "the issuer's max_ttl caps the client's ttl");
        let c = &m.claims;
        assert_eq!(
            (c["iss"].as_str(), c["sub"].as_str(), c["aud"].as_str()),
            (Some("https://ward.local"), Some("billing"), Some("orders"))
        );
        assert_eq!(
            (c["iat"].as_u64(), c["nbf"].as_u64(), c["exp"].as_u64(), c["jti"].as_str()),
            (Some(1000), Some(1000), Some(4600), Some("j1"))
        );
        assert!(c.get("roles").is_none(), "no roles claim for a client without roles");
        let mut with_roles = client();
        with_roles.roles = vec!["billing-service".into()];
        let m2 = client_credentials(&settings(), &with_roles, &TokenRequest::default(), 1000, "j2").unwrap();
        assert_eq!(m2.claims["roles"], json!(["billing-service"]));
        let r = token_response("tok", &m);
        assert_eq!(
            r,
            json!({"access_token": "tok", "token_type": "Bearer", "expires_in": 3600, "scope": "orders:read orders:write"})
        );
    }

    #[test]
    fn requests_can_only_narrow() {
        let narrow = TokenRequest { scope: Some("orders:read".into()), audiences: vec!["invoices".into()] };
        let m = client_credentials(&settings(), &client(), &narrow, 0, "j").unwrap();
        assert_eq!((m.scope.as_str(), m.claims["aud"].as_str()), ("orders:read", Some("invoices")));
        let wide = TokenRequest { scope: Some("orders:read admin".into()), ..TokenRequest::default() };
        assert_eq!(client_credentials(&settings(), &client(), &wide, 0, "j").unwrap_err().code(), "invalid_scope");
        let other = TokenRequest { audiences: vec!["payroll".into()], ..TokenRequest::default() };
        assert_eq!(client_credentials(&settings(), &client(), &other, 0, "j").unwrap_err().code(), "invalid_target");
        for bad in ["", "a  b", "a\"b", "é"] {
            let r = TokenRequest { scope: Some(bad.into()), ..TokenRequest::default() };
            assert_eq!(
                client_credentials(&settings(), &client(), &r, 0, "j").unwrap_err().code(),
                "invalid_scope",
                "{bad:?}"
            );
        }
        let mut no_grant = client();
        no_grant.grants.clear();
        assert_eq!(
            client_credentials(&settings(), &no_grant, &TokenRequest::default(), 0, "j").unwrap_err().code(),
            "unauthorized_client"
        );
    }
}

/// `subject_token_type` / `issued_token_type` for access tokens (RFC 8693 §3).
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

/// The claim of an exchanged token naming the tokens it came from:
/// `{"jti": [subject's, its subject's, …], "client_id": [the same order]}`.
pub const EXCHANGED_FROM: &str = ward_core::EXCHANGED_FROM;

/// Most exchanges in a chain (a token exchanged from an exchanged token…).
pub const MAX_EXCHANGES: usize = 8;

/// Token exchange (RFC 8693) for an authenticated `client` acting for the
/// subject of an already verified Ward access token (`subject`): the new
/// token keeps the subject, adds the client to the `act` chain, and can only
/// narrow — scopes within the subject token's and the client's, lifetime
/// within the subject token's.
///
/// Only a client the subject token was issued to (`client_id`) or meant for
/// (one of its `aud`: a service that received it) may exchange it; another
/// client holding it — stolen, leaked, replayed — gets `invalid_grant`.
/// Without an `audience`, the new token keeps the subject token's audiences:
/// a token never moves to a new audience by default. A requested audience
/// must be one of the subject token's, or one the client is registered for
/// (the operator's explicit permission to call that audience for its users).
///
/// # Errors
/// [`OAuthError`] when the client may not exchange this token, or asks for
/// more than the subject token or the client allows.
pub fn token_exchange(
    settings: &IssuerSettings,
    client: &Client,
    subject: &Claims,
    request: &TokenRequest,
    now: u64,
    jti: &str,
) -> Result<Minted, OAuthError> {
    client.may_use(GrantType::TokenExchange)?;
    let sub = subject
        .get("sub")
        .and_then(Value::as_str)
        .ok_or_else(|| OAuthError::InvalidGrant("subject token has no sub".into()))?;
    let subject_exp = subject
        .get("exp")
        .and_then(Value::as_u64)
        .ok_or_else(|| OAuthError::InvalidGrant("subject token has no exp".into()))?;
    let held: BTreeSet<String> = match subject.get("scope").and_then(Value::as_str) {
        Some(s) if !s.is_empty() => parse_scope(s)?,
        _ => BTreeSet::new(),
    };
    let allowed: BTreeSet<String> = held.intersection(&client.scopes).cloned().collect();
    let scopes = narrow_scope(
        request.scope.as_deref(),
        &allowed,
        &format!("client {} exchanging the subject token", client.id),
    )?;
    let held_audiences: Vec<String> = match subject.get("aud") {
        Some(Value::String(a)) => vec![a.clone()],
        Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
        _ => Vec::new(),
    };
    let issued_to = subject.get("client_id").and_then(Value::as_str);
    if issued_to != Some(client.id.as_str()) && !held_audiences.iter().any(|a| a == client.id.as_str()) {
        return Err(OAuthError::InvalidGrant(format!(
            "the subject token was neither issued to client {} nor meant for it",
            client.id
        )));
    }
    let audiences = if request.audiences.is_empty() {
        held_audiences
    } else {
        if let Some(extra) =
            request.audiences.iter().find(|a| !held_audiences.contains(a) && !client.audiences.contains(a))
        {
            return Err(OAuthError::InvalidTarget(format!(
                "audience `{extra}` is neither the subject token's nor one client {} is registered for",
                client.id
            )));
        }
        request.audiences.clone()
    };
    if audiences.is_empty() {
        return Err(OAuthError::InvalidTarget("the subject token has no audience".into()));
    }
    let exp = subject_exp.min(now + client.token_ttl.min(settings.max_ttl).max(1));
    if exp <= now {
        return Err(OAuthError::InvalidGrant("subject token expired".into()));
    }
    // RFC 8693 §4.1: the current actor on top, earlier actors nested inside.
    let mut act = serde_json::Map::new();
    act.insert("sub".into(), json!(client.id.as_str()));
    if let Some(prior) = subject.get("act") {
        act.insert("act".into(), prior.clone());
    }
    // Where the token comes from: the subject token's id and client, then
    // theirs. Revoking any of those tokens, or cutting off any of those
    // clients, ends this one too (`ward_core::ancestors_revoked`,
    // `ward_core::is_cut_off`); a token of a login keeps its `auth_time`.
    let inherited = |name: &str| -> Vec<Value> {
        subject.get(EXCHANGED_FROM).and_then(|f| f.get(name)).and_then(Value::as_array).cloned().unwrap_or_default()
    };
    let mut from_jti = vec![subject.get("jti").cloned().unwrap_or(Value::Null)];
    from_jti.extend(inherited("jti"));
    let mut from_client = vec![subject.get("client_id").cloned().unwrap_or(Value::Null)];
    from_client.extend(inherited("client_id"));
    if from_jti.iter().chain(&from_client).any(|v| !v.is_string()) {
        return Err(OAuthError::InvalidGrant("the subject token has no jti or client_id".into()));
    }
    if from_jti.len() > MAX_EXCHANGES {
        return Err(OAuthError::InvalidGrant(format!("more than {MAX_EXCHANGES} exchanges in a row")));
    }
    let access = Access { subject: sub, client, audiences: &audiences, scopes: &scopes };
    let mut minted = access.mint(settings, now, exp, jti);
    minted.claims.insert("act".into(), Value::Object(act));
    minted.claims.insert(EXCHANGED_FROM.into(), json!({ "jti": from_jti, "client_id": from_client }));
    if let Some(auth_time) = subject.get("auth_time") {
        minted.claims.insert("auth_time".into(), auth_time.clone());
    }
    // The user's roles travel with them; the actor is in `act`.
    if let Some(roles) = subject.get("roles") {
        minted.claims.insert("roles".into(), roles.clone());
    }
    Ok(minted)
}

#[cfg(test)]
mod exchange_tests {
    use super::*;
    use crate::clients::ClientId;

    fn backend() -> Client {
        Client {
            id: ClientId::new("backend").unwrap(),
            secret_hash: None,
            public_jwks: None,
            grants: [GrantType::TokenExchange].into(),
            scopes: ["orders:read".to_owned(), "orders:write".to_owned(), "admin".to_owned()].into(),
            audiences: vec!["db".into(), "cache".into()],
            token_ttl: 600,
            redirect_uris: Vec::new(),
            roles: Vec::new(),
        }
    }

    fn subject(scope: &str, exp: u64, act: Option<Value>) -> Claims {
        let mut c =
            json!({"sub": "alice", "exp": exp, "scope": scope, "aud": "backend", "jti": "s1", "client_id": "frontend"})
                .as_object()
                .unwrap()
                .clone();
        if let Some(a) = act {
            c.insert("act".into(), a);
        }
        c
    }

    fn settings() -> IssuerSettings {
        IssuerSettings { issuer: "https://ward.local".into(), max_ttl: 3600 }
    }

    #[test]
    fn exchanged_tokens_keep_the_subject_record_the_actor_and_only_narrow() {
        let s = subject("orders:read orders:write", 1300, None);
        let req = TokenRequest { scope: Some("orders:read".into()), audiences: vec!["db".into()] };
        let m = token_exchange(&settings(), &backend(), &s, &req, 1000, "j").unwrap();
        assert_eq!(
            (m.claims["sub"].as_str(), m.claims["aud"].as_str(), m.scope.as_str()),
            (Some("alice"), Some("db"), "orders:read")
        );
        assert_eq!(m.claims["act"], json!({"sub": "backend"}));
        assert_eq!((m.claims["exp"].as_u64(), m.expires_in), (Some(1300), 300), "never outlives the subject token");
        // Default scope: what the subject holds and the client may have ("admin" is not held).
        let d = token_exchange(&settings(), &backend(), &s, &TokenRequest::default(), 1000, "j").unwrap();
        assert_eq!(d.scope, "orders:read orders:write");
        let mut with_roles = s.clone();
        with_roles.insert("roles".into(), json!(["reader"]));
        let r = token_exchange(&settings(), &backend(), &with_roles, &req, 1000, "j").unwrap();
        assert_eq!(r.claims["roles"], json!(["reader"]), "the user's roles travel with the exchanged token");
        // A chain: the earlier actor stays nested.
        let chained = subject("orders:read", 5000, Some(json!({"sub": "frontend"})));
        let c = token_exchange(&settings(), &backend(), &chained, &TokenRequest::default(), 1000, "j").unwrap();
        assert_eq!(c.claims["act"], json!({"sub": "backend", "act": {"sub": "frontend"}}));
        assert_eq!(c.expires_in, 600);
    }

    #[test]
    fn widening_is_refused() {
        let s = subject("orders:read", 2000, None);
        let wider = TokenRequest { scope: Some("orders:read admin".into()), ..TokenRequest::default() };
        assert_eq!(token_exchange(&settings(), &backend(), &s, &wider, 1000, "j").unwrap_err().code(), "invalid_scope");
        let elsewhere = TokenRequest { audiences: vec!["payroll".into()], ..TokenRequest::default() };
        assert_eq!(
            token_exchange(&settings(), &backend(), &s, &elsewhere, 1000, "j").unwrap_err().code(),
            "invalid_target"
        );
        let mut no_grant = backend();
        no_grant.grants.clear();
        assert_eq!(
            token_exchange(&settings(), &no_grant, &s, &TokenRequest::default(), 1000, "j").unwrap_err().code(),
            "unauthorized_client"
        );
        let expired = subject("orders:read", 900, None);
        assert_eq!(
            token_exchange(&settings(), &backend(), &expired, &TokenRequest::default(), 1000, "j").unwrap_err().code(),
            "invalid_grant"
        );
    }

    #[test]
    fn only_the_token_s_client_or_audience_exchanges_it_and_audiences_never_move_by_default() {
        // Meant for `backend` (its aud): without an audience the new token keeps it.
        let s = subject("orders:read", 2000, None);
        let d = token_exchange(&settings(), &backend(), &s, &TokenRequest::default(), 1000, "j").unwrap();
        assert_eq!(d.claims["aud"], json!("backend"), "no new audience by default");
        // Issued to `backend` (its client_id), for another audience.
        let mut own = subject("orders:read", 2000, None);
        own.insert("aud".into(), json!("ward-demo"));
        own.insert("client_id".into(), json!("backend"));
        let kept = token_exchange(&settings(), &backend(), &own, &TokenRequest::default(), 1000, "j").unwrap();
        assert_eq!(kept.claims["aud"], json!("ward-demo"));
        let moved = TokenRequest { audiences: vec!["db".into()], ..TokenRequest::default() };
        let m = token_exchange(&settings(), &backend(), &own, &moved, 1000, "j").unwrap();
        assert_eq!(m.claims["aud"], json!("db"), "an audience the client is registered for, asked for explicitly");
        // Another client's token, meant for someone else: whoever holds it cannot exchange it.
        let mut theirs = subject("orders:read", 2000, None);
        theirs.insert("aud".into(), json!("ward-demo"));
        theirs.insert("client_id".into(), json!("web"));
        for req in [TokenRequest::default(), moved] {
            assert_eq!(
                token_exchange(&settings(), &backend(), &theirs, &req, 1000, "j").unwrap_err().code(),
                "invalid_grant"
            );
        }
    }
}
