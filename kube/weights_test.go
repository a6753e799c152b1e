package kube

import (
	"net/netip"
	"testing"
	"time"

	"github.com/vipspeaker/vipspeaker/routing"
)

func TestWeightHold(t *testing.T) {
	a := netip.MustParseAddr("203.0.113.1")
	vip := func(w uint32) []routing.VIP { return []routing.VIP{{Addr: a, Attrs: routing.Attrs{Weight: w}}} }
	h := weightHold{every: time.Second}
	t0 := time.Unix(1000, 0)
	steps := []struct {
		at        time.Duration
		want      uint32
		wantRetry time.Duration
	}{
		{0, 1, 0}, // new VIP: at once
		{300 * time.Millisecond, 1, 700 * time.Millisecond}, // 1 → 2 too soon: held
		{600 * time.Millisecond, 1, 400 * time.Millisecond}, // 3 wished now, still held
		{time.Second, 3, 0},             // the latest wish goes out
		{1500 * time.Millisecond, 3, 0}, // no change
	}
	wish := []uint32{1, 2, 3, 3, 3}
	for i, s := range steps {
		got, retry := h.apply(vip(wish[i]), t0.Add(s.at))
		if got[0].Attrs.Weight != s.want || retry != s.wantRetry {
			t.Errorf("at %v wish %d: weight %d retry %v, want %d retry %v", s.at, wish[i], got[0].Attrs.Weight, retry, s.want, s.wantRetry)
		}
	}
	// A VIP that goes and comes back starts afresh.
	h.apply(nil, t0.Add(1600*time.Millisecond))
	if got, _ := h.apply(vip(5), t0.Add(1700*time.Millisecond)); got[0].Attrs.Weight != 5 {
		t.Errorf("VIP back: weight %d, want 5 at once", got[0].Attrs.Weight)
	}
}
