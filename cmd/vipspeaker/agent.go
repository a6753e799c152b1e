package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"

	"github.com/vipspeaker/vipspeaker/bgp"
	"github.com/vipspeaker/vipspeaker/config"
	"github.com/vipspeaker/vipspeaker/dataplane/l2node"
	"github.com/vipspeaker/vipspeaker/health"
	"github.com/vipspeaker/vipspeaker/internal/heartbeat"
	"github.com/vipspeaker/vipspeaker/internal/textfile"
	"github.com/vipspeaker/vipspeaker/kube/standalone"
	"github.com/vipspeaker/vipspeaker/routing"
	"github.com/vipspeaker/vipspeaker/status"
)

// agent holds the parts of a running node agent.
type agent struct {
	f       *runFlags
	log     *slog.Logger
	reg     *prometheus.Registry
	table   *routing.Table
	bgp     *bgp.Server
	reloads *status.Reloads
	ready   status.Readiness
	beats   heartbeat.Set // the long-lived loops' heartbeats (/healthz)
	// bgpConf is the gobgp.conf last given to the speaker (nil: none yet).
	bgpMu   sync.Mutex
	bgpConf []byte
	l2      *l2node.Node // nil without layer2 pools or fast path
	cluster cluster      // cluster mode only (kube.go)
	// runSource runs the source of desired VIPs: a manifest directory
	// (standalone) or the API server (cluster mode).
	runSource func(ctx context.Context) error
	// pools exports the pool gauges in standalone mode (nil in cluster
	// mode, where the allocator does)
	pools *standalone.PoolMetrics
	cp    *health.Checker // the [control-plane] VIP's check (nil: none)

	// The config in force and the last VIPs the source wanted, so a
	// config change (pools, modes) re-applies the table.
	vipMu    sync.Mutex
	cfg      *config.Config
	lastVIPs []routing.VIP
	haveVIPs bool
	// this node's labels for [[peer-nodes]] (known: read, or standalone)
	nodeLabels  map[string]string
	labelsKnown bool
}

// newAgent builds the parts from the flags and the configuration (the
// config directory, or in cluster mode the ConfigMap); it starts nothing.
func newAgent(ctx context.Context, f *runFlags, log *slog.Logger) (*agent, error) {
	cfg := config.Default()
	if f.configDir != "" {
		c, errs := config.LoadDir(f.configDir)
		f.cpOnly = c != nil && c.ControlPlane != nil && f.servicesDir == "" && f.kubeconfig == ""
		if c != nil && f.standalone() {
			errs = c.StandaloneErrors(filepath.Join(f.configDir, config.FileName))
		}
		if len(errs) > 0 {
			for _, e := range errs {
				log.Error("invalid configuration", "error", e)
			}
			return nil, fmt.Errorf("configuration in %s is invalid (%d problems); nothing was changed", f.configDir, len(errs))
		}
		cfg = c
	}
	if err := os.MkdirAll(f.runDir, 0o755); err != nil {
		return nil, fmt.Errorf("create run directory: %w", err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	a := &agent{f: f, log: log, reg: reg, reloads: status.NewReloads(reg), cfg: cfg}
	a.reloads.Accepted()
	var err error
	if a.bgp, err = bgp.New(bgp.Options{RunDir: f.runDir, Logger: log, Registerer: reg, NodeName: f.nodeName,
		Heartbeat: a.beats.Add("bgp", 0)}); err != nil {
		return nil, err
	}
	if a.cp, err = health.ForControlPlane(cfg.ControlPlane, f.standalone(), log, reg); err != nil {
		return nil, err
	}
	if !f.standalone() {
		// Cluster mode: the ConfigMap is the configuration.
		if err := a.newCluster(ctx); err != nil {
			return nil, err
		}
	} else {
		a.nodeLabels, a.labelsKnown = f.nodeLabels, true
		if err := a.hideNeighbors(ctx, cfg); err != nil {
			return nil, err
		}
		if err := a.applyBGP(ctx, true); err != nil {
			return nil, err
		}
		if a.pools, err = standalone.NewPoolMetrics(reg); err != nil {
			return nil, err
		}
		a.pools.SetPools(cfg.Pools)
	}
	if a.l2, err = a.newLayer2(); err != nil {
		return nil, err
	}
	if a.table, err = routing.New(routing.Options{
		Interface:     a.cfg.Interface.Name,
		Kind:          string(a.cfg.Interface.Kind),
		RemoveOnClose: f.removeVIPsOnExit,
		Heartbeat:     a.beats.Add("routing", 0),
		Logger:        log,
		Registerer:    reg,
	}); err != nil {
		return nil, err
	}
	if f.servicesDir != "" {
		src, err := standalone.New(standalone.Options{Dir: f.servicesDir, Logger: log, Debounce: 20 * time.Millisecond,
			Heartbeat: a.beats.Add("services-dir", 0)})
		if err != nil {
			a.table.Close()
			return nil, err
		}
		a.runSource = func(ctx context.Context) error {
			return src.Run(ctx, func(vips []routing.VIP) { a.applyVIPs(ctx, vips, src.Partial()) })
		}
	} else if f.cpOnly {
		a.runSource = func(ctx context.Context) error { a.applyVIPs(ctx, nil, false); <-ctx.Done(); return nil }
	}
	return a, nil
}

// newLayer2 builds the layer2 node (nil when the config gives it nothing
// to do).
func (a *agent) newLayer2() (*l2node.Node, error) {
	return l2node.New(l2node.Options{
		Config:       a.cfg,
		NodeName:     a.f.nodeName,
		RunDir:       a.f.runDir,
		RemoveOnExit: a.f.removeVIPsOnExit,
		MemberKey:    a.cluster.memberKey,
		OnConflict:   a.layer2Conflict,
		Peers: func() []l2node.Peer {
			var out []l2node.Peer
			for _, p := range a.bgp.PeersBrief() {
				out = append(out, l2node.Peer{Interface: p.Interface, Address: p.Address})
			}
			return out
		},
		Heartbeat:  a.beats.Add("layer2", 0),
		Logger:     a.log,
		Registerer: a.reg,
	})
}

// run runs the parts until ctx ends or one fails.
func (a *agent) run(ctx context.Context) error {
	cfg := a.cfg // the config at start; reloads replace a.cfg under vipMu
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return a.table.Run(gctx) })
	// The speaker waits for its first gobgp.conf; without one BGP stays off.
	vipEvents := a.table.Subscribe()
	defer vipEvents.Close()
	g.Go(func() error { return a.bgp.Run(gctx, vipEvents) })
	// With [zebra.config], re-executes the agent when the zebra connection
	// is lost (GoBGP's zebra client never reconnects); idle otherwise.
	g.Go(func() error { return a.runZebraGuard(gctx) })
	if a.l2 != nil {
		g.Go(func() error { return a.l2.Run(gctx, a.table) })
	}
	g.Go(func() error { return a.runSource(gctx) })
	if cfg.ImportToKernel.Enabled {
		if err := a.runImport(gctx, g, cfg.ImportToKernel.Table); err != nil {
			return err
		}
	}
	a.ready.Set("config", true)
	if a.cp != nil {
		g.Go(func() error { return a.cp.Follow(gctx, func(ok bool) { a.l2.SetCheck(ok); a.reapply(gctx) }) })
	}
	if a.f.configDir != "" && a.f.standalone() {
		// In cluster mode the ConfigMap is the configuration; a
		// --config-dir only seeds the start.
		g.Go(func() error { return a.watchConfig(gctx, cfg) })
	}
	if a.f.metricsAddr != "" {
		g.Go(func() error { return a.serveHTTP(gctx) })
	}
	if a.f.debugAddr != "" {
		g.Go(func() error { return status.ServeHTTP(gctx, a.f.debugAddr, status.DebugHandler()) })
	}
	if a.f.metricsTextfile != "" {
		g.Go(func() error { return textfile.Run(gctx, a.reg, a.f.metricsTextfile, 15*time.Second, a.log) })
	}
	g.Go(func() error {
		return status.Serve(gctx, filepath.Join(a.f.runDir, status.SocketName), a.status, a.log)
	})
	return g.Wait()
}

// runImport writes the best paths learned from peers into a kernel table
// (protocol bgp) for nodes without FRR. At exit the routes stay unless the
// agent leaves for good (--remove-vips-on-exit); a restarted agent re-learns
// them and, two minutes in, removes the ones no peer sent again.
func (a *agent) runImport(ctx context.Context, g *errgroup.Group, table int) error {
	im, err := routing.NewImporter(routing.ImportOptions{Table: table, Logger: a.log})
	if err != nil {
		return err
	}
	a.log.Info("importing BGP routes into the kernel", "table", table)
	g.Go(func() error {
		return im.Hold(ctx, 2*time.Minute, a.f.removeVIPsOnExit, func(ctx context.Context) error {
			return a.bgp.RunImport(ctx, im.Update, bgp.ImportOptions{})
		})
	})
	return nil
}

// applyVIPs puts the source's VIPs, with pools and modes from the config,
// into the table.
func (a *agent) applyVIPs(ctx context.Context, vips []routing.VIP, partial bool) {
	a.vipMu.Lock()
	defer a.vipMu.Unlock()
	a.lastVIPs, a.haveVIPs = vips, true
	if a.pools != nil {
		a.pools.SetVIPs(vips)
	}
	if a.cp != nil {
		vips = a.cfg.WithControlPlane(vips, a.cp.Passing())
	}
	want := a.cfg.WithPools(vips)
	if a.f.standalone() {
		want = a.cfg.ForNode(want, a.f.nodeLabels)
	}
	if partial {
		// What the table adopted at start is only known once it is
		// ready; before that List is empty and the keep would keep nothing.
		select {
		case <-a.table.Ready():
		case <-ctx.Done():
			return
		}
		want = routing.Union(want, a.table.List())
		a.log.Warn("some manifests are broken and were never read cleanly: VIPs already on the interface stay until they are fixed")
	}
	if err := a.table.Set(ctx, want); err != nil && ctx.Err() == nil {
		a.log.Error("apply VIPs", "error", err)
	}
	a.ready.Set("vips", true)
	a.log.Info("VIP table applied", "vips", len(want))
}

// setConfig makes c the config in force and re-applies the VIPs under it.
func (a *agent) setConfig(ctx context.Context, c *config.Config) {
	a.vipMu.Lock()
	a.cfg = c
	a.vipMu.Unlock()
	if a.pools != nil {
		a.pools.SetPools(c.Pools)
	}
	if a.l2 != nil {
		a.l2.Configure(c)
	} else if len(c.Layer2Interfaces()) > 0 {
		a.log.Warn("layer2 pools were added; the ARP/NDP responder starts at the next restart")
	}
	a.reapply(ctx)
}

// reapply applies the last VIPs again (config or control-plane check changed).
func (a *agent) reapply(ctx context.Context) {
	a.vipMu.Lock()
	vips, have := a.lastVIPs, a.haveVIPs
	a.vipMu.Unlock()
	if have {
		a.applyVIPs(ctx, vips, false)
	}
}

// bgpConfigured says whether a gobgp.conf was accepted.
func (a *agent) bgpConfigured() bool {
	a.bgpMu.Lock()
	defer a.bgpMu.Unlock()
	return a.bgpConf != nil
}

// notReady lists what /readyz and status wait for: the config, the first
// VIPs, and the BGP speaker once configured.
func (a *agent) notReady() []string {
	want := []string{"config", "vips"}
	if a.bgpConfigured() {
		a.ready.Set("bgp", a.bgp.Ready())
		want = append(want, "bgp")
	}
	return a.ready.Missing(want...)
}

// status is the report `vipspeaker status` shows; brief, the one the
// node's VIPSpeakerNode object is made from (cluster mode).
func (a *agent) status() status.Report { return a.report(false) }

func (a *agent) report(brief bool) status.Report {
	return status.Collect(status.Sources{
		Node: a.f.nodeName, Version: version, ConfigDir: a.f.configDir, ServicesDir: a.f.servicesDir,
		Table: a.table, BGP: a.bgp, BGPConfigured: a.bgpConfigured, Gatherer: a.reg,
		Reloads: a.reloads, Owners: a.l2.Owners, NotReady: a.notReady, Brief: brief,
	})
}

func (a *agent) serveHTTP(ctx context.Context) error {
	return status.ServeHTTP(ctx, a.f.metricsAddr, status.Handler(a.reg, a.beats.Stale, a.notReady))
}
