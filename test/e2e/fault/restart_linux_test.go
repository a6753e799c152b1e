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
	for range kills {
		kill9(t, b.agent)
		start := time.Now()
		b.start(t)
		s = b.waitFreshSession(t, s.Established, routeBound)
		restarts = append(restarts, time.Since(start).Round(time.Millisecond))
	}
	// Past FRR's End-of-RIB handling of the last session: a stale route
	// would be flushed in this window.
	time.Sleep(2 * time.Second)
	r := p.result()
	t.Logf("%d kill -9 restarts, fresh session after each: %v", kills, restarts)
	t.Logf("BGP VIP %s: %v", vip, r)
	if r.Sent < 100*kills {
		t.Errorf("only %d pings sent during %d restarts: the measurement is too short to mean anything", r.Sent, kills)
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

// Ten kill -9 restarts of the agent of the node the client sends the
// layer2 VIP's traffic to (read from the client's neighbour table before
// each kill), each restarted at once, while the client pings every 10 ms:
// each kill may cost at most the failover budget, one second of requests
// (100).
func TestKill9RestartsLayer2VIPWithinFailoverBudget(t *testing.T) {
	const budget = 100 // requests: 1 s at 10 ms
	tp := newL2Lab(t, nil)
	tp.start(t, 0)
	tp.start(t, 1)
	owner := tp.waitOneOwner(t)
	p := startPinger(t, tp.client, vip)
	t.Logf("node%d answers ARP for %s; the client sends to node%d", owner, vip, tp.clientsOwner(t))

	var at []time.Time
	var victims []int
	for range kills {
		o := tp.clientsOwner(t)
		if o < 0 {
			t.Fatalf("the client has no neighbour entry for %s while pinging it", vip)
		}
		at = append(at, time.Now())
		victims = append(victims, o)
		kill9(t, tp.agents[o])
		tp.start(t, o)
		// Settled: the VIP answers again, and membership had time to
		// converge, so the next kill meets a steady state.
		waitPings(t, p, routeBound, fmt.Sprintf("kill -9 of node%d's agent", o))
		time.Sleep(2 * time.Second)
	}
	r := p.result()
	at = append(at, time.Now().Add(time.Hour))
	per := make([]int, kills)
	worst := 0
	for i := range kills {
		per[i] = r.LostBetween(at[i], at[i+1])
		worst = max(worst, per[i])
	}
	t.Logf("layer2 VIP %s: %v", vip, r)
	t.Logf("killed agents (node index) %v; lost pings per kill %v (budget %d each)", victims, per, budget)
	if r.Sent < 100*kills {
		t.Errorf("only %d pings sent during %d restarts: the measurement is too short to mean anything", r.Sent, kills)
	}
	for i, n := range per {
		if n > budget {
			t.Errorf("kill %d (node%d): %d pings lost, more than the failover budget of %d (1 s)", i+1, victims[i], n, budget)
		}
	}
	// After all that, exactly one node still answers ARP for the VIP.
	tp.waitOneOwner(t)
}
