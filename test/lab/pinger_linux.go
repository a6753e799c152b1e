package lab

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"time"
)

// Pinger sends ICMP echo requests from a host to one address at a fixed
// interval and matches the replies to the requests by sequence number, so
// a test can count exactly which requests went unanswered during a fault.
// It uses a raw ICMP socket opened inside the host's namespace (root).
type Pinger struct {
	host     *Host
	dst      netip.Addr
	interval time.Duration
	id       uint16
	conn     net.PacketConn

	mu     sync.Mutex
	sentAt []time.Time // by request index
	got    []bool
	dups   int
	errs   int // send errors (no route, ...); those requests count as lost

	stop     chan struct{}
	sendDone chan struct{}
	readDone chan struct{}
	stopOnce sync.Once
	result   PingResult
}

// PingResult is what a Pinger saw between its start and Stop.
type PingResult struct {
	Dst        netip.Addr
	Interval   time.Duration
	Sent       int // requests sent (or attempted: a send error counts as sent and lost)
	Received   int // requests answered (each counted once)
	Duplicates int // extra replies to an already answered request
	SendErrors int
	// LostSeq lists the unanswered requests by index (0 is the first
	// request), LostAt their send times, both in sending order.
	LostSeq []int
	LostAt  []time.Time
	// SentAt is the send time of every request, by index.
	SentAt []time.Time
}

// Since is the result for the requests sent at or after t only (the
// duplicates and send errors of the whole run are kept).
func (r PingResult) Since(t time.Time) PingResult {
	first := len(r.SentAt)
	for i, at := range r.SentAt {
		if !at.Before(t) {
			first = i
			break
		}
	}
	out := r
	out.SentAt = r.SentAt[first:]
	out.Sent = len(out.SentAt)
	out.LostSeq, out.LostAt = nil, nil
	for i, seq := range r.LostSeq {
		if seq >= first {
			out.LostSeq = append(out.LostSeq, seq)
			out.LostAt = append(out.LostAt, r.LostAt[i])
		}
	}
	out.Received = out.Sent - len(out.LostSeq)
	return out
}

// Lost is the number of unanswered requests.
func (r PingResult) Lost() int { return len(r.LostSeq) }

// LostBetween counts the unanswered requests sent in [from, to).
func (r PingResult) LostBetween(from, to time.Time) int {
	n := 0
	for _, at := range r.LostAt {
		if !at.Before(from) && at.Before(to) {
			n++
		}
	}
	return n
}

// LongestOutage is the longest run of consecutive unanswered requests,
// as a count and as the time from the first request of the run to one
// interval after its last.
func (r PingResult) LongestOutage() (int, time.Duration) {
	best, bestDur := 0, time.Duration(0)
	for i := 0; i < len(r.LostSeq); {
		j := i
		for j+1 < len(r.LostSeq) && r.LostSeq[j+1] == r.LostSeq[j]+1 {
			j++
		}
		if n := j - i + 1; n > best {
			best, bestDur = n, r.LostAt[j].Sub(r.LostAt[i])+r.Interval
		}
		i = j + 1
	}
	return best, bestDur
}

func (r PingResult) String() string {
	n, d := r.LongestOutage()
	return fmt.Sprintf("ping %s every %v: %d sent, %d answered, %d lost (longest outage %d requests, %v), %d duplicates, %d send errors",
		r.Dst, r.Interval, r.Sent, r.Received, r.Lost(), n, d.Round(time.Millisecond), r.Duplicates, r.SendErrors)
}

// StartPinger starts pinging dst (IPv4 or IPv6) from the host every
// interval until Stop (register Stop with t.Cleanup too: it may be called
// more than once).
func (h *Host) StartPinger(dst string, interval time.Duration) (*Pinger, error) {
	addr, err := netip.ParseAddr(dst)
	if err != nil {
		return nil, fmt.Errorf("pinger to %q from %s: %w", dst, h.name, err)
	}
	if interval <= 0 {
		return nil, fmt.Errorf("pinger to %s from %s: interval must be positive", dst, h.name)
	}
	network, laddr := "ip4:icmp", "0.0.0.0"
	if addr.Is6() {
		network, laddr = "ip6:ipv6-icmp", "::"
	}
	var conn net.PacketConn
	if err := h.Do(func() error {
		var err error
		conn, err = net.ListenPacket(network, laddr)
		return err
	}); err != nil {
		return nil, fmt.Errorf("pinger to %s from %s: open ICMP socket: %w", dst, h.name, err)
	}
	p := &Pinger{
		host: h, dst: addr, interval: interval, conn: conn,
		id:       uint16(rand.IntN(1 << 16)),
		stop:     make(chan struct{}),
		sendDone: make(chan struct{}),
		readDone: make(chan struct{}),
	}
	go p.read()
	go p.send()
	return p, nil
}

func (p *Pinger) send() {
	defer close(p.sendDone)
	to := &net.IPAddr{IP: p.dst.AsSlice()}
	payload := make([]byte, 48)
	tick := time.NewTicker(p.interval)
	defer tick.Stop()
	for {
		p.mu.Lock()
		idx := len(p.sentAt)
		p.sentAt = append(p.sentAt, time.Now())
		p.got = append(p.got, false)
		p.mu.Unlock()
		msg := echoRequest(p.dst.Is6(), p.id, uint16(idx), payload)
		if _, err := p.conn.WriteTo(msg, to); err != nil {
			p.mu.Lock()
			p.errs++
			p.mu.Unlock()
		}
		select {
		case <-p.stop:
			return
		case <-tick.C:
		}
	}
}

func (p *Pinger) read() {
	defer close(p.readDone)
	buf := make([]byte, 1500)
	replyType := byte(0)
	if p.dst.Is6() {
		replyType = 129
	}
	for {
		n, from, err := p.conn.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		// Go strips the IPv4 header of ip4 raw sockets; ICMPv6 comes bare.
		if n < 8 || buf[0] != replyType || buf[1] != 0 {
			continue
		}
		if ip, ok := from.(*net.IPAddr); !ok || !ipEqual(ip.IP, p.dst) {
			continue
		}
		if binary.BigEndian.Uint16(buf[4:6]) != p.id {
			continue
		}
		seq := binary.BigEndian.Uint16(buf[6:8])
		p.mu.Lock()
		// The newest request with this 16-bit sequence number.
		last := len(p.sentAt) - 1
		if last >= 0 {
			idx := last - int(uint16(last)-seq)
			if idx >= 0 {
				if p.got[idx] {
					p.dups++
				} else {
					p.got[idx] = true
				}
			}
		}
		p.mu.Unlock()
	}
}

func ipEqual(ip net.IP, a netip.Addr) bool {
	b, ok := netip.AddrFromSlice(ip)
	return ok && b.Unmap() == a.Unmap()
}

// Received is the number of requests answered so far.
func (p *Pinger) Received() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return countTrue(p.got)
}

// WaitReplies waits until n requests in a row, all sent after the call,
// have been answered (the path works now), at most timeout.
func (p *Pinger) WaitReplies(n int, timeout time.Duration) error {
	p.mu.Lock()
	from := len(p.sentAt)
	p.mu.Unlock()
	return Poll(timeout, 20*time.Millisecond, func() error {
		p.mu.Lock()
		defer p.mu.Unlock()
		run := 0
		for _, g := range p.got[from:] {
			if g {
				run++
				if run >= n {
					return nil
				}
			} else {
				run = 0
			}
		}
		return fmt.Errorf("ping %s from %s: no %d replies in a row yet (%d of %d requests since the wait answered)",
			p.dst, p.host.name, n, countTrue(p.got[from:]), len(p.got)-from)
	})
}

func countTrue(bs []bool) int {
	n := 0
	for _, b := range bs {
		if b {
			n++
		}
	}
	return n
}

// Stop stops sending, waits one second for late replies, closes the socket
// and returns what was seen. Calling it again returns the same result.
func (p *Pinger) Stop() PingResult {
	p.stopOnce.Do(func() {
		close(p.stop)
		<-p.sendDone
		time.Sleep(time.Second)
		_ = p.conn.Close()
		<-p.readDone
		p.mu.Lock()
		defer p.mu.Unlock()
		r := PingResult{Dst: p.dst, Interval: p.interval, Sent: len(p.sentAt), Duplicates: p.dups, SendErrors: p.errs,
			SentAt: p.sentAt}
		for i, g := range p.got {
			if g {
				r.Received++
			} else {
				r.LostSeq = append(r.LostSeq, i)
				r.LostAt = append(r.LostAt, p.sentAt[i])
			}
		}
		p.result = r
	})
	return p.result
}

// echoRequest builds an ICMP (or ICMPv6) echo request. The kernel fills
// in the ICMPv6 checksum; the ICMP one is computed here.
func echoRequest(v6 bool, id, seq uint16, payload []byte) []byte {
	b := make([]byte, 8+len(payload))
	b[0] = 8
	if v6 {
		b[0] = 128
	}
	binary.BigEndian.PutUint16(b[4:6], id)
	binary.BigEndian.PutUint16(b[6:8], seq)
	copy(b[8:], payload)
	if !v6 {
		binary.BigEndian.PutUint16(b[2:4], icmpChecksum(b))
	}
	return b
}

func icmpChecksum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}
