// SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0)
/*
 * L7 redirect: steering connections to the agent's transparent proxy.
 *
 * Included by datapath.c after its parsing, conntrack and policy helpers.
 *
 * A policy allow entry may carry a proxy port. A new connection decided by
 * such an entry is handed to the proxy's listener in the node's network
 * namespace by socket assignment (bpf_sk_assign), which only works at a tc
 * INGRESS hook; the packet keeps its addresses, so the accepted socket's
 * local address is the original destination. skb->mark = MARK_MAGIC_TO_PROXY
 * makes the agent's routing rule deliver it locally. Where:
 *
 *   - from_container (host veth ingress of a local client): egress entries
 *     of the client, then ingress entries of a local destination endpoint;
 *   - from_netdev (ingress of the node's uplink devices): ingress entries of
 *     a local destination endpoint for traffic from other nodes.
 *
 * Every redirected connection gets a CT_SCOPE_PROXY conntrack entry keyed
 * by the redirecting interface (direction 0) holding the proxy port, so its
 * later packets follow without a policy lookup.
 *
 * The proxy's own connection to the backend carries MARK_MAGIC_PROXY_INGRESS
 * (or _EGRESS) and the original client's identity in its socket mark;
 * to_container takes that identity instead of the ipcache's, never
 * redirects it again and, for the ingress proxy (which already enforced the
 * policy), skips the policy lookup. Its conntrack entry is flagged
 * CT_F_FROM_PROXY: the backend's replies (addressed to the client, whose
 * address the proxy's upstream socket binds transparently) are marked at
 * the backend's from_container so that they reach the proxy's socket.
 */

#define TCP_FLAG_ACK 0x10

/* proxy_* results besides a TC_ACT_* verdict. */
#define PROXY_PASS (-1)

/* The client identity a proxy socket's mark carries, 0 for other marks. */
static __always_inline __u32 proxy_mark_identity(__u32 mark, __u8 *ingress)
{
	__u32 magic = mark & MARK_MAGIC_HOST_MASK;

	if (magic != MARK_MAGIC_PROXY_INGRESS && magic != MARK_MAGIC_PROXY_EGRESS)
		return 0;
	*ingress = magic == MARK_MAGIC_PROXY_INGRESS;
	return (mark >> 16) | ((mark & 0xFF) << 16);
}

/* Whether a packet may open a redirect: a TCP SYN or any UDP datagram.
 * Other TCP packets without a redirect entry are mid-stream (or replies)
 * and are left to the endpoint programs. */
static __always_inline int proxy_may_open(const struct packet_info *p)
{
	if (p->protocol == IPPROTO_UDP)
		return 1;
	return p->protocol == IPPROTO_TCP &&
	       (p->tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == TCP_FLAG_SYN;
}

static __always_inline void proxy_ct_key(struct ct_key *k,
					 const struct packet_info *p,
					 __u32 ifindex)
{
	ct_fill_key(k, p->saddr, p->daddr, p->sport_be, p->dport_be,
		    p->protocol, 0, p->family, ifindex);
	k->scope = CT_SCOPE_PROXY;
}

/* The proxy port of a redirected connection (0 when not redirected) and
 * whether the redirect serves egress policy. */
static __always_inline __u16 proxy_ct_lookup(const struct packet_info *p,
					     __u32 ifindex, __u64 now,
					     __u8 *egress)
{
	struct ct_key k;
	struct ct_entry *e;

	proxy_ct_key(&k, p, ifindex);
	e = ct_lookup(&k, p, now, 0);
	if (!e)
		return 0;
	*egress = (e->flags & CT_F_REDIRECT_EGRESS) != 0;
	return e->flags >> CT_F_PROXY_PORT_SHIFT;
}

static __always_inline void proxy_ct_create(const struct packet_info *p,
					    __u32 ifindex, __u64 now,
					    __u32 remote_identity,
					    __u16 proxy_port, __u8 egress)
{
	struct ct_key k;
	struct ct_entry entry = {};

	proxy_ct_key(&k, p, ifindex);
	/* Nothing answers on this path (replies leave from the proxy's
	 * socket): counted as answered so it lives as long as the
	 * connection. */
	entry.flags = ((__u32)proxy_port << CT_F_PROXY_PORT_SHIFT) |
		      CT_F_SEEN_REPLY;
	if (egress)
		entry.flags |= CT_F_REDIRECT_EGRESS;
	entry.expires_ns = now + ct_timeout(p, entry.flags);
	entry.remote_identity = remote_identity;
	bpf_map_update_elem(&CT, &k, &entry, BPF_ANY);
}

/* Assigns the packet to the proxy: the connection's own socket when the
 * proxy already accepted it, else the listener on proxy_port (TCP), or the
 * socket bound to proxy_port (UDP). Returns 0 or a drop reason. */
static __always_inline int proxy_assign(struct __sk_buff *skb,
					const struct packet_info *p,
					__u16 proxy_port)
{
	struct bpf_sock_tuple tuple = {};
	struct bpf_sock *sk;
	__u32 len;
	long ret;

	if (p->family == IPCACHE_FAMILY_IPV4) {
		__builtin_memcpy(&tuple.ipv4.saddr, p->saddr, 4);
		__builtin_memcpy(&tuple.ipv4.daddr, p->daddr, 4);
		tuple.ipv4.sport = p->sport_be;
		tuple.ipv4.dport = p->dport_be;
		len = sizeof(tuple.ipv4);
	} else {
		__builtin_memcpy(tuple.ipv6.saddr, p->saddr, 16);
		__builtin_memcpy(tuple.ipv6.daddr, p->daddr, 16);
		tuple.ipv6.sport = p->sport_be;
		tuple.ipv6.dport = p->dport_be;
		len = sizeof(tuple.ipv6);
	}

	if (p->protocol == IPPROTO_TCP) {
		sk = (struct bpf_sock *)bpf_skc_lookup_tcp(
			skb, &tuple, len, BPF_F_CURRENT_NETNS, 0);
		if (sk) {
			if (sk->state != BPF_TCP_LISTEN)
				goto assign;
			bpf_sk_release(sk);
		}
		if (p->family == IPCACHE_FAMILY_IPV4)
			tuple.ipv4.dport = bpf_htons(proxy_port);
		else
			tuple.ipv6.dport = bpf_htons(proxy_port);
		sk = (struct bpf_sock *)bpf_skc_lookup_tcp(
			skb, &tuple, len, BPF_F_CURRENT_NETNS, 0);
	} else {
		if (p->family == IPCACHE_FAMILY_IPV4)
			tuple.ipv4.dport = bpf_htons(proxy_port);
		else
			tuple.ipv6.dport = bpf_htons(proxy_port);
		sk = bpf_sk_lookup_udp(skb, &tuple, len, BPF_F_CURRENT_NETNS, 0);
	}
	if (!sk)
		return DROP_SOCKET_LOOKUP_FAILED;
assign:
	ret = bpf_sk_assign(skb, sk, 0);
	bpf_sk_release(sk);
	if (ret != 0)
		return DROP_SOCKET_ASSIGN_FAILED;
	skb->mark = MARK_MAGIC_TO_PROXY | ((__u32)proxy_port << 16);
	return 0;
}

/* Assigns a packet of a redirected connection to the proxy and reports it:
 * a TO_PROXY trace (dst_endpoint carries the proxy port, as Cilium's
 * DstID), or a drop when the proxy is not there (fail closed). */
static __always_inline int proxy_deliver(struct __sk_buff *skb,
					 const struct datapath_config *cfg,
					 const struct packet_info *p,
					 struct event_meta *m, __u8 state,
					 __u16 proxy_port)
{
	int reason = proxy_assign(skb, p, proxy_port);
	__u8 trace;

	if (reason != 0) {
		if (cfg->events_enabled)
			emit_drop(skb, cfg, reason, m);
		return TC_ACT_SHOT;
	}
	if (!cfg->events_enabled)
		return TC_ACT_OK;
	trace = 1;
	if (cfg->monitor_aggregation >= MONITOR_AGGREGATION_MEDIUM)
		trace = state == CT_STATE_NEW ||
			(p->tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_FIN | TCP_FLAG_RST));
	if (trace) {
		struct event_meta tm = *m;

		tm.dst_endpoint = proxy_port;
		emit_trace(skb, cfg, TRACE_TO_PROXY, &tm);
	}
	return TC_ACT_OK;
}

/* Event fields of an ingress redirect for local endpoint `dst`: reported
 * as seen by the destination endpoint (its id, into it). */
static __always_inline void proxy_ingress_meta(struct event_meta *m,
					       const struct packet_info *p,
					       const struct ipcache_value *dst,
					       __u32 src_identity, __u8 state)
{
	m->source = dst->endpoint_id;
	m->dst_endpoint = dst->endpoint_id;
	m->src_identity = src_identity;
	m->dst_identity = dst->identity;
	m->reason = state;
	m->flags = EVENT_FLAG_TO_ENDPOINT;
	if (p->family == IPCACHE_FAMILY_IPV6)
		m->flags |= EVENT_FLAG_IPV6;
}

/* Looks up the ingress policy of local endpoint `dst` for a new connection
 * from `src_identity`; returns its proxy port when the connection is
 * allowed with a redirect (and reports the REDIRECTED verdict), else 0. */
static __always_inline __u16
proxy_ingress_port(struct __sk_buff *skb, const struct datapath_config *cfg,
		   const struct packet_info *p, struct event_meta *m,
		   __u32 src_identity, const struct ipcache_value *dst)
{
	struct policy_result r = {};
	struct policy_verdict_info v = {};

	policy_lookup(dst->identity, src_identity, p->policy_dport, p->protocol,
		      DIR_INGRESS, &r);
	if (r.match_type == POLICY_MATCH_NONE || r.deny || r.proxy_port == 0)
		return 0;
	if (cfg->events_enabled) {
		v.remote_identity = src_identity;
		v.cookie = r.cookie;
		v.dport = p->policy_dport;
		v.protocol = p->protocol;
		v.direction = DIR_INGRESS;
		v.match_type = r.match_type;
		v.action = POLICY_ACTION_REDIRECTED;
		v.proxy_port = r.proxy_port;
		emit_verdict(skb, cfg, m, &v);
	}
	return r.proxy_port;
}

/* from_container, after the client's own egress policy allowed a new or
 * established packet: redirects it when its egress entry (`egress_port`,
 * new connections only) or the ingress policy of a local destination asks
 * for the proxy. Returns PROXY_PASS when the packet is not redirected. */
static __always_inline int
proxy_from_endpoint(struct __sk_buff *skb, const struct datapath_config *cfg,
		    const struct packet_info *p, const struct event_meta *meta,
		    const struct endpoint_info *ep,
		    const struct ipcache_value *remote, __u8 state,
		    __u16 egress_port, __u64 now)
{
	struct event_meta m = *meta;
	__u32 ifindex = skb->ifindex;
	__u16 port;
	__u8 egress = 0;

	if (p->protocol != IPPROTO_TCP && p->protocol != IPPROTO_UDP)
		return PROXY_PASS;
	port = proxy_ct_lookup(p, ifindex, now, &egress);
	if (port) {
		if (!egress && remote)
			proxy_ingress_meta(&m, p, remote, ep->identity,
					   CT_STATE_ESTABLISHED);
		else
			m.reason = CT_STATE_ESTABLISHED;
		return proxy_deliver(skb, cfg, p, &m, CT_STATE_ESTABLISHED, port);
	}
	if (state != CT_STATE_NEW || !proxy_may_open(p))
		return PROXY_PASS;
	if (egress_port) {
		port = egress_port;
		egress = 1;
	} else if (remote && (remote->flags & IPCACHE_FLAG_LOCAL_ENDPOINT)) {
		proxy_ingress_meta(&m, p, remote, ep->identity, CT_STATE_NEW);
		port = proxy_ingress_port(skb, cfg, p, &m, ep->identity, remote);
		if (!port)
			return PROXY_PASS;
	} else {
		return PROXY_PASS;
	}
	proxy_ct_create(p, ifindex, now, ep->identity, port, egress);
	return proxy_deliver(skb, cfg, p, &m, CT_STATE_NEW, port);
}

/* from_container, for a reply: a reply on a connection the ingress proxy
 * opened goes back to the proxy's socket. `ct_flags` are those of the entry
 * ct_classify matched. */
static __always_inline void proxy_steer_reply(struct __sk_buff *skb,
					      __u32 ct_flags)
{
	if (ct_flags & CT_F_FROM_PROXY)
		skb->mark = MARK_MAGIC_TO_PROXY;
}

/* Uplink ingress: connections from other nodes to local endpoints whose
 * ingress policy redirects them. Everything else passes untouched (the
 * endpoint's to_container enforces and reports it). */
SEC("classifier")
int from_netdev(struct __sk_buff *skb)
{
	struct datapath_config defaults = { .events_enabled = 1 };
	struct packet_info p = {};
	struct event_meta m = {};
	struct ipcache_key ck = {};
	const struct datapath_config *cfg;
	struct ipcache_value *dst, *src;
	__u32 zero = 0;
	__u32 src_identity = IDENTITY_WORLD;
	__u64 now;
	__u16 port;
	__u8 egress = 0;

	if (parse_packet(skb, &p) != 0 || p.non_first_fragment)
		return TC_ACT_OK;
	if (p.protocol != IPPROTO_TCP && p.protocol != IPPROTO_UDP)
		return TC_ACT_OK;
	ck.prefixlen = IPCACHE_PREFIX_OFFSET_BITS +
		       (p.family == IPCACHE_FAMILY_IPV4 ? 32 : 128);
	ck.family = p.family;
	__builtin_memcpy(ck.addr, p.daddr, 16);
	dst = bpf_map_lookup_elem(&IPCACHE, &ck);
	if (!dst || !(dst->flags & IPCACHE_FLAG_LOCAL_ENDPOINT))
		return TC_ACT_OK;
	cfg = bpf_map_lookup_elem(&CONFIG, &zero);
	if (!cfg)
		cfg = &defaults;
	__builtin_memcpy(ck.addr, p.saddr, 16);
	src = bpf_map_lookup_elem(&IPCACHE, &ck);
	if (src)
		src_identity = src->identity;

	now = bpf_ktime_get_ns();
	port = proxy_ct_lookup(&p, skb->ifindex, now, &egress);
	if (port) {
		proxy_ingress_meta(&m, &p, dst, src_identity,
				   CT_STATE_ESTABLISHED);
		return proxy_deliver(skb, cfg, &p, &m, CT_STATE_ESTABLISHED,
				     port);
	}
	if (!proxy_may_open(&p))
		return TC_ACT_OK;
	proxy_ingress_meta(&m, &p, dst, src_identity, CT_STATE_NEW);
	port = proxy_ingress_port(skb, cfg, &p, &m, src_identity, dst);
	if (!port)
		return TC_ACT_OK;
	proxy_ct_create(&p, skb->ifindex, now, src_identity, port, 0);
	return proxy_deliver(skb, cfg, &p, &m, CT_STATE_NEW, port);
}
