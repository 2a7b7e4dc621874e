// SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0)
/*
 * tc programs for the host side of each endpoint's veth pair.
 *
 *   from_container: attached to the host veth's INGRESS hook, so it sees
 *                   every packet the endpoint sends (its egress).
 *   to_container:   attached to the host veth's EGRESS hook, so it sees
 *                   every packet delivered into the endpoint (its ingress).
 *
 * Both parse the packet from its linear part, or with bpf_skb_load_bytes
 * where the headers are not in it (non-linear skbs work),
 * resolve identities through IPCACHE, track connections per endpoint and
 * direction in CT, enforce POLICY for new connections and report trace,
 * drop and policy verdict records through the EVENTS ring buffer.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "events.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define IDENTITY_WORLD 2

#define TCP_FLAG_FIN 0x01
#define TCP_FLAG_SYN 0x02
#define TCP_FLAG_RST 0x04

#define NSEC_PER_SEC 1000000000ULL
#define CT_TIMEOUT_TCP_ESTABLISHED (21600ULL * NSEC_PER_SEC)
#define CT_TIMEOUT_TCP_OPENING (60ULL * NSEC_PER_SEC)
#define CT_TIMEOUT_NON_TCP (60ULL * NSEC_PER_SEC)
#define CT_TIMEOUT_CLOSING (10ULL * NSEC_PER_SEC)

/* Headers further into a packet than this are read through the helper. */
#define PKT_DIRECT_MAX_OFF 255

/* Most IPv6 extension headers skipped before giving up. */
#define MAX_IPV6_EXT_HEADERS 6

#define ICMP_ECHOREPLY 0
#define ICMP_DEST_UNREACH 3
#define ICMP_ECHO 8
#define ICMP_TIME_EXCEEDED 11
#define ICMP_PARAMETERPROB 12
#define ICMPV6_DEST_UNREACH 1
#define ICMPV6_PKT_TOOBIG 2
#define ICMPV6_TIME_EXCEED 3
#define ICMPV6_PARAMPROB 4
#define ICMPV6_ECHO_REQUEST 128
#define ICMPV6_ECHO_REPLY 129
#define ICMPV6_ND_FIRST 133 /* router solicitation */
#define ICMPV6_ND_LAST 137  /* redirect */

#define NEXTHDR_HOP 0
#define NEXTHDR_ROUTING 43
#define NEXTHDR_FRAGMENT 44
#define NEXTHDR_AUTH 51
#define NEXTHDR_DEST 60

/* ---------------------------------------------------------------- maps */

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 65536);
	__type(key, struct ipcache_key);
	__type(value, struct ipcache_value);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} IPCACHE SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct endpoint_info);
} ENDPOINTS SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct policy_key);
	__type(value, struct policy_value);
} POLICY SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 131072);
	__type(key, struct ct_key);
	__type(value, struct ct_entry);
} CT SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 * 1024 * 1024);
} EVENTS SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} LOST SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct datapath_config);
} CONFIG SEC(".maps");

/* ------------------------------------------------------------- parsing */

/* What parse_packet learned; addresses and ports as they appear on the
 * wire, so they go into CT keys unchanged. */
struct packet_info {
	__u8 family;
	__u8 protocol;
	__u8 tcp_flags;
	__u8 non_first_fragment;
	__u8 has_related; /* ICMP error quoting a packet: related_* is set */
	__u8 related_protocol;
	__u16 policy_dport; /* host order: L4 port or ICMP type */
	__u16 sport_be;
	__u16 dport_be;
	__u16 related_sport_be;
	__u16 related_dport_be;
	__u16 l4_off; /* offset of the L4 header in the frame */
	__u8 saddr[16];
	__u8 daddr[16];
	__u8 related_saddr[16];
	__u8 related_daddr[16];
};

/* Reads `len` (a constant) bytes at `off` straight from the packet when
 * they are in its linear part, as the headers of most packets are, and
 * through bpf_skb_load_bytes otherwise (a helper call per read). */
static __always_inline int pkt_load(struct __sk_buff *skb, __u32 off,
				    void *dst, __u32 len)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;

	if (off <= PKT_DIRECT_MAX_OFF && data + off + len <= end) {
		__builtin_memcpy(dst, data + off, len);
		return 0;
	}
	return bpf_skb_load_bytes(skb, off, dst, len);
}

/* parse_packet results besides 0 (parsed) and a positive drop reason. */
#define PARSE_PASS_UNTOUCHED (-1)

struct l4_ports {
	__be16 source;
	__be16 dest;
};

struct icmp_head {
	__u8 type;
	__u8 code;
	__u16 checksum;
	__be16 id;
	__be16 seq;
};

/* Reads the ports (or the ICMP echo id) of a packet quoted inside an ICMP
 * error, so the error can be matched to the connection it belongs to. */
static __always_inline int parse_quoted_l4(struct __sk_buff *skb, __u32 off,
					   __u8 protocol, __u8 echo_request,
					   __u8 echo_reply, struct packet_info *p)
{
	if (protocol == IPPROTO_TCP || protocol == IPPROTO_UDP) {
		struct l4_ports ports;

		if (pkt_load(skb, off, &ports, sizeof(ports)) < 0)
			return -1;
		p->related_sport_be = ports.source;
		p->related_dport_be = ports.dest;
	} else if (protocol == IPPROTO_ICMP || protocol == IPPROTO_ICMPV6) {
		struct icmp_head icmp;

		if (pkt_load(skb, off, &icmp, sizeof(icmp)) < 0)
			return -1;
		if (icmp.type == echo_request) {
			p->related_sport_be = icmp.id;
			p->related_dport_be = 0;
		} else if (icmp.type == echo_reply) {
			p->related_sport_be = 0;
			p->related_dport_be = icmp.id;
		} else {
			return -1;
		}
	} else {
		return -1;
	}
	p->related_protocol = protocol;
	p->has_related = 1;
	return 0;
}

static __always_inline void parse_quoted_ipv4(struct __sk_buff *skb, __u32 off,
					      struct packet_info *p)
{
	struct iphdr inner;

	if (pkt_load(skb, off, &inner, sizeof(inner)) < 0)
		return;
	if (inner.version != 4 || inner.ihl < 5)
		return;
	__builtin_memcpy(p->related_saddr, &inner.saddr, 4);
	__builtin_memcpy(p->related_daddr, &inner.daddr, 4);
	parse_quoted_l4(skb, off + inner.ihl * 4, inner.protocol, ICMP_ECHO,
			ICMP_ECHOREPLY, p);
}

static __always_inline void parse_quoted_ipv6(struct __sk_buff *skb, __u32 off,
					      struct packet_info *p)
{
	struct ipv6hdr inner;

	if (pkt_load(skb, off, &inner, sizeof(inner)) < 0)
		return;
	__builtin_memcpy(p->related_saddr, &inner.saddr, 16);
	__builtin_memcpy(p->related_daddr, &inner.daddr, 16);
	parse_quoted_l4(skb, off + sizeof(inner), inner.nexthdr,
			ICMPV6_ECHO_REQUEST, ICMPV6_ECHO_REPLY, p);
}

static __always_inline int parse_l4(struct __sk_buff *skb, __u32 off,
				    struct packet_info *p)
{
	p->l4_off = off;
	if (p->non_first_fragment)
		return 0;

	if (p->protocol == IPPROTO_TCP) {
		__u8 head[14];

		/* The fixed TCP header must be present in full. */
		if (off + 20 > skb->len)
			return DROP_CT_INVALID_HEADER;
		if (pkt_load(skb, off, head, sizeof(head)) < 0)
			return DROP_CT_INVALID_HEADER;
		__builtin_memcpy(&p->sport_be, &head[0], 2);
		__builtin_memcpy(&p->dport_be, &head[2], 2);
		p->tcp_flags = head[13];
		p->policy_dport = bpf_ntohs(p->dport_be);
	} else if (p->protocol == IPPROTO_UDP) {
		struct l4_ports ports;

		if (off + 8 > skb->len)
			return DROP_CT_INVALID_HEADER;
		if (pkt_load(skb, off, &ports, sizeof(ports)) < 0)
			return DROP_CT_INVALID_HEADER;
		p->sport_be = ports.source;
		p->dport_be = ports.dest;
		p->policy_dport = bpf_ntohs(ports.dest);
	} else if (p->protocol == IPPROTO_ICMP && p->family == IPCACHE_FAMILY_IPV4) {
		struct icmp_head icmp;

		if (pkt_load(skb, off, &icmp, sizeof(icmp)) < 0)
			return DROP_CT_INVALID_HEADER;
		p->policy_dport = icmp.type;
		if (icmp.type == ICMP_ECHO) {
			p->sport_be = icmp.id;
		} else if (icmp.type == ICMP_ECHOREPLY) {
			p->dport_be = icmp.id;
		} else if (icmp.type == ICMP_DEST_UNREACH ||
			   icmp.type == ICMP_TIME_EXCEEDED ||
			   icmp.type == ICMP_PARAMETERPROB) {
			parse_quoted_ipv4(skb, off + sizeof(icmp), p);
		}
	} else if (p->protocol == IPPROTO_ICMPV6 && p->family == IPCACHE_FAMILY_IPV6) {
		struct icmp_head icmp;

		if (pkt_load(skb, off, &icmp, sizeof(icmp)) < 0)
			return DROP_CT_INVALID_HEADER;
		/* Neighbour discovery is link plumbing, like ARP. */
		if (icmp.type >= ICMPV6_ND_FIRST && icmp.type <= ICMPV6_ND_LAST)
			return PARSE_PASS_UNTOUCHED;
		p->policy_dport = icmp.type;
		if (icmp.type == ICMPV6_ECHO_REQUEST) {
			p->sport_be = icmp.id;
		} else if (icmp.type == ICMPV6_ECHO_REPLY) {
			p->dport_be = icmp.id;
		} else if (icmp.type >= ICMPV6_DEST_UNREACH &&
			   icmp.type <= ICMPV6_PARAMPROB) {
			parse_quoted_ipv6(skb, off + sizeof(icmp), p);
		}
	}
	/* Other protocols carry no ports: policy can still match L3-only or
	 * wildcard entries. */
	return 0;
}

static __always_inline int parse_ipv4(struct __sk_buff *skb,
				      struct packet_info *p)
{
	struct iphdr ip;
	__u32 hdr_len;

	if (pkt_load(skb, ETH_HLEN, &ip, sizeof(ip)) < 0)
		return DROP_INVALID_PACKET;
	if (ip.version != 4 || ip.ihl < 5)
		return DROP_INVALID_PACKET;
	hdr_len = ip.ihl * 4;
	if (bpf_ntohs(ip.tot_len) < hdr_len ||
	    ETH_HLEN + bpf_ntohs(ip.tot_len) > skb->len)
		return DROP_INVALID_PACKET;

	p->family = IPCACHE_FAMILY_IPV4;
	p->protocol = ip.protocol;
	p->non_first_fragment = (bpf_ntohs(ip.frag_off) & 0x1fff) != 0;
	__builtin_memcpy(p->saddr, &ip.saddr, 4);
	__builtin_memcpy(p->daddr, &ip.daddr, 4);
	return parse_l4(skb, ETH_HLEN + hdr_len, p);
}

struct ipv6_ext_head {
	__u8 nexthdr;
	__u8 hdrlen;
	__be16 frag_off; /* only meaningful for the fragment header */
};

static __always_inline int parse_ipv6(struct __sk_buff *skb,
				      struct packet_info *p)
{
	struct ipv6hdr ip;
	__u32 off = ETH_HLEN + sizeof(ip);
	__u8 nexthdr;
	int i;

	if (pkt_load(skb, ETH_HLEN, &ip, sizeof(ip)) < 0)
		return DROP_INVALID_PACKET;
	if (ip.version != 6)
		return DROP_INVALID_PACKET;
	if (off + bpf_ntohs(ip.payload_len) > skb->len)
		return DROP_INVALID_PACKET;

	p->family = IPCACHE_FAMILY_IPV6;
	__builtin_memcpy(p->saddr, &ip.saddr, 16);
	__builtin_memcpy(p->daddr, &ip.daddr, 16);

	nexthdr = ip.nexthdr;
	for (i = 0; i < MAX_IPV6_EXT_HEADERS; i++) {
		struct ipv6_ext_head ext;

		if (nexthdr != NEXTHDR_HOP && nexthdr != NEXTHDR_ROUTING &&
		    nexthdr != NEXTHDR_FRAGMENT && nexthdr != NEXTHDR_AUTH &&
		    nexthdr != NEXTHDR_DEST)
			break;
		if (pkt_load(skb, off, &ext, sizeof(ext)) < 0)
			return DROP_INVALID_IPV6_EXTENSION_HEADER;
		if (nexthdr == NEXTHDR_FRAGMENT) {
			if (bpf_ntohs(ext.frag_off) & 0xfff8)
				p->non_first_fragment = 1;
			off += 8;
		} else if (nexthdr == NEXTHDR_AUTH) {
			off += ((__u32)ext.hdrlen + 2) * 4;
		} else {
			off += ((__u32)ext.hdrlen + 1) * 8;
		}
		nexthdr = ext.nexthdr;
	}
	if (nexthdr == NEXTHDR_HOP || nexthdr == NEXTHDR_ROUTING ||
	    nexthdr == NEXTHDR_FRAGMENT || nexthdr == NEXTHDR_AUTH ||
	    nexthdr == NEXTHDR_DEST)
		return DROP_INVALID_IPV6_EXTENSION_HEADER;

	p->protocol = nexthdr;
	return parse_l4(skb, off, p);
}

/* Returns 0 when parsed, PARSE_PASS_UNTOUCHED for traffic the datapath
 * leaves alone (ARP, other non-IP frames, neighbour discovery), or a drop
 * reason for a malformed packet. */
static __always_inline int parse_packet(struct __sk_buff *skb,
					struct packet_info *p)
{
	__be16 proto;

	if (pkt_load(skb, 12, &proto, sizeof(proto)) < 0)
		return DROP_INVALID_PACKET;
	if (proto == bpf_htons(ETH_P_IP))
		return parse_ipv4(skb, p);
	if (proto == bpf_htons(ETH_P_IPV6))
		return parse_ipv6(skb, p);
	return PARSE_PASS_UNTOUCHED;
}

/* -------------------------------------------------------------- events */

/* Everything an event header needs besides the skb. */
struct event_meta {
	__u16 source;
	__u16 dst_endpoint;
	__u32 src_identity;
	__u32 dst_identity;
	__u8 reason;
	__u8 flags;
	/* When the program started handling the packet; 0: read the clock
	 * when the event is written. */
	__u64 ktime_ns;
};

static __always_inline void count_lost(void)
{
	__u32 zero = 0;
	__u64 *lost = bpf_map_lookup_elem(&LOST, &zero);

	if (lost)
		*lost += 1;
}

static __always_inline void fill_header(struct event_header *h,
					struct __sk_buff *skb, __u8 type,
					__u8 subtype,
					const struct event_meta *m)
{
	h->type = type;
	h->subtype = subtype;
	h->source = m->source;
	h->ifindex = skb->ifindex;
	h->ktime_ns = m->ktime_ns ? m->ktime_ns : bpf_ktime_get_ns();
	h->orig_len = skb->len;
	h->cap_len = 0;
	h->dst_endpoint = m->dst_endpoint;
	h->src_identity = m->src_identity;
	h->dst_identity = m->dst_identity;
	h->reason = m->reason;
	h->flags = m->flags;
	h->version = EVENT_ABI_VERSION;
	h->pad0 = 0;
	h->cpu = bpf_get_smp_processor_id();
}

/* Copies the first bytes of the frame; returns how many were copied. */
static __always_inline __u16 copy_packet(struct __sk_buff *skb, __u8 *dst)
{
	__u32 len = skb->len;

	if (len > EVENT_PACKET_CAP)
		len = EVENT_PACKET_CAP;
	if (len == 0)
		return 0;
	if (bpf_skb_load_bytes(skb, 0, dst, len) < 0)
		return 0;
	return len;
}

/* Commits a record of `size` bytes. The reader is woken by the record that
 * brings the backlog to wakeup_bytes, not by every record after it: each
 * wake-up is an interrupt on this CPU, and a woken reader drains everything
 * before it sleeps again. Records reserved at once on two CPUs can step over
 * the mark together; the reader's poll interval covers that. A wakeup_bytes of
 * 0 wakes it for every record. */
static __always_inline void submit_event(void *event, __u64 size,
					 const struct datapath_config *cfg)
{
	__u64 backlog = bpf_ringbuf_query(&EVENTS, BPF_RB_AVAIL_DATA);
	__u64 mark = cfg->wakeup_bytes;
	/* The ring's length of this record: an 8-byte header, 8-byte aligned. */
	__u64 len = (size + 8 + 7) & ~7ULL;
	__u64 before = backlog > len ? backlog - len : 0;

	if (mark == 0 || (backlog >= mark && before < mark))
		bpf_ringbuf_submit(event, BPF_RB_FORCE_WAKEUP);
	else
		bpf_ringbuf_submit(event, BPF_RB_NO_WAKEUP);
}

static __always_inline void emit_trace(struct __sk_buff *skb,
				       const struct datapath_config *cfg,
				       __u8 point, const struct event_meta *m)
{
	struct trace_event *e;

	e = bpf_ringbuf_reserve(&EVENTS, sizeof(*e), 0);
	if (!e) {
		count_lost();
		return;
	}
	fill_header(&e->hdr, skb, MSG_TYPE_TRACE, point, m);
	e->hdr.cap_len = copy_packet(skb, e->packet);
	submit_event(e, sizeof(*e), cfg);
}

static __always_inline void emit_drop(struct __sk_buff *skb,
				      const struct datapath_config *cfg,
				      __u8 reason, const struct event_meta *m)
{
	struct drop_event *e;

	e = bpf_ringbuf_reserve(&EVENTS, sizeof(*e), 0);
	if (!e) {
		count_lost();
		return;
	}
	fill_header(&e->hdr, skb, MSG_TYPE_DROP, reason, m);
	e->hdr.cap_len = copy_packet(skb, e->packet);
	submit_event(e, sizeof(*e), cfg);
}

static __always_inline void emit_verdict(struct __sk_buff *skb,
					 const struct datapath_config *cfg,
					 const struct event_meta *m,
					 const struct policy_verdict_info *v)
{
	struct policy_verdict_event *e;

	e = bpf_ringbuf_reserve(&EVENTS, sizeof(*e), 0);
	if (!e) {
		count_lost();
		return;
	}
	fill_header(&e->hdr, skb, MSG_TYPE_POLICY_VERDICT, 0, m);
	e->verdict = *v;
	e->hdr.cap_len = copy_packet(skb, e->packet);
	submit_event(e, sizeof(*e), cfg);
}

/* --------------------------------------------------------- conntrack */

static __always_inline void ct_fill_key(struct ct_key *k, const __u8 *saddr,
					const __u8 *daddr, __u16 sport_be,
					__u16 dport_be, __u8 protocol,
					__u8 direction, __u8 family,
					__u32 ifindex)
{
	__builtin_memcpy(k->saddr, saddr, 16);
	__builtin_memcpy(k->daddr, daddr, 16);
	k->sport_be = sport_be;
	k->dport_be = dport_be;
	k->protocol = protocol;
	k->direction = direction;
	k->family = family;
	k->scope = CT_SCOPE_ENDPOINT;
	k->ifindex = ifindex;
}

static __always_inline __u64 ct_timeout(const struct packet_info *p,
					__u32 flags)
{
	if (flags & CT_F_CLOSING)
		return CT_TIMEOUT_CLOSING;
	if (p->protocol != IPPROTO_TCP)
		return CT_TIMEOUT_NON_TCP;
	if (flags & CT_F_SEEN_REPLY)
		return CT_TIMEOUT_TCP_ESTABLISHED;
	return CT_TIMEOUT_TCP_OPENING;
}

/* Finds a live entry, refreshing its lifetime; expired entries count as
 * absent and are removed. */
static __always_inline struct ct_entry *
ct_lookup(const struct ct_key *k, const struct packet_info *p, __u64 now,
	  __u32 add_flags)
{
	struct ct_entry *e = bpf_map_lookup_elem(&CT, k);
	__u32 flags;

	if (!e)
		return 0;
	if (e->expires_ns < now) {
		bpf_map_delete_elem(&CT, k);
		return 0;
	}
	flags = e->flags | add_flags;
	if (p->tcp_flags & (TCP_FLAG_FIN | TCP_FLAG_RST))
		flags |= CT_F_CLOSING;
	if (flags != e->flags) {
		e->flags = flags;
		e->expires_ns = now + ct_timeout(p, flags);
	} else if (now + ct_timeout(p, flags) - e->expires_ns > NSEC_PER_SEC) {
		/* Refresh at most once a second: fewer writes to a shared
		 * cache line on busy connections. */
		e->expires_ns = now + ct_timeout(p, flags);
	}
	return e;
}

/* Classifies the packet as new, established, reply or related for the
 * endpoint on `ifindex` in direction `dir`; `flags` gets the flags of the
 * entry an established packet or a reply matched (else 0). */
static __always_inline __u8 ct_classify(const struct packet_info *p,
					__u8 dir, __u32 ifindex, __u64 now,
					struct ct_key *k, __u32 *flags)
{
	__u8 reverse = dir == DIR_INGRESS ? DIR_EGRESS : DIR_INGRESS;
	struct ct_entry *e;

	ct_fill_key(k, p->saddr, p->daddr, p->sport_be, p->dport_be,
		    p->protocol, dir, p->family, ifindex);
	e = ct_lookup(k, p, now, 0);
	if (e) {
		*flags = e->flags;
		return CT_STATE_ESTABLISHED;
	}

	ct_fill_key(k, p->daddr, p->saddr, p->dport_be, p->sport_be,
		    p->protocol, reverse, p->family, ifindex);
	e = ct_lookup(k, p, now, CT_F_SEEN_REPLY);
	if (e) {
		*flags = e->flags;
		return CT_STATE_REPLY;
	}

	if (p->has_related) {
		ct_fill_key(k, p->related_saddr, p->related_daddr,
			    p->related_sport_be, p->related_dport_be,
			    p->related_protocol, reverse, p->family, ifindex);
		if (bpf_map_lookup_elem(&CT, k))
			return CT_STATE_RELATED;
	}
	return CT_STATE_NEW;
}

static __always_inline void ct_create(const struct packet_info *p, __u8 dir,
				      __u32 ifindex, __u64 now,
				      __u32 remote_identity, __u32 flags,
				      struct ct_key *k)
{
	struct ct_entry entry = {};

	ct_fill_key(k, p->saddr, p->daddr, p->sport_be, p->dport_be,
		    p->protocol, dir, p->family, ifindex);
	entry.flags = flags;
	if (p->tcp_flags & (TCP_FLAG_FIN | TCP_FLAG_RST))
		entry.flags |= CT_F_CLOSING;
	entry.expires_ns = now + ct_timeout(p, entry.flags);
	entry.remote_identity = remote_identity;
	bpf_map_update_elem(&CT, k, &entry, BPF_ANY);
}

/* Adds flags to the entry `k` names, when it is there. */
static __always_inline void ct_add_flags(const struct ct_key *k, __u32 flags)
{
	struct ct_entry *e = bpf_map_lookup_elem(&CT, k);

	if (e)
		e->flags |= flags;
}

/* ------------------------------------------------------------ policy */

struct policy_result {
	__u8 match_type; /* POLICY_MATCH_NONE when nothing matched */
	__u8 deny;
	__u16 proxy_port; /* of the deciding allow entry; 0: no L7 redirect */
	__u32 cookie;
};

static __always_inline int policy_consider(struct policy_key *k, __u8 match,
					   struct policy_result *r)
{
	struct policy_value *v = bpf_map_lookup_elem(&POLICY, k);

	if (!v)
		return 0;
	if (v->deny) {
		r->match_type = match;
		r->deny = 1;
		r->proxy_port = 0;
		r->cookie = v->cookie;
		return 1; /* a deny ends the search */
	}
	if (r->match_type == POLICY_MATCH_NONE) {
		r->match_type = match;
		r->cookie = v->cookie;
		r->proxy_port = v->proxy_port;
	}
	return 0;
}

/* Looks the four match kinds up from most to least specific. The first
 * allow is remembered, but a deny entry at any of the four wins. */
static __always_inline void policy_lookup(__u32 local, __u32 remote,
					  __u16 dport, __u8 protocol, __u8 dir,
					  struct policy_result *r)
{
	struct policy_key k = {
		.local_identity = local,
		.remote_identity = remote,
		.dport = dport,
		.protocol = protocol,
		.direction = dir,
	};

	if (policy_consider(&k, POLICY_MATCH_L3_L4, r))
		return;
	k.dport = 0;
	k.protocol = 0;
	if (policy_consider(&k, POLICY_MATCH_L3_ONLY, r))
		return;
	k.remote_identity = 0;
	k.dport = dport;
	k.protocol = protocol;
	if (policy_consider(&k, POLICY_MATCH_L4_ONLY, r))
		return;
	k.dport = 0;
	k.protocol = 0;
	policy_consider(&k, POLICY_MATCH_ALL, r);
}

/* L7 redirect helpers and the uplink program. */
#include "proxy.c"

/* ------------------------------------------------ service translation */

#include "lb_tc.c"

/* ----------------------------------------------------------- programs */

static __always_inline int handle(struct __sk_buff *skb, __u8 dir)
{
	struct datapath_config defaults = { .events_enabled = 1 };
	struct packet_info p = {};
	struct lb_tc_result lb = {};
	struct event_meta meta = {};
	struct policy_verdict_info verdict = {};
	struct ipcache_key ck = {};
	struct ct_key k;
	const struct datapath_config *cfg;
	struct endpoint_info *ep;
	struct ipcache_value *remote;
	__u32 ifindex = skb->ifindex;
	__u32 zero = 0;
	__u32 remote_identity = IDENTITY_WORLD;
	__u32 proxy_identity = 0;
	__u32 ct_flags = 0;
	__u16 egress_port = 0;
	__u8 from_ingress_proxy = 0;
	__u8 drop_reason = DROP_POLICY_DENIED;
	__u8 enforce, audit, state, events, trace;
	__u64 now;
	int ret;

	ep = bpf_map_lookup_elem(&ENDPOINTS, &ifindex);
	if (!ep)
		return TC_ACT_OK;
	cfg = bpf_map_lookup_elem(&CONFIG, &zero);
	if (!cfg)
		cfg = &defaults;
	events = cfg->events_enabled != 0;

	meta.source = ep->endpoint_id;
	if (dir == DIR_INGRESS) {
		meta.flags |= EVENT_FLAG_TO_ENDPOINT;
		meta.dst_endpoint = ep->endpoint_id;
		meta.dst_identity = ep->identity;
	} else {
		meta.src_identity = ep->identity;
	}

	ret = parse_packet(skb, &p);
	if (ret == PARSE_PASS_UNTOUCHED)
		return TC_ACT_OK;
	if (p.family == IPCACHE_FAMILY_IPV6)
		meta.flags |= EVENT_FLAG_IPV6;
	if (ret > 0) {
		if (events)
			emit_drop(skb, cfg, ret, &meta);
		return TC_ACT_SHOT;
	}
	if (dir == DIR_EGRESS) {
		ret = lb_tc_xlate_fwd(skb, cfg, ep, &p, &lb);
		if (ret > 0) {
			if (events)
				emit_drop(skb, cfg, ret, &meta);
			return TC_ACT_SHOT;
		}
	}

	/* The remote side: destination when leaving, source when arriving. */
	ck.prefixlen = IPCACHE_PREFIX_OFFSET_BITS +
		       (p.family == IPCACHE_FAMILY_IPV4 ? 32 : 128);
	ck.family = p.family;
	__builtin_memcpy(ck.addr, dir == DIR_EGRESS ? p.daddr : p.saddr, 16);
	remote = bpf_map_lookup_elem(&IPCACHE, &ck);
	if (remote) {
		remote_identity = remote->identity;
		if (dir == DIR_EGRESS &&
		    (remote->flags & IPCACHE_FLAG_LOCAL_ENDPOINT))
			meta.dst_endpoint = remote->endpoint_id;
	}
	/* Connections the L7 proxy opens carry the client's identity. */
	if (dir == DIR_INGRESS) {
		proxy_identity = proxy_mark_identity(skb->mark,
						     &from_ingress_proxy);
		if (proxy_identity)
			remote_identity = proxy_identity;
	}
	if (dir == DIR_EGRESS)
		meta.dst_identity = remote_identity;
	else
		meta.src_identity = remote_identity;

	enforce = ep->flags & (dir == DIR_INGRESS ? ENDPOINT_F_INGRESS_ENFORCE
						  : ENDPOINT_F_EGRESS_ENFORCE);
	audit = ep->flags & ENDPOINT_F_AUDIT;

	if (p.non_first_fragment) {
		/* No ports to decide L4 policy on: refuse at enforcing
		 * endpoints, otherwise let them through untracked. */
		if (enforce && !audit) {
			if (events)
				emit_drop(skb, cfg, DROP_FRAG_NOT_SUPPORTED, &meta);
			return TC_ACT_SHOT;
		}
		state = CT_STATE_UNKNOWN;
		goto trace;
	}

	now = bpf_ktime_get_ns();
	meta.ktime_ns = now;
	state = ct_classify(&p, dir, ifindex, now, &k, &ct_flags);
	meta.reason = state;
	if (state == CT_STATE_REPLY)
		meta.flags |= EVENT_FLAG_IS_REPLY;

	if (state == CT_STATE_NEW) {
		/* The ingress proxy enforced this endpoint's policy already. */
		if (enforce && !from_ingress_proxy) {
			struct policy_result r = {};

			policy_lookup(ep->identity, remote_identity,
				      p.policy_dport, p.protocol, dir, &r);
			verdict.remote_identity = remote_identity;
			verdict.cookie = r.cookie;
			verdict.dport = p.policy_dport;
			verdict.protocol = p.protocol;
			verdict.direction = dir;
			verdict.match_type = r.match_type;
			if (r.match_type != POLICY_MATCH_NONE && !r.deny) {
				verdict.action = r.proxy_port ?
					POLICY_ACTION_REDIRECTED :
					POLICY_ACTION_ALLOWED;
				verdict.proxy_port = r.proxy_port;
			}
			else if (audit)
				verdict.action = POLICY_ACTION_AUDIT;
			else
				verdict.action = POLICY_ACTION_DENIED;
			if (verdict.action == POLICY_ACTION_REDIRECTED &&
			    (dir == DIR_INGRESS ||
			     (p.protocol != IPPROTO_TCP &&
			      p.protocol != IPPROTO_UDP))) {
				/* No redirect possible here (proxy.c):
				 * never let it through without its L7
				 * rules. */
				verdict.action = POLICY_ACTION_DENIED;
				verdict.proxy_port = 0;
				drop_reason = DROP_PROXY_REDIRECTION_NOT_SUPPORTED;
			}
			if (events)
				emit_verdict(skb, cfg, &meta, &verdict);
			if (verdict.action == POLICY_ACTION_DENIED) {
				if (events)
					emit_drop(skb, cfg, drop_reason, &meta);
				return TC_ACT_SHOT;
			}
			egress_port = verdict.proxy_port;
		}
		/* Replies to connections opened from outside or not
		 * translated need no reverse translation; those the
		 * ingress proxy opened go back to it. */
		ct_create(&p, dir, ifindex, now, remote_identity,
			  (dir == DIR_INGRESS || !lb.translated ?
				   CT_F_NO_LB_NAT : 0) |
				  (proxy_identity ? CT_F_FROM_PROXY : 0),
			  &k);
	}

	if (dir == DIR_EGRESS) {
		if (state == CT_STATE_REPLY) {
			proxy_steer_reply(skb, ct_flags);
		} else if (state == CT_STATE_NEW ||
			   (state == CT_STATE_ESTABLISHED &&
			    !(ct_flags & CT_F_NO_REDIRECT))) {
			ret = proxy_from_endpoint(skb, cfg, &p, &meta, ep,
						  remote, state, egress_port,
						  now);
			if (ret != PROXY_PASS)
				return ret;
			/* Redirect entries are only made for new
			 * connections: this one's packets skip the
			 * lookup from now on. */
			if (state == CT_STATE_NEW)
				ct_add_flags(&k, CT_F_NO_REDIRECT);
		}
	}

trace:
	if (!events)
		goto out;
	trace = 1;
	if (cfg->monitor_aggregation >= MONITOR_AGGREGATION_MEDIUM)
		trace = state == CT_STATE_NEW ||
			(p.tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_FIN | TCP_FLAG_RST));
	if (trace) {
		__u8 point;

		if (dir == DIR_INGRESS)
			point = TRACE_TO_LXC;
		else if (meta.dst_endpoint)
			point = TRACE_FROM_LXC;
		else
			point = TRACE_TO_STACK;
		/* A translated packet was reported as from-endpoint before
		 * its rewrite, as Cilium reports it once per packet. */
		if (!(lb.translated && point == TRACE_FROM_LXC))
			emit_trace(skb, cfg, point, &meta);
	}
out:
	/* Replies of connections the tc load balancer translated get their
	 * frontend back, after they were traced with the backend. */
	if (dir == DIR_INGRESS && !(ct_flags & CT_F_NO_LB_NAT))
		lb_tc_xlate_rev(skb, &p);
	return TC_ACT_OK;
}

/* Host veth ingress: packets the endpoint sends. */
SEC("classifier")
int from_container(struct __sk_buff *skb)
{
	return handle(skb, DIR_EGRESS);
}

/* Host veth egress: packets delivered into the endpoint. */
SEC("classifier")
int to_container(struct __sk_buff *skb)
{
	return handle(skb, DIR_INGRESS);
}

/* The cgroup socket programs share this object's maps and event ring. */
#include "sock.c"
