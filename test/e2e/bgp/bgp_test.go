package bgp_test

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vipspeaker/vipspeaker/test/lab"
)

// An IPv4 and an IPv6 VIP of a Service reach the router's kernel over one
// eBGP session (IPv4 transport, both families), with the node as next hop,
// and leave it when the Service goes.
func TestVIPReachesAndLeavesRouterKernel(t *testing.T) {
	t.Parallel()
	tp, n := announceWeb(t, nil, false)

	tp.waitKernelRoute(t, "203.0.113.10/32", n.Addr4)
	// a real IPv6 next hop of the node, not ::ffff:198.18.1.2
	tp.waitKernelRoute(t, "2001:db8:100::10/128", n.Addr6)
	paths, err := tp.frrPaths("ipv4", "203.0.113.10/32")
	if err != nil || len(paths) != 1 || paths[0].ASPath != "65001" {
		t.Fatalf("FRR's path to 203.0.113.10: %+v, %v; want one path with AS path 65001", paths, err)
	}

	// a second Service adds one more VIP; removing the first takes both of
	// its VIPs away and leaves the other
	n.service(t, "dns", "", "203.0.113.11")
	tp.waitKernelRoute(t, "203.0.113.11/32", n.Addr4)
	n.removeService(t, "web")
	tp.waitNoKernelRoute(t, "203.0.113.10/32")
	tp.waitNoKernelRoute(t, "2001:db8:100::10/128")
	if _, ok := tp.kernelRoute("203.0.113.11/32"); !ok {
		t.Fatal("203.0.113.11 left the router when another Service was removed")
	}

	// the stock gobgp CLI works on the node's socket
	if _, cli, err := lab.GoBGPBinaries(); err == nil {
		out := runCtx(t, n.Host, cli, "--target", "unix://"+n.RunDir+"/gobgp.sock", "global", "rib")
		if !strings.Contains(out, "203.0.113.11/32") {
			t.Errorf("gobgp CLI on the node's socket does not show the VIP:\n%s", out)
		}
	} else {
		t.Logf("gobgp CLI not available: %v", err)
	}
}

// communityPolicy exports every VIP, setting MED med on those with
// community 65000:100 ("gold"); extra goes at the statement's end.
func communityPolicy(med int, extra string) string {
	return "\n" + lab.GoBGPPolicy{Name: "vips", Default: "accept-route",
		CommunitySets: []lab.GoBGPSet{{Name: "gold", Members: []string{"65000:100"}}},
		Statements: []lab.GoBGPStatement{{Name: "gold", CommunitySet: "gold", MatchOptions: "any", Disposition: "accept-route",
			SetMED: fmt.Sprint(med), Extra: extra}},
	}.String()
}

// A community from the Service annotation is matched by a policy in
// gobgp.conf; changing the policy reaches FRR with the session untouched.
func TestPolicyReloadWithoutSessionReset(t *testing.T) {
	t.Parallel()
	tp, n := newNode(t)
	tp.startFRR(t, nil, ebgp, "")
	n.writeConf(t, n.gobgpConf(65001, "", communityPolicy(50, ""), false))
	n.service(t, "gold", "65000:100", "203.0.113.10")
	n.service(t, "plain", "", "203.0.113.11")
	n.start(t)
	tp.waitEstablished(t, n)
	tp.waitKernelRoute(t, "203.0.113.10/32", n.Addr4)

	want := func(prefix string, ok func(frrPath) bool, what string) {
		t.Helper()
		lab.Eventually(t, 10*time.Second, 10*time.Millisecond, func() error {
			ps, err := tp.frrPaths("ipv4", prefix)
			if err != nil || len(ps) == 0 {
				return fmt.Errorf("no path to %s at FRR: %v", prefix, err)
			}
			if !ok(ps[0]) {
				return fmt.Errorf("%s at FRR: %+v, want %s", prefix, ps[0], what)
			}
			return nil
		})
	}
	want("203.0.113.10/32", func(p frrPath) bool { return p.MED == 50 && p.Community == "65000:100" }, "MED 50, community 65000:100")
	want("203.0.113.11/32", func(p frrPath) bool { return p.MED == 0 }, "no MED (no community)")
	before := tp.session(t, n)

	// new MED and an AS-path prepend, by reload
	start := time.Now()
	n.writeConf(t, n.gobgpConf(65001, "", communityPolicy(70, `      [policy-definitions.statements.actions.bgp-actions.set-as-path-prepend]
        as = "65001"
        repeat-n = 2
`), false))
	want("203.0.113.10/32", func(p frrPath) bool { return p.MED == 70 && p.ASPath == "65001 65001 65001" }, "MED 70, AS path 65001 65001 65001")
	t.Logf("policy change (file write → FRR's table, including the agent's 200 ms file-watch debounce): %v", time.Since(start))
	want("203.0.113.11/32", func(p frrPath) bool { return p.MED == 0 && p.ASPath == "65001" }, "untouched")
	if after := tp.session(t, n); after.Established != before.Established || after.Dropped != before.Dropped || after.State != "Established" {
		t.Fatalf("policy reload touched the session: before %+v, after %+v", before, after)
	}
	if _, ok := tp.kernelRoute("203.0.113.10/32"); !ok {
		t.Fatal("route left the router's kernel during a policy reload")
	}
}

// Each kind of bad gobgp.conf is refused with file:line and the reason; the
// running session and the announced attributes stay as they were.
func TestBadConfigRejectedSessionUnchanged(t *testing.T) {
	t.Parallel()
	tp, n := newNode(t)
	tp.startFRR(t, nil, ebgp, "")
	good := n.gobgpConf(65001, "", communityPolicy(50, ""), false)
	n.writeConf(t, good)
	n.service(t, "gold", "65000:100", "203.0.113.10")
	n.start(t)
	tp.waitEstablished(t, n)
	lab.Eventually(t, 10*time.Second, 20*time.Millisecond, func() error {
		ps, err := tp.frrPaths("ipv4", "203.0.113.10/32")
		if err != nil || len(ps) == 0 || ps[0].MED != 50 {
			return fmt.Errorf("want MED 50 at FRR, have %+v %v", ps, err)
		}
		return nil
	})
	before := tp.session(t, n)
	line := func(sub string) int {
		for i, l := range strings.Split(good, "\n") {
			if strings.Contains(l, sub) {
				return i + 1
			}
		}
		t.Fatalf("%q not in config", sub)
		return 0
	}
	for _, tc := range []struct {
		name, conf, want string
	}{
		{"toml syntax", strings.Replace(good, "[[policy-definitions]]", "[[policy-definitions]", 1),
			fmt.Sprintf("gobgp.conf:%d: invalid TOML", line("[[policy-definitions]]"))},
		{"unknown key", strings.Replace(good, "peer-as = 65000", "peer-asn = 65000", 1),
			fmt.Sprintf(`gobgp.conf:%d: unknown key \"peer-asn\"`, line("peer-as = 65000"))},
		{"undefined set", strings.Replace(good, `community-set = "gold"`, `community-set = "silver"`, 1),
			fmt.Sprintf(`gobgp.conf:%d: community-set \"silver\" is not defined`, line(`community-set = "gold"`))},
		{"undefined policy", strings.Replace(good, `export-policy-list = ["vips"]`, `export-policy-list = ["vipz"]`, 1),
			fmt.Sprintf(`gobgp.conf:%d: policy \"vipz\" is not defined`, line(`export-policy-list`))},
		{"invalid address", strings.Replace(good, n.Peer4, "198.18.1.256", 1),
			fmt.Sprintf("gobgp.conf:%d: ", line("neighbor-address"))},
		{"AS 0", strings.Replace(good, "as = 65001", "as = 0", 1),
			fmt.Sprintf("gobgp.conf:%d: global.config.as: AS 0", line("as = 65001"))},
	} {
		n.writeConf(t, tc.conf)
		n.waitLog(t, "gobgp.conf refused", tc.want)
	}
	time.Sleep(500 * time.Millisecond)
	if after := tp.session(t, n); after.Established != before.Established || after.Dropped != before.Dropped || after.State != "Established" {
		t.Fatalf("a refused config touched the session: before %+v, after %+v", before, after)
	}
	if ps, err := tp.frrPaths("ipv4", "203.0.113.10/32"); err != nil || len(ps) == 0 || ps[0].MED != 50 {
		t.Fatalf("after refused configs FRR has %+v %v, want the route with MED 50", ps, err)
	}
	// the good config still applies afterwards
	n.writeConf(t, strings.Replace(good, `set-med = "50"`, `set-med = "60"`, 1))
	lab.Eventually(t, 10*time.Second, 20*time.Millisecond, func() error {
		ps, err := tp.frrPaths("ipv4", "203.0.113.10/32")
		if err != nil || len(ps) == 0 || ps[0].MED != 60 {
			return fmt.Errorf("want MED 60 at FRR, have %+v %v", ps, err)
		}
		return nil
	})
}

// kernelWatch polls the router's kernel for prefixes every 10 ms and
// remembers when each was first seen missing.
type kernelWatch struct {
	mu    sync.Mutex
	gone  map[string]time.Duration
	polls int
	stop  func()
}

func (tp *topo) watchKernel(prefixes ...string) *kernelWatch {
	w := &kernelWatch{gone: map[string]time.Duration{}}
	w.stop = tp.Router.WatchKernelRoutes(10*time.Millisecond, func(since time.Duration, rs []lab.KernelRoute) {
		have := map[string]bool{}
		for _, r := range rs {
			have[r.Dst.String()] = true
		}
		w.mu.Lock()
		defer w.mu.Unlock()
		w.polls++
		for _, p := range prefixes {
			if _, seen := w.gone[p]; !seen && !have[p] {
				w.gone[p] = since
			}
		}
	})
	return w
}

func (w *kernelWatch) Stop() map[string]time.Duration {
	w.stop()
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.gone
}

func (w *kernelWatch) goneAfter(p string) (time.Duration, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	d, ok := w.gone[p]
	return d, ok
}

// bfdTopo: two nodes peering with FRR, the first with BFD (100 ms × 3),
// the second with the hold timer only (3 s), each announcing one VIP.
func bfdTopo(t testing.TB) (tp *topo, fast, slow *node) {
	tp = newTopo(t, 2)
	fast, slow = tp.nodes[0], tp.nodes[1]
	tp.startFRR(t, nil, func(n *node) frrNeighbor {
		if n == fast {
			return frrNeighbor{as: 65001, extra: []string{"neighbor %[1]s bfd", "neighbor %[1]s bfd profile fast"}}
		}
		return frrNeighbor{as: 65001, extra: []string{"neighbor %[1]s timers 1 3"}}
	}, fastBFD)
	fast.writeConf(t, fast.gobgpConf(65001, `  [neighbors.bfd.config]
    enabled = true
    desired-minimum-tx-interval = 100000
    required-minimum-receive = 100000
    detection-multiplier = 3
`, "", false))
	slow.writeConf(t, strings.Replace(strings.Replace(slow.gobgpConf(65001, "", "", false),
		"hold-time = 9", "hold-time = 3", 1), "keepalive-interval = 3", "keepalive-interval = 1", 1))
	fast.service(t, "web", "", "203.0.113.10")
	slow.service(t, "web", "", "203.0.113.11")
	fast.start(t)
	slow.start(t)
	return tp, fast, slow
}

// freezeBoth waits until both routes and the BFD session are up, freezes
// both agents at the same moment (SIGSTOP) and returns how long each route
// stayed in the router's kernel; the agents are thawed before it returns.
func freezeBoth(t testing.TB, tp *topo, fast, slow *node) (bfd, hold time.Duration) {
	t.Helper()
	tp.waitEstablished(t, fast)
	tp.waitEstablished(t, slow)
	tp.waitKernelRoute(t, "203.0.113.10/32", fast.Addr4)
	tp.waitKernelRoute(t, "203.0.113.11/32", slow.Addr4)
	lab.Eventually(t, 20*time.Second, 50*time.Millisecond, func() error {
		out, err := tp.FRR.Vtysh("show bfd peers brief")
		if err != nil || !strings.Contains(out, fast.Addr4) || !strings.Contains(strings.ToLower(out), "up") {
			return fmt.Errorf("BFD session with %s not up at FRR:\n%s %v", fast.Addr4, out, err)
		}
		return nil
	})

	w := tp.watchKernel("203.0.113.10/32", "203.0.113.11/32")
	for _, n := range []*node{fast, slow} {
		if err := n.Proc.Signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
	}
	defer func() {
		for _, n := range []*node{fast, slow} {
			_ = n.Proc.Signal(syscall.SIGCONT)
		}
	}()
	lab.Eventually(t, 8*time.Second, 50*time.Millisecond, func() error {
		for _, p := range []string{"203.0.113.10/32", "203.0.113.11/32"} {
			if _, ok := w.goneAfter(p); !ok {
				return fmt.Errorf("%s still in the router's kernel", p)
			}
		}
		return nil
	})
	gone := w.Stop()
	return gone["203.0.113.10/32"], gone["203.0.113.11/32"]
}

// fastBFD is bfdd's profile "fast": 100 ms × 3.
const fastBFD = lab.FRRFastBFD

// A frozen agent (SIGSTOP) is noticed by BFD: FRR drops its route in well
// under a second. Measured in the same test: a second node without BFD,
// frozen at the same moment, is noticed only at hold-timer expiry (3 s).
func TestBFDDetectsFrozenAgent(t *testing.T) {
	tp, fast, slow := bfdTopo(t)
	bfd, hold := freezeBoth(t, tp, fast, slow)
	t.Logf("frozen agent noticed: with BFD (100 ms x3) after %v; hold timer only (3 s) after %v", bfd, hold)
	if bfd >= time.Second {
		t.Errorf("with BFD the route left the router's kernel after %v, want < 1s", bfd)
	}
	if hold <= bfd {
		t.Errorf("without BFD the route left after %v, not later than with BFD (%v): the comparison is meaningless", hold, bfd)
	}
}

// BenchmarkBFDvsHoldTimer repeats the freeze b.N times (-benchtime 10x):
// after each, both agents are thawed, their sessions come back and the
// routes return before the next freeze. It reports p50/p99 of the time the
// route stayed in the router's kernel with BFD and with the hold timer.
func BenchmarkBFDvsHoldTimer(b *testing.B) {
	tp, fast, slow := bfdTopo(b)
	var bfd, hold []time.Duration
	for b.Loop() {
		f, h := freezeBoth(b, tp, fast, slow)
		b.Logf("freeze %d: BFD %v, hold timer %v", len(bfd)+1, f, h)
		bfd, hold = append(bfd, f), append(hold, h)
	}
	ms := func(d []time.Duration, q int) float64 {
		s := slices.Clone(d)
		slices.Sort(s)
		return float64(s[max(0, (len(s)*q+99)/100-1)].Microseconds()) / 1000 // nearest rank
	}
	b.ReportMetric(ms(bfd, 50), "bfd-p50-ms")
	b.ReportMetric(ms(bfd, 99), "bfd-p99-ms")
	b.ReportMetric(ms(hold, 50), "hold-p50-ms")
	b.ReportMetric(ms(hold, 99), "hold-p99-ms")
	b.ReportMetric(0, "ns/op")
}

// kill -9 and restart of the agent with graceful restart on both sides:
// the route never leaves the router's kernel (polled every 10 ms), and ends
// up fresh (not stale) once the new agent has sent its routes.
func TestGracefulRestartKill9KeepsRoute(t *testing.T) {
	t.Parallel()
	tp, n := announceWeb(t, []string{"bgp graceful-restart", "bgp graceful-restart restart-time 30"}, true)
	tp.waitKernelRoute(t, "203.0.113.10/32", n.Addr4)
	tp.waitKernelRoute(t, "2001:db8:100::10/128", n.Addr6)
	before := tp.session(t, n)

	w := tp.watchKernel("203.0.113.10/32", "2001:db8:100::10/128")
	if err := n.Proc.Kill(); err != nil {
		t.Fatal(err)
	}
	// FRR notices the dead session (the kernel closed the socket) and keeps
	// the routes as stale
	lab.Eventually(t, 10*time.Second, 20*time.Millisecond, func() error {
		if s := tp.session(t, n); s.State == "Established" && s.Established == before.Established {
			return fmt.Errorf("FRR has not noticed the killed agent yet")
		}
		return nil
	})
	n.start(t)
	tp.waitNewSession(t, n, before.Established)
	tp.waitFresh(t, "203.0.113.10/32", "the new agent")
	time.Sleep(2 * time.Second) // past FRR's End-of-RIB processing
	gone := w.Stop()
	if len(gone) > 0 {
		t.Fatalf("routes left the router's kernel during the restart: %v (after kill)", gone)
	}
	t.Logf("polled the router's kernel %d times during kill -9 and restart; the routes never left", w.polls)
}

// Two nodes announcing the same VIP give the router an ECMP route through
// both.
func TestTwoNodesGiveECMP(t *testing.T) {
	t.Parallel()
	tp := newTopo(t, 2)
	tp.startFRR(t, nil, ebgp, "")
	for _, n := range tp.nodes {
		n.writeConf(t, n.gobgpConf(65001, "", "", false))
		n.service(t, "web", "", "203.0.113.10")
		n.start(t)
	}
	tp.waitKernelRoute(t, "203.0.113.10/32", tp.nodes[0].Addr4, tp.nodes[1].Addr4)
	tp.nodes[1].removeService(t, "web")
	tp.waitKernelRoute(t, "203.0.113.10/32", tp.nodes[0].Addr4)
}
