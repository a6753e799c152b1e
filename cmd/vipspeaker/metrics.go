package main

import "github.com/prometheus/client_golang/prometheus"

// agentMetrics are the agent-wide families; each part registers its own.
type agentMetrics struct {
	lastReload prometheus.Gauge
	reloadTime prometheus.Gauge
	generation prometheus.Gauge
}

func newAgentMetrics(reg prometheus.Registerer) *agentMetrics {
	m := &agentMetrics{
		lastReload: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "vipspeaker_config_last_reload_successful",
			Help: "1 when the last configuration (re)load was accepted, 0 when it was refused and the last good one stays.",
		}),
		reloadTime: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "vipspeaker_config_last_reload_success_timestamp_seconds",
			Help: "When the configuration was last accepted.",
		}),
		generation: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "vipspeaker_config_generation",
			Help: "How many configurations have been accepted since start.",
		}),
	}
	reg.MustRegister(m.lastReload, m.reloadTime, m.generation)
	return m
}

func (m *agentMetrics) reloaded(ok bool) {
	if !ok {
		m.lastReload.Set(0)
		return
	}
	m.lastReload.Set(1)
	m.reloadTime.SetToCurrentTime()
	m.generation.Inc()
}
