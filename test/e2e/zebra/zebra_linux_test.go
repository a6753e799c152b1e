// Package zebra_test runs the real vipspeaker binary in zebra mode: FRR's
// zebra runs on the node namespace, GoBGP's zebra client (gobgp.conf
// [zebra.config]) takes the node's connected routes from it, and a global
// export policy lets only the VIP ranges out; FRR bgpd on router namespaces
// is the peer. In zebra mode the agent's own (native) VIP feed is off: the
// agent puts the VIPs of its Services on kube-lb0, zebra sees them as
// connected routes and redistributes them to the embedded GoBGP.
// Assertions are on the routers' kernels, the node's kernel and the
// agent's RIB (gobgp CLI on its gobgp.sock).
//
// Topology: router i 198.18.i.1/30, 2001:db8:18:i::1/64 — node eth(i-1)
// 198.18.i.2/30, 2001:db8:18:i::2/64, one BGP session over IPv4 carrying
// both families. The node also has lan0 with 198.18.50.1/24 and
// 2001:db8:50::1/64 (connected networks that are not VIPs) and kube-lb0,
// the agent's VIP interface.
package zebra_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vipspeaker/vipspeaker/internal/nstest"
	"github.com/vipspeaker/vipspeaker/test/lab"
)

// routerBGPd is router i's bgpd config: AS 65100 (two top-of-rack
// switches of one AS), peering with the node
// (198.18.i.2, AS 65001) for IPv4 and IPv6, sending it a default route.
func routerBGPd(i int) string {
	node := fmt.Sprintf("198.18.%d.2", i)
	return lab.FRRBGPConf{Hostname: fmt.Sprintf("router%d", i), AS: 65100, RouterID: fmt.Sprintf("198.18.%d.1", i),
		Global: []string{"bgp graceful-restart"},
		Neighbors: []lab.FRRNeighbor{{Addr: node, AS: 65001, ConnectRetry: 1, IPv6: true,
			IPv4Lines: []string{"neighbor " + node + " default-originate"}}},
	}.String()
}

// gobgpConf is the node's gobgp.conf; zsock "" leaves zebra out (native
// mode).
func gobgpConf(zsock string, routers int) string {
	c := lab.GoBGPConf{AS: 65001, RouterID: "198.18.1.2", MultiPath: true, Extra: onlyVIPs}
	if zsock != "" {
		c.Extra = lab.GoBGPZebra(zsock) + "\n" + onlyVIPs
	}
	for i := 1; i <= routers; i++ {
		c.Neighbors = append(c.Neighbors, lab.GoBGPNeighbor{Address: fmt.Sprintf("198.18.%d.1", i), PeerAS: 65100,
			GracefulRestart: true, Families: lab.BothFamilies}.FastTimers())
	}
	return c.String()
}

// onlyVIPs is the global export policy that lets only the VIP ranges out.
var onlyVIPs = lab.GoBGPPolicy{Name: "only-vips", Default: "reject-route",
	PrefixSets: []lab.GoBGPPrefixSet{{Name: "vips4", Prefix: "203.0.113.0/24", MaskRange: "32..32"},
		{Name: "vips6", Prefix: "2001:db8:100::/64", MaskRange: "128..128"}},
	Statements: []lab.GoBGPStatement{{Name: "vips4", PrefixSet: "vips4", Disposition: "accept-route"},
		{Name: "vips6", PrefixSet: "vips6", Disposition: "accept-route"}},
}.String()

type env struct {
	l      *lab.Lab
	router *lab.Host // router1
	node   *lab.Host
	rfrr   *lab.FRR // router1's
	rfrrs  []*lab.FRR
	nfrr   *lab.FRR
	agent  *lab.Process
	svcDir string
	runDir string
}

// setup builds the node and routers router1..routerN (N ≥ 1), node eth(i-1)
// linked to router i, zebra mode.
func setup(t testing.TB, routers int) *env {
	return setupMode(t, routers, true)
}

// setupMode is setup; without zebra the node runs no FRR and the agent
// announces the VIPs of its Services natively.
func setupMode(t testing.TB, routers int, zebra bool) *env {
	t.Helper()
	lab.RequireFRR(t)
	t0 := time.Now()
	bin := lab.Vipspeaker(t)
	t.Logf("vipspeaker built in %v", time.Since(t0).Round(time.Millisecond))
	t0 = time.Now()
	l := lab.New(t)
	e := &env{l: l, node: l.MustHost("node")}
	var rhosts []*lab.Host
	for i := 1; i <= routers; i++ {
		r := l.MustHost(fmt.Sprintf("router%d", i))
		l.MustLink(r, "n1", []string{fmt.Sprintf("198.18.%d.1/30", i), fmt.Sprintf("2001:db8:18:%d::1/64", i)},
			e.node, fmt.Sprintf("eth%d", i-1), []string{fmt.Sprintf("198.18.%d.2/30", i), fmt.Sprintf("2001:db8:18:%d::2/64", i)})
		rhosts = append(rhosts, r)
	}
	e.router = rhosts[0]
	for _, c := range [][]string{
		{"ip", "link", "add", "lan0", "type", "ifb"},
		{"ip", "link", "set", "lan0", "up"},
		{"ip", "addr", "add", "198.18.50.1/24", "dev", "lan0"},
		{"ip", "addr", "add", "2001:db8:50::1/64", "dev", "lan0", "nodad"},
	} {
		e.node.MustRun(c...)
	}
	var err error
	if zebra {
		if e.nfrr, err = e.node.StartFRR(lab.FRRConfig{Daemons: []string{"zebra"}, Zebra: "hostname node\nlog stdout informational\n"}); err != nil {
			t.Fatal(err)
		}
	}
	for i, r := range rhosts {
		e.rfrrs = append(e.rfrrs, startRouterFRR(t, r, i+1))
	}
	e.rfrr = e.rfrrs[0]
	zsock := ""
	if zebra {
		zsock = zebraSocket(e.node)
	}
	a := newAgent(t, e.node, bin, gobgpConf(zsock, routers))
	e.svcDir, e.runDir = a.ServicesDir, a.RunDir
	e.agent = startAgent(t, a)
	t.Cleanup(func() { _ = e.agent.Signal(syscall.SIGCONT) })
	for i, f := range e.rfrrs {
		if err := f.WaitEstablished(fmt.Sprintf("198.18.%d.2", i+1), 20*time.Second); err != nil {
			t.Fatalf("%v\nagent log:\n%s", err, e.agent.Log())
		}
	}
	t.Logf("lab up, sessions established in %v", time.Since(t0).Round(time.Millisecond))
	return e
}

func startRouterFRR(t testing.TB, r *lab.Host, i int) *lab.FRR {
	t.Helper()
	f, err := r.StartFRR(lab.FRRConfig{Zebra: "log stdout informational\n", BGPd: routerBGPd(i)})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func zebraSocket(node *lab.Host) string {
	return filepath.Join("/var/run/frr", node.NetnsName(), "zserv.api")
}

// newAgent makes the agent's folders on node and writes its config:
// kube-lb0 as ifb, gobgp as gobgp.conf; at info level.
func newAgent(t testing.TB, node *lab.Host, bin, gobgp string) *lab.Agent {
	t.Helper()
	a, err := lab.NewAgent(node, bin)
	if err != nil {
		t.Fatal(err)
	}
	a.LogLevel = "info"
	for _, f := range [][2]string{{"vipspeaker.toml", lab.IfbInterfaceTOML}, {"gobgp.conf", gobgp}} {
		if err := a.WriteConfig(f[0], f[1]); err != nil {
			t.Fatal(err)
		}
	}
	return a
}

func startAgent(t testing.TB, a *lab.Agent) *lab.Process {
	t.Helper()
	p, err := a.Start()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// service writes a LoadBalancer Service manifest holding addrs to the
// agent's services folder (standalone mode).
func (e *env) service(t testing.TB, name string, addrs ...string) {
	t.Helper()
	if err := lab.WriteFileAtomic(filepath.Join(e.svcDir, name+".yaml"), lab.ServiceFile{Name: name, Addresses: addrs}.String()); err != nil {
		t.Fatal(err)
	}
}

func (e *env) removeService(t testing.TB, name string) {
	t.Helper()
	if err := os.Remove(filepath.Join(e.svcDir, name+".yaml")); err != nil {
		t.Fatal(err)
	}
}

func hasRoute(h *lab.Host, prefix string) (bool, error) {
	_, ok, err := h.KernelRoute(prefix)
	return ok, err
}

func waitRoute(t testing.TB, h *lab.Host, prefix string, want bool, within time.Duration) {
	t.Helper()
	lab.Eventually(t, within, 20*time.Millisecond, func() error {
		ok, err := hasRoute(h, prefix)
		if err != nil {
			return err
		}
		if ok != want {
			return fmt.Errorf("%s kernel route to %s: %v, want %v", h.Name(), prefix, ok, want)
		}
		return nil
	})
}

// ribPath is what the gobgp CLI's JSON says of one path.
type ribPath struct {
	Source   string            `json:"source-id"`
	Neighbor string            `json:"neighbor-ip"`
	Attrs    []json.RawMessage `json:"attrs"`
}

// attrTypes lists the path attribute type codes of p.
func (p ribPath) attrTypes() []int {
	var out []int
	for _, a := range p.Attrs {
		var t struct {
			Type int `json:"type"`
		}
		if json.Unmarshal(a, &t) == nil {
			out = append(out, t.Type)
		}
	}
	return out
}

// agentRIB reads the agent's global RIB of one family ("ipv4", "ipv6")
// with the gobgp CLI on its gobgp.sock.
func (e *env) agentRIB(t testing.TB, family string) map[string][]ribPath {
	t.Helper()
	_, cli, err := lab.GoBGPBinaries()
	if err != nil {
		nstest.Skip(t, "gobgp CLI: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	out, err := e.node.Run(ctx, cli, "--target", "unix://"+filepath.Join(e.runDir, "gobgp.sock"), "global", "rib", "-a", family, "-j")
	if err != nil {
		t.Fatalf("gobgp global rib -a %s: %v\n%s", family, err, out)
	}
	rib := map[string][]ribPath{}
	if err := json.Unmarshal([]byte(out), &rib); err != nil {
		t.Fatalf("gobgp global rib -a %s -j: %v\n%s", family, err, out)
	}
	return rib
}

// fromZebra checks that the agent's RIB holds prefix as zebra's
// redistribution: a locally originated path carrying a MULTI_EXIT_DISC
// (type 4), the metric of zebra's route, which the native feed's paths
// never carry.
func (e *env) fromZebra(t testing.TB, family, prefix string) error {
	ps := e.agentRIB(t, family)[prefix]
	if len(ps) == 0 {
		return fmt.Errorf("agent's RIB has no path for %s", prefix)
	}
	for _, p := range ps {
		if p.Neighbor != "" && p.Neighbor != "<nil>" {
			return fmt.Errorf("agent's path for %s is from neighbor %s", prefix, p.Neighbor)
		}
		if !slices.Contains(p.attrTypes(), 4) {
			return fmt.Errorf("agent's path for %s has no MED (attrs %v): not zebra's", prefix, p.attrTypes())
		}
	}
	return nil
}

// The VIPs of a Service go out through zebra only: the native feed is off
// in zebra mode, the paths in the agent's RIB are zebra's, an IPv6 VIP gets
// the node's IPv6 next hop over the IPv4 session, the node's other
// connected networks reach the agent's RIB but not the router, and the
// router's default route reaches the node's kernel through zebra.
func TestZebraModeRedistributesOnlyVIPsAndImports(t *testing.T) {
	e := setup(t, 1)
	e.service(t, "web", "203.0.113.10", "2001:db8:100::10")
	waitRoute(t, e.router, "203.0.113.10/32", true, 15*time.Second)
	lab.Eventually(t, 15*time.Second, 20*time.Millisecond, func() error {
		r, ok, err := e.router.KernelRoute("2001:db8:100::10/128")
		switch {
		case err != nil:
			return err
		case !ok:
			return fmt.Errorf("router has no route to 2001:db8:100::10/128")
		case len(r.Gateways) != 1 || r.Gateways[0].String() != "2001:db8:18:1::2":
			return fmt.Errorf("router routes 2001:db8:100::10/128 via %v, want 2001:db8:18:1::2", r.Gateways)
		}
		return nil
	})
	// The paths in the agent's RIB are zebra's, and the native feed never
	// added one (a path it added would have been replaced by zebra's, so
	// its counter is what shows it stayed off).
	if err := e.fromZebra(t, "ipv4", "203.0.113.10/32"); err != nil {
		t.Error(err)
	}
	if err := e.fromZebra(t, "ipv6", "2001:db8:100::10/128"); err != nil {
		t.Error(err)
	}
	e.waitMetric(t, "vipspeaker_bgp_native_vip_updates_total 0")
	// The connected networks that are not VIPs reach the agent's RIB from
	// zebra (so the export policy is what holds them back) and never leave
	// the node.
	if err := e.fromZebra(t, "ipv4", "198.18.50.0/24"); err != nil {
		t.Errorf("lan0's network: %v", err)
	}
	if err := e.fromZebra(t, "ipv6", "2001:db8:50::/64"); err != nil {
		t.Errorf("lan0's IPv6 network: %v", err)
	}
	time.Sleep(time.Second)
	for _, p := range []string{"198.18.50.0/24", "2001:db8:50::/64"} {
		if ok, err := hasRoute(e.router, p); err != nil || ok {
			t.Errorf("router has a route to the node's non-VIP network %s (%v, %v)", p, ok, err)
		}
	}
	// The router's default route reaches the node's kernel through zebra.
	lab.Eventually(t, 10*time.Second, 50*time.Millisecond, func() error {
		r, ok, err := e.node.KernelRoute("0.0.0.0/0")
		if err == nil && (!ok || r.Protocol != "bgp") {
			err = fmt.Errorf("node kernel default route: %v %+v, want one with proto bgp", ok, r)
		}
		return err
	})
	// Removing the Service withdraws the VIPs (zebra withdraws them: the
	// native feed withdraws nothing either).
	e.removeService(t, "web")
	waitRoute(t, e.router, "203.0.113.10/32", false, 15*time.Second)
	waitRoute(t, e.router, "2001:db8:100::10/128", false, 15*time.Second)
	e.waitMetric(t, "vipspeaker_bgp_native_vip_updates_total 0")
	for _, p := range []string{"198.18.50.0/24", "2001:db8:50::/64"} {
		if ok, err := hasRoute(e.router, p); err != nil || ok {
			t.Errorf("router has a route to the node's non-VIP network %s (%v, %v)", p, ok, err)
		}
	}
}

// gapWatch polls a host's kernel for prefixes every 10 ms and records every
// stretch during which one was missing.
type gapWatch struct {
	stop chan struct{}
	done chan []string
}

func watchGaps(h *lab.Host, prefixes ...string) *gapWatch {
	w := &gapWatch{stop: make(chan struct{}), done: make(chan []string, 1)}
	go func() {
		var gaps []string
		missing := map[string]time.Time{}
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-w.stop:
				for p, since := range missing {
					gaps = append(gaps, fmt.Sprintf("%s missing since %s (still at the end)", p, since.Format(time.StampMilli)))
				}
				w.done <- gaps
				return
			case <-t.C:
			}
			for _, p := range prefixes {
				ok, err := hasRoute(h, p)
				if err != nil {
					continue
				}
				since, was := missing[p]
				switch {
				case !ok && !was:
					missing[p] = time.Now()
				case ok && was:
					gaps = append(gaps, fmt.Sprintf("%s missing %v from %s", p, time.Since(since).Round(time.Millisecond), since.Format(time.StampMilli)))
					delete(missing, p)
				}
			}
		}
	}()
	return w
}

func (w *gapWatch) finish() []string {
	close(w.stop)
	return <-w.done
}

// Zebra restarts: GoBGP's zebra client cannot reconnect, so the agent
// re-executes itself (same PID); the router keeps the VIP routes through
// graceful restart (its kernel polled every 10 ms), the new process
// reconnects, counts the recovery, and does not spin a CPU. Then zebra is
// killed and stays down for 3 s: same recovery, the count reaches 2.
func TestZebraRestartRecovers(t *testing.T) {
	e := setup(t, 1)
	e.service(t, "web", "203.0.113.10", "2001:db8:100::10")
	waitRoute(t, e.router, "203.0.113.10/32", true, 15*time.Second)
	waitRoute(t, e.router, "2001:db8:100::10/128", true, 15*time.Second)
	lab.Eventually(t, 10*time.Second, 50*time.Millisecond, func() error {
		if !strings.Contains(e.agent.Log(), "watching zebra's connection") {
			return fmt.Errorf("the agent's zebra guard has not started")
		}
		return nil
	})
	pid := e.agent.PID()
	w := watchGaps(e.router, "203.0.113.10/32", "2001:db8:100::10/128")
	restarted := time.Now()
	if err := e.nfrr.Restart("zebra"); err != nil {
		t.Fatal(err)
	}
	lab.Eventually(t, 30*time.Second, 50*time.Millisecond, func() error {
		if e.agent.Exited() {
			return fmt.Errorf("%w: the agent exited:\n%s", lab.ErrGiveUp, e.agent.Log())
		}
		if !strings.Contains(e.agent.Log(), "reconnected to zebra") {
			return fmt.Errorf("agent has not reconnected to zebra")
		}
		return nil
	})
	if err := e.rfrr.WaitEstablished("198.18.1.2", 30*time.Second); err != nil {
		t.Fatalf("%v\nagent log:\n%s", err, e.agent.Log())
	}
	t.Logf("zebra restarted; agent reconnected and session up again %v later", time.Since(restarted).Round(time.Millisecond))
	for _, w := range []string{"zebra connection lost: re-executing vipspeaker to reconnect", "zebra redistributed the VIPs"} {
		if !strings.Contains(e.agent.Log(), w) {
			t.Errorf("the agent did not log %q", w)
		}
	}
	// CPU over 3 s once recovered: below 20% of a core (GoBGP's leaked
	// zebra loop would take a whole one).
	t0, err := lab.CPUTicks(pid)
	if err != nil {
		t.Fatalf("agent pid %d after re-execution: %v", pid, err)
	}
	start := time.Now()
	time.Sleep(3 * time.Second)
	t1, err := lab.CPUTicks(pid)
	if err != nil {
		t.Fatal(err)
	}
	share := float64(t1-t0) / lab.ClockTicks / time.Since(start).Seconds()
	t.Logf("agent CPU over %v after recovery: %.1f%% of a core", time.Since(start).Round(time.Millisecond), 100*share)
	if share >= 0.20 {
		t.Errorf("agent uses %.0f%% of a core after recovering from zebra's restart", 100*share)
	}
	// A VIP added after the recovery reaches the router: the new zebra
	// connection works.
	e.service(t, "api", "203.0.113.11")
	waitRoute(t, e.router, "203.0.113.11/32", true, 15*time.Second)
	waitRoute(t, e.router, "203.0.113.10/32", true, 15*time.Second)
	// The recovery is counted (the agent serves metrics on :9472 in its
	// namespace).
	e.waitMetric(t, "vipspeaker_zebra_reconnects_total 1")

	// Zebra killed (its socket file stays) and down for 3 s: the agent
	// re-executes at once, the new process waits for zebra and says so,
	// the router keeps the routes meanwhile (graceful restart), and the
	// count carried across the re-executions reaches 2.
	if err := e.nfrr.Process("zebra").Kill(); err != nil {
		t.Fatal(err)
	}
	lab.Eventually(t, 15*time.Second, 50*time.Millisecond, func() error {
		if strings.Count(e.agent.Log(), "zebra connection lost: re-executing") < 2 || !strings.Contains(e.agent.Log(), "zebra is not up yet") {
			return fmt.Errorf("the agent has not re-executed and waited for the killed zebra")
		}
		return nil
	})
	time.Sleep(3 * time.Second)
	if err := e.nfrr.Restart("zebra"); err != nil {
		t.Fatal(err)
	}
	lab.Eventually(t, 30*time.Second, 50*time.Millisecond, func() error {
		if e.agent.Exited() {
			return fmt.Errorf("%w: the agent exited:\n%s", lab.ErrGiveUp, e.agent.Log())
		}
		if strings.Count(e.agent.Log(), "reconnected to zebra") < 2 {
			return fmt.Errorf("agent has not reconnected to the restarted zebra")
		}
		return nil
	})
	if err := e.rfrr.WaitEstablished("198.18.1.2", 30*time.Second); err != nil {
		t.Fatalf("%v\nagent log:\n%s", err, e.agent.Log())
	}
	e.waitMetric(t, "vipspeaker_zebra_reconnects_total 2")
	waitRoute(t, e.router, "203.0.113.10/32", true, 15*time.Second)
	waitRoute(t, e.router, "2001:db8:100::10/128", true, 15*time.Second)
	if gaps := w.finish(); len(gaps) > 0 {
		t.Errorf("the router's kernel lost VIP routes during the recoveries:\n%s", strings.Join(gaps, "\n"))
	}
}

// waitMetric waits until the agent's /metrics holds line.
func (e *env) waitMetric(t testing.TB, line string) {
	t.Helper()
	lab.Eventually(t, 10*time.Second, 100*time.Millisecond, func() error {
		out, err := e.node.Run(context.Background(), "curl", "-s", "--max-time", "2", "http://127.0.0.1:9472/metrics")
		if err != nil {
			return err
		}
		if !strings.Contains(out, line+"\n") {
			return fmt.Errorf("no %q in the agent's metrics", line)
		}
		return nil
	})
}

// Two routers send a default route: the node's kernel gets an ECMP default
// through zebra (GoBGP with use-multiple-paths hands both next hops to
// zebra); when one router shuts its session, the default follows the
// other.
func TestZebraModeECMPDefault(t *testing.T) {
	e := setup(t, 2)
	want := func(gws ...string) func() error {
		return func() error {
			r, ok, err := e.node.KernelRoute("0.0.0.0/0")
			if err != nil {
				return err
			}
			if !ok {
				return fmt.Errorf("node kernel has no default route")
			}
			var got []string
			for _, g := range r.Gateways {
				got = append(got, g.String())
			}
			slices.Sort(got)
			if !slices.Equal(got, gws) || r.Protocol != "bgp" {
				return fmt.Errorf("node default via %v proto %s, want via %v proto bgp", got, r.Protocol, gws)
			}
			return nil
		}
	}
	lab.Eventually(t, 15*time.Second, 50*time.Millisecond, want("198.18.1.1", "198.18.2.1"))
	if out, err := e.rfrrs[1].Vtysh("configure terminal", "router bgp 65100", "neighbor 198.18.2.2 shutdown"); err != nil {
		t.Fatalf("shut router2's session: %v\n%s", err, out)
	}
	lab.Eventually(t, 20*time.Second, 50*time.Millisecond, want("198.18.1.1"))
}

// The agent started before FRR's zebra waits for it, says why, and once
// zebra is up announces the VIPs zebra redistributes.
func TestZebraModeStartsBeforeZebra(t *testing.T) {
	lab.RequireFRR(t)
	bin := lab.Vipspeaker(t)
	l := lab.New(t)
	router, node := l.MustHost("router1"), l.MustHost("node")
	l.MustLink(router, "n1", []string{"198.18.1.1/30", "2001:db8:18:1::1/64"}, node, "eth0", []string{"198.18.1.2/30", "2001:db8:18:1::2/64"})
	rfrr := startRouterFRR(t, router, 1)
	a := newAgent(t, node, bin, gobgpConf(zebraSocket(node), 1))
	e := &env{node: node, svcDir: a.ServicesDir}
	e.service(t, "web", "203.0.113.10")
	agent := startAgent(t, a)
	lab.Eventually(t, 10*time.Second, 50*time.Millisecond, func() error {
		if !strings.Contains(agent.Log(), "zebra is not up yet") {
			return fmt.Errorf("agent has not said it waits for zebra")
		}
		return nil
	})
	time.Sleep(2 * time.Second)
	if agent.Exited() {
		t.Fatalf("agent exited while zebra was not up:\n%s", agent.Log())
	}
	if _, err := node.StartFRR(lab.FRRConfig{Daemons: []string{"zebra"}, Zebra: "log stdout informational\n"}); err != nil {
		t.Fatal(err)
	}
	if err := rfrr.WaitEstablished("198.18.1.2", 20*time.Second); err != nil {
		t.Fatal(err)
	}
	waitRoute(t, router, "203.0.113.10/32", true, 15*time.Second)
}

// BenchmarkVIPToRouterKernel measures, in the same run, the time from a
// Service's VIP being written to the agent's services folder until the
// router's kernel routes it: in zebra mode (the agent puts the address on
// kube-lb0, FRR's zebra redistributes it to the agent's GoBGP) and in
// native mode (no FRR on the node, the agent announces it itself). It
// reports p50 and p99 of each as zebra_p50_ms, zebra_p99_ms, native_p50_ms
// and native_p99_ms. Run with -benchtime=Nx, N ≤ 100.
func BenchmarkVIPToRouterKernel(b *testing.B) {
	ez := setupMode(b, 1, true)
	en := setupMode(b, 1, false)
	var zl, nl []time.Duration
	i := 0
	for b.Loop() {
		if i >= 100 {
			b.Fatal("at most 100 iterations (one /32 each in 203.0.113.1-100 and 203.0.113.101-200)")
		}
		for _, m := range []struct {
			e   *env
			vip string
			l   *[]time.Duration
		}{
			{ez, fmt.Sprintf("203.0.113.%d", 1+i), &zl},
			{en, fmt.Sprintf("203.0.113.%d", 101+i), &nl},
		} {
			start := time.Now()
			m.e.service(b, fmt.Sprintf("bench-%d", i), m.vip)
			if err := lab.Poll(20*time.Second, 2*time.Millisecond, func() error { return routed(m.e.router, m.vip+"/32") }); err != nil {
				b.Fatal(err)
			}
			*m.l = append(*m.l, time.Since(start))
		}
		i++
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	for _, m := range []struct {
		name string
		l    []time.Duration
	}{{"zebra", zl}, {"native", nl}} {
		if len(m.l) == 0 {
			continue
		}
		slices.Sort(m.l)
		b.ReportMetric(ms(m.l[len(m.l)/2]), m.name+"_p50_ms")
		b.ReportMetric(ms(m.l[(len(m.l)*99)/100]), m.name+"_p99_ms")
	}
}

func routed(h *lab.Host, prefix string) error {
	ok, err := hasRoute(h, prefix)
	if err == nil && !ok {
		err = fmt.Errorf("%s has no route to %s", h.Name(), prefix)
	}
	return err
}
