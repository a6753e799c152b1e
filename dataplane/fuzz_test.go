package dataplane

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// The fuzz targets feed arbitrary frames to the handlers. Besides not
// crashing, a reply may only come out for a frame that is, field by field,
// a request for an owned VIP — checked here from the raw bytes, not through
// the handler's own parsing — and the reply must be a well-formed answer
// from our MAC.

func FuzzHandleARP(f *testing.F) {
	for _, tc := range arpCases() {
		f.Add(tc.frame)
	}
	v4 := vip4.As4()
	f.Fuzz(func(t *testing.T, frame []byte) {
		reply, v, _ := handleARP(frame, ourMAC, ownedTest)
		if reply == nil {
			if v == answered {
				t.Fatal("answered without a reply")
			}
			return
		}
		if v != answered {
			t.Fatalf("reply with verdict %d", v)
		}
		in := frame
		switch {
		case len(in) < 42 || len(in) > maxFrameLen:
			t.Fatalf("answered a %d-byte frame", len(in))
		case !bytes.Equal(in[12:14], []byte{0x08, 0x06}),
			!bytes.Equal(in[14:22], []byte{0, 1, 0x08, 0x00, 6, 4, 0, 1}):
			t.Fatalf("answered a frame that is not an Ethernet/IPv4 ARP request: %x", in[12:22])
		case !bytes.Equal(in[38:42], v4[:]):
			t.Fatalf("answered for %x, not an owned VIP", in[38:42])
		case !bytes.Equal(in[22:28], in[6:12]) || in[6]&1 != 0 || bytes.Equal(in[6:12], ourMAC):
			t.Fatalf("answered a spoofed or looped request from %x (sha %x)", in[6:12], in[22:28])
		case !bytes.Equal(in[0:6], ethBroadcast) && !bytes.Equal(in[0:6], ourMAC):
			t.Fatalf("answered a request sent to %x", in[0:6])
		case bytes.Equal(in[28:32], in[38:42]):
			t.Fatal("answered a gratuitous ARP")
		}
		want := arpFrame(2, in[6:12], ourMAC, vip4, in[6:12], ipv4At(in[28:32]))
		if !bytes.Equal(reply, want) {
			t.Fatalf("reply\n%x\nwant\n%x", reply, want)
		}
	})
}

func FuzzHandleNDP(f *testing.F) {
	for _, tc := range ndpCases() {
		f.Add(tc.frame)
	}
	v6 := vip6.As16()
	f.Fuzz(func(t *testing.T, frame []byte) {
		reply, v, _ := handleNDP(frame, ourMAC, ownedTest)
		if reply == nil {
			if v == answered {
				t.Fatal("answered without a reply")
			}
			return
		}
		if v != answered {
			t.Fatalf("reply with verdict %d", v)
		}
		in := frame
		if len(in) < 78 || len(in) > maxFrameLen {
			t.Fatalf("answered a %d-byte frame", len(in))
		}
		ip := in[ethHeaderLen:]
		plen := int(binary.BigEndian.Uint16(ip[4:6]))
		switch {
		case !bytes.Equal(in[12:14], []byte{0x86, 0xdd}) || ip[0]>>4 != 6 || ip[6] != 58:
			t.Fatal("answered a frame that is not ICMPv6 over IPv6")
		case ip[7] != 255:
			t.Fatalf("answered hop limit %d", ip[7])
		case 40+plen > len(ip):
			t.Fatal("answered a truncated packet")
		case ip[40] != 135 || ip[41] != 0:
			t.Fatalf("answered ICMPv6 type %d code %d", ip[40], ip[41])
		case !bytes.Equal(ip[48:64], v6[:]):
			t.Fatalf("answered for target %x, not an owned VIP", ip[48:64])
		case in[6]&1 != 0 || bytes.Equal(in[6:12], ourMAC):
			t.Fatalf("answered a frame from %x", in[6:12])
		}
		if c := icmpv6Checksum(addr16(ip[8:24]), addr16(ip[24:40]), ip[40:40+plen]); c != 0 {
			t.Fatal("answered a solicitation with a bad checksum")
		}
		na, src, dst, hops, err := parseNA(reply)
		if err != nil {
			t.Fatalf("reply does not parse: %v", err)
		}
		if na.TargetAddress != vip6 || src != vip6 || hops != 255 || !na.Override || !bytes.Equal(reply[6:12], ourMAC) {
			t.Fatalf("malformed reply %+v from %s hops %d", na, src, hops)
		}
		if c := icmpv6Checksum(src, dst, reply[ethHeaderLen+ipv6HdrLen:]); c != 0 {
			t.Fatal("reply checksum does not verify")
		}
		if reply[0]&1 != 0 && !bytes.Equal(reply[0:6], allNodesV6eMAC) {
			t.Fatalf("reply to multicast MAC %x", reply[0:6])
		}
	})
}
