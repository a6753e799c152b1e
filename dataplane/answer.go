package dataplane

import (
	"net"
	"net/netip"
	"slices"
	"time"
)

// serve reads frames from c until the port is closed.
func (r *Responder) serve(p *port, c packetConn, on func(*port, []byte)) {
	defer r.wg.Done()
	buf := make([]byte, 4096)
	for {
		n, _, err := c.ReadFrom(buf)
		if err != nil {
			if p.ctx.Err() != nil {
				return
			}
			r.log.Warn("read from layer2 interface; will reopen", "iface", p.name, "err", err)
			p.broken.Store(true)
			return
		}
		on(p, buf[:n])
	}
}

func (r *Responder) onARP(p *port, frame []byte) {
	if c := r.corr.Load(); c != nil {
		c.learn(p, frame, true)
	}
	reply, v, vip := handleARP(frame, p.mac, p.owns)
	switch v {
	case requestOther:
		r.m.arpRequests.WithLabelValues(p.name).Inc()
	case answered:
		r.m.arpRequests.WithLabelValues(p.name).Inc()
		r.send(p, p.arp, reply, r.m.arpReplies.WithLabelValues(p.name, PathUserspace))
	case conflict:
		r.conflict(p, vip, frame)
	}
}

func (r *Responder) onNDP(p *port, frame []byte) {
	if c := r.corr.Load(); c != nil {
		c.learn(p, frame, false)
	}
	reply, v, vip := handleNDP(frame, p.mac, p.owns)
	switch v {
	case requestOther:
		r.m.ndpSolicits.WithLabelValues(p.name).Inc()
	case answered:
		r.m.ndpSolicits.WithLabelValues(p.name).Inc()
		r.send(p, p.ndp, reply, r.m.ndpAdverts.WithLabelValues(p.name, PathUserspace))
	case conflict:
		r.conflict(p, vip, frame)
	}
}

// conflict counts and (at most every conflictLogEvery per VIP) logs another
// station claiming an owned VIP.
func (r *Responder) conflict(p *port, vip netip.Addr, frame []byte) {
	r.m.conflicts.WithLabelValues(p.name).Inc()
	now := time.Now()
	p.conflictMu.Lock()
	last, seen := p.conflictSeen[vip]
	if !seen || now.Sub(last) >= conflictLogEvery {
		p.conflictSeen[vip] = now
		seen = false
	}
	p.conflictMu.Unlock()
	if !seen {
		r.log.Warn("another station claims an owned VIP", "vip", vip, "iface", p.name,
			"mac", net.HardwareAddr(frame[6:12]).String())
		if r.onConflict != nil {
			r.onConflict(vip, p.name, slices.Clone(net.HardwareAddr(frame[6:12])))
		}
	}
}
