package routing

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	vips      *prometheus.GaugeVec
	reconcile prometheus.Histogram
	repairs   *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		vips: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "vipspeaker_vips",
			Help: "VIPs on this node's VIP interface, by mode.",
		}, []string{"mode"}),
		reconcile: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "vipspeaker_reconcile_duration_seconds",
			Help:    "Time to apply a desired VIP set to the kernel.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
		}),
		repairs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vipspeaker_vip_repairs_total",
			Help: "Outside changes to the VIP interface that were undone, by what was repaired (address, link, resync).",
		}, []string{"what"}),
	}
	if reg != nil {
		reg.MustRegister(m.vips, m.reconcile, m.repairs)
	}
	return m
}
