package bgp

import (
	"fmt"
	"net"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv6"
)

// The two ICMPv6 messages an unnumbered neighbor needs (RFC 4861): a
// router advertisement so the router learns our link-local address, and a
// router solicitation so it tells us its own at once. Both carry our MAC
// in a source link-layer address option and go out with hop limit 255 from
// the interface's link-local address; the kernel fills the checksum.

var (
	allNodes   = net.ParseIP("ff02::1")
	allRouters = net.ParseIP("ff02::2")
)

// sendRouterAdvertisement sends an advertisement with router lifetime 0
// (not a default router) and no prefixes.
func sendRouterAdvertisement(iface string) error {
	// cur hop limit 0 (unspecified), flags 0, router lifetime 0, reachable
	// time 0, retrans timer 0
	return sendND(iface, ipv6.ICMPTypeRouterAdvertisement, make([]byte, 12), allNodes)
}

// sendRouterSolicitation sends a solicitation to all routers.
func sendRouterSolicitation(iface string) error {
	return sendND(iface, ipv6.ICMPTypeRouterSolicitation, make([]byte, 4), allRouters)
}

func sendND(iface string, typ ipv6.ICMPType, fixed []byte, dst net.IP) error {
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		return err
	}
	body := fixed
	if len(ifi.HardwareAddr) == 6 {
		body = append(append(body, 1, 1), ifi.HardwareAddr...) // source link-layer address
	}
	msg, err := (&icmp.Message{Type: typ, Body: &icmp.RawBody{Data: body}}).Marshal(nil)
	if err != nil {
		return err
	}
	c, err := icmp.ListenPacket("ip6:ipv6-icmp", "::")
	if err != nil {
		return fmt.Errorf("icmpv6 socket: %w", err)
	}
	defer c.Close()
	p := c.IPv6PacketConn()
	var block ipv6.ICMPFilter
	block.SetAll(true) // we only send
	_ = p.SetICMPFilter(&block)
	if err := p.SetMulticastHopLimit(255); err != nil {
		return err
	}
	if err := p.SetMulticastInterface(ifi); err != nil {
		return err
	}
	if _, err := c.WriteTo(msg, &net.IPAddr{IP: dst, Zone: iface}); err != nil {
		return fmt.Errorf("send %v on %s: %w", typ, iface, err)
	}
	return nil
}
