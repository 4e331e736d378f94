//! The token service over real TLS with a real client (reqwest): discovery,
//! JWKS, client_credentials with both client authentication methods, the
//! refusals with their RFC error codes, introspection, revocation, and a key
//! rotation seen through the JWK set.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::Value;
use ward_authn::Algorithm;
use ward_control::{ControlPlane, ControlSettings, Store};
use ward_issuer::clients::GrantType;

mod common;

use common::{AuditLog, post, spec, start, start_with, verify_with};

#[tokio::test]
async fn client_credentials_end_to_end() {
    let r = start().await;
    let secret = r.cp.create_client(&spec("billing")).unwrap().unwrap();
    let secret = secret.expose().to_owned();

    let disco: Value = r
        .client
        .get(format!("{}/.well-known/openid-configuration", r.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(disco["issuer"], r.base.as_str());
    let jwks_resp = r.client.get(disco["jwks_uri"].as_str().unwrap()).send().await.unwrap();
    assert_eq!(jwks_resp.headers()["cache-control"], "public, max-age=300");
    let jwks: Value = jwks_resp.json().await.unwrap();

    // client_secret_basic
    let (status, body, headers) = post(
        &r,
        "/oauth2/token",
        Some(("billing", &secret)),
        &[("grant_type", "client_credentials"), ("scope", "orders:read")],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(
        (body["token_type"].as_str(), body["expires_in"].as_u64(), body["scope"].as_str()),
        (Some("Bearer"), Some(300), Some("orders:read"))
    );
    let token = body["access_token"].as_str().unwrap().to_owned();
    let claims = verify_with(&jwks, &token).expect("verifies with the published JWK set");
    assert_eq!(
        (claims["iss"].as_str(), claims["sub"].as_str(), claims["aud"].as_str()),
        (Some(r.base.as_str()), Some("billing"), Some("orders"))
    );
    assert!(claims["jti"].as_str().unwrap().len() >= 22);

    // client_secret_post
    let (status, _, _) = post(
        &r,
        "/oauth2/token",
        None,
        &[("grant_type", "client_credentials"), ("client_id", "billing"), ("client_secret", &secret)],
    )
    .await;
    assert_eq!(status, 200);

    // Introspection (authenticated), then revocation, then introspection again.
    let (status, info, _) = post(&r, "/oauth2/introspect", Some(("billing", &secret)), &[("token", &token)]).await;
    assert_eq!((status, info["active"].as_bool(), info["client_id"].as_str()), (200, Some(true), Some("billing")));
    let (status, _, _) = post(&r, "/oauth2/introspect", None, &[("token", &token)]).await;
    assert_eq!(status, 401, "introspection needs client authentication");
    let (status, _, _) = post(&r, "/oauth2/revoke", Some(("billing", &secret)), &[("token", &token)]).await;
    assert_eq!(status, 200);
    let (_, info, _) = post(&r, "/oauth2/introspect", Some(("billing", &secret)), &[("token", &token)]).await;
    assert_eq!(info, serde_json::json!({"active": false}));
    // Revoking garbage is not an error (RFC 7009).
    let (status, _, _) = post(&r, "/oauth2/revoke", Some(("billing", &secret)), &[("token", "garbage")]).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn refusals_carry_the_rfc_error_codes_and_no_reasons() {
    let r = start().await;
    let secret = r.cp.create_client(&spec("billing")).unwrap().unwrap().expose().to_owned();
    let other = r.cp.create_client(&spec("shipping")).unwrap().unwrap().expose().to_owned();
    let cc = ("grant_type", "client_credentials");
    type Case<'a> = (Option<(&'a str, &'a str)>, Vec<(&'a str, &'a str)>, u16, &'a str);
    let cases: Vec<Case> = vec![
        (Some(("billing", "wrong")), vec![cc], 401, "invalid_client"),
        (Some(("nobody", &secret)), vec![cc], 401, "invalid_client"),
        (None, vec![cc], 401, "invalid_client"),
        (Some(("billing", &secret)), vec![("grant_type", "password")], 400, "unsupported_grant_type"),
        (Some(("billing", &secret)), vec![("grant_type", "authorization_code")], 400, "unauthorized_client"),
        (Some(("billing", &secret)), vec![("grant_type", "refresh_token")], 400, "unauthorized_client"),
        (
            Some(("billing", &secret)),
            vec![("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange")],
            400,
            "unauthorized_client",
        ),
        (Some(("billing", &secret)), vec![], 400, "invalid_request"),
        (Some(("billing", &secret)), vec![cc, ("scope", "orders:read admin")], 400, "invalid_scope"),
        (Some(("billing", &secret)), vec![cc, ("resource", "payroll")], 400, "invalid_target"),
        (
            Some(("billing", &secret)),
            vec![cc, ("client_secret", &secret), ("client_id", "billing")],
            400,
            "invalid_request",
        ),
        (Some(("billing", &secret)), vec![cc, ("client_id", "shipping")], 400, "invalid_request"),
    ];
    for (basic, form, status, code) in cases {
        let (s, body, headers) = post(&r, "/oauth2/token", basic, &form).await;
        assert_eq!((s, body["error"].as_str()), (status, Some(code)), "{basic:?} {form:?}: {body}");
        assert!(
            body["request_id"].as_str().is_some() && body.as_object().unwrap().len() == 2,
            "no reason leaks: {body}"
        );
        if status == 401 && basic.is_some() {
            assert_eq!(headers["www-authenticate"], "Basic realm=\"ward\"");
        }
    }
    // A repeated parameter is refused (RFC 6749 §3.2).
    let resp = r
        .client
        .post(format!("{}/oauth2/token", r.base))
        .basic_auth("billing", Some(&secret))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials&scope=orders%3Aread&scope=orders%3Awrite")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    // JSON bodies are not OAuth2.
    let resp = r
        .client
        .post(format!("{}/oauth2/token", r.base))
        .basic_auth("billing", Some(&secret))
        .json(&serde_json::json!({"grant_type": "client_credentials"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    // Another client cannot revoke billing's token, and is answered exactly
    // as for a token that does not exist (it learns nothing of its validity).
    let (_, body, _) = post(&r, "/oauth2/token", Some(("billing", &secret)), &[cc]).await;
    let token = body["access_token"].as_str().unwrap().to_owned();
    let (s, body, _) = post(&r, "/oauth2/revoke", Some(("shipping", &other)), &[("token", &token)]).await;
    let (s2, body2, _) = post(&r, "/oauth2/revoke", Some(("shipping", &other)), &[("token", "no.such.token")]).await;
    assert_eq!((s, &body), (s2, &body2));
    assert_eq!((s, body), (200, serde_json::json!({})));
    // Nor can it introspect it (RFC 7662 §4): not issued to it, not its audience.
    let (_, info, _) = post(&r, "/oauth2/introspect", Some(("shipping", &other)), &[("token", &token)]).await;
    assert_eq!(info, serde_json::json!({"active": false}));
    let (_, info, _) = post(&r, "/oauth2/introspect", Some(("billing", &secret)), &[("token", &token)]).await;
    assert_eq!(info["active"], true, "still valid, for its own client");
    // A Basic header whose parts are form-encoded (RFC 6749 §2.3.1) works.
    let encoded = STANDARD.encode(format!("billing:{}", secret.replace('-', "%2D")));
    let resp = r
        .client
        .post(format!("{}/oauth2/token", r.base))
        .header("authorization", format!("Basic {encoded}"))
        .form(&[cc])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn a_rotated_key_is_published_before_it_signs() {
    let r = start().await;
    let secret = r.cp.create_client(&spec("billing")).unwrap().unwrap().expose().to_owned();
    let before: Value =
        r.client.get(format!("{}/.well-known/jwks.json", r.base)).send().await.unwrap().json().await.unwrap();
    // The access-token key and the RS256 ID-token key.
    let algs = |set: &Value| {
        let mut a: Vec<String> =
            set["keys"].as_array().unwrap().iter().map(|k| k["alg"].as_str().unwrap().to_owned()).collect();
        a.sort();
        a
    };
    assert_eq!(algs(&before), ["EdDSA", "RS256"]);
    let new_kid = r.cp.rotate_keys(ward_control::now()).unwrap();
    let after: Value =
        r.client.get(format!("{}/.well-known/jwks.json", r.base)).send().await.unwrap().json().await.unwrap();
    let kids: Vec<&str> = after["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap()).collect();
    assert_eq!(algs(&after), ["EdDSA", "EdDSA", "RS256", "RS256"], "both rings rotate, old keys still published");
    assert!(kids.contains(&new_kid.as_str()));
    // Still signed by the old key during the publish lead.
    let (_, body, _) =
        post(&r, "/oauth2/token", Some(("billing", &secret)), &[("grant_type", "client_credentials")]).await;
    let token = body["access_token"].as_str().unwrap();
    let header: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(token.split('.').next().unwrap()).unwrap()).unwrap();
    assert_ne!(header["kid"], new_kid.as_str());
    assert!(verify_with(&before, token).is_some(), "a verifier with the old cached set still verifies");
}

#[test]
fn clients_keys_and_revocations_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("control.redb");
    let settings = ControlSettings::new("https://ward.local");
    let cp = ControlPlane::open(Store::open(&path).unwrap(), settings.clone()).unwrap();
    cp.create_client(&spec("billing")).unwrap();
    assert!(cp.create_client(&spec("billing")).is_err(), "ids are unique");
    cp.rotate_keys(ward_control::now()).unwrap();
    cp.revoke("jti-1", ward_control::now() + 100).unwrap();
    cp.revoke("jti-old", 1).unwrap();
    let t = ward_control::now();
    cp.deny_certificate(ward_core::X509_SERIAL, "4a0b", t + 100).unwrap();
    cp.deny_certificate(ward_core::SPIFFE_ID, "spiffe://td/x", t + 100).unwrap();
    assert!(cp.deny_certificate("other", "x", t + 100).is_err());
    let ended = cp.end_tokens_of(ward_core::TokenOwner::Subject, "alice", t).unwrap();
    assert_eq!((ended.cut_off, ended.families), (t, 0));
    let kids = cp.key_ids();
    drop(cp);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600, "the store holds keys");

    let cp = ControlPlane::open(Store::open(&path).unwrap(), settings).unwrap();
    assert_eq!(cp.client_ids(), ["billing"]);
    assert_eq!(cp.key_ids(), kids);
    assert!(cp.is_revoked("jti-1"));
    assert!(!cp.is_revoked("jti-old"), "expired revocations are dropped");
    assert!(cp.is_certificate_denied(ward_core::X509_SERIAL, "4a0b", t));
    assert!(cp.is_certificate_denied(ward_core::SPIFFE_ID, "spiffe://td/x", t));
    assert!(!cp.is_certificate_denied(ward_core::SPIFFE_ID, "spiffe://td/x", t + 100), "until its end");
    let pushed = std::sync::Arc::new(ward_core::LocalRevocations::new());
    let cp = cp.with_revocations(pushed.clone());
    assert!(ward_core::RevocationList::is_revoked(&*pushed, ward_core::X509_SERIAL, "4a0b"), "pushed at start");
    let alice = |iat: u64| {
        let v = serde_json::json!({"sub": "alice", "client_id": "web", "iat": iat});
        v.as_object().unwrap().clone()
    };
    let issuer = "https://ward.local";
    assert!(ward_core::is_cut_off(&*pushed, issuer, &alice(t)), "the cut-off survives and is pushed at start");
    assert!(!ward_core::is_cut_off(&*pushed, issuer, &alice(t + 1)));
    assert!(cp.delete_client("billing").unwrap());
    assert!(cp.client_ids().is_empty());
    let billing = serde_json::json!({"sub": "billing", "client_id": "billing", "iat": t});
    assert!(ward_core::is_cut_off(&*pushed, issuer, billing.as_object().unwrap()), "a deleted client's tokens end");
}

#[tokio::test]
async fn issuance_refusals_revocations_and_admin_calls_are_audited() {
    let log = AuditLog::open();
    let r = start_with(Some(log.sink())).await;
    // Through the admin API, so the creation is audited too.
    let created: Value = r
        .client
        .post(format!("{}/admin/clients", r.base))
        .bearer_auth("admin-token-0123456789abcdef0123456789")
        .json(&serde_json::json!({"client_id": "billing", "scopes": ["orders:read"], "audiences": ["orders"], "token_ttl": 300}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let secret = created["client_secret"].as_str().unwrap().to_owned();
    let unauth = r.client.get(format!("{}/admin/clients", r.base)).bearer_auth("nope").send().await.unwrap();
    assert_eq!(unauth.status(), 401);
    let (s, body, _) =
        post(&r, "/oauth2/token", Some(("billing", &secret)), &[("grant_type", "client_credentials")]).await;
    assert_eq!(s, 200);
    let token = body["access_token"].as_str().unwrap().to_owned();
    post(&r, "/oauth2/token", Some(("billing", "wrong")), &[("grant_type", "client_credentials")]).await;
    post(&r, "/oauth2/token", Some(("billing", &secret)), &[("grant_type", "client_credentials"), ("scope", "admin")])
        .await;
    post(&r, "/oauth2/revoke", Some(("billing", &secret)), &[("token", &token)]).await;
    let records = log.records().await;
    let seen: Vec<(&str, &str, Option<&str>, Option<&str>)> = records
        .iter()
        .map(|r| {
            (
                r["event"].as_str().unwrap(),
                r["reason"].as_str().unwrap(),
                r["client_id"].as_str(),
                r["oauth_error"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("admin", "admin_request", Some("billing"), None),
            ("admin", "admin_request", None, None),
            ("token", "token_issued", Some("billing"), None),
            ("token", "client_authentication_failed", Some("billing"), Some("invalid_client")),
            ("token", "token_request_refused", Some("billing"), Some("invalid_scope")),
            ("token", "revocation_recorded", Some("billing"), None),
        ]
    );
    assert!(records.iter().all(|r| r["client_ip_hmac"].as_str().is_some_and(|h| h.len() == 32)));
    assert!(!records.iter().any(|r| r.to_string().contains(&secret)), "no secret in the log");
}

#[tokio::test]
async fn private_key_jwt_clients_authenticate_with_their_own_keys_once_per_assertion() {
    use ward_authn::TokenSigner;
    let r = start().await;
    let key =
        TokenSigner::from_pkcs8(Algorithm::Es256, &TokenSigner::generate_pkcs8(Algorithm::Es256).unwrap()).unwrap();
    let mut s = spec("keyed");
    s.jwks = Some(key.public_jwk_set().to_string());
    assert!(r.cp.create_client(&s).unwrap().is_none(), "no secret for a key-authenticated client");
    let now = ward_control::now();
    let endpoint = format!("{}/oauth2/token", r.base);
    let assertion = |aud: &str, jti: &str| {
        let claims =
            serde_json::json!({"iss": "keyed", "sub": "keyed", "aud": aud, "exp": now + 60, "iat": now, "jti": jti});
        key.sign(claims.as_object().unwrap()).unwrap()
    };
    let ty = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
    let a1 = assertion(&endpoint, "a1");
    let form = |a: &str| {
        vec![
            ("grant_type", "client_credentials".to_owned()),
            ("client_assertion_type", ty.to_owned()),
            ("client_assertion", a.to_owned()),
        ]
    };
    let send = |f: Vec<(&'static str, String)>, basic: Option<(&'static str, &'static str)>| {
        let mut req = r.client.post(&endpoint).form(&f);
        if let Some((u, p)) = basic {
            req = req.basic_auth(u, Some(p));
        }
        req.send()
    };
    let ok = send(form(&a1), None).await.unwrap();
    assert_eq!(ok.status(), 200);
    let body: Value = ok.json().await.unwrap();
    let claims = verify_with(
        &r.client.get(format!("{}/.well-known/jwks.json", r.base)).send().await.unwrap().json().await.unwrap(),
        body["access_token"].as_str().unwrap(),
    )
    .unwrap();
    assert_eq!(claims["sub"], "keyed");

    let replay = send(form(&a1), None).await.unwrap();
    assert_eq!(replay.status(), 401, "an assertion is single-use");
    let elsewhere = send(form(&assertion("https://other.example/token", "a2")), None).await.unwrap();
    assert_eq!(elsewhere.status(), 401, "an assertion for another endpoint");
    let both = send(form(&assertion(&endpoint, "a3")), Some(("keyed", "x"))).await.unwrap();
    assert_eq!(both.status(), 400, "two authentication methods");
    let mut wrong_type = form(&assertion(&endpoint, "a4"));
    wrong_type[1].1 = "urn:example:other".into();
    assert_eq!(send(wrong_type, None).await.unwrap().status(), 400);
    // Issuer as audience is accepted too (OIDC Core §9).
    assert_eq!(send(form(&assertion(&r.base, "a5")), None).await.unwrap().status(), 200);
}

/// `frontend` (client credentials, tokens for `backend`) and `backend`
/// (token exchange, may target `db`): their secrets.
fn frontend_and_backend(r: &common::Running) -> (String, String) {
    let mut frontend = spec("frontend");
    frontend.audiences = vec!["backend".into()];
    let frontend_secret = r.cp.create_client(&frontend).unwrap().unwrap().expose().to_owned();
    let mut backend = spec("backend");
    backend.grants = vec![GrantType::TokenExchange];
    backend.audiences = vec!["db".into()];
    let backend_secret = r.cp.create_client(&backend).unwrap().unwrap().expose().to_owned();
    (frontend_secret, backend_secret)
}

#[tokio::test]
async fn token_exchange_narrows_and_records_the_actor_chain() {
    let log = AuditLog::open();
    let r = start_with(Some(log.sink())).await;
    let (frontend_secret, backend_secret) = frontend_and_backend(&r);

    let (_, body, _) =
        post(&r, "/oauth2/token", Some(("frontend", &frontend_secret)), &[("grant_type", "client_credentials")]).await;
    let subject = body["access_token"].as_str().unwrap().to_owned();
    let te = "urn:ietf:params:oauth:grant-type:token-exchange";
    let at = "urn:ietf:params:oauth:token-type:access_token";
    let (s, body, _) = post(
        &r,
        "/oauth2/token",
        Some(("backend", &backend_secret)),
        &[
            ("grant_type", te),
            ("subject_token", &subject),
            ("subject_token_type", at),
            ("scope", "orders:read"),
            ("audience", "db"),
        ],
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["issued_token_type"], at);
    let jwks: Value =
        r.client.get(format!("{}/.well-known/jwks.json", r.base)).send().await.unwrap().json().await.unwrap();
    let claims = verify_with(&jwks, body["access_token"].as_str().unwrap()).unwrap();
    assert_eq!(
        (claims["sub"].as_str(), claims["aud"].as_str(), claims["scope"].as_str()),
        (Some("frontend"), Some("db"), Some("orders:read"))
    );
    assert_eq!(claims["act"], serde_json::json!({"sub": "backend"}));

    // Widening, unknown subject tokens, and clients without the grant are refused.
    for (form, code) in [
        (
            vec![
                ("grant_type", te),
                ("subject_token", subject.as_str()),
                ("subject_token_type", at),
                ("scope", "orders:read admin"),
            ],
            "invalid_scope",
        ),
        (
            vec![
                ("grant_type", te),
                ("subject_token", subject.as_str()),
                ("subject_token_type", at),
                ("audience", "payroll"),
            ],
            "invalid_target",
        ),
        (vec![("grant_type", te), ("subject_token", "forged.token.here"), ("subject_token_type", at)], "invalid_grant"),
        (vec![("grant_type", te), ("subject_token", subject.as_str())], "invalid_request"),
    ] {
        let (s, body, _) = post(&r, "/oauth2/token", Some(("backend", &backend_secret)), &form).await;
        assert_eq!((s, body["error"].as_str()), (400, Some(code)), "{form:?}");
    }
    let (s, body, _) = post(
        &r,
        "/oauth2/token",
        Some(("frontend", &frontend_secret)),
        &[("grant_type", te), ("subject_token", &subject), ("subject_token_type", at)],
    )
    .await;
    assert_eq!((s, body["error"].as_str()), (400, Some("unauthorized_client")));
    // A revoked subject token cannot be exchanged.
    post(&r, "/oauth2/revoke", Some(("frontend", &frontend_secret)), &[("token", &subject)]).await;
    let (s, body, _) = post(
        &r,
        "/oauth2/token",
        Some(("backend", &backend_secret)),
        &[("grant_type", te), ("subject_token", &subject), ("subject_token_type", at)],
    )
    .await;
    assert_eq!((s, body["error"].as_str()), (400, Some("invalid_grant")));
    // Every refusal is audited with its code, for the client that asked.
    let refused: Vec<(String, String)> = log
        .records()
        .await
        .iter()
        .filter(|x| x["reason"] == "token_request_refused")
        .map(|x| (x["client_id"].as_str().unwrap().to_owned(), x["oauth_error"].as_str().unwrap().to_owned()))
        .collect();
    let expect = [
        ("backend", "invalid_scope"),
        ("backend", "invalid_target"),
        ("backend", "invalid_grant"),
        ("backend", "invalid_request"),
        ("frontend", "unauthorized_client"),
        ("backend", "invalid_grant"),
    ];
    assert_eq!(refused, expect.map(|(c, e)| (c.to_owned(), e.to_owned())));
}

/// Found from outside (issue #15's follow-up): a token made by exchange
/// outlived the token it came from — revoking the subject token, or
/// deleting its client, left the exchanged one (and its own exchanges)
/// active. Now each exchanged token names what it came from
/// (`exchanged_from`) and ends with it.
#[tokio::test]
async fn exchanged_tokens_end_with_the_token_and_the_client_they_came_from() {
    let r = start().await;
    let (frontend_secret, backend_secret) = frontend_and_backend(&r);
    let te = "urn:ietf:params:oauth:grant-type:token-exchange";
    let at = "urn:ietf:params:oauth:token-type:access_token";
    let issue =
        || post(&r, "/oauth2/token", Some(("frontend", &frontend_secret)), &[("grant_type", "client_credentials")]);
    let exchange = |subject: String| {
        let secret = backend_secret.clone();
        let r = &r;
        async move {
            let form = [("grant_type", te), ("subject_token", subject.as_str()), ("subject_token_type", at)];
            let (s, body, _) = post(r, "/oauth2/token", Some(("backend", &secret)), &form).await;
            (s, body["access_token"].as_str().map(str::to_owned))
        }
    };
    let active = |token: String| {
        let secret = backend_secret.clone();
        let r = &r;
        async move {
            let (_, body, _) = post(r, "/oauth2/introspect", Some(("backend", &secret)), &[("token", &token)]).await;
            body["active"] == true
        }
    };
    let jwks: Value =
        r.client.get(format!("{}/.well-known/jwks.json", r.base)).send().await.unwrap().json().await.unwrap();

    // Revoking the subject token ends what was exchanged from it, down the chain.
    let subject = issue().await.1["access_token"].as_str().unwrap().to_owned();
    let (s, x) = exchange(subject.clone()).await;
    assert_eq!(s, 200);
    let x = x.unwrap();
    let (s, x2) = exchange(x.clone()).await;
    assert_eq!(s, 200, "an exchanged token issued to backend can be exchanged by it again");
    let x2 = x2.unwrap();
    let sub_jti = verify_with(&jwks, &subject).unwrap()["jti"].clone();
    let x_claims = verify_with(&jwks, &x).unwrap();
    assert_eq!(x_claims["exchanged_from"], serde_json::json!({"jti": [sub_jti], "client_id": ["frontend"]}));
    let x2_claims = verify_with(&jwks, &x2).unwrap();
    assert_eq!(
        x2_claims["exchanged_from"],
        serde_json::json!({"jti": [x_claims["jti"], sub_jti], "client_id": ["backend", "frontend"]})
    );
    assert!(active(x.clone()).await && active(x2.clone()).await);
    post(&r, "/oauth2/revoke", Some(("frontend", &frontend_secret)), &[("token", &subject)]).await;
    assert!(!active(x.clone()).await, "the exchanged token ends with its subject token");
    assert!(!active(x2.clone()).await, "and so does the one exchanged from it");
    assert_eq!(exchange(x).await.0, 400, "nothing more is exchanged from it");

    // Deleting the subject token's client ends them too.
    let subject = issue().await.1["access_token"].as_str().unwrap().to_owned();
    let x = exchange(subject).await.1.unwrap();
    assert!(active(x.clone()).await);
    assert!(r.cp.delete_client("frontend").unwrap());
    assert!(!active(x.clone()).await, "deleting the client it came from ends it");
    assert_eq!(exchange(x).await.0, 400);
}

#[tokio::test]
async fn users_are_created_and_changed_through_the_admin_api_with_argon2id() {
    let r = start().await;
    let admin = |req: reqwest::RequestBuilder| req.bearer_auth("admin-token-0123456789abcdef0123456789");
    let created = admin(r.client.post(format!("{}/admin/users", r.base)))
        .json(&serde_json::json!({"username": "alice", "password": "correct horse battery staple"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    assert!(r.cp.check_password("alice", "correct horse battery staple"));
    assert!(!r.cp.check_password("alice", "wrong horse battery staple"));
    assert!(!r.cp.check_password("bob", "correct horse battery staple"), "unknown users fail the same way");
    for (body, why) in [
        (serde_json::json!({"username": "alice", "password": "another long password"}), "duplicate"),
        (serde_json::json!({"username": "Alice", "password": "correct horse battery staple"}), "upper case"),
        (serde_json::json!({"username": "carol", "password": "short"}), "short password"),
    ] {
        let resp = admin(r.client.post(format!("{}/admin/users", r.base))).json(&body).send().await.unwrap();
        assert_eq!(resp.status(), 400, "{why}");
    }
    let changed = admin(r.client.put(format!("{}/admin/users/alice/password", r.base)))
        .json(&serde_json::json!({"password": "a brand new passphrase"}))
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), 204);
    assert!(r.cp.check_password("alice", "a brand new passphrase"));
    assert!(!r.cp.check_password("alice", "correct horse battery staple"));
    let unauth = r
        .client
        .post(format!("{}/admin/users", r.base))
        .json(&serde_json::json!({"username": "x", "password": "y"}))
        .send()
        .await
        .unwrap();
    assert_eq!(unauth.status(), 401);
}
