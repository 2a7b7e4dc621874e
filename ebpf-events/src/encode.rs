//! Writes records in the kernel's layout, for tests and benchmarks of code
//! that consumes records (the decoder here, the observer's parser).

use core::mem::{offset_of, size_of};

use crate::abi::{
    EventHeader, PacketRecord, PolicyVerdictInfo, PolicyVerdictRecord, EVENT_ABI_VERSION,
    EVENT_PACKET_CAP,
};
use crate::constants::message_type;

/// Encodes a record exactly as the datapath writes it: a fixed-size record
/// whose `cap_len` is the length of `packet` (cut at [`EVENT_PACKET_CAP`]).
///
/// The message type comes from `header.msg_type`; `verdict` is written only
/// for policy verdict records. `version` and `cap_len` are filled in.
pub fn encode_record(
    header: &EventHeader,
    verdict: Option<&PolicyVerdictInfo>,
    packet: &[u8],
) -> Vec<u8> {
    let is_verdict = header.msg_type == message_type::POLICY_VERDICT;
    let (size, packet_offset) = if is_verdict {
        (
            size_of::<PolicyVerdictRecord>(),
            offset_of!(PolicyVerdictRecord, packet),
        )
    } else {
        (size_of::<PacketRecord>(), offset_of!(PacketRecord, packet))
    };
    let cap = packet.len().min(EVENT_PACKET_CAP);
    let mut out = vec![0u8; size];
    let mut header = *header;
    header.version = EVENT_ABI_VERSION;
    header.cap_len = cap as u16;
    write_header(&mut out, &header);
    if is_verdict {
        let info = verdict.copied().unwrap_or_default();
        write_verdict(&mut out, offset_of!(PolicyVerdictRecord, verdict), &info);
    }
    out[packet_offset..packet_offset + cap].copy_from_slice(&packet[..cap]);
    out
}

fn put(out: &mut [u8], offset: usize, bytes: &[u8]) {
    out[offset..offset + bytes.len()].copy_from_slice(bytes);
}

fn write_header(out: &mut [u8], h: &EventHeader) {
    put(out, offset_of!(EventHeader, msg_type), &[h.msg_type]);
    put(out, offset_of!(EventHeader, subtype), &[h.subtype]);
    put(
        out,
        offset_of!(EventHeader, source),
        &h.source.to_ne_bytes(),
    );
    put(
        out,
        offset_of!(EventHeader, ifindex),
        &h.ifindex.to_ne_bytes(),
    );
    put(
        out,
        offset_of!(EventHeader, ktime_ns),
        &h.ktime_ns.to_ne_bytes(),
    );
    put(
        out,
        offset_of!(EventHeader, orig_len),
        &h.orig_len.to_ne_bytes(),
    );
    put(
        out,
        offset_of!(EventHeader, cap_len),
        &h.cap_len.to_ne_bytes(),
    );
    put(
        out,
        offset_of!(EventHeader, dst_endpoint),
        &h.dst_endpoint.to_ne_bytes(),
    );
    put(
        out,
        offset_of!(EventHeader, src_identity),
        &h.src_identity.to_ne_bytes(),
    );
    put(
        out,
        offset_of!(EventHeader, dst_identity),
        &h.dst_identity.to_ne_bytes(),
    );
    put(out, offset_of!(EventHeader, reason), &[h.reason]);
    put(out, offset_of!(EventHeader, flags), &[h.flags]);
    put(out, offset_of!(EventHeader, version), &[h.version]);
    put(out, offset_of!(EventHeader, pad0), &[h.pad0]);
    put(out, offset_of!(EventHeader, cpu), &h.cpu.to_ne_bytes());
}

fn write_verdict(out: &mut [u8], base: usize, v: &PolicyVerdictInfo) {
    put(
        out,
        base + offset_of!(PolicyVerdictInfo, remote_identity),
        &v.remote_identity.to_ne_bytes(),
    );
    put(
        out,
        base + offset_of!(PolicyVerdictInfo, cookie),
        &v.cookie.to_ne_bytes(),
    );
    put(
        out,
        base + offset_of!(PolicyVerdictInfo, dport),
        &v.dport.to_ne_bytes(),
    );
    put(
        out,
        base + offset_of!(PolicyVerdictInfo, protocol),
        &[v.protocol],
    );
    put(
        out,
        base + offset_of!(PolicyVerdictInfo, direction),
        &[v.direction],
    );
    put(
        out,
        base + offset_of!(PolicyVerdictInfo, match_type),
        &[v.match_type],
    );
    put(
        out,
        base + offset_of!(PolicyVerdictInfo, action),
        &[v.action],
    );
    put(
        out,
        base + offset_of!(PolicyVerdictInfo, proxy_port),
        &v.proxy_port.to_ne_bytes(),
    );
}

/// Encodes a trace-sock record as the socket programs write it (for tests of
/// code that consumes records). `header.msg_type` is set to trace-sock, `subtype`
/// is the translation point; the IPv6 flag follows `dst`.
pub fn encode_trace_sock(
    header: &EventHeader,
    sock: &crate::abi::TraceSockInfo,
    dst: std::net::IpAddr,
) -> Vec<u8> {
    use crate::abi::{TraceSockInfo, TraceSockRecord};
    let mut out = vec![0u8; size_of::<TraceSockRecord>()];
    let mut header = *header;
    header.msg_type = message_type::TRACE_SOCK;
    header.version = EVENT_ABI_VERSION;
    header.cap_len = 0;
    let (family, addr) = crate::abi::lb::addr_bytes(dst);
    if family == crate::abi::FAMILY_IPV6 {
        header.flags |= crate::abi::EVENT_FLAG_IPV6;
    } else {
        header.flags &= !crate::abi::EVENT_FLAG_IPV6;
    }
    write_header(&mut out, &header);
    let base = offset_of!(TraceSockRecord, sock);
    put(
        &mut out,
        base + offset_of!(TraceSockInfo, sock_cookie),
        &sock.sock_cookie.to_ne_bytes(),
    );
    put(
        &mut out,
        base + offset_of!(TraceSockInfo, cgroup_id),
        &sock.cgroup_id.to_ne_bytes(),
    );
    put(
        &mut out,
        base + offset_of!(TraceSockInfo, dst_port),
        &sock.dst_port.to_ne_bytes(),
    );
    put(
        &mut out,
        base + offset_of!(TraceSockInfo, l4_proto),
        &[sock.l4_proto],
    );
    put(&mut out, offset_of!(TraceSockRecord, dst_addr), &addr);
    out
}

/// An Ethernet + IPv4 + TCP frame (20-byte headers, no payload) from `src:sport` to
/// `dst:dport` with TCP `flags`, as a datapath record carries one.
pub fn ipv4_tcp_frame(
    src: core::net::Ipv4Addr,
    dst: core::net::Ipv4Addr,
    sport: u16,
    dport: u16,
    flags: u8,
) -> Vec<u8> {
    let mut f = vec![
        0xaa, 0xbb, 0xcc, 0, 0, 2, 0xaa, 0xbb, 0xcc, 0, 0, 1, 0x08, 0x00,
    ];
    f.extend_from_slice(&[0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0]);
    f.extend_from_slice(&src.octets());
    f.extend_from_slice(&dst.octets());
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    f.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    f
}
