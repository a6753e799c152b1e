package l2node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/vishvananda/netlink"

	"github.com/vipspeaker/vipspeaker/bpf"
	"github.com/vipspeaker/vipspeaker/config"
	"github.com/vipspeaker/vipspeaker/dataplane"
	"github.com/vipspeaker/vipspeaker/dataplane/owner"
	"github.com/vipspeaker/vipspeaker/internal/heartbeat"
	"github.com/vipspeaker/vipspeaker/routing"
)

// RestartWindow is how long the other speakers keep a restarting agent's
// layer2 VIPs with it before they take them over. A rolling update of the
// DaemonSet comes back well within it; a node that does not loses its VIPs.
const RestartWindow = 15 * time.Second

// Options configure New.
type Options struct {
	// Config is the configuration at start: its layer2 pools, [layer2]
	// and [membership].
	Config *config.Config
	// NodeName is this node's name in the membership (required).
	NodeName string
	// RunDir holds layer2-sysctls.json, the original sysctls kept across
	// restarts (see dataplane.Options.StateFile).
	RunDir string
	// RemoveOnExit says the agent leaves for good when Run ends: say
	// goodbye, restore the sysctls, remove the XDP program. Otherwise the
	// node keeps its state for the next agent.
	RemoveOnExit bool
	// MemberKey, when set, is the membership key (cluster mode: derived
	// from the Secret [membership] secret-file names).
	MemberKey []byte
	// OnConflict hears of another station answering for a VIP this node
	// owns (see dataplane.Options.OnConflict); it must not block.
	OnConflict func(vip netip.Addr, iface string, mac net.HardwareAddr)
	// Peers lists the BGP sessions (nil: none), whose interfaces the fast
	// path counts VIP traffic on.
	Peers func() []Peer
	// Heartbeat, when set, beats from Run's loop (/healthz).
	Heartbeat  *heartbeat.Beat
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// Peer is a BGP session, for finding the uplink it runs over.
type Peer struct {
	// Interface is set for a neighbor given by interface (unnumbered).
	Interface string
	// Address is the neighbor's address otherwise.
	Address netip.Addr
}

// Table is what a Node follows: the VIP table (*routing.Table).
type Table interface {
	Ready() <-chan struct{}
	Subscribe() *routing.Subscription
}

// Node is a node's layer2 part. New builds it; Run runs it.
type Node struct {
	opts    Options
	resp    *dataplane.Responder   // nil: counting only
	fp      *bpf.FastPath          // nil: userspace only
	nft     *dataplane.VIPCounters // nil: XDP counts, or nothing does
	log     *slog.Logger
	ms      *owner.Membership
	ctl     *owner.Controller
	fast    fastPathState  // uplinks, start-up gate (fastpath.go)
	arp     arpFilterState // the kernel's silence about VIPs (arpfilter.go)
	links   linkState      // the layer2 interfaces' states (links.go)
	metrics *metrics

	mu       sync.Mutex
	pools    map[string][]string     // pool name -> layer2 interfaces
	eligible map[netip.Addr][]string // cluster mode: candidate nodes per VIP
	checked  netip.Addr              // the control-plane VIP, which follows the health check (invalid: none)
	kick     chan struct{}
}

// New builds the layer2 parts the config asks for: with layer2 pools the
// responder, the membership, the election and (as [layer2] fast-path says)
// the XDP program; without, only the fast path to count VIP traffic on the
// BGP uplinks, or (where the fast path does not run) the nftables
// counters ([vip-counters]). It returns nil and no error when there is
// nothing to run (no layer2 pool, no fast path, no nftables counters).
func New(opts Options) (*Node, error) {
	if opts.Config == nil || opts.NodeName == "" {
		return nil, errors.New("layer2 node: config and node name are required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	cfg := opts.Config
	ifaces := cfg.Layer2Interfaces()
	if len(ifaces) == 0 {
		return newCountingOnly(opts)
	}
	ann := &fastAnnouncer{}
	count := cfg.Layer2.GratuitousCount
	if count == 0 {
		count = -1 // configured as none; 0 would mean the default
	}
	resp, err := dataplane.New(dataplane.Options{
		Logger:             opts.Logger,
		Registerer:         opts.Registerer,
		GratuitousCount:    count,
		GratuitousInterval: cfg.Layer2.GratuitousInterval,
		StateFile:          filepath.Join(opts.RunDir, "layer2-sysctls.json"),
		Announcer:          ann,
		OnConflict:         opts.OnConflict,
	})
	if err != nil {
		return nil, err
	}
	bind, err := owner.InterfaceAddr(ifaces[0])
	if err != nil {
		return nil, fmt.Errorf("membership address on %s (the first layer2 interface): %w", ifaces[0], err)
	}
	ms, err := owner.NewMembership(owner.Options{
		Logger:     opts.Logger,
		Registerer: opts.Registerer,
		NodeName:   opts.NodeName,
		BindAddr:   bind,
		Join:       cfg.Membership.Join,
		SecretFile: cfg.Membership.SecretFile,
		Key:        opts.MemberKey,
	})
	if err != nil {
		return nil, err
	}
	n := &Node{opts: opts, resp: resp, ms: ms, log: opts.Logger.With("component", "layer2"), kick: make(chan struct{}, 1)}
	n.links.kick = make(chan struct{}, 1)
	if n.metrics, err = newMetrics(opts.Registerer); err != nil {
		return nil, err
	}
	if n.arp.f, err = dataplane.NewARPFilter(dataplane.ARPFilterOptions{Logger: opts.Logger}); err != nil {
		return nil, err
	}
	if n.fp, err = loadFastPath(opts, ifaces); err != nil {
		return nil, err
	}
	if n.fp == nil {
		if n.nft, err = newNFTCounters(opts); err != nil {
			return nil, err
		}
	} else {
		removeStaleCounters(opts)
	}
	// The reply counters read the program's counts at scrape time, and
	// vipspeaker_l2_fast_path_active says which path answers.
	resp.SetFastPath(n.fp)
	ann.fp = n.fp
	ctl, err := owner.NewController(owner.ControllerOptions{
		Logger:   opts.Logger,
		NodeName: opts.NodeName,
		Health:   n.gatedHealth(ms),
		Apply:    n.setOwned,
		Links:    ms.Links,
		Checks:   ms.Checks,
	})
	if err != nil {
		return nil, err
	}
	n.ctl = ctl
	n.Configure(cfg)
	return n, nil
}

// SetEligible takes the candidate nodes of each layer2 VIP (Ready, not
// excluded, with a local endpoint under externalTrafficPolicy: Local).
func (n *Node) SetEligible(m map[netip.Addr][]string) {
	n.mu.Lock()
	n.eligible = m
	n.mu.Unlock()
	select {
	case n.kick <- struct{}{}:
	default:
	}
}

// SetJoin replaces the speakers the membership joins (in a cluster: the
// other nodes' addresses). A counting-only node has no membership.
func (n *Node) SetJoin(peers []string) {
	if n.ms != nil {
		n.ms.SetJoin(peers)
	}
}

// Owners returns the node owning each layer2 VIP, and false when no
// election runs (a counting-only node, or nil).
func (n *Node) Owners() (map[netip.Addr]string, bool) {
	if n == nil || n.ctl == nil {
		return nil, false
	}
	return n.ctl.Owners(), true
}

// loadFastPath loads the XDP responder as [layer2] fast-path asks: off
// loads nothing; auto falls back to userspace with one log line (at error
// level when the kernel's verifier refused the program); xdp makes a
// refusal fatal. The userspace responder runs either way and answers
// whatever XDP does not.
func loadFastPath(opts Options, ifaces []string) (*bpf.FastPath, error) {
	cfg, log := opts.Config, opts.Logger
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
		PinDir:     pinDir(cfg, opts.NodeName),
		Logger:     log,
		Registerer: opts.Registerer,
	})
	switch {
	case err == nil:
		log.Info("XDP fast path answers ARP/NDP for owned VIPs", "interfaces", ifaces, "attach", string(attach))
		if attach == bpf.AttachGeneric {
			log.Info("a layer2 interface is a veth: gratuitous announcements sent as XDP live frames reach the peer only if it runs NAPI (an XDP program or GRO on the peer)")
		}
		return fp, nil
	case cfg.Layer2.FastPath == config.FastPathXDP:
		return nil, fmt.Errorf("[layer2] fast-path = \"xdp\": %w", err)
	case errors.Is(err, bpf.ErrNotSupported):
		log.Info("XDP fast path not available; ARP/NDP answered in userspace", "reason", err)
		return nil, nil
	case errors.As(err, new(*bpf.VerifierError)):
		log.Error("the kernel's verifier refused the XDP fast path (its log is above); ARP/NDP answered in userspace", "error", err)
		return nil, nil
	default:
		log.Warn("XDP fast path failed to load; ARP/NDP answered in userspace", "error", err)
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
func (n *Node) setOwned(owned map[netip.Addr][]string) {
	if n.fp != nil {
		if err := n.fp.SetOwned(owned); err != nil {
			n.log.Warn("XDP fast path: update owned VIPs", "error", err)
		}
	}
	n.resp.SetOwned(owned)
	n.arp.ownedChanged(owned)
	n.mu.Lock()
	cp := n.checked
	n.mu.Unlock()
	var holds []netip.Addr
	if _, ok := owned[cp]; ok && cp.IsValid() {
		holds = append(holds, cp)
	}
	n.ms.SetHolds(holds)
}

// SetCheck tells the other speakers whether this node's health check
// passes: the control-plane VIP goes only to nodes whose check passes
// (dataplane/owner.Elect).
func (n *Node) SetCheck(passing bool) {
	if n != nil && n.ms != nil {
		n.ms.SetCheck(passing)
	}
}

// Configure takes a (new) config's layer2 interfaces and pools. Pools of a
// node built without any start at the next restart (logged).
func (n *Node) Configure(cfg *config.Config) {
	pools := map[string][]string{}
	for _, p := range cfg.Pools {
		if p.Mode == routing.ModeLayer2 {
			pools[p.Name] = p.Layer2.Interfaces
		}
	}
	n.mu.Lock()
	n.pools = pools
	n.checked = netip.Addr{}
	if cfg.ControlPlane != nil && cfg.ControlPlane.Mode == routing.ModeLayer2 {
		n.checked = cfg.ControlPlane.Address
	}
	n.links.blocks = linkBlocks(cfg)
	n.mu.Unlock()
	if n.links.kick != nil {
		select {
		case n.links.kick <- struct{}{}:
		default:
		}
	}
	n.configureFastPath(cfg)
	if n.resp != nil {
		n.resp.SetInterfaces(cfg.Layer2Interfaces())
	}
}

// Run follows the VIP table and runs the responder, the membership and the
// election until ctx ends. With Options.RemoveOnExit it says goodbye so the
// others take over at once, and restores the sysctls; otherwise it
// announces a restart window and keeps the sysctls for the next agent.
func (n *Node) Run(ctx context.Context, table Table) error {
	vips := table.Subscribe()
	defer vips.Close()
	if n.resp == nil {
		return n.runCounting(ctx, vips)
	}
	removeOnExit := n.opts.RemoveOnExit
	if removeOnExit {
		n.ms.SetExitMode(owner.Leave, 0)
	} else {
		n.ms.SetExitMode(owner.Restart, RestartWindow)
	}
	watch, err := n.watchLinks(ctx)
	if err != nil {
		return err
	}
	parts := []func(context.Context) error{n.resp.Run, n.ms.Run, n.ctl.Run, watch}
	if n.fp != nil {
		parts = append(parts, n.fastPathRun)
	}
	gate := n.startGate(ctx, table.Ready())
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
	all := map[netip.Addr]bool{}    // every VIP of the node, for the XDP counters
	var uplinkTick <-chan time.Time // the BGP uplinks the fast path counts on
	if n.fp != nil {
		t := time.NewTicker(2 * time.Second)
		defer t.Stop()
		uplinkTick = t.C
	}
	beat, stopBeat := n.opts.Heartbeat.Tick()
	defer stopBeat()
loop:
	for {
		n.opts.Heartbeat.Beat()
		select {
		case <-ctx.Done():
			break loop
		case <-beat:
		case <-uplinkTick:
			n.refreshUplinks()
		case <-gate.tableReady:
			gate.tableReady = nil
			n.applyEvents(vips.Next(), current, all, gate)
		case <-gate.limit:
			gate.limit = nil
			gate.open(n, "start-up limit reached")
		case err = <-errc:
			if err != nil {
				break loop
			}
		case <-n.kick:
			n.ctl.SetVIPs(n.ownerVIPs(current))
		case <-vips.Ready():
			n.applyEvents(vips.Next(), current, all, gate)
		}
	}
	wg.Wait()
	if n.fp != nil {
		if removeOnExit {
			if rerr := n.fp.Remove(); rerr != nil {
				n.log.Warn("XDP fast path: remove", "error", rerr)
			}
		} else {
			// Pinned, it keeps answering through the restart window
			// (lease renewed when ctx ended, see fastPathRun).
			if cerr := n.fp.Close(); cerr != nil {
				n.log.Warn("XDP fast path: close", "error", cerr)
			}
		}
	}
	n.exitCounters(removeOnExit)
	if aerr := n.arp.exit(removeOnExit); aerr != nil && err == nil {
		err = aerr
	}
	if removeOnExit {
		if cerr := n.resp.Close(); cerr != nil && err == nil {
			err = cerr
		}
	} else if derr := n.resp.Detach(); derr != nil && err == nil {
		err = derr
	}
	return err
}

func (n *Node) ownerVIPs(current map[netip.Addr]routing.VIP) []owner.VIP {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]owner.VIP, 0, len(current))
	for a, v := range current {
		// Eligible nil: every healthy speaker (standalone mode has no
		// node readiness or endpoints to narrow it). In a cluster, a VIP
		// the API has not told us about yet also goes to every healthy
		// speaker.
		var elig []string
		if n.eligible != nil {
			if e, ok := n.eligible[a]; ok {
				elig = e
				if elig == nil {
					elig = []string{}
				}
			}
		}
		out = append(out, owner.VIP{Addr: a, Eligible: elig, Interfaces: n.pools[v.Attrs.Pool], Checked: a == n.checked})
	}
	slices.SortFunc(out, func(x, y owner.VIP) int { return x.Addr.Compare(y.Addr) })
	return out
}
