//! The Merkle tree's levels on disk, so a log of millions of records reopens
//! without rehashing them and proofs cost O(log n) reads.
//!
//! `tree/level-NN` holds the hashes of level `NN` back to back (32 bytes
//! each): level 0 the leaf hashes, level `k` the roots of complete subtrees
//! of `2^k` leaves. Storing every level costs 64 bytes per record (about a
//! fifth of a typical record) and makes an inclusion proof at any size a
//! handful of `pread`s.
//!
//! These files are a cache derived from the segments: they are written after
//! the records they describe are durable, are never trusted by verification
//! (which recomputes them, see `verify`), and are repaired on open when a
//! crash left them behind the records.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use ward_merkle::{Hash, NodeSource, node_hash};

const HASH: u64 = 32;
/// 2^64 leaves need 64 levels above the leaves.
const MAX_LEVELS: usize = 65;

/// The stored levels of one tree.
#[derive(Debug)]
pub struct TreeStore {
    dir: PathBuf,
    files: Vec<File>,
    /// Hashes per level, written or buffered.
    counts: Vec<u64>,
    /// Hashes per level that are in the file (the rest are in `buffers`).
    written: Vec<u64>,
    buffers: Vec<Vec<u8>>,
    /// For each level with an odd count, its last hash: the left sibling
    /// waiting for a right one. Together these are the tree's right edge.
    pending: Vec<Option<Hash>>,
    writable: bool,
}

/// The file holding level `level` of the tree in `dir`.
pub(crate) fn level_path(dir: &Path, level: usize) -> PathBuf {
    dir.join(format!("level-{level:02}"))
}

impl TreeStore {
    /// Open the levels under `dir` for appending (creating them), cutting
    /// any level back to what level 0 supports and rebuilding upper levels
    /// that a crash left short.
    ///
    /// # Errors
    /// I/O errors.
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut store = Self::empty(dir, true);
        let mut level = 0;
        loop {
            let path = level_path(dir, level);
            if level > 0 && !path.exists() && store.counts[0] >> level == 0 {
                break;
            }
            let file = OpenOptions::new().read(true).append(true).create(true).mode(0o600).open(&path)?;
            let count = file.metadata()?.len() / HASH;
            store.push_level(file, count);
            level += 1;
            if level >= MAX_LEVELS {
                break;
            }
        }
        store.repair()?;
        Ok(store)
    }

    /// Open the levels read-only (for proofs served beside a running writer).
    /// Missing files read as empty levels.
    ///
    /// # Errors
    /// I/O errors other than a missing file.
    pub fn open_read(dir: &Path) -> std::io::Result<Self> {
        let mut store = Self::empty(dir, false);
        for level in 0..MAX_LEVELS {
            match File::open(level_path(dir, level)) {
                Ok(file) => {
                    let count = file.metadata()?.len() / HASH;
                    store.push_level(file, count);
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                Err(e) => return Err(e),
            }
        }
        Ok(store)
    }

    fn empty(dir: &Path, writable: bool) -> Self {
        Self {
            dir: dir.to_owned(),
            files: Vec::new(),
            counts: Vec::new(),
            written: Vec::new(),
            buffers: Vec::new(),
            pending: Vec::new(),
            writable,
        }
    }

    fn push_level(&mut self, file: File, count: u64) {
        self.files.push(file);
        self.counts.push(count);
        self.written.push(count);
        self.buffers.push(Vec::new());
        self.pending.push(None);
    }

    fn ensure_level(&mut self, level: usize) -> std::io::Result<()> {
        while self.files.len() <= level {
            let path = level_path(&self.dir, self.files.len());
            let file = OpenOptions::new().read(true).append(true).create(true).mode(0o600).open(path)?;
            file.set_len(0)?;
            self.push_level(file, 0);
        }
        Ok(())
    }

    /// Make every level agree with level 0 and rebuild the right edge.
    fn repair(&mut self) -> std::io::Result<()> {
        let size = self.size();
        for level in 1..self.files.len() {
            let expected = size >> level;
            let have = self.counts[level];
            if have > expected {
                self.files[level].set_len(expected * HASH)?;
                self.counts[level] = expected;
                self.written[level] = expected;
            }
            let mut index = self.counts[level];
            while index < expected {
                let (Some(l), Some(r)) =
                    (self.node(level as u32 - 1, 2 * index), self.node(level as u32 - 1, 2 * index + 1))
                else {
                    return Err(std::io::Error::other(format!("tree level {} is unreadable", level - 1)));
                };
                self.append_at(level, node_hash(&l, &r));
                index += 1;
            }
        }
        for level in 0..self.files.len() {
            self.pending[level] =
                if self.counts[level] % 2 == 1 { self.node(level as u32, self.counts[level] - 1) } else { None };
        }
        self.flush()
    }

    fn append_at(&mut self, level: usize, hash: Hash) {
        self.buffers[level].extend_from_slice(hash.as_bytes());
        self.counts[level] += 1;
    }

    /// Cut the tree back to `size` leaves (recovery after the segments were
    /// found shorter than the tree).
    ///
    /// # Errors
    /// I/O errors.
    pub fn truncate(&mut self, size: u64) -> std::io::Result<()> {
        self.flush()?;
        for level in 0..self.files.len() {
            let keep = size >> level;
            if self.counts[level] > keep {
                self.files[level].set_len(keep * HASH)?;
                self.counts[level] = keep;
                self.written[level] = keep;
            }
        }
        self.repair()
    }

    /// Append a leaf hash, computing every subtree it completes.
    ///
    /// # Errors
    /// I/O errors from creating a new level file.
    pub fn push(&mut self, leaf: Hash) -> std::io::Result<()> {
        let mut hash = leaf;
        let mut level = 0;
        loop {
            self.ensure_level(level)?;
            self.append_at(level, hash);
            match self.pending[level].take() {
                None => {
                    self.pending[level] = Some(hash);
                    return Ok(());
                }
                Some(left) => {
                    hash = node_hash(&left, &hash);
                    level += 1;
                }
            }
        }
    }

    /// Write buffered hashes to the level files (not synced: the files are a
    /// cache the segments can rebuild).
    ///
    /// # Errors
    /// I/O errors; the hashes stay buffered for the next attempt.
    pub fn flush(&mut self) -> std::io::Result<()> {
        if !self.writable {
            return Ok(());
        }
        for level in 0..self.files.len() {
            if !self.buffers[level].is_empty() {
                self.files[level].write_all(&self.buffers[level])?;
                self.buffers[level].clear();
                self.written[level] = self.counts[level];
            }
        }
        Ok(())
    }

    /// Write the buffered hashes once they exceed `bytes` (the append path:
    /// a few large writes instead of one per level per batch).
    ///
    /// # Errors
    /// I/O errors; the hashes stay buffered.
    pub fn flush_over(&mut self, bytes: usize) -> std::io::Result<()> {
        if self.buffers.iter().map(Vec::len).sum::<usize>() > bytes { self.flush() } else { Ok(()) }
    }

    /// `fdatasync` every level (done before a checkpoint is published, so a
    /// crash rarely leaves much to rebuild).
    ///
    /// # Errors
    /// I/O errors.
    pub fn sync(&mut self) -> std::io::Result<()> {
        self.flush()?;
        for f in &self.files {
            f.sync_data()?;
        }
        Ok(())
    }

    /// The root of the whole tree, from the right edge (no I/O).
    #[must_use]
    pub fn root(&self) -> Hash {
        // `pending` is indexed by level: smallest subtree first.
        ward_merkle::root_from_right_edge(self.pending.iter().flatten().copied())
    }

    /// Re-read how many leaves a read-only store covers (its files grow
    /// beside a running writer).
    ///
    /// # Errors
    /// I/O errors.
    pub fn refresh(&mut self) -> std::io::Result<()> {
        if self.writable {
            return Ok(());
        }
        for level in 0..self.files.len() {
            let n = self.files[level].metadata()?.len() / HASH;
            self.counts[level] = n;
            self.written[level] = n;
        }
        if self.files.is_empty() || self.counts[0] >> self.files.len() > 0 {
            *self = Self::open_read(&self.dir.clone())?;
        }
        Ok(())
    }
}

impl NodeSource for TreeStore {
    fn size(&self) -> u64 {
        self.counts.first().copied().unwrap_or(0)
    }

    fn node(&self, level: u32, index: u64) -> Option<Hash> {
        let l = level as usize;
        if index >= *self.counts.get(l)? {
            return None;
        }
        let written = self.written[l];
        if index >= written {
            let at = usize::try_from((index - written) * HASH).ok()?;
            return Hash::from_slice(self.buffers[l].get(at..at + 32)?);
        }
        let mut buf = [0u8; 32];
        self.files[l].read_exact_at(&mut buf, index * HASH).ok()?;
        Some(Hash(buf))
    }
}

#[cfg(test)]
mod tests {
    use ward_merkle::{MemoryTree, consistency_proof, inclusion_proof, leaf_hash};

    use super::*;

    #[test]
    fn stored_levels_match_the_memory_tree_across_reopens_and_repairs() {
        let dir = tempfile::tempdir().unwrap();
        let mut mem = MemoryTree::new();
        let mut store = TreeStore::open(dir.path()).unwrap();
        for i in 0..1000u64 {
            mem.push(&i.to_le_bytes());
            store.push(leaf_hash(&i.to_le_bytes())).unwrap();
            if i % 97 == 0 {
                store.flush().unwrap();
                drop(store);
                store = TreeStore::open(dir.path()).unwrap();
            }
            assert_eq!(store.root(), mem.root(), "size {}", i + 1);
        }
        store.flush().unwrap();
        for (i, n) in [(0, 1000), (999, 1000), (517, 600), (3, 4)] {
            assert_eq!(inclusion_proof(&store, i, n).unwrap(), inclusion_proof(&mem, i, n).unwrap());
        }
        assert_eq!(consistency_proof(&store, 300, 1000).unwrap(), consistency_proof(&mem, 300, 1000).unwrap());

        // A crash that lost the upper levels: they are rebuilt from level 0.
        std::fs::write(dir.path().join("level-03"), b"").unwrap();
        std::fs::remove_file(dir.path().join("level-07")).unwrap();
        let store = TreeStore::open(dir.path()).unwrap();
        assert_eq!(store.root(), mem.root());
        assert_eq!(inclusion_proof(&store, 129, 1000).unwrap(), inclusion_proof(&mem, 129, 1000).unwrap());

        // Cutting back to fewer leaves.
        let mut store = store;
        store.truncate(600).unwrap();
        assert_eq!(store.root(), mem.root_at(600).unwrap());
        let reader = TreeStore::open_read(dir.path()).unwrap();
        assert_eq!(reader.size(), 600);
        assert_eq!(inclusion_proof(&reader, 5, 600).unwrap(), inclusion_proof(&mem, 5, 600).unwrap());
    }
}
