//! Audit records and where they go.
//!
//! Every decision the gateway makes (allow or deny, at any stage) becomes one
//! [`AuditRecord`] handed to an [`AuditSink`]. v0 ships a durable JSON-lines
//! [`FileSink`]; the tamper-evident Merkle log (issue #4) implements the same
//! trait. A sink that cannot take records makes the gateway refuse traffic:
//! nothing is served that is not recorded.
#![forbid(unsafe_code)]

mod file;
mod record;
mod time;

use std::fmt;
use std::future::Future;
use std::pin::Pin;

pub use file::FileSink;
pub use record::{AuditRecord, PolicyChange};
pub use time::format_rfc3339_millis;

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

/// A destination for audit records.
pub trait AuditSink: Send + Sync + fmt::Debug {
    /// Accept one record without blocking. An error means the record was not
    /// taken, and the caller must fail closed.
    ///
    /// # Errors
    /// [`AuditError`] when the sink cannot take the record.
    fn record(&self, record: AuditRecord) -> Result<(), AuditError>;

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
    fn flush(&self) -> Pin<Box<dyn Future<Output = Result<(), AuditError>> + Send + 'static>>;
}
