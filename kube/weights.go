package kube

import (
	"net/netip"
	"time"

	"github.com/vipspeaker/vipspeaker/routing"
)

// WeightHold is the least time between two weight changes of one VIP's
// path (a weighted-by-endpoints pool): during a rollout the ready
// endpoints change every few hundred milliseconds, and each change would
// be an UPDATE and a new next-hop group at every router. Announcing and
// withdrawing are never held.
const WeightHold = time.Second

// weightHold keeps each VIP's weight steady for at least every after a
// change; the latest wish goes out when the time is up.
type weightHold struct {
	every time.Duration
	last  map[netip.Addr]heldWeight
	pass  uint64 // apply's calls: a VIP whose entry was not seen in this one is gone
}

type heldWeight struct {
	w    uint32
	at   time.Time // when w went out
	seen uint64    // the pass that last saw the VIP
}

// apply changes vips in place: every weight change that comes sooner than
// h.every after the VIP's previous one is replaced by the weight in force.
// It returns vips and how long until the first held change may go (0:
// none held).
func (h *weightHold) apply(vips []routing.VIP, now time.Time) ([]routing.VIP, time.Duration) {
	if h.last == nil {
		h.last = map[netip.Addr]heldWeight{}
	}
	h.pass++
	var retry time.Duration
	for i := range vips {
		v := &vips[i]
		prev, ok := h.last[v.Addr]
		switch {
		case !ok || prev.w == v.Attrs.Weight:
			if !ok {
				prev = heldWeight{w: v.Attrs.Weight, at: now}
			}
		case now.Sub(prev.at) >= h.every:
			prev = heldWeight{w: v.Attrs.Weight, at: now}
		default:
			if wait := h.every - now.Sub(prev.at); retry == 0 || wait < retry {
				retry = wait
			}
			v.Attrs.Weight = prev.w
		}
		prev.seen = h.pass
		h.last[v.Addr] = prev
	}
	for a, w := range h.last {
		if w.seen != h.pass {
			delete(h.last, a)
		}
	}
	return vips, retry
}
