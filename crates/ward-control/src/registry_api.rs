//! `/registry/{name}`: the service registry over mTLS (see [`crate::registry`]).
//! Every call needs a client SVID; registrations are audited.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::http_api::{Event, PeerSvid, audit, json_response, request_id};
use crate::registry::{ENTRY_TYPE, RegistryError};
use crate::{ControlPlane, now};

fn refused(
    cp: &ControlPlane,
    ext: &axum::http::Extensions,
    (method, path, caller): (&'static str, &str, &str),
    e: &RegistryError,
) -> Response {
    let (status, word) = match e {
        RegistryError::NotFound => (StatusCode::NOT_FOUND, "not_found"),
        RegistryError::Forbidden => (StatusCode::FORBIDDEN, "forbidden"),
        RegistryError::Invalid(_) => (StatusCode::BAD_REQUEST, "bad_request"),
    };
    let id = request_id();
    if method != "GET" || status == StatusCode::FORBIDDEN {
        let reason = if status == StatusCode::FORBIDDEN {
            ward_core::ReasonCode::DeniedByPolicy
        } else {
            ward_core::ReasonCode::BadRequest
        };
        let _ = audit(cp, ext, &id, Event::new((method, path), reason, status.as_u16()).peer(caller));
    }
    json_response(status, &json!({"error": word, "request_id": id}))
}

fn unauthenticated() -> Response {
    json_response(StatusCode::UNAUTHORIZED, &json!({"error": "unauthorized", "request_id": request_id()}))
}

/// `PUT /registry/{name}` `{addresses, ttl?}`: register (or renew) with the caller's SVID.
pub(crate) async fn register(
    State(cp): State<Arc<ControlPlane>>,
    ext: axum::http::Extensions,
    axum::Extension(peer): axum::Extension<PeerSvid>,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let (Some(caller), Some(public_key)) = (peer.id().cloned(), peer.spki().map(str::to_owned)) else {
        return unauthenticated();
    };
    let path = format!("/registry/{name}");
    let who = ("PUT", path.as_str(), caller.as_str());
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return refused(&cp, &ext, who, &RegistryError::Invalid("body must be JSON".into()));
    };
    let addresses: Vec<String> = v["addresses"]
        .as_array()
        .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    let t = now();
    let mut claims =
        match cp.registry.entry_claims(&name, &caller, &public_key, &addresses, v["ttl"].as_u64().unwrap_or(60), t) {
            Ok(c) => c,
            Err(e) => return refused(&cp, &ext, who, &e),
        };
    claims.insert("iss".into(), json!(cp.settings.issuer));
    let expires = claims.get("exp").and_then(Value::as_u64).unwrap_or(t);
    let Some(signed) = cp.sign_typed(&claims, t, ENTRY_TYPE) else {
        return json_response(StatusCode::SERVICE_UNAVAILABLE, &json!({"error": "service_unavailable"}));
    };
    cp.registry.store(&name, signed.clone(), expires);
    let event = Event::new(("PUT", &path), ward_core::ReasonCode::AdminRequest, 200).peer(caller.as_str());
    let _ = audit(&cp, &ext, &request_id(), event);
    json_response(StatusCode::OK, &json!({"entry": signed, "expires": expires}))
}

/// `GET /registry/{name}`: the signed entry, for SVIDs allowed to read it.
pub(crate) async fn lookup(
    State(cp): State<Arc<ControlPlane>>,
    ext: axum::http::Extensions,
    axum::Extension(peer): axum::Extension<PeerSvid>,
    Path(name): Path<String>,
) -> Response {
    let Some(caller) = peer.id().cloned() else { return unauthenticated() };
    let path = format!("/registry/{name}");
    match cp.registry.lookup(&name, &caller, now()) {
        Ok(entry) => json_response(StatusCode::OK, &json!({"entry": entry})),
        Err(e) => refused(&cp, &ext, ("GET", &path, caller.as_str()), &e),
    }
}

/// `DELETE /registry/{name}`: deregister (writers only).
pub(crate) async fn deregister(
    State(cp): State<Arc<ControlPlane>>,
    ext: axum::http::Extensions,
    axum::Extension(peer): axum::Extension<PeerSvid>,
    Path(name): Path<String>,
) -> Response {
    let Some(caller) = peer.id().cloned() else { return unauthenticated() };
    let path = format!("/registry/{name}");
    match cp.registry.remove(&name, &caller) {
        Ok(()) => {
            let event = Event::new(("DELETE", &path), ward_core::ReasonCode::AdminRequest, 204).peer(caller.as_str());
            let _ = audit(&cp, &ext, &request_id(), event);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => refused(&cp, &ext, ("DELETE", &path, caller.as_str()), &e),
    }
}
