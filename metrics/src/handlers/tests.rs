//! Golden exposition tests: each handler fed Star Wars demo flows, printed in the text
//! format. Refresh with `UPDATE_EXPECT=1 cargo test -p metrics` after checking the diff
//! against upstream's behaviour.

use expect_test::{expect, Expect};
use pbjson_types::BoolValue;
use proto::flow::{
    layer4, layer7, CiliumEventType, Dns, DropReason, Endpoint, Flow, Http, IcmPv4, IcmPv6, Ip,
    IpVersion, L7FlowType, Layer4, Layer7, Tcp, TcpFlags, TraceContext, TraceParent,
    TrafficDirection, Udp, Verdict, Workload,
};

use crate::exposition::{encode, Collect, Format};
use crate::{Metrics, MetricsConfig};

pub(crate) fn endpoint(namespace: &str, pod: &str, identity: u32, labels: &[&str]) -> Endpoint {
    let workload = pod.split('-').next().unwrap_or(pod);
    Endpoint {
        identity,
        namespace: namespace.to_owned(),
        pod_name: pod.to_owned(),
        labels: labels.iter().map(|l| (*l).to_owned()).collect(),
        workloads: if pod.is_empty() {
            Vec::new()
        } else {
            vec![Workload {
                name: workload.to_owned(),
                kind: "Deployment".to_owned(),
            }]
        },
        ..Default::default()
    }
}

pub(crate) fn xwing() -> Endpoint {
    endpoint(
        "default",
        "xwing",
        12345,
        &[
            "k8s:class=xwing",
            "k8s:org=alliance",
            "k8s:app.kubernetes.io/name=xwing",
        ],
    )
}

pub(crate) fn tiefighter() -> Endpoint {
    endpoint(
        "default",
        "tiefighter",
        23456,
        &["k8s:class=tiefighter", "k8s:org=empire"],
    )
}

pub(crate) fn deathstar() -> Endpoint {
    endpoint(
        "default",
        "deathstar-6fb5694d48-5hmds",
        34567,
        &["k8s:app=deathstar", "k8s:class=deathstar", "k8s:org=empire"],
    )
}

/// A TCP flow from `source` to `destination` port 80.
pub(crate) fn tcp(
    source: Endpoint,
    destination: Endpoint,
    verdict: Verdict,
    flags: TcpFlags,
) -> Flow {
    let event = if verdict == Verdict::Dropped { 1 } else { 4 };
    Flow {
        verdict: verdict as i32,
        drop_reason_desc: if verdict == Verdict::Dropped {
            DropReason::PolicyDenied as i32
        } else {
            0
        },
        ip: Some(Ip {
            source: "10.200.1.12".to_owned(),
            destination: "10.200.1.20".to_owned(),
            ip_version: IpVersion::IPv4 as i32,
            ..Default::default()
        }),
        l4: Some(Layer4 {
            protocol: Some(layer4::Protocol::Tcp(Tcp {
                source_port: 43210,
                destination_port: 80,
                flags: Some(flags),
            })),
        }),
        source: Some(source),
        destination: Some(destination),
        event_type: Some(CiliumEventType {
            r#type: event,
            sub_type: 0,
        }),
        traffic_direction: TrafficDirection::Ingress as i32,
        is_reply: Some(BoolValue { value: false }),
        node_name: "kind-worker".to_owned(),
        ..Default::default()
    }
}

pub(crate) fn syn() -> TcpFlags {
    TcpFlags {
        syn: true,
        ..Default::default()
    }
}

fn syn_ack() -> TcpFlags {
    TcpFlags {
        syn: true,
        ack: true,
        ..Default::default()
    }
}

fn policy_verdict(
    source: Endpoint,
    destination: Endpoint,
    verdict: Verdict,
    match_type: u32,
) -> Flow {
    let mut flow = tcp(source, destination, verdict, syn());
    flow.event_type = Some(CiliumEventType {
        r#type: 5,
        sub_type: 0,
    });
    flow.policy_match_type = match_type;
    flow
}

fn http_flow(kind: L7FlowType, code: u32, latency_ns: u64, trace_id: &str) -> Flow {
    let mut flow = tcp(
        tiefighter(),
        deathstar(),
        Verdict::Forwarded,
        TcpFlags::default(),
    );
    flow.l4 = None;
    if kind == L7FlowType::Response {
        std::mem::swap(&mut flow.source, &mut flow.destination);
    }
    flow.event_type = Some(CiliumEventType {
        r#type: 129,
        sub_type: 0,
    });
    flow.l7 = Some(Layer7 {
        r#type: kind as i32,
        latency_ns,
        record: Some(layer7::Record::Http(Http {
            code,
            method: "POST".to_owned(),
            url: "http://deathstar.default.svc.cluster.local/v1/request-landing".to_owned(),
            protocol: "HTTP/1.1".to_owned(),
            headers: Vec::new(),
        })),
    });
    if !trace_id.is_empty() {
        flow.trace_context = Some(TraceContext {
            parent: Some(TraceParent {
                trace_id: trace_id.to_owned(),
            }),
        });
    }
    flow
}

fn dns_flow(reply: bool, rcode: u32, qtypes: &[&str], rrtypes: &[&str], ips: &[&str]) -> Flow {
    let mut flow = tcp(
        xwing(),
        deathstar(),
        Verdict::Forwarded,
        TcpFlags::default(),
    );
    flow.l4 = Some(Layer4 {
        protocol: Some(layer4::Protocol::Udp(Udp {
            source_port: 53000,
            destination_port: 53,
        })),
    });
    flow.event_type = Some(CiliumEventType {
        r#type: 129,
        sub_type: 0,
    });
    flow.is_reply = Some(BoolValue { value: reply });
    flow.l7 = Some(Layer7 {
        r#type: if reply { 2 } else { 1 },
        latency_ns: 0,
        record: Some(layer7::Record::Dns(Dns {
            query: "deathstar.default.svc.cluster.local.".to_owned(),
            ips: ips.iter().map(|s| (*s).to_owned()).collect(),
            rcode,
            qtypes: qtypes.iter().map(|s| (*s).to_owned()).collect(),
            rrtypes: rrtypes.iter().map(|s| (*s).to_owned()).collect(),
            ..Default::default()
        })),
    });
    flow
}

fn icmp_flows() -> Vec<Flow> {
    let mut v4 = tcp(
        xwing(),
        deathstar(),
        Verdict::Forwarded,
        TcpFlags::default(),
    );
    v4.l4 = Some(Layer4 {
        protocol: Some(layer4::Protocol::IcmPv4(IcmPv4 { r#type: 8, code: 0 })),
    });
    let mut unreachable = v4.clone();
    unreachable.l4 = Some(Layer4 {
        protocol: Some(layer4::Protocol::IcmPv4(IcmPv4 { r#type: 3, code: 3 })),
    });
    let mut v6 = v4.clone();
    v6.l4 = Some(Layer4 {
        protocol: Some(layer4::Protocol::IcmPv6(IcmPv6 {
            r#type: 128,
            code: 0,
        })),
    });
    vec![v4.clone(), v4, unreachable, v6]
}

/// Feeds `flows` to the handlers of `config` and compares the text exposition.
fn check(config: &str, flows: &[Flow], want: Expect) {
    let config = match MetricsConfig::parse(config) {
        Ok(config) => config,
        Err(e) => panic!("bad test config: {e}"),
    };
    let metrics = Metrics::new(&config);
    for flow in flows {
        metrics.process_flow(flow);
    }
    let mut families = Vec::new();
    metrics.collect(&mut families);
    families.retain(|f| f.name != "hubble_lost_events_total");
    want.assert_eq(&encode(families, Format::Text));
}

fn demo_tcp_flows() -> Vec<Flow> {
    let mut reply = tcp(deathstar(), tiefighter(), Verdict::Forwarded, syn_ack());
    reply.is_reply = Some(BoolValue { value: true });
    vec![
        tcp(tiefighter(), deathstar(), Verdict::Forwarded, syn()),
        reply,
        tcp(xwing(), deathstar(), Verdict::Dropped, syn()),
        tcp(xwing(), deathstar(), Verdict::Dropped, syn()),
        tcp(
            tiefighter(),
            deathstar(),
            Verdict::Forwarded,
            TcpFlags {
                fin: true,
                ack: true,
                ..Default::default()
            },
        ),
    ]
}

#[test]
fn drop_counts_reason_and_protocol() {
    check(
        "drop",
        &demo_tcp_flows(),
        expect![[r##"
            # HELP hubble_drop_total Number of drops
            # TYPE hubble_drop_total counter
            hubble_drop_total{protocol="TCP",reason="POLICY_DENIED"} 2
        "##]],
    );
}

#[test]
fn flow_counts_type_subtype_verdict() {
    let mut flows = demo_tcp_flows();
    flows.push(http_flow(L7FlowType::Request, 0, 0, ""));
    flows.push(policy_verdict(xwing(), deathstar(), Verdict::Dropped, 2));
    check(
        "flow",
        &flows,
        expect![[r##"
        # HELP hubble_flows_processed_total Total number of flows processed
        # TYPE hubble_flows_processed_total counter
        hubble_flows_processed_total{protocol="HTTP",subtype="HTTP",type="L7",verdict="FORWARDED"} 1
        hubble_flows_processed_total{protocol="TCP",subtype="",type="Drop",verdict="DROPPED"} 2
        hubble_flows_processed_total{protocol="TCP",subtype="",type="PolicyVerdict",verdict="DROPPED"} 1
        hubble_flows_processed_total{protocol="TCP",subtype="to-endpoint",type="Trace",verdict="FORWARDED"} 3
    "##]],
    );
}

#[test]
fn tcp_counts_flags_of_forwarded_flows() {
    check(
        "tcp",
        &demo_tcp_flows(),
        expect![[r##"
        # HELP hubble_tcp_flags_total TCP flag occurrences
        # TYPE hubble_tcp_flags_total counter
        hubble_tcp_flags_total{family="IPv4",flag="FIN"} 1
        hubble_tcp_flags_total{family="IPv4",flag="SYN"} 1
        hubble_tcp_flags_total{family="IPv4",flag="SYN-ACK"} 1
    "##]],
    );
}

#[test]
fn port_distribution_counts_requests_only() {
    check(
        "port-distribution",
        &demo_tcp_flows(),
        expect![[r##"
        # HELP hubble_port_distribution_total Numbers of packets distributed by destination port
        # TYPE hubble_port_distribution_total counter
        hubble_port_distribution_total{port="80",protocol="TCP"} 2
    "##]],
    );
}

#[test]
fn icmp_counts_types() {
    check(
        "icmp",
        &icmp_flows(),
        expect![[r##"
        # HELP hubble_icmp_total Number of ICMP messages
        # TYPE hubble_icmp_total counter
        hubble_icmp_total{family="IPv4",type="DestinationUnreachable(Port)"} 1
        hubble_icmp_total{family="IPv4",type="EchoRequest"} 3
    "##]],
    );
}

#[test]
fn policy_counts_verdicts() {
    let mut host = policy_verdict(xwing(), deathstar(), Verdict::Forwarded, 1);
    if let Some(source) = host.source.as_mut() {
        source.identity = 1;
    }
    let flows = vec![
        policy_verdict(xwing(), deathstar(), Verdict::Dropped, 2),
        policy_verdict(tiefighter(), deathstar(), Verdict::Forwarded, 2),
        policy_verdict(tiefighter(), deathstar(), Verdict::Audit, 4),
        host,
        http_flow(L7FlowType::Request, 0, 0, ""),
    ];
    check(
        "policy",
        &flows,
        expect![[r##"
        # HELP hubble_policy_verdicts_total Total number of Cilium network policy verdicts
        # TYPE hubble_policy_verdicts_total counter
        hubble_policy_verdicts_total{action="audit",direction="ingress",match="all"} 1
        hubble_policy_verdicts_total{action="dropped",direction="ingress",match="l3-l4"} 1
        hubble_policy_verdicts_total{action="forwarded",direction="ingress",match="l3-l4"} 1
        hubble_policy_verdicts_total{action="forwarded",direction="ingress",match="l7/http"} 1
    "##]],
    );
}

#[test]
fn flows_to_world_counts_non_reply_flows_to_world() {
    let world = endpoint("", "", 2, &["reserved:world"]);
    let mut dropped_other = tcp(xwing(), world.clone(), Verdict::Dropped, syn());
    dropped_other.drop_reason_desc = DropReason::CtMapInsertionFailed as i32;
    let flows = vec![
        tcp(xwing(), world.clone(), Verdict::Forwarded, syn()),
        tcp(xwing(), world.clone(), Verdict::Dropped, syn()),
        dropped_other,
        tcp(xwing(), deathstar(), Verdict::Forwarded, syn()),
    ];
    check(
        "flows-to-world",
        &flows,
        expect![[r##"
        # HELP hubble_flows_to_world_total Total number of flows to reserved:world
        # TYPE hubble_flows_to_world_total counter
        hubble_flows_to_world_total{protocol="TCP",verdict="DROPPED"} 1
        hubble_flows_to_world_total{protocol="TCP",verdict="FORWARDED"} 1
    "##]],
    );
    check(
        "flows-to-world:any-drop;port",
        &flows,
        expect![[r##"
        # HELP hubble_flows_to_world_total Total number of flows to reserved:world
        # TYPE hubble_flows_to_world_total counter
        hubble_flows_to_world_total{port="80",protocol="TCP",verdict="DROPPED"} 2
        hubble_flows_to_world_total{port="80",protocol="TCP",verdict="FORWARDED"} 1
    "##]],
    );
}

#[test]
fn dns_counts_queries_responses_and_types() {
    let flows = vec![
        dns_flow(false, 0, &["A"], &[], &[]),
        dns_flow(true, 0, &["A"], &["A"], &["10.96.0.15"]),
        dns_flow(true, 3, &["AAAA"], &[], &[]),
        dns_flow(false, 0, &["AAAA"], &[], &[]),
    ];
    check(
        "dns",
        &flows,
        expect![[r##"
        # HELP hubble_dns_queries_total Number of DNS queries observed
        # TYPE hubble_dns_queries_total counter
        hubble_dns_queries_total{ips_returned="0",qtypes="A",rcode=""} 1
        hubble_dns_queries_total{ips_returned="0",qtypes="AAAA",rcode=""} 1
        # HELP hubble_dns_response_types_total Number of DNS queries observed
        # TYPE hubble_dns_response_types_total counter
        hubble_dns_response_types_total{qtypes="A",type="A"} 1
        # HELP hubble_dns_responses_total Number of DNS queries observed
        # TYPE hubble_dns_responses_total counter
        hubble_dns_responses_total{ips_returned="0",qtypes="AAAA",rcode="Non-Existent Domain"} 1
        hubble_dns_responses_total{ips_returned="1",qtypes="A",rcode="No Error"} 1
    "##]],
    );
    check(
        "dns:query;ignoreAAAA",
        &flows,
        expect![[r##"
        # HELP hubble_dns_queries_total Number of DNS queries observed
        # TYPE hubble_dns_queries_total counter
        hubble_dns_queries_total{ips_returned="0",qtypes="A",query="deathstar.default.svc.cluster.local.",rcode=""} 1
        # HELP hubble_dns_response_types_total Number of DNS queries observed
        # TYPE hubble_dns_response_types_total counter
        hubble_dns_response_types_total{qtypes="A",query="deathstar.default.svc.cluster.local.",type="A"} 1
        # HELP hubble_dns_responses_total Number of DNS queries observed
        # TYPE hubble_dns_responses_total counter
        hubble_dns_responses_total{ips_returned="1",qtypes="A",query="deathstar.default.svc.cluster.local.",rcode="No Error"} 1
    "##]],
    );
}

#[test]
fn http_v1_counts_requests_and_responses() {
    let flows = vec![
        http_flow(L7FlowType::Request, 0, 0, ""),
        http_flow(L7FlowType::Response, 200, 2_500_000, ""),
        http_flow(L7FlowType::Response, 503, 750_000_000, ""),
    ];
    check(
        "http",
        &flows,
        expect![[r##"
        # HELP hubble_http_request_duration_seconds Quantiles of HTTP request duration in seconds
        # TYPE hubble_http_request_duration_seconds histogram
        hubble_http_request_duration_seconds_bucket{method="POST",reporter="server",le="0.005"} 1
        hubble_http_request_duration_seconds_bucket{method="POST",reporter="server",le="0.01"} 1
        hubble_http_request_duration_seconds_bucket{method="POST",reporter="server",le="0.025"} 1
        hubble_http_request_duration_seconds_bucket{method="POST",reporter="server",le="0.05"} 1
        hubble_http_request_duration_seconds_bucket{method="POST",reporter="server",le="0.1"} 1
        hubble_http_request_duration_seconds_bucket{method="POST",reporter="server",le="0.25"} 1
        hubble_http_request_duration_seconds_bucket{method="POST",reporter="server",le="0.5"} 1
        hubble_http_request_duration_seconds_bucket{method="POST",reporter="server",le="1"} 2
        hubble_http_request_duration_seconds_bucket{method="POST",reporter="server",le="2.5"} 2
        hubble_http_request_duration_seconds_bucket{method="POST",reporter="server",le="5"} 2
        hubble_http_request_duration_seconds_bucket{method="POST",reporter="server",le="10"} 2
        hubble_http_request_duration_seconds_bucket{method="POST",reporter="server",le="+Inf"} 2
        hubble_http_request_duration_seconds_sum{method="POST",reporter="server"} 0.7525
        hubble_http_request_duration_seconds_count{method="POST",reporter="server"} 2
        # HELP hubble_http_requests_total Count of HTTP requests
        # TYPE hubble_http_requests_total counter
        hubble_http_requests_total{method="POST",protocol="HTTP/1.1",reporter="server"} 1
        # HELP hubble_http_responses_total Count of HTTP responses
        # TYPE hubble_http_responses_total counter
        hubble_http_responses_total{method="POST",protocol="HTTP/1.1",reporter="server",status="200"} 1
        hubble_http_responses_total{method="POST",protocol="HTTP/1.1",reporter="server",status="503"} 1
    "##]],
    );
}

#[test]
fn http_v2_counts_responses_from_the_request_side() {
    let flows = vec![
        http_flow(L7FlowType::Request, 0, 0, ""),
        http_flow(L7FlowType::Response, 200, 2_500_000, ""),
    ];
    check(
        "httpV2:sourceContext=workload-name;destinationContext=pod",
        &flows,
        expect![[r##"
            # HELP hubble_http_request_duration_seconds Quantiles of HTTP request duration in seconds
            # TYPE hubble_http_request_duration_seconds histogram
            hubble_http_request_duration_seconds_bucket{destination="deathstar",method="POST",reporter="server",source="default/tiefighter",le="0.005"} 1
            hubble_http_request_duration_seconds_bucket{destination="deathstar",method="POST",reporter="server",source="default/tiefighter",le="0.01"} 1
            hubble_http_request_duration_seconds_bucket{destination="deathstar",method="POST",reporter="server",source="default/tiefighter",le="0.025"} 1
            hubble_http_request_duration_seconds_bucket{destination="deathstar",method="POST",reporter="server",source="default/tiefighter",le="0.05"} 1
            hubble_http_request_duration_seconds_bucket{destination="deathstar",method="POST",reporter="server",source="default/tiefighter",le="0.1"} 1
            hubble_http_request_duration_seconds_bucket{destination="deathstar",method="POST",reporter="server",source="default/tiefighter",le="0.25"} 1
            hubble_http_request_duration_seconds_bucket{destination="deathstar",method="POST",reporter="server",source="default/tiefighter",le="0.5"} 1
            hubble_http_request_duration_seconds_bucket{destination="deathstar",method="POST",reporter="server",source="default/tiefighter",le="1"} 1
            hubble_http_request_duration_seconds_bucket{destination="deathstar",method="POST",reporter="server",source="default/tiefighter",le="2.5"} 1
            hubble_http_request_duration_seconds_bucket{destination="deathstar",method="POST",reporter="server",source="default/tiefighter",le="5"} 1
            hubble_http_request_duration_seconds_bucket{destination="deathstar",method="POST",reporter="server",source="default/tiefighter",le="10"} 1
            hubble_http_request_duration_seconds_bucket{destination="deathstar",method="POST",reporter="server",source="default/tiefighter",le="+Inf"} 1
            hubble_http_request_duration_seconds_sum{destination="deathstar",method="POST",reporter="server",source="default/tiefighter"} 0.0025
            hubble_http_request_duration_seconds_count{destination="deathstar",method="POST",reporter="server",source="default/tiefighter"} 1
            # HELP hubble_http_requests_total Count of HTTP requests
            # TYPE hubble_http_requests_total counter
            hubble_http_requests_total{destination="deathstar",method="POST",protocol="HTTP/1.1",reporter="server",source="default/tiefighter",status="200"} 1
        "##]],
    );
}

#[test]
fn http_v2_exemplars_appear_only_in_openmetrics() {
    let config = MetricsConfig::parse("httpV2:exemplars=true").expect("valid config");
    let metrics = Metrics::new(&config);
    metrics.process_flow(&http_flow(
        L7FlowType::Response,
        200,
        2_500_000,
        "4bf92f3577b34da6a3ce929d0e0e4736",
    ));
    let mut families = Vec::new();
    metrics.collect(&mut families);
    let text = encode(families.clone(), Format::Text);
    assert!(!text.contains("traceID"), "{text}");
    let open = encode(families, Format::OpenMetrics);
    assert!(
        open.contains("hubble_http_requests_total{method=\"POST\",protocol=\"HTTP/1.1\",reporter=\"server\",status=\"200\"} 1.0 # {traceID=\"4bf92f3577b34da6a3ce929d0e0e4736\"} 1.0 "),
        "{open}"
    );
    assert!(
        open.contains("le=\"0.005\"} 1 # {traceID=\"4bf92f3577b34da6a3ce929d0e0e4736\"} 0.0025 "),
        "{open}"
    );
    assert!(open.ends_with("# EOF\n"));
}

#[test]
fn a_panicking_handler_does_not_stop_the_others() {
    struct Panics;
    impl super::Handler for Panics {
        fn process(&mut self, _: &Flow, _: &mut crate::key::KeyBuf) {
            panic!("handler bug");
        }
        fn context(&self) -> &crate::context::ContextOptions {
            unreachable!()
        }
        fn families(&self) -> Vec<&dyn crate::family::LabelledFamily> {
            Vec::new()
        }
        fn families_mut(&mut self) -> Vec<&mut dyn crate::family::LabelledFamily> {
            Vec::new()
        }
    }
    let config = MetricsConfig::parse("drop").expect("valid config");
    let metrics =
        Metrics::new(&config).with_extra_handler(crate::HandlerKind::Flow, Box::new(Panics));
    let flows = demo_tcp_flows();
    for flow in &flows {
        metrics.process_flow(flow);
    }
    let mut families = Vec::new();
    metrics.collect(&mut families);
    let text = encode(families, Format::Text);
    assert!(
        text.contains("hubble_drop_total{protocol=\"TCP\",reason=\"POLICY_DENIED\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("hubble_metrics_handler_failures_total{handler=\"flow\"} 5"),
        "{text}"
    );
}
