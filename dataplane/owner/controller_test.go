package owner

import (
	"context"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"
)

type applied struct {
	mu    sync.Mutex
	n     int
	owned map[netip.Addr][]string
}

func (a *applied) apply(m map[netip.Addr][]string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.n++
	a.owned = maps.Clone(m)
}

func (a *applied) get() (int, map[netip.Addr][]string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.n, maps.Clone(a.owned)
}

func startController(t *testing.T, m *member, vips []VIP) *applied {
	t.Helper()
	ap := &applied{}
	c, err := NewController(ControllerOptions{NodeName: m.name, Health: m.Membership, Apply: ap.apply})
	if err != nil {
		t.Fatal(err)
	}
	c.SetVIPs(vips)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return ap
}

// Two speakers split the VIPs between them, each VIP on exactly one, with
// its interfaces; when one dies the other takes all of them.
func TestControllerSplitsAndTakesOver(t *testing.T) {
	var vips []VIP
	for i := range 20 {
		vips = append(vips, VIP{Addr: netip.AddrFrom4([4]byte{203, 0, 113, byte(i)}), Interfaces: []string{"eth0"}})
	}
	vips[0].Eligible = []string{"node-b"}
	a := startMember(t, "node-a", freePort(t, "127.0.0.1"), testKey)
	b := startMember(t, "node-b", freePort(t, "127.0.0.1"), testKey, a.addr)
	waitHealthy(t, 5*time.Second, a, "node-a", "node-b")
	waitHealthy(t, 5*time.Second, b, "node-a", "node-b")
	apA := startController(t, a, vips)
	apB := startController(t, b, vips)

	waitFor(t, 5*time.Second, "the two speakers split every VIP", func() bool {
		_, oa := apA.get()
		_, ob := apB.get()
		if len(oa)+len(ob) != len(vips) || len(oa) == 0 || len(ob) == 0 {
			return false
		}
		for v := range oa {
			if _, dup := ob[v]; dup {
				return false
			}
		}
		return true
	})
	_, oa := apA.get()
	if _, ok := oa[vips[0].Addr]; ok {
		t.Errorf("node-a owns %s, eligible only on node-b", vips[0].Addr)
	}
	for v, ifs := range oa {
		if !slices.Equal(ifs, []string{"eth0"}) {
			t.Errorf("%s applied with interfaces %v", v, ifs)
		}
	}

	b.crash(t)
	waitFor(t, 5*time.Second, "node-a owns every VIP node-a is eligible for", func() bool {
		_, oa := apA.get()
		return len(oa) == len(vips)-1
	})
}

// Before the membership is ready nothing is applied.
func TestControllerWaitsForMembership(t *testing.T) {
	ms, err := NewMembership(Options{NodeName: "n", BindAddr: netip.MustParseAddr("127.0.0.1"), BindPort: freePort(t, "127.0.0.1")})
	if err != nil {
		t.Fatal(err)
	}
	ap := &applied{}
	c, err := NewController(ControllerOptions{NodeName: "n", Health: ms, Apply: ap.apply})
	if err != nil {
		t.Fatal(err)
	}
	c.SetVIPs([]VIP{{Addr: netip.MustParseAddr("203.0.113.1")}})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_ = c.Run(ctx)
	if n, _ := ap.get(); n != 0 {
		t.Errorf("applied %d times before the membership was ready", n)
	}
}
