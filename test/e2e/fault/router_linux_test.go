package fault_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/vipspeaker/vipspeaker/test/lab"
)

// FRR's bgpd and zebra on the router are killed (kill -9) and started
// again: the session with the node comes back, the new zebra has the VIP's
// route installed within 5 s of the new session (the agent announces at
// once), the client pings the VIP again, and no ping is lost but while the
// router's own kernel had no route (the restarted zebra sweeps the old
// one).
func TestRouterFRRKilledAndRestartedRecovers(t *testing.T) {
	b, p := startBGP(t, bgpOptions{})
	w := watchRoute(b.router, vipPrefix)

	for _, d := range []string{"bgpd", "zebra"} {
		kill9(t, b.frr.Process(d))
	}
	start := time.Now()
	for _, d := range []string{"zebra", "bgpd"} {
		if err := b.frr.Restart(d); err != nil {
			t.Fatal(err)
		}
	}
	restarted := time.Since(start)
	// The new bgpd counts sessions from zero.
	b.waitFreshSession(t, 0, routeBound)
	session := time.Since(start)
	lab.Eventually(t, routeBound, 20*time.Millisecond, func() error {
		var doc map[string][]struct {
			Protocol  string `json:"protocol"`
			Selected  bool   `json:"selected"`
			Installed bool   `json:"installed"`
		}
		if err := b.frr.VtyshJSON("show ip route "+vipPrefix+" json", &doc); err != nil {
			return err
		}
		for _, r := range doc[vipPrefix] {
			if r.Protocol == "bgp" && r.Selected && r.Installed {
				return nil
			}
		}
		return fmt.Errorf("the router's new zebra has no installed bgp route to %s: %+v", vipPrefix, doc[vipPrefix])
	})
	installed := time.Since(start)
	waitRoute(t, b.router, vipPrefix, routeBound)
	pings := waitPings(t, p, routeBound, "the router's FRR restart")
	// Past End-of-RIB: the route stays and every ping is answered.
	p.waitPast(t, 3*time.Second)
	w.Stop()
	r := p.result()
	t.Logf("FRR restarted in %v; session Established after %v; route installed by the new zebra after %v; 20 pings in a row answered %v after that (200 ms at the least)",
		restarted.Round(time.Millisecond), session.Round(time.Millisecond), installed.Round(time.Millisecond), pings.Round(time.Millisecond))
	t.Logf("router's kernel route to %s: %v", vipPrefix, w)
	t.Logf("client: %v", r)
	if d := installed - session; d > 5*time.Second {
		t.Errorf("the route was installed %v after the new session came up, want ≤ 5 s", d)
	}
	if w.gaps > 1 {
		t.Errorf("the router's route went more than once: %v", w)
	}
	// Pings sent while the router had no route, and a few either side
	// (the watch polls every 10 ms).
	if budget := int(w.missing/pingInterval) + 10; r.Lost() > budget {
		t.Errorf("%d pings lost, more than the router's %v without a route explains (%d)", r.Lost(), w.missing, budget)
	}
	if b.agent().Exited() {
		t.Errorf("the agent exited during the router's FRR restart:\n%s", lab.Tail(b.agent().Log(), 20))
	}
}

// FRR's zebra on a node in zebra mode restarts — stopped cleanly
// (SIGTERM) or killed (kill -9), then started again: the router never
// loses the VIP's route (docs/zebra.md). The way back to the client is the
// router's default route, which the node's zebra installs: the restarted
// zebra has it again within 15 s, and no ping is lost but while the node
// lacked it (docs/zebra.md says so).
func TestNodeZebraRestartKeepsVIPReachable(t *testing.T) {
	for _, how := range []string{"sigterm", "kill9"} {
		t.Run(how, func(t *testing.T) { nodeZebraRestart(t, how == "kill9") })
	}
}

func nodeZebraRestart(t *testing.T, kill bool) {
	b := newBGPLab(t, bgpOptions{zebra: true})
	b.start(t)
	waitRoute(t, b.node, "0.0.0.0/0", routeBound) // the router's default, through zebra
	waitRoute(t, b.router, vipPrefix, routeBound)
	b.waitFreshSession(t, 0, routeBound)
	p := startPinger(t, b.client, vip)
	w := watchRoute(b.router, vipPrefix)
	back4 := watchRoute(b.node, "0.0.0.0/0")

	start := time.Now()
	if kill {
		kill9(t, b.nodeFRR.Process("zebra"))
	}
	if err := b.nodeFRR.Restart("zebra"); err != nil {
		t.Fatal(err)
	}
	restarted := time.Since(start)
	waitRoute(t, b.router, vipPrefix, routeBound)
	pings := waitPings(t, p, routeBound, "the node's zebra restart")
	back := time.Since(start)
	// Past End-of-RIB: the route stays and every ping is answered.
	p.waitPast(t, 3*time.Second)
	w.Stop()
	back4.Stop()
	r := p.result()
	t.Logf("zebra restarted in %v; 20 pings in a row answered %v after the restart began (%v after zebra was back; 200 ms at the least)",
		restarted.Round(time.Millisecond), back.Round(time.Millisecond), pings.Round(time.Millisecond))
	t.Logf("router's kernel route to %s: %v", vipPrefix, w)
	t.Logf("node's default route (the way back to the client, installed by zebra): %v", back4)
	t.Logf("client: %v", r)
	if w.gaps != 0 {
		t.Errorf("the router's route to %s went during the node's zebra restart: %v", vipPrefix, w)
	}
	if back4.missing > 15*time.Second {
		t.Errorf("the node was without its default route for %v, want ≤ 15 s", back4.missing)
	}
	if budget := int(back4.missing/pingInterval) + 10; r.Lost() > budget {
		t.Errorf("%d pings lost, more than the node's %v without its way back explains (%d)", r.Lost(), back4.missing, budget)
	}
	if b.agent().Exited() {
		t.Errorf("the agent exited during the node's zebra restart:\n%s", lab.Tail(b.agent().Log(), 20))
	}
}
