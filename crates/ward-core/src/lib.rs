//! Shared types for every stage of Ward's pipeline.
//!
//! Nothing here opens a socket or a file: these are the values that flow
//! between authentication, authorization, the proxy and the audit log.
#![forbid(unsafe_code)]

pub mod cookies;
mod decision;
mod duration;
mod identity;
pub mod net;
mod request_id;
mod revocation;
pub mod spiffe;

pub use decision::{Decision, Effect, ReasonCode};
pub use duration::{DurationParseError, parse_duration};
pub use identity::{Claims, Identity, Principal};
pub use net::{Cidr, CidrError};
pub use request_id::RequestId;
pub use revocation::{
    EXCHANGED_FROM, LocalRevocations, RevocationList, SPIFFE_ID, SWEEP_GRACE, TokenOwner, X509_SERIAL,
    ancestors_revoked, is_cut_off, is_ended,
};
pub use spiffe::{SpiffeId, SpiffeIdError};
