//! `ward`: the command-line entry point.
//!
//! - `ward up`: the embedded default (creates `./ward-data` on first run).
//! - `ward gateway --config FILE`: the gateway alone.
//! - `ward token issue`: sign a token with the local issuer's key.
//! - `ward check-config FILE`: validate a configuration without starting.
//! - `ward policy …`: check, explain and test authorization policies.
//! - `ward audit …`: checkpoints, proofs, verification and reading of the audit log.
#![forbid(unsafe_code)]

mod agent;
mod audit_cmd;
mod control_cmd;
mod detect_cmd;
mod init;
mod policy_cmd;

/// mimalloc: the gateway allocates and frees many small buffers per request
/// across threads; glibc's allocator cost measurably more CPU per request on
/// the anchor benchmark (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand};
use rustls_pki_types::PrivatePkcs8KeyDer;
use rustls_pki_types::pem::PemObject;
use serde_json::Value;
use ward_authn::TokenSigner;
use ward_config::Config;
use ward_core::parse_duration;
use ward_gateway::Gateway;

#[derive(Debug, Parser)]
#[command(name = "ward", version, about = "Ward: a zero-trust security layer for distributed systems")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start Ward on its embedded default: one process, local files.
    Up {
        /// Where keys, certificates, configuration and the audit log live.
        #[arg(long, default_value = "ward-data")]
        data_dir: PathBuf,
        /// Listen address, overriding the configuration (port 0 picks a free port).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// The control plane's listen address, overriding the configuration.
        #[arg(long)]
        control_listen: Option<SocketAddr>,
    },
    /// Run the control plane (token service) alone.
    Control {
        /// The configuration file (with a `[control]` section).
        #[arg(long)]
        config: PathBuf,
    },
    /// OAuth2 clients of the token service (through its admin API).
    Client {
        #[command(flatten)]
        target: ControlTarget,
        #[command(subcommand)]
        command: ClientCommand,
    },
    /// Threat detection: what the detectors saw and decided (through the admin API).
    Detect {
        #[command(flatten)]
        target: ControlTarget,
        #[command(subcommand)]
        command: DetectCommand,
    },
    /// Block addresses, ranges and principals by hand; list and lift blocks (through the admin API).
    Block {
        #[command(flatten)]
        target: ControlTarget,
        #[command(subcommand)]
        command: BlockCommand,
    },
    /// CrowdSec bouncers allowed to read Ward's decisions (GET /v1/decisions/stream with X-Api-Key).
    Bouncer {
        #[command(flatten)]
        target: ControlTarget,
        #[command(subcommand)]
        command: BouncerCommand,
    },
    /// Local users of the token service's login page (through its admin API).
    User {
        #[command(flatten)]
        target: ControlTarget,
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Keep a workload's SVID fresh on disk: join with a one-time token, then renew at half-life over mTLS.
    Agent {
        /// The control plane, e.g. https://127.0.0.1:9443.
        #[arg(long)]
        control: String,
        /// The CA certificate the control plane's TLS certificate chains to.
        #[arg(long)]
        ca: PathBuf,
        /// Where svid.key (0600), svid.crt and bundle.pem are kept.
        #[arg(long)]
        dir: PathBuf,
        /// A file with a join token (`ward cert join-token`), for the first SVID.
        #[arg(long)]
        join_token_file: Option<PathBuf>,
        /// Requested SVID lifetime, e.g. 1h (default: the CA's).
        #[arg(long)]
        ttl: Option<String>,
        /// Get or renew once, then exit.
        #[arg(long)]
        once: bool,
    },
    /// Sign a file with an SVID: prints a detached JWS (ES256, the SVID chain in x5c).
    Sign {
        /// The SVID chain (PEM).
        #[arg(long)]
        cert: PathBuf,
        /// Its private key (PEM).
        #[arg(long)]
        key: PathBuf,
        /// The file to sign.
        file: PathBuf,
    },
    /// Verify a detached JWS over a file against a trust bundle; prints the signer's SPIFFE ID.
    Verify {
        /// The trust bundle (PEM roots).
        #[arg(long)]
        bundle: PathBuf,
        /// The signature made by `ward sign`.
        #[arg(long)]
        signature: PathBuf,
        /// The SPIFFE ID the signer must have.
        #[arg(long)]
        spiffe_id: Option<String>,
        /// A registry entry (`GET /registry/NAME`'s answer, or its JWS) the signer's key must match.
        #[arg(long, requires_all = ["jwks", "issuer"])]
        registry_entry: Option<PathBuf>,
        /// The control plane's JWK set, to check the registry entry's signature.
        #[arg(long)]
        jwks: Option<PathBuf>,
        /// The control plane's issuer URL the entry must name.
        #[arg(long)]
        issuer: Option<String>,
        /// The signed file.
        file: PathBuf,
    },
    /// The trust domain's CA: `ward ca init` makes the root and intermediate.
    Ca {
        #[command(flatten)]
        target: ControlTarget,
        #[command(subcommand)]
        command: CaCommand,
    },
    /// X.509-SVIDs from the control plane's CA (admin API; every issuance is audited).
    Cert {
        #[command(flatten)]
        target: ControlTarget,
        #[command(subcommand)]
        command: CertCommand,
    },
    /// The token service's signing keys.
    Keys {
        #[command(flatten)]
        target: ControlTarget,
        #[command(subcommand)]
        command: KeysCommand,
    },

    /// Run the gateway alone against the upstreams in a configuration file.
    Gateway {
        /// The configuration file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Access tokens: issue one (from the control plane for a client, or from the local issuer for a test
    /// subject), introspect or revoke any token the control plane issued.
    Token {
        #[command(flatten)]
        target: ControlTarget,
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Validate a configuration file (and the certificate and policies it names) without starting.
    CheckConfig {
        /// The configuration file.
        file: PathBuf,
    },
    /// Authorization policies: validate, explain a decision, run a test table.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// The tamper-evident audit log: checkpoints, proofs, verification, reading.
    Audit {
        /// The data directory whose ward.toml names the log.
        #[arg(long, default_value = "ward-data", global = true)]
        data_dir: PathBuf,
        /// A configuration file to use instead of DATA_DIR/ward.toml.
        #[arg(long, global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: AuditCommand,
    },
}

/// How the admin CLI finds the control plane: its configuration and the CA
/// its certificate chains to.
#[derive(Debug, clap::Args)]
struct ControlTarget {
    /// The data directory whose ward.toml names the control plane.
    #[arg(long, default_value = "ward-data", global = true)]
    data_dir: PathBuf,
    /// A configuration file to use instead of DATA_DIR/ward.toml.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// The CA certificate the control plane's certificate chains to (default DATA_DIR/ca.crt).
    #[arg(long, global = true)]
    ca: Option<PathBuf>,
    /// The control plane's URL, when it listens elsewhere than the configuration says (`ward up --control-listen`).
    #[arg(long, global = true)]
    control: Option<String>,
}

#[derive(Debug, Subcommand)]
enum ClientCommand {
    /// Register a client; prints its secret once.
    Create {
        /// The client id.
        #[arg(long)]
        id: String,
        /// Allowed grant (repeatable; default client_credentials).
        #[arg(long = "grant")]
        grants: Vec<String>,
        /// Allowed scope (repeatable).
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// Allowed audience (repeatable; the first is the default).
        #[arg(long = "audience")]
        audiences: Vec<String>,
        /// Access token lifetime, e.g. 15m.
        #[arg(long, default_value = "15m")]
        ttl: String,
        /// A public JWK set file: the client authenticates with private_key_jwt (RFC 7523) and gets no secret.
        #[arg(long)]
        jwks: Option<PathBuf>,
        /// A redirect URI for the authorization_code grant (repeatable; https, or http on loopback; matched exactly).
        #[arg(long = "redirect-uri")]
        redirect_uris: Vec<String>,
        /// A role its own tokens carry in `roles` (repeatable).
        #[arg(long = "role")]
        roles: Vec<String>,
        /// A public client (native app, single-page app): no secret, authorization_code with PKCE only.
        #[arg(long, conflicts_with = "jwks")]
        public: bool,
    },
    /// List clients (never their secrets).
    List,
    /// Delete a client.
    Delete {
        /// The client id.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Create a user; the password is read from the first line of standard input (never from the command line).
    Create {
        /// The username (a-z 0-9 . _ -).
        #[arg(long)]
        name: String,
        /// A role the user's tokens carry in `roles` (repeatable).
        #[arg(long = "role")]
        roles: Vec<String>,
    },
    /// Set a user's password, read from the first line of standard input.
    Passwd {
        /// The username.
        #[arg(long)]
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum CaCommand {
    /// Create a CA for a SPIFFE trust domain: a root (keep its key offline) and an intermediate that signs SVIDs.
    Init {
        /// The trust domain (lower case a-z 0-9 . _ -), e.g. prod.example.org.
        #[arg(long)]
        trust_domain: String,
        /// Where to write it (default DATA_DIR/ca).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Make a new intermediate from the root (needs root.key) and have the running control plane sign with it.
    Rotate {
        /// The CA directory (default: [control] ca_dir).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum DetectCommand {
    /// Events seen, alerts by severity, active blocks, refusals, rate limits, bouncers.
    Status,
}

#[derive(Debug, Subcommand)]
enum BlockCommand {
    /// Block an address (192.0.2.1), a range (192.0.2.0/24) or a principal (principal:NAME).
    Add {
        /// What to block.
        target: String,
        /// For how long, e.g. 30m, 4h, 7d.
        #[arg(long = "for", default_value = "4h")]
        duration: String,
        /// Why (goes to the audit log and `ward block list`).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Lift a block by its id (from `ward block list`).
    Remove {
        /// The decision's id.
        id: u64,
    },
    /// The blocks in force.
    List,
}

#[derive(Debug, Subcommand)]
enum BouncerCommand {
    /// Register a bouncer; prints its API key once.
    Add {
        /// Its name.
        name: String,
    },
    /// Remove a bouncer (its key stops working).
    Delete {
        /// Its name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum CertCommand {
    /// Issue an X.509-SVID: OUT.crt (the chain) and OUT.key (0600), or with --csr only the chain.
    Issue {
        /// The SPIFFE ID, e.g. spiffe://prod.example.org/ns/shop/sa/cart.
        #[arg(long)]
        spiffe_id: String,
        /// Lifetime, e.g. 1h (at most 24h).
        #[arg(long, default_value = "1h")]
        ttl: String,
        /// A PKCS#10 request (PEM) whose key the certificate is for; the private key stays with its owner.
        #[arg(long)]
        csr: Option<PathBuf>,
        /// Output path without extension.
        #[arg(long)]
        out: PathBuf,
    },
    /// A one-time token with which a workload gets its first SVID over its own CSR (POST /svid/join); printed alone.
    JoinToken {
        /// The SPIFFE ID the workload will get.
        #[arg(long)]
        spiffe_id: String,
        /// How long the token may wait to be used, e.g. 10m (at most 24h).
        #[arg(long, default_value = "10m")]
        ttl: String,
    },
    /// Deny one certificate (--serial, hex) or every certificate of a workload (--spiffe-id); gateways refuse it on
    /// their next handshake, and the CA issues nothing more for a denied SPIFFE ID.
    Revoke {
        /// The certificate's serial number (hex, as `ward cert issue` prints it).
        #[arg(long, conflicts_with = "spiffe_id", required_unless_present = "spiffe_id")]
        serial: Option<String>,
        /// The SPIFFE ID.
        #[arg(long)]
        spiffe_id: Option<String>,
        /// How long, e.g. 7d (default 24h: the longest SVID lifetime).
        #[arg(long)]
        r#for: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Add a signing key: published now, signing after the publish lead; retired keys stay published until their tokens expire.
    Rotate,
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Print the latest signed checkpoint (C2SP signed note), after checking its signature.
    Checkpoint,
    /// Records, the latest signed checkpoint, and what the witnesses cosigned (and what waits).
    Status,
    /// Print an inclusion proof for record INDEX (JSON), anchored in the latest checkpoint.
    Prove {
        /// The record's index.
        #[arg(long)]
        index: u64,
        /// Tree size to prove against (default: the latest checkpoint's).
        #[arg(long)]
        size: Option<u64>,
    },
    /// Check a proof printed by `prove` or `consistency` (FILE or stdin).
    VerifyProof {
        /// The proof (default: stdin).
        file: Option<PathBuf>,
        /// The checkpoint verifier key, or a file holding it (default: the keys pinned in
        /// `[audit] verifier_keys`).
        #[arg(long)]
        vkey: Option<String>,
        /// Trust the log directory's own checkpoint.vkey (whoever rewrites the log can replace it).
        #[arg(long)]
        trust_local_key: bool,
        /// For a consistency proof: the older signed checkpoint you kept.
        #[arg(long)]
        from_checkpoint: Option<PathBuf>,
    },
    /// Print a consistency proof between tree sizes FROM and TO (JSON).
    Consistency {
        /// The older size.
        #[arg(long)]
        from: u64,
        /// The newer size (default: the latest checkpoint's).
        #[arg(long)]
        to: Option<u64>,
    },
    /// Recompute the whole tree, check every checkpoint, name the first bad record.
    Verify {
        /// A signed checkpoint saved earlier: the log must be consistent with it.
        #[arg(long)]
        from_checkpoint: Option<PathBuf>,
        /// The checkpoint verifier key, or a file holding it (default: the keys pinned in
        /// `[audit] verifier_keys`).
        #[arg(long)]
        vkey: Option<String>,
        /// Trust the log directory's own checkpoint.vkey (whoever rewrites the log can replace it).
        #[arg(long)]
        trust_local_key: bool,
        /// A witness's cosignature key (repeatable; default: `[audit] witness_keys`): the log
        /// must hold a checkpoint cosigned by the quorum of them.
        #[arg(long = "witness-key")]
        witness_keys: Vec<String>,
        /// How many of the witness keys must have cosigned (default: all).
        #[arg(long)]
        quorum: Option<usize>,
        /// Accept signed checkpoints after the witnessed one (witnesses lagging or down):
        /// those records then rest on the log key alone, and a fork there goes unseen.
        #[arg(long)]
        accept_pending: bool,
    },
    /// Print the HMAC a value (user id, e-mail, IP) is stored as, to search for it.
    Hash {
        /// The value.
        value: String,
    },
    /// Print the last records (JSON lines); -f keeps following.
    Tail {
        /// How many records.
        #[arg(short = 'n', long, default_value_t = 10)]
        lines: u64,
        /// Keep printing new records.
        #[arg(short, long)]
        follow: bool,
    },
    /// Print the records matching every filter given (JSON lines).
    Query {
        /// Records at or after this time (RFC 3339, or a prefix such as 2026-11-23T10).
        #[arg(long)]
        since: Option<String>,
        /// Records before this time.
        #[arg(long)]
        until: Option<String>,
        /// Records of this principal (from `ward audit hash`).
        #[arg(long)]
        principal_hash: Option<String>,
        /// `allow` or `deny`.
        #[arg(long)]
        decision: Option<String>,
        /// `request`, `policy_change`, `key_change`, `startup`, `shutdown`.
        #[arg(long)]
        event: Option<String>,
    },
    /// Create a new checkpoint signing key (0600) and print its verifier key.
    Keygen {
        /// Where to write it (never overwritten).
        #[arg(long)]
        out: PathBuf,
        /// The key name (conventionally the log's origin).
        #[arg(long, default_value = "ward.local/audit")]
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Validate every document in a directory; errors name file, line and field.
    Check {
        /// The policy directory.
        dir: PathBuf,
        /// Take namespaces, routes and labels from this ward.toml.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Print the decision for a request and every policy and rule that matched or failed, and why.
    Explain {
        /// The policy directory.
        #[arg(long)]
        policies: PathBuf,
        /// The request as JSON, or a file holding it
        /// (`{"method":"GET","path":"/api/x","claims":{"sub":"alice"}}`).
        #[arg(long)]
        request: String,
        /// The route to evaluate for (default: found from the path with --config, else `default`).
        #[arg(long)]
        route: Option<String>,
        /// Take namespaces, routes and labels from this ward.toml.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Run a table of requests with expected decisions; exits non-zero on any mismatch.
    Test {
        /// The policy directory.
        dir: PathBuf,
        /// The test table (YAML).
        tests: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Print an access token: `--client ID` asks the control plane for one within the client's scopes and
    /// audiences; `--sub NAME` signs a test token with the local issuer's key (`[issuer]`).
    Issue {
        /// The control-plane client the token is for (its subject).
        #[arg(long, required_unless_present = "sub", conflicts_with_all = ["sub", "claims", "ttl"])]
        client: Option<String>,
        /// Scopes, space-separated (with --client; default: all of the client's).
        #[arg(long, requires = "client")]
        scope: Option<String>,
        /// Subject (`sub`) of a local-issuer token.
        #[arg(long)]
        sub: Option<String>,
        /// Audience (`aud`), repeatable with --client; defaults to the client's or issuer's default.
        #[arg(long = "aud")]
        aud: Vec<String>,
        /// Lifetime of a local-issuer token, e.g. `15m` (at most the issuer's max_ttl; default 15m).
        #[arg(long)]
        ttl: Option<String>,
        /// Extra claim `NAME=VALUE` of a local-issuer token; a comma makes a list (`roles=reader,writer`).
        #[arg(long = "claim")]
        claims: Vec<String>,
    },
    /// Show what the control plane knows of a token (RFC 7662); the token is read from standard input.
    Introspect,
    /// Revoke a token read from standard input (an access token, or a refresh token: its whole family ends),
    /// one by id with --jti and --exp, or every token of a user (--user) or a client (--client); gateways
    /// refuse them at once.
    Revoke {
        /// The token id (`jti`), instead of the token.
        #[arg(long, requires = "exp", conflicts_with_all = ["user", "client"])]
        jti: Option<String>,
        /// Its expiry (unix time), with --jti.
        #[arg(long, requires = "jti")]
        exp: Option<u64>,
        /// End every token issued to this user so far, and their refresh token families.
        #[arg(long, conflicts_with = "client")]
        user: Option<String>,
        /// End every token issued to this client so far (its own and its users'), and their families.
        #[arg(long)]
        client: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if rustls::crypto::aws_lc_rs::default_provider().install_default().is_err() {
        eprintln!("ward: could not install the aws-lc-rs crypto provider");
        return ExitCode::FAILURE;
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WARD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Up { data_dir, listen, control_listen } => up(&data_dir, listen, control_listen),
        Command::Control { config } => control(&config),
        Command::Client { target, command } => return admin_cli(target, AdminCommand::Client(command)),
        Command::User { target, command } => return admin_cli(target, AdminCommand::User(command)),
        Command::Detect { target, command } => return admin_cli(target, AdminCommand::Detect(command)),
        Command::Block { target, command } => return admin_cli(target, AdminCommand::Block(command)),
        Command::Bouncer { target, command } => return admin_cli(target, AdminCommand::Bouncer(command)),
        Command::Keys { target, command } => return admin_cli(target, AdminCommand::Keys(command)),
        Command::Cert { target, command } => return admin_cli(target, AdminCommand::Cert(command)),
        Command::Sign { cert, key, file } => (|| {
            let read = |p: &Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
            let text = |p: &Path| std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()));
            let key = zeroize::Zeroizing::new(text(&key)?);
            let jws = ward_pki::sign::sign(&text(&cert)?, &key, &read(&file)?).map_err(|e| e.to_string())?;
            write_stdout(&format!("{jws}\n"));
            Ok(())
        })(),
        Command::Verify { bundle, signature, spiffe_id, registry_entry, jwks, issuer, file } => (|| {
            let read = |p: &Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
            let text = |p: &Path| std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()));
            let expected = spiffe_id
                .map(|s| ward_core::SpiffeId::parse(&s).map_err(|e| format!("--spiffe-id: {e}")))
                .transpose()?;
            let signer =
                ward_pki::sign::verify_signer(&text(&signature)?, &read(&file)?, &text(&bundle)?, expected.as_ref())
                    .map_err(|e| e.to_string())?;
            let mut said = format!("signed by {}", signer.id);
            if let (Some(entry), Some(jwks), Some(issuer)) = (registry_entry, jwks, issuer) {
                let raw = text(&entry)?;
                // The lookup's JSON answer, or the JWS alone.
                let jws = serde_json::from_str::<Value>(&raw)
                    .ok()
                    .and_then(|v| v["entry"].as_str().map(str::to_owned))
                    .unwrap_or_else(|| raw.trim().to_owned());
                let claims = ward_control::registry::verify_entry(&jws, &text(&jwks)?, &issuer, ward_control::now())
                    .map_err(|e| e.to_string())?;
                let matches = claims.get("spiffe_id").and_then(Value::as_str) == Some(signer.id.as_str())
                    && claims.get("public_key").and_then(Value::as_str) == Some(signer.public_key.as_str());
                if !matches {
                    return Err("the signer's key is not the one its registry entry names".into());
                }
                said.push_str(&format!(", registered as {}", claims.get("sub").and_then(Value::as_str).unwrap_or("?")));
            }
            write_stdout(&format!("{said}\n"));
            Ok(())
        })(),
        Command::Agent { control, ca, dir, join_token_file, ttl, once } => (|| {
            let ttl =
                ttl.map(|t| parse_duration(&t).map(|d| d.as_secs())).transpose().map_err(|e| format!("--ttl: {e}"))?;
            let opts = agent::AgentOptions { control, ca_file: ca, dir, join_token_file, ttl, once };
            control_runtime()?.block_on(async move {
                tokio::select! {
                    r = agent::run(opts) => r,
                    () = terminated() => Ok(()),
                }
            })
        })(),
        Command::Ca { target, command: CaCommand::Init { trust_domain, dir } } => {
            control_cmd::ca_init(&dir.unwrap_or_else(|| target.data_dir.join("ca")), &trust_domain)
                .map(|said| write_stdout(&said))
        }
        Command::Ca { target, command: CaCommand::Rotate { dir } } => ca_rotate(target, dir),
        Command::Gateway { config } => gateway(&config),
        Command::Token {
            target,
            command: TokenCommand::Issue { client: None, sub: Some(sub), aud, ttl, claims, .. },
        } => {
            let config = target.config.unwrap_or_else(|| target.data_dir.join("ward.toml"));
            match aud.as_slice() {
                [] | [_] => {
                    issue(&config, &sub, aud.first().map(String::as_str), ttl.as_deref().unwrap_or("15m"), &claims)
                        .map(|token| write_stdout(&format!("{token}\n")))
                }
                _ => Err("a local-issuer token takes one --aud".into()),
            }
        }
        Command::Token { target, command } => return admin_cli(target, AdminCommand::Token(command)),
        Command::CheckConfig { file } => check_config(&file),
        Command::Policy { command } => return policy(command),
        Command::Audit { data_dir, config, command } => {
            return audit(&config.unwrap_or_else(|| data_dir.join("ward.toml")), command);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("ward: {message}");
            ExitCode::FAILURE
        }
    }
}

fn policy(command: PolicyCommand) -> ExitCode {
    let result = match command {
        PolicyCommand::Check { dir, config } => policy_cmd::check(&dir, config.as_deref()).map(|o| (o, true)),
        PolicyCommand::Explain { policies, request, route, config } => {
            policy_cmd::explain(&policies, &request, route.as_deref(), config.as_deref()).map(|o| (o, true))
        }
        PolicyCommand::Test { dir, tests } => policy_cmd::test(&dir, &tests),
    };
    match result {
        Ok((out, passed)) => {
            write_stdout(&out);
            if passed { ExitCode::SUCCESS } else { ExitCode::FAILURE }
        }
        Err(message) => {
            eprintln!("ward: {message}");
            ExitCode::FAILURE
        }
    }
}

fn audit(config: &Path, command: AuditCommand) -> ExitCode {
    use audit_cmd::LogLocation;
    let location = || LogLocation::from_config(config);
    let result = match command {
        AuditCommand::Checkpoint => location().and_then(|l| audit_cmd::checkpoint(&l)).map(|()| true),
        AuditCommand::Status => location().and_then(|l| audit_cmd::status(&l)).map(|()| true),
        AuditCommand::Prove { index, size } => {
            location().and_then(|l| audit_cmd::prove(&l, index, size)).map(|()| true)
        }
        AuditCommand::Consistency { from, to } => {
            location().and_then(|l| audit_cmd::consistency(&l, from, to)).map(|()| true)
        }
        AuditCommand::VerifyProof { file, vkey, trust_local_key, from_checkpoint } => {
            // An auditor may have only the proof and the key: the log is optional.
            let (dir, pinned) = location().map(|l| (l.dir, l.verifier_keys)).unwrap_or_default();
            let trust = audit_cmd::Trust {
                vkey: vkey.as_deref(),
                pinned: &pinned,
                trust_local_key,
                witness_keys: &[],
                quorum: None,
                accept_pending: false,
            };
            audit_cmd::verify_proof(&dir, file.as_deref(), &trust, from_checkpoint.as_deref()).map(|out| {
                write_stdout(&out);
                true
            })
        }
        AuditCommand::Verify { from_checkpoint, vkey, trust_local_key, witness_keys, quorum, accept_pending } => {
            location().and_then(|l| {
                let witness_keys = if witness_keys.is_empty() { l.witness_keys.clone() } else { witness_keys };
                let trust = audit_cmd::Trust {
                    vkey: vkey.as_deref(),
                    pinned: &l.verifier_keys,
                    trust_local_key,
                    witness_keys: &witness_keys,
                    quorum,
                    accept_pending,
                };
                audit_cmd::verify_log(&l.dir, from_checkpoint.as_deref(), &trust).map(|(out, ok)| {
                    write_stdout(&out);
                    ok
                })
            })
        }
        AuditCommand::Hash { value } => location().and_then(|l| audit_cmd::hash(&l, &value)).map(|()| true),
        AuditCommand::Tail { lines, follow } => {
            location().and_then(|l| audit_cmd::tail(&l, lines, follow)).map(|()| true)
        }
        AuditCommand::Query { since, until, principal_hash, decision, event } => {
            let filter = audit_cmd::Filter { since, until, principal_hash, decision, event };
            location().and_then(|l| audit_cmd::query(&l, &filter)).map(|()| true)
        }
        AuditCommand::Keygen { out, name } => audit_cmd::keygen(&out, &name).map(|()| true),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(message) => {
            eprintln!("ward: {message}");
            ExitCode::FAILURE
        }
    }
}

fn write_stdout(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

fn load(path: &Path) -> Result<Config, String> {
    ward_config::load(path).map_err(|e| e.to_string())
}

/// For the commands that serve (and `check-config`): the files the
/// configuration names must exist, reported at the field that names them.
fn load_to_serve(path: &Path) -> Result<Config, String> {
    ward_config::load_to_serve(path).map_err(|e| e.to_string())
}

/// The control runtime: signals, certificate and key refresh, the demo
/// upstream. Requests are served on the gateway's own worker threads.
fn control_runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))
}

/// SIGTERM or Ctrl-C. The handlers are installed when this is called (not
/// when the future is first polled), so a signal that arrives right after a
/// process announced itself is handled, not fatal.
fn terminated() -> impl Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    async move {
        match (term, int) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            (Ok(mut one), Err(_)) | (Err(_), Ok(mut one)) => {
                one.recv().await;
            }
            (Err(_), Err(_)) => std::future::pending().await,
        }
    }
}

/// Run the gateway — and the control plane when `control` is given (with
/// an optional listen override) — until SIGTERM or Ctrl-C.
fn serve(
    mut config: Config,
    control: Option<Option<SocketAddr>>,
    announce: impl FnOnce(SocketAddr, Option<SocketAddr>),
) -> Result<(), String> {
    let rt = control_runtime()?;
    rt.block_on(async move {
        // One process: revocations reach the gateway's workers in memory.
        let revocations: std::sync::Arc<dyn ward_core::RevocationList> =
            std::sync::Arc::new(ward_core::LocalRevocations::new());
        // The control plane's listener first: its issuer is the gateway's
        // embedded token provider, so the gateway trusts its own control
        // plane's tokens (keys read from its key ring, no HTTP).
        let bound = match control {
            Some(listen) => Some(control_cmd::bind(&config, listen).await?),
            None => None,
        };
        let jwks = std::sync::Arc::new(control_cmd::LocalJwks::default());
        let embedded =
            bound.as_ref().and_then(|b| control_cmd::embedded_provider(&mut config, b, std::sync::Arc::clone(&jwks)));
        let trusts_control = embedded.is_some();
        let mut gateway =
            Gateway::bind_embedded(&config, Some(std::sync::Arc::clone(&revocations)), embedded.into_iter().collect())
                .await
                .map_err(|e| e.to_string())?;
        let addr = gateway.local_addr().map_err(|e| e.to_string())?;
        let control = match bound {
            Some(bound) => {
                let sink = std::sync::Arc::clone(gateway.audit_log()) as std::sync::Arc<dyn ward_audit::AuditSink>;
                // One detector for both: login failures at the token service
                // block the address at the gateway too.
                let detector = gateway.detector().cloned();
                let running = control_cmd::start(&config, bound, sink, Some(revocations), detector).await?;
                jwks.ready(std::sync::Arc::clone(&running.cp));
                if trusts_control {
                    gateway.refresh_provider(control_cmd::EMBEDDED_PROVIDER).await.map_err(|e| e.to_string())?;
                }
                Some(running)
            }
            None => None,
        };
        // `ward up`: the control plane witnesses its gateway's log, in process.
        if let Some(c) = &control
            && let Some(w) = c.cp.witness()
            && w.serves(&config.audit.origin)
        {
            gateway.witnessed_by(ward_gateway::witnessing::local(std::sync::Arc::clone(w)).map_err(|e| e.to_string())?);
        }
        let running = gateway.spawn().map_err(|e| e.to_string())?;
        tracing::info!(%addr, "gateway listening");
        if let Some(c) = &control {
            tracing::info!(addr = %c.addr, issuer = %c.issuer, "control plane listening");
        }
        let stopping = terminated();
        announce(addr, control.as_ref().map(|c| c.addr));
        stopping.await;
        tracing::info!("shutting down");
        if let Some(c) = control {
            c.stop().await;
        }
        running.shutdown().await;
        Ok(())
    })
}

fn gateway(path: &Path) -> Result<(), String> {
    serve(load_to_serve(path)?, None, |_, _| {})
}

fn ca_rotate(location: ControlTarget, dir: Option<PathBuf>) -> Result<(), String> {
    let ControlTarget { data_dir, config, ca, control: url } = location;
    let config = load(&config.unwrap_or_else(|| data_dir.join("ward.toml")))?;
    let control = config.control.as_ref().ok_or("no [control] section in the configuration")?;
    let td = control.trust_domain.clone().ok_or("[control] trust_domain is not set: this control plane runs no CA")?;
    let dir = dir.unwrap_or_else(|| control.ca_dir.clone());
    let target = control_cmd::AdminTarget::at(&config, &ca.unwrap_or_else(|| data_dir.join("ca.crt")), url.as_deref())?;
    let said = control_runtime()?.block_on(control_cmd::ca_rotate(Some(&target), &dir, &td))?;
    write_stdout(&said);
    Ok(())
}

fn control(path: &Path) -> Result<(), String> {
    let config = load_to_serve(path)?;
    // Alone, the control plane serves on every core (TLS and signing are CPU-bound).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(async move {
        // Alone, the control plane writes the audit log itself (a gateway
        // process cannot share the directory: one writer per log).
        let log = ward_gateway::open_audit_log(&config.audit).map_err(|e| e.to_string())?;
        let bound = control_cmd::bind(&config, None).await?;
        let stopping = terminated();
        let running = control_cmd::start(&config, bound, log.clone(), None, None).await?;
        // Its log goes to `[[audit.witnesses]]`, and to its own witness if
        // that serves the log's origin.
        let mut witnesses = ward_gateway::witnessing::configured(&config.audit.witnesses).map_err(|e| e.to_string())?;
        if let Some(w) = running.cp.witness().filter(|w| w.serves(&config.audit.origin)) {
            witnesses.push(ward_gateway::witnessing::local(std::sync::Arc::clone(w)).map_err(|e| e.to_string())?);
        }
        let (stop_witnessing, witnessing) = tokio::sync::watch::channel(false);
        let witnessing =
            tokio::spawn(ward_gateway::witnessing::witness_log(std::sync::Arc::clone(&log), witnesses, witnessing));
        tracing::info!(addr = %running.addr, issuer = %running.issuer, "control plane listening");
        stopping.await;
        running.stop().await;
        if let Err(e) = log.checkpoint_now().await {
            tracing::error!(error = %e, "no final audit checkpoint");
        }
        // A last, bounded chance to get the final checkpoint cosigned.
        let _ = stop_witnessing.send(true);
        let _ = tokio::time::timeout(ward_gateway::witnessing::FINAL_ROUND, witnessing).await;
        Ok(())
    })
}

enum AdminCommand {
    Client(ClientCommand),
    User(UserCommand),
    Keys(KeysCommand),
    Token(TokenCommand),
    Cert(CertCommand),
    Detect(DetectCommand),
    Block(BlockCommand),
    Bouncer(BouncerCommand),
}

fn admin_cli(location: ControlTarget, command: AdminCommand) -> ExitCode {
    let result = (|| {
        let ControlTarget { data_dir, config, ca, control } = location;
        let config = load(&config.unwrap_or_else(|| data_dir.join("ward.toml")))?;
        let ca = ca.unwrap_or_else(|| data_dir.join("ca.crt"));
        let target = control_cmd::AdminTarget::at(&config, &ca, control.as_deref())?;
        control_runtime()?.block_on(async move {
            match command {
                AdminCommand::Client(ClientCommand::Create {
                    id,
                    grants,
                    scopes,
                    audiences,
                    ttl,
                    jwks,
                    redirect_uris,
                    roles,
                    public,
                }) => {
                    let ttl = parse_duration(&ttl).map_err(|e| format!("--ttl: {e}"))?.as_secs();
                    let jwks = jwks
                        .map(|p| {
                            std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display())).and_then(|t| {
                                serde_json::from_str::<Value>(&t).map_err(|e| format!("{}: {e}", p.display()))
                            })
                        })
                        .transpose()?;
                    let spec = control_cmd::NewClient {
                        id: &id,
                        grants: &grants,
                        scopes: &scopes,
                        audiences: &audiences,
                        ttl,
                        jwks,
                        redirect_uris: &redirect_uris,
                        roles: &roles,
                        public,
                    };
                    control_cmd::client_create(&target, &spec).await
                }
                AdminCommand::Client(ClientCommand::List) => control_cmd::client_list(&target).await,
                AdminCommand::Client(ClientCommand::Delete { id }) => control_cmd::client_delete(&target, &id).await,
                AdminCommand::Keys(KeysCommand::Rotate) => control_cmd::keys_rotate(&target).await,
                AdminCommand::Token(TokenCommand::Issue { client: Some(client), scope, aud, .. }) => {
                    control_cmd::token_issue(&target, &client, scope.as_deref(), &aud).await
                }
                AdminCommand::Token(TokenCommand::Issue { .. }) => Err("give --client or --sub".into()),
                AdminCommand::Cert(CertCommand::JoinToken { spiffe_id, ttl }) => {
                    let ttl = parse_duration(&ttl).map_err(|e| format!("--ttl: {e}"))?.as_secs();
                    control_cmd::join_token(&target, &spiffe_id, ttl).await
                }
                AdminCommand::Cert(CertCommand::Revoke { serial, spiffe_id, r#for }) => {
                    let until = r#for
                        .map(|f| parse_duration(&f).map_err(|e| format!("--for: {e}")))
                        .transpose()?
                        .map(|d| control_cmd::unix_now() + d.as_secs());
                    control_cmd::cert_revoke(&target, serial.as_deref(), spiffe_id.as_deref(), until).await
                }
                AdminCommand::Cert(CertCommand::Issue { spiffe_id, ttl, csr, out }) => {
                    let ttl = parse_duration(&ttl).map_err(|e| format!("--ttl: {e}"))?.as_secs();
                    let csr = csr
                        .map(|p| std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display())))
                        .transpose()?;
                    control_cmd::cert_issue(&target, &spiffe_id, ttl, csr.as_deref(), &out).await
                }
                AdminCommand::Token(TokenCommand::Introspect) => {
                    control_cmd::token_introspect(&target, &control_cmd::read_token()?).await
                }
                AdminCommand::Token(TokenCommand::Revoke { jti: Some(jti), exp: Some(exp), .. }) => {
                    control_cmd::token_revoke(&target, serde_json::json!({"jti": jti, "exp": exp})).await
                }
                AdminCommand::Token(TokenCommand::Revoke { user: Some(user), .. }) => {
                    control_cmd::token_revoke(&target, serde_json::json!({"user": user})).await
                }
                AdminCommand::Token(TokenCommand::Revoke { client: Some(client), .. }) => {
                    control_cmd::token_revoke(&target, serde_json::json!({"client": client})).await
                }
                AdminCommand::Token(TokenCommand::Revoke { .. }) => {
                    let token = control_cmd::read_token()?;
                    control_cmd::token_revoke(&target, serde_json::json!({"token": token.as_str()})).await
                }
                AdminCommand::User(UserCommand::Create { name, roles }) => {
                    control_cmd::user_create(&target, &name, &control_cmd::read_password()?, &roles).await
                }
                AdminCommand::Detect(DetectCommand::Status) => detect_cmd::status(&target).await,
                AdminCommand::Block(BlockCommand::Add { target: what, duration, reason }) => {
                    detect_cmd::add(&target, &what, &duration, reason.as_deref()).await
                }
                AdminCommand::Block(BlockCommand::Remove { id }) => detect_cmd::remove(&target, id).await,
                AdminCommand::Block(BlockCommand::List) => detect_cmd::list(&target).await,
                AdminCommand::Bouncer(BouncerCommand::Add { name }) => detect_cmd::bouncer_add(&target, &name).await,
                AdminCommand::Bouncer(BouncerCommand::Delete { name }) => {
                    detect_cmd::bouncer_delete(&target, &name).await
                }
                AdminCommand::User(UserCommand::Passwd { name }) => {
                    control_cmd::user_passwd(&target, &name, &control_cmd::read_password()?).await
                }
            }
        })
    })();
    match result {
        Ok(out) => {
            write_stdout(&out);
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("ward: {message}");
            ExitCode::FAILURE
        }
    }
}

fn shell_word(p: &Path) -> String {
    let s = p.display().to_string();
    if s.bytes().all(|b| b.is_ascii_alphanumeric() || b"/._-+".contains(&b)) {
        s
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

fn up(data_dir: &Path, listen: Option<SocketAddr>, control_listen: Option<SocketAddr>) -> Result<(), String> {
    if init::ensure_data_dir(data_dir)? {
        tracing::info!(data_dir = %data_dir.display(), "created a new data directory (keys are mode 0600)");
    }
    let mut config = load_to_serve(&data_dir.join("ward.toml"))?;
    if let Some(addr) = listen {
        config.gateway.listen = addr;
    }
    let exe = std::env::current_exe().map_or_else(|_| "ward".to_owned(), |p| shell_word(&p));
    let dir = shell_word(data_dir);
    let audit = shell_word(&config.audit.dir);
    let configured_control = config.control.as_ref().map(|c| c.listen);
    let control_listen = config.control.is_some().then_some(control_listen);
    serve(config, control_listen, move |addr, control| {
        // Admin commands find the control plane in ward.toml, unless it was moved.
        let control_flag = match control {
            Some(c) if Some(c) != configured_control => format!(" --control https://{c}"),
            _ => String::new(),
        };
        let control_line = control.map_or_else(String::new, |c| {
            format!("  control   https://{c}/.well-known/openid-configuration  (token service; `ward client create` adds OAuth2 clients)\n")
        });
        let host = if addr.ip().is_loopback() && addr.is_ipv4() {
            format!("127.0.0.1:{}", addr.port())
        } else {
            addr.to_string()
        };
        write_stdout(&format!(
            "\nWard is up.\n\
             \x20 gateway   https://{host}  (TLS; CA certificate {dir}/ca.crt)\n\
             \x20 upstream  built-in echo service behind /api/ (roles reader or writer) and /public/\n\
             \x20 audit     {audit}\n\
             {control_line}\
             \nTry it:\n\
             \x20 TOKEN=$({exe} token issue --data-dir {dir} --sub alice --claim roles=reader)\n\
             \x20 curl --cacert {dir}/ca.crt -H \"Authorization: Bearer $TOKEN\" https://{host}/api/hello\n\
             \x20 curl --cacert {dir}/ca.crt -i https://{host}/api/hello    # no token: 401\n\
             \x20 {exe} audit tail --data-dir {dir} -n 2\n\
             \x20 {exe} audit verify --data-dir {dir}\n\
             \x20 {exe} detect status --data-dir {dir}{control_flag}    # threat detection; `ward block list` shows blocks\n\
             \nStop with Ctrl-C.\n"
        ));
    })
    .map_err(|e| {
        if e.starts_with("cannot listen on") {
            format!("{e}\n(is another Ward running? `ward up --listen ADDR --control-listen ADDR` picks other addresses)")
        } else {
            e
        }
    })
}

fn check_config(path: &Path) -> Result<(), String> {
    let config = load_to_serve(path)?;
    ward_gateway::load_certified_key(&config.gateway.tls.cert_file, &config.gateway.tls.key_file)
        .map_err(|e| e.to_string())?;
    let policies = policy_cmd::check(&config.policy.dir, Some(path))?;
    write_stdout(&format!(
        "{}: ok ({} routes, {} upstreams, {} token providers)\n{policies}",
        path.display(),
        config.routes.len(),
        config.upstreams.len(),
        config.providers.len()
    ));
    Ok(())
}

fn claim_value(raw: &str) -> Value {
    if raw.contains(',') {
        Value::Array(raw.split(',').map(|s| Value::String(s.trim().to_owned())).collect())
    } else {
        Value::String(raw.to_owned())
    }
}

fn issue(config_path: &Path, sub: &str, aud: Option<&str>, ttl: &str, extra: &[String]) -> Result<String, String> {
    let config = load(config_path)?;
    let issuer = config.issuer.ok_or_else(|| format!("{}: no [issuer] section", config_path.display()))?;
    let ttl = parse_duration(ttl).map_err(|e| format!("--ttl: {e}"))?;
    if ttl.is_zero() || ttl > issuer.max_ttl {
        return Err(format!("--ttl must be between 1s and the issuer's max_ttl ({}s)", issuer.max_ttl.as_secs()));
    }
    let aud = aud
        .map(str::to_owned)
        .or(issuer.default_audience.clone())
        .ok_or("--aud is required (the issuer has no default_audience)")?;
    if sub.is_empty() {
        return Err("--sub must not be empty".into());
    }
    let der = PrivatePkcs8KeyDer::from_pem_file(&issuer.signing_key_file)
        .map_err(|e| format!("{}: not a PKCS#8 PEM private key: {e}", issuer.signing_key_file.display()))?;
    let signer = TokenSigner::from_pkcs8(issuer.alg, der.secret_pkcs8_der())
        .map_err(|e| format!("{}: {e}", issuer.signing_key_file.display()))?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_err(|e| e.to_string())?.as_secs();
    let mut claims = serde_json::Map::new();
    for pair in extra {
        let (name, value) = pair.split_once('=').ok_or_else(|| format!("--claim `{pair}`: expected NAME=VALUE"))?;
        if ["iss", "sub", "aud", "exp", "iat", "nbf", "jti"].contains(&name) || name.is_empty() {
            return Err(format!("--claim `{name}`: registered claims are set by their own options"));
        }
        claims.insert(name.to_owned(), claim_value(value));
    }
    let jti: [u8; 16] = ward_crypto::random_bytes().map_err(|e| e.to_string())?;
    claims.insert("iss".into(), Value::String(issuer.issuer.clone()));
    claims.insert("sub".into(), Value::String(sub.to_owned()));
    claims.insert("aud".into(), Value::String(aud));
    claims.insert("iat".into(), now.into());
    claims.insert("nbf".into(), now.into());
    claims.insert("exp".into(), (now + ttl.as_secs()).into());
    claims.insert("jti".into(), Value::String(ward_core::RequestId::from_random(jti).to_string()));
    signer.sign(&claims).map_err(|e| e.to_string())
}
