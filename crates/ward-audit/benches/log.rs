//! The audit log's hot paths:
//!
//! - `durable_append`: records of 300 bytes appended by one producer thread
//!   through `LogSink` (group commit: 1 ms / 4096 records, `fdatasync` per
//!   batch) until the last one is acknowledged durable — records/s;
//! - `inclusion_proof`: an inclusion proof from the stored tree of 10 million
//!   records (random indices; the level files are in the page cache);
//! - `verify`: `ward audit verify`'s full pass over a log of 1 million
//!   records of 300 bytes — records/s.
//!
//! The 10 M tree and the 1 M log are built once under `target/bench-data`
//! and reused by later runs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ward_audit::{AuditLog, LogOptions, LogSink, SinkOptions, TreeStore};
use ward_merkle::{NodeSource, NoteSigner, NoteVerifier, inclusion_proof, leaf_hash};

const RECORD: usize = 300;

fn signer() -> NoteSigner {
    NoteSigner::from_seed("ward.bench/audit", &[1; 32]).unwrap()
}

fn data_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench-data").join(name)
}

fn record(i: u64) -> Vec<u8> {
    let mut r = format!(r#"{{"schema":"ward.audit.v2","event":"request","request_id":"{i:016x}","pad":""#).into_bytes();
    r.resize(RECORD - 2, b'x');
    r.extend_from_slice(b"\"}");
    r
}

fn durable_append(c: &mut Criterion) {
    const PER_ITER: u64 = 100_000;
    let dir = tempfile::tempdir().unwrap();
    let options = SinkOptions { queue: 1 << 20, ..SinkOptions::default() };
    let (sink, _) = LogSink::open(dir.path(), signer(), LogOptions::new("ward.bench/audit"), options).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let template = record(0);
    let mut g = c.benchmark_group("audit");
    g.throughput(Throughput::Elements(PER_ITER));
    g.sample_size(10);
    g.bench_function("durable_append_300B", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                let mut last = 0;
                for _ in 0..PER_ITER {
                    last = sink.append(template.clone()).unwrap();
                }
                rt.block_on(sink.durable(last)).unwrap();
            }
            start.elapsed()
        });
    });
    g.finish();
}

/// A tree of `n` leaves, built once.
fn big_tree(n: u64) -> TreeStore {
    let dir = data_dir(&format!("tree-{n}"));
    if let Ok(t) = TreeStore::open_read(&dir)
        && t.size() == n
    {
        return t;
    }
    let _ = std::fs::remove_dir_all(&dir);
    let started = Instant::now();
    let mut store = TreeStore::open(&dir).unwrap();
    for i in 0..n {
        store.push(leaf_hash(&i.to_le_bytes())).unwrap();
        if i % (1 << 16) == 0 {
            store.flush().unwrap();
        }
    }
    store.flush().unwrap();
    eprintln!("built a tree of {n} leaves in {:?}", started.elapsed());
    drop(store);
    TreeStore::open_read(&dir).unwrap()
}

fn proofs(c: &mut Criterion) {
    const N: u64 = 10_000_000;
    let tree = big_tree(N);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut g = c.benchmark_group("audit");
    g.bench_function("inclusion_proof_10M", |b| {
        b.iter(|| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            black_box(inclusion_proof(&tree, x % N, N).unwrap())
        });
    });
    g.finish();
}

/// A log of `n` records, built once.
fn big_log(n: u64) -> PathBuf {
    let dir = data_dir(&format!("log-{n}"));
    let verifier = NoteVerifier::new(&signer().verifier_key()).unwrap();
    if ward_audit::checkpoints::read_history(&dir).ok().and_then(|(notes, _)| notes.last().cloned()).is_some_and(
        |note| {
            ward_audit::checkpoints::SignedCheckpoint::verify(&note, &verifier).is_ok_and(|c| c.checkpoint.size == n)
        },
    ) {
        return dir;
    }
    let _ = std::fs::remove_dir_all(&dir);
    let (mut log, _) = AuditLog::open(&dir, signer(), LogOptions::new("ward.bench/audit")).unwrap();
    let mut i = 0;
    while i < n {
        let batch: Vec<Vec<u8>> = (i..(i + 4096).min(n)).map(record).collect();
        log.append(batch.iter().map(Vec::as_slice)).unwrap();
        i += batch.len() as u64;
        if i % 100_000 < 4096 || i == n {
            log.checkpoint(SystemTime::now()).unwrap();
        }
    }
    dir
}

fn verify(c: &mut Criterion) {
    const N: u64 = 1_000_000;
    let dir = big_log(N);
    let verifier = NoteVerifier::new(&signer().verifier_key()).unwrap();
    let mut g = c.benchmark_group("audit");
    g.throughput(Throughput::Elements(N));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(20));
    g.bench_function("verify_1M", |b| {
        b.iter(|| {
            let report = ward_audit::verify::verify(&dir, &verifier, None, |_, _| {}).unwrap();
            assert!(report.ok() && report.records == N, "{:?}", report.problems);
        });
    });
    g.finish();
}

criterion_group!(benches, durable_append, proofs, verify);
criterion_main!(benches);
