package bgp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	api "github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/config/oc"
	"github.com/osrg/gobgp/v4/pkg/server"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/vipspeaker/vipspeaker/routing"
)

// SocketName is the file, in the run directory, of GoBGP's gRPC API.
const SocketName = "gobgp.sock"

// Options configure a Server. The zero value is usable: no metrics, logs to
// slog.Default, run directory /run/vipspeaker.
type Options struct {
	// RunDir holds gobgp.sock.
	RunDir string
	// Logger receives our logs and GoBGP's (with component=gobgp).
	Logger *slog.Logger
	// Registerer, when set, gets the BGP metrics.
	Registerer prometheus.Registerer
	// NodeName is used in log messages.
	NodeName string
	// RouterID, when valid, is used where gobgp.conf leaves router-id
	// empty; otherwise the node's own IPv4 address is chosen.
	RouterID netip.Addr
	// NextHop6, when valid, is the next hop of IPv6 VIPs; otherwise it is
	// chosen (see chooseNextHop6).
	NextHop6 netip.Addr
	// ShutdownTimeout bounds the wait for withdrawals at shutdown
	// (default 5 s).
	ShutdownTimeout time.Duration
}

// Server is the node's BGP speaker: an embedded GoBGP fed with the VIP table
// and configured from gobgp.conf.
type Server struct {
	opts Options
	log  *slog.Logger
	glog *slog.Logger

	configured     chan struct{}
	configuredOnce sync.Once

	// opMu serialises everything that changes the speaker: config
	// application, path changes, start and shutdown.
	opMu    sync.Mutex
	pending *parsedConfig // accepted, not yet applied (before Run)
	cur     *parsedConfig // applied; router-id resolved
	bgp     *server.BgpServer
	stopped bool
	// peersAdded: the neighbors of cur are in GoBGP (Run adds them only
	// after the first VIPs are in the RIB)
	peersAdded bool
	// bfdHeld: neighbors added with BFD held back until their session has
	// been Established for bfdHoldOff (see withBFDHeld)
	bfdHeld map[netip.Addr]bool
	vips    map[netip.Addr]routing.VIP // announced VIPs
	paths   map[netip.Addr]*apiutil.Path
	nh6     netip.Addr
	// zebraSet: the VIP prefixes in the sets of the zebra export policy
	// (see syncZebraVIPs)
	zebraSet map[netip.Prefix]bool

	running atomic.Pointer[server.BgpServer] // for readers (Peers)
	// zebraUp: the running speaker's zebra client has connected; a read
	// failure GoBGP logs for it afterwards means zebra is gone (noteZebraLog)
	zebraUp   atomic.Bool
	zebraLost chan struct{} // signalled by noteZebraLog, read by RunZebraGuard
	// nativeUpdates counts the paths the native feed added or deleted
	nativeUpdates prometheus.Counter
	ready         atomic.Bool
	announced     atomic.Int64
	quiet         atomic.Bool // drop GoBGP's complaint about a second stop
}

// New returns a Server. It starts nothing.
func New(opts Options) (*Server, error) {
	if opts.RunDir == "" {
		opts.RunDir = "/run/vipspeaker"
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.ShutdownTimeout == 0 {
		opts.ShutdownTimeout = 5 * time.Second
	}
	s := &Server{
		opts:       opts,
		log:        opts.Logger.With("component", "bgp"),
		configured: make(chan struct{}),
		vips:       make(map[netip.Addr]routing.VIP),
		bfdHeld:    make(map[netip.Addr]bool),
		paths:      make(map[netip.Addr]*apiutil.Path),
		zebraLost:  make(chan struct{}, 1),
		nativeUpdates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vipspeaker_bgp_native_vip_updates_total",
			Help: "VIP paths the agent's own feed added to or withdrew from the BGP speaker (none in zebra mode, where the VIP paths are zebra's).",
		}),
	}
	s.glog = slog.New(quietHandler{s: s, next: newGoBGPLogger(opts.Logger).Handler()})
	if opts.Registerer != nil {
		if err := opts.Registerer.Register(newCollector(s)); err != nil {
			return nil, fmt.Errorf("register bgp metrics: %w", err)
		}
		if err := opts.Registerer.Register(s.nativeUpdates); err != nil {
			return nil, fmt.Errorf("register bgp metrics: %w", err)
		}
	}
	return s, nil
}

// Ready reports whether the speaker runs with its first config and has
// announced the VIPs present at start.
func (s *Server) Ready() bool { return s.ready.Load() }

// Apply validates a gobgp.conf and, when it is valid, makes it the running
// config by diff. On any validation error nothing changes and the errors
// (each "file:line: problem") are returned joined. Before Run starts the
// config is kept and applied at start.
func (s *Server) Apply(ctx context.Context, file string, data []byte) error {
	cfg, errs := parseConfig(file, data)
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if errs := checkHost(cfg); len(errs) > 0 {
		return errors.Join(errs...)
	}
	s.opMu.Lock()
	defer s.opMu.Unlock()
	if s.stopped {
		return errors.New("bgp speaker has stopped")
	}
	if s.bgp == nil {
		s.pending = cfg
		s.configuredOnce.Do(func() { close(s.configured) })
		return nil
	}
	return s.applyLocked(ctx, cfg)
}

// checkHost checks what depends on this node rather than on the file: a
// password needs TCP_MD5SIG.
func checkHost(cfg *parsedConfig) []error {
	var errs []error
	md5 := func(line int, who string) {
		if err := md5Probe(); err != nil {
			errs = append(errs, &ConfigError{File: cfg.File, Line: line,
				Msg: fmt.Sprintf("%s has an auth-password, but %v: refusing to peer without it", who, err)})
		}
	}
	for i, n := range cfg.set.Neighbors {
		if n.Config.AuthPassword != "" {
			md5(cfg.pos.line("neighbors", idx(i), "config", "auth-password"), "neighbor "+n.State.NeighborAddress.String())
		}
	}
	for i, pg := range cfg.set.PeerGroups {
		if pg.Config.AuthPassword != "" {
			md5(cfg.pos.line("peer-groups", idx(i), "config", "auth-password"), "peer-group "+pg.Config.PeerGroupName)
		}
	}
	return errs
}

// md5Probe is md5Supported; tests replace it.
var md5Probe = md5Supported

// vipSource is what Run reads VIP events from (*routing.Subscription).
type vipSource interface {
	Ready() <-chan struct{}
	Next() []routing.Event
}

// Run starts GoBGP once the first config is there (see Apply), announces
// the VIPs of vips and follows their changes until ctx is cancelled. Then,
// for peers with graceful restart it closes the sessions without a
// NOTIFICATION, so they keep the routes while the agent restarts; for the
// others it withdraws every path and waits (bounded by ShutdownTimeout)
// until the withdrawals are sent before closing.
func (s *Server) Run(ctx context.Context, vips *routing.Subscription) error {
	return s.run(ctx, vips)
}

func (s *Server) run(ctx context.Context, vips vipSource) error {
	select {
	case <-ctx.Done():
		return nil
	case <-s.configured:
	}
	if err := s.startWhenZebraUp(ctx); err != nil {
		return err
	}
	if s.running.Load() == nil {
		return nil // cancelled while waiting for zebra
	}
	// The VIPs present now go into the RIB before any peer is added, so a
	// restarted speaker sends them in its first UPDATEs (graceful restart).
	select {
	case <-vips.Ready():
		s.handle(vips.Next())
	case <-time.After(300 * time.Millisecond):
	case <-ctx.Done():
	}
	// In zebra mode the VIP paths are zebra's redistribution: wait (bounded)
	// until they are in the RIB, for the same reason.
	s.waitZebraVIPs(ctx)
	if err := s.addPeers(ctx); err != nil {
		s.shutdown()
		return err
	}
	s.ready.Store(true)
	s.log.Info("bgp speaker running", "router-id", s.cur.set.Global.Config.RouterId, "as", s.cur.set.Global.Config.As,
		"neighbors", len(s.cur.set.Neighbors), "vips", s.announced.Load())
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			s.shutdown()
			return nil
		case <-vips.Ready():
			s.handle(vips.Next())
		case <-tick.C:
			s.releaseBFD(ctx)
			s.pruneZebraVIPs(ctx)
		}
	}
}

// start creates and starts the GoBGP instance with the pending config,
// without its neighbors.
func (s *Server) start(ctx context.Context) error {
	s.opMu.Lock()
	defer s.opMu.Unlock()
	cfg := s.pending
	s.pending = nil
	if err := s.resolve(cfg); err != nil {
		return err
	}
	if err := s.startLocked(ctx, cfg); err != nil {
		return err
	}
	s.cur = cfg
	return nil
}

// resolve fills what the file may leave to the node: the router-id and the
// IPv6 next hop.
func (s *Server) resolve(cfg *parsedConfig) error {
	addZebraOnlyVIPs(cfg)
	g := &cfg.set.Global.Config
	addrs := nodeAddrs()
	if !g.RouterId.IsValid() {
		if s.opts.RouterID.IsValid() {
			g.RouterId = s.opts.RouterID
		} else {
			var v4 []netip.Addr
			for _, n := range cfg.set.Neighbors {
				v4 = append(v4, n.State.NeighborAddress)
			}
			id, err := chooseRouterID(addrs, v4)
			if err != nil {
				return fmt.Errorf("%s: %w", cfg.File, err)
			}
			g.RouterId = id
		}
		cfg.routerIDChosen = true
	}
	for i := range cfg.set.Neighbors {
		n := &cfg.set.Neighbors[i]
		if n.RouteReflector.Config.RouteReflectorClient && !n.RouteReflector.State.RouteReflectorClusterId.IsValid() {
			n.RouteReflector.State.RouteReflectorClusterId = g.RouterId
		}
	}
	if s.opts.NextHop6.IsValid() {
		cfg.nh6 = s.opts.NextHop6
		addZebraNextHop6(cfg)
		return nil
	}
	var v4 []netip.Addr
	for _, n := range cfg.set.Neighbors {
		if !n.State.NeighborAddress.Is4() {
			continue
		}
		for _, af := range n.AfiSafis {
			if af.Config.AfiSafiName == oc.AFI_SAFI_TYPE_IPV6_UNICAST && af.Config.Enabled {
				v4 = append(v4, n.State.NeighborAddress)
			}
		}
	}
	cfg.nh6 = chooseNextHop6(addrs, v4)
	addZebraNextHop6(cfg)
	return nil
}

func (s *Server) startLocked(ctx context.Context, cfg *parsedConfig) error {
	if err := os.MkdirAll(s.opts.RunDir, 0o755); err != nil {
		return fmt.Errorf("create run directory: %w", err)
	}
	sock := filepath.Join(s.opts.RunDir, SocketName)
	if err := os.Remove(sock); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove stale %s: %w", sock, err)
	}
	b := server.NewBgpServer(
		server.LoggerOption(s.glog, nil),
		server.GrpcListenAddress("unix://"+sock),
	)
	go b.Serve()
	fail := func(err error) error {
		s.quiet.Store(true)
		b.Stop()
		s.quiet.Store(false)
		return err
	}
	if err := b.StartBgp(ctx, &api.StartBgpRequest{Global: oc.NewGlobalFromConfigStruct(&cfg.set.Global)}); err != nil {
		return fail(fmt.Errorf("start bgp: %w", err))
	}
	s.zebraUp.Store(false)
	if z := cfg.set.Zebra.Config; z.Enabled {
		if err := b.EnableZebra(ctx, &api.EnableZebraRequest{
			Url:                  z.Url,
			RouteTypes:           z.RedistributeRouteTypeList,
			Version:              uint32(z.Version),
			NexthopTriggerEnable: z.NexthopTriggerEnable,
			NexthopTriggerDelay:  uint32(z.NexthopTriggerDelay),
			MplsLabelRangeSize:   z.MplsLabelRangeSize,
			SoftwareName:         z.SoftwareName,
		}); err != nil {
			return fail(fmt.Errorf("enable zebra: %w", err))
		}
		s.zebraUp.Store(true)
	}
	if err := setPolicies(ctx, b, cfg.set); err != nil {
		return fail(err)
	}
	if err := setGlobalAssignment(ctx, b, &cfg.set.Global.ApplyPolicy.Config); err != nil {
		return fail(err)
	}
	for i := range cfg.set.PeerGroups {
		if err := b.AddPeerGroup(ctx, &api.AddPeerGroupRequest{PeerGroup: oc.NewPeerGroupFromConfigStruct(&cfg.set.PeerGroups[i])}); err != nil {
			return fail(fmt.Errorf("add peer-group %s: %w", cfg.set.PeerGroups[i].Config.PeerGroupName, err))
		}
	}
	for _, d := range cfg.set.DynamicNeighbors {
		if err := b.AddDynamicNeighbor(ctx, &api.AddDynamicNeighborRequest{DynamicNeighbor: &api.DynamicNeighbor{
			Prefix: d.Config.Prefix.String(), PeerGroup: d.Config.PeerGroup,
		}}); err != nil {
			return fail(fmt.Errorf("add dynamic-neighbor %s: %w", d.Config.Prefix, err))
		}
	}
	s.refillZebraVIPs(ctx, b, cfg)
	s.restrictSocket(sock)
	s.bgp = b
	s.nh6 = cfg.nh6
	s.running.Store(b)
	return nil
}

// restrictSocket makes the API socket owner-only once GoBGP has created it.
func (s *Server) restrictSocket(sock string) {
	for range 100 {
		if err := os.Chmod(sock, 0o600); err == nil {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.log.Warn("gRPC socket did not appear", "path", sock)
}

// addPeers adds the neighbors of the running config. With graceful restart
// the speaker tells its peers it is restarting (R and F bits), so they keep
// our routes as they were until we have sent ours again.
func (s *Server) addPeers(ctx context.Context) error {
	s.opMu.Lock()
	defer s.opMu.Unlock()
	s.peersAdded = true
	return s.addPeersLocked(ctx, true)
}

func (s *Server) addPeersLocked(ctx context.Context, restarting bool) error {
	var errs []error
	for _, n := range s.cur.set.Neighbors {
		n := n
		if restarting && n.GracefulRestart.Config.Enabled && !n.GracefulRestart.Config.HelperOnly {
			n.GracefulRestart.State.LocalRestarting = true
		}
		n = s.withBFDHeld(n)
		if err := s.bgp.AddPeer(ctx, &api.AddPeerRequest{Peer: oc.NewPeerFromConfigStruct(&n)}); err != nil {
			errs = append(errs, fmt.Errorf("add neighbor %s: %w", n.State.NeighborAddress, err))
			continue
		}
		s.logPeer("neighbor added", &n)
	}
	return errors.Join(errs...)
}

// bfdHoldOff is how long a session must have been Established before BFD
// is started for it.
const bfdHoldOff = time.Second

// withBFDHeld returns n with BFD off when it is configured, and remembers to
// turn it on later (releaseBFD). GoBGP v4.8.0 starts BFD with the peer and,
// when the router's BFD session only appears once BGP is up (FRR creates it
// then), GoBGP keeps a stale discriminator, never reaches Up, and after the
// detection time tears the fresh BGP session down with a Cease ("BFD is
// down"): a flap at every start, and a lost route after a graceful restart.
// Started once the session is up, BFD comes up at once.
func (s *Server) withBFDHeld(n oc.Neighbor) oc.Neighbor {
	if n.Bfd.Config.Enabled {
		s.bfdHeld[n.State.NeighborAddress] = true
		n.Bfd.Config.Enabled = false
	} else {
		delete(s.bfdHeld, n.State.NeighborAddress)
	}
	return n
}

// releaseBFD turns BFD on for the held neighbors whose session has been
// Established for bfdHoldOff.
func (s *Server) releaseBFD(ctx context.Context) {
	s.opMu.Lock()
	defer s.opMu.Unlock()
	if len(s.bfdHeld) == 0 || s.bgp == nil {
		return
	}
	up := map[netip.Addr]bool{}
	_ = s.bgp.ListPeer(ctx, &api.ListPeerRequest{}, func(p *api.Peer) {
		if p.GetState().GetSessionState() != api.PeerState_SESSION_STATE_ESTABLISHED {
			return
		}
		if ts := p.GetTimers().GetState().GetUptime(); ts != nil && time.Since(ts.AsTime()) >= bfdHoldOff {
			if a, err := netip.ParseAddr(p.GetState().GetNeighborAddress()); err == nil {
				up[a] = true
			}
		}
	})
	for i := range s.cur.set.Neighbors {
		n := s.cur.set.Neighbors[i]
		a := n.State.NeighborAddress
		if !s.bfdHeld[a] || !up[a] {
			continue
		}
		if _, err := s.bgp.UpdatePeer(ctx, &api.UpdatePeerRequest{Peer: oc.NewPeerFromConfigStruct(&n)}); err != nil {
			s.log.Warn("start BFD", "peer", a, "err", err)
			continue
		}
		delete(s.bfdHeld, a)
		s.log.Info("BFD started", "peer", a)
	}
}

func (s *Server) logPeer(msg string, n *oc.Neighbor, args ...any) {
	args = append([]any{"peer", n.State.NeighborAddress, "peer-as", n.Config.PeerAs}, args...)
	if f := s.cur.passwordFiles[n.State.NeighborAddress.String()]; f != "" {
		args = append(args, "password-file", f)
	}
	s.log.Info(msg, args...)
}

func setPolicies(ctx context.Context, b *server.BgpServer, c *oc.BgpConfigSet) error {
	sets, policies, err := apiPolicies(c)
	if err != nil {
		return err
	}
	if err := b.SetPolicies(ctx, &api.SetPoliciesRequest{DefinedSets: sets, Policies: policies}); err != nil {
		return fmt.Errorf("set policies: %w", err)
	}
	return nil
}

func setGlobalAssignment(ctx context.Context, b *server.BgpServer, a *oc.ApplyPolicyConfig) error {
	for _, as := range []*api.PolicyAssignment{
		apiAssignment("global", api.PolicyDirection_POLICY_DIRECTION_IMPORT, a.ImportPolicyList, a.DefaultImportPolicy),
		apiAssignment("global", api.PolicyDirection_POLICY_DIRECTION_EXPORT, a.ExportPolicyList, a.DefaultExportPolicy),
	} {
		if err := b.SetPolicyAssignment(ctx, &api.SetPolicyAssignmentRequest{Assignment: as}); err != nil {
			return fmt.Errorf("set global %s policy: %w", as.Direction, err)
		}
	}
	return nil
}

// handle applies VIP events to the RIB: one AddPath call for everything
// new or changed, one DeletePath call (by path) for everything gone.
func (s *Server) handle(evs []routing.Event) {
	if len(evs) == 0 {
		return
	}
	s.opMu.Lock()
	defer s.opMu.Unlock()
	if s.bgp == nil {
		return
	}
	want := make(map[netip.Addr]*routing.VIP)
	for _, ev := range evs {
		v := ev.VIP
		switch {
		case ev.Kind == routing.Removed || !announced(v.Attrs.Mode):
			want[v.Addr] = nil
		default:
			want[v.Addr] = &v
		}
	}
	var add, del []*apiutil.Path
	for a, v := range want {
		old, had := s.vips[a]
		if v == nil {
			if had {
				del = append(del, s.paths[a])
				delete(s.vips, a)
				delete(s.paths, a)
			}
			continue
		}
		if had && old.Attrs.Equal(v.Attrs) {
			continue
		}
		p, err := vipPath(*v, s.nh6)
		if err != nil {
			s.log.Error("not announcing vip", "vip", a, "service", v.Attrs.Service, "err", err)
			if had {
				del = append(del, s.paths[a])
				delete(s.vips, a)
				delete(s.paths, a)
			}
			continue
		}
		// a new path for the same prefix replaces the old one (implicit
		// withdraw), so a change is one AddPath
		add = append(add, p)
		s.vips[a] = *v
		s.paths[a] = p
	}
	s.pushPaths(add, del)
	s.syncZebraVIPsLocked(context.Background())
	s.announced.Store(int64(len(s.vips)))
}

// pushPaths is the native feed: it adds and deletes VIP paths in the RIB.
// In zebra mode it does nothing: the VIP paths are zebra's redistribution
// of the VIP interface's connected routes (see zebraModeLocked). Callers
// hold opMu.
func (s *Server) pushPaths(add, del []*apiutil.Path) {
	if s.zebraModeLocked() {
		return
	}
	s.nativeUpdates.Add(float64(len(add) + len(del)))
	if len(del) > 0 {
		if err := s.bgp.DeletePath(apiutil.DeletePathRequest{Paths: del}); err != nil {
			s.log.Error("withdraw vips", "count", len(del), "err", err)
		}
	}
	if len(add) > 0 {
		resps, err := s.bgp.AddPath(apiutil.AddPathRequest{Paths: add})
		for i, r := range resps {
			if r.Error != nil && i < len(add) {
				s.log.Error("announce vip", "vip", add[i].Nlri.String(), "err", r.Error)
			}
		}
		if err != nil && len(resps) == 0 {
			s.log.Error("announce vips", "count", len(add), "err", err)
		}
	}
	if len(add)+len(del) > 0 {
		s.log.Debug("vip paths updated", "announced", len(add), "withdrawn", len(del))
	}
}

// reannounce6 rebuilds the IPv6 paths after the next hop changed.
func (s *Server) reannounce6() {
	var add []*apiutil.Path
	for a, v := range s.vips {
		if a.Is4() {
			continue
		}
		p, err := vipPath(v, s.nh6)
		if err != nil {
			continue
		}
		s.paths[a] = p
		add = append(add, p)
	}
	s.pushPaths(add, nil)
}

func (s *Server) announcedCount() int { return int(s.announced.Load()) }

// shutdown stops the speaker (see Run).
func (s *Server) shutdown() {
	s.opMu.Lock()
	defer s.opMu.Unlock()
	s.ready.Store(false)
	s.stopped = true
	b := s.bgp
	if b == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.ShutdownTimeout)
	defer cancel()
	var gr, plain []oc.Neighbor
	for _, n := range s.cur.set.Neighbors {
		if n.GracefulRestart.Config.Enabled {
			gr = append(gr, n)
		} else {
			plain = append(plain, n)
		}
	}
	switch {
	case len(gr) == 0:
		s.withdrawAll(ctx)
	default:
		// Withdrawing would take the routes from the graceful-restart
		// peers too; the others get a Cease, which makes them drop every
		// route of the session.
		for _, n := range plain {
			if err := b.DeletePeer(ctx, &api.DeletePeerRequest{Address: n.State.NeighborAddress.String()}); err != nil {
				s.log.Warn("delete peer at shutdown", "peer", n.State.NeighborAddress, "err", err)
			}
		}
	}
	if err := b.StopBgp(ctx, &api.StopBgpRequest{AllowGracefulRestart: len(gr) > 0}); err != nil {
		s.log.Warn("stop bgp", "err", err)
	}
	s.quiet.Store(true)
	b.Stop() // BFD and gRPC
	s.bgp = nil
	s.running.Store(nil)
	if len(gr) > 0 {
		s.log.Info("bgp speaker stopped; graceful-restart peers keep the routes", "peers", len(gr))
	} else {
		s.log.Info("bgp speaker stopped; routes withdrawn")
	}
}

// withdrawAll deletes every VIP path and waits until each established peer
// has been sent an UPDATE since (its sent-update counter moved), or ctx ends.
func (s *Server) withdrawAll(ctx context.Context) {
	if len(s.paths) == 0 || s.zebraModeLocked() {
		// zebra mode: no path of ours to withdraw; the Cease at stop
		// takes zebra's away
		return
	}
	before := map[string]uint64{}
	_ = s.bgp.ListPeer(ctx, &api.ListPeerRequest{EnableAdvertised: true}, func(p *api.Peer) {
		if p.GetState().GetSessionState() != api.PeerState_SESSION_STATE_ESTABLISHED {
			return
		}
		var adv uint64
		for _, af := range p.GetAfiSafis() {
			adv += af.GetState().GetAdvertised()
		}
		if adv > 0 {
			before[p.GetState().GetNeighborAddress()] = p.GetState().GetMessages().GetSent().GetUpdate()
		}
	})
	del := make([]*apiutil.Path, 0, len(s.paths))
	for _, p := range s.paths {
		del = append(del, p)
	}
	s.pushPaths(nil, del)
	clear(s.paths)
	clear(s.vips)
	s.announced.Store(0)
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for len(before) > 0 {
		_ = s.bgp.ListPeer(ctx, &api.ListPeerRequest{}, func(p *api.Peer) {
			a := p.GetState().GetNeighborAddress()
			if n, ok := before[a]; ok && (p.GetState().GetMessages().GetSent().GetUpdate() > n ||
				p.GetState().GetSessionState() != api.PeerState_SESSION_STATE_ESTABLISHED) {
				delete(before, a)
			}
		})
		select {
		case <-ctx.Done():
			s.log.Warn("withdrawals not confirmed before shutdown timeout", "peers", len(before))
			return
		case <-t.C:
		}
	}
	// the counter moves when the message is handed to the socket; give the
	// kernel a moment to put it on the wire before the Cease follows
	time.Sleep(50 * time.Millisecond)
}

// quietHandler drops the error GoBGP logs when Stop follows our own StopBgp.
type quietHandler struct {
	s    *Server
	next slog.Handler
}

func (h quietHandler) Enabled(ctx context.Context, l slog.Level) bool { return h.next.Enabled(ctx, l) }
func (h quietHandler) Handle(ctx context.Context, r slog.Record) error {
	if h.s.quiet.Load() && r.Message == "failed to stop BGP server" {
		return nil
	}
	h.s.noteZebraLog(r)
	return h.next.Handle(ctx, r)
}
func (h quietHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return quietHandler{s: h.s, next: h.next.WithAttrs(as)}
}
func (h quietHandler) WithGroup(n string) slog.Handler {
	return quietHandler{s: h.s, next: h.next.WithGroup(n)}
}
