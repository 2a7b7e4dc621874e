//! JSON output figure: 101,500 decoded flows of the corpus mix (`sample::corpus_flow`,
//! the capture the side-by-side benchmark replays) written as `hubble observe -o jsonpb`
//! lines with `proto::json::write_line`, as the CLI writes them; best of 15 rounds over
//! the whole set, so the flows are read from memory, not from cache.
//!
//! Run with `cargo bench -p observer --bench json` (add `-- --quick` for a short run).

use std::time::Instant;

use proto::observer::{get_flows_response::ResponseTypes, GetFlowsResponse};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (count, rounds) = if quick { (10_000, 3) } else { (101_500, 15) };
    let responses: Vec<GetFlowsResponse> = (0..count)
        .map(|n| {
            let flow = observer::sample::corpus_flow(n);
            GetFlowsResponse {
                time: flow.time,
                node_name: flow.node_name.clone(),
                response_types: Some(ResponseTypes::Flow(flow)),
            }
        })
        .collect();
    let mut writer = proto::json::Writer::with_capacity(4096);
    let mut out = Vec::with_capacity(count as usize * 2048);
    let mut best = f64::MAX;
    for _ in 0..rounds {
        out.clear();
        let started = Instant::now();
        for response in &responses {
            proto::json::write_line(&mut writer, response, &mut out).expect("a Vec takes it");
        }
        best = best.min(started.elapsed().as_secs_f64());
    }
    println!(
        "JSON lines of {count} corpus flows: {:.0} ns/flow, {:.0} MB/s ({} bytes; best of {rounds})",
        best * 1e9 / count as f64,
        out.len() as f64 / best / 1e6,
        out.len()
    );
}
