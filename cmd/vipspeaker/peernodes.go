package main

import (
	"cmp"
	"context"
	"maps"

	"github.com/vipspeaker/vipspeaker/config"
)

// hideNeighbors keeps the neighbors [[peer-nodes]] of c does not give this
// node out of the speaker's config, by this node's labels (the Node's in
// cluster mode: until it is read every restricted neighbor stays out), and
// hands the speaker the pools' peers. Both are applied; the first error wins.
func (a *agent) hideNeighbors(ctx context.Context, c *config.Config) error {
	a.vipMu.Lock()
	l, known := a.nodeLabels, a.labelsKnown
	a.vipMu.Unlock()
	return cmp.Or(a.bgp.SetPoolPeers(ctx, c.PoolPeers()), a.bgp.SetHiddenNeighbors(ctx, c.HiddenNeighbors(l, known)))
}

// setNodeLabels takes the Node's labels and applies [[peer-nodes]] again
// when they changed.
func (a *agent) setNodeLabels(ctx context.Context, l map[string]string) {
	a.vipMu.Lock()
	changed := !a.labelsKnown || !maps.Equal(a.nodeLabels, l)
	a.nodeLabels, a.labelsKnown = l, true
	c := a.cfg
	a.vipMu.Unlock()
	if !changed {
		return
	}
	if err := a.hideNeighbors(ctx, c); err != nil {
		a.log.Error("apply [[peer-nodes]] for this node's labels", "error", err)
	}
}
