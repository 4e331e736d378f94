//! Appending leaves, and building inclusion and consistency proofs in a
//! 1-million-leaf in-memory tree (the on-disk log of issue #4 stores the same levels).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use criterion::{Criterion, criterion_group, criterion_main};
use ward_merkle::{MemoryTree, consistency_proof, inclusion_proof, leaf_hash, verify_inclusion};

fn bench(c: &mut Criterion) {
    let record = [7u8; 300];
    c.bench_function("merkle/leaf_hash_300B", |b| b.iter(|| leaf_hash(&record)));
    c.bench_function("merkle/append_300B", |b| {
        let mut t = MemoryTree::new();
        b.iter(|| t.push(&record));
    });
    let n = 1u64 << 20;
    let mut t = MemoryTree::new();
    for i in 0..n {
        t.push_hash(leaf_hash(&i.to_be_bytes()));
    }
    let size = n - 3; // not a power of two: the proof needs computed subtree roots
    let root = t.root_at(size).unwrap();
    let mut i = 0u64;
    c.bench_function("merkle/inclusion_proof_1M", |b| {
        b.iter(|| {
            i = (i + 7919) % size;
            inclusion_proof(&t, i, size).unwrap()
        })
    });
    let proof = inclusion_proof(&t, 12345, size).unwrap();
    let leaf = leaf_hash(&12345u64.to_be_bytes());
    c.bench_function("merkle/verify_inclusion_1M", |b| b.iter(|| verify_inclusion(12345, size, &leaf, &proof, &root)));
    c.bench_function("merkle/consistency_proof_1M", |b| b.iter(|| consistency_proof(&t, 777_777, size).unwrap()));
}

criterion_group!(benches, bench);
criterion_main!(benches);
