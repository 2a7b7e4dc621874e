//! The read-only view of a flow that filters evaluate.
//!
//! Filters never need a whole `Flow`: they read a handful of fields. Abstracting those
//! reads lets a store that keeps flows in a compact form (the observer's ring) filter
//! them without rebuilding a `Flow`; `Flow` itself implements the view too.

use super::{FlowIp, Interned};
use crate::flow::{self, Flow};

/// The L4 protocol of a flow, as far as filters care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L4Protocol {
    Tcp,
    Udp,
    Icmpv4,
    Icmpv6,
    Sctp,
    Vrrp,
    Igmp,
}

/// TCP flags as a bit set, in `TCPFlags` field order (FIN = bit 0 ... NS = bit 8).
pub type TcpFlagBits = u16;

/// Converts `TCPFlags` into bits.
pub fn tcp_flag_bits(flags: &flow::TcpFlags) -> TcpFlagBits {
    [
        flags.fin, flags.syn, flags.rst, flags.psh, flags.ack, flags.urg, flags.ece, flags.cwr,
        flags.ns,
    ]
    .iter()
    .enumerate()
    .fold(0, |bits, (i, set)| bits | (u16::from(*set) << i))
}

/// Everything a FlowFilter can look at.
pub trait FlowView {
    fn uuid(&self) -> &str;
    /// The addresses, `None` when the flow has none (empty text).
    fn source_ip(&self) -> Option<FlowIp<'_>>;
    fn source_ip_xlated(&self) -> Option<FlowIp<'_>>;
    fn destination_ip(&self) -> Option<FlowIp<'_>>;
    fn ip_version(&self) -> i32;
    fn encrypted(&self) -> bool;
    fn source(&self) -> Option<&flow::Endpoint>;
    fn destination(&self) -> Option<&flow::Endpoint>;
    fn source_names(&self) -> &[String];
    fn destination_names(&self) -> &[String];
    fn source_service(&self) -> Option<&flow::Service>;
    fn destination_service(&self) -> Option<&flow::Service>;
    fn verdict(&self) -> i32;
    fn drop_reason_desc(&self) -> i32;
    /// `(type, sub_type)` of the originating Cilium event.
    fn event_type(&self) -> Option<(i32, i32)>;
    fn l4_protocol(&self) -> Option<L4Protocol>;
    /// Source and destination port of TCP, UDP and SCTP flows.
    fn ports(&self) -> Option<(u16, u16)>;
    fn tcp_flags(&self) -> Option<TcpFlagBits>;
    fn http(&self) -> Option<&flow::Http>;
    fn dns(&self) -> Option<&flow::Dns>;
    fn is_kafka(&self) -> bool;
    fn traffic_direction(&self) -> i32;
    fn is_reply(&self) -> Option<bool>;
    fn node_name(&self) -> &str;
    fn node_labels(&self) -> &[String];
    fn trace_id(&self) -> &str;
    fn ip_trace_id(&self) -> u64;
    fn interface(&self) -> Option<&flow::NetworkInterface>;
    /// The whole flow (for CEL expressions, which may read any field).
    fn whole(&self) -> std::borrow::Cow<'_, Flow>;
    /// The numbers under which a store interned this flow's endpoints and node
    /// context: what a filter finds for one of them holds for every flow with the same
    /// number from the same store. `None` (the default) for a flow not read from such
    /// a store.
    fn interned(&self) -> Option<Interned> {
        None
    }
}

// === impl FlowView for Flow ===

fn ip_text(text: &str) -> Option<FlowIp<'_>> {
    (!text.is_empty()).then_some(FlowIp::Text(text))
}

/// Readers of a flow's parts, for every [`FlowView`] that keeps those parts as `Flow`
/// has them (a whole `Flow`, or a store's rare parts of one).
pub mod parts {
    use super::{ip_text, tcp_flag_bits, FlowIp, L4Protocol, TcpFlagBits};
    use crate::flow::{self, layer4, layer7};

    pub fn source_ip(ip: Option<&flow::Ip>) -> Option<FlowIp<'_>> {
        ip.and_then(|ip| ip_text(&ip.source))
    }
    pub fn source_ip_xlated(ip: Option<&flow::Ip>) -> Option<FlowIp<'_>> {
        ip.and_then(|ip| ip_text(&ip.source_xlated))
    }
    pub fn destination_ip(ip: Option<&flow::Ip>) -> Option<FlowIp<'_>> {
        ip.and_then(|ip| ip_text(&ip.destination))
    }
    pub fn ip_version(ip: Option<&flow::Ip>) -> i32 {
        ip.map_or(0, |ip| ip.ip_version)
    }
    pub fn encrypted(ip: Option<&flow::Ip>) -> bool {
        ip.is_some_and(|ip| ip.encrypted)
    }
    pub fn l4_protocol(l4: Option<&flow::Layer4>) -> Option<L4Protocol> {
        Some(match l4?.protocol.as_ref()? {
            layer4::Protocol::Tcp(_) => L4Protocol::Tcp,
            layer4::Protocol::Udp(_) => L4Protocol::Udp,
            layer4::Protocol::IcmPv4(_) => L4Protocol::Icmpv4,
            layer4::Protocol::IcmPv6(_) => L4Protocol::Icmpv6,
            layer4::Protocol::Sctp(_) => L4Protocol::Sctp,
            layer4::Protocol::Vrrp(_) => L4Protocol::Vrrp,
            layer4::Protocol::Igmp(_) => L4Protocol::Igmp,
        })
    }
    pub fn ports(l4: Option<&flow::Layer4>) -> Option<(u16, u16)> {
        let (src, dst) = match l4?.protocol.as_ref()? {
            layer4::Protocol::Tcp(p) => (p.source_port, p.destination_port),
            layer4::Protocol::Udp(p) => (p.source_port, p.destination_port),
            layer4::Protocol::Sctp(p) => (p.source_port, p.destination_port),
            _ => return None,
        };
        Some((src as u16, dst as u16))
    }
    pub fn tcp_flags(l4: Option<&flow::Layer4>) -> Option<TcpFlagBits> {
        match l4?.protocol.as_ref()? {
            layer4::Protocol::Tcp(tcp) => tcp.flags.as_ref().map(tcp_flag_bits),
            _ => None,
        }
    }
    fn l7_record(l7: Option<&flow::Layer7>) -> Option<&layer7::Record> {
        l7.and_then(|l7| l7.record.as_ref())
    }
    pub fn http(l7: Option<&flow::Layer7>) -> Option<&flow::Http> {
        match l7_record(l7)? {
            layer7::Record::Http(http) => Some(http),
            _ => None,
        }
    }
    pub fn dns(l7: Option<&flow::Layer7>) -> Option<&flow::Dns> {
        match l7_record(l7)? {
            layer7::Record::Dns(dns) => Some(dns),
            _ => None,
        }
    }
    pub fn is_kafka(l7: Option<&flow::Layer7>) -> bool {
        matches!(l7_record(l7), Some(layer7::Record::Kafka(_)))
    }
    pub fn trace_id(trace: Option<&flow::TraceContext>) -> &str {
        trace
            .and_then(|t| t.parent.as_ref())
            .map_or("", |p| p.trace_id.as_str())
    }
    pub fn ip_trace_id(trace: Option<&flow::IpTraceId>) -> u64 {
        trace.map_or(0, |t| t.trace_id)
    }
}

impl FlowView for Flow {
    fn uuid(&self) -> &str {
        &self.uuid
    }
    fn source_ip(&self) -> Option<FlowIp<'_>> {
        parts::source_ip(self.ip.as_ref())
    }
    fn source_ip_xlated(&self) -> Option<FlowIp<'_>> {
        parts::source_ip_xlated(self.ip.as_ref())
    }
    fn destination_ip(&self) -> Option<FlowIp<'_>> {
        parts::destination_ip(self.ip.as_ref())
    }
    fn ip_version(&self) -> i32 {
        parts::ip_version(self.ip.as_ref())
    }
    fn encrypted(&self) -> bool {
        parts::encrypted(self.ip.as_ref())
    }
    fn source(&self) -> Option<&flow::Endpoint> {
        self.source.as_ref()
    }
    fn destination(&self) -> Option<&flow::Endpoint> {
        self.destination.as_ref()
    }
    fn source_names(&self) -> &[String] {
        &self.source_names
    }
    fn destination_names(&self) -> &[String] {
        &self.destination_names
    }
    fn source_service(&self) -> Option<&flow::Service> {
        self.source_service.as_ref()
    }
    fn destination_service(&self) -> Option<&flow::Service> {
        self.destination_service.as_ref()
    }
    fn verdict(&self) -> i32 {
        self.verdict
    }
    fn drop_reason_desc(&self) -> i32 {
        self.drop_reason_desc
    }
    fn event_type(&self) -> Option<(i32, i32)> {
        self.event_type.as_ref().map(|e| (e.r#type, e.sub_type))
    }
    fn l4_protocol(&self) -> Option<L4Protocol> {
        parts::l4_protocol(self.l4.as_ref())
    }
    fn ports(&self) -> Option<(u16, u16)> {
        parts::ports(self.l4.as_ref())
    }
    fn tcp_flags(&self) -> Option<TcpFlagBits> {
        parts::tcp_flags(self.l4.as_ref())
    }
    fn http(&self) -> Option<&flow::Http> {
        parts::http(self.l7.as_ref())
    }
    fn dns(&self) -> Option<&flow::Dns> {
        parts::dns(self.l7.as_ref())
    }
    fn is_kafka(&self) -> bool {
        parts::is_kafka(self.l7.as_ref())
    }
    fn traffic_direction(&self) -> i32 {
        self.traffic_direction
    }
    fn is_reply(&self) -> Option<bool> {
        self.is_reply.as_ref().map(|r| r.value)
    }
    fn node_name(&self) -> &str {
        &self.node_name
    }
    fn node_labels(&self) -> &[String] {
        &self.node_labels
    }
    fn trace_id(&self) -> &str {
        parts::trace_id(self.trace_context.as_ref())
    }
    fn ip_trace_id(&self) -> u64 {
        parts::ip_trace_id(self.ip_trace_id.as_ref())
    }
    fn interface(&self) -> Option<&flow::NetworkInterface> {
        self.interface.as_ref()
    }
    fn whole(&self) -> std::borrow::Cow<'_, Flow> {
        std::borrow::Cow::Borrowed(self)
    }
}
