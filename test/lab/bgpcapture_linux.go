package lab

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
	"unsafe"

	"github.com/mdlayher/packet"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// BGPCapture is a BGPWire fed by packet sockets on interfaces of a host
// (the router's, facing the speakers): what it records is what crossed the
// wire, each packet stamped by the kernel when it arrived
// (SO_TIMESTAMPNS).
type BGPCapture struct {
	*BGPWire
	conns    []*packet.Conn
	wg       sync.WaitGroup
	stopOnce sync.Once
}

// tcpPort179 keeps IPv4 TCP packets from or to port 179 (the socket is a
// datagram one: offset 0 is the IP header).
var tcpPort179 = []bpf.Instruction{
	bpf.LoadAbsolute{Off: 9, Size: 1},
	bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: unix.IPPROTO_TCP, SkipTrue: 6},
	bpf.LoadMemShift{Off: 0},
	bpf.LoadIndirect{Off: 0, Size: 2},
	bpf.JumpIf{Cond: bpf.JumpEqual, Val: 179, SkipTrue: 2},
	bpf.LoadIndirect{Off: 2, Size: 2},
	bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: 179, SkipTrue: 1},
	bpf.RetConstant{Val: 1 << 16},
	bpf.RetConstant{Val: 0},
}

// StartBGPCapture captures the BGP sessions crossing ifNames (each
// packet once: name the interfaces the speakers' packets arrive on, not a
// bridge and its ports both) until Stop (register it with t.Cleanup too).
func (h *Host) StartBGPCapture(ifNames ...string) (*BGPCapture, error) {
	filter, err := bpf.Assemble(tcpPort179)
	if err != nil {
		return nil, err
	}
	c := &BGPCapture{BGPWire: NewBGPWire()}
	err = h.Do(func() error {
		for _, n := range ifNames {
			ifi, err := net.InterfaceByName(n)
			if err != nil {
				return err
			}
			conn, err := packet.Listen(ifi, packet.Datagram, unix.ETH_P_IP, &packet.Config{Filter: filter})
			if err != nil {
				return err
			}
			c.conns = append(c.conns, conn)
		}
		return nil
	})
	if err != nil {
		for _, conn := range c.conns {
			_ = conn.Close()
		}
		return nil, fmt.Errorf("bgp capture on %s %v: %w", h.name, ifNames, err)
	}
	for _, conn := range c.conns {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			readStamped(conn, 1<<16, c.Segment)
		}()
	}
	return c, nil
}

// Stop closes the sockets; what was recorded stays readable.
func (c *BGPCapture) Stop() {
	c.stopOnce.Do(func() {
		for _, conn := range c.conns {
			_ = conn.Close()
		}
		c.wg.Wait()
	})
}

// readStamped reads packets from conn until it is closed and hands each to
// fn with the time the kernel received it (SO_TIMESTAMPNS), so a reader
// scheduled late on a loaded machine does not make a packet look late.
func readStamped(conn *packet.Conn, size int, fn func(at time.Time, b []byte)) {
	rc, err := conn.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1)
	})
	b, oob := make([]byte, size), make([]byte, 128)
	for {
		var n, oobn int
		var rerr error
		if err := rc.Read(func(fd uintptr) bool {
			n, oobn, _, _, rerr = unix.Recvmsg(int(fd), b, oob, unix.MSG_DONTWAIT)
			return !errors.Is(rerr, unix.EAGAIN)
		}); err != nil || rerr != nil {
			return
		}
		at := time.Now()
		if msgs, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil {
			for _, m := range msgs {
				if m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SCM_TIMESTAMPNS && len(m.Data) >= 16 {
					ts := (*unix.Timespec)(unsafe.Pointer(&m.Data[0]))
					at = time.Unix(ts.Unix())
				}
			}
		}
		fn(at, b[:n])
	}
}
