//! The relay serves at most `max_flow_streams` GetFlows streams at once, over all its
//! clients; one more is refused with `ResourceExhausted` naming the limit, and a slot
//! frees when a stream ends.

mod support;

use std::time::Duration;

use proto::observer::GetFlowsRequest;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_beyond_the_limit_are_refused_until_one_ends() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let agent = TestAgent::start("node1", "127.0.0.1:0".parse()?, Vec::new(), None)?;
    let nodes_file = dir.path().join("nodes.yaml");
    write_nodes_file(&nodes_file, &[(agent.name.clone(), agent.addr.to_string())])?;
    let peer_service = TestPeerService::start(nodes_file, None).await?;
    let mut config = test_relay_config(peer_service.addr);
    config.max_flow_streams = 2;
    let relay = relay::Relay::start(config).await?;
    let follow = GetFlowsRequest {
        follow: true,
        ..Default::default()
    };
    // Two clients (two connections): the bound is the server's, not a connection's.
    let mut first = observer_client(relay.local_addr()).await?;
    let mut second = observer_client(relay.local_addr()).await?;
    let a = first.get_flows(follow.clone()).await?;
    let _b = second.get_flows(follow.clone()).await?;
    let refused = second
        .get_flows(follow.clone())
        .await
        .expect_err("a third stream is refused");
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
    assert_eq!(
        refused.message(),
        "too many concurrent flow streams: limit MAX_CONCURRENT_FLOW_STREAMS (2) reached"
    );
    drop(a);
    let reopened = eventually(Duration::from_secs(10), || {
        let mut client = first.clone();
        let request = follow.clone();
        async move { client.get_flows(request).await.is_ok() }
    })
    .await;
    assert!(reopened, "a slot frees when a stream ends");
    Ok(())
}
