//! The whole L7 path a user reads: a proxy's access records, turned into flows
//! by the observer's parser, printed by `hubble` (refresh with `UPDATE_EXPECT=1`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use ebpf_events::clock::KtimeClock;
use expect_test::expect;
use observer::parser::{EndpointGetter, Getters, Parser};
use proto::accesslog::{HttpLog, L7Log, LogRecord, RecordEndpoint, RecordKind, RecordVerdict};

use super::*;

struct Endpoints(HashMap<IpAddr, proto::flow::Endpoint>);

impl EndpointGetter for Endpoints {
    fn endpoint_by_ip(&self, ip: IpAddr) -> Option<proto::flow::Endpoint> {
        self.0.get(&ip).cloned()
    }
}

fn parser() -> Parser {
    let pod = |id, identity, name: &str| proto::flow::Endpoint {
        id,
        identity,
        namespace: "default".into(),
        pod_name: name.into(),
        ..Default::default()
    };
    let endpoints = HashMap::from([
        (
            "10.200.1.20".parse().expect("ip"),
            pod(1899, 62396, "tiefighter"),
        ),
        (
            "10.200.1.30".parse().expect("ip"),
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

/// The seed's exchanges: tiefighter's PUT denied, its POST landed in 3.4 ms.
fn records() -> Vec<LogRecord> {
    let record = |kind, verdict, method: &str, path: &str, code, latency_us: u64| LogRecord {
        time: UNIX_EPOCH
            + Duration::new(1_721_918_231, 689_123_456)
            + Duration::from_micros(latency_us),
        kind,
        verdict,
        ingress: true,
        proxy_port: 15080,
        source: RecordEndpoint {
            ip: "10.200.1.20".parse().expect("ip"),
            port: 49534,
            identity: 62396,
        },
        destination: RecordEndpoint {
            ip: "10.200.1.30".parse().expect("ip"),
            port: 80,
            identity: 50122,
        },
        latency: (kind == RecordKind::Response).then(|| Duration::from_micros(latency_us)),
        l7: L7Log::Http(HttpLog {
            code,
            method: method.into(),
            url: format!("http://deathstar.default.svc.cluster.local{path}").into(),
            protocol: "HTTP/1.1",
            headers: Vec::new(),
            trace_parent: None,
        }),
    };
    vec![
        record(
            RecordKind::Request,
            RecordVerdict::Denied,
            "PUT",
            "/v1/exhaust-port",
            0,
            0,
        ),
        record(
            RecordKind::Response,
            RecordVerdict::Forwarded,
            "PUT",
            "/v1/exhaust-port",
            403,
            120,
        ),
        record(
            RecordKind::Request,
            RecordVerdict::Forwarded,
            "POST",
            "/v1/request-landing",
            0,
            0,
        ),
        record(
            RecordKind::Response,
            RecordVerdict::Forwarded,
            "POST",
            "/v1/request-landing",
            200,
            3_456,
        ),
    ]
}

fn flows() -> Vec<GetFlowsResponse> {
    let parser = parser();
    records()
        .iter()
        .map(|record| {
            let mut flow = parser.parse_log_record(record);
            flow.uuid.clear();
            wrap(flow)
        })
        .collect()
}

#[test]
fn compact_prints_the_seeds_l7_lines() {
    let (out, _) = render(opts(Output::Compact), &flows());
    expect![[r#"
        Jul 25 14:37:11.689: default/tiefighter:49534 (ID:62396) -> default/deathstar-8c4c77fb7-8wdts:80 (ID:50122) http-request DROPPED (HTTP/1.1 PUT http://deathstar.default.svc.cluster.local/v1/exhaust-port)
        Jul 25 14:37:11.689: default/tiefighter:49534 (ID:62396) <- default/deathstar-8c4c77fb7-8wdts:80 (ID:50122) http-response FORWARDED (HTTP/1.1 403 0ms (PUT http://deathstar.default.svc.cluster.local/v1/exhaust-port))
        Jul 25 14:37:11.689: default/tiefighter:49534 (ID:62396) -> default/deathstar-8c4c77fb7-8wdts:80 (ID:50122) http-request FORWARDED (HTTP/1.1 POST http://deathstar.default.svc.cluster.local/v1/request-landing)
        Jul 25 14:37:11.692: default/tiefighter:49534 (ID:62396) <- default/deathstar-8c4c77fb7-8wdts:80 (ID:50122) http-response FORWARDED (HTTP/1.1 200 3ms (POST http://deathstar.default.svc.cluster.local/v1/request-landing))
    "#]]
    .assert_eq(&out);
}

#[test]
fn json_prints_the_l7_fields() {
    let (out, _) = render(opts(Output::JsonPb), &flows()[..2]);
    expect![[r#"
        {"flow":{"time":"2024-07-25T14:37:11.689123456Z","verdict":"DROPPED","IP":{"source":"10.200.1.20","destination":"10.200.1.30","ipVersion":"IPv4"},"l4":{"TCP":{"source_port":49534,"destination_port":80}},"source":{"ID":1899,"identity":62396,"namespace":"default","pod_name":"tiefighter"},"destination":{"ID":1224,"identity":50122,"namespace":"default","pod_name":"deathstar-8c4c77fb7-8wdts"},"Type":"L7","node_name":"kind-worker","l7":{"type":"REQUEST","http":{"method":"PUT","url":"http://deathstar.default.svc.cluster.local/v1/exhaust-port","protocol":"HTTP/1.1"}},"event_type":{"type":129},"traffic_direction":"INGRESS","is_reply":false,"Summary":"HTTP/1.1 PUT http://deathstar.default.svc.cluster.local/v1/exhaust-port"},"node_name":"kind-worker","time":"2024-07-25T14:37:11.689123456Z"}
        {"flow":{"time":"2024-07-25T14:37:11.689243456Z","verdict":"FORWARDED","IP":{"source":"10.200.1.30","destination":"10.200.1.20","ipVersion":"IPv4"},"l4":{"TCP":{"source_port":80,"destination_port":49534}},"source":{"ID":1224,"identity":50122,"namespace":"default","pod_name":"deathstar-8c4c77fb7-8wdts"},"destination":{"ID":1899,"identity":62396,"namespace":"default","pod_name":"tiefighter"},"Type":"L7","node_name":"kind-worker","l7":{"type":"RESPONSE","latency_ns":"120000","http":{"code":403,"method":"PUT","url":"http://deathstar.default.svc.cluster.local/v1/exhaust-port","protocol":"HTTP/1.1"}},"reply":true,"event_type":{"type":129},"traffic_direction":"INGRESS","is_reply":true,"Summary":"HTTP/1.1 403 0ms (PUT http://deathstar.default.svc.cluster.local/v1/exhaust-port)"},"node_name":"kind-worker","time":"2024-07-25T14:37:11.689243456Z"}
    "#]]
    .assert_eq(&out);
}
