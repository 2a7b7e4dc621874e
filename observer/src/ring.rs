//! A fixed-size ring of events with one writer that never waits and any number of
//! readers that never block it.
//!
//! Every position ever written has a number (0, 1, 2, ...). Position `p` lives in slot
//! `p % slots`, where `slots = capacity + 1` is a power of two: the extra slot is the
//! one the writer may be filling right now, so the last `capacity` positions are always
//! complete and readable (upstream Hubble sizes its ring the same way, `2^n - 1`).
//!
//! Each slot carries a stamp (a sequence lock): `2p + 1` while position `p` is being
//! written, `2p + 2` once it is complete. A reader copies the slot and checks that the
//! stamp did not move; if it did, or it already names a later position, the reader was
//! overtaken and learns exactly how many positions it lost. The writer never looks at
//! readers; readers only copy and check, so a slow reader costs the writer nothing.
//! Slot contents are atomics (or a lock held only to clone an `Arc`), which keeps the
//! ring in safe Rust.

use std::sync::atomic::{fence, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

/// Default capacity, as upstream's `--hubble-event-buffer-capacity`.
pub const DEFAULT_CAPACITY: u64 = 4095;

/// Largest accepted capacity (2^24 - 1), to keep a typo from allocating the machine.
pub const MAX_CAPACITY: u64 = (1 << 24) - 1;

/// A capacity that is not `2^n - 1` (n in 1..=24).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid ring capacity {value}: must be 2^n - 1 between 1 and {MAX_CAPACITY}; nearest valid values are {below} and {above}"
)]
pub struct CapacityError {
    /// The rejected value.
    pub value: u64,
    /// The nearest valid capacity below (or equal to 1 if none).
    pub below: u64,
    /// The nearest valid capacity above (capped at the maximum).
    pub above: u64,
}

/// Checks that `capacity` is `2^n - 1` within bounds.
pub fn validate_capacity(capacity: u64) -> Result<u64, CapacityError> {
    if (1..=MAX_CAPACITY).contains(&capacity) && (capacity + 1).is_power_of_two() {
        return Ok(capacity);
    }
    let above = capacity
        .saturating_add(1)
        .checked_next_power_of_two()
        .map_or(MAX_CAPACITY, |p| (p - 1).min(MAX_CAPACITY))
        .max(1);
    let below = if capacity <= 1 {
        1
    } else {
        let p = 1u64 << (63 - capacity.leading_zeros());
        (p - 1).clamp(1, MAX_CAPACITY)
    };
    Err(CapacityError {
        value: capacity,
        below,
        above,
    })
}

/// What a slot stores and how a reader copies it out.
///
/// `load` may run while the writer overwrites the slot: it must not panic on a torn
/// copy. The ring discards torn copies by checking the slot's stamp afterwards.
pub trait SlotData: Default + Send + Sync + 'static {
    /// What the writer stores.
    type Value;
    /// What a reader copies out.
    type Raw;
    /// Stores `value` (called by the single writer only).
    fn store(&self, value: Self::Value);
    /// Copies the slot at position `pos` out (possibly torn; validated by the caller).
    fn load(&self, pos: u64) -> Self::Raw;
}

/// Slots a read asks the CPU to fetch ahead of the one it reads. A scan reads the
/// first line of each slot only; with 128-byte slots that is every other line, a
/// pattern the hardware's own prefetching leaves at half the speed of a dense one
/// (`cargo bench -p observer --bench ring`, 1 M slots: with a pod filter 78-79 M
/// slots/s without this, 96-98 with it, 91-98 with the 136-byte slots of before;
/// without a filter 83-85, 115-122 and 130-162).
const PREFETCH_AHEAD: u64 = 16;

/// Asks the CPU to bring `slot`'s first two lines into its caches (a hint: nothing
/// is read). The second holds a flow slot's rest and extra, which a match reads;
/// a scan that reads only the first lines is also faster with both asked for (without
/// a filter 152-154 M slots/s against 121-123; with a filter 86-93 either way).
#[inline(always)]
#[allow(unsafe_code)]
fn prefetch<T>(slot: &T) {
    let at: *const u8 = (slot as *const T).cast();
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch reads nothing and cannot fault (an address past the slot
    // is only a hint); SSE is part of x86-64.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(at.cast());
        _mm_prefetch::<_MM_HINT_T0>(at.wrapping_add(64).cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = at;
}

/// The stamp first: a reader that copies only the first words of `data` touches one
/// cache line for most slots.
#[repr(C)]
struct Slot<D> {
    stamp: AtomicU64,
    data: D,
}

/// The outcome of reading one position.
#[derive(Debug, PartialEq, Eq)]
pub enum Read<T> {
    /// The position's content.
    Value(T),
    /// The position has not been written yet.
    Ahead,
    /// The position was overwritten; the oldest readable position is given.
    Overwritten { oldest: u64 },
}

/// The shared, read side of a ring. Writing goes through the one [`RingWriter`].
pub struct Ring<D: SlotData> {
    slots: Box<[Slot<D>]>,
    mask: u64,
    capacity: u64,
    /// Number of positions completely written (the next position to write).
    written: AtomicU64,
    /// Readers waiting in [`Ring::wait_beyond`]; the writer only wakes when non-zero.
    waiters: AtomicUsize,
    notify: Notify,
}

/// The only handle that writes into a ring. Not `Clone`: one writer by construction.
pub struct RingWriter<D: SlotData> {
    ring: Arc<Ring<D>>,
    next: u64,
}

impl<D: SlotData> Ring<D> {
    /// Creates a ring holding `capacity` (2^n - 1) entries, and its writer.
    pub fn with_capacity(capacity: u64) -> Result<(RingWriter<D>, Arc<Ring<D>>), CapacityError> {
        let capacity = validate_capacity(capacity)?;
        let slots = (0..=capacity)
            .map(|_| Slot {
                stamp: AtomicU64::new(0),
                data: D::default(),
            })
            .collect::<Vec<_>>()
            .into_boxed_slice();
        let ring = Arc::new(Ring {
            slots,
            mask: capacity,
            capacity,
            written: AtomicU64::new(0),
            waiters: AtomicUsize::new(0),
            notify: Notify::new(),
        });
        let writer = RingWriter {
            ring: Arc::clone(&ring),
            next: 0,
        };
        Ok((writer, ring))
    }

    /// The number of entries the ring keeps.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// The number of positions written so far; also the next position to be written.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Acquire)
    }

    /// The number of entries currently readable.
    pub fn len(&self) -> u64 {
        self.written().min(self.capacity)
    }

    /// Whether nothing was written yet.
    pub fn is_empty(&self) -> bool {
        self.written() == 0
    }

    /// The oldest position that is still readable.
    pub fn oldest(&self) -> u64 {
        self.written().saturating_sub(self.capacity)
    }

    /// Reads position `pos`.
    #[inline]
    pub fn read(&self, pos: u64) -> Read<D::Raw> {
        let written = self.written();
        if pos >= written {
            return Read::Ahead;
        }
        let oldest = written.saturating_sub(self.capacity);
        if pos < oldest {
            return Read::Overwritten { oldest };
        }
        let slot = &self.slots[(pos & self.mask) as usize];
        prefetch(&self.slots[((pos + PREFETCH_AHEAD) & self.mask) as usize]);
        let expected = 2 * pos + 2;
        let before = slot.stamp.load(Ordering::Acquire);
        if before != expected {
            return Read::Overwritten {
                oldest: self.oldest().max(pos + 1),
            };
        }
        let raw = slot.data.load(pos);
        fence(Ordering::Acquire);
        let after = slot.stamp.load(Ordering::Relaxed);
        if after != expected {
            return Read::Overwritten {
                oldest: self.oldest().max(pos + 1),
            };
        }
        Read::Value(raw)
    }

    /// Runs `f` on the data of position `pos`'s slot; None when the position is not
    /// (or no longer) what the slot holds before and after, so what `f` read is
    /// torn or someone else's. For parts of an entry read after the entry itself.
    pub fn load_checked<R>(&self, pos: u64, f: impl FnOnce(&D) -> R) -> Option<R> {
        let slot = &self.slots[(pos & self.mask) as usize];
        prefetch(&self.slots[((pos + PREFETCH_AHEAD) & self.mask) as usize]);
        let expected = 2 * pos + 2;
        if slot.stamp.load(Ordering::Acquire) != expected {
            return None;
        }
        let read = f(&slot.data);
        fence(Ordering::Acquire);
        (slot.stamp.load(Ordering::Relaxed) == expected).then_some(read)
    }

    /// Waits until position `pos` has been written. Returns at once if it already is.
    pub async fn wait_beyond(&self, pos: u64) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            self.waiters.fetch_add(1, Ordering::SeqCst);
            if self.written.load(Ordering::SeqCst) > pos {
                self.waiters.fetch_sub(1, Ordering::SeqCst);
                return;
            }
            notified.await;
            self.waiters.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// A forward reader starting at `pos`.
    pub fn reader(self: &Arc<Self>, pos: u64) -> RingReader<D> {
        RingReader {
            ring: Arc::clone(self),
            pos,
        }
    }
}

impl<D: SlotData> RingWriter<D> {
    /// Appends `value`, overwriting the oldest entry once the ring is full. Never waits
    /// for readers.
    pub fn push(&mut self, value: D::Value) {
        let pos = self.next;
        let ring = &*self.ring;
        let slot = &ring.slots[(pos & ring.mask) as usize];
        slot.stamp.store(2 * pos + 1, Ordering::Relaxed);
        fence(Ordering::Release);
        slot.data.store(value);
        slot.stamp.store(2 * pos + 2, Ordering::Release);
        self.next = pos + 1;
        ring.written.store(pos + 1, Ordering::SeqCst);
        if ring.waiters.load(Ordering::SeqCst) > 0 {
            ring.notify.notify_waiters();
        }
    }

    /// The read side of this writer's ring.
    pub fn ring(&self) -> &Arc<Ring<D>> {
        &self.ring
    }
}

/// One step of a [`RingReader`].
#[derive(Debug, PartialEq, Eq)]
pub enum Next<T> {
    /// The entry at the reader's position; the reader moved on by one.
    Value(T),
    /// The writer overtook the reader: this many entries were lost and the reader
    /// jumped to the oldest readable position.
    Lost(u64),
    /// The reader is at the writer's position (nothing more to read now).
    End,
}

/// Reads a ring forward from a position, reporting overwritten stretches as losses.
pub struct RingReader<D: SlotData> {
    ring: Arc<Ring<D>>,
    pos: u64,
}

impl<D: SlotData> RingReader<D> {
    /// The next position this reader will read.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// The ring being read.
    pub fn ring(&self) -> &Arc<Ring<D>> {
        &self.ring
    }

    /// Reads the next entry without waiting.
    #[inline]
    pub fn next_now(&mut self) -> Next<D::Raw> {
        match self.ring.read(self.pos) {
            Read::Value(raw) => {
                self.pos += 1;
                Next::Value(raw)
            }
            Read::Ahead => Next::End,
            Read::Overwritten { oldest } => {
                let lost = oldest - self.pos;
                self.pos = oldest;
                Next::Lost(lost)
            }
        }
    }

    /// Reads the next entry, waiting for the writer if the reader caught up.
    pub async fn next_follow(&mut self) -> Next<D::Raw> {
        loop {
            match self.next_now() {
                Next::End => self.ring.wait_beyond(self.pos).await,
                other => return other,
            }
        }
    }
}

// === impl SlotData for plain event slots ===

/// A slot holding any shared value; readers clone the `Arc` under a lock held only for
/// that clone. Used for the small agent-event and debug-event rings.
pub struct ArcSlot<T>(std::sync::Mutex<Option<Arc<T>>>);

impl<T> Default for ArcSlot<T> {
    fn default() -> Self {
        Self(std::sync::Mutex::new(None))
    }
}

impl<T: Send + Sync + 'static> SlotData for ArcSlot<T> {
    type Value = Arc<T>;
    type Raw = Option<Arc<T>>;

    fn store(&self, value: Arc<T>) {
        let old = {
            let mut guard = self.0.lock().unwrap_or_else(|e| e.into_inner());
            guard.replace(value)
        };
        drop(old);
    }

    fn load(&self, _pos: u64) -> Option<Arc<T>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[cfg(test)]
mod tests;
