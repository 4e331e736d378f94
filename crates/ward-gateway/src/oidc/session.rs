//! The relying party's pure parts: what the login-state and session cookies
//! hold, sealing them (AES-256-GCM-SIV, see [`ward_crypto::aead`]), their
//! lifetimes, and the redirects that must never leave the site.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::HeaderMap;
use http::header;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use ward_core::Claims;
use ward_crypto::Sealer;

/// Every cookie Ward sets starts with this.
pub(crate) const OWN_COOKIES: &str = "__Host-ward-";
/// The session cookie.
pub(crate) const SESSION_COOKIE: &str = "__Host-ward-session";
/// Login-state cookies: this prefix and the start of the `state`, so
/// logins in several tabs do not overwrite each other.
pub(crate) const STATE_COOKIE_PREFIX: &str = "__Host-ward-oidc-";
/// Purposes bound into the ciphertexts.
pub(crate) const SESSION_PURPOSE: &[u8] = b"ward-session-v1";
pub(crate) const STATE_PURPOSE: &[u8] = b"ward-login-state-v1";
/// How long a login may take, from the redirect to the callback (seconds).
pub(crate) const LOGIN_TTL: i64 = 600;
/// Browsers keep cookies up to about 4 KiB; a session larger than this
/// keeps only the core claims.
pub(crate) const MAX_COOKIE: usize = 3800;

/// A login in progress: what the callback must find again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LoginState {
    pub state: String,
    pub nonce: String,
    pub verifier: String,
    /// Where the browser was going (a local path).
    pub return_to: String,
    pub expires: i64,
}

/// A logged-in browser.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Session {
    /// Random id: logout ends it everywhere this gateway looks.
    pub sid: String,
    pub iss: String,
    pub sub: String,
    /// The ID token's claims (for policies), without the one-time ones.
    pub claims: Claims,
    /// Login time.
    pub created: i64,
    /// Last use, for the idle lifetime (updated at most every few minutes).
    pub seen: i64,
}

/// What a session is worth now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Freshness {
    /// Valid.
    Fresh,
    /// Valid; send the cookie again with `seen = now` (sliding idle lifetime).
    Touch,
    /// Idle too long, or past its absolute lifetime.
    Ended,
}

/// Judge `s` at `now` with the configured lifetimes (seconds). The cookie is
/// re-sent when an eighth of the idle lifetime has passed since it was last
/// written, so the idle clock is at most that coarse.
pub(crate) fn freshness(s: &Session, now: i64, idle: i64, absolute: i64) -> Freshness {
    if now >= s.created.saturating_add(absolute) || now >= s.seen.saturating_add(idle) || now < s.created - 60 {
        Freshness::Ended
    } else if now - s.seen >= (idle / 8).max(1) {
        Freshness::Touch
    } else {
        Freshness::Fresh
    }
}

/// Seal `value` as cookie text.
pub(crate) fn seal<T: Serialize>(sealer: &Sealer, purpose: &[u8], value: &T) -> Option<String> {
    let json = serde_json::to_vec(value).ok()?;
    sealer.seal(purpose, &json).ok().map(|b| URL_SAFE_NO_PAD.encode(b))
}

/// Open cookie text sealed for `purpose`.
pub(crate) fn open<T: DeserializeOwned>(sealer: &Sealer, purpose: &[u8], text: &str) -> Option<T> {
    let bytes = URL_SAFE_NO_PAD.decode(text).ok()?;
    serde_json::from_slice(&sealer.open(purpose, &bytes).ok()?).ok()
}

/// The claims a session keeps: the ID token's, minus the ones that only
/// matter once (`nonce`, hashes, `jti`); if that is too large for a
/// cookie, only `iss`, `sub`, `aud`, and the usual authorization claims.
pub(crate) fn session_claims(id_token: &Claims, sealer: &Sealer, probe: &Session) -> Claims {
    let mut claims: Claims = id_token
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "nonce" | "at_hash" | "c_hash" | "jti" | "sid"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut trial = probe.clone();
    trial.claims.clone_from(&claims);
    if seal(sealer, SESSION_PURPOSE, &trial).is_some_and(|t| t.len() + SESSION_COOKIE.len() < MAX_COOKIE) {
        return claims;
    }
    claims.retain(|k, _| matches!(k.as_str(), "iss" | "sub" | "aud" | "roles" | "groups" | "scope" | "email"));
    claims
}

/// The path a login may return to: the request's own path and query if it
/// is a plain local path, else `/` — never `//host` or `/\host`, which
/// browsers follow to another site.
pub(crate) fn return_to(path_and_query: &str) -> String {
    let ok = path_and_query.starts_with('/')
        && !path_and_query.starts_with("//")
        && !path_and_query.starts_with("/\\")
        && path_and_query.len() <= 2048
        && !path_and_query.bytes().any(|b| b.is_ascii_control());
    if ok { path_and_query.to_owned() } else { "/".to_owned() }
}

/// A `Set-Cookie` value: host-only (`__Host-`), `Secure`, `HttpOnly`,
/// `SameSite=Lax` (sent on the provider's top-level redirect back, not on
/// cross-site subrequests or posts).
pub(crate) fn set_cookie(name: &str, value: &str, max_age: i64) -> String {
    format!("{name}={value}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age={}", max_age.max(0))
}

/// The value of cookie `name`, if the request carries it.
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    ward_core::cookies::find(headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()), name)
}

/// The login-state cookie's name for `state`.
pub(crate) fn state_cookie(state: &str) -> String {
    format!("{STATE_COOKIE_PREFIX}{}", state.get(..12).unwrap_or(state))
}

/// Remove Ward's own cookies (`__Host-ward-…`) from a request going
/// upstream: the session, the login state, and the control plane's login
/// binding (cookies ignore ports, so a control plane on the same host sends
/// it here too) are Ward's, not the application's.
pub(crate) fn strip_own_cookies(headers: &mut HeaderMap) {
    if !headers.contains_key(header::COOKIE) {
        return;
    }
    let lines = headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok());
    let kept = ward_core::cookies::retain(lines, |name| !name.starts_with(OWN_COOKIES));
    headers.remove(header::COOKIE);
    if let Some(v) = kept.and_then(|k| http::HeaderValue::from_str(&k).ok()) {
        headers.insert(header::COOKIE, v);
    }
}

/// A random base64url value of 256 bits.
pub(crate) fn random() -> Option<String> {
    ward_crypto::random_bytes::<32>().ok().map(|b| URL_SAFE_NO_PAD.encode(b))
}

/// The PKCE S256 challenge of `verifier`.
pub(crate) fn challenge(verifier: &str) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
    URL_SAFE_NO_PAD.encode(d.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ward_crypto::SecretBytes;

    fn sealer() -> Sealer {
        Sealer::new(&SecretBytes::new(vec![9; 32])).unwrap()
    }

    fn session(created: i64, seen: i64) -> Session {
        Session { sid: "s".into(), iss: "i".into(), sub: "alice".into(), claims: Claims::new(), created, seen }
    }

    #[test]
    fn sessions_end_when_idle_or_old_and_slide_while_used() {
        let (idle, absolute) = (1800, 8 * 3600);
        assert_eq!(freshness(&session(0, 0), 10, idle, absolute), Freshness::Fresh);
        assert_eq!(freshness(&session(0, 0), 225, idle, absolute), Freshness::Touch, "an eighth of idle");
        assert_eq!(freshness(&session(0, 0), 1800, idle, absolute), Freshness::Ended, "idle");
        assert_eq!(freshness(&session(0, 28_700), 28_799, idle, absolute), Freshness::Fresh);
        assert_eq!(
            freshness(&session(0, 28_799), 28_800, idle, absolute),
            Freshness::Ended,
            "absolute, however active"
        );
        assert_eq!(freshness(&session(1000, 1000), 100, idle, absolute), Freshness::Ended, "from the future");
    }

    #[test]
    fn cookies_are_sealed_for_their_purpose() {
        let s = sealer();
        let text = seal(&s, SESSION_PURPOSE, &session(1, 2)).unwrap();
        assert_eq!(open::<Session>(&s, SESSION_PURPOSE, &text), Some(session(1, 2)));
        assert_eq!(open::<Session>(&s, STATE_PURPOSE, &text), None);
        let mut forged = text.into_bytes();
        forged[20] = if forged[20] == b'A' { b'B' } else { b'A' };
        assert_eq!(open::<Session>(&s, SESSION_PURPOSE, std::str::from_utf8(&forged).unwrap()), None);
    }

    #[test]
    fn returns_stay_on_site() {
        assert_eq!(return_to("/app/orders?x=1"), "/app/orders?x=1");
        for evil in ["//evil.example/", "/\\evil.example", "https://evil.example/", "evil", "/a\r\nb"] {
            assert_eq!(return_to(evil), "/", "{evil:?}");
        }
    }

    #[test]
    fn own_cookies_never_reach_the_upstream_and_big_claims_are_trimmed() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            "a=1; __Host-ward-session=xyz; __Host-ward-oidc-abc=q; __Host-ward-login=l; b=2".parse().unwrap(),
        );
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("xyz"));
        strip_own_cookies(&mut h);
        assert_eq!(h[header::COOKIE], "a=1; b=2");
        let mut only = HeaderMap::new();
        only.insert(header::COOKIE, "__Host-ward-session=xyz".parse().unwrap());
        strip_own_cookies(&mut only);
        assert!(only.get(header::COOKIE).is_none());

        let mut id: Claims = serde_json::from_str(r#"{"sub":"alice","nonce":"n","roles":["r"],"jti":"j"}"#).unwrap();
        let kept = session_claims(&id, &sealer(), &session(0, 0));
        assert_eq!(kept.keys().collect::<Vec<_>>(), ["roles", "sub"]);
        id.insert("huge".into(), serde_json::Value::String("x".repeat(5000)));
        let kept = session_claims(&id, &sealer(), &session(0, 0));
        assert!(!kept.contains_key("huge") && kept.contains_key("roles"));
    }

    #[test]
    fn pkce_challenge_matches_rfc_7636() {
        assert_eq!(
            challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }
}
