//! The authorization-code grant (RFC 6749 §4.1, PKCE per RFC 7636, OpenID
//! Connect Core §3.1): checking an authorization request, what a code stands
//! for, redeeming it, and the ID token.
//!
//! The order of the checks matters. Until the client and its redirect URI
//! are known to match a registration, nothing may be sent to the redirect
//! URI — an error there would make Ward an open redirector — so those
//! failures are [`AuthorizeError::NoRedirect`] (the shell shows an error
//! page). Every later failure goes back to the client's registered URI with
//! an `error` code and the `state`.

use std::collections::{BTreeSet, HashMap};

use serde_json::json;
use ward_core::Claims;

use crate::clients::{Client, GrantType};
use crate::error::OAuthError;
use crate::grant::{IssuerSettings, parse_scope};
use crate::pkce;

/// How long a code may wait to be redeemed by default (RFC 6749 §4.1.2: "a maximum
/// authorization code lifetime of 10 minutes is RECOMMENDED"; a browser
/// redirect takes well under a second).
pub const CODE_TTL: u64 = 60;

/// Longest accepted `state` or `nonce` (they are stored until the code is
/// redeemed and echoed back).
pub const MAX_OPAQUE: usize = 512;

/// The OpenID Connect scope: asks for an ID token. Every client allowed the
/// authorization-code grant may ask for it.
pub const OPENID: &str = "openid";

/// An authorization request that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationRequest {
    /// The client.
    pub client_id: String,
    /// The registered URI the answer goes to.
    pub redirect_uri: String,
    /// Whether the request named `redirect_uri` (then the token request must too, RFC 6749 §4.1.3).
    pub redirect_uri_sent: bool,
    /// The scopes granted if the user logs in.
    pub scopes: BTreeSet<String>,
    /// Audiences of the access token.
    pub audiences: Vec<String>,
    /// The client's `state`, returned unchanged.
    pub state: String,
    /// The OIDC `nonce`, copied into the ID token.
    pub nonce: Option<String>,
    /// The PKCE `S256` challenge.
    pub code_challenge: String,
}

/// Why an authorization request is refused, and where the answer may go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthorizeError {
    /// The client or redirect URI is unknown or does not match: show an
    /// error page, never redirect.
    NoRedirect(OAuthError),
    /// Redirect back to the (registered) URI with the error and `state`.
    Redirect {
        /// The registered redirect URI.
        redirect_uri: String,
        /// The client's `state`, if it sent one.
        state: Option<String>,
        /// The error.
        error: OAuthError,
    },
}

impl AuthorizeError {
    /// The OAuth error inside.
    #[must_use]
    pub fn error(&self) -> &OAuthError {
        match self {
            Self::NoRedirect(e) | Self::Redirect { error: e, .. } => e,
        }
    }
}

/// Check an authorization request's parameters (`client_id`,
/// `redirect_uri`, `response_type`, `scope`, `state`, `nonce`,
/// `code_challenge`, `code_challenge_method`, `resource`, `prompt`).
///
/// `state` is required: a client without it has no CSRF protection on its
/// callback, and Ward refuses to take part in that.
///
/// # Errors
/// [`AuthorizeError`]: see the module documentation for which failures may
/// redirect.
pub fn check_request(
    params: &HashMap<String, String>,
    client: impl FnOnce(&str) -> Option<Client>,
) -> Result<(Client, AuthorizationRequest), AuthorizeError> {
    let no_redirect = |m: &str| AuthorizeError::NoRedirect(OAuthError::InvalidRequest(m.to_owned()));
    let client_id = params.get("client_id").ok_or_else(|| no_redirect("client_id missing"))?;
    let client = client(client_id).ok_or_else(|| no_redirect(&format!("unknown client `{client_id}`")))?;
    let requested = params.get("redirect_uri").map(String::as_str);
    // OpenID by what is granted: the scopes asked for, or without `scope`
    // the client's registered ones (which may hold `openid`).
    let openid = match params.get("scope") {
        Some(s) => s.split(' ').any(|x| x == OPENID),
        None => client.scopes.contains(OPENID),
    };
    let redirect_uri =
        pkce::match_redirect(requested, &client.redirect_uris, openid).map_err(AuthorizeError::NoRedirect)?;
    // From here on the answer may go to the registered URI.
    let state = params.get("state").filter(|s| !s.is_empty() && s.len() <= MAX_OPAQUE).cloned();
    let fail = |error: OAuthError| AuthorizeError::Redirect {
        redirect_uri: redirect_uri.clone(),
        state: state.clone(),
        error,
    };
    match params.get("response_type").map(String::as_str) {
        Some("code") => {}
        Some(other) => return Err(fail(OAuthError::UnsupportedResponseType(format!("response_type `{other}`")))),
        None => return Err(fail(OAuthError::InvalidRequest("response_type missing".into()))),
    }
    for unsupported in ["request", "request_uri"] {
        if params.contains_key(unsupported) {
            return Err(fail(OAuthError::InvalidRequest(format!("`{unsupported}` is not supported"))));
        }
    }
    if params.get("response_mode").is_some_and(|m| m != "query") {
        return Err(fail(OAuthError::InvalidRequest("only response_mode=query".into())));
    }
    client.may_use(GrantType::AuthorizationCode).map_err(fail)?;
    let Some(state) = state.clone() else {
        return Err(fail(OAuthError::InvalidRequest(format!("state required (1-{MAX_OPAQUE} bytes)"))));
    };
    let code_challenge = pkce::check_challenge(
        params.get("code_challenge").map(String::as_str),
        params.get("code_challenge_method").map(String::as_str),
    )
    .map_err(fail)?;
    let nonce = match params.get("nonce") {
        Some(n) if n.is_empty() || n.len() > MAX_OPAQUE => {
            return Err(fail(OAuthError::InvalidRequest(format!("nonce must be 1-{MAX_OPAQUE} bytes"))));
        }
        n => n.cloned(),
    };
    let mut allowed = client.scopes.clone();
    allowed.insert(OPENID.to_owned());
    let scopes = match params.get("scope") {
        None => client.scopes.clone(),
        Some(s) => {
            let asked = parse_scope(s).map_err(fail)?;
            if let Some(extra) = asked.iter().find(|s| !allowed.contains(*s)) {
                return Err(fail(OAuthError::InvalidScope(format!(
                    "client {} may not have scope `{extra}`",
                    client.id
                ))));
            }
            asked
        }
    };
    let audiences = match params.get("resource") {
        Some(r) if client.audiences.contains(r) => vec![r.clone()],
        Some(r) => return Err(fail(OAuthError::InvalidTarget(format!("client {} may not have `{r}`", client.id)))),
        // Without audiences of its own, the token is for the client itself.
        None => vec![client.audiences.first().cloned().unwrap_or_else(|| client.id.as_str().to_owned())],
    };
    // Ward keeps no login session of its own: every authorization asks the
    // user, so a silent one cannot succeed.
    if params.get("prompt").is_some_and(|p| p.split(' ').any(|v| v == "none")) {
        return Err(fail(OAuthError::LoginRequired("prompt=none but Ward keeps no login session".into())));
    }
    let request = AuthorizationRequest {
        client_id: client.id.as_str().to_owned(),
        redirect_uri,
        redirect_uri_sent: requested.is_some(),
        scopes,
        audiences,
        state,
        nonce,
        code_challenge,
    };
    Ok((client, request))
}

/// What an authorization code stands for, stored (under a hash of the
/// code) until it is redeemed or expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeGrant {
    /// The checked authorization request.
    pub request: AuthorizationRequest,
    /// The user who logged in.
    pub subject: String,
    /// When they logged in (`auth_time`).
    pub auth_time: u64,
    /// When the code stops being redeemable.
    pub expires: u64,
}

/// Check a token request redeeming `grant` (RFC 6749 §4.1.3, RFC 7636 §4.6).
/// The caller has already taken the code out of the store, so it can never
/// be redeemed twice.
///
/// # Errors
/// [`OAuthError::InvalidGrant`] for another client, another redirect URI,
/// an expired code or a wrong verifier; [`OAuthError::InvalidRequest`] for
/// missing parameters.
pub fn redeem(
    grant: &CodeGrant,
    client: &Client,
    redirect_uri: Option<&str>,
    code_verifier: Option<&str>,
    now: u64,
) -> Result<(), OAuthError> {
    client.may_use(GrantType::AuthorizationCode)?;
    if grant.request.client_id != client.id.as_str() {
        return Err(OAuthError::InvalidGrant(format!("code was issued to another client than {}", client.id)));
    }
    match redirect_uri {
        Some(r) if r == grant.request.redirect_uri => {}
        Some(_) => return Err(OAuthError::InvalidGrant("redirect_uri differs from the authorization request".into())),
        None if grant.request.redirect_uri_sent => {
            return Err(OAuthError::InvalidRequest("redirect_uri missing".into()));
        }
        None => {}
    }
    if now >= grant.expires {
        return Err(OAuthError::InvalidGrant("authorization code expired".into()));
    }
    let verifier = code_verifier.ok_or_else(|| OAuthError::InvalidRequest("code_verifier missing".into()))?;
    if !pkce::verify_s256(verifier, &grant.request.code_challenge) {
        return Err(OAuthError::InvalidGrant("PKCE verifier does not match the challenge".into()));
    }
    Ok(())
}

/// The ID token's claims (OIDC Core §2) for `subject`, who logged in at
/// `auth_time`, issued to `client`.
#[must_use]
pub fn id_token_claims(
    settings: &IssuerSettings,
    client: &Client,
    subject: &str,
    auth_time: u64,
    nonce: Option<&str>,
    now: u64,
    jti: &str,
) -> Claims {
    let ttl = client.token_ttl.min(settings.max_ttl).max(1);
    let mut claims = Claims::new();
    claims.insert("iss".into(), json!(settings.issuer));
    claims.insert("sub".into(), json!(subject));
    claims.insert("aud".into(), json!(client.id.as_str()));
    claims.insert("azp".into(), json!(client.id.as_str()));
    claims.insert("iat".into(), json!(now));
    claims.insert("exp".into(), json!(now + ttl));
    claims.insert("auth_time".into(), json!(auth_time));
    claims.insert("jti".into(), json!(jti));
    if let Some(n) = nonce {
        claims.insert("nonce".into(), json!(n));
    }
    claims
}

/// `uri` with `params` added to its query (RFC 6749 §4.1.2: the registered
/// URI's own query is kept). Values are form-encoded.
#[must_use]
pub fn redirect_with(uri: &str, params: &[(&str, &str)]) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        query.append_pair(k, v);
    }
    let sep = if uri.contains('?') { '&' } else { '?' };
    format!("{uri}{sep}{}", query.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clients::ClientId;

    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

    fn web() -> Client {
        Client {
            id: ClientId::new("web").unwrap(),
            secret_hash: None,
            public_jwks: None,
            grants: [GrantType::AuthorizationCode, GrantType::RefreshToken].into(),
            scopes: ["orders:read".to_owned(), "profile".to_owned()].into(),
            audiences: vec!["orders".into()],
            token_ttl: 300,
            redirect_uris: vec!["https://app.example/cb".into()],
            roles: Vec::new(),
        }
    }

    fn params(extra: &[(&str, &str)]) -> HashMap<String, String> {
        let mut p: HashMap<String, String> = [
            ("client_id", "web"),
            ("redirect_uri", "https://app.example/cb"),
            ("response_type", "code"),
            ("scope", "openid orders:read"),
            ("state", "s1"),
            ("nonce", "n1"),
            ("code_challenge", CHALLENGE),
            ("code_challenge_method", "S256"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        for (k, v) in extra {
            if v.is_empty() {
                p.remove(*k);
            } else {
                p.insert((*k).to_owned(), (*v).to_owned());
            }
        }
        p
    }

    fn check(extra: &[(&str, &str)]) -> Result<AuthorizationRequest, AuthorizeError> {
        check_request(&params(extra), |id| (id == "web").then(web)).map(|(_, r)| r)
    }

    #[test]
    fn a_good_request_is_accepted_as_asked() {
        let r = check(&[]).unwrap();
        assert_eq!(r.scopes, ["openid".to_owned(), "orders:read".to_owned()].into());
        assert_eq!(
            (r.state.as_str(), r.nonce.as_deref(), r.audiences.as_slice()),
            ("s1", Some("n1"), &["orders".into()][..])
        );
        assert!(r.redirect_uri_sent);
        let implicit = check(&[("redirect_uri", ""), ("scope", "orders:read")]).unwrap();
        assert!(!implicit.redirect_uri_sent, "outside OpenID, the only registered URI is used");
        let openid = check(&[("redirect_uri", "")]).map(|_| ()).map_err(|e| e.error().code());
        assert_eq!(openid, Err("invalid_request"), "an OpenID request names its redirect URI");
    }

    #[test]
    fn unknown_clients_and_unregistered_uris_never_redirect() {
        for (k, v) in [
            ("client_id", "nobody"),
            ("client_id", ""),
            ("redirect_uri", "https://evil.example/cb"),
            ("redirect_uri", "https://app.example/cb/extra"),
            ("redirect_uri", "https://app.example/CB"),
            ("redirect_uri", "https://app.example/c"),
            ("redirect_uri", "https://app.example/cb?next=https://evil.example"),
            ("redirect_uri", "//evil.example/cb"),
        ] {
            let e = check(&[(k, v)]).unwrap_err();
            assert!(matches!(e, AuthorizeError::NoRedirect(_)), "{k}={v}: {e:?}");
        }
    }

    #[test]
    fn later_failures_redirect_with_the_right_codes() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("response_type", "token")], "unsupported_response_type"),
            (&[("response_type", "")], "invalid_request"),
            (&[("code_challenge_method", "plain")], "invalid_request"),
            (&[("code_challenge", "")], "invalid_request"),
            (&[("code_challenge_method", "")], "invalid_request"),
            (&[("state", "")], "invalid_request"),
            (&[("scope", "openid admin")], "invalid_scope"),
            (&[("resource", "payroll")], "invalid_target"),
            (&[("request", "eyJ...")], "invalid_request"),
            (&[("response_mode", "fragment")], "invalid_request"),
            (&[("prompt", "none")], "login_required"),
        ];
        for (extra, code) in cases {
            match check(extra).unwrap_err() {
                AuthorizeError::Redirect { redirect_uri, error, state } => {
                    assert_eq!(redirect_uri, "https://app.example/cb");
                    assert_eq!(error.code(), *code, "{extra:?}");
                    let expect_state = if extra.iter().any(|(k, _)| *k == "state") { None } else { Some("s1".into()) };
                    assert_eq!(state, expect_state);
                }
                other => panic!("{extra:?}: {other:?}"),
            }
        }
        let mut cc_only = web();
        cc_only.grants = [GrantType::ClientCredentials].into();
        let e = check_request(&params(&[]), |_| Some(cc_only.clone())).unwrap_err();
        assert_eq!(e.error().code(), "unauthorized_client");
    }

    fn grant(now: u64) -> CodeGrant {
        CodeGrant { request: check(&[]).unwrap(), subject: "alice".into(), auth_time: now, expires: now + CODE_TTL }
    }

    #[test]
    fn redeeming_checks_client_uri_time_and_verifier() {
        let g = grant(1000);
        redeem(&g, &web(), Some("https://app.example/cb"), Some(VERIFIER), 1001).unwrap();
        let code = |r: Result<(), OAuthError>| r.unwrap_err().code();
        assert_eq!(code(redeem(&g, &web(), Some("https://app.example/cb/"), Some(VERIFIER), 1001)), "invalid_grant");
        assert_eq!(code(redeem(&g, &web(), None, Some(VERIFIER), 1001)), "invalid_request");
        assert_eq!(code(redeem(&g, &web(), Some("https://app.example/cb"), None, 1001)), "invalid_request");
        let wrong = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXl";
        assert_eq!(code(redeem(&g, &web(), Some("https://app.example/cb"), Some(wrong), 1001)), "invalid_grant");
        assert_eq!(
            code(redeem(&g, &web(), Some("https://app.example/cb"), Some(CHALLENGE), 1001)),
            "invalid_grant",
            "the challenge itself (what `plain` would accept) is not the verifier"
        );
        assert_eq!(code(redeem(&g, &web(), Some("https://app.example/cb"), Some(VERIFIER), 1060)), "invalid_grant");
        let mut other = web();
        other.id = ClientId::new("other").unwrap();
        assert_eq!(code(redeem(&g, &other, Some("https://app.example/cb"), Some(VERIFIER), 1001)), "invalid_grant");
    }

    #[test]
    fn id_tokens_carry_nonce_auth_time_and_the_client_as_audience() {
        let s = IssuerSettings { issuer: "https://ward.local".into(), max_ttl: 3600 };
        let c = id_token_claims(&s, &web(), "alice", 990, Some("n1"), 1000, "j");
        assert_eq!(
            serde_json::Value::Object(c),
            json!({"iss": "https://ward.local", "sub": "alice", "aud": "web", "azp": "web", "iat": 1000,
                   "exp": 1300, "auth_time": 990, "jti": "j", "nonce": "n1"})
        );
    }

    #[test]
    fn redirects_keep_the_registered_query_and_encode_values() {
        assert_eq!(
            redirect_with("https://a.example/cb", &[("code", "x y"), ("state", "&s")]),
            "https://a.example/cb?code=x+y&state=%26s"
        );
        assert_eq!(redirect_with("https://a.example/cb?app=1", &[("code", "c")]), "https://a.example/cb?app=1&code=c");
    }
}
