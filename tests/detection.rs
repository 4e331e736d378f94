//! Attack simulations against a running gateway and token service sharing
//! one detector, as `ward up` runs them: password spraying, a slow brute
//! force from many addresses, a scan, a revoked token replayed, and rate
//! limits under load. Every client is real (reqwest, bound to its own
//! loopback address 127.0.0.x so the detectors see distinct sources), every
//! block is checked on the attacker's very next request, in the audit log,
//! and again once it has expired.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use ward_control::{ClientSpec, ControlPlane, ControlSettings, Store};
use ward_core::{LocalRevocations, RevocationList};
use ward_issuer::clients::GrantType;

const CB: &str = "https://app.example/cb";
const ADMIN_TOKEN: &str = "test-admin-token-0123456789abcdef0123456789";
const PASSWORD: &str = "correct horse battery staple";

/// Blocks in these tests last 3 s, so their end can be watched.
const DETECT: &str = r#"
[detect]
block_duration = "3s"
admin_learning = "0s"
allowlist = ["127.0.0.250", "principal:health-checker"]
"#;

struct World {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    gateway: ward_gateway::RunningGateway,
    gport: u16,
    cbase: String,
    ca_pem: String,
    cp: Arc<ControlPlane>,
    detector: Arc<ward_detect::Detector>,
    signer: ward_authn::TokenSigner,
    revocations: Arc<dyn RevocationList>,
    _stop: tokio::sync::watch::Sender<bool>,
}

/// A gateway (policy: role `reader` on `/api/`) and a control plane with a
/// login page, one detector between them; `extra` goes into `ward.toml`.
async fn world(extra: &str) -> World {
    world_with_limits(extra, "").await
}

/// As [`world`], with lines added to `[gateway.limits]`.
async fn world_with_limits(extra: &str, limits: &str) -> World {
    let (up, _) = common::start_upstream().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_owned();
    let (path, signer, ca_pem) = common::write_config(&dir, &format!("http://{up}"), extra, false);
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
    tokio::spawn(ward_control::serve_guarded(listener, Arc::clone(&tls.config), router, guard, stopped));
    World { _tmp: tmp, dir, gateway, gport, cbase, ca_pem, cp, detector, signer, revocations, _stop: stop }
}

impl World {
    /// A client whose connections come from `ip` (any 127.0.0.0/8 address).
    fn client_from(&self, ip: &str) -> reqwest::Client {
        reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).unwrap()])
            .local_address(ip.parse::<IpAddr>().unwrap())
            .resolve("localhost", "127.0.0.1:0".parse().unwrap())
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap()
    }

    fn gw(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.gport)
    }

    fn token(&self, sub: &str) -> String {
        self.token_with_id(sub, &format!("j-{sub}"))
    }

    fn token_with_id(&self, sub: &str, jti: &str) -> String {
        let now = common::now();
        let claims = json!({
            "iss": common::ISSUER, "aud": common::AUDIENCE, "sub": sub, "exp": now + 300, "iat": now,
            "jti": jti, "roles": ["reader"],
        });
        self.signer.sign(claims.as_object().unwrap()).unwrap()
    }

    /// A login page for `web`: its ticket and binding cookie.
    async fn login_page(&self, http: &reqwest::Client) -> Result<(String, String), reqwest::Error> {
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
    async fn login(
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
    async fn detections(&self) -> Vec<Value> {
        self.gateway.flush_audit().await.unwrap();
        common::read_log(&self.dir.join("audit")).into_iter().filter(|r| r["event"] == "detection").collect()
    }

    async fn records(&self) -> Vec<Value> {
        self.gateway.flush_audit().await.unwrap();
        common::read_log(&self.dir.join("audit"))
    }
}

/// `application/x-www-form-urlencoded` value encoding.
fn enc(v: &str) -> String {
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

fn hmac(value: &str) -> String {
    ward_crypto::KeyedHasher::new(&ward_crypto::SecretBytes::new(vec![7; 32])).unwrap().tag_hex(value.as_bytes())
}

/// The detection records about `target` with `action`.
fn about<'a>(records: &'a [Value], target: &str, action: &str) -> Vec<&'a Value> {
    let tag = hmac(target);
    records.iter().filter(|r| r["detection"]["target_hmac"] == tag && r["detection"]["action"] == action).collect()
}

/// Whether a request from `ip` to `url` is refused: a new connection is
/// closed before its TLS handshake (an error), a kept-alive one gets 403.
async fn refused(http: &reqwest::Client, url: &str) -> bool {
    match http.get(url).send().await {
        Err(_) => true,
        Ok(r) => r.status() == 403,
    }
}

/// Wait (at most `limit`) until `check` holds.
async fn eventually(limit: Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_spraying_blocks_the_address_on_its_next_request_until_it_expires() {
    let w = world(DETECT).await;
    let attacker = w.client_from("127.0.0.2");
    let bystander = w.client_from("127.0.0.3");
    // Five distinct users fail: the bucket (capacity 5) is full, nothing is blocked yet.
    let page = w.login_page(&attacker).await.unwrap();
    for user in ["ann", "bob", "cy", "dee"] {
        assert_eq!(w.login(&attacker, &page, user, "Winter2026!").await.unwrap(), 200);
    }
    let page = w.login_page(&attacker).await.unwrap();
    assert_eq!(w.login(&attacker, &page, "eve", "Winter2026!").await.unwrap(), 200);
    assert!(!w.detector.ip_blocked("127.0.0.2".parse().unwrap()));
    // The sixth distinct user overflows it.
    assert_eq!(w.login(&attacker, &page, "fay", "Winter2026!").await.unwrap(), 200);

    // The very next request is refused, on the token service and on the gateway.
    assert!(refused(&attacker, &format!("{}/.well-known/openid-configuration", w.cbase)).await);
    assert!(refused(&w.client_from("127.0.0.2"), &format!("{}/.well-known/jwks.json", w.cbase)).await);
    assert!(refused(&w.client_from("127.0.0.2"), &w.gw("/api/x")).await, "one detector for both");
    // Nobody else is.
    let ok = bystander.get(format!("{}/.well-known/openid-configuration", w.cbase)).send().await.unwrap();
    assert_eq!(ok.status(), 200);

    // Audited: the alert and the block, about the address (as an HMAC), HIGH.
    let d = w.detections().await;
    let alerts = about(&d, "127.0.0.2", "alert");
    assert_eq!(alerts.len(), 1, "{d:?}");
    assert_eq!(alerts[0]["detection"]["scenario"], "ward/password-spraying");
    assert_eq!(alerts[0]["detection"]["severity"], "high");
    assert_eq!(alerts[0]["reason"], "threat_detected");
    let blocks = about(&d, "127.0.0.2", "block");
    assert_eq!(blocks.len(), 1);
    assert_eq!(
        (blocks[0]["reason"].as_str(), blocks[0]["detection"]["target_kind"].as_str()),
        (Some("block_added"), Some("ip"))
    );
    assert!(!serde_json::to_string(&d).unwrap().contains("127.0.0.2"), "no address in clear");

    // It expires (3 s) and the sweeper records its end.
    assert!(
        eventually(Duration::from_secs(8), async || {
            w.client_from("127.0.0.2").get(w.gw("/api/x")).send().await.is_ok_and(|r| r.status() == 401)
        })
        .await,
        "the block ends"
    );
    assert!(
        eventually(Duration::from_secs(3), async || !about(&w.detections().await, "127.0.0.2", "expire").is_empty())
            .await
    );
    w.gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_brute_force_from_many_addresses_protects_the_principal() {
    let w = world(DETECT).await;
    // Eleven guesses at alice's password, each from its own address: no
    // address does much, the principal's bucket (capacity 10) overflows.
    for i in 0..11 {
        let ip = format!("127.0.1.{}", 10 + i);
        let http = w.client_from(&ip);
        let page = w.login_page(&http).await.unwrap();
        assert_eq!(w.login(&http, &page, "alice", &format!("guess-{i}")).await.unwrap(), 200);
    }
    for i in 0..11 {
        assert!(!w.detector.ip_blocked(format!("127.0.1.{}", 10 + i).parse().unwrap()), "no address is blocked");
    }
    // Alice's own password, from a new address, is refused like a wrong one.
    let http = w.client_from("127.0.1.100");
    let page = w.login_page(&http).await.unwrap();
    assert_eq!(w.login(&http, &page, "alice", PASSWORD).await.unwrap(), 200, "the login form again, not a redirect");
    // Her tokens are refused at the gateway too (403, principal_blocked).
    let r = http.get(w.gw("/api/orders")).bearer_auth(w.token("alice")).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    let records = w.records().await;
    let rec = records.iter().find(|r| r["request_id"] == id).unwrap();
    assert_eq!(rec["reason"], "principal_blocked");
    assert!(records.iter().any(|r| r["event"] == "login" && r["reason"] == "principal_blocked"));
    let d = w.detections().await;
    let blocks = about(&d, "alice", "block");
    assert_eq!(blocks.len(), 1, "{d:?}");
    assert_eq!(blocks[0]["detection"]["scenario"], "ward/brute-force-principal");
    assert_eq!(blocks[0]["detection"]["target_kind"], "principal");
    // Others are served meanwhile.
    let r = http.get(w.gw("/api/orders")).bearer_auth(w.token("bob")).send().await.unwrap();
    assert_eq!(r.status(), 200);

    // Once the block has expired, alice signs in.
    assert!(
        eventually(Duration::from_secs(8), async || {
            let http = w.client_from("127.0.1.101");
            let page = w.login_page(&http).await.unwrap();
            w.login(&http, &page, "alice", PASSWORD).await.unwrap() == 303
        })
        .await
    );
    w.gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_of_200_paths_is_blocked_on_its_next_request() {
    let w = world(DETECT).await;
    let scanner = w.client_from("127.0.0.30");
    let mut answered = Vec::new();
    for i in 0..200 {
        match scanner.get(w.gw(&format!("/probe/{i}.php"))).send().await {
            Ok(r) => answered.push(r.status().as_u16()),
            Err(_) => answered.push(0),
        }
    }
    // 31 distinct refused paths overflow the bucket (capacity 30); the 32nd
    // request already meets the block, and so does everything after it.
    assert!(answered[..31].iter().all(|s| *s == 403), "{answered:?}");
    assert!(answered[31..].iter().all(|s| *s == 403 || *s == 0), "{answered:?}");
    let records = w.records().await;
    let reasons: Vec<&str> =
        records.iter().filter(|r| r["event"] == "request").filter_map(|r| r["reason"].as_str()).collect();
    assert_eq!(reasons.iter().filter(|r| **r == "no_route").count(), 31, "the scan reached the router 31 times");
    assert!(reasons.contains(&"address_blocked"), "the kept-alive connection was refused per request");
    let d = w.detections().await;
    let blocks = about(&d, "127.0.0.30", "block");
    assert_eq!(blocks.len(), 1);
    assert_eq!(
        (blocks[0]["detection"]["scenario"].as_str(), blocks[0]["detection"]["severity"].as_str()),
        (Some("ward/scan"), Some("medium"))
    );
    assert!(refused(&w.client_from("127.0.0.30"), &w.gw("/api/x")).await);
    // After it expires the scanner is answered again (and would be caught again).
    assert!(
        eventually(Duration::from_secs(8), async || {
            w.client_from("127.0.0.30").get(w.gw("/probe/again")).send().await.is_ok_and(|r| r.status() == 403)
                && !w.detector.ip_blocked("127.0.0.30".parse().unwrap())
        })
        .await
    );
    w.gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_revoked_token_raises_an_alert() {
    let w = world(DETECT).await;
    let http = w.client_from("127.0.0.40");
    let token = w.token_with_id("carol", "carol-1");
    assert_eq!(http.get(w.gw("/api/orders")).bearer_auth(&token).send().await.unwrap().status(), 200);
    w.revocations.revoke(common::ISSUER, "carol-1", u64::try_from(common::now()).unwrap() + 300);
    let r = http.get(w.gw("/api/orders")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let d = w.detections().await;
    let alerts = about(&d, "127.0.0.40", "alert");
    assert_eq!(alerts.len(), 1, "{d:?}");
    assert_eq!(alerts[0]["detection"]["scenario"], "ward/token-replay");
    assert_eq!(alerts[0]["detection"]["severity"], "high");
    assert!(about(&d, "127.0.0.40", "block").is_empty(), "one replay alerts; it does not block");
    w.gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowlisted_clients_are_never_blocked() {
    let w = world(DETECT).await;
    let friend = w.client_from("127.0.0.250");
    for i in 0..60 {
        let r = friend.get(w.gw(&format!("/probe/{i}"))).send().await.unwrap();
        assert_eq!(r.status(), 403, "request {i}");
    }
    assert!(!w.detector.ip_blocked("127.0.0.250".parse().unwrap()));
    let d = w.detections().await;
    assert_eq!(about(&d, "127.0.0.250", "alert").len(), 1, "noticed");
    assert!(about(&d, "127.0.0.250", "block").is_empty(), "never blocked");
    w.gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_hold_within_one_percent_under_load_and_spare_the_allowlist() {
    let limits = "\n[[rate_limits]]\nname = \"per-ip\"\nkey = \"ip\"\nrate = 200\nper = \"1s\"\nburst = 20\n\n\
                  [[rate_limits]]\nname = \"route-budget\"\nkey = \"route\"\nrate = 1\nper = \"1s\"\nshadow = true\n";
    let w = Arc::new(world(&format!("{DETECT}{limits}")).await);
    let token = Arc::new(w.token("loadgen"));
    let run = Duration::from_secs(3);
    let start = Instant::now();
    let mut tasks = Vec::new();
    // Eight connections from one address, as fast as they can: far above 200/s.
    for _ in 0..8 {
        let (w, token) = (Arc::clone(&w), Arc::clone(&token));
        tasks.push(tokio::spawn(async move {
            let http = w.client_from("127.0.0.50");
            let (mut ok, mut limited, mut headers) = (0u64, 0u64, None);
            // (first sent, first answered, last sent, last answered)
            let mut span: Option<(Instant, Instant, Instant, Instant)> = None;
            while start.elapsed() < run {
                let sent = Instant::now();
                let r = http.get(w.gw("/api/x")).bearer_auth(token.as_str()).send().await.unwrap();
                let answered = Instant::now();
                span = Some(span.map_or((sent, answered, sent, answered), |(a, b, _, _)| (a, b, sent, answered)));
                match r.status().as_u16() {
                    200 => ok += 1,
                    429 => {
                        limited += 1;
                        headers.get_or_insert_with(|| r.headers().clone());
                    }
                    other => panic!("unexpected {other}"),
                }
            }
            (ok, limited, span.unwrap(), headers)
        }));
    }
    // Meanwhile an allowlisted client is never limited.
    let friend = w.client_from("127.0.0.250");
    let mut friend_ok = 0;
    while start.elapsed() < run {
        let r = friend.get(w.gw("/api/x")).bearer_auth(token.as_str()).send().await.unwrap();
        assert_eq!(r.status(), 200, "allowlisted clients are never limited");
        friend_ok += 1;
    }
    let (mut ok, mut limited, mut headers) = (0, 0, None);
    let mut spans = Vec::new();
    for t in tasks {
        let (o, l, span, h) = t.await.unwrap();
        ok += o;
        limited += l;
        spans.push(span);
        headers = headers.or(h);
    }
    // The gateway saw the run begin between the first send and the first
    // answer, and end between the last send and the last answer: GCRA's
    // count (burst + rate × span) lies between the two bounds.
    let first_sent = spans.iter().map(|s| s.0).min().unwrap();
    let first_answered = spans.iter().map(|s| s.1).min().unwrap();
    let last_sent = spans.iter().map(|s| s.2).max().unwrap();
    let last_answered = spans.iter().map(|s| s.3).max().unwrap();
    let low = 20.0 + 200.0 * last_sent.saturating_duration_since(first_answered).as_secs_f64();
    let high = 20.0 + 200.0 * last_answered.duration_since(first_sent).as_secs_f64();
    #[allow(clippy::cast_precision_loss)]
    let got = ok as f64;
    assert!(limited > ok, "the load was far above the limit: {ok} allowed, {limited} limited");
    assert!(
        got >= (low * 0.99).floor() && got <= (high * 1.01).ceil(),
        "allowed {got}; GCRA allows {low:.1}..{high:.1}"
    );
    // Latency on a loaded machine widens the bounds; they must still mean something.
    assert!(high - low < high * 0.2, "the bounds are tight enough to mean something: {low:.1}..{high:.1}");
    assert!(friend_ok > 50, "the allowlisted client was served throughout ({friend_ok})");
    let h = headers.unwrap();
    assert!(h["retry-after"].to_str().unwrap().parse::<u64>().unwrap() >= 1);
    assert_eq!(h["ratelimit-policy"], "\"per-ip\";q=200;w=1");
    assert!(h["ratelimit"].to_str().unwrap().starts_with("\"per-ip\";r=0;t="), "{h:?}");
    // Allowed answers say how much is left.
    let idle = w.client_from("127.0.0.51");
    let r = idle.get(w.gw("/api/x")).bearer_auth(token.as_str()).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["ratelimit-policy"], "\"per-ip\";q=200;w=1");
    assert_eq!(r.headers()["ratelimit"], "\"per-ip\";r=19;t=1", "a fresh client has its burst less one");
    // The shadow limit refused nothing but counted what it would have.
    let status = w.detector.status();
    let shadow = status["rate_limits"].as_array().unwrap().iter().find(|l| l["name"] == "route-budget").unwrap();
    assert!(shadow["limited"].as_u64().unwrap() > 100, "{shadow}");
    // Refusals are audited with the limit that made them.
    let records = w.records().await;
    let refusal = records.iter().find(|r| r["reason"] == "rate_limited").unwrap();
    assert_eq!((refusal["status"].as_u64(), refusal["policy"].as_str()), (Some(429), Some("rate_limit:per-ip")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_active_blocks_and_drops_expired_ones() {
    let w = world(DETECT).await;
    let target = |t: &str| ward_detect::Target::parse(t).unwrap();
    let long = w.detector.block(target("127.0.0.60"), Duration::from_secs(3600), "test").unwrap();
    w.detector.block(target("127.0.0.61"), Duration::from_millis(500), "test").unwrap();
    w.detector.block(target("principal:mallory"), Duration::from_secs(3600), "test").unwrap();
    let (dir, ca_pem) = (w.dir.clone(), w.ca_pem.clone());
    let World { gateway, _tmp: tmp, cp, detector, _stop: stop, .. } = w;
    gateway.shutdown().await;
    drop((cp, detector, stop));
    tokio::time::sleep(Duration::from_millis(600)).await;

    // The same configuration again: a new gateway, a new detector, the same state file.
    let config = ward_config::load(&dir.join("ward.toml")).unwrap();
    let gateway = ward_gateway::Gateway::bind(&config).await.unwrap();
    let port = gateway.local_addr().unwrap().port();
    let detector = Arc::clone(gateway.detector().unwrap());
    let running = gateway.spawn().unwrap();
    let ids: Vec<u64> = detector.decisions().iter().map(|d| d.id).collect();
    assert_eq!(ids.len(), 2, "the expired block is gone");
    assert!(ids.contains(&long.id) && detector.principal_blocked("mallory"));
    let from = |ip: &str| {
        reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap()])
            .local_address(ip.parse::<IpAddr>().unwrap())
            .resolve("localhost", "127.0.0.1:0".parse().unwrap())
            .build()
            .unwrap()
    };
    let url = format!("https://localhost:{port}/api/x");
    assert!(from("127.0.0.60").get(&url).send().await.is_err(), "still blocked after the restart");
    assert_eq!(from("127.0.0.61").get(&url).send().await.unwrap().status(), 401, "served: its block expired");
    running.shutdown().await;
    let records = common::read_log(&dir.join("audit"));
    assert_eq!(records.iter().filter(|r| r["reason"] == "block_expired").count(), 1, "its end is recorded");
    drop(tmp);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privilege_escalation_signals_are_critical_alerts() {
    let w = world(&DETECT.replace("[detect]\n", "[detect]\nadmin_routes = [\"api\"]\n")).await;
    let http = w.client_from("127.0.0.80");
    // An operator grants the admin role.
    let r = http
        .post(format!("{}/admin/users", w.cbase))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "application/json")
        .body(json!({"username": "eve", "password": PASSWORD, "roles": ["admin"]}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    // A reader role is no escalation.
    let r = http
        .post(format!("{}/admin/users", w.cbase))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "application/json")
        .body(json!({"username": "rita", "password": PASSWORD, "roles": ["reader"]}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    // A service exchanges a token of an admin client for one acting on its behalf.
    let client = |id: &str, grant, audience: &str, roles: &[&str]| ClientSpec {
        id: id.into(),
        grants: vec![grant],
        scopes: vec!["orders:read".into()],
        audiences: vec![audience.into()],
        token_ttl: 600,
        jwks: None,
        redirect_uris: Vec::new(),
        roles: roles.iter().map(|r| (*r).to_owned()).collect(),
    };
    let root = w.cp.create_client(&client("root-job", GrantType::ClientCredentials, "relay", &["admin"])).unwrap();
    let relay = w.cp.create_client(&client("relay", GrantType::TokenExchange, "db", &[])).unwrap();
    let form =
        |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| format!("{k}={}", enc(v))).collect::<Vec<_>>().join("&");
    let token = |id: &str, secret: &str, body: String| {
        http.post(format!("{}/oauth2/token", w.cbase))
            .basic_auth(id, Some(secret))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    let r = token("root-job", root.unwrap().expose(), form(&[("grant_type", "client_credentials")])).await.unwrap();
    assert_eq!(r.status(), 200);
    let subject = r.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned();
    let at = "urn:ietf:params:oauth:token-type:access_token";
    let exchange = form(&[
        ("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange"),
        ("subject_token", &subject),
        ("subject_token_type", at),
        ("scope", "orders:read"),
        ("audience", "db"),
    ]);
    let r = token("relay", relay.unwrap().expose(), exchange).await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    // A principal never seen on an admin route uses one (learning is over at once here).
    assert_eq!(http.get(w.gw("/api/x")).bearer_auth(w.token("newcomer")).send().await.unwrap().status(), 200);
    assert_eq!(http.get(w.gw("/api/y")).bearer_auth(w.token("newcomer")).send().await.unwrap().status(), 200);
    let d = w.detections().await;
    let critical: Vec<(&str, &str)> = d
        .iter()
        .filter(|r| r["detection"]["severity"] == "critical")
        .map(|r| (r["detection"]["scenario"].as_str().unwrap(), r["detection"]["target_hmac"].as_str().unwrap()))
        .collect();
    let (eve, newcomer) = (hmac("eve"), hmac("newcomer"));
    assert!(critical.contains(&("ward/privileged-role-grant", eve.as_str())), "{critical:?}");
    let relay = hmac("relay");
    assert!(critical.contains(&("ward/exchange-acts-for-admin", relay.as_str())), "{critical:?}");
    assert!(!critical.iter().any(|(_, t)| *t == hmac("rita")), "a reader grant is not critical");
    assert_eq!(
        critical.iter().filter(|(s, t)| *s == "ward/new-admin" && *t == newcomer).count(),
        1,
        "once: {critical:?}"
    );
    // The admin API itself is an admin route: its first caller address is new too.
    assert!(critical.iter().any(|(s, t)| *s == "ward/new-admin" && *t == hmac("127.0.0.80")), "{critical:?}");
    w.gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_per_address_are_capped_before_tls() {
    let w = world_with_limits(DETECT, "max_connections_per_ip = 2").await;
    let connect = |ip: &str| {
        let (ip, port) = (ip.parse::<std::net::Ipv4Addr>().unwrap(), w.gport);
        async move {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind((ip, 0).into()).unwrap();
            socket.connect(([127, 0, 0, 1], port).into()).await.unwrap()
        }
    };
    // Whether the server closed the connection at once (a read sees EOF)
    // rather than waiting for the TLS handshake.
    let closed = |mut s: tokio::net::TcpStream| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = [0u8; 1];
        matches!(tokio::time::timeout(Duration::from_millis(500), s.read(&mut buf)).await, Ok(Ok(0) | Err(_)))
    };
    let a = connect("127.0.0.90").await;
    let b = connect("127.0.0.90").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(closed(connect("127.0.0.90").await).await, "the third connection from one address is closed");
    assert!(!closed(connect("127.0.0.91").await).await, "another address is not");
    drop(a);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!closed(connect("127.0.0.90").await).await, "a slot freed by a closed connection is free again");
    drop(b);
    // The allowlist has no cap.
    let held: Vec<_> = futures_join(vec![connect("127.0.0.250"), connect("127.0.0.250"), connect("127.0.0.250")]).await;
    assert!(!closed(connect("127.0.0.250").await).await);
    drop(held);
    w.gateway.shutdown().await;
}

async fn futures_join<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut out = Vec::with_capacity(futures.len());
    for f in futures {
        out.push(f.await);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_reach_a_webhook_retried_until_accepted_and_nothing_else_does() {
    use http_body_util::BodyExt;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};
    // The alert endpoint: HTTPS, refuses the first two deliveries.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hook = format!(
        "{DETECT}\n[[audit.export]]\nname = \"alerts\"\nkind = \"webhook\"\nurl = \"https://localhost:{port}/alerts\"\n\
         ca_file = \"ca.pem\"\nevents = [\"detection\"]\n"
    );
    let w = world(&hook).await;
    let config = ward_config::load(&w.dir.join("ward.toml")).unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(
        ward_gateway::ServerTls::with_denylist(&config.gateway.tls, None).unwrap().config,
    );
    let received: Arc<Mutex<Vec<Value>>> = Arc::default();
    let calls = Arc::new(AtomicUsize::new(0));
    let (rx, n) = (Arc::clone(&received), Arc::clone(&calls));
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let (acceptor, rx, n) = (acceptor.clone(), Arc::clone(&rx), Arc::clone(&n));
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let service = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let (rx, n) = (Arc::clone(&rx), Arc::clone(&n));
                    async move {
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let status = if n.fetch_add(1, Ordering::AcqRel) < 2 {
                            503
                        } else {
                            rx.lock().unwrap().extend(serde_json::from_slice::<Vec<Value>>(&body).unwrap());
                            200
                        };
                        let mut r = http::Response::new(http_body_util::Full::new(bytes::Bytes::new()));
                        *r.status_mut() = http::StatusCode::from_u16(status).unwrap();
                        Ok::<_, std::convert::Infallible>(r)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    // Plenty of ordinary traffic, then a scan that gets blocked.
    let http = w.client_from("127.0.0.95");
    for _ in 0..20 {
        assert_eq!(http.get(w.gw("/api/x")).bearer_auth(w.token("dana")).send().await.unwrap().status(), 200);
    }
    for i in 0..40 {
        let _ = http.get(w.gw(&format!("/nope/{i}"))).send().await;
    }
    assert!(
        eventually(Duration::from_secs(20), async || received.lock().unwrap().len() >= 2).await,
        "the alert and the block were delivered"
    );
    assert!(calls.load(Ordering::Acquire) >= 3, "the first deliveries were refused and retried");
    let got = received.lock().unwrap().clone();
    assert!(got.iter().all(|e| e["class_uid"] == 2004), "only detections: {got:?}");
    let titles: Vec<&str> = got.iter().filter_map(|e| e["finding_info"]["title"].as_str()).collect();
    assert!(titles.iter().all(|t| *t == "ward/scan"), "{titles:?}");
    assert!(got.iter().any(|e| e["severity"] == "Medium"), "{got:?}");
    w.gateway.shutdown().await;
}
