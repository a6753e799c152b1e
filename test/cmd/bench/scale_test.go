package main

import (
	"strings"
	"testing"

	"github.com/vipspeaker/vipspeaker/test/bench/report"
)

// TestScaleOnPaperComputes: the lines are arithmetic on the run's figures
// (127.4 MiB with 10,000 VIPs is 13.0 KiB per VIP, so 100,000 VIPs at that
// slope are 1.24 GiB, not "under 1 GiB"), figures missing from the run are
// said to be missing, and the layer2 line states the map's capacity and
// what happens past it.
func TestScaleOnPaperComputes(t *testing.T) {
	r := report.New(report.Machine{})
	r.Section("bgp")
	r.Add(report.Figure{Name: "agent RSS with 10000 VIPs announced", Unit: "MiB", Value: report.F(127.4)})
	r.Add(report.Figure{Name: "10000 VIPs from a cold start → all in FRR's BGP table", Unit: "ms", Value: report.F(3520)})
	text := strings.Join(scaleOnPaper(r), "\n")
	for _, want := range []string{
		"at most 13.0 KiB per VIP", "100,000 VIPs would take 1.24 GiB", "no run here measured more than 10000",
		"2841 prefixes/s", "Kernel cost per VIP: not measured in this run", "holds 16384 (VIP, interface) pairs",
		"the userspace responder answers and announces the rest",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("scale on paper lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "under 1 GiB") {
		t.Errorf("scale on paper still claims under 1 GiB:\n%s", text)
	}
}
