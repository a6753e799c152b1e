package l2node

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/vipspeaker/vipspeaker/bpf"
	"github.com/vipspeaker/vipspeaker/config"
	"github.com/vipspeaker/vipspeaker/dataplane/owner"
	"github.com/vipspeaker/vipspeaker/routing"
)

// StartupLimit bounds how long a starting agent leaves the owned set it
// found pinned in place while it waits for its VIP table to settle (the
// source's first apply giving the adopted VIPs their modes).
const StartupLimit = 10 * time.Second

// uplinkRefresh is how often the BGP uplinks are looked up again (the
// neighbors of the gobgp.conf in force, routed through the kernel).
const uplinkRefresh = 2 * time.Second

// fastPathState is what a Node keeps for the XDP fast path beyond the
// loaded program: the interfaces it was given and the start-up gate.
type fastPathState struct {
	// l2ifaces are the configured layer2 interfaces; appliedL2 and
	// appliedUp what was last given to FastPath.SetInterfaces (all under
	// Node.mu).
	l2ifaces, appliedL2, appliedUp []string
	applied                        bool
	// refresh serialises refreshUplinks (the run loop and config reloads
	// both call it), so an older lookup never overwrites a newer one.
	refresh sync.Mutex
	// gateOpen closes once the VIP table has settled after a start;
	// ready once that and the membership are ready (the controller's
	// Ready).
	gateOpen, ready chan struct{}
	gateOnce        sync.Once
}

// pinDir is the directory this node's fast path pins into: [layer2]
// pin-dir (default /sys/fs/bpf/vipspeaker), then the node's name, so
// several agents sharing one bpf filesystem (the lab) never share pins.
func pinDir(cfg *config.Config, node string) string {
	root := cfg.Layer2.PinDir
	if root == "" {
		root = bpf.DefaultPinDir
	}
	return filepath.Join(root, node)
}

// fastAnnouncer hands the responder's gratuitous rounds to the XDP program
// (BPF_PROG_RUN live frames). Without a fast path every VIP is "missed" and
// goes out through the packet socket. fp is set before the responder runs.
type fastAnnouncer struct{ fp *bpf.FastPath }

func (f *fastAnnouncer) AnnounceOwned(iface string, vips []netip.Addr) (int, []netip.Addr, error) {
	if f.fp == nil {
		return 0, vips, nil
	}
	if _, ok := f.fp.Interfaces()[iface]; !ok {
		return 0, vips, nil
	}
	return f.fp.AnnounceOwned(iface, vips)
}

// gatedHealth is the membership as the owner controller sees it: ready
// only once the membership is and the VIP table has settled, so a
// restarting agent never applies an owned set computed before it knows its
// VIPs (which would empty the pinned program's set and leave requests
// unanswered).
type gatedHealth struct {
	owner.Health
	ready <-chan struct{}
}

func (g gatedHealth) Ready() <-chan struct{} { return g.ready }

func (n *Node) gatedHealth(h owner.Health) owner.Health {
	n.fast.gateOpen = make(chan struct{})
	n.fast.ready = make(chan struct{})
	return gatedHealth{Health: h, ready: n.fast.ready}
}

// startGate follows the start-up: the table's adoption, then the modes of
// the adopted VIPs.
type startGate struct {
	tableReady <-chan struct{}
	limit      <-chan time.Time
	unknown    map[netip.Addr]bool // VIPs seen without a mode (adopted, not yet applied)
	timer      *time.Timer
}

// startGate arms the gate for Run: it opens once the table is ready and no
// VIP lacks a mode, or after StartupLimit.
func (n *Node) startGate(ctx context.Context, tableReady <-chan struct{}) *startGate {
	g := &startGate{unknown: map[netip.Addr]bool{}}
	if n.fast.gateOpen == nil {
		return g // counting only: no controller
	}
	g.tableReady = tableReady
	g.timer = time.NewTimer(StartupLimit)
	g.limit = g.timer.C
	go func() {
		for _, c := range []<-chan struct{}{n.ms.Ready(), n.fast.gateOpen} {
			select {
			case <-ctx.Done():
				return
			case <-c:
			}
		}
		close(n.fast.ready)
	}()
	return g
}

func (g *startGate) open(n *Node, reason string) {
	if n.fast.gateOpen == nil {
		return
	}
	n.fast.gateOnce.Do(func() {
		if g.timer != nil {
			g.timer.Stop()
		}
		g.limit = nil
		n.log.Debug("VIP table settled; computing owners", "reason", reason)
		close(n.fast.gateOpen)
	})
}

// applyEvents takes a batch of the VIP table's events: the layer2 VIPs go
// to the election, every VIP to the fast path's counters.
func (n *Node) applyEvents(evs []routing.Event, current map[netip.Addr]routing.VIP, all map[netip.Addr]bool, g *startGate) {
	for _, ev := range evs {
		a := ev.VIP.Addr
		if ev.Kind == routing.Removed {
			delete(all, a)
			delete(g.unknown, a)
		} else {
			all[a] = true
			if ev.VIP.Attrs.Mode == "" {
				g.unknown[a] = true
			} else {
				delete(g.unknown, a)
			}
		}
		if ev.Kind == routing.Removed || ev.VIP.Attrs.Mode != routing.ModeLayer2 {
			delete(current, a)
			continue
		}
		current[a] = ev.VIP
	}
	if n.ctl != nil {
		n.ctl.SetVIPs(n.ownerVIPs(current))
	}
	n.arp.vipsChanged(all, current)
	n.countVIPs(all)
	if g.tableReady == nil && len(g.unknown) == 0 {
		g.open(n, "VIP table settled")
	}
}

// fastPathRun runs the fast path's lease renewal. A lease found lapsed
// (the previous agent has been gone longer than its window) means the
// pinned owned set is stale: it is emptied before the lease is renewed, so
// it never answers for VIPs another node has taken since. When ctx ends
// for a restart, the lease is renewed for the restart window at once,
// before the other parts wind down.
func (n *Node) fastPathRun(ctx context.Context) error {
	if d, err := n.fp.LeaseRemaining(); err == nil && d == 0 {
		if err := n.fp.SetOwned(map[netip.Addr][]string{}); err != nil {
			n.log.Warn("XDP fast path: clear the stale owned set", "error", err)
		}
	}
	err := n.fp.Run(ctx)
	if !n.opts.RemoveOnExit && n.resp != nil {
		if rerr := n.fp.RenewLease(RestartWindow); rerr != nil {
			n.log.Warn("XDP fast path: renew lease for the restart", "error", rerr)
		} else {
			n.log.Info("XDP fast path keeps answering through the restart window", "window", RestartWindow)
		}
	}
	return err
}

// configureFastPath takes a (new) config's layer2 interfaces for the fast
// path.
func (n *Node) configureFastPath(cfg *config.Config) {
	if n.resp == nil && len(cfg.Layer2Interfaces()) > 0 {
		n.log.Warn("layer2 pools were added; the ARP/NDP responder starts at the next restart")
	}
	if n.fp == nil {
		return
	}
	var ifs []string
	if n.resp != nil {
		ifs = cfg.Layer2Interfaces()
	}
	n.mu.Lock()
	n.fast.l2ifaces = ifs
	n.mu.Unlock()
	n.refreshUplinks()
}

// refreshUplinks gives the fast path the layer2 interfaces and the BGP
// uplinks (count only) when either changed since the last time.
func (n *Node) refreshUplinks() {
	if n.fp == nil {
		return
	}
	n.fast.refresh.Lock()
	defer n.fast.refresh.Unlock()
	var up []string
	if n.opts.Peers != nil {
		up = uplinksOf(n.opts.Peers())
	}
	n.mu.Lock()
	st := &n.fast
	l2 := slices.Clone(st.l2ifaces)
	if st.applied && slices.Equal(l2, st.appliedL2) && slices.Equal(up, st.appliedUp) {
		n.mu.Unlock()
		return
	}
	upChanged := !slices.Equal(up, st.appliedUp)
	st.applied, st.appliedL2, st.appliedUp = true, l2, up
	n.mu.Unlock()
	if upChanged {
		n.log.Info("BGP uplinks: counting VIP traffic there", "uplinks", up)
	}
	if err := n.fp.SetInterfaces(l2, up); err != nil {
		n.log.Warn("XDP fast path: attach", "layer2", l2, "uplinks", up, "error", err)
	}
}

// uplinksOf names the interfaces the BGP sessions use: for a neighbor
// given by interface (unnumbered) that interface, otherwise the one the
// kernel routes its address through. Loopback and non-Ethernet interfaces
// are left out (nothing to attach XDP to there).
func uplinksOf(peers []Peer) []string {
	seen := map[string]bool{}
	var out []string
	add := func(l netlink.Link) {
		if l == nil {
			return
		}
		at := l.Attrs()
		if len(at.HardwareAddr) != 6 || at.Flags&0x8 != 0 || seen[at.Name] { // net.FlagLoopback
			return
		}
		seen[at.Name] = true
		out = append(out, at.Name)
	}
	for _, p := range peers {
		if p.Interface != "" {
			if lk, err := netlink.LinkByName(p.Interface); err == nil {
				add(lk)
			}
			continue
		}
		if !p.Address.IsValid() {
			continue
		}
		routes, err := netlink.RouteGet(p.Address.AsSlice())
		if err != nil || len(routes) == 0 || routes[0].LinkIndex == 0 {
			continue
		}
		if lk, err := netlink.LinkByIndex(routes[0].LinkIndex); err == nil {
			add(lk)
		}
	}
	slices.Sort(out)
	return out
}

// newCountingOnly loads the fast path on a node without layer2 pools, to
// count VIP traffic on the BGP uplinks; nil when the fast path is off or
// does not load (auto).
func newCountingOnly(opts Options) (*Node, error) {
	cfg, log := opts.Config, opts.Logger
	if cfg.Layer2.FastPath == config.FastPathOff {
		return newNFTCountingOnly(opts)
	}
	fp, err := bpf.Load(bpf.Options{
		PinDir:     pinDir(cfg, opts.NodeName),
		Logger:     log,
		Registerer: opts.Registerer,
	})
	switch {
	case err == nil:
		log.Info("XDP fast path counts VIP traffic on the BGP uplinks")
		removeStaleCounters(opts)
	case cfg.Layer2.FastPath == config.FastPathXDP:
		return nil, fmt.Errorf("[layer2] fast-path = \"xdp\": %w", err)
	case errors.Is(err, bpf.ErrNotSupported):
		log.Info("XDP fast path not available", "reason", err)
		return newNFTCountingOnly(opts)
	default:
		log.Warn("XDP fast path failed to load", "error", err)
		return newNFTCountingOnly(opts)
	}
	n := &Node{opts: opts, fp: fp, log: log.With("component", "layer2"), kick: make(chan struct{}, 1)}
	n.Configure(cfg)
	return n, nil
}

// runCounting is Run for a node without layer2 pools: it keeps the fast
// path's (or the nftables) counted VIPs, and the fast path's uplinks,
// current until ctx ends.
func (n *Node) runCounting(ctx context.Context, vips *routing.Subscription) error {
	errc := make(chan error, 1)
	var uplinkTick <-chan time.Time
	if n.fp != nil {
		go func() { errc <- n.fastPathRun(ctx) }()
		t := time.NewTicker(uplinkRefresh)
		defer t.Stop()
		uplinkTick = t.C
		n.refreshUplinks()
	}
	g := &startGate{unknown: map[netip.Addr]bool{}}
	current := map[netip.Addr]routing.VIP{}
	all := map[netip.Addr]bool{}
	beat, stopBeat := n.opts.Heartbeat.Tick()
	defer stopBeat()
	var err error
loop:
	for {
		n.opts.Heartbeat.Beat()
		select {
		case <-ctx.Done():
			break loop
		case <-beat:
		case err = <-errc:
			errc = nil
			if err != nil {
				break loop
			}
		case <-uplinkTick:
			n.refreshUplinks()
		case <-vips.Ready():
			n.applyEvents(vips.Next(), current, all, g)
		}
	}
	n.exitCounters(n.opts.RemoveOnExit)
	if n.fp == nil {
		return err
	}
	if errc != nil {
		<-errc
	}
	if n.opts.RemoveOnExit {
		if rerr := n.fp.Remove(); rerr != nil {
			n.log.Warn("XDP fast path: remove", "error", rerr)
		}
	} else if cerr := n.fp.Close(); cerr != nil {
		n.log.Warn("XDP fast path: close", "error", cerr)
	}
	return err
}
