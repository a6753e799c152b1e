package l2node

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	up *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		up: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "vipspeaker_l2_interface_up",
			Help: "1 while a layer2 interface is up and this node is a candidate for its pools' VIPs there, 0 while it is down (or held down after coming back).",
		}, []string{"interface"}),
	}
	if reg != nil {
		if err := reg.Register(m.up); err != nil {
			return nil, fmt.Errorf("register layer2 link metrics: %w", err)
		}
	}
	return m, nil
}

func (m *metrics) setUp(iface string, up bool) {
	v := 0.0
	if up {
		v = 1
	}
	m.up.WithLabelValues(iface).Set(v)
}
