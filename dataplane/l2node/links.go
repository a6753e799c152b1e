package l2node

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/vipspeaker/vipspeaker/config"
	"github.com/vipspeaker/vipspeaker/dataplane/owner"
	"github.com/vipspeaker/vipspeaker/routing"
)

// LinkUpHold is how long a layer2 interface that came back must stay up
// before this node is a candidate on it again: a flapping link does not
// pull VIPs back and forth. Going down takes effect at once.
const LinkUpHold = time.Second

// rejoinLimit bounds the membership rejoin that precedes a return.
const rejoinLimit = 3 * time.Second

// linkState follows the layer2 interfaces through netlink link and address
// notifications (no polling) and publishes them to the membership.
type linkState struct {
	kick      chan struct{}             // Configure changed the interfaces
	blocks    map[string][]config.Range // by interface: its pools' addresses (under Node.mu)
	published owner.Links               // nil until the first publication
	upSince   map[string]time.Time      // up, but held down until LinkUpHold has passed
	hold      *time.Timer
}

// linkBlocks returns, per layer2 interface, the addresses of the pools
// answered on it.
func linkBlocks(cfg *config.Config) map[string][]config.Range {
	out := map[string][]config.Range{}
	for i := range cfg.Pools {
		p := &cfg.Pools[i]
		if p.Mode != routing.ModeLayer2 {
			continue
		}
		for _, name := range p.Layer2.Interfaces {
			out[name] = append(out[name], p.Blocks()...)
		}
	}
	return out
}

// subscribeLinks subscribes to link and address changes in the agent's
// namespace; the channels close when done closes or the socket fails.
func subscribeLinks(done <-chan struct{}) (chan netlink.LinkUpdate, chan netlink.AddrUpdate, error) {
	lu := make(chan netlink.LinkUpdate, 64)
	au := make(chan netlink.AddrUpdate, 64)
	if err := netlink.LinkSubscribeWithOptions(lu, done, netlink.LinkSubscribeOptions{}); err != nil {
		return nil, nil, fmt.Errorf("subscribe to link changes: %w", err)
	}
	if err := netlink.AddrSubscribeWithOptions(au, done, netlink.AddrSubscribeOptions{}); err != nil {
		return nil, nil, fmt.Errorf("subscribe to address changes: %w", err)
	}
	return lu, au, nil
}

// watchLinks publishes the layer2 interfaces' states now and on every
// change until ctx ends. It subscribes before it reads, so no change falls
// in between.
func (n *Node) watchLinks(ctx context.Context) (func(context.Context) error, error) {
	done := make(chan struct{})
	lu, au, err := subscribeLinks(done)
	if err != nil {
		close(done)
		return nil, err
	}
	h, err := netlink.NewHandle()
	if err != nil {
		close(done)
		return nil, fmt.Errorf("netlink handle: %w", err)
	}
	n.links.upSince = map[string]time.Time{}
	n.links.hold = time.NewTimer(time.Hour)
	n.links.hold.Stop()
	n.refreshLinks(ctx, h)
	return func(ctx context.Context) error {
		defer h.Close()
		defer func() { close(done) }()
		for {
			select {
			case <-ctx.Done():
				return nil
			case _, ok := <-lu:
				if !ok {
					done, lu, au = n.resubscribe(ctx, done)
				}
			case _, ok := <-au:
				if !ok {
					done, lu, au = n.resubscribe(ctx, done)
				}
			case <-n.links.kick:
			case <-n.links.hold.C:
			}
			n.refreshLinks(ctx, h)
		}
	}, nil
}

// resubscribe replaces failed subscriptions (netlink closes a channel when
// its socket fails, for example after a buffer overrun), retrying every
// second until ctx ends; the caller reads the state again after it.
func (n *Node) resubscribe(ctx context.Context, done chan struct{}) (chan struct{}, chan netlink.LinkUpdate, chan netlink.AddrUpdate) {
	close(done)
	n.log.Warn("netlink subscription for the layer2 links failed; subscribing again")
	for {
		d := make(chan struct{})
		lu, au, err := subscribeLinks(d)
		if err == nil || ctx.Err() != nil {
			return d, lu, au
		}
		close(d)
		n.log.Warn("subscribe to layer2 link changes", "error", err)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// refreshLinks reads the interfaces, holds back those that came back up
// less than LinkUpHold ago, and publishes what changed. Before a held
// interface counts again, the membership rejoins the other speakers, so
// a node cut off by its own link does not claim every VIP while it still
// believes it is alone.
func (n *Node) refreshLinks(ctx context.Context, h *netlink.Handle) {
	n.mu.Lock()
	blocks := n.links.blocks
	n.mu.Unlock()
	cur := readLinks(h, blocks)
	st := &n.links
	now, rejoin := time.Now(), false
	next := time.Duration(0)
	for name, l := range cur {
		prev, known := st.published[name]
		if !l.Up || st.published == nil || !known || prev.Up {
			delete(st.upSince, name)
			continue
		}
		since, held := st.upSince[name]
		if !held {
			st.upSince[name] = now
			n.log.Info("layer2 interface up again; candidate on it once it stays up and the speakers are rejoined", "iface", name, "hold", LinkUpHold)
			since = now
		}
		if wait := since.Add(LinkUpHold).Sub(now); wait > 0 {
			l.Up = false
			cur[name] = l
			if next == 0 || wait < next {
				next = wait
			}
			continue
		}
		delete(st.upSince, name)
		rejoin = true
	}
	if next > 0 {
		st.hold.Reset(next)
	}
	if rejoin {
		rctx, cancel := context.WithTimeout(ctx, rejoinLimit)
		n.ms.Rejoin(rctx)
		cancel()
	}
	if st.published != nil && st.published.Equal(cur) {
		return
	}
	for _, name := range slices.Sorted(maps.Keys(cur)) {
		l, was := cur[name], st.published[name]
		switch {
		case !l.Up && (st.published == nil || was.Up):
			n.log.Warn("layer2 interface down: this node is no candidate for its pools' VIPs there", "iface", name)
		case l.Up && st.published != nil && !was.Up:
			n.log.Info("layer2 interface up: this node is a candidate there again", "iface", name)
		}
		if !slices.Equal(l.Prefixes, was.Prefixes) || st.published == nil {
			n.log.Info("layer2 interface subnets", "iface", name, "up", l.Up, "subnets", l.Prefixes)
		}
		n.metrics.setUp(name, l.Up)
	}
	st.published = cur
	n.ms.SetLinks(cur)
}

// readLinks reads each interface's state and the subnets of its addresses
// that overlap its pools.
func readLinks(h *netlink.Handle, blocks map[string][]config.Range) owner.Links {
	out := owner.Links{}
	for name, pools := range blocks {
		lk, err := h.LinkByName(name)
		if err != nil {
			out[name] = owner.Link{} // missing: down
			continue
		}
		a := lk.Attrs()
		l := owner.Link{Up: a.Flags&net.FlagUp != 0 && (a.OperState == netlink.OperUp || a.OperState == netlink.OperUnknown)}
		var addrs []netlink.Addr
		for range 3 {
			if addrs, err = h.AddrList(lk, netlink.FAMILY_ALL); !errors.Is(err, netlink.ErrDumpInterrupted) {
				break
			}
		}
		for _, ad := range addrs {
			ip, ok := netip.AddrFromSlice(ad.IP)
			if !ok || !ip.Unmap().IsGlobalUnicast() || ad.IPNet == nil {
				continue
			}
			ones, _ := ad.Mask.Size()
			p := netip.PrefixFrom(ip.Unmap(), ones).Masked()
			if !slices.Contains(l.Prefixes, p) && slices.ContainsFunc(pools, config.PrefixRange(p).Overlaps) {
				l.Prefixes = append(l.Prefixes, p)
			}
		}
		slices.SortFunc(l.Prefixes, func(x, y netip.Prefix) int {
			if c := x.Addr().Compare(y.Addr()); c != 0 {
				return c
			}
			return x.Bits() - y.Bits()
		})
		out[name] = l
	}
	return out
}
