package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/vipspeaker/vipspeaker/config"
	"github.com/vipspeaker/vipspeaker/internal/dirwatch"
)

// watchConfig reloads the config directory on change. What cannot change
// without a restart (the VIP interface) is reported; an invalid config is
// refused and the last good one stays.
func (a *agent) watchConfig(ctx context.Context, current *config.Config) error {
	w, err := dirwatch.New(a.f.configDir, 50*time.Millisecond)
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
		if c != nil && a.f.standalone() {
			errs = c.StandaloneErrors(filepath.Join(a.f.configDir, config.FileName))
		}
		if len(errs) > 0 {
			for _, e := range errs {
				a.log.Error("configuration refused; the last good one stays in force", "error", e)
			}
			a.reloads.Refused(errs...)
			continue
		}
		if err := a.hideNeighbors(ctx, c); err != nil {
			a.log.Error("[[peer-nodes]] refused; the last good config stays in force", "error", err)
			a.reloads.Refused(err)
			continue
		}
		if err := a.applyBGP(ctx, false); err != nil {
			a.log.Error("gobgp.conf refused; the last good one stays in force", "error", err)
			a.reloads.Refused(err)
			_ = a.hideNeighbors(ctx, current)
			continue
		}
		a.reloads.Accepted()
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
		if a.bgpConfigured() {
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
