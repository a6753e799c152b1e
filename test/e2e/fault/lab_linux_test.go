package fault_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
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

// bgpLab is client — router — node. The router (FRR, AS 65000, graceful
// restart) learns the VIP from the agent on the node (AS 65001) and
// forwards the client's pings to it.
//
//	client eth0 198.18.0.2/30 — c0 198.18.0.1/30 router n1 198.18.1.1/30 — eth0 198.18.1.2/30 node
//
// In zebra mode the node also runs FRR's zebra, the agent's GoBGP talks to
// it (gobgp.conf [zebra.config], docs/zebra.md) and the node's way back to
// the client is the default route the router sends, installed by zebra.
type bgpLab struct {
	l                    *lab.Lab
	bin                  string
	client, router, node *lab.Host
	frr                  *lab.FRR // the router's
	nodeFRR              *lab.FRR // zebra mode: the node's zebra
	confDir, svcDir      string
	runDir               string
	agent                *lab.Process
	starts               int
	prefix               []string // argv before the agent (setpriv ...)
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

func agentBinary(t *testing.T) string {
	t.Helper()
	bin, err := lab.BuildBinary("./cmd/vipspeaker")
	if err != nil {
		t.Fatalf("build vipspeaker: %v", err)
	}
	return bin
}

func newBGPLab(t *testing.T, o bgpOptions) *bgpLab {
	t.Helper()
	requireTools(t, "ping")
	if err := lab.HaveFRR(); err != nil {
		nstest.Skip(t, "%v", err)
	}
	bin := agentBinary(t)
	l := lab.New(t)
	b := &bgpLab{l: l, bin: bin, prefix: o.prefix,
		client: l.MustHost("client"), router: l.MustHost("router"), node: l.MustHost("node")}
	l.MustLink(b.client, "eth0", []string{"198.18.0.2/30"}, b.router, "c0", []string{"198.18.0.1/30"})
	l.MustLink(b.router, "n1", []string{"198.18.1.1/30"}, b.node, "eth0", []string{"198.18.1.2/30"})
	if err := b.router.EnableForwarding(); err != nil {
		t.Fatal(err)
	}
	if err := b.client.AddRoute("default", "198.18.0.1"); err != nil {
		t.Fatal(err)
	}
	if !o.zebra {
		if err := b.node.AddRoute("default", "198.18.1.1"); err != nil {
			t.Fatal(err)
		}
	}
	var err error
	if b.frr, err = b.router.StartFRR(lab.FRRConfig{Zebra: "hostname router\nlog stdout informational\n", BGPd: routerBGPd(o.zebra)}); err != nil {
		t.Fatal(err)
	}
	zsock := ""
	if o.zebra {
		if b.nodeFRR, err = b.node.StartFRR(lab.FRRConfig{Daemons: []string{"zebra"}, Zebra: "hostname node\nlog stdout informational\n"}); err != nil {
			t.Fatal(err)
		}
		zsock = filepath.Join("/var/run/frr", b.node.NetnsName(), "zserv.api")
	}
	base := filepath.Join(l.Dir(), "node")
	b.confDir, b.svcDir, b.runDir = filepath.Join(base, "config"), filepath.Join(base, "services"), filepath.Join(base, "run")
	for _, d := range []string{b.confDir, b.svcDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(b.confDir, "gobgp.conf"), nodeGoBGPConf(zsock))
	writeFile(t, filepath.Join(b.svcDir, "web.yaml"), service("web", "", vip))
	return b
}

// routerBGPd: graceful restart on, fast reconnect; in zebra mode the
// router also sends the node a default route.
func routerBGPd(defaultOriginate bool) string {
	dflt := ""
	if defaultOriginate {
		dflt = "  neighbor 198.18.1.2 default-originate\n"
	}
	return `frr defaults traditional
hostname router
log stdout informational
!
router bgp 65000
 bgp router-id 198.18.0.1
 no bgp ebgp-requires-policy
 no bgp network import-check
 bgp graceful-restart
 bgp graceful-restart restart-time 30
 neighbor 198.18.1.2 remote-as 65001
 neighbor 198.18.1.2 timers connect 1
 address-family ipv4 unicast
` + dflt + ` exit-address-family
!
`
}

// nodeGoBGPConf is the node's gobgp.conf: the router as neighbor with
// graceful restart; with zsock, zebra mode as docs/zebra.md shows it.
func nodeGoBGPConf(zsock string) string {
	zebra := ""
	if zsock != "" {
		zebra = fmt.Sprintf(`
[global.use-multiple-paths.config]
  enabled = true

[zebra.config]
  enabled = true
  url = "unix:%s"
  redistribute-route-type-list = ["connect"]
  version = 6
  software-name = "frr8.4"
  nexthop-trigger-enable = false

[[defined-sets.prefix-sets]]
  prefix-set-name = "vips4"
  [[defined-sets.prefix-sets.prefix-list]]
    ip-prefix = "203.0.113.0/24"
    masklength-range = "32..32"

[[policy-definitions]]
  name = "only-vips"
  [[policy-definitions.statements]]
    name = "vips4"
    [policy-definitions.statements.conditions.match-prefix-set]
      prefix-set = "vips4"
    [policy-definitions.statements.actions]
      route-disposition = "accept-route"

[global.apply-policy.config]
  export-policy-list = ["only-vips"]
  default-export-policy = "reject-route"
`, zsock)
	}
	return `[global.config]
  as = 65001
  router-id = "198.18.1.2"
` + zebra + `
[[neighbors]]
  [neighbors.config]
    neighbor-address = "198.18.1.1"
    peer-as = 65000
  [neighbors.timers.config]
    connect-retry = 1
    hold-time = 9
    keepalive-interval = 3
    idle-hold-time-after-reset = 1
  [neighbors.graceful-restart.config]
    enabled = true
    restart-time = 30
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv4-unicast"
    [neighbors.afi-safis.mp-graceful-restart.config]
      enabled = true
`
}

// service is a Service manifest for the agent's services folder.
func service(name, pool string, addrs ...string) string {
	ann := fmt.Sprintf("    vipspeaker.io/addresses: %q\n", strings.Join(addrs, ","))
	if pool != "" {
		ann += fmt.Sprintf("    vipspeaker.io/pool: %s\n", pool)
	}
	return fmt.Sprintf(`apiVersion: v1
kind: Service
metadata:
  name: %s
  namespace: demo
  annotations:
%sspec:
  type: LoadBalancer
  ports:
  - port: 80
`, name, ann)
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path+".tmp", []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
}

// start starts the agent on the node (a new log file per start).
func (b *bgpLab) start(t *testing.T) *lab.Process {
	t.Helper()
	b.starts++
	argv := append(slices.Clone(b.prefix), b.bin, "run", "--config-dir", b.confDir, "--services-dir", b.svcDir,
		"--run-dir", b.runDir, "--node-name", "node", "--log-level", "info")
	p, err := b.node.Start(fmt.Sprintf("vipspeaker-%d", b.starts), argv)
	if err != nil {
		t.Fatal(err)
	}
	b.agent = p
	return p
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
			return fmt.Errorf("%s exited before logging %q: %w\n%s", p.Name(), s, lab.ErrGiveUp, tail(p.Log(), 30))
		}
		if !strings.Contains(p.Log(), s) {
			return fmt.Errorf("%s has not logged %q", p.Name(), s)
		}
		return nil
	})
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
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

// l2Lab is a flat segment: the client's bridge br0 (198.18.2.1/24) with
// node0 and node1 plugged in (198.18.2.10, .11 on eth0). The VIP is in a
// layer2 pool answered on eth0; exactly one node owns it.
type l2Lab struct {
	l      *lab.Lab
	bin    string
	client *lab.Host
	nodes  []*lab.Host
	macs   []string
	agents []*lab.Process
	starts int
	svcDir string
	cfgDir string
	prefix []string
}

func newL2Lab(t *testing.T, prefix []string) *l2Lab {
	t.Helper()
	requireTools(t, "ping", "arping")
	bin := agentBinary(t)
	l := lab.New(t)
	tp := &l2Lab{l: l, bin: bin, client: l.MustHost("client"), prefix: prefix}
	l.MustBridge(tp.client, "br0", []string{"198.18.2.1/24"})
	run(t, tp.client, "ip", "route", "add", "203.0.113.0/24", "dev", "br0")
	var join []string
	for i := range 2 {
		h := l.MustHost(fmt.Sprintf("node%d", i))
		l.MustLinkToBridge(h, "eth0", []string{fmt.Sprintf("198.18.2.%d/24", 10+i)}, tp.client, "br0")
		tp.nodes = append(tp.nodes, h)
		tp.macs = append(tp.macs, strings.TrimSpace(run(t, h, "cat", "/sys/class/net/eth0/address")))
		join = append(join, fmt.Sprintf("%q", fmt.Sprintf("198.18.2.%d", 10+i)))
	}
	tp.svcDir = filepath.Join(l.Dir(), "services")
	tp.cfgDir = filepath.Join(l.Dir(), "config")
	for _, d := range []string{tp.svcDir, tp.cfgDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	secret := filepath.Join(tp.cfgDir, "membership.key")
	writeFile(t, secret, "c2VjcmV0LWZvci10aGUtZmF1bHQtZTJlLXRlc3RzLg==\n")
	writeFile(t, filepath.Join(tp.cfgDir, "vipspeaker.toml"), fmt.Sprintf(`
[[pools]]
name = "flat"
addresses = ["203.0.113.0/28"]
mode = "layer2"
  [pools.layer2]
  interfaces = ["eth0"]

[layer2]
gratuitous-count = 3
gratuitous-interval = "100ms"

[membership]
join = [%s]
secret-file = %q
`, strings.Join(join, ", "), secret))
	writeFile(t, filepath.Join(tp.svcDir, "web.yaml"), service("web", "flat", vip))
	tp.agents = make([]*lab.Process, len(tp.nodes))
	return tp
}

// start starts node i's agent and waits until its responder is up.
func (tp *l2Lab) start(t *testing.T, i int) *lab.Process {
	t.Helper()
	tp.starts++
	argv := append(slices.Clone(tp.prefix), tp.bin, "run", "--services-dir", tp.svcDir, "--config-dir", tp.cfgDir,
		"--run-dir", filepath.Join(tp.l.Dir(), fmt.Sprintf("run-node%d", i)),
		"--node-name", fmt.Sprintf("node%d", i), "--log-level", "info")
	p, err := tp.nodes[i].Start(fmt.Sprintf("vipspeaker-%d", tp.starts), argv)
	if err != nil {
		t.Fatal(err)
	}
	tp.agents[i] = p
	waitLog(t, p, "answering ARP/NDP on layer2 interface", 20*time.Second)
	return p
}

// failoverBound is what README.md promises: failover in under a second.
const failoverBound = time.Second

// waitJoined waits until node i's agent has seen the other node join its
// membership.
func (tp *l2Lab) waitJoined(t *testing.T, i int) {
	t.Helper()
	waitLog(t, tp.agents[i], fmt.Sprintf("msg=\"speaker joined\" component=membership node=node%d ", 1-i), routeBound)
}

// startARPProber asks for the VIP from the client's br0 every 10 ms
// (lab.ARPProber: replies timed by the kernel, the client's neighbour
// table untouched), stopped at the end of the test.
func startARPProber(t *testing.T, client *lab.Host) *lab.ARPProber {
	t.Helper()
	p, err := client.StartARPProber("br0", netip.MustParseAddr("198.18.2.1"), netip.MustParseAddr(vip), pingInterval)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop(0) })
	return p
}

// arpOwners returns the MACs that answer ARP for addr on the segment.
func (tp *l2Lab) arpOwners() []string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, _ := tp.client.Run(ctx, "arping", "-i", "br0", "-c", "3", "-W", "0.2", "-w", "3", "-r", vip)
	seen := map[string]bool{}
	var macs []string
	for _, f := range strings.Fields(strings.ToLower(out)) {
		if len(f) == 17 && strings.Count(f, ":") == 5 && !seen[f] {
			seen[f] = true
			macs = append(macs, f)
		}
	}
	return macs
}

// waitOneOwner waits until exactly one node answers ARP for the VIP and
// returns its index.
func (tp *l2Lab) waitOneOwner(t *testing.T) int {
	t.Helper()
	idx := -1
	lab.Eventually(t, routeBound, 200*time.Millisecond, func() error {
		got := tp.arpOwners()
		if len(got) != 1 {
			return fmt.Errorf("ARP answers for %s from %v, want exactly one node", vip, got)
		}
		idx = slices.Index(tp.macs, got[0])
		if idx < 0 {
			return fmt.Errorf("%s answered by %s, not a node's eth0 (%v)", vip, got[0], tp.macs)
		}
		return nil
	})
	return idx
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
