package main

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vipspeaker/vipspeaker/config"
	"github.com/vipspeaker/vipspeaker/dataplane/owner"
)

// In a cluster the layer2 membership finds the other speakers through the
// API server: with [membership] join empty at start, it joins the
// InternalIPs of the other Nodes (of the family of its own address, on the
// first layer2 interface), read once before the membership starts (so its
// first owner computation already knows them) and then followed through the
// Nodes informer (a Node that appears is joined within the membership's
// retry period; a speaker that joins any member learns every other one).

// initialPeers fills c.Membership.Join from the Nodes at start when the
// config has layer2 pools and no join list.
func (a *agent) initialPeers(ctx context.Context, c *config.Config) error {
	ifaces := layer2Interfaces(c)
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
	l, err := a.cluster.ctrl.Client().CoreV1().Nodes().List(lctx, metav1.ListOptions{})
	if err != nil {
		a.log.Warn("cannot list the Nodes at start: the layer2 membership joins the other speakers once the Nodes are read", "error", err)
		return nil
	}
	addrs := map[string][]string{}
	for i := range l.Items {
		n := &l.Items[i]
		for _, ad := range n.Status.Addresses {
			if ad.Type == "InternalIP" {
				addrs[n.Name] = append(addrs[n.Name], ad.Address)
			}
		}
	}
	c.Membership.Join = a.peers(addrs)
	a.log.Info("layer2 membership joins the other nodes (from the API server)", "component", "layer2", "peers", c.Membership.Join)
	return nil
}

// peers picks, per other Node, its first InternalIP of the membership's
// family; sorted.
func (a *agent) peers(addrs map[string][]string) []string {
	var out []string
	for name, as := range addrs {
		if name == a.f.nodeName {
			continue
		}
		for _, s := range as {
			ip, err := netip.ParseAddr(s)
			if err != nil || ip.Unmap().Is6() != a.cluster.joinV6 {
				continue
			}
			out = append(out, ip.Unmap().String())
			break
		}
	}
	slices.Sort(out)
	return out
}

// nodeAddrsChanged is the controller's OnNodeAddrs: the membership's join
// list follows the Nodes.
func (a *agent) nodeAddrsChanged(addrs map[string][]string) {
	if a.l2 == nil || !a.cluster.joinFromAPI {
		return
	}
	p := a.peers(addrs)
	a.l2.ms.SetJoin(p)
	a.log.Debug("layer2 membership peers from the Nodes", "component", "layer2", "peers", p)
}
