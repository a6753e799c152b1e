// Command testagent is the in-cluster wiring of vipspeaker used by the kube
// e2e tests until `vipspeaker run --kubeconfig` exists: a VIP table, the
// embedded BGP speaker and the kube Controller, joined the way cmd should
// join them. It runs inside a node namespace of the lab.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"
	"k8s.io/klog/v2"

	"github.com/vipspeaker/vipspeaker/bgp"
	"github.com/vipspeaker/vipspeaker/config"
	"github.com/vipspeaker/vipspeaker/kube"
	"github.com/vipspeaker/vipspeaker/routing"
)

func main() {
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig file (empty: in-cluster)")
	nodeName := flag.String("node-name", "", "this node's name")
	runDir := flag.String("run-dir", "/run/vipspeaker", "sockets")
	lease := flag.Duration("lease-duration", 0, "allocator Lease duration (0: default)")
	noBGP := flag.Bool("no-bgp", false, "do not run the BGP speaker")
	klog.InitFlags(nil)
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, log, *kubeconfig, *nodeName, *runDir, *lease, *noBGP); err != nil {
		log.Error("testagent stopped", "error", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, log *slog.Logger, kubeconfig, node, runDir string, lease time.Duration, noBGP bool) error {
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	speaker, err := bgp.New(bgp.Options{RunDir: runDir, Logger: log, Registerer: reg, NodeName: node})
	if err != nil {
		return err
	}
	table, err := routing.New(routing.Options{Logger: log, Registerer: reg})
	if err != nil {
		return err
	}
	defer table.Close()
	var lastGoBGP []byte
	ctrl, err := kube.New(kube.Options{
		Kubeconfig:    kubeconfig,
		NodeName:      node,
		Logger:        log,
		Registerer:    reg,
		LeaseDuration: lease,
		OnConfig: func(vipspeakerTOML, gobgpConf []byte) error {
			if vipspeakerTOML != nil {
				if _, errs := config.Parse(kube.DefaultConfigMapName+"/"+config.FileName, vipspeakerTOML); len(errs) > 0 {
					return fmt.Errorf("%d problems in vipspeaker.toml", len(errs))
				}
			}
			if noBGP || gobgpConf == nil || string(gobgpConf) == string(lastGoBGP) {
				return nil
			}
			if err := speaker.Apply(ctx, kube.DefaultConfigMapName+"/"+kube.GoBGPConfKey, gobgpConf); err != nil {
				return err
			}
			lastGoBGP = gobgpConf
			return nil
		},
	})
	if err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return table.Run(gctx) })
	if !noBGP {
		events := table.Subscribe()
		defer events.Close()
		g.Go(func() error { return speaker.Run(gctx, events) })
	}
	g.Go(func() error {
		return ctrl.Run(gctx, func(vips []routing.VIP) {
			if err := table.Set(gctx, vips); err != nil && gctx.Err() == nil {
				log.Error("apply VIPs", "error", err)
			}
			log.Info("VIP table applied", "vips", len(vips))
		})
	})
	return g.Wait()
}
