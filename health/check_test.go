package health

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestHysteresis(t *testing.T) {
	h := hysteresis{rise: 2, fall: 3}
	var got []bool
	for _, ok := range []bool{true, false, true, true, false, false, true, false, false, false, true} {
		s, _ := h.observe(ok)
		got = append(got, s)
	}
	want := []bool{false, false, false, true, true, true, true, true, true, false, false}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("step %d: passing %v, want %v (all: %v)", i, got[i], want[i], got)
		}
	}
}

// TestHTTPCheckFollowsTheServer runs the check against a real HTTP server
// whose answer the test switches.
func TestHTTPCheckFollowsTheServer(t *testing.T) {
	var ok atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !ok.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok"))
	}))
	defer srv.Close()
	reg := prometheus.NewRegistry()
	c, err := New(Options{Name: "t", URL: srv.URL + "/readyz", Interval: 10 * time.Millisecond, Rise: 2, Fall: 2, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = c.Run(ctx) }()
	wait := func(want bool) {
		t.Helper()
		deadline := time.After(5 * time.Second)
		for c.Passing() != want {
			select {
			case <-c.Changes():
			case <-deadline:
				t.Fatalf("check never became passing=%v", want)
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	time.Sleep(50 * time.Millisecond) // several failing probes: still failing
	if c.Passing() {
		t.Fatal("passing while the server answers 503")
	}
	ok.Store(true)
	wait(true)
	ok.Store(false)
	wait(false)
	if v := testutil.ToFloat64(c.m.transitions.WithLabelValues("fail")); v != 1 {
		t.Errorf("transitions to fail = %v, want 1", v)
	}
	if v := testutil.ToFloat64(c.m.up); v != 0 {
		t.Errorf("up = %v, want 0", v)
	}
}
