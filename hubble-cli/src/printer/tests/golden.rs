//! Goldens of every format for the fixture flows and events (refresh with
//! `UPDATE_EXPECT=1 cargo test -p hubble-cli`).

use expect_test::{expect, Expect};

use super::fixtures::*;
use super::*;
use crate::time::{TimeLayout, FORMAT_NAMES};

fn all_events() -> Vec<GetFlowsResponse> {
    let mut events = flows();
    events.push(lost_events());
    events.push(node_unavailable());
    events.push(node_connected());
    events.push(node_error());
    events
}

fn check(opts: PrinterOptions, expected_out: Expect, expected_err: Expect) {
    let (out, err) = render(opts, &all_events());
    expected_out.assert_eq(&out);
    expected_err.assert_eq(&err);
}

#[test]
fn compact() {
    check(
        opts(Output::Compact),
        expect![[r#"
            Jul 25 15:56:06.052: default/tiefighter:51000 (ID:62396) -> default/deathstar-8c4c77fb7-8wdts:80 (ID:50122) to-endpoint FORWARDED (TCP Flags: SYN)
            Jul 25 16:05:58.942: default/xwing:38870 (ID:6305) <> default/deathstar-8c4c77fb7-8wdts:80 (ID:50122) Policy denied DROPPED (TCP Flags: SYN)
            Jul 25 16:07:58.104: default/tiefighter:50142 (ID:62396) <- default/deathstar-8c4c77fb7-8wdts:80 (ID:50122) to-network FORWARDED (TCP Flags: SYN, ACK)
            Jul 25 16:08:20.005: default/xwing (ID:6305) -> 10.100.0.11 (host) to-stack FORWARDED (ICMPv4 EchoRequest)
            Jul 25 16:08:21.250: default/xwing:45123 (ID:6305) -> kube-system/coredns-674b8bbfcf-pdpmn:53 (ID:3810) dns-request proxy FORWARDED (DNS Query deathstar.default.svc.cluster.local. A)
            Jul 25 14:37:11.689: default/tiefighter:49534 (ID:62396) -> default/deathstar-8c4c77fb7-8wdts:80 (ID:50122) http-request DROPPED (HTTP/1.1 PUT http://deathstar.default.svc.cluster.local/v1/exhaust-port)
            Jul 25 15:56:06.051: default/tiefighter:51000 (ID:62396) <> default/deathstar-8c4c77fb7-8wdts:80 (ID:50122) policy-verdict:L3-L4 INGRESS ALLOWED (TCP Flags: SYN)
            Jul 25 15:15:11.670: 192.168.10.102:37974 (host) -> 192.168.10.100:6443 (kube-apiserver) to-network FORWARDED (TCP Flags: ACK)
            Jul 25 16:08:22.000 EVENTS LOST: HUBBLE_RING_BUFFER CPU(1) 42 (first: Jul 25 16:08:21.000, last: Jul 25 16:08:22.000)
        "#]],
        expect![[r#"
            Jul 25 16:08:23.500 [hubble-relay]: 1 nodes are unavailable: kind-worker2
            Jul 25 16:08:23.700 [hubble-relay]: Error "connection refused" on 1 nodes: kind-worker3
        "#]],
    );
}

#[test]
fn compact_with_node_names_and_debug() {
    let o = PrinterOptions {
        node_name: true,
        debug: true,
        policy_names: true,
        ..opts(Output::Compact)
    };
    check(
        o,
        expect![[r#"
        Jul 25 15:56:06.052 [kind-worker]: default/tiefighter:51000 (ID:62396) -> default/deathstar-8c4c77fb7-8wdts:80 (ID:50122) to-endpoint FORWARDED (TCP Flags: SYN)
        Jul 25 16:05:58.942 [kind-worker]: default/xwing:38870 (ID:6305) <> default/deathstar-8c4c77fb7-8wdts:80 (ID:50122) Policy denied DROPPED (TCP Flags: SYN)
        Jul 25 16:07:58.104 [kind-worker]: default/tiefighter:50142 (ID:62396) <- default/deathstar-8c4c77fb7-8wdts:80 (ID:50122) to-network FORWARDED (TCP Flags: SYN, ACK)
        Jul 25 16:08:20.005 [kind-worker]: default/xwing (ID:6305) -> 10.100.0.11 (host) to-stack FORWARDED (ICMPv4 EchoRequest)
        Jul 25 16:08:21.250 [kind-worker]: default/xwing:45123 (ID:6305) -> kube-system/coredns-674b8bbfcf-pdpmn:53 (ID:3810) dns-request proxy FORWARDED (DNS Query deathstar.default.svc.cluster.local. A)
        Jul 25 14:37:11.689 [kind-worker]: default/tiefighter:49534 (ID:62396) -> default/deathstar-8c4c77fb7-8wdts:80 (ID:50122) http-request DROPPED (HTTP/1.1 PUT http://deathstar.default.svc.cluster.local/v1/exhaust-port)
        Jul 25 15:56:06.051 [kind-worker]: default/tiefighter:51000 (ID:62396) <> default/deathstar-8c4c77fb7-8wdts:80 (ID:50122) policy-verdict:L3-L4 INGRESS ALLOWED BY rule1 (CiliumNetworkPolicy) (TCP Flags: SYN)
        Jul 25 15:15:11.670 [k8s-w2]: 192.168.10.102:37974 (host) -> 192.168.10.100:6443 (kube-apiserver) to-network FORWARDED (TCP Flags: ACK)
        Jul 25 16:08:22.000 EVENTS LOST: HUBBLE_RING_BUFFER CPU(1) 42 (first: Jul 25 16:08:21.000, last: Jul 25 16:08:22.000)
    "#]],
        expect![[r#"
        Jul 25 16:08:23.500 [hubble-relay]: 1 nodes are unavailable: kind-worker2
        Jul 25 16:08:23.600 [hubble-relay]: Receiving flows from 2 nodes: kind-control-plane, kind-worker
        Jul 25 16:08:23.700 [hubble-relay]: Error "connection refused" on 1 nodes: kind-worker3
    "#]],
    );
}

#[test]
fn compact_numeric() {
    let o = PrinterOptions {
        ip_translation: false,
        ..opts(Output::Compact)
    };
    check(
        o,
        expect![[r#"
        Jul 25 15:56:06.052: 10.200.1.20:51000 (ID:62396) -> 10.200.1.30:80 (ID:50122) to-endpoint FORWARDED (TCP Flags: SYN)
        Jul 25 16:05:58.942: 10.200.1.12:38870 (ID:6305) <> 10.200.1.30:80 (ID:50122) Policy denied DROPPED (TCP Flags: SYN)
        Jul 25 16:07:58.104: 10.200.1.20:50142 (ID:62396) <- 10.200.1.30:80 (ID:50122) to-network FORWARDED (TCP Flags: SYN, ACK)
        Jul 25 16:08:20.005: 10.200.1.12 (ID:6305) -> 10.100.0.11 (host) to-stack FORWARDED (ICMPv4 EchoRequest)
        Jul 25 16:08:21.250: 10.200.1.12:45123 (ID:6305) -> 10.200.0.53:53 (ID:3810) dns-request proxy FORWARDED (DNS Query deathstar.default.svc.cluster.local. A)
        Jul 25 14:37:11.689: 10.200.1.20:49534 (ID:62396) -> 10.200.1.30:80 (ID:50122) http-request DROPPED (HTTP/1.1 PUT http://deathstar.default.svc.cluster.local/v1/exhaust-port)
        Jul 25 15:56:06.051: 10.200.1.20:51000 (ID:62396) <> 10.200.1.30:80 (ID:50122) policy-verdict:L3-L4 INGRESS ALLOWED (TCP Flags: SYN)
        Jul 25 15:15:11.670: 192.168.10.102:37974 (host) -> 192.168.10.100:6443 (kube-apiserver) to-network FORWARDED (TCP Flags: ACK)
        Jul 25 16:08:22.000 EVENTS LOST: HUBBLE_RING_BUFFER CPU(1) 42 (first: Jul 25 16:08:21.000, last: Jul 25 16:08:22.000)
    "#]],
        expect![[r#"
        Jul 25 16:08:23.500 [hubble-relay]: 1 nodes are unavailable: kind-worker2
        Jul 25 16:08:23.700 [hubble-relay]: Error "connection refused" on 1 nodes: kind-worker3
    "#]],
    );
}

#[test]
fn dict() {
    check(
        opts(Output::Dict),
        expect![[r#"
          TIMESTAMP: Jul 25 15:56:06.052
             SOURCE: default/tiefighter:51000
        DESTINATION: default/deathstar-8c4c77fb7-8wdts:80
               TYPE: to-endpoint
            VERDICT: FORWARDED
            SUMMARY: TCP Flags: SYN
        ------------
          TIMESTAMP: Jul 25 16:05:58.942
             SOURCE: default/xwing:38870
        DESTINATION: default/deathstar-8c4c77fb7-8wdts:80
               TYPE: Policy denied
            VERDICT: DROPPED
            SUMMARY: TCP Flags: SYN
        ------------
          TIMESTAMP: Jul 25 16:07:58.104
             SOURCE: default/deathstar-8c4c77fb7-8wdts:80
        DESTINATION: default/tiefighter:50142
               TYPE: to-network
            VERDICT: FORWARDED
            SUMMARY: TCP Flags: SYN, ACK
        ------------
          TIMESTAMP: Jul 25 16:08:20.005
             SOURCE: default/xwing
        DESTINATION: 10.100.0.11
               TYPE: to-stack
            VERDICT: FORWARDED
            SUMMARY: ICMPv4 EchoRequest
        ------------
          TIMESTAMP: Jul 25 16:08:21.250
             SOURCE: default/xwing:45123
        DESTINATION: kube-system/coredns-674b8bbfcf-pdpmn:53
               TYPE: dns-request proxy
            VERDICT: FORWARDED
            SUMMARY: DNS Query deathstar.default.svc.cluster.local. A
        ------------
          TIMESTAMP: Jul 25 14:37:11.689
             SOURCE: default/tiefighter:49534
        DESTINATION: default/deathstar-8c4c77fb7-8wdts:80
               TYPE: http-request
            VERDICT: DROPPED
            SUMMARY: HTTP/1.1 PUT http://deathstar.default.svc.cluster.local/v1/exhaust-port
        ------------
          TIMESTAMP: Jul 25 15:56:06.051
             SOURCE: default/tiefighter:51000
        DESTINATION: default/deathstar-8c4c77fb7-8wdts:80
               TYPE: policy-verdict:L3-L4 INGRESS
            VERDICT: ALLOWED
            SUMMARY: TCP Flags: SYN
        ------------
          TIMESTAMP: Jul 25 15:15:11.670
             SOURCE: 192.168.10.102:37974
        DESTINATION: 192.168.10.100:6443
               TYPE: to-network
            VERDICT: FORWARDED
            SUMMARY: TCP Flags: ACK
        ------------
          TIMESTAMP: Jul 25 16:08:22.000
             SOURCE: HUBBLE_RING_BUFFER
               TYPE: EVENTS LOST
            VERDICT: -
            SUMMARY: CPU(1) - 42 (first: Jul 25 16:08:21.000, last: Jul 25 16:08:22.000)
    "#]],
        expect![[r#"
        ------------
          TIMESTAMP: Jul 25 16:08:23.500
              STATE: NODE_UNAVAILABLE
              NODES: kind-worker2
            MESSAGE: N/A
        ------------
          TIMESTAMP: Jul 25 16:08:23.700
              STATE: NODE_ERROR
              NODES: kind-worker3
            MESSAGE: "connection refused"
    "#]],
    );
}

#[test]
fn table() {
    check(
        opts(Output::Table),
        expect![[r#"
        TIMESTAMP             SOURCE                                 DESTINATION                               TYPE                           VERDICT     SUMMARY
        Jul 25 15:56:06.052   default/tiefighter:51000               default/deathstar-8c4c77fb7-8wdts:80      to-endpoint                    FORWARDED   TCP Flags: SYN
        Jul 25 16:05:58.942   default/xwing:38870                    default/deathstar-8c4c77fb7-8wdts:80      Policy denied                  DROPPED     TCP Flags: SYN
        Jul 25 16:07:58.104   default/deathstar-8c4c77fb7-8wdts:80   default/tiefighter:50142                  to-network                     FORWARDED   TCP Flags: SYN, ACK
        Jul 25 16:08:20.005   default/xwing                          10.100.0.11                               to-stack                       FORWARDED   ICMPv4 EchoRequest
        Jul 25 16:08:21.250   default/xwing:45123                    kube-system/coredns-674b8bbfcf-pdpmn:53   dns-request proxy              FORWARDED   DNS Query deathstar.default.svc.cluster.local. A
        Jul 25 14:37:11.689   default/tiefighter:49534               default/deathstar-8c4c77fb7-8wdts:80      http-request                   DROPPED     HTTP/1.1 PUT http://deathstar.default.svc.cluster.local/v1/exhaust-port
        Jul 25 15:56:06.051   default/tiefighter:51000               default/deathstar-8c4c77fb7-8wdts:80      policy-verdict:L3-L4 INGRESS   ALLOWED     TCP Flags: SYN
        Jul 25 15:15:11.670   192.168.10.102:37974                   192.168.10.100:6443                       to-network                     FORWARDED   TCP Flags: ACK
        Jul 25 16:08:22.000   HUBBLE_RING_BUFFER                     -                                         EVENTS LOST                    -           CPU(1) - 42 (first: Jul 25 16:08:21.000, last: Jul 25 16:08:22.000)
    "#]],
        expect![[r#"
        Jul 25 16:08:23.500 [hubble-relay]: 1 nodes are unavailable: kind-worker2
        Jul 25 16:08:23.700 [hubble-relay]: Error "connection refused" on 1 nodes: kind-worker3
    "#]],
    );
}

#[test]
fn table_with_node_names() {
    let o = PrinterOptions {
        node_name: true,
        ..opts(Output::Table)
    };
    check(
        o,
        expect![[r#"
        TIMESTAMP             NODE          SOURCE                                 DESTINATION                               TYPE                           VERDICT     SUMMARY
        Jul 25 15:56:06.052   kind-worker   default/tiefighter:51000               default/deathstar-8c4c77fb7-8wdts:80      to-endpoint                    FORWARDED   TCP Flags: SYN
        Jul 25 16:05:58.942   kind-worker   default/xwing:38870                    default/deathstar-8c4c77fb7-8wdts:80      Policy denied                  DROPPED     TCP Flags: SYN
        Jul 25 16:07:58.104   kind-worker   default/deathstar-8c4c77fb7-8wdts:80   default/tiefighter:50142                  to-network                     FORWARDED   TCP Flags: SYN, ACK
        Jul 25 16:08:20.005   kind-worker   default/xwing                          10.100.0.11                               to-stack                       FORWARDED   ICMPv4 EchoRequest
        Jul 25 16:08:21.250   kind-worker   default/xwing:45123                    kube-system/coredns-674b8bbfcf-pdpmn:53   dns-request proxy              FORWARDED   DNS Query deathstar.default.svc.cluster.local. A
        Jul 25 14:37:11.689   kind-worker   default/tiefighter:49534               default/deathstar-8c4c77fb7-8wdts:80      http-request                   DROPPED     HTTP/1.1 PUT http://deathstar.default.svc.cluster.local/v1/exhaust-port
        Jul 25 15:56:06.051   kind-worker   default/tiefighter:51000               default/deathstar-8c4c77fb7-8wdts:80      policy-verdict:L3-L4 INGRESS   ALLOWED     TCP Flags: SYN
        Jul 25 15:15:11.670   k8s-w2        192.168.10.102:37974                   192.168.10.100:6443                       to-network                     FORWARDED   TCP Flags: ACK
        Jul 25 16:08:22.000   kind-worker   HUBBLE_RING_BUFFER                     -                                         EVENTS LOST                    -           CPU(1) - 42 (first: Jul 25 16:08:21.000, last: Jul 25 16:08:22.000)
    "#]],
        expect![[r#"
        Jul 25 16:08:23.500 [hubble-relay]: 1 nodes are unavailable: kind-worker2
        Jul 25 16:08:23.700 [hubble-relay]: Error "connection refused" on 1 nodes: kind-worker3
    "#]],
    );
}

#[test]
fn jsonpb() {
    check(
        opts(Output::JsonPb),
        expect![[r#"
        {"flow":{"time":"2024-07-25T15:56:06.052345678Z","verdict":"FORWARDED","IP":{"source":"10.200.1.20","destination":"10.200.1.30","ipVersion":"IPv4"},"l4":{"TCP":{"source_port":51000,"destination_port":80,"flags":{"SYN":true}}},"source":{"identity":62396,"namespace":"default","pod_name":"tiefighter"},"destination":{"identity":50122,"namespace":"default","pod_name":"deathstar-8c4c77fb7-8wdts"},"Type":"L3_L4","node_name":"kind-worker","event_type":{"type":4},"traffic_direction":"INGRESS","trace_observation_point":"TO_ENDPOINT","is_reply":false,"Summary":"TCP Flags: SYN"},"node_name":"kind-worker","time":"2024-07-25T15:56:06.052345678Z"}
        {"flow":{"time":"2024-07-25T16:05:58.942111Z","verdict":"DROPPED","drop_reason":133,"IP":{"source":"10.200.1.12","destination":"10.200.1.30","ipVersion":"IPv4"},"l4":{"TCP":{"source_port":38870,"destination_port":80,"flags":{"SYN":true}}},"source":{"identity":6305,"namespace":"default","pod_name":"xwing"},"destination":{"identity":50122,"namespace":"default","pod_name":"deathstar-8c4c77fb7-8wdts"},"Type":"L3_L4","node_name":"kind-worker","event_type":{"type":1,"sub_type":133},"traffic_direction":"INGRESS","drop_reason_desc":"POLICY_DENIED","Summary":"TCP Flags: SYN"},"node_name":"kind-worker","time":"2024-07-25T16:05:58.942111Z"}
        {"flow":{"time":"2024-07-25T16:07:58.104999999Z","verdict":"FORWARDED","IP":{"source":"10.200.1.30","destination":"10.200.1.20","ipVersion":"IPv4"},"l4":{"TCP":{"source_port":80,"destination_port":50142,"flags":{"SYN":true,"ACK":true}}},"source":{"identity":50122,"namespace":"default","pod_name":"deathstar-8c4c77fb7-8wdts"},"destination":{"identity":62396,"namespace":"default","pod_name":"tiefighter"},"Type":"L3_L4","node_name":"kind-worker","event_type":{"type":4,"sub_type":11},"traffic_direction":"EGRESS","is_reply":true,"Summary":"TCP Flags: SYN, ACK"},"node_name":"kind-worker","time":"2024-07-25T16:07:58.104999999Z"}
        {"flow":{"time":"2024-07-25T16:08:20.005Z","verdict":"FORWARDED","IP":{"source":"10.200.1.12","destination":"10.100.0.11","ipVersion":"IPv4"},"l4":{"ICMPv4":{"type":8}},"source":{"identity":6305,"namespace":"default","pod_name":"xwing"},"destination":{"identity":1},"Type":"L3_L4","node_name":"kind-worker","event_type":{"type":4,"sub_type":3},"is_reply":false,"Summary":"ICMPv4 EchoRequest"},"node_name":"kind-worker","time":"2024-07-25T16:08:20.005Z"}
        {"flow":{"time":"2024-07-25T16:08:21.250Z","verdict":"FORWARDED","IP":{"source":"10.200.1.12","destination":"10.200.0.53","ipVersion":"IPv4"},"l4":{"UDP":{"source_port":45123,"destination_port":53}},"source":{"identity":6305,"namespace":"default","pod_name":"xwing"},"destination":{"identity":3810,"namespace":"kube-system","pod_name":"coredns-674b8bbfcf-pdpmn"},"Type":"L7","node_name":"kind-worker","l7":{"type":"REQUEST","dns":{"query":"deathstar.default.svc.cluster.local.","observation_source":"proxy","qtypes":["A"]}},"event_type":{"type":129},"traffic_direction":"EGRESS","is_reply":false,"Summary":"DNS Query deathstar.default.svc.cluster.local. A"},"node_name":"kind-worker","time":"2024-07-25T16:08:21.250Z"}
        {"flow":{"time":"2024-07-25T14:37:11.689123456Z","verdict":"DROPPED","IP":{"source":"10.200.1.20","destination":"10.200.1.30","ipVersion":"IPv4"},"l4":{"TCP":{"source_port":49534,"destination_port":80,"flags":{}}},"source":{"identity":62396,"namespace":"default","pod_name":"tiefighter"},"destination":{"identity":50122,"namespace":"default","pod_name":"deathstar-8c4c77fb7-8wdts"},"Type":"L7","node_name":"kind-worker","l7":{"type":"REQUEST","http":{"method":"PUT","url":"http://deathstar.default.svc.cluster.local/v1/exhaust-port","protocol":"HTTP/1.1"}},"event_type":{"type":129},"traffic_direction":"INGRESS","is_reply":false,"Summary":"HTTP/1.1 PUT http://deathstar.default.svc.cluster.local/v1/exhaust-port"},"node_name":"kind-worker","time":"2024-07-25T14:37:11.689123456Z"}
        {"flow":{"time":"2024-07-25T15:56:06.051Z","verdict":"FORWARDED","IP":{"source":"10.200.1.20","destination":"10.200.1.30","ipVersion":"IPv4"},"l4":{"TCP":{"source_port":51000,"destination_port":80,"flags":{"SYN":true}}},"source":{"identity":62396,"namespace":"default","pod_name":"tiefighter"},"destination":{"identity":50122,"namespace":"default","pod_name":"deathstar-8c4c77fb7-8wdts"},"Type":"L3_L4","node_name":"kind-worker","event_type":{"type":5},"traffic_direction":"INGRESS","policy_match_type":2,"Summary":"TCP Flags: SYN","ingress_allowed_by":[{"name":"rule1","namespace":"default","kind":"CiliumNetworkPolicy"}]},"node_name":"kind-worker","time":"2024-07-25T15:56:06.051Z"}
        {"flow":{"time":"2024-07-25T15:15:11.670Z","verdict":"FORWARDED","IP":{"source":"192.168.10.102","destination":"192.168.10.100","ipVersion":"IPv4"},"l4":{"TCP":{"source_port":37974,"destination_port":6443,"flags":{"ACK":true}}},"source":{"identity":1},"destination":{"identity":7},"Type":"L3_L4","node_name":"k8s-w2","event_type":{"type":4,"sub_type":11},"is_reply":false,"Summary":"TCP Flags: ACK"},"node_name":"k8s-w2","time":"2024-07-25T15:15:11.670Z"}
        {"lost_events":{"source":"HUBBLE_RING_BUFFER","num_events_lost":"42","cpu":1,"first":"2024-07-25T16:08:21Z","last":"2024-07-25T16:08:22Z"},"node_name":"kind-worker","time":"2024-07-25T16:08:22Z"}
    "#]],
        expect![[r#"
        {"node_status":{"state_change":"NODE_UNAVAILABLE","node_names":["kind-worker2"]},"node_name":"hubble-relay","time":"2024-07-25T16:08:23.500Z"}
        {"node_status":{"state_change":"NODE_ERROR","node_names":["kind-worker3"],"message":"connection refused"},"node_name":"hubble-relay","time":"2024-07-25T16:08:23.700Z"}
    "#]],
    );
}

#[test]
fn json_legacy() {
    check(
        opts(Output::JsonLegacy),
        expect![[r#"
        {"time":"2024-07-25T15:56:06.052345678Z","verdict":"FORWARDED","IP":{"source":"10.200.1.20","destination":"10.200.1.30","ipVersion":"IPv4"},"l4":{"TCP":{"source_port":51000,"destination_port":80,"flags":{"SYN":true}}},"source":{"identity":62396,"namespace":"default","pod_name":"tiefighter"},"destination":{"identity":50122,"namespace":"default","pod_name":"deathstar-8c4c77fb7-8wdts"},"Type":"L3_L4","node_name":"kind-worker","event_type":{"type":4},"traffic_direction":"INGRESS","trace_observation_point":"TO_ENDPOINT","is_reply":false,"Summary":"TCP Flags: SYN"}
        {"time":"2024-07-25T16:05:58.942111Z","verdict":"DROPPED","drop_reason":133,"IP":{"source":"10.200.1.12","destination":"10.200.1.30","ipVersion":"IPv4"},"l4":{"TCP":{"source_port":38870,"destination_port":80,"flags":{"SYN":true}}},"source":{"identity":6305,"namespace":"default","pod_name":"xwing"},"destination":{"identity":50122,"namespace":"default","pod_name":"deathstar-8c4c77fb7-8wdts"},"Type":"L3_L4","node_name":"kind-worker","event_type":{"type":1,"sub_type":133},"traffic_direction":"INGRESS","drop_reason_desc":"POLICY_DENIED","Summary":"TCP Flags: SYN"}
        {"time":"2024-07-25T16:07:58.104999999Z","verdict":"FORWARDED","IP":{"source":"10.200.1.30","destination":"10.200.1.20","ipVersion":"IPv4"},"l4":{"TCP":{"source_port":80,"destination_port":50142,"flags":{"SYN":true,"ACK":true}}},"source":{"identity":50122,"namespace":"default","pod_name":"deathstar-8c4c77fb7-8wdts"},"destination":{"identity":62396,"namespace":"default","pod_name":"tiefighter"},"Type":"L3_L4","node_name":"kind-worker","event_type":{"type":4,"sub_type":11},"traffic_direction":"EGRESS","is_reply":true,"Summary":"TCP Flags: SYN, ACK"}
        {"time":"2024-07-25T16:08:20.005Z","verdict":"FORWARDED","IP":{"source":"10.200.1.12","destination":"10.100.0.11","ipVersion":"IPv4"},"l4":{"ICMPv4":{"type":8}},"source":{"identity":6305,"namespace":"default","pod_name":"xwing"},"destination":{"identity":1},"Type":"L3_L4","node_name":"kind-worker","event_type":{"type":4,"sub_type":3},"is_reply":false,"Summary":"ICMPv4 EchoRequest"}
        {"time":"2024-07-25T16:08:21.250Z","verdict":"FORWARDED","IP":{"source":"10.200.1.12","destination":"10.200.0.53","ipVersion":"IPv4"},"l4":{"UDP":{"source_port":45123,"destination_port":53}},"source":{"identity":6305,"namespace":"default","pod_name":"xwing"},"destination":{"identity":3810,"namespace":"kube-system","pod_name":"coredns-674b8bbfcf-pdpmn"},"Type":"L7","node_name":"kind-worker","l7":{"type":"REQUEST","dns":{"query":"deathstar.default.svc.cluster.local.","observation_source":"proxy","qtypes":["A"]}},"event_type":{"type":129},"traffic_direction":"EGRESS","is_reply":false,"Summary":"DNS Query deathstar.default.svc.cluster.local. A"}
        {"time":"2024-07-25T14:37:11.689123456Z","verdict":"DROPPED","IP":{"source":"10.200.1.20","destination":"10.200.1.30","ipVersion":"IPv4"},"l4":{"TCP":{"source_port":49534,"destination_port":80,"flags":{}}},"source":{"identity":62396,"namespace":"default","pod_name":"tiefighter"},"destination":{"identity":50122,"namespace":"default","pod_name":"deathstar-8c4c77fb7-8wdts"},"Type":"L7","node_name":"kind-worker","l7":{"type":"REQUEST","http":{"method":"PUT","url":"http://deathstar.default.svc.cluster.local/v1/exhaust-port","protocol":"HTTP/1.1"}},"event_type":{"type":129},"traffic_direction":"INGRESS","is_reply":false,"Summary":"HTTP/1.1 PUT http://deathstar.default.svc.cluster.local/v1/exhaust-port"}
        {"time":"2024-07-25T15:56:06.051Z","verdict":"FORWARDED","IP":{"source":"10.200.1.20","destination":"10.200.1.30","ipVersion":"IPv4"},"l4":{"TCP":{"source_port":51000,"destination_port":80,"flags":{"SYN":true}}},"source":{"identity":62396,"namespace":"default","pod_name":"tiefighter"},"destination":{"identity":50122,"namespace":"default","pod_name":"deathstar-8c4c77fb7-8wdts"},"Type":"L3_L4","node_name":"kind-worker","event_type":{"type":5},"traffic_direction":"INGRESS","policy_match_type":2,"Summary":"TCP Flags: SYN","ingress_allowed_by":[{"name":"rule1","namespace":"default","kind":"CiliumNetworkPolicy"}]}
        {"time":"2024-07-25T15:15:11.670Z","verdict":"FORWARDED","IP":{"source":"192.168.10.102","destination":"192.168.10.100","ipVersion":"IPv4"},"l4":{"TCP":{"source_port":37974,"destination_port":6443,"flags":{"ACK":true}}},"source":{"identity":1},"destination":{"identity":7},"Type":"L3_L4","node_name":"k8s-w2","event_type":{"type":4,"sub_type":11},"is_reply":false,"Summary":"TCP Flags: ACK"}
        {"source":"HUBBLE_RING_BUFFER","num_events_lost":"42","cpu":1,"first":"2024-07-25T16:08:21Z","last":"2024-07-25T16:08:22Z"}
    "#]],
        expect![[r#""#]],
    );
}

#[test]
fn compact_in_colour() {
    let o = PrinterOptions {
        color: true,
        ..opts(Output::Compact)
    };
    let (out, err) = render(o, &all_events());
    // Make escapes visible.
    expect![[r#"
        Jul 25 15:56:06.052: \e[36mdefault/tiefighter:\e[33m51000\e[0m\e[0m \e[35m(ID:62396)\e[0m -> \e[36mdefault/deathstar-8c4c77fb7-8wdts:\e[33m80\e[0m\e[0m \e[35m(ID:50122)\e[0m to-endpoint \e[32mFORWARDED\e[0m (TCP Flags: SYN)
        Jul 25 16:05:58.942: \e[36mdefault/xwing:\e[33m38870\e[0m\e[0m \e[35m(ID:6305)\e[0m <> \e[36mdefault/deathstar-8c4c77fb7-8wdts:\e[33m80\e[0m\e[0m \e[35m(ID:50122)\e[0m Policy denied \e[31mDROPPED\e[0m (TCP Flags: SYN)
        Jul 25 16:07:58.104: \e[36mdefault/tiefighter:\e[33m50142\e[0m\e[0m \e[35m(ID:62396)\e[0m <- \e[36mdefault/deathstar-8c4c77fb7-8wdts:\e[33m80\e[0m\e[0m \e[35m(ID:50122)\e[0m to-network \e[32mFORWARDED\e[0m (TCP Flags: SYN, ACK)
        Jul 25 16:08:20.005: \e[36mdefault/xwing\e[0m \e[35m(ID:6305)\e[0m -> \e[36m10.100.0.11\e[0m \e[35m(host)\e[0m to-stack \e[32mFORWARDED\e[0m (ICMPv4 EchoRequest)
        Jul 25 16:08:21.250: \e[36mdefault/xwing:\e[33m45123\e[0m\e[0m \e[35m(ID:6305)\e[0m -> \e[36mkube-system/coredns-674b8bbfcf-pdpmn:\e[33m53\e[0m\e[0m \e[35m(ID:3810)\e[0m dns-request proxy \e[32mFORWARDED\e[0m (DNS Query deathstar.default.svc.cluster.local. A)
        Jul 25 14:37:11.689: \e[36mdefault/tiefighter:\e[33m49534\e[0m\e[0m \e[35m(ID:62396)\e[0m -> \e[36mdefault/deathstar-8c4c77fb7-8wdts:\e[33m80\e[0m\e[0m \e[35m(ID:50122)\e[0m http-request \e[31mDROPPED\e[0m (HTTP/1.1 PUT http://deathstar.default.svc.cluster.local/v1/exhaust-port)
        Jul 25 15:56:06.051: \e[36mdefault/tiefighter:\e[33m51000\e[0m\e[0m \e[35m(ID:62396)\e[0m <> \e[36mdefault/deathstar-8c4c77fb7-8wdts:\e[33m80\e[0m\e[0m \e[35m(ID:50122)\e[0m policy-verdict:L3-L4 INGRESS \e[32mALLOWED\e[0m (TCP Flags: SYN)
        Jul 25 15:15:11.670: \e[36m192.168.10.102:\e[33m37974\e[0m\e[0m \e[35m(host)\e[0m -> \e[36m192.168.10.100:\e[33m6443\e[0m\e[0m \e[35m(kube-apiserver)\e[0m to-network \e[32mFORWARDED\e[0m (TCP Flags: ACK)
        Jul 25 16:08:22.000 EVENTS LOST: HUBBLE_RING_BUFFER CPU(1) 42 (first: Jul 25 16:08:21.000, last: Jul 25 16:08:22.000)
    "#]].assert_eq(&out.replace('\x1b', "\\e"));
    expect![[r#"
        Jul 25 16:08:23.500 [hubble-relay]: 1 nodes are unavailable: kind-worker2
        Jul 25 16:08:23.700 [hubble-relay]: Error "connection refused" on 1 nodes: kind-worker3
    "#]]
    .assert_eq(&err.replace('\x1b', "\\e"));
}

#[test]
fn dict_in_colour() {
    let o = PrinterOptions {
        color: true,
        ..opts(Output::Dict)
    };
    let (out, _) = render(o, &flows()[..3]);
    expect![[r#"
          TIMESTAMP: Jul 25 15:56:06.052
             SOURCE: \e[36mdefault/tiefighter:\e[33m51000\e[0m\e[0m
        DESTINATION: \e[36mdefault/deathstar-8c4c77fb7-8wdts:\e[33m80\e[0m\e[0m
               TYPE: to-endpoint
            VERDICT: \e[32mFORWARDED\e[0m
            SUMMARY: TCP Flags: SYN
        ------------
          TIMESTAMP: Jul 25 16:05:58.942
             SOURCE: \e[36mdefault/xwing:\e[33m38870\e[0m\e[0m
        DESTINATION: \e[36mdefault/deathstar-8c4c77fb7-8wdts:\e[33m80\e[0m\e[0m
               TYPE: Policy denied
            VERDICT: \e[31mDROPPED\e[0m
            SUMMARY: TCP Flags: SYN
        ------------
          TIMESTAMP: Jul 25 16:07:58.104
             SOURCE: \e[36mdefault/deathstar-8c4c77fb7-8wdts:\e[33m80\e[0m\e[0m
        DESTINATION: \e[36mdefault/tiefighter:\e[33m50142\e[0m\e[0m
               TYPE: to-network
            VERDICT: \e[32mFORWARDED\e[0m
            SUMMARY: TCP Flags: SYN, ACK
    "#]]
    .assert_eq(&out.replace('\x1b', "\\e"));
}

#[test]
fn table_ignores_colour() {
    let coloured = PrinterOptions {
        color: true,
        ..opts(Output::Table)
    };
    assert_eq!(
        render(coloured, &flows()).0,
        render(opts(Output::Table), &flows()).0
    );
}

#[test]
fn every_time_format() {
    let mut text = String::new();
    for name in FORMAT_NAMES {
        let o = PrinterOptions {
            time_layout: TimeLayout::from_name(name),
            ..opts(Output::Compact)
        };
        let (out, _) = render(o, &[wrap(trace_to_endpoint()), lost_events()]);
        text.push_str(&format!("# {name}\n{out}"));
    }
    expect![[r#"
        # YearMonthDay
        2024-07-25: default/tiefighter:51000 (ID:62396) -> default/deathstar-8c4c77fb7-8wdts:80 (ID:50122) to-endpoint FORWARDED (TCP Flags: SYN)
        2024-07-25 EVENTS LOST: HUBBLE_RING_BUFFER CPU(1) 42 (first: 2024-07-25, last: 2024-07-25)
        # YearMonthDayHour
        2024-07-25T15Z: default/tiefighter:51000 (ID:62396) -> default/deathstar-8c4c77fb7-8wdts:80 (ID:50122) to-endpoint FORWARDED (TCP Flags: SYN)
        2024-07-25T16Z EVENTS LOST: HUBBLE_RING_BUFFER CPU(1) 42 (first: 2024-07-25T16Z, last: 2024-07-25T16Z)
        # YearMonthDayHourMinute
        2024-07-25T15:56Z: default/tiefighter:51000 (ID:62396) -> default/deathstar-8c4c77fb7-8wdts:80 (ID:50122) to-endpoint FORWARDED (TCP Flags: SYN)
        2024-07-25T16:08Z EVENTS LOST: HUBBLE_RING_BUFFER CPU(1) 42 (first: 2024-07-25T16:08Z, last: 2024-07-25T16:08Z)
        # StampMilli
        Jul 25 15:56:06.052: default/tiefighter:51000 (ID:62396) -> default/deathstar-8c4c77fb7-8wdts:80 (ID:50122) to-endpoint FORWARDED (TCP Flags: SYN)
        Jul 25 16:08:22.000 EVENTS LOST: HUBBLE_RING_BUFFER CPU(1) 42 (first: Jul 25 16:08:21.000, last: Jul 25 16:08:22.000)
        # RFC3339
        2024-07-25T15:56:06Z: default/tiefighter:51000 (ID:62396) -> default/deathstar-8c4c77fb7-8wdts:80 (ID:50122) to-endpoint FORWARDED (TCP Flags: SYN)
        2024-07-25T16:08:22Z EVENTS LOST: HUBBLE_RING_BUFFER CPU(1) 42 (first: 2024-07-25T16:08:21Z, last: 2024-07-25T16:08:22Z)
        # RFC3339Milli
        2024-07-25T15:56:06.052Z: default/tiefighter:51000 (ID:62396) -> default/deathstar-8c4c77fb7-8wdts:80 (ID:50122) to-endpoint FORWARDED (TCP Flags: SYN)
        2024-07-25T16:08:22Z EVENTS LOST: HUBBLE_RING_BUFFER CPU(1) 42 (first: 2024-07-25T16:08:21Z, last: 2024-07-25T16:08:22Z)
        # RFC3339Micro
        2024-07-25T15:56:06.052345Z: default/tiefighter:51000 (ID:62396) -> default/deathstar-8c4c77fb7-8wdts:80 (ID:50122) to-endpoint FORWARDED (TCP Flags: SYN)
        2024-07-25T16:08:22Z EVENTS LOST: HUBBLE_RING_BUFFER CPU(1) 42 (first: 2024-07-25T16:08:21Z, last: 2024-07-25T16:08:22Z)
        # RFC3339Nano
        2024-07-25T15:56:06.052345678Z: default/tiefighter:51000 (ID:62396) -> default/deathstar-8c4c77fb7-8wdts:80 (ID:50122) to-endpoint FORWARDED (TCP Flags: SYN)
        2024-07-25T16:08:22Z EVENTS LOST: HUBBLE_RING_BUFFER CPU(1) 42 (first: 2024-07-25T16:08:21Z, last: 2024-07-25T16:08:22Z)
        # RFC1123Z
        Thu, 25 Jul 2024 15:56:06 +0000: default/tiefighter:51000 (ID:62396) -> default/deathstar-8c4c77fb7-8wdts:80 (ID:50122) to-endpoint FORWARDED (TCP Flags: SYN)
        Thu, 25 Jul 2024 16:08:22 +0000 EVENTS LOST: HUBBLE_RING_BUFFER CPU(1) 42 (first: Thu, 25 Jul 2024 16:08:21 +0000, last: Thu, 25 Jul 2024 16:08:22 +0000)
    "#]].assert_eq(&text);
}

#[test]
fn escapes_terminal_control_characters() {
    let mut f = http_request();
    #[allow(deprecated)]
    {
        f.summary = "evil \x1b[2J\rsummary".to_string();
    }
    let (out, _) = render(opts(Output::Compact), &[wrap(f)]);
    assert!(out.contains("(evil ^[[2J\\rsummary)"), "{out}");
}
