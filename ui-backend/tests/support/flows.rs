//! Star Wars demo flows, built as the agent would report them.
// `Summary` and `drop_reason` are deprecated in the API but still sent by agents.
#![allow(deprecated)]

use std::time::{SystemTime, UNIX_EPOCH};

use proto::flow::{
    layer4, layer7, CiliumEventType, Dns, DropReason, Endpoint, Flow, FlowType, Http, IcmPv4,
    IcmPv6, Ip, IpVersion, L7FlowType, Layer4, Layer7, Service, SocketTranslationPoint, Tcp,
    TcpFlags, TraceObservationPoint, TrafficDirection, Udp, Verdict,
};

use super::server::NODE_NAME;

/// A pod of the demo: namespace, pod name, IP, identity and labels.
#[derive(Debug, Clone, Copy)]
pub struct Pod {
    pub namespace: &'static str,
    pub name: &'static str,
    pub ip: &'static str,
    pub identity: u32,
    pub labels: &'static [&'static str],
}

pub const TIEFIGHTER: Pod = Pod {
    namespace: "default",
    name: "tiefighter",
    ip: "10.200.1.11",
    identity: 258,
    labels: &["k8s:class=tiefighter", "k8s:org=empire"],
};
pub const XWING: Pod = Pod {
    namespace: "default",
    name: "xwing",
    ip: "10.200.1.12",
    identity: 259,
    labels: &["k8s:class=xwing", "k8s:org=alliance"],
};
pub const DEATHSTAR_1: Pod = Pod {
    namespace: "default",
    name: "deathstar-1",
    ip: "10.200.1.21",
    identity: 256,
    labels: &["k8s:class=deathstar", "k8s:org=empire"],
};
pub const DEATHSTAR_2: Pod = Pod {
    namespace: "default",
    name: "deathstar-2",
    ip: "10.200.1.22",
    identity: 256,
    labels: &["k8s:class=deathstar", "k8s:org=empire"],
};
pub const COREDNS: Pod = Pod {
    namespace: "kube-system",
    name: "coredns-7db6d8ff4d-x2k9p",
    ip: "10.200.1.2",
    identity: 102,
    labels: &["k8s:k8s-app=kube-dns"],
};

impl Pod {
    fn endpoint(&self) -> Endpoint {
        Endpoint {
            identity: self.identity,
            namespace: self.namespace.to_string(),
            pod_name: self.name.to_string(),
            labels: self.labels.iter().map(|l| l.to_string()).collect(),
            ..Endpoint::default()
        }
    }
}

fn now() -> pbjson_types::Timestamp {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970");
    pbjson_types::Timestamp {
        seconds: since.as_secs() as i64,
        nanos: since.subsec_nanos() as i32,
    }
}

/// Cilium's monitor message types.
const MESSAGE_TYPE_DROP: i32 = 1;
const MESSAGE_TYPE_TRACE: i32 = 4;
const MESSAGE_TYPE_POLICY_VERDICT: i32 = 5;
const MESSAGE_TYPE_TRACE_SOCK: i32 = 7;
const MESSAGE_TYPE_ACCESS_LOG: i32 = 129;
/// Trace sub-type of packets delivered to an endpoint (`to-endpoint`).
const TRACE_TO_LXC: i32 = 0;

fn event_type(r#type: i32, sub_type: i32) -> Option<CiliumEventType> {
    Some(CiliumEventType { r#type, sub_type })
}

/// A forwarded packet traced as delivered to `dst` (`to-endpoint`), or a dropped one as
/// the drop event of a policy denial (`Policy denied`).
fn base(src: Pod, dst: Pod, verdict: Verdict) -> Flow {
    let (event, point) = if verdict == Verdict::Dropped {
        (
            event_type(MESSAGE_TYPE_DROP, DropReason::PolicyDenied as i32),
            TraceObservationPoint::UnknownPoint,
        )
    } else {
        (
            event_type(MESSAGE_TYPE_TRACE, TRACE_TO_LXC),
            TraceObservationPoint::ToEndpoint,
        )
    };
    Flow {
        event_type: event,
        trace_observation_point: point as i32,
        traffic_direction: TrafficDirection::Ingress as i32,
        time: Some(now()),
        verdict: verdict as i32,
        ip: Some(Ip {
            source: src.ip.to_string(),
            destination: dst.ip.to_string(),
            ip_version: IpVersion::IPv4 as i32,
            ..Ip::default()
        }),
        source: Some(src.endpoint()),
        destination: Some(dst.endpoint()),
        r#type: FlowType::L3L4 as i32,
        node_name: NODE_NAME.to_string(),
        is_reply: Some(pbjson_types::BoolValue { value: false }),
        ..Flow::default()
    }
}

/// A TCP SYN from `src` to `dst:port` with `verdict` (drops are policy denials).
pub fn tcp_syn(src: Pod, dst: Pod, port: u32, verdict: Verdict) -> Flow {
    let mut flow = base(src, dst, verdict);
    flow.l4 = Some(Layer4 {
        protocol: Some(layer4::Protocol::Tcp(Tcp {
            source_port: 38000 + (flow.time.as_ref().map_or(0, |t| t.nanos) as u32 % 20000),
            destination_port: port,
            flags: Some(TcpFlags {
                syn: true,
                ..TcpFlags::default()
            }),
        })),
    });
    flow.summary = "TCP Flags: SYN".to_string();
    if verdict == Verdict::Dropped {
        flow.drop_reason_desc = DropReason::PolicyDenied as i32;
        flow.drop_reason = 133;
    }
    flow
}

/// An HTTP request seen by the proxy.
pub fn http_request(src: Pod, dst: Pod, method: &str, url: &str, code: u32) -> Flow {
    let mut flow = tcp_syn(src, dst, 80, Verdict::Forwarded);
    flow.r#type = FlowType::L7 as i32;
    flow.event_type = event_type(MESSAGE_TYPE_ACCESS_LOG, 0);
    flow.trace_observation_point = TraceObservationPoint::UnknownPoint as i32;
    flow.l7 = Some(Layer7 {
        r#type: L7FlowType::Request as i32,
        latency_ns: 0,
        record: Some(layer7::Record::Http(Http {
            code,
            method: method.to_string(),
            url: format!("http://deathstar.default.svc.cluster.local{url}"),
            protocol: "HTTP/1.1".to_string(),
            headers: Vec::new(),
        })),
    });
    flow.summary = format!("HTTP/1.1 {method} {url}");
    flow
}

/// A DNS query to CoreDNS.
pub fn dns_query(src: Pod, name: &str) -> Flow {
    let mut flow = base(src, COREDNS, Verdict::Forwarded);
    flow.l4 = Some(Layer4 {
        protocol: Some(layer4::Protocol::Udp(Udp {
            source_port: 53001,
            destination_port: 53,
        })),
    });
    flow.r#type = FlowType::L7 as i32;
    flow.event_type = event_type(MESSAGE_TYPE_ACCESS_LOG, 0);
    flow.trace_observation_point = TraceObservationPoint::UnknownPoint as i32;
    flow.l7 = Some(Layer7 {
        r#type: L7FlowType::Request as i32,
        latency_ns: 0,
        record: Some(layer7::Record::Dns(Dns {
            query: name.to_string(),
            qtypes: vec!["A".to_string()],
            ..Dns::default()
        })),
    });
    flow.summary = format!("DNS Query {name} A");
    flow
}

/// The demo before the policy: everyone may land.
pub fn before_policy() -> Vec<Flow> {
    vec![
        dns_query(TIEFIGHTER, "deathstar.default.svc.cluster.local."),
        tcp_syn(TIEFIGHTER, DEATHSTAR_1, 80, Verdict::Forwarded),
        http_request(TIEFIGHTER, DEATHSTAR_1, "POST", "/v1/request-landing", 200),
        dns_query(XWING, "deathstar.default.svc.cluster.local."),
        tcp_syn(XWING, DEATHSTAR_2, 80, Verdict::Forwarded),
        tcp_syn(TIEFIGHTER, DEATHSTAR_2, 80, Verdict::Forwarded),
        tcp_syn(XWING, DEATHSTAR_1, 80, Verdict::Forwarded),
    ]
}

/// The demo after `rule1`: xwing's SYNs are denied, tiefighter still lands.
pub fn after_policy() -> Vec<Flow> {
    vec![
        tcp_syn(XWING, DEATHSTAR_1, 80, Verdict::Dropped),
        tcp_syn(TIEFIGHTER, DEATHSTAR_2, 80, Verdict::Forwarded),
        tcp_syn(XWING, DEATHSTAR_2, 80, Verdict::Dropped),
        tcp_syn(XWING, DEATHSTAR_1, 80, Verdict::Dropped),
    ]
}

/// An ICMPv4 echo request from `src` to `dst`, forwarded.
pub fn icmp_echo(src: Pod, dst: Pod) -> Flow {
    let mut flow = base(src, dst, Verdict::Forwarded);
    flow.l4 = Some(Layer4 {
        protocol: Some(layer4::Protocol::IcmPv4(IcmPv4 { r#type: 8, code: 0 })),
    });
    flow.summary = "ICMPv4 EchoRequest".to_string();
    flow
}

/// A denied SYN as the datapath reports it: the policy-verdict event
/// (`policy-verdict:none INGRESS DENIED`) and the drop event (`Policy denied DROPPED`)
/// of the same packet.
pub fn denied_syn(src: Pod, dst: Pod, port: u32) -> [Flow; 2] {
    let drop = tcp_syn(src, dst, port, Verdict::Dropped);
    let mut verdict = drop.clone();
    verdict.event_type = event_type(MESSAGE_TYPE_POLICY_VERDICT, 0);
    verdict.policy_match_type = 0;
    [verdict, drop]
}

/// An MLDv2 report from the node into `pod`'s veth, as the kernel datapath sees it:
/// `fe80::1 (host) -> ff02::16 (ID:n) to-endpoint FORWARDED`, the destination with the
/// pod's identity and labels but no pod name (names are looked up by the group address).
pub fn multicast_listener_report(pod: Pod) -> Flow {
    let mut flow = base(pod, pod, Verdict::Forwarded);
    flow.ip = Some(Ip {
        source: "fe80::1".to_string(),
        destination: "ff02::16".to_string(),
        ip_version: IpVersion::IPv6 as i32,
        ..Ip::default()
    });
    flow.source = Some(Endpoint {
        identity: 1,
        labels: vec!["reserved:host".to_string()],
        ..Endpoint::default()
    });
    flow.destination = Some(Endpoint {
        identity: pod.identity,
        labels: pod.labels.iter().map(|l| l.to_string()).collect(),
        ..Endpoint::default()
    });
    flow.l4 = Some(Layer4 {
        protocol: Some(layer4::Protocol::IcmPv6(IcmPv6 {
            r#type: 143,
            code: 0,
        })),
    });
    flow.summary = "ICMPv6 MulticastListenerReportV2".to_string();
    flow
}

/// A request from outside the cluster to `dst:port`, forwarded.
pub fn from_world(dst: Pod, port: u32) -> Flow {
    let mut flow = tcp_syn(dst, dst, port, Verdict::Forwarded);
    if let Some(ip) = flow.ip.as_mut() {
        ip.source = "192.0.2.10".to_string();
    }
    flow.source = Some(Endpoint {
        identity: 2,
        labels: vec!["reserved:world".to_string()],
        ..Endpoint::default()
    });
    flow
}

/// The demo before the policy as the page sees it live: [`before_policy`] with pings
/// next to the HTTP on one edge, a client outside the cluster, and the multicast noise
/// that must not reach the map.
pub fn before_policy_as_observed() -> Vec<Flow> {
    let mut flows = before_policy();
    flows.push(icmp_echo(TIEFIGHTER, DEATHSTAR_1));
    flows.push(multicast_listener_report(XWING));
    flows.push(multicast_listener_report(COREDNS));
    flows.push(from_world(DEATHSTAR_2, 80));
    flows.push(icmp_echo(TIEFIGHTER, DEATHSTAR_2));
    flows
}

/// [`after_policy`] with each denied SYN reported twice, by its policy-verdict event and
/// by its drop event.
pub fn after_policy_as_observed() -> Vec<Flow> {
    let mut flows = Vec::new();
    flows.extend(denied_syn(XWING, DEATHSTAR_1, 80));
    flows.push(tcp_syn(TIEFIGHTER, DEATHSTAR_2, 80, Verdict::Forwarded));
    flows.extend(denied_syn(XWING, DEATHSTAR_2, 80));
    flows.extend(denied_syn(XWING, DEATHSTAR_1, 80));
    flows.push(multicast_listener_report(TIEFIGHTER));
    flows
}

/// The address of the demo's `deathstar` service.
pub const DEATHSTAR_VIP: &str = "10.96.60.53";

fn deathstar_service() -> Option<Service> {
    Some(Service {
        name: "deathstar".to_string(),
        namespace: "default".to_string(),
    })
}

/// A socket translation of a connection from `src` to the deathstar service, as the
/// socket load balancer reports it: before translation the destination is the service
/// address (`world` to the datapath), after it `backend`.
pub fn sock_xlate(src: Pod, backend: Pod, point: SocketTranslationPoint) -> Flow {
    let mut flow = tcp_syn(src, backend, 80, Verdict::Translated);
    flow.r#type = FlowType::Sock as i32;
    flow.event_type = event_type(MESSAGE_TYPE_TRACE_SOCK, point as i32);
    flow.trace_observation_point = TraceObservationPoint::UnknownPoint as i32;
    flow.sock_xlate_point = point as i32;
    flow.is_reply = None;
    flow.summary = "TCP".to_string();
    if point == SocketTranslationPoint::SockXlatePointPreDirectionFwd {
        flow.verdict = Verdict::Traced as i32;
        if let Some(ip) = flow.ip.as_mut() {
            ip.destination = DEATHSTAR_VIP.to_string();
        }
        flow.destination = Some(Endpoint {
            identity: 2,
            labels: vec!["reserved:world".to_string()],
            ..Endpoint::default()
        });
    }
    flow.destination_service = deathstar_service();
    flow
}

/// A SYN from `src` to the deathstar service, delivered to `backend` after translation.
pub fn syn_via_service(src: Pod, backend: Pod, verdict: Verdict) -> Flow {
    let mut flow = tcp_syn(src, backend, 80, verdict);
    flow.destination_service = deathstar_service();
    flow
}

/// Both ships calling the deathstar service: tiefighter's connection translated to
/// deathstar-1, xwing's to deathstar-2 and then dropped there.
pub fn via_service() -> Vec<Flow> {
    use SocketTranslationPoint::{
        SockXlatePointPostDirectionFwd as Post, SockXlatePointPreDirectionFwd as Pre,
    };
    vec![
        sock_xlate(TIEFIGHTER, DEATHSTAR_1, Pre),
        sock_xlate(TIEFIGHTER, DEATHSTAR_1, Post),
        syn_via_service(TIEFIGHTER, DEATHSTAR_1, Verdict::Forwarded),
        sock_xlate(XWING, DEATHSTAR_2, Pre),
        sock_xlate(XWING, DEATHSTAR_2, Post),
        syn_via_service(XWING, DEATHSTAR_2, Verdict::Dropped),
    ]
}
