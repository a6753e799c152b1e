package dataplane

import (
	"net"
	"net/netip"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// announce sends count rounds of announcements for vips on p, skipping a
// VIP as soon as it is no longer owned.
func (r *Responder) announce(p *port, vips []netip.Addr) {
	defer r.wg.Done()
	for i := 0; i < r.count; i++ {
		if i > 0 {
			t := time.NewTimer(r.every)
			select {
			case <-p.ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		round := make([]netip.Addr, 0, len(vips))
		for _, v := range vips {
			if p.owns(v) {
				round = append(round, v)
			}
		}
		if r.announcer != nil && len(round) > 0 && p.ctx.Err() == nil {
			round = r.announceFast(p, round)
		}
		ok := r.m.gratuitous.WithLabelValues(p.name, PathUserspace)
		for _, v := range round {
			if p.ctx.Err() != nil {
				return
			}
			if !p.owns(v) {
				continue
			}
			if v.Is4() {
				for _, f := range gratuitousARP(p.mac, v) {
					r.send(p, p.arp, f, ok)
				}
				continue
			}
			f, err := unsolicitedNA(p.mac, v)
			if err != nil {
				r.log.Error("build unsolicited NA", "vip", v, "err", err)
				continue
			}
			r.send(p, p.ndp, f, ok)
		}
	}
}

// announceFast hands one round to the Announcer and returns what is left
// for the packet socket: the VIPs it did not announce, or all of them when
// it failed (logged once per distinct error).
func (r *Responder) announceFast(p *port, vips []netip.Addr) []netip.Addr {
	n, missed, err := r.announcer.AnnounceOwned(p.name, vips)
	r.mu.Lock()
	logErr := err != nil && err.Error() != r.announceErr
	if err != nil {
		r.announceErr = err.Error()
	} else {
		r.announceErr = ""
	}
	r.mu.Unlock()
	if err != nil {
		if logErr {
			r.log.Warn("fast-path announcements failed; sending them through the packet socket", "iface", p.name, "err", err)
		}
		return vips
	}
	if len(missed) > 0 {
		r.log.Debug("fast path did not announce some owned VIPs; sending them through the packet socket", "iface", p.name, "count", len(missed))
	}
	r.log.Debug("gratuitous round sent through the fast path", "iface", p.name, "frames", n, "vips", len(vips)-len(missed))
	return missed
}

func (r *Responder) send(p *port, c packetConn, frame []byte, ok prometheus.Counter) {
	if _, err := c.WriteTo(frame, p.to(net.HardwareAddr(frame[0:6]))); err != nil {
		r.m.sendErrors.WithLabelValues(p.name).Inc()
		if p.ctx.Err() == nil {
			r.log.Warn("send frame", "iface", p.name, "err", err)
		}
		return
	}
	ok.Inc()
}
