// Package layer2_test runs the real agent binary in layer2 mode: two node
// namespaces and a client on one flat segment (the client's bridge). Each
// agent puts the pool's VIPs on its kube-lb0, and exactly one of them (the
// owner by rendezvous hash over the healthy speakers) answers ARP and NDP
// for each VIP on eth0. The client resolves through its own tools (arping,
// ndisc6) and kernel (ping).
//
// What the agent must do for these tests (the cmd wiring): read
// [[pools]] mode = "layer2" with [pools.layer2] interfaces, [layer2] and
// [membership] from vipspeaker.toml; bind memberlist on the node's address
// of the first layer2 interface (port 7946); feed the layer2 VIPs of the VIP
// table to an owner.Controller and its result to dataplane.Responder. An
// agent that exits or never opens its responder fails the test.
package layer2_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vipspeaker/vipspeaker/internal/nstest"
	"github.com/vipspeaker/vipspeaker/test/lab"
)

const (
	vip4     = "203.0.113.10"
	vip6     = "2001:db8:100::1:10"
	vip4Free = "203.0.113.11" // in the pool, used by no Service
)

// topo is a lab.Flat of n nodes (IPv6 too) whose agents share one
// vipspeaker.toml: the layer2 pool "flat" over 203.0.113.0/28 and
// 2001:db8:100::1:0/120 answered on eth0, [membership] joining every node
// with a secret, and the Service web with vip4 and vip6.
type topo struct {
	*lab.Flat
	client *lab.Host
	macs   []string
	flags  []string // added to every agent's command line
}

// topoOptions: pin puts the XDP fast path's pins on a bpf filesystem of
// the test's own (pin-dir), so the program outlives a restart of its agent
// (ip netns exec hides the host's /sys/fs/bpf).
type topoOptions struct {
	pin bool
}

func newTopo(t testing.TB, n int, o ...topoOptions) *topo {
	t.Helper()
	nstest.RequireRoot(t)
	for _, tool := range []string{"arping", "ndisc6", "ping"} {
		if _, err := os.Stat("/usr/sbin/" + tool); err != nil {
			if _, err := os.Stat("/usr/bin/" + tool); err != nil {
				nstest.Skip(t, "%s not installed (make deps)", tool)
			}
		}
	}
	f := lab.NewFlat(t, lab.FlatOptions{Nodes: n, IPv6: true, Routes: []string{"203.0.113.0/24", "2001:db8:100::/64"}})
	tp := &topo{Flat: f, client: f.Client, macs: f.MACs()}
	l2 := &lab.Layer2TOML{GratuitousCount: 3, GratuitousInterval: "100ms"}
	if len(o) > 0 && o[0].pin {
		l2.PinDir = filepath.Join(lab.MountBPFFS(t), "vipspeaker")
	}
	secret := filepath.Join(f.Lab.Dir(), "membership.key")
	for _, err := range []error{
		lab.WriteFileAtomic(secret, "c2VjcmV0LWZvci10aGUtbGF5ZXIyLWUyZS10ZXN0cw==\n"),
		f.WriteConfig("vipspeaker.toml", lab.AgentTOML{
			Pools:      []lab.Pool{{Name: "flat", Addresses: []string{"203.0.113.0/28", "2001:db8:100::1:0/120"}, Layer2Interfaces: []string{"eth0"}}},
			Layer2:     l2,
			Membership: &lab.Membership{Join: f.Join(), SecretFile: secret},
		}.String()),
		f.WriteServices("web", lab.ServiceFile{Name: "web", Pool: "flat", Addresses: []string{vip4, vip6}}),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	return tp
}

// start starts node i's agent and waits until it answers on eth0 and has
// joined every other running agent.
func (tp *topo) start(t testing.TB, i int) *lab.Process {
	t.Helper()
	var others []int
	for j, n := range tp.Nodes {
		if j != i && n.Proc != nil && !n.Proc.Exited() {
			others = append(others, j)
		}
	}
	p, err := tp.Nodes[i].Start(tp.flags...)
	if err != nil {
		t.Fatal(err)
	}
	// The responder logs this line when it opens the interface. An agent
	// that exits or never answers is a failure, not a reason to skip.
	if err := lab.Poll(20*time.Second, 50*time.Millisecond, func() error {
		if p.Exited() {
			return fmt.Errorf("node%d's agent exited: %w", i, lab.ErrGiveUp)
		}
		if !strings.Contains(p.Log(), "answering ARP/NDP on layer2 interface") {
			return fmt.Errorf("node%d's agent has not opened its layer2 responder", i)
		}
		return nil
	}); err != nil {
		t.Fatalf("%v. Log:\n%s", err, lab.Tail(p.Log(), 20))
	}
	// This agent has joined every other running one. (They may not log
	// it: a speaker back within its restart window was never gone.)
	lab.Eventually(t, 20*time.Second, 50*time.Millisecond, func() error {
		for _, j := range others {
			if !joined(p.Log(), j) {
				return fmt.Errorf("node%d's agent has not joined node%d", i, j)
			}
		}
		return nil
	})
	return p
}

// joined reports whether an agent's log says node j joined it.
func joined(log string, j int) bool {
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "speaker joined") && strings.Contains(l, fmt.Sprintf("node=node%d ", j)) {
			return true
		}
	}
	return false
}

func (tp *topo) arping(addr string) []string {
	return lab.MACs(strings.Join(tp.ARPing(addr, 3, 200*time.Millisecond), " "))
}

func (tp *topo) ndisc(addr string) []string {
	out, _ := tp.client.Run(context.Background(), "ndisc6", "-m", "-n", "-r", "2", "-w", "300", addr, "br0")
	return lab.MACs(out)
}

// owner waits until exactly one node answers for addr and returns its index.
func (tp *topo) owner(t testing.TB, addr string, resolve func(string) []string) int {
	t.Helper()
	return tp.WaitOwner(t, addr, 15*time.Second, resolve)
}

// The client resolves each VIP to exactly one node, over ARP and NDP, and
// reaches it; an address of the pool that no Service uses gets no answer.
func TestClientResolvesTheOwner(t *testing.T) {
	t.Parallel()
	tp := newTopo(t, 2)
	tp.start(t, 0)
	tp.start(t, 1)
	o4 := tp.owner(t, vip4, tp.arping)
	tp.owner(t, vip6, tp.ndisc)
	if got := tp.arping(vip4Free); len(got) != 0 {
		t.Errorf("%s, used by no Service, was answered by %v", vip4Free, got)
	}
	for _, a := range []string{vip4, vip6} {
		lab.Eventually(t, 10*time.Second, 200*time.Millisecond, func() error { return tp.client.Ping(a) })
	}
	if out := tp.client.MustRun("ip", "neigh", "show", vip4, "dev", "br0"); !strings.Contains(out, tp.macs[o4]) {
		t.Errorf("the client's kernel resolved %s to %q, want node%d's %s", vip4, out, o4, tp.macs[o4])
	}
}
