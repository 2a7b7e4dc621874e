//! Interning tables: values that repeat across many flows (endpoints, a node's
//! context) are stored once and referred to by a small number.
//!
//! Readers look entries up without locks: the table is a fixed array of chunks that
//! double in size, each set once, and each entry is set once and never moved or
//! removed. Only the ring writer adds entries; it keeps a private map from a value's
//! encoding to its number.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::OnceLock;

/// Entries in the first chunk; chunk `c` holds `FIRST_CHUNK << c` entries.
const FIRST_CHUNK: usize = 64;

/// Number of chunks: enough for [`TABLE_CAPACITY`] entries.
const CHUNKS: usize = 15;

/// Most entries a table takes (FIRST_CHUNK * (2^CHUNKS - 1) = 2,097,088). Distinct
/// endpoints and node contexts are few (pods, reserved identities, world CIDRs); the
/// bound keeps pod churn over months from growing the table without limit. When a
/// table is full, new values are stored inline with their flow instead.
pub const TABLE_CAPACITY: usize = FIRST_CHUNK * ((1 << CHUNKS) - 1);

/// A number naming an interned value. `0` is reserved for "none".
pub type Ref = u32;

/// An append-only table with lock-free reads.
pub struct Table<T> {
    chunks: [OnceLock<Box<[OnceLock<T>]>>; CHUNKS],
}

impl<T> Default for Table<T> {
    fn default() -> Self {
        Self {
            chunks: std::array::from_fn(|_| OnceLock::new()),
        }
    }
}

fn locate(index: usize) -> (usize, usize) {
    let chunk = (usize::BITS - 1 - (index / FIRST_CHUNK + 1).leading_zeros()) as usize;
    let offset = index - FIRST_CHUNK * ((1 << chunk) - 1);
    (chunk, offset)
}

impl<T> Table<T> {
    /// The value named `r`, or `None` for `0` or an unknown number.
    #[inline]
    pub fn get(&self, r: Ref) -> Option<&T> {
        let index = (r as usize).checked_sub(1)?;
        if index >= TABLE_CAPACITY {
            return None;
        }
        let (chunk, offset) = locate(index);
        self.chunks[chunk].get()?.get(offset)?.get()
    }

    pub(super) fn set(&self, index: usize, value: T) {
        let (chunk, offset) = locate(index);
        let entries = self.chunks[chunk]
            .get_or_init(|| (0..FIRST_CHUNK << chunk).map(|_| OnceLock::new()).collect());
        // A slot is set exactly once by the single writer, so this never fails.
        let _ = entries[offset].set(value);
    }

    /// Heap bytes used by the chunks (not counting what entries own).
    pub fn chunk_bytes(&self) -> usize {
        self.chunks
            .iter()
            .filter_map(|c| c.get())
            .map(|c| c.len() * std::mem::size_of::<OnceLock<T>>())
            .sum()
    }
}

/// The writer's side of a [`Table`]: finds or adds a value by its encoding.
#[derive(Default)]
pub struct Interner {
    by_key: HashMap<Box<[u8]>, Ref, BuildHasherDefault<FastHasher>>,
}

impl Interner {
    /// Returns the number of the value whose encoding is `key`, adding it with `make`
    /// if new. Returns `None` when the table is full.
    pub fn intern<T>(
        &mut self,
        table: &Table<T>,
        key: &[u8],
        make: impl FnOnce() -> T,
    ) -> Option<Ref> {
        self.intern_with(table, None, key, make)
    }

    /// As [`Interner::intern`] for a value whose key is its protobuf encoding: a new
    /// value's key is also kept in `wire` under the same number, for readers that
    /// write the value's bytes as they are instead of encoding it again. Both are set
    /// before the number is returned, so a record that names it finds both.
    pub fn intern_encoded<T>(
        &mut self,
        table: &Table<T>,
        wire: &Table<Box<[u8]>>,
        key: &[u8],
        make: impl FnOnce() -> T,
    ) -> Option<Ref> {
        self.intern_with(table, Some(wire), key, make)
    }

    fn intern_with<T>(
        &mut self,
        table: &Table<T>,
        wire: Option<&Table<Box<[u8]>>>,
        key: &[u8],
        make: impl FnOnce() -> T,
    ) -> Option<Ref> {
        if let Some(r) = self.by_key.get(key) {
            return Some(*r);
        }
        let index = self.by_key.len();
        if index >= TABLE_CAPACITY {
            return None;
        }
        table.set(index, make());
        if let Some(wire) = wire {
            wire.set(index, key.into());
        }
        let r = Ref::try_from(index + 1).ok()?;
        self.by_key.insert(key.into(), r);
        Some(r)
    }

    /// Number of interned values.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// Whether nothing was interned.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}

/// A fast non-cryptographic hasher for interning keys (multiply-rotate over 8-byte
/// words). Keys come from our own encoding, so flooding is not a concern; a bad
/// distribution would only slow the writer, never change a result.
#[derive(Default)]
pub struct FastHasher(u64);

const SEED: u64 = 0x9e37_79b9_7f4a_7c15;

impl FastHasher {
    #[inline]
    fn mix(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FastHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.mix(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.mix(u64::from_le_bytes(word) ^ ((rest.len() as u64) << 59));
        }
    }

    fn write_usize(&mut self, n: usize) {
        self.mix(n as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locate_covers_every_index_once() {
        let mut expected = (0usize, 0usize);
        for index in 0..10_000 {
            assert_eq!(locate(index), expected, "index {index}");
            expected.1 += 1;
            if expected.1 == FIRST_CHUNK << expected.0 {
                expected = (expected.0 + 1, 0);
            }
        }
        assert_eq!(locate(TABLE_CAPACITY - 1).0, CHUNKS - 1);
    }

    #[test]
    fn interned_values_are_found_by_key() {
        let table = Table::<String>::default();
        let mut interner = Interner::default();
        let a = interner.intern(&table, b"a", || "A".to_string());
        let b = interner.intern(&table, b"b", || "B".to_string());
        let a2 = interner.intern(&table, b"a", || unreachable!());
        assert_eq!(a, a2);
        assert_ne!(a, b);
        assert_eq!(table.get(a.unwrap_or(0)).map(String::as_str), Some("A"));
        assert_eq!(table.get(b.unwrap_or(0)).map(String::as_str), Some("B"));
        assert_eq!(table.get(0), None);
        assert_eq!(table.get(99), None);
    }
}
