package sidebyside

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/vipspeaker/vipspeaker/test/lab"
	"github.com/vipspeaker/vipspeaker/test/lab/kubeapi"
)

// The lab: one flat segment (the router's bridge br0) holds the router,
// the API server, the nodes and the client, so L2 VIPs are answered on it
// and BGP VIPs are routed by the router.
const (
	routerAddr = "198.18.30.1"
	apiAddr    = "198.18.30.100"
	clientAddr = "198.18.30.2"
	routerAS   = 64500
	nodeAS     = 64512
	// bgpPool is announced over BGP (auto-assigned); 16,384 addresses hold
	// the 5,000-Service run. It reaches nothing outside the lab.
	bgpPool = "198.19.0.0/18"
	// l2Pool is answered on the segment (by annotation only).
	l2Pool = "198.18.30.200/29"
	svcNS  = "bench"
)

var nodeNames = []string{"n1", "n2", "n3"}

func nodeAddr(n string) string {
	i := slices.Index(nodeNames, n)
	return fmt.Sprintf("198.18.30.%d", 11+i)
}

// system is one load balancer under test. Each method is called once per
// lab unless it says otherwise.
type system interface {
	Name() string
	// RouterNeighbor returns extra lines for FRR's `router bgp` block for
	// one node's session ("neighbor ADDR …"), and RouterGlobal extra
	// top-level FRR configuration (a BFD profile).
	RouterNeighbor(addr string) []string
	RouterGlobal() string
	// Install writes the system's configuration through the API server
	// (pools, the router as peer, L2), before any of its processes runs.
	Install(t testing.TB, e *env)
	// Start starts the controller (if any) and a speaker on every node.
	Start(t testing.TB, e *env)
	// StartSpeaker starts (again) the speaker on one node.
	StartSpeaker(t testing.TB, e *env, node string)
	Speaker(node string) *lab.Process
	// Controller is the separate controller process, nil when the system
	// has none (here vipspeaker runs all-in-one: its allocator runs in the
	// Lease holder's agent).
	Controller() *lab.Process
	// PoolAnnotations selects pool "bgp" or "l2" for a Service.
	PoolAnnotations(pool string) map[string]string
	// SetCommunity makes the system add community ("64512:100") to every
	// BGP VIP it advertises; "" takes it away again. It is a config change
	// as an operator makes it.
	SetCommunity(t testing.TB, e *env, community string)
	// KubeProxy says whether the lab must play kube-proxy (IPVS, strictARP)
	// so that the node answers for the system's VIPs.
	KubeProxy() bool
}

// env is one lab with one system in it.
type env struct {
	*kubeapi.Cluster
	tb     testing.TB
	sys    system
	cs     kubernetes.Interface
	frr    *lab.FRR
	router *lab.Host
	client *lab.Host
	macs   map[string]string // node → eth0 MAC
	bpffs  string
	// wire captures the BGP sessions on the router's br0, which every
	// node's packets to the router cross (nil unless newEnv was asked).
	wire *lab.BGPCapture

	mu      sync.Mutex
	proxied map[netip.Addr]bool // VIPs the lab's kube-proxy put on kube-ipvs0
}

// newEnv builds the lab for sys and starts it; with capture, the router
// captures the BGP sessions from before the first one opens (env.wire).
func newEnv(t testing.TB, sys system, capture bool) *env {
	t.Helper()
	lab.RequireFRR(t)
	c := kubeapi.NewCluster(t, kubeapi.ClusterOptions{BridgeAddrs: []string{routerAddr + "/24"}, APIAddr: apiAddr,
		Hosts: map[string][]string{"client": {clientAddr + "/24"}},
		Nodes: nodeNames, NodeAddrs: func(n string) []string { return []string{nodeAddr(n) + "/24"} },
		NodeLabels: func(n string) map[string]string {
			return map[string]string{"kubernetes.io/hostname": n, "kubernetes.io/os": "linux"}
		},
		Namespace: svcNS})
	e := &env{Cluster: c, tb: t, sys: sys, router: c.Bridge, client: c.Hosts["client"],
		macs: map[string]string{}, proxied: map[netip.Addr]bool{}}
	if err := e.router.EnableForwarding(); err != nil {
		t.Fatal(err)
	}
	if err := e.client.AddRoute(bgpPool, routerAddr); err != nil {
		t.Fatal(err)
	}
	// The router forwards the client's packets back out of br0 to a node:
	// without this it would send ICMP redirects, the client would then go
	// to the node directly and a route missing at the router would go
	// unnoticed by its pings.
	for _, k := range []struct {
		h   *lab.Host
		key string
	}{{e.router, "net.ipv4.conf.all.send_redirects"}, {e.router, "net.ipv4.conf.br0.send_redirects"},
		{e.client, "net.ipv4.conf.all.accept_redirects"}, {e.client, "net.ipv4.conf.eth0.accept_redirects"}} {
		if err := k.h.Sysctl(k.key, "0"); err != nil {
			t.Fatal(err)
		}
	}
	for n, h := range e.Nodes {
		e.macs[n] = strings.TrimSpace(h.MustRun("cat", "/sys/class/net/eth0/address"))
		if sys.KubeProxy() {
			// kube-proxy in IPVS mode with strictARP, as MetalLB's docs ask.
			h.MustRun("ip", "link", "add", "kube-ipvs0", "type", "ifb")
			h.MustRun("ip", "link", "set", "kube-ipvs0", "up")
			for _, k := range []string{"net.ipv4.conf.all.arp_ignore=1", "net.ipv4.conf.all.arp_announce=2"} {
				kv := strings.SplitN(k, "=", 2)
				if err := h.Sysctl(kv[0], kv[1]); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	e.bpffs = lab.MountBPFFS(t)

	var err error
	if capture {
		if e.wire, err = e.router.StartBGPCapture("br0"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(e.wire.Stop)
	}
	e.frr, err = e.router.StartFRR(lab.FRRConfig{BGPd: e.frrConf(), BFDd: sys.RouterGlobal()})
	if err != nil {
		t.Fatal(err)
	}
	cfg := e.API.Admin()
	cfg.QPS, cfg.Burst = 2000, 4000 // the bench creates thousands of objects
	if e.cs, err = kubernetes.NewForConfig(cfg); err != nil {
		t.Fatal(err)
	}
	sys.Install(t, e)
	sys.Start(t, e)
	e.waitSessions(t)
	return e
}

// frrConf is the router: AS 64500, one session per node with the shortest
// hold time MetalLB accepts (3 s), graceful restart helper on (vipspeaker
// uses it; MetalLB's native mode does not ask for it), ECMP.
func (e *env) frrConf() string {
	c := lab.FRRBGPConf{AS: routerAS, RouterID: routerAddr, MaximumPaths: 16,
		Global: []string{"bgp graceful-restart", "bgp graceful-restart restart-time 30"}}
	for _, n := range nodeNames {
		a := nodeAddr(n)
		c.Neighbors = append(c.Neighbors, lab.FRRNeighbor{Addr: a, AS: int(e.nodesAS()), Timers: "1 3", ConnectRetry: 1, Lines: e.sys.RouterNeighbor(a)})
	}
	return c.String()
}

// nodesAS is the AS FRR expects of the nodes: nodeAS, unless the system
// brings a configuration of its own with another (NodeAS).
func (e *env) nodesAS() uint32 {
	if s, ok := e.sys.(interface{ NodeAS() uint32 }); ok && s.NodeAS() != 0 {
		return s.NodeAS()
	}
	return nodeAS
}

// waitSessions waits until FRR has an established session with every node.
func (e *env) waitSessions(t testing.TB) {
	t.Helper()
	for _, n := range nodeNames {
		if err := e.frr.WaitEstablished(nodeAddr(n), 90*time.Second); err != nil {
			t.Fatalf("%s: FRR and %s: %v\n%s", e.sys.Name(), n, err, e.sys.Speaker(n).Log())
		}
	}
}

// svc describes one Service the bench creates.
type svc struct {
	name  string
	pool  string // "bgp" or "l2"; "": no pool annotation
	local bool   // externalTrafficPolicy: Local with the endpoint on n1
	// annotations are added as they are, the same for both systems (the
	// migration test's MetalLB annotations, which vipspeaker reads too).
	annotations map[string]string
}

// service is the Service object, the same for both systems except the
// pool annotation each one reads.
func (e *env) service(s svc) *corev1.Service {
	ann := map[string]string{}
	if s.pool != "" {
		maps.Copy(ann, e.sys.PoolAnnotations(s.pool))
	}
	maps.Copy(ann, s.annotations)
	o := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: s.name, Namespace: svcNS, Annotations: ann},
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeLoadBalancer,
			Selector: map[string]string{"app": s.name},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}},
			// 5,000 Services would exhaust the NodePort range (30000–32767).
			AllocateLoadBalancerNodePorts: ptr(false),
		},
	}
	if s.local {
		o.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	}
	return o
}

// endpointSlice stands in for the endpoints controller (none runs in the
// lab): one ready endpoint per node, or on n1 only for a Local Service.
func (e *env) endpointSlice(s svc) *discoveryv1.EndpointSlice {
	ready := true
	nodes := nodeNames
	if s.local {
		nodes = nodeNames[:1]
	}
	es := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: s.name + "-lab", Namespace: svcNS,
			Labels: map[string]string{discoveryv1.LabelServiceName: s.name, discoveryv1.LabelManagedBy: "lab"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr("http"), Port: ptr(int32(8080)), Protocol: ptr(corev1.ProtocolTCP)}},
	}
	for i, n := range nodes {
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{
			Addresses:  []string{fmt.Sprintf("10.244.%d.%d", i+1, 10)},
			Conditions: discoveryv1.EndpointConditions{Ready: &ready, Serving: &ready, Terminating: ptr(false)},
			NodeName:   ptr(n),
		})
	}
	return es
}

func ptr[T any](v T) *T { return &v }

// createService creates the EndpointSlice, then the Service, and returns
// the moment the Service was created.
func (e *env) createService(t testing.TB, s svc) time.Time {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := e.cs.DiscoveryV1().EndpointSlices(svcNS).Create(ctx, e.endpointSlice(s), metav1.CreateOptions{}); err != nil {
		t.Fatalf("create EndpointSlice for %s: %v", s.name, err)
	}
	at := time.Now()
	if _, err := e.cs.CoreV1().Services(svcNS).Create(ctx, e.service(s), metav1.CreateOptions{}); err != nil {
		t.Fatalf("create Service %s: %v", s.name, err)
	}
	return at
}

// ingress returns the Service's first status address, if any.
func (e *env) ingress(name string) (netip.Addr, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := e.cs.CoreV1().Services(svcNS).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return netip.Addr{}, err
	}
	for _, i := range s.Status.LoadBalancer.Ingress {
		if a, err := netip.ParseAddr(i.IP); err == nil {
			return a, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("service %s has no address yet", name)
}

func (e *env) waitIngress(t testing.TB, name string, timeout time.Duration) netip.Addr {
	t.Helper()
	var a netip.Addr
	lab.Eventually(t, timeout, 5*time.Millisecond, func() error {
		var err error
		a, err = e.ingress(name)
		return err
	})
	return a
}

// proxy plays kube-proxy for a VIP when the system needs it: the address
// on kube-ipvs0 on every node.
func (e *env) proxy(t testing.TB, vip netip.Addr) {
	t.Helper()
	if !e.sys.KubeProxy() {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.proxied[vip] {
		return
	}
	for _, n := range nodeNames {
		if err := e.Nodes[n].AddAddr("kube-ipvs0", vip.String()+"/32"); err != nil {
			t.Fatal(err)
		}
	}
	e.proxied[vip] = true
}

// hops returns the router kernel's next hops for vip, sorted; nil when
// there is no route.
func (e *env) hops(vip netip.Addr) ([]string, error) { return e.router.Gateways(lab.HostPrefix(vip)) }

// waitHops waits until the router's kernel routes vip through exactly n
// next hops (0: no route), polling every interval, and returns when it
// saw that.
func (e *env) waitHops(t testing.TB, vip netip.Addr, n int, interval, timeout time.Duration) time.Time {
	t.Helper()
	var at time.Time
	lab.Eventually(t, timeout, interval, func() error {
		h, err := e.hops(vip)
		if err != nil {
			return err
		}
		if len(h) != n {
			return fmt.Errorf("%s: router's kernel routes %s via %v, want %d next hops", e.sys.Name(), vip, h, n)
		}
		at = time.Now()
		return nil
	})
	return at
}
