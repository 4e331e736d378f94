//! RFC 6962 / RFC 9162 Merkle trees: the hashing, the proofs a log serves,
//! and the verifiers anyone can run against them.
//!
//! Leaves are `SHA-256(0x00 ‖ record)`, interior nodes `SHA-256(0x01 ‖ left ‖
//! right)`, and the tree over `n` leaves splits at the largest power of two
//! below `n` (RFC 6962 §2.1). Verification follows RFC 9162 §2.1.3.2 and
//! §2.1.4.2 and is checked against transparency-dev's vectors.
//!
//! It also writes and checks C2SP signed notes and `tlog-checkpoint`s.
//!
//! Pure: no I/O. The audit log (issue #4) stores the levels this crate
//! computes; [`MemoryTree`] keeps them in memory.
#![forbid(unsafe_code)]

mod cosignature;
mod hash;
mod note;
mod tree;
mod verify;

pub use cosignature::{COSIGNATURE_V1, CosignatureVerifier, Cosigner};
pub use hash::{EMPTY_ROOT, Hash, leaf_hash, node_hash, root_from_right_edge};
pub use note::{Checkpoint, NoteError, NoteSigner, NoteVerifier};
pub use tree::{MemoryTree, NodeSource, ProofError as BuildError, consistency_proof, inclusion_proof, subtree_root};
pub use verify::{ProofError, root_from_inclusion, verify_consistency, verify_inclusion};
