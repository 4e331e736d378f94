//! Property tests: the tree stored on disk (appended in random batches,
//! reopened at random points) gives the same roots and proofs as the
//! in-memory reference, its proofs verify, and wrong ones do not.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;
use ward_audit::TreeStore;
use ward_merkle::{
    MemoryTree, NodeSource, consistency_proof, inclusion_proof, leaf_hash, verify_consistency, verify_inclusion,
};

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn stored_tree_matches_the_reference(batches in prop::collection::vec((1usize..40, any::<bool>()), 1..12), picks in prop::collection::vec(any::<u64>(), 8)) {
        let dir = tempfile::tempdir().unwrap();
        let mut store = TreeStore::open(dir.path()).unwrap();
        let mut mem = MemoryTree::new();
        let mut n = 0u64;
        for (len, reopen) in batches {
            for _ in 0..len {
                store.push(leaf_hash(&n.to_le_bytes())).unwrap();
                mem.push(&n.to_le_bytes());
                n += 1;
            }
            store.flush().unwrap();
            if reopen {
                store = TreeStore::open(dir.path()).unwrap();
            }
            prop_assert_eq!(store.root(), mem.root());
        }
        prop_assert_eq!(store.size(), n);
        for p in picks {
            let size = 1 + p % n;
            let index = (p >> 20) % size;
            let proof = inclusion_proof(&store, index, size).unwrap();
            prop_assert_eq!(&proof, &inclusion_proof(&mem, index, size).unwrap());
            let root = mem.root_at(size).unwrap();
            prop_assert!(verify_inclusion(index, size, &leaf_hash(&index.to_le_bytes()), &proof, &root).is_ok());
            // The wrong leaf, the wrong index, or a shortened proof fail.
            prop_assert!(verify_inclusion(index, size, &leaf_hash(&(index + 1).to_le_bytes()), &proof, &root).is_err());
            if size > 1 {
                prop_assert!(verify_inclusion((index + 1) % size, size, &leaf_hash(&index.to_le_bytes()), &proof, &root).is_err());
                prop_assert!(verify_inclusion(index, size, &leaf_hash(&index.to_le_bytes()), &proof[1..], &root).is_err());
            }
            let older = 1 + (p >> 40) % size;
            let c = consistency_proof(&store, older, size).unwrap();
            prop_assert!(verify_consistency(older, size, &c, &mem.root_at(older).unwrap(), &root).is_ok());
            if older < size {
                let other = leaf_hash(b"not the old root");
                prop_assert!(verify_consistency(older, size, &c, &other, &root).is_err());
            }
        }
    }
}
