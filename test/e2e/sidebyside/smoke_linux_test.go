package sidebyside

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vipspeaker/vipspeaker/test/lab"
)

// The smoke benchmarks check one system alone in the lab, once, with what
// a user sees: a BGP Service gets an address from the BGP pool and the
// router's kernel routes it through all three nodes, and the client's
// pings reach it; an L2 Service's address is answered on the segment by a
// node's MAC and pinged; a community set in the system's configuration
// shows up at the router without a session reset, and goes away again.
// They document how to check either side of BenchmarkSideBySide by itself:
//
//	go test -run '^$' -bench 'Smoke' -benchtime 1x ./test/e2e/sidebyside/ -v
func BenchmarkMetalLBSmoke(b *testing.B)    { smoke(b, newMetalLB(b)) }
func BenchmarkVipspeakerSmoke(b *testing.B) { smoke(b, newVipspeaker(b)) }

func smoke(b *testing.B, sys system) {
	start := time.Now()
	logf := func(format string, args ...any) {
		b.Helper()
		b.Logf("[%5.1fs] "+format, append([]any{time.Since(start).Seconds()}, args...)...)
	}
	e := newEnv(b, sys)
	logf("%s: lab up, all sessions established in %v", sys.Name(), time.Since(start).Round(time.Millisecond))

	// BGP: status address, then the route via every node, then a ping.
	at := e.createService(b, svc{name: "a", pool: "bgp"})
	vip := e.waitIngress(b, "a", 30*time.Second)
	statusAt := time.Now()
	if !netip.MustParsePrefix(bgpPool).Contains(vip) {
		b.Fatalf("%s: Service a got %s, outside the BGP pool %s", sys.Name(), vip, bgpPool)
	}
	e.proxy(b, vip)
	routedAt := e.waitHops(b, vip, len(nodeNames), 5*time.Millisecond, 30*time.Second)
	logf("%s: BGP Service → status %s in %v, → route via %d next hops in %v", sys.Name(), vip,
		statusAt.Sub(at).Round(time.Millisecond), len(nodeNames), routedAt.Sub(at).Round(time.Millisecond))
	b.ReportMetric(msec(routedAt.Sub(at)), "bgp-route-ms")
	if err := e.client.Ping(vip.String()); err != nil {
		b.Fatalf("%s: %v", sys.Name(), err)
	}

	// L2: once every speaker says it is ready for it, the address answered
	// by a node's MAC, then a ping.
	if r, ok := sys.(interface{ ready(string) bool }); ok {
		lab.Eventually(b, 30*time.Second, 10*time.Millisecond, func() error {
			for _, n := range nodeNames {
				if !r.ready(n) {
					return fmt.Errorf("%s: speaker on %s not ready for L2", sys.Name(), n)
				}
			}
			return nil
		})
		logf("%s: every speaker ready for L2 %v after the lab's start", sys.Name(), time.Since(start).Round(time.Millisecond))
	}
	at = e.createService(b, svc{name: "l", pool: "l2"})
	l2 := e.waitIngress(b, "l", 30*time.Second)
	if !netip.MustParsePrefix(l2Pool).Contains(l2) {
		b.Fatalf("%s: Service l got %s, outside the L2 pool %s", sys.Name(), l2, l2Pool)
	}
	e.proxy(b, l2)
	var macs []string
	lab.Eventually(b, 30*time.Second, 0, func() error {
		var err error
		macs, err = e.arping(l2)
		return err
	})
	answeredAt := time.Now()
	for _, mac := range macs {
		if e.nodeOfMAC(mac) == "" {
			b.Fatalf("%s: %s answered by %s, no node's MAC (%v)", sys.Name(), l2, mac, e.macs)
		}
	}
	logf("%s: L2 Service → %s answered by %v in %v", sys.Name(), l2, e.nodesOfMACs(macs), answeredAt.Sub(at).Round(time.Millisecond))
	b.ReportMetric(msec(answeredAt.Sub(at)), "l2-answer-ms")
	if err := e.client.Ping(l2.String()); err != nil {
		b.Fatalf("%s: %v", sys.Name(), err)
	}
	logf("%s: %s pinged", sys.Name(), l2)
	// Once the speakers agree, exactly one node answers.
	owner := e.waitOneOwner(b, l2)
	logf("%s: %s answered by %s alone", sys.Name(), l2, owner)

	// A community: at the router, with no session reset; then removed.
	before := e.sessionsEstablished(b)
	const community = "64512:100"
	at = time.Now()
	sys.SetCommunity(b, e, community)
	seenAt := e.waitCommunity(b, vip, community, true)
	logf("%s: community %s at FRR %v after the change", sys.Name(), community, seenAt.Sub(at).Round(time.Millisecond))
	b.ReportMetric(msec(seenAt.Sub(at)), "community-ms")
	at = time.Now()
	sys.SetCommunity(b, e, "")
	goneAt := e.waitCommunity(b, vip, community, false)
	logf("%s: community gone from FRR %v after the change", sys.Name(), goneAt.Sub(at).Round(time.Millisecond))
	after := e.sessionsEstablished(b)
	resets := 0
	for a, n := range after {
		resets += n - before[a]
	}
	logf("%s: sessions re-established during the community changes: %d", sys.Name(), resets)
	b.ReportMetric(float64(resets), "session-resets")

	// The L2 owner's speaker restarted as a rolling update does (kill -9,
	// start again): its session and routes come back, it sees the others
	// again, and one node answers for the L2 VIP.
	n := owner
	at = time.Now()
	if err := sys.Speaker(n).Kill(); err != nil {
		b.Fatal(err)
	}
	lab.Eventually(b, 10*time.Second, 5*time.Millisecond, func() error {
		if st, err := e.frr.PeerState(nodeAddr(n)); err != nil || st == "Established" {
			return fmt.Errorf("%s: FRR's session with %s still %q after kill -9 (%v)", sys.Name(), n, st, err)
		}
		return nil
	})
	downAt := time.Now()
	sys.StartSpeaker(b, e, n)
	// Meanwhile, who answers for the L2 VIP (informational: a speaker
	// that has not yet found the others may answer too).
	split := make(chan []string, 1)
	go func() {
		var most []string
		for end := time.Now().Add(3 * time.Second); time.Now().Before(end); {
			if macs, err := e.arping(l2); err == nil && len(macs) > len(most) {
				most = e.nodesOfMACs(macs)
			}
		}
		split <- most
	}()
	if err := e.frr.WaitEstablished(nodeAddr(n), 60*time.Second); err != nil {
		b.Fatalf("%s: FRR and restarted %s: %v", sys.Name(), n, err)
	}
	upAt := time.Now()
	hopsAt := e.waitHops(b, vip, len(nodeNames), 5*time.Millisecond, 30*time.Second)
	logf("%s: %s killed: session down at FRR after %v; started again: session up %v later, route via %d next hops %v later",
		sys.Name(), n, downAt.Sub(at).Round(time.Millisecond), upAt.Sub(downAt).Round(time.Millisecond), len(nodeNames), hopsAt.Sub(downAt).Round(time.Millisecond))
	if r, ok := sys.(interface{ ready(string) bool }); ok {
		lab.Eventually(b, 60*time.Second, 10*time.Millisecond, func() error {
			for _, n := range nodeNames {
				if !r.ready(n) {
					return fmt.Errorf("%s: speaker on %s not ready for L2 after the restart", sys.Name(), n)
				}
			}
			return nil
		})
		logf("%s: every speaker ready for L2 %v after the restart", sys.Name(), time.Since(downAt).Round(time.Millisecond))
	}
	logf("%s: most nodes answering for %s in one ARP exchange in the 3 s after the restart: %v", sys.Name(), l2, <-split)
	logf("%s: %s answered by %s alone after the restart", sys.Name(), l2, e.waitOneOwner(b, l2))
}

// waitOneOwner waits until exactly one node answers ARP for addr and
// returns that node.
func (e *env) waitOneOwner(t testing.TB, addr netip.Addr) string {
	t.Helper()
	var owner string
	lab.Eventually(t, 30*time.Second, 200*time.Millisecond, func() error {
		macs, err := e.arping(addr)
		if err != nil {
			return err
		}
		if len(macs) != 1 {
			return fmt.Errorf("%s: %s answered by %v, want one node", e.sys.Name(), addr, e.nodesOfMACs(macs))
		}
		owner = e.nodeOfMAC(macs[0])
		return nil
	})
	return owner
}

func msec(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// arping asks for addr from the client once and returns the MACs that
// answered (one line each with -r), or an error when none did.
func (e *env) arping(addr netip.Addr) ([]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, _ := e.client.Run(ctx, "arping", "-i", "eth0", "-c", "1", "-w", "0.1", "-r", addr.String())
	var macs []string
	for _, l := range strings.Fields(out) {
		if strings.Count(l, ":") == 5 && !slices.Contains(macs, l) {
			macs = append(macs, l)
		}
	}
	if len(macs) == 0 {
		return nil, fmt.Errorf("%s: no ARP answer for %s: %s", e.sys.Name(), addr, strings.TrimSpace(out))
	}
	return macs, nil
}

func (e *env) nodeOfMAC(mac string) string {
	for n, m := range e.macs {
		if strings.EqualFold(m, mac) {
			return n
		}
	}
	return ""
}

func (e *env) nodesOfMACs(macs []string) []string {
	var out []string
	for _, m := range macs {
		out = append(out, e.nodeOfMAC(m))
	}
	slices.Sort(out)
	return out
}

// sessionsEstablished is FRR's count of established sessions per node
// (connectionsEstablished: it grows by one on every reset).
func (e *env) sessionsEstablished(t testing.TB) map[string]int {
	t.Helper()
	var nb map[string]struct {
		ConnectionsEstablished int `json:"connectionsEstablished"`
	}
	if err := e.frr.VtyshJSON("show bgp neighbors json", &nb); err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, n := range nodeNames {
		out[n] = nb[nodeAddr(n)].ConnectionsEstablished
	}
	return out
}

// waitCommunity waits until every path FRR has for vip carries community
// (present) or none does (!present), and returns when it saw that.
func (e *env) waitCommunity(t testing.TB, vip netip.Addr, community string, present bool) time.Time {
	t.Helper()
	var at time.Time
	lab.Eventually(t, 30*time.Second, 5*time.Millisecond, func() error {
		var r struct {
			Paths []struct {
				Community struct {
					List []string `json:"list"`
				} `json:"community"`
			} `json:"paths"`
		}
		out, err := e.frr.Vtysh(fmt.Sprintf("show bgp ipv4 unicast %s/32 json", vip))
		if err != nil {
			return err
		}
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			return fmt.Errorf("show bgp %s: %w", vip, err)
		}
		if len(r.Paths) == 0 {
			return fmt.Errorf("%s: FRR has no path for %s", e.sys.Name(), vip)
		}
		for _, p := range r.Paths {
			if slices.Contains(p.Community.List, community) != present {
				return fmt.Errorf("%s: FRR's paths for %s: community %s present=%v wanted on every path: %s", e.sys.Name(), vip, community, present, out)
			}
		}
		at = time.Now()
		return nil
	})
	return at
}
