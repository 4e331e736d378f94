//! The audit record schema (`ward.audit.v1`).

use serde::Serialize;
use ward_core::{Effect, ReasonCode};

/// One decision, as written to the audit log (one JSON object per line).
///
/// Personal data never appears in clear: the client IP is a keyed HMAC, and
/// the path and principal pass through the masking helpers before they are
/// put here. The query string and all headers (tokens!) are never recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditRecord {
    /// Schema identifier, `ward.audit.v1`.
    pub schema: &'static str,
    /// When the decision was made, RFC 3339 UTC with milliseconds.
    pub time: String,
    /// The request id the client saw in its response.
    pub request_id: String,
    /// `allow` or `deny`.
    pub decision: Effect,
    /// Why (stable reason code).
    pub reason: ReasonCode,
    /// The authenticated subject (masked if it is an e-mail or phone number).
    pub principal: Option<String>,
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
    pub const SCHEMA: &'static str = "ward.audit.v1";
}
