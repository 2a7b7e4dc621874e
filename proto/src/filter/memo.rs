//! What a filter found for each interned endpoint and node context of a store.
//!
//! A store that interns the parts many flows share (the observer's ring keeps each
//! endpoint and node context once, under a number) lets a filter evaluate the
//! conditions on such a part once per part instead of once per flow: a scan of a
//! million flows between a few dozen pods compares pod names a few dozen times.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// The numbers under which a store interned a flow's shared parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interned {
    /// Names the store: numbers of different stores name different values. Never 0.
    pub store: u64,
    /// The source endpoint's number (0: no endpoint).
    pub source: u32,
    /// The destination endpoint's number (0: no endpoint).
    pub destination: u32,
    /// The node context's number (0: no context).
    pub context: u32,
}

/// Parts numbered up to this are remembered (two bits each: 1 KiB per memo); the
/// conditions on parts numbered beyond it are evaluated each time.
pub const MEMO_ENTRIES: usize = 4096;

const BITS: usize = 2;
const PER_WORD: usize = 64 / BITS;
const KNOWN: u64 = 1;
const MATCHES: u64 = 2;

/// Results of one filter's conditions on one kind of part, by the part's number, for
/// one store (the first one it is asked about).
#[derive(Debug, Default)]
pub struct Memo {
    store: AtomicU64,
    words: OnceLock<Box<[AtomicU64]>>,
}

impl Memo {
    /// The result remembered for part `key` of `store`, else `evaluate`'s (then
    /// remembered).
    #[inline]
    pub fn get_or(&self, store: u64, key: u32, evaluate: impl FnOnce() -> bool) -> bool {
        let key = key as usize;
        if key >= MEMO_ENTRIES || !self.is_for(store) {
            return evaluate();
        }
        let words = self.words.get_or_init(|| {
            (0..MEMO_ENTRIES / PER_WORD)
                .map(|_| AtomicU64::new(0))
                .collect()
        });
        let (word, shift) = (&words[key / PER_WORD], (key % PER_WORD * BITS) as u32);
        let bits = word.load(Ordering::Relaxed) >> shift;
        if bits & KNOWN != 0 {
            return bits & MATCHES != 0;
        }
        let result = evaluate();
        word.fetch_or(
            (KNOWN | if result { MATCHES } else { 0 }) << shift,
            Ordering::Relaxed,
        );
        result
    }

    /// Whether this memo holds results for `store` (claiming it if it holds none yet).
    #[inline]
    fn is_for(&self, store: u64) -> bool {
        let current = self.store.load(Ordering::Relaxed);
        if current != 0 {
            return current == store;
        }
        match self
            .store
            .compare_exchange(0, store, Ordering::Relaxed, Ordering::Relaxed)
        {
            Ok(_) => true,
            Err(current) => current == store,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_are_remembered_per_part_of_one_store() {
        let memo = Memo::default();
        let mut calls = 0;
        for _ in 0..3 {
            assert!(memo.get_or(7, 1, || {
                calls += 1;
                true
            }));
            assert!(!memo.get_or(7, 2, || {
                calls += 1;
                false
            }));
        }
        assert_eq!(calls, 2);
        // Another store's part 1 is another value: evaluated every time.
        assert!(!memo.get_or(8, 1, || false));
        assert!(!memo.get_or(8, 1, || false));
        // Beyond the bound: evaluated every time.
        let far = MEMO_ENTRIES as u32;
        assert!(memo.get_or(7, far, || true));
        assert!(!memo.get_or(7, far, || false));
        assert!(memo.get_or(7, MEMO_ENTRIES as u32 - 1, || true));
        assert!(memo.get_or(7, MEMO_ENTRIES as u32 - 1, || false));
    }
}
