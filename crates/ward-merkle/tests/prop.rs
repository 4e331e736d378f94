//! Property tests: proofs built by the tree verify for random sizes and
//! indices, and fail for wrong indices, sizes, leaves and roots.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;
use ward_merkle::{MemoryTree, consistency_proof, inclusion_proof, leaf_hash, verify_consistency, verify_inclusion};

fn tree(n: u64) -> MemoryTree {
    let mut t = MemoryTree::new();
    for i in 0..n {
        t.push(format!("record {i}").as_bytes());
    }
    t
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn inclusion_proofs_verify_and_wrong_claims_fail(n in 1u64..2000, pick in any::<u64>(), other in any::<u64>()) {
        let t = tree(n);
        let i = pick % n;
        let leaf = leaf_hash(format!("record {i}").as_bytes());
        let root = t.root();
        let p = inclusion_proof(&t, i, n).unwrap();
        prop_assert!(verify_inclusion(i, n, &leaf, &p, &root).is_ok());
        let j = other % n;
        if j != i {
            prop_assert!(verify_inclusion(j, n, &leaf, &p, &root).is_err(), "wrong index {j}");
        }
        prop_assert!(verify_inclusion(i, n, &leaf_hash(b"forged"), &p, &root).is_err());
        // (A different tree size can describe the same path shape — index 0
        // of 3 and of 4 — so the size is bound by the signed checkpoint, not here.)
        // The wrong root (here the leaf itself, which is the root only of a tree of one).
        if n > 1 {
            prop_assert!(verify_inclusion(i, n, &leaf, &p, &leaf).is_err());
        }
        if !p.is_empty() {
            prop_assert!(verify_inclusion(i, n, &leaf, &p[1..], &root).is_err(), "truncated proof");
        }
    }

    #[test]
    fn consistency_proofs_verify_and_wrong_claims_fail(n in 2u64..2000, a in any::<u64>()) {
        let t = tree(n);
        let m = 1 + a % (n - 1);
        let (r1, r2) = (t.root_at(m).unwrap(), t.root());
        let p = consistency_proof(&t, m, n).unwrap();
        prop_assert!(verify_consistency(m, n, &p, &r1, &r2).is_ok());
        // A first tree that is not a prefix (a rewritten record) fails.
        let mut forged = tree(m - 1);
        forged.push(b"rewritten");
        prop_assert!(verify_consistency(m, n, &p, &forged.root(), &r2).is_err());
        prop_assert!(verify_consistency(m, n, &p, &r1, &r1).is_err() || m == n);
        if m > 1 {
            prop_assert!(verify_consistency(m - 1, n, &p, &r1, &r2).is_err(), "wrong size");
        }
        prop_assert!(verify_consistency(n, m, &p, &r2, &r1).is_err(), "reversed");
    }
}
