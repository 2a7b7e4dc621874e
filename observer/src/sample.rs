//! Flows shaped like the Star Wars demo's traffic (TCP, UDP and ICMP between a handful
//! of pods on one node), for benchmarks, tests and trying the server without a
//! datapath. Values are derived from a counter, so runs are reproducible.

#![allow(deprecated)]

use proto::flow::{self, layer4, Endpoint, Flow};

/// The demo's pods: `(pod, identity, ip, labels)`.
const PODS: &[(&str, u32, &str, &[&str])] = &[
    (
        "deathstar-6c94dcc57b-7xkjw",
        1001,
        "10.200.1.10",
        &[
            "k8s:class=deathstar",
            "k8s:org=empire",
            "k8s:io.kubernetes.pod.namespace=default",
        ],
    ),
    (
        "deathstar-6c94dcc57b-qv5mz",
        1001,
        "10.200.1.11",
        &[
            "k8s:class=deathstar",
            "k8s:org=empire",
            "k8s:io.kubernetes.pod.namespace=default",
        ],
    ),
    (
        "tiefighter",
        1002,
        "10.200.1.13",
        &[
            "k8s:class=tiefighter",
            "k8s:org=empire",
            "k8s:io.kubernetes.pod.namespace=default",
        ],
    ),
    (
        "xwing",
        1003,
        "10.200.1.12",
        &[
            "k8s:class=xwing",
            "k8s:org=alliance",
            "k8s:io.kubernetes.pod.namespace=default",
        ],
    ),
];

/// Builds the endpoint of demo pod `i`.
pub fn endpoint(i: usize) -> Endpoint {
    let (pod, identity, _, labels) = PODS[i % PODS.len()];
    let workload = pod.split('-').next().unwrap_or(pod).to_string();
    Endpoint {
        id: 100 + i as u32,
        identity,
        cluster_name: "default".to_string(),
        namespace: "default".to_string(),
        labels: labels.iter().map(|l| (*l).to_string()).collect(),
        pod_name: pod.to_string(),
        workloads: vec![flow::Workload {
            name: workload,
            kind: "Deployment".to_string(),
        }],
    }
}

/// The `n`-th flow of a demo-like mix: mostly TCP to the deathstars on port 80
/// (xwing's dropped by policy), some DNS-port UDP and some ICMP.
pub fn flow(n: u64) -> Flow {
    let src = match n % 4 {
        0 | 1 => 2,
        2 => 3,
        _ => (n / 4 % 2) as usize * 2 + 1,
    };
    let dst = (n / 3 % 2) as usize;
    let dropped = src == 3 && !n.is_multiple_of(5);
    let (sec, nanos) = (
        1_700_000_000 + (n / 1000) as i64,
        (n % 1000) as i32 * 1_000_000,
    );
    let uuid = format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        n as u32,
        (n >> 32) as u16,
        n % 0xfff,
        n % 0x7ff,
        n.wrapping_mul(0x9e37_79b9) & 0xffff_ffff_ffff
    );
    let l4 = match n % 10 {
        0..=6 => layer4::Protocol::Tcp(flow::Tcp {
            source_port: 30_000 + (n % 20_000) as u32,
            destination_port: 80,
            flags: Some(flow::TcpFlags {
                syn: n.is_multiple_of(7),
                ack: !n.is_multiple_of(7),
                psh: n % 7 == 3,
                fin: n % 7 == 6,
                ..Default::default()
            }),
        }),
        7 | 8 => layer4::Protocol::Udp(flow::Udp {
            source_port: 40_000 + (n % 10_000) as u32,
            destination_port: 53,
        }),
        _ => layer4::Protocol::IcmPv4(flow::IcmPv4 {
            r#type: if n.is_multiple_of(2) { 8 } else { 0 },
            code: 0,
        }),
    };
    Flow {
        time: Some(pbjson_types::Timestamp {
            seconds: sec,
            nanos,
        }),
        uuid,
        verdict: if dropped {
            flow::Verdict::Dropped as i32
        } else {
            flow::Verdict::Forwarded as i32
        },
        drop_reason: if dropped { 133 } else { 0 },
        drop_reason_desc: if dropped {
            flow::DropReason::PolicyDenied as i32
        } else {
            0
        },
        ethernet: Some(flow::Ethernet {
            source: format!("0a:58:0a:c8:01:{:02x}", 10 + src),
            destination: format!("0a:58:0a:c8:01:{:02x}", 10 + dst),
        }),
        ip: Some(flow::Ip {
            source: PODS[src].2.to_string(),
            destination: PODS[dst].2.to_string(),
            ip_version: flow::IpVersion::IPv4 as i32,
            ..Default::default()
        }),
        l4: Some(flow::Layer4 { protocol: Some(l4) }),
        source: Some(endpoint(src)),
        destination: Some(endpoint(dst)),
        r#type: flow::FlowType::L3L4 as i32,
        node_name: "kind-worker".to_string(),
        node_labels: vec![
            "kubernetes.io/hostname=kind-worker".to_string(),
            "kubernetes.io/os=linux".to_string(),
        ],
        event_type: Some(flow::CiliumEventType {
            r#type: if dropped { 1 } else { 4 },
            sub_type: if dropped { 133 } else { 0 },
        }),
        traffic_direction: flow::TrafficDirection::Ingress as i32,
        trace_observation_point: if dropped {
            0
        } else {
            flow::TraceObservationPoint::ToEndpoint as i32
        },
        is_reply: Some(pbjson_types::BoolValue { value: n % 7 > 3 }),
        interface: Some(flow::NetworkInterface {
            index: 10 + dst as u32,
            name: format!("lxc{dst:02x}a1c2d"),
        }),
        ..Default::default()
    }
}

/// Labels every pod of a Kubernetes cluster carries besides its own.
const CLUSTER_LABELS: &[&str] = &[
    "k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name=default",
    "k8s:io.cilium.k8s.policy.cluster=default",
    "k8s:io.cilium.k8s.policy.serviceaccount=default",
];

fn with_cluster_labels(endpoint: &mut Option<Endpoint>) {
    if let Some(endpoint) = endpoint {
        endpoint
            .labels
            .extend(CLUSTER_LABELS.iter().map(|l| (*l).to_string()));
        endpoint.labels.sort();
    }
}

fn policy(name: &str) -> flow::Policy {
    flow::Policy {
        name: name.to_string(),
        namespace: "default".to_string(),
        labels: vec![
            "k8s:io.cilium.k8s.policy.derived-from=CiliumNetworkPolicy".to_string(),
            format!("k8s:io.cilium.k8s.policy.name={name}"),
            "k8s:io.cilium.k8s.policy.namespace=default".to_string(),
            "k8s:io.cilium.k8s.policy.uid=8c4b2f8e-2a5d-4c55-9d0f-6e1a3b7c9d21".to_string(),
        ],
        revision: 7,
        kind: "CiliumNetworkPolicy".to_string(),
    }
}

/// The `n`-th flow of a realistic capture mix, for benchmarks that need flows shaped
/// like a cluster's: half L3/L4 trace events (some dropped by policy), and in equal
/// parts HTTP requests and responses, DNS queries and answers, policy verdicts and
/// drops for other reasons; endpoints carry their cluster's labels. Times advance
/// by 1 ms per flow from [`flow`]'s.
pub fn corpus_flow(n: u64) -> Flow {
    let mut flow = flow(n);
    with_cluster_labels(&mut flow.source);
    with_cluster_labels(&mut flow.destination);
    flow.trace_context = Some(flow::TraceContext {
        parent: Some(flow::TraceParent {
            trace_id: format!("{:032x}", n.wrapping_mul(0x2545_f491_4f6c_dd1d)),
        }),
    });
    match n % 20 {
        // HTTP request and response between a tiefighter and a deathstar.
        10..=12 => {
            let response = n % 2 == 1;
            flow.r#type = flow::FlowType::L7 as i32;
            flow.verdict = flow::Verdict::Forwarded as i32;
            flow.drop_reason = 0;
            flow.drop_reason_desc = 0;
            flow.event_type = Some(flow::CiliumEventType {
                r#type: 129,
                sub_type: 0,
            });
            flow.trace_observation_point = 0;
            flow.is_reply = Some(pbjson_types::BoolValue { value: response });
            let url = if n.is_multiple_of(3) {
                "http://deathstar.default.svc.cluster.local/v1/exhaust-port"
            } else {
                "http://deathstar.default.svc.cluster.local/v1/request-landing"
            };
            flow.l7 = Some(flow::Layer7 {
                r#type: if response {
                    flow::L7FlowType::Response as i32
                } else {
                    flow::L7FlowType::Request as i32
                },
                latency_ns: if response { 180_000 + n % 90_000 } else { 0 },
                record: Some(flow::layer7::Record::Http(flow::Http {
                    code: if response { 200 } else { 0 },
                    method: if n.is_multiple_of(3) { "PUT" } else { "POST" }.to_string(),
                    url: url.to_string(),
                    protocol: "HTTP/1.1".to_string(),
                    headers: vec![
                        flow::HttpHeader {
                            key: ":authority".to_string(),
                            value: "deathstar.default.svc.cluster.local".to_string(),
                        },
                        flow::HttpHeader {
                            key: "User-Agent".to_string(),
                            value: "curl/8.5.0".to_string(),
                        },
                        flow::HttpHeader {
                            key: "X-Request-Id".to_string(),
                            value: format!("{:016x}", n.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
                        },
                    ],
                })),
            });
            flow.destination_service = Some(flow::Service {
                name: "deathstar".to_string(),
                namespace: "default".to_string(),
            });
        }
        // DNS query and answer towards the cluster's resolver.
        13..=15 => {
            let answer = n % 2 == 1;
            flow.r#type = flow::FlowType::L7 as i32;
            flow.verdict = flow::Verdict::Forwarded as i32;
            flow.drop_reason = 0;
            flow.drop_reason_desc = 0;
            flow.event_type = Some(flow::CiliumEventType {
                r#type: 129,
                sub_type: 0,
            });
            flow.trace_observation_point = 0;
            flow.l4 = Some(flow::Layer4 {
                protocol: Some(layer4::Protocol::Udp(flow::Udp {
                    source_port: 40_000 + (n % 10_000) as u32,
                    destination_port: 53,
                })),
            });
            let query = format!("svc-{}.default.svc.cluster.local.", n % 37);
            flow.l7 = Some(flow::Layer7 {
                r#type: if answer {
                    flow::L7FlowType::Response as i32
                } else {
                    flow::L7FlowType::Request as i32
                },
                latency_ns: if answer { 90_000 + n % 40_000 } else { 0 },
                record: Some(flow::layer7::Record::Dns(flow::Dns {
                    query: query.clone(),
                    ips: if answer {
                        vec![format!("10.96.{}.{}", n % 7, 10 + n % 200)]
                    } else {
                        Vec::new()
                    },
                    ttl: if answer { 30 } else { 0 },
                    cnames: Vec::new(),
                    observation_source: "proxy".to_string(),
                    rcode: 0,
                    qtypes: vec!["A".to_string()],
                    rrtypes: if answer {
                        vec!["A".to_string()]
                    } else {
                        Vec::new()
                    },
                })),
            });
            if answer {
                flow.destination_names = vec![query];
            }
        }
        // Policy verdicts: allowed by a named policy, or denied.
        16 | 17 => {
            let denied = n % 40 == 17;
            flow.r#type = flow::FlowType::L3L4 as i32;
            flow.event_type = Some(flow::CiliumEventType {
                r#type: 5,
                sub_type: 0,
            });
            flow.trace_observation_point = 0;
            flow.policy_match_type = 2;
            if denied {
                flow.verdict = flow::Verdict::Dropped as i32;
                flow.drop_reason = 133;
                flow.drop_reason_desc = flow::DropReason::PolicyDenied as i32;
            } else {
                flow.verdict = flow::Verdict::Forwarded as i32;
                flow.drop_reason = 0;
                flow.drop_reason_desc = 0;
                flow.ingress_allowed_by = vec![policy("rule1")];
            }
        }
        // Drops for reasons other than policy.
        18 | 19 => {
            flow.verdict = flow::Verdict::Dropped as i32;
            let (code, reason) = if n % 40 == 18 {
                (155, flow::DropReason::CtMapInsertionFailed)
            } else {
                (132, flow::DropReason::InvalidSourceIp)
            };
            flow.drop_reason = code;
            flow.drop_reason_desc = reason as i32;
            flow.event_type = Some(flow::CiliumEventType {
                r#type: 1,
                sub_type: code as i32,
            });
            flow.trace_observation_point = 0;
        }
        _ => {}
    }
    flow
}
