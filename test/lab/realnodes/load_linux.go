package realnodes

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/vipspeaker/vipspeaker/test/lab"
)

// Load is a client sending a steady, bounded stream of HTTP GETs from a lab
// host, each on a new connection (so every request takes the path the
// network offers at that moment), and counting what came back.
type Load struct {
	host    *lab.Host
	url     string
	rate    int
	timeout time.Duration

	cancel context.CancelFunc
	done   chan struct{}

	mu       sync.Mutex
	sent     int
	ok       int
	failed   int
	lastOK   time.Time
	started  time.Time
	gap      time.Duration // longest time between two successful answers
	firstErr string
	lastErr  string
	backends map[string]int
}

// LoadResult is what a Load saw.
type LoadResult struct {
	Sent, OK, Failed int
	// LongestGap is the longest time between two successful answers (or
	// from the start to the first one).
	LongestGap time.Duration
	// Backends counts answers per Pod name.
	Backends          map[string]int
	FirstErr, LastErr string
}

func (r LoadResult) String() string {
	return fmt.Sprintf("%d requests, %d ok, %d failed, longest gap %v, backends %v", r.Sent, r.OK, r.Failed, r.LongestGap.Round(time.Millisecond), r.Backends)
}

// StartLoad sends rate GET requests per second to url from host, each with
// timeout, until Stop.
func StartLoad(host *lab.Host, url string, rate int, timeout time.Duration) *Load {
	ctx, cancel := context.WithCancel(context.Background())
	l := &Load{host: host, url: url, rate: rate, timeout: timeout, cancel: cancel, done: make(chan struct{}), backends: map[string]int{}}
	l.started = time.Now()
	l.lastOK = l.started
	go l.run(ctx)
	return l
}

func (l *Load) run(ctx context.Context) {
	defer close(l.done)
	client := HTTPClient(l.host, l.timeout)
	tick := time.NewTicker(time.Second / time.Duration(l.rate))
	defer tick.Stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		l.mu.Lock()
		l.sent++
		l.mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			name, err := get(client, l.url)
			now := time.Now()
			l.mu.Lock()
			defer l.mu.Unlock()
			if err != nil {
				l.failed++
				l.lastErr = fmt.Sprintf("%s: %v", now.Format("15:04:05.000"), err)
				if l.firstErr == "" {
					l.firstErr = l.lastErr
				}
				return
			}
			l.ok++
			l.backends[name]++
			if now.After(l.lastOK) {
				l.gap = max(l.gap, now.Sub(l.lastOK))
				l.lastOK = now
			}
		}()
	}
}

// Result returns the counts so far.
func (l *Load) Result() LoadResult {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := make(map[string]int, len(l.backends))
	for k, v := range l.backends {
		b[k] = v
	}
	return LoadResult{Sent: l.sent, OK: l.ok, Failed: l.failed, LongestGap: l.gap, Backends: b, FirstErr: l.firstErr, LastErr: l.lastErr}
}

// Stop ends the stream, waits for requests in flight, and returns the
// result.
func (l *Load) Stop() LoadResult {
	l.cancel()
	<-l.done
	return l.Result()
}

// HTTPClient is an HTTP client whose connections are made inside host's
// network namespace, one per request (no keep-alive).
func HTTPClient(host *lab.Host, timeout time.Duration) *http.Client {
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		var conn net.Conn
		err := host.Do(func() error {
			var err error
			conn, err = (&net.Dialer{}).DialContext(ctx, network, addr)
			return err
		})
		return conn, err
	}
	return &http.Client{
		Timeout:   timeout,
		Transport: &http.Transport{DialContext: dial, DisableKeepAlives: true},
	}
}

// get fetches url and returns the body's first line (httpecho's Pod name).
func get(client *http.Client, url string) (string, error) {
	resp, err := client.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	return strings.TrimSpace(string(body)), nil
}

// Get fetches url once from host with timeout and returns the answering
// Pod's name.
func Get(host *lab.Host, url string, timeout time.Duration) (string, error) {
	return get(HTTPClient(host, timeout), url)
}
