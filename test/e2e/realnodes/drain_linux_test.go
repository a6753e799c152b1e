package realnodes_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vipspeaker/vipspeaker/test/lab"
	"github.com/vipspeaker/vipspeaker/test/lab/realnodes"
)

// nodeMACs maps each node's segment MAC (eth0, lower case) to the node.
func nodeMACs(t *testing.T, c *realnodes.Cluster) map[string]*realnodes.Node {
	t.Helper()
	macs := map[string]*realnodes.Node{}
	for _, n := range c.Nodes {
		if err := n.Host.Do(func() error {
			ifi, err := net.InterfaceByName("eth0")
			if err == nil {
				macs[strings.ToLower(ifi.HardwareAddr.String())] = n
			}
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	return macs
}

// The owner of a layer-2 VIP, as the segment sees it: the node whose MAC
// answers ARP for vip.
func layer2Owner(t *testing.T, c *realnodes.Cluster, vip string) *realnodes.Node {
	t.Helper()
	macs := nodeMACs(t, c)
	p, err := c.LAN.StartARPProber("eth0", netip.MustParseAddr(realnodes.LANAddr), netip.MustParseAddr(vip), 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop(0)
	var owner *realnodes.Node
	lab.Eventually(t, 10*time.Second, 50*time.Millisecond, func() error {
		for _, r := range p.Replies() {
			if owner = macs[strings.ToLower(r.MAC)]; owner != nil {
				return nil
			}
		}
		return fmt.Errorf("no node answered ARP for %s", vip)
	})
	return owner
}

// `kubectl drain` of a node, then the node shut down (kubelet, containerd,
// the agent and its Pods frozen, its link down), under a steady stream to a BGP VIP from
// behind the router and to a layer-2 VIP from the segment, both with the
// drained node among those carrying them: no request fails. The cordon
// takes the node's next hop out of the router's kernel route and moves
// the layer-2 VIP to another node before the node goes, so nothing is left
// pointing at it (without it, graceful restart would keep its route at the
// router for restart-time after the node died).
func TestDrainThenShutdown(t *testing.T) {
	c := cluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	bgp := realnodes.EchoOptions{Namespace: "web", Name: "echo", Replicas: 3, Pool: "bgp"}
	vip := echoBGP(t, c, bgp)
	waitNextHops(t, c, vip, len(c.Nodes))
	l2 := realnodes.EchoOptions{Namespace: "l2", Name: "echo", Replicas: 3, Pool: "l2"}
	l2vip := firstAnswer(t, c, l2, c.LAN, "the layer-2 VIP", "from the segment")
	if err := c.WaitDeploymentReady(l2.Namespace, l2.Name, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	node := layer2Owner(t, c, l2vip)
	var others []string
	for _, n := range c.Nodes {
		if n != node {
			others = append(others, n.Addr)
		}
	}
	slices.Sort(others)

	loadBGP := realnodes.StartLoad(c.Client, "http://"+vip+"/", rate, timeout)
	loadL2 := realnodes.StartLoad(c.LAN, "http://"+l2vip+"/", rate, timeout)
	flowing := func(ls ...*realnodes.Load) {
		t.Helper()
		want := make([]int, len(ls))
		for i, l := range ls {
			want[i] = l.Result().OK + 2*rate
		}
		lab.Eventually(t, time.Minute, 100*time.Millisecond, func() error {
			for i, l := range ls {
				if r := l.Result(); r.OK < want[i] {
					return fmt.Errorf("load: %v", r)
				}
			}
			return nil
		})
	}
	flowing(loadBGP, loadL2)

	start := time.Now()
	if _, err := c.Kubectl(ctx, "drain", node.Name, "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=3m"); err != nil {
		t.Fatal(err)
	}
	drained := time.Since(start)
	if err := c.Router.WaitGateways(vip+"/32", time.Minute, others...); err != nil {
		t.Fatalf("after the drain of %s: %v", node.Name, err)
	}
	if o := layer2Owner(t, c, l2vip); o == node {
		t.Fatalf("layer-2 VIP %s still owned by the drained node %s", l2vip, node.Name)
	}
	flowing(loadBGP, loadL2)
	// The node shuts down: its processes stop and its link goes down (a
	// frozen node's kernel would still forward what reaches it).
	if err := node.Freeze(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = node.Thaw() })
	if err := node.Host.Do(func() error {
		l, err := node.Host.Netlink().LinkByName("eth0")
		if err != nil {
			return err
		}
		return node.Host.Netlink().LinkSetDown(l)
	}); err != nil {
		t.Fatal(err)
	}
	flowing(loadBGP, loadL2)
	rb, rl := loadBGP.Stop(), loadL2.Stop()
	t.Logf("figure: kubectl drain %s (%v), then the node frozen, under %d req/s: BGP %v; layer2 %v", node.Name, drained.Round(10*time.Millisecond), rate, rb, rl)
	for what, r := range map[string]realnodes.LoadResult{"BGP": rb, "layer2": rl} {
		if r.Failed != 0 {
			t.Errorf("%s: %d of %d requests failed (first: %s; last: %s)", what, r.Failed, r.Sent, r.FirstErr, r.LastErr)
		}
	}
}
