//! Star Wars demo flows, built as the agent would report them.
// `Summary` and `drop_reason` are deprecated in the API but still sent by agents.
#![allow(deprecated)]

use std::time::{SystemTime, UNIX_EPOCH};

use proto::flow::{
    layer4, layer7, Dns, DropReason, Endpoint, Flow, FlowType, Http, Ip, IpVersion, L7FlowType,
    Layer4, Layer7, Tcp, TcpFlags, Udp, Verdict,
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

fn base(src: Pod, dst: Pod, verdict: Verdict) -> Flow {
    Flow {
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
