// SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0)
/*
 * tc-level service translation, as Cilium's per-packet load balancer in
 * bpf_lxc does it, for traffic the socket programs (sock.c) do not see: a
 * process outside the cgroups below --cgroup-root, or an agent without it.
 *
 *   from_container: a TCP or UDP packet to a frontend (LB_SERVICES slot 0)
 *                   is DNATed to a backend. The choice is made once per
 *                   connection and remembered in LB_NAT_CT (client tuple
 *                   towards the frontend -> backend), so every packet of the
 *                   connection goes to the same backend; a second entry
 *                   (client tuple towards the backend -> frontend) serves
 *                   the replies. Before the rewrite the packet is reported
 *                   as from-endpoint (Cilium traces TRACE_FROM_LXC before its
 *                   service lookup), so Hubble shows the frontend with its
 *                   service; policy, conntrack and later events then see the
 *                   backend.
 *   to_container:   a reply from a translated connection's backend gets the
 *                   frontend back as its source (after the trace, which shows
 *                   the backend as Cilium's orig_ip makes Hubble show it).
 *
 * Sockets the socket programs translated already talk to a backend, never
 * to a frontend, so nothing is translated twice; their replies have no
 * LB_NAT_CT entry. ICMP errors about translated connections are not
 * rewritten.
 *
 * Included by datapath.c after its conntrack and event helpers.
 */

#include "lb_maps.h"

#define TCP_FLAG_ACK 0x10

/* Offsets of the checksum in the TCP and UDP headers. */
#define LB_TCP_CSUM_OFF 16
#define LB_UDP_CSUM_OFF 6

/* lb_tc_xlate_fwd's working space, off the stack (the tc programs' stack is
 * nearly full). */
struct lb_tc_scratch {
	struct ct_key k;
	struct lb_service_key key;
	struct lb_nat_entry entry;
	struct lb_nat_entry rev;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct lb_tc_scratch);
} LB_TC_SCRATCH SEC(".maps");

/* What lb_tc_xlate_fwd did to a packet. */
struct lb_tc_result {
	__u8 translated; /* destination rewritten to a backend */
};

/* The flow key the seeded choice hashes: source port above, the source
 * address folded into 32 bits below (abi::lb::seeded_tc_slot). */
static __always_inline __u64 lb_tc_flow_key(const struct packet_info *p)
{
	__u32 w0, w1, w2, w3;

	__builtin_memcpy(&w0, p->saddr, 4);
	__builtin_memcpy(&w1, p->saddr + 4, 4);
	__builtin_memcpy(&w2, p->saddr + 8, 4);
	__builtin_memcpy(&w3, p->saddr + 12, 4);
	return ((__u64)bpf_ntohs(p->sport_be) << 32) | (w0 ^ w1 ^ w2 ^ w3);
}

/* Slot 1..count for a new connection: random, or hash(seed, flow key). */
static __always_inline __u16 lb_tc_select_slot(const struct datapath_config *cfg,
					       const struct packet_info *p,
					       __u16 count)
{
	__u64 r;

	if (cfg->lb_seed)
		r = lb_mix(((__u64)cfg->lb_seed << 32) ^ lb_tc_flow_key(p));
	else
		r = bpf_get_prandom_u32();
	return (__u16)(r % count) + 1;
}

/* Conntrack's lifetimes: a connection that only sent a SYN (one a policy
 * may drop) is kept as long as an opening one, any later packet extends it
 * to an established one's, FIN or RST shortens it to a closing one's. */
static __always_inline __u64 lb_tc_timeout(const struct packet_info *p)
{
	if (p->tcp_flags & (TCP_FLAG_FIN | TCP_FLAG_RST))
		return CT_TIMEOUT_CLOSING;
	if (p->protocol != IPPROTO_TCP)
		return CT_TIMEOUT_NON_TCP;
	if ((p->tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == TCP_FLAG_SYN)
		return CT_TIMEOUT_TCP_OPENING;
	return CT_TIMEOUT_TCP_ESTABLISHED;
}

/* Extends a live entry's lifetime (when it gains more than a second), or
 * shortens it at once when the connection closes; a closing entry is not
 * extended again (the last ACKs of a close would otherwise make it an
 * established one). */
static __always_inline void lb_tc_refresh(struct lb_nat_entry *e,
					  const struct packet_info *p, __u64 now)
{
	__u64 expires = now + lb_tc_timeout(p);

	if (p->tcp_flags & (TCP_FLAG_FIN | TCP_FLAG_RST)) {
		if (!(e->flags & LB_NAT_F_CLOSING)) {
			e->flags |= LB_NAT_F_CLOSING;
			e->expires_ns = expires;
		}
	} else if (!(e->flags & LB_NAT_F_CLOSING) &&
		   expires > e->expires_ns + NSEC_PER_SEC) {
		e->expires_ns = expires;
	}
}

/* Rewrites the packet's destination (or, with `source`, its source) address
 * and port from old_* to new_*, fixing the IPv4 header checksum and the L4
 * checksum (its pseudo header included). */
static __always_inline int lb_tc_rewrite(struct __sk_buff *skb,
					 const struct packet_info *p, int source,
					 const __u8 *old_addr, __u16 old_port_be,
					 const __u8 *new_addr, __u16 new_port_be)
{
	__u32 csum_off = p->l4_off + (p->protocol == IPPROTO_TCP
					      ? LB_TCP_CSUM_OFF : LB_UDP_CSUM_OFF);
	__u32 port_off = p->l4_off + (source ? 0 : 2);
	/* A UDP checksum of 0 (IPv4: none) stays 0. */
	__u64 mangled = p->protocol == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0;

	if (p->family == IPCACHE_FAMILY_IPV4) {
		__u32 addr_off = ETH_HLEN + (source ? __builtin_offsetof(struct iphdr, saddr)
						   : __builtin_offsetof(struct iphdr, daddr));
		__be32 old_ip, new_ip;

		__builtin_memcpy(&old_ip, old_addr, 4);
		__builtin_memcpy(&new_ip, new_addr, 4);
		if (bpf_l4_csum_replace(skb, csum_off, old_ip, new_ip,
					mangled | BPF_F_PSEUDO_HDR | 4) < 0)
			return -1;
		if (bpf_l3_csum_replace(skb, ETH_HLEN + __builtin_offsetof(struct iphdr, check),
					old_ip, new_ip, 4) < 0)
			return -1;
		if (bpf_skb_store_bytes(skb, addr_off, &new_ip, 4, 0) < 0)
			return -1;
	} else {
		__u32 addr_off = ETH_HLEN + (source ? __builtin_offsetof(struct ipv6hdr, saddr)
						   : __builtin_offsetof(struct ipv6hdr, daddr));
		__s64 diff;

		diff = bpf_csum_diff((__be32 *)old_addr, 16, (__be32 *)new_addr,
				     16, 0);
		if (diff < 0)
			return -1;
		if (bpf_l4_csum_replace(skb, csum_off, 0, diff,
					mangled | BPF_F_PSEUDO_HDR) < 0)
			return -1;
		if (bpf_skb_store_bytes(skb, addr_off, new_addr, 16, 0) < 0)
			return -1;
	}
	if (old_port_be != new_port_be) {
		if (bpf_l4_csum_replace(skb, csum_off, old_port_be, new_port_be,
					mangled | 2) < 0)
			return -1;
		if (bpf_skb_store_bytes(skb, port_off, &new_port_be, 2, 0) < 0)
			return -1;
	}
	return 0;
}

/* The backend of a remembered connection, or 0 when a new choice is due:
 * the entry expired, or a connection opens (pure SYN on a re-used port)
 * while its backend is gone or no longer active. */
static __always_inline struct lb_nat_entry *
lb_tc_remembered(const struct ct_key *k, const struct packet_info *p, __u64 now)
{
	struct lb_nat_entry *e = bpf_map_lookup_elem(&LB_NAT_CT, k);
	struct lb_backend *b;

	if (!e)
		return 0;
	if (e->expires_ns < now)
		return 0;
	if ((p->tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == TCP_FLAG_SYN) {
		b = bpf_map_lookup_elem(&LB_BACKENDS, &e->backend_id);
		if (!b || b->state != LB_BACKEND_ACTIVE)
			return 0;
	}
	return e;
}

/* Forward translation at from_container. Returns 0 (translated or not a
 * frontend, see r) or a drop reason. On translation p describes the packet
 * as rewritten (backend address and port). */
static __always_inline int lb_tc_xlate_fwd(struct __sk_buff *skb,
					   const struct datapath_config *cfg,
					   const struct endpoint_info *ep,
					   struct packet_info *p,
					   struct lb_tc_result *r)
{
	struct lb_service_value *svc, *slot;
	struct lb_backend *backend;
	struct lb_nat_entry *fwd, *rev_e;
	struct lb_tc_scratch *w;
	__u32 ifindex = skb->ifindex;
	__u32 zero = 0;
	__u8 fresh = 0;
	__u64 now;

	if (p->protocol != IPPROTO_TCP && p->protocol != IPPROTO_UDP)
		return 0;
	if (p->non_first_fragment)
		return 0;
	w = bpf_map_lookup_elem(&LB_TC_SCRATCH, &zero);
	if (!w)
		return 0;
	/* Every field is written below; the scratch keeps the last packet's
	 * values otherwise. */
	__builtin_memcpy(w->key.addr, p->daddr, 16);
	w->key.dport_be = p->dport_be;
	w->key.slot = 0;
	w->key.protocol = p->protocol;
	w->key.family = p->family;
	w->key.pad0 = 0;
	svc = bpf_map_lookup_elem(&LB_SERVICES, &w->key);
	if (!svc)
		return 0;

	now = bpf_ktime_get_ns();
	ct_fill_key(&w->k, p->saddr, p->daddr, p->sport_be, p->dport_be,
		    p->protocol, DIR_EGRESS, p->family, ifindex);
	fwd = lb_tc_remembered(&w->k, p, now);
	if (fwd) {
		lb_tc_refresh(fwd, p, now);
		w->entry = *fwd;
	} else {
		if (svc->count == 0)
			return DROP_NO_SERVICE;
		w->key.slot = lb_tc_select_slot(cfg, p, svc->count);
		slot = bpf_map_lookup_elem(&LB_SERVICES, &w->key);
		if (!slot)
			return DROP_NO_SERVICE;
		backend = bpf_map_lookup_elem(&LB_BACKENDS, &slot->backend_id);
		if (!backend || backend->family != p->family)
			return DROP_NO_SERVICE;
		w->entry.expires_ns = now + lb_tc_timeout(p);
		__builtin_memcpy(w->entry.addr, backend->addr, 16);
		w->entry.port_be = backend->port_be;
		w->entry.service_id = svc->service_id;
		w->entry.backend_id = slot->backend_id;
		w->entry.flags = p->tcp_flags & (TCP_FLAG_FIN | TCP_FLAG_RST)
					 ? LB_NAT_F_CLOSING : 0;
		w->entry.pad0 = 0;
		if (bpf_map_update_elem(&LB_NAT_CT, &w->k, &w->entry, BPF_ANY) < 0)
			return DROP_NO_SERVICE;
		fresh = 1;
	}

	/* The reply side: the client's tuple towards the backend. */
	ct_fill_key(&w->k, p->saddr, w->entry.addr, p->sport_be, w->entry.port_be,
		    p->protocol, DIR_INGRESS, p->family, ifindex);
	rev_e = fresh ? 0 : bpf_map_lookup_elem(&LB_NAT_CT, &w->k);
	if (rev_e) {
		lb_tc_refresh(rev_e, p, now);
	} else {
		w->rev.expires_ns = w->entry.expires_ns;
		__builtin_memcpy(w->rev.addr, p->daddr, 16);
		w->rev.port_be = p->dport_be;
		w->rev.service_id = w->entry.service_id;
		w->rev.backend_id = w->entry.backend_id;
		w->rev.flags = w->entry.flags;
		w->rev.pad0 = 0;
		bpf_map_update_elem(&LB_NAT_CT, &w->k, &w->rev, BPF_ANY);
	}

	if (cfg->events_enabled &&
	    (cfg->monitor_aggregation < MONITOR_AGGREGATION_MEDIUM || fresh ||
	     (p->tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_FIN | TCP_FLAG_RST)))) {
		struct event_meta pre = {
			.source = ep->endpoint_id,
			.src_identity = ep->identity,
			.dst_identity = IDENTITY_WORLD,
			.flags = p->family == IPCACHE_FAMILY_IPV6 ? EVENT_FLAG_IPV6 : 0,
		};

		emit_trace(skb, cfg, TRACE_FROM_LXC, &pre);
	}

	if (lb_tc_rewrite(skb, p, 0, p->daddr, p->dport_be, w->entry.addr,
			  w->entry.port_be) < 0)
		return DROP_INVALID_PACKET;
	__builtin_memcpy(p->daddr, w->entry.addr, 16);
	p->dport_be = w->entry.port_be;
	p->policy_dport = bpf_ntohs(w->entry.port_be);
	r->translated = 1;
	return 0;
}

/* Reverse translation at to_container, after the packet was accepted and
 * traced: a reply from a translated connection's backend gets the frontend
 * as its source. */
static __always_inline void lb_tc_xlate_rev(struct __sk_buff *skb,
					    const struct packet_info *p)
{
	struct lb_nat_entry *e;
	struct ct_key k;
	__u64 now;

	if (p->protocol != IPPROTO_TCP && p->protocol != IPPROTO_UDP)
		return;
	if (p->family == 0 || p->non_first_fragment)
		return;
	ct_fill_key(&k, p->daddr, p->saddr, p->dport_be, p->sport_be,
		    p->protocol, DIR_INGRESS, p->family, skb->ifindex);
	e = bpf_map_lookup_elem(&LB_NAT_CT, &k);
	if (!e)
		return;
	now = bpf_ktime_get_ns();
	if (e->expires_ns < now)
		return;
	lb_tc_refresh(e, p, now);
	lb_tc_rewrite(skb, p, 1, p->saddr, p->sport_be, e->addr, e->port_be);
}
