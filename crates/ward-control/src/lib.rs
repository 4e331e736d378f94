//! Ward's control plane (issue #5, in progress): the token service's HTTP
//! API on its own TLS listener, apart from the data path.
//!
//! | route | what |
//! |---|---|
//! | `GET /.well-known/openid-configuration` | OIDC discovery |
//! | `GET /.well-known/jwks.json` | the signing keys a verifier needs now (published before they sign, kept until their tokens expire) |
//! | `POST /oauth2/token` | RFC 6749 token endpoint; `client_credentials` so far |
//! | `POST /oauth2/introspect` | RFC 7662, authenticated clients only |
//! | `POST /oauth2/revoke` | RFC 7009 |
//!
//! Decisions come from `ward-issuer`; this crate holds the state (the
//! [`store::Store`] and in-memory snapshots read lock-free on the hot path)
//! and speaks HTTP.
#![forbid(unsafe_code)]

mod admin_api;
mod authorize_api;
pub mod ca;
mod detect_api;
pub mod flows;
mod http_api;
pub mod login_guard;
pub mod registry;
mod registry_api;
pub mod replay;
pub mod store;
mod user_grants;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use ward_audit::AuditSink;
use ward_authn::{Algorithm, JwkSet, VerifyingKey};
use ward_issuer::clients::{Client, ClientId, ClientSecret, GrantType};
use ward_issuer::grant::IssuerSettings;
use ward_issuer::keys::{KeyRing, RingKey};

pub use http_api::{router, serve, serve_guarded, serve_with};
pub use store::{Store, StoreError};

/// Control plane settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlSettings {
    /// Issuer URL (`iss`, discovery).
    pub issuer: String,
    /// Longest access token lifetime (seconds).
    pub max_ttl: u64,
    /// Algorithm of new signing keys.
    pub key_alg: Algorithm,
    /// How long a new key is published before it signs (seconds); at least
    /// the verifiers' JWK-set cache lifetime (the JWKS is served with
    /// `max-age` of half this).
    pub publish_lead: u64,
    /// How long an authorization code may wait to be redeemed (seconds).
    pub code_ttl: u64,
    /// How long a refresh token family lives from the login (seconds).
    pub refresh_ttl: u64,
}

impl ControlSettings {
    /// Settings with the defaults for everything but the issuer: 1 h
    /// access tokens, EdDSA, 10 min publish lead, 60 s codes, 24 h refresh
    /// families.
    #[must_use]
    pub fn new(issuer: &str) -> Self {
        Self {
            issuer: issuer.to_owned(),
            max_ttl: 3600,
            key_alg: Algorithm::EdDsa,
            publish_lead: 600,
            code_ttl: ward_issuer::authorize::CODE_TTL,
            refresh_ttl: ward_issuer::refresh::FAMILY_TTL,
        }
    }
}

/// What a new client may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSpec {
    /// Its id.
    pub id: String,
    /// Grants.
    pub grants: Vec<GrantType>,
    /// Scopes.
    pub scopes: Vec<String>,
    /// Audiences (first is the default).
    pub audiences: Vec<String>,
    /// Token lifetime (seconds).
    pub token_ttl: u64,
    /// A public JWK set: the client authenticates with `private_key_jwt`
    /// (RFC 7523) and gets no secret.
    pub jwks: Option<String>,
    /// Redirect URIs for the authorization-code grant (https, or http on
    /// loopback; matched exactly).
    pub redirect_uris: Vec<String>,
    /// Roles the client's own tokens carry.
    pub roles: Vec<String>,
}

/// Why a control-plane operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The request is invalid.
    #[error("{0}")]
    Invalid(String),
}

/// Roles are names: 1–64 of `[A-Za-z0-9._:-]`, no duplicates.
fn check_roles(roles: &[String]) -> Result<(), ControlError> {
    let mut seen = std::collections::HashSet::new();
    for r in roles {
        if r.is_empty() || r.len() > 64 || !r.bytes().all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b)) {
            return Err(ControlError::Invalid(format!("role `{r}`: 1-64 of A-Z a-z 0-9 . _ : -")));
        }
        if !seen.insert(r) {
            return Err(ControlError::Invalid(format!("role `{r}` given twice")));
        }
    }
    Ok(())
}

/// Seconds since the Unix epoch.
#[must_use]
pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The control plane's state.
#[derive(Debug)]
pub struct ControlPlane {
    settings: ControlSettings,
    issuer: IssuerSettings,
    store: Store,
    /// Registered clients by id. Read on every client authentication;
    /// written (under `client_writes`) by an insert or a removal in place.
    clients: RwLock<HashMap<String, Arc<Client>>>,
    /// Held across a client's store write and its map update, so that a
    /// create and a delete of one id cannot interleave (a deleted client
    /// coming back in memory, or a duplicate id passing the check).
    client_writes: std::sync::Mutex<()>,
    ring: RwLock<Rings>,
    /// The published keys, parsed for verification (introspection, revocation).
    verifiers: ArcSwap<Vec<(Option<String>, VerifyingKey)>>,
    /// SHA-256 of the admin API's bearer token (no admin API without one).
    admin_token: Option<[u8; 32]>,
    /// Tokens whose signature was already verified: SHA-256 of the token →
    /// its claims (bounded; expiry and revocation are still checked on every use).
    verified: std::sync::Mutex<HashMap<[u8; 32], Arc<Verified>>>,
    /// Client assertion ids seen while they are valid (replay protection).
    assertions: replay::ReplaySet,
    /// Gateways' revocation list, told about every revocation.
    revocations: Option<Arc<dyn ward_core::RevocationList>>,
    /// Where token-service events go, and the key client addresses are hashed with.
    audit: Option<(Arc<dyn AuditSink>, ward_crypto::KeyedHasher)>,
    /// Login tickets and authorization codes in flight.
    flows: flows::Flows,
    /// Login pages per source and password checks in flight.
    logins: login_guard::LoginGuard,
    /// The trust domain's CA directory, if configured.
    ca_dir: Option<ca::CaDir>,
    /// Its intermediate, ready to sign, and the trust bundle.
    ca: arc_swap::ArcSwapOption<LoadedCa>,
    /// The service registry.
    registry: registry::Registry,
    /// Threat detection: fed every event, enforced at accept, login and
    /// client authentication; serves decisions to bouncers.
    detector: Option<Arc<ward_detect::Detector>>,
    /// The listener's request limits (`[control.limits]`): target, head
    /// and body sizes, checked in front of every route.
    pub(crate) limits: ward_config::Limits,
    /// The transparency-log witness served at `/witness/add-checkpoint`.
    pub(crate) witness: Option<Arc<ward_audit::witness::Witness>>,
    /// What this plane revoked, as the gateways hold it: its tokens' ids
    /// (under its issuer), denied certificates (under
    /// [`ward_core::X509_SERIAL`] and [`ward_core::SPIFFE_ID`]) and the
    /// cut-offs of its users and clients. One list, written in place under
    /// its lock (parallel revocations never lose one another), swept of
    /// what has expired as it grows and by [`Self::maintain`].
    local: ward_core::LocalRevocations,
}

/// What revoking a refresh token did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RefreshRevocation {
    /// Ward issued no such refresh token (or it was purged): nothing to do.
    Unknown,
    /// It was issued to another client than the one asking: nothing done.
    OtherClient,
    /// Its family ended: every refresh token of it, and the live access
    /// tokens it produced (this many), revoked and pushed to the gateways.
    Ended {
        /// The family.
        family: String,
        /// Access tokens revoked with it.
        access: usize,
    },
}

/// What ending every token of a user or a client did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokensEnded {
    /// Tokens issued at or before this moment (seconds) are refused.
    pub cut_off: u64,
    /// Refresh token families ended.
    pub families: usize,
    /// Live access tokens of those families revoked one by one.
    pub access: usize,
}

/// The JWS `typ` of every access token Ward issues (RFC 9068 §2.1).
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";

/// How long past the longest token lifetime a cut-off is kept (the
/// verifiers' clock leeway).
const CUT_OFF_MARGIN: u64 = ward_core::SWEEP_GRACE;

/// How often [`maintain`] sweeps.
pub const MAINTENANCE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

/// Sweep `cp` every [`MAINTENANCE_INTERVAL`] (see [`ControlPlane::sweep`])
/// until `stop` turns true.
pub async fn maintain(cp: Arc<ControlPlane>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(MAINTENANCE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let cp = Arc::clone(&cp);
        match tokio::task::spawn_blocking(move || cp.sweep(now())).await {
            Ok(Ok(n)) if n > 0 => tracing::debug!(removed = n, "control plane swept"),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "control plane sweep failed; retrying at the next one"),
            Err(e) => tracing::warn!(error = %e, "control plane sweep did not finish"),
        }
    }
}

/// The CA as the control plane holds it.
#[derive(Debug)]
pub(crate) struct LoadedCa {
    pub issuer: ward_pki::ca::SvidIssuer,
    /// The trust bundle, PEM.
    pub bundle_pem: String,
    /// The same in the SPIFFE bundle format (JSON).
    pub spiffe_bundle: String,
}

impl LoadedCa {
    fn load(dir: &ca::CaDir) -> Result<Self, ControlError> {
        let (issuer, bundle_pem) = dir.load()?;
        // The sequence grows with every load (SPIFFE Trust Domain and Bundle §4.1.2).
        let spiffe_bundle = ward_pki::ca::spiffe_bundle(&bundle_pem, now(), 300)
            .map_err(|e| ControlError::Invalid(e.to_string()))?
            .to_string();
        Ok(Self { issuer, bundle_pem, spiffe_bundle })
    }
}

/// A token Ward issued whose signature and issuer were verified: its claims,
/// the times and id checked on every use, and its RFC 7662 answer rendered
/// once.
#[derive(Debug)]
pub(crate) struct Verified {
    pub claims: ward_core::Claims,
    pub exp: u64,
    pub nbf: u64,
    pub jti: String,
    /// `{"active":true,…}`.
    pub introspection: bytes::Bytes,
}

/// The signing keys: access tokens (EdDSA or ES256, `[control] key_alg`)
/// and OpenID Connect ID tokens (RS256, which every relying party can
/// verify), rotated together, published in one JWK set.
#[derive(Debug)]
struct Rings {
    access: KeyRing,
    id: KeyRing,
}

impl Rings {
    /// Split stored keys by use, creating the first key of a ring that has none.
    fn load(store: &Store, keys: Vec<RingKey>, access_alg: Algorithm, now: u64) -> Result<Self, ControlError> {
        let (mut id, mut access): (Vec<RingKey>, Vec<RingKey>) =
            keys.into_iter().partition(|k| k.signer().algorithm() == Algorithm::Rs256);
        for (ring, alg) in [(&mut access, access_alg), (&mut id, Algorithm::Rs256)] {
            if ring.is_empty() {
                let first = RingKey::generate(alg, now, now).map_err(|e| ControlError::Invalid(e.to_string()))?;
                store.put_key(&first)?;
                ring.push(first);
            }
        }
        let ring = |keys| KeyRing::from_keys(keys).map_err(|e| ControlError::Invalid(e.to_string()));
        Ok(Self { access: ring(access)?, id: ring(id)? })
    }

    fn jwks(&self, now: u64, max_ttl: u64) -> serde_json::Value {
        let mut keys = Vec::new();
        for ring in [&self.access, &self.id] {
            if let serde_json::Value::Array(k) = ring.jwks(now, max_ttl)["keys"].take() {
                keys.extend(k);
            }
        }
        serde_json::json!({ "keys": keys })
    }
}

fn verifiers(rings: &Rings, now: u64, max_ttl: u64) -> Vec<(Option<String>, VerifyingKey)> {
    JwkSet::parse(rings.jwks(now, max_ttl).to_string().as_bytes())
        .and_then(|set| set.verifying_keys())
        .unwrap_or_default()
}

impl ControlPlane {
    /// Open the store, load clients, keys and revocations, and create the
    /// first signing key if there is none.
    ///
    /// # Errors
    /// [`ControlError`] from the store or key generation.
    pub fn open(store: Store, settings: ControlSettings) -> Result<Self, ControlError> {
        let clients: HashMap<String, Arc<Client>> =
            store.clients()?.into_iter().map(|c| (c.id.as_str().to_owned(), Arc::new(c))).collect();
        let t = now();
        let ring = Rings::load(&store, store.keys()?, settings.key_alg, t)?;
        use ward_core::RevocationList as _;
        store.purge_refresh(t)?;
        let local = ward_core::LocalRevocations::new();
        // What ended within the grace is kept (verifiers' leeway, clock steps).
        let kept = t.saturating_sub(ward_core::SWEEP_GRACE);
        for (jti, exp) in store.revoked(kept)? {
            local.revoke(&settings.issuer, &jti, exp);
        }
        for (namespace, value, until) in store.revoked_certs(kept)? {
            local.revoke(&namespace, &value, until);
        }
        for (owner, name, at, until) in store.cut_offs(kept)? {
            local.cut_off(&settings.issuer, owner, &name, at, until);
        }
        let issuer = IssuerSettings { issuer: settings.issuer.clone(), max_ttl: settings.max_ttl };
        let parsed = verifiers(&ring, t, settings.max_ttl);
        Ok(Self {
            verifiers: ArcSwap::from_pointee(parsed),
            settings,
            issuer,
            store,
            clients: RwLock::new(clients),
            client_writes: std::sync::Mutex::new(()),
            ring: RwLock::new(ring),
            admin_token: None,
            verified: std::sync::Mutex::new(HashMap::new()),
            assertions: replay::ReplaySet::default(),
            revocations: None,
            audit: None,
            flows: flows::Flows::default(),
            logins: login_guard::LoginGuard::default(),
            ca_dir: None,
            ca: arc_swap::ArcSwapOption::empty(),
            registry: registry::Registry::default(),
            detector: None,
            limits: ward_config::Limits::control(),
            witness: None,
            local,
        })
    }

    /// Serve `witness` at `POST /witness/add-checkpoint` (C2SP `tlog-witness`).
    #[must_use]
    pub fn with_witness(mut self, witness: Arc<ward_audit::witness::Witness>) -> Self {
        self.witness = Some(witness);
        self
    }

    /// This plane's witness, if it runs one.
    #[must_use]
    pub fn witness(&self) -> Option<&Arc<ward_audit::witness::Witness>> {
        self.witness.as_ref()
    }

    /// The size of the latest checkpoint this plane's witness cosigned for `origin`.
    #[must_use]
    pub fn witness_seen(&self, origin: &str) -> Option<u64> {
        self.witness.as_ref().and_then(|w| w.seen(origin)).map(|s| s.size)
    }

    /// Serve with `limits` (`[control.limits]`) instead of the defaults
    /// ([`ward_config::Limits::control`]).
    #[must_use]
    pub fn with_limits(mut self, limits: ward_config::Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Feed `detector` with every token-service event and enforce its
    /// blocks (addresses at accept, principals at login and client
    /// authentication); serve its decisions and the bouncer stream.
    #[must_use]
    pub fn with_detector(mut self, detector: Arc<ward_detect::Detector>) -> Self {
        self.detector = Some(detector);
        self
    }

    /// The detector, if detection is on.
    #[must_use]
    pub fn detector(&self) -> Option<&Arc<ward_detect::Detector>> {
        self.detector.as_ref()
    }

    /// Whether `principal` (one of this plane's users or clients) is blocked
    /// now: by name, or in this issuer's namespace.
    pub(crate) fn principal_blocked(&self, principal: &str) -> bool {
        self.detector.as_ref().is_some_and(|d| d.principal_blocked_in(&self.settings.issuer, principal))
    }

    /// Record token-service events (issued, refused, failed client
    /// authentication, revoked, admin calls) in `sink`; client addresses are
    /// stored as HMACs under `hasher`'s key. With a sink, nothing is issued
    /// that was not durably recorded (fail closed, like the gateway).
    #[must_use]
    pub fn with_audit(mut self, sink: Arc<dyn AuditSink>, hasher: ward_crypto::KeyedHasher) -> Self {
        self.audit = Some((sink, hasher));
        self
    }

    /// Push every revocation (and the ones already stored) to `list`, which
    /// the gateways check on every request: in-process for `ward up`, a
    /// shared store when scaled out.
    #[must_use]
    pub fn with_revocations(mut self, list: Arc<dyn ward_core::RevocationList>) -> Self {
        for (namespace, id, until) in self.local.revoked_entries() {
            list.revoke(&namespace, &id, until);
        }
        let issuer = self.settings.issuer.as_str();
        for owner in [ward_core::TokenOwner::Subject, ward_core::TokenOwner::Client] {
            for (name, at, until) in self.local.cut_offs_of(issuer, owner) {
                list.cut_off(issuer, owner, &name, at, until);
            }
        }
        self.revocations = Some(list);
        self
    }

    /// Run the CA in `dir`: the admin API issues X.509-SVIDs, and `GET
    /// /ca/bundle.pem` publishes the trust bundle.
    ///
    /// # Errors
    /// [`ControlError`] when the CA does not load.
    pub fn with_ca(mut self, dir: ca::CaDir) -> Result<Self, ControlError> {
        self.ca.store(Some(Arc::new(LoadedCa::load(&dir)?)));
        self.ca_dir = Some(dir);
        Ok(self)
    }

    /// Load the CA's files again (after `ward ca rotate`); the new
    /// intermediate's fingerprint.
    ///
    /// # Errors
    /// [`ControlError`] when there is no CA or it does not load (the previous one stays).
    pub fn reload_ca(&self) -> Result<String, ControlError> {
        let dir = self.ca_dir.as_ref().ok_or_else(|| ControlError::Invalid("this control plane runs no CA".into()))?;
        self.ca.store(Some(Arc::new(LoadedCa::load(dir)?)));
        Ok(dir.intermediate_fingerprint())
    }

    /// Enable the admin API (`/admin/…`) for callers presenting `token`
    /// (kept only as SHA-256, compared in constant time).
    #[must_use]
    pub fn with_admin_token(mut self, token: &str) -> Self {
        let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.trim().as_bytes());
        let mut h = [0u8; 32];
        h.copy_from_slice(d.as_ref());
        self.admin_token = Some(h);
        self
    }

    /// Whether `presented` is the admin token.
    #[must_use]
    pub fn is_admin(&self, presented: &str) -> bool {
        let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, presented.as_bytes());
        self.admin_token.is_some_and(|h| ward_crypto::constant_time_eq(d.as_ref(), &h))
    }

    /// Registered clients (no secrets: those are only ever stored hashed).
    #[must_use]
    pub fn clients(&self) -> Vec<Client> {
        let mut v: Vec<Client> = self
            .clients
            .read()
            .map_or_else(|_| Vec::new(), |clients| clients.values().map(|c| Client::clone(c)).collect());
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    /// The settings.
    #[must_use]
    pub fn settings(&self) -> &ControlSettings {
        &self.settings
    }

    /// Register a client; returns its secret (shown once, stored only
    /// hashed), or none for a client that authenticates with its own keys.
    ///
    /// # Errors
    /// [`ControlError`] for a bad or duplicate id, unusable keys, or a store failure.
    pub fn create_client(&self, spec: &ClientSpec) -> Result<Option<ClientSecret>, ControlError> {
        self.create(spec, false)
    }

    /// Register a public client (a native app or a single-page app): no
    /// secret and no keys, `token_endpoint_auth_method` `none`. It may use
    /// only the authorization-code grant, always with PKCE, and refresh
    /// tokens; it can revoke its tokens but not introspect.
    ///
    /// # Errors
    /// [`ControlError::Invalid`] for any other grant, keys, roles, or as
    /// [`Self::create_client`].
    pub fn create_public_client(&self, spec: &ClientSpec) -> Result<(), ControlError> {
        if !spec.grants.contains(&GrantType::AuthorizationCode)
            || spec.grants.iter().any(|g| !matches!(g, GrantType::AuthorizationCode | GrantType::RefreshToken))
        {
            return Err(ControlError::Invalid(
                "a public client uses authorization_code (and refresh_token) only: it cannot keep a secret".into(),
            ));
        }
        if spec.jwks.is_some() || !spec.roles.is_empty() {
            return Err(ControlError::Invalid("a public client has no keys and no roles of its own".into()));
        }
        self.create(spec, true).map(|_| ())
    }

    fn create(&self, spec: &ClientSpec, public: bool) -> Result<Option<ClientSecret>, ControlError> {
        let id = ClientId::new(&spec.id).map_err(|e| ControlError::Invalid(e.detail().to_owned()))?;
        check_roles(&spec.roles)?;
        for uri in &spec.redirect_uris {
            ward_issuer::pkce::check_registered_redirect(uri)
                .map_err(|e| ControlError::Invalid(e.detail().to_owned()))?;
        }
        if spec.grants.contains(&GrantType::AuthorizationCode) && spec.redirect_uris.is_empty() {
            return Err(ControlError::Invalid("the authorization_code grant needs at least one redirect URI".into()));
        }
        if spec.token_ttl == 0 || spec.token_ttl > self.settings.max_ttl {
            return Err(ControlError::Invalid(format!("token_ttl must be 1..={} seconds", self.settings.max_ttl)));
        }
        let (secret, hash) = match &spec.jwks {
            _ if public => (None, None),
            Some(jwks) => {
                let keys = JwkSet::parse(jwks.as_bytes())
                    .and_then(|s| s.verifying_keys())
                    .map_err(|e| ControlError::Invalid(format!("jwks: {e}")))?;
                if keys.is_empty() || keys.iter().any(|(_, k)| !k.algorithm().is_asymmetric()) {
                    return Err(ControlError::Invalid("jwks: one or more public keys (no shared secrets)".into()));
                }
                (None, None)
            }
            None => {
                let (secret, hash) = ClientSecret::generate().map_err(|e| ControlError::Invalid(e.to_string()))?;
                (Some(secret), Some(hash))
            }
        };
        let client = Client {
            id,
            secret_hash: hash,
            public_jwks: spec.jwks.clone(),
            grants: spec.grants.iter().copied().collect(),
            scopes: spec.scopes.iter().cloned().collect(),
            audiences: spec.audiences.clone(),
            token_ttl: spec.token_ttl,
            redirect_uris: spec.redirect_uris.clone(),
            roles: spec.roles.clone(),
        };
        let _writing = self.client_writes.lock().map_err(|_| ControlError::Invalid("client lock poisoned".into()))?;
        if self.client(client.id.as_str()).is_some() {
            return Err(ControlError::Invalid(format!("client `{}` exists", client.id)));
        }
        self.store.put_client(&client)?;
        let mut clients = self.clients.write().map_err(|_| ControlError::Invalid("client lock poisoned".into()))?;
        clients.insert(client.id.as_str().to_owned(), Arc::new(client));
        Ok(secret)
    }

    /// Remember a client assertion's `jti` until it expires.
    pub(crate) fn first_use(&self, client: &str, jti: &str, exp: u64, now: u64) -> replay::Seen {
        self.assertions.remember(client, jti, exp, now)
    }

    /// Remove a client; whether it existed.
    ///
    /// # Errors
    /// [`ControlError`] from the store.
    pub fn delete_client(&self, id: &str) -> Result<bool, ControlError> {
        let existed = {
            let _writing =
                self.client_writes.lock().map_err(|_| ControlError::Invalid("client lock poisoned".into()))?;
            let existed = self.store.delete_client(id)?;
            self.clients.write().map_err(|_| ControlError::Invalid("client lock poisoned".into()))?.remove(id);
            existed
        };
        if existed {
            // Whatever it was issued (its own tokens and its users' families) ends with it.
            self.end_tokens_of(ward_core::TokenOwner::Client, id, now())?;
        }
        Ok(existed)
    }

    /// Create a local user (for the authorization-code login page) whose
    /// tokens carry `roles`. Slow on purpose (argon2id): call it off the
    /// async runtime.
    ///
    /// # Errors
    /// [`ControlError::Invalid`] for a bad name, password or role, or an existing user.
    pub fn create_user(&self, name: &str, password: &str, roles: &[String]) -> Result<(), ControlError> {
        ward_issuer::users::check_username(name).map_err(|e| ControlError::Invalid(e.detail().to_owned()))?;
        check_roles(roles)?;
        if self.store.user(name)?.is_some() {
            return Err(ControlError::Invalid(format!("user `{name}` exists")));
        }
        let phc =
            ward_issuer::users::hash_password(password).map_err(|e| ControlError::Invalid(e.detail().to_owned()))?;
        Ok(self.store.put_user(name, &store::UserRecord { phc, roles: roles.to_vec() })?)
    }

    /// The roles of user `name` (none for an unknown user).
    pub(crate) fn user_roles(&self, name: &str) -> Vec<String> {
        self.store.user(name).ok().flatten().map(|u| u.roles).unwrap_or_default()
    }

    /// Replace a user's password.
    ///
    /// # Errors
    /// [`ControlError::Invalid`] for an unknown user or a bad password.
    pub fn set_password(&self, name: &str, password: &str) -> Result<(), ControlError> {
        let Some(user) = self.store.user(name)? else {
            return Err(ControlError::Invalid(format!("no user `{name}`")));
        };
        let phc =
            ward_issuer::users::hash_password(password).map_err(|e| ControlError::Invalid(e.detail().to_owned()))?;
        self.store.put_user(name, &store::UserRecord { phc, roles: user.roles })?;
        // A new password ends every session the old one opened.
        self.end_tokens_of(ward_core::TokenOwner::Subject, name, now())?;
        Ok(())
    }

    /// Whether `password` is `name`'s. An unknown user costs the same
    /// argon2id work as a wrong password, so timing does not tell them apart.
    #[must_use]
    pub fn check_password(&self, name: &str, password: &str) -> bool {
        const DUMMY: &str =
            "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$qK2Qh2NB1TQp8t6Xb4hI0u3GQ7m7C3tZrX3g0b1Jf0s";
        match self.store.user(name) {
            // The hash must still be the user's once the (slow) check is done:
            // a password changed meanwhile makes the old one worthless at once.
            Ok(Some(user)) => {
                ward_issuer::users::verify_password(password, &user.phc)
                    && self.store.user(name).ok().flatten().is_some_and(|now| now.phc == user.phc)
            }
            _ => {
                let _ = ward_issuer::users::verify_password(password, DUMMY);
                false
            }
        }
    }

    /// The ids of the published signing keys.
    #[must_use]
    pub fn key_ids(&self) -> Vec<String> {
        self.ring
            .read()
            .map(|r| r.access.keys().iter().chain(r.id.keys()).map(|k| k.kid().to_owned()).collect())
            .unwrap_or_default()
    }

    /// Registered client ids.
    #[must_use]
    pub fn client_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> =
            self.clients.read().map_or_else(|_| Vec::new(), |clients| clients.keys().cloned().collect());
        ids.sort();
        ids
    }

    /// Start a key rotation at `now`: the new key is published at once and
    /// signs from `now + publish_lead`. Keys no verifier needs are removed.
    /// Returns the new key's id.
    ///
    /// # Errors
    /// [`ControlError`] from key generation or the store.
    pub fn rotate_keys(&self, now: u64) -> Result<String, ControlError> {
        let activates = now + self.settings.publish_lead;
        let fail = |e: &dyn std::fmt::Display| ControlError::Invalid(e.to_string());
        let key = RingKey::generate(self.settings.key_alg, now, activates).map_err(|e| fail(&e))?;
        let id_key = RingKey::generate(Algorithm::Rs256, now, activates).map_err(|e| fail(&e))?;
        let kid = key.kid().to_owned();
        self.store.put_key(&key)?;
        self.store.put_key(&id_key)?;
        let mut rings = self.ring.write().map_err(|_| ControlError::Invalid("key ring lock poisoned".into()))?;
        rings.access.rotate(key).map_err(|e| fail(&e))?;
        rings.id.rotate(id_key).map_err(|e| fail(&e))?;
        let mut removed = rings.access.prune(now, self.settings.max_ttl);
        removed.extend(rings.id.prune(now, self.settings.max_ttl));
        self.verifiers.store(Arc::new(verifiers(&rings, now, self.settings.max_ttl)));
        drop(rings);
        if !removed.is_empty() {
            self.store.delete_keys(&removed)?;
        }
        Ok(kid)
    }

    /// Revoke token id `jti` until `exp` (persisted, then enforced at once).
    ///
    /// # Errors
    /// [`ControlError`] from the store.
    pub fn revoke(&self, jti: &str, exp: u64) -> Result<(), ControlError> {
        use ward_core::RevocationList as _;
        self.store.revoke(jti, exp)?;
        if let Some(list) = &self.revocations {
            list.revoke(&self.settings.issuer, jti, exp);
        }
        self.local.revoke(&self.settings.issuer, jti, exp);
        Ok(())
    }

    /// Revoke every access token in `tokens` (`jti`, `exp`): the ones a
    /// reused code or refresh token produced.
    ///
    /// # Errors
    /// [`ControlError`] from the store (the first failure; the rest are still tried).
    pub fn revoke_all(&self, tokens: &[(String, u64)]) -> Result<(), ControlError> {
        let mut first = Ok(());
        for (jti, exp) in tokens {
            if let Err(e) = self.revoke(jti, *exp) {
                tracing::error!(error = %e, "could not revoke a token of a reused grant");
                if first.is_ok() {
                    first = Err(e);
                }
            }
        }
        first
    }

    /// Revoke the refresh token `token` (RFC 7009 §2): its whole family
    /// ends, with the live access tokens it produced. With `client`, only a
    /// token issued to that client is touched.
    ///
    /// # Errors
    /// [`ControlError`] from the store.
    pub fn revoke_refresh_token(
        &self,
        token: &str,
        client: Option<&str>,
        now: u64,
    ) -> Result<RefreshRevocation, ControlError> {
        let Some((grant, _)) = self.store.refresh_token(&ward_issuer::opaque::hash(token), now)? else {
            return Ok(RefreshRevocation::Unknown);
        };
        if client.is_some_and(|c| c != grant.client_id) {
            return Ok(RefreshRevocation::OtherClient);
        }
        let access = self.store.revoke_family(&grant.family, now)?;
        self.revoke_all(&access)?;
        Ok(RefreshRevocation::Ended { family: grant.family, access: access.len() })
    }

    /// What the refresh token `token` stands for and whether it is live
    /// (unused, its family neither revoked nor ended).
    ///
    /// # Errors
    /// [`ControlError`] from the store.
    pub(crate) fn refresh_token(
        &self,
        token: &str,
        now: u64,
    ) -> Result<Option<(ward_issuer::refresh::RefreshGrant, bool)>, ControlError> {
        Ok(self.store.refresh_token(&ward_issuer::opaque::hash(token), now)?)
    }

    /// End every token of a user (`TokenOwner::Subject`) or of a client
    /// (`TokenOwner::Client`: everything issued to it): a cut-off at `now`
    /// (persisted, pushed to the gateways) refuses every such token issued
    /// until then — and every token of a login until then — and their
    /// refresh token families end. Times are whole seconds: what is issued
    /// in the second of the cut-off is refused too (fail closed); from the
    /// next second on, new tokens and logins are good.
    ///
    /// # Errors
    /// [`ControlError`] from the store.
    pub fn end_tokens_of(
        &self,
        owner: ward_core::TokenOwner,
        name: &str,
        now: u64,
    ) -> Result<TokensEnded, ControlError> {
        use ward_core::RevocationList as _;
        // Kept as long as anything it ends can live: access tokens, and
        // refresh families (and the gateways' sessions riding on them).
        let longest = self.settings.max_ttl.max(self.settings.refresh_ttl).max(self.settings.code_ttl);
        let until = now.saturating_add(longest).saturating_add(CUT_OFF_MARGIN);
        self.store.put_cut_off(owner, name, now, until)?;
        self.local.cut_off(&self.settings.issuer, owner, name, now, until);
        if let Some(list) = &self.revocations {
            list.cut_off(&self.settings.issuer, owner, name, now, until);
        }
        let (families, access) = self.store.revoke_families_of(owner, name, now)?;
        self.revoke_all(&access)?;
        Ok(TokensEnded { cut_off: now, families, access: access.len() })
    }

    /// Whether a login of `subject` through `client` at `auth_time` was
    /// ended by a cut-off of either since.
    pub(crate) fn login_ended(&self, subject: &str, client: &str, auth_time: u64) -> bool {
        use ward_core::RevocationList as _;
        let issuer = &self.settings.issuer;
        [(ward_core::TokenOwner::Subject, subject), (ward_core::TokenOwner::Client, client)]
            .into_iter()
            .any(|(owner, name)| self.local.cut_off_at(issuer, owner, name).is_some_and(|at| auth_time <= at))
    }

    /// The JWK set verifiers need at `now` (published keys, including those
    /// about to sign and those whose tokens may still be live); `None` if
    /// the key ring cannot be read.
    #[must_use]
    pub fn jwks(&self, now: u64) -> Option<serde_json::Value> {
        self.ring.read().ok().map(|ring| ring.jwks(now, self.settings.max_ttl))
    }

    /// Sign an access token's `claims` with the key that signs at `now`,
    /// typed `at+jwt` (RFC 9068 §2.1): no other token Ward signs (ID tokens,
    /// registry entries) can be taken for one, here or at a gateway.
    pub(crate) fn sign_access(&self, claims: &ward_core::Claims, now: u64) -> Option<String> {
        self.sign_typed(claims, now, ACCESS_TOKEN_TYP)
    }

    /// Sign an OpenID Connect ID token's `claims` (typed `JWT`) with the
    /// RS256 ID-token key (OIDC Core §15.1, Discovery §3).
    pub(crate) fn sign_id_token(&self, claims: &ward_core::Claims, now: u64) -> Option<String> {
        let rings = self.ring.read().ok()?;
        rings.id.signing_key(now).ok()?.signer().sign_typed(claims, "JWT").ok()
    }

    /// Sign `claims` with the access-token ring's key and an explicit JWS `typ`.
    pub(crate) fn sign_typed(&self, claims: &ward_core::Claims, now: u64, typ: &str) -> Option<String> {
        let rings = self.ring.read().ok()?;
        rings.access.signing_key(now).ok()?.signer().sign_typed(claims, typ).ok()
    }

    /// Serve the service registry with `rules` (needs a CA: callers are SVIDs).
    #[must_use]
    pub fn with_registry(mut self, rules: Vec<registry::Rule>) -> Self {
        self.registry = registry::Registry::new(rules);
        self
    }

    /// Deny a certificate until `until`: by serial (`namespace` =
    /// [`ward_core::X509_SERIAL`], lower-case hex) or by SPIFFE ID
    /// ([`ward_core::SPIFFE_ID`]: every SVID of that workload, and no new
    /// ones). Persisted, then pushed to the gateways, which refuse it on the
    /// next handshake.
    ///
    /// # Errors
    /// [`ControlError`] for another namespace or a store failure.
    pub fn deny_certificate(&self, namespace: &str, value: &str, until: u64) -> Result<(), ControlError> {
        if namespace != ward_core::X509_SERIAL && namespace != ward_core::SPIFFE_ID {
            return Err(ControlError::Invalid(format!("unknown certificate namespace `{namespace}`")));
        }
        use ward_core::RevocationList as _;
        self.store.revoke_cert(namespace, value, until)?;
        if let Some(list) = &self.revocations {
            list.revoke(namespace, value, until);
        }
        self.local.revoke(namespace, value, until);
        Ok(())
    }

    /// Whether certificates of `namespace` `value` are denied at `now`.
    #[must_use]
    pub fn is_certificate_denied(&self, namespace: &str, value: &str, now: u64) -> bool {
        self.local.revoked_until(namespace, value).is_some_and(|until| until > now)
    }

    /// Sweep what has ended by `now` from memory (revocations, denials and
    /// cut-offs, client-assertion ids, login tickets and codes) and from the
    /// store. Blocking (the store): run it off the async runtime — [`maintain`]
    /// does, every [`MAINTENANCE_INTERVAL`].
    ///
    /// # Errors
    /// [`ControlError`] from the store (memory is swept regardless).
    pub fn sweep(&self, now: u64) -> Result<usize, ControlError> {
        // Revocations are kept a grace past their time: verifiers accept a
        // token for their leeway after `exp`.
        let kept = now.saturating_sub(ward_core::SWEEP_GRACE);
        self.local.prune(kept);
        if let Some(list) = &self.revocations {
            list.sweep(kept);
        }
        self.assertions.expire(now);
        self.flows.expire(now);
        Ok(self.store.purge(kept)?)
    }

    /// Login tickets held now (pages waiting for their user).
    #[must_use]
    pub fn login_tickets(&self) -> usize {
        self.flows.tickets()
    }

    /// Whether `jti` is revoked.
    #[must_use]
    pub fn is_revoked(&self, jti: &str) -> bool {
        ward_core::RevocationList::is_revoked(&self.local, &self.settings.issuer, jti)
    }

    /// The registered client `id`.
    pub(crate) fn client(&self, id: &str) -> Option<Arc<Client>> {
        // A poisoned lock knows no client (fail closed).
        self.clients.read().ok()?.get(id).cloned()
    }
}
