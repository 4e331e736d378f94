//! PKCE (RFC 7636) and redirect URIs for the authorization-code grant.
//!
//! Only `S256` is accepted: `plain` sends the secret in the front channel,
//! which is what PKCE exists to avoid (OAuth 2.1 drops it too). Redirect
//! URIs match registered ones byte for byte — no prefix, case or path
//! tolerance, which is how open redirects and code theft happen.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::error::OAuthError;

/// Check an authorization request's `code_challenge` and `code_challenge_method`.
///
/// # Errors
/// [`OAuthError::InvalidRequest`] for a missing challenge, `plain`, or a
/// challenge that is not a base64url SHA-256.
pub fn check_challenge(challenge: Option<&str>, method: Option<&str>) -> Result<String, OAuthError> {
    match method {
        Some("S256") => {}
        Some("plain") => return Err(OAuthError::InvalidRequest("code_challenge_method plain is not allowed".into())),
        Some(_) | None => return Err(OAuthError::InvalidRequest("code_challenge_method must be S256".into())),
    }
    let c = challenge.ok_or_else(|| OAuthError::InvalidRequest("code_challenge missing".into()))?;
    if c.len() != 43 || URL_SAFE_NO_PAD.decode(c).map(|b| b.len()) != Ok(32) {
        return Err(OAuthError::InvalidRequest("code_challenge is not a base64url SHA-256".into()));
    }
    Ok(c.to_owned())
}

/// Whether `verifier` (RFC 7636 §4.1: 43–128 unreserved characters)
/// matches `challenge` = base64url(SHA-256(verifier)), in constant time.
#[must_use]
pub fn verify_s256(verifier: &str, challenge: &str) -> bool {
    let well_formed = (43..=128).contains(&verifier.len())
        && verifier.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
    let computed = URL_SAFE_NO_PAD.encode(digest.as_ref());
    well_formed && ward_crypto::constant_time_eq(computed.as_bytes(), challenge.as_bytes())
}

/// Validate a redirect URI at client registration: absolute `https`, or
/// `http` on a loopback host (RFC 8252 §7.3, native apps); no fragment, no
/// wildcard, no user info.
///
/// # Errors
/// [`OAuthError::InvalidRequest`] naming the problem.
pub fn check_registered_redirect(uri: &str) -> Result<(), OAuthError> {
    let bad = |why: &str| Err(OAuthError::InvalidRequest(format!("redirect URI `{uri}`: {why}")));
    let rest = if let Some(r) = uri.strip_prefix("https://") {
        r
    } else if let Some(r) = uri.strip_prefix("http://") {
        let host = r.split(['/', '?']).next().unwrap_or("");
        let host = host
            .rsplit_once(':')
            .map_or(host, |(h, port)| if port.bytes().all(|b| b.is_ascii_digit()) { h } else { host });
        if !matches!(host, "127.0.0.1" | "[::1]" | "localhost") {
            return bad("http is only allowed on loopback");
        }
        r
    } else {
        return bad("must be https (or http on loopback)");
    };
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    if authority.is_empty() || authority.contains('@') {
        return bad("needs a host and no user info");
    }
    if uri.contains('#') || uri.contains('*') || uri.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("no fragment, wildcard, spaces or control characters");
    }
    Ok(())
}

/// The redirect URI of an authorization request, which must equal one of
/// the client's registered URIs exactly.
///
/// # Errors
/// [`OAuthError::InvalidRequest`] — the caller must show an error page and
/// must not redirect to an unregistered URI.
pub fn match_redirect<'a>(requested: Option<&str>, registered: &'a [String]) -> Result<&'a str, OAuthError> {
    match requested {
        Some(r) => registered
            .iter()
            .find(|x| x.as_str() == r)
            .map(String::as_str)
            .ok_or_else(|| OAuthError::InvalidRequest("redirect_uri is not registered for this client".into())),
        // Without one, only a client with exactly one registered URI (RFC 6749 §3.1.2.3).
        None => match registered {
            [only] => Ok(only.as_str()),
            _ => Err(OAuthError::InvalidRequest("redirect_uri required".into())),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_7636_appendix_b_vector_and_s256_only() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(verify_s256(verifier, challenge));
        assert!(!verify_s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXl", challenge), "wrong verifier");
        assert!(!verify_s256(challenge, challenge), "the challenge itself is not the verifier");
        assert!(!verify_s256("short", "short"), "too short even if it matched");
        assert_eq!(check_challenge(Some(challenge), Some("S256")).unwrap(), challenge);
        for (c, m) in [
            (Some(challenge), Some("plain")),
            (Some(challenge), None),
            (None, Some("S256")),
            (Some("abc"), Some("S256")),
        ] {
            assert_eq!(check_challenge(c, m).map_err(|e| e.code()), Err("invalid_request"), "{c:?} {m:?}");
        }
    }

    #[test]
    fn redirect_uris_match_exactly_and_register_safely() {
        let registered = vec!["https://app.example/cb".to_owned(), "http://127.0.0.1:8400/cb".to_owned()];
        assert_eq!(match_redirect(Some("https://app.example/cb"), &registered), Ok("https://app.example/cb"));
        for evil in [
            "https://app.example/cb/../evil",
            "https://app.example/cb/extra",
            "https://app.example/CB",
            "https://APP.example/cb",
            "https://app.example/c",
            "https://app.example/cb?x=1",
            "https://app.example.evil.com/cb",
            "https://evil.example/cb",
            "https://app.example/cb#",
        ] {
            assert!(match_redirect(Some(evil), &registered).is_err(), "{evil}");
        }
        assert!(match_redirect(None, &registered).is_err(), "ambiguous without one");
        assert_eq!(match_redirect(None, &registered[..1]), Ok("https://app.example/cb"));

        for ok in ["https://app.example/cb", "http://127.0.0.1:8400/cb", "http://localhost/cb", "http://[::1]:9/x"] {
            assert!(check_registered_redirect(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://app.example/cb",
            "https://app.example/cb#frag",
            "https://*.example/cb",
            "https://user@app.example/cb",
            "ftp://app.example/cb",
            "https:///cb",
            "javascript:alert(1)",
        ] {
            assert!(check_registered_redirect(bad).is_err(), "{bad}");
        }
    }
}
