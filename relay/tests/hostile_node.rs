//! A node that sends what a client cannot decode (a flow whose `uuid` is not UTF-8)
//! next to a healthy node: the relay reports the bad node as NODE_ERROR and ends its
//! stream, and the healthy node's flows keep coming to a following client.

mod support;

use std::time::Duration;

use prost::Message;
use proto::flow::Flow;
use proto::observer::get_flows_response::ResponseTypes;
use proto::observer::{GetFlowsRequest, GetFlowsResponse};
use proto::relay::NodeState;
use support::*;

/// A flow response of `node` whose uuid is `uuid`, encoded, with the uuid's bytes
/// replaced by `bytes` (same length).
fn encoded_with_uuid_bytes(node: &str, time: i128, bytes: &[u8]) -> anyhow::Result<Vec<u8>> {
    let placeholder = "U".repeat(bytes.len());
    let response = GetFlowsResponse {
        node_name: node.to_owned(),
        time: Some(ts(time)),
        response_types: Some(ResponseTypes::Flow(Flow {
            time: Some(ts(time)),
            uuid: placeholder.clone(),
            node_name: node.to_owned(),
            ..Default::default()
        })),
    };
    let mut encoded = response.encode_to_vec();
    let at = encoded
        .windows(placeholder.len())
        .position(|w| w == placeholder.as_bytes())
        .ok_or_else(|| anyhow::anyhow!("uuid not found in the encoding"))?;
    encoded[at..at + bytes.len()].copy_from_slice(bytes);
    Ok(encoded)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_sending_invalid_utf8_is_refused_and_the_others_keep_flowing() -> anyhow::Result<()>
{
    let dir = tempfile::tempdir()?;
    let healthy = TestAgent::start("node1", "127.0.0.1:0".parse()?, Vec::new(), None)?;
    healthy.generate(Duration::from_millis(50));
    let now = nanos_now();
    let hostile = TestAgent::start_raw(
        "node2",
        "127.0.0.1:0".parse()?,
        vec![
            encoded_with_uuid_bytes("node2", now, b"good")?.into(),
            encoded_with_uuid_bytes("node2", now + 1, &[0xff, 0xfe, 0xfd, 0xfc])?.into(),
        ],
    )?;
    let nodes_file = dir.path().join("nodes.yaml");
    let nodes = [&healthy, &hostile]
        .iter()
        .map(|a| (a.name.clone(), a.addr.to_string()))
        .collect::<Vec<_>>();
    write_nodes_file(&nodes_file, &nodes)?;
    let peer_service = TestPeerService::start(nodes_file, None).await?;
    let relay = relay::Relay::start(test_relay_config(peer_service.addr)).await?;
    let connected = eventually(Duration::from_secs(10), || async {
        relay.pool().status().available_peers == 2
    })
    .await;
    anyhow::ensure!(connected, "the relay did not connect to both nodes");

    let mut client = observer_client(relay.local_addr()).await?;
    let mut stream = client
        .get_flows(GetFlowsRequest {
            follow: true,
            ..Default::default()
        })
        .await?
        .into_inner();
    let mut error = None;
    let mut healthy_after_error = 0;
    let mut valid_from_hostile = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while healthy_after_error < 10 {
        let next = tokio::time::timeout_at(deadline, stream.message())
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "timed out: error {error:?}, {healthy_after_error} healthy flows after it"
                )
            })?;
        // On a relay that forwards the bad bytes, this is where the client's stream ends
        // (`Internal: ... not UTF-8`).
        let Some(response) = next? else {
            anyhow::bail!("the stream ended; error {error:?}");
        };
        match response.response_types {
            Some(ResponseTypes::NodeStatus(event))
                if event.state_change() == NodeState::NodeError =>
            {
                error = Some((event.node_names, event.message));
            }
            Some(ResponseTypes::Flow(_)) if response.node_name == "node2" => {
                valid_from_hostile += 1
            }
            Some(ResponseTypes::Flow(_)) if error.is_some() => healthy_after_error += 1,
            _ => {}
        }
    }
    let (names, message) = error.expect("loop ends only after the error");
    assert_eq!(names, ["node2"]);
    assert!(
        message.starts_with("node2 sent an invalid response: ") && message.contains("uuid"),
        "{message}"
    );
    assert_eq!(
        valid_from_hostile, 1,
        "the valid flow before the bad one arrives"
    );

    let metrics_addr = relay.metrics_addr().expect("metrics listener");
    let exposition = http_get(metrics_addr, "/metrics").await?;
    assert!(
        exposition.contains("hubble_relay_invalid_responses_total 1\n"),
        "{exposition}"
    );
    Ok(())
}
