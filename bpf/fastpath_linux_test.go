package bpf

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/vipspeaker/vipspeaker/internal/nstest"
)

func own(t testing.TB, f *FastPath, vips ...netip.Addr) {
	t.Helper()
	owned := map[netip.Addr][]string{}
	for _, v := range vips {
		owned[v] = []string{nodeIf}
	}
	if err := f.SetOwned(owned); err != nil {
		t.Fatalf("set owned: %v", err)
	}
}

func renew(t testing.TB, f *FastPath, d time.Duration) {
	t.Helper()
	if err := f.RenewLease(d); err != nil {
		t.Fatalf("renew lease: %v", err)
	}
}

func sent(t testing.TB, f *FastPath) (arp, ndp, grat uint64) {
	t.Helper()
	arp, ndp, grat, err := f.SentCounts(nodeIf)
	if err != nil {
		t.Fatalf("sent counts: %v", err)
	}
	return arp, ndp, grat
}

func wantMACs(t testing.TB, what string, got []string, n int) {
	t.Helper()
	if len(got) != n {
		t.Fatalf("%s: %d replies %v, want %d", what, len(got), got, n)
	}
	for _, m := range got {
		if m != nodeMAC.String() {
			t.Fatalf("%s: reply with MAC %s, want the node's %s", what, m, nodeMAC)
		}
	}
}

// TestAnswersOwnedVIPs: a client resolves owned VIPs (IPv4 with arping,
// IPv6 with ndisc6, both with ping through the kernel's neighbour table)
// and gets the node's MAC from XDP — the kernel is kept from answering — in
// native and generic mode; VIPs not owned get no answer; the xdp reply
// counters count exactly the replies the client saw.
func TestAnswersOwnedVIPs(t *testing.T) {
	requireTools(t, "arping", "ndisc6", "ping")
	for _, mode := range []AttachMode{AttachNative, AttachGeneric} {
		t.Run(string(mode), func(t *testing.T) {
			l := newLab(t)
			if mode == AttachNative {
				l.giveClientNAPI(t)
			}
			f := l.load(t, mode, nil)
			if got := f.Interfaces()[nodeIf]; got != string(mode) {
				t.Fatalf("attached in mode %q, want %q", got, mode)
			}
			own(t, f, vip4, vip6)
			renew(t, f, time.Minute)

			wantMACs(t, "arping owned "+vip4.String(), l.arping(t, vip4, 3), 3)
			wantMACs(t, "arping not owned "+other4.String(), l.arping(t, other4, 2), 0)
			if got := l.ndisc(t, vip6); got != nodeMAC.String() {
				t.Fatalf("ndisc6 owned %s: got %q, want %s", vip6, got, nodeMAC)
			}
			if got := l.ndisc(t, other6); got != "" {
				t.Fatalf("ndisc6 not owned %s: got an answer %s", other6, got)
			}
			arp, ndp, _ := sent(t, f)
			if arp != 3 {
				t.Errorf("xdp ARP replies = %d, want 3 (the replies arping saw)", arp)
			}
			if ndp != 1 {
				t.Errorf("xdp neighbour advertisements = %d, want 1 (ndisc6 stops at the first)", ndp)
			}

			// The kernel's own resolution: ping fills the client's
			// neighbour table with the node's MAC (an advertisement with a
			// bad checksum would be dropped by the client's kernel).
			for _, v := range []netip.Addr{vip4, vip6} {
				if out, err := l.inClient(t, 10*time.Second, "ping", "-c", "1", "-W", "2", v.String()); err != nil {
					t.Fatalf("ping %s from the client: %v\n%s", v, err, out)
				}
				if got := l.clientNeighbour(t, v); got != nodeMAC.String() {
					t.Fatalf("client neighbour entry for %s = %q, want %s", v, got, nodeMAC)
				}
			}
		})
	}
}

// TestUnicastAndMulticastSolicitations sends hand-made solicitations from
// the client and checks every field of the advertisement XDP returns:
// multicast NS (with a source link-layer option) and unicast NUD probe
// (without one, so XDP grows the frame), checksum included. A solicitation
// with a wrong checksum is not answered.
func TestUnicastAndMulticastSolicitations(t *testing.T) {
	l := newLab(t)
	l.giveClientNAPI(t)
	f := l.load(t, AttachNative, nil)
	own(t, f, vip6)
	renew(t, f, time.Minute)
	raw := l.openRaw(t)

	group := netip.MustParseAddr("ff02::1:ff00:10")
	groupMAC := []byte{0x33, 0x33, 0xff, 0x00, 0x00, 0x10}
	cases := []struct {
		name  string
		frame []byte
	}{
		{"multicast with source option", nsFrame(vip6, group, groupMAC, true)},
		{"unicast without source option", nsFrame(vip6, vip6, nodeMAC, false)},
		{"unicast with source option", nsFrame(vip6, vip6, nodeMAC, true)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			raw.send(t, c.frame)
			got := raw.receive(t, 1, 2*time.Second, func(b []byte) bool {
				na, ok := parseNA(b)
				return ok && na.target == vip6
			})
			if len(got) != 1 {
				t.Fatalf("no neighbour advertisement for %s", vip6)
			}
			na, _ := parseNA(got[0])
			want := parsedNA{
				ethDst: clientMAC, ethSrc: nodeMAC, src: vip6, dst: clientV6.Addr(),
				hopLimit: 255, flags: 0x60, target: vip6, tlla: nodeMAC, checksumOK: true,
			}
			if fmt.Sprint(na) != fmt.Sprint(want) {
				t.Fatalf("advertisement\n got %+v\nwant %+v", na, want)
			}
			if len(got[0]) != 86 {
				t.Fatalf("advertisement frame is %d bytes, want 86", len(got[0]))
			}
		})
	}
	t.Run("IPv4-mapped target of an owned IPv4 VIP", func(t *testing.T) {
		own(t, f, vip6, vip4)
		mapped := netip.AddrFrom16(vip4.As16())
		b := mapped.As16()
		g := netip.AddrFrom16([16]byte{0xff, 0x02, 11: 0x01, 12: 0xff, 13: b[13], 14: b[14], 15: b[15]})
		raw.send(t, nsFrame(mapped, g, []byte{0x33, 0x33, 0xff, b[13], b[14], b[15]}, true))
		got := raw.receive(t, 1, 500*time.Millisecond, func(b []byte) bool {
			_, ok := parseNA(b)
			return ok
		})
		if len(got) != 0 {
			t.Fatalf("answered a solicitation for %s", mapped)
		}
	})
	t.Run("bad checksum", func(t *testing.T) {
		bad := nsFrame(vip6, group, groupMAC, true)
		bad[14+40+2] ^= 0xff
		_, before, _ := sentTriple(t, f)
		raw.send(t, bad)
		got := raw.receive(t, 1, 500*time.Millisecond, func(b []byte) bool {
			na, ok := parseNA(b)
			return ok && na.target == vip6
		})
		if len(got) != 0 {
			t.Fatalf("answered a solicitation with a bad checksum")
		}
		if _, after, _ := sentTriple(t, f); after != before {
			t.Fatalf("xdp advertisement counter moved %d -> %d", before, after)
		}
	})
}

func sentTriple(t testing.TB, f *FastPath) (uint64, uint64, uint64) { return sent(t, f) }

// TestVIPCounters: the per-VIP counters equal what the client sent (ping
// packets and their IP bytes), exported as
// vipspeaker_vip_receive_{packets,bytes}_total{vip}; a counted VIP that
// got no traffic stays at zero; neighbour discovery is not counted.
func TestVIPCounters(t *testing.T) {
	requireTools(t, "ping")
	l := newLab(t)
	reg := prometheus.NewRegistry()
	f := l.load(t, AttachGeneric, reg)
	own(t, f, vip4, vip6)
	renew(t, f, time.Minute)
	if err := f.SetCounted([]netip.Addr{vip4, vip6, other4}); err != nil {
		t.Fatalf("set counted: %v", err)
	}
	const n4, n6, size = 5, 4, 56
	if out, err := l.inClient(t, 20*time.Second, "ping", "-c", strconv.Itoa(n4), "-i", "0.05", "-s", strconv.Itoa(size), vip4.String()); err != nil {
		t.Fatalf("ping %s: %v\n%s", vip4, err, out)
	}
	if out, err := l.inClient(t, 20*time.Second, "ping", "-c", strconv.Itoa(n6), "-i", "0.05", "-s", strconv.Itoa(size), vip6.String()); err != nil {
		t.Fatalf("ping %s: %v\n%s", vip6, err, out)
	}
	got, err := f.Traffic()
	if err != nil {
		t.Fatalf("traffic: %v", err)
	}
	want := map[netip.Addr]Traffic{
		vip4:   {Packets: n4, Bytes: n4 * (20 + 8 + size)},
		vip6:   {Packets: n6, Bytes: n6 * (40 + 8 + size)},
		other4: {},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("VIP counters\n got %v\nwant %v", got, want)
	}
	metrics := gather(t, reg)
	for _, c := range []struct {
		name string
		vip  netip.Addr
		want uint64
	}{
		{"vipspeaker_vip_receive_packets_total", vip4, n4},
		{"vipspeaker_vip_receive_bytes_total", vip4, n4 * (20 + 8 + size)},
		{"vipspeaker_vip_receive_packets_total", vip6, n6},
		{"vipspeaker_vip_receive_packets_total", other4, 0},
	} {
		key := fmt.Sprintf(`%s{vip="%s"}`, c.name, c.vip)
		if v, ok := metrics[key]; !ok || v != float64(c.want) {
			t.Errorf("%s = %v (present %v), want %d", key, v, ok, c.want)
		}
	}
	if v := metrics[`vipspeaker_xdp_attached{interface="l2",mode="generic"}`]; v != 1 {
		t.Errorf("vipspeaker_xdp_attached for l2 = %v, want 1", v)
	}
	// A VIP no longer counted disappears; the others keep their counts.
	if err := f.SetCounted([]netip.Addr{vip4}); err != nil {
		t.Fatalf("set counted: %v", err)
	}
	got, err = f.Traffic()
	if err != nil {
		t.Fatalf("traffic: %v", err)
	}
	if len(got) != 1 || got[vip4].Packets != n4 {
		t.Fatalf("after narrowing the counted set: %v, want only %s with %d packets", got, vip4, n4)
	}
}

// gather returns every sample as "name{labels}" → value.
func gather(t testing.TB, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	out := map[string]float64{}
	for _, fam := range fams {
		for _, m := range fam.GetMetric() {
			var labels []string
			for _, lp := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", lp.GetName(), lp.GetValue()))
			}
			key := fam.GetName()
			if len(labels) > 0 {
				key += "{" + strings.Join(labels, ",") + "}"
			}
			switch {
			case m.GetCounter() != nil:
				out[key] = m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				out[key] = m.GetGauge().GetValue()
			}
		}
	}
	return out
}

// TestLeaseLapseStopsAnswers: once the lease lapses the program stops
// answering (the kernel does not answer either: arp_ignore), and a renewal
// brings the answers back.
func TestLeaseLapseStopsAnswers(t *testing.T) {
	requireTools(t, "arping", "ndisc6")
	l := newLab(t)
	f := l.load(t, AttachGeneric, nil)
	own(t, f, vip4, vip6)
	// Long enough for arping to start and be answered on a loaded machine
	// (300 ms was not, once).
	renew(t, f, 2*time.Second)
	wantMACs(t, "arping within the lease", l.arping(t, vip4, 1), 1)
	deadline := time.Now().Add(10 * time.Second)
	for {
		d, err := f.LeaseRemaining()
		if err != nil {
			t.Fatalf("lease remaining: %v", err)
		}
		if d == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("lease still %v after 10s", d)
		}
		time.Sleep(50 * time.Millisecond)
	}
	wantMACs(t, "arping after the lease lapsed", l.arping(t, vip4, 2), 0)
	if got := l.ndisc(t, vip6); got != "" {
		t.Fatalf("ndisc6 after the lease lapsed: answered by %s", got)
	}
	renew(t, f, time.Minute)
	wantMACs(t, "arping after renewal", l.arping(t, vip4, 1), 1)
}

// TestPinnedAcrossRestart: an agent that closes (restart) leaves the
// program attached and answering; the next agent finds the owned set and
// the counters where the first left them and takes the link over; Remove
// leaves nothing attached or pinned, and nothing answers.
func TestPinnedAcrossRestart(t *testing.T) {
	requireTools(t, "arping")
	l := newLab(t)
	f1 := l.load(t, AttachGeneric, nil)
	own(t, f1, vip4, vip6)
	renew(t, f1, time.Minute)
	if err := f1.SetCounted([]netip.Addr{vip4}); err != nil {
		t.Fatalf("set counted: %v", err)
	}
	wantMACs(t, "arping with the first agent", l.arping(t, vip4, 2), 2)
	if err := f1.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}

	// Agent away: the pinned program still answers.
	if !l.xdpAttached(t) {
		t.Fatalf("XDP detached when the agent closed; want it pinned")
	}
	wantMACs(t, "arping with no agent", l.arping(t, vip4, 2), 2)

	f2 := l.load(t, AttachGeneric, nil)
	owned, err := f2.Owned()
	if err != nil {
		t.Fatalf("owned: %v", err)
	}
	if len(owned) != 2 || len(owned[vip4]) != 1 || len(owned[vip6]) != 1 {
		t.Fatalf("owned set after restart = %v, want %s and %s on one interface", owned, vip4, vip6)
	}
	if arp, _, _ := sent(t, f2); arp != 4 {
		t.Fatalf("xdp ARP replies after restart = %d, want 4 (2 before, 2 while away)", arp)
	}
	if tr, err := f2.Traffic(); err != nil || len(tr) != 1 {
		t.Fatalf("counted VIPs after restart = %v (%v), want %s", tr, err, vip4)
	}
	if d, err := f2.LeaseRemaining(); err != nil || d < 30*time.Second {
		t.Fatalf("lease after restart = %v (%v), want the first agent's minute", d, err)
	}
	wantMACs(t, "arping with the second agent", l.arping(t, vip4, 1), 1)

	if err := f2.Remove(); err != nil {
		t.Fatalf("remove: %v", err)
	}
	if l.xdpAttached(t) {
		t.Fatalf("XDP still attached after Remove")
	}
	if _, err := os.Stat(l.pinDir); !errors.Is(err, os.ErrNotExist) {
		ents, _ := os.ReadDir(l.pinDir)
		t.Fatalf("pin directory still there after Remove (err %v, entries %v)", err, ents)
	}
	ents, _ := os.ReadDir(filepath.Dir(l.pinDir))
	for _, e := range ents {
		// maps.debug and progs.debug come with every bpffs (bpf_preload).
		if !strings.HasSuffix(e.Name(), ".debug") {
			t.Fatalf("bpffs still holds %s after Remove", e.Name())
		}
	}
	wantMACs(t, "arping after Remove", l.arping(t, vip4, 2), 0)
}

// TestWithoutPinning: with no bpf filesystem under the pin directory the
// fast path still runs, and Close detaches it.
func TestWithoutPinning(t *testing.T) {
	requireTools(t, "arping")
	l := newLab(t)
	l.pinDir = filepath.Join(t.TempDir(), "vipspeaker")
	f := l.load(t, AttachGeneric, nil)
	own(t, f, vip4)
	renew(t, f, time.Minute)
	wantMACs(t, "arping unpinned", l.arping(t, vip4, 1), 1)
	if err := f.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if l.xdpAttached(t) {
		t.Fatalf("XDP still attached after Close without pinning")
	}
	if _, err := os.Stat(l.pinDir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("pin directory created outside bpffs: %v", err)
	}
}

// TestRefusedWithoutCapabilities: a process without CAP_BPF/CAP_SYS_ADMIN
// gets an error wrapping ErrNotSupported (the agent falls back to
// userspace) and nothing is attached.
func TestRefusedWithoutCapabilities(t *testing.T) {
	l := newLab(t)
	errc := make(chan error, 1)
	go func() {
		// Capabilities are per thread: drop the effective set on a
		// locked thread that dies with this goroutine, and load from it.
		runtime.LockOSThread()
		hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
		var data [2]unix.CapUserData
		if err := unix.Capget(&hdr, &data[0]); err != nil {
			errc <- fmt.Errorf("capget: %w", err)
			return
		}
		data[0].Effective, data[1].Effective = 0, 0
		if err := unix.Capset(&hdr, &data[0]); err != nil {
			errc <- fmt.Errorf("capset: %w", err)
			return
		}
		f, err := Load(Options{Interfaces: []string{nodeIf}, PinDir: l.pinDir, Enter: l.node.Do})
		if err == nil {
			_ = f.Remove()
			errc <- errors.New("Load succeeded without capabilities")
			return
		}
		errc <- err
	}()
	err := <-errc
	if !errors.Is(err, ErrNotSupported) {
		t.Fatalf("Load without capabilities: %v, want an error wrapping ErrNotSupported", err)
	}
	t.Logf("refused as expected: %v", err)
	if l.xdpAttached(t) {
		t.Fatalf("XDP attached although Load failed")
	}
}

// TestVerifierRejectionIsAnError: when the kernel's verifier refuses the
// program (here the embedded object with its program replaced by one that
// returns a register it never set), Load returns a *VerifierError carrying
// the verifier's log, not an error wrapping ErrNotSupported (so the agent
// does not take it for a missing kernel feature and tests do not skip on
// it), logs it at error level with that log, and leaves nothing attached.
func TestVerifierRejectionIsAnError(t *testing.T) {
	l := newLab(t)
	loadSpec = func() (*ebpf.CollectionSpec, error) {
		spec, err := loadVip()
		if err != nil {
			return nil, err
		}
		spec.Programs["vs_xdp"].Instructions = asm.Instructions{asm.Mov.Reg(asm.R0, asm.R2), asm.Return()}
		return spec, nil
	}
	t.Cleanup(func() { loadSpec = loadVip })
	var logs strings.Builder
	f, err := Load(Options{Interfaces: []string{nodeIf}, PinDir: l.pinDir, Enter: l.node.Do,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err == nil {
		_ = f.Remove()
		t.Fatal("Load succeeded with a program the verifier must refuse")
	}
	var verr *VerifierError
	if !errors.As(err, &verr) {
		t.Fatalf("Load: %v, want a *VerifierError", err)
	}
	if errors.Is(err, ErrNotSupported) || Unsupported(err) {
		t.Fatalf("a verifier rejection reads as not supported: %v", err)
	}
	if log := strings.Join(verr.Log, "\n"); !strings.Contains(log, "R2 !read_ok") {
		t.Fatalf("VerifierError.Log lacks the verifier's reason (R2 !read_ok):\n%s", log)
	}
	var logged bool
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, "level=ERROR") && strings.Contains(line, "verifier") && strings.Contains(line, "R2 !read_ok") {
			logged = true
		}
	}
	if !logged {
		t.Fatalf("no error-level log line with the verifier's log:\n%s", logs.String())
	}
	t.Logf("refused as expected: %v", err)
	if l.xdpAttached(t) {
		t.Fatal("XDP attached although the verifier refused the program")
	}
}

// TestVethNativeTXNeedsPeerNAPI pins down why a native-mode XDP_TX reply on
// veth did not reach the peer in LAB.md's probe: veth hands an XDP_TX frame
// straight to the peer's receive queue, and drops it there (no error, only
// the peer's rx drop counters move) unless that queue runs NAPI, which a
// native XDP program or GRO on the peer turns on. The program's own counter
// rises either way.
func TestVethNativeTXNeedsPeerNAPI(t *testing.T) {
	requireTools(t, "arping")
	l := newLab(t)
	f := l.load(t, AttachNative, nil)
	own(t, f, vip4)
	renew(t, f, time.Minute)
	wantMACs(t, "arping, peer without NAPI", l.arping(t, vip4, 2), 0)
	if arp, _, _ := sent(t, f); arp != 2 {
		t.Fatalf("xdp ARP replies = %d, want 2 (sent with XDP_TX, lost by the veth)", arp)
	}
	l.giveClientNAPI(t)
	wantMACs(t, "arping, peer with NAPI", l.arping(t, vip4, 2), 2)
}

// TestUplinkCountsAndReconfigure: on an uplink the program counts VIP
// traffic but answers nothing, even for an owned VIP; naming the same
// interface as a layer2 interface later makes it answer (the owned set is
// rebuilt), and naming no interface detaches the program and drops its
// pinned link.
func TestUplinkCountsAndReconfigure(t *testing.T) {
	requireTools(t, "arping", "ping")
	l := newLab(t)
	f, err := Load(Options{Uplinks: []string{nodeIf}, Attach: AttachGeneric, PinDir: l.pinDir, Enter: l.node.Do})
	if errors.Is(err, ErrNotSupported) {
		nstest.Skip(t, "XDP fast path not supported here: %v", err)
	}
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	t.Cleanup(func() { _ = f.Close() })
	own(t, f, vip4)
	renew(t, f, time.Minute)
	if err := f.SetCounted([]netip.Addr{vip4}); err != nil {
		t.Fatalf("set counted: %v", err)
	}
	wantMACs(t, "arping on an uplink", l.arping(t, vip4, 2), 0)

	// A router on the uplink knows where the VIP goes (here: a static
	// neighbour entry), and sends traffic that gets counted.
	ch, err := netlink.NewHandleAt(l.client.Handle)
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	cl, err := ch.LinkByName(clientIf)
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.NeighSet(&netlink.Neigh{LinkIndex: cl.Attrs().Index, IP: vip4.AsSlice(), HardwareAddr: nodeMAC, State: netlink.NUD_PERMANENT}); err != nil {
		t.Fatalf("static neighbour on the client: %v", err)
	}
	if out, err := l.inClient(t, 10*time.Second, "ping", "-c", "3", "-i", "0.05", vip4.String()); err != nil {
		t.Fatalf("ping %s: %v\n%s", vip4, err, out)
	}
	if tr, err := f.Traffic(); err != nil || tr[vip4].Packets != 3 {
		t.Fatalf("uplink counters = %v (%v), want 3 packets to %s", tr, err, vip4)
	}
	if err := ch.NeighDel(&netlink.Neigh{LinkIndex: cl.Attrs().Index, IP: vip4.AsSlice()}); err != nil {
		t.Fatalf("delete static neighbour: %v", err)
	}

	if err := f.SetInterfaces([]string{nodeIf}, nil); err != nil {
		t.Fatalf("make %s a layer2 interface: %v", nodeIf, err)
	}
	wantMACs(t, "arping once layer2", l.arping(t, vip4, 1), 1)

	if err := f.SetInterfaces(nil, nil); err != nil {
		t.Fatalf("no interfaces: %v", err)
	}
	if l.xdpAttached(t) {
		t.Fatalf("XDP still attached with no interface named")
	}
	if _, err := os.Stat(filepath.Join(l.pinDir, linkPinPrefix+nodeIf)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("link pin still there: %v", err)
	}
}

// TestRunRenewsLease: while Run runs the program keeps answering past the
// lease; once Run's context ends the answers stop within one lease.
func TestRunRenewsLease(t *testing.T) {
	requireTools(t, "arping")
	l := newLab(t)
	const lease = 200 * time.Millisecond
	f, err := Load(Options{Interfaces: []string{nodeIf}, Attach: AttachGeneric, Lease: lease, PinDir: l.pinDir, Enter: l.node.Do})
	if errors.Is(err, ErrNotSupported) {
		nstest.Skip(t, "XDP fast path not supported here: %v", err)
	}
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	t.Cleanup(func() { _ = f.Close() })
	own(t, f, vip4)
	wantMACs(t, "arping before Run", l.arping(t, vip4, 1), 0)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	time.Sleep(3 * lease)
	wantMACs(t, "arping while Run renews", l.arping(t, vip4, 2), 2)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
	time.Sleep(lease + 50*time.Millisecond)
	if d, err := f.LeaseRemaining(); err != nil || d != 0 {
		t.Fatalf("lease %v (%v) after Run ended, want lapsed", d, err)
	}
	wantMACs(t, "arping after Run ended", l.arping(t, vip4, 1), 0)
}

// TestInterfaceAppearsAndIsRecreated: a named layer2 interface that does
// not exist at Load is attached by Run once it appears, and again after it
// is deleted and recreated (new index): the client behind it resolves the
// VIP both times.
func TestInterfaceAppearsAndIsRecreated(t *testing.T) {
	requireTools(t, "arping")
	l := newLab(t)
	f, err := Load(Options{Interfaces: []string{nodeIf, "late"}, Attach: AttachGeneric, PinDir: l.pinDir, Enter: l.node.Do})
	if errors.Is(err, ErrNotSupported) {
		nstest.Skip(t, "XDP fast path not supported here: %v", err)
	}
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	t.Cleanup(func() { _ = f.Close() })
	if _, ok := f.Interfaces()["late"]; ok {
		t.Fatalf("attached to an interface that does not exist")
	}
	if err := f.SetOwned(map[netip.Addr][]string{vip4: {nodeIf, "late"}}); err != nil {
		t.Fatalf("set owned: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	lateMAC := net.HardwareAddr{0x02, 0x00, 0x5e, 0x10, 0x00, 0x03}
	for round := range 2 {
		nh, err := netlink.NewHandleAt(l.node.Handle)
		if err != nil {
			t.Fatal(err)
		}
		if round == 1 {
			lk, err := nh.LinkByName("late")
			if err != nil {
				t.Fatal(err)
			}
			if err := nh.LinkDel(lk); err != nil {
				t.Fatalf("delete late: %v", err)
			}
		}
		if err := nh.LinkAdd(&netlink.Veth{
			LinkAttrs: netlink.LinkAttrs{Name: "late", HardwareAddr: lateMAC}, PeerName: "cl2",
			PeerNamespace: netlink.NsFd(int(l.client.Handle)),
		}); err != nil {
			t.Fatalf("add late: %v", err)
		}
		lk, _ := nh.LinkByName("late")
		if err := nh.LinkSetUp(lk); err != nil {
			t.Fatal(err)
		}
		nh.Close()
		ch, err := netlink.NewHandleAt(l.client.Handle)
		if err != nil {
			t.Fatal(err)
		}
		cl2, err := ch.LinkByName("cl2")
		if err != nil {
			t.Fatal(err)
		}
		if err := ch.LinkSetUp(cl2); err != nil {
			t.Fatal(err)
		}
		ch.Close()

		deadline := time.Now().Add(3 * ResyncInterval)
		var macs []string
		for time.Now().Before(deadline) {
			out, _ := l.inClient(t, 10*time.Second, "arping", "-i", "cl2", "-S", clientV4.Addr().String(), "-c", "1", "-W", "0.1", "-r", vip4.String())
			if macs = macLines(out); len(macs) > 0 {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		if len(macs) != 1 || macs[0] != lateMAC.String() {
			t.Fatalf("round %d: arping through the late interface got %v, want %s", round, macs, lateMAC)
		}
	}
}

// TestPinDirHeldByOneAgent: a second agent cannot load from the pin
// directory a running agent holds (it would adopt and rearrange the
// first's program); after the first closes, it can.
func TestPinDirHeldByOneAgent(t *testing.T) {
	l := newLab(t)
	f1 := l.load(t, AttachGeneric, nil)
	if f2, err := Load(Options{Interfaces: []string{nodeIf}, PinDir: l.pinDir, Enter: l.node.Do}); err == nil {
		_ = f2.Close()
		t.Fatalf("a second agent loaded from a pin directory in use")
	} else if errors.Is(err, ErrNotSupported) {
		t.Fatalf("pin directory in use reported as not supported (the caller would fall back quietly): %v", err)
	}
	if err := f1.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	f2 := l.load(t, AttachGeneric, nil)
	if err := f2.Remove(); err != nil {
		t.Fatalf("remove: %v", err)
	}
}

// TestScrapeWhileClosing: scrapes running while the fast path closes see
// either the metrics or nothing (no error, no race), and the registry is
// free for the next agent's Load.
func TestScrapeWhileClosing(t *testing.T) {
	l := newLab(t)
	reg := prometheus.NewRegistry()
	f := l.load(t, AttachGeneric, reg)
	if err := f.SetCounted([]netip.Addr{vip4}); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		for {
			select {
			case <-stop:
				errc <- nil
				return
			default:
			}
			if _, err := reg.Gather(); err != nil {
				errc <- err
				return
			}
		}
	}()
	time.Sleep(50 * time.Millisecond)
	if err := f.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	time.Sleep(20 * time.Millisecond)
	close(stop)
	if err := <-errc; err != nil {
		t.Fatalf("gather while closing: %v", err)
	}
	f2 := l.load(t, AttachGeneric, reg)
	if v := gather(t, reg)[`vipspeaker_vip_receive_packets_total{vip="203.0.113.10"}`]; v != 0 {
		t.Fatalf("counter after restart = %v", v)
	}
	if _, ok := gather(t, reg)[`vipspeaker_vip_receive_packets_total{vip="203.0.113.10"}`]; !ok {
		t.Fatalf("the restarted agent does not export the pinned counter")
	}
	_ = f2.Remove()
}

// TestFailedAttachLeavesNothing: when one interface refuses the program
// (another XDP program holds it) Load fails with ErrNotSupported, and
// nothing of the fast path stays attached or pinned on the others.
func TestFailedAttachLeavesNothing(t *testing.T) {
	l := newLab(t)
	// In the client namespace: cl holds a foreign XDP program, "free" has
	// none. Load is asked for both.
	l.giveClientNAPI(t)
	clientPin := filepath.Join(filepath.Dir(l.pinDir), "client")
	ch, err := netlink.NewHandleAt(l.client.Handle)
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	if err := ch.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "free"}, PeerName: "free-peer"}); err != nil {
		t.Fatalf("add veth: %v", err)
	}
	_, err = Load(Options{Interfaces: []string{"free", clientIf}, Attach: AttachGeneric, PinDir: clientPin, Enter: l.client.Do})
	if !errors.Is(err, ErrNotSupported) {
		t.Fatalf("Load onto an interface held by another XDP program: %v, want ErrNotSupported", err)
	}
	free, err := ch.LinkByName("free")
	if err != nil {
		t.Fatal(err)
	}
	if x := free.Attrs().Xdp; x != nil && x.Attached {
		t.Fatalf("XDP left attached on the interface that accepted it")
	}
	if _, err := os.Stat(clientPin); !errors.Is(err, os.ErrNotExist) {
		ents, _ := os.ReadDir(clientPin)
		t.Fatalf("pins left after a failed Load: %v %v", err, ents)
	}
}
