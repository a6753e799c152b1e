package dataplane

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// A minimal nfnetlink_queue client: bind one queue, copy whole packets, read
// them with their input interface and source MAC, and accept each one. The
// protocol is small enough that a dependency is not worth it.

const (
	nfqMsgPacket  = 0
	nfqMsgVerdict = 1
	nfqMsgConfig  = 2

	nfqaPacketHdr  = 1
	nfqaVerdictHdr = 2
	nfqaIfindexIn  = 5
	nfqaHWAddr     = 9
	nfqaPayload    = 10

	nfqaCfgCmd    = 1
	nfqaCfgParams = 2
	nfqaCfgMask   = 4
	nfqaCfgFlags  = 5

	nfqCmdBind      = 1
	nfqCopyPacket   = 2
	nfqFlagFailOpen = 1

	nfAccept = 1

	nlaTypeMask = 0x3fff
)

// queuedPacket is one packet handed to userspace.
type queuedPacket struct {
	id      uint32
	ifindex int
	srcMAC  net.HardwareAddr
	payload []byte
}

// nfQueue is one bound queue.
type nfQueue struct {
	fd     int
	num    uint16
	seq    atomic.Uint32
	closed atomic.Bool
	wmu    sync.Mutex
}

// openNFQueue binds queue num in the calling thread's network namespace.
func openNFQueue(num uint16) (*nfQueue, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
	if err != nil {
		return nil, fmt.Errorf("open netfilter netlink socket: %w", err)
	}
	q := &nfQueue{fd: fd, num: num}
	fail := func(err error) (*nfQueue, error) {
		unix.Close(fd)
		return nil, err
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fail(fmt.Errorf("bind netfilter netlink socket: %w", err))
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_NO_ENOBUFS, 1)
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 4<<20)
	tv := unix.NsecToTimeval((200 * time.Millisecond).Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return fail(fmt.Errorf("set receive timeout: %w", err))
	}
	// Bind the queue, then ask for whole packets and fail-open when the
	// queue is full (traffic passes rather than being dropped).
	cmd := []byte{nfqCmdBind, 0, 0, 0}
	if err := q.request(nfqMsgConfig, true, attr(nfqaCfgCmd, cmd)); err != nil {
		return fail(fmt.Errorf("bind queue %d: %w", num, err))
	}
	params := make([]byte, 5)
	binary.BigEndian.PutUint32(params[0:4], 0xffff)
	params[4] = nfqCopyPacket
	flags := binary.BigEndian.AppendUint32(nil, nfqFlagFailOpen)
	if err := q.request(nfqMsgConfig, true, attr(nfqaCfgParams, params), attr(nfqaCfgFlags, flags), attr(nfqaCfgMask, flags)); err != nil {
		return fail(fmt.Errorf("configure queue %d: %w", num, err))
	}
	return q, nil
}

// attr encodes one netlink attribute, padded to 4 bytes.
func attr(typ uint16, val []byte) []byte {
	l := 4 + len(val)
	b := make([]byte, (l+3)&^3)
	binary.NativeEndian.PutUint16(b[0:2], uint16(l))
	binary.NativeEndian.PutUint16(b[2:4], typ)
	copy(b[4:], val)
	return b
}

// request sends one nfnetlink queue message; with ack it waits for the
// kernel's answer.
func (q *nfQueue) request(msg uint16, ack bool, attrs ...[]byte) error {
	body := []byte{unix.AF_UNSPEC, 0, 0, 0} // nfgenmsg: family, version, res_id
	binary.BigEndian.PutUint16(body[2:4], q.num)
	for _, a := range attrs {
		body = append(body, a...)
	}
	flags := uint16(unix.NLM_F_REQUEST)
	if ack {
		flags |= unix.NLM_F_ACK
	}
	seq := q.seq.Add(1)
	b := make([]byte, unix.NLMSG_HDRLEN, unix.NLMSG_HDRLEN+len(body))
	binary.NativeEndian.PutUint32(b[0:4], uint32(unix.NLMSG_HDRLEN+len(body)))
	binary.NativeEndian.PutUint16(b[4:6], unix.NFNL_SUBSYS_QUEUE<<8|msg)
	binary.NativeEndian.PutUint16(b[6:8], flags)
	binary.NativeEndian.PutUint32(b[8:12], seq)
	b = append(b, body...)
	q.wmu.Lock()
	err := unix.Sendto(q.fd, b, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
	q.wmu.Unlock()
	if err != nil || !ack {
		return err
	}
	buf := make([]byte, 8192)
	for range 16 {
		n, _, err := unix.Recvfrom(q.fd, buf, 0)
		if err != nil {
			return err
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return err
		}
		for _, m := range msgs {
			if m.Header.Type == unix.NLMSG_ERROR && m.Header.Seq == seq && len(m.Data) >= 4 {
				if e := int32(binary.NativeEndian.Uint32(m.Data[0:4])); e != 0 {
					return unix.Errno(-e)
				}
				return nil
			}
		}
	}
	return errors.New("no answer from the kernel")
}

// read returns the next queued packets; (nil, nil) after a receive timeout.
func (q *nfQueue) read(buf []byte) ([]queuedPacket, error) {
	n, _, err := unix.Recvfrom(q.fd, buf, 0)
	if err != nil {
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			return nil, nil
		}
		return nil, err
	}
	msgs, err := syscall.ParseNetlinkMessage(buf[:n])
	if err != nil {
		return nil, nil
	}
	var out []queuedPacket
	for _, m := range msgs {
		if m.Header.Type != unix.NFNL_SUBSYS_QUEUE<<8|nfqMsgPacket || len(m.Data) < 4 {
			continue
		}
		var p queuedPacket
		ok := false
		for a := m.Data[4:]; len(a) >= 4; {
			l := int(binary.NativeEndian.Uint16(a[0:2]))
			if l < 4 || l > len(a) {
				break
			}
			v := a[4:l]
			switch binary.NativeEndian.Uint16(a[2:4]) & nlaTypeMask {
			case nfqaPacketHdr:
				if len(v) >= 4 {
					p.id, ok = binary.BigEndian.Uint32(v[0:4]), true
				}
			case nfqaIfindexIn:
				if len(v) >= 4 {
					p.ifindex = int(binary.BigEndian.Uint32(v[0:4]))
				}
			case nfqaHWAddr:
				if len(v) >= 4 {
					hl := int(binary.BigEndian.Uint16(v[0:2]))
					if hl == 6 && len(v) >= 10 {
						p.srcMAC = net.HardwareAddr(append([]byte(nil), v[4:10]...))
					}
				}
			case nfqaPayload:
				p.payload = append([]byte(nil), v...)
			}
			a = a[min((l+3)&^3, len(a)):]
		}
		if ok {
			out = append(out, p)
		}
	}
	return out, nil
}

// accept lets packet id continue.
func (q *nfQueue) accept(id uint32) error {
	v := make([]byte, 8)
	binary.BigEndian.PutUint32(v[0:4], nfAccept)
	binary.BigEndian.PutUint32(v[4:8], id)
	return q.request(nfqMsgVerdict, false, attr(nfqaVerdictHdr, v))
}

// shutdown asks the reader to stop; the reader closes the socket itself
// (closing a descriptor another thread is blocked on is a race).
func (q *nfQueue) shutdown() { q.closed.Store(true) }

// closeFD closes the socket; only the reader (or the opener, before any
// reader started) calls it.
func (q *nfQueue) closeFD() { _ = unix.Close(q.fd) }
