package health

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	up          prometheus.Gauge
	transitions *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, name string) (*metrics, error) {
	up := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "vipspeaker_health_check_up",
		Help: "1 while the local health check passes (after rise successes in a row), 0 while it fails (after fall failures in a row, and from start until it first passes).",
	}, []string{"check"})
	tr := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "vipspeaker_health_check_transitions_total",
		Help: "Changes of the local health check's state, by the state it changed to (pass or fail).",
	}, []string{"check", "to"})
	if reg != nil {
		for _, c := range []prometheus.Collector{up, tr} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("register health check metrics: %w", err)
			}
		}
	}
	m := &metrics{up: up.WithLabelValues(name), transitions: tr}
	m.up.Set(0)
	tr.WithLabelValues(name, "pass")
	tr.WithLabelValues(name, "fail")
	m.transitions = tr.MustCurryWith(prometheus.Labels{"check": name})
	return m, nil
}

func (m *metrics) set(passing bool) {
	to := "fail"
	if passing {
		m.up.Set(1)
		to = "pass"
	} else {
		m.up.Set(0)
	}
	m.transitions.WithLabelValues(to).Inc()
}
