package faultkube_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/vipspeaker/vipspeaker/kube"
	"github.com/vipspeaker/vipspeaker/test/lab"
	"github.com/vipspeaker/vipspeaker/test/lab/kubeapi"
)

// Lab addresses (LAB.md): one segment for the router, the API server and
// the nodes; the client sits behind the router on its own link.
const (
	routerAddr  = "198.18.10.1"
	routerAddr6 = "2001:db8:10::1"
	apiAddr     = "198.18.10.100"
	clientAddr  = "198.18.20.2"
	clientNet   = "198.18.20.0/24"
	clientNet6  = "2001:db8:20::/64"
	svcNS       = "e2e"
	metricsPort = "9472"
)

var (
	nodeNames  = []string{"n1", "n2"}
	nodeAddrs  = map[string]string{"n1": "198.18.10.11", "n2": "198.18.10.12"}
	nodeAddrs6 = map[string]string{"n1": "2001:db8:10::11", "n2": "2001:db8:10::12"}
)

// baseTOML is the ConfigMap's vipspeaker.toml: pool public (IPv4, auto)
// and bulk6 (IPv6, by annotation) — 1,000 IPv4 VIPs do not fit in the lab's
// two /24s.
const baseTOML = `default-class = false

[interface]
name = "kube-lb0"
kind = "ifb"

[[pools]]
name = "public"
addresses = ["203.0.113.0/28"]

[[pools]]
name = "bulk6"
addresses = ["2001:db8:200::/116"]
auto-assign = false
`

var baseGoBGP = lab.GoBGPConf{AS: 64512, Neighbors: []lab.GoBGPNeighbor{
	{Address: routerAddr, PeerAS: 64500, HoldTime: 9, KeepaliveInterval: 3, ConnectRetry: 1},
	{Address: routerAddr6, PeerAS: 64500, HoldTime: 9, KeepaliveInterval: 3, ConnectRetry: 1, Families: []string{"ipv6-unicast"}},
}}.String()

func frrConf() string {
	c := lab.FRRBGPConf{AS: 64500, RouterID: routerAddr, MaximumPaths: 8, NoDefaultIPv4: true}
	for _, n := range nodeNames {
		for i, a := range []string{nodeAddrs[n], nodeAddrs6[n]} {
			c.Neighbors = append(c.Neighbors, lab.FRRNeighbor{Addr: a, AS: 64512, Timers: "3 9", ConnectRetry: 2, IPv4: i == 0, IPv6: i == 1})
		}
	}
	return c.String()
}

// env is one lab: router (FRR), API server, two nodes with agents, client.
type env struct {
	l      *lab.Lab
	api    *kubeapi.Server
	cs     kubernetes.Interface
	frr    *lab.FRR
	router *lab.Host
	client *lab.Host
	nodes  map[string]*lab.Host
	agents map[string]*lab.Process
	bin    string
	kcfg   string
}

func setup(t *testing.T) *env {
	t.Helper()
	lab.RequireFRR(t)
	bin := lab.Vipspeaker(t)
	// RBAC, namespace, ServiceAccount and ConfigMap as a user applies them;
	// the DaemonSet as a dry run (no kubelet here). The agents allocate
	// themselves (run --allocate=true, the default; the tests read the
	// allocator's metrics from the agent holding the Lease): the
	// all-in-one bindings give their ServiceAccount the allocator's rights.
	c := kubeapi.NewCluster(t, kubeapi.ClusterOptions{BridgeAddrs: []string{routerAddr + "/24", routerAddr6 + "/64"}, APIAddr: apiAddr,
		Nodes: nodeNames, NodeAddrs: func(n string) []string { return []string{nodeAddrs[n] + "/24", nodeAddrs6[n] + "/64"} },
		Deploy: true, AllInOne: true, TOML: baseTOML, GoBGP: baseGoBGP, Namespace: svcNS})
	e := &env{l: c.Lab, bin: bin, api: c.API, cs: c.Client, router: c.Bridge, nodes: c.Nodes, agents: map[string]*lab.Process{}, kcfg: c.Kubeconfig}
	if err := e.router.EnableForwarding(); err != nil {
		t.Fatal(err)
	}
	for _, h := range e.nodes {
		// Replies to the client go back through the router.
		if err := h.AddRoute(clientNet, routerAddr); err != nil {
			t.Fatal(err)
		}
		if err := h.AddRoute(clientNet6, routerAddr6); err != nil {
			t.Fatal(err)
		}
	}
	e.client = e.l.MustHost("client")
	e.l.MustLink(e.client, "eth0", []string{clientAddr + "/24", "2001:db8:20::2/64"}, e.router, "eth1", []string{"198.18.20.1/24", "2001:db8:20::1/64"})
	if err := e.client.AddRoute("default", "198.18.20.1"); err != nil {
		t.Fatal(err)
	}
	var err error
	if e.frr, err = e.router.StartFRR(lab.FRRConfig{BGPd: frrConf()}); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodeNames {
		e.startAgent(t, n)
	}
	for _, n := range nodeNames {
		for _, a := range []string{nodeAddrs[n], nodeAddrs6[n]} {
			if err := e.frr.WaitEstablished(a, 60*time.Second); err != nil {
				t.Fatalf("FRR and %s (%s): %v", n, a, err)
			}
		}
	}
	return e
}

func (e *env) setConfigMap(t *testing.T, toml, gobgp string) {
	t.Helper()
	if err := e.api.SetAgentConfig(toml, gobgp); err != nil {
		t.Fatal(err)
	}
}

func (e *env) startAgent(t *testing.T, n string) {
	t.Helper()
	p, err := e.nodes[n].Start("agent", []string{e.bin, "run",
		"--kubeconfig", e.kcfg, "--node-name", n, "--run-dir", filepath.Join(e.l.Dir(), "run-"+n),
		"--lease-duration", "4s", "--metrics-addr", net.JoinHostPort(nodeAddrs[n], metricsPort), "--log-level", "info"})
	if err != nil {
		t.Fatal(err)
	}
	e.agents[n] = p
}

// checkAgentsAlive fails the test when an agent exited (a crash or a
// fatal error is a finding of its own).
func (e *env) checkAgentsAlive(t *testing.T) {
	t.Helper()
	for _, n := range nodeNames {
		if p := e.agents[n]; p.Exited() {
			t.Errorf("agent on %s exited: %v", n, p.Wait())
		}
	}
}

type svcOpt = kubeapi.ServiceOption

var withAnn = kubeapi.WithAnnotation

func ipv6Only(s *corev1.Service) {
	single := corev1.IPFamilyPolicySingleStack
	s.Spec.IPFamilyPolicy = &single
	s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv6Protocol}
}

func newService(name string, opts ...svcOpt) *corev1.Service {
	return kubeapi.LoadBalancer(name, svcNS, opts...)
}

func (e *env) createService(t *testing.T, name string, opts ...svcOpt) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := e.cs.CoreV1().Services(svcNS).Create(ctx, newService(name, opts...), metav1.CreateOptions{}); err != nil {
		t.Fatalf("create service %s: %v", name, err)
	}
}

// waitIngress waits until the Service's status has one address.
func (e *env) waitIngress(t *testing.T, name string, timeout time.Duration) netip.Addr {
	t.Helper()
	var got []netip.Addr
	lab.Eventually(t, timeout, 100*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s, err := e.cs.CoreV1().Services(svcNS).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		got = kube.Ingress(s)
		if len(got) != 1 {
			return fmt.Errorf("service %s has ingress %v, want one address", name, got)
		}
		return nil
	})
	return got[0]
}

// waitEvent waits for an Event of reason on object name in namespace ns
// whose message contains every one of substrs, and returns its message.
func (e *env) waitEvent(t *testing.T, ns, name, reason string, timeout time.Duration, substrs ...string) string {
	t.Helper()
	var msg string
	lab.Eventually(t, timeout, 200*time.Millisecond, func() error {
		evs, err := e.api.Events(ns, name, reason)
		if err != nil {
			return err
		}
	next:
		for _, ev := range evs {
			for _, s := range substrs {
				if !strings.Contains(ev.Message, s) {
					continue next
				}
			}
			msg = ev.Message
			return nil
		}
		var have []string
		for _, ev := range evs {
			have = append(have, ev.Message)
		}
		return fmt.Errorf("no %s event on %s/%s containing %q; have %q", reason, ns, name, substrs, have)
	})
	return msg
}

// gateways returns the router kernel's next hops for vip (sorted), nil
// when there is no route.
func (e *env) gateways(vip netip.Addr) ([]string, error) {
	return e.router.Gateways(lab.HostPrefix(vip))
}

// waitRouted waits until the router's kernel routes vip through both
// nodes (ECMP), or has no route to it when want is false.
func (e *env) waitRouted(t *testing.T, vip netip.Addr, want bool, timeout time.Duration) {
	t.Helper()
	lab.Eventually(t, timeout, 100*time.Millisecond, func() error {
		gws, err := e.gateways(vip)
		if err != nil {
			return err
		}
		if want && len(gws) != len(nodeNames) {
			return fmt.Errorf("router kernel route to %s: next hops %v, want one per node (%d)", vip, gws, len(nodeNames))
		}
		if !want && gws != nil {
			return fmt.Errorf("router kernel still routes %s via %v", vip, gws)
		}
		return nil
	})
}

// routeWatch polls the router's kernel every 20 ms and counts the polls
// in which a watched VIP had no route or fewer next hops than nodes.
type routeWatch struct {
	mu    sync.Mutex
	polls int
	gaps  []string // "vip at +1.23s: next hops [...]"
	start time.Time
	stop  func()
}

func (e *env) watchRoutes(vips ...netip.Addr) *routeWatch {
	w := &routeWatch{start: time.Now()}
	w.stop = e.router.WatchKernelRoutes(20*time.Millisecond, func(since time.Duration, rs []lab.KernelRoute) {
		hops := map[netip.Prefix]int{}
		for _, r := range rs {
			hops[r.Dst] = len(r.Gateways)
		}
		w.mu.Lock()
		defer w.mu.Unlock()
		w.polls++
		for _, v := range vips {
			if n := hops[netip.PrefixFrom(v, v.BitLen())]; n != len(nodeNames) && len(w.gaps) < 20 {
				w.gaps = append(w.gaps, fmt.Sprintf("%s at +%s: %d next hops", v, since.Round(time.Millisecond), n))
			}
		}
	})
	return w
}

// Stop ends the watch and returns how many polls ran and the gaps seen.
func (w *routeWatch) Stop() (int, []string) {
	w.stop()
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.polls, append([]string(nil), w.gaps...)
}

// metrics scrapes an agent's /metrics (dialled from inside its node) and
// returns every sample as "name{labels}" → value.
func (e *env) metrics(node string) (map[string]float64, error) {
	body, err := e.get(node, "/metrics")
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		out[line[:i]] = v
	}
	return out, sc.Err()
}

var httpClients sync.Map // node -> *http.Client

func (e *env) httpClient(node string) *http.Client {
	key := fmt.Sprintf("%p/%s", e, node)
	if c, ok := httpClients.Load(key); ok {
		return c.(*http.Client)
	}
	h := e.nodes[node]
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var conn net.Conn
			err := h.Do(func() error {
				var err error
				conn, err = (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, network, addr)
				return err
			})
			return conn, err
		},
		MaxIdleConnsPerHost: 2,
		// Plain text: a gzip-compressed scrape leaves compressors in the
		// agent's sync.Pool, heap the memory test would count.
		DisableCompression: true,
	}}
	httpClients.Store(key, c)
	return c
}

func (e *env) get(node, path string) (string, error) {
	resp, err := e.httpClient(node).Get("http://" + net.JoinHostPort(nodeAddrs[node], metricsPort) + path)
	if err != nil {
		return "", fmt.Errorf("agent on %s: GET %s: %w", node, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", fmt.Errorf("agent on %s: GET %s: %w", node, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("agent on %s: GET %s: %s: %s", node, path, resp.Status, b)
	}
	return string(b), nil
}

// waitMetric waits until the agent's sample key has value want.
func (e *env) waitMetric(t *testing.T, node, key string, want float64, timeout time.Duration) {
	t.Helper()
	lab.Eventually(t, timeout, 200*time.Millisecond, func() error {
		m, err := e.metrics(node)
		if err != nil {
			return err
		}
		v, ok := m[key]
		if !ok || v != want {
			return fmt.Errorf("agent on %s: %s = %v (present %v), want %v", node, key, v, ok, want)
		}
		return nil
	})
}

// frrSession is what FRR says about one BGP session.
type frrSession struct {
	State       string
	Established int // connectionsEstablished
	Dropped     int // connectionsDropped
	Up          time.Duration
	At          time.Time // when FRR was asked
}

func (e *env) session(t *testing.T, peer string) frrSession {
	t.Helper()
	var doc map[string]json.RawMessage
	at := time.Now()
	if err := e.frr.VtyshJSON("show bgp neighbors "+peer+" json", &doc); err != nil {
		t.Fatal(err)
	}
	var s struct {
		BgpState               string `json:"bgpState"`
		ConnectionsEstablished int    `json:"connectionsEstablished"`
		ConnectionsDropped     int    `json:"connectionsDropped"`
		UpMsec                 int64  `json:"bgpTimerUpMsec"`
	}
	if err := json.Unmarshal(doc[peer], &s); err != nil {
		t.Fatalf("FRR neighbor %s: %v", peer, err)
	}
	return frrSession{State: s.BgpState, Established: s.ConnectionsEstablished, Dropped: s.ConnectionsDropped,
		Up: time.Duration(s.UpMsec) * time.Millisecond, At: at}
}

// sessions returns FRR's view of every node session.
func (e *env) sessions(t *testing.T) map[string]frrSession {
	t.Helper()
	out := map[string]frrSession{}
	for _, n := range nodeNames {
		for _, a := range []string{nodeAddrs[n], nodeAddrs6[n]} {
			out[a] = e.session(t, a)
		}
	}
	return out
}
