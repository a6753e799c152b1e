package fleet_test

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vipspeaker/vipspeaker/internal/nstest"
	"github.com/vipspeaker/vipspeaker/kube"
	"github.com/vipspeaker/vipspeaker/test/lab"
	"github.com/vipspeaker/vipspeaker/test/lab/kubeapi"
)

const (
	routerAddr = "198.19.0.1"
	apiAddr    = "198.19.0.2"
	routerAS   = 64500
	nodeAS     = 64512
	ns         = "fleet"
	bgpPool    = "10.200.0.0/20"
	l2Range    = "198.19.0.200-198.19.0.250"
	podCIDR    = "10.244.0.0/16"
)

// opts size a fleet.
type opts struct {
	agents int
	// services LoadBalancer Services over deployments Deployments (each
	// Service selects one, round robin); every localEvery-th Service is
	// externalTrafficPolicy Local, and the first l2 are in the layer-2
	// pool. Deployment d has 1 replica when d%4 == 0 (a Local Service on
	// it has one path), else replicas.
	services, deployments, replicas, localEvery, l2 int
	// wait bounds each wait for the fleet to converge.
	wait time.Duration
}

// fleet is a running lab.
type fleet struct {
	*kubeapi.Cluster
	o      opts
	frr    *lab.FRR
	bin    string
	names  []string
	mu     sync.Mutex
	agents map[string]*lab.Process
	macs   map[string]string // node MAC → node
}

func nodeName(i int) string { return fmt.Sprintf("f%02d", i+1) }
func nodeAddr(i int) string { return fmt.Sprintf("198.19.0.%d", 10+i) }

// start builds the segment, the control plane, KWOK, FRR and the agents,
// and waits until every Node is Ready and every BGP session is up.
func start(tb testing.TB, o opts) *fleet {
	tb.Helper()
	lab.RequireFRR(tb)
	if o.agents > 180 {
		tb.Fatalf("at most 180 agents on one /24 (%d)", o.agents)
	}
	// Every agent talks to every other (the layer2 membership): about
	// agents² neighbour entries in the kernel's one table for all
	// namespaces.
	lab.RoomForNeighbours(tb, max(4096, 2*(o.agents+5)*(o.agents+5)))
	bin := lab.Vipspeaker(tb)
	paths, err := kubeapi.BuildComponents("kube-controller-manager", "kube-scheduler")
	if err != nil {
		nstest.Skip(tb, "%v", err)
	}
	kwok, err := kubeapi.KwokBinary()
	if err != nil {
		nstest.Skip(tb, "KWOK: %v", err)
	}
	f := &fleet{o: o, bin: bin, agents: map[string]*lab.Process{}, macs: map[string]string{}}
	addrs := map[string]string{}
	for i := range o.agents {
		f.names = append(f.names, nodeName(i))
		addrs[nodeName(i)] = nodeAddr(i)
	}
	toml := lab.AgentTOML{DefaultClass: "false", Pools: []lab.Pool{
		{Name: "bgp", Addresses: []string{bgpPool}},
		{Name: "l2", Addresses: []string{l2Range}, Manual: true, Layer2Interfaces: []string{"eth0"}},
	}}.String()
	gobgp := lab.GoBGPConf{AS: nodeAS, Neighbors: []lab.GoBGPNeighbor{
		lab.GoBGPNeighbor{Address: routerAddr, PeerAS: routerAS, BFD: true, GracefulRestart: true}.FastTimers()}}.String()
	f.Cluster = kubeapi.NewCluster(tb, kubeapi.ClusterOptions{BridgeAddrs: []string{routerAddr + "/24"}, APIAddr: apiAddr,
		Nodes: f.names, NodeAddrs: func(n string) []string { return []string{addrs[n] + "/24"} },
		Deploy: true, TOML: toml, GoBGP: gobgp, Namespace: ns, Kwok: true})
	api := f.Hosts["api"]
	if _, err := f.API.StartKwok(api, kwok, podCIDR); err != nil {
		tb.Fatal(err)
	}
	if err := f.API.StartControllers(api, paths[0], paths[1], "10.96.0.0/16,2001:db8:ffff::/112", podCIDR); err != nil {
		tb.Fatal(err)
	}
	if _, err := api.Start("allocator", []string{bin, "allocate", "--kubeconfig", f.AllocatorKubeconfig, "--id", "allocator",
		"--lease-duration", "4s", "--metrics-addr", ""}); err != nil {
		tb.Fatal(err)
	}
	// The router waits for the nodes to connect (passive), as a router
	// with a listen range for a rack does: with both sides connecting,
	// fifty sessions starting together collided and reset each other
	// (GoBGP saw FRR's second OPEN as a graceful restart).
	frr := lab.FRRBGPConf{AS: routerAS, RouterID: routerAddr, MaximumPaths: 64, Global: []string{"bgp graceful-restart"}}
	for _, n := range f.names {
		a := addrs[n]
		frr.Neighbors = append(frr.Neighbors, lab.FRRNeighbor{Addr: a, AS: nodeAS, Timers: "3 9", ConnectRetry: 2,
			Lines: []string{"neighbor " + a + " bfd", "neighbor " + a + " bfd profile fast", "neighbor " + a + " passive"}})
	}
	if f.frr, err = f.Bridge.StartFRR(lab.FRRConfig{BGPd: frr.String(), BFDd: routerBFD, LogLevel: "warnings"}); err != nil {
		tb.Fatal(err)
	}
	// The router shares two cores with the agents, the API server and
	// KWOK; a real one has its own. Starved, its bgpd read an agent's
	// closed session (graceful restart: routes kept) only after bfdd had
	// declared the agent down 300 ms later (routes flushed): a rolling
	// restart in a fresh-clone CI run, beside another package, lost the
	// restarted node's single-path routes for two seconds.
	if err := f.frr.Renice(-10); err != nil {
		tb.Fatal(err)
	}
	lab.Eventually(tb, 2*time.Minute, 500*time.Millisecond, f.nodesReady)
	// Ten at a time, each ten's sessions up before the next starts: fifty
	// agents starting at once on two cores kept FRR's sessions clearing
	// for minutes.
	for i, n := range f.names {
		l, err := f.Nodes[n].Netlink().LinkByName("eth0")
		if err != nil {
			tb.Fatal(err)
		}
		f.macs[l.Attrs().HardwareAddr.String()] = n
		f.startAgent(tb, n)
		if (i+1)%10 == 0 || i == len(f.names)-1 {
			f.waitSessions(tb, f.names[:i+1], 3*time.Minute)
		}
	}
	return f
}

// routerBFD is lab.FRRFastBFD with the router's detect multiplier at 10:
// the router still declares a node dead after the node's 3 × 100 ms (the
// remote's multiplier counts, RFC 5880 6.8.4), while a node whose agent
// is starved of CPU for a moment — fifty agents on two cores — does not
// declare the router dead and reset its session.
const routerBFD = "bfd\n profile fast\n  receive-interval 100\n  transmit-interval 100\n  detect-multiplier 10\n !\n!\n"

// waitSessions waits until FRR's session with each of names is up.
func (f *fleet) waitSessions(tb testing.TB, names []string, timeout time.Duration) {
	tb.Helper()
	lab.Eventually(tb, timeout, 500*time.Millisecond, func() error {
		sum, err := f.summary()
		if err != nil {
			return err
		}
		for _, n := range names {
			if p := sum[nodeAddr(slices.Index(f.names, n))]; p.State != "Established" {
				return fmt.Errorf("FRR and %s: %q", n, p.State)
			}
		}
		return nil
	})
}

// nodesReady: every Node Ready (KWOK's doing).
func (f *fleet) nodesReady() error {
	l, err := f.Client.CoreV1().Nodes().List(context.Background(), metav1.ListOptions{})
	if err != nil {
		return err
	}
	ready := 0
	for _, n := range l.Items {
		if kube.NodeEligible(&n) {
			ready++
		}
	}
	if ready != f.o.agents {
		return fmt.Errorf("%d of %d Nodes Ready", ready, f.o.agents)
	}
	return nil
}

func (f *fleet) startAgent(tb testing.TB, n string) {
	tb.Helper()
	p, err := f.Nodes[n].Start(fmt.Sprintf("agent-%s-%d", n, time.Now().UnixNano()%100000), []string{f.bin, "run",
		"--kubeconfig", f.Kubeconfig, "--node-name", n, "--run-dir", filepath.Join(f.Lab.Dir(), "run-"+n),
		"--allocate=false", "--metrics-addr", "127.0.0.1:9472", "--debug-addr", "127.0.0.1:6060", "--log-level", "info"})
	if err != nil {
		tb.Fatal(err)
	}
	f.mu.Lock()
	f.agents[n] = p
	f.mu.Unlock()
}

func (f *fleet) agent(n string) *lab.Process {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.agents[n]
}

// peer is one neighbor in FRR's summary.
type peer struct {
	State  string `json:"state"`
	PfxRcd int    `json:"pfxRcd"`
}

func (f *fleet) summary() (map[string]peer, error) {
	var s struct {
		IPv4Unicast struct {
			Peers map[string]peer `json:"peers"`
		} `json:"ipv4Unicast"`
	}
	if err := f.frr.VtyshJSON("show bgp summary json", &s); err != nil {
		return nil, err
	}
	return s.IPv4Unicast.Peers, nil
}

// deploy creates the Deployments (KWOK runs their Pods) and waits until
// every replica is available.
func (f *fleet) deploy(tb testing.TB) {
	tb.Helper()
	ctx := context.Background()
	var g errgroup.Group
	g.SetLimit(8)
	want := 0
	for d := range f.o.deployments {
		r := int32(f.o.replicas)
		if d%4 == 0 {
			r = 1
		}
		want += int(r)
		name := fmt.Sprintf("app-%d", d)
		g.Go(func() error {
			_, err := f.Client.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{
				ObjectMeta: metav1.ObjectMeta{Name: name},
				Spec: appsv1.DeploymentSpec{Replicas: &r, Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
					Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": name}},
						Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "fleet.invalid/app:1"}}}}},
			}, metav1.CreateOptions{})
			return err
		})
	}
	if err := g.Wait(); err != nil {
		tb.Fatal(err)
	}
	lab.Eventually(tb, 3*time.Minute, time.Second, func() error {
		l, err := f.Client.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		avail := 0
		for _, d := range l.Items {
			avail += int(d.Status.AvailableReplicas)
		}
		if avail != want {
			return fmt.Errorf("%d of %d replicas available (KWOK's Pods)", avail, want)
		}
		return nil
	})
}

// service i: which Deployment it selects, whether it is Local, whether
// it is in the layer-2 pool (those are Cluster: every node may own them).
func (f *fleet) service(i int) (name, app string, local, l2 bool) {
	l2 = i < f.o.l2
	return fmt.Sprintf("svc-%d", i), fmt.Sprintf("app-%d", i%f.o.deployments), !l2 && f.o.localEvery > 0 && i%f.o.localEvery == 0, l2
}

// createServices creates every Service, 16 at a time.
func (f *fleet) createServices(tb testing.TB) {
	tb.Helper()
	var g errgroup.Group
	g.SetLimit(16)
	for i := range f.o.services {
		name, app, local, l2 := f.service(i)
		g.Go(func() error {
			svc := kubeapi.LoadBalancer(name, ns, func(s *corev1.Service) {
				s.Spec.Selector = map[string]string{"app": app}
				if local {
					s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
				}
			})
			if l2 {
				kubeapi.WithAnnotation(kube.AnnotationPool, "l2")(svc)
			}
			_, err := f.Client.CoreV1().Services(ns).Create(context.Background(), svc, metav1.CreateOptions{})
			return err
		})
	}
	if err := g.Wait(); err != nil {
		tb.Fatal(err)
	}
}

// vips are the Services' addresses: BGP ones with the nodes expected as
// next hops (all for Cluster, the backends' nodes for Local), layer-2 ones.
type vips struct {
	bgp map[netip.Addr][]string
	l2  []netip.Addr
}

// addresses waits until every Service has its address and returns them.
func (f *fleet) addresses(tb testing.TB, timeout time.Duration) vips {
	tb.Helper()
	var v vips
	lab.Eventually(tb, timeout, time.Second, func() error {
		ctx := context.Background()
		svcs, err := f.Client.CoreV1().Services(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		pods, err := f.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		nodesOf := map[string][]string{}
		for _, p := range pods.Items {
			if p.Spec.NodeName != "" && p.DeletionTimestamp == nil {
				nodesOf[p.Labels["app"]] = append(nodesOf[p.Labels["app"]], p.Spec.NodeName)
			}
		}
		v = vips{bgp: map[netip.Addr][]string{}}
		missing := 0
		for _, s := range svcs.Items {
			if len(s.Status.LoadBalancer.Ingress) == 0 {
				missing++
				continue
			}
			a := netip.MustParseAddr(s.Status.LoadBalancer.Ingress[0].IP)
			switch {
			case s.Annotations[kube.AnnotationPool] == "l2":
				v.l2 = append(v.l2, a)
			case s.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal:
				hops := slices.Clone(nodesOf[s.Spec.Selector["app"]])
				slices.Sort(hops)
				v.bgp[a] = slices.Compact(hops)
			default:
				v.bgp[a] = f.names
			}
		}
		if missing > 0 {
			return fmt.Errorf("%d of %d Services without an address", missing, len(svcs.Items))
		}
		return nil
	})
	return v
}

// routed counts the BGP VIPs the router's kernel routes via exactly the
// nodes expected, and returns the first one that is not.
func (f *fleet) routed(v vips) (int, string, error) {
	rs, err := f.Bridge.KernelRoutes()
	if err != nil {
		return 0, "", err
	}
	byAddr := map[string]string{}
	for i, n := range f.names {
		byAddr[nodeAddr(i)] = n
	}
	got := map[netip.Addr][]string{}
	for _, r := range rs {
		if r.Protocol != "bgp" || !r.Dst.IsSingleIP() {
			continue
		}
		var hops []string
		for _, g := range r.Gateways {
			hops = append(hops, byAddr[g.String()])
		}
		slices.Sort(hops)
		got[r.Dst.Addr()] = hops
	}
	ok, bad := 0, ""
	for a, want := range v.bgp {
		if slices.Equal(got[a], want) {
			ok++
		} else if bad == "" {
			bad = fmt.Sprintf("%s via %v, want %v", a, got[a], want)
		}
	}
	return ok, bad, nil
}

// owner asks the segment who answers ARP for a and returns the node.
func (f *fleet) owner(a netip.Addr) (string, error) {
	macs := lab.MACs(strings.Join(f.Bridge.ARPing("br0", a.String(), 2, 100*time.Millisecond), " "))
	if len(macs) != 1 || f.macs[macs[0]] == "" {
		return "", fmt.Errorf("ARP for %s answered by %v, want one node", a, macs)
	}
	return f.macs[macs[0]], nil
}

// converge waits until every BGP VIP is routed via its nodes and every
// layer-2 VIP has one owner.
func (f *fleet) converge(tb testing.TB, v vips, timeout time.Duration) {
	tb.Helper()
	lab.Eventually(tb, timeout, 500*time.Millisecond, func() error {
		ok, bad, err := f.routed(v)
		if err != nil {
			return err
		}
		if ok < len(v.bgp) {
			return fmt.Errorf("%d of %d BGP VIPs routed as expected (%s)", ok, len(v.bgp), bad)
		}
		return nil
	})
	for _, a := range v.l2 {
		lab.Eventually(tb, timeout, 200*time.Millisecond, func() error { _, err := f.owner(a); return err })
	}
}

// usage is what the agents cost: RSS (KiB) per agent, CPU seconds per
// agent over a window, and what they asked of the API server in it:
// requests and watch events received, all agents together.
type usage struct {
	rssKB            []int
	cpu              []float64
	requests, events float64
}

// watchedResources are the resource label values of
// vipspeaker_kube_watch_events_total.
var watchedResources = []string{"services", "nodes", "endpointslices", "configmaps", "secrets", "vipspeakernodes"}

// eventsByResource sums the agents' watch events per resource.
func (f *fleet) eventsByResource(tb testing.TB) map[string]float64 {
	tb.Helper()
	out := map[string]float64{}
	for _, n := range f.names {
		m, err := f.Nodes[n].Metrics()
		if err != nil {
			tb.Fatal(err)
		}
		for _, r := range watchedResources {
			out[r] += lab.MetricSum(m, "vipspeaker_kube_watch_events_total", map[string]string{"resource": r})
		}
	}
	return out
}

// settle waits until no agent has received a Service watch event for two
// seconds (the allocator's condition writes have stopped) and returns how
// long that took; still busy after timeout, it fails the test: Services
// rewritten forever would be a write storm every agent pays for.
func (f *fleet) settle(tb testing.TB, timeout time.Duration) time.Duration {
	tb.Helper()
	start := time.Now()
	last := f.eventsByResource(tb)["services"]
	for {
		time.Sleep(2 * time.Second) // the quiet interval being measured
		now := f.eventsByResource(tb)["services"]
		if now == last {
			return time.Since(start)
		}
		if time.Since(start) > timeout {
			tb.Fatalf("Services still updated %v after convergence: %.0f Service watch events in the last 2 s, all agents together", timeout, now-last)
		}
		last = now
	}
}

// apiCounts sums the agents' API requests (all methods, or those given)
// and the watch events their informers received, from their /metrics.
func (f *fleet) apiCounts(tb testing.TB, methods ...string) (requests, events float64) {
	tb.Helper()
	for _, n := range f.names {
		m, err := f.Nodes[n].Metrics()
		if err != nil {
			tb.Fatal(err)
		}
		if len(methods) == 0 {
			requests += lab.MetricSum(m, "vipspeaker_kube_api_requests_total", nil)
		}
		for _, method := range methods {
			requests += lab.MetricSum(m, "vipspeaker_kube_api_requests_total", map[string]string{"method": method})
		}
		events += lab.MetricSum(m, "vipspeaker_kube_watch_events_total", nil)
	}
	return requests, events
}

// oneService creates one more Service (Cluster, BGP pool) and returns how
// many writes (POST, PATCH, DELETE) all agents made and how many watch
// events they received from the create until it is routed via every node
// and two seconds more.
func (f *fleet) oneService(tb testing.TB) (writes, events float64) {
	tb.Helper()
	w0, e0 := f.apiCounts(tb, "POST", "PATCH", "DELETE")
	svc := kubeapi.LoadBalancer("one-more", ns, func(s *corev1.Service) { s.Spec.Selector = map[string]string{"app": "app-1"} })
	if _, err := f.Client.CoreV1().Services(ns).Create(context.Background(), svc, metav1.CreateOptions{}); err != nil {
		tb.Fatal(err)
	}
	var vip netip.Addr
	lab.Eventually(tb, time.Minute, 100*time.Millisecond, func() error {
		s, err := f.Client.CoreV1().Services(ns).Get(context.Background(), "one-more", metav1.GetOptions{})
		if err != nil || len(s.Status.LoadBalancer.Ingress) == 0 {
			return fmt.Errorf("one-more has no address (%v)", err)
		}
		vip = netip.MustParseAddr(s.Status.LoadBalancer.Ingress[0].IP)
		return nil
	})
	f.converge(tb, vips{bgp: map[netip.Addr][]string{vip: f.names}}, time.Minute)
	time.Sleep(2 * time.Second) // the writes that follow the route (Events, conditions) land in this window
	w1, e1 := f.apiCounts(tb, "POST", "PATCH", "DELETE")
	return w1 - w0, e1 - e0
}

func (u usage) rssMiB(p float64) float64 {
	s := slices.Clone(u.rssKB)
	sort.Ints(s)
	return float64(s[min(len(s)-1, int(p*float64(len(s))))]) / 1024
}

func (u usage) cpuAt(p float64) float64 {
	s := slices.Clone(u.cpu)
	sort.Float64s(s)
	return s[min(len(s)-1, int(p*float64(len(s))))]
}

// idle measures the agents over window with nothing changing.
func (f *fleet) idle(tb testing.TB, window time.Duration) usage {
	tb.Helper()
	ticks := func() []int64 {
		var t []int64
		for _, n := range f.names {
			c, err := lab.CPUTicks(f.agent(n).PID())
			if err != nil {
				tb.Fatal(err)
			}
			t = append(t, c)
		}
		return t
	}
	r0, e0 := f.apiCounts(tb)
	by0 := f.eventsByResource(tb)
	before := ticks()
	time.Sleep(window) // the measurement window itself: nothing to await
	after := ticks()
	r1, e1 := f.apiCounts(tb)
	by1 := f.eventsByResource(tb)
	u := usage{requests: r1 - r0, events: e1 - e0}
	for _, r := range watchedResources {
		if d := by1[r] - by0[r]; d > 0 {
			tb.Logf("idle: %.0f %s watch events over %v, all agents together", d, r, window)
		}
	}
	for i, n := range f.names {
		u.cpu = append(u.cpu, float64(after[i]-before[i])/100) // USER_HZ
		kb, err := lab.RSSKB(f.agent(n).PID())
		if err != nil {
			tb.Fatal(err)
		}
		u.rssKB = append(u.rssKB, kb)
	}
	return u
}

// freeze stops node n's agent (SIGSTOP) and returns how long until the
// router's kernel routes probe without n; the agent is thawed and its
// session back before it returns.
func (f *fleet) freeze(tb testing.TB, n string, probe netip.Addr) time.Duration {
	tb.Helper()
	p := f.agent(n)
	start := time.Now()
	if err := p.Signal(syscall.SIGSTOP); err != nil {
		tb.Fatal(err)
	}
	var took time.Duration
	err := lab.Poll(10*time.Second, 10*time.Millisecond, func() error {
		r, ok, err := f.Bridge.KernelRoute(probe.String() + "/32")
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("no route to %s", probe)
		}
		if slices.Contains(r.Gateways, netip.MustParseAddr(nodeAddr(slices.Index(f.names, n)))) {
			return fmt.Errorf("%s still via %s", probe, n)
		}
		took = time.Since(start)
		return nil
	})
	if err2 := p.Signal(syscall.SIGCONT); err2 != nil {
		tb.Fatal(err2)
	}
	if err != nil {
		tb.Fatalf("frozen %s: %v", n, err)
	}
	if err := f.frr.WaitEstablished(nodeAddr(slices.Index(f.names, n)), time.Minute); err != nil {
		tb.Fatal(err)
	}
	return took
}

// kill9Owner kills the agent owning layer-2 VIP a (kill -9) and returns
// how long until another node answers ARP for it (probes every 10 ms);
// the agent is started again before it returns.
func (f *fleet) kill9Owner(tb testing.TB, a netip.Addr) time.Duration {
	tb.Helper()
	n, err := f.owner(a)
	if err != nil {
		tb.Fatal(err)
	}
	pr, err := f.Bridge.StartARPProber("br0", netip.MustParseAddr(routerAddr), a, 10*time.Millisecond)
	if err != nil {
		tb.Fatal(err)
	}
	defer pr.Stop(0)
	start := time.Now()
	if err := f.agent(n).Kill(); err != nil {
		tb.Fatal(err)
	}
	var took time.Duration
	lab.Eventually(tb, 10*time.Second, 10*time.Millisecond, func() error {
		for _, r := range pr.Replies() {
			if r.At.After(start) && f.macs[r.MAC] != n && f.macs[r.MAC] != "" {
				took = r.At.Sub(start)
				return nil
			}
		}
		return fmt.Errorf("no ARP reply for %s from a node other than %s", a, n)
	})
	f.startAgent(tb, n)
	if err := f.frr.WaitEstablished(nodeAddr(slices.Index(f.names, n)), time.Minute); err != nil {
		tb.Fatal(err)
	}
	return took
}

// rollingRestart restarts every agent in turn (SIGTERM, as a DaemonSet
// update does; then a new process), each once its predecessor's session is
// back with all its prefixes, while the router's kernel is watched every
// 50 ms: it returns the BGP VIPs that had no route at some point, and how
// long the whole restart took.
func (f *fleet) rollingRestart(tb testing.TB, v vips) (lost []netip.Addr, took time.Duration) {
	tb.Helper()
	var mu sync.Mutex
	gone := map[netip.Addr]bool{}
	stop := f.Bridge.WatchKernelRoutes(50*time.Millisecond, func(since time.Duration, rs []lab.KernelRoute) {
		have := map[netip.Addr]bool{}
		for _, r := range rs {
			if r.Dst.IsSingleIP() {
				have[r.Dst.Addr()] = true
			}
		}
		mu.Lock()
		defer mu.Unlock()
		missing := 0
		for a := range v.bgp {
			if !have[a] {
				gone[a] = true
				missing++
			}
		}
		if missing > 0 {
			tb.Logf("rolling restart +%v: %d of %d BGP VIPs without a route in the router's kernel (%d routes listed)", since.Round(time.Millisecond), missing, len(v.bgp), len(rs))
		}
	})
	start := time.Now()
	before, err := f.summary()
	if err != nil {
		tb.Fatal(err)
	}
	for i, n := range f.names {
		tb.Logf("rolling restart +%v: restarting %s", time.Since(start).Round(time.Millisecond), n)
		if err := f.agent(n).Stop(); err != nil {
			tb.Logf("stop %s: %v", n, err)
		}
		f.startAgent(tb, n)
		a := nodeAddr(i)
		lab.Eventually(tb, time.Minute, 100*time.Millisecond, func() error {
			s, err := f.summary()
			if err != nil {
				return err
			}
			if p := s[a]; p.State != "Established" || p.PfxRcd < before[a].PfxRcd {
				return fmt.Errorf("%s after its restart: %s, %d prefixes (%d before)", n, p.State, p.PfxRcd, before[a].PfxRcd)
			}
			return nil
		})
	}
	took = time.Since(start)
	stop()
	mu.Lock()
	defer mu.Unlock()
	for a := range gone {
		lost = append(lost, a)
	}
	slices.SortFunc(lost, netip.Addr.Compare)
	return lost, took
}
