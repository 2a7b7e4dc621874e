//! `agent::memory::release_freed_memory` hands freed memory back: resident memory
//! falls once it is called, under the allocator `hubble-agent` runs on.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Anonymous resident memory of this process, in KiB.
fn rss_anon_kib() -> u64 {
    tests::own_memory_kib("RssAnon")
}

#[test]
fn memory_freed_by_a_burst_goes_back_to_the_system() {
    const BLOCKS: usize = 256;
    const BLOCK: usize = 256 * 1024;
    // A burst, as loading the datapath makes: 64 MiB touched, then freed.
    let blocks: Vec<Vec<u8>> = (0..BLOCKS).map(|i| vec![i as u8 | 1; BLOCK]).collect();
    let touched = rss_anon_kib();
    drop(blocks);
    agent::memory::release_freed_memory();
    let after = rss_anon_kib();
    let burst = (BLOCKS * BLOCK / 1024) as u64;
    assert!(
        touched.saturating_sub(after) > burst / 2,
        "resident {touched} KiB with the burst, {after} KiB after releasing it ({burst} KiB freed)"
    );
}
