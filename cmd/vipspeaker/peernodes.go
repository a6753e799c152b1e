package main

import (
	"context"
	"maps"

	"github.com/vipspeaker/vipspeaker/config"
)

// nodeLabels are this node's labels for [[peer-nodes]]: from --node-labels
// in standalone mode, from the Node in cluster mode (unknown until it is
// read: then every restricted neighbor stays hidden).
type nodeLabels struct {
	labels map[string]string
	known  bool
}

// hideNeighbors keeps the neighbors [[peer-nodes]] of c does not give this
// node out of the speaker's config (callers put back the set of the config
// in force when a new one is refused).
func (a *agent) hideNeighbors(ctx context.Context, c *config.Config) error {
	a.vipMu.Lock()
	nl := a.node
	a.vipMu.Unlock()
	return a.bgp.SetHiddenNeighbors(ctx, c.HiddenNeighbors(nl.labels, nl.known))
}

// setNodeLabels takes the Node's labels (cluster mode) and applies
// [[peer-nodes]] of the config in force again when they changed.
func (a *agent) setNodeLabels(ctx context.Context, l map[string]string) {
	a.vipMu.Lock()
	changed := !a.node.known || !maps.Equal(a.node.labels, l)
	a.node = nodeLabels{labels: l, known: true}
	c := a.cfg
	a.vipMu.Unlock()
	if !changed {
		return
	}
	if err := a.hideNeighbors(ctx, c); err != nil {
		a.log.Error("apply [[peer-nodes]] for this node's labels", "error", err)
	}
}
