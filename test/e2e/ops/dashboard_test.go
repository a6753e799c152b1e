package ops_test

import (
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/vipspeaker/vipspeaker/test/lab"
)

// family is a metric family the agent's code registers.
type family struct {
	name string
	kind string // counter, gauge, histogram, summary
	// labels are the variable label names; nil when the code builds them
	// in a way this scan cannot see (then labels are not checked).
	labels []string
	where  string
}

// registeredFamilies finds every vipspeaker_* family the module's non-test
// code registers: the Name of a prometheus.{Gauge,Counter,Histogram,
// Summary}Opts literal (with its labels when it is the first argument of a
// New*Vec call) and the name of a prometheus.NewDesc.
func registeredFamilies(t *testing.T, root string) map[string]*family {
	t.Helper()
	out := map[string]*family{}
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if d.IsDir() {
			switch {
			case rel == ".git", rel == "test", rel == "bin", strings.HasPrefix(d.Name(), "."), d.Name() == "testdata", d.Name() == "vendor":
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		add := func(fam *family, pos token.Pos) {
			if !strings.HasPrefix(fam.name, "vipspeaker_") {
				return
			}
			fam.where = fset.Position(pos).String()
			if old, ok := out[fam.name]; ok && old.labels != nil && fam.labels == nil {
				return
			}
			out[fam.name] = fam
		}
		// Opts literals that are the first argument of a New*Vec call.
		vecOpts := map[*ast.CompositeLit][]string{}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			fn := calleeName(call)
			switch {
			case strings.HasSuffix(fn, "Vec") && len(call.Args) >= 2:
				if lit := compositeOf(call.Args[0]); lit != nil {
					vecOpts[lit] = stringSlice(call.Args[1])
					if vecOpts[lit] == nil {
						vecOpts[lit] = []string{"?"}
					}
				}
			case fn == "NewDesc" && len(call.Args) >= 3:
				if name, ok := stringLit(call.Args[0]); ok {
					kind := "gauge"
					if strings.HasSuffix(name, "_total") {
						kind = "counter"
					}
					add(&family{name: name, kind: kind, labels: stringSlice(call.Args[2])}, call.Pos())
				}
			}
			return true
		})
		ast.Inspect(f, func(n ast.Node) bool {
			lit, ok := n.(*ast.CompositeLit)
			if !ok {
				return true
			}
			kind := optsKind(lit.Type)
			if kind == "" {
				return true
			}
			var parts [3]string // namespace, subsystem, name
			for _, e := range lit.Elts {
				kv, ok := e.(*ast.KeyValueExpr)
				if !ok {
					continue
				}
				key, _ := kv.Key.(*ast.Ident)
				v, _ := stringLit(kv.Value)
				switch key.Name {
				case "Namespace":
					parts[0] = v
				case "Subsystem":
					parts[1] = v
				case "Name":
					parts[2] = v
				}
			}
			var name []string
			for _, p := range parts {
				if p != "" {
					name = append(name, p)
				}
			}
			labels, isVec := vecOpts[lit]
			if !isVec {
				labels = []string{}
			} else if slices.Equal(labels, []string{"?"}) {
				labels = nil
			}
			add(&family{name: strings.Join(name, "_"), kind: kind, labels: labels}, lit.Pos())
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func calleeName(c *ast.CallExpr) string {
	switch f := c.Fun.(type) {
	case *ast.SelectorExpr:
		return f.Sel.Name
	case *ast.Ident:
		return f.Name
	}
	return ""
}

func compositeOf(e ast.Expr) *ast.CompositeLit {
	if u, ok := e.(*ast.UnaryExpr); ok && u.Op == token.AND {
		e = u.X
	}
	lit, _ := e.(*ast.CompositeLit)
	return lit
}

func optsKind(t ast.Expr) string {
	sel, ok := t.(*ast.SelectorExpr)
	if !ok {
		return ""
	}
	switch sel.Sel.Name {
	case "GaugeOpts":
		return "gauge"
	case "CounterOpts":
		return "counter"
	case "HistogramOpts":
		return "histogram"
	case "SummaryOpts":
		return "summary"
	}
	return ""
}

func stringLit(e ast.Expr) (string, bool) {
	b, ok := e.(*ast.BasicLit)
	if !ok || b.Kind != token.STRING {
		return "", false
	}
	s, err := strconv.Unquote(b.Value)
	return s, err == nil
}

// stringSlice returns the strings of a []string{...} literal (empty for
// nil), or nil when e is something else.
func stringSlice(e ast.Expr) []string {
	if id, ok := e.(*ast.Ident); ok && id.Name == "nil" {
		return []string{}
	}
	lit, ok := e.(*ast.CompositeLit)
	if !ok {
		return nil
	}
	out := []string{}
	for _, el := range lit.Elts {
		s, ok := stringLit(el)
		if !ok {
			return nil
		}
		out = append(out, s)
	}
	return out
}

func moduleRoot(t *testing.T) string { return must(t, lab.ModuleRoot) }

// must returns what get returns, failing the test on its error.
func must(t *testing.T, get func() (string, error)) string {
	t.Helper()
	s, err := get()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Labels Prometheus adds to every series of a target.
var targetLabels = map[string]bool{"instance": true, "job": true, "namespace": true, "pod": true, "node": true}

var (
	reSelector = regexp.MustCompile(`\b(vipspeaker_[a-z0-9_]+)(\{([^}]*)\})?`)
	reMatcher  = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)`)
	reRate     = regexp.MustCompile(`\b(rate|irate|increase)\(\s*(vipspeaker_[a-z0-9_]+)`)
	reBy       = regexp.MustCompile(`\b(by|without)\s*\(([^)]*)\)`)
)

// checkExpr reports every way expr disagrees with the registered families.
func checkExpr(expr string, fams map[string]*family) []string {
	var problems []string
	// base resolves a series name to its family (histogram _bucket etc.).
	base := func(n string) (*family, string) {
		if f, ok := fams[n]; ok {
			return f, ""
		}
		for _, suf := range []string{"_bucket", "_sum", "_count"} {
			if f, ok := fams[strings.TrimSuffix(n, suf)]; ok && strings.HasSuffix(n, suf) && (f.kind == "histogram" || f.kind == "summary") {
				if suf == "_bucket" && f.kind == "summary" {
					return nil, ""
				}
				return f, suf
			}
		}
		return nil, ""
	}
	var used []*family
	bucket := false
	for _, m := range reSelector.FindAllStringSubmatch(expr, -1) {
		f, suf := base(m[1])
		if f == nil {
			problems = append(problems, fmt.Sprintf("%s: no such family is registered by the code", m[1]))
			continue
		}
		used = append(used, f)
		bucket = bucket || suf == "_bucket"
		for _, mm := range reMatcher.FindAllStringSubmatch(m[3], -1) {
			l := mm[1]
			if !targetLabels[l] && f.labels != nil && !slices.Contains(f.labels, l) {
				problems = append(problems, fmt.Sprintf("%s has no label %q (it has %v)", f.name, l, f.labels))
			}
		}
	}
	for _, m := range reRate.FindAllStringSubmatch(expr, -1) {
		f, suf := base(m[2])
		if f != nil && f.kind != "counter" && suf == "" {
			problems = append(problems, fmt.Sprintf("%s(%s): a %s is not a counter", m[1], m[2], f.kind))
		}
	}
	for _, m := range reBy.FindAllStringSubmatch(expr, -1) {
		for _, l := range strings.Split(m[2], ",") {
			l = strings.TrimSpace(l)
			if l == "" || targetLabels[l] || (l == "le" && bucket) {
				continue
			}
			for _, f := range used {
				if f.labels != nil && !slices.Contains(f.labels, l) {
					problems = append(problems, fmt.Sprintf("%s (%s) groups by %q, which %s does not have", m[1], m[2], l, f.name))
				}
			}
		}
	}
	return problems
}

type dashboard struct {
	Title      string `json:"title"`
	UID        string `json:"uid"`
	Templating struct {
		List []struct {
			Name  string          `json:"name"`
			Type  string          `json:"type"`
			Query json.RawMessage `json:"query"`
		} `json:"list"`
	} `json:"templating"`
	Panels []dashPanel `json:"panels"`
}

type dashPanel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
	GridPos struct{ H, W, X, Y int } `json:"gridPos"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
}

func loadDashboard(t *testing.T) (dashboard, string) {
	t.Helper()
	path := filepath.Join(moduleRoot(t), "deploy", "grafana", "vipspeaker.json")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	dec := json.NewDecoder(strings.NewReader(string(data)))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("%s is not valid JSON: %v", path, err)
	}
	return d, path
}

// TestDashboardUsesRegisteredMetrics: every expression of every panel names
// only families the code registers, with their labels, and rates only
// counters; the dashboard covers the families operators need.
func TestDashboardUsesRegisteredMetrics(t *testing.T) {
	fams := registeredFamilies(t, moduleRoot(t))
	if len(fams) < 10 {
		t.Fatalf("found only %d registered families; the source scan is broken", len(fams))
	}
	for _, f := range fams {
		t.Logf("registered: %s %s %v (%s)", f.name, f.kind, f.labels, f.where)
	}
	d, path := loadDashboard(t)
	var exprs []string
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
			for _, pr := range checkExpr(tg.Expr, fams) {
				t.Errorf("%s: panel %q, query %s: %s", path, p.Title, tg.RefID, pr)
			}
		}
	}
	for _, v := range d.Templating.List {
		if v.Type == "query" {
			for _, pr := range checkExpr(string(v.Query), fams) {
				t.Errorf("%s: variable %s: %s", path, v.Name, pr)
			}
		}
	}
	all := strings.Join(exprs, "\n")
	for _, want := range []string{
		"vipspeaker_bgp_session_up", "vipspeaker_bgp_advertised_prefixes", "vipspeaker_bfd_session_up",
		"vipspeaker_vips", "vipspeaker_vip_receive_packets_total", "vipspeaker_vip_receive_bytes_total",
		"vipspeaker_arp_requests_received_total", "vipspeaker_arp_replies_sent_total",
		"vipspeaker_ndp_solicitations_received_total", "vipspeaker_ndp_advertisements_sent_total",
		"vipspeaker_gratuitous_sent_total", "vipspeaker_config_last_reload_successful",
		"vipspeaker_reconcile_duration_seconds",
	} {
		if !regexp.MustCompile(`\b` + want + `(_bucket|_sum|_count)?\b`).MatchString(all) {
			t.Errorf("no panel shows %s", want)
		}
	}
}

// TestDashboardStructure: Grafana can import it anywhere: a datasource
// variable, every panel bound to it, unique ids, a 24-column grid.
func TestDashboardStructure(t *testing.T) {
	d, path := loadDashboard(t)
	if d.Title == "" || d.UID == "" {
		t.Errorf("%s: title %q, uid %q: both needed", path, d.Title, d.UID)
	}
	hasDS := false
	for _, v := range d.Templating.List {
		if v.Name == "datasource" && v.Type == "datasource" && strings.Contains(string(v.Query), "prometheus") {
			hasDS = true
		}
	}
	if !hasDS {
		t.Errorf("%s: no Prometheus datasource variable named datasource", path)
	}
	ids := map[int]bool{}
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d used twice", p.ID)
		}
		ids[p.ID] = true
		if p.GridPos.X < 0 || p.GridPos.W <= 0 || p.GridPos.X+p.GridPos.W > 24 || p.GridPos.H <= 0 {
			t.Errorf("panel %q: gridPos %+v outside the 24-column grid", p.Title, p.GridPos)
		}
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q: datasource %+v, want the ${datasource} variable", p.Title, p.Datasource)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			if !strings.Contains(tg.Expr, `instance=~"$instance"`) {
				t.Errorf("panel %q query %s ignores the node selector: %s", p.Title, tg.RefID, tg.Expr)
			}
		}
	}
}

// TestDashboardCheckerCatchesMistakes: the checks above do fail on the
// mistakes they are for.
func TestDashboardCheckerCatchesMistakes(t *testing.T) {
	fams := map[string]*family{
		"vipspeaker_vips":                          {name: "vipspeaker_vips", kind: "gauge", labels: []string{"mode"}},
		"vipspeaker_arp_replies_sent_total":        {name: "vipspeaker_arp_replies_sent_total", kind: "counter", labels: []string{"interface", "path"}},
		"vipspeaker_reconcile_duration_seconds":    {name: "vipspeaker_reconcile_duration_seconds", kind: "histogram", labels: []string{}},
		"vipspeaker_config_last_reload_successful": {name: "vipspeaker_config_last_reload_successful", kind: "gauge", labels: []string{}},
	}
	for _, c := range []struct {
		expr string
		bad  string // a word of the expected problem; "" for none
	}{
		{`sum by (mode) (vipspeaker_vips{instance=~"$instance"})`, ""},
		{`sum by (path) (rate(vipspeaker_arp_replies_sent_total[5m]))`, ""},
		{`histogram_quantile(0.9, sum by (le) (rate(vipspeaker_reconcile_duration_seconds_bucket[5m])))`, ""},
		{`vipspeaker_vip_count`, "no such family"},
		{`rate(vipspeaker_vips[5m])`, "not a counter"},
		{`vipspeaker_vips{pool="x"}`, `no label "pool"`},
		{`sum by (peer) (rate(vipspeaker_arp_replies_sent_total[5m]))`, `groups by "peer"`},
		{`vipspeaker_config_last_reload_successful_bucket`, "no such family"},
	} {
		got := strings.Join(checkExpr(c.expr, fams), "; ")
		if (c.bad == "") != (got == "") || !strings.Contains(got, c.bad) {
			t.Errorf("checkExpr(%s) = %q, want a problem containing %q", c.expr, got, c.bad)
		}
	}
}
