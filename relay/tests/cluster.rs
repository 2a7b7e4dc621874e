//! The relay in front of three in-process agents, found through a peer service that
//! watches a nodes file.

mod support;

use std::time::Duration;

use proto::observer::get_flows_response::ResponseTypes;
use proto::observer::{
    GetFlowsRequest, GetFlowsResponse, GetNamespacesRequest, GetNodesRequest, ServerStatusRequest,
};
use proto::relay::NodeState;
use support::*;

const BASE: i128 = 1_700_000_000_000_000_000;

struct Cluster {
    agents: Vec<TestAgent>,
    peer_service: TestPeerService,
    relay: relay::Relay,
    _dir: tempfile::TempDir,
}

impl Cluster {
    /// Three agents with ten recorded flows each, timestamps interleaved across nodes.
    async fn start() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let mut agents = Vec::new();
        for index in 0..3i128 {
            let name = format!("node{}", index + 1);
            let history = (0..10)
                .map(|k| {
                    flow_response(
                        &name,
                        BASE + (k * 3 + index) * 1_000_000,
                        &format!("ns-{index}"),
                    )
                })
                .collect();
            agents.push(TestAgent::start(
                &name,
                "127.0.0.1:0".parse()?,
                history,
                None,
            )?);
        }
        let nodes_file = dir.path().join("nodes.yaml");
        write_nodes_file(&nodes_file, &nodes_of(&agents))?;
        let peer_service = TestPeerService::start(nodes_file, None).await?;
        let relay = relay::Relay::start(test_relay_config(peer_service.addr)).await?;
        let cluster = Self {
            agents,
            peer_service,
            relay,
            _dir: dir,
        };
        let connected = eventually(Duration::from_secs(10), || async {
            cluster.relay.pool().status().available_peers == 3
        })
        .await;
        anyhow::ensure!(connected, "the relay did not connect to the three agents");
        Ok(cluster)
    }
}

fn nodes_of(agents: &[TestAgent]) -> Vec<(String, String)> {
    agents
        .iter()
        .map(|a| (a.name.clone(), a.addr.to_string()))
        .collect()
}

fn node_status(response: &GetFlowsResponse) -> Option<(NodeState, Vec<String>, String)> {
    match &response.response_types {
        Some(ResponseTypes::NodeStatus(event)) => Some((
            event.state_change(),
            event.node_names.clone(),
            event.message.clone(),
        )),
        _ => None,
    }
}

async fn collect_all(
    client: &mut proto::observer::observer_client::ObserverClient<tonic::transport::Channel>,
    request: GetFlowsRequest,
) -> anyhow::Result<Vec<GetFlowsResponse>> {
    let mut stream = client.get_flows(request).await?.into_inner();
    let mut responses = Vec::new();
    while let Some(response) = stream.message().await? {
        responses.push(response);
    }
    Ok(responses)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_is_merged_in_time_order_after_node_connected() -> anyhow::Result<()> {
    let cluster = Cluster::start().await?;
    let mut client = observer_client(cluster.relay.local_addr()).await?;

    let responses = collect_all(&mut client, GetFlowsRequest::default()).await?;
    let (state, mut names, _) = node_status(&responses[0]).expect("a node status event first");
    names.sort();
    assert_eq!(state, NodeState::NodeConnected);
    assert_eq!(names, ["node1", "node2", "node3"]);
    let flows: Vec<&GetFlowsResponse> = responses[1..].iter().collect();
    assert_eq!(flows.len(), 30);
    for (position, response) in flows.iter().enumerate() {
        let expected_node = format!("node{}", position % 3 + 1);
        assert_eq!(response.node_name, expected_node, "flow {position}");
        let time = response.time.as_ref().map(ts_nanos);
        assert_eq!(
            time,
            Some(BASE + position as i128 * 1_000_000),
            "flow {position}"
        );
    }

    // `number` asks each node for its last N; the merged answer holds N per node, as
    // upstream's relay answers.
    let last = collect_all(
        &mut client,
        GetFlowsRequest {
            number: 2,
            ..Default::default()
        },
    )
    .await?;
    let times: Vec<i128> = last[1..]
        .iter()
        .filter_map(|r| r.time.as_ref().map(ts_nanos))
        .collect();
    let expected: Vec<i128> = (24..30).map(|k| BASE + k * 1_000_000).collect();
    assert_eq!(times, expected);

    // The relay's own metrics count what it forwarded (30 + 6 flows) and its peers.
    let metrics_addr = cluster.relay.metrics_addr().expect("metrics listener");
    let exposition = http_get(metrics_addr, "/metrics").await?;
    assert!(
        exposition.contains("hubble_relay_flows_forwarded_total 36\n"),
        "{exposition}"
    );
    assert!(
        exposition.contains("hubble_relay_pool_peer_connection_status{status=\"READY\"} 3\n"),
        "{exposition}"
    );
    assert!(
        exposition.contains("hubble_relay_responses_dropped_total 0\n"),
        "{exposition}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_nodes_namespaces_and_health_are_aggregated() -> anyhow::Result<()> {
    let cluster = Cluster::start().await?;
    let mut client = observer_client(cluster.relay.local_addr()).await?;

    let status = client
        .server_status(ServerStatusRequest {})
        .await?
        .into_inner();
    assert_eq!(status.num_flows, 30);
    assert_eq!(status.max_flows, 3 * AGENT_MAX_FLOWS);
    assert_eq!(status.seen_flows, 30);
    assert!((status.flows_rate - 4.5).abs() < 1e-9);
    assert_eq!(status.num_connected_nodes.map(|v| v.value), Some(3));
    assert_eq!(status.num_unavailable_nodes.map(|v| v.value), Some(0));
    assert!(status.uptime_ns > 0);
    assert_eq!(status.version, relay::RELAY_VERSION);

    let nodes = client
        .get_nodes(GetNodesRequest {})
        .await?
        .into_inner()
        .nodes;
    assert_eq!(nodes.len(), 3);
    for (node, agent) in nodes.iter().zip(&cluster.agents) {
        assert_eq!(node.name, agent.name);
        assert_eq!(node.address, agent.addr.to_string());
        assert_eq!(node.state(), NodeState::NodeConnected);
        assert_eq!(node.version, format!("test-agent-{}", agent.name));
        assert_eq!(node.num_flows, 10);
        let tls = node.tls.clone().expect("tls field");
        assert!(!tls.enabled);
    }

    let namespaces = client
        .get_namespaces(GetNamespacesRequest {})
        .await?
        .into_inner();
    let names: Vec<&str> = namespaces
        .namespaces
        .iter()
        .map(|n| n.namespace.as_str())
        .collect();
    assert_eq!(names, ["ns-0", "ns-1", "ns-2"]);

    let channel =
        tonic::transport::Channel::from_shared(format!("http://{}", cluster.relay.local_addr()))?
            .connect()
            .await?;
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    for service in ["", relay::OBSERVER_HEALTH_SERVICE_NAME] {
        let serving = eventually(Duration::from_secs(5), || {
            let mut health = health.clone();
            async move {
                let request = tonic_health::pb::HealthCheckRequest {
                    service: service.into(),
                };
                health
                    .check(request)
                    .await
                    .is_ok_and(|r| r.into_inner().status == 1)
            }
        })
        .await;
        assert!(serving, "health of {service:?} is SERVING");
    }
    let unknown = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "nope".into(),
        })
        .await
        .expect_err("unknown service");
    assert_eq!(unknown.code(), tonic::Code::NotFound);
    drop(cluster.peer_service);
    Ok(())
}

/// Reads the follow stream in the background, keeping everything it receives.
fn follow(
    mut client: proto::observer::observer_client::ObserverClient<tonic::transport::Channel>,
) -> (
    std::sync::Arc<std::sync::Mutex<Vec<GetFlowsResponse>>>,
    tokio::task::JoinHandle<()>,
) {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = seen.clone();
    let task = tokio::spawn(async move {
        let request = GetFlowsRequest {
            follow: true,
            number: 1,
            ..Default::default()
        };
        let Ok(response) = client.get_flows(request).await else {
            return;
        };
        let mut stream = response.into_inner();
        while let Ok(Some(response)) = stream.message().await {
            sink.lock().expect("lock").push(response);
        }
    });
    (seen, task)
}

fn flows_from(seen: &std::sync::Mutex<Vec<GetFlowsResponse>>, node: &str, after: usize) -> usize {
    flows_from_list(&seen.lock().expect("lock")[after..], node)
}

fn flows_from_list(seen: &[GetFlowsResponse], node: &str) -> usize {
    seen.iter()
        .filter(|r| r.node_name == node && matches!(r.response_types, Some(ResponseTypes::Flow(_))))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follow_survives_a_node_dying_and_coming_back() -> anyhow::Result<()> {
    let mut cluster = Cluster::start().await?;
    for agent in &cluster.agents {
        agent.generate(Duration::from_millis(20));
    }
    let client = observer_client(cluster.relay.local_addr()).await?;
    let (seen, task) = follow(client.clone());
    assert!(
        eventually(Duration::from_secs(5), || async {
            (1..=3).all(|n| flows_from(&seen, &format!("node{n}"), 0) > 5)
        })
        .await,
        "flows from every node"
    );

    let addr = cluster.agents[1].addr;
    cluster.agents[1].kill();
    let error_seen = eventually(Duration::from_secs(5), || async {
        seen.lock()
            .expect("lock")
            .iter()
            .filter_map(node_status)
            .any(|(state, names, _)| state == NodeState::NodeError && names == ["node2"])
    })
    .await;
    assert!(error_seen, "NODE_ERROR for node2");
    let message = seen
        .lock()
        .expect("lock")
        .iter()
        .filter_map(node_status)
        .find(|s| s.0 == NodeState::NodeError)
        .map(|s| s.2);
    println!("NODE_ERROR message: {message:?}");
    let message = message.unwrap_or_default();
    assert!(
        message.starts_with("connection to node2 lost: ")
            || message.starts_with("cannot reach node2: "),
        "the node error says what happened in plain words: {message:?}"
    );
    assert!(
        !message.contains("h2 protocol error") && !message.contains("transport error"),
        "no transport jargon: {message:?}"
    );

    let mark = seen.lock().expect("lock").len();
    let mut status_client = client.clone();
    let status = status_client
        .server_status(ServerStatusRequest {})
        .await?
        .into_inner();
    assert_eq!(status.num_unavailable_nodes.map(|v| v.value), Some(1));
    assert_eq!(status.unavailable_nodes, ["node2"]);
    assert_eq!(status.num_connected_nodes.map(|v| v.value), Some(2));
    assert!(
        eventually(Duration::from_secs(2), || async {
            flows_from(&seen, "node1", mark) > 5 && flows_from(&seen, "node3", mark) > 5
        })
        .await,
        "the stream goes on with the other nodes"
    );

    // The same node comes back on the same port: its flows return without a relay restart.
    let revived = TestAgent::start("node2", addr, Vec::new(), None)?;
    revived.generate(Duration::from_millis(20));
    cluster.agents[1] = revived;
    let mark = seen.lock().expect("lock").len();
    let back = eventually(Duration::from_secs(10), || async {
        flows_from(&seen, "node2", mark) > 5
    })
    .await;
    assert!(back, "node2's flows come back");
    assert!(!task.is_finished(), "the follow is still running");
    task.abort();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_added_to_the_file_joins_a_running_follow() -> anyhow::Result<()> {
    let mut cluster = Cluster::start().await?;
    for agent in &cluster.agents {
        agent.generate(Duration::from_millis(50));
    }
    let client = observer_client(cluster.relay.local_addr()).await?;
    let (seen, task) = follow(client);
    assert!(
        eventually(Duration::from_secs(5), || async {
            flows_from(&seen, "node1", 0) > 0
        })
        .await
    );

    let fourth = TestAgent::start("node4", "127.0.0.1:0".parse()?, Vec::new(), None)?;
    fourth.generate(Duration::from_millis(20));
    cluster.agents.push(fourth);
    let started = std::time::Instant::now();
    write_nodes_file(&cluster.peer_service.nodes_file, &nodes_of(&cluster.agents))?;
    let joined = eventually(Duration::from_secs(5), || async {
        flows_from(&seen, "node4", 0) > 0
    })
    .await;
    let elapsed = started.elapsed();
    println!("node4 appeared in the follow after {elapsed:?}");
    assert!(joined, "node4 did not show up in the follow within 5 s");
    let announced = seen
        .lock()
        .expect("lock")
        .iter()
        .filter_map(node_status)
        .any(|(state, names, _)| state == NodeState::NodeConnected && names == ["node4"]);
    assert!(announced, "NODE_CONNECTED for node4");
    task.abort();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_that_fall_behind_get_lost_events_for_every_dropped_flow() -> anyhow::Result<()> {
    let cluster = Cluster::start().await?;
    let mut stalled = observer_client(cluster.relay.local_addr()).await?;
    let request = GetFlowsRequest {
        follow: true,
        ..Default::default()
    };
    let mut stalled_stream = stalled.get_flows(request).await?.into_inner();
    let (seen, task) = follow(observer_client(cluster.relay.local_addr()).await?);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let total = 20_000;
    for batch in 0..100 {
        for k in 0..200 {
            let time = nanos_now() + (batch * 200 + k) as i128;
            cluster.agents[0].emit(flow_response("node1", time, "default"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The reading follower receives everything unless the machine cannot keep up, in
    // which case what it missed is reported too.
    let accounted = || {
        let seen = seen.lock().expect("lock");
        let lost: u64 = seen
            .iter()
            .filter_map(|r| match &r.response_types {
                Some(ResponseTypes::LostEvents(event)) => Some(event.num_events_lost),
                _ => None,
            })
            .sum();
        (flows_from_list(&seen, "node1"), lost)
    };
    let complete = eventually(Duration::from_secs(10), || async {
        let (flows, lost) = accounted();
        flows as u64 + lost >= total as u64
    })
    .await;
    let (reader_flows, reader_lost) = accounted();
    println!("reading follower: {reader_flows} flows, {reader_lost} reported lost");
    assert!(
        complete,
        "every flow reached the reading follower or was reported lost"
    );

    let mut lost = 0;
    let mut flows = 0;
    while let Ok(Ok(Some(response))) =
        tokio::time::timeout(Duration::from_millis(500), stalled_stream.message()).await
    {
        match response.response_types {
            Some(ResponseTypes::LostEvents(event)) => {
                assert_eq!(
                    event.source(),
                    proto::flow::LostEventSource::ObserverEventsQueue
                );
                assert_eq!(response.node_name, "node1");
                lost += event.num_events_lost;
            }
            Some(ResponseTypes::Flow(_)) if response.node_name == "node1" => flows += 1,
            _ => {}
        }
    }
    println!("stalled follower: {flows} flows, {lost} reported lost");
    // Whether the stalled follower loses anything depends on how fast the nodes produce
    // compared with the transport's buffers (on a slow machine everything may fit), so
    // the invariant checked is that nothing is lost silently.
    // Without `number`, a follow starts with the node's whole history: 10 recorded flows.
    assert_eq!(
        flows + lost,
        total as u64 + 10,
        "every flow is either delivered or counted as lost"
    );
    assert_eq!(
        cluster.relay.metrics().responses_dropped_total(),
        lost + reader_lost
    );
    task.abort();
    Ok(())
}

/// Histories far larger than the sort buffer, with nodes of different sizes and a node
/// whose flows are all older than the others': the answer is still exactly in time
/// order and complete, because a node running ahead waits for the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_histories_merge_in_exact_order() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let sizes = [3_000i128, 1_000, 2_000];
    let mut agents = Vec::new();
    for (index, &size) in sizes.iter().enumerate() {
        let name = format!("node{}", index + 1);
        let index = index as i128;
        let history = (0..size)
            .map(|k| {
                // node3's flows come first in time, then the others interleave.
                let time = if index == 2 {
                    BASE + k
                } else {
                    BASE + 1_000_000 + (k * 2 + index) * 1_000
                };
                flow_response(&name, time, "default")
            })
            .collect();
        agents.push(TestAgent::start(
            &name,
            "127.0.0.1:0".parse()?,
            history,
            None,
        )?);
    }
    let nodes_file = dir.path().join("nodes.yaml");
    write_nodes_file(&nodes_file, &nodes_of(&agents))?;
    let peer_service = TestPeerService::start(nodes_file, None).await?;
    let relay = relay::Relay::start(test_relay_config(peer_service.addr)).await?;
    let connected = eventually(Duration::from_secs(10), || async {
        relay.pool().status().available_peers == 3
    })
    .await;
    anyhow::ensure!(connected, "the relay did not connect to the three agents");

    let mut client = observer_client(relay.local_addr()).await?;
    let responses = collect_all(&mut client, GetFlowsRequest::default()).await?;
    let times: Vec<i128> = responses
        .iter()
        .filter(|r| matches!(r.response_types, Some(ResponseTypes::Flow(_))))
        .filter_map(|r| r.time.as_ref().map(ts_nanos))
        .collect();
    assert_eq!(times.len(), 6_000);
    let out_of_order = times.windows(2).filter(|w| w[0] > w[1]).count();
    assert_eq!(out_of_order, 0, "responses out of time order");
    drop(peer_service);
    Ok(())
}

/// A request the nodes would refuse is refused by the relay itself, before it fans out:
/// the recorded agents here ignore filters, so a forwarded request would come back with
/// their flows instead of an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_request_is_refused_before_it_reaches_the_nodes() -> anyhow::Result<()> {
    let cluster = Cluster::start().await?;
    let mut client = observer_client(cluster.relay.local_addr()).await?;

    let bad_regex = GetFlowsRequest {
        whitelist: vec![proto::flow::FlowFilter {
            http_path: vec!["(".into()],
            ..Default::default()
        }],
        ..Default::default()
    };
    let error = collect_all(&mut client, bad_regex)
        .await
        .expect_err("an invalid regex is refused");
    let status = error.downcast::<tonic::Status>()?;
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains('('), "{status:?}");

    // The issue's request: 1,000 short regexes that each compile to megabytes.
    let over_budget = GetFlowsRequest {
        whitelist: vec![proto::flow::FlowFilter {
            http_path: (0..1000).map(|n| format!(r"\w{{100}}{n}")).collect(),
            ..Default::default()
        }],
        ..Default::default()
    };
    let error = collect_all(&mut client, over_budget)
        .await
        .expect_err("a request over the regex budget is refused");
    let status = error.downcast::<tonic::Status>()?;
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("MAX_REGEX_BYTES"), "{status:?}");

    // The relay still serves good requests.
    let flows = collect_all(&mut client, GetFlowsRequest::default()).await?;
    assert_eq!(flows.len(), 31);
    Ok(())
}
