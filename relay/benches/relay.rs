//! Relay benchmarks; prints the figures. Run with `cargo bench -p relay --bench relay`.
//!
//! 1. merge core: the sort buffer over 8 nodes' recorded flows, in-process;
//! 2. end to end: 8 in-process agents over loopback gRPC, the relay, one client;
//! 3. added latency in follow mode: a client on the relay versus a client on the agent;
//! 4. memory with 100 concurrent followers (RSS of the whole process);
//! 5. time for a node added to the nodes file to show up in a running follow.

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use proto::observer::get_flows_response::ResponseTypes;
use proto::observer::{GetFlowsRequest, GetFlowsResponse};
use relay::merge::SortBuffer;
use support::*;

const NODES: usize = 8;

fn merge_core() {
    let total = 4_000_000usize;
    let base = 1_700_000_000_000_000_000i128;
    // Boxed responses, as the relay's queues carry them, recycled from the output back to
    // the input so that memory stays flat; the key travels next to each response.
    let mut spare: std::collections::VecDeque<(i128, Box<GetFlowsResponse>)> = (0..4096)
        .map(|k| {
            (
                0,
                Box::new(flow_response(
                    &format!("node{}", k % NODES),
                    base,
                    "default",
                )),
            )
        })
        .collect();
    // Each node's stream is in time order; nodes take turns in bursts of 8, so that one
    // round (64 flows) fits the 100-flow buffer, as the ordering guarantee requires.
    let burst = 8;
    let mut next_per_node = [0i128; NODES];
    let mut buffer = SortBuffer::new(100, Duration::from_secs(1));
    let mut released = 0usize;
    let mut last = i128::MIN;
    let mut ordered = true;
    let now = Instant::now();
    let started = Instant::now();
    let mut pushed = 0;
    while pushed < total {
        for (node, next) in next_per_node.iter_mut().enumerate() {
            for _ in 0..burst {
                let time = base + (*next * NODES as i128 + node as i128) * 1_000;
                *next += 1;
                let Some((_, response)) = spare.pop_front() else {
                    return;
                };
                pushed += 1;
                if let Some((key, response)) = buffer.push(time, (time, response), now) {
                    ordered &= key >= last;
                    last = key;
                    released += 1;
                    spare.push_back((key, response));
                }
            }
        }
    }
    let mut rest = Vec::new();
    buffer.drain_all(&mut rest);
    for (key, _) in &rest {
        ordered &= *key >= last;
        last = *key;
    }
    released += rest.len();
    let elapsed = started.elapsed();
    println!(
        "merge core (sort buffer 100, {NODES} nodes, {released} boxed responses): {:.2} M flows/s, ordered: {ordered}",
        released as f64 / elapsed.as_secs_f64() / 1e6
    );
}

struct Bench {
    agents: Vec<TestAgent>,
    peers: TestPeerService,
    relay: relay::Relay,
    _dir: tempfile::TempDir,
}

async fn cluster(
    per_node: usize,
    config: impl FnOnce(&mut relay::RelayConfig),
) -> anyhow::Result<Bench> {
    let dir = tempfile::tempdir()?;
    let base = nanos_now() - 3_600_000_000_000;
    let mut agents = Vec::new();
    for node in 0..NODES {
        let name = format!("node{node}");
        let history = (0..per_node)
            .map(|k| flow_response(&name, base + (k * NODES + node) as i128 * 1_000, "default"))
            .collect();
        agents.push(TestAgent::start(
            &name,
            "127.0.0.1:0".parse()?,
            history,
            None,
        )?);
    }
    let nodes_file = dir.path().join("nodes.yaml");
    let nodes: Vec<(String, String)> = agents
        .iter()
        .map(|a| (a.name.clone(), a.addr.to_string()))
        .collect();
    write_nodes_file(&nodes_file, &nodes)?;
    let peers = TestPeerService::start(nodes_file, None).await?;
    let mut relay_config = test_relay_config(peers.addr);
    relay_config.sort_buffer_drain_timeout = Duration::from_secs(1);
    config(&mut relay_config);
    let relay = relay::Relay::start(relay_config).await?;
    let ready = eventually(Duration::from_secs(10), || async {
        relay.pool().status().available_peers == NODES
    })
    .await;
    anyhow::ensure!(ready, "relay did not connect to every agent");
    Ok(Bench {
        agents,
        peers,
        relay,
        _dir: dir,
    })
}

async fn count_flows(
    addr: std::net::SocketAddr,
    request: GetFlowsRequest,
) -> anyhow::Result<(usize, Duration)> {
    let mut client = observer_client(addr).await?;
    let started = Instant::now();
    let mut stream = client.get_flows(request).await?.into_inner();
    let mut flows = 0;
    while let Some(response) = stream.message().await? {
        flows += usize::from(matches!(
            response.response_types,
            Some(ResponseTypes::Flow(_))
        ));
    }
    Ok((flows, started.elapsed()))
}

async fn end_to_end() -> anyhow::Result<()> {
    let per_node = 50_000;
    let bench = cluster(per_node, |_| {}).await?;
    let (direct, direct_time) =
        count_flows(bench.agents[0].addr, GetFlowsRequest::default()).await?;
    println!(
        "one agent direct over loopback gRPC: {direct} flows in {direct_time:.2?}: {:.2} M flows/s",
        direct as f64 / direct_time.as_secs_f64() / 1e6
    );
    let (flows, elapsed) =
        count_flows(bench.relay.local_addr(), GetFlowsRequest::default()).await?;
    println!(
        "end to end, {NODES} agents -> relay -> client over loopback gRPC: {flows} flows in {elapsed:.2?}: {:.2} M flows/s",
        flows as f64 / elapsed.as_secs_f64() / 1e6
    );
    drop(bench.peers);
    Ok(())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

async fn follow_latencies(
    addr: std::net::SocketAddr,
    node: &str,
    samples: Arc<Mutex<Vec<f64>>>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let mut client = observer_client(addr).await?;
    let node = node.to_owned();
    let mut stream = client
        .get_flows(GetFlowsRequest {
            follow: true,
            ..Default::default()
        })
        .await?
        .into_inner();
    Ok(tokio::spawn(async move {
        while let Ok(Some(response)) = stream.message().await {
            if response.node_name != node {
                continue;
            }
            if let Some(ResponseTypes::Flow(flow)) = &response.response_types {
                if let Some(time) = &flow.time {
                    let delay = (nanos_now() - ts_nanos(time)) as f64 / 1e6;
                    samples.lock().expect("samples").push(delay);
                }
            }
        }
    }))
}

async fn added_latency() -> anyhow::Result<()> {
    for (label, drain) in [
        ("defaults (buffer 100, drain 1s)", Duration::from_secs(1)),
        ("drain 100ms", Duration::from_millis(100)),
    ] {
        let bench = cluster(0, |c| c.sort_buffer_drain_timeout = drain).await?;
        let direct = Arc::new(Mutex::new(Vec::new()));
        let relayed = Arc::new(Mutex::new(Vec::new()));
        let a = follow_latencies(bench.agents[0].addr, "node0", direct.clone()).await?;
        let b = follow_latencies(bench.relay.local_addr(), "node0", relayed.clone()).await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        for agent in &bench.agents {
            agent.generate(Duration::from_millis(5));
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
        a.abort();
        b.abort();
        let mut d = direct.lock().expect("samples").clone();
        let mut r = relayed.lock().expect("samples").clone();
        d.sort_by(f64::total_cmp);
        r.sort_by(f64::total_cmp);
        println!(
            "follow latency, {label}, {NODES} agents x 200 flows/s: direct p50 {:.2} ms p99 {:.2} ms ({} flows); via relay p50 {:.2} ms p99 {:.2} ms ({} flows)",
            percentile(&d, 0.5), percentile(&d, 0.99), d.len(),
            percentile(&r, 0.5), percentile(&r, 0.99), r.len()
        );
    }
    Ok(())
}

fn rss_kib_of(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Kills the child relay when dropped.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn followers_memory() -> anyhow::Result<()> {
    // The relay runs as its own process (the real binary) so that its RSS is its own.
    let bench = cluster(1_000, |_| {}).await?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let listen: std::net::SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let child = Child(
        std::process::Command::new(env!("CARGO_BIN_EXE_hubble-relay"))
            .args([
                "serve",
                "--disable-client-tls",
                "--disable-server-tls",
                "--health-listen-address",
                "",
            ])
            .args([
                "--peer-service",
                &bench.peers.addr.to_string(),
                "--listen-address",
                &listen.to_string(),
            ])
            .env("RUST_LOG", "warn")
            .stderr(std::process::Stdio::null())
            .spawn()?,
    );
    let pid = child.0.id();
    let up = eventually(Duration::from_secs(10), || async {
        match observer_client(listen).await {
            Ok(mut client) => client
                .server_status(proto::observer::ServerStatusRequest {})
                .await
                .is_ok_and(|s| {
                    s.into_inner().num_connected_nodes.map(|v| v.value) == Some(NODES as u32)
                }),
            Err(_) => false,
        }
    })
    .await;
    anyhow::ensure!(up, "hubble-relay did not come up");
    for agent in &bench.agents {
        agent.generate(Duration::from_millis(20));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = rss_kib_of(pid);
    let received = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut tasks = Vec::new();
    for index in 0..100 {
        let mut client = observer_client(listen).await?;
        let received = received.clone();
        // Every tenth follower reads slowly, to show that it does not hold the others back.
        let slow = index % 10 == 0;
        tasks.push(tokio::spawn(async move {
            let request = GetFlowsRequest {
                follow: true,
                number: 100,
                ..Default::default()
            };
            let Ok(response) = client.get_flows(request).await else {
                return;
            };
            let mut stream = response.into_inner();
            while let Ok(Some(_)) = stream.message().await {
                received.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if slow {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }));
    }
    let mut peak = 0;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        peak = peak.max(rss_kib_of(pid));
    }
    let after = rss_kib_of(pid);
    println!(
        "hubble-relay RSS with 100 concurrent followers (10 slow) on {NODES} agents x 50 flows/s: idle {} MiB, with followers {} MiB (peak {} MiB), {} responses received in 5 s",
        idle / 1024,
        after / 1024,
        peak / 1024,
        received.load(std::sync::atomic::Ordering::Relaxed),
    );
    for task in tasks {
        task.abort();
    }
    drop(child);
    Ok(())
}

async fn node_join_time() -> anyhow::Result<()> {
    let mut bench = cluster(0, |_| {}).await?;
    let mut client = observer_client(bench.relay.local_addr()).await?;
    let mut stream = client
        .get_flows(GetFlowsRequest {
            follow: true,
            ..Default::default()
        })
        .await?
        .into_inner();
    let mut times = Vec::new();
    for round in 0..3 {
        let name = format!("extra{round}");
        let agent = TestAgent::start(&name, "127.0.0.1:0".parse()?, Vec::new(), None)?;
        agent.generate(Duration::from_millis(5));
        bench.agents.push(agent);
        let nodes: Vec<(String, String)> = bench
            .agents
            .iter()
            .map(|a| (a.name.clone(), a.addr.to_string()))
            .collect();
        let started = Instant::now();
        write_nodes_file(&bench.peers.nodes_file, &nodes)?;
        loop {
            let response =
                tokio::time::timeout(Duration::from_secs(10), stream.message()).await??;
            let Some(response) = response else {
                anyhow::bail!("follow ended")
            };
            if response.node_name == name
                && matches!(response.response_types, Some(ResponseTypes::Flow(_)))
            {
                break;
            }
        }
        times.push(started.elapsed());
    }
    println!("new node in a running follow (nodes file written -> first flow, sort drain 1s): {times:.2?}");
    Ok(())
}

fn main() -> anyhow::Result<()> {
    merge_core();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        end_to_end().await?;
        added_latency().await?;
        followers_memory().await?;
        node_join_time().await
    })
}
