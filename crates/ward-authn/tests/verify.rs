//! JWT verification: every rejection path returns the right reason code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use aws_lc_rs::hmac;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use ward_authn::{
    Algorithm, Authenticator, JwkSet, JwksSource, KeyStore, Provider, ProviderSettings, SourceError, TokenCache,
    TokenRejected, TokenSigner,
};
use ward_core::ReasonCode;

const NOW: i64 = 1_800_000_000;

fn settings() -> ProviderSettings {
    ProviderSettings {
        name: "test".into(),
        issuer: "https://issuer.test".into(),
        audiences: vec!["orders".into()],
        leeway: Duration::from_secs(60),
        max_lifetime: ProviderSettings::DEFAULT_MAX_LIFETIME,
        max_token_bytes: 8192,
        require_at_jwt: false,
        id_tokens: false,
    }
}

fn signer() -> TokenSigner {
    TokenSigner::from_pkcs8(Algorithm::Es256, &TokenSigner::generate_pkcs8(Algorithm::Es256).unwrap()).unwrap()
}

fn fixed_store(signer: &TokenSigner) -> KeyStore {
    let set = JwkSet::parse(signer.public_jwk_set().to_string().as_bytes()).unwrap();
    KeyStore::fixed(set.verifying_keys().unwrap())
}

fn claims(extra: Value) -> ward_core::Claims {
    let mut base = json!({"iss": "https://issuer.test", "aud": "orders", "sub": "alice", "exp": NOW + 300, "iat": NOW});
    if let (Value::Object(b), Value::Object(e)) = (&mut base, extra) {
        for (k, v) in e {
            if v.is_null() {
                b.remove(&k);
            } else {
                b.insert(k, v);
            }
        }
    }
    match base {
        Value::Object(m) => m,
        _ => unreachable!(),
    }
}

fn raw_token(header: &Value, payload: &Value, sig: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(payload.to_string()),
        URL_SAFE_NO_PAD.encode(sig)
    )
}

async fn check(auth: &Authenticator, token: &str) -> Result<String, ReasonCode> {
    auth.authenticate(token, NOW, |_| true).await.map(|id| id.principal.to_string()).map_err(|TokenRejected(r)| r)
}

#[tokio::test]
async fn valid_token_is_accepted_and_every_bad_token_has_its_reason() {
    let s = signer();
    let auth = Authenticator::new(vec![Provider::new(settings(), fixed_store(&s))], None);
    let ok = s.sign(&claims(json!({}))).unwrap();
    assert_eq!(check(&auth, &ok).await, Ok("alice".into()));

    let cases: Vec<(&str, String, ReasonCode)> = vec![
        ("expired", s.sign(&claims(json!({"exp": NOW - 61}))).unwrap(), ReasonCode::TokenExpired),
        ("not yet valid", s.sign(&claims(json!({"nbf": NOW + 61}))).unwrap(), ReasonCode::TokenNotYetValid),
        ("iat in future", s.sign(&claims(json!({"iat": NOW + 120}))).unwrap(), ReasonCode::TokenIssuedInFuture),
        ("wrong issuer", s.sign(&claims(json!({"iss": "https://evil.test"}))).unwrap(), ReasonCode::TokenBadIssuer),
        ("wrong audience", s.sign(&claims(json!({"aud": "payments"}))).unwrap(), ReasonCode::TokenBadAudience),
        ("no exp", s.sign(&claims(json!({"exp": null}))).unwrap(), ReasonCode::TokenMissingClaim),
        ("string exp", s.sign(&claims(json!({"exp": "later"}))).unwrap(), ReasonCode::TokenMalformed),
        // NumericDates out of range are malformed, never clamped (a saturating
        // float conversion once made 1e30 a token that never expired).
        ("exp 1e30", s.sign(&claims(json!({"exp": 1e30}))).unwrap(), ReasonCode::TokenMalformed),
        (
            "exp 10^30",
            s.sign(&claims(serde_json::from_str(r#"{"exp": 1000000000000000000000000000000}"#).unwrap())).unwrap(),
            ReasonCode::TokenMalformed,
        ),
        ("exp u64::MAX", s.sign(&claims(json!({"exp": u64::MAX}))).unwrap(), ReasonCode::TokenMalformed),
        ("exp i64::MAX", s.sign(&claims(json!({"exp": i64::MAX}))).unwrap(), ReasonCode::TokenMalformed),
        (
            "exp after 9999",
            s.sign(&claims(json!({"exp": ward_authn::MAX_NUMERIC_DATE + 1}))).unwrap(),
            ReasonCode::TokenMalformed,
        ),
        ("negative exp", s.sign(&claims(json!({"exp": -1}))).unwrap(), ReasonCode::TokenMalformed),
        ("nbf 1e30", s.sign(&claims(json!({"nbf": 1e30}))).unwrap(), ReasonCode::TokenMalformed),
        ("iat -1e30", s.sign(&claims(json!({"iat": -1e30}))).unwrap(), ReasonCode::TokenMalformed),
        // Every provider has a longest lifetime (24 h unless configured).
        ("25 h lifetime", s.sign(&claims(json!({"exp": NOW + 25 * 3600}))).unwrap(), ReasonCode::TokenLifetimeTooLong),
        (
            "no iat, 25 h ahead",
            s.sign(&claims(json!({"iat": null, "exp": NOW + 25 * 3600}))).unwrap(),
            ReasonCode::TokenLifetimeTooLong,
        ),
        ("no sub", s.sign(&claims(json!({"sub": null}))).unwrap(), ReasonCode::TokenMissingClaim),
        ("garbage", "not.a.jwt".into(), ReasonCode::TokenMalformed),
        ("two segments", "abc.def".into(), ReasonCode::TokenMalformed),
        ("four segments", format!("{ok}.x"), ReasonCode::TokenMalformed),
        ("padded base64", ok.replacen('.', "=.", 1), ReasonCode::TokenMalformed),
        ("too large", "a".repeat(9000), ReasonCode::TokenTooLarge),
    ];
    for (name, token, want) in cases {
        assert_eq!(check(&auth, &token).await, Err(want), "{name}");
    }

    // A fractional NumericDate is read in whole seconds; 23 h is within the cap.
    let fractional = s.sign(&claims(json!({"exp": NOW as f64 + 300.5}))).unwrap();
    assert!(check(&auth, &fractional).await.is_ok());
    let long = s.sign(&claims(json!({"exp": NOW + 23 * 3600}))).unwrap();
    assert!(check(&auth, &long).await.is_ok());

    // Leeway: expired 30 s ago is still inside the 60 s leeway.
    let recent = s.sign(&claims(json!({"exp": NOW - 30}))).unwrap();
    assert!(check(&auth, &recent).await.is_ok());

    // Signature tampering: flip a bit of the signature, and swap the payload.
    let mut parts: Vec<String> = ok.split('.').map(str::to_owned).collect();
    let mut sig = URL_SAFE_NO_PAD.decode(&parts[2]).unwrap();
    sig[5] ^= 1;
    let flipped = format!("{}.{}.{}", parts[0], parts[1], URL_SAFE_NO_PAD.encode(&sig));
    assert_eq!(check(&auth, &flipped).await, Err(ReasonCode::TokenBadSignature));
    parts[1] = URL_SAFE_NO_PAD.encode(Value::Object(claims(json!({"sub": "admin"}))).to_string());
    assert_eq!(check(&auth, &parts.join(".")).await, Err(ReasonCode::TokenBadSignature));

    // Signed by a different key with the same kid.
    let other = signer();
    let mut header = json!({"alg": "ES256", "kid": s.kid(), "typ": "JWT"});
    let forged_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(Value::Object(claims(json!({}))).to_string())
    );
    let forged = {
        let t = other.sign(&claims(json!({}))).unwrap();
        let sig = t.rsplit('.').next().unwrap().to_owned();
        format!("{forged_input}.{sig}")
    };
    assert_eq!(check(&auth, &forged).await, Err(ReasonCode::TokenBadSignature));

    // alg: none, with and without a signature.
    let payload = Value::Object(claims(json!({})));
    header["alg"] = json!("none");
    assert_eq!(check(&auth, &raw_token(&header, &payload, b"")).await, Err(ReasonCode::TokenAlgorithmNotAllowed));
    assert_eq!(check(&auth, &raw_token(&header, &payload, b"x")).await, Err(ReasonCode::TokenAlgorithmNotAllowed));

    // Key confusion: HS256 keyed with the ES256 public key (as JWK JSON and as raw point).
    header["alg"] = json!("HS256");
    let input =
        format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(payload.to_string()));
    for secret in [s.public_jwk().to_string().into_bytes(), b"-----BEGIN PUBLIC KEY-----".to_vec()] {
        let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &secret), input.as_bytes());
        let confused = format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()));
        assert_eq!(check(&auth, &confused).await, Err(ReasonCode::TokenAlgorithmNotAllowed));
    }

    // Unknown kid, critical headers, wrong typ.
    let mut h = json!({"alg": "ES256", "kid": "nope", "typ": "JWT"});
    assert_eq!(check(&auth, &raw_token(&h, &payload, &[0; 64])).await, Err(ReasonCode::TokenUnknownKey));
    h = json!({"alg": "ES256", "kid": s.kid(), "crit": ["exp"], "exp": 1});
    assert_eq!(check(&auth, &raw_token(&h, &payload, &[0; 64])).await, Err(ReasonCode::TokenCriticalHeader));
    h = json!({"alg": "ES256", "kid": s.kid(), "typ": "dpop+jwt"});
    assert_eq!(check(&auth, &raw_token(&h, &payload, &[0; 64])).await, Err(ReasonCode::TokenBadType));
    // Duplicate header members are malformed, not "last one wins".
    let dup = format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"ES256","alg":"none"}"#),
        URL_SAFE_NO_PAD.encode(payload.to_string()),
        URL_SAFE_NO_PAD.encode([0; 64])
    );
    assert_eq!(check(&auth, &dup).await, Err(ReasonCode::TokenMalformed));
    // Header that is not JSON.
    let bad_json = format!("{}.{}.{}", URL_SAFE_NO_PAD.encode("{alg"), URL_SAFE_NO_PAD.encode("{}"), "AAAA");
    assert_eq!(check(&auth, &bad_json).await, Err(ReasonCode::TokenMalformed));
}

#[tokio::test]
async fn hs256_works_only_with_an_explicit_long_secret() {
    let secret = ward_crypto::SecretBytes::new(vec![42; 32]);
    let key = ward_authn::VerifyingKey::from_secret(Algorithm::Hs256, &secret).unwrap();
    let auth =
        Authenticator::new(vec![Provider::new(settings(), KeyStore::fixed(vec![(Some("h".into()), key)]))], None);
    let header = json!({"alg": "HS256", "kid": "h"});
    let payload = Value::Object(claims(json!({})));
    let input =
        format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(payload.to_string()));
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret.expose()), input.as_bytes());
    let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()));
    assert_eq!(check(&auth, &token).await, Ok("alice".into()));
    let wrong = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &[43; 32]), input.as_bytes());
    let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(wrong.as_ref()));
    assert_eq!(check(&auth, &token).await, Err(ReasonCode::TokenBadSignature));
}

#[tokio::test]
async fn cache_serves_repeat_tokens_but_never_past_exp() {
    let s = signer();
    let auth = Authenticator::new(vec![Provider::new(settings(), fixed_store(&s))], Some(TokenCache::new(100)));
    let token = s.sign(&claims(json!({"exp": NOW + 10}))).unwrap();
    assert!(auth.authenticate(&token, NOW, |_| true).await.is_ok());
    assert!(auth.authenticate(&token, NOW + 1, |_| true).await.is_ok());
    // Past exp the cache entry is gone, and leeway still applies on the full path.
    assert!(auth.authenticate(&token, NOW + 30, |_| true).await.is_ok());
    assert_eq!(
        auth.authenticate(&token, NOW + 71, |_| true).await.map(|_| ()),
        Err(TokenRejected(ReasonCode::TokenExpired))
    );
    // A provider the route does not accept is not served from the cache.
    assert!(auth.authenticate(&token, NOW + 1, |_| false).await.is_err());
}

#[derive(Debug)]
struct CountingSource {
    body: std::sync::Mutex<Option<Vec<u8>>>,
    fetches: AtomicUsize,
}

impl JwksSource for CountingSource {
    fn fetch(&self) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Vec<u8>, SourceError>> + Send + '_>> {
        Box::pin(async move {
            self.fetches.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(50)).await;
            self.body.lock().unwrap().clone().ok_or_else(|| SourceError("unreachable".into()))
        })
    }
}

#[tokio::test]
async fn unknown_kid_refreshes_once_single_flight_and_stale_keys_survive_failures() {
    let old = signer();
    let new = signer();
    let source = Arc::new(CountingSource {
        body: std::sync::Mutex::new(Some(old.public_jwk_set().to_string().into_bytes())),
        fetches: AtomicUsize::new(0),
    });
    let store = KeyStore::with_source(vec![], source.clone(), Duration::from_secs(30));
    store.refresh().await.unwrap();
    assert_eq!(source.fetches.load(Ordering::SeqCst), 1);
    let auth = Arc::new(Authenticator::new(vec![Provider::new(settings(), store)], None));
    assert!(check(&auth, &old.sign(&claims(json!({}))).unwrap()).await.is_ok());

    // The issuer rotates to `new`; 20 concurrent requests with the new kid share one fetch.
    *source.body.lock().unwrap() = Some(new.public_jwk_set().to_string().into_bytes());
    let token = new.sign(&claims(json!({}))).unwrap();
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (auth, token) = (auth.clone(), token.clone());
        tasks.push(tokio::spawn(async move { check(&auth, &token).await }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), Ok("alice".into()));
    }
    assert_eq!(source.fetches.load(Ordering::SeqCst), 2, "one refresh for twenty requests");

    // Another unknown kid within 30 s: rejected without fetching again.
    let stranger = signer();
    let t = stranger.sign(&claims(json!({}))).unwrap();
    assert_eq!(check(&auth, &t).await, Err(ReasonCode::TokenUnknownKey));
    assert_eq!(source.fetches.load(Ordering::SeqCst), 2);

    // A token of another issuer with a key nobody here has is a bad issuer
    // (not an unknown key of ours), and makes nothing fetch again.
    let foreign = stranger.sign(&claims(json!({"iss": "https://evil.test"}))).unwrap();
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(check(&auth, &foreign).await, Err(ReasonCode::TokenBadIssuer));
    assert_eq!(source.fetches.load(Ordering::SeqCst), 2);

    // The source goes down: a forced refresh fails, the known keys keep working.
    *source.body.lock().unwrap() = None;
    assert!(auth.providers()[0].keys().refresh().await.is_err());
    assert_eq!(check(&auth, &token).await, Ok("alice".into()));
}

#[tokio::test]
async fn multiple_providers_are_chosen_by_issuer() {
    let a = signer();
    let b = signer();
    let mut sb = settings();
    sb.name = "b".into();
    sb.issuer = "https://b.test".into();
    let auth =
        Authenticator::new(vec![Provider::new(settings(), fixed_store(&a)), Provider::new(sb, fixed_store(&b))], None);
    let tb = b.sign(&claims(json!({"iss": "https://b.test"}))).unwrap();
    assert_eq!(check(&auth, &tb).await, Ok("alice".into()));
    // Route accepts only provider 0: b's token is refused by issuer.
    assert_eq!(
        auth.authenticate(&tb, NOW, |i| i == 0).await.map(|_| ()),
        Err(TokenRejected(ReasonCode::TokenBadIssuer))
    );
}

/// An ID token (it carries `at_hash` or `c_hash`, claims only ID tokens
/// have) is never an access token — even typed `JWT`, for the right
/// audience, on a provider that does not require `at+jwt` — unless the
/// provider verifies ID tokens (a relying party's login).
#[tokio::test]
async fn id_tokens_are_refused_as_access_tokens_whatever_their_type() {
    let s = signer();
    let auth = Authenticator::new(vec![Provider::new(settings(), fixed_store(&s))], None);
    for claim in ["at_hash", "c_hash"] {
        let id_token = s.sign(&claims(json!({ claim: "x4Q8WCLeCqbEM2Y4hV1Fvg" }))).unwrap();
        assert_eq!(check(&auth, &id_token).await, Err(ReasonCode::TokenBadType), "{claim}");
    }
    let relying_party = Authenticator::new(
        vec![Provider::new(ProviderSettings { id_tokens: true, ..settings() }, fixed_store(&s))],
        None,
    );
    let id_token = s.sign(&claims(json!({"at_hash": "x4Q8WCLeCqbEM2Y4hV1Fvg"}))).unwrap();
    assert_eq!(check(&relying_party, &id_token).await, Ok("alice".into()));
}
