//! Mirrors of the service load-balancing part of `bpf/events.h`: the trace-sock
//! record written by the cgroup socket programs (`bpf/sock.c`) and the
//! `LB_SERVICES`, `LB_BACKENDS` and `LB_REVNAT_SK` map entries.

use core::mem::{offset_of, size_of};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{EventHeader, FAMILY_IPV4, FAMILY_IPV6};

/// `IPPROTO_TCP`.
pub const IPPROTO_TCP: u8 = 6;
/// `IPPROTO_UDP`.
pub const IPPROTO_UDP: u8 = 17;

/// Socket translation points (`trace_sock_event` subtype), Cilium's
/// `enum xlate_point` and `flow.SocketTranslationPoint`.
pub mod xlate_point {
    /// Before the forward translation: the destination is the frontend.
    pub const PRE_DIRECTION_FWD: u8 = 1;
    /// After it: the destination is the chosen backend.
    pub const POST_DIRECTION_FWD: u8 = 2;
    /// Before the reverse translation: the peer as the kernel knows it.
    pub const PRE_DIRECTION_REV: u8 = 3;
    /// After it: the frontend the socket sees.
    pub const POST_DIRECTION_REV: u8 = 4;
}

/// `trace_sock_info.l4_proto`, Cilium's `enum l4_protocol`.
pub mod l4_protocol {
    /// Neither TCP nor UDP.
    pub const UNKNOWN: u8 = 0;
    /// TCP.
    pub const TCP: u8 = 1;
    /// UDP.
    pub const UDP: u8 = 2;
}

/// `struct trace_sock_info`: Cilium's `trace_sock_notify` fields after the header.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TraceSockInfo {
    /// Socket cookie (`bpf_get_socket_cookie`).
    pub sock_cookie: u64,
    /// cgroup v2 id of the task that made the call.
    pub cgroup_id: u64,
    /// Destination port, host order.
    pub dst_port: u16,
    /// See [`l4_protocol`].
    pub l4_proto: u8,
    /// Padding, zero.
    pub pad0: u8,
    /// Padding, zero.
    pub pad1: u32,
}

/// A trace-sock record as laid out in the ring (`struct trace_sock_event`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TraceSockRecord {
    /// Common header; `subtype` is the [`xlate_point`].
    pub header: EventHeader,
    /// Socket fields.
    pub sock: TraceSockInfo,
    /// Destination address, network order; IPv4 in the first 4 bytes.
    pub dst_addr: [u8; 16],
}

/// `lb_service_value.flags`: the frontend is a NodePort.
pub const LB_SERVICE_F_NODEPORT: u32 = 1 << 0;

/// `struct lb_service_key`: a frontend and a slot (0: the service, 1..=count: its
/// active backends).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct LbServiceKey {
    /// Frontend address, network order; IPv4 in the first 4 bytes.
    pub addr: [u8; 16],
    /// Frontend port, network order.
    pub dport_be: u16,
    /// 0 for the service entry, 1..=count for its backends.
    pub slot: u16,
    /// [`IPPROTO_TCP`] or [`IPPROTO_UDP`].
    pub protocol: u8,
    /// [`FAMILY_IPV4`] or [`FAMILY_IPV6`].
    pub family: u8,
    /// Padding, zero.
    pub pad0: u16,
}

impl LbServiceKey {
    /// The key of slot `slot` of frontend `addr:port/protocol`.
    pub fn new(addr: IpAddr, port: u16, protocol: u8, slot: u16) -> Self {
        let (family, addr) = addr_bytes(addr);
        Self {
            addr,
            dport_be: port.to_be(),
            slot,
            protocol,
            family,
            pad0: 0,
        }
    }

    /// The frontend address.
    pub fn address(&self) -> IpAddr {
        bytes_addr(self.family, self.addr)
    }

    /// The frontend port, host order.
    pub fn port(&self) -> u16 {
        u16::from_be(self.dport_be)
    }
}

/// `struct lb_service_value`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LbServiceValue {
    /// Backend id of a slot >= 1.
    pub backend_id: u32,
    /// Slot 0: number of active backends.
    pub count: u16,
    /// The service's numeric id.
    pub service_id: u16,
    /// Slot 0: `LB_SERVICE_F_*`.
    pub flags: u32,
}

/// `lb_backend.state`, Cilium's backend states.
pub mod backend_state {
    /// Receives new connections.
    pub const ACTIVE: u8 = 0;
    /// Going away: keeps its connections, gets no new ones.
    pub const TERMINATING: u8 = 1;
    /// Failed health checks.
    pub const QUARANTINED: u8 = 2;
    /// Taken out by an operator.
    pub const MAINTENANCE: u8 = 3;
}

/// `struct lb_backend`: a backend's address.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LbBackend {
    /// Address, network order.
    pub addr: [u8; 16],
    /// Port, network order.
    pub port_be: u16,
    /// [`FAMILY_IPV4`] or [`FAMILY_IPV6`].
    pub family: u8,
    /// See [`backend_state`].
    pub state: u8,
}

impl LbBackend {
    /// A backend at `addr:port`.
    pub fn new(addr: IpAddr, port: u16, state: u8) -> Self {
        let (family, addr) = addr_bytes(addr);
        Self {
            addr,
            port_be: port.to_be(),
            family,
            state,
        }
    }

    /// The backend address.
    pub fn address(&self) -> IpAddr {
        bytes_addr(self.family, self.addr)
    }

    /// The backend port, host order.
    pub fn port(&self) -> u16 {
        u16::from_be(self.port_be)
    }
}

/// `struct lb_revnat_key`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct LbRevnatKey {
    /// Socket cookie.
    pub cookie: u64,
    /// Backend address.
    pub addr: [u8; 16],
    /// Backend port, network order.
    pub port_be: u16,
    /// Address family.
    pub family: u8,
    /// Padding, zero.
    pub pad0: u8,
    /// Padding, zero.
    pub pad1: u32,
}

/// `struct lb_revnat_value`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LbRevnatValue {
    /// Frontend address.
    pub addr: [u8; 16],
    /// Frontend port, network order.
    pub port_be: u16,
    /// Service id.
    pub service_id: u16,
}

/// `struct lb_nat_entry`: a value of `LB_NAT_CT`, the tc-level load balancer's
/// per-connection state (see `bpf/lb_tc.c`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LbNatEntry {
    /// ktime (ns) after which the entry counts as gone.
    pub expires_ns: u64,
    /// The backend (forward entries) or the frontend (reverse entries).
    pub addr: [u8; 16],
    /// Its port, network order.
    pub port_be: u16,
    /// Service id.
    pub service_id: u16,
    /// `LB_BACKENDS` key of the chosen backend.
    pub backend_id: u32,
    /// [`LB_NAT_F_CLOSING`].
    pub flags: u32,
    /// Padding, zero.
    pub pad0: u32,
}

/// `lb_nat_entry.flags`: the connection saw a FIN or RST; its entry is not extended
/// any more.
pub const LB_NAT_F_CLOSING: u32 = 1 << 0;

/// The backend slot (1..=count) the socket programs give socket `cookie` when the
/// datapath is configured with `seed` (`datapath_config.lb_seed`, non-zero): the
/// same mix as `lb_mix` in `bpf/sock.c`, so tests can predict the choice.
pub fn seeded_slot(seed: u32, cookie: u64, count: u16) -> u16 {
    if count == 0 {
        return 0;
    }
    let r = mix((u64::from(seed) << 32) ^ cookie);
    // The remainder is below `count`, so it fits.
    u16::try_from(r % u64::from(count)).unwrap_or(0) + 1
}

/// The backend slot (1..=count) the tc programs give a new connection from
/// `source`:`source_port` (a process the socket programs do not see) when the
/// datapath is configured with `seed`: the same mix as [`seeded_slot`] over the
/// source port (high 32 bits) and the source address folded into 32 bits (its four
/// 32-bit words, as they lie in memory, XORed), as `lb_tc_flow_key` in
/// `bpf/lb_tc.c` computes it.
pub fn seeded_tc_slot(seed: u32, source: IpAddr, source_port: u16, count: u16) -> u16 {
    let (_, bytes) = addr_bytes(source);
    let fold = bytes
        .chunks_exact(4)
        .map(|w| u32::from_ne_bytes([w[0], w[1], w[2], w[3]]))
        .fold(0u32, |acc, w| acc ^ w);
    seeded_slot(
        seed,
        (u64::from(source_port) << 32) | u64::from(fold),
        count,
    )
}

fn mix(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    x
}

/// Family tag and 16 address bytes (IPv4 in the first 4).
pub fn addr_bytes(addr: IpAddr) -> (u8, [u8; 16]) {
    match addr {
        IpAddr::V4(v4) => {
            let mut bytes = [0u8; 16];
            bytes[..4].copy_from_slice(&v4.octets());
            (FAMILY_IPV4, bytes)
        }
        IpAddr::V6(v6) => (FAMILY_IPV6, v6.octets()),
    }
}

/// The inverse of [`addr_bytes`]; any family other than IPv6 reads as IPv4.
pub fn bytes_addr(family: u8, bytes: [u8; 16]) -> IpAddr {
    if family == FAMILY_IPV6 {
        IpAddr::V6(Ipv6Addr::from(bytes))
    } else {
        let [a, b, c, d, ..] = bytes;
        IpAddr::V4(Ipv4Addr::new(a, b, c, d))
    }
}

const _: () = {
    assert!(size_of::<TraceSockInfo>() == 24);
    assert!(offset_of!(TraceSockInfo, cgroup_id) == 8);
    assert!(offset_of!(TraceSockInfo, dst_port) == 16);
    assert!(offset_of!(TraceSockInfo, l4_proto) == 18);
    assert!(size_of::<TraceSockRecord>() == 80);
    assert!(offset_of!(TraceSockRecord, sock) == 40);
    assert!(offset_of!(TraceSockRecord, dst_addr) == 64);
    assert!(size_of::<LbServiceKey>() == 24);
    assert!(offset_of!(LbServiceKey, dport_be) == 16);
    assert!(offset_of!(LbServiceKey, slot) == 18);
    assert!(offset_of!(LbServiceKey, protocol) == 20);
    assert!(offset_of!(LbServiceKey, family) == 21);
    assert!(size_of::<LbServiceValue>() == 12);
    assert!(offset_of!(LbServiceValue, count) == 4);
    assert!(offset_of!(LbServiceValue, service_id) == 6);
    assert!(offset_of!(LbServiceValue, flags) == 8);
    assert!(size_of::<LbBackend>() == 20);
    assert!(offset_of!(LbBackend, port_be) == 16);
    assert!(offset_of!(LbBackend, family) == 18);
    assert!(offset_of!(LbBackend, state) == 19);
    assert!(size_of::<LbRevnatKey>() == 32);
    assert!(offset_of!(LbRevnatKey, addr) == 8);
    assert!(offset_of!(LbRevnatKey, port_be) == 24);
    assert!(offset_of!(LbRevnatKey, family) == 26);
    assert!(size_of::<LbRevnatValue>() == 20);
    assert!(offset_of!(LbRevnatValue, port_be) == 16);
    assert!(offset_of!(LbRevnatValue, service_id) == 18);
    assert!(size_of::<LbNatEntry>() == 40);
    assert!(offset_of!(LbNatEntry, addr) == 8);
    assert!(offset_of!(LbNatEntry, port_be) == 24);
    assert!(offset_of!(LbNatEntry, service_id) == 26);
    assert!(offset_of!(LbNatEntry, backend_id) == 28);
    assert!(offset_of!(LbNatEntry, flags) == 32);
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_slots_are_in_range_and_spread() {
        let mut seen = [0u32; 3];
        for cookie in 0..300u64 {
            let slot = seeded_slot(7, cookie, 3);
            assert!((1..=3).contains(&slot), "slot {slot}");
            seen[usize::from(slot - 1)] += 1;
        }
        assert!(seen.iter().all(|n| *n > 50), "{seen:?}");
        assert_eq!(seeded_slot(7, 5, 0), 0);
        assert_eq!(seeded_slot(7, 5, 2), seeded_slot(7, 5, 2));
    }

    #[test]
    fn seeded_tc_slots_depend_on_the_source_port_and_address() {
        let client: IpAddr = "10.200.1.12".parse().expect("ip");
        let mut seen = [0u32; 2];
        for port in 32768..33068u16 {
            let slot = seeded_tc_slot(7, client, port, 2);
            assert!((1..=2).contains(&slot), "slot {slot}");
            seen[usize::from(slot - 1)] += 1;
        }
        assert!(seen.iter().all(|n| *n > 100), "{seen:?}");
        // The fold of 10.200.1.12 is its first word; the port sits above it.
        let fold = u32::from_ne_bytes([10, 200, 1, 12]);
        assert_eq!(
            seeded_tc_slot(7, client, 40000, 3),
            seeded_slot(7, (40000u64 << 32) | u64::from(fold), 3)
        );
    }

    #[test]
    fn keys_round_trip_addresses_and_ports() {
        let key = LbServiceKey::new("10.96.60.53".parse().expect("ip"), 80, IPPROTO_TCP, 0);
        assert_eq!(key.address().to_string(), "10.96.60.53");
        assert_eq!(key.port(), 80);
        let b = LbBackend::new("fd00::1".parse().expect("ip"), 8080, backend_state::ACTIVE);
        assert_eq!(b.address().to_string(), "fd00::1");
        assert_eq!(b.port(), 8080);
    }
}
