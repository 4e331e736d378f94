//! The gateway as an OpenID Connect relying party for `login` routes.
//!
//! ```text
//! GET /app/ (no token, no session) ─▶ 302 provider/authorize?…&state&nonce&code_challenge
//!                                      + __Host-ward-oidc-<state> (sealed: state, nonce, verifier, return path)
//! provider ─▶ GET <redirect_uri>?code&state&iss ─▶ state cookie matches? iss matches (RFC 9207)?
//!          ─▶ POST token_endpoint (code, verifier; client_secret_basic)
//!          ─▶ ID token verified (provider's JWKS, iss, aud = client_id, exp, nonce)
//!          ─▶ 303 back + __Host-ward-session (sealed: sid, iss, sub, claims, created, seen)
//! GET /app/ + session ─▶ identity for policies; idle and absolute lifetimes; cookie re-sent as it slides
//! <logout_path> ─▶ session id ended, cookie cleared, 303 to post_logout_redirect
//! ```
//!
//! Everything the browser carries is sealed with AES-256-GCM-SIV under the
//! session key, so nothing in it can be read or changed; the provider is
//! found through its discovery document (retried on demand until it
//! answers), so any standard provider works, Ward's own included.

pub(crate) mod session;

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Either, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use ward_authn::{Authenticator, KeyStore, Provider, ProviderSettings};
use ward_config::OidcSettings;
use ward_core::{Identity, Principal, ReasonCode, RevocationList};
use ward_crypto::{Sealer, SecretBytes};
use zeroize::Zeroizing;

use crate::GatewayError;
use crate::response::Body;
use session::{Freshness, LoginState, Session};

/// Largest discovery document or token response read.
const MAX_RESPONSE: usize = 64 * 1024;
/// How long a call to the provider may take.
const PROVIDER_TIMEOUT: Duration = Duration::from_secs(10);
/// A failed discovery is retried at most this often.
const RETRY_DISCOVERY: Duration = Duration::from_secs(5);
/// The provider's keys are fetched again before a login when older than this.
const KEYS_MAX_AGE: Duration = Duration::from_secs(300);

/// What the provider's discovery document told us.
struct Discovered {
    authorization_endpoint: String,
    token_endpoint: http::Uri,
    /// The provider sends `iss` with its answers (RFC 9207): then it must.
    iss_parameter: bool,
    /// Verifies ID tokens: the provider's JWKS, `iss`, `aud` = our client id.
    verifier: Authenticator,
    keys_fetched: std::sync::Mutex<Instant>,
}

/// The relying party.
pub(crate) struct RelyingParty {
    settings: OidcSettings,
    secret: Zeroizing<String>,
    sealer: Sealer,
    http: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    discovered: ArcSwapOption<Discovered>,
    /// Single flight and rate limit for discovery.
    discovering: tokio::sync::Mutex<Option<Instant>>,
    /// Sessions ended by logout (by id, until their absolute end).
    ended: ward_core::LocalRevocations,
}

impl std::fmt::Debug for RelyingParty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelyingParty").field("issuer", &self.settings.issuer).finish_non_exhaustive()
    }
}

/// How the relying party answered a request: a redirect, or a refusal
/// (the handler sends the generic error with the request's id), with the
/// cookies to set either way.
pub(crate) struct Answer {
    /// Where to send the browser (302 or 303); none for a refusal.
    pub redirect: Option<(StatusCode, String)>,
    pub cookies: Vec<String>,
    pub reason: ReasonCode,
    pub identity: Option<Identity>,
}

impl Answer {
    fn refuse(reason: ReasonCode) -> Self {
        Self { redirect: None, cookies: Vec::new(), reason, identity: None }
    }

    /// The response, for request `request_id`.
    pub(crate) fn response(&self, request_id: &ward_core::RequestId) -> Response<Body> {
        let mut r = match &self.redirect {
            None => crate::response::error(self.reason, request_id),
            Some((status, location)) => {
                let mut r = Response::new(Either::Left(Full::new(Bytes::new())));
                *r.status_mut() = *status;
                if let Ok(v) = HeaderValue::from_str(location) {
                    r.headers_mut().insert(header::LOCATION, v);
                }
                crate::response::add_security_headers(r.headers_mut(), request_id);
                r
            }
        };
        let h = r.headers_mut();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        for c in &self.cookies {
            if let Ok(v) = HeaderValue::from_str(c) {
                h.append(header::SET_COOKIE, v);
            }
        }
        r
    }
}

fn read_key_file(path: &std::path::Path, what: &str) -> Result<Zeroizing<Vec<u8>>, GatewayError> {
    crate::tls::warn_if_readable_by_others(path);
    std::fs::read(path).map(Zeroizing::new).map_err(|e| GatewayError::Keys(format!("{what} {}: {e}", path.display())))
}

impl RelyingParty {
    /// Read the client secret and session key and build the HTTPS client.
    ///
    /// # Errors
    /// [`GatewayError`] for unreadable or unusable files.
    pub(crate) fn new(settings: &OidcSettings) -> Result<Self, GatewayError> {
        let secret = read_key_file(&settings.client_secret_file, "oidc client secret")?;
        let secret = Zeroizing::new(String::from_utf8_lossy(&secret).trim().to_owned());
        if secret.is_empty() {
            return Err(GatewayError::Keys(format!("{}: empty client secret", settings.client_secret_file.display())));
        }
        let key = read_key_file(&settings.session_key_file, "oidc session key")?;
        let sealer = Sealer::new(&SecretBytes::new(key.to_vec())).map_err(|e| {
            GatewayError::Keys(format!("{}: {e} (32 random bytes expected)", settings.session_key_file.display()))
        })?;
        let tls = crate::upstream::client_tls(settings.ca_file.as_deref())?;
        let connector =
            hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls).https_only().enable_http1().build();
        Ok(Self {
            settings: settings.clone(),
            secret,
            sealer,
            http: Client::builder(TokioExecutor::new()).build(connector),
            discovered: ArcSwapOption::empty(),
            discovering: tokio::sync::Mutex::new(None),
            ended: ward_core::LocalRevocations::new(),
        })
    }

    pub(crate) fn callback_path(&self) -> &str {
        &self.settings.callback_path
    }

    pub(crate) fn logout_path(&self) -> &str {
        &self.settings.logout_path
    }

    async fn call(&self, request: http::Request<Full<Bytes>>) -> Result<(StatusCode, Bytes), String> {
        let response = tokio::time::timeout(PROVIDER_TIMEOUT, self.http.request(request))
            .await
            .map_err(|_| "timed out".to_owned())?
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let body = tokio::time::timeout(PROVIDER_TIMEOUT, Limited::new(response.into_body(), MAX_RESPONSE).collect())
            .await
            .map_err(|_| "timed out".to_owned())?
            .map_err(|e| e.to_string())?;
        Ok((status, body.to_bytes()))
    }

    /// The provider's endpoints and keys, fetching them if not known yet
    /// (at most once per [`RETRY_DISCOVERY`], one fetch at a time).
    async fn discovered(&self) -> Option<Arc<Discovered>> {
        if let Some(d) = self.discovered.load_full() {
            return Some(d);
        }
        let mut last = self.discovering.lock().await;
        if let Some(d) = self.discovered.load_full() {
            return Some(d);
        }
        if last.is_some_and(|t| t.elapsed() < RETRY_DISCOVERY) {
            return None;
        }
        *last = Some(Instant::now());
        match self.discover().await {
            Ok(d) => {
                let d = Arc::new(d);
                self.discovered.store(Some(Arc::clone(&d)));
                tracing::info!(issuer = %self.settings.issuer, "OpenID provider discovered");
                Some(d)
            }
            Err(e) => {
                tracing::warn!(issuer = %self.settings.issuer, error = %e, "OpenID provider discovery failed; logins wait for it");
                None
            }
        }
    }

    async fn discover(&self) -> Result<Discovered, String> {
        let url = format!("{}/.well-known/openid-configuration", self.settings.issuer);
        let request = http::Request::get(&url)
            .header(header::ACCEPT, "application/json")
            .body(Full::new(Bytes::new()))
            .map_err(|e| e.to_string())?;
        let (status, body) = self.call(request).await.map_err(|e| format!("{url}: {e}"))?;
        if status != StatusCode::OK {
            return Err(format!("{url}: status {status}"));
        }
        let doc: Value = serde_json::from_slice(&body).map_err(|e| format!("{url}: {e}"))?;
        // OIDC Discovery §4.3: the document must name the issuer it was fetched for.
        if doc["issuer"].as_str() != Some(self.settings.issuer.as_str()) {
            return Err(format!("{url}: names issuer {} instead", doc["issuer"]));
        }
        let endpoint = |k: &str| {
            doc[k]
                .as_str()
                .filter(|u| u.starts_with("https://"))
                .map(str::to_owned)
                .ok_or_else(|| format!("{url}: no https {k}"))
        };
        let methods = doc["code_challenge_methods_supported"].as_array();
        if methods.is_some_and(|m| !m.iter().any(|x| x == "S256")) {
            return Err(format!("{url}: the provider does not support PKCE S256"));
        }
        let token_endpoint: http::Uri =
            endpoint("token_endpoint")?.parse().map_err(|_| format!("{url}: bad token_endpoint"))?;
        let source = crate::keys::HttpsSource::new(&endpoint("jwks_uri")?, self.settings.ca_file.as_deref())
            .map_err(|e| e.to_string())?;
        let provider = ProviderSettings {
            name: "oidc".into(),
            issuer: self.settings.issuer.clone(),
            audiences: vec![self.settings.client_id.clone()],
            leeway: Duration::from_secs(60),
            max_lifetime: ProviderSettings::DEFAULT_MAX_LIFETIME,
            max_token_bytes: 16 * 1024,
            require_at_jwt: false,
            id_tokens: true,
        };
        let store = KeyStore::with_source(Vec::new(), Arc::new(source), Duration::from_secs(30));
        store.refresh().await.map_err(|e| e.to_string())?;
        Ok(Discovered {
            authorization_endpoint: endpoint("authorization_endpoint")?,
            token_endpoint,
            iss_parameter: doc["authorization_response_iss_parameter_supported"] == true,
            verifier: Authenticator::new(vec![Provider::new(provider, store)], None),
            keys_fetched: std::sync::Mutex::new(Instant::now()),
        })
    }

    /// Send the browser to the provider to log in, remembering where it
    /// was going.
    pub(crate) async fn login(&self, path_and_query: &str) -> Answer {
        let Some(d) = self.discovered().await else { return Answer::refuse(ReasonCode::UpstreamUnavailable) };
        let (Some(state), Some(nonce), Some(verifier)) = (session::random(), session::random(), session::random())
        else {
            return Answer::refuse(ReasonCode::UpstreamUnavailable);
        };
        let login = LoginState {
            state: state.clone(),
            nonce: nonce.clone(),
            verifier: verifier.clone(),
            return_to: session::return_to(path_and_query),
            expires: crate::handler::now_secs() + session::LOGIN_TTL,
        };
        let Some(sealed) = session::seal(&self.sealer, session::STATE_PURPOSE, &login) else {
            return Answer::refuse(ReasonCode::UpstreamUnavailable);
        };
        let mut query = form_urlencoded::Serializer::new(String::new());
        query
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.settings.client_id)
            .append_pair("redirect_uri", &self.settings.redirect_uri)
            .append_pair("scope", &self.settings.scopes.join(" "))
            .append_pair("state", &state)
            .append_pair("nonce", &nonce)
            .append_pair("code_challenge", &session::challenge(&verifier))
            .append_pair("code_challenge_method", "S256");
        let sep = if d.authorization_endpoint.contains('?') { '&' } else { '?' };
        let location = format!("{}{sep}{}", d.authorization_endpoint, query.finish());
        let cookie = session::set_cookie(&session::state_cookie(&state), &sealed, session::LOGIN_TTL);
        Answer {
            redirect: Some((StatusCode::FOUND, location)),
            cookies: vec![cookie],
            reason: ReasonCode::LoginRequired,
            identity: None,
        }
    }

    /// The provider sent the browser back: check everything, redeem the
    /// code, verify the ID token, start the session.
    pub(crate) async fn callback(&self, query: Option<&str>, headers: &HeaderMap) -> Answer {
        let failed = |why: &str| {
            tracing::info!(reason = why, "OpenID login failed");
            Answer::refuse(ReasonCode::LoginFailed)
        };
        let mut params = std::collections::HashMap::new();
        for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            if params.insert(k.into_owned(), v.into_owned()).is_some() {
                return failed("repeated parameter in the callback");
            }
        }
        let Some(state) = params.get("state") else { return failed("no state") };
        let cookie_name = session::state_cookie(state);
        let Some(login) = session::cookie(headers, &cookie_name)
            .and_then(|c| session::open::<LoginState>(&self.sealer, session::STATE_PURPOSE, c))
        else {
            return failed("no login state for this state (another browser, or expired)");
        };
        let clear_state = session::set_cookie(&cookie_name, "", 0);
        let failed = |why: &str| {
            let mut a = failed(why);
            a.cookies.push(clear_state.clone());
            a
        };
        if !ward_crypto::constant_time_eq(login.state.as_bytes(), state.as_bytes())
            || login.expires <= crate::handler::now_secs()
        {
            return failed("state mismatch or login expired");
        }
        if let Some(e) = params.get("error") {
            return failed(&format!("the provider answered {e}"));
        }
        let Some(d) = self.discovered().await else { return failed("provider not discovered") };
        match params.get("iss") {
            Some(iss) if *iss != self.settings.issuer => return failed("iss of another provider (mix-up)"),
            None if d.iss_parameter => return failed("iss missing though the provider sends it"),
            _ => {}
        }
        let Some(code) = params.get("code") else { return failed("no code") };
        let id_token = match self.redeem(&d, code, &login.verifier).await {
            Ok(t) => t,
            Err(e) => return failed(&format!("token request: {e}")),
        };
        let stale = d.keys_fetched.lock().map(|t| t.elapsed() > KEYS_MAX_AGE).unwrap_or(true);
        if stale && let Some(p) = d.verifier.providers().first() {
            match p.keys().refresh().await {
                Ok(()) => {
                    if let Ok(mut t) = d.keys_fetched.lock() {
                        *t = Instant::now();
                    }
                }
                Err(e) => tracing::warn!(error = %e, "OpenID provider keys not refreshed; using the previous ones"),
            }
        }
        let now = crate::handler::now_secs();
        let identity = match d.verifier.authenticate(&id_token, now, |_| true).await {
            Ok(i) => i,
            Err(e) => return failed(&format!("ID token refused: {}", e.0)),
        };
        let nonce_ok = identity
            .claims
            .get("nonce")
            .and_then(Value::as_str)
            .is_some_and(|n| ward_crypto::constant_time_eq(n.as_bytes(), login.nonce.as_bytes()));
        if !nonce_ok {
            return failed("ID token nonce does not match");
        }
        if identity.claims.get("azp").and_then(Value::as_str).is_some_and(|a| a != self.settings.client_id) {
            return failed("ID token issued to another party (azp)");
        }
        let Some(sid) = session::random() else { return failed("no randomness") };
        let mut s = Session {
            sid,
            iss: identity.issuer.to_string(),
            sub: identity.principal.as_str().to_owned(),
            claims: ward_core::Claims::new(),
            created: now,
            seen: now,
        };
        s.claims = session::session_claims(&identity.claims, &self.sealer, &s);
        let Some(sealed) = session::seal(&self.sealer, session::SESSION_PURPOSE, &s) else {
            return failed("session could not be sealed");
        };
        let absolute = i64::try_from(self.settings.session_absolute.as_secs()).unwrap_or(i64::MAX);
        Answer {
            redirect: Some((StatusCode::SEE_OTHER, login.return_to)),
            cookies: vec![session::set_cookie(session::SESSION_COOKIE, &sealed, absolute), clear_state.clone()],
            reason: ReasonCode::LoginSucceeded,
            identity: Some(self.identity(&s)),
        }
    }

    /// Redeem `code` at the token endpoint (client_secret_basic, PKCE); the ID token.
    async fn redeem(&self, d: &Discovered, code: &str, verifier: &str) -> Result<String, String> {
        let form = form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "authorization_code")
            .append_pair("code", code)
            .append_pair("redirect_uri", &self.settings.redirect_uri)
            .append_pair("code_verifier", verifier)
            .finish();
        // RFC 6749 §2.3.1: id and secret are form-encoded before base64.
        let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let basic = Zeroizing::new(format!(
            "Basic {}",
            STANDARD.encode(format!("{}:{}", enc(&self.settings.client_id), enc(&self.secret)))
        ));
        let mut authorization = HeaderValue::from_str(&basic).map_err(|_| "unusable client credentials".to_owned())?;
        authorization.set_sensitive(true);
        let request = http::Request::post(d.token_endpoint.clone())
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::ACCEPT, "application/json")
            .header(header::AUTHORIZATION, authorization)
            .body(Full::new(Bytes::from(form)))
            .map_err(|e| e.to_string())?;
        let (status, body) = self.call(request).await?;
        let v: Value = serde_json::from_slice(&body).map_err(|_| format!("status {status}, not JSON"))?;
        if status != StatusCode::OK {
            return Err(format!("status {status}, error {}", v["error"]));
        }
        v["id_token"].as_str().map(str::to_owned).ok_or_else(|| "no id_token in the answer".into())
    }

    fn identity(&self, s: &Session) -> Identity {
        let absolute = i64::try_from(self.settings.session_absolute.as_secs()).unwrap_or(i64::MAX);
        // A session is as old as its login: `iat` and `auth_time` are kept
        // (the login time stands in where the ID token's were trimmed), so a
        // cut-off of the user after the login ends the session.
        let mut claims = s.claims.clone();
        for k in ["iat", "auth_time"] {
            claims.entry(k).or_insert_with(|| serde_json::json!(s.created));
        }
        Identity {
            principal: Principal::new(s.sub.as_str()),
            issuer: Arc::from(s.iss.as_str()),
            provider: Arc::from("oidc-session"),
            claims: Arc::new(claims),
            expires_at: s.created.saturating_add(absolute),
        }
    }

    /// The session a request carries, if it is valid now, and the cookie to
    /// send back when its idle clock should slide.
    pub(crate) fn session(&self, headers: &HeaderMap, now: i64) -> Option<(Identity, Option<HeaderValue>)> {
        let text = session::cookie(headers, session::SESSION_COOKIE)?;
        let mut s: Session = session::open(&self.sealer, session::SESSION_PURPOSE, text)?;
        let idle = i64::try_from(self.settings.session_idle.as_secs()).unwrap_or(i64::MAX);
        let absolute = i64::try_from(self.settings.session_absolute.as_secs()).unwrap_or(i64::MAX);
        if s.iss != self.settings.issuer || self.ended.is_revoked("session", &s.sid) {
            return None;
        }
        let touch = match session::freshness(&s, now, idle, absolute) {
            Freshness::Ended => return None,
            Freshness::Fresh => None,
            Freshness::Touch => {
                s.seen = now;
                session::seal(&self.sealer, session::SESSION_PURPOSE, &s)
                    .map(|sealed| session::set_cookie(session::SESSION_COOKIE, &sealed, s.created + absolute - now))
                    .and_then(|c| HeaderValue::from_str(&c).ok())
            }
        };
        Some((self.identity(&s), touch))
    }

    /// End the session the request carries (its id is refused from now on,
    /// even if the cookie was copied) and clear the cookie.
    pub(crate) fn logout(&self, headers: &HeaderMap) -> Answer {
        let now = crate::handler::now_secs();
        let absolute = i64::try_from(self.settings.session_absolute.as_secs()).unwrap_or(i64::MAX);
        let identity = session::cookie(headers, session::SESSION_COOKIE)
            .and_then(|t| session::open::<Session>(&self.sealer, session::SESSION_PURPOSE, t))
            .map(|s| {
                let until = u64::try_from(s.created.saturating_add(absolute)).unwrap_or(0);
                self.ended.revoke("session", &s.sid, until);
                self.identity(&s)
            });
        self.ended.prune(u64::try_from(now).unwrap_or(0));
        Answer {
            redirect: Some((StatusCode::SEE_OTHER, self.settings.post_logout_redirect.clone())),
            cookies: vec![session::set_cookie(session::SESSION_COOKIE, "", 0)],
            reason: ReasonCode::SessionEnded,
            identity,
        }
    }
}
