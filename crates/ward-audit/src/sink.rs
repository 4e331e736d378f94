//! [`LogSink`]: the audit log behind a writer thread, with group commit.
//!
//! Appending is a lock-protected channel send (no system call): the record
//! gets its index at once. The writer thread wakes on the first record of a
//! batch, gathers until the commit interval has passed or the batch holds
//! `commit_records` records, writes the whole batch with one `write` and one
//! `fdatasync`, then raises the durable watermark. [`LogSink::durable`]
//! resolves once the watermark passes a record's index: that is the
//! acknowledgement. Checkpoints are signed on the same thread every
//! `checkpoint_every` records or `checkpoint_interval`, whichever comes first;
//! at start, records a previous run left unsigned are signed at once, and the
//! first checkpoint of this run is due within a second.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, mpsc};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use ward_merkle::NoteVerifier;

use crate::checkpoints::SignedCheckpoint;
use crate::frame::MAX_RECORD;
use crate::log::{AuditLog, LogError, LogOptions, Recovery};
use crate::{AuditError, AuditRecord, AuditSink};

/// How often a failed write is retried while no new records arrive.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Group commit and checkpoint settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SinkOptions {
    /// Records that may wait for the disk before appends are refused.
    pub queue: usize,
    /// How long a batch gathers after its first record (default 1 ms).
    pub commit_interval: Duration,
    /// A batch is committed at once when it holds this many records (default 4096).
    pub commit_records: usize,
    /// Publish a checkpoint after this many new records (default 100,000)…
    pub checkpoint_every: u64,
    /// …or this long after the last one, if records arrived (default 10 s).
    pub checkpoint_interval: Duration,
}

impl Default for SinkOptions {
    fn default() -> Self {
        Self {
            queue: 65_536,
            commit_interval: Duration::from_millis(1),
            commit_records: 4096,
            checkpoint_every: 100_000,
            checkpoint_interval: Duration::from_secs(10),
        }
    }
}

type Reply<T> = tokio::sync::oneshot::Sender<Result<T, AuditError>>;

enum Message {
    Record(Vec<u8>),
    Flush(Reply<()>),
    Checkpoint(Reply<SignedCheckpoint>),
}

#[derive(Debug)]
struct Shared {
    /// Records durably in the log (the next index to become durable).
    durable: tokio::sync::watch::Sender<u64>,
    healthy: AtomicBool,
    queued: AtomicUsize,
    latest: RwLock<Option<SignedCheckpoint>>,
}

/// The tamper-evident audit log as an [`AuditSink`].
#[derive(Debug)]
pub struct LogSink {
    shared: Arc<Shared>,
    /// The next index and the channel, under one lock so that indices are
    /// handed out in the order the writer receives the records.
    tx: Mutex<(u64, Option<mpsc::Sender<Message>>)>,
    writer: Option<thread::JoinHandle<()>>,
    capacity: usize,
    acknowledge_early: bool,
    dir: PathBuf,
    verifier: NoteVerifier,
}

impl LogSink {
    /// Open the log (recovering it, see [`AuditLog::open`]) and start its
    /// writer thread. A recovery that cut a torn tail is also recorded in
    /// the log itself.
    ///
    /// # Errors
    /// [`LogError`] from opening the log or starting the thread.
    pub fn open(
        dir: &Path,
        signer: ward_merkle::NoteSigner,
        log_options: LogOptions,
        options: SinkOptions,
    ) -> Result<(Self, Recovery), LogError> {
        let acknowledge_early = !log_options.sync;
        let (log, recovery) = AuditLog::open(dir, signer, log_options)?;
        let size = log.size();
        let verifier = log.verifier().clone();
        let (durable, _) = tokio::sync::watch::channel(size);
        let shared = Arc::new(Shared {
            durable,
            healthy: AtomicBool::new(true),
            queued: AtomicUsize::new(0),
            latest: RwLock::new(log.latest().cloned()),
        });
        let (tx, rx) = mpsc::channel();
        // The first checkpoint after a start comes within a second of the
        // first record (then every `checkpoint_interval`): a process that
        // crash-loops faster than the interval still signs what it wrote.
        let first_due = options.checkpoint_interval.saturating_sub(FIRST_CHECKPOINT_AFTER);
        let last_checkpoint = Instant::now().checked_sub(first_due).unwrap_or_else(Instant::now);
        let writer = Writer { log, shared: Arc::clone(&shared), options, last_checkpoint };
        let writer = thread::Builder::new()
            .name("ward-audit".into())
            .spawn(move || writer.run(&rx))
            .map_err(|source| LogError::Io { path: dir.to_owned(), source })?;
        let sink = Self {
            shared,
            tx: Mutex::new((size, Some(tx))),
            writer: Some(writer),
            capacity: options.queue.max(1),
            acknowledge_early,
            dir: dir.to_owned(),
            verifier,
        };
        if let Some(torn) = &recovery.torn {
            let event = serde_json::json!({
                "schema": AuditRecord::SCHEMA,
                "time": crate::format_rfc3339_millis(SystemTime::now()),
                "event": "audit_log_recovered",
                "torn_tail": { "index": torn.index, "bytes": torn.bytes, "saved_to": torn.saved_to.display().to_string(), "error": torn.error.to_string() },
            });
            if let Err(e) = sink.append(event.to_string().into_bytes()) {
                tracing::error!(error = %e, "cannot record the audit log's recovery");
            }
        }
        Ok((sink, recovery))
    }

    /// The log directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The key this log's checkpoints verify with.
    #[must_use]
    pub fn verifier(&self) -> &NoteVerifier {
        &self.verifier
    }

    /// Queue one record; returns the index it will have in the log.
    ///
    /// # Errors
    /// [`AuditError`] when the record is not taken (too large, queue full,
    /// writer failing or gone): the caller must fail closed.
    pub fn append(&self, record: Vec<u8>) -> Result<u64, AuditError> {
        if record.is_empty() || record.len() > MAX_RECORD {
            return Err(AuditError::Failed(format!("record of {} bytes cannot be logged", record.len())));
        }
        self.ready()?;
        if self.shared.queued.fetch_add(1, Ordering::AcqRel) >= self.capacity {
            self.shared.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(AuditError::Overloaded);
        }
        let mut guard = self.tx.lock().map_err(|_| AuditError::Closed)?;
        let index = guard.0;
        if guard.1.as_ref().is_none_or(|tx| tx.send(Message::Record(record)).is_err()) {
            self.shared.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(AuditError::Closed);
        }
        guard.0 += 1;
        Ok(index)
    }

    /// Resolve once record `index` is durable (at once in `danger_async` mode).
    pub fn durable(&self, index: u64) -> impl Future<Output = Result<(), AuditError>> + Send + 'static {
        let early = self.acknowledge_early;
        let mut rx = self.shared.durable.subscribe();
        async move {
            if early {
                return Ok(());
            }
            rx.wait_for(|&d| d > index).await.map(|_| ()).map_err(|_| AuditError::Closed)
        }
    }

    /// Records durably in the log.
    #[must_use]
    pub fn durable_size(&self) -> u64 {
        *self.shared.durable.borrow()
    }

    /// The latest published checkpoint.
    #[must_use]
    pub fn latest_checkpoint(&self) -> Option<SignedCheckpoint> {
        self.shared.latest.read().ok().and_then(|l| l.clone())
    }

    /// Publish a checkpoint now (after committing what is queued).
    pub fn checkpoint_now(&self) -> impl Future<Output = Result<SignedCheckpoint, AuditError>> + Send + 'static {
        let (done, wait) = tokio::sync::oneshot::channel();
        let sent = self.send(Message::Checkpoint(done));
        async move {
            if !sent {
                return Err(AuditError::Closed);
            }
            wait.await.unwrap_or(Err(AuditError::Closed))
        }
    }
}

impl LogSink {
    fn send(&self, m: Message) -> bool {
        self.tx.lock().is_ok_and(|g| g.1.as_ref().is_some_and(|tx| tx.send(m).is_ok()))
    }
}

impl Drop for LogSink {
    /// Close the log: the writer commits what is queued, publishes a final
    /// checkpoint and releases the log's lock before this returns.
    fn drop(&mut self) {
        if let Ok(mut g) = self.tx.lock() {
            g.1 = None;
        }
        if let Some(w) = self.writer.take()
            && w.join().is_err()
        {
            tracing::error!("the audit writer thread panicked");
        }
    }
}

impl AuditSink for LogSink {
    fn ready(&self) -> Result<(), AuditError> {
        if self.shared.healthy.load(Ordering::Acquire) {
            Ok(())
        } else {
            Err(AuditError::Failed("the last write failed".into()))
        }
    }

    fn record(&self, record: AuditRecord) -> Result<u64, AuditError> {
        let bytes = serde_json::to_vec(&record).map_err(|e| AuditError::Failed(e.to_string()))?;
        self.append(bytes)
    }

    fn durable(&self, index: u64) -> crate::AuditFuture<()> {
        Box::pin(LogSink::durable(self, index))
    }

    fn flush(&self) -> crate::AuditFuture<()> {
        let (done, wait) = tokio::sync::oneshot::channel();
        // Flush markers are not counted against the bound: they never wait.
        let sent = self.send(Message::Flush(done));
        Box::pin(async move {
            if !sent {
                return Err(AuditError::Closed);
            }
            wait.await.unwrap_or(Err(AuditError::Closed))
        })
    }
}

/// How soon after a start the first checkpoint is due, at most.
const FIRST_CHECKPOINT_AFTER: Duration = Duration::from_secs(1);

struct Writer {
    log: AuditLog,
    shared: Arc<Shared>,
    options: SinkOptions,
    last_checkpoint: Instant,
}

impl Writer {
    fn run(mut self, rx: &mpsc::Receiver<Message>) {
        let mut pending: Vec<Vec<u8>> = Vec::new();
        let mut flushes: Vec<Reply<()>> = Vec::new();
        let mut checkpoints: Vec<Reply<SignedCheckpoint>> = Vec::new();
        let mut backlog = false;
        let mut open = true;
        // Records a previous run wrote but never signed (it crashed before
        // its checkpoint was due) are signed now, right after recovery.
        if self.log.size() > self.published() {
            let first_due = self.last_checkpoint;
            let _ = self.publish();
            // This run's own first records keep their early checkpoint.
            self.last_checkpoint = first_due;
        }
        while open || !pending.is_empty() {
            // Wait for work: a record, a marker, a retry, or a checkpoint due.
            let wait = if !pending.is_empty() { Some(RETRY_AFTER) } else { self.checkpoint_due_in() };
            let first = match wait {
                None => rx.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected),
                Some(w) => rx.recv_timeout(w),
            };
            match first {
                Ok(m) => self.take(m, &mut pending, &mut flushes, &mut checkpoints),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => open = false,
            }
            // Gather the batch, unless someone waits on a marker, the queue
            // is behind (last batch was full), or this is a retry. The writer
            // sleeps through the interval rather than blocking on the channel:
            // a sender then only pushes (no wake-up, no system call), and the
            // writer wakes once per batch — on a busy core every wake-up is a
            // context switch taken from the request path. A batch that fills
            // `commit_records` sets `backlog`, and the next one is taken at once.
            let gather = open
                && !backlog
                && flushes.is_empty()
                && checkpoints.is_empty()
                && !pending.is_empty()
                && !self.options.commit_interval.is_zero();
            if gather {
                thread::sleep(self.options.commit_interval);
            }
            while pending.len() < self.options.commit_records {
                match rx.try_recv() {
                    Ok(m) => self.take(m, &mut pending, &mut flushes, &mut checkpoints),
                    Err(mpsc::TryRecvError::Empty) => break,
                    Err(mpsc::TryRecvError::Disconnected) => {
                        open = false;
                        break;
                    }
                }
            }
            backlog = pending.len() >= self.options.commit_records;
            let outcome = self.commit(&mut pending);
            for f in flushes.drain(..) {
                let _ = f.send(outcome.clone());
            }
            if !open && outcome.is_err() {
                tracing::error!(records = pending.len(), "audit log closed with records it could not write");
                break;
            }
            let due = self.log.size() > self.published()
                && (self.log.size() - self.published() >= self.options.checkpoint_every
                    || self.last_checkpoint.elapsed() >= self.options.checkpoint_interval
                    || !open);
            if outcome.is_ok() && (due || !checkpoints.is_empty()) {
                let published = self.publish();
                for c in checkpoints.drain(..) {
                    let _ = c.send(published.clone());
                }
            } else {
                for c in checkpoints.drain(..) {
                    let _ = c.send(outcome.clone().and_then(|()| Err(AuditError::Failed("not published".into()))));
                }
            }
        }
    }

    fn take(
        &self,
        m: Message,
        pending: &mut Vec<Vec<u8>>,
        flushes: &mut Vec<Reply<()>>,
        cps: &mut Vec<Reply<SignedCheckpoint>>,
    ) {
        match m {
            Message::Record(r) => pending.push(r),
            Message::Flush(f) => flushes.push(f),
            Message::Checkpoint(c) => cps.push(c),
        }
    }

    fn published(&self) -> u64 {
        self.log.latest().map_or(0, |c| c.checkpoint.size)
    }

    /// How long until a checkpoint is due (None: nothing to checkpoint).
    fn checkpoint_due_in(&self) -> Option<Duration> {
        (self.log.size() > self.published())
            .then(|| self.options.checkpoint_interval.saturating_sub(self.last_checkpoint.elapsed()))
    }

    fn commit(&mut self, pending: &mut Vec<Vec<u8>>) -> Result<(), AuditError> {
        if pending.is_empty() {
            return Ok(());
        }
        match self.log.append(pending.iter().map(Vec::as_slice)) {
            Ok(size) => {
                self.shared.queued.fetch_sub(pending.len(), Ordering::AcqRel);
                pending.clear();
                self.shared.healthy.store(true, Ordering::Release);
                self.shared.durable.send_replace(size);
                Ok(())
            }
            Err(e) => {
                tracing::error!(error = %e, "audit write failed; refusing traffic until a retry succeeds");
                self.shared.healthy.store(false, Ordering::Release);
                Err(AuditError::Failed(e.to_string()))
            }
        }
    }

    fn publish(&mut self) -> Result<SignedCheckpoint, AuditError> {
        self.last_checkpoint = Instant::now();
        let now = SystemTime::now();
        let signed = match self.log.checkpoint(now) {
            Ok(c) => c.clone(),
            Err(e) => {
                tracing::error!(error = %e, "cannot publish an audit checkpoint");
                return Err(AuditError::Failed(e.to_string()));
            }
        };
        if let Ok(mut latest) = self.shared.latest.write() {
            *latest = Some(signed.clone());
        }
        if let Err(e) = self.log.apply_retention(now) {
            tracing::error!(error = %e, "audit retention failed");
        }
        Ok(signed)
    }
}
