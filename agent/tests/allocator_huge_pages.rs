//! `agent::memory::configure_allocator` turns transparent huge pages off: memory the
//! allocator hands out and the process touches only here and there stays resident
//! page by page, not 2 MiB at a time. Under the allocator `hubble-agent` runs on.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Stretches of 2 MiB touched once each.
const STRETCHES: usize = 32;
const HUGE_PAGE: usize = 2 << 20;

/// Resident KiB added by touching one byte in each 2 MiB of a fresh allocation.
fn sparse_touch_kib() -> u64 {
    let mut block: Vec<u8> = Vec::with_capacity(STRETCHES * HUGE_PAGE);
    let before = tests::own_memory_kib("RssAnon");
    let spare = block.spare_capacity_mut();
    for i in 0..STRETCHES {
        spare[i * HUGE_PAGE].write(1);
    }
    let after = tests::own_memory_kib("RssAnon");
    std::hint::black_box(&block);
    block.clear();
    after.saturating_sub(before)
}

#[test]
fn sparse_memory_stays_resident_page_by_page() {
    let enabled =
        std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").unwrap_or_default();
    let available = enabled.contains("[always]") || enabled.contains("[madvise]");
    let with_huge_pages = sparse_touch_kib();
    agent::memory::configure_allocator().expect("configures the allocator");
    assert!(agent::memory::huge_pages_disabled());
    let without = sparse_touch_kib();
    // Page by page: 32 pages of 4 KiB, with room for the allocator's own.
    assert!(
        without < 1024,
        "{without} KiB resident for {STRETCHES} touched bytes with huge pages off"
    );
    if available {
        // The same touches took whole huge pages before (the test would pass without
        // the switch otherwise).
        assert!(
            with_huge_pages > 8 * 1024,
            "{with_huge_pages} KiB with huge pages on ({enabled})"
        );
    }
}
