//! mTLS with SPIFFE X.509-SVIDs into the gateway, with real clients (curl,
//! openssl s_client): in STRICT mode an SVID of the trust domain is
//! accepted and policies route on its SPIFFE ID (`principals`), and the
//! handshake fails without a certificate, with an expired one, one from
//! another trust domain or CA, a CA certificate as the leaf, one without a
//! URI SAN or with two. PERMISSIVE serves mTLS, TLS and plaintext on one
//! port and tells them apart for policies. `./test` installs curl and openssl.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::process::Command;

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SanType};
use ward_core::SpiffeId;
use ward_pki::ca;

const TD: &str = "prod.example.org";
const CART: &str = "spiffe://prod.example.org/ns/shop/sa/cart";

const POLICIES: &str = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: api}
spec:
  selector: {matchLabels: {ward.dev/route: api}}
  rules:
  - from: [{source: {principals: ["prod.example.org/ns/shop/sa/cart"]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: open}
spec:
  selector: {matchLabels: {ward.dev/route: open}}
  rules:
  - {}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: strict}
spec:
  selector: {matchLabels: {ward.dev/route: strict}}
  rules:
  - {}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: nomtls}
spec:
  selector: {matchLabels: {ward.dev/route: nomtls}}
  rules:
  - {}
"#;

/// Client credentials in `dir`: the trust domain's CA, SVIDs, and the odd certificates.
fn write_client_files(d: &Path) {
    let new = ca::init(TD).unwrap();
    std::fs::write(d.join("bundle.pem"), &new.root.cert_pem).unwrap();
    let issuer = ca::SvidIssuer::load(&new.intermediate.cert_pem, &new.intermediate.key_pem, TD).unwrap();
    let write = |name: &str, chain: &str, key: &str| {
        std::fs::write(d.join(format!("{name}.crt")), chain).unwrap();
        common::write_private(&d.join(format!("{name}.key")), key.as_bytes());
    };
    for (name, id) in [("cart", CART), ("other", "spiffe://prod.example.org/ns/shop/sa/other")] {
        let (svid, key) = issuer.issue(&SpiffeId::parse(id).unwrap(), ca::DEFAULT_SVID_TTL).unwrap();
        write(name, &svid.chain_pem, &key);
    }
    // Another CA for the same trust domain name, and another trust domain.
    for (name, td) in [("stranger", TD), ("foreign", "evil.example.org")] {
        let other = ca::init(td).unwrap();
        let i = ca::SvidIssuer::load(&other.intermediate.cert_pem, &other.intermediate.key_pem, td).unwrap();
        let (svid, key) = i
            .issue(&SpiffeId::parse(&format!("spiffe://{td}/ns/shop/sa/cart")).unwrap(), ca::DEFAULT_SVID_TTL)
            .unwrap();
        write(name, &svid.chain_pem, &key);
    }
    // The intermediate itself as a client certificate.
    write("ca-leaf", &new.intermediate.cert_pem, &new.intermediate.key_pem);
    // Signed by the right intermediate, but not SVIDs.
    let intermediate =
        Issuer::from_ca_cert_pem(&new.intermediate.cert_pem, KeyPair::from_pem(&new.intermediate.key_pem).unwrap())
            .unwrap();
    let odd = |sans: &[&str], expired: bool, is_ca: bool| {
        let mut p = CertificateParams::default();
        p.subject_alt_names = sans.iter().map(|s| SanType::URI((*s).try_into().unwrap())).collect();
        if expired {
            p.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(2);
            p.not_after = time::OffsetDateTime::now_utc() - time::Duration::days(1);
        }
        if is_ca {
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        }
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = p.signed_by(&key, &intermediate).unwrap();
        (format!("{}{}", cert.pem(), new.intermediate.cert_pem), key.serialize_pem())
    };
    for (name, (chain, key)) in [
        ("no-uri", odd(&[], false, false)),
        ("two-uris", odd(&[CART, "spiffe://prod.example.org/x"], false, false)),
        ("expired", odd(&[CART], true, false)),
        ("ca-flag", odd(&[CART], false, true)),
    ] {
        write(name, &chain, &key);
    }
}

async fn gateway(d: &Path, mode: &str) -> (ward_gateway::RunningGateway, u16) {
    let pki = ward_pki::generate_local_pki("mTLS test server CA", &["localhost", "127.0.0.1"]).unwrap();
    common::write_gateway_files(d, &pki);
    let (up, _) = common::start_upstream().await;
    std::fs::create_dir_all(d.join("policies")).unwrap();
    std::fs::write(d.join("policies/p.yaml"), POLICIES).unwrap();
    let head = common::gateway_toml("127.0.0.1:0");
    std::fs::write(
        d.join("ward.toml"),
        format!(
            "{head}[gateway.mtls]\nmode = \"{mode}\"\nbundle_file = \"bundle.pem\"\ntrust_domain = \"{TD}\"\n\
             [[upstreams]]\nname = \"app\"\nurl = \"http://{up}\"\n\
             [[routes]]\nname = \"api\"\nprefix = \"/api/\"\nupstream = \"app\"\npublic = true\n\
             [[routes]]\nname = \"open\"\nprefix = \"/open/\"\nupstream = \"app\"\npublic = true\n\
             [[routes]]\nname = \"strict\"\nprefix = \"/strict/\"\nupstream = \"app\"\npublic = true\nmtls = \"STRICT\"\n\
             [[routes]]\nname = \"nomtls\"\nprefix = \"/nomtls/\"\nupstream = \"app\"\npublic = true\nmtls = \"DISABLE\"\n"
        ),
    )
    .unwrap();
    let config = ward_config::load(&d.join("ward.toml")).unwrap();
    let gateway = ward_gateway::Gateway::bind(&config).await.unwrap();
    let port = gateway.local_addr().unwrap().port();
    (gateway.spawn().unwrap(), port)
}

/// `curl` as `client` (a name of the files above, or none): the HTTP status, or 0 when the handshake failed.
fn curl(d: &Path, url: &str, client: Option<&str>) -> (u16, String) {
    let mut args = vec!["-sS".to_owned(), "--cacert".into(), "ca.crt".into(), "-w".into(), "\n%{http_code}".into()];
    if let Some(c) = client {
        args.extend(["--cert".into(), format!("{c}.crt"), "--key".into(), format!("{c}.key")]);
    }
    args.push(url.to_owned());
    let out = Command::new("curl").args(&args).current_dir(d).output().expect("curl is needed (`./test` installs it)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_mtls_accepts_svids_of_the_trust_domain_only() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_owned();
    write_client_files(&d);
    let (running, port) = gateway(&d, "STRICT").await;
    let url = move |p: &str| format!("https://localhost:{port}{p}");
    let d2 = d.clone();
    let results = tokio::task::spawn_blocking(move || {
        let mut r = Vec::new();
        let (code, body) = curl(&d2, &url("/api/orders"), Some("cart"));
        r.push(("cart /api", code));
        let echoed: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(echoed["headers"]["x-ward-peer-spiffe-id"], CART);
        r.push(("other /api", curl(&d2, &url("/api/orders"), Some("other")).0));
        r.push(("other /open", curl(&d2, &url("/open/x"), Some("other")).0));
        for c in ["stranger", "foreign", "ca-leaf", "no-uri", "two-uris", "expired", "ca-flag"] {
            r.push((c, curl(&d2, &url("/open/x"), Some(c)).0));
        }
        r.push(("no certificate", curl(&d2, &url("/open/x"), None).0));
        // openssl s_client: the handshake with an SVID completes and verifies.
        let s_client = |cert: Option<&str>| {
            let mut args = vec![
                "s_client".to_owned(),
                "-connect".into(),
                format!("127.0.0.1:{port}"),
                "-servername".into(),
                "localhost".into(),
                "-CAfile".into(),
                "ca.crt".into(),
                // Wait for the answer after the request is written.
                "-ign_eof".into(),
            ];
            if let Some(c) = cert {
                // -cert sends the leaf only; -cert_chain adds the intermediate.
                let chain = format!("{c}.crt");
                args.extend([
                    "-cert".into(),
                    chain.clone(),
                    "-cert_chain".into(),
                    chain,
                    "-key".into(),
                    format!("{c}.key"),
                ]);
            }
            let mut child = Command::new("openssl")
                .args(&args)
                .current_dir(&d2)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("openssl is needed (`./test` installs it)");
            {
                use std::io::Write;
                let _ = child
                    .stdin
                    .take()
                    .unwrap()
                    .write_all(b"GET /open/x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
            }
            let out = child.wait_with_output().unwrap();
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
        };
        let with = s_client(Some("cart"));
        assert!(with.contains("Verify return code: 0 (ok)") && with.contains("HTTP/1.1 200"), "{with}");
        let without = s_client(None);
        assert!(!without.contains("HTTP/1.1 200") && without.contains("alert"), "{without}");
        r
    })
    .await
    .unwrap();
    running.shutdown().await;
    let peers: Vec<String> = common::read_log(&d.join("audit"))
        .iter()
        .filter(|r| r["event"] == "request")
        .filter_map(|r| r["peer_spiffe_id"].as_str().map(str::to_owned))
        .collect();
    assert!(peers.len() >= 3 && peers.iter().any(|p| p == CART), "requests record the peer's SPIFFE ID: {peers:?}");
    assert_eq!(
        results,
        [
            ("cart /api", 200),
            ("other /api", 403),
            ("other /open", 200),
            ("stranger", 0),
            ("foreign", 0),
            ("ca-leaf", 0),
            ("no-uri", 0),
            ("two-uris", 0),
            ("expired", 0),
            ("ca-flag", 0),
            ("no certificate", 0),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permissive_serves_mtls_tls_and_plaintext_and_tells_them_apart() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_owned();
    write_client_files(&d);
    let (running, port) = gateway(&d, "PERMISSIVE").await;
    let d2 = d.clone();
    let seen = tokio::task::spawn_blocking(move || {
        let https = |p: &str| format!("https://localhost:{port}{p}");
        let http = |p: &str| format!("http://127.0.0.1:{port}{p}");
        let header = |body: &str, h: &str| {
            serde_json::from_str::<serde_json::Value>(body).unwrap()["headers"][h].as_str().map(str::to_owned)
        };
        let (mtls, mtls_body) = curl(&d2, &https("/open/x"), Some("cart"));
        let (tls, tls_body) = curl(&d2, &https("/open/x"), None);
        let (plain, plain_body) = curl(&d2, &http("/open/x"), None);
        assert_eq!(header(&mtls_body, "x-ward-peer-spiffe-id").as_deref(), Some(CART));
        assert_eq!(header(&tls_body, "x-ward-peer-spiffe-id"), None);
        assert_eq!(header(&plain_body, "x-forwarded-proto").as_deref(), Some("http"));
        assert_eq!(header(&mtls_body, "x-forwarded-proto").as_deref(), Some("https"));
        let (code, body) = curl(&d2, &https("/nomtls/x"), Some("cart"));
        assert_eq!(code, 200);
        assert_eq!(header(&body, "x-ward-peer-spiffe-id"), None, "a DISABLE route ignores the client SVID");
        vec![
            ("mtls /open", mtls),
            ("tls /open", tls),
            ("plain /open", plain),
            ("mtls /api", curl(&d2, &https("/api/x"), Some("cart")).0),
            ("tls /api", curl(&d2, &https("/api/x"), None).0),
            ("plain /api", curl(&d2, &http("/api/x"), None).0),
            ("foreign", curl(&d2, &https("/open/x"), Some("foreign")).0),
            // Route-level modes (Istio's port-level mTLS) under the PERMISSIVE listener.
            ("plain /strict", curl(&d2, &http("/strict/x"), None).0),
            ("tls /strict", curl(&d2, &https("/strict/x"), None).0),
            ("mtls /strict", curl(&d2, &https("/strict/x"), Some("cart")).0),
        ]
    })
    .await
    .unwrap();
    running.shutdown().await;
    assert_eq!(
        seen,
        [
            ("mtls /open", 200),
            ("tls /open", 200),
            ("plain /open", 200),
            ("mtls /api", 200),
            ("tls /api", 403),
            ("plain /api", 403),
            ("foreign", 0),
            ("plain /strict", 401),
            ("tls /strict", 401),
            ("mtls /strict", 200),
        ],
        "a certificate, when presented, must still be a valid SVID; STRICT routes need one"
    );
}

/// An HTTPS upstream with the SVID `id`, requiring an SVID of the trust
/// domain from its clients and answering with the client's SPIFFE ID.
async fn spiffe_upstream(new: &ca::NewCa, id: &str) -> std::net::SocketAddr {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let issuer = ca::SvidIssuer::load(&new.intermediate.cert_pem, &new.intermediate.key_pem, TD).unwrap();
    let (svid, key) = issuer.issue(&SpiffeId::parse(id).unwrap(), ca::DEFAULT_SVID_TTL).unwrap();
    let chain = CertificateDer::pem_slice_iter(svid.chain_pem.as_bytes()).collect::<Result<Vec<_>, _>>().unwrap();
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
    let bundle = vec![CertificateDer::from_pem_slice(new.root.cert_pem.as_bytes()).unwrap()];
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = ward_pki::verify::SpiffeClientVerifier::new(&bundle, TD, false, provider.clone()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(std::sync::Arc::new(verifier))
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { continue };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let peer = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .and_then(|c| ward_pki::verify::spiffe_id_of(c).ok())
                    .map(|id| id.to_string())
                    .unwrap_or_default();
                let svc = hyper::service::service_fn(move |_req: hyper::Request<hyper::body::Incoming>| {
                    let body = serde_json::json!({ "client": peer }).to_string();
                    async move {
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(http_body_util::Full::new(
                            bytes::Bytes::from(body),
                        )))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn egress_verifies_the_upstream_s_spiffe_id_and_presents_the_gateway_s() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let new = ca::init(TD).unwrap();
    std::fs::write(d.join("bundle.pem"), &new.root.cert_pem).unwrap();
    let issuer = ca::SvidIssuer::load(&new.intermediate.cert_pem, &new.intermediate.key_pem, TD).unwrap();
    let gateway_id = "spiffe://prod.example.org/ns/edge/sa/ward";
    let (svid, key) = issuer.issue(&SpiffeId::parse(gateway_id).unwrap(), ca::DEFAULT_SVID_TTL).unwrap();
    std::fs::write(d.join("ward-svid.crt"), &svid.chain_pem).unwrap();
    common::write_private(&d.join("ward-svid.key"), key.as_bytes());
    let orders = spiffe_upstream(&new, "spiffe://prod.example.org/ns/shop/sa/orders").await;

    let pki = ward_pki::generate_local_pki("egress test CA", &["localhost"]).unwrap();
    common::write_gateway_files(d, &pki);
    std::fs::create_dir_all(d.join("policies")).unwrap();
    std::fs::write(
        d.join("policies/p.yaml"),
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: all}\nspec:\n  rules:\n  - {}\n",
    )
    .unwrap();
    let head = common::gateway_toml("127.0.0.1:0");
    let upstream = |name: &str, expected: &str| {
        format!(
            "[[upstreams]]\nname = \"{name}\"\nurl = \"https://127.0.0.1:{}\"\nspiffe_id = \"{expected}\"\n\
             bundle_file = \"bundle.pem\"\nclient_cert_file = \"ward-svid.crt\"\nclient_key_file = \"ward-svid.key\"\n",
            orders.port()
        )
    };
    std::fs::write(
        d.join("ward.toml"),
        format!(
            "{head}{}{}[[routes]]\nname = \"orders\"\nprefix = \"/orders/\"\nupstream = \"orders\"\npublic = true\n\
             [[routes]]\nname = \"impostor\"\nprefix = \"/payments/\"\nupstream = \"payments\"\npublic = true\n",
            upstream("orders", "spiffe://prod.example.org/ns/shop/sa/orders"),
            // The same server, expected to be the payments service: its SVID says otherwise.
            upstream("payments", "spiffe://prod.example.org/ns/shop/sa/payments"),
        ),
    )
    .unwrap();
    let config = ward_config::load(&d.join("ward.toml")).unwrap();
    let gateway = ward_gateway::Gateway::bind(&config).await.unwrap();
    let port = gateway.local_addr().unwrap().port();
    let running = gateway.spawn().unwrap();
    let client = common::client(&pki.ca.cert_pem);
    let ok = client.get(format!("https://localhost:{port}/orders/1")).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    let body: serde_json::Value = ok.json().await.unwrap();
    assert_eq!(body["client"], gateway_id, "the upstream saw the gateway's SVID");
    let wrong = client.get(format!("https://localhost:{port}/payments/1")).send().await.unwrap();
    assert_eq!(wrong.status(), 502, "an upstream with another SPIFFE ID is refused");
    running.shutdown().await;
    let refused: Vec<serde_json::Value> =
        common::read_log(&d.join("audit")).into_iter().filter(|r| r["route"] == "impostor").collect();
    assert_eq!(refused.len(), 1);
    assert_eq!(
        (refused[0]["reason"].as_str(), refused[0]["status"].as_u64()),
        (Some("upstream_unavailable"), Some(502))
    );
}

/// One SVID of `ca` for `id`, as a reqwest identity (chain and key in one PEM).
fn identity_of(issuer: &ca::SvidIssuer, id: &str) -> Vec<u8> {
    let (svid, key) = issuer.issue(&SpiffeId::parse(id).unwrap(), ca::DEFAULT_SVID_TTL).unwrap();
    format!("{}{}", svid.chain_pem, key.as_str()).into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn svids_intermediates_and_bundles_rotate_under_load_without_a_failed_request() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Arc, RwLock};
    use std::time::Duration;

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_owned();
    write_client_files(&d); // bundle.pem: a first root; replaced below
    let root_a = ca::init(TD).unwrap();
    std::fs::write(d.join("bundle.pem"), &root_a.root.cert_pem).unwrap();
    let (running, port) = gateway(&d, "STRICT").await;
    let ca_pem = std::fs::read(d.join("ca.crt")).unwrap();
    let issuer_a = ca::SvidIssuer::load(&root_a.intermediate.cert_pem, &root_a.intermediate.key_pem, TD).unwrap();
    let current = Arc::new(RwLock::new((0usize, identity_of(&issuer_a, CART))));
    let (ok, failed, stop) =
        (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)), Arc::new(AtomicBool::new(false)));

    let mut workers = Vec::new();
    for _ in 0..4 {
        let (current, ok, failed, stop, ca_pem) =
            (Arc::clone(&current), Arc::clone(&ok), Arc::clone(&failed), Arc::clone(&stop), ca_pem.clone());
        workers.push(tokio::spawn(async move {
            let mut held: Option<(usize, reqwest::Client)> = None;
            while !stop.load(Ordering::SeqCst) {
                let (generation, pem) = current.read().unwrap().clone();
                if held.as_ref().is_none_or(|(g, _)| *g != generation) {
                    // A new SVID: a new client, so new handshakes present it.
                    let client = reqwest::Client::builder()
                        .tls_certs_only([reqwest::Certificate::from_pem(&ca_pem).unwrap()])
                        .identity(reqwest::Identity::from_pem(&pem).unwrap())
                        .build()
                        .unwrap();
                    held = Some((generation, client));
                }
                let client = &held.as_ref().unwrap().1;
                match client.get(format!("https://localhost:{port}/api/x")).send().await {
                    Ok(r) if r.status() == 200 => ok.fetch_add(1, Ordering::SeqCst),
                    _ => failed.fetch_add(1, Ordering::SeqCst),
                };
            }
        }));
    }
    let set = |generation: usize, pem: Vec<u8>| *current.write().unwrap() = (generation, pem);
    let settle = || tokio::time::sleep(Duration::from_millis(1500)); // > the 1 s file check
    // New SVIDs every half second from the first intermediate.
    for g in 1..=3 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        set(g, identity_of(&issuer_a, CART));
    }
    // The intermediate rotates (same root): SVIDs from the new one.
    let next = ca::new_intermediate(&root_a.root.cert_pem, &root_a.root.key_pem, TD).unwrap();
    let issuer_a2 = ca::SvidIssuer::load(&next.cert_pem, &next.key_pem, TD).unwrap();
    set(4, identity_of(&issuer_a2, CART));
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The root rotates: the bundle gains the new root first, clients move, the old root goes.
    let root_b = ca::init(TD).unwrap();
    let issuer_b = ca::SvidIssuer::load(&root_b.intermediate.cert_pem, &root_b.intermediate.key_pem, TD).unwrap();
    std::fs::write(d.join("bundle.pem"), format!("{}{}", root_a.root.cert_pem, root_b.root.cert_pem)).unwrap();
    settle().await;
    set(5, identity_of(&issuer_b, CART));
    settle().await;
    std::fs::write(d.join("bundle.pem"), &root_b.root.cert_pem).unwrap();
    settle().await;
    set(6, identity_of(&issuer_b, CART));
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.await.unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::SeqCst), failed.load(Ordering::SeqCst));
    assert!(ok > 100, "the load ran: {ok} requests");
    assert_eq!(failed, 0, "no request failed while SVIDs, the intermediate and the root rotated ({ok} succeeded)");
    // And the old root is really gone: its SVIDs are refused now.
    let d2 = d.clone();
    std::fs::write(d.join("old.crt"), identity_of(&issuer_a2, CART)).unwrap();
    std::fs::copy(d.join("old.crt"), d.join("old.key")).unwrap();
    let (code, _) =
        tokio::task::spawn_blocking(move || curl(&d2, &format!("https://localhost:{port}/api/x"), Some("old")))
            .await
            .unwrap();
    assert_eq!(code, 0, "an SVID of the removed root no longer passes the handshake");
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_serials_and_spiffe_ids_are_refused_on_the_next_handshake() {
    use std::sync::Arc;
    const ADMIN: &str = "deny-test-admin-token-0123456789abcdef0123456789";
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_owned();
    // The control plane runs the CA and shares its deny list with the gateway.
    let ca_dir = ward_control::ca::CaDir::new(&d.join("ca"), TD);
    ca_dir.init().unwrap();
    std::fs::copy(d.join("ca/bundle.pem"), d.join("bundle.pem")).unwrap();
    let list: Arc<dyn ward_core::RevocationList> = Arc::new(ward_core::LocalRevocations::new());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("https://localhost:{}", listener.local_addr().unwrap().port());
    let store = ward_control::Store::open(&d.join("control.redb")).unwrap();
    let cp = ward_control::ControlPlane::open(store, ward_control::ControlSettings::new(&base))
        .unwrap()
        .with_admin_token(ADMIN)
        .with_revocations(Arc::clone(&list))
        .with_ca(ca_dir)
        .unwrap();
    let pki = ward_pki::generate_local_pki("deny test CA", &["localhost", "127.0.0.1"]).unwrap();
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(ward_control::serve(listener, common::server_tls(&pki), ward_control::router(Arc::new(cp)), stopped));
    let admin = common::client(&pki.ca.cert_pem);
    let call = |path: &'static str, body: serde_json::Value| {
        let (admin, base) = (admin.clone(), base.clone());
        async move {
            let r = admin.post(format!("{base}{path}")).bearer_auth(ADMIN).json(&body).send().await.unwrap();
            (r.status().as_u16(), r.json::<serde_json::Value>().await.unwrap_or_default())
        }
    };
    let mut serials = Vec::new();
    for (name, id) in [("a", CART), ("b", CART), ("other", "spiffe://prod.example.org/ns/shop/sa/other")] {
        let (s, v) = call("/admin/certs", serde_json::json!({"spiffe_id": id})).await;
        assert_eq!(s, 201, "{v}");
        std::fs::write(d.join(format!("{name}.crt")), v["certificate_chain"].as_str().unwrap()).unwrap();
        common::write_private(&d.join(format!("{name}.key")), v["private_key"].as_str().unwrap().as_bytes());
        serials.push(v["serial"].as_str().unwrap().to_owned());
    }

    // The gateway (same process, same list), STRICT, with the gateway files written by `gateway()`'s helper.
    let (running, port, _) = strict_gateway(&d, &pki, &list).await;
    let probe = |who: &'static str| {
        let d = d.clone();
        async move {
            tokio::task::spawn_blocking(move || curl(&d, &format!("https://localhost:{port}/open/x"), Some(who)).0)
                .await
                .unwrap()
        }
    };
    assert_eq!((probe("a").await, probe("b").await, probe("other").await), (200, 200, 200));
    // A client of `a` that keeps its connection open across the denial.
    let kept = {
        let chain = std::fs::read_to_string(d.join("a.crt")).unwrap();
        let key = std::fs::read_to_string(d.join("a.key")).unwrap();
        reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(pki.ca.cert_pem.as_bytes()).unwrap()])
            .identity(reqwest::Identity::from_pem(format!("{chain}{key}").as_bytes()).unwrap())
            .build()
            .unwrap()
    };
    let kept_get = || kept.get(format!("https://localhost:{port}/open/x")).send();
    assert_eq!(kept_get().await.unwrap().status(), 200);

    // One certificate, by serial.
    let (s, _) = call("/admin/certs/revoke", serde_json::json!({"serial": serials[0]})).await;
    assert_eq!(s, 200);
    assert_eq!((probe("a").await, probe("b").await), (0, 200), "only that certificate");
    let refused = kept_get().await.unwrap();
    assert_eq!(refused.status(), 401, "the connection kept alive from before is refused too");
    let id = refused.headers()["x-request-id"].to_str().unwrap().to_owned();
    running.flush_audit().await.unwrap();
    let records = common::read_log(&d.join("audit"));
    assert!(records.iter().any(|r| r["request_id"] == id.as_str() && r["reason"] == "certificate_denied"));
    // A whole workload, by SPIFFE ID: its other SVIDs too, and no new ones.
    let (s, _) = call("/admin/certs/revoke", serde_json::json!({"spiffe_id": CART})).await;
    assert_eq!(s, 200);
    assert_eq!((probe("b").await, probe("other").await), (0, 200));
    let (s, _) = call("/admin/certs", serde_json::json!({"spiffe_id": CART})).await;
    assert_eq!(s, 400, "the CA issues nothing for a denied SPIFFE ID");
    let (s, _) = call("/admin/certs/revoke", serde_json::json!({"serial": "not hex"})).await;
    assert_eq!(s, 400);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_bound_tokens_are_good_only_with_their_certificate() {
    use base64::Engine;
    use rustls_pki_types::pem::PemObject;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_owned();
    let ca_dir = ward_control::ca::CaDir::new(&d.join("ca"), TD);
    ca_dir.init().unwrap();
    std::fs::copy(d.join("ca/bundle.pem"), d.join("bundle.pem")).unwrap();
    let (issuer, bundle_pem) = ca_dir.load().unwrap();
    let pki = ward_pki::generate_local_pki("binding test CA", &["localhost", "127.0.0.1"]).unwrap();

    // The control plane: its listener asks for (optional) client SVIDs.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer_url = format!("https://localhost:{}", listener.local_addr().unwrap().port());
    let cp = ward_control::ControlPlane::open(
        ward_control::Store::open(&d.join("control.redb")).unwrap(),
        ward_control::ControlSettings::new(&issuer_url),
    )
    .unwrap();
    let secret = cp
        .create_client(&ward_control::ClientSpec {
            id: "svc".into(),
            grants: vec![
                ward_issuer::clients::GrantType::ClientCredentials,
                ward_issuer::clients::GrantType::TokenExchange,
            ],
            scopes: vec!["orders:read".into()],
            audiences: vec!["orders".into()],
            token_ttl: 600,
            jwks: None,
            redirect_uris: Vec::new(),
            roles: Vec::new(),
        })
        .unwrap()
        .unwrap()
        .expose()
        .to_owned();
    let _stop = serve_with_svid_clients(listener, cp, &pki, &bundle_pem);

    // Clients: the service's SVID, a thief's, and none.
    let with = |id: &str| {
        let (svid, key) = issuer.issue(&SpiffeId::parse(id).unwrap(), ca::DEFAULT_SVID_TTL).unwrap();
        let leaf = rustls_pki_types::CertificateDer::from_pem_slice(svid.chain_pem.as_bytes()).unwrap();
        let identity = reqwest::Identity::from_pem(format!("{}{}", svid.chain_pem, key.as_str()).as_bytes()).unwrap();
        let client = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(pki.ca.cert_pem.as_bytes()).unwrap()])
            .identity(identity)
            .build()
            .unwrap();
        (client, ward_pki::verify::x5t_s256(&leaf))
    };
    let (svc, svc_x5t) = with(CART);
    let (thief, _) = with("spiffe://prod.example.org/ns/shop/sa/thief");
    let anonymous = common::client(&pki.ca.cert_pem);

    let resp = svc
        .post(format!("{issuer_url}/oauth2/token"))
        .basic_auth("svc", Some(&secret))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let token = resp.json::<serde_json::Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned();
    let payload = token.split('.').nth(1).unwrap();
    let claims: serde_json::Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    assert_eq!(claims["cnf"]["x5t#S256"], svc_x5t, "bound to the certificate it was requested over");
    // A token exchange over mTLS binds the new token to the caller's certificate.
    let exchange = |over: &reqwest::Client| {
        over.post(format!("{issuer_url}/oauth2/token"))
            .basic_auth("svc", Some(&secret))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!(
                "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange&subject_token={token}\
                 &subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aaccess_token"
            ))
            .send()
    };
    let exchanged = exchange(&svc).await.unwrap();
    assert_eq!(exchanged.status(), 200);
    let exchanged = exchanged.json::<serde_json::Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned();
    let exchanged_claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(exchanged.split('.').nth(1).unwrap()).unwrap(),
    )
    .unwrap();
    assert_eq!(exchanged_claims["cnf"]["x5t#S256"], svc_x5t, "the exchange keeps the binding to the caller's SVID");
    // Without mTLS, a bound token buys no bearer token.
    let unbound = exchange(&anonymous).await.unwrap();
    assert_eq!(unbound.status(), 400);
    assert_eq!(unbound.json::<serde_json::Value>().await.unwrap()["error"], "invalid_grant");

    // The gateway trusts the control plane's tokens and takes client SVIDs (PERMISSIVE).
    common::write_gateway_files(&d, &pki);
    std::fs::create_dir_all(d.join("policies")).unwrap();
    std::fs::write(
        d.join("policies/p.yaml"),
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: any}\nspec:\n  rules:\n  - from: [{source: {requestPrincipals: [\"*\"]}}]\n",
    )
    .unwrap();
    let (up, _) = common::start_upstream().await;
    let head = common::gateway_toml("127.0.0.1:0");
    std::fs::write(
        d.join("ward.toml"),
        format!(
            "{head}[gateway.mtls]\nmode = \"PERMISSIVE\"\nbundle_file = \"bundle.pem\"\ntrust_domain = \"{TD}\"\n\
             [[providers]]\nname = \"ward\"\nissuer = \"{issuer_url}\"\naudiences = [\"orders\"]\n\
             jwks_url = \"{issuer_url}/.well-known/jwks.json\"\njwks_ca_file = \"ca.crt\"\n\
             [[upstreams]]\nname = \"app\"\nurl = \"http://{up}\"\n\
             [[routes]]\nname = \"api\"\nprefix = \"/api/\"\nupstream = \"app\"\n"
        ),
    )
    .unwrap();
    let config = ward_config::load(&d.join("ward.toml")).unwrap();
    let gateway = ward_gateway::Gateway::bind(&config).await.unwrap();
    let port = gateway.local_addr().unwrap().port();
    let running = gateway.spawn().unwrap();
    let call = |c: &reqwest::Client| c.get(format!("https://localhost:{port}/api/x")).bearer_auth(&token).send();
    assert_eq!(call(&svc).await.unwrap().status(), 200, "with its certificate");
    assert_eq!(call(&thief).await.unwrap().status(), 401, "replayed over another client certificate");
    assert_eq!(call(&anonymous).await.unwrap().status(), 401, "replayed without one");
    running.shutdown().await;
    let mismatches =
        common::read_log(&d.join("audit")).iter().filter(|r| r["reason"] == "token_binding_mismatch").count();
    assert_eq!(mismatches, 2, "both replays are audited");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registry_takes_registrations_and_answers_lookups_only_from_allowed_svids() {
    use base64::Engine;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_owned();
    let ca_dir = ward_control::ca::CaDir::new(&d.join("ca"), TD);
    ca_dir.init().unwrap();
    let (issuer, bundle_pem) = ca_dir.load().unwrap();
    let pki = ward_pki::generate_local_pki("registry test CA", &["localhost"]).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("https://localhost:{}", listener.local_addr().unwrap().port());
    const ORDERS: &str = "spiffe://prod.example.org/ns/shop/sa/orders";
    let cp = ward_control::ControlPlane::open(
        ward_control::Store::open(&d.join("control.redb")).unwrap(),
        ward_control::ControlSettings::new(&base),
    )
    .unwrap()
    .with_registry(vec![ward_control::registry::Rule {
        name: "orders".into(),
        writers: vec![ORDERS.into()],
        readers: vec![CART.into()],
    }]);
    let _stop = serve_with_svid_clients(listener, cp, &pki, &bundle_pem);
    let as_svid = |id: &str| {
        let (svid, key) = issuer.issue(&SpiffeId::parse(id).unwrap(), ca::DEFAULT_SVID_TTL).unwrap();
        let client = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(pki.ca.cert_pem.as_bytes()).unwrap()])
            .identity(reqwest::Identity::from_pem(format!("{}{}", svid.chain_pem, key.as_str()).as_bytes()).unwrap())
            .build()
            .unwrap();
        (client, svid.chain_pem, key)
    };
    let (orders, orders_chain, orders_key) = as_svid(ORDERS);
    let (cart, other, anonymous) =
        (as_svid(CART).0, as_svid("spiffe://prod.example.org/ns/shop/sa/other").0, common::client(&pki.ca.cert_pem));
    let url = format!("{base}/registry/orders");
    let register = |c: &reqwest::Client, ttl: u64| {
        c.put(&url).json(&serde_json::json!({"addresses": ["10.0.0.7:8443"], "ttl": ttl})).send()
    };

    assert_eq!(register(&other, 60).await.unwrap().status(), 403, "not allowed to register orders");
    assert_eq!(register(&anonymous, 60).await.unwrap().status(), 401, "no SVID");
    let ok = register(&orders, 60).await.unwrap();
    assert_eq!(ok.status(), 200);
    // Discovery: for allowed readers only; the entry is signed by the control plane.
    assert_eq!(other.get(&url).send().await.unwrap().status(), 403);
    assert_eq!(anonymous.get(&url).send().await.unwrap().status(), 401);
    let found: serde_json::Value = cart.get(&url).send().await.unwrap().json().await.unwrap();
    let entry = found["entry"].as_str().unwrap();
    let jwks: serde_json::Value =
        anonymous.get(format!("{base}/.well-known/jwks.json")).send().await.unwrap().json().await.unwrap();
    let (input, sig) = entry.rsplit_once('.').unwrap();
    let header: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(input.split('.').next().unwrap()).unwrap(),
    )
    .unwrap();
    assert_eq!(header["typ"], "ward-registry+jwt", "never mistaken for an access token");
    let keys = ward_authn::JwkSet::parse(jwks.to_string().as_bytes()).unwrap().verifying_keys().unwrap();
    let (_, key) = keys.iter().find(|(kid, _)| kid.as_deref() == header["kid"].as_str()).unwrap();
    let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(sig).unwrap();
    assert!(ward_authn::verify_signature(ward_authn::Algorithm::EdDsa, key, input.as_bytes(), &sig));
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(input.split('.').nth(1).unwrap()).unwrap(),
    )
    .unwrap();
    assert_eq!((claims["sub"].as_str(), claims["spiffe_id"].as_str()), (Some("orders"), Some(ORDERS)));
    assert_eq!(claims["addresses"], serde_json::json!(["10.0.0.7:8443"]));
    assert!(claims["public_key"].as_str().is_some_and(|k| k.len() > 80), "the registrant's public key");
    // A message signed with the registered SVID matches its entry; one signed with
    // another key of the same SPIFFE ID does not.
    let checked = ward_control::registry::verify_entry(entry, &jwks.to_string(), &base, ward_control::now()).unwrap();
    let jws = ward_pki::sign::sign(&orders_chain, &orders_key, b"order 42").unwrap();
    let signer = ward_pki::sign::verify_signer(&jws, b"order 42", &bundle_pem, None).unwrap();
    assert_eq!(checked["public_key"].as_str(), Some(signer.public_key.as_str()));
    let (svid2, key2) = issuer.issue(&SpiffeId::parse(ORDERS).unwrap(), ca::DEFAULT_SVID_TTL).unwrap();
    let other_key = ward_pki::sign::verify_signer(
        &ward_pki::sign::sign(&svid2.chain_pem, &key2, b"order 42").unwrap(),
        b"order 42",
        &bundle_pem,
        None,
    )
    .unwrap();
    assert_eq!(other_key.id, signer.id);
    assert_ne!(checked["public_key"].as_str(), Some(other_key.public_key.as_str()));
    assert!(
        ward_control::registry::verify_entry(entry, &jwks.to_string(), "https://other.example", ward_control::now())
            .is_err()
    );

    // Registrations expire unless renewed.
    assert_eq!(register(&orders, 1).await.unwrap().status(), 200);
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    assert_eq!(cart.get(&url).send().await.unwrap().status(), 404, "expired");
    assert_eq!(register(&orders, 60).await.unwrap().status(), 200);
    assert_eq!(orders.delete(&url).send().await.unwrap().status(), 204);
    assert_eq!(cart.get(&url).send().await.unwrap().status(), 404, "deregistered");
}

/// Serve `cp` on `listener` with `pki`'s server certificate, asking clients
/// for an (optional) SVID of the trust domain, as a control plane with a CA
/// does. Dropping the returned sender stops it.
fn serve_with_svid_clients(
    listener: tokio::net::TcpListener,
    cp: ward_control::ControlPlane,
    pki: &ward_pki::LocalPki,
    bundle_pem: &str,
) -> tokio::sync::watch::Sender<bool> {
    use rustls_pki_types::pem::PemObject;
    use std::sync::Arc;
    let bundle = vec![rustls_pki_types::CertificateDer::from_pem_slice(bundle_pem.as_bytes()).unwrap()];
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = ward_pki::verify::SpiffeClientVerifier::new(&bundle, TD, true, provider.clone()).unwrap();
    let certs = rustls_pki_types::CertificateDer::pem_slice_iter(pki.server.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(pki.server.key_pem.as_bytes()).unwrap();
    let tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(Arc::new(verifier))
        .with_single_cert(certs, key)
        .unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(ward_control::serve(listener, Arc::new(tls), ward_control::router(Arc::new(cp)), stopped));
    stop
}

/// A STRICT gateway in `d` (SVIDs of `bundle.pem`, route `/open/` public)
/// refusing the certificates `list` denies, as `ward up` shares the control
/// plane's list: the running gateway, its port and its configuration.
async fn strict_gateway(
    d: &Path,
    pki: &ward_pki::LocalPki,
    list: &std::sync::Arc<dyn ward_core::RevocationList>,
) -> (ward_gateway::RunningGateway, u16, ward_config::Config) {
    common::write_gateway_files(d, pki);
    std::fs::create_dir_all(d.join("policies")).unwrap();
    std::fs::write(d.join("policies/p.yaml"), POLICIES).unwrap();
    let (up, _) = common::start_upstream().await;
    let head = common::gateway_toml("127.0.0.1:0");
    std::fs::write(
        d.join("ward.toml"),
        format!(
            "{head}[gateway.mtls]\nmode = \"STRICT\"\nbundle_file = \"bundle.pem\"\ntrust_domain = \"{TD}\"\n\
             [[upstreams]]\nname = \"app\"\nurl = \"http://{up}\"\n\
             [[routes]]\nname = \"open\"\nprefix = \"/open/\"\nupstream = \"app\"\npublic = true\n"
        ),
    )
    .unwrap();
    let config = ward_config::load(&d.join("ward.toml")).unwrap();
    let gateway = ward_gateway::Gateway::bind_with(&config, Some(std::sync::Arc::clone(list))).await.unwrap();
    let port = gateway.local_addr().unwrap().port();
    (gateway.spawn().unwrap(), port, config)
}

/// One request on a new connection made with `config` (which keeps the TLS
/// sessions it is given, so a second call resumes): how the handshake went
/// as the client saw it, and the HTTP status, or `None` when the server
/// refused the connection (a TLS 1.3 client learns of a refused certificate
/// only after its side of the handshake is done).
async fn one_request(
    config: &std::sync::Arc<rustls::ClientConfig>,
    port: u16,
    head: &str,
    body: &str,
) -> (Option<rustls::HandshakeKind>, Option<u16>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let Ok(mut tls) = tokio_rustls::TlsConnector::from(std::sync::Arc::clone(config)).connect(name, tcp).await else {
        return (None, None);
    };
    let kind = tls.get_ref().1.handshake_kind();
    let request = format!(
        "{head} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n{body}",
        body.len()
    );
    if tls.write_all(request.as_bytes()).await.is_err() {
        return (kind, None);
    }
    let mut answer = Vec::new();
    let _ = tls.read_to_end(&mut answer).await;
    let status = String::from_utf8_lossy(&answer).split(' ').nth(1).and_then(|s| s.parse().ok());
    (kind, status)
}

/// A rustls client of one TLS version presenting `svid` (chain PEM, key PEM),
/// with rustls's in-memory session cache (TLS 1.3 tickets, TLS 1.2 session
/// IDs and tickets).
fn resuming_client(
    server_ca_pem: &str,
    svid: (&str, &str),
    version: &'static rustls::SupportedProtocolVersion,
) -> std::sync::Arc<rustls::ClientConfig> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(rustls_pki_types::CertificateDer::from_pem_slice(server_ca_pem.as_bytes()).unwrap()).unwrap();
    let chain = rustls_pki_types::CertificateDer::pem_slice_iter(svid.0.as_bytes()).collect::<Result<Vec<_>, _>>();
    let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(svid.1.as_bytes()).unwrap();
    let config =
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
            .with_protocol_versions(&[version])
            .unwrap()
            .with_root_certificates(roots)
            .with_client_auth_cert(chain.unwrap(), key)
            .unwrap();
    std::sync::Arc::new(config)
}

/// Resumed TLS sessions are judged as of now: a client that made a session
/// with a valid SVID and kept it is refused once that certificate is denied
/// (by serial or by SPIFFE ID) or has expired, on the gateway (STRICT) and on
/// the control plane (whose `/svid/renew` would otherwise renew an expired
/// SVID), over TLS 1.3 tickets and TLS 1.2 resumption alike. A valid SVID
/// still resumes, so the refusals are not resumption being off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumed_sessions_are_refused_once_the_svid_is_denied_or_expired() {
    use std::sync::Arc;
    use std::time::Duration;

    use rustls::HandshakeKind::{Full, Resumed};
    const ADMIN: &str = "resume-test-admin-token-0123456789abcdef01234567";
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_owned();
    let ca_dir = ward_control::ca::CaDir::new(&d.join("ca"), TD);
    ca_dir.init().unwrap();
    std::fs::copy(d.join("ca/bundle.pem"), d.join("bundle.pem")).unwrap();
    let (issuer, _) = ca_dir.load().unwrap();
    let list: Arc<dyn ward_core::RevocationList> = Arc::new(ward_core::LocalRevocations::new());
    let pki = ward_pki::generate_local_pki("resumption test CA", &["localhost", "127.0.0.1"]).unwrap();
    let (running, gport, config) = strict_gateway(&d, &pki, &list).await;

    // The control plane as `ward control` serves it with a CA: PERMISSIVE
    // SVIDs of the trust domain, the same deny-list.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let cport = listener.local_addr().unwrap().port();
    let base = format!("https://localhost:{cport}");
    let cp = ward_control::ControlPlane::open(
        ward_control::Store::open(&d.join("control.redb")).unwrap(),
        ward_control::ControlSettings::new(&base),
    )
    .unwrap()
    .with_admin_token(ADMIN)
    .with_revocations(Arc::clone(&list))
    .with_ca(ward_control::ca::CaDir::new(&d.join("ca"), TD))
    .unwrap();
    let mut settings = config.gateway.tls.clone();
    settings.mtls.as_mut().unwrap().mode = ward_config::MtlsMode::Permissive;
    let tls = ward_gateway::ServerTls::with_denylist(&settings, Some(Arc::clone(&list))).unwrap();
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    let router = ward_control::router(Arc::new(cp));
    tokio::spawn(ward_control::serve_guarded(
        listener,
        Arc::clone(&tls.config),
        tls.recheck.clone(),
        router,
        None,
        stopped,
    ));
    let admin = common::client(&pki.ca.cert_pem);
    let revoke = |body: serde_json::Value| {
        let (admin, base) = (admin.clone(), base.clone());
        async move {
            let r = admin.post(format!("{base}/admin/certs/revoke")).bearer_auth(ADMIN).json(&body).send().await;
            assert_eq!(r.unwrap().status(), 200);
        }
    };
    let renewal = || {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let csr = CertificateParams::default().serialize_request(&key).unwrap().pem().unwrap();
        serde_json::json!({ "csr": csr }).to_string()
    };

    // Every listener × version × case gets its own SVID (its own SPIFFE ID)
    // and its own client, which keeps the session of its first connection.
    struct Flow {
        name: String,
        svid: ward_pki::ca::Svid,
        client: Arc<rustls::ClientConfig>,
        port: u16,
        head: &'static str,
        ok: u16,
        case: &'static str,
    }
    let mut flows = Vec::new();
    for (listener, port, head, ok) in
        [("gateway", gport, "GET /open/x", 200), ("control", cport, "POST /svid/renew", 201)]
    {
        for (v, version) in [("tls13", &rustls::version::TLS13), ("tls12", &rustls::version::TLS12)] {
            for case in ["serial", "spiffe-id", "expired", "valid"] {
                let name = format!("{listener}/{v}/{case}");
                let id = SpiffeId::parse(&format!("spiffe://{TD}/{name}")).unwrap();
                let ttl = if case == "expired" { Duration::from_secs(4) } else { ca::DEFAULT_SVID_TTL };
                let (svid, key) = issuer.issue(&id, ttl).unwrap();
                let client = resuming_client(&pki.ca.cert_pem, (&svid.chain_pem, &key), version);
                flows.push(Flow { name, svid, client, port, head, ok, case });
            }
        }
    }
    for f in &flows {
        let got = one_request(&f.client, f.port, f.head, &renewal()).await;
        assert_eq!(got, (Some(Full), Some(f.ok)), "{}: the first connection, a full handshake, is served", f.name);
    }
    for f in &flows {
        match f.case {
            "serial" => revoke(serde_json::json!({ "serial": f.svid.serial })).await,
            "spiffe-id" => revoke(serde_json::json!({ "spiffe_id": format!("spiffe://{TD}/{}", f.name) })).await,
            _ => {}
        }
    }
    let expiry = flows.iter().filter(|f| f.case == "expired").map(|f| f.svid.not_after).max().unwrap();
    let wait = (expiry - time::OffsetDateTime::now_utc()).whole_milliseconds() + 1500;
    tokio::time::sleep(Duration::from_millis(u64::try_from(wait.max(0)).unwrap())).await;

    for f in &flows {
        let (kind, status) = one_request(&f.client, f.port, f.head, &renewal()).await;
        if f.case == "valid" {
            assert_eq!((kind, status), (Some(Resumed), Some(f.ok)), "{}: a valid SVID resumes and is served", f.name);
        } else {
            // The server takes the session back, then refuses the connection.
            assert_eq!(
                (kind, status),
                (Some(Resumed), None),
                "{}: a resumed denied or expired SVID is refused",
                f.name
            );
        }
    }
    running.shutdown().await;
}
