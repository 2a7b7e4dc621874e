/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * The service load-balancing maps, shared by the socket programs (sock.c)
 * and the tc-level translation (lb_tc.c); layouts in events.h.
 */
#ifndef HUBBLE_RS_LB_MAPS_H
#define HUBBLE_RS_LB_MAPS_H

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct lb_service_key);
	__type(value, struct lb_service_value);
} LB_SERVICES SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, struct lb_backend);
} LB_BACKENDS SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 131072);
	__type(key, struct lb_revnat_key);
	__type(value, struct lb_revnat_value);
} LB_REVNAT_SK SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 131072);
	__type(key, struct ct_key);
	__type(value, struct lb_nat_entry);
} LB_NAT_CT SEC(".maps");

/* A 64-bit mix (splitmix64's finaliser) of the seed and the cookie (or the
 * flow key at tc level); the Rust side computes the same
 * (ebpf_events::abi::lb::seeded_slot, seeded_tc_slot). */
static __always_inline __u64 lb_mix(__u64 x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	x ^= x >> 31;
	return x;
}

#endif /* HUBBLE_RS_LB_MAPS_H */
