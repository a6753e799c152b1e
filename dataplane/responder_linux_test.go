package dataplane

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/mdlayher/ndp"
	"github.com/mdlayher/packet"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func owned(ifs []string, vips ...netip.Addr) map[netip.Addr][]string {
	m := map[netip.Addr][]string{}
	for _, v := range vips {
		m[v] = ifs
	}
	return m
}

// The client resolves an IPv4 VIP to the owner's MAC and to no other: the
// kernels of both nodes would answer (checked first, so the test can see two
// answerers), the responders set arp_ignore and only the owner answers; an
// address nobody owns gets no answer; ownership moves and the answer with it.
func TestARPExactlyOneAnswerer(t *testing.T) {
	needTools(t, "arping")
	l := newL2Lab(t, 2)

	if got := l.arping(vip4, 2); len(got) != 2 {
		t.Fatalf("before the responders, want both kernels answering for %s, got %v", vip4, got)
	}

	reg0, reg1 := prometheus.NewPedanticRegistry(), prometheus.NewPedanticRegistry()
	r0 := l.start(0, reg0, Options{})
	r1 := l.start(1, reg1, Options{})
	r0.SetOwned(owned([]string{"eth0"}, vip4))
	r1.SetOwned(nil)

	if diff := cmp.Diff([]string{l.macs[0]}, l.arping(vip4, 3)); diff != "" {
		t.Errorf("answerers for %s owned by node 0 (-want +got):\n%s", vip4, diff)
	}
	if got := l.arping(vip4Free, 2); len(got) != 0 {
		t.Errorf("pool address %s owned by nobody was answered by %v", vip4Free, got)
	}
	if got := testutil.ToFloat64(r0.m.arpReplies.WithLabelValues("eth0", PathUserspace)); got < 3 {
		t.Errorf("node 0 arp_replies_sent_total = %v, want >= 3", got)
	}
	if got := testutil.ToFloat64(r1.m.arpReplies.WithLabelValues("eth0", PathUserspace)); got != 0 {
		t.Errorf("node 1 arp_replies_sent_total = %v, want 0", got)
	}
	if got := testutil.ToFloat64(r1.m.arpRequests.WithLabelValues("eth0")); got < 3 {
		t.Errorf("node 1 arp_requests_received_total = %v, want >= 3 (it sees the broadcasts)", got)
	}

	// Hand over: node 0 stops at once, node 1 answers.
	r0.SetOwned(nil)
	r1.SetOwned(owned([]string{"eth0"}, vip4))
	if diff := cmp.Diff([]string{l.macs[1]}, l.arping(vip4, 3)); diff != "" {
		t.Errorf("answerers for %s after handover to node 1 (-want +got):\n%s", vip4, diff)
	}
}

// IPv6: a multicast solicitation (ndisc6) for the owned VIP is answered by
// the owner alone; its solicited-node group is joined on eth0 while owned
// and left after; an address nobody owns gets no answer.
func TestNDPMulticastSolicitation(t *testing.T) {
	needTools(t, "ndisc6")
	l := newL2Lab(t, 2)
	r0 := l.start(0, prometheus.NewPedanticRegistry(), Options{})
	r1 := l.start(1, prometheus.NewPedanticRegistry(), Options{})

	if got := l.ndisc(vip6); len(got) != 0 {
		t.Fatalf("nobody owns %s yet, but %v answered", vip6, got)
	}
	r0.SetOwned(owned([]string{"eth0"}, vip6, vip4))
	r1.SetOwned(nil)

	if diff := cmp.Diff([]string{l.macs[0]}, l.ndisc(vip6)); diff != "" {
		t.Errorf("answerers for %s (-want +got):\n%s", vip6, diff)
	}
	if got := l.ndisc(vip6Free); len(got) != 0 {
		t.Errorf("pool address %s owned by nobody was answered by %v", vip6Free, got)
	}
	maddr := run(t, "ip", "-n", l.nodes[0].Name, "maddr", "show", "dev", "eth0")
	if !strings.Contains(maddr, "ff02::1:ff01:10") || !strings.Contains(maddr, "33:33:ff:01:00:10") {
		t.Errorf("node 0 eth0 has not joined the solicited-node group of %s:\n%s", vip6, maddr)
	}
	if got := testutil.ToFloat64(r0.m.ndpAdverts.WithLabelValues("eth0", PathUserspace)); got < 1 {
		t.Errorf("node 0 ndp_advertisements_sent_total = %v, want >= 1", got)
	}

	r0.SetOwned(nil)
	if got := l.ndisc(vip6); len(got) != 0 {
		t.Errorf("%s no longer owned, but %v answered", vip6, got)
	}
	maddr = run(t, "ip", "-n", l.nodes[0].Name, "maddr", "show", "dev", "eth0")
	if strings.Contains(maddr, "ff02::1:ff01:10") {
		t.Errorf("node 0 eth0 still in the solicited-node group of %s after losing it:\n%s", vip6, maddr)
	}
}

// arp_ignore/arp_announce are raised while the responder runs, stay through
// the end of Run (a restart must not let the kernel answer), and are put
// back by Close; a value stricter than ours is left as it was.
func TestSysctlsSetAndRestored(t *testing.T) {
	l := newL2Lab(t, 1)
	n := l.nodes[0]
	base := "/proc/sys/net/ipv4/conf/eth0/"
	if err := n.Do(func() error { return writeSysctl(base+"arp_announce", 2) }); err != nil {
		t.Fatal(err)
	}
	before := map[string]string{"arp_ignore": "0", "arp_announce": "2"}
	for k, v := range before {
		if got := readSysctlIn(t, n, base+k); got != v {
			t.Fatalf("%s before = %s, want %s", k, got, v)
		}
	}
	r, err := New(Options{Enter: n.Do, GratuitousCount: -1, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	r.SetInterfaces([]string{"eth0"})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	waitFor(t, 5*time.Second, "arp_ignore=1 on eth0", func() bool { return readSysctlIn(t, n, base+"arp_ignore") == "1" })
	if got := readSysctlIn(t, n, base+"arp_announce"); got != "2" {
		t.Errorf("arp_announce while running = %s, want 2", got)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
	}
	if got := readSysctlIn(t, n, base+"arp_ignore"); got != "1" {
		t.Errorf("arp_ignore after Run returned = %s, want still 1 until Close", got)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	for k, v := range before {
		if got := readSysctlIn(t, n, base+k); got != v {
			t.Errorf("%s after Close = %s, want %s", k, got, v)
		}
	}
}

// Removing an interface from the layer2 set closes it and restores it at
// once, without waiting for Close.
func TestSysctlsRestoredWhenInterfaceDropped(t *testing.T) {
	l := newL2Lab(t, 1)
	n := l.nodes[0]
	r := l.start(0, nil, Options{})
	p := "/proc/sys/net/ipv4/conf/eth0/arp_ignore"
	if got := readSysctlIn(t, n, p); got != "1" {
		t.Fatalf("arp_ignore while running = %s, want 1", got)
	}
	r.SetInterfaces(nil)
	if got := readSysctlIn(t, n, p); got != "0" {
		t.Errorf("arp_ignore after eth0 left the layer2 set = %s, want 0", got)
	}
}

// A unicast NUD probe (a solicitation sent to the VIP itself, at the MAC the
// client has cached) is answered by the owner with a solicited advertisement;
// the same probe sent to the other node's MAC gets nothing.
func TestNDPUnicastNUDProbe(t *testing.T) {
	l := newL2Lab(t, 2)
	r0 := l.start(0, nil, Options{})
	r1 := l.start(1, nil, Options{})
	r0.SetOwned(owned([]string{"eth0"}, vip6))
	r1.SetOwned(nil)

	var c *packet.Conn
	var brMAC net.HardwareAddr
	if err := l.client.Do(func() error {
		ifi, err := net.InterfaceByName("br0")
		if err != nil {
			return err
		}
		brMAC = ifi.HardwareAddr
		c, err = packet.Listen(ifi, packet.Raw, etherTypeV6, &packet.Config{Filter: ndpFilter})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })

	probe := func(dstMAC string) *ndp.NeighborAdvertisement {
		t.Helper()
		mac, _ := net.ParseMAC(dstMAC)
		f := nsFrame(brMAC, mac, clientV6, vip6, vip6, brMAC)
		if _, err := c.WriteTo(f, &packet.Addr{HardwareAddr: mac}); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(time.Second)
		buf := make([]byte, 2048)
		for {
			_ = c.SetReadDeadline(deadline)
			n, _, err := c.ReadFrom(buf)
			if err != nil {
				return nil // timeout: no answer
			}
			if n < ethHeaderLen+ipv6HdrLen+4 || buf[ethHeaderLen+ipv6HdrLen] != icmpTypeNA {
				continue
			}
			na, _, dst, hops, err := parseNA(buf[:n])
			if err != nil || na.TargetAddress != vip6 {
				continue
			}
			if dst != clientV6 || hops != 255 {
				t.Errorf("NA sent to %s with hop limit %d, want %s and 255", dst, hops, clientV6)
			}
			if !strings.EqualFold(net.HardwareAddr(buf[6:12]).String(), dstMAC) {
				t.Errorf("NA from MAC %s, want %s", net.HardwareAddr(buf[6:12]), dstMAC)
			}
			return na
		}
	}
	na := probe(l.macs[0])
	if na == nil {
		t.Fatalf("owner did not answer a unicast NUD probe for %s", vip6)
	}
	want := &ndp.NeighborAdvertisement{Solicited: true, Override: true, TargetAddress: vip6,
		Options: []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: mustMAC(l.macs[0])}}}
	if diff := cmp.Diff(want, na, cmpopts.EquateComparable(netip.Addr{})); diff != "" {
		t.Errorf("NA for a unicast probe (-want +got):\n%s", diff)
	}
	if na := probe(l.macs[1]); na != nil {
		t.Errorf("non-owner answered a unicast NUD probe for %s: %+v", vip6, na)
	}
}

func mustMAC(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

// A VIP is answered only on the interfaces named for it: node 0 has a
// second segment (eth1, to the client's c1) and owns the VIP on eth0 only,
// so a request on c1 gets nothing until eth1 is named too.
func TestAnswersOnlyOnNamedInterfaces(t *testing.T) {
	needTools(t, "arping", "ndisc6")
	l := newL2Lab(t, 1)
	c, n := l.client.Name, l.nodes[0].Name
	run(t, "ip", "-n", c, "link", "add", "c1", "type", "veth", "peer", "name", "eth1", "netns", n)
	run(t, "ip", "-n", c, "link", "set", "c1", "up")
	run(t, "ip", "-n", c, "addr", "add", "198.18.1.1/24", "dev", "c1")
	run(t, "ip", "-n", c, "addr", "add", "2001:db8:2::1/64", "dev", "c1", "nodad")
	run(t, "ip", "-n", n, "link", "set", "eth1", "up")
	run(t, "ip", "-n", n, "addr", "add", "198.18.1.10/24", "dev", "eth1")
	run(t, "ip", "-n", n, "addr", "add", "2001:db8:2::10/64", "dev", "eth1", "nodad")
	eth1MAC := strings.TrimSpace(run(t, "ip", "netns", "exec", n, "cat", "/sys/class/net/eth1/address"))

	r := l.start(0, nil, Options{})
	r.SetInterfaces([]string{"eth0", "eth1"})
	waitFor(t, 5*time.Second, "eth1 open", func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.ports["eth1"] != nil
	})
	r.SetOwned(owned([]string{"eth0"}, vip4, vip6))

	arpOn := func(iface string, a netip.Addr) []string {
		out, _ := tryRun(10*time.Second, "ip", "netns", "exec", c, "arping", "-i", iface, "-c", "2", "-W", "0.2", "-w", "2", "-r", a.String())
		return macsIn(out)
	}
	ndOn := func(iface string, a netip.Addr) []string {
		out, _ := tryRun(10*time.Second, "ip", "netns", "exec", c, "ndisc6", "-m", "-n", "-r", "2", "-w", "300", a.String(), iface)
		return macsIn(out)
	}
	if diff := cmp.Diff([]string{l.macs[0]}, arpOn("br0", vip4)); diff != "" {
		t.Errorf("ARP on the named segment (-want +got):\n%s", diff)
	}
	if got := arpOn("c1", vip4); len(got) != 0 {
		t.Errorf("ARP for %s answered on eth1, not named for it: %v", vip4, got)
	}
	if got := ndOn("c1", vip6); len(got) != 0 {
		t.Errorf("NS for %s answered on eth1, not named for it: %v", vip6, got)
	}
	r.SetOwned(owned([]string{"eth0", "eth1"}, vip4, vip6))
	if diff := cmp.Diff([]string{eth1MAC}, arpOn("c1", vip4)); diff != "" {
		t.Errorf("ARP on eth1 once named (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{eth1MAC}, ndOn("c1", vip6)); diff != "" {
		t.Errorf("NDP on eth1 once named (-want +got):\n%s", diff)
	}
}

func macsIn(out string) []string {
	seen := map[string]bool{}
	var macs []string
	for _, f := range strings.Fields(out) {
		f = strings.ToLower(f)
		if len(f) == 17 && strings.Count(f, ":") == 5 && !seen[f] {
			seen[f] = true
			macs = append(macs, f)
		}
	}
	return macs
}

// Becoming owner announces the VIP: a client holding a stale entry with
// another MAC learns the owner's MAC from the gratuitous ARP and the
// unsolicited NA alone (it sends nothing itself), and the counter shows
// count rounds (two ARP forms per round for IPv4, one NA for IPv6).
func TestGratuitousUpdatesClientNeighbours(t *testing.T) {
	l := newL2Lab(t, 1)
	c := l.client.Name
	// Let gratuitous ARP replace an entry however recent it is.
	run(t, "ip", "netns", "exec", c, "sysctl", "-qw", "net.ipv4.neigh.br0.locktime=0")
	old := "02:00:00:00:00:42"
	run(t, "ip", "-n", c, "neigh", "replace", vip4.String(), "lladdr", old, "dev", "br0", "nud", "stale")
	run(t, "ip", "-n", c, "neigh", "replace", vip6.String(), "lladdr", old, "dev", "br0", "nud", "stale")

	reg := prometheus.NewPedanticRegistry()
	r := l.start(0, reg, Options{GratuitousCount: 3, GratuitousInterval: 50 * time.Millisecond})
	r.SetOwned(owned([]string{"eth0"}, vip4, vip6))

	for _, a := range []netip.Addr{vip4, vip6} {
		waitFor(t, 3*time.Second, "client neighbour entry for "+a.String()+" moves to the owner's MAC", func() bool {
			out := run(t, "ip", "-n", c, "neigh", "show", a.String(), "dev", "br0")
			return strings.Contains(out, l.macs[0])
		})
	}
	waitFor(t, 3*time.Second, "9 gratuitous frames", func() bool {
		return testutil.ToFloat64(r.m.gratuitous.WithLabelValues("eth0", PathUserspace)) == 9
	})
	time.Sleep(200 * time.Millisecond)
	if got := testutil.ToFloat64(r.m.gratuitous.WithLabelValues("eth0", PathUserspace)); got != 9 {
		t.Errorf("gratuitous_sent_total = %v, want 9 (3 rounds x (2 ARP + 1 NA))", got)
	}
}

// A client that never hears the new owner (here: the new owner sends no
// announcements) keeps sending to the previous owner; the previous owner
// queues that traffic, tells the client the new owner's MAC, and lets the
// packet through. The queue rule is gone when the window ends.
func TestStaleNeighbourCorrected(t *testing.T) {
	needTools(t, "ping", "iptables", "ip6tables")
	l := newL2Lab(t, 2)
	c := l.client.Name
	reg0 := prometheus.NewPedanticRegistry()
	r0 := l.start(0, reg0, Options{StaleWindow: 3 * time.Second})
	r1 := l.start(1, nil, Options{GratuitousCount: -1})
	r0.SetOwned(owned([]string{"eth0"}, vip4, vip6))
	r1.SetOwned(nil)
	for _, a := range []netip.Addr{vip4, vip6} {
		// The first IPv6 echo may be lost while the namespaces' link-local
		// addresses are still tentative; retry.
		waitFor(t, 10*time.Second, "client reaches "+a.String(), func() bool {
			_, err := tryRun(3*time.Second, "ip", "netns", "exec", c, "ping", "-c", "1", "-W", "1", a.String())
			return err == nil
		})
		if out := run(t, "ip", "-n", c, "neigh", "show", a.String(), "dev", "br0"); !strings.Contains(out, l.macs[0]) {
			t.Fatalf("client does not resolve %s to the first owner: %s", a, out)
		}
	}

	// Hand over without any announcement.
	r1.SetOwned(owned([]string{"eth0"}, vip4, vip6))
	r0.SetOwned(nil)
	for _, a := range []netip.Addr{vip4, vip6} {
		if out := run(t, "ip", "-n", c, "neigh", "show", a.String(), "dev", "br0"); !strings.Contains(out, l.macs[0]) {
			t.Fatalf("client lost its stale entry for %s by itself; the test would prove nothing: %s", a, out)
		}
	}
	for _, a := range []netip.Addr{vip4, vip6} {
		waitFor(t, 5*time.Second, "client's entry for "+a.String()+" corrected to the new owner", func() bool {
			_, _ = tryRun(2*time.Second, "ip", "netns", "exec", c, "ping", "-c", "1", "-W", "0.2", a.String())
			out := run(t, "ip", "-n", c, "neigh", "show", a.String(), "dev", "br0")
			return strings.Contains(out, l.macs[1])
		})
		// The packets still get answered.
		run(t, "ip", "netns", "exec", c, "ping", "-c", "1", "-W", "2", a.String())
	}
	if got := testutil.ToFloat64(r0.m.staleCorrections.WithLabelValues("eth0")); got < 2 {
		t.Errorf("stale_corrections_total = %v, want >= 2", got)
	}
	n0 := l.nodes[0].Name
	if out := run(t, "ip", "netns", "exec", n0, "iptables", "-t", "raw", "-S", "PREROUTING"); !strings.Contains(out, "NFQUEUE") {
		t.Errorf("no queue rule during the window:\n%s", out)
	}
	waitFor(t, 6*time.Second, "queue rules removed after the window", func() bool {
		o4 := run(t, "ip", "netns", "exec", n0, "iptables", "-t", "raw", "-S", "PREROUTING")
		o6 := run(t, "ip", "netns", "exec", n0, "ip6tables", "-t", "raw", "-S", "PREROUTING")
		return !strings.Contains(o4, "NFQUEUE") && !strings.Contains(o6, "NFQUEUE")
	})
}

// An agent that restarts detaches: arp_ignore stays 1 while it is away (the
// kernel must not answer), the next agent adopts the original value from the
// state file, and its Close puts the original back.
func TestSysctlsSurviveRestart(t *testing.T) {
	l := newL2Lab(t, 1)
	n := l.nodes[0]
	p := "/proc/sys/net/ipv4/conf/eth0/arp_ignore"
	state := filepath.Join(t.TempDir(), "layer2-sysctls.json")
	runOnce := func(stop func(*Responder) error) {
		t.Helper()
		r, err := New(Options{Enter: n.Do, GratuitousCount: -1, StaleWindow: -1, StateFile: state, Logger: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		r.SetInterfaces([]string{"eth0"})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- r.Run(ctx) }()
		waitFor(t, 5*time.Second, "arp_ignore=1", func() bool { return readSysctlIn(t, n, p) == "1" })
		cancel()
		<-done
		if err := stop(r); err != nil {
			t.Fatal(err)
		}
	}
	runOnce((*Responder).Detach)
	if got := readSysctlIn(t, n, p); got != "1" {
		t.Fatalf("arp_ignore after Detach = %s, want 1 (the kernel must not answer during a restart)", got)
	}
	runOnce((*Responder).Close)
	if got := readSysctlIn(t, n, p); got != "0" {
		t.Errorf("arp_ignore after the restarted agent's Close = %s, want the original 0", got)
	}
	if _, err := os.Stat(state); !os.IsNotExist(err) {
		t.Errorf("state file left after everything was restored: %v", err)
	}
}

// Another station claiming an owned VIP (a gratuitous ARP, an unsolicited
// NA) is counted as a conflict and not answered.
func TestConflictDetected(t *testing.T) {
	l := newL2Lab(t, 1)
	reg := prometheus.NewPedanticRegistry()
	r := l.start(0, reg, Options{})
	r.SetOwned(owned([]string{"eth0"}, vip4, vip6))
	var arpc, ndpc *packet.Conn
	var mac net.HardwareAddr
	if err := l.client.Do(func() error {
		ifi, err := net.InterfaceByName("br0")
		if err != nil {
			return err
		}
		mac = ifi.HardwareAddr
		if arpc, err = packet.Listen(ifi, packet.Raw, etherTypeARP, nil); err != nil {
			return err
		}
		ndpc, err = packet.Listen(ifi, packet.Raw, etherTypeV6, nil)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { arpc.Close(); ndpc.Close() })
	garp := arpRequest(ethBroadcast, mac, vip4, vip4)
	if _, err := arpc.WriteTo(garp, &packet.Addr{HardwareAddr: ethBroadcast}); err != nil {
		t.Fatal(err)
	}
	na, err := naFrame(mac, vip6, allNodesV6eMAC, allNodesV6, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ndpc.WriteTo(na, &packet.Addr{HardwareAddr: allNodesV6eMAC}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 3*time.Second, "two conflicts counted", func() bool {
		return testutil.ToFloat64(r.m.conflicts.WithLabelValues("eth0")) == 2
	})
	if got := testutil.ToFloat64(r.m.arpReplies.WithLabelValues("eth0", PathUserspace)); got != 0 {
		t.Errorf("answered a gratuitous ARP claiming our VIP (%v replies)", got)
	}
}

// Giving up many VIPs at once queues them all for the window and removes
// every rule afterwards (the rules go in batches, so this stays quick).
func TestStaleRulesForManyVIPs(t *testing.T) {
	needTools(t, "iptables-restore", "ip6tables-restore")
	l := newL2Lab(t, 1)
	r := l.start(0, nil, Options{StaleWindow: 2 * time.Second})
	many := map[netip.Addr][]string{}
	a, b := netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("2001:db8:100::2:1")
	for range 150 {
		many[a], many[b] = []string{"eth0"}, []string{"eth0"}
		a, b = a.Next(), b.Next()
	}
	r.SetOwned(many)
	r.SetOwned(nil)
	n := l.nodes[0].Name
	count := func(bin string) int {
		return strings.Count(run(t, "ip", "netns", "exec", n, bin, "-t", "raw", "-S", "PREROUTING"), "NFQUEUE")
	}
	start := time.Now()
	waitFor(t, 10*time.Second, "300 queue rules", func() bool { return count("iptables")+count("ip6tables") == 300 })
	t.Logf("300 rules in place after %v", time.Since(start))
	waitFor(t, 10*time.Second, "all queue rules removed after the window", func() bool {
		return count("iptables")+count("ip6tables") == 0
	})
}

// The client's own kernel re-checks a cached entry with a unicast
// solicitation (NUD probe, sent to the VIP at the cached MAC); the owner
// answers it and the entry becomes REACHABLE again without any multicast
// solicitation.
func TestKernelNUDProbeAnswered(t *testing.T) {
	needTools(t, "tcpdump", "ping")
	l := newL2Lab(t, 1)
	c := l.client.Name
	r := l.start(0, nil, Options{})
	r.SetOwned(owned([]string{"eth0"}, vip6))
	run(t, "ip", "netns", "exec", c, "sysctl", "-qw", "net.ipv6.neigh.br0.delay_first_probe_time=1")
	// A cached entry, stale: the next packet sends the entry to DELAY,
	// then PROBE (unicast solicitations).
	run(t, "ip", "-n", c, "neigh", "replace", vip6.String(), "lladdr", l.macs[0], "dev", "br0", "nud", "stale")

	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
	defer cancel()
	g, _ := solicitedNode(vip6)
	// The first solicitation for the VIP, unicast or multicast.
	dump := exec.CommandContext(ctx, "ip", "netns", "exec", c, "tcpdump", "-l", "-n", "-e", "-i", "br0", "-c", "1",
		fmt.Sprintf("icmp6 and ip6[40] == 135 and (ip6 dst host %s or ip6 dst host %s)", vip6, g))
	out := &syncBuffer{}
	dump.Stdout, dump.Stderr = out, out
	if err := dump.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "tcpdump listening", func() bool { return strings.Contains(out.String(), "listening on") })
	_, _ = tryRun(3*time.Second, "ip", "netns", "exec", c, "ping", "-c", "1", "-W", "1", vip6.String())
	waitFor(t, 5*time.Second, "client entry REACHABLE again", func() bool {
		return strings.Contains(run(t, "ip", "-n", c, "neigh", "show", vip6.String(), "dev", "br0"), "REACHABLE")
	})
	_ = dump.Wait()
	first := out.String()
	t.Logf("first solicitation seen: %s", strings.TrimSpace(first))
	if !strings.Contains(first, "> "+l.macs[0]) || !strings.Contains(first, "> "+vip6.String()) {
		t.Errorf("the first solicitation was not a unicast probe to %s at %s:\n%s", vip6, l.macs[0], first)
	}
	if got := testutil.ToFloat64(r.m.ndpAdverts.WithLabelValues("eth0", PathUserspace)); got < 1 {
		t.Errorf("ndp_advertisements_sent_total = %v", got)
	}
}

// syncBuffer is a bytes.Buffer safe for a writer process and a reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
