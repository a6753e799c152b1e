package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"
	"k8s.io/klog/v2"

	"github.com/vipspeaker/vipspeaker/bgp"
	"github.com/vipspeaker/vipspeaker/config"
	"github.com/vipspeaker/vipspeaker/kube"
	"github.com/vipspeaker/vipspeaker/kube/standalone"
	"github.com/vipspeaker/vipspeaker/routing"
)

type runFlags struct {
	servicesDir      string
	kubeconfig       string
	namespace        string
	leaseDuration    time.Duration
	configDir        string
	nodeName         string
	runDir           string
	metricsAddr      string
	metricsTextfile  string
	logLevel         string
	logFormat        string
	removeVIPsOnExit bool
}

func parseRunFlags(args []string, stderr io.Writer) (*runFlags, error) {
	f := &runFlags{}
	fs := flag.NewFlagSet("vipspeaker run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.servicesDir, "services-dir", "", "standalone mode: a directory of Service manifests (YAML, several documents per file allowed), watched")
	fs.StringVar(&f.kubeconfig, "kubeconfig", "", "cluster mode: a kubeconfig file (default: the in-cluster config); cluster mode is on unless --services-dir is given")
	fs.StringVar(&f.namespace, "namespace", "", "cluster mode: the namespace of the ConfigMap vipspeaker-config and the allocator's Lease (default: $POD_NAMESPACE, then vipspeaker-system)")
	fs.DurationVar(&f.leaseDuration, "lease-duration", 15*time.Second, "cluster mode: how long the allocator's Lease lasts without renewal (a new allocator takes over after it)")
	fs.StringVar(&f.configDir, "config-dir", "", "a directory holding vipspeaker.toml and gobgp.conf, watched")
	fs.StringVar(&f.nodeName, "node-name", "", "this node's name (default: $NODE_NAME, then the hostname)")
	fs.StringVar(&f.runDir, "run-dir", "/run/vipspeaker", "directory for the agent's sockets (vipspeaker.sock, gobgp.sock)")
	fs.StringVar(&f.metricsAddr, "metrics-addr", ":9472", "where /metrics, /healthz and /readyz are served (empty: off)")
	fs.StringVar(&f.metricsTextfile, "metrics-textfile", "", "also write the metrics to this file in node_exporter's textfile-collector format (atomically, every 15s and at exit)")
	fs.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&f.logFormat, "log-format", "text", "text or json")
	fs.BoolVar(&f.removeVIPsOnExit, "remove-vips-on-exit", false, "remove every VIP and the VIP interface on exit (default: leave them, so a restart is hitless)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	if f.nodeName == "" {
		f.nodeName = os.Getenv("NODE_NAME")
	}
	if f.nodeName == "" {
		h, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("--node-name not given and no hostname: %w", err)
		}
		f.nodeName = h
	}
	if f.servicesDir != "" && f.kubeconfig != "" {
		return nil, errors.New("--services-dir (standalone mode) and --kubeconfig (cluster mode) exclude each other")
	}
	if f.namespace == "" {
		f.namespace = os.Getenv("POD_NAMESPACE")
	}
	return f, nil
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: %w", level, err)
	}
	opts := &slog.HandlerOptions{Level: l}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}

func runCommand(args []string, stderr io.Writer) int {
	f, err := parseRunFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "vipspeaker run: %v\n", err)
		return 2
	}
	log, err := newLogger(stderr, f.logLevel, f.logFormat)
	if err != nil {
		fmt.Fprintf(stderr, "vipspeaker run: %v\n", err)
		return 2
	}
	// client-go logs through klog: route it into the same slog logger.
	klog.SetSlogLogger(log.With("component", "client-go"))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, f, log); err != nil {
		log.Error("vipspeaker stopped", "error", err)
		return 1
	}
	return 0
}

// agent holds the parts of a running node agent.
type agent struct {
	f       *runFlags
	log     *slog.Logger
	reg     *prometheus.Registry
	table   *routing.Table
	bgp     *bgp.Server
	metrics *agentMetrics
	ready   readiness
	// bgpConf is the gobgp.conf last given to the speaker (nil: none yet).
	bgpMu   sync.Mutex
	bgpConf []byte
	// cfgState remembers why the last configuration was refused (status).
	cfgState configState
	l2       *layer2 // nil without layer2 pools
	cluster  cluster // cluster mode only (kube*.go)
	// pools exports the pool gauges in standalone mode (nil in cluster
	// mode, where the allocator does)
	pools *standalone.PoolMetrics

	// The config in force and the last VIPs the source wanted, so a
	// config change (pools, modes) re-applies the table.
	vipMu    sync.Mutex
	cfg      *config.Config
	lastVIPs []routing.VIP
	haveVIPs bool
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
	want := withPools(vips, a.cfg)
	if partial {
		want = keepUnaccounted(want, a.table.List())
		a.log.Warn("some manifests are broken and were never read cleanly: VIPs already on the interface stay until they are fixed")
	}
	if err := a.table.Set(ctx, want); err != nil && ctx.Err() == nil {
		a.log.Error("apply VIPs", "error", err)
	}
	a.ready.set("vips", true)
	a.log.Info("VIP table applied", "vips", len(want))
}

// setConfig makes c the config in force and re-applies the VIPs under it.
func (a *agent) setConfig(ctx context.Context, c *config.Config) {
	a.vipMu.Lock()
	a.cfg = c
	vips, have := a.lastVIPs, a.haveVIPs
	a.vipMu.Unlock()
	if a.pools != nil {
		a.pools.SetPools(c.Pools)
	}
	if a.l2 != nil {
		a.l2.configure(c)
	} else if len(layer2Interfaces(c)) > 0 {
		a.log.Warn("layer2 pools were added; the ARP/NDP responder starts at the next restart")
	}
	if have {
		a.applyVIPs(ctx, vips, false)
	}
}

func run(ctx context.Context, f *runFlags, log *slog.Logger) error {
	if err := checkPrivileges(log); err != nil {
		return err
	}
	cfg := config.Default()
	if f.configDir != "" {
		c, errs := config.LoadDir(f.configDir)
		if len(errs) > 0 {
			for _, e := range errs {
				log.Error("invalid configuration", "error", e)
			}
			return fmt.Errorf("configuration in %s is invalid (%d problems); nothing was changed", f.configDir, len(errs))
		}
		cfg = c
	}
	if err := os.MkdirAll(f.runDir, 0o755); err != nil {
		return fmt.Errorf("create run directory: %w", err)
	}
	var err error
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	a := &agent{f: f, log: log, reg: reg, metrics: newAgentMetrics(reg), cfg: cfg}
	a.metrics.reloaded(true)
	speaker, err := bgp.New(bgp.Options{RunDir: f.runDir, Logger: log, Registerer: reg, NodeName: f.nodeName})
	if err != nil {
		return err
	}
	a.bgp = speaker

	var ctrl *kube.Controller
	if f.servicesDir == "" {
		// Cluster mode: the ConfigMap is the configuration.
		if ctrl, err = a.newKube(); err != nil {
			return err
		}
		if err := a.initialClusterConfig(ctx, ctrl); err != nil {
			return err
		}
		cfg = a.cfg
	} else {
		if err := a.applyBGP(ctx, true); err != nil {
			return err
		}
		if a.pools, err = standalone.NewPoolMetrics(reg); err != nil {
			return err
		}
		a.pools.SetPools(cfg.Pools)
	}
	if a.l2, err = a.newLayer2(cfg); err != nil {
		return err
	}

	table, err := routing.New(routing.Options{
		Interface:     cfg.Interface.Name,
		Kind:          string(cfg.Interface.Kind),
		RemoveOnClose: f.removeVIPsOnExit,
		Logger:        log,
		Registerer:    reg,
	})
	if err != nil {
		return err
	}
	a.table = table
	defer func() {
		if err := table.Close(); err != nil {
			log.Error("close VIP table", "error", err)
		}
	}()
	// The source of desired VIPs: a manifest directory (standalone) or the
	// API server (cluster mode).
	var runSource func(ctx context.Context) error
	if f.servicesDir != "" {
		src, err := standalone.New(standalone.Options{Dir: f.servicesDir, Logger: log, Debounce: 20 * time.Millisecond})
		if err != nil {
			return err
		}
		runSource = func(ctx context.Context) error {
			return src.Run(ctx, func(vips []routing.VIP) { a.applyVIPs(ctx, vips, src.Partial()) })
		}
	} else {
		runSource = func(ctx context.Context) error {
			return ctrl.Run(ctx, func(vips []routing.VIP) { a.applyVIPs(ctx, vips, false) })
		}
	}

	if err := a.checkImportWithZebra(cfg); err != nil {
		return err
	}
	log.Info("vipspeaker starting", "node", f.nodeName, "services_dir", f.servicesDir, "cluster", f.servicesDir == "",
		"config_dir", f.configDir, "interface", table.Interface(), "version", version)

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return table.Run(gctx) })
	// The speaker waits for its first gobgp.conf; without one BGP stays off.
	vipEvents := table.Subscribe()
	defer vipEvents.Close()
	g.Go(func() error { return speaker.Run(gctx, vipEvents) })
	// With [zebra.config], re-executes the agent when the zebra connection
	// is lost (GoBGP's zebra client never reconnects); idle otherwise.
	g.Go(func() error { return a.runZebraGuard(gctx) })
	if a.l2 != nil {
		l2Events := table.Subscribe()
		defer l2Events.Close()
		g.Go(func() error { return a.l2.run(gctx, l2Events, f.removeVIPsOnExit) })
	}
	g.Go(func() error { return runSource(gctx) })
	if cfg.ImportToKernel.Enabled {
		if err := a.runImport(gctx, g, cfg.ImportToKernel.Table); err != nil {
			return err
		}
	}
	a.ready.set("config", true)
	if f.configDir != "" && f.servicesDir != "" {
		// In cluster mode the ConfigMap is the configuration; a
		// --config-dir only seeds the start.
		g.Go(func() error { return a.watchConfig(gctx, cfg) })
	}
	if f.metricsAddr != "" {
		g.Go(func() error { return a.serveHTTP(gctx) })
	}
	if f.metricsTextfile != "" {
		g.Go(func() error { return a.writeTextfile(gctx, f.metricsTextfile, 15*time.Second) })
	}
	g.Go(func() error { return a.serveStatus(gctx, &a.cfgState) })
	err = g.Wait()
	if ctx.Err() != nil {
		log.Info("vipspeaker stopping", "remove_vips", f.removeVIPsOnExit)
		return nil
	}
	return err
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
		defer func() {
			var err error
			if a.f.removeVIPsOnExit {
				err = im.Close()
			} else {
				err = im.Release()
			}
			if err != nil {
				a.log.Warn("kernel import: close", "error", err)
			}
		}()
		go func() {
			select {
			case <-ctx.Done():
			case <-time.After(2 * time.Minute):
				if err := im.PruneStale(); err != nil {
					a.log.Warn("kernel import: remove routes no peer sent again", "error", err)
				}
			}
		}()
		return a.bgp.RunImport(ctx, im.Update, bgp.ImportOptions{})
	})
	return nil
}

// keepUnaccounted adds to want every VIP of have that want lacks, with its
// current attributes, so a VIP is never withdrawn for lack of information.
func keepUnaccounted(want, have []routing.VIP) []routing.VIP {
	seen := make(map[netip.Addr]bool, len(want))
	for _, v := range want {
		seen[v.Addr] = true
	}
	for _, v := range have {
		if !seen[v.Addr] {
			want = append(want, v)
		}
	}
	return want
}

// watchConfig reloads the config directory on change. What cannot change
// without a restart (the VIP interface) is reported; an invalid config is
// refused and the last good one stays.
func (a *agent) watchConfig(ctx context.Context, current *config.Config) error {
	w, err := newDirWatcher(a.f.configDir, 50*time.Millisecond)
	if err != nil {
		return err
	}
	defer w.Close()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-w.Changed():
		}
		c, errs := config.LoadDir(a.f.configDir)
		if len(errs) > 0 {
			for _, e := range errs {
				a.log.Error("configuration refused; the last good one stays in force", "error", e)
			}
			a.metrics.reloaded(false)
			a.cfgState.refused(errs...)
			continue
		}
		if err := a.applyBGP(ctx, false); err != nil {
			a.log.Error("gobgp.conf refused; the last good one stays in force", "error", err)
			a.metrics.reloaded(false)
			a.cfgState.refused(err)
			continue
		}
		a.metrics.reloaded(true)
		a.setConfig(ctx, c)
		if c.Interface != current.Interface {
			a.log.Warn("the VIP interface changed in vipspeaker.toml; it takes effect at the next restart",
				"running", current.Interface.Name, "configured", c.Interface.Name)
		}
		current = c
		a.log.Info("configuration reloaded", "file", filepath.Join(a.f.configDir, "vipspeaker.toml"))
	}
}

// applyBGP hands gobgp.conf to the speaker when it changed. At start an
// invalid file stops the agent; later the speaker keeps its last good
// config. A gobgp.conf that disappears leaves the running speaker as it is
// (a restart without the file starts no BGP).
func (a *agent) applyBGP(ctx context.Context, initial bool) error {
	if a.f.configDir == "" {
		return nil
	}
	path := filepath.Join(a.f.configDir, "gobgp.conf")
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		if a.bgpConf != nil {
			a.log.Warn("gobgp.conf was removed; BGP keeps running with its last config until the agent restarts", "file", path)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	return a.applyBGPData(ctx, path, data, initial)
}

// applyBGPData hands a gobgp.conf (named name in messages) to the speaker
// when it differs from the last one given.
func (a *agent) applyBGPData(ctx context.Context, name string, data []byte, initial bool) error {
	a.bgpMu.Lock()
	same := a.bgpConf != nil && string(data) == string(a.bgpConf)
	a.bgpMu.Unlock()
	if same {
		return nil
	}
	if err := a.bgp.Apply(ctx, name, data); err != nil {
		if initial {
			return fmt.Errorf("gobgp.conf is invalid; nothing was started:\n%w", err)
		}
		return err
	}
	a.bgpMu.Lock()
	a.bgpConf = data
	a.bgpMu.Unlock()
	return nil
}

func (a *agent) serveHTTP(ctx context.Context) error {
	srv := &http.Server{Addr: a.f.metricsAddr, Handler: a.httpHandler(), ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve metrics on %s: %w", a.f.metricsAddr, err)
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	}
}
