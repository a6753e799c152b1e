package realnodes_test

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vipspeaker/vipspeaker/test/lab"
	"github.com/vipspeaker/vipspeaker/test/lab/realnodes"
)

// advertiseTOML adds to the lab's pools one that only the nodes labelled
// vipspeaker.test/rack=r1 announce, aggregated to its /26 for Cluster
// Services, with a community of its own.
const advertiseTOML = labTOML + `
[[pools]]
name = "rack"
addresses = ["203.0.113.64/26"]
mode = "bgp"
service-selector = "tier=web"
priority = 1
  [pools.advertise]
  node-selector = "vipspeaker.test/rack=r1"
  communities = ["64512:126"]
  aggregation-length = 26
`

// A pool chosen by a Service's labels, and its [pools.advertise], on real
// nodes: with two of three Nodes
// labelled for the pool, the router holds the pool's /26 via exactly those
// two for a Cluster Service (no /32), carrying the pool's community, and
// the client reaches the Pods through it; a Local Service of the same pool
// keeps its /32, via the labelled nodes that run one of its Pods; and
// when a Node loses the label, its next hop leaves.
func TestPoolAdvertisement(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	var rack []*realnodes.Node
	c := clusterWith(t, func(c *realnodes.Cluster) {
		rack = []*realnodes.Node{c.Nodes[0], c.Nodes[1]}
		for _, n := range rack {
			if _, err := c.Kubectl(ctx, "label", "node", n.Name, "vipspeaker.test/rack=r1"); err != nil {
				t.Fatal(err)
			}
		}
	}, kustomize(advertiseTOML))

	// The pool is chosen by the Service's labels (service-selector, first
	// by priority): the Service names no pool.
	agg := realnodes.EchoOptions{Namespace: "web", Name: "agg", Replicas: 3, Labels: map[string]string{"tier": "web"}}
	vip := firstAnswer(t, c, agg, c.Client, "the aggregated VIP", "from behind the router")
	if a := netip.MustParseAddr(vip); !netip.MustParsePrefix("203.0.113.64/26").Contains(a) {
		t.Fatalf("Service labelled tier=web got %s, not an address of the rack pool its labels select", vip)
	}
	if err := c.Router.WaitGateways("203.0.113.64/26", 2*time.Minute, rack[0].Addr, rack[1].Addr); err != nil {
		t.Fatal(err)
	}
	if gws, err := c.Router.Gateways(vip + "/32"); err != nil || gws != nil {
		t.Fatalf("router's kernel routes the Cluster VIP's /32 via %v (%v); the pool aggregates it into its /26", gws, err)
	}
	paths, err := c.FRR.PrefixPaths("ipv4", "203.0.113.64/26")
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) != 2 {
		t.Fatalf("FRR has %d paths to 203.0.113.64/26, want one from each labelled node: %+v", len(paths), paths)
	}
	for _, p := range paths {
		if !strings.Contains(p.Community, "64512:126") {
			t.Errorf("path via %v carries communities %q, want the pool's 64512:126", p.NextHops, p.Community)
		}
	}

	// A Local Service of the same pool: its own /32, via the labelled nodes
	// that run one of its ready Pods.
	loc := realnodes.EchoOptions{Namespace: "web", Name: "loc", Replicas: 2, Pool: "rack", Local: true, Labels: map[string]string{"tier": "web"}}
	locVIP := firstAnswer(t, c, loc, c.Client, "the Local VIP", "from behind the router")
	if err := c.WaitDeploymentReady(loc.Namespace, loc.Name, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	on, err := c.PodsOn(ctx, loc.Namespace, loc.Name)
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, n := range rack {
		if len(on[n.Name]) > 0 {
			want = append(want, n.Addr)
		}
	}
	if len(want) == 0 {
		t.Fatalf("the Local Service's Pods run only off the rack (%v): it answered without a route", on)
	}
	if err := c.Router.WaitGateways(locVIP+"/32", 2*time.Minute, want...); err != nil {
		t.Fatalf("%v (Pods by node: %v)", err, on)
	}
	// Nothing else of the pool reaches the router.
	lab.Eventually(t, 30*time.Second, 200*time.Millisecond, func() error {
		routes, err := c.FRR.RoutesIPv4()
		if err != nil {
			return err
		}
		rackPool := netip.MustParsePrefix("203.0.113.64/26")
		var got []string
		for p := range routes {
			if rackPool.Overlaps(p) {
				got = append(got, p.String())
			}
		}
		slices.Sort(got)
		if w := []string{"203.0.113.64/26", locVIP + "/32"}; !slices.Equal(got, w) {
			return fmt.Errorf("FRR holds %v of the rack pool, want %v", got, w)
		}
		return nil
	})

	// The label taken from one node: its next hop leaves the aggregate.
	if _, err := c.Kubectl(ctx, "label", "node", rack[1].Name, "vipspeaker.test/rack-"); err != nil {
		t.Fatal(err)
	}
	if err := c.Router.WaitGateways("203.0.113.64/26", time.Minute, rack[0].Addr); err != nil {
		t.Fatal(err)
	}
	if _, err := realnodes.Get(c.Client, "http://"+vip+"/", timeout); err != nil {
		t.Fatalf("through the aggregate after the label change: %v", err)
	}

	// [[peer-nodes]]: the router's session only from rack r1. The ConfigMap
	// is changed as an operator would; the unlabelled nodes drop their
	// session, the labelled one keeps its own without a reset.
	before, err := c.FRR.Session(rack[0].Addr)
	if err != nil {
		t.Fatal(err)
	}
	cm, err := realnodes.ConfigMap(advertiseTOML+fmt.Sprintf(`
[[peer-nodes]]
neighbors = [%q]
node-selector = "vipspeaker.test/rack=r1"
`, realnodes.RouterAddr), realnodes.GoBGPConf())
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Apply(ctx, cm); err != nil {
		t.Fatal(err)
	}
	for _, n := range c.Nodes[1:] {
		lab.Eventually(t, time.Minute, 200*time.Millisecond, func() error {
			s, err := c.FRR.Session(n.Addr)
			if err != nil {
				return err
			}
			if s.State == "Established" {
				return fmt.Errorf("router's session with %s (not in rack r1) is still up", n.Name)
			}
			return nil
		})
	}
	after, err := c.FRR.Session(rack[0].Addr)
	if err != nil {
		t.Fatal(err)
	}
	if after.State != "Established" || after.Established != before.Established {
		t.Errorf("session with %s: %+v after the change, %+v before; want it untouched", rack[0].Name, after, before)
	}
	if err := c.Router.WaitGateways("203.0.113.64/26", time.Minute, rack[0].Addr); err != nil {
		t.Fatal(err)
	}
}
