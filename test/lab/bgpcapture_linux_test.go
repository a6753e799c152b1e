package lab_test

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/vipspeaker/vipspeaker/internal/nstest"
	"github.com/vipspeaker/vipspeaker/test/lab"
)

// TestBGPCaptureSeesAgentUpdate: a capture on the router's interface to a
// node sees the UPDATE the node's vipspeaker agent sends for a new VIP,
// from the node's address, before the router's kernel has the route — and
// an IPv6 VIP announced over the same session too.
func TestBGPCaptureSeesAgentUpdate(t *testing.T) {
	t.Parallel()
	requireFRR(t)
	nstest.RequireRoot(t)
	tp := lab.NewRouted(t, lab.RoutedOptions{Nodes: 1})
	n := tp.Nodes[0]
	if _, err := tp.StartFRR(lab.FRRBGPConf{AS: 65000, RouterID: "198.18.0.1", Neighbors: tp.FRRNeighbors(65001)}, ""); err != nil {
		t.Fatal(err)
	}
	c, err := tp.Router.StartBGPCapture("n1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	if err := n.WriteConfig("gobgp.conf", lab.GoBGPConf{AS: 65001, Neighbors: []lab.GoBGPNeighbor{n.RouterGoBGP()}}.String()); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Start(); err != nil {
		t.Fatal(err)
	}
	if err := tp.FRR.WaitEstablished(n.Addr4, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	at := time.Now()
	if err := n.WriteService(lab.ServiceFile{Name: "web", Addresses: []string{"203.0.113.10", "2001:db8:100::10"}}); err != nil {
		t.Fatal(err)
	}
	if err := tp.Router.WaitGateways("203.0.113.10/32", 20*time.Second, n.Addr4); err != nil {
		t.Fatal(err)
	}
	routed := time.Now()
	node := netip.MustParseAddr(n.Addr4)
	for _, p := range []string{"203.0.113.10/32", "2001:db8:100::10/128"} {
		lab.Eventually(t, 10*time.Second, 20*time.Millisecond, func() error {
			got := c.Announced(netip.MustParsePrefix(p), at)
			if len(got) != 1 || got[node].IsZero() {
				updates, errs := c.Counts()
				return fmt.Errorf("capture: %s announced by %v since the Service was written, want by %s only (%d UPDATEs, %d parse errors, prefixes %v)",
					p, got, node, updates, errs, c.Prefixes())
			}
			return nil
		})
	}
	sent := c.Announced(netip.MustParsePrefix("203.0.113.10/32"), at)[node]
	if sent.After(routed) {
		t.Errorf("the UPDATE was captured at %v, after the router's kernel had the route (%v)", sent.Sub(at), routed.Sub(at))
	}
	if _, errs := c.Counts(); errs != 0 {
		t.Errorf("GoBGP's parser found fault with %d captured messages", errs)
	}
	t.Logf("Service written → UPDATE on the wire %v, → route in the router's kernel %v", sent.Sub(at).Round(time.Microsecond), routed.Sub(at).Round(time.Millisecond))
}
