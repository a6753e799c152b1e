package main

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/vipspeaker/vipspeaker/bpf"
	"github.com/vipspeaker/vipspeaker/test/bench/report"
)

// scaleOnPaper turns figures measured in this run into what they say about
// one node and one cluster. Every number in it is a figure of this run or
// arithmetic on one (the line names which); a figure that was not measured
// is said to be missing rather than guessed, and nothing is extrapolated
// past what was measured.
func scaleOnPaper(r *report.Report) []string {
	var out []string
	say := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }
	find := func(section, name string) (report.Figure, float64, bool) {
		f, ok := r.Find(section, name)
		if !ok {
			return f, 0, false
		}
		switch {
		case f.Value != nil:
			return f, *f.Value, true
		case f.P50 != nil:
			return f, *f.P50, true
		}
		return f, 0, false
	}
	missing := "not measured in this run"

	say("## Scale on paper")
	say("")
	say("Derived from the figures above (same run); each line names the figure it rests on and does not extrapolate past it.")
	say("")
	say("### One node")
	say("")
	if f, cold, ok := find("routing", "VIPs applied to a cold interface"); ok && count(f.Name) > 0 {
		n := count(f.Name)
		say("- Kernel (%q): %d VIPs added to a cold interface in %.0f ms, %.3f ms per VIP on average.", f.Name, n, cold, cold/float64(n))
		if g, one, ok := find("routing", "one VIP added with"); ok {
			say("  One more VIP with %d present took %.3f ms (p50, %q): the cost per add grows with the addresses already there, so the average does not carry to larger counts.", count(g.Name), one, g.Name)
		}
		if g, w, ok := find("routing", "netlink writes when a restarted agent adopts"); ok {
			say("  A restarted agent adopting %d VIPs made %.0f netlink writes (%q).", count(g.Name), w, g.Name)
		}
	} else {
		say("- Kernel cost per VIP: %s.", missing)
	}
	if f, rss, ok := find("bgp", "agent RSS with"); ok && count(f.Name) > 0 {
		n := count(f.Name)
		perVIP := rss * 1024 / float64(n)
		say("- Memory (%q): %.0f MiB RSS with %d VIPs announced over BGP, so at most %.1f KiB per VIP (the Go runtime's and GoBGP's base counted in). At that slope 100,000 VIPs would take %.2f GiB; no run here measured more than %d.",
			f.Name, rss, n, perVIP, perVIP*100000/(1024*1024), n)
	} else {
		say("- Memory per VIP: %s.", missing)
	}
	if f, t, ok := find("bgp", "VIPs from a cold start"); ok && count(f.Name) > 0 {
		n := count(f.Name)
		say("- BGP (%q): %d VIPs from a cold start reach FRR's table in %.1f s, %.0f prefixes/s end to end (the router's work included).",
			f.Name, n, t/1000, float64(n)/(t/1000))
	}
	say("- Layer 2: the XDP map holds %d (VIP, interface) pairs (bpf.MaxOwned). Past that the map keeps the pairs it holds and the userspace responder answers and announces the rest; `vipspeaker_xdp_map_overflow{map=\"owned\"}` says how many (asserted by TestMoreVIPsThanTheMapHolds in test/e2e/bpf, not timed here).", bpf.MaxOwned)
	if f, rate, ok := find("bpf", "ARP replies per second under a flood, XDP"); ok {
		say("- ARP storms (%q): XDP answered %.0f requests/s here.", f.Name, rate)
		if c, cpu, ok := find("bpf", "machine CPU per 1,000 replies under the flood, XDP"); ok {
			say("  At %.2f ms of machine CPU per 1,000 replies (%q), a /16 scan (65,536 requests) costs about %.0f ms of CPU.", cpu, c.Name, cpu*65.536)
		}
	}
	if f, t, ok := find("bpf", "takeover of 1,000 VIPs as the agent does it"); ok {
		say("- Takeover (%q): the last gratuitous frame for 1,000 VIPs reached the client %.1f ms (p50) after the owned sets changed, with the fast path.", f.Name, t)
	}
	say("")
	say("### One router, one cluster")
	say("")
	if f, ok := r.Find("bfd", "BFD"); ok && f.P99 != nil {
		say("- Per peer (%q): one BGP session and, with BFD at 100 ms × 3, 10 BFD control packets/s each way; p99 detection %.0f ms here. N nodes as neighbors of one router are 10·N packets/s each way.", f.Name, *f.P99)
	} else {
		say("- Per peer BFD detection: %s.", missing)
	}
	say("- Paths at the router: every announcing node is a path per VIP (ECMP), so the router holds VIPs × nodes paths (1,000 VIPs on 100 nodes: 100,000 paths). `externalTrafficPolicy: Local` and `[[peer-nodes]]` (racks) narrow which nodes announce.")
	if f, rate, ok := find("kube", "announced per second"); ok {
		say("- API (%q): starting on %d existing Services, 3 agents announced %.0f Services/s. Each agent watches Services, EndpointSlices, Nodes and its ConfigMap (plus the Secrets it names) and writes only while it holds the allocator Lease.", f.Name, count(f.Name), rate)
	} else {
		say("- API bulk rate: %s.", missing)
	}
	fleetScale(say, find, missing)
	return out
}

// fleetScale is "1,000 nodes × 10,000 Services" from the fleet's per-agent
// and per-Service figures: arithmetic on what was measured, each line
// naming its figure, and what grows first.
func fleetScale(say func(string, ...any), find func(section, name string) (report.Figure, float64, bool), missing string) {
	const nodes, services = 1000, 10000
	say("")
	say("### %d nodes × %d Services", nodes, services)
	say("")
	_, rss, okRSS := find("fleet", "agent RSS, median")
	f, writes, okW := find("fleet", "one more Service → API writes")
	_, events, okE := find("fleet", "one more Service → watch events per agent")
	if !okRSS || !okW || !okE {
		say("- The fleet's per-agent figures: %s.", missing)
		return
	}
	agents := count(f.Name)
	say("- Memory: an agent held %.0f MiB (median) with 2,000 Services and 50 agents (the fleet's RSS row); %d Services were not measured, so this run says nothing firmer about them than the kube section's 5,000-Service row.", rss, services)
	say("- API writes: one more Service cost %.0f writes from %d agents together (%.2f per agent: each announcing agent's Event and node report, plus the allocator's status and condition); at %d agents that is about %.0f writes per new Service, which the API server absorbs once per change, not per second.", writes, agents, writes/float64(agents), nodes, writes/float64(agents)*nodes)
	say("- Watch fan-out: each agent received %.1f watch events for that Service, so %d agents receive about %.0f events per Service change; a rollout touching all %d Services' EndpointSlices would send on the order of %d × %d × %.1f events, the first cost to grow with both numbers (every agent watches every Service and EndpointSlice, docs/kubernetes.md).", events, nodes, events*nodes, services, nodes, services, events)
	say("- The router: with externalTrafficPolicy Cluster every node is a path per VIP: %d × %d = %d paths, far past what one FRR holds comfortably; aggregation (`aggregation-length`), `[[peer-nodes]]` per rack and Local Services are how a fleet that size keeps the router's table small. BFD at 100 ms × 3 is %d packets/s each way at one router.", services, nodes, services*nodes, 10*nodes)
}

var countRE = regexp.MustCompile(`\d[\d,]*`)

// count is the first number in a figure's name ("10000 VIPs applied…",
// "agent RSS with 10000 VIPs announced"), 0 when there is none.
func count(name string) int {
	m := countRE.FindString(name)
	n, err := strconv.Atoi(strings.ReplaceAll(m, ",", ""))
	if err != nil {
		return 0
	}
	return n
}
