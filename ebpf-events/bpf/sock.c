// SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0)
/*
 * Socket-level service load balancing, as Cilium's socket LB does it:
 * cgroup programs attached to the node's cgroup (--cgroup-root) rewrite the
 * address a pod's socket connects or sends to when it is a service frontend
 * (VIP, port, protocol in LB_SERVICES), so the socket talks to a backend
 * from its first packet and the tc programs only ever see backend
 * addresses (policy applies to the backend). recvmsg and getpeername
 * rewrite a backend's address back to the VIP through LB_REVNAT_SK, so
 * replies look as if they came from the VIP.
 *
 *   connect4/6   TCP and connected UDP sockets
 *   sendmsg4/6   unconnected UDP (sendto)
 *   recvmsg4/6   UDP source address of what is received
 *   getpeername4/6
 *
 * Each translation is reported as Cilium's trace-sock messages:
 * pre-xlate-fwd (the VIP), post-xlate-fwd (the backend), pre-xlate-rev
 * (the peer as the kernel knows it), post-xlate-rev (the VIP).
 *
 * Included by datapath.c (one object: the maps and the event ring are
 * shared with the tc programs).
 */

#define SYS_REJECT 0
#define SYS_PROCEED 1

#ifndef EHOSTUNREACH
#define EHOSTUNREACH 113
#endif
#ifndef ENOMEM
#define ENOMEM 12
#endif

#include "lb_maps.h"

/* An address and port as the socket call carries them. */
struct sock_addr {
	__u8 addr[16];
	__u16 port_be;
	__u8 family;
};

static __always_inline __u8 sock_l4_proto(__u32 protocol)
{
	if (protocol == IPPROTO_TCP)
		return L4_PROTOCOL_TCP;
	if (protocol == IPPROTO_UDP)
		return L4_PROTOCOL_UDP;
	return L4_PROTOCOL_UNKNOWN;
}

static __always_inline void sock_read(struct bpf_sock_addr *ctx, __u8 family,
				      struct sock_addr *a)
{
	__builtin_memset(a, 0, sizeof(*a));
	a->family = family;
	a->port_be = (__u16)ctx->user_port;
	if (family == IPCACHE_FAMILY_IPV4) {
		__u32 ip = ctx->user_ip4;

		__builtin_memcpy(a->addr, &ip, 4);
	} else {
		__u32 w0 = ctx->user_ip6[0], w1 = ctx->user_ip6[1];
		__u32 w2 = ctx->user_ip6[2], w3 = ctx->user_ip6[3];

		__builtin_memcpy(a->addr, &w0, 4);
		__builtin_memcpy(a->addr + 4, &w1, 4);
		__builtin_memcpy(a->addr + 8, &w2, 4);
		__builtin_memcpy(a->addr + 12, &w3, 4);
	}
}

static __always_inline void sock_write(struct bpf_sock_addr *ctx,
				       const __u8 *addr, __u16 port_be,
				       __u8 family)
{
	if (family == IPCACHE_FAMILY_IPV4) {
		__u32 ip;

		__builtin_memcpy(&ip, addr, 4);
		ctx->user_ip4 = ip;
	} else {
		__u32 w;

		__builtin_memcpy(&w, addr, 4);
		ctx->user_ip6[0] = w;
		__builtin_memcpy(&w, addr + 4, 4);
		ctx->user_ip6[1] = w;
		__builtin_memcpy(&w, addr + 8, 4);
		ctx->user_ip6[2] = w;
		__builtin_memcpy(&w, addr + 12, 4);
		ctx->user_ip6[3] = w;
	}
	ctx->user_port = port_be;
}

/* One trace-sock record; reverse points are left out unless every event
 * is wanted (monitor aggregation none), as Cilium does. */
static __always_inline void emit_sock(struct bpf_sock_addr *ctx,
				      const struct datapath_config *cfg,
				      __u8 point, __u64 cookie,
				      const __u8 *addr, __u16 port_be,
				      __u8 family)
{
	struct trace_sock_event *e;

	if (!cfg->events_enabled)
		return;
	if (cfg->monitor_aggregation != MONITOR_AGGREGATION_NONE &&
	    (point == XLATE_PRE_DIRECTION_REV ||
	     point == XLATE_POST_DIRECTION_REV))
		return;
	e = bpf_ringbuf_reserve(&EVENTS, sizeof(*e), 0);
	if (!e) {
		count_lost();
		return;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->hdr.type = MSG_TYPE_TRACE_SOCK;
	e->hdr.subtype = point;
	e->hdr.ktime_ns = bpf_ktime_get_ns();
	e->hdr.flags = family == IPCACHE_FAMILY_IPV6 ? EVENT_FLAG_IPV6 : 0;
	e->hdr.version = EVENT_ABI_VERSION;
	e->hdr.cpu = bpf_get_smp_processor_id();
	e->sock.sock_cookie = cookie;
	e->sock.cgroup_id = bpf_get_current_cgroup_id();
	e->sock.dst_port = bpf_ntohs(port_be);
	e->sock.l4_proto = sock_l4_proto(ctx->protocol);
	__builtin_memcpy(e->dst_addr, addr, 16);
	submit_event(e, sizeof(*e), cfg);
}

/* Slot 1..count of the backend a new connection gets: random for TCP,
 * per socket for UDP (so a socket's datagrams stay on one backend), or
 * hash(seed, cookie) when a seed is configured. */
static __always_inline __u16 lb_select_slot(struct bpf_sock_addr *ctx,
					    const struct datapath_config *cfg,
					    __u64 cookie, __u16 count)
{
	__u64 r;

	if (cfg->lb_seed)
		r = lb_mix(((__u64)cfg->lb_seed << 32) ^ cookie);
	else if (ctx->protocol == IPPROTO_TCP)
		r = bpf_get_prandom_u32();
	else
		r = lb_mix(cookie);
	return (__u16)(r % count) + 1;
}

/* Forward translation. Returns SYS_PROCEED, or SYS_REJECT (with
 * EHOSTUNREACH) for a frontend without active backends, as Cilium. */
static __always_inline int sock_xlate_fwd(struct bpf_sock_addr *ctx,
					  __u8 family)
{
	const struct datapath_config *cfg;
	struct lb_service_value *svc, *slot;
	struct lb_service_key key = {};
	struct lb_revnat_key rkey = {};
	struct lb_revnat_value rval = {};
	struct lb_backend *backend;
	struct sock_addr vip;
	__u32 zero = 0;
	__u64 cookie;

	if (ctx->protocol != IPPROTO_TCP && ctx->protocol != IPPROTO_UDP)
		return SYS_PROCEED;
	sock_read(ctx, family, &vip);
	__builtin_memcpy(key.addr, vip.addr, 16);
	key.dport_be = vip.port_be;
	key.protocol = ctx->protocol;
	key.family = family;
	svc = bpf_map_lookup_elem(&LB_SERVICES, &key);
	if (!svc)
		return SYS_PROCEED;
	cfg = bpf_map_lookup_elem(&CONFIG, &zero);
	if (!cfg)
		return SYS_PROCEED;
	cookie = bpf_get_socket_cookie(ctx);
	emit_sock(ctx, cfg, XLATE_PRE_DIRECTION_FWD, cookie, vip.addr,
		  vip.port_be, family);
	if (svc->count == 0) {
		bpf_set_retval(-EHOSTUNREACH);
		return SYS_REJECT;
	}
	key.slot = lb_select_slot(ctx, cfg, cookie, svc->count);
	slot = bpf_map_lookup_elem(&LB_SERVICES, &key);
	if (!slot)
		return SYS_PROCEED;
	backend = bpf_map_lookup_elem(&LB_BACKENDS, &slot->backend_id);
	if (!backend || backend->family != family)
		return SYS_PROCEED;

	rkey.cookie = cookie;
	__builtin_memcpy(rkey.addr, backend->addr, 16);
	rkey.port_be = backend->port_be;
	rkey.family = family;
	__builtin_memcpy(rval.addr, vip.addr, 16);
	rval.port_be = vip.port_be;
	rval.service_id = svc->service_id;
	if (bpf_map_update_elem(&LB_REVNAT_SK, &rkey, &rval, BPF_ANY) < 0) {
		/* Without the entry replies could not be mapped back. */
		bpf_set_retval(-ENOMEM);
		return SYS_REJECT;
	}
	sock_write(ctx, backend->addr, backend->port_be, family);
	emit_sock(ctx, cfg, XLATE_POST_DIRECTION_FWD, cookie, backend->addr,
		  backend->port_be, family);
	return SYS_PROCEED;
}

/* Reverse translation: a backend's address becomes the VIP the socket
 * asked for. Always SYS_PROCEED (recvmsg and getpeername cannot fail). */
static __always_inline int sock_xlate_rev(struct bpf_sock_addr *ctx,
					  __u8 family)
{
	const struct datapath_config *cfg;
	struct lb_revnat_key rkey = {};
	struct lb_revnat_value *rval;
	struct sock_addr peer;
	__u32 zero = 0;
	__u64 cookie;

	if (ctx->protocol != IPPROTO_TCP && ctx->protocol != IPPROTO_UDP)
		return SYS_PROCEED;
	cfg = bpf_map_lookup_elem(&CONFIG, &zero);
	if (!cfg)
		return SYS_PROCEED;
	sock_read(ctx, family, &peer);
	cookie = bpf_get_socket_cookie(ctx);
	emit_sock(ctx, cfg, XLATE_PRE_DIRECTION_REV, cookie, peer.addr,
		  peer.port_be, family);
	rkey.cookie = cookie;
	__builtin_memcpy(rkey.addr, peer.addr, 16);
	rkey.port_be = peer.port_be;
	rkey.family = family;
	rval = bpf_map_lookup_elem(&LB_REVNAT_SK, &rkey);
	if (!rval)
		return SYS_PROCEED;
	sock_write(ctx, rval->addr, rval->port_be, family);
	emit_sock(ctx, cfg, XLATE_POST_DIRECTION_REV, cookie, rval->addr,
		  rval->port_be, family);
	return SYS_PROCEED;
}

SEC("cgroup/connect4")
int sock4_connect(struct bpf_sock_addr *ctx)
{
	return sock_xlate_fwd(ctx, IPCACHE_FAMILY_IPV4);
}

SEC("cgroup/sendmsg4")
int sock4_sendmsg(struct bpf_sock_addr *ctx)
{
	return sock_xlate_fwd(ctx, IPCACHE_FAMILY_IPV4);
}

SEC("cgroup/recvmsg4")
int sock4_recvmsg(struct bpf_sock_addr *ctx)
{
	sock_xlate_rev(ctx, IPCACHE_FAMILY_IPV4);
	return SYS_PROCEED;
}

SEC("cgroup/getpeername4")
int sock4_getpeername(struct bpf_sock_addr *ctx)
{
	sock_xlate_rev(ctx, IPCACHE_FAMILY_IPV4);
	return SYS_PROCEED;
}

SEC("cgroup/connect6")
int sock6_connect(struct bpf_sock_addr *ctx)
{
	return sock_xlate_fwd(ctx, IPCACHE_FAMILY_IPV6);
}

SEC("cgroup/sendmsg6")
int sock6_sendmsg(struct bpf_sock_addr *ctx)
{
	return sock_xlate_fwd(ctx, IPCACHE_FAMILY_IPV6);
}

SEC("cgroup/recvmsg6")
int sock6_recvmsg(struct bpf_sock_addr *ctx)
{
	sock_xlate_rev(ctx, IPCACHE_FAMILY_IPV6);
	return SYS_PROCEED;
}

SEC("cgroup/getpeername6")
int sock6_getpeername(struct bpf_sock_addr *ctx)
{
	sock_xlate_rev(ctx, IPCACHE_FAMILY_IPV6);
	return SYS_PROCEED;
}
