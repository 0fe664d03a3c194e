//! A fast hasher for the operators' state maps.
//!
//! Their keys are small and already well spread: a [`Symbol`](pricestream_schemas::Symbol)
//! hashes as its precomputed 64-bit hash, the others are enums and timestamps. SipHash
//! (std's default, built against hash flooding from untrusted keys) costs more per quote
//! than the rest of the window fold; keys here come from configured venues and validated
//! symbols, so a multiply-rotate hash (as in rustc's `FxHasher`) is enough.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Multiply-rotate hasher.
#[derive(Debug, Default, Clone, Copy)]
pub struct FastHasher(u64);

const K: u64 = 0xf135_7aea_2e62_a9c5;

impl FastHasher {
    #[inline]
    fn add(&mut self, x: u64) {
        self.0 = (self.0.rotate_left(26) ^ x).wrapping_mul(K);
    }
}

impl Hasher for FastHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(w) ^ ((rest.len() as u64) << 56));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    #[inline]
    fn write_i64(&mut self, i: i64) {
        self.add(i as u64);
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    #[inline]
    fn write_isize(&mut self, i: isize) {
        self.add(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        // fold the well-mixed high bits into the low ones the table indexes by
        self.0 ^ (self.0 >> 32)
    }
}

/// A `HashMap` with [`FastHasher`].
pub type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::hash::BuildHasher;

    #[test]
    fn spreads_window_keys() {
        let b = BuildHasherDefault::<FastHasher>::default();
        let mut seen = HashSet::new();
        for sym in 0..200u64 {
            for minute in 0..50i64 {
                let key = (
                    1u8,
                    sym.wrapping_mul(0x9e37_79b9_7f4a_7c15),
                    minute * 60_000_000_000,
                );
                // low bits index the table: they must differ too
                seen.insert(b.hash_one(key) & 0xffff_ffff);
            }
        }
        assert!(seen.len() > 9_990, "{} distinct of 10000", seen.len());
    }
}
