package main

import (
	"fmt"
	"time"

	"github.com/vipspeaker/vipspeaker/test/bench/report"
)

// metallb: vipspeaker and MetalLB v0.15.2 (built from the module proxy by
// test/metallb) in identical labs, one after the other, measured by the
// same code (test/e2e/sidebyside). Every figure is vipspeaker's with
// MetalLB's as the baseline; the ratio is vipspeaker / MetalLB.
var metallbBenches = []goBench{{
	pkg: "./test/e2e/sidebyside", bench: "^BenchmarkSideBySide$", benchtime: "1x", timeout: 40 * time.Minute,
	figures: func(r *report.Report, res benchResults) {
		const ours, theirs = "BenchmarkSideBySide/vipspeaker", "BenchmarkSideBySide/metallb"
		vs := sideBySide{r: r, res: res, ours: ours, theirs: theirs}
		vs.latency("Service created → route in FRR's kernel via all 3 nodes", "route", 100, nil)
		vs.latency("of which: create → status carries the address", "status", 100, nil)
		vs.latency("node failure (speaker frozen) → its next hop gone at FRR; vipspeaker BFD 100 ms × 3, MetalLB hold timer 3 s (its shortest)", "freeze", 10,
			[]report.Check{report.AtMost("p99", 1000)})
		vs.latency("L2: owner's speaker killed (kill -9) → first ARP reply from the new owner at the client", "l2kill", 10,
			[]report.Check{report.AtMost("p99", 1000)})
		vs.count("speaker kill -9 and restart ×5: pings lost to a BGP VIP (Local policy, only that node announces; one ping per 10 ms)", "restart_bgp_lost")
		vs.count("speaker kill -9 and restart ×5: longest time the router had no route to that VIP (ms)", "restart_bgp_route_gap_max_ms")
		vs.count("speaker kill -9 and restart ×5: pings lost to an L2 VIP that node answers for (one ping per 10 ms)", "restart_l2_lost")
		vs.count("speaker kill -9 and restart ×5: ARP requests for that L2 VIP left unanswered (one per 10 ms; what a client whose entry runs out meanwhile sends)", "restart_l2_arp_unanswered")
		vs.value("speaker kill -9 and restart ×5: longest ARP outage for that L2 VIP (first unanswered request → next reply)", "ms", "restart_l2_arp_gap_max_ms")
		vs.latency("config change (community added/removed on everything advertised) → FRR shows it", "community", 10, nil)
		vs.count("BGP sessions reset by those 10 config changes", "community_resets")
	},
}, {
	pkg: "./test/e2e/sidebyside", bench: "^BenchmarkSideBySideScale$", benchtime: "1x", timeout: 60 * time.Minute,
	figures: func(r *report.Report, res benchResults) {
		for _, n := range []string{"1000", "5000"} {
			vs := sideBySide{r: r, res: res, ours: "BenchmarkSideBySideScale/vipspeaker/" + n, theirs: "BenchmarkSideBySideScale/metallb/" + n}
			vs.value(n+" Services created at once: first create → all routed at FRR via all 3 nodes", "s", "all_routed_s")
			vs.value(n+" Services: largest speaker RSS", "MiB", "speaker_rss_max_MiB")
			vs.value(n+" Services: controller RSS (vipspeaker has none: its allocator runs in one agent)", "MiB", "controller_rss_MiB")
			vs.value(n+" Services: RSS of all the system's processes (3 speakers + controller)", "MiB", "total_rss_MiB")
		}
		vs := sideBySide{r: r, res: res, ours: "BenchmarkSideBySideScale/vipspeaker/1000", theirs: "BenchmarkSideBySideScale/metallb/1000"}
		vs.value("CPU seconds used by the 3 speakers over 60 idle seconds with 1,000 Services", "CPU s", "idle_cpu_s_speakers")
		vs.value("CPU seconds used by the controller over those 60 s", "CPU s", "idle_cpu_s_controller")
	},
}}

func benchMetalLB(r *report.Report) error { return runAll(r, metallbBenches) }

// sideBySide turns the two systems' metrics into figures: vipspeaker's
// numbers, MetalLB's as the baseline, a target of doing at least as well
// as MetalLB (lower is better for every figure here), and a note saying
// so wherever MetalLB does better.
type sideBySide struct {
	r            *report.Report
	res          benchResults
	ours, theirs string
}

func (s sideBySide) add(f report.Figure, text string, checks []report.Check) {
	f.Target = &report.Target{Text: text, Checks: checks}
	g := s.r.Add(f)
	if b := g.Baseline; b != nil && b.Ratio != nil && *b.Ratio > 1 {
		s.r.Printf("MetalLB does better: %s — vipspeaker %s, MetalLB %s (%.2f×)", g.Name, val(g.P50, g.Value), val(b.P50, b.Value), *b.Ratio)
	}
}

func val(p50, v *float64) string {
	if p50 != nil {
		return fmt.Sprintf("p50 %.1f", *p50)
	}
	if v != nil {
		return fmt.Sprintf("%.1f", *v)
	}
	return "–"
}

func (s sideBySide) latency(name, metric string, n int, extra []report.Check) {
	f := report.Figure{Name: name, Unit: "ms", Samples: n,
		P50: s.res.get(s.ours, metric+"_p50_ms"), P99: s.res.get(s.ours, metric+"_p99_ms"),
		Baseline: &report.Baseline{Name: "MetalLB v0.15.2", P50: s.res.get(s.theirs, metric+"_p50_ms"), P99: s.res.get(s.theirs, metric+"_p99_ms")}}
	text := "no worse than MetalLB"
	if extra != nil {
		text += ", p99 < 1 s"
	}
	s.add(f, text, append([]report.Check{report.AtMost("ratio", 1)}, extra...))
}

// count is a figure whose target is zero for vipspeaker (lost pings,
// session resets); MetalLB's count is the baseline.
func (s sideBySide) count(name, metric string) {
	f := report.Figure{Name: name, Unit: "", Value: s.res.get(s.ours, metric),
		Baseline: &report.Baseline{Name: "MetalLB v0.15.2", Value: s.res.get(s.theirs, metric)}}
	f.Target = &report.Target{Text: "0", Checks: []report.Check{report.AtMost("value", 0)}}
	g := s.r.Add(f)
	if b := g.Baseline; g.Value != nil && b.Value != nil && *g.Value > *b.Value {
		s.r.Printf("MetalLB does better: %s — vipspeaker %.0f, MetalLB %.0f", g.Name, *g.Value, *b.Value)
	}
}

func (s sideBySide) value(name, unit, metric string) {
	s.add(report.Figure{Name: name, Unit: unit, Value: s.res.get(s.ours, metric),
		Baseline: &report.Baseline{Name: "MetalLB v0.15.2", Value: s.res.get(s.theirs, metric)}},
		"no worse than MetalLB", []report.Check{report.AtMost("ratio", 1)})
}
