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

type topo struct {
	l      *lab.Lab
	bin    string
	client *lab.Host
	nodes  []*lab.Host
	macs   []string
	agents []*lab.Process
	starts int
	svcDir string
	cfgDir string
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
	bin, err := lab.BuildBinary("./cmd/vipspeaker")
	if err != nil {
		t.Fatalf("build vipspeaker: %v", err)
	}
	l := lab.New(t)
	tp := &topo{l: l, bin: bin, client: l.MustHost("client")}
	l.MustBridge(tp.client, "br0", []string{"198.18.2.1/24"})
	tp.client.MustRun("ip", "addr", "add", "2001:db8:2::1/64", "dev", "br0", "nodad")
	tp.client.MustRun("ip", "route", "add", "203.0.113.0/24", "dev", "br0")
	tp.client.MustRun("ip", "-6", "route", "add", "2001:db8:100::/64", "dev", "br0")
	var join []string
	for i := range n {
		h := l.MustHost(fmt.Sprintf("node%d", i))
		l.MustLinkToBridge(h, "eth0", []string{fmt.Sprintf("198.18.2.%d/24", 10+i)}, tp.client, "br0")
		h.MustRun("ip", "addr", "add", fmt.Sprintf("2001:db8:2::%d/64", 10+i), "dev", "eth0", "nodad")
		tp.nodes = append(tp.nodes, h)
		tp.macs = append(tp.macs, strings.TrimSpace(h.MustRun("cat", "/sys/class/net/eth0/address")))
		join = append(join, fmt.Sprintf("%q", fmt.Sprintf("198.18.2.%d", 10+i)))
	}
	tp.svcDir = filepath.Join(l.Dir(), "services")
	tp.cfgDir = filepath.Join(l.Dir(), "config")
	for _, d := range []string{tp.svcDir, tp.cfgDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	pinDir := ""
	if len(o) > 0 && o[0].pin {
		pinDir = fmt.Sprintf("pin-dir = %q\n", filepath.Join(lab.MountBPFFS(t), "vipspeaker"))
	}
	secret := filepath.Join(tp.cfgDir, "membership.key")
	writeFile(t, secret, "c2VjcmV0LWZvci10aGUtbGF5ZXIyLWUyZS10ZXN0cw==\n")
	writeFile(t, filepath.Join(tp.cfgDir, "vipspeaker.toml"), fmt.Sprintf(`
[interface]
name = "kube-lb0"
kind = "ifb"

[[pools]]
name = "flat"
addresses = ["203.0.113.0/28", "2001:db8:100::1:0/120"]
mode = "layer2"
  [pools.layer2]
  interfaces = ["eth0"]

[layer2]
gratuitous-count = 3
gratuitous-interval = "100ms"
%s
[membership]
join = [%s]
secret-file = %q
`, pinDir, strings.Join(join, ", "), secret))
	writeFile(t, filepath.Join(tp.svcDir, "web.yaml"), `apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: demo
  annotations:
    vipspeaker.io/pool: flat
    vipspeaker.io/addresses: "`+vip4+`,`+vip6+`"
spec:
  type: LoadBalancer
  ports:
  - port: 80
`)
	tp.agents = make([]*lab.Process, n)
	return tp
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path+".tmp", []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
}

func (tp *topo) start(t testing.TB, i int) *lab.Process {
	t.Helper()
	tp.starts++
	argv := append([]string{tp.bin, "run", "--services-dir", tp.svcDir, "--config-dir", tp.cfgDir,
		"--run-dir", filepath.Join(tp.l.Dir(), fmt.Sprintf("run-node%d", i)),
		"--node-name", fmt.Sprintf("node%d", i), "--log-level", "debug"}, tp.flags...)
	var others []int
	for j, a := range tp.agents {
		if j != i && a != nil && !a.Exited() {
			others = append(others, j)
		}
	}
	p, err := tp.nodes[i].Start(fmt.Sprintf("vipspeaker-%d", tp.starts), argv)
	if err != nil {
		t.Fatal(err)
	}
	tp.agents[i] = p
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
		t.Fatalf("%v. Log:\n%s", err, tail(p.Log()))
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

func tail(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > 20 {
		lines = lines[len(lines)-20:]
	}
	return strings.Join(lines, "\n")
}

// macsIn returns the distinct MAC addresses in a tool's output.
func macsIn(out string) []string {
	seen := map[string]bool{}
	var macs []string
	for _, f := range strings.Fields(strings.ToLower(out)) {
		if len(f) == 17 && strings.Count(f, ":") == 5 && !seen[f] {
			seen[f] = true
			macs = append(macs, f)
		}
	}
	return macs
}

func (tp *topo) arping(addr string) []string {
	out, _ := tp.client.Run(context.Background(), "arping", "-i", "br0", "-c", "3", "-W", "0.2", "-w", "3", "-r", addr)
	return macsIn(out)
}

func (tp *topo) ndisc(addr string) []string {
	out, _ := tp.client.Run(context.Background(), "ndisc6", "-m", "-n", "-r", "2", "-w", "300", addr, "br0")
	return macsIn(out)
}

// owner waits until exactly one node answers for addr and returns its index.
func (tp *topo) owner(t testing.TB, addr string, resolve func(string) []string) int {
	t.Helper()
	idx := -1
	lab.Eventually(t, 15*time.Second, 200*time.Millisecond, func() error {
		got := resolve(addr)
		if len(got) != 1 {
			return fmt.Errorf("answers for %s from %v, want exactly one", addr, got)
		}
		for i, m := range tp.macs {
			if m == got[0] {
				idx = i
				return nil
			}
		}
		return fmt.Errorf("%s answered by %s, not a node's eth0", addr, got[0])
	})
	return idx
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
