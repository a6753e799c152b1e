// Package report collects what `make bench` measures and writes it twice:
// bench/RESULTS.md for people and bench/RESULTS.json for machines.
//
// A Figure is one measured quantity (p50/p99 over samples, or a single
// value), with the baseline measured in the same run where there is one
// and the target it is held to. Whether a target is met is computed here,
// from the numbers, never written by hand: a missed target stays missed.
package report

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Figure is one measured quantity.
type Figure struct {
	Section string `json:"section"`
	Name    string `json:"name"`
	Unit    string `json:"unit"`
	Samples int    `json:"samples,omitempty"`
	// P50 and P99 over Samples, or Value for a single measurement.
	P50   *float64 `json:"p50,omitempty"`
	P99   *float64 `json:"p99,omitempty"`
	Value *float64 `json:"value,omitempty"`
	// Baseline is the same quantity measured in the same run for what
	// users would otherwise run (gobgpd, the userspace responder, ...).
	Baseline *Baseline `json:"baseline,omitempty"`
	Target   *Target   `json:"target,omitempty"`
	// Result is "met", "missed", or empty when the figure has no target.
	Result string `json:"result,omitempty"`
	Note   string `json:"note,omitempty"`
}

// Baseline is the comparison measured beside a Figure.
type Baseline struct {
	Name  string   `json:"name"`
	P50   *float64 `json:"p50,omitempty"`
	P99   *float64 `json:"p99,omitempty"`
	Value *float64 `json:"value,omitempty"`
	// Ratio is ours / baseline, on p50 (or on the value).
	Ratio *float64 `json:"ratio,omitempty"`
}

// Target is what a figure is held to; every check must hold.
type Target struct {
	Text   string  `json:"text"`
	Checks []Check `json:"checks"`
}

// Check bounds one statistic: "p50", "p99", "value" or "ratio" (ours /
// baseline). Max is an upper bound, Min a lower one.
type Check struct {
	Stat string   `json:"stat"`
	Max  *float64 `json:"max,omitempty"`
	Min  *float64 `json:"min,omitempty"`
}

// F returns a pointer to v, for the optional fields.
func F(v float64) *float64 { return &v }

// AtMost and AtLeast build checks.
func AtMost(stat string, v float64) Check  { return Check{Stat: stat, Max: F(v)} }
func AtLeast(stat string, v float64) Check { return Check{Stat: stat, Min: F(v)} }

// Ms converts a duration to milliseconds.
func Ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// Report holds the lines and figures of one run. It is safe for
// concurrent use.
type Report struct {
	mu       sync.Mutex
	section  string
	lines    []string
	figures  []Figure
	failures []string
	kept     []string // sections carried over: "name (date)"
	start    time.Time
	Machine  Machine
}

// Machine describes where the run happened.
type Machine struct {
	Host    string `json:"host"`
	CPU     string `json:"cpu"`
	Cores   int    `json:"cores"`
	Kernel  string `json:"kernel"`
	Go      string `json:"go"`
	LoadAvg string `json:"load_average_at_start"`
}

// New starts a report.
func New(m Machine) *Report { return &Report{Machine: m, start: time.Now().UTC()} }

// Section starts a new section of detail lines and names the section of
// the figures added after it.
func (r *Report) Section(name string) {
	r.mu.Lock()
	r.section = name
	r.mu.Unlock()
	r.Printf("## %s", name)
	r.Printf("")
}

// Printf adds a detail line (also printed, so a long run shows progress).
func (r *Report) Printf(format string, args ...any) {
	line := fmt.Sprintf(format, args...)
	fmt.Println(line)
	r.mu.Lock()
	r.lines = append(r.lines, line)
	r.mu.Unlock()
}

// Fail records that a section could not measure.
func (r *Report) Fail(section string, err error) {
	r.Printf("FAILED: %v", err)
	r.mu.Lock()
	r.failures = append(r.failures, fmt.Sprintf("%s: %v", section, err))
	r.mu.Unlock()
}

// Failures returns the sections that failed.
func (r *Report) Failures() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.failures...)
}

// Add records a figure: it fills in the section, the baseline ratio and
// the result, and returns the completed figure.
func (r *Report) Add(f Figure) Figure {
	r.mu.Lock()
	defer r.mu.Unlock()
	if f.Section == "" {
		f.Section = r.section
	}
	if b := f.Baseline; b != nil && b.Ratio == nil {
		ours, base := pick(f.P50, f.Value), pick(b.P50, b.Value)
		if ours != nil && base != nil && *base != 0 {
			b.Ratio = F(*ours / *base)
		}
	}
	if f.Target != nil {
		f.Result = "met"
		for _, c := range f.Target.Checks {
			if !c.holds(f) {
				f.Result = "missed"
			}
		}
	}
	r.figures = append(r.figures, f)
	return f
}

// Figures returns the recorded figures.
func (r *Report) Figures() []Figure {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Figure(nil), r.figures...)
}

// Find returns the first figure of section whose name contains name.
func (r *Report) Find(section, name string) (Figure, bool) {
	for _, f := range r.Figures() {
		if f.Section == section && strings.Contains(f.Name, name) {
			return f, true
		}
	}
	return Figure{}, false
}

func pick(a, b *float64) *float64 {
	if a != nil {
		return a
	}
	return b
}

func (c Check) holds(f Figure) bool {
	var v *float64
	switch c.Stat {
	case "p50":
		v = f.P50
	case "p99":
		v = f.P99
	case "value":
		v = f.Value
	case "ratio":
		if f.Baseline != nil {
			v = f.Baseline.Ratio
		}
	}
	if v == nil || math.IsNaN(*v) {
		return false // not measured is not met
	}
	if c.Max != nil && *v > *c.Max {
		return false
	}
	if c.Min != nil && *v < *c.Min {
		return false
	}
	return true
}

// num formats a figure's number with a precision that suits its size.
func num(v *float64) string {
	if v == nil {
		return "–"
	}
	x := *v
	switch a := math.Abs(x); {
	case a >= 1000:
		return fmt.Sprintf("%.0f", x)
	case a >= 10:
		return fmt.Sprintf("%.1f", x)
	default:
		return fmt.Sprintf("%.3g", x)
	}
}

func (f Figure) ours() string {
	if f.P50 != nil || f.P99 != nil {
		return fmt.Sprintf("p50 %s / p99 %s %s", num(f.P50), num(f.P99), f.Unit)
	}
	return num(f.Value) + " " + f.Unit
}

func (b *Baseline) text(unit string) string {
	if b == nil {
		return "–"
	}
	s := b.Name + ": "
	if b.P50 != nil || b.P99 != nil {
		s += fmt.Sprintf("p50 %s / p99 %s %s", num(b.P50), num(b.P99), unit)
	} else {
		s += num(b.Value) + " " + unit
	}
	if b.Ratio != nil {
		s += fmt.Sprintf(" (ours/baseline %s)", num(b.Ratio))
	}
	return s
}

// Markdown renders the report: machine, the table of figures with their
// results, then the sections' detail lines, then extra (the scale section).
func (r *Report) Markdown(extra []string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b strings.Builder
	m := r.Machine
	fmt.Fprintf(&b, "# vipspeaker benchmarks\n\n")
	fmt.Fprintf(&b, "- date: %s\n- machine: %s, %d cores (%s), kernel %s\n- go: %s\n", r.start.Format(time.RFC3339), m.Host, m.Cores, m.CPU, m.Kernel, m.Go)
	fmt.Fprintf(&b, "- load average at start: %s (the machine is shared; compare ratios measured in the same run)\n", m.LoadAvg)
	if len(r.kept) > 0 {
		fmt.Fprintf(&b, "- kept from earlier runs, not measured again in this one: %s\n", strings.Join(r.kept, ", "))
	}
	fmt.Fprintf(&b, "- written by `make bench` (test/cmd/bench); the same figures are in RESULTS.json\n\n")
	met, missed := 0, 0
	for _, f := range r.figures {
		switch f.Result {
		case "met":
			met++
		case "missed":
			missed++
		}
	}
	fmt.Fprintf(&b, "## Summary\n\n%d targets met, %d missed", met, missed)
	if len(r.failures) > 0 {
		fmt.Fprintf(&b, ", %d sections failed to measure", len(r.failures))
	}
	fmt.Fprintf(&b, ".\n\n| section | figure | ours | baseline (same run) | target | result |\n|---|---|---|---|---|---|\n")
	for _, f := range r.figures {
		target, result := "–", "–"
		if f.Target != nil {
			target, result = f.Target.Text, f.Result
			if result == "missed" {
				result = "**missed**"
			}
		}
		name := f.Name
		if f.Samples > 0 {
			name += fmt.Sprintf(" (n=%d)", f.Samples)
		}
		if f.Note != "" {
			name += " — " + f.Note
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", f.Section, name, f.ours(), f.Baseline.text(f.Unit), target, result)
	}
	for _, fl := range r.failures {
		fmt.Fprintf(&b, "\nFAILED (not measured): %s\n", fl)
	}
	b.WriteString("\n")
	for _, l := range r.lines {
		b.WriteString(l)
		b.WriteString("\n")
	}
	for _, l := range extra {
		b.WriteString(l)
		b.WriteString("\n")
	}
	return b.String()
}

// JSON renders the machine, the date, the figures and the failures.
func (r *Report) JSON(extra map[string]any) ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	doc := map[string]any{
		"date":     r.start.Format(time.RFC3339),
		"machine":  r.Machine,
		"figures":  r.figures,
		"failures": r.failures,
	}
	for k, v := range extra {
		doc[k] = v
	}
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return nil, err
	}
	return []byte(b.String()), nil
}

// Write writes the Markdown and JSON files.
func (r *Report) Write(mdPath, jsonPath string, extraLines []string, extraJSON map[string]any) error {
	if err := os.MkdirAll(filepath.Dir(mdPath), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(mdPath, []byte(r.Markdown(extraLines)), 0o644); err != nil {
		return err
	}
	j, err := r.JSON(extraJSON)
	if err != nil {
		return err
	}
	return os.WriteFile(jsonPath, j, 0o644)
}
