//! Validation: raw file values into typed, checked settings.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ward_authn::{Algorithm, ProviderSettings};
use ward_core::parse_duration;
use ward_policy::{DefaultAction, EncodedSlashes, EngineConfig, PathCase, PathOptions, ROUTE_LABEL, Route};

use crate::error::{Invalid, Seg};
use crate::raw;

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The listener and its limits.
    pub gateway: GatewaySettings,
    /// Where audit records go.
    pub audit: AuditSettings,
    /// The local token issuer (`ward token issue`), if configured.
    pub issuer: Option<IssuerSettings>,
    /// Token providers, in configuration order.
    pub providers: Vec<ProviderConfig>,
    /// Where tokens are looked for, in order (default: `Authorization: Bearer`).
    pub token_sources: Vec<TokenSource>,
    /// Size of the verified-token cache; 0 turns it off.
    pub cache_entries: usize,
    /// Whether the client's token is passed to the upstream (default: removed).
    pub forward_token: bool,
    /// Claims passed to upstreams as headers: (claim, header name).
    pub forward_claims: Vec<(String, String)>,
    /// Upstream services.
    pub upstreams: Vec<UpstreamConfig>,
    /// Routes (with their policy labels).
    pub routes: Vec<Route>,
    /// Authorization policies.
    pub policy: PolicySettings,
    /// The admin API (audit checkpoints and proofs, health), if enabled.
    pub admin: Option<AdminSettings>,
    /// The control plane (token service), if enabled.
    pub control: Option<ControlConfig>,
    /// The gateway as an OpenID Connect relying party for `login` routes.
    pub oidc: Option<OidcSettings>,
    /// Threat detection and blocking (`[detect]`), if enabled.
    pub detect: Option<crate::detect::DetectConfig>,
    /// Rate limits (`[[rate_limits]]`), in configuration order.
    pub rate_limits: Vec<crate::detect::RateLimitConfig>,
    /// The control plane as a transparency-log witness (`[witness]`), if enabled.
    pub witness: Option<WitnessSettings>,
}

/// `[witness]`: the control plane cosigns checkpoints of these logs (C2SP
/// `tlog-witness` at `POST /witness/add-checkpoint`) when each is
/// consistent with the last it cosigned.
#[derive(Debug, Clone)]
pub struct WitnessSettings {
    /// The cosigner's private key (`PRIVATE+KEY+…`, type 0x04), mode 0600.
    pub key_file: PathBuf,
    /// Where the latest cosigned checkpoint of each log is kept (default
    /// `witness/state.json`).
    pub state_file: PathBuf,
    /// The logs witnessed: origin → the log keys trusted for it.
    pub logs: Vec<(String, Vec<String>)>,
}

/// `[oidc]`: the gateway logs browser users in against an OpenID Connect
/// provider (authorization code with PKCE, `state`, `nonce`) and keeps them
/// in an encrypted session cookie.
#[derive(Debug, Clone)]
pub struct OidcSettings {
    /// The provider's issuer; its discovery document is fetched from
    /// `<issuer>/.well-known/openid-configuration` and must name the same issuer.
    pub issuer: String,
    /// The gateway's client id at the provider.
    pub client_id: String,
    /// A file holding the client secret (0600).
    pub client_secret_file: PathBuf,
    /// The callback URL registered at the provider (absolute https).
    pub redirect_uri: String,
    /// Its path, which the gateway serves.
    pub callback_path: String,
    /// Scopes asked for; always includes `openid`.
    pub scopes: Vec<String>,
    /// CA certificate to trust for the provider (default: system roots).
    pub ca_file: Option<PathBuf>,
    /// A file with the 32-byte session encryption key (0600).
    pub session_key_file: PathBuf,
    /// A session unused this long ends (default 30 min).
    pub session_idle: Duration,
    /// A session ends this long after login, however active (default 8 h).
    pub session_absolute: Duration,
    /// The path that ends the session (default `/_ward/logout`).
    pub logout_path: String,
    /// Where the browser goes after logout (a local path, default `/`).
    pub post_logout_redirect: String,
}

/// `[control]`: the token service's own TLS listener (it serves the
/// gateway's certificate).
#[derive(Debug, Clone)]
pub struct ControlConfig {
    /// Where it listens.
    pub listen: SocketAddr,
    /// The issuer URL (`iss`, discovery); default `https://<bound address>`.
    pub issuer: Option<String>,
    /// The redb store (default `control/control.redb`), created 0600.
    pub store: PathBuf,
    /// A file holding the admin API's bearer token (0600).
    pub admin_token_file: PathBuf,
    /// Its listener's limits (`[control.limits]`; see [`Limits::control`]).
    pub limits: Limits,
    /// Longest access token lifetime (default 1 h).
    pub max_ttl: Duration,
    /// `EdDSA` (default) or `ES256` for new signing keys.
    pub key_alg: ward_authn::Algorithm,
    /// How long a new key is published before it signs (default 10 min).
    pub publish_lead: Duration,
    /// How long an authorization code may wait to be redeemed (default 60 s, at most 10 min).
    pub code_ttl: Duration,
    /// How long a refresh token family lives from the login (default 24 h, at most 90 days).
    pub refresh_ttl: Duration,
    /// The SPIFFE trust domain whose CA this control plane runs (X.509-SVIDs), if any.
    pub trust_domain: Option<String>,
    /// Where `ward ca init` put the CA (default `ca`): `root.crt`, `intermediate.crt`, `intermediate.key`.
    pub ca_dir: PathBuf,
    /// Who may register and discover which service (`[[control.registry]]`).
    pub registry: Vec<RegistryRule>,
    /// The audiences the gateway of the same process (`ward up`) accepts in
    /// this control plane's tokens (default `["ward-demo"]`): there, the
    /// gateway trusts its control plane's issuer and keys without a
    /// `[[providers]]` entry.
    pub audiences: Vec<String>,
}

/// One service of the registry: the SPIFFE IDs that may register it, and
/// those that may discover it (`*`: any SVID of the trust domain).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryRule {
    /// The service name.
    pub name: String,
    /// SPIFFE IDs allowed to register it.
    pub writers: Vec<String>,
    /// SPIFFE IDs allowed to look it up, or `*`.
    pub readers: Vec<String>,
}

/// `[admin]`: a plain-HTTP API for operators and auditors on loopback.
#[derive(Debug, Clone)]
pub struct AdminSettings {
    /// Where it listens; must be a loopback address (it has no TLS or
    /// client authentication of its own).
    pub listen: SocketAddr,
    /// Its listener's limits (`[admin.limits]`; see [`Limits::admin`]).
    pub limits: Limits,
}

/// `[policy]`: where policies live and how they are scoped.
#[derive(Debug, Clone)]
pub struct PolicySettings {
    /// Directory of YAML policy documents (default `policies` next to the config).
    pub dir: PathBuf,
    /// Scoping, default action, groups claim, authorizer names.
    pub engine: EngineConfig,
    /// Path normalisation shared by routing and authorization.
    pub path: PathOptions,
    /// How often the directory is checked for changes (default 1 s; SIGHUP also reloads).
    pub reload_interval: Duration,
    /// External authorizers CUSTOM policies delegate to.
    pub authorizers: Vec<AuthorizerConfig>,
}

/// An external authorizer (Envoy `ext_authz` HTTP service semantics).
#[derive(Debug, Clone)]
pub struct AuthorizerConfig {
    /// Name CUSTOM policies use in `provider.name`.
    pub name: String,
    /// Base URL; the request path is appended.
    pub url: String,
    /// CA file for an https URL (default: the system roots are not used; required for https).
    pub ca_file: Option<PathBuf>,
    /// Time allowed for an answer (default 1 s); no answer denies.
    pub timeout: Duration,
    /// Request headers sent along (lower case), besides the method, path and Ward's identity headers.
    pub include_headers: Vec<String>,
}

/// Listener settings.
#[derive(Debug, Clone)]
pub struct GatewaySettings {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Tokio worker threads (default: one per core).
    pub worker_threads: Option<usize>,
    /// How many proxies in front of Ward are trusted to append to `X-Forwarded-For`.
    pub trusted_proxy_hops: usize,
    /// Request headers never passed to upstreams (lower case; default
    /// [`DEFAULT_STRIPPED_HEADERS`]): they would make an upstream act on a
    /// method, path, address or user other than the one the gateway judged.
    pub strip_request_headers: Vec<String>,
    /// TLS settings.
    pub tls: TlsSettings,
    /// Request and connection limits.
    pub limits: Limits,
}

/// The request headers stripped unless `[gateway] strip_request_headers`
/// says otherwise: method and URL overrides, and client address and user
/// claims that frameworks trust.
pub const DEFAULT_STRIPPED_HEADERS: &[&str] = &[
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-original-method",
    "x-original-url",
    "x-rewrite-url",
    "x-original-uri",
    "x-real-ip",
    "true-client-ip",
    "x-client-ip",
    "x-cluster-client-ip",
    "remote-user",
    "x-remote-user",
];

/// Lowest TLS version accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsVersion {
    /// TLS 1.2 and 1.3 (default).
    Tls12,
    /// TLS 1.3 only.
    Tls13,
}

/// TLS settings.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// PEM certificate chain.
    pub cert_file: PathBuf,
    /// PEM private key (PKCS#8, SEC1 or PKCS#1).
    pub key_file: PathBuf,
    /// Lowest version accepted.
    pub min_version: TlsVersion,
    /// How often the files are checked for changes (default 5 s; also on SIGHUP).
    pub reload_interval: Duration,
    /// Client certificates (`[gateway.mtls]`); none is `DISABLE`.
    pub mtls: Option<MtlsSettings>,
}

/// `[gateway.mtls]`: X.509-SVIDs from clients, with Istio PeerAuthentication's modes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MtlsSettings {
    /// `STRICT`: every connection presents an SVID. `PERMISSIVE`: mTLS,
    /// TLS without a client certificate, and plaintext HTTP on the same
    /// port, told apart for policies (only mTLS sets `source.principal`).
    pub mode: MtlsMode,
    /// The trust bundle: PEM root certificates of the trust domain.
    pub bundle_file: PathBuf,
    /// The SPIFFE trust domain client SVIDs must belong to.
    pub trust_domain: String,
}

/// Istio PeerAuthentication modes (`DISABLE` is the absence of `[gateway.mtls]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MtlsMode {
    /// Client certificates required.
    Strict,
    /// Client certificates verified when presented; plaintext accepted.
    Permissive,
}

/// Limits that protect the gateway from its clients.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Total bytes of request header names and values (default 16 KiB) → 431.
    pub max_header_bytes: usize,
    /// Number of request headers (default 100) → 431.
    pub max_headers: usize,
    /// Request body bytes (default 1 MiB) → 413.
    pub max_body_bytes: u64,
    /// Concurrent client connections (default 10,000); more are closed at accept.
    pub max_connections: usize,
    /// Concurrent connections from one client address (default 256); more
    /// are closed at accept. 0 turns the cap off.
    pub max_connections_per_ip: u32,
    /// Time allowed to send complete request headers (default 10 s): slowloris defence.
    pub header_timeout: Duration,
    /// Time allowed for the TLS handshake (default 10 s).
    pub handshake_timeout: Duration,
    /// A connection with no traffic in either direction for this long is closed (default 60 s).
    pub idle_timeout: Duration,
    /// Request headers whose names contain `_` (default: dropped).
    pub headers_with_underscores: UnderscoreHeaders,
    /// Bytes of the request target, path and query (default 8 KiB) → 414.
    pub max_uri_bytes: usize,
    /// A connection older than this is asked to close (HTTP/2 GOAWAY,
    /// HTTP/1.1 `connection: close` on its next response) and cut off a
    /// drain period later (default 1 h): no client keeps a connection —
    /// and the certificate and address it was judged on — forever.
    pub max_connection_age: Duration,
}

impl Limits {
    /// The gateway's defaults (`[gateway.limits]`).
    #[must_use]
    pub fn gateway() -> Self {
        Self {
            max_header_bytes: 16 * 1024,
            max_headers: 100,
            max_body_bytes: 1024 * 1024,
            max_connections: 10_000,
            max_connections_per_ip: 256,
            header_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            headers_with_underscores: UnderscoreHeaders::Drop,
            max_uri_bytes: 8 * 1024,
            max_connection_age: Duration::from_secs(3600),
        }
    }

    /// The control plane's defaults (`[control.limits]`): its clients are
    /// workloads, CLIs and browsers logging in, far fewer than the
    /// gateway's, and its forms are small.
    #[must_use]
    pub fn control() -> Self {
        Self { max_body_bytes: 16 * 1024, max_connections: 1024, max_connections_per_ip: 64, ..Self::gateway() }
    }

    /// The admin API's defaults (`[admin.limits]`): a loopback listener for
    /// auditors' tools and health probes.
    #[must_use]
    pub fn admin() -> Self {
        Self { max_body_bytes: 0, max_connections: 64, max_connections_per_ip: 0, ..Self::gateway() }
    }
}

/// What to do with a request header whose name contains `_`: CGI and WSGI
/// upstreams read `x_ward_principal` and `x-ward-principal` as the same
/// variable (`HTTP_X_WARD_PRINCIPAL`), so such a name can pass for one the
/// gateway sets. Envoy's `headers_with_underscores_action`, nginx's
/// `underscores_in_headers`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnderscoreHeaders {
    /// Remove them before anything reads the request (the default).
    #[default]
    Drop,
    /// Refuse the request (400).
    Reject,
    /// Keep them — except names that normalise (`_` → `-`, any case) to a
    /// header the gateway sets or strips (`x-ward-*`, `x-forwarded-*`,
    /// `forwarded`, …), which are always removed.
    Allow,
}

impl UnderscoreHeaders {
    /// The configuration spellings.
    pub const NAMES: &'static [(&'static str, Self)] =
        &[("drop", Self::Drop), ("reject", Self::Reject), ("allow", Self::Allow)];
}

/// Audit settings: the tamper-evident log.
#[derive(Debug, Clone)]
pub struct AuditSettings {
    /// The log directory (segments, tree, checkpoints).
    pub dir: PathBuf,
    /// The key for HMACs of personal data (at least 32 bytes, file mode 0600).
    pub hmac_key_file: PathBuf,
    /// The Ed25519 checkpoint signing key (a C2SP note key, file mode 0600);
    /// separate from every other key.
    pub checkpoint_key_file: PathBuf,
    /// The checkpoint verifier keys `ward audit verify` trusts (C2SP vkeys,
    /// `name+hash+key`): pinned here, apart from the log directory, whose own
    /// `checkpoint.vkey` anyone who rewrites the log can replace.
    pub verifier_keys: Vec<String>,
    /// The witnesses whose cosignatures `ward audit verify` requires (C2SP
    /// cosignature vkeys, type 0x04): all of them, unless `--quorum` says fewer.
    pub witness_keys: Vec<String>,
    /// The checkpoints' origin line: a name unique to this log.
    pub origin: String,
    /// Records that may wait for the disk before requests are refused (default 65,536).
    pub queue: usize,
    /// How long a batch gathers after its first record before one write and
    /// one `fdatasync` (default 1 ms, at most 1 s; `0ms`: sync at once).
    pub commit_interval: Duration,
    /// A batch is committed at once when it holds this many records (default 4096).
    pub commit_records: usize,
    /// Publish a signed checkpoint after this many records (default 100,000)…
    pub checkpoint_every: u64,
    /// …or this long after the last one (default 10 s).
    pub checkpoint_interval: Duration,
    /// Segments rotate at this size (default 64 MiB).
    pub segment_bytes: u64,
    /// Delete record bodies older than this (the tree and checkpoints stay).
    pub retention_max_age: Option<Duration>,
    /// Delete the oldest record bodies while all segments exceed this many bytes.
    pub retention_max_bytes: Option<u64>,
    /// Acknowledge records before they are synced (a crash may lose the last
    /// commit interval of records). Off by default.
    pub danger_async: bool,
    /// SIEM exporters (`[[audit.export]]`).
    pub export: Vec<ward_export::ExportSpec>,
    /// The witnesses every new checkpoint is sent to (`[[audit.witnesses]]`,
    /// C2SP `tlog-witness` over HTTPS); their keys join `witness_keys`.
    pub witnesses: Vec<AuditWitness>,
}

/// One `[[audit.witnesses]]` entry: a C2SP `tlog-witness` this log submits
/// its checkpoints to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditWitness {
    /// The witness's URL prefix (`https://host:port/witness`): checkpoints
    /// go to `<url>/add-checkpoint`.
    pub url: String,
    /// Its cosignature verifier key (C2SP vkey, type 0x04): the lines it
    /// returns are kept only if they verify with it.
    pub key: String,
    /// The only CA trusted for its TLS certificate (no system roots: a
    /// forged `409` would raise a false divergence alarm).
    pub ca_file: PathBuf,
}

/// The local issuer used by `ward token issue`.
#[derive(Debug, Clone)]
pub struct IssuerSettings {
    /// The `iss` it writes.
    pub issuer: String,
    /// PKCS#8 private key (PEM).
    pub signing_key_file: PathBuf,
    /// ES256 (default) or EdDSA.
    pub alg: Algorithm,
    /// Audience used when none is given on the command line.
    pub default_audience: Option<String>,
    /// Longest lifetime it issues (default 24 h).
    pub max_ttl: Duration,
}

/// A token provider: its checks and where its keys come from.
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    /// What tokens must satisfy.
    pub settings: ProviderSettings,
    /// JWK set file, watched for changes.
    pub jwks_file: Option<PathBuf>,
    /// JWK set URL (HTTPS only).
    pub jwks_url: Option<String>,
    /// CA bundle for the JWK set URL (default: the system roots).
    pub jwks_ca_file: Option<PathBuf>,
    /// Refreshes caused by unknown `kid`s happen at most this often (default 30 s).
    pub jwks_min_refresh_interval: Duration,
    /// Scheduled refresh period (default 5 min).
    pub jwks_refresh_interval: Duration,
    /// Keys configured directly.
    pub keys: Vec<KeySettings>,
}

/// A key configured directly, pinned to one algorithm.
#[derive(Debug, Clone)]
pub struct KeySettings {
    /// Key id tokens must name (optional when the provider has one key).
    pub kid: Option<String>,
    /// The one algorithm this key verifies.
    pub alg: Algorithm,
    /// PEM SubjectPublicKeyInfo file (asymmetric algorithms).
    pub public_key_file: Option<PathBuf>,
    /// Raw secret file (HS256 only, at least 32 bytes).
    pub secret_file: Option<PathBuf>,
}

/// Where the gateway looks for a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// A header; for `authorization`, the `Bearer` scheme is required.
    Header(String),
    /// A cookie.
    Cookie(String),
}

/// What an upstream is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamTarget {
    /// An HTTP or HTTPS origin (`scheme://host:port`).
    Url {
        /// `https` or `http`.
        tls: bool,
        /// `host:port`.
        authority: String,
        /// The host name (for TLS server name checks).
        host: String,
    },
    /// The built-in echo service (`builtin:echo`), started on loopback by the gateway.
    Echo,
}

/// An upstream service.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// Name used by routes and in audit records.
    pub name: String,
    /// Where it is.
    pub target: UpstreamTarget,
    /// CA bundle for an HTTPS upstream (default: the system roots).
    pub ca_file: Option<PathBuf>,
    /// Connect timeout (default 5 s).
    pub connect_timeout: Duration,
    /// Time allowed for the response headers (default 30 s).
    pub timeout: Duration,
    /// Speak HTTP/2 to the upstream (prior knowledge for http, ALPN for https).
    pub http2: bool,
    /// Idle pooled connections kept per upstream (default 64).
    pub max_idle_per_host: usize,
    /// mTLS to a workload with a SPIFFE identity (sidecar egress).
    pub spiffe: Option<UpstreamSpiffe>,
}

/// An upstream verified by its SPIFFE ID rather than its host name, and
/// the gateway's own SVID presented to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamSpiffe {
    /// The SPIFFE ID the upstream's certificate must carry.
    pub expected: String,
    /// The trust bundle (PEM roots) its SVID must chain to.
    pub bundle_file: PathBuf,
    /// The gateway's SVID (chain) and key, if it authenticates itself.
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

pub(crate) type V<T> = Result<T, Invalid>;

pub(crate) fn at(path: &[Seg], more: &[Seg]) -> Vec<Seg> {
    path.iter().chain(more).cloned().collect()
}

pub(crate) fn duration(value: Option<&str>, default: Duration, path: Vec<Seg>) -> V<Duration> {
    match value {
        None => Ok(default),
        Some(v) => parse_duration(v).map_err(|e| Invalid::new(path, e.to_string())),
    }
}

fn commit_interval(value: Option<&str>) -> V<Duration> {
    let path = || vec![Seg::Key("audit"), Seg::Key("commit_interval")];
    let interval = duration(value, Duration::from_millis(1), path())?;
    if interval > Duration::from_secs(1) {
        return Err(Invalid::new(path(), "must be at most 1s: records would wait too long to be durable"));
    }
    Ok(interval)
}

fn admin(raw: &raw::RawAdmin) -> V<AdminSettings> {
    let path = || vec![Seg::Key("admin"), Seg::Key("listen")];
    let listen: SocketAddr = raw
        .listen
        .parse()
        .map_err(|_| Invalid::new(path(), format!("`{}` is not an address like 127.0.0.1:9901", raw.listen)))?;
    if !listen.ip().is_loopback() {
        return Err(Invalid::new(
            path(),
            "must be a loopback address: the admin API has no TLS or client authentication of its own",
        ));
    }
    let limits = limits(&raw.limits, &[Seg::Key("admin"), Seg::Key("limits")], &Limits::admin())?;
    Ok(AdminSettings { listen, limits })
}

fn audit(raw: &raw::RawAudit, base: &Path) -> V<AuditSettings> {
    let key = |k: &'static str| vec![Seg::Key("audit"), Seg::Key(k)];
    if raw.file.is_some() {
        return Err(Invalid::new(
            key("file"),
            "the JSON-lines audit file was replaced by the tamper-evident log: set `dir = \"audit\"` and \
             `checkpoint_key_file` (`ward init` writes both)",
        ));
    }
    let dir = raw.dir.as_deref().ok_or_else(|| Invalid::new(key("dir"), "missing: the audit log directory"))?;
    nonempty(dir, key("dir"))?;
    let checkpoint_key = raw.checkpoint_key_file.as_deref().ok_or_else(|| {
        Invalid::new(key("checkpoint_key_file"), "missing: the checkpoint signing key (`ward init` makes one)")
    })?;
    let origin = raw.origin.clone().unwrap_or_else(|| "ward.local/audit".to_owned());
    if origin.is_empty() || origin.chars().any(|c| c.is_control() || c == '\u{2014}') || origin.contains('+') {
        return Err(Invalid::new(
            key("origin"),
            "must be a non-empty line without `+`, control characters or em dashes",
        ));
    }
    let interval = duration(raw.checkpoint_interval.as_deref(), Duration::from_secs(10), key("checkpoint_interval"))?;
    if interval.is_zero() {
        return Err(Invalid::new(key("checkpoint_interval"), "must be greater than 0"));
    }
    let segment_bytes = positive(raw.segment_bytes, 64 << 20, key("segment_bytes"))?;
    if segment_bytes < 4096 {
        return Err(Invalid::new(key("segment_bytes"), "must be at least 4096"));
    }
    let max_age = raw
        .retention_max_age
        .as_deref()
        .map(|a| duration(Some(a), Duration::ZERO, key("retention_max_age")))
        .transpose()?;
    for (i, v) in raw.verifier_keys.iter().enumerate() {
        ward_merkle::NoteVerifier::new(v.trim()).map_err(|e| {
            Invalid::new(
                vec![Seg::Key("audit"), Seg::Key("verifier_keys"), Seg::Index(i)],
                format!("not a verifier key: {e}"),
            )
        })?;
    }
    for (i, v) in raw.witness_keys.iter().enumerate() {
        ward_merkle::CosignatureVerifier::new(v.trim()).map_err(|e| {
            Invalid::new(
                vec![Seg::Key("audit"), Seg::Key("witness_keys"), Seg::Index(i)],
                format!("not a witness key: {e}"),
            )
        })?;
    }
    let witnesses = audit_witnesses(&raw.witnesses, base)?;
    let mut witness_keys: Vec<String> = raw.witness_keys.iter().map(|v| v.trim().to_owned()).collect();
    for w in &witnesses {
        if !witness_keys.contains(&w.key) {
            witness_keys.push(w.key.clone());
        }
    }
    Ok(AuditSettings {
        witness_keys,
        witnesses,
        verifier_keys: raw.verifier_keys.iter().map(|v| v.trim().to_owned()).collect(),
        dir: resolve(base, dir),
        hmac_key_file: resolve(base, &raw.hmac_key_file),
        checkpoint_key_file: resolve(base, checkpoint_key),
        origin,
        queue: positive(raw.queue, 65_536, key("queue"))?,
        commit_interval: commit_interval(raw.commit_interval.as_deref())?,
        commit_records: positive(raw.commit_records, 4096, key("commit_records"))?,
        checkpoint_every: positive(raw.checkpoint_every, 100_000, key("checkpoint_every"))? as u64,
        checkpoint_interval: interval,
        segment_bytes: segment_bytes as u64,
        retention_max_age: max_age,
        retention_max_bytes: positive(raw.retention_max_bytes, usize::MAX, key("retention_max_bytes"))
            .map(|v| (v != usize::MAX).then_some(v as u64))?,
        danger_async: raw.danger_async,
        export: exports(&raw.export, base)?,
    })
}

fn audit_witnesses(raw: &[raw::RawAuditWitness], base: &Path) -> V<Vec<AuditWitness>> {
    let mut out: Vec<AuditWitness> = Vec::with_capacity(raw.len());
    for (i, w) in raw.iter().enumerate() {
        let here = [Seg::Key("audit"), Seg::Key("witnesses"), Seg::Index(i)];
        let key = |k: &'static str| at(&here, &[Seg::Key(k)]);
        let url = w.url.trim().trim_end_matches('/').to_owned();
        let authority = url.strip_prefix("https://").unwrap_or_default();
        if authority.is_empty()
            || authority.starts_with('/')
            || url.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(Invalid::new(
                key("url"),
                "must be an https URL prefix, e.g. https://witness.example:8443/witness (a forged answer over plain http could raise a false divergence alarm)",
            ));
        }
        if url.contains(['?', '#']) {
            return Err(Invalid::new(key("url"), "a URL prefix takes no query or fragment"));
        }
        let verifier = ward_merkle::CosignatureVerifier::new(w.key.trim())
            .map_err(|e| Invalid::new(key("key"), format!("not a witness key: {e}")))?;
        if out.iter().any(|o| o.key == w.key.trim()) {
            return Err(Invalid::new(key("key"), format!("witness `{}` is listed twice", verifier.name())));
        }
        if w.ca_file.trim().is_empty() {
            return Err(Invalid::new(key("ca_file"), "required: the CA that issued the witness's certificate"));
        }
        out.push(AuditWitness { url, key: w.key.trim().to_owned(), ca_file: resolve(base, &w.ca_file) });
    }
    Ok(out)
}

fn exports(raw: &[raw::RawExport], base: &Path) -> V<Vec<ward_export::ExportSpec>> {
    use ward_export::{ExportSpec, Format, Target};
    let mut out = Vec::with_capacity(raw.len());
    let mut names = HashSet::new();
    for (i, e) in raw.iter().enumerate() {
        let here = [Seg::Key("audit"), Seg::Key("export"), Seg::Index(i)];
        let key = |k: &'static str| at(&here, &[Seg::Key(k)]);
        if e.name.is_empty() || !e.name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return Err(Invalid::new(key("name"), "use letters, digits, `-` and `_` (it names the cursor file)"));
        }
        if !names.insert(e.name.clone()) {
            return Err(Invalid::new(key("name"), format!("duplicate exporter name `{}`", e.name)));
        }
        let format = choice(e.format.as_deref(), Format::Ocsf, &Format::NAMES, key("format"))?;
        let need = |v: &Option<String>, k: &'static str| {
            v.clone()
                .filter(|s| !s.trim().is_empty())
                .ok_or_else(|| Invalid::new(key(k), format!("required for kind `{}`", e.kind)))
        };
        let refuse = |fields: &[(&Option<String>, &'static str)]| -> V<()> {
            match fields.iter().find(|(v, _)| v.is_some()) {
                Some((_, k)) => Err(Invalid::new(key(k), format!("does not apply to kind `{}`", e.kind))),
                None => Ok(()),
            }
        };
        let target = match e.kind.as_str() {
            "file" => {
                refuse(&[
                    (&e.address, "address"),
                    (&e.url, "url"),
                    (&e.ca_file, "ca_file"),
                    (&e.token_file, "token_file"),
                ])?;
                Target::File { path: resolve(base, &need(&e.path, "path")?) }
            }
            "syslog" => {
                refuse(&[(&e.path, "path"), (&e.url, "url"), (&e.token_file, "token_file")])?;
                let address = need(&e.address, "address")?;
                let host = address.rsplit_once(':').map(|(h, _)| h.trim_matches(['[', ']']).to_owned());
                let server_name =
                    e.server_name.clone().or(host).ok_or_else(|| Invalid::new(key("address"), "expected host:port"))?;
                Target::Syslog {
                    address,
                    server_name,
                    ca_file: resolve(base, &need(&e.ca_file, "ca_file")?),
                    hostname: e.hostname.clone().unwrap_or_default(),
                }
            }
            "webhook" => {
                refuse(&[
                    (&e.path, "path"),
                    (&e.address, "address"),
                    (&e.server_name, "server_name"),
                    (&e.hostname, "hostname"),
                ])?;
                let url = need(&e.url, "url")?;
                if !url.starts_with("https://") {
                    return Err(Invalid::new(key("url"), "must be https (records leave the machine)"));
                }
                if format == Format::Cef {
                    return Err(Invalid::new(
                        key("format"),
                        "webhooks carry JSON: use ocsf or raw (cef is for syslog and files)",
                    ));
                }
                Target::Webhook {
                    url,
                    ca_file: resolve(base, &need(&e.ca_file, "ca_file")?),
                    token_file: e.token_file.as_deref().map(|t| resolve(base, t)),
                }
            }
            other => return Err(Invalid::new(key("kind"), format!("`{other}` is not one of file, syslog, webhook"))),
        };
        const EVENTS: [&str; 10] = [
            "request",
            "token",
            "login",
            "admin",
            "registry",
            "key_change",
            "policy_change",
            "detection",
            "startup",
            "shutdown",
        ];
        if let Some(bad) = e.events.iter().find(|v| !EVENTS.contains(&v.as_str())) {
            return Err(Invalid::new(key("events"), format!("`{bad}` is not a record kind ({})", EVENTS.join(", "))));
        }
        out.push(ExportSpec {
            name: e.name.clone(),
            target,
            format,
            batch: positive(e.batch, 500, key("batch"))?,
            events: e.events.clone(),
        });
    }
    Ok(out)
}

pub(crate) fn resolve(base: &Path, value: &str) -> PathBuf {
    let p = Path::new(value);
    if p.is_absolute() { p.to_owned() } else { base.join(p) }
}

fn nonempty(value: &str, path: Vec<Seg>) -> V<()> {
    if value.trim().is_empty() { Err(Invalid::new(path, "must not be empty")) } else { Ok(()) }
}

/// One listener's limits (`[gateway.limits]`, `[control.limits]`,
/// `[admin.limits]`): what is not set keeps the listener's own default.
fn limits(l: &raw::RawLimits, lh: &[Seg], defaults: &Limits) -> V<Limits> {
    let field = |k: &'static str| at(lh, &[Seg::Key(k)]);
    let timeout = |v: Option<&str>, default: Duration, k: &'static str| -> V<Duration> {
        let d = duration(v, default, field(k))?;
        if d.is_zero() {
            return Err(Invalid::new(field(k), "must be greater than 0"));
        }
        Ok(d)
    };
    let at_most = |v: usize, max: usize, k: &'static str| -> V<usize> {
        if v > max {
            return Err(Invalid::new(field(k), format!("must be at most {max}")));
        }
        Ok(v)
    };
    Ok(Limits {
        max_header_bytes: at_most(
            positive(l.max_header_bytes, defaults.max_header_bytes, field("max_header_bytes"))?,
            1024 * 1024,
            "max_header_bytes",
        )?,
        max_headers: positive(l.max_headers, defaults.max_headers, field("max_headers"))?,
        max_body_bytes: l.max_body_bytes.unwrap_or(defaults.max_body_bytes),
        max_connections: at_most(
            positive(l.max_connections, defaults.max_connections, field("max_connections"))?,
            10_000_000,
            "max_connections",
        )?,
        max_connections_per_ip: l.max_connections_per_ip.unwrap_or(defaults.max_connections_per_ip),
        header_timeout: timeout(l.header_timeout.as_deref(), defaults.header_timeout, "header_timeout")?,
        handshake_timeout: timeout(l.handshake_timeout.as_deref(), defaults.handshake_timeout, "handshake_timeout")?,
        idle_timeout: timeout(l.idle_timeout.as_deref(), defaults.idle_timeout, "idle_timeout")?,
        max_connection_age: timeout(
            l.max_connection_age.as_deref(),
            defaults.max_connection_age,
            "max_connection_age",
        )?,
        headers_with_underscores: choice(
            l.headers_with_underscores.as_deref(),
            defaults.headers_with_underscores,
            UnderscoreHeaders::NAMES,
            field("headers_with_underscores"),
        )?,
        max_uri_bytes: positive(l.max_uri_bytes, defaults.max_uri_bytes, field("max_uri_bytes"))?,
    })
}

/// `[control.limits]`: the control plane buffers its (form and JSON)
/// bodies whole, so they are between 1 KiB and 1 MiB.
fn control_limits(raw: &raw::RawLimits) -> V<Limits> {
    let here = [Seg::Key("control"), Seg::Key("limits")];
    let limits = limits(raw, &here, &Limits::control())?;
    if !(1024..=1024 * 1024).contains(&limits.max_body_bytes) {
        return Err(Invalid::new(at(&here, &[Seg::Key("max_body_bytes")]), "must be between 1024 and 1048576"));
    }
    Ok(limits)
}

fn positive(value: Option<usize>, default: usize, path: Vec<Seg>) -> V<usize> {
    match value {
        Some(0) => Err(Invalid::new(path, "must be greater than 0")),
        Some(v) => Ok(v),
        None => Ok(default),
    }
}

pub(crate) fn validate(raw: raw::RawConfig, base: &Path) -> V<Config> {
    let gateway = gateway(&raw.gateway, base)?;
    let audit = audit(&raw.audit, base)?;
    let admin = raw.admin.as_ref().map(admin).transpose()?;
    let control = raw.control.as_ref().map(|c| control(c, base)).transpose()?;
    let issuer = raw.issuer.as_ref().map(|i| issuer(i, base)).transpose()?;
    let mut providers = Vec::with_capacity(raw.providers.len());
    let mut names = HashSet::new();
    for (i, p) in raw.providers.iter().enumerate() {
        let here = [Seg::Key("providers"), Seg::Index(i)];
        if !names.insert(p.name.clone()) {
            return Err(Invalid::new(at(&here, &[Seg::Key("name")]), format!("duplicate provider name `{}`", p.name)));
        }
        providers.push(provider(p, base, &here)?);
    }
    let (token_sources, forward_claims) = authn(&raw.authn)?;
    let mut upstreams = Vec::with_capacity(raw.upstreams.len());
    let mut upstream_names = HashSet::new();
    for (i, u) in raw.upstreams.iter().enumerate() {
        let here = [Seg::Key("upstreams"), Seg::Index(i)];
        if !upstream_names.insert(u.name.clone()) {
            return Err(Invalid::new(at(&here, &[Seg::Key("name")]), format!("duplicate upstream name `{}`", u.name)));
        }
        upstreams.push(upstream(u, base, &here)?);
    }
    let mut routes = Vec::with_capacity(raw.routes.len());
    let mut route_names = HashSet::new();
    for (i, r) in raw.routes.iter().enumerate() {
        let here = [Seg::Key("routes"), Seg::Index(i)];
        if !route_names.insert(r.name.clone()) {
            return Err(Invalid::new(at(&here, &[Seg::Key("name")]), format!("duplicate route name `{}`", r.name)));
        }
        routes.push(route(r, &here, &upstream_names, &names, &raw.policy.labels)?);
    }
    let policy = policy(&raw.policy, base)?;
    let oidc = raw.oidc.as_ref().map(|o| oidc(o, base)).transpose()?;
    if let Some(i) = routes.iter().position(|r| r.mtls_strict == Some(true))
        && gateway.tls.mtls.is_none()
    {
        return Err(Invalid::new(
            vec![Seg::Key("routes"), Seg::Index(i), Seg::Key("mtls")],
            "STRICT routes need [gateway.mtls] (PERMISSIVE or STRICT) to verify client SVIDs",
        ));
    }
    if let Some(i) = raw.routes.iter().position(|r| r.login)
        && oidc.is_none()
    {
        return Err(Invalid::new(
            vec![Seg::Key("routes"), Seg::Index(i), Seg::Key("login")],
            "login routes need an [oidc] section",
        ));
    }
    let detect = raw.detect.as_ref().map(|d| crate::detect::detect(d, base, &route_names)).transpose()?;
    let rate_limits = crate::detect::rate_limits(&raw.rate_limits, &route_names)?;
    if routes.iter().any(|r| !r.public && !r.login) && providers.is_empty() {
        return Err(Invalid::new(vec![Seg::Key("providers")], "protected routes need at least one token provider"));
    }
    Ok(Config {
        gateway,
        audit,
        issuer,
        providers,
        token_sources,
        cache_entries: raw.authn.cache_entries.unwrap_or(0),
        forward_token: raw.authn.forward_token,
        forward_claims,
        upstreams,
        routes,
        policy,
        admin,
        control,
        oidc,
        detect,
        rate_limits,
        witness: raw.witness.as_ref().map(|w| witness(w, base)).transpose()?,
    })
}

fn witness(raw: &raw::RawWitness, base: &Path) -> V<WitnessSettings> {
    let mut logs: Vec<(String, Vec<String>)> = Vec::with_capacity(raw.logs.len());
    for (i, l) in raw.logs.iter().enumerate() {
        let at = |k: &'static str| vec![Seg::Key("witness"), Seg::Key("logs"), Seg::Index(i), Seg::Key(k)];
        if l.origin.is_empty() || l.origin.contains(['\n', '\r']) || logs.iter().any(|(o, _)| *o == l.origin) {
            return Err(Invalid::new(at("origin"), "a non-empty origin line, once"));
        }
        if l.verifier_keys.is_empty() {
            return Err(Invalid::new(at("verifier_keys"), "at least one of the log's verifier keys"));
        }
        for v in &l.verifier_keys {
            ward_merkle::NoteVerifier::new(v.trim())
                .map_err(|e| Invalid::new(at("verifier_keys"), format!("not a verifier key: {e}")))?;
        }
        logs.push((l.origin.clone(), l.verifier_keys.iter().map(|v| v.trim().to_owned()).collect()));
    }
    Ok(WitnessSettings {
        key_file: resolve(base, &raw.key_file),
        state_file: resolve(base, raw.state_file.as_deref().unwrap_or("witness/state.json")),
        logs,
    })
}

/// A local path the gateway redirects to: `/…`, never `//…` or `/\…`
/// (which browsers read as another host).
fn local_path(v: &str, path: Vec<Seg>) -> V<String> {
    if !v.starts_with('/') || v.starts_with("//") || v.starts_with("/\\") || v.chars().any(char::is_control) {
        return Err(Invalid::new(path, format!("`{v}` must be a local path starting with a single `/`")));
    }
    Ok(v.to_owned())
}

fn oidc(raw: &raw::RawOidc, base: &Path) -> V<OidcSettings> {
    let key = |k: &'static str| vec![Seg::Key("oidc"), Seg::Key(k)];
    let https = |v: &str, k: &'static str| -> V<()> {
        if !v.starts_with("https://") || v.contains('#') || v.len() <= "https://".len() {
            return Err(Invalid::new(key(k), format!("`{v}` must be an https URL without a fragment")));
        }
        Ok(())
    };
    https(&raw.issuer, "issuer")?;
    if raw.issuer.ends_with('/') || raw.issuer.contains('?') {
        return Err(Invalid::new(key("issuer"), "no trailing `/` and no query (the discovery URL is built from it)"));
    }
    https(&raw.redirect_uri, "redirect_uri")?;
    let after_host = &raw.redirect_uri["https://".len()..];
    let callback_path = after_host.find('/').map_or("/", |i| &after_host[i..]);
    let callback_path = callback_path.split('?').next().unwrap_or("/").to_owned();
    if callback_path == "/" {
        return Err(Invalid::new(
            key("redirect_uri"),
            "needs a path of its own, e.g. https://app.example/_ward/callback",
        ));
    }
    nonempty(&raw.client_id, key("client_id"))?;
    let mut scopes = raw.scopes.clone().unwrap_or_default();
    if !scopes.iter().any(|s| s == "openid") {
        scopes.insert(0, "openid".to_owned());
    }
    if let Some(bad) = scopes.iter().find(|s| s.is_empty() || s.contains(' ')) {
        return Err(Invalid::new(key("scopes"), format!("`{bad}` is not a scope")));
    }
    let session_idle = duration(raw.session_idle.as_deref(), Duration::from_secs(30 * 60), key("session_idle"))?;
    let session_absolute =
        duration(raw.session_absolute.as_deref(), Duration::from_secs(8 * 3600), key("session_absolute"))?;
    if session_idle.is_zero() || session_absolute.is_zero() || session_idle > session_absolute {
        return Err(Invalid::new(key("session_idle"), "must be above zero and at most session_absolute"));
    }
    let logout_path = local_path(raw.logout_path.as_deref().unwrap_or("/_ward/logout"), key("logout_path"))?;
    if logout_path == callback_path {
        return Err(Invalid::new(key("logout_path"), "must differ from the redirect_uri's path"));
    }
    Ok(OidcSettings {
        issuer: raw.issuer.clone(),
        client_id: raw.client_id.clone(),
        client_secret_file: resolve(base, &raw.client_secret_file),
        redirect_uri: raw.redirect_uri.clone(),
        callback_path,
        scopes,
        ca_file: raw.ca_file.as_deref().map(|f| resolve(base, f)),
        session_key_file: resolve(base, &raw.session_key_file),
        session_idle,
        session_absolute,
        logout_path,
        post_logout_redirect: local_path(
            raw.post_logout_redirect.as_deref().unwrap_or("/"),
            key("post_logout_redirect"),
        )?,
    })
}

fn control(raw: &raw::RawControl, base: &Path) -> V<ControlConfig> {
    let key = |k: &'static str| vec![Seg::Key("control"), Seg::Key(k)];
    let listen: SocketAddr = raw
        .listen
        .parse()
        .map_err(|_| Invalid::new(key("listen"), format!("`{}` is not an address like 127.0.0.1:9443", raw.listen)))?;
    let issuer = raw.issuer.clone();
    if let Some(issuer) = &issuer
        && (!issuer.starts_with("https://") || issuer.ends_with('/') || issuer.contains(['?', '#']))
    {
        return Err(Invalid::new(key("issuer"), "must be an https URL without a trailing slash, query or fragment"));
    }
    let max_ttl = duration(raw.max_ttl.as_deref(), Duration::from_secs(3600), key("max_ttl"))?;
    if max_ttl.is_zero() || max_ttl > Duration::from_secs(86_400) {
        return Err(Invalid::new(key("max_ttl"), "must be between 1s and 24h"));
    }
    let key_alg = choice(
        raw.key_alg.as_deref(),
        ward_authn::Algorithm::EdDsa,
        &[("EdDSA", ward_authn::Algorithm::EdDsa), ("ES256", ward_authn::Algorithm::Es256)],
        key("key_alg"),
    )?;
    let code_ttl = duration(raw.code_ttl.as_deref(), Duration::from_secs(60), key("code_ttl"))?;
    if code_ttl.is_zero() || code_ttl > Duration::from_secs(600) {
        return Err(Invalid::new(key("code_ttl"), "must be between 1s and 10m (RFC 6749 §4.1.2)"));
    }
    let refresh_ttl = duration(raw.refresh_ttl.as_deref(), Duration::from_secs(86_400), key("refresh_ttl"))?;
    if refresh_ttl.is_zero() || refresh_ttl > Duration::from_secs(90 * 86_400) {
        return Err(Invalid::new(key("refresh_ttl"), "must be between 1s and 90d"));
    }
    let trust_domain = raw.trust_domain.clone();
    if let Some(td) = &trust_domain {
        ward_core::SpiffeId::of_trust_domain(td).map_err(|e| Invalid::new(key("trust_domain"), e.to_string()))?;
    }
    let mut registry = Vec::with_capacity(raw.registry.len());
    for (i, r) in raw.registry.iter().enumerate() {
        let at_rule = |k: &'static str| vec![Seg::Key("control"), Seg::Key("registry"), Seg::Index(i), Seg::Key(k)];
        if trust_domain.is_none() {
            return Err(Invalid::new(at_rule("name"), "the registry needs [control] trust_domain (callers are SVIDs)"));
        }
        if r.name.is_empty()
            || r.name.len() > 128
            || !r.name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
            || registry.iter().any(|x: &RegistryRule| x.name == r.name)
        {
            return Err(Invalid::new(at_rule("name"), format!("`{}`: 1-128 of A-Z a-z 0-9 . _ -, once", r.name)));
        }
        for (k, list) in [("writers", &r.writers), ("readers", &r.readers)] {
            for id in list.iter().filter(|id| !(k == "readers" && id.as_str() == "*")) {
                ward_core::SpiffeId::parse(id).map_err(|e| Invalid::new(at_rule(k), format!("`{id}`: {e}")))?;
            }
        }
        if r.writers.is_empty() {
            return Err(Invalid::new(at_rule("writers"), "at least one SPIFFE ID"));
        }
        registry.push(RegistryRule { name: r.name.clone(), writers: r.writers.clone(), readers: r.readers.clone() });
    }
    let audiences = raw.audiences.clone().unwrap_or_else(|| vec!["ward-demo".to_owned()]);
    if audiences.is_empty() || audiences.iter().any(String::is_empty) {
        return Err(Invalid::new(key("audiences"), "at least one audience, none empty"));
    }
    Ok(ControlConfig {
        audiences,
        listen,
        issuer,
        store: resolve(base, raw.store.as_deref().unwrap_or("control/control.redb")),
        admin_token_file: resolve(base, &raw.admin_token_file),
        max_ttl,
        key_alg,
        publish_lead: duration(raw.publish_lead.as_deref(), Duration::from_secs(600), key("publish_lead"))?,
        code_ttl,
        refresh_ttl,
        trust_domain,
        ca_dir: resolve(base, raw.ca_dir.as_deref().unwrap_or("ca")),
        registry,
        limits: control_limits(&raw.limits)?,
    })
}

pub(crate) fn choice<T: Copy>(value: Option<&str>, default: T, options: &[(&str, T)], path: Vec<Seg>) -> V<T> {
    let Some(v) = value else { return Ok(default) };
    options.iter().find(|(name, _)| *name == v).map(|(_, t)| *t).ok_or_else(|| {
        let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
        Invalid::new(path, format!("`{v}` is not one of {}", names.join(", ")))
    })
}

fn policy(p: &raw::RawPolicy, base: &Path) -> V<PolicySettings> {
    let here = [Seg::Key("policy")];
    let mut engine = EngineConfig {
        default_action: choice(
            p.default_action.as_deref(),
            DefaultAction::Deny,
            DefaultAction::NAMES,
            at(&here, &[Seg::Key("default_action")]),
        )?,
        ..EngineConfig::default()
    };
    if let Some(ns) = &p.namespace {
        nonempty(ns, at(&here, &[Seg::Key("namespace")]))?;
        engine.namespace.clone_from(ns);
    }
    if let Some(ns) = &p.root_namespace {
        nonempty(ns, at(&here, &[Seg::Key("root_namespace")]))?;
        engine.root_namespace.clone_from(ns);
    }
    if let Some(g) = &p.groups_claim {
        if g.split('.').any(str::is_empty) {
            return Err(Invalid::new(at(&here, &[Seg::Key("groups_claim")]), "a claim name, with dots for nesting"));
        }
        engine.groups_claim = g.split('.').map(str::to_owned).collect();
    }
    let path = PathOptions {
        case: choice(
            p.path_case.as_deref(),
            PathCase::Sensitive,
            PathCase::NAMES,
            at(&here, &[Seg::Key("path_case")]),
        )?,
        encoded_slashes: choice(
            p.encoded_slashes.as_deref(),
            EncodedSlashes::Reject,
            EncodedSlashes::NAMES,
            at(&here, &[Seg::Key("encoded_slashes")]),
        )?,
        params: choice(
            p.path_params.as_deref(),
            ward_policy::Allow::Reject,
            ward_policy::Allow::NAMES,
            at(&here, &[Seg::Key("path_params")]),
        )?,
        double_encoding: choice(
            p.double_encoding.as_deref(),
            ward_policy::Allow::Reject,
            ward_policy::Allow::NAMES,
            at(&here, &[Seg::Key("double_encoding")]),
        )?,
    };
    let mut authorizers = Vec::with_capacity(p.authorizers.len());
    for (i, a) in p.authorizers.iter().enumerate() {
        let ah = at(&here, &[Seg::Key("authorizers"), Seg::Index(i)]);
        nonempty(&a.name, at(&ah, &[Seg::Key("name")]))?;
        if authorizers.iter().any(|x: &AuthorizerConfig| x.name == a.name) {
            return Err(Invalid::new(at(&ah, &[Seg::Key("name")]), format!("duplicate authorizer `{}`", a.name)));
        }
        let uri: http::Uri = a.url.parse().map_err(|_| Invalid::new(at(&ah, &[Seg::Key("url")]), "not a URL"))?;
        match uri.scheme_str() {
            Some("http" | "https") if uri.authority().is_some() => {}
            _ => return Err(Invalid::new(at(&ah, &[Seg::Key("url")]), "use http://host:port or https://host:port")),
        }
        if uri.scheme_str() == Some("https") && a.ca_file.is_none() {
            return Err(Invalid::new(at(&ah, &[Seg::Key("ca_file")]), "an https authorizer needs `ca_file`"));
        }
        authorizers.push(AuthorizerConfig {
            name: a.name.clone(),
            url: a.url.trim_end_matches('/').to_owned(),
            ca_file: a.ca_file.as_deref().map(|f| resolve(base, f)),
            timeout: duration(a.timeout.as_deref(), Duration::from_secs(1), at(&ah, &[Seg::Key("timeout")]))?,
            include_headers: a.include_headers.iter().map(|h| h.to_ascii_lowercase()).collect(),
        });
    }
    engine.authorizers = authorizers.iter().map(|a| a.name.clone()).collect();
    Ok(PolicySettings {
        dir: resolve(base, p.dir.as_deref().unwrap_or("policies")),
        engine,
        path,
        reload_interval: duration(
            p.reload_interval.as_deref(),
            Duration::from_secs(1),
            at(&here, &[Seg::Key("reload_interval")]),
        )?,
        authorizers,
    })
}

fn mtls(m: &raw::RawMtls, base: &Path, here: &[Seg]) -> V<Option<MtlsSettings>> {
    let key = |k: &'static str| at(here, &[Seg::Key("mtls"), Seg::Key(k)]);
    let mode = match m.mode.as_str() {
        "DISABLE" => return Ok(None),
        "STRICT" => MtlsMode::Strict,
        "PERMISSIVE" => MtlsMode::Permissive,
        other => {
            return Err(Invalid::new(key("mode"), format!("`{other}` is not one of STRICT, PERMISSIVE, DISABLE")));
        }
    };
    let bundle_file = m.bundle_file.as_deref().ok_or_else(|| Invalid::new(key("bundle_file"), "required"))?;
    let trust_domain = m.trust_domain.clone().ok_or_else(|| Invalid::new(key("trust_domain"), "required"))?;
    ward_core::SpiffeId::of_trust_domain(&trust_domain)
        .map_err(|e| Invalid::new(key("trust_domain"), e.to_string()))?;
    Ok(Some(MtlsSettings { mode, bundle_file: resolve(base, bundle_file), trust_domain }))
}

fn gateway(g: &raw::RawGateway, base: &Path) -> V<GatewaySettings> {
    let here = [Seg::Key("gateway")];
    let listen = g.listen.parse().map_err(|_| {
        Invalid::new(at(&here, &[Seg::Key("listen")]), format!("`{}` is not an address like 127.0.0.1:8443", g.listen))
    })?;
    if g.worker_threads == Some(0) {
        return Err(Invalid::new(at(&here, &[Seg::Key("worker_threads")]), "must be greater than 0"));
    }
    let tls_here = at(&here, &[Seg::Key("tls")]);
    let min_version = match g.tls.min_version.as_deref() {
        None | Some("1.2") => TlsVersion::Tls12,
        Some("1.3") => TlsVersion::Tls13,
        Some(other) => {
            return Err(Invalid::new(
                at(&tls_here, &[Seg::Key("min_version")]),
                format!("`{other}` is not supported; use \"1.2\" or \"1.3\" (older versions are never accepted)"),
            ));
        }
    };
    let tls = TlsSettings {
        cert_file: resolve(base, &g.tls.cert_file),
        key_file: resolve(base, &g.tls.key_file),
        min_version,
        reload_interval: duration(
            g.tls.reload_interval.as_deref(),
            Duration::from_secs(5),
            at(&tls_here, &[Seg::Key("reload_interval")]),
        )?,
        mtls: g.mtls.as_ref().map(|m| mtls(m, base, &here)).transpose()?.flatten(),
    };
    let limits = limits(&g.limits, &at(&here, &[Seg::Key("limits")]), &Limits::gateway())?;
    let strip_at = || at(&here, &[Seg::Key("strip_request_headers")]);
    let strip_request_headers = match &g.strip_request_headers {
        None => DEFAULT_STRIPPED_HEADERS.iter().map(|h| (*h).to_owned()).collect(),
        Some(list) => {
            let mut out = Vec::with_capacity(list.len());
            for name in list {
                let lower = name.to_ascii_lowercase();
                if lower.is_empty()
                    || !lower.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_!#$%&'*+.^`|~".contains(&b))
                {
                    return Err(Invalid::new(strip_at(), format!("`{name}` is not a header name")));
                }
                out.push(lower);
            }
            out
        }
    };
    Ok(GatewaySettings {
        listen,
        worker_threads: g.worker_threads,
        trusted_proxy_hops: g.trusted_proxy_hops,
        strip_request_headers,
        tls,
        limits,
    })
}

fn issuer(i: &raw::RawIssuer, base: &Path) -> V<IssuerSettings> {
    let here = [Seg::Key("issuer")];
    nonempty(&i.issuer, at(&here, &[Seg::Key("issuer")]))?;
    let alg = match i.alg.as_deref() {
        None | Some("ES256") => Algorithm::Es256,
        Some("EdDSA") => Algorithm::EdDsa,
        Some(other) => {
            return Err(Invalid::new(
                at(&here, &[Seg::Key("alg")]),
                format!("Ward issues ES256 or EdDSA, not `{other}`"),
            ));
        }
    };
    Ok(IssuerSettings {
        issuer: i.issuer.clone(),
        signing_key_file: resolve(base, &i.signing_key_file),
        alg,
        default_audience: i.default_audience.clone(),
        max_ttl: duration(i.max_ttl.as_deref(), Duration::from_secs(86_400), at(&here, &[Seg::Key("max_ttl")]))?,
    })
}

fn provider(p: &raw::RawProvider, base: &Path, here: &[Seg]) -> V<ProviderConfig> {
    nonempty(&p.name, at(here, &[Seg::Key("name")]))?;
    nonempty(&p.issuer, at(here, &[Seg::Key("issuer")]))?;
    if p.audiences.is_empty() || p.audiences.iter().any(|a| a.trim().is_empty()) {
        return Err(Invalid::new(
            at(here, &[Seg::Key("audiences")]),
            "list at least one non-empty audience: tokens minted for other services must not be accepted",
        ));
    }
    if p.jwks_file.is_some() && p.jwks_url.is_some() {
        return Err(Invalid::new(at(here, &[Seg::Key("jwks_url")]), "set jwks_file or jwks_url, not both"));
    }
    if let Some(url) = &p.jwks_url {
        if !url.starts_with("https://") {
            return Err(Invalid::new(at(here, &[Seg::Key("jwks_url")]), "must be an https:// URL"));
        }
        url.parse::<http::Uri>()
            .map_err(|_| Invalid::new(at(here, &[Seg::Key("jwks_url")]), format!("`{url}` is not a valid URL")))?;
    }
    if p.jwks_file.is_none() && p.jwks_url.is_none() && p.keys.is_empty() {
        return Err(Invalid::new(
            at(here, &[Seg::Key("keys")]),
            "give keys, jwks_file or jwks_url: a provider needs keys",
        ));
    }
    let mut keys = Vec::with_capacity(p.keys.len());
    for (i, k) in p.keys.iter().enumerate() {
        let kh = at(here, &[Seg::Key("keys"), Seg::Index(i)]);
        let alg: Algorithm = k
            .alg
            .parse()
            .map_err(|e: ward_authn::KeyError| Invalid::new(at(&kh, &[Seg::Key("alg")]), e.to_string()))?;
        match (alg.is_asymmetric(), &k.public_key_file, &k.secret_file) {
            (true, Some(_), None) | (false, None, Some(_)) => {}
            (true, _, _) => {
                return Err(Invalid::new(
                    at(&kh, &[Seg::Key("public_key_file")]),
                    format!("{alg} needs public_key_file (and never a secret_file)"),
                ));
            }
            (false, _, _) => {
                return Err(Invalid::new(
                    at(&kh, &[Seg::Key("secret_file")]),
                    "HS256 needs secret_file (and never a public key: that is the key-confusion attack)",
                ));
            }
        }
        keys.push(KeySettings {
            kid: k.kid.clone(),
            alg,
            public_key_file: k.public_key_file.as_deref().map(|f| resolve(base, f)),
            secret_file: k.secret_file.as_deref().map(|f| resolve(base, f)),
        });
    }
    let max_token_bytes = positive(p.max_token_bytes, 8192, at(here, &[Seg::Key("max_token_bytes")]))?;
    let lifetime_at = || at(here, &[Seg::Key("max_lifetime")]);
    let max_lifetime = duration(p.max_lifetime.as_deref(), ProviderSettings::DEFAULT_MAX_LIFETIME, lifetime_at())?;
    if max_lifetime.is_zero() {
        return Err(Invalid::new(lifetime_at(), "must be more than 0s"));
    }
    let leeway = duration(p.leeway.as_deref(), Duration::from_secs(60), at(here, &[Seg::Key("leeway")]))?;
    if leeway > Duration::from_secs(ward_core::SWEEP_GRACE) {
        // Revocations are kept this long past a token's expiry, no longer.
        return Err(Invalid::new(
            at(here, &[Seg::Key("leeway")]),
            format!("must be at most {}s: a revoked token must not outlive its revocation", ward_core::SWEEP_GRACE),
        ));
    }
    Ok(ProviderConfig {
        settings: ProviderSettings {
            name: p.name.clone(),
            issuer: p.issuer.clone(),
            audiences: p.audiences.clone(),
            leeway,
            max_lifetime,
            max_token_bytes,
            require_at_jwt: p.require_at_jwt.unwrap_or(false),
            id_tokens: false,
        },
        jwks_file: p.jwks_file.as_deref().map(|f| resolve(base, f)),
        jwks_url: p.jwks_url.clone(),
        jwks_ca_file: p.jwks_ca_file.as_deref().map(|f| resolve(base, f)),
        jwks_min_refresh_interval: duration(
            p.jwks_min_refresh_interval.as_deref(),
            Duration::from_secs(30),
            at(here, &[Seg::Key("jwks_min_refresh_interval")]),
        )?,
        jwks_refresh_interval: duration(
            p.jwks_refresh_interval.as_deref(),
            Duration::from_secs(300),
            at(here, &[Seg::Key("jwks_refresh_interval")]),
        )?,
        keys,
    })
}

pub(crate) fn is_header_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Token sources and (claim, header) pairs to forward.
type AuthnParts = (Vec<TokenSource>, Vec<(String, String)>);

fn authn(a: &raw::RawAuthn) -> V<AuthnParts> {
    let here = [Seg::Key("authn")];
    let sources = match &a.token_from {
        None => vec![TokenSource::Header("authorization".into())],
        Some(list) if list.is_empty() => {
            return Err(Invalid::new(at(&here, &[Seg::Key("token_from")]), "list at least one token source"));
        }
        Some(list) => list
            .iter()
            .map(|s| match s.split_once(':') {
                Some(("header", name)) if is_header_name(name) => Ok(TokenSource::Header(name.to_owned())),
                Some(("cookie", name))
                    if !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic() && b != b'=' && b != b';') =>
                {
                    Ok(TokenSource::Cookie(name.to_owned()))
                }
                _ => Err(Invalid::new(
                    at(&here, &[Seg::Key("token_from")]),
                    format!("`{s}` is not `header:NAME` (lower case) or `cookie:NAME`"),
                )),
            })
            .collect::<V<Vec<_>>>()?,
    };
    let mut claims = Vec::with_capacity(a.forward_claims.len());
    for (claim, header) in &a.forward_claims {
        let reserved = ["x-ward-principal", "x-ward-issuer", "x-ward-provider"];
        if !header.starts_with("x-ward-") || !is_header_name(header) || reserved.contains(&header.as_str()) {
            return Err(Invalid::new(
                at(&here, &[Seg::Key("forward_claims")]),
                format!(
                    "`{header}` must be a lower-case header named x-ward-… (not principal/issuer/provider), so clients cannot forge it"
                ),
            ));
        }
        claims.push((claim.clone(), header.clone()));
    }
    Ok((sources, claims))
}

fn upstream(u: &raw::RawUpstream, base: &Path, here: &[Seg]) -> V<UpstreamConfig> {
    nonempty(&u.name, at(here, &[Seg::Key("name")]))?;
    let url_at = || at(here, &[Seg::Key("url")]);
    let target = if u.url == "builtin:echo" {
        UpstreamTarget::Echo
    } else {
        let uri: http::Uri =
            u.url.parse().map_err(|_| Invalid::new(url_at(), format!("`{}` is not a valid URL", u.url)))?;
        let tls = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(Invalid::new(url_at(), "use an http:// or https:// URL, or builtin:echo")),
        };
        let authority = uri.authority().ok_or_else(|| Invalid::new(url_at(), "the URL needs a host"))?;
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(Invalid::new(url_at(), "give only scheme://host:port; request paths are forwarded unchanged"));
        }
        let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
        UpstreamTarget::Url {
            tls,
            authority: format!("{}:{port}", authority.host()),
            host: authority.host().to_owned(),
        }
    };
    let spiffe = upstream_spiffe(u, base, here, &target)?;
    Ok(UpstreamConfig {
        name: u.name.clone(),
        target,
        ca_file: u.ca_file.as_deref().map(|f| resolve(base, f)),
        connect_timeout: duration(
            u.connect_timeout.as_deref(),
            Duration::from_secs(5),
            at(here, &[Seg::Key("connect_timeout")]),
        )?,
        timeout: duration(u.timeout.as_deref(), Duration::from_secs(30), at(here, &[Seg::Key("timeout")]))?,
        http2: u.http2,
        max_idle_per_host: u.max_idle_per_host.unwrap_or(64),
        spiffe,
    })
}

fn upstream_spiffe(
    u: &raw::RawUpstream,
    base: &Path,
    here: &[Seg],
    target: &UpstreamTarget,
) -> V<Option<UpstreamSpiffe>> {
    let key = |k: &'static str| at(here, &[Seg::Key(k)]);
    let client_cert = match (&u.client_cert_file, &u.client_key_file) {
        (Some(c), Some(k)) => Some((resolve(base, c), resolve(base, k))),
        (None, None) => None,
        _ => return Err(Invalid::new(key("client_key_file"), "client_cert_file and client_key_file go together")),
    };
    let Some(expected) = &u.spiffe_id else {
        if u.bundle_file.is_some() || client_cert.is_some() {
            return Err(Invalid::new(key("spiffe_id"), "required with bundle_file or a client certificate"));
        }
        return Ok(None);
    };
    ward_core::SpiffeId::parse(expected).map_err(|e| Invalid::new(key("spiffe_id"), e.to_string()))?;
    if !matches!(target, UpstreamTarget::Url { tls: true, .. }) {
        return Err(Invalid::new(key("url"), "an upstream with a spiffe_id must be https://"));
    }
    if u.ca_file.is_some() {
        return Err(Invalid::new(key("ca_file"), "with spiffe_id the upstream is verified against bundle_file"));
    }
    let bundle = u.bundle_file.as_deref().ok_or_else(|| Invalid::new(key("bundle_file"), "required with spiffe_id"))?;
    Ok(Some(UpstreamSpiffe { expected: expected.clone(), bundle_file: resolve(base, bundle), client_cert }))
}

fn route(
    r: &raw::RawRoute,
    here: &[Seg],
    upstreams: &HashSet<String>,
    providers: &HashSet<String>,
    gateway_labels: &std::collections::BTreeMap<String, String>,
) -> V<Route> {
    nonempty(&r.name, at(here, &[Seg::Key("name")]))?;
    if !r.prefix.starts_with('/') {
        return Err(Invalid::new(at(here, &[Seg::Key("prefix")]), "must start with `/`"));
    }
    if !upstreams.contains(&r.upstream) {
        return Err(Invalid::new(at(here, &[Seg::Key("upstream")]), format!("no upstream is named `{}`", r.upstream)));
    }
    if let Some(p) = r.providers.iter().find(|p| !providers.contains(*p)) {
        return Err(Invalid::new(at(here, &[Seg::Key("providers")]), format!("no provider is named `{p}`")));
    }
    if r.labels.contains_key(ROUTE_LABEL) {
        return Err(Invalid::new(
            at(here, &[Seg::Key("labels")]),
            format!("`{ROUTE_LABEL}` is set by Ward to the route's name"),
        ));
    }
    let mut labels = gateway_labels.clone();
    labels.extend(r.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
    labels.insert(ROUTE_LABEL.to_owned(), r.name.clone());
    Ok(Route {
        name: r.name.clone(),
        prefix: r.prefix.clone(),
        upstream: r.upstream.clone(),
        public: r.public,
        providers: r.providers.clone(),
        login: r.login,
        mtls_strict: match r.mtls.as_deref() {
            None => None,
            Some("STRICT") => Some(true),
            Some("DISABLE") => Some(false),
            Some(other) => {
                return Err(Invalid::new(
                    at(here, &[Seg::Key("mtls")]),
                    format!("`{other}` is not one of STRICT, DISABLE (the listener's mode applies otherwise)"),
                ));
            }
        },
        labels,
    })
}

/// The certificate, key and secret files the gateway reads when it starts,
/// each with the field that names it. Left out: files no `ward gateway`
/// reads (`[issuer] signing_key_file`, read by `ward token issue` only, and
/// best kept off the gateway's host; `[control] admin_token_file`, read by
/// the control plane and the admin commands), and files that settings make
/// unused (an upstream's `ca_file` over plain http, `jwks_ca_file` without
/// `jwks_url`, `bundle_file` with mTLS `DISABLE`).
fn startup_files(c: &Config) -> Vec<(Vec<Seg>, &Path)> {
    let mut out: Vec<(Vec<Seg>, &Path)> = Vec::new();
    let tls = [Seg::Key("gateway"), Seg::Key("tls")];
    out.push((at(&tls, &[Seg::Key("cert_file")]), &c.gateway.tls.cert_file));
    out.push((at(&tls, &[Seg::Key("key_file")]), &c.gateway.tls.key_file));
    if let Some(m) = &c.gateway.tls.mtls {
        out.push((vec![Seg::Key("gateway"), Seg::Key("mtls"), Seg::Key("bundle_file")], &m.bundle_file));
    }
    out.push((vec![Seg::Key("audit"), Seg::Key("hmac_key_file")], &c.audit.hmac_key_file));
    out.push((vec![Seg::Key("audit"), Seg::Key("checkpoint_key_file")], &c.audit.checkpoint_key_file));
    for (i, e) in c.audit.export.iter().enumerate() {
        let here = [Seg::Key("audit"), Seg::Key("export"), Seg::Index(i)];
        match &e.target {
            ward_export::Target::File { .. } => {}
            ward_export::Target::Syslog { ca_file, .. } => out.push((at(&here, &[Seg::Key("ca_file")]), ca_file)),
            ward_export::Target::Webhook { ca_file, token_file, .. } => {
                out.push((at(&here, &[Seg::Key("ca_file")]), ca_file));
                if let Some(t) = token_file {
                    out.push((at(&here, &[Seg::Key("token_file")]), t));
                }
            }
        }
    }
    for (i, w) in c.audit.witnesses.iter().enumerate() {
        out.push((vec![Seg::Key("audit"), Seg::Key("witnesses"), Seg::Index(i), Seg::Key("ca_file")], &w.ca_file));
    }
    for (i, p) in c.providers.iter().enumerate() {
        let here = [Seg::Key("providers"), Seg::Index(i)];
        if let Some(f) = &p.jwks_file {
            out.push((at(&here, &[Seg::Key("jwks_file")]), f));
        }
        if let (Some(_), Some(f)) = (&p.jwks_url, &p.jwks_ca_file) {
            out.push((at(&here, &[Seg::Key("jwks_ca_file")]), f));
        }
        for (j, k) in p.keys.iter().enumerate() {
            let kh = at(&here, &[Seg::Key("keys"), Seg::Index(j)]);
            if let Some(f) = &k.public_key_file {
                out.push((at(&kh, &[Seg::Key("public_key_file")]), f));
            }
            if let Some(f) = &k.secret_file {
                out.push((at(&kh, &[Seg::Key("secret_file")]), f));
            }
        }
    }
    for (i, u) in c.upstreams.iter().enumerate() {
        let here = [Seg::Key("upstreams"), Seg::Index(i)];
        let tls = matches!(u.target, UpstreamTarget::Url { tls: true, .. });
        match (&u.spiffe, &u.ca_file) {
            (Some(s), _) => {
                out.push((at(&here, &[Seg::Key("bundle_file")]), &s.bundle_file));
                if let Some((cert, key)) = &s.client_cert {
                    out.push((at(&here, &[Seg::Key("client_cert_file")]), cert));
                    out.push((at(&here, &[Seg::Key("client_key_file")]), key));
                }
            }
            (None, Some(f)) if tls => out.push((at(&here, &[Seg::Key("ca_file")]), f)),
            (None, _) => {}
        }
    }
    for (i, a) in c.policy.authorizers.iter().enumerate() {
        if let Some(f) = a.ca_file.as_ref().filter(|_| a.url.starts_with("https://")) {
            out.push((vec![Seg::Key("policy"), Seg::Key("authorizers"), Seg::Index(i), Seg::Key("ca_file")], f));
        }
    }
    if let Some(o) = &c.oidc {
        if let Some(f) = &o.ca_file {
            out.push((vec![Seg::Key("oidc"), Seg::Key("ca_file")], f));
        }
        out.push((vec![Seg::Key("oidc"), Seg::Key("client_secret_file")], &o.client_secret_file));
        out.push((vec![Seg::Key("oidc"), Seg::Key("session_key_file")], &o.session_key_file));
    }
    out
}

/// Refuse a configuration whose certificate, key or secret files (see
/// [`startup_files`]) are missing, naming the field and so the line that
/// points at the file: without this, the gateway would stop later with
/// only the path, and a path shared by two fields leaves the operator to
/// guess which one is wrong. Only existence is checked (`metadata`, no
/// read): whether the contents are usable is for the code that loads them.
pub(crate) fn files_exist(c: &Config) -> V<()> {
    for (field, path) in startup_files(c) {
        match std::fs::metadata(path) {
            Ok(m) if m.is_dir() => {
                return Err(Invalid::new(field, format!("{} is a directory, not a file", path.display())));
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Invalid::new(field, format!("{} does not exist", path.display())));
            }
            Err(e) => return Err(Invalid::new(field, format!("{}: {e}", path.display()))),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// A configuration whose files all live under its own directory.
    const TEXT: &str = r#"[gateway]
listen = "127.0.0.1:8443"

[gateway.tls]
cert_file = "tls/server.crt"
key_file = "tls/server.key"

[audit]
dir = "audit"
hmac_key_file = "keys/audit.key"
checkpoint_key_file = "keys/audit-checkpoint.key"

[[upstreams]]
name = "plain"
url = "http://127.0.0.1:9000"
ca_file = "never-read.crt"

[[upstreams]]
name = "mesh"
url = "https://10.0.0.7:8443"
spiffe_id = "spiffe://prod.example.org/orders"
bundle_file = "spiffe/bundle.crt"
client_cert_file = "spiffe/svid.crt"
client_key_file = "spiffe/svid.key"
"#;

    const FILES: [&str; 7] = [
        "tls/server.crt",
        "tls/server.key",
        "keys/audit.key",
        "keys/audit-checkpoint.key",
        "spiffe/bundle.crt",
        "spiffe/svid.crt",
        "spiffe/svid.key",
    ];

    /// A directory with `ward.toml` and every file in `FILES` but `missing`.
    fn setup(missing: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ward.toml"), TEXT).unwrap();
        for f in FILES.iter().filter(|f| **f != missing) {
            let path = dir.path().join(f);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, "not read").unwrap();
        }
        dir
    }

    /// The 1-based line of `TEXT` that starts with `prefix`.
    fn line_of(prefix: &str) -> usize {
        TEXT.lines().position(|l| l.starts_with(prefix)).unwrap() + 1
    }

    #[test]
    fn a_missing_certificate_names_the_field_and_its_line() {
        let dir = setup("tls/server.crt");
        let config = dir.path().join("ward.toml");
        let e = crate::load_to_serve(&config).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("gateway.tls.cert_file"), "{e}");
        assert_eq!((e.line, e.column), (Some(line_of("cert_file")), Some(1)), "{e}");
        let missing = dir.path().join("tls/server.crt");
        assert_eq!(e.message, format!("{} does not exist", missing.display()));
        let shown = e.to_string();
        assert!(shown.starts_with(&format!("{}:5:1: gateway.tls.cert_file: ", config.display())), "{shown}");
    }

    #[test]
    fn a_missing_key_or_bundle_names_its_own_field() {
        for (missing, field, prefix) in [
            ("tls/server.key", "gateway.tls.key_file", "key_file"),
            ("keys/audit-checkpoint.key", "audit.checkpoint_key_file", "checkpoint_key_file"),
            ("spiffe/bundle.crt", "upstreams[1].bundle_file", "bundle_file"),
            ("spiffe/svid.key", "upstreams[1].client_key_file", "client_key_file"),
        ] {
            let dir = setup(missing);
            let e = crate::load_to_serve(&dir.path().join("ward.toml")).unwrap_err();
            assert_eq!(e.field.as_deref(), Some(field), "{e}");
            assert_eq!(e.line, Some(line_of(prefix)), "{e}");
            assert!(e.message.contains(missing), "{e}");
        }
    }

    #[test]
    fn files_that_are_present_or_never_read_pass() {
        // The plain-http upstream's ca_file is never read, so it need not exist.
        let dir = setup("");
        crate::load_to_serve(&dir.path().join("ward.toml")).unwrap();
    }

    #[test]
    fn a_directory_is_not_a_certificate() {
        let dir = setup("tls/server.crt");
        std::fs::create_dir(dir.path().join("tls/server.crt")).unwrap();
        let e = crate::load_to_serve(&dir.path().join("ward.toml")).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("gateway.tls.cert_file"), "{e}");
        assert!(e.message.ends_with("is a directory, not a file"), "{e}");
    }

    #[test]
    fn parse_looks_only_at_the_text() {
        crate::parse(Path::new("/nonexistent/ward.toml"), TEXT).unwrap();
    }
}
