//! The on-disk framing of segment files (pure: bytes in, records out).
//!
//! A segment starts with a 16-byte header, `WARDSEG1` then the index of its
//! first record (u64, little endian), and holds records back to back, each
//!
//! ```text
//! len: u32 LE | check: 8 bytes | payload: len bytes
//! ```
//!
//! `check` is the first 8 bytes of the record's RFC 6962 leaf hash
//! `SHA-256(0x00 ‖ payload)`. The writer computes that hash anyway for the
//! tree, so the checksum costs nothing extra, and it catches torn writes and
//! accidental damage at a known index. It is not what makes the log
//! tamper-evident — anyone can recompute it; the signed checkpoints are.

use ward_merkle::{Hash, leaf_hash};

/// Bytes before the first record of a segment.
pub const HEADER_LEN: usize = 16;
/// Bytes before each record's payload.
pub const FRAME_OVERHEAD: usize = 12;
/// The largest record the log accepts. Audit records are a few hundred
/// bytes; a length beyond this is damage, not data.
pub const MAX_RECORD: usize = 1 << 20;

const MAGIC: &[u8; 8] = b"WARDSEG1";

/// What is wrong with a frame or header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The bytes end before the frame does (a torn tail, or a file still being written).
    #[error("incomplete frame")]
    Incomplete,
    /// The length field is zero or larger than [`MAX_RECORD`].
    #[error("record length {0} is out of range")]
    BadLength(u32),
    /// The payload does not match its checksum.
    #[error("checksum mismatch")]
    BadChecksum,
    /// The segment header is not `WARDSEG1`.
    #[error("not a Ward audit segment")]
    BadMagic,
}

/// Encode a segment header.
#[must_use]
pub fn header(first_index: u64) -> [u8; HEADER_LEN] {
    let mut out = [0u8; HEADER_LEN];
    out[..8].copy_from_slice(MAGIC);
    out[8..].copy_from_slice(&first_index.to_le_bytes());
    out
}

/// Decode a segment header, returning the first record's index.
///
/// # Errors
/// [`FrameError::Incomplete`] or [`FrameError::BadMagic`].
pub fn parse_header(bytes: &[u8]) -> Result<u64, FrameError> {
    let head = bytes.get(..HEADER_LEN).ok_or(FrameError::Incomplete)?;
    if &head[..8] != MAGIC {
        return Err(FrameError::BadMagic);
    }
    let mut index = [0u8; 8];
    index.copy_from_slice(&head[8..]);
    Ok(u64::from_le_bytes(index))
}

/// Append one framed record to `out`, returning its leaf hash.
///
/// # Errors
/// [`FrameError::BadLength`] for an empty or oversized payload.
pub fn encode(payload: &[u8], out: &mut Vec<u8>) -> Result<Hash, FrameError> {
    let len = checked_len(payload.len())?;
    let leaf = leaf_hash(payload);
    out.reserve(FRAME_OVERHEAD + payload.len());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&leaf.as_bytes()[..8]);
    out.extend_from_slice(payload);
    Ok(leaf)
}

fn checked_len(len: usize) -> Result<u32, FrameError> {
    let n = u32::try_from(len).unwrap_or(u32::MAX);
    if len == 0 || len > MAX_RECORD { Err(FrameError::BadLength(n)) } else { Ok(n) }
}

/// One decoded record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The record bytes.
    pub payload: &'a [u8],
    /// Its leaf hash (already checked against the stored checksum).
    pub leaf: Hash,
    /// Bytes the frame occupies, header included.
    pub len: usize,
}

/// Decode the frame at the start of `bytes`.
///
/// # Errors
/// [`FrameError`] when the frame is incomplete, its length is out of range,
/// or its payload does not match the checksum.
pub fn decode(bytes: &[u8]) -> Result<Frame<'_>, FrameError> {
    let head = bytes.get(..FRAME_OVERHEAD).ok_or(FrameError::Incomplete)?;
    let mut len = [0u8; 4];
    len.copy_from_slice(&head[..4]);
    let len = u32::from_le_bytes(len);
    let size = len as usize;
    if size == 0 || size > MAX_RECORD {
        return Err(FrameError::BadLength(len));
    }
    let payload = bytes.get(FRAME_OVERHEAD..FRAME_OVERHEAD + size).ok_or(FrameError::Incomplete)?;
    let leaf = leaf_hash(payload);
    if leaf.as_bytes()[..8] != head[4..12] {
        return Err(FrameError::BadChecksum);
    }
    Ok(Frame { payload, leaf, len: FRAME_OVERHEAD + size })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_every_damage_is_caught() {
        let mut buf = Vec::new();
        let a = encode(b"first record", &mut buf).unwrap();
        let b = encode(b"second", &mut buf).unwrap();
        let f = decode(&buf).unwrap();
        assert_eq!((f.payload, f.leaf), (&b"first record"[..], a));
        let g = decode(&buf[f.len..]).unwrap();
        assert_eq!((g.payload, g.leaf, f.len + g.len), (&b"second"[..], b, buf.len()));

        for cut in 0..buf.len() - g.len {
            if cut < f.len {
                assert_eq!(decode(&buf[..cut]), Err(FrameError::Incomplete), "cut at {cut}");
            }
        }
        for i in 4..f.len {
            let mut bad = buf.clone();
            bad[i] ^= 0x40;
            assert_eq!(decode(&bad), Err(FrameError::BadChecksum), "flip at {i}");
        }
        let mut huge = buf.clone();
        huge[3] = 0xff;
        assert!(matches!(decode(&huge), Err(FrameError::BadLength(_))));
        assert_eq!(decode(&[0; 12]), Err(FrameError::BadLength(0)));
        assert!(encode(b"", &mut Vec::new()).is_err());
        assert!(encode(&vec![0; MAX_RECORD + 1], &mut Vec::new()).is_err());
    }

    #[test]
    fn headers_round_trip() {
        assert_eq!(parse_header(&header(42)), Ok(42));
        assert_eq!(parse_header(b"WARDSEG2aaaaaaaa"), Err(FrameError::BadMagic));
        assert_eq!(parse_header(b"WARDSEG1"), Err(FrameError::Incomplete));
    }
}
