//! The policy set in force, its hot reload, and external authorizers.
//!
//! The set is compiled off the request path and swapped atomically: a
//! request evaluates against one set from start to end, and a set that does
//! not load or compile is refused while the last good one stays in force.
//! Every change, applied or refused, is an audit record carrying the old
//! and new digests.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use ward_audit::{AuditSink, PolicyChange};
use ward_config::{AuthorizerConfig, PolicySettings, UpstreamConfig, UpstreamTarget};
use ward_core::{Effect, ReasonCode};
use ward_policy::{EngineConfig, PolicySet, Target, load_dir, policy_files};

use crate::GatewayError;
use crate::upstream::{self, Upstream};

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// Nothing changed on disk.
    Unchanged,
    /// A new set is in force (its digest).
    Applied(String),
    /// The new files were refused (the errors); the old set stays.
    Rejected(Vec<String>),
}

/// The policy set in force and what is needed to rebuild it.
#[derive(Debug)]
pub(crate) struct PolicyStore {
    current: ArcSwap<PolicySet>,
    dir: PathBuf,
    config: EngineConfig,
    targets: Vec<Target>,
    fingerprint: Mutex<Vec<(String, u64, SystemTime)>>,
    audit: Arc<dyn AuditSink>,
}

/// Size and modification time of every policy file: a cheap way to notice
/// a change without reading and hashing the files every interval.
fn fingerprint(dir: &Path) -> Vec<(String, u64, SystemTime)> {
    policy_files(dir)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|rel| {
            let meta = std::fs::metadata(dir.join(&rel)).ok()?;
            Some((rel, meta.len(), meta.modified().unwrap_or(SystemTime::UNIX_EPOCH)))
        })
        .collect()
}

fn compile(dir: &Path, config: &EngineConfig, targets: &[Target]) -> Result<PolicySet, Vec<String>> {
    let loaded = load_dir(dir, config).map_err(|e| e.iter().map(ToString::to_string).collect::<Vec<_>>())?;
    PolicySet::compile(loaded, targets, config).map_err(|e| e.iter().map(ToString::to_string).collect())
}

impl PolicyStore {
    /// Load the directory; at start-up any error is fatal.
    pub(crate) fn open(
        settings: &PolicySettings,
        targets: Vec<Target>,
        audit: Arc<dyn AuditSink>,
    ) -> Result<Self, GatewayError> {
        let print = fingerprint(&settings.dir);
        let set = compile(&settings.dir, &settings.engine, &targets).map_err(|errors| {
            GatewayError::Config(format!("policies in {}:\n  {}", settings.dir.display(), errors.join("\n  ")))
        })?;
        tracing::info!(dir = %settings.dir.display(), digest = %set.digest(), policies = set.policies().len(), "policies loaded");
        if settings.engine.default_action == ward_policy::DefaultAction::Allow {
            tracing::warn!("policy default_action is `allow`: requests no ALLOW policy covers are let through");
        }
        Ok(Self {
            current: ArcSwap::from_pointee(set),
            dir: settings.dir.clone(),
            config: settings.engine.clone(),
            targets,
            fingerprint: Mutex::new(print),
            audit,
        })
    }

    /// The set in force.
    pub(crate) fn load(&self) -> arc_swap::Guard<Arc<PolicySet>> {
        self.current.load()
    }

    /// Re-read the directory if it changed (or `forced`), compile, swap.
    pub(crate) fn reload(&self, forced: bool) -> ReloadOutcome {
        let print = fingerprint(&self.dir);
        {
            let Ok(mut last) = self.fingerprint.lock() else { return ReloadOutcome::Unchanged };
            if !forced && *last == print {
                return ReloadOutcome::Unchanged;
            }
            *last = print;
        }
        let previous = self.current.load().digest().to_string();
        match compile(&self.dir, &self.config, &self.targets) {
            Ok(set) if set.digest().as_ref() == previous => ReloadOutcome::Unchanged,
            Ok(set) => {
                let digest = set.digest().to_string();
                self.current.store(Arc::new(set));
                tracing::info!(previous = %previous, digest = %digest, "policies reloaded");
                self.record(&previous, Some(&digest), Vec::new());
                ReloadOutcome::Applied(digest)
            }
            Err(errors) => {
                tracing::error!(dir = %self.dir.display(), errors = %errors.join("; "), "new policies refused; the previous set stays in force");
                self.record(&previous, None, errors.clone());
                ReloadOutcome::Rejected(errors)
            }
        }
    }

    fn record(&self, previous: &str, new: Option<&str>, errors: Vec<String>) {
        let applied = new.is_some();
        let (decision, reason) = if applied {
            (Effect::Allow, ReasonCode::PolicyApplied)
        } else {
            (Effect::Deny, ReasonCode::PolicyRejected)
        };
        let mut record = crate::audit::event("policy_change", "POLICY", reason, decision);
        record.path = self.dir.display().to_string();
        record.policy_digest = Some(new.unwrap_or(previous).to_owned());
        record.policy_change = Some(PolicyChange {
            previous_digest: Some(previous.to_owned()),
            new_digest: new.map(str::to_owned),
            outcome: if applied { "applied" } else { "rejected" },
            errors,
        });
        if let Err(e) = self.audit.record(record) {
            tracing::error!(error = %e, "policy change could not be audited");
        }
    }
}

/// Poll the policy directory and reload on change or SIGHUP.
pub(crate) async fn watch(store: Arc<PolicyStore>, every: Duration) {
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let forced = tokio::select! {
            _ = tick.tick() => false,
            Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => true,
        };
        // Reading and compiling touches the disk: keep it off the runtime's thread.
        let s = Arc::clone(&store);
        let _ = tokio::task::spawn_blocking(move || s.reload(forced)).await;
    }
}

/// An external authorizer as one worker sees it (Envoy's HTTP `ext_authz`
/// contract): the original method and path, appended to the authorizer's
/// path, with Ward's identity headers and the configured request headers;
/// a 2xx answer allows, anything else — or no answer in time — denies.
#[derive(Debug)]
pub(crate) struct Authorizer {
    pub name: String,
    pub prefix: String,
    pub include_headers: Vec<http::HeaderName>,
    pub upstream: Upstream,
}

pub(crate) fn authorizer(config: &AuthorizerConfig) -> Result<Authorizer, GatewayError> {
    let bad = |why: &str| GatewayError::Config(format!("authorizer `{}`: {why}", config.name));
    let uri: http::Uri = config.url.parse().map_err(|_| bad("bad url"))?;
    let tls = uri.scheme_str() == Some("https");
    let authority = uri.authority().ok_or_else(|| bad("url has no host"))?;
    let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let upstream = upstream::build(
        &UpstreamConfig {
            name: format!("authorizer:{}", config.name),
            target: UpstreamTarget::Url {
                tls,
                authority: format!("{}:{port}", authority.host()),
                host: authority.host().to_owned(),
            },
            ca_file: config.ca_file.clone(),
            connect_timeout: config.timeout,
            timeout: config.timeout,
            http2: false,
            max_idle_per_host: 16,
            spiffe: None,
        },
        None,
    )?;
    let include_headers = config
        .include_headers
        .iter()
        .map(|h| http::HeaderName::from_bytes(h.as_bytes()).map_err(|_| bad("bad header name in include_headers")))
        .collect::<Result<_, _>>()?;
    Ok(Authorizer {
        name: config.name.clone(),
        prefix: uri.path().trim_end_matches('/').to_owned(),
        include_headers,
        upstream,
    })
}
