package sidebyside

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/netip"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vipspeaker/vipspeaker/test/lab"
)

// The systems in the order they are measured. SIDEBYSIDE_SYSTEMS (comma
// separated names) and SIDEBYSIDE_MEASURE (measurement names, see
// BenchmarkSideBySide) narrow a run down while working on the harness.
var systems = []struct {
	name string
	make func(testing.TB) system
}{
	{"vipspeaker", func(t testing.TB) system { return newVipspeaker(t) }},
	{"metallb", func(t testing.TB) system { return newMetalLB(t) }},
}

func selected(envVar, name string) bool {
	v := os.Getenv(envVar)
	return v == "" || slices.Contains(strings.Split(v, ","), name)
}

func eachSystem(b *testing.B, run func(b *testing.B, sys system)) {
	for _, s := range systems {
		if !selected("SIDEBYSIDE_SYSTEMS", s.name) {
			continue
		}
		b.Run(s.name, func(b *testing.B) { run(b, s.make(b)) })
	}
}

// BenchmarkSideBySide runs, for each system in a lab of its own:
//   - route: 100 Services created one after the other, each from creation
//     to the route in FRR's kernel via all three nodes, and to the first
//     and the last node's BGP UPDATE carrying its /32 as captured on the
//     router's br0 (lab.BGPCapture, from before the sessions open);
//   - freeze: a node's speaker frozen (SIGSTOP) → that node's next hop gone
//     from FRR's kernel, 10 times (vipspeaker: BFD 100 ms × 3; MetalLB:
//     the 3 s hold timer, its shortest);
//   - l2kill: the owner of an L2 VIP's speaker killed (kill -9) → the first
//     ARP reply from another node at the client (a request every 10 ms),
//     10 times;
//   - restart: kill -9 of a speaker and start again, 5 times, with a ping
//     every 10 ms to a BGP VIP only that node announces (Local policy)
//     and to an L2 VIP owned by the restarted node;
//   - community: a community added to and taken from what is advertised,
//     10 changes: time until FRR shows it, sessions reset.
//
// Run with -benchtime 1x (each measurement repeats itself).
func BenchmarkSideBySide(b *testing.B) {
	eachSystem(b, func(b *testing.B, sys system) {
		e := newEnv(b, sys, true)
		steps := []struct {
			name string
			run  func(b *testing.B, e *env)
		}{
			{"route", measureServiceToRoute},
			{"freeze", measureFreeze},
			{"l2kill", measureL2Kill},
			{"restart", measureRestart},
			{"community", measureCommunity},
		}
		for _, s := range steps {
			if selected("SIDEBYSIDE_MEASURE", s.name) {
				start := time.Now()
				s.run(b, e)
				b.Logf("%s: %s took %v", sys.Name(), s.name, time.Since(start).Round(time.Second))
			}
		}
	})
}

// BenchmarkSideBySideScale: 1,000 and 5,000 Services, each in a fresh lab,
// created as fast as the API server takes them: time from the first
// create until FRR's kernel routes all of them via all three nodes; the
// speakers' and controller's RSS then; at 1,000 also the CPU the speakers
// and controller use over 60 idle seconds.
func BenchmarkSideBySideScale(b *testing.B) {
	for _, s := range systems {
		if !selected("SIDEBYSIDE_SYSTEMS", s.name) {
			continue
		}
		b.Run(s.name, func(b *testing.B) {
			for _, n := range []int{1000, 5000} {
				if selected("SIDEBYSIDE_MEASURE", fmt.Sprint(n)) {
					b.Run(fmt.Sprint(n), func(b *testing.B) { measureScale(b, s.make(b), n) })
				}
			}
		})
	}
}

func msOf(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// pct is the p-th percentile (nearest rank; the p99 of fewer than 100
// samples is their maximum).
func pct(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

func report(b *testing.B, name string, ds []time.Duration) {
	b.ReportMetric(msOf(pct(ds, 50)), name+"_p50_ms")
	b.ReportMetric(msOf(pct(ds, 99)), name+"_p99_ms")
	b.ReportMetric(float64(len(ds)), name+"_n")
}

// measureServiceToRoute: Service created → status address → route in
// FRR's kernel with all three next hops, polled every 2 ms; created →
// the status address as a watch of the Services delivers it (what the
// agents' informers see); and, from the router's capture of the BGP
// sessions (e.wire), created → the first UPDATE carrying the VIP's /32
// from any node, and → the last node's.
func measureServiceToRoute(b *testing.B, e *env) {
	var status, route, seen, wireFirst, wireLast []time.Duration
	before := e.frrSessions(b)
	sw := e.watchStatus(b)
	defer sw.stop()
	for i := range 100 {
		s := svc{name: fmt.Sprintf("route-%03d", i), pool: "bgp"}
		at := e.createService(b, s)
		vip := e.waitIngress(b, s.name, 30*time.Second)
		st := time.Now()
		done := e.waitHops(b, vip, len(nodeNames), 2*time.Millisecond, 30*time.Second)
		status, route = append(status, st.Sub(at)), append(route, done.Sub(at))
		if t, ok := sw.at(s.name); ok {
			seen = append(seen, t.Sub(at))
		}
		if e.wire != nil {
			first, last := e.updatesOnWire(b, vip, at)
			wireFirst, wireLast = append(wireFirst, first.Sub(at)), append(wireLast, last.Sub(at))
			if done.Sub(at) > 500*time.Millisecond {
				b.Logf("%s: %s slow: status %v, first UPDATE %v, last UPDATE %v, route %v after the create", e.sys.Name(), s.name,
					st.Sub(at).Round(time.Millisecond), first.Sub(at).Round(time.Millisecond), last.Sub(at).Round(time.Millisecond), done.Sub(at).Round(time.Millisecond))
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	resets := 0
	for a, n := range e.frrSessions(b) {
		resets += n - before[a]
	}
	if resets > 0 {
		b.Logf("%s: %d BGP sessions were re-established while the 100 Services were created", e.sys.Name(), resets)
	}
	b.Logf("%s: Service → route p50 %v p99 %v (status p50 %v)", e.sys.Name(), pct(route, 50), pct(route, 99), pct(status, 50))
	report(b, "route", route)
	report(b, "status", status)
	if len(seen) == len(route) {
		b.Logf("%s: Service → status address seen by a watch p50 %v p99 %v", e.sys.Name(), pct(seen, 50), pct(seen, 99))
		report(b, "status_watch", seen)
	}
	if e.wire != nil {
		updates, errs := e.wire.Counts()
		b.Logf("%s: Service → first UPDATE on the wire p50 %v p99 %v, → every node's p50 %v p99 %v (%d UPDATEs captured, %d unparsed)", e.sys.Name(),
			pct(wireFirst, 50), pct(wireFirst, 99), pct(wireLast, 50), pct(wireLast, 99), updates, errs)
		report(b, "wire_first", wireFirst)
		report(b, "wire_last", wireLast)
	}
}

// bgpVIP returns the address of a BGP Service routed via all nodes,
// creating it when needed.
func (e *env) bgpVIP(b *testing.B, name string) netip.Addr {
	if _, err := e.ingress(name); err != nil {
		e.createService(b, svc{name: name, pool: "bgp"})
	}
	vip := e.waitIngress(b, name, 30*time.Second)
	e.waitHops(b, vip, len(nodeNames), 20*time.Millisecond, 60*time.Second)
	return vip
}

// waitBFD waits until FRR has every node's BFD session up (only when the
// system's router config asks for BFD).
func (e *env) waitBFD(b *testing.B) {
	if e.sys.RouterGlobal() == "" {
		return
	}
	lab.Eventually(b, 30*time.Second, 50*time.Millisecond, func() error {
		out, err := e.frr.Vtysh("show bfd peers brief")
		if err != nil {
			return err
		}
		for _, n := range nodeNames {
			ok := false
			for _, l := range strings.Split(out, "\n") {
				if strings.Contains(l, nodeAddr(n)) && strings.Contains(strings.ToLower(l), "up") {
					ok = true
				}
			}
			if !ok {
				return fmt.Errorf("BFD with %s not up at FRR:\n%s", n, out)
			}
		}
		return nil
	})
}

// measureFreeze: SIGSTOP one node's speaker; time until FRR's kernel route
// to a VIP no longer goes through that node; SIGCONT and wait for the
// route to come back whole before the next node.
func measureFreeze(b *testing.B, e *env) {
	vip := e.bgpVIP(b, "freeze")
	var gone []time.Duration
	for i := range 10 {
		n := nodeNames[i%len(nodeNames)]
		// Whole and steady for a second (a session that flapped under load
		// would make the next hop vanish for another reason).
		lab.Eventually(b, 90*time.Second, 20*time.Millisecond, func() error {
			e.waitHops(b, vip, len(nodeNames), 20*time.Millisecond, 90*time.Second)
			e.waitBFD(b)
			time.Sleep(time.Second)
			if h, err := e.hops(vip); err != nil || len(h) != len(nodeNames) {
				return fmt.Errorf("%s: route to %s changed while settling: %v %v", e.sys.Name(), vip, h, err)
			}
			return nil
		})
		p := e.sys.Speaker(n)
		at := time.Now()
		if err := p.Signal(syscall.SIGSTOP); err != nil {
			b.Fatal(err)
		}
		var seen time.Time
		lab.Eventually(b, 30*time.Second, 10*time.Millisecond, func() error {
			h, err := e.hops(vip)
			if err != nil {
				return err
			}
			if slices.Contains(h, nodeAddr(n)) {
				return fmt.Errorf("%s: frozen %s still a next hop for %s: %v", e.sys.Name(), n, vip, h)
			}
			seen = time.Now()
			return nil
		})
		if err := p.Signal(syscall.SIGCONT); err != nil {
			b.Fatal(err)
		}
		gone = append(gone, seen.Sub(at))
		b.Logf("%s: froze %s: next hop gone after %v", e.sys.Name(), n, seen.Sub(at).Round(time.Millisecond))
	}
	e.waitHops(b, vip, len(nodeNames), 20*time.Millisecond, 90*time.Second)
	report(b, "freeze", gone)
}

// l2VIP returns the address of an L2 Service (the lab's kube-proxy serves
// it when the system needs one), creating it when needed.
func (e *env) l2VIP(b *testing.B, name string) netip.Addr {
	if _, err := e.ingress(name); err != nil {
		e.createService(b, svc{name: name, pool: "l2"})
	}
	vip := e.waitIngress(b, name, 30*time.Second)
	e.proxy(b, vip)
	return vip
}

// nodeOf maps a MAC to its node ("" for none).
func (e *env) nodeOf(mac string) string {
	for n, m := range e.macs {
		if m == mac {
			return n
		}
	}
	return ""
}

// l2Owner waits until every ARP reply for vip over the last second came
// from one node's MAC and returns that node.
func (e *env) l2Owner(b *testing.B, p *lab.ARPProber, timeout time.Duration) string {
	var owner string
	lab.Eventually(b, timeout, 100*time.Millisecond, func() error {
		since := time.Now().Add(-time.Second)
		macs := map[string]int{}
		for _, r := range p.Replies() {
			if r.At.After(since) {
				macs[r.MAC]++
			}
		}
		if len(macs) != 1 {
			return fmt.Errorf("%s: ARP replies in the last second by %v, want one node", e.sys.Name(), macs)
		}
		for m, c := range macs {
			if owner = e.nodeOf(m); owner == "" || c < 50 {
				return fmt.Errorf("%s: %d replies in the last second from %s (node %q)", e.sys.Name(), c, m, owner)
			}
		}
		return nil
	})
	return owner
}

// readier is a system that can tell when its speaker on a node has joined
// the others (L2 ownership agreed).
type readier interface{ ready(node string) bool }

func (e *env) waitReady(b *testing.B, n string) {
	r, ok := e.sys.(readier)
	if !ok {
		return
	}
	lab.Eventually(b, 60*time.Second, 100*time.Millisecond, func() error {
		if !r.ready(n) {
			return fmt.Errorf("%s: speaker on %s has not joined the others", e.sys.Name(), n)
		}
		return nil
	})
}

// measureL2Kill: kill -9 the owner's speaker; time until the client's
// ARP requests (every 10 ms) are answered by another node. The killed
// speaker is started again and the lab waits for one owner before the
// next round.
func measureL2Kill(b *testing.B, e *env) {
	vip := e.l2VIP(b, "l2kill")
	p, err := e.client.StartARPProber("eth0", netip.MustParseAddr(clientAddr), vip, 10*time.Millisecond)
	if err != nil {
		b.Fatal(err)
	}
	defer p.Stop(0)
	var fail []time.Duration
	for range 10 {
		e.l2Owner(b, p, 90*time.Second)
		time.Sleep(2 * time.Second) // memberlist settled after the last restart
		owner := e.l2Owner(b, p, 60*time.Second)
		at := time.Now()
		if err := e.sys.Speaker(owner).Kill(); err != nil {
			b.Fatal(err)
		}
		var r lab.ARPReply
		lab.Eventually(b, 60*time.Second, 5*time.Millisecond, func() error {
			var ok bool
			if r, ok = p.FirstFrom(at, e.macs[owner]); !ok {
				return fmt.Errorf("%s: no node but %s answers for %s since the kill", e.sys.Name(), owner, vip)
			}
			return nil
		})
		fail = append(fail, r.At.Sub(at))
		b.Logf("%s: killed %s's speaker: %s answered after %v", e.sys.Name(), owner, e.nodeOf(r.MAC), r.At.Sub(at).Round(time.Millisecond))
		e.sys.StartSpeaker(b, e, owner)
		e.waitSessions(b)
		e.waitReady(b, owner)
	}
	report(b, "l2kill", fail)
}

// measureRestart: the speaker on n1 killed (kill -9) and started again,
// 5 times, as a rolling update replaces it. Watched from the client, one
// request every 10 ms each: pings to a BGP VIP with externalTrafficPolicy
// Local and its only endpoint on n1 (so only n1 announces it), with the
// router's kernel route to it polled as often; ARP requests for an L2 VIP
// n1 answers for (a client whose ARP entry runs out during the restart
// asks exactly this), and pings to it.
func measureRestart(b *testing.B, e *env) {
	const node = "n1"
	if _, err := e.ingress("restart-bgp"); err != nil {
		e.createService(b, svc{name: "restart-bgp", pool: "bgp", local: true})
	}
	bgp := e.waitIngress(b, "restart-bgp", 30*time.Second)
	e.proxy(b, bgp)
	e.waitHops(b, bgp, 1, 20*time.Millisecond, 60*time.Second)
	// An L2 VIP owned by n1: Services are created until n1 owns one.
	var l2 netip.Addr
	prob := func(vip netip.Addr) string {
		p, err := e.client.StartARPProber("eth0", netip.MustParseAddr(clientAddr), vip, 10*time.Millisecond)
		if err != nil {
			b.Fatal(err)
		}
		defer p.Stop(0)
		return e.l2Owner(b, p, 60*time.Second)
	}
	for i := 0; ; i++ {
		if i == 6 {
			b.Fatalf("%s: none of 6 L2 VIPs is owned by %s", e.sys.Name(), node)
		}
		vip := e.l2VIP(b, fmt.Sprintf("restart-l2-%d", i))
		if prob(vip) == node {
			l2 = vip
			break
		}
	}
	var lostBGP, lostL2, routeGap, arpGap, arpLost []float64
	for range 5 {
		pb, err := e.client.StartPinger(bgp.String(), 10*time.Millisecond)
		if err != nil {
			b.Fatal(err)
		}
		pl, err := e.client.StartPinger(l2.String(), 10*time.Millisecond)
		if err != nil {
			b.Fatal(err)
		}
		arp, err := e.client.StartARPProber("eth0", netip.MustParseAddr(clientAddr), l2, 10*time.Millisecond)
		if err != nil {
			b.Fatal(err)
		}
		rw := e.watchRoute(bgp)
		if err := pb.WaitReplies(20, 10*time.Second); err != nil {
			b.Fatalf("%s: BGP VIP %s before the restart: %v", e.sys.Name(), bgp, err)
		}
		if err := pl.WaitReplies(20, 10*time.Second); err != nil {
			b.Fatalf("%s: L2 VIP %s before the restart: %v", e.sys.Name(), l2, err)
		}
		killed := time.Now()
		if err := e.sys.Speaker(node).Kill(); err != nil {
			b.Fatal(err)
		}
		e.sys.StartSpeaker(b, e, node)
		e.waitSessions(b)
		// Long enough for a lost route to come back and for the GR timer
		// of a stale one to matter: 15 s after the kill.
		time.Sleep(15*time.Second - time.Since(killed))
		// The ARP prober stops first: the silence after its last request
		// is not a gap.
		arp.Stop(20 * time.Millisecond)
		unanswered, ag := arp.Unanswered(killed.Add(-time.Second), arp.LastSent())
		rb, rl := pb.Stop(), pl.Stop()
		gap := rw.stop()
		lostBGP, lostL2 = append(lostBGP, float64(rb.Lost())), append(lostL2, float64(rl.Lost()))
		routeGap, arpGap = append(routeGap, msOf(gap)), append(arpGap, msOf(ag))
		arpLost = append(arpLost, float64(unanswered))
		b.Logf("%s: restart of %s: BGP VIP %v, route missing at the router for %v at most; L2 VIP %v, ARP requests unanswered %d, longest outage %v (%s)",
			e.sys.Name(), node, rb, gap.Round(time.Millisecond), rl, unanswered, ag.Round(time.Millisecond), e.arpTimeline(arp.Replies(), killed))
		e.waitReady(b, node)
		e.waitHops(b, bgp, 1, 20*time.Millisecond, 60*time.Second)
	}
	sum := func(xs []float64) float64 {
		s := 0.0
		for _, x := range xs {
			s += x
		}
		return s
	}
	b.ReportMetric(sum(lostBGP), "restart_bgp_lost")
	b.ReportMetric(slices.Max(routeGap), "restart_bgp_route_gap_max_ms")
	b.ReportMetric(sum(lostL2), "restart_l2_lost")
	b.ReportMetric(slices.Max(arpGap), "restart_l2_arp_gap_max_ms")
	b.ReportMetric(sum(arpLost), "restart_l2_arp_unanswered")
	b.ReportMetric(float64(len(lostBGP)), "restarts")
}

// arpTimeline tells who answered from t on: runs of replies by node and
// the silences (over 50 ms) between them, in ms after t.
func (e *env) arpTimeline(rs []lab.ARPReply, t time.Time) string {
	var parts []string
	cur, from, last := "", time.Duration(0), time.Duration(0)
	flush := func() {
		if cur != "" {
			parts = append(parts, fmt.Sprintf("%s %d–%d", cur, from.Milliseconds(), last.Milliseconds()))
		}
	}
	for _, r := range rs {
		if r.At.Before(t) {
			continue
		}
		at, n := r.At.Sub(t), e.nodeOf(r.MAC)
		if n != cur || at-last > 50*time.Millisecond {
			flush()
			if cur != "" && at-last > 50*time.Millisecond {
				parts = append(parts, fmt.Sprintf("silent %d–%d", last.Milliseconds(), at.Milliseconds()))
			}
			cur, from = n, at
		}
		last = at
	}
	flush()
	return "ms after the kill: " + strings.Join(parts, ", ")
}

// routeWatch polls the router's kernel for one VIP every 10 ms and keeps
// the longest time it had no route.
type routeWatch struct {
	done    chan struct{}
	stopped chan struct{}
	longest time.Duration
}

func (e *env) watchRoute(vip netip.Addr) *routeWatch {
	w := &routeWatch{done: make(chan struct{}), stopped: make(chan struct{})}
	go func() {
		defer close(w.stopped)
		var missing time.Time
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			h, err := e.hops(vip)
			now := time.Now()
			switch {
			case err == nil && len(h) == 0 && missing.IsZero():
				missing = now
			case err == nil && len(h) > 0 && !missing.IsZero():
				w.longest = max(w.longest, now.Sub(missing))
				missing = time.Time{}
			}
			select {
			case <-w.done:
				if !missing.IsZero() {
					w.longest = max(w.longest, now.Sub(missing))
				}
				return
			case <-t.C:
			}
		}
	}()
	return w
}

func (w *routeWatch) stop() time.Duration {
	close(w.done)
	<-w.stopped
	return w.longest
}

// frrSessions returns FRR's count of established connections per node
// session (a reset shows as one more).
func (e *env) frrSessions(b *testing.B) map[string]int {
	out := map[string]int{}
	for _, n := range nodeNames {
		a := nodeAddr(n)
		var doc map[string]struct {
			ConnectionsEstablished int `json:"connectionsEstablished"`
		}
		if err := e.frr.VtyshJSON("show bgp neighbors "+a+" json", &doc); err != nil {
			b.Fatal(err)
		}
		out[a] = doc[a].ConnectionsEstablished
	}
	return out
}

// communities returns how many of FRR's paths to vip carry community c,
// and how many paths there are.
func (e *env) communities(vip netip.Addr, c string) (with, paths int, err error) {
	var doc struct {
		Paths []struct {
			Community *struct {
				String string `json:"string"`
			} `json:"community"`
		} `json:"paths"`
	}
	if err := e.frr.VtyshJSON("show bgp ipv4 unicast "+vip.String()+"/32 json", &doc); err != nil {
		return 0, 0, err
	}
	for _, p := range doc.Paths {
		if p.Community != nil && slices.Contains(strings.Fields(p.Community.String), c) {
			with++
		}
	}
	return with, len(doc.Paths), nil
}

// measureCommunity: the operator adds community 64512:100 to everything
// advertised, then takes it away, 10 changes; each time from the API write
// until every node's path in FRR's table shows the change.
func measureCommunity(b *testing.B, e *env) {
	const c = "64512:100"
	vip := e.bgpVIP(b, "community")
	before := e.frrSessions(b)
	var took []time.Duration
	for i := range 10 {
		add := i%2 == 0
		want := 0
		if add {
			want = len(nodeNames)
		}
		time.Sleep(500 * time.Millisecond)
		at := time.Now()
		if add {
			e.sys.SetCommunity(b, e, c)
		} else {
			e.sys.SetCommunity(b, e, "")
		}
		var seen time.Time
		lab.Eventually(b, 60*time.Second, 10*time.Millisecond, func() error {
			with, paths, err := e.communities(vip, c)
			if err != nil {
				return err
			}
			if with != want || paths != len(nodeNames) {
				return fmt.Errorf("%s: %d of %d paths to %s carry %s, want %d of %d", e.sys.Name(), with, paths, vip, c, want, len(nodeNames))
			}
			seen = time.Now()
			return nil
		})
		took = append(took, seen.Sub(at))
	}
	after := e.frrSessions(b)
	resets := 0
	for a, n := range after {
		resets += n - before[a]
	}
	b.Logf("%s: community changes seen in FRR after p50 %v p99 %v; sessions reset %d", e.sys.Name(), pct(took, 50), pct(took, 99), resets)
	report(b, "community", took)
	b.ReportMetric(float64(resets), "community_resets")
}

// measureScale creates n Services (16 at a time) in a fresh lab and times
// until FRR's kernel routes all n VIPs of the BGP pool via every node.
func measureScale(b *testing.B, sys system, n int) {
	e := newEnv(b, sys, false)
	pool := netip.MustParsePrefix(bgpPool)
	start := time.Now()
	var g errgroup.Group
	g.SetLimit(16)
	for i := range n {
		g.Go(func() error {
			ctx := context.Background()
			s := svc{name: fmt.Sprintf("scale-%05d", i), pool: "bgp"}
			if _, err := e.cs.DiscoveryV1().EndpointSlices(svcNS).Create(ctx, e.endpointSlice(s), metav1.CreateOptions{}); err != nil {
				return err
			}
			_, err := e.cs.CoreV1().Services(svcNS).Create(ctx, e.service(s), metav1.CreateOptions{})
			return err
		})
	}
	if err := g.Wait(); err != nil {
		b.Fatalf("%s: creating %d Services: %v", sys.Name(), n, err)
	}
	created := time.Since(start)
	var all time.Duration
	routed := 0
	lab.Eventually(b, 30*time.Minute, 250*time.Millisecond, func() error {
		rs, err := e.router.KernelRoutes()
		if err != nil {
			return err
		}
		routed = 0
		for _, r := range rs {
			if pool.Contains(r.Dst.Addr()) && r.Dst.Bits() == 32 && len(r.Gateways) == len(nodeNames) {
				routed++
			}
		}
		if routed < n {
			return fmt.Errorf("%s: %d of %d Services routed via all nodes after %v", sys.Name(), routed, n, time.Since(start).Round(time.Second))
		}
		all = time.Since(start)
		return nil
	})
	b.Logf("%s: %d Services created in %v, all routed after %v", sys.Name(), n, created.Round(time.Millisecond), all.Round(time.Millisecond))
	b.ReportMetric(all.Seconds(), "all_routed_s")
	b.ReportMetric(created.Seconds(), "created_s")
	time.Sleep(5 * time.Second) // settle before reading memory
	speakerMax, speakerSum := 0, 0
	for _, nd := range nodeNames {
		kb, err := lab.RSSKB(sys.Speaker(nd).PID())
		if err != nil {
			b.Fatal(err)
		}
		speakerMax, speakerSum = max(speakerMax, kb), speakerSum+kb
	}
	// A system without a controller process (vipspeaker) reports no
	// controller metric rather than a 0 that would compare as a win.
	ctrl := 0
	if c := sys.Controller(); c != nil {
		kb, err := lab.RSSKB(c.PID())
		if err != nil {
			b.Fatal(err)
		}
		ctrl = kb
		b.ReportMetric(float64(ctrl)/1024, "controller_rss_MiB")
	}
	b.ReportMetric(float64(speakerMax)/1024, "speaker_rss_max_MiB")
	b.ReportMetric(float64(speakerSum+ctrl)/1024, "total_rss_MiB")
	if n != 1000 {
		return
	}
	// 60 idle seconds with 1,000 Services.
	pids := map[string]int{}
	for _, nd := range nodeNames {
		pids["speaker-"+nd] = sys.Speaker(nd).PID()
	}
	if c := sys.Controller(); c != nil {
		pids["controller"] = c.PID()
	}
	t0 := map[string]int64{}
	for k, pid := range pids {
		v, err := lab.CPUTicks(pid)
		if err != nil {
			b.Fatal(err)
		}
		t0[k] = v
	}
	time.Sleep(60 * time.Second)
	var speakers, ctrlCPU float64
	per := map[string]float64{}
	for k, pid := range pids {
		v, err := lab.CPUTicks(pid)
		if err != nil {
			b.Fatal(err)
		}
		s := float64(v-t0[k]) / lab.ClockTicks
		per[k] = s
		if k == "controller" {
			ctrlCPU = s
		} else {
			speakers += s
		}
	}
	js, _ := json.Marshal(per)
	b.Logf("%s: CPU seconds over 60 idle s with 1,000 Services: %s", sys.Name(), js)
	b.ReportMetric(speakers, "idle_cpu_s_speakers")
	if _, ok := pids["controller"]; ok {
		b.ReportMetric(ctrlCPU, "idle_cpu_s_controller")
	}
}
