//! `agent::memory::configure_allocator` makes freed memory go back to the system within
//! milliseconds (`PURGE_DELAY_MS`) instead of the allocator's default second, under the
//! allocator `hubble-agent` runs on. Not timing-sensitive in the direction that
//! matters: a slow machine can only make the default pass too, never this fail.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[test]
fn memory_freed_by_a_finished_burst_goes_back_within_the_purge_delay() {
    const BLOCKS: usize = 256;
    const BLOCK: usize = 256 * 1024;
    agent::memory::configure_allocator().expect("configures the allocator");
    assert_eq!(
        agent::memory::purge_delay_ms(),
        agent::memory::PURGE_DELAY_MS
    );
    // A burst on a thread that then ends, as a replay's parsing threads do: 64 MiB
    // touched and freed.
    let touched = std::thread::spawn(|| {
        let blocks: Vec<Vec<u8>> = (0..BLOCKS).map(|i| vec![i as u8 | 1; BLOCK]).collect();
        let touched = tests::own_memory_kib("RssAnon");
        drop(blocks);
        touched
    })
    .join()
    .expect("the burst's thread");
    // Ten times the delay later, the allocator at work again (it purges what has
    // waited long enough when it next takes memory).
    std::thread::sleep(std::time::Duration::from_millis(
        10 * agent::memory::PURGE_DELAY_MS as u64,
    ));
    for round in 0..64u8 {
        let blocks: Vec<Vec<u8>> = (0..4u8)
            .map(|i| vec![i.wrapping_add(round) | 1; 4 * BLOCK])
            .collect();
        drop(blocks);
    }
    let after = tests::own_memory_kib("RssAnon");
    let burst = (BLOCKS * BLOCK / 1024) as u64;
    assert!(
        touched.saturating_sub(after) > burst / 2,
        "resident {touched} KiB with the burst, {after} KiB {} ms after it ({burst} KiB freed)",
        10 * agent::memory::PURGE_DELAY_MS
    );
}
