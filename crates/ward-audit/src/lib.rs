//! Ward's tamper-evident audit log.
//!
//! Every decision the gateway makes (allow or deny, at any stage), every
//! policy change, key operation and admin action becomes one record in an
//! append-only log whose integrity anyone can check:
//!
//! - records live in segment files ([`frame`], [`segments`]) and are the
//!   leaves of an RFC 6962 Merkle tree ([`ward_merkle`]), whose levels are
//!   kept on disk ([`TreeStore`]) so proofs are cheap at any size;
//! - appends are group-committed and acknowledged once durable ([`LogSink`]);
//! - the log signs C2SP checkpoints of its root ([`checkpoints`]), so what it
//!   held at a point in time is provable, and a later rewrite is detected by
//!   a failing consistency proof ([`verify`]).
//!
//! A sink that cannot take records makes the gateway refuse traffic: nothing
//! is served that is not recorded.
#![forbid(unsafe_code)]

pub mod checkpoints;
pub mod frame;
mod log;
pub mod proofs;
mod record;
pub mod segments;
mod sink;
mod time;
mod tree_store;
pub mod verify;
pub mod witness;
pub mod witness_client;

use std::fmt;
use std::future::Future;
use std::pin::Pin;

pub use log::{AuditLog, LogError, LogOptions, Recovery, Retention, TornTail};
pub use record::{
    AuditRecord, BOUNDED_VALUE_BYTES, ConnectionRefusal, Detection, KeyChange, PolicyChange, bounded_value,
    new_event_id,
};
pub use sink::{LogSink, SinkOptions};
pub use time::format_rfc3339_millis;
pub use tree_store::TreeStore;

/// Why a record could not be taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// The sink's queue is full (the disk is not keeping up).
    #[error("audit queue is full")]
    Overloaded,
    /// The sink failed to write and has not recovered.
    #[error("audit sink is failing: {0}")]
    Failed(String),
    /// The sink has shut down.
    #[error("audit sink is closed")]
    Closed,
}

/// A future an audit sink hands back.
pub type AuditFuture<T> = Pin<Box<dyn Future<Output = Result<T, AuditError>> + Send + 'static>>;

/// A destination for audit records.
pub trait AuditSink: Send + Sync + fmt::Debug {
    /// Accept one record without blocking; returns its index in the log.
    /// An error means the record was not taken, and the caller must fail
    /// closed.
    ///
    /// # Errors
    /// [`AuditError`] when the sink cannot take the record.
    fn record(&self, record: AuditRecord) -> Result<u64, AuditError>;

    /// Resolve once the record at `index` is durably stored: the
    /// acknowledgement a caller waits for before it reports the decision.
    fn durable(&self, index: u64) -> AuditFuture<()>;

    /// Whether the sink can take records right now. The gateway asks before
    /// it forwards a request, so an allowed request is not sent upstream when
    /// its record could not be kept.
    ///
    /// # Errors
    /// [`AuditError`] describing why not.
    fn ready(&self) -> Result<(), AuditError> {
        Ok(())
    }

    /// Resolve once every record accepted before the call is durably stored.
    fn flush(&self) -> AuditFuture<()>;
}
