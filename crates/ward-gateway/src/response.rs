//! What clients see: generic JSON errors and security headers.

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::{Either, Full};

use crate::pool::PooledBody;
use ward_core::{ReasonCode, RequestId};

/// The body of every response: a generated error, or the upstream's stream.
pub type Body = Either<Full<Bytes>, PooledBody>;

/// The HTTP status a denial is answered with.
#[must_use]
pub fn status_for(reason: ReasonCode) -> StatusCode {
    if reason.is_authentication_failure() {
        return StatusCode::UNAUTHORIZED;
    }
    match reason {
        ReasonCode::NoRoute
        | ReasonCode::DeniedByPolicy
        | ReasonCode::NoAllowPolicyMatched
        | ReasonCode::DefaultDeny
        | ReasonCode::ExternalAuthorizerDenied
        | ReasonCode::PrincipalBlocked
        | ReasonCode::AddressBlocked => StatusCode::FORBIDDEN,
        ReasonCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ReasonCode::ExternalAuthorizerUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        ReasonCode::PathRejected | ReasonCode::BadRequest | ReasonCode::BadRequestBody => StatusCode::BAD_REQUEST,
        ReasonCode::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        ReasonCode::UriTooLong => StatusCode::URI_TOO_LONG,
        ReasonCode::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ReasonCode::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
        ReasonCode::AuditUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_GATEWAY,
    }
}

fn error_word(status: StatusCode) -> &'static str {
    ward_serve::headers::error_word(status)
}

/// Security headers on every response, generated or proxied.
pub fn add_security_headers(headers: &mut HeaderMap, request_id: &RequestId) {
    ward_serve::headers::secure(headers, false);
    if let Ok(v) = HeaderValue::from_str(request_id.as_str()) {
        headers.insert(HeaderName::from_static("x-request-id"), v);
    }
}

/// A generic error response: `{"error":"forbidden","request_id":"…"}`. The
/// reason itself is never sent; it goes to the audit log.
#[must_use]
pub fn error(reason: ReasonCode, request_id: &RequestId) -> Response<Body> {
    let status = status_for(reason);
    // INVARIANT: the request id is [A-Za-z0-9._:-]+, so it needs no JSON escaping.
    let body = format!(r#"{{"error":"{}","request_id":"{}"}}"#, error_word(status), request_id.as_str());
    let mut response = Response::new(Either::Left(Full::new(Bytes::from(body))));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if status == StatusCode::UNAUTHORIZED {
        headers.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(r#"Bearer realm="ward", error="invalid_token""#),
        );
    }
    add_security_headers(headers, request_id);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_generic() {
        let id = RequestId::parse("abc").unwrap();
        let r = error(ReasonCode::TokenExpired, &id);
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert!(r.headers()[header::WWW_AUTHENTICATE].to_str().unwrap().contains("invalid_token"));
        let r = error(ReasonCode::UpstreamUnavailable, &id);
        assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(status_for(ReasonCode::NoAllowPolicyMatched), StatusCode::FORBIDDEN);
    }
}
