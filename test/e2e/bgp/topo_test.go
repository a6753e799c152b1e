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
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vipspeaker/vipspeaker/internal/nstest"
	"github.com/vipspeaker/vipspeaker/test/lab"
)

type node struct {
	i       int
	h       *lab.Host
	addr4   string // the node's address on the link
	addr6   string
	peer4   string // the router's address on the link
	peer6   string
	confDir string
	svcDir  string
	runDir  string
	agent   *lab.Process
	starts  int
	bin     string
}

type topo struct {
	l      *lab.Lab
	router *lab.Host
	frr    *lab.FRR
	nodes  []*node
	bin    string
}

func newTopo(t testing.TB, nodes int) *topo {
	t.Helper()
	nstest.RequireRoot(t)
	if err := lab.HaveFRR(); err != nil {
		nstest.Skip(t, "%v", err)
	}
	bin, err := lab.BuildBinary("./cmd/vipspeaker")
	if err != nil {
		t.Fatalf("build vipspeaker: %v", err)
	}
	l := lab.New(t)
	tp := &topo{l: l, bin: bin, router: l.MustHost("router")}
	for i := 1; i <= nodes; i++ {
		n := &node{
			i:     i,
			h:     l.MustHost(fmt.Sprintf("node%d", i)),
			addr4: fmt.Sprintf("198.18.%d.2", i), addr6: fmt.Sprintf("2001:db8:18:%d::2", i),
			peer4: fmt.Sprintf("198.18.%d.1", i), peer6: fmt.Sprintf("2001:db8:18:%d::1", i),
			bin: bin,
		}
		l.MustLink(tp.router, fmt.Sprintf("n%d", i), []string{n.peer4 + "/30", n.peer6 + "/64"},
			n.h, "eth0", []string{n.addr4 + "/30", n.addr6 + "/64"})
		for _, r := range [][2]string{{"default", n.peer4}, {"default6", n.peer6}} {
			if err := n.h.AddRoute(r[0], r[1]); err != nil {
				t.Fatal(err)
			}
		}
		base := filepath.Join(l.Dir(), n.h.Name())
		n.confDir, n.svcDir, n.runDir = filepath.Join(base, "config"), filepath.Join(base, "services"), filepath.Join(base, "run")
		for _, d := range []string{n.confDir, n.svcDir} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		tp.nodes = append(tp.nodes, n)
	}
	if err := tp.router.EnableForwarding(); err != nil {
		t.Fatal(err)
	}
	return tp
}

// frrNeighbor is the per-node part of the router's bgpd config.
type frrNeighbor struct {
	as      int
	extra   []string // lines under "router bgp", %[1]s is the neighbor address
	v6Extra []string // lines under address-family ipv6 unicast
}

// startFRR starts zebra, bgpd (and bfdd when bfdd is set) on the router,
// peering with every node over IPv4 for both address families.
func (tp *topo) startFRR(t testing.TB, global []string, per func(n *node) frrNeighbor, bfdd string) {
	t.Helper()
	var b strings.Builder
	b.WriteString("frr defaults traditional\nhostname router\nlog stdout informational\n!\nrouter bgp 65000\n bgp router-id 198.18.0.1\n no bgp ebgp-requires-policy\n no bgp network import-check\n")
	for _, g := range global {
		b.WriteString(" " + g + "\n")
	}
	for _, n := range tp.nodes {
		nb := per(n)
		fmt.Fprintf(&b, " neighbor %s remote-as %d\n neighbor %s timers connect 1\n", n.addr4, nb.as, n.addr4)
		for _, e := range nb.extra {
			b.WriteString(" " + strings.ReplaceAll(e, "%[1]s", n.addr4) + "\n")
		}
	}
	b.WriteString(" address-family ipv4 unicast\n  maximum-paths 8\n  maximum-paths ibgp 8\n exit-address-family\n")
	b.WriteString(" address-family ipv6 unicast\n  maximum-paths 8\n  maximum-paths ibgp 8\n")
	for _, n := range tp.nodes {
		fmt.Fprintf(&b, "  neighbor %s activate\n", n.addr4)
		for _, e := range per(n).v6Extra {
			b.WriteString("  " + strings.ReplaceAll(e, "%[1]s", n.addr4) + "\n")
		}
	}
	b.WriteString(" exit-address-family\n!\n")
	f, err := tp.router.StartFRR(lab.FRRConfig{
		Zebra: "hostname router\nlog stdout informational\n",
		BGPd:  b.String(),
		BFDd:  bfdd,
	})
	if err != nil {
		t.Fatal(err)
	}
	tp.frr = f
}

func ebgp(n *node) frrNeighbor { return frrNeighbor{as: 65001} }

// gobgpConf is a node's gobgp.conf: one neighbor, the router; router-id left
// empty (the node's own address is used). extraNeighbor goes inside
// [[neighbors]] after its config table; extra goes at the end.
func (n *node) gobgpConf(as int, extraNeighbor, extra string, gr bool) string {
	mpgr := ""
	grConf := ""
	if gr {
		mpgr = "    [neighbors.afi-safis.mp-graceful-restart.config]\n      enabled = true\n"
		grConf = "  [neighbors.graceful-restart.config]\n    enabled = true\n    restart-time = 30\n"
	}
	return fmt.Sprintf(`[global.config]
  as = %d

[[neighbors]]
  [neighbors.config]
    neighbor-address = %q
    peer-as = 65000
  [neighbors.timers.config]
    connect-retry = 1
    hold-time = 9
    keepalive-interval = 3
    idle-hold-time-after-reset = 1
%s%s  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv4-unicast"
%s  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv6-unicast"
%s%s`, as, n.peer4, grConf, extraNeighbor, mpgr, mpgr, extra)
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func (n *node) writeConf(t testing.TB, conf string) {
	t.Helper()
	writeFile(t, filepath.Join(n.confDir, "gobgp.conf"), conf)
}

// service writes a Service manifest asking for addrs, with communities
// (comma separated, "" for none).
func (n *node) service(t testing.TB, name, communities string, addrs ...string) {
	t.Helper()
	ann := fmt.Sprintf("    vipspeaker.io/addresses: %q\n", strings.Join(addrs, ","))
	if communities != "" {
		ann += fmt.Sprintf("    vipspeaker.io/communities: %q\n", communities)
	}
	writeFile(t, filepath.Join(n.svcDir, name+".yaml"), fmt.Sprintf(`apiVersion: v1
kind: Service
metadata:
  name: %s
  namespace: demo
  annotations:
%sspec:
  type: LoadBalancer
  ports:
  - port: 80
`, name, ann))
}

func (n *node) removeService(t testing.TB, name string) {
	t.Helper()
	if err := os.Remove(filepath.Join(n.svcDir, name+".yaml")); err != nil {
		t.Fatal(err)
	}
}

func (n *node) start(t testing.TB) {
	t.Helper()
	n.starts++
	p, err := n.h.Start(fmt.Sprintf("vipspeaker-%d", n.starts), []string{n.bin, "run",
		"--config-dir", n.confDir, "--services-dir", n.svcDir, "--run-dir", n.runDir,
		"--node-name", n.h.Name(), "--log-level", "debug"})
	if err != nil {
		t.Fatal(err)
	}
	n.agent = p
	t.Cleanup(func() { _ = p.Signal(syscall.SIGCONT) }) // a frozen agent cannot stop
}

// kernelRoute returns the router's kernel route to prefix.
func (tp *topo) kernelRoute(prefix string) (lab.KernelRoute, bool) {
	r, ok, err := tp.router.KernelRoute(prefix)
	if err != nil {
		return lab.KernelRoute{}, false
	}
	return r, ok
}

// waitKernelRoute waits until the router's kernel routes prefix via exactly
// the gateways given (in any order).
func (tp *topo) waitKernelRoute(t testing.TB, prefix string, gws ...string) {
	t.Helper()
	lab.Eventually(t, 20*time.Second, 20*time.Millisecond, func() error {
		r, ok := tp.kernelRoute(prefix)
		if !ok {
			return fmt.Errorf("router kernel has no route to %s", prefix)
		}
		var got []string
		for _, g := range r.Gateways {
			got = append(got, g.String())
		}
		slices.Sort(got)
		want := slices.Clone(gws)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			return fmt.Errorf("router kernel route to %s via %v, want via %v", prefix, got, want)
		}
		return nil
	})
}

func (tp *topo) waitNoKernelRoute(t testing.TB, prefix string) {
	t.Helper()
	lab.Eventually(t, 20*time.Second, 20*time.Millisecond, func() error {
		if r, ok := tp.kernelRoute(prefix); ok {
			return fmt.Errorf("router kernel still routes %s via %v", prefix, r.Gateways)
		}
		return nil
	})
}

// frrPath is what the tests read of one path in FRR's BGP table.
type frrPath struct {
	ASPath    string
	MED       int
	LocalPref int
	Community string
	Large     string
	NextHops  []string
	Best      bool
	Stale     bool
}

func (tp *topo) frrPaths(afi, prefix string) ([]frrPath, error) {
	var doc struct {
		Paths []struct {
			ASPath struct {
				String string `json:"string"`
			} `json:"aspath"`
			Metric    int  `json:"metric"`
			LocPrf    int  `json:"locPrf"`
			Stale     bool `json:"stale"`
			Community struct {
				String string `json:"string"`
			} `json:"community"`
			Large struct {
				String string `json:"string"`
			} `json:"largeCommunity"`
			Nexthops []struct {
				IP string `json:"ip"`
			} `json:"nexthops"`
			Bestpath struct {
				Overall bool `json:"overall"`
			} `json:"bestpath"`
		} `json:"paths"`
	}
	if err := tp.frr.VtyshJSON(fmt.Sprintf("show bgp %s unicast %s json", afi, prefix), &doc); err != nil {
		return nil, err
	}
	var out []frrPath
	for _, p := range doc.Paths {
		fp := frrPath{ASPath: p.ASPath.String, MED: p.Metric, LocalPref: p.LocPrf, Community: p.Community.String,
			Large: p.Large.String, Best: p.Bestpath.Overall, Stale: p.Stale}
		for _, nh := range p.Nexthops {
			fp.NextHops = append(fp.NextHops, nh.IP)
		}
		out = append(out, fp)
	}
	return out, nil
}

// frrSession is FRR's view of its session with a node.
type frrSession struct {
	State       string
	Established int // connectionsEstablished
	Dropped     int // connectionsDropped
}

func (tp *topo) session(t testing.TB, n *node) frrSession {
	t.Helper()
	var doc map[string]json.RawMessage
	if err := tp.frr.VtyshJSON("show bgp neighbors "+n.addr4+" json", &doc); err != nil {
		t.Fatal(err)
	}
	var s struct {
		BgpState               string `json:"bgpState"`
		ConnectionsEstablished int    `json:"connectionsEstablished"`
		ConnectionsDropped     int    `json:"connectionsDropped"`
	}
	if err := json.Unmarshal(doc[n.addr4], &s); err != nil {
		t.Fatalf("frr neighbor %s: %v", n.addr4, err)
	}
	return frrSession{State: s.BgpState, Established: s.ConnectionsEstablished, Dropped: s.ConnectionsDropped}
}

func (tp *topo) waitEstablished(t testing.TB, n *node) {
	t.Helper()
	if err := tp.frr.WaitEstablished(n.addr4, 30*time.Second); err != nil {
		t.Fatal(err)
	}
}

// waitLog waits until the agent's log holds every one of subs.
func (n *node) waitLog(t testing.TB, subs ...string) {
	t.Helper()
	lab.Eventually(t, 10*time.Second, 50*time.Millisecond, func() error {
		log := n.agent.Log()
		for _, s := range subs {
			if !strings.Contains(log, s) {
				return fmt.Errorf("agent log on %s lacks %q", n.h.Name(), s)
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
