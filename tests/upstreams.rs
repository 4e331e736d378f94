//! Upstream connections and remote keys, against real servers on 127.0.0.1:
//! pooled connections are reused, a connection the upstream closed is not
//! used again, HTTPS upstreams are verified against their CA, and a JWK set
//! is fetched from an HTTPS URL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use ward_authn::{Algorithm, TokenSigner};
use ward_pki::LocalPki;

const ISSUER: &str = "https://issuer.test";

/// How the test upstream treats a connection after answering.
#[derive(Clone, Copy, PartialEq)]
enum AfterResponse {
    KeepAlive,
    /// Close without saying so (`Connection: close` is not sent), as an
    /// upstream whose keep-alive timer fired would.
    SilentlyClose,
}

/// A minimal HTTP/1.1 upstream, plain or TLS, answering `body` to every
/// request and counting the connections it accepted.
async fn upstream(tls: Option<&LocalPki>, after: AfterResponse, body: &'static str) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&connections);
    let acceptor = tls.map(|pki| {
        use rustls_pki_types::pem::PemObject;
        let cert = rustls_pki_types::CertificateDer::from_pem_slice(pki.server.cert_pem.as_bytes()).unwrap();
        let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(pki.server.key_pem.as_bytes()).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(ward_gateway::crypto_provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .unwrap();
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    });
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            counter.fetch_add(1, Ordering::SeqCst);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                match acceptor {
                    Some(a) => {
                        if let Ok(tls) = a.accept(stream).await {
                            serve(tls, after, body).await;
                        }
                    }
                    None => serve(stream, after, body).await,
                }
            });
        }
    });
    (addr, connections)
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, after: AfterResponse, body: &str) {
    let mut buf = Vec::new();
    loop {
        // Read one request head (the tests send no bodies upstream).
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        buf.drain(..end);
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        if stream.write_all(response.as_bytes()).await.is_err() {
            return;
        }
        if after == AfterResponse::SilentlyClose {
            let _ = stream.shutdown().await;
            return;
        }
    }
}

struct Setup {
    _dir: tempfile::TempDir,
    gateway: ward_gateway::RunningGateway,
    client: reqwest::Client,
    token: String,
}

impl Setup {
    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.gateway.local_addr().unwrap().port())
    }

    async fn get(&self, path: &str) -> (u16, String) {
        let r = self.client.get(self.url(path)).bearer_auth(&self.token).send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }
}

/// A gateway whose one provider takes keys from `keys` (a TOML line) and
/// whose one route goes to `upstream` (TOML lines for `[[upstreams]]`).
async fn gateway(pki: &LocalPki, signer: &TokenSigner, keys: &str, upstream: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    common::write_gateway_files(d, pki);
    std::fs::write(d.join("jwks.json"), signer.public_jwk_set().to_string()).unwrap();
    let config = format!(
        r#"
[gateway]
listen = "127.0.0.1:0"
worker_threads = 1
[gateway.tls]
cert_file = "server.crt"
key_file = "server.key"
[audit]
dir = "audit"
hmac_key_file = "audit.key"
checkpoint_key_file = "checkpoint.key"
[[providers]]
name = "test"
issuer = "{ISSUER}"
audiences = ["orders"]
{keys}
[[upstreams]]
name = "app"
timeout = "2s"
connect_timeout = "1s"
{upstream}
[[routes]]
name = "api"
prefix = "/api/"
upstream = "app"
"#
    );
    std::fs::write(d.join("ward.toml"), config).unwrap();
    std::fs::create_dir_all(d.join("policies")).unwrap();
    std::fs::write(
        d.join("policies/get.yaml"),
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: get}\nspec:\n  rules: [{to: [{operation: {methods: [GET]}}]}]\n",
    )
    .unwrap();
    let config = ward_config::load(&d.join("ward.toml")).unwrap();
    let gateway = ward_gateway::Gateway::bind(&config).await.unwrap().spawn().unwrap();
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(pki.ca.cert_pem.as_bytes()).unwrap()])
        .build()
        .unwrap();
    let now =
        i64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()).unwrap();
    let claims = json!({"iss": ISSUER, "aud": "orders", "sub": "alice", "exp": now + 300, "iat": now});
    let token = signer.sign(claims.as_object().unwrap()).unwrap();
    Setup { _dir: dir, gateway, client, token }
}

fn pki() -> LocalPki {
    ward_pki::generate_local_pki("upstream test CA", &["localhost", "127.0.0.1"]).unwrap()
}

fn new_signer() -> TokenSigner {
    TokenSigner::from_pkcs8(Algorithm::Es256, &TokenSigner::generate_pkcs8(Algorithm::Es256).unwrap()).unwrap()
}

#[tokio::test]
async fn upstream_connections_are_pooled_and_reused() {
    let (pki, signer) = (pki(), new_signer());
    let (addr, connections) = upstream(None, AfterResponse::KeepAlive, "{}").await;
    let g = gateway(&pki, &signer, r#"jwks_file = "jwks.json""#, &format!(r#"url = "http://{addr}""#)).await;
    for _ in 0..20 {
        assert_eq!(g.get("/api/x").await.0, 200);
    }
    assert_eq!(connections.load(Ordering::SeqCst), 1, "20 sequential requests share one upstream connection");
}

#[tokio::test]
async fn a_connection_the_upstream_closed_is_not_reused() {
    let (pki, signer) = (pki(), new_signer());
    let (addr, connections) = upstream(None, AfterResponse::SilentlyClose, "{}").await;
    let g = gateway(&pki, &signer, r#"jwks_file = "jwks.json""#, &format!(r#"url = "http://{addr}""#)).await;
    for i in 0..10 {
        assert_eq!(g.get("/api/x").await.0, 200, "request {i} after the upstream closed the previous connection");
    }
    assert_eq!(connections.load(Ordering::SeqCst), 10);
}

#[tokio::test]
async fn https_upstreams_are_verified_against_their_ca() {
    let (pki, signer) = (pki(), new_signer());
    let (addr, _) = upstream(Some(&pki), AfterResponse::KeepAlive, r#"{"tls":true}"#).await;
    let trusted = format!("url = \"https://localhost:{}\"\nca_file = \"ca.crt\"", addr.port());
    let g = gateway(&pki, &signer, r#"jwks_file = "jwks.json""#, &trusted).await;
    let (status, body) = g.get("/api/x").await;
    assert_eq!((status, body.as_str()), (200, r#"{"tls":true}"#));
    assert_eq!(g.get("/api/y").await.0, 200);

    // The same upstream, but Ward trusts a different CA: no response from it is accepted.
    let other = ward_pki::generate_local_pki("another CA", &["localhost"]).unwrap();
    let g2 = gateway(&other, &signer, r#"jwks_file = "jwks.json""#, &trusted).await;
    let (status, body) = g2.get("/api/x").await;
    assert_eq!(status, 502);
    assert!(!body.contains("localhost") && !body.contains(&addr.port().to_string()), "generic body: {body}");
}

#[tokio::test]
async fn keys_are_fetched_from_an_https_jwks_url() {
    let (pki, signer) = (pki(), new_signer());
    let jwks: &'static str = Box::leak(signer.public_jwk_set().to_string().into_boxed_str());
    let (jwks_addr, fetches) = upstream(Some(&pki), AfterResponse::KeepAlive, jwks).await;
    let (app, _) = upstream(None, AfterResponse::KeepAlive, "{}").await;
    let keys = format!("jwks_url = \"https://localhost:{}/jwks.json\"\njwks_ca_file = \"ca.crt\"", jwks_addr.port());
    let g = gateway(&pki, &signer, &keys, &format!(r#"url = "http://{app}""#)).await;
    assert_eq!(g.get("/api/x").await.0, 200, "a token signed by a key from the HTTPS JWK set is accepted");
    assert!(fetches.load(Ordering::SeqCst) >= 1);

    // A token from a key the JWK set does not hold is refused.
    let stranger = new_signer();
    let now =
        i64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()).unwrap();
    let claims = json!({"iss": ISSUER, "aud": "orders", "sub": "mallory", "exp": now + 300});
    let forged = stranger.sign(claims.as_object().unwrap()).unwrap();
    let r = g.client.get(g.url("/api/x")).bearer_auth(forged).send().await.unwrap();
    assert_eq!(r.status(), 401);
}
