package main

import (
	"fmt"
	"time"

	"github.com/vipspeaker/vipspeaker/test/bench/report"
)

// The sections measured by Go benchmarks in the packages that own the
// labs (each reports p50/p99 with b.ReportMetric).

// bfd: a frozen agent (SIGSTOP) noticed by FRR with BFD (100 ms × 3)
// against the hold timer alone (3 s), nodes frozen at the same moment.
var bfdBench = goBench{
	pkg: "./test/e2e/bgp", bench: "^BenchmarkBFDvsHoldTimer$", benchtime: "10x", timeout: 15 * time.Minute,
	figures: func(r *report.Report, res benchResults) {
		const b = "BenchmarkBFDvsHoldTimer"
		r.Add(report.Figure{Name: "frozen agent → its route gone from the router's kernel, BFD 100 ms × 3", Unit: "ms", Samples: 10,
			P50: res.get(b, "bfd-p50-ms"), P99: res.get(b, "bfd-p99-ms"),
			Baseline: &report.Baseline{Name: "hold timer 3 s, no BFD", P50: res.get(b, "hold-p50-ms"), P99: res.get(b, "hold-p99-ms")},
			Target:   &report.Target{Text: "p99 < 1 s", Checks: []report.Check{report.AtMost("p99", 1000)}}})
	},
}

// zebra: VIP on the node → route in the router's kernel, with FRR's zebra
// redistributing kube-lb0 against the agent announcing it itself.
var zebraBench = goBench{
	pkg: "./test/e2e/zebra", bench: "^BenchmarkVIPToRouterKernel$", benchtime: "30x", timeout: 15 * time.Minute,
	figures: func(r *report.Report, res benchResults) {
		const b = "BenchmarkVIPToRouterKernel"
		r.Add(report.Figure{Name: "VIP on the node → route in the router's kernel, zebra mode", Unit: "ms", Samples: res.count(b, "zebra_n"),
			P50: res.get(b, "zebra_p50_ms"), P99: res.get(b, "zebra_p99_ms"),
			Baseline: &report.Baseline{Name: "native mode (the agent announces)", P50: res.get(b, "native_p50_ms"), P99: res.get(b, "native_p99_ms")}})
	},
}

// layer2: the client's view of a failover with real agent processes, from
// the signal to the owner's agent to the first ARP reply from the other
// node (probing every 5 ms).
var layer2Bench = goBench{
	pkg: "./test/e2e/layer2", bench: "^BenchmarkOwnerFailover$", benchtime: "20x", timeout: 15 * time.Minute,
	figures: func(r *report.Report, res benchResults) {
		r.Add(report.Figure{Name: "L2 failover seen by the client, owner's agent process killed (kill -9) → first ARP reply from the other node", Unit: "ms", Samples: 20,
			P50: res.get("BenchmarkOwnerFailover/kill", "p50-ms"), P99: res.get("BenchmarkOwnerFailover/kill", "p99-ms"),
			Target: &report.Target{Text: "p99 (of 20: the maximum) ≤ 1 s", Checks: []report.Check{report.AtMost("p99", 1000)}},
			Note:   "MetalLB v0.15.2 with memberlist took 5.5–6.4 s in this lab (LAB.md; not re-measured in this run)"})
		r.Add(report.Figure{Name: "L2 failover seen by the client, owner's agent stopped for good (SIGTERM with --remove-vips-on-exit: it leaves the membership) → first ARP reply from the other node", Unit: "ms", Samples: 20,
			P50: res.get("BenchmarkOwnerFailover/final-stop", "p50-ms"), P99: res.get("BenchmarkOwnerFailover/final-stop", "p99-ms"),
			Target: &report.Target{Text: "p99 (of 20: the maximum) ≤ 100 ms", Checks: []report.Check{report.AtMost("p99", 100)}}})
	},
}

// kube: Services against a real kube-apiserver, three agents, FRR. The
// targets are issue 5's; MetalLB is measured beside vipspeaker in the same
// run by the metallb section, not here.
var kubeBenches = []goBench{{
	pkg: "./test/e2e/kube", bench: "^BenchmarkServiceToRoute$", benchtime: "100x", timeout: 20 * time.Minute,
	figures: func(r *report.Report, res benchResults) {
		const b = "BenchmarkServiceToRoute"
		r.Add(report.Figure{Name: "Service created → route in FRR's kernel via all 3 nodes", Unit: "ms", Samples: res.count(b, "n"),
			P50: res.get(b, "p50_ms"), P99: res.get(b, "p99_ms"),
			Target: &report.Target{Text: "p50 ≤ 40 ms, p99 ≤ 80 ms", Checks: []report.Check{report.AtMost("p50", 40), report.AtMost("p99", 80)}},
			Note:   "MetalLB in the same run: the metallb section"})
		n := res.count(b, "breakdown_n")
		r.Add(report.Figure{Name: "of which: create → status carries the address", Unit: "ms", Samples: res.count(b, "n"), P50: res.get(b, "status_p50_ms")})
		r.Add(report.Figure{Name: "of which: create → VIP table applied on the last node", Unit: "ms", Samples: n, P50: res.get(b, "to_vip_table_p50_ms")})
		r.Add(report.Figure{Name: "of which: create → GoBGP path on the last node (the rest is FRR: bgpd's 50 ms processing hold, then zebra)", Unit: "ms", Samples: n, P50: res.get(b, "to_gobgp_p50_ms")})
	},
}, {
	pkg: "./test/e2e/kube", bench: "^BenchmarkManyServices$", benchtime: "1x", timeout: 30 * time.Minute,
	figures: func(r *report.Report, res benchResults) {
		const b = "BenchmarkManyServices"
		r.Add(report.Figure{Name: "5,000 Services existing when the agents start: announced per second (all routes at FRR)", Unit: "Services/s", Value: res.get(b, "services_per_s"),
			Note: "no target: the same-run comparison with MetalLB (Services created at once) is in the metallb section"})
		r.Add(report.Figure{Name: "5,000 Services: all announced", Unit: "s", Value: res.get(b, "all_announced_s")})
		plain, pooled := res.get(b, "new_svc_p50_ms"), res.get(b, "new_svc_after_pool_add_p50_ms")
		r.Add(report.Figure{Name: "with 5,000 Services: a new Service → route, right after a pool was added", Unit: "ms", Samples: res.count(b, "new_svc_after_pool_add_n"),
			P50: pooled, P99: res.get(b, "new_svc_after_pool_add_max_ms"),
			Baseline: &report.Baseline{Name: fmt.Sprintf("a new Service with no pool change (n=%d)", res.count(b, "new_svc_n")), P50: plain}})
		var delay *float64
		if plain != nil && pooled != nil {
			delay = report.F(*pooled - *plain)
		}
		r.Add(report.Figure{Name: "delay a pool change adds to a new Service (p50 difference)", Unit: "ms", Value: delay,
			Target: &report.Target{Text: "≤ 100 ms", Checks: []report.Check{report.AtMost("value", 100)}}})
		r.Add(report.Figure{Name: "allocator RSS at 5,000 Services", Unit: "MiB", Value: res.get(b, "allocator_rss_MiB")})
		r.Add(report.Figure{Name: "speaker RSS at 5,000 Services (largest)", Unit: "MiB", Value: res.get(b, "speaker_rss_MiB")})
	},
}}

// restart: the owner's agent restarted (SIGTERM, start again) while the
// client sends an ARP request every 10 ms; the pinned XDP responder keeps
// answering while the agent is away.
var restartBench = goBench{
	pkg: "./test/e2e/bpf", bench: "^BenchmarkAgentRestartGap$", benchtime: "10x", timeout: 15 * time.Minute,
	figures: func(r *report.Report, res benchResults) {
		const b = "BenchmarkAgentRestartGap"
		r.Add(report.Figure{Name: "L2 owner's agent restarted: ARP requests left unanswered (10 restarts, one request per 10 ms)", Unit: "requests", Value: res.get(b, "unanswered"),
			Target: &report.Target{Text: "0", Checks: []report.Check{report.AtMost("value", 0)}}})
		r.Add(report.Figure{Name: "longest gap between ARP replies during a restart", Unit: "ms", Samples: 10,
			P50: res.get(b, "gap_p50_ms"), P99: res.get(b, "gap_max_ms")})
		r.Add(report.Figure{Name: "agent away during the restart", Unit: "ms", P50: res.get(b, "restart_p50_ms")})
	},
}

func benchLayer2(r *report.Report) error {
	err := layer2Bench.run(r)
	if rerr := restartBench.run(r); err == nil {
		err = rerr
	}
	return err
}

func benchKube(r *report.Report) error { return runAll(r, kubeBenches) }

// runAll runs the benchmarks one after the other and returns the first
// error (each adds its figures either way).
func runAll(r *report.Report, gs []goBench) error {
	var first error
	for _, g := range gs {
		if err := g.run(r); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// fleet: 50 agents in cluster mode against the real kube-apiserver,
// kube-controller-manager and kube-scheduler, KWOK playing the kubelets,
// BGP with BFD and graceful restart to one FRR router, a layer-2 pool
// across them (test/e2e/fleet).
var fleetBench = goBench{
	pkg: "./test/e2e/fleet", bench: "^BenchmarkFleet$", benchtime: "1x", timeout: 40 * time.Minute,
	figures: func(r *report.Report, res benchResults) {
		const b = "BenchmarkFleet"
		fleet := "50 agents, 2,000 Services over 100 Deployments (KWOK's Pods; every 10th Service externalTrafficPolicy Local, 40 in the layer-2 pool)"
		r.Add(report.Figure{Name: fleet + ": created from empty → every BGP VIP in FRR's kernel via its nodes and every layer-2 VIP answered by one node", Unit: "s", Value: res.get(b, "converge_s")})
		r.Printf("MetalLB v0.15.2 is not run at this scale: the fleet lab starts only vipspeaker's agents (docs/decisions.md, 2026-12-07).")
		r.Add(report.Figure{Name: fleet + ": Services converged per second", Unit: "Services/s", Value: res.get(b, "services_per_s")})
		r.Add(report.Figure{Name: fleet + ": agent RSS, median of 50", Unit: "MiB", Value: res.get(b, "rss_p50_MiB")})
		r.Add(report.Figure{Name: fleet + ": agent RSS, largest of 50", Unit: "MiB", Value: res.get(b, "rss_max_MiB")})
		r.Add(report.Figure{Name: fleet + ": CPU seconds per agent over 60 idle seconds, median of 50", Unit: "CPU s", Value: res.get(b, "idle_cpu_p50_s")})
		r.Add(report.Figure{Name: fleet + ": CPU seconds per agent over 60 idle seconds, largest of 50", Unit: "CPU s", Value: res.get(b, "idle_cpu_max_s")})
		r.Add(report.Figure{Name: fleet + ": API requests per agent per second over those 60 idle seconds (vipspeaker_kube_api_requests_total, Lease renewals included)", Unit: "requests/s", Value: res.get(b, "idle_requests_per_agent_s")})
		r.Add(report.Figure{Name: fleet + ": watch events per agent per second over those 60 idle seconds (vipspeaker_kube_watch_events_total)", Unit: "events/s", Value: res.get(b, "idle_watch_events_per_agent_s")})
		r.Add(report.Figure{Name: fleet + ": one more Service → API writes (POST, PATCH, DELETE) by all 50 agents until it is routed and 2 s more", Unit: "writes", Value: res.get(b, "one_service_writes")})
		r.Add(report.Figure{Name: fleet + ": one more Service → watch events per agent until it is routed and 2 s more", Unit: "events", Value: res.get(b, "one_service_watch_events_per_agent")})
		r.Add(report.Figure{Name: fleet + ": one agent frozen (SIGSTOP) → FRR's kernel routes a VIP without it (BFD 100 ms × 3)", Unit: "ms", Value: res.get(b, "frozen_ms"),
			Target: &report.Target{Text: "< 1 s", Checks: []report.Check{report.AtMost("value", 1000)}}})
		r.Add(report.Figure{Name: fleet + ": owner of a layer-2 VIP killed (kill -9) → another node answers ARP", Unit: "ms", Value: res.get(b, "l2_kill9_ms"),
			Target: &report.Target{Text: "< 1 s", Checks: []report.Check{report.AtMost("value", 1000)}}})
		r.Add(report.Figure{Name: fleet + ": rolling restart of all 50 agents (SIGTERM, start, session back with its prefixes), one after the other", Unit: "s", Value: res.get(b, "rolling_s")})
		r.Add(report.Figure{Name: fleet + ": BGP VIPs that lost their route in FRR's kernel during that rolling restart (watched every 50 ms)", Unit: "VIPs", Value: res.get(b, "rolling_lost"),
			Target: &report.Target{Text: "0", Checks: []report.Check{report.AtMost("value", 0)}}})
	},
}
