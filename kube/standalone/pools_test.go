package standalone

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/vipspeaker/vipspeaker/config"
	"github.com/vipspeaker/vipspeaker/routing"
)

// The pool gauges follow the pools and the manifests' addresses: sizes per
// family, each address in use counted once (shared or not), addresses
// outside every pool counted nowhere, and a pool that goes away is no
// longer reported.
func TestPoolMetrics(t *testing.T) {
	cfg, errs := config.Parse("vipspeaker.toml", []byte(`
[[pools]]
name = "public"
addresses = ["203.0.113.0/28", "2001:db8:100::/120"]

[[pools]]
name = "lan"
addresses = ["198.51.100.10-198.51.100.20"]
mode = "layer2"
  [pools.layer2]
  interfaces = ["eth0"]
`))
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	reg := prometheus.NewRegistry()
	m, err := NewPoolMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	m.SetPools(cfg.Pools)
	vip := func(s, svc string) routing.VIP {
		return routing.VIP{Addr: netip.MustParseAddr(s), Attrs: routing.Attrs{Service: svc}}
	}
	m.SetVIPs([]routing.VIP{
		vip("203.0.113.1", "demo/a"), vip("203.0.113.1", "demo/b"), // shared: one address
		vip("203.0.113.15", "demo/c"), vip("2001:db8:100::5", "demo/c"),
		vip("198.51.100.12", "demo/d"),
		vip("192.0.2.1", "demo/e"), // in no pool
	})
	want := `
# HELP vipspeaker_pool_addresses Addresses of a pool, per family (saturated for huge IPv6 pools).
# TYPE vipspeaker_pool_addresses gauge
vipspeaker_pool_addresses{family="ipv4",pool="lan"} 11
vipspeaker_pool_addresses{family="ipv4",pool="public"} 16
vipspeaker_pool_addresses{family="ipv6",pool="lan"} 0
vipspeaker_pool_addresses{family="ipv6",pool="public"} 256
# HELP vipspeaker_pool_addresses_in_use Addresses of a pool held by Services, per family.
# TYPE vipspeaker_pool_addresses_in_use gauge
vipspeaker_pool_addresses_in_use{family="ipv4",pool="lan"} 1
vipspeaker_pool_addresses_in_use{family="ipv4",pool="public"} 2
vipspeaker_pool_addresses_in_use{family="ipv6",pool="lan"} 0
vipspeaker_pool_addresses_in_use{family="ipv6",pool="public"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
	m.SetPools(cfg.Pools[:1])
	m.SetVIPs(nil)
	want = `
# HELP vipspeaker_pool_addresses_in_use Addresses of a pool held by Services, per family.
# TYPE vipspeaker_pool_addresses_in_use gauge
vipspeaker_pool_addresses_in_use{family="ipv4",pool="public"} 0
vipspeaker_pool_addresses_in_use{family="ipv6",pool="public"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "vipspeaker_pool_addresses_in_use"); err != nil {
		t.Error(err)
	}
}
