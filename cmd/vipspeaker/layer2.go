package main

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/vipspeaker/vipspeaker/config"
	"github.com/vipspeaker/vipspeaker/dataplane"
	"github.com/vipspeaker/vipspeaker/dataplane/owner"
	"github.com/vipspeaker/vipspeaker/routing"
)

// restartWindow is how long the other speakers keep a restarting agent's
// layer2 VIPs with it before they take them over. A rolling update of the
// DaemonSet comes back well within it; a node that does not loses its VIPs.
const restartWindow = 15 * time.Second

// layer2 wires the ARP/NDP responder to the owner election: the layer2 VIPs
// of the table go to the election, and the VIPs this node wins go to the
// responder.
type layer2 struct {
	resp *dataplane.Responder
	ms   *owner.Membership
	ctl  *owner.Controller

	mu    sync.Mutex
	pools map[string][]string // pool name -> layer2 interfaces
}

// layer2Interfaces is the union of the layer2 pools' interfaces, sorted.
func layer2Interfaces(cfg *config.Config) []string {
	var out []string
	for _, p := range cfg.Pools {
		if p.Mode == routing.ModeLayer2 {
			out = append(out, p.Layer2.Interfaces...)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// newLayer2 builds the layer2 parts when the config has a layer2 pool; nil
// otherwise.
func (a *agent) newLayer2(cfg *config.Config) (*layer2, error) {
	ifaces := layer2Interfaces(cfg)
	if len(ifaces) == 0 {
		return nil, nil
	}
	count := cfg.Layer2.GratuitousCount
	if count == 0 {
		count = -1 // configured as none; 0 would mean the default
	}
	resp, err := dataplane.New(dataplane.Options{
		Logger:             a.log,
		Registerer:         a.reg,
		GratuitousCount:    count,
		GratuitousInterval: cfg.Layer2.GratuitousInterval,
		StateFile:          filepath.Join(a.f.runDir, "layer2-sysctls.json"),
	})
	if err != nil {
		return nil, err
	}
	bind, err := owner.InterfaceAddr(ifaces[0])
	if err != nil {
		return nil, fmt.Errorf("membership address on %s (the first layer2 interface): %w", ifaces[0], err)
	}
	ms, err := owner.NewMembership(owner.Options{
		Logger:     a.log,
		Registerer: a.reg,
		NodeName:   a.f.nodeName,
		BindAddr:   bind,
		Join:       cfg.Membership.Join,
		SecretFile: cfg.Membership.SecretFile,
	})
	if err != nil {
		return nil, err
	}
	ctl, err := owner.NewController(owner.ControllerOptions{
		Logger:   a.log,
		NodeName: a.f.nodeName,
		Health:   ms,
		Apply:    resp.SetOwned,
	})
	if err != nil {
		return nil, err
	}
	l := &layer2{resp: resp, ms: ms, ctl: ctl}
	l.configure(cfg)
	a.cfgState.setL2Owners(ctl.Owners)
	return l, nil
}

// configure takes a (new) config's layer2 interfaces and pools.
func (l *layer2) configure(cfg *config.Config) {
	pools := map[string][]string{}
	for _, p := range cfg.Pools {
		if p.Mode == routing.ModeLayer2 {
			pools[p.Name] = p.Layer2.Interfaces
		}
	}
	l.mu.Lock()
	l.pools = pools
	l.mu.Unlock()
	l.resp.SetInterfaces(layer2Interfaces(cfg))
}

// run follows the VIP table and runs the responder, the membership and the
// election until ctx ends. removeOnExit says the agent leaves for good
// (its VIPs are being removed): say goodbye so the others take over at
// once, and restore the sysctls. Otherwise announce a restart window and
// keep the sysctls for the next agent.
func (l *layer2) run(ctx context.Context, vips *routing.Subscription, removeOnExit bool) error {
	if removeOnExit {
		l.ms.SetExitMode(owner.Leave, 0)
	} else {
		l.ms.SetExitMode(owner.Restart, restartWindow)
	}
	errc := make(chan error, 3)
	var wg sync.WaitGroup
	for _, f := range []func(context.Context) error{l.resp.Run, l.ms.Run, l.ctl.Run} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errc <- f(ctx)
		}()
	}
	current := map[netip.Addr]routing.VIP{}
	var err error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case err = <-errc:
			if err != nil {
				break loop
			}
		case <-vips.Ready():
			for _, ev := range vips.Next() {
				if ev.Kind == routing.Removed || ev.VIP.Attrs.Mode != routing.ModeLayer2 {
					delete(current, ev.VIP.Addr)
					continue
				}
				current[ev.VIP.Addr] = ev.VIP
			}
			l.ctl.SetVIPs(l.ownerVIPs(current))
		}
	}
	wg.Wait()
	if removeOnExit {
		if cerr := l.resp.Close(); cerr != nil && err == nil {
			err = cerr
		}
	} else if derr := l.resp.Detach(); derr != nil && err == nil {
		err = derr
	}
	return err
}

func (l *layer2) ownerVIPs(current map[netip.Addr]routing.VIP) []owner.VIP {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]owner.VIP, 0, len(current))
	for a, v := range current {
		// Eligible nil: every healthy speaker (standalone mode has no
		// node readiness or endpoints to narrow it).
		out = append(out, owner.VIP{Addr: a, Interfaces: l.pools[v.Attrs.Pool]})
	}
	slices.SortFunc(out, func(x, y owner.VIP) int { return x.Addr.Compare(y.Addr) })
	return out
}

// withPools fills in each VIP's pool (when the Service did not name one)
// and mode (when the Service did not ask for one) from vipspeaker.toml.
func withPools(vips []routing.VIP, cfg *config.Config) []routing.VIP {
	out := make([]routing.VIP, len(vips))
	for i, v := range vips {
		p := cfg.Pool(v.Attrs.Pool)
		if p == nil {
			p = cfg.PoolOf(v.Addr)
		}
		if p != nil {
			if v.Attrs.Pool == "" {
				v.Attrs.Pool = p.Name
			}
			if v.Attrs.Mode == "" {
				v.Attrs.Mode = p.Mode
			}
		}
		if v.Attrs.Mode == "" {
			v.Attrs.Mode = routing.ModeBGP
		}
		out[i] = v
	}
	return out
}
