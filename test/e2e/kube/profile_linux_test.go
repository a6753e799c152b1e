package kube_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	corev1 "k8s.io/api/core/v1"

	"github.com/vipspeaker/vipspeaker/test/lab"
)

// debugAddr is where the agents serve /debug/pprof/ with setupOpts.debug,
// inside each node's namespace.
const debugAddr = "127.0.0.1:6060"

// BenchmarkIdleProfiles profiles the three speakers (as shipped:
// --allocate=false, one `vipspeaker allocate`) at idle with 0, 1,000 and
// 5,000 IPv6 Services (the last 4,000 created while the speakers are
// stopped, then the speakers started): at each size, once every VIP is routed at the
// router through all three nodes and 20 s have passed, it takes each
// speaker's heap profile (after a GC), its allocations and a 30 s CPU
// profile, and logs their top entries with the speakers' VmRSS and CPU
// seconds over the 30 s. The profiles are written under
// $VIPSPEAKER_PROFILE_DIR (default: the test's temporary directory).
// docs/performance.md holds what one run of it showed. Run with
// -benchtime=1x.
func BenchmarkIdleProfiles(b *testing.B) {
	dir := os.Getenv("VIPSPEAKER_PROFILE_DIR")
	if dir == "" {
		dir = b.TempDir()
	}
	e := setupWith(b, setupOpts{v6: true, speakersOnly: true, debug: true})
	bulk := netip.MustParsePrefix("2001:db8:5000::/112")
	for b.Loop() {
		have := 0
		for _, n := range []int{0, 1000, 5000} {
			if n > have {
				// Thousands of creates while the speakers announce each
				// one overload this 2-core lab's API server (creates
				// time out): they are created while the speakers are
				// stopped, as BenchmarkManyServices does.
				stopped := n-have > 1000
				if stopped {
					for _, node := range []string{"n1", "n2", "n3"} {
						if err := e.agents[node].Stop(); err != nil {
							b.Logf("stop agent %s: %v", node, err)
						}
					}
				}
				e.createBulkFrom(b, have, n, 8)
				have = n
				if stopped {
					for _, node := range []string{"n1", "n2", "n3"} {
						e.startAgent(b, node)
					}
				}
			}
			lab.Eventually(b, 10*time.Minute, time.Second, func() error {
				if got := routedVia3(b, e, bulk); got < n {
					return fmt.Errorf("%d of %d VIPs routed through all nodes", got, n)
				}
				return nil
			})
			time.Sleep(20 * time.Second) // the idle state the profiles are about, after the burst's work
			e.profile(b, filepath.Join(dir, fmt.Sprint(n)))
		}
	}
}

// createBulkFrom creates Services many-<from>..many-<to-1> in pool bulk6.
func (e *env) createBulkFrom(b *testing.B, from, to, clients int) {
	b.Helper()
	e.createBulkRange(b, from, to, clients, "many", "bulk6", func(spec *corev1.ServiceSpec) {
		single := corev1.IPFamilyPolicySingleStack
		spec.IPFamilyPolicy, spec.IPFamilies = &single, []corev1.IPFamily{corev1.IPv6Protocol}
		spec.AllocateLoadBalancerNodePorts = ptr(false) // 5,000 would exhaust the NodePort range
	})
}

// routedVia3 counts the router's IPv6 routes in bulk with three next hops.
func routedVia3(b *testing.B, e *env, bulk netip.Prefix) int {
	rs, err := e.router.Netlink().RouteList(nil, netlink.FAMILY_V6)
	if err != nil {
		b.Fatal(err)
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
	return full
}

// rssParts returns the RssAnon and RssFile lines of /proc/PID/status: the
// process's own memory and the pages of its binary (and other files) it
// has mapped.
func rssParts(pid int) string {
	data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	var parts []string
	for _, l := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(l, "RssAnon:") || strings.HasPrefix(l, "RssFile:") {
			parts = append(parts, strings.Join(strings.Fields(l), " "))
		}
	}
	return strings.Join(parts, ", ")
}

// profile writes each speaker's heap (after a GC), allocs and a 30 s CPU
// profile under dir and logs their top entries, its VmRSS and its CPU
// seconds over those 30 s.
func (e *env) profile(b *testing.B, dir string) {
	b.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	for _, n := range []string{"n1", "n2", "n3"} {
		wg.Go(func() {
			get := func(path, file string, timeout time.Duration) {
				ctx, cancel := context.WithTimeout(context.Background(), timeout)
				defer cancel()
				out := filepath.Join(dir, n+"-"+file)
				if o, err := e.Nodes[n].Run(ctx, "curl", "-sf", "-o", out, "http://"+debugAddr+path); err != nil {
					b.Errorf("%s: %s: %v %s", n, path, err, o)
				}
			}
			pid := e.agents[n].PID()
			t0, _ := lab.CPUTicks(pid)
			get("/debug/pprof/profile?seconds=30", "cpu.pb.gz", 60*time.Second)
			t1, _ := lab.CPUTicks(pid)
			get("/debug/pprof/heap?gc=1", "heap.pb.gz", 20*time.Second)
			rss, _ := lab.RSSKB(pid)
			b.Logf("%s: %s: VmRSS %.1f MiB (%s), CPU %.2f s over 30 s idle", filepath.Base(dir), n, float64(rss)/1024, rssParts(pid), float64(t1-t0)/100)
		})
	}
	wg.Wait()
	for _, c := range []struct{ file, index string }{
		{"n2-heap.pb.gz", "inuse_space"}, {"n2-heap.pb.gz", "alloc_space"}, {"n2-cpu.pb.gz", ""},
	} {
		args := []string{"tool", "pprof", "-top", "-nodecount=25"}
		if c.index != "" {
			args = append(args, "-sample_index="+c.index)
		}
		out, err := exec.Command("go", append(args, filepath.Join(dir, c.file))...).CombinedOutput()
		if err != nil {
			b.Errorf("pprof %s: %v", c.file, err)
		}
		b.Logf("%s %s %s:\n%s", filepath.Base(dir), c.file, c.index, strings.TrimSpace(string(out)))
	}
}
