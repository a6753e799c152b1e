package report

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
)

// Kept is a section carried over from an earlier run (`make bench
// ONLY=...` with -keep): its figures and detail lines as that run wrote
// them, and that run's date and load.
type Kept struct {
	Section, Date, Load string
	Figures             []Figure
	Lines               []string
}

// LoadKept reads the sections of the report at mdPath (and its JSON at
// jsonPath) that want says to keep. A section the files do not hold is
// left out.
func LoadKept(mdPath, jsonPath string, want func(section string) bool) ([]Kept, error) {
	md, err := os.ReadFile(mdPath)
	if err != nil {
		return nil, err
	}
	js, err := os.ReadFile(jsonPath)
	if err != nil {
		return nil, err
	}
	var doc struct {
		Date    string   `json:"date"`
		Machine Machine  `json:"machine"`
		Figures []Figure `json:"figures"`
	}
	if err := json.Unmarshal(js, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", jsonPath, err)
	}
	lines := map[string][]string{}
	var cur string
	for _, l := range strings.Split(string(md), "\n") {
		if name, ok := strings.CutPrefix(l, "## "); ok {
			cur = name
			continue
		}
		if cur != "" {
			lines[cur] = append(lines[cur], l)
		}
	}
	var out []Kept
	seen := map[string]bool{}
	for _, f := range doc.Figures {
		if seen[f.Section] || !want(f.Section) {
			continue
		}
		seen[f.Section] = true
		ls := lines[f.Section]
		for len(ls) > 0 && ls[0] == "" {
			ls = ls[1:]
		}
		k := Kept{Section: f.Section, Date: doc.Date, Load: doc.Machine.LoadAvg, Lines: ls}
		for _, g := range doc.Figures {
			if g.Section == f.Section {
				k.Figures = append(k.Figures, g)
			}
		}
		// A kept section keeps the note of the run it comes from.
		if len(k.Lines) > 0 && strings.HasPrefix(k.Lines[0], "(kept from") {
			k.Date = strings.TrimSpace(strings.SplitN(strings.TrimPrefix(k.Lines[0], "(kept from the run of "), ",", 2)[0])
		}
		out = append(out, k)
	}
	return out, nil
}

// Keep adds a kept section: its header, a line naming the run it comes
// from, its detail lines and its figures (results as that run computed
// them).
func (r *Report) Keep(k Kept) {
	r.Section(k.Section)
	lines := k.Lines
	for len(lines) > 0 && lines[0] == "" {
		lines = lines[1:]
	}
	if len(lines) > 0 && strings.HasPrefix(lines[0], "(kept from") {
		r.Printf("%s", lines[0])
		lines = lines[1:]
	} else {
		r.Printf("(kept from the run of %s, load %s: this section was not measured again in this run)", k.Date, k.Load)
	}
	for len(lines) > 0 && lines[0] == "" {
		lines = lines[1:]
	}
	r.Printf("")
	for _, l := range lines {
		r.Printf("%s", l)
	}
	r.mu.Lock()
	r.figures = append(r.figures, k.Figures...)
	r.kept = append(r.kept, k.Section+" ("+k.Date+")")
	r.mu.Unlock()
}
