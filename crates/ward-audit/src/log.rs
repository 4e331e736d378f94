//! The log itself: one writer appending records to segments, keeping the
//! Merkle tree, and publishing signed checkpoints.
//!
//! Layout of a log directory:
//!
//! ```text
//! lock               held (flock) by the one process that writes
//! segments/*.seg     record bodies (see `frame`)
//! tree/level-NN      the tree's levels (a cache; see `tree_store`)
//! checkpoints.log    every signed checkpoint published
//! checkpoint         the latest one
//! checkpoint.vkey    the verifier key anyone can check them with
//! torn/              bytes cut off a torn tail on recovery, kept as evidence
//! ```
//!
//! This type is synchronous and single-threaded; [`crate::LogSink`] runs it
//! on a writer thread with group commit.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use ward_merkle::{Checkpoint, Hash, NodeSource, NoteError, NoteSigner, NoteVerifier};

use crate::checkpoints::{CheckpointWriter, SignedCheckpoint, VERIFIER_KEY, write_atomic};
use crate::frame::{self, FrameError, HEADER_LEN};
use crate::segments::{self, ReadItem, SegmentReader, SegmentWriter, Tail};
use crate::tree_store::TreeStore;

/// Tree hashes buffered in memory before they are written to the level files.
const TREE_BUFFER: usize = 256 << 10;

/// Why the log cannot be opened or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Another process holds the log's lock.
    #[error("{0}: another process is writing this audit log")]
    Locked(PathBuf),
    /// The log's files contradict each other in a way recovery must not paper over.
    #[error("{0}")]
    Inconsistent(String),
    /// A record cannot be framed (empty or larger than 1 MiB).
    #[error("record rejected: {0}")]
    Record(FrameError),
    /// Signing or reading a checkpoint failed.
    #[error("checkpoint: {0}")]
    Checkpoint(#[from] NoteError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LogError + '_ {
    move |source| LogError::Io { path: path.to_owned(), source }
}

/// Which old segments may be deleted. Only segments wholly covered by a
/// published checkpoint are ever removed, and never the newest one; the
/// tree and every checkpoint stay, so what remains still verifies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    /// Delete segments last written longer ago than this.
    pub max_age: Option<Duration>,
    /// Delete the oldest segments while all of them together exceed this.
    pub max_bytes: Option<u64>,
}

/// How a log is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogOptions {
    /// The checkpoint origin line: a name unique to this log.
    pub origin: String,
    /// A segment rotates once it is this large (default 64 MiB).
    pub segment_bytes: u64,
    /// `false` is `danger_async`: batches are written but not synced before
    /// they are acknowledged (they are synced before each checkpoint).
    pub sync: bool,
    /// Which old segments to delete.
    pub retention: Retention,
}

impl LogOptions {
    /// Defaults for a log named `origin`.
    #[must_use]
    pub fn new(origin: impl Into<String>) -> Self {
        Self { origin: origin.into(), segment_bytes: 64 << 20, sync: true, retention: Retention::default() }
    }
}

/// What recovery did when the log was opened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// A torn tail was cut off.
    pub torn: Option<TornTail>,
    /// Leaf hashes recomputed because the tree was behind the records.
    pub rehashed: u64,
    /// Leaves dropped from the tree because it was ahead of the records.
    pub dropped: u64,
}

/// Bytes cut off the end of the newest segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    /// The segment.
    pub segment: PathBuf,
    /// The index the first cut record would have had.
    pub index: u64,
    /// How many bytes were cut.
    pub bytes: u64,
    /// Where they were saved.
    pub saved_to: PathBuf,
    /// Why they were not a record.
    pub error: FrameError,
}

/// An open, writable audit log.
#[derive(Debug)]
pub struct AuditLog {
    dir: PathBuf,
    segments_dir: PathBuf,
    options: LogOptions,
    segments: SegmentWriter,
    tree: TreeStore,
    size: u64,
    signer: NoteSigner,
    verifier: NoteVerifier,
    history: CheckpointWriter,
    latest: Option<SignedCheckpoint>,
    buf: Vec<u8>,
    leaves: Vec<Hash>,
    _lock: File,
}

impl AuditLog {
    /// Open (or create) the log in `dir`, recovering from a crash: a torn
    /// tail is cut (and kept under `torn/`), the tree is brought level with
    /// the records. Refuses to open when records covered by a signed
    /// checkpoint are missing or damaged — that is for `ward audit verify`
    /// and a human, not for silent repair.
    ///
    /// # Errors
    /// [`LogError`].
    pub fn open(dir: &Path, signer: NoteSigner, options: LogOptions) -> Result<(Self, Recovery), LogError> {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(io(dir))?;
        let lock_path = dir.join("lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .map_err(io(&lock_path))?;
        if lock.try_lock().is_err() {
            return Err(LogError::Locked(dir.to_owned()));
        }
        let verifier = NoteVerifier::new(&signer.verifier_key())?;
        let vkey_path = dir.join(VERIFIER_KEY);
        let vkey = format!("{}\n", signer.verifier_key());
        if std::fs::read_to_string(&vkey_path).ok().as_deref() != Some(vkey.as_str()) {
            write_atomic(&vkey_path, vkey.as_bytes(), 0o644).map_err(io(&vkey_path))?;
        }
        let (history, notes) = CheckpointWriter::open(dir).map_err(io(&dir.join("checkpoints.log")))?;
        let latest = match notes.last() {
            None => None,
            Some(note) => Some(SignedCheckpoint::verify(note, &verifier).map_err(|e| {
                LogError::Inconsistent(format!(
                    "{}: the latest checkpoint does not verify with this log's key ({e}); was the checkpoint key replaced?",
                    dir.join("checkpoints.log").display()
                ))
            })?),
        };
        let checkpointed = latest.as_ref().map_or(0, |c| c.checkpoint.size);

        let segments_dir = dir.join("segments");
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&segments_dir).map_err(io(&segments_dir))?;
        let mut recovery = Recovery::default();
        let (writer, size) = recover_segments(dir, &segments_dir, checkpointed, &mut recovery)?;

        let tree_dir = dir.join("tree");
        let mut tree = TreeStore::open(&tree_dir).map_err(io(&tree_dir))?;
        if tree.size() > size {
            recovery.dropped = tree.size() - size;
            tree.truncate(size).map_err(io(&tree_dir))?;
        }
        if tree.size() < size {
            let from = tree.size();
            for item in SegmentReader::new(&segments_dir, from).map_err(io(&segments_dir))? {
                match item {
                    ReadItem::Record(r) if r.index == tree.size() => {
                        tree.push(r.leaf).map_err(io(&tree_dir))?;
                        recovery.rehashed += 1;
                    }
                    ReadItem::Record(_) => {}
                    ReadItem::Problem(p) => {
                        return Err(LogError::Inconsistent(format!("cannot rebuild the tree from the records: {p:?}")));
                    }
                }
            }
            if tree.size() != size {
                return Err(LogError::Inconsistent(format!(
                    "the tree covers {} records but the segments hold {size} (records before the oldest segment are gone)",
                    tree.size()
                )));
            }
            tree.flush().map_err(io(&tree_dir))?;
        }
        if size < checkpointed {
            return Err(LogError::Inconsistent(format!(
                "{}: the log holds {size} records but its latest checkpoint covers {checkpointed}: records were lost; run `ward audit verify`",
                dir.display()
            )));
        }
        if let Some(latest) = &latest
            && ward_merkle::subtree_root(&tree, 0, checkpointed).ok() != Some(latest.checkpoint.root)
            && checkpointed > 0
        {
            return Err(LogError::Inconsistent(format!(
                "{}: the records do not match the latest checkpoint (size {checkpointed}); run `ward audit verify`",
                dir.display()
            )));
        }
        let log = Self {
            dir: dir.to_owned(),
            segments_dir,
            options,
            segments: writer,
            tree,
            size,
            signer,
            verifier,
            history,
            latest,
            buf: Vec::new(),
            leaves: Vec::new(),
            _lock: lock,
        };
        Ok((log, recovery))
    }

    /// Records in the log.
    #[must_use]
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The log's directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The tree (for proofs).
    #[must_use]
    pub fn tree(&self) -> &TreeStore {
        &self.tree
    }

    /// The current root.
    #[must_use]
    pub fn root(&self) -> Hash {
        self.tree.root()
    }

    /// The latest published checkpoint.
    #[must_use]
    pub fn latest(&self) -> Option<&SignedCheckpoint> {
        self.latest.as_ref()
    }

    /// The key checkpoints verify with.
    #[must_use]
    pub fn verifier(&self) -> &NoteVerifier {
        &self.verifier
    }

    /// Append records as one batch: written, then (unless `danger_async`)
    /// synced, then added to the tree. All or nothing: on error none of
    /// them is in the log and the batch may be retried.
    ///
    /// # Errors
    /// [`LogError::Record`] for a record that cannot be framed (nothing is
    /// written), [`LogError::Io`] when the disk fails.
    pub fn append<'a>(&mut self, records: impl IntoIterator<Item = &'a [u8]>) -> Result<u64, LogError> {
        self.buf.clear();
        self.leaves.clear();
        for r in records {
            self.leaves.push(frame::encode(r, &mut self.buf).map_err(LogError::Record)?);
        }
        if self.leaves.is_empty() {
            return Ok(self.size);
        }
        if self.segments.len() >= self.options.segment_bytes && !self.segments.is_empty() {
            self.segments.rotate(self.size).map_err(io(&self.segments_dir))?;
        }
        let written = if self.options.sync { self.segments.commit(&self.buf) } else { self.segments.write(&self.buf) };
        written.map_err(io(&self.segments_dir))?;
        for leaf in &self.leaves {
            // The records are durable; a failing tree write is repaired on
            // reopen, so it must not fail the append.
            if let Err(e) = self.tree.push(*leaf) {
                tracing::error!(error = %e, "cannot extend the audit tree cache");
            }
        }
        // The level files are written in large chunks and at every checkpoint;
        // until then the newest nodes live in memory (and a crash only means
        // rehashing them from the segments on open).
        if let Err(e) = self.tree.flush_over(TREE_BUFFER) {
            tracing::error!(error = %e, "cannot write the audit tree cache");
        }
        self.size += self.leaves.len() as u64;
        Ok(self.size)
    }

    /// Sign and publish a checkpoint of the current size (also syncing the
    /// tree, and the records in `danger_async` mode). `extensions` are extra
    /// note lines (Ward adds the time).
    ///
    /// # Errors
    /// [`LogError`] when syncing, signing or writing fails.
    pub fn checkpoint(&mut self, now: SystemTime) -> Result<&SignedCheckpoint, LogError> {
        if !self.options.sync {
            self.segments.sync().map_err(io(&self.segments_dir))?;
        }
        self.tree.sync().map_err(io(&self.dir.join("tree")))?;
        let body = Checkpoint {
            origin: self.options.origin.clone(),
            size: self.size,
            root: self.tree.root(),
            extensions: vec![format!("time {}", crate::format_rfc3339_millis(now))],
        };
        let note = self.signer.sign(&body.to_text())?;
        self.history.publish(&note).map_err(io(&self.dir.join("checkpoints.log")))?;
        Ok(self.latest.insert(SignedCheckpoint { note, checkpoint: body }))
    }

    /// Delete old segments as the retention settings allow. Returns the
    /// first index whose record body is still kept.
    ///
    /// # Errors
    /// I/O errors.
    pub fn apply_retention(&mut self, now: SystemTime) -> Result<u64, LogError> {
        let segs = segments::list(&self.segments_dir).map_err(io(&self.segments_dir))?;
        let covered = self.latest.as_ref().map_or(0, |c| c.checkpoint.size);
        let mut total: u64 = segs.iter().map(|s| s.bytes).sum();
        let mut removed = false;
        for (i, seg) in segs.iter().enumerate() {
            let Some(next) = segs.get(i + 1) else { break };
            if next.first > covered || seg.first == self.segments.first() {
                break;
            }
            let too_old = self.options.retention.max_age.is_some_and(|age| {
                std::fs::metadata(&seg.path)
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|m| now.duration_since(m).ok())
                    .is_some_and(|d| d > age)
            });
            let too_big = self.options.retention.max_bytes.is_some_and(|max| total > max);
            if !(too_old || too_big) {
                break;
            }
            std::fs::remove_file(&seg.path).map_err(io(&seg.path))?;
            tracing::info!(segment = %seg.path.display(), first = seg.first, until = next.first, "audit retention removed a segment");
            total -= seg.bytes;
            removed = true;
        }
        if removed {
            File::open(&self.segments_dir).and_then(|d| d.sync_all()).map_err(io(&self.segments_dir))?;
        }
        Ok(segments::list(&self.segments_dir).map_err(io(&self.segments_dir))?.first().map_or(0, |s| s.first))
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        if let Err(e) = self.tree.flush() {
            tracing::error!(error = %e, "cannot write the audit tree cache on close");
        }
    }
}

/// Find the newest segment, cut its torn tail, and return a writer for it
/// and the number of records in the log.
fn recover_segments(
    dir: &Path,
    segments_dir: &Path,
    checkpointed: u64,
    recovery: &mut Recovery,
) -> Result<(SegmentWriter, u64), LogError> {
    let mut segs = segments::list(segments_dir).map_err(io(segments_dir))?;
    // A crash between creating a segment and syncing its header leaves a
    // file shorter than a header: it never held a record.
    while let Some(last) = segs.last() {
        if last.bytes >= HEADER_LEN as u64 {
            break;
        }
        std::fs::remove_file(&last.path).map_err(io(&last.path))?;
        segs.pop();
    }
    let Some(last) = segs.last() else {
        if checkpointed > 0 {
            return Err(LogError::Inconsistent(format!(
                "{}: no segments, but the checkpoints cover {checkpointed} records",
                segments_dir.display()
            )));
        }
        return Ok((SegmentWriter::create(segments_dir, 0).map_err(io(segments_dir))?, 0));
    };
    let bytes = segments::read_file(&last.path).map_err(io(&last.path))?;
    let segments::Scanned { first, frames, tail } =
        segments::scan(&bytes).map_err(|e| LogError::Inconsistent(format!("{}: {e}", last.path.display())))?;
    if first != last.first {
        return Err(LogError::Inconsistent(format!(
            "{}: header says the segment starts at record {first}",
            last.path.display()
        )));
    }
    let size = first + frames.len() as u64;
    let valid = match tail {
        Tail::Clean => bytes.len(),
        Tail::Bad { offset, error } => {
            if size < checkpointed {
                return Err(LogError::Inconsistent(format!(
                    "{}: record {size} at byte {offset} is damaged ({error}) but a signed checkpoint covers it; run `ward audit verify`",
                    last.path.display()
                )));
            }
            let torn_dir = dir.join("torn");
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&torn_dir).map_err(io(&torn_dir))?;
            let saved_to = torn_dir.join(format!("{}-{offset}.bin", segments::file_name(last.first)));
            write_atomic(&saved_to, &bytes[offset..], 0o600).map_err(io(&saved_to))?;
            tracing::warn!(
                segment = %last.path.display(), index = size, bytes = bytes.len() - offset, saved_to = %saved_to.display(), %error,
                "audit log recovery: cut a torn tail (records that were never acknowledged)"
            );
            recovery.torn = Some(TornTail {
                segment: last.path.clone(),
                index: size,
                bytes: (bytes.len() - offset) as u64,
                saved_to,
                error,
            });
            offset
        }
    };
    let writer = SegmentWriter::resume(segments_dir, last, valid as u64).map_err(io(&last.path))?;
    Ok((writer, size))
}
