package kube_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vipspeaker/vipspeaker/kube"
	"github.com/vipspeaker/vipspeaker/test/bench/report"
	"github.com/vipspeaker/vipspeaker/test/lab"
)

// logLine is one line of an agent's log (slog text format).
type logLine struct {
	at  time.Time
	msg string
	raw string
}

func agentLog(p *lab.Process) []logLine {
	var out []logLine
	sc := bufio.NewScanner(strings.NewReader(p.Log()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		ts, ok := strings.CutPrefix(l, "time=")
		if !ok {
			continue
		}
		ts, _, _ = strings.Cut(ts, " ")
		at, err := time.Parse(time.RFC3339Nano, ts)
		if err != nil {
			continue
		}
		msg := ""
		if _, m, ok := strings.Cut(l, ` msg="`); ok {
			msg, _, _ = strings.Cut(m, `"`)
		} else if _, m, ok := strings.Cut(l, " msg="); ok {
			msg, _, _ = strings.Cut(m, " ")
		}
		out = append(out, logLine{at: at, msg: msg, raw: l})
	}
	return out
}

// firstAfter returns the time of the first line with msg (and, when
// given, containing sub) in [from, to], or the zero time.
func firstAfter(lines []logLine, msg, sub string, from, to time.Time) time.Time {
	for _, l := range lines {
		if !l.at.Before(from) && !l.at.After(to) && l.msg == msg && (sub == "" || strings.Contains(l.raw, sub)) {
			return l.at
		}
	}
	return time.Time{}
}

// pct is report.Percentile (nearest rank, as every figure of the report).
func pct(ds []time.Duration, p int) time.Duration { return report.Percentile(ds, float64(p)) }

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// round is one Service's way from creation to the route, seen by the test.
type round struct {
	name                 string
	start, status, ended time.Time
}

// breakdown splits the rounds' latency with the agents' logs (millisecond
// resolution), each from the Service's creation: until the test saw the
// status; until the last node logged "VIP table applied"; until the last
// node's speaker logged "vip paths updated" (GoBGP has the path); until the
// route had every next hop in the router's kernel (UPDATE, FRR's bgpd and
// zebra). It reports the medians.
func (e *env) breakdown(b *testing.B, rounds []round) {
	logs := map[string][]logLine{}
	for n, p := range e.agents {
		logs[n] = agentLog(p)
	}
	var status, table, bgp, route []time.Duration
	for _, r := range rounds {
		var lastTable, lastBGP time.Time
		ok := true
		for _, ls := range logs {
			tt := firstAfter(ls, "VIP table applied", "", r.start, r.ended)
			tb := firstAfter(ls, "vip paths updated", "", r.start, r.ended)
			if tt.IsZero() || tb.IsZero() {
				ok = false
				break
			}
			lastTable, lastBGP = maxTime(lastTable, tt), maxTime(lastBGP, tb)
		}
		if !ok {
			continue
		}
		status = append(status, r.status.Sub(r.start))
		table = append(table, lastTable.Sub(r.start))
		bgp = append(bgp, lastBGP.Sub(r.start))
		route = append(route, r.ended.Sub(r.start))
	}
	if len(status) == 0 {
		b.Logf("no breakdown: the agents' logs did not match")
		return
	}
	b.ReportMetric(ms(pct(table, 50)), "to_vip_table_p50_ms")
	b.ReportMetric(ms(pct(bgp, 50)), "to_gobgp_p50_ms")
	b.ReportMetric(float64(len(status)), "breakdown_n")
	b.Logf("breakdown over %d Services, from the create call (p50/p99 ms): status seen %.1f/%.1f; VIP table applied on the last node %.1f/%.1f; GoBGP path on the last node %.1f/%.1f; route with all next hops in FRR's kernel %.1f/%.1f",
		len(status), ms(pct(status, 50)), ms(pct(status, 99)), ms(pct(table, 50)), ms(pct(table, 99)),
		ms(pct(bgp, 50)), ms(pct(bgp, 99)), ms(pct(route, 50)), ms(pct(route, 99)))
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// timeToRoute creates one Service (opts) and waits until its first address
// has a route with all three nodes as next hops in the router's kernel.
func (e *env) timeToRoute(b *testing.B, name string, opts ...svcOpt) round {
	r := round{name: name, start: time.Now()}
	e.createService(b, name, opts...)
	var vip netip.Addr
	err := lab.Poll(30*time.Second, 2*time.Millisecond, func() error {
		if !vip.IsValid() {
			s, err := e.cs.CoreV1().Services(ns).Get(context.Background(), name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			a := kube.Ingress(s)
			if len(a) == 0 {
				return fmt.Errorf("%s has no address yet", name)
			}
			vip = a[0]
			r.status = time.Now()
		}
		if n := e.routeHops(vip); n != 3 {
			return fmt.Errorf("route for %s has %d next hops", vip, n)
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	r.ended = time.Now()
	return r
}

// routeHops returns how many next hops the router's kernel route to vip
// (host prefix) has; 0 when there is none.
func (e *env) routeHops(vip netip.Addr) int {
	fam := netlink.FAMILY_V4
	if vip.Is6() {
		fam = netlink.FAMILY_V6
	}
	rs, err := e.router.Netlink().RouteListFiltered(fam, &netlink.Route{Dst: netipToIPNet(netip.PrefixFrom(vip, vip.BitLen()))}, netlink.RT_FILTER_DST)
	if err != nil || len(rs) == 0 {
		return 0
	}
	if len(rs[0].MultiPath) > 0 {
		return len(rs[0].MultiPath)
	}
	return 1
}

// createBulk creates n LoadBalancer Services <prefix>-<i> in pool, port
// 80, clients at a time; spec, if not nil, changes each spec.
func (e *env) createBulk(b *testing.B, n, clients int, prefix, pool string, spec func(*corev1.ServiceSpec)) {
	b.Helper()
	e.createBulkRange(b, 0, n, clients, prefix, pool, spec)
}

// createBulkRange creates Services <prefix>-<from>..<prefix>-<to-1> as
// createBulk does.
func (e *env) createBulkRange(b *testing.B, from, to, clients int, prefix, pool string, spec func(*corev1.ServiceSpec)) {
	b.Helper()
	class := kube.LoadBalancerClass
	var g errgroup.Group
	g.SetLimit(clients)
	for i := from; i < to; i++ {
		g.Go(func() error {
			svc := &corev1.Service{
				ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-%d", prefix, i), Namespace: ns, Annotations: map[string]string{kube.AnnotationPool: pool}},
				Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, LoadBalancerClass: &class,
					Ports: []corev1.ServicePort{{Port: 80, Protocol: corev1.ProtocolTCP}}},
			}
			if spec != nil {
				spec(&svc.Spec)
			}
			_, err := e.cs.CoreV1().Services(ns).Create(context.Background(), svc, metav1.CreateOptions{})
			return err
		})
	}
	if err := g.Wait(); err != nil {
		b.Fatalf("creating %d Services: %v", to-from, err)
	}
}

// waitAllRouted polls routed (how many of the n VIPs the router routes to
// all nodes) until it reaches n, then reports create_s (created),
// all_announced_s (since start) and services_per_s.
func waitAllRouted(b *testing.B, n int, start time.Time, created, timeout, interval time.Duration, routed func() (int, error)) {
	b.Helper()
	err := lab.Poll(timeout, interval, func() error {
		full, err := routed()
		if err == nil && full < n {
			err = fmt.Errorf("%d of %d VIPs routed to all nodes", full, n)
		}
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	all := time.Since(start)
	b.ReportMetric(created.Seconds(), "create_s")
	b.ReportMetric(all.Seconds(), "all_announced_s")
	b.ReportMetric(float64(n)/all.Seconds(), "services_per_s")
}

// BenchmarkBulkServices creates 220 Services at once (8 clients in
// parallel) and measures the time from the first create until every VIP is
// in the router's kernel with all three nodes as next hops; it reports that
// time, the rate, and the agents' largest RSS afterwards. (MetalLB v0.15.2
// took 11.9 s for 220 Services in this lab; LAB.md.)
func BenchmarkBulkServices(b *testing.B) {
	const n = 220
	e := setup(b)
	round := 0
	for b.Loop() {
		round++
		if round > 1 {
			b.Fatal("run with -benchtime=1x: the pool holds one round")
		}
		start := time.Now()
		e.createBulk(b, n, 8, "bulk", "bulk", nil)
		created := time.Since(start)
		waitAllRouted(b, n, start, created, 120*time.Second, 50*time.Millisecond, func() (int, error) {
			rs, err := e.router.KernelRoutes()
			if err != nil {
				return 0, err
			}
			full := 0
			for _, r := range rs {
				if r.Dst.Bits() == 32 && len(r.Gateways) == 3 {
					full++
				}
			}
			return full, nil
		})
	}
	maxRSS := 0
	for _, p := range e.agents {
		if kb, _ := lab.RSSKB(p.PID()); kb > maxRSS {
			maxRSS = kb
		}
	}
	b.ReportMetric(float64(maxRSS)/1024, "agent_max_rss_MiB")
}

// BenchmarkManyServices: 5,000 IPv6 Services → the time until every VIP is
// in the router's kernel with all three nodes as next hops. The Services
// are created (16 clients) while the agents are stopped, then the agents
// start: all_announced_s runs from their start (cache sync, Lease,
// allocation of 5,000 addresses, BGP sessions, announcement) and
// services_per_s is 5,000 over it — what vipspeaker does, apart from how
// fast the API server takes 5,000 creates (create_s). MetalLB v0.15.2: 220
// in 11.9 s here (18.5/s, creates included). Then, with those Services in
// place, a new Service's time to route without and right after a pool is
// added to the ConfigMap (MetalLB stalled 8.9 s); and the allocator's and
// the speakers' RSS at that size.
func BenchmarkManyServices(b *testing.B) {
	const n = 5000
	e := setupWith(b, setupOpts{v6: true})
	rounds := 0
	for b.Loop() {
		rounds++
		if rounds > 1 {
			b.Fatal("run with -benchtime=1x: the Services stay")
		}
		for _, node := range []string{"n1", "n2", "n3"} {
			if err := e.agents[node].Stop(); err != nil {
				b.Logf("stop agent %s: %v", node, err)
			}
		}
		start := time.Now()
		e.createBulk(b, n, 16, "many", "bulk6", func(spec *corev1.ServiceSpec) {
			single := corev1.IPFamilyPolicySingleStack
			spec.IPFamilyPolicy, spec.IPFamilies = &single, []corev1.IPFamily{corev1.IPv6Protocol}
			// 5,000 would exhaust the NodePort range.
			spec.AllocateLoadBalancerNodePorts = ptr(false)
		})
		created := time.Since(start)
		start = time.Now()
		for _, node := range []string{"n1", "n2", "n3"} {
			e.startAgent(b, node)
		}
		bulk := netip.MustParsePrefix("2001:db8:5000::/112")
		last := 0
		waitAllRouted(b, n, start, created, 15*time.Minute, 200*time.Millisecond, func() (int, error) {
			rs, err := e.router.Netlink().RouteList(nil, netlink.FAMILY_V6)
			if err != nil {
				return 0, err
			}
			full := 0
			for _, r := range rs {
				if r.Dst == nil || len(r.MultiPath) != 3 {
					continue
				}
				if a, ok := netip.AddrFromSlice(r.Dst.IP); ok && bulk.Contains(a) {
					full++
				}
			}
			if full/500 != last/500 {
				b.Logf("%d of %d routed after %s", full, n, time.Since(start).Round(time.Millisecond))
			}
			last = full
			return full, nil
		})
	}
	b.StopTimer()
	// RSS at that size: the allocator (the Lease holder) and the others.
	lease, err := e.cs.CoordinationV1().Leases(kube.DefaultNamespace).Get(context.Background(), kube.DefaultLeaseName, metav1.GetOptions{})
	if err != nil {
		b.Fatal(err)
	}
	leader := *lease.Spec.HolderIdentity
	speakerMax := 0
	for name, p := range e.agents {
		kb, err := lab.RSSKB(p.PID())
		if err != nil {
			b.Fatal(err)
		}
		if name == leader {
			b.ReportMetric(float64(kb)/1024, "allocator_rss_MiB")
		} else if kb > speakerMax {
			speakerMax = kb
		}
	}
	b.ReportMetric(float64(speakerMax)/1024, "speaker_rss_MiB")

	// A new Service's time to route, with and without a pool added just
	// before it, while the 5,000 exist.
	var plain, withPool, plainStatus []time.Duration
	for i := range 5 {
		r := e.timeToRoute(b, fmt.Sprintf("after-many-%d", i), withAnn(kube.AnnotationPool, "bench"))
		plain = append(plain, r.ended.Sub(r.start))
		plainStatus = append(plainStatus, r.status.Sub(r.start))
	}
	toml := testTOML + bulk6Pool
	for i := range 5 {
		toml += fmt.Sprintf("\n[[pools]]\nname = \"added-%d\"\naddresses = [\"198.51.100.%d\"]\nauto-assign = false\n", i, 240+i)
		gobgp := testGoBGP + "  [[neighbors.afi-safis]]\n    [neighbors.afi-safis.config]\n      afi-safi-name = \"ipv6-unicast\"\n"
		e.setConfigMap(b, toml, gobgp)
		r := e.timeToRoute(b, fmt.Sprintf("after-pool-%d", i), withAnn(kube.AnnotationPool, "bench"))
		withPool = append(withPool, r.ended.Sub(r.start))
	}
	b.ReportMetric(ms(pct(plain, 50)), "new_svc_p50_ms")
	b.ReportMetric(ms(pct(withPool, 50)), "new_svc_after_pool_add_p50_ms")
	b.ReportMetric(ms(pct(withPool, 100)), "new_svc_after_pool_add_max_ms")
	b.ReportMetric(float64(len(plain)), "new_svc_n")
	b.ReportMetric(float64(len(withPool)), "new_svc_after_pool_add_n")
	b.Logf("new Service at %d Services: %v (of which until the status: %v); right after a pool was added: %v", n, plain, plainStatus, withPool)
	b.ReportMetric(ms(pct(plainStatus, 50)), "new_svc_status_p50_ms")
}

func netipToIPNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}
