//! Every name table of the API, once: protobuf enum names (Go's `String()`, which
//! falls back to the number), Cilium's monitor message types, trace observation
//! points, drop reasons, policy match types, reserved security identities, ICMP types
//! and codes (as gopacket prints them) and DNS response codes; and the TYPE column of a
//! flow as `hubble observe` prints it ([`write_flow_type`]).

use std::borrow::Cow;
use std::fmt::Write as _;

use crate::flow::{self, layer7, Flow};
use crate::{peer, relay};

/// Defines a function returning the proto name of an enum value, or its number when
/// the value is unknown (as Go's generated `String()` does).
macro_rules! enum_name_fn {
    ($(#[$doc:meta])* $name:ident, $ty:ty) => {
        $(#[$doc])*
        pub fn $name(value: i32) -> Cow<'static, str> {
            match <$ty>::try_from(value) {
                Ok(v) => Cow::Borrowed(v.as_str_name()),
                Err(_) => Cow::Owned(value.to_string()),
            }
        }
    };
}

enum_name_fn!(
    /// `flow.Verdict`.
    verdict, flow::Verdict
);
enum_name_fn!(
    /// `flow.TrafficDirection`.
    traffic_direction, flow::TrafficDirection
);
enum_name_fn!(
    /// `flow.DebugCapturePoint`.
    debug_capture_point, flow::DebugCapturePoint
);
enum_name_fn!(
    /// `flow.SocketTranslationPoint`.
    sock_xlate_point, flow::SocketTranslationPoint
);
enum_name_fn!(
    /// `flow.DropReason` (the `drop_reason_desc` of a flow).
    drop_reason_desc, flow::DropReason
);
enum_name_fn!(
    /// `flow.IPVersion`.
    ip_version, flow::IpVersion
);
enum_name_fn!(
    /// `flow.L7FlowType`.
    l7_flow_type, flow::L7FlowType
);
enum_name_fn!(
    /// `flow.AuthType`.
    auth_type, flow::AuthType
);
enum_name_fn!(
    /// `flow.LostEventSource`.
    lost_event_source, flow::LostEventSource
);
enum_name_fn!(
    /// `flow.AgentEventType`.
    agent_event_type, flow::AgentEventType
);
enum_name_fn!(
    /// `flow.DebugEventType`.
    debug_event_type, flow::DebugEventType
);
enum_name_fn!(
    /// `relay.NodeState`.
    node_state, relay::NodeState
);
enum_name_fn!(
    /// `peer.ChangeNotificationType`.
    change_notification_type, peer::ChangeNotificationType
);

/// Cilium monitor message type of drop events.
pub const MESSAGE_TYPE_DROP: i32 = 1;
/// Cilium monitor message type of debug events.
pub const MESSAGE_TYPE_DEBUG: i32 = 2;
/// Cilium monitor message type of debug captures.
pub const MESSAGE_TYPE_CAPTURE: i32 = 3;
/// Cilium monitor message type of trace events.
pub const MESSAGE_TYPE_TRACE: i32 = 4;
/// Cilium monitor message type of policy verdicts.
pub const MESSAGE_TYPE_POLICY_VERDICT: i32 = 5;
/// Cilium monitor message type of socket translation traces.
pub const MESSAGE_TYPE_TRACE_SOCK: i32 = 7;
/// Cilium monitor message type of L7 access logs.
pub const MESSAGE_TYPE_ACCESS_LOG: i32 = 129;
/// Cilium monitor message type of agent notifications.
pub const MESSAGE_TYPE_AGENT: i32 = 130;

/// Event type names accepted by `--type`, with their message type.
pub const MESSAGE_TYPE_NAMES: &[(&str, i32)] = &[
    ("drop", MESSAGE_TYPE_DROP),
    ("debug", MESSAGE_TYPE_DEBUG),
    ("capture", MESSAGE_TYPE_CAPTURE),
    ("trace", MESSAGE_TYPE_TRACE),
    ("l7", MESSAGE_TYPE_ACCESS_LOG),
    ("agent", MESSAGE_TYPE_AGENT),
    ("policy-verdict", MESSAGE_TYPE_POLICY_VERDICT),
    ("trace-sock", MESSAGE_TYPE_TRACE_SOCK),
];

/// Trace observation points by sub-type number.
pub const TRACE_OBSERVATION_POINTS: &[(u8, &str)] = &[
    (0, "to-endpoint"),
    (1, "to-proxy"),
    (2, "to-host"),
    (3, "to-stack"),
    (4, "to-overlay"),
    (5, "from-endpoint"),
    (6, "from-proxy"),
    (7, "from-host"),
    (8, "from-stack"),
    (9, "from-overlay"),
    (10, "from-network"),
    (11, "to-network"),
    (12, "from-crypto"),
    (13, "to-crypto"),
];

/// Agent notification sub-types accepted by `--type agent:<name>`.
pub const AGENT_EVENT_SUBTYPES: &[(&str, i32)] = &[
    ("unspecified", 0),
    ("message", 1),
    ("agent-started", 2),
    ("endpoint-regenerate-success", 3),
    ("endpoint-regenerate-failure", 4),
    ("policy-updated", 5),
    ("policy-deleted", 6),
    ("endpoint-created", 7),
    ("endpoint-deleted", 8),
    ("ipcache-upserted", 9),
    ("ipcache-deleted", 10),
];

/// The name of trace observation point `point`, if it has one.
pub fn trace_observation_point_name(point: u8) -> Option<&'static str> {
    TRACE_OBSERVATION_POINTS
        .iter()
        .find(|(p, _)| *p == point)
        .map(|(_, name)| *name)
}

/// The name of trace observation point `point`, or its number.
pub fn trace_observation_point(point: u8) -> Cow<'static, str> {
    match trace_observation_point_name(point) {
        Some(name) => Cow::Borrowed(name),
        None => Cow::Owned(point.to_string()),
    }
}

/// Cilium's human-readable drop reason for `reason`, or `"<n>, 0"` when unknown.
pub fn drop_reason(reason: u8) -> Cow<'static, str> {
    match drop_reason_text(reason) {
        Some(text) => Cow::Borrowed(text),
        None => Cow::Owned(format!("{reason}, 0")),
    }
}

/// Cilium's human-readable drop reason for `reason`, if it has one.
pub fn drop_reason_text(reason: u8) -> Option<&'static str> {
    Some(match reason {
        0 => "Success",
        2 => "Invalid packet",
        3 => "Interface",
        4 => "Interface Decrypted",
        5 => "LB, sock cgroup: No backend slot entry found",
        6 => "LB, sock cgroup: No backend entry found",
        7 => "LB, sock cgroup: Reverse entry update failed",
        8 => "LB, sock cgroup: Reverse entry stale",
        9 => "Fragmented packet",
        10 => "Fragmented packet entry update failed",
        11 => "Missed tail call to custom program",
        12 => "Interface Decrypting",
        13 => "Interface Encrypting",
        14 => "LB: sock cgroup: Reverse entry delete succeeded",
        15 => "MTU error message",
        130 => "Invalid source mac",
        131 => "Invalid destination mac",
        132 => "Invalid source ip",
        133 => "Policy denied",
        134 => "Invalid packet",
        135 => "CT: Truncated or invalid header",
        136 => "Fragmentation needed",
        137 => "CT: Unknown L4 protocol",
        138 => "CT: Can't create entry from packet",
        139 => "Unsupported L3 protocol",
        140 => "Missed tail call",
        141 => "Error writing to packet",
        142 => "Unknown L4 protocol",
        143 => "Unknown ICMPv4 code",
        144 => "Unknown ICMPv4 type",
        145 => "Unknown ICMPv6 code",
        146 => "Unknown ICMPv6 type",
        147 => "Error retrieving tunnel key",
        148 => "Error retrieving tunnel options",
        149 => "Invalid Geneve option",
        150 => "Unknown L3 target address",
        151 => "Stale or unroutable IP",
        152 => "No matching local container found",
        153 => "Error while correcting L3 checksum",
        154 => "Error while correcting L4 checksum",
        155 => "CT: Map insertion failed",
        156 => "Invalid IPv6 extension header",
        157 => "IP fragmentation not supported",
        158 => "Service backend not found",
        160 => "No tunnel/encapsulation endpoint (datapath BUG!)",
        161 => "NAT 46/64 not enabled",
        162 => "Reached EDT rate-limiting drop horizon",
        163 => "Unknown connection tracking state",
        164 => "Local host is unreachable",
        165 => "No configuration available to perform policy decision",
        166 => "Unsupported L2 protocol",
        167 => "No mapping for NAT masquerade",
        168 => "Unsupported protocol for NAT masquerade",
        169 => "FIB lookup failed",
        170 => "Encapsulation traffic is prohibited",
        171 => "Invalid identity",
        172 => "Unknown sender",
        173 => "NAT not needed",
        174 => "Is a ClusterIP",
        175 => "First logical datagram fragment not found",
        176 => "Forbidden ICMPv6 message",
        177 => "Denied by LB src range check",
        178 => "Socket lookup failed",
        179 => "Socket assign failed",
        180 => "Proxy redirection not supported for protocol",
        181 => "Policy denied by denylist",
        182 => "VLAN traffic disallowed by VLAN filter",
        183 => "Incorrect VNI from VTEP",
        184 => "Failed to update or lookup TC buffer",
        185 => "No SID was found for the IP address",
        186 => "SRv6 state was removed during tail call",
        187 => "L3 translation from IPv4 to IPv6 failed (NAT46)",
        188 => "L3 translation from IPv6 to IPv4 failed (NAT64)",
        189 => "Authentication required",
        190 => "No conntrack map found",
        191 => "No nat map found",
        192 => "Invalid ClusterID",
        193 => "Unsupported packet protocol for DSR encapsulation",
        194 => "No egress gateway found",
        195 => "Traffic is unencrypted",
        196 => "TTL exceeded",
        197 => "No node ID found",
        198 => "Rate limited",
        199 => "IGMP handled",
        200 => "IGMP subscribed",
        201 => "Multicast handled",
        202 => "Host datapath not ready",
        203 => "Endpoint policy program not available",
        204 => "No Egress IP configured",
        205 => "Punt to proxy",
        _ => return None,
    })
}

/// Cilium's name of a policy match type.
pub fn policy_match_type(match_type: u32) -> &'static str {
    match match_type {
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

/// Cilium's reserved security identities (identity 0 is "unknown", which is not one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ReservedIdentity {
    /// The local host (1).
    Host,
    /// Everything outside the cluster (2).
    World,
    /// Endpoints not managed by the agent (3).
    Unmanaged,
    /// Health-check endpoints (4).
    Health,
    /// Endpoints whose identity is not resolved yet (5).
    Init,
    /// Other nodes of the cluster (6).
    RemoteNode,
    /// The Kubernetes API server (7).
    KubeApiServer,
    /// The ingress proxy (8).
    Ingress,
    /// IPv4 addresses outside the cluster (9).
    WorldIpv4,
    /// IPv6 addresses outside the cluster (10).
    WorldIpv6,
}

impl ReservedIdentity {
    /// Every reserved identity, in numeric order.
    pub const ALL: [ReservedIdentity; 10] = [
        ReservedIdentity::Host,
        ReservedIdentity::World,
        ReservedIdentity::Unmanaged,
        ReservedIdentity::Health,
        ReservedIdentity::Init,
        ReservedIdentity::RemoteNode,
        ReservedIdentity::KubeApiServer,
        ReservedIdentity::Ingress,
        ReservedIdentity::WorldIpv4,
        ReservedIdentity::WorldIpv6,
    ];

    /// The identity number.
    pub fn id(self) -> u32 {
        self as u32 + 1
    }

    /// The name, which is also the key of its `reserved:` label.
    pub fn name(self) -> &'static str {
        match self {
            ReservedIdentity::Host => "host",
            ReservedIdentity::World => "world",
            ReservedIdentity::Unmanaged => "unmanaged",
            ReservedIdentity::Health => "health",
            ReservedIdentity::Init => "init",
            ReservedIdentity::RemoteNode => "remote-node",
            ReservedIdentity::KubeApiServer => "kube-apiserver",
            ReservedIdentity::Ingress => "ingress",
            ReservedIdentity::WorldIpv4 => "world-ipv4",
            ReservedIdentity::WorldIpv6 => "world-ipv6",
        }
    }

    /// The reserved identity numbered `id`, if it is one.
    pub fn from_id(id: u32) -> Option<ReservedIdentity> {
        Self::ALL.iter().copied().find(|r| r.id() == id)
    }

    /// The reserved identity named `name`, if it is one.
    pub fn from_name(name: &str) -> Option<ReservedIdentity> {
        Self::ALL.iter().copied().find(|r| r.name() == name)
    }
}

/// The identity of unknown sources; it prints as `unknown` but cannot be named.
pub const IDENTITY_UNKNOWN: u32 = 0;
/// The identity of traffic to encrypt on the overlay: it can be named
/// (`--identity overlay-to-encrypt`) but has no printable name.
pub const IDENTITY_OVERLAY_TO_ENCRYPT: (&str, u32) = ("overlay-to-encrypt", 11);

/// The name of reserved identity `id`, if it has one (`unknown` for 0).
pub fn reserved_identity_name(id: u32) -> Option<&'static str> {
    if id == IDENTITY_UNKNOWN {
        return Some("unknown");
    }
    ReservedIdentity::from_id(id).map(ReservedIdentity::name)
}

/// Upstream's list of reserved identities as it prints them in errors: sorted by
/// number, named when they have a name.
pub fn reserved_identity_list() -> Vec<String> {
    ReservedIdentity::ALL
        .iter()
        .map(|r| r.name().to_string())
        .chain([IDENTITY_OVERLAY_TO_ENCRYPT.1.to_string()])
        .collect()
}

/// Parses a reserved identity name or a number (Go's base prefixes `0x`, `0o`, `0b`,
/// a leading `0` for octal, and `_` separators are accepted, as upstream does).
pub fn parse_identity(value: &str) -> Option<u32> {
    if let Some(reserved) = ReservedIdentity::from_name(value) {
        return Some(reserved.id());
    }
    if value == IDENTITY_OVERLAY_TO_ENCRYPT.0 {
        return Some(IDENTITY_OVERLAY_TO_ENCRYPT.1);
    }
    parse_go_uint(value).and_then(|v| u32::try_from(v).ok())
}

/// Go's `strconv.ParseUint(s, 0, 64)`.
pub fn parse_go_uint(value: &str) -> Option<u64> {
    let (digits, radix) = if let Some(rest) = value
        .strip_prefix("0x")
        .or_else(|| value.strip_prefix("0X"))
    {
        (rest, 16)
    } else if let Some(rest) = value
        .strip_prefix("0b")
        .or_else(|| value.strip_prefix("0B"))
    {
        (rest, 2)
    } else if let Some(rest) = value
        .strip_prefix("0o")
        .or_else(|| value.strip_prefix("0O"))
    {
        (rest, 8)
    } else if value.len() > 1 && value.starts_with('0') {
        (&value[1..], 8)
    } else {
        (value, 10)
    };
    if digits.is_empty()
        || digits.starts_with('_')
        || digits.ends_with('_')
        || digits.contains("__")
    {
        return None;
    }
    if radix == 10 && digits.contains('_') {
        return None;
    }
    let cleaned: String = digits.chars().filter(|c| *c != '_').collect();
    if cleaned.starts_with('+') {
        return None;
    }
    u64::from_str_radix(&cleaned, radix).ok()
}

/// Writes the event type word of upstream's TYPE column (`to-endpoint`,
/// `Policy denied`, `policy-verdict:L3-L4 INGRESS`, `http-request`, ...).
pub fn write_flow_type(f: &Flow, out: &mut String) {
    if let Some(l7) = f.l7.as_ref() {
        let protocol = match l7.record {
            Some(layer7::Record::Http(_)) => "http",
            Some(layer7::Record::Dns(_)) => "dns",
            Some(layer7::Record::Kafka(_)) => "kafka",
            None => "l7",
        };
        out.push_str(protocol);
        out.push('-');
        out.push_str(&l7_flow_type(l7.r#type).to_lowercase());
        if let Some(layer7::Record::Dns(dns)) = l7.record.as_ref() {
            out.push(' ');
            out.push_str(&dns.observation_source);
        }
        return;
    }
    let (kind, sub_type) = f
        .event_type
        .as_ref()
        .map_or((0, 0), |e| (e.r#type, e.sub_type));
    match kind {
        MESSAGE_TYPE_TRACE => out.push_str(&trace_observation_point(sub_type as u8)),
        MESSAGE_TYPE_DROP => out.push_str(&drop_reason(sub_type as u8)),
        MESSAGE_TYPE_POLICY_VERDICT => {
            let _ = write!(
                out,
                "policy-verdict:{} {}",
                policy_match_type(f.policy_match_type),
                traffic_direction(f.traffic_direction)
            );
        }
        MESSAGE_TYPE_CAPTURE => out.push_str(&debug_capture_point(f.debug_capture_point)),
        MESSAGE_TYPE_TRACE_SOCK => {
            // The event subtype is the translation point too (Hubble's parser sets
            // both), so a field mask without `sock_xlate_point` still prints it.
            let number = match (f.sock_xlate_point, f.event_type.as_ref()) {
                (0, Some(event_type)) => event_type.sub_type,
                (number, _) => number,
            };
            let point = flow::SocketTranslationPoint::try_from(number);
            let word = match point {
                Ok(flow::SocketTranslationPoint::SockXlatePointPostDirectionFwd) => {
                    "post-xlate-fwd"
                }
                Ok(flow::SocketTranslationPoint::SockXlatePointPostDirectionRev) => {
                    "post-xlate-rev"
                }
                Ok(flow::SocketTranslationPoint::SockXlatePointPreDirectionFwd) => "pre-xlate-fwd",
                Ok(flow::SocketTranslationPoint::SockXlatePointPreDirectionRev) => "pre-xlate-rev",
                _ => {
                    out.push_str(&sock_xlate_point(number));
                    return;
                }
            };
            out.push_str(word);
        }
        _ => out.push_str("UNKNOWN"),
    }
}

mod codes;
pub use codes::{dns_rcode, icmpv4_type_code, icmpv6_type_code};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fall_back_to_numbers() {
        assert_eq!(verdict(2), "DROPPED");
        assert_eq!(verdict(42), "42");
        assert_eq!(trace_observation_point(0), "to-endpoint");
        assert_eq!(trace_observation_point(123), "123");
        assert_eq!(drop_reason(133), "Policy denied");
        assert_eq!(drop_reason(250), "250, 0");
        assert_eq!(policy_match_type(2), "L3-L4");
        assert_eq!(policy_match_type(9), "unknown");
    }

    #[test]
    fn socket_translation_points_read_from_the_field_or_the_subtype() {
        let sock = |point: i32, sub_type: i32| Flow {
            event_type: Some(flow::CiliumEventType {
                r#type: MESSAGE_TYPE_TRACE_SOCK,
                sub_type,
            }),
            sock_xlate_point: point,
            ..Default::default()
        };
        let text = |f: &Flow| {
            let mut out = String::new();
            write_flow_type(f, &mut out);
            out
        };
        assert_eq!(text(&sock(1, 1)), "pre-xlate-fwd");
        assert_eq!(text(&sock(0, 2)), "post-xlate-fwd", "masked field");
        assert_eq!(text(&sock(3, 0)), "pre-xlate-rev");
        assert_eq!(text(&sock(0, 4)), "post-xlate-rev");
    }

    #[test]
    fn reserved_identities_are_cilium_s() {
        for reserved in ReservedIdentity::ALL {
            assert_eq!(ReservedIdentity::from_id(reserved.id()), Some(reserved));
            assert_eq!(ReservedIdentity::from_name(reserved.name()), Some(reserved));
        }
        assert_eq!(ReservedIdentity::Host.id(), 1);
        assert_eq!(ReservedIdentity::KubeApiServer.id(), 7);
        assert_eq!(ReservedIdentity::WorldIpv6.id(), 10);
        assert_eq!(reserved_identity_name(0), Some("unknown"));
        assert_eq!(reserved_identity_name(6), Some("remote-node"));
        assert_eq!(reserved_identity_name(11), None);
        assert_eq!(ReservedIdentity::from_id(0), None);
        assert_eq!(ReservedIdentity::from_name("unknown"), None);
    }

    #[test]
    fn parses_identities_like_upstream() {
        assert_eq!(parse_identity("world"), Some(2));
        assert_eq!(parse_identity("overlay-to-encrypt"), Some(11));
        assert_eq!(parse_identity("6305"), Some(6305));
        assert_eq!(parse_identity("0x10"), Some(16));
        assert_eq!(parse_identity("010"), Some(8));
        assert_eq!(parse_identity("unknown"), None);
        assert_eq!(parse_identity("-1"), None);
        assert_eq!(parse_identity("4294967296"), None);
        assert_eq!(
            reserved_identity_list().join(" "),
            "host world unmanaged health init remote-node kube-apiserver ingress world-ipv4 world-ipv6 11"
        );
    }
}
