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
use ward_authn::verify_signature;
use ward_core::Claims;
use ward_issuer::OAuthError;
use ward_issuer::clients::{Client, GrantType};
use ward_issuer::grant::{self, TokenRequest};

use crate::admin_api;
use crate::user_grants::{self, Refusal};
use crate::{ControlPlane, now};

/// Verified tokens remembered for introspection and revocation.
const VERIFIED_CACHE: usize = 10_000;

/// The control plane's routes.
pub fn router(state: Arc<ControlPlane>) -> Router {
    Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/.well-known/oauth-authorization-server", get(discovery))
        .route("/.well-known/jwks.json", get(jwks))
        .route(crate::authorize_api::PATH, get(crate::authorize_api::show).post(crate::authorize_api::login))
        .route("/oauth2/token", post(token))
        .route("/oauth2/introspect", post(introspect))
        .route("/oauth2/revoke", post(revoke))
        .route("/admin/clients", get(admin_api::list_clients).post(admin_api::create_client))
        .route("/admin/clients/{id}", axum::routing::delete(admin_api::delete_client))
        .route("/admin/keys/rotate", post(admin_api::rotate_keys))
        .route("/admin/users", post(admin_api::create_user))
        .route("/admin/users/{name}/password", axum::routing::put(admin_api::set_password))
        .route("/admin/tokens", post(admin_api::issue_token))
        .route("/admin/certs", post(admin_api::issue_certificate))
        .route("/admin/ca/reload", post(admin_api::reload_ca))
        .route("/admin/certs/revoke", post(admin_api::revoke_certificate))
        .route("/admin/join-tokens", post(admin_api::create_join_token))
        .route("/svid/join", post(admin_api::join))
        .route("/svid/renew", post(admin_api::renew))
        .route(
            "/registry/{name}",
            get(crate::registry_api::lookup).put(crate::registry_api::register).delete(crate::registry_api::deregister),
        )
        .route("/ca/bundle.pem", get(ca_bundle))
        .route("/.well-known/spiffe-bundle", get(spiffe_bundle))
        .route("/v1/decisions/stream", get(crate::detect_api::stream))
        .route("/v1/decisions", get(crate::detect_api::live))
        .route("/admin/decisions", get(crate::detect_api::list).post(crate::detect_api::add))
        .route("/admin/decisions/{id}", axum::routing::delete(crate::detect_api::remove))
        .route("/admin/detect/status", get(crate::detect_api::status))
        .route("/admin/bouncers", post(crate::detect_api::add_bouncer))
        .route("/admin/bouncers/{name}", axum::routing::delete(crate::detect_api::remove_bouncer))
        .route("/admin/tokens/introspect", post(admin_api::introspect_token))
        .route("/admin/tokens/revoke", post(admin_api::revoke_token))
        .route("/witness/add-checkpoint", post(add_checkpoint))
        .layer(DefaultBodyLimit::max(usize::try_from(state.limits.max_body_bytes).unwrap_or(usize::MAX)))
        .layer(axum::middleware::from_fn_with_state(Arc::clone(&state), refuse_denied_certificates))
        .layer(axum::middleware::from_fn_with_state(Arc::clone(&state), crate::detect_api::refuse_blocked))
        .layer(axum::middleware::from_fn_with_state(Arc::clone(&state), harden))
        .with_state(state)
}

/// Serve `router` over TLS on `listener` until `stop` turns true, with the
/// control plane's default limits. Without the listener's client verifier
/// at hand, a resumed session that carries a client certificate is refused
/// (it cannot be judged again).
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    router: Router,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    serve_guarded(listener, tls, ward_pki::verify::PeerRecheck::new(None), router, None, stop).await;
}

/// Connections a blocked address may hold open at once on the control
/// plane: enough for an operator's CLI, too few to make a flood of TLS
/// handshakes worth anything.
pub const BLOCKED_CONNECTIONS: u32 = 4;

/// As [`serve`], judging resumed sessions' client certificates again with
/// `recheck` (the verifier `tls` was built with), and admitting addresses
/// `detector` blocks as [`serve_with`] does; refusals are only logged.
pub async fn serve_guarded(
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    recheck: ward_pki::verify::PeerRecheck,
    router: Router,
    detector: Option<Arc<ward_detect::Detector>>,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let limits = ward_config::Limits::control();
    let admission = ward_serve::Admission::new(
        detector,
        limits.max_connections_per_ip,
        &ward_serve::BlockedAddresses::Admit(BLOCKED_CONNECTIONS),
    );
    let tls = ward_serve::TlsDoor { acceptor: tokio_rustls::TlsAcceptor::from(tls), recheck, plaintext_allowed: false };
    let door = ward_serve::Door::new(
        "control plane",
        Some(tls),
        &limits,
        Arc::new(admission),
        ward_serve::Refusals::new(None),
    );
    serve_door(listener, door, router, stop).await;
}

/// Serve the control plane `cp` through Ward's front door (the one the
/// gateway uses: admission, TLS with a deadline, header and idle timeouts,
/// connection caps, maximum age, drain), with `limits` (`[control.limits]`).
///
/// Addresses the detector blocks are not simply cut off at accept, as the
/// gateway does: an operator whose own address was blocked (a brute-force
/// block caught them, or an attacker framed them) must still reach the
/// admin API to see and lift blocks. A blocked address may hold at most
/// [`BLOCKED_CONNECTIONS`] connections, and the router's first layer
/// refuses every request from it that does not carry the admin token.
/// Refusals below the router are audited like the gateway's.
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    recheck: ward_pki::verify::PeerRecheck,
    cp: &Arc<ControlPlane>,
    limits: &ward_config::Limits,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let detector = cp.detector.clone();
    let sink = cp.audit.as_ref().map(|(sink, hasher)| {
        ward_serve::refusal::AuditRefusals::new(
            Arc::clone(sink),
            hasher.clone(),
            detector.clone(),
            ward_detect::Source::TokenService,
        ) as Arc<dyn ward_serve::RefusalSink>
    });
    let admission = ward_serve::Admission::new(
        detector,
        limits.max_connections_per_ip,
        &ward_serve::BlockedAddresses::Admit(BLOCKED_CONNECTIONS),
    );
    let tls = ward_serve::TlsDoor { acceptor: tokio_rustls::TlsAcceptor::from(tls), recheck, plaintext_allowed: false };
    let door =
        ward_serve::Door::new("control plane", Some(tls), limits, Arc::new(admission), ward_serve::Refusals::new(sink));
    serve_door(listener, door, router(Arc::clone(cp)), stop).await;
}

async fn serve_door(
    listener: tokio::net::TcpListener,
    door: ward_serve::Door,
    router: Router,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let service = move |conn: Arc<ward_serve::Conn>| {
        // A client that presented an SVID (the listener verifies it when
        // the control plane runs a CA) may renew it, use the registry, and
        // get certificate-bound tokens.
        let router = router
            .clone()
            .layer(axum::Extension(Peer(conn.peer.ip())))
            .layer(axum::Extension(PeerSvid(conn.cert.clone())));
        hyper_util::service::TowerToHyperService::new(router)
    };
    let stop = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    ward_serve::serve(listener, door, service, stop).await;
}

/// The client certificate the connection's handshake verified, if any: its
/// SPIFFE ID, its SHA-256 thumbprint (RFC 8705 `x5t#S256`) that tokens
/// issued on this connection are bound to, its serial and public key.
#[derive(Debug, Clone)]
pub(crate) struct PeerSvid(pub Option<ward_serve::ClientCert>);

impl PeerSvid {
    pub(crate) fn id(&self) -> Option<&ward_core::SpiffeId> {
        self.0.as_ref().and_then(|c| c.spiffe_id.as_ref())
    }

    pub(crate) fn x5t(&self) -> Option<&str> {
        self.0.as_ref().map(|c| c.x5t.as_str())
    }

    pub(crate) fn serial(&self) -> Option<&str> {
        self.0.as_ref().and_then(|c| c.serial.as_deref())
    }

    pub(crate) fn spki(&self) -> Option<&str> {
        self.0.as_ref().and_then(|c| c.spki.as_deref())
    }

    /// Why the connection's certificate may no longer be used, if it may
    /// not — the same judgement as the gateway's, on every request.
    pub(crate) fn refusal(&self, cp: &ControlPlane, now: u64) -> Option<&'static str> {
        let cert = self.0.as_ref()?;
        let denied = |ns: &str, v: &str| cp.is_certificate_denied(ns, v, now);
        cert.refusal(denied, i64::try_from(now).unwrap_or(i64::MAX))
    }
}

/// The first and last layer of every request: the target and head
/// limits of `[control.limits]` (414, 431), then, on the way out, the
/// security headers on every response, and a generic JSON body with a
/// request id — audited with the reason — for every error answer the
/// routes did not write themselves (axum's plain-text 413 and extractor
/// rejections, its empty 404 and 405).
pub(crate) async fn harden(
    State(cp): State<Arc<ControlPlane>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let limits = &cp.limits;
    let early = ward_serve::headers::over_limits(request.uri(), request.headers(), limits);
    let method = request.method().clone();
    let path = ward_audit::bounded_value(ward_crypto::mask_personal_data(request.uri().path()));
    let mut request = request;
    let slot = Unacknowledged::default();
    request.extensions_mut().insert(slot.clone());
    let ext = request.extensions().clone();
    // Every request is answered within `idle_timeout`: the front door never
    // cuts a request whose answer is still being made, so this deadline is
    // what stops a client that announces a body and never sends it.
    let mut timed_out = false;
    let mut response = match early {
        Some((status, _)) => status.into_response(),
        None => match tokio::time::timeout(limits.idle_timeout, next.run(request)).await {
            Ok(r) => r,
            Err(_) => {
                timed_out = true;
                StatusCode::REQUEST_TIMEOUT.into_response()
            }
        },
    };
    let status = response.status();
    // The routes write their own error bodies (JSON; the login page's
    // HTML); what has no type or is plain text came from axum or hyper.
    let written = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| !v.starts_with("text/plain"));
    if (status.is_client_error() || status.is_server_error()) && !written {
        let reason = early.map_or_else(
            || match status {
                StatusCode::REQUEST_TIMEOUT => ward_core::ReasonCode::RequestTimeout,
                StatusCode::PAYLOAD_TOO_LARGE => ward_core::ReasonCode::BodyTooLarge,
                StatusCode::NOT_FOUND => ward_core::ReasonCode::NoRoute,
                StatusCode::SERVICE_UNAVAILABLE => ward_core::ReasonCode::AuditUnavailable,
                _ => ward_core::ReasonCode::BadRequest,
            },
            |(_, reason)| reason,
        );
        let id = request_id();
        let _ = audit(&cp, &ext, &id, Event::new((method.as_str(), &path), reason, status.as_u16()));
        let allow = response.headers().get(header::ALLOW).cloned();
        response = json_response(status, &json!({"error": ward_serve::headers::error_word(status), "request_id": id}));
        if let Some(allow) = allow {
            response.headers_mut().insert(header::ALLOW, allow);
        }
        if timed_out {
            // The unread body makes the connection unusable.
            response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
    }
    // No answer leaves before the records it made are durable (a refused
    // login or token request included): a crash cannot lose what a client saw.
    if slot.unrecorded() {
        response = json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"error": "service_unavailable", "request_id": request_id()}),
        );
    } else if let Some(index) = slot.latest()
        && !durable(&cp, Some(index)).await
    {
        response = json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"error": "service_unavailable", "request_id": request_id()}),
        );
    }
    ward_serve::headers::secure(response.headers_mut(), true);
    response
}

/// The latest audit record a request made, which its answer waits for
/// (`harden` puts one in every request's extensions; `audit` fills it).
#[derive(Debug, Clone, Default)]
pub(crate) struct Unacknowledged(Arc<std::sync::atomic::AtomicU64>);

/// Marks a request one of whose records could not even be queued.
const UNRECORDED: u64 = u64::MAX;

impl Unacknowledged {
    fn failed(&self) {
        self.0.store(UNRECORDED, std::sync::atomic::Ordering::Release);
    }

    fn unrecorded(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Acquire) == UNRECORDED
    }

    fn note(&self, index: u64) {
        // Never above the "unrecorded" mark, which stays once set.
        self.0.fetch_max(index.saturating_add(1).min(UNRECORDED - 1), std::sync::atomic::Ordering::AcqRel);
    }

    fn latest(&self) -> Option<u64> {
        self.0.load(std::sync::atomic::Ordering::Acquire).checked_sub(1)
    }
}

/// Refuse every request on a connection whose client certificate is
/// denied or expired now (401, connection closed): the one denial check
/// every mTLS-authenticated path (registry, SVID renewal, certificate-bound
/// tokens) stands behind, in `ward up` and `ward control` alike.
pub(crate) async fn refuse_denied_certificates(
    State(cp): State<Arc<ControlPlane>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let why = request.extensions().get::<PeerSvid>().and_then(|p| p.refusal(&cp, crate::now()));
    if let Some(why) = why {
        let id = request_id();
        let (method, path) = (request.method().as_str().to_owned(), request.uri().path().to_owned());
        let peer = request.extensions().get::<PeerSvid>().and_then(PeerSvid::id).map(|s| s.as_str().to_owned());
        let event = Event::new((&method, &path), ward_core::ReasonCode::CertificateDenied, 401);
        let event = match &peer {
            Some(p) => event.peer(p),
            None => event,
        };
        let _ = audit(&cp, request.extensions(), &id, event);
        tracing::info!(request_id = %id, reason = why, "request on a connection with a refused client certificate");
        let mut r = json_response(StatusCode::UNAUTHORIZED, &json!({"error": "unauthorized", "request_id": id}));
        r.headers_mut().insert(header::CONNECTION, axum::http::HeaderValue::from_static("close"));
        return r;
    }
    next.run(request).await
}

/// The TCP peer of a connection (for the audit record's address HMAC).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Peer(pub std::net::IpAddr);

/// One token-service event for the audit log.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Event<'a> {
    method: &'a str,
    path: &'a str,
    reason: ward_core::ReasonCode,
    status: u16,
    client_id: Option<&'a str>,
    error: Option<&'a OAuthError>,
    /// A user the event is about (stored as an HMAC).
    principal: Option<&'a str>,
    /// A certificate the CA issued: its subject (a SPIFFE ID, in clear) and serial.
    issued: Option<(&'a str, &'a str)>,
    /// A key the control plane now uses: which, and its public fingerprint.
    rotated: Option<(&'a str, &'a str)>,
    /// A certificate denied (`x509-svid <namespace>:<value>`).
    denied: Option<&'a str>,
    /// The caller's SVID (mTLS).
    peer: Option<&'a str>,
    /// Roles granted to the principal or client (privilege-escalation signal).
    granted: Option<&'a [String]>,
    /// Roles of the subject an exchanged token acts for.
    acts_for: Option<&'a [String]>,
}

impl<'a> Event<'a> {
    pub(crate) fn new((method, path): (&'a str, &'a str), reason: ward_core::ReasonCode, status: u16) -> Self {
        Self {
            method,
            path,
            reason,
            status,
            client_id: None,
            error: None,
            principal: None,
            issued: None,
            rotated: None,
            denied: None,
            peer: None,
            granted: None,
            acts_for: None,
        }
    }

    pub(crate) fn granted(mut self, roles: &'a [String]) -> Self {
        self.granted = Some(roles);
        self
    }

    pub(crate) fn acts_for(mut self, roles: &'a [String]) -> Self {
        self.acts_for = Some(roles);
        self
    }

    pub(crate) fn peer(mut self, spiffe_id: &'a str) -> Self {
        self.peer = Some(spiffe_id);
        self
    }

    pub(crate) fn client(mut self, client_id: Option<&'a str>) -> Self {
        self.client_id = client_id;
        self
    }

    pub(crate) fn error(mut self, error: &'a OAuthError) -> Self {
        self.error = Some(error);
        self
    }

    pub(crate) fn principal(mut self, principal: Option<&'a str>) -> Self {
        self.principal = principal;
        self
    }

    pub(crate) fn issued(mut self, subject: &'a str, serial: &'a str) -> Self {
        self.issued = Some((subject, serial));
        self
    }

    pub(crate) fn denied(mut self, key: &'a str) -> Self {
        self.denied = Some(key);
        self
    }

    pub(crate) fn rotated(mut self, key: &'a str, fingerprint: &'a str) -> Self {
        self.rotated = Some((key, fingerprint));
        self
    }
}

/// Record `e`. Returns the record's index when it was taken (None without
/// an audit sink).
pub(crate) fn audit(
    cp: &ControlPlane,
    ext: &axum::http::Extensions,
    request_id: &str,
    e: Event<'_>,
) -> Result<Option<u64>, ward_audit::AuditError> {
    observe(cp, ext, &e);
    let Some((sink, hasher)) = &cp.audit else { return Ok(None) };
    let decision = if e.status < 400 { ward_core::Effect::Allow } else { ward_core::Effect::Deny };
    let event = if e.issued.is_some() || e.rotated.is_some() || e.denied.is_some() {
        "key_change"
    } else if e.path.starts_with("/registry/") {
        "registry"
    } else if e.path.starts_with("/admin/") {
        "admin"
    } else if e.path.starts_with("/witness/") {
        "witness"
    } else if e.path == crate::authorize_api::PATH {
        "login"
    } else {
        "token"
    };
    let mut r = ward_audit::AuditRecord::event(
        event,
        e.method,
        e.reason,
        decision,
        ward_audit::format_rfc3339_millis(std::time::SystemTime::now()),
        request_id.to_owned(),
    );
    r.path = e.path.to_owned();
    r.status = e.status;
    r.protocol = "HTTP";
    r.client_ip_hmac = ext.get::<Peer>().map(|p| hasher.tag_hex(p.0.to_string().as_bytes())).unwrap_or_default();
    r.client_id = e.client_id.map(str::to_owned);
    r.oauth_error = e.error.map(OAuthError::code);
    r.principal_hmac = e.principal.map(|p| hasher.tag_hex(p.as_bytes()));
    if r.principal_hmac.is_some() {
        r.issuer = Some(cp.settings.issuer.clone());
    }
    if let Some((subject, serial)) = e.issued {
        r.key_change = Some(ward_audit::KeyChange {
            key: format!("x509-svid {subject}"),
            fingerprint: Some(format!("serial:{serial}")),
            outcome: "issued",
        });
    }
    r.peer_spiffe_id = e.peer.map(str::to_owned);
    if let Some(key) = e.denied {
        r.key_change = Some(ward_audit::KeyChange { key: key.to_owned(), fingerprint: None, outcome: "revoked" });
    }
    if let Some((key, fingerprint)) = e.rotated {
        r.key_change = Some(ward_audit::KeyChange {
            key: key.to_owned(),
            fingerprint: Some(fingerprint.to_owned()),
            outcome: "rotated",
        });
    }
    let written = sink.record(r);
    match &written {
        Ok(index) => {
            if let Some(slot) = ext.get::<Unacknowledged>() {
                slot.note(*index);
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "token service event could not be audited");
            if let Some(slot) = ext.get::<Unacknowledged>() {
                slot.failed();
            }
        }
    }
    written.map(Some)
}

/// Hand the event to the detector: failed logins and client
/// authentications, replays, admin calls, role grants and exchanges.
fn observe(cp: &ControlPlane, ext: &axum::http::Extensions, e: &Event<'_>) {
    use ward_detect::{Privileged, Source};
    let (Some(d), Some(peer)) = (&cp.detector, ext.get::<Peer>()) else { return };
    let event = ward_detect::Event::new(Source::TokenService, e.reason, e.status, peer.0, e.path);
    if e.status < 400 && e.path.starts_with("/admin/") {
        // The caller holds the admin token, which names nobody: it is known by its address.
        d.observe(&event.privileged(Privileged::AdminUse));
    }
    // The event's principal is whom it is about (a user, a client, a
    // grantee), in this issuer's namespace. A failure names it only if that
    // user or client exists: a name anyone can type must not be counted
    // (or blocked) on someone's behalf.
    let about = match e.reason {
        ward_core::ReasonCode::LoginFailed => e.principal.filter(|name| cp.store.user(name).ok().flatten().is_some()),
        ward_core::ReasonCode::ClientAuthenticationFailed => e.client_id.filter(|id| cp.client(id).is_some()),
        _ => e.principal.or(e.client_id),
    };
    let tried = match e.reason {
        ward_core::ReasonCode::LoginFailed => e.principal,
        ward_core::ReasonCode::ClientAuthenticationFailed => e.client_id,
        _ => None,
    };
    let mut event = event.principal(about).claimed(tried).issuer(Some(&cp.settings.issuer));
    if let Some(roles) = e.granted {
        event = event.privileged(Privileged::RoleGrant(roles));
    } else if let Some(roles) = e.acts_for {
        event = event.privileged(Privileged::ActsFor(roles));
    }
    d.observe(&event);
}

/// Wait until record `index` is durable (the token is released only then).
pub(crate) async fn durable(cp: &ControlPlane, index: Option<u64>) -> bool {
    match (&cp.audit, index) {
        (Some((sink, _)), Some(i)) => {
            matches!(tokio::time::timeout(std::time::Duration::from_secs(5), sink.durable(i)).await, Ok(Ok(())))
        }
        (None, _) => true,
        (Some(_), None) => false,
    }
}

pub(crate) fn request_id() -> String {
    ward_audit::new_event_id()
}

pub(crate) fn json_response(status: StatusCode, body: &Value) -> Response {
    bytes_response(status, bytes::Bytes::from(body.to_string()))
}

/// A JSON body already rendered.
pub(crate) fn bytes_response(status: StatusCode, body: bytes::Bytes) -> Response {
    let mut r = (status, body).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    r
}

fn oauth_error_with(e: &OAuthError, basic_used: bool, id: &str) -> Response {
    let id = id.to_owned();
    // The reason goes to the logs (and, through `refuse`, to the audit log), never to the client.
    tracing::info!(request_id = %id, error = e.code(), detail = e.detail(), "token endpoint refused a request");
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
    let mut r = json_response(status, &e.body(&id));
    if status == StatusCode::UNAUTHORIZED && basic_used {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"ward\""));
    }
    r
}

/// `POST /witness/add-checkpoint` (C2SP `tlog-witness`): cosign a log's
/// checkpoint if it is consistent with the last one cosigned for it. A 409
/// answers `text/x.tlog.size` with the size the witness holds, as the
/// specification requires; other refusals are generic JSON; every call is
/// audited.
async fn add_checkpoint(State(cp): State<Arc<ControlPlane>>, ext: axum::http::Extensions, body: Bytes) -> Response {
    const WHAT: (&str, &str) = ("POST", "/witness/add-checkpoint");
    let id = request_id();
    let Some(witness) = cp.witness.clone() else {
        return json_response(StatusCode::NOT_FOUND, &json!({"error": "not_found", "request_id": id}));
    };
    // Signature checks and an fsync: off the async threads.
    let outcome = tokio::task::spawn_blocking(move || witness.add_checkpoint(&body, now())).await;
    let outcome = match outcome {
        Ok(o) => o,
        Err(_) => Err(ward_audit::witness::WitnessError::Storage("the witness task failed".into())),
    };
    match outcome {
        Ok(line) => {
            let index = audit(&cp, &ext, &id, Event::new(WHAT, ward_core::ReasonCode::CheckpointCosigned, 200));
            if !durable(&cp, index.ok().flatten()).await {
                return json_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &json!({"error": "service_unavailable", "request_id": id}),
                );
            }
            let mut r = (StatusCode::OK, line).into_response();
            r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/x.tlog.signature"));
            r
        }
        Err(e) => {
            let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
            tracing::info!(request_id = %id, error = %e, "witness refused a checkpoint");
            let _ = audit(&cp, &ext, &id, Event::new(WHAT, ward_core::ReasonCode::CheckpointRefused, status.as_u16()));
            if let ward_audit::witness::WitnessError::Conflict { size } = e {
                let mut r = (status, format!("{size}\n")).into_response();
                r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/x.tlog.size"));
                return r;
            }
            json_response(status, &json!({"error": ward_serve::headers::error_word(status), "request_id": id}))
        }
    }
}

/// OpenID Connect discovery and RFC 8414 metadata (one document).
async fn discovery(State(cp): State<Arc<ControlPlane>>) -> Response {
    let scopes: Vec<String> = cp.clients().into_iter().flat_map(|c| c.scopes.into_iter()).collect();
    let alg = cp.settings.key_alg.as_str();
    json_response(StatusCode::OK, &ward_issuer::discovery::document(&cp.settings.issuer, alg, &scopes))
}

async fn jwks(State(cp): State<Arc<ControlPlane>>) -> Response {
    let Some(set) = cp.jwks(now()) else {
        return json_response(StatusCode::SERVICE_UNAVAILABLE, &json!({"error": "service_unavailable"}));
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

/// The trust bundle (the CA's root certificates, PEM): public, like a JWKS.
async fn ca_bundle(State(cp): State<Arc<ControlPlane>>) -> Response {
    match cp.ca.load_full() {
        Some(ca) => {
            let mut r = (StatusCode::OK, ca.bundle_pem.clone()).into_response();
            r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-pem-file"));
            r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
            r
        }
        None => json_response(StatusCode::NOT_FOUND, &json!({"error": "not_found"})),
    }
}

/// The trust bundle in the SPIFFE bundle format (a JWK set of `x509-svid` keys).
async fn spiffe_bundle(State(cp): State<Arc<ControlPlane>>) -> Response {
    match cp.ca.load_full() {
        Some(ca) => {
            let mut r = bytes_response(StatusCode::OK, bytes::Bytes::from(ca.spiffe_bundle.clone()));
            r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
            r.headers_mut().remove(header::PRAGMA);
            r
        }
        None => json_response(StatusCode::NOT_FOUND, &json!({"error": "not_found"})),
    }
}

/// Parse an `application/x-www-form-urlencoded` body, refusing repeated parameters.
pub(crate) fn form(headers: &HeaderMap, body: &[u8]) -> Result<HashMap<String, String>, OAuthError> {
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
) -> (Result<Arc<Client>, OAuthError>, bool) {
    let basic = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Basic "));
    let posted = params.get("client_secret");
    // private_key_jwt (RFC 7523): the only method, or an error.
    if params.contains_key("client_assertion") || params.contains_key("client_assertion_type") {
        if basic.is_some() || posted.is_some() {
            return (
                Err(OAuthError::InvalidRequest("more than one client authentication method".into())),
                basic.is_some(),
            );
        }
        return (private_key_jwt(cp, params), false);
    }
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
        (None, None) => {
            // `none` (RFC 6749 §2.1, OAuth 2.0 for native apps): only a
            // registered public client is known by its id alone.
            let public = params.get("client_id").and_then(|i| cp.client(i)).filter(|c| c.is_public());
            return match public {
                Some(c) => (Ok(c), false),
                None => (Err(OAuthError::InvalidClient("no client authentication".into())), false),
            };
        }
    };
    let result = match cp.client(&id) {
        Some(c) => c.authenticate(&secret).map(|()| c),
        None => {
            // Same work and the same answer as a wrong secret.
            let _ = ward_issuer::clients::ClientSecret::generate();
            Err(OAuthError::InvalidClient(format!("unknown client `{id}`")))
        }
    };
    (result, basic.is_some())
}

/// A refusal of the token endpoint (or introspection, revocation): audited
/// with its reason code, answered with the OAuth2 code only.
fn refuse(
    cp: &ControlPlane,
    ext: &axum::http::Extensions,
    path: &str,
    client: Option<&str>,
    e: &OAuthError,
    basic: bool,
) -> Response {
    let reason = if matches!(e, OAuthError::InvalidClient(_)) {
        ward_core::ReasonCode::ClientAuthenticationFailed
    } else {
        ward_core::ReasonCode::TokenRequestRefused
    };
    refuse_as(cp, ext, Event::new(("POST", path), reason, e.status()).client(client).error(e), basic)
}

/// A refusal audited as `event` (whose error is what the client is told).
fn refuse_as(cp: &ControlPlane, ext: &axum::http::Extensions, event: Event<'_>, basic: bool) -> Response {
    let id = request_id();
    let _ = audit(cp, ext, &id, event);
    let fallback = OAuthError::TemporarilyUnavailable("refusal without an error".into());
    oauth_error_with(event.error.unwrap_or(&fallback), basic, &id)
}

/// A request's form parameters, its authenticated client, and whether HTTP Basic was used.
type Authenticated = (HashMap<String, String>, Arc<Client>, bool);

/// A client-authenticated form request to `path`: its parameters, the
/// client, and whether HTTP Basic was used — or the refusal (audited) of a
/// malformed body or a failed client authentication.
fn authenticated(
    cp: &ControlPlane,
    ext: &axum::http::Extensions,
    headers: &HeaderMap,
    body: &[u8],
    path: &str,
) -> Result<Authenticated, Box<Response>> {
    let params = form(headers, body).map_err(|e| Box::new(refuse(cp, ext, path, None, &e, false)))?;
    match authenticate(cp, headers, &params) {
        (Ok(client), basic) if cp.principal_blocked(client.id.as_str()) => {
            // Told like a failed authentication; recorded as what it is.
            let e = OAuthError::InvalidClient("client blocked".into());
            let event = Event::new(("POST", path), ward_core::ReasonCode::PrincipalBlocked, e.status())
                .client(Some(client.id.as_str()))
                .error(&e);
            Err(Box::new(refuse_as(cp, ext, event, basic)))
        }
        (Ok(client), basic) => Ok((params, client, basic)),
        // The claimed id is decoded only for the record of a failure.
        (Err(e), basic) => Err(Box::new(refuse(cp, ext, path, claimed_client(headers, &params).as_deref(), &e, basic))),
    }
}

/// The client id a request claims (for the audit record of a failure).
fn claimed_client(headers: &HeaderMap, params: &HashMap<String, String>) -> Option<String> {
    let basic = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Basic "));
    let from_basic = basic
        .and_then(|b| STANDARD.decode(b.trim()).ok())
        .and_then(|d| String::from_utf8(d).ok())
        .and_then(|d| d.split_once(':').map(|(i, _)| i.to_owned()));
    from_basic.or_else(|| params.get("client_id").cloned()).filter(|c| ward_issuer::ClientId::new(c).is_ok())
}

/// Authenticate a `private_key_jwt` client: its assertion verifies with
/// its registered keys, names this token endpoint, and was never used before.
fn private_key_jwt(cp: &ControlPlane, params: &HashMap<String, String>) -> Result<Arc<Client>, OAuthError> {
    if params.get("client_assertion_type").map(String::as_str) != Some(ward_issuer::assertion::ASSERTION_TYPE) {
        return Err(OAuthError::InvalidRequest("unsupported client_assertion_type".into()));
    }
    let assertion =
        params.get("client_assertion").ok_or_else(|| OAuthError::InvalidRequest("client_assertion missing".into()))?;
    // The client is named by the assertion's `sub` (and `client_id`, if sent, must agree).
    let sub = assertion
        .split('.')
        .nth(1)
        .and_then(|p| URL_SAFE_NO_PAD.decode(p).ok())
        .and_then(|p| serde_json::from_slice::<Value>(&p).ok())
        .and_then(|c| c["sub"].as_str().map(str::to_owned))
        .ok_or_else(|| OAuthError::InvalidClient("assertion without sub".into()))?;
    if params.get("client_id").is_some_and(|c| *c != sub) {
        return Err(OAuthError::InvalidRequest("client_id differs from the assertion's subject".into()));
    }
    let client = cp.client(&sub).ok_or_else(|| OAuthError::InvalidClient(format!("unknown client `{sub}`")))?;
    let endpoint = format!("{}/oauth2/token", cp.settings.issuer);
    let t = now();
    // At most an hour ahead: Authlib and others default to 3600 s; the jti stays
    // in the replay set until the assertion expires.
    let verified = ward_issuer::assertion::verify(&client, assertion, &[&endpoint, &cp.settings.issuer], t, 3600)?;
    match cp.first_use(&sub, &verified.jti, verified.exp, t) {
        crate::replay::Seen::First => {}
        crate::replay::Seen::Replayed => {
            return Err(OAuthError::InvalidClient(format!("client {sub}: assertion {} replayed", verified.jti)));
        }
        crate::replay::Seen::Full => {
            return Err(OAuthError::InvalidClient(format!(
                "client {sub}: {} live assertions held; use shorter-lived ones",
                crate::replay::PER_CLIENT
            )));
        }
    }
    Ok(client)
}

async fn token(
    State(cp): State<Arc<ControlPlane>>,
    ext: axum::http::Extensions,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    const PATH: &str = "/oauth2/token";
    let (params, client, basic) = match authenticated(&cp, &ext, &headers, &body, PATH) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let who = Some(client.id.as_str());
    let grant_type = match params.get("grant_type").map(|g| GrantType::parse(g)) {
        None => return refuse(&cp, &ext, PATH, who, &OAuthError::InvalidRequest("grant_type missing".into()), basic),
        Some(Err(e)) => return refuse(&cp, &ext, PATH, who, &e, basic),
        Some(Ok(g)) => g,
    };
    let t = now();
    let mut acts_for = Vec::new();
    let issued: Result<(Value, Option<String>), Refusal> = match grant_type {
        GrantType::ClientCredentials | GrantType::TokenExchange => {
            let bound = ext.get::<PeerSvid>().and_then(|p| p.x5t().map(str::to_owned));
            service_grant(&cp, &client, &params, grant_type, t, bound.as_deref()).map(|(body, roles)| {
                acts_for = roles;
                (body, None)
            })
        }
        GrantType::AuthorizationCode | GrantType::RefreshToken => {
            // These write to the store: off the runtime.
            let (cp2, client2) = (Arc::clone(&cp), client.clone());
            let params = params.clone();
            let done = tokio::task::spawn_blocking(move || {
                if grant_type == GrantType::AuthorizationCode {
                    user_grants::authorization_code(&cp2, &client2, &params, t)
                } else {
                    user_grants::refresh_token(&cp2, &client2, &params, t)
                }
            })
            .await;
            match done {
                Ok(r) => r.map(|i| (i.body, Some(i.subject))),
                Err(_) => Err(OAuthError::TemporarilyUnavailable("grant task failed".into()).into()),
            }
        }
    };
    let (body, subject) = match issued {
        Ok(x) => x,
        Err(r) => {
            let event = Event::new(("POST", PATH), r.reason, r.error.status())
                .client(who)
                .error(&r.error)
                .principal(r.subject.as_deref());
            return refuse_as(&cp, &ext, event, basic);
        }
    };
    // Fail closed: the token leaves only once its issuance is durably recorded.
    let unavailable = || json_response(StatusCode::SERVICE_UNAVAILABLE, &json!({"error": "temporarily_unavailable"}));
    let id = request_id();
    let mut event =
        Event::new(("POST", PATH), ward_core::ReasonCode::TokenIssued, 200).client(who).principal(subject.as_deref());
    if grant_type == GrantType::TokenExchange {
        event = event.acts_for(&acts_for);
    }
    let Ok(index) = audit(&cp, &ext, &id, event) else {
        return unavailable();
    };
    if !durable(&cp, index).await {
        return unavailable();
    }
    json_response(StatusCode::OK, &body)
}

/// `client_credentials` and token exchange: tokens for services, minted
/// and signed in memory.
fn service_grant(
    cp: &ControlPlane,
    client: &Client,
    params: &HashMap<String, String>,
    grant_type: GrantType,
    t: u64,
    bound_to: Option<&str>,
) -> Result<(Value, Vec<String>), Refusal> {
    let mut audiences: Vec<String> = Vec::new();
    for key in ["resource", "audience"] {
        if let Some(v) = params.get(key) {
            audiences.push(v.clone());
        }
    }
    let request = TokenRequest { scope: params.get("scope").cloned(), audiences };
    let jti = user_grants::new_jti().ok_or_else(|| OAuthError::TemporarilyUnavailable("no randomness".into()))?;
    let exchange = grant_type == GrantType::TokenExchange;
    let mut minted = if exchange {
        exchange_grant(cp, client, params, &request, t, &jti, bound_to.is_some())?
    } else {
        grant::client_credentials(&cp.issuer, client, &request, t, &jti)?
    };
    // RFC 8705 §3: a client that authenticated over mTLS gets tokens bound to
    // its certificate; an exchange binds the new token to the caller's.
    if let Some(x5t) = bound_to {
        minted.claims.insert("cnf".into(), json!({ "x5t#S256": x5t }));
    }
    let token =
        cp.sign_access(&minted.claims, t).ok_or_else(|| OAuthError::TemporarilyUnavailable("signing failed".into()))?;
    let mut body = grant::token_response(&token, &minted);
    let mut subject_roles = Vec::new();
    if exchange {
        body["issued_token_type"] = json!(grant::ACCESS_TOKEN_TYPE);
        // The exchanged token carries its subject's roles (for detection).
        if let Some(roles) = minted.claims.get("roles").and_then(Value::as_array) {
            subject_roles = roles.iter().filter_map(Value::as_str).map(str::to_owned).collect();
        }
    }
    Ok((body, subject_roles))
}

/// RFC 8693 token exchange: the subject token must be a valid, unrevoked
/// Ward access token; the authenticated client is the actor.
fn exchange_grant(
    cp: &ControlPlane,
    client: &Client,
    params: &HashMap<String, String>,
    request: &TokenRequest,
    now: u64,
    jti: &str,
    over_mtls: bool,
) -> Result<grant::Minted, OAuthError> {
    client.may_use(GrantType::TokenExchange)?;
    let subject_token =
        params.get("subject_token").ok_or_else(|| OAuthError::InvalidRequest("subject_token missing".into()))?;
    if params.get("subject_token_type").map(String::as_str) != Some(grant::ACCESS_TOKEN_TYPE) {
        return Err(OAuthError::InvalidRequest("subject_token_type must be an access token".into()));
    }
    if params.get("requested_token_type").is_some_and(|t| t != grant::ACCESS_TOKEN_TYPE) {
        return Err(OAuthError::InvalidRequest("only access tokens are issued".into()));
    }
    if params.contains_key("actor_token") {
        return Err(OAuthError::InvalidRequest(
            "actor_token is not supported: the authenticated client is the actor".into(),
        ));
    }
    let subject = cp
        .verify_token(subject_token, now)
        .ok_or_else(|| OAuthError::InvalidGrant("subject token is not a valid Ward token".into()))?;
    // A certificate-bound token never yields a bearer token: it is
    // exchanged only over mTLS, and the new token is bound to the caller's
    // certificate.
    if subject.claims.contains_key("cnf") && !over_mtls {
        return Err(OAuthError::InvalidGrant("a certificate-bound token is exchanged only over mTLS".into()));
    }
    grant::token_exchange(&cp.issuer, client, &subject.claims, request, now, jti)
}

impl ControlPlane {
    /// `token` if it is one of ours, correctly signed by a published key,
    /// unexpired and not revoked. Verified tokens are remembered (bounded),
    /// so a token is verified once however often it is introspected; time
    /// and revocation are checked on every call.
    pub(crate) fn verify_token(&self, token: &str, now: u64) -> Option<Arc<crate::Verified>> {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
        let mut key = [0u8; 32];
        key.copy_from_slice(digest.as_ref());
        let cached = self.verified.lock().ok().and_then(|c| c.get(&key).cloned());
        let v = match cached {
            Some(v) => v,
            None => {
                let claims = self.verify_signature_and_issuer(token)?;
                let v = Arc::new(crate::Verified {
                    exp: claims.get("exp")?.as_u64()?,
                    nbf: claims.get("nbf").and_then(Value::as_u64).unwrap_or(0),
                    jti: claims.get("jti")?.as_str()?.to_owned(),
                    introspection: bytes::Bytes::from(active_answer(&claims).to_string()),
                    claims,
                });
                if let Ok(mut cache) = self.verified.lock() {
                    if cache.len() >= VERIFIED_CACHE {
                        // Expired entries first; if that is not enough, start over.
                        cache.retain(|_, v| v.exp > now);
                        if cache.len() >= VERIFIED_CACHE {
                            cache.clear();
                        }
                    }
                    cache.insert(key, Arc::clone(&v));
                }
                v
            }
        };
        let ended = ward_core::is_ended(&self.local, &self.settings.issuer, &v.claims);
        (v.exp > now && v.nbf <= now && !ended).then_some(v)
    }

    /// Type (`at+jwt`), signature (by a published key) and issuer, without time checks.
    fn verify_signature_and_issuer(&self, token: &str) -> Option<Claims> {
        let (signing_input, sig) = token.rsplit_once('.')?;
        let (header, payload) = signing_input.split_once('.')?;
        let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).ok()?).ok()?;
        // Access tokens only: an ID token (or any other JWT these keys sign)
        // is never introspected, exchanged or revoked as one.
        if !header["typ"].as_str().is_some_and(ward_authn::is_access_token_type) {
            return None;
        }
        let alg = ward_issuer::keys::issued_algorithm(header["alg"].as_str()?)?;
        let verifiers = self.verifiers.load();
        let (_, key) = verifiers.iter().find(|(kid, _)| kid.as_deref() == header["kid"].as_str())?;
        if !verify_signature(alg, key, signing_input.as_bytes(), &URL_SAFE_NO_PAD.decode(sig).ok()?) {
            return None;
        }
        let claims: Claims = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
        (claims.get("iss")?.as_str()? == self.settings.issuer).then_some(claims)
    }
}

async fn introspect(
    State(cp): State<Arc<ControlPlane>>,
    ext: axum::http::Extensions,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    const PATH: &str = "/oauth2/introspect";
    let (params, client, basic) = match authenticated(&cp, &ext, &headers, &body, PATH) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    if client.is_public() {
        // Introspection is for resource servers, which authenticate (RFC 7662 §2.1).
        let e = OAuthError::InvalidClient("a public client cannot introspect".into());
        return refuse(&cp, &ext, PATH, Some(client.id.as_str()), &e, basic);
    }
    let Some(token) = params.get("token") else {
        let e = OAuthError::InvalidRequest("token missing".into());
        return refuse(&cp, &ext, PATH, claimed_client(&headers, &params).as_deref(), &e, basic);
    };
    bytes_response(StatusCode::OK, introspection(&cp, token, Some(client.id.as_str()), now()))
}

/// The RFC 7662 answer for `token` (an access token or a refresh token),
/// as `asker` may see it: a client learns of a token only if it was issued
/// to it or names it as an audience (a resource server), RFC 7662 §4;
/// anything else is `{"active":false}`, like an unknown token. `None` is an
/// operator (the admin API), who sees every token.
pub(crate) fn introspection(cp: &ControlPlane, token: &str, asker: Option<&str>, now: u64) -> bytes::Bytes {
    const INACTIVE: &[u8] = br#"{"active":false}"#;
    if token.starts_with(ward_issuer::opaque::REFRESH_PREFIX) {
        return match cp.refresh_token(token, now) {
            Ok(Some((grant, true)))
                if asker.is_none_or(|a| a == grant.client_id)
                    && !cp.login_ended(&grant.subject, &grant.client_id, grant.auth_time) =>
            {
                bytes::Bytes::from(refresh_answer(&cp.settings.issuer, &grant).to_string())
            }
            _ => bytes::Bytes::from_static(INACTIVE),
        };
    }
    match cp.verify_token(token, now) {
        Some(v) if asker.is_none_or(|a| may_introspect(a, &v.claims)) => v.introspection.clone(),
        _ => bytes::Bytes::from_static(INACTIVE),
    }
}

/// Whether client `asker` may learn about a token with `claims`: it was
/// issued to it, or it is one of the token's audiences.
fn may_introspect(asker: &str, claims: &Claims) -> bool {
    claims.get("client_id").and_then(Value::as_str) == Some(asker)
        || match claims.get("aud") {
            Some(Value::String(a)) => a == asker,
            Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(asker)),
            _ => false,
        }
}

/// A live refresh token's RFC 7662 answer (`token_use` tells it from an
/// access token; `exp` is when its family ends).
fn refresh_answer(issuer: &str, g: &ward_issuer::refresh::RefreshGrant) -> Value {
    let scope = g.scopes.iter().map(String::as_str).collect::<Vec<_>>().join(" ");
    json!({
        "active": true,
        "token_use": "refresh_token",
        "client_id": g.client_id,
        "sub": g.subject,
        "scope": scope,
        "iss": issuer,
        "exp": g.family_expires,
        "auth_time": g.auth_time,
    })
}

/// `{"active":true,…}` with the claims RFC 7662 §2.2 names (and `act`, `auth_time`).
fn active_answer(c: &Claims) -> Value {
    let mut v = json!({ "active": true, "token_type": "Bearer", "token_use": "access_token" });
    for k in ["scope", "client_id", "sub", "aud", "iss", "exp", "iat", "nbf", "jti", "act", "auth_time", "cnf"] {
        if let Some(x) = c.get(k) {
            v[k] = x.clone();
        }
    }
    v
}

async fn revoke(
    State(cp): State<Arc<ControlPlane>>,
    ext: axum::http::Extensions,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    const PATH: &str = "/oauth2/revoke";
    let (params, client, basic) = match authenticated(&cp, &ext, &headers, &body, PATH) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let Some(token) = params.get("token") else {
        let e = OAuthError::InvalidRequest("token missing".into());
        return refuse(&cp, &ext, PATH, claimed_client(&headers, &params).as_deref(), &e, basic);
    };
    // RFC 7009 §2.2: an invalid or unknown token is not an error. Another
    // client's token is left alone and answered the same way, so the answer
    // never tells whether a token is valid (the attempt is audited).
    let other_client = || {
        let e = OAuthError::UnauthorizedClient("token was issued to another client".into());
        let event = Event::new(("POST", PATH), ward_core::ReasonCode::TokenRequestRefused, 200)
            .client(Some(client.id.as_str()))
            .error(&e);
        let _ = audit(&cp, &ext, &request_id(), event);
        json_response(StatusCode::OK, &json!({}))
    };
    let recorded = || {
        let e =
            Event::new(("POST", PATH), ward_core::ReasonCode::RevocationRecorded, 200).client(Some(client.id.as_str()));
        let _ = audit(&cp, &ext, &request_id(), e);
        json_response(StatusCode::OK, &json!({}))
    };
    let unavailable = || json_response(StatusCode::SERVICE_UNAVAILABLE, &json!({"error": "temporarily_unavailable"}));
    if token.starts_with(ward_issuer::opaque::REFRESH_PREFIX) {
        // §2: a refresh token's revocation ends its family, and the access
        // tokens issued from it.
        let (cp2, token, id) = (Arc::clone(&cp), zeroize::Zeroizing::new(token.clone()), client.id.clone());
        let done = tokio::task::spawn_blocking(move || cp2.revoke_refresh_token(&token, Some(id.as_str()), now()));
        return match done.await {
            Ok(Ok(crate::RefreshRevocation::Ended { .. })) => recorded(),
            Ok(Ok(crate::RefreshRevocation::OtherClient)) => other_client(),
            Ok(Ok(_)) => json_response(StatusCode::OK, &json!({})),
            _ => unavailable(),
        };
    }
    let Some(verified) = cp.verify_token(token, now()) else {
        return json_response(StatusCode::OK, &json!({}));
    };
    if verified.claims.get("client_id").and_then(Value::as_str) != Some(client.id.as_str()) {
        return other_client();
    }
    let (cp2, jti, exp) = (Arc::clone(&cp), verified.jti.clone(), verified.exp);
    match tokio::task::spawn_blocking(move || cp2.revoke(&jti, exp)).await {
        Ok(Ok(())) => recorded(),
        _ => unavailable(),
    }
}
