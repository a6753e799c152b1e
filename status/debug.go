package status

import (
	"net/http"
	"net/http/pprof"
)

// DebugHandler serves Go's profiles under /debug/pprof/ (heap, allocs,
// profile for CPU, goroutine, ...), for `go tool pprof`. The agent serves
// it only on --debug-addr, off by default: a profile shows the process's
// memory and is not for the metrics port every scraper reaches.
func DebugHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}
