//! Flow ring figures: insert rate of compact flows on one core, heap bytes per stored
//! flow, and GetFlows-style scan rates with a pod filter and a verdict filter over a
//! full ring of 2^20 - 1 flows; for the demo mix, then for the corpus mix.
//!
//! Run with `cargo bench -p observer --bench ring` (add `-- --quick` for a smaller
//! ring). Allocations go to mimalloc, `hubble-agent`'s allocator. Scan figures are the
//! median of [`SCAN_RUNS`] runs.

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

use observer::ring::Next;
use observer::sample;
use observer::store::{FlowStore, FlowStoreWriter, StoredEvent};
use proto::filter::FilterSet;
use proto::flow::{Flow, FlowFilter, Verdict};
use proto::get_flows::EncodedResponse;
use proto::observer::{get_flows_response::ResponseTypes, GetFlowsResponse};

/// Counts live heap bytes, to measure what the ring really holds; allocates with
/// mimalloc as `hubble-agent` does.
struct Counting;

static MIMALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every method forwards to mimalloc with the caller's arguments
// unchanged and only adds bookkeeping on the side.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same layout the caller gave us.
        unsafe { MIMALLOC.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: `ptr` was allocated by `alloc` above with this layout.
        unsafe { MIMALLOC.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: forwarded unchanged.
        unsafe { MIMALLOC.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const BATCH: u64 = 1024;

/// CPU time of this thread: the figures are per core even on a busy machine.
fn cpu_now() -> Duration {
    use nix::time::{clock_gettime, ClockId};
    clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID).map_or(Duration::ZERO, Duration::from)
}

/// Wall and CPU time of a measured section.
#[derive(Default, Clone, Copy)]
struct Spent {
    wall: Duration,
    cpu: Duration,
}

struct Timer(Instant, Duration);

impl Timer {
    fn start() -> Self {
        Timer(Instant::now(), cpu_now())
    }
    fn add_to(&self, spent: &mut Spent) {
        spent.wall += self.0.elapsed();
        spent.cpu += cpu_now().saturating_sub(self.1);
    }
}

/// Inserts `total` demo flows, pre-built in batches outside the timed part. Returns
/// the time spent converting and inserting (including dropping what the compact form
/// does not keep).
fn fill(writer: &mut FlowStoreWriter, start: u64, total: u64, by_ref: bool) -> Spent {
    fill_with(writer, start, total, by_ref, sample::flow)
}

/// As [`fill`], with the flows `make` builds.
fn fill_with(
    writer: &mut FlowStoreWriter,
    start: u64,
    total: u64,
    by_ref: bool,
    make: fn(u64) -> Flow,
) -> Spent {
    let mut spent = Spent::default();
    let mut n = start;
    while n < start + total {
        let end = (n + BATCH).min(start + total);
        let batch: Vec<Flow> = (n..end).map(make).collect();
        n = end;
        let t = Timer::start();
        if by_ref {
            for flow in &batch {
                writer.push_flow_ref(flow, &mut |_| {});
            }
        } else {
            for flow in batch {
                writer.push_flow(flow, &mut |_| {});
            }
        }
        t.add_to(&mut spent);
    }
    spent
}

/// What a scan does with a matching flow.
#[derive(Clone, Copy, PartialEq)]
enum Then {
    /// Nothing: the filter's cost alone.
    Count,
    /// Rebuilds it as a `Flow`.
    Rebuild,
    /// Writes its GetFlows response, as the agent serves it.
    Respond,
    /// Writes its GetFlows response from the rebuilt `Flow` (what the agent did
    /// before it wrote the tables' encoded endpoints and contexts as they are).
    RespondRebuilt,
}

/// Runs of each scan; the figure is their median (the machines this runs on share
/// their cores, and single runs vary by a third).
const SCAN_RUNS: usize = 5;

/// [`scan_once`] [`SCAN_RUNS`] times: the counts and the median run's time.
fn scan(store: &FlowStore, filters: &FilterSet, then: Then) -> (u64, u64, Spent) {
    let mut runs: Vec<(u64, u64, Spent)> = (0..SCAN_RUNS)
        .map(|_| scan_once(store, filters, then))
        .collect();
    runs.sort_by_key(|(_, _, spent)| spent.cpu);
    runs[SCAN_RUNS / 2]
}

/// Scans the whole ring as GetFlows does without a limit: read each slot, view it,
/// filter it, then do `then` with each match.
fn scan_once(store: &FlowStore, filters: &FilterSet, then: Then) -> (u64, u64, Spent) {
    let t = Timer::start();
    let mut reader = store.reader(store.ring().oldest());
    let (mut scanned, mut matched) = (0u64, 0u64);
    loop {
        match reader.next_now() {
            Next::Value(raw) => {
                scanned += 1;
                if let StoredEvent::Flow(flow) = store.event(raw) {
                    if filters.matches(&flow) {
                        matched += 1;
                        match then {
                            Then::Count => {}
                            Then::Rebuild => {
                                std::hint::black_box(flow.to_flow());
                            }
                            Then::Respond => {
                                std::hint::black_box(flow.encode_response());
                            }
                            Then::RespondRebuilt => {
                                let flow = flow.to_flow();
                                std::hint::black_box(EncodedResponse::new(&GetFlowsResponse {
                                    time: flow.time,
                                    node_name: flow.node_name.clone(),
                                    response_types: Some(ResponseTypes::Flow(flow)),
                                }));
                            }
                        }
                    }
                }
            }
            Next::Lost(_) => {}
            Next::End => break,
        }
    }
    let mut spent = Spent::default();
    t.add_to(&mut spent);
    (scanned, matched, spent)
}

/// "<cpu rate> M/s per core (wall <rate> M/s)".
fn rate(count: u64, d: Spent) -> String {
    let per = |t: Duration| count as f64 / t.as_secs_f64() / 1e6;
    format!(
        "{:>7.2} M flows/s per core (wall clock {:.2})",
        per(d.cpu),
        per(d.wall)
    )
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let exp = if quick { 16 } else { 20 };
    let capacity = (1u64 << exp) - 1;

    let before = LIVE.load(Ordering::Relaxed);
    let (mut writer, store) = FlowStore::new(capacity).expect("valid capacity");
    // Fill the ring once (cold: slots first touched), then measure a second full
    // pass over a warm ring, overwriting.
    let cold = fill(&mut writer, 0, capacity + 1, false);
    let warm = fill(&mut writer, capacity + 1, capacity + 1, false);
    let by_ref = fill(&mut writer, 2 * (capacity + 1), capacity + 1, true);
    let held = LIVE.load(Ordering::Relaxed) - before;
    let bytes_per_flow = held as f64 / capacity as f64;

    println!(
        "flow ring, capacity {capacity} (2^{exp} - 1), demo-like mix (TCP/UDP/ICMP between 4 pods)"
    );
    println!(
        "  insert owned Flow, cold ring (incl. drop)   : {}",
        rate(capacity + 1, cold)
    );
    println!(
        "  insert owned Flow, warm ring (incl. drop)   : {}",
        rate(capacity + 1, warm)
    );
    println!(
        "  insert &Flow (caller keeps it), warm ring   : {}",
        rate(capacity + 1, by_ref)
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
    // No filter: what reading and viewing the slots alone costs, the ceiling of any
    // filtered scan.
    let none = FilterSet::default();
    let filters = [
        ("no filter (reading the slots)", &none),
        ("source_pod default/xwing", &pod),
        ("verdict DROPPED", &verdict),
    ];
    print_scans(&store, &filters, true);

    // The corpus mix (L3/L4, L7 HTTP, DNS, drops, policy verdicts; every flow with a
    // trace context), as real captures have it: the same ring, overwritten.
    let corpus = fill_with(&mut writer, 0, capacity + 1, false, sample::corpus_flow);
    let held = LIVE.load(Ordering::Relaxed) - before;
    println!("flow ring, capacity {capacity}, corpus mix (sample::corpus_flow)");
    println!(
        "  insert owned Flow, warm ring (incl. drop)   : {}",
        rate(capacity + 1, corpus)
    );
    println!(
        "  heap held by the full ring                  : {:>8.1} MiB = {:.1} bytes/flow",
        held as f64 / (1 << 20) as f64,
        held as f64 / capacity as f64
    );
    print_scans(&store, &filters, false);
}

/// Prints the scan rate of each filter over the whole ring, then with each match's
/// GetFlows response written; with `rebuild`, also the
/// rate when the matching flows are rebuilt as `Flow`s.
fn print_scans(store: &FlowStore, filters: &[(&str, &FilterSet)], rebuild: bool) {
    for &(name, filters) in filters {
        let (scanned, matched, d) = scan(store, filters, Then::Count);
        println!(
            "  scan, {name:<30}     : {}, {matched} of {scanned} match",
            rate(scanned, d)
        );
        if rebuild && !filters.is_empty() {
            let (scanned, _, d) = scan(store, filters, Then::Rebuild);
            println!(
                "  scan + rebuild matches as Flow, {name:<24}: {}",
                rate(scanned, d)
            );
        }
        if !filters.is_empty() {
            let (scanned, _, d) = scan(store, filters, Then::Respond);
            println!(
                "  scan + GetFlows response of each match, {name:<15}: {}",
                rate(scanned, d)
            );
            let (scanned, _, d) = scan(store, filters, Then::RespondRebuilt);
            println!(
                "    (the response from the rebuilt Flow instead   : {})",
                rate(scanned, d)
            );
        }
    }
}
