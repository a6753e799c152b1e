package lab

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	bgppkt "github.com/osrg/gobgp/v4/pkg/packet/bgp"
)

// The packets here are built by hand as a capture would see them (IPv4,
// TCP, BGP messages serialized by GoBGP's packet package): what BGPWire
// reads from a packet socket, without the socket.

var (
	wireNode   = netip.MustParseAddr("198.18.30.11")
	wireRouter = netip.MustParseAddr("198.18.30.1")
	wireT0     = time.Unix(1_700_000_000, 0)
)

// tcpPacket is an IPv4 packet with a TCP segment.
func tcpPacket(src, dst netip.Addr, sport, dport uint16, seq uint32, flags byte, data []byte) []byte {
	p := make([]byte, 40+len(data))
	p[0], p[8], p[9] = 0x45, 64, 6
	binary.BigEndian.PutUint16(p[2:4], uint16(len(p)))
	s, d := src.As4(), dst.As4()
	copy(p[12:16], s[:])
	copy(p[16:20], d[:])
	binary.BigEndian.PutUint16(p[20:22], sport)
	binary.BigEndian.PutUint16(p[22:24], dport)
	binary.BigEndian.PutUint32(p[24:28], seq)
	p[32], p[33] = 5<<4, flags|0x10 // ACK
	copy(p[40:], data)
	return p
}

func serialize(t *testing.T, m *bgppkt.BGPMessage, opt *bgppkt.MarshallingOption) []byte {
	t.Helper()
	b, err := m.Serialize(opt)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func open(t *testing.T, as uint32, id netip.Addr, addPath bgppkt.BGPAddPathMode) []byte {
	caps := []bgppkt.ParameterCapabilityInterface{bgppkt.NewCapMultiProtocol(bgppkt.RF_IPv4_UC), bgppkt.NewCapFourOctetASNumber(as)}
	if addPath != bgppkt.BGP_ADD_PATH_NONE {
		caps = append(caps, bgppkt.NewCapAddPath([]*bgppkt.CapAddPathTuple{bgppkt.NewCapAddPathTuple(bgppkt.RF_IPv4_UC, addPath)}))
	}
	m, err := bgppkt.NewBGPOpenMessage(23456, 3, id, []bgppkt.OptionParameterInterface{bgppkt.NewOptionParameterCapability(caps)})
	if err != nil {
		t.Fatal(err)
	}
	return serialize(t, m, nil)
}

// update announces prefixes from AS 64512 (4-octet AS path), IPv4 ones in
// the NLRI field, IPv6 ones in MP_REACH_NLRI; addPath puts path
// identifiers in.
func update(t *testing.T, addPath bool, prefixes ...string) []byte {
	var v4, v6 []bgppkt.PathNLRI
	for i, s := range prefixes {
		n, err := bgppkt.NewIPAddrPrefix(netip.MustParsePrefix(s))
		if err != nil {
			t.Fatal(err)
		}
		if n.Prefix.Addr().Is4() {
			v4 = append(v4, bgppkt.PathNLRI{NLRI: n, ID: uint32(i + 1)})
		} else {
			v6 = append(v6, bgppkt.PathNLRI{NLRI: n, ID: uint32(i + 1)})
		}
	}
	nh, _ := bgppkt.NewPathAttributeNextHop(wireNode)
	attrs := []bgppkt.PathAttributeInterface{bgppkt.NewPathAttributeOrigin(0),
		bgppkt.NewPathAttributeAsPath([]bgppkt.AsPathParamInterface{bgppkt.NewAs4PathParam(bgppkt.BGP_ASPATH_ATTR_TYPE_SEQ, []uint32{64512})}), nh}
	if len(v6) > 0 {
		mp, err := bgppkt.NewPathAttributeMpReachNLRI(bgppkt.RF_IPv6_UC, v6, netip.MustParseAddr("2001:db8::11"))
		if err != nil {
			t.Fatal(err)
		}
		attrs = append(attrs, mp)
	}
	opt := &bgppkt.MarshallingOption{}
	if addPath {
		opt.AddPath = map[bgppkt.Family]bgppkt.BGPAddPathMode{bgppkt.RF_IPv4_UC: bgppkt.BGP_ADD_PATH_SEND}
	}
	return serialize(t, bgppkt.NewBGPUpdateMessage(nil, attrs, v4), opt)
}

func keepalive(t *testing.T) []byte { return serialize(t, bgppkt.NewBGPKeepAliveMessage(), nil) }

// session plays one BGP session through w: handshake, the router's OPEN
// (ADD-PATH receive), then the node's stream (its OPEN first) cut into segments of at most mss bytes, fed
// in the order order gives (indexes into the segments; repeats are
// retransmissions), the i-th fed at wireT0 + i ms.
func session(t *testing.T, w *BGPWire, stream []byte, mss int, order func(n int) []int) {
	t.Helper()
	const nodeISN, routerISN = 0xfffffff0, 1000 // the node's numbers wrap
	w.Segment(wireT0, tcpPacket(wireNode, wireRouter, 40000, 179, nodeISN, 0x02, nil))
	w.Segment(wireT0, tcpPacket(wireRouter, wireNode, 179, 40000, routerISN, 0x02, nil))
	w.Segment(wireT0, tcpPacket(wireRouter, wireNode, 179, 40000, routerISN+1, 0, open(t, 64500, wireRouter, bgppkt.BGP_ADD_PATH_RECEIVE)))
	var segs [][]byte
	seq := uint32(nodeISN + 1)
	for len(stream) > 0 {
		n := min(mss, len(stream))
		segs = append(segs, tcpPacket(wireNode, wireRouter, 40000, 179, seq, 0, stream[:n]))
		seq += uint32(n)
		stream = stream[n:]
	}
	for i, k := range order(len(segs)) {
		w.Segment(wireT0.Add(time.Duration(i)*time.Millisecond), segs[k])
	}
}

func inOrder(n int) []int {
	o := make([]int, n)
	for i := range o {
		o[i] = i
	}
	return o
}

func cat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

func TestBGPWireUpdatesAcrossSegments(t *testing.T) {
	for _, addPath := range []bool{false, true} {
		mode := bgppkt.BGP_ADD_PATH_NONE
		if addPath {
			mode = bgppkt.BGP_ADD_PATH_SEND
		}
		stream := cat(open(t, 64512, wireNode, mode), keepalive(t),
			update(t, addPath, "198.19.0.1/32", "198.19.0.2/32"), keepalive(t),
			update(t, addPath, "198.19.0.3/32", "2001:db8:19::3/128"))
		for _, tc := range []struct {
			name  string
			mss   int
			order func(n int) []int
		}{
			{"whole", 1 << 16, inOrder},
			{"7-byte segments", 7, inOrder},
			// Every pair swapped and every segment sent twice.
			{"out of order, retransmitted", 5, func(n int) []int {
				var o []int
				for i := 0; i < n; i += 2 {
					if i+1 < n {
						o = append(o, i+1, i, i+1)
					} else {
						o = append(o, i, i)
					}
				}
				return o
			}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				w := NewBGPWire()
				session(t, w, stream, tc.mss, tc.order)
				if u, errs := w.Counts(); u != 2 || errs != 0 {
					t.Fatalf("add-path %v: %d UPDATEs parsed with %d errors, want 2 and 0 (prefixes %v)", addPath, u, errs, w.Prefixes())
				}
				for _, p := range []string{"198.19.0.1/32", "198.19.0.2/32", "198.19.0.3/32", "2001:db8:19::3/128"} {
					got := w.Announced(netip.MustParsePrefix(p), wireT0)
					if _, ok := got[wireNode]; !ok || len(got) != 1 {
						t.Errorf("add-path %v: %s announced by %v, want by %s only", addPath, p, got, wireNode)
					}
				}
				// The first UPDATE is complete with its last segment, after
				// the second UPDATE's prefixes cannot have been.
				first := w.Announced(netip.MustParsePrefix("198.19.0.1/32"), wireT0)[wireNode]
				second := w.Announced(netip.MustParsePrefix("198.19.0.3/32"), wireT0)[wireNode]
				if tc.mss < 100 && !first.Before(second) {
					t.Errorf("first UPDATE at %v, second at %v: want the first earlier", first.Sub(wireT0), second.Sub(wireT0))
				}
				if got := w.Announced(netip.MustParsePrefix("198.19.0.1/32"), second.Add(time.Millisecond)); len(got) != 0 {
					t.Errorf("announced after the last segment: %v, want nothing", got)
				}
			})
		}
	}
}

// A capture started in the middle of a session finds the next message by
// its marker, and the router's messages are told apart from the node's.
func TestBGPWireMidStream(t *testing.T) {
	w := NewBGPWire()
	u := update(t, false, "198.19.0.9/32")
	stream := cat(u[10:], keepalive(t), update(t, false, "198.19.0.10/32"))
	w.Segment(wireT0, tcpPacket(wireNode, wireRouter, 40000, 179, 5000, 0, stream[:30]))
	w.Segment(wireT0.Add(time.Millisecond), tcpPacket(wireNode, wireRouter, 40000, 179, 5030, 0, stream[30:]))
	w.Segment(wireT0.Add(2*time.Millisecond), tcpPacket(wireRouter, wireNode, 179, 40000, 9000, 0, update(t, false, "198.19.0.11/32")))
	if got := w.Announced(netip.MustParsePrefix("198.19.0.10/32"), wireT0); !got[wireNode].Equal(wireT0.Add(time.Millisecond)) || len(got) != 1 {
		t.Errorf("198.19.0.10/32 announced %v, want by %s at +1ms", got, wireNode)
	}
	if got := w.Announced(netip.MustParsePrefix("198.19.0.9/32"), wireT0); len(got) != 0 {
		t.Errorf("the cut-off UPDATE was read: %v", got)
	}
	if got := w.Announced(netip.MustParsePrefix("198.19.0.11/32"), wireT0); len(got) != 1 || got[wireRouter].IsZero() {
		t.Errorf("198.19.0.11/32 announced %v, want by the router", got)
	}
}

// Speakers that did not both offer 4-octet AS numbers send 2-octet AS
// paths; the capture reads them so.
func TestBGPWireTwoOctetAS(t *testing.T) {
	w := NewBGPWire()
	o, err := bgppkt.NewBGPOpenMessage(64512, 3, wireNode, []bgppkt.OptionParameterInterface{
		bgppkt.NewOptionParameterCapability([]bgppkt.ParameterCapabilityInterface{bgppkt.NewCapMultiProtocol(bgppkt.RF_IPv4_UC)})})
	if err != nil {
		t.Fatal(err)
	}
	nh, _ := bgppkt.NewPathAttributeNextHop(wireNode)
	n, _ := bgppkt.NewIPAddrPrefix(netip.MustParsePrefix("198.19.0.20/32"))
	u := bgppkt.NewBGPUpdateMessage(nil, []bgppkt.PathAttributeInterface{bgppkt.NewPathAttributeOrigin(0),
		bgppkt.NewPathAttributeAsPath([]bgppkt.AsPathParamInterface{bgppkt.NewAsPathParam(bgppkt.BGP_ASPATH_ATTR_TYPE_SEQ, []uint16{64512, 64513})}), nh},
		[]bgppkt.PathNLRI{{NLRI: n}})
	session(t, w, cat(serialize(t, o, nil), serialize(t, u, &bgppkt.MarshallingOption{Use2ByteAS: true})), 1<<16, inOrder)
	if got := w.Announced(netip.MustParsePrefix("198.19.0.20/32"), wireT0); len(got) != 1 {
		t.Errorf("198.19.0.20/32 announced %v, want by %s", got, wireNode)
	}
	if _, errs := w.Counts(); errs != 0 {
		t.Errorf("%d messages unparsed", errs)
	}
}
