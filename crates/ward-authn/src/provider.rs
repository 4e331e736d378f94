//! JWT verification for configured providers (RFC 7519, hardened per RFC 8725).

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde_json::Value;
use ward_core::{Claims, Identity, Principal, ReasonCode};

use crate::cache::TokenCache;
use crate::jws::{Algorithm, verify_signature};
use crate::keystore::KeyStore;

/// A token was not accepted; the reason code says why (for the audit log only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("token rejected: {0}")]
pub struct TokenRejected(pub ReasonCode);

/// What a provider accepts.
#[derive(Debug, Clone)]
pub struct ProviderSettings {
    /// Name used in configuration, routes and audit records.
    pub name: String,
    /// The exact `iss` value tokens must carry.
    pub issuer: String,
    /// Accepted audiences; a token's `aud` must contain at least one. Never empty.
    pub audiences: Vec<String>,
    /// Clock skew allowed on `exp`, `nbf` and `iat` (default 60 s).
    pub leeway: Duration,
    /// Longest accepted token lifetime: `exp - iat`, or `exp - now` for a
    /// token without `iat` (default [`Self::DEFAULT_MAX_LIFETIME`]). Every
    /// provider has one, so a token signed with a far-future `exp` (a leaked
    /// or forged long-lived token) is refused, not honoured forever.
    pub max_lifetime: Duration,
    /// Largest accepted token, in bytes (default 8 KiB).
    pub max_token_bytes: usize,
    /// Accept only RFC 9068 access tokens: the JWS `typ` must be `at+jwt`
    /// (or `application/at+jwt`), so an ID token or any other JWT the same
    /// issuer signs is refused (`token_bad_type`). On for Ward's own control
    /// plane; off by default, as many providers type access tokens `JWT`.
    pub require_at_jwt: bool,
    /// Verify OpenID Connect ID tokens (a relying party's login) rather than
    /// access tokens. Off everywhere else: a token carrying `at_hash` or
    /// `c_hash` — claims only ID tokens carry (OIDC Core §3.1.3.6,
    /// §3.3.2.11), and every ID token Ward issues has `at_hash` — is refused
    /// as an access token (`token_bad_type`), whatever its `typ`.
    pub id_tokens: bool,
}

impl ProviderSettings {
    /// The default [`Self::max_lifetime`]: 24 hours.
    pub const DEFAULT_MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);
}

/// The largest NumericDate Ward reads: 9999-12-31T23:59:59Z. Anything later
/// (or negative, or not a finite number) is a malformed token, never clamped.
pub const MAX_NUMERIC_DATE: i64 = 253_402_300_799;

/// One trusted issuer and its keys.
#[derive(Debug)]
pub struct Provider {
    settings: ProviderSettings,
    name: Arc<str>,
    issuer: Arc<str>,
    keys: KeyStore,
}

impl Provider {
    /// A provider from validated settings and its key store.
    #[must_use]
    pub fn new(settings: ProviderSettings, keys: KeyStore) -> Self {
        Self { name: Arc::from(settings.name.as_str()), issuer: Arc::from(settings.issuer.as_str()), settings, keys }
    }

    /// The provider's settings.
    #[must_use]
    pub fn settings(&self) -> &ProviderSettings {
        &self.settings
    }

    /// The provider's keys.
    #[must_use]
    pub fn keys(&self) -> &KeyStore {
        &self.keys
    }
}

#[derive(Deserialize)]
struct Header<'a> {
    #[serde(borrow)]
    alg: Cow<'a, str>,
    #[serde(default, borrow)]
    kid: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    typ: Option<Cow<'a, str>>,
    #[serde(default)]
    crit: Option<Value>,
}

#[derive(Deserialize)]
struct IssuerOnly<'a> {
    #[serde(default, borrow)]
    iss: Option<Cow<'a, str>>,
}

enum Failure {
    Reject(ReasonCode),
    UnknownKey { provider: usize, generation: u64 },
}

impl From<ReasonCode> for Failure {
    fn from(r: ReasonCode) -> Self {
        Self::Reject(r)
    }
}

/// Verifies bearer tokens against a set of providers, with an optional cache.
#[derive(Debug)]
pub struct Authenticator {
    providers: Vec<Provider>,
    cache: Option<TokenCache>,
}

impl Authenticator {
    /// An authenticator over `providers`; `cache` enables the verified-token cache.
    #[must_use]
    pub fn new(providers: Vec<Provider>, cache: Option<TokenCache>) -> Self {
        Self { providers, cache }
    }

    /// The configured providers, in order; indexes into this slice are what
    /// routes use to restrict which providers they accept.
    #[must_use]
    pub fn providers(&self) -> &[Provider] {
        &self.providers
    }

    /// The position of the provider called `name`.
    #[must_use]
    pub fn provider_index(&self, name: &str) -> Option<usize> {
        self.providers.iter().position(|p| p.settings.name == name)
    }

    /// Verify `token` at time `now` (seconds since the Unix epoch), accepting
    /// only providers whose index `allowed` admits.
    ///
    /// A token naming an unknown `kid` triggers one rate-limited, single-flight
    /// refresh of that provider's JWK set before it is rejected.
    ///
    /// # Errors
    /// [`TokenRejected`] with the reason.
    pub async fn authenticate(
        &self,
        token: &str,
        now: i64,
        allowed: impl Fn(usize) -> bool,
    ) -> Result<Identity, TokenRejected> {
        let cache_key = self.cache.as_ref().map(|_| TokenCache::key(token));
        if let (Some(cache), Some(key)) = (&self.cache, &cache_key) {
            let generation = |i: usize| self.providers.get(i).map(|p| p.keys.snapshot().generation());
            if let Some((provider, identity)) = cache.get(key, now, generation)
                && allowed(provider)
            {
                return Ok(identity);
            }
        }
        let result = match self.verify_now(token, now, &allowed) {
            Err(Failure::UnknownKey { provider, generation }) => {
                let store = &self.providers.get(provider).ok_or(TokenRejected(ReasonCode::TokenUnknownKey))?.keys;
                if store.refresh_for_unknown_key(generation).await {
                    self.verify_now(token, now, &allowed)
                } else {
                    Err(Failure::Reject(ReasonCode::TokenUnknownKey))
                }
            }
            other => other,
        };
        match result {
            Ok((provider, generation, identity)) => {
                if let (Some(cache), Some(key)) = (&self.cache, cache_key) {
                    cache.insert(key, provider, generation, &identity, now);
                }
                Ok(identity)
            }
            Err(Failure::Reject(reason)) => Err(TokenRejected(reason)),
            Err(Failure::UnknownKey { .. }) => Err(TokenRejected(ReasonCode::TokenUnknownKey)),
        }
    }

    /// The synchronous verification core: no cache, no refresh.
    fn verify_now(
        &self,
        token: &str,
        now: i64,
        allowed: &impl Fn(usize) -> bool,
    ) -> Result<(usize, u64, Identity), Failure> {
        let max = self.providers.iter().map(|p| p.settings.max_token_bytes).max().unwrap_or(0);
        if token.len() > max {
            return Err(ReasonCode::TokenTooLarge.into());
        }
        let mut parts = token.split('.');
        let (Some(h64), Some(p64), Some(s64), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(ReasonCode::TokenMalformed.into());
        };
        let header_bytes = b64(h64)?;
        let header: Header<'_> = serde_json::from_slice(&header_bytes).map_err(|_| ReasonCode::TokenMalformed)?;
        // `none` and any unknown name end here, before a key is even looked at.
        let alg: Algorithm = header.alg.parse().map_err(|_| ReasonCode::TokenAlgorithmNotAllowed)?;
        if header.crit.is_some() {
            return Err(ReasonCode::TokenCriticalHeader.into());
        }
        if let Some(typ) = &header.typ
            && !is_jwt_type(typ)
        {
            return Err(ReasonCode::TokenBadType.into());
        }
        let payload = b64(p64)?;
        let signature = b64(s64)?;

        let index = self.select_provider(&payload, allowed)?;
        let provider = self.providers.get(index).ok_or(ReasonCode::TokenBadIssuer)?;
        if provider.settings.require_at_jwt && !header.typ.as_deref().is_some_and(is_access_token_type) {
            return Err(ReasonCode::TokenBadType.into());
        }
        let keys = provider.keys.snapshot();
        let Some(key) = keys.select(header.kid.as_deref()) else {
            // A token of another issuer names a key nobody here has: say so,
            // and do not let it make the provider fetch its keys again.
            let peek: IssuerOnly<'_> = serde_json::from_slice(&payload).map_err(|_| ReasonCode::TokenMalformed)?;
            if peek.iss.as_deref() != Some(provider.settings.issuer.as_str()) {
                return Err(ReasonCode::TokenBadIssuer.into());
            }
            return Err(Failure::UnknownKey { provider: index, generation: keys.generation() });
        };
        if key.algorithm() != alg {
            return Err(ReasonCode::TokenAlgorithmNotAllowed.into());
        }
        let signing_input_len = h64.len() + 1 + p64.len();
        let signing_input = token.as_bytes().get(..signing_input_len).ok_or(ReasonCode::TokenMalformed)?;
        if !verify_signature(alg, key, signing_input, &signature) {
            return Err(ReasonCode::TokenBadSignature.into());
        }
        // Only now, with the signature checked, is the payload parsed in full.
        let claims: Claims = serde_json::from_slice(&payload).map_err(|_| ReasonCode::TokenMalformed)?;
        let identity = check_claims(provider, claims, now)?;
        Ok((index, keys.generation(), identity))
    }

    fn select_provider(&self, payload: &[u8], allowed: &impl Fn(usize) -> bool) -> Result<usize, ReasonCode> {
        let mut candidates = (0..self.providers.len()).filter(|&i| allowed(i));
        let first = candidates.next().ok_or(ReasonCode::TokenBadIssuer)?;
        if candidates.next().is_none() {
            return Ok(first); // the issuer is checked after the signature
        }
        let peek: IssuerOnly<'_> = serde_json::from_slice(payload).map_err(|_| ReasonCode::TokenMalformed)?;
        let iss = peek.iss.ok_or(ReasonCode::TokenBadIssuer)?;
        (0..self.providers.len())
            .filter(|&i| allowed(i))
            .find(|&i| self.providers.get(i).is_some_and(|p| p.settings.issuer == iss))
            .ok_or(ReasonCode::TokenBadIssuer)
    }
}

fn b64(segment: &str) -> Result<Vec<u8>, ReasonCode> {
    if segment.is_empty() {
        return Err(ReasonCode::TokenMalformed);
    }
    URL_SAFE_NO_PAD.decode(segment).map_err(|_| ReasonCode::TokenMalformed)
}

/// RFC 9068 §2.1: `at+jwt`, or the full media type.
#[must_use]
pub fn is_access_token_type(typ: &str) -> bool {
    typ.strip_prefix("application/").unwrap_or(typ).eq_ignore_ascii_case("at+jwt")
}

fn is_jwt_type(typ: &str) -> bool {
    let t = typ.strip_prefix("application/").unwrap_or(typ);
    t.eq_ignore_ascii_case("jwt") || t.eq_ignore_ascii_case("at+jwt")
}

/// A NumericDate claim (RFC 7519 §2) in whole seconds, or
/// [`ReasonCode::TokenMalformed`] for anything but a number in
/// `0..=MAX_NUMERIC_DATE`. A float is checked before it is converted: the
/// conversion saturates, so `1e30` would otherwise become `i64::MAX`.
fn numeric_date(claims: &Claims, name: &str) -> Result<Option<i64>, ReasonCode> {
    let Some(value) = claims.get(name) else { return Ok(None) };
    let secs = match value {
        Value::Number(n) => match n.as_i64() {
            Some(i) => Some(i),
            // NumericDate may have a fraction; whole seconds are enough here.
            // INVARIANT: the range check precedes the cast, so it is exact.
            #[allow(clippy::cast_possible_truncation)]
            None => n.as_f64().filter(|f| (0.0..=MAX_NUMERIC_DATE as f64).contains(f)).map(|f| f.floor() as i64),
        },
        _ => None,
    };
    secs.filter(|s| (0..=MAX_NUMERIC_DATE).contains(s)).map(Some).ok_or(ReasonCode::TokenMalformed)
}

fn check_claims(provider: &Provider, claims: Claims, now: i64) -> Result<Identity, ReasonCode> {
    let s = &provider.settings;
    if !s.id_tokens && (claims.contains_key("at_hash") || claims.contains_key("c_hash")) {
        return Err(ReasonCode::TokenBadType);
    }
    let leeway = i64::try_from(s.leeway.as_secs()).unwrap_or(i64::MAX);
    match claims.get("iss") {
        Some(Value::String(iss)) if *iss == s.issuer => {}
        _ => return Err(ReasonCode::TokenBadIssuer),
    }
    let audience_ok = match claims.get("aud") {
        Some(Value::String(a)) => s.audiences.iter().any(|x| x == a),
        Some(Value::Array(list)) => list.iter().any(|v| v.as_str().is_some_and(|a| s.audiences.iter().any(|x| x == a))),
        _ => false,
    };
    if !audience_ok {
        return Err(ReasonCode::TokenBadAudience);
    }
    let exp = numeric_date(&claims, "exp")?.ok_or(ReasonCode::TokenMissingClaim)?;
    if now >= exp.saturating_add(leeway) {
        return Err(ReasonCode::TokenExpired);
    }
    if let Some(nbf) = numeric_date(&claims, "nbf")?
        && now.saturating_add(leeway) < nbf
    {
        return Err(ReasonCode::TokenNotYetValid);
    }
    let iat = numeric_date(&claims, "iat")?;
    if let Some(iat) = iat
        && iat > now.saturating_add(leeway)
    {
        return Err(ReasonCode::TokenIssuedInFuture);
    }
    let start = iat.unwrap_or(now);
    let max = i64::try_from(s.max_lifetime.as_secs()).unwrap_or(i64::MAX);
    if exp.saturating_sub(start) > max {
        return Err(ReasonCode::TokenLifetimeTooLong);
    }
    let principal = match claims.get("sub") {
        Some(Value::String(sub)) if !sub.is_empty() => Principal::new(sub.as_str()),
        _ => return Err(ReasonCode::TokenMissingClaim),
    };
    Ok(Identity {
        principal,
        issuer: Arc::clone(&provider.issuer),
        provider: Arc::clone(&provider.name),
        claims: Arc::new(claims),
        expires_at: exp,
    })
}
