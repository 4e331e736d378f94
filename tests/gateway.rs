//! End-to-end acceptance tests: a real gateway on 127.0.0.1, a real upstream,
//! real clients (reqwest, raw TLS sockets, openssl s_client), and the audit
//! file read back after every scenario.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use aws_lc_rs::hmac;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use common::{Harness, now, start, start_with, start_with_policies};

async fn get(h: &Harness, path: &str, token: Option<&str>) -> reqwest::Response {
    let mut req = h.client.get(h.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.unwrap()
}

fn request_id(r: &reqwest::Response) -> String {
    r.headers()["x-request-id"].to_str().unwrap().to_owned()
}

/// Assert a generic error body and the single audit record with `reason`.
async fn expect_denied(h: &Harness, r: reqwest::Response, status: u16, reason: &str) {
    assert_eq!(r.status().as_u16(), status, "for reason {reason}");
    let id = request_id(&r);
    let www = r.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_owned());
    let body: Value = r.json().await.unwrap();
    assert_eq!(body.as_object().unwrap().len(), 2, "generic body only: {body}");
    assert_eq!(body["request_id"], id);
    if status == 401 {
        assert!(www.unwrap().contains(r#"error="invalid_token""#));
    }
    let record = h.record_for(&id).await;
    assert_eq!(record["reason"], reason);
    assert_eq!(record["decision"], "deny");
    assert_eq!(record["status"], status);
}

/// Issue 17, item 8: a client reused another request's id and two audit
/// records shared it. The gateway's id is its own (a client's is taken only
/// behind trusted proxies); the client's value travels as
/// `x-client-request-id`.
#[tokio::test(flavor = "multi_thread")]
async fn a_client_chosen_request_id_never_names_an_audit_record() {
    let h = start().await;
    let token = h.token(json!({}));
    let mut ids = Vec::new();
    for _ in 0..2 {
        let r = h
            .client
            .get(h.url("/api/items"))
            .bearer_auth(&token)
            .header("x-request-id", "0123456789abcdef0123456789abcdef")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let id = request_id(&r);
        let seen: Value = r.json().await.unwrap();
        assert_eq!(seen["headers"]["x-request-id"], id.as_str());
        assert_eq!(seen["headers"]["x-client-request-id"], "0123456789abcdef0123456789abcdef");
        ids.push(id);
    }
    assert!(ids.iter().all(|id| id != "0123456789abcdef0123456789abcdef"), "{ids:?}");
    assert_ne!(ids[0], ids[1]);
    for id in &ids {
        assert_eq!(h.record_for(id).await["reason"], "allowed_by_policy");
    }
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn valid_token_reaches_upstream_with_identity_and_spoofed_headers_are_removed() {
    let h = start().await;
    let token = h.token(json!({}));
    let r = h
        .client
        .get(h.url("/api/orders/../items//7?q=1"))
        .bearer_auth(&token)
        .header("x-ward-principal", "mallory")
        .header("x-ward-roles", "admin")
        .header("x-forwarded-for", "6.6.6.6")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let id = request_id(&r);
    let headers = r.headers().clone();
    assert!(headers["strict-transport-security"].to_str().unwrap().contains("max-age="));
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["referrer-policy"], "no-referrer");
    assert!(headers.get("server").is_none(), "no Server header leaks");
    let seen: Value = r.json().await.unwrap();
    assert_eq!(seen["headers"]["x-ward-principal"], "alice");
    assert_eq!(seen["headers"]["x-ward-issuer"], common::ISSUER);
    assert_eq!(seen["headers"]["x-ward-roles"], "reader");
    assert_eq!(seen["headers"]["x-forwarded-for"], "127.0.0.1", "client XFF is not trusted by default");
    assert_eq!(seen["headers"]["x-forwarded-proto"], "https");
    assert_eq!(seen["headers"]["x-request-id"], id);
    assert!(seen["headers"].get("authorization").is_none(), "the token stays at the edge");
    assert_eq!(seen["path"], "/api/items/7?q=1", "the upstream sees the normalised path that was authorized");
    let record = h.record_for(&id).await;
    assert_eq!(record["decision"], "allow");
    assert_eq!(record["reason"], "allowed_by_policy");
    assert_eq!(record["policy"], "default/api#0");
    assert!(record["policy_digest"].as_str().unwrap().starts_with("sha256:"));
    // Personal data only as an HMAC under the audit key (`ward audit hash alice`).
    let hasher = ward_crypto::KeyedHasher::new(&ward_crypto::SecretBytes::new(vec![7u8; 32])).unwrap();
    assert_eq!(record["principal_hmac"], hasher.tag_hex(b"alice"));
    assert!(!record.to_string().contains("alice"));
    assert_eq!(record["schema"], "ward.audit.v2");
    assert_eq!(record["route"], "api");
    assert_eq!(record["status"], 200);
    assert_eq!(record["client_ip_hmac"].as_str().unwrap().len(), 32);
    assert!(!record.to_string().contains("127.0.0.1"), "client IP is only stored as an HMAC");
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_bad_token_gets_401_and_a_policy_miss_gets_403() {
    let h = start().await;
    let n = now();
    let h64 = |v: Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let payload = Value::Object(h.claims(json!({})));
    let kid = h.signer.kid().to_owned();

    // HS256 keyed with the provider's public key (key confusion).
    let confused = {
        let input = format!("{}.{}", h64(json!({"alg": "HS256", "kid": kid, "typ": "JWT"})), h64(payload.clone()));
        let tag = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, h.signer.public_jwk().to_string().as_bytes()),
            input.as_bytes(),
        );
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
    };
    let bad_sig = {
        let t = h.token(json!({}));
        let (rest, sig) = t.rsplit_once('.').unwrap();
        let mut raw = URL_SAFE_NO_PAD.decode(sig).unwrap();
        raw[0] ^= 0x80;
        format!("{rest}.{}", URL_SAFE_NO_PAD.encode(raw))
    };
    let sig_of_valid = h.token(json!({})).rsplit_once('.').unwrap().1.to_owned();
    let cases: Vec<(&str, Option<String>, &str)> = vec![
        ("no token", None, "token_missing"),
        ("expired", Some(h.token(json!({"exp": n - 3600}))), "token_expired"),
        ("not yet valid", Some(h.token(json!({"nbf": n + 3600}))), "token_not_yet_valid"),
        ("wrong issuer", Some(h.token(json!({"iss": "https://evil.test"}))), "token_bad_issuer"),
        ("wrong audience", Some(h.token(json!({"aud": "payments"}))), "token_bad_audience"),
        ("bad signature", Some(bad_sig), "token_bad_signature"),
        (
            "alg none",
            Some(format!("{}.{}.", h64(json!({"alg": "none"})), h64(payload.clone()))),
            "token_algorithm_not_allowed",
        ),
        ("key confusion", Some(confused), "token_algorithm_not_allowed"),
        (
            "unknown kid",
            Some(format!("{}.{}.{sig_of_valid}", h64(json!({"alg": "ES256", "kid": "k9"})), h64(payload.clone()))),
            "token_unknown_key",
        ),
        ("malformed base64", Some("eyJ!!!.e30.AAAA".into()), "token_malformed"),
        (
            "malformed json",
            Some(format!("{}.{}.AAAA", URL_SAFE_NO_PAD.encode("{\"alg\":"), h64(json!({})))),
            "token_malformed",
        ),
        (
            "crit header",
            Some(format!(
                "{}.{}.{sig_of_valid}",
                h64(json!({"alg": "ES256", "kid": kid, "crit": ["b64"], "b64": false})),
                h64(payload.clone())
            )),
            "token_critical_header",
        ),
    ];
    for (name, token, reason) in cases {
        let r = get(&h, "/api/x", token.as_deref()).await;
        assert_eq!(r.status(), 401, "{name}");
        expect_denied(&h, r, 401, reason).await;
    }
    // Valid token, but no rule allows it: 403.
    let writer_only = h.token(json!({"roles": ["writer"]}));
    expect_denied(&h, get(&h, "/api/x", Some(&writer_only)).await, 403, "no_allow_policy_matched").await;
    let r = h.client.delete(h.url("/api/x")).bearer_auth(h.token(json!({}))).send().await.unwrap();
    expect_denied(&h, r, 403, "no_allow_policy_matched").await;
    expect_denied(&h, get(&h, "/admin", Some(&h.token(json!({})))).await, 403, "no_route").await;
    assert_eq!(h.upstream_hits.load(Ordering::SeqCst), 0, "no denied request reached the upstream");
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_headers_and_bodies_are_refused() {
    let h = start().await;
    let token = h.token(json!({}));
    let r = h.client.get(h.url("/api/x")).bearer_auth(&token).header("x-big", "a".repeat(10_000)).send().await.unwrap();
    expect_denied(&h, r, 431, "headers_too_large").await;
    let r = h.client.post(h.url("/api/x")).bearer_auth(&token).body(vec![b'x'; 4096]).send().await.unwrap();
    expect_denied(&h, r, 413, "body_too_large").await;
    // A streamed body with no length that grows past the limit.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = (0..8).map(|_| Ok(vec![b'y'; 512])).collect();
    let stream = reqwest::Body::wrap_stream(futures_stream(chunks));
    let r = h.client.post(h.url("/api/x")).bearer_auth(&token).body(stream).send().await.unwrap();
    expect_denied(&h, r, 413, "body_too_large").await;
    // Under the limit is fine.
    let r = h.client.post(h.url("/api/x")).bearer_auth(&token).body(vec![b'x'; 512]).send().await.unwrap();
    assert_eq!(r.status(), 200);
    h.finish().await;
}

fn futures_stream(
    items: Vec<Result<Vec<u8>, std::io::Error>>,
) -> impl futures_core::Stream<Item = Result<Vec<u8>, std::io::Error>> + Send + Sync + 'static {
    struct Iter(std::vec::IntoIter<Result<Vec<u8>, std::io::Error>>);
    impl futures_core::Stream for Iter {
        type Item = Result<Vec<u8>, std::io::Error>;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Self::Item>> {
            std::task::Poll::Ready(self.0.next())
        }
    }
    Iter(items.into_iter())
}

async fn tls_connect(h: &Harness) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    tls_connect_alpn(h, &[]).await
}

async fn tls_connect_alpn(h: &Harness, alpn: &[&[u8]]) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(rustls_pki_types::CertificateDer::from_pem_slice(h.ca_pem.as_bytes()).unwrap()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(ward_gateway::crypto_provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut config = config;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(h.addr).await.unwrap();
    connector.connect(rustls_pki_types::ServerName::try_from("localhost").unwrap(), tcp).await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn slowloris_is_disconnected_while_others_are_served() {
    let h = start().await;
    let mut slow = tls_connect(&h).await;
    slow.write_all(b"GET /api/x HTTP/1.1\r\nHost: localhost\r\n").await.unwrap();
    let dripper = async {
        // One header byte every 200 ms: never completes the head (header_timeout is 1 s).
        for b in b"X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".iter() {
            if slow.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            // Meanwhile a well-behaved client is served.
        }
        let mut buf = [0u8; 256];
        tokio::time::timeout(Duration::from_secs(10), slow.read(&mut buf)).await
    };
    let served = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        get(&h, "/api/x", Some(&h.token(json!({})))).await.status()
    };
    let (closed, status) = tokio::join!(dripper, served);
    assert_eq!(status, 200);
    // The server ends the slow connection (possibly after a short error reply)...
    let _ = closed.expect("the slow connection must be closed by the server, not left hanging");
    // ...and then nothing more comes: the stream is at its end.
    let mut buf = [0u8; 16];
    let again = tokio::time::timeout(Duration::from_secs(5), slow.read(&mut buf)).await.unwrap();
    assert!(matches!(again, Ok(0) | Err(_)), "{again:?}");
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_down_is_a_generic_502() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = dead.local_addr().unwrap().port();
    drop(dead);
    let h = start_with(Some(&format!("http://127.0.0.1:{port}")), "").await;
    let r = get(&h, "/api/x", Some(&h.token(json!({})))).await;
    assert_eq!(r.status(), 502);
    let id = request_id(&r);
    let text = r.text().await.unwrap();
    assert!(!text.contains(&port.to_string()) && !text.contains("127.0.0.1"), "{text}");
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap()["error"], "bad_gateway");
    assert_eq!(h.record_for(&id).await["reason"], "upstream_unavailable");
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn public_routes_need_no_token_and_unknown_paths_are_denied() {
    let extra = r#"
[[routes]]
name = "pub"
prefix = "/pub/"
upstream = "app"
public = true
"#;
    let policy = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: pub}
spec:
  selector: {matchLabels: {ward.dev/route: pub}}
  rules: [{to: [{operation: {methods: [GET]}}]}]
"#;
    let h = start_with_policies(extra, &[("pub.yaml", policy)]).await;
    let r = get(&h, "/pub/x", None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(h.record_for(&request_id(&r)).await["reason"], "allowed_by_policy");
    let r = h.client.post(h.url("/pub/x")).send().await.unwrap();
    expect_denied(&h, r, 403, "no_allow_policy_matched").await;
    // A token is optional on a public route, but one that is sent must be valid.
    let r = get(&h, "/pub/x", Some("not.a.token")).await;
    expect_denied(&h, r, 401, "token_malformed").await;
    let r = get(&h, "/pub/%2e%2e/api/x", None).await;
    assert_eq!(r.status(), 401, "dot segments are resolved before routing: this is /api/x");
    let r = get(&h, "/pub/a%2fb", None).await;
    expect_denied(&h, r, 400, "path_rejected").await;
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn old_tls_versions_and_plain_http_are_refused() {
    let h = start().await;
    let port = h.addr.port();
    for flag in ["-tls1", "-tls1_1"] {
        let out = tokio::process::Command::new("openssl")
            .args(["s_client", "-connect", &format!("127.0.0.1:{port}"), flag, "-cipher", "DEFAULT@SECLEVEL=0"])
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .expect("openssl must be installed (`./test` installs it)");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(!out.status.success(), "{flag} handshake must fail: {text}");
        assert!(text.contains("Cipher is (NONE)") && text.contains("alert"), "{flag}: {text}");
    }
    // TLS 1.2 and 1.3 work.
    for flag in ["-tls1_2", "-tls1_3"] {
        let out = tokio::process::Command::new("openssl")
            .args(["s_client", "-connect", &format!("127.0.0.1:{port}"), flag])
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .unwrap();
        assert!(out.status.success(), "{flag}: {}", String::from_utf8_lossy(&out.stderr));
    }
    // Plain HTTP on the TLS port: refused with a 400 that says TLS is required.
    let mut tcp = tokio::net::TcpStream::connect(h.addr).await.unwrap();
    tcp.write_all(b"GET /api/x HTTP/1.1\r\nHost: localhost\r\n\r\n").await.unwrap();
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut reply)).await.unwrap().unwrap();
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
    assert!(reply.contains("tls_required"));
    assert_eq!(h.upstream_hits.load(Ordering::SeqCst), 0);
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn http2_is_served() {
    let h = start_with(None, "").await;
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(h.ca_pem.as_bytes()).unwrap()])
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let r = client.get(h.url("/api/x")).bearer_auth(h.token(json!({}))).send().await.unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status(), 200);
    assert_eq!(h.record_for(&request_id(&r)).await["protocol"], "HTTP/2.0");
    h.finish().await;
}

/// Issue 17, item 7 over HTTP/2: a `host` field that names another host
/// than `:authority` is refused (RFC 9113 §8.3.1), one that agrees is served.
#[tokio::test(flavor = "multi_thread")]
async fn http2_host_must_agree_with_the_authority() {
    let h = start_with(None, "").await;
    let token = h.token(json!({}));
    let send = |host: Option<&'static str>| {
        let (h, token) = (&h, token.clone());
        async move {
            let mut tls = tls_connect_alpn(h, &[b"h2"]).await;
            assert_eq!(tls.get_mut().1.alpn_protocol(), Some(&b"h2"[..]));
            let (mut sender, conn) = hyper::client::conn::http2::handshake(
                hyper_util::rt::TokioExecutor::new(),
                hyper_util::rt::TokioIo::new(tls),
            )
            .await
            .unwrap();
            tokio::spawn(conn);
            let mut request = http::Request::get(format!("https://localhost:{}/api/x", h.addr.port()))
                .header("authorization", format!("Bearer {token}"));
            if let Some(host) = host {
                request = request.header("host", host);
            }
            let request = request.body(http_body_util::Empty::<bytes::Bytes>::new()).unwrap();
            sender.send_request(request).await.unwrap().status().as_u16()
        }
    };
    assert_eq!(send(None).await, 200);
    let port_host: &'static str = Box::leak(format!("localhost:{}", h.addr.port()).into_boxed_str());
    assert_eq!(send(Some(port_host)).await, 200, "the same authority");
    assert_eq!(send(Some("evil.example")).await, 400, "another host");
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn certificate_is_reloaded_without_dropping_connections() {
    let h = start().await;
    let token = h.token(json!({}));
    // A keep-alive connection made before the reload.
    assert_eq!(get(&h, "/api/x", Some(&token)).await.status(), 200);
    // Replace the certificate with one from a new CA.
    let pki = ward_pki::generate_local_pki("rotated CA", &["localhost"]).unwrap();
    std::fs::write(h.dir.path().join("server.crt"), &pki.server.cert_pem).unwrap();
    std::fs::write(h.dir.path().join("server.key"), pki.server.key_pem.as_bytes()).unwrap();
    assert!(h.gateway.reload_tls());
    // The old client's pooled connection still works...
    assert_eq!(get(&h, "/api/x", Some(&token)).await.status(), 200);
    // ...and new connections get the new certificate.
    let fresh = common::client(&pki.ca.cert_pem);
    assert_eq!(fresh.get(h.url("/api/x")).bearer_auth(&token).send().await.unwrap().status(), 200);
    // A broken key file is refused and the current certificate stays.
    std::fs::write(h.dir.path().join("server.key"), "garbage").unwrap();
    assert!(!h.gateway.reload_tls());
    let fresh = common::client(&pki.ca.cert_pem);
    assert_eq!(fresh.get(h.url("/api/x")).bearer_auth(&token).send().await.unwrap().status(), 200);
    h.finish().await;
}

/// Status code of a raw request line (no client-side path cleaning).
async fn raw_status(h: &Harness, path: &str, token: &str) -> u16 {
    let mut s = tls_connect(h).await;
    let head =
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n");
    s.write_all(head.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf).await;
    let text = String::from_utf8_lossy(&buf);
    text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or_else(|| panic!("no status in {text:?}"))
}

/// The status of a raw HTTP/1.1 request `head` (request line and headers,
/// `\r\n`-separated, without the final empty line).
async fn raw_head_status(h: &Harness, head: &str) -> u16 {
    let mut s = tls_connect(h).await;
    s.write_all(format!("{head}\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf).await;
    let text = String::from_utf8_lossy(&buf);
    text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or_else(|| panic!("no status in {text:?}"))
}

/// Issue 17, item 7: one host per request (RFC 9112 §3.2): a missing,
/// doubled or malformed `Host` is refused before any routing.
#[tokio::test(flavor = "multi_thread")]
async fn requests_name_one_well_formed_host() {
    let h = start().await;
    let t = h.token(json!({}));
    let auth = format!("Authorization: Bearer {t}");
    let ok = format!("GET /api/x HTTP/1.1\r\nHost: localhost\r\n{auth}");
    assert_eq!(raw_head_status(&h, &ok).await, 200);
    let absolute = format!("GET https://localhost/api/x HTTP/1.1\r\nHost: other.example\r\n{auth}");
    assert_eq!(raw_head_status(&h, &absolute).await, 200, "absolute-form: the target's authority wins");
    let with_port = format!("GET /api/x HTTP/1.1\r\nHost: [::1]:8443\r\n{auth}");
    assert_eq!(raw_head_status(&h, &with_port).await, 200);
    for bad in [
        format!("GET /api/x HTTP/1.1\r\n{auth}"),
        format!("GET /api/x HTTP/1.1\r\nHost: localhost\r\nHost: evil.example\r\n{auth}"),
        format!("GET /api/x HTTP/1.1\r\nHost: a b\r\n{auth}"),
        format!("GET /api/x HTTP/1.1\r\nHost: <script>\r\n{auth}"),
        format!("GET /api/x HTTP/1.1\r\nHost: x@y\r\n{auth}"),
        format!("GET /api/x HTTP/1.1\r\nHost: \r\n{auth}"),
        format!("GET /api/x HTTP/1.1\r\nHost: {}\r\n{auth}", "a".repeat(256)),
    ] {
        assert_eq!(raw_head_status(&h, &bad).await, 400, "{}", bad.lines().nth(1).unwrap_or_default());
    }
    h.finish().await;
}

/// Issue 17, item 5: a request target over `max_uri_bytes` (8 KiB) is a
/// 414, and the audit log keeps long paths as their start, length and hash:
/// 300 requests with 60 KB paths used to add 18 MB to the log.
#[tokio::test(flavor = "multi_thread")]
async fn long_targets_are_refused_and_long_paths_are_audited_short() {
    let h = start().await;
    let t = h.token(json!({}));
    let long = format!("/api/{}", "a".repeat(9000));
    assert_eq!(raw_status(&h, &long, &t).await, 414);
    let query = format!("/api/x?{}", "q".repeat(9000));
    assert_eq!(raw_status(&h, &query, &t).await, 414, "path and query count together");
    let under = format!("/api/{}", "b".repeat(5000));
    assert_eq!(raw_status(&h, &under, &t).await, 200);
    let records = h.audit().await;
    let refused = records.iter().filter(|r| r["reason"] == "uri_too_long").count();
    assert_eq!(refused, 2, "both refusals are audited");
    let kept =
        records.iter().find(|r| r["reason"] == "allowed_by_policy").unwrap()["path"].as_str().unwrap().to_owned();
    assert!(kept.len() < 1200 && kept.contains(&format!("[{} bytes, sha256:", under.len())), "{kept}");
    h.finish().await;
}

const DENY_ADMIN: &str = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-admin}
spec:
  action: DENY
  rules: [{to: [{operation: {paths: ["/api/admin/*"]}}]}]
"#;

#[tokio::test(flavor = "multi_thread")]
async fn path_tricks_cannot_bypass_a_deny_policy() {
    let h = start_with_policies("", &[("deny.yaml", DENY_ADMIN)]).await;
    let t = h.token(json!({}));
    assert_eq!(raw_status(&h, "/api/x", &t).await, 200);
    for p in [
        "/api/admin/x",
        "/api/admin/../admin/x",
        "//api/admin/x",
        "/api//admin/x",
        "/api/%61dmin/x",
        "/api/%61%64%6d%69%6e/x",
        "/api/admin/./x",
        "/api/./admin/x",
        "/api/x/../admin/x",
        "/api/ADMIN/x",
        "/api/Admin/x",
        "/api/admin/x/.",
    ] {
        assert_eq!(raw_status(&h, p, &t).await, 403, "{p}");
    }
    for p in ["/api/admin%2fx", "/api/admin%5Cx", "/api/admin%00/x", "/../api/admin/x"] {
        assert_eq!(raw_status(&h, p, &t).await, 400, "{p}");
    }
    // Issue 17, item 3: what servlet containers and double decoders resolve
    // to /api/admin/… never reaches the upstream.
    for p in [
        "/api/x/..;/admin/x",
        "/api/;/admin/x",
        "/api/admin;jsessionid=1/x",
        "/api/%2561dmin/x",
        "/api/%c0%ae%c0%ae/admin/x",
        "/api/%ff/x",
    ] {
        assert_eq!(raw_status(&h, p, &t).await, 400, "{p}");
    }
    let records = h.audit().await;
    let denied = records.iter().filter(|r| r["reason"] == "denied_by_policy").count();
    assert_eq!(denied, 12, "every bypass attempt was denied by the policy and audited");
    assert!(records.iter().filter(|r| r["reason"] == "denied_by_policy").all(|r| r["policy"] == "default/no-admin#0"));
    assert_eq!(h.upstream_hits.load(Ordering::SeqCst), 1, "only the allowed request reached the upstream");
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn policy_hot_reload_keeps_the_last_good_set_and_never_fails_requests() {
    let h = start().await;
    let t = h.token(json!({}));
    assert_eq!(get(&h, "/api/x", Some(&t)).await.status(), 200);
    let before = h.gateway.policy_digest();

    // A broken file is refused; the old set keeps enforcing.
    let broken = DENY_ADMIN.replace("/api/admin/*", "/api/a*b");
    common::write_policy(h.dir.path(), "change.yaml", &broken);
    match h.gateway.reload_policies() {
        ward_gateway::ReloadOutcome::Rejected(errors) => {
            assert!(errors[0].starts_with("change.yaml:7: spec.rules[0].to[0].operation.paths[0]"), "{errors:?}");
        }
        other => panic!("a broken file must be refused, got {other:?}"),
    }
    assert_eq!(h.gateway.policy_digest(), before);
    assert_eq!(get(&h, "/api/admin/x", Some(&t)).await.status(), 200, "the old set is still in force");

    // A fixed file takes effect without a restart, while requests keep succeeding.
    let load = async {
        let mut statuses = Vec::new();
        for _ in 0..150 {
            statuses.push(get(&h, "/api/y", Some(&t)).await.status().as_u16());
        }
        statuses
    };
    let change = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        common::write_policy(h.dir.path(), "change.yaml", DENY_ADMIN);
        // The directory watcher (1 s interval) picks it up by itself.
        for _ in 0..100 {
            if h.gateway.policy_digest() != before {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    };
    let (statuses, changed) = tokio::join!(load, change);
    assert!(changed, "the watcher applied the fixed file");
    assert!(statuses.iter().all(|s| *s == 200), "no request failed during the reload: {statuses:?}");
    let r = get(&h, "/api/admin/x", Some(&t)).await;
    expect_denied(&h, r, 403, "denied_by_policy").await;

    let records = h.audit_all().await;
    let changes: Vec<&Value> = records.iter().filter(|r| r["event"] == "policy_change").collect();
    let outcomes: Vec<&str> = changes.iter().map(|r| r["policy_change"]["outcome"].as_str().unwrap()).collect();
    assert!(outcomes.contains(&"rejected") && outcomes.last() == Some(&"applied"), "{outcomes:?}");
    let applied = changes.last().unwrap();
    assert_eq!(applied["policy_change"]["previous_digest"], before.as_str());
    assert_eq!(applied["policy_change"]["new_digest"], h.gateway.policy_digest().as_str());
    h.finish().await;
}

/// An external authorizer: allows only `x-ward-principal: alice`, records what it saw.
async fn start_authorizer() -> (std::net::SocketAddr, std::sync::Arc<std::sync::Mutex<Vec<Value>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let log = log.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let log = log.clone();
                    async move {
                        let h = |n: &str| req.headers().get(n).map(|v| v.to_str().unwrap().to_owned());
                        log.lock().unwrap().push(json!({
                            "method": req.method().as_str(), "path": req.uri().to_string(),
                            "principal": h("x-ward-principal"), "tenant": h("x-tenant"),
                            "authorization": h("authorization"), "request_id": h("x-request-id"),
                        }));
                        let status = if h("x-ward-principal").as_deref() == Some("alice") { 200 } else { 403 };
                        let mut resp =
                            hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from_static(b"{}")));
                        *resp.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                        Ok::<_, std::convert::Infallible>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, seen)
}

#[tokio::test(flavor = "multi_thread")]
async fn custom_policies_ask_the_external_authorizer_and_fail_closed() {
    let (authz, seen) = start_authorizer().await;
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let extra = format!(
        r#"
[[policy.authorizers]]
name = "ext"
url = "http://{authz}/check"
include_headers = ["x-tenant"]
[[policy.authorizers]]
name = "dead"
url = "http://{dead}"
timeout = "500ms"
"#
    );
    let custom = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: payments}
spec:
  action: CUSTOM
  provider: {name: ext}
  rules: [{to: [{operation: {paths: ["/api/pay/*"]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: dead-end}
spec:
  action: CUSTOM
  provider: {name: dead}
  rules: [{to: [{operation: {paths: ["/api/dead/*"]}}]}]
"#;
    let h = start_with_policies(&extra, &[("custom.yaml", custom)]).await;
    let alice = h.token(json!({}));
    let bob = h.token(json!({"sub": "bob"}));
    let r = h.client.get(h.url("/api/pay/1?x=2")).bearer_auth(&alice).header("x-tenant", "t1").send().await.unwrap();
    assert_eq!(r.status(), 200);
    let id = request_id(&r);
    let asked = seen.lock().unwrap().clone();
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0]["path"], "/check/api/pay/1?x=2");
    assert_eq!(asked[0]["principal"], "alice");
    assert_eq!(asked[0]["tenant"], "t1");
    assert_eq!(asked[0]["request_id"], id.as_str());
    assert!(asked[0]["authorization"].is_null(), "the token is not sent unless configured");
    assert_eq!(h.record_for(&id).await["policy"], "default/api#0");

    let r = get(&h, "/api/pay/1", Some(&bob)).await;
    let id = request_id(&r);
    expect_denied(&h, r, 403, "external_authorizer_denied").await;
    assert_eq!(h.record_for(&id).await["policy"], "default/payments#0", "the CUSTOM rule that sent it out");
    assert_eq!(seen.lock().unwrap().len(), 2);
    // Outside the CUSTOM rule the authorizer is not asked.
    assert_eq!(get(&h, "/api/other", Some(&bob)).await.status(), 200);
    assert_eq!(seen.lock().unwrap().len(), 2);
    // DENY/ALLOW still apply after an allowing authorizer: a writer-only token has no ALLOW.
    let writer = h.token(json!({"roles": ["writer"]}));
    expect_denied(&h, get(&h, "/api/pay/1", Some(&writer)).await, 403, "no_allow_policy_matched").await;
    // An authorizer that cannot be reached denies.
    expect_denied(&h, get(&h, "/api/dead/1", Some(&alice)).await, 503, "external_authorizer_unavailable").await;
    h.finish().await;
}

/// The status of raw HTTP/1.1 bytes sent as they are.
async fn raw_bytes_status(h: &Harness, bytes: &[u8]) -> u16 {
    let mut s = tls_connect(h).await;
    s.write_all(bytes).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), s.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf);
    text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or_else(|| panic!("no status in {text:?}"))
}

/// Issue 17, item 9: a malformed chunked body is the client's fault (400,
/// `bad_request_body`), not the upstream's (502); a transfer coding the
/// gateway does not decode is refused before anything is forwarded.
#[tokio::test(flavor = "multi_thread")]
async fn malformed_request_bodies_are_the_clients_fault() {
    let h = start().await;
    let t = h.token(json!({}));
    let head = |te: &str| {
        format!(
            "POST /api/x HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {t}\r\nTransfer-Encoding: {te}\r\nConnection: close\r\n\r\n"
        )
    };
    for te in ["chunked", "Chunked", ", chunked"] {
        let good = format!("{}3\r\nabc\r\n0\r\n\r\n", head(te));
        assert_eq!(raw_bytes_status(&h, good.as_bytes()).await, 200, "{te}");
    }
    for body in [
        "fffffffffffffffff\r\nabc\r\n0\r\n\r\n",
        "-1\r\nabc\r\n0\r\n\r\n",
        "0x1\r\na\r\n0\r\n\r\n",
        "3\r\nabcdef\r\n0\r\n\r\n",
        "zz\r\nabc\r\n0\r\n\r\n",
    ] {
        let status = raw_bytes_status(&h, format!("{}{body}", head("chunked")).as_bytes()).await;
        assert_eq!(status, 400, "{body:?}");
    }
    for te in ["gzip, chunked", "chunked, chunked", "identity", "deflate"] {
        let status = raw_bytes_status(&h, format!("{}3\r\nabc\r\n0\r\n\r\n", head(te)).as_bytes()).await;
        assert_eq!(status, 400, "{te}");
    }
    // The five malformed bodies and `gzip, chunked` reach the pipeline and
    // are recorded as `bad_request_body`; codings hyper itself refuses
    // (`identity`, `deflate`: no final `chunked`) are refused by the codec
    // and recorded as connection-level `bad_request`.
    let all = h.audit_all().await;
    let records: Vec<_> = all.iter().filter(|r| r["event"] == "request").cloned().collect();
    let bad = records.iter().filter(|r| r["reason"] == "bad_request_body" && r["status"] == 400).count();
    let seen: Vec<_> = all.iter().map(|r| (r["event"].clone(), r["reason"].clone(), r["status"].clone())).collect();
    assert!(bad >= 6, "the malformed bodies are audited as the client's: {seen:?}");
    if bad < 9 {
        assert!(
            all.iter().any(|r| r["event"] == "connection" && r["reason"] == "bad_request" && r["status"] == 400),
            "the codec's refusals are audited: {seen:?}"
        );
    }
    assert!(!records.iter().any(|r| r["reason"] == "upstream_unavailable"), "none is blamed on the upstream");
    h.finish().await;
}

/// The front door never cuts a request whose answer is still being made:
/// an upstream slower than `idle_timeout` (but within its own `timeout`)
/// answers, and the request has its record — the upstream's timeout, not
/// the connection's idle period, bounds the wait.
#[tokio::test(flavor = "multi_thread")]
async fn a_slow_upstream_within_its_timeout_is_not_cut_at_idle_timeout() {
    use tokio::io::AsyncReadExt;
    let slow = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let slow_addr = slow.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = slow.accept().await else { return };
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                tokio::time::sleep(std::time::Duration::from_millis(1600)).await;
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
            });
        }
    });
    // idle_timeout 1 s; the upstream's timeout is 2 s.
    let h = common::start_custom(&format!("http://{slow_addr}"), "", &[], "idle_timeout = \"1s\"").await;
    let r = get(&h, "/api/slow", Some(&h.token(json!({})))).await;
    assert_eq!(r.status(), 200, "the answer came after the idle period, within the upstream's timeout");
    let id = request_id(&r);
    assert_eq!(h.record_for(&id).await["status"], 200);
    h.finish().await;
}
