//! A durable JSON-lines sink with group commit.
//!
//! Records are queued without blocking the request path; one writer thread
//! takes whatever has queued, writes it in one go and `fdatasync`s before
//! taking more. Under load the batches grow, so the fsync cost per record
//! falls; when idle every record is synced on its own.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;

use crate::{AuditError, AuditRecord, AuditSink};

const MAX_BATCH: usize = 4096;

#[expect(
    clippy::large_enum_variant,
    reason = "records travel by value to avoid an allocation per request; flush markers are rare"
)]
enum Message {
    Record(AuditRecord),
    Flush(tokio::sync::oneshot::Sender<Result<(), AuditError>>),
}

/// Appends records to a file, fsynced in batches. The file is created 0600.
#[derive(Debug)]
pub struct FileSink {
    tx: mpsc::SyncSender<Message>,
    healthy: Arc<AtomicBool>,
    path: PathBuf,
}

impl FileSink {
    /// Open (or create) `path` for appending and start the writer thread.
    /// `queue` bounds the records waiting to be written.
    ///
    /// # Errors
    /// The I/O error from creating the directory or opening the file.
    pub fn open(path: &Path, queue: usize) -> std::io::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).mode(0o600).open(path)?;
        let (tx, rx) = mpsc::sync_channel(queue.max(1));
        let healthy = Arc::new(AtomicBool::new(true));
        let flag = Arc::clone(&healthy);
        let shown = path.display().to_string();
        thread::Builder::new().name("ward-audit".into()).spawn(move || writer(file, &rx, &flag, &shown))?;
        Ok(Self { tx, healthy, path: path.to_owned() })
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
        self.tx.try_send(Message::Record(record)).map_err(|e| match e {
            mpsc::TrySendError::Full(_) => AuditError::Overloaded,
            mpsc::TrySendError::Disconnected(_) => AuditError::Closed,
        })
    }

    fn flush(&self) -> Pin<Box<dyn std::future::Future<Output = Result<(), AuditError>> + Send + 'static>> {
        let (done, wait) = tokio::sync::oneshot::channel();
        let tx = self.tx.clone();
        Box::pin(async move {
            // The queue may be full: hand the flush marker over on a blocking thread.
            let sent = tokio::task::spawn_blocking(move || tx.send(Message::Flush(done)).is_ok()).await;
            if !matches!(sent, Ok(true)) {
                return Err(AuditError::Closed);
            }
            wait.await.unwrap_or(Err(AuditError::Closed))
        })
    }
}

fn writer(mut file: File, rx: &mpsc::Receiver<Message>, healthy: &AtomicBool, shown: &str) {
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut waiters = Vec::new();
    while let Ok(first) = rx.recv() {
        buf.clear();
        let mut next = Some(first);
        let mut taken = 0;
        while let Some(message) = next.take() {
            match message {
                Message::Record(r) => {
                    if serde_json::to_writer(&mut buf, &r).is_ok() {
                        buf.push(b'\n');
                    }
                }
                Message::Flush(w) => waiters.push(w),
            }
            taken += 1;
            if taken < MAX_BATCH {
                next = rx.try_recv().ok();
            }
        }
        let result = file.write_all(&buf).and_then(|()| file.sync_data());
        let outcome = match result {
            Ok(()) => {
                healthy.store(true, Ordering::Release);
                Ok(())
            }
            Err(e) => {
                tracing::error!(file = shown, error = %e, "audit write failed; refusing traffic until it recovers");
                healthy.store(false, Ordering::Release);
                Err(AuditError::Failed(e.to_string()))
            }
        };
        for w in waiters.drain(..) {
            let _ = w.send(outcome.clone());
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
        }
    }

    #[tokio::test]
    async fn writes_every_record_once_as_a_json_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit/audit.jsonl");
        let sink = FileSink::open(&path, 1024).unwrap();
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
}
