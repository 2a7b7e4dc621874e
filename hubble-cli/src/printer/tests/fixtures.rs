//! Flows and events used by the printer tests.

use proto::flow::{self, layer4, layer7, Flow};
use proto::observer::{get_flows_response::ResponseTypes, GetFlowsResponse};
use proto::relay;

use super::wrap;

fn ts(seconds: i64, nanos: i32) -> Option<pbjson_types::Timestamp> {
    Some(pbjson_types::Timestamp { seconds, nanos })
}

fn reply(value: bool) -> Option<pbjson_types::BoolValue> {
    Some(pbjson_types::BoolValue { value })
}

pub fn ep(namespace: &str, pod: &str, identity: u32) -> Option<flow::Endpoint> {
    Some(flow::Endpoint {
        identity,
        namespace: namespace.to_string(),
        pod_name: pod.to_string(),
        ..Default::default()
    })
}

fn ip(src: &str, dst: &str) -> Option<flow::Ip> {
    Some(flow::Ip {
        source: src.to_string(),
        destination: dst.to_string(),
        ip_version: flow::IpVersion::IPv4 as i32,
        ..Default::default()
    })
}

fn tcp(sport: u32, dport: u32, flags: flow::TcpFlags) -> Option<flow::Layer4> {
    Some(flow::Layer4 {
        protocol: Some(layer4::Protocol::Tcp(flow::Tcp {
            source_port: sport,
            destination_port: dport,
            flags: Some(flags),
        })),
    })
}

fn event(kind: i32, sub_type: i32) -> Option<flow::CiliumEventType> {
    Some(flow::CiliumEventType {
        r#type: kind,
        sub_type,
    })
}

/// Upstream's printer test flow: a policy drop from the health identity.
#[allow(deprecated)]
pub fn upstream_flow() -> Flow {
    Flow {
        time: ts(1234, 567_800_000),
        r#type: flow::FlowType::L3L4 as i32,
        node_name: "k8s1".to_string(),
        verdict: flow::Verdict::Dropped as i32,
        ip: Some(flow::Ip {
            source: "1.1.1.1".to_string(),
            destination: "2.2.2.2".to_string(),
            ..Default::default()
        }),
        source: Some(flow::Endpoint {
            identity: 4,
            ..Default::default()
        }),
        destination: Some(flow::Endpoint {
            identity: 12345,
            ..Default::default()
        }),
        l4: Some(flow::Layer4 {
            protocol: Some(layer4::Protocol::Tcp(flow::Tcp {
                source_port: 31793,
                destination_port: 8080,
                flags: None,
            })),
        }),
        event_type: event(1, 133),
        summary: "TCP Flags: SYN".to_string(),
        is_reply: reply(false),
        ..Default::default()
    }
}

/// `tiefighter -> deathstar` SYN delivered to the endpoint.
#[allow(deprecated)]
pub fn trace_to_endpoint() -> Flow {
    Flow {
        time: ts(1_721_922_966, 52_345_678),
        verdict: flow::Verdict::Forwarded as i32,
        ip: ip("10.200.1.20", "10.200.1.30"),
        l4: tcp(
            51000,
            80,
            flow::TcpFlags {
                syn: true,
                ..Default::default()
            },
        ),
        source: ep("default", "tiefighter", 62396),
        destination: ep("default", "deathstar-8c4c77fb7-8wdts", 50122),
        r#type: flow::FlowType::L3L4 as i32,
        node_name: "kind-worker".to_string(),
        event_type: event(4, 0),
        is_reply: reply(false),
        traffic_direction: flow::TrafficDirection::Ingress as i32,
        trace_observation_point: flow::TraceObservationPoint::ToEndpoint as i32,
        summary: "TCP Flags: SYN".to_string(),
        ..Default::default()
    }
}

/// xwing's SYN dropped by policy, direction unknown.
#[allow(deprecated)]
pub fn policy_drop() -> Flow {
    Flow {
        time: ts(1_721_923_558, 942_111_000),
        verdict: flow::Verdict::Dropped as i32,
        drop_reason: 133,
        ip: ip("10.200.1.12", "10.200.1.30"),
        l4: tcp(
            38870,
            80,
            flow::TcpFlags {
                syn: true,
                ..Default::default()
            },
        ),
        source: ep("default", "xwing", 6305),
        destination: ep("default", "deathstar-8c4c77fb7-8wdts", 50122),
        r#type: flow::FlowType::L3L4 as i32,
        node_name: "kind-worker".to_string(),
        event_type: event(1, 133),
        traffic_direction: flow::TrafficDirection::Ingress as i32,
        drop_reason_desc: flow::DropReason::PolicyDenied as i32,
        summary: "TCP Flags: SYN".to_string(),
        ..Default::default()
    }
}

/// deathstar's SYN-ACK back to tiefighter, leaving the node.
#[allow(deprecated)]
pub fn reply_to_network() -> Flow {
    Flow {
        time: ts(1_721_923_678, 104_999_999),
        verdict: flow::Verdict::Forwarded as i32,
        ip: ip("10.200.1.30", "10.200.1.20"),
        l4: tcp(
            80,
            50142,
            flow::TcpFlags {
                syn: true,
                ack: true,
                ..Default::default()
            },
        ),
        source: ep("default", "deathstar-8c4c77fb7-8wdts", 50122),
        destination: ep("default", "tiefighter", 62396),
        r#type: flow::FlowType::L3L4 as i32,
        node_name: "kind-worker".to_string(),
        event_type: event(4, 11),
        is_reply: reply(true),
        traffic_direction: flow::TrafficDirection::Egress as i32,
        summary: "TCP Flags: SYN, ACK".to_string(),
        ..Default::default()
    }
}

/// A ping from xwing to the host.
#[allow(deprecated)]
pub fn icmp_echo() -> Flow {
    Flow {
        time: ts(1_721_923_700, 5_000_000),
        verdict: flow::Verdict::Forwarded as i32,
        ip: ip("10.200.1.12", "10.100.0.11"),
        l4: Some(flow::Layer4 {
            protocol: Some(layer4::Protocol::IcmPv4(flow::IcmPv4 {
                r#type: 8,
                code: 0,
            })),
        }),
        source: ep("default", "xwing", 6305),
        destination: Some(flow::Endpoint {
            identity: 1,
            ..Default::default()
        }),
        r#type: flow::FlowType::L3L4 as i32,
        node_name: "kind-worker".to_string(),
        event_type: event(4, 3),
        is_reply: reply(false),
        summary: "ICMPv4 EchoRequest".to_string(),
        ..Default::default()
    }
}

/// A DNS query seen by the proxy.
#[allow(deprecated)]
pub fn dns_request() -> Flow {
    Flow {
        time: ts(1_721_923_701, 250_000_000),
        verdict: flow::Verdict::Forwarded as i32,
        ip: ip("10.200.1.12", "10.200.0.53"),
        l4: Some(flow::Layer4 {
            protocol: Some(layer4::Protocol::Udp(flow::Udp {
                source_port: 45123,
                destination_port: 53,
            })),
        }),
        source: ep("default", "xwing", 6305),
        destination: ep("kube-system", "coredns-674b8bbfcf-pdpmn", 3810),
        r#type: flow::FlowType::L7 as i32,
        node_name: "kind-worker".to_string(),
        l7: Some(flow::Layer7 {
            r#type: flow::L7FlowType::Request as i32,
            latency_ns: 0,
            record: Some(layer7::Record::Dns(flow::Dns {
                query: "deathstar.default.svc.cluster.local.".to_string(),
                qtypes: vec!["A".to_string()],
                observation_source: "proxy".to_string(),
                ..Default::default()
            })),
        }),
        event_type: event(129, 0),
        is_reply: reply(false),
        traffic_direction: flow::TrafficDirection::Egress as i32,
        summary: "DNS Query deathstar.default.svc.cluster.local. A".to_string(),
        ..Default::default()
    }
}

/// An HTTP request dropped by an L7 policy (the seed's exhaust-port PUT).
#[allow(deprecated)]
pub fn http_request() -> Flow {
    Flow {
        time: ts(1_721_918_231, 689_123_456),
        verdict: flow::Verdict::Dropped as i32,
        ip: ip("10.200.1.20", "10.200.1.30"),
        l4: tcp(49534, 80, flow::TcpFlags::default()),
        source: ep("default", "tiefighter", 62396),
        destination: ep("default", "deathstar-8c4c77fb7-8wdts", 50122),
        r#type: flow::FlowType::L7 as i32,
        node_name: "kind-worker".to_string(),
        l7: Some(flow::Layer7 {
            r#type: flow::L7FlowType::Request as i32,
            latency_ns: 0,
            record: Some(layer7::Record::Http(flow::Http {
                method: "PUT".to_string(),
                url: "http://deathstar.default.svc.cluster.local/v1/exhaust-port".to_string(),
                protocol: "HTTP/1.1".to_string(),
                ..Default::default()
            })),
        }),
        event_type: event(129, 0),
        is_reply: reply(false),
        traffic_direction: flow::TrafficDirection::Ingress as i32,
        summary: "HTTP/1.1 PUT http://deathstar.default.svc.cluster.local/v1/exhaust-port"
            .to_string(),
        ..Default::default()
    }
}

/// An L3-L4 ingress policy verdict that allowed tiefighter.
#[allow(deprecated)]
pub fn policy_verdict() -> Flow {
    Flow {
        time: ts(1_721_922_966, 51_000_000),
        verdict: flow::Verdict::Forwarded as i32,
        ip: ip("10.200.1.20", "10.200.1.30"),
        l4: tcp(
            51000,
            80,
            flow::TcpFlags {
                syn: true,
                ..Default::default()
            },
        ),
        source: ep("default", "tiefighter", 62396),
        destination: ep("default", "deathstar-8c4c77fb7-8wdts", 50122),
        r#type: flow::FlowType::L3L4 as i32,
        node_name: "kind-worker".to_string(),
        event_type: event(5, 0),
        traffic_direction: flow::TrafficDirection::Ingress as i32,
        policy_match_type: 2,
        ingress_allowed_by: vec![flow::Policy {
            name: "rule1".to_string(),
            namespace: "default".to_string(),
            kind: "CiliumNetworkPolicy".to_string(),
            ..Default::default()
        }],
        summary: "TCP Flags: SYN".to_string(),
        ..Default::default()
    }
}

/// Host to kube-apiserver, as in the seed (`(host)` and `(kube-apiserver)`).
#[allow(deprecated)]
pub fn host_to_apiserver() -> Flow {
    Flow {
        time: ts(1_721_920_511, 670_000_000),
        verdict: flow::Verdict::Forwarded as i32,
        ip: ip("192.168.10.102", "192.168.10.100"),
        l4: tcp(
            37974,
            6443,
            flow::TcpFlags {
                ack: true,
                ..Default::default()
            },
        ),
        source: Some(flow::Endpoint {
            identity: 1,
            ..Default::default()
        }),
        destination: Some(flow::Endpoint {
            identity: 7,
            ..Default::default()
        }),
        r#type: flow::FlowType::L3L4 as i32,
        node_name: "k8s-w2".to_string(),
        event_type: event(4, 11),
        is_reply: reply(false),
        summary: "TCP Flags: ACK".to_string(),
        ..Default::default()
    }
}

/// The flows above, in order.
pub fn flows() -> Vec<GetFlowsResponse> {
    [
        trace_to_endpoint(),
        policy_drop(),
        reply_to_network(),
        icmp_echo(),
        dns_request(),
        http_request(),
        policy_verdict(),
        host_to_apiserver(),
    ]
    .into_iter()
    .map(wrap)
    .collect()
}

/// A ring buffer loss reported by the observer.
pub fn lost_events() -> GetFlowsResponse {
    GetFlowsResponse {
        node_name: "kind-worker".to_string(),
        time: ts(1_721_923_702, 0),
        response_types: Some(ResponseTypes::LostEvents(flow::LostEvent {
            source: flow::LostEventSource::HubbleRingBuffer as i32,
            num_events_lost: 42,
            cpu: Some(pbjson_types::Int32Value { value: 1 }),
            first: ts(1_721_923_701, 0),
            last: ts(1_721_923_702, 0),
        })),
    }
}

/// A relay reporting an unavailable node.
pub fn node_unavailable() -> GetFlowsResponse {
    GetFlowsResponse {
        node_name: "hubble-relay".to_string(),
        time: ts(1_721_923_703, 500_000_000),
        response_types: Some(ResponseTypes::NodeStatus(relay::NodeStatusEvent {
            state_change: relay::NodeState::NodeUnavailable as i32,
            node_names: vec!["kind-worker2".to_string()],
            message: String::new(),
        })),
    }
}

/// A relay reporting connected nodes (shown only with `--debug`).
pub fn node_connected() -> GetFlowsResponse {
    GetFlowsResponse {
        node_name: "hubble-relay".to_string(),
        time: ts(1_721_923_703, 600_000_000),
        response_types: Some(ResponseTypes::NodeStatus(relay::NodeStatusEvent {
            state_change: relay::NodeState::NodeConnected as i32,
            node_names: vec!["kind-control-plane".to_string(), "kind-worker".to_string()],
            message: String::new(),
        })),
    }
}

/// A relay reporting an error on a node.
pub fn node_error() -> GetFlowsResponse {
    GetFlowsResponse {
        node_name: "hubble-relay".to_string(),
        time: ts(1_721_923_703, 700_000_000),
        response_types: Some(ResponseTypes::NodeStatus(relay::NodeStatusEvent {
            state_change: relay::NodeState::NodeError as i32,
            node_names: vec!["kind-worker3".to_string()],
            message: "connection refused".to_string(),
        })),
    }
}
