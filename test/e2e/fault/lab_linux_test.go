package fault_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vipspeaker/vipspeaker/internal/nstest"
	"github.com/vipspeaker/vipspeaker/test/lab"
)

const (
	vip          = "203.0.113.10"
	vipPrefix    = vip + "/32"
	pingInterval = 10 * time.Millisecond
	// routeBound is how long a fault may keep the VIP's route away from
	// the router or a repair may take: generous, the machine is shared.
	routeBound = 30 * time.Second
)

// bgpLab is client — router — node (lab.Routed, one node). The router
// (FRR, AS 65000, graceful restart) learns the VIP from the agent on the
// node (AS 65001) and forwards the client's pings to it.
//
//	client eth0 198.18.0.2 — client 198.18.0.1 router n1 198.18.1.1/30 — eth0 198.18.1.2/30 node1
//
// In zebra mode the node also runs FRR's zebra, the agent's GoBGP talks to
// it (gobgp.conf [zebra.config], docs/zebra.md) and the node's way back to
// the client is the default route the router sends, installed by zebra.
type bgpLab struct {
	*lab.Routed
	bin                  string
	client, router, node *lab.Host
	frr                  *lab.FRR // the router's
	nodeFRR              *lab.FRR // zebra mode: the node's zebra
}

type bgpOptions struct {
	zebra  bool
	prefix []string
}

func requireTools(t *testing.T, tools ...string) {
	t.Helper()
	nstest.RequireRoot(t)
	for _, tool := range tools {
		found := false
		for _, d := range []string{"/usr/sbin/", "/usr/bin/", "/sbin/", "/bin/"} {
			if _, err := os.Stat(d + tool); err == nil {
				found = true
				break
			}
		}
		if !found {
			nstest.Skip(t, "%s not installed (make deps)", tool)
		}
	}
}

func newBGPLab(t *testing.T, o bgpOptions) *bgpLab {
	t.Helper()
	requireTools(t, "ping")
	lab.RequireFRR(t)
	r := lab.NewRouted(t, lab.RoutedOptions{Nodes: 1, Client: true, NoNodeDefaults: o.zebra})
	n := r.Nodes[0]
	b := &bgpLab{Routed: r, bin: n.Bin, client: r.Client, router: r.Router, node: n.Host}
	n.Wrap, n.LogLevel = o.prefix, "info"
	// Graceful restart on, fast reconnect; in zebra mode the router also
	// sends the node a default route.
	nb := lab.FRRNeighbor{Addr: n.Addr4, AS: 65001, ConnectRetry: 1}
	if o.zebra {
		nb.IPv4Lines = []string{"neighbor " + n.Addr4 + " default-originate"}
	}
	var err error
	if b.frr, err = r.StartFRR(lab.FRRBGPConf{AS: 65000, RouterID: "198.18.0.1",
		Global: []string{"bgp graceful-restart", "bgp graceful-restart restart-time 30"}, Neighbors: []lab.FRRNeighbor{nb}}, ""); err != nil {
		t.Fatal(err)
	}
	// The router as neighbor with graceful restart; in zebra mode as
	// docs/zebra.md shows it, exporting only the VIPs.
	conf := lab.GoBGPConf{AS: 65001, RouterID: n.Addr4,
		Neighbors: []lab.GoBGPNeighbor{lab.GoBGPNeighbor{Address: n.Peer4, PeerAS: 65000, GracefulRestart: true}.FastTimers()}}
	if o.zebra {
		if b.nodeFRR, err = b.node.StartFRR(lab.FRRConfig{Daemons: []string{"zebra"}, Zebra: "hostname node\nlog stdout informational\n"}); err != nil {
			t.Fatal(err)
		}
		conf.MultiPath = true
		conf.Extra = lab.GoBGPZebra(filepath.Join("/var/run/frr", b.node.NetnsName(), "zserv.api")) + "\n" + lab.GoBGPPolicy{
			Name: "only-vips", Default: "reject-route",
			PrefixSets: []lab.GoBGPPrefixSet{{Name: "vips4", Prefix: "203.0.113.0/24", MaskRange: "32..32"}},
			Statements: []lab.GoBGPStatement{{Name: "vips4", PrefixSet: "vips4", Disposition: "accept-route"}},
		}.String()
	}
	for _, err := range []error{n.WriteConfig("gobgp.conf", conf.String()), n.WriteService(lab.ServiceFile{Name: "web", Addresses: []string{vip}})} {
		if err != nil {
			t.Fatal(err)
		}
	}
	return b
}

// start starts the agent on the node (a new log file per start).
func (b *bgpLab) start(t *testing.T) *lab.Process {
	t.Helper()
	p, err := b.Nodes[0].Start()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// agent is the agent last started.
func (b *bgpLab) agent() *lab.Process { return b.Nodes[0].Proc }

// startBGP builds a bgpLab, starts the agent, waits until the router
// routes the VIP over a fresh session and returns the lab with a pinger
// from the client that the VIP answers.
func startBGP(t *testing.T, o bgpOptions) (*bgpLab, *pinger) {
	t.Helper()
	b := newBGPLab(t, o)
	b.start(t)
	waitRoute(t, b.router, vipPrefix, routeBound)
	b.waitFreshSession(t, 0, routeBound)
	return b, startPinger(t, b.client, vip)
}

// session is the router's view of its session with the node.
type session struct {
	State       string
	Established int // connectionsEstablished
}

func (b *bgpLab) session() (session, error) {
	var doc map[string]json.RawMessage
	if err := b.frr.VtyshJSON("show bgp neighbors 198.18.1.2 json", &doc); err != nil {
		return session{}, err
	}
	var s struct {
		BgpState               string `json:"bgpState"`
		ConnectionsEstablished int    `json:"connectionsEstablished"`
	}
	if err := json.Unmarshal(doc["198.18.1.2"], &s); err != nil {
		return session{}, fmt.Errorf("router's neighbor 198.18.1.2: %w", err)
	}
	return session{State: s.BgpState, Established: s.ConnectionsEstablished}, nil
}

// waitFreshSession waits until the router has a session with the node
// newer than the after-th and holds a fresh (not stale) path to the VIP.
func (b *bgpLab) waitFreshSession(t *testing.T, after int, within time.Duration) session {
	t.Helper()
	var s session
	lab.Eventually(t, within, 20*time.Millisecond, func() error {
		var err error
		if s, err = b.session(); err != nil {
			return err
		}
		if s.State != "Established" || s.Established <= after {
			return fmt.Errorf("router's session with the node: %+v, want a new Established one (after %d)", s, after)
		}
		var doc struct {
			Paths []struct {
				Stale bool `json:"stale"`
			} `json:"paths"`
		}
		if err := b.frr.VtyshJSON("show bgp ipv4 unicast "+vipPrefix+" json", &doc); err != nil {
			return err
		}
		if len(doc.Paths) == 0 || doc.Paths[0].Stale {
			return fmt.Errorf("router's path to %s not refreshed by the new session: %+v", vipPrefix, doc.Paths)
		}
		return nil
	})
	return s
}

func hasRoute(h *lab.Host, prefix string) error {
	_, ok, err := h.KernelRoute(prefix)
	if err == nil && !ok {
		err = fmt.Errorf("%s's kernel has no route to %s", h.Name(), prefix)
	}
	return err
}

// waitRoute waits until h's kernel routes prefix and returns how long that
// took.
func waitRoute(t *testing.T, h *lab.Host, prefix string, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	lab.Eventually(t, within, 10*time.Millisecond, func() error { return hasRoute(h, prefix) })
	return time.Since(start)
}

// pinger is a lab.Pinger whose count starts once the VIP answered.
type pinger struct {
	*lab.Pinger
	from time.Time
}

// result stops the pinger and returns what it saw since the VIP first
// answered 20 requests in a row.
func (p *pinger) result() lab.PingResult { return p.Stop().Since(p.from) }

// startPinger pings addr from h every 10 ms and waits until it is
// answered.
func startPinger(t *testing.T, h *lab.Host, addr string) *pinger {
	t.Helper()
	p, err := h.StartPinger(addr, pingInterval)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop() })
	if err := p.WaitReplies(20, routeBound); err != nil {
		t.Fatalf("the client cannot ping the VIP before any fault: %v", err)
	}
	return &pinger{Pinger: p, from: time.Now()}
}

// waitPast waits until the VIP has answered every ping for d (d / 10 ms
// requests in a row): the window in which a stale route would be flushed
// or a repair undone.
func (p *pinger) waitPast(t *testing.T, d time.Duration) {
	t.Helper()
	if err := p.WaitReplies(int(d/pingInterval), d+routeBound); err != nil {
		t.Fatalf("the VIP did not answer every ping for %v: %v", d, err)
	}
}

// waitPings waits until the VIP answers 20 requests in a row again and
// returns how long that took.
func waitPings(t *testing.T, p *pinger, within time.Duration, what string) time.Duration {
	t.Helper()
	start := time.Now()
	if err := p.WaitReplies(20, within); err != nil {
		t.Fatalf("the client cannot ping the VIP again after %s: %v", what, err)
	}
	return time.Since(start)
}

// waitLog waits until p's log holds s.
func waitLog(t *testing.T, p *lab.Process, s string, within time.Duration) {
	t.Helper()
	lab.Eventually(t, within, 50*time.Millisecond, func() error {
		if p.Exited() {
			return fmt.Errorf("%s exited before logging %q: %w\n%s", p.Name(), s, lab.ErrGiveUp, lab.Tail(p.Log(), 30))
		}
		if !strings.Contains(p.Log(), s) {
			return fmt.Errorf("%s has not logged %q", p.Name(), s)
		}
		return nil
	})
}

// kill9 sends SIGKILL to the agent and waits until it is gone.
func kill9(t *testing.T, p *lab.Process) {
	t.Helper()
	if err := p.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Done():
	case <-time.After(10 * time.Second):
		t.Fatalf("%s still running 10 s after SIGKILL", p.Name())
	}
}

func run(t *testing.T, h *lab.Host, argv ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := h.Run(ctx, argv...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// l2Lab is a lab.Flat of two nodes (node0, node1: 198.18.2.10, .11 on
// eth0, the client's br0 198.18.2.1/24). The VIP is in a layer2 pool
// answered on eth0; exactly one node owns it.
type l2Lab struct {
	*lab.Flat
	bin    string
	client *lab.Host
}

func newL2Lab(t *testing.T, prefix []string) *l2Lab {
	t.Helper()
	requireTools(t, "ping", "arping")
	f := lab.NewFlat(t, lab.FlatOptions{Nodes: 2, Routes: []string{"203.0.113.0/24"}})
	tp := &l2Lab{Flat: f, bin: f.Nodes[0].Bin, client: f.Client}
	for _, n := range f.Nodes {
		n.Wrap, n.LogLevel = prefix, "info"
	}
	secret := filepath.Join(f.Lab.Dir(), "membership.key")
	for _, err := range []error{
		lab.WriteFileAtomic(secret, "c2VjcmV0LWZvci10aGUtZmF1bHQtZTJlLXRlc3RzLg==\n"),
		f.WriteConfig("vipspeaker.toml", lab.AgentTOML{DummyInterface: true,
			Pools:      []lab.Pool{{Name: "flat", Addresses: []string{"203.0.113.0/28"}, Layer2Interfaces: []string{"eth0"}}},
			Layer2:     &lab.Layer2TOML{GratuitousCount: 3, GratuitousInterval: "100ms"},
			Membership: &lab.Membership{Join: f.Join(), SecretFile: secret},
		}.String()),
		f.WriteServices("web", lab.ServiceFile{Name: "web", Pool: "flat", Addresses: []string{vip}}),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	return tp
}

// start starts node i's agent and waits until its responder is up.
func (tp *l2Lab) start(t *testing.T, i int) *lab.Process {
	t.Helper()
	p, err := tp.Nodes[i].Start()
	if err != nil {
		t.Fatal(err)
	}
	waitLog(t, p, "answering ARP/NDP on layer2 interface", 20*time.Second)
	return p
}

// failoverBound is what README.md promises: failover in under a second.
const failoverBound = time.Second

// waitJoined waits until node i's agent has seen the other node join its
// membership.
func (tp *l2Lab) waitJoined(t *testing.T, i int) {
	t.Helper()
	waitLog(t, tp.Nodes[i].Proc, fmt.Sprintf("msg=\"speaker joined\" component=membership node=node%d ", 1-i), routeBound)
}

// waitOneOwner waits until exactly one node answers ARP for the VIP and
// returns its index.
func (tp *l2Lab) waitOneOwner(t *testing.T) int {
	t.Helper()
	return tp.WaitOwner(t, vip, routeBound, func(a string) []string { return tp.ARPing(a, 3, 200*time.Millisecond) })
}

// routeWatch polls a host's kernel for one route every 10 ms and records
// when it was missing.
type routeWatch struct {
	stop, done chan struct{}
	polls      int
	gaps       int           // times the route went missing
	missing    time.Duration // total time seen missing
	first      time.Duration // first seen missing, after the start (-1: never)
}

func watchRoute(h *lab.Host, prefix string) *routeWatch {
	w := &routeWatch{stop: make(chan struct{}), done: make(chan struct{}), first: -1}
	start := time.Now()
	go func() {
		defer close(w.done)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		var since time.Time // when the current gap began (zero: present)
		for {
			_, ok, err := h.KernelRoute(prefix)
			now := time.Now()
			if err == nil {
				w.polls++
				switch {
				case !ok && since.IsZero():
					since = now
					w.gaps++
					if w.first < 0 {
						w.first = now.Sub(start)
					}
				case ok && !since.IsZero():
					w.missing += now.Sub(since)
					since = time.Time{}
				}
			}
			select {
			case <-w.stop:
				if !since.IsZero() {
					w.missing += time.Since(since)
				}
				return
			case <-tick.C:
			}
		}
	}()
	return w
}

// Stop ends the watch; call it once.
func (w *routeWatch) Stop() *routeWatch {
	close(w.stop)
	<-w.done
	return w
}

func (w *routeWatch) String() string {
	if w.gaps == 0 {
		return fmt.Sprintf("never missing (%d polls)", w.polls)
	}
	return fmt.Sprintf("missing %d time(s), %v in all, first after %v (%d polls)",
		w.gaps, w.missing.Round(time.Millisecond), w.first.Round(time.Millisecond), w.polls)
}
