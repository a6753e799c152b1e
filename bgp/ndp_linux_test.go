package bgp

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"testing"
	"time"

	"golang.org/x/net/ipv6"

	"github.com/vipspeaker/vipspeaker/internal/nstest"
)

// The router advertisement an unnumbered neighbor's interface carries, as
// a host on the link receives it: from our link-local address with hop
// limit 255, router lifetime 0 (no host takes the node for its default
// router), our MAC as source link-layer address, no prefixes.
func TestRouterAdvertisementOnTheWire(t *testing.T) {
	ns := nstest.New(t)
	for _, args := range [][]string{
		{"link", "add", "ra0", "type", "veth", "peer", "name", "ra1"},
		{"link", "set", "ra0", "address", "02:00:00:00:00:0a"},
		{"addr", "add", "fe80::a/64", "dev", "ra0", "nodad"},
		{"addr", "add", "fe80::b/64", "dev", "ra1", "nodad"},
		{"link", "set", "ra0", "up"},
		{"link", "set", "ra1", "up"},
	} {
		if out, err := exec.Command("ip", append([]string{"-n", ns.Name}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	err := ns.Do(func() error {
		ra1, err := net.InterfaceByName("ra1")
		if err != nil {
			return err
		}
		c, err := net.ListenPacket("ip6:ipv6-icmp", "::")
		if err != nil {
			return err
		}
		defer c.Close()
		p := ipv6.NewPacketConn(c)
		if err := p.SetControlMessage(ipv6.FlagHopLimit|ipv6.FlagInterface|ipv6.FlagSrc, true); err != nil {
			return err
		}
		if err := sendRouterAdvertisement("ra0"); err != nil {
			return err
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		b := make([]byte, 1500)
		for {
			n, cm, _, err := p.ReadFrom(b)
			if err != nil {
				return fmt.Errorf("no router advertisement received on ra1: %w", err)
			}
			if cm == nil || cm.IfIndex != ra1.Index || n == 0 || b[0] != byte(ipv6.ICMPTypeRouterAdvertisement) {
				continue
			}
			src, _ := netip.AddrFromSlice(cm.Src)
			want := []byte{134, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 2, 0, 0, 0, 0, 0x0a}
			got := append([]byte(nil), b[:n]...)
			got[2], got[3] = 0, 0 // checksum (the kernel's)
			if src != netip.MustParseAddr("fe80::a") || cm.HopLimit != 255 || !bytes.Equal(got, want) {
				return fmt.Errorf("router advertisement from %s, hop limit %d:\n% x\nwant from fe80::a, hop limit 255:\n% x", src, cm.HopLimit, got, want)
			}
			return nil
		}
	})
	if err != nil {
		t.Fatal(err)
	}
}

// The router of an unnumbered neighbor is whoever advertises on its
// interface, and a new router (another link-local address) replaces it;
// our own advertisements never count.
func TestRouterWatchLearnsTheAdvertiser(t *testing.T) {
	ns := nstest.New(t)
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", append([]string{"-n", ns.Name}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	ip("link", "add", "ra0", "type", "veth", "peer", "name", "ra1")
	ip("addr", "add", "fe80::a/64", "dev", "ra0", "nodad")
	ip("addr", "add", "fe80::b/64", "dev", "ra1", "nodad")
	ip("link", "set", "ra0", "up")
	ip("link", "set", "ra1", "up")
	var w *routerWatch
	if err := ns.Do(func() (err error) { w, err = watchRouters(); return err }); err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	heard := func(from, want string) {
		t.Helper()
		err := ns.Do(func() error {
			if err := sendRouterAdvertisement("ra0"); err != nil { // ours
				return err
			}
			if err := sendRouterAdvertisement(from); err != nil {
				return err
			}
			deadline := time.Now().Add(5 * time.Second)
			for {
				if r, _ := w.router("ra0"); r.String() == want {
					return nil
				} else if time.Now().After(deadline) {
					return fmt.Errorf("router on ra0: %v, want %s", r, want)
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	heard("ra1", "fe80::b%ra0")
	ip("addr", "del", "fe80::b/64", "dev", "ra1")
	ip("addr", "add", "fe80::c/64", "dev", "ra1", "nodad")
	heard("ra1", "fe80::c%ra0")
}
