//! A gateway and a token service sharing one detector, as `ward up` runs
//! them, for the detection and rate-limit tests; clients bound to their
//! own 127.0.0.x addresses.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use ward_control::{ClientSpec, ControlPlane, ControlSettings, Store};
use ward_core::{LocalRevocations, RevocationList};
use ward_issuer::clients::GrantType;

pub const CB: &str = "https://app.example/cb";
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789abcdef0123456789";
pub const PASSWORD: &str = "correct horse battery staple";

/// Blocks in these tests last 3 s, so their end can be watched.
pub const DETECT: &str = r#"
[detect]
block_duration = "3s"
admin_learning = "0s"
allowlist = ["127.0.0.250", "principal:health-checker"]
"#;

pub struct World {
    pub _tmp: tempfile::TempDir,
    pub dir: PathBuf,
    pub gateway: ward_gateway::RunningGateway,
    pub gport: u16,
    pub cbase: String,
    pub ca_pem: String,
    pub cp: Arc<ControlPlane>,
    pub detector: Arc<ward_detect::Detector>,
    pub signer: ward_authn::TokenSigner,
    pub revocations: Arc<dyn RevocationList>,
    pub _stop: tokio::sync::watch::Sender<bool>,
}

/// A gateway (policy: role `reader` on `/api/`) and a control plane with a
/// login page, one detector between them; `extra` goes into `ward.toml`.
pub async fn world(extra: &str) -> World {
    world_with_limits(extra, "").await
}

/// As [`world`], with lines added to `[gateway.limits]`.
pub async fn world_with_limits(extra: &str, limits: &str) -> World {
    let (up, _) = super::start_upstream().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_owned();
    let (path, signer, ca_pem) = super::write_config(&dir, &format!("http://{up}"), extra, false);
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("[gateway.limits]\n", &format!("[gateway.limits]\n{limits}\n"))).unwrap();
    std::fs::write(dir.join("ca.pem"), &ca_pem).unwrap();
    let config = ward_config::load(&path).unwrap();
    let revocations: Arc<dyn RevocationList> = Arc::new(LocalRevocations::new());
    let gateway = ward_gateway::Gateway::bind_with(&config, Some(Arc::clone(&revocations))).await.unwrap();
    let gport = gateway.local_addr().unwrap().port();
    let detector = Arc::clone(gateway.detector().expect("[detect] gives the gateway a detector"));
    let sink = Arc::clone(gateway.audit_log()) as Arc<dyn ward_audit::AuditSink>;
    let gateway = gateway.spawn().unwrap();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let cport = listener.local_addr().unwrap().port();
    let cbase = format!("https://localhost:{cport}");
    let hasher = ward_crypto::KeyedHasher::new(&ward_crypto::SecretBytes::new(vec![7; 32])).unwrap();
    let cp = ControlPlane::open(Store::open(&dir.join("control.redb")).unwrap(), ControlSettings::new(&cbase))
        .unwrap()
        .with_audit(sink, hasher)
        .with_revocations(Arc::clone(&revocations))
        .with_detector(Arc::clone(&detector))
        .with_admin_token(ADMIN_TOKEN);
    let web = ClientSpec {
        id: "web".into(),
        grants: vec![GrantType::AuthorizationCode],
        scopes: vec!["openid".into()],
        audiences: vec!["orders".into()],
        token_ttl: 600,
        jwks: None,
        redirect_uris: vec![CB.into()],
        roles: Vec::new(),
    };
    cp.create_client(&web).unwrap();
    cp.create_user("alice", PASSWORD, &["reader".to_owned()]).unwrap();
    let cp = Arc::new(cp);
    let tls = ward_gateway::ServerTls::with_denylist(&config.gateway.tls, None).unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let router = ward_control::router(Arc::clone(&cp));
    let guard = Some(Arc::clone(&detector));
    tokio::spawn(ward_control::serve_guarded(
        listener,
        Arc::clone(&tls.config),
        tls.recheck.clone(),
        router,
        guard,
        stopped,
    ));
    World { _tmp: tmp, dir, gateway, gport, cbase, ca_pem, cp, detector, signer, revocations, _stop: stop }
}

impl World {
    /// A client whose connections come from `ip` (any 127.0.0.0/8 address).
    pub fn client_from(&self, ip: &str) -> reqwest::Client {
        reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).unwrap()])
            .local_address(ip.parse::<IpAddr>().unwrap())
            .resolve("localhost", "127.0.0.1:0".parse().unwrap())
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap()
    }

    pub fn gw(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.gport)
    }

    pub fn token(&self, sub: &str) -> String {
        self.token_with_id(sub, &format!("j-{sub}"))
    }

    pub fn token_with_id(&self, sub: &str, jti: &str) -> String {
        let now = super::now();
        let claims = json!({
            "iss": super::ISSUER, "aud": super::AUDIENCE, "sub": sub, "exp": now + 300, "iat": now,
            "jti": jti, "roles": ["reader"],
        });
        self.signer.sign(claims.as_object().unwrap()).unwrap()
    }

    /// A login page for `web`: its ticket and binding cookie.
    pub async fn login_page(&self, http: &reqwest::Client) -> Result<(String, String), reqwest::Error> {
        let url = format!(
            "{}/oauth2/authorize?client_id=web&redirect_uri={}&response_type=code&scope=openid&state=s1&nonce=n1&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256",
            self.cbase,
            CB.replace(':', "%3A").replace('/', "%2F")
        );
        let resp = http.get(url).send().await?;
        let cookie = resp.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
        let html = resp.text().await?;
        let at = html.find("name=\"ticket\" value=\"").unwrap() + "name=\"ticket\" value=\"".len();
        Ok((html[at..].split('"').next().unwrap().to_owned(), cookie))
    }

    /// Submit the login form; the HTTP status (303 is a successful login).
    pub async fn login(
        &self,
        http: &reqwest::Client,
        (ticket, cookie): &(String, String),
        user: &str,
        password: &str,
    ) -> Result<u16, reqwest::Error> {
        let body = format!("ticket={}&username={}&password={}", enc(ticket), enc(user), enc(password));
        let resp = http
            .post(format!("{}/oauth2/authorize", self.cbase))
            .header("cookie", cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await?;
        Ok(resp.status().as_u16())
    }

    /// Every detection record so far.
    pub async fn detections(&self) -> Vec<Value> {
        self.gateway.flush_audit().await.unwrap();
        super::read_log(&self.dir.join("audit")).into_iter().filter(|r| r["event"] == "detection").collect()
    }

    pub async fn records(&self) -> Vec<Value> {
        self.gateway.flush_audit().await.unwrap();
        super::read_log(&self.dir.join("audit"))
    }
}

/// `application/x-www-form-urlencoded` value encoding.
pub fn enc(v: &str) -> String {
    v.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

pub fn hmac(value: &str) -> String {
    ward_crypto::KeyedHasher::new(&ward_crypto::SecretBytes::new(vec![7; 32])).unwrap().tag_hex(value.as_bytes())
}

/// The detection records about `target` with `action`.
pub fn about<'a>(records: &'a [Value], target: &str, action: &str) -> Vec<&'a Value> {
    let tag = hmac(target);
    records.iter().filter(|r| r["detection"]["target_hmac"] == tag && r["detection"]["action"] == action).collect()
}

/// Whether a request from `ip` to `url` is refused: a new connection is
/// closed before its TLS handshake (an error), a kept-alive one gets 403.
pub async fn refused(http: &reqwest::Client, url: &str) -> bool {
    match http.get(url).send().await {
        Err(_) => true,
        Ok(r) => r.status() == 403,
    }
}

/// Wait (at most `limit`) until `check` holds.
pub async fn eventually(limit: Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}
