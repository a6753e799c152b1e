package owner

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

var testKey = []byte("0123456789abcdef0123456789abcdef")

// freePort finds a port free for both TCP and UDP on addr.
func freePort(t testing.TB, addr string) int {
	t.Helper()
	for range 20 {
		l, err := net.Listen("tcp", net.JoinHostPort(addr, "0"))
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		u, err := net.ListenPacket("udp", net.JoinHostPort(addr, strconv.Itoa(port)))
		if err != nil {
			continue
		}
		u.Close()
		return port
	}
	t.Fatal("no free port")
	return 0
}

type member struct {
	*Membership
	addr   string
	cancel context.CancelFunc
	done   chan error
	reg    *prometheus.Registry
}

// testWriter logs into the test until it ends; memberlist's goroutines may
// still log a moment after Shutdown, and those lines are dropped.
type testWriter struct {
	t    testing.TB
	mu   *sync.Mutex
	done *bool
}

func newTestWriter(t testing.TB) testWriter {
	w := testWriter{t: t, mu: &sync.Mutex{}, done: new(bool)}
	t.Cleanup(func() {
		w.mu.Lock()
		*w.done = true
		w.mu.Unlock()
	})
	return w
}

func (w testWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !*w.done {
		w.t.Log(strings.TrimRight(string(b), "\n"))
	}
	return len(b), nil
}

func startMember(t testing.TB, name string, port int, key []byte, join ...string) *member {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	ms, err := NewMembership(Options{
		Logger:     slog.New(slog.NewTextHandler(newTestWriter(t), &slog.HandlerOptions{Level: slog.LevelInfo})).With("node", name),
		Registerer: reg,
		NodeName:   name,
		BindAddr:   netip.MustParseAddr("127.0.0.1"),
		BindPort:   port,
		Join:       join,
		Key:        key,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &member{Membership: ms, addr: fmt.Sprintf("127.0.0.1:%d", port), cancel: cancel, done: make(chan error, 1), reg: reg}
	go func() { m.done <- ms.Run(ctx) }()
	t.Cleanup(func() { m.stop(t) })
	select {
	case <-ms.Ready():
	case err := <-m.done:
		t.Fatalf("member %s: %v", name, err)
	case <-time.After(10 * time.Second):
		t.Fatalf("member %s not ready", name)
	}
	return m
}

// stop ends Run (idempotent).
func (m *member) stop(t testing.TB) {
	t.Helper()
	m.cancel()
	select {
	case err, ok := <-m.done:
		if ok && err != nil {
			t.Logf("member stop: %v", err)
		}
		if ok {
			close(m.done)
		}
	case <-time.After(10 * time.Second):
		t.Errorf("member did not stop")
	}
}

// crash stops the member's memberlist without a goodbye, as kill -9 would.
func (m *member) crash(t testing.TB) {
	t.Helper()
	m.SetExitMode(Vanish, 0)
	m.mu.Lock()
	list := m.list
	m.mu.Unlock()
	if err := list.Shutdown(); err != nil {
		t.Fatal(err)
	}
}

func waitHealthy(t testing.TB, timeout time.Duration, m *member, want ...string) time.Duration {
	t.Helper()
	slices.Sort(want)
	start := time.Now()
	for {
		got := m.Healthy()
		if slices.Equal(got, want) {
			return time.Since(start)
		}
		if time.Since(start) > timeout {
			t.Fatalf("%s sees healthy %v, want %v (waited %v)", m.name, got, want, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func threeMembers(t *testing.T) (a, b, c *member) {
	pa := freePort(t, "127.0.0.1")
	a = startMember(t, "node-a", pa, testKey)
	b = startMember(t, "node-b", freePort(t, "127.0.0.1"), testKey, a.addr)
	c = startMember(t, "node-c", freePort(t, "127.0.0.1"), testKey, a.addr)
	for _, m := range []*member{a, b, c} {
		waitHealthy(t, 5*time.Second, m, "node-a", "node-b", "node-c")
	}
	return a, b, c
}

var testVIPs = func() []VIP {
	var v []VIP
	for i := range 60 {
		v = append(v, VIP{Addr: netip.AddrFrom4([4]byte{203, 0, 113, byte(i)})})
	}
	return v
}()

// Every VIP has exactly one owner among the survivors, and the two
// survivors agree.
func checkOwners(t *testing.T, gone string, ms ...*member) {
	t.Helper()
	owners := map[netip.Addr]string{}
	for _, m := range ms {
		for _, a := range Owned(m.name, testVIPs, m.Healthy()) {
			if o, dup := owners[a]; dup {
				t.Errorf("%s owned by both %s and %s", a, o, m.name)
			}
			owners[a] = m.name
		}
	}
	if len(owners) != len(testVIPs) {
		t.Errorf("%d of %d VIPs have an owner among the survivors of %s", len(owners), len(testVIPs), gone)
	}
}

// A speaker that dies without a word (its memberlist stops answering) is
// declared dead by the others and its VIPs move; the time is logged (the
// benchmark measures it properly).
func TestKilledSpeakerIsDeclaredDead(t *testing.T) {
	a, b, c := threeMembers(t)
	heldByC := len(Owned("node-c", testVIPs, a.Healthy()))
	if heldByC == 0 {
		t.Fatal("node-c owns nothing; the test would prove nothing")
	}
	c.crash(t)
	da := waitHealthy(t, 5*time.Second, a, "node-a", "node-b")
	db := waitHealthy(t, 5*time.Second, b, "node-a", "node-b")
	t.Logf("killed speaker declared dead after %v (a) / %v (b)", da, db)
	checkOwners(t, "node-c", a, b)
	if got := testutil.ToFloat64(a.m.events.WithLabelValues("dead")); got != 1 {
		t.Errorf("node-a counted %v dead events, want 1", got)
	}
}

// A speaker leaving for good says goodbye: the others drop it without
// failure detection (a "left" event, not "dead").
func TestGracefulLeaveHandsOffAtOnce(t *testing.T) {
	a, b, c := threeMembers(t)
	start := time.Now()
	c.stop(t)
	waitHealthy(t, 5*time.Second, a, "node-a", "node-b")
	waitHealthy(t, 5*time.Second, b, "node-a", "node-b")
	t.Logf("graceful leave seen after %v", time.Since(start))
	checkOwners(t, "node-c", a, b)
	// Healthy drops node-c on its "leaving" metadata; memberlist's leave
	// message may be handled a moment later.
	for start := time.Now(); testutil.ToFloat64(a.m.events.WithLabelValues("left")) == 0 && time.Since(start) < 2*time.Second; {
		time.Sleep(10 * time.Millisecond)
	}
	if got := testutil.ToFloat64(a.m.events.WithLabelValues("left")); got != 1 {
		t.Errorf("node-a counted %v left events, want 1", got)
	}
	if got := testutil.ToFloat64(a.m.events.WithLabelValues("dead")); got != 0 {
		t.Errorf("node-a counted %v dead events, want 0 (it should have heard the goodbye)", got)
	}
}

// A restarting speaker announces a window: the others see it die but keep
// it healthy (its VIPs do not move); it comes back under the same name and
// is simply healthy again. A speaker that does not come back within its
// window is dropped when the window ends.
func TestRestartWindowKeepsOwnership(t *testing.T) {
	a, b, c := threeMembers(t)
	port := c.cfg.BindPort
	c.SetExitMode(Restart, 30*time.Second)
	c.stop(t)
	// memberlist declares c dead ...
	waitFor(t, 5*time.Second, "node-a sees node-c dead", func() bool {
		return testutil.ToFloat64(a.m.events.WithLabelValues("dead")) == 1
	})
	// ... but it stays healthy for the hash.
	for _, m := range []*member{a, b} {
		if got := m.Healthy(); !slices.Equal(got, []string{"node-a", "node-b", "node-c"}) {
			t.Errorf("%s healthy during node-c's restart window = %v", m.name, got)
		}
	}
	c2 := startMember(t, "node-c", port, testKey, a.addr)
	for _, m := range []*member{a, b, c2} {
		waitHealthy(t, 5*time.Second, m, "node-a", "node-b", "node-c")
	}
	waitFor(t, 5*time.Second, "node-a sees node-c join again", func() bool {
		return testutil.ToFloat64(a.m.events.WithLabelValues("join")) >= 4
	})
	a.mu.Lock()
	kept := len(a.restartKeep)
	a.mu.Unlock()
	if kept != 0 {
		t.Errorf("node-a still holds a restart window after node-c came back")
	}

	// Now c restarts with a short window and never returns.
	c2.SetExitMode(Restart, 800*time.Millisecond)
	c2.stop(t)
	waitHealthy(t, 5*time.Second, a, "node-a", "node-b")
	waitHealthy(t, 5*time.Second, b, "node-a", "node-b")
	checkOwners(t, "node-c", a, b)
}

// A speaker with another key cannot join.
func TestWrongKeyCannotJoin(t *testing.T) {
	a := startMember(t, "node-a", freePort(t, "127.0.0.1"), testKey)
	b := startMember(t, "node-b", freePort(t, "127.0.0.1"), testKey, a.addr)
	waitHealthy(t, 5*time.Second, a, "node-a", "node-b")
	other := []byte("fedcba9876543210fedcba9876543210")
	x := startMember(t, "node-x", freePort(t, "127.0.0.1"), other, a.addr)
	time.Sleep(time.Second)
	if got := a.Healthy(); !slices.Equal(got, []string{"node-a", "node-b"}) {
		t.Errorf("node-a healthy = %v; a speaker with the wrong key got in", got)
	}
	if got := x.Healthy(); !slices.Equal(got, []string{"node-x"}) {
		t.Errorf("node-x healthy = %v, want only itself", got)
	}
	_ = b
}

func TestLoadKey(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	a := write("a", "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0IQ==\n")
	a2 := write("a2", "  c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0IQ==")
	b := write("b", "another secret of enough length")
	short := write("short", "short\n")
	ka, err := LoadKey(a)
	if err != nil || len(ka) != 32 {
		t.Fatalf("LoadKey = %x, %v; want a 32-byte key", ka, err)
	}
	if ka2, _ := LoadKey(a2); string(ka2) != string(ka) {
		t.Error("the same secret with other white space gave another key")
	}
	if kb, _ := LoadKey(b); string(kb) == string(ka) {
		t.Error("two secrets gave the same key")
	}
	if _, err := LoadKey(short); err == nil {
		t.Error("a 5-byte secret was accepted")
	}
	if _, err := NewMembership(Options{NodeName: "n", BindAddr: netip.MustParseAddr("127.0.0.1"), SecretFile: short}); err == nil {
		t.Error("NewMembership accepted a bad secret file")
	}
	if _, err := NewMembership(Options{BindAddr: netip.MustParseAddr("127.0.0.1")}); err == nil {
		t.Error("NewMembership accepted an empty node name")
	}
	if _, err := NewMembership(Options{NodeName: "n", BindAddr: netip.MustParseAddr("127.0.0.1"), Key: []byte("12345")}); err == nil {
		t.Error("NewMembership accepted a 5-byte key")
	}
}

func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for: %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A speaker's layer2 link states reach the others in its metadata: when
// its interface goes down they elect without it at once (no failure
// detection: the speaker is still alive), and when it comes back they
// count it again.
func TestLinkStatesReachTheOthers(t *testing.T) {
	a, b, c := threeMembers(t)
	lan := netip.MustParsePrefix("203.0.113.0/26")
	vips := make([]VIP, len(testVIPs))
	for i, v := range testVIPs {
		vips[i] = VIP{Addr: v.Addr, Interfaces: []string{"eth0"}}
	}
	for _, m := range []*member{a, b, c} {
		m.SetLinks(Links{"eth0": {Up: true, Prefixes: []netip.Prefix{lan}}})
	}
	owned := func(m, by *member) []netip.Addr {
		owners, _ := Elect(vips, by.Healthy(), by.Links(), nil)
		var out []netip.Addr
		for a, o := range owners {
			if o == m.name {
				out = append(out, a)
			}
		}
		return out
	}
	waitOwns := func(m, by *member, some bool) time.Duration {
		t.Helper()
		start := time.Now()
		for len(owned(m, by)) > 0 != some {
			if time.Since(start) > 5*time.Second {
				t.Fatalf("%s sees %s owning %v, want some: %v", by.name, m.name, owned(m, by), some)
			}
			time.Sleep(5 * time.Millisecond)
		}
		return time.Since(start)
	}
	waitOwns(c, a, true)
	c.SetLinks(Links{"eth0": {Up: false, Prefixes: []netip.Prefix{lan}}})
	if len(owned(c, c)) != 0 {
		t.Errorf("node-c still owns %v itself with its link down", owned(c, c))
	}
	t.Logf("node-c's link down seen by node-a after %v, node-b after %v", waitOwns(c, a, false), waitOwns(c, b, false))
	if got := a.Healthy(); len(got) != 3 {
		t.Errorf("node-a sees healthy %v: a link down is not a dead speaker", got)
	}
	c.SetLinks(Links{"eth0": {Up: true, Prefixes: []netip.Prefix{lan}}})
	waitOwns(c, a, true)
	waitOwns(c, b, true)
	// A node without the subnet is no candidate while others carry it.
	b.SetLinks(Links{"eth0": {Up: true}})
	waitOwns(b, a, false)
	waitOwns(b, c, false)
}
