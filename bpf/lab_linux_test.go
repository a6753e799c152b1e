package bpf

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/vipspeaker/vipspeaker/internal/nstest"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Lab addresses (LAB.md): a /24 link between node and client, VIPs from
// 203.0.113.0/24 and 2001:db8:100::/64.
var (
	nodeMAC   = net.HardwareAddr{0x02, 0x00, 0x5e, 0x10, 0x00, 0x01}
	clientMAC = net.HardwareAddr{0x02, 0x00, 0x5e, 0x10, 0x00, 0x02}
	nodeV4    = netip.MustParsePrefix("198.18.0.1/24")
	clientV4  = netip.MustParsePrefix("198.18.0.2/24")
	nodeV6    = netip.MustParsePrefix("2001:db8:1::1/64")
	clientV6  = netip.MustParsePrefix("2001:db8:1::2/64")
	vip4      = netip.MustParseAddr("203.0.113.10")
	other4    = netip.MustParseAddr("203.0.113.11")
	vip6      = netip.MustParseAddr("2001:db8:100::10")
	other6    = netip.MustParseAddr("2001:db8:100::11")
)

const (
	nodeIf   = "l2"
	clientIf = "cl"
)

// lab is a node namespace (the agent's, interface l2) and a client
// namespace (interface cl) joined by a veth pair. The VIPs live on the
// node's loopback (as on kube-lb0), with arp_ignore=1 so the kernel never
// answers ARP for them on l2: every answer the client gets comes from XDP.
type lab struct {
	node, client *nstest.NS
	pinDir       string
}

func requireTools(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			nstest.Skip(t, "needs %s: %v", tool, err)
		}
	}
}

// mountBPFFS mounts a private bpf filesystem for the test's pins, so
// "nothing left pinned" can be checked without looking at anyone else's.
func mountBPFFS(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	if err := unix.Mount("bpf", dir, "bpf", 0, ""); err != nil {
		nstest.Skip(t, "mount bpffs: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Logf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

func newLab(t testing.TB) *lab {
	t.Helper()
	requireTools(t, "ip")
	l := &lab{node: nstest.New(t), client: nstest.New(t)}
	l.pinDir = filepath.Join(mountBPFFS(t), "vipspeaker")
	nh, err := netlink.NewHandleAt(l.node.Handle)
	if err != nil {
		t.Fatalf("netlink handle in node namespace: %v", err)
	}
	defer nh.Close()
	ch, err := netlink.NewHandleAt(l.client.Handle)
	if err != nil {
		t.Fatalf("netlink handle in client namespace: %v", err)
	}
	defer ch.Close()
	veth := &netlink.Veth{
		LinkAttrs:        netlink.LinkAttrs{Name: nodeIf, HardwareAddr: nodeMAC},
		PeerName:         clientIf,
		PeerHardwareAddr: clientMAC,
		PeerNamespace:    netlink.NsFd(int(l.client.Handle)),
	}
	if err := nh.LinkAdd(veth); err != nil {
		t.Fatalf("add veth pair: %v", err)
	}
	setup := func(h *netlink.Handle, name string, addrs ...netip.Prefix) {
		lk, err := h.LinkByName(name)
		if err != nil {
			t.Fatalf("find %s: %v", name, err)
		}
		for _, p := range addrs {
			a := &netlink.Addr{IPNet: prefixNet(p), Flags: unix.IFA_F_NODAD}
			if err := h.AddrAdd(lk, a); err != nil {
				t.Fatalf("add %s to %s: %v", p, name, err)
			}
		}
		if err := h.LinkSetUp(lk); err != nil {
			t.Fatalf("set %s up: %v", name, err)
		}
	}
	setup(nh, nodeIf, nodeV4, nodeV6)
	setup(ch, clientIf, clientV4, clientV6)
	lo, err := nh.LinkByName("lo")
	if err != nil {
		t.Fatalf("node lo: %v", err)
	}
	for _, v := range []netip.Addr{vip4, vip6} {
		if err := nh.AddrAdd(lo, &netlink.Addr{IPNet: prefixNet(netip.PrefixFrom(v, v.BitLen())), Flags: unix.IFA_F_NODAD}); err != nil {
			t.Fatalf("add %s to node lo: %v", v, err)
		}
	}
	cl, err := ch.LinkByName(clientIf)
	if err != nil {
		t.Fatalf("client %s: %v", clientIf, err)
	}
	// The VIP ranges are on-link for the client, so it resolves the VIPs
	// themselves with ARP/NDP, as a router on the segment would.
	for _, p := range []string{"203.0.113.0/24", "2001:db8:100::/64"} {
		dst := prefixNet(netip.MustParsePrefix(p))
		if err := ch.RouteAdd(&netlink.Route{LinkIndex: cl.Attrs().Index, Dst: dst, Scope: netlink.SCOPE_LINK}); err != nil {
			t.Fatalf("client route %s: %v", p, err)
		}
	}
	if err := l.node.Do(func() error {
		for _, f := range []string{"all", nodeIf} {
			if err := os.WriteFile("/proc/sys/net/ipv4/conf/"+f+"/arp_ignore", []byte("1"), 0o644); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatalf("arp_ignore in node namespace: %v", err)
	}
	return l
}

func prefixNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// load loads the fast path on the node's l2 and closes it at the end of the
// test unless the test removed it.
func (l *lab) load(t testing.TB, mode AttachMode, reg prometheus.Registerer) *FastPath {
	t.Helper()
	f, err := Load(Options{Interfaces: []string{nodeIf}, Attach: mode, PinDir: l.pinDir, Enter: l.node.Do, Registerer: reg})
	if errors.Is(err, ErrNotSupported) {
		nstest.Skip(t, "XDP fast path not supported here: %v", err)
	}
	if err != nil {
		t.Fatalf("load fast path: %v", err)
	}
	t.Cleanup(func() { _ = f.Close() })
	return f
}

// giveClientNAPI attaches an XDP_PASS program in native mode to the
// client's veth end. A veth delivers frames sent by XDP on its peer
// (XDP_TX in native mode, and every live-frames XDP_TX) only into a receive
// queue with NAPI, which a native XDP program (or GRO) turns on; a physical
// NIC has no such requirement.
func (l *lab) giveClientNAPI(t testing.TB) {
	t.Helper()
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:         ebpf.XDP,
		License:      "MIT",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 2), asm.Return()}, // XDP_PASS
	})
	if Unsupported(err) {
		nstest.Skip(t, "load XDP_PASS program: %v", err)
	}
	if err != nil {
		t.Fatalf("load XDP_PASS program: %v", err)
	}
	t.Cleanup(func() { prog.Close() })
	var lk link.Link
	if err := l.client.Do(func() error {
		ifi, err := net.InterfaceByName(clientIf)
		if err != nil {
			return err
		}
		lk, err = link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifi.Index, Flags: link.XDPDriverMode})
		return err
	}); err != nil {
		t.Fatalf("attach XDP_PASS to the client's veth: %v", err)
	}
	t.Cleanup(func() { lk.Close() })
}

// inClient runs a command in the client namespace with a deadline.
func (l *lab) inClient(t testing.TB, timeout time.Duration, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", l.client.Name}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// arping sends count ARP requests for vip from the client and returns the
// MACs of the replies (one per reply).
func (l *lab) arping(t testing.TB, vip netip.Addr, count int) []string {
	t.Helper()
	out, _ := l.inClient(t, 10*time.Second, "arping", "-i", clientIf, "-c", strconv.Itoa(count), "-W", "0.1", "-r", vip.String())
	return macLines(out)
}

// ndisc resolves vip from the client with multicast neighbour
// solicitations and returns the MAC of the first advertisement ("" when
// none came).
func (l *lab) ndisc(t testing.TB, vip netip.Addr) string {
	t.Helper()
	out, _ := l.inClient(t, 10*time.Second, "ndisc6", "-1", "-q", "-r", "2", "-w", "300", vip.String(), clientIf)
	m := macLines(out)
	if len(m) == 0 {
		return ""
	}
	return m[0]
}

func macLines(out string) []string {
	var macs []string
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		if hw, err := net.ParseMAC(line); err == nil && len(hw) == 6 {
			macs = append(macs, strings.ToLower(hw.String()))
		}
	}
	return macs
}

// clientNeighbour returns the client's neighbour entry MAC for a ("" when
// none is usable).
func (l *lab) clientNeighbour(t testing.TB, a netip.Addr) string {
	t.Helper()
	h, err := netlink.NewHandleAt(l.client.Handle)
	if err != nil {
		t.Fatalf("netlink handle: %v", err)
	}
	defer h.Close()
	fam := netlink.FAMILY_V4
	if a.Is6() {
		fam = netlink.FAMILY_V6
	}
	ns, err := h.NeighList(0, fam)
	if err != nil {
		t.Fatalf("list client neighbours: %v", err)
	}
	for _, n := range ns {
		ip, _ := netip.AddrFromSlice(n.IP)
		if ip.Unmap() == a && n.State&(netlink.NUD_REACHABLE|netlink.NUD_STALE|netlink.NUD_DELAY|netlink.NUD_PROBE|netlink.NUD_PERMANENT) != 0 {
			return strings.ToLower(n.HardwareAddr.String())
		}
	}
	return ""
}

// xdpAttached reports whether any XDP program is attached to the node's l2.
func (l *lab) xdpAttached(t testing.TB) bool {
	t.Helper()
	h, err := netlink.NewHandleAt(l.node.Handle)
	if err != nil {
		t.Fatalf("netlink handle: %v", err)
	}
	defer h.Close()
	lk, err := h.LinkByName(nodeIf)
	if err != nil {
		t.Fatalf("find %s: %v", nodeIf, err)
	}
	return lk.Attrs().Xdp != nil && lk.Attrs().Xdp.Attached
}
