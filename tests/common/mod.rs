//! Test harness: a real gateway on 127.0.0.1:0 with its own PKI, keys,
//! audit log and a real upstream that reports what it received.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use ward_authn::{Algorithm, TokenSigner};

pub mod world;

pub const ISSUER: &str = "https://issuer.test";
pub const AUDIENCE: &str = "orders";

pub struct Harness {
    pub dir: tempfile::TempDir,
    pub gateway: ward_gateway::RunningGateway,
    pub addr: SocketAddr,
    pub signer: TokenSigner,
    pub upstream_hits: Arc<AtomicUsize>,
    pub client: reqwest::Client,
    pub ca_pem: String,
}

pub fn now() -> i64 {
    i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()).unwrap()
}

/// A real upstream: answers 200 with a JSON echo of every header and the body length.
pub async fn start_upstream() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let counter = counter.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let counter = counter.clone();
                    async move {
                        counter.fetch_add(1, Ordering::SeqCst);
                        let headers: HashMap<String, String> = req
                            .headers()
                            .iter()
                            .map(|(k, v)| (k.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
                            .collect();
                        let path = req.uri().to_string();
                        let body = req.into_body().collect().await.map(|b| b.to_bytes().len()).unwrap_or(0);
                        let out = json!({"headers": headers, "path": path, "body_len": body});
                        let mut resp = hyper::Response::new(Full::new(Bytes::from(out.to_string())));
                        resp.headers_mut().insert("server", "upstream/1.2.3".parse().unwrap());
                        Ok::<_, std::convert::Infallible>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, hits)
}

/// The `[gateway]`, `[gateway.tls]` and `[audit]` sections of a `ward.toml`
/// using the files [`write_gateway_files`] writes, listening on `listen`.
pub fn gateway_toml(listen: &str) -> String {
    format!(
        "[gateway]\nlisten = \"{listen}\"\n[gateway.tls]\ncert_file = \"server.crt\"\nkey_file = \"server.key\"\n\
         [audit]\ndir = \"audit\"\nhmac_key_file = \"audit.key\"\ncheckpoint_key_file = \"checkpoint.key\"\n"
    )
}

/// A rustls server configuration (aws-lc-rs) serving `pki`'s server certificate.
pub fn server_tls(pki: &ward_pki::LocalPki) -> Arc<rustls::ServerConfig> {
    use rustls_pki_types::pem::PemObject;
    let certs = rustls_pki_types::CertificateDer::pem_slice_iter(pki.server.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(pki.server.key_pem.as_bytes()).unwrap();
    let tls = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    Arc::new(tls)
}

/// Write a file readable only by its owner (0600), as Ward expects key files.
pub fn write_private(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// The files every gateway test config names: `ca.crt`, `server.crt`,
/// `server.key` from `pki`, an audit HMAC key (`audit.key`, 32 × 0x07) and
/// an audit checkpoint key (`checkpoint.key`); keys 0600.
pub fn write_gateway_files(dir: &Path, pki: &ward_pki::LocalPki) {
    std::fs::write(dir.join("ca.crt"), &pki.ca.cert_pem).unwrap();
    std::fs::write(dir.join("server.crt"), &pki.server.cert_pem).unwrap();
    write_private(&dir.join("server.key"), pki.server.key_pem.as_bytes());
    write_private(&dir.join("audit.key"), &[7u8; 32]);
    write_private(
        &dir.join("checkpoint.key"),
        ward_merkle::NoteSigner::generate("ward.test/audit").unwrap().1.as_bytes(),
    );
}

/// Write keys and a config into a fresh directory; `extra` is appended to the config.
pub fn write_config(dir: &Path, upstream: &str, extra: &str, cache: bool) -> (PathBuf, TokenSigner, String) {
    let cache = if cache { "cache_entries = 10000" } else { "" };
    let pki = ward_pki::generate_local_pki("test CA", &["localhost", "127.0.0.1"]).unwrap();
    write_gateway_files(dir, &pki);
    let signer =
        TokenSigner::from_pkcs8(Algorithm::Es256, &TokenSigner::generate_pkcs8(Algorithm::Es256).unwrap()).unwrap();
    std::fs::write(dir.join("jwks.json"), signer.public_jwk_set().to_string()).unwrap();
    let config = format!(
        r#"
[gateway]
listen = "127.0.0.1:0"
[gateway.tls]
cert_file = "server.crt"
key_file = "server.key"
[gateway.limits]
max_header_bytes = 8192
max_body_bytes = 1024
header_timeout = "1s"
[audit]
dir = "audit"
hmac_key_file = "audit.key"
checkpoint_key_file = "checkpoint.key"
[authn]
forward_claims = {{ roles = "x-ward-roles" }}
{cache}
[[providers]]
name = "test"
issuer = "{ISSUER}"
audiences = ["{AUDIENCE}"]
jwks_file = "jwks.json"
[[upstreams]]
name = "app"
url = "{upstream}"
timeout = "2s"
connect_timeout = "1s"
[[routes]]
name = "api"
prefix = "/api/"
upstream = "app"
{extra}
"#
    );
    write_policy(dir, "base.yaml", BASE_POLICY);
    let path = dir.join("ward.toml");
    std::fs::write(&path, config).unwrap();
    (path, signer, pki.ca.cert_pem)
}

/// The harness's policy: GET and POST on the `api` route for role `reader`.
pub const BASE_POLICY: &str = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: api}
spec:
  selector: {matchLabels: {ward.dev/route: api}}
  rules:
  - to: [{operation: {methods: [GET, POST]}}]
    when: [{key: "request.auth.claims[roles]", values: [reader]}]
"#;

/// Write a policy file into `dir/policies`.
pub fn write_policy(dir: &Path, name: &str, text: &str) {
    std::fs::create_dir_all(dir.join("policies")).unwrap();
    std::fs::write(dir.join("policies").join(name), text).unwrap();
}

pub fn client(ca_pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap()])
        .build()
        .unwrap()
}

pub async fn start_with(upstream: Option<&str>, extra: &str) -> Harness {
    start_full(upstream, extra, false, &[], "").await
}

/// A gateway in front of `upstream` with extra config, extra policy files
/// and lines added to `[gateway.limits]`.
pub async fn start_custom(upstream: &str, extra: &str, policies: &[(&str, &str)], limits: &str) -> Harness {
    start_full(Some(upstream), extra, false, policies, limits).await
}

/// A gateway with extra config and extra policy files.
pub async fn start_with_policies(extra: &str, policies: &[(&str, &str)]) -> Harness {
    start_full(None, extra, false, policies, "").await
}

/// A gateway with the verified-token cache on.
pub async fn start_cached() -> Harness {
    start_full(None, "", true, &[], "").await
}

async fn start_full(
    upstream: Option<&str>,
    extra: &str,
    cache: bool,
    policies: &[(&str, &str)],
    limits: &str,
) -> Harness {
    let (up_addr, hits) = start_upstream().await;
    let upstream = upstream.map_or_else(|| format!("http://{up_addr}"), str::to_owned);
    let dir = tempfile::tempdir().unwrap();
    let (path, signer, ca_pem) = write_config(dir.path(), &upstream, extra, cache);
    if !limits.is_empty() {
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replace("[gateway.limits]\n", &format!("[gateway.limits]\n{limits}\n"))).unwrap();
    }
    for (name, text) in policies {
        write_policy(dir.path(), name, text);
    }
    let config = ward_config::load(&path).unwrap();
    let gateway = ward_gateway::Gateway::bind(&config).await.unwrap();
    let addr = gateway.local_addr().unwrap();
    let gateway = gateway.spawn().unwrap();
    Harness { client: client(&ca_pem), dir, gateway, addr, signer, upstream_hits: hits, ca_pem }
}

pub async fn start() -> Harness {
    start_with(None, "").await
}

impl Harness {
    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.addr.port())
    }

    pub fn claims(&self, extra: Value) -> ward_core::Claims {
        let now = now();
        let mut base =
            json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "exp": now + 300, "iat": now, "roles": ["reader"]});
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                base.as_object_mut().unwrap().remove(k);
            } else {
                base[k] = v.clone();
            }
        }
        base.as_object().unwrap().clone()
    }

    pub fn token(&self, extra: Value) -> String {
        self.signer.sign(&self.claims(extra)).unwrap()
    }

    /// Every request audit record so far, once flushed, read back from the
    /// log's segments.
    pub async fn audit(&self) -> Vec<Value> {
        self.gateway.flush_audit().await.unwrap();
        read_log(&self.dir.path().join("audit")).into_iter().filter(|r| r["event"] == "request").collect()
    }

    /// Stop the gateway and check its audit log: it verifies end to end
    /// (every record hashed, every signed checkpoint matched), ends with the
    /// shutdown event, and its final checkpoint covers everything.
    pub async fn finish(self) {
        self.gateway.shutdown().await;
        let dir = self.dir.path().join("audit");
        let vkey = std::fs::read_to_string(dir.join("checkpoint.vkey")).unwrap();
        let verifier = ward_merkle::NoteVerifier::new(vkey.trim()).unwrap();
        let report = ward_audit::verify::verify(&dir, &verifier, None, |_, _| {}).unwrap();
        assert!(report.ok(), "{:?}", report.problems);
        let records = read_log(&dir);
        assert_eq!(report.records, records.len() as u64);
        assert_eq!(records.last().unwrap()["event"], "shutdown");
        let latest = std::fs::read_to_string(dir.join("checkpoint")).unwrap();
        assert!(latest.lines().nth(1) == Some(records.len().to_string().as_str()), "final checkpoint: {latest}");
    }

    /// Every record of any kind.
    pub async fn audit_all(&self) -> Vec<Value> {
        self.gateway.flush_audit().await.unwrap();
        read_log(&self.dir.path().join("audit"))
    }

    /// The one audit record for `request_id` (fails if there are zero or several).
    pub async fn record_for(&self, request_id: &str) -> Value {
        let records: Vec<Value> = self.audit().await.into_iter().filter(|r| r["request_id"] == request_id).collect();
        assert_eq!(records.len(), 1, "exactly one audit record for {request_id}: {records:?}");
        records.into_iter().next().unwrap()
    }
}

/// Every record in the audit log at `dir`, in order (fails on any damage).
pub fn read_log(dir: &Path) -> Vec<Value> {
    ward_audit::segments::SegmentReader::new(&dir.join("segments"), 0)
        .unwrap()
        .map(|item| match item {
            ward_audit::segments::ReadItem::Record(r) => serde_json::from_slice(&r.payload).unwrap(),
            ward_audit::segments::ReadItem::Problem(p) => panic!("damaged audit log: {p:?}"),
        })
        .collect()
}

/// A directory `ward control --config ward.toml` runs in: the gateway
/// files of a fresh local PKI (`ca.crt` trusted by clients), an admin token,
/// and a `ward.toml` whose `[control]` listens on a free port (returned) of
/// `localhost`, with the CA of `trust_domain` in `ca/` and `extra` after it.
pub fn write_control_dir(d: &Path, trust_domain: &str, extra: &str) -> u16 {
    let pki = ward_pki::generate_local_pki("control test", &["localhost", "127.0.0.1"]).unwrap();
    write_gateway_files(d, &pki);
    write_private(&d.join("admin.token"), b"control-test-admin-token-0123456789abcdef0123456\n");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let head = gateway_toml("127.0.0.1:0");
    std::fs::write(
        d.join("ward.toml"),
        format!(
            "{head}[control]\nlisten = \"127.0.0.1:{port}\"\nissuer = \"https://localhost:{port}\"\n\
             admin_token_file = \"admin.token\"\ntrust_domain = \"{trust_domain}\"\nca_dir = \"ca\"\n{extra}"
        ),
    )
    .unwrap();
    port
}

/// `ward control --config ward.toml` started in `dir`, killed when dropped.
pub struct ControlProcess(std::process::Child);

impl ControlProcess {
    /// Start it and wait until `port` (its configured listener) accepts.
    pub fn start(dir: &Path, port: u16) -> Self {
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_ward"))
            .args(["control", "--config", "ward.toml"])
            .current_dir(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Self(child)
    }
}

impl Drop for ControlProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Run the `ward` binary in `dir`.
pub fn ward_cli(dir: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_ward")).args(args).current_dir(dir).output().unwrap()
}

/// `ward up` in `dir` on ports the OS picks (`--listen` and
/// `--control-listen` 127.0.0.1:0), with what it printed up to "Stop with
/// Ctrl-C". Killed when dropped unless stopped.
pub struct WardUp {
    child: Option<std::process::Child>,
    pub printed: Vec<String>,
}

impl WardUp {
    pub fn start(dir: &Path) -> Self {
        Self::start_on(dir, "127.0.0.1:0")
    }

    /// As [`start`](Self::start), with the control plane on `control` (a
    /// restart on the port it had before).
    pub fn start_on(dir: &Path, control: &str) -> Self {
        use std::io::BufRead;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ward"))
            .args(["up", "--data-dir", "ward-data", "--listen", "127.0.0.1:0", "--control-listen", control])
            .current_dir(dir)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = Vec::new();
            for line in std::io::BufReader::new(stdout).lines() {
                let line = line.unwrap();
                let done = line.starts_with("Stop with Ctrl-C");
                lines.push(line);
                if done {
                    let _ = tx.send(lines);
                    return;
                }
            }
        });
        let printed = rx.recv_timeout(std::time::Duration::from_secs(60)).expect("ward up printed its instructions");
        Self { child: Some(child), printed }
    }

    /// The printed line (trimmed) that starts with `prefix`.
    pub fn line(&self, prefix: &str) -> String {
        self.printed.iter().map(|l| l.trim()).find(|l| l.starts_with(prefix)).unwrap().to_owned()
    }

    /// The printed line (trimmed) that contains `needle`.
    pub fn line_with(&self, needle: &str) -> String {
        self.printed.iter().map(|l| l.trim()).find(|l| l.contains(needle)).unwrap().to_owned()
    }

    /// The control plane's URL, from the printed `control` line.
    pub fn control_url(&self) -> String {
        let line = self.line("control ");
        let url = line.split_whitespace().nth(1).unwrap();
        url.trim_end_matches("/.well-known/openid-configuration").to_owned()
    }

    /// SIGTERM, and check that it exits cleanly.
    pub fn stop(mut self) {
        let mut child = self.child.take().unwrap();
        let status = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
        assert!(status.success());
        let exit = child.wait().unwrap();
        assert!(exit.success(), "ward up exits cleanly on SIGTERM: {exit:?}");
    }
}

impl Drop for WardUp {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The Python the interop tests drive third-party clients with: the one in
/// `WARD_TEST_PYTHON`, else the project's `target/venv` that `./test` makes
/// from `tests/requirements.txt`. Fails, saying how to get it, when it is
/// missing or lacks `modules`; never falls back to whatever `python3` the
/// machine has, so a run always uses the pinned clients.
pub fn python(modules: &[&str]) -> std::process::Command {
    let bin = std::env::var_os("WARD_TEST_PYTHON")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/venv/bin/python"), PathBuf::from);
    let import = format!("import {}", modules.join(", "));
    let ready = std::process::Command::new(&bin).args(["-c", &import]).status().is_ok_and(|s| s.success());
    assert!(
        ready,
        "{} cannot `{import}`: run `./test` once (it makes target/venv from tests/requirements.txt), \
         or point WARD_TEST_PYTHON at a Python that has them",
        bin.display()
    );
    std::process::Command::new(bin)
}
