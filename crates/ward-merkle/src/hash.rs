//! Hashes and the two domain-separated hash functions.

use std::fmt;

use aws_lc_rs::digest::{Context, SHA256, digest};

/// A SHA-256 tree hash.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    /// From exactly 32 bytes.
    #[must_use]
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        <[u8; 32]>::try_from(bytes).ok().map(Self)
    }

    /// The bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in &self.0[..8] {
            write!(f, "{b:02x}")?;
        }
        f.write_str("…")
    }
}

/// The root of the empty tree: `SHA-256("")`.
pub const EMPTY_ROOT: Hash = Hash([
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24, 0x27, 0xae, 0x41,
    0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
]);

fn finish(ctx: Context) -> Hash {
    let d = ctx.finish();
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    Hash(out)
}

/// `SHA-256(0x00 ‖ data)`.
#[must_use]
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut ctx = Context::new(&SHA256);
    ctx.update(&[0x00]);
    ctx.update(data);
    finish(ctx)
}

/// `SHA-256(0x01 ‖ left ‖ right)`.
#[must_use]
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut buf = [0u8; 65];
    buf[0] = 0x01;
    buf[1..33].copy_from_slice(&left.0);
    buf[33..].copy_from_slice(&right.0);
    let d = digest(&SHA256, &buf);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    Hash(out)
}

/// The root of a tree from its right edge: the roots of its perfect
/// subtrees, **smallest (rightmost) first**. Each is hashed in as the left
/// sibling of everything to its right. No subtrees: the empty root.
#[must_use]
pub fn root_from_right_edge(subtrees: impl IntoIterator<Item = Hash>) -> Hash {
    subtrees.into_iter().reduce(|right, left| node_hash(&left, &right)).unwrap_or(EMPTY_ROOT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6962_hashes() {
        assert_eq!(finish(Context::new(&SHA256)), EMPTY_ROOT);
        // RFC 6962 test vector: the leaf hash of the empty record.
        let empty_leaf = leaf_hash(b"");
        assert_eq!(empty_leaf.0[..4], [0x6e, 0x34, 0x0b, 0x9c], "SHA-256(0x00) = 6e340b9c…");
        assert_ne!(node_hash(&empty_leaf, &EMPTY_ROOT), node_hash(&EMPTY_ROOT, &empty_leaf));
    }
}
