//! Attack simulations against a running gateway and token service sharing
//! one detector, as `ward up` runs them: password spraying, a slow brute
//! force from many addresses, a scan, a revoked token replayed, privilege
//! escalation, connection caps, a restart, alerts to a webhook (rate
//! limits under load are in `rate_limits.rs`). Every client is real (reqwest, bound to its own
//! loopback address 127.0.0.x so the detectors see distinct sources), every
//! block is checked on the attacker's very next request, in the audit log,
//! and again once it has expired.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use ward_control::ClientSpec;
use ward_issuer::clients::GrantType;

use common::world::*;

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
async fn a_slow_brute_force_from_many_addresses_is_an_alert_and_never_locks_the_owner_out() {
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
    // An alert names alice in this token service's namespace; nothing is blocked.
    let d = w.detections().await;
    let alerts = about(&d, &format!("{}#alice", w.cbase), "alert");
    assert_eq!(alerts.len(), 1, "{d:?}");
    assert_eq!(alerts[0]["detection"]["scenario"], "ward/brute-force-principal");
    assert!(d.iter().all(|r| r["detection"]["action"] != "block"), "{d:?}");
    // Alice signs in with her own password, and her tokens are served.
    let http = w.client_from("127.0.1.100");
    let page = w.login_page(&http).await.unwrap();
    assert_eq!(w.login(&http, &page, "alice", PASSWORD).await.unwrap(), 303);
    let r = http.get(w.gw("/api/orders")).bearer_auth(w.token("alice")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    w.gateway.shutdown().await;
}

/// The lockout attack of issue 16: failed client authentications and
/// logins under someone else's name — from an address of the attacker's —
/// used to block that name everywhere, the victim's valid tokens of any
/// issuer included. Now the name is not counted unless it exists, blocks
/// name their issuer, and the attacker's address is what gets blocked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_under_a_victim_s_name_block_the_attacker_not_the_victim() {
    let w = world(DETECT).await;
    let attacker = w.client_from("127.0.2.66");
    let victim = w.client_from("127.0.2.10");
    // Alice's token (another issuer than the token service's) is served.
    let token = w.token("alice");
    let get = |http: &reqwest::Client| http.get(w.gw("/api/orders")).bearer_auth(token.clone()).send();
    assert_eq!(get(&victim).await.unwrap().status(), 200);
    // Eleven `-u alice:wrong` at the token endpoint (no client `alice` exists).
    let mut statuses = Vec::new();
    for _ in 0..11 {
        let r = attacker
            .post(format!("{}/oauth2/token", w.cbase))
            .basic_auth("alice", Some("wrong"))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await;
        statuses.push(r.map_or(0, |r| r.status().as_u16()));
    }
    assert!(statuses[..10].iter().all(|s| *s == 401), "{statuses:?}");
    // The attacker's address is blocked (ward/brute-force-ip) on its next request.
    assert!(w.detector.ip_blocked("127.0.2.66".parse().unwrap()));
    assert!(refused(&attacker, &format!("{}/.well-known/openid-configuration", w.cbase)).await);
    // The victim's token keeps working, and so does her sign-in.
    assert_eq!(get(&victim).await.unwrap().status(), 200);
    let page = w.login_page(&victim).await.unwrap();
    assert_eq!(w.login(&victim, &page, "alice", PASSWORD).await.unwrap(), 303);
    // From many addresses (none does enough to be blocked), names that
    // exist nowhere are not counted at all.
    for i in 0..12 {
        let http = w.client_from(&format!("127.0.3.{}", 10 + i));
        let page = w.login_page(&http).await.unwrap();
        assert_eq!(w.login(&http, &page, "mallory-target", "guess").await.unwrap(), 200);
    }
    let d = w.detections().await;
    for name in ["alice", "mallory-target"] {
        for target in [name.to_owned(), format!("{}#{name}", w.cbase)] {
            let tag = hmac(&target);
            assert!(d.iter().all(|r| r["detection"]["target_hmac"] != tag), "{target}: {d:?}");
        }
    }
    assert!(!w.detector.principal_blocked("alice"));
    assert_eq!(get(&victim).await.unwrap().status(), 200);
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
    // Principals are named in their issuer's namespace.
    let ours = |name: &str| hmac(&format!("{}#{name}", w.cbase));
    let (eve, newcomer) = (ours("eve"), hmac("https://issuer.test#newcomer"));
    assert!(critical.contains(&("ward/privileged-role-grant", eve.as_str())), "{critical:?}");
    let relay = ours("relay");
    assert!(critical.contains(&("ward/exchange-acts-for-admin", relay.as_str())), "{critical:?}");
    assert!(!critical.iter().any(|(_, t)| *t == ours("rita")), "a reader grant is not critical");
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

/// An operator whose own address is blocked still reaches the admin API
/// with the admin token — to see the block and lift it — while the same
/// address without the token (or with a wrong one) gets nothing but 403.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_operator_still_reaches_the_admin_api_and_unblocks_itself() {
    let w = world(DETECT).await;
    let operator = w.client_from("127.0.0.4");
    let admin = |req: reqwest::RequestBuilder| req.bearer_auth(ADMIN_TOKEN);
    let block = admin(operator.post(format!("{}/admin/decisions", w.cbase)))
        .json(&json!({"target": "127.0.0.4", "duration": "1h", "reason": "framed"}))
        .send()
        .await
        .unwrap();
    assert_eq!(block.status(), 201);
    let id = block.json::<Value>().await.unwrap()["id"].as_u64().unwrap();
    assert!(w.detector.ip_blocked("127.0.0.4".parse().unwrap()));

    // Without the admin token, or with a wrong one, the address is refused.
    let discovery = format!("{}/.well-known/openid-configuration", w.cbase);
    assert!(refused(&w.client_from("127.0.0.4"), &discovery).await);
    let wrong = w.client_from("127.0.0.4").get(format!("{}/admin/detect/status", w.cbase)).bearer_auth("not-it");
    assert_eq!(wrong.send().await.unwrap().status(), 403);
    assert!(refused(&w.client_from("127.0.0.4"), &w.gw("/api/x")).await, "the gateway refuses it at accept");

    // With it, on a new connection: status, the list, and the removal.
    let status = admin(w.client_from("127.0.0.4").get(format!("{}/admin/detect/status", w.cbase)));
    assert_eq!(status.send().await.unwrap().status(), 200);
    let list = admin(w.client_from("127.0.0.4").get(format!("{}/admin/decisions", w.cbase))).send().await.unwrap();
    assert_eq!(list.status(), 200);
    let listed: Value = list.json().await.unwrap();
    assert!(listed.as_array().unwrap().iter().any(|d| d["id"] == id && d["target"] == "127.0.0.4"), "{listed}");
    let lifted = admin(w.client_from("127.0.0.4").delete(format!("{}/admin/decisions/{id}", w.cbase)));
    assert_eq!(lifted.send().await.unwrap().status(), 200);
    assert!(!w.detector.ip_blocked("127.0.0.4".parse().unwrap()));
    let ok = w.client_from("127.0.0.4").get(&discovery).send().await.unwrap();
    assert_eq!(ok.status(), 200, "unblocked");

    // The admin calls from the blocked address are audited as admin requests.
    let records = w.records().await;
    let admin_calls = records.iter().filter(|r| r["event"] == "admin" || r["reason"] == "admin_request").count();
    assert!(admin_calls >= 3, "{admin_calls} admin records");
    w.gateway.shutdown().await;
}
