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
}

type heldWeight struct {
	w  uint32
	at time.Time // when w went out
}

// apply returns vips with every weight change that comes sooner than
// h.every after the VIP's previous one replaced by the weight in force,
// and how long until the first held change may go (0: none held).
func (h *weightHold) apply(vips []routing.VIP, now time.Time) ([]routing.VIP, time.Duration) {
	if h.last == nil {
		h.last = map[netip.Addr]heldWeight{}
	}
	var retry time.Duration
	seen := make(map[netip.Addr]bool, len(vips))
	out := make([]routing.VIP, len(vips))
	for i, v := range vips {
		seen[v.Addr] = true
		prev, ok := h.last[v.Addr]
		switch {
		case !ok || prev.w == v.Attrs.Weight:
			if !ok {
				h.last[v.Addr] = heldWeight{v.Attrs.Weight, now}
			}
		case now.Sub(prev.at) >= h.every:
			h.last[v.Addr] = heldWeight{v.Attrs.Weight, now}
		default:
			if wait := h.every - now.Sub(prev.at); retry == 0 || wait < retry {
				retry = wait
			}
			v.Attrs.Weight = prev.w
		}
		out[i] = v
	}
	for a := range h.last {
		if !seen[a] {
			delete(h.last, a)
		}
	}
	return out, retry
}
