//! Proof verification, RFC 9162 §2.1.3.2 (inclusion) and §2.1.4.2
//! (consistency), with the edge cases transparency-dev's verifier pins down.

use crate::hash::{Hash, node_hash};

/// Why a proof does not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    /// The index is not inside the tree.
    #[error("index {index} is not inside a tree of size {size}")]
    IndexOutOfRange {
        /// The leaf index.
        index: u64,
        /// The tree size.
        size: u64,
    },
    /// The second tree is smaller than the first.
    #[error("tree size {second} is smaller than {first}")]
    SizesReversed {
        /// First size.
        first: u64,
        /// Second size.
        second: u64,
    },
    /// A consistency proof from the empty tree proves nothing.
    #[error("a consistency proof needs a non-empty first tree")]
    EmptyFirstTree,
    /// The proof has the wrong number of hashes for these sizes.
    #[error("the proof has the wrong length")]
    WrongLength,
    /// The hashes do not lead to the claimed root(s).
    #[error("the proof does not lead to the claimed root")]
    RootMismatch,
}

const fn lsb(x: u64) -> bool {
    x & 1 == 1
}

/// The root an inclusion proof leads to (RFC 9162 §2.1.3.2 steps 1–4).
///
/// # Errors
/// [`ProofError`] when the index or the proof length cannot fit the size.
pub fn root_from_inclusion(index: u64, size: u64, leaf: &Hash, proof: &[Hash]) -> Result<Hash, ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let (mut f, mut s) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if s == 0 {
            return Err(ProofError::WrongLength);
        }
        if lsb(f) || f == s {
            r = node_hash(p, &r);
            if !lsb(f) {
                while !lsb(f) && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(ProofError::WrongLength);
    }
    Ok(r)
}

/// Verify that `leaf` is at `index` in the tree of `size` with `root`.
///
/// # Errors
/// [`ProofError`] naming why not.
pub fn verify_inclusion(index: u64, size: u64, leaf: &Hash, proof: &[Hash], root: &Hash) -> Result<(), ProofError> {
    let computed = root_from_inclusion(index, size, leaf, proof)?;
    if &computed == root { Ok(()) } else { Err(ProofError::RootMismatch) }
}

/// Verify that the tree of `size1` with `root1` is a prefix of the tree of
/// `size2` with `root2`.
///
/// # Errors
/// [`ProofError`] naming why not.
pub fn verify_consistency(
    size1: u64,
    size2: u64,
    proof: &[Hash],
    root1: &Hash,
    root2: &Hash,
) -> Result<(), ProofError> {
    if size2 < size1 {
        return Err(ProofError::SizesReversed { first: size1, second: size2 });
    }
    if size1 == 0 {
        // A "proof" from the empty tree proves nothing (RFC 9162 defines
        // consistency for non-empty first trees), so it is refused.
        return Err(ProofError::EmptyFirstTree);
    }
    if size1 == size2 {
        if !proof.is_empty() {
            return Err(ProofError::WrongLength);
        }
        return if root1 == root2 { Ok(()) } else { Err(ProofError::RootMismatch) };
    }
    let (first, rest) = proof.split_first().ok_or(ProofError::WrongLength)?;
    // Step 2: a power-of-two first tree is itself a node of the second.
    let (start, path) = if size1.is_power_of_two() { (root1, proof) } else { (first, rest) };
    let (mut f, mut s) = (size1 - 1, size2 - 1);
    while lsb(f) {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (*start, *start);
    for c in path {
        if s == 0 {
            return Err(ProofError::WrongLength);
        }
        if lsb(f) || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if !lsb(f) {
                while !lsb(f) && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(ProofError::WrongLength);
    }
    if &fr == root1 && &sr == root2 { Ok(()) } else { Err(ProofError::RootMismatch) }
}
