package owner

import (
	"net/netip"
	"slices"
)

// Check is what a node tells the other speakers about the health check
// that gates the checked VIPs (the control-plane VIP): whether it passes
// and which checked VIPs the node answers for now.
type Check struct {
	Passing bool         `json:"ok"`
	Holds   []netip.Addr `json:"h,omitempty"`
}

func (c Check) equal(o Check) bool { return c.Passing == o.Passing && slices.Equal(c.Holds, o.Holds) }

// SetCheck publishes this node's health check state (gossiped at once).
func (ms *Membership) SetCheck(passing bool) {
	ms.updateCheck(func(c *Check) { c.Passing = passing })
}

// SetHolds publishes the checked VIPs this node answers for.
func (ms *Membership) SetHolds(holds []netip.Addr) {
	holds = slices.Clone(holds)
	slices.SortFunc(holds, netip.Addr.Compare)
	ms.updateCheck(func(c *Check) { c.Holds = holds })
}

func (ms *Membership) updateCheck(f func(*Check)) {
	ms.mu.Lock()
	var c Check
	if ms.local.Check != nil {
		c = *ms.local.Check
		c.Holds = slices.Clone(c.Holds)
	}
	f(&c)
	if ms.local.Check != nil && ms.local.Check.equal(c) {
		ms.mu.Unlock()
		return
	}
	ms.local.Check = &c
	ms.checks[ms.name] = c
	list := ms.list
	ms.mu.Unlock()
	ms.notify()
	if list == nil {
		return
	}
	if err := list.UpdateNode(metaTimeout); err != nil {
		ms.log.Debug("health check state queued, not yet sent", "err", err)
	}
}

// Checks returns the health check state of each node that published one,
// this node's included.
func (ms *Membership) Checks() map[string]Check {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	out := make(map[string]Check, len(ms.checks))
	for n, c := range ms.checks {
		out[n] = c
	}
	return out
}

// checked narrows the candidates of a checked VIP:
//
//   - the candidates whose check passes, when there are any;
//   - else (the check fails everywhere, e.g. the API is down on every
//     control-plane node) the candidates that say they answer for the VIP
//     now: the VIP stays where it is, it neither moves nor vanishes;
//   - else (nobody passes, nobody answers: the first node before its API
//     server is up, a cold start) every candidate, so the VIP has an
//     owner and the first API server to come up is reached at once.
//
// A node that published no state neither passes nor answers.
func checked(addr netip.Addr, cand []string, checks map[string]Check) []string {
	var pass, hold []string
	for _, n := range cand {
		c := checks[n]
		if c.Passing {
			pass = append(pass, n)
		}
		if slices.Contains(c.Holds, addr) {
			hold = append(hold, n)
		}
	}
	switch {
	case len(pass) > 0:
		return pass
	case len(hold) > 0:
		return hold
	}
	return cand
}
