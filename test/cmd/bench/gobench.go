package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/vipspeaker/vipspeaker/test/bench/report"
)

// goBench runs Go benchmarks of one package (`go test -bench`), which
// report their figures with b.ReportMetric, and turns the metrics into
// report figures.
type goBench struct {
	pkg       string
	bench     string // -bench regexp
	benchtime string // e.g. "20x"
	timeout   time.Duration
	// figures adds the figures; results maps a benchmark's name (without
	// the -GOMAXPROCS suffix, sub-benchmarks as "Name/sub") to its metrics.
	figures func(r *report.Report, results benchResults)
}

// benchResults: benchmark name → metric unit → value.
type benchResults map[string]map[string]float64

// get returns a metric, or nil when the benchmark did not report it (the
// figure then shows as not measured, and its target as missed).
func (b benchResults) get(name, unit string) *float64 {
	if m, ok := b[name]; ok {
		if v, ok := m[unit]; ok {
			return report.F(v)
		}
	}
	return nil
}

// count returns a metric that counts samples (the n= of a figure), 0 when
// the benchmark did not report it (the figure then shows no n).
func (b benchResults) count(name, unit string) int {
	if v := b.get(name, unit); v != nil {
		return int(*v)
	}
	return 0
}

var procSuffix = regexp.MustCompile(`-\d+$`)

// parseBench reads `go test -bench` output.
func parseBench(out string) benchResults {
	res := benchResults{}
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		if _, err := strconv.Atoi(f[1]); err != nil {
			continue
		}
		name := procSuffix.ReplaceAllString(f[0], "")
		m := map[string]float64{}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				break
			}
			m[f[i+1]] = v
		}
		res[name] = m
	}
	return res
}

// run executes the benchmark and adds its figures; the benchmark lines
// and the tests' own log lines go to the report's details.
func (g goBench) run(r *report.Report) error {
	timeout := g.timeout
	if timeout == 0 {
		timeout = 20 * time.Minute
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout+time.Minute)
	defer cancel()
	args := []string{"test", "-v", "-run", "^$", "-bench", g.bench, "-benchtime", g.benchtime, "-count", "1", "-timeout", timeout.String(), g.pkg}
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod")
	start := time.Now()
	out, err := cmd.CombinedOutput()
	r.Printf("`go %s` (%.0f s):", strings.Join(args, " "), time.Since(start).Seconds())
	r.Printf("")
	r.Printf("```")
	for _, l := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		if t := strings.TrimSpace(l); strings.HasPrefix(t, "Benchmark") || strings.Contains(t, "_test.go:") || strings.HasPrefix(t, "FAIL") || strings.HasPrefix(t, "---") {
			r.Printf("%s", l)
		}
	}
	r.Printf("```")
	r.Printf("")
	res := parseBench(string(out))
	if g.figures != nil {
		g.figures(r, res)
	}
	if err != nil {
		return fmt.Errorf("go test -bench %s %s: %w", g.bench, g.pkg, err)
	}
	if len(res) == 0 {
		return fmt.Errorf("go test -bench %s %s: no benchmark results", g.bench, g.pkg)
	}
	return nil
}
