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
/// the client's registered URIs exactly — except for the port of a loopback
/// IP literal (`http://127.0.0.1` or `http://[::1]`), which a native app
/// picks when it starts (RFC 8252 §7.3): there any port matches, and the
/// URI asked for (with its port) is the one used. `openid` requests must
/// name their redirect URI (OIDC Core 3.1.2.1), even a client with only one.
///
/// # Errors
/// [`OAuthError::InvalidRequest`] — the caller must show an error page and
/// must not redirect to an unregistered URI.
pub fn match_redirect(requested: Option<&str>, registered: &[String], openid: bool) -> Result<String, OAuthError> {
    match requested {
        Some(r) => registered
            .iter()
            .find(|x| x.as_str() == r || loopback_parts(x).is_some_and(|reg| loopback_parts(r) == Some(reg)))
            .map(|_| r.to_owned())
            .ok_or_else(|| OAuthError::InvalidRequest("redirect_uri is not registered for this client".into())),
        None if openid => Err(OAuthError::InvalidRequest("redirect_uri required in an OpenID request".into())),
        // Without one, only a client with exactly one registered URI (RFC 6749 §3.1.2.3).
        None => match registered {
            [only] => Ok(only.clone()),
            _ => Err(OAuthError::InvalidRequest("redirect_uri required".into())),
        },
    }
}

/// A loopback redirect URI without its port: the host (`127.0.0.1` or
/// `[::1]`) and everything after the port, which must start a path or a
/// query. `None` for anything else — `localhost` (a name, which RFC 8252
/// §8.3 advises against, is matched exactly), another host, a port that is
/// not 1–65535, or whatever follows the host that is not a path (a user
/// info `@`, a longer host name).
fn loopback_parts(uri: &str) -> Option<(&str, &str)> {
    let rest = uri.strip_prefix("http://")?;
    let host = ["127.0.0.1", "[::1]"].into_iter().find(|h| rest.starts_with(h))?;
    let after = rest.get(host.len()..)?;
    let after = match after.strip_prefix(':') {
        Some(p) => {
            let digits = p.find(|c: char| !c.is_ascii_digit()).unwrap_or(p.len());
            if !p.get(..digits)?.parse::<u16>().is_ok_and(|port| port > 0) {
                return None;
            }
            p.get(digits..)?
        }
        None => after,
    };
    (after.starts_with('/') || after.starts_with('?')).then_some((host, after))
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
        let m = |r: Option<&str>, reg: &[String]| match_redirect(r, reg, false);
        assert_eq!(m(Some("https://app.example/cb"), &registered).as_deref(), Ok("https://app.example/cb"));
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
            assert!(m(Some(evil), &registered).is_err(), "{evil}");
        }
        assert!(m(None, &registered).is_err(), "ambiguous without one");
        assert_eq!(m(None, &registered[..1]).as_deref(), Ok("https://app.example/cb"));
        assert!(match_redirect(None, &registered[..1], true).is_err(), "OpenID requests name it (OIDC Core 3.1.2.1)");

        // RFC 8252 §7.3: a loopback IP literal matches on any port, and the
        // URI asked for is the one used; nothing else about it may change.
        let native = vec!["http://127.0.0.1/cb".to_owned(), "http://[::1]:8400/cb?x=1".to_owned()];
        for ok in
            ["http://127.0.0.1:51234/cb", "http://127.0.0.1/cb", "http://127.0.0.1:1/cb", "http://[::1]:65535/cb?x=1"]
        {
            assert_eq!(m(Some(ok), &native).as_deref(), Ok(ok), "{ok}");
        }
        for evil in [
            "http://127.0.0.1:0/cb",
            "http://127.0.0.1:65536/cb",
            "http://127.0.0.1:80@evil.example/cb",
            "http://127.0.0.1.evil.example/cb",
            "http://127.0.0.1:8400/cb/extra",
            "http://127.0.0.1:8400/other",
            "http://127.0.0.2:8400/cb",
            "http://localhost:8400/cb",
            "https://127.0.0.1:8400/cb",
            "http://[::1]:8400/cb",
            "http://[::1]:8400/cb?x=2",
            "http://127.0.0.1:/cb",
        ] {
            assert!(m(Some(evil), &native).is_err(), "{evil}");
        }
        // Names and other hosts still match exactly, port included.
        let named = vec!["http://localhost:8400/cb".to_owned(), "https://app.example:8443/cb".to_owned()];
        assert!(m(Some("http://localhost:9999/cb"), &named).is_err());
        assert!(m(Some("https://app.example:9443/cb"), &named).is_err());

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
