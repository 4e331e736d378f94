//! Scenarios: leaky buckets over the event stream, as CrowdSec and
//! fail2ban count them. Each scenario picks events (by reason code, HTTP
//! status and source), groups them by a key (address, subnet or
//! principal), optionally counts only distinct values of a field (the
//! principals one address tries, the paths it probes), and overflows when
//! more than `capacity` arrive faster than one leaks out per `leak`.

use std::time::Duration;

use ward_core::ReasonCode;

use crate::event::Source;

/// How bad a detection is (the design's levels; syslog severities follow).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth recording.
    Low,
    /// Unusual for this principal (anomalies), or reconnaissance (scanning).
    Medium,
    /// An attack in progress (brute force, spraying, token abuse).
    High,
    /// Privilege escalation.
    Critical,
}

impl Severity {
    /// Names accepted in configuration.
    pub const NAMES: [(&'static str, Self); 4] =
        [("low", Self::Low), ("medium", Self::Medium), ("high", Self::High), ("critical", Self::Critical)];

    /// The name.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }
}

/// What events are grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// The client address.
    Ip,
    /// The client's subnet: /24 for IPv4, /64 for IPv6.
    Subnet,
    /// The principal (events without one are skipped).
    Principal,
}

impl Key {
    /// Names accepted in configuration.
    pub const NAMES: [(&'static str, Self); 3] =
        [("ip", Self::Ip), ("subnet", Self::Subnet), ("principal", Self::Principal)];
}

/// A field whose distinct values are counted instead of events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Distinct {
    /// Distinct principals (password spraying: many users, one source).
    Principal,
    /// Distinct paths (scanning).
    Path,
    /// Distinct client addresses (one principal attacked from many).
    Ip,
}

impl Distinct {
    /// Names accepted in configuration.
    pub const NAMES: [(&'static str, Self); 3] =
        [("principal", Self::Principal), ("path", Self::Path), ("ip", Self::Ip)];
}

/// What an overflow does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Record an alert only.
    Alert,
    /// Alert and block the key (the address, the subnet or the principal).
    Block,
}

impl Action {
    /// Names accepted in configuration.
    pub const NAMES: [(&'static str, Self); 2] = [("alert", Self::Alert), ("block", Self::Block)];
}

/// One scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct ScenarioSpec {
    /// Name, as in alerts and decisions (`ward/brute-force-ip`).
    pub name: String,
    /// Reason codes that feed it.
    pub reasons: Vec<ReasonCode>,
    /// HTTP statuses that feed it (an event matches on its reason or its status).
    pub statuses: Vec<u16>,
    /// Only events from this source, if set.
    pub source: Option<Source>,
    /// The grouping.
    pub key: Key,
    /// Count distinct values of this field instead of events.
    pub distinct: Option<Distinct>,
    /// Events (or distinct values) the bucket holds; one more overflows it.
    pub capacity: u32,
    /// One event leaks out per this much time.
    pub leak: Duration,
    /// Severity of its alerts.
    pub severity: Severity,
    /// What an overflow does.
    pub action: Action,
    /// First block's duration (repeat offenders get longer ones).
    pub duration: Duration,
}

fn spec(
    name: &str,
    reasons: &[ReasonCode],
    key: Key,
    distinct: Option<Distinct>,
    (capacity, leak_secs): (u32, u64),
    severity: Severity,
    action: Action,
) -> ScenarioSpec {
    ScenarioSpec {
        name: name.to_owned(),
        reasons: reasons.to_vec(),
        statuses: Vec::new(),
        source: None,
        key,
        distinct,
        capacity,
        leak: Duration::from_secs(leak_secs),
        severity,
        action,
        duration: Duration::from_secs(15 * 60),
    }
}

/// Failed logins and client authentications (the token service's).
pub const LOGIN_FAILURES: [ReasonCode; 2] = [ReasonCode::LoginFailed, ReasonCode::ClientAuthenticationFailed];

/// Replays of tokens that were revoked or already used.
pub const REPLAYS: [ReasonCode; 4] = [
    ReasonCode::TokenRevoked,
    ReasonCode::RefreshTokenReused,
    ReasonCode::AuthorizationCodeReused,
    ReasonCode::TokenBindingMismatch,
];

/// Tokens that do not verify: forged, tampered, stale or for someone else.
pub const BAD_TOKENS: [ReasonCode; 12] = [
    ReasonCode::TokenRevoked,
    ReasonCode::TokenBindingMismatch,
    ReasonCode::TokenBadSignature,
    ReasonCode::TokenUnknownKey,
    ReasonCode::TokenAlgorithmNotAllowed,
    ReasonCode::TokenMalformed,
    ReasonCode::TokenCriticalHeader,
    ReasonCode::TokenBadIssuer,
    ReasonCode::TokenBadAudience,
    ReasonCode::TokenExpired,
    ReasonCode::RefreshTokenReused,
    ReasonCode::AuthorizationCodeReused,
];

/// Refusals a scanner collects.
pub const PROBES: [ReasonCode; 5] = [
    ReasonCode::NoRoute,
    ReasonCode::DeniedByPolicy,
    ReasonCode::NoAllowPolicyMatched,
    ReasonCode::DefaultDeny,
    ReasonCode::PathRejected,
];

/// The scenarios Ward runs unless the configuration lists its own.
///
/// Principal-keyed ones count a principal within its issuer's namespace,
/// and failed logins count against a principal only when the user or
/// client exists (see [`crate::Event::principal`]).
///
/// | scenario | counts | per | overflows at | then |
/// |---|---|---|---|---|
/// | `ward/brute-force-ip` | failed logins and client authentications | address | 10 (1 leaks / 30 s) | block the address, HIGH |
/// | `ward/brute-force-principal` | the same, for users and clients that exist | principal | 10 (1 leaks / 2 min) | alert, HIGH |
/// | `ward/password-spraying` | distinct principals failing | address | 5 (1 leaks / 1 min) | block the address, HIGH |
/// | `ward/password-spraying-subnet` | distinct principals failing | /24 or /64 | 20 (1 leaks / 1 min) | block the subnet, HIGH |
/// | `ward/token-replay` | revoked or reused tokens, wrong certificate | address | first one | alert, HIGH |
/// | `ward/token-abuse` | tokens that do not verify | address | 20 (1 leaks / 10 s) | block the address, HIGH |
/// | `ward/scan` | distinct paths refused (403/404) | address | 30 (1 leaks / 10 s) | block the address, MEDIUM |
#[must_use]
pub fn defaults() -> Vec<ScenarioSpec> {
    use {Action::*, Key::*, Severity::*};
    let mut scan = spec("ward/scan", &PROBES, Ip, Some(Distinct::Path), (30, 10), Medium, Block);
    scan.statuses = vec![403, 404];
    vec![
        spec("ward/brute-force-ip", &LOGIN_FAILURES, Ip, None, (10, 30), High, Block),
        // Alert only: a block would let anyone who knows a name lock its
        // owner out. The addresses guessing are blocked instead (above), and
        // password checks are bounded per address.
        spec("ward/brute-force-principal", &LOGIN_FAILURES, Principal, None, (10, 120), High, Alert),
        spec("ward/password-spraying", &LOGIN_FAILURES, Ip, Some(Distinct::Principal), (5, 60), High, Block),
        spec(
            "ward/password-spraying-subnet",
            &LOGIN_FAILURES,
            Subnet,
            Some(Distinct::Principal),
            (20, 60),
            High,
            Block,
        ),
        spec("ward/token-replay", &REPLAYS, Ip, None, (0, 60), High, Alert),
        spec("ward/token-abuse", &BAD_TOKENS, Ip, None, (20, 10), High, Block),
        scan,
    ]
}
