//! Relay benchmarks; prints the figures. Run with `cargo bench -p relay --bench relay`.
//!
//! 1. merge core: the sort buffer over 8 nodes' recorded flows, in-process;
//! 2. end to end: 8 in-process agents over loopback gRPC, the relay, one client;
//! 3. added latency in follow mode: a client on the relay versus a client on the agent;
//! 4. memory with 100 concurrent followers (RSS of the whole process);
//! 5. time for a node added to the nodes file to show up in a running follow;
//! 6. cost of checking each node response (decoded and dropped) on top of reading it.

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prost::Message;
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

/// A flow as the demo's nodes record it: both endpoints with labels and workloads, IPs,
/// ports and flags, verdict, observation point, interface and summary (about 600 bytes
/// encoded).
fn demo_response(node: &str, time: i128, k: usize) -> GetFlowsResponse {
    use proto::flow::{
        layer4, CiliumEventType, Endpoint, Flow, Ip, Layer4, NetworkInterface, TcpFlags, Workload,
    };
    let endpoint = |name: &str, id: u32, identity: u32, class: &str, org: &str| Endpoint {
        id,
        identity,
        cluster_name: "default".into(),
        namespace: "default".into(),
        labels: vec![
            format!("k8s:app.kubernetes.io/name={name}"),
            format!("k8s:class={class}"),
            "k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name=default".into(),
            "k8s:io.cilium.k8s.policy.cluster=default".into(),
            "k8s:io.cilium.k8s.policy.serviceaccount=default".into(),
            "k8s:io.kubernetes.pod.namespace=default".into(),
            format!("k8s:org={org}"),
        ],
        pod_name: format!("{name}-7b8d4f5c9-x2k4q"),
        workloads: vec![Workload {
            name: name.into(),
            kind: "Deployment".into(),
        }],
    };
    let flow = Flow {
        time: Some(ts(time)),
        uuid: format!("6f1e2d3c-0000-4000-8000-{k:012}"),
        verdict: 1,
        ip: Some(Ip {
            source: "10.200.1.12".into(),
            destination: "10.200.2.21".into(),
            ip_version: 1,
            ..Default::default()
        }),
        l4: Some(Layer4 {
            protocol: Some(layer4::Protocol::Tcp(proto::flow::Tcp {
                source_port: 30_000 + (k % 30_000) as u32,
                destination_port: 80,
                flags: Some(TcpFlags {
                    syn: true,
                    ..Default::default()
                }),
            })),
        }),
        source: Some(endpoint("xwing", 1204, 258, "xwing", "alliance")),
        destination: Some(endpoint("deathstar", 2931, 256, "deathstar", "empire")),
        r#type: 1,
        node_name: node.into(),
        event_type: Some(CiliumEventType {
            r#type: 4,
            sub_type: 3,
        }),
        traffic_direction: 1,
        trace_observation_point: 3,
        is_reply: Some(pbjson_types::BoolValue { value: false }),
        interface: Some(NetworkInterface {
            index: 17,
            name: "lxc8f3a1c2d".into(),
        }),
        ..Default::default()
    };
    GetFlowsResponse {
        node_name: node.into(),
        time: Some(ts(time)),
        response_types: Some(ResponseTypes::Flow(flow)),
    }
}

/// User and system CPU time of a process, from /proc.
fn cpu_time_of(pid: u32) -> Duration {
    let ticks = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            // Fields after the command name, which is in parentheses.
            let rest = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .collect::<Vec<_>>();
            let utime: u64 = rest.get(11)?.parse().ok()?;
            let stime: u64 = rest.get(12)?.parse().ok()?;
            Some(utime + stime)
        })
        .unwrap_or(0);
    // USER_HZ is 100 on Linux.
    Duration::from_millis(ticks * 10)
}

/// Reads a whole GetFlows answer raw: counts flows and checks their time order.
async fn count_flows_raw(
    addr: std::net::SocketAddr,
    request: GetFlowsRequest,
) -> anyhow::Result<(usize, bool, Duration)> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
        .http2_adaptive_window(true)
        .connect()
        .await?;
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await?;
    let started = Instant::now();
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(relay::flows::GET_FLOWS_PATH);
    let mut stream = grpc
        .server_streaming(
            tonic::Request::new(request),
            path,
            relay::raw::NodeFlowsCodec,
        )
        .await?
        .into_inner();
    let mut flows = 0;
    let mut last = i128::MIN;
    let mut ordered = true;
    while let Some(response) = stream.message().await? {
        let response = response?;
        if response.kind == relay::raw::ResponseKind::Flow {
            flows += 1;
            let time = response.time.unwrap_or_default();
            ordered &= time >= last;
            last = time;
        }
    }
    Ok((flows, ordered, started.elapsed()))
}

/// Starts the real `hubble-relay` on a free loopback port, following `peers`.
async fn relay_process(
    peers: std::net::SocketAddr,
    nodes: usize,
) -> anyhow::Result<(Child, std::net::SocketAddr)> {
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
                &peers.to_string(),
                "--listen-address",
                &listen.to_string(),
            ])
            .env("RUST_LOG", "warn")
            .stderr(std::process::Stdio::null())
            .spawn()?,
    );
    let up = eventually(Duration::from_secs(10), || async {
        match observer_client(listen).await {
            Ok(mut client) => client
                .server_status(proto::observer::ServerStatusRequest {})
                .await
                .is_ok_and(|s| {
                    s.into_inner().num_connected_nodes.map(|v| v.value) == Some(nodes as u32)
                }),
            Err(_) => false,
        }
    })
    .await;
    anyhow::ensure!(up, "hubble-relay did not come up");
    Ok((child, listen))
}

/// 8 agents serve recorded demo flows (pre-encoded, so they cost next to nothing) to the
/// real `hubble-relay` process, which merges them for one client reading raw. Prints the
/// client's rate, the order check and the relay's own CPU time per flow.
async fn end_to_end() -> anyhow::Result<()> {
    let per_node = 250_000;
    let dir = tempfile::tempdir()?;
    let base = nanos_now() - 3_600_000_000_000;
    let mut agents = Vec::new();
    for node in 0..NODES {
        let name = format!("node{node}");
        let history: Vec<GetFlowsResponse> = (0..per_node)
            .map(|k| demo_response(&name, base + (k * NODES + node) as i128 * 1_000, k))
            .collect();
        agents.push(TestAgent::start_recorded(
            &name,
            "127.0.0.1:0".parse()?,
            history,
        )?);
    }
    let size = demo_response("node0", base, 0).encoded_len();
    let nodes_file = dir.path().join("nodes.yaml");
    let nodes: Vec<(String, String)> = agents
        .iter()
        .map(|a| (a.name.clone(), a.addr.to_string()))
        .collect();
    write_nodes_file(&nodes_file, &nodes)?;
    let peers = TestPeerService::start(nodes_file, None).await?;
    let (direct, _, direct_time) =
        count_flows_raw(agents[0].addr, GetFlowsRequest::default()).await?;
    println!(
        "one recorded agent read directly: {direct} flows of {size} bytes in {direct_time:.2?}: {:.2} M flows/s",
        direct as f64 / direct_time.as_secs_f64() / 1e6
    );
    let (relay, listen) = relay_process(peers.addr, NODES).await?;
    for round in 1..=3 {
        let cpu_before = cpu_time_of(relay.0.id());
        let (flows, ordered, elapsed) = count_flows_raw(listen, GetFlowsRequest::default()).await?;
        let cpu = cpu_time_of(relay.0.id()).saturating_sub(cpu_before);
        println!(
            "relay merge, {NODES} nodes -> hubble-relay -> client over loopback gRPC (run {round}): {flows} flows in {elapsed:.2?}: {:.2} M flows/s, time-ordered: {ordered}; relay CPU {cpu:.2?} = {:.0} ns/flow ({:.2} M flows per relay CPU-second)",
            flows as f64 / elapsed.as_secs_f64() / 1e6,
            cpu.as_nanos() as f64 / flows.max(1) as f64,
            flows as f64 / cpu.as_secs_f64().max(1e-9) / 1e6,
        );
    }
    drop(relay);
    drop(peers);
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
    tests::memory_kib(&pid.to_string(), "VmRSS").unwrap_or(0)
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
    let (child, listen) = relay_process(bench.peers.addr, NODES).await?;
    let pid = child.0.id();
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

/// What checking a node response ([`relay::raw::RawResponse::parse_checked`]: a full
/// decode, dropped) adds to reading the merge fields ([`relay::raw::RawResponse::parse`]),
/// per demo response.
fn response_check() -> anyhow::Result<()> {
    let demo: Vec<bytes::Bytes> = (0..1024)
        .map(|k| {
            demo_response("node1", 1_700_000_000_000_000_000 + k as i128, k)
                .encode_to_vec()
                .into()
        })
        .collect();
    response_check_of("demo", &demo)?;
    // The corpus mix (L7 HTTP, DNS, cluster labels, trace contexts), as real captures
    // have it.
    let corpus: Vec<bytes::Bytes> = (0..1024)
        .map(|k| {
            let flow = observer::sample::corpus_flow(k);
            GetFlowsResponse {
                node_name: "node1".into(),
                time: flow.time,
                response_types: Some(ResponseTypes::Flow(flow)),
            }
            .encode_to_vec()
            .into()
        })
        .collect();
    response_check_of("corpus", &corpus)
}

/// [`response_check`] over the responses `encoded` of a mix.
fn response_check_of(mix: &str, encoded: &[bytes::Bytes]) -> anyhow::Result<()> {
    let rounds = 500;
    let time = |check: bool| -> anyhow::Result<f64> {
        let started = Instant::now();
        for _ in 0..rounds {
            for bytes in encoded {
                let response = if check {
                    relay::raw::RawResponse::parse_checked(bytes.clone())?
                } else {
                    relay::raw::RawResponse::parse(bytes.clone())?
                };
                std::hint::black_box(response);
            }
        }
        Ok(started.elapsed().as_nanos() as f64 / (rounds * encoded.len()) as f64)
    };
    let parse = time(false)?;
    let checked = time(true)?;
    let average = encoded.iter().map(|b| b.len()).sum::<usize>() / encoded.len().max(1);
    println!(
        "node response, {mix} mix ({average} bytes on average): read {parse:.0} ns, read and checked {checked:.0} ns ({:.2} M checked responses/s on one core)",
        1e3 / checked
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    if std::env::args().any(|a| a == "response_check") {
        return response_check();
    }
    response_check()?;
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
