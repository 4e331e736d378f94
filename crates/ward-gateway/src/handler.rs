//! The request pipeline: limits → normalise → route → authenticate →
//! authorize → proxy, with exactly one audit record per request, whatever
//! the outcome.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, Version};
use http_body_util::{Either, LengthLimitError, Limited};
use hyper::body::Incoming;
use ward_audit::{AuditRecord, AuditSink, format_rfc3339_millis};
use ward_authn::{Authenticator, TokenRejected};
use ward_config::{Limits, TokenSource, UnderscoreHeaders};
use ward_core::{Decision, Effect, Identity, ReasonCode, RequestId};
use ward_crypto::{KeyedHasher, mask_personal_data};
use ward_policy::{HeaderLookup, PathOptions, Request as PolicyRequest, RouteTable, normalize_path_with};

use crate::policy::{Authorizer, PolicyStore};
use crate::response::{self, Body};
use crate::upstream::Upstream;

/// What a route needs at run time besides its rules.
#[derive(Debug, Clone)]
pub(crate) struct RouteRuntime {
    /// Indexes of the providers the route accepts; `None` accepts all.
    pub providers: Option<Vec<usize>>,
    /// Index into [`Shared::upstreams`].
    pub upstream: usize,
}

/// Everything the pipeline needs, shared by all workers and connections.
#[derive(Debug)]
pub(crate) struct Shared {
    pub routes: RouteTable,
    pub route_runtime: HashMap<String, RouteRuntime>,
    pub policies: Arc<PolicyStore>,
    pub path_options: PathOptions,
    pub authn: Arc<Authenticator>,
    pub audit: Arc<dyn AuditSink>,
    pub pii_hasher: KeyedHasher,
    /// Revoked tokens (the token service pushes them; checked after every
    /// successful authentication, cached or not).
    pub revocations: Option<Arc<dyn ward_core::RevocationList>>,
    pub token_sources: Vec<TokenSource>,
    pub forward_token: bool,
    pub forward_claims: Vec<(String, HeaderName)>,
    pub limits: Limits,
    pub trusted_proxy_hops: usize,
    /// Request headers never passed upstream (method, URL, address and
    /// user overrides), also when spelled with `_`.
    pub strip_request_headers: Vec<HeaderName>,
    /// The OpenID Connect relying party for `login` routes.
    pub oidc: Option<Arc<crate::oidc::RelyingParty>>,
    /// Blocks, rate limits and the detector.
    pub protect: crate::protect::Protection,
}

/// One worker thread's view: the shared pipeline and the worker's own
/// upstream pools (a pooled connection is driven by the thread that made it,
/// so sharing pools across threads would add a cross-thread wake-up to
/// every proxied request).
#[derive(Debug)]
pub(crate) struct Worker {
    pub shared: Arc<Shared>,
    /// Indexed like the configuration's upstreams.
    pub upstreams: Vec<Upstream>,
    /// External authorizers for CUSTOM policies.
    pub authorizers: Vec<Authorizer>,
}

/// The connection's peer, with what every request on it needs computed once.
#[derive(Debug)]
pub(crate) struct Peer {
    ip: IpAddr,
    /// The peer address as an `X-Forwarded-For` value.
    forwarded_for: Option<HeaderValue>,
    /// HMAC of the address under the audit key.
    ip_tag: String,
    /// The address the client connected to.
    local: Option<SocketAddr>,
    /// The TLS server name the client asked for.
    sni: Option<Box<str>>,
    /// The client's verified SPIFFE ID (mTLS), and the same as the
    /// `x-ward-peer-spiffe-id` header value, made once per connection.
    svid: Option<(ward_core::SpiffeId, HeaderValue)>,
    /// Whether the connection is TLS (false only for PERMISSIVE plaintext).
    tls: bool,
    /// The verified client certificate: `x5t#S256` for certificate-bound
    /// tokens (RFC 8705), serial, SPIFFE ID and `notAfter`, judged on every
    /// request of the connection.
    cert: Option<ward_serve::ClientCert>,
}

impl Peer {
    /// The client's SPIFFE ID in Istio's principal form (`<trust domain>/<path>`).
    fn source_principal(&self) -> Option<&str> {
        self.svid.as_ref().and_then(|(id, _)| id.as_str().strip_prefix("spiffe://"))
    }

    /// What every request on the connection the front door accepted needs,
    /// computed once.
    pub(crate) fn from_conn(conn: &ward_serve::Conn, hasher: &KeyedHasher) -> Self {
        let ip = conn.peer.ip();
        let text = ip.to_string();
        let svid = conn.cert.as_ref().and_then(|c| c.spiffe_id.clone());
        Self {
            ip,
            forwarded_for: HeaderValue::from_str(&text).ok(),
            ip_tag: hasher.tag_hex(text.as_bytes()),
            local: conn.local,
            sni: conn.sni.clone(),
            svid: svid.and_then(|id| HeaderValue::from_str(id.as_str()).ok().map(|h| (id, h))),
            tls: conn.tls,
            cert: conn.cert.clone(),
        }
    }

    /// Why the client certificate may no longer be used, if it may not:
    /// expired, or denied (by serial or SPIFFE ID) since the connection was
    /// opened. A kept-alive connection is judged like a new one on every
    /// request.
    fn certificate_refusal(&self, revocations: Option<&dyn ward_core::RevocationList>) -> Option<&'static str> {
        let cert = self.cert.as_ref()?;
        let denied = |ns: &str, v: &str| revocations.is_some_and(|list| list.is_revoked(ns, v));
        cert.refusal(denied, ward_serve::unix_now())
    }
}

/// Request headers as policies read them (values of a repeated header joined by `,`).
struct Headers<'a>(&'a HeaderMap);

impl HeaderLookup for Headers<'_> {
    fn header(&self, name: &str) -> Option<std::borrow::Cow<'_, str>> {
        let mut values = self.0.get_all(name).iter().filter_map(|v| v.to_str().ok());
        let first = values.next()?;
        match values.next() {
            None => Some(std::borrow::Cow::Borrowed(first)),
            Some(second) => {
                let mut joined = format!("{first},{second}");
                for v in values {
                    joined.push(',');
                    joined.push_str(v);
                }
                Some(std::borrow::Cow::Owned(joined))
            }
        }
    }
}

/// What the audit record needs to know, collected as the request goes.
struct Trail {
    start: Instant,
    request_id: RequestId,
    method: String,
    path: String,
    client_ip: IpAddr,
    /// HMAC of `client_ip` when it is the peer's (computed per connection).
    client_ip_tag: Option<String>,
    protocol: &'static str,
    route: Option<String>,
    upstream: Option<Arc<str>>,
    identity: Option<Identity>,
    /// The deciding policy rule, the AUDIT mark and the bundle digest.
    policy: Option<String>,
    audit_policy: Option<String>,
    policy_digest: Option<Arc<str>>,
    /// The client's SPIFFE ID (mTLS).
    peer_spiffe_id: Option<String>,
}

impl Trail {
    /// The path as sent (its first 256 characters), for a refusal made
    /// before the path is normalised.
    fn raw_path(&mut self, uri: &http::Uri) {
        self.path = uri.path().chars().take(256).collect();
    }
}

const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// How long a forwarded response waits for its audit record to be durable
/// before the client gets a 503 instead (a disk that stopped syncing).
const AUDIT_ACK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

impl Shared {
    fn audit(&self, trail: &Trail, decision: Decision, status: u16) -> Result<u64, ward_audit::AuditError> {
        let identity = trail.identity.as_ref();
        let record = AuditRecord {
            schema: AuditRecord::SCHEMA,
            event: "request",
            time: format_rfc3339_millis(SystemTime::now()),
            request_id: trail.request_id.as_str().to_owned(),
            decision: decision.effect,
            reason: decision.reason,
            principal_hmac: identity.map(|i| self.pii_hasher.tag_hex(i.principal.as_str().as_bytes())),
            issuer: identity.map(|i| i.issuer.to_string()),
            route: trail.route.clone(),
            upstream: trail.upstream.as_ref().map(ToString::to_string),
            method: trail.method.clone(),
            path: ward_audit::bounded_value(mask_personal_data(&trail.path)),
            status,
            latency_us: u64::try_from(trail.start.elapsed().as_micros()).unwrap_or(u64::MAX),
            client_ip_hmac: trail
                .client_ip_tag
                .clone()
                .unwrap_or_else(|| self.pii_hasher.tag_hex(trail.client_ip.to_string().as_bytes())),
            protocol: trail.protocol,
            policy: trail.policy.clone(),
            audit_policy: trail.audit_policy.clone(),
            policy_digest: trail.policy_digest.as_ref().map(ToString::to_string),
            policy_change: None,
            key_change: None,
            client_id: None,
            oauth_error: None,
            peer_spiffe_id: trail.peer_spiffe_id.clone(),
            detection: None,
            connection: None,
        };
        let written = self.audit.record(record).inspect_err(|e| {
            tracing::error!(request_id = %trail.request_id, error = %e, "audit record could not be written");
        });
        self.protect.observe(
            decision.reason,
            status,
            trail.client_ip,
            &trail.path,
            trail.route.as_deref(),
            identity.map(|i| (&*i.issuer, i.principal.as_str())),
        );
        written
    }

    /// Refuse a request over a rate limit: 429 with `Retry-After` and the
    /// `RateLimit` fields; the limit's name goes to the audit record.
    fn limited(&self, trail: &mut Trail, limited: &crate::protect::Limited<'_>) -> Response<Body> {
        trail.policy = Some(format!("rate_limit:{}", limited.name()));
        let mut response = crate::protect::too_many(limited, &trail.request_id);
        let written = self.audit(trail, Decision::deny(ReasonCode::RateLimited), response.status().as_u16());
        hold_for(&mut response, written, &trail.request_id);
        response
    }

    /// Answer with what the relying party decided (a redirect or a
    /// refusal), audited like any other request.
    fn answer(&self, trail: &mut Trail, answer: crate::oidc::Answer) -> Response<Body> {
        trail.identity = answer.identity.clone();
        let mut response = answer.response(&trail.request_id);
        let effect = match answer.reason {
            ReasonCode::LoginSucceeded | ReasonCode::SessionEnded => Decision::allow(answer.reason),
            other => Decision::deny(other),
        };
        let written = self.audit(trail, effect, response.status().as_u16());
        hold_for(&mut response, written, &trail.request_id);
        response
    }

    /// Refuse the request: audit the reason, answer with a generic error
    /// (released once the record is durable).
    fn reject(&self, trail: &Trail, reason: ReasonCode) -> Response<Body> {
        let mut response = response::error(reason, &trail.request_id);
        let written = self.audit(trail, Decision::deny(reason), response.status().as_u16());
        hold_for(&mut response, written, &trail.request_id);
        response
    }
}

/// Keep a generated answer until record `written` is durable. One whose
/// record could not even be queued (a failing sink, logged where it failed)
/// becomes a 503, as a forwarded response does: no answer without its record.
fn hold_for(response: &mut Response<Body>, written: Result<u64, ward_audit::AuditError>, request_id: &RequestId) {
    match written {
        Ok(index) => {
            response.extensions_mut().insert(Unacknowledged(index));
        }
        Err(_) => *response = response::error(ReasonCode::AuditUnavailable, request_id),
    }
}

pub(crate) fn now_secs() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

pub(crate) fn new_request_id() -> RequestId {
    match ward_crypto::random_bytes::<16>() {
        Ok(bytes) => RequestId::from_random(bytes),
        // Without randomness an id is still needed to tie error to record.
        Err(_) => RequestId::from_random(now_nanos().to_be_bytes()),
    }
}

fn now_nanos() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos())
}

fn protocol(v: Version) -> &'static str {
    match v {
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

/// The client address and the `X-Forwarded-For` value to send upstream.
///
/// With `hops == 0` the client's own `X-Forwarded-For` is ignored (anyone can
/// write it); with `hops == n` the `n` right-most entries are trusted proxies
/// and the entry before them is the client.
fn client_address(headers: &HeaderMap, peer: &Peer, hops: usize) -> (IpAddr, Option<HeaderValue>) {
    if hops == 0 {
        return (peer.ip, peer.forwarded_for.clone());
    }
    let (ip, forwarded) = client_address_text(headers, peer.ip, hops);
    (ip, HeaderValue::from_str(&forwarded).ok())
}

fn client_address_text(headers: &HeaderMap, peer: IpAddr, hops: usize) -> (IpAddr, String) {
    if hops == 0 {
        return (peer, peer.to_string());
    }
    let listed: Vec<&str> = headers
        .get_all(header::HeaderName::from_static("x-forwarded-for"))
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let mut chain: Vec<IpAddr> = listed.iter().filter_map(|s| s.parse().ok()).collect();
    chain.push(peer);
    let client =
        chain.len().checked_sub(hops + 1).and_then(|i| chain.get(i)).or(chain.first()).copied().unwrap_or(peer);
    let mut forwarded = listed.join(", ");
    if !forwarded.is_empty() {
        forwarded.push_str(", ");
    }
    forwarded.push_str(&peer.to_string());
    (client, forwarded)
}

/// The host a request is for (RFC 9112 §3.2, RFC 9113 §8.3.1): the
/// target's authority in absolute-form (HTTP/1.1) and over HTTP/2 — where a
/// `Host` that differs from `:authority` is refused — else the one `Host`
/// header, which HTTP/1.1 requires. Two `Host` headers, or a value that is
/// not a plain `host[:port]` (spaces, `<`, userinfo `x@y`, empty, over 255
/// bytes), are refused.
fn request_host(parts: &http::request::Parts) -> Result<Option<HeaderValue>, ()> {
    let mut hosts = parts.headers.get_all(header::HOST).iter();
    let (header, second) = (hosts.next(), hosts.next());
    if second.is_some() {
        return Err(());
    }
    let valid = |v: &[u8]| {
        !v.is_empty() && v.len() <= 255 && v.iter().all(|b| b.is_ascii_alphanumeric() || b"-._~:[]".contains(b))
    };
    if let Some(h) = header
        && !valid(h.as_bytes())
    {
        return Err(());
    }
    match parts.uri.authority() {
        Some(authority) => {
            if !valid(authority.as_str().as_bytes()) {
                return Err(());
            }
            let h2_conflict = parts.version == http::Version::HTTP_2
                && header.is_some_and(|h| !h.as_bytes().eq_ignore_ascii_case(authority.as_str().as_bytes()));
            if h2_conflict {
                return Err(());
            }
            HeaderValue::from_str(authority.as_str()).map(Some).map_err(|_| ())
        }
        None if header.is_none() && parts.version == http::Version::HTTP_11 => Err(()),
        None => Ok(header.cloned()),
    }
}

/// Whether a header name (lower case, as `http` keeps them) is one the
/// gateway sets for upstreams, read with `_` as `-` (as CGI and WSGI read
/// it): `x-ward-*`, `x-forwarded-*`, `forwarded`, `x-request-id`.
fn reserved(name: &str) -> bool {
    ["x-ward-", "x-forwarded-"].iter().any(|prefix| name.get(..prefix.len()).is_some_and(|n| cgi_eq(n, prefix)))
        || cgi_eq(name, "forwarded")
        || cgi_eq(name, "x-request-id")
}

/// Whether `name`, read with `_` as `-`, is one of `strip`.
fn stripped(name: &str, strip: &[HeaderName]) -> bool {
    strip.iter().any(|s| cgi_eq(name, s.as_str()))
}

/// Whether header name `name` equals `want` (lower case, with `-`) as CGI
/// and WSGI read names: `_` and `-` alike.
fn cgi_eq(name: &str, want: &str) -> bool {
    name.len() == want.len() && name.bytes().zip(want.bytes()).all(|(n, w)| n == w || (n == b'_' && w == b'-'))
}

/// Remove every header whose name `matches`.
fn drop_names(headers: &mut HeaderMap, matches: impl Fn(&str) -> bool) {
    let names: Vec<HeaderName> = headers.keys().filter(|n| matches(n.as_str())).cloned().collect();
    for name in names {
        headers.remove(&name);
    }
}

/// Whether a configured token header is sent more than once: which one
/// counts would be a guess (and a proxy in front may pick the other), so
/// the request is refused (400).
fn ambiguous_token(headers: &HeaderMap, sources: &[TokenSource]) -> bool {
    sources.iter().any(|source| match source {
        TokenSource::Header(name) => headers.get_all(name.as_str()).iter().nth(1).is_some(),
        TokenSource::Cookie(_) => false,
    })
}

/// The token from the first configured place that has one.
fn extract_token(headers: &HeaderMap, sources: &[TokenSource]) -> Option<String> {
    for source in sources {
        match source {
            TokenSource::Header(name) => {
                let Some(value) = headers.get(name.as_str()).and_then(|v| v.to_str().ok()) else { continue };
                let token = if name == "authorization" {
                    let (scheme, rest) = value.split_once(' ')?;
                    if !scheme.eq_ignore_ascii_case("bearer") {
                        return None;
                    }
                    rest.trim()
                } else {
                    value.trim()
                };
                return (!token.is_empty() && !token.contains(' ')).then(|| token.to_owned());
            }
            TokenSource::Cookie(name) => {
                let lines = headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok());
                if let Some(found) = ward_core::cookies::find(lines, name) {
                    return Some(found.to_owned());
                }
            }
        }
    }
    None
}

/// Remove the configured token locations so the credential stays at the edge.
fn strip_token(headers: &mut HeaderMap, sources: &[TokenSource]) {
    for source in sources {
        match source {
            TokenSource::Header(name) => {
                headers.remove(name.as_str());
            }
            TokenSource::Cookie(name) => {
                let lines = headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok());
                let kept = ward_core::cookies::retain(lines, |n| n != name);
                headers.remove(header::COOKIE);
                if let Some(v) = kept.and_then(|k| HeaderValue::from_str(&k).ok()) {
                    headers.insert(header::COOKIE, v);
                }
            }
        }
    }
}

/// Strip hop-by-hop headers, including those the `Connection` header names.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
}

fn claim_header_value(value: &serde_json::Value) -> Option<HeaderValue> {
    let text = match value {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(items) => {
            items.iter().map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned)).collect::<Vec<_>>().join(",")
        }
        serde_json::Value::Null => return None,
        other => other.to_string(),
    };
    HeaderValue::from_str(&text).ok()
}

/// Whether every `Transfer-Encoding` the request declares is exactly one
/// `chunked` (what hyper decodes); `gzip, chunked`, `chunked, chunked` and
/// unknown codings are not.
fn only_chunked(headers: &HeaderMap) -> bool {
    let mut codings = headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .map(<[u8]>::trim_ascii)
        // Empty list elements do not count (RFC 9110 §5.6.1).
        .filter(|c| !c.is_empty());
    matches!(codings.next(), Some(c) if c.eq_ignore_ascii_case(b"chunked")) && codings.next().is_none()
}

/// Whether an upstream request failed because the client's body stream did:
/// hyper reports an error of the request body as a user error carrying the
/// body's own error as its cause (a dead upstream connection is a user
/// error too, `DispatchGone`, but without a cause).
fn client_body_failed(error: &crate::UpstreamError) -> bool {
    matches!(error, crate::UpstreamError::Http(e) if e.is_user() && std::error::Error::source(e).is_some())
}

fn is_body_limit(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        if e.downcast_ref::<LengthLimitError>().is_some() {
            return true;
        }
        current = e.source();
    }
    false
}

/// Ask a CUSTOM policy's external authorizer. Only a 2xx answer allows.
async fn ask_authorizer(
    worker: &Worker,
    provider: &str,
    parts: &http::request::Parts,
    path: &str,
    trail: &Trail,
) -> Result<(), ReasonCode> {
    let Some(authorizer) = worker.authorizers.iter().find(|a| a.name == provider) else {
        return Err(ReasonCode::ExternalAuthorizerUnavailable);
    };
    let target = format!("{}{path}", authorizer.prefix);
    let uri = authorizer.upstream.uri(&target, parts.uri.query()).map_err(|_| ReasonCode::BadRequest)?;
    let mut request = Request::builder().method(parts.method.clone()).uri(uri);
    if let Some(host) = authorizer.upstream.host_header() {
        request = request.header(header::HOST, host);
    }
    request = request.header("x-request-id", trail.request_id.as_str());
    if let Some(identity) = &trail.identity {
        if let Ok(v) = HeaderValue::from_str(identity.principal.as_str()) {
            request = request.header("x-ward-principal", v);
        }
        if let Ok(v) = HeaderValue::from_str(&identity.issuer) {
            request = request.header("x-ward-issuer", v);
        }
    }
    for name in &authorizer.include_headers {
        for value in parts.headers.get_all(name) {
            request = request.header(name, value);
        }
    }
    let empty: crate::upstream::UpstreamBody =
        Limited::new(http_body_util::Either::Right(http_body_util::Empty::new()), 0);
    let request = request.body(empty).map_err(|_| ReasonCode::BadRequest)?;
    match tokio::time::timeout(authorizer.upstream.timeout, authorizer.upstream.send(request)).await {
        Ok(Ok(response)) if response.status().is_success() => {
            // Drain the (small) body so the connection can be reused.
            let _ = http_body_util::BodyExt::collect(response.into_body()).await;
            Ok(())
        }
        Ok(Ok(response)) => {
            tracing::debug!(request_id = %trail.request_id, authorizer = provider, status = %response.status(), "external authorizer denied");
            Err(ReasonCode::ExternalAuthorizerDenied)
        }
        Ok(Err(e)) => {
            tracing::warn!(request_id = %trail.request_id, authorizer = provider, error = %e, "external authorizer unreachable");
            Err(ReasonCode::ExternalAuthorizerUnavailable)
        }
        Err(_) => {
            tracing::warn!(request_id = %trail.request_id, authorizer = provider, "external authorizer timed out");
            Err(ReasonCode::ExternalAuthorizerUnavailable)
        }
    }
}

/// The audit record a generated answer (a refusal, a redirect) waits for:
/// carried in the response's extensions from where it was written to where
/// `handle` releases the answer (forwarded responses wait in place).
#[derive(Debug, Clone, Copy)]
struct Unacknowledged(u64);

/// Serve one request. Never fails: every outcome is a response and a record,
/// and no answer leaves before its record is durable — a refusal no more
/// than a forwarded response (a client that saw a 403 finds it in the log
/// after a crash).
pub(crate) async fn handle(
    worker: Arc<Worker>,
    request: Request<Incoming>,
    peer: Arc<Peer>,
) -> Result<Response<Body>, Infallible> {
    let shared = Arc::clone(&worker.shared);
    let Ok(mut response) = pipeline(worker, request, peer).await;
    if let Some(Unacknowledged(index)) = response.extensions_mut().remove::<Unacknowledged>() {
        // Every generated answer carries its request id.
        let id = response
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .and_then(RequestId::parse)
            .unwrap_or_else(new_request_id);
        if !acknowledged(&shared, index, id.as_str()).await {
            return Ok(response::error(ReasonCode::AuditUnavailable, &id));
        }
    }
    Ok(response)
}

/// Wait until record `index` is durable (bounded by [`AUDIT_ACK_TIMEOUT`]).
async fn acknowledged(shared: &Shared, index: u64, request_id: &str) -> bool {
    match tokio::time::timeout(AUDIT_ACK_TIMEOUT, shared.audit.durable(index)).await {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            tracing::error!(request_id, index, error = %e, "audit record was not made durable");
            false
        }
        Err(_) => {
            tracing::error!(request_id, index, "audit record not durable in time");
            false
        }
    }
}

async fn pipeline(
    worker: Arc<Worker>,
    request: Request<Incoming>,
    peer: Arc<Peer>,
) -> Result<Response<Body>, Infallible> {
    let start = Instant::now();
    let shared = &*worker.shared;
    let (mut parts, body) = request.into_parts();
    // The request id names one audit record: it is the gateway's own, taken
    // from `x-request-id` only behind trusted proxies (which set it). A
    // client's value would let it give two records one id.
    let client_request_id = parts.headers.get("x-request-id").and_then(|v| v.to_str().ok()).and_then(RequestId::parse);
    let (request_id, client_request_id) = match client_request_id {
        Some(id) if shared.trusted_proxy_hops > 0 => (id, None),
        other => (new_request_id(), other),
    };
    let (client_ip, forwarded_for) = client_address(&parts.headers, &peer, shared.trusted_proxy_hops);
    let mut trail = Trail {
        start,
        request_id,
        method: parts.method.as_str().to_owned(),
        path: String::new(),
        client_ip,
        client_ip_tag: (client_ip == peer.ip).then(|| peer.ip_tag.clone()),
        protocol: protocol(parts.version),
        route: None,
        upstream: None,
        identity: None,
        policy: None,
        audit_policy: None,
        policy_digest: None,
        peer_spiffe_id: peer.svid.as_ref().map(|(id, _)| id.as_str().to_owned()),
    };
    let limits = &shared.limits;

    // 0. A blocked address is refused at accept; this catches the requests
    //    of connections opened before the block, and clients behind
    //    trusted proxies. The connection is closed after the answer.
    if shared.protect.ip_blocked(client_ip) {
        trail.raw_path(&parts.uri);
        let mut response = shared.reject(&trail, ReasonCode::AddressBlocked);
        response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        return Ok(response);
    }

    // 0b. A client certificate denied or expired since the handshake: the
    //     connection gets no further than a new one would (closed after).
    if let Some(why) = peer.certificate_refusal(shared.revocations.as_deref()) {
        tracing::info!(request_id = %trail.request_id, why, "client certificate refused on a kept-alive connection");
        trail.raw_path(&parts.uri);
        let mut response = shared.reject(&trail, ReasonCode::CertificateDenied);
        response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        return Ok(response);
    }

    // 1. Header names with `_` (they pass for `-` at CGI/WSGI upstreams),
    //    before anything reads the headers; then limits on what was sent.
    if parts.headers.keys().any(|n| n.as_str().contains('_')) {
        match limits.headers_with_underscores {
            UnderscoreHeaders::Drop => drop_names(&mut parts.headers, |n| n.contains('_')),
            UnderscoreHeaders::Reject => {
                trail.raw_path(&parts.uri);
                return Ok(shared.reject(&trail, ReasonCode::BadRequest));
            }
            UnderscoreHeaders::Allow => drop_names(&mut parts.headers, |n| {
                n.contains('_') && (reserved(n) || stripped(n, &shared.strip_request_headers))
            }),
        }
    }
    if let Some((_, reason)) = ward_serve::headers::over_limits(&parts.uri, &parts.headers, limits) {
        trail.raw_path(&parts.uri);
        return Ok(shared.reject(&trail, reason));
    }
    // The host the request is for, one way only (RFC 9112 §3.2).
    let Ok(host_value) = request_host(&parts) else {
        trail.raw_path(&parts.uri);
        return Ok(shared.reject(&trail, ReasonCode::BadRequest));
    };
    // 2. One canonical path, judged and forwarded.
    let path = match normalize_path_with(parts.uri.path(), &shared.path_options) {
        Ok(p) => p,
        Err(_) => {
            trail.raw_path(&parts.uri);
            return Ok(shared.reject(&trail, ReasonCode::PathRejected));
        }
    };
    trail.path.clone_from(&path);
    let declared_length =
        parts.headers.get(header::CONTENT_LENGTH).map(|v| v.to_str().ok().and_then(|s| s.parse::<u64>().ok()));
    // A transfer coding the gateway does not decode would reach the
    // upstream undeclared (the header is hop-by-hop): only plain `chunked`.
    if parts.headers.contains_key(header::TRANSFER_ENCODING) && !only_chunked(&parts.headers) {
        return Ok(shared.reject(&trail, ReasonCode::BadRequestBody));
    }
    match declared_length {
        Some(None) => return Ok(shared.reject(&trail, ReasonCode::BadRequest)),
        Some(Some(n)) if n > limits.max_body_bytes => return Ok(shared.reject(&trail, ReasonCode::BodyTooLarge)),
        _ => {}
    }
    // 3. The relying party's own paths (callback, logout), then routes
    //    (default deny when none matches).
    if let Some(rp) = &shared.oidc {
        if path == rp.callback_path() && parts.method == http::Method::GET {
            let answer = rp.callback(parts.uri.query(), &parts.headers).await;
            return Ok(shared.answer(&mut trail, answer));
        }
        if path == rp.logout_path() && matches!(parts.method, http::Method::GET | http::Method::POST) {
            return Ok(shared.answer(&mut trail, rp.logout(&parts.headers)));
        }
    }
    let Some((target, route)) = shared.routes.find(&path) else {
        return Ok(shared.reject(&trail, ReasonCode::NoRoute));
    };
    trail.route = Some(route.name.clone());
    let Some(runtime) = shared.route_runtime.get(&route.name) else {
        return Ok(shared.reject(&trail, ReasonCode::NoRoute));
    };
    // The route's own mTLS mode (Istio's port-level mTLS): STRICT needs a
    // verified client SVID even on a PERMISSIVE listener; DISABLE ignores one.
    if route.mtls_strict == Some(true) && peer.svid.is_none() {
        return Ok(shared.reject(&trail, ReasonCode::PeerCertificateRequired));
    }
    let source_principal = if route.mtls_strict == Some(false) { None } else { peer.source_principal() };
    // Rate limits keyed by address, route or header: before any token is verified.
    let mut headroom = match shared.protect.limit(false, (&route.name, client_ip), None, &parts.headers, None) {
        Ok(h) => h,
        Err(limited) => return Ok(shared.limited(&mut trail, &limited)),
    };
    // 4. Authenticate. A public route does not require a token, but one
    //    that is presented must be valid (as Istio's RequestAuthentication).
    //    A login route authenticates browsers by their session, and sends
    //    a GET or HEAD without one to the provider; other methods and
    //    other routes answer 401.
    let mut session_cookie = None;
    if ambiguous_token(&parts.headers, &shared.token_sources) {
        return Ok(shared.reject(&trail, ReasonCode::BadRequest));
    }
    match extract_token(&parts.headers, &shared.token_sources) {
        None if route.login => {
            let rp = shared.oidc.as_ref();
            match rp.and_then(|rp| rp.session(&parts.headers, now_secs())) {
                Some((identity, refreshed)) => {
                    // Sessions of a user whose tokens were ended since the login end too.
                    let cut = shared
                        .revocations
                        .as_ref()
                        .is_some_and(|list| ward_core::is_cut_off(&**list, &identity.issuer, &identity.claims));
                    trail.identity = Some(identity);
                    if cut {
                        return Ok(shared.reject(&trail, ReasonCode::TokenRevoked));
                    }
                    session_cookie = refreshed;
                }
                None => match rp {
                    Some(rp) if matches!(parts.method, http::Method::GET | http::Method::HEAD) => {
                        let target = parts.uri.path_and_query().map_or("/", http::uri::PathAndQuery::as_str);
                        let answer = rp.login(target).await;
                        return Ok(shared.answer(&mut trail, answer));
                    }
                    _ => return Ok(shared.reject(&trail, ReasonCode::TokenMissing)),
                },
            }
        }
        None if !route.public => return Ok(shared.reject(&trail, ReasonCode::TokenMissing)),
        None => {}
        Some(token) => {
            let accepts = |i: usize| runtime.providers.as_ref().is_none_or(|p| p.contains(&i));
            match shared.authn.authenticate(&token, now_secs(), accepts).await {
                Ok(identity) => {
                    // RFC 8705 §3: a token bound to a certificate is good only on a
                    // connection presenting that certificate.
                    let bound_ok = identity.claims.get("cnf").and_then(|c| c.get("x5t#S256")).is_none_or(|want| {
                        let want = want.as_str().unwrap_or_default();
                        peer.cert
                            .as_ref()
                            .map(|c| c.x5t.as_str())
                            .is_some_and(|have| ward_crypto::constant_time_eq(have.as_bytes(), want.as_bytes()))
                    });
                    // Revoked one by one (`jti`), or cut off with every token of
                    // its user or client issued up to a moment.
                    let revoked = shared
                        .revocations
                        .as_ref()
                        .is_some_and(|list| ward_core::is_ended(&**list, &identity.issuer, &identity.claims));
                    trail.identity = Some(identity);
                    if revoked {
                        return Ok(shared.reject(&trail, ReasonCode::TokenRevoked));
                    }
                    if !bound_ok {
                        return Ok(shared.reject(&trail, ReasonCode::TokenBindingMismatch));
                    }
                }
                Err(TokenRejected(reason)) => return Ok(shared.reject(&trail, reason)),
            }
        }
    }
    // 4b. A blocked principal stops here; then limits keyed by principal or claim.
    if let Some(identity) = &trail.identity {
        if shared.protect.principal_blocked(identity) {
            return Ok(shared.reject(&trail, ReasonCode::PrincipalBlocked));
        }
        match shared.protect.limit(true, (&route.name, client_ip), Some(identity), &parts.headers, headroom) {
            Ok(h) => headroom = h,
            Err(limited) => return Ok(shared.limited(&mut trail, &limited)),
        }
    }
    // 5. Authorize: the policy set in force (default deny).
    let policies = shared.policies.load();
    let request_principal = trail.identity.as_ref().map(|i| format!("{}/{}", i.issuer, i.principal));
    let host = host_value.as_ref().and_then(|v| v.to_str().ok());
    let attributes = PolicyRequest {
        method: parts.method.as_str(),
        path: &path,
        host,
        destination_ip: peer.local.map(|a| a.ip()),
        destination_port: peer.local.map(|a| a.port()),
        source_ip: Some(peer.ip),
        remote_ip: Some(client_ip),
        source_principal,
        request_principal: request_principal.as_deref(),
        claims: trail.identity.as_ref().map(|i| &*i.claims),
        headers: &Headers(&parts.headers),
        sni: peer.sni.as_deref(),
    };
    let verdict = policies.evaluate(target, attributes);
    trail.policy_digest = Some(Arc::clone(policies.digest()));
    trail.policy = verdict.decided_by.map(|r| policies.describe(r));
    trail.audit_policy = verdict.audit.map(|r| policies.describe(r));
    let custom = verdict.custom.and_then(|r| policies.policy(r)).and_then(|p| p.provider.clone());
    let custom_rule = verdict.custom.map(|r| policies.describe(r));
    // Not held across the call to an external authorizer.
    drop(policies);
    if let Some(provider) = custom {
        let decided = std::mem::replace(&mut trail.policy, custom_rule);
        if let Err(reason) = ask_authorizer(&worker, &provider, &parts, &path, &trail).await {
            return Ok(shared.reject(&trail, reason));
        }
        trail.policy = decided;
    }
    let decision = Decision { effect: verdict.effect, reason: verdict.reason };
    if decision.effect == Effect::Deny {
        return Ok(shared.reject(&trail, decision.reason));
    }
    // 6. Nothing goes upstream that could not be recorded.
    if shared.audit.ready().is_err() {
        return Ok(shared.reject(&trail, ReasonCode::AuditUnavailable));
    }
    let Some(upstream) = worker.upstreams.get(runtime.upstream) else {
        return Ok(shared.reject(&trail, ReasonCode::UpstreamUnavailable));
    };
    trail.upstream = Some(Arc::clone(&upstream.name));

    // 7. Build the upstream request.
    let Ok(uri) = upstream.uri(&path, parts.uri.query()) else {
        return Ok(shared.reject(&trail, ReasonCode::BadRequest));
    };
    let original_host = host_value.clone();
    let headers = &mut parts.headers;
    strip_hop_by_hop(headers);
    drop_names(headers, |n| reserved(n) || stripped(n, &shared.strip_request_headers));
    headers.remove(header::HOST);
    if !shared.forward_token {
        strip_token(headers, &shared.token_sources);
    }
    if shared.oidc.is_some() {
        crate::oidc::session::strip_own_cookies(headers);
    }
    if let Ok(v) = HeaderValue::from_str(trail.request_id.as_str()) {
        headers.insert(HeaderName::from_static("x-request-id"), v);
    }
    // The client's own id, for its correlation only, under another name.
    if let Some(v) = client_request_id.as_ref().and_then(|id| HeaderValue::from_str(id.as_str()).ok()) {
        headers.insert(HeaderName::from_static("x-client-request-id"), v);
    }
    if let Some(v) = forwarded_for {
        headers.insert(HeaderName::from_static("x-forwarded-for"), v);
    }
    let proto = if peer.tls { "https" } else { "http" };
    headers.insert(HeaderName::from_static("x-forwarded-proto"), HeaderValue::from_static(proto));
    if source_principal.is_some()
        && let Some((_, v)) = &peer.svid
    {
        headers.insert(HeaderName::from_static("x-ward-peer-spiffe-id"), v.clone());
    }
    if let Some(host) = original_host {
        headers.insert(HeaderName::from_static("x-forwarded-host"), host);
    }
    if let Some(identity) = &trail.identity {
        if let Ok(v) = HeaderValue::from_str(identity.principal.as_str()) {
            headers.insert(HeaderName::from_static("x-ward-principal"), v);
        }
        if let Ok(v) = HeaderValue::from_str(&identity.issuer) {
            headers.insert(HeaderName::from_static("x-ward-issuer"), v);
        }
        for (claim, name) in &shared.forward_claims {
            if let Some(v) = identity.claim(claim).and_then(claim_header_value) {
                headers.insert(name.clone(), v);
            }
        }
    }
    parts.uri = uri;
    if upstream.http2 {
        parts.version = Version::HTTP_2;
    } else {
        parts.version = Version::HTTP_11;
        if let Some(host) = upstream.host_header() {
            headers.insert(header::HOST, host);
        }
    }
    let limit = usize::try_from(limits.max_body_bytes).unwrap_or(usize::MAX);
    let upstream_request = Request::from_parts(parts, Limited::new(Either::Left(body), limit));

    // 8. Proxy, bounded in time.
    let outcome = tokio::time::timeout(upstream.timeout, upstream.send(upstream_request)).await;
    let upstream_response = match outcome {
        Err(_) => return Ok(shared.reject(&trail, ReasonCode::UpstreamTimeout)),
        Ok(Err(e)) => {
            if is_body_limit(&e) {
                return Ok(shared.reject(&trail, ReasonCode::BodyTooLarge));
            }
            if client_body_failed(&e) {
                // Bad chunk framing, bare LF, more data than declared: the
                // client's fault, not the upstream's.
                tracing::info!(request_id = %trail.request_id, error = %e, "malformed request body");
                return Ok(shared.reject(&trail, ReasonCode::BadRequestBody));
            }
            tracing::warn!(request_id = %trail.request_id, upstream = %upstream.name, error = %e, "upstream request failed");
            return Ok(shared.reject(&trail, ReasonCode::UpstreamUnavailable));
        }
        Ok(Ok(r)) => r,
    };
    let (mut parts, body) = upstream_response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    response::add_security_headers(&mut parts.headers, &trail.request_id);
    if let Some(h) = headroom {
        h.add_fields(&mut parts.headers);
    }
    if let Some(cookie) = session_cookie {
        parts.headers.append(header::SET_COOKIE, cookie);
    }
    // Fail closed: a response is delivered only once its record is durable
    // (awaited here, not through the response's extensions: no allocation
    // on the path every forwarded request takes).
    let durable = match shared.audit(&trail, decision, parts.status.as_u16()) {
        Ok(index) => acknowledged(shared, index, trail.request_id.as_str()).await,
        Err(_) => false,
    };
    if !durable {
        return Ok(response::error(ReasonCode::AuditUnavailable, &trail.request_id));
    }
    Ok(Response::from_parts(parts, Either::Right(body)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_is_trusted_only_as_configured() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("6.6.6.6, 10.0.0.1"));
        let peer: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(client_address_text(&h, peer, 0), (peer, "127.0.0.1".into()));
        let (ip, xff) = client_address_text(&h, peer, 1);
        assert_eq!(ip, "10.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(xff, "6.6.6.6, 10.0.0.1, 127.0.0.1");
        assert_eq!(client_address_text(&h, peer, 2).0, "6.6.6.6".parse::<IpAddr>().unwrap());
        assert_eq!(client_address_text(&h, peer, 9).0, "6.6.6.6".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn tokens_come_only_from_configured_places() {
        let sources = vec![TokenSource::Header("authorization".into()), TokenSource::Cookie("ward".into())];
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(extract_token(&h, &sources), None);
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("bearer  tok"));
        assert_eq!(extract_token(&h, &sources).as_deref(), Some("tok"));
        h.remove(header::AUTHORIZATION);
        h.insert(header::COOKIE, HeaderValue::from_static("a=1; ward=ctok; b=2"));
        assert_eq!(extract_token(&h, &sources).as_deref(), Some("ctok"));
        strip_token(&mut h, &sources);
        assert_eq!(h.get(header::COOKIE).unwrap(), "a=1; b=2");
        assert!(!ambiguous_token(&h, &sources));
        h.append(header::AUTHORIZATION, HeaderValue::from_static("Bearer good"));
        assert!(!ambiguous_token(&h, &sources));
        h.append(header::AUTHORIZATION, HeaderValue::from_static("Bearer junk"));
        assert!(ambiguous_token(&h, &sources), "two Authorization headers");
    }

    #[test]
    fn long_audit_values_keep_their_start_length_and_hash() {
        assert_eq!(ward_audit::bounded_value("/api/x".to_owned()), "/api/x");
        let long = format!("/{}", "é".repeat(800));
        let kept = ward_audit::bounded_value(long.clone());
        assert!(kept.len() < 1200, "{}", kept.len());
        assert!(kept.starts_with("/é") && kept.contains(&format!("[{} bytes, sha256:", long.len())), "{kept}");
    }

    #[test]
    fn reserved_names_are_read_as_cgi_reads_them() {
        for name in
            ["x-ward-principal", "x_ward_principal", "x-ward_roles", "x_forwarded_for", "forwarded", "x_request_id"]
        {
            assert!(reserved(name), "{name}");
        }
        for name in ["x-war", "x-wardx", "forwarded-x", "x-request-ids", "my_header", "x-forwarde"] {
            assert!(!reserved(name), "{name}");
        }
    }

    #[test]
    fn connection_named_headers_are_stripped() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("keep-alive, x-secret"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert!(h.get("x-secret").is_none() && h.get(header::CONNECTION).is_none());
        assert!(h.get("x-kept").is_some());
    }
}
