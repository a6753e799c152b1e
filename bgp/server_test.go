package bgp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	bgppkt "github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"github.com/osrg/gobgp/v4/pkg/server"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/vipspeaker/vipspeaker/routing"
)

// These tests run our Server against a plain GoBGP instance on loopback
// addresses (127.0.0.1 is us, 127.0.0.2/3 are peers, unprivileged ports),
// and look at what the peer received. No root needed.

type fakeSource struct {
	mu    sync.Mutex
	q     []routing.Event
	ready chan struct{}
}

func newFakeSource() *fakeSource { return &fakeSource{ready: make(chan struct{}, 1)} }

func (f *fakeSource) Ready() <-chan struct{} { return f.ready }
func (f *fakeSource) Next() []routing.Event {
	f.mu.Lock()
	defer f.mu.Unlock()
	q := f.q
	f.q = nil
	return q
}
func (f *fakeSource) push(evs ...routing.Event) {
	f.mu.Lock()
	f.q = append(f.q, evs...)
	f.mu.Unlock()
	select {
	case f.ready <- struct{}{}:
	default:
	}
}

func freePort(t *testing.T, addr string) int {
	t.Helper()
	l, err := net.Listen("tcp", addr+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func testLogger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// peer is a GoBGP instance standing in for a router.
type peer struct {
	addr string
	port int
	s    *server.BgpServer
}

func startPeer(t *testing.T, addr string, ourPort int, gr bool) *peer {
	return startPeerMode(t, addr, ourPort, gr, true)
}

func startPeerMode(t *testing.T, addr string, ourPort int, gr, passive bool) *peer {
	t.Helper()
	return startPeerAS(t, addr, ourPort, gr, passive, 65000)
}

// startPeerAS is startPeerMode with the peer in AS asn (65001, ours, makes
// the session iBGP).
func startPeerAS(t *testing.T, addr string, ourPort int, gr, passive bool, asn uint32) *peer {
	t.Helper()
	p := &peer{addr: addr, port: freePort(t, addr)}
	p.s = server.NewBgpServer(server.LoggerOption(testLogger(t), nil))
	go p.s.Serve()
	t.Cleanup(p.s.Stop)
	ctx := context.Background()
	if err := p.s.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{
		Asn: asn, RouterId: addr, ListenPort: int32(p.port), ListenAddresses: []string{addr},
	}}); err != nil {
		t.Fatal(err)
	}
	fam := func(afi api.Family_Afi) *api.AfiSafi {
		return &api.AfiSafi{
			Config:            &api.AfiSafiConfig{Family: &api.Family{Afi: afi, Safi: api.Family_SAFI_UNICAST}, Enabled: true},
			MpGracefulRestart: &api.MpGracefulRestart{Config: &api.MpGracefulRestartConfig{Enabled: gr}},
		}
	}
	if err := p.s.AddPeer(ctx, &api.AddPeerRequest{Peer: &api.Peer{
		Conf:            &api.PeerConf{NeighborAddress: "127.0.0.1", PeerAsn: 65001},
		Transport:       &api.Transport{PassiveMode: passive, LocalAddress: addr, RemotePort: uint32(ourPort)},
		AfiSafis:        []*api.AfiSafi{fam(api.Family_AFI_IP), fam(api.Family_AFI_IP6)},
		GracefulRestart: &api.GracefulRestart{Enabled: gr, RestartTime: 60},
	}}); err != nil {
		t.Fatal(err)
	}
	return p
}

// routes returns the peer's RIB: prefix → path.
func (p *peer) routes(t *testing.T) map[string]*apiutil.Path {
	out := map[string]*apiutil.Path{}
	for _, fam := range []bgppkt.Family{bgppkt.RF_IPv4_UC, bgppkt.RF_IPv6_UC} {
		err := p.s.ListPath(apiutil.ListPathRequest{TableType: api.TableType_TABLE_TYPE_GLOBAL, Family: fam},
			func(prefix bgppkt.NLRI, paths []*apiutil.Path) {
				for _, pa := range paths {
					if pa.Best {
						out[prefix.String()] = pa
					}
				}
			})
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// session returns the state and uptime of the peer's session with us.
func (p *peer) session(t *testing.T) (api.PeerState_SessionState, int64) {
	var st api.PeerState_SessionState
	var up int64
	_ = p.s.ListPeer(context.Background(), &api.ListPeerRequest{}, func(pe *api.Peer) {
		st = pe.GetState().GetSessionState()
		up = pe.GetTimers().GetState().GetUptime().GetSeconds()*1e9 + int64(pe.GetTimers().GetState().GetUptime().GetNanos())
	})
	return st, up
}

func eventually(t *testing.T, timeout time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = f(); err == nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s: not within %v: %v", what, timeout, err)
}

func nextHop(p *apiutil.Path) netip.Addr {
	for _, a := range p.Attrs {
		switch a := a.(type) {
		case *bgppkt.PathAttributeNextHop:
			return a.Value
		case *bgppkt.PathAttributeMpReachNLRI:
			return a.Nexthop
		}
	}
	return netip.Addr{}
}

func attr[T bgppkt.PathAttributeInterface](p *apiutil.Path) (T, bool) {
	for _, a := range p.Attrs {
		if v, ok := a.(T); ok {
			return v, true
		}
	}
	var zero T
	return zero, false
}

type ourConfig struct {
	port      int
	peers     []*peer
	gr        bool
	extra     string // appended (policies)
	neighbor  string // appended to each [neighbors.config]... block
	exportPol string
	peerAS    int // the peers' AS; 0: 65000 (eBGP)
}

func (c ourConfig) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "[global.config]\n  as = 65001\n  router-id = \"198.18.0.2\"\n  port = %d\n  local-address-list = [\"127.0.0.1\"]\n", c.port)
	if c.exportPol != "" {
		fmt.Fprintf(&b, "[global.apply-policy.config]\n  export-policy-list = [%q]\n  default-export-policy = \"accept-route\"\n", c.exportPol)
	}
	peerAS := c.peerAS
	if peerAS == 0 {
		peerAS = 65000
	}
	for _, p := range c.peers {
		fmt.Fprintf(&b, `
[[neighbors]]
  [neighbors.config]
    neighbor-address = %q
    peer-as = %d
%s  [neighbors.transport.config]
    remote-port = %d
    local-address = "127.0.0.1"
  [neighbors.timers.config]
    connect-retry = 1
    idle-hold-time-after-reset = 1
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv4-unicast"
    [neighbors.afi-safis.mp-graceful-restart.config]
      enabled = %t
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv6-unicast"
    [neighbors.afi-safis.mp-graceful-restart.config]
      enabled = %t
  [neighbors.graceful-restart.config]
    enabled = %t
    restart-time = 60
`, p.addr, peerAS, c.neighbor, p.port, c.gr, c.gr, c.gr)
	}
	b.WriteString(c.extra)
	return b.String()
}

const medPolicy = `
[[defined-sets.bgp-defined-sets.community-sets]]
  community-set-name = "gold"
  community-list = ["65000:100"]

[[policy-definitions]]
  name = "export"
  [[policy-definitions.statements]]
    name = "gold"
    [policy-definitions.statements.conditions.bgp-conditions.match-community-set]
      community-set = "gold"
      match-set-options = "any"
    [policy-definitions.statements.actions]
      route-disposition = "accept-route"
    [policy-definitions.statements.actions.bgp-actions]
      set-med = "%d"
`

var nh6 = netip.MustParseAddr("2001:db8:18::2")

func startServer(t *testing.T, cfg ourConfig, reg prometheus.Registerer) (*Server, *fakeSource, context.CancelFunc, <-chan error) {
	t.Helper()
	s, err := New(Options{RunDir: t.TempDir(), Logger: testLogger(t), Registerer: reg, NodeName: "node1", NextHop6: nh6, ShutdownTimeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(context.Background(), "gobgp.conf", []byte(cfg.String())); err != nil {
		t.Fatalf("initial config: %v", err)
	}
	src := newFakeSource()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	exited := make(chan struct{})
	go func() {
		done <- s.run(ctx, src)
		close(exited)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
	eventually(t, 5*time.Second, "speaker ready", func() error {
		if !s.Ready() {
			return errors.New("not ready")
		}
		return nil
	})
	return s, src, cancel, done
}

func vip(a string, comms ...string) routing.VIP {
	v := routing.VIP{Addr: netip.MustParseAddr(a), Attrs: routing.Attrs{Service: "default/web"}}
	for _, c := range comms {
		if strings.Count(c, ":") == 2 {
			v.Attrs.LargeCommunities = append(v.Attrs.LargeCommunities, c)
		} else {
			v.Attrs.Communities = append(v.Attrs.Communities, c)
		}
	}
	return v
}

func established(t *testing.T, p *peer) {
	t.Helper()
	eventually(t, 10*time.Second, "session with "+p.addr, func() error {
		if st, _ := p.session(t); st != api.PeerState_SESSION_STATE_ESTABLISHED {
			return fmt.Errorf("state %v", st)
		}
		return nil
	})
}

func TestServerAnnouncesVIPs(t *testing.T) {
	port := freePort(t, "127.0.0.1")
	r := startPeer(t, "127.0.0.2", port, false)
	reg := prometheus.NewRegistry()
	s, src, cancel, done := startServer(t, ourConfig{port: port, peers: []*peer{r}}, reg)
	established(t, r)

	l2 := vip("203.0.113.11")
	l2.Attrs.Mode = routing.ModeLayer2
	src.push(
		routing.Event{Kind: routing.Added, VIP: vip("203.0.113.10", "65000:100", "65000:1:2")},
		routing.Event{Kind: routing.Added, VIP: vip("2001:db8:100::10")},
		routing.Event{Kind: routing.Added, VIP: l2},
	)
	eventually(t, 5*time.Second, "VIPs at the peer", func() error {
		rib := r.routes(t)
		p4, ok := rib["203.0.113.10/32"]
		if !ok {
			return fmt.Errorf("no 203.0.113.10/32 in %v", keys(rib))
		}
		if nh := nextHop(p4); nh != netip.MustParseAddr("127.0.0.1") {
			return fmt.Errorf("v4 next hop %v, want the session's local address 127.0.0.1", nh)
		}
		if c, ok := attr[*bgppkt.PathAttributeCommunities](p4); !ok || len(c.Value) != 1 || c.Value[0] != 65000<<16|100 {
			return fmt.Errorf("communities %v, want 65000:100", c)
		}
		if lc, ok := attr[*bgppkt.PathAttributeLargeCommunities](p4); !ok || len(lc.Values) != 1 || lc.Values[0].String() != "65000:1:2" {
			return fmt.Errorf("large communities %v, want 65000:1:2", lc)
		}
		p6, ok := rib["2001:db8:100::10/128"]
		if !ok {
			return fmt.Errorf("no 2001:db8:100::10/128 in %v", keys(rib))
		}
		if nh := nextHop(p6); nh != nh6 {
			return fmt.Errorf("v6 next hop %v, want %v (a real IPv6 address, not ::ffff:127.0.0.1)", nh, nh6)
		}
		if _, ok := rib["203.0.113.11/32"]; ok {
			return errors.New("layer2 VIP 203.0.113.11 announced over BGP")
		}
		return nil
	})

	// status and metrics
	eventually(t, 3*time.Second, "peer status", func() error {
		ps := s.Peers()
		if len(ps) != 1 || ps[0].State != "established" || ps[0].PrefixesSent != 2 || ps[0].Address != netip.MustParseAddr("127.0.0.2") {
			return fmt.Errorf("peers %+v", ps)
		}
		return nil
	})
	// The brief form names the same peer and state, without counting what
	// was sent.
	if pb := s.PeersBrief(); len(pb) != 1 || pb[0].Address != netip.MustParseAddr("127.0.0.2") || pb[0].State != "established" || pb[0].PrefixesSent != 0 {
		t.Errorf("PeersBrief = %+v, want the established peer 127.0.0.2 without a sent count", pb)
	}
	if got := testutil.ToFloat64(mustGauge(t, reg, "vipspeaker_bgp_session_up")); got != 1 {
		t.Errorf("vipspeaker_bgp_session_up = %v, want 1", got)
	}

	// a changed annotation re-announces; a removed VIP is withdrawn
	src.push(routing.Event{Kind: routing.Changed, VIP: vip("203.0.113.10", "65000:200")},
		routing.Event{Kind: routing.Removed, VIP: vip("2001:db8:100::10")})
	eventually(t, 5*time.Second, "change and withdrawal at the peer", func() error {
		rib := r.routes(t)
		if _, ok := rib["2001:db8:100::10/128"]; ok {
			return errors.New("2001:db8:100::10/128 still there")
		}
		p4, ok := rib["203.0.113.10/32"]
		if !ok {
			return errors.New("203.0.113.10/32 gone")
		}
		if c, ok := attr[*bgppkt.PathAttributeCommunities](p4); !ok || c.Value[0] != 65000<<16|200 {
			return fmt.Errorf("communities %v, want 65000:200", c)
		}
		return nil
	})

	// shutdown without graceful restart: withdrawn before Run returns
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
	}
	if rib := r.routes(t); len(rib) != 0 {
		t.Fatalf("after shutdown the peer still has %v", keys(rib))
	}
}

func mustGauge(t *testing.T, reg *prometheus.Registry, name string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) > 0 {
			return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: "x"}, func() float64 {
				return mf.GetMetric()[0].GetGauge().GetValue()
			})
		}
	}
	t.Fatalf("metric %s not found", name)
	return nil
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func med(t *testing.T, r *peer, prefix string) (uint32, error) {
	p, ok := r.routes(t)[prefix]
	if !ok {
		return 0, fmt.Errorf("no %s", prefix)
	}
	m, ok := attr[*bgppkt.PathAttributeMultiExitDisc](p)
	if !ok {
		return 0, nil
	}
	return m.Value, nil
}

func TestServerReloadPolicyWithoutSessionReset(t *testing.T) {
	port := freePort(t, "127.0.0.1")
	r := startPeer(t, "127.0.0.2", port, false)
	cfg := ourConfig{port: port, peers: []*peer{r}}
	s, src, _, _ := startServer(t, cfg, nil)
	established(t, r)
	_, up := r.session(t)
	src.push(routing.Event{Kind: routing.Added, VIP: vip("203.0.113.10", "65000:100")})
	eventually(t, 5*time.Second, "VIP at the peer", func() error { _, err := med(t, r, "203.0.113.10/32"); return err })

	cfg.extra = fmt.Sprintf(medPolicy, 50)
	cfg.exportPol = "export"
	if err := s.Apply(context.Background(), "gobgp.conf", []byte(cfg.String())); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Second, "MED 50 at the peer", func() error {
		if m, err := med(t, r, "203.0.113.10/32"); err != nil || m != 50 {
			return fmt.Errorf("med %d, %v", m, err)
		}
		return nil
	})
	cfg.extra = fmt.Sprintf(medPolicy, 70)
	if err := s.Apply(context.Background(), "gobgp.conf", []byte(cfg.String())); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Second, "MED 70 at the peer", func() error {
		if m, err := med(t, r, "203.0.113.10/32"); err != nil || m != 70 {
			return fmt.Errorf("med %d, %v", m, err)
		}
		return nil
	})
	if st, up2 := r.session(t); st != api.PeerState_SESSION_STATE_ESTABLISHED || up2 != up {
		t.Fatalf("session was reset by a policy change (state %v, uptime %d → %d)", st, up, up2)
	}

	// a bad config is rejected with file:line; nothing changes
	bad := strings.Replace(cfg.String(), `community-set = "gold"`+"\n      match-set-options", `community-set = "silver"`+"\n      match-set-options", 1)
	err := s.Apply(context.Background(), "gobgp.conf", []byte(bad))
	if err == nil || !strings.Contains(err.Error(), `gobgp.conf:`) || !strings.Contains(err.Error(), `community-set "silver" is not defined`) {
		t.Fatalf("bad config: err = %v, want file:line and the undefined set", err)
	}
	for _, b := range []string{
		strings.Replace(cfg.String(), "as = 65001", "as = 0", 1),
		strings.Replace(cfg.String(), "peer-as = 65000", "peer-az = 65000", 1),
		cfg.String() + "[[neighbors]\n",
	} {
		if err := s.Apply(context.Background(), "gobgp.conf", []byte(b)); err == nil {
			t.Fatalf("bad config accepted:\n%s", b)
		}
	}
	time.Sleep(200 * time.Millisecond)
	if m, err := med(t, r, "203.0.113.10/32"); err != nil || m != 70 {
		t.Fatalf("after rejected configs: med %d, %v; want 70 unchanged", m, err)
	}
	if st, up2 := r.session(t); st != api.PeerState_SESSION_STATE_ESTABLISHED || up2 != up {
		t.Fatalf("session touched by a rejected config (state %v)", st)
	}
}

func TestServerReloadNeighborsOneByOne(t *testing.T) {
	port := freePort(t, "127.0.0.1")
	r1 := startPeer(t, "127.0.0.2", port, false)
	r2 := startPeer(t, "127.0.0.3", port, false)
	cfg := ourConfig{port: port, peers: []*peer{r1, r2}}
	s, src, _, _ := startServer(t, cfg, nil)
	established(t, r1)
	established(t, r2)
	_, up1 := r1.session(t)
	src.push(routing.Event{Kind: routing.Added, VIP: vip("203.0.113.10")})
	eventually(t, 5*time.Second, "VIP at both", func() error {
		for _, r := range []*peer{r1, r2} {
			if _, ok := r.routes(t)["203.0.113.10/32"]; !ok {
				return fmt.Errorf("not at %s", r.addr)
			}
		}
		return nil
	})

	// remove r2: r1 untouched
	cfg.peers = []*peer{r1}
	if err := s.Apply(context.Background(), "gobgp.conf", []byte(cfg.String())); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "r2 session gone", func() error {
		if st, _ := r2.session(t); st == api.PeerState_SESSION_STATE_ESTABLISHED {
			return errors.New("still established")
		}
		return nil
	})
	if st, up := r1.session(t); st != api.PeerState_SESSION_STATE_ESTABLISHED || up != up1 {
		t.Fatal("r1 was reset when r2 was removed")
	}

	// add r2 back: r1 untouched
	cfg.peers = []*peer{r1, r2}
	if err := s.Apply(context.Background(), "gobgp.conf", []byte(cfg.String())); err != nil {
		t.Fatal(err)
	}
	established(t, r2)
	if st, up := r1.session(t); st != api.PeerState_SESSION_STATE_ESTABLISHED || up != up1 {
		t.Fatal("r1 was reset when r2 was added")
	}

	// a global policy with a neighbor-set limits what one peer receives
	cfg.extra = `
[[defined-sets.neighbor-sets]]
  neighbor-set-name = "r2"
  neighbor-info-list = ["127.0.0.3"]
[[policy-definitions]]
  name = "export"
  [[policy-definitions.statements]]
    [policy-definitions.statements.conditions.match-neighbor-set]
      neighbor-set = "r2"
    [policy-definitions.statements.actions]
      route-disposition = "reject-route"
`
	cfg.exportPol = "export"
	if err := s.Apply(context.Background(), "gobgp.conf", []byte(cfg.String())); err != nil {
		t.Fatal(err)
	}
	eventually(t, 3*time.Second, "VIP withdrawn from r2 only", func() error {
		if _, ok := r2.routes(t)["203.0.113.10/32"]; ok {
			return errors.New("r2 still has it")
		}
		if _, ok := r1.routes(t)["203.0.113.10/32"]; !ok {
			return errors.New("r1 lost it")
		}
		return nil
	})

	// change both neighbors at once: both apply (GoBGP's own UpdateConfig
	// would apply only the first)
	cfg.neighbor = "    admin-down = true\n"
	if err := s.Apply(context.Background(), "gobgp.conf", []byte(cfg.String())); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "both sessions shut down", func() error {
		for _, r := range []*peer{r1, r2} {
			if st, _ := r.session(t); st == api.PeerState_SESSION_STATE_ESTABLISHED {
				return fmt.Errorf("%s still established", r.addr)
			}
		}
		return nil
	})
}

func TestServerShutdownWithGracefulRestartKeepsRoutes(t *testing.T) {
	port := freePort(t, "127.0.0.1")
	r := startPeer(t, "127.0.0.2", port, true)
	_, src, cancel, done := startServer(t, ourConfig{port: port, peers: []*peer{r}, gr: true}, nil)
	established(t, r)
	src.push(routing.Event{Kind: routing.Added, VIP: vip("203.0.113.10")})
	eventually(t, 5*time.Second, "VIP at the peer", func() error {
		if _, ok := r.routes(t)["203.0.113.10/32"]; !ok {
			return errors.New("missing")
		}
		return nil
	})
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
	}
	eventually(t, 5*time.Second, "session down at the peer", func() error {
		if st, _ := r.session(t); st == api.PeerState_SESSION_STATE_ESTABLISHED {
			return errors.New("still established")
		}
		return nil
	})
	time.Sleep(300 * time.Millisecond)
	p, ok := r.routes(t)["203.0.113.10/32"]
	if !ok {
		t.Fatal("graceful-restart peer dropped the route at shutdown")
	}
	if !p.Stale {
		t.Error("route kept but not marked stale: was the session closed gracefully?")
	}
}

func TestApplyBeforeRunKeepsLastGoodConfig(t *testing.T) {
	s, err := New(Options{RunDir: t.TempDir(), Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	good := ourConfig{port: -1}.String()
	if err := s.Apply(context.Background(), "gobgp.conf", []byte(good)); err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(context.Background(), "gobgp.conf", []byte("[global.config]\n  as = 0\n")); err == nil {
		t.Fatal("AS 0 accepted")
	}
	if s.pending == nil || s.pending.set.Global.Config.As != 65001 {
		t.Fatal("rejected config replaced the pending good one")
	}
	if s.Ready() || s.Peers() != nil {
		t.Fatal("ready or peers before Run")
	}
}

func TestApplyRefusesPasswordWithoutTCPMD5SIG(t *testing.T) {
	old := md5Probe
	md5Probe = func() error { return errors.New("kernel lacks TCP_MD5SIG (CONFIG_TCP_MD5SIG): protocol not available") }
	t.Cleanup(func() { md5Probe = old })
	s, err := New(Options{RunDir: t.TempDir(), Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	conf := base + "    auth-password = \"s3cret\"\n"
	err = s.Apply(context.Background(), "gobgp.conf", []byte(conf))
	if err == nil || !strings.Contains(err.Error(), "gobgp.conf:9: neighbor 198.18.0.1 has an auth-password, but kernel lacks TCP_MD5SIG") {
		t.Fatalf("err = %v, want the neighbor refused at line 9", err)
	}
	if s.pending != nil {
		t.Fatal("refused config kept as pending")
	}
	// the same file validates: the check depends on the node, not the file
	if errs := Validate("gobgp.conf", []byte(conf)); len(errs) != 0 {
		t.Fatalf("Validate: %v", errs)
	}
}

func TestServerDynamicNeighbors(t *testing.T) {
	port := freePort(t, "127.0.0.1")
	conf := fmt.Sprintf(`[global.config]
  as = 65001
  router-id = "198.18.0.2"
  port = %d
  local-address-list = ["127.0.0.1"]

[[peer-groups]]
  [peer-groups.config]
    peer-group-name = "tor"
    peer-as = 65000
  [[peer-groups.afi-safis]]
    [peer-groups.afi-safis.config]
      afi-safi-name = "ipv4-unicast"

[[dynamic-neighbors]]
  [dynamic-neighbors.config]
    prefix = "127.0.0.0/29"
    peer-group = "tor"
`, port)
	s, err := New(Options{RunDir: t.TempDir(), Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(context.Background(), "gobgp.conf", []byte(conf)); err != nil {
		t.Fatal(err)
	}
	src := newFakeSource()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = s.run(ctx, src); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	src.push(routing.Event{Kind: routing.Added, VIP: vip("203.0.113.10")})
	eventually(t, 5*time.Second, "ready", func() error {
		if !s.Ready() {
			return errors.New("not ready")
		}
		return nil
	})
	// a router in the dynamic range connects and gets the VIP
	r := startPeerMode(t, "127.0.0.3", port, false, false)
	established(t, r)
	eventually(t, 5*time.Second, "VIP at the dynamic peer", func() error {
		if _, ok := r.routes(t)["203.0.113.10/32"]; !ok {
			return errors.New("missing")
		}
		return nil
	})
	if ps := s.Peers(); len(ps) != 1 || ps[0].Address != netip.MustParseAddr("127.0.0.3") || ps[0].State != "established" {
		t.Fatalf("peers %+v, want the dynamic peer established", ps)
	}
}
