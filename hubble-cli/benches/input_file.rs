//! `hubble observe --input-file` throughput: 100k varied flows written as `jsonpb`
//! lines to a temporary file, then read, filtered and printed in process to a sink,
//! once as `-o compact` and once as `-o json`. Prints flows/s for each.
//!
//! Run with `cargo bench -p hubble-cli --bench input_file`.

use std::io::{BufReader, BufWriter, Write};
use std::time::Instant;

use hubble_cli::cmd::observe::input_file;
use hubble_cli::printer::{Output, Printer, PrinterOptions};
use proto::flow::{self, layer4, layer7, Flow};
use proto::observer::{get_flows_response::ResponseTypes, GetFlowsRequest, GetFlowsResponse};

/// Flows in the generated file.
const FLOWS: usize = 100_000;
/// Timed runs per format (the best is reported).
const RUNS: usize = 3;

const PODS: &[(&str, &str, u32)] = &[
    ("default", "xwing", 6305),
    ("default", "tiefighter", 62396),
    ("default", "deathstar-8c4c77fb7-8wdts", 50122),
    ("kube-system", "coredns-674b8bbfcf-pdpmn", 3810),
];

fn endpoint(i: usize) -> flow::Endpoint {
    let (ns, pod, id) = PODS[i % PODS.len()];
    flow::Endpoint {
        id: 100 + i as u32 % 50,
        identity: id,
        namespace: ns.to_string(),
        pod_name: pod.to_string(),
        labels: vec![
            format!("k8s:app={pod}"),
            format!("k8s:io.kubernetes.pod.namespace={ns}"),
        ],
        ..Default::default()
    }
}

/// A mix of traced TCP, policy drops, replies, ICMP, DNS and HTTP flows.
#[allow(deprecated)]
fn flow(i: usize) -> GetFlowsResponse {
    let seconds = 1_721_920_405 + (i / 100) as i64;
    let nanos = ((i % 100) * 10_000_000 + i % 997) as i32;
    let mut f = Flow {
        time: Some(pbjson_types::Timestamp { seconds, nanos }),
        uuid: format!("5f0b4d3e-{i:08x}-4c6a-9d3e-1a2b3c4d5e6f"),
        verdict: flow::Verdict::Forwarded as i32,
        ip: Some(flow::Ip {
            source: format!("10.200.1.{}", 10 + i % 200),
            destination: format!("10.200.2.{}", 10 + (i * 7) % 200),
            ip_version: flow::IpVersion::IPv4 as i32,
            ..Default::default()
        }),
        source: Some(endpoint(i)),
        destination: Some(endpoint(i + 2)),
        r#type: flow::FlowType::L3L4 as i32,
        node_name: format!("kind-worker{}", i % 3),
        event_type: Some(flow::CiliumEventType {
            r#type: 4,
            sub_type: 0,
        }),
        is_reply: Some(pbjson_types::BoolValue { value: i % 5 == 1 }),
        traffic_direction: flow::TrafficDirection::Ingress as i32,
        trace_observation_point: flow::TraceObservationPoint::ToEndpoint as i32,
        ..Default::default()
    };
    let tcp = |flags: flow::TcpFlags| {
        Some(flow::Layer4 {
            protocol: Some(layer4::Protocol::Tcp(flow::Tcp {
                source_port: 30_000 + (i % 30_000) as u32,
                destination_port: 80,
                flags: Some(flags),
            })),
        })
    };
    match i % 6 {
        0 | 1 => {
            f.l4 = tcp(flow::TcpFlags {
                syn: true,
                ack: i % 2 == 1,
                ..Default::default()
            });
            f.summary = "TCP Flags: SYN".to_string();
        }
        2 => {
            f.verdict = flow::Verdict::Dropped as i32;
            f.event_type = Some(flow::CiliumEventType {
                r#type: 1,
                sub_type: 133,
            });
            f.drop_reason_desc = flow::DropReason::PolicyDenied as i32;
            f.is_reply = None;
            f.l4 = tcp(flow::TcpFlags {
                syn: true,
                ..Default::default()
            });
            f.summary = "TCP Flags: SYN".to_string();
        }
        3 => {
            f.l4 = Some(flow::Layer4 {
                protocol: Some(layer4::Protocol::IcmPv4(flow::IcmPv4 {
                    r#type: 8,
                    code: 0,
                })),
            });
            f.summary = "ICMPv4 EchoRequest".to_string();
        }
        4 => {
            f.l4 = Some(flow::Layer4 {
                protocol: Some(layer4::Protocol::Udp(flow::Udp {
                    source_port: 40_000 + (i % 1000) as u32,
                    destination_port: 53,
                })),
            });
            f.r#type = flow::FlowType::L7 as i32;
            f.event_type = Some(flow::CiliumEventType {
                r#type: 129,
                sub_type: 0,
            });
            f.l7 = Some(flow::Layer7 {
                r#type: flow::L7FlowType::Request as i32,
                latency_ns: 0,
                record: Some(layer7::Record::Dns(flow::Dns {
                    query: "deathstar.default.svc.cluster.local.".to_string(),
                    qtypes: vec!["A".to_string()],
                    observation_source: "proxy".to_string(),
                    ..Default::default()
                })),
            });
            f.summary = "DNS Query deathstar.default.svc.cluster.local. A".to_string();
        }
        _ => {
            f.l4 = tcp(flow::TcpFlags {
                ack: true,
                psh: true,
                ..Default::default()
            });
            f.r#type = flow::FlowType::L7 as i32;
            f.event_type = Some(flow::CiliumEventType {
                r#type: 129,
                sub_type: 0,
            });
            f.l7 = Some(flow::Layer7 {
                r#type: flow::L7FlowType::Request as i32,
                latency_ns: 0,
                record: Some(layer7::Record::Http(flow::Http {
                    method: "POST".to_string(),
                    url: "http://deathstar.default.svc.cluster.local/v1/request-landing"
                        .to_string(),
                    protocol: "HTTP/1.1".to_string(),
                    ..Default::default()
                })),
            });
            f.summary =
                "HTTP/1.1 POST http://deathstar.default.svc.cluster.local/v1/request-landing"
                    .to_string();
        }
    }
    GetFlowsResponse {
        node_name: f.node_name.clone(),
        time: f.time,
        response_types: Some(ResponseTypes::Flow(f)),
    }
}

fn run(path: &std::path::Path, output: Output) -> anyhow::Result<f64> {
    let req = GetFlowsRequest::default();
    let mut best = f64::MAX;
    for _ in 0..RUNS {
        let opts = PrinterOptions {
            output,
            ip_translation: true,
            ..PrinterOptions::default()
        };
        let mut printer: Printer<_, std::io::Sink> =
            Printer::new(opts, BufWriter::new(std::io::sink()), None);
        let reader = BufReader::with_capacity(256 * 1024, std::fs::File::open(path)?);
        let start = Instant::now();
        input_file::process(&req, reader, &mut printer, &mut std::io::sink())?;
        best = best.min(start.elapsed().as_secs_f64());
    }
    Ok(FLOWS as f64 / best)
}

fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("flows.json");
    {
        let mut file = BufWriter::new(std::fs::File::create(&path)?);
        let mut w = proto::json::Writer::with_capacity(2048);
        for i in 0..FLOWS {
            proto::json::write_line(&mut w, &flow(i), &mut file)?;
        }
        file.flush()?;
    }
    let size = std::fs::metadata(&path)?.len();
    println!(
        "input: {FLOWS} flows, {:.1} MiB of jsonpb lines",
        size as f64 / (1024.0 * 1024.0)
    );
    for (name, output) in [("compact", Output::Compact), ("json", Output::JsonPb)] {
        let rate = run(&path, output)?;
        println!("--input-file -o {name}: {rate:.0} flows/s");
    }
    Ok(())
}
