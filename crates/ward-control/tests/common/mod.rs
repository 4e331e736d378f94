//! What the control plane's integration tests share: a control plane on
//! a real TLS listener (port 0) with a reqwest client trusting its CA.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::Value;
use ward_authn::{Algorithm, JwkSet, verify_signature};
use ward_control::{ClientSpec, ControlPlane, ControlSettings, Store};
use ward_issuer::clients::GrantType;

pub struct Running {
    pub base: String,
    pub client: reqwest::Client,
    pub cp: Arc<ControlPlane>,
    /// The CA the listener's certificate chains to.
    pub ca: reqwest::Certificate,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::watch::Sender<bool>,
}

pub async fn start() -> Running {
    start_with(None).await
}

pub async fn start_with(audit: Option<Arc<dyn ward_audit::AuditSink>>) -> Running {
    start_custom(audit, ward_issuer::authorize::CODE_TTL).await
}

/// A control plane whose authorization codes live `code_ttl` seconds.
pub async fn start_custom(audit: Option<Arc<dyn ward_audit::AuditSink>>, code_ttl: u64) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let pki = ward_pki::generate_local_pki("Control test CA", &["localhost"]).unwrap();
    let certs = CertificateDer::pem_slice_iter(pki.server.cert_pem.as_bytes()).collect::<Result<Vec<_>, _>>().unwrap();
    let key = PrivateKeyDer::from_pem_slice(pki.server.key_pem.as_bytes()).unwrap();
    let tls = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let base = format!("https://localhost:{port}");
    let settings = ControlSettings { code_ttl, ..ControlSettings::new(&base) };
    let store = Store::open(&dir.path().join("control.redb")).unwrap();
    let mut cp =
        ControlPlane::open(store, settings).unwrap().with_admin_token("admin-token-0123456789abcdef0123456789");
    if let Some(sink) = audit {
        let hasher = ward_crypto::KeyedHasher::new(&ward_crypto::SecretBytes::new(vec![1u8; 32])).unwrap();
        cp = cp.with_audit(sink, hasher);
    }
    let cp = Arc::new(cp);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(ward_control::serve(listener, Arc::new(tls), ward_control::router(Arc::clone(&cp)), stopped));
    let ca = reqwest::Certificate::from_pem(pki.ca.cert_pem.as_bytes()).unwrap();
    let client = reqwest::Client::builder().tls_certs_only([ca.clone()]).build().unwrap();
    Running { base, client, cp, ca, _dir: dir, _stop: stop }
}

pub fn spec(id: &str) -> ClientSpec {
    ClientSpec {
        id: id.into(),
        grants: vec![GrantType::ClientCredentials],
        scopes: vec!["orders:read".into(), "orders:write".into()],
        audiences: vec!["orders".into()],
        token_ttl: 300,
        redirect_uris: Vec::new(),
        roles: Vec::new(),
        jwks: None,
    }
}

pub async fn post(
    r: &Running,
    path: &str,
    basic: Option<(&str, &str)>,
    form: &[(&str, &str)],
) -> (u16, Value, reqwest::header::HeaderMap) {
    let mut req = r.client.post(format!("{}{path}", r.base)).form(form);
    if let Some((id, secret)) = basic {
        req = req.basic_auth(id, Some(secret));
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, resp.json().await.unwrap_or(Value::Null), headers)
}

pub fn verify_with(jwks: &Value, token: &str) -> Option<Value> {
    let (input, sig) = token.rsplit_once('.')?;
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(input.split('.').next()?).ok()?).ok()?;
    let keys = JwkSet::parse(jwks.to_string().as_bytes()).ok()?.verifying_keys().ok()?;
    let (_, key) = keys.iter().find(|(kid, _)| kid.as_deref() == header["kid"].as_str())?;
    // The key pins its algorithm; the header must name the same one.
    let alg: Algorithm = header["alg"].as_str()?.parse().ok()?;
    (key.algorithm() == alg).then_some(())?;
    verify_signature(alg, key, input.as_bytes(), &URL_SAFE_NO_PAD.decode(sig).ok()?)
        .then(|| serde_json::from_slice(&URL_SAFE_NO_PAD.decode(input.split('.').nth(1)?).ok()?).ok())?
}

/// A real audit log in a temporary directory.
pub struct AuditLog {
    dir: tempfile::TempDir,
    sink: Arc<ward_audit::LogSink>,
}

impl AuditLog {
    pub fn open() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let signer = ward_merkle::NoteSigner::from_seed("ward.test/audit", &[5; 32]).unwrap();
        let (sink, _) = ward_audit::LogSink::open(
            dir.path(),
            signer,
            ward_audit::LogOptions::new("ward.test/audit"),
            ward_audit::SinkOptions::default(),
        )
        .unwrap();
        Self { dir, sink: Arc::new(sink) }
    }

    pub fn sink(&self) -> Arc<dyn ward_audit::AuditSink> {
        Arc::clone(&self.sink) as Arc<dyn ward_audit::AuditSink>
    }

    /// Every record so far, after a flush.
    pub async fn records(&self) -> Vec<Value> {
        ward_audit::AuditSink::flush(&*self.sink).await.unwrap();
        ward_audit::segments::SegmentReader::new(&self.dir.path().join("segments"), 0)
            .unwrap()
            .map(|item| match item {
                ward_audit::segments::ReadItem::Record(r) => serde_json::from_slice(&r.payload).unwrap(),
                ward_audit::segments::ReadItem::Problem(p) => panic!("{p:?}"),
            })
            .collect()
    }
}
