//! The file as written: serde types with `deny_unknown_fields`. Validation
//! turns them into the types in `validate.rs`.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    pub gateway: RawGateway,
    pub audit: RawAudit,
    #[serde(default)]
    pub authn: RawAuthn,
    #[serde(default)]
    pub issuer: Option<RawIssuer>,
    #[serde(default)]
    pub providers: Vec<RawProvider>,
    #[serde(default)]
    pub upstreams: Vec<RawUpstream>,
    #[serde(default)]
    pub routes: Vec<RawRoute>,
    #[serde(default)]
    pub policy: RawPolicy,
    #[serde(default)]
    pub admin: Option<RawAdmin>,
    #[serde(default)]
    pub control: Option<RawControl>,
    #[serde(default)]
    pub oidc: Option<RawOidc>,
    #[serde(default)]
    pub detect: Option<RawDetect>,
    #[serde(default)]
    pub rate_limits: Vec<RawRateLimit>,
    #[serde(default)]
    pub witness: Option<RawWitness>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawWitness {
    pub key_file: String,
    #[serde(default)]
    pub state_file: Option<String>,
    #[serde(default)]
    pub logs: Vec<RawWitnessedLog>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawWitnessedLog {
    pub origin: String,
    pub verifier_keys: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDetect {
    #[serde(default)]
    pub state_file: Option<String>,
    #[serde(default)]
    pub allowlist: Vec<String>,
    #[serde(default)]
    pub escalation: Option<f64>,
    #[serde(default)]
    pub max_block: Option<String>,
    #[serde(default)]
    pub offence_window: Option<String>,
    #[serde(default)]
    pub admin_routes: Vec<String>,
    #[serde(default)]
    pub privileged_roles: Option<Vec<String>>,
    #[serde(default)]
    pub admin_learning: Option<String>,
    #[serde(default)]
    pub block_duration: Option<String>,
    #[serde(default)]
    pub disable: Vec<String>,
    #[serde(default)]
    pub scenarios: Vec<RawScenario>,
    #[serde(default)]
    pub anomaly: Option<RawAnomaly>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawScenario {
    pub name: String,
    #[serde(default)]
    pub reasons: Vec<String>,
    #[serde(default)]
    pub statuses: Vec<u16>,
    #[serde(default)]
    pub source: Option<String>,
    pub key: String,
    #[serde(default)]
    pub distinct: Option<String>,
    pub capacity: u32,
    pub leak: String,
    pub severity: String,
    #[serde(default)]
    pub action: Option<String>,
    #[serde(default)]
    pub duration: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAnomaly {
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub window: Option<String>,
    #[serde(default)]
    pub alpha: Option<f64>,
    #[serde(default)]
    pub warmup: Option<u32>,
    #[serde(default)]
    pub z: Option<f64>,
    #[serde(default)]
    pub min_count: Option<u32>,
    #[serde(default)]
    pub min_ratio: Option<f64>,
    #[serde(default)]
    pub cooldown: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRateLimit {
    pub name: String,
    pub key: String,
    pub rate: u32,
    pub per: String,
    #[serde(default)]
    pub burst: Option<u32>,
    #[serde(default)]
    pub routes: Vec<String>,
    #[serde(default)]
    pub shadow: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawControl {
    pub listen: String,
    #[serde(default)]
    pub issuer: Option<String>,
    #[serde(default)]
    pub store: Option<String>,
    pub admin_token_file: String,
    #[serde(default)]
    pub max_ttl: Option<String>,
    #[serde(default)]
    pub key_alg: Option<String>,
    #[serde(default)]
    pub publish_lead: Option<String>,
    #[serde(default)]
    pub code_ttl: Option<String>,
    #[serde(default)]
    pub refresh_ttl: Option<String>,
    #[serde(default)]
    pub trust_domain: Option<String>,
    #[serde(default)]
    pub ca_dir: Option<String>,
    #[serde(default)]
    pub registry: Vec<RawRegistryRule>,
    #[serde(default)]
    pub audiences: Option<Vec<String>>,
    #[serde(default)]
    pub limits: RawLimits,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRegistryRule {
    pub name: String,
    pub writers: Vec<String>,
    #[serde(default)]
    pub readers: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAdmin {
    pub listen: String,
    #[serde(default)]
    pub limits: RawLimits,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPolicy {
    #[serde(default)]
    pub dir: Option<String>,
    #[serde(default)]
    pub default_action: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub root_namespace: Option<String>,
    #[serde(default)]
    pub groups_claim: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub path_case: Option<String>,
    #[serde(default)]
    pub encoded_slashes: Option<String>,
    #[serde(default)]
    pub path_params: Option<String>,
    #[serde(default)]
    pub double_encoding: Option<String>,
    #[serde(default)]
    pub reload_interval: Option<String>,
    #[serde(default)]
    pub authorizers: Vec<RawAuthorizer>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAuthorizer {
    pub name: String,
    pub url: String,
    #[serde(default)]
    pub ca_file: Option<String>,
    #[serde(default)]
    pub timeout: Option<String>,
    #[serde(default)]
    pub include_headers: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGateway {
    pub listen: String,
    #[serde(default)]
    pub worker_threads: Option<usize>,
    #[serde(default)]
    pub trusted_proxy_hops: usize,
    #[serde(default)]
    pub strip_request_headers: Option<Vec<String>>,
    pub tls: RawTls,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub mtls: Option<RawMtls>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMtls {
    pub mode: String,
    #[serde(default)]
    pub bundle_file: Option<String>,
    #[serde(default)]
    pub trust_domain: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTls {
    pub cert_file: String,
    pub key_file: String,
    #[serde(default)]
    pub min_version: Option<String>,
    #[serde(default)]
    pub reload_interval: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLimits {
    pub max_header_bytes: Option<usize>,
    pub max_headers: Option<usize>,
    pub max_body_bytes: Option<u64>,
    pub max_connections: Option<usize>,
    pub max_connections_per_ip: Option<u32>,
    pub header_timeout: Option<String>,
    pub handshake_timeout: Option<String>,
    pub idle_timeout: Option<String>,
    pub headers_with_underscores: Option<String>,
    pub max_uri_bytes: Option<usize>,
    pub max_connection_age: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAudit {
    /// The v0 JSON-lines file: refused with a pointer to `dir`.
    #[serde(default)]
    pub file: Option<String>,
    #[serde(default)]
    pub dir: Option<String>,
    pub hmac_key_file: String,
    #[serde(default)]
    pub checkpoint_key_file: Option<String>,
    #[serde(default)]
    pub verifier_keys: Vec<String>,
    #[serde(default)]
    pub witness_keys: Vec<String>,
    #[serde(default)]
    pub origin: Option<String>,
    #[serde(default)]
    pub queue: Option<usize>,
    #[serde(default)]
    pub commit_interval: Option<String>,
    #[serde(default)]
    pub commit_records: Option<usize>,
    #[serde(default)]
    pub checkpoint_every: Option<usize>,
    #[serde(default)]
    pub checkpoint_interval: Option<String>,
    #[serde(default)]
    pub segment_bytes: Option<usize>,
    #[serde(default)]
    pub retention_max_age: Option<String>,
    #[serde(default)]
    pub retention_max_bytes: Option<usize>,
    #[serde(default)]
    pub danger_async: bool,
    #[serde(default)]
    pub export: Vec<RawExport>,
    #[serde(default)]
    pub witnesses: Vec<RawAuditWitness>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAuditWitness {
    pub url: String,
    pub key: String,
    pub ca_file: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawExport {
    pub name: String,
    pub kind: String,
    #[serde(default)]
    pub format: Option<String>,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub address: Option<String>,
    #[serde(default)]
    pub server_name: Option<String>,
    #[serde(default)]
    pub hostname: Option<String>,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub ca_file: Option<String>,
    #[serde(default)]
    pub token_file: Option<String>,
    #[serde(default)]
    pub batch: Option<usize>,
    #[serde(default)]
    pub events: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAuthn {
    #[serde(default)]
    pub token_from: Option<Vec<String>>,
    #[serde(default)]
    pub cache_entries: Option<usize>,
    #[serde(default)]
    pub forward_token: bool,
    #[serde(default)]
    pub forward_claims: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawIssuer {
    pub issuer: String,
    pub signing_key_file: String,
    #[serde(default)]
    pub alg: Option<String>,
    #[serde(default)]
    pub default_audience: Option<String>,
    #[serde(default)]
    pub max_ttl: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawProvider {
    pub name: String,
    pub issuer: String,
    pub audiences: Vec<String>,
    #[serde(default)]
    pub jwks_file: Option<String>,
    #[serde(default)]
    pub jwks_url: Option<String>,
    #[serde(default)]
    pub jwks_ca_file: Option<String>,
    #[serde(default)]
    pub jwks_min_refresh_interval: Option<String>,
    #[serde(default)]
    pub jwks_refresh_interval: Option<String>,
    #[serde(default)]
    pub keys: Vec<RawKey>,
    #[serde(default)]
    pub leeway: Option<String>,
    #[serde(default)]
    pub max_lifetime: Option<String>,
    #[serde(default)]
    pub require_at_jwt: Option<bool>,
    #[serde(default)]
    pub max_token_bytes: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawKey {
    #[serde(default)]
    pub kid: Option<String>,
    pub alg: String,
    #[serde(default)]
    pub public_key_file: Option<String>,
    #[serde(default)]
    pub secret_file: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUpstream {
    pub name: String,
    pub url: String,
    #[serde(default)]
    pub ca_file: Option<String>,
    #[serde(default)]
    pub connect_timeout: Option<String>,
    #[serde(default)]
    pub timeout: Option<String>,
    #[serde(default)]
    pub http2: bool,
    #[serde(default)]
    pub max_idle_per_host: Option<usize>,
    #[serde(default)]
    pub spiffe_id: Option<String>,
    #[serde(default)]
    pub bundle_file: Option<String>,
    #[serde(default)]
    pub client_cert_file: Option<String>,
    #[serde(default)]
    pub client_key_file: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRoute {
    pub name: String,
    pub prefix: String,
    pub upstream: String,
    #[serde(default)]
    pub public: bool,
    #[serde(default)]
    pub providers: Vec<String>,
    #[serde(default)]
    pub login: bool,
    #[serde(default)]
    pub mtls: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawOidc {
    pub issuer: String,
    pub client_id: String,
    pub client_secret_file: String,
    pub redirect_uri: String,
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    #[serde(default)]
    pub ca_file: Option<String>,
    pub session_key_file: String,
    #[serde(default)]
    pub session_idle: Option<String>,
    #[serde(default)]
    pub session_absolute: Option<String>,
    #[serde(default)]
    pub logout_path: Option<String>,
    #[serde(default)]
    pub post_logout_redirect: Option<String>,
}
