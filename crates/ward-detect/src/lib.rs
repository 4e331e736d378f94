//! Threat detection and intrusion prevention (issue #7).
//!
//! | module | kind | what |
//! |---|---|---|
//! | [`gcra`] | pure + shared table | rate limits (GCRA) keyed by address, principal, route, claim or header |
//! | [`conns`] | shared table | per-address connection caps |
//! | [`event`] | pure | the events detectors watch (one per audited decision) |
//! | [`scenario`] | pure | leaky-bucket scenarios and Ward's defaults |
//! | [`anomaly`] | pure | per-principal EWMA baselines |
//! | [`engine`] | pure | scenarios + baselines + privilege-escalation checks → alerts |
//! | [`blocks`] | pure | block targets, the allowlist, the block set the request path reads |
//! | [`decisions`] | pure | decisions with escalation, expiry and change numbers |
//! | [`crowdsec`] | pure | the CrowdSec bouncer stream format |
//! | [`detector`] | shell | the process's detector: audit, enforcement, expiry, persistence, bouncers |
#![forbid(unsafe_code)]

pub mod anomaly;
pub mod blocks;
pub mod conns;
pub mod crowdsec;
pub mod decisions;
pub mod detector;
pub mod engine;
pub mod event;
pub mod gcra;
mod prehashed;
pub mod scenario;

pub use blocks::{Allowlist, BlockSet, Target};
pub use decisions::{Decision, DecisionError, Escalation};
pub use detector::{DetectError, DetectSettings, Detector};
pub use engine::{Alert, EngineSpec, PrivilegeSpec};
pub use event::{Event, Privileged, Source};
pub use scenario::{ScenarioSpec, Severity};
