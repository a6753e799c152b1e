package dataplane

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
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
