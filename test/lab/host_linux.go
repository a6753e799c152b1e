package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Host is one network namespace of the lab: a router, a node, a client.
type Host struct {
	lab   *Lab
	name  string
	netns string
	ns    netns.NsHandle
	nl    *netlink.Handle
}

// Host creates a host: a fresh network namespace with loopback up and IPv6
// duplicate address detection off (addresses are usable at once).
// Forwarding is off, as in any new namespace; see EnableForwarding.
func (l *Lab) Host(name string) (*Host, error) {
	if !nameRE.MatchString(name) || len(l.prefix)+len(name) > 48 {
		return nil, fmt.Errorf("lab: invalid host name %q", name)
	}
	l.mu.Lock()
	if err := l.checkOpen(); err != nil {
		l.mu.Unlock()
		return nil, fmt.Errorf("host %s: %w", name, err)
	}
	if _, ok := l.hosts[name]; ok {
		l.mu.Unlock()
		return nil, fmt.Errorf("host %s: already exists", name)
	}
	h := &Host{lab: l, name: name, netns: l.prefix + name, ns: netns.None()}
	l.hosts[name] = h
	l.order = append(l.order, h) // recorded before creation, so Close removes a half-made host
	l.mu.Unlock()
	if err := l.saveState(); err != nil {
		return nil, err
	}

	ns, err := createNamespace(h.netns)
	if err != nil {
		return nil, fmt.Errorf("host %s: %w", name, err)
	}
	h.ns = ns
	nl, err := netlink.NewHandleAt(ns)
	if err != nil {
		return nil, fmt.Errorf("host %s: netlink handle: %w", name, err)
	}
	h.nl = nl
	lo, err := nl.LinkByName("lo")
	if err != nil {
		return nil, fmt.Errorf("host %s: find lo: %w", name, err)
	}
	if err := nl.LinkSetUp(lo); err != nil {
		return nil, fmt.Errorf("host %s: set lo up: %w", name, err)
	}
	for _, k := range []string{"net.ipv6.conf.all.accept_dad", "net.ipv6.conf.default.accept_dad"} {
		if err := h.Sysctl(k, "0"); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("host %s: %w", name, err)
		}
	}
	return h, nil
}

// MustHost is Host for tests: it fails the test on error. In a persistent
// lab it panics.
func (l *Lab) MustHost(name string) *Host {
	h, err := l.Host(name)
	l.must(err)
	return h
}

func (l *Lab) must(err error) {
	if err == nil {
		return
	}
	if l.t != nil {
		l.t.Helper()
		l.t.Fatal(err)
	}
	panic(err)
}

func (h *Host) closeHandles() {
	if h.nl != nil {
		h.nl.Close()
	}
	if h.ns.IsOpen() {
		h.ns.Close()
	}
}

// Name is the host's name in the lab.
func (h *Host) Name() string { return h.name }

// Lab is the lab the host belongs to.
func (h *Host) Lab() *Lab { return h.lab }

// NetnsName is the namespace's name, as `ip netns exec NAME` wants it.
func (h *Host) NetnsName() string { return h.netns }

// NetnsPath is the namespace's bind-mount path.
func (h *Host) NetnsPath() string { return filepath.Join(netnsDir, h.netns) }

// Netlink is a netlink handle bound to the host's namespace. It stays valid
// until the lab closes.
func (h *Host) Netlink() *netlink.Handle { return h.nl }

// Do runs fn on a locked OS thread inside the host's namespace (sockets
// opened there belong to the host). Goroutines started by fn do not inherit
// the namespace.
func (h *Host) Do(fn func() error) error {
	return inNamespace(h.ns, fn)
}

// Run runs a command inside the host's namespace and returns its combined
// output. A failure's error includes the output.
func (h *Host) Run(ctx context.Context, argv ...string) (string, error) {
	if len(argv) == 0 {
		return "", fmt.Errorf("run on %s: empty command", h.name)
	}
	cmd := exec.CommandContext(ctx, ipPath(), append([]string{"netns", "exec", h.netns}, argv...)...)
	cmd.Dir = h.lab.dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("run %q on %s: %w: %s", strings.Join(argv, " "), h.name, err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// MustRun is Run with a 30 s timeout that fails the test on error.
func (h *Host) MustRun(argv ...string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := h.Run(ctx, argv...)
	h.lab.must(err)
	return out
}

// Start runs argv inside the host's namespace in the background, its output
// going to <lab dir>/<host>.<name>.log. The process leads its own process
// group; the lab stops it (SIGTERM, then SIGKILL) when it closes.
func (h *Host) Start(name string, argv []string, opts ...StartOption) (*Process, error) {
	var cfg startConfig
	for _, o := range opts {
		o(&cfg)
	}
	return h.start(name, argv, cfg)
}

// Sysctl writes a sysctl of the host's namespace. The key is dotted
// ("net.ipv4.ip_forward") or a path under /proc/sys ("net/ipv4/ip_forward").
func (h *Host) Sysctl(key, value string) error {
	p := key
	if !strings.Contains(p, "/") {
		p = strings.ReplaceAll(p, ".", "/")
	}
	p = filepath.Join("/proc/sys", p)
	err := h.Do(func() error { return os.WriteFile(p, []byte(value), 0o644) })
	if err != nil {
		return fmt.Errorf("sysctl %s=%s on %s: %w", key, value, h.name, err)
	}
	return nil
}

// ReadSysctl reads a sysctl of the host's namespace.
func (h *Host) ReadSysctl(key string) (string, error) {
	p := key
	if !strings.Contains(p, "/") {
		p = strings.ReplaceAll(p, ".", "/")
	}
	p = filepath.Join("/proc/sys", p)
	var out string
	err := h.Do(func() error {
		b, err := os.ReadFile(p)
		out = strings.TrimSpace(string(b))
		return err
	})
	if err != nil {
		return "", fmt.Errorf("read sysctl %s on %s: %w", key, h.name, err)
	}
	return out, nil
}

// EnableForwarding turns on IPv4 and IPv6 forwarding, making the host a
// router.
func (h *Host) EnableForwarding() error {
	for _, k := range []string{"net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"} {
		if err := h.Sysctl(k, "1"); err != nil {
			return err
		}
	}
	return nil
}

// AddAddr adds addresses (CIDR strings; IPv6 without DAD) to an interface of
// the host. An address already present is not an error.
func (h *Host) AddAddr(ifName string, addrs ...string) error {
	link, err := h.nl.LinkByName(ifName)
	if err != nil {
		return fmt.Errorf("find %s on %s: %w", ifName, h.name, err)
	}
	return h.addAddrs(link, addrs)
}

func (h *Host) addAddrs(link netlink.Link, addrs []string) error {
	for _, a := range addrs {
		pfx, err := netip.ParsePrefix(a)
		if err != nil {
			return fmt.Errorf("address %q for %s on %s: %w", a, link.Attrs().Name, h.name, err)
		}
		addr := &netlink.Addr{IPNet: &net.IPNet{IP: pfx.Addr().AsSlice(), Mask: net.CIDRMask(pfx.Bits(), pfx.Addr().BitLen())}}
		if pfx.Addr().Is6() {
			addr.Flags = unix.IFA_F_NODAD
		}
		if err := h.nl.AddrAdd(link, addr); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("add %s to %s on %s: %w", a, link.Attrs().Name, h.name, err)
		}
	}
	return nil
}

// SetUp brings an interface of the host up.
func (h *Host) SetUp(ifName string) error { return h.setLink(ifName, "up", h.nl.LinkSetUp) }

// SetDown takes an interface of the host down.
func (h *Host) SetDown(ifName string) error { return h.setLink(ifName, "down", h.nl.LinkSetDown) }

func (h *Host) setLink(ifName, state string, set func(netlink.Link) error) error {
	link, err := h.nl.LinkByName(ifName)
	if err != nil {
		return fmt.Errorf("find %s on %s: %w", ifName, h.name, err)
	}
	if err := set(link); err != nil {
		return fmt.Errorf("set %s %s on %s: %w", ifName, state, h.name, err)
	}
	return nil
}

// AddRoute adds a route to dst ("198.51.100.0/24", "2001:db8:1::/48",
// "default" or "default6") through one gateway, or through several as one
// ECMP multipath route.
func (h *Host) AddRoute(dst string, via ...string) error {
	if len(via) == 0 {
		return fmt.Errorf("route %s on %s: no gateway", dst, h.name)
	}
	gws := make([]netip.Addr, 0, len(via))
	for _, v := range via {
		gw, err := netip.ParseAddr(v)
		if err != nil {
			return fmt.Errorf("route %s on %s: gateway %q: %w", dst, h.name, v, err)
		}
		gws = append(gws, gw)
	}
	pfx, err := routeDst(dst, gws[0].Is6())
	if err != nil {
		return fmt.Errorf("route %s on %s: %w", dst, h.name, err)
	}
	for _, gw := range gws {
		if gw.Is6() != pfx.Addr().Is6() {
			return fmt.Errorf("route %s on %s: gateway %s is of the other family", dst, h.name, gw)
		}
	}
	r := &netlink.Route{Dst: &net.IPNet{IP: pfx.Addr().AsSlice(), Mask: net.CIDRMask(pfx.Bits(), pfx.Addr().BitLen())}}
	if len(gws) == 1 {
		r.Gw = gws[0].AsSlice()
	} else {
		for _, gw := range gws {
			r.MultiPath = append(r.MultiPath, &netlink.NexthopInfo{Gw: gw.AsSlice()})
		}
	}
	if err := h.nl.RouteAdd(r); err != nil {
		return fmt.Errorf("route %s via %s on %s: %w", dst, strings.Join(via, ","), h.name, err)
	}
	return nil
}

// DelRoute deletes the main-table route to dst (a prefix, "default" or
// "default6"). A missing route is not an error.
func (h *Host) DelRoute(dst string) error {
	pfx, err := routeDst(dst, false)
	if err != nil {
		return fmt.Errorf("delete route %s on %s: %w", dst, h.name, err)
	}
	r := &netlink.Route{Dst: &net.IPNet{IP: pfx.Addr().AsSlice(), Mask: net.CIDRMask(pfx.Bits(), pfx.Addr().BitLen())}}
	if err := h.nl.RouteDel(r); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("delete route %s on %s: %w", dst, h.name, err)
	}
	return nil
}

// routeDst parses a route's destination: a prefix, "default6" (::/0) or
// "default" (0.0.0.0/0, or ::/0 when v6).
func routeDst(dst string, v6 bool) (netip.Prefix, error) {
	switch {
	case dst == "default6" || dst == "default" && v6:
		return netip.MustParsePrefix("::/0"), nil
	case dst == "default":
		return netip.MustParsePrefix("0.0.0.0/0"), nil
	}
	p, err := netip.ParsePrefix(dst)
	return p.Masked(), err
}

// KernelRoute is a route of a host's main routing table.
type KernelRoute struct {
	Dst netip.Prefix
	// Gateways has one address per next hop (an IPv6 one for an IPv4
	// route via inet6, RFC 5549); empty for a connected route.
	Gateways []netip.Addr
	Devs     []string // interface of each next hop
	// Weights of a multipath route's next hops (in Gateways' order; 1 is
	// the kernel's default); empty for a single next hop.
	Weights  []int
	Protocol string // "kernel", "static", "bgp", "bird", "boot", ...
}

// KernelRoutes lists the IPv4 and IPv6 routes of the host's main table.
func (h *Host) KernelRoutes() ([]KernelRoute, error) {
	rs, err := h.nl.RouteList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("list routes on %s: %w", h.name, err)
	}
	out := make([]KernelRoute, 0, len(rs))
	for _, r := range rs {
		kr := KernelRoute{Protocol: r.Protocol.String()}
		if r.Dst != nil {
			a, _ := netip.AddrFromSlice(r.Dst.IP)
			ones, _ := r.Dst.Mask.Size()
			kr.Dst = netip.PrefixFrom(a.Unmap(), ones)
		} else if r.Family == netlink.FAMILY_V6 {
			kr.Dst = netip.MustParsePrefix("::/0")
		} else {
			kr.Dst = netip.MustParsePrefix("0.0.0.0/0")
		}
		addHop := func(gw net.IP, via netlink.Destination, ifindex int) {
			if v, ok := via.(*netlink.Via); ok && gw == nil {
				gw = v.Addr
			}
			if gw != nil {
				a, _ := netip.AddrFromSlice(gw)
				kr.Gateways = append(kr.Gateways, a.Unmap())
			}
			if l, err := h.nl.LinkByIndex(ifindex); err == nil {
				kr.Devs = append(kr.Devs, l.Attrs().Name)
			}
		}
		if len(r.MultiPath) > 0 {
			for _, nh := range r.MultiPath {
				addHop(nh.Gw, nh.Via, nh.LinkIndex)
				kr.Weights = append(kr.Weights, nh.Hops+1)
			}
		} else {
			addHop(r.Gw, r.Via, r.LinkIndex)
		}
		out = append(out, kr)
	}
	return out, nil
}

// KernelRoute returns the main-table route to exactly dst, and whether there
// is one.
func (h *Host) KernelRoute(dst string) (KernelRoute, bool, error) {
	pfx, err := netip.ParsePrefix(dst)
	if err != nil {
		return KernelRoute{}, false, fmt.Errorf("route %s on %s: %w", dst, h.name, err)
	}
	rs, err := h.KernelRoutes()
	if err != nil {
		return KernelRoute{}, false, err
	}
	for _, r := range rs {
		if r.Dst == pfx.Masked() {
			return r, true, nil
		}
	}
	return KernelRoute{}, false, nil
}

// Ping sends up to three single echo requests (one second each) to addr from
// the host and returns nil at the first reply.
func (h *Host) Ping(addr string) error {
	if _, err := netip.ParseAddr(addr); err != nil {
		return fmt.Errorf("ping %q from %s: %w", addr, h.name, err)
	}
	var last error
	for i := 0; i < 3; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		_, err := h.Run(ctx, "ping", "-n", "-q", "-c", "1", "-W", "1", addr)
		cancel()
		if err == nil {
			return nil
		}
		last = err
	}
	return fmt.Errorf("ping %s from %s: no reply: %w", addr, h.name, last)
}

// Link joins two hosts with a veth pair: aIf on a, bIf on b, each with its
// addresses (CIDR strings, IPv4 or IPv6; IPv6 added without DAD), both up.
func (l *Lab) Link(a *Host, aIf string, aAddrs []string, b *Host, bIf string, bAddrs []string) error {
	if err := l.veth(a, aIf, b, bIf); err != nil {
		return err
	}
	if err := a.configure(aIf, aAddrs, ""); err != nil {
		return err
	}
	return b.configure(bIf, bAddrs, "")
}

// MustLink is Link for tests: it fails the test on error.
func (l *Lab) MustLink(a *Host, aIf string, aAddrs []string, b *Host, bIf string, bAddrs []string) {
	l.must(l.Link(a, aIf, aAddrs, b, bIf, bAddrs))
}

// Bridge creates a Linux bridge on h (no STP, no multicast snooping) with
// the given addresses, up. Plug hosts into it with LinkToBridge.
func (l *Lab) Bridge(h *Host, name string, addrs []string) error {
	off := false
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name}, MulticastSnooping: &off}
	if err := h.nl.LinkAdd(br); err != nil {
		return fmt.Errorf("create bridge %s on %s: %w", name, h.name, err)
	}
	return h.configure(name, addrs, "")
}

// MustBridge is Bridge for tests: it fails the test on error.
func (l *Lab) MustBridge(h *Host, name string, addrs []string) {
	l.must(l.Bridge(h, name, addrs))
}

// LinkToBridge plugs h into the bridge on bridgeHost (which may be h
// itself): a veth pair whose end ifName, with addrs, is on h and whose other
// end (named by the lab) is a port of the bridge. Several hosts plugged into
// one bridge share one L2 segment.
func (l *Lab) LinkToBridge(h *Host, ifName string, addrs []string, bridgeHost *Host, bridge string) error {
	port := fmt.Sprintf("lbp%d", l.nextSeq())
	if _, err := bridgeHost.nl.LinkByName(bridge); err != nil {
		return fmt.Errorf("find bridge %s on %s: %w", bridge, bridgeHost.name, err)
	}
	if err := l.veth(h, ifName, bridgeHost, port); err != nil {
		return err
	}
	if err := bridgeHost.configure(port, nil, bridge); err != nil {
		return err
	}
	return h.configure(ifName, addrs, "")
}

// MustLinkToBridge is LinkToBridge for tests: it fails the test on error.
func (l *Lab) MustLinkToBridge(h *Host, ifName string, addrs []string, bridgeHost *Host, bridge string) {
	l.must(l.LinkToBridge(h, ifName, addrs, bridgeHost, bridge))
}

func (l *Lab) veth(a *Host, aIf string, b *Host, bIf string) error {
	if len(aIf) > 15 || len(bIf) > 15 || aIf == "" || bIf == "" {
		return fmt.Errorf("veth %s/%s: interface names must have 1 to 15 characters", aIf, bIf)
	}
	v := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: aIf},
		PeerName:      bIf,
		PeerNamespace: netlink.NsFd(int(b.ns)),
	}
	if err := a.nl.LinkAdd(v); err != nil {
		return fmt.Errorf("veth %s on %s to %s on %s: %w", aIf, a.name, bIf, b.name, err)
	}
	return nil
}

// configure adds addresses to an interface, plugs it into a bridge when
// master is set, and brings it up.
func (h *Host) configure(ifName string, addrs []string, master string) error {
	link, err := h.nl.LinkByName(ifName)
	if err != nil {
		return fmt.Errorf("find %s on %s: %w", ifName, h.name, err)
	}
	if master != "" {
		m, err := h.nl.LinkByName(master)
		if err != nil {
			return fmt.Errorf("find bridge %s on %s: %w", master, h.name, err)
		}
		if err := h.nl.LinkSetMaster(link, m); err != nil {
			return fmt.Errorf("plug %s into %s on %s: %w", ifName, master, h.name, err)
		}
	}
	if err := h.addAddrs(link, addrs); err != nil {
		return err
	}
	if err := h.nl.LinkSetUp(link); err != nil {
		return fmt.Errorf("set %s up on %s: %w", ifName, h.name, err)
	}
	return nil
}
