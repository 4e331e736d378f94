//! The control plane's admin API (`/admin/…`): clients, users, signing
//! keys and tokens, behind the admin bearer token. Every call is audited;
//! the ones that change state are answered only once that is recorded.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use ward_issuer::clients::{Client, GrantType};

use crate::http_api::{Event, audit, json_response, request_id};
use crate::{ControlPlane, now};

/// The admin API's guard: `Authorization: Bearer <admin token>`; anything
/// else is a generic 401 (and no admin API at all without a configured token).
pub(crate) fn admin(
    cp: &ControlPlane,
    ext: &axum::http::Extensions,
    headers: &HeaderMap,
    what: (&str, &str),
) -> Result<(), Box<Response>> {
    if is_operator(cp, headers) {
        return Ok(());
    }
    let id = request_id();
    tracing::warn!(request_id = %id, "admin API call without a valid admin token");
    let _ = audit(cp, ext, &id, Event::new(what, ward_core::ReasonCode::AdminRequest, 401));
    Err(Box::new(json_response(StatusCode::UNAUTHORIZED, &json!({"error": "unauthorized", "request_id": id}))))
}

/// Whether `headers` carry the admin API's bearer token (compared in
/// constant time).
pub(crate) fn is_operator(cp: &ControlPlane, headers: &HeaderMap) -> bool {
    // Exactly one Authorization header: with two, which one a proxy in
    // front checked is anyone's guess.
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let (first, second) = (values.next(), values.next());
    second.is_none()
        && first
            .and_then(|v| v.to_str().ok())
            // The scheme is case-insensitive (RFC 9110 §11.1).
            .and_then(|v| v.split_once(' ').filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer")))
            .is_some_and(|(_, t)| cp.is_admin(t))
}

fn client_json(c: &Client) -> Value {
    json!({
        "client_id": c.id.as_str(),
        "public": c.is_public(),
        "grants": c.grants.iter().map(|g| g.as_str()).collect::<Vec<_>>(),
        "scopes": c.scopes,
        "audiences": c.audiences,
        "token_ttl": c.token_ttl,
        "redirect_uris": c.redirect_uris,
        "roles": c.roles,
        "authentication": if c.public_jwks.is_some() { "private_key_jwt" } else { "client_secret" },
    })
}

pub(crate) async fn list_clients(
    State(cp): State<Arc<ControlPlane>>,
    ext: axum::http::Extensions,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = admin(&cp, &ext, &headers, ("GET", "/admin/clients")) {
        return *r;
    }
    json_response(StatusCode::OK, &Value::Array(cp.clients().iter().map(client_json).collect()))
}

/// The list of strings at `key` (absent: empty; anything else but a list of strings: none).
fn strings(v: &Value, key: &str) -> Option<Vec<String>> {
    match v.get(key) {
        None | Some(Value::Null) => Some(Vec::new()),
        Some(a) => a.as_array()?.iter().map(|x| x.as_str().map(str::to_owned)).collect(),
    }
}

/// The `spiffe_id` of a request body, validated.
fn spiffe_id_in(v: &Value) -> Result<ward_core::SpiffeId, Box<Response>> {
    match v["spiffe_id"].as_str().map(ward_core::SpiffeId::parse) {
        Some(Ok(id)) => Ok(id),
        Some(Err(e)) => Err(Box::new(bad_request(&format!("spiffe_id: {e}")))),
        None => Err(Box::new(bad_request("spiffe_id missing"))),
    }
}

/// An admin call about a SPIFFE ID to the CA: the admin token, a CA to
/// answer, a JSON body and its valid `spiffe_id` — or the refusal.
fn ca_request(
    cp: &ControlPlane,
    ext: &axum::http::Extensions,
    headers: &HeaderMap,
    body: &[u8],
    what: (&str, &str),
) -> Result<(Arc<crate::LoadedCa>, Value, ward_core::SpiffeId), Box<Response>> {
    admin(cp, ext, headers, what)?;
    let Some(ca) = cp.ca.load_full() else {
        return Err(Box::new(bad_request("this control plane runs no CA ([control] trust_domain)")));
    };
    let Ok(v) = serde_json::from_slice::<Value>(body) else { return Err(Box::new(bad_request("body must be JSON"))) };
    let id = spiffe_id_in(&v)?;
    Ok((ca, v, id))
}

pub(crate) fn bad_request(message: &str) -> Response {
    json_response(StatusCode::BAD_REQUEST, &json!({"error": "bad_request", "message": message}))
}

pub(crate) async fn create_client(
    State(cp): State<Arc<ControlPlane>>,
    ext: axum::http::Extensions,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    const WHAT: (&str, &str) = ("POST", "/admin/clients");
    if let Err(r) = admin(&cp, &ext, &headers, WHAT) {
        return *r;
    }
    let Ok(v) = serde_json::from_slice::<Value>(&body) else { return bad_request("body must be JSON") };
    let (Some(id), Some(grants), Some(scopes), Some(audiences), Some(redirect_uris), Some(roles)) = (
        v["client_id"].as_str(),
        strings(&v, "grants"),
        strings(&v, "scopes"),
        strings(&v, "audiences"),
        strings(&v, "redirect_uris"),
        strings(&v, "roles"),
    ) else {
        return bad_request("expected client_id and lists of strings grants, scopes, audiences, redirect_uris, roles");
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
        jwks: v.get("jwks").filter(|j| !j.is_null()).map(Value::to_string),
        redirect_uris,
        roles,
    };
    let granted = spec.roles.clone();
    let public = v["public"].as_bool().unwrap_or(false);
    let created =
        blocking(
            &cp,
            move |cp| {
                if public { cp.create_public_client(&spec).map(|()| None) } else { cp.create_client(&spec) }
            },
        );
    let secret = match created.await {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let e = Event::new(WHAT, ward_core::ReasonCode::AdminRequest, 201).client(Some(id)).granted(&granted);
    if audit(&cp, &ext, &request_id(), e).is_err() {
        return unavailable();
    }
    let mut body = json!({"client_id": id});
    if let Some(secret) = &secret {
        body["client_secret"] = json!(secret.expose());
    }
    json_response(StatusCode::CREATED, &body)
}

pub(crate) async fn delete_client(
    State(cp): State<Arc<ControlPlane>>,
    ext: axum::http::Extensions,
    headers: HeaderMap,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Response {
    const WHAT: (&str, &str) = ("DELETE", "/admin/clients/{id}");
    if let Err(r) = admin(&cp, &ext, &headers, WHAT) {
        return *r;
    }
    let (cp2, id2) = (Arc::clone(&cp), id.clone());
    match tokio::task::spawn_blocking(move || cp2.delete_client(&id2)).await {
        Ok(Ok(true)) => {
            let e = Event::new(WHAT, ward_core::ReasonCode::AdminRequest, 204).client(Some(&id));
            let _ = audit(&cp, &ext, &request_id(), e);
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(Ok(false)) => json_response(StatusCode::NOT_FOUND, &json!({"error": "not_found"})),
        _ => unavailable(),
    }
}

pub(crate) async fn rotate_keys(
    State(cp): State<Arc<ControlPlane>>,
    ext: axum::http::Extensions,
    headers: HeaderMap,
) -> Response {
    const WHAT: (&str, &str) = ("POST", "/admin/keys/rotate");
    if let Err(r) = admin(&cp, &ext, &headers, WHAT) {
        return *r;
    }
    let cp2 = Arc::clone(&cp);
    match tokio::task::spawn_blocking(move || cp2.rotate_keys(now())).await {
        Ok(Ok(kid)) => {
            let _ = audit(&cp, &ext, &request_id(), Event::new(WHAT, ward_core::ReasonCode::KeyRotated, 200));
            json_response(StatusCode::OK, &json!({"kid": kid, "signs_from": now() + cp.settings.publish_lead}))
        }
        _ => unavailable(),
    }
}

/// A user in an admin request body: name, password (never logged, dropped
/// zeroized) and roles.
struct UserBody {
    name: Option<String>,
    password: zeroize::Zeroizing<String>,
    roles: Vec<String>,
}

fn user_from(body: &[u8]) -> Option<UserBody> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let password = zeroize::Zeroizing::new(v.get("password")?.as_str()?.to_owned());
    Some(UserBody {
        name: v.get("username").and_then(Value::as_str).map(str::to_owned),
        password,
        roles: strings(&v, "roles")?,
    })
}

pub(crate) async fn create_user(
    State(cp): State<Arc<ControlPlane>>,
    ext: axum::http::Extensions,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    const WHAT: (&str, &str) = ("POST", "/admin/users");
    if let Err(r) = admin(&cp, &ext, &headers, WHAT) {
        return *r;
    }
    let Some(UserBody { name: Some(name), password, roles }) = user_from(&body) else {
        return bad_request("expected username, password and optionally a list of roles");
    };
    let (name2, granted) = (name.clone(), roles.clone());
    if let Err(r) = blocking(&cp, move |cp| cp.create_user(&name2, &password, &roles)).await {
        return *r;
    }
    let event = Event::new(WHAT, ward_core::ReasonCode::AdminRequest, 201).principal(Some(&name)).granted(&granted);
    let _ = audit(&cp, &ext, &request_id(), event);
    json_response(StatusCode::CREATED, &json!({"username": name}))
}

pub(crate) async fn set_password(
    State(cp): State<Arc<ControlPlane>>,
    ext: axum::http::Extensions,
    headers: HeaderMap,
    axum::extract::Path(name): axum::extract::Path<String>,
    body: Bytes,
) -> Response {
    const WHAT: (&str, &str) = ("PUT", "/admin/users/{name}/password");
    if let Err(r) = admin(&cp, &ext, &headers, WHAT) {
        return *r;
    }
    let Some(UserBody { password, .. }) = user_from(&body) else { return bad_request("expected password") };
    if let Err(r) = blocking(&cp, move |cp| cp.set_password(&name, &password)).await {
        return *r;
    }
    let _ = audit(&cp, &ext, &request_id(), Event::new(WHAT, ward_core::ReasonCode::AdminRequest, 204));
    StatusCode::NO_CONTENT.into_response()
}

/// `POST /admin/tokens` `{client_id, scope?, audiences?}`: an access token
/// for a client, as its `client_credentials` grant would give (same scope
/// and audience limits), for operators (`ward token issue`).
pub(crate) async fn issue_token(
    State(cp): State<Arc<ControlPlane>>,
    ext: axum::http::Extensions,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    const WHAT: (&str, &str) = ("POST", "/admin/tokens");
    if let Err(r) = admin(&cp, &ext, &headers, WHAT) {
        return *r;
    }
    let Ok(v) = serde_json::from_slice::<Value>(&body) else { return bad_request("body must be JSON") };
    let Some(id) = v["client_id"].as_str() else { return bad_request("client_id missing") };
    let Some(audiences) = strings(&v, "audiences") else { return bad_request("audiences must be a list of strings") };
    let Some(client) = cp.client(id).map(|c| Client::clone(&c)) else {
        return bad_request(&format!("no client `{id}`"));
    };
    let request = ward_issuer::grant::TokenRequest { scope: v["scope"].as_str().map(str::to_owned), audiences };
    let t = now();
    let Some(jti) = crate::user_grants::new_jti() else { return unavailable() };
    let minted = match ward_issuer::grant::client_credentials(&cp.issuer, &client, &request, t, &jti) {
        Ok(m) => m,
        Err(e) => return bad_request(e.detail()),
    };
    let Some(token) = cp.sign_access(&minted.claims, t) else { return unavailable() };
    let event = Event::new(WHAT, ward_core::ReasonCode::TokenIssued, 200).client(Some(id));
    let Ok(index) = audit(&cp, &ext, &request_id(), event) else { return unavailable() };
    if !crate::http_api::durable(&cp, index).await {
        return unavailable();
    }
    json_response(StatusCode::OK, &ward_issuer::grant::token_response(&token, &minted))
}

fn token_in(body: &[u8]) -> Option<zeroize::Zeroizing<String>> {
    let v: Value = serde_json::from_slice(body).ok()?;
    Some(zeroize::Zeroizing::new(v.get("token")?.as_str()?.trim().to_owned()))
}

/// `POST /admin/tokens/introspect` `{token}`: RFC 7662's answer, for any token.
pub(crate) async fn introspect_token(
    State(cp): State<Arc<ControlPlane>>,
    ext: axum::http::Extensions,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    const WHAT: (&str, &str) = ("POST", "/admin/tokens/introspect");
    if let Err(r) = admin(&cp, &ext, &headers, WHAT) {
        return *r;
    }
    let Some(token) = token_in(&body) else { return bad_request("expected {\"token\": …}") };
    let _ = audit(&cp, &ext, &request_id(), Event::new(WHAT, ward_core::ReasonCode::AdminRequest, 200));
    crate::http_api::bytes_response(StatusCode::OK, crate::http_api::introspection(&cp, &token, None, now()))
}

/// `POST /admin/tokens/revoke` `{token}` (an access or a refresh token),
/// `{jti, exp}`, `{user}` or `{client}`: revoke any token Ward issued
/// (incident response), enforced by the gateways at once. A refresh token
/// ends its family; a user or a client has every token issued to them so
/// far ended (a cut-off) and their refresh token families with it.
pub(crate) async fn revoke_token(
    State(cp): State<Arc<ControlPlane>>,
    ext: axum::http::Extensions,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    const WHAT: (&str, &str) = ("POST", "/admin/tokens/revoke");
    if let Err(r) = admin(&cp, &ext, &headers, WHAT) {
        return *r;
    }
    let v = serde_json::from_slice::<Value>(&body).unwrap_or_default();
    let owner = match (v.get("user").and_then(Value::as_str), v.get("client").and_then(Value::as_str)) {
        (Some(user), None) => Some((ward_core::TokenOwner::Subject, user.to_owned())),
        (None, Some(client)) => Some((ward_core::TokenOwner::Client, client.to_owned())),
        (None, None) => None,
        _ => return bad_request("name a user or a client, not both"),
    };
    if let Some((owner, name)) = owner {
        let (cp2, name2) = (Arc::clone(&cp), name.clone());
        return match tokio::task::spawn_blocking(move || cp2.end_tokens_of(owner, &name2, now())).await {
            Ok(Ok(ended)) => {
                let e = Event::new(WHAT, ward_core::ReasonCode::RevocationRecorded, 200);
                let e = match owner {
                    ward_core::TokenOwner::Subject => e.principal(Some(&name)),
                    ward_core::TokenOwner::Client => e.client(Some(&name)),
                };
                let _ = audit(&cp, &ext, &request_id(), e);
                json_response(
                    StatusCode::OK,
                    &json!({"cut_off": ended.cut_off, "families": ended.families, "access_tokens": ended.access}),
                )
            }
            _ => unavailable(),
        };
    }
    if let Some(token) = token_in(&body).filter(|t| t.starts_with(ward_issuer::opaque::REFRESH_PREFIX)) {
        let cp2 = Arc::clone(&cp);
        return match tokio::task::spawn_blocking(move || cp2.revoke_refresh_token(&token, None, now())).await {
            Ok(Ok(crate::RefreshRevocation::Ended { family, access })) => {
                let e = Event::new(WHAT, ward_core::ReasonCode::RevocationRecorded, 200);
                let _ = audit(&cp, &ext, &request_id(), e);
                json_response(StatusCode::OK, &json!({"family": family, "access_tokens": access}))
            }
            Ok(Ok(_)) => bad_request("not a refresh token Ward issued"),
            _ => unavailable(),
        };
    }
    let by_id = Some(&v).and_then(|v| Some((v.get("jti")?.as_str()?.to_owned(), v.get("exp")?.as_u64()?)));
    let target = match (by_id, token_in(&body)) {
        (Some(pair), None) => pair,
        (None, Some(token)) => {
            let Some(v) = cp.verify_token(&token, now()) else {
                return bad_request("not an active Ward token (expired, already revoked, or not ours)");
            };
            (v.jti.clone(), v.exp)
        }
        _ => return bad_request("expected {\"token\": …}, {\"jti\": …, \"exp\": …}, {\"user\": …} or {\"client\": …}"),
    };
    let (cp2, (jti, exp)) = (Arc::clone(&cp), target);
    let jti2 = jti.clone();
    match tokio::task::spawn_blocking(move || cp2.revoke(&jti2, exp)).await {
        Ok(Ok(())) => {
            let _ = audit(&cp, &ext, &request_id(), Event::new(WHAT, ward_core::ReasonCode::RevocationRecorded, 200));
            json_response(StatusCode::OK, &json!({"revoked": jti, "until": exp}))
        }
        _ => unavailable(),
    }
}

fn unavailable() -> Response {
    json_response(StatusCode::SERVICE_UNAVAILABLE, &json!({"error": "service_unavailable"}))
}

/// Run `f` off the async runtime (it writes the store or hashes a
/// password): [`crate::ControlError::Invalid`] is the caller's mistake (400
/// with its message), anything else 503.
async fn blocking<T: Send + 'static>(
    cp: &Arc<ControlPlane>,
    f: impl FnOnce(&ControlPlane) -> Result<T, crate::ControlError> + Send + 'static,
) -> Result<T, Box<Response>> {
    let cp = Arc::clone(cp);
    match tokio::task::spawn_blocking(move || f(&cp)).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(crate::ControlError::Invalid(m))) => Err(Box::new(bad_request(&m))),
        _ => Err(Box::new(unavailable())),
    }
}

/// `POST /admin/certs` `{spiffe_id, ttl?, csr?}`: an X.509-SVID from the
/// trust domain's CA — over the key in a PKCS#10 `csr` (the workload keeps
/// its key), or with a new key returned once. Released only once its
/// issuance (subject and serial) is durably audited.
pub(crate) async fn issue_certificate(
    State(cp): State<Arc<ControlPlane>>,
    ext: axum::http::Extensions,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    const WHAT: (&str, &str) = ("POST", "/admin/certs");
    let (ca, v, id) = match ca_request(&cp, &ext, &headers, &body, WHAT) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    if cp.is_certificate_denied(ward_core::SPIFFE_ID, id.as_str(), now()) {
        return bad_request(&format!("{id} is denied: no certificates for it"));
    }
    let ttl = v["ttl"].as_u64().map_or(ward_pki::ca::DEFAULT_SVID_TTL, std::time::Duration::from_secs);
    let issuer = &ca.issuer;
    let issued = match v["csr"].as_str() {
        Some(csr) => issuer.issue_for_csr(&id, csr, ttl).map(|svid| (svid, None)),
        None => issuer.issue(&id, ttl).map(|(svid, key)| (svid, Some(key))),
    };
    let (svid, key) = match issued {
        Ok(x) => x,
        Err(e) => return bad_request(&e.to_string()),
    };
    let event = Event::new(WHAT, ward_core::ReasonCode::CertificateIssued, 201).issued(id.as_str(), &svid.serial);
    let Ok(index) = audit(&cp, &ext, &request_id(), event) else { return unavailable() };
    if !crate::http_api::durable(&cp, index).await {
        return unavailable();
    }
    let mut answer = json!({
        "spiffe_id": id.as_str(),
        "certificate_chain": svid.chain_pem,
        "serial": svid.serial,
        "not_after": svid.not_after.unix_timestamp(),
    });
    if let Some(key) = &key {
        answer["private_key"] = json!(key.as_str());
    }
    json_response(StatusCode::CREATED, &answer)
}

/// `POST /admin/ca/reload`: load the CA's files again (after `ward ca
/// rotate`); audited as a key rotation with the new intermediate's fingerprint.
pub(crate) async fn reload_ca(
    State(cp): State<Arc<ControlPlane>>,
    ext: axum::http::Extensions,
    headers: HeaderMap,
) -> Response {
    const WHAT: (&str, &str) = ("POST", "/admin/ca/reload");
    if let Err(r) = admin(&cp, &ext, &headers, WHAT) {
        return *r;
    }
    let fingerprint = match blocking(&cp, ControlPlane::reload_ca).await {
        Ok(f) => f,
        Err(r) => return *r,
    };
    let event = Event::new(WHAT, ward_core::ReasonCode::KeyRotated, 200).rotated("ca_intermediate", &fingerprint);
    let _ = audit(&cp, &ext, &request_id(), event);
    json_response(StatusCode::OK, &json!({"intermediate": fingerprint}))
}

/// `POST /admin/certs/revoke` `{serial | spiffe_id, until?}`: deny one
/// certificate (by serial) or every certificate of a workload (by SPIFFE
/// ID) until `until` (unix time; default: the longest SVID lifetime from
/// now, after which every SVID issued before is expired anyway). Gateways
/// refuse it on their next handshake.
pub(crate) async fn revoke_certificate(
    State(cp): State<Arc<ControlPlane>>,
    ext: axum::http::Extensions,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    const WHAT: (&str, &str) = ("POST", "/admin/certs/revoke");
    if let Err(r) = admin(&cp, &ext, &headers, WHAT) {
        return *r;
    }
    let Ok(v) = serde_json::from_slice::<Value>(&body) else { return bad_request("body must be JSON") };
    let target = match (v["serial"].as_str(), v["spiffe_id"].as_str()) {
        (Some(s), None) if !s.is_empty() && s.len() <= 40 && s.bytes().all(|b| b.is_ascii_hexdigit()) => {
            (ward_core::X509_SERIAL, s.to_ascii_lowercase())
        }
        (None, Some(id)) => match ward_core::SpiffeId::parse(id) {
            Ok(id) => (ward_core::SPIFFE_ID, id.as_str().to_owned()),
            Err(e) => return bad_request(&format!("spiffe_id: {e}")),
        },
        _ => return bad_request("expected a hex serial or a spiffe_id"),
    };
    let until = v["until"].as_u64().unwrap_or_else(|| now() + ward_pki::ca::MAX_SVID_TTL.as_secs());
    let (namespace, value) = target.clone();
    if let Err(r) = blocking(&cp, move |cp| cp.deny_certificate(namespace, &value, until)).await {
        return *r;
    }
    let key = format!("x509-svid {}:{}", target.0, target.1);
    let event = Event::new(WHAT, ward_core::ReasonCode::RevocationRecorded, 200).denied(&key);
    let _ = audit(&cp, &ext, &request_id(), event);
    json_response(StatusCode::OK, &json!({"denied": target.1, "until": until}))
}

/// Longest a join token may wait to be used.
const MAX_JOIN_TTL: u64 = 24 * 3600;

/// `POST /admin/join-tokens` `{spiffe_id, ttl?}`: a one-time token (10
/// minutes by default) with which a workload gets an SVID for `spiffe_id`
/// over its own CSR (`POST /svid/join`). Stored only as a hash.
pub(crate) async fn create_join_token(
    State(cp): State<Arc<ControlPlane>>,
    ext: axum::http::Extensions,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    const WHAT: (&str, &str) = ("POST", "/admin/join-tokens");
    let (ca, v, id) = match ca_request(&cp, &ext, &headers, &body, WHAT) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    if id.trust_domain() != ca.issuer.trust_domain() {
        return bad_request(&format!("{id} is not in trust domain {}", ca.issuer.trust_domain()));
    }
    if cp.is_certificate_denied(ward_core::SPIFFE_ID, id.as_str(), now()) {
        return bad_request(&format!("{id} is denied: the CA issues nothing for it"));
    }
    let ttl = v["ttl"].as_u64().unwrap_or(600);
    if ttl == 0 || ttl > MAX_JOIN_TTL {
        return bad_request(&format!("ttl must be 1..={MAX_JOIN_TTL} seconds"));
    }
    let Ok((token, hash)) = ward_issuer::opaque::generate("wjt_") else { return unavailable() };
    let expires = now() + ttl;
    let (cp2, id2) = (Arc::clone(&cp), id.as_str().to_owned());
    match tokio::task::spawn_blocking(move || cp2.store.put_join_token(&hash, &id2, expires)).await {
        Ok(Ok(())) => {
            let _ = audit(&cp, &ext, &request_id(), Event::new(WHAT, ward_core::ReasonCode::AdminRequest, 201));
            json_response(
                StatusCode::CREATED,
                &json!({"join_token": token.as_str(), "spiffe_id": id.as_str(), "expires": expires}),
            )
        }
        _ => unavailable(),
    }
}

/// `POST /svid/join` `{join_token, csr, ttl?}`: a workload's first SVID,
/// over its own key (the CSR's), for the SPIFFE ID the one-time token was
/// made for. The token is spent whatever the outcome.
pub(crate) async fn join(State(cp): State<Arc<ControlPlane>>, ext: axum::http::Extensions, body: Bytes) -> Response {
    const WHAT: (&str, &str) = ("POST", "/svid/join");
    let refuse = |why: &str, status: StatusCode| refuse_svid(&cp, &ext, WHAT, why, status);
    let Some(ca) = cp.ca.load_full() else { return refuse("no CA", StatusCode::NOT_FOUND) };
    let Ok(v) = serde_json::from_slice::<Value>(&body) else { return refuse("not JSON", StatusCode::BAD_REQUEST) };
    let (Some(token), Some(csr)) = (v["join_token"].as_str(), v["csr"].as_str()) else {
        return refuse("join_token and csr required", StatusCode::BAD_REQUEST);
    };
    let hash = ward_issuer::opaque::hash(token);
    let cp2 = Arc::clone(&cp);
    let spiffe_id = match tokio::task::spawn_blocking(move || cp2.store.take_join_token(&hash, now())).await {
        Ok(Ok(Some(id))) => id,
        Ok(Ok(None)) => return refuse("unknown, used or expired join token", StatusCode::UNAUTHORIZED),
        _ => return unavailable(),
    };
    let Ok(id) = ward_core::SpiffeId::parse(&spiffe_id) else { return unavailable() };
    issue_to_workload(&cp, &ext, WHAT, &ca, &id, csr, v["ttl"].as_u64()).await
}

/// `POST /svid/renew` `{csr, ttl?}` over mTLS with a valid SVID: a new SVID
/// for the same SPIFFE ID over a new key (`ward agent` calls this at
/// half-life).
pub(crate) async fn renew(
    State(cp): State<Arc<ControlPlane>>,
    ext: axum::http::Extensions,
    axum::Extension(peer): axum::Extension<crate::http_api::PeerSvid>,
    body: Bytes,
) -> Response {
    const WHAT: (&str, &str) = ("POST", "/svid/renew");
    let Some(ca) = cp.ca.load_full() else {
        return json_response(StatusCode::NOT_FOUND, &json!({"error": "not_found"}));
    };
    // A denied certificate renews nothing, even where the listener has no deny-list.
    let denied_serial = peer.serial().is_some_and(|s| cp.is_certificate_denied(ward_core::X509_SERIAL, s, now()));
    let Some(id) = peer.id().cloned().filter(|_| !denied_serial) else {
        return refuse_svid(&cp, &ext, WHAT, "no valid client SVID", StatusCode::UNAUTHORIZED);
    };
    let Ok(v) = serde_json::from_slice::<Value>(&body) else { return bad_request("body must be JSON") };
    let Some(csr) = v["csr"].as_str() else { return bad_request("csr missing") };
    issue_to_workload(&cp, &ext, WHAT, &ca, &id, csr, v["ttl"].as_u64()).await
}

/// A workload's SVID request refused: logged with `why`, audited as
/// `join_refused`, answered with a generic error.
fn refuse_svid(
    cp: &ControlPlane,
    ext: &axum::http::Extensions,
    what: (&str, &str),
    why: &str,
    status: StatusCode,
) -> Response {
    let id = request_id();
    tracing::info!(request_id = %id, reason = why, "SVID request refused");
    let _ = audit(cp, ext, &id, Event::new(what, ward_core::ReasonCode::JoinRefused, status.as_u16()));
    let word = if status == StatusCode::UNAUTHORIZED { "unauthorized" } else { "bad_request" };
    json_response(status, &json!({"error": word, "request_id": id}))
}

/// Issue `id` an SVID over `csr` for a workload (join or renewal): refused
/// for a denied ID or a bad CSR, released once the issuance is durable.
async fn issue_to_workload(
    cp: &ControlPlane,
    ext: &axum::http::Extensions,
    what: (&str, &str),
    ca: &crate::LoadedCa,
    id: &ward_core::SpiffeId,
    csr: &str,
    ttl: Option<u64>,
) -> Response {
    let refuse = |why: &str, status: StatusCode| refuse_svid(cp, ext, what, why, status);
    if cp.is_certificate_denied(ward_core::SPIFFE_ID, id.as_str(), now()) {
        return refuse("denied SPIFFE ID", StatusCode::UNAUTHORIZED);
    }
    let ttl = ttl.map_or(ward_pki::ca::DEFAULT_SVID_TTL, std::time::Duration::from_secs);
    let svid = match ca.issuer.issue_for_csr(id, csr, ttl) {
        Ok(s) => s,
        Err(e) => return refuse(&e.to_string(), StatusCode::BAD_REQUEST),
    };
    let event = Event::new(what, ward_core::ReasonCode::CertificateIssued, 201).issued(id.as_str(), &svid.serial);
    let Ok(index) = audit(cp, ext, &request_id(), event) else { return unavailable() };
    if !crate::http_api::durable(cp, index).await {
        return unavailable();
    }
    json_response(
        StatusCode::CREATED,
        &json!({
            "spiffe_id": id.as_str(),
            "certificate_chain": svid.chain_pem,
            "serial": svid.serial,
            "not_after": svid.not_after.unix_timestamp(),
            "bundle": ca.bundle_pem,
        }),
    )
}
