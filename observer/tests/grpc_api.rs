//! Request validation, field masks, status, namespaces, events, health and
//! reflection, over a real server.

mod common;

use common::{collect, flows_of, Harness, NODE};
use observer::sample;
use proto::flow::{AgentEvent, AgentEventType, Endpoint, FlowFilter};
use proto::observer::{
    GetAgentEventsRequest, GetFlowsRequest, GetNamespacesRequest, GetNodesRequest, Namespace,
    ServerStatusRequest,
};
use tonic::Code;

#[tokio::test]
async fn bad_requests_are_rejected_with_the_bad_value() -> anyhow::Result<()> {
    let h = Harness::start(4095).await?;
    h.push((0..5).map(sample::flow)).await?;
    for (name, mut client) in h.clients().await? {
        let req = GetFlowsRequest {
            first: true,
            follow: true,
            ..Default::default()
        };
        let err = client.get_flows(req).await.expect_err("first+follow");
        assert_eq!(err.code(), Code::InvalidArgument, "{name}");
        assert!(
            err.message()
                .contains("first cannot be specified with follow"),
            "{name}"
        );

        let bad = FlowFilter {
            source_ip: vec!["not-an-ip".into()],
            ..Default::default()
        };
        let req = GetFlowsRequest {
            whitelist: vec![bad],
            ..Default::default()
        };
        let err = client.get_flows(req).await.expect_err("bad filter");
        assert_eq!(err.code(), Code::InvalidArgument, "{name}");
        assert!(
            err.message().contains("not-an-ip"),
            "{name}: {}",
            err.message()
        );

        let bad = FlowFilter {
            destination_port: vec!["99999".into()],
            ..Default::default()
        };
        let req = GetFlowsRequest {
            blacklist: vec![bad],
            ..Default::default()
        };
        let err = client
            .get_flows(req)
            .await
            .expect_err("bad port in denylist");
        assert!(err.message().contains("99999"), "{name}: {}", err.message());

        let req = GetFlowsRequest {
            field_mask: Some(pbjson_types::FieldMask {
                paths: vec!["source.bogus".into()],
            }),
            ..Default::default()
        };
        let err = client.get_flows(req).await.expect_err("bad mask");
        assert_eq!(err.code(), Code::InvalidArgument, "{name}");
        assert!(
            err.message().contains("source.bogus"),
            "{name}: {}",
            err.message()
        );

        let req = GetFlowsRequest {
            since: Some(pbjson_types::Timestamp {
                seconds: 0,
                nanos: -1,
            }),
            ..Default::default()
        };
        let err = client.get_flows(req).await.expect_err("bad since");
        assert_eq!(err.code(), Code::InvalidArgument, "{name}");

        let err = client
            .get_nodes(GetNodesRequest {})
            .await
            .expect_err("GetNodes");
        assert_eq!(err.code(), Code::Unimplemented, "{name}");
    }
    h.stop().await
}

#[tokio::test]
async fn field_mask_keeps_only_named_paths() -> anyhow::Result<()> {
    let h = Harness::start(4095).await?;
    h.push((0..5).map(sample::flow)).await?;
    let mut client = h.clients().await?.remove(1).1;
    let req = GetFlowsRequest {
        number: 2,
        field_mask: Some(pbjson_types::FieldMask {
            paths: vec!["time".into(), "verdict".into(), "source.pod_name".into()],
        }),
        ..Default::default()
    };
    let resp = collect(&mut client, req).await?;
    let flows = flows_of(&resp);
    assert_eq!(flows.len(), 2);
    for (flow, n) in flows.iter().zip(3..) {
        let want = sample::flow(n);
        assert_eq!(flow.time, want.time);
        assert_eq!(flow.verdict, want.verdict);
        let pod = want
            .source
            .as_ref()
            .map(|s| s.pod_name.clone())
            .unwrap_or_default();
        assert_eq!(
            flow.source,
            Some(Endpoint {
                pod_name: pod,
                ..Default::default()
            })
        );
        assert!(flow.uuid.is_empty() && flow.ip.is_none() && flow.node_name.is_empty());
    }
    // As upstream, the response's node name is the masked flow's.
    assert!(resp
        .iter()
        .all(|r| r.node_name.is_empty() && r.time.is_some()));
    h.stop().await
}

#[tokio::test]
async fn status_and_namespaces() -> anyhow::Result<()> {
    let h = Harness::start(63).await?;
    let now = observer::ingest::now_timestamp();
    let mut flows: Vec<_> = (0..100).map(sample::flow).collect();
    for f in &mut flows {
        f.time = Some(now);
    }
    flows[99].destination = Some(Endpoint {
        namespace: "kube-system".into(),
        pod_name: "coredns".into(),
        ..Default::default()
    });
    h.push(flows).await?;
    for (name, mut client) in h.clients().await? {
        let status = client
            .server_status(ServerStatusRequest {})
            .await?
            .into_inner();
        assert_eq!(
            (status.num_flows, status.max_flows, status.seen_flows),
            (63, 63, 100),
            "{name}"
        );
        assert!(
            status.uptime_ns > 0 && status.version.starts_with("hubble-rs"),
            "{name}"
        );
        // 63 flows within the last minute, all at `now`: the ring does not reach back a
        // minute, so upstream divides by the time since its oldest flow.
        assert!(
            status.flows_rate > 0.0,
            "{name}: rate {}",
            status.flows_rate
        );
        let ns = client
            .get_namespaces(GetNamespacesRequest {})
            .await?
            .into_inner();
        let want = ["default", "kube-system"].map(|n| Namespace {
            cluster: "default".into(),
            namespace: n.into(),
        });
        assert_eq!(ns.namespaces, want.to_vec(), "{name}");
    }
    h.stop().await
}

#[tokio::test]
async fn agent_events_have_the_same_window_rules() -> anyhow::Result<()> {
    let h = Harness::start(4095).await?;
    for kind in [
        AgentEventType::AgentStarted,
        AgentEventType::EndpointCreated,
        AgentEventType::PolicyUpdated,
    ] {
        assert!(h.ingest.push_agent_event(AgentEvent {
            r#type: kind as i32,
            notification: None
        }));
    }
    h.push([sample::flow(0)]).await?; // the queue is FIFO: events before it are stored
    let mut client = h.clients().await?.remove(0).1;
    let req = GetAgentEventsRequest {
        number: 2,
        ..Default::default()
    };
    let mut stream = client.get_agent_events(req).await?.into_inner();
    let mut got = Vec::new();
    while let Some(resp) = stream.message().await? {
        assert_eq!(resp.node_name, NODE);
        assert!(resp.time.is_some());
        got.push(resp.agent_event.map(|e| e.r#type).unwrap_or_default());
    }
    assert_eq!(
        got,
        vec![
            AgentEventType::EndpointCreated as i32,
            AgentEventType::PolicyUpdated as i32
        ]
    );
    let req = GetAgentEventsRequest {
        first: true,
        follow: true,
        ..Default::default()
    };
    let err = client
        .get_agent_events(req)
        .await
        .expect_err("first+follow");
    assert_eq!(err.code(), Code::InvalidArgument);
    h.stop().await
}

#[tokio::test]
async fn health_and_reflection() -> anyhow::Result<()> {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};
    let h = Harness::start(4095).await?;
    for channel in [h.unix_channel().await?, h.tcp_channel().await?] {
        let mut health = HealthClient::new(channel.clone());
        for service in ["hubble.server.Observer", ""] {
            let resp = health
                .check(HealthCheckRequest {
                    service: service.into(),
                })
                .await?
                .into_inner();
            assert_eq!(resp.status, ServingStatus::Serving as i32, "{service:?}");
        }
        let services = list_services(channel).await?;
        assert!(
            services.contains(&"observer.Observer".to_string()),
            "{services:?}"
        );
    }
    h.stop().await
}

async fn list_services(channel: tonic::transport::Channel) -> anyhow::Result<Vec<String>> {
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    let mut client = ServerReflectionClient::new(channel);
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = client
        .server_reflection_info(tokio_stream::iter([req]))
        .await?
        .into_inner();
    let mut names = Vec::new();
    while let Some(resp) = stream.message().await? {
        if let Some(MessageResponse::ListServicesResponse(list)) = resp.message_response {
            names.extend(list.service.into_iter().map(|s| s.name));
        }
    }
    Ok(names)
}

#[tokio::test]
async fn a_dropped_looping_replay_stops_reading() -> anyhow::Result<()> {
    use observer::replay::{replay, ReplayOptions};
    let h = Harness::start(4095).await?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("capture.jsonl");
    let text: String = (0..50)
        .map(|n| proto::json::to_string(&sample::flow(n)) + "\n")
        .collect();
    std::fs::write(&path, text)?;
    let options = ReplayOptions {
        repeat: true,
        ..Default::default()
    };
    let ingest = h.ingest.clone();
    let looping = tokio::spawn(async move { replay(&path, &options, &ingest).await });
    h.wait_seen(500).await?;
    looping.abort();
    assert!(looping.await.is_err_and(|e| e.is_cancelled()));
    // The reading thread stops at its next line: the count settles.
    let mut last = h.observer.seen_flows();
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let now = h.observer.seen_flows();
        if now == last {
            break;
        }
        last = now;
    }
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(
        h.observer.seen_flows(),
        last,
        "the replay went on after it was dropped"
    );
    h.stop().await
}

#[tokio::test]
async fn replayed_captures_are_served() -> anyhow::Result<()> {
    use observer::replay::{replay, ReplayOptions};
    use proto::observer::{get_flows_response::ResponseTypes, GetFlowsResponse};
    let h = Harness::start(4095).await?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("capture.jsonl");
    let mut text = String::new();
    for n in 0..3 {
        let flow = sample::flow(n);
        let resp = GetFlowsResponse {
            time: flow.time,
            node_name: flow.node_name.clone(),
            response_types: Some(ResponseTypes::Flow(flow)),
        };
        text.push_str(&proto::json::to_string(&resp));
        text.push('\n');
    }
    text.push_str("{\"flow\": garbage\n");
    text.push_str(&proto::json::to_string(&sample::flow(3)));
    text.push('\n');
    std::fs::write(&path, text)?;
    let options = ReplayOptions {
        retimestamp: true,
        ..Default::default()
    };
    let stats = replay(&path, &options, &h.ingest).await?;
    assert_eq!((stats.flows, stats.bad_lines), (4, 1));
    assert_eq!(stats.errors[0].line, 4);
    assert!(stats.errors[0].to_string().starts_with("line 4: not JSON"));
    h.wait_seen(4).await?;
    let mut client = h.clients().await?.remove(0).1;
    let flows = flows_of(&collect(&mut client, GetFlowsRequest::default()).await?);
    let want: Vec<_> = (0..4).map(|n| sample::flow(n).uuid).collect();
    assert_eq!(
        flows.iter().map(|f| f.uuid.clone()).collect::<Vec<_>>(),
        want
    );
    assert!(
        flows.iter().all(|f| f.time != sample::flow(0).time),
        "re-timestamped"
    );
    h.stop().await
}

#[tokio::test]
async fn a_paced_replay_keeps_its_rate_within_the_slack() -> anyhow::Result<()> {
    use observer::replay::{replay, ReplayOptions, REPLAY_PACING_SLACK};
    let h = Harness::start(4095).await?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("capture.jsonl");
    let flows = 41u64;
    let text: String = (0..flows)
        .map(|n| proto::json::to_string(&sample::flow(n)) + "\n")
        .collect();
    std::fs::write(&path, text)?;
    let rate = 200.0;
    let options = ReplayOptions {
        rate: Some(rate),
        ..Default::default()
    };
    let started = std::time::Instant::now();
    let stats = replay(&path, &options, &h.ingest).await?;
    assert_eq!(stats.flows, flows);
    // The last flow is due (flows - 1) / rate after the first; it may go out at most
    // the slack early.
    let due = std::time::Duration::from_secs_f64((flows - 1) as f64 / rate);
    assert!(
        started.elapsed() + REPLAY_PACING_SLACK >= due,
        "{:?} for {flows} flows at {rate}/s",
        started.elapsed()
    );
    h.wait_seen(flows).await?;
    h.stop().await
}
