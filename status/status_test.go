package status

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/server"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/vipspeaker/vipspeaker/bgp"
	"github.com/vipspeaker/vipspeaker/internal/nstest"
	"github.com/vipspeaker/vipspeaker/routing"
)

func stLogger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func stFreePort(t *testing.T, addr string) int {
	t.Helper()
	l, err := net.Listen("tcp", addr+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startRouter runs a plain GoBGP instance on addr standing in for the
// node's router: AS 65000, passive, expecting us (127.0.0.1, AS 65001) to
// connect to its port.
func stStartRouter(t *testing.T, addr string) int {
	t.Helper()
	port := stFreePort(t, addr)
	s := server.NewBgpServer(server.LoggerOption(stLogger(t), nil))
	go s.Serve()
	t.Cleanup(s.Stop)
	ctx := context.Background()
	if err := s.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{
		Asn: 65000, RouterId: addr, ListenPort: int32(port), ListenAddresses: []string{addr},
	}}); err != nil {
		t.Fatal(err)
	}
	if err := s.AddPeer(ctx, &api.AddPeerRequest{Peer: &api.Peer{
		Conf:      &api.PeerConf{NeighborAddress: "127.0.0.1", PeerAsn: 65001},
		Transport: &api.Transport{PassiveMode: true, LocalAddress: addr},
		AfiSafis: []*api.AfiSafi{{Config: &api.AfiSafiConfig{
			Family: &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}, Enabled: true}}},
	}}); err != nil {
		t.Fatal(err)
	}
	return port
}

func stGoBGPConf(routerPort, ourPort int) string {
	return fmt.Sprintf(`[global.config]
  as = 65001
  router-id = "198.18.0.2"
  port = %d
  local-address-list = ["127.0.0.1"]

[[neighbors]]
  [neighbors.config]
    neighbor-address = "127.0.0.2"
    peer-as = 65000
  [neighbors.transport.config]
    remote-port = %d
    local-address = "127.0.0.1"
  [neighbors.timers.config]
    connect-retry = 1
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv4-unicast"
`, ourPort, routerPort)
}

// stAgent is what run() builds for a report: a VIP table in a fresh
// network namespace, a BGP speaker peering with a GoBGP "router" on
// loopback, the registry, the reload history and readiness, served on a
// status socket in runDir.
type stAgent struct {
	runDir  string
	reg     *prometheus.Registry
	table   *routing.Table
	reloads *Reloads
	ready   Readiness
	owners  atomic.Pointer[map[netip.Addr]string]
	cancel  context.CancelFunc
}

func stNewAgent(t *testing.T, withBGP bool) *stAgent {
	t.Helper()
	ns := nstest.New(t)
	ta := &stAgent{runDir: t.TempDir(), reg: prometheus.NewRegistry()}
	log := stLogger(t)
	ta.reloads = NewReloads(ta.reg)
	ta.reloads.Accepted()

	speaker, err := bgp.New(bgp.Options{RunDir: ta.runDir, Logger: log, Registerer: ta.reg, NodeName: "node1",
		ShutdownTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ta.cancel = cancel
	var configDir string
	if withBGP {
		routerPort := stStartRouter(t, "127.0.0.2")
		configDir = t.TempDir()
		conf := stGoBGPConf(routerPort, stFreePort(t, "127.0.0.1"))
		if err := speaker.Apply(ctx, "gobgp.conf", []byte(conf)); err != nil {
			t.Fatal(err)
		}
	}
	table, err := routing.New(routing.Options{Interface: "kube-lb0", Kind: "ifb", NetnsPath: ns.Path(),
		Logger: log, Registerer: ta.reg})
	if err != nil {
		t.Fatal(err)
	}
	ta.table = table
	src := Sources{
		Node: "node1", Version: "test", ConfigDir: configDir, ServicesDir: "/nonexistent/services",
		Table: table, BGP: speaker, BGPConfigured: func() bool { return withBGP },
		Gatherer: ta.reg, Reloads: ta.reloads,
		Owners: func() (map[netip.Addr]string, bool) {
			if o := ta.owners.Load(); o != nil {
				return *o, true
			}
			return nil, false
		},
	}
	// As the agent computes readiness: config and VIPs, and BGP once
	// configured.
	src.NotReady = func() []string {
		want := []string{"config", "vips"}
		if withBGP {
			ta.ready.Set("bgp", speaker.Ready())
			want = append(want, "bgp")
		}
		return ta.ready.Missing(want...)
	}

	done := make(chan struct{}, 3)
	sub := table.Subscribe()
	go func() { _ = table.Run(ctx); done <- struct{}{} }()
	go func() { _ = speaker.Run(ctx, sub); done <- struct{}{} }()
	go func() {
		if err := Serve(ctx, filepath.Join(ta.runDir, SocketName), func() Report { return Collect(src) }, log); err != nil {
			t.Errorf("Serve: %v", err)
		}
		done <- struct{}{}
	}()
	t.Cleanup(func() {
		cancel()
		for range 3 {
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Error("agent parts did not stop within 10s")
				return
			}
		}
		sub.Close()
		table.Close()
	})
	select {
	case <-table.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("VIP table not ready within 10s")
	}
	ta.ready.Set("config", true)
	return ta
}

func (ta *stAgent) set(t *testing.T, vips ...routing.VIP) {
	t.Helper()
	if err := ta.table.Set(context.Background(), vips); err != nil {
		t.Fatal(err)
	}
	ta.ready.Set("vips", true)
}

// stRun does what `vipspeaker status [-o json]` does: fetch the report
// from the socket in runDir and print it as tables, or the JSON as served.
func stRun(t *testing.T, runDir string, args ...string) (string, int) {
	t.Helper()
	r, raw, err := Fetch(context.Background(), filepath.Join(runDir, SocketName))
	if err != nil {
		return err.Error(), 1
	}
	if len(args) == 2 && args[0] == "-o" && args[1] == "json" {
		return string(raw), 0
	}
	var out bytes.Buffer
	if err := Print(&out, r); err != nil {
		return err.Error(), 1
	}
	return out.String(), 0
}

// eventuallyStatus polls `vipspeaker status` until check accepts its output.
func stEventually(t *testing.T, runDir string, check func(out string) error, args ...string) string {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	var out string
	var err error
	for time.Now().Before(deadline) {
		var code int
		out, code = stRun(t, runDir, args...)
		if code != 0 {
			err = fmt.Errorf("exit %d", code)
		} else if err = check(out); err == nil {
			return out
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("status never showed what was expected: %v\nlast output:\n%s", err, out)
	return ""
}

// row finds the table row starting with first and returns its columns.
func stRow(out, first string) []string {
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) > 0 && f[0] == first {
			return f
		}
	}
	return nil
}

func stVIP(addr, service string, mode routing.Mode) routing.VIP {
	return routing.VIP{Addr: netip.MustParseAddr(addr), Attrs: routing.Attrs{Service: service, Mode: mode, Pool: "public"}}
}

func TestStatusShowsVIPsPeersAndConfig(t *testing.T) {
	ta := stNewAgent(t, true)
	// A receive counter as the eBPF part will register it: status shows
	// its value once it exists.
	rx := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vipspeaker_vip_receive_packets_total", Help: "test"}, []string{"vip"})
	ta.reg.MustRegister(rx)
	rx.WithLabelValues("203.0.113.10").Add(42)
	ta.set(t,
		stVIP("203.0.113.10", "demo/web", routing.ModeBGP),
		stVIP("203.0.113.11", "demo/dns", ""),
		stVIP("198.51.100.7", "demo/l2", routing.ModeLayer2),
		stVIP("198.51.100.8", "demo/l2b", routing.ModeLayer2),
		stVIP("198.51.100.9", "demo/l2c", routing.ModeLayer2),
	)
	// The layer2 owner election's view: this node owns .7, node2 owns .8,
	// nobody healthy is left for .9.
	ta.owners.Store(&map[netip.Addr]string{
		netip.MustParseAddr("198.51.100.7"): "node1",
		netip.MustParseAddr("198.51.100.8"): "node2",
	})
	// A refused configuration, then a good one: the refusal's reason
	// stays shown.
	ta.reloads.Refused(errors.New("vipspeaker.toml:3: pools[0].addresses: 203.0.113.0/33 is not a prefix"))
	ta.reloads.Accepted()

	out := stEventually(t, ta.runDir, func(out string) error {
		r := stRow(out, "127.0.0.2")
		if len(r) < 5 || r[2] != "established" || r[4] != "2" {
			return fmt.Errorf("peer row %q: want established with 2 prefixes sent", r)
		}
		return nil
	})
	t.Logf("vipspeaker status:\n%s", out)

	for _, want := range []struct {
		first string
		cols  []string
	}{
		// ADDRESS SERVICE MODE POOL ROLE OWNER RX-PACKETS RX-BYTES
		{"203.0.113.10", []string{"203.0.113.10", "demo/web", "bgp", "public", "announcing", "-", "42", "-"}},
		{"203.0.113.11", []string{"203.0.113.11", "demo/dns", "bgp", "public", "announcing", "-", "-", "-"}},
		{"198.51.100.7", []string{"198.51.100.7", "demo/l2", "layer2", "public", "owner", "node1", "-", "-"}},
		{"198.51.100.8", []string{"198.51.100.8", "demo/l2b", "layer2", "public", "standby", "node2", "-", "-"}},
		{"198.51.100.9", []string{"198.51.100.9", "demo/l2c", "layer2", "public", "no-owner", "-", "-", "-"}},
	} {
		if got := stRow(out, want.first); strings.Join(got, " ") != strings.Join(want.cols, " ") {
			t.Errorf("VIP row:\n got %q\nwant %q", got, want.cols)
		}
	}
	peer := stRow(out, "127.0.0.2")
	// PEER AS STATE UPTIME SENT RECEIVED ACCEPTED BFD FLAPS
	if len(peer) != 9 || peer[1] != "65000" || peer[5] != "0" || peer[7] != "-" {
		t.Errorf("peer row %q: want AS 65000, nothing received, no BFD", peer)
	}
	for _, want := range []string{"VIPs (5)", "BGP peers (1, speaker running)", "Node node1", ", ready",
		"last error", "vipspeaker.toml:3: pools[0].addresses", "generation"} {
		if !strings.Contains(out, want) {
			t.Errorf("status output lacks %q", want)
		}
	}
	if g := stRow(out, "generation"); len(g) != 2 || g[1] != "2" {
		t.Errorf("generation row %q, want 2", g)
	}

	// The same in JSON, for machines.
	js, code := stRun(t, ta.runDir, "-o", "json")
	if code != 0 {
		t.Fatalf("status -o json exited %d: %s", code, js)
	}
	var r Report
	if err := json.Unmarshal([]byte(js), &r); err != nil {
		t.Fatalf("status -o json is not JSON: %v\n%s", err, js)
	}
	// Sorted by address: 198.51.100.7, .8, .9, 203.0.113.10, .11.
	if len(r.VIPs) != 5 || r.VIPs[3].Address != "203.0.113.10" || r.VIPs[3].Role != "announcing" ||
		r.VIPs[3].RxPackets == nil || *r.VIPs[3].RxPackets != 42 || r.VIPs[4].RxPackets != nil ||
		r.VIPs[1].Role != "standby" || r.VIPs[1].Owner != "node2" {
		t.Errorf("JSON VIPs = %+v", r.VIPs)
	}
	if !r.BGP.Configured || !r.BGP.Running || len(r.BGP.Peers) != 1 || r.BGP.Peers[0].State != "established" ||
		r.BGP.Peers[0].PrefixesSent != 2 || r.BGP.Peers[0].PeerAS != 65000 || r.BGP.Peers[0].LocalAS != 65001 {
		t.Errorf("JSON BGP = %+v", r.BGP)
	}
	if r.Config.Generation != 2 || !r.Config.LastReloadSuccessful || r.Config.LastAccepted == nil ||
		!strings.Contains(r.Config.LastError, "203.0.113.0/33") || r.Config.LastErrorTime == nil {
		t.Errorf("JSON config = %+v", r.Config)
	}

	// A refused reload shows, and removing a VIP takes it off the table.
	ta.reloads.Refused()
	ta.set(t, stVIP("203.0.113.10", "demo/web", routing.ModeBGP))
	out = stEventually(t, ta.runDir, func(out string) error {
		if stRow(out, "203.0.113.11") != nil {
			return errors.New("203.0.113.11 still listed")
		}
		return nil
	})
	if !strings.Contains(out, "refused (the last good configuration stays in force)") {
		t.Errorf("a refused reload is not shown:\n%s", out)
	}
	if !strings.Contains(out, "VIPs (1)") || stRow(out, "203.0.113.10") == nil {
		t.Errorf("want exactly 203.0.113.10 listed:\n%s", out)
	}
}

func TestStatusWithoutBGP(t *testing.T) {
	ta := stNewAgent(t, false)
	stEventually(t, ta.runDir, func(out string) error {
		if !strings.Contains(out, "not ready: waiting for vips") {
			return errors.New("readiness not shown")
		}
		return nil
	})
	ta.set(t, stVIP("203.0.113.20", "demo/web", ""), stVIP("198.51.100.20", "demo/l2", routing.ModeLayer2))
	out := stEventually(t, ta.runDir, func(out string) error {
		if stRow(out, "203.0.113.20") == nil {
			return errors.New("VIP not listed")
		}
		return nil
	})
	if r := stRow(out, "203.0.113.20"); len(r) < 5 || r[4] != "not-announced" {
		t.Errorf("a bgp VIP with BGP off: row %q, want role not-announced", r)
	}
	if r := stRow(out, "198.51.100.20"); len(r) < 6 || r[4] != "unknown" || r[5] != "-" {
		t.Errorf("a layer2 VIP with no owner election: row %q, want role unknown", r)
	}
	if !strings.Contains(out, "BGP: off (no gobgp.conf)") || strings.Contains(out, "PEER") {
		t.Errorf("BGP off is not shown as such:\n%s", out)
	}
	if !regexp.MustCompile(`(?m)^last error\s+-$`).MatchString(out) {
		t.Errorf("no last error expected:\n%s", out)
	}
}

func TestStatusSocket(t *testing.T) {
	ta := stNewAgent(t, false)
	sock := filepath.Join(ta.runDir, SocketName)
	stEventually(t, ta.runDir, func(string) error { return nil })
	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o660 {
		t.Errorf("%s: mode %v, want a socket with 0660", sock, fi.Mode())
	}
	// A second agent on the same run directory is refused and leaves the
	// first one answering.
	err = Serve(context.Background(), sock, func() Report { return Report{} }, nil)
	if err == nil || !strings.Contains(err.Error(), "another agent") {
		t.Errorf("second Serve on %s: %v, want a refusal", sock, err)
	}
	if out, code := stRun(t, ta.runDir); code != 0 {
		t.Errorf("first agent stopped answering: %s", out)
	}

	// Once the agent stops, the socket is gone.
	ta.cancel()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := os.Stat(sock); errors.Is(err, os.ErrNotExist) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still there after the agent stopped", sock)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestStatusReplacesStaleSocket(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, SocketName)
	// A socket left by an agent that was killed: nobody listens on it.
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	if _, err := os.Stat(sock); err != nil {
		t.Fatalf("stale socket not left behind: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctx, sock, func() Report { return Collect(Sources{Node: "node9"}) }, stLogger(t))
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	out := stEventually(t, dir, func(string) error { return nil }, "-o", "json")
	var r Report
	if err := json.Unmarshal([]byte(out), &r); err != nil || r.Node != "node9" {
		t.Errorf("status from the new agent: %v %q", err, out)
	}
}

func TestStatusNoAgent(t *testing.T) {
	out, code := stRun(t, t.TempDir())
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	if !strings.Contains(out, "no agent answers on") || !strings.Contains(out, "vipspeaker.sock") {
		t.Errorf("output does not say no agent answers: %q", out)
	}
}
