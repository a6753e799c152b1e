package kube

import (
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vipspeaker/vipspeaker/config"
	"github.com/vipspeaker/vipspeaker/routing"
)

func node(name string, ready bool, labels ...string) *corev1.Node {
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{}},
		Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: st}}}}
	for _, l := range labels {
		n.Labels[l] = ""
	}
	return n
}

func testConfig(t *testing.T) *config.Config {
	t.Helper()
	cfg, errs := config.Parse("t.toml", []byte(`
[[pools]]
name = "bgp"
addresses = ["203.0.113.0/24"]
[[pools]]
name = "l2"
addresses = ["198.51.100.0/24"]
mode = "layer2"
  [pools.layer2]
  interfaces = ["eth0"]
`))
	if errs != nil {
		t.Fatal(errs)
	}
	return cfg
}

func nodesMap(ns ...*corev1.Node) map[string]*corev1.Node {
	m := map[string]*corev1.Node{}
	for _, n := range ns {
		m[n.Name] = n
	}
	return m
}

func vipsString(vs []routing.VIP) string {
	s := ""
	for _, v := range vs {
		s += fmt.Sprintf("%s %s %s %s %v %v;", v.Addr, v.Attrs.Service, v.Attrs.Mode, v.Attrs.Pool, v.Attrs.Communities, v.Attrs.LargeCommunities)
	}
	return s
}

func TestDecideNodes(t *testing.T) {
	cfg := testConfig(t)
	local := func(s *corev1.Service) { s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal }
	svcs := []*corev1.Service{
		lbService("web", status("203.0.113.1"), ann(AnnotationAllocatedFrom, "bgp")),
		lbService("loc", status("203.0.113.2"), local),
		lbService("pending"), // no address yet
		lbService("other", status("203.0.113.9"), func(s *corev1.Service) { s.Spec.LoadBalancerClass = ptr("x") }),
	}
	eps := map[string]map[string]int{"demo/loc": {"n2": 1}}
	nodes := nodesMap(node("n1", true), node("n2", true), node("n3", false), node("n4", true, LabelExcludeFromLB))
	tests := []struct {
		node string
		want string
	}{
		{"n1", "203.0.113.1 demo/web bgp bgp [] [];"},
		{"n2", "203.0.113.1 demo/web bgp bgp [] [];203.0.113.2 demo/loc bgp bgp [] [];"},
		{"n3", ""}, // NotReady
		{"n4", ""}, // excluded
		{"n5", ""}, // no Node object
	}
	for _, tt := range tests {
		t.Run(tt.node, func(t *testing.T) {
			res := decide(announceInput{node: tt.node, cfg: cfg, services: svcs, nodes: nodes,
				endpoints: func(ns, name string) map[string]int { return eps[ns+"/"+name] },
				lastGood:  map[string]svcAttrs{}})
			if got := vipsString(res.vips); got != tt.want {
				t.Errorf("VIPs\n got %s\nwant %s", got, tt.want)
			}
			if len(res.services) != len(res.vips) {
				t.Errorf("services %v", res.services)
			}
		})
	}
}

func TestDecideLayer2AndSharing(t *testing.T) {
	cfg := testConfig(t)
	svcs := []*corev1.Service{
		lbService("l2", status("198.51.100.7")),
		lbService("b", status("203.0.113.5"), ann(AnnotationCommunities, "65000:2,large:1:2:3")),
		lbService("a", status("203.0.113.5"), ann(AnnotationCommunities, "65000:1,65000:2")),
		lbService("forced", status("198.51.100.8"), ann(AnnotationMode, "bgp")),
	}
	nodes := nodesMap(node("n1", true), node("n2", true), node("n3", false))
	res := decide(announceInput{node: "n1", cfg: cfg, services: svcs, nodes: nodes,
		endpoints: func(string, string) map[string]int { return nil }, lastGood: map[string]svcAttrs{}})
	want := "198.51.100.7 demo/l2 layer2 l2 [] [];198.51.100.8 demo/forced bgp l2 [] [];" +
		"203.0.113.5 demo/a,demo/b bgp bgp [65000:1 65000:2] [1:2:3];"
	if got := vipsString(res.vips); got != want {
		t.Errorf("VIPs\n got %s\nwant %s", got, want)
	}
	if got := fmt.Sprint(res.layer2); got != "map[198.51.100.7:[n1 n2]]" {
		t.Errorf("layer2 candidates %s", got)
	}
}

func TestDecideInvalidKeepsLastGood(t *testing.T) {
	cfg := testConfig(t)
	nodes := nodesMap(node("n1", true))
	good := map[string]svcAttrs{}
	in := func(svcs ...*corev1.Service) announceResult {
		return decide(announceInput{node: "n1", cfg: cfg, services: svcs, nodes: nodes,
			endpoints: func(string, string) map[string]int { return nil }, lastGood: good})
	}
	res := in(lbService("s", status("203.0.113.1"), ann(AnnotationCommunities, "65000:1")))
	if got := vipsString(res.vips); got != "203.0.113.1 demo/s bgp bgp [65000:1] [];" {
		t.Fatalf("first: %s", got)
	}
	res = in(lbService("s", status("203.0.113.1"), ann(AnnotationCommunities, "65000:1,bogus")))
	if got := vipsString(res.vips); got != "203.0.113.1 demo/s bgp bgp [65000:1] [];" {
		t.Errorf("after a malformed community: %s, want the last good attributes", got)
	}
	res = in(lbService("new", status("203.0.113.2"), ann(AnnotationMode, "anycast")))
	if len(res.vips) != 0 || fmt.Sprint(res.invalid) != "[demo/new]" {
		t.Errorf("invalid service never good: vips %v invalid %v", res.vips, res.invalid)
	}
}

// A node counts with its ready endpoints; where it has none ready, with
// its terminating endpoints that still serve (kube-proxy's fallback), and
// a terminating endpoint no longer serving counts nowhere.
func TestServingEndpointNodes(t *testing.T) {
	f := false
	slice := &discoveryv1.EndpointSlice{Endpoints: []discoveryv1.Endpoint{
		{NodeName: ptr("n1")},
		{NodeName: ptr("n2"), Conditions: discoveryv1.EndpointConditions{Ready: &f}},
		{NodeName: ptr("n3"), Conditions: discoveryv1.EndpointConditions{Ready: ptr(true)}},
		{NodeName: ptr("n3")},
		{NodeName: ptr("n3"), Conditions: discoveryv1.EndpointConditions{Ready: &f, Serving: ptr(true), Terminating: ptr(true)}},
		{NodeName: ptr("n4"), Conditions: discoveryv1.EndpointConditions{Ready: &f, Serving: ptr(true), Terminating: ptr(true)}},
		{NodeName: ptr("n5"), Conditions: discoveryv1.EndpointConditions{Ready: &f, Serving: &f, Terminating: ptr(true)}},
		{},
	}}
	if got := fmt.Sprint(ServingEndpointNodes([]*discoveryv1.EndpointSlice{slice})); got != "map[n1:1 n3:2 n4:1]" {
		t.Errorf("got %s, want map[n1:1 n3:2 n4:1]", got)
	}
}

// BenchmarkDecide5000 is one speaker pass over 5,000 announced Services.
func BenchmarkDecide5000(b *testing.B) {
	cfg, errs := config.Parse("t.toml", []byte("[[pools]]\nname = \"bgp\"\naddresses = [\"198.19.0.0/18\"]\n"))
	if errs != nil {
		b.Fatal(errs)
	}
	var svcs []*corev1.Service
	for i := range 5000 {
		svcs = append(svcs, lbService(fmt.Sprintf("s%05d", i), status(fmt.Sprintf("198.19.%d.%d", i/256, i%256)), ann(AnnotationAllocatedFrom, "bgp")))
	}
	nodes := nodesMap(node("n1", true), node("n2", true), node("n3", true))
	lastGood := map[string]svcAttrs{}
	for b.Loop() {
		res := decide(announceInput{node: "n1", cfg: cfg, services: svcs, nodes: nodes,
			endpoints: func(string, string) map[string]int { return nil }, lastGood: lastGood})
		if len(res.vips) != 5000 {
			b.Fatalf("%d VIPs", len(res.vips))
		}
	}
}

// A pool's [pools.advertise]: only the nodes its selector matches announce
// (bgp) or are candidates (layer2); its communities and local-pref join the
// Service's; Cluster Services get the aggregation length, Local ones keep
// their host route.
func TestDecidePoolAdvertise(t *testing.T) {
	cfg, errs := config.Parse("t.toml", []byte(`
[[pools]]
name = "rack"
addresses = ["203.0.113.0/24"]
  [pools.advertise]
  node-selector = "rack=r1"
  communities = ["64512:7", "large:64512:1:1"]
  local-pref = 150
  aggregation-length = 24
[[pools]]
name = "l2"
addresses = ["198.51.100.0/24"]
mode = "layer2"
  [pools.layer2]
  interfaces = ["eth0"]
  [pools.advertise]
  node-selector = "rack=r1"
`))
	if errs != nil {
		t.Fatal(errs)
	}
	local := func(s *corev1.Service) { s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal }
	svcs := []*corev1.Service{
		lbService("web", status("203.0.113.10"), ann(AnnotationCommunities, "65000:1")),
		lbService("loc", status("203.0.113.11"), local),
		lbService("l2", status("198.51.100.7")),
	}
	n1, n2, n3 := node("n1", true), node("n2", true), node("n3", true)
	n1.Labels["rack"], n2.Labels["rack"], n3.Labels["rack"] = "r1", "r1", "r2"
	nodes := nodesMap(n1, n2, n3)
	in := func(name string) announceResult {
		return decide(announceInput{node: name, cfg: cfg, services: svcs, nodes: nodes,
			endpoints: func(string, string) map[string]int { return map[string]int{"n1": 1, "n3": 1} },
			lastGood:  map[string]svcAttrs{}})
	}
	res := in("n1")
	want := "198.51.100.7 demo/l2 layer2 l2 [] [];" +
		"203.0.113.10 demo/web bgp rack [64512:7 65000:1] [64512:1:1];" +
		"203.0.113.11 demo/loc bgp rack [64512:7] [64512:1:1];"
	if got := vipsString(res.vips); got != want {
		t.Errorf("n1 VIPs\n got %s\nwant %s", got, want)
	}
	for _, v := range res.vips {
		wantBits := map[string]int{"203.0.113.10": 24, "203.0.113.11": 0, "198.51.100.7": 0}[v.Addr.String()]
		if v.Attrs.AggregateBits != wantBits {
			t.Errorf("%s: AggregateBits %d, want %d", v.Addr, v.Attrs.AggregateBits, wantBits)
		}
		if v.Attrs.Pool == "rack" && v.Attrs.LocalPref != 150 {
			t.Errorf("%s: LocalPref %d, want 150", v.Addr, v.Attrs.LocalPref)
		}
	}
	if got := fmt.Sprint(res.layer2); got != "map[198.51.100.7:[n1 n2]]" {
		t.Errorf("layer2 candidates %s, want n1 and n2 (rack=r1)", got)
	}
	// n2: selected, but the Local Service has no endpoint there.
	if got := vipsString(in("n2").vips); got != "198.51.100.7 demo/l2 layer2 l2 [] [];203.0.113.10 demo/web bgp rack [64512:7 65000:1] [64512:1:1];" {
		t.Errorf("n2 VIPs %s", got)
	}
	// n3 is not in the rack: nothing, though it holds an endpoint of loc.
	if got := vipsString(in("n3").vips); got != "" {
		t.Errorf("n3 VIPs %s, want none", got)
	}
}

// A cordoned node (kubectl drain) hands its Services to the nodes that are
// not: it stops announcing those another node can take, keeps those only
// it can serve with GRACEFUL_SHUTDOWN on their paths, and leaves the layer2
// candidates unless every candidate is cordoned.
func TestDecideDrain(t *testing.T) {
	cfg := testConfig(t)
	local := func(s *corev1.Service) { s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal }
	svcs := []*corev1.Service{
		lbService("web", status("203.0.113.1")),
		lbService("only3", status("203.0.113.2"), local),
		lbService("l2", status("198.51.100.7")),
	}
	eps := map[string]map[string]int{"demo/only3": {"n3": 1}}
	n3 := node("n3", true)
	n3.Spec.Unschedulable = true
	nodes := nodesMap(node("n1", true), node("n2", true), n3)
	in := func(name string, nodes map[string]*corev1.Node) announceResult {
		return decide(announceInput{node: name, cfg: cfg, services: svcs, nodes: nodes,
			endpoints: func(ns, name string) map[string]int { return eps[ns+"/"+name] },
			lastGood:  map[string]svcAttrs{}})
	}
	res := in("n3", nodes)
	if got, want := vipsString(res.vips), "203.0.113.2 demo/only3 bgp bgp [65535:0] [];"; got != want {
		t.Errorf("cordoned n3 VIPs\n got %s\nwant %s", got, want)
	}
	if got := fmt.Sprint(res.layer2); got != "map[198.51.100.7:[n1 n2]]" {
		t.Errorf("layer2 candidates %s, want n1 and n2 (n3 cordoned)", got)
	}
	if got, want := vipsString(in("n1", nodes).vips), "198.51.100.7 demo/l2 layer2 l2 [] [];203.0.113.1 demo/web bgp bgp [] [];"; got != want {
		t.Errorf("n1 VIPs\n got %s\nwant %s", got, want)
	}
	// Every node cordoned: nothing is handed anywhere, the VIPs stay.
	all := nodesMap(node("n1", true), node("n2", true), n3)
	for _, n := range all {
		n.Spec.Unschedulable = true
	}
	res = in("n1", all)
	if got, want := vipsString(res.vips), "198.51.100.7 demo/l2 layer2 l2 [] [];203.0.113.1 demo/web bgp bgp [65535:0] [];"; got != want {
		t.Errorf("all cordoned, n1 VIPs\n got %s\nwant %s", got, want)
	}
	if got := fmt.Sprint(res.layer2); got != "map[198.51.100.7:[n1 n2 n3]]" {
		t.Errorf("all cordoned: layer2 candidates %s, want all three", got)
	}
}

// The handover target is the one cordoned node that is still Ready, seen
// from the others; none from the draining node itself, none while two
// drain, none once it is no longer Ready.
func TestHandoverTargets(t *testing.T) {
	cordoned := func(n *corev1.Node, addrs ...string) *corev1.Node {
		n.Spec.Unschedulable = true
		for _, a := range addrs {
			n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: a})
		}
		n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeExternalIP, Address: "192.0.2.9"})
		return n
	}
	for _, tc := range []struct {
		name  string
		nodes map[string]*corev1.Node
		self  string
		want  string
	}{
		{"none drains", nodesMap(node("n1", true), node("n2", true)), "n1", "[]"},
		{"n3 drains", nodesMap(node("n1", true), node("n2", true), cordoned(node("n3", true), "198.18.10.13", "fd00::13")), "n1", "[198.18.10.13 fd00::13]"},
		{"seen from n3", nodesMap(node("n1", true), cordoned(node("n3", true), "198.18.10.13")), "n3", "[]"},
		{"two drain", nodesMap(node("n1", true), cordoned(node("n2", true), "198.18.10.12"), cordoned(node("n3", true), "198.18.10.13")), "n1", "[]"},
		{"one drains, one gone", nodesMap(node("n1", true), cordoned(node("n2", false), "198.18.10.12"), cordoned(node("n3", true), "198.18.10.13")), "n1", "[198.18.10.13]"},
		{"drained and down", nodesMap(node("n1", true), cordoned(node("n3", false), "198.18.10.13")), "n1", "[]"},
	} {
		if got := fmt.Sprint(HandoverTargets(tc.nodes, tc.self)); got != tc.want {
			t.Errorf("%s: %s; want %s", tc.name, got, tc.want)
		}
	}
}

// A weighted-by-endpoints pool: each node's path for a Local Service
// carries its own ready endpoints as weight; Cluster Services and pools
// without the setting carry none.
func TestDecideWeightedByEndpoints(t *testing.T) {
	cfg, errs := config.Parse("t.toml", []byte(`
[[pools]]
name = "w"
addresses = ["203.0.113.0/24"]
  [pools.advertise]
  weighted-by-endpoints = true
[[pools]]
name = "plain"
addresses = ["198.51.100.0/24"]
`))
	if errs != nil {
		t.Fatal(errs)
	}
	local := func(s *corev1.Service) { s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal }
	svcs := []*corev1.Service{
		lbService("loc", status("203.0.113.1"), local),
		lbService("cluster", status("203.0.113.2")),
		lbService("plain", status("198.51.100.1"), local),
	}
	eps := map[string]map[string]int{"demo/loc": {"n1": 1, "n2": 3}, "demo/plain": {"n1": 2, "n2": 2}}
	nodes := nodesMap(node("n1", true), node("n2", true))
	for node, want := range map[string]string{
		"n1": "198.51.100.1:0 203.0.113.1:1 203.0.113.2:0",
		"n2": "198.51.100.1:0 203.0.113.1:3 203.0.113.2:0",
	} {
		res := decide(announceInput{node: node, cfg: cfg, services: svcs, nodes: nodes,
			endpoints: func(ns, name string) map[string]int { return eps[ns+"/"+name] },
			lastGood:  map[string]svcAttrs{}})
		var got []string
		for _, v := range res.vips {
			got = append(got, fmt.Sprintf("%s:%d", v.Addr, v.Attrs.Weight))
		}
		if s := strings.Join(got, " "); s != want {
			t.Errorf("%s: weights %s, want %s", node, s, want)
		}
	}
	if _, errs := config.Parse("t.toml", []byte("[[pools]]\nname = \"l2\"\naddresses = [\"198.51.100.0/24\"]\nmode = \"layer2\"\n  [pools.layer2]\n  interfaces = [\"eth0\"]\n  [pools.advertise]\n  weighted-by-endpoints = true\n")); errs == nil || !strings.Contains(fmt.Sprint(errs), "weighted-by-endpoints") {
		t.Errorf("a layer2 pool with weighted-by-endpoints: %v, want an error naming the field", errs)
	}
}
