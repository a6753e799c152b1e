package fault_test

import (
	"fmt"
	"testing"
	"time"
)

const kills = 10

// Ten kill -9 restarts of the agent (each restarted at once, the next kill
// once the router has a fresh session and path) while the client pings the
// BGP VIP every 10 ms through the router: with graceful restart on both
// sides not one request may go unanswered.
func TestKill9RestartsBGPVIPLosesNoPing(t *testing.T) {
	b := newBGPLab(t, bgpOptions{})
	b.start(t)
	waitRoute(t, b.router, vipPrefix, routeBound)
	s := b.waitFreshSession(t, 0, routeBound)
	p := startPinger(t, b.client, vip)

	var restarts []time.Duration
	begin := time.Now()
	for range kills {
		kill9(t, b.agent())
		start := time.Now()
		b.start(t)
		s = b.waitFreshSession(t, s.Established, routeBound)
		restarts = append(restarts, time.Since(start).Round(time.Millisecond))
	}
	// Past FRR's End-of-RIB handling of the last session: a stale route
	// would be flushed in this window.
	w := watchRoute(b.router, vipPrefix)
	p.waitPast(t, 2*time.Second)
	if w.Stop(); w.gaps != 0 {
		t.Errorf("router's route to %s after the last restart: %v", vipPrefix, w)
	}
	r := p.result()
	t.Logf("%d kill -9 restarts, fresh session after each: %v", kills, restarts)
	t.Logf("BGP VIP %s: %v", vip, r)
	// The pinger must have kept its pace over all the kills (a stalled
	// pinger would hide losses).
	span := time.Since(begin)
	if want := int(span/pingInterval) * 8 / 10; r.Sent < want || r.Sent < 20*kills {
		t.Errorf("only %d pings sent over %v of %d restarts (want at least %d: 80%% of one per %v, and 20 per kill): the measurement means nothing", r.Sent, span.Round(time.Millisecond), kills, max(want, 20*kills), pingInterval)
	}
	if r.Lost() != 0 {
		n, d := r.LongestOutage()
		t.Errorf("%d pings to the BGP VIP were lost during %d kill -9 restarts, the longest outage %d requests (%v); graceful restart must lose none",
			r.Lost(), kills, n, d.Round(time.Millisecond))
	}
	if err := hasRoute(b.router, vipPrefix); err != nil {
		t.Error(err)
	}
}

// Ten kill -9 restarts of the agent of the node that answers ARP for the
// layer2 VIP, each restarted at once, while the client pings the VIP every
// 10 ms and asks for it with ARP every 10 ms (lab.ARPProber). At each kill
// the client's neighbour entry is flushed (and its kernel re-asks every
// 10 ms), as for a client whose entry expires during the failover:
// otherwise the old MAC carries the pings (every node holds the VIP on
// kube-lb0) and no failover shows. Each kill may cost one failover at most:
// no ARP outage of a second or more (README: failover in under a second),
// and no ping lost that the ARP outage does not explain.
func TestKill9RestartsLayer2VIPWithinFailoverBudget(t *testing.T) {
	tp := newL2Lab(t, nil)
	run(t, tp.client, "sysctl", "-qw", "net.ipv4.neigh.br0.retrans_time_ms=10")
	tp.start(t, 0)
	tp.start(t, 1)
	tp.waitOneOwner(t)
	p := startPinger(t, tp.client, vip)
	arp := tp.StartProber(t, vip, pingInterval)

	var at []time.Time
	var victims []int
	for range kills {
		// Settled: exactly one node answers, so the kill meets a steady
		// state.
		o := tp.waitOneOwner(t)
		at = append(at, time.Now())
		victims = append(victims, o)
		kill9(t, tp.Nodes[o].Proc)
		run(t, tp.client, "ip", "neigh", "flush", "to", vip, "dev", "br0")
		tp.start(t, o)
		waitPings(t, p, routeBound, fmt.Sprintf("kill -9 of node%d's agent", o))
		tp.waitJoined(t, o)
	}
	r := p.result()
	arp.Stop(100 * time.Millisecond)
	at = append(at, arp.LastSent())
	lost := make([]int, kills)
	outages := make([]time.Duration, kills)
	for i := range kills {
		lost[i] = r.LostBetween(at[i], at[i+1])
		_, outages[i] = arp.Unanswered(at[i], at[i+1])
	}
	t.Logf("layer2 VIP %s: %v", vip, r)
	t.Logf("killed agents (node index) %v; ARP outage per kill %v; pings lost per kill %v", victims, outages, lost)
	// The pinger must have kept its pace over all the kills (a stalled
	// pinger would hide losses); how long the kills take is not the
	// point — on a quiet machine ten of them pass in about nine seconds.
	span := at[kills].Sub(at[0])
	if want := int(span/pingInterval) * 8 / 10; r.Sent < want || r.Sent < 20*kills {
		t.Errorf("only %d pings sent over %v of %d restarts (want at least %d: 80%% of one per %v, and 20 per kill): the measurement means nothing", r.Sent, span.Round(time.Millisecond), kills, max(want, 20*kills), pingInterval)
	}
	for i := range kills {
		if outages[i] >= failoverBound {
			t.Errorf("kill %d (node%d): ARP for %s unanswered for %v, want < %v", i+1, victims[i], vip, outages[i], failoverBound)
		}
		// The kernel re-asks every 10 ms and the pinger sends every
		// 10 ms: a few pings around the outage's ends may go too.
		if budget := int(outages[i]/pingInterval) + 3; lost[i] > budget {
			t.Errorf("kill %d (node%d): %d pings lost, more than the ARP outage of %v explains (%d)", i+1, victims[i], lost[i], outages[i], budget)
		}
	}
	// After all that, exactly one node still answers ARP for the VIP.
	tp.waitOneOwner(t)
}
