//! Helpers shared by the server tests: demo flows, a running metrics server and a
//! minimal HTTP/1.1 client.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use metrics::{Metrics, MetricsConfig, Registry};
use pbjson_types::BoolValue;
use proto::flow::{
    layer4, layer7, CiliumEventType, DropReason, Endpoint, Flow, Http, Ip, L7FlowType, Layer4,
    Layer7, Tcp, TcpFlags, TraceContext, TraceParent, TrafficDirection, Verdict,
};

/// The metrics configuration of the demo (upstream's Helm example).
pub const DEMO_CONFIG: &str = "dns drop tcp flow port-distribution icmp policy \
    httpV2:exemplars=true;labelsContext=source_ip,source_namespace,source_workload,destination_ip,destination_namespace,destination_workload,traffic_direction";

pub fn pod(name: &str, labels: &[&str]) -> Endpoint {
    Endpoint {
        identity: 300 + name.len() as u32,
        namespace: "default".into(),
        pod_name: name.into(),
        labels: labels.iter().map(|l| (*l).into()).collect(),
        ..Default::default()
    }
}

/// A SYN from `from` to `to`:80, forwarded or dropped by policy.
pub fn syn(from: Endpoint, to: Endpoint, dropped: bool) -> Flow {
    Flow {
        verdict: if dropped {
            Verdict::Dropped
        } else {
            Verdict::Forwarded
        } as i32,
        drop_reason_desc: if dropped {
            DropReason::PolicyDenied as i32
        } else {
            0
        },
        ip: Some(Ip {
            source: "10.200.1.12".into(),
            destination: "10.200.1.20".into(),
            ip_version: 1,
            ..Default::default()
        }),
        l4: Some(Layer4 {
            protocol: Some(layer4::Protocol::Tcp(Tcp {
                source_port: 40000,
                destination_port: 80,
                flags: Some(TcpFlags {
                    syn: true,
                    ..Default::default()
                }),
            })),
        }),
        source: Some(from),
        destination: Some(to),
        event_type: Some(CiliumEventType {
            r#type: if dropped { 1 } else { 4 },
            sub_type: 0,
        }),
        traffic_direction: TrafficDirection::Ingress as i32,
        is_reply: Some(BoolValue { value: false }),
        ..Default::default()
    }
}

/// An HTTP response from the deathstar carrying a trace ID.
pub fn http_response(trace_id: &str) -> Flow {
    let mut flow = syn(deathstar(), tiefighter(), false);
    flow.l4 = None;
    flow.event_type = Some(CiliumEventType {
        r#type: 129,
        sub_type: 0,
    });
    flow.l7 = Some(Layer7 {
        r#type: L7FlowType::Response as i32,
        latency_ns: 3_000_000,
        record: Some(layer7::Record::Http(Http {
            code: 200,
            method: "POST".into(),
            url: "/v1/request-landing".into(),
            protocol: "HTTP/1.1".into(),
            headers: Vec::new(),
        })),
    });
    flow.trace_context = Some(TraceContext {
        parent: Some(TraceParent {
            trace_id: trace_id.into(),
        }),
    });
    flow
}

pub fn xwing() -> Endpoint {
    pod("xwing", &["k8s:class=xwing", "k8s:org=alliance"])
}

pub fn tiefighter() -> Endpoint {
    pod("tiefighter", &["k8s:class=tiefighter", "k8s:org=empire"])
}

pub fn deathstar() -> Endpoint {
    pod(
        "deathstar-6fb5694d48-5hmds",
        &["k8s:class=deathstar", "k8s:org=empire"],
    )
}

/// Metrics with the demo configuration, fed xwing's three dropped SYNs, tiefighter's
/// forwarded SYN and one traced HTTP response.
pub fn demo_metrics() -> Result<(Arc<Metrics>, Registry)> {
    let config = MetricsConfig::parse(DEMO_CONFIG)?;
    let metrics = Arc::new(Metrics::new(&config));
    for _ in 0..3 {
        metrics.process_flow(&syn(xwing(), deathstar(), true));
    }
    metrics.process_flow(&syn(tiefighter(), deathstar(), false));
    metrics.process_flow(&http_response("4bf92f3577b34da6a3ce929d0e0e4736"));
    metrics.lost_events("hubble_ring_buffer", 7);
    let mut registry = Registry::new();
    registry.register(metrics.clone());
    Ok((metrics, registry))
}

/// A response: status code, headers (lower-case names) and body.
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends `GET path` to `addr` with an optional `Accept` header.
pub fn get(addr: SocketAddr, path: &str, accept: Option<&str>) -> Result<Response> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let accept = accept
        .map(|a| format!("Accept: {a}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{accept}Connection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        bail!("malformed HTTP response: {text:?}");
    };
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .context("status line")?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_owned()
    };
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn dechunk(mut body: &str) -> Result<String> {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n").context("chunk size")?;
        let size = usize::from_str_radix(size.trim(), 16)?;
        if size == 0 {
            return Ok(out);
        }
        out.push_str(rest.get(..size).context("short chunk")?);
        body = rest.get(size + 2..).context("chunk end")?;
    }
}

/// Starts `registry`'s server on a free loopback port; returns its address and a
/// sender that stops it.
pub async fn start_server(
    registry: Registry,
) -> Result<(
    SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let shutdown = async move {
            let _ = rx.await;
        };
        if let Err(e) = metrics::serve_listener(listener, registry, shutdown).await {
            eprintln!("metrics server: {e}");
        }
    });
    Ok((addr, tx, task))
}
