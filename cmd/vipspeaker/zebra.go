package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/vipspeaker/vipspeaker/bgp"
	"github.com/vipspeaker/vipspeaker/config"
	"github.com/vipspeaker/vipspeaker/internal/reexec"
)

// zebraReconnectsEnv carries the count of zebra recoveries across the
// agent's re-executions, so vipspeaker_zebra_reconnects_total keeps
// counting.
const zebraReconnectsEnv = "VIPSPEAKER_ZEBRA_RECONNECTS"

// zebraExec replaces the process image.
var zebraExec = syscall.Exec

// zebraReexecSpacing is the least time between two re-executions.
const zebraReexecSpacing = 5 * time.Second

// runZebraGuard watches the zebra connection (idle without [zebra.config])
// and, when it is lost, re-executes the agent: GoBGP v4.8.0's zebra client
// never reconnects and its goroutine then spins a CPU until the process
// ends, so a new process is the one way to end it. The exec closes the BGP
// sessions without a NOTIFICATION (peers with graceful restart keep the
// routes), leaves the VIPs on the interface (the new process adopts them)
// and keeps the PID, so neither systemd nor the kubelet sees a restart.
// The new process waits for zebra, and adds its peers only once zebra has
// redistributed the VIPs again. It returns only on ctx's end or when the
// exec fails.
func (a *agent) runZebraGuard(ctx context.Context) error {
	started := time.Now()
	prior := reexec.Count(os.Getenv(zebraReconnectsEnv))
	err := a.bgp.RunZebraGuard(ctx, bgp.ZebraGuardOptions{Recovery: bgp.ReturnError, PriorReconnects: prior})
	if !errors.Is(err, bgp.ErrZebraLost) || ctx.Err() != nil {
		return err
	}
	// A zebra that drops every connection soon after it is made must not
	// turn this into a loop of executions.
	if wait := zebraReexecSpacing - time.Since(started); prior > 0 && wait > 0 {
		a.log.Warn("zebra connection lost again soon after the last re-execution; waiting before the next",
			"component", "zebra", "wait", wait.Round(time.Millisecond))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
	n := prior + 1
	argv, env := os.Args, reexec.WithCount(os.Environ(), zebraReconnectsEnv, n)
	a.log.Warn("zebra connection lost: re-executing vipspeaker to reconnect (GoBGP's zebra client cannot); BGP sessions drop, graceful-restart peers keep the routes",
		"component", "zebra", "error", err, "reconnects", n)
	if err := zebraExec("/proc/self/exe", argv, env); err != nil {
		return fmt.Errorf("re-execute vipspeaker after the zebra connection was lost: %w", err)
	}
	return nil // not reached
}

// checkImportWithZebra refuses [import-to-kernel] with [zebra.config] at
// start, in both modes (a config directory is also checked by
// config.LoadDir, with the line).
func (a *agent) checkImportWithZebra(c *config.Config) error {
	a.bgpMu.Lock()
	gobgp := a.bgpConf
	a.bgpMu.Unlock()
	errs := config.CheckWithGoBGP(config.FileName, nil, c, config.GoBGPFileName, gobgp)
	if len(errs) > 0 {
		return fmt.Errorf("configuration is invalid; nothing was started: %w", errors.Join(errs...))
	}
	return nil
}
