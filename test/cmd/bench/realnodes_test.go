package main

import (
	"strings"
	"testing"
)

// The realnodes section reads each scenario's "metrics:" lines from go
// test -json, per system and subtest (the test's own lines as "install"),
// and lists the figures and results.
func TestParseScenarios(t *testing.T) {
	out := strings.Join([]string{
		`{"Action":"output","Test":"TestE2EReal","Output":"    realnodes_linux_test.go:97: metrics: install_ready_ms=4200\n"}`,
		`{"Action":"output","Test":"TestE2EReal/drain","Output":"    scenarios_linux_test.go:180: figure: kubectl drain n3 under 50 req/s (BGP): 900 requests\n"}`,
		`{"Action":"output","Test":"TestE2EReal/drain","Output":"    scenarios_linux_test.go:181: metrics: failed=0 gap_ms=41 ok=900 sent=900\n"}`,
		`{"Action":"output","Test":"TestE2ERealMetalLB/drain","Output":"    scenarios_linux_test.go:181: metrics: failed=12 gap_ms=2500\n"}`,
		`{"Action":"output","Test":"TestE2ERealMetalLB/drain","Output":"    scenarios_linux_test.go:190: why it failed\n"}`,
		`{"Action":"fail","Test":"TestE2ERealMetalLB/drain"}`,
		`{"Action":"output","Test":"TestDualStack","Output":"    realnodes_linux_test.go:97: metrics: install_ready_ms=5100\n"}`,
		`{"Action":"output","Test":"TestDualStackMetalLB/layer2","Output":"    dualstack_linux_test.go:120: metrics: first_answer_v6_ms=4400\n"}`,
		`{"Action":"output","Test":"TestOther/x","Output":"metrics: failed=7\n"}`,
		`not json`,
	}, "\n")
	res, details := parseScenarios([]byte(out))
	for _, c := range []struct {
		bench, metric string
		want          float64
	}{
		{"vipspeaker/install", "install_ready_ms", 4200},
		{"vipspeaker/drain", "failed", 0},
		{"vipspeaker/drain", "gap_ms", 41},
		{"metallb/drain", "failed", 12},
		{"vipspeaker/dual-stack-install", "install_ready_ms", 5100},
		{"metallb/dual-stack-layer2", "first_answer_v6_ms", 4400},
	} {
		if v := res.get(c.bench, c.metric); v == nil || *v != c.want {
			t.Errorf("%s %s = %v, want %v", c.bench, c.metric, v, c.want)
		}
	}
	if len(res) != 5 {
		t.Errorf("results for %d scenarios, want 5 (no other test's): %v", len(res), res)
	}
	got := strings.Join(details, "\n")
	for _, want := range []string{"vipspeaker/drain: kubectl drain n3", "FAIL TestE2ERealMetalLB/drain", "190: why it failed"} {
		if !strings.Contains(got, want) {
			t.Errorf("details lack %q:\n%s", want, got)
		}
	}
}
