package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/vipspeaker/vipspeaker/bgp"
	"github.com/vipspeaker/vipspeaker/config"
	"github.com/vipspeaker/vipspeaker/dataplane"
	"github.com/vipspeaker/vipspeaker/dataplane/owner"
	"github.com/vipspeaker/vipspeaker/kube"
	"github.com/vipspeaker/vipspeaker/kube/nodestate"
	"github.com/vipspeaker/vipspeaker/routing"
)

// cluster is the cluster-mode state of an agent.
type cluster struct {
	ctrl *kube.Controller
	// memberKey is the layer2 membership key derived from the Secret that
	// [membership] secret-file names (secret:NAME/KEY) at start; nil
	// otherwise.
	memberKey []byte
	// joinFromAPI: [membership] join was empty at start, so the layer2
	// membership joins the other nodes' InternalIPs, read once before it
	// starts and then followed through the Nodes informer.
	joinFromAPI bool
	// family of the membership's address (the first layer2 interface's).
	joinV6 bool
}

// newCluster builds the cluster-mode controller and reads the ConfigMap
// once, so the VIP interface, the layer2 parts and BGP start with it: the
// ConfigMap feeds the config (validated as in standalone mode; a bad one
// is refused whole and the last good stays), the Services feed the VIPs.
// An API server that cannot be reached leaves the defaults; the watch
// applies the ConfigMap when it arrives. An invalid ConfigMap at start
// stops the agent with every problem listed, as an invalid config
// directory does.
func (a *agent) newCluster(ctx context.Context) error {
	handover, err := dataplane.NewHandover(dataplane.HandoverOptions{Logger: a.log, Registerer: a.reg})
	if err != nil {
		return err
	}
	ctrl, err := kube.New(kube.Options{
		Kubeconfig:    a.f.kubeconfig,
		NodeName:      a.f.nodeName,
		Namespace:     a.f.namespace,
		LeaseDuration: a.f.leaseDuration,
		NoAllocator:   !a.f.allocate,
		Heartbeat:     a.beats.Add("kubernetes", 0),
		Logger:        a.log,
		Registerer:    a.reg,
		OnConfig: func(vipspeakerTOML, gobgpConf []byte) error {
			return a.clusterConfig(context.Background(), vipspeakerTOML, gobgpConf, false)
		},
		OnConfigRejected: func(err error) { a.reloads.Refused(err) },
		OnLayer2: func(candidates map[netip.Addr][]string) {
			if a.l2 != nil {
				a.l2.SetEligible(candidates)
			}
		},
		OnHandover:   handover.SetTargets,
		OnNodeLabels: func(l map[string]string) { a.setNodeLabels(ctx, l) },
		NodeReport:   func() (nodestate.Status, bool) { return nodestate.FromReport(a.report(true)) },
		OnNodeAddrs: func(addrs map[string][]string) {
			if a.l2 != nil && a.cluster.joinFromAPI {
				p := kube.JoinPeers(addrs, a.f.nodeName, a.cluster.joinV6)
				a.l2.SetJoin(p)
				a.log.Debug("layer2 membership peers from the Nodes", "component", "layer2", "peers", p)
			}
		},
	})
	if err != nil {
		return err
	}
	a.cluster.ctrl = ctrl
	a.runSource = func(ctx context.Context) error {
		g, gctx := errgroup.WithContext(ctx)
		g.Go(func() error { return handover.Run(gctx, a.table) })
		g.Go(func() error { return ctrl.Run(gctx, func(vips []routing.VIP) { a.applyVIPs(gctx, vips, false) }) })
		return g.Wait()
	}
	gctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	toml, gobgp, found, err := ctrl.ReadConfigMap(gctx)
	switch {
	case err != nil:
		a.log.Warn("cannot read the ConfigMap at start; starting with defaults, the watch applies it later", "error", err)
		return nil
	case !found:
		a.log.Info("no ConfigMap yet; starting with defaults", "configmap", ctrl.ConfigMapName())
		return nil
	}
	if err := a.clusterConfig(ctx, toml, gobgp, true); err != nil {
		return fmt.Errorf("ConfigMap %s is invalid; nothing was started:\n%w", ctrl.ConfigMapName(), err)
	}
	return nil
}

// clusterConfig applies the ConfigMap's two keys. vipspeaker.toml absent
// means defaults; gobgp.conf absent leaves BGP as it is. Secrets named by
// the ConfigMap (secret:NAME/KEY) are all read before anything is applied;
// one that cannot be read refuses the whole ConfigMap.
func (a *agent) clusterConfig(ctx context.Context, vipspeakerTOML, gobgpConf []byte, initial bool) error {
	ctrl := a.cluster.ctrl
	tomlName, bgpName := ctrl.ConfigKeyName(config.FileName), ctrl.ConfigKeyName(kube.GoBGPConfKey)
	c := config.Default()
	if vipspeakerTOML != nil {
		var errs []error
		if c, errs = config.Parse(tomlName, vipspeakerTOML); len(errs) > 0 {
			return errors.Join(errs...)
		}
		if errs := append(c.ClusterErrors(tomlName), config.CheckWithGoBGP(tomlName, vipspeakerTOML, c, bgpName, gobgpConf)...); len(errs) > 0 {
			return errors.Join(errs...)
		}
	}
	key, err := ctrl.MembershipKey(ctx, c.Membership.SecretRef)
	if err != nil {
		return err
	}
	if gobgpConf != nil {
		var errs []error
		resolve := func(name, key string) (string, error) { return ctrl.SecretText(ctx, name, key) }
		if gobgpConf, errs = bgp.ResolvePasswordRefs(bgpName, gobgpConf, resolve); len(errs) > 0 {
			return errors.Join(errs...)
		}
	}
	if initial {
		a.cluster.memberKey = key
		if err := a.initialPeers(ctx, c); err != nil {
			return err
		}
	} else if !bytes.Equal(key, a.cluster.memberKey) {
		a.log.Warn("the layer2 membership key changed; it takes effect when the agent restarts (restart the DaemonSet)",
			"field", "membership.secret-file", "secret", c.Membership.SecretRef.String())
	}
	if err := a.hideNeighbors(ctx, c); err != nil {
		return err
	}
	if gobgpConf != nil {
		if err := a.applyBGPData(ctx, bgpName, gobgpConf, initial); err != nil {
			a.vipMu.Lock()
			old := a.cfg
			a.vipMu.Unlock()
			_ = a.hideNeighbors(ctx, old)
			return err
		}
	}
	if initial {
		a.vipMu.Lock()
		a.cfg = c
		a.vipMu.Unlock()
	} else {
		a.setConfig(ctx, c)
		a.reloads.Accepted()
	}
	a.ready.Set("config", true)
	return nil
}

// initialPeers fills c.Membership.Join from the Nodes at start when the
// config has layer2 pools and no join list: the InternalIPs of the other
// Nodes, of the family of the membership's own address (on the first
// layer2 interface), so its first owner computation already knows them.
func (a *agent) initialPeers(ctx context.Context, c *config.Config) error {
	ifaces := c.Layer2Interfaces()
	if len(ifaces) == 0 || len(c.Membership.Join) > 0 {
		return nil
	}
	bind, err := owner.InterfaceAddr(ifaces[0])
	if err != nil {
		return fmt.Errorf("membership address on %s (the first layer2 interface): %w", ifaces[0], err)
	}
	a.cluster.joinFromAPI, a.cluster.joinV6 = true, bind.Is6()
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	addrs, err := a.cluster.ctrl.NodeAddrs(lctx)
	if err != nil {
		a.log.Warn("cannot list the Nodes at start: the layer2 membership joins the other speakers once the Nodes are read", "error", err)
		return nil
	}
	c.Membership.Join = kube.JoinPeers(addrs, a.f.nodeName, a.cluster.joinV6)
	a.log.Info("layer2 membership joins the other nodes (from the API server)", "component", "layer2", "peers", c.Membership.Join)
	return nil
}

// layer2Conflict hears from the responder that another station answers for
// a VIP this node owns (the responder logs and counts it); in a cluster the
// Services holding the VIP get an AddressConflict Event, once per episode.
func (a *agent) layer2Conflict(vip netip.Addr, iface string, mac net.HardwareAddr) {
	if a.cluster.ctrl == nil {
		return
	}
	// The responder's read loop must not wait on the API.
	go a.cluster.ctrl.ReportConflict(vip, iface, mac.String())
}
