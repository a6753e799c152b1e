package lab

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"sort"
	"sync"
	"time"

	bgppkt "github.com/osrg/gobgp/v4/pkg/packet/bgp"
)

// BGPWire follows the BGP sessions (TCP port 179) in IPv4 packets as they
// cross a wire and keeps, for every prefix announced, when and by whom an
// UPDATE carrying it was seen. It reassembles each direction of each TCP
// connection by sequence number (segments out of order are held back,
// retransmissions dropped), cuts the byte stream into BGP messages by
// their header and parses them with GoBGP's packet package, with the
// options the two OPENs of the session agreed on (ADD-PATH for IPv4
// unicast, 2-octet AS numbers). A capture that starts in the middle of a
// session finds the next message by its marker. StartBGPCapture feeds it
// from a packet socket; Segment takes packets from anywhere else.
type BGPWire struct {
	mu      sync.Mutex
	flows   map[tcpFlow]*tcpStream
	opens   map[tcpFlow]bgpOpenCaps // the OPEN each side sent
	seen    map[netip.Prefix][]BGPAnnounce
	updates int
	errs    int
}

// BGPAnnounce is one UPDATE that carried a prefix: when it was complete on
// the wire (the capture time of its last segment) and the address of the
// speaker that sent it.
type BGPAnnounce struct {
	At   time.Time
	From netip.Addr
}

type tcpFlow struct {
	src, dst         netip.Addr
	srcPort, dstPort uint16
}

func (f tcpFlow) reverse() tcpFlow {
	return tcpFlow{src: f.dst, dst: f.src, srcPort: f.dstPort, dstPort: f.srcPort}
}

type tcpStream struct {
	next    uint32            // next sequence number expected
	pending map[uint32][]byte // segments that came before their turn
	buf     []byte            // bytes not yet cut into messages
	resync  bool              // the capture began mid-stream: look for a marker
}

type bgpOpenCaps struct {
	addPath bgppkt.BGPAddPathMode // for IPv4 unicast
	as4     bool
}

// maxPending bounds the segments held back per stream; past it the stream
// starts over at the next marker (a lost segment never comes back).
const maxPending = 256

// NewBGPWire returns an empty BGPWire.
func NewBGPWire() *BGPWire {
	return &BGPWire{flows: map[tcpFlow]*tcpStream{}, opens: map[tcpFlow]bgpOpenCaps{}, seen: map[netip.Prefix][]BGPAnnounce{}}
}

// Segment takes one IPv4 packet (starting at its IP header) captured at
// at. Anything but TCP to or from port 179 is ignored.
func (w *BGPWire) Segment(at time.Time, pkt []byte) {
	if len(pkt) < 20 || pkt[0]>>4 != 4 || pkt[9] != 6 {
		return
	}
	ihl := int(pkt[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(pkt[2:4]))
	if ihl < 20 || total < ihl+20 || total > len(pkt) {
		return
	}
	tcp := pkt[ihl:total]
	f := tcpFlow{src: netip.AddrFrom4([4]byte(pkt[12:16])), dst: netip.AddrFrom4([4]byte(pkt[16:20])),
		srcPort: binary.BigEndian.Uint16(tcp[0:2]), dstPort: binary.BigEndian.Uint16(tcp[2:4])}
	if f.srcPort != 179 && f.dstPort != 179 {
		return
	}
	off := int(tcp[12]>>4) * 4
	if off < 20 || off > len(tcp) {
		return
	}
	seq, flags, data := binary.BigEndian.Uint32(tcp[4:8]), tcp[13], tcp[off:]
	const fin, syn, rst = 0x01, 0x02, 0x04
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.flows[f]
	switch {
	case flags&(syn|rst) != 0:
		// A new connection (or its end): the OPENs to come set the options.
		delete(w.opens, f)
		delete(w.flows, f)
		if flags&rst != 0 {
			return
		}
		s = &tcpStream{next: seq + 1, pending: map[uint32][]byte{}}
		w.flows[f] = s
	case s == nil:
		if len(data) == 0 {
			return
		}
		s = &tcpStream{next: seq, pending: map[uint32][]byte{}, resync: true}
		w.flows[f] = s
	}
	if len(data) > 0 {
		s.add(seq, data)
		w.cut(at, f, s)
	}
	if flags&fin != 0 {
		delete(w.flows, f)
	}
}

// add puts a segment's bytes in order: what is due now goes to buf with
// every held-back segment it makes due, what is early is held back, what
// was seen already is dropped.
func (s *tcpStream) add(seq uint32, data []byte) {
	if d := int32(seq - s.next); d > 0 {
		if len(s.pending) >= maxPending {
			clear(s.pending)
			s.buf, s.next, s.resync = nil, seq, true
		} else {
			s.pending[seq] = bytes.Clone(data)
			return
		}
	}
	for {
		if skip := int(int32(s.next - seq)); skip < len(data) {
			s.buf = append(s.buf, data[skip:]...)
			s.next += uint32(len(data) - skip)
		}
		found := false
		for q, d := range s.pending {
			if int32(q-s.next) <= 0 {
				delete(s.pending, q)
				seq, data, found = q, d, true
				break
			}
		}
		if !found {
			return
		}
	}
}

var bgpMarker = bytes.Repeat([]byte{0xff}, 16)

// cut takes the whole messages off the front of the stream's buffer.
func (w *BGPWire) cut(at time.Time, f tcpFlow, s *tcpStream) {
	for {
		if s.resync || (len(s.buf) >= 16 && !bytes.Equal(s.buf[:16], bgpMarker)) {
			i := bytes.Index(s.buf, bgpMarker)
			if i < 0 {
				// Keep a tail that may be the start of a marker.
				s.buf = s.buf[max(0, len(s.buf)-15):]
				return
			}
			// A marker followed by more 0xff is a length field's high
			// octet at best: skip to the last 16 of the run.
			for i+16 < len(s.buf) && s.buf[i+16] == 0xff {
				i++
			}
			s.buf, s.resync = s.buf[i:], false
		}
		if len(s.buf) < bgppkt.BGP_HEADER_LENGTH {
			break
		}
		n := int(binary.BigEndian.Uint16(s.buf[16:18]))
		if n < bgppkt.BGP_HEADER_LENGTH {
			s.buf, s.resync = s.buf[16:], true
			continue
		}
		if len(s.buf) < n {
			break
		}
		w.message(at, f, s.buf[:n])
		s.buf = s.buf[n:]
	}
	if len(s.buf) == 0 {
		s.buf = nil // let the consumed backing array go
	}
}

// message parses one BGP message of flow f.
func (w *BGPWire) message(at time.Time, f tcpFlow, b []byte) {
	m, err := bgppkt.ParseBGPMessage(b, w.options(f))
	if err != nil {
		w.errs++
	}
	if m == nil {
		return
	}
	switch body := m.Body.(type) {
	case *bgppkt.BGPOpen:
		w.opens[f] = openCaps(body)
	case *bgppkt.BGPUpdate:
		w.updates++
		for _, n := range body.NLRI {
			w.announce(at, f.src, n.NLRI)
		}
		for _, a := range body.PathAttributes {
			if r, ok := a.(*bgppkt.PathAttributeMpReachNLRI); ok {
				for _, n := range r.Value {
					w.announce(at, f.src, n.NLRI)
				}
			}
		}
	}
}

func (w *BGPWire) announce(at time.Time, from netip.Addr, n bgppkt.NLRI) {
	if p, err := netip.ParsePrefix(n.String()); err == nil {
		w.seen[p] = append(w.seen[p], BGPAnnounce{At: at, From: from})
	}
}

func openCaps(o *bgppkt.BGPOpen) bgpOpenCaps {
	var c bgpOpenCaps
	for _, p := range o.OptParams {
		op, ok := p.(*bgppkt.OptionParameterCapability)
		if !ok {
			continue
		}
		for _, cp := range op.Capability {
			switch cp := cp.(type) {
			case *bgppkt.CapFourOctetASNumber:
				c.as4 = true
			case *bgppkt.CapAddPath:
				for _, t := range cp.Tuples {
					if t.Family == bgppkt.RF_IPv4_UC {
						c.addPath = t.Mode
					}
				}
			}
		}
	}
	return c
}

// options are the parse options for messages of flow f: path identifiers
// when its sender offered to send them and the other side to receive
// them; 2-octet AS numbers unless both offered 4.
func (w *BGPWire) options(f tcpFlow) *bgppkt.MarshallingOption {
	mine, ok1 := w.opens[f]
	theirs, ok2 := w.opens[f.reverse()]
	o := &bgppkt.MarshallingOption{}
	if !ok1 || !ok2 {
		return o
	}
	if mine.addPath&bgppkt.BGP_ADD_PATH_SEND != 0 && theirs.addPath&bgppkt.BGP_ADD_PATH_RECEIVE != 0 {
		o.AddPath = map[bgppkt.Family]bgppkt.BGPAddPathMode{bgppkt.RF_IPv4_UC: bgppkt.BGP_ADD_PATH_RECEIVE}
	}
	o.Use2ByteAS = !mine.as4 || !theirs.as4
	return o
}

// Announced returns, per speaker, the first UPDATE seen at or after since
// that carried p.
func (w *BGPWire) Announced(p netip.Prefix, since time.Time) map[netip.Addr]time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := map[netip.Addr]time.Time{}
	for _, a := range w.seen[p] {
		if t, ok := out[a.From]; !a.At.Before(since) && (!ok || a.At.Before(t)) {
			out[a.From] = a.At
		}
	}
	return out
}

// Prefixes returns every prefix an UPDATE carried so far, sorted.
func (w *BGPWire) Prefixes() []netip.Prefix {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]netip.Prefix, 0, len(w.seen))
	for p := range w.seen {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool {
		if c := out[i].Addr().Compare(out[j].Addr()); c != 0 {
			return c < 0
		}
		return out[i].Bits() < out[j].Bits()
	})
	return out
}

// Counts returns how many UPDATEs were parsed and how many messages GoBGP
// found fault with (a count above zero means the capture or the options
// were wrong, not the speaker).
func (w *BGPWire) Counts() (updates, errs int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.updates, w.errs
}
