//! Packet codes by name: ICMPv4 and ICMPv6 types and codes as gopacket prints them
//! (Hubble's summaries and the `icmp` metric), DNS response codes as upstream's DNS
//! metrics label them.

/// The text of a DNS response code, as upstream's DNS handler labels it.
pub fn dns_rcode(rcode: u32) -> &'static str {
    match rcode {
        0 => "No Error",
        1 => "Format Error",
        2 => "Server Failure",
        3 => "Non-Existent Domain",
        4 => "Not Implemented",
        5 => "Query Refused",
        6 => "Name Exists when it should not",
        7 => "RR Set Exists when it should not",
        8 => "RR Set that should exist does not",
        9 => "Not Authorized",
        10 => "Name not contained in zone",
        11 => "DSO-TYPE Not Implemented",
        16 => "Bad OPT Version",
        17 => "Key not recognized",
        18 => "Signature out of time window",
        19 => "Bad TKEY Mode",
        20 => "Duplicate key name",
        21 => "Algorithm not supported",
        22 => "Bad Truncation",
        23 => "Bad/missing Server Cookie",
        _ => "",
    }
}

/// An ICMPv4 type and code as text (`EchoRequest`, `DestinationUnreachable(Port)`).
pub fn icmpv4_type_code(icmp_type: u8, code: u8) -> String {
    let (name, codes): (&str, &[&str]) = match icmp_type {
        0 => ("EchoReply", &[]),
        3 => (
            "DestinationUnreachable",
            &[
                "Net",
                "Host",
                "Protocol",
                "Port",
                "FragmentationNeeded",
                "SourceRoutingFailed",
                "NetUnknown",
                "HostUnknown",
                "SourceIsolated",
                "NetAdminProhibited",
                "HostAdminProhibited",
                "NetTOS",
                "HostTOS",
                "CommAdminProhibited",
                "HostPrecedence",
                "PrecedenceCutoff",
            ],
        ),
        4 => ("SourceQuench", &[]),
        5 => ("Redirect", &["Net", "Host", "TOS+Net", "TOS+Host"]),
        8 => ("EchoRequest", &[]),
        9 => ("RouterAdvertisement", &[]),
        10 => ("RouterSolicitation", &[]),
        11 => (
            "TimeExceeded",
            &["TTLExceeded", "FragmentReassemblyTimeExceeded"],
        ),
        12 => (
            "ParameterProblem",
            &["PointerIndicatesError", "MissingOption", "BadLength"],
        ),
        13 => ("TimestampRequest", &[]),
        14 => ("TimestampReply", &[]),
        15 => ("InfoRequest", &[]),
        16 => ("InfoReply", &[]),
        17 => ("AddressMaskRequest", &[]),
        18 => ("AddressMaskReply", &[]),
        _ => return format!("{icmp_type}({code})"),
    };
    type_code_text(name, codes, code)
}

/// An ICMPv6 type and code as text (`EchoRequest`, `DestinationUnreachable(PortUnreachable)`).
pub fn icmpv6_type_code(icmp_type: u8, code: u8) -> String {
    let (name, codes): (&str, &[&str]) = match icmp_type {
        1 => (
            "DestinationUnreachable",
            &[
                "NoRouteToDst",
                "AdminProhibited",
                "BeyondScopeOfSrc",
                "AddressUnreachable",
                "PortUnreachable",
                "SrcAddressFailedPolicy",
                "RejectRouteToDst",
            ],
        ),
        2 => ("PacketTooBig", &[]),
        3 => (
            "TimeExceeded",
            &["HopLimitExceeded", "FragmentReassemblyTimeExceeded"],
        ),
        4 => (
            "ParameterProblem",
            &[
                "ErroneousHeaderField",
                "UnrecognizedNextHeader",
                "UnrecognizedIPv6Option",
            ],
        ),
        128 => ("EchoRequest", &[]),
        129 => ("EchoReply", &[]),
        133 => ("RouterSolicitation", &[]),
        134 => ("RouterAdvertisement", &[]),
        135 => ("NeighborSolicitation", &[]),
        136 => ("NeighborAdvertisement", &[]),
        137 => ("Redirect", &[]),
        _ => return format!("{icmp_type}({code})"),
    };
    type_code_text(name, codes, code)
}

/// Types without code names print the bare name for code 0 and `Name(Code: n)` for
/// others; types with code names print `Name(CodeName)` or `Name(Code: n)`.
fn type_code_text(name: &str, codes: &[&str], code: u8) -> String {
    if codes.is_empty() && code == 0 {
        return name.to_owned();
    }
    match codes.get(usize::from(code)) {
        Some(code_name) => format!("{name}({code_name})"),
        None => format!("{name}(Code: {code})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn icmp_names_follow_gopacket() {
        assert_eq!(icmpv4_type_code(8, 0), "EchoRequest");
        assert_eq!(icmpv4_type_code(0, 0), "EchoReply");
        assert_eq!(icmpv4_type_code(3, 3), "DestinationUnreachable(Port)");
        assert_eq!(icmpv4_type_code(3, 20), "DestinationUnreachable(Code: 20)");
        assert_eq!(icmpv4_type_code(8, 1), "EchoRequest(Code: 1)");
        assert_eq!(icmpv4_type_code(42, 7), "42(7)");
        assert_eq!(icmpv6_type_code(128, 0), "EchoRequest");
        assert_eq!(
            icmpv6_type_code(1, 4),
            "DestinationUnreachable(PortUnreachable)"
        );
    }

    #[test]
    fn dns_rcodes_have_their_text() {
        assert_eq!(dns_rcode(3), "Non-Existent Domain");
        assert_eq!(dns_rcode(12), "");
    }
}
