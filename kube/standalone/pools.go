package standalone

import (
	"net/netip"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vipspeaker/vipspeaker/config"
	"github.com/vipspeaker/vipspeaker/routing"
)

// PoolMetrics exports vipspeaker_pool_addresses and
// vipspeaker_pool_addresses_in_use{pool,family} in standalone mode, where
// no allocator runs: a pool's addresses are those of its [[pools]] entry
// (config.Pool.Size), and an address is in use when a Service manifest
// holds it (each address counted once, however many Services share it).
// The values are computed when Prometheus scrapes, from the pools and VIPs
// last set.
type PoolMetrics struct {
	size, inUse *prometheus.Desc

	mu    sync.Mutex
	pools []config.Pool
	vips  map[netip.Addr]bool
}

// NewPoolMetrics registers the pool gauges on reg.
func NewPoolMetrics(reg prometheus.Registerer) (*PoolMetrics, error) {
	m := &PoolMetrics{
		size: prometheus.NewDesc("vipspeaker_pool_addresses",
			"Addresses of a pool, per family (saturated for huge IPv6 pools).", []string{"pool", "family"}, nil),
		inUse: prometheus.NewDesc("vipspeaker_pool_addresses_in_use",
			"Addresses of a pool held by Services, per family.", []string{"pool", "family"}, nil),
	}
	if err := reg.Register(m); err != nil {
		return nil, err
	}
	return m, nil
}

// SetPools replaces the pools (the config in force).
func (m *PoolMetrics) SetPools(pools []config.Pool) {
	m.mu.Lock()
	m.pools = pools
	m.mu.Unlock()
}

// SetVIPs replaces the addresses the Service manifests hold.
func (m *PoolMetrics) SetVIPs(vips []routing.VIP) {
	in := make(map[netip.Addr]bool, len(vips))
	for _, v := range vips {
		in[v.Addr] = true
	}
	m.mu.Lock()
	m.vips = in
	m.mu.Unlock()
}

// Describe implements prometheus.Collector.
func (m *PoolMetrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.size
	ch <- m.inUse
}

// Collect implements prometheus.Collector.
func (m *PoolMetrics) Collect(ch chan<- prometheus.Metric) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := range m.pools {
		p := &m.pools[i]
		v4, v6 := p.Size()
		var u4, u6 int
		for a := range m.vips {
			switch {
			case !p.Contains(a):
			case a.Is4():
				u4++
			default:
				u6++
			}
		}
		ch <- prometheus.MustNewConstMetric(m.size, prometheus.GaugeValue, float64(v4), p.Name, "ipv4")
		ch <- prometheus.MustNewConstMetric(m.size, prometheus.GaugeValue, float64(v6), p.Name, "ipv6")
		ch <- prometheus.MustNewConstMetric(m.inUse, prometheus.GaugeValue, float64(u4), p.Name, "ipv4")
		ch <- prometheus.MustNewConstMetric(m.inUse, prometheus.GaugeValue, float64(u6), p.Name, "ipv6")
	}
}
