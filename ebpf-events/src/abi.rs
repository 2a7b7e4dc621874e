//! `#[repr(C)]` mirrors of `bpf/events.h`.
//!
//! Every struct here has the size and field offsets of its C twin; the
//! `const` assertions below fail the build when the two drift apart. Map
//! keys and values carry constructors so callers never fill padding by hand.

use core::mem::{offset_of, size_of};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub mod lb;

pub use lb::{
    LbBackend, LbNatEntry, LbRevnatKey, LbRevnatValue, LbServiceKey, LbServiceValue, TraceSockInfo,
    TraceSockRecord,
};

/// Layout version written into every record (`EVENT_ABI_VERSION`).
pub const EVENT_ABI_VERSION: u8 = 1;

/// Packet bytes carried by each record (`EVENT_PACKET_CAP`).
pub const EVENT_PACKET_CAP: usize = 128;

/// `event_header.flags`: the packet is IPv6.
pub const EVENT_FLAG_IPV6: u8 = 1 << 0;
/// `event_header.flags`: the packet is a reply of a tracked connection.
pub const EVENT_FLAG_IS_REPLY: u8 = 1 << 1;
/// `event_header.flags`: seen on the way into the endpoint (`to_container`).
pub const EVENT_FLAG_TO_ENDPOINT: u8 = 1 << 2;

/// Common header of every record (`struct event_header`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventHeader {
    /// Monitor message type, see [`crate::constants::message_type`].
    pub msg_type: u8,
    /// Trace: observation point; drop: drop reason.
    pub subtype: u8,
    /// Id of the endpoint whose veth saw the packet.
    pub source: u16,
    /// Ifindex of that host-side veth.
    pub ifindex: u32,
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC) when the record was written.
    pub ktime_ns: u64,
    /// Length of the whole frame.
    pub orig_len: u32,
    /// Packet bytes copied into the record.
    pub cap_len: u16,
    /// Destination endpoint id when the destination is local, else 0.
    pub dst_endpoint: u16,
    /// Security identity of the sender.
    pub src_identity: u32,
    /// Security identity of the receiver.
    pub dst_identity: u32,
    /// Connection tracking state, see [`crate::constants::trace_reason`].
    pub reason: u8,
    /// `EVENT_FLAG_*` bits.
    pub flags: u8,
    /// [`EVENT_ABI_VERSION`] of the writer.
    pub version: u8,
    /// Padding, zero.
    pub pad0: u8,
    /// CPU the program ran on.
    pub cpu: u32,
}

/// Extra fields of a policy verdict record (`struct policy_verdict_info`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PolicyVerdictInfo {
    /// Identity of the peer the policy was evaluated against.
    pub remote_identity: u32,
    /// `PolicyValue::cookie` of the deciding entry (0 when none matched).
    pub cookie: u32,
    /// Destination port in host order (ICMP type for ICMP).
    pub dport: u16,
    /// IP protocol number.
    pub protocol: u8,
    /// 0 ingress, 1 egress (see [`Direction`]).
    pub direction: u8,
    /// See [`crate::constants::policy_match`].
    pub match_type: u8,
    /// See [`crate::constants::policy_action`].
    pub action: u8,
    /// The L7 proxy's port when the action is
    /// [`crate::constants::policy_action::REDIRECTED`], else 0.
    pub proxy_port: u16,
}

/// A trace or drop record as laid out in the ring (`struct trace_event`,
/// `struct drop_event`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct PacketRecord {
    /// Common header.
    pub header: EventHeader,
    /// First bytes of the frame; `header.cap_len` of them are valid.
    pub packet: [u8; EVENT_PACKET_CAP],
}

/// A policy verdict record as laid out in the ring
/// (`struct policy_verdict_event`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct PolicyVerdictRecord {
    /// Common header.
    pub header: EventHeader,
    /// Verdict fields.
    pub verdict: PolicyVerdictInfo,
    /// First bytes of the frame; `header.cap_len` of them are valid.
    pub packet: [u8; EVENT_PACKET_CAP],
}

const _: () = {
    assert!(size_of::<EventHeader>() == 40);
    assert!(offset_of!(EventHeader, ifindex) == 4);
    assert!(offset_of!(EventHeader, ktime_ns) == 8);
    assert!(offset_of!(EventHeader, orig_len) == 16);
    assert!(offset_of!(EventHeader, cap_len) == 20);
    assert!(offset_of!(EventHeader, dst_endpoint) == 22);
    assert!(offset_of!(EventHeader, src_identity) == 24);
    assert!(offset_of!(EventHeader, dst_identity) == 28);
    assert!(offset_of!(EventHeader, reason) == 32);
    assert!(offset_of!(EventHeader, flags) == 33);
    assert!(offset_of!(EventHeader, version) == 34);
    assert!(offset_of!(EventHeader, cpu) == 36);
    assert!(size_of::<PolicyVerdictInfo>() == 16);
    assert!(offset_of!(PolicyVerdictInfo, cookie) == 4);
    assert!(offset_of!(PolicyVerdictInfo, dport) == 8);
    assert!(offset_of!(PolicyVerdictInfo, protocol) == 10);
    assert!(offset_of!(PolicyVerdictInfo, direction) == 11);
    assert!(offset_of!(PolicyVerdictInfo, match_type) == 12);
    assert!(offset_of!(PolicyVerdictInfo, action) == 13);
    assert!(size_of::<PacketRecord>() == 168);
    assert!(offset_of!(PacketRecord, packet) == 40);
    assert!(size_of::<PolicyVerdictRecord>() == 184);
    assert!(offset_of!(PolicyVerdictRecord, verdict) == 40);
    assert!(offset_of!(PolicyVerdictRecord, packet) == 56);
};

/// Traffic direction as the policy map and conntrack see it.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Into the endpoint (`DIR_INGRESS`).
    Ingress = 0,
    /// Out of the endpoint (`DIR_EGRESS`).
    Egress = 1,
}

/// Address family tag of ipcache and conntrack keys: IPv4.
pub const FAMILY_IPV4: u8 = 4;
/// Address family tag of ipcache and conntrack keys: IPv6.
pub const FAMILY_IPV6: u8 = 6;

/// Bits of the LPM prefix that cover the padding and family before the
/// address (`IPCACHE_PREFIX_OFFSET_BITS`).
pub const IPCACHE_PREFIX_OFFSET_BITS: u32 = 32;

/// `struct ipcache_key`: the LPM trie key.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct IpcacheKey {
    /// [`IPCACHE_PREFIX_OFFSET_BITS`] plus the address prefix length.
    pub prefixlen: u32,
    /// Padding, zero.
    pub pad0: u16,
    /// Padding, zero.
    pub pad1: u8,
    /// [`FAMILY_IPV4`] or [`FAMILY_IPV6`].
    pub family: u8,
    /// Address in network order; IPv4 in the first 4 bytes.
    pub addr: [u8; 16],
}

impl IpcacheKey {
    /// Builds the key of `addr/prefix_len`, or `None` when the prefix is
    /// longer than the address.
    pub fn new(addr: IpAddr, prefix_len: u8) -> Option<Self> {
        let (family, bytes, max) = match addr {
            IpAddr::V4(v4) => (FAMILY_IPV4, padded_v4(v4), 32),
            IpAddr::V6(v6) => (FAMILY_IPV6, v6.octets(), 128),
        };
        if prefix_len > max {
            return None;
        }
        Some(Self {
            prefixlen: IPCACHE_PREFIX_OFFSET_BITS + u32::from(prefix_len),
            family,
            addr: bytes,
            ..Self::default()
        })
    }
}

/// `ipcache_value.flags`: the address belongs to an endpoint on this node.
pub const IPCACHE_FLAG_LOCAL_ENDPOINT: u32 = 1 << 0;

/// `struct ipcache_value`: identity of an IP prefix.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IpcacheEntry {
    /// Security identity of the prefix.
    pub identity: u32,
    /// `IPCACHE_FLAG_*` bits.
    pub flags: u32,
    /// Node address hosting a remote endpoint, zero when not applicable.
    pub tunnel_ip: [u8; 4],
    /// Endpoint id when [`IPCACHE_FLAG_LOCAL_ENDPOINT`] is set.
    pub endpoint_id: u16,
    /// Padding, zero.
    pub pad0: u16,
}

impl IpcacheEntry {
    /// An address that is not an endpoint of this node.
    pub fn remote(identity: u32) -> Self {
        Self {
            identity,
            ..Self::default()
        }
    }

    /// The address of endpoint `endpoint_id` on this node.
    pub fn local_endpoint(identity: u32, endpoint_id: u16) -> Self {
        Self {
            identity,
            flags: IPCACHE_FLAG_LOCAL_ENDPOINT,
            endpoint_id,
            ..Self::default()
        }
    }

    /// Records the node that hosts a remote endpoint.
    pub fn with_tunnel_ip(mut self, node: Ipv4Addr) -> Self {
        self.tunnel_ip = node.octets();
        self
    }
}

/// `endpoint_info.flags`: enforce ingress policy.
pub const ENDPOINT_F_INGRESS_ENFORCE: u8 = 1 << 0;
/// `endpoint_info.flags`: enforce egress policy.
pub const ENDPOINT_F_EGRESS_ENFORCE: u8 = 1 << 1;
/// `endpoint_info.flags`: report would-be drops instead of dropping.
pub const ENDPOINT_F_AUDIT: u8 = 1 << 2;

/// `struct endpoint_info`: the ENDPOINTS value, keyed by host veth ifindex.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EndpointEntry {
    /// Endpoint id (non-zero).
    pub endpoint_id: u16,
    /// `ENDPOINT_F_*` bits.
    pub flags: u8,
    /// Padding, zero.
    pub pad0: u8,
    /// Security identity of the endpoint.
    pub identity: u32,
    /// IPv4 address, zero when none.
    pub ipv4: [u8; 4],
    /// IPv6 address, zero when none.
    pub ipv6: [u8; 16],
}

impl EndpointEntry {
    /// An endpoint without addresses and without policy enforcement.
    pub fn new(endpoint_id: u16, identity: u32) -> Self {
        Self {
            endpoint_id,
            identity,
            ..Self::default()
        }
    }

    /// Sets the endpoint's IPv4 address.
    pub fn with_ipv4(mut self, addr: Ipv4Addr) -> Self {
        self.ipv4 = addr.octets();
        self
    }

    /// Sets the endpoint's IPv6 address.
    pub fn with_ipv6(mut self, addr: Ipv6Addr) -> Self {
        self.ipv6 = addr.octets();
        self
    }

    /// Turns policy enforcement on or off per direction.
    pub fn with_enforcement(mut self, ingress: bool, egress: bool) -> Self {
        self.flags &= !(ENDPOINT_F_INGRESS_ENFORCE | ENDPOINT_F_EGRESS_ENFORCE);
        if ingress {
            self.flags |= ENDPOINT_F_INGRESS_ENFORCE;
        }
        if egress {
            self.flags |= ENDPOINT_F_EGRESS_ENFORCE;
        }
        self
    }

    /// Turns audit mode on or off.
    pub fn with_audit(mut self, audit: bool) -> Self {
        if audit {
            self.flags |= ENDPOINT_F_AUDIT;
        } else {
            self.flags &= !ENDPOINT_F_AUDIT;
        }
        self
    }
}

/// `struct policy_key`. Zero remote identity, port or protocol mean "any".
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PolicyKey {
    /// Identity of the endpoint the policy applies to.
    pub local_identity: u32,
    /// Peer identity, 0 for any.
    pub remote_identity: u32,
    /// Destination port in host order (ICMP type for ICMP), 0 for any.
    pub dport: u16,
    /// IP protocol, 0 for any (then `dport` must be 0 too).
    pub protocol: u8,
    /// 0 ingress, 1 egress.
    pub direction: u8,
}

impl PolicyKey {
    /// Builds a key; pass 0 for wildcards.
    pub fn new(
        local_identity: u32,
        remote_identity: u32,
        dport: u16,
        protocol: u8,
        direction: Direction,
    ) -> Self {
        Self {
            local_identity,
            remote_identity,
            dport,
            protocol,
            direction: direction as u8,
        }
    }
}

/// `struct policy_value`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PolicyValue {
    /// 1 for a deny entry, 0 for an allow entry.
    pub deny: u8,
    /// Padding, zero.
    pub pad0: u8,
    /// Allow entries: the L7 proxy port new connections are redirected to,
    /// 0 for none.
    pub proxy_port: u16,
    /// Opaque rule id copied into policy verdict records.
    pub cookie: u32,
}

impl PolicyValue {
    /// An allow entry.
    pub fn allow(cookie: u32) -> Self {
        Self {
            cookie,
            ..Self::default()
        }
    }

    /// An allow entry whose connections go through the L7 proxy on `proxy_port`.
    pub fn redirect(cookie: u32, proxy_port: u16) -> Self {
        Self {
            cookie,
            proxy_port,
            ..Self::default()
        }
    }

    /// A deny entry; it wins over allow entries of any match type.
    pub fn deny(cookie: u32) -> Self {
        Self {
            deny: 1,
            cookie,
            ..Self::default()
        }
    }
}

/// `struct ct_key`: one conntrack entry per endpoint and direction.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CtKey {
    /// Source address (IPv4 in the first 4 bytes).
    pub saddr: [u8; 16],
    /// Destination address.
    pub daddr: [u8; 16],
    /// Source port, network order.
    pub sport_be: u16,
    /// Destination port, network order.
    pub dport_be: u16,
    /// IP protocol.
    pub protocol: u8,
    /// Direction of the packet that opened the entry.
    pub direction: u8,
    /// [`FAMILY_IPV4`] or [`FAMILY_IPV6`].
    pub family: u8,
    /// [`CT_SCOPE_ENDPOINT`] or [`CT_SCOPE_PROXY`].
    pub scope: u8,
    /// Host veth ifindex of the endpoint (redirect entries: the interface
    /// that redirected).
    pub ifindex: u32,
}

/// `ct_key.scope`: an endpoint's policy conntrack entry.
pub const CT_SCOPE_ENDPOINT: u8 = 0;
/// `ct_key.scope`: an L7 redirect entry (the proxy port is in the entry's flags).
pub const CT_SCOPE_PROXY: u8 = 1;

/// `struct ct_entry`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CtEntry {
    /// Ktime after which the entry is treated as gone.
    pub expires_ns: u64,
    /// `CT_F_*` bits.
    pub flags: u32,
    /// Identity of the peer when the entry was created.
    pub remote_identity: u32,
}

/// `struct datapath_config`: the single CONFIG element.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DatapathConfigValue {
    /// See [`crate::constants::monitor_aggregation`].
    pub monitor_aggregation: u32,
    /// 0 turns every record off.
    pub events_enabled: u32,
    /// Ring backlog in bytes at which the program wakes the reader.
    pub wakeup_bytes: u32,
    /// 0: backends chosen at random; else by [`lb::seeded_slot`].
    pub lb_seed: u32,
}

const _: () = {
    assert!(size_of::<IpcacheKey>() == 24);
    assert!(offset_of!(IpcacheKey, family) == 7);
    assert!(offset_of!(IpcacheKey, addr) == 8);
    assert!(size_of::<IpcacheEntry>() == 16);
    assert!(offset_of!(IpcacheEntry, tunnel_ip) == 8);
    assert!(offset_of!(IpcacheEntry, endpoint_id) == 12);
    assert!(size_of::<EndpointEntry>() == 28);
    assert!(offset_of!(EndpointEntry, identity) == 4);
    assert!(offset_of!(EndpointEntry, ipv4) == 8);
    assert!(offset_of!(EndpointEntry, ipv6) == 12);
    assert!(size_of::<PolicyKey>() == 12);
    assert!(offset_of!(PolicyKey, dport) == 8);
    assert!(offset_of!(PolicyKey, protocol) == 10);
    assert!(offset_of!(PolicyKey, direction) == 11);
    assert!(size_of::<PolicyValue>() == 8);
    assert!(offset_of!(PolicyValue, cookie) == 4);
    assert!(size_of::<CtKey>() == 44);
    assert!(offset_of!(CtKey, sport_be) == 32);
    assert!(offset_of!(CtKey, protocol) == 36);
    assert!(offset_of!(CtKey, ifindex) == 40);
    assert!(size_of::<CtEntry>() == 16);
    assert!(offset_of!(CtEntry, flags) == 8);
    assert!(size_of::<DatapathConfigValue>() == 16);
};

fn padded_v4(addr: Ipv4Addr) -> [u8; 16] {
    let mut bytes = [0u8; 16];
    bytes[..4].copy_from_slice(&addr.octets());
    bytes
}
