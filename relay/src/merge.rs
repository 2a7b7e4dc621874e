//! The sort buffer: merges responses from many nodes into time order.
//!
//! Every response enters a min-heap keyed by its timestamp. A response leaves when the
//! buffer holds more than `max_len` responses (the oldest leaves), when it has waited
//! `drain_timeout` since it arrived (it leaves with every older response), or at the end
//! of the request. Output is therefore exactly ordered whenever the nodes' streams arrive
//! within `drain_timeout` of each other and the buffer does not overflow, and no response
//! waits longer than `drain_timeout`. A response older than one already sent (it arrived
//! too late to be ordered) is passed through at once rather than held back.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::time::{Duration, Instant};

/// Position of a response in the output: its timestamp (nanoseconds since the epoch),
/// then its arrival order, so that keys are unique.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    time: i128,
    seq: u64,
}

/// Largest number of slots allocated up front.
const INITIAL_CAPACITY_MAX: usize = 1024;

/// A bounded buffer that releases items in time order.
///
/// Items stay where they were put (a slab of slots); only small keys move inside the heap,
/// so large messages are moved once in and once out.
pub struct SortBuffer<T> {
    heap: BinaryHeap<Reverse<(Key, usize)>>,
    slots: Vec<Option<T>>,
    free_slots: Vec<usize>,
    arrivals: VecDeque<(Instant, Key)>,
    max_len: usize,
    drain_timeout: Duration,
    last_released: Option<Key>,
    next_seq: u64,
}

impl<T> SortBuffer<T> {
    /// Creates a buffer holding at most `max_len` items (at least one).
    pub fn new(max_len: usize, drain_timeout: Duration) -> Self {
        let max_len = max_len.max(1);
        // Room for the usual size; a buffer bounded from outside (usize::MAX) grows.
        let initial = max_len.min(INITIAL_CAPACITY_MAX).saturating_add(1);
        Self {
            heap: BinaryHeap::with_capacity(initial),
            slots: Vec::with_capacity(initial),
            free_slots: Vec::with_capacity(initial),
            arrivals: VecDeque::with_capacity(initial),
            max_len,
            drain_timeout,
            last_released: None,
            next_seq: 0,
        }
    }

    /// Number of items held.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether no item is held.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Adds an item with timestamp `time` (nanoseconds since the epoch) that arrived at
    /// `now`. Returns the item that must leave now, if any: the oldest one when the buffer
    /// overflows, or the new one when it is older than what already left.
    pub fn push(&mut self, time: i128, item: T, now: Instant) -> Option<T> {
        let key = Key {
            time,
            seq: self.next_seq,
        };
        self.next_seq += 1;
        if self.last_released.is_some_and(|last| key.time < last.time) {
            return Some(item);
        }
        let slot = match self.free_slots.pop() {
            Some(slot) => {
                self.slots[slot] = Some(item);
                slot
            }
            None => {
                self.slots.push(Some(item));
                self.slots.len() - 1
            }
        };
        self.heap.push(Reverse((key, slot)));
        self.arrivals.push_back((now, key));
        if self.heap.len() > self.max_len {
            return self.pop_oldest();
        }
        None
    }

    /// Takes the oldest item out.
    pub fn pop_oldest(&mut self) -> Option<T> {
        let Reverse((key, slot)) = self.heap.pop()?;
        self.last_released = Some(key);
        self.free_slots.push(slot);
        self.slots.get_mut(slot).and_then(Option::take)
    }

    fn is_released(&self, key: Key) -> bool {
        self.last_released.is_some_and(|last| key <= last)
    }

    fn skip_released(&mut self) {
        while let Some(&(_, key)) = self.arrivals.front() {
            if !self.is_released(key) {
                break;
            }
            self.arrivals.pop_front();
        }
    }

    /// Moves every item whose wait is over at `now`, and every older item, to `out`.
    pub fn drain_expired(&mut self, now: Instant, out: &mut Vec<T>) {
        loop {
            self.skip_released();
            let Some(&(arrived, key)) = self.arrivals.front() else {
                return;
            };
            if arrived + self.drain_timeout > now {
                return;
            }
            while !self.is_released(key) {
                match self.pop_oldest() {
                    Some(item) => out.push(item),
                    None => break,
                }
            }
        }
    }

    /// When the next item's wait is over, if any item is held.
    pub fn next_deadline(&mut self) -> Option<Instant> {
        self.skip_released();
        self.arrivals
            .front()
            .map(|&(arrived, _)| arrived + self.drain_timeout)
    }

    /// Moves every item to `out`, in order.
    pub fn drain_all(&mut self, out: &mut Vec<T>) {
        while let Some(item) = self.pop_oldest() {
            out.push(item);
        }
        self.arrivals.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_in_time_order_when_full_and_at_the_end() {
        let now = Instant::now();
        let mut buffer = SortBuffer::new(3, Duration::from_secs(1));
        let mut out = Vec::new();
        for time in [5, 1, 4, 2, 3, 9, 7] {
            out.extend(buffer.push(time, time, now));
        }
        buffer.drain_all(&mut out);
        assert_eq!(out, vec![1, 2, 3, 4, 5, 7, 9]);
    }

    #[test]
    fn a_late_item_passes_through() {
        let now = Instant::now();
        let mut buffer = SortBuffer::new(1, Duration::from_secs(1));
        assert_eq!(buffer.push(10, 10, now), None);
        assert_eq!(buffer.push(20, 20, now), Some(10));
        assert_eq!(buffer.push(5, 5, now), Some(5));
    }

    #[test]
    fn an_item_waits_at_most_the_drain_timeout() {
        let start = Instant::now();
        let timeout = Duration::from_millis(100);
        let mut buffer = SortBuffer::new(100, timeout);
        // A recent item arrives first, then an older one: the first must still leave on
        // time, together with the older one so that order holds.
        assert_eq!(buffer.push(50, "b", start), None);
        assert_eq!(buffer.push(10, "a", start + timeout / 2), None);
        assert_eq!(buffer.next_deadline(), Some(start + timeout));
        let mut out = Vec::new();
        buffer.drain_expired(start + timeout / 2, &mut out);
        assert!(out.is_empty());
        buffer.drain_expired(start + timeout, &mut out);
        assert_eq!(out, vec!["a", "b"]);
        assert!(buffer.is_empty());
        assert_eq!(buffer.next_deadline(), None);
    }

    #[test]
    fn only_expired_items_and_older_ones_leave() {
        let start = Instant::now();
        let timeout = Duration::from_millis(100);
        let mut buffer = SortBuffer::new(100, timeout);
        buffer.push(10, 10, start);
        buffer.push(30, 30, start + timeout / 2);
        buffer.push(20, 20, start + timeout / 2);
        let mut out = Vec::new();
        buffer.drain_expired(start + timeout, &mut out);
        assert_eq!(out, vec![10]);
        assert_eq!(buffer.next_deadline(), Some(start + timeout + timeout / 2));
        buffer.drain_expired(start + 2 * timeout, &mut out);
        assert_eq!(out, vec![10, 20, 30]);
    }
}
