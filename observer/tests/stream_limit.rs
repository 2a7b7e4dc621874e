//! The observer server serves at most its limit of event streams (GetFlows,
//! GetAgentEvents, GetDebugEvents together) at once, over all connections; one more is
//! refused with `ResourceExhausted` naming the limit, and a slot frees when a stream
//! ends.

use std::time::Duration;

use observer::service::limit::StreamLimit;
use observer::{LocalObserver, ObserverConfig, ObserverService};
use proto::observer::observer_client::ObserverClient;
use proto::observer::{GetAgentEventsRequest, GetFlowsRequest};
use tokio_stream::wrappers::TcpListenerStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_beyond_the_limit_are_refused_until_one_ends() -> anyhow::Result<()> {
    let (observer, _ingest) = LocalObserver::new(ObserverConfig::default())?;
    let limit = StreamLimit::new(2);
    let service = ObserverService::with_stream_limit(observer, limit.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service.into_server())
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    let follow = GetFlowsRequest {
        follow: true,
        ..Default::default()
    };
    let mut first = ObserverClient::connect(format!("http://{address}")).await?;
    let mut second = ObserverClient::connect(format!("http://{address}")).await?;
    let flows = first.get_flows(follow.clone()).await?;
    let _events = second
        .get_agent_events(GetAgentEventsRequest {
            follow: true,
            ..Default::default()
        })
        .await?;
    let refused = second
        .get_flows(follow.clone())
        .await
        .expect_err("a third stream is refused");
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
    assert_eq!(
        refused.message(),
        "too many concurrent flow streams: limit MAX_CONCURRENT_FLOW_STREAMS (2) reached"
    );
    drop(flows);
    let mut freed = false;
    for _ in 0..200 {
        if limit.in_use() < 2 {
            freed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(freed, "a slot frees when a stream ends");
    first.get_flows(follow).await?;
    server.abort();
    Ok(())
}
