package kube

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	poolSize    *prometheus.GaugeVec
	poolInUse   *prometheus.GaugeVec
	leader      prometheus.Gauge
	allocations *prometheus.CounterVec
	announced   prometheus.Gauge
	apply       prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		poolSize: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "vipspeaker_pool_addresses",
			Help: "Usable addresses of a pool, per family (saturated for huge IPv6 pools). Set by the allocator leader.",
		}, []string{"pool", "family"}),
		poolInUse: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "vipspeaker_pool_addresses_in_use",
			Help: "Addresses of a pool held by Services, per family. Set by the allocator leader.",
		}, []string{"pool", "family"}),
		leader: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "vipspeaker_allocator_leader",
			Help: "1 while this agent holds the allocator Lease.",
		}),
		allocations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vipspeaker_allocations_total",
			Help: "Address assignments that changed a Service (result=allocated) or failed (result=failed), and releases (result=released).",
		}, []string{"result"}),
		announced: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "vipspeaker_kube_services_announced",
			Help: "Services this node announces (BGP) or may own (layer2).",
		}),
		apply: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vipspeaker_kube_vip_sets_total",
			Help: "Desired VIP sets handed to the VIP table.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.poolSize, m.poolInUse, m.leader, m.allocations, m.announced, m.apply)
	}
	if err := registerAPIMetrics(reg); err != nil {
		panic(err) // a name clash on a fresh registry is a programming error, as MustRegister's
	}
	return m
}
