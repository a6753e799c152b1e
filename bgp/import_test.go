package bgp

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	bgppkt "github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"github.com/vipspeaker/vipspeaker/routing"
)

// importLog records what RunImport reports, as the current state per
// prefix (absent once withdrawn) and every prefix ever reported.
type importLog struct {
	mu    sync.Mutex
	state map[string]string
	seen  []string // every prefix ever reported
}

func (l *importLog) fn(p netip.Prefix, nhs []netip.Addr, withdrawn bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !slices.Contains(l.seen, p.String()) {
		l.seen = append(l.seen, p.String())
	}
	if withdrawn {
		if len(nhs) != 0 {
			panic("withdrawn with next hops")
		}
		delete(l.state, p.String())
		return
	}
	l.state[p.String()] = fmt.Sprint(nhs)
}

func (l *importLog) want(want map[string]string) func() error {
	return func() error {
		l.mu.Lock()
		defer l.mu.Unlock()
		if len(want) != len(l.state) {
			return fmt.Errorf("imported %v, want %v", l.state, want)
		}
		for k, v := range want {
			if l.state[k] != v {
				return fmt.Errorf("imported %v, want %v", l.state, want)
			}
		}
		return nil
	}
}

// announce makes the peer send prefix (AS path: the peer's AS, origin IGP).
func (p *peer) announce(t *testing.T, prefix string, med uint32) *apiutil.Path {
	t.Helper()
	nlri, err := bgppkt.NewIPAddrPrefix(netip.MustParsePrefix(prefix))
	if err != nil {
		t.Fatal(err)
	}
	nh, err := bgppkt.NewPathAttributeNextHop(netip.MustParseAddr(p.addr))
	if err != nil {
		t.Fatal(err)
	}
	path := &apiutil.Path{Family: bgppkt.RF_IPv4_UC, Nlri: nlri, Attrs: []bgppkt.PathAttributeInterface{
		bgppkt.NewPathAttributeOrigin(bgppkt.BGP_ORIGIN_ATTR_TYPE_IGP), nh, bgppkt.NewPathAttributeMultiExitDisc(med),
	}}
	if _, err := p.s.AddPath(apiutil.AddPathRequest{Paths: []*apiutil.Path{path}}); err != nil {
		t.Fatal(err)
	}
	return path
}

func (p *peer) withdraw(t *testing.T, path *apiutil.Path) {
	t.Helper()
	if err := p.s.DeletePath(apiutil.DeletePathRequest{Paths: []*apiutil.Path{path}}); err != nil {
		t.Fatal(err)
	}
}

// Two routers send a default route: the callback gets both next hops
// (ECMP); a path with a worse MED is not part of it; withdrawals shrink
// and finally remove the route; our own VIP is never reported.
func TestRunImportECMPAndWithdraw(t *testing.T) {
	port := freePort(t, "127.0.0.1")
	r2 := startPeer(t, "127.0.0.2", port, false)
	r3 := startPeer(t, "127.0.0.3", port, false)
	s, src, _, _ := startServer(t, ourConfig{port: port, peers: []*peer{r2, r3}}, nil)
	established(t, r2)
	established(t, r3)

	log := &importLog{state: map[string]string{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.RunImport(ctx, log.fn, ImportOptions{}) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("RunImport: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("RunImport did not return")
		}
	})

	src.push(routing.Event{Kind: routing.Added, VIP: vip("203.0.113.10")})
	d2 := r2.announce(t, "0.0.0.0/0", 0)
	d3 := r3.announce(t, "0.0.0.0/0", 0)
	r2.announce(t, "198.51.100.0/24", 0)
	r3.announce(t, "198.51.100.0/24", 50) // worse MED: not multipath
	eventually(t, 5*time.Second, "ECMP default imported", log.want(map[string]string{
		"0.0.0.0/0":       "[127.0.0.2 127.0.0.3]",
		"198.51.100.0/24": "[127.0.0.2]",
	}))

	r3.withdraw(t, d3)
	eventually(t, 5*time.Second, "default through one router", log.want(map[string]string{
		"0.0.0.0/0":       "[127.0.0.2]",
		"198.51.100.0/24": "[127.0.0.2]",
	}))
	r3.announce(t, "0.0.0.0/0", 0)
	eventually(t, 5*time.Second, "ECMP default again", log.want(map[string]string{
		"0.0.0.0/0":       "[127.0.0.2 127.0.0.3]",
		"198.51.100.0/24": "[127.0.0.2]",
	}))
	// The session with a router that is not the best path goes down.
	if err := r3.s.DisablePeer(context.Background(), &api.DisablePeerRequest{Address: "127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "default through one router after session down", log.want(map[string]string{
		"0.0.0.0/0":       "[127.0.0.2]",
		"198.51.100.0/24": "[127.0.0.2]",
	}))
	r2.withdraw(t, d2)
	eventually(t, 5*time.Second, "default withdrawn", log.want(map[string]string{
		"198.51.100.0/24": "[127.0.0.2]",
	}))
	// Our own VIP was announced by then and never reported.
	log.mu.Lock()
	defer log.mu.Unlock()
	if slices.Contains(log.seen, "203.0.113.10/32") {
		t.Errorf("our own VIP was imported: %v", log.seen)
	}
	if _, ok := r2.routes(t)["203.0.113.10/32"]; !ok {
		t.Error("VIP 203.0.113.10 not at the peer: the check above proves nothing")
	}
}

// After a speaker restart the reported routes are stale: one the new
// speaker learns again stays (no call when unchanged), the other is
// withdrawn once the stale time is over.
func TestImportWatchStaleAfterRestart(t *testing.T) {
	log := &importLog{state: map[string]string{}}
	w := &importWatch{fn: log.fn, reported: map[netip.Prefix][]netip.Addr{}, stale: map[netip.Prefix]time.Time{}}
	a, b := netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("198.51.100.0/24")
	nh := []netip.Addr{netip.MustParseAddr("198.18.0.2")}
	w.report(a, nh)
	w.report(b, nh)
	for p := range w.reported {
		w.stale[p] = time.Now()
	}
	w.report(a, nh) // relearned, same next hop
	w.expire(time.Hour)
	if err := log.want(map[string]string{"0.0.0.0/0": "[198.18.0.2]", "198.51.100.0/24": "[198.18.0.2]"})(); err != nil {
		t.Fatalf("before the stale time: %v", err)
	}
	w.expire(0)
	if err := log.want(map[string]string{"0.0.0.0/0": "[198.18.0.2]"})(); err != nil {
		t.Fatalf("after the stale time: %v", err)
	}
}

func TestMultipathNextHops(t *testing.T) {
	mk := func(peer, nh string, best bool, med uint32, asPath ...uint32) *apiutil.Path {
		nhAttr, err := bgppkt.NewPathAttributeNextHop(netip.MustParseAddr(nh))
		if err != nil {
			t.Fatal(err)
		}
		p := &apiutil.Path{Best: best, Attrs: []bgppkt.PathAttributeInterface{
			bgppkt.NewPathAttributeOrigin(0), nhAttr, bgppkt.NewPathAttributeMultiExitDisc(med),
			bgppkt.NewPathAttributeAsPath([]bgppkt.AsPathParamInterface{bgppkt.NewAs4PathParam(bgppkt.BGP_ASPATH_ATTR_TYPE_SEQ, asPath)}),
		}}
		if peer != "" {
			p.PeerAddress = netip.MustParseAddr(peer)
		}
		return p
	}
	for _, tc := range []struct {
		name  string
		paths []*apiutil.Path
		want  string
	}{
		{"two equal", []*apiutil.Path{mk("198.18.0.2", "198.18.0.2", true, 0, 65100), mk("198.18.0.3", "198.18.0.3", false, 0, 65100)}, "[198.18.0.2 198.18.0.3]"},
		{"worse MED left out", []*apiutil.Path{mk("198.18.0.2", "198.18.0.2", true, 0, 65100), mk("198.18.0.3", "198.18.0.3", false, 10, 65100)}, "[198.18.0.2]"},
		{"longer AS path left out", []*apiutil.Path{mk("198.18.0.2", "198.18.0.2", true, 0, 65100), mk("198.18.0.3", "198.18.0.3", false, 0, 65100, 65200)}, "[198.18.0.2]"},
		{"other neighbouring AS left out", []*apiutil.Path{mk("198.18.0.2", "198.18.0.2", true, 0, 65100), mk("198.18.0.3", "198.18.0.3", false, 0, 65101)}, "[198.18.0.2]"},
		{"best is ours", []*apiutil.Path{mk("", "0.0.0.0", true, 0), mk("198.18.0.3", "198.18.0.3", false, 0, 65100)}, "[]"},
		{"no best", []*apiutil.Path{mk("198.18.0.3", "198.18.0.3", false, 0, 65100)}, "[]"},
	} {
		if got := fmt.Sprint(multipathNextHops(tc.paths)); got != tc.want {
			t.Errorf("%s: got %s, want %s", tc.name, got, tc.want)
		}
	}
}
