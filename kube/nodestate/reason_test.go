package nodestate

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vipspeaker/vipspeaker/status"
)

func TestCondition(t *testing.T) {
	up := []Session{{Peer: "198.51.100.1", State: "established"}}
	down := []Session{{Peer: "198.51.100.1", State: "active"}}
	vip := func(addr, role string) VIP {
		return VIP{Address: addr, Service: "demo/web", Mode: "bgp", Pool: "public", Role: role}
	}
	node := func(name string, sessions []Session, pools []string, vips ...VIP) Object {
		return Object{Node: name, Status: Status{Sessions: sessions, VIPs: vips, VIPCount: len(vips), Pools: pools}}
	}
	endpoints := func(n int) func() (int, error) { return func() (int, error) { return n, nil } }
	pub := []string{"public"}
	for _, c := range []struct {
		name   string
		objs   []Object
		svc    Service
		status metav1.ConditionStatus
		reason string
		msg    string
	}{
		{"announced", []Object{node("n2", up, pub, vip("203.0.113.1", RoleAnnouncing)), node("n1", up, pub, vip("203.0.113.1", RoleAnnouncing))},
			Service{Addrs: []string{"203.0.113.1"}, Mode: "bgp", Pool: "public"},
			metav1.ConditionTrue, ReasonAnnounced, "203.0.113.1 announced by n1, n2"},
		{"owned", []Object{node("n1", nil, pub, VIP{Address: "203.0.113.1", Role: RoleOwner})},
			Service{Addrs: []string{"203.0.113.1"}, Mode: "layer2", Pool: "public"},
			metav1.ConditionTrue, ReasonAnnounced, "203.0.113.1 owned by n1"},
		{"no address", nil, Service{}, metav1.ConditionFalse, ReasonNoAddress, "no address allocated yet (see the Service's AllocationFailed Events)"},
		{"no speaker", nil, Service{Addrs: []string{"203.0.113.1"}}, metav1.ConditionFalse, ReasonNoSpeaker,
			"203.0.113.1: no vipspeaker node has reported (no VIPSpeakerNode object; is the DaemonSet running?)"},
		{"pool on no node", []Object{node("n1", up, []string{"other"})}, Service{Addrs: []string{"203.0.113.1"}, Pool: "public"},
			metav1.ConditionFalse, ReasonPoolNotAdvertised,
			"203.0.113.1: no node may announce pool public (of 1 nodes reporting, none is Ready, not excluded and selected by the pool's node-selector)"},
		{"sessions down", []Object{node("n1", down, pub), node("n2", down, pub), node("n3", up, nil)},
			Service{Addrs: []string{"203.0.113.1"}, Mode: "bgp", Pool: "public"},
			metav1.ConditionFalse, ReasonNoBGPSession, "203.0.113.1: no BGP session is established on n1, n2"},
		{"layer2 ignores sessions", []Object{node("n1", down, pub)}, Service{Addrs: []string{"203.0.113.1"}, Mode: "layer2", Pool: "public"},
			metav1.ConditionFalse, ReasonNoNodeAnnounces, "203.0.113.1: no node owns it (no healthy candidate elected)"},
		{"local without endpoints", []Object{node("n1", up, pub)},
			Service{Addrs: []string{"203.0.113.1"}, Mode: "bgp", Pool: "public", Local: true, ReadyEndpoints: endpoints(0)},
			metav1.ConditionFalse, ReasonNoEndpoints, "203.0.113.1: externalTrafficPolicy is Local and the Service has no ready endpoint"},
		{"local, endpoints elsewhere", []Object{node("n1", up, pub)},
			Service{Addrs: []string{"203.0.113.1"}, Mode: "bgp", Pool: "public", Local: true, ReadyEndpoints: endpoints(2)},
			metav1.ConditionFalse, ReasonNoNodeAnnounces,
			"203.0.113.1: no node announces it; externalTrafficPolicy is Local: only nodes with a ready endpoint may"},
		{"endpoints unreadable", []Object{node("n1", up, pub)},
			Service{Addrs: []string{"203.0.113.1"}, Pool: "public", Local: true, ReadyEndpoints: func() (int, error) { return 0, errors.New("forbidden") }},
			metav1.ConditionFalse, ReasonNoNodeAnnounces,
			"203.0.113.1: no node announces it; externalTrafficPolicy is Local: only nodes with a ready endpoint may"},
		{"one of two families", []Object{node("n1", up, pub, vip("203.0.113.1", RoleAnnouncing))},
			Service{Addrs: []string{"203.0.113.1", "2001:db8::1"}, Mode: "bgp", Pool: "public"},
			metav1.ConditionFalse, ReasonNoNodeAnnounces, "2001:db8::1: no node announces it; 203.0.113.1 announced by n1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, ok := NewIndex(c.objs).Condition(c.svc)
			if !ok {
				t.Fatal("not ok")
			}
			want := metav1.Condition{Type: ConditionType, Status: c.status, Reason: c.reason, Message: c.msg}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("(-want +got)\n%s", diff)
			}
		})
	}
	// Two owners of one layer2 address: the later report wins.
	old := node("n1", nil, pub, VIP{Address: "203.0.113.70", Role: RoleOwner})
	old.Status.Updated = metav1.Unix(100, 0)
	cur := node("n2", nil, pub, VIP{Address: "203.0.113.70", Role: RoleOwner})
	cur.Status.Updated = metav1.Unix(200, 0)
	for _, objs := range [][]Object{{old, cur}, {cur, old}} {
		if got := NewIndex(objs).Holders("203.0.113.70"); !slices.Equal(got, []Holder{{"n2", RoleOwner}}) {
			t.Errorf("holders %v, want n2 alone", got)
		}
	}
	// A node listing part of its VIPs cannot say a Service is not
	// announced.
	cut := node("n1", up, pub, vip("203.0.113.1", RoleAnnouncing))
	cut.Status.VIPCount = MaxVIPs + 1
	if _, ok := NewIndex([]Object{cut}).Condition(Service{Addrs: []string{"203.0.113.9"}}); ok {
		t.Error("a truncated object decided a Service is not announced")
	}
}

// FromReport keeps what the node draws traffic for: bgp VIPs while a
// session is up (or none is configured), layer2 VIPs it owns.
func TestFromReport(t *testing.T) {
	r := status.Report{
		VIPs: []status.VIP{
			{Address: "203.0.113.1", Service: "demo/a", Mode: "bgp", Pool: "public", Role: "announcing"},
			{Address: "203.0.113.2", Service: "demo/b", Mode: "layer2", Pool: "l2", Role: "owner", Owner: "n1"},
			{Address: "203.0.113.3", Service: "demo/c", Mode: "layer2", Pool: "l2", Role: "standby", Owner: "n2"},
		},
		BGP: status.BGP{Configured: true, Running: true, Peers: []status.Peer{
			{Peer: "198.51.100.1", PeerAS: 64500, State: "established"},
			{Peer: "198.51.100.2", PeerAS: 64500, State: "idle", AdminDown: true},
		}},
	}
	got, ready := FromReport(r)
	want := Status{
		Sessions: []Session{{Peer: "198.51.100.1", PeerAS: 64500, State: "established"}, {Peer: "198.51.100.2", PeerAS: 64500, State: "admin-down"}},
		VIPs: []VIP{{Address: "203.0.113.1", Service: "demo/a", Mode: "bgp", Pool: "public", Role: RoleAnnouncing},
			{Address: "203.0.113.2", Service: "demo/b", Mode: "layer2", Pool: "l2", Role: RoleOwner}},
		VIPCount: 2, Pools: []string{},
	}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(Status{})); diff != "" || !ready {
		t.Errorf("ready %v (-want +got)\n%s", ready, diff)
	}
	many := r
	many.VIPs = nil
	for i := range MaxVIPs + 1 {
		many.VIPs = append(many.VIPs, status.VIP{Address: fmt.Sprint(i), Mode: "bgp", Role: "announcing"})
	}
	if got, _ := FromReport(many); len(got.VIPs) != MaxVIPs || got.VIPCount != MaxVIPs+1 {
		t.Errorf("%d VIPs: lists %d, counts %d; want %d and %d", MaxVIPs+1, len(got.VIPs), got.VIPCount, MaxVIPs, MaxVIPs+1)
	}
	r.BGP.Peers[0].State = "active"
	r.Ready = []string{"bgp"}
	got, ready = FromReport(r)
	if ready || got.VIPCount != 1 || got.VIPs[0].Role != RoleOwner {
		t.Errorf("sessions down, not ready: ready %v, vips %+v", ready, got.VIPs)
	}
}
