package main

import (
	"fmt"
	"net/http"
	"slices"
	"sync"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// readiness collects the conditions /readyz waits for.
type readiness struct {
	mu    sync.Mutex
	conds map[string]bool
}

func (r *readiness) set(name string, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.conds == nil {
		r.conds = map[string]bool{}
	}
	r.conds[name] = ok
}

// missing lists the conditions not met yet, sorted.
func (r *readiness) missing(want ...string) []string {
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

func (a *agent) httpHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{Registry: a.reg}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		want := []string{"config", "vips"}
		a.bgpMu.Lock()
		haveBGP := a.bgpConf != nil
		a.bgpMu.Unlock()
		if haveBGP {
			a.ready.set("bgp", a.bgp.Ready())
			want = append(want, "bgp")
		}
		if m := a.ready.missing(want...); len(m) > 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "not ready: %v\n", m)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	return mux
}
