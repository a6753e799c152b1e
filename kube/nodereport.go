package kube

import (
	"context"

	corev1 "k8s.io/api/core/v1"

	"github.com/vipspeaker/vipspeaker/config"
	"github.com/vipspeaker/vipspeaker/kube/nodestate"
)

// eligiblePools are the pools node n may announce or own: it is Ready,
// not excluded, and the pool's node-selector selects it.
func eligiblePools(cfg *config.Config, n *corev1.Node) []string {
	out := []string{}
	if cfg == nil || !NodeEligible(n) {
		return out
	}
	for i := range cfg.Pools {
		if cfg.Pools[i].SelectsNode(n.Labels) {
			out = append(out, cfg.Pools[i].Name)
		}
	}
	return out
}

// runNodeReport keeps this node's VIPSpeakerNode saying what
// Options.NodeReport says, with the pools the speaker's last pass found.
func (c *Controller) runNodeReport(ctx context.Context) {
	if c.dyn == nil || c.opts.NodeReport == nil {
		return
	}
	w, err := nodestate.NewWriter(nodestate.WriterOptions{
		Dynamic: c.dyn, Core: c.cs, Namespace: c.opts.Namespace, Node: c.opts.NodeName, Logger: c.log,
		Source: func() (nodestate.Status, bool) {
			st, ok := c.opts.NodeReport()
			p := c.pools.Load()
			if p == nil {
				return st, false // no pass yet
			}
			st.Pools = *p
			return st, ok
		},
	})
	if err != nil {
		c.log.Error("node report", "error", err)
		return
	}
	_ = w.Run(ctx)
}
