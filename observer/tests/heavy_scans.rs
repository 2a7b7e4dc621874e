//! Two requests at the filter budget's limits (4,096 `source_label` values, one of them
//! `--last` over a full ring) scan the ring on the scan pool, not on the async workers:
//! ServerStatus keeps answering meanwhile. The deadline only detects a hang; the
//! latencies are printed.

mod common;

use std::time::{Duration, Instant};

use common::Harness;
use proto::flow::FlowFilter;
use proto::observer::observer_client::ObserverClient;
use proto::observer::{GetFlowsRequest, ServerStatusRequest};

/// Flows in the ring: the default capacity, full.
const RING: u64 = observer::ring::DEFAULT_CAPACITY;
/// Longest wait for one ServerStatus before the test calls it a hang.
const HANG: Duration = Duration::from_secs(10);

fn heavy(number: u64) -> GetFlowsRequest {
    // 4,096 selectors (the budget's MAX_FILTER_VALUES), none matching: every flow of
    // the ring is tested against all of them.
    let source_label = (0..4096).map(|i| format!("k8s:app=absent-{i}")).collect();
    GetFlowsRequest {
        number,
        whitelist: vec![FlowFilter {
            source_label,
            ..Default::default()
        }],
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_answers_while_two_heavy_scans_run() -> anyhow::Result<()> {
    let harness = Harness::start(RING).await?;
    harness
        .push((0..RING).map(|n| {
            let mut flow = observer::sample::flow(n);
            flow.time = Some(observer::ingest::now_timestamp());
            flow
        }))
        .await?;
    let channel = harness.tcp_channel().await?;
    let mut scans = Vec::new();
    for number in [20, 0] {
        let mut client = ObserverClient::new(channel.clone());
        let started = Instant::now();
        scans.push(tokio::spawn(async move {
            let mut stream = client.get_flows(heavy(number)).await?.into_inner();
            while stream.message().await?.is_some() {}
            anyhow::Ok(started.elapsed())
        }));
    }
    let mut status = ObserverClient::new(harness.tcp_channel().await?);
    let mut latencies = Vec::new();
    // Asked while the scans run (they take far longer than the first few answers).
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let asked = Instant::now();
        let answer = tokio::time::timeout(HANG, status.server_status(ServerStatusRequest {}))
            .await
            .map_err(|_| anyhow::anyhow!("ServerStatus did not answer within {HANG:?}"))??;
        latencies.push(asked.elapsed());
        assert_eq!(answer.into_inner().num_flows, RING);
    }
    let running = scans.iter().filter(|s| !s.is_finished()).count();
    println!(
        "ServerStatus latencies during two heavy scans: {latencies:?}; scans still running after them: {running}"
    );
    for scan in scans {
        scan.abort();
    }
    harness.stop().await
}
