//! The gateway as an OpenID Connect relying party, against Ward's own
//! control plane found through discovery, driven by a "browser" (reqwest,
//! redirects followed by hand, a cookie jar): a browser route sends the user
//! to log in and back, the session cookie is sealed, `HttpOnly`, `Secure`,
//! `SameSite=Lax`, policies see the session's principal, API routes keep
//! answering 401, idle and absolute lifetimes end sessions, logout ends one
//! for good, and forged or replayed callbacks are refused and audited.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use ward_control::{ClientSpec, ControlPlane, ControlSettings, Store};
use ward_issuer::clients::GrantType;

const PASSWORD: &str = "correct horse battery";

struct Env {
    _dir: tempfile::TempDir,
    dir: std::path::PathBuf,
    gateway: String,
    issuer: String,
    http: reqwest::Client,
    running: ward_gateway::RunningGateway,
    cp: Arc<ControlPlane>,
    _stop: tokio::sync::watch::Sender<bool>,
}

async fn setup() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pki = ward_pki::generate_local_pki("OIDC test CA", &["localhost"]).unwrap();
    common::write_gateway_files(d, &pki);

    // Ward's control plane as the OpenID provider.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("https://localhost:{}", listener.local_addr().unwrap().port());
    // The provider and the gateway share one revocation list, as in `ward up`.
    let revocations: Arc<dyn ward_core::RevocationList> = Arc::new(ward_core::LocalRevocations::new());
    let cp = ControlPlane::open(Store::open(&d.join("control.redb")).unwrap(), ControlSettings::new(&issuer))
        .unwrap()
        .with_revocations(Arc::clone(&revocations));
    cp.create_user("alice", PASSWORD, &["reader".to_owned()]).unwrap();
    // The gateway binds its port itself: the redirect URI registered at the
    // provider needs it first.
    let gport = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let gateway = format!("https://localhost:{gport}");
    let secret = cp
        .create_client(&ClientSpec {
            id: "gateway".into(),
            grants: vec![GrantType::AuthorizationCode],
            scopes: vec![],
            audiences: vec![],
            token_ttl: 300,
            jwks: None,
            redirect_uris: vec![format!("{gateway}/_ward/callback")],
            roles: Vec::new(),
        })
        .unwrap()
        .unwrap();
    common::write_private(&d.join("oidc-client.secret"), secret.expose().as_bytes());
    common::write_private(&d.join("session.key"), &ward_crypto::random_bytes::<32>().unwrap());
    let tls = common::server_tls(&pki);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let cp = Arc::new(cp);
    tokio::spawn(ward_control::serve(listener, tls, ward_control::router(Arc::clone(&cp)), stopped));

    let (up, _) = common::start_upstream().await;
    std::fs::create_dir_all(d.join("policies")).unwrap();
    std::fs::write(
        d.join("policies/app.yaml"),
        format!(
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: app}}\nspec:\n  \
             selector: {{matchLabels: {{ward.dev/route: app}}}}\n  rules:\n  \
             - from: [{{source: {{requestPrincipals: [\"{issuer}/alice\"]}}}}]\n"
        ),
    )
    .unwrap();
    let head = common::gateway_toml(&format!("127.0.0.1:{gport}"));
    std::fs::write(
        d.join("ward.toml"),
        format!(
            r#"
{head}[oidc]
issuer = "{issuer}"
client_id = "gateway"
client_secret_file = "oidc-client.secret"
redirect_uri = "{gateway}/_ward/callback"
ca_file = "ca.crt"
session_key_file = "session.key"
session_idle = "2s"
session_absolute = "5s"
[[providers]]
name = "ward"
issuer = "{issuer}"
audiences = ["orders"]
jwks_url = "{issuer}/.well-known/jwks.json"
jwks_ca_file = "ca.crt"
[[upstreams]]
name = "app"
url = "http://{up}"
[[routes]]
name = "app"
prefix = "/app/"
upstream = "app"
login = true
[[routes]]
name = "api"
prefix = "/api/"
upstream = "app"
"#
        ),
    )
    .unwrap();
    let config = ward_config::load(&d.join("ward.toml")).unwrap();
    let running = ward_gateway::Gateway::bind_with(&config, Some(revocations)).await.unwrap().spawn().unwrap();
    let ca = reqwest::Certificate::from_pem(pki.ca.cert_pem.as_bytes()).unwrap();
    let http =
        reqwest::Client::builder().tls_certs_only([ca]).redirect(reqwest::redirect::Policy::none()).build().unwrap();
    Env { dir: d.to_owned(), _dir: dir, gateway, issuer, http, running, cp, _stop: stop }
}

/// A browser: one cookie jar (cookies ignore ports, as browsers do), redirects by hand.
struct Browser<'a> {
    env: &'a Env,
    jar: HashMap<String, String>,
}

impl<'a> Browser<'a> {
    fn new(env: &'a Env) -> Self {
        Self { env, jar: HashMap::new() }
    }

    fn cookie_header(&self) -> String {
        self.jar.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }

    fn take_cookies(&mut self, resp: &reqwest::Response) -> Vec<String> {
        let mut raw = Vec::new();
        for c in resp.headers().get_all("set-cookie") {
            let c = c.to_str().unwrap().to_owned();
            let (pair, _) = c.split_once(';').unwrap_or((&c, ""));
            let (k, v) = pair.split_once('=').unwrap();
            if c.contains("Max-Age=0") {
                self.jar.remove(k);
            } else {
                self.jar.insert(k.to_owned(), v.to_owned());
            }
            raw.push(c);
        }
        raw
    }

    async fn get(&mut self, url: &str) -> reqwest::Response {
        let resp = self.env.http.get(url).header("cookie", self.cookie_header()).send().await.unwrap();
        self.take_cookies(&resp);
        resp
    }

    /// Log alice in from a 302 to the provider; returns the callback URL.
    async fn log_in(&mut self, to_provider: reqwest::Response) -> String {
        assert_eq!(to_provider.status(), 302);
        let page = self.get(&location(&to_provider)).await;
        assert_eq!(page.status(), 200);
        let html = page.text().await.unwrap();
        let at = html.find("name=\"ticket\" value=\"").unwrap() + "name=\"ticket\" value=\"".len();
        let ticket = html[at..].split('"').next().unwrap().to_owned();
        let resp = self
            .env
            .http
            .post(format!("{}/oauth2/authorize", self.env.issuer))
            .header("cookie", self.cookie_header())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("ticket={ticket}&username=alice&password={}", PASSWORD.replace(' ', "+")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 303);
        location(&resp)
    }
}

fn location(resp: &reqwest::Response) -> String {
    resp.headers().get("location").expect("a redirect").to_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browsers_log_in_through_the_provider_and_keep_a_sealed_session() {
    let env = setup().await;
    let mut b = Browser::new(&env);

    // A browser route without a session goes to the provider, with PKCE, state and nonce.
    let first = b.get(&format!("{}/app/orders?page=2", env.gateway)).await;
    assert_eq!(first.status(), 302);
    let to = reqwest::Url::parse(&location(&first)).unwrap();
    assert_eq!(
        format!("{}://{}{}", to.scheme(), to.authority(), to.path()),
        format!("{}/oauth2/authorize", env.issuer)
    );
    let q: HashMap<String, String> = to.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    assert_eq!(q["client_id"], "gateway");
    assert_eq!(q["redirect_uri"], format!("{}/_ward/callback", env.gateway));
    assert_eq!((q["code_challenge_method"].as_str(), q["response_type"].as_str()), ("S256", "code"));
    assert!(q["state"].len() >= 43 && q["nonce"].len() >= 43 && q["scope"].contains("openid"));
    let state_cookie = first.headers()["set-cookie"].to_str().unwrap().to_owned();
    for attr in ["__Host-ward-oidc-", "Secure", "HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(state_cookie.contains(attr), "{state_cookie}");
    }

    let callback = b.log_in(first).await;
    assert!(callback.starts_with(&format!("{}/_ward/callback?code=", env.gateway)), "{callback}");
    let saved_jar = b.jar.clone();
    let back = b.get(&callback).await;
    assert_eq!(back.status(), 303);
    assert_eq!(location(&back), "/app/orders?page=2", "back where the user was going");
    let session = back
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|c| c.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("__Host-ward-session="))
        .unwrap();
    for attr in ["Secure", "HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=5"] {
        assert!(session.contains(attr), "{session}");
    }
    assert!(!session.contains("alice"), "sealed: the cookie does not show who it is");

    // The session authenticates the browser; policies see its principal; the
    // gateway's cookies never reach the application.
    let page = b.get(&format!("{}/app/orders?page=2", env.gateway)).await;
    assert_eq!(page.status(), 200);
    let echoed: Value = page.json().await.unwrap();
    assert_eq!(echoed["headers"]["x-ward-principal"], "alice");
    assert!(!echoed["headers"]["cookie"].as_str().unwrap_or("").contains("__Host-ward"), "{echoed}");

    // API routes answer 401 and never redirect; so do non-GET requests on browser routes.
    let api = b.get(&format!("{}/api/x", env.gateway)).await;
    assert_eq!(api.status(), 401);
    assert!(api.headers().get("location").is_none());
    let post = env.http.post(format!("{}/app/orders", env.gateway)).send().await.unwrap();
    assert_eq!(post.status(), 401);

    // Replaying the callback (same code, the old state cookie) is refused.
    let mut replay = Browser::new(&env);
    replay.jar = saved_jar.clone();
    assert_eq!(replay.get(&callback).await.status(), 401);
    // A callback whose state matches no login of this browser is refused.
    let mut stranger = Browser::new(&env);
    assert_eq!(stranger.get(&callback).await.status(), 401);
    // A forged session cookie is no session.
    let mut forger = Browser::new(&env);
    let sealed = b.jar["__Host-ward-session"].clone();
    let mut bytes = sealed.into_bytes();
    bytes[30] = if bytes[30] == b'A' { b'B' } else { b'A' };
    forger.jar.insert("__Host-ward-session".into(), String::from_utf8(bytes).unwrap());
    assert_eq!(forger.get(&format!("{}/app/orders", env.gateway)).await.status(), 302);

    // Idle: two seconds without a request end the session.
    tokio::time::sleep(Duration::from_millis(2300)).await;
    assert_eq!(b.get(&format!("{}/app/orders", env.gateway)).await.status(), 302, "idle lifetime");

    // Absolute: however active, five seconds after login the session ends.
    let mut busy = Browser::new(&env);
    let to_provider = busy.get(&format!("{}/app/", env.gateway)).await;
    let callback = busy.log_in(to_provider).await;
    assert_eq!(busy.get(&callback).await.status(), 303);
    let started = std::time::Instant::now();
    let mut last = 200;
    while started.elapsed() < Duration::from_millis(5600) {
        last = busy.get(&format!("{}/app/", env.gateway)).await.status().as_u16();
        if last != 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    assert_eq!(last, 302, "absolute lifetime reached after {:?} of activity", started.elapsed());
    assert!(started.elapsed() >= Duration::from_secs(3), "the sliding idle clock kept it alive until then");

    // Logout ends the session for good, even for a copy of the cookie.
    let mut user = Browser::new(&env);
    let to_provider = user.get(&format!("{}/app/", env.gateway)).await;
    let callback = user.log_in(to_provider).await;
    user.get(&callback).await;
    let copy = user.jar.clone();
    let out = user.get(&format!("{}/_ward/logout", env.gateway)).await;
    assert_eq!((out.status().as_u16(), location(&out).as_str()), (303, "/"));
    assert!(!user.jar.contains_key("__Host-ward-session"), "cookie cleared");
    let mut thief = Browser::new(&env);
    thief.jar = copy;
    assert_eq!(thief.get(&format!("{}/app/", env.gateway)).await.status(), 302, "a copied cookie is dead too");

    env.running.shutdown().await;
    let reasons: Vec<String> = common::read_log(&env.dir.join("audit"))
        .iter()
        .filter_map(|r| r["reason"].as_str().map(str::to_owned))
        .collect();
    for expected in ["login_required", "login_succeeded", "login_failed", "session_ended", "allowed_by_policy"] {
        assert!(reasons.iter().any(|r| r == expected), "{expected} audited: {reasons:?}");
    }
}

/// A browser session is as old as its login: ending the user's tokens (a
/// password change) ends it too, on its next request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ending_a_user_s_tokens_ends_their_browser_sessions() {
    let env = setup().await;
    let mut b = Browser::new(&env);
    let first = b.get(&format!("{}/app/orders", env.gateway)).await;
    let callback = b.log_in(first).await;
    assert_eq!(b.get(&callback).await.status(), 303);
    assert_eq!(b.get(&format!("{}/app/orders", env.gateway)).await.status(), 200);
    env.cp.set_password("alice", "a brand new password").unwrap();
    let after = b.get(&format!("{}/app/orders", env.gateway)).await;
    assert_eq!(after.status(), 401, "the session ended with the password");
    let dir = env.dir.clone();
    env.running.shutdown().await;
    let records = common::read_log(&dir.join("audit"));
    let last = records.iter().rfind(|r| r["event"] == "request").unwrap();
    assert_eq!(last["reason"], "token_revoked");
}
