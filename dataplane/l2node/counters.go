package l2node

import (
	"net/netip"

	"github.com/vipspeaker/vipspeaker/config"
	"github.com/vipspeaker/vipspeaker/dataplane"
)

// newNFTCounters makes the nftables VIP counters for a node where the XDP
// fast path does not run ([layer2] fast-path off, or the program refused);
// nil when [vip-counters] fallback is off.
func newNFTCounters(opts Options) (*dataplane.VIPCounters, error) {
	if opts.Config.VIPCounters.Fallback == config.CountersOff {
		opts.Logger.Info("no per-VIP traffic counters: the XDP fast path does not run and [vip-counters] fallback is off")
		removeStaleCounters(opts)
		return nil, nil
	}
	opts.Logger.Info("nftables counts each VIP's traffic (the XDP fast path does not run)", "table", "inet "+dataplane.DefaultVIPCountersTable)
	return dataplane.NewVIPCounters(dataplane.VIPCountersOptions{Logger: opts.Logger, Registerer: opts.Registerer})
}

// removeStaleCounters deletes the nftables counters a previous agent left
// when this one does not count with them.
func removeStaleCounters(opts Options) {
	c, err := dataplane.NewVIPCounters(dataplane.VIPCountersOptions{Logger: opts.Logger})
	if err != nil {
		return
	}
	switch found, err := c.RemoveStale(); {
	case err != nil:
		opts.Logger.Warn("VIP counters: remove the table a previous agent left", "error", err)
	case found:
		opts.Logger.Info("VIP counters: removed the nftables table a previous agent left (nftables does not count now)", "table", "inet "+dataplane.DefaultVIPCountersTable)
	}
}

// newNFTCountingOnly is a node without layer2 pools and without the fast
// path: it only keeps the nftables counters; nil when they are off.
func newNFTCountingOnly(opts Options) (*Node, error) {
	nft, err := newNFTCounters(opts)
	if nft == nil || err != nil {
		return nil, err
	}
	return &Node{opts: opts, nft: nft, log: opts.Logger.With("component", "layer2"), kick: make(chan struct{}, 1)}, nil
}

// countVIPs gives every VIP of the table to whichever path counts.
func (n *Node) countVIPs(all map[netip.Addr]bool) {
	if n.fp == nil && n.nft == nil {
		return
	}
	counted := make([]netip.Addr, 0, len(all))
	for a := range all {
		counted = append(counted, a)
	}
	if n.fp != nil {
		if err := n.fp.SetCounted(counted); err != nil {
			n.log.Warn("XDP fast path: update counted VIPs", "error", err)
		}
	}
	if n.nft != nil {
		_ = n.nft.Set(counted) // failures are logged by VIPCounters; the next change retries
	}
}

// exitCounters removes the nftables counters when the agent leaves for
// good and leaves them (with their counts) to the next agent otherwise.
func (n *Node) exitCounters(removeOnExit bool) {
	if n.nft == nil || !removeOnExit {
		return
	}
	if err := n.nft.Remove(); err != nil {
		n.log.Warn("VIP counters: remove", "error", err)
	}
}
