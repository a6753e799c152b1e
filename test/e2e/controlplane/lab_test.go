package controlplane_test

import (
	"context"
	"crypto/tls"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vipspeaker/vipspeaker/test/lab"
	"github.com/vipspeaker/vipspeaker/test/lab/kubeapi"
)

// vip is the control-plane VIP (kubeadm's controlPlaneEndpoint).
const vip = "203.0.113.50"

// maxGap is the bound on the client's longest time without an
// answer through the VIP when the holder's API server stops or its node
// freezes.
const maxGap = time.Second

// cpNode is one control-plane node: its lab host, its real etcd and
// kube-apiserver (each node its own etcd: the test is about the VIP in
// front of the API servers, not about etcd's quorum), its agent.
type cpNode struct {
	host  *lab.Host
	addr  string
	api   *kubeapi.Server
	agent *lab.Agent
	proc  *lab.Process
}

// startAPIServers starts etcd and kube-apiserver on every node, serving
// on every address of the node (the VIP included) on 6443, all at once
// (one after the other took a minute on two busy cores).
func startAPIServers(t *testing.T, nodes []*cpNode) {
	t.Helper()
	var wg sync.WaitGroup
	tbs := make([]*goTB, len(nodes))
	for i, n := range nodes {
		tbs[i] = &goTB{TB: t}
		wg.Add(1)
		go func() {
			defer wg.Done()
			n.api = kubeapi.Start(tbs[i], n.host, n.addr, kubeapi.Options{Args: []string{"--bind-address", "0.0.0.0"}})
		}()
	}
	wg.Wait()
	for i, tb := range tbs {
		if tb.msg != "" {
			if tb.skip {
				t.Skip(tb.msg)
			}
			t.Fatalf("node%d: %s", i, tb.msg)
		}
	}
}

// goTB lets kubeapi.Start run on a goroutine of its own: Fatal and Skip
// end that goroutine and keep the message for the test's goroutine.
type goTB struct {
	testing.TB
	msg  string
	skip bool
}

func (g *goTB) Fatal(args ...any) { g.msg = fmt.Sprint(args...); runtime.Goexit() }
func (g *goTB) Fatalf(format string, args ...any) {
	g.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}
func (g *goTB) Skip(args ...any) { g.msg, g.skip = fmt.Sprint(args...), true; runtime.Goexit() }
func (g *goTB) Skipf(format string, args ...any) {
	g.msg, g.skip = fmt.Sprintf(format, args...), true
	runtime.Goexit()
}

// waitPassing waits until every node's agent has logged its check
// passing (each API server answers /readyz to its node's agent).
func waitPassing(t *testing.T, nodes []*cpNode) {
	t.Helper()
	lab.Eventually(t, 30*time.Second, 20*time.Millisecond, func() error {
		for i, n := range nodes {
			if !hasLine(n.proc.Log(), "health check passes") {
				return fmt.Errorf("node%d's agent has not logged its check passing", i)
			}
		}
		return nil
	})
}

// checkTOML is the [control-plane] section of node n: its own API
// server's /readyz over HTTPS at url's host (the node's address, or
// 127.0.0.1 with the certificate's name "kubernetes" as server-name),
// verified with that server's CA, every 100 ms, 3 failures to drop, 3
// successes to rise.
func (n *cpNode) checkTOML(mode, interfaces string, loopback bool) string {
	target := fmt.Sprintf("url = \"https://%s:6443/readyz\"", n.addr)
	if loopback {
		target = "url = \"https://127.0.0.1:6443/readyz\"\n  server-name = \"kubernetes\""
	}
	ca := filepath.Join(n.api.Dir(), "certs", "apiserver.crt")
	return fmt.Sprintf(`[control-plane]
address = %q
mode = %q
%s
  [control-plane.health-check]
  %s
  ca-file = %q
  interval = "100ms"
  timeout = "300ms"
  fall = 3
  rise = 3
`, vip, mode, interfaces, target, ca)
}

// startAgent starts the node's agent as a static Pod would run it: a
// config folder and nothing else (no --services-dir, no --kubeconfig).
func (n *cpNode) startAgent(t *testing.T) {
	t.Helper()
	a := n.agent
	p, err := n.host.Start("vipspeaker", []string{a.Bin, "run", "--config-dir", a.ConfigDir, "--run-dir", a.RunDir,
		"--node-name", n.host.Name(), "--log-level", "debug"})
	if err != nil {
		t.Fatal(err)
	}
	n.proc = p
}

// freeze stops the node's agent and API server with SIGSTOP (a hung
// node); they are let go at the end of the test.
func (n *cpNode) freeze(t *testing.T) {
	t.Helper()
	procs := []*lab.Process{n.proc, n.api.Process()}
	t.Cleanup(func() {
		for _, p := range procs {
			_ = p.Signal(syscall.SIGCONT)
		}
	})
	for _, p := range procs {
		if err := p.Signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
	}
}

// client calls https://VIP:6443/readyz from the client host every 10 ms
// and records when it got 200. It does not verify the server certificate
// (each lab API server has its own self-signed one; the agents' checks
// verify theirs).
type client struct {
	certs map[string]int // node index by its API server's certificate
	mu    sync.Mutex
	ok    []time.Time
	who   []int // the node that gave each answer of ok
}

// startClient starts the client on h; nodes' API servers must run (their
// certificates tell which node answered).
func startClient(t *testing.T, h *lab.Host, nodes []*cpNode) *client {
	t.Helper()
	c := &client{certs: map[string]int{}}
	for i, n := range nodes {
		b, err := os.ReadFile(filepath.Join(n.api.Dir(), "certs", "apiserver.crt"))
		if err != nil {
			t.Fatal(err)
		}
		blk, _ := pem.Decode(b)
		if blk == nil {
			t.Fatalf("node%d: no certificate in apiserver.crt", i)
		}
		c.certs[string(blk.Bytes)] = i
	}
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // see client
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var conn net.Conn
			err := h.Do(func() error {
				var err error
				conn, err = (&net.Dialer{Timeout: 200 * time.Millisecond}).DialContext(ctx, network, addr)
				return err
			})
			return conn, err
		},
		MaxIdleConnsPerHost: 1,
	}
	hc := &http.Client{Transport: tr, Timeout: 200 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done; tr.CloseIdleConnections() })
	go func() {
		defer close(done)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+vip+":6443/readyz", nil)
			if resp, err := hc.Do(req); err == nil {
				if resp.StatusCode == http.StatusOK && resp.TLS != nil && len(resp.TLS.PeerCertificates) > 0 {
					who, ok := c.certs[string(resp.TLS.PeerCertificates[0].Raw)]
					if !ok {
						who = -1
					}
					c.mu.Lock()
					c.ok = append(c.ok, time.Now())
					c.who = append(c.who, who)
					c.mu.Unlock()
				}
				resp.Body.Close()
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return c
}

// last is the node that gave the latest answer (-1: none yet).
func (c *client) last() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.who) == 0 {
		return -1
	}
	return c.who[len(c.who)-1]
}

// since returns how many answers came at or after at.
func (c *client) since(at time.Time) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	i, _ := slices.BinarySearchFunc(c.ok, at, func(a, b time.Time) int { return a.Compare(b) })
	return len(c.ok) - i
}

// gap is the longest time without an answer from the last answer before
// at until the latest one.
func (c *client) gap(at time.Time) (time.Duration, time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	i, _ := slices.BinarySearchFunc(c.ok, at, func(a, b time.Time) int { return a.Compare(b) })
	i = max(i-1, 0)
	var longest time.Duration
	var from time.Time
	for j := i + 1; j < len(c.ok); j++ {
		if d := c.ok[j].Sub(c.ok[j-1]); d > longest {
			longest, from = d, c.ok[j-1]
		}
	}
	return longest, from
}

// waitAnswers waits until the client has n answers after at.
func (c *client) waitAnswers(t *testing.T, at time.Time, n int, within time.Duration) {
	t.Helper()
	lab.Eventually(t, within, 10*time.Millisecond, func() error {
		if got := c.since(at); got < n {
			return fmt.Errorf("%d answers through %s since %s, want %d", got, vip, at.Format(time.StampMilli), n)
		}
		return nil
	})
}

// hasLine reports whether log has a line containing s.
func hasLine(log, s string) bool { return strings.Contains(log, s) }
