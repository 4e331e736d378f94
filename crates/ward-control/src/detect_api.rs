//! Detection on the control plane's API: the CrowdSec-compatible bouncer
//! endpoints (`/v1/decisions/stream`, `/v1/decisions`, `X-Api-Key`), the
//! operators' decisions and bouncers (`/admin/decisions`,
//! `/admin/bouncers`, `/admin/detect/status`, behind the admin token), and
//! the per-request address check for connections opened before a block.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use ward_core::ReasonCode;
use ward_detect::crowdsec::{self, Scopes};
use ward_detect::{Decision, DecisionError, Detector, Target};

use crate::ControlPlane;
use crate::admin_api::{admin, bad_request, is_operator};
use crate::http_api::{Event, Peer, audit, json_response, request_id};

/// Refuse requests from blocked addresses (403, connection closed) —
/// except those carrying the admin token, so that an operator whose address
/// is blocked can still see and lift blocks. Admin calls are audited as
/// always; the credential is compared in constant time, and a wrong one is
/// refused here like no credential at all.
pub(crate) async fn refuse_blocked(
    State(cp): State<Arc<ControlPlane>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let ip = request.extensions().get::<Peer>().map(|p| p.0);
    let blocked = matches!((cp.detector(), ip), (Some(d), Some(ip)) if d.ip_blocked(ip));
    if blocked && !is_operator(&cp, request.headers()) {
        let id = request_id();
        let (method, path) = (request.method().as_str().to_owned(), request.uri().path().to_owned());
        let event = Event::new((&method, &path), ReasonCode::AddressBlocked, 403);
        let _ = audit(&cp, request.extensions(), &id, event);
        let mut r = json_response(StatusCode::FORBIDDEN, &json!({"error": "forbidden", "request_id": id}));
        r.headers_mut().insert(axum::http::header::CONNECTION, axum::http::HeaderValue::from_static("close"));
        return r;
    }
    next.run(request).await
}

fn forbidden() -> Response {
    // CrowdSec's LAPI answers a missing or wrong key this way.
    json_response(StatusCode::FORBIDDEN, &json!({"message": "access forbidden"}))
}

/// The query parameters (the last of a repeated one wins).
fn query(uri: &axum::http::Uri) -> HashMap<String, String> {
    form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes()).into_owned().collect()
}

fn api_key(headers: &HeaderMap) -> Option<&str> {
    headers.get("x-api-key").and_then(|v| v.to_str().ok())
}

/// `GET /v1/decisions/stream?startup=true&scopes=ip,range`.
pub(crate) async fn stream(State(cp): State<Arc<ControlPlane>>, headers: HeaderMap, uri: axum::http::Uri) -> Response {
    let q = query(&uri);
    let (Some(d), Some(key)) = (cp.detector(), api_key(&headers)) else { return forbidden() };
    let startup = q.get("startup").is_some_and(|v| v == "true");
    match d.stream(key, startup, Scopes::parse(q.get("scopes").map(String::as_str))) {
        Some(answer) => json_response(StatusCode::OK, &answer),
        None => forbidden(),
    }
}

/// `GET /v1/decisions?ip=…` (bouncers in live mode): the active
/// decisions covering one address, or `null`.
pub(crate) async fn live(State(cp): State<Arc<ControlPlane>>, headers: HeaderMap, uri: axum::http::Uri) -> Response {
    let q = query(&uri);
    let (Some(d), Some(key)) = (cp.detector(), api_key(&headers)) else { return forbidden() };
    if !d.is_bouncer(key) {
        return forbidden();
    }
    let covering = q.get("ip").and_then(|v| v.parse::<std::net::IpAddr>().ok()).map(|ip| d.covering(ip));
    let covering = covering.unwrap_or_default();
    let matching: Vec<&Decision> = covering.iter().collect();
    let answer = crowdsec::stream(&matching, &[], Scopes::default(), ward_detect::detector::now_ms());
    json_response(StatusCode::OK, &answer["new"])
}

fn decision_json(d: &Decision) -> Value {
    let time = |ms: u64| ward_audit::format_rfc3339_millis(std::time::UNIX_EPOCH + Duration::from_millis(ms));
    json!({
        "id": d.id,
        "target": d.target.to_string(),
        "kind": d.target.kind(),
        "created": time(d.created),
        "until": time(d.until),
        "origin": d.origin,
        "scenario": d.scenario,
        "reason": d.reason,
        "offence": d.offence,
    })
}

fn no_detection() -> Response {
    json_response(
        StatusCode::NOT_FOUND,
        &json!({"error": "not_found", "message": "detection is off: add a [detect] section to ward.toml"}),
    )
}

/// `GET /admin/decisions`.
pub(crate) async fn list(
    State(cp): State<Arc<ControlPlane>>,
    ext: axum::http::Extensions,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = admin(&cp, &ext, &headers, ("GET", "/admin/decisions")) {
        return *r;
    }
    let Some(d) = cp.detector() else { return no_detection() };
    json_response(StatusCode::OK, &Value::Array(d.decisions().iter().map(decision_json).collect()))
}

/// `POST /admin/decisions` `{"target": "192.0.2.1" | "10.0.0.0/24" | "principal:NAME", "duration": "1h", "reason": "…"}`.
pub(crate) async fn add(
    State(cp): State<Arc<ControlPlane>>,
    ext: axum::http::Extensions,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    const WHAT: (&str, &str) = ("POST", "/admin/decisions");
    if let Err(r) = admin(&cp, &ext, &headers, WHAT) {
        return *r;
    }
    let Some(d) = cp.detector() else { return no_detection() };
    let Ok(v) = serde_json::from_slice::<Value>(&body) else { return bad_request("body must be JSON") };
    let target = match v["target"].as_str().map(Target::parse) {
        Some(Ok(t)) => t,
        Some(Err(e)) => return bad_request(&format!("target: {e}")),
        None => return bad_request("target missing (an address, a CIDR or principal:NAME)"),
    };
    let duration = match v["duration"].as_str().map(ward_core::parse_duration) {
        Some(Ok(d)) => d,
        Some(Err(e)) => return bad_request(&format!("duration: {e}")),
        None => Duration::from_secs(4 * 3600),
    };
    let reason = v["reason"].as_str().unwrap_or_default();
    if reason.len() > 512 || reason.chars().any(char::is_control) {
        return bad_request("reason: at most 512 printable characters");
    }
    match block(d, target, duration, reason).await {
        Ok(decision) => {
            let _ = audit(&cp, &ext, &request_id(), Event::new(WHAT, ReasonCode::AdminRequest, 201));
            json_response(StatusCode::CREATED, &decision_json(&decision))
        }
        Err(DecisionError::Allowlisted(t)) => {
            json_response(StatusCode::CONFLICT, &json!({"error": "conflict", "message": format!("{t} is allowlisted")}))
        }
        Err(e) => bad_request(&e.to_string()),
    }
}

/// Blocking I/O (the state file is written before the answer) off the runtime.
async fn block(d: &Arc<Detector>, target: Target, duration: Duration, reason: &str) -> Result<Decision, DecisionError> {
    let (d, reason) = (Arc::clone(d), reason.to_owned());
    tokio::task::spawn_blocking(move || d.block(target, duration, &reason))
        .await
        .unwrap_or_else(|_| Err(DecisionError::Invalid("the block task failed".into())))
}

/// `DELETE /admin/decisions/{id}`.
pub(crate) async fn remove(
    State(cp): State<Arc<ControlPlane>>,
    ext: axum::http::Extensions,
    headers: HeaderMap,
    Path(id): Path<u64>,
) -> Response {
    const WHAT: (&str, &str) = ("DELETE", "/admin/decisions/{id}");
    if let Err(r) = admin(&cp, &ext, &headers, WHAT) {
        return *r;
    }
    let Some(d) = cp.detector() else { return no_detection() };
    let d2 = Arc::clone(d);
    match tokio::task::spawn_blocking(move || d2.unblock(id)).await.ok().flatten() {
        Some(decision) => {
            let _ = audit(&cp, &ext, &request_id(), Event::new(WHAT, ReasonCode::AdminRequest, 200));
            json_response(StatusCode::OK, &decision_json(&decision))
        }
        None => json_response(
            StatusCode::NOT_FOUND,
            &json!({"error": "not_found", "message": "no active decision with that id"}),
        ),
    }
}

/// `GET /admin/detect/status`.
pub(crate) async fn status(
    State(cp): State<Arc<ControlPlane>>,
    ext: axum::http::Extensions,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = admin(&cp, &ext, &headers, ("GET", "/admin/detect/status")) {
        return *r;
    }
    let Some(d) = cp.detector() else { return no_detection() };
    json_response(StatusCode::OK, &d.status())
}

/// `POST /admin/bouncers` `{"name": "…"}` → `{"name", "api_key"}` (the key is shown once).
pub(crate) async fn add_bouncer(
    State(cp): State<Arc<ControlPlane>>,
    ext: axum::http::Extensions,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    const WHAT: (&str, &str) = ("POST", "/admin/bouncers");
    if let Err(r) = admin(&cp, &ext, &headers, WHAT) {
        return *r;
    }
    let Some(d) = cp.detector() else { return no_detection() };
    let Some(name) = serde_json::from_slice::<Value>(&body).ok().and_then(|v| v["name"].as_str().map(str::to_owned))
    else {
        return bad_request("expected {\"name\": \"…\"}");
    };
    let d2 = Arc::clone(d);
    let added = tokio::task::spawn_blocking(move || d2.add_bouncer(&name).map(|k| (name, k))).await;
    match added {
        Ok(Ok((name, key))) => {
            if audit(&cp, &ext, &request_id(), Event::new(WHAT, ReasonCode::AdminRequest, 201)).is_err() {
                return json_response(StatusCode::SERVICE_UNAVAILABLE, &json!({"error": "service_unavailable"}));
            }
            json_response(StatusCode::CREATED, &json!({"name": name, "api_key": key}))
        }
        Ok(Err(e)) => bad_request(&e.to_string()),
        Err(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

/// `DELETE /admin/bouncers/{name}`.
pub(crate) async fn remove_bouncer(
    State(cp): State<Arc<ControlPlane>>,
    ext: axum::http::Extensions,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    const WHAT: (&str, &str) = ("DELETE", "/admin/bouncers/{name}");
    if let Err(r) = admin(&cp, &ext, &headers, WHAT) {
        return *r;
    }
    let Some(d) = cp.detector() else { return no_detection() };
    let d2 = Arc::clone(d);
    if tokio::task::spawn_blocking(move || d2.remove_bouncer(&name)).await.unwrap_or(false) {
        let _ = audit(&cp, &ext, &request_id(), Event::new(WHAT, ReasonCode::AdminRequest, 204));
        StatusCode::NO_CONTENT.into_response()
    } else {
        json_response(StatusCode::NOT_FOUND, &json!({"error": "not_found"}))
    }
}
