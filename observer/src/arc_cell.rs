//! [`ArcCell`]: an `Option<Arc<T>>` that readers clone while one writer replaces it,
//! in one word. A ring slot keeps its extra in one, so a slot is its stamp, its
//! 112-byte record and this word: 128 bytes (a `Mutex<Option<Arc<T>>>` takes 16).
//!
//! The word is the `Arc`'s pointer (0 for none) with its lowest bit as a lock, held
//! only to take a reference or to swap the pointer; an `Arc`'s pointer is aligned to
//! at least 8, so the bit is free. A reader that finds the bit set spins, then yields:
//! the holder is between two instructions, not waiting on anything.

#![allow(unsafe_code)]

use std::marker::PhantomData;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

const LOCKED: usize = 1;

/// Spins before yielding the thread to a preempted lock holder.
const SPINS_BEFORE_YIELD: u32 = 64;

/// An `Option<Arc<T>>` in one word.
pub struct ArcCell<T> {
    word: AtomicUsize,
    _owns: PhantomData<Option<Arc<T>>>,
}

// SAFETY: the cell owns one strong reference of an `Arc<T>`, handed out as clones and
// moved in and out whole: it may be shared and sent where `Arc<T>` may.
unsafe impl<T: Send + Sync> Send for ArcCell<T> {}
// SAFETY: as above; every access to the pointer goes through the lock bit.
unsafe impl<T: Send + Sync> Sync for ArcCell<T> {}

impl<T> Default for ArcCell<T> {
    fn default() -> Self {
        Self {
            word: AtomicUsize::new(0),
            _owns: PhantomData,
        }
    }
}

impl<T> ArcCell<T> {
    /// Sets the lock bit; returns the pointer it guards.
    fn lock(&self) -> usize {
        let mut spins = 0u32;
        loop {
            let current = self.word.load(Ordering::Relaxed);
            if current & LOCKED == 0
                && self
                    .word
                    .compare_exchange_weak(
                        current,
                        current | LOCKED,
                        Ordering::Acquire,
                        Ordering::Relaxed,
                    )
                    .is_ok()
            {
                return current;
            }
            spins += 1;
            if spins < SPINS_BEFORE_YIELD {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }

    /// A clone of the `Arc` in the cell.
    pub fn get(&self) -> Option<Arc<T>> {
        let pointer = self.lock();
        let out = (pointer != 0).then(|| {
            let raw = pointer as *const T;
            // SAFETY: `raw` came from `Arc::into_raw` (in `replace`) and the cell still
            // owns that reference: a writer cannot take it out while the lock is held.
            // Adding a reference and taking it as an `Arc` leaves the cell's own.
            unsafe {
                Arc::increment_strong_count(raw);
                Arc::from_raw(raw)
            }
        });
        self.word.store(pointer, Ordering::Release);
        out
    }

    /// Puts `value` in the cell; returns what was there.
    pub fn replace(&self, value: Option<Arc<T>>) -> Option<Arc<T>> {
        let new = value.map_or(0, |arc| Arc::into_raw(arc) as usize);
        debug_assert_eq!(new & LOCKED, 0, "an Arc's pointer is aligned");
        let old = self.lock();
        self.word.store(new, Ordering::Release);
        // SAFETY: `old` came from `Arc::into_raw` and the cell owned that reference;
        // it no longer holds the pointer, so the reference moves out exactly once.
        (old != 0).then(|| unsafe { Arc::from_raw(old as *const T) })
    }
}

impl<T> Drop for ArcCell<T> {
    fn drop(&mut self) {
        let pointer = *self.word.get_mut() & !LOCKED;
        if pointer != 0 {
            // SAFETY: the cell owns this reference and is going away.
            drop(unsafe { Arc::from_raw(pointer as *const T) });
        }
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for ArcCell<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ArcCell").field(&self.get()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    /// Counts its drops.
    struct Counted(u64, Arc<AtomicU64>);

    impl Drop for Counted {
        fn drop(&mut self) {
            self.1.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn one_word() {
        assert_eq!(std::mem::size_of::<ArcCell<u64>>(), 8);
    }

    #[test]
    fn get_replace_and_drop() {
        let drops = Arc::new(AtomicU64::new(0));
        let cell = ArcCell::default();
        assert!(cell.get().is_none());
        assert!(cell
            .replace(Some(Arc::new(Counted(1, Arc::clone(&drops)))))
            .is_none());
        let first = cell.get().map(|c| c.0);
        assert_eq!(first, Some(1));
        let old = cell.replace(Some(Arc::new(Counted(2, Arc::clone(&drops)))));
        assert_eq!(old.as_ref().map(Arc::strong_count), Some(1));
        drop(old);
        assert_eq!(drops.load(Ordering::Relaxed), 1);
        let held = cell.get();
        assert_eq!(held.as_ref().map(Arc::strong_count), Some(2));
        drop(cell);
        assert_eq!(drops.load(Ordering::Relaxed), 1, "a reader still holds it");
        drop(held);
        assert_eq!(drops.load(Ordering::Relaxed), 2);
    }

    /// Readers clone while the writer replaces, as a ring's readers and writer do: every
    /// value is dropped exactly once, none while a reader holds it (a reader checks its
    /// value's contents after the writer moved on).
    #[test]
    fn readers_and_a_writer_at_once() {
        const WRITES: u64 = 100_000;
        let drops = Arc::new(AtomicU64::new(0));
        let cell = Arc::new(ArcCell::default());
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let readers: Vec<_> = (0..3)
            .map(|_| {
                let (cell, done) = (Arc::clone(&cell), Arc::clone(&done));
                std::thread::spawn(move || {
                    let mut seen = 0u64;
                    let mut last = 0;
                    while !done.load(Ordering::Relaxed) {
                        if let Some(value) = cell.get() {
                            let value: Arc<Counted> = value;
                            assert!(value.0 >= last, "values only grow");
                            last = value.0;
                            seen += 1;
                        }
                    }
                    seen
                })
            })
            .collect();
        for n in 1..=WRITES {
            let value = (n % 3 != 0).then(|| Arc::new(Counted(n, Arc::clone(&drops))));
            drop(cell.replace(value));
        }
        done.store(true, Ordering::Relaxed);
        let seen: u64 = readers.into_iter().map(|r| r.join().unwrap_or(0)).sum();
        assert!(seen > 0, "the readers saw values");
        drop(cell);
        let made = WRITES - WRITES / 3;
        assert_eq!(drops.load(Ordering::Relaxed), made);
    }
}
