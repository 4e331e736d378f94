//! The authorization-code grant over real TLS, driven like a browser and
//! an application would (reqwest, redirects not followed): the login page,
//! PKCE, ID tokens, refresh rotation — and every attack the issue lists:
//! code reuse, PKCE mismatch and `plain`, redirect-URI variants, open
//! redirects, refresh reuse, expired codes, wrong secrets, login CSRF. Each
//! is refused with its OAuth2 code and audited.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{AuditLog, Running, post, start, start_custom, start_with, verify_with};
use serde_json::Value;
use ward_control::ClientSpec;
use ward_issuer::clients::GrantType;

const CB: &str = "https://app.example/cb";
const PASSWORD: &str = "correct horse battery";

/// A verifier and its S256 challenge.
fn pkce() -> (String, String) {
    let verifier = URL_SAFE_NO_PAD.encode(ward_crypto::random_bytes::<32>().unwrap());
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
    (verifier, URL_SAFE_NO_PAD.encode(digest.as_ref()))
}

/// Register `web` (code + refresh) and `other` (code), and user alice.
fn setup(r: &Running) -> (String, String) {
    let web = ClientSpec {
        id: "web".into(),
        grants: vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
        scopes: vec!["orders:read".into(), "orders:write".into()],
        audiences: vec!["orders".into()],
        token_ttl: 300,
        jwks: None,
        redirect_uris: vec![CB.into(), "http://127.0.0.1:8400/cb".into()],
        roles: Vec::new(),
    };
    let other = ClientSpec { id: "other".into(), grants: vec![GrantType::AuthorizationCode], ..web.clone() };
    let web_secret = r.cp.create_client(&web).unwrap().unwrap().expose().to_owned();
    let other_secret = r.cp.create_client(&other).unwrap().unwrap().expose().to_owned();
    r.cp.create_user("alice", PASSWORD, &["reader".to_owned()]).unwrap();
    (web_secret, other_secret)
}

/// A browser: no redirects followed, the login cookie kept by hand.
struct Browser<'a> {
    r: &'a Running,
    http: reqwest::Client,
    cookie: Option<String>,
}

impl<'a> Browser<'a> {
    fn new(r: &'a Running) -> Self {
        let http = reqwest::Client::builder()
            .tls_certs_only([r.ca.clone()])
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Self { r, http, cookie: None }
    }

    async fn authorize(&mut self, params: &[(&str, &str)]) -> reqwest::Response {
        let mut query = form_urlencoded::Serializer::new(String::new());
        for (k, v) in params {
            query.append_pair(k, v);
        }
        let url = format!("{}/oauth2/authorize?{}", self.r.base, query.finish());
        let resp = self.http.get(url).send().await.unwrap();
        if let Some(c) = resp.headers().get("set-cookie") {
            self.cookie = Some(c.to_str().unwrap().split(';').next().unwrap().to_owned());
        }
        resp
    }

    async fn login(&self, ticket: &str, user: &str, password: &str) -> reqwest::Response {
        let mut req = self.http.post(format!("{}/oauth2/authorize", self.r.base)).form(&[
            ("ticket", ticket),
            ("username", user),
            ("password", password),
        ]);
        if let Some(c) = &self.cookie {
            req = req.header("cookie", c);
        }
        req.send().await.unwrap()
    }
}

fn ticket_in(html: &str) -> String {
    let at = html.find("name=\"ticket\" value=\"").expect("a login form") + "name=\"ticket\" value=\"".len();
    html[at..].split('"').next().unwrap().to_owned()
}

/// The query parameters of a redirect.
fn location(resp: &reqwest::Response) -> (String, std::collections::HashMap<String, String>) {
    let loc = resp.headers().get("location").expect("a redirect").to_str().unwrap().to_owned();
    let url = reqwest::Url::parse(&loc).unwrap();
    let params = url.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    (format!("{}://{}{}", url.scheme(), url.authority(), url.path()), params)
}

fn auth_params<'a>(challenge: &'a str, state: &'a str) -> Vec<(&'static str, &'a str)> {
    vec![
        ("client_id", "web"),
        ("redirect_uri", CB),
        ("response_type", "code"),
        ("scope", "openid orders:read"),
        ("state", state),
        ("nonce", "n-0S6_WzA2Mj"),
        ("code_challenge", challenge),
        ("code_challenge_method", "S256"),
    ]
}

/// Log alice in and return the code.
async fn code_for(r: &Running, challenge: &str) -> String {
    let mut b = Browser::new(r);
    let page = b.authorize(&auth_params(challenge, "st")).await;
    assert_eq!(page.status(), 200);
    let ticket = ticket_in(&page.text().await.unwrap());
    let done = b.login(&ticket, "alice", PASSWORD).await;
    assert_eq!(done.status(), 303);
    location(&done).1["code"].clone()
}

async fn redeem(r: &Running, secret: &str, code: &str, verifier: &str) -> (u16, Value) {
    let form =
        [("grant_type", "authorization_code"), ("code", code), ("redirect_uri", CB), ("code_verifier", verifier)];
    let (s, body, _) = post(r, "/oauth2/token", Some(("web", secret)), &form).await;
    (s, body)
}

async fn refresh(r: &Running, secret: &str, token: &str) -> (u16, Value) {
    let form = [("grant_type", "refresh_token"), ("refresh_token", token)];
    let (s, body, _) = post(r, "/oauth2/token", Some(("web", secret)), &form).await;
    (s, body)
}

async fn active(r: &Running, secret: &str, token: &str) -> bool {
    let (_, body, _) = post(r, "/oauth2/introspect", Some(("web", secret)), &[("token", token)]).await;
    body["active"].as_bool().unwrap()
}

#[tokio::test]
async fn code_flow_with_pkce_id_token_and_refresh_rotation() {
    let log = AuditLog::open();
    let r = start_with(Some(log.sink())).await;
    let (secret, _) = setup(&r);
    let (verifier, challenge) = pkce();
    let mut b = Browser::new(&r);

    let page = b.authorize(&auth_params(&challenge, "xyz")).await;
    assert_eq!(page.status(), 200);
    let h = page.headers().clone();
    assert_eq!(h["content-type"], "text/html; charset=utf-8");
    assert_eq!(h["cache-control"], "no-store");
    assert_eq!(h["x-frame-options"], "DENY");
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(csp.starts_with("default-src 'none'; form-action 'self' https://app.example;"), "{csp}");
    let cookie = h["set-cookie"].to_str().unwrap();
    for attr in ["__Host-ward-login=", "Secure", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attr), "{cookie}");
    }
    let html = page.text().await.unwrap();
    assert!(html.contains("<strong>web</strong>") && html.contains("openid orders:read"));
    let ticket = ticket_in(&html);

    let wrong = b.login(&ticket, "alice", "not the password").await;
    assert_eq!(wrong.status(), 200);
    assert!(wrong.text().await.unwrap().contains("Wrong username or password."));
    let nobody = b.login(&ticket, "mallory", PASSWORD).await;
    assert!(nobody.text().await.unwrap().contains("Wrong username or password."), "same answer for unknown users");

    let done = b.login(&ticket, "alice", PASSWORD).await;
    assert_eq!(done.status(), 303);
    let (to, answer) = location(&done);
    assert_eq!(to, CB);
    assert_eq!((answer["state"].as_str(), answer["iss"].as_str()), ("xyz", r.base.as_str()));
    let code = &answer["code"];
    assert!(code.starts_with("wac_"));
    assert_eq!(b.login(&ticket, "alice", PASSWORD).await.status(), 400, "a login page is used once");

    let (s, body) = redeem(&r, &secret, code, &verifier).await;
    assert_eq!(s, 200, "{body}");
    let jwks: Value =
        r.client.get(format!("{}/.well-known/jwks.json", r.base)).send().await.unwrap().json().await.unwrap();
    let access = verify_with(&jwks, body["access_token"].as_str().unwrap()).unwrap();
    assert_eq!(
        (access["sub"].as_str(), access["aud"].as_str(), access["scope"].as_str(), access["client_id"].as_str()),
        (Some("alice"), Some("orders"), Some("openid orders:read"), Some("web"))
    );
    let id = verify_with(&jwks, body["id_token"].as_str().unwrap()).unwrap();
    assert_eq!(
        (id["sub"].as_str(), id["aud"].as_str(), id["nonce"].as_str(), id["iss"].as_str()),
        (Some("alice"), Some("web"), Some("n-0S6_WzA2Mj"), Some(r.base.as_str()))
    );
    assert!(id["auth_time"].as_u64().unwrap() <= id["iat"].as_u64().unwrap());
    assert_eq!((&access["roles"], &id["roles"]), (&serde_json::json!(["reader"]), &serde_json::json!(["reader"])));
    let first_access = body["access_token"].as_str().unwrap().to_owned();
    let r1 = body["refresh_token"].as_str().unwrap().to_owned();
    assert!(r1.starts_with("wrt_"));

    // Rotation: a new refresh token each time; narrowing is allowed, widening is not.
    let (s, rotated) = refresh(&r, &secret, &r1).await;
    assert_eq!(s, 200, "{rotated}");
    let r2 = rotated["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(r1, r2);
    assert_eq!(verify_with(&jwks, rotated["access_token"].as_str().unwrap()).unwrap()["sub"], "alice");
    let wider = [("grant_type", "refresh_token"), ("refresh_token", r2.as_str()), ("scope", "orders:write")];
    let (s, e, _) = post(&r, "/oauth2/token", Some(("web", &secret)), &wider).await;
    assert_eq!((s, e["error"].as_str()), (400, Some("invalid_scope")), "orders:write was never granted");
    let second_access = rotated["access_token"].as_str().unwrap().to_owned();
    assert!(active(&r, &secret, &second_access).await);

    // Reuse of the retired r1: the whole family goes, with its access tokens.
    let (s, e) = refresh(&r, &secret, &r1).await;
    assert_eq!((s, e["error"].as_str()), (400, Some("invalid_grant")));
    let (s, e) = refresh(&r, &secret, &r2).await;
    assert_eq!((s, e["error"].as_str()), (400, Some("invalid_grant")), "the live token of the family is revoked too");
    assert!(!active(&r, &secret, &first_access).await);
    assert!(!active(&r, &secret, &second_access).await);

    let records = log.records().await;
    let seen: Vec<(&str, &str, Option<&str>, bool)> = records
        .iter()
        .map(|x| {
            (
                x["event"].as_str().unwrap(),
                x["reason"].as_str().unwrap(),
                x["oauth_error"].as_str(),
                x["principal_hmac"].as_str().is_some(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("login", "login_page_shown", None, false),
            ("login", "login_failed", Some("access_denied"), true),
            ("login", "login_failed", Some("access_denied"), true),
            ("login", "login_succeeded", None, true),
            ("login", "authorization_refused", Some("invalid_request"), false),
            ("token", "token_issued", None, true),
            ("token", "token_issued", None, true),
            ("token", "token_request_refused", Some("invalid_scope"), false),
            ("token", "refresh_token_reused", Some("invalid_grant"), false),
            ("token", "token_request_refused", Some("invalid_grant"), false),
        ]
    );
    let alice = records[3]["principal_hmac"].as_str().unwrap();
    assert_eq!(records[1]["principal_hmac"], alice, "failed logins name the principal (as an HMAC) for detection");
    assert_ne!(records[2]["principal_hmac"], alice);
    assert!(!records.iter().any(|x| x.to_string().contains(PASSWORD) || x.to_string().contains(&r1)));
}

#[tokio::test]
async fn codes_are_single_use_bound_to_pkce_client_and_time() {
    let log = AuditLog::open();
    let r = start_with(Some(log.sink())).await;
    let (secret, other_secret) = setup(&r);
    let (verifier, challenge) = pkce();

    // Reuse: refused, and what the first redemption produced is revoked.
    let code = code_for(&r, &challenge).await;
    let (s, first) = redeem(&r, &secret, &code, &verifier).await;
    assert_eq!(s, 200);
    let (s, e) = redeem(&r, &secret, &code, &verifier).await;
    assert_eq!((s, e["error"].as_str()), (400, Some("invalid_grant")));
    assert!(!active(&r, &secret, first["access_token"].as_str().unwrap()).await, "access token revoked");
    let (s, _) = refresh(&r, &secret, first["refresh_token"].as_str().unwrap()).await;
    assert_eq!(s, 400, "refresh family revoked");

    // A wrong verifier burns the code; the right one cannot follow.
    let code = code_for(&r, &challenge).await;
    let (other_verifier, _) = pkce();
    let (s, e) = redeem(&r, &secret, &code, &other_verifier).await;
    assert_eq!((s, e["error"].as_str()), (400, Some("invalid_grant")));
    let (s, _) = redeem(&r, &secret, &code, &verifier).await;
    assert_eq!(s, 400);
    // The challenge sent as the verifier (what `plain` would accept) fails too.
    let code = code_for(&r, &challenge).await;
    assert_eq!(redeem(&r, &secret, &code, &challenge).await.1["error"], "invalid_grant");
    // Missing verifier.
    let code = code_for(&r, &challenge).await;
    let form = [("grant_type", "authorization_code"), ("code", code.as_str()), ("redirect_uri", CB)];
    assert_eq!(post(&r, "/oauth2/token", Some(("web", &secret)), &form).await.1["error"], "invalid_request");
    // Another redirect URI than the authorization request's.
    let code = code_for(&r, &challenge).await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", "http://127.0.0.1:8400/cb"),
        ("code_verifier", verifier.as_str()),
    ];
    assert_eq!(post(&r, "/oauth2/token", Some(("web", &secret)), &form).await.1["error"], "invalid_grant");
    // Another client.
    let code = code_for(&r, &challenge).await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", CB),
        ("code_verifier", verifier.as_str()),
    ];
    assert_eq!(post(&r, "/oauth2/token", Some(("other", &other_secret)), &form).await.1["error"], "invalid_grant");
    // The right client with a wrong secret.
    let code = code_for(&r, &challenge).await;
    let (s, e, h) =
        post(&r, "/oauth2/token", Some(("web", "wrong")), &[("grant_type", "authorization_code"), ("code", &code)])
            .await;
    assert_eq!((s, e["error"].as_str()), (401, Some("invalid_client")));
    assert!(h.contains_key("www-authenticate"));
    // Unknown.
    assert_eq!(redeem(&r, &secret, "wac_forged", &verifier).await.1["error"], "invalid_grant");

    let reasons: Vec<String> = log
        .records()
        .await
        .iter()
        .filter(|x| x["event"] == "token")
        .map(|x| format!("{}:{}", x["reason"].as_str().unwrap(), x["oauth_error"].as_str().unwrap_or("-")))
        .collect();
    assert_eq!(
        reasons,
        [
            "token_issued:-",
            "authorization_code_reused:invalid_grant",
            "token_request_refused:invalid_grant",
            "token_request_refused:invalid_grant",
            "token_request_refused:invalid_grant",
            "token_request_refused:invalid_grant",
            "token_request_refused:invalid_request",
            "token_request_refused:invalid_grant",
            "token_request_refused:invalid_grant",
            "client_authentication_failed:invalid_client",
            "token_request_refused:invalid_grant",
        ]
    );

    // Expired: a control plane whose codes live one second.
    let short_log = AuditLog::open();
    let short = start_custom(Some(short_log.sink()), 1).await;
    let (secret, _) = setup(&short);
    let code = code_for(&short, &challenge).await;
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let (s, e) = redeem(&short, &secret, &code, &verifier).await;
    assert_eq!((s, e["error"].as_str()), (400, Some("invalid_grant")));
    let last = short_log.records().await.pop().unwrap();
    assert_eq!(
        (last["reason"].as_str(), last["oauth_error"].as_str()),
        (Some("token_request_refused"), Some("invalid_grant"))
    );
}

#[tokio::test]
async fn authorization_requests_never_redirect_where_they_should_not() {
    let log = AuditLog::open();
    let r = start_with(Some(log.sink())).await;
    setup(&r);
    let (_, challenge) = pkce();
    let mut b = Browser::new(&r);
    let with = |k: &'static str, v: &'static str| {
        let mut p = auth_params(&challenge, "st");
        p.retain(|(name, _)| *name != k);
        if !v.is_empty() {
            p.push((k, v));
        }
        p
    };

    // Not the registered URI, byte for byte: an error page, never a redirect.
    for evil in [
        "https://app.example/cb/extra",
        "https://app.example/c",
        "https://app.example/CB",
        "https://APP.EXAMPLE/cb",
        "https://app.example/cb?next=https://evil.example",
        "https://app.example/cb#x",
        "https://app.example.evil.example/cb",
        "https://evil.example/cb",
        "//evil.example/cb",
        "http://app.example/cb",
        "",
    ] {
        let resp = b.authorize(&with("redirect_uri", evil)).await;
        assert_eq!(resp.status(), 400, "{evil:?}");
        assert!(resp.headers().get("location").is_none(), "{evil:?}");
        assert!(resp.text().await.unwrap().contains("invalid sign-in request"));
    }
    // Unknown client: no redirect either, whatever the URI.
    let mut p = with("client_id", "nobody");
    p.retain(|(k, _)| *k != "redirect_uri");
    p.push(("redirect_uri", "https://evil.example/cb"));
    let resp = b.authorize(&p).await;
    assert_eq!(resp.status(), 400);
    assert!(resp.headers().get("location").is_none());
    // Repeated parameters.
    let mut twice = auth_params(&challenge, "st");
    twice.push(("redirect_uri", "https://evil.example/cb"));
    assert_eq!(b.authorize(&twice).await.status(), 400);

    // Once the client and URI are known, errors go back to the registered URI with the state.
    for (k, v, code) in [
        ("code_challenge_method", "plain", "invalid_request"),
        ("code_challenge_method", "", "invalid_request"),
        ("code_challenge", "", "invalid_request"),
        ("response_type", "token", "unsupported_response_type"),
        ("scope", "openid admin", "invalid_scope"),
        ("prompt", "none", "login_required"),
    ] {
        let resp = b.authorize(&with(k, v)).await;
        assert_eq!(resp.status(), 303, "{k}={v}");
        let (to, answer) = location(&resp);
        assert_eq!(to, CB);
        assert_eq!((answer["error"].as_str(), answer["state"].as_str()), (code, "st"), "{k}={v}");
        assert_eq!(answer["iss"], r.base);
    }

    let refused = log.records().await.iter().filter(|x| x["reason"] == "authorization_refused").count();
    assert_eq!(refused, 11 + 2 + 6, "every refusal is audited");
}

#[tokio::test]
async fn the_login_form_is_bound_to_its_browser_and_limits_attempts() {
    let r = start().await;
    setup(&r);
    let (_, challenge) = pkce();
    let mut b = Browser::new(&r);
    let ticket = ticket_in(&b.authorize(&auth_params(&challenge, "st")).await.text().await.unwrap());

    // Posted from another browser (no cookie, or its own): refused.
    let mut stranger = Browser::new(&r);
    assert_eq!(stranger.login(&ticket, "alice", PASSWORD).await.status(), 400);
    let _ = stranger.authorize(&auth_params(&challenge, "st")).await;
    assert!(stranger.cookie.is_some() && stranger.cookie != b.cookie);
    assert_eq!(stranger.login(&ticket, "alice", PASSWORD).await.status(), 400);
    assert_eq!(b.login("forged", "alice", PASSWORD).await.status(), 400);

    // Five wrong passwords burn the page.
    for _ in 0..4 {
        assert_eq!(b.login(&ticket, "alice", "wrong password!").await.status(), 200);
    }
    assert_eq!(b.login(&ticket, "alice", "wrong password!").await.status(), 400);
    assert_eq!(b.login(&ticket, "alice", PASSWORD).await.status(), 400, "even with the right password now");

    // Cancel goes back with access_denied.
    let ticket = ticket_in(&b.authorize(&auth_params(&challenge, "st")).await.text().await.unwrap());
    let resp = b
        .http
        .post(format!("{}/oauth2/authorize", r.base))
        .header("cookie", b.cookie.clone().unwrap())
        .form(&[("ticket", ticket.as_str()), ("cancel", "1")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    assert_eq!(location(&resp).1["error"], "access_denied");

    // Echoed input is escaped.
    let ticket = ticket_in(&b.authorize(&auth_params(&challenge, "st")).await.text().await.unwrap());
    let html = b.login(&ticket, "<script>alert(1)</script>", "x").await.text().await.unwrap();
    assert!(!html.contains("<script>"));
}

/// Public clients (native apps, SPAs): registered without a secret, they use
/// the code flow with PKCE and `token_endpoint_auth_method=none`, may revoke
/// but not introspect, and cannot have any other grant. A loopback redirect
/// URI matches on any port (RFC 8252 §7.3) and that port is kept; an OpenID
/// request must name its redirect URI (OIDC Core 3.1.2.1). ID tokens are
/// RS256 (the discovery document says so, and lists the scopes).
#[tokio::test]
async fn public_clients_use_pkce_without_a_secret_and_loopback_ports_are_free() {
    let r = start().await;
    let (web_secret, _) = setup(&r);
    let native = ClientSpec {
        id: "native".into(),
        grants: vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
        scopes: vec!["orders:read".into()],
        audiences: vec!["orders".into()],
        token_ttl: 300,
        jwks: None,
        redirect_uris: vec!["http://127.0.0.1/cb".into()],
        roles: Vec::new(),
    };
    r.cp.create_public_client(&native).unwrap();
    for grants in [vec![GrantType::ClientCredentials], vec![GrantType::AuthorizationCode, GrantType::TokenExchange]] {
        let bad = ClientSpec { id: "bad".into(), grants, ..native.clone() };
        assert!(r.cp.create_public_client(&bad).is_err(), "a public client cannot keep a secret");
    }

    // Any port on the loopback literal; the URI asked for is the one answered.
    let (verifier, challenge) = pkce();
    let redirect = "http://127.0.0.1:43127/cb";
    let params = [
        ("client_id", "native"),
        ("redirect_uri", redirect),
        ("response_type", "code"),
        ("scope", "openid orders:read"),
        ("state", "s"),
        ("nonce", "n"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    let mut b = Browser::new(&r);
    let page = b.authorize(&params).await;
    assert_eq!(page.status(), 200);
    let ticket = ticket_in(&page.text().await.unwrap());
    let done = b.login(&ticket, "alice", PASSWORD).await;
    assert_eq!(done.status(), 303);
    let (to, answer) = location(&done);
    assert_eq!(to, redirect, "the port asked for is kept");
    let code = answer["code"].clone();

    // `none`: the client_id alone, and the PKCE verifier.
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", redirect),
        ("client_id", "native"),
        ("code_verifier", verifier.as_str()),
    ];
    let (s, body, _) = post(&r, "/oauth2/token", None, &form).await;
    assert_eq!(s, 200, "{body}");
    let refresh_token = body["refresh_token"].as_str().unwrap().to_owned();
    let jwks: Value =
        r.client.get(format!("{}/.well-known/jwks.json", r.base)).send().await.unwrap().json().await.unwrap();
    let id_token = body["id_token"].as_str().unwrap();
    let header: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(id_token.split('.').next().unwrap()).unwrap()).unwrap();
    assert_eq!((header["alg"].as_str(), header["typ"].as_str()), (Some("RS256"), Some("JWT")));
    assert_eq!(verify_with(&jwks, id_token).unwrap()["aud"], "native");
    let access = body["access_token"].as_str().unwrap().to_owned();

    // A confidential client is never authenticated by its id alone.
    let (s, body, _) = post(
        &r,
        "/oauth2/token",
        None,
        &[("grant_type", "refresh_token"), ("refresh_token", &refresh_token), ("client_id", "web")],
    )
    .await;
    assert_eq!((s, body["error"].as_str()), (401, Some("invalid_client")));
    // The public client refreshes, cannot introspect, revokes its own tokens.
    let refresh = [("grant_type", "refresh_token"), ("refresh_token", refresh_token.as_str()), ("client_id", "native")];
    let (s, body, _) = post(&r, "/oauth2/token", None, &refresh).await;
    assert_eq!(s, 200, "{body}");
    let rotated = body["refresh_token"].as_str().unwrap().to_owned();
    let (s, body, _) = post(&r, "/oauth2/introspect", None, &[("token", &access), ("client_id", "native")]).await;
    assert_eq!((s, body["error"].as_str()), (401, Some("invalid_client")), "introspection is for resource servers");
    let (s, _, _) = post(&r, "/oauth2/revoke", None, &[("token", &rotated), ("client_id", "native")]).await;
    assert_eq!(s, 200);
    let again = [("grant_type", "refresh_token"), ("refresh_token", rotated.as_str()), ("client_id", "native")];
    assert_eq!(post(&r, "/oauth2/token", None, &again).await.1["error"], "invalid_grant", "revoked");
    let jti = verify_with(&jwks, &access).unwrap()["jti"].as_str().unwrap().to_owned();
    assert!(r.cp.is_revoked(&jti), "the family's access token went with it");
    assert!(!active(&r, &web_secret, &access).await, "and web may not see it anyway");

    // PKCE is not optional for it either (a failed redemption burns the code).
    let mut b = Browser::new(&r);
    let ticket = ticket_in(&b.authorize(&params).await.text().await.unwrap());
    let code = location(&b.login(&ticket, "alice", PASSWORD).await).1["code"].clone();
    let no_verifier = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", redirect),
        ("client_id", "native"),
    ];
    let (s, body, _) = post(&r, "/oauth2/token", None, &no_verifier).await;
    assert_eq!((s, body["error"].as_str()), (400, Some("invalid_request")), "PKCE is not optional");

    // OIDC Core 3.1.2.1: an OpenID request names its redirect URI, even for
    // a client with only one: an error page, no redirect.
    let mut b = Browser::new(&r);
    let without: Vec<(&str, &str)> = params.iter().copied().filter(|(k, _)| *k != "redirect_uri").collect();
    let page = b.authorize(&without).await;
    assert_eq!(page.status(), 400);
    assert!(page.headers().get("location").is_none());
    // Elsewhere than the loopback literal, or another path: refused, no redirect.
    for evil in ["http://127.0.0.1:43127/cb/x", "http://localhost:43127/cb", "http://127.0.0.1:43127@evil.example/cb"] {
        let asked: Vec<(&str, &str)> =
            params.iter().map(|&(k, v)| if k == "redirect_uri" { (k, evil) } else { (k, v) }).collect();
        let page = Browser::new(&r).authorize(&asked).await;
        assert_eq!(page.status(), 400, "{evil}");
    }

    // Discovery (and RFC 8414 metadata, the same document).
    for path in ["/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"] {
        let d: Value = r.client.get(format!("{}{path}", r.base)).send().await.unwrap().json().await.unwrap();
        assert_eq!(d["issuer"], r.base.as_str(), "{path}");
        assert_eq!(d["id_token_signing_alg_values_supported"], serde_json::json!(["RS256"]));
        assert_eq!(d["scopes_supported"], serde_json::json!(["openid", "orders:read", "orders:write"]));
        assert!(d["token_endpoint_auth_methods_supported"].as_array().unwrap().contains(&serde_json::json!("none")));
    }
}
