package status

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vipspeaker/vipspeaker/internal/heartbeat"
)

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	body, _ := io.ReadAll(rec.Result().Body)
	return rec.Code, string(body)
}

// /healthz fails, naming the loop, once a loop that beat has stopped
// beating for longer than its bound, and is ok again when it beats;
// /readyz fails naming what is not ready (not synced, not announcing)
// until everything is.
func TestHealthzAndReadyz(t *testing.T) {
	var beats heartbeat.Set
	table := beats.Add("routing", 200*time.Millisecond)
	var ready Readiness
	want := func() []string { return ready.Missing("config", "vips", "bgp") }
	h := Handler(prometheus.NewRegistry(), beats.Stale, want)

	if code, body := get(t, h, "/healthz"); code != http.StatusOK || body != "ok\n" {
		t.Errorf("/healthz before any beat: %d %q, want 200 ok", code, body)
	}
	table.Beat()
	if code, _ := get(t, h, "/healthz"); code != http.StatusOK {
		t.Errorf("/healthz right after a beat: %d, want 200", code)
	}
	// The loop stops beating (wedged): within its bound plus a margin,
	// /healthz names it.
	deadline := time.Now().Add(5 * time.Second)
	for {
		code, body := get(t, h, "/healthz")
		if code == http.StatusServiceUnavailable {
			if !strings.Contains(body, "routing (no heartbeat for") {
				t.Errorf("/healthz body %q does not name the wedged loop", body)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/healthz still %d %q 5 s after the last beat (bound 200 ms)", code, body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	table.Beat()
	if code, body := get(t, h, "/healthz"); code != http.StatusOK {
		t.Errorf("/healthz after the loop beat again: %d %q", code, body)
	}

	if code, body := get(t, h, "/readyz"); code != http.StatusServiceUnavailable || body != "not ready: [bgp config vips]\n" {
		t.Errorf("/readyz at start: %d %q", code, body)
	}
	ready.Set("config", true)
	ready.Set("vips", true)
	if code, body := get(t, h, "/readyz"); code != http.StatusServiceUnavailable || body != "not ready: [bgp]\n" {
		t.Errorf("/readyz before BGP runs: %d %q", code, body)
	}
	ready.Set("bgp", true)
	if code, body := get(t, h, "/readyz"); code != http.StatusOK || body != "ok\n" {
		t.Errorf("/readyz when synced and announcing: %d %q", code, body)
	}
	if code, body := get(t, h, "/metrics"); code != http.StatusOK {
		t.Errorf("/metrics: %d %q", code, body)
	}
}
