//! The log's side of witnessing: every new checkpoint goes to each
//! configured witness with a consistency proof from the size that witness
//! last cosigned, and the cosignatures that come back are kept beside the
//! checkpoint (`cosigned`: the checkpoint note with every valid cosignature
//! line), where `ward audit verify --witness-key` looks for its quorum.
//!
//! A witness that is down delays cosignatures, never the log: records keep
//! becoming durable, and the checkpoint is sent again (with backoff) until
//! the witness takes it. A witness that answers `409` with a size this log
//! does not hold — larger than it, or the same size with another root — has
//! cosigned a checkpoint this log no longer has: the log was truncated or
//! forked, or someone else signs with its key. That is raised as a CRITICAL
//! alert in the audit log.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use ward_merkle::{CosignatureVerifier, NodeSource, consistency_proof};

use crate::checkpoints::{SignedCheckpoint, write_atomic};
use crate::tree_store::TreeStore;
use crate::witness::{AddCheckpoint, Witness, WitnessError};

/// The file holding the latest checkpoint with its cosignatures.
pub const COSIGNED: &str = "cosigned";
/// The directory holding, per witness, the latest checkpoint it cosigned
/// (named by its key ID): while one witness is down, what the others and it
/// last cosigned is kept — `cosigned` alone would start over with each
/// newer checkpoint and lose the older, fully cosigned one.
pub const COSIGNATURES: &str = "cosignatures";

/// The file in `dir` holding the latest checkpoint `witness` cosigned.
#[must_use]
pub fn cosignature_file(dir: &Path, witness: &CosignatureVerifier) -> std::path::PathBuf {
    let key = witness.key();
    let id: String = key.rsplit('+').nth(1).unwrap_or_default().chars().filter(char::is_ascii_hexdigit).collect();
    dir.join(COSIGNATURES).join(if id.is_empty() { "unnamed".to_owned() } else { id })
}

/// The latest checkpoint of the log in `dir` that `witness` cosigned, as a
/// note carrying its valid cosignature, with the checkpoint's size and the
/// cosignature's time: the newer of its own file and `cosigned`.
#[must_use]
pub fn cosigned_by(dir: &Path, witness: &CosignatureVerifier) -> Option<(String, u64, u64)> {
    [cosignature_file(dir, witness), dir.join(COSIGNED)]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .filter_map(|note| {
            let time = witness.verify(&note).ok()?;
            let size = note.lines().nth(1)?.parse::<u64>().ok()?;
            Some((note, size, time))
        })
        .max_by_key(|(_, size, _)| *size)
}

/// How a witness answered, transport aside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// 200: the cosignature lines.
    Cosigned(String),
    /// 409: the size the witness holds.
    Conflict(u64),
    /// Any other status (the request will not succeed as sent).
    Refused(u16),
    /// No answer (unreachable, timed out): try again later.
    Unreachable(String),
}

/// A way to reach a witness.
pub trait Transport: Send + Sync {
    /// Submit an `add-checkpoint` body.
    fn add_checkpoint(&self, body: String) -> Pin<Box<dyn Future<Output = Answer> + Send + '_>>;
}

/// A witness in this process (the control plane of `ward up`): no HTTP.
#[derive(Debug, Clone)]
pub struct Local(pub Arc<Witness>);

impl Transport for Local {
    fn add_checkpoint(&self, body: String) -> Pin<Box<dyn Future<Output = Answer> + Send + '_>> {
        let witness = Arc::clone(&self.0);
        Box::pin(async move {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
            match tokio::task::spawn_blocking(move || witness.add_checkpoint(body.as_bytes(), now)).await {
                Ok(Ok(lines)) => Answer::Cosigned(lines),
                Ok(Err(WitnessError::Conflict { size })) => Answer::Conflict(size),
                Ok(Err(e)) => Answer::Refused(e.status()),
                Err(e) => Answer::Unreachable(e.to_string()),
            }
        })
    }
}

/// One configured witness.
pub struct Configured {
    /// Its cosignature key (the lines it returns are checked against it).
    pub verifier: CosignatureVerifier,
    /// How to reach it.
    pub transport: Box<dyn Transport>,
}

impl std::fmt::Debug for Configured {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Configured").field("witness", &self.verifier.name()).finish_non_exhaustive()
    }
}

/// What happened when one checkpoint went to one witness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Cosigned; the line was kept.
    Cosigned,
    /// Not now (down, refused): try again later.
    Retry(String),
    /// The witness holds a checkpoint this log does not: CRITICAL.
    Diverged(String),
}

/// Send `checkpoint` to `witness`, whose last cosigned size is `held` (None:
/// unknown — ask with old size 0, and follow its 409). Returns the outcome
/// and the size the witness now holds, if known.
pub async fn submit(
    dir: &Path,
    checkpoint: &SignedCheckpoint,
    witness: &Configured,
    held: Option<u64>,
) -> (Outcome, Option<u64>) {
    let size = checkpoint.checkpoint.size;
    let mut old = held.unwrap_or(0);
    // At most one 409 followed: the witness names its size, the log proves from there.
    for _ in 0..2 {
        if old > size {
            let why = format!(
                "witness {} cosigned size {old}, the log's latest checkpoint is {size}: truncated or forked",
                witness.verifier.name()
            );
            return (Outcome::Diverged(why), Some(old));
        }
        let proof = if old == 0 || old == size {
            Vec::new()
        } else {
            match TreeStore::open_read(&dir.join("tree")).map_err(|e| e.to_string()).and_then(|t| {
                if t.size() < size {
                    return Err("the tree does not reach the checkpoint yet".to_owned());
                }
                consistency_proof(&t, old, size).map_err(|e| e.to_string())
            }) {
                Ok(p) => p,
                Err(e) => return (Outcome::Retry(format!("consistency proof {old}→{size}: {e}")), Some(old)),
            }
        };
        let body = AddCheckpoint { old, proof, note: checkpoint.note.clone() }.body();
        match witness.transport.add_checkpoint(body).await {
            Answer::Cosigned(lines) => {
                let cosigned = format!("{}{lines}", checkpoint.note);
                if witness.verifier.verify(&cosigned).is_err() {
                    return (
                        Outcome::Retry(format!("{} returned no valid cosignature", witness.verifier.name())),
                        None,
                    );
                }
                if let Err(e) = keep(dir, checkpoint, &lines, &witness.verifier) {
                    return (Outcome::Retry(format!("cannot keep the cosignature: {e}")), Some(size));
                }
                return (Outcome::Cosigned, Some(size));
            }
            Answer::Conflict(theirs) if theirs == old => {
                // Same size, another root (or a stale retry of ours).
                let why = format!(
                    "witness {} holds size {theirs} with another root than this log's",
                    witness.verifier.name()
                );
                return (Outcome::Diverged(why), Some(theirs));
            }
            Answer::Conflict(theirs) => old = theirs,
            Answer::Refused(422) => {
                // Either the witness holds a root at `old` this log never had
                // (a divergence), or this log's own tree cache produced a
                // bad proof: the log's own checkpoint at `old` tells which.
                if !own_proof_holds(dir, checkpoint, old) {
                    let why = format!(
                        "the tree cache cannot prove {old}→{size} against the log's own checkpoint: `ward audit verify`, then remove tree/ to rebuild it"
                    );
                    return (Outcome::Retry(why), Some(old));
                }
                let why = format!(
                    "witness {} refused the consistency proof from size {old}: the log no longer extends what it cosigned",
                    witness.verifier.name()
                );
                return (Outcome::Diverged(why), Some(old));
            }
            Answer::Refused(status) => {
                return (
                    Outcome::Retry(format!("{} refused the checkpoint ({status})", witness.verifier.name())),
                    held,
                );
            }
            Answer::Unreachable(e) => return (Outcome::Retry(format!("{}: {e}", witness.verifier.name())), held),
        }
    }
    (Outcome::Retry("the witness keeps changing its size".into()), Some(old))
}

/// Whether this log's consistency proof from `old` to `checkpoint` holds
/// against the log's own published checkpoint of size `old` (the same key
/// signed both). False when the log never published that size, or when its
/// tree cache cannot prove it.
fn own_proof_holds(dir: &Path, checkpoint: &SignedCheckpoint, old: u64) -> bool {
    let Some(key) = std::fs::read_to_string(dir.join(crate::checkpoints::VERIFIER_KEY))
        .ok()
        .and_then(|k| ward_merkle::NoteVerifier::new(k.trim()).ok())
    else {
        return false;
    };
    // Only this log's own key: the checkpoint being submitted must verify with it.
    if SignedCheckpoint::verify(&checkpoint.note, &key).is_err() {
        return false;
    }
    let Some(earlier) = crate::checkpoints::at_size(dir, &key, old) else { return true };
    TreeStore::open_read(&dir.join("tree"))
        .ok()
        .and_then(|t| consistency_proof(&t, old, checkpoint.checkpoint.size).ok())
        .is_some_and(|proof| {
            ward_merkle::verify_consistency(
                old,
                checkpoint.checkpoint.size,
                &proof,
                &earlier.checkpoint.root,
                &checkpoint.checkpoint.root,
            )
            .is_ok()
        })
}

/// Keep `lines` (after checking them) with `checkpoint`: in the witness's
/// own file (its latest cosigned checkpoint), and in the `cosigned` file,
/// where the same checkpoint gathers every witness's line and a newer one
/// starts over.
fn keep(dir: &Path, checkpoint: &SignedCheckpoint, lines: &str, verifier: &CosignatureVerifier) -> std::io::Result<()> {
    let mut own = checkpoint.note.clone();
    for line in lines.lines() {
        let candidate = format!("{}{line}\n", checkpoint.note);
        if verifier.verify(&candidate).is_ok() && !own.contains(line) {
            own.push_str(line);
            own.push('\n');
        }
    }
    let mine = cosignature_file(dir, verifier);
    if let Some(parent) = mine.parent() {
        std::fs::create_dir_all(parent)?;
    }
    write_atomic(&mine, own.as_bytes(), 0o644)?;
    let path = dir.join(COSIGNED);
    let current = std::fs::read_to_string(&path).ok().filter(|c| c.starts_with(&checkpoint.note));
    let mut out = current.unwrap_or_else(|| checkpoint.note.clone());
    for line in own.strip_prefix(checkpoint.note.as_str()).unwrap_or_default().lines() {
        if !out.contains(line) {
            out.push_str(line);
            out.push('\n');
        }
    }
    write_atomic(&path, out.as_bytes(), 0o644)
}

/// Send every new checkpoint of the log in `dir` (read through `latest`) to
/// `witnesses` until `stop` turns true; `alert` is called with each
/// divergence (the caller records a CRITICAL detection).
///
/// When `stop` turns, one last round submits the latest checkpoint (the
/// final one a stopping log signs) to every witness that has not cosigned
/// it, so that a log at rest is fully witnessed; the caller bounds how long
/// it waits for that round.
pub async fn run(
    dir: std::path::PathBuf,
    latest: impl Fn() -> Option<SignedCheckpoint> + Send,
    witnesses: Vec<Configured>,
    alert: impl Fn(&str) + Send,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut held: Vec<Option<u64>> = vec![None; witnesses.len()];
    let mut done: Vec<u64> = vec![0; witnesses.len()];
    let mut diverged: Vec<bool> = vec![false; witnesses.len()];
    let mut backoff = Duration::from_millis(200);
    let mut stopping = *stop.borrow();
    loop {
        let mut pending = false;
        if let Some(c) = latest() {
            for (i, w) in witnesses.iter().enumerate() {
                if done[i] == c.checkpoint.size && c.checkpoint.size > 0 || diverged[i] {
                    continue;
                }
                let (outcome, now_held) = submit(&dir, &c, w, held[i]).await;
                held[i] = now_held.or(held[i]);
                match outcome {
                    Outcome::Cosigned => done[i] = c.checkpoint.size,
                    Outcome::Retry(why) => {
                        tracing::warn!(witness = w.verifier.name(), why, "checkpoint not cosigned yet");
                        pending = true;
                    }
                    Outcome::Diverged(why) => {
                        tracing::error!(
                            witness = w.verifier.name(),
                            why,
                            "witness holds a checkpoint this log does not"
                        );
                        alert(&why);
                        diverged[i] = true;
                    }
                }
            }
        }
        if stopping {
            return;
        }
        let wait = if pending {
            backoff = (backoff * 2).min(Duration::from_secs(30));
            backoff
        } else {
            backoff = Duration::from_millis(200);
            Duration::from_millis(500)
        };
        tokio::select! {
            changed = stop.changed() => stopping = changed.is_err() || *stop.borrow(),
            () = tokio::time::sleep(wait) => {}
        }
    }
}
