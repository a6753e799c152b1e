package kube

import (
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// ConflictEpisodeGap ends a conflict episode: another station claiming a VIP
// again after this long without a report is a new episode (a new Event).
const ConflictEpisodeGap = time.Minute

// conflicts remembers the address conflicts reported, so an episode gives
// one Event.
type conflicts struct {
	mu   sync.Mutex
	seen map[conflictKey]time.Time // last report
}

type conflictKey struct {
	vip   netip.Addr
	mac   string
	iface string
}

// ReportConflict tells the controller that another station (mac) answers
// on iface for vip, which this node owns. The Services holding vip get a
// Warning Event AddressConflict once per episode: reports of the same
// (vip, mac, iface) less than ConflictEpisodeGap apart belong to one. It
// returns whether an Event was emitted. Safe for concurrent use; a no-op
// before Run.
func (c *Controller) ReportConflict(vip netip.Addr, iface, mac string) bool {
	now := time.Now()
	k := conflictKey{vip: vip, mac: mac, iface: iface}
	c.conflicts.mu.Lock()
	if c.conflicts.seen == nil {
		c.conflicts.seen = map[conflictKey]time.Time{}
	}
	last, ok := c.conflicts.seen[k]
	c.conflicts.seen[k] = now
	for k2, t := range c.conflicts.seen {
		if now.Sub(t) >= ConflictEpisodeGap {
			delete(c.conflicts.seen, k2)
		}
	}
	c.conflicts.mu.Unlock()
	if ok && now.Sub(last) < ConflictEpisodeGap {
		return false
	}
	if !c.synced.Load() {
		return false
	}
	svcs, _ := c.services.List(everything)
	slices.SortFunc(svcs, func(a, b *corev1.Service) int { return strings.Compare(ServiceKey(a), ServiceKey(b)) })
	emitted := false
	for _, s := range svcs {
		if !slices.Contains(Ingress(s), vip) {
			continue
		}
		c.recorder.Eventf(s, corev1.EventTypeWarning, "AddressConflict",
			"node %s owns %s on %s, but another station (%s) answers for it", c.opts.NodeName, vip, iface, mac)
		emitted = true
	}
	c.log.Warn("address conflict reported on the Services holding the VIP", "vip", vip, "iface", iface, "mac", mac, "event", emitted)
	return emitted
}
