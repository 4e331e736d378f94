//! Building proofs: the RFC 6962 §2.1 definitions over a source of
//! complete-subtree hashes, and an in-memory tree that keeps every level.

use crate::hash::{EMPTY_ROOT, Hash, leaf_hash, node_hash};

/// Why a proof cannot be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    /// The index or sizes are outside the tree.
    #[error("out of range: {0}")]
    OutOfRange(&'static str),
    /// The node source has no hash for a node it should have.
    #[error("missing node at level {level}, index {index}")]
    MissingNode {
        /// Level (0 = leaves).
        level: u32,
        /// Index within the level.
        index: u64,
    },
}

/// Where complete-subtree hashes come from: `node(level, index)` is the root
/// of leaves `[index·2^level, (index+1)·2^level)`, present once all of them are.
pub trait NodeSource {
    /// The number of leaves.
    fn size(&self) -> u64;
    /// A complete subtree's hash.
    fn node(&self, level: u32, index: u64) -> Option<Hash>;
}

/// Largest power of two strictly below `n` (n ≥ 2).
fn split(n: u64) -> u64 {
    1 << (63 - (n - 1).leading_zeros())
}

/// `MTH(D[start..end])`: the hash of an RFC 6962 subtree.
///
/// # Errors
/// [`ProofError`] when the range is empty or a node is missing.
pub fn subtree_root(src: &impl NodeSource, start: u64, end: u64) -> Result<Hash, ProofError> {
    if end <= start || end > src.size() {
        return Err(ProofError::OutOfRange("subtree"));
    }
    let n = end - start;
    if n.is_power_of_two() && start.is_multiple_of(n) {
        let level = n.trailing_zeros();
        return src.node(level, start >> level).ok_or(ProofError::MissingNode { level, index: start >> level });
    }
    let k = split(n);
    Ok(node_hash(&subtree_root(src, start, start + k)?, &subtree_root(src, start + k, end)?))
}

/// The root of the first `size` leaves (the empty root for 0).
///
/// # Errors
/// [`ProofError`] when `size` exceeds the source or a node is missing.
pub fn root_at(src: &impl NodeSource, size: u64) -> Result<Hash, ProofError> {
    if size == 0 { Ok(EMPTY_ROOT) } else { subtree_root(src, 0, size) }
}

/// `PATH(index, D[0..size])`, leaf-side first.
///
/// # Errors
/// [`ProofError`] when `index ≥ size`, `size` exceeds the source, or a node is missing.
pub fn inclusion_proof(src: &impl NodeSource, index: u64, size: u64) -> Result<Vec<Hash>, ProofError> {
    if index >= size || size > src.size() {
        return Err(ProofError::OutOfRange("inclusion"));
    }
    let mut out = Vec::with_capacity(64);
    path(src, index, 0, size, &mut out)?;
    Ok(out)
}

fn path(src: &impl NodeSource, m: u64, start: u64, end: u64, out: &mut Vec<Hash>) -> Result<(), ProofError> {
    let n = end - start;
    if n == 1 {
        return Ok(());
    }
    let k = split(n);
    if m < k {
        path(src, m, start, start + k, out)?;
        out.push(subtree_root(src, start + k, end)?);
    } else {
        path(src, m - k, start + k, end, out)?;
        out.push(subtree_root(src, start, start + k)?);
    }
    Ok(())
}

/// `PROOF(size1, D[0..size2])` (RFC 6962 §2.1.2); empty when the sizes are
/// equal. Refused for `size1 = 0`: a proof from the empty tree proves nothing.
///
/// # Errors
/// [`ProofError`] when `size1 > size2`, `size2` exceeds the source, or a node is missing.
pub fn consistency_proof(src: &impl NodeSource, size1: u64, size2: u64) -> Result<Vec<Hash>, ProofError> {
    if size1 > size2 || size2 > src.size() || size1 == 0 {
        return Err(ProofError::OutOfRange("consistency"));
    }
    let mut out = Vec::with_capacity(64);
    if size1 > 0 && size1 < size2 {
        subproof(src, size1, 0, size2, true, &mut out)?;
    }
    Ok(out)
}

fn subproof(
    src: &impl NodeSource,
    m: u64,
    start: u64,
    end: u64,
    complete: bool,
    out: &mut Vec<Hash>,
) -> Result<(), ProofError> {
    let n = end - start;
    if m == n {
        if !complete {
            out.push(subtree_root(src, start, end)?);
        }
        return Ok(());
    }
    let k = split(n);
    if m <= k {
        subproof(src, m, start, start + k, complete, out)?;
        out.push(subtree_root(src, start + k, end)?);
    } else {
        subproof(src, m - k, start + k, end, false, out)?;
        out.push(subtree_root(src, start, start + k)?);
    }
    Ok(())
}

/// A tree that keeps every complete-subtree hash in memory: `levels[0]` are
/// leaf hashes, `levels[k][i]` the root of leaves `[i·2^k, (i+1)·2^k)`.
/// Appending is amortised O(1) hashes; proofs take O(log n) lookups.
#[derive(Debug, Clone, Default)]
pub struct MemoryTree {
    levels: Vec<Vec<Hash>>,
}

impl MemoryTree {
    /// An empty tree.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Append a record; returns its index.
    pub fn push(&mut self, record: &[u8]) -> u64 {
        self.push_hash(leaf_hash(record))
    }

    /// Append a leaf hash; returns its index.
    pub fn push_hash(&mut self, leaf: Hash) -> u64 {
        let index = self.size();
        let mut hash = leaf;
        let mut level = 0;
        loop {
            if self.levels.len() == level {
                self.levels.push(Vec::new());
            }
            let Some(row) = self.levels.get_mut(level) else { break };
            row.push(hash);
            let len = row.len();
            if len % 2 == 1 {
                break;
            }
            let (Some(left), Some(right)) = (row.get(len - 2), row.get(len - 1)) else { break };
            hash = node_hash(left, right);
            level += 1;
        }
        index
    }

    /// The current root.
    #[must_use]
    pub fn root(&self) -> Hash {
        root_at(self, self.size()).unwrap_or(EMPTY_ROOT)
    }

    /// The root of the first `size` leaves.
    ///
    /// # Errors
    /// [`ProofError::OutOfRange`] past the end.
    pub fn root_at(&self, size: u64) -> Result<Hash, ProofError> {
        root_at(self, size)
    }
}

impl NodeSource for MemoryTree {
    fn size(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.len() as u64)
    }

    fn node(&self, level: u32, index: u64) -> Option<Hash> {
        self.levels.get(level as usize)?.get(usize::try_from(index).ok()?).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::{verify_consistency, verify_inclusion};

    /// MTH straight from the RFC's recursive definition, over leaf hashes.
    fn naive(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => EMPTY_ROOT,
            1 => leaves[0],
            n => {
                let k = split(n as u64) as usize;
                node_hash(&naive(&leaves[..k]), &naive(&leaves[k..]))
            }
        }
    }

    #[test]
    fn the_right_edge_folds_to_the_root() {
        let mut tree = MemoryTree::new();
        assert_eq!(crate::root_from_right_edge([]), EMPTY_ROOT);
        for i in 0..70u64 {
            tree.push(&i.to_be_bytes());
            let n = tree.size();
            // The perfect subtrees of [0, n), smallest first.
            let mut edge = Vec::new();
            let mut end = n;
            for level in 0..64u32 {
                if n & (1 << level) != 0 {
                    end -= 1 << level;
                    edge.push(tree.node(level, end >> level).unwrap());
                }
            }
            assert_eq!(crate::root_from_right_edge(edge), tree.root(), "size {n}");
        }
    }

    #[test]
    fn roots_match_the_definition_and_proofs_verify_for_small_trees() {
        let mut tree = MemoryTree::new();
        let mut leaves = Vec::new();
        assert_eq!(tree.root(), EMPTY_ROOT);
        for i in 0..70u64 {
            tree.push(&i.to_be_bytes());
            leaves.push(leaf_hash(&i.to_be_bytes()));
            let n = tree.size();
            assert_eq!(tree.root(), naive(&leaves), "size {n}");
            for m in 0..n {
                let p = inclusion_proof(&tree, m, n).unwrap();
                verify_inclusion(m, n, &leaves[m as usize], &p, &tree.root()).unwrap();
                if m > 0 {
                    let c = consistency_proof(&tree, m, n).unwrap();
                    verify_consistency(m, n, &c, &tree.root_at(m).unwrap(), &tree.root()).unwrap();
                }
            }
        }
        assert!(inclusion_proof(&tree, 70, 70).is_err() && consistency_proof(&tree, 5, 71).is_err());
    }
}
