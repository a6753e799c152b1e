package dataplane

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/mdlayher/packet"
	"golang.org/x/net/bpf"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// Classic BPF programs run in the kernel on every frame of the bound
// protocol, so userspace only wakes up for ARP requests/replies and for
// ICMPv6 neighbour solicitations/advertisements. Everything they let
// through is still checked in full by handleARP/handleNDP.
var (
	arpFilter = mustAssemble([]bpf.Instruction{
		bpf.LoadAbsolute{Off: 12, Size: 2}, // EtherType
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: etherTypeARP, SkipTrue: 4},
		bpf.LoadAbsolute{Off: ethHeaderLen + 6, Size: 2},        // ARP operation
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: 1, SkipTrue: 1},    // request
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: 2, SkipTrue: 1}, // reply
		bpf.RetConstant{Val: 0xffff},
		bpf.RetConstant{Val: 0},
	})
	ndpFilter = mustAssemble([]bpf.Instruction{
		bpf.LoadAbsolute{Off: 12, Size: 2}, // EtherType
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: etherTypeV6, SkipTrue: 6},
		bpf.LoadAbsolute{Off: ethHeaderLen + 6, Size: 1}, // next header
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: protoICMPv6, SkipTrue: 4},
		bpf.LoadAbsolute{Off: ethHeaderLen + ipv6HdrLen, Size: 1}, // ICMPv6 type
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: icmpTypeNS, SkipTrue: 1},
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: icmpTypeNA, SkipTrue: 1},
		bpf.RetConstant{Val: 0xffff},
		bpf.RetConstant{Val: 0},
	})
)

func mustAssemble(prog []bpf.Instruction) []bpf.RawInstruction {
	raw, err := bpf.Assemble(prog)
	if err != nil {
		panic(fmt.Sprintf("assemble BPF filter: %v", err))
	}
	return raw
}

// listenPort opens the two packet sockets of one interface and sets its
// sysctls, inside the responder's namespace.
func (r *Responder) listenPort(name string) (*port, error) {
	var (
		p       *port
		changes []sysctlChange
		sysErr  error
	)
	err := r.enter(func() error {
		ifi, err := net.InterfaceByName(name)
		if err != nil {
			return fmt.Errorf("find interface %s: %w", name, err)
		}
		if len(ifi.HardwareAddr) != 6 {
			return fmt.Errorf("interface %s has no Ethernet address", name)
		}
		ac, err := packet.Listen(ifi, packet.Raw, etherTypeARP, &packet.Config{Filter: arpFilter})
		if err != nil {
			return fmt.Errorf("open ARP socket on %s: %w", name, err)
		}
		nc, err := packet.Listen(ifi, packet.Raw, etherTypeV6, &packet.Config{Filter: ndpFilter})
		if err != nil {
			_ = ac.Close()
			return fmt.Errorf("open NDP socket on %s: %w", name, err)
		}
		for _, c := range []*packet.Conn{ac, nc} {
			setRcvBuf(c, rcvBuf)
		}
		mc := &mcastJoiner{ifi: ifi, raw: nc}
		if uc, err := net.ListenPacket("udp6", "[::]:0"); err == nil {
			mc.pc = ipv6.NewPacketConn(uc)
		} else {
			r.log.Warn("no IPv6 socket for multicast joins; joining at the link layer only (no MLD reports)", "iface", name, "err", err)
		}
		p = &port{
			name:  name,
			index: ifi.Index,
			mac:   ifi.HardwareAddr,
			arp:   ac,
			ndp:   nc,
			mc:    mc,
			to:    func(m net.HardwareAddr) net.Addr { return &packet.Addr{HardwareAddr: m} },
		}
		// Runs with r.mu held by the caller (syncLocked).
		r.adoptSysctlsLocked(name)
		changes, sysErr = setSysctls(name)
		return nil
	})
	if err != nil {
		return nil, err
	}
	r.recordSysctlsLocked(name, changes)
	if sysErr != nil {
		// Answering is still right; the ARP filter (arpfilter_linux.go)
		// keeps the kernel silent where /proc/sys is read-only.
		r.log.Info("cannot set arp_ignore/arp_announce (read-only /proc/sys, as in a container); the nftables ARP filter keeps the kernel from answering for layer2 VIPs", "iface", name, "err", sysErr)
	}
	return p, nil
}

// mcastJoiner joins a solicited-node group through an IPv6 socket, so the
// kernel both programs the interface's multicast filter and sends MLD
// reports (snooping switches then forward the group to us). Where IPv6 is
// off on the interface it falls back to a link-layer membership
// (PACKET_ADD_MEMBERSHIP of 33:33:ff:xx:xx:xx) on the NDP packet socket.
type mcastJoiner struct {
	ifi *net.Interface
	pc  *ipv6.PacketConn // nil: link layer only
	raw packetConn
	// linkOnly remembers the groups joined at the link layer only.
	linkOnly map[netip.Addr]bool
}

func (m *mcastJoiner) Join(g netip.Addr) error {
	if m.pc != nil {
		err := m.pc.JoinGroup(m.ifi, &net.UDPAddr{IP: g.AsSlice()})
		if err == nil {
			return nil
		}
		if errors.Is(err, unix.EADDRINUSE) {
			return nil
		}
	}
	if err := m.raw.JoinGroup(groupMAC(g)); err != nil {
		return fmt.Errorf("join %s on %s: %w", g, m.ifi.Name, err)
	}
	if m.linkOnly == nil {
		m.linkOnly = map[netip.Addr]bool{}
	}
	m.linkOnly[g] = true
	return nil
}

func (m *mcastJoiner) Leave(g netip.Addr) error {
	if m.linkOnly[g] {
		delete(m.linkOnly, g)
		return m.raw.LeaveGroup(groupMAC(g))
	}
	if m.pc == nil {
		return nil
	}
	if err := m.pc.LeaveGroup(m.ifi, &net.UDPAddr{IP: g.AsSlice()}); err != nil {
		return fmt.Errorf("leave %s on %s: %w", g, m.ifi.Name, err)
	}
	return nil
}

func (m *mcastJoiner) Close() error {
	if m.pc == nil {
		return nil
	}
	return m.pc.Close()
}

// groupMAC maps an IPv6 multicast group to its Ethernet address.
func groupMAC(g netip.Addr) net.HardwareAddr {
	b := g.As16()
	return net.HardwareAddr{0x33, 0x33, b[12], b[13], b[14], b[15]}
}

// rcvBuf is the receive buffer asked for each packet socket: a burst of
// requests (a switch reboot, a flood) queues instead of being dropped.
const rcvBuf = 4 << 20

// setRcvBuf raises the socket's receive buffer (SO_RCVBUFFORCE as root,
// else SO_RCVBUF capped by net.core.rmem_max); failure is harmless.
func setRcvBuf(c *packet.Conn, n int) {
	rc, err := c.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, n) != nil {
			_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, n)
		}
	})
}
