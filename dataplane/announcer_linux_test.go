package dataplane

import (
	"errors"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// fakeAnnouncer stands in for the XDP fast path: it records each round and
// reports the VIPs in miss as not announced (or fails with err).
type fakeAnnouncer struct {
	mu     sync.Mutex
	rounds [][]netip.Addr
	miss   []netip.Addr
	err    error
}

func (f *fakeAnnouncer) AnnounceOwned(iface string, vips []netip.Addr) (int, []netip.Addr, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rounds = append(f.rounds, slices.Clone(vips))
	if f.err != nil {
		return 0, nil, f.err
	}
	var missed []netip.Addr
	n := 0
	for _, v := range vips {
		switch {
		case slices.Contains(f.miss, v):
			missed = append(missed, v)
		case v.Is4():
			n += 2
		default:
			n++
		}
	}
	return n, missed, nil
}

func (f *fakeAnnouncer) calls() [][]netip.Addr {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.rounds)
}

// With an Announcer, each gratuitous round goes to it in one call with
// every owned VIP; only the VIPs it did not announce go out through the
// packet socket (counted with path="userspace"); when it fails, the whole
// round does.
func TestGratuitousThroughAnnouncer(t *testing.T) {
	l := newL2Lab(t, 1)
	fa := &fakeAnnouncer{miss: []netip.Addr{vip6}}
	reg := prometheus.NewPedanticRegistry()
	r := l.start(0, reg, Options{GratuitousCount: 3, GratuitousInterval: 30 * time.Millisecond, Announcer: fa})
	r.SetOwned(owned([]string{"eth0"}, vip4, vip6))
	waitFor(t, 3*time.Second, "3 rounds through the announcer", func() bool { return len(fa.calls()) == 3 })
	for i, round := range fa.calls() {
		if !slices.Equal(round, []netip.Addr{vip4, vip6}) {
			t.Fatalf("round %d handed %v to the announcer, want [%s %s]", i, round, vip4, vip6)
		}
	}
	// The NA the announcer missed, once per round, through the socket.
	userspace := func() float64 { return testutil.ToFloat64(r.m.gratuitous.WithLabelValues("eth0", PathUserspace)) }
	waitFor(t, 3*time.Second, "3 NAs through the packet socket", func() bool { return userspace() == 3 })
	time.Sleep(150 * time.Millisecond)
	if got := userspace(); got != 3 {
		t.Fatalf("gratuitous_sent_total{path=userspace} = %v, want 3 (only the missed NA, 3 rounds)", got)
	}

	// A failing announcer: the whole round goes through the socket.
	r2lab := newL2Lab(t, 1)
	fb := &fakeAnnouncer{err: errors.New("no live frames here")}
	r2 := r2lab.start(0, prometheus.NewPedanticRegistry(), Options{GratuitousCount: 2, GratuitousInterval: 30 * time.Millisecond, Announcer: fb})
	r2.SetOwned(owned([]string{"eth0"}, vip4, vip6))
	waitFor(t, 3*time.Second, "6 frames through the packet socket", func() bool {
		return testutil.ToFloat64(r2.m.gratuitous.WithLabelValues("eth0", PathUserspace)) == 6
	})
	if n := len(fb.calls()); n != 2 {
		t.Fatalf("failing announcer called %d times, want 2 (once per round)", n)
	}
}
