// Package bgp_test runs the real vipspeaker binary as a BGP speaker in a lab
// (network namespaces) against real FRR and BIRD, and asserts on what the
// router sees: its BGP table (vtysh JSON, birdc) and its kernel routes.
//
// Topology: one router namespace; node i (1-based) is linked to it with
// 198.18.i.2/30 and 2001:db8:18:i::2/64 on its eth0, the router holding .1.
// The router is AS 65000; nodes are AS 65001 (eBGP) unless a test says
// otherwise. VIPs come from Service manifests in the node's services
// folder; gobgp.conf lives in its config folder.
package bgp_test

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vipspeaker/vipspeaker/internal/nstest"
	"github.com/vipspeaker/vipspeaker/test/lab"
)

// node is one node of the lab (its agent in standalone mode).
type node struct{ *lab.Node }

type topo struct {
	*lab.Routed
	nodes []*node
}

func newTopo(t testing.TB, nodes int) *topo {
	t.Helper()
	lab.RequireFRR(t)
	tp := &topo{Routed: lab.NewRouted(t, lab.RoutedOptions{Nodes: nodes})}
	for _, n := range tp.Nodes {
		tp.nodes = append(tp.nodes, &node{n})
	}
	return tp
}

// newNode is a lab of one node.
func newNode(t testing.TB) (*topo, *node) {
	t.Helper()
	tp := newTopo(t, 1)
	return tp, tp.nodes[0]
}

// frrNeighbor is the per-node part of the router's bgpd config.
type frrNeighbor struct {
	as      int
	extra   []string // lines under "router bgp", %[1]s is the neighbor address
	v6Extra []string // lines under address-family ipv6 unicast
}

// startFRR starts zebra, bgpd (and bfdd when bfdd is set) on the router,
// peering with every node over IPv4 for both address families.
// nodeWithFRRAndBIRD is a node peering with the topology's FRR (eBGP) and
// with a BIRD router (AS 65100, 198.18.101.1) on a link of its own that
// imports everything the node sends; it skips without BIRD.
func nodeWithFRRAndBIRD(t testing.TB) (*topo, *node, *lab.BIRD) {
	t.Helper()
	if err := lab.HaveBIRD(); err != nil {
		nstest.Skip(t, "%v", err)
	}
	tp, n := newNode(t)
	bh := tp.Lab.MustHost("bird")
	tp.Lab.MustLink(bh, "eth0", []string{"198.18.101.1/30"}, n.Host, "eth1", []string{"198.18.101.2/30"})
	bird, err := bh.StartBIRD(`router id 198.18.101.1;
protocol device {}
protocol bgp node1 {
  local 198.18.101.1 as 65100;
  neighbor 198.18.101.2 as 65001;
  connect retry time 1;
  ipv4 { import all; export none; };
}
`)
	if err != nil {
		t.Fatal(err)
	}
	tp.startFRR(t, nil, ebgp, "")
	return tp, n, bird
}

func (tp *topo) startFRR(t testing.TB, global []string, per func(n *node) frrNeighbor, bfdd string) {
	t.Helper()
	conf := lab.FRRBGPConf{AS: 65000, RouterID: "198.18.0.1", Global: global, MaximumPaths: 8, MaximumPathsIBGP: 8,
		Neighbors: tp.FRRNeighbors(0)}
	for i, n := range tp.nodes {
		nb, fn := per(n), &conf.Neighbors[i]
		fn.AS = nb.as
		for _, e := range nb.extra {
			fn.Lines = append(fn.Lines, strings.ReplaceAll(e, "%[1]s", n.Addr4))
		}
		for _, e := range nb.v6Extra {
			fn.IPv6Lines = append(fn.IPv6Lines, strings.ReplaceAll(e, "%[1]s", n.Addr4))
		}
	}
	if _, err := tp.StartFRR(conf, bfdd); err != nil {
		t.Fatal(err)
	}
}

// bothSessions is the router's neighbor config for a node in AS as over
// IPv4 and over IPv6 transport, the IPv6 session activated in ipv6
// unicast after v6Lines.
func bothSessions(as int, v6Lines ...string) func(n *node) frrNeighbor {
	return func(n *node) frrNeighbor {
		return frrNeighbor{as: as,
			extra:   []string{fmt.Sprintf("neighbor %s remote-as %d", n.Addr6, as), "neighbor " + n.Addr6 + " timers connect 1"},
			v6Extra: append(v6Lines, "neighbor "+n.Addr6+" activate"),
		}
	}
}

// announceWeb starts FRR (global lines under router bgp, eBGP to one node)
// and the node's agent (graceful restart if gr) with the Service web on
// 203.0.113.10 and 2001:db8:100::10, and waits for the session.
func announceWeb(t testing.TB, global []string, gr bool) (*topo, *node) {
	t.Helper()
	tp, n := newNode(t)
	tp.startFRR(t, global, ebgp, "")
	n.writeConf(t, n.gobgpConf(65001, "", "", gr))
	n.service(t, "web", "", "203.0.113.10", "2001:db8:100::10")
	n.start(t)
	tp.waitEstablished(t, n)
	return tp, n
}

func ebgp(n *node) frrNeighbor { return frrNeighbor{as: 65001} }

// gobgpConf is a node's gobgp.conf: one neighbor, the router; router-id left
// empty (the node's own address is used). extraNeighbor goes inside
// [[neighbors]] after its config table; extra goes at the end.
func (n *node) gobgpConf(as int, extraNeighbor, extra string, gr bool) string {
	nb := n.RouterGoBGP()
	nb.GracefulRestart, nb.Extra = gr, extraNeighbor
	return lab.GoBGPConf{AS: as, Neighbors: []lab.GoBGPNeighbor{nb}, Extra: extra}.String()
}

func (n *node) writeConf(t testing.TB, conf string) {
	t.Helper()
	if err := n.WriteConfig("gobgp.conf", conf); err != nil {
		t.Fatal(err)
	}
}

// service writes a Service manifest asking for addrs, with communities
// (comma separated, "" for none).
func (n *node) service(t testing.TB, name, communities string, addrs ...string) {
	t.Helper()
	if err := n.WriteService(lab.ServiceFile{Name: name, Addresses: addrs, Communities: communities}); err != nil {
		t.Fatal(err)
	}
}

func (n *node) removeService(t testing.TB, name string) {
	t.Helper()
	if err := n.RemoveService(name); err != nil {
		t.Fatal(err)
	}
}

func (n *node) start(t testing.TB, extra ...string) {
	t.Helper()
	p, err := n.Start(extra...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Signal(syscall.SIGCONT) }) // a frozen agent cannot stop
}

// kernelRoute returns the router's kernel route to prefix.
func (tp *topo) kernelRoute(prefix string) (lab.KernelRoute, bool) {
	r, ok, err := tp.Router.KernelRoute(prefix)
	if err != nil {
		return lab.KernelRoute{}, false
	}
	return r, ok
}

// waitKernelRoute waits until the router's kernel routes prefix via exactly
// the gateways given (in any order).
func (tp *topo) waitKernelRoute(t testing.TB, prefix string, gws ...string) {
	t.Helper()
	if err := tp.Router.WaitGateways(prefix, 20*time.Second, gws...); err != nil {
		t.Fatal(err)
	}
}

func (tp *topo) waitNoKernelRoute(t testing.TB, prefix string) {
	t.Helper()
	tp.waitKernelRoute(t, prefix)
}

// frrPath is what the tests read of one path in FRR's BGP table.
type frrPath = lab.PrefixPath

func (tp *topo) frrPaths(afi, prefix string) ([]frrPath, error) {
	return tp.FRR.PrefixPaths(afi, prefix)
}

// frrSession is FRR's view of its session with a node.
type frrSession = lab.Session

func (tp *topo) session(t testing.TB, n *node) frrSession {
	t.Helper()
	s, err := tp.FRR.Session(n.Addr4)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (tp *topo) waitEstablished(t testing.TB, n *node) {
	t.Helper()
	if err := tp.FRR.WaitEstablished(n.Addr4, 30*time.Second); err != nil {
		t.Fatal(err)
	}
}

// waitNewSession waits until FRR has an Established session with n newer
// than the after-th.
func (tp *topo) waitNewSession(t testing.TB, n *node, after int) {
	t.Helper()
	lab.Eventually(t, 30*time.Second, 20*time.Millisecond, func() error {
		if s := tp.session(t, n); s.State != "Established" || s.Established <= after {
			return fmt.Errorf("no new session yet: %+v", s)
		}
		return nil
	})
}

// waitFresh waits until FRR's path to the IPv4 prefix is fresh (not
// stale): sent again by the agent, which (say: "the new agent").
func (tp *topo) waitFresh(t testing.TB, prefix, which string) {
	t.Helper()
	lab.Eventually(t, 15*time.Second, 20*time.Millisecond, func() error {
		ps, err := tp.frrPaths("ipv4", prefix)
		if err != nil || len(ps) == 0 || ps[0].Stale {
			return fmt.Errorf("route not refreshed by %s: %+v %v", which, ps, err)
		}
		return nil
	})
}

// waitLog waits until the agent's log holds every one of subs.
func (n *node) waitLog(t testing.TB, subs ...string) {
	t.Helper()
	lab.Eventually(t, 10*time.Second, 50*time.Millisecond, func() error {
		log := n.Proc.Log()
		for _, s := range subs {
			if !strings.Contains(log, s) {
				return fmt.Errorf("agent log on %s lacks %q", n.Host.Name(), s)
			}
		}
		return nil
	})
}

func runCtx(t testing.TB, h *lab.Host, argv ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := h.Run(ctx, argv...)
	if err != nil {
		t.Fatalf("%v: %v\n%s", argv, err, out)
	}
	return out
}
