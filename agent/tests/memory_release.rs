//! `agent::memory::release_freed_memory` hands freed memory back: resident memory
//! falls once it is called, under the allocator `hubble-agent` runs on.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[test]
fn memory_freed_by_a_burst_goes_back_to_the_system() {
    const BLOCKS: usize = 256;
    const BLOCK: usize = 256 * 1024;
    // A burst, as loading the datapath makes: 64 MiB touched, then freed.
    let blocks: Vec<Vec<u8>> = (0..BLOCKS).map(|i| vec![i as u8 | 1; BLOCK]).collect();
    let touched = tests::own_memory_kib("RssAnon");
    drop(blocks);
    agent::memory::release_freed_memory();
    let after = tests::own_memory_kib("RssAnon");
    let burst = (BLOCKS * BLOCK / 1024) as u64;
    assert!(
        touched.saturating_sub(after) > burst / 2,
        "resident {touched} KiB with the burst, {after} KiB after releasing it ({burst} KiB freed)"
    );
}
