package fault_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/vipspeaker/vipspeaker/test/lab"
)

// FRR's bgpd and zebra on the router are killed (kill -9) and started
// again: the session with the node comes back, the new zebra has the VIP's
// route installed, the router's kernel routes it, and the client pings the
// VIP again — each within 30 s.
func TestRouterFRRKilledAndRestartedRecovers(t *testing.T) {
	b := newBGPLab(t, bgpOptions{})
	b.start(t)
	waitRoute(t, b.router, vipPrefix, routeBound)
	b.waitFreshSession(t, 0, routeBound)
	p := startPinger(t, b.client, vip)
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
	time.Sleep(3 * time.Second) // past End-of-RIB: the route must stay
	if err := hasRoute(b.router, vipPrefix); err != nil {
		t.Errorf("after the recovery: %v", err)
	}
	waitPings(t, p, 10*time.Second, "the router's FRR restart (3 s later)")
	w.Stop()
	r := p.result()
	t.Logf("FRR restarted in %v; session Established after %v; route installed by the new zebra after %v; 20 pings in a row answered %v after that (200 ms at the least)",
		restarted.Round(time.Millisecond), session.Round(time.Millisecond), installed.Round(time.Millisecond), pings.Round(time.Millisecond))
	t.Logf("router's kernel route to %s: %v", vipPrefix, w)
	t.Logf("client: %v", r)
	if b.agent.Exited() {
		t.Errorf("the agent exited during the router's FRR restart:\n%s", tail(b.agent.Log(), 20))
	}
}

// FRR's zebra on a node in zebra mode restarts — stopped cleanly
// (SIGTERM) or killed (kill -9), then started again: the router keeps or
// regains the VIP's route and the client pings the VIP again within 30 s
// (the way back to the client is the router's default route, which the
// node's zebra installs). Lost pings and route gaps are reported.
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
	time.Sleep(3 * time.Second) // past End-of-RIB: the route must stay
	if err := hasRoute(b.router, vipPrefix); err != nil {
		t.Errorf("after the recovery: %v", err)
	}
	waitPings(t, p, 10*time.Second, "the node's zebra restart (3 s later)")
	w.Stop()
	back4.Stop()
	r := p.result()
	t.Logf("zebra restarted in %v; 20 pings in a row answered %v after the restart began (%v after zebra was back; 200 ms at the least)",
		restarted.Round(time.Millisecond), back.Round(time.Millisecond), pings.Round(time.Millisecond))
	t.Logf("router's kernel route to %s: %v", vipPrefix, w)
	t.Logf("node's default route (the way back to the client, installed by zebra): %v", back4)
	t.Logf("client: %v", r)
	if b.agent.Exited() {
		t.Errorf("the agent exited during the node's zebra restart:\n%s", tail(b.agent.Log(), 20))
	}
}
