//! Decoding of raw ring buffer records into typed events.
//!
//! Records come from the kernel in the machine's byte order; fields are read
//! at the offsets `abi` asserts, without `unsafe` and without copying the
//! packet bytes (the event borrows them from the record).

use core::mem::{offset_of, size_of};

use crate::abi::{
    EventHeader, PacketRecord, PolicyVerdictInfo, PolicyVerdictRecord, TraceSockInfo,
    TraceSockRecord, EVENT_ABI_VERSION, EVENT_FLAG_IPV6, EVENT_FLAG_IS_REPLY,
    EVENT_FLAG_TO_ENDPOINT, EVENT_PACKET_CAP,
};
use crate::constants::message_type;

/// Size of the common header.
pub const HEADER_LEN: usize = size_of::<EventHeader>();

/// Why a record could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The record is shorter than its fixed part.
    #[error("truncated {what}: got {got} bytes, need {need}")]
    Truncated {
        /// Which part was cut short.
        what: &'static str,
        /// Bytes available.
        got: usize,
        /// Bytes required.
        need: usize,
    },
    /// The message type is not one this datapath writes.
    #[error(
        "unknown message type {0} (expected 1 drop, 4 trace, 5 policy verdict or 7 trace-sock)"
    )]
    UnknownType(u8),
    /// The record was written with another ABI version.
    #[error("record ABI version {got}, this decoder reads version {expected}")]
    UnsupportedVersion {
        /// Version found in the record.
        got: u8,
        /// Version this crate reads.
        expected: u8,
    },
    /// `cap_len` claims more packet bytes than the record holds.
    #[error("cap_len {cap_len} larger than the {available} packet bytes in the record")]
    CapLenTooLarge {
        /// Claimed captured length.
        cap_len: u16,
        /// Packet bytes present after the fixed part.
        available: usize,
    },
}

/// A trace record: a packet was forwarded at an observation point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceEvent<'a> {
    /// Common header; `subtype` is the observation point.
    pub header: EventHeader,
    /// First `cap_len` bytes of the frame, from the Ethernet header.
    pub packet: &'a [u8],
}

/// A drop record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DropEvent<'a> {
    /// Common header; `subtype` is the drop reason.
    pub header: EventHeader,
    /// First `cap_len` bytes of the frame, from the Ethernet header.
    pub packet: &'a [u8],
}

/// A policy verdict record, written for each new connection at an
/// endpoint that enforces policy in that direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PolicyVerdictEvent<'a> {
    /// Common header.
    pub header: EventHeader,
    /// Direction, match type, action, remote identity, port and protocol.
    pub verdict: PolicyVerdictInfo,
    /// First `cap_len` bytes of the frame, from the Ethernet header.
    pub packet: &'a [u8],
}

/// One decoded record, borrowing its packet bytes from the raw record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DatapathEvent<'a> {
    /// `MSG_TYPE_TRACE`.
    Trace(TraceEvent<'a>),
    /// `MSG_TYPE_DROP`.
    Drop(DropEvent<'a>),
    /// `MSG_TYPE_POLICY_VERDICT`.
    PolicyVerdict(PolicyVerdictEvent<'a>),
    /// `MSG_TYPE_TRACE_SOCK`: a service translation by a socket program.
    TraceSock(TraceSockEvent),
}

/// A trace-sock record (Cilium's `trace_sock_notify`): a socket call's
/// destination before or after a service translation. No packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceSockEvent {
    /// Common header; `subtype` is the translation point
    /// ([`crate::abi::lb::xlate_point`]).
    pub header: EventHeader,
    /// Cookie, cgroup id, port and protocol.
    pub sock: TraceSockInfo,
    /// The destination at this point.
    pub dst: std::net::IpAddr,
}

impl<'a> DatapathEvent<'a> {
    /// The common header of any record.
    pub fn header(&self) -> &EventHeader {
        match self {
            DatapathEvent::Trace(event) => &event.header,
            DatapathEvent::Drop(event) => &event.header,
            DatapathEvent::PolicyVerdict(event) => &event.header,
            DatapathEvent::TraceSock(event) => &event.header,
        }
    }

    /// The captured packet bytes of any record.
    pub fn packet(&self) -> &'a [u8] {
        match self {
            DatapathEvent::Trace(event) => event.packet,
            DatapathEvent::Drop(event) => event.packet,
            DatapathEvent::PolicyVerdict(event) => event.packet,
            DatapathEvent::TraceSock(_) => &[],
        }
    }
}

impl EventHeader {
    /// Whether the packet is IPv6.
    pub fn is_ipv6(&self) -> bool {
        self.flags & EVENT_FLAG_IPV6 != 0
    }

    /// Whether the packet is a reply of a tracked connection.
    pub fn is_reply(&self) -> bool {
        self.flags & EVENT_FLAG_IS_REPLY != 0
    }

    /// Whether the packet was going into the endpoint (`to_container`)
    /// rather than leaving it.
    pub fn to_endpoint(&self) -> bool {
        self.flags & EVENT_FLAG_TO_ENDPOINT != 0
    }
}

/// Decodes one raw ring buffer record.
pub fn decode(record: &[u8]) -> Result<DatapathEvent<'_>, DecodeError> {
    let header = decode_header(record)?;
    match header.msg_type {
        message_type::TRACE => {
            let packet = packet_bytes(record, &header, offset_of!(PacketRecord, packet))?;
            Ok(DatapathEvent::Trace(TraceEvent { header, packet }))
        }
        message_type::DROP => {
            let packet = packet_bytes(record, &header, offset_of!(PacketRecord, packet))?;
            Ok(DatapathEvent::Drop(DropEvent { header, packet }))
        }
        message_type::POLICY_VERDICT => {
            let verdict = decode_verdict(record)?;
            let packet = packet_bytes(record, &header, offset_of!(PolicyVerdictRecord, packet))?;
            Ok(DatapathEvent::PolicyVerdict(PolicyVerdictEvent {
                header,
                verdict,
                packet,
            }))
        }
        message_type::TRACE_SOCK => decode_trace_sock(record, header),
        other => Err(DecodeError::UnknownType(other)),
    }
}

/// Decodes only the common header (type, identities, time ...).
pub fn decode_header(record: &[u8]) -> Result<EventHeader, DecodeError> {
    let fields = Fields::new(record, "header", HEADER_LEN)?;
    let header = EventHeader {
        msg_type: fields.u8(offset_of!(EventHeader, msg_type)),
        subtype: fields.u8(offset_of!(EventHeader, subtype)),
        source: fields.u16(offset_of!(EventHeader, source)),
        ifindex: fields.u32(offset_of!(EventHeader, ifindex)),
        ktime_ns: fields.u64(offset_of!(EventHeader, ktime_ns)),
        orig_len: fields.u32(offset_of!(EventHeader, orig_len)),
        cap_len: fields.u16(offset_of!(EventHeader, cap_len)),
        dst_endpoint: fields.u16(offset_of!(EventHeader, dst_endpoint)),
        src_identity: fields.u32(offset_of!(EventHeader, src_identity)),
        dst_identity: fields.u32(offset_of!(EventHeader, dst_identity)),
        reason: fields.u8(offset_of!(EventHeader, reason)),
        flags: fields.u8(offset_of!(EventHeader, flags)),
        version: fields.u8(offset_of!(EventHeader, version)),
        pad0: fields.u8(offset_of!(EventHeader, pad0)),
        cpu: fields.u32(offset_of!(EventHeader, cpu)),
    };
    if header.version != EVENT_ABI_VERSION {
        return Err(DecodeError::UnsupportedVersion {
            got: header.version,
            expected: EVENT_ABI_VERSION,
        });
    }
    Ok(header)
}

fn decode_trace_sock(record: &[u8], header: EventHeader) -> Result<DatapathEvent<'_>, DecodeError> {
    let base = offset_of!(TraceSockRecord, sock);
    let fields = Fields::new(record, "trace-sock", size_of::<TraceSockRecord>())?;
    let sock = TraceSockInfo {
        sock_cookie: fields.u64(base + offset_of!(TraceSockInfo, sock_cookie)),
        cgroup_id: fields.u64(base + offset_of!(TraceSockInfo, cgroup_id)),
        dst_port: fields.u16(base + offset_of!(TraceSockInfo, dst_port)),
        l4_proto: fields.u8(base + offset_of!(TraceSockInfo, l4_proto)),
        pad0: 0,
        pad1: 0,
    };
    let family = if header.is_ipv6() {
        crate::abi::FAMILY_IPV6
    } else {
        crate::abi::FAMILY_IPV4
    };
    let dst =
        crate::abi::lb::bytes_addr(family, fields.array(offset_of!(TraceSockRecord, dst_addr)));
    Ok(DatapathEvent::TraceSock(TraceSockEvent {
        header,
        sock,
        dst,
    }))
}

fn decode_verdict(record: &[u8]) -> Result<PolicyVerdictInfo, DecodeError> {
    let base = offset_of!(PolicyVerdictRecord, verdict);
    let need = base + size_of::<PolicyVerdictInfo>();
    let fields = Fields::new(record, "policy verdict", need)?;
    Ok(PolicyVerdictInfo {
        remote_identity: fields.u32(base + offset_of!(PolicyVerdictInfo, remote_identity)),
        cookie: fields.u32(base + offset_of!(PolicyVerdictInfo, cookie)),
        dport: fields.u16(base + offset_of!(PolicyVerdictInfo, dport)),
        protocol: fields.u8(base + offset_of!(PolicyVerdictInfo, protocol)),
        direction: fields.u8(base + offset_of!(PolicyVerdictInfo, direction)),
        match_type: fields.u8(base + offset_of!(PolicyVerdictInfo, match_type)),
        action: fields.u8(base + offset_of!(PolicyVerdictInfo, action)),
        proxy_port: fields.u16(base + offset_of!(PolicyVerdictInfo, proxy_port)),
    })
}

fn packet_bytes<'a>(
    record: &'a [u8],
    header: &EventHeader,
    offset: usize,
) -> Result<&'a [u8], DecodeError> {
    // The packet area is EVENT_PACKET_CAP bytes even if the record were
    // longer, so a larger cap_len is corrupt either way.
    let available = record.len().saturating_sub(offset).min(EVENT_PACKET_CAP);
    if record.len() < offset {
        return Err(DecodeError::Truncated {
            what: "record",
            got: record.len(),
            need: offset,
        });
    }
    let too_large = DecodeError::CapLenTooLarge {
        cap_len: header.cap_len,
        available,
    };
    let cap_len = usize::from(header.cap_len);
    if cap_len > available {
        return Err(too_large);
    }
    record.get(offset..offset + cap_len).ok_or(too_large)
}

/// A record whose length was checked once, so each field read is in
/// bounds; reads fall back to zero rather than panic should that ever fail.
struct Fields<'a> {
    bytes: &'a [u8],
}

impl<'a> Fields<'a> {
    fn new(record: &'a [u8], what: &'static str, need: usize) -> Result<Self, DecodeError> {
        match record.get(..need) {
            Some(bytes) => Ok(Self { bytes }),
            None => Err(DecodeError::Truncated {
                what,
                got: record.len(),
                need,
            }),
        }
    }

    fn array<const N: usize>(&self, offset: usize) -> [u8; N] {
        self.bytes
            .get(offset..offset + N)
            .and_then(|slice| <[u8; N]>::try_from(slice).ok())
            .unwrap_or([0; N])
    }

    fn u8(&self, offset: usize) -> u8 {
        self.bytes.get(offset).copied().unwrap_or(0)
    }

    fn u16(&self, offset: usize) -> u16 {
        u16::from_ne_bytes(self.array(offset))
    }

    fn u32(&self, offset: usize) -> u32 {
        u32::from_ne_bytes(self.array(offset))
    }

    fn u64(&self, offset: usize) -> u64 {
        u64::from_ne_bytes(self.array(offset))
    }
}

#[cfg(test)]
mod tests;
