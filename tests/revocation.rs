//! A token issued by Ward's control plane is accepted by a running gateway
//! that trusts the control plane's JWK set, and refused (401, audited as
//! `token_revoked`) within one second of being revoked through the API.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use ward_control::{ClientSpec, ControlPlane, ControlSettings, Store};
use ward_core::{LocalRevocations, RevocationList};

const POLICY: &str = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: api}
spec:
  selector: {matchLabels: {ward.dev/route: api}}
  rules:
  - from: [{source: {requestPrincipals: ["*"]}}]
"#;

const ADMIN: &str = "revocation-admin-token-0123456789abcdef012345";
const CB: &str = "https://app.example/cb";
const PASSWORD: &str = "correct horse battery staple";

struct Env {
    _dir: tempfile::TempDir,
    dir: std::path::PathBuf,
    issuer: String,
    secret: String,
    gport: u16,
    client: reqwest::Client,
    cp: Arc<ControlPlane>,
    running: ward_gateway::RunningGateway,
    _stop: tokio::sync::watch::Sender<bool>,
}

/// A control plane and a gateway that trusts its JWK set (refreshed every
/// second), sharing one revocation list; a client `svc` with a secret.
async fn setup(publish_lead: u64) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pki = ward_pki::generate_local_pki("Revocation test CA", &["localhost"]).unwrap();
    common::write_gateway_files(d, &pki);

    // The control plane, on its own TLS listener.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let cport = listener.local_addr().unwrap().port();
    let issuer = format!("https://localhost:{cport}");
    let revocations: Arc<dyn RevocationList> = Arc::new(LocalRevocations::new());
    let settings = ControlSettings { publish_lead, ..ControlSettings::new(&issuer) };
    let cp = ControlPlane::open(Store::open(&d.join("control.redb")).unwrap(), settings)
        .unwrap()
        .with_admin_token(ADMIN)
        .with_revocations(Arc::clone(&revocations));
    let secret = cp
        .create_client(&ClientSpec {
            id: "svc".into(),
            grants: vec![ward_issuer::clients::GrantType::ClientCredentials],
            scopes: vec!["orders:read".into()],
            audiences: vec!["orders".into()],
            token_ttl: 600,
            redirect_uris: Vec::new(),
            roles: Vec::new(),
            jwks: None,
        })
        .unwrap()
        .unwrap()
        .expose()
        .to_owned();
    let tls = common::server_tls(&pki);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let cp = Arc::new(cp);
    tokio::spawn(ward_control::serve(listener, tls, ward_control::router(Arc::clone(&cp)), stopped));

    // The gateway trusts the control plane's JWK set.
    let (up, _) = common::start_upstream().await;
    std::fs::create_dir_all(d.join("policies")).unwrap();
    std::fs::write(d.join("policies/api.yaml"), POLICY).unwrap();
    let head = common::gateway_toml("127.0.0.1:0");
    let config = format!(
        r#"
{head}[[providers]]
name = "ward-control"
issuer = "{issuer}"
audiences = ["orders"]
jwks_url = "{issuer}/.well-known/jwks.json"
jwks_ca_file = "ca.crt"
jwks_refresh_interval = "1s"
require_at_jwt = true
[[upstreams]]
name = "app"
url = "http://{up}"
[[routes]]
name = "api"
prefix = "/api/"
upstream = "app"
"#
    );
    std::fs::write(d.join("ward.toml"), config).unwrap();
    let config = ward_config::load(&d.join("ward.toml")).unwrap();
    let gateway = ward_gateway::Gateway::bind_with(&config, Some(revocations)).await.unwrap();
    let gport = gateway.local_addr().unwrap().port();
    let running = gateway.spawn().unwrap();
    let client = common::client(&pki.ca.cert_pem);

    Env { dir: d.to_owned(), _dir: dir, issuer, secret, gport, client, cp, running, _stop: stop }
}

async fn token(env: &Env) -> String {
    let v: Value = env
        .client
        .post(format!("{}/oauth2/token", env.issuer))
        .basic_auth("svc", Some(&env.secret))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["access_token"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_token_is_refused_by_the_gateway_within_a_second() {
    let env = setup(600).await;
    let (issuer, secret, gport, client) = (&env.issuer, &env.secret, env.gport, &env.client);
    let token = token(&env).await;
    let get = || client.get(format!("https://localhost:{gport}/api/items")).bearer_auth(&token).send();
    assert_eq!(get().await.unwrap().status(), 200, "the gateway accepts the control plane's token");

    let revoked_at = Instant::now();
    let r = client
        .post(format!("{issuer}/oauth2/revoke"))
        .basic_auth("svc", Some(secret))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut status = 0;
    while revoked_at.elapsed() < Duration::from_secs(2) {
        status = get().await.unwrap().status().as_u16();
        if status == 401 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let took = revoked_at.elapsed();
    assert_eq!(status, 401, "the revoked token is refused");
    assert!(took < Duration::from_secs(1), "enforced within 1 s (took {took:?})");
    eprintln!("revocation enforced {took:?} after the API call");

    let dir = env.dir.clone();
    env.running.shutdown().await;
    let records = common::read_log(&dir.join("audit"));
    let last = records.iter().rfind(|r| r["event"] == "request").unwrap();
    assert_eq!((last["reason"].as_str(), last["status"].as_u64()), (Some("token_revoked"), Some(401)));
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_rotate_under_load_without_a_failed_request() {
    // New keys are published 4 s before they sign; the gateway refreshes the
    // JWK set every second, so it always knows a key before seeing a token
    // signed with it — even when the suite's other tests (argon2 hashing)
    // keep both cores busy and a refresh comes late (a 2 s lead was seen to
    // be too tight then).
    let env = setup(4).await;
    let env = Arc::new(env);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (env, stop) = (Arc::clone(&env), Arc::clone(&stop));
        workers.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (0u32, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Acquire) {
                let token = token(&env).await;
                let r = env
                    .client
                    .get(format!("https://localhost:{}/api/items", env.gport))
                    .bearer_auth(&token)
                    .send()
                    .await
                    .unwrap();
                if r.status() == 200 { ok += 1 } else { failed.push(r.status().as_u16()) }
            }
            (ok, failed)
        }));
    }
    let mut kids = std::collections::BTreeSet::new();
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        kids.insert(env.cp.rotate_keys(ward_control::now()).unwrap());
    }
    // Let the last key start signing and be used.
    tokio::time::sleep(Duration::from_millis(5000)).await;
    stop.store(true, std::sync::atomic::Ordering::Release);
    let (mut ok, mut failed) = (0, Vec::new());
    for w in workers {
        let (o, f) = w.await.unwrap();
        ok += o;
        failed.extend(f);
    }
    assert_eq!(kids.len(), 3);
    assert!(
        failed.is_empty(),
        "{} of {} requests failed during rotation: {failed:?}",
        failed.len(),
        ok as usize + failed.len()
    );
    assert!(ok > 100, "the load ran ({ok} requests)");
    // Tokens signed by the newest key were among them.
    let last = token(&env).await;
    let header: Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, last.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert!(kids.contains(header["kid"].as_str().unwrap()), "the last rotated key signs now");
}

/// `application/x-www-form-urlencoded`.
fn form(pairs: &[(&str, &str)]) -> String {
    let url = reqwest::Url::parse_with_params("http://form.invalid/", pairs).unwrap();
    url.query().unwrap_or_default().to_owned()
}

/// A browser-like client (no redirects followed) trusting the test CA.
fn browser(env: &Env) -> reqwest::Client {
    let ca = std::fs::read(env.dir.join("ca.crt")).unwrap();
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&ca).unwrap()])
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Alice logs in through the login page for `web` (PKCE) and the code is
/// redeemed: the token response (access, refresh and ID tokens).
async fn login(env: &Env, web_secret: &str) -> Value {
    let (code, verifier) = code_for(env).await;
    let (status, v) = redeem(env, web_secret, &code, &verifier).await;
    assert_eq!(status, 200, "the code was redeemed: {}", v["error"]);
    v
}

/// Redeem an authorization code for `web`: the status and the answer.
async fn redeem(env: &Env, web_secret: &str, code: &str, verifier: &str) -> (u16, Value) {
    let form =
        [("grant_type", "authorization_code"), ("code", code), ("redirect_uri", CB), ("code_verifier", verifier)];
    post_as(env, ("web", web_secret), "/oauth2/token", &form).await
}

/// Alice logs in through the login page for `web` (PKCE): the code and its verifier.
async fn code_for(env: &Env) -> (String, String) {
    use base64::Engine;
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let verifier = b64(&ward_crypto::random_bytes::<32>().unwrap());
    let challenge = b64(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes()).as_ref());
    let http = browser(env);
    let authorize = reqwest::Url::parse_with_params(
        &format!("{}/oauth2/authorize", env.issuer),
        [
            ("client_id", "web"),
            ("redirect_uri", CB),
            ("response_type", "code"),
            ("scope", "openid orders:read"),
            ("state", "s1"),
            ("nonce", "n1"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ],
    )
    .unwrap();
    let page = http.get(authorize).send().await.unwrap();
    let cookie = page.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let html = page.text().await.unwrap();
    let at = html.find("name=\"ticket\" value=\"").unwrap() + "name=\"ticket\" value=\"".len();
    let ticket = html[at..].split('"').next().unwrap().to_owned();
    let done = http
        .post(format!("{}/oauth2/authorize", env.issuer))
        .header("cookie", cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("ticket", ticket.as_str()), ("username", "alice"), ("password", PASSWORD)]))
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), 303);
    let location = reqwest::Url::parse(done.headers()["location"].to_str().unwrap()).unwrap();
    let code = location.query_pairs().find(|(k, _)| k == "code").unwrap().1.into_owned();
    (code, verifier)
}

/// A client-authenticated form POST to the control plane: status and JSON.
async fn post_as(env: &Env, who: (&str, &str), path: &str, form: &[(&str, &str)]) -> (u16, Value) {
    let r = env.client.post(format!("{}{path}", env.issuer)).basic_auth(who.0, Some(who.1));
    let r = r.header("content-type", "application/x-www-form-urlencoded").body(self::form(form));
    let r = r.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or_default())
}

/// RFC 7009 §2 for refresh tokens, and ending a principal's tokens: revoking
/// a refresh token ends its family and the access tokens issued from it (at
/// the gateway too); only the client it was issued to can, and another
/// client learns nothing; introspection reports a live refresh token to its
/// own client only; a password change ends the user's families and tokens;
/// an operator ends every token of a client. Tokens issued from the next
/// second on are good.
#[tokio::test(flavor = "multi_thread")]
async fn refresh_tokens_password_changes_and_principals_end_what_they_issued() {
    let env = setup(600).await;
    let spec = |id: &str, grants| ClientSpec {
        id: id.into(),
        grants,
        scopes: vec!["openid".into(), "orders:read".into()],
        audiences: vec!["orders".into()],
        token_ttl: 600,
        redirect_uris: vec![CB.into()],
        roles: Vec::new(),
        jwks: None,
    };
    use ward_issuer::clients::GrantType::{AuthorizationCode, ClientCredentials, RefreshToken};
    let web = env.cp.create_client(&spec("web", vec![AuthorizationCode, RefreshToken])).unwrap().unwrap();
    let web = web.expose().to_owned();
    let other = env.cp.create_client(&spec("other", vec![ClientCredentials])).unwrap().unwrap();
    let other = other.expose().to_owned();
    env.cp.create_user("alice", PASSWORD, &["reader".to_owned()]).unwrap();
    let gport = env.gport;
    let at_gateway = async |token: &str| {
        let r = env.client.get(format!("https://localhost:{gport}/api/items")).bearer_auth(token).send().await;
        r.unwrap().status().as_u16()
    };
    let refresh = async |token: &str| {
        post_as(&env, ("web", &web), "/oauth2/token", &[("grant_type", "refresh_token"), ("refresh_token", token)])
            .await
    };
    let introspect =
        async |who: (&str, &str), token: &str| post_as(&env, who, "/oauth2/introspect", &[("token", token)]).await.1;

    let first = login(&env, &web).await;
    let (access, rt) = (first["access_token"].as_str().unwrap(), first["refresh_token"].as_str().unwrap());
    assert_eq!(at_gateway(access).await, 200);
    let seen = introspect(("web", &web), rt).await;
    assert_eq!((seen["active"].as_bool(), seen["token_use"].as_str()), (Some(true), Some("refresh_token")), "{seen}");
    assert_eq!(seen["client_id"], "web");
    assert_eq!(introspect(("other", &other), rt).await, serde_json::json!({"active": false}), "not its token");
    assert_eq!(introspect(("other", &other), access).await, serde_json::json!({"active": false}), "not its token");
    assert_eq!(introspect(("web", &web), access).await["token_use"], "access_token");

    // Another client's attempt: answered like any token, changes nothing.
    assert_eq!(
        post_as(&env, ("other", &other), "/oauth2/revoke", &[("token", rt)]).await,
        (200, serde_json::json!({}))
    );
    assert_eq!(post_as(&env, ("other", &other), "/oauth2/revoke", &[("token", access)]).await.0, 200);
    assert_eq!(at_gateway(access).await, 200, "still good");
    let (status, rotated) = refresh(rt).await;
    assert_eq!(status, 200, "still refreshes: {rotated}");
    let (access2, rt2) = (rotated["access_token"].as_str().unwrap(), rotated["refresh_token"].as_str().unwrap());

    // Its own client revokes the (rotated) refresh token: the family ends.
    let hinted = [("token", rt2), ("token_type_hint", "refresh_token")];
    assert_eq!(post_as(&env, ("web", &web), "/oauth2/revoke", &hinted).await, (200, serde_json::json!({})));
    assert_eq!(refresh(rt2).await.1["error"], "invalid_grant");
    assert_eq!(introspect(("web", &web), rt2).await, serde_json::json!({"active": false}));
    for t in [access, access2] {
        assert_eq!(at_gateway(t).await, 401, "every access token of the family is refused");
        assert_eq!(introspect(("web", &web), t).await["active"], false);
    }

    // A password change ends alice's families and tokens — and a code from a
    // login before it, held and redeemed afterwards; a new login works from
    // the next second on.
    let second = login(&env, &web).await;
    let (access3, rt3) = (second["access_token"].as_str().unwrap(), second["refresh_token"].as_str().unwrap());
    assert_eq!(at_gateway(access3).await, 200);
    let (held, held_verifier) = code_for(&env).await;
    env.cp.set_password("alice", "a new horse battery staple").unwrap();
    assert_eq!(at_gateway(access3).await, 401, "cut off by the password change");
    assert_eq!(refresh(rt3).await.1["error"], "invalid_grant");
    let (status, answer) = redeem(&env, &web, &held, &held_verifier).await;
    assert_eq!((status, answer["error"].as_str()), (400, Some("invalid_grant")), "a held code dies with its login");
    env.cp.set_password("alice", PASSWORD).unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let third = login(&env, &web).await;
    assert_eq!(at_gateway(third["access_token"].as_str().unwrap()).await, 200, "a login after the change is good");
    assert_eq!(refresh(third["refresh_token"].as_str().unwrap()).await.0, 200);

    // An operator ends every token of a client (here `svc`'s client_credentials tokens).
    let svc_token = token(&env).await;
    assert_eq!(at_gateway(&svc_token).await, 200);
    let ended = env
        .client
        .post(format!("{}/admin/tokens/revoke", env.issuer))
        .bearer_auth(ADMIN)
        .json(&serde_json::json!({"client": "svc"}))
        .send()
        .await
        .unwrap();
    assert_eq!(ended.status(), 200);
    assert_eq!(at_gateway(&svc_token).await, 401, "every token issued to svc so far is refused");
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(at_gateway(&token(&env).await).await, 200, "a token issued afterwards is good");

    let dir = env.dir.clone();
    env.running.shutdown().await;
    let records = common::read_log(&dir.join("audit"));
    let refused = records.iter().filter(|r| r["event"] == "request" && r["reason"] == "token_revoked").count();
    assert!(refused >= 4, "the refusals are audited as token_revoked ({refused})");
}

/// Access tokens and ID tokens are told apart (RFC 9068 `typ: at+jwt`): an
/// ID token is refused at the gateway (`token_bad_type`), by introspection,
/// and as the subject of a token exchange — even by the client it was issued
/// to. A subject token is exchangeable only by the client it was issued to
/// or meant for, and never moves to a new audience by default.
#[tokio::test(flavor = "multi_thread")]
async fn id_tokens_are_never_access_tokens_and_exchanges_stay_with_their_token() {
    use ward_issuer::clients::GrantType::{AuthorizationCode, TokenExchange};
    let env = setup(600).await;
    let spec = |id: &str, grants, audiences: &[&str]| ClientSpec {
        id: id.into(),
        grants,
        scopes: vec!["openid".into(), "orders:read".into()],
        audiences: audiences.iter().map(|a| (*a).to_owned()).collect(),
        token_ttl: 600,
        redirect_uris: vec![CB.into()],
        roles: Vec::new(),
        jwks: None,
    };
    let web = env.cp.create_client(&spec("web", vec![AuthorizationCode, TokenExchange], &["orders"])).unwrap();
    let web = web.unwrap().expose().to_owned();
    let backend = env.cp.create_client(&spec("backend", vec![TokenExchange], &["orders", "db"])).unwrap();
    let backend = backend.unwrap().expose().to_owned();
    env.cp.create_user("alice", PASSWORD, &["reader".to_owned()]).unwrap();
    let tokens = login(&env, &web).await;
    let (access, id_token) = (tokens["access_token"].as_str().unwrap(), tokens["id_token"].as_str().unwrap());
    let typ = |jwt: &str| {
        use base64::Engine;
        let h = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(jwt.split('.').next().unwrap()).unwrap();
        serde_json::from_slice::<Value>(&h).unwrap()["typ"].as_str().unwrap().to_owned()
    };
    assert_eq!((typ(access).as_str(), typ(id_token).as_str()), ("at+jwt", "JWT"));
    let gport = env.gport;
    let at_gateway = async |token: &str| {
        let r = env.client.get(format!("https://localhost:{gport}/api/items")).bearer_auth(token).send().await;
        r.unwrap().status().as_u16()
    };
    assert_eq!(at_gateway(access).await, 200);
    assert_eq!(at_gateway(id_token).await, 401, "an ID token is not an access token");
    assert_eq!(post_as(&env, ("web", &web), "/oauth2/introspect", &[("token", id_token)]).await.1["active"], false);

    const EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
    const AT: &str = "urn:ietf:params:oauth:token-type:access_token";
    let exchange = async |who: (&str, &str), subject: &str, audience: Option<&str>| {
        let mut form = vec![("grant_type", EXCHANGE), ("subject_token", subject), ("subject_token_type", AT)];
        if let Some(a) = audience {
            form.push(("audience", a));
        }
        post_as(&env, who, "/oauth2/token", &form).await
    };
    // The ID token, declared as an access token: refused even to its own client (its `aud`).
    assert_eq!(exchange(("web", &web), id_token, None).await.1["error"], "invalid_grant");
    // Another client holding web's access token (meant for `orders`) cannot exchange it.
    assert_eq!(exchange(("backend", &backend), access, None).await.1["error"], "invalid_grant");
    assert_eq!(exchange(("backend", &backend), access, Some("db")).await.1["error"], "invalid_grant");
    // Its own client can; by default the audience stays, and it cannot move it elsewhere.
    let (status, kept) = exchange(("web", &web), access, None).await;
    assert_eq!(status, 200, "{kept}");
    let kept_token = kept["access_token"].as_str().unwrap();
    let seen = post_as(&env, ("web", &web), "/oauth2/introspect", &[("token", kept_token)]).await.1;
    assert_eq!((seen["aud"].as_str(), seen["token_use"].as_str()), (Some("orders"), Some("access_token")), "{seen}");
    assert_eq!(exchange(("web", &web), access, Some("db")).await.1["error"], "invalid_target");
    assert_eq!(at_gateway(kept_token).await, 200);

    let dir = env.dir.clone();
    env.running.shutdown().await;
    let records = common::read_log(&dir.join("audit"));
    assert!(records.iter().any(|r| r["event"] == "request" && r["reason"] == "token_bad_type"), "audited");
}
