//! Numbers shared with Cilium, so that records from this datapath mean the
//! same thing as Cilium's monitor messages and Hubble's flow fields.
//!
//! Message types, observation points and policy match types use Cilium's
//! monitor numbers; drop reasons and connection states use the numbers of
//! `flow.proto` (`DropReason`, `TraceReason`), so the observer copies them
//! into flows unchanged.

/// Monitor message types (`event_header.type`).
pub mod message_type {
    /// A packet was dropped; the subtype is the drop reason.
    pub const DROP: u8 = 1;
    /// A packet was forwarded; the subtype is the observation point.
    pub const TRACE: u8 = 4;
    /// A policy decision was taken for a new connection.
    pub const POLICY_VERDICT: u8 = 5;
    /// A socket program translated a service address (Cilium's
    /// `CILIUM_NOTIFY_TRACE_SOCK`); the subtype is the translation point.
    pub const TRACE_SOCK: u8 = 7;
}

/// Trace observation points (`event_header.subtype` of trace records).
pub mod trace_point {
    /// Delivered into a local endpoint (Hubble "to-endpoint").
    pub const TO_LXC: u8 = 0;
    /// Steered to the agent's L7 proxy (Hubble "to-proxy"); the record's
    /// `dst_endpoint` holds the proxy port, as Cilium's `DstID`.
    pub const TO_PROXY: u8 = 1;
    /// Handed to the node's network stack (Hubble "to-stack").
    pub const TO_STACK: u8 = 3;
    /// Sent by a local endpoint to another local endpoint (Hubble
    /// "from-endpoint").
    pub const FROM_LXC: u8 = 5;
}

/// Drop reasons this datapath emits (`event_header.subtype` of drop
/// records), numbered as in `flow.proto`'s `DropReason`.
pub mod drop_reason {
    /// No policy entry allowed the connection.
    pub const POLICY_DENIED: u8 = 133;
    /// The IP header is malformed or the frame is shorter than it claims.
    pub const INVALID_PACKET: u8 = 134;
    /// The L4 header is truncated.
    pub const CT_TRUNCATED_OR_INVALID_HEADER: u8 = 135;
    /// Too many, or truncated, IPv6 extension headers.
    pub const INVALID_IPV6_EXTENSION_HEADER: u8 = 156;
    /// A non-first IP fragment reached an endpoint that enforces policy.
    pub const IP_FRAGMENTATION_NOT_SUPPORTED: u8 = 157;
    /// A connection to redirect found no proxy socket on its proxy port.
    pub const SOCKET_LOOKUP_FAILED: u8 = 178;
    /// Assigning the packet to the proxy's socket failed.
    pub const SOCKET_ASSIGN_FAILED: u8 = 179;
    /// An entry with a proxy port matched where no redirect is possible; the
    /// packet is dropped rather than let through without its L7 rules.
    pub const PROXY_REDIRECTION_NOT_SUPPORTED_FOR_PROTOCOL: u8 = 180;
    /// A packet to a service frontend that has no active backend (tc-level
    /// translation; the socket programs refuse the connect instead).
    pub const NO_SERVICE: u8 = 158;
}

/// Connection tracking states (`event_header.reason`), numbered as in
/// `flow.proto`'s `TraceReason`.
pub mod trace_reason {
    /// Not tracked (for example a non-first fragment).
    pub const UNKNOWN: u8 = 0;
    /// First packet of a connection.
    pub const NEW: u8 = 1;
    /// A later packet in the direction that opened the connection.
    pub const ESTABLISHED: u8 = 2;
    /// A packet in the reply direction.
    pub const REPLY: u8 = 3;
    /// An ICMP error about a tracked connection.
    pub const RELATED: u8 = 4;
}

/// Policy match types (`PolicyVerdictInfo::match_type`), Cilium's numbers.
pub mod policy_match {
    /// Nothing matched.
    pub const NONE: u8 = 0;
    /// The remote identity matched with any port.
    pub const L3_ONLY: u8 = 1;
    /// The remote identity and the port/protocol matched.
    pub const L3_L4: u8 = 2;
    /// The port/protocol matched for any identity.
    pub const L4_ONLY: u8 = 3;
    /// A wildcard entry (any identity, any port) matched.
    pub const ALL: u8 = 4;
}

/// Policy verdict actions (`PolicyVerdictInfo::action`), numbered as
/// `flow.proto`'s `Verdict`.
pub mod policy_action {
    /// The connection was allowed.
    pub const ALLOWED: u8 = 1;
    /// The connection was denied and its packet dropped.
    pub const DENIED: u8 = 2;
    /// The connection would have been denied; the endpoint is in audit mode.
    pub const AUDIT: u8 = 4;
    /// The connection was allowed and steered to the L7 proxy
    /// (`PolicyVerdictInfo::proxy_port` names it).
    pub const REDIRECTED: u8 = 5;
}

/// `skb->mark` conventions of the L7 redirect (Cilium's values): bits 8-11 a
/// magic; [`mark::TO_PROXY`] carries the proxy port in bits 16-31, the proxy
/// magics the original client's identity ([`mark::proxy`]).
pub mod mark {
    /// Mask of the magic bits.
    pub const MAGIC_HOST_MASK: u32 = 0x0F00;
    /// Set by the datapath on packets it hands to the proxy; the agent routes
    /// this mark to a local table so they are delivered locally.
    pub const TO_PROXY: u32 = 0x0200;
    /// On the ingress proxy's connections to the backend.
    pub const PROXY_INGRESS: u32 = 0x0A00;
    /// On the egress proxy's connections to the destination.
    pub const PROXY_EGRESS: u32 = 0x0B00;

    /// The socket mark of a proxy connection carrying `identity` (24 bits:
    /// the low 16 in bits 16-31, bits 16-23 in bits 0-7).
    pub fn proxy(identity: u32, ingress: bool) -> u32 {
        let magic = if ingress { PROXY_INGRESS } else { PROXY_EGRESS };
        ((identity & 0xFFFF) << 16) | ((identity >> 16) & 0xFF) | magic
    }

    /// The identity and direction (true: ingress) a proxy mark carries.
    pub fn proxy_identity(mark: u32) -> Option<(u32, bool)> {
        let ingress = match mark & MAGIC_HOST_MASK {
            PROXY_INGRESS => true,
            PROXY_EGRESS => false,
            _ => return None,
        };
        Some(((mark >> 16) | ((mark & 0xFF) << 16), ingress))
    }
}

/// Reserved security identities (Cilium's numbers).
pub mod identity {
    /// Unknown identity.
    pub const UNKNOWN: u32 = 0;
    /// The local node.
    pub const HOST: u32 = 1;
    /// Anything outside the cluster; also the fallback for ipcache misses.
    pub const WORLD: u32 = 2;
    /// An endpoint not managed by the agent.
    pub const UNMANAGED: u32 = 3;
    /// Health-check endpoints.
    pub const HEALTH: u32 = 4;
    /// Endpoints whose identity is not resolved yet.
    pub const INIT: u32 = 5;
    /// Other nodes of the cluster.
    pub const REMOTE_NODE: u32 = 6;
    /// The Kubernetes API server.
    pub const KUBE_APISERVER: u32 = 7;
    /// The ingress proxy.
    pub const INGRESS: u32 = 8;
    /// First identity allocated for a label set.
    pub const FIRST_ALLOCATED: u32 = 256;
}

/// Monitor aggregation levels (`DatapathConfig::monitor_aggregation`).
pub mod monitor_aggregation {
    /// Every packet emits a trace record.
    pub const NONE: u32 = 0;
    /// Trace records only for new connections and TCP SYN, FIN and RST.
    pub const MEDIUM: u32 = 1;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi;

    /// The `#define`s of the C header, so both sides are checked to agree.
    fn header_value(name: &str) -> u64 {
        let header = include_str!("../bpf/events.h");
        let line = header
            .lines()
            .find(|line| line.split_whitespace().take(2).eq(["#define", name]))
            .unwrap_or_else(|| panic!("events.h has no #define {name}"));
        let value = line.split_whitespace().nth(2).unwrap_or_default();
        let value = value.trim_start_matches('(');
        if let Some(hex) = value.strip_prefix("0x") {
            return u64::from_str_radix(hex, 16).expect("hex value");
        }
        if let Some(shift) = line.split("<<").nth(1) {
            let shift: u64 = shift.trim().trim_end_matches(')').parse().expect("shift");
            return 1 << shift;
        }
        value
            .parse()
            .unwrap_or_else(|_| panic!("#define {name} is not a number: {line}"))
    }

    #[test]
    fn rust_constants_match_events_h() {
        let pairs: &[(&str, u64)] = &[
            ("EVENT_ABI_VERSION", u64::from(abi::EVENT_ABI_VERSION)),
            ("EVENT_PACKET_CAP", abi::EVENT_PACKET_CAP as u64),
            ("MSG_TYPE_DROP", u64::from(message_type::DROP)),
            ("MSG_TYPE_TRACE", u64::from(message_type::TRACE)),
            (
                "MSG_TYPE_POLICY_VERDICT",
                u64::from(message_type::POLICY_VERDICT),
            ),
            ("MSG_TYPE_TRACE_SOCK", u64::from(message_type::TRACE_SOCK)),
            (
                "XLATE_PRE_DIRECTION_FWD",
                u64::from(abi::lb::xlate_point::PRE_DIRECTION_FWD),
            ),
            (
                "XLATE_POST_DIRECTION_FWD",
                u64::from(abi::lb::xlate_point::POST_DIRECTION_FWD),
            ),
            (
                "XLATE_PRE_DIRECTION_REV",
                u64::from(abi::lb::xlate_point::PRE_DIRECTION_REV),
            ),
            (
                "XLATE_POST_DIRECTION_REV",
                u64::from(abi::lb::xlate_point::POST_DIRECTION_REV),
            ),
            ("L4_PROTOCOL_TCP", u64::from(abi::lb::l4_protocol::TCP)),
            ("L4_PROTOCOL_UDP", u64::from(abi::lb::l4_protocol::UDP)),
            (
                "LB_BACKEND_ACTIVE",
                u64::from(abi::lb::backend_state::ACTIVE),
            ),
            (
                "LB_BACKEND_MAINTENANCE",
                u64::from(abi::lb::backend_state::MAINTENANCE),
            ),
            (
                "LB_SERVICE_F_NODEPORT",
                u64::from(abi::lb::LB_SERVICE_F_NODEPORT),
            ),
            ("TRACE_TO_LXC", u64::from(trace_point::TO_LXC)),
            ("TRACE_TO_STACK", u64::from(trace_point::TO_STACK)),
            ("TRACE_TO_PROXY", u64::from(trace_point::TO_PROXY)),
            (
                "DROP_SOCKET_LOOKUP_FAILED",
                u64::from(drop_reason::SOCKET_LOOKUP_FAILED),
            ),
            (
                "DROP_SOCKET_ASSIGN_FAILED",
                u64::from(drop_reason::SOCKET_ASSIGN_FAILED),
            ),
            (
                "DROP_PROXY_REDIRECTION_NOT_SUPPORTED",
                u64::from(drop_reason::PROXY_REDIRECTION_NOT_SUPPORTED_FOR_PROTOCOL),
            ),
            (
                "POLICY_ACTION_REDIRECTED",
                u64::from(policy_action::REDIRECTED),
            ),
            ("MARK_MAGIC_HOST_MASK", u64::from(mark::MAGIC_HOST_MASK)),
            ("MARK_MAGIC_TO_PROXY", u64::from(mark::TO_PROXY)),
            ("MARK_MAGIC_PROXY_INGRESS", u64::from(mark::PROXY_INGRESS)),
            ("MARK_MAGIC_PROXY_EGRESS", u64::from(mark::PROXY_EGRESS)),
            ("CT_SCOPE_ENDPOINT", u64::from(abi::CT_SCOPE_ENDPOINT)),
            ("CT_SCOPE_PROXY", u64::from(abi::CT_SCOPE_PROXY)),
            ("TRACE_FROM_LXC", u64::from(trace_point::FROM_LXC)),
            ("CT_STATE_UNKNOWN", u64::from(trace_reason::UNKNOWN)),
            ("CT_STATE_NEW", u64::from(trace_reason::NEW)),
            ("CT_STATE_ESTABLISHED", u64::from(trace_reason::ESTABLISHED)),
            ("CT_STATE_REPLY", u64::from(trace_reason::REPLY)),
            ("CT_STATE_RELATED", u64::from(trace_reason::RELATED)),
            ("DROP_POLICY_DENIED", u64::from(drop_reason::POLICY_DENIED)),
            (
                "DROP_INVALID_PACKET",
                u64::from(drop_reason::INVALID_PACKET),
            ),
            (
                "DROP_CT_INVALID_HEADER",
                u64::from(drop_reason::CT_TRUNCATED_OR_INVALID_HEADER),
            ),
            (
                "DROP_INVALID_IPV6_EXTENSION_HEADER",
                u64::from(drop_reason::INVALID_IPV6_EXTENSION_HEADER),
            ),
            (
                "DROP_FRAG_NOT_SUPPORTED",
                u64::from(drop_reason::IP_FRAGMENTATION_NOT_SUPPORTED),
            ),
            ("DROP_NO_SERVICE", u64::from(drop_reason::NO_SERVICE)),
            ("LB_NAT_F_CLOSING", u64::from(abi::lb::LB_NAT_F_CLOSING)),
            ("POLICY_MATCH_NONE", u64::from(policy_match::NONE)),
            ("POLICY_MATCH_L3_ONLY", u64::from(policy_match::L3_ONLY)),
            ("POLICY_MATCH_L3_L4", u64::from(policy_match::L3_L4)),
            ("POLICY_MATCH_L4_ONLY", u64::from(policy_match::L4_ONLY)),
            ("POLICY_MATCH_ALL", u64::from(policy_match::ALL)),
            ("POLICY_ACTION_ALLOWED", u64::from(policy_action::ALLOWED)),
            ("POLICY_ACTION_DENIED", u64::from(policy_action::DENIED)),
            ("POLICY_ACTION_AUDIT", u64::from(policy_action::AUDIT)),
            ("DIR_INGRESS", abi::Direction::Ingress as u64),
            ("DIR_EGRESS", abi::Direction::Egress as u64),
            ("EVENT_FLAG_IPV6", u64::from(abi::EVENT_FLAG_IPV6)),
            ("EVENT_FLAG_IS_REPLY", u64::from(abi::EVENT_FLAG_IS_REPLY)),
            (
                "EVENT_FLAG_TO_ENDPOINT",
                u64::from(abi::EVENT_FLAG_TO_ENDPOINT),
            ),
            ("IPCACHE_FAMILY_IPV4", u64::from(abi::FAMILY_IPV4)),
            ("IPCACHE_FAMILY_IPV6", u64::from(abi::FAMILY_IPV6)),
            (
                "IPCACHE_PREFIX_OFFSET_BITS",
                u64::from(abi::IPCACHE_PREFIX_OFFSET_BITS),
            ),
            (
                "IPCACHE_FLAG_LOCAL_ENDPOINT",
                u64::from(abi::IPCACHE_FLAG_LOCAL_ENDPOINT),
            ),
            (
                "ENDPOINT_F_INGRESS_ENFORCE",
                u64::from(abi::ENDPOINT_F_INGRESS_ENFORCE),
            ),
            (
                "ENDPOINT_F_EGRESS_ENFORCE",
                u64::from(abi::ENDPOINT_F_EGRESS_ENFORCE),
            ),
            ("ENDPOINT_F_AUDIT", u64::from(abi::ENDPOINT_F_AUDIT)),
            (
                "MONITOR_AGGREGATION_NONE",
                u64::from(monitor_aggregation::NONE),
            ),
            (
                "MONITOR_AGGREGATION_MEDIUM",
                u64::from(monitor_aggregation::MEDIUM),
            ),
        ];
        for (name, rust) in pairs {
            assert_eq!(
                header_value(name),
                *rust,
                "{name} differs between events.h and Rust"
            );
        }
    }
}
