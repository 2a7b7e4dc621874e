//! Prints: the cost per flow of `Metrics::process_flow` with every handler on over a
//! Star Wars demo-like mix, the number of series that mix creates, and flow export
//! throughput to disk.
//!
//! Run with `cargo bench -p metrics --bench metrics_bench`.

use std::hint::black_box;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use metrics::export::{
    write_export_line, ExportManager, ExporterConfig, RotatingFile, RotationConfig,
};
use metrics::exposition::Format;
use metrics::{Metrics, MetricsConfig, Registry};
use pbjson_types::{BoolValue, Timestamp};
use proto::flow::{
    layer4, layer7, CiliumEventType, Dns, DropReason, Endpoint, Flow, Http, IcmPv4, Ip, L7FlowType,
    Layer4, Layer7, Tcp, TcpFlags, TraceContext, TraceParent, TrafficDirection, Udp, Verdict,
    Workload,
};

/// Every handler, with the label contexts a demo would use.
const ALL_HANDLERS: &str = "dns:query drop:sourceContext=pod;destinationContext=pod \
    tcp:sourceContext=pod;destinationContext=pod flow:sourceContext=pod;destinationContext=pod \
    port-distribution icmp policy:sourceContext=pod;destinationContext=pod \
    flows-to-world:port \
    httpV2:exemplars=true;labelsContext=source_ip,source_namespace,source_workload,destination_ip,destination_namespace,destination_workload,traffic_direction";

fn pod(name: &str, workload: &str, ip: &str, labels: &[&str]) -> (Endpoint, String) {
    let endpoint = Endpoint {
        identity: 1000 + name.len() as u32,
        namespace: "default".into(),
        pod_name: name.into(),
        labels: labels.iter().map(|l| (*l).into()).collect(),
        workloads: vec![Workload {
            name: workload.into(),
            kind: "Deployment".into(),
        }],
        ..Default::default()
    };
    (endpoint, ip.to_owned())
}

fn base(src: &(Endpoint, String), dst: &(Endpoint, String), n: usize) -> Flow {
    Flow {
        time: Some(Timestamp {
            seconds: 1_700_000_000 + n as i64 / 1000,
            nanos: ((n % 1000) * 1_000_000) as i32,
        }),
        uuid: format!("7f1c{n:012x}-0000-4000-8000-000000000000"),
        ip: Some(Ip {
            source: src.1.clone(),
            destination: dst.1.clone(),
            ip_version: 1,
            ..Default::default()
        }),
        source: Some(src.0.clone()),
        destination: Some(dst.0.clone()),
        node_name: "hl-node1".into(),
        traffic_direction: TrafficDirection::Ingress as i32,
        is_reply: Some(BoolValue { value: false }),
        ..Default::default()
    }
}

fn tcp(flow: &mut Flow, dport: u32, flags: TcpFlags) {
    flow.l4 = Some(Layer4 {
        protocol: Some(layer4::Protocol::Tcp(Tcp {
            source_port: 40000 + (flow.uuid.len() as u32 % 1000),
            destination_port: dport,
            flags: Some(flags),
        })),
    });
}

/// A demo-like mix: tiefighter lands (SYN, SYN-ACK, ACK, HTTP request and response,
/// FIN), xwing is denied by policy (drops and policy verdicts), DNS lookups to
/// coredns, pings, and some traffic to the world.
fn demo_mix() -> Vec<Flow> {
    let xwing = pod(
        "xwing",
        "xwing",
        "10.200.1.12",
        &["k8s:class=xwing", "k8s:org=alliance"],
    );
    let tiefighter = pod(
        "tiefighter",
        "tiefighter",
        "10.200.1.13",
        &["k8s:class=tiefighter", "k8s:org=empire"],
    );
    let deathstars = [
        pod(
            "deathstar-6fb5694d48-5hmds",
            "deathstar",
            "10.200.1.20",
            &["k8s:class=deathstar", "k8s:org=empire"],
        ),
        pod(
            "deathstar-6fb5694d48-d2w9x",
            "deathstar",
            "10.200.1.21",
            &["k8s:class=deathstar", "k8s:org=empire"],
        ),
    ];
    let coredns = pod(
        "coredns-5d78c9869d-xk2lp",
        "coredns",
        "10.200.1.2",
        &["k8s:k8s-app=kube-dns"],
    );
    let world = (
        Endpoint {
            identity: 2,
            labels: vec!["reserved:world".into()],
            ..Default::default()
        },
        "93.184.216.34".to_owned(),
    );
    let flag = |syn, ack, fin| TcpFlags {
        syn,
        ack,
        fin,
        ..Default::default()
    };
    let trace = |t: u32| CiliumEventType {
        r#type: 4,
        sub_type: t as i32,
    };
    let mut flows = Vec::new();
    for n in 0..64usize {
        let ds = &deathstars[n % 2];
        // tiefighter -> deathstar: handshake, HTTP, close.
        for (syn, ack, fin, reply) in [
            (true, false, false, false),
            (true, true, false, true),
            (false, true, false, false),
            (false, true, true, false),
        ] {
            let (a, b) = if reply {
                (ds, &tiefighter)
            } else {
                (&tiefighter, ds)
            };
            let mut f = base(a, b, n);
            tcp(&mut f, 80, flag(syn, ack, fin));
            f.verdict = Verdict::Forwarded as i32;
            f.event_type = Some(trace(0));
            f.is_reply = Some(BoolValue { value: reply });
            flows.push(f);
        }
        let mut pv = base(&tiefighter, ds, n);
        tcp(&mut pv, 80, flag(true, false, false));
        pv.verdict = Verdict::Forwarded as i32;
        pv.event_type = Some(CiliumEventType {
            r#type: 5,
            sub_type: 0,
        });
        pv.policy_match_type = 2;
        flows.push(pv);
        for kind in [L7FlowType::Request, L7FlowType::Response] {
            let (a, b) = if kind == L7FlowType::Response {
                (ds, &tiefighter)
            } else {
                (&tiefighter, ds)
            };
            let mut f = base(a, b, n);
            f.verdict = Verdict::Forwarded as i32;
            f.event_type = Some(CiliumEventType {
                r#type: 129,
                sub_type: 0,
            });
            f.l7 = Some(Layer7 {
                r#type: kind as i32,
                latency_ns: 1_000_000 + (n as u64 * 37_000),
                record: Some(layer7::Record::Http(Http {
                    code: if kind == L7FlowType::Response { 200 } else { 0 },
                    method: "POST".into(),
                    url: "http://deathstar.default.svc.cluster.local/v1/request-landing".into(),
                    protocol: "HTTP/1.1".into(),
                    headers: Vec::new(),
                })),
            });
            f.trace_context = Some(TraceContext {
                parent: Some(TraceParent {
                    trace_id: format!("{n:032x}"),
                }),
            });
            flows.push(f);
        }
        // xwing -> deathstar: denied.
        let mut drop = base(&xwing, ds, n);
        tcp(&mut drop, 80, flag(true, false, false));
        drop.verdict = Verdict::Dropped as i32;
        drop.drop_reason_desc = DropReason::PolicyDenied as i32;
        drop.event_type = Some(CiliumEventType {
            r#type: 1,
            sub_type: 133,
        });
        flows.push(drop.clone());
        drop.event_type = Some(CiliumEventType {
            r#type: 5,
            sub_type: 0,
        });
        drop.policy_match_type = 0;
        flows.push(drop);
        // DNS lookup and answer.
        for reply in [false, true] {
            let (a, b) = if reply {
                (&coredns, &xwing)
            } else {
                (&xwing, &coredns)
            };
            let mut f = base(a, b, n);
            f.l4 = Some(Layer4 {
                protocol: Some(layer4::Protocol::Udp(Udp {
                    source_port: 53000,
                    destination_port: 53,
                })),
            });
            f.verdict = Verdict::Forwarded as i32;
            f.event_type = Some(CiliumEventType {
                r#type: 129,
                sub_type: 0,
            });
            f.is_reply = Some(BoolValue { value: reply });
            f.l7 = Some(Layer7 {
                r#type: if reply { 2 } else { 1 },
                latency_ns: 0,
                record: Some(layer7::Record::Dns(Dns {
                    query: "deathstar.default.svc.cluster.local.".into(),
                    ips: if reply {
                        vec!["10.96.0.15".into()]
                    } else {
                        Vec::new()
                    },
                    qtypes: vec!["A".into()],
                    rrtypes: if reply { vec!["A".into()] } else { Vec::new() },
                    ..Default::default()
                })),
            });
            flows.push(f);
        }
        // A ping and a request to the world.
        let mut ping = base(&xwing, ds, n);
        ping.l4 = Some(Layer4 {
            protocol: Some(layer4::Protocol::IcmPv4(IcmPv4 { r#type: 8, code: 0 })),
        });
        ping.verdict = Verdict::Forwarded as i32;
        ping.event_type = Some(trace(5));
        flows.push(ping);
        let mut out = base(&tiefighter, &world, n);
        tcp(&mut out, 443, flag(true, false, false));
        out.verdict = Verdict::Forwarded as i32;
        out.event_type = Some(trace(3));
        out.traffic_direction = TrafficDirection::Egress as i32;
        flows.push(out);
    }
    flows
}

fn bench_process_flow(flows: &[Flow]) -> (f64, usize, usize) {
    let config = MetricsConfig::parse(ALL_HANDLERS).expect("bench config parses");
    let metrics = Arc::new(Metrics::new(&config));
    // Warm up: create every series once.
    for flow in flows {
        metrics.process_flow(flow);
    }
    let rounds = 2_000;
    let start = Instant::now();
    for _ in 0..rounds {
        for flow in flows {
            metrics.process_flow(black_box(flow));
        }
    }
    let elapsed = start.elapsed();
    let per_flow = elapsed.as_nanos() as f64 / (rounds * flows.len()) as f64;
    let mut registry = Registry::new();
    registry.register(metrics.clone());
    let scrape_start = Instant::now();
    let text = registry.encode(Format::Text);
    let scrape = scrape_start.elapsed();
    println!(
        "scrape: {} bytes of text exposition in {:.2} ms",
        text.len(),
        scrape.as_secs_f64() * 1e3
    );
    (
        per_flow,
        metrics.series_count(),
        text.lines().filter(|l| !l.starts_with('#')).count(),
    )
}

fn bench_export_writer(flows: &[Flow]) -> f64 {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut file = RotatingFile::new(
        dir.path().join("hubble-events.log"),
        RotationConfig {
            max_size_bytes: 10 * 1024 * 1024,
            max_backups: 5,
            compress: false,
        },
    );
    let mut writer = proto::json::Writer::with_capacity(4096);
    let mut line = Vec::with_capacity(4096);
    let total = 400_000;
    let start = Instant::now();
    for i in 0..total {
        line.clear();
        write_export_line(&mut writer, &flows[i % flows.len()], &mut line);
        file.write_line(&line).expect("bench write");
    }
    file.close().expect("bench close");
    total as f64 / start.elapsed().as_secs_f64()
}

fn bench_export_json(flows: &[Flow]) -> f64 {
    let mut writer = proto::json::Writer::with_capacity(4096);
    let mut line = Vec::with_capacity(4096);
    let total = 400_000;
    let mut bytes = 0;
    let start = Instant::now();
    for i in 0..total {
        line.clear();
        write_export_line(&mut writer, black_box(&flows[i % flows.len()]), &mut line);
        bytes += line.len();
    }
    let rate = total as f64 / start.elapsed().as_secs_f64();
    println!("export line size: {} bytes on average", bytes / total);
    rate
}

fn bench_export_manager(flows: &[Flow]) -> (f64, u64, u64) {
    let dir = tempfile::tempdir().expect("temp dir");
    let manager = ExportManager::new();
    manager
        .apply(vec![ExporterConfig::new(
            "bench",
            dir.path().join("hubble-events.log"),
        )])
        .expect("bench exporter");
    let shared: Vec<Arc<Flow>> = flows.iter().cloned().map(Arc::new).collect();
    let total = 400_000;
    let start = Instant::now();
    for i in 0..total {
        manager.export_flow(&shared[i % shared.len()]);
        // Offer at most one queue's worth ahead of the writer, like a bursty agent.
        if i % 4096 == 4095 {
            std::thread::yield_now();
        }
    }
    let stats = manager.stats("bench").expect("stats");
    manager.stop_all();
    let elapsed = start.elapsed().as_secs_f64();
    let written = stats.written.load(Ordering::Relaxed);
    let discarded = stats.discarded.load(Ordering::Relaxed);
    (written as f64 / elapsed, written, discarded)
}

fn main() {
    let flows = demo_mix();
    println!("demo mix: {} flows per round", flows.len());
    let (ns, series, samples) = bench_process_flow(&flows);
    println!(
        "process_flow, all handlers on: {ns:.0} ns/flow ({:.2} M flows/s on one core)",
        1e3 / ns
    );
    println!(
        "series for the demo mix: {series} series ({samples} sample lines in the text exposition)"
    );
    let json = bench_export_json(&flows);
    println!("export, serialize only (ExportEvent JSON line): {json:.0} flows/s");
    let writer = bench_export_writer(&flows);
    println!(
        "export, serialize + write with rotation: {:.0} flows/s ({:.2} M flows/s)",
        writer,
        writer / 1e6
    );
    let (rate, written, discarded) = bench_export_manager(&flows);
    println!(
        "export through the queue and writer thread: {rate:.0} flows/s written ({written} written, {discarded} discarded when the queue was full)"
    );
}
