//! A transparency-log witness (C2SP `tlog-witness`): it cosigns a log's
//! checkpoint (C2SP `tlog-cosignature/v1`) only if it is consistent with the
//! last one it cosigned for that log, and remembers, durably, the largest.
//!
//! This is what anchors an audit log outside its host: a log rewritten,
//! truncated or forked after a witness cosigned it can never get that
//! witness's cosignature again — the witness answers `409 Conflict` with the
//! size it holds — so a verifier that requires a quorum of cosignatures from
//! witnesses it trusts detects it without any copy kept by hand.
//!
//! [`Witness::add_checkpoint`] is the protocol's one call, transport aside:
//! the request body (`old <size>`, up to 63 consistency-proof lines, an
//! empty line, the signed checkpoint) in, the cosignature line out, or a
//! [`WitnessError`] whose [`WitnessError::status`] is the HTTP status the
//! specification names. Checking the old size and recording the new
//! checkpoint happen under one lock, and the record is on disk before the
//! cosignature is returned.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ward_merkle::{Checkpoint, Cosigner, Hash, NoteError, NoteVerifier, verify_consistency};

/// The most consistency-proof lines a request may carry (C2SP).
pub const MAX_PROOF_LINES: usize = 63;

/// Why a checkpoint was not cosigned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WitnessError {
    /// The request is malformed, or its old size is past the checkpoint's (400).
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// No log with this origin is configured (404).
    #[error("unknown log `{0}`")]
    UnknownLog(String),
    /// No signature by a key trusted for the origin verifies (403).
    #[error("no signature by a trusted key of `{0}`")]
    Forbidden(String),
    /// The old size is not the size last cosigned, or the same size came with
    /// another root (409): `size` is the size the witness holds.
    #[error("conflict: the witness holds size {size}")]
    Conflict {
        /// The size of the latest checkpoint this witness cosigned for the log.
        size: u64,
    },
    /// The consistency proof does not verify (422).
    #[error("the consistency proof does not verify")]
    BadProof,
    /// The witness could not record the checkpoint durably (500): nothing was cosigned.
    #[error("witness storage: {0}")]
    Storage(String),
}

impl WitnessError {
    /// The HTTP status `tlog-witness` prescribes.
    #[must_use]
    pub fn status(&self) -> u16 {
        match self {
            Self::BadRequest(_) => 400,
            Self::Forbidden(_) => 403,
            Self::UnknownLog(_) => 404,
            Self::Conflict { .. } => 409,
            Self::BadProof => 422,
            Self::Storage(_) => 500,
        }
    }
}

/// An `add-checkpoint` request body, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddCheckpoint {
    /// The size of the previous checkpoint the log got cosigned (0: none).
    pub old: u64,
    /// The consistency proof from `old` to the checkpoint's size.
    pub proof: Vec<Hash>,
    /// The signed checkpoint (note text, blank line, signature lines).
    pub note: String,
}

impl AddCheckpoint {
    /// The request body for this request.
    #[must_use]
    pub fn body(&self) -> String {
        let mut out = format!("old {}\n", self.old);
        for h in &self.proof {
            out.push_str(&STANDARD.encode(h.as_bytes()));
            out.push('\n');
        }
        out.push('\n');
        out.push_str(&self.note);
        out
    }

    /// Parse a request body.
    ///
    /// # Errors
    /// [`WitnessError::BadRequest`] naming what is malformed.
    pub fn parse(body: &[u8]) -> Result<Self, WitnessError> {
        let body = std::str::from_utf8(body).map_err(|_| WitnessError::BadRequest("not UTF-8"))?;
        let (old_line, mut rest) = body.split_once('\n').ok_or(WitnessError::BadRequest("no old size line"))?;
        let old = old_line.strip_prefix("old ").ok_or(WitnessError::BadRequest("the first line is `old <size>`"))?;
        if old.is_empty() || !old.bytes().all(|b| b.is_ascii_digit()) || (old.len() > 1 && old.starts_with('0')) {
            return Err(WitnessError::BadRequest("the old size is a decimal without leading zeroes"));
        }
        let old: u64 = old.parse().map_err(|_| WitnessError::BadRequest("the old size is too large"))?;
        let mut proof = Vec::new();
        loop {
            let (line, after) =
                rest.split_once('\n').ok_or(WitnessError::BadRequest("no empty line before the checkpoint"))?;
            rest = after;
            if line.is_empty() {
                break;
            }
            if proof.len() == MAX_PROOF_LINES {
                return Err(WitnessError::BadRequest("more than 63 consistency proof lines"));
            }
            let raw = STANDARD.decode(line).map_err(|_| WitnessError::BadRequest("a proof line is not base64"))?;
            let hash: [u8; 32] =
                raw.try_into().map_err(|_| WitnessError::BadRequest("a proof line is not a SHA-256 hash"))?;
            proof.push(Hash(hash));
        }
        Ok(Self { old, proof, note: rest.to_owned() })
    }
}

/// What a witness holds for one log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    /// The size of the latest checkpoint cosigned.
    pub size: u64,
    /// Its root hash.
    pub root: Hash,
}

/// A witness: its cosigning key, the logs it serves and their keys, and the
/// latest checkpoint it cosigned for each, kept in `state_file`.
pub struct Witness {
    cosigner: Cosigner,
    logs: HashMap<String, Vec<NoteVerifier>>,
    state_file: PathBuf,
    state: Mutex<BTreeMap<String, Seen>>,
    /// Held (flock) for the witness's life: two processes on one state
    /// file would each accept from a stale size and undo the other.
    _lock: std::fs::File,
}

impl std::fmt::Debug for Witness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Witness")
            .field("cosigner", &self.cosigner.name())
            .field("logs", &self.logs.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

fn storage(path: &Path, e: impl std::fmt::Display) -> WitnessError {
    WitnessError::Storage(format!("{}: {e}", path.display()))
}

impl Witness {
    /// A witness cosigning with `cosigner` for `logs` (origin → the log keys
    /// it trusts), resuming from `state_file` (created when missing).
    ///
    /// # Errors
    /// [`WitnessError::Storage`] for an unreadable or damaged state file: a
    /// witness that forgot what it cosigned would cosign a rollback.
    pub fn open(
        state_file: &Path,
        cosigner: Cosigner,
        logs: HashMap<String, Vec<NoteVerifier>>,
    ) -> Result<Self, WitnessError> {
        let lock_path = state_file.with_extension("lock");
        let lock = {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .mode(0o600)
                .open(&lock_path)
                .map_err(|e| storage(&lock_path, e))?
        };
        if lock.try_lock().is_err() {
            return Err(storage(state_file, "another process holds this witness's state"));
        }
        let state = match std::fs::read(state_file) {
            Ok(bytes) => parse_state(&bytes).map_err(|e| storage(state_file, e))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(storage(state_file, e)),
        };
        Ok(Self { cosigner, logs, state_file: state_file.to_owned(), state: Mutex::new(state), _lock: lock })
    }

    /// The witness's verifier key (C2SP vkey, type 0x04).
    #[must_use]
    pub fn verifier_key(&self) -> String {
        self.cosigner.verifier_key()
    }

    /// Whether this witness serves the log `origin`.
    #[must_use]
    pub fn serves(&self, origin: &str) -> bool {
        self.logs.contains_key(origin)
    }

    /// The latest checkpoint cosigned for `origin`.
    #[must_use]
    pub fn seen(&self, origin: &str) -> Option<Seen> {
        self.state.lock().ok().and_then(|s| s.get(origin).copied())
    }

    /// `add-checkpoint`: the cosignature line for the request in `body`, at
    /// `now` (seconds since the epoch).
    ///
    /// # Errors
    /// [`WitnessError`], whose status is the answer the protocol prescribes.
    pub fn add_checkpoint(&self, body: &[u8], now: u64) -> Result<String, WitnessError> {
        let request = AddCheckpoint::parse(body)?;
        let split = request.note.rfind("\n\n").ok_or(WitnessError::BadRequest("the checkpoint has no signatures"))?;
        let text = &request.note[..=split];
        let origin = text.split('\n').next().unwrap_or_default().to_owned();
        let keys = self.logs.get(&origin).ok_or_else(|| WitnessError::UnknownLog(origin.clone()))?;
        // Signatures by unknown keys are ignored; one by a trusted key must verify.
        if !keys.iter().any(|k| k.verify(&request.note).is_ok()) {
            return Err(WitnessError::Forbidden(origin));
        }
        let checkpoint =
            Checkpoint::parse(text).map_err(|_: NoteError| WitnessError::BadRequest("malformed checkpoint"))?;
        if request.old > checkpoint.size {
            return Err(WitnessError::BadRequest("the old size is past the checkpoint's"));
        }
        if checkpoint.size == 0 && checkpoint.root != ward_merkle::EMPTY_ROOT {
            // An empty tree has one root; any other is not a checkpoint of it.
            return Err(WitnessError::BadProof);
        }
        let mut state = self.state.lock().map_err(|_| WitnessError::Storage("state lock poisoned".into()))?;
        let held = state.get(&origin).copied().unwrap_or(Seen { size: 0, root: ward_merkle::EMPTY_ROOT });
        if request.old != held.size {
            return Err(WitnessError::Conflict { size: held.size });
        }
        if request.old == checkpoint.size {
            // Nothing new: only the very checkpoint already cosigned.
            if !request.proof.is_empty() {
                return Err(WitnessError::BadProof);
            }
            if checkpoint.size > 0 && checkpoint.root != held.root {
                return Err(WitnessError::Conflict { size: held.size });
            }
        } else if request.old == 0 {
            if !request.proof.is_empty() {
                return Err(WitnessError::BadProof);
            }
        } else if verify_consistency(request.old, checkpoint.size, &request.proof, &held.root, &checkpoint.root)
            .is_err()
        {
            tracing::warn!(
                origin,
                old = request.old,
                size = checkpoint.size,
                "witness: inconsistent checkpoint refused"
            );
            return Err(WitnessError::BadProof);
        }
        let line = self
            .cosigner
            .cosign(text, now)
            .map_err(|_| WitnessError::BadRequest("the checkpoint text cannot be cosigned"))?;
        if held.size != checkpoint.size || state.get(&origin).is_none() {
            let mut next = state.clone();
            next.insert(origin, Seen { size: checkpoint.size, root: checkpoint.root });
            // On disk before anyone holds the cosignature.
            crate::checkpoints::write_atomic(&self.state_file, render_state(&next).as_bytes(), 0o600)
                .map_err(|e| storage(&self.state_file, e))?;
            *state = next;
        }
        Ok(line)
    }
}

fn render_state(state: &BTreeMap<String, Seen>) -> String {
    let map: serde_json::Map<String, serde_json::Value> = state
        .iter()
        .map(|(origin, seen)| {
            (origin.clone(), serde_json::json!({"size": seen.size, "root": STANDARD.encode(seen.root.as_bytes())}))
        })
        .collect();
    serde_json::json!({ "version": 1, "logs": map }).to_string()
}

fn parse_state(bytes: &[u8]) -> Result<BTreeMap<String, Seen>, String> {
    let v: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| format!("damaged witness state: {e}"))?;
    if v["version"] != 1 {
        return Err("unknown witness state version".into());
    }
    let logs = v["logs"].as_object().ok_or("damaged witness state: no logs")?;
    let mut out = BTreeMap::new();
    for (origin, seen) in logs {
        let size = seen["size"].as_u64().ok_or("damaged witness state: size")?;
        let root = seen["root"]
            .as_str()
            .and_then(|r| STANDARD.decode(r).ok())
            .and_then(|r| <[u8; 32]>::try_from(r).ok())
            .ok_or("damaged witness state: root")?;
        out.insert(origin.clone(), Seen { size, root: Hash(root) });
    }
    Ok(out)
}
