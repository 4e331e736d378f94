//! The HTTP shell: axum routes over TLS (rustls on aws-lc-rs).
//!
//! OAuth2 request parsing is strict where the RFCs are: form bodies only,
//! every parameter at most once (RFC 6749 §3.2), one client authentication
//! method per request (§2.3), `Cache-Control: no-store` on every token
//! response (§5.1), and error bodies that carry the code, never the reason
//! (which is for the audit log).

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};
use ward_authn::{Algorithm, verify_signature};
use ward_core::Claims;
use ward_issuer::OAuthError;
use ward_issuer::clients::{Client, GrantType};
use ward_issuer::grant::{self, TokenRequest};

use crate::{ControlPlane, now};

/// Form bodies larger than this are refused (413).
const MAX_FORM: usize = 16 * 1024;

/// The control plane's routes.
pub fn router(state: Arc<ControlPlane>) -> Router {
    Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/.well-known/jwks.json", get(jwks))
        .route("/oauth2/token", post(token))
        .route("/oauth2/introspect", post(introspect))
        .route("/oauth2/revoke", post(revoke))
        .route("/admin/clients", get(admin_list_clients).post(admin_create_client))
        .route("/admin/clients/{id}", axum::routing::delete(admin_delete_client))
        .route("/admin/keys/rotate", post(admin_rotate_keys))
        .layer(DefaultBodyLimit::max(MAX_FORM))
        .with_state(state)
}

/// Serve `router` over TLS on `listener` until `stop` turns true.
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    router: Router,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.changed() => return,
        };
        let Ok((tcp, peer)) = accepted else { continue };
        let (acceptor, router) = (acceptor.clone(), router.clone());
        tokio::spawn(async move {
            let handshake = tokio::time::timeout(std::time::Duration::from_secs(10), acceptor.accept(tcp)).await;
            let Ok(Ok(tls)) = handshake else {
                tracing::debug!(%peer, "control plane TLS handshake failed");
                return;
            };
            let service = hyper_util::service::TowerToHyperService::new(router);
            let _ = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                .await;
        });
    }
}

fn request_id() -> String {
    ward_crypto::random_bytes::<16>()
        .map(ward_core::RequestId::from_random)
        .map(|r| r.as_str().to_owned())
        .unwrap_or_default()
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut r = (status, body.to_string()).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    r
}

fn oauth_error(e: &OAuthError, basic_used: bool) -> Response {
    let id = request_id();
    // The reason goes to the log (and, once wired, the audit log), never to the client.
    tracing::info!(request_id = %id, error = e.code(), detail = e.detail(), "token endpoint refused a request");
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
    let mut r = json_response(status, &e.body(&id));
    if status == StatusCode::UNAUTHORIZED && basic_used {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"ward\""));
    }
    r
}

async fn discovery(State(cp): State<Arc<ControlPlane>>) -> Response {
    let alg = cp.settings.key_alg.as_str();
    json_response(StatusCode::OK, &ward_issuer::discovery::document(&cp.settings.issuer, &[alg]))
}

async fn jwks(State(cp): State<Arc<ControlPlane>>) -> Response {
    let set = match cp.ring.read() {
        Ok(ring) => ring.jwks(now(), cp.settings.max_ttl),
        Err(_) => return json_response(StatusCode::SERVICE_UNAVAILABLE, &json!({"error": "service_unavailable"})),
    };
    let mut r = json_response(StatusCode::OK, &set);
    // Verifiers may cache the set for half the publish lead: a new key is
    // always in their cache before it signs.
    let max_age = (cp.settings.publish_lead / 2).max(1);
    if let Ok(v) = HeaderValue::from_str(&format!("public, max-age={max_age}")) {
        r.headers_mut().insert(header::CACHE_CONTROL, v);
    }
    r.headers_mut().remove(header::PRAGMA);
    r
}

/// Parse an `application/x-www-form-urlencoded` body, refusing repeated parameters.
fn form(headers: &HeaderMap, body: &[u8]) -> Result<HashMap<String, String>, OAuthError> {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if ct.split(';').next().map(str::trim) != Some("application/x-www-form-urlencoded") {
        return Err(OAuthError::InvalidRequest("content type must be application/x-www-form-urlencoded".into()));
    }
    let mut out = HashMap::new();
    for (k, v) in form_urlencoded::parse(body) {
        if out.insert(k.clone().into_owned(), v.into_owned()).is_some() {
            return Err(OAuthError::InvalidRequest(format!("parameter `{k}` repeated")));
        }
    }
    Ok(out)
}

/// Authenticate the client (`client_secret_basic` or `client_secret_post`,
/// exactly one). Returns the client and whether HTTP Basic was used.
fn authenticate(
    cp: &ControlPlane,
    headers: &HeaderMap,
    params: &HashMap<String, String>,
) -> (Result<Client, OAuthError>, bool) {
    let basic = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Basic "));
    let posted = params.get("client_secret");
    let (id, secret) = match (basic, posted) {
        (Some(_), Some(_)) => {
            return (Err(OAuthError::InvalidRequest("more than one client authentication method".into())), true);
        }
        (Some(b), None) => {
            // RFC 6749 §2.3.1: id and secret are form-urlencoded before base64.
            let decoded = STANDARD.decode(b.trim()).ok().and_then(|d| String::from_utf8(d).ok());
            let pair = decoded.as_deref().and_then(|d| d.split_once(':')).map(|(i, s)| {
                let dec =
                    |x: &str| form_urlencoded::parse(format!("x={x}").as_bytes()).next().map(|(_, v)| v.into_owned());
                (dec(i), dec(s))
            });
            match pair {
                Some((Some(i), Some(s))) => {
                    if params.get("client_id").is_some_and(|p| *p != i) {
                        return (
                            Err(OAuthError::InvalidRequest("client_id differs from the authenticated one".into())),
                            true,
                        );
                    }
                    (i, zeroize::Zeroizing::new(s))
                }
                _ => return (Err(OAuthError::InvalidClient("malformed Basic credentials".into())), true),
            }
        }
        (None, Some(s)) => match params.get("client_id") {
            Some(i) => (i.clone(), zeroize::Zeroizing::new(s.clone())),
            None => return (Err(OAuthError::InvalidRequest("client_secret without client_id".into())), false),
        },
        (None, None) => return (Err(OAuthError::InvalidClient("no client authentication".into())), false),
    };
    let clients = cp.clients.load();
    let result = match clients.get(&id) {
        Some(c) => c.authenticate(&secret).map(|()| c.clone()),
        None => {
            // Same work and the same answer as a wrong secret.
            let _ = ward_issuer::clients::ClientSecret::generate();
            Err(OAuthError::InvalidClient(format!("unknown client `{id}`")))
        }
    };
    (result, basic.is_some())
}

async fn token(State(cp): State<Arc<ControlPlane>>, headers: HeaderMap, body: Bytes) -> Response {
    let params = match form(&headers, &body) {
        Ok(p) => p,
        Err(e) => return oauth_error(&e, false),
    };
    let (client, basic) = authenticate(&cp, &headers, &params);
    let client = match client {
        Ok(c) => c,
        Err(e) => return oauth_error(&e, basic),
    };
    let grant_type = match params.get("grant_type").map(|g| GrantType::parse(g)) {
        None => return oauth_error(&OAuthError::InvalidRequest("grant_type missing".into()), basic),
        Some(Err(e)) => return oauth_error(&e, basic),
        Some(Ok(g)) => g,
    };
    if grant_type != GrantType::ClientCredentials {
        return oauth_error(
            &OAuthError::UnsupportedGrantType(format!("{} is not served yet", grant_type.as_str())),
            basic,
        );
    }
    let mut audiences: Vec<String> = Vec::new();
    for key in ["resource", "audience"] {
        if let Some(v) = params.get(key) {
            audiences.push(v.clone());
        }
    }
    let request = TokenRequest { scope: params.get("scope").cloned(), audiences };
    let t = now();
    let jti = match ward_crypto::random_bytes::<16>() {
        Ok(b) => URL_SAFE_NO_PAD.encode(b),
        Err(_) => return json_response(StatusCode::SERVICE_UNAVAILABLE, &json!({"error": "temporarily_unavailable"})),
    };
    let minted = match grant::client_credentials(&cp.issuer, &client, &request, t, &jti) {
        Ok(m) => m,
        Err(e) => return oauth_error(&e, basic),
    };
    let signed = cp
        .ring
        .read()
        .ok()
        .and_then(|ring| ring.signing_key(t).ok().and_then(|k| k.signer().sign(&minted.claims).ok()));
    match signed {
        Some(token) => json_response(StatusCode::OK, &grant::token_response(&token, &minted)),
        None => json_response(StatusCode::SERVICE_UNAVAILABLE, &json!({"error": "temporarily_unavailable"})),
    }
}

impl ControlPlane {
    /// The claims of `token` if it is one of ours, correctly signed by a
    /// published key, unexpired and not revoked.
    pub(crate) fn verify_token(&self, token: &str, now: u64) -> Option<Claims> {
        let (signing_input, sig) = token.rsplit_once('.')?;
        let (header, payload) = signing_input.split_once('.')?;
        let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).ok()?).ok()?;
        let alg = match header["alg"].as_str()? {
            "EdDSA" => Algorithm::EdDsa,
            "ES256" => Algorithm::Es256,
            _ => return None,
        };
        let verifiers = self.verifiers.load();
        let (_, key) = verifiers.iter().find(|(kid, _)| kid.as_deref() == header["kid"].as_str())?;
        if !verify_signature(alg, key, signing_input.as_bytes(), &URL_SAFE_NO_PAD.decode(sig).ok()?) {
            return None;
        }
        let claims: Claims = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
        let exp = claims.get("exp")?.as_u64()?;
        let nbf = claims.get("nbf").and_then(Value::as_u64).unwrap_or(0);
        let ours = claims.get("iss")?.as_str()? == self.settings.issuer;
        let jti = claims.get("jti")?.as_str()?;
        (ours && exp > now && nbf <= now && !self.is_revoked(jti)).then_some(claims)
    }
}

async fn introspect(State(cp): State<Arc<ControlPlane>>, headers: HeaderMap, body: Bytes) -> Response {
    let params = match form(&headers, &body) {
        Ok(p) => p,
        Err(e) => return oauth_error(&e, false),
    };
    let (client, basic) = authenticate(&cp, &headers, &params);
    if let Err(e) = client {
        return oauth_error(&e, basic);
    }
    let Some(token) = params.get("token") else {
        return oauth_error(&OAuthError::InvalidRequest("token missing".into()), basic);
    };
    let body = match cp.verify_token(token, now()) {
        None => json!({ "active": false }),
        Some(c) => {
            let mut v = json!({ "active": true, "token_type": "Bearer" });
            for k in ["scope", "client_id", "sub", "aud", "iss", "exp", "iat", "nbf", "jti"] {
                if let Some(x) = c.get(k) {
                    v[k] = x.clone();
                }
            }
            v
        }
    };
    json_response(StatusCode::OK, &body)
}

async fn revoke(State(cp): State<Arc<ControlPlane>>, headers: HeaderMap, body: Bytes) -> Response {
    let params = match form(&headers, &body) {
        Ok(p) => p,
        Err(e) => return oauth_error(&e, false),
    };
    let (client, basic) = authenticate(&cp, &headers, &params);
    let client = match client {
        Ok(c) => c,
        Err(e) => return oauth_error(&e, basic),
    };
    let Some(token) = params.get("token") else {
        return oauth_error(&OAuthError::InvalidRequest("token missing".into()), basic);
    };
    // RFC 7009 §2.2: an invalid or unknown token is not an error.
    let Some(claims) = cp.verify_token(token, now()) else {
        return json_response(StatusCode::OK, &json!({}));
    };
    if claims.get("client_id").and_then(Value::as_str) != Some(client.id.as_str()) {
        return oauth_error(&OAuthError::UnauthorizedClient("token was issued to another client".into()), basic);
    }
    let (Some(jti), Some(exp)) = (claims.get("jti").and_then(Value::as_str), claims.get("exp").and_then(Value::as_u64))
    else {
        return json_response(StatusCode::OK, &json!({}));
    };
    let (cp2, jti) = (Arc::clone(&cp), jti.to_owned());
    match tokio::task::spawn_blocking(move || cp2.revoke(&jti, exp)).await {
        Ok(Ok(())) => json_response(StatusCode::OK, &json!({})),
        _ => json_response(StatusCode::SERVICE_UNAVAILABLE, &json!({"error": "temporarily_unavailable"})),
    }
}

/// The admin API's guard: `Authorization: Bearer <admin token>`; anything
/// else is a generic 401 (and no admin API at all without a configured token).
fn admin(cp: &ControlPlane, headers: &HeaderMap) -> Result<(), Box<Response>> {
    let presented =
        headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    match presented {
        Some(t) if cp.is_admin(t) => Ok(()),
        _ => {
            let id = request_id();
            tracing::warn!(request_id = %id, "admin API call without a valid admin token");
            Err(Box::new(json_response(StatusCode::UNAUTHORIZED, &json!({"error": "unauthorized", "request_id": id}))))
        }
    }
}

fn client_json(c: &Client) -> Value {
    json!({
        "client_id": c.id.as_str(),
        "grants": c.grants.iter().map(|g| g.as_str()).collect::<Vec<_>>(),
        "scopes": c.scopes,
        "audiences": c.audiences,
        "token_ttl": c.token_ttl,
    })
}

async fn admin_list_clients(State(cp): State<Arc<ControlPlane>>, headers: HeaderMap) -> Response {
    if let Err(r) = admin(&cp, &headers) {
        return *r;
    }
    json_response(StatusCode::OK, &Value::Array(cp.clients().iter().map(client_json).collect()))
}

fn bad_request(message: &str) -> Response {
    json_response(StatusCode::BAD_REQUEST, &json!({"error": "bad_request", "message": message}))
}

async fn admin_create_client(State(cp): State<Arc<ControlPlane>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = admin(&cp, &headers) {
        return *r;
    }
    let Ok(v) = serde_json::from_slice::<Value>(&body) else { return bad_request("body must be JSON") };
    let strings = |k: &str| -> Option<Vec<String>> {
        match v.get(k) {
            None => Some(Vec::new()),
            Some(a) => a.as_array()?.iter().map(|x| x.as_str().map(str::to_owned)).collect(),
        }
    };
    let (Some(id), Some(grants), Some(scopes), Some(audiences)) =
        (v["client_id"].as_str(), strings("grants"), strings("scopes"), strings("audiences"))
    else {
        return bad_request("expected client_id and lists of strings grants, scopes, audiences");
    };
    let grants = if grants.is_empty() { vec!["client_credentials".to_owned()] } else { grants };
    let Ok(grants) = grants.iter().map(|g| GrantType::parse(g)).collect::<Result<Vec<_>, _>>() else {
        return bad_request("unknown grant type");
    };
    let spec = crate::ClientSpec {
        id: id.to_owned(),
        grants,
        scopes,
        audiences,
        token_ttl: v["token_ttl"].as_u64().unwrap_or(900),
    };
    let cp2 = Arc::clone(&cp);
    match tokio::task::spawn_blocking(move || cp2.create_client(&spec)).await {
        Ok(Ok(secret)) => {
            json_response(StatusCode::CREATED, &json!({"client_id": id, "client_secret": secret.expose()}))
        }
        Ok(Err(crate::ControlError::Invalid(m))) => bad_request(&m),
        _ => json_response(StatusCode::SERVICE_UNAVAILABLE, &json!({"error": "service_unavailable"})),
    }
}

async fn admin_delete_client(
    State(cp): State<Arc<ControlPlane>>,
    headers: HeaderMap,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Response {
    if let Err(r) = admin(&cp, &headers) {
        return *r;
    }
    let cp2 = Arc::clone(&cp);
    match tokio::task::spawn_blocking(move || cp2.delete_client(&id)).await {
        Ok(Ok(true)) => StatusCode::NO_CONTENT.into_response(),
        Ok(Ok(false)) => json_response(StatusCode::NOT_FOUND, &json!({"error": "not_found"})),
        _ => json_response(StatusCode::SERVICE_UNAVAILABLE, &json!({"error": "service_unavailable"})),
    }
}

async fn admin_rotate_keys(State(cp): State<Arc<ControlPlane>>, headers: HeaderMap) -> Response {
    if let Err(r) = admin(&cp, &headers) {
        return *r;
    }
    let cp2 = Arc::clone(&cp);
    match tokio::task::spawn_blocking(move || cp2.rotate_keys(now())).await {
        Ok(Ok(kid)) => {
            json_response(StatusCode::OK, &json!({"kid": kid, "signs_from": now() + cp.settings.publish_lead}))
        }
        _ => json_response(StatusCode::SERVICE_UNAVAILABLE, &json!({"error": "service_unavailable"})),
    }
}
