// Package zebra_test runs the real vipspeaker binary in zebra mode: FRR's
// zebra runs on the node namespace, GoBGP's zebra client (gobgp.conf
// [zebra.config]) takes the node's connected routes from it, and a global
// export policy lets only the VIP range out; FRR bgpd on a router
// namespace is the peer. Assertions are on the router's kernel and on the
// node's kernel.
//
// Topology: router n1 198.18.1.1/30 — node eth0 198.18.1.2/30. The node
// also has lan0 with 198.18.50.1/24 (a connected network that is not a VIP)
// and kube-lb0 carrying the VIPs. The agent's own VIP interface is set to
// vsp0 in vipspeaker.toml, so the agent's native feed announces nothing
// and every VIP at the router came through zebra.
package zebra_test

import (
	"context"
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
// (198.18.i.2, AS 65001), sending it a default route.
func routerBGPd(i int) string {
	return fmt.Sprintf(`frr defaults traditional
hostname router%[1]d
log stdout informational
!
router bgp 65100
 bgp router-id 198.18.%[1]d.1
 no bgp ebgp-requires-policy
 no bgp network import-check
 bgp graceful-restart
 neighbor 198.18.%[1]d.2 remote-as 65001
 neighbor 198.18.%[1]d.2 timers connect 1
 address-family ipv4 unicast
  neighbor 198.18.%[1]d.2 default-originate
 exit-address-family
!
`, i)
}

const neighborConf = `[[neighbors]]
  [neighbors.config]
    neighbor-address = "198.18.1.1"
    peer-as = 65100
  [neighbors.timers.config]
    connect-retry = 1
    hold-time = 9
    keepalive-interval = 3
    idle-hold-time-after-reset = 1
  [neighbors.graceful-restart.config]
    enabled = true
    restart-time = 30
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv4-unicast"
    [neighbors.afi-safis.mp-graceful-restart.config]
      enabled = true
`

// gobgpConf is the node's gobgp.conf; zsock "" leaves zebra out (native
// mode).
func gobgpConf(zsock string, routers int) string {
	zebra := ""
	if zsock != "" {
		zebra = fmt.Sprintf(`[zebra.config]
  enabled = true
  url = "unix:%s"
  redistribute-route-type-list = ["connect"]
  version = 6
  software-name = "frr8.4"
`, zsock)
	}
	var neighbors string
	for i := 1; i <= routers; i++ {
		neighbors += strings.ReplaceAll(neighborConf, "198.18.1.1", fmt.Sprintf("198.18.%d.1", i))
	}
	return fmt.Sprintf(`[global.config]
  as = 65001
  router-id = "198.18.1.2"

[global.use-multiple-paths.config]
  enabled = true

%s
[[defined-sets.prefix-sets]]
  prefix-set-name = "vips"
  [[defined-sets.prefix-sets.prefix-list]]
    ip-prefix = "203.0.113.0/24"
    masklength-range = "32..32"

[[policy-definitions]]
  name = "only-vips"
  [[policy-definitions.statements]]
    name = "vips"
    [policy-definitions.statements.conditions.match-prefix-set]
      prefix-set = "vips"
    [policy-definitions.statements.actions]
      route-disposition = "accept-route"

[global.apply-policy.config]
  export-policy-list = ["only-vips"]
  default-export-policy = "reject-route"

%s`, zebra, neighbors)
}

type env struct {
	l       *lab.Lab
	router  *lab.Host // router1
	node    *lab.Host
	rfrr    *lab.FRR // router1's
	rfrrs   []*lab.FRR
	nfrr    *lab.FRR
	agent   *lab.Process
	confDir string
	svcDir  string
}

// setup builds the node and routers router1..routerN (N ≥ 1), node eth(i-1)
// linked to router i.
func setup(t testing.TB, routers int) *env {
	return setupMode(t, routers, true)
}

// setupMode is setup; without zebra the node runs no FRR and the agent
// announces the VIPs of its Services natively.
func setupMode(t testing.TB, routers int, zebra bool) *env {
	t.Helper()
	nstest.RequireRoot(t)
	if err := lab.HaveFRR(); err != nil {
		nstest.Skip(t, "%v", err)
	}
	bin, err := lab.BuildBinary("./cmd/vipspeaker")
	if err != nil {
		t.Fatalf("build vipspeaker: %v", err)
	}
	l := lab.New(t)
	e := &env{l: l, node: l.MustHost("node")}
	var rhosts []*lab.Host
	for i := 1; i <= routers; i++ {
		r := l.MustHost(fmt.Sprintf("router%d", i))
		l.MustLink(r, "n1", []string{fmt.Sprintf("198.18.%d.1/30", i)}, e.node, fmt.Sprintf("eth%d", i-1), []string{fmt.Sprintf("198.18.%d.2/30", i)})
		rhosts = append(rhosts, r)
	}
	e.router = rhosts[0]
	for _, c := range [][]string{
		{"ip", "link", "add", "kube-lb0", "type", "ifb"},
		{"ip", "link", "set", "kube-lb0", "up"},
		{"ip", "link", "add", "lan0", "type", "ifb"},
		{"ip", "link", "set", "lan0", "up"},
		{"ip", "addr", "add", "198.18.50.1/24", "dev", "lan0"},
	} {
		e.node.MustRun(c...)
	}
	if zebra {
		if e.nfrr, err = e.node.StartFRR(lab.FRRConfig{Daemons: []string{"zebra"}, Zebra: "hostname node\nlog stdout informational\n"}); err != nil {
			t.Fatal(err)
		}
	}
	var rfrrs []*lab.FRR
	for i, r := range rhosts {
		f, err := r.StartFRR(lab.FRRConfig{Zebra: "log stdout informational\n", BGPd: routerBGPd(i + 1)})
		if err != nil {
			t.Fatal(err)
		}
		rfrrs = append(rfrrs, f)
	}
	e.rfrr, e.rfrrs = rfrrs[0], rfrrs
	base := filepath.Join(l.Dir(), "node")
	e.confDir = filepath.Join(base, "config")
	svcDir, runDir := filepath.Join(base, "services"), filepath.Join(base, "run")
	e.svcDir = svcDir
	for _, d := range []string{e.confDir, svcDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	zsock := ""
	if zebra {
		zsock = filepath.Join("/var/run/frr", e.node.NetnsName(), "zserv.api")
	}
	write(t, filepath.Join(e.confDir, "vipspeaker.toml"), "[interface]\nname = \"vsp0\"\nkind = \"ifb\"\n")
	write(t, filepath.Join(e.confDir, "gobgp.conf"), gobgpConf(zsock, routers))
	if e.agent, err = e.node.Start("vipspeaker", []string{bin, "run", "--config-dir", e.confDir,
		"--services-dir", svcDir, "--run-dir", runDir, "--node-name", "node", "--log-level", "info"}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.agent.Signal(syscall.SIGCONT) })
	for i, f := range rfrrs {
		if err := f.WaitEstablished(fmt.Sprintf("198.18.%d.2", i+1), 20*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

func write(t testing.TB, p, s string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
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

func TestZebraModeRedistributesOnlyVIPsAndImports(t *testing.T) {
	e := setup(t, 1)
	e.node.MustRun("ip", "addr", "add", "203.0.113.10/32", "dev", "kube-lb0")
	waitRoute(t, e.router, "203.0.113.10/32", true, 15*time.Second)
	// The connected network that is not a VIP never leaves the node.
	time.Sleep(time.Second)
	if ok, err := hasRoute(e.router, "198.18.50.0/24"); err != nil || ok {
		t.Errorf("router has a route to the node's non-VIP network 198.18.50.0/24 (%v, %v)", ok, err)
	}
	// The router's default route reaches the node's kernel through zebra.
	r, ok, err := e.node.KernelRoute("0.0.0.0/0")
	if err != nil || !ok {
		lab.Eventually(t, 10*time.Second, 50*time.Millisecond, func() error {
			r, ok, err = e.node.KernelRoute("0.0.0.0/0")
			if err == nil && !ok {
				err = fmt.Errorf("node kernel has no default route")
			}
			return err
		})
	}
	t.Logf("node default route: %+v", r)
	// Removing the VIP withdraws it.
	e.node.MustRun("ip", "addr", "del", "203.0.113.10/32", "dev", "kube-lb0")
	waitRoute(t, e.router, "203.0.113.10/32", false, 15*time.Second)
}

func TestZebraRestartRecovers(t *testing.T) {
	e := setup(t, 1)
	e.node.MustRun("ip", "addr", "add", "203.0.113.10/32", "dev", "kube-lb0")
	waitRoute(t, e.router, "203.0.113.10/32", true, 15*time.Second)
	lab.Eventually(t, 10*time.Second, 50*time.Millisecond, func() error {
		if !strings.Contains(e.agent.Log(), "watching zebra's socket") {
			return fmt.Errorf("the agent's zebra guard has not started")
		}
		return nil
	})

	// The router must keep the VIP throughout (graceful restart).
	stop := make(chan struct{})
	lost := make(chan string, 1)
	go func() {
		for {
			select {
			case <-stop:
				close(lost)
				return
			case <-time.After(20 * time.Millisecond):
			}
			if ok, err := hasRoute(e.router, "203.0.113.10/32"); err == nil && !ok {
				select {
				case lost <- time.Now().Format(time.StampMilli):
				default:
				}
			}
		}
	}()
	if err := e.nfrr.Restart("zebra"); err != nil {
		t.Fatal(err)
	}
	// The agent notices and restarts its speaker under graceful restart.
	lab.Eventually(t, 20*time.Second, 100*time.Millisecond, func() error {
		if !strings.Contains(e.agent.Log(), "reconnected to zebra") {
			return fmt.Errorf("agent has not reconnected to zebra")
		}
		return nil
	})
	// A VIP added after zebra's restart reaches the router: the new
	// connection works.
	e.node.MustRun("ip", "addr", "add", "203.0.113.11/32", "dev", "kube-lb0")
	waitRoute(t, e.router, "203.0.113.11/32", true, 15*time.Second)
	waitRoute(t, e.router, "203.0.113.10/32", true, 15*time.Second)
	time.Sleep(time.Second)
	close(stop)
	if at, ok := <-lost; ok {
		t.Errorf("the router lost the VIP 203.0.113.10/32 during the recovery (at %s)", at)
	}
	// The restart is counted (the agent serves metrics on :9472 in its
	// namespace).
	lab.Eventually(t, 5*time.Second, 100*time.Millisecond, func() error {
		out, err := e.node.Run(context.Background(), "curl", "-s", "--max-time", "2", "http://127.0.0.1:9472/metrics")
		if err != nil {
			return err
		}
		if !strings.Contains(out, "vipspeaker_zebra_reconnects_total 1") {
			return fmt.Errorf("no vipspeaker_zebra_reconnects_total 1 in the agent's metrics")
		}
		return nil
	})
	// GoBGP v4.8.0 leaves the old zebra client spinning after the speaker
	// restart (see bgp.ZebraRecovery); the CPU is not asserted here.
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
// zebra is up announces the VIPs it redistributes.
func TestZebraModeStartsBeforeZebra(t *testing.T) {
	nstest.RequireRoot(t)
	if err := lab.HaveFRR(); err != nil {
		nstest.Skip(t, "%v", err)
	}
	bin, err := lab.BuildBinary("./cmd/vipspeaker")
	if err != nil {
		t.Fatalf("build vipspeaker: %v", err)
	}
	l := lab.New(t)
	router, node := l.MustHost("router1"), l.MustHost("node")
	l.MustLink(router, "n1", []string{"198.18.1.1/30"}, node, "eth0", []string{"198.18.1.2/30"})
	node.MustRun("ip", "link", "add", "kube-lb0", "type", "ifb")
	node.MustRun("ip", "link", "set", "kube-lb0", "up")
	node.MustRun("ip", "addr", "add", "203.0.113.10/32", "dev", "kube-lb0")
	rfrr, err := router.StartFRR(lab.FRRConfig{Zebra: "log stdout informational\n", BGPd: routerBGPd(1)})
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(l.Dir(), "node")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "vipspeaker.toml"), "[interface]\nname = \"vsp0\"\nkind = \"ifb\"\n")
	write(t, filepath.Join(dir, "gobgp.conf"), gobgpConf(filepath.Join("/var/run/frr", node.NetnsName(), "zserv.api"), 1))
	agent, err := node.Start("vipspeaker", []string{bin, "run", "--config-dir", dir, "--services-dir", dir,
		"--run-dir", filepath.Join(dir, "run"), "--node-name", "node", "--log-level", "info"})
	if err != nil {
		t.Fatal(err)
	}
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
// VIP appearing on the node until the router's kernel routes it: in zebra
// mode (address added to kube-lb0, redistributed by FRR's zebra) and in
// native mode (a Service manifest written to the agent's services folder,
// announced by the agent itself). Run with -benchtime=Nx, N ≤ 100.
func BenchmarkVIPToRouterKernel(b *testing.B) {
	ez := setupMode(b, 1, true)
	en := setupMode(b, 1, false)
	var zl, nl []time.Duration
	i := 0
	for b.Loop() {
		if i >= 100 {
			b.Fatal("at most 100 iterations (one /32 each in 203.0.113.0/24 and 203.0.113.128/25)")
		}
		vz := fmt.Sprintf("203.0.113.%d/32", i+1)
		start := time.Now()
		ez.node.MustRun("ip", "addr", "add", vz, "dev", "kube-lb0")
		if err := lab.Poll(20*time.Second, 2*time.Millisecond, func() error { return routed(ez.router, vz) }); err != nil {
			b.Fatal(err)
		}
		zl = append(zl, time.Since(start))

		vn := fmt.Sprintf("203.0.113.%d", 101+i%100)
		start = time.Now()
		write(b, filepath.Join(en.svcDir, fmt.Sprintf("bench-%d.yaml", i)), fmt.Sprintf(`apiVersion: v1
kind: Service
metadata:
  name: bench-%d
  namespace: demo
  annotations:
    vipspeaker.io/addresses: %q
spec:
  type: LoadBalancer
  ports:
  - port: 80
`, i, vn))
		if err := lab.Poll(20*time.Second, 2*time.Millisecond, func() error { return routed(en.router, vn+"/32") }); err != nil {
			b.Fatal(err)
		}
		nl = append(nl, time.Since(start))
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
		b.ReportMetric(ms(m.l[len(m.l)/2]), m.name+"-p50-ms")
		b.ReportMetric(ms(m.l[(len(m.l)*99)/100]), m.name+"-p99-ms")
	}
}

func routed(h *lab.Host, prefix string) error {
	ok, err := hasRoute(h, prefix)
	if err == nil && !ok {
		err = fmt.Errorf("%s has no route to %s", h.Name(), prefix)
	}
	return err
}
