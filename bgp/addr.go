package bgp

import (
	"errors"
	"net"
	"net/netip"
)

// ifAddr is one address of an interface of this node (or network namespace).
type ifAddr struct {
	iface  string
	prefix netip.Prefix
}

// nodeAddrs lists the global unicast addresses of the up, non-loopback
// interfaces. Host prefixes (/32, /128) are left out: those are VIPs.
func nodeAddrs() []ifAddr {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil
	}
	var out []ifAddr
	for _, ifi := range ifs {
		if ifi.Flags&net.FlagUp == 0 || ifi.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, err := ifi.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			ip, ok := netip.AddrFromSlice(ipn.IP)
			if !ok {
				continue
			}
			ip = ip.Unmap()
			ones, _ := ipn.Mask.Size()
			if !ip.IsGlobalUnicast() || ones == ip.BitLen() {
				continue
			}
			out = append(out, ifAddr{iface: ifi.Name, prefix: netip.PrefixFrom(ip, ones)})
		}
	}
	return out
}

// sourceTowards is the address the kernel would send from to reach dst. A
// UDP "connect" picks the route without sending anything.
func sourceTowards(dst netip.Addr) (netip.Addr, bool) {
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(dst, 179)))
	if err != nil {
		return netip.Addr{}, false
	}
	defer c.Close()
	la, ok := c.LocalAddr().(*net.UDPAddr)
	if !ok {
		return netip.Addr{}, false
	}
	return la.AddrPort().Addr().Unmap(), true
}

// chooseRouterID picks the node's own IPv4 address for an empty router-id:
// the source address towards the first IPv4 neighbor when it is an
// interface address (not a VIP), else the first global IPv4 address.
func chooseRouterID(addrs []ifAddr, neighbors []netip.Addr) (netip.Addr, error) {
	for _, n := range neighbors {
		if !n.Is4() {
			continue
		}
		if src, ok := sourceTowards(n); ok {
			for _, a := range addrs {
				if a.prefix.Addr() == src {
					return src, nil
				}
			}
		}
	}
	for _, a := range addrs {
		if a.prefix.Addr().Is4() {
			return a.prefix.Addr(), nil
		}
	}
	return netip.Addr{}, errors.New("router-id is empty and this node has no global IPv4 address; set global.config.router-id")
}

// chooseNextHop6 picks the next hop of IPv6 VIPs. When every session that
// carries ipv6-unicast is itself IPv6, the unspecified address lets GoBGP use
// each session's local address. An IPv4 session would otherwise get an
// IPv4-mapped next hop that FRR does not install, so then we use a real
// IPv6 address of the node: one on the interface facing that neighbor if
// there is one, else the first global IPv6 address.
func chooseNextHop6(addrs []ifAddr, v4PeersWithV6 []netip.Addr) netip.Addr {
	if len(v4PeersWithV6) == 0 {
		return netip.IPv6Unspecified()
	}
	for _, n := range v4PeersWithV6 {
		src, ok := sourceTowards(n)
		if !ok {
			continue
		}
		iface := ""
		for _, a := range addrs {
			if a.prefix.Addr() == src {
				iface = a.iface
			}
		}
		for _, a := range addrs {
			if a.iface == iface && a.prefix.Addr().Is6() {
				return a.prefix.Addr()
			}
		}
	}
	for _, a := range addrs {
		if a.prefix.Addr().Is6() {
			return a.prefix.Addr()
		}
	}
	return netip.IPv6Unspecified()
}
