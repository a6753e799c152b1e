package standalone_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vipspeaker/vipspeaker/test/lab"
)

// scrape reads the agent's /metrics from inside the node's namespace and
// returns the samples whose name and labels start with prefix.
func scrape(h *lab.Host, addr, prefix string) (map[string]float64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := h.Run(ctx, "curl", "-sf", "http://"+addr+"/metrics")
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", addr, err)
	}
	m := map[string]float64{}
	for _, l := range strings.Split(out, "\n") {
		if !strings.HasPrefix(l, prefix) {
			continue
		}
		i := strings.LastIndexByte(l, ' ')
		v, err := strconv.ParseFloat(l[i+1:], 64)
		if err != nil {
			return nil, fmt.Errorf("metric line %q: %w", l, err)
		}
		m[l[:i]] = v
	}
	return m, nil
}

// With [[pools]] in standalone mode the agent exports the pool gauges of
// docs/INTERFACE.md: the pool's size per family, and the addresses the
// Service manifests hold (a shared address once), following manifests and
// config edits.
func TestPoolGaugesStandalone(t *testing.T) {
	tp := newTopo(t)
	pool := func(v4 string) {
		t.Helper()
		if err := tp.a.WriteConfig("vipspeaker.toml", lab.AgentTOML{DummyInterface: true,
			Pools: []lab.Pool{{Name: "public", Addresses: []string{v4, "2001:db8:100::/120"}}}}.String()); err != nil {
			t.Fatal(err)
		}
	}
	pool("203.0.113.0/28")
	tp.write(t, "web", service("web", "203.0.113.1", "2001:db8:100::1"))
	tp.write(t, "api", service("api", "203.0.113.1"))
	tp.write(t, "other", service("other", "203.0.113.200"))
	const addr = "127.0.0.1:9472"
	tp.startAgent(t, "--metrics-addr", addr)
	want := func(w map[string]float64) {
		t.Helper()
		lab.Eventually(t, 30*time.Second, 100*time.Millisecond, func() error {
			got, err := scrape(tp.node, addr, "vipspeaker_pool_addresses")
			if err != nil {
				return err
			}
			for k, v := range w {
				if g, ok := got[k]; !ok || g != v {
					return fmt.Errorf("%s = %v (present %v), want %v; all: %v", k, g, ok, v, got)
				}
			}
			return nil
		})
	}
	want(map[string]float64{
		`vipspeaker_pool_addresses{family="ipv4",pool="public"}`:        16,
		`vipspeaker_pool_addresses{family="ipv6",pool="public"}`:        256,
		`vipspeaker_pool_addresses_in_use{family="ipv4",pool="public"}`: 1,
		`vipspeaker_pool_addresses_in_use{family="ipv6",pool="public"}`: 1,
	})
	tp.write(t, "api", service("api", "203.0.113.2"))
	if err := os.Remove(tp.path("web")); err != nil {
		t.Fatal(err)
	}
	want(map[string]float64{
		`vipspeaker_pool_addresses_in_use{family="ipv4",pool="public"}`: 1,
		`vipspeaker_pool_addresses_in_use{family="ipv6",pool="public"}`: 0,
	})
	// The pool grows to hold 203.0.113.200 too.
	pool("203.0.113.0/24")
	want(map[string]float64{
		`vipspeaker_pool_addresses{family="ipv4",pool="public"}`:        256,
		`vipspeaker_pool_addresses_in_use{family="ipv4",pool="public"}`: 2,
	})
}
