package status

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Readiness collects the conditions /readyz waits for. The zero value is
// ready to use.
type Readiness struct {
	mu    sync.Mutex
	conds map[string]bool
}

// Set records whether the condition name is met.
func (r *Readiness) Set(name string, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.conds == nil {
		r.conds = map[string]bool{}
	}
	r.conds[name] = ok
}

// Missing lists the conditions of want not met yet, sorted.
func (r *Readiness) Missing(want ...string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, w := range want {
		if !r.conds[w] {
			out = append(out, w)
		}
	}
	slices.Sort(out)
	return out
}

// Handler serves /metrics from reg; /healthz, which answers 503 naming
// what unhealthy lists (the agent's loops that are wedged) while it lists
// anything; and /readyz, which answers 503 naming what notReady lists
// while it lists anything.
func Handler(reg *prometheus.Registry, unhealthy, notReady func() []string) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		if u := unhealthy(); len(u) > 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "unhealthy: %s\n", strings.Join(u, "; "))
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if m := notReady(); len(m) > 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "not ready: %v\n", m)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	return mux
}

// ServeHTTP serves h on addr until ctx ends, then shuts down within 2 s.
func ServeHTTP(ctx context.Context, addr string, h http.Handler) error {
	srv := &http.Server{Addr: addr, Handler: h, ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve metrics on %s: %w", addr, err)
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	}
}
