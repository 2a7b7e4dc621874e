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
}

/// Trace observation points (`event_header.subtype` of trace records).
pub mod trace_point {
    /// Delivered into a local endpoint (Hubble "to-endpoint").
    pub const TO_LXC: u8 = 0;
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
