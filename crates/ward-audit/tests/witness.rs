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
