//! Turns datapath records into `Flow`s exactly as Hubble's L3/L4 parser fills them.
//!
//! The parser sees the rest of the agent only through narrow getters: endpoints by IP
//! (local pods, and remote pods known from the ipcache), labels by identity, interface
//! names by index, services by frontend or backend. A missing getter means that
//! enrichment is skipped.

// Hubble still fills the deprecated `summary`, `reply` and `drop_reason` fields.
#![allow(deprecated)]

use std::net::IpAddr;
use std::sync::Arc;

use ebpf_events::clock::KtimeClock;
use ebpf_events::constants::{message_type, policy_action, trace_point, trace_reason};
use ebpf_events::decode::{decode, DatapathEvent, DecodeError};
use proto::flow::{self, Flow};

pub mod l7;
mod packet;
mod sock;

pub use packet::{decode_packet, DecodedPacket};

/// Looks up endpoints by IP: local endpoints with their id, and remote pods.
pub trait EndpointGetter: Send + Sync {
    fn endpoint_by_ip(&self, ip: IpAddr) -> Option<flow::Endpoint>;
}

/// Resolves a security identity to its labels (`reserved:world`, `k8s:app=x`, ...).
pub trait IdentityGetter: Send + Sync {
    fn identity_labels(&self, identity: u32) -> Option<Vec<String>>;
}

/// Resolves an interface index to its name.
pub trait LinkGetter: Send + Sync {
    fn link_name(&self, ifindex: u32) -> Option<String>;
}

/// Finds the endpoint that owns a socket by the cgroup of the task that used it
/// (Hubble's pod metadata by cgroup id): its address of the wanted family.
pub trait CgroupGetter: Send + Sync {
    fn endpoint_ip_by_cgroup(&self, cgroup_id: u64, ipv6: bool) -> Option<IpAddr>;
}

/// Looks up services (namespace and name): by frontend (VIP, port, IANA protocol
/// number) and by backend (address, port).
pub trait ServiceGetter: Send + Sync {
    fn service_by_frontend(&self, ip: IpAddr, port: u16, protocol: u8) -> Option<flow::Service>;
    fn service_by_backend(&self, ip: IpAddr, port: u16) -> Option<flow::Service>;
}

/// The DNS names an endpoint looked up (Hubble's DNS getter): the names under which
/// the endpoint with `endpoint_id` learned `ip`, without the trailing dot.
pub trait DnsGetter: Send + Sync {
    fn names_of(&self, endpoint_id: u32, ip: IpAddr) -> Vec<String>;
}

/// The getters a parser enriches flows with; each is optional.
#[derive(Clone, Default)]
pub struct Getters {
    pub endpoints: Option<Arc<dyn EndpointGetter>>,
    pub identities: Option<Arc<dyn IdentityGetter>>,
    pub links: Option<Arc<dyn LinkGetter>>,
    /// Socket owners of trace-sock records; without it those records are skipped.
    pub cgroups: Option<Arc<dyn CgroupGetter>>,
    pub services: Option<Arc<dyn ServiceGetter>>,
    /// `source_names` and `destination_names`; without it flows carry no names.
    pub dns: Option<Arc<dyn DnsGetter>>,
}

/// A record that could not become a flow.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("undecodable datapath record: {0}")]
    Decode(#[from] DecodeError),
    /// A valid record that makes no flow, as Hubble skips it (e.g. a socket
    /// translation by a process that belongs to no endpoint).
    #[error("record skipped: {0}")]
    Skipped(&'static str),
}

/// The datapath record parser of one node.
pub struct Parser {
    node_name: String,
    clock: KtimeClock,
    getters: Getters,
}

impl Parser {
    pub fn new(node_name: impl Into<String>, clock: KtimeClock, getters: Getters) -> Self {
        Self {
            node_name: node_name.into(),
            clock,
            getters,
        }
    }

    /// Decodes one raw ring-buffer record into a flow.
    pub fn parse(&self, record: &[u8]) -> Result<Flow, ParseError> {
        let event = decode(record)?;
        if let DatapathEvent::TraceSock(sock) = &event {
            return self.sock_flow(sock);
        }
        Ok(self.flow_from_event(&event))
    }

    /// Builds the flow of an already decoded event. A trace-sock record whose
    /// socket owner is unknown gets an empty source here ([`Parser::parse`] skips it).
    pub fn flow_from_event(&self, event: &DatapathEvent<'_>) -> Flow {
        if let DatapathEvent::TraceSock(sock) = event {
            if let Ok(flow) = self.sock_flow(sock) {
                return flow;
            }
        }
        let header = *event.header();
        let packet = decode_packet(event.packet());
        let (source_ip, destination_ip) = (packet.source_ip, packet.destination_ip);
        let mut flow = Flow {
            time: Some(timestamp(self.clock.to_unix_ns(header.ktime_ns))),
            uuid: new_uuid(),
            r#type: flow::FlowType::L3L4 as i32,
            node_name: self.node_name.clone(),
            event_type: Some(flow::CiliumEventType {
                r#type: i32::from(header.msg_type),
                sub_type: i32::from(header.subtype),
            }),
            summary: packet.summary,
            ethernet: packet.ethernet,
            ip: packet.ip,
            l4: packet.l4,
            ..Default::default()
        };

        // Identities as the datapath saw them; policy verdicts carry only the remote one.
        let (src_identity, dst_identity) = match event {
            DatapathEvent::PolicyVerdict(pv) if pv.verdict.direction == 0 => {
                (pv.verdict.remote_identity, 0)
            }
            DatapathEvent::PolicyVerdict(pv) => (0, pv.verdict.remote_identity),
            _ => (header.src_identity, header.dst_identity),
        };
        let source = self.resolve_endpoint(source_ip, src_identity);
        let destination = self.resolve_endpoint(destination_ip, dst_identity);
        let source_id = source.id;

        match event {
            DatapathEvent::Trace(_) => {
                flow.verdict = flow::Verdict::Forwarded as i32;
                flow.trace_observation_point = observation_point(header.subtype);
                flow.trace_reason = i32::from(header.reason & 0x7f);
                // As Hubble's decodeProxyPort: a to-proxy trace's DstID is the port.
                if header.subtype == trace_point::TO_PROXY {
                    flow.proxy_port = u32::from(header.dst_endpoint);
                }
                let known = header.reason != trace_reason::UNKNOWN;
                if known {
                    let is_reply = header.reason == trace_reason::REPLY;
                    flow.is_reply = Some(pbjson_types::BoolValue { value: is_reply });
                    flow.reply = is_reply;
                    if header.source != 0 {
                        let from_source = u32::from(header.source) == source_id;
                        flow.traffic_direction = if from_source != is_reply {
                            flow::TrafficDirection::Egress as i32
                        } else {
                            flow::TrafficDirection::Ingress as i32
                        };
                    }
                }
                flow.interface = Some(flow::NetworkInterface {
                    index: header.ifindex,
                    name: self
                        .getters
                        .links
                        .as_ref()
                        .and_then(|l| l.link_name(header.ifindex))
                        .unwrap_or_default(),
                });
            }
            DatapathEvent::Drop(_) => {
                flow.verdict = flow::Verdict::Dropped as i32;
                flow.drop_reason = u32::from(header.subtype);
                flow.drop_reason_desc = i32::from(header.subtype);
                if header.source != 0 {
                    flow.traffic_direction = if u32::from(header.source) == source_id {
                        flow::TrafficDirection::Egress as i32
                    } else {
                        flow::TrafficDirection::Ingress as i32
                    };
                }
            }
            DatapathEvent::PolicyVerdict(pv) => {
                let info = pv.verdict;
                flow.verdict = match info.action {
                    policy_action::DENIED => flow::Verdict::Dropped as i32,
                    policy_action::AUDIT => flow::Verdict::Audit as i32,
                    policy_action::REDIRECTED => flow::Verdict::Redirected as i32,
                    _ => flow::Verdict::Forwarded as i32,
                };
                if info.action == policy_action::DENIED {
                    flow.drop_reason =
                        u32::from(ebpf_events::constants::drop_reason::POLICY_DENIED);
                    flow.drop_reason_desc = flow.drop_reason as i32;
                } else {
                    flow.is_reply = Some(pbjson_types::BoolValue { value: false });
                }
                flow.policy_match_type = u32::from(info.match_type);
                flow.traffic_direction = if info.direction == 0 {
                    flow::TrafficDirection::Ingress as i32
                } else {
                    flow::TrafficDirection::Egress as i32
                };
            }
            // Handled above when its owner is known; otherwise only the header.
            DatapathEvent::TraceSock(_) => {}
        }
        if header.msg_type == message_type::POLICY_VERDICT {
            flow.event_type = Some(flow::CiliumEventType {
                r#type: i32::from(message_type::POLICY_VERDICT),
                sub_type: 0,
            });
        }
        flow.source = Some(source);
        flow.destination = Some(destination);
        self.fill_services_at(&mut flow, source_ip, destination_ip, false);
        self.fill_names_at(&mut flow, source_ip, destination_ip);
        flow
    }

    /// Fills `source_names` and `destination_names` as Hubble does: the names the
    /// destination endpoint looked up for the source address, and those the source
    /// endpoint looked up for the destination address.
    pub fn fill_names(&self, flow: &mut Flow) {
        let (source, destination) = flow_addresses(flow);
        self.fill_names_at(flow, source, destination);
    }

    /// [`Self::fill_names`] with the flow's addresses already at hand.
    fn fill_names_at(&self, flow: &mut Flow, source: Option<IpAddr>, destination: Option<IpAddr>) {
        let Some(dns) = self.getters.dns.as_ref() else {
            return;
        };
        let endpoint_id = |endpoint: &Option<flow::Endpoint>| endpoint.as_ref().map_or(0, |e| e.id);
        let source_id = endpoint_id(&flow.source);
        let destination_id = endpoint_id(&flow.destination);
        if let Some(source) = source.filter(|_| destination_id != 0) {
            flow.source_names = dns.names_of(destination_id, source);
        }
        if let Some(destination) = destination.filter(|_| source_id != 0) {
            flow.destination_names = dns.names_of(source_id, destination);
        }
    }

    /// Fills `source_service` and `destination_service` from the flow's addresses and
    /// ports: a side whose address and port are a service frontend (VIP:port) names
    /// that service. With `translated` (a socket load-balancer's post-translation
    /// event, whose destination is the chosen backend) the destination is also looked
    /// up as a backend.
    pub fn fill_services(&self, flow: &mut Flow, translated: bool) {
        let (source, destination) = flow_addresses(flow);
        self.fill_services_at(flow, source, destination, translated);
    }

    /// [`Self::fill_services`] with the flow's addresses already at hand.
    fn fill_services_at(
        &self,
        flow: &mut Flow,
        source: Option<IpAddr>,
        destination: Option<IpAddr>,
        translated: bool,
    ) {
        let Some(services) = self.getters.services.as_ref() else {
            return;
        };
        let Some((protocol, source_port, destination_port)) = l4_ports(flow) else {
            return;
        };
        flow.source_service =
            source.and_then(|ip| services.service_by_frontend(ip, source_port, protocol));
        flow.destination_service = destination.and_then(|ip| {
            services
                .service_by_frontend(ip, destination_port, protocol)
                .or_else(|| {
                    translated
                        .then(|| services.service_by_backend(ip, destination_port))
                        .flatten()
                })
        });
    }

    /// Resolves one side of a flow as Hubble does: a known endpoint (local, or a remote
    /// pod from the ipcache) with its details, otherwise identity labels only. The
    /// identity the datapath saw wins over the one userspace knows now.
    fn resolve_endpoint(&self, ip: Option<IpAddr>, datapath_identity: u32) -> flow::Endpoint {
        let known = ip.and_then(|ip| self.getters.endpoints.as_ref()?.endpoint_by_ip(ip));
        if let Some(mut endpoint) = known {
            if datapath_identity != 0 && datapath_identity != endpoint.identity {
                endpoint.identity = datapath_identity;
                if let Some(labels) = self.identity_labels(datapath_identity) {
                    endpoint.labels = labels;
                }
            }
            return endpoint;
        }
        flow::Endpoint {
            identity: datapath_identity,
            labels: self.identity_labels(datapath_identity).unwrap_or_default(),
            ..Default::default()
        }
    }

    fn identity_labels(&self, identity: u32) -> Option<Vec<String>> {
        if identity == 0 {
            return None;
        }
        let mut labels = self
            .getters
            .identities
            .as_ref()?
            .identity_labels(identity)?;
        labels.sort();
        Some(labels)
    }
}

/// The flow's source and destination addresses, read from its text.
fn flow_addresses(flow: &Flow) -> (Option<IpAddr>, Option<IpAddr>) {
    flow.ip.as_ref().map_or((None, None), |ip| {
        (ip.source.parse().ok(), ip.destination.parse().ok())
    })
}

/// The IANA protocol number and the source and destination ports of a TCP or UDP flow.
fn l4_ports(flow: &Flow) -> Option<(u8, u16, u16)> {
    use flow::layer4::Protocol;
    let port = |p: u32| u16::try_from(p).ok();
    match flow.l4.as_ref()?.protocol.as_ref()? {
        Protocol::Tcp(tcp) => Some((6, port(tcp.source_port)?, port(tcp.destination_port)?)),
        Protocol::Udp(udp) => Some((17, port(udp.source_port)?, port(udp.destination_port)?)),
        _ => None,
    }
}

/// Maps Cilium's trace observation point numbers onto the proto enum (0 is
/// "to-endpoint" in the datapath but has its own value in the API).
fn observation_point(subtype: u8) -> i32 {
    if subtype == trace_point::TO_LXC {
        flow::TraceObservationPoint::ToEndpoint as i32
    } else {
        i32::from(subtype)
    }
}

fn timestamp(unix_ns: u64) -> pbjson_types::Timestamp {
    pbjson_types::Timestamp {
        seconds: (unix_ns / 1_000_000_000) as i64,
        nanos: (unix_ns % 1_000_000_000) as i32,
    }
}

fn new_uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[cfg(test)]
mod tests;
