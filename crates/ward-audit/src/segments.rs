//! Segment files: where record bodies live.
//!
//! `segments/<first index, 20 digits>.seg`, each a header and framed records
//! (see [`crate::frame`]). Only the newest segment is ever appended to; a
//! segment rotates once it passes the configured size, and retention deletes
//! whole old segments.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use ward_merkle::Hash;

use crate::frame::{self, FrameError, HEADER_LEN};

/// A segment file on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentInfo {
    /// Index of its first record (from the file name).
    pub first: u64,
    /// Where it is.
    pub path: PathBuf,
    /// Its length in bytes.
    pub bytes: u64,
}

/// Segments under `dir`, oldest first. Files that are not segments are ignored.
///
/// # Errors
/// I/O errors other than a missing directory.
pub fn list(dir: &Path) -> std::io::Result<Vec<SegmentInfo>> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".seg")) else { continue };
        if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(first) = stem.parse() else { continue };
        out.push(SegmentInfo { first, path: entry.path(), bytes: entry.metadata()?.len() });
    }
    out.sort_by_key(|s| s.first);
    Ok(out)
}

/// The file name of the segment starting at `first`.
#[must_use]
pub fn file_name(first: u64) -> String {
    format!("{first:020}.seg")
}

/// One record read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadRecord {
    /// Its index in the log.
    pub index: u64,
    /// Its leaf hash.
    pub leaf: Hash,
    /// The record bytes.
    pub payload: Vec<u8>,
}

/// How a segment's bytes end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tail {
    /// Every byte belongs to a valid record.
    Clean,
    /// From byte `offset` on, the bytes are not a valid record.
    Bad {
        /// Where the valid records end.
        offset: usize,
        /// Why the next frame is not valid.
        error: FrameError,
    },
}

/// A segment's bytes, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scanned<'a> {
    /// The first record's index, from the header.
    pub first: u64,
    /// Each valid record: its byte offset and frame.
    pub frames: Vec<(usize, frame::Frame<'a>)>,
    /// How the bytes end.
    pub tail: Tail,
}

/// Decode the records of one segment's bytes, stopping at the first frame
/// that is not valid.
///
/// # Errors
/// [`FrameError`] when the header is missing or wrong.
pub fn scan(bytes: &[u8]) -> Result<Scanned<'_>, FrameError> {
    let first = frame::parse_header(bytes)?;
    let mut frames = Vec::new();
    let mut at = HEADER_LEN;
    while at < bytes.len() {
        match frame::decode(&bytes[at..]) {
            Ok(f) => {
                frames.push((at, f));
                at += f.len;
            }
            Err(error) => return Ok(Scanned { first, frames, tail: Tail::Bad { offset: at, error } }),
        }
    }
    Ok(Scanned { first, frames, tail: Tail::Clean })
}

/// Read a whole file.
///
/// # Errors
/// I/O errors.
pub fn read_file(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    File::open(path)?.read_to_end(&mut buf)?;
    Ok(buf)
}

/// Appends to the newest segment.
#[derive(Debug)]
pub struct SegmentWriter {
    dir: PathBuf,
    file: File,
    first: u64,
    /// Length of the current segment after the last successful sync.
    durable_len: u64,
}

impl SegmentWriter {
    /// Continue the segment at `path` whose valid bytes end at `len`.
    ///
    /// # Errors
    /// I/O errors.
    pub fn resume(dir: &Path, info: &SegmentInfo, len: u64) -> std::io::Result<Self> {
        let file = OpenOptions::new().append(true).open(&info.path)?;
        if file.metadata()?.len() != len {
            file.set_len(len)?;
            file.sync_all()?;
        }
        Ok(Self { dir: dir.to_owned(), file, first: info.first, durable_len: len })
    }

    /// Start a new segment at record `first` (durably: the file and its
    /// directory entry are synced before any record is acknowledged in it).
    ///
    /// # Errors
    /// I/O errors.
    pub fn create(dir: &Path, first: u64) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(file_name(first));
        let mut file = OpenOptions::new().create_new(true).append(true).mode(0o600).open(&path)?;
        file.write_all(&frame::header(first))?;
        file.sync_all()?;
        File::open(dir)?.sync_all()?;
        Ok(Self { dir: dir.to_owned(), file, first, durable_len: HEADER_LEN as u64 })
    }

    /// The first index of the current segment.
    #[must_use]
    pub fn first(&self) -> u64 {
        self.first
    }

    /// Bytes in the current segment.
    #[must_use]
    pub fn len(&self) -> u64 {
        self.durable_len
    }

    /// Whether the current segment holds no records yet.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.durable_len <= HEADER_LEN as u64
    }

    /// Close the current segment and start one at `next`.
    ///
    /// # Errors
    /// I/O errors; the current segment stays in use.
    pub fn rotate(&mut self, next: u64) -> std::io::Result<()> {
        self.file.sync_all()?;
        *self = Self::create(&self.dir, next)?;
        Ok(())
    }

    /// Append framed records and make them durable. A failed attempt may
    /// have written a prefix: the file is cut back to its last durable
    /// length, so a retry leaves neither a torn nor a duplicated record.
    ///
    /// # Errors
    /// The I/O error; nothing of `buf` counts as written.
    pub fn commit(&mut self, buf: &[u8]) -> std::io::Result<()> {
        match self.file.write_all(buf).and_then(|()| self.file.sync_data()) {
            Ok(()) => {
                self.durable_len += buf.len() as u64;
                Ok(())
            }
            Err(e) => {
                if let Err(cut) = self.file.set_len(self.durable_len) {
                    tracing::error!(error = %cut, "cannot cut the audit segment back after a failed write");
                }
                Err(e)
            }
        }
    }

    /// Append without syncing (the `danger_async` mode); [`Self::sync`] later.
    ///
    /// # Errors
    /// The I/O error, after cutting back as in [`Self::commit`].
    pub fn write(&mut self, buf: &[u8]) -> std::io::Result<()> {
        match self.file.write_all(buf) {
            Ok(()) => {
                self.durable_len += buf.len() as u64;
                Ok(())
            }
            Err(e) => {
                let _ = self.file.set_len(self.durable_len);
                Err(e)
            }
        }
    }

    /// `fdatasync` the current segment.
    ///
    /// # Errors
    /// I/O errors.
    pub fn sync(&mut self) -> std::io::Result<()> {
        self.file.sync_data()
    }
}

/// Reads records in index order across segments, one segment in memory at a
/// time (so logs larger than memory can be read).
#[derive(Debug)]
pub struct SegmentReader {
    segments: Vec<SegmentInfo>,
    next_segment: usize,
    buf: Vec<u8>,
    frames: Vec<(usize, usize, Hash)>,
    at: usize,
    index: u64,
    start: u64,
}

/// Something wrong found while reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadProblem {
    /// A segment could not be read or has a bad header.
    Segment {
        /// Which file.
        path: PathBuf,
        /// Why.
        error: String,
    },
    /// The segment's name and header disagree, or it does not start where
    /// the previous one ended.
    Misplaced {
        /// Which file.
        path: PathBuf,
        /// The index the previous segments end at.
        expected: u64,
        /// The index it claims to start at.
        found: u64,
    },
    /// A record frame is damaged.
    Damaged {
        /// The index of the damaged record.
        index: u64,
        /// Which file.
        path: PathBuf,
        /// Byte offset in the file.
        offset: usize,
        /// What is wrong.
        error: FrameError,
    },
}

/// An item from [`SegmentReader`].
#[derive(Debug)]
pub enum ReadItem {
    /// A valid record.
    Record(ReadRecord),
    /// A problem; reading continues with the next segment.
    Problem(ReadProblem),
}

impl SegmentReader {
    /// Read records from index `start` (records before the first retained
    /// segment are gone; reading starts at that segment then).
    ///
    /// # Errors
    /// I/O errors listing the directory.
    pub fn new(dir: &Path, start: u64) -> std::io::Result<Self> {
        let mut segments = list(dir)?;
        // Skip whole segments that end before `start`.
        let skip = segments.windows(2).take_while(|w| w[1].first <= start).count();
        segments.drain(..skip);
        let index = segments.first().map_or(0, |s| s.first);
        Ok(Self { segments, next_segment: 0, buf: Vec::new(), frames: Vec::new(), at: 0, index, start })
    }

    /// The first index this reader can return (the first retained record).
    #[must_use]
    pub fn first_available(&self) -> u64 {
        self.segments.first().map_or(0, |s| s.first)
    }

    fn load_next(&mut self) -> Option<ReadProblem> {
        let info = self.segments.get(self.next_segment)?.clone();
        self.next_segment += 1;
        self.frames.clear();
        self.at = 0;
        self.buf = match read_file(&info.path) {
            Ok(b) => b,
            Err(e) => return Some(ReadProblem::Segment { path: info.path, error: e.to_string() }),
        };
        let scanned = scan(&self.buf);
        let Scanned { first, frames, tail } = match scanned {
            Ok(s) => s,
            Err(e) => return Some(ReadProblem::Segment { path: info.path, error: e.to_string() }),
        };
        self.frames = frames.iter().map(|(off, f)| (off + frame::FRAME_OVERHEAD, f.payload.len(), f.leaf)).collect();
        // Records keep their position in the stream (`self.index`) even when
        // a segment claims another: inserted or deleted records then show up
        // at the index where the stream and the tree part ways.
        if first != info.first || first != self.index {
            return Some(ReadProblem::Misplaced { path: info.path, expected: self.index, found: first });
        }
        match tail {
            Tail::Clean => None,
            // A frame still being written at the end of the newest segment is
            // not damage; anywhere else it is.
            Tail::Bad { error: FrameError::Incomplete, .. } if self.next_segment == self.segments.len() => None,
            Tail::Bad { offset, error } => {
                let index = self.index + self.frames.len() as u64;
                Some(ReadProblem::Damaged { index, path: info.path, offset, error })
            }
        }
    }
}

impl Iterator for SegmentReader {
    type Item = ReadItem;

    fn next(&mut self) -> Option<ReadItem> {
        loop {
            if let Some(&(off, len, leaf)) = self.frames.get(self.at) {
                self.at += 1;
                let index = self.index;
                self.index += 1;
                if index < self.start {
                    continue;
                }
                let payload = self.buf.get(off..off + len)?.to_vec();
                return Some(ReadItem::Record(ReadRecord { index, leaf, payload }));
            }
            if self.next_segment >= self.segments.len() {
                return None;
            }
            if let Some(p) = self.load_next() {
                return Some(ReadItem::Problem(p));
            }
        }
    }
}

/// Follows a growing log from an index, reading only bytes it has not read
/// yet (for exporters and `ward audit tail -f`). It returns complete, valid
/// frames; a partial frame at the end of the newest segment is left for the
/// next poll.
#[derive(Debug)]
pub struct Tailer {
    dir: PathBuf,
    /// The segment being read: its first index and path.
    segment: Option<SegmentInfo>,
    /// Byte offset of the next frame in it.
    offset: u64,
    /// Index of the next record to return.
    next: u64,
    buf: Vec<u8>,
}

impl Tailer {
    /// Start at record `from` (or at the first retained record, if `from`
    /// was removed by retention: [`Self::next_index`] says where it is).
    #[must_use]
    pub fn new(dir: &Path, from: u64) -> Self {
        Self { dir: dir.to_owned(), segment: None, offset: 0, next: from, buf: Vec::new() }
    }

    /// The index the next record returned will have.
    #[must_use]
    pub fn next_index(&self) -> u64 {
        self.next
    }

    /// Up to `max` records with index below `limit` (the durable size).
    ///
    /// # Errors
    /// I/O errors, and damage (a bad frame that is not the newest segment's
    /// unfinished tail): the log needs `ward audit verify`, not an export.
    pub fn poll(&mut self, max: usize, limit: u64) -> std::io::Result<Vec<ReadRecord>> {
        use std::io::{Seek, SeekFrom};
        let mut out = Vec::new();
        while out.len() < max && self.next < limit {
            if self.segment.is_none() && !self.locate()? {
                break;
            }
            let Some(seg) = self.segment.clone() else { break };
            let mut file = File::open(&seg.path)?;
            file.seek(SeekFrom::Start(self.offset))?;
            self.buf.clear();
            file.take(8 << 20).read_to_end(&mut self.buf)?;
            let mut at = 0;
            while out.len() < max && self.next < limit {
                match frame::decode(&self.buf[at..]) {
                    Ok(f) => {
                        out.push(ReadRecord { index: self.next, leaf: f.leaf, payload: f.payload.to_vec() });
                        at += f.len;
                        self.next += 1;
                    }
                    Err(FrameError::Incomplete) => break,
                    Err(e) => {
                        return Err(std::io::Error::other(format!(
                            "{}: record {} is damaged ({e}); run `ward audit verify`",
                            seg.path.display(),
                            self.next
                        )));
                    }
                }
            }
            self.offset += at as u64;
            // At the end of this segment's bytes: move on if a newer one exists.
            if at == self.buf.len() || (self.buf.len() - at) < frame::FRAME_OVERHEAD {
                let newer = list(&self.dir)?.into_iter().find(|s| s.first > seg.first);
                match newer {
                    Some(n) if n.first == self.next => {
                        self.segment = Some(n);
                        self.offset = HEADER_LEN as u64;
                    }
                    Some(n) => {
                        return Err(std::io::Error::other(format!(
                            "{}: starts at record {} but the previous segment ends at {}",
                            n.path.display(),
                            n.first,
                            self.next
                        )));
                    }
                    None => break,
                }
            } else if at == 0 {
                break;
            }
        }
        Ok(out)
    }

    /// Find the segment holding `next` and the byte offset of that record.
    fn locate(&mut self) -> std::io::Result<bool> {
        let segs = list(&self.dir)?;
        let Some(first) = segs.first() else { return Ok(false) };
        if self.next < first.first {
            tracing::warn!(
                from = self.next,
                first = first.first,
                "records were removed by retention before they were read"
            );
            self.next = first.first;
        }
        let Some(seg) = segs.iter().rev().find(|s| s.first <= self.next) else { return Ok(false) };
        let bytes = read_file(&seg.path)?;
        let frames = scan(&bytes).map_err(|e| std::io::Error::other(format!("{}: {e}", seg.path.display())))?.frames;
        let skip = usize::try_from(self.next - seg.first).unwrap_or(usize::MAX);
        self.offset = match frames.get(skip) {
            Some((off, _)) => *off as u64,
            // `next` is past the records written so far: wait at the end.
            None if skip == frames.len() => frames.last().map_or(HEADER_LEN, |(o, f)| o + f.len) as u64,
            None => {
                return Err(std::io::Error::other(format!(
                    "record {} is past the end of the log ({} records): was the log directory replaced?",
                    self.next,
                    seg.first + frames.len() as u64
                )));
            }
        };
        self.segment = Some(seg.clone());
        Ok(true)
    }
}
