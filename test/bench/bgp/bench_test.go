package bgpbench

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestBench runs the measurements when VIPSPEAKER_BENCH=1 and writes them,
// with the machine and the date, to results.md here:
//
//	VIPSPEAKER_BENCH=1 go test -run TestBench -timeout 20m -v ./test/bench/bgp
//
// VIPSPEAKER_BENCH_ONLY=cold (or vip, policy; comma separated) runs part.
func TestBench(t *testing.T) {
	if os.Getenv("VIPSPEAKER_BENCH") != "1" {
		t.Skip("set VIPSPEAKER_BENCH=1 to run the BGP measurements (minutes, root)")
	}
	var lines []string
	printf := func(format string, args ...any) {
		l := fmt.Sprintf(format, args...)
		t.Log(l)
		lines = append(lines, l)
	}
	host, _ := os.Hostname()
	head := []string{
		"# vipspeaker BGP measurements",
		"",
		"- date: " + time.Now().UTC().Format(time.RFC3339),
		fmt.Sprintf("- machine: %s, %s, %d CPUs, %s", host, cpuModel(), runtime.NumCPU(), kernel()),
		"- go: " + runtime.Version(),
		"",
	}
	err := Run(printf, strings.Split(os.Getenv("VIPSPEAKER_BENCH_ONLY"), ",")...)
	if err != nil {
		lines = append(lines, "FAILED: "+err.Error())
	}
	if werr := os.WriteFile("results.md", []byte(strings.Join(append(head, lines...), "\n")+"\n"), 0o644); werr != nil {
		t.Error(werr)
	}
	if err != nil {
		t.Fatal(err)
	}
}

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "model name") {
			return strings.TrimSpace(strings.SplitN(l, ":", 2)[1])
		}
	}
	return "unknown cpu"
}

func kernel() string {
	b, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	return "kernel " + strings.TrimSpace(string(b))
}
