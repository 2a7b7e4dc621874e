//! `hubble-agent monitor`: the node's datapath events as `cilium monitor` prints them,
//! read from the agent's Hubble API on its Unix socket. With `-v` each event is printed
//! as `cilium monitor -v` does: a separator, a header line naming the endpoint, the
//! observation point, state, interface and identities, then the packet's layers.

use std::path::Path;

use anyhow::{bail, Context, Result};
use proto::flow::{self, layer4, Flow, FlowFilter};
use proto::observer::{
    get_flows_response::ResponseTypes, observer_client::ObserverClient, GetFlowsRequest,
};

/// Event types `--type` accepts, with Cilium's monitor message numbers.
const TYPES: &[(&str, i32)] = &[
    ("drop", 1),
    ("trace", 4),
    ("policy-verdict", 5),
    ("l7", L7_EVENT_TYPE),
];

/// Cilium's MessageTypeAccessLog: the L7 proxies' records.
const L7_EVENT_TYPE: i32 = 129;

/// Follows the datapath events of the agent behind `socket`.
pub async fn run(socket: &Path, types: &[String], verbose: bool) -> Result<()> {
    let mut event_type = Vec::new();
    for name in types {
        let Some((_, number)) = TYPES.iter().find(|(n, _)| n == name) else {
            let valid: Vec<&str> = TYPES.iter().map(|(n, _)| *n).collect();
            bail!(
                "unknown event type {name:?}: valid types are {}",
                valid.join(", ")
            );
        };
        event_type.push(flow::EventTypeFilter {
            r#type: *number,
            ..Default::default()
        });
    }
    let channel = connect_unix(socket).await?;
    let mut client = ObserverClient::new(channel);
    let request = GetFlowsRequest {
        follow: true,
        whitelist: vec![FlowFilter {
            event_type,
            ..Default::default()
        }],
        ..Default::default()
    };
    let mut stream = client
        .get_flows(request)
        .await
        .context("GetFlows")?
        .into_inner();
    println!("Listening for events on {}", socket.display());
    while let Some(response) = stream.message().await.context("reading events")? {
        match response.response_types {
            Some(ResponseTypes::Flow(flow)) if flow.l7.is_some() => {
                println!("{}", format_l7(&flow))
            }
            Some(ResponseTypes::Flow(flow)) if verbose => print!("{}", format_verbose(&flow)),
            Some(ResponseTypes::Flow(flow)) => println!("{}", format_event(&flow)),
            Some(ResponseTypes::LostEvents(lost)) => {
                println!(
                    "CPU {:?}: Lost {} events",
                    lost.cpu.map(|c| c.value),
                    lost.num_events_lost
                )
            }
            _ => {}
        }
    }
    Ok(())
}

/// Connects a gRPC channel to a Unix socket.
pub async fn connect_unix(socket: &Path) -> Result<tonic::transport::Channel> {
    proto::transport::unix_endpoint()
        .connect_with_connector(proto::transport::UnixConnector::new(socket))
        .await
        .with_context(|| format!("failed to connect to {}", socket.display()))
}

fn tuple(f: &Flow) -> String {
    let ip = f.ip.clone().unwrap_or_default();
    let (proto, sport, dport, detail) = match f.l4.as_ref().and_then(|l| l.protocol.as_ref()) {
        Some(layer4::Protocol::Tcp(t)) => {
            let flags = t.flags.unwrap_or_default();
            let names: Vec<&str> = [
                (flags.syn, "SYN"),
                (flags.ack, "ACK"),
                (flags.fin, "FIN"),
                (flags.rst, "RST"),
                (flags.psh, "PSH"),
            ]
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, n)| *n)
            .collect();
            ("tcp", t.source_port, t.destination_port, names.join(", "))
        }
        Some(layer4::Protocol::Udp(u)) => ("udp", u.source_port, u.destination_port, String::new()),
        Some(layer4::Protocol::IcmPv4(i)) => {
            return format!(
                "{} -> {} icmp type {} code {}",
                ip.source, ip.destination, i.r#type, i.code
            )
        }
        Some(layer4::Protocol::IcmPv6(i)) => {
            return format!(
                "{} -> {} icmpv6 type {} code {}",
                ip.source, ip.destination, i.r#type, i.code
            )
        }
        _ => return format!("{} -> {}", ip.source, ip.destination),
    };
    format!(
        "{}:{} -> {}:{} {proto} {detail}",
        ip.source, sport, ip.destination, dport
    )
    .trim_end()
    .to_string()
}

/// One line per event, in the shape `cilium monitor` prints.
pub fn format_event(f: &Flow) -> String {
    let (src, dst, ifname) = sides(f);
    let (kind, _) = f
        .event_type
        .as_ref()
        .map_or((0, 0), |e| (e.r#type, e.sub_type));
    match kind {
        1 => {
            let reason = drop_reason(f);
            format!(
                "xx drop ({reason}) to endpoint {}, identity {}->{}: {}",
                dst.id,
                src.identity,
                dst.identity,
                tuple(f)
            )
        }
        5 => {
            let direction = if f.traffic_direction == flow::TrafficDirection::Ingress as i32 {
                "ingress"
            } else {
                "egress"
            };
            let (local, remote) = if direction == "ingress" {
                (&dst, src.identity)
            } else {
                (&src, dst.identity)
            };
            let action = verdict_action(f);
            let matched = proto::names::policy_match_type(f.policy_match_type);
            format!(
                "Policy verdict log: flow 0x0 local EP ID {}, remote ID {remote}, {direction}, action {action}, match {matched}, {}",
                local.id,
                tuple(f)
            )
        }
        _ => {
            let (point, state) = (observation_point(f), trace_state(f));
            let arrow = match point.as_str() {
                "to-endpoint" => format!("-> endpoint {}", dst.id),
                "to-stack" => "-> stack".to_string(),
                _ => format!("-> endpoint {}", dst.id),
            };
            format!(
                "{arrow} flow 0x0 , identity {}->{} state {state} ifindex {ifname}: {}",
                src.identity,
                dst.identity,
                tuple(f)
            )
        }
    }
}

/// An L7 record as `cilium monitor` prints an access log record (the same line with
/// and without `-v`): `<- Request http from 1899 ([labels]) to 1224 ([labels]),
/// identity 62396->50122, verdict Denied PUT http://... => 0`. A response flow's
/// source is the server, so it reads `to <client> from <server>`.
pub fn format_l7(f: &Flow) -> String {
    let (src, dst, _) = sides(f);
    let arrow = if f.traffic_direction == flow::TrafficDirection::Egress as i32 {
        "->"
    } else {
        "<-"
    };
    let labels = |e: &flow::Endpoint| format!("[{}]", e.labels.join(" "));
    let l7 = f.l7.clone().unwrap_or_default();
    let response = l7.r#type == flow::L7FlowType::Response as i32;
    let (http, proto) = match &l7.record {
        Some(flow::layer7::Record::Http(http)) => (Some(http), "http"),
        Some(flow::layer7::Record::Dns(_)) => (None, "dns"),
        Some(flow::layer7::Record::Kafka(_)) => (None, "kafka"),
        None => (None, "unknown"),
    };
    let verdict = match flow::Verdict::try_from(f.verdict) {
        Ok(flow::Verdict::Dropped) => "Denied",
        Ok(flow::Verdict::Error) => "Error",
        _ => "Forwarded",
    };
    let mut line = if response {
        format!(
            "{arrow} Response {proto} to {} ({}) from {} ({}), identity {}->{}, verdict {verdict}",
            dst.id,
            labels(&dst),
            src.id,
            labels(&src),
            src.identity,
            dst.identity
        )
    } else {
        format!(
            "{arrow} Request {proto} from {} ({}) to {} ({}), identity {}->{}, verdict {verdict}",
            src.id,
            labels(&src),
            dst.id,
            labels(&dst),
            src.identity,
            dst.identity
        )
    };
    if let Some(http) = http {
        line.push_str(&format!(" {} {} => {}", http.method, http.url, http.code));
    }
    line
}

/// The event's source and destination endpoints and its interface name (empty when the
/// flow has none).
fn sides(f: &Flow) -> (flow::Endpoint, flow::Endpoint, String) {
    let ifname = f.interface.as_ref().map(|i| i.name.clone());
    (
        f.source.clone().unwrap_or_default(),
        f.destination.clone().unwrap_or_default(),
        ifname.unwrap_or_default(),
    )
}

/// The drop reason as `cilium monitor` words it (the number when unknown).
fn drop_reason(f: &Flow) -> String {
    let text = u8::try_from(f.drop_reason_desc)
        .ok()
        .and_then(proto::names::drop_reason_text);
    match text {
        Some(text) => text.to_string(),
        None => f.drop_reason_desc.to_string(),
    }
}

/// A policy verdict's action: allow, deny or audit.
fn verdict_action(f: &Flow) -> &'static str {
    match flow::Verdict::try_from(f.verdict) {
        Ok(flow::Verdict::Dropped) => "deny",
        Ok(flow::Verdict::Audit) => "audit",
        Ok(flow::Verdict::Redirected) => "redirect",
        _ => "allow",
    }
}

/// A trace's observation point in monitor spelling (`to-endpoint`).
fn observation_point(f: &Flow) -> String {
    flow::TraceObservationPoint::try_from(f.trace_observation_point)
        .map(|p| p.as_str_name().to_lowercase().replace('_', "-"))
        .unwrap_or_default()
}

/// A trace's connection state in monitor spelling (`new`, `established`, ...).
fn trace_state(f: &Flow) -> String {
    flow::TraceReason::try_from(f.trace_reason)
        .map(|r| r.as_str_name().to_lowercase())
        .unwrap_or_default()
}

/// The separator `cilium monitor -v` prints before each event.
const SEPARATOR: &str =
    "------------------------------------------------------------------------------";

/// One event in the verbose shape of `cilium monitor -v`: separator, header line, then
/// one line per decoded layer (`Ethernet`, `IPv4`/`IPv6`, `TCP`/`UDP`/`ICMPv4`/`ICMPv6`,
/// tab-separated as upstream's packet dissection). Fields the flow does not carry
/// (CPU, mark, captured length) are left out rather than invented.
pub fn format_verbose(f: &Flow) -> String {
    let (src, dst, ifname) = sides(f);
    let kind = f.event_type.as_ref().map_or(0, |e| e.r#type);
    let mut header = match kind {
        1 => {
            let reason = drop_reason(f);
            format!("FROM {} DROP: reason {reason}", src.id)
        }
        5 => {
            let ingress = f.traffic_direction == flow::TrafficDirection::Ingress as i32;
            let action = verdict_action(f);
            format!(
                "POLICY VERDICT: local EP ID {}, {}, action {action}",
                if ingress { dst.id } else { src.id },
                if ingress { "ingress" } else { "egress" },
            )
        }
        _ => {
            let (point, state) = (observation_point(f), trace_state(f));
            format!("FROM {} {point}: state {state}", src.id)
        }
    };
    if !ifname.is_empty() {
        header.push_str(&format!(", interface {ifname}"));
    }
    header.push_str(&format!(", identity {}->{}", src.identity, dst.identity));
    if dst.id != 0 {
        header.push_str(&format!(", to endpoint {}", dst.id));
    }
    let mut out = format!("{SEPARATOR}\n{header}\n");
    for line in layers(f) {
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// The packet's layers, one `Name\t{Field=value ...}` line each.
fn layers(f: &Flow) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(eth) = &f.ethernet {
        lines.push(format!(
            "Ethernet\t{{SrcMAC={} DstMAC={}}}",
            eth.source, eth.destination
        ));
    }
    if let Some(ip) = &f.ip {
        let version = if ip.ip_version == flow::IpVersion::IPv6 as i32 {
            "IPv6"
        } else {
            "IPv4"
        };
        lines.push(format!(
            "{version}\t{{SrcIP={} DstIP={}}}",
            ip.source, ip.destination
        ));
    }
    match f.l4.as_ref().and_then(|l| l.protocol.as_ref()) {
        Some(layer4::Protocol::Tcp(t)) => {
            let flags = t.flags.unwrap_or_default();
            lines.push(format!(
                "TCP\t{{SrcPort={} DstPort={} FIN={} SYN={} RST={} PSH={} ACK={} URG={}}}",
                t.source_port,
                t.destination_port,
                flags.fin,
                flags.syn,
                flags.rst,
                flags.psh,
                flags.ack,
                flags.urg
            ));
        }
        Some(layer4::Protocol::Udp(u)) => lines.push(format!(
            "UDP\t{{SrcPort={} DstPort={}}}",
            u.source_port, u.destination_port
        )),
        Some(layer4::Protocol::IcmPv4(i)) => {
            lines.push(format!("ICMPv4\t{{TypeCode={}({})}}", i.r#type, i.code))
        }
        Some(layer4::Protocol::IcmPv6(i)) => {
            lines.push(format!("ICMPv6\t{{TypeCode={}({})}}", i.r#type, i.code))
        }
        _ => {}
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn syn_to_deathstar() -> Flow {
        Flow {
            event_type: Some(flow::CiliumEventType {
                r#type: 4,
                sub_type: 0,
            }),
            trace_observation_point: flow::TraceObservationPoint::ToEndpoint as i32,
            trace_reason: flow::TraceReason::New as i32,
            source: Some(flow::Endpoint {
                id: 12,
                identity: 257,
                ..Default::default()
            }),
            destination: Some(flow::Endpoint {
                id: 34,
                identity: 256,
                ..Default::default()
            }),
            interface: Some(flow::NetworkInterface {
                index: 7,
                name: "lxc1".into(),
            }),
            ethernet: Some(flow::Ethernet {
                source: "aa:bb:cc:dd:ee:01".into(),
                destination: "aa:bb:cc:dd:ee:02".into(),
            }),
            ip: Some(flow::Ip {
                source: "10.200.1.12".into(),
                destination: "10.200.1.10".into(),
                ip_version: flow::IpVersion::IPv4 as i32,
                ..Default::default()
            }),
            l4: Some(flow::Layer4 {
                protocol: Some(layer4::Protocol::Tcp(flow::Tcp {
                    source_port: 51000,
                    destination_port: 80,
                    flags: Some(flow::TcpFlags {
                        syn: true,
                        ..Default::default()
                    }),
                })),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn verbose_event_has_separator_header_and_layers() {
        let text = format_verbose(&syn_to_deathstar());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], SEPARATOR);
        assert_eq!(
            lines[1],
            "FROM 12 to-endpoint: state new, interface lxc1, identity 257->256, to endpoint 34"
        );
        assert_eq!(
            lines[2],
            "Ethernet\t{SrcMAC=aa:bb:cc:dd:ee:01 DstMAC=aa:bb:cc:dd:ee:02}"
        );
        assert_eq!(lines[3], "IPv4\t{SrcIP=10.200.1.12 DstIP=10.200.1.10}");
        assert_eq!(
            lines[4],
            "TCP\t{SrcPort=51000 DstPort=80 FIN=false SYN=true RST=false PSH=false ACK=false URG=false}"
        );
        assert_eq!(lines.len(), 5);
    }

    #[test]
    fn summary_event_is_one_line() {
        let text = format_event(&syn_to_deathstar());
        assert_eq!(
            text,
            "-> endpoint 34 flow 0x0 , identity 257->256 state new ifindex lxc1: 10.200.1.12:51000 -> 10.200.1.10:80 tcp SYN"
        );
    }

    fn l7_flow(response: bool, verdict: flow::Verdict, code: u32) -> Flow {
        let tiefighter = flow::Endpoint {
            id: 1899,
            identity: 62396,
            labels: vec![
                "k8s:app.kubernetes.io/name=tiefighter".into(),
                "k8s:class=tiefighter".into(),
            ],
            ..Default::default()
        };
        let deathstar = flow::Endpoint {
            id: 1224,
            identity: 50122,
            labels: vec!["k8s:class=deathstar".into()],
            ..Default::default()
        };
        let (source, destination) = if response {
            (deathstar, tiefighter)
        } else {
            (tiefighter, deathstar)
        };
        Flow {
            event_type: Some(flow::CiliumEventType {
                r#type: L7_EVENT_TYPE,
                sub_type: 0,
            }),
            verdict: verdict as i32,
            traffic_direction: flow::TrafficDirection::Ingress as i32,
            source: Some(source),
            destination: Some(destination),
            l7: Some(flow::Layer7 {
                r#type: if response {
                    flow::L7FlowType::Response as i32
                } else {
                    flow::L7FlowType::Request as i32
                },
                record: Some(flow::layer7::Record::Http(flow::Http {
                    code,
                    method: "PUT".into(),
                    url: "http://deathstar.default.svc.cluster.local/v1/exhaust-port".into(),
                    ..Default::default()
                })),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn l7_records_print_as_the_seed() {
        assert_eq!(
            format_l7(&l7_flow(false, flow::Verdict::Dropped, 0)),
            "<- Request http from 1899 ([k8s:app.kubernetes.io/name=tiefighter k8s:class=tiefighter]) \
             to 1224 ([k8s:class=deathstar]), identity 62396->50122, verdict Denied PUT \
             http://deathstar.default.svc.cluster.local/v1/exhaust-port => 0"
        );
        assert_eq!(
            format_l7(&l7_flow(true, flow::Verdict::Forwarded, 403)),
            "<- Response http to 1899 ([k8s:app.kubernetes.io/name=tiefighter k8s:class=tiefighter]) \
             from 1224 ([k8s:class=deathstar]), identity 50122->62396, verdict Forwarded PUT \
             http://deathstar.default.svc.cluster.local/v1/exhaust-port => 403"
        );
    }
}
