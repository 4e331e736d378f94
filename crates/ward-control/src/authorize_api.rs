//! The authorization endpoint and Ward's login page (RFC 6749 §3.1, §4.1).
//!
//! `GET /oauth2/authorize` checks the request (see
//! [`ward_issuer::authorize`]) and shows a login form; `POST` checks the
//! user's password (argon2id, off the runtime) and sends the browser back
//! to the client with a single-use code, the `state`, and `iss` (RFC 9207,
//! against mix-up attacks).
//!
//! The page is bound to the browser that loaded it: the form carries a
//! random ticket, and the page sets a `__Host-` cookie whose hash the ticket
//! remembers, so a form posted from elsewhere (login CSRF) is refused. The
//! page sends a strict CSP (no scripts, no styles, no framing, forms only to
//! Ward and the client's redirect origin), `no-store`, and `no-referrer`.
//! Every refusal and every login, failed or not, is an audit event; the
//! page itself says only "wrong username or password".

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ward_core::ReasonCode;
use ward_issuer::OAuthError;
use ward_issuer::authorize::{self, AuthorizationRequest, AuthorizeError, CodeGrant};
use ward_issuer::opaque;
use zeroize::Zeroizing;

use crate::flows::{Attempt, Source, TICKET_TTL, Ticket};
use crate::http_api::{Event, Peer, audit, form, request_id};
use crate::login_guard::Busy;
use crate::{ControlPlane, now};

/// Where the endpoint lives.
pub(crate) const PATH: &str = "/oauth2/authorize";

/// The cookie binding a login page to its browser.
const COOKIE: &str = "__Host-ward-login";

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `scheme://authority` of an absolute URI.
fn origin(uri: &str) -> Option<&str> {
    let after = uri.find("://")? + 3;
    let end = uri[after..].find(['/', '?', '#']).map_or(uri.len(), |i| after + i);
    Some(&uri[..end])
}

fn html(status: StatusCode, body: String, form_to: Option<&str>) -> Response {
    let mut r = (status, body).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    // Chrome applies form-action to the redirect that follows a form post,
    // so the client's origin must be allowed next to 'self'.
    let form_action = form_to.and_then(origin).map_or(String::new(), |o| format!(" {o}"));
    let csp = format!("default-src 'none'; form-action 'self'{form_action}; frame-ancestors 'none'; base-uri 'none'");
    if let Ok(v) = HeaderValue::from_str(&csp) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    r
}

fn document(title: &str, inner: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\"><title>{title} · Ward</title></head>\n\
         <body><main><h1>{title}</h1>\n{inner}</main></body></html>\n",
        title = escape(title)
    )
}

/// The error page for requests that cannot be sent back to a client.
fn error_page(status: StatusCode, message: &str, request_id: &str) -> Response {
    let inner = format!("<p>{}</p>\n<p>Request id: <code>{}</code></p>\n", escape(message), escape(request_id));
    html(status, document("Cannot continue", &inner), None)
}

fn login_form(request: &AuthorizationRequest, ticket: &str, username: &str, failed: bool) -> String {
    let notice = if failed { "<p role=\"alert\">Wrong username or password.</p>\n" } else { "" };
    let scopes = request.scopes.iter().map(String::as_str).collect::<Vec<_>>().join(" ");
    let inner = format!(
        "<p>to continue to <strong>{client}</strong>, which asks for: <code>{scopes}</code></p>\n{notice}\
         <form method=\"post\" action=\"authorize\">\n\
         <input type=\"hidden\" name=\"ticket\" value=\"{ticket}\">\n\
         <p><label>Username <input name=\"username\" autocomplete=\"username\" required value=\"{username}\"></label></p>\n\
         <p><label>Password <input name=\"password\" type=\"password\" autocomplete=\"current-password\" required></label></p>\n\
         <p><button type=\"submit\">Sign in</button> \
         <button type=\"submit\" name=\"cancel\" value=\"1\" formnovalidate>Cancel</button></p>\n</form>\n",
        client = escape(&request.client_id),
        scopes = escape(&scopes),
        ticket = escape(ticket),
        username = escape(username),
    );
    document("Sign in", &inner)
}

/// 303 to `location` (the client's registered URI with the answer).
fn see_other(location: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r.headers_mut().insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    r
}

/// Send an error back to the client (RFC 6749 §4.1.2.1).
fn redirect_error(cp: &ControlPlane, redirect_uri: &str, state: Option<&str>, e: &OAuthError) -> Response {
    let mut params = vec![("error", e.code()), ("iss", cp.settings.issuer.as_str())];
    if let Some(s) = state {
        params.push(("state", s));
    }
    see_other(&authorize::redirect_with(redirect_uri, &params))
}

/// Query parameters, each at most once (RFC 6749 §3.1).
fn query(raw: Option<&str>) -> Result<HashMap<String, String>, OAuthError> {
    let mut out = HashMap::new();
    for (k, v) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        if out.insert(k.clone().into_owned(), v.into_owned()).is_some() {
            return Err(OAuthError::InvalidRequest(format!("parameter `{k}` repeated")));
        }
    }
    Ok(out)
}

fn cookie(headers: &HeaderMap) -> Option<String> {
    let lines = headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok());
    ward_core::cookies::find(lines, COOKIE).filter(|v| v.len() == 43).map(str::to_owned)
}

/// An authorization request refused: audited, then an error page or a
/// redirect to the registered URI.
fn refused(cp: &ControlPlane, ext: &axum::http::Extensions, e: &AuthorizeError, client: Option<&str>) -> Response {
    let id = request_id();
    let status = if matches!(e, AuthorizeError::NoRedirect(_)) { 400 } else { 303 };
    let event = Event::new(("GET", PATH), ReasonCode::AuthorizationRefused, status).client(client).error(e.error());
    let _ = audit(cp, ext, &id, event);
    tracing::info!(request_id = %id, error = e.error().code(), detail = e.error().detail(), "authorization request refused");
    match e {
        AuthorizeError::NoRedirect(_) => error_page(
            StatusCode::BAD_REQUEST,
            "The application sent an invalid sign-in request (unknown application or return address).",
            &id,
        ),
        AuthorizeError::Redirect { redirect_uri, state, error } => {
            redirect_error(cp, redirect_uri, state.as_deref(), error)
        }
    }
}

/// `GET /oauth2/authorize`: check the request, show the login page.
pub(crate) async fn show(
    State(cp): State<Arc<ControlPlane>>,
    ext: axum::http::Extensions,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let params = match query(raw.as_deref()) {
        Ok(p) => p,
        Err(e) => return refused(&cp, &ext, &AuthorizeError::NoRedirect(e), None),
    };
    let claimed = params.get("client_id").filter(|c| ward_issuer::ClientId::new(c).is_ok()).cloned();
    let request = match authorize::check_request(&params, |id| cp.client(id).map(|c| ward_issuer::Client::clone(&c))) {
        Ok((_, r)) => r,
        Err(e) => return refused(&cp, &ext, &e, claimed.as_deref()),
    };
    let ip = ext.get::<Peer>().map_or(std::net::IpAddr::from([0, 0, 0, 0]), |p| p.0);
    if let Err(retry) = cp.logins.page(ip) {
        let id = request_id();
        let event = Event::new(("GET", PATH), ReasonCode::RateLimited, 429).client(Some(&request.client_id));
        let _ = audit(&cp, &ext, &id, event);
        let mut r = error_page(StatusCode::TOO_MANY_REQUESTS, "Too many sign-in pages opened; try again later.", &id);
        r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry));
        return r;
    }
    let t = now();
    // One binding cookie per browser, reused by its other login pages (and
    // sent again, so it lives as long as the newest page).
    let cookie_value = match cookie(&headers) {
        Some(c) => zeroize::Zeroizing::new(c),
        None => match opaque::generate("") {
            Ok((c, _)) => c,
            Err(_) => return error_page(StatusCode::SERVICE_UNAVAILABLE, "Try again later.", &request_id()),
        },
    };
    let Ok((ticket, ticket_hash)) = opaque::generate("") else {
        return error_page(StatusCode::SERVICE_UNAVAILABLE, "Try again later.", &request_id());
    };
    let redirect_uri = request.redirect_uri.clone();
    let body = login_form(&request, &ticket, "", false);
    let client = request.client_id.clone();
    let held = Ticket { request, cookie_hash: opaque::hash(&cookie_value), expires: t + TICKET_TTL, attempts: 0 };
    if !cp.flows.put_ticket(ticket_hash, held, Source::of(ip), t) {
        return error_page(StatusCode::SERVICE_UNAVAILABLE, "Try again later.", &request_id());
    }
    let _ = audit(
        &cp,
        &ext,
        &request_id(),
        Event::new(("GET", PATH), ReasonCode::LoginPageShown, 200).client(Some(&client)),
    );
    let mut r = html(StatusCode::OK, body, Some(&redirect_uri));
    let set =
        format!("{COOKIE}={}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={TICKET_TTL}", cookie_value.as_str());
    if let Ok(v) = HeaderValue::from_str(&set) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// `POST /oauth2/authorize`: the login form.
pub(crate) async fn login(
    State(cp): State<Arc<ControlPlane>>,
    ext: axum::http::Extensions,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let expired = |cp: &ControlPlane, client: Option<&str>, why: &str| {
        let id = request_id();
        let e = OAuthError::InvalidRequest(why.to_owned());
        let _ = audit(
            cp,
            &ext,
            &id,
            Event::new(("POST", PATH), ReasonCode::AuthorizationRefused, 400).client(client).error(&e),
        );
        error_page(
            StatusCode::BAD_REQUEST,
            "This sign-in page has expired or was opened elsewhere. Go back to the application and start again.",
            &id,
        )
    };
    let Ok(params) = form(&headers, &body) else { return expired(&cp, None, "login form is not a form") };
    let ticket_hash = opaque::hash(params.get("ticket").map_or("", String::as_str));
    let cookie_hash = opaque::hash(&cookie(&headers).unwrap_or_default());
    let t = now();
    if params.contains_key("cancel") {
        let Some(ticket) = cp.flows.ticket(&ticket_hash, &cookie_hash, t) else {
            return expired(&cp, None, "unknown or expired login ticket, or another browser's cookie");
        };
        let request = ticket.request;
        cp.flows.take_ticket(&ticket_hash);
        let e = OAuthError::AccessDenied("the user cancelled".into());
        let _ = audit(
            &cp,
            &ext,
            &request_id(),
            Event::new(("POST", PATH), ReasonCode::AuthorizationRefused, 303)
                .client(Some(&request.client_id))
                .error(&e),
        );
        return redirect_error(&cp, &request.redirect_uri, Some(&request.state), &e);
    }
    // The slots for the (slow, memory-hungry) check first, then the attempt
    // is reserved on the page — both before any hashing, so neither parallel
    // posts nor a flood of logins get more checks than the bounds allow.
    // A post of no live page does not even queue.
    if cp.flows.ticket(&ticket_hash, &cookie_hash, t).is_none() {
        return expired(&cp, None, "unknown or expired login ticket, or another browser's cookie");
    }
    let ip = ext.get::<Peer>().map_or(std::net::IpAddr::from([0, 0, 0, 0]), |p| p.0);
    let username = params.get("username").cloned().unwrap_or_default();
    let permit = match cp.logins.hash(ip).await {
        Ok(p) => p,
        Err(busy) => {
            let id = request_id();
            let status = match busy {
                Busy::Source => StatusCode::TOO_MANY_REQUESTS,
                Busy::Everyone => StatusCode::SERVICE_UNAVAILABLE,
            };
            let _ = audit(&cp, &ext, &id, Event::new(("POST", PATH), ReasonCode::RateLimited, status.as_u16()));
            let mut r = error_page(status, "Too many sign-ins at once; wait a moment and try again.", &id);
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return r;
        }
    };
    let (ticket, last) = match cp.flows.reserve_attempt(&ticket_hash, &cookie_hash, t) {
        Attempt::Reserved(ticket, last) => (ticket, last),
        Attempt::Unknown => return expired(&cp, None, "unknown or expired login ticket, or another browser's cookie"),
        Attempt::Exhausted => return expired(&cp, None, "every attempt of this login ticket is used"),
    };
    let request = ticket.request;
    let client = Some(request.client_id.as_str());
    let password = Zeroizing::new(params.get("password").cloned().unwrap_or_default());
    let (cp2, name) = (Arc::clone(&cp), username.clone());
    // The slots go with the check, not with this request: a client that
    // hangs up does not free them while the hash still runs.
    let ok = tokio::task::spawn_blocking(move || {
        let _held = permit;
        cp2.check_password(&name, &password)
    })
    .await
    .unwrap_or(false);
    // A blocked user gets the page a wrong password gets, after the same
    // work, whatever the password: the block protects the account.
    let blocked = cp.principal_blocked(&username);
    if !ok || blocked {
        let id = request_id();
        let e = OAuthError::AccessDenied("wrong username or password".into());
        let reason = if blocked { ReasonCode::PrincipalBlocked } else { ReasonCode::LoginFailed };
        let event = Event::new(("POST", PATH), reason, 401).client(client).error(&e).principal(Some(&username));
        let _ = audit(&cp, &ext, &id, event);
        tracing::info!(request_id = %id, "login failed");
        if last {
            cp.flows.take_ticket(&ticket_hash);
            return error_page(
                StatusCode::BAD_REQUEST,
                "Too many failed attempts. Go back to the application and start again.",
                &id,
            );
        }
        let shown = if ward_issuer::users::check_username(&username).is_ok() { username.as_str() } else { "" };
        let body = login_form(&request, params.get("ticket").map_or("", String::as_str), shown, true);
        return html(StatusCode::OK, body, Some(&request.redirect_uri));
    }
    if !cp.flows.take_ticket(&ticket_hash) {
        // A second submission of the same page raced this one.
        return expired(&cp, client, "login ticket already used");
    }
    let Ok((code, code_hash)) = opaque::generate(opaque::CODE_PREFIX) else {
        return error_page(StatusCode::SERVICE_UNAVAILABLE, "Try again later.", &request_id());
    };
    let grant = CodeGrant {
        request: request.clone(),
        subject: username.clone(),
        auth_time: t,
        expires: t + cp.settings.code_ttl,
    };
    if !cp.flows.put_code(code_hash, grant, t) {
        return error_page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Too many sign-ins in progress; try again later.",
            &request_id(),
        );
    }
    let event = Event::new(("POST", PATH), ReasonCode::LoginSucceeded, 303).client(client).principal(Some(&username));
    let _ = audit(&cp, &ext, &request_id(), event);
    see_other(&authorize::redirect_with(
        &request.redirect_uri,
        &[("code", code.as_str()), ("state", request.state.as_str()), ("iss", cp.settings.issuer.as_str())],
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_escape_what_they_echo_and_origins_are_cut_right() {
        assert_eq!(escape("<a href=\"x\">'&"), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;");
        assert_eq!(origin("https://app.example:8443/cb?x=1"), Some("https://app.example:8443"));
        assert_eq!(origin("http://127.0.0.1:9/cb"), Some("http://127.0.0.1:9"));
        assert_eq!(origin("https://app.example"), Some("https://app.example"));
        assert_eq!(origin("nope"), None);
        let e = query(Some("a=1&a=2")).unwrap_err();
        assert_eq!(e.code(), "invalid_request");
    }
}
