//! Flow ring figures: insert rate of compact flows on one core, heap bytes per stored
//! flow, and GetFlows-style scan rates with a pod filter and a verdict filter over a
//! full ring of 2^20 - 1 flows.
//!
//! Run with `cargo bench -p observer --bench ring` (add `-- --quick` for a smaller
//! ring).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

use observer::ring::Next;
use observer::sample;
use observer::store::{FlowStore, FlowStoreWriter, StoredEvent};
use proto::filter::FilterSet;
use proto::flow::{Flow, FlowFilter, Verdict};

/// Counts live heap bytes, to measure what the ring really holds.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every method forwards to the system allocator with the caller's arguments
// unchanged and only adds bookkeeping on the side.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same layout the caller gave us.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: `ptr` was allocated by `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: forwarded unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const BATCH: u64 = 1024;

/// Inserts `total` demo flows, pre-built in batches outside the timed part. Returns
/// the time spent converting and inserting (including dropping what the compact form
/// does not keep).
fn fill(writer: &mut FlowStoreWriter, start: u64, total: u64) -> Duration {
    let mut spent = Duration::ZERO;
    let mut n = start;
    while n < start + total {
        let batch: Vec<Flow> = (n..(n + BATCH).min(start + total))
            .map(sample::flow)
            .collect();
        n += batch.len() as u64;
        let t = Instant::now();
        for flow in batch {
            writer.push_flow(flow, &mut |_| {});
        }
        spent += t.elapsed();
    }
    spent
}

/// Scans the whole ring as GetFlows does without a limit: read each slot, view it,
/// filter it. With `convert`, matching flows are rebuilt as `Flow`s too.
fn scan(store: &FlowStore, filters: &FilterSet, convert: bool) -> (u64, u64, Duration) {
    let t = Instant::now();
    let mut reader = store.reader(store.ring().oldest());
    let (mut scanned, mut matched) = (0u64, 0u64);
    loop {
        match reader.next_now() {
            Next::Value(raw) => {
                scanned += 1;
                if let StoredEvent::Flow(flow) = store.event(raw) {
                    if filters.matches(&flow) {
                        matched += 1;
                        if convert {
                            std::hint::black_box(flow.to_flow());
                        }
                    }
                }
            }
            Next::Lost(_) => {}
            Next::End => break,
        }
    }
    (scanned, matched, t.elapsed())
}

fn rate(count: u64, d: Duration) -> f64 {
    count as f64 / d.as_secs_f64()
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let exp = if quick { 16 } else { 20 };
    let capacity = (1u64 << exp) - 1;

    let before = LIVE.load(Ordering::Relaxed);
    let (mut writer, store) = FlowStore::new(capacity).expect("valid capacity");
    // Fill the ring once (cold: slots first touched), then measure a second full
    // pass over a warm ring, overwriting.
    let cold = fill(&mut writer, 0, capacity + 1);
    let warm = fill(&mut writer, capacity + 1, capacity + 1);
    let held = LIVE.load(Ordering::Relaxed) - before;
    let bytes_per_flow = held as f64 / capacity as f64;

    println!(
        "flow ring, capacity {capacity} (2^{exp} - 1), demo-like mix (TCP/UDP/ICMP between 4 pods)"
    );
    println!(
        "  insert (Flow -> compact -> ring), cold ring : {:>8.2} M flows/s",
        rate(capacity + 1, cold) / 1e6
    );
    println!(
        "  insert (Flow -> compact -> ring), warm ring : {:>8.2} M flows/s",
        rate(capacity + 1, warm) / 1e6
    );
    println!(
        "  heap held by the full ring                  : {:>8.1} MiB = {:.1} bytes/flow",
        held as f64 / (1 << 20) as f64,
        bytes_per_flow
    );
    println!(
        "    (live heap bytes from a counting allocator after filling, incl. slots, tables, extras; / capacity)"
    );
    println!(
        "  flows stored whole (no compact form)        : {}",
        writer.full_fallbacks()
    );

    let pod = FilterSet::compile(
        &[FlowFilter {
            source_pod: vec!["default/xwing".into()],
            ..Default::default()
        }],
        &[],
    )
    .expect("valid filter");
    let verdict = FilterSet::compile(
        &[FlowFilter {
            verdict: vec![Verdict::Dropped as i32],
            ..Default::default()
        }],
        &[],
    )
    .expect("valid filter");
    for (name, filters) in [
        ("source_pod default/xwing", &pod),
        ("verdict DROPPED", &verdict),
    ] {
        let (scanned, matched, d) = scan(&store, filters, false);
        println!(
            "  scan, filter {name:<24}    : {:>8.2} M flows/s ({matched} of {scanned} match)",
            rate(scanned, d) / 1e6
        );
        let (scanned, _, d) = scan(&store, filters, true);
        println!(
            "  scan + rebuild matches, {name:<24}: {:>8.2} M flows/s",
            rate(scanned, d) / 1e6
        );
    }
}
