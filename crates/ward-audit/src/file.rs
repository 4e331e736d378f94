//! A durable JSON-lines sink with group commit.
//!
//! Records are queued without blocking the request path. One writer thread
//! wakes on the first record of a batch, lets the batch gather for the
//! commit interval, then writes everything queued in one `write` and one
//! `fdatasync`. So a record is on disk at most one interval plus one sync
//! after it was taken, and the cost of a sync (and of waking the writer) is
//! shared by every record of the batch instead of paid per request: while the
//! writer sleeps, queueing a record is a lock-free push with no system call.
//! An interval of zero syncs whatever is queued as soon as the writer wakes.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::Duration;

use crate::{AuditError, AuditRecord, AuditSink};

const MAX_BATCH: usize = 4096;
/// How often a failed write is retried while no new records arrive.
const RETRY_AFTER: Duration = Duration::from_secs(1);

#[expect(
    clippy::large_enum_variant,
    reason = "records travel by value to avoid an allocation per request; flush markers are rare"
)]
enum Message {
    Record(AuditRecord),
    Flush(tokio::sync::oneshot::Sender<Result<(), AuditError>>),
}

/// Appends records to a file, fsynced in batches. The file is created 0600.
///
/// The queue is an unbounded channel with a separate counter as its bound,
/// rather than a `sync_channel`: a bounded channel allocates (and touches)
/// every slot up front, which for the default 65,536 records would be
/// megabytes of resident memory before the first request.
#[derive(Debug)]
pub struct FileSink {
    tx: mpsc::Sender<Message>,
    queued: Arc<AtomicUsize>,
    capacity: usize,
    healthy: Arc<AtomicBool>,
    path: PathBuf,
}

impl FileSink {
    /// Open (or create) `path` for appending and start the writer thread.
    /// `queue` bounds the records waiting to be written; `commit_interval`
    /// is how long a batch gathers before it is written and synced.
    ///
    /// # Errors
    /// The I/O error from creating the directory or opening the file.
    pub fn open(path: &Path, queue: usize, commit_interval: Duration) -> std::io::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).mode(0o600).open(path)?;
        let (tx, rx) = mpsc::channel();
        let healthy = Arc::new(AtomicBool::new(true));
        let queued = Arc::new(AtomicUsize::new(0));
        let durable_len = file.metadata()?.len();
        let writer_state = Writer {
            durable_len,
            file,
            healthy: Arc::clone(&healthy),
            queued: Arc::clone(&queued),
            shown: path.display().to_string(),
            interval: commit_interval,
        };
        thread::Builder::new().name("ward-audit".into()).spawn(move || writer_state.run(&rx))?;
        Ok(Self { tx, queued, capacity: queue.max(1), healthy, path: path.to_owned() })
    }

    /// Where records are written.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl AuditSink for FileSink {
    fn ready(&self) -> Result<(), AuditError> {
        if self.healthy.load(Ordering::Acquire) {
            Ok(())
        } else {
            Err(AuditError::Failed("the last write failed".into()))
        }
    }

    fn record(&self, record: AuditRecord) -> Result<(), AuditError> {
        self.ready()?;
        if self.queued.fetch_add(1, Ordering::AcqRel) >= self.capacity {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(AuditError::Overloaded);
        }
        self.tx.send(Message::Record(record)).map_err(|_| {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            AuditError::Closed
        })
    }

    fn flush(&self) -> Pin<Box<dyn std::future::Future<Output = Result<(), AuditError>> + Send + 'static>> {
        let (done, wait) = tokio::sync::oneshot::channel();
        // Flush markers are not counted against the bound: they never wait.
        let sent = self.tx.send(Message::Flush(done)).is_ok();
        Box::pin(async move {
            if !sent {
                return Err(AuditError::Closed);
            }
            wait.await.unwrap_or(Err(AuditError::Closed))
        })
    }
}

struct Writer {
    file: File,
    healthy: Arc<AtomicBool>,
    queued: Arc<AtomicUsize>,
    shown: String,
    interval: Duration,
    /// The file's length after the last successful sync.
    durable_len: u64,
}

impl Writer {
    fn run(mut self, rx: &mpsc::Receiver<Message>) {
        // Serialized records not yet durable: kept across a failed write and
        // retried, so a disk that fails for a while loses nothing it took.
        let mut pending = Vec::with_capacity(64 * 1024);
        let mut pending_records = 0;
        let mut waiters = Vec::new();
        let mut backlog = false;
        loop {
            let first = if pending.is_empty() {
                match rx.recv() {
                    Ok(m) => Some(m),
                    Err(_) => break,
                }
            } else {
                match rx.recv_timeout(RETRY_AFTER) {
                    Ok(m) => Some(m),
                    Err(mpsc::RecvTimeoutError::Timeout) => None,
                    Err(mpsc::RecvTimeoutError::Disconnected) => {
                        let _ = self.commit(&pending);
                        break;
                    }
                }
            };
            // Gather a batch, unless someone waits on a flush marker, the
            // last batch was full (the queue is behind), or this is a retry.
            if !self.interval.is_zero() && !backlog && pending.is_empty() && matches!(first, Some(Message::Record(_))) {
                thread::sleep(self.interval);
            }
            let mut next = first;
            let mut taken = 0;
            while let Some(message) = next.take() {
                match message {
                    Message::Record(r) => {
                        if serde_json::to_writer(&mut pending, &r).is_ok() {
                            pending.push(b'\n');
                        }
                        pending_records += 1;
                        taken += 1;
                    }
                    Message::Flush(w) => waiters.push(w),
                }
                if taken < MAX_BATCH {
                    next = rx.try_recv().ok();
                }
            }
            backlog = taken >= MAX_BATCH;
            let outcome = self.commit(&pending);
            if outcome.is_ok() {
                pending.clear();
                // Only now do the records stop counting against the bound: a
                // disk that does not keep up fills the queue and refuses traffic.
                self.queued.fetch_sub(pending_records, Ordering::AcqRel);
                pending_records = 0;
            }
            for w in waiters.drain(..) {
                let _ = w.send(outcome.clone());
            }
        }
    }

    /// Append `buf` and make it durable. A failed attempt may have written a
    /// prefix: the file is cut back to its last durable length, so the retry
    /// leaves neither a torn nor a duplicated line.
    fn commit(&mut self, buf: &[u8]) -> Result<(), AuditError> {
        match self.file.write_all(buf).and_then(|()| self.file.sync_data()) {
            Ok(()) => {
                self.durable_len += buf.len() as u64;
                self.healthy.store(true, Ordering::Release);
                Ok(())
            }
            Err(e) => {
                tracing::error!(file = %self.shown, error = %e, "audit write failed; refusing traffic until a retry succeeds");
                self.healthy.store(false, Ordering::Release);
                if let Err(cut) = self.file.set_len(self.durable_len) {
                    tracing::error!(file = %self.shown, error = %cut, "cannot cut the audit file back after a failed write");
                }
                Err(AuditError::Failed(e.to_string()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use ward_core::{Effect, ReasonCode};

    use super::*;

    fn record(i: usize) -> AuditRecord {
        AuditRecord {
            schema: AuditRecord::SCHEMA,
            time: "2026-01-01T00:00:00.000Z".into(),
            request_id: format!("r{i}"),
            decision: Effect::Deny,
            reason: ReasonCode::TokenMissing,
            principal: None,
            issuer: None,
            route: Some("api".into()),
            upstream: None,
            method: "GET".into(),
            path: "/api/x".into(),
            status: 401,
            latency_us: 12,
            client_ip_hmac: "00".into(),
            protocol: "HTTP/1.1",
            policy: None,
            audit_policy: None,
            policy_digest: None,
            policy_change: None,
        }
    }

    #[tokio::test]
    async fn writes_every_record_once_as_a_json_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit/audit.jsonl");
        let sink = FileSink::open(&path, 1024, Duration::from_millis(2)).unwrap();
        for i in 0..500 {
            sink.record(record(i)).unwrap();
        }
        sink.flush().await.unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 500);
        assert_eq!(lines[499]["request_id"], "r499");
        assert_eq!(lines[0]["reason"], "token_missing");
        assert_eq!(lines[0]["decision"], "deny");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[tokio::test]
    async fn a_failing_disk_fails_closed() {
        // Every write to /dev/full fails with ENOSPC.
        let sink = FileSink::open(Path::new("/dev/full"), 16, Duration::ZERO).unwrap();
        assert!(sink.ready().is_ok());
        sink.record(record(1)).unwrap();
        assert!(matches!(sink.flush().await, Err(AuditError::Failed(_))));
        assert!(sink.ready().is_err(), "a sink that cannot write must refuse traffic");
        assert!(sink.record(record(2)).is_err());
    }

    #[tokio::test]
    async fn a_full_queue_refuses_records() {
        let dir = tempfile::tempdir().unwrap();
        // A long interval keeps the first batch gathering while the queue fills.
        let sink = FileSink::open(&dir.path().join("a.jsonl"), 3, Duration::from_millis(500)).unwrap();
        for i in 0..3 {
            sink.record(record(i)).unwrap();
        }
        assert_eq!(sink.record(record(3)), Err(AuditError::Overloaded));
        sink.flush().await.unwrap();
        sink.record(record(4)).unwrap();
    }
}
