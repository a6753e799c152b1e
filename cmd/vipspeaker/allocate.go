package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"
	"k8s.io/klog/v2"

	"github.com/vipspeaker/vipspeaker/internal/logging"
	"github.com/vipspeaker/vipspeaker/internal/memlimit"
	"github.com/vipspeaker/vipspeaker/kube"
	"github.com/vipspeaker/vipspeaker/status"
)

// allocateCommand is `vipspeaker allocate`: the allocator alone, as its own
// Deployment. Its replicas elect one holder of the allocator Lease, which
// gives Services addresses from the ConfigMap's pools and writes their
// status; it announces nothing.
func allocateCommand(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("vipspeaker allocate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	kubeconfig := fs.String("kubeconfig", "", "a kubeconfig file (default: the in-cluster config)")
	namespace := fs.String("namespace", os.Getenv("POD_NAMESPACE"), "the namespace of the ConfigMap vipspeaker-config and the allocator's Lease (default: $POD_NAMESPACE, then vipspeaker-system)")
	id := fs.String("id", os.Getenv("POD_NAME"), "this replica's identity in the Lease (default: $POD_NAME, then the hostname)")
	leaseDuration := fs.Duration("lease-duration", 15*time.Second, "how long the allocator's Lease lasts without renewal (another replica takes over after it)")
	metricsAddr := fs.String("metrics-addr", ":9473", "where /metrics, /healthz and /readyz are served (empty: off)")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	logFormat := fs.String("log-format", "text", "text or json")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "vipspeaker allocate: unexpected arguments: %s\n", strings.Join(fs.Args(), " "))
		return 2
	}
	log, err := logging.New(stderr, *logLevel, *logFormat)
	if err == nil && *id == "" {
		*id, err = os.Hostname()
	}
	if err != nil {
		fmt.Fprintf(stderr, "vipspeaker allocate: %v\n", err)
		return 2
	}
	klog.SetSlogLogger(log.With("component", "client-go"))
	memlimit.Set(log)
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	ctrl, err := kube.New(kube.Options{Kubeconfig: *kubeconfig, NodeName: *id, Namespace: *namespace,
		LeaseDuration: *leaseDuration, AllocatorOnly: true, Logger: log, Registerer: reg})
	if err != nil {
		log.Error("vipspeaker allocate stopped", "error", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	log.Info("vipspeaker allocator starting", "id", *id, "version", version)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return ctrl.Run(gctx, nil) })
	if *metricsAddr != "" {
		// Healthy unless it holds the Lease and stopped renewing it;
		// ready once its caches synced.
		unhealthy := func() []string {
			if err := ctrl.ElectionHealthy(); err != nil {
				return []string{err.Error()}
			}
			return nil
		}
		notReady := func() []string {
			if !ctrl.Synced() {
				return []string{"caches"}
			}
			return nil
		}
		g.Go(func() error { return status.ServeHTTP(gctx, *metricsAddr, status.Handler(reg, unhealthy, notReady)) })
	}
	if err := g.Wait(); err != nil && ctx.Err() == nil {
		log.Error("vipspeaker allocate stopped", "error", err)
		return 1
	}
	return 0
}
