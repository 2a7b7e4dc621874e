//! Decodes the first bytes of a frame into the L2/L3/L4 parts of a flow, bounds-checked:
//! a truncated layer simply ends the decoding, as the layers before it are still useful.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proto::flow::{self, layer4};
use proto::names;

use crate::compact::text::{ipv4_text, mac_text};

/// What the packet bytes of a record tell.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct DecodedPacket {
    pub ethernet: Option<flow::Ethernet>,
    pub ip: Option<flow::Ip>,
    pub l4: Option<flow::Layer4>,
    pub source_ip: Option<IpAddr>,
    pub destination_ip: Option<IpAddr>,
    /// Hubble's summary: the last layer's name, or `TCP Flags: ...` / `ICMPv4 <type>`.
    pub summary: String,
}

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: u16 = 0x8100;

fn be16(data: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*data.get(at)?, *data.get(at + 1)?]))
}

/// The text of a 6-byte MAC address, as the compact form writes it back.
fn mac(bytes: &[u8; 6]) -> String {
    let mut word = [0u8; 8];
    word[2..].copy_from_slice(bytes);
    mac_text(u64::from_be_bytes(word))
}

/// Decodes an Ethernet frame.
pub fn decode_packet(data: &[u8]) -> DecodedPacket {
    let mut out = DecodedPacket::default();
    if data.len() < 14 {
        return out;
    }
    let (Ok(destination), Ok(source)) = (
        <&[u8; 6]>::try_from(&data[0..6]),
        <&[u8; 6]>::try_from(&data[6..12]),
    ) else {
        return out;
    };
    out.ethernet = Some(flow::Ethernet {
        source: mac(source),
        destination: mac(destination),
    });
    out.summary = "Ethernet".into();
    let mut ethertype = be16(data, 12).unwrap_or(0);
    let mut offset = 14;
    if ethertype == ETHERTYPE_VLAN {
        ethertype = be16(data, 16).unwrap_or(0);
        offset = 18;
    }
    let rest = &data[offset.min(data.len())..];
    match ethertype {
        ETHERTYPE_IPV4 => decode_ipv4(rest, &mut out),
        ETHERTYPE_IPV6 => decode_ipv6(rest, &mut out),
        _ => {}
    }
    out
}

fn decode_ipv4(data: &[u8], out: &mut DecodedPacket) {
    if data.len() < 20 || data[0] >> 4 != 4 {
        return;
    }
    let header_len = usize::from(data[0] & 0x0f) * 4;
    let src = Ipv4Addr::new(data[12], data[13], data[14], data[15]);
    let dst = Ipv4Addr::new(data[16], data[17], data[18], data[19]);
    out.ip = Some(flow::Ip {
        source: ipv4_text(src),
        destination: ipv4_text(dst),
        ip_version: flow::IpVersion::IPv4 as i32,
        ..Default::default()
    });
    out.source_ip = Some(src.into());
    out.destination_ip = Some(dst.into());
    out.summary = "IPv4".into();
    let fragment_offset = be16(data, 6).unwrap_or(0) & 0x1fff;
    if header_len < 20 || fragment_offset != 0 || data.len() < header_len {
        return;
    }
    decode_l4(data[9], &data[header_len..], false, out);
}

fn decode_ipv6(data: &[u8], out: &mut DecodedPacket) {
    if data.len() < 40 || data[0] >> 4 != 6 {
        return;
    }
    let mut src = [0u8; 16];
    let mut dst = [0u8; 16];
    src.copy_from_slice(&data[8..24]);
    dst.copy_from_slice(&data[24..40]);
    let (src, dst) = (Ipv6Addr::from(src), Ipv6Addr::from(dst));
    out.ip = Some(flow::Ip {
        source: src.to_string(),
        destination: dst.to_string(),
        ip_version: flow::IpVersion::IPv6 as i32,
        ..Default::default()
    });
    out.source_ip = Some(src.into());
    out.destination_ip = Some(dst.into());
    out.summary = "IPv6".into();
    let mut next = data[6];
    let mut offset = 40;
    // Hop-by-hop, routing, destination options and fragment headers.
    for _ in 0..8 {
        match next {
            0 | 43 | 60 => {
                let (Some(&nh), Some(&len)) = (data.get(offset), data.get(offset + 1)) else {
                    return;
                };
                next = nh;
                offset += (usize::from(len) + 1) * 8;
            }
            44 => {
                let Some(&nh) = data.get(offset) else { return };
                if be16(data, offset + 2).unwrap_or(0) & 0xfff8 != 0 {
                    return; // not the first fragment: no L4 header here
                }
                next = nh;
                offset += 8;
            }
            _ => break,
        }
    }
    if let Some(rest) = data.get(offset..) {
        decode_l4(next, rest, true, out);
    }
}

fn decode_l4(protocol: u8, data: &[u8], ipv6: bool, out: &mut DecodedPacket) {
    use layer4::Protocol as P;
    let ports = || Some((u32::from(be16(data, 0)?), u32::from(be16(data, 2)?)));
    let l4 = match protocol {
        6 if data.len() >= 20 => {
            let (source_port, destination_port) = ports().unwrap_or_default();
            let f = data[13];
            let flags = flow::TcpFlags {
                fin: f & 0x01 != 0,
                syn: f & 0x02 != 0,
                rst: f & 0x04 != 0,
                psh: f & 0x08 != 0,
                ack: f & 0x10 != 0,
                urg: f & 0x20 != 0,
                ece: f & 0x40 != 0,
                cwr: f & 0x80 != 0,
                ns: data[12] & 0x01 != 0,
            };
            out.summary = tcp_summary(&flags);
            P::Tcp(flow::Tcp {
                source_port,
                destination_port,
                flags: Some(flags),
            })
        }
        17 if data.len() >= 8 => {
            let (source_port, destination_port) = ports().unwrap_or_default();
            out.summary = "UDP".into();
            P::Udp(flow::Udp {
                source_port,
                destination_port,
            })
        }
        132 if data.len() >= 12 => {
            let (source_port, destination_port) = ports().unwrap_or_default();
            out.summary = "SCTP".into();
            P::Sctp(flow::Sctp {
                source_port,
                destination_port,
            })
        }
        1 if !ipv6 && data.len() >= 4 => {
            out.summary = format!("ICMPv4 {}", names::icmpv4_type_code(data[0], data[1]));
            P::IcmPv4(flow::IcmPv4 {
                r#type: data[0].into(),
                code: data[1].into(),
            })
        }
        58 if ipv6 && data.len() >= 4 => {
            out.summary = format!("ICMPv6 {}", names::icmpv6_type_code(data[0], data[1]));
            P::IcmPv6(flow::IcmPv6 {
                r#type: data[0].into(),
                code: data[1].into(),
            })
        }
        _ => return,
    };
    out.l4 = Some(flow::Layer4 { protocol: Some(l4) });
}

/// TCP flag names in Hubble's summary order.
/// Hubble's summary of a TCP segment: `TCP Flags: SYN, ACK` (set flags in this order),
/// written into one string.
fn tcp_summary(flags: &flow::TcpFlags) -> String {
    const PREFIX: &str = "TCP Flags: ";
    let names = [
        (flags.syn, "SYN"),
        (flags.ack, "ACK"),
        (flags.rst, "RST"),
        (flags.fin, "FIN"),
        (flags.psh, "PSH"),
        (flags.urg, "URG"),
        (flags.ece, "ECE"),
        (flags.cwr, "CWR"),
        (flags.ns, "NS"),
    ];
    let mut summary = String::with_capacity(PREFIX.len() + 16);
    summary.push_str(PREFIX);
    for (_, name) in names.iter().filter(|(set, _)| *set) {
        if summary.len() > PREFIX.len() {
            summary.push_str(", ");
        }
        summary.push_str(name);
    }
    summary
}

#[cfg(test)]
mod mac_tests {
    use super::*;

    #[test]
    fn tcp_summary_names_set_flags_in_hubbles_order() {
        let all = flow::TcpFlags {
            fin: true,
            syn: true,
            rst: true,
            psh: true,
            ack: true,
            urg: true,
            ece: true,
            cwr: true,
            ns: true,
        };
        assert_eq!(
            tcp_summary(&all),
            "TCP Flags: SYN, ACK, RST, FIN, PSH, URG, ECE, CWR, NS"
        );
        let fin_ack = flow::TcpFlags {
            fin: true,
            ack: true,
            ..Default::default()
        };
        assert_eq!(tcp_summary(&fin_ack), "TCP Flags: ACK, FIN");
        assert_eq!(tcp_summary(&flow::TcpFlags::default()), "TCP Flags: ");
    }

    #[test]
    fn mac_is_lower_case_hex_pairs() {
        assert_eq!(mac(&[0xaa, 0xbb, 0xcc, 0, 0x0f, 0xf0]), "aa:bb:cc:00:0f:f0");
    }
}
