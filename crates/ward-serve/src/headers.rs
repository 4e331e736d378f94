//! The security headers every listener puts on every response.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Set the security headers (HSTS, `nosniff`, no referrer, no framing) and
/// remove headers that advertise software. A response that set its own
/// `Content-Security-Policy` or `Cache-Control` keeps it; one without gets
/// the strictest (`default-src 'none'`, `no-store`) when `api` is set (an
/// API's responses are never pages, nor cacheable by default).
pub fn secure(headers: &mut HeaderMap, api: bool) {
    headers.insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static("max-age=31536000; includeSubDomains"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.remove(header::SERVER);
    headers.remove(HeaderName::from_static("x-powered-by"));
    if api {
        if !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
            headers.insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
            );
        }
        if !headers.contains_key(header::CACHE_CONTROL) {
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        }
    }
}

/// The generic error word for a status (`{"error":"…"}`): the status's
/// meaning, never the reason (which goes to the audit log).
#[must_use]
pub fn error_word(status: http::StatusCode) -> &'static str {
    use http::StatusCode as S;
    match status {
        S::BAD_REQUEST | S::UNPROCESSABLE_ENTITY => "bad_request",
        S::UNAUTHORIZED => "unauthorized",
        S::FORBIDDEN => "forbidden",
        S::NOT_FOUND => "not_found",
        S::METHOD_NOT_ALLOWED => "method_not_allowed",
        S::REQUEST_TIMEOUT => "request_timeout",
        S::PAYLOAD_TOO_LARGE => "payload_too_large",
        S::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        S::REQUEST_HEADER_FIELDS_TOO_LARGE => "request_header_fields_too_large",
        S::URI_TOO_LONG => "uri_too_long",
        S::TOO_MANY_REQUESTS => "too_many_requests",
        S::SERVICE_UNAVAILABLE => "service_unavailable",
        S::GATEWAY_TIMEOUT => "gateway_timeout",
        S::BAD_GATEWAY => "bad_gateway",
        s if s.is_client_error() => "bad_request",
        _ => "internal_error",
    }
}

/// The listener's limits on what a request sent, in the order every
/// listener applies them: the target, path and query (`max_uri_bytes` →
/// 414 `uri_too_long`), then the headers (`max_headers`, and
/// `max_header_bytes` over names and values → 431 `headers_too_large`).
#[must_use]
pub fn over_limits(
    uri: &http::Uri,
    headers: &HeaderMap,
    limits: &ward_config::Limits,
) -> Option<(http::StatusCode, ward_core::ReasonCode)> {
    let target = uri.path_and_query().map_or(0, |pq| pq.as_str().len());
    if target > limits.max_uri_bytes {
        return Some((http::StatusCode::URI_TOO_LONG, ward_core::ReasonCode::UriTooLong));
    }
    let footprint: usize = headers.iter().map(|(n, v)| n.as_str().len() + v.len()).sum();
    if headers.len() > limits.max_headers || footprint > limits.max_header_bytes {
        return Some((http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, ward_core::ReasonCode::HeadersTooLarge));
    }
    None
}
