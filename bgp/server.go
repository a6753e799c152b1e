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

	"github.com/vipspeaker/vipspeaker/internal/heartbeat"
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
	// Heartbeat, when set, beats from Run's loop once the speaker runs
	// (/healthz).
	Heartbeat *heartbeat.Beat
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
	// wanted is the last accepted gobgp.conf as written; hidden the
	// neighbors kept out of it on this node (see SetHiddenNeighbors)
	wanted *parsedConfig
	hidden map[netip.Addr]bool
	// poolPeers: the pools whose paths go to some neighbors only
	// (SetPoolPeers, poolpeers.go)
	poolPeers []routing.PoolPeers
	cur       *parsedConfig // applied; router-id resolved
	bgp       *server.BgpServer
	stopped   bool
	// peersAdded: the neighbors of cur are in GoBGP (Run adds them only
	// after the first VIPs are in the RIB)
	peersAdded bool
	// bfdHeld: neighbors added with BFD held back until their session has
	// been Established for bfdHoldOff (see withBFDHeld)
	bfdHeld map[netip.Addr]bool
	// unnumbered neighbors by interface: waiting for the router's
	// link-local address, the router's address GoBGP has, when the last
	// router advertisement went out and when the router was last
	// solicited; routers: who advertises on which interface
	// (unnumbered.go, ndp.go)
	routers   *routerWatch
	waiting   map[string]oc.Neighbor
	linkLocal map[string]netip.Addr
	lastRA    map[string]time.Time
	lastTry   map[string]time.Time
	vips      map[netip.Addr]routing.VIP // announced VIPs
	// paths by announced prefix, with what each carries and the members of
	// covering prefixes (see vippaths.go)
	paths map[netip.Prefix]*apiutil.Path
	sigs  map[netip.Prefix]string
	agg   map[netip.Prefix]map[netip.Addr]struct{}
	nh6   netip.Addr
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
		waiting:    make(map[string]oc.Neighbor),
		linkLocal:  make(map[string]netip.Addr),
		lastRA:     make(map[string]time.Time),
		lastTry:    make(map[string]time.Time),
		paths:      make(map[netip.Prefix]*apiutil.Path),
		sigs:       make(map[netip.Prefix]string),
		agg:        make(map[netip.Prefix]map[netip.Addr]struct{}),
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
	s.wanted = cfg
	cfg = s.withoutHidden(cfg)
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
			md5(cfg.pos.line("neighbors", idx(i), "config", "auth-password"), "neighbor "+peerName(&n))
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
		s.opts.Heartbeat.Beat()
		select {
		case <-ctx.Done():
			s.shutdown()
			return nil
		case <-vips.Ready():
			s.handle(vips.Next())
		case <-tick.C:
			s.releaseBFD(ctx)
			s.pruneZebraVIPs(ctx)
			s.tickUnnumbered(ctx)
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
	s.addPoolPeers(cfg)
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
