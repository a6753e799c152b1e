package controlplane_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vipspeaker/vipspeaker/test/lab"
)

// TestLayer2ControlPlaneVIP: three control-plane nodes on one segment, the
// VIP answered in layer2. Stopping the holder's kube-apiserver moves the
// VIP to a node whose API server is ready, and the client's longest time
// without an answer stays under a second; freezing the new holder (agent
// and API server, SIGSTOP) does the same; stopping the last API server
// leaves the VIP where it is: no node's check passes, and only the holder
// answers ARP for it.
func TestLayer2ControlPlaneVIP(t *testing.T) {
	start := time.Now()
	f := lab.NewFlat(t, lab.FlatOptions{Nodes: 3, Routes: []string{"203.0.113.0/24"}})
	nodes := make([]*cpNode, len(f.Nodes))
	for i, fn := range f.Nodes {
		nodes[i] = &cpNode{host: fn.Host, addr: fn.Addr4, agent: fn.Agent}
	}
	startAPIServers(t, nodes)
	t.Logf("3 etcd + kube-apiserver ready after %v", time.Since(start).Round(time.Millisecond))
	for _, n := range nodes {
		toml := lab.AgentTOML{
			// fast-path off: the gratuitous ARPs go out on a packet
			// socket. Sent as XDP live frames on a veth they reach the
			// client's bridge only if its end runs NAPI (bpf/doc.go), which
			// this lab's does not; on a NIC both ways reach the segment.
			Layer2:     &lab.Layer2TOML{GratuitousCount: 3, GratuitousInterval: "100ms", FastPath: "off"},
			Membership: &lab.Membership{Join: f.Join()},
			Extra:      n.checkTOML("layer2", `interfaces = ["eth0"]`, false),
		}.String()
		if err := n.agent.WriteConfig("vipspeaker.toml", toml); err != nil {
			t.Fatal(err)
		}
		n.startAgent(t)
	}
	waitPassing(t, nodes)
	p := f.StartProber(t, vip, 5*time.Millisecond)
	c := startClient(t, f.Client, nodes)
	c.waitAnswers(t, time.Now(), 20, 30*time.Second)
	macs := f.MACs()
	// owner is the node whose MAC answered ARP last, after since.
	owner := func(since time.Time, not ...int) (int, error) {
		rs := p.Replies()
		for j := len(rs) - 1; j >= 0 && !rs[j].At.Before(since); j-- {
			if i := slices.Index(macs, rs[j].MAC); i >= 0 && !slices.Contains(not, i) {
				return i, nil
			}
		}
		return -1, fmt.Errorf("no ARP reply for %s since %s from a node other than %v", vip, since.Format(time.StampMilli), not)
	}
	waitOwner := func(since time.Time, not ...int) int {
		t.Helper()
		o := -1
		lab.Eventually(t, 10*time.Second, 10*time.Millisecond, func() (err error) {
			o, err = owner(since, not...)
			return err
		})
		return o
	}
	first := waitOwner(time.Now())
	t.Logf("node%d holds %s (ready after %v)", first, vip, time.Since(start).Round(time.Millisecond))

	// neigh is the client's neighbour entry for the VIP.
	neigh := func() string {
		out, _ := f.Client.Run(context.Background(), "ip", "neigh", "show", vip, "dev", "br0")
		return strings.TrimSpace(out)
	}
	// waitNeigh waits until the client sends to node i's MAC.
	waitNeigh := func(i int) {
		t.Helper()
		lab.Eventually(t, 10*time.Second, 10*time.Millisecond, func() error {
			if n := neigh(); !strings.Contains(n, macs[i]) {
				return fmt.Errorf("client's neighbour entry %q, want node%d's %s", n, i, macs[i])
			}
			return nil
		})
	}
	waitNeigh(first)

	// 1. The holder's API server stops.
	at := time.Now()
	if err := nodes[first].api.Stop(); err != nil {
		t.Fatal(err)
	}
	second := waitOwner(at, first)
	c.waitAnswers(t, time.Now(), 50, 10*time.Second)
	gap, from := c.gap(at)
	t.Logf("node%d's kube-apiserver stopped: node%d took %s over; longest gap at the client %v (from %s)",
		first, second, vip, gap.Round(time.Millisecond), from.Format(time.StampMilli))
	if gap > maxGap {
		t.Errorf("API server stopped: the client had no answer through %s for %v, want <= %v", vip, gap, maxGap)
	}

	waitNeigh(second)
	// 2. The new holder freezes, agent and API server.
	at = time.Now()
	nodes[second].freeze(t)
	third := waitOwner(at, first, second)
	c.waitAnswers(t, time.Now(), 50, 10*time.Second)
	gap, from = c.gap(at)
	t.Logf("node%d frozen (SIGSTOP agent + kube-apiserver): node%d took %s over; longest gap %v (from %s)",
		second, third, vip, gap.Round(time.Millisecond), from.Format(time.StampMilli))
	if gap > maxGap {
		t.Errorf("node frozen: the client had no answer through %s for %v, want <= %v", vip, gap, maxGap)
	}

	waitNeigh(third)

	// 3. The last API server stops: no node passes; the VIP stays.
	at = time.Now()
	if err := nodes[third].api.Stop(); err != nil {
		t.Fatal(err)
	}
	lab.Eventually(t, 10*time.Second, 20*time.Millisecond, func() error {
		if !hasLine(nodes[third].proc.Log(), "health check fails") {
			return fmt.Errorf("node%d's agent has not logged its check failing", third)
		}
		return nil
	})
	hold := time.Now()
	time.Sleep(2 * time.Second) // what is asserted is that nothing happens in this time
	var answers int
	for _, r := range p.Replies() {
		if r.At.Before(at) {
			continue
		}
		if r.MAC != macs[third] {
			t.Errorf("API servers down everywhere: %s answered by %s at %s, want only node%d's %s",
				vip, r.MAC, r.At.Format(time.StampMilli), third, macs[third])
			break
		}
		answers++
	}
	if answers < 100 {
		t.Errorf("API servers down everywhere: only %d ARP replies for %s in %v, want the holder to keep answering", answers, vip, time.Since(at))
	}
	t.Logf("every API server down: node%d kept %s (%d ARP replies, all its own, in %v, %v after its check failed); test took %v",
		third, vip, answers, time.Since(at).Round(time.Millisecond), time.Since(hold).Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
}
