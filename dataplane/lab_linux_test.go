package dataplane

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/vipspeaker/vipspeaker/internal/nstest"
)

// l2lab is a flat segment: a client namespace holding bridge br0 and one
// namespace per node, each joined to the bridge by a veth whose node end is
// eth0. Every node has the VIPs on an ifb kube-lb0, as the routing package
// puts them there, so the kernel of every node would answer ARP for them.
type l2lab struct {
	t      testing.TB
	client *nstest.NS
	nodes  []*nstest.NS
	macs   []string // eth0 MAC of each node
}

func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// tryRun runs a command and returns its output and error (for probes whose
// failure is an expected outcome).
func tryRun(timeout time.Duration, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return string(out), err
}

func needTools(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			nstest.Skip(t, "%s not installed (make deps)", tool)
		}
	}
}

func newL2Lab(t testing.TB, nodes int) *l2lab {
	t.Helper()
	needTools(t, "ip")
	l := &l2lab{t: t, client: nstest.New(t)}
	c := l.client.Name
	run(t, "ip", "-n", c, "link", "add", "br0", "type", "bridge")
	run(t, "ip", "-n", c, "link", "set", "br0", "up")
	run(t, "ip", "-n", c, "addr", "add", "198.18.0.1/24", "dev", "br0")
	run(t, "ip", "-n", c, "addr", "add", "2001:db8:1::1/64", "dev", "br0", "nodad")
	run(t, "ip", "-n", c, "route", "add", "203.0.113.0/24", "dev", "br0")
	run(t, "ip", "-n", c, "-6", "route", "add", "2001:db8:100::/64", "dev", "br0")
	for i := range nodes {
		n := nstest.New(t)
		l.nodes = append(l.nodes, n)
		peer := fmt.Sprintf("n%d", i)
		run(t, "ip", "-n", c, "link", "add", peer, "type", "veth", "peer", "name", "eth0", "netns", n.Name)
		run(t, "ip", "-n", c, "link", "set", peer, "master", "br0", "up")
		run(t, "ip", "-n", n.Name, "link", "set", "eth0", "up")
		run(t, "ip", "-n", n.Name, "addr", "add", fmt.Sprintf("198.18.0.%d/24", 10+i), "dev", "eth0")
		run(t, "ip", "-n", n.Name, "addr", "add", fmt.Sprintf("2001:db8:1::%d/64", 10+i), "dev", "eth0", "nodad")
		run(t, "ip", "-n", n.Name, "link", "add", "kube-lb0", "type", "ifb")
		run(t, "ip", "-n", n.Name, "link", "set", "kube-lb0", "up")
		for _, a := range []string{"203.0.113.10/32", "203.0.113.11/32", "2001:db8:100::1:10/128", "2001:db8:100::1:11/128"} {
			run(t, "ip", "-n", n.Name, "addr", "add", a, "dev", "kube-lb0", "nodad")
		}
		mac := strings.TrimSpace(run(t, "ip", "netns", "exec", n.Name, "cat", "/sys/class/net/eth0/address"))
		l.macs = append(l.macs, mac)
	}
	return l
}

// start runs a responder in node i on eth0 and stops it (and closes it)
// when the test ends.
func (l *l2lab) start(i int, reg prometheus.Registerer, opts Options) *Responder {
	l.t.Helper()
	if opts.Enter == nil {
		opts.Enter = l.nodes[i].Do
	}
	opts.Registerer = reg
	if opts.Logger == nil {
		opts.Logger = testLogger(l.t).With("node", i)
	}
	if opts.GratuitousCount == 0 {
		opts.GratuitousCount = -1 // most tests do not want the bursts
	}
	r, err := New(opts)
	if err != nil {
		l.t.Fatal(err)
	}
	r.SetInterfaces([]string{"eth0"})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	l.t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				l.t.Errorf("run: %v", err)
			}
		case <-time.After(10 * time.Second):
			l.t.Errorf("responder did not stop")
		}
		if err := r.Close(); err != nil {
			l.t.Errorf("close: %v", err)
		}
	})
	waitFor(l.t, 5*time.Second, "responder opens eth0", func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.ports["eth0"] != nil
	})
	return r
}

// arping sends count ARP requests for a from the client and returns the
// distinct MACs that answered.
func (l *l2lab) arping(a netip.Addr, count int) []string {
	l.t.Helper()
	out, _ := tryRun(10*time.Second, "ip", "netns", "exec", l.client.Name,
		"arping", "-i", "br0", "-c", fmt.Sprint(count), "-W", "0.2", "-w", "3", "-r", a.String())
	return macsIn(out)
}

// ndisc sends multicast neighbour solicitations for a from the client and
// returns the distinct MACs that answered.
func (l *l2lab) ndisc(a netip.Addr) []string {
	l.t.Helper()
	out, _ := tryRun(10*time.Second, "ip", "netns", "exec", l.client.Name,
		"ndisc6", "-m", "-n", "-r", "2", "-w", "300", a.String(), "br0")
	return macsIn(out)
}

func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for: %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

func readSysctlIn(t testing.TB, ns *nstest.NS, path string) string {
	t.Helper()
	var v string
	if err := ns.Do(func() error {
		b, err := os.ReadFile(path)
		v = strings.TrimSpace(string(b))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return v
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
