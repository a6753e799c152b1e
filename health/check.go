package health

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vipspeaker/vipspeaker/config"
)

// Options configure a Checker. URL or TCP is required (not both).
type Options struct {
	// Name labels the metrics and logs ("control-plane").
	Name string
	// URL is GET every Interval; a 2xx answer is a success.
	URL string
	// TCP is host:port; an accepted connection is a success.
	TCP string
	// CAFile verifies an https URL's server (PEM); CertFile and KeyFile are
	// the client certificate, when the server asks for one.
	CAFile, CertFile, KeyFile string
	// ServerName, when set, is the name the server's certificate must
	// carry (and the SNI sent), for a URL that names the server by an
	// address its certificate lacks (127.0.0.1; kubeadm's certificate
	// names "kubernetes").
	ServerName string
	// Interval between checks (default 100ms); Timeout of one check
	// (default 500ms).
	Interval, Timeout time.Duration
	// Rise consecutive successes make the check pass, Fall consecutive
	// failures make it fail (default 3 each).
	Rise, Fall int
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// Checker runs one health check. New builds it; Run runs it.
type Checker struct {
	o      Options
	log    *slog.Logger
	client *http.Client
	m      *metrics
	change chan struct{}

	mu      sync.Mutex
	passing bool
}

// New validates o and reads the certificate files; it probes nothing.
func New(o Options) (*Checker, error) {
	if (o.URL == "") == (o.TCP == "") {
		return nil, errors.New("health check: one of url and tcp is required")
	}
	if o.Interval <= 0 {
		o.Interval = 100 * time.Millisecond
	}
	if o.Timeout <= 0 {
		o.Timeout = 500 * time.Millisecond
	}
	if o.Rise <= 0 {
		o.Rise = 3
	}
	if o.Fall <= 0 {
		o.Fall = 3
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	c := &Checker{o: o, log: o.Logger.With("component", "health-check", "check", o.Name), change: make(chan struct{}, 1)}
	if o.URL != "" {
		tc, err := tlsConfig(o)
		if err != nil {
			return nil, err
		}
		c.client = &http.Client{
			Timeout: o.Timeout,
			Transport: &http.Transport{
				TLSClientConfig:     tc,
				DialContext:         (&net.Dialer{Timeout: o.Timeout}).DialContext,
				MaxIdleConnsPerHost: 1,
				IdleConnTimeout:     10 * time.Second,
				Proxy:               nil, // never through a proxy: the check is about this node
			},
		}
	}
	var err error
	if c.m, err = newMetrics(o.Registerer, o.Name); err != nil {
		return nil, err
	}
	return c, nil
}

func tlsConfig(o Options) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: o.ServerName}
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("health check ca-file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("health check ca-file %s: no PEM certificate in it", o.CAFile)
		}
		tc.RootCAs = pool
	}
	if o.CertFile != "" || o.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("health check client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// Passing reports the check's state after hysteresis (false until Rise
// successes in a row).
func (c *Checker) Passing() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.passing
}

// Changes receives a value (coalesced) when Passing changes.
func (c *Checker) Changes() <-chan struct{} { return c.change }

// Run checks every Interval until ctx ends.
func (c *Checker) Run(ctx context.Context) error {
	t := time.NewTicker(c.o.Interval)
	defer t.Stop()
	h := hysteresis{rise: c.o.Rise, fall: c.o.Fall}
	lastErr := ""
	for {
		err := c.probe(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil && err.Error() != lastErr {
			c.log.Debug("health check failed", "error", err)
		}
		lastErr = ""
		if err != nil {
			lastErr = err.Error()
		}
		if now, changed := h.observe(err == nil); changed {
			c.set(now, err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (c *Checker) set(passing bool, err error) {
	c.mu.Lock()
	c.passing = passing
	c.mu.Unlock()
	c.m.set(passing)
	if passing {
		c.log.Info("health check passes", "rise", c.o.Rise)
	} else {
		c.log.Warn("health check fails", "fall", c.o.Fall, "error", err)
	}
	select {
	case c.change <- struct{}{}:
	default:
	}
}

// probe runs one check.
func (c *Checker) probe(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.o.Timeout)
	defer cancel()
	if c.client == nil {
		conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", c.o.TCP)
		if err != nil {
			return err
		}
		return conn.Close()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.o.URL, nil)
	if err != nil {
		return err
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("%s: %s", c.o.URL, resp.Status)
	}
	return nil
}

// hysteresis turns single results into a state: fall failures in a row
// make it fail, rise successes in a row make it pass. It starts failing.
type hysteresis struct {
	rise, fall int
	passing    bool
	run        int // consecutive results against the state
}

// observe takes one result and returns the state and whether it changed.
func (h *hysteresis) observe(ok bool) (bool, bool) {
	if ok == h.passing {
		h.run = 0
		return h.passing, false
	}
	h.run++
	need := h.rise
	if h.passing {
		need = h.fall
	}
	if h.run < need {
		return h.passing, false
	}
	h.passing, h.run = ok, 0
	return h.passing, true
}

// Follow runs the check until ctx ends and calls fn with the state at
// start and after every change (never concurrently).
func (c *Checker) Follow(ctx context.Context, fn func(passing bool)) error {
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	fn(c.Passing())
	for {
		select {
		case err := <-done:
			return err
		case <-c.change:
			fn(c.Passing())
		}
	}
}

// ForControlPlane builds the check of a [control-plane] section (nil
// without one), which needs standalone mode: the VIP must not depend on
// the API server it fronts.
func ForControlPlane(cp *config.ControlPlane, standalone bool, log *slog.Logger, reg prometheus.Registerer) (*Checker, error) {
	if cp == nil {
		return nil, nil
	}
	if !standalone {
		return nil, errors.New("[control-plane] needs standalone mode (no --kubeconfig): the control-plane VIP must not depend on the API server it fronts")
	}
	hc := cp.Check
	return New(Options{Name: config.ControlPlanePool, URL: hc.URL, TCP: hc.TCP,
		CAFile: hc.CAFile, ServerName: hc.ServerName, CertFile: hc.CertFile, KeyFile: hc.KeyFile,
		Interval: hc.Interval, Timeout: hc.Timeout, Rise: hc.Rise, Fall: hc.Fall, Logger: log, Registerer: reg})
}
