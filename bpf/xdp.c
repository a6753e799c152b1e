//go:build ignore

// SPDX-License-Identifier: (MIT OR GPL-2.0-only)
/*
 * vipspeaker's XDP fast path for layer2 VIPs.
 *
 * One program, attached to every layer2 interface (answer + count) and to
 * the BGP uplinks (count only):
 *
 *   - an ARP request for a VIP this node owns on the interface is turned
 *     into the reply in place and sent back with XDP_TX;
 *   - a neighbour solicitation (multicast or unicast) for an owned IPv6 VIP
 *     is rewritten into the solicited neighbour advertisement, ICMPv6
 *     checksum included, and sent back with XDP_TX;
 *   - IPv4/IPv6 packets addressed to a counted VIP add to its per-CPU
 *     packet and byte counters;
 *   - everything else (and every case the program is unsure about: DAD,
 *     conflicts, options it does not parse) passes on to the kernel and the
 *     userspace responder, which stays authoritative.
 *
 * Replies are sent only while the lease in vs_lease (CLOCK_MONOTONIC
 * nanoseconds, renewed by the running agent) lies in the future, so a
 * pinned program left behind by an agent that died stops answering.
 *
 * Run through BPF_PROG_RUN with BPF_F_TEST_XDP_LIVE_FRAMES and 8 bytes of
 * metadata carrying VS_ANNOUNCE_MAGIC and the call's token, the same
 * program writes gratuitous ARP / unsolicited NA frames: each run takes the
 * next job (VIP and form) from vs_jobs and XDP_TXes it out of the interface
 * named by the context.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>

#include "vs_helpers.h"

char __license[] SEC("license") = "Dual MIT/GPL";

#define VS_F_ANSWER 1 /* answer ARP/NDP on this interface */
#define VS_F_COUNT 2  /* count packets to VIPs on this interface */

#define VS_ANNOUNCE_MAGIC 0x5653504b /* "VSPK" */

#define VS_FORM_ARP_REQUEST 1
#define VS_FORM_ARP_REPLY 2
#define VS_FORM_NA 3

#define VS_ARP_FRAME_LEN 60
#define VS_NA_FRAME_LEN 86

#define VS_MAX_OWNED 16384
#define VS_MAX_IFACES 256
#define VS_MAX_JOBS 4096

/* An (interface, address) pair this node answers for. IPv4 addresses are
 * stored IPv4-mapped (::ffff:a.b.c.d). */
struct vip_key {
	__u32 ifindex;
	__u8 addr[16];
};

/* A VIP whose traffic is counted (IPv4-mapped for IPv4). */
struct vip_addr {
	__u8 addr[16];
};

struct iface_cfg {
	__u8 mac[6];
	__u8 flags;
	__u8 pad;
};

struct vip_counters {
	__u64 packets;
	__u64 bytes;
};

struct if_counters {
	__u64 arp_replies;
	__u64 ndp_adverts;
	__u64 garp;
	__u64 una;
};

struct job {
	__u8 addr[16];
	__u32 form;
};

/* The job table's read position. token is set by userspace for the length
 * of one BPF_PROG_RUN call and cleared afterwards. */
struct cursor {
	__u32 next;
	__u32 count;
	__u32 token;
	__u32 pad;
};

struct announce_meta {
	__u32 magic;
	__u32 token;
};

/* Slot 0 holds the current owned set; userspace builds a new set and swaps
 * it in with one update, so a reader sees either the old or the new set. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 1);
	__type(key, __u32);
	__uint(pinning, VS_PIN_BY_NAME);
	__array(values, struct {
		__uint(type, BPF_MAP_TYPE_HASH);
		__uint(max_entries, VS_MAX_OWNED);
		__uint(map_flags, BPF_F_NO_PREALLOC);
		/* struct vip_key; sizes because clang leaves a nested
		 * struct key as a forward declaration in BTF. */
		__uint(key_size, sizeof(struct vip_key));
		__uint(value_size, 1);
	});
} vs_owned SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, VS_MAX_IFACES);
	__type(key, __u32);
	__type(value, struct iface_cfg);
	__uint(pinning, VS_PIN_BY_NAME);
} vs_ifaces SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, VS_PIN_BY_NAME);
} vs_lease SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, VS_MAX_OWNED);
	__type(key, struct vip_addr);
	__type(value, struct vip_counters);
	__uint(pinning, VS_PIN_BY_NAME);
} vs_vip_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, VS_MAX_IFACES);
	__type(key, __u32);
	__type(value, struct if_counters);
	__uint(pinning, VS_PIN_BY_NAME);
} vs_if_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, VS_MAX_JOBS);
	__type(key, __u32);
	__type(value, struct job);
} vs_jobs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct cursor);
} vs_cursor SEC(".maps");

struct arp_eth {
	__be16 htype;
	__be16 ptype;
	__u8 hlen;
	__u8 plen;
	__be16 op;
	__u8 sha[6];
	__u8 spa[4];
	__u8 tha[6];
	__u8 tpa[4];
} __attribute__((packed));

struct nd_msg {
	__u8 type;
	__u8 code;
	__be16 csum;
	__be32 flags;
	__u8 target[16];
};

struct nd_lla {
	__u8 type;
	__u8 len;
	__u8 mac[6];
};

struct pseudo6 {
	__u8 src[16];
	__u8 dst[16];
	__be32 len;
	__be32 nxt;
};

static __always_inline int mac_eq(const __u8 *a, const __u8 *b)
{
	return a[0] == b[0] && a[1] == b[1] && a[2] == b[2] && a[3] == b[3] && a[4] == b[4] && a[5] == b[5];
}

static __always_inline int mac_unicast(const __u8 *m)
{
	return !(m[0] & 1) && (m[0] | m[1] | m[2] | m[3] | m[4] | m[5]);
}

static __always_inline int mac_broadcast(const __u8 *m)
{
	return (m[0] & m[1] & m[2] & m[3] & m[4] & m[5]) == 0xff;
}

static __always_inline int addr_eq(const __u8 *a, const __u8 *b)
{
	__u32 x[4], y[4];
	__builtin_memcpy(x, a, 16);
	__builtin_memcpy(y, b, 16);
	return x[0] == y[0] && x[1] == y[1] && x[2] == y[2] && x[3] == y[3];
}

static __always_inline int addr_unspecified(const __u8 *a)
{
	__u32 x[4];
	__builtin_memcpy(x, a, 16);
	return (x[0] | x[1] | x[2] | x[3]) == 0;
}

/* IPv4-mapped (::ffff:0:0/96): the form IPv4 VIPs take in the maps, never a
 * legitimate IPv6 target or destination. */
static __always_inline int addr_v4mapped(const __u8 *a)
{
	__u32 x[3];
	__builtin_memcpy(x, a, 12);
	return x[0] == 0 && x[1] == 0 && x[2] == vs_htonl(0xffff);
}

static __always_inline void map4(__u8 *out, const __u8 *v4)
{
	__builtin_memset(out, 0, 10);
	out[10] = 0xff;
	out[11] = 0xff;
	__builtin_memcpy(out + 12, v4, 4);
}

static __always_inline __u16 csum_fold(__s64 sum)
{
	__u32 s = (__u32)sum;
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (__u16)~s;
}

static __always_inline int lease_valid(void)
{
	__u32 zero = 0;
	__u64 *until = bpf_map_lookup_elem(&vs_lease, &zero);
	return until && bpf_ktime_get_ns() < *until;
}

static __always_inline int owned(__u32 ifindex, const __u8 *addr16)
{
	__u32 zero = 0;
	struct vip_key key = {.ifindex = ifindex};
	void *set = bpf_map_lookup_elem(&vs_owned, &zero);
	if (!set)
		return 0;
	__builtin_memcpy(key.addr, addr16, 16);
	return bpf_map_lookup_elem(set, &key) != 0;
}

static __always_inline struct if_counters *if_stats(__u32 ifindex)
{
	return bpf_map_lookup_elem(&vs_if_stats, &ifindex);
}

static __always_inline void count_vip(const __u8 *addr16, __u64 bytes)
{
	struct vip_addr key;
	__builtin_memcpy(key.addr, addr16, 16);
	struct vip_counters *c = bpf_map_lookup_elem(&vs_vip_stats, &key);
	if (!c)
		return;
	c->packets++;
	c->bytes += bytes;
}

static __always_inline int handle_arp(struct xdp_md *ctx, const struct iface_cfg *cfg, __u32 ifindex)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct arp_eth *arp = (void *)(eth + 1);
	__u8 spa[16], tpa[16], spa4[4];

	if ((void *)(arp + 1) > end)
		return XDP_PASS;
	if (arp->htype != vs_htons(1) || arp->ptype != vs_htons(ETH_P_IP) || arp->hlen != 6 || arp->plen != 4 ||
	    arp->op != vs_htons(1))
		return XDP_PASS;
	if (!mac_unicast(eth->h_source) || mac_eq(eth->h_source, cfg->mac) || !mac_eq(arp->sha, eth->h_source))
		return XDP_PASS;
	if (!mac_broadcast(eth->h_dest) && !mac_eq(eth->h_dest, cfg->mac))
		return XDP_PASS;
	map4(spa, arp->spa);
	map4(tpa, arp->tpa);
	/* A gratuitous ARP, a multicast or broadcast sender: not ours to answer. */
	if (addr_eq(spa, tpa) || (spa[12] & 0xf0) == 0xe0 ||
	    (spa[12] == 0xff && spa[13] == 0xff && spa[14] == 0xff && spa[15] == 0xff))
		return XDP_PASS;
	/* Someone using one of our VIPs as its source: userspace reports it. */
	if (owned(ifindex, spa))
		return XDP_PASS;
	if (!lease_valid() || !owned(ifindex, tpa))
		return XDP_PASS;

	__builtin_memcpy(spa4, arp->spa, 4);
	__builtin_memcpy(eth->h_dest, eth->h_source, 6);
	__builtin_memcpy(eth->h_source, cfg->mac, 6);
	arp->op = vs_htons(2);
	__builtin_memcpy(arp->tha, arp->sha, 6);
	__builtin_memcpy(arp->sha, cfg->mac, 6);
	__builtin_memcpy(arp->spa, arp->tpa, 4);
	__builtin_memcpy(arp->tpa, spa4, 4);

	struct if_counters *st = if_stats(ifindex);
	if (st)
		st->arp_replies++;
	return XDP_TX;
}

/* write_na fills a complete 86-byte neighbour advertisement frame. With
 * ethdst and dst NULL it goes to all-nodes (ff02::1, 33:33:00:00:00:01). */
static __always_inline int write_na(void *data, void *end, const __u8 *ethdst, const __u8 *mac, const __u8 *target,
				    const __u8 *dst, __u32 flags)
{
	struct ethhdr *eth = data;
	struct ipv6hdr *ip6 = (void *)(eth + 1);
	struct nd_msg *na = (void *)(ip6 + 1);
	struct nd_lla *opt = (void *)(na + 1);
	struct pseudo6 ph;
	__be32 vtf = vs_htonl(0x60000000);

	if ((void *)(opt + 1) > end)
		return -1;
	if (ethdst) {
		__builtin_memcpy(eth->h_dest, ethdst, 6);
	} else {
		eth->h_dest[0] = 0x33;
		eth->h_dest[1] = 0x33;
		eth->h_dest[2] = 0;
		eth->h_dest[3] = 0;
		eth->h_dest[4] = 0;
		eth->h_dest[5] = 1;
	}
	__builtin_memcpy(eth->h_source, mac, 6);
	eth->h_proto = vs_htons(ETH_P_IPV6);
	__builtin_memcpy(ip6, &vtf, 4);
	ip6->payload_len = vs_htons(sizeof(*na) + sizeof(*opt));
	ip6->nexthdr = IPPROTO_ICMPV6;
	ip6->hop_limit = 255;
	__builtin_memcpy(&ip6->saddr, target, 16);
	if (dst) {
		__builtin_memcpy(&ip6->daddr, dst, 16);
	} else {
		ip6->daddr.in6_u.u6_addr32[0] = vs_htonl(0xff020000);
		ip6->daddr.in6_u.u6_addr32[1] = 0;
		ip6->daddr.in6_u.u6_addr32[2] = 0;
		ip6->daddr.in6_u.u6_addr32[3] = vs_htonl(1);
	}
	na->type = 136;
	na->code = 0;
	na->csum = 0;
	na->flags = vs_htonl(flags);
	__builtin_memcpy(na->target, target, 16);
	opt->type = 2;
	opt->len = 1;
	__builtin_memcpy(opt->mac, mac, 6);

	__builtin_memcpy(ph.src, target, 16);
	__builtin_memcpy(ph.dst, &ip6->daddr, 16);
	ph.len = vs_htonl(sizeof(*na) + sizeof(*opt));
	ph.nxt = vs_htonl(IPPROTO_ICMPV6);
	__s64 sum = bpf_csum_diff(0, 0, (__be32 *)&ph, sizeof(ph), 0);
	if (sum < 0)
		return -1;
	sum = bpf_csum_diff(0, 0, (__be32 *)na, sizeof(*na) + sizeof(*opt), (__u32)sum);
	if (sum < 0)
		return -1;
	na->csum = csum_fold(sum);
	return 0;
}

static __always_inline int handle_ns(struct xdp_md *ctx, const struct iface_cfg *cfg, __u32 ifindex)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct ipv6hdr *ip6 = (void *)(eth + 1);
	struct nd_msg *ns = (void *)(ip6 + 1);
	struct nd_lla *opt = (void *)(ns + 1);
	__u8 src[16], dst[16], target[16], reply_mac[6], group[16];
	struct pseudo6 ph;
	__s64 sum;
	__u16 plen;

	if ((void *)(ns + 1) > end)
		return XDP_PASS;
	if ((*(__u8 *)ip6 >> 4) != 6 || ip6->hop_limit != 255 || ns->code != 0)
		return XDP_PASS;
	plen = vs_htons(ip6->payload_len);
	__builtin_memcpy(ph.src, &ip6->saddr, 16);
	__builtin_memcpy(ph.dst, &ip6->daddr, 16);
	ph.len = vs_htonl((__u32)plen);
	ph.nxt = vs_htonl(IPPROTO_ICMPV6);
	sum = bpf_csum_diff(0, 0, (__be32 *)&ph, sizeof(ph), 0);
	if (sum < 0)
		return XDP_PASS;
	/* Handled: no option, or exactly one source link-layer option.
	 * Anything else goes to userspace. */
	if (plen == sizeof(*ns)) {
		sum = bpf_csum_diff(0, 0, (__be32 *)ns, sizeof(*ns), (__u32)sum);
		__builtin_memcpy(reply_mac, eth->h_source, 6);
	} else if (plen == sizeof(*ns) + sizeof(*opt)) {
		if ((void *)(opt + 1) > end)
			return XDP_PASS;
		if (opt->type != 1 || opt->len != 1)
			return XDP_PASS;
		if (!mac_unicast(opt->mac) || mac_eq(opt->mac, cfg->mac))
			return XDP_PASS;
		sum = bpf_csum_diff(0, 0, (__be32 *)ns, sizeof(*ns) + sizeof(*opt), (__u32)sum);
		__builtin_memcpy(reply_mac, opt->mac, 6);
	} else {
		return XDP_PASS;
	}
	if (sum < 0 || csum_fold(sum) != 0)
		return XDP_PASS;
	if (!mac_unicast(eth->h_source) || mac_eq(eth->h_source, cfg->mac))
		return XDP_PASS;

	__builtin_memcpy(src, ph.src, 16);
	__builtin_memcpy(dst, ph.dst, 16);
	__builtin_memcpy(target, ns->target, 16);
	/* DAD (unspecified source) is answered to all-nodes by userspace. */
	if (addr_unspecified(src) || src[0] == 0xff)
		return XDP_PASS;
	if (target[0] == 0xff || addr_unspecified(target) || addr_v4mapped(target) || addr_v4mapped(src))
		return XDP_PASS;
	__builtin_memset(group, 0, 16);
	group[0] = 0xff;
	group[1] = 0x02;
	group[11] = 0x01;
	group[12] = 0xff;
	group[13] = target[13];
	group[14] = target[14];
	group[15] = target[15];
	if (addr_eq(dst, target)) {
		if (!mac_eq(eth->h_dest, cfg->mac))
			return XDP_PASS;
	} else if (addr_eq(dst, group)) {
		if (eth->h_dest[0] != 0x33 || eth->h_dest[1] != 0x33 || eth->h_dest[2] != 0xff ||
		    eth->h_dest[3] != target[13] || eth->h_dest[4] != target[14] || eth->h_dest[5] != target[15])
			return XDP_PASS;
	} else {
		return XDP_PASS;
	}
	if (owned(ifindex, src))
		return XDP_PASS;
	if (!lease_valid() || !owned(ifindex, target))
		return XDP_PASS;

	int delta = VS_NA_FRAME_LEN - (int)(end - data);
	if (delta != 0 && bpf_xdp_adjust_tail(ctx, delta))
		return XDP_PASS;
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	if (data + VS_NA_FRAME_LEN > end)
		return XDP_DROP;
	/* Solicited and Override. */
	if (write_na(data, end, reply_mac, cfg->mac, target, src, 0x60000000))
		return XDP_DROP;
	struct if_counters *st = if_stats(ifindex);
	if (st)
		st->ndp_adverts++;
	return XDP_TX;
}

/* announce_token reports whether token is the one of the BPF_PROG_RUN call
 * in progress. Wire frames carry no metadata, but a veth peer's XDP program
 * can hand us a frame with metadata of its choosing; without the token it
 * cannot reach the announce branch. */
static __always_inline int announce_token(__u32 token)
{
	__u32 zero = 0;
	struct cursor *c = bpf_map_lookup_elem(&vs_cursor, &zero);
	return c && c->token != 0 && c->token == token;
}

static __always_inline int announce(struct xdp_md *ctx, const struct iface_cfg *cfg, __u32 ifindex)
{
	__u32 zero = 0, i;
	struct cursor *c;
	struct job *j;

	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	void *meta = (void *)(long)ctx->data_meta;

	/* Wipe the metadata, token included, so a veth peer that gets the
	 * frame cannot read it. (Not bpf_xdp_adjust_meta: some kernels refuse
	 * that helper to XDP programs, 6.18.44-fc-v1300 among them.) */
	if (meta + sizeof(struct announce_meta) > data)
		return XDP_DROP;
	__builtin_memset(meta, 0, sizeof(struct announce_meta));
	c = bpf_map_lookup_elem(&vs_cursor, &zero);
	if (!c)
		return XDP_DROP;
	i = c->next;
	if (i >= c->count)
		return XDP_DROP;
	c->next = i + 1;
	j = bpf_map_lookup_elem(&vs_jobs, &i);
	if (!j)
		return XDP_DROP;
	if (!lease_valid() || !owned(ifindex, j->addr))
		return XDP_DROP;
	struct if_counters *st = if_stats(ifindex);

	if (j->form == VS_FORM_ARP_REQUEST || j->form == VS_FORM_ARP_REPLY) {
		struct ethhdr *eth = data;
		struct arp_eth *arp = (void *)(eth + 1);
		if (data + VS_ARP_FRAME_LEN > end)
			return XDP_DROP;
		if ((void *)(arp + 1) > end)
			return XDP_DROP;
		__builtin_memset(data, 0, VS_ARP_FRAME_LEN);
		__builtin_memset(eth->h_dest, 0xff, 6);
		__builtin_memcpy(eth->h_source, cfg->mac, 6);
		eth->h_proto = vs_htons(ETH_P_ARP);
		arp->htype = vs_htons(1);
		arp->ptype = vs_htons(ETH_P_IP);
		arp->hlen = 6;
		arp->plen = 4;
		__builtin_memcpy(arp->sha, cfg->mac, 6);
		__builtin_memcpy(arp->spa, j->addr + 12, 4);
		__builtin_memcpy(arp->tpa, j->addr + 12, 4);
		if (j->form == VS_FORM_ARP_REQUEST) {
			arp->op = vs_htons(1);
		} else {
			arp->op = vs_htons(2);
			__builtin_memset(arp->tha, 0xff, 6);
		}
		if (st)
			st->garp++;
		return XDP_TX;
	}
	if (j->form == VS_FORM_NA) {
		__u8 target[16];
		if (data + VS_NA_FRAME_LEN > end)
			return XDP_DROP;
		__builtin_memcpy(target, j->addr, 16);
		/* Override only: unsolicited. */
		if (write_na(data, end, 0, cfg->mac, target, 0, 0x20000000))
			return XDP_DROP;
		if (st)
			st->una++;
		return XDP_TX;
	}
	return XDP_DROP;
}

SEC("xdp")
int vs_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	void *meta = (void *)(long)ctx->data_meta;
	__u32 ifindex = ctx->ingress_ifindex;
	struct iface_cfg *cfg = bpf_map_lookup_elem(&vs_ifaces, &ifindex);
	struct ethhdr *eth = data;

	if (!cfg)
		return XDP_PASS;
	if (meta + sizeof(struct announce_meta) <= data) {
		struct announce_meta *m = meta;
		if (m->magic == VS_ANNOUNCE_MAGIC && announce_token(m->token))
			return announce(ctx, cfg, ifindex);
	}
	if ((void *)(eth + 1) > end)
		return XDP_PASS;

	if (eth->h_proto == vs_htons(ETH_P_ARP)) {
		if (cfg->flags & VS_F_ANSWER)
			return handle_arp(ctx, cfg, ifindex);
		return XDP_PASS;
	}
	if (eth->h_proto == vs_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);
		__u8 dst[16];
		if (!(cfg->flags & VS_F_COUNT) || (void *)(ip + 1) > end)
			return XDP_PASS;
		map4(dst, (const __u8 *)&ip->daddr);
		count_vip(dst, vs_htons(ip->tot_len));
		return XDP_PASS;
	}
	if (eth->h_proto == vs_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);
		__u8 *icmp = (void *)(ip6 + 1);
		__u8 dst[16];
		if ((void *)(ip6 + 1) > end)
			return XDP_PASS;
		/* Neighbour discovery (133..137) is control traffic: answered
		 * here or passed on, never counted as VIP traffic. */
		if (ip6->nexthdr == IPPROTO_ICMPV6 && (void *)(icmp + 1) <= end && icmp[0] >= 133 && icmp[0] <= 137) {
			if (icmp[0] == 135 && (cfg->flags & VS_F_ANSWER))
				return handle_ns(ctx, cfg, ifindex);
			return XDP_PASS;
		}
		if (!(cfg->flags & VS_F_COUNT))
			return XDP_PASS;
		__builtin_memcpy(dst, &ip6->daddr, 16);
		if (addr_v4mapped(dst))
			return XDP_PASS;
		count_vip(dst, (__u64)vs_htons(ip6->payload_len) + sizeof(*ip6));
		return XDP_PASS;
	}
	return XDP_PASS;
}
