//! The admin API: audit checkpoints and proofs for auditors, health for
//! orchestrators. Plain HTTP/1.1 on a loopback address (the configuration
//! refuses anything else), on the control runtime, apart from the data path.
//!
//! | route | answer |
//! |---|---|
//! | `GET /audit/checkpoint` | the latest signed checkpoint (C2SP signed note) |
//! | `GET /audit/proof/inclusion?index=I[&size=N]` | inclusion proof document (`ward audit verify-proof` checks it) |
//! | `GET /audit/proof/consistency?from=M[&to=N]` | consistency proof document |
//! | `GET /healthz` | 200 while the process runs |
//! | `GET /readyz` | 200 while the audit log takes records, else 503 |
//!
//! Proofs carry hashes only, never record bodies. Every audit route request
//! is itself an audit event; health probes are not (they would flood it).

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use ward_audit::{AuditSink, LogSink, TreeStore, proofs};
use ward_core::{Effect, ReasonCode};

/// The admin API's service (the front door in `ward_serve` accepts, times
/// out and caps its connections).
#[derive(Clone)]
pub(crate) struct Service {
    pub(crate) log: Arc<LogSink>,
    pub(crate) audit: Arc<dyn AuditSink>,
    /// `[admin.limits]`: target and head sizes.
    pub(crate) limits: Arc<ward_config::Limits>,
    /// The audit key, for the caller's address in records.
    pub(crate) hasher: ward_crypto::KeyedHasher,
    /// The caller's address.
    pub(crate) peer: std::net::IpAddr,
}

impl hyper::service::Service<Request<Incoming>> for Service {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let mut response = handle(&req, self);
        ward_serve::headers::secure(response.headers_mut(), true);
        std::future::ready(Ok(response))
    }
}

fn reply(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, http::HeaderValue::from_static(content_type));
    r.headers_mut().insert(header::CACHE_CONTROL, http::HeaderValue::from_static("no-store"));
    r.headers_mut().insert("x-content-type-options", http::HeaderValue::from_static("nosniff"));
    r
}

fn error(status: StatusCode, word: &str) -> Response<Full<Bytes>> {
    reply(status, "application/json", serde_json::json!({ "error": word }).to_string())
}

fn param(query: &str, name: &str) -> Result<Option<u64>, ()> {
    for pair in query.split('&') {
        if let Some(v) = pair.strip_prefix(name).and_then(|r| r.strip_prefix('=')) {
            return v.parse().map(Some).map_err(|_| ());
        }
    }
    Ok(None)
}

fn handle(req: &Request<Incoming>, svc: &Service) -> Response<Full<Bytes>> {
    let (log, audit) = (&*svc.log, &*svc.audit);
    let early = ward_serve::headers::over_limits(req.uri(), req.headers(), &svc.limits);
    let path = req.uri().path();
    if early.is_none() {
        match (req.method(), path) {
            (&Method::GET, "/healthz") => return reply(StatusCode::OK, "text/plain", "ok\n".into()),
            (&Method::GET, "/readyz") => {
                return match audit.ready() {
                    Ok(()) => reply(StatusCode::OK, "text/plain", "ready\n".into()),
                    Err(_) => reply(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "audit log unavailable\n".into()),
                };
            }
            _ => {}
        }
    }
    let (response, reason) = match early {
        Some((status, reason)) => (error(status, ward_serve::headers::error_word(status)), reason),
        None => (audit_route(req, log), ReasonCode::AdminRequest),
    };
    let mut record = crate::audit::event(
        "admin",
        req.method().as_str(),
        reason,
        if response.status().is_success() { Effect::Allow } else { Effect::Deny },
    );
    record.path = ward_audit::bounded_value(ward_crypto::mask_personal_data(path));
    record.status = response.status().as_u16();
    record.protocol = "HTTP/1.1";
    record.client_ip_hmac = svc.hasher.tag_hex(svc.peer.to_string().as_bytes());
    let request_id = record.request_id.clone();
    if audit.record(record).is_err() {
        // Fail closed like the data path: nothing unrecorded is served.
        return error(StatusCode::SERVICE_UNAVAILABLE, "service_unavailable");
    }
    let mut response = response;
    if let Ok(v) = http::HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", v);
    }
    response
}

fn audit_route(req: &Request<Incoming>, log: &LogSink) -> Response<Full<Bytes>> {
    if req.method() != Method::GET {
        return error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    }
    let query = req.uri().query().unwrap_or("");
    let latest = log.latest_checkpoint();
    let doc = match req.uri().path() {
        "/audit/checkpoint" => {
            return match latest {
                Some(c) => reply(StatusCode::OK, "text/plain; charset=utf-8", c.note),
                None => error(StatusCode::NOT_FOUND, "no_checkpoint_yet"),
            };
        }
        "/audit/proof/inclusion" => {
            let (Ok(Some(index)), Ok(size)) = (param(query, "index"), param(query, "size")) else {
                return error(StatusCode::BAD_REQUEST, "bad_request");
            };
            let Some(size) = size.or(latest.as_ref().map(|c| c.checkpoint.size)) else {
                return error(StatusCode::NOT_FOUND, "no_checkpoint_yet");
            };
            let anchor = anchor_at(log, latest.as_ref(), size);
            tree(log).and_then(|t| proofs::inclusion(&t, index, size, anchor.as_ref()))
        }
        "/audit/proof/consistency" => {
            let (Ok(Some(from)), Ok(to)) = (param(query, "from"), param(query, "to")) else {
                return error(StatusCode::BAD_REQUEST, "bad_request");
            };
            let Some(to) = to.or(latest.as_ref().map(|c| c.checkpoint.size)) else {
                return error(StatusCode::NOT_FOUND, "no_checkpoint_yet");
            };
            let anchor = anchor_at(log, latest.as_ref(), to);
            tree(log).and_then(|t| proofs::consistency(&t, from, to, anchor.as_ref()))
        }
        _ => return error(StatusCode::NOT_FOUND, "not_found"),
    };
    match doc {
        Ok(doc) => reply(StatusCode::OK, "application/json", doc.to_string()),
        // Out-of-range sizes and indices: the caller's mistake.
        Err(_) => error(StatusCode::BAD_REQUEST, "bad_request"),
    }
}

/// The signed checkpoint a proof at `size` is anchored in: the latest, or
/// the one of that size in the history.
fn anchor_at(
    log: &LogSink,
    latest: Option<&ward_audit::checkpoints::SignedCheckpoint>,
    size: u64,
) -> Option<ward_audit::checkpoints::SignedCheckpoint> {
    match latest {
        Some(c) if c.checkpoint.size == size => Some(c.clone()),
        _ => ward_audit::checkpoints::at_size(log.dir(), log.verifier(), size),
    }
}

/// The stored tree, read-only. Its files only ever hold records that are
/// already durable (in `danger_async` mode: written), so no proof is served
/// for a record the log might still lose.
fn tree(log: &LogSink) -> Result<TreeStore, String> {
    TreeStore::open_read(&log.dir().join("tree")).map_err(|e| e.to_string())
}
