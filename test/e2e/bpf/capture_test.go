package bpf_test

import (
	"encoding/binary"
	"net"
	"net/netip"
	"sync"
	"testing"

	"github.com/mdlayher/packet"
	"golang.org/x/sys/unix"

	"github.com/vipspeaker/vipspeaker/test/lab"
)

// capture counts, on the client's bridge, the gratuitous announcements
// from one MAC: per IPv4 VIP the gratuitous ARP requests and replies, per
// IPv6 VIP the unsolicited advertisements to all-nodes.
type capture struct {
	conn *packet.Conn
	mac  net.HardwareAddr
	mu   sync.Mutex
	req  map[netip.Addr]int
	rep  map[netip.Addr]int
	na   map[netip.Addr]int
	done chan struct{}
}

func startCapture(t *testing.T, h *lab.Host, ifname string, mac string) *capture {
	t.Helper()
	hw, _ := net.ParseMAC(mac)
	c := &capture{mac: hw, req: map[netip.Addr]int{}, rep: map[netip.Addr]int{}, na: map[netip.Addr]int{}, done: make(chan struct{})}
	if err := h.Do(func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		c.conn, err = packet.Listen(ifi, packet.Raw, unix.ETH_P_ALL, nil)
		return err
	}); err != nil {
		t.Fatalf("capture on %s: %v", ifname, err)
	}
	if rc, err := c.conn.SyscallConn(); err == nil {
		_ = rc.Control(func(fd uintptr) {
			_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 32<<20)
		})
	}
	go c.read()
	t.Cleanup(func() { c.stop() })
	return c
}

func (c *capture) stop() {
	_ = c.conn.Close()
	<-c.done
}

func (c *capture) read() {
	defer close(c.done)
	b := make([]byte, 2048)
	for {
		n, _, err := c.conn.ReadFrom(b)
		if err != nil {
			return
		}
		f := b[:n]
		if n < 14 || net.HardwareAddr(f[6:12]).String() != c.mac.String() {
			continue
		}
		switch binary.BigEndian.Uint16(f[12:14]) {
		case unix.ETH_P_ARP:
			if n < 42 {
				continue
			}
			op := binary.BigEndian.Uint16(f[20:22])
			spa, _ := netip.AddrFromSlice(f[28:32])
			tpa, _ := netip.AddrFromSlice(f[38:42])
			if spa != tpa {
				continue
			}
			c.mu.Lock()
			if op == 1 {
				c.req[spa]++
			} else if op == 2 {
				c.rep[spa]++
			}
			c.mu.Unlock()
		case unix.ETH_P_IPV6:
			// IPv6 header 40, ICMPv6 type 136, target at 14+40+8.
			if n < 14+40+24 || f[14+6] != 58 || f[14+40] != 136 {
				continue
			}
			dst, _ := netip.AddrFromSlice(f[14+24 : 14+40])
			if dst != netip.MustParseAddr("ff02::1") {
				continue
			}
			target, _ := netip.AddrFromSlice(f[14+48 : 14+64])
			c.mu.Lock()
			c.na[target]++
			c.mu.Unlock()
		}
	}
}

func (c *capture) total() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, m := range []map[netip.Addr]int{c.req, c.rep, c.na} {
		for _, v := range m {
			n += v
		}
	}
	return n
}
