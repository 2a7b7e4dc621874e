use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use proptest::prelude::*;

use super::*;

/// A test slot: one word, written as the position's number.
#[derive(Default)]
struct Word(AtomicU64);

impl SlotData for Word {
    type Value = u64;
    type Raw = u64;

    fn store(&self, value: u64) {
        self.0.store(value, Ordering::Relaxed);
    }

    fn load(&self, _pos: u64) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

fn ring(capacity: u64) -> (RingWriter<Word>, Arc<Ring<Word>>) {
    Ring::with_capacity(capacity).expect("valid capacity")
}

fn drain(reader: &mut RingReader<Word>) -> (Vec<u64>, u64) {
    let (mut values, mut lost) = (Vec::new(), 0);
    loop {
        match reader.next_now() {
            Next::Value(v) => values.push(v),
            Next::Lost(n) => lost += n,
            Next::End => return (values, lost),
        }
    }
}

#[test]
fn capacity_must_be_a_power_of_two_minus_one() {
    for ok in [1, 3, 7, 4095, 65535, MAX_CAPACITY] {
        assert_eq!(validate_capacity(ok), Ok(ok));
    }
    let err = validate_capacity(4096).unwrap_err();
    assert_eq!((err.below, err.above), (4095, 8191));
    let text = err.to_string();
    assert!(
        text.contains("4096") && text.contains("4095") && text.contains("8191"),
        "{text}"
    );
    assert_eq!(validate_capacity(0).unwrap_err().above, 1);
    assert_eq!(validate_capacity(5000).unwrap_err().below, 4095);
    assert_eq!(validate_capacity(u64::MAX).unwrap_err().above, MAX_CAPACITY);
}

#[test]
fn keeps_the_last_capacity_entries() {
    let (mut writer, ring) = ring(7);
    for v in 0..20 {
        writer.push(v);
    }
    assert_eq!((ring.len(), ring.capacity(), ring.written()), (7, 7, 20));
    assert_eq!(ring.oldest(), 13);
    assert_eq!(ring.read(12), Read::Overwritten { oldest: 13 });
    assert_eq!(ring.read(13), Read::Value(13));
    assert_eq!(ring.read(19), Read::Value(19));
    assert_eq!(ring.read(20), Read::Ahead);
    let mut reader = ring.reader(0);
    let (values, lost) = drain(&mut reader);
    assert_eq!(lost, 13);
    assert_eq!(values, (13..20).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_follower_wakes_on_new_writes() {
    let (mut writer, ring) = ring(15);
    let mut reader = ring.reader(0);
    let follower = tokio::spawn(async move {
        let mut seen = Vec::new();
        while seen.len() < 5 {
            if let Next::Value(v) = reader.next_follow().await {
                seen.push(v);
            }
        }
        seen
    });
    for v in 0..5 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        writer.push(v);
    }
    let seen = tokio::time::timeout(std::time::Duration::from_secs(5), follower)
        .await
        .expect("follower finished")
        .expect("follower did not panic");
    assert_eq!(seen, vec![0, 1, 2, 3, 4]);
}

proptest! {
    /// Writing any number of entries then reading from any start position yields
    /// exactly the retained suffix, with the skipped ones counted as lost.
    #[test]
    fn overwrite_and_loss_accounting(exp in 1u32..8, writes in 0u64..300, start in 0u64..300) {
        let capacity = (1u64 << exp) - 1;
        let (mut writer, ring) = ring(capacity);
        for v in 0..writes {
            writer.push(v * 3 + 1);
        }
        let mut reader = ring.reader(start.min(writes));
        let (values, lost) = drain(&mut reader);
        let first = start.min(writes).max(writes.saturating_sub(capacity));
        prop_assert_eq!(lost, first - start.min(writes));
        prop_assert_eq!(values, (first..writes).map(|v| v * 3 + 1).collect::<Vec<_>>());
    }

    /// Readers racing a writer thread see strictly increasing values, and what they
    /// received plus what they were told they lost is everything written from their
    /// start.
    #[test]
    fn concurrent_readers_account_for_everything(exp in 1u32..6, total in 1u64..20_000) {
        let capacity = (1u64 << exp) - 1;
        let (mut writer, ring) = ring(capacity);
        let readers: Vec<_> = (0..3)
            .map(|_| {
                let ring = Arc::clone(&ring);
                std::thread::spawn(move || {
                    let mut reader = ring.reader(0);
                    let (mut received, mut lost, mut last) = (0u64, 0u64, None);
                    let mut ordered = true;
                    while received + lost < total {
                        match reader.next_now() {
                            Next::Value(v) => {
                                ordered &= last.is_none_or(|l| v > l) && v + 1 == reader.position();
                                last = Some(v);
                                received += 1;
                            }
                            Next::Lost(n) => lost += n,
                            Next::End => std::hint::spin_loop(),
                        }
                    }
                    (received, lost, ordered)
                })
            })
            .collect();
        for v in 0..total {
            writer.push(v);
        }
        for reader in readers {
            let (received, lost, ordered) = reader.join().expect("reader thread");
            prop_assert!(ordered);
            prop_assert_eq!(received + lost, total);
        }
    }
}

/// A flow's slot is its stamp, its record and its extra's one word: 128 bytes, two
/// to a 256-byte stretch of the ring's memory.
#[test]
fn a_flow_slot_is_128_bytes() {
    assert_eq!(
        std::mem::size_of::<Slot<crate::store::FlowSlot>>(),
        8 + 8 * crate::compact::WORDS + 8
    );
    assert_eq!(std::mem::size_of::<Slot<crate::store::FlowSlot>>(), 128);
}
