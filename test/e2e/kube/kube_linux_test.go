// Package kube_test runs vipspeaker against a real kube-apiserver (built by
// test/apiserver/build.sh) and etcd (Debian's etcd-server), served on a lab
// address, with RBAC on and the agents authenticated as the ServiceAccount
// the deploy/kustomize manifests bind. TestKube's three agents allocate
// themselves (run --allocate=true, the flag's default: the all-in-one
// install, deploy/kustomize-all-in-one's bindings give their
// ServiceAccount the allocator's rights); TestKubeLayer2 and
// TestAllocatorReplicasLeaseHolderKilled run as shipped, speakers with
// --allocate=false and `vipspeaker allocate` as the allocator's
// ServiceAccount. The node namespaces run the agent (kube controller + VIP
// table + embedded GoBGP) and peer with FRR on a router namespace; the
// tests look at Service status, Events and FRR's BGP table and kernel.
package kube_test

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/vipspeaker/vipspeaker/kube"
	"github.com/vipspeaker/vipspeaker/test/lab"
	"github.com/vipspeaker/vipspeaker/test/lab/kubeapi"
)

const (
	apiAddr    = "198.18.10.100"
	routerAddr = "198.18.10.1"
	ns         = "e2e"
)

var nodeAddrs = map[string]string{"n1": "198.18.10.11", "n2": "198.18.10.12", "n3": "198.18.10.13"}

var testTOML = lab.AgentTOML{DefaultClass: "false", Pools: []lab.Pool{
	{Name: "public", Addresses: []string{"203.0.113.0/28", "2001:db8:100::/124"}},
	{Name: "tiny", Addresses: []string{"198.51.100.200"}, Manual: true},
	{Name: "bench", Addresses: []string{"203.0.113.128/25"}, Manual: true},
	{Name: "bulk", Addresses: []string{"203.0.113.16-203.0.113.127", "198.51.100.16-198.51.100.199"}, Manual: true},
	{Name: "migrated", Addresses: []string{"198.51.100.0/28"}, Manual: true},
}}.String()

// testGoBGP peers with the router over IPv4.
var testGoBGP = lab.GoBGPConf{AS: 64512, Neighbors: []lab.GoBGPNeighbor{
	{Address: routerAddr, PeerAS: 64500, HoldTime: 9, KeepaliveInterval: 3, ConnectRetry: 1}}}.String()

// setupOpts vary the lab for benchmarks.
type setupOpts struct {
	// v6: IPv6 on the LAN, the ipv6-unicast family on every session and
	// a large IPv6 pool "bulk6" (2001:db8:5000::/112), for thousands of
	// VIPs.
	v6 bool
	// speakersOnly: as shipped, speakers with --allocate=false and one
	// `vipspeaker allocate` replica as the allocator's ServiceAccount.
	speakersOnly bool
	// debug: the agents serve Go's profiles on 127.0.0.1:6060 in their
	// namespaces (--debug-addr).
	debug bool
	// pools: more [[pools]] TOML after testTOML's.
	pools string
}

const bulk6Pool = `
[[pools]]
name = "bulk6"
addresses = ["2001:db8:5000::/112"]
auto-assign = false
`

var routerAddr6 = "2001:db8:10::1"

func nodeAddr6(n string) string {
	return "2001:db8:10::" + strings.TrimPrefix(nodeAddrs[n], "198.18.10.")
}

func frrConfWith(o setupOpts) string {
	c := lab.FRRBGPConf{AS: 64500, RouterID: routerAddr, MaximumPaths: 8}
	for _, n := range []string{"n1", "n2", "n3"} {
		c.Neighbors = append(c.Neighbors, lab.FRRNeighbor{Addr: nodeAddrs[n], AS: 64512, Timers: "3 9", ConnectRetry: 2, IPv6: o.v6})
	}
	return c.String()
}

type env struct {
	*kubeapi.Cluster
	cs     kubernetes.Interface
	frr    *lab.FRR
	router *lab.Host
	agents map[string]*lab.Process
	bin    string
	// speakersOnly: the agents run with --allocate=false, next to
	// startAllocator's replicas, as deploy/kustomize ships them.
	speakersOnly bool
	debug        bool
}

func setup(t testing.TB) *env { return setupWith(t, setupOpts{}) }

func setupWith(t testing.TB, o setupOpts) *env {
	t.Helper()
	lab.RequireFRR(t)
	bin := lab.Vipspeaker(t)
	routerAddrs := []string{routerAddr + "/24"}
	toml, gobgp := testTOML+o.pools, testGoBGP
	if o.v6 {
		routerAddrs = append(routerAddrs, routerAddr6+"/64")
		toml += bulk6Pool
		gobgp += "  [[neighbors.afi-safis]]\n    [neighbors.afi-safis.config]\n      afi-safi-name = \"ipv6-unicast\"\n"
	}
	// The manifests, as a user applies them; the DaemonSet only as a
	// server-side dry run (no kubelet here to run it). The agents
	// authenticate as the ServiceAccount the manifests bind, with the
	// all-in-one bindings: they allocate too.
	c := kubeapi.NewCluster(t, kubeapi.ClusterOptions{BridgeAddrs: routerAddrs, APIAddr: apiAddr,
		Nodes: []string{"n1", "n2", "n3"}, NodeAddrs: func(n string) []string {
			if o.v6 {
				return []string{nodeAddrs[n] + "/24", nodeAddr6(n) + "/64"}
			}
			return []string{nodeAddrs[n] + "/24"}
		},
		Deploy: true, AllInOne: !o.speakersOnly, TOML: toml, GoBGP: gobgp, Namespace: ns})
	e := &env{Cluster: c, bin: bin, cs: c.Client, router: c.Bridge, agents: map[string]*lab.Process{}, speakersOnly: o.speakersOnly, debug: o.debug}
	if o.speakersOnly {
		e.startAllocator(t, "allocator")
	}
	var err error
	if e.frr, err = e.router.StartFRR(lab.FRRConfig{BGPd: frrConfWith(o)}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"n1", "n2", "n3"} {
		e.startAgent(t, n)
	}
	for _, n := range []string{"n1", "n2", "n3"} {
		if err := e.frr.WaitEstablished(nodeAddrs[n], 30*time.Second); err != nil {
			t.Fatalf("FRR and %s: %v", n, err)
		}
	}
	return e
}

func (e *env) setReady(t testing.TB, name string, ready bool) {
	t.Helper()
	ctx := context.Background()
	n, err := e.cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: st, Reason: "Test",
		LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}}
	if _, err := e.cs.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func (e *env) startAgent(t testing.TB, n string) {
	t.Helper()
	argv := []string{e.bin, "run",
		"--kubeconfig", e.Kubeconfig, "--node-name", n, "--run-dir", filepath.Join(e.Lab.Dir(), "run-"+n),
		"--lease-duration", "4s", "--metrics-addr", "127.0.0.1:9472", "--log-level", "debug"}
	if e.speakersOnly {
		argv = append(argv, "--allocate=false")
	}
	if e.debug {
		argv = append(argv, "--debug-addr", debugAddr)
	}
	p, err := e.Nodes[n].Start(fmt.Sprintf("agent-%d", time.Now().UnixNano()%100000), argv)
	if err != nil {
		t.Fatal(err)
	}
	e.agents[n] = p
}

// startAllocator starts a replica of the allocator Deployment on the API
// server's host: `vipspeaker allocate` as the allocator's ServiceAccount,
// identity id in the Lease.
func (e *env) startAllocator(t testing.TB, id string) *lab.Process {
	t.Helper()
	p, err := e.Hosts["api"].Start(id, []string{e.bin, "allocate", "--kubeconfig", e.AllocatorKubeconfig, "--id", id,
		"--lease-duration", "4s", "--metrics-addr", "", "--log-level", "debug"})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

type svcOpt = kubeapi.ServiceOption

var withAnn = kubeapi.WithAnnotation

func withPort(p int32) svcOpt {
	return func(s *corev1.Service) {
		s.Spec.Ports = []corev1.ServicePort{{Name: "p", Port: p, Protocol: corev1.ProtocolTCP}}
	}
}

func noClass(s *corev1.Service) { s.Spec.LoadBalancerClass = nil }

func (e *env) createService(t testing.TB, name string, opts ...svcOpt) {
	t.Helper()
	s := kubeapi.LoadBalancer(name, ns, append([]svcOpt{func(s *corev1.Service) { s.Spec.Selector = map[string]string{"app": name} }}, opts...)...)
	if _, err := e.cs.CoreV1().Services(ns).Create(context.Background(), s, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create service %s: %v", name, err)
	}
}

func (e *env) deleteService(t testing.TB, name string) {
	t.Helper()
	if err := e.cs.CoreV1().Services(ns).Delete(context.Background(), name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
}

// waitIngress waits until the Service's status has n addresses.
func (e *env) waitIngress(t testing.TB, name string, n int) []netip.Addr {
	t.Helper()
	return e.waitIngressWithin(t, name, n, 20*time.Second)
}

func (e *env) waitIngressWithin(t testing.TB, name string, n int, timeout time.Duration) []netip.Addr {
	t.Helper()
	var got []netip.Addr
	lab.Eventually(t, timeout, 50*time.Millisecond, func() error {
		s, err := e.cs.CoreV1().Services(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		got = kube.Ingress(s)
		if len(got) != n {
			return fmt.Errorf("service %s has ingress %v, want %d addresses", name, got, n)
		}
		return nil
	})
	return got
}

func (e *env) service(t testing.TB, name string) *corev1.Service {
	t.Helper()
	s, err := e.cs.CoreV1().Services(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// waitEvent waits for an Event of reason on the Service whose message
// contains substr, and returns it.
func (e *env) waitEvent(t testing.TB, name, reason, substr string) corev1.Event {
	t.Helper()
	var ev corev1.Event
	lab.Eventually(t, 20*time.Second, 100*time.Millisecond, func() error {
		evs, err := e.events(name, reason)
		if err != nil {
			return err
		}
		for _, x := range evs {
			if strings.Contains(x.Message, substr) {
				ev = x
				return nil
			}
		}
		return fmt.Errorf("no %s event on %s containing %q (have %d %s events)", reason, name, substr, len(evs), reason)
	})
	return ev
}

func (e *env) events(name, reason string) ([]corev1.Event, error) {
	return e.API.Events(ns, name, reason)
}

// nextHops returns the next hops of every valid path FRR has for p.
func (e *env) nextHops(p string) ([]string, error) {
	rs, err := e.frr.BGPRoutes("ipv4")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, path := range rs[netip.MustParsePrefix(p)] {
		for _, nh := range path.NextHops {
			out = append(out, nh.String())
		}
	}
	slices.Sort(out)
	return out, nil
}

// waitRoute waits until FRR's BGP table has exactly the nodes' next hops
// for vip, and (when nodes is non-empty) the kernel route has that many
// next hops (ECMP).
func (e *env) waitRoute(t testing.TB, vip netip.Addr, nodes ...string) {
	t.Helper()
	e.waitRouteWithin(t, vip, 30*time.Second, nodes...)
}

// waitRouteWithin is waitRoute with its own time limit.
func (e *env) waitRouteWithin(t testing.TB, vip netip.Addr, timeout time.Duration, nodes ...string) {
	t.Helper()
	var want []string
	for _, n := range nodes {
		want = append(want, nodeAddrs[n])
	}
	slices.Sort(want)
	p := netip.PrefixFrom(vip, 32).String()
	lab.Eventually(t, timeout, 100*time.Millisecond, func() error {
		got, err := e.nextHops(p)
		if err != nil {
			return err
		}
		if !slices.Equal(got, want) {
			return fmt.Errorf("FRR next hops for %s: %v, want %v", p, got, want)
		}
		kr, ok, err := e.router.KernelRoute(p)
		if err != nil {
			return err
		}
		if len(want) == 0 {
			if ok {
				return fmt.Errorf("%s still in the router's kernel: %v", p, kr.Gateways)
			}
			return nil
		}
		if !ok || len(kr.Gateways) != len(want) {
			return fmt.Errorf("router kernel route %s: %v (present %v), want %d next hops", p, kr.Gateways, ok, len(want))
		}
		return nil
	})
}

func TestKube(t *testing.T) {
	e := setup(t)
	ctx := context.Background()

	t.Run("AllocateAnnounceECMP", func(t *testing.T) {
		e.createService(t, "web")
		vip := e.waitIngress(t, "web", 1)[0]
		if !netip.MustParsePrefix("203.0.113.0/28").Contains(vip) {
			t.Errorf("web got %s, outside pool public", vip)
		}
		// The annotation follows the status.
		lab.Eventually(t, 10*time.Second, 50*time.Millisecond, func() error {
			if got := e.service(t, "web").Annotations[kube.AnnotationAllocatedFrom]; got != "public" {
				return fmt.Errorf("allocated-from = %q, want public", got)
			}
			return nil
		})
		e.waitEvent(t, "web", "AddressAllocated", vip.String())
		e.waitEvent(t, "web", "Announcing", "node n1")
		e.waitRoute(t, vip, "n1", "n2", "n3")
	})

	t.Run("DualStack", func(t *testing.T) {
		e.createService(t, "dual", func(s *corev1.Service) {
			s.Spec.IPFamilyPolicy = ptr(corev1.IPFamilyPolicyRequireDualStack)
			s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv6Protocol, corev1.IPv4Protocol}
		})
		got := e.waitIngress(t, "dual", 2)
		if !got[0].Is4() || !got[1].Is6() || !netip.MustParsePrefix("2001:db8:100::/124").Contains(got[1]) {
			t.Errorf("dual got %v, want an IPv4 and an IPv6 of pool public", got)
		}
	})

	t.Run("ExternalTrafficPolicyLocal", func(t *testing.T) {
		e.createService(t, "local", func(s *corev1.Service) {
			s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
		})
		vip := e.waitIngress(t, "local", 1)[0]
		// No endpoint anywhere: nobody announces.
		time.Sleep(time.Second)
		if hops, _ := e.nextHops(netip.PrefixFrom(vip, 32).String()); len(hops) != 0 {
			t.Errorf("announced without any endpoint by %v", hops)
		}
		ready := true
		_, err := e.cs.DiscoveryV1().EndpointSlices(ns).Create(ctx, &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Name: "local-1", Labels: map[string]string{discoveryv1.LabelServiceName: "local"}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Endpoints: []discoveryv1.Endpoint{
				{Addresses: []string{"10.244.2.5"}, NodeName: ptr("n2"), Conditions: discoveryv1.EndpointConditions{Ready: &ready}},
				{Addresses: []string{"10.244.3.5"}, NodeName: ptr("n3"), Conditions: discoveryv1.EndpointConditions{Ready: ptr(false)}},
			},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		e.waitRoute(t, vip, "n2")
	})

	t.Run("NodeNotReadyWithdrawn", func(t *testing.T) {
		vip := kube.Ingress(e.service(t, "web"))[0]
		e.setReady(t, "n3", false)
		e.waitRoute(t, vip, "n1", "n2")
		e.waitEvent(t, "web", "Withdrawn", "node n3")
		e.setReady(t, "n3", true)
		e.waitRoute(t, vip, "n1", "n2", "n3")
	})

	t.Run("SharedByKey", func(t *testing.T) {
		e.createService(t, "share-a", withAnn(kube.AnnotationAllowSharedIP, "k1"), withPort(80))
		a := e.waitIngress(t, "share-a", 1)
		e.createService(t, "share-b", withAnn(kube.AnnotationAllowSharedIP, "k1"), withPort(53))
		b := e.waitIngress(t, "share-b", 1)
		if a[0] != b[0] {
			t.Errorf("share-a %v and share-b %v do not share", a, b)
		}
		// Same key, clashing port: its own address.
		e.createService(t, "share-c", withAnn(kube.AnnotationAllowSharedIP, "k1"), withPort(80))
		if c := e.waitIngress(t, "share-c", 1); c[0] == a[0] {
			t.Errorf("share-c got the shared %v although port 80 clashes", c)
		}
		e.waitRoute(t, a[0], "n1", "n2", "n3")
	})

	t.Run("RestartNoNewAnnouncing", func(t *testing.T) {
		// An agent restarted with nothing changed does not say again
		// what it said before (it reads its earlier Events at start).
		e.waitEvent(t, "share-a", "Announcing", "node n2 ")
		before := e.nodeEvents(t, "share-a", "Announcing", "n2")
		e.restartAgent(t, "n2")
		time.Sleep(3 * time.Second) // Events are sent asynchronously
		after := e.nodeEvents(t, "share-a", "Announcing", "n2")
		if !slices.Equal(before, after) {
			t.Errorf("Announcing Events of n2 on share-a before the restart %v, after %v: want no new one", before, after)
		}
	})

	t.Run("ExhaustedThenFreed", func(t *testing.T) {
		e.createService(t, "tiny-a", withAnn(kube.AnnotationPool, "tiny"))
		if got := e.waitIngress(t, "tiny-a", 1); got[0].String() != "198.51.100.200" {
			t.Fatalf("tiny-a got %v", got)
		}
		e.createService(t, "tiny-b", withAnn(kube.AnnotationPool, "tiny"))
		e.waitEvent(t, "tiny-b", "AllocationFailed", "PoolExhausted")
		e.deleteService(t, "tiny-a")
		if got := e.waitIngress(t, "tiny-b", 1); got[0].String() != "198.51.100.200" {
			t.Fatalf("tiny-b got %v after tiny-a freed the address", got)
		}
		e.waitEvent(t, "tiny-b", "AddressAllocated", "198.51.100.200")
		e.waitRoute(t, netip.MustParseAddr("198.51.100.200"), "n1", "n2", "n3")
	})

	t.Run("BadInput", func(t *testing.T) {
		cases := []struct {
			name, reason, msg string
			opts              []svcOpt
		}{
			{"bad-pool", "AllocationFailed", "UnknownPool", []svcOpt{withAnn(kube.AnnotationPool, "nope")}},
			{"bad-outside", "AllocationFailed", "AddressNotInPool", []svcOpt{withAnn(kube.AnnotationAddresses, "198.51.100.250")}},
			{"bad-family", "AllocationFailed", "WrongFamily", []svcOpt{withAnn(kube.AnnotationAddresses, "2001:db8:100::5")}},
			{"bad-community", "InvalidAnnotation", "communities", []svcOpt{withAnn(kube.AnnotationCommunities, "65000:99999")}},
		}
		for _, c := range cases {
			e.createService(t, c.name, c.opts...)
		}
		for _, c := range cases {
			e.waitEvent(t, c.name, c.reason, c.msg)
		}
		// A good Service created after them is unaffected.
		e.createService(t, "after-bad")
		e.waitIngress(t, "after-bad", 1)
		for _, c := range cases {
			if got := kube.Ingress(e.service(t, c.name)); len(got) != 0 {
				t.Errorf("%s got %v", c.name, got)
			}
			// Once per change, not per resync: still one Event each.
			evs, err := e.events(c.name, c.reason)
			if err != nil {
				t.Fatal(err)
			}
			if len(evs) != 1 || evs[0].Count > 1 {
				t.Errorf("%s: %d %s events (count %d), want one", c.name, len(evs), c.reason, evs[0].Count)
			}
		}
	})

	t.Run("Migration", func(t *testing.T) {
		// OpenELB: no class, opt-in annotation, its pool and address keys.
		e.createService(t, "openelb", noClass,
			withAnn(kube.OpenELBOptIn, "openelb"),
			withAnn(kube.OpenELBPool, "migrated"),
			withAnn(kube.OpenELBAddress, "198.51.100.3"),
			withAnn(kube.OpenELBProtocol, "bgp"))
		if got := e.waitIngress(t, "openelb", 1); got[0].String() != "198.51.100.3" {
			t.Errorf("openelb service got %v", got)
		}
		// MetalLB: its pool, address and sharing keys.
		e.createService(t, "metallb-a",
			withAnn(kube.MetalLBPool, "migrated"),
			withAnn(kube.MetalLBAddresses, "198.51.100.4"),
			withAnn(kube.MetalLBAllowSharedIP, "m"), withPort(80))
		e.createService(t, "metallb-b",
			withAnn(kube.MetalLBPool, "migrated"),
			withAnn(kube.MetalLBAllowSharedIP, "m"), withPort(443))
		if got := e.waitIngress(t, "metallb-a", 1); got[0].String() != "198.51.100.4" {
			t.Errorf("metallb-a got %v", got)
		}
		if got := e.waitIngress(t, "metallb-b", 1); got[0].String() != "198.51.100.4" {
			t.Errorf("metallb-b got %v, want the address shared by key", got)
		}
		// A Service with no class and no opt-in is not ours.
		e.createService(t, "foreign", noClass)
		e.waitRoute(t, netip.MustParseAddr("198.51.100.3"), "n1", "n2", "n3")
		e.waitRoute(t, netip.MustParseAddr("198.51.100.4"), "n1", "n2", "n3")
		if got := kube.Ingress(e.service(t, "foreign")); len(got) != 0 {
			t.Errorf("a Service of no class got %v", got)
		}
	})

	t.Run("ReleaseOnTypeChange", func(t *testing.T) {
		e.createService(t, "typechange")
		vip := e.waitIngress(t, "typechange", 1)[0]
		e.waitRoute(t, vip, "n1", "n2", "n3")
		s := e.service(t, "typechange")
		s.Spec.Type = corev1.ServiceTypeClusterIP
		s.Spec.LoadBalancerClass = nil
		for i := range s.Spec.Ports {
			s.Spec.Ports[i].NodePort = 0
		}
		s.Spec.ExternalTrafficPolicy = ""
		s.Spec.AllocateLoadBalancerNodePorts = nil
		if _, err := e.cs.CoreV1().Services(ns).Update(ctx, s, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		e.waitIngress(t, "typechange", 0)
		e.waitRoute(t, vip)
		lab.Eventually(t, 10*time.Second, 50*time.Millisecond, func() error {
			if _, ok := e.service(t, "typechange").Annotations[kube.AnnotationAllocatedFrom]; ok {
				return fmt.Errorf("allocated-from annotation left on a ClusterIP Service")
			}
			return nil
		})
	})

	t.Run("LeaderKilledNoAddressMoves", func(t *testing.T) {
		before := e.allIngress(t)
		lease, err := e.cs.CoordinationV1().Leases(kube.DefaultNamespace).Get(ctx, kube.DefaultLeaseName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		leader := *lease.Spec.HolderIdentity
		if err := e.agents[leader].Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		lab.Eventually(t, 30*time.Second, 200*time.Millisecond, func() error {
			l, err := e.cs.CoordinationV1().Leases(kube.DefaultNamespace).Get(ctx, kube.DefaultLeaseName, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if h := l.Spec.HolderIdentity; h == nil || *h == leader {
				return fmt.Errorf("lease still held by %s", leader)
			}
			return nil
		})
		e.createService(t, "after-failover")
		vip := e.waitIngress(t, "after-failover", 1)[0]
		after := e.allIngress(t)
		for k, v := range before {
			if after[k] != v {
				t.Errorf("%s moved from %s to %s after the leader died", k, v, after[k])
			}
		}
		for k, v := range before {
			if v == vip.String() {
				t.Errorf("the new Service got %s, which %s holds", vip, k)
			}
		}
		e.startAgent(t, leader)
		e.waitRoute(t, vip, "n1", "n2", "n3")
	})

	t.Run("APIServerDownRoutesStay", func(t *testing.T) {
		vip := kube.Ingress(e.service(t, "web"))[0]
		if err := e.API.Stop(); err != nil {
			t.Logf("stop kube-apiserver: %v", err)
		}
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			hops, err := e.nextHops(netip.PrefixFrom(vip, 32).String())
			if err != nil {
				t.Fatal(err)
			}
			if len(hops) != 3 {
				t.Fatalf("with the API server down, FRR has %v for %s, want all three nodes", hops, vip)
			}
			time.Sleep(time.Second)
		}
		if err := e.API.Start(); err != nil {
			t.Fatal(err)
		}
		if err := e.API.WaitReady(60 * time.Second); err != nil {
			t.Fatal(err)
		}
		// Things work again. After a long outage client-go's reflectors
		// back off (up to 30 s, plus as much jitter) before they list again,
		// each agent's on its own schedule, so allow for that on every node:
		// the allocator's status, then each speaker's route.
		e.createService(t, "after-outage")
		v := e.waitIngressWithin(t, "after-outage", 1, 180*time.Second)[0]
		e.waitRouteWithin(t, v, 180*time.Second, "n1", "n2", "n3")
		e.waitRoute(t, vip, "n1", "n2", "n3")
	})

	t.Run("DeleteWithdraws", func(t *testing.T) {
		vip := kube.Ingress(e.service(t, "web"))[0]
		e.deleteService(t, "web")
		e.waitRoute(t, vip)
		// The address is free again: a new Service asking for it gets it.
		e.createService(t, "reuse", withAnn(kube.AnnotationAddresses, vip.String()))
		if got := e.waitIngress(t, "reuse", 1); got[0] != vip {
			t.Errorf("reuse got %v, want the freed %s", got, vip)
		}
		for _, n := range []string{"n1", "n2", "n3"} {
			if p, ok := e.agents[n]; ok && strings.Contains(p.Log(), "panic") {
				t.Errorf("agent %s panicked", n)
			}
		}
		_, err := e.cs.CoreV1().Services(ns).Get(ctx, "web", metav1.GetOptions{})
		if !apierrors.IsNotFound(err) {
			t.Errorf("web still exists: %v", err)
		}
	})

	// Last: it leaves the sessions with MD5 passwords.
	t.Run("SecretBGPPassword", func(t *testing.T) { e.testSecretBGPPassword(t) })
}

// nodeEvents lists the Events of reason on the Service sent by node, as
// "name count" strings, sorted.
func (e *env) nodeEvents(t testing.TB, name, reason, node string) []string {
	t.Helper()
	evs, err := e.events(name, reason)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, ev := range evs {
		if strings.HasPrefix(ev.Message, "node "+node+" ") {
			out = append(out, fmt.Sprintf("%s %d", ev.Name, ev.Count))
		}
	}
	slices.Sort(out)
	return out
}

// restartAgent stops node's agent (SIGTERM, as a rolling update does) and
// starts it again; it returns once the new agent applied its first VIP set
// and its BGP session is up.
// waitAgentLog waits up to a minute until node's agent logged says (else
// the error says the agent notYet), and fails at once when it exited.
func (e *env) waitAgentLog(t testing.TB, node, says, notYet string) {
	t.Helper()
	p := e.agents[node]
	lab.Eventually(t, 60*time.Second, 100*time.Millisecond, func() error {
		if p.Exited() {
			return fmt.Errorf("agent %s exited:\n%s", node, tailLog(p.Log(), 30))
		}
		if !strings.Contains(p.Log(), says) {
			return fmt.Errorf("agent %s %s", node, notYet)
		}
		return nil
	})
}

func (e *env) restartAgent(t testing.TB, node string) {
	t.Helper()
	if err := e.agents[node].Stop(); err != nil {
		t.Logf("stop agent %s: %v", node, err)
	}
	e.startAgent(t, node)
	e.waitAgentLog(t, node, "VIP table applied", "has not applied its VIPs yet")
	if err := e.frr.WaitEstablished(nodeAddrs[node], 60*time.Second); err != nil {
		t.Fatalf("FRR and %s after the restart: %v", node, err)
	}
}

// allIngress maps every Service with addresses to its first address.
func (e *env) allIngress(t testing.TB) map[string]string {
	t.Helper()
	l, err := e.cs.CoreV1().Services(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for i := range l.Items {
		if a := kube.Ingress(&l.Items[i]); len(a) > 0 {
			out[l.Items[i].Name] = a[0].String()
		}
	}
	return out
}

// BenchmarkServiceToRoute measures a Service's creation until its VIP is in
// the router's kernel with all three nodes as next hops (allocation, status
// write, three speakers, BGP, FRR's zebra), one Service at a time; it
// reports p50 and p99 in milliseconds, the p50 of the time until the
// Service's status carried its address, and a breakdown from the agents'
// logs (see breakdown).
func BenchmarkServiceToRoute(b *testing.B) {
	e := setup(b)
	var lat, alloc []time.Duration
	var rounds []round
	i := 0
	for b.Loop() {
		if i >= 120 {
			b.Fatal("the bench pool holds 128 addresses; run with -benchtime=100x")
		}
		r := e.timeToRoute(b, fmt.Sprintf("bench-%d", i), withAnn(kube.AnnotationPool, "bench"))
		i++
		rounds = append(rounds, r)
		lat = append(lat, r.ended.Sub(r.start))
		alloc = append(alloc, r.status.Sub(r.start))
	}
	b.StopTimer()
	if len(lat) > 0 {
		b.ReportMetric(ms(pct(alloc, 50)), "status_p50_ms")
		b.ReportMetric(ms(pct(lat, 50)), "p50_ms")
		b.ReportMetric(ms(pct(lat, 99)), "p99_ms")
		b.ReportMetric(float64(len(lat)), "n")
		b.ReportMetric(ms(pct(lat, 100)), "max_ms")
		e.breakdown(b, rounds)
	}
}

var tailLog = lab.Tail

func ptr[T any](v T) *T { return &v }
