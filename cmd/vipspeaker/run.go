package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/klog/v2"

	"github.com/vipspeaker/vipspeaker/internal/logging"
	"github.com/vipspeaker/vipspeaker/internal/memlimit"
	"github.com/vipspeaker/vipspeaker/internal/privilege"
)

type runFlags struct {
	servicesDir      string
	kubeconfig       string
	namespace        string
	leaseDuration    time.Duration
	allocate         bool
	configDir        string
	nodeName         string
	runDir           string
	metricsAddr      string
	metricsTextfile  string
	debugAddr        string
	logLevel         string
	logFormat        string
	removeVIPsOnExit bool
	nodeLabels       map[string]string
	cpOnly           bool // standalone with the [control-plane] VIP alone (no --services-dir or --kubeconfig)
}

// standalone: no API server (a Service manifest directory, or cpOnly).
func (f *runFlags) standalone() bool { return f.servicesDir != "" || f.cpOnly }

func parseRunFlags(args []string, stderr io.Writer) (*runFlags, error) {
	f := &runFlags{}
	fs := flag.NewFlagSet("vipspeaker run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.servicesDir, "services-dir", "", "standalone mode: a directory of Service manifests (YAML, several documents per file allowed), watched")
	fs.StringVar(&f.kubeconfig, "kubeconfig", "", "cluster mode: a kubeconfig file (default: the in-cluster config); cluster mode is on unless --services-dir is given")
	fs.StringVar(&f.namespace, "namespace", "", "cluster mode: the namespace of the ConfigMap vipspeaker-config and the allocator's Lease (default: $POD_NAMESPACE, then vipspeaker-system)")
	fs.DurationVar(&f.leaseDuration, "lease-duration", 15*time.Second, "cluster mode: how long the allocator's Lease lasts without renewal (a new allocator takes over after it)")
	fs.BoolVar(&f.allocate, "allocate", true, "cluster mode: also take part in the allocator election and write Service status (needs the allocator's rights; the shipped manifests run the allocator as its own Deployment, `vipspeaker allocate`)")
	fs.StringVar(&f.configDir, "config-dir", "", "a directory holding vipspeaker.toml and gobgp.conf, watched")
	fs.StringVar(&f.nodeName, "node-name", "", "this node's name (default: $NODE_NAME, then the hostname)")
	fs.StringVar(&f.runDir, "run-dir", "/run/vipspeaker", "directory for the agent's sockets (vipspeaker.sock, gobgp.sock)")
	fs.StringVar(&f.metricsAddr, "metrics-addr", ":9472", "where /metrics, /healthz and /readyz are served (empty: off)")
	fs.StringVar(&f.debugAddr, "debug-addr", "", "where Go's profiles are served under /debug/pprof/ (e.g. 127.0.0.1:6060; empty: off)")
	fs.StringVar(&f.metricsTextfile, "metrics-textfile", "", "also write the metrics to this file in node_exporter's textfile-collector format (atomically, every 15s and at exit)")
	fs.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&f.logFormat, "log-format", "text", "text or json")
	fs.BoolVar(&f.removeVIPsOnExit, "remove-vips-on-exit", false, "remove every VIP and the VIP interface on exit (default: leave them, so a restart is hitless)")
	nodeLabels := fs.String("node-labels", "", "standalone mode: this node's labels (k=v,k2=v2), which pools' advertise.node-selector match (cluster mode reads the Node's)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if *nodeLabels != "" {
		m, err := labels.ConvertSelectorToLabelsMap(*nodeLabels)
		if err != nil {
			return nil, fmt.Errorf("--node-labels %q: %w", *nodeLabels, err)
		}
		f.nodeLabels = m
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

func runCommand(args []string, stderr io.Writer) int {
	f, err := parseRunFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "vipspeaker run: %v\n", err)
		return 2
	}
	log, err := logging.New(stderr, f.logLevel, f.logFormat)
	if err != nil {
		fmt.Fprintf(stderr, "vipspeaker run: %v\n", err)
		return 2
	}
	klog.SetSlogLogger(log.With("component", "client-go")) // client-go logs through klog
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, f, log); err != nil {
		log.Error("vipspeaker stopped", "error", err)
		return 1
	}
	return 0
}

// run builds the agent's parts from the flags and the configuration, runs
// them until ctx ends, and stops them.
func run(ctx context.Context, f *runFlags, log *slog.Logger) error {
	if err := privilege.Check(log); err != nil {
		return err
	}
	memlimit.Set(log)
	a, err := newAgent(ctx, f, log)
	if err != nil {
		return err
	}
	defer func() {
		if err := a.table.Close(); err != nil {
			log.Error("close VIP table", "error", err)
		}
	}()
	if err := a.checkImportWithZebra(a.cfg); err != nil {
		return err
	}
	log.Info("vipspeaker starting", "node", f.nodeName, "services_dir", f.servicesDir, "cluster", !f.standalone(),
		"config_dir", f.configDir, "interface", a.table.Interface(), "version", version)
	err = a.run(ctx)
	if ctx.Err() != nil {
		log.Info("vipspeaker stopping", "remove_vips", f.removeVIPsOnExit)
		return nil
	}
	return err
}
