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
