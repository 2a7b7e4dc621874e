/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * The one event and map ABI shared by the tc programs in datapath.c and the
 * Rust crate `ebpf-events` (module `abi`, which mirrors every struct below
 * with `#[repr(C)]` types and compile-time size and offset checks).
 *
 * Rules that keep both sides identical:
 *   - every struct is naturally aligned and has explicit padding fields;
 *   - multi-byte integers are in host byte order unless the field name says
 *     `_be` or the field is a byte array holding an address;
 *   - addresses are byte arrays in network order (IPv4 in the first 4 bytes
 *     of a 16-byte field where both families share one field).
 *
 * Bump EVENT_ABI_VERSION whenever a layout below changes.
 */
#ifndef HUBBLE_RS_EVENTS_H
#define HUBBLE_RS_EVENTS_H

#include <linux/types.h>

#define EVENT_ABI_VERSION 1

/* Number of packet bytes copied into every event (the first bytes of the
 * frame, starting at the Ethernet header). */
#define EVENT_PACKET_CAP 128

/* ---- Monitor message types (Cilium's pkg/monitor/api numbers). ---- */
#define MSG_TYPE_DROP 1
#define MSG_TYPE_TRACE 4
#define MSG_TYPE_POLICY_VERDICT 5
#define MSG_TYPE_TRACE_SOCK 7 /* CILIUM_NOTIFY_TRACE_SOCK */

/* ---- Trace observation points (event subtype of MSG_TYPE_TRACE). ---- */
#define TRACE_TO_LXC 0
#define TRACE_TO_PROXY 1 /* steered to the agent's L7 proxy; dst_endpoint = proxy port */
#define TRACE_TO_STACK 3
#define TRACE_FROM_LXC 5

/* ---- Connection tracking state reported in event_header.reason.
 * Same numbers as flow.proto's TraceReason (0 means unknown). ---- */
#define CT_STATE_UNKNOWN 0
#define CT_STATE_NEW 1
#define CT_STATE_ESTABLISHED 2
#define CT_STATE_REPLY 3
#define CT_STATE_RELATED 4

/* ---- Drop reasons (event subtype of MSG_TYPE_DROP), as flow.proto's
 * DropReason enum numbers them. ---- */
#define DROP_POLICY_DENIED 133
#define DROP_INVALID_PACKET 134
#define DROP_CT_INVALID_HEADER 135
#define DROP_INVALID_IPV6_EXTENSION_HEADER 156
/* Non-first IP fragments at an enforcing endpoint: no ports to decide on. */
#define DROP_FRAG_NOT_SUPPORTED 157
/* L7 redirect (proxy.c): no proxy socket listens on the entry's proxy port. */
#define DROP_SOCKET_LOOKUP_FAILED 178
#define DROP_SOCKET_ASSIGN_FAILED 179
/* An entry with a proxy port matched where no redirect is possible (a
 * protocol other than TCP/UDP, or a connection that reached to_container
 * without passing a tc ingress hook that redirects): dropped, never let
 * through without its L7 rules. */
#define DROP_PROXY_REDIRECTION_NOT_SUPPORTED 180
/* A service frontend without an active backend (tc-level translation). */
#define DROP_NO_SERVICE 158

/* ---- Policy match types (Cilium's PolicyMatchType numbers). ---- */
#define POLICY_MATCH_NONE 0
#define POLICY_MATCH_L3_ONLY 1
#define POLICY_MATCH_L3_L4 2
#define POLICY_MATCH_L4_ONLY 3
#define POLICY_MATCH_ALL 4

/* ---- Policy verdict actions (same numbers as flow.proto's Verdict). ---- */
#define POLICY_ACTION_ALLOWED 1
#define POLICY_ACTION_DENIED 2
#define POLICY_ACTION_AUDIT 4
#define POLICY_ACTION_REDIRECTED 5 /* allowed and steered to the L7 proxy */

/* ---- Traffic direction, used by the policy map key, the conntrack key
 * and policy verdict events. ---- */
#define DIR_INGRESS 0
#define DIR_EGRESS 1

/* ---- event_header.flags bits. ---- */
#define EVENT_FLAG_IPV6 (1 << 0)
/* The packet belongs to the reply direction of a tracked connection. */
#define EVENT_FLAG_IS_REPLY (1 << 1)
/* Observed on the way into the endpoint (to_container); unset means the
 * packet was leaving the endpoint (from_container). */
#define EVENT_FLAG_TO_ENDPOINT (1 << 2)

/* Common header of every ring buffer record (40 bytes). */
struct event_header {
	__u8 type;          /* MSG_TYPE_* */
	__u8 subtype;       /* trace: observation point; drop: drop reason */
	__u16 source;       /* id of the endpoint whose veth saw the packet */
	__u32 ifindex;      /* host-side veth ifindex */
	__u64 ktime_ns;     /* bpf_ktime_get_ns(), CLOCK_MONOTONIC */
	__u32 orig_len;     /* length of the whole frame */
	__u16 cap_len;      /* packet bytes copied into the record */
	__u16 dst_endpoint; /* destination endpoint id when local, else 0 */
	__u32 src_identity;
	__u32 dst_identity;
	__u8 reason;        /* CT_STATE_* */
	__u8 flags;         /* EVENT_FLAG_* */
	__u8 version;       /* EVENT_ABI_VERSION */
	__u8 pad0;
	__u32 cpu;          /* CPU the program ran on */
};

/* MSG_TYPE_TRACE record (168 bytes). */
struct trace_event {
	struct event_header hdr;
	__u8 packet[EVENT_PACKET_CAP];
};

/* MSG_TYPE_DROP record (168 bytes); the drop reason is hdr.subtype. */
struct drop_event {
	struct event_header hdr;
	__u8 packet[EVENT_PACKET_CAP];
};

/* Fields specific to MSG_TYPE_POLICY_VERDICT (16 bytes). */
struct policy_verdict_info {
	__u32 remote_identity;
	__u32 cookie;       /* policy_value.cookie of the matching entry */
	__u16 dport;        /* host order; ICMP type for ICMP */
	__u8 protocol;      /* IPPROTO_* */
	__u8 direction;     /* DIR_* */
	__u8 match_type;    /* POLICY_MATCH_* */
	__u8 action;        /* POLICY_ACTION_* */
	__u16 proxy_port;   /* POLICY_ACTION_REDIRECTED: the proxy's port */
};

/* MSG_TYPE_POLICY_VERDICT record (184 bytes). */
struct policy_verdict_event {
	struct event_header hdr;
	struct policy_verdict_info verdict;
	__u8 packet[EVENT_PACKET_CAP];
};

/* ---- Socket translation points (event subtype of MSG_TYPE_TRACE_SOCK),
 * Cilium's enum xlate_point and flow.proto's SocketTranslationPoint. ---- */
#define XLATE_PRE_DIRECTION_FWD 1  /* before the forward translation: VIP */
#define XLATE_POST_DIRECTION_FWD 2 /* after it: the chosen backend */
#define XLATE_PRE_DIRECTION_REV 3  /* before the reverse one: the peer */
#define XLATE_POST_DIRECTION_REV 4 /* after it: the VIP the socket sees */

/* ---- trace_sock_info.l4_proto, Cilium's enum l4_protocol. ---- */
#define L4_PROTOCOL_UNKNOWN 0
#define L4_PROTOCOL_TCP 1
#define L4_PROTOCOL_UDP 2

/* Fields of Cilium's struct trace_sock_notify (24 bytes); the translation
 * point is hdr.subtype and the IPv6 flag hdr.flags' EVENT_FLAG_IPV6. */
struct trace_sock_info {
	__u64 sock_cookie;  /* bpf_get_socket_cookie() */
	__u64 cgroup_id;    /* cgroup v2 id of the calling task */
	__u16 dst_port;     /* host order */
	__u8 l4_proto;      /* L4_PROTOCOL_* */
	__u8 pad0;
	__u32 pad1;
};

/* MSG_TYPE_TRACE_SOCK record (80 bytes): written by the cgroup socket
 * programs (sock.c); hdr.source, ifindex, identities, lengths are 0. */
struct trace_sock_event {
	struct event_header hdr;
	struct trace_sock_info sock;
	__u8 dst_addr[16];  /* network order; IPv4 in the first 4 bytes */
};

/* ---- Maps ---- */

#define IPCACHE_FAMILY_IPV4 4
#define IPCACHE_FAMILY_IPV6 6

/* The LPM prefix covers pad0, pad1 and family (32 bits) before the
 * address: prefixlen = 32 + address prefix length. */
#define IPCACHE_PREFIX_OFFSET_BITS 32

struct ipcache_key {
	__u32 prefixlen;
	__u16 pad0;
	__u8 pad1;
	__u8 family;        /* IPCACHE_FAMILY_* */
	__u8 addr[16];      /* IPv4 uses the first 4 bytes */
};

/* ipcache_value.flags bits. */
#define IPCACHE_FLAG_LOCAL_ENDPOINT (1 << 0)

struct ipcache_value {
	__u32 identity;
	__u32 flags;        /* IPCACHE_FLAG_* */
	__u8 tunnel_ip[4];  /* node address of a remote endpoint, 0 if none */
	__u16 endpoint_id;  /* set when IPCACHE_FLAG_LOCAL_ENDPOINT */
	__u16 pad0;
};

/* endpoint_info.flags bits. */
#define ENDPOINT_F_INGRESS_ENFORCE (1 << 0)
#define ENDPOINT_F_EGRESS_ENFORCE (1 << 1)
#define ENDPOINT_F_AUDIT (1 << 2)

/* ENDPOINTS value, keyed by the host-side veth ifindex (__u32). */
struct endpoint_info {
	__u16 endpoint_id;
	__u8 flags;         /* ENDPOINT_F_* */
	__u8 pad0;
	__u32 identity;
	__u8 ipv4[4];
	__u8 ipv6[16];
};

/* Wildcards: remote_identity 0, dport 0 and protocol 0 mean "any". */
struct policy_key {
	__u32 local_identity;
	__u32 remote_identity;
	__u16 dport;        /* host order */
	__u8 protocol;
	__u8 direction;     /* DIR_* */
};

struct policy_value {
	__u8 deny;          /* 1: deny entry; 0: allow entry */
	__u8 pad0;
	__u16 proxy_port;   /* allow entries: L7 proxy port to redirect to, 0 none */
	__u32 cookie;       /* opaque rule id copied into verdict events */
};

/* Connection tracking key: one entry per endpoint and direction, so an
 * egress entry at the client's veth never admits ingress at the server. */
struct ct_key {
	__u8 saddr[16];
	__u8 daddr[16];
	__u16 sport_be;     /* network order; ICMP echo id for requests */
	__u16 dport_be;     /* network order; ICMP echo id for replies */
	__u8 protocol;
	__u8 direction;     /* DIR_* of the packet that opened the entry */
	__u8 family;        /* IPCACHE_FAMILY_* */
	__u8 scope;         /* CT_SCOPE_* */
	__u32 ifindex;
};

/* ct_key.scope: endpoint policy entries (per endpoint veth and direction),
 * or L7 redirect entries (per redirecting interface; direction is the
 * policy direction the redirect serves). */
#define CT_SCOPE_ENDPOINT 0
#define CT_SCOPE_PROXY 1

/* ct_entry.flags bits. */
#define CT_F_SEEN_REPLY (1 << 0)
#define CT_F_CLOSING (1 << 1)
/* Endpoint entry opened by the agent's ingress proxy: replies go back to
 * the proxy's socket (MARK_MAGIC_TO_PROXY), not to the original client. */
#define CT_F_FROM_PROXY (1 << 2)
/* Redirect entry serving the client's egress policy (else ingress). */
#define CT_F_REDIRECT_EGRESS (1 << 3)
/* Endpoint entry opened at from_container with no redirect entry found or
 * made for it: its established packets need no redirect lookup (redirect
 * entries of an endpoint are only made for new connections). */
#define CT_F_NO_REDIRECT (1 << 4)
/* Endpoint entry of a connection the tc load balancer did not translate
 * (or one opened from outside): its packets arriving at to_container need
 * no reverse translation lookup. */
#define CT_F_NO_LB_NAT (1 << 5)
/* Redirect entries keep their proxy port in the upper 16 bits of flags. */
#define CT_F_PROXY_PORT_SHIFT 16

/* ---- skb->mark conventions of the L7 redirect (Cilium's values). ----
 * Bits 8-11 hold a magic; MARK_MAGIC_TO_PROXY carries the proxy port in
 * bits 16-31, the proxy magics carry the original source identity
 * (bits 16-31: its low 16 bits, bits 0-7: bits 16-23). The agent routes
 * marks MARK_MAGIC_TO_PROXY/MARK_MAGIC_HOST_MASK to a local table, so a
 * socket-assigned packet is delivered to the proxy. */
#define MARK_MAGIC_HOST_MASK 0x0F00
#define MARK_MAGIC_TO_PROXY 0x0200
#define MARK_MAGIC_PROXY_INGRESS 0x0A00
#define MARK_MAGIC_PROXY_EGRESS 0x0B00
struct ct_entry {
	__u64 expires_ns;   /* ktime after which the entry counts as gone */
	__u32 flags;        /* CT_F_* */
	__u32 remote_identity;
};

/* CONFIG map (array, one element). */
#define MONITOR_AGGREGATION_NONE 0
#define MONITOR_AGGREGATION_MEDIUM 1

struct datapath_config {
	__u32 monitor_aggregation; /* MONITOR_AGGREGATION_* */
	__u32 events_enabled;      /* 0 turns all events off */
	__u32 wakeup_bytes;        /* force a reader wake-up at this backlog */
	__u32 lb_seed;             /* 0: random backends; else hash(seed, cookie) */
};

/* ---- Service load balancing maps (sock.c). ---- */

/* LB_SERVICES key: a frontend (VIP, port, protocol) and a slot. Slot 0 is
 * the service itself; slots 1..count hold its active backends. */
struct lb_service_key {
	__u8 addr[16];      /* network order; IPv4 in the first 4 bytes */
	__u16 dport_be;     /* network order */
	__u16 slot;
	__u8 protocol;      /* IPPROTO_TCP / IPPROTO_UDP */
	__u8 family;        /* IPCACHE_FAMILY_* */
	__u16 pad0;
};

/* lb_service_value.flags bits. */
#define LB_SERVICE_F_NODEPORT (1 << 0)

struct lb_service_value {
	__u32 backend_id;   /* slots >= 1: the LB_BACKENDS key */
	__u16 count;        /* slot 0: number of active backends */
	__u16 service_id;   /* the service's numeric id (rev NAT index) */
	__u32 flags;        /* slot 0: LB_SERVICE_F_* */
};

/* lb_backend.state, Cilium's BackendState numbers. */
#define LB_BACKEND_ACTIVE 0
#define LB_BACKEND_TERMINATING 1
#define LB_BACKEND_QUARANTINED 2
#define LB_BACKEND_MAINTENANCE 3

/* LB_BACKENDS value, keyed by backend id (__u32). */
struct lb_backend {
	__u8 addr[16];
	__u16 port_be;
	__u8 family;
	__u8 state;         /* LB_BACKEND_* */
};

/* LB_REVNAT_SK: what a socket talking to a backend must see instead. */
struct lb_revnat_key {
	__u64 cookie;       /* socket cookie */
	__u8 addr[16];      /* backend address */
	__u16 port_be;      /* backend port */
	__u8 family;
	__u8 pad0;
	__u32 pad1;
};

struct lb_revnat_value {
	__u8 addr[16];      /* the frontend (VIP) */
	__u16 port_be;
	__u16 service_id;
};

/* LB_NAT_CT: what the tc-level load balancer (lb_tc.c) remembers per
 * connection, keyed by struct ct_key of the client's veth. With direction
 * DIR_EGRESS the key is the client's tuple towards the frontend and the value
 * holds the chosen backend; with DIR_INGRESS the key is the client's tuple
 * towards that backend and the value holds the frontend, so replies are
 * translated back. */
struct lb_nat_entry {
	__u64 expires_ns;   /* ktime after which the entry counts as gone */
	__u8 addr[16];      /* backend (egress) or frontend (ingress) */
	__u16 port_be;
	__u16 service_id;
	__u32 backend_id;   /* LB_BACKENDS key of the chosen backend */
	__u32 flags;        /* LB_NAT_F_* */
	__u32 pad0;
};

/* lb_nat_entry.flags: the connection saw a FIN or RST; its entry is not
 * extended any more. */
#define LB_NAT_F_CLOSING (1 << 0)

/* The same sizes are asserted on the Rust side (ebpf_events::abi). */
_Static_assert(sizeof(struct event_header) == 40, "event_header layout");
_Static_assert(sizeof(struct trace_event) == 168, "trace_event layout");
_Static_assert(sizeof(struct drop_event) == 168, "drop_event layout");
_Static_assert(sizeof(struct policy_verdict_info) == 16, "verdict layout");
_Static_assert(sizeof(struct policy_verdict_event) == 184, "verdict layout");
_Static_assert(sizeof(struct ipcache_key) == 24, "ipcache_key layout");
_Static_assert(sizeof(struct ipcache_value) == 16, "ipcache_value layout");
_Static_assert(sizeof(struct endpoint_info) == 28, "endpoint_info layout");
_Static_assert(sizeof(struct policy_key) == 12, "policy_key layout");
_Static_assert(sizeof(struct policy_value) == 8, "policy_value layout");
_Static_assert(sizeof(struct ct_key) == 44, "ct_key layout");
_Static_assert(sizeof(struct ct_entry) == 16, "ct_entry layout");
_Static_assert(sizeof(struct datapath_config) == 16, "config layout");
_Static_assert(sizeof(struct trace_sock_info) == 24, "trace_sock_info layout");
_Static_assert(sizeof(struct trace_sock_event) == 80, "trace_sock_event layout");
_Static_assert(sizeof(struct lb_service_key) == 24, "lb_service_key layout");
_Static_assert(sizeof(struct lb_service_value) == 12, "lb_service_value layout");
_Static_assert(sizeof(struct lb_backend) == 20, "lb_backend layout");
_Static_assert(sizeof(struct lb_revnat_key) == 32, "lb_revnat_key layout");
_Static_assert(sizeof(struct lb_revnat_value) == 20, "lb_revnat_value layout");
_Static_assert(sizeof(struct lb_nat_entry) == 40, "lb_nat_entry layout");

#endif /* HUBBLE_RS_EVENTS_H */
