package dataplane

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/mdlayher/arp"
)

// fakeConn records what is written to it.
type fakeConn struct {
	packetConn
	mu     sync.Mutex
	frames [][]byte
}

func (f *fakeConn) WriteTo(b []byte, _ net.Addr) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.frames = append(f.frames, bytes.Clone(b))
	return len(b), nil
}

var newOwnerMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x22}

// staleFixture is a corrector with a window open for vip4 and vip6 on a
// fake port whose MAC is ourMAC.
func staleFixture(t testing.TB) (*corrector, *port, *fakeConn) {
	r, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	fc := &fakeConn{}
	p := &port{name: "eth0", index: 7, mac: ourMAC, arp: fc, ndp: fc, ctx: context.Background(),
		to: func(m net.HardwareAddr) net.Addr { return nil }}
	c := &corrector{r: r, entries: map[staleKey]*staleEntry{}}
	for _, v := range []staleKey{{"eth0", vip4}, {"eth0", vip6}} {
		c.entries[v] = &staleEntry{key: v, port: p, cancel: func() {}, sent: map[string]time.Time{}}
	}
	return c, p, fc
}

// Frames seen on the segment teach the corrector the new owner's MAC; none
// may crash it or teach it a multicast MAC or our own.
func FuzzStaleLearn(f *testing.F) {
	for _, tc := range append(arpCases(), ndpCases()...) {
		f.Add(tc.frame)
	}
	f.Add(arpFrame(arp.OperationReply, ethBroadcast, newOwnerMAC, vip4, ethBroadcast, vip4))
	na, _ := naFrame(newOwnerMAC, vip6, allNodesV6eMAC, allNodesV6, false)
	f.Add(na)
	f.Fuzz(func(t *testing.T, frame []byte) {
		c, p, _ := staleFixture(t)
		c.learn(p, frame, true)
		c.learn(p, frame, false)
		for k, e := range c.entries {
			if m := e.mac(); m != nil && (!isUnicastMAC(m) || bytes.Equal(m, ourMAC)) {
				t.Fatalf("learned %s for %s", m, k.vip)
			}
		}
	})
}

// The announcements of the new owner are learned.
func TestStaleLearnsFromAnnouncements(t *testing.T) {
	c, p, _ := staleFixture(t)
	c.learn(p, arpFrame(arp.OperationReply, ethBroadcast, newOwnerMAC, vip4, ethBroadcast, vip4), true)
	na, _ := naFrame(newOwnerMAC, vip6, allNodesV6eMAC, allNodesV6, false)
	c.learn(p, na, false)
	for _, v := range []netip.Addr{vip4, vip6} {
		if m := c.entries[staleKey{"eth0", v}].mac(); !bytes.Equal(m, newOwnerMAC) {
			t.Errorf("learned %s for %s, want %s", m, v, newOwnerMAC)
		}
	}
}

// Queued packets carry attacker-chosen bytes: no crash, and a correction
// only ever goes to the packet's (unicast) sender, from our MAC, naming the
// new owner.
func FuzzStaleHandle(f *testing.F) {
	v4 := append([]byte{0x45, 0, 0, 20, 0, 0, 0, 0, 64, 1, 0, 0}, append(clientV4.AsSlice(), vip4.AsSlice()...)...)
	v6 := make([]byte, 40)
	v6[0] = 0x60
	copy(v6[8:24], clientV6.AsSlice())
	copy(v6[24:40], vip6.AsSlice())
	f.Add(v4, []byte(clientMAC))
	f.Add(v6, []byte(clientMAC))
	f.Add(v4, []byte{1, 0, 0x5e, 0, 0, 1})
	f.Add([]byte{}, []byte{})
	f.Fuzz(func(t *testing.T, payload, src []byte) {
		c, _, fc := staleFixture(t)
		for _, e := range c.entries {
			e.newMAC = newOwnerMAC
		}
		c.handle(queuedPacket{ifindex: 7, srcMAC: net.HardwareAddr(src), payload: payload})
		for _, fr := range fc.frames {
			if !bytes.Equal(fr[0:6], src) || !isUnicastMAC(src) || !bytes.Equal(fr[6:12], ourMAC) {
				t.Fatalf("correction %x for sender %x", fr[:14], src)
			}
			if !bytes.Contains(fr[14:], newOwnerMAC) {
				t.Fatalf("correction does not name the new owner: %x", fr)
			}
		}
		if len(fc.frames) > 1 {
			t.Fatalf("%d corrections for one packet", len(fc.frames))
		}
	})
}

// One queued packet, one correction; the next from the same sender within
// the rate limit, none.
func TestStaleHandleCorrectsOncePerSender(t *testing.T) {
	c, _, fc := staleFixture(t)
	for _, e := range c.entries {
		e.newMAC = newOwnerMAC
	}
	v4 := append([]byte{0x45, 0, 0, 20, 0, 0, 0, 0, 64, 1, 0, 0}, append(clientV4.AsSlice(), vip4.AsSlice()...)...)
	c.handle(queuedPacket{ifindex: 7, srcMAC: clientMAC, payload: v4})
	c.handle(queuedPacket{ifindex: 7, srcMAC: clientMAC, payload: v4})
	c.handle(queuedPacket{ifindex: 8, srcMAC: clientMAC, payload: v4}) // another interface
	if len(fc.frames) != 1 {
		t.Fatalf("%d corrections, want 1", len(fc.frames))
	}
	var p arp.Packet
	if err := p.UnmarshalBinary(fc.frames[0][ethHeaderLen:]); err != nil {
		t.Fatal(err)
	}
	if p.Operation != arp.OperationReply || !bytes.Equal(p.SenderHardwareAddr, newOwnerMAC) || p.SenderIP != vip4 || p.TargetIP != vip4 || !bytes.Equal(p.TargetHardwareAddr, clientMAC) {
		t.Errorf("correction %+v, want a reply %s is-at %s to %s", p, vip4, newOwnerMAC, clientMAC)
	}
}
