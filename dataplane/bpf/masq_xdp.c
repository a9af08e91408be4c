// SPDX-License-Identifier: GPL-2.0
// masq's XDP program: the kernel-side half of the AF_XDP backend.
//
// It sends to the queue's AF_XDP socket only what the NAT must see, IPv4
// through the box, and passes everything else to the kernel's stack:
//   - anything that is not IPv4 (ARP, IPv6, LLDP), at most one 802.1Q tag;
//   - link-layer multicast and broadcast, IPv4 multicast and limited
//     broadcast (netfilter FAQ 3.1: multicast never enters NAT);
//   - a TTL of 0 or 1 (the kernel answers ICMP time exceeded, RFC 1812
//     section 5.3.1, so traceroute shows the box);
//   - a packet with Don't Fragment set that is too big for the other
//     interface's MTU (the kernel answers ICMP fragmentation needed, RFC
//     1191; masq fragments the others itself);
//   - traffic to the box's own addresses (management, the control API),
//     unless the address is also a NAT address (a masquerade pool uses the
//     interface's address): then TCP/UDP to a port in the pool's range and
//     ICMP go to masq, the rest to the kernel;
// and it drops, before the kernel sees it, traffic for an address of the
// box that belongs to the other side (on the outside interface: the
// inside interface's addresses), so an outside host can neither reach the
// box's inside-side services nor make it answer from an inside address.
// Built by dataplane/build.rs with `clang -O2 -g -target bpf`.
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

// One socket per receive queue; the key is the queue index.
struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u32);
} xsks SEC(".maps");

// The box's own addresses (network order) and what to do with them.
enum { LA_KERNEL, LA_NAT, LA_REFUSED };

struct local_addr {
	__u32 kind;      // LA_KERNEL: the kernel's alone; LA_NAT: also a NAT
	                 // address; LA_REFUSED: the other side's, dropped
	__u16 port_min;  // NAT port range (host order) when nat == 1
	__u16 port_max;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, struct local_addr);
} local_addrs SEC(".maps");

// Counters per reason (per-CPU array): see XdpStat in dataplane/src/xdp/mod.rs.
enum { ST_REDIRECT, ST_NOT_IPV4, ST_MULTICAST, ST_TTL, ST_LOCAL, ST_SHORT, ST_TOO_BIG, ST_OTHER_SIDE, ST_MAX };

// Largest IPv4 packet the other interface sends (its MTU); 0: no limit.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} limits SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, ST_MAX);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

static __always_inline int count(__u32 reason, int action)
{
	__u64 *c = bpf_map_lookup_elem(&stats, &reason);
	if (c)
		*c += 1;
	return action;
}

struct vlan_hdr {
	__be16 tci;
	__be16 proto;
};

SEC("xdp")
int masq_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	void *l3 = eth + 1;
	if (l3 > end)
		return count(ST_SHORT, XDP_PASS);
	__be16 proto = eth->h_proto;
	if (proto == bpf_htons(ETH_P_8021Q)) {
		struct vlan_hdr *v = l3;
		if ((void *)(v + 1) > end)
			return count(ST_SHORT, XDP_PASS);
		proto = v->proto;
		l3 = v + 1;
	}
	if (proto != bpf_htons(ETH_P_IP))
		return count(ST_NOT_IPV4, XDP_PASS);
	if (eth->h_dest[0] & 1)
		return count(ST_MULTICAST, XDP_PASS);
	struct iphdr *ip = l3;
	if ((void *)(ip + 1) > end)
		return count(ST_SHORT, XDP_PASS);
	__u32 daddr = ip->daddr;
	if ((bpf_ntohl(daddr) >> 28) == 0xe || daddr == 0xffffffff)
		return count(ST_MULTICAST, XDP_PASS);
	// The other side's addresses first: a TTL of 1 or a big DF packet
	// would otherwise reach the kernel, which answers from that address.
	struct local_addr *la = bpf_map_lookup_elem(&local_addrs, &daddr);
	if (la && la->kind == LA_REFUSED)
		return count(ST_OTHER_SIDE, XDP_DROP);
	if (ip->ttl <= 1)
		return count(ST_TTL, XDP_PASS);
	__u32 zero = 0;
	__u32 *max_len = bpf_map_lookup_elem(&limits, &zero);
	if (max_len && *max_len && bpf_ntohs(ip->tot_len) > *max_len && (ip->frag_off & bpf_htons(0x4000)))
		return count(ST_TOO_BIG, XDP_PASS);
	if (la) {
		if (la->kind != LA_NAT)
			return count(ST_LOCAL, XDP_PASS);
		if (ip->protocol == IPPROTO_TCP || ip->protocol == IPPROTO_UDP) {
			// Non-first fragments carry no port: they go to masq, which
			// holds the fragment's first half.
			if ((ip->frag_off & bpf_htons(0x1fff)) == 0) {
				__u16 *ports = (void *)ip + ip->ihl * 4;
				if ((void *)(ports + 2) > end)
					return count(ST_SHORT, XDP_PASS);
				__u16 dport = bpf_ntohs(ports[1]);
				if (dport < la->port_min || dport > la->port_max)
					return count(ST_LOCAL, XDP_PASS);
			}
		}
		// ICMP and other protocols (GRE, ESP...: translated by address
		// only) go to masq, which gives the kernel what no session claims.
	}
	count(ST_REDIRECT, 0);
	return bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS);
}

char _license[] SEC("license") = "GPL";
