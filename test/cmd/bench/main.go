// Command bench measures vipspeaker on this machine and writes one report,
// bench/RESULTS.md with bench/RESULTS.json beside it: the machine, kernel
// and date; every figure as p50/p99 (or a value) with its baseline
// measured in the same run and its target marked met or missed; and a
// section on how far one node and one cluster go, computed from the
// measured costs. `make bench` runs it; it needs root (network namespaces,
// FRR, XDP). -only runs the sections whose name contains the word; with
// -keep the other sections are carried over from the report already
// there, each marked with the run it comes from.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/vipspeaker/vipspeaker/test/bench/report"
)

// section is one group of measurements.
type section struct {
	name string
	run  func(r *report.Report) error
}

func sections() []section {
	return []section{
		{"routing", benchRouting},
		{"bgp", benchBGP},
		{"bfd", bfdBench.run},
		{"zebra", zebraBench.run},
		{"layer2", benchLayer2},
		{"bpf", benchBPF},
		{"kube", benchKube},
		{"fleet", fleetBench.run},
		{"metallb", benchMetalLB},
		{"realnodes", benchRealNodes},
	}
}

func main() {
	out := flag.String("out", "bench/RESULTS.md", "where to write the report (the JSON goes beside it)")
	only := flag.String("only", "", "run only the sections whose name contains this (comma-separated)")
	keep := flag.Bool("keep", false, "with -only: carry the other sections over from the report already at -out (each marked with the run it comes from)")
	flag.Parse()
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "bench: needs root (network namespaces)")
		os.Exit(1)
	}
	r := report.New(machine())
	selected := func(name string) bool {
		return *only == "" || slices.ContainsFunc(strings.Split(*only, ","), func(o string) bool { return strings.Contains(name, o) })
	}
	jsonPath := strings.TrimSuffix(*out, filepath.Ext(*out)) + ".json"
	kept := map[string]report.Kept{}
	if *keep && *only != "" {
		ks, err := report.LoadKept(*out, jsonPath, func(name string) bool { return !selected(name) })
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench: -keep:", err)
			os.Exit(1)
		}
		for _, k := range ks {
			kept[k.Section] = k
		}
	}
	for _, s := range sections() {
		if !selected(s.name) {
			if k, ok := kept[s.name]; ok {
				r.Keep(k)
			}
			continue
		}
		r.Section(s.name)
		start := time.Now()
		if err := s.run(r); err != nil {
			r.Fail(s.name, err)
		}
		r.Printf("")
		r.Printf("(section took %.0f s)", time.Since(start).Seconds())
		r.Printf("")
	}
	scale := scaleOnPaper(r)
	if err := r.Write(*out, jsonPath, scale, nil); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	fmt.Println("results written to", *out, "and", jsonPath)
	if f := r.Failures(); len(f) > 0 {
		fmt.Fprintf(os.Stderr, "bench: %d sections failed to measure: %s\n", len(f), strings.Join(f, "; "))
		os.Exit(1)
	}
}

func machine() report.Machine {
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
	load := ""
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		load = strings.Join(strings.Fields(string(b))[:3], " ")
	}
	return report.Machine{Host: host, CPU: cpu, Cores: runtime.NumCPU(), Kernel: strings.TrimSpace(string(kernel)), Go: runtime.Version(), LoadAvg: load}
}

// percentile is report.Percentile: nearest rank (so the p99 of fewer than
// 100 samples is their maximum).
func percentile(ds []time.Duration, p float64) time.Duration { return report.Percentile(ds, p) }

func ms(d time.Duration) string { return fmt.Sprintf("%.3f ms", float64(d)/float64(time.Millisecond)) }
