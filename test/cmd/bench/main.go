// Command bench measures vipspeaker on this machine and writes the results,
// with the machine and the date, to bench/results.md. `make bench` runs it.
// It needs root (it makes network namespaces).
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"time"
)

// section is one group of measurements; each adds lines to the report.
type section struct {
	name string
	run  func(r *report) error
}

type report struct {
	lines []string
}

func (r *report) printf(format string, args ...any) {
	line := fmt.Sprintf(format, args...)
	fmt.Println(line)
	r.lines = append(r.lines, line)
}

func main() {
	out := flag.String("out", "bench/results.md", "where to write the results")
	only := flag.String("only", "", "run only the sections whose name contains this")
	flag.Parse()
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "bench: needs root (network namespaces)")
		os.Exit(1)
	}
	sections := []section{
		{"routing", benchRouting},
		{"bgp", benchBGP},
		{"bpf", benchBPF},
	}
	r := &report{}
	r.printf("# vipspeaker benchmarks")
	r.printf("")
	r.printf("- date: %s", time.Now().UTC().Format(time.RFC3339))
	r.printf("- machine: %s", machine())
	r.printf("- go: %s", runtime.Version())
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		r.printf("- load average at start (the machine is shared; compare ratios from one run): %s", strings.Join(strings.Fields(string(b))[:3], " "))
	}
	r.printf("")
	failed := false
	for _, s := range sections {
		if *only != "" && !strings.Contains(s.name, *only) {
			continue
		}
		r.printf("## %s", s.name)
		r.printf("")
		if err := s.run(r); err != nil {
			r.printf("FAILED: %v", err)
			failed = true
		}
		r.printf("")
	}
	if err := os.WriteFile(*out, []byte(strings.Join(r.lines, "\n")+"\n"), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	fmt.Println("results written to", *out)
	if failed {
		os.Exit(1)
	}
}

func machine() string {
	host, _ := os.Hostname()
	cpu := "unknown cpu"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				cpu = strings.TrimSpace(strings.SplitN(l, ":", 2)[1])
				break
			}
		}
	}
	kernel, _ := exec.Command("uname", "-r").Output()
	return fmt.Sprintf("%s, %d cores (%s), kernel %s", host, runtime.NumCPU(), cpu, strings.TrimSpace(string(kernel)))
}

// percentile returns the p-th percentile (0–100) of ds.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(float64(len(s)-1) * p / 100)
	return s[i]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.3f ms", float64(d)/float64(time.Millisecond)) }
