package main

import (
	"fmt"

	"github.com/vipspeaker/vipspeaker/test/bench/report"
)

// scaleOnPaper turns the costs measured in this run into how far one node
// and one cluster can go, and names the next limit. Figures that were not
// measured in this run are said to be missing rather than guessed.
func scaleOnPaper(r *report.Report) []string {
	var out []string
	say := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }
	val := func(section, name string) (float64, bool) {
		f, ok := r.Find(section, name)
		if !ok {
			return 0, false
		}
		switch {
		case f.Value != nil:
			return *f.Value, true
		case f.P50 != nil:
			return *f.P50, true
		}
		return 0, false
	}
	p99 := func(section, name string) (float64, bool) {
		f, ok := r.Find(section, name)
		if !ok || f.P99 == nil {
			return 0, false
		}
		return *f.P99, true
	}
	missing := "not measured in this run"

	say("## Scale on paper")
	say("")
	say("Derived from the figures above (same run); each line says which figure it rests on.")
	say("")
	say("### One node")
	say("")
	if cold, ok := val("routing", "VIPs applied to a cold interface"); ok {
		per := cold / 10000
		say("- Kernel: %.3f ms per VIP added cold (10,000 in %.0f ms, netlink bound — the same order as `ip -batch`). A node with 100,000 VIPs would need about %.0f s to program them from nothing; adoption at restart writes nothing, so restarts do not pay it again.", per, cold, per*100000/1000)
	} else {
		say("- Kernel cost per VIP: %s.", missing)
	}
	if rss, ok := val("bgp", "agent RSS with"); ok {
		say("- Memory: %.0f MiB RSS with 10,000 VIPs announced over BGP, i.e. at most %.1f KiB per VIP (the Go runtime and GoBGP's base are counted in it). At that slope 100,000 VIPs stay under 1 GiB; the DaemonSet's memory limit, not the code, is the first bound.", rss, rss*1024/10000)
	}
	if t, ok := val("bgp", "VIPs from a cold start"); ok {
		say("- BGP: 10,000 VIPs from a cold start reach FRR's table in %.1f s (%.0f prefixes/s end to end, router included). One UPDATE per VIP change is sent in about a millisecond (agent log); above ~10,000 VIPs per session the peer's own RIB work dominates.", t/1000, 10000/(t/1000))
	}
	say("- Layer 2: the XDP owned-VIP map holds 16,384 VIPs per node (VS_MAX_OWNED in bpf/xdp.c); past that the userspace responder answers the rest (it has no fixed limit).")
	if rate, ok := val("bpf", "ARP replies per second under a flood, XDP"); ok {
		say("- ARP storms: XDP answered %.0f requests/s on one core of this VM; a /16 scan (65,536 requests) costs it about %.0f ms of CPU.", rate, 65536/rate*1000)
	}
	if t, ok := val("bpf", "takeover of 1,000 VIPs"); ok {
		say("- Takeover: 1,000 VIPs' gratuitous frames leave in %.1f ms through live frames, so a node inheriting all 16,384 XDP-held VIPs announces them in roughly %.0f ms.", t, t*16.384)
	}
	say("")
	say("### One router, one cluster")
	say("")
	if bfd, ok := p99("bfd", "BFD"); ok {
		say("- Per peer: one BGP session plus, with BFD at 100 ms × 3, 10 packets/s each way (p99 detection %.0f ms here). A router with 200 nodes as neighbors handles 2,000 BFD packets/s in and out — FRR's bfdd runs that in one process; hardware BFD on a ToR goes further.", bfd)
	} else {
		say("- Per peer BFD detection: %s.", missing)
	}
	say("- Paths at the router: every announcing node is a path per VIP (ECMP), so the router holds VIPs × nodes paths: 1,000 VIPs on 100 nodes is 100,000 paths. Narrow it with `externalTrafficPolicy: Local` or `[[peer-nodes]]` (racks); the router's FIB ECMP width (FRR's default multipath 64 on Debian's build) is the next limit.")
	if rate, ok := val("kube", "announced per second"); ok {
		say("- API load per node: each agent keeps watches on Services, EndpointSlices, Nodes and its ConfigMap (plus the Secrets it names); it writes nothing unless it holds the allocator Lease. One leader writes each Service's status once. Starting on 5,000 existing Services, 3 agents announced %.0f Services/s; with N nodes the API server fans every Service change out N times over existing watches, the usual DaemonSet cost (kube-proxy pays the same).", rate)
	} else {
		say("- API load per node: watches on Services, EndpointSlices, Nodes and the ConfigMap; no writes except by the allocator leader. Bulk rate: %s.", missing)
	}
	say("- Next limit: EndpointSlices. In a cluster with many endpoints every agent watches all slices to apply `externalTrafficPolicy: Local`; a label-selected or node-filtered watch would cut that traffic, and is the first change to make beyond a few thousand nodes.")
	return out
}
