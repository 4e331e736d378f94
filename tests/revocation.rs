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
    // New keys are published 2 s before they sign; the gateway refreshes the
    // JWK set every second, so it always knows a key before seeing a token
    // signed with it.
    let env = setup(2).await;
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
    tokio::time::sleep(Duration::from_millis(3000)).await;
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
