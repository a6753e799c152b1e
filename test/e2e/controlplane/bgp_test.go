package controlplane_test

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/vipspeaker/vipspeaker/test/lab"
)

// routerBFD is bfdd's profile "fast": 100 ms intervals; the router
// declares a node down after 3 missed packets (the multiplier the node
// sends, GoBGP's 3: a frozen node is out in about 300 ms), while the nodes
// wait for 10 of the router's (the multiplier below).
//
// On these two shared cores (three API servers, other tests) BFD's 300 ms
// once ran out for two live nodes at the same instant, twice; the router's
// FRR daemons and the agents run at a higher priority (nice -10), as a
// router's control plane and a node's agent have CPU of their own in a
// real network.
const routerBFD = "bfd\n profile fast\n  receive-interval 100\n  transmit-interval 100\n  detect-multiplier 10\n !\n!\n"

// TestBGPControlPlaneVIP: three control-plane nodes peering with an FRR
// router (BFD 100 ms × 3), the VIP announced over BGP; a client behind the
// router. Stopping the API server that answers the client makes its node
// announce the VIP with a longer AS path, so the router sends the client
// to the others: longest gap under a second. Freezing the node that
// answers next (agent and API server) is noticed by BFD: the same.
// Stopping the last API server leaves the route at the router: every node
// then announces the same longer path, and the route stays.
func TestBGPControlPlaneVIP(t *testing.T) {
	start := time.Now()
	lab.RequireFRR(t)
	r := lab.NewRouted(t, lab.RoutedOptions{Nodes: 3, Client: true})
	nodes := make([]*cpNode, len(r.Nodes))
	for i, n := range r.Nodes {
		nodes[i] = &cpNode{host: n.Host, addr: n.Addr4, agent: n.Agent}
	}
	neighbors := r.FRRNeighbors(65001)
	for i := range neighbors {
		neighbors[i].Lines = []string{"neighbor " + neighbors[i].Addr + " bfd", "neighbor " + neighbors[i].Addr + " bfd profile fast"}
	}
	if _, err := r.StartFRR(lab.FRRBGPConf{AS: 65000, RouterID: "198.18.0.1", Neighbors: neighbors, MaximumPaths: 8}, routerBFD); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"zebra", "bgpd", "bfdd"} {
		prioritize(t, r.FRR.Process(d))
	}
	startAPIServers(t, nodes)
	t.Logf("3 etcd + kube-apiserver ready after %v", time.Since(start).Round(time.Millisecond))
	for i, n := range nodes {
		nb := r.Nodes[i].RouterGoBGP()
		nb.BFD = true
		for name, content := range map[string]string{
			"gobgp.conf":      lab.GoBGPConf{AS: 65001, Neighbors: []lab.GoBGPNeighbor{nb}}.String(),
			"vipspeaker.toml": lab.AgentTOML{Extra: n.checkTOML("bgp", "", true)}.String(),
		} {
			if err := n.agent.WriteConfig(name, content); err != nil {
				t.Fatal(err)
			}
		}
		n.startAgent(t)
		prioritize(t, n.proc)
	}
	waitPassing(t, nodes)
	prefix := vip + "/32"
	all := []string{nodes[0].addr, nodes[1].addr, nodes[2].addr}
	if err := r.Router.WaitGateways(prefix, 30*time.Second, all...); err != nil {
		t.Fatal(err)
	}
	// BFD must be up on every session before a node freezes.
	lab.Eventually(t, 30*time.Second, 50*time.Millisecond, func() error {
		var peers []struct {
			Peer   string `json:"peer"`
			Status string `json:"status"`
		}
		if err := r.FRR.VtyshJSON("show bfd peers json", &peers); err != nil {
			return err
		}
		up := 0
		for _, p := range peers {
			if p.Status == "up" {
				up++
			}
		}
		if up < len(nodes) {
			return fmt.Errorf("%d of %d BFD sessions up at the router: %+v", up, len(nodes), peers)
		}
		return nil
	})
	c := startClient(t, r.Client, nodes)
	c.waitAnswers(t, time.Now(), 20, 30*time.Second)
	t.Logf("the router routes %s over the 3 nodes (ready after %v)", vip, time.Since(start).Round(time.Millisecond))
	without := func(gone ...int) []string {
		var out []string
		for i, a := range all {
			if !slices.Contains(gone, i) {
				out = append(out, a)
			}
		}
		return out
	}

	// 1. The API server that answers the client stops.
	first := c.last()
	at := time.Now()
	if err := nodes[first].api.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := r.Router.WaitGateways(prefix, 10*time.Second, without(first)...); err != nil {
		t.Fatal(err)
	}
	c.waitAnswers(t, time.Now(), 50, 10*time.Second)
	second := c.last()
	gap, from := c.gap(at)
	t.Logf("node%d's kube-apiserver stopped: the router left it out; node%d answers; longest gap %v (from %s)",
		first, second, gap.Round(time.Millisecond), from.Format(time.StampMilli))
	if gap > maxGap {
		t.Errorf("API server stopped: the client had no answer through %s for %v, want <= %v", vip, gap, maxGap)
	}
	if second == first {
		t.Fatalf("node%d answers with its API server stopped", first)
	}

	// 2. The node that answers now freezes, agent and API server.
	at = time.Now()
	nodes[second].freeze(t)
	third := without(first, second)
	if err := r.Router.WaitGateways(prefix, 10*time.Second, third...); err != nil {
		t.Fatal(err)
	}
	c.waitAnswers(t, time.Now(), 50, 10*time.Second)
	gap, from = c.gap(at)
	t.Logf("node%d frozen: BFD took it out; node%d answers; longest gap %v (from %s)", second, c.last(), gap.Round(time.Millisecond), from.Format(time.StampMilli))
	if gap > maxGap {
		t.Errorf("node frozen: the client had no answer through %s for %v, want <= %v", vip, gap, maxGap)
	}

	// 3. The last API server stops: no node passes; the route stays.
	last := c.last()
	var reads, missing int
	stop := r.Router.WatchKernelRoutes(10*time.Millisecond, func(_ time.Duration, rs []lab.KernelRoute) {
		reads++
		if !slices.ContainsFunc(rs, func(k lab.KernelRoute) bool { return k.Dst.String() == prefix }) {
			missing++
		}
	})
	defer stop()
	if err := nodes[last].api.Stop(); err != nil {
		t.Fatal(err)
	}
	// Both nodes alive now announce the same prepended path.
	if err := r.Router.WaitGateways(prefix, 10*time.Second, without(second)...); err != nil {
		t.Fatal(err)
	}
	settled := time.Now()
	lab.Eventually(t, 5*time.Second, 50*time.Millisecond, func() error {
		if time.Since(settled) < 2*time.Second {
			return fmt.Errorf("watching the route for 2 s")
		}
		return nil
	})
	gws, err := r.Router.Gateways(prefix)
	stop()
	if err != nil {
		t.Fatal(err)
	}
	if missing > 0 || !slices.Equal(gws, without(second)) {
		t.Errorf("API servers down everywhere: the router's route to %s was missing in %d of %d reads; now via %v, want %v",
			vip, missing, reads, gws, without(second))
	}
	t.Logf("every API server down: the router kept %s in all %d reads, via %v; test took %v", prefix, reads, gws, time.Since(start).Round(time.Millisecond))
}

// prioritize gives every thread of p nice -10 (see routerBFD); threads
// started later inherit it from the thread that starts them.
func prioritize(t *testing.T, p *lab.Process) {
	t.Helper()
	if p == nil {
		t.Fatal("prioritize: no process")
	}
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", p.PID()))
	if err != nil {
		t.Fatalf("renice %s: %v", p.Name(), err)
	}
	for _, task := range tasks {
		tid, err := strconv.Atoi(task.Name())
		if err != nil {
			continue
		}
		if err := syscall.Setpriority(syscall.PRIO_PROCESS, tid, -10); err != nil {
			t.Fatalf("renice %s thread %d: %v", p.Name(), tid, err)
		}
	}
}
