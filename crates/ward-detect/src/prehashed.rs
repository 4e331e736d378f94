//! Hash maps keyed by values that already are keyed SipHash outputs: the
//! map need not hash them again (the seed is secret, so clients cannot
//! aim for collisions either way).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Passes a `u64` through.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct PreHashed(u64);

impl Hasher for PreHashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 ^= n;
    }
}

/// A map from pre-hashed keys.
pub(crate) type Keyed<V> = HashMap<u64, V, BuildHasherDefault<PreHashed>>;
