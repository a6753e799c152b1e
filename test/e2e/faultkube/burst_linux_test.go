package faultkube_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vipspeaker/vipspeaker/kube"
	"github.com/vipspeaker/vipspeaker/test/lab"
)

const (
	burstSize = 1000
	// the IPv6 pool bulk6 of baseTOML
	bulkPrefix = "2001:db8:200::/116"
	inUseKey   = `vipspeaker_pool_addresses_in_use{family="ipv6",pool="bulk6"}`
	leaderKey  = "vipspeaker_allocator_leader"
	// Memory may differ by at most this fraction between before and after.
	memBound = 0.10
	// perNewAddress is what the live heap may keep, on top of memBound, for
	// each address the measured burst announced and withdrew that no
	// burst had used before: GoBGP v4.8.0 keeps an empty destination in
	// its global RIB for every withdrawn local prefix, about 0.5 kB each
	// (docs/kubernetes.md, "Memory"), and client-go's event correlator
	// keeps up to 4,096 entries per cache, about 1 kB per Service name.
	perNewAddress = 2 << 10
)

// TestThousandServicesBurst creates 1,000 LoadBalancer Services at once
// (IPv6, pool bulk6; 8 clients in parallel), waits until the router's
// kernel routes every one of their VIPs through both nodes, deletes them
// all at once and waits until no route, no VIP on the nodes' interfaces
// and no address in use in the pool is left. It does that twice and
// compares each agent's memory after the second burst with before it:
// VmRSS within 10%, and the Go heap live after a garbage collection (see
// memSample) within 10% plus perNewAddress for each of the second burst's
// addresses.
//
// "Before" is taken after a first, identical burst (warm-up), not at
// start: the first burst grows memory that is kept and reused, not leaked
// — the heap arenas the Go runtime keeps mapped, GoBGP's and client-go's
// maps and buffers sized for 1,000 objects, the informers' watch caches.
// A leak grows with every burst, so the second burst shows it against the
// first.
//
// The second burst asks for 1,000 other addresses of the pool
// (vipspeaker.io/addresses: the 1,000 after the warm-up's), and the test
// checks that no address of the first burst comes back: the allocator
// hands out freed addresses lowest first, so auto-assigned addresses would
// be the same again and per-prefix state that is never freed (GoBGP's, see
// perNewAddress) could not show.
func TestThousandServicesBurst(t *testing.T) {
	e := setup(t)
	prefix := netip.MustParsePrefix(bulkPrefix)

	warm, warmAddrs := e.burst(t, "warm", prefix, nil)
	t.Logf("warm-up burst: %s", warm)
	before := e.memory(t)
	var next []netip.Addr
	for a := warmAddrs[len(warmAddrs)-1].Next(); len(next) < burstSize; a = a.Next() {
		next = append(next, a)
	}
	measured, measuredAddrs := e.burst(t, "measured", prefix, next)
	t.Logf("measured burst: %s", measured)
	after := e.memory(t)
	if reused := overlap(warmAddrs, measuredAddrs); reused > 0 {
		t.Fatalf("the measured burst reused %d addresses of the warm-up's; it must announce new ones", reused)
	}

	for _, n := range nodeNames {
		b, a := before[n], after[n]
		t.Logf("agent on %s: before %s; after %s", n, b, a)
		if d := rel(a.rssKB, b.rssKB); d > memBound {
			t.Errorf("agent on %s: VmRSS grew %.1f%% over a burst of %d Services (%.0f kB → %.0f kB), bound %.0f%%",
				n, 100*d, burstSize, b.rssKB, a.rssKB, 100*memBound)
		}
		limit := memBound*b.heapLive + float64(perNewAddress*len(measuredAddrs))
		t.Logf("agent on %s: live heap grew %.2f MB, %.0f B per new address (bound %.2f MB: %.0f%% + %d B per new address)",
			n, mb(a.heapLive-b.heapLive), (a.heapLive-b.heapLive)/float64(len(measuredAddrs)), mb(limit), 100*memBound, perNewAddress)
		if a.heapLive-b.heapLive > limit {
			t.Errorf("agent on %s: live Go heap grew %.2f MB over a burst of %d Services on new addresses (%.1f MB → %.1f MB), bound %.2f MB",
				n, mb(a.heapLive-b.heapLive), burstSize, mb(b.heapLive), mb(a.heapLive), mb(limit))
		}
	}
	e.checkAgentsAlive(t)
}

// overlap counts the addresses in both a and b.
func overlap(a, b []netip.Addr) int {
	in := make(map[netip.Addr]bool, len(a))
	for _, x := range a {
		in[x] = true
	}
	n := 0
	for _, x := range b {
		if in[x] {
			n++
		}
	}
	return n
}

func rel(after, before float64) float64 {
	if before <= 0 {
		return 0
	}
	return (after - before) / before
}

func mb(b float64) float64 { return b / (1 << 20) }

type burstResult struct {
	created, routed, deleted, withdrawn time.Duration
}

func (r burstResult) String() string {
	return fmt.Sprintf("%d creates in %s, all routed after %s; %d deletes in %s, all withdrawn and released after %s",
		burstSize, r.created.Round(time.Millisecond), r.routed.Round(time.Millisecond),
		burstSize, r.deleted.Round(time.Millisecond), r.withdrawn.Round(time.Millisecond))
}

// parallel runs fn for 0..n-1 on 8 workers and returns the first error.
func parallel(n int, fn func(i int) error) error {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	idx := make(chan int)
	for range 8 {
		wg.Go(func() {
			for i := range idx {
				if err := fn(i); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		})
	}
	for i := range n {
		idx <- i
	}
	close(idx)
	wg.Wait()
	if len(errs) > 0 {
		return fmt.Errorf("%d of %d failed, first: %w", len(errs), n, errs[0])
	}
	return nil
}

// routedIn counts the router kernel's routes inside prefix and how many of
// them go through every node.
func (e *env) routedIn(prefix netip.Prefix) (total, full int, err error) {
	rs, err := e.router.KernelRoutes()
	if err != nil {
		return 0, 0, err
	}
	for _, r := range rs {
		if r.Dst.Bits() == prefix.Addr().BitLen() && prefix.Contains(r.Dst.Addr()) {
			total++
			if len(r.Gateways) == len(nodeNames) {
				full++
			}
		}
	}
	return total, full, nil
}

// vipsOnNode counts the addresses inside prefix on the node's kube-lb0.
func (e *env) vipsOnNode(node string, prefix netip.Prefix) (int, error) {
	h := e.nodes[node].Netlink()
	link, err := h.LinkByName("kube-lb0")
	if err != nil {
		return 0, fmt.Errorf("%s: kube-lb0: %w", node, err)
	}
	addrs, err := h.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		return 0, fmt.Errorf("%s: addresses of kube-lb0: %w", node, err)
	}
	n := 0
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok && prefix.Contains(ip.Unmap()) {
			n++
		}
	}
	return n, nil
}

// leaderMetrics returns the metrics of the agent holding the allocator
// Lease.
func (e *env) leaderMetrics() (string, map[string]float64, error) {
	for _, n := range nodeNames {
		m, err := e.metrics(n)
		if err != nil {
			return "", nil, err
		}
		if m[leaderKey] == 1 {
			return n, m, nil
		}
	}
	return "", nil, errors.New("no agent says it holds the allocator Lease")
}

// burst creates burstSize Services, waits until all are routed, deletes
// them and waits until everything is withdrawn and released. With addrs
// (burstSize of them) Service i asks for addrs[i]; else the allocator
// picks. It returns the addresses the Services held, sorted.
func (e *env) burst(t *testing.T, tag string, prefix netip.Prefix, addrs []netip.Addr) (burstResult, []netip.Addr) {
	t.Helper()
	var r burstResult
	svcs := e.cs.CoreV1().Services(svcNS)
	name := func(i int) string { return fmt.Sprintf("%s-%d", tag, i) }

	start := time.Now()
	err := parallel(burstSize, func(i int) error {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		opts := []svcOpt{ipv6Only, withAnn(kube.AnnotationPool, "bulk6")}
		if addrs != nil {
			opts = append(opts, withAnn(kube.AnnotationAddresses, addrs[i].String()))
		}
		_, err := svcs.Create(ctx, newService(name(i), opts...), metav1.CreateOptions{})
		return err
	})
	if err != nil {
		t.Fatalf("create %d Services: %v", burstSize, err)
	}
	r.created = time.Since(start)
	lab.Eventually(t, 300*time.Second, 250*time.Millisecond, func() error {
		e.checkAgentsAlive(t)
		total, full, err := e.routedIn(prefix)
		if err != nil {
			return err
		}
		if full != burstSize || total != burstSize {
			return fmt.Errorf("router kernel: %d routes in %s, %d through both nodes; want %d", total, prefix, full, burstSize)
		}
		return nil
	})
	r.routed = time.Since(start)
	// Every Service shows its own address.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	list, err := svcs.List(ctx, metav1.ListOptions{})
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[netip.Addr]string{}
	for i := range list.Items {
		s := &list.Items[i]
		a := kube.Ingress(s)
		if len(a) != 1 || !prefix.Contains(a[0]) {
			t.Fatalf("Service %s has ingress %v, want one address of %s", s.Name, a, prefix)
		}
		if o, dup := seen[a[0]]; dup {
			t.Fatalf("Services %s and %s both hold %s", o, s.Name, a[0])
		}
		seen[a[0]] = s.Name
	}
	if len(seen) != burstSize {
		t.Fatalf("%d Services with addresses, want %d", len(seen), burstSize)
	}
	held := make([]netip.Addr, 0, len(seen))
	for a := range seen {
		held = append(held, a)
	}
	slices.SortFunc(held, netip.Addr.Compare)
	if _, m, err := e.leaderMetrics(); err != nil {
		t.Fatal(err)
	} else if m[inUseKey] != burstSize {
		t.Errorf("%s = %v with %d Services, want %d", inUseKey, m[inUseKey], burstSize, burstSize)
	}

	start = time.Now()
	err = parallel(burstSize, func(i int) error {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		return svcs.Delete(ctx, name(i), metav1.DeleteOptions{})
	})
	if err != nil {
		t.Fatalf("delete %d Services: %v", burstSize, err)
	}
	r.deleted = time.Since(start)
	lab.Eventually(t, 300*time.Second, 250*time.Millisecond, func() error {
		e.checkAgentsAlive(t)
		total, _, err := e.routedIn(prefix)
		if err != nil {
			return err
		}
		if total != 0 {
			return fmt.Errorf("router kernel: %d routes in %s left", total, prefix)
		}
		for _, n := range nodeNames {
			c, err := e.vipsOnNode(n, prefix)
			if err != nil {
				return err
			}
			if c != 0 {
				return fmt.Errorf("%d VIPs of %s left on %s's kube-lb0", c, prefix, n)
			}
		}
		leader, m, err := e.leaderMetrics()
		if err != nil {
			return err
		}
		if v, ok := m[inUseKey]; !ok || v != 0 {
			return fmt.Errorf("leader %s: %s = %v (present %v), want 0", leader, inUseKey, v, ok)
		}
		return nil
	})
	r.withdrawn = time.Since(start)
	// FRR's BGP table has none of them either.
	rib, err := e.frr.BGPRoutes("ipv6")
	if err != nil {
		t.Fatal(err)
	}
	for p := range rib {
		if prefix.Contains(p.Addr()) {
			t.Errorf("FRR's BGP table still holds %s", p)
		}
	}
	ctx, cancel = context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range burstSize {
		if _, err := svcs.Get(ctx, name(i), metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Fatalf("Service %s still there: %v", name(i), err)
		}
	}
	return r, held
}

// memSample is one agent's memory at rest.
type memSample struct {
	rssKB     float64
	heapInuse float64 // go_memstats_heap_inuse_bytes right after the GCs
	nextGC    float64 // go_memstats_next_gc_bytes: the heap goal set by the last GC
	gogc      float64
	heapLive  float64 // live heap at the last GC: nextGC / (1 + GOGC/100)
}

func (m memSample) String() string {
	return fmt.Sprintf("VmRSS %.1f MB, live heap %.1f MB (heap goal %.1f MB), heap in use %.1f MB",
		m.rssKB/1024, mb(m.heapLive), mb(m.nextGC), mb(m.heapInuse))
}

// memory waits for the agents to be idle, makes each run two garbage
// collections and samples its memory.
//
// go_memstats_heap_inuse_bytes alone would depend on where the agent is
// in its GC cycle (garbage stays in use until the next collection, and
// an idle agent may not collect for two minutes). So the test makes the
// agent collect: it scrapes /metrics, which allocates, until
// go_gc_duration_seconds_count has gone up by two, and reads the heap goal
// that the last collection set (go_memstats_next_gc_bytes, proportional
// to the heap that collection found live).
func (e *env) memory(t *testing.T) map[string]memSample {
	t.Helper()
	e.waitIdle(t)
	out := map[string]memSample{}
	for _, n := range nodeNames {
		m0, err := e.metrics(n)
		if err != nil {
			t.Fatal(err)
		}
		gcs := m0["go_gc_duration_seconds_count"]
		var m map[string]float64
		lab.Eventually(t, 120*time.Second, 0, func() error {
			var err error
			if m, err = e.metrics(n); err != nil {
				return err
			}
			if c := m["go_gc_duration_seconds_count"]; c < gcs+2 {
				return fmt.Errorf("agent on %s: %v collections since the first sample, want 2", n, c-gcs)
			}
			return nil
		})
		rss, err := lab.RSSKB(e.agents[n].PID())
		if err != nil {
			t.Fatal(err)
		}
		s := memSample{rssKB: float64(rss), heapInuse: m["go_memstats_heap_inuse_bytes"], nextGC: m["go_memstats_next_gc_bytes"], gogc: 100}
		if v, ok := m["go_gc_gogc_percent"]; ok && v > 0 {
			s.gogc = v
		}
		s.heapLive = s.nextGC / (1 + s.gogc/100)
		out[n] = s
	}
	return out
}

// waitIdle waits until the agents have stopped writing: the number of
// Events in the Services' namespace and each agent's VIP-set counter stay
// the same for 5 s.
func (e *env) waitIdle(t *testing.T) {
	t.Helper()
	snapshot := func() (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		evs, err := e.cs.CoreV1().Events(svcNS).List(ctx, metav1.ListOptions{})
		if err != nil {
			return "", err
		}
		s := fmt.Sprint(len(evs.Items))
		for _, n := range nodeNames {
			m, err := e.metrics(n)
			if err != nil {
				return "", err
			}
			s += fmt.Sprintf(" %s:%v", n, m["vipspeaker_kube_vip_sets_total"])
		}
		return s, nil
	}
	last, err := snapshot()
	if err != nil {
		t.Fatal(err)
	}
	stable := time.Now()
	lab.Eventually(t, 120*time.Second, time.Second, func() error {
		s, err := snapshot()
		if err != nil {
			return err
		}
		if s != last {
			last, stable = s, time.Now()
		}
		if time.Since(stable) < 5*time.Second {
			return fmt.Errorf("agents still busy (%s)", s)
		}
		return nil
	})
}
