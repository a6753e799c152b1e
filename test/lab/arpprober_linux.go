package lab

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/mdlayher/packet"
	"golang.org/x/sys/unix"
)

// ARPProber sends a broadcast ARP request for one IPv4 address from a
// host's interface at a fixed interval and records every reply with its
// time and the MAC that sent it, so a test can see who answered when (an
// L2 failover, a restart gap). It reads and writes through a packet socket
// in the host's namespace (root); the host's own ARP cache is not touched.
type ARPProber struct {
	conn     *packet.Conn
	req      []byte
	src      netip.Addr
	target   netip.Addr
	every    time.Duration
	mu       sync.Mutex
	sent     int
	lastSent time.Time
	sentAt   []time.Time
	replies  []ARPReply

	stop     chan struct{}
	stopOnce sync.Once
	sendDone chan struct{}
	readDone chan struct{}
}

// ARPReply is one answer the prober saw.
type ARPReply struct {
	At  time.Time
	MAC string // sender hardware address, lower case
}

// StartARPProber asks for target from ifName (source address src) every
// interval until Stop (safe to call more than once; register it with
// t.Cleanup too).
func (h *Host) StartARPProber(ifName string, src, target netip.Addr, interval time.Duration) (*ARPProber, error) {
	if !src.Is4() || !target.Is4() || interval <= 0 {
		return nil, fmt.Errorf("arp prober on %s/%s: want IPv4 addresses and a positive interval (got %s, %s, %v)", h.name, ifName, src, target, interval)
	}
	p := &ARPProber{src: src, target: target, every: interval,
		stop: make(chan struct{}), sendDone: make(chan struct{}), readDone: make(chan struct{})}
	var mac net.HardwareAddr
	if err := h.Do(func() error {
		ifi, err := net.InterfaceByName(ifName)
		if err != nil {
			return err
		}
		mac = ifi.HardwareAddr
		p.conn, err = packet.Listen(ifi, packet.Raw, unix.ETH_P_ARP, nil)
		return err
	}); err != nil {
		return nil, fmt.Errorf("arp prober on %s/%s: %w", h.name, ifName, err)
	}
	f := make([]byte, 60) // padded to the Ethernet minimum
	copy(f[0:6], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	copy(f[6:12], mac)
	binary.BigEndian.PutUint16(f[12:14], unix.ETH_P_ARP)
	binary.BigEndian.PutUint16(f[14:16], 1) // Ethernet
	binary.BigEndian.PutUint16(f[16:18], unix.ETH_P_IP)
	f[18], f[19] = 6, 4
	binary.BigEndian.PutUint16(f[20:22], 1) // request
	copy(f[22:28], mac)
	s4, t4 := src.As4(), target.As4()
	copy(f[28:32], s4[:])
	copy(f[38:42], t4[:])
	p.req = f
	go p.read()
	go p.send()
	return p, nil
}

func (p *ARPProber) send() {
	defer close(p.sendDone)
	t := time.NewTicker(p.every)
	defer t.Stop()
	dst := &packet.Addr{HardwareAddr: net.HardwareAddr(p.req[0:6])}
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
		}
		// Taken before the write: a reply can never look older than its
		// request.
		at := time.Now()
		if _, err := p.conn.WriteTo(p.req, dst); err == nil {
			p.mu.Lock()
			p.sent++
			p.lastSent = at
			p.sentAt = append(p.sentAt, at)
			p.mu.Unlock()
		}
	}
}

// read records the replies, each with the time the kernel received it.
func (p *ARPProber) read() {
	defer close(p.readDone)
	readStamped(p.conn, 1500, func(at time.Time, b []byte) {
		if len(b) < 42 || binary.BigEndian.Uint16(b[20:22]) != 2 {
			return
		}
		spa, _ := netip.AddrFromSlice(b[28:32])
		tpa, _ := netip.AddrFromSlice(b[38:42])
		if spa != p.target || tpa != p.src {
			return
		}
		r := ARPReply{At: at, MAC: net.HardwareAddr(b[22:28]).String()}
		p.mu.Lock()
		p.replies = append(p.replies, r)
		p.mu.Unlock()
	})
}

// Replies returns the replies seen so far, in order.
func (p *ARPProber) Replies() []ARPReply {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]ARPReply(nil), p.replies...)
}

// Sent is the number of requests sent so far.
func (p *ARPProber) Sent() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.sent
}

// LastSent is when the last request went out.
func (p *ARPProber) LastSent() time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lastSent
}

// Unanswered looks at the requests sent in [from, to]: a request is
// unanswered when no reply came before the next request went out. A reply
// can come just after the next request under load, so only runs of two or
// more unanswered requests count as an outage. It returns how many
// requests those runs hold and the longest outage: from the first request
// of a run to the next reply (or to the last request when none came). A
// pause of the prober itself is no outage.
func (p *ARPProber) Unanswered(from, to time.Time) (int, time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	n, longest := 0, time.Duration(0)
	run, start := 0, time.Time{} // the current run of unanswered requests
	end := func(at time.Time) {
		if run >= 2 {
			n += run
			longest = max(longest, at.Sub(start))
		}
		run = 0
	}
	ri := 0
	for i, s := range p.sentAt {
		for ri < len(p.replies) && p.replies[ri].At.Before(s) {
			ri++
		}
		if s.Before(from) || s.After(to) {
			continue
		}
		next := time.Now()
		if i+1 < len(p.sentAt) {
			next = p.sentAt[i+1]
		}
		if ri < len(p.replies) && p.replies[ri].At.Before(next) {
			end(p.replies[ri].At)
			continue
		}
		if run == 0 {
			start = s
		}
		run++
	}
	end(p.lastSent)
	return n, longest
}

// FirstFrom returns the first reply at or after t whose MAC is not
// excluded, and whether there is one.
func (p *ARPProber) FirstFrom(t time.Time, exclude ...string) (ARPReply, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
next:
	for _, r := range p.replies {
		if r.At.Before(t) {
			continue
		}
		for _, x := range exclude {
			if r.MAC == x {
				continue next
			}
		}
		return r, true
	}
	return ARPReply{}, false
}

// Stop stops sending, waits grace for late replies and closes the socket.
func (p *ARPProber) Stop(grace time.Duration) {
	p.stopOnce.Do(func() {
		close(p.stop)
		<-p.sendDone
		time.Sleep(grace)
		_ = p.conn.Close()
		<-p.readDone
	})
}
