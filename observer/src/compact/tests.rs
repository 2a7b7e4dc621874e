#![allow(deprecated)]

use std::sync::Arc;

use proptest::prelude::*;
use proto::filter::FlowView;
use proto::flow::{self, layer4, layer7, Flow};
use proto::observer::{get_flows_response::ResponseTypes, GetFlowsResponse};

use super::*;
use crate::sample;

fn round_trip(encoder: &mut Encoder, flow: &Flow) -> (Encoded, Flow) {
    let encoded = encoder.encode(flow.clone(), &mut |_| {});
    let back = to_flow(encoder.tables(), &encoded.record, encoded.extra.as_deref())
        .expect("a flow decodes to a flow");
    (encoded, back)
}

/// Every accessor of the stored view must agree with the same accessor on the flow.
fn assert_same_view(stored: &StoredFlow<'_>, flow: &Flow) {
    assert_eq!(stored.uuid(), flow.uuid());
    assert_eq!(
        stored.source_ip().map(|ip| ip.to_string()),
        flow.source_ip().map(|ip| ip.to_string())
    );
    assert_eq!(
        stored.source_ip_xlated().map(|ip| ip.to_string()),
        flow.source_ip_xlated().map(|ip| ip.to_string())
    );
    assert_eq!(
        stored.destination_ip().map(|ip| ip.to_string()),
        flow.destination_ip().map(|ip| ip.to_string())
    );
    assert_eq!(stored.ip_version(), FlowView::ip_version(flow));
    assert_eq!(stored.encrypted(), FlowView::encrypted(flow));
    assert_eq!(stored.source(), FlowView::source(flow));
    assert_eq!(stored.destination(), FlowView::destination(flow));
    assert_eq!(stored.source_names(), FlowView::source_names(flow));
    assert_eq!(
        stored.destination_names(),
        FlowView::destination_names(flow)
    );
    assert_eq!(stored.source_service(), FlowView::source_service(flow));
    assert_eq!(
        stored.destination_service(),
        FlowView::destination_service(flow)
    );
    assert_eq!(stored.verdict(), FlowView::verdict(flow));
    assert_eq!(stored.drop_reason_desc(), FlowView::drop_reason_desc(flow));
    assert_eq!(stored.event_type(), FlowView::event_type(flow));
    assert_eq!(stored.l4_protocol(), flow.l4_protocol());
    assert_eq!(stored.ports(), flow.ports());
    assert_eq!(stored.tcp_flags(), flow.tcp_flags());
    assert_eq!(stored.http(), flow.http());
    assert_eq!(stored.dns(), flow.dns());
    assert_eq!(stored.is_kafka(), flow.is_kafka());
    assert_eq!(
        stored.traffic_direction(),
        FlowView::traffic_direction(flow)
    );
    assert_eq!(stored.is_reply(), FlowView::is_reply(flow));
    assert_eq!(stored.node_name(), FlowView::node_name(flow));
    assert_eq!(stored.node_labels(), FlowView::node_labels(flow));
    assert_eq!(stored.trace_id(), flow.trace_id());
    assert_eq!(stored.ip_trace_id(), flow.ip_trace_id());
    assert_eq!(stored.interface(), FlowView::interface(flow));
}

/// The GetFlows response written from the record and the tables' encoded parts
/// decodes as the response made from the flow itself; only whole flows are refused.
fn assert_same_response(stored: &StoredFlow<'_>, flow: &Flow) {
    let expected = GetFlowsResponse {
        time: flow.time,
        node_name: flow.node_name.clone(),
        response_types: Some(ResponseTypes::Flow(flow.clone())),
    };
    match stored.encode_response() {
        Some(encoded) => assert_eq!(encoded.decode().expect("a response decodes"), expected),
        None => assert_eq!(kind(stored.head()), KIND_FULL),
    }
}

fn check(encoder: &mut Encoder, flow: &Flow) -> Encoded {
    let (encoded, back) = round_trip(encoder, flow);
    assert_eq!(&back, flow);
    let by_ref = encoder.encode_ref(flow, &mut |_| {});
    assert_eq!(by_ref.record, encoded.record);
    let tables = Arc::clone(encoder.tables());
    // The same extra, but for the L7 strings the second sighting interned.
    let by_ref =
        StoredFlow::new(&tables, by_ref.record, by_ref.extra).expect("a flow record is a flow");
    assert_eq!(&by_ref.to_flow(), flow);
    let stored = StoredFlow::new(&tables, encoded.record, encoded.extra.clone())
        .expect("a flow record is a flow");
    assert_same_view(&stored, flow);
    assert_eq!(&stored.to_flow(), flow);
    assert_same_response(&stored, flow);
    encoded
}

#[test]
fn corpus_flows_are_written_as_their_responses() {
    let mut encoder = Encoder::new(Arc::default());
    for n in 0..2_000 {
        check(&mut encoder, &sample::corpus_flow(n));
    }
}

fn l7_http() -> Flow {
    let mut f = sample::flow(3);
    f.r#type = flow::FlowType::L7 as i32;
    f.l7 = Some(flow::Layer7 {
        r#type: flow::L7FlowType::Request as i32,
        latency_ns: 1234,
        record: Some(layer7::Record::Http(flow::Http {
            code: 200,
            method: "POST".into(),
            url: "http://deathstar.default.svc.cluster.local/v1/request-landing".into(),
            protocol: "HTTP/1.1".into(),
            headers: vec![flow::HttpHeader {
                key: "X-Request-Id".into(),
                value: "abc".into(),
            }],
        })),
    });
    f.trace_context = Some(flow::TraceContext {
        parent: Some(flow::TraceParent {
            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
        }),
    });
    f.ingress_allowed_by = vec![flow::Policy {
        name: "rule1".into(),
        namespace: "default".into(),
        labels: vec!["k8s:io.cilium.k8s.policy.name=rule1".into()],
        revision: 7,
        kind: "CiliumNetworkPolicy".into(),
    }];
    f.source_service = Some(flow::Service {
        name: "deathstar".into(),
        namespace: "default".into(),
    });
    f
}

fn dns() -> Flow {
    let mut f = sample::flow(7);
    f.destination_names = vec!["deathstar.default.svc.cluster.local".into()];
    f.l7 = Some(flow::Layer7 {
        r#type: flow::L7FlowType::Response as i32,
        latency_ns: 99,
        record: Some(layer7::Record::Dns(flow::Dns {
            query: "deathstar.default.svc.cluster.local.".into(),
            ips: vec!["10.96.0.10".into()],
            ttl: 30,
            rcode: 0,
            qtypes: vec!["A".into()],
            ..Default::default()
        })),
    });
    f
}

#[test]
fn demo_flows_round_trip_compactly() {
    let mut encoder = Encoder::new(Arc::default());
    for n in 0..2000 {
        let encoded = check(&mut encoder, &sample::flow(n));
        assert_eq!(kind(&encoded.record), KIND_COMPACT, "flow {n}");
        assert!(encoded.extra.is_none(), "demo flow {n} needs no extra");
    }
    assert_eq!(encoder.full_fallbacks(), 0);
    assert!(encoder.endpoint_count() <= 4);
}

#[test]
fn l7_and_rare_fields_round_trip_through_the_extra() {
    let mut encoder = Encoder::new(Arc::default());
    for flow in [l7_http(), dns()] {
        let encoded = check(&mut encoder, &flow);
        assert_eq!(kind(&encoded.record), KIND_COMPACT);
        assert!(matches!(encoded.extra.as_deref(), Some(Extra::Rare(_))));
    }
}

#[test]
fn values_the_record_cannot_hold_fall_back_exactly() {
    let mut encoder = Encoder::new(Arc::default());
    let mut cases: Vec<(&str, Flow)> = Vec::new();
    let base = sample::flow(1);
    let mut f = base.clone();
    f.verdict = 300;
    cases.push(("verdict beyond 255", f));
    let mut f = base.clone();
    f.traffic_direction = -1;
    cases.push(("negative enum", f));
    let mut f = base.clone();
    f.proxy_port = 70_000;
    cases.push(("proxy port beyond 16 bits", f));
    let mut f = base.clone();
    if let Some(ip) = f.ip.as_mut() {
        ip.source = "010.200.1.12".into();
    }
    cases.push(("non-canonical IP", f));
    let mut f = base.clone();
    if let Some(ip) = f.ip.as_mut() {
        ip.source_xlated = "10.96.0.1".into();
    }
    cases.push(("translated IP", f));
    let mut f = base.clone();
    f.uuid = "NOT-A-UUID".into();
    cases.push(("free-form uuid", f));
    let mut f = base.clone();
    if let Some(e) = f.ethernet.as_mut() {
        e.source = "0A:58:0A:C8:01:0C".into();
    }
    cases.push(("upper-case MAC", f));
    let mut f = base.clone();
    f.l4 = Some(flow::Layer4 {
        protocol: Some(layer4::Protocol::Vrrp(flow::Vrrp {
            r#type: 1,
            vrid: 2,
            priority: 3,
        })),
    });
    cases.push(("VRRP", f));
    let mut f = base.clone();
    f.l4 = Some(flow::Layer4 {
        protocol: Some(layer4::Protocol::Tcp(flow::Tcp {
            source_port: 1 << 20,
            destination_port: 80,
            flags: None,
        })),
    });
    cases.push(("port beyond 16 bits", f));
    let mut f = base.clone();
    f.l4 = Some(flow::Layer4 { protocol: None });
    f.time = Some(pbjson_types::Timestamp {
        seconds: -5,
        nanos: -7,
    });
    cases.push(("empty L4, odd time", f));
    cases.push(("empty flow", Flow::default()));
    let mut f = base.clone();
    f.ip = None;
    f.ethernet = None;
    f.l4 = None;
    f.time = None;
    f.is_reply = None;
    f.event_type = None;
    f.source = None;
    f.node_name.clear();
    f.node_labels.clear();
    f.interface = None;
    cases.push(("sparse flow", f));
    let mut f = base.clone();
    f.socket_cookie = 42;
    f.cgroup_id = 7;
    f.tunnel = Some(flow::Tunnel {
        protocol: 1,
        vni: 2,
        ..Default::default()
    });
    f.ip_trace_id = Some(flow::IpTraceId {
        trace_id: 9,
        ip_option_type: 136,
    });
    f.aggregate = Some(flow::Aggregate {
        ingress_flow_count: 3,
        ..Default::default()
    });
    f.extensions = Some(pbjson_types::Any {
        type_url: "type.googleapis.com/x".into(),
        value: vec![1, 2, 3].into(),
    });
    f.summary = "TCP Flags: SYN".into();
    f.policy_log = vec!["log".into()];
    f.emitter = Some(flow::Emitter {
        name: "Hubble".into(),
        version: "1.19.4".into(),
    });
    f.drop_reason = 133;
    f.reply = true;
    f.policy_match_type = 3;
    cases.push(("rare fields", f));
    for (name, flow) in &cases {
        let (_, back) = round_trip(&mut encoder, flow);
        assert_eq!(&back, flow, "{name}");
        check(&mut encoder, flow);
    }
}

#[test]
fn lost_events_are_not_flows() {
    let encoder = Encoder::new(Arc::default());
    let lost = flow::LostEvent {
        source: flow::LostEventSource::PerfEventRingBuffer as i32,
        num_events_lost: 12,
        cpu: Some(pbjson_types::Int32Value { value: 1 }),
        ..Default::default()
    };
    let at = pbjson_types::Timestamp {
        seconds: 10,
        nanos: 5,
    };
    let encoded = encoder.encode_lost(lost, at);
    assert_eq!(kind(&encoded.record), KIND_LOST);
    assert_eq!(time(&encoded.record), Some(at));
    assert_eq!(encoded.extra.as_deref(), Some(&Extra::Lost(Box::new(lost))));
    assert!(to_flow(encoder.tables(), &encoded.record, encoded.extra.as_deref()).is_none());
}

fn arb_flow() -> impl Strategy<Value = Flow> {
    (
        any::<u64>(),
        prop::option::of((any::<i64>(), any::<i32>())),
        any::<[i32; 4]>(),
        prop::option::of(any::<bool>()),
        (any::<u32>(), any::<u32>(), 0u8..6),
        prop::option::of(any::<[u8; 16]>()),
        "[a-z0-9:.]{0,12}",
        (
            0i32..4,
            0i32..4,
            any::<bool>(),
            0i32..300,
            0u32..300,
            0u32..70_000,
            0u32..300,
        ),
    )
        .prop_map(|(n, time, enums, reply, (a, b, l4), ip6, text, more)| {
            let mut f = sample::flow(n % 5000);
            let (auth, kind, old_reply, trace_reason, match_type, proxy_port, drop_reason) = more;
            f.auth_type = auth;
            f.r#type = kind;
            f.reply = old_reply;
            f.trace_reason = trace_reason;
            f.policy_match_type = match_type;
            f.proxy_port = proxy_port;
            f.drop_reason = drop_reason;
            f.time = time.map(|(seconds, nanos)| pbjson_types::Timestamp { seconds, nanos });
            f.verdict = enums[0] % 400;
            f.drop_reason_desc = enums[1] % 300;
            f.trace_observation_point = enums[2] % 300;
            f.traffic_direction = enums[3] % 5;
            f.is_reply = reply.map(|value| pbjson_types::BoolValue { value });
            let ports = |a: u32, b: u32| (a % 80_000, b % 80_000);
            let (a, b) = ports(a, b);
            f.l4 = match l4 {
                0 => None,
                1 => Some(flow::Layer4 { protocol: None }),
                2 => Some(flow::Layer4 {
                    protocol: Some(layer4::Protocol::Udp(flow::Udp {
                        source_port: a,
                        destination_port: b,
                    })),
                }),
                3 => Some(flow::Layer4 {
                    protocol: Some(layer4::Protocol::IcmPv6(flow::IcmPv6 {
                        r#type: a,
                        code: b,
                    })),
                }),
                4 => Some(flow::Layer4 {
                    protocol: Some(layer4::Protocol::Sctp(flow::Sctp {
                        source_port: a,
                        destination_port: b,
                    })),
                }),
                _ => f.l4.take(),
            };
            if let Some(bytes) = ip6 {
                f.ip = Some(flow::Ip {
                    source: std::net::Ipv6Addr::from(bytes).to_string(),
                    destination: text.clone(),
                    ip_version: 2,
                    ..Default::default()
                });
            }
            f
        })
}

proptest! {
    #[test]
    fn arbitrary_flows_round_trip(flows in prop::collection::vec(arb_flow(), 1..20)) {
        let mut encoder = Encoder::new(Arc::default());
        for flow in &flows {
            let encoded = encoder.encode(flow.clone(), &mut |_| {});
            let back = to_flow(encoder.tables(), &encoded.record, encoded.extra.as_deref());
            prop_assert_eq!(back.as_ref(), Some(flow));
            let tables = Arc::clone(encoder.tables());
            let stored = StoredFlow::new(&tables, encoded.record, encoded.extra.clone());
            prop_assert!(stored.is_some());
            if let Some(stored) = stored {
                assert_same_view(&stored, flow);
                assert_same_response(&stored, flow);
            }
        }
    }
}

#[test]
fn the_extra_of_a_compact_flow_stays_small() {
    // A `Flow` is 1,400 bytes; the extra of nearly every flow of a real capture must
    // not be one (see `rare`).
    assert!(std::mem::size_of::<Flow>() > 1000);
    assert_eq!(std::mem::size_of::<super::Packed>(), 56);
    assert_eq!(std::mem::size_of::<super::Rare>(), 64);
    // With the `Arc`'s two counts, 80 bytes: an allocator size class.
    assert_eq!(std::mem::size_of::<Extra>(), 64);
    let mut encoder = Encoder::new(Arc::default());
    let mut flow = l7_http();
    flow.trace_context = Some(flow::TraceContext {
        parent: Some(flow::TraceParent {
            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
        }),
    });
    // Its strings seen once stay in the record, which is then too long to be kept
    // in place; seen again, they are numbers, and the record is in the extra itself.
    for inline in [false, true] {
        let (encoded, back) = round_trip(&mut encoder, &flow);
        assert_eq!(back, flow);
        let Some(Extra::Rare(rare)) = encoded.extra.as_deref() else {
            panic!("no rare parts: {:?}", encoded.extra);
        };
        let in_place = matches!(rare.packed, Some(super::Packed::Inline { .. }));
        assert_eq!(in_place, inline, "{rare:?}");
        // The trace id of an IPv4 flow is packed in the record: nothing else is kept.
        assert!(rare.other.is_none(), "{rare:?}");
    }
}

#[test]
fn trace_ids_pack_into_the_record_where_addresses_leave_room() {
    let mut encoder = Encoder::new(Arc::default());
    let traced = |mut flow: Flow, trace_id: &str| {
        flow.trace_context = Some(flow::TraceContext {
            parent: Some(flow::TraceParent {
                trace_id: trace_id.into(),
            }),
        });
        flow
    };
    let id = "4bf92f3577b34da6a3ce929d0e0e4736";
    // IPv4 and no addresses: packed, no extra.
    let mut no_ip = sample::flow(7);
    no_ip.ip = None;
    for flow in [traced(sample::flow(1), id), traced(no_ip, id)] {
        let encoded = check(&mut encoder, &flow);
        assert!(encoded.extra.is_none(), "{flow:?}");
        assert!(packed_trace(&encoded.record).is_some());
    }
    // IPv6 addresses use those words; a trace id not of the W3C form is kept as text.
    let mut v6 = traced(sample::flow(2), id);
    v6.ip = Some(flow::Ip {
        source: "fd00::1".into(),
        destination: "10.0.0.1".into(),
        ip_version: 2,
        ..Default::default()
    });
    let upper = traced(sample::flow(3), &id.to_uppercase());
    let parent_only = {
        let mut f = sample::flow(4);
        f.trace_context = Some(flow::TraceContext { parent: None });
        f
    };
    for flow in [v6, upper, parent_only] {
        let encoded = check(&mut encoder, &flow);
        assert_eq!(packed_trace(&encoded.record), None, "{flow:?}");
        assert!(matches!(encoded.extra.as_deref(), Some(Extra::Rare(r))
                if r.other.as_deref().is_some_and(|o| o.trace_context.is_some())));
    }
}

#[test]
fn filters_on_shared_parts_agree_with_the_flows_across_stores() {
    use proto::filter::FilterSet;
    use proto::flow::FlowFilter;
    let filters = [
        FlowFilter {
            source_pod: vec!["default/xwing".into()],
            ..Default::default()
        },
        FlowFilter {
            destination_label: vec!["k8s:org=empire".into()],
            verdict: vec![flow::Verdict::Dropped as i32],
            ..Default::default()
        },
        FlowFilter {
            destination_service: vec!["default/deathstar".into()],
            node_name: vec!["kind-worker".into()],
            ..Default::default()
        },
        FlowFilter {
            source_identity: vec![sample::flow(0).source.map_or(0, |e| e.identity)],
            destination_pod: vec!["deathstar".into()],
            ..Default::default()
        },
    ];
    let set = FilterSet::compile(&filters, &filters[3..]).expect("valid filters");
    // Two stores numbering the same endpoints differently (the second sees the flows
    // from another start), read with the same filters, twice each.
    let mut matched = 0;
    for start in [0u64, 7] {
        let mut encoder = Encoder::new(Arc::default());
        let stored: Vec<(Encoded, Flow)> = (start..start + 400)
            .map(|n| {
                let flow = sample::corpus_flow(n);
                (encoder.encode(flow.clone(), &mut |_| {}), flow)
            })
            .collect();
        let tables = Arc::clone(encoder.tables());
        for _ in 0..2 {
            for (encoded, flow) in &stored {
                let view = StoredFlow::new(&tables, encoded.record, encoded.extra.clone())
                    .expect("a flow record is a flow");
                assert_eq!(set.matches(&view), set.matches(flow), "{flow:?}");
                matched += usize::from(set.matches(flow));
            }
        }
    }
    assert!(matched > 0 && matched < 1600, "{matched}");
}
