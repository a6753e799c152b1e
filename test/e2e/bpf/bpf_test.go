// Package bpf_test runs the XDP fast path next to the userspace responder,
// as the agent does, on one veth segment: a node namespace (interface l2)
// and a client namespace (interface cl). It checks the seam between them:
// XDP answers what it owns and the userspace responder never sees those
// requests; when the fast path goes away (lease lapsed, removed) userspace
// answers without a gap in service; both packages register their metric
// families on one registry without a clash.
package bpf_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/vipspeaker/vipspeaker/bpf"
	"github.com/vipspeaker/vipspeaker/dataplane"
	"github.com/vipspeaker/vipspeaker/internal/nstest"
	"github.com/vipspeaker/vipspeaker/test/lab"
)

var (
	nodeMAC = net.HardwareAddr{0x02, 0x00, 0x5e, 0x30, 0x00, 0x01}
	vip4    = netip.MustParseAddr("203.0.113.10")
	vip6    = netip.MustParseAddr("2001:db8:100::10")
)

type seg struct {
	node, client *nstest.NS
	pinDir       string
}

func newSeg(t *testing.T) *seg {
	t.Helper()
	for _, tool := range []string{"ip", "arping", "ndisc6"} {
		if _, err := exec.LookPath(tool); err != nil {
			nstest.Skip(t, "needs %s", tool)
		}
	}
	s := &seg{node: nstest.New(t), client: nstest.New(t)}
	dir := t.TempDir()
	if err := unix.Mount("bpf", dir, "bpf", 0, ""); err != nil {
		nstest.Skip(t, "mount bpffs: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	s.pinDir = filepath.Join(dir, "vipspeaker")

	nh, err := netlink.NewHandleAt(s.node.Handle)
	if err != nil {
		t.Fatal(err)
	}
	defer nh.Close()
	ch, err := netlink.NewHandleAt(s.client.Handle)
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	if err := nh.LinkAdd(&netlink.Veth{
		LinkAttrs: netlink.LinkAttrs{Name: "l2", HardwareAddr: nodeMAC}, PeerName: "cl",
		PeerNamespace: netlink.NsFd(int(s.client.Handle)),
	}); err != nil {
		t.Fatalf("add veth: %v", err)
	}
	up := func(h *netlink.Handle, name string, addrs ...string) {
		lk, err := h.LinkByName(name)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range addrs {
			ad, err := netlink.ParseAddr(a)
			if err != nil {
				t.Fatal(err)
			}
			ad.Flags = unix.IFA_F_NODAD
			if err := h.AddrAdd(lk, ad); err != nil {
				t.Fatalf("add %s to %s: %v", a, name, err)
			}
		}
		if err := h.LinkSetUp(lk); err != nil {
			t.Fatal(err)
		}
	}
	up(nh, "l2", "198.18.0.1/24", "2001:db8:1::1/64")
	up(ch, "cl", "198.18.0.2/24", "2001:db8:1::2/64")
	// The VIPs live on the node's VIP interface (ifb stands in for dummy).
	if err := nh.LinkAdd(&netlink.Ifb{LinkAttrs: netlink.LinkAttrs{Name: "kube-lb0"}}); err != nil {
		t.Fatalf("add kube-lb0: %v", err)
	}
	up(nh, "kube-lb0", vip4.String()+"/32", vip6.String()+"/128")
	cl, _ := ch.LinkByName("cl")
	for _, p := range []string{"203.0.113.0/24", "2001:db8:100::/64"} {
		pr := netip.MustParsePrefix(p)
		dst := &net.IPNet{IP: pr.Addr().AsSlice(), Mask: net.CIDRMask(pr.Bits(), pr.Addr().BitLen())}
		if err := ch.RouteAdd(&netlink.Route{LinkIndex: cl.Attrs().Index, Dst: dst, Scope: netlink.SCOPE_LINK}); err != nil {
			t.Fatalf("client route %s: %v", p, err)
		}
	}
	attachXDPPass(t, s.client.Do, cl.Attrs().Index)
	return s
}

// attachXDPPass attaches a native XDP_PASS program to the interfaces (by
// index) of the namespace enter runs in, until the test ends: a veth end
// receives its peer's native XDP_TX frames (live frames) only when it runs
// NAPI (bpf/doc.go).
func attachXDPPass(t testing.TB, enter func(func() error) error, ifindexes ...int) {
	t.Helper()
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.XDP, License: "MIT",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 2), asm.Return()}})
	if bpf.Unsupported(err) {
		nstest.Skip(t, "XDP not available: %v", err)
	}
	if err != nil {
		t.Fatalf("load XDP_PASS program: %v", err)
	}
	t.Cleanup(func() { prog.Close() })
	for _, idx := range ifindexes {
		var l link.Link
		if err := enter(func() error {
			var err error
			l, err = link.AttachXDP(link.XDPOptions{Program: prog, Interface: idx, Flags: link.XDPDriverMode})
			return err
		}); err != nil {
			t.Fatalf("XDP_PASS on interface %d: %v", idx, err)
		}
		t.Cleanup(func() { l.Close() })
	}
}

func (s *seg) inClient(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, _ := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", s.client.Name}, args...)...).CombinedOutput()
	return string(out)
}

func macs(out string) []string {
	var m []string
	for _, line := range strings.Split(out, "\n") {
		if hw, err := net.ParseMAC(strings.TrimSpace(line)); err == nil && len(hw) == 6 {
			m = append(m, hw.String())
		}
	}
	return m
}

func (s *seg) arping(t *testing.T, n int) []string {
	t.Helper()
	return s.arpingFor(t, vip4, n)
}

func (s *seg) arpingFor(t *testing.T, vip netip.Addr, n int) []string {
	t.Helper()
	return macs(s.inClient(t, "arping", "-i", "cl", "-c", strconv.Itoa(n), "-W", "0.1", "-r", vip.String()))
}

func (s *seg) ndisc(t *testing.T) []string {
	t.Helper()
	return macs(s.inClient(t, "ndisc6", "-1", "-q", "-r", "2", "-w", "300", vip6.String(), "cl"))
}

// startBoth runs the userspace responder on l2 and loads the fast path on
// it (not handed to the responder, not run), both registering on reg and
// gone at the end of the test.
func (s *seg) startBoth(t *testing.T, reg *prometheus.Registry) (*dataplane.Responder, *bpf.FastPath) {
	t.Helper()
	resp, err := dataplane.New(dataplane.Options{Enter: s.node.Do, Registerer: reg, GratuitousCount: -1})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- resp.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
		_ = resp.Close()
	})
	resp.SetInterfaces([]string{"l2"})
	fp, err := bpf.Load(bpf.Options{Interfaces: []string{"l2"}, PinDir: s.pinDir, Enter: s.node.Do, Registerer: reg})
	if errors.Is(err, bpf.ErrNotSupported) {
		nstest.Skip(t, "XDP fast path not supported: %v", err)
	}
	if err != nil {
		t.Fatalf("load fast path: %v", err)
	}
	t.Cleanup(func() { _ = fp.Remove() }) // a second Remove does nothing
	return resp, fp
}

func metric(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	next:
		for _, m := range f.GetMetric() {
			got := map[string]string{}
			for _, lp := range m.GetLabel() {
				got[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if got[k] != v {
					continue next
				}
			}
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}

func wantReplies(t *testing.T, what string, got []string, n int) {
	t.Helper()
	if len(got) != n {
		t.Fatalf("%s: %d replies %v, want %d", what, len(got), got, n)
	}
	for _, m := range got {
		if m != nodeMAC.String() {
			t.Fatalf("%s: reply from %s, want %s", what, m, nodeMAC)
		}
	}
}

// TestXDPFirstUserspaceAfter: with both running, the client's requests are
// answered by XDP (the fast path's counts rise, and the reply counters show
// them with path="xdp" at the very next scrape, read from the program's
// maps; the path="userspace" counters stay at zero); once the fast path's
// lease lapses and once it is removed, the userspace responder answers.
func TestXDPFirstUserspaceAfter(t *testing.T) {
	s := newSeg(t)
	reg := prometheus.NewRegistry()
	resp, fp := s.startBoth(t, reg)
	if v := metric(t, reg, "vipspeaker_l2_fast_path_active", nil); v != 0 {
		t.Fatalf("vipspeaker_l2_fast_path_active = %v before SetFastPath, want 0", v)
	}
	resp.SetFastPath(fp)
	if v := metric(t, reg, "vipspeaker_l2_fast_path_active", nil); v != 1 {
		t.Fatalf("vipspeaker_l2_fast_path_active = %v with the fast path, want 1", v)
	}
	fctx, fcancel := context.WithCancel(context.Background())
	fdone := make(chan error, 1)
	go func() { fdone <- fp.Run(fctx) }()
	var once sync.Once
	stopRun := func() { once.Do(func() { fcancel(); <-fdone }) }
	t.Cleanup(stopRun)

	owned := map[netip.Addr][]string{vip4: {"l2"}, vip6: {"l2"}}
	// The fast path first, so nothing is announced before XDP answers.
	if err := fp.SetOwned(owned); err != nil {
		t.Fatal(err)
	}
	resp.SetOwned(owned)
	deadline := time.Now().Add(5 * time.Second)
	for len(resp.Owned("l2")) != 2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if len(resp.Owned("l2")) != 2 {
		t.Fatalf("userspace responder not answering on l2")
	}
	if err := fp.SetCounted([]netip.Addr{vip4, vip6}); err != nil {
		t.Fatal(err)
	}

	wantReplies(t, "arping with XDP", s.arping(t, 3), 3)
	wantReplies(t, "ndisc6 with XDP", s.ndisc(t), 1)
	arp, ndp, _, err := fp.SentCounts("l2")
	if err != nil {
		t.Fatal(err)
	}
	if arp != 3 || ndp != 1 {
		t.Fatalf("xdp sent %d ARP replies and %d advertisements, want 3 and 1", arp, ndp)
	}
	// Read at scrape time: exact at once, no copy interval to wait for.
	if v := metric(t, reg, "vipspeaker_arp_replies_sent_total", map[string]string{"interface": "l2", "path": "xdp"}); v != 3 {
		t.Fatalf("vipspeaker_arp_replies_sent_total{path=xdp} = %v right after 3 XDP replies, want 3", v)
	}
	if v := metric(t, reg, "vipspeaker_ndp_advertisements_sent_total", map[string]string{"interface": "l2", "path": "xdp"}); v != 1 {
		t.Fatalf("vipspeaker_ndp_advertisements_sent_total{path=xdp} = %v right after 1 XDP advertisement, want 1", v)
	}
	for _, name := range []string{"vipspeaker_arp_replies_sent_total", "vipspeaker_ndp_advertisements_sent_total"} {
		if v := metric(t, reg, name, map[string]string{"interface": "l2", "path": "userspace"}); v != 0 {
			t.Fatalf("%s{path=userspace} = %v while XDP answers, want 0", name, v)
		}
	}
	// Both packages' families on one registry.
	if v := metric(t, reg, "vipspeaker_xdp_attached", map[string]string{"interface": "l2"}); v != 1 {
		t.Fatalf("vipspeaker_xdp_attached{interface=l2} = %v", v)
	}

	// The agent stops renewing (it hangs, say): once the lease lapses
	// userspace answers.
	stopRun()
	deadline = time.Now().Add(5 * time.Second)
	for {
		d, err := fp.LeaseRemaining()
		if err != nil {
			t.Fatal(err)
		}
		if d == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("lease did not lapse: %v left", d)
		}
		time.Sleep(50 * time.Millisecond)
	}
	wantReplies(t, "arping after the lease lapsed", s.arping(t, 2), 2)
	if v := metric(t, reg, "vipspeaker_arp_replies_sent_total", map[string]string{"interface": "l2", "path": "userspace"}); v != 2 {
		t.Fatalf("userspace ARP replies = %v after the lease lapsed, want 2", v)
	}
	if a, _, _, _ := fp.SentCounts("l2"); a != 3 {
		t.Fatalf("xdp ARP replies moved to %d after the lease lapsed", a)
	}

	// Removed for good: userspace keeps answering, IPv6 too.
	if err := fp.Remove(); err != nil {
		t.Fatalf("remove: %v", err)
	}
	wantReplies(t, "ndisc6 after Remove", s.ndisc(t), 1)
	if v := metric(t, reg, "vipspeaker_ndp_advertisements_sent_total", map[string]string{"interface": "l2", "path": "userspace"}); v < 1 {
		t.Fatalf("userspace advertisements = %v after Remove, want ≥ 1", v)
	}
}

// TestMoreVIPsThanTheMapHolds: a node owning more VIPs than the XDP map
// holds (bpf.MaxOwned) keeps the fast path for those that fit and answers
// the rest from userspace. With MaxOwned+16 IPv4 VIPs owned by both, as
// the agent hands them over: the map holds the MaxOwned lowest, the client
// gets exactly one reply with the node's MAC for a VIP inside and for one
// past the limit, the first counted with path="xdp" and the second with
// path="userspace"; a live-frames round announces the VIP inside and
// reports the one past the limit missed (the responder sends those through
// its packet socket); and
// vipspeaker_xdp_map_overflow says how many pairs and counted VIPs did not
// fit.
func TestMoreVIPsThanTheMapHolds(t *testing.T) {
	s := newSeg(t)
	reg := prometheus.NewRegistry()
	resp, fp := s.startBoth(t, reg)
	if err := fp.RenewLease(time.Hour); err != nil {
		t.Fatal(err)
	}

	// 198.19.0.0/16: lab link space, unused on this segment, large enough.
	const extra = 16
	owned := map[netip.Addr][]string{}
	var all []netip.Addr
	a := netip.MustParseAddr("198.19.0.1")
	for range bpf.MaxOwned + extra {
		owned[a] = []string{"l2"}
		all = append(all, a)
		a = a.Next()
	}
	inside, past := all[0], all[len(all)-1]
	start := time.Now()
	if err := fp.SetOwned(owned); err != nil {
		t.Fatalf("SetOwned with %d VIPs: %v, want the map filled and the rest left to userspace", len(owned), err)
	}
	t.Logf("SetOwned of %d VIPs took %v", len(owned), time.Since(start))
	resp.SetOwned(owned)
	lab.Eventually(t, 10*time.Second, 20*time.Millisecond, func() error {
		if n := len(resp.Owned("l2")); n != len(owned) {
			return fmt.Errorf("userspace responder owns %d VIPs on l2, want %d", n, len(owned))
		}
		return nil
	})
	if err := fp.SetCounted(all); err != nil {
		t.Fatalf("SetCounted with %d VIPs: %v", len(all), err)
	}

	in, err := fp.Owned()
	if err != nil {
		t.Fatal(err)
	}
	if len(in) != bpf.MaxOwned {
		t.Fatalf("the XDP map holds %d VIPs, want %d (full)", len(in), bpf.MaxOwned)
	}
	if _, ok := in[inside]; !ok {
		t.Fatalf("%s (the lowest VIP) is not in the XDP map", inside)
	}
	if _, ok := in[past]; ok {
		t.Fatalf("%s (the highest VIP) is in the XDP map, want it left to userspace", past)
	}
	if v := metric(t, reg, "vipspeaker_xdp_map_overflow", map[string]string{"map": "owned"}); v != extra {
		t.Fatalf("vipspeaker_xdp_map_overflow{map=owned} = %v, want %d", v, extra)
	}
	if v := metric(t, reg, "vipspeaker_xdp_map_overflow", map[string]string{"map": "counted"}); v != extra {
		t.Fatalf("vipspeaker_xdp_map_overflow{map=counted} = %v, want %d", v, extra)
	}

	xdpReplies := func() float64 {
		arp, _, _, err := fp.SentCounts("l2")
		if err != nil {
			t.Fatal(err)
		}
		return float64(arp)
	}
	userReplies := func() float64 {
		return metric(t, reg, "vipspeaker_arp_replies_sent_total", map[string]string{"interface": "l2", "path": "userspace"})
	}
	x0, u0 := xdpReplies(), userReplies()
	wantReplies(t, "arping "+inside.String()+" (in the XDP map)", s.arpingFor(t, inside, 3), 3)
	if x, u := xdpReplies()-x0, userReplies()-u0; x != 3 || u != 0 {
		t.Fatalf("replies for the VIP in the map: %v by XDP and %v by userspace, want 3 and 0", x, u)
	}
	x0, u0 = xdpReplies(), userReplies()
	wantReplies(t, "arping "+past.String()+" (past the XDP map's capacity)", s.arpingFor(t, past, 3), 3)
	if x, u := xdpReplies()-x0, userReplies()-u0; x != 0 || u != 3 {
		t.Fatalf("replies for the VIP past the map: %v by XDP and %v by userspace, want 0 and 3", x, u)
	}

	n, missed, err := fp.AnnounceOwned("l2", []netip.Addr{inside, past})
	switch {
	case errors.Is(err, bpf.ErrLiveFramesRefused) && !liveFrames(t):
		t.Log("this kernel refuses XDP live frames: the gratuitous round through the map is not exercised here")
	case err != nil:
		t.Fatal(err)
	case n != 2 || len(missed) != 1 || missed[0] != past:
		t.Fatalf("AnnounceOwned: %d frames sent, missed %v; want 2 (gratuitous request and reply of %s) and %s missed", n, missed, inside, past)
	}

	// Back under the limit: the map takes the rest, the metric drops to 0.
	delete(owned, inside)
	for _, v := range all[1:extra] {
		delete(owned, v)
	}
	if err := fp.SetOwned(owned); err != nil {
		t.Fatal(err)
	}
	if in, err = fp.Owned(); err != nil {
		t.Fatal(err)
	}
	if _, ok := in[past]; !ok || len(in) != bpf.MaxOwned {
		t.Fatalf("with %d VIPs owned the map holds %d (past VIP in it: %v), want all of them", len(owned), len(in), ok)
	}
	if v := metric(t, reg, "vipspeaker_xdp_map_overflow", map[string]string{"map": "owned"}); v != 0 {
		t.Fatalf("vipspeaker_xdp_map_overflow{map=owned} = %v with %d VIPs, want 0", v, len(owned))
	}
}
