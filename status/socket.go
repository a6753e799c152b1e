package status

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"time"
)

// Serve answers `vipspeaker status` on the unix socket at sock until ctx
// ends, with a report from collect per request. The socket is mode 0660:
// root and the socket's group may read the node's status; nothing on it
// changes anything.
func Serve(ctx context.Context, sock string, collect func() Report, log *slog.Logger) error {
	l, err := listenUnix(sock, 0o660)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+path, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if err := enc.Encode(collect()); err != nil && log != nil {
			log.Debug("write status", "component", "status", "error", err)
		}
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	defer os.Remove(sock)
	select {
	case err := <-errc:
		return fmt.Errorf("serve status on %s: %w", sock, err)
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			return fmt.Errorf("stop status server on %s: %w", sock, err)
		}
		return nil
	}
}

// listenUnix listens on a unix socket at path. A socket file left by an
// agent that died is replaced; one another live agent answers on is not.
func listenUnix(path string, mode os.FileMode) (net.Listener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("status socket %s: exists and is not a socket", path)
		}
		c, err := net.DialTimeout("unix", path, time.Second)
		if err == nil {
			c.Close()
			return nil, fmt.Errorf("status socket %s: another agent answers on it (one agent per --run-dir)", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove stale status socket %s: %w", path, err)
		}
	}
	// Connecting needs write permission on the socket, which the usual
	// umask withholds from others until the chmod below.
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on status socket %s: %w", path, err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	if err := os.Chmod(path, mode); err != nil {
		l.Close()
		return nil, fmt.Errorf("chmod status socket %s: %w", path, err)
	}
	return l, nil
}

// Fetch asks the agent behind the socket for its report; it returns the
// report and the JSON as served.
func Fetch(ctx context.Context, sock string) (*Report, []byte, error) {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
		DisableKeepAlives: true,
	}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://vipspeaker"+path, nil)
	if err != nil {
		return nil, nil, err
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) {
			return nil, nil, fmt.Errorf("no agent answers on %s (is `vipspeaker run` running with this --run-dir?): %w", sock, err)
		}
		return nil, nil, fmt.Errorf("ask the agent on %s: %w", sock, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, nil, fmt.Errorf("read status from %s: %w", sock, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("agent on %s answered %s: %s", sock, resp.Status, strings.TrimSpace(string(body)))
	}
	var r Report
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, nil, fmt.Errorf("decode status from %s: %w", sock, err)
	}
	return &r, body, nil
}
