//! Label values exactly as upstream computes them: monitor message types, trace
//! observation points, policy match types, DNS response codes, ICMP type names.

use std::borrow::Cow;

use proto::flow::{layer4, layer7, DropReason, Flow, IpVersion, TrafficDirection, Verdict};

/// Cilium's monitor message types (`event_type.type` of a flow).
pub mod message_type {
    pub const DROP: i32 = 1;
    pub const CAPTURE: i32 = 3;
    pub const TRACE: i32 = 4;
    pub const POLICY_VERDICT: i32 = 5;
    pub const ACCESS_LOG: i32 = 129;
}

/// The numeric identity of `reserved:host`.
pub const IDENTITY_HOST: u32 = 1;

/// The event type of a flow, 0 when it has none.
pub fn event_type(flow: &Flow) -> i32 {
    flow.event_type.as_ref().map_or(0, |e| e.r#type)
}

/// The protocol best describing a flow: the L7 protocol for access-log events, the L4
/// protocol for datapath events (upstream's `FlowProtocol`).
pub fn flow_protocol(flow: &Flow) -> &'static str {
    match event_type(flow) {
        message_type::ACCESS_LOG => match flow.l7.as_ref().and_then(|l7| l7.record.as_ref()) {
            Some(layer7::Record::Dns(_)) => "DNS",
            Some(layer7::Record::Http(_)) => "HTTP",
            Some(layer7::Record::Kafka(_)) => "Kafka",
            None => "Unknown L7",
        },
        message_type::DROP
        | message_type::TRACE
        | message_type::POLICY_VERDICT
        | message_type::CAPTURE => match flow.l4.as_ref().and_then(|l4| l4.protocol.as_ref()) {
            Some(layer4::Protocol::Tcp(_)) => "TCP",
            Some(layer4::Protocol::Udp(_)) => "UDP",
            Some(layer4::Protocol::IcmPv4(_)) => "ICMPv4",
            Some(layer4::Protocol::IcmPv6(_)) => "ICMPv6",
            Some(layer4::Protocol::Sctp(_)) => "SCTP",
            Some(layer4::Protocol::Vrrp(_)) => "VRRP",
            Some(layer4::Protocol::Igmp(_)) => "IGMP",
            None => "Unknown L4",
        },
        _ => "Unknown flow",
    }
}

/// The monitor name of a trace observation point (event sub-type), or "" when unknown.
pub fn trace_observation_point(sub_type: i32) -> &'static str {
    match sub_type as u8 {
        0 => "to-endpoint",
        1 => "to-proxy",
        2 => "to-host",
        3 => "to-stack",
        4 => "to-overlay",
        5 => "from-endpoint",
        6 => "from-proxy",
        7 => "from-host",
        8 => "from-stack",
        9 => "from-overlay",
        10 => "from-network",
        11 => "to-network",
        12 => "from-crypto",
        13 => "to-crypto",
        _ => "",
    }
}

/// The name of a policy match type, as Cilium's monitor prints it.
#[cfg(test)]
pub fn policy_match_type(value: u32) -> &'static str {
    match value {
        0 => "none",
        1 => "L3-Only",
        2 => "L3-L4",
        3 => "L4-Only",
        4 => "all",
        5 => "L3-Proto",
        6 => "Proto-Only",
        _ => "unknown",
    }
}

/// An enum value's protobuf name, or its number when unknown (Go's `String()`).
fn enum_name(name: Option<&'static str>, value: i32) -> Cow<'static, str> {
    match name {
        Some(name) => Cow::Borrowed(name),
        None => Cow::Owned(value.to_string()),
    }
}

pub fn verdict(value: i32) -> Cow<'static, str> {
    enum_name(
        Verdict::try_from(value).ok().map(|v| v.as_str_name()),
        value,
    )
}

pub fn drop_reason(value: i32) -> Cow<'static, str> {
    enum_name(
        DropReason::try_from(value).ok().map(|v| v.as_str_name()),
        value,
    )
}

#[cfg(test)]
pub fn traffic_direction(value: i32) -> Cow<'static, str> {
    enum_name(
        TrafficDirection::try_from(value)
            .ok()
            .map(|v| v.as_str_name()),
        value,
    )
}

pub fn ip_version(value: i32) -> Cow<'static, str> {
    enum_name(
        IpVersion::try_from(value).ok().map(|v| v.as_str_name()),
        value,
    )
}

/// A verdict in lower case, as the policy handler labels its action.
pub fn verdict_lower(value: i32) -> Cow<'static, str> {
    match Verdict::try_from(value) {
        Ok(Verdict::Unknown) => Cow::Borrowed("verdict_unknown"),
        Ok(Verdict::Forwarded) => Cow::Borrowed("forwarded"),
        Ok(Verdict::Dropped) => Cow::Borrowed("dropped"),
        Ok(Verdict::Error) => Cow::Borrowed("error"),
        Ok(Verdict::Audit) => Cow::Borrowed("audit"),
        Ok(Verdict::Redirected) => Cow::Borrowed("redirected"),
        Ok(Verdict::Traced) => Cow::Borrowed("traced"),
        Ok(Verdict::Translated) => Cow::Borrowed("translated"),
        Err(_) => Cow::Owned(value.to_string()),
    }
}

/// A traffic direction in lower case, as the policy handler labels it.
pub fn traffic_direction_lower(value: i32) -> Cow<'static, str> {
    match TrafficDirection::try_from(value) {
        Ok(TrafficDirection::Unknown) => Cow::Borrowed("traffic_direction_unknown"),
        Ok(TrafficDirection::Ingress) => Cow::Borrowed("ingress"),
        Ok(TrafficDirection::Egress) => Cow::Borrowed("egress"),
        Err(_) => Cow::Owned(value.to_string()),
    }
}

/// A policy match type in lower case (`l3-l4`), as the policy handler labels it.
pub fn policy_match_type_lower(value: u32) -> &'static str {
    match value {
        0 => "none",
        1 => "l3-only",
        2 => "l3-l4",
        3 => "l4-only",
        4 => "all",
        5 => "l3-proto",
        6 => "proto-only",
        _ => "unknown",
    }
}

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
    fn enum_names_fall_back_to_numbers() {
        assert_eq!(verdict(2), "DROPPED");
        assert_eq!(drop_reason(133), "POLICY_DENIED");
        assert_eq!(drop_reason(9999), "9999");
        assert_eq!(traffic_direction(0), "TRAFFIC_DIRECTION_UNKNOWN");
        assert_eq!(ip_version(1), "IPv4");
        for v in -1..9 {
            assert_eq!(verdict_lower(v), verdict(v).to_lowercase());
        }
        for d in -1..4 {
            assert_eq!(
                traffic_direction_lower(d),
                traffic_direction(d).to_lowercase()
            );
        }
        for m in 0..9 {
            assert_eq!(
                policy_match_type_lower(m),
                policy_match_type(m).to_lowercase()
            );
        }
    }
}
