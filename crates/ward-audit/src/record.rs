//! The audit record schema (`ward.audit.v2`).
//!
//! v2 (the Merkle log) replaced v1's masked `principal` with
//! `principal_hmac` and added `event` and `key_change`. Personal data is
//! never stored in clear: user ids and client addresses are HMAC-SHA256
//! tags under the audit key (first 128 bits, hex), as Vault's audit devices
//! do, so the log can be handed to auditors; `ward audit hash VALUE` gives
//! the tag to search for.

use serde::Serialize;
use ward_core::{Effect, ReasonCode};

/// One decision, as written to the audit log (one JSON object per line).
///
/// Personal data never appears in clear: the principal and the client IP are
/// keyed HMACs, and the path passes through the masking helpers (e-mail
/// addresses, phone numbers). The query string and all headers (tokens!)
/// are never recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditRecord {
    /// Schema identifier, `ward.audit.v2`.
    pub schema: &'static str,
    /// What happened: `request`, `policy_change`, `key_change`, `startup`, `shutdown`.
    pub event: &'static str,
    /// When the decision was made, RFC 3339 UTC with milliseconds.
    pub time: String,
    /// The request id the client saw in its response.
    pub request_id: String,
    /// `allow` or `deny`.
    pub decision: Effect,
    /// Why (stable reason code).
    pub reason: ReasonCode,
    /// HMAC of the authenticated subject (`sub`) under the audit key.
    pub principal_hmac: Option<String>,
    /// The issuer that vouched for the principal.
    pub issuer: Option<String>,
    /// The matched route.
    pub route: Option<String>,
    /// The upstream the request was sent to.
    pub upstream: Option<String>,
    /// HTTP method.
    pub method: String,
    /// Normalised path, with personal data masked; never the query.
    pub path: String,
    /// HTTP status returned to the client.
    pub status: u16,
    /// Time from the request's arrival to the response headers, in microseconds.
    pub latency_us: u64,
    /// HMAC-SHA256 of the client IP under the audit key (first 128 bits, hex).
    pub client_ip_hmac: String,
    /// HTTP version spoken with the client (`HTTP/1.1`, `HTTP/2.0`).
    pub protocol: &'static str,
    /// The policy rule that decided (`namespace/name#rule`), when one did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// The AUDIT policy rule that marked the request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audit_policy: Option<String>,
    /// Digest of the policy bundle that decided (`sha256:…`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_digest: Option<String>,
    /// Set on records of policy changes instead of requests (`method` is
    /// `POLICY`, `path` the policy directory, `status` 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_change: Option<PolicyChange>,
    /// Set on records of key operations (`method` is `KEY`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_change: Option<KeyChange>,
    /// The OAuth2 client a token-service record is about (clients are
    /// services, not people: kept in clear).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The OAuth2 error code a token-service request was refused with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oauth_error: Option<&'static str>,
    /// The peer's SPIFFE ID from its mTLS certificate (a workload, not a
    /// person: kept in clear).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_spiffe_id: Option<String>,
    /// Set on records of detections and block decisions (`event` is `detection`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detection: Option<Detection>,
    /// Set on records of refusals below the request pipeline (`event` is
    /// `connection`): at accept, in the TLS handshake, or by the HTTP codec.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection: Option<ConnectionRefusal>,
}

/// A refusal made before a request was formed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConnectionRefusal {
    /// Which listener: `gateway`, `control plane`, `admin API`.
    pub listener: &'static str,
    /// What exactly (never request data).
    pub detail: String,
    /// Refusals of the same source and reason folded into this record
    /// (after the first of a window, they are counted, not recorded one by one).
    pub repeated: u64,
}

/// A detector's alert, or a block decision made, lifted or ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Detection {
    /// The scenario or detector (`ward/password-spraying`), or `manual`.
    pub scenario: String,
    /// `low`, `medium`, `high` or `critical`.
    pub severity: &'static str,
    /// `alert`, `block`, `unblock` or `expire`.
    pub action: &'static str,
    /// What the alert or block is about: `ip`, `range` or `principal`.
    pub target_kind: &'static str,
    /// HMAC of the target's value under the audit key (`ward audit hash 192.0.2.1`).
    pub target_hmac: String,
    /// The block decision's id (`ward block list`), for blocks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision_id: Option<u64>,
    /// When the block ends (RFC 3339), for blocks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    /// Which block of this target within the offence window (escalation).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offence: Option<u32>,
    /// Events counted when the scenario overflowed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    /// What was seen, in words (never personal data).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// A key or certificate was loaded, replaced, or a replacement refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyChange {
    /// Which key (`tls_certificate`, `audit_checkpoint_key`, …).
    pub key: String,
    /// A public fingerprint of the new key or certificate (never the key).
    pub fingerprint: Option<String>,
    /// `loaded`, `rotated`, `rejected`, `issued` (a certificate the CA
    /// signed) or `revoked` (a certificate denied).
    pub outcome: &'static str,
}

/// A policy bundle was loaded, or a new one was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyChange {
    /// The bundle enforced before.
    pub previous_digest: Option<String>,
    /// The bundle read from disk.
    pub new_digest: Option<String>,
    /// `applied` or `rejected` (the previous bundle stays in force).
    pub outcome: &'static str,
    /// The errors that rejected it (file, line, field; no secrets live in policies).
    pub errors: Vec<String>,
}

impl AuditRecord {
    /// The schema identifier written in every record.
    pub const SCHEMA: &'static str = "ward.audit.v2";

    /// As [`Self::event`], made now, with a fresh id ([`new_event_id`]).
    #[must_use]
    pub fn now(event: &'static str, method: &str, reason: ReasonCode, decision: Effect) -> Self {
        let time = crate::format_rfc3339_millis(std::time::SystemTime::now());
        Self::event(event, method, reason, decision, time, new_event_id())
    }

    /// A record of something other than a request (`method` names the
    /// kind, there is no client): startup, shutdown, policy and key changes.
    #[must_use]
    pub fn event(
        event: &'static str,
        method: &str,
        reason: ReasonCode,
        decision: Effect,
        time: String,
        id: String,
    ) -> Self {
        Self {
            schema: Self::SCHEMA,
            event,
            time,
            request_id: id,
            decision,
            reason,
            principal_hmac: None,
            issuer: None,
            route: None,
            upstream: None,
            method: method.to_owned(),
            path: String::new(),
            status: 0,
            latency_us: 0,
            client_ip_hmac: String::new(),
            protocol: "-",
            policy: None,
            audit_policy: None,
            policy_digest: None,
            policy_change: None,
            key_change: None,
            client_id: None,
            oauth_error: None,
            peer_spiffe_id: None,
            detection: None,
            connection: None,
        }
    }
}

/// Longest value an audit record keeps whole.
pub const BOUNDED_VALUE_BYTES: usize = 1024;

/// A client-chosen value (a path) as an audit record keeps it: whole up to
/// [`BOUNDED_VALUE_BYTES`], else its start, its length and its SHA-256 —
/// enough to recognise it, never enough for a client to fill the log (or
/// the disk) with its paths.
#[must_use]
pub fn bounded_value(value: String) -> String {
    if value.len() <= BOUNDED_VALUE_BYTES {
        return value;
    }
    let mut cut = BOUNDED_VALUE_BYTES;
    while !value.is_char_boundary(cut) {
        cut -= 1;
    }
    let hash = ward_crypto::sha256_hex(value.as_bytes());
    format!("{}…[{} bytes, sha256:{}]", &value[..cut], value.len(), hash.get(..16).unwrap_or_default())
}

/// A fresh id for a record no client request names (events, refusals below
/// the pipeline, control-plane answers): 128 random bits in the request-id
/// form; empty only if the system has no randomness.
#[must_use]
pub fn new_event_id() -> String {
    ward_crypto::random_bytes::<16>()
        .map(ward_core::RequestId::from_random)
        .map(|r| r.as_str().to_owned())
        .unwrap_or_default()
}
