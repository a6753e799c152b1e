package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/vipspeaker/vipspeaker/bpf"
	"github.com/vipspeaker/vipspeaker/config"
	"github.com/vipspeaker/vipspeaker/dataplane"
	"github.com/vipspeaker/vipspeaker/dataplane/owner"
	"github.com/vipspeaker/vipspeaker/routing"
)

// restartWindow is how long the other speakers keep a restarting agent's
// layer2 VIPs with it before they take them over. A rolling update of the
// DaemonSet comes back well within it; a node that does not loses its VIPs.
const restartWindow = 15 * time.Second

// layer2 wires the ARP/NDP responder to the owner election: the layer2 VIPs
// of the table go to the election, and the VIPs this node wins go to the
// responder.
type layer2 struct {
	resp *dataplane.Responder
	fp   *bpf.FastPath // nil: userspace only
	log  *slog.Logger
	ms   *owner.Membership
	ctl  *owner.Controller
	a    *agent
	fast fastPathState  // announcer, uplinks, start-up gate (layer2_fastpath.go)
	arp  arpFilterState // the kernel's silence about VIPs (layer2_arpfilter.go)

	mu       sync.Mutex
	pools    map[string][]string     // pool name -> layer2 interfaces
	eligible map[netip.Addr][]string // cluster mode: candidate nodes per VIP
	kick     chan struct{}
}

// setEligible takes the candidate nodes of each layer2 VIP (Ready, not
// excluded, with a local endpoint under externalTrafficPolicy: Local).
func (l *layer2) setEligible(m map[netip.Addr][]string) {
	l.mu.Lock()
	l.eligible = m
	l.mu.Unlock()
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

// layer2Interfaces is the union of the layer2 pools' interfaces, sorted.
func layer2Interfaces(cfg *config.Config) []string {
	var out []string
	for _, p := range cfg.Pools {
		if p.Mode == routing.ModeLayer2 {
			out = append(out, p.Layer2.Interfaces...)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// newLayer2 builds the layer2 parts when the config has a layer2 pool; nil
// otherwise.
func (a *agent) newLayer2(cfg *config.Config) (*layer2, error) {
	ifaces := layer2Interfaces(cfg)
	if len(ifaces) == 0 {
		// No layer2 pool: at most the fast path, counting on the BGP uplinks.
		return a.newCountingOnly(cfg)
	}
	ann := &fastAnnouncer{}
	count := cfg.Layer2.GratuitousCount
	if count == 0 {
		count = -1 // configured as none; 0 would mean the default
	}
	resp, err := dataplane.New(dataplane.Options{
		Logger:             a.log,
		Registerer:         a.reg,
		GratuitousCount:    count,
		GratuitousInterval: cfg.Layer2.GratuitousInterval,
		StateFile:          filepath.Join(a.f.runDir, "layer2-sysctls.json"),
		Announcer:          ann,
		OnConflict:         a.layer2Conflict,
	})
	if err != nil {
		return nil, err
	}
	bind, err := owner.InterfaceAddr(ifaces[0])
	if err != nil {
		return nil, fmt.Errorf("membership address on %s (the first layer2 interface): %w", ifaces[0], err)
	}
	ms, err := owner.NewMembership(owner.Options{
		Logger:     a.log,
		Registerer: a.reg,
		NodeName:   a.f.nodeName,
		BindAddr:   bind,
		Join:       cfg.Membership.Join,
		SecretFile: cfg.Membership.SecretFile,
		Key:        a.cluster.memberKey, // cluster mode: secret:NAME/KEY
	})
	if err != nil {
		return nil, err
	}
	l := &layer2{resp: resp, ms: ms, a: a, log: a.log.With("component", "layer2"), kick: make(chan struct{}, 1)}
	if l.arp.f, err = dataplane.NewARPFilter(dataplane.ARPFilterOptions{Logger: a.log}); err != nil {
		return nil, err
	}
	if l.fp, err = a.loadFastPath(cfg, ifaces); err != nil {
		return nil, err
	}
	ann.fp = l.fp
	ctl, err := owner.NewController(owner.ControllerOptions{
		Logger:   a.log,
		NodeName: a.f.nodeName,
		Health:   l.gatedHealth(ms),
		Apply:    l.setOwned,
	})
	if err != nil {
		return nil, err
	}
	l.ctl = ctl
	l.configure(cfg)
	a.cfgState.setL2Owners(ctl.Owners)
	return l, nil
}

// loadFastPath loads the XDP responder as [layer2] fast-path asks: off
// loads nothing; auto falls back to userspace with one log line; xdp makes
// a refusal fatal. The userspace responder runs either way and answers
// whatever XDP does not.
func (a *agent) loadFastPath(cfg *config.Config, ifaces []string) (*bpf.FastPath, error) {
	if cfg.Layer2.FastPath == config.FastPathOff {
		return nil, nil
	}
	attach := bpf.AttachAuto
	if anyVeth(ifaces) {
		// A native XDP_TX reply on veth is dropped unless the peer runs
		// NAPI (see bpf/doc.go); generic mode sends it through the normal
		// path. Labs and tests run on veth.
		attach = bpf.AttachGeneric
	}
	fp, err := bpf.Load(bpf.Options{
		Interfaces: ifaces,
		Attach:     attach,
		PinDir:     pinDir(cfg, a.f.nodeName),
		Logger:     a.log,
		Registerer: a.reg,
	})
	switch {
	case err == nil:
		a.log.Info("XDP fast path answers ARP/NDP for owned VIPs", "interfaces", ifaces, "attach", string(attach))
		if attach == bpf.AttachGeneric {
			a.log.Info("a layer2 interface is a veth: gratuitous announcements sent as XDP live frames reach the peer only if it runs NAPI (an XDP program or GRO on the peer)")
		}
		return fp, nil
	case cfg.Layer2.FastPath == config.FastPathXDP:
		return nil, fmt.Errorf("[layer2] fast-path = \"xdp\": %w", err)
	case errors.Is(err, bpf.ErrNotSupported):
		a.log.Info("XDP fast path not available; ARP/NDP answered in userspace", "reason", err)
		return nil, nil
	default:
		a.log.Warn("XDP fast path failed to load; ARP/NDP answered in userspace", "error", err)
		return nil, nil
	}
}

// anyVeth reports whether one of the interfaces is a veth.
func anyVeth(ifaces []string) bool {
	h, err := netlink.NewHandle()
	if err != nil {
		return false
	}
	defer h.Close()
	for _, name := range ifaces {
		if l, err := h.LinkByName(name); err == nil && l.Type() == "veth" {
			return true
		}
	}
	return false
}

// setOwned hands the VIPs this node won to the XDP program first (so it
// answers before the announcements go out) and then to the userspace
// responder, which announces them and answers what XDP passes on.
func (l *layer2) setOwned(owned map[netip.Addr][]string) {
	if l.fp != nil {
		if err := l.fp.SetOwned(owned); err != nil {
			l.log.Warn("XDP fast path: update owned VIPs", "error", err)
		}
	}
	l.resp.SetOwned(owned)
	l.arp.ownedChanged(owned)
}

// configure takes a (new) config's layer2 interfaces and pools.
func (l *layer2) configure(cfg *config.Config) {
	pools := map[string][]string{}
	for _, p := range cfg.Pools {
		if p.Mode == routing.ModeLayer2 {
			pools[p.Name] = p.Layer2.Interfaces
		}
	}
	l.mu.Lock()
	l.pools = pools
	l.mu.Unlock()
	l.configureFastPath(cfg)
	if l.resp != nil {
		l.resp.SetInterfaces(layer2Interfaces(cfg))
	}
}

// run follows the VIP table and runs the responder, the membership and the
// election until ctx ends. removeOnExit says the agent leaves for good
// (its VIPs are being removed): say goodbye so the others take over at
// once, and restore the sysctls. Otherwise announce a restart window and
// keep the sysctls for the next agent.
func (l *layer2) run(ctx context.Context, vips *routing.Subscription, removeOnExit bool) error {
	if l.resp == nil {
		return l.runCounting(ctx, vips, removeOnExit)
	}
	if removeOnExit {
		l.ms.SetExitMode(owner.Leave, 0)
	} else {
		l.ms.SetExitMode(owner.Restart, restartWindow)
	}
	parts := []func(context.Context) error{l.resp.Run, l.ms.Run, l.ctl.Run}
	if l.fp != nil {
		parts = append(parts, l.fastPathRun(removeOnExit))
	}
	gate := l.startGate(ctx)
	// The baseline of the program's counts (a pinned program's carry over
	// from the previous agent), taken before this agent sends anything.
	fpSeen := map[string][3]uint64{} // per interface: the fast path's counts at the last look
	if l.fp != nil {
		l.fastPathCounts(fpSeen)
	}
	errc := make(chan error, len(parts))
	var wg sync.WaitGroup
	for _, f := range parts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errc <- f(ctx)
		}()
	}
	current := map[netip.Addr]routing.VIP{}
	all := map[netip.Addr]bool{} // every VIP of the node, for the XDP counters
	var err error
	var fpTick <-chan time.Time
	if l.fp != nil {
		t := time.NewTicker(2 * time.Second)
		defer t.Stop()
		fpTick = t.C
	}
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-fpTick:
			l.fastPathCounts(fpSeen)
			l.refreshUplinks()
		case <-gate.tableReady:
			gate.tableReady = nil
			l.applyEvents(vips.Next(), current, all, gate)
		case <-gate.limit:
			gate.limit = nil
			gate.open(l, "start-up limit reached")
		case err = <-errc:
			if err != nil {
				break loop
			}
		case <-l.kick:
			l.ctl.SetVIPs(l.ownerVIPs(current))
		case <-vips.Ready():
			l.applyEvents(vips.Next(), current, all, gate)
		}
	}
	wg.Wait()
	if l.fp != nil {
		if removeOnExit {
			if rerr := l.fp.Remove(); rerr != nil {
				l.log.Warn("XDP fast path: remove", "error", rerr)
			}
		} else {
			// Pinned, it keeps answering through the restart window
			// (lease renewed when ctx ended, see fastPathRun).
			if cerr := l.fp.Close(); cerr != nil {
				l.log.Warn("XDP fast path: close", "error", cerr)
			}
		}
	}
	if aerr := l.arp.exit(removeOnExit); aerr != nil && err == nil {
		err = aerr
	}
	if removeOnExit {
		if cerr := l.resp.Close(); cerr != nil && err == nil {
			err = cerr
		}
	} else if derr := l.resp.Detach(); derr != nil && err == nil {
		err = derr
	}
	return err
}

// fastPathCounts moves what the XDP program sent since the last look into
// the reply counters (path="xdp"). The first look after a start is the
// baseline: a pinned program's counts carry over from the previous agent.
func (l *layer2) fastPathCounts(seen map[string][3]uint64) {
	for name := range l.fp.Interfaces() {
		arp, ndp, garp, err := l.fp.SentCounts(name)
		if err != nil {
			continue
		}
		now := [3]uint64{arp, ndp, garp}
		if last, ok := seen[name]; ok && now[0] >= last[0] && now[1] >= last[1] && now[2] >= last[2] {
			l.resp.AddFastPathCounts(name, now[0]-last[0], now[1]-last[1], now[2]-last[2])
		}
		seen[name] = now
	}
}

func (l *layer2) ownerVIPs(current map[netip.Addr]routing.VIP) []owner.VIP {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]owner.VIP, 0, len(current))
	for a, v := range current {
		// Eligible nil: every healthy speaker (standalone mode has no
		// node readiness or endpoints to narrow it). In a cluster, a VIP
		// the API has not told us about yet also goes to every healthy
		// speaker.
		var elig []string
		if l.eligible != nil {
			if e, ok := l.eligible[a]; ok {
				elig = e
				if elig == nil {
					elig = []string{}
				}
			}
		}
		out = append(out, owner.VIP{Addr: a, Eligible: elig, Interfaces: l.pools[v.Attrs.Pool]})
	}
	slices.SortFunc(out, func(x, y owner.VIP) int { return x.Addr.Compare(y.Addr) })
	return out
}

// withPools fills in each VIP's pool (when the Service did not name one)
// and mode (when the Service did not ask for one) from vipspeaker.toml.
func withPools(vips []routing.VIP, cfg *config.Config) []routing.VIP {
	out := make([]routing.VIP, len(vips))
	for i, v := range vips {
		p := cfg.Pool(v.Attrs.Pool)
		if p == nil {
			p = cfg.PoolOf(v.Addr)
		}
		if p != nil {
			if v.Attrs.Pool == "" {
				v.Attrs.Pool = p.Name
			}
			if v.Attrs.Mode == "" {
				v.Attrs.Mode = p.Mode
			}
		}
		if v.Attrs.Mode == "" {
			v.Attrs.Mode = routing.ModeBGP
		}
		out[i] = v
	}
	return out
}
