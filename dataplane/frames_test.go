package dataplane

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/mdlayher/arp"
	"github.com/mdlayher/ndp"
)

// ownedTest is what the frame handlers are asked in the tests: vip4 and
// vip6 are ours, nothing else.
func ownedTest(a netip.Addr) bool { return a == vip4 || a == vip6 }

type frameCase struct {
	name  string
	frame []byte
	want  verdict
}

func setBytes(b []byte, off int, v ...byte) []byte {
	b = bytes.Clone(b)
	copy(b[off:], v)
	return b
}

func arpCases() []frameCase {
	ok := arpRequest(ethBroadcast, clientMAC, clientV4, vip4)
	return []frameCase{
		{"request", ok, answered},
		{"request unicast to us", arpRequest(ourMAC, clientMAC, clientV4, vip4), answered},
		{"probe from 0.0.0.0", arpRequest(ethBroadcast, clientMAC, netip.IPv4Unspecified(), vip4), answered},
		{"minimum length without padding", ok[:42], answered},
		{"request for an address not owned", arpRequest(ethBroadcast, clientMAC, clientV4, vip4Free), requestOther},
		{"unicast to another station", arpRequest(clientMAC, clientMAC, clientV4, vip4), ignored},
		{"truncated", ok[:41], ignored},
		{"empty", nil, ignored},
		{"oversized", append(bytes.Clone(ok), make([]byte, maxFrameLen)...), ignored},
		{"wrong ethertype", setBytes(ok, 12, 0x08, 0x00), ignored},
		{"wrong hardware type", setBytes(ok, 14, 0, 6), ignored},
		{"wrong protocol type", setBytes(ok, 16, 0x86, 0xdd), ignored},
		{"wrong hardware length", setBytes(ok, 18, 8), ignored},
		{"wrong protocol length", setBytes(ok, 19, 16), ignored},
		{"unknown operation", setBytes(ok, 20, 0, 3), ignored},
		{"spoofed sender hardware address", setBytes(ok, 22, 0x02, 0, 0, 0, 0, 0x77), ignored},
		{"from our own MAC", arpRequest(ethBroadcast, ourMAC, clientV4, vip4), ignored},
		{"from a multicast MAC", arpRequest(ethBroadcast, net.HardwareAddr{1, 0, 0x5e, 0, 0, 1}, clientV4, vip4), ignored},
		{"from a zero MAC", arpRequest(ethBroadcast, ethZero, clientV4, vip4), ignored},
		{"gratuitous from someone else", arpRequest(ethBroadcast, clientMAC, vip4Free, vip4Free), ignored},
		{"sender is broadcast", arpRequest(ethBroadcast, clientMAC, netip.MustParseAddr("255.255.255.255"), vip4), ignored},
		{"sender is multicast", arpRequest(ethBroadcast, clientMAC, netip.MustParseAddr("224.0.0.1"), vip4), ignored},
		{"gratuitous claiming our VIP", arpRequest(ethBroadcast, clientMAC, vip4, vip4), conflict},
		{"reply claiming our VIP", arpFrame(arp.OperationReply, ethBroadcast, clientMAC, vip4, ethBroadcast, vip4), conflict},
		{"reply for another address", arpFrame(arp.OperationReply, ourMAC, clientMAC, clientV4, ourMAC, vip4Free), ignored},
	}
}

func ndpCases() []frameCase {
	ok := multicastNS(vip6)
	g, gm := solicitedNode(vip6)
	unicast := nsFrame(clientMAC, ourMAC, clientV6, vip6, vip6, clientMAC)
	badSum := bytes.Clone(ok)
	badSum[ethHeaderLen+ipv6HdrLen+2] ^= 0xff
	twoSLL := func() []byte {
		ns := &ndp.NeighborSolicitation{TargetAddress: vip6, Options: []ndp.Option{
			&ndp.LinkLayerAddress{Direction: ndp.Source, Addr: clientMAC},
			&ndp.LinkLayerAddress{Direction: ndp.Source, Addr: net.HardwareAddr{2, 0, 0, 0, 0, 0x77}},
		}}
		msg, _ := ndp.MarshalMessageChecksum(ns, clientV6, g)
		return ipv6Frame(clientMAC, gm, clientV6, g, 255, msg)
	}()
	withHops := func(h byte) []byte {
		ns := &ndp.NeighborSolicitation{TargetAddress: vip6, Options: []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Source, Addr: clientMAC}}}
		msg, _ := ndp.MarshalMessageChecksum(ns, clientV6, g)
		return ipv6Frame(clientMAC, gm, clientV6, g, h, msg)
	}
	na := func(target netip.Addr) []byte {
		m := &ndp.NeighborAdvertisement{Override: true, TargetAddress: target,
			Options: []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: clientMAC}}}
		msg, _ := ndp.MarshalMessageChecksum(m, target, allNodesV6)
		return ipv6Frame(clientMAC, allNodesV6eMAC, target, allNodesV6, 255, msg)
	}
	rs := func() []byte {
		msg, _ := ndp.MarshalMessageChecksum(&ndp.RouterSolicitation{}, clientV6, netip.MustParseAddr("ff02::2"))
		return ipv6Frame(clientMAC, net.HardwareAddr{0x33, 0x33, 0, 0, 0, 2}, clientV6, netip.MustParseAddr("ff02::2"), 255, msg)
	}()
	plen := func(b []byte, l uint16) []byte {
		b = bytes.Clone(b)
		binary.BigEndian.PutUint16(b[ethHeaderLen+4:], l)
		return b
	}
	fg, fgm := solicitedNode(vip6Free)
	return []frameCase{
		{"multicast solicitation", ok, answered},
		{"unicast NUD probe", unicast, answered},
		{"unicast probe without source link-layer option", nsFrame(clientMAC, ourMAC, clientV6, vip6, vip6, nil), answered},
		{"duplicate address detection", nsFrame(clientMAC, gm, netip.IPv6Unspecified(), g, vip6, nil), answered},
		{"trailing bytes after the payload", append(bytes.Clone(ok), 0, 0, 0, 0), answered},
		{"solicitation for an address not owned", nsFrame(clientMAC, fgm, clientV6, fg, vip6Free, clientMAC), requestOther},
		{"unicast probe to another station's MAC", nsFrame(clientMAC, clientMAC, clientV6, vip6, vip6, clientMAC), ignored},
		{"sent to the group of another address", nsFrame(clientMAC, fgm, clientV6, fg, vip6, clientMAC), ignored},
		{"group address with the wrong MAC", nsFrame(clientMAC, allNodesV6eMAC, clientV6, g, vip6, clientMAC), ignored},
		{"sent to all-nodes", nsFrame(clientMAC, allNodesV6eMAC, clientV6, allNodesV6, vip6, clientMAC), ignored},
		{"DAD with a source link-layer option", nsFrame(clientMAC, gm, netip.IPv6Unspecified(), g, vip6, clientMAC), ignored},
		{"DAD sent unicast", nsFrame(clientMAC, ourMAC, netip.IPv6Unspecified(), vip6, vip6, nil), ignored},
		{"hop limit 254 (routed)", withHops(254), ignored},
		{"bad checksum", badSum, ignored},
		{"ICMPv6 code 1", setBytes(ok, ethHeaderLen+ipv6HdrLen+1, 1), ignored},
		{"two source link-layer options", twoSLL, ignored},
		{"source link-layer option is multicast", nsFrame(clientMAC, gm, clientV6, g, vip6, net.HardwareAddr{0x33, 0x33, 0, 0, 0, 1}), ignored},
		{"source link-layer option is our MAC", nsFrame(clientMAC, gm, clientV6, g, vip6, ourMAC), ignored},
		{"from our own MAC", nsFrame(ourMAC, gm, clientV6, g, vip6, clientMAC), ignored},
		{"from a multicast source address", nsFrame(clientMAC, gm, allNodesV6, g, vip6, clientMAC), ignored},
		{"sourced from our VIP", nsFrame(clientMAC, gm, vip6, g, vip6, clientMAC), conflict},
		{"advertisement claiming our VIP", na(vip6), conflict},
		{"advertisement for another address", na(vip6Free), ignored},
		{"router solicitation", rs, ignored},
		{"truncated", ok[:len(ok)-1], ignored},
		{"truncated header", ok[:ethHeaderLen+ipv6HdrLen+nsFixedLen-1], ignored},
		{"payload length beyond the frame", plen(ok, uint16(len(ok))), ignored},
		{"payload length below a solicitation", plen(ok, 20), ignored},
		{"oversized", append(bytes.Clone(ok), make([]byte, maxFrameLen)...), ignored},
		{"IPv4 version", setBytes(ok, ethHeaderLen, 0x45), ignored},
		{"extension header", setBytes(ok, ethHeaderLen+6, 0), ignored},
		{"wrong ethertype", setBytes(ok, 12, 0x08, 0x06), ignored},
		{"empty", nil, ignored},
	}
}

func TestHandleARP(t *testing.T) {
	for _, tc := range arpCases() {
		t.Run(tc.name, func(t *testing.T) {
			reply, v, _ := handleARP(tc.frame, ourMAC, ownedTest)
			if v != tc.want {
				t.Fatalf("verdict = %d, want %d", v, tc.want)
			}
			if (reply != nil) != (v == answered) {
				t.Fatalf("reply %x with verdict %d", reply, v)
			}
		})
	}
	// The exact reply to a plain request.
	reply, _, _ := handleARP(arpRequest(ethBroadcast, clientMAC, clientV4, vip4), ourMAC, ownedTest)
	var p arp.Packet
	if err := p.UnmarshalBinary(reply[ethHeaderLen:]); err != nil {
		t.Fatal(err)
	}
	want := arp.Packet{HardwareType: 1, ProtocolType: 0x0800, HardwareAddrLength: 6, IPLength: 4,
		Operation: arp.OperationReply, SenderHardwareAddr: ourMAC, SenderIP: vip4,
		TargetHardwareAddr: clientMAC, TargetIP: clientV4}
	if diff := cmp.Diff(want, p, cmpopts.EquateComparable(netip.Addr{})); diff != "" {
		t.Errorf("ARP reply (-want +got):\n%s", diff)
	}
	if !bytes.Equal(reply[0:6], clientMAC) || !bytes.Equal(reply[6:12], ourMAC) || len(reply) != minFrameLen {
		t.Errorf("reply Ethernet header %x, length %d; want to %s from %s, %d bytes", reply[:14], len(reply), clientMAC, ourMAC, minFrameLen)
	}
	// A probe is answered with target 0.0.0.0, as the kernel does.
	reply, _, _ = handleARP(arpRequest(ethBroadcast, clientMAC, netip.IPv4Unspecified(), vip4), ourMAC, ownedTest)
	if err := p.UnmarshalBinary(reply[ethHeaderLen:]); err != nil {
		t.Fatal(err)
	}
	if p.TargetIP != netip.IPv4Unspecified() || p.SenderIP != vip4 {
		t.Errorf("probe reply %s -> %s, want %s -> 0.0.0.0", p.SenderIP, p.TargetIP, vip4)
	}
}

func TestHandleNDP(t *testing.T) {
	for _, tc := range ndpCases() {
		t.Run(tc.name, func(t *testing.T) {
			reply, v, _ := handleNDP(tc.frame, ourMAC, ownedTest)
			if v != tc.want {
				t.Fatalf("verdict = %d, want %d", v, tc.want)
			}
			if (reply != nil) != (v == answered) {
				t.Fatalf("reply %x with verdict %d", reply, v)
			}
		})
	}
	tests := []struct {
		name      string
		frame     []byte
		ethDst    net.HardwareAddr
		dst       netip.Addr
		solicited bool
	}{
		{"multicast", multicastNS(vip6), clientMAC, clientV6, true},
		{"unicast NUD without option answers the Ethernet source", nsFrame(clientMAC, ourMAC, clientV6, vip6, vip6, nil), clientMAC, clientV6, true},
		{"option wins over the Ethernet source", nsFrame(net.HardwareAddr{2, 0, 0, 0, 0, 0x55}, ourMAC, clientV6, vip6, vip6, clientMAC), clientMAC, clientV6, true},
		{"DAD answered to all-nodes", func() []byte {
			g, gm := solicitedNode(vip6)
			return nsFrame(clientMAC, gm, netip.IPv6Unspecified(), g, vip6, nil)
		}(), allNodesV6eMAC, allNodesV6, false},
	}
	for _, tc := range tests {
		t.Run("reply/"+tc.name, func(t *testing.T) {
			reply, _, _ := handleNDP(tc.frame, ourMAC, ownedTest)
			na, src, dst, hops, err := parseNA(reply)
			if err != nil {
				t.Fatal(err)
			}
			want := &ndp.NeighborAdvertisement{Solicited: tc.solicited, Override: true, TargetAddress: vip6,
				Options: []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: ourMAC}}}
			if diff := cmp.Diff(want, na, cmpopts.EquateComparable(netip.Addr{})); diff != "" {
				t.Errorf("NA (-want +got):\n%s", diff)
			}
			if src != vip6 || dst != tc.dst || hops != 255 {
				t.Errorf("NA %s -> %s hop limit %d, want %s -> %s hop limit 255", src, dst, hops, vip6, tc.dst)
			}
			if !bytes.Equal(reply[0:6], tc.ethDst) || !bytes.Equal(reply[6:12], ourMAC) {
				t.Errorf("NA Ethernet %s -> %s, want %s -> %s", net.HardwareAddr(reply[6:12]), net.HardwareAddr(reply[0:6]), ourMAC, tc.ethDst)
			}
			if c := icmpv6Checksum(src, dst, reply[ethHeaderLen+ipv6HdrLen:]); c != 0 {
				t.Errorf("NA checksum does not verify (residue %#x)", c)
			}
		})
	}
}

func TestAnnouncements(t *testing.T) {
	frames := gratuitousARP(ourMAC, vip4)
	if len(frames) != 2 {
		t.Fatalf("got %d gratuitous ARP forms, want 2", len(frames))
	}
	for i, op := range []arp.Operation{arp.OperationRequest, arp.OperationReply} {
		f := frames[i]
		var p arp.Packet
		if err := p.UnmarshalBinary(f[ethHeaderLen:]); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(f[0:6], ethBroadcast) || p.Operation != op || p.SenderIP != vip4 || p.TargetIP != vip4 || !bytes.Equal(p.SenderHardwareAddr, ourMAC) {
			t.Errorf("gratuitous form %d: to %s op %d %s/%s -> %s, want broadcast op %d %s/%s -> %s",
				i, net.HardwareAddr(f[0:6]), p.Operation, p.SenderHardwareAddr, p.SenderIP, p.TargetIP, op, ourMAC, vip4, vip4)
		}
	}
	f, err := unsolicitedNA(ourMAC, vip6)
	if err != nil {
		t.Fatal(err)
	}
	na, src, dst, hops, err := parseNA(f)
	if err != nil {
		t.Fatal(err)
	}
	if na.Solicited || !na.Override || na.TargetAddress != vip6 || src != vip6 || dst != allNodesV6 || hops != 255 || !bytes.Equal(f[0:6], allNodesV6eMAC) {
		t.Errorf("unsolicited NA %+v %s -> %s hops %d to %s; want O=1 S=0 for %s to ff02::1 (33:33:00:00:00:01)", na, src, dst, hops, net.HardwareAddr(f[0:6]), vip6)
	}
}

// TestWriteFuzzSeeds regenerates testdata/fuzz from the table cases when
// VIPSPEAKER_WRITE_SEEDS=1; otherwise it checks every case is in the corpus,
// so the committed seeds follow the tables.
func TestWriteFuzzSeeds(t *testing.T) {
	write := os.Getenv("VIPSPEAKER_WRITE_SEEDS") == "1"
	for target, cases := range map[string][]frameCase{"FuzzHandleARP": arpCases(), "FuzzHandleNDP": ndpCases()} {
		dir := filepath.Join("testdata", "fuzz", target)
		for _, tc := range cases {
			name := strings.NewReplacer(" ", "-", "(", "", ")", "", ".", "", "'", "").Replace(tc.name)
			path := filepath.Join(dir, "seed-"+name)
			body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", tc.frame)
			if write {
				if err := os.MkdirAll(dir, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
					t.Fatal(err)
				}
				continue
			}
			got, err := os.ReadFile(path)
			if err != nil || string(got) != body {
				t.Errorf("seed %s missing or stale; run VIPSPEAKER_WRITE_SEEDS=1 go test -run TestWriteFuzzSeeds ./dataplane", path)
			}
		}
	}
}
