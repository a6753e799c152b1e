package config

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/vipspeaker/vipspeaker/routing"
)

func TestPoolAdvertise(t *testing.T) {
	const doc = `
[[pools]]
name = "rack1"
addresses = ["198.51.100.0/24", "2001:db8:5::/64", "203.0.113.64-203.0.113.127"]
[pools.advertise]
node-selector = "topology.kubernetes.io/zone in (rack1, rack2)"
communities = ["64512:100", "no-export", "large:64512:1:2", "64512:100"]
local-pref = 200
aggregation-length = 26
aggregation-length-v6 = 64
`
	c, errs := Parse("vipspeaker.toml", []byte(doc))
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	p := c.Pool("rack1")
	want := PoolAdvertise{
		NodeSelector:        "topology.kubernetes.io/zone in (rack1, rack2)",
		Communities:         []string{"64512:100", "65535:65281"},
		LargeCommunities:    []string{"64512:1:2"},
		LocalPref:           200,
		AggregationLength:   26,
		AggregationLengthV6: 64,
	}
	if diff := cmp.Diff(want, p.Advertise); diff != "" {
		t.Errorf("advertise (-want +got):\n%s", diff)
	}
	for _, tc := range []struct {
		labels map[string]string
		want   bool
	}{
		{map[string]string{"topology.kubernetes.io/zone": "rack2", "x": "y"}, true},
		{map[string]string{"topology.kubernetes.io/zone": "rack3"}, false},
		{nil, false},
	} {
		if got := p.SelectsNode(tc.labels); got != tc.want {
			t.Errorf("SelectsNode(%v) = %v, want %v", tc.labels, got, tc.want)
		}
	}
	var none *Pool
	if !none.SelectsNode(nil) || !(&Pool{}).SelectsNode(nil) {
		t.Error("a missing pool or one without node-selector must select every node")
	}

	svc := routing.Attrs{Service: "a/b", Communities: []string{"1:1", "64512:100"}}
	got := p.Advertised(svc, netip.MustParseAddr("198.51.100.7"), false)
	if !slices.Equal(got.Communities, []string{"1:1", "64512:100", "65535:65281"}) || !slices.Equal(got.LargeCommunities, []string{"64512:1:2"}) ||
		got.LocalPref != 200 || got.AggregateBits != 26 {
		t.Errorf("Advertised(cluster, v4) = %+v", got)
	}
	if got := p.Advertised(svc, netip.MustParseAddr("2001:db8:5::9"), false); got.AggregateBits != 64 {
		t.Errorf("Advertised(cluster, v6).AggregateBits = %d, want 64", got.AggregateBits)
	}
	if got := p.Advertised(svc, netip.MustParseAddr("198.51.100.7"), true); got.AggregateBits != 0 {
		t.Errorf("Advertised(local) aggregates to /%d; a Local Service keeps its host route", got.AggregateBits)
	}
	v := routing.VIP{Addr: netip.MustParseAddr("198.51.100.77"), Attrs: p.Advertised(svc, netip.MustParseAddr("198.51.100.77"), true)}
	if v.AnnouncedPrefix() != netip.MustParsePrefix("198.51.100.77/32") {
		t.Errorf("AnnouncedPrefix(local) = %s", v.AnnouncedPrefix())
	}
	v.Attrs.AggregateBits = 26
	if v.AnnouncedPrefix() != netip.MustParsePrefix("198.51.100.64/26") {
		t.Errorf("AnnouncedPrefix(/26) = %s", v.AnnouncedPrefix())
	}
}

func TestPoolAdvertiseErrors(t *testing.T) {
	const doc = `
[[pools]]
name = "a"
addresses = ["198.51.100.0/25", "203.0.113.10-203.0.113.20"]
[pools.advertise]
node-selector = "zone in (a"
communities = ["65536:1"]
local-pref = -1
aggregation-length = 24
aggregation-length-v6 = 129

[[pools]]
name = "b"
addresses = ["203.0.113.64/26"]
[pools.advertise]
aggregation-length = 0
`
	_, errs := Parse("vipspeaker.toml", []byte(doc))
	want := []string{
		`vipspeaker.toml:6: pools[0].advertise.node-selector: "zone in (a" is not a label selector: `,
		`vipspeaker.toml:7: pools[0].advertise.communities: "65536:1": "65536" is not a number in 0..65535`,
		`vipspeaker.toml:8: pools[0].advertise.local-pref: -1 is not a LOCAL_PREF (0..4294967295)`,
		`vipspeaker.toml:9: pools[0].advertise.aggregation-length: /24 would announce addresses outside the pool: 198.51.100.0-198.51.100.127 is not made of whole /24 blocks`,
		`vipspeaker.toml:10: pools[0].advertise.aggregation-length-v6: 129 is not a prefix length (1..128)`,
		`vipspeaker.toml:16: pools[1].advertise.aggregation-length: 0 is not a prefix length (1..32)`,
	}
	got := errStrings(errs)
	if len(got) != len(want) {
		t.Fatalf("errors:\n%s\nwant %d", got, len(want))
	}
	for i := range want {
		if len(got[i]) < len(want[i]) || got[i][:len(want[i])] != want[i] {
			t.Errorf("error %d:\n got %s\nwant %s…", i, got[i], want[i])
		}
	}
}

func TestForNodeAndHiddenNeighbors(t *testing.T) {
	c, errs := Parse("vipspeaker.toml", []byte(`
[[pools]]
name = "r1"
addresses = ["203.0.113.0/24"]
  [pools.advertise]
  node-selector = "rack=r1"
  aggregation-length = 24
[[pools]]
name = "all"
addresses = ["198.51.100.0/24"]
[[pools]]
name = "l2"
addresses = ["192.0.2.0/24"]
mode = "layer2"
  [pools.layer2]
  interfaces = ["eth0"]
  [pools.advertise]
  node-selector = "rack=r1"

[[peer-nodes]]
neighbors = ["198.18.1.1"]
node-selector = "rack=r1"
[[peer-nodes]]
neighbors = ["198.18.2.1", "198.18.2.2"]
node-selector = "rack=r2"
`))
	if errs != nil {
		t.Fatal(errs)
	}
	vips := c.WithPools([]routing.VIP{
		{Addr: netip.MustParseAddr("203.0.113.5")},
		{Addr: netip.MustParseAddr("198.51.100.5")},
	})
	got := c.ForNode(vips, map[string]string{"rack": "r2"})
	if len(got) != 1 || got[0].Addr != netip.MustParseAddr("198.51.100.5") {
		t.Errorf("ForNode(rack=r2) = %v, want only the unrestricted pool's VIP", got)
	}
	got = c.ForNode(vips, map[string]string{"rack": "r1"})
	if len(got) != 2 || got[0].Attrs.AggregateBits != 24 || got[1].Attrs.AggregateBits != 0 {
		t.Errorf("ForNode(rack=r1) = %+v, want both, the first aggregated to /24", got)
	}

	addrs := func(l []netip.Addr) []string {
		var out []string
		for _, a := range l {
			out = append(out, a.String())
		}
		return out
	}
	if h := addrs(c.HiddenNeighbors(map[string]string{"rack": "r1"}, true)); !slices.Equal(h, []string{"198.18.2.1", "198.18.2.2"}) {
		t.Errorf("hidden on rack=r1: %v", h)
	}
	if h := addrs(c.HiddenNeighbors(nil, false)); len(h) != 3 {
		t.Errorf("hidden before the node's labels are known: %v, want every restricted neighbor", h)
	}
	if errs := c.StandaloneErrors("vipspeaker.toml"); len(errs) != 1 ||
		errs[0].Error() != `vipspeaker.toml: pools[2].advertise.node-selector: a layer2 pool's node-selector needs cluster mode (in standalone mode give the pool only to the nodes that should answer for it)` {
		t.Errorf("StandaloneErrors = %v", errs)
	}
}

func TestPoolServiceSelectorAndPriority(t *testing.T) {
	c, errs := Parse("vipspeaker.toml", []byte(`
[[pools]]
name = "web"
addresses = ["203.0.113.0/28"]
service-selector = "tier in (web, edge)"
priority = 10
`))
	if errs != nil {
		t.Fatal(errs)
	}
	p := c.Pool("web")
	if p.Priority != 10 || !p.SelectsService(map[string]string{"tier": "edge"}) || p.SelectsService(nil) {
		t.Errorf("pool %+v", p)
	}
	_, errs = Parse("vipspeaker.toml", []byte(`
[[pools]]
name = "bad"
addresses = ["203.0.113.0/28"]
service-selector = "tier in (web"
priority = 0
`))
	got := errStrings(errs)
	if len(got) != 2 || !strings.Contains(got[0], "pools[0].service-selector") || !strings.Contains(got[1], "pools[0].priority: 0 is not a priority") {
		t.Errorf("errors %q", got)
	}
}

// namespace-selector: a namespace listed or whose labels match may use the
// pool; a selector that does not parse is an error naming file:line and
// field.
func TestPoolNamespaceSelector(t *testing.T) {
	c, errs := Parse("vipspeaker.toml", []byte(`
[[pools]]
name = "team"
addresses = ["203.0.113.0/28"]
namespaces = ["ops"]
namespace-selector = " team=a "
`))
	if errs != nil {
		t.Fatal(errs)
	}
	p := c.Pool("team")
	if p.NamespaceSelector != "team=a" || !p.AllowsNamespace("ops", nil) ||
		!p.AllowsNamespace("x", map[string]string{"team": "a"}) || p.AllowsNamespace("x", map[string]string{"team": "b"}) {
		t.Errorf("pool %+v", p)
	}
	_, errs = Parse("vipspeaker.toml", []byte(`
[[pools]]
name = "bad"
addresses = ["203.0.113.0/28"]
namespace-selector = "team in (a"
`))
	got := errStrings(errs)
	if len(got) != 1 || !strings.HasPrefix(got[0], `vipspeaker.toml:5: pools[0].namespace-selector: "team in (a" is not a label selector`) {
		t.Errorf("errors %q", got)
	}
}
