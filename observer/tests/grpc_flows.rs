//! GetFlows over a real Unix socket and real TCP.

mod common;

use std::time::Duration;

use common::{collect, flows_of, uuids, Harness, NODE};
use observer::sample;
use proto::flow::{FlowFilter, LostEventSource, Verdict};
use proto::observer::{get_flows_response::ResponseTypes, GetFlowsRequest};

fn sample_uuids(range: std::ops::Range<u64>) -> Vec<String> {
    range.map(|n| sample::flow(n).uuid).collect()
}

#[tokio::test]
async fn last_first_and_time_range_on_both_transports() -> anyhow::Result<()> {
    let h = Harness::start(4095).await?;
    h.push((0..100).map(sample::flow)).await?;
    for (name, mut client) in h.clients().await? {
        let last = collect(
            &mut client,
            GetFlowsRequest {
                number: 10,
                ..Default::default()
            },
        )
        .await?;
        assert_eq!(
            uuids(&flows_of(&last)),
            sample_uuids(90..100),
            "{name}: last 10"
        );
        for resp in &last {
            assert_eq!(resp.node_name, "kind-worker", "{name}: node of the flow");
            assert!(resp.time.is_some(), "{name}: time set");
        }
        let first = GetFlowsRequest {
            number: 5,
            first: true,
            ..Default::default()
        };
        let first = collect(&mut client, first).await?;
        assert_eq!(
            uuids(&flows_of(&first)),
            sample_uuids(0..5),
            "{name}: first 5"
        );
        let all = collect(&mut client, GetFlowsRequest::default()).await?;
        assert_eq!(
            flows_of(&all).len(),
            100,
            "{name}: no number reads the whole ring"
        );
        let range = GetFlowsRequest {
            since: sample::flow(20).time,
            until: sample::flow(29).time,
            ..Default::default()
        };
        let range = collect(&mut client, range).await?;
        assert_eq!(
            uuids(&flows_of(&range)),
            sample_uuids(20..30),
            "{name}: since/until"
        );
        let flows = flows_of(
            &collect(
                &mut client,
                GetFlowsRequest {
                    number: 3,
                    ..Default::default()
                },
            )
            .await?,
        );
        let expected: Vec<_> = (97..100).map(sample::flow).collect();
        assert_eq!(flows, expected, "{name}: flows come back exactly as pushed");
    }
    h.stop().await
}

#[tokio::test]
async fn filters_apply_before_counting() -> anyhow::Result<()> {
    let h = Harness::start(4095).await?;
    h.push((0..400).map(sample::flow)).await?;
    let mut client = h.clients().await?.remove(0).1;
    let xwing = FlowFilter {
        source_pod: vec!["default/xwing".into()],
        ..Default::default()
    };
    let req = GetFlowsRequest {
        number: 7,
        whitelist: vec![xwing.clone()],
        ..Default::default()
    };
    let flows = flows_of(&collect(&mut client, req).await?);
    let expected: Vec<_> = (0..400)
        .map(sample::flow)
        .filter(|f| f.source.as_ref().is_some_and(|s| s.pod_name == "xwing"))
        .map(|f| f.uuid)
        .collect();
    assert_eq!(uuids(&flows), expected[expected.len() - 7..].to_vec());
    let dropped = FlowFilter {
        verdict: vec![Verdict::Dropped as i32],
        ..Default::default()
    };
    let req = GetFlowsRequest {
        blacklist: vec![dropped],
        whitelist: vec![xwing],
        ..Default::default()
    };
    let flows = flows_of(&collect(&mut client, req).await?);
    assert!(!flows.is_empty());
    assert!(flows.iter().all(|f| f.verdict == Verdict::Forwarded as i32));
    h.stop().await
}

#[tokio::test]
async fn follow_streams_new_flows() -> anyhow::Result<()> {
    let h = Harness::start(4095).await?;
    h.push((0..10).map(sample::flow)).await?;
    for (name, mut client) in h.clients().await? {
        let req = GetFlowsRequest {
            follow: true,
            ..Default::default()
        };
        let mut stream = client.get_flows(req).await?.into_inner();
        let base = 1000 + if name == "tcp" { 100 } else { 0 };
        // The stream starts at the writer: push until the first flow shows up.
        let mut got = Vec::new();
        let mut n = base;
        while got.is_empty() {
            h.push([sample::flow(n)]).await?;
            n += 1;
            if let Ok(resp) =
                tokio::time::timeout(Duration::from_millis(200), stream.message()).await
            {
                got.extend(flows_of(&[resp?.expect("stream open")]));
            }
        }
        h.push((n..n + 5).map(sample::flow)).await?;
        while got.len() < 6 {
            let resp = tokio::time::timeout(Duration::from_secs(5), stream.message()).await??;
            got.extend(flows_of(&[resp.expect("stream open")]));
        }
        let first = got[0].uuid.clone();
        let start = (base..n)
            .find(|i| sample::flow(*i).uuid == first)
            .expect("known flow");
        assert_eq!(uuids(&got), sample_uuids(start..start + 6), "{name}");
    }
    h.stop().await
}

#[tokio::test]
async fn lost_events_are_sent_and_not_counted() -> anyhow::Result<()> {
    let h = Harness::start(4095).await?;
    h.push((0..10).map(sample::flow)).await?;
    let lost = proto::flow::LostEvent {
        source: LostEventSource::PerfEventRingBuffer as i32,
        num_events_lost: 42,
        cpu: Some(pbjson_types::Int32Value { value: 1 }),
        ..Default::default()
    };
    assert!(h.ingest.push_lost_event(lost));
    h.push((10..20).map(sample::flow)).await?;
    let mut client = h.clients().await?.remove(1).1;
    let resp = collect(
        &mut client,
        GetFlowsRequest {
            number: 15,
            ..Default::default()
        },
    )
    .await?;
    assert_eq!(flows_of(&resp).len(), 15);
    let notices: Vec<_> = resp
        .iter()
        .filter_map(|r| match &r.response_types {
            Some(ResponseTypes::LostEvents(l)) => Some((r.node_name.clone(), *l, r.time)),
            _ => None,
        })
        .collect();
    assert_eq!(notices.len(), 1);
    assert_eq!(notices[0].0, NODE);
    assert_eq!(notices[0].1, lost);
    assert!(notices[0].2.is_some());
    h.stop().await
}

#[tokio::test]
async fn a_slow_follower_is_told_what_it_lost() -> anyhow::Result<()> {
    let h = Harness::start(15).await?;
    let mut client = h.clients().await?.remove(0).1;
    let req = GetFlowsRequest {
        follow: true,
        ..Default::default()
    };
    let mut stream = client.get_flows(req).await?.into_inner();
    let mut n = 0;
    loop {
        h.push([sample::flow(n)]).await?;
        n += 1;
        if let Ok(resp) = tokio::time::timeout(Duration::from_millis(200), stream.message()).await {
            if !flows_of(&[resp?.expect("open")]).is_empty() {
                break;
            }
        }
    }
    // The client stops reading while far more flows than the ring and the stream's
    // buffers hold are written.
    let total = 20_000u64;
    h.push((n..n + total).map(sample::flow)).await?;
    let last_uuid = sample::flow(n + total - 1).uuid;
    let (mut flows, mut lost, mut saw_last) = (0u64, 0u64, false);
    // Pending loss notices are flushed once the reader catches up, so read until the
    // accounts balance (or time out).
    while !(saw_last && flows + lost >= total) {
        let resp = tokio::time::timeout(Duration::from_secs(10), stream.message()).await??;
        match resp.and_then(|r| r.response_types) {
            Some(ResponseTypes::Flow(f)) => {
                flows += 1;
                saw_last |= f.uuid == last_uuid;
            }
            Some(ResponseTypes::LostEvents(l)) => {
                assert_eq!(l.source, LostEventSource::HubbleRingBuffer as i32);
                assert!(l.first.is_some() && l.last.is_some());
                lost += l.num_events_lost;
            }
            other => anyhow::bail!("unexpected response {other:?}"),
        }
    }
    assert!(lost > 0, "the slow client must have lost flows");
    assert_eq!(flows + lost, total, "received + lost = written");
    h.stop().await
}

/// The server writes the responses its scans encoded; calling the service's GetFlows
/// directly decodes them again: both give the same responses.
#[tokio::test]
async fn the_direct_call_decodes_what_the_server_writes() -> anyhow::Result<()> {
    use futures::StreamExt;
    use proto::observer::observer_server::Observer;

    let h = Harness::start(4095).await?;
    h.push((0..50).map(sample::flow)).await?;
    let request = GetFlowsRequest {
        number: 20,
        ..Default::default()
    };
    let (_, mut client) = h.clients().await?.remove(0);
    let served = collect(&mut client, request.clone()).await?;
    let service = observer::ObserverService::new(std::sync::Arc::clone(&h.observer));
    let mut direct = Vec::new();
    let mut stream = service
        .get_flows(tonic::Request::new(request))
        .await?
        .into_inner();
    while let Some(response) = stream.next().await {
        direct.push(response?);
    }
    assert_eq!(served.len(), 20);
    assert_eq!(direct, served);
    h.stop().await
}
