package bgp_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vipspeaker/vipspeaker/internal/nstest"
	"github.com/vipspeaker/vipspeaker/test/lab"
)

// iBGP over an IPv4 session (IPv4 VIP) and over an IPv6 session (IPv6 VIP):
// each VIP's next hop is the local address of the session carrying it.
func TestIBGPOverIPv4AndIPv6Sessions(t *testing.T) {
	t.Parallel()
	tp, n := newNode(t)
	tp.startFRR(t, nil, bothSessions(65000, "no neighbor %[1]s activate"), "")
	n.writeConf(t, lab.GoBGPConf{AS: 65000, Neighbors: []lab.GoBGPNeighbor{
		{Address: n.Peer4, PeerAS: 65000, ConnectRetry: 1},
		{Address: n.Peer6, PeerAS: 65000, ConnectRetry: 1, Families: []string{"ipv6-unicast"}},
	}, Extra: lab.GoBGPPolicy{Name: "pref", Default: "accept-route",
		CommunitySets: []lab.GoBGPSet{{Name: "preferred", Members: []string{"65000:200"}}},
		Statements:    []lab.GoBGPStatement{{CommunitySet: "preferred", Disposition: "accept-route", SetLocalPref: 200}},
	}.String()}.String())
	n.service(t, "web", "", "203.0.113.10", "2001:db8:100::10")
	n.service(t, "api", "65000:200", "203.0.113.20")
	n.start(t)
	for _, a := range []string{n.Addr4, n.Addr6} {
		if err := tp.FRR.WaitEstablished(a, 30*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	tp.waitKernelRoute(t, "203.0.113.10/32", n.Addr4)
	tp.waitKernelRoute(t, "2001:db8:100::10/128", n.Addr6)
	ps, err := tp.frrPaths("ipv4", "203.0.113.10/32")
	if err != nil || len(ps) != 1 || ps[0].LocalPref != 100 || (ps[0].ASPath != "" && ps[0].ASPath != "Local") {
		t.Fatalf("iBGP path at FRR: %+v %v; want local-pref 100 and an empty AS path", ps, err)
	}
	// the Service's community selects local-pref 200 by policy
	lab.Eventually(t, 10*time.Second, 50*time.Millisecond, func() error {
		ps, err := tp.frrPaths("ipv4", "203.0.113.20/32")
		if err != nil || len(ps) != 1 || ps[0].LocalPref != 200 || ps[0].Community != "65000:200" {
			return fmt.Errorf("path to 203.0.113.20 at FRR: %+v %v; want local-pref 200, community 65000:200", ps, err)
		}
		return nil
	})
}

// eBGP multihop to the router's loopback address, with an MD5 password
// read from a file (a mounted Secret) and configured on FRR.
func TestMultihopWithMD5PasswordFile(t *testing.T) {
	t.Parallel()
	tp, n := newNode(t)
	if err := tp.Router.AddAddr("lo", "198.18.255.1/32"); err != nil {
		t.Fatal(err)
	}
	tp.startFRR(t, nil, func(n *node) frrNeighbor {
		return frrNeighbor{as: 65001, extra: []string{
			"neighbor %[1]s ebgp-multihop 2",
			"neighbor %[1]s update-source 198.18.255.1",
			"neighbor %[1]s password s3cret-pw",
		}}
	}, "")
	secret := filepath.Join(tp.Lab.Dir(), "bgp-password")
	if err := os.WriteFile(secret, []byte("s3cret-pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	conf := strings.Replace(n.gobgpConf(65001, "  [neighbors.ebgp-multihop.config]\n    enabled = true\n    multihop-ttl = 2\n", "", false),
		"peer-as = 65000\n", fmt.Sprintf("peer-as = 65000\n    auth-password = %q\n", secret), 1)
	conf = strings.Replace(conf, n.Peer4, "198.18.255.1", 1)
	n.writeConf(t, conf)
	n.service(t, "web", "", "203.0.113.10")
	n.start(t)
	if err := tp.FRR.WaitEstablished(n.Addr4, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	tp.waitKernelRoute(t, "203.0.113.10/32", n.Addr4)

	// the password matters: a wrong one in the file, after a reload, takes
	// the session down (the session parameters changed, so it is reset)
	if err := os.WriteFile(secret, []byte("wrong\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	n.writeConf(t, conf+"\n# touched\n")
	n.waitLog(t, "neighbor updated", "session-reset=true")
	tp.waitNoKernelRoute(t, "203.0.113.10/32")
}

// The node peers with FRR and BIRD at once. A prefix-set keeps VIPs outside
// 203.0.113.0/24 from both; a neighbor-set keeps everything from BIRD.
// Asserted on each router's own view.
func TestPolicyPrefixSetAndNeighborSetAtFRRAndBIRD(t *testing.T) {
	t.Parallel()
	tp, n, bird := nodeWithFRRAndBIRD(t)
	// policy rejects VIPs outside 203.0.113.0/24 and every VIP to the
	// peers of neighbor set nset ("bird": 198.18.101.1).
	policy := func(nset string) string {
		return "\n" + lab.GoBGPPolicy{Name: "vips", Default: "accept-route",
			PrefixSets:   []lab.GoBGPPrefixSet{{Name: "ours", Prefix: "203.0.113.0/24", MaskRange: "32..32"}},
			NeighborSets: []lab.GoBGPSet{{Name: "bird", Members: []string{"198.18.101.1"}}},
			Statements: []lab.GoBGPStatement{
				{Name: "not-ours", PrefixSet: "ours", MatchOptions: "invert", Disposition: "reject-route"},
				{Name: "no-bird", NeighborSet: nset, Disposition: "reject-route"},
			},
		}.String()
	}
	birdNeighbor := "\n" + lab.GoBGPNeighbor{Address: "198.18.101.1", PeerAS: 65100, ConnectRetry: 1}.String()
	n.writeConf(t, n.gobgpConf(65001, "", birdNeighbor+policy("bird"), false))
	n.service(t, "web", "", "203.0.113.10", "198.51.100.10")
	n.start(t)
	tp.waitEstablished(t, n)
	if err := bird.WaitEstablished("node1", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	tp.waitKernelRoute(t, "203.0.113.10/32", n.Addr4)
	time.Sleep(time.Second)
	if _, ok := tp.kernelRoute("198.51.100.10/32"); ok {
		t.Error("198.51.100.10 (outside the prefix-set) reached FRR")
	}
	if out, err := bird.Birdc("show route all"); err != nil || strings.Contains(out, "203.0.113.10") || strings.Contains(out, "198.51.100.10") {
		t.Errorf("BIRD (in the neighbor-set) got routes, want none:\n%s %v", out, err)
	}

	// the same policy with the neighbor-set renamed to an empty one: BIRD
	// now receives 203.0.113.10 (and still not 198.51.100.10), by reload
	n.writeConf(t, n.gobgpConf(65001, "", birdNeighbor+policy("nobody")+`
[[defined-sets.neighbor-sets]]
  neighbor-set-name = "nobody"
  neighbor-info-list = ["198.18.200.1"]
`, false))
	lab.Eventually(t, 10*time.Second, 50*time.Millisecond, func() error {
		out, err := bird.Birdc("show route all")
		if err != nil || !strings.Contains(out, "203.0.113.10/32") {
			return fmt.Errorf("BIRD has no 203.0.113.10/32:\n%s %v", out, err)
		}
		if strings.Contains(out, "198.51.100.10") {
			return fmt.Errorf("BIRD got 198.51.100.10 (outside the prefix-set):\n%s", out)
		}
		if !strings.Contains(out, "BGP.as_path: 65001") {
			return fmt.Errorf("BIRD's route lacks AS path 65001:\n%s", out)
		}
		return nil
	})
}

// One agent with two sessions to the router (IPv4 and IPv6 transport):
// removing or adding one neighbor leaves the other session alone; changing
// both at once applies to both.
func TestNeighborChangesOneByOne(t *testing.T) {
	t.Parallel()
	tp, n := newNode(t)
	tp.startFRR(t, nil, bothSessions(65001), "")
	v6Neighbor := fmt.Sprintf(`
[[neighbors]]
  [neighbors.config]
    neighbor-address = %q
    peer-as = 65000
%%s  [neighbors.timers.config]
    connect-retry = 1
    idle-hold-time-after-reset = 1
`, n.Peer6)
	both := func(extra string) string {
		c := n.gobgpConf(65001, "", fmt.Sprintf(v6Neighbor, extra), false)
		return strings.Replace(c, "peer-as = 65000\n", "peer-as = 65000\n"+extra, 1)
	}
	n.writeConf(t, both(""))
	n.service(t, "web", "", "203.0.113.10")
	n.start(t)
	for _, a := range []string{n.Addr4, n.Addr6} {
		if err := tp.FRR.WaitEstablished(a, 30*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	v4 := tp.sessionAt(t, n.Addr4)

	// remove the IPv6 neighbor
	n.writeConf(t, n.gobgpConf(65001, "", "", false))
	lab.Eventually(t, 10*time.Second, 50*time.Millisecond, func() error {
		if s := tp.sessionAt(t, n.Addr6); s.State == "Established" {
			return fmt.Errorf("IPv6 session still up")
		}
		return nil
	})
	if s := tp.sessionAt(t, n.Addr4); s != v4 {
		t.Fatalf("removing the other neighbor touched the IPv4 session: %+v → %+v", v4, s)
	}
	// add it back
	n.writeConf(t, both(""))
	if err := tp.FRR.WaitEstablished(n.Addr6, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if s := tp.sessionAt(t, n.Addr4); s != v4 {
		t.Fatalf("adding the other neighbor touched the IPv4 session: %+v → %+v", v4, s)
	}
	// shut both down in one change: both go (GoBGP's own UpdateConfig
	// would apply only the first changed neighbor)
	n.writeConf(t, both("    admin-down = true\n"))
	lab.Eventually(t, 10*time.Second, 50*time.Millisecond, func() error {
		for _, a := range []string{n.Addr4, n.Addr6} {
			if s := tp.sessionAt(t, a); s.State == "Established" {
				return fmt.Errorf("session %s still up", a)
			}
		}
		return nil
	})
	tp.waitNoKernelRoute(t, "203.0.113.10/32")
}

func (tp *topo) sessionAt(t *testing.T, addr string) frrSession {
	t.Helper()
	var doc map[string]json.RawMessage
	if err := tp.FRR.VtyshJSON("show bgp neighbors "+addr+" json", &doc); err != nil {
		t.Fatal(err)
	}
	var s struct {
		BgpState               string `json:"bgpState"`
		ConnectionsEstablished int    `json:"connectionsEstablished"`
		ConnectionsDropped     int    `json:"connectionsDropped"`
	}
	_ = json.Unmarshal(doc[addr], &s)
	return frrSession{State: s.BgpState, Established: s.ConnectionsEstablished, Dropped: s.ConnectionsDropped}
}

func (tp *topo) updatesReceived(t *testing.T, addr string) int {
	t.Helper()
	var doc map[string]struct {
		MessageStats struct {
			UpdatesRecv int `json:"updatesRecv"`
		} `json:"messageStats"`
	}
	if err := tp.FRR.VtyshJSON("show bgp neighbors "+addr+" json", &doc); err != nil {
		t.Fatal(err)
	}
	return doc[addr].MessageStats.UpdatesRecv
}

// SIGTERM: a node with graceful restart leaves the router holding its route
// (it stays in the router's kernel while the agent is away and through its
// restart); a node without it withdraws its route (an UPDATE the router
// counts) before it goes.
func TestSIGTERMGracefulRestartOrWithdraw(t *testing.T) {
	t.Parallel()
	tp := newTopo(t, 2)
	gr, plain := tp.nodes[0], tp.nodes[1]
	tp.startFRR(t, []string{"bgp graceful-restart", "bgp graceful-restart restart-time 30"}, ebgp, "")
	gr.writeConf(t, gr.gobgpConf(65001, "", "", true))
	plain.writeConf(t, plain.gobgpConf(65001, "", "", false))
	gr.service(t, "web", "", "203.0.113.10")
	plain.service(t, "web", "", "203.0.113.11")
	for _, n := range tp.nodes {
		n.start(t)
		tp.waitEstablished(t, n)
	}
	tp.waitKernelRoute(t, "203.0.113.10/32", gr.Addr4)
	tp.waitKernelRoute(t, "203.0.113.11/32", plain.Addr4)
	time.Sleep(500 * time.Millisecond)
	updates := tp.updatesReceived(t, plain.Addr4)

	w := tp.watchKernel("203.0.113.10/32")
	for _, n := range tp.nodes {
		if err := n.Proc.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range tp.nodes {
		select {
		case <-n.Proc.Done():
		case <-time.After(15 * time.Second):
			t.Fatalf("agent on %s did not exit after SIGTERM", n.Host.Name())
		}
	}
	tp.waitNoKernelRoute(t, "203.0.113.11/32")
	if got := tp.updatesReceived(t, plain.Addr4); got <= updates {
		t.Errorf("the router received no UPDATE (withdrawal) from the node without graceful restart (%d → %d)", updates, got)
	}
	time.Sleep(time.Second)
	gr.start(t)
	tp.waitFresh(t, "203.0.113.10/32", "the restarted agent")
	time.Sleep(time.Second)
	if gone := w.Stop(); len(gone) > 0 {
		t.Fatalf("the graceful-restart node's route left the router's kernel: %v", gone)
	}
}

// The metrics and the peer status show the session, prefixes and BFD.
func TestMetricsShowPeer(t *testing.T) {
	t.Parallel()
	tp, n := newNode(t)
	tp.startFRR(t, nil, func(n *node) frrNeighbor {
		return frrNeighbor{as: 65001, extra: []string{"neighbor %[1]s bfd", "neighbor %[1]s bfd profile fast"}}
	}, fastBFD)
	n.writeConf(t, n.gobgpConf(65001, "  [neighbors.bfd.config]\n    enabled = true\n    desired-minimum-tx-interval = 100000\n    required-minimum-receive = 100000\n", "", false))
	n.service(t, "web", "", "203.0.113.10", "2001:db8:100::10")
	n.start(t, "--metrics-addr", "127.0.0.1:9472")
	tp.waitEstablished(t, n)
	want := []string{
		`vipspeaker_bgp_session_up{peer="` + n.Peer4 + `"} 1`,
		`vipspeaker_bgp_advertised_prefixes{peer="` + n.Peer4 + `"} 2`,
		`vipspeaker_bfd_session_up{peer="` + n.Peer4 + `"} 1`,
	}
	lab.Eventually(t, 15*time.Second, 100*time.Millisecond, func() error {
		out, err := httpGet(n.Host, "127.0.0.1:9472", "/metrics")
		if err != nil {
			return err
		}
		for _, w := range want {
			if !strings.Contains(out, w) {
				return fmt.Errorf("metrics lack %q", w)
			}
		}
		return nil
	})
}

// httpGet fetches path from addr inside h's network namespace (the socket is
// made there; reading it needs no namespace).
func httpGet(h *lab.Host, addr, path string) (string, error) {
	var conn net.Conn
	if err := h.Do(func() error {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		conn = c
		return err
	}); err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.0\r\nHost: %s\r\n\r\n", path, addr); err != nil {
		return "", err
	}
	b, err := io.ReadAll(conn)
	return string(b), err
}

// A change of the global section (here the router-id) restarts the
// embedded speaker: the router sees the new router-id and the VIP again.
func TestGlobalChangeRestartsSpeaker(t *testing.T) {
	t.Parallel()
	tp, n := newNode(t)
	tp.startFRR(t, nil, ebgp, "")
	conf := n.gobgpConf(65001, "", "", false)
	n.writeConf(t, conf)
	n.service(t, "web", "", "203.0.113.10")
	n.start(t)
	tp.waitEstablished(t, n)
	tp.waitKernelRoute(t, "203.0.113.10/32", n.Addr4)
	remoteID := func() string {
		var doc map[string]struct {
			RemoteRouterID string `json:"remoteRouterId"`
		}
		if err := tp.FRR.VtyshJSON("show bgp neighbors "+n.Addr4+" json", &doc); err != nil {
			return ""
		}
		return doc[n.Addr4].RemoteRouterID
	}
	if id := remoteID(); id != n.Addr4 {
		t.Fatalf("router-id left empty: FRR sees %q, want the node's own address %s", id, n.Addr4)
	}
	n.writeConf(t, strings.Replace(conf, "as = 65001\n", "as = 65001\n  router-id = \"198.18.250.1\"\n", 1))
	lab.Eventually(t, 20*time.Second, 50*time.Millisecond, func() error {
		if id := remoteID(); id != "198.18.250.1" {
			return fmt.Errorf("FRR sees router-id %q", id)
		}
		return nil
	})
	tp.waitKernelRoute(t, "203.0.113.10/32", n.Addr4)
}

// gobgpd of the same GoBGP version as a peer: it receives the VIPs with the
// Service's standard and large communities.
func TestGoBGPdPeerSeesCommunities(t *testing.T) {
	t.Parallel()
	if _, _, err := lab.GoBGPBinaries(); err != nil {
		nstest.Skip(t, "gobgpd: %v", err)
	}
	tp, n := newNode(t)
	gh := tp.Lab.MustHost("gobgpd")
	tp.Lab.MustLink(gh, "eth0", []string{"198.18.102.1/30", "2001:db8:18:102::1/64"}, n.Host, "eth1", []string{"198.18.102.2/30", "2001:db8:18:102::2/64"})
	peer := func(addr string, as int) []lab.GoBGPNeighbor {
		return []lab.GoBGPNeighbor{{Address: addr, PeerAS: as, ConnectRetry: 1, Families: lab.BothFamilies}}
	}
	// gobgpd waits for the agent (passive): two GoBGPs connecting to each
	// other at once can both keep the collided connection and sit in
	// OPENCONFIRM until the 90 s hold timer, as a fresh-clone CI run saw.
	router := peer("198.18.102.2", 65001)
	router[0].Extra = "  [neighbors.transport.config]\n    passive-mode = true\n"
	g, err := gh.StartGoBGPd(lab.GoBGPConf{AS: 65200, RouterID: "198.18.102.1", Neighbors: router}.String())
	if err != nil {
		t.Fatal(err)
	}
	n.writeConf(t, lab.GoBGPConf{AS: 65001, Neighbors: peer("198.18.102.1", 65200)}.String())
	n.service(t, "web", "65000:100,large:65000:1:2", "203.0.113.10", "2001:db8:100::10")
	n.start(t)
	if err := g.WaitEstablished("198.18.102.2", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	lab.Eventually(t, 10*time.Second, 100*time.Millisecond, func() error {
		out, err := g.CLI("global", "rib", "-a", "ipv4")
		if err != nil {
			return err
		}
		for _, w := range []string{"203.0.113.10/32", "198.18.102.2", "65000:100", "65000:1:2"} {
			if !strings.Contains(out, w) {
				return fmt.Errorf("gobgpd's RIB lacks %q:\n%s", w, out)
			}
		}
		out, err = g.CLI("global", "rib", "-a", "ipv6")
		if err != nil {
			return err
		}
		for _, w := range []string{"2001:db8:100::10/128", "2001:db8:18:102::2"} {
			if !strings.Contains(out, w) {
				return fmt.Errorf("gobgpd's IPv6 RIB lacks %q:\n%s", w, out)
			}
		}
		return nil
	})
}

// Graceful restart and BFD together: kill -9 and restart keeps the route in
// the router's kernel (the kernel closes the TCP session at once, so FRR is
// already in graceful-restart helper mode when BFD times out).
func TestGracefulRestartWithBFDKill9KeepsRoute(t *testing.T) {
	t.Parallel()
	tp, n := newNode(t)
	tp.startFRR(t, []string{"bgp graceful-restart", "bgp graceful-restart restart-time 30"}, func(n *node) frrNeighbor {
		return frrNeighbor{as: 65001, extra: []string{"neighbor %[1]s bfd", "neighbor %[1]s bfd profile fast"}}
	}, fastBFD)
	n.writeConf(t, n.gobgpConf(65001, "  [neighbors.bfd.config]\n    enabled = true\n    desired-minimum-tx-interval = 100000\n    required-minimum-receive = 100000\n", "", true))
	n.service(t, "web", "", "203.0.113.10")
	n.start(t)
	tp.waitEstablished(t, n)
	tp.waitKernelRoute(t, "203.0.113.10/32", n.Addr4)
	lab.Eventually(t, 10*time.Second, 50*time.Millisecond, func() error {
		out, err := tp.FRR.Vtysh("show bfd peers brief")
		if err != nil || !strings.Contains(out, n.Addr4) || !strings.Contains(strings.ToLower(out), "up") {
			return fmt.Errorf("BFD not up:\n%s %v", out, err)
		}
		return nil
	})
	before := tp.session(t, n)
	w := tp.watchKernel("203.0.113.10/32")
	if err := n.Proc.Kill(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // BFD (300 ms) has expired by now
	n.start(t)
	tp.waitNewSession(t, n, before.Established)
	tp.waitFresh(t, "203.0.113.10/32", "the new agent")
	time.Sleep(time.Second)
	if gone := w.Stop(); len(gone) > 0 {
		t.Fatalf("route left the router's kernel during kill -9 and restart with BFD on: %v", gone)
	}
}
