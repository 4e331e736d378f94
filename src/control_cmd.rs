//! The control plane in the binary: `ward control`, its part of `ward up`,
//! and the admin CLI (`ward client …`, `ward keys rotate`), which talks to
//! the running control plane's admin API (the store is locked by it).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use serde_json::{Value, json};
use ward_config::Config;
use ward_control::{ControlPlane, ControlSettings, Store};

/// The name of the token provider through which the gateway of `ward up`
/// trusts the control plane of the same process.
pub const EMBEDDED_PROVIDER: &str = "ward-control";

/// The control plane's listener, bound before anything else starts so that
/// its issuer (`https://<bound address>` unless configured) is known.
#[derive(Debug)]
pub struct BoundControl {
    listener: tokio::net::TcpListener,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its issuer URL.
    pub issuer: String,
}

/// Bind the control plane's listener (`listen` overrides the configured address).
///
/// # Errors
/// A message naming the busy or unusable address.
pub async fn bind(config: &Config, listen: Option<SocketAddr>) -> Result<BoundControl, String> {
    let c = config.control.as_ref().ok_or("no [control] section in the configuration")?;
    let at = listen.unwrap_or(c.listen);
    let listener =
        tokio::net::TcpListener::bind(at).await.map_err(|e| format!("cannot listen on {at} (control plane): {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let issuer = c.issuer.clone().unwrap_or_else(|| format!("https://{addr}"));
    Ok(BoundControl { listener, addr, issuer })
}

/// The JWK set of the control plane in this process, for the gateway of
/// `ward up`: read from its key ring (no HTTP), ready once it has started.
#[derive(Debug, Default)]
pub struct LocalJwks(std::sync::OnceLock<Arc<ControlPlane>>);

impl LocalJwks {
    /// The control plane has started: serve its keys from now on.
    pub fn ready(&self, cp: Arc<ControlPlane>) {
        let _ = self.0.set(cp);
    }
}

impl ward_authn::JwksSource for LocalJwks {
    fn fetch(&self) -> std::pin::Pin<Box<dyn Future<Output = Result<Vec<u8>, ward_authn::SourceError>> + Send + '_>> {
        Box::pin(async move {
            let fail = |why: &str| ward_authn::SourceError(why.to_owned());
            let cp = self.0.get().ok_or_else(|| fail("the control plane has not started"))?;
            let set = cp.jwks(ward_control::now()).ok_or_else(|| fail("the control plane's key ring is unreadable"))?;
            serde_json::to_vec(&set).map_err(|e| fail(&e.to_string()))
        })
    }
}

/// The token provider through which the gateway of `ward up` trusts `bound`
/// (its issuer, `[control] audiences`, its longest token lifetime as the
/// cap), with keys from `jwks` — or `None` when a configured provider
/// already names that issuer. Either way every provider of this control
/// plane's issuer accepts only its access tokens (`require_at_jwt`): its ID
/// tokens are signed by the same issuer and must never pass for one.
pub fn embedded_provider(
    config: &mut Config,
    bound: &BoundControl,
    jwks: Arc<LocalJwks>,
) -> Option<ward_gateway::EmbeddedProvider> {
    let c = config.control.as_ref()?;
    let audiences = c.audiences.clone();
    let max_lifetime = c.max_ttl;
    let mut configured = false;
    for p in config.providers.iter_mut().filter(|p| p.settings.issuer == bound.issuer) {
        if !p.settings.require_at_jwt {
            tracing::info!(provider = %p.settings.name, "provider of this control plane's issuer: require_at_jwt on");
        }
        p.settings.require_at_jwt = true;
        configured = true;
    }
    if configured {
        return None;
    }
    Some(ward_gateway::EmbeddedProvider {
        settings: ward_authn::ProviderSettings {
            name: EMBEDDED_PROVIDER.to_owned(),
            issuer: bound.issuer.clone(),
            audiences,
            leeway: std::time::Duration::from_secs(60),
            max_lifetime,
            max_token_bytes: 8192,
            require_at_jwt: true,
            id_tokens: false,
        },
        source: jwks,
        refresh_interval: std::time::Duration::from_secs(30),
    })
}

/// A running control plane.
pub struct RunningControl {
    /// The control plane itself.
    pub cp: Arc<ControlPlane>,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its issuer URL.
    pub issuer: String,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    /// The detector this control plane runs itself (alone, not in `ward up`).
    own_detector: Option<Arc<ward_detect::Detector>>,
}

impl RunningControl {
    /// Stop accepting and wait for the accept loop to end.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        if let Some(d) = self.own_detector {
            d.stop();
        }
    }
}

fn read_secret(path: &Path) -> Result<zeroize::Zeroizing<String>, String> {
    use std::os::unix::fs::PermissionsExt;
    let text = zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?);
    if std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o077 != 0) {
        return Err(format!("{}: readable by group or others; chmod 600 it", path.display()));
    }
    if text.trim().len() < 32 {
        return Err(format!("{}: the admin token must be at least 32 characters", path.display()));
    }
    Ok(text)
}

/// `ward ca init`: a new CA for `td` in `dir` (refuses to overwrite one).
///
/// # Errors
/// A message naming the problem.
pub fn ca_init(dir: &Path, td: &str) -> Result<String, String> {
    use ward_control::ca::files;
    ward_control::ca::CaDir::new(dir, td).init().map_err(|e| e.to_string())?;
    Ok(format!(
        "CA for spiffe://{td} in {dir}\n  {root} and {bundle}: give these to verifiers\n  {ikey}: the control plane signs with it (0600)\n  {rkey}: only needed to make intermediates (`ward ca rotate`); keep it offline otherwise\nSet [control] trust_domain = \"{td}\" (and ca_dir) to issue SVIDs.\n",
        dir = dir.display(),
        root = files::ROOT_CERT,
        bundle = files::BUNDLE,
        ikey = files::INTERMEDIATE_KEY,
        rkey = files::ROOT_KEY,
    ))
}

/// `ward ca rotate`: a new intermediate from the root, then the running
/// control plane is told to load it.
///
/// # Errors
/// A message naming the problem.
pub async fn ca_rotate(target: Option<&AdminTarget>, dir: &Path, td: &str) -> Result<String, String> {
    ward_control::ca::CaDir::new(dir, td).rotate().map_err(|e| e.to_string())?;
    let mut said =
        format!("new intermediate in {} (SVIDs of the old one stay valid until they expire)\n", dir.display());
    match target {
        Some(t) => match t.call(reqwest::Method::POST, "/admin/ca/reload", None).await? {
            (200, v) => said.push_str(&format!(
                "the control plane now signs with it ({})\n",
                v["intermediate"].as_str().unwrap_or("?")
            )),
            (s, v) => return Err(failed(s, &v)),
        },
        None => said.push_str("no [control] section: start the control plane to use it\n"),
    }
    Ok(said)
}

/// Seconds since the Unix epoch.
#[must_use]
pub fn unix_now() -> u64 {
    ward_control::now()
}

/// `ward cert join-token`: the token alone on a line.
///
/// # Errors
/// A message naming the problem.
pub async fn join_token(target: &AdminTarget, spiffe_id: &str, ttl: u64) -> Result<String, String> {
    let body = json!({"spiffe_id": spiffe_id, "ttl": ttl});
    match target.call(reqwest::Method::POST, "/admin/join-tokens", Some(body)).await? {
        (201, v) => v["join_token"].as_str().map(|t| format!("{t}\n")).ok_or_else(|| "no token in the answer".into()),
        (s, v) => Err(failed(s, &v)),
    }
}

/// `ward cert revoke`.
///
/// # Errors
/// A message naming the problem.
pub async fn cert_revoke(
    target: &AdminTarget,
    serial: Option<&str>,
    spiffe_id: Option<&str>,
    until: Option<u64>,
) -> Result<String, String> {
    let body = json!({"serial": serial, "spiffe_id": spiffe_id, "until": until});
    match target.call(reqwest::Method::POST, "/admin/certs/revoke", Some(body)).await? {
        (200, v) => Ok(format!("denied {} until {} (unix time)\n", v["denied"].as_str().unwrap_or("?"), v["until"])),
        (s, v) => Err(failed(s, &v)),
    }
}

/// `ward cert issue`: an X.509-SVID from the control plane's CA, written to
/// `out.crt` (chain) and `out.key` (0600) — or, with a CSR, the chain only.
///
/// # Errors
/// A message naming the problem.
pub async fn cert_issue(
    target: &AdminTarget,
    spiffe_id: &str,
    ttl: u64,
    csr: Option<&str>,
    out: &Path,
) -> Result<String, String> {
    let body = json!({"spiffe_id": spiffe_id, "ttl": ttl, "csr": csr});
    let v = match target.call(reqwest::Method::POST, "/admin/certs", Some(body)).await? {
        (201, v) => v,
        (s, v) => return Err(failed(s, &v)),
    };
    // Replaced atomically, so a key file never keeps an older, wider mode.
    let write = |path: &Path, text: &str, private: bool| -> Result<(), String> {
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let name =
            path.file_name().and_then(|n| n.to_str()).ok_or_else(|| format!("{}: not a file", path.display()))?;
        ward_control::ca::write_atomic(dir, name, text, private)
    };
    let cert = out.with_extension("crt");
    write(&cert, v["certificate_chain"].as_str().ok_or("no certificate in the answer")?, false)?;
    let mut said = format!(
        "{}: {} (serial {}, until {})\n",
        cert.display(),
        spiffe_id,
        v["serial"].as_str().unwrap_or("?"),
        v["not_after"]
    );
    if let Some(key) = v["private_key"].as_str() {
        let key_path = out.with_extension("key");
        write(&key_path, key, true)?;
        said.push_str(&format!("{}: its private key (0600)\n", key_path.display()));
    }
    Ok(said)
}

/// Start the control plane `config` describes on its `bound` listener, on
/// the current runtime, serving the gateway's certificate.
///
/// # Errors
/// A message naming what is missing or unusable.
pub async fn start(
    config: &Config,
    bound: BoundControl,
    audit: Arc<dyn ward_audit::AuditSink>,
    revocations: Option<Arc<dyn ward_core::RevocationList>>,
    detector: Option<Arc<ward_detect::Detector>>,
) -> Result<RunningControl, String> {
    let c = config.control.as_ref().ok_or("no [control] section in the configuration")?;
    // With a CA, clients may present an SVID of the trust domain (optional:
    // token endpoints do not need one; `/svid/renew` does).
    let mut tls_settings = config.gateway.tls.clone();
    if let Some(td) = &c.trust_domain {
        tls_settings.mtls = Some(ward_config::MtlsSettings {
            mode: ward_config::MtlsMode::Permissive,
            bundle_file: c.ca_dir.join(ward_control::ca::files::BUNDLE),
            trust_domain: td.clone(),
        });
    }
    // Alone, the control plane still refuses denied certificates at the
    // handshake and on resumption: its own list, fed by its revocations.
    let revocations: Arc<dyn ward_core::RevocationList> =
        revocations.unwrap_or_else(|| Arc::new(ward_core::LocalRevocations::new()));
    let tls = ward_gateway::ServerTls::with_denylist(&tls_settings, Some(Arc::clone(&revocations)))
        .map_err(|e| e.to_string())?;
    let BoundControl { listener, addr, issuer } = bound;
    let token = read_secret(&c.admin_token_file)?;
    let settings = ControlSettings {
        issuer: issuer.clone(),
        max_ttl: c.max_ttl.as_secs(),
        key_alg: c.key_alg,
        publish_lead: c.publish_lead.as_secs(),
        code_ttl: c.code_ttl.as_secs(),
        refresh_ttl: c.refresh_ttl.as_secs(),
    };
    let store = Store::open(&c.store).map_err(|e| e.to_string())?;
    let hmac_key = std::fs::read(&config.audit.hmac_key_file)
        .map_err(|e| format!("{}: {e}", config.audit.hmac_key_file.display()))?;
    let hasher = ward_crypto::KeyedHasher::new(&ward_crypto::SecretBytes::new(hmac_key))
        .map_err(|e| format!("{}: {e}", config.audit.hmac_key_file.display()))?;
    // In `ward up` the gateway's detector is shared; alone, the control
    // plane runs its own (and its sweeper) when `[detect]` is configured.
    let own_detector = match (&detector, &config.detect) {
        (None, Some(d)) => {
            let made = ward_detect::Detector::open(d.settings.clone(), Some((Arc::clone(&audit), hasher.clone())))
                .map_err(|e| e.to_string())?;
            made.spawn_sweeper().map_err(|e| format!("detection: {e}"))?;
            Some(made)
        }
        _ => None,
    };
    let detector = detector.or_else(|| own_detector.clone());
    let mut cp = ControlPlane::open(store, settings)
        .map_err(|e| e.to_string())?
        .with_limits(c.limits.clone())
        .with_admin_token(&token)
        .with_audit(audit, hasher);
    if let Some(d) = &detector {
        cp = cp.with_detector(Arc::clone(d));
    }
    cp = cp.with_revocations(revocations);
    if let Some(td) = &c.trust_domain {
        cp = cp.with_ca(ward_control::ca::CaDir::new(&c.ca_dir, td)).map_err(|e| e.to_string())?;
        let rules = c.registry.iter().map(|r| ward_control::registry::Rule {
            name: r.name.clone(),
            writers: r.writers.clone(),
            readers: r.readers.clone(),
        });
        cp = cp.with_registry(rules.collect());
        tracing::info!(trust_domain = %td, "CA loaded: the admin API issues X.509-SVIDs");
    }
    if let Some(w) = &config.witness {
        cp = cp.with_witness(Arc::new(open_witness(w)?));
    }
    let cp = Arc::new(cp);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(ward_control::maintain(Arc::clone(&cp), stopped.clone()));
    let (served, limits) = (Arc::clone(&cp), c.limits.clone());
    let task = tokio::spawn(async move {
        ward_control::serve_with(listener, Arc::clone(&tls.config), tls.recheck.clone(), &served, &limits, stopped)
            .await;
    });
    Ok(RunningControl { cp, addr, issuer, stop, task, own_detector })
}

/// The witness `[witness]` describes: its cosigning key (0600), the logs it
/// serves and their keys, and its state.
fn open_witness(w: &ward_config::WitnessSettings) -> Result<ward_audit::witness::Witness, String> {
    use std::os::unix::fs::PermissionsExt;
    let shown = w.key_file.display();
    let meta = std::fs::metadata(&w.key_file).map_err(|e| format!("{shown}: {e}"))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(format!("{shown}: the witness key must not be readable by others (chmod 600)"));
    }
    let text = zeroize::Zeroizing::new(std::fs::read_to_string(&w.key_file).map_err(|e| format!("{shown}: {e}"))?);
    let cosigner = ward_merkle::Cosigner::from_private_key(text.trim()).map_err(|e| format!("{shown}: {e}"))?;
    let mut logs = std::collections::HashMap::new();
    for (origin, keys) in &w.logs {
        let keys = keys
            .iter()
            .map(|k| ward_merkle::NoteVerifier::new(k).map_err(|e| format!("[witness] logs `{origin}`: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        logs.insert(origin.clone(), keys);
    }
    if let Some(dir) = w.state_file.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let witness = ward_audit::witness::Witness::open(&w.state_file, cosigner, logs).map_err(|e| e.to_string())?;
    tracing::info!(key = %witness.verifier_key(), "witness: cosigning at /witness/add-checkpoint");
    Ok(witness)
}

/// How the admin CLI reaches the control plane.
pub struct AdminTarget {
    base: String,
    token: zeroize::Zeroizing<String>,
    client: reqwest::Client,
}

impl AdminTarget {
    /// From a configuration (its `[control]` section) and the CA that
    /// signed the control plane's certificate; at `url` instead of the
    /// configured address when given (a control plane started elsewhere).
    ///
    /// # Errors
    /// A message naming the missing piece.
    pub fn at(config: &Config, ca_file: &Path, url: Option<&str>) -> Result<Self, String> {
        let c = config.control.as_ref().ok_or("no [control] section in the configuration")?;
        let ca = std::fs::read(ca_file).map_err(|e| format!("{}: {e}", ca_file.display()))?;
        let ca = reqwest::Certificate::from_pem(&ca).map_err(|e| format!("{}: {e}", ca_file.display()))?;
        let client = reqwest::Client::builder().tls_certs_only([ca]).build().map_err(|e| e.to_string())?;
        let base = match url {
            Some(u) if u.starts_with("https://") => u.trim_end_matches('/').to_owned(),
            Some(u) => return Err(format!("--control {u}: an https:// URL")),
            None => c.issuer.clone().unwrap_or_else(|| format!("https://{}", c.listen)),
        };
        Ok(Self { base, token: read_secret(&c.admin_token_file)?, client })
    }

    pub(crate) async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value), String> {
        let mut req = self.client.request(method, format!("{}{path}", self.base)).bearer_auth(self.token.trim());
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.map_err(|e| format!("{}: {e} (is the control plane running?)", self.base))?;
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }
}

pub(crate) fn failed(status: u16, body: &Value) -> String {
    let detail = body["message"].as_str().or(body["error"].as_str()).unwrap_or("");
    format!("the control plane answered {status} {detail}")
}

/// What `ward client create` asks for.
pub struct NewClient<'a> {
    /// Client id.
    pub id: &'a str,
    /// Grants.
    pub grants: &'a [String],
    /// Scopes.
    pub scopes: &'a [String],
    /// Audiences.
    pub audiences: &'a [String],
    /// Token lifetime (seconds).
    pub ttl: u64,
    /// Public JWK set for private_key_jwt.
    pub jwks: Option<Value>,
    /// Redirect URIs (authorization_code).
    pub redirect_uris: &'a [String],
    /// Roles of its own tokens.
    pub roles: &'a [String],
    /// A public client (no secret; authorization_code with PKCE).
    pub public: bool,
}

/// `ward client create`.
pub async fn client_create(target: &AdminTarget, c: &NewClient<'_>) -> Result<String, String> {
    let body = json!({"client_id": c.id, "grants": c.grants, "scopes": c.scopes, "audiences": c.audiences,
                      "token_ttl": c.ttl, "jwks": c.jwks, "redirect_uris": c.redirect_uris, "roles": c.roles,
                      "public": c.public});
    match target.call(reqwest::Method::POST, "/admin/clients", Some(body)).await? {
        (201, v) => Ok(match v["client_secret"].as_str() {
            Some(secret) => format!(
                "client_id={}\nclient_secret={secret}\n(the secret is shown once; Ward keeps only its hash)\n",
                v["client_id"].as_str().unwrap_or(c.id)
            ),
            None if c.public => {
                format!("client_id={}\n(a public client: no secret; authorization code with PKCE)\n", c.id)
            }
            None => format!("client_id={}\n(authenticates with private_key_jwt and its registered keys)\n", c.id),
        }),
        (s, v) => Err(failed(s, &v)),
    }
}

/// `ward client list`.
pub async fn client_list(target: &AdminTarget) -> Result<String, String> {
    match target.call(reqwest::Method::GET, "/admin/clients", None).await? {
        (200, Value::Array(clients)) => Ok(clients.iter().map(|c| format!("{c}\n")).collect()),
        (s, v) => Err(failed(s, &v)),
    }
}

/// `ward client delete`.
pub async fn client_delete(target: &AdminTarget, id: &str) -> Result<String, String> {
    match target.call(reqwest::Method::DELETE, &format!("/admin/clients/{id}"), None).await? {
        (204, _) => Ok(format!("deleted {id}\n")),
        (s, v) => Err(failed(s, &v)),
    }
}

/// `ward keys rotate`.
pub async fn keys_rotate(target: &AdminTarget) -> Result<String, String> {
    match target.call(reqwest::Method::POST, "/admin/keys/rotate", None).await? {
        (200, v) => Ok(format!(
            "new signing key {} is published now and signs from {} (unix time)\n",
            v["kid"].as_str().unwrap_or("?"),
            v["signs_from"]
        )),
        (s, v) => Err(failed(s, &v)),
    }
}

/// `ward token issue`: the token alone on a line (for `TOKEN=$(…)`).
pub async fn token_issue(
    target: &AdminTarget,
    client: &str,
    scope: Option<&str>,
    audiences: &[String],
) -> Result<String, String> {
    let body = json!({"client_id": client, "scope": scope, "audiences": audiences});
    match target.call(reqwest::Method::POST, "/admin/tokens", Some(body)).await? {
        (200, v) => v["access_token"].as_str().map(|t| format!("{t}\n")).ok_or_else(|| "no token in the answer".into()),
        (s, v) => Err(failed(s, &v)),
    }
}

/// `ward token introspect`.
pub async fn token_introspect(target: &AdminTarget, token: &str) -> Result<String, String> {
    match target.call(reqwest::Method::POST, "/admin/tokens/introspect", Some(json!({"token": token}))).await? {
        (200, v) => Ok(format!("{}\n", serde_json::to_string_pretty(&v).unwrap_or_default())),
        (s, v) => Err(failed(s, &v)),
    }
}

/// `ward token revoke`.
pub async fn token_revoke(target: &AdminTarget, body: Value) -> Result<String, String> {
    match target.call(reqwest::Method::POST, "/admin/tokens/revoke", Some(body)).await? {
        (200, v) if v.get("cut_off").is_some() => Ok(format!(
            "ended every token issued until {} ({} refresh token families, {} of their access tokens)\n",
            v["cut_off"], v["families"], v["access_tokens"]
        )),
        (200, v) if v.get("family").is_some() => Ok(format!(
            "revoked refresh token family {} and {} of its access tokens\n",
            v["family"].as_str().unwrap_or("?"),
            v["access_tokens"]
        )),
        (200, v) => Ok(format!("revoked {} (until {})\n", v["revoked"].as_str().unwrap_or("?"), v["until"])),
        (s, v) => Err(failed(s, &v)),
    }
}

/// A token from the first line of standard input (kept off the command
/// line, where other users can read it in the process list).
///
/// # Errors
/// A message when nothing could be read.
pub fn read_token() -> Result<zeroize::Zeroizing<String>, String> {
    let mut line = zeroize::Zeroizing::new(String::new());
    std::io::stdin().read_line(&mut line).map_err(|e| format!("reading the token from stdin: {e}"))?;
    let token = zeroize::Zeroizing::new(line.trim().to_owned());
    if token.is_empty() {
        return Err("no token on standard input".into());
    }
    Ok(token)
}

/// The password from the first line of standard input (zeroized on drop).
///
/// # Errors
/// A message when nothing could be read.
pub fn read_password() -> Result<zeroize::Zeroizing<String>, String> {
    let mut line = zeroize::Zeroizing::new(String::new());
    std::io::stdin().read_line(&mut line).map_err(|e| format!("reading the password from stdin: {e}"))?;
    let trimmed = zeroize::Zeroizing::new(line.trim_end_matches(['\r', '\n']).to_owned());
    if trimmed.is_empty() {
        return Err("no password on standard input".into());
    }
    Ok(trimmed)
}

/// `ward user create`.
pub async fn user_create(target: &AdminTarget, name: &str, password: &str, roles: &[String]) -> Result<String, String> {
    let body = json!({"username": name, "password": password, "roles": roles});
    match target.call(reqwest::Method::POST, "/admin/users", Some(body)).await? {
        (201, _) => Ok(format!("created user {name}\n")),
        (s, v) => Err(failed(s, &v)),
    }
}

/// `ward user passwd`.
pub async fn user_passwd(target: &AdminTarget, name: &str, password: &str) -> Result<String, String> {
    match target
        .call(reqwest::Method::PUT, &format!("/admin/users/{name}/password"), Some(json!({"password": password})))
        .await?
    {
        (204, _) => Ok(format!("changed the password of {name}\n")),
        (s, v) => Err(failed(s, &v)),
    }
}
