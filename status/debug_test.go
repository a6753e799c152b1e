package status

import (
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// The debug listener serves Go's heap profile and the profile index; the
// metrics handler does not serve profiles.
func TestDebugHandlerServesProfiles(t *testing.T) {
	h := DebugHandler()
	if code, body := get(t, h, "/debug/pprof/heap?debug=1"); code != http.StatusOK || !strings.Contains(body, "heap profile") {
		t.Errorf("/debug/pprof/heap: %d %.80q", code, body)
	}
	if code, body := get(t, h, "/debug/pprof/"); code != http.StatusOK || !strings.Contains(body, "goroutine") {
		t.Errorf("/debug/pprof/: %d %.80q", code, body)
	}
	m := Handler(prometheus.NewRegistry(), func() []string { return nil }, func() []string { return nil })
	if code, _ := get(t, m, "/debug/pprof/heap"); code != http.StatusNotFound {
		t.Errorf("the metrics handler answers /debug/pprof/heap with %d, want 404", code)
	}
}
