package main

import "testing"

func TestParseBench(t *testing.T) {
	out := `goos: linux
BenchmarkOwnerFailover/kill-2         	      20	         0 ns/op	       564.0 max-ms	       553.0 p50-ms	       564.0 p99-ms
BenchmarkVIPToRouterKernel-2   	      10	 412345678 ns/op	       180.5 native-p50-ms	       240.1 zebra-p50-ms
    zebra_linux_test.go:12: a log line
PASS
`
	res := parseBench(out)
	if v := res.get("BenchmarkOwnerFailover/kill", "p99-ms"); v == nil || *v != 564 {
		t.Errorf("kill p99 = %v", v)
	}
	if v := res.get("BenchmarkVIPToRouterKernel", "zebra-p50-ms"); v == nil || *v != 240.1 {
		t.Errorf("zebra p50 = %v", v)
	}
	if v := res.get("BenchmarkVIPToRouterKernel", "nope"); v != nil {
		t.Errorf("missing metric = %v, want nil", *v)
	}
}
