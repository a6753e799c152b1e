package l2node

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/vipspeaker/vipspeaker/dataplane/owner"
	"github.com/vipspeaker/vipspeaker/routing"
)

// ownerVIPs hands the election each layer2 VIP with its pool's interfaces
// and its candidates: every healthy speaker (nil) in standalone mode and,
// in a cluster, for a VIP the API has not named yet; none ([]) for a VIP
// the API says has no candidate.
func TestOwnerVIPs(t *testing.T) {
	a1, a2, a3 := netip.MustParseAddr("203.0.113.1"), netip.MustParseAddr("203.0.113.2"), netip.MustParseAddr("2001:db8::3")
	current := map[netip.Addr]routing.VIP{
		a3: {Addr: a3, Attrs: routing.Attrs{Pool: "lan", Mode: routing.ModeLayer2}},
		a1: {Addr: a1, Attrs: routing.Attrs{Pool: "lan", Mode: routing.ModeLayer2}},
		a2: {Addr: a2, Attrs: routing.Attrs{Pool: "other", Mode: routing.ModeLayer2}},
	}
	n := &Node{pools: map[string][]string{"lan": {"eth0", "eth1"}, "other": {"eth2"}}, kick: make(chan struct{}, 1)}
	want := []owner.VIP{
		{Addr: a1, Interfaces: []string{"eth0", "eth1"}},
		{Addr: a2, Interfaces: []string{"eth2"}},
		{Addr: a3, Interfaces: []string{"eth0", "eth1"}},
	}
	if diff := cmp.Diff(want, n.ownerVIPs(current), cmp.Comparer(func(x, y netip.Addr) bool { return x == y })); diff != "" {
		t.Errorf("standalone (-want +got):\n%s", diff)
	}

	n.SetEligible(map[netip.Addr][]string{a1: {"n1", "n2"}, a2: nil})
	select {
	case <-n.kick:
	default:
		t.Error("SetEligible did not kick the run loop")
	}
	want[0].Eligible = []string{"n1", "n2"}
	want[1].Eligible = []string{} // known to the API, no candidate
	// a3: not named by the API yet, every healthy speaker (nil).
	if diff := cmp.Diff(want, n.ownerVIPs(current), cmp.Comparer(func(x, y netip.Addr) bool { return x == y })); diff != "" {
		t.Errorf("cluster (-want +got):\n%s", diff)
	}
}

// A node without an election reports none; so does a nil node (no
// layer2 part at all).
func TestOwnersWithoutElection(t *testing.T) {
	var n *Node
	if _, ok := n.Owners(); ok {
		t.Error("nil node: Owners says an election runs")
	}
	if _, ok := (&Node{}).Owners(); ok {
		t.Error("counting-only node: Owners says an election runs")
	}
}
