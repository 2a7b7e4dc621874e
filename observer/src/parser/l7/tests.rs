#![allow(deprecated)]

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use ebpf_events::clock::KtimeClock;
use proto::accesslog::{
    DnsLog, DnsTransport, HttpLog, L7Log, LogRecord, RecordEndpoint, RecordKind, RecordVerdict,
};
use proto::flow::{self, layer4, layer7};

use super::canonical_header_key;
use crate::parser::{EndpointGetter, Getters, Parser};

const TIEFIGHTER: &str = "10.200.1.20";
const DEATHSTAR: &str = "10.200.1.30";
const URL: &str = "http://deathstar.default.svc.cluster.local/v1/exhaust-port";

struct Endpoints(HashMap<IpAddr, flow::Endpoint>);

impl EndpointGetter for Endpoints {
    fn endpoint_by_ip(&self, ip: IpAddr) -> Option<flow::Endpoint> {
        self.0.get(&ip).cloned()
    }
}

fn pod(id: u32, identity: u32, name: &str) -> flow::Endpoint {
    flow::Endpoint {
        id,
        identity,
        namespace: "default".into(),
        pod_name: name.into(),
        ..Default::default()
    }
}

fn parser() -> Parser {
    let endpoints = HashMap::from([
        (TIEFIGHTER.parse().unwrap(), pod(1899, 62396, "tiefighter")),
        (
            DEATHSTAR.parse().unwrap(),
            pod(1224, 50122, "deathstar-8c4c77fb7-8wdts"),
        ),
    ]);
    Parser::new(
        "kind-worker",
        KtimeClock::with_offset_ns(0),
        Getters {
            endpoints: Some(Arc::new(Endpoints(endpoints))),
            ..Getters::default()
        },
    )
}

fn http_record(kind: RecordKind, verdict: RecordVerdict, method: &str, code: u32) -> LogRecord {
    LogRecord {
        time: UNIX_EPOCH + Duration::new(1_721_918_231, 689_123_456),
        kind,
        verdict,
        ingress: true,
        proxy_port: 15080,
        source: RecordEndpoint {
            ip: TIEFIGHTER.parse().unwrap(),
            port: 49534,
            identity: 62396,
        },
        destination: RecordEndpoint {
            ip: DEATHSTAR.parse().unwrap(),
            port: 80,
            identity: 50122,
        },
        latency: (kind == RecordKind::Response).then(|| Duration::from_micros(3_456)),
        l7: L7Log::Http(HttpLog {
            code,
            method: method.into(),
            url: URL.into(),
            protocol: "HTTP/1.1",
            headers: vec![
                ("user-agent".into(), "curl/7.81.0".into()),
                ("accept".into(), "*/*".into()),
                ("x-b3-flags".into(), "1".into()),
                ("accept".into(), "text/plain".into()),
            ],
            trace_parent: None,
        }),
    }
}

fn ports(f: &flow::Flow) -> (u32, u32) {
    match f.l4.as_ref().unwrap().protocol.as_ref().unwrap() {
        layer4::Protocol::Tcp(tcp) => (tcp.source_port, tcp.destination_port),
        layer4::Protocol::Udp(udp) => (udp.source_port, udp.destination_port),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_denied_request_is_a_dropped_l7_request_flow() {
    let record = http_record(RecordKind::Request, RecordVerdict::Denied, "PUT", 0);
    let f = parser().parse_log_record(&record);
    assert_eq!(f.r#type, flow::FlowType::L7 as i32);
    assert_eq!(f.verdict, flow::Verdict::Dropped as i32);
    assert_eq!(
        f.event_type,
        Some(flow::CiliumEventType {
            r#type: 129,
            sub_type: 0
        })
    );
    assert_eq!(
        f.time,
        Some(pbjson_types::Timestamp {
            seconds: 1_721_918_231,
            nanos: 689_123_456
        })
    );
    assert_eq!(f.traffic_direction, flow::TrafficDirection::Ingress as i32);
    assert_eq!(f.is_reply, Some(pbjson_types::BoolValue { value: false }));
    assert!(!f.reply);
    assert_eq!(f.node_name, "kind-worker");
    assert!(!f.uuid.is_empty());
    let ip = f.ip.as_ref().unwrap();
    assert_eq!(
        (ip.source.as_str(), ip.destination.as_str()),
        (TIEFIGHTER, DEATHSTAR)
    );
    assert_eq!(ip.ip_version, flow::IpVersion::IPv4 as i32);
    assert_eq!(ports(&f), (49534, 80));
    let source = f.source.as_ref().unwrap();
    let destination = f.destination.as_ref().unwrap();
    assert_eq!(
        (source.pod_name.as_str(), source.identity, source.id),
        ("tiefighter", 62396, 1899)
    );
    assert_eq!(
        (destination.pod_name.as_str(), destination.identity),
        ("deathstar-8c4c77fb7-8wdts", 50122)
    );
    let l7 = f.l7.as_ref().unwrap();
    assert_eq!(
        (l7.r#type, l7.latency_ns),
        (flow::L7FlowType::Request as i32, 0)
    );
    let Some(layer7::Record::Http(http)) = l7.record.as_ref() else {
        panic!("{l7:?}")
    };
    assert_eq!(
        (http.code, http.method.as_str(), http.url.as_str()),
        (0, "PUT", URL)
    );
    assert_eq!(http.protocol, "HTTP/1.1");
    assert_eq!(f.summary, format!("HTTP/1.1 PUT {URL}"));
    assert_eq!(
        f.proxy_port, 0,
        "Hubble's L7 parser leaves proxy_port unset"
    );
}

#[test]
fn a_response_goes_from_the_server_to_the_client_with_its_latency() {
    let record = http_record(RecordKind::Response, RecordVerdict::Forwarded, "POST", 200);
    let f = parser().parse_log_record(&record);
    assert_eq!(f.verdict, flow::Verdict::Forwarded as i32);
    assert_eq!(f.is_reply, Some(pbjson_types::BoolValue { value: true }));
    assert!(f.reply);
    let ip = f.ip.as_ref().unwrap();
    assert_eq!(
        (ip.source.as_str(), ip.destination.as_str()),
        (DEATHSTAR, TIEFIGHTER)
    );
    assert_eq!(ports(&f), (80, 49534));
    assert_eq!(f.source.as_ref().unwrap().identity, 50122);
    assert_eq!(f.destination.as_ref().unwrap().pod_name, "tiefighter");
    assert_eq!(f.traffic_direction, flow::TrafficDirection::Ingress as i32);
    let l7 = f.l7.as_ref().unwrap();
    assert_eq!(
        (l7.r#type, l7.latency_ns),
        (flow::L7FlowType::Response as i32, 3_456_000)
    );
    let Some(layer7::Record::Http(http)) = l7.record.as_ref() else {
        panic!("{l7:?}")
    };
    assert_eq!(http.code, 200);
    assert_eq!(f.summary, format!("HTTP/1.1 200 3ms (POST {URL})"));
}

#[test]
fn headers_are_canonical_and_sorted_by_key() {
    let record = http_record(RecordKind::Request, RecordVerdict::Forwarded, "GET", 0);
    let f = parser().parse_log_record(&record);
    let Some(layer7::Record::Http(http)) = f.l7.unwrap().record else {
        panic!()
    };
    let headers: Vec<_> = http
        .headers
        .iter()
        .map(|h| (h.key.as_str(), h.value.as_str()))
        .collect();
    assert_eq!(
        headers,
        [
            ("Accept", "*/*"),
            ("Accept", "text/plain"),
            ("User-Agent", "curl/7.81.0"),
            ("X-B3-Flags", "1"),
        ]
    );
    assert_eq!(canonical_header_key("x-request-id"), "X-Request-Id");
    assert_eq!(canonical_header_key("CONTENT-TYPE"), "Content-Type");
    assert_eq!(canonical_header_key("bad key"), "bad key");
}

#[test]
fn a_traceparent_is_the_trace_context_of_request_and_response() {
    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    for kind in [RecordKind::Request, RecordKind::Response] {
        let mut record = http_record(kind, RecordVerdict::Forwarded, "POST", 200);
        let L7Log::Http(http) = &mut record.l7 else {
            unreachable!()
        };
        http.trace_parent = Some(format!("00-{TRACE}-00f067aa0ba902b7-01"));
        let f = parser().parse_log_record(&record);
        let parent = f
            .trace_context
            .and_then(|t| t.parent)
            .expect("trace context");
        assert_eq!(parent.trace_id, TRACE);
    }
    // Malformed or invalid headers give no trace context.
    for bad in [
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        "not a traceparent",
    ] {
        let mut record = http_record(RecordKind::Request, RecordVerdict::Forwarded, "GET", 0);
        let L7Log::Http(http) = &mut record.l7 else {
            unreachable!()
        };
        http.trace_parent = Some(bad.to_owned());
        let f = parser().parse_log_record(&record);
        assert_eq!(f.trace_context, None, "{bad}");
    }
}

#[test]
fn egress_redirects_and_errors() {
    let mut record = http_record(RecordKind::Response, RecordVerdict::Error, "GET", 503);
    record.ingress = false;
    let f = parser().parse_log_record(&record);
    assert_eq!(f.verdict, flow::Verdict::Error as i32);
    assert_eq!(f.traffic_direction, flow::TrafficDirection::Egress as i32);
}

fn dns_record(kind: RecordKind, rcode: u32) -> LogRecord {
    let mut record = http_record(kind, RecordVerdict::Forwarded, "", 0);
    record.destination.port = 53;
    record.l7 = L7Log::Dns(DnsLog {
        query: "deathstar.default.svc.cluster.local.".into(),
        ips: vec!["10.96.60.53".parse().unwrap()],
        ttl: 30,
        cnames: vec![],
        observation_source: "proxy".into(),
        rcode,
        qtypes: vec!["A".into()],
        rrtypes: vec!["A".into()],
        transport: DnsTransport::Udp,
    });
    record
}

#[test]
fn dns_queries_and_answers_read_as_hubble_prints_them() {
    let parser = parser();
    let query = parser.parse_log_record(&dns_record(RecordKind::Request, 0));
    assert_eq!(
        query.summary,
        "DNS Query deathstar.default.svc.cluster.local. A"
    );
    assert!(matches!(
        query.l4.as_ref().unwrap().protocol,
        Some(layer4::Protocol::Udp(_))
    ));
    let Some(layer7::Record::Dns(dns)) = query.l7.as_ref().unwrap().record.as_ref() else {
        panic!()
    };
    assert!(dns.ips.is_empty() && dns.rrtypes.is_empty() && dns.ttl == 0);

    let answer = parser.parse_log_record(&dns_record(RecordKind::Response, 0));
    assert_eq!(
        answer.summary,
        "DNS Answer \"10.96.60.53\" TTL: 30 (Proxy deathstar.default.svc.cluster.local. A)"
    );
    assert_eq!(ports(&answer), (53, 49534));
    let failed = parser.parse_log_record(&dns_record(RecordKind::Response, 3));
    assert_eq!(
        failed.summary,
        "DNS Answer RCode: Non-Existent Domain TTL: 30 (Proxy deathstar.default.svc.cluster.local. A)"
    );
}

#[test]
fn dns_over_tcp_reads_as_tcp() {
    let mut record = dns_record(RecordKind::Response, 0);
    if let L7Log::Dns(dns) = &mut record.l7 {
        dns.transport = DnsTransport::Tcp;
    }
    let answer = parser().parse_log_record(&record);
    assert!(matches!(
        answer.l4.as_ref().unwrap().protocol,
        Some(layer4::Protocol::Tcp(flow::Tcp {
            source_port: 53,
            destination_port: 49534,
            flags: None,
        }))
    ));
}
