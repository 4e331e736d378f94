//! First run of `ward up`: create the data directory with its keys,
//! certificates, configuration and default policy.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use ward_authn::{Algorithm, TokenSigner};

/// The configuration `ward up` writes, with the default policy.
const DEFAULT_CONFIG: &str = r#"# Ward configuration, written by `ward up`. Edit freely; validate with
#   ward check-config ward-data/ward.toml
# Relative paths are relative to this file.

[gateway]
listen = "127.0.0.1:8443"

[gateway.tls]
cert_file = "tls/server.crt"
key_file = "tls/server.key"
min_version = "1.2"

# Every limit and its default: docs/gateway.md. The control plane's listener
# has its own table, [control.limits].
[gateway.limits]
max_header_bytes = 16384
max_headers = 100
max_body_bytes = 1048576
max_connections = 10000
header_timeout = "10s"
handshake_timeout = "10s"
idle_timeout = "60s"
max_connection_age = "1h"

# The tamper-evident audit log: segments, Merkle tree, signed checkpoints.
# `ward audit verify --data-dir ward-data` checks it against the checkpoint
# key pinned below (`verifier_keys`; keep a copy of it, and of the latest
# signed checkpoint from `ward audit checkpoint`, off this machine: they are
# what proves a later rewrite).
[audit]
dir = "audit"
origin = "ward.local/audit"
hmac_key_file = "keys/audit-hmac.key"
checkpoint_key_file = "keys/audit-checkpoint.key"
commit_interval = "1ms"
checkpoint_interval = "10s"

[authn]
token_from = ["header:authorization"]
cache_entries = 10000
forward_claims = { roles = "x-ward-roles" }

# The control plane: the token service (OIDC discovery, JWKS, OAuth2 token
# endpoint, introspection, revocation) on its own TLS listener, with an admin
# API for `ward client …` and `ward keys rotate`.
[control]
listen = "127.0.0.1:9443"
store = "control/control.redb"
admin_token_file = "keys/control-admin.token"
max_ttl = "1h"
key_alg = "EdDSA"
publish_lead = "10m"

# The local issuer used by `ward token issue`.
[issuer]
issuer = "https://ward.local"
signing_key_file = "keys/token-signing.key"
default_audience = "ward-demo"
max_ttl = "24h"

[[providers]]
name = "local"
issuer = "https://ward.local"
audiences = ["ward-demo"]
jwks_file = "keys/jwks.json"
leeway = "60s"

[[upstreams]]
name = "demo"
url = "builtin:echo"

# Routes. Who may use them is decided by the policies in `policies/`
# (Istio AuthorizationPolicy YAML); anything no policy allows is denied.
[[routes]]
name = "api"
prefix = "/api/"
upstream = "demo"

[[routes]]
name = "public"
prefix = "/public/"
upstream = "demo"
public = true

[policy]
dir = "policies"
default_action = "deny"

# Threat detection: Ward's scenarios (brute force, password spraying, token
# abuse, scanning), per-principal baselines and privilege-escalation checks
# watch every decision; what they catch is blocked for 15 minutes, longer for
# repeat offenders. `ward detect status`, `ward block list|add|remove`.
# Addresses and principals on the allowlist are never blocked or limited.
[detect]
state_file = "detect.json"
allowlist = []

# Rate limits (GCRA): uncomment to cap each client address.
# [[rate_limits]]
# name = "per-ip"
# key = "ip"        # or principal, route, claim:NAME, header:NAME
# rate = 100
# per = "1s"
# burst = 50
"#;

/// The default policy `ward up` writes to `policies/default.yaml`.
const DEFAULT_POLICY: &str = r#"# Ward's default policy, in Istio's AuthorizationPolicy syntax. Anything no
# ALLOW policy here allows is denied. Check with:
#   ward policy check ward-data/policies
# Every route carries the label ward.dev/route=<route name>.
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: api
spec:
  selector:
    matchLabels: {ward.dev/route: api}
  action: ALLOW
  rules:
  - to:
    - operation: {methods: [GET, HEAD]}
    when:
    - key: request.auth.claims[roles]
      values: [reader, writer]
  - to:
    - operation: {methods: [POST, PUT, PATCH, DELETE]}
    when:
    - key: request.auth.claims[roles]
      values: [writer]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: public
spec:
  selector:
    matchLabels: {ward.dev/route: public}
  action: ALLOW
  rules:
  - to:
    - operation: {methods: [GET]}
"#;

/// Write `bytes` to a new file readable only by its owner (0600).
///
/// # Errors
/// The I/O error; an existing file is never overwritten.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

fn write_public(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = OpenOptions::new().write(true).create_new(true).mode(0o644).open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Create the data directory's contents if `ward.toml` is not there yet.
/// Returns whether anything was created.
///
/// # Errors
/// A description of what could not be created.
pub fn ensure_data_dir(dir: &Path) -> Result<bool, String> {
    let config = dir.join("ward.toml");
    if config.exists() {
        return Ok(false);
    }
    let fail = |what: &str, e: &dyn std::fmt::Display| format!("{}: {what}: {e}", dir.display());
    for sub in ["", "tls", "keys", "audit", "policies", "control"] {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir.join(sub))
            .map_err(|e| fail("cannot create directory", &e))?;
    }
    let pki = ward_pki::generate_local_pki("Ward local CA", &["localhost", "127.0.0.1", "::1"])
        .map_err(|e| fail("certificate generation", &e))?;
    write_public(&dir.join("ca.crt"), pki.ca.cert_pem.as_bytes()).map_err(|e| fail("ca.crt", &e))?;
    write_private(&dir.join("ca.key"), pki.ca.key_pem.as_bytes()).map_err(|e| fail("ca.key", &e))?;
    write_public(&dir.join("tls/server.crt"), pki.server.cert_pem.as_bytes())
        .map_err(|e| fail("tls/server.crt", &e))?;
    write_private(&dir.join("tls/server.key"), pki.server.key_pem.as_bytes())
        .map_err(|e| fail("tls/server.key", &e))?;

    let pkcs8 =
        zeroize::Zeroizing::new(TokenSigner::generate_pkcs8(Algorithm::Es256).map_err(|e| fail("signing key", &e))?);
    let signer = TokenSigner::from_pkcs8(Algorithm::Es256, &pkcs8).map_err(|e| fail("signing key", &e))?;
    let key_pem = zeroize::Zeroizing::new(pem("PRIVATE KEY", &pkcs8));
    write_private(&dir.join("keys/token-signing.key"), key_pem.as_bytes())
        .map_err(|e| fail("keys/token-signing.key", &e))?;
    let jwks = serde_json::to_vec_pretty(&signer.public_jwk_set()).map_err(|e| fail("keys/jwks.json", &e))?;
    write_public(&dir.join("keys/jwks.json"), &jwks).map_err(|e| fail("keys/jwks.json", &e))?;
    let hmac: zeroize::Zeroizing<[u8; 32]> =
        zeroize::Zeroizing::new(ward_crypto::random_bytes().map_err(|e| fail("audit key", &e))?);
    write_private(&dir.join("keys/audit-hmac.key"), hmac.as_ref()).map_err(|e| fail("keys/audit-hmac.key", &e))?;
    let admin: zeroize::Zeroizing<[u8; 32]> =
        zeroize::Zeroizing::new(ward_crypto::random_bytes().map_err(|e| fail("control admin token", &e))?);
    let admin = zeroize::Zeroizing::new(format!(
        "{}\n",
        base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, admin.as_ref())
    ));
    write_private(&dir.join("keys/control-admin.token"), admin.as_bytes())
        .map_err(|e| fail("keys/control-admin.token", &e))?;
    // Its own key: checkpoints must not be forgeable with any other key Ward holds.
    let (checkpoint_signer, checkpoint_key) =
        ward_merkle::NoteSigner::generate("ward.local/audit").map_err(|e| fail("audit checkpoint key", &e))?;
    write_private(&dir.join("keys/audit-checkpoint.key"), format!("{}\n", checkpoint_key.as_str()).as_bytes())
        .map_err(|e| fail("keys/audit-checkpoint.key", &e))?;
    let policy = dir.join("policies/default.yaml");
    if !policy.exists() {
        write_public(&policy, DEFAULT_POLICY.as_bytes()).map_err(|e| fail("policies/default.yaml", &e))?;
    }
    // The config goes last: its presence marks a complete data directory.
    // The control plane witnesses the log (C2SP tlog-witness) with a key
    // of its own; `ward audit verify` requires its cosignature.
    let (witness, witness_key) =
        ward_merkle::Cosigner::generate("ward.local/witness").map_err(|e| fail("witness key", &e))?;
    write_private(&dir.join("keys/witness.key"), format!("{}\n", witness_key.as_str()).as_bytes())
        .map_err(|e| fail("keys/witness.key", &e))?;
    // Its verifier key is pinned in the configuration, apart from the log:
    // `ward audit verify` trusts it, not the log directory's own copy.
    let log_vkey = checkpoint_signer.verifier_key();
    let mut pinned = DEFAULT_CONFIG.replace(
        "commit_interval = \"1ms\"\n",
        &format!(
            "verifier_keys = [\"{log_vkey}\"]\nwitness_keys = [\"{}\"]\ncommit_interval = \"1ms\"\n",
            witness.verifier_key()
        ),
    );
    pinned.push_str(&format!(
        "\n# The control plane is a witness of this log (C2SP tlog-witness at\n\
         # POST /witness/add-checkpoint): it cosigns each checkpoint only if it is\n\
         # consistent with the last one it cosigned, so a rewritten or truncated log\n\
         # can never carry its cosignature again. `ward audit verify` requires it.\n\
         [witness]\nkey_file = \"keys/witness.key\"\nstate_file = \"witness/state.json\"\n\n\
         [[witness.logs]]\norigin = \"ward.local/audit\"\nverifier_keys = [\"{log_vkey}\"]\n"
    ));
    write_public(&config, pinned.as_bytes()).map_err(|e| fail("ward.toml", &e))?;
    Ok(true)
}
