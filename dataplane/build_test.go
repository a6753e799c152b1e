package dataplane

import (
	"encoding/binary"
	"net"
	"net/netip"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ndp"
)

// Frame builders for tests: what a client on the segment would send.

var (
	vip4     = netip.MustParseAddr("203.0.113.10")
	vip4Free = netip.MustParseAddr("203.0.113.11") // in the pool, owned by nobody
	vip6     = netip.MustParseAddr("2001:db8:100::1:10")
	vip6Free = netip.MustParseAddr("2001:db8:100::1:11")

	ourMAC    = net.HardwareAddr{0x02, 0x00, 0x00, 0x00, 0x00, 0x01}
	clientMAC = net.HardwareAddr{0x02, 0x00, 0x00, 0x00, 0x00, 0x99}
	clientV4  = netip.MustParseAddr("198.18.0.1")
	clientV6  = netip.MustParseAddr("2001:db8:1::1")
)

func arpRequest(ethDst net.HardwareAddr, sha net.HardwareAddr, spa, tpa netip.Addr) []byte {
	return arpFrame(arp.OperationRequest, ethDst, sha, spa, ethZero, tpa)
}

// nsFrame builds a neighbour solicitation. sll nil: no source link-layer
// option.
func nsFrame(ethSrc, ethDst net.HardwareAddr, src, dst, target netip.Addr, sll net.HardwareAddr) []byte {
	ns := &ndp.NeighborSolicitation{TargetAddress: target}
	if sll != nil {
		ns.Options = []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Source, Addr: sll}}
	}
	msg, err := ndp.MarshalMessageChecksum(ns, src, dst)
	if err != nil {
		panic(err)
	}
	return ipv6Frame(ethSrc, ethDst, src, dst, 255, msg)
}

func ipv6Frame(ethSrc, ethDst net.HardwareAddr, src, dst netip.Addr, hops byte, msg []byte) []byte {
	b := make([]byte, ethHeaderLen+ipv6HdrLen+len(msg))
	copy(b[0:6], ethDst)
	copy(b[6:12], ethSrc)
	binary.BigEndian.PutUint16(b[12:14], etherTypeV6)
	ip := b[ethHeaderLen:]
	ip[0] = 0x60
	binary.BigEndian.PutUint16(ip[4:6], uint16(len(msg)))
	ip[6] = protoICMPv6
	ip[7] = hops
	s, d := src.As16(), dst.As16()
	copy(ip[8:24], s[:])
	copy(ip[24:40], d[:])
	copy(ip[ipv6HdrLen:], msg)
	return b
}

// multicastNS is a solicitation for target sent to its solicited-node group.
func multicastNS(target netip.Addr) []byte {
	g, gm := solicitedNode(target)
	return nsFrame(clientMAC, gm, clientV6, g, target, clientMAC)
}

// parseNA returns the advertisement carried by a frame built by naFrame,
// with the IPv6 destination and hop limit.
func parseNA(frame []byte) (*ndp.NeighborAdvertisement, netip.Addr, netip.Addr, byte, error) {
	ip := frame[ethHeaderLen:]
	src := netip.AddrFrom16([16]byte(ip[8:24]))
	dst := netip.AddrFrom16([16]byte(ip[24:40]))
	m, err := ndp.ParseMessage(ip[ipv6HdrLen:])
	if err != nil {
		return nil, src, dst, 0, err
	}
	na, ok := m.(*ndp.NeighborAdvertisement)
	if !ok {
		return nil, src, dst, 0, net.InvalidAddrError("not an NA")
	}
	return na, src, dst, ip[7], nil
}

func ipv4At(b []byte) netip.Addr { return netip.AddrFrom4([4]byte(b)) }

func addr16(b []byte) netip.Addr { return netip.AddrFrom16([16]byte(b)) }
