//! The Ward gateway: TLS termination, JWT authentication, default-deny
//! authorization, a hardened reverse proxy and one audit record per request.
//!
//! ```text
//! accept ─▶ TLS (rustls/aws-lc-rs) ─▶ limits ─▶ normalise path ─▶ route
//!        ─▶ authenticate (JWT) ─▶ authorize (policies) ─▶ proxy ─▶ respond
//!                      └────────────▶ audit record (every outcome)
//! ```
//!
//! The decisions come from the pure crates (`ward-authn`, `ward-policy`);
//! this crate is the I/O shell around them.
//!
//! Threads: the gateway serves on `worker_threads` worker threads (default:
//! one per CPU), each running its own single-threaded Tokio runtime with its
//! own accept loop and upstream pools, in the manner of nginx's workers. A
//! connection stays on the thread that accepted it, so a request is parsed,
//! authenticated, proxied and answered without crossing threads; measured on
//! the anchor benchmark this costs a third less CPU per request than one
//! work-stealing runtime. Background work (key refresh, certificate reload,
//! the demo upstream) stays on the runtime that called [`Gateway::spawn`].
#![forbid(unsafe_code)]

mod admin;
mod audit;
mod handler;
mod keys;
mod oidc;
mod policy;
mod pool;
mod protect;
mod response;
mod svid;
mod tls;
mod upstream;
pub mod witnessing;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use http::HeaderName;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use ward_audit::{AuditSink, LogSink};
use ward_config::{Config, UpstreamTarget};
use ward_crypto::{KeyedHasher, SecretBytes};
use ward_policy::RouteTable;

pub use audit::open_log as open_audit_log;
pub use keys::{EmbeddedProvider, FileSource, HttpsSource};
pub use policy::ReloadOutcome;
pub use pool::{PooledBody, UpstreamError};
pub use tls::{ServerTls, load_certified_key, provider as crypto_provider};
pub use upstream::start_echo;
pub use ward_serve::idle::IdleTimeout;

use handler::{RouteRuntime, Shared, Worker};
use policy::{Authorizer, PolicyStore};
use upstream::Upstream;

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GatewayError {
    /// The configuration is inconsistent with the environment.
    #[error("configuration: {0}")]
    Config(String),
    /// Certificates or keys for TLS are unusable.
    #[error("TLS: {0}")]
    Tls(String),
    /// Token verification keys are unusable.
    #[error("keys: {0}")]
    Keys(String),
    /// The audit log cannot be opened.
    #[error("audit: {0}")]
    Audit(String),
    /// A listener could not be bound (the address is taken, or not ours).
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        /// Which listener: `gateway` or `admin API`.
        what: &'static str,
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Another I/O failure.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

async fn bind(what: &'static str, addr: std::net::SocketAddr) -> Result<TcpListener, GatewayError> {
    TcpListener::bind(addr).await.map_err(|source| GatewayError::Bind { what, addr, source })
}

/// A gateway whose listener is bound and whose configuration is loaded, but
/// which does not serve yet.
#[derive(Debug)]
pub struct Gateway {
    shared: Arc<Shared>,
    /// One set of upstream pools per worker thread.
    upstreams: Vec<Vec<Upstream>>,
    /// One set of external authorizer clients per worker thread.
    authorizers: Vec<Vec<Authorizer>>,
    policies: Arc<PolicyStore>,
    policy_reload_interval: std::time::Duration,
    tls: Arc<ServerTls>,
    listener: TcpListener,
    reload_interval: std::time::Duration,
    log: Arc<LogSink>,
    admin: Option<(TcpListener, ward_config::Limits)>,
    exporters: Vec<ward_export::Exporter>,
    witnesses: Vec<ward_audit::witness_client::Configured>,
}

impl Gateway {
    /// Load keys and certificates, open the audit log, start the demo echo
    /// service if an upstream asks for it, and bind the listener. Any error
    /// stops here: a half-configured gateway never serves.
    ///
    /// # Errors
    /// [`GatewayError`] describing the first problem.
    pub async fn bind(config: &Config) -> Result<Self, GatewayError> {
        Self::bind_with(config, None).await
    }

    /// As [`Self::bind`], also refusing tokens on `revocations` (which the
    /// token service keeps up to date).
    ///
    /// # Errors
    /// [`GatewayError`] describing the first problem.
    pub async fn bind_with(
        config: &Config,
        revocations: Option<Arc<dyn ward_core::RevocationList>>,
    ) -> Result<Self, GatewayError> {
        Self::bind_embedded(config, revocations, Vec::new()).await
    }

    /// As [`Self::bind_with`], also trusting `embedded` token providers
    /// (after the configured ones): the control plane of the same process.
    /// Their keys are loaded by [`Self::refresh_provider`] once it runs.
    ///
    /// # Errors
    /// [`GatewayError`] describing the first problem.
    pub async fn bind_embedded(
        config: &Config,
        revocations: Option<Arc<dyn ward_core::RevocationList>>,
        embedded: Vec<keys::EmbeddedProvider>,
    ) -> Result<Self, GatewayError> {
        let tls = Arc::new(ServerTls::with_denylist(&config.gateway.tls, revocations.clone())?);
        let authn = keys::authenticator(config, embedded).await?;
        let log = audit::open_log(&config.audit)?;
        let audit: Arc<dyn AuditSink> = Arc::clone(&log) as Arc<dyn AuditSink>;
        // Every later change of a provider's fetched JWK set is a key operation.
        for p in authn.providers() {
            let (sink, name) = (Arc::clone(&audit), format!("jwks:{}", p.settings().name));
            p.keys().set_observer(Arc::new(move |digest, kids| {
                audit::key_change(&*sink, &name, Ok(format!("sha256:{digest} kids={}", kids.join(","))), false);
            }));
        }
        let hmac_key = std::fs::read(&config.audit.hmac_key_file)
            .map_err(|e| GatewayError::Audit(format!("{}: {e}", config.audit.hmac_key_file.display())))?;
        tls::warn_if_readable_by_others(&config.audit.hmac_key_file);
        let pii_hasher = KeyedHasher::new(&SecretBytes::new(hmac_key))
            .map_err(|e| GatewayError::Audit(format!("{}: {e}", config.audit.hmac_key_file.display())))?;
        let exporters = config
            .audit
            .export
            .iter()
            .map(|spec| ward_export::Exporter::new(spec.clone(), &config.audit.dir, &config.audit.origin))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| GatewayError::Audit(e.to_string()))?;
        let witnesses = witnessing::configured(&config.audit.witnesses)?;
        let echo = if config.upstreams.iter().any(|u| u.target == UpstreamTarget::Echo) {
            Some(upstream::start_echo().await?)
        } else {
            None
        };
        let workers = config
            .gateway
            .worker_threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get));
        let upstreams = (0..workers.max(1))
            .map(|_| config.upstreams.iter().map(|u| upstream::build(u, echo)).collect::<Result<Vec<_>, _>>())
            .collect::<Result<Vec<_>, _>>()?;
        let authorizers = (0..workers.max(1))
            .map(|_| config.policy.authorizers.iter().map(policy::authorizer).collect::<Result<Vec<_>, _>>())
            .collect::<Result<Vec<_>, _>>()?;
        let routes = RouteTable::new(config.routes.clone());
        let policies = Arc::new(PolicyStore::open(&config.policy, routes.targets(), Arc::clone(&audit))?);
        let mut route_runtime = HashMap::new();
        for route in &config.routes {
            let upstream = config
                .upstreams
                .iter()
                .position(|u| u.name == route.upstream)
                .ok_or_else(|| GatewayError::Config(format!("route `{}`: unknown upstream", route.name)))?;
            let providers = if route.providers.is_empty() {
                None
            } else {
                Some(route.providers.iter().filter_map(|p| authn.provider_index(p)).collect())
            };
            route_runtime.insert(route.name.clone(), RouteRuntime { providers, upstream });
        }
        let forward_claims = config
            .forward_claims
            .iter()
            .map(|(claim, header)| {
                HeaderName::from_bytes(header.as_bytes())
                    .map(|h| (claim.clone(), h))
                    .map_err(|_| GatewayError::Config(format!("bad header name `{header}`")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        // A `[detect]` section gives the gateway its detector; `ward up`
        // hands the same one to its control plane (`Gateway::detector`).
        let detector = config
            .detect
            .as_ref()
            .map(|d| ward_detect::Detector::open(d.settings.clone(), Some((Arc::clone(&audit), pii_hasher.clone()))))
            .transpose()
            .map_err(|e| GatewayError::Config(e.to_string()))?;
        let shared = Arc::new(Shared {
            protect: protect::Protection::new(config, detector),
            routes,
            route_runtime,
            policies: Arc::clone(&policies),
            path_options: config.policy.path,
            authn,
            audit,
            pii_hasher,
            revocations,
            token_sources: config.token_sources.clone(),
            forward_token: config.forward_token,
            forward_claims,
            limits: config.gateway.limits.clone(),
            trusted_proxy_hops: config.gateway.trusted_proxy_hops,
            strip_request_headers: config
                .gateway
                .strip_request_headers
                .iter()
                .filter_map(|h| http::HeaderName::from_bytes(h.as_bytes()).ok())
                .collect(),
            oidc: config.oidc.as_ref().map(oidc::RelyingParty::new).transpose()?.map(Arc::new),
        });
        let listener = bind("gateway", config.gateway.listen).await?;
        let admin = match &config.admin {
            Some(a) => Some((bind("admin API", a.listen).await?, a.limits.clone())),
            None => None,
        };
        Ok(Self {
            shared,
            upstreams,
            authorizers,
            policies,
            policy_reload_interval: config.policy.reload_interval,
            tls,
            listener,
            reload_interval: config.gateway.tls.reload_interval,
            log,
            admin,
            exporters,
            witnesses,
        })
    }

    /// Fetch token provider `name`'s JWK set now (an embedded provider,
    /// whose source has just become ready).
    ///
    /// # Errors
    /// [`GatewayError::Keys`] for an unknown provider or a failed fetch.
    pub async fn refresh_provider(&self, name: &str) -> Result<(), GatewayError> {
        let p = self.shared.authn.providers().iter().find(|p| p.settings().name == name);
        let p = p.ok_or_else(|| GatewayError::Keys(format!("no token provider `{name}`")))?;
        p.keys().refresh().await.map_err(|e| GatewayError::Keys(format!("provider `{name}`: {e}")))
    }

    /// The bound address (useful with port 0).
    ///
    /// # Errors
    /// The socket error, if any.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The audit log this gateway writes to (the control plane of `ward up`
    /// records its events there too).
    #[must_use]
    pub fn audit_log(&self) -> &Arc<LogSink> {
        &self.log
    }

    /// The detector this gateway enforces and feeds, if detection is on.
    #[must_use]
    pub fn detector(&self) -> Option<&Arc<ward_detect::Detector>> {
        self.shared.protect.detector.as_ref()
    }

    /// Also submit this log's checkpoints to `witness` (`ward up`: the
    /// control plane's witness, in process), beside `[[audit.witnesses]]`.
    pub fn witnessed_by(&mut self, witness: ward_audit::witness_client::Configured) {
        self.witnesses.push(witness);
    }

    /// The admin API's bound address, when `[admin]` is configured.
    #[must_use]
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|(l, _)| l.local_addr().ok())
    }

    /// Start the worker threads; TLS files are watched for changes and
    /// reloaded on SIGHUP by a task on the calling runtime.
    ///
    /// # Errors
    /// [`GatewayError::Io`] if a worker thread or its runtime cannot be
    /// started; workers already started then stop on their own.
    pub fn spawn(self) -> Result<RunningGateway, GatewayError> {
        let addr = self.local_addr().ok();
        let listener = self.listener.into_std()?;
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let detector = self.shared.protect.detector.clone();
        // Refusals below the pipeline go to the same recorder as requests.
        let refusals = ward_serve::Refusals::new(Some(ward_serve::refusal::AuditRefusals::new(
            Arc::clone(&self.shared.audit),
            self.shared.pii_hasher.clone(),
            detector.clone(),
            ward_detect::event::Source::Gateway,
        )));
        let admission = Arc::new(ward_serve::Admission::new(
            detector.clone(),
            self.shared.limits.max_connections_per_ip,
            &ward_serve::BlockedAddresses::Refuse,
        ));
        let door = ward_serve::Door::new(
            "gateway",
            Some(ward_serve::TlsDoor {
                acceptor: TlsAcceptor::from(Arc::clone(&self.tls.config)),
                recheck: self.tls.recheck.clone(),
                plaintext_allowed: self.tls.mtls == Some(ward_config::MtlsMode::Permissive),
            }),
            &self.shared.limits,
            admission,
            Arc::clone(&refusals),
        );
        let mut finished = Vec::with_capacity(self.upstreams.len());
        for (i, (upstreams, authorizers)) in self.upstreams.into_iter().zip(self.authorizers).enumerate() {
            let listener = listener.try_clone()?;
            let worker = Arc::new(Worker { shared: Arc::clone(&self.shared), upstreams, authorizers });
            let (door, mut stopped) = (door.clone(), stopped.clone());
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let (done, finish) = tokio::sync::oneshot::channel::<()>();
            std::thread::Builder::new().name(format!("ward-worker-{i}")).spawn(move || {
                runtime.block_on(async move {
                    let listener = match TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => return tracing::error!(error = %e, "worker cannot listen"),
                    };
                    // Stops on `shutdown`, or when the handle is dropped.
                    let stop = async move {
                        let _ = stopped.wait_for(|s| *s).await;
                    };
                    let service = move |conn: Arc<ward_serve::Conn>| {
                        let peer = Arc::new(handler::Peer::from_conn(&conn, &worker.shared.pii_hasher));
                        let worker = Arc::clone(&worker);
                        hyper::service::service_fn(move |request| {
                            handler::handle(Arc::clone(&worker), request, Arc::clone(&peer))
                        })
                    };
                    ward_serve::serve(listener, door, service, stop).await;
                });
                let _ = done.send(());
            })?;
            finished.push(finish);
        }
        audit::key_change(&*self.shared.audit, "tls_certificate", Ok(self.tls.fingerprint()), true);
        audit::key_change(&*self.shared.audit, "audit_checkpoint_key", Ok(self.log.verifier().key()), true);
        for p in self.shared.authn.providers() {
            if let Some(digest) = p.keys().fetched_digest() {
                audit::key_change(
                    &*self.shared.audit,
                    &format!("jwks:{}", p.settings().name),
                    Ok(format!("sha256:{digest}")),
                    true,
                );
            }
        }
        audit::lifecycle(&*self.shared.audit, true, self.policies.load().digest());
        if let Some(d) = &detector {
            d.spawn_sweeper()?;
        }
        let watcher =
            tokio::spawn(watch_tls(Arc::clone(&self.tls), Arc::clone(&self.shared.audit), self.reload_interval));
        let policy_watcher = tokio::spawn(policy::watch(Arc::clone(&self.policies), self.policy_reload_interval));
        let admin = self.admin.map(|(l, limits)| {
            // Its own dampening table: the admin API's refusals are its own.
            let refusals = ward_serve::Refusals::new(Some(ward_serve::refusal::AuditRefusals::new(
                Arc::clone(&self.shared.audit),
                self.shared.pii_hasher.clone(),
                None,
                ward_detect::event::Source::Gateway,
            )));
            let admission =
                ward_serve::Admission::new(None, limits.max_connections_per_ip, &ward_serve::BlockedAddresses::Refuse);
            let door = ward_serve::Door::new("admin API", None, &limits, Arc::new(admission), refusals);
            let (log, audit) = (Arc::clone(&self.log), Arc::clone(&self.shared.audit));
            let (limits, hasher) = (Arc::new(limits), self.shared.pii_hasher.clone());
            let mut stopped = stopped.clone();
            tokio::spawn(async move {
                let stop = async move {
                    let _ = stopped.wait_for(|s| *s).await;
                };
                let service = move |conn: Arc<ward_serve::Conn>| admin::Service {
                    log: Arc::clone(&log),
                    audit: Arc::clone(&audit),
                    limits: Arc::clone(&limits),
                    hasher: hasher.clone(),
                    peer: conn.peer.ip(),
                };
                ward_serve::serve(l, door, service, stop).await;
            })
        });
        let (stop_exports, exports_stopped) = tokio::sync::watch::channel(false);
        // One task submits each checkpoint to every witness (it gathers their
        // cosignatures in one file); a witness that is down never slows the log.
        let witnessing = (!self.witnesses.is_empty()).then(|| {
            tokio::spawn(witnessing::witness_log(Arc::clone(&self.log), self.witnesses, exports_stopped.clone()))
        });
        let mut exporters = Vec::with_capacity(self.exporters.len());
        for exporter in self.exporters {
            // Its own thread and runtime: a slow SIEM never touches the data path
            // or the control runtime.
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let (log, stopped) = (Arc::clone(&self.log), exports_stopped.clone());
            exporters.push(std::thread::Builder::new().name("ward-export".into()).spawn(move || {
                runtime.block_on(exporter.run(move || log.durable_size(), stopped));
            })?);
        }
        Ok(RunningGateway {
            addr,
            tls: self.tls,
            audit: Arc::clone(&self.shared.audit),
            log: self.log,
            policies: self.policies,
            stop,
            finished,
            watcher,
            policy_watcher,
            admin,
            stop_exports,
            exporters,
            witnessing,
            detector,
        })
    }
}

async fn watch_tls(tls: Arc<ServerTls>, audit: Arc<dyn AuditSink>, every: std::time::Duration) {
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut tick = tokio::time::interval(every);
    loop {
        let forced = tokio::select! {
            _ = tick.tick() => false,
            Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => true,
        };
        if let Some(outcome) = tls.reload_outcome(forced) {
            audit::key_change(&*audit, "tls_certificate", outcome, false);
        }
    }
}

/// A serving gateway.
#[derive(Debug)]
pub struct RunningGateway {
    addr: Option<SocketAddr>,
    tls: Arc<ServerTls>,
    audit: Arc<dyn AuditSink>,
    log: Arc<LogSink>,
    policies: Arc<PolicyStore>,
    stop: tokio::sync::watch::Sender<bool>,
    finished: Vec<tokio::sync::oneshot::Receiver<()>>,
    watcher: tokio::task::JoinHandle<()>,
    policy_watcher: tokio::task::JoinHandle<()>,
    admin: Option<tokio::task::JoinHandle<()>>,
    stop_exports: tokio::sync::watch::Sender<bool>,
    exporters: Vec<std::thread::JoinHandle<()>>,
    witnessing: Option<tokio::task::JoinHandle<()>>,
    detector: Option<Arc<ward_detect::Detector>>,
}

impl RunningGateway {
    /// The address it listens on.
    #[must_use]
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.addr
    }

    /// Wait until every audit record so far is on disk.
    ///
    /// # Errors
    /// The sink's error, if it is failing.
    pub async fn flush_audit(&self) -> Result<(), ward_audit::AuditError> {
        self.audit.flush().await
    }

    /// Reload the TLS files now, as SIGHUP does. Returns whether a new certificate is served.
    #[must_use]
    pub fn reload_tls(&self) -> bool {
        let outcome = self.tls.reload_outcome(true);
        let applied = matches!(outcome, Some(Ok(_)));
        if let Some(outcome) = outcome {
            audit::key_change(&*self.audit, "tls_certificate", outcome, false);
        }
        applied
    }

    /// The audit log (for proofs and checkpoints).
    #[must_use]
    pub fn audit_log(&self) -> &Arc<LogSink> {
        &self.log
    }

    /// Re-read the policy directory now, as SIGHUP does.
    pub fn reload_policies(&self) -> ReloadOutcome {
        self.policies.reload(true)
    }

    /// The digest of the policy bundle in force.
    #[must_use]
    pub fn policy_digest(&self) -> String {
        self.policies.load().digest().to_string()
    }

    /// Stop accepting, let open requests finish (at most 10 s), flush the audit log.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        self.wait().await;
        if let Some(d) = &self.detector {
            d.stop();
        }
        audit::lifecycle(&*self.audit, false, self.policies.load().digest());
        let _ = self.audit.flush().await;
        if let Err(e) = self.log.checkpoint_now().await {
            tracing::error!(error = %e, "no final audit checkpoint");
        }
        // Exporters resume from their cursors on the next start.
        let _ = self.stop_exports.send(true);
        // The witnesses get a last, bounded chance to cosign the final checkpoint.
        if let Some(task) = self.witnessing.take() {
            let _ = tokio::time::timeout(witnessing::FINAL_ROUND, task).await;
        }
        let exporters = std::mem::take(&mut self.exporters);
        let _ = tokio::task::spawn_blocking(move || {
            for e in exporters {
                let _ = e.join();
            }
        })
        .await;
    }

    /// Wait until every worker has stopped (they stop only through
    /// [`shutdown`](Self::shutdown) or when this handle is dropped).
    pub async fn wait(&mut self) {
        for finish in &mut self.finished {
            let _ = finish.await;
        }
        self.watcher.abort();
        self.policy_watcher.abort();
        if let Some(a) = &self.admin {
            a.abort();
        }
    }
}
