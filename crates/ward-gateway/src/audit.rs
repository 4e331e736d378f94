//! The gateway's side of the audit log: opening it from the configuration,
//! and the records of events that are not requests (startup, shutdown, key
//! changes). Request records are built in `handler`, policy changes in
//! `policy`.

use std::sync::Arc;

use ward_audit::{AuditRecord, AuditSink, KeyChange, LogOptions, LogSink, Retention, SinkOptions};
use ward_config::AuditSettings;
use ward_core::{Effect, ReasonCode};
use ward_merkle::NoteSigner;

use crate::GatewayError;

/// Open the log the configuration names, with its checkpoint key.
///
/// # Errors
/// [`GatewayError::Audit`] naming the file that is missing or unusable.
pub fn open_log(settings: &AuditSettings) -> Result<Arc<LogSink>, GatewayError> {
    let shown = settings.checkpoint_key_file.display();
    crate::tls::warn_if_readable_by_others(&settings.checkpoint_key_file);
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(&settings.checkpoint_key_file)
            .map_err(|e| GatewayError::Audit(format!("{shown}: {e}")))?,
    );
    let signer = NoteSigner::from_private_key(text.trim()).map_err(|e| GatewayError::Audit(format!("{shown}: {e}")))?;
    let log = LogOptions {
        origin: settings.origin.clone(),
        segment_bytes: settings.segment_bytes,
        sync: !settings.danger_async,
        retention: Retention { max_age: settings.retention_max_age, max_bytes: settings.retention_max_bytes },
    };
    let sink = SinkOptions {
        queue: settings.queue,
        commit_interval: settings.commit_interval,
        commit_records: settings.commit_records,
        checkpoint_every: settings.checkpoint_every,
        checkpoint_interval: settings.checkpoint_interval,
    };
    if settings.danger_async {
        tracing::warn!(
            "audit.danger_async is on: records are acknowledged before they are on disk, and a crash may lose them"
        );
    }
    let (sink, recovery) =
        LogSink::open(&settings.dir, signer, log, sink).map_err(|e| GatewayError::Audit(e.to_string()))?;
    if recovery.rehashed > 0 || recovery.dropped > 0 {
        tracing::info!(
            rehashed = recovery.rehashed,
            dropped = recovery.dropped,
            "audit tree brought level with the records"
        );
    }
    Ok(Arc::new(sink))
}

/// A record of something other than a request.
#[must_use]
pub fn event(event: &'static str, method: &str, reason: ReasonCode, decision: Effect) -> AuditRecord {
    AuditRecord::now(event, method, reason, decision)
}

/// Record that a key or certificate was loaded, replaced or refused.
pub fn key_change(audit: &dyn AuditSink, key: &str, outcome: Result<String, String>, startup: bool) {
    let (reason, decision, fingerprint, word) = match outcome {
        Ok(f) if startup => (ReasonCode::KeyLoaded, Effect::Allow, Some(f), "loaded"),
        Ok(f) => (ReasonCode::KeyRotated, Effect::Allow, Some(f), "rotated"),
        Err(_) => (ReasonCode::KeyRejected, Effect::Deny, None, "rejected"),
    };
    let mut record = event("key_change", "KEY", reason, decision);
    record.key_change = Some(KeyChange { key: key.to_owned(), fingerprint, outcome: word });
    if let Err(e) = audit.record(record) {
        tracing::error!(error = %e, key, "key change could not be audited");
    }
}

/// Record that the gateway started (with the keys it serves) or stopped.
pub fn lifecycle(audit: &dyn AuditSink, started: bool, policy_digest: &str) {
    let mut record = if started {
        event("startup", "START", ReasonCode::GatewayStarted, Effect::Allow)
    } else {
        event("shutdown", "STOP", ReasonCode::GatewayStopped, Effect::Allow)
    };
    record.policy_digest = Some(policy_digest.to_owned());
    if let Err(e) = audit.record(record) {
        tracing::error!(error = %e, "gateway lifecycle event could not be audited");
    }
}
