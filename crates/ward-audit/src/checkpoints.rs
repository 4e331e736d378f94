//! Signed checkpoints: every one the log published, and the latest.
//!
//! `checkpoints.log` keeps every signed note, framed like a segment (so a torn
//! tail is recognised the same way); `checkpoint` holds the latest one as
//! plain text, replaced atomically, for witnesses and `ward audit checkpoint`.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use ward_merkle::{Checkpoint, NoteError, NoteVerifier};

use crate::frame;
use crate::segments::{Scanned, Tail, read_file, scan};

/// File name of the checkpoint history.
pub const HISTORY: &str = "checkpoints.log";
/// File name of the latest checkpoint.
pub const LATEST: &str = "checkpoint";
/// File name of the published verifier key.
pub const VERIFIER_KEY: &str = "checkpoint.vkey";

/// A checkpoint and the signed note it came in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCheckpoint {
    /// The signed note, as published.
    pub note: String,
    /// Its body.
    pub checkpoint: Checkpoint,
}

impl SignedCheckpoint {
    /// Check `note`'s signature with `verifier` and parse its body.
    ///
    /// # Errors
    /// [`NoteError`] for a bad signature or body.
    pub fn verify(note: &str, verifier: &NoteVerifier) -> Result<Self, NoteError> {
        let body = verifier.verify(note)?;
        Ok(Self { note: note.to_owned(), checkpoint: Checkpoint::parse(body)? })
    }
}

/// The signed checkpoint of `dir`'s history at exactly `size` that verifies
/// with `verifier`, if there is one: what a proof at an older size is
/// anchored in.
#[must_use]
pub fn at_size(dir: &Path, verifier: &NoteVerifier, size: u64) -> Option<SignedCheckpoint> {
    let (notes, _) = read_history(dir).ok()?;
    notes
        .iter()
        .rev()
        .filter_map(|note| SignedCheckpoint::verify(note, verifier).ok())
        .find(|c| c.checkpoint.size == size)
}

/// Every note in a checkpoint history, oldest first, and how the file ends.
///
/// # Errors
/// I/O errors; a missing file is an empty history.
pub fn read_history(dir: &Path) -> std::io::Result<(Vec<String>, Tail)> {
    let bytes = match read_file(&dir.join(HISTORY)) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), Tail::Clean)),
        Err(e) => return Err(e),
    };
    let Scanned { frames, tail, .. } =
        scan(&bytes).map_err(|e| std::io::Error::other(format!("{}: {e}", dir.join(HISTORY).display())))?;
    let notes = frames.iter().map(|(_, f)| String::from_utf8_lossy(f.payload).into_owned()).collect();
    Ok((notes, tail))
}

/// Appends to the checkpoint history.
#[derive(Debug)]
pub struct CheckpointWriter {
    dir: PathBuf,
    file: File,
    len: u64,
}

impl CheckpointWriter {
    /// Open the history under `dir`, cutting a torn last note. Returns the
    /// writer and the notes already there.
    ///
    /// # Errors
    /// I/O errors, or a history whose damage is not at its tail.
    pub fn open(dir: &Path) -> std::io::Result<(Self, Vec<String>)> {
        let path = dir.join(HISTORY);
        let exists = path.exists();
        let mut file = OpenOptions::new().create(true).append(true).mode(0o600).open(&path)?;
        if !exists || file.metadata()?.len() == 0 {
            file.write_all(&frame::header(0))?;
            file.sync_all()?;
            File::open(dir)?.sync_all()?;
        }
        let bytes = read_file(&path)?;
        let Scanned { frames, tail, .. } =
            scan(&bytes).map_err(|e| std::io::Error::other(format!("{}: {e}", path.display())))?;
        let notes: Vec<String> = frames.iter().map(|(_, f)| String::from_utf8_lossy(f.payload).into_owned()).collect();
        let len = match tail {
            Tail::Clean => bytes.len() as u64,
            Tail::Bad { offset, .. } => {
                tracing::warn!(file = %path.display(), offset, "cutting a torn checkpoint off the history");
                file.set_len(offset as u64)?;
                file.sync_all()?;
                offset as u64
            }
        };
        Ok((Self { dir: dir.to_owned(), file, len }, notes))
    }

    /// Append `note` durably and make it the latest checkpoint.
    ///
    /// # Errors
    /// I/O errors (the history is cut back to its previous length).
    pub fn publish(&mut self, note: &str) -> std::io::Result<()> {
        let mut buf = Vec::with_capacity(note.len() + frame::FRAME_OVERHEAD);
        frame::encode(note.as_bytes(), &mut buf).map_err(std::io::Error::other)?;
        if let Err(e) = self.file.write_all(&buf).and_then(|()| self.file.sync_data()) {
            let _ = self.file.set_len(self.len);
            return Err(e);
        }
        self.len += buf.len() as u64;
        write_atomic(&self.dir.join(LATEST), note.as_bytes(), 0o644)
    }
}

/// Replace `path` with `bytes` atomically and durably.
///
/// # Errors
/// I/O errors.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let tmp = path.with_extension("tmp");
    let mut f = OpenOptions::new().create(true).write(true).truncate(true).mode(mode).open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    File::open(dir)?.sync_all()
}
