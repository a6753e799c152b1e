package lab

import (
	"bufio"
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Metrics returns the /metrics text of the agent on h (its default
// --metrics-addr, :9472).
func (h *Host) Metrics() (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := h.Run(ctx, "curl", "-s", "--max-time", "3", "http://127.0.0.1:9472/metrics")
	if err != nil {
		return "", fmt.Errorf("scrape %s: %w", h.Name(), err)
	}
	return out, nil
}

var seriesRE = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?\s+(\S+)$`)

// MetricSum adds the samples of family name in a /metrics text whose
// labels include want (nil: every sample).
func MetricSum(text, name string, want map[string]string) float64 {
	var total float64
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		m := seriesRE.FindStringSubmatch(strings.TrimSpace(sc.Text()))
		if m == nil || m[1] != name {
			continue
		}
		labels := map[string]string{}
		for _, kv := range strings.Split(m[3], ",") {
			if k, v, ok := strings.Cut(kv, "="); ok {
				labels[k] = strings.Trim(v, `"`)
			}
		}
		match := true
		for k, v := range want {
			match = match && labels[k] == v
		}
		if v, err := strconv.ParseFloat(m[4], 64); err == nil && match {
			total += v
		}
	}
	return total
}
