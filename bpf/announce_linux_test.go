package bpf

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"
)

// takeover returns n IPv4 VIPs from 198.51.100.0/24 and m IPv6 VIPs from
// 2001:db8:100::1:0/112.
func takeover(n, m int) (v4, v6 []netip.Addr) {
	a := netip.MustParseAddr("198.51.100.1")
	for range n {
		v4 = append(v4, a)
		a = a.Next()
	}
	b := netip.MustParseAddr("2001:db8:100::1:1")
	for range m {
		v6 = append(v6, b)
		b = b.Next()
	}
	return v4, v6
}

// TestAnnounceLiveFrames: taking over many VIPs puts every VIP's
// gratuitous frames on the wire in one Announce (BPF_PROG_RUN, live
// frames): a capture on the client sees, for each IPv4 VIP, a gratuitous
// ARP request and reply from the node's MAC, and for each IPv6 VIP an
// unsolicited override advertisement to all-nodes with a valid checksum. A
// VIP not in the owned map gets nothing, and nothing is sent once the lease
// has lapsed.
func TestAnnounceLiveFrames(t *testing.T) {
	for _, mode := range []AttachMode{AttachNative, AttachGeneric} {
		t.Run(string(mode), func(t *testing.T) {
			l := newLab(t)
			l.giveClientNAPI(t) // live-frames XDP_TX on veth needs it in both modes
			f := l.load(t, mode, nil)
			v4, v6 := takeover(200, 100)
			own(t, f, append(append([]netip.Addr{}, v4...), v6...)...)
			renew(t, f, time.Minute)
			notOwned := netip.MustParseAddr("203.0.113.99")
			raw := l.openRaw(t)

			vips := append(append(append([]netip.Addr{}, v4...), notOwned), v6...)
			allowed, perr := LiveFramesAllowed()
			if perr != nil {
				t.Fatal(perr)
			}
			n, err := f.Announce(nodeIf, vips)
			if refused := errors.Is(err, ErrLiveFramesRefused); refused == allowed {
				t.Fatalf("LiveFramesAllowed() = %v, but Announce returned %v", allowed, err)
			}
			if errors.Is(err, ErrLiveFramesRefused) {
				// This kernel cannot send live frames at all: what a user
				// gets is the fallback, every VIP handed back to the
				// packet socket with no error from then on.
				t.Logf("the kernel refuses live frames (%v): checking the fallback; the live-frame bursts themselves are not exercised on this kernel", err)
				sent, missed, err := f.AnnounceOwned(nodeIf, vips)
				if err != nil || sent != 0 || len(missed) != len(vips) {
					t.Fatalf("AnnounceOwned after the refusal = %d sent, %d of %d handed back, %v; want 0, all, no error", sent, len(missed), len(vips), err)
				}
				return
			}
			if err != nil {
				t.Fatalf("announce: %v", err)
			}
			want := 2*len(v4) + len(v6)
			if n != want {
				t.Fatalf("Announce sent %d frames, want %d", n, want)
			}
			type seen struct{ req, rep, na int }
			got := map[netip.Addr]*seen{}
			var bad []string
			classify := func(b []byte) bool {
				if a, ok := parseARP(b); ok && a.spa == a.tpa {
					s := got[a.spa]
					if s == nil {
						s = &seen{}
						got[a.spa] = s
					}
					okFrame := len(b) >= 60 && bytes.Equal(a.ethDst, bcast) && bytes.Equal(a.ethSrc, nodeMAC) && bytes.Equal(a.sha, nodeMAC)
					switch {
					case a.op == 1 && okFrame && bytes.Equal(a.tha, make([]byte, 6)):
						s.req++
					case a.op == 2 && okFrame && bytes.Equal(a.tha, bcast):
						s.rep++
					default:
						bad = append(bad, a.spa.String())
					}
					return true
				}
				if na, ok := parseNA(b); ok && na.dst == allNodes {
					s := got[na.target]
					if s == nil {
						s = &seen{}
						got[na.target] = s
					}
					if na.checksumOK && na.flags == 0x20 && na.hopLimit == 255 && na.src == na.target &&
						bytes.Equal(na.ethDst, allNodesMAC) && bytes.Equal(na.tlla, nodeMAC) {
						s.na++
					} else {
						bad = append(bad, na.target.String())
					}
					return true
				}
				return false
			}
			frames := raw.receive(t, want, 5*time.Second, classify)
			// Anything more (a duplicate, the VIP not owned) shows up now.
			frames = append(frames, raw.receive(t, 1, 200*time.Millisecond, classify)...)
			if len(bad) > 0 {
				t.Fatalf("malformed announcements for %v", bad)
			}
			if len(frames) != want {
				t.Fatalf("captured %d announcement frames, want %d", len(frames), want)
			}
			for _, v := range v4 {
				if s := got[v]; s == nil || s.req != 1 || s.rep != 1 {
					t.Fatalf("%s: captured %+v, want one gratuitous request and one reply", v, s)
				}
			}
			for _, v := range v6 {
				if s := got[v]; s == nil || s.na != 1 {
					t.Fatalf("%s: captured %+v, want one unsolicited advertisement", v, s)
				}
			}
			if got[notOwned] != nil {
				t.Fatalf("announced %s, which is not owned", notOwned)
			}
			if _, _, g := sent(t, f); g != uint64(want) {
				t.Fatalf("gratuitous counter = %d, want %d", g, want)
			}

			renew(t, f, 0)
			n, err = f.Announce(nodeIf, v4[:10])
			if err != nil || n != 0 {
				t.Fatalf("Announce after the lease lapsed: %d frames, %v; want 0", n, err)
			}
			if late := raw.receive(t, 1, 300*time.Millisecond, func(b []byte) bool { _, ok := parseARP(b); return ok }); len(late) != 0 {
				t.Fatalf("captured %d ARP frames after the lease lapsed", len(late))
			}
		})
	}
}

var (
	bcast       = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	allNodesMAC = net.HardwareAddr{0x33, 0x33, 0, 0, 0, 1}
	allNodes    = netip.MustParseAddr("ff02::1")
)
