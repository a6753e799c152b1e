package report

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestTargetsAreComputedFromTheNumbers(t *testing.T) {
	r := New(Machine{Host: "h", Cores: 2})
	r.Section("bgp")
	met := r.Add(Figure{Name: "fast", Unit: "ms", P50: F(30), P99: F(70),
		Target: &Target{Text: "p50 ≤ 40, p99 ≤ 80", Checks: []Check{AtMost("p50", 40), AtMost("p99", 80)}}})
	missed := r.Add(Figure{Name: "slow", Unit: "ms", P50: F(30), P99: F(81),
		Target: &Target{Text: "p50 ≤ 40, p99 ≤ 80", Checks: []Check{AtMost("p50", 40), AtMost("p99", 80)}}})
	ratio := r.Add(Figure{Name: "rate", Unit: "1/s", Value: F(500),
		Baseline: &Baseline{Name: "userspace", Value: F(100)},
		Target:   &Target{Text: "≥ 5× baseline", Checks: []Check{AtLeast("ratio", 5)}}})
	unmeasured := r.Add(Figure{Name: "nothing", Unit: "ms",
		Target: &Target{Text: "p50 ≤ 1", Checks: []Check{AtMost("p50", 1)}}})
	plain := r.Add(Figure{Name: "info", Unit: "MiB", Value: F(3)})

	for _, c := range []struct {
		f    Figure
		want string
	}{{met, "met"}, {missed, "missed"}, {ratio, "met"}, {unmeasured, "missed"}, {plain, ""}} {
		if c.f.Result != c.want {
			t.Errorf("%s: result %q, want %q", c.f.Name, c.f.Result, c.want)
		}
		if c.f.Section != "bgp" {
			t.Errorf("%s: section %q", c.f.Name, c.f.Section)
		}
	}
	if ratio.Baseline.Ratio == nil || *ratio.Baseline.Ratio != 5 {
		t.Errorf("ratio = %v, want 5", ratio.Baseline.Ratio)
	}

	md := r.Markdown([]string{"## scale"})
	for _, want := range []string{"2 targets met, 2 missed", "| bgp | slow | p50 30.0 / p99 81.0 ms |", "**missed**", "userspace: 100.0 1/s (ours/baseline 5)", "## scale"} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	j, err := r.JSON(nil)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Figures []Figure `json:"figures"`
	}
	if err := json.Unmarshal(j, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Figures) != 5 || doc.Figures[1].Result != "missed" {
		t.Errorf("JSON figures = %+v", doc.Figures)
	}
}

// A section kept from an earlier report comes back with its figures, its
// lines and a line naming that run; kept again, it still names the first.
func TestKeep(t *testing.T) {
	dir := t.TempDir()
	md, js := dir+"/R.md", dir+"/R.json"
	old := New(Machine{LoadAvg: "1 2 3"})
	old.Section("a")
	old.Printf("detail of a")
	old.Add(Figure{Name: "fa", Unit: "ms", Value: F(5), Target: &Target{Text: "≤ 1", Checks: []Check{AtMost("value", 1)}}})
	old.Section("b")
	old.Add(Figure{Name: "fb", Unit: "ms", Value: F(7)})
	if err := old.Write(md, js, nil, nil); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		ks, err := LoadKept(md, js, func(s string) bool { return s == "a" })
		if err != nil || len(ks) != 1 || len(ks[0].Figures) != 1 || ks[0].Figures[0].Result != "missed" {
			t.Fatalf("kept %+v, %v; want section a with its missed figure", ks, err)
		}
		r := New(Machine{})
		r.Keep(ks[0])
		r.Section("b")
		r.Add(Figure{Name: "fb", Unit: "ms", Value: F(8)})
		got := r.Markdown(nil)
		for _, want := range []string{"kept from earlier runs, not measured again in this one: a (", "(kept from the run of " + old.start.Format(time.RFC3339) + ", load 1 2 3", "detail of a", "| a | fa | 5 ms", "| b | fb | 8 ms", "0 targets met, 1 missed"} {
			if !strings.Contains(got, want) {
				t.Errorf("report lacks %q:\n%s", want, got)
			}
		}
		if err := r.Write(md, js, nil, nil); err != nil {
			t.Fatal(err)
		}
	}
}
