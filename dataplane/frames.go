package dataplane

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ndp"
)

// Frame layout constants (Ethernet II, no VLAN tag: the kernel strips it
// before AF_PACKET sees the frame on the VLAN device).
const (
	ethHeaderLen = 14
	etherTypeARP = 0x0806
	etherTypeV6  = 0x86dd
	arpLen       = 28
	ipv6HdrLen   = 40
	protoICMPv6  = 58
	// minFrameLen is the Ethernet minimum without FCS; shorter frames are
	// padded with zeros before sending.
	minFrameLen = 60
	// maxFrameLen bounds what we accept: anything longer than a full-size
	// (VLAN-tagged) Ethernet frame is not an ARP or NDP message we answer.
	maxFrameLen = 1518
	// maxNDPPayload bounds the ICMPv6 part of a neighbour solicitation:
	// the fixed part plus a handful of options is far below the IPv6
	// minimum MTU.
	maxNDPPayload = 1280 - ipv6HdrLen
	icmpTypeNS    = 135
	icmpTypeNA    = 136
	nsFixedLen    = 24 // ICMPv6 header (4) + reserved (4) + target (16)
)

var (
	ethBroadcast   = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	ethZero        = net.HardwareAddr{0, 0, 0, 0, 0, 0}
	allNodesV6     = netip.MustParseAddr("ff02::1")
	allNodesV6eMAC = net.HardwareAddr{0x33, 0x33, 0, 0, 0, 1}
)

// verdict says what the handler made of one received frame; it drives the
// counters and the conflict log.
type verdict int

const (
	// ignored: not a message we look at (wrong type, malformed, spoofed,
	// not for an owned VIP, sent by ourselves).
	ignored verdict = iota
	// requestOther: a well-formed request (ARP request or NS) for an
	// address this node does not own on this interface; counted, not
	// answered.
	requestOther
	// answered: a well-formed request for an owned VIP; the reply is
	// returned.
	answered
	// conflict: another station claims an owned VIP (an ARP reply or
	// gratuitous ARP, or a neighbour advertisement, from another MAC, or a
	// request sent with the VIP as its source).
	conflict
)

// isUnicastMAC reports whether m is a usable unicast station address: six
// bytes, group bit clear, not all zeros.
func isUnicastMAC(m []byte) bool {
	return len(m) == 6 && m[0]&1 == 0 && !bytes.Equal(m, ethZero)
}

// ownedFunc reports whether this node answers for addr on the interface the
// frame came in on.
type ownedFunc func(addr netip.Addr) bool

// handleARP looks at one Ethernet frame received on an interface whose MAC
// is mac. When it is a valid ARP request for an owned VIP it returns the
// reply frame to send back (unicast to the requester).
//
// Rules (beyond RFC 826 well-formedness): the frame must be addressed to
// broadcast or to us; the sender hardware address must equal the Ethernet
// source and be a unicast address other than ours; a request whose sender IP
// is the target (a gratuitous ARP) or a multicast/broadcast address is not
// answered. A sender IP of 0.0.0.0 (an RFC 5227 probe) is answered, as the
// kernel does, so the prober learns the address is taken.
func handleARP(frame []byte, mac net.HardwareAddr, owned ownedFunc) ([]byte, verdict, netip.Addr) {
	if len(frame) < ethHeaderLen+arpLen || len(frame) > maxFrameLen {
		return nil, ignored, netip.Addr{}
	}
	if binary.BigEndian.Uint16(frame[12:14]) != etherTypeARP {
		return nil, ignored, netip.Addr{}
	}
	dst, src := frame[0:6], frame[6:12]
	if !isUnicastMAC(src) || bytes.Equal(src, mac) {
		return nil, ignored, netip.Addr{}
	}
	var p arp.Packet
	// Only the ARP body: trailing bytes are Ethernet padding.
	if err := p.UnmarshalBinary(frame[ethHeaderLen : ethHeaderLen+arpLen]); err != nil {
		return nil, ignored, netip.Addr{}
	}
	if p.HardwareType != 1 || p.ProtocolType != 0x0800 || p.HardwareAddrLength != 6 || p.IPLength != 4 {
		return nil, ignored, netip.Addr{}
	}
	if !bytes.Equal(p.SenderHardwareAddr, src) {
		return nil, ignored, netip.Addr{}
	}
	spa, tpa := p.SenderIP, p.TargetIP
	switch p.Operation {
	case arp.OperationReply:
		// Someone else says where an address lives: a conflict when it
		// is one of ours.
		if owned(spa) {
			return nil, conflict, spa
		}
		return nil, ignored, netip.Addr{}
	case arp.OperationRequest:
	default:
		return nil, ignored, netip.Addr{}
	}
	if owned(spa) {
		// A request or gratuitous ARP using our VIP as its source.
		return nil, conflict, spa
	}
	if !bytes.Equal(dst, ethBroadcast) && !bytes.Equal(dst, mac) {
		return nil, ignored, netip.Addr{}
	}
	if spa == tpa || spa.IsMulticast() || spa == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		return nil, ignored, netip.Addr{}
	}
	if !owned(tpa) {
		return nil, requestOther, tpa
	}
	return arpFrame(arp.OperationReply, src, mac, tpa, src, spa), answered, tpa
}

// arpFrame builds an Ethernet frame carrying one ARP packet, sent from the
// sender hardware address and padded to the Ethernet minimum.
func arpFrame(op arp.Operation, ethDst, sha net.HardwareAddr, spa netip.Addr, tha net.HardwareAddr, tpa netip.Addr) []byte {
	return arpFrameFrom(sha, op, ethDst, sha, spa, tha, tpa)
}

// arpFrameFrom is arpFrame with an Ethernet source other than the sender
// hardware address (a correction sent on behalf of another node must leave
// from our own MAC, or switches would learn the other node's MAC on our
// port).
func arpFrameFrom(ethSrc net.HardwareAddr, op arp.Operation, ethDst, sha net.HardwareAddr, spa netip.Addr, tha net.HardwareAddr, tpa netip.Addr) []byte {
	b := make([]byte, minFrameLen)
	copy(b[0:6], ethDst)
	copy(b[6:12], ethSrc)
	binary.BigEndian.PutUint16(b[12:14], etherTypeARP)
	a := b[ethHeaderLen:]
	binary.BigEndian.PutUint16(a[0:2], 1)
	binary.BigEndian.PutUint16(a[2:4], 0x0800)
	a[4], a[5] = 6, 4
	binary.BigEndian.PutUint16(a[6:8], uint16(op))
	copy(a[8:14], sha)
	s4 := spa.As4()
	copy(a[14:18], s4[:])
	copy(a[18:24], tha)
	t4 := tpa.As4()
	copy(a[24:28], t4[:])
	return b
}

// gratuitousARP returns the two announcement forms for vip: a broadcast
// request with sender = target = vip, and a broadcast reply. Hosts and
// switches differ in which form they learn from, so both are sent.
func gratuitousARP(mac net.HardwareAddr, vip netip.Addr) [][]byte {
	return [][]byte{
		arpFrame(arp.OperationRequest, ethBroadcast, mac, vip, ethZero, vip),
		arpFrame(arp.OperationReply, ethBroadcast, mac, vip, ethBroadcast, vip),
	}
}

// solicitedNode returns the solicited-node multicast group of a and its
// Ethernet group address (33:33:ff:xx:xx:xx).
func solicitedNode(a netip.Addr) (netip.Addr, net.HardwareAddr) {
	b := a.As16()
	g := [16]byte{0xff, 0x02, 10: 0, 11: 0x01, 12: 0xff, 13: b[13], 14: b[14], 15: b[15]}
	return netip.AddrFrom16(g), net.HardwareAddr{0x33, 0x33, 0xff, b[13], b[14], b[15]}
}

// icmpv6Checksum computes the ICMPv6 checksum over the pseudo-header and
// msg; a message carrying a correct checksum sums to zero.
func icmpv6Checksum(src, dst netip.Addr, msg []byte) uint16 {
	var sum uint32
	add := func(b []byte) {
		for len(b) >= 2 {
			sum += uint32(b[0])<<8 | uint32(b[1])
			b = b[2:]
		}
		if len(b) == 1 {
			sum += uint32(b[0]) << 8
		}
	}
	s, d := src.As16(), dst.As16()
	add(s[:])
	add(d[:])
	var l [8]byte
	binary.BigEndian.PutUint32(l[0:4], uint32(len(msg)))
	l[7] = protoICMPv6
	add(l[:])
	add(msg)
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// handleNDP looks at one Ethernet frame received on an interface whose MAC
// is mac. When it is a valid neighbour solicitation (RFC 4861 7.1.1) for an
// owned VIP it returns the solicited neighbour advertisement to send.
//
// Accepted: IPv6 with next header ICMPv6 (no extension headers), hop limit
// 255, code 0, a correct checksum, a target that is an owned VIP, and a
// destination that is the target itself (unicast NUD probe) or its
// solicited-node group; from a unicast Ethernet source other than ours. A
// solicitation from the unspecified address (duplicate address detection)
// must carry no source link-layer option and is answered to all-nodes, as
// RFC 4861 7.2.4 asks, to defend the address.
func handleNDP(frame []byte, mac net.HardwareAddr, owned ownedFunc) ([]byte, verdict, netip.Addr) {
	if len(frame) < ethHeaderLen+ipv6HdrLen+nsFixedLen || len(frame) > maxFrameLen {
		return nil, ignored, netip.Addr{}
	}
	if binary.BigEndian.Uint16(frame[12:14]) != etherTypeV6 {
		return nil, ignored, netip.Addr{}
	}
	ethDst, ethSrc := frame[0:6], frame[6:12]
	if !isUnicastMAC(ethSrc) || bytes.Equal(ethSrc, mac) {
		return nil, ignored, netip.Addr{}
	}
	ip := frame[ethHeaderLen:]
	if ip[0]>>4 != 6 || ip[6] != protoICMPv6 || ip[7] != 255 {
		return nil, ignored, netip.Addr{}
	}
	plen := int(binary.BigEndian.Uint16(ip[4:6]))
	if plen < nsFixedLen || plen > maxNDPPayload || ipv6HdrLen+plen > len(ip) {
		return nil, ignored, netip.Addr{}
	}
	src := netip.AddrFrom16([16]byte(ip[8:24]))
	dst := netip.AddrFrom16([16]byte(ip[24:40]))
	msg := ip[ipv6HdrLen : ipv6HdrLen+plen]
	if msg[1] != 0 || src.IsMulticast() {
		return nil, ignored, netip.Addr{}
	}
	if msg[0] != icmpTypeNS && msg[0] != icmpTypeNA {
		return nil, ignored, netip.Addr{}
	}
	if icmpv6Checksum(src, dst, msg) != 0 {
		return nil, ignored, netip.Addr{}
	}
	m, err := ndp.ParseMessage(msg)
	if err != nil {
		return nil, ignored, netip.Addr{}
	}
	if na, ok := m.(*ndp.NeighborAdvertisement); ok {
		// Another station advertising one of our VIPs.
		if owned(na.TargetAddress) {
			return nil, conflict, na.TargetAddress
		}
		return nil, ignored, netip.Addr{}
	}
	ns, ok := m.(*ndp.NeighborSolicitation)
	if !ok {
		return nil, ignored, netip.Addr{}
	}
	target := ns.TargetAddress
	if !target.Is6() || target.Is4In6() || target.IsMulticast() || target.IsUnspecified() {
		return nil, ignored, netip.Addr{}
	}
	group, groupMAC := solicitedNode(target)
	switch {
	case dst == target:
		// Unicast NUD probe: must reach us by our own MAC.
		if !bytes.Equal(ethDst, mac) {
			return nil, ignored, netip.Addr{}
		}
	case dst == group:
		if !bytes.Equal(ethDst, groupMAC) {
			return nil, ignored, netip.Addr{}
		}
	default:
		return nil, ignored, netip.Addr{}
	}
	var sll net.HardwareAddr
	for _, o := range ns.Options {
		lla, ok := o.(*ndp.LinkLayerAddress)
		if !ok || lla.Direction != ndp.Source {
			continue
		}
		if sll != nil {
			// Two source link-layer options: malformed.
			return nil, ignored, netip.Addr{}
		}
		sll = lla.Addr
	}
	dad := src.IsUnspecified()
	if dad && (sll != nil || dst != group) {
		return nil, ignored, netip.Addr{}
	}
	if sll != nil && (!isUnicastMAC(sll) || bytes.Equal(sll, mac)) {
		return nil, ignored, netip.Addr{}
	}
	if owned(src) {
		// A solicitation sent from our VIP by someone else.
		return nil, conflict, src
	}
	if !owned(target) {
		return nil, requestOther, target
	}
	replyMAC, replyIP, solicited := net.HardwareAddr(bytes.Clone(ethSrc)), src, true
	if sll != nil {
		replyMAC = sll
	}
	if dad {
		replyMAC, replyIP, solicited = allNodesV6eMAC, allNodesV6, false
	}
	reply, err := naFrame(mac, target, replyMAC, replyIP, solicited)
	if err != nil {
		return nil, ignored, netip.Addr{}
	}
	return reply, answered, target
}

// naFrame builds a neighbour advertisement for target (from target, hop
// limit 255, Override set, our MAC as the target link-layer option).
func naFrame(mac net.HardwareAddr, target netip.Addr, ethDst net.HardwareAddr, dst netip.Addr, solicited bool) ([]byte, error) {
	return naFrameFrom(mac, mac, target, ethDst, dst, solicited)
}

// naFrameFrom is naFrame sent from Ethernet address mac, advertising tlla.
func naFrameFrom(mac, tlla net.HardwareAddr, target netip.Addr, ethDst net.HardwareAddr, dst netip.Addr, solicited bool) ([]byte, error) {
	na := &ndp.NeighborAdvertisement{
		Solicited:     solicited,
		Override:      true,
		TargetAddress: target,
		Options:       []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: tlla}},
	}
	msg, err := ndp.MarshalMessageChecksum(na, target, dst)
	if err != nil {
		return nil, err
	}
	b := make([]byte, ethHeaderLen+ipv6HdrLen+len(msg))
	copy(b[0:6], ethDst)
	copy(b[6:12], mac)
	binary.BigEndian.PutUint16(b[12:14], etherTypeV6)
	ip := b[ethHeaderLen:]
	ip[0] = 6 << 4
	binary.BigEndian.PutUint16(ip[4:6], uint16(len(msg)))
	ip[6] = protoICMPv6
	ip[7] = 255
	s, d := target.As16(), dst.As16()
	copy(ip[8:24], s[:])
	copy(ip[24:40], d[:])
	copy(ip[ipv6HdrLen:], msg)
	return b, nil
}

// unsolicitedNA is the announcement for an IPv6 VIP: an advertisement to
// all-nodes with Override set and Solicited clear (RFC 4861 7.2.6).
func unsolicitedNA(mac net.HardwareAddr, vip netip.Addr) ([]byte, error) {
	return naFrame(mac, vip, allNodesV6eMAC, allNodesV6, false)
}
