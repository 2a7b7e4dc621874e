#![allow(deprecated)]

use std::collections::HashMap;

use ebpf_events::abi::{EventHeader, PolicyVerdictInfo, EVENT_FLAG_TO_ENDPOINT};
use ebpf_events::constants::{
    drop_reason, message_type, policy_action, policy_match, trace_point, trace_reason,
};
use ebpf_events::encode::{encode_record, ipv4_tcp_frame};

use super::*;

struct Endpoints(HashMap<IpAddr, flow::Endpoint>);

impl EndpointGetter for Endpoints {
    fn endpoint_by_ip(&self, ip: IpAddr) -> Option<flow::Endpoint> {
        self.0.get(&ip).cloned()
    }
}

struct Identities;

impl IdentityGetter for Identities {
    fn identity_labels(&self, identity: u32) -> Option<Vec<String>> {
        (identity == 2).then(|| vec!["reserved:world".to_string()])
    }
}

/// xwing (endpoint 1899) looked up `www.google.com` (1.1.1.1 here) and the
/// deathstar (1224) looked up 192.0.2.99 as `rebel-base.example`.
struct Names;

impl DnsGetter for Names {
    fn names_of(&self, endpoint_id: u32, ip: IpAddr) -> Vec<String> {
        match (endpoint_id, ip.to_string().as_str()) {
            (1899, "1.1.1.1") => vec!["www.google.com".to_string()],
            (1224, "192.0.2.99") => vec!["rebel-base.example".to_string()],
            _ => Vec::new(),
        }
    }
}

const XWING: &str = "10.200.1.12";
const DEATHSTAR: &str = "10.200.1.10";
const DEATHSTAR_VIP: &str = "10.96.60.53";

/// `default/deathstar` at 10.96.60.53:80/TCP with backend 10.200.1.10:80.
struct Services;

impl ServiceGetter for Services {
    fn service_by_frontend(&self, ip: IpAddr, port: u16, protocol: u8) -> Option<flow::Service> {
        (ip.to_string() == DEATHSTAR_VIP && port == 80 && protocol == 6).then(deathstar)
    }

    fn service_by_backend(&self, ip: IpAddr, port: u16) -> Option<flow::Service> {
        (ip.to_string() == DEATHSTAR && port == 80).then(deathstar)
    }
}

fn deathstar() -> flow::Service {
    flow::Service {
        name: "deathstar".into(),
        namespace: "default".into(),
    }
}

fn pod(id: u32, identity: u32, name: &str, labels: &[&str]) -> flow::Endpoint {
    flow::Endpoint {
        id,
        identity,
        namespace: "default".into(),
        pod_name: name.into(),
        labels: labels.iter().map(|l| l.to_string()).collect(),
        cluster_name: "default".into(),
        ..Default::default()
    }
}

fn parser() -> Parser {
    let mut eps = HashMap::new();
    eps.insert(
        XWING.parse().unwrap(),
        pod(
            1899,
            6305,
            "xwing",
            &["k8s:class=xwing", "k8s:org=alliance"],
        ),
    );
    eps.insert(
        DEATHSTAR.parse().unwrap(),
        pod(
            1224,
            50122,
            "deathstar-1",
            &["k8s:class=deathstar", "k8s:org=empire"],
        ),
    );
    Parser::new(
        "node1",
        KtimeClock::with_offset_ns(1_753_456_000_000_000_000),
        Getters {
            endpoints: Some(Arc::new(Endpoints(eps))),
            identities: Some(Arc::new(Identities)),
            links: None,
            cgroups: Some(Arc::new(Cgroups)),
            services: Some(Arc::new(Services)),
            dns: Some(Arc::new(Names)),
        },
    )
}

/// xwing's processes run in cgroup 7275.
struct Cgroups;

impl CgroupGetter for Cgroups {
    fn endpoint_ip_by_cgroup(&self, cgroup_id: u64, ipv6: bool) -> Option<IpAddr> {
        (cgroup_id == 7275 && !ipv6).then(|| XWING.parse().unwrap())
    }
}

/// An Ethernet + IPv4 + TCP frame between two address texts.
fn tcp_frame(src: &str, dst: &str, sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let address = |text: &str| text.parse().expect("an IPv4 address");
    ipv4_tcp_frame(address(src), address(dst), sport, dport, flags)
}

fn header(msg_type: u8, subtype: u8, source: u16, reason: u8) -> EventHeader {
    EventHeader {
        msg_type,
        subtype,
        source,
        ifindex: 7,
        ktime_ns: 42_942_000_000,
        orig_len: 54,
        src_identity: 6305,
        dst_identity: 50122,
        reason,
        ..Default::default()
    }
}

fn json_without_uuid(mut flow: Flow) -> String {
    assert_eq!(flow.uuid.len(), 36, "flows carry a UUID");
    flow.uuid.clear();
    proto::json::to_string(&flow)
}

#[test]
fn policy_denied_drop_is_the_seed_flow() {
    let mut h = header(message_type::DROP, drop_reason::POLICY_DENIED, 1224, 0);
    h.flags = EVENT_FLAG_TO_ENDPOINT;
    let record = encode_record(&h, None, &tcp_frame(XWING, DEATHSTAR, 38870, 80, 0x02));
    let flow = parser().parse(&record).unwrap();
    expect_test::expect![[r#"{"time":"2025-07-25T15:07:22.942Z","verdict":"DROPPED","drop_reason":133,"ethernet":{"source":"aa:bb:cc:00:00:01","destination":"aa:bb:cc:00:00:02"},"IP":{"source":"10.200.1.12","destination":"10.200.1.10","ipVersion":"IPv4"},"l4":{"TCP":{"source_port":38870,"destination_port":80,"flags":{"SYN":true}}},"source":{"ID":1899,"identity":6305,"cluster_name":"default","namespace":"default","labels":["k8s:class=xwing","k8s:org=alliance"],"pod_name":"xwing"},"destination":{"ID":1224,"identity":50122,"cluster_name":"default","namespace":"default","labels":["k8s:class=deathstar","k8s:org=empire"],"pod_name":"deathstar-1"},"Type":"L3_L4","node_name":"node1","event_type":{"type":1,"sub_type":133},"traffic_direction":"INGRESS","drop_reason_desc":"POLICY_DENIED","Summary":"TCP Flags: SYN"}"#]]
    .assert_eq(&json_without_uuid(flow));
}

#[test]
fn trace_to_endpoint_reply_and_direction() {
    let h = header(
        message_type::TRACE,
        trace_point::TO_LXC,
        1224,
        trace_reason::NEW,
    );
    let flow = parser()
        .parse(&encode_record(
            &h,
            None,
            &tcp_frame(XWING, DEATHSTAR, 38870, 80, 0x02),
        ))
        .unwrap();
    assert_eq!(flow.verdict, flow::Verdict::Forwarded as i32);
    assert_eq!(
        flow.trace_observation_point,
        flow::TraceObservationPoint::ToEndpoint as i32
    );
    assert_eq!(
        flow.traffic_direction,
        flow::TrafficDirection::Ingress as i32
    );
    assert_eq!(flow.is_reply.map(|r| r.value), Some(false));
    assert_eq!(flow.interface.as_ref().map(|i| i.index), Some(7));

    // The SYN-ACK leaving deathstar: a reply, seen at deathstar's veth: ingress of the
    // connection (deathstar is the destination of the original direction).
    let mut h = header(
        message_type::TRACE,
        trace_point::TO_STACK,
        1224,
        trace_reason::REPLY,
    );
    h.src_identity = 50122;
    h.dst_identity = 6305;
    let flow = parser()
        .parse(&encode_record(
            &h,
            None,
            &tcp_frame(DEATHSTAR, XWING, 80, 38870, 0x12),
        ))
        .unwrap();
    assert_eq!(flow.is_reply.map(|r| r.value), Some(true));
    assert_eq!(
        flow.traffic_direction,
        flow::TrafficDirection::Ingress as i32
    );
    assert_eq!(flow.summary, "TCP Flags: SYN, ACK");
    assert_eq!(flow.trace_reason, flow::TraceReason::Reply as i32);
}

#[test]
fn policy_verdict_carries_match_type_and_remote_identity() {
    let h = header(message_type::POLICY_VERDICT, 0, 1224, 0);
    let info = PolicyVerdictInfo {
        remote_identity: 6305,
        dport: 80,
        protocol: 6,
        direction: 0,
        match_type: policy_match::L3_L4,
        action: policy_action::DENIED,
        ..Default::default()
    };
    let record = encode_record(
        &h,
        Some(&info),
        &tcp_frame(XWING, DEATHSTAR, 38870, 80, 0x02),
    );
    let flow = parser().parse(&record).unwrap();
    assert_eq!(flow.verdict, flow::Verdict::Dropped as i32);
    assert_eq!(flow.policy_match_type, 2);
    assert_eq!(flow.drop_reason_desc, flow::DropReason::PolicyDenied as i32);
    assert_eq!(
        flow.traffic_direction,
        flow::TrafficDirection::Ingress as i32
    );
    assert_eq!(flow.source.as_ref().map(|s| s.identity), Some(6305));
    assert_eq!(flow.event_type.as_ref().map(|e| e.r#type), Some(5));
}

#[test]
fn redirected_verdict_and_to_proxy_trace_name_the_proxy_port() {
    // The deathstar's ingress policy redirects to the proxy on port 15001.
    let h = header(message_type::POLICY_VERDICT, 0, 1224, 0);
    let info = PolicyVerdictInfo {
        remote_identity: 6305,
        dport: 80,
        protocol: 6,
        direction: 0,
        match_type: policy_match::L3_L4,
        action: policy_action::REDIRECTED,
        proxy_port: 15001,
        ..Default::default()
    };
    let record = encode_record(
        &h,
        Some(&info),
        &tcp_frame(XWING, DEATHSTAR, 38870, 80, 0x02),
    );
    let flow = parser().parse(&record).unwrap();
    assert_eq!(flow.verdict, flow::Verdict::Redirected as i32);
    assert_eq!(flow.drop_reason_desc, 0);
    assert_eq!(
        flow.is_reply,
        Some(pbjson_types::BoolValue { value: false })
    );
    // Hubble takes the proxy port from to-proxy traces only.
    assert_eq!(flow.proxy_port, 0);

    let mut h = header(
        message_type::TRACE,
        trace_point::TO_PROXY,
        1224,
        trace_reason::NEW,
    );
    h.dst_endpoint = 15001;
    h.flags = EVENT_FLAG_TO_ENDPOINT;
    let record = encode_record(&h, None, &tcp_frame(XWING, DEATHSTAR, 38870, 80, 0x02));
    let flow = parser().parse(&record).unwrap();
    assert_eq!(flow.proxy_port, 15001);
    assert_eq!(flow.verdict, flow::Verdict::Forwarded as i32);
    assert_eq!(
        flow.trace_observation_point,
        flow::TraceObservationPoint::ToProxy as i32
    );
    assert_eq!(
        flow.traffic_direction,
        flow::TrafficDirection::Ingress as i32
    );
}

#[test]
fn unknown_peers_get_identity_labels_and_garbage_is_an_error() {
    let mut h = header(
        message_type::TRACE,
        trace_point::TO_STACK,
        1899,
        trace_reason::NEW,
    );
    h.dst_identity = 2;
    let flow = parser()
        .parse(&encode_record(
            &h,
            None,
            &tcp_frame(XWING, "1.1.1.1", 40000, 443, 0x02),
        ))
        .unwrap();
    let dst = flow.destination.unwrap();
    assert_eq!(
        (dst.identity, dst.labels),
        (2, vec!["reserved:world".to_string()])
    );
    assert_eq!(
        flow.traffic_direction,
        flow::TrafficDirection::Egress as i32
    );
    assert!(parser().parse(&[1, 2, 3]).is_err());
}

#[test]
fn names_come_from_the_endpoint_that_looked_them_up() {
    let h = header(
        message_type::TRACE,
        trace_point::TO_STACK,
        1899,
        trace_reason::NEW,
    );
    let flow = parser()
        .parse(&encode_record(
            &h,
            None,
            &tcp_frame(XWING, "1.1.1.1", 40000, 443, 0x02),
        ))
        .unwrap();
    assert_eq!(flow.destination_names, vec!["www.google.com".to_string()]);
    assert!(flow.source_names.is_empty());
    // Into the deathstar: its own lookups name the source.
    let flow = parser()
        .parse(&encode_record(
            &header(
                message_type::TRACE,
                trace_point::TO_LXC,
                1224,
                trace_reason::NEW,
            ),
            None,
            &tcp_frame("192.0.2.99", DEATHSTAR, 40000, 80, 0x02),
        ))
        .unwrap();
    assert_eq!(flow.source_names, vec!["rebel-base.example".to_string()]);
    assert!(flow.destination_names.is_empty());
}

#[test]
fn icmp_and_udp_summaries() {
    let mut frame = tcp_frame(XWING, DEATHSTAR, 0, 0, 0);
    frame[23] = 1; // ICMP
    frame.truncate(34);
    frame.extend_from_slice(&[8, 0, 0, 0, 0, 1, 0, 1]);
    assert_eq!(decode_packet(&frame).summary, "ICMPv4 EchoRequest");
    frame[34] = 3;
    frame[35] = 3;
    assert_eq!(
        decode_packet(&frame).summary,
        "ICMPv4 DestinationUnreachable(Port)"
    );
    let mut udp = tcp_frame(XWING, DEATHSTAR, 5353, 53, 0);
    udp[23] = 17;
    let packet = decode_packet(&udp);
    assert_eq!(packet.summary, "UDP");
    assert!(
        matches!(packet.l4.and_then(|l| l.protocol), Some(layer4_udp) if matches!(layer4_udp, proto::flow::layer4::Protocol::Udp(ref u) if u.destination_port == 53))
    );
}

proptest::proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
        let _ = decode_packet(&bytes);
        let _ = parser().parse(&bytes);
    }
}

fn sock_record(point: u8, cgroup_id: u64, dst: &str, port: u16, proto: u8) -> Vec<u8> {
    let header = EventHeader {
        subtype: point,
        ktime_ns: 5_000,
        ..Default::default()
    };
    let sock = ebpf_events::abi::TraceSockInfo {
        sock_cookie: 9612,
        cgroup_id,
        dst_port: port,
        l4_proto: proto,
        ..Default::default()
    };
    ebpf_events::encode::encode_trace_sock(&header, &sock, dst.parse().unwrap())
}

#[test]
fn socket_translations_become_sock_flows_as_hubble_fills_them() {
    use ebpf_events::abi::lb::{l4_protocol, xlate_point};
    let parser = parser();
    let pre = parser
        .parse(&sock_record(
            xlate_point::PRE_DIRECTION_FWD,
            7275,
            "10.96.60.53",
            80,
            l4_protocol::TCP,
        ))
        .expect("pre-xlate-fwd");
    assert_eq!(pre.r#type, flow::FlowType::Sock as i32);
    assert_eq!(pre.verdict, flow::Verdict::Traced as i32);
    assert_eq!(
        pre.sock_xlate_point,
        flow::SocketTranslationPoint::SockXlatePointPreDirectionFwd as i32
    );
    assert_eq!(pre.socket_cookie, 9612);
    assert_eq!(pre.cgroup_id, 7275);
    assert_eq!(pre.summary, "TCP");
    assert_eq!(
        pre.event_type.as_ref().map(|e| (e.r#type, e.sub_type)),
        Some((7, 1))
    );
    let ip = pre.ip.as_ref().expect("ip");
    assert_eq!(
        (ip.source.as_str(), ip.destination.as_str()),
        (XWING, "10.96.60.53")
    );
    let src = pre.source.as_ref().expect("source");
    assert_eq!((src.pod_name.as_str(), src.identity), ("xwing", 6305));
    let dst = pre.destination.as_ref().expect("destination");
    assert_eq!(dst.identity, 2, "an unknown address is world");
    assert_eq!(dst.labels, vec!["reserved:world".to_string()]);
    let Some(flow::layer4::Protocol::Tcp(tcp)) = pre.l4.and_then(|l4| l4.protocol) else {
        panic!("TCP");
    };
    assert_eq!((tcp.source_port, tcp.destination_port), (0, 80));
    assert!(pre.is_reply.is_none(), "printed with <>");
    assert_eq!(pre.destination_service, Some(deathstar()), "the VIP");

    let post = parser
        .parse(&sock_record(
            xlate_point::POST_DIRECTION_FWD,
            7275,
            DEATHSTAR,
            80,
            l4_protocol::TCP,
        ))
        .expect("post-xlate-fwd");
    assert_eq!(post.verdict, flow::Verdict::Translated as i32);
    assert_eq!(post.destination_service, Some(deathstar()), "the backend");
    let dst = post.destination.as_ref().expect("destination");
    assert_eq!(
        (dst.pod_name.as_str(), dst.identity),
        ("deathstar-1", 50122)
    );

    // Reverse: the peer becomes the source, the socket's owner the destination.
    let rev = parser
        .parse(&sock_record(
            xlate_point::POST_DIRECTION_REV,
            7275,
            "10.96.0.10",
            53,
            l4_protocol::UDP,
        ))
        .expect("post-xlate-rev");
    assert_eq!(rev.verdict, flow::Verdict::Translated as i32);
    let ip = rev.ip.as_ref().expect("ip");
    assert_eq!(
        (ip.source.as_str(), ip.destination.as_str()),
        ("10.96.0.10", XWING)
    );
    let Some(flow::layer4::Protocol::Udp(udp)) = rev.l4.and_then(|l4| l4.protocol) else {
        panic!("UDP");
    };
    assert_eq!((udp.source_port, udp.destination_port), (53, 0));
    assert_eq!(rev.summary, "UDP");

    // A socket of no known endpoint is skipped, as Hubble does.
    assert!(matches!(
        parser.parse(&sock_record(
            xlate_point::PRE_DIRECTION_FWD,
            1,
            "10.96.60.53",
            80,
            l4_protocol::TCP
        )),
        Err(ParseError::Skipped(_))
    ));
}

#[test]
fn services_by_frontend_and_for_translated_flows_by_backend() {
    let h = header(
        message_type::TRACE,
        trace_point::FROM_LXC,
        1899,
        trace_reason::NEW,
    );
    let to_vip = parser()
        .parse(&encode_record(
            &h,
            None,
            &tcp_frame(XWING, DEATHSTAR_VIP, 38870, 80, 0x02),
        ))
        .unwrap();
    assert_eq!(to_vip.destination_service, Some(deathstar()));
    assert_eq!(to_vip.source_service, None);
    assert!(
        json_without_uuid(to_vip.clone())
            .contains(r#""destination_service":{"name":"deathstar","namespace":"default"}"#),
        "{to_vip:?}"
    );
    // A reply from the VIP (tc-level translation) names the source service.
    let reply = parser()
        .parse(&encode_record(
            &h,
            None,
            &tcp_frame(DEATHSTAR_VIP, XWING, 80, 38870, 0x12),
        ))
        .unwrap();
    assert_eq!(reply.source_service, Some(deathstar()));

    // A plain flow to a backend is not a service flow; a translated one is.
    let mut to_backend = parser()
        .parse(&encode_record(
            &h,
            None,
            &tcp_frame(XWING, DEATHSTAR, 38870, 80, 0x02),
        ))
        .unwrap();
    assert_eq!(to_backend.destination_service, None);
    parser().fill_services(&mut to_backend, true);
    assert_eq!(to_backend.destination_service, Some(deathstar()));
    // Another port of the backend is not the service.
    let mut other_port = parser()
        .parse(&encode_record(
            &h,
            None,
            &tcp_frame(XWING, DEATHSTAR, 38870, 8080, 0x02),
        ))
        .unwrap();
    parser().fill_services(&mut other_port, true);
    assert_eq!(other_port.destination_service, None);
}
