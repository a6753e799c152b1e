package status

import (
	"math"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Reloads is the configuration's reload history: the vipspeaker_config_*
// metrics and why the last configuration was refused. A nil *Reloads
// records nothing.
type Reloads struct {
	lastReload prometheus.Gauge
	reloadTime prometheus.Gauge
	generation prometheus.Gauge

	mu      sync.Mutex
	lastErr string
	errTime time.Time
}

// NewReloads registers the agent-wide configuration families on reg.
func NewReloads(reg prometheus.Registerer) *Reloads {
	m := &Reloads{
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

// Accepted records a configuration put in force.
func (m *Reloads) Accepted() {
	if m == nil {
		return
	}
	m.lastReload.Set(1)
	m.reloadTime.SetToCurrentTime()
	m.generation.Inc()
}

// Refused records a refused configuration and its problems; the last good
// one stays in force.
func (m *Reloads) Refused(errs ...error) {
	if m == nil {
		return
	}
	m.lastReload.Set(0)
	msgs := make([]string, 0, len(errs))
	for _, e := range errs {
		if e != nil {
			msgs = append(msgs, e.Error())
		}
	}
	if len(msgs) == 0 {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.lastErr = strings.Join(msgs, "\n")
	m.errTime = time.Now()
}

// fill writes the history into c.
func (m *Reloads) fill(c *Config) {
	if m == nil {
		return
	}
	c.Generation = uint64(gaugeValue(m.generation))
	c.LastReloadSuccessful = gaugeValue(m.lastReload) == 1
	if ts := gaugeValue(m.reloadTime); ts > 0 {
		sec, frac := math.Modf(ts)
		t := time.Unix(int64(sec), int64(frac*1e9)).UTC()
		c.LastAccepted = &t
	}
	m.mu.Lock()
	msg, at := m.lastErr, m.errTime
	m.mu.Unlock()
	if msg != "" {
		at = at.UTC()
		c.LastError, c.LastErrorTime = msg, &at
	}
}

func gaugeValue(g prometheus.Gauge) float64 {
	var m dto.Metric
	if err := g.Write(&m); err != nil {
		return 0
	}
	return m.GetGauge().GetValue()
}
