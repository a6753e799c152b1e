//go:build linux

package bpf

import (
	"github.com/prometheus/client_golang/prometheus"
)

// The families this package registers. The reply counters
// (vipspeaker_arp_replies_sent_total and
// vipspeaker_ndp_advertisements_sent_total with path="xdp") belong to the
// dataplane package, which reads them through FastPath.SentCounts.
var (
	descVIPPackets = prometheus.NewDesc("vipspeaker_vip_receive_packets_total",
		"IP packets addressed to the VIP received on the interfaces carrying the XDP fast path (neighbour discovery excluded).",
		[]string{"vip"}, nil)
	descVIPBytes = prometheus.NewDesc("vipspeaker_vip_receive_bytes_total",
		"Bytes of IP packets (IP header included) addressed to the VIP received on the interfaces carrying the XDP fast path.",
		[]string{"vip"}, nil)
	descPath = prometheus.NewDesc("vipspeaker_vip_receive_path",
		"1 for the path that counts vipspeaker_vip_receive_*: xdp (the fast path, on its interfaces) or nftables (prerouting, every interface but loopback).",
		[]string{"path"}, nil)
	descAttached = prometheus.NewDesc("vipspeaker_xdp_attached",
		"1 for each interface the XDP fast path is attached to, with the attach mode (native, generic, unknown).",
		[]string{"interface", "mode"}, nil)
	descOverflow = prometheus.NewDesc("vipspeaker_xdp_map_overflow",
		"Entries the XDP fast path's map had no room for at its last update: map=\"owned\", (VIP, interface) pairs answered and announced by the userspace responder instead; map=\"counted\", VIPs whose traffic is not counted.",
		[]string{"map"}, nil)
	descLease = prometheus.NewDesc("vipspeaker_xdp_lease_remaining_seconds",
		"How long the XDP fast path keeps answering ARP/NDP without the agent renewing its lease.",
		nil, nil)
)

// collector reads the maps at scrape time; the counters live in the
// kernel (per CPU) and survive agent restarts while pinned.
type collector struct{ f *FastPath }

func newCollector(f *FastPath) *collector { return &collector{f: f} }

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descVIPPackets
	ch <- descVIPBytes
	ch <- descPath
	ch <- descAttached
	ch <- descLease
	ch <- descOverflow
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	f := c.f
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return
	}
	ch <- prometheus.MustNewConstMetric(descPath, prometheus.GaugeValue, 1, "xdp")
	if t, err := f.trafficLocked(); err == nil {
		for vip, v := range t {
			ch <- prometheus.MustNewConstMetric(descVIPPackets, prometheus.CounterValue, float64(v.Packets), vip.String())
			ch <- prometheus.MustNewConstMetric(descVIPBytes, prometheus.CounterValue, float64(v.Bytes), vip.String())
		}
	} else {
		ch <- prometheus.NewInvalidMetric(descVIPPackets, err)
	}
	for name, mode := range f.interfacesLocked() {
		ch <- prometheus.MustNewConstMetric(descAttached, prometheus.GaugeValue, 1, name, mode)
	}
	for _, m := range []string{mapOwned, mapCounted} {
		ch <- prometheus.MustNewConstMetric(descOverflow, prometheus.GaugeValue, float64(f.overflow[m]), m)
	}
	if d, err := f.leaseLocked(); err == nil {
		ch <- prometheus.MustNewConstMetric(descLease, prometheus.GaugeValue, d.Seconds())
	}
}
