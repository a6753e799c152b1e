package owner

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	events *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vipspeaker_l2_member_events_total",
			Help: "Speaker membership events seen: join, left (graceful), dead (failed), update.",
		}, []string{"event"}),
	}
	if reg != nil {
		if err := reg.Register(m.events); err != nil {
			return nil, fmt.Errorf("register membership metrics: %w", err)
		}
	}
	return m, nil
}
