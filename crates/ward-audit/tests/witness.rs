//! The witness (C2SP tlog-witness): it cosigns only what is consistent with
//! what it cosigned before, remembers it across restarts, and answers every
//! other case with the status the specification names.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;

use ward_audit::witness::{AddCheckpoint, Witness, WitnessError};
use ward_merkle::{
    Checkpoint, CosignatureVerifier, Cosigner, MemoryTree, NodeSource, NoteSigner, NoteVerifier, consistency_proof,
};

const ORIGIN: &str = "ward.test/audit";

fn log_key() -> NoteSigner {
    NoteSigner::from_seed(ORIGIN, &[1; 32]).unwrap()
}

fn witness(dir: &std::path::Path) -> Witness {
    let logs = HashMap::from([(ORIGIN.to_owned(), vec![NoteVerifier::new(&log_key().verifier_key()).unwrap()])]);
    Witness::open(&dir.join("witness.json"), Cosigner::from_seed("witness.test/w1", &[2; 32]).unwrap(), logs).unwrap()
}

/// A log whose records are `prefix-0`, `prefix-1`, …
fn tree(prefix: &str, n: u64) -> MemoryTree {
    let mut t = MemoryTree::new();
    for i in 0..n {
        t.push(format!("{prefix}-{i}").as_bytes());
    }
    t
}

fn note(t: &MemoryTree, size: u64, signer: &NoteSigner) -> String {
    let mut at = MemoryTree::new();
    for i in 0..size {
        at.push_hash(t.node(0, i).unwrap());
    }
    let c = Checkpoint { origin: ORIGIN.into(), size, root: at.root(), extensions: vec![] };
    signer.sign(&c.to_text()).unwrap()
}

fn request(t: &MemoryTree, old: u64, size: u64) -> Vec<u8> {
    let proof = if old == 0 || old == size { vec![] } else { consistency_proof(t, old, size).unwrap() };
    AddCheckpoint { old, proof, note: note(t, size, &log_key()) }.body().into_bytes()
}

#[test]
fn cosigns_consistent_growth_and_keeps_it_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let w = witness(dir.path());
    let t = tree("r", 300);
    let line = w.add_checkpoint(&request(&t, 0, 100), 1_700_000_000).unwrap();
    let cosigned = format!("{}{line}", note(&t, 100, &log_key()));
    let v = CosignatureVerifier::new(&w.verifier_key()).unwrap();
    assert_eq!(v.verify(&cosigned), Ok(1_700_000_000));
    w.add_checkpoint(&request(&t, 100, 250), 1_700_000_010).unwrap();
    // The same checkpoint again is cosigned again (a retry).
    w.add_checkpoint(&request(&t, 250, 250), 1_700_000_011).unwrap();
    drop(w);
    // A restart remembers size 250: the log must continue from there.
    let w = witness(dir.path());
    assert_eq!(w.seen(ORIGIN).map(|s| s.size), Some(250));
    assert_eq!(w.add_checkpoint(&request(&t, 100, 300), 1).unwrap_err(), WitnessError::Conflict { size: 250 });
    w.add_checkpoint(&request(&t, 250, 300), 1_700_000_020).unwrap();
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(dir.path().join("witness.json")).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn a_rollback_a_rewrite_and_a_fork_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let w = witness(dir.path());
    let honest = tree("r", 300);
    w.add_checkpoint(&request(&honest, 0, 200), 1).unwrap();
    // Truncated: the log presents size 150 as if nothing came after.
    let e = w.add_checkpoint(&request(&honest, 0, 150), 2).unwrap_err();
    assert_eq!((e.status(), e), (409, WitnessError::Conflict { size: 200 }));
    // Rewritten (same key, signed by whoever holds it): record 120 changed.
    let mut forged = MemoryTree::new();
    for i in 0..300u64 {
        let record = if i == 120 { b"forged".to_vec() } else { format!("r-{i}").into_bytes() };
        forged.push(&record);
    }
    // Same size, another root: conflict.
    assert_eq!(w.add_checkpoint(&request(&forged, 200, 200), 3).unwrap_err(), WitnessError::Conflict { size: 200 });
    // Larger, with a proof from the forged tree: it cannot extend what was cosigned.
    assert_eq!(w.add_checkpoint(&request(&forged, 200, 300), 4).unwrap_err(), WitnessError::BadProof);
    // A fork from another log under the same origin and key.
    let other = tree("x", 300);
    assert_eq!(w.add_checkpoint(&request(&other, 200, 300), 5).unwrap_err().status(), 422);
    // The honest log still goes on.
    w.add_checkpoint(&request(&honest, 200, 300), 6).unwrap();
    assert_eq!(w.seen(ORIGIN).map(|s| s.size), Some(300));
}

#[test]
fn unknown_logs_foreign_keys_and_malformed_requests_get_their_statuses() {
    let dir = tempfile::tempdir().unwrap();
    let w = witness(dir.path());
    let t = tree("r", 10);
    // Another origin.
    let stranger = NoteSigner::from_seed("other.test/log", &[3; 32]).unwrap();
    let c = Checkpoint { origin: "other.test/log".into(), size: 10, root: t.root(), extensions: vec![] };
    let body = AddCheckpoint { old: 0, proof: vec![], note: stranger.sign(&c.to_text()).unwrap() }.body();
    assert_eq!(w.add_checkpoint(body.as_bytes(), 1).unwrap_err().status(), 404);
    // The right origin signed by another key (named like the log's).
    let impostor = NoteSigner::from_seed(ORIGIN, &[9; 32]).unwrap();
    let body = AddCheckpoint { old: 0, proof: vec![], note: note(&t, 10, &impostor) }.body();
    assert_eq!(w.add_checkpoint(body.as_bytes(), 1).unwrap_err().status(), 403);
    // Old past the checkpoint.
    let body = AddCheckpoint { old: 11, proof: vec![], note: note(&t, 10, &log_key()) }.body();
    assert_eq!(w.add_checkpoint(body.as_bytes(), 1).unwrap_err().status(), 400);
    // A proof with old size 0.
    let body = AddCheckpoint { old: 0, proof: vec![t.root()], note: note(&t, 10, &log_key()) }.body();
    assert_eq!(w.add_checkpoint(body.as_bytes(), 1).unwrap_err().status(), 422);
    for bad in [
        "old 01\n\n".to_owned(),
        "old -1\n\n".to_owned(),
        "new 0\n\n".to_owned(),
        "old 0\nnot-base64!\n\n".to_owned(),
        "old 0\n".to_owned(),
        format!("old 5\n{}\n", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n".repeat(64)),
    ] {
        assert_eq!(w.add_checkpoint(bad.as_bytes(), 1).unwrap_err().status(), 400, "{bad:?}");
    }
    // Nothing was recorded by any of them.
    assert_eq!(w.seen(ORIGIN), None);
    assert_eq!(t.size(), 10);
}

#[test]
fn a_damaged_state_file_is_refused_not_forgotten() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("witness.json"), b"{not json").unwrap();
    let logs = HashMap::new();
    let e =
        Witness::open(&dir.path().join("witness.json"), Cosigner::from_seed("w", &[2; 32]).unwrap(), logs).unwrap_err();
    assert_eq!(e.status(), 500);
}

// ---- The log's side: submitting checkpoints and keeping cosignatures. ----

use std::sync::Arc;
use ward_audit::witness_client::{COSIGNED, Configured, Local, Outcome, submit};
use ward_audit::{AuditLog, LogOptions};

fn append(log: &mut AuditLog, from: u64, to: u64) -> ward_audit::checkpoints::SignedCheckpoint {
    let records: Vec<Vec<u8>> = (from..to).map(|i| format!("r-{i}").into_bytes()).collect();
    log.append(records.iter().map(Vec::as_slice)).unwrap();
    log.checkpoint(std::time::SystemTime::now()).unwrap().clone()
}

fn configured(w: &Arc<Witness>) -> Configured {
    Configured {
        verifier: CosignatureVerifier::new(&w.verifier_key()).unwrap(),
        transport: Box::new(Local(Arc::clone(w))),
    }
}

#[tokio::test]
async fn the_log_gets_its_checkpoints_cosigned_and_keeps_them() {
    let logdir = tempfile::tempdir().unwrap();
    let wdir = tempfile::tempdir().unwrap();
    let w = Arc::new(witness(wdir.path()));
    let (mut log, _) = AuditLog::open(logdir.path(), log_key(), LogOptions::new(ORIGIN)).unwrap();
    let first = append(&mut log, 0, 100);
    // The log does not know what the witness holds: it asks from 0.
    assert_eq!(submit(logdir.path(), &first, &configured(&w), None).await, (Outcome::Cosigned, Some(100)));
    let second = append(&mut log, 100, 250);
    // Still unknown (a restart): the witness's 409 names 100, the log proves from there.
    assert_eq!(submit(logdir.path(), &second, &configured(&w), None).await, (Outcome::Cosigned, Some(250)));
    let kept = std::fs::read_to_string(logdir.path().join(COSIGNED)).unwrap();
    assert!(kept.starts_with(&second.note));
    assert!(CosignatureVerifier::new(&w.verifier_key()).unwrap().verify(&kept).is_ok());
}

#[tokio::test]
async fn a_witness_that_saw_more_than_the_log_holds_is_a_divergence() {
    let logdir = tempfile::tempdir().unwrap();
    let wdir = tempfile::tempdir().unwrap();
    let w = Arc::new(witness(wdir.path()));
    let (mut log, _) = AuditLog::open(logdir.path(), log_key(), LogOptions::new(ORIGIN)).unwrap();
    let honest = append(&mut log, 0, 100);
    let later = append(&mut log, 100, 200);
    submit(logdir.path(), &later, &configured(&w), None).await;
    // The tail is cut: the log presents its size-100 checkpoint again.
    let (outcome, held) = submit(logdir.path(), &honest, &configured(&w), None).await;
    assert!(matches!(outcome, Outcome::Diverged(_)), "{outcome:?}");
    assert_eq!(held, Some(200));
    // A fork: another log under the same key, rewritten before the witness's size.
    let forkdir = tempfile::tempdir().unwrap();
    let (mut fork, _) = AuditLog::open(forkdir.path(), log_key(), LogOptions::new(ORIGIN)).unwrap();
    let records: Vec<Vec<u8>> = (0..300).map(|i| format!("x-{i}").into_bytes()).collect();
    fork.append(records.iter().map(Vec::as_slice)).unwrap();
    let forked = fork.checkpoint(std::time::SystemTime::now()).unwrap().clone();
    let (outcome, _) = submit(forkdir.path(), &forked, &configured(&w), Some(200)).await;
    assert!(matches!(outcome, Outcome::Diverged(_)), "{outcome:?}");
    assert_eq!(w.seen(ORIGIN).map(|s| s.size), Some(200), "the witness cosigned neither");
}

#[test]
fn an_empty_tree_has_one_root() {
    let dir = tempfile::tempdir().unwrap();
    let w = witness(dir.path());
    let t = tree("r", 5);
    let c = Checkpoint { origin: ORIGIN.into(), size: 0, root: t.root(), extensions: vec![] };
    let body = AddCheckpoint { old: 0, proof: vec![], note: log_key().sign(&c.to_text()).unwrap() }.body();
    assert_eq!(w.add_checkpoint(body.as_bytes(), 1).unwrap_err().status(), 422);
    let empty = Checkpoint { origin: ORIGIN.into(), size: 0, root: ward_merkle::EMPTY_ROOT, extensions: vec![] };
    let body = AddCheckpoint { old: 0, proof: vec![], note: log_key().sign(&empty.to_text()).unwrap() }.body();
    assert!(w.add_checkpoint(body.as_bytes(), 1).is_ok());
}

#[tokio::test]
async fn a_damaged_tree_cache_is_a_retry_not_a_divergence() {
    let logdir = tempfile::tempdir().unwrap();
    let wdir = tempfile::tempdir().unwrap();
    let w = Arc::new(witness(wdir.path()));
    let (mut log, _) = AuditLog::open(logdir.path(), log_key(), LogOptions::new(ORIGIN)).unwrap();
    let first = append(&mut log, 0, 100);
    assert_eq!(submit(logdir.path(), &first, &configured(&w), None).await.0, Outcome::Cosigned);
    let second = append(&mut log, 100, 200);
    drop(log);
    // The cache damaged everywhere above the leaves: whatever nodes the
    // proof takes from it are wrong.
    for entry in std::fs::read_dir(logdir.path().join("tree")).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().is_some_and(|n| n != "level-00") {
            let bytes: Vec<u8> = std::fs::read(&path).unwrap().iter().map(|b| b ^ 0x5a).collect();
            std::fs::write(&path, bytes).unwrap();
        }
    }
    let (outcome, _) = submit(logdir.path(), &second, &configured(&w), Some(100)).await;
    assert!(matches!(outcome, Outcome::Retry(ref why) if why.contains("tree cache")), "{outcome:?}");
}

#[test]
fn one_process_at_a_time_holds_a_witness_state() {
    let dir = tempfile::tempdir().unwrap();
    let _first = witness(dir.path());
    let logs = HashMap::new();
    let second = Witness::open(&dir.path().join("witness.json"), Cosigner::from_seed("w", &[2; 32]).unwrap(), logs);
    assert_eq!(second.unwrap_err().status(), 500);
}
