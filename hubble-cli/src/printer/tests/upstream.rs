//! The expectations of upstream's printer tests (hubble/pkg/printer/printer_test.go)
//! and lines of real `hubble observe` output quoted in the seeds.

use proto::flow::{self, Flow};
use proto::observer::ServerStatusResponse;

use super::fixtures::*;
use super::*;

fn one(opts: PrinterOptions, f: Flow) -> String {
    render(opts, &[wrap(f)]).0
}

fn with(output: Output, node: bool, policy_names: bool) -> PrinterOptions {
    PrinterOptions {
        output,
        node_name: node,
        policy_names,
        ip_translation: false,
        ..PrinterOptions::default()
    }
}

#[test]
fn upstream_write_proto_flow() {
    let f = upstream_flow();
    assert_eq!(
        one(with(Output::Table, false, false), f.clone()),
        "TIMESTAMP             SOURCE          DESTINATION    TYPE            VERDICT   SUMMARY\nJan  1 00:20:34.567   1.1.1.1:31793   2.2.2.2:8080   Policy denied   DROPPED   TCP Flags: SYN\n"
    );
    assert_eq!(
        one(with(Output::Table, true, false), f.clone()),
        "TIMESTAMP             NODE   SOURCE          DESTINATION    TYPE            VERDICT   SUMMARY\nJan  1 00:20:34.567   k8s1   1.1.1.1:31793   2.2.2.2:8080   Policy denied   DROPPED   TCP Flags: SYN\n"
    );
    assert_eq!(
        one(with(Output::Compact, false, false), f.clone()),
        "Jan  1 00:20:34.567: 1.1.1.1:31793 (health) -> 2.2.2.2:8080 (ID:12345) Policy denied DROPPED (TCP Flags: SYN)\n"
    );
    assert_eq!(
        one(with(Output::Compact, true, false), f.clone()),
        "Jan  1 00:20:34.567 [k8s1]: 1.1.1.1:31793 (health) -> 2.2.2.2:8080 (ID:12345) Policy denied DROPPED (TCP Flags: SYN)\n"
    );
    let mut traced = f.clone();
    traced.ip_trace_id = Some(flow::IpTraceId {
        trace_id: 1234,
        ip_option_type: 0,
    });
    assert_eq!(
        one(with(Output::Compact, true, false), traced),
        "Jan  1 00:20:34.567 [k8s1]: 1.1.1.1:31793 (health) -> 2.2.2.2:8080 (ID:12345) Policy denied DROPPED (IP Trace ID: 1234; TCP Flags: SYN)\n"
    );
    let mut reply = f.clone();
    reply.is_reply = Some(pbjson_types::BoolValue { value: true });
    assert_eq!(
        one(with(Output::Compact, true, false), reply),
        "Jan  1 00:20:34.567 [k8s1]: 2.2.2.2:8080 (ID:12345) <- 1.1.1.1:31793 (health) Policy denied DROPPED (TCP Flags: SYN)\n"
    );
    let mut unknown = f.clone();
    unknown.is_reply = None;
    assert_eq!(
        one(with(Output::Compact, true, false), unknown),
        "Jan  1 00:20:34.567 [k8s1]: 1.1.1.1:31793 (health) <> 2.2.2.2:8080 (ID:12345) Policy denied DROPPED (TCP Flags: SYN)\n"
    );

    let policy = |name: &str, ns: &str, kind: &str| flow::Policy {
        name: name.into(),
        namespace: ns.into(),
        kind: kind.into(),
        ..Default::default()
    };
    let mut denied = f.clone();
    denied.event_type = Some(flow::CiliumEventType {
        r#type: 5,
        sub_type: 0,
    });
    denied.is_reply = None;
    denied.traffic_direction = flow::TrafficDirection::Egress as i32;
    denied.egress_denied_by = vec![policy(
        "my-policy",
        "my-policy-namespace",
        "CiliumNetworkPolicy",
    )];
    assert_eq!(
        one(with(Output::Compact, true, false), denied.clone()),
        "Jan  1 00:20:34.567 [k8s1]: 1.1.1.1:31793 (health) <> 2.2.2.2:8080 (ID:12345) policy-verdict:none EGRESS DENIED (TCP Flags: SYN)\n"
    );
    assert_eq!(
        one(with(Output::Compact, true, true), denied.clone()),
        "Jan  1 00:20:34.567 [k8s1]: 1.1.1.1:31793 (health) <> 2.2.2.2:8080 (ID:12345) policy-verdict:none EGRESS DENIED BY my-policy (CiliumNetworkPolicy) (TCP Flags: SYN)\n"
    );
    let mut allowed = denied.clone();
    allowed.verdict = flow::Verdict::Forwarded as i32;
    allowed.traffic_direction = flow::TrafficDirection::Ingress as i32;
    allowed.egress_denied_by.clear();
    allowed.ingress_allowed_by = vec![
        policy("my-policy", "my-policy-namespace", "CiliumNetworkPolicy"),
        policy("my-policy-2", "", "CiliumClusterwideNetworkPolicy"),
    ];
    allowed.policy_match_type = 1;
    assert_eq!(
        one(with(Output::Compact, true, true), allowed),
        "Jan  1 00:20:34.567 [k8s1]: 1.1.1.1:31793 (health) <> 2.2.2.2:8080 (ID:12345) policy-verdict:L3-Only INGRESS ALLOWED BY my-policy (CiliumNetworkPolicy), my-policy-2 (CiliumClusterwideNetworkPolicy) (TCP Flags: SYN)\n"
    );
    let mut audited = denied.clone();
    audited.verdict = flow::Verdict::Audit as i32;
    assert_eq!(
        one(with(Output::Compact, true, true), audited),
        "Jan  1 00:20:34.567 [k8s1]: 1.1.1.1:31793 (health) <> 2.2.2.2:8080 (ID:12345) policy-verdict:none EGRESS AUDITED (TCP Flags: SYN)\n"
    );
    assert_eq!(
        one(with(Output::Dict, false, false), f.clone()),
        "  TIMESTAMP: Jan  1 00:20:34.567\n     SOURCE: 1.1.1.1:31793\nDESTINATION: 2.2.2.2:8080\n       TYPE: Policy denied\n    VERDICT: DROPPED\n    SUMMARY: TCP Flags: SYN\n"
    );
    assert_eq!(
        one(with(Output::Dict, true, false), f.clone()),
        "  TIMESTAMP: Jan  1 00:20:34.567\n       NODE: k8s1\n     SOURCE: 1.1.1.1:31793\nDESTINATION: 2.2.2.2:8080\n       TYPE: Policy denied\n    VERDICT: DROPPED\n    SUMMARY: TCP Flags: SYN\n"
    );
    assert_eq!(
        one(with(Output::Dict, false, true), denied),
        "  TIMESTAMP: Jan  1 00:20:34.567\n     SOURCE: 1.1.1.1:31793\nDESTINATION: 2.2.2.2:8080\n       TYPE: policy-verdict:none EGRESS\n    VERDICT: DENIED BY my-policy (CiliumNetworkPolicy)\n    SUMMARY: TCP Flags: SYN\n"
    );
    let expected_json = r#"{"time":"1970-01-01T00:20:34.567800Z","verdict":"DROPPED","IP":{"source":"1.1.1.1","destination":"2.2.2.2"},"l4":{"TCP":{"source_port":31793,"destination_port":8080}},"source":{"identity":4},"destination":{"identity":12345},"Type":"L3_L4","node_name":"k8s1","event_type":{"type":1,"sub_type":133},"is_reply":false,"Summary":"TCP Flags: SYN"}"#;
    assert_eq!(
        one(with(Output::JsonLegacy, false, false), f.clone()),
        format!("{expected_json}\n")
    );
    // Upstream's test builds its response without the top-level time and node name.
    let res = GetFlowsResponse {
        response_types: Some(ResponseTypes::Flow(f.clone())),
        ..Default::default()
    };
    assert_eq!(
        render(with(Output::JsonPb, false, false), &[res]).0,
        format!("{{\"flow\":{expected_json}}}\n")
    );
    let mut traced = f;
    traced.ip_trace_id = Some(flow::IpTraceId {
        trace_id: 1234,
        ip_option_type: 136,
    });
    let res = GetFlowsResponse {
        response_types: Some(ResponseTypes::Flow(traced)),
        ..Default::default()
    };
    assert_eq!(
        render(with(Output::JsonPb, false, false), &[res]).0,
        concat!(
            r#"{"flow":{"time":"1970-01-01T00:20:34.567800Z","verdict":"DROPPED","IP":{"source":"1.1.1.1","destination":"2.2.2.2"},"l4":{"TCP":{"source_port":31793,"destination_port":8080}},"source":{"identity":4},"destination":{"identity":12345},"Type":"L3_L4","node_name":"k8s1","event_type":{"type":1,"sub_type":133},"ip_trace_id":{"trace_id":"1234","ip_option_type":136},"is_reply":false,"Summary":"TCP Flags: SYN"}}"#,
            "\n"
        )
    );
}

#[test]
fn upstream_lost_events() {
    let lost = |node: &str, first_last: bool| GetFlowsResponse {
        node_name: node.to_string(),
        time: Some(pbjson_types::Timestamp {
            seconds: 1234,
            nanos: 567_800_000,
        }),
        response_types: Some(ResponseTypes::LostEvents(flow::LostEvent {
            source: flow::LostEventSource::HubbleRingBuffer as i32,
            num_events_lost: 1,
            cpu: Some(pbjson_types::Int32Value { value: 5 }),
            first: first_last.then_some(pbjson_types::Timestamp {
                seconds: 1230,
                nanos: 567_800_000,
            }),
            last: first_last.then_some(pbjson_types::Timestamp {
                seconds: 1238,
                nanos: 567_800_000,
            }),
        })),
    };
    let out = |o: Output, node: bool, r: GetFlowsResponse| render(with(o, node, false), &[r]).0;
    assert_eq!(
        out(Output::Table, false, lost("", false)),
        "TIMESTAMP             SOURCE               DESTINATION   TYPE          VERDICT   SUMMARY\nJan  1 00:20:34.567   HUBBLE_RING_BUFFER   -             EVENTS LOST   -         CPU(5) - 1\n"
    );
    assert_eq!(
        out(Output::Compact, false, lost("", false)),
        "Jan  1 00:20:34.567 EVENTS LOST: HUBBLE_RING_BUFFER CPU(5) 1\n"
    );
    assert_eq!(
        out(Output::JsonPb, false, lost("", false)),
        "{\"lost_events\":{\"source\":\"HUBBLE_RING_BUFFER\",\"num_events_lost\":\"1\",\"cpu\":5},\"time\":\"1970-01-01T00:20:34.567800Z\"}\n"
    );
    assert_eq!(
        out(Output::Dict, false, lost("", false)),
        "  TIMESTAMP: Jan  1 00:20:34.567\n     SOURCE: HUBBLE_RING_BUFFER\n       TYPE: EVENTS LOST\n    VERDICT: -\n    SUMMARY: CPU(5) - 1\n"
    );
    assert_eq!(
        out(Output::Table, true, lost("node-name", false)),
        "TIMESTAMP             NODE        SOURCE               DESTINATION   TYPE          VERDICT   SUMMARY\nJan  1 00:20:34.567   node-name   HUBBLE_RING_BUFFER   -             EVENTS LOST   -         CPU(5) - 1\n"
    );
    assert_eq!(
        out(Output::Compact, true, lost("node-name", false)),
        "Jan  1 00:20:34.567 EVENTS LOST: HUBBLE_RING_BUFFER CPU(5) 1\n"
    );
    assert_eq!(
        out(Output::JsonPb, true, lost("node-name", false)),
        "{\"lost_events\":{\"source\":\"HUBBLE_RING_BUFFER\",\"num_events_lost\":\"1\",\"cpu\":5},\"node_name\":\"node-name\",\"time\":\"1970-01-01T00:20:34.567800Z\"}\n"
    );
    assert_eq!(
        out(Output::Dict, true, lost("node-name", false)),
        "  TIMESTAMP: Jan  1 00:20:34.567\n       NODE: node-name\n     SOURCE: HUBBLE_RING_BUFFER\n       TYPE: EVENTS LOST\n    VERDICT: -\n    SUMMARY: CPU(5) - 1\n"
    );
    assert_eq!(
        out(Output::Table, false, lost("", true)),
        "TIMESTAMP             SOURCE               DESTINATION   TYPE          VERDICT   SUMMARY\nJan  1 00:20:34.567   HUBBLE_RING_BUFFER   -             EVENTS LOST   -         CPU(5) - 1 (first: Jan  1 00:20:30.567, last: Jan  1 00:20:38.567)\n"
    );
    assert_eq!(
        out(Output::Compact, false, lost("", true)),
        "Jan  1 00:20:34.567 EVENTS LOST: HUBBLE_RING_BUFFER CPU(5) 1 (first: Jan  1 00:20:30.567, last: Jan  1 00:20:38.567)\n"
    );
    assert_eq!(
        out(Output::JsonPb, false, lost("", true)),
        "{\"lost_events\":{\"source\":\"HUBBLE_RING_BUFFER\",\"num_events_lost\":\"1\",\"cpu\":5,\"first\":\"1970-01-01T00:20:30.567800Z\",\"last\":\"1970-01-01T00:20:38.567800Z\"},\"time\":\"1970-01-01T00:20:34.567800Z\"}\n"
    );
}

fn status_out(o: Output, res: &ServerStatusResponse) -> String {
    let mut out = Vec::new();
    {
        let mut p: Printer<_, std::io::Sink> = Printer::new(with(o, false, false), &mut out, None);
        p.write_server_status(res).expect("write");
        p.close().expect("close");
    }
    String::from_utf8(out).expect("utf8")
}

#[test]
fn upstream_server_status() {
    let ss = ServerStatusResponse {
        num_flows: 2031,
        max_flows: 4095,
        seen_flows: 2_348_885,
        flows_rate: 23.456,
        uptime_ns: 301_515_181_665,
        version: "cilium v1.15.0+g4145278".into(),
        ..Default::default()
    };
    let sso = ServerStatusResponse {
        flows_rate: 0.0,
        version: "cilium v1.10.3+g4145278".into(),
        ..ss.clone()
    };
    let ssn = ServerStatusResponse {
        num_flows: 2771,
        max_flows: 8190,
        seen_flows: 2771,
        flows_rate: 23.456,
        uptime_ns: 301_515_181_665,
        version: "hubble-relay v1.15.0+g4145278".into(),
        num_connected_nodes: Some(pbjson_types::UInt32Value { value: 2 }),
        num_unavailable_nodes: Some(pbjson_types::UInt32Value { value: 0 }),
        ..Default::default()
    };
    assert_eq!(status_out(Output::Table, &ss), "NUM FLOWS   MAX FLOWS   SEEN FLOWS   FLOWS PER SECOND   UPTIME           NUM CONNECTED NODES   NUM UNAVAILABLE NODES   VERSION\n2,031       4,095       2,348,885    23.46              5m1.515181665s   N/A                   N/A                     cilium v1.15.0+g4145278\n");
    assert_eq!(status_out(Output::Table, &ssn), "NUM FLOWS   MAX FLOWS   SEEN FLOWS   FLOWS PER SECOND   UPTIME           NUM CONNECTED NODES   NUM UNAVAILABLE NODES   VERSION\n2,771       8,190       2,771        23.46              5m1.515181665s   2                     0                       hubble-relay v1.15.0+g4145278\n");
    assert_eq!(status_out(Output::Table, &sso), "NUM FLOWS   MAX FLOWS   SEEN FLOWS   FLOWS PER SECOND   UPTIME           NUM CONNECTED NODES   NUM UNAVAILABLE NODES   VERSION\n2,031       4,095       2,348,885    N/A                5m1.515181665s   N/A                   N/A                     cilium v1.10.3+g4145278\n");
    assert_eq!(
        status_out(Output::Compact, &ss),
        "Current/Max Flows: 2,031/4,095 (49.60%)\nFlows/s: 23.46\n"
    );
    assert_eq!(
        status_out(Output::Compact, &ssn),
        "Current/Max Flows: 2,771/8,190 (33.83%)\nFlows/s: 23.46\nConnected Nodes: 2/2\n"
    );
    assert_eq!(
        status_out(Output::Compact, &sso),
        "Current/Max Flows: 2,031/4,095 (49.60%)\nFlows/s: 7790.27\n"
    );
    assert_eq!(status_out(Output::JsonPb, &ss), "{\"num_flows\":\"2031\",\"max_flows\":\"4095\",\"seen_flows\":\"2348885\",\"uptime_ns\":\"301515181665\",\"version\":\"cilium v1.15.0+g4145278\",\"flows_rate\":23.456}\n");
    assert_eq!(status_out(Output::JsonPb, &ssn), "{\"num_flows\":\"2771\",\"max_flows\":\"8190\",\"seen_flows\":\"2771\",\"uptime_ns\":\"301515181665\",\"num_connected_nodes\":2,\"num_unavailable_nodes\":0,\"version\":\"hubble-relay v1.15.0+g4145278\",\"flows_rate\":23.456}\n");
    assert_eq!(status_out(Output::JsonPb, &sso), "{\"num_flows\":\"2031\",\"max_flows\":\"4095\",\"seen_flows\":\"2348885\",\"uptime_ns\":\"301515181665\",\"version\":\"cilium v1.10.3+g4145278\"}\n");
    assert_eq!(status_out(Output::Dict, &ss), "          NUM FLOWS: 2,031\n          MAX FLOWS: 4,095\n         SEEN FLOWS: 2,348,885\n   FLOWS PER SECOND: 23.46\n             UPTIME: 5m1.515181665s\nNUM CONNECTED NODES: N/A\n NUM UNAVAIL. NODES: N/A\n            VERSION: cilium v1.15.0+g4145278\n");
    assert_eq!(status_out(Output::Dict, &ssn), "          NUM FLOWS: 2,771\n          MAX FLOWS: 8,190\n         SEEN FLOWS: 2,771\n   FLOWS PER SECOND: 23.46\n             UPTIME: 5m1.515181665s\nNUM CONNECTED NODES: 2\n NUM UNAVAIL. NODES: 0\n            VERSION: hubble-relay v1.15.0+g4145278\n");
    // The seed's relay: 12,285 flows of a full buffer.
    let full = ServerStatusResponse {
        num_flows: 12_285,
        max_flows: 12_285,
        flows_rate: 41.2,
        num_connected_nodes: Some(pbjson_types::UInt32Value { value: 3 }),
        num_unavailable_nodes: Some(pbjson_types::UInt32Value { value: 1 }),
        unavailable_nodes: vec!["k8s-w2".into()],
        ..Default::default()
    };
    assert_eq!(
        status_out(Output::Compact, &full),
        "Current/Max Flows: 12,285/12,285 (100.00%)\nFlows/s: 41.20\nConnected Nodes: 3/4\nUnavailable Nodes: 1\n  - k8s-w2\n"
    );
}

#[test]
fn seed_lines_of_real_hubble_observe() {
    let compact = opts(Output::Compact);
    let line = |f: Flow| render(compact, &[wrap(f)]).0;
    assert_eq!(
        line(trace_to_endpoint()),
        "Jul 25 15:56:06.052: default/tiefighter:51000 (ID:62396) -> default/deathstar-8c4c77fb7-8wdts:80 (ID:50122) to-endpoint FORWARDED (TCP Flags: SYN)\n"
    );
    assert_eq!(
        line(policy_drop()),
        "Jul 25 16:05:58.942: default/xwing:38870 (ID:6305) <> default/deathstar-8c4c77fb7-8wdts:80 (ID:50122) Policy denied DROPPED (TCP Flags: SYN)\n"
    );
    assert_eq!(
        line(reply_to_network()),
        "Jul 25 16:07:58.104: default/tiefighter:50142 (ID:62396) <- default/deathstar-8c4c77fb7-8wdts:80 (ID:50122) to-network FORWARDED (TCP Flags: SYN, ACK)\n"
    );
    assert_eq!(
        line(http_request()),
        "Jul 25 14:37:11.689: default/tiefighter:49534 (ID:62396) -> default/deathstar-8c4c77fb7-8wdts:80 (ID:50122) http-request DROPPED (HTTP/1.1 PUT http://deathstar.default.svc.cluster.local/v1/exhaust-port)\n"
    );
    assert_eq!(
        line(host_to_apiserver()),
        "Jul 25 15:15:11.670: 192.168.10.102:37974 (host) -> 192.168.10.100:6443 (kube-apiserver) to-network FORWARDED (TCP Flags: ACK)\n"
    );
}
