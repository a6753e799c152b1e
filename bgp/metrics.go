package bgp

import (
	"github.com/prometheus/client_golang/prometheus"
)

// collector reads peer state from the running speaker at scrape time, so the
// figures are never stale and a deleted peer's series disappear with it.
type collector struct {
	s          *Server
	sessionUp  *prometheus.Desc
	advertised *prometheus.Desc
	bfdUp      *prometheus.Desc
	received   *prometheus.Desc
	vips       *prometheus.Desc
}

func newCollector(s *Server) *collector {
	return &collector{
		s: s,
		sessionUp: prometheus.NewDesc("vipspeaker_bgp_session_up",
			"1 when the BGP session with the peer is Established.", []string{"peer"}, nil),
		advertised: prometheus.NewDesc("vipspeaker_bgp_advertised_prefixes",
			"Prefixes this node currently advertises to the peer.", []string{"peer"}, nil),
		received: prometheus.NewDesc("vipspeaker_bgp_received_prefixes",
			"Prefixes currently received from the peer.", []string{"peer"}, nil),
		bfdUp: prometheus.NewDesc("vipspeaker_bfd_session_up",
			"1 when the BFD session with the peer is Up (only for peers with BFD).", []string{"peer"}, nil),
		vips: prometheus.NewDesc("vipspeaker_bgp_announced_vips",
			"VIPs this node announces over BGP.", nil, nil),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.sessionUp
	ch <- c.advertised
	ch <- c.received
	ch <- c.bfdUp
	ch <- c.vips
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	b := func(v bool) float64 {
		if v {
			return 1
		}
		return 0
	}
	for _, p := range c.s.Peers() {
		peer := p.Name()
		ch <- prometheus.MustNewConstMetric(c.sessionUp, prometheus.GaugeValue, b(p.State == "established"), peer)
		ch <- prometheus.MustNewConstMetric(c.advertised, prometheus.GaugeValue, float64(p.PrefixesSent), peer)
		ch <- prometheus.MustNewConstMetric(c.received, prometheus.GaugeValue, float64(p.PrefixesReceived), peer)
		if p.BFD != "" {
			ch <- prometheus.MustNewConstMetric(c.bfdUp, prometheus.GaugeValue, b(p.BFD == "up"), peer)
		}
	}
	ch <- prometheus.MustNewConstMetric(c.vips, prometheus.GaugeValue, float64(c.s.announcedCount()))
}
