// Command httpecho is the backend of the real-node tests
// (test/lab/realnodes): a small HTTP server that answers every request with
// the name of its Pod, so a client sees which backend answered.
//
//	GET /        the Pod name (POD_NAME, else the hostname) and a newline
//	GET /readyz  200 while serving; 503 once SIGTERM arrived
//
// On SIGTERM it reports not ready, keeps serving for -drain (so kube-proxy
// has time to take the Pod out of the Service), then shuts down.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	addr := flag.String("addr", ":8080", "listen address")
	drain := flag.Duration("drain", 3*time.Second, "how long to keep serving after SIGTERM")
	flag.Parse()
	name := os.Getenv("POD_NAME")
	if name == "" {
		name, _ = os.Hostname()
	}
	var stopping atomic.Bool
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, name)
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if stopping.Load() {
			http.Error(w, "stopping", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	srv := &http.Server{Addr: *addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	slog.Info("httpecho serving", "addr", *addr, "name", name)
	select {
	case err := <-errc:
		slog.Error("httpecho", "err", err)
		os.Exit(1)
	case <-ctx.Done():
	}
	stopping.Store(true)
	slog.Info("httpecho draining", "for", *drain)
	time.Sleep(*drain)
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		slog.Error("httpecho shutdown", "err", err)
	}
}
