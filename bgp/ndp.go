package bgp

import (
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

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
	_ = p.SetMulticastLoopback(false) // our own listener must not hear us
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

// routerWatch learns, for each interface, who sends router advertisements
// there: on the point-to-point link of an unnumbered neighbor, the
// router's link-local address. The reader records by interface index;
// names and our own addresses are resolved when asked, in the caller's
// network namespace.
type routerWatch struct {
	conn net.PacketConn
	mu   sync.Mutex
	seen map[int]map[netip.Addr]time.Time // index → source → last heard
}

// watchRouters opens an ICMPv6 socket that receives router
// advertisements only, and reads it until Close.
func watchRouters() (*routerWatch, error) {
	c, err := net.ListenPacket("ip6:ipv6-icmp", "::")
	if err != nil {
		return nil, fmt.Errorf("icmpv6 socket: %w", err)
	}
	p := ipv6.NewPacketConn(c)
	var f ipv6.ICMPFilter
	f.SetAll(true)
	f.Accept(ipv6.ICMPTypeRouterAdvertisement)
	if err := p.SetICMPFilter(&f); err != nil {
		c.Close()
		return nil, err
	}
	if err := p.SetControlMessage(ipv6.FlagHopLimit|ipv6.FlagInterface|ipv6.FlagSrc, true); err != nil {
		c.Close()
		return nil, err
	}
	w := &routerWatch{conn: c, seen: map[int]map[netip.Addr]time.Time{}}
	go w.read(p)
	return w, nil
}

func (w *routerWatch) read(p *ipv6.PacketConn) {
	b := make([]byte, 1500)
	for {
		n, cm, _, err := p.ReadFrom(b)
		if err != nil {
			return // closed
		}
		// RFC 4861: hop limit 255 and a link-local source, else not from
		// a router on this link
		if n < 16 || cm == nil || cm.HopLimit != 255 || b[0] != byte(ipv6.ICMPTypeRouterAdvertisement) {
			continue
		}
		src, ok := netip.AddrFromSlice(cm.Src)
		if !ok || !src.IsLinkLocalUnicast() {
			continue
		}
		w.mu.Lock()
		if w.seen[cm.IfIndex] == nil {
			w.seen[cm.IfIndex] = map[netip.Addr]time.Time{}
		}
		w.seen[cm.IfIndex][src.WithZone("")] = time.Now()
		w.mu.Unlock()
	}
}

// router is the source of the last router advertisement heard on iface
// that is not one of our own addresses, zoned with iface.
func (w *routerWatch) router(iface string) (netip.Addr, bool) {
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		return netip.Addr{}, false
	}
	own := map[netip.Addr]bool{}
	addrs, _ := ifi.Addrs()
	for _, x := range addrs {
		if n, ok := x.(*net.IPNet); ok {
			if a, ok := netip.AddrFromSlice(n.IP); ok {
				own[a] = true
			}
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	var (
		best netip.Addr
		at   time.Time
	)
	for a, t := range w.seen[ifi.Index] {
		if !own[a] && t.After(at) {
			best, at = a, t
		}
	}
	return best.WithZone(iface), best.IsValid()
}

func (w *routerWatch) Close() error { return w.conn.Close() }
