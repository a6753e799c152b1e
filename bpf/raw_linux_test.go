package bpf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// rawSocket is an AF_PACKET socket on the client's interface: it sees every
// frame the client receives and sends hand-made frames.
type rawSocket struct {
	fd      int
	ifindex int
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func (l *lab) openRaw(t testing.TB) *rawSocket {
	t.Helper()
	r := &rawSocket{fd: -1}
	err := l.client.Do(func() error {
		ifi, err := net.InterfaceByName(clientIf)
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return err
		}
		r.fd, r.ifindex = fd, ifi.Index
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}); err != nil {
			return err
		}
		// Room for a burst of a few thousand frames.
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 16<<20)
		tv := unix.NsecToTimeval((100 * time.Millisecond).Nanoseconds())
		return unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	})
	if err != nil {
		if r.fd >= 0 {
			unix.Close(r.fd)
		}
		t.Fatalf("packet socket on the client: %v", err)
	}
	t.Cleanup(func() { unix.Close(r.fd) })
	return r
}

func (r *rawSocket) send(t testing.TB, frame []byte) {
	t.Helper()
	if err := unix.Sendto(r.fd, frame, 0, &unix.SockaddrLinklayer{Ifindex: r.ifindex, Halen: 6}); err != nil {
		t.Fatalf("send frame: %v", err)
	}
}

// receive reads incoming frames until keep has returned true for want
// frames or the deadline passes, and returns the kept ones.
func (r *rawSocket) receive(t testing.TB, want int, timeout time.Duration, keep func([]byte) bool) [][]byte {
	t.Helper()
	var got [][]byte
	buf := make([]byte, 2048)
	deadline := time.Now().Add(timeout)
	for len(got) < want && time.Now().Before(deadline) {
		n, from, err := unix.Recvfrom(r.fd, buf, 0)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			t.Fatalf("read frame: %v", err)
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
			continue
		}
		if keep(buf[:n]) {
			got = append(got, bytes.Clone(buf[:n]))
		}
	}
	return got
}

// icmp6Sum is the ICMPv6 checksum over the pseudo-header and msg; a message
// with a correct checksum sums to 0.
func icmp6Sum(src, dst netip.Addr, msg []byte) uint16 {
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
	l[7] = 58
	add(l[:])
	add(msg)
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// nsFrame builds a neighbour solicitation from the client for target, sent
// to ipDst/ethDst, with a source link-layer option when sll.
func nsFrame(target, ipDst netip.Addr, ethDst net.HardwareAddr, sll bool) []byte {
	msg := make([]byte, 24)
	msg[0] = 135
	t16 := target.As16()
	copy(msg[8:24], t16[:])
	if sll {
		msg = append(msg, 1, 1)
		msg = append(msg, clientMAC...)
	}
	src := clientV6.Addr()
	binary.BigEndian.PutUint16(msg[2:4], icmp6Sum(src, ipDst, msg))
	f := make([]byte, 14+40, 14+40+len(msg))
	copy(f[0:6], ethDst)
	copy(f[6:12], clientMAC)
	binary.BigEndian.PutUint16(f[12:14], 0x86dd)
	ip := f[14:]
	ip[0] = 0x60
	binary.BigEndian.PutUint16(ip[4:6], uint16(len(msg)))
	ip[6], ip[7] = 58, 255
	s16, d16 := src.As16(), ipDst.As16()
	copy(ip[8:24], s16[:])
	copy(ip[24:40], d16[:])
	return append(f, msg...)
}

// parsedNA is a neighbour advertisement as seen on the wire.
type parsedNA struct {
	ethDst, ethSrc net.HardwareAddr
	src, dst       netip.Addr
	hopLimit       uint8
	flags          uint8
	target         netip.Addr
	tlla           net.HardwareAddr
	checksumOK     bool
}

func parseNA(f []byte) (parsedNA, bool) {
	if len(f) < 86 || binary.BigEndian.Uint16(f[12:14]) != 0x86dd {
		return parsedNA{}, false
	}
	ip := f[14:]
	if ip[6] != 58 || ip[40] != 136 {
		return parsedNA{}, false
	}
	plen := int(binary.BigEndian.Uint16(ip[4:6]))
	if 40+plen > len(ip) || plen < 32 {
		return parsedNA{}, false
	}
	msg := ip[40 : 40+plen]
	p := parsedNA{
		ethDst:   net.HardwareAddr(f[0:6]),
		ethSrc:   net.HardwareAddr(f[6:12]),
		src:      netip.AddrFrom16([16]byte(ip[8:24])),
		dst:      netip.AddrFrom16([16]byte(ip[24:40])),
		hopLimit: ip[7],
		flags:    msg[4],
		target:   netip.AddrFrom16([16]byte(msg[8:24])),
	}
	if msg[24] == 2 && msg[25] == 1 {
		p.tlla = net.HardwareAddr(msg[26:32])
	}
	p.checksumOK = icmp6Sum(p.src, p.dst, msg) == 0
	return p, true
}

// parsedARP is an ARP packet as seen on the wire.
type parsedARP struct {
	ethDst, ethSrc net.HardwareAddr
	op             uint16
	sha, tha       net.HardwareAddr
	spa, tpa       netip.Addr
}

func parseARP(f []byte) (parsedARP, bool) {
	if len(f) < 42 || binary.BigEndian.Uint16(f[12:14]) != 0x0806 {
		return parsedARP{}, false
	}
	a := f[14:]
	return parsedARP{
		ethDst: net.HardwareAddr(f[0:6]),
		ethSrc: net.HardwareAddr(f[6:12]),
		op:     binary.BigEndian.Uint16(a[6:8]),
		sha:    net.HardwareAddr(a[8:14]),
		spa:    netip.AddrFrom4([4]byte(a[14:18])),
		tha:    net.HardwareAddr(a[18:24]),
		tpa:    netip.AddrFrom4([4]byte(a[24:28])),
	}, true
}
