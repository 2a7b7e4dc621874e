//! Trace-sock records (socket-level service translation) into flows, as Hubble's
//! `parser/sock` fills them: `Type: SOCK`, the translation point, socket cookie and
//! cgroup id; the source is the endpoint owning the socket (found by its cgroup), the
//! destination the address at that point (the VIP before the forward translation,
//! the backend after it). On the reverse path the two sides are swapped.

use std::net::IpAddr;

use ebpf_events::abi::lb::{l4_protocol, xlate_point};
use ebpf_events::constants::identity::WORLD;
use ebpf_events::TraceSockEvent;
use proto::flow::{self, Flow};

use super::{ParseError, Parser};

impl Parser {
    /// The flow of a trace-sock record; [`ParseError::Skipped`] when the socket's
    /// cgroup belongs to no known endpoint (Hubble skips those too).
    pub(super) fn sock_flow(&self, event: &TraceSockEvent) -> Result<Flow, ParseError> {
        let header = event.header;
        let ipv6 = header.is_ipv6();
        let cgroup_id = event.sock.cgroup_id;
        let owner = self
            .getters
            .cgroups
            .as_ref()
            .and_then(|g| g.endpoint_ip_by_cgroup(cgroup_id, ipv6))
            .ok_or(ParseError::Skipped("socket of an unknown cgroup"))?;
        let mut src_ip = owner;
        let mut dst_ip = event.dst;
        let mut src_port = 0u16;
        let mut dst_port = event.sock.dst_port;
        let mut source = self.sock_endpoint(src_ip);
        let mut destination = self.sock_endpoint(dst_ip);
        let point = header.subtype;
        let reverse =
            point == xlate_point::PRE_DIRECTION_REV || point == xlate_point::POST_DIRECTION_REV;
        if reverse {
            std::mem::swap(&mut src_ip, &mut dst_ip);
            std::mem::swap(&mut src_port, &mut dst_port);
            std::mem::swap(&mut source, &mut destination);
        }
        let verdict = match point {
            xlate_point::PRE_DIRECTION_FWD | xlate_point::PRE_DIRECTION_REV => {
                flow::Verdict::Traced
            }
            xlate_point::POST_DIRECTION_FWD | xlate_point::POST_DIRECTION_REV => {
                flow::Verdict::Translated
            }
            _ => flow::Verdict::Unknown,
        };
        let (l4, summary) = match event.sock.l4_proto {
            l4_protocol::TCP => (
                Some(flow::layer4::Protocol::Tcp(flow::Tcp {
                    source_port: u32::from(src_port),
                    destination_port: u32::from(dst_port),
                    ..Default::default()
                })),
                "TCP",
            ),
            l4_protocol::UDP => (
                Some(flow::layer4::Protocol::Udp(flow::Udp {
                    source_port: u32::from(src_port),
                    destination_port: u32::from(dst_port),
                })),
                "UDP",
            ),
            _ => (None, "Unknown"),
        };
        let mut flow = Flow {
            time: Some(super::timestamp(self.clock.to_unix_ns(header.ktime_ns))),
            uuid: super::new_uuid(),
            r#type: flow::FlowType::Sock as i32,
            node_name: self.node_name.clone(),
            event_type: Some(flow::CiliumEventType {
                r#type: i32::from(header.msg_type),
                sub_type: i32::from(point),
            }),
            verdict: verdict as i32,
            ip: Some(flow::Ip {
                source: src_ip.to_string(),
                destination: dst_ip.to_string(),
                ip_version: if ipv6 {
                    flow::IpVersion::IPv6 as i32
                } else {
                    flow::IpVersion::IPv4 as i32
                },
                ..Default::default()
            }),
            l4: l4.map(|protocol| flow::Layer4 {
                protocol: Some(protocol),
            }),
            source: Some(source),
            destination: Some(destination),
            sock_xlate_point: i32::from(point),
            socket_cookie: event.sock.sock_cookie,
            cgroup_id,
            summary: summary.to_string(),
            ..Default::default()
        };
        // After the forward translation the destination is the chosen backend.
        self.fill_services(&mut flow, point == xlate_point::POST_DIRECTION_FWD);
        self.fill_names(&mut flow);
        Ok(flow)
    }

    /// An endpoint by address, or `world` as Cilium's ipcache answers for
    /// addresses it does not know (a VIP, say).
    fn sock_endpoint(&self, ip: IpAddr) -> flow::Endpoint {
        let known = self
            .getters
            .endpoints
            .as_ref()
            .and_then(|g| g.endpoint_by_ip(ip));
        known.unwrap_or_else(|| self.resolve_endpoint(None, WORLD))
    }
}
