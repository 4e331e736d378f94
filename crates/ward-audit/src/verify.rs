//! `ward audit verify`: recompute the whole tree from the record bodies and
//! hold it against every signed checkpoint.
//!
//! The pass streams records one segment at a time and folds their leaf
//! hashes into a compact range (the right edge of the tree, O(log n)
//! hashes), so it works on logs far larger than memory. Along the way it
//!
//! - checks every frame's checksum and that each segment starts where the
//!   previous one ended;
//! - compares every leaf and every completed subtree with the tree cache —
//!   this is what names the first bad index when a record was changed,
//!   inserted, removed or moved (the cache was written when the record was);
//!   whether the record or the cache is the damaged one is settled by the
//!   signed checkpoints: records that still add up to a signed root are
//!   intact, and the mismatch is reported as a damaged cache;
//! - compares the recomputed root with every stored checkpoint at its size
//!   (signatures checked first). Checkpoints whose roots are both recomputed
//!   from the records are consistent by construction; only one older than
//!   the oldest retained record needs a consistency proof from the cache.
//!
//! The cache only speeds things up and names indices: with `tree/` deleted,
//! an intact log still verifies from its segments and checkpoints.
//! - and, given a checkpoint saved elsewhere earlier, checks the log is
//!   consistent with it — the one check an attacker who rewrote records,
//!   tree and checkpoints alike cannot pass without the saved root.
//!
//! Records before the oldest retained segment (removed by retention) cannot
//! be recomputed; their part of the tree is taken from the cache, and is
//! only as good as the checkpoints that cover it say.

use std::collections::BTreeMap;
use std::path::Path;

use ward_merkle::{
    EMPTY_ROOT, Hash, NodeSource, NoteVerifier, consistency_proof, node_hash, subtree_root, verify_consistency,
};

use crate::checkpoints::{SignedCheckpoint, read_history};
use crate::segments::{ReadItem, ReadProblem, SegmentReader, Tail};
use crate::tree_store::TreeStore;

/// One thing wrong with the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The first record index it concerns, when one can be named.
    pub index: Option<u64>,
    /// What is wrong, for a human.
    pub message: String,
}

/// What verification found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Records whose bodies were checked: `[first_record, records)`.
    pub first_record: u64,
    /// Records in the log.
    pub records: u64,
    /// The recomputed root at `records`.
    pub root: Option<Hash>,
    /// Stored checkpoints whose signature and root checked out.
    pub checkpoints_ok: usize,
    /// Stored checkpoints in total.
    pub checkpoints: usize,
    /// The size of the largest stored checkpoint that checked out: what
    /// witnesses must have cosigned for the whole signed log to be anchored.
    pub latest_signed: Option<u64>,
    /// The saved checkpoint given with `--from-checkpoint`, when it checked out.
    pub consistent_with_saved: Option<bool>,
    /// Everything wrong, in the order found.
    pub problems: Vec<Problem>,
}

impl Report {
    /// The lowest record index any problem names.
    #[must_use]
    pub fn first_bad_index(&self) -> Option<u64> {
        self.problems.iter().filter_map(|p| p.index).min()
    }

    /// Whether the log verified.
    #[must_use]
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// The right edge of a tree being built leaf by leaf.
#[derive(Debug, Default)]
struct CompactRange {
    /// Perfect subtrees, largest (leftmost) first: (level, hash).
    stack: Vec<(u32, Hash)>,
    size: u64,
}

impl CompactRange {
    /// Push a leaf; `completed` receives each (level, index, hash) subtree it closes.
    fn push(&mut self, leaf: Hash, mut completed: impl FnMut(u32, u64, Hash)) {
        self.size += 1;
        let mut node = (0u32, leaf);
        while let Some(&(level, left)) = self.stack.last() {
            if level != node.0 {
                break;
            }
            self.stack.pop();
            node = (level + 1, node_hash(&left, &node.1));
            completed(node.0, (self.size >> node.0) - 1, node.1);
        }
        self.stack.push(node);
    }

    fn root(&self) -> Hash {
        // The stack holds the largest subtree first.
        ward_merkle::root_from_right_edge(self.stack.iter().rev().map(|&(_, h)| h))
    }

    /// Start at `size` from the cache's subtrees covering `[0, size)`.
    fn from_cache(cache: &TreeStore, size: u64) -> Option<Self> {
        let mut stack = Vec::new();
        let mut start = 0;
        for level in (0..64u32).rev() {
            if size & (1 << level) != 0 {
                stack.push((level, cache.node(level, start >> level)?));
                start += 1 << level;
            }
        }
        Some(Self { stack, size })
    }
}

/// Reads the tree cache's levels front to back as verification reaches them:
/// leaves and completed subtrees arrive in index order on every level, so
/// one buffered sequential read per level replaces a `pread` per node.
#[derive(Debug)]
struct CacheCursor {
    dir: std::path::PathBuf,
    levels: Vec<Option<(std::io::BufReader<std::fs::File>, u64)>>,
}

impl CacheCursor {
    fn new(dir: &Path) -> Self {
        Self { dir: dir.to_owned(), levels: Vec::new() }
    }

    /// The cached hash at (level, index), when the level file has it.
    fn get(&mut self, cache: &TreeStore, level: u32, index: u64) -> Option<Hash> {
        use std::io::{Read, Seek, SeekFrom};
        let l = level as usize;
        while self.levels.len() <= l {
            self.levels.push(None);
        }
        if self.levels[l].is_none() {
            let file = std::fs::File::open(crate::tree_store::level_path(&self.dir, l)).ok()?;
            self.levels[l] = Some((std::io::BufReader::with_capacity(1 << 16, file), 0));
        }
        let (reader, next) = self.levels[l].as_mut()?;
        if *next != index {
            if reader.seek(SeekFrom::Start(index * 32)).is_err() {
                return cache.node(level, index);
            }
            *next = index;
        }
        let mut buf = [0u8; 32];
        reader.read_exact(&mut buf).ok()?;
        *next += 1;
        Some(Hash(buf))
    }
}

/// Verify the log in `dir` with the checkpoint key `verifier`. `saved` is a
/// signed checkpoint kept elsewhere (`--from-checkpoint`). `progress` is
/// called now and then with (records done, records expected).
///
/// # Errors
/// Only I/O errors that stop the pass altogether (an unreadable directory);
/// everything wrong with the log itself is in the [`Report`].
pub fn verify(
    dir: &Path,
    verifier: &NoteVerifier,
    saved: Option<&str>,
    progress: impl FnMut(u64, u64),
) -> std::io::Result<Report> {
    let anchors: Vec<(&str, &str)> = saved.map(|s| ("the saved checkpoint", s)).into_iter().collect();
    verify_anchored(dir, std::slice::from_ref(verifier), &anchors, progress)
}

/// A checkpoint signed by any of `verifiers` (the keys pinned for the log,
/// old and new across a rotation): each checkpoint is judged by its own
/// signature, never by a key chosen from what the log directory holds.
fn verify_any(note: &str, verifiers: &[NoteVerifier]) -> Result<SignedCheckpoint, ward_merkle::NoteError> {
    let mut last = ward_merkle::NoteError::Malformed("no verifier key");
    for v in verifiers {
        match SignedCheckpoint::verify(note, v) {
            Ok(c) => return Ok(c),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// As [`verify`], with every key pinned for the log (a checkpoint passes
/// with any of them), holding the log to every one of `anchors`: (what it is,
/// for messages — `the saved checkpoint`, `the witnessed checkpoint` —, a
/// signed checkpoint). The log must contain each and be consistent with it;
/// `consistent_with_saved` says whether it is, for all of them.
///
/// # Errors
/// As [`verify`].
pub fn verify_anchored(
    dir: &Path,
    verifiers: &[NoteVerifier],
    anchors: &[(&str, &str)],
    mut progress: impl FnMut(u64, u64),
) -> std::io::Result<Report> {
    let mut report = Report::default();
    let problem =
        |report: &mut Report, index: Option<u64>, message: String| report.problems.push(Problem { index, message });

    // 1. Every stored checkpoint's signature and body.
    let (notes, tail) = read_history(dir)?;
    if let Tail::Bad { offset, error } = tail {
        problem(&mut report, None, format!("checkpoints.log: damaged at byte {offset} ({error})"));
    }
    report.checkpoints = notes.len();
    let mut checkpoints: Vec<SignedCheckpoint> = Vec::new();
    let mut origin: Option<String> = None;
    for (i, note) in notes.iter().enumerate() {
        match verify_any(note, verifiers) {
            Ok(c) => {
                let o = origin.get_or_insert_with(|| c.checkpoint.origin.clone());
                if *o != c.checkpoint.origin {
                    problem(
                        &mut report,
                        None,
                        format!("checkpoint #{i} is for log `{}`, not `{o}`", c.checkpoint.origin),
                    );
                } else if let Some(prev) = checkpoints.last()
                    && prev.checkpoint.size > c.checkpoint.size
                {
                    problem(
                        &mut report,
                        None,
                        format!(
                            "checkpoint #{i} (size {}) is smaller than the one before it ({})",
                            c.checkpoint.size, prev.checkpoint.size
                        ),
                    );
                } else {
                    checkpoints.push(c);
                }
            }
            Err(e) => problem(&mut report, None, format!("checkpoint #{i}: {e}")),
        }
    }
    let mut saved: Vec<(&str, ward_merkle::Checkpoint)> = Vec::new();
    for (what, note) in anchors {
        match verify_any(note, verifiers) {
            Ok(c) if origin.as_ref().is_some_and(|o| *o != c.checkpoint.origin) => {
                problem(&mut report, None, format!("{what} is for log `{}`", c.checkpoint.origin));
                report.consistent_with_saved = Some(false);
            }
            Ok(c) => saved.push((what, c.checkpoint)),
            Err(e) => {
                problem(&mut report, None, format!("{what} does not verify: {e}"));
                report.consistent_with_saved = Some(false);
            }
        }
    }

    // 2. Sizes at which the recomputed root is needed.
    let mut wanted: BTreeMap<u64, Option<Hash>> = checkpoints.iter().map(|c| (c.checkpoint.size, None)).collect();
    for (_, s) in &saved {
        wanted.insert(s.size, None);
    }

    // 3. Stream the records.
    let cache = TreeStore::open_read(&dir.join("tree")).ok();
    let reader = SegmentReader::new(&dir.join("segments"), 0)?;
    let first = reader.first_available();
    report.first_record = first;
    let mut range = if first == 0 {
        CompactRange::default()
    } else {
        match cache.as_ref().and_then(|c| CompactRange::from_cache(c, first)) {
            Some(r) => r,
            None => {
                problem(
                    &mut report,
                    Some(0),
                    format!("records before {first} were removed and the tree no longer covers them"),
                );
                CompactRange { stack: Vec::new(), size: first }
            }
        }
    };
    for (&size, root) in wanted.range_mut(..=first) {
        *root = if size == first {
            Some(range.root())
        } else {
            cache.as_ref().and_then(|c| if size == 0 { Some(EMPTY_ROOT) } else { subtree_root(c, 0, size).ok() })
        };
    }
    let mut cursor = CacheCursor::new(&dir.join("tree"));
    let expected = cache.as_ref().map_or(0, NodeSource::size).max(checkpoints.last().map_or(0, |c| c.checkpoint.size));
    let mut leaf_mismatch: Option<u64> = None;
    let mut node_mismatch = false;
    // Where reading stopped at a damaged record, if it did.
    let mut damaged: Option<u64> = None;
    for item in reader {
        match item {
            ReadItem::Problem(p) => {
                let (index, message) = describe(&p);
                if let ReadProblem::Damaged { index, .. } = &p {
                    damaged.get_or_insert(*index);
                }
                problem(&mut report, index, message);
            }
            ReadItem::Record(r) => {
                let index = range.size;
                if let Some(c) = &cache
                    && leaf_mismatch.is_none()
                    && let Some(stored) = cursor.get(c, 0, index)
                    && stored != r.leaf
                {
                    // Judged below, once the checkpoints say whether the
                    // record or the cache changed.
                    leaf_mismatch = Some(index);
                }
                range.push(r.leaf, |level, i, hash| {
                    if let Some(c) = &cache
                        && !node_mismatch
                        && cursor.get(c, level, i).is_some_and(|stored| stored != hash)
                    {
                        node_mismatch = true;
                    }
                });
                if let Some(root) = wanted.get_mut(&range.size) {
                    *root = Some(range.root());
                }
                if range.size.is_multiple_of(1 << 16) {
                    progress(range.size, expected);
                }
            }
        }
    }
    progress(range.size, expected);
    report.records = range.size;
    report.root = Some(range.root());
    if node_mismatch && leaf_mismatch.is_none() {
        problem(
            &mut report,
            None,
            "the tree cache disagrees with the records above the leaves (proofs served from it would fail)".into(),
        );
    }

    // 4. Stored checkpoints against the recomputed roots, and each against the next.
    let mut last_good: Option<&SignedCheckpoint> = None;
    let mut beyond = 0usize;
    for c in &checkpoints {
        let size = c.checkpoint.size;
        match wanted.get(&size).copied().flatten() {
            _ if size > range.size => beyond += 1,
            Some(root) if root == c.checkpoint.root => {
                // Both roots recomputed from the same records: consistent by
                // construction. Only a checkpoint older than the oldest
                // retained record takes its root from the cache.
                if let Some(prev) = last_good
                    && prev.checkpoint.size < first
                    && !consistent(cache.as_ref(), &prev.checkpoint, &c.checkpoint)
                {
                    problem(
                        &mut report,
                        None,
                        format!("no valid consistency proof from checkpoint {} to {size}", prev.checkpoint.size),
                    );
                } else {
                    report.checkpoints_ok += 1;
                    report.latest_signed = report.latest_signed.max(Some(size));
                }
                last_good = Some(c);
            }
            Some(_) => {
                let from = last_good.map_or(first, |g| g.checkpoint.size.max(first));
                problem(
                    &mut report,
                    None,
                    format!(
                        "the records do not match the signed checkpoint at size {size}: something in records {from}..{size} was altered"
                    ),
                );
            }
            None => problem(
                &mut report,
                None,
                format!("cannot recompute the root at size {size} (records removed and not in the tree)"),
            ),
        }
    }
    if beyond > 0 {
        let largest = checkpoints.last().map_or(0, |c| c.checkpoint.size);
        match damaged {
            // Reading stopped at a damaged record: what lies beyond it is
            // unread, not missing.
            Some(at) => problem(
                &mut report,
                None,
                format!("{beyond} signed checkpoint(s) beyond damaged record {at} could not be checked"),
            ),
            None => problem(
                &mut report,
                Some(range.size),
                format!(
                    "the log is truncated: {beyond} signed checkpoint(s) cover up to {largest} records, the log holds {}",
                    range.size
                ),
            ),
        }
    }
    // 4b. A leaf that differs from the cache: the record, or the cache?
    if let Some(at) = leaf_mismatch {
        let covering = checkpoints.iter().find(|c| c.checkpoint.size > at && c.checkpoint.size <= range.size);
        match covering {
            Some(c) if wanted.get(&c.checkpoint.size).copied().flatten() == Some(c.checkpoint.root) => problem(
                &mut report,
                None,
                format!(
                    "the tree cache is damaged from leaf {at} (the records match the signed checkpoint at size {}): proofs served from it would fail; remove tree/ to have it rebuilt",
                    c.checkpoint.size
                ),
            ),
            Some(_) => problem(
                &mut report,
                Some(at),
                format!("record {at} is not the record the log appended there (changed, inserted, removed or moved)"),
            ),
            None => problem(
                &mut report,
                Some(at),
                format!(
                    "record {at} or the tree cache was altered after the last signed checkpoint: no signature covers it yet"
                ),
            ),
        }
    }

    // 5. The checkpoints kept elsewhere (or vouched for by witnesses).
    for (what, s) in saved {
        let ok = if s.size > range.size {
            problem(
                &mut report,
                Some(range.size),
                format!("the log is truncated: {what} covers {} records, the log holds {}", s.size, range.size),
            );
            false
        } else {
            let now = ward_merkle::Checkpoint {
                origin: s.origin.clone(),
                size: range.size,
                root: range.root(),
                extensions: vec![],
            };
            let direct = wanted.get(&s.size).copied().flatten() == Some(s.root);
            // Recomputed from the records the log holds now: consistent by
            // construction; older than the retained records: proved from the cache.
            let proved = s.size >= first || consistent(cache.as_ref(), &s, &now);
            if !(direct && proved) {
                problem(
                    &mut report,
                    None,
                    format!(
                        "the log is not consistent with {what} (size {}): the consistency proof to size {} fails, so records before {} were rewritten",
                        s.size, range.size, s.size
                    ),
                );
            }
            direct && proved
        };
        report.consistent_with_saved = Some(report.consistent_with_saved.unwrap_or(true) && ok);
    }
    Ok(report)
}

/// Whether `a` and `b` verify as consistent through a proof built from the
/// tree cache (equal sizes: equal roots).
fn consistent(cache: Option<&TreeStore>, a: &ward_merkle::Checkpoint, b: &ward_merkle::Checkpoint) -> bool {
    if a.size == b.size {
        return a.root == b.root;
    }
    if a.size == 0 {
        return a.root == EMPTY_ROOT;
    }
    let Some(cache) = cache else { return false };
    consistency_proof(cache, a.size, b.size)
        .ok()
        .is_some_and(|proof| verify_consistency(a.size, b.size, &proof, &a.root, &b.root).is_ok())
}

fn describe(p: &ReadProblem) -> (Option<u64>, String) {
    match p {
        ReadProblem::Segment { path, error } => (None, format!("{}: {error}", path.display())),
        ReadProblem::Misplaced { path, expected, found } => (
            Some((*expected).min(*found)),
            format!("{}: starts at record {found} but the records before it end at {expected}", path.display()),
        ),
        ReadProblem::Damaged { index, path, offset, error } => {
            (Some(*index), format!("record {index} is damaged ({error}) at byte {offset} of {}", path.display()))
        }
    }
}
