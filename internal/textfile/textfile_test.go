package textfile

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/vipspeaker/vipspeaker/bgp"
	"github.com/vipspeaker/vipspeaker/internal/nstest"
	"github.com/vipspeaker/vipspeaker/routing"
	"github.com/vipspeaker/vipspeaker/status"
)

// tfAgent is a registry as run() builds it (Go and process collectors,
// the reload history, the VIP table's and BGP speaker's families) with a
// VIP table in a fresh network namespace.
type tfAgent struct {
	reg     *prometheus.Registry
	table   *routing.Table
	reloads *status.Reloads
}

func newTFAgent(t *testing.T) *tfAgent {
	t.Helper()
	ns := nstest.New(t)
	log := slog.New(slog.DiscardHandler)
	ta := &tfAgent{reg: prometheus.NewRegistry()}
	ta.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	ta.reloads = status.NewReloads(ta.reg)
	ta.reloads.Accepted()
	if _, err := bgp.New(bgp.Options{RunDir: t.TempDir(), Logger: log, Registerer: ta.reg, NodeName: "node1"}); err != nil {
		t.Fatal(err)
	}
	table, err := routing.New(routing.Options{Interface: "kube-lb0", Kind: "ifb", NetnsPath: ns.Path(),
		Logger: log, Registerer: ta.reg})
	if err != nil {
		t.Fatal(err)
	}
	ta.table = table
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = table.Run(ctx); close(done) }()
	t.Cleanup(func() {
		cancel()
		<-done
		table.Close()
	})
	select {
	case <-table.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("VIP table not ready within 10s")
	}
	return ta
}

func (ta *tfAgent) set(t *testing.T, vips ...routing.VIP) {
	t.Helper()
	if err := ta.table.Set(context.Background(), vips); err != nil {
		t.Fatal(err)
	}
}

func tfVIP(addr, service string, mode routing.Mode) routing.VIP {
	return routing.VIP{Addr: netip.MustParseAddr(addr), Attrs: routing.Attrs{Service: service, Mode: mode, Pool: "public"}}
}

func labelValue(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// readTextfile parses path the way node_exporter's textfile collector does.
func readTextfile(t *testing.T, path string) (map[string]*dto.MetricFamily, string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(strings.NewReader(string(data)))
	if err != nil {
		t.Fatalf("%s does not parse as the text format: %v\n%s", path, err, data)
	}
	return mfs, string(data)
}

func vipsGauge(mfs map[string]*dto.MetricFamily, mode string) (float64, error) {
	mf := mfs["vipspeaker_vips"]
	if mf == nil {
		return 0, fmt.Errorf("no vipspeaker_vips")
	}
	for _, m := range mf.GetMetric() {
		if labelValue(m, "mode") == mode {
			return m.GetGauge().GetValue(), nil
		}
	}
	return 0, fmt.Errorf("no vipspeaker_vips{mode=%q}", mode)
}

func TestTextfileWrittenAtStartAndAtExit(t *testing.T) {
	ta := newTFAgent(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "vipspeaker.prom")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	// An interval far longer than the test: only the first and the last
	// write happen.
	go func() { done <- Run(ctx, ta.reg, path, time.Hour, nil) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := os.Stat(path); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not written at start", path)
		}
		time.Sleep(10 * time.Millisecond)
	}
	mfs, text := readTextfile(t, path)
	// No VIP yet: the series is 0 or not there yet.
	if n, err := vipsGauge(mfs, "bgp"); err == nil && n != 0 {
		t.Errorf("at start vipspeaker_vips{mode=bgp} = %v; want 0 or absent", n)
	}
	for name := range mfs {
		if !strings.HasPrefix(name, "vipspeaker_") {
			t.Errorf("%s is in the textfile; node_exporter has its own and would fail the scrape", name)
		}
	}
	for _, want := range []string{"vipspeaker_config_last_reload_successful", "vipspeaker_config_generation",
		"vipspeaker_reconcile_duration_seconds", "vipspeaker_bgp_announced_vips"} {
		if mfs[want] == nil {
			t.Errorf("%s missing from the textfile:\n%s", want, text)
		}
	}
	// The same lint promtool's `check metrics` applies.
	problems, err := promlint.New(strings.NewReader(text)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}

	ta.set(t, tfVIP("203.0.113.10", "demo/web", ""), tfVIP("203.0.113.11", "demo/web", ""),
		tfVIP("198.51.100.7", "demo/l2", routing.ModeLayer2))
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	mfs, _ = readTextfile(t, path)
	if n, err := vipsGauge(mfs, "bgp"); err != nil || n != 2 {
		t.Errorf("after exit vipspeaker_vips{mode=bgp} = %v, %v; want 2 (the exit write)", n, err)
	}
	if n, err := vipsGauge(mfs, "layer2"); err != nil || n != 1 {
		t.Errorf("after exit vipspeaker_vips{mode=layer2} = %v, %v; want 1", n, err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o644 {
		t.Errorf("%s mode %v, want 0644 (node_exporter runs as another user)", path, fi.Mode())
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 1 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("the directory holds %v; want only vipspeaker.prom (no temporary files left)", names)
	}
}

func TestTextfileFollowsChanges(t *testing.T) {
	ta := newTFAgent(t)
	path := filepath.Join(t.TempDir(), "vipspeaker.prom")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, ta.reg, path, 20*time.Millisecond, nil) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	wait := func(what string, f func(map[string]*dto.MetricFamily) error) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		var err error
		for time.Now().Before(deadline) {
			if _, serr := os.Stat(path); serr == nil {
				mfs, _ := readTextfile(t, path)
				if err = f(mfs); err == nil {
					return
				}
			} else {
				err = serr
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatalf("%s: %v", what, err)
	}
	ta.set(t, tfVIP("203.0.113.20", "demo/web", ""))
	wait("one bgp VIP", func(mfs map[string]*dto.MetricFamily) error {
		if n, err := vipsGauge(mfs, "bgp"); err != nil || n != 1 {
			return fmt.Errorf("vipspeaker_vips{mode=bgp} = %v, %v", n, err)
		}
		return nil
	})
	ta.reloads.Refused()
	wait("refused reload", func(mfs map[string]*dto.MetricFamily) error {
		mf := mfs["vipspeaker_config_last_reload_successful"]
		if mf == nil || len(mf.GetMetric()) != 1 || mf.GetMetric()[0].GetGauge().GetValue() != 0 {
			return fmt.Errorf("vipspeaker_config_last_reload_successful = %v, want 0", mf)
		}
		return nil
	})
}

func TestTextfileBadDirectory(t *testing.T) {
	err := Run(context.Background(), prometheus.NewRegistry(), filepath.Join(t.TempDir(), "missing", "vipspeaker.prom"), time.Second, nil)
	if err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("Run into a missing directory: %v, want an error naming it", err)
	}
}
