//! The witness round trip: `add-checkpoint` parsing, the log's signature,
//! the consistency proof, the durable state update (write + fsync +
//! rename) and the cosignature — and the log's check of the line it gets.
//!
//! `cargo bench -p ward-audit --bench witness`
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::HashMap;

use criterion::{Criterion, criterion_group, criterion_main};
use ward_audit::witness::{AddCheckpoint, Witness};
use ward_merkle::{Checkpoint, CosignatureVerifier, Cosigner, MemoryTree, NoteSigner, NoteVerifier, consistency_proof};

fn round_trip(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let log = NoteSigner::from_seed("bench/log", &[1; 32]).unwrap();
    let verifier = CosignatureVerifier::new(&Cosigner::from_seed("bench/w", &[2; 32]).unwrap().verifier_key()).unwrap();

    let mut tree = MemoryTree::new();
    let mut sizes = Vec::new();
    for i in 0..200_000u64 {
        tree.push(format!("r-{i}").as_bytes());
        if (i + 1) % 100 == 0 {
            sizes.push(i + 1);
        }
    }
    let note = |size: u64| {
        let mut t = MemoryTree::new();
        for i in 0..size {
            t.push(format!("r-{i}").as_bytes());
        }
        log.sign(&Checkpoint { origin: "bench/log".into(), size, root: t.root(), extensions: vec![] }.to_text())
            .unwrap()
    };
    // Requests prepared ahead: each extends the last by 100 records.
    let requests: Vec<(String, String)> = (0..sizes.len().min(400))
        .map(|i| {
            let (old, size) = (if i == 0 { 0 } else { sizes[i - 1] }, sizes[i]);
            let proof = if old == 0 { vec![] } else { consistency_proof(&tree, old, size).unwrap() };
            let n = note(size);
            (AddCheckpoint { old, proof, note: n.clone() }.body(), n)
        })
        .collect();
    let open = |n: usize| {
        let logs = HashMap::from([("bench/log".to_owned(), vec![NoteVerifier::new(&log.verifier_key()).unwrap()])]);
        Witness::open(
            &dir.path().join(format!("state-{n}.json")),
            Cosigner::from_seed("bench/w", &[2; 32]).unwrap(),
            logs,
        )
        .unwrap()
    };
    let mut round = 0;
    c.bench_function("witness add-checkpoint + cosignature check (durable state)", |b| {
        b.iter_custom(|iters| {
            let mut spent = std::time::Duration::ZERO;
            let mut witness = open(round);
            for k in 0..iters {
                let i = usize::try_from(k).unwrap() % requests.len();
                if i == 0 && k > 0 {
                    // A fresh state for the next pass over the chain (not timed).
                    round += 1;
                    witness = open(round);
                }
                let (body, note) = &requests[i];
                let started = std::time::Instant::now();
                let line = witness.add_checkpoint(body.as_bytes(), 1_700_000_000).unwrap();
                assert!(verifier.verify(&format!("{note}{line}")).is_ok());
                spent += started.elapsed();
            }
            round += 1;
            spent
        });
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = round_trip
}
criterion_main!(benches);
