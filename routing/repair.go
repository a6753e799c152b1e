package routing

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
)

// reconcileLocked brings the interface and the published table to desired.
func (t *Table) reconcileLocked() []error {
	var (
		errs []error
		evs  []Event
	)
	if t.index == 0 {
		if err := t.setupLink(); err != nil {
			return []error{err}
		}
	}
	t.dirty = false
	adds := make([]netip.Addr, 0)
	for a := range t.desired {
		if _, ok := t.present[a]; !ok {
			adds = append(adds, a)
		}
	}
	slices.SortFunc(adds, netip.Addr.Compare)
	for _, a := range adds {
		if err := t.k.addAddr(t.index, a); err != nil {
			errs = append(errs, fmt.Errorf("add %s to %s: %w", a, t.opts.Interface, err))
			t.dirty = true
			continue
		}
		t.writes.Add(1)
		t.present[a] = struct{}{}
	}
	var dels []netip.Addr
	for a := range t.present {
		if _, ok := t.desired[a]; !ok {
			dels = append(dels, a)
		}
	}
	slices.SortFunc(dels, netip.Addr.Compare)
	for _, a := range dels {
		if err := t.k.delAddr(t.index, a); err != nil {
			errs = append(errs, fmt.Errorf("remove %s from %s: %w", a, t.opts.Interface, err))
			t.dirty = true
			continue
		}
		t.writes.Add(1)
		delete(t.present, a)
	}
	// Publish: the table as subscribers see it follows what is present.
	for a := range t.present {
		var at Attrs
		if e := t.desired[a]; e != nil {
			at = e.attrs
		}
		old, ok := t.published[a]
		switch {
		case !ok:
			evs = append(evs, Event{Kind: Added, VIP: VIP{Addr: a, Attrs: at}})
		case !old.Equal(at):
			evs = append(evs, Event{Kind: Changed, VIP: VIP{Addr: a, Attrs: at}})
		default:
			continue
		}
		t.setPublished(a, at)
	}
	for a, at := range t.published {
		if _, ok := t.present[a]; !ok {
			evs = append(evs, Event{Kind: Removed, VIP: VIP{Addr: a, Attrs: at}})
			t.deletePublished(a)
		}
	}
	slices.SortFunc(evs, func(a, b Event) int { return a.VIP.Addr.Compare(b.VIP.Addr) })
	t.hub.publish(evs)
	return errs
}

// handle reacts to one kernel notification.
func (t *Table) handle(c change) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case c.Resync:
		t.resyncLocked("netlink reported lost events")
	case c.LinkGone:
		if c.Index != t.index && t.index != 0 {
			return
		}
		t.log.Warn("VIP interface was deleted from outside; recreating it", "vips", len(t.desired))
		t.metrics.repairs.WithLabelValues("link").Inc()
		t.index = 0
		t.relinkLocked()
	case c.LinkDown:
		if c.Index != t.index {
			return
		}
		t.relinkLocked()
	case c.AddrRemoved.IsValid():
		if c.Index != t.index {
			return
		}
		a := c.AddrRemoved
		delete(t.present, a)
		if _, want := t.desired[a]; !want {
			return
		}
		t.log.Warn("VIP was removed from outside; restoring it", "vip", a)
		t.metrics.repairs.WithLabelValues("address").Inc()
		if err := t.k.addAddr(t.index, a); err != nil {
			// Most likely the interface itself is going; its own
			// event (or the resync) brings everything back.
			t.log.Debug("restore VIP", "vip", a, "error", err)
			t.resyncLocked("restoring a VIP failed")
			return
		}
		t.writes.Add(1)
		t.present[a] = struct{}{}
	case c.AddrAdded.IsValid():
		if c.Index != t.index {
			return
		}
		// Ours or someone else's: either way it is there now. One not
		// desired is removed at the next Set or resync.
		t.present[c.AddrAdded] = struct{}{}
	}
}

func (t *Table) resync(reason string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.resyncLocked(reason)
}

// resyncLocked re-reads the interface and repairs any difference.
func (t *Table) resyncLocked(reason string) {
	idx, err := t.k.linkIndex(t.opts.Interface)
	if err != nil {
		t.log.Error("resync: look up VIP interface", "error", err)
		return
	}
	if idx == 0 || idx != t.index {
		t.index = 0
		clear(t.present)
	} else {
		addrs, err := t.k.listAddrs(idx)
		if err != nil {
			t.log.Error("resync: list VIPs", "error", err)
			return
		}
		clear(t.present)
		for _, a := range addrs {
			t.present[a] = struct{}{}
		}
	}
	before := t.writes.Load()
	if errs := t.reconcileLocked(); len(errs) > 0 {
		t.log.Error("resync", "error", errors.Join(errs...))
	}
	if n := t.writes.Load() - before; n > 0 {
		t.log.Warn("resync repaired the VIP interface", "changes", n, "reason", reason)
		t.metrics.repairs.WithLabelValues("resync").Add(float64(n))
	}
}
