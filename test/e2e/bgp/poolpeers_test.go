package bgp_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/vipspeaker/vipspeaker/status"
	"github.com/vipspeaker/vipspeaker/test/lab"
)

// [pools.advertise] peers: the node peers with FRR and BIRD; pool a goes
// to FRR only, pool b (announced as its /25) to BIRD only. Pool c goes to BIRD only too, but the
// user's own export policy accepts c's prefix first, so FRR gets it as
// well (the user's policy decides before the agent's), and that policy's
// community reaches FRR on a's path. A reload moves a to BIRD and clears
// b's peers (b then goes to both) with no session reset on either side; a
// reload naming a peer gobgp.conf does not define is refused with its
// line, and the routes stay where they are.
func TestPoolPeersAtFRRAndBIRD(t *testing.T) {
	t.Parallel()
	tp, n, bird := nodeWithFRRAndBIRD(t)
	const birdAddr = "198.18.101.1"
	// the user's policy: a community on every path, and c's prefix
	// accepted towards every peer
	policy := "\n" + lab.GoBGPPolicy{Name: "mine", Default: "accept-route",
		PrefixSets: []lab.GoBGPPrefixSet{{Name: "pool-c", Prefix: "198.51.100.0/24", MaskRange: "24..32"}},
		Statements: []lab.GoBGPStatement{
			{Name: "tag", AddCommunities: []string{"65001:7"}},
			{Name: "c-everywhere", PrefixSet: "pool-c", Disposition: "accept-route"},
		},
	}.String()
	birdNeighbor := "\n" + lab.GoBGPNeighbor{Address: birdAddr, PeerAS: 65100, ConnectRetry: 1}.String()
	n.writeConf(t, n.gobgpConf(65001, "", birdNeighbor+policy, false))
	pools := func(a, b string) string {
		return fmt.Sprintf(`[[pools]]
name = "a"
addresses = ["203.0.113.0/25"]
  [pools.advertise]
  peers = [%s]

[[pools]]
name = "b"
addresses = ["203.0.113.128/25"]
  [pools.advertise]
  aggregation-length = 25
  peers = [%s]

[[pools]]
name = "c"
addresses = ["198.51.100.0/24"]
  [pools.advertise]
  peers = [%q]
`, a, b, birdAddr)
	}
	q := func(s string) string { return fmt.Sprintf("%q", s) }
	if err := n.WriteConfig("vipspeaker.toml", pools(q(n.Peer4), q(birdAddr))); err != nil {
		t.Fatal(err)
	}
	n.service(t, "web-a", "", "203.0.113.10")
	n.service(t, "web-b", "", "203.0.113.140")
	n.service(t, "web-c", "", "198.51.100.10")
	t0 := time.Now()
	n.start(t)
	tp.waitEstablished(t, n)
	if err := bird.WaitEstablished("node1", 30*time.Second); err != nil {
		t.Fatal(err)
	}

	// where each VIP is, at both routers, once every expected route is in
	where := func(frr, birdHas, birdHasNot []string) {
		t.Helper()
		for _, p := range frr {
			tp.waitKernelRoute(t, p, n.Addr4)
		}
		lab.Eventually(t, 10*time.Second, 50*time.Millisecond, func() error {
			out, err := bird.Birdc("show route all")
			if err != nil {
				return err
			}
			for _, p := range birdHas {
				if !strings.Contains(out, p) {
					return fmt.Errorf("BIRD has no %s:\n%s", p, out)
				}
			}
			for _, p := range birdHasNot {
				if strings.Contains(out, p) {
					return fmt.Errorf("BIRD has %s, whose pool does not name it:\n%s", p, out)
				}
			}
			return nil
		})
	}
	frrHasNot := func(p string) {
		t.Helper()
		lab.Eventually(t, 10*time.Second, 50*time.Millisecond, func() error {
			if ps, err := tp.frrPaths("ipv4", p); err == nil && len(ps) > 0 {
				return fmt.Errorf("FRR has %s, whose pool does not name it: %+v", p, ps)
			}
			if _, ok := tp.kernelRoute(p); ok {
				return fmt.Errorf("FRR's kernel routes %s", p)
			}
			return nil
		})
	}
	where([]string{"203.0.113.10/32", "198.51.100.10/32"}, []string{"203.0.113.128/25", "198.51.100.10/32"}, []string{"203.0.113.10"})
	frrHasNot("203.0.113.128/25")
	if ps, err := tp.frrPaths("ipv4", "203.0.113.10/32"); err != nil || len(ps) != 1 || ps[0].Community != "65001:7" {
		t.Errorf("a's path at FRR: %+v %v; want the user's policy's community 65001:7", ps, err)
	}
	t.Logf("%v: each pool at its router", time.Since(t0))
	frrBefore := tp.session(t, n)

	// a moves to BIRD, b's peers are cleared (both routers)
	if err := n.WriteConfig("vipspeaker.toml", pools(q(birdAddr), "")); err != nil {
		t.Fatal(err)
	}
	where([]string{"203.0.113.128/25", "198.51.100.10/32"}, []string{"203.0.113.10/32", "203.0.113.128/25", "198.51.100.10/32"}, nil)
	frrHasNot("203.0.113.10/32")
	if after := tp.session(t, n); after.Established != frrBefore.Established || after.Dropped != frrBefore.Dropped || after.State != "Established" {
		t.Errorf("the reload touched FRR's session: before %+v, after %+v", frrBefore, after)
	}
	noFlaps(t, n, bird)
	t.Logf("%v: moved by reload", time.Since(t0))

	// a peer gobgp.conf does not define: refused, with the line; the
	// routes stay
	if err := n.WriteConfig("vipspeaker.toml", pools(q("198.18.0.99"), "")); err != nil {
		t.Fatal(err)
	}
	n.waitLog(t, "configuration refused", "vipspeaker.toml:5: pools[0].advertise.peers[0]: 198.18.0.99 is not a neighbor in ")
	where([]string{"203.0.113.128/25", "198.51.100.10/32"}, []string{"203.0.113.10/32", "203.0.113.128/25"}, nil)
	frrHasNot("203.0.113.10/32")
	noFlaps(t, n, bird)
	t.Logf("%v: refused, routes kept", time.Since(t0))
}

// noFlaps checks that both sessions are up and were never reset: the
// agent's own count of transitions out of Established for each peer, and
// BIRD's protocol state.
func noFlaps(t *testing.T, n *node, bird *lab.BIRD) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := n.Host.Run(ctx, lab.Vipspeaker(t), "status", "-o", "json", "--run-dir", n.RunDir)
	if err != nil {
		t.Fatalf("vipspeaker status: %v\n%s", err, out)
	}
	var r status.Report
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("vipspeaker status -o json: %v\n%s", err, out)
	}
	if len(r.BGP.Peers) != 2 {
		t.Fatalf("agent's peers: %+v, want FRR and BIRD", r.BGP.Peers)
	}
	for _, p := range r.BGP.Peers {
		if p.State != "established" || p.Flaps != 0 {
			t.Errorf("agent's session with %s: %s after %d flaps; want established, never reset", p.Peer, p.State, p.Flaps)
		}
	}
	if st, info, err := bird.ProtocolState("node1"); err != nil || st != "up" || !strings.Contains(info, "Established") {
		t.Errorf("BIRD's session: %s %s %v", st, info, err)
	}
}
