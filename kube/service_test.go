package kube

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vipspeaker/vipspeaker/kube/allocator"
	"github.com/vipspeaker/vipspeaker/routing"
)

func ptr[T any](v T) *T { return &v }

// lbService builds a LoadBalancer Service; mods adjust it.
func lbService(name string, mods ...func(*corev1.Service)) *corev1.Service {
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: name, Annotations: map[string]string{}},
		Spec: corev1.ServiceSpec{
			Type:              corev1.ServiceTypeLoadBalancer,
			LoadBalancerClass: ptr(LoadBalancerClass),
			Ports:             []corev1.ServicePort{{Protocol: corev1.ProtocolTCP, Port: 80}},
			IPFamilies:        []corev1.IPFamily{corev1.IPv4Protocol},
		},
	}
	for _, m := range mods {
		m(s)
	}
	return s
}

func ann(k, v string) func(*corev1.Service) {
	return func(s *corev1.Service) { s.Annotations[k] = v }
}

func noClass(s *corev1.Service) { s.Spec.LoadBalancerClass = nil }

func status(ips ...string) func(*corev1.Service) {
	return func(s *corev1.Service) {
		for _, ip := range ips {
			s.Status.LoadBalancer.Ingress = append(s.Status.LoadBalancer.Ingress, corev1.LoadBalancerIngress{IP: ip})
		}
	}
}

func TestHandles(t *testing.T) {
	tests := []struct {
		name         string
		svc          *corev1.Service
		defaultClass bool
		want         bool
	}{
		{"our class", lbService("a"), false, true},
		{"other class", lbService("a", func(s *corev1.Service) { s.Spec.LoadBalancerClass = ptr("metallb.io/metallb") }), true, false},
		{"no class", lbService("a", noClass), false, false},
		{"no class, default-class", lbService("a", noClass), true, true},
		{"no class, OpenELB opt-in", lbService("a", noClass, ann(OpenELBOptIn, "openelb")), false, true},
		{"OpenELB opt-in, other class", lbService("a", ann(OpenELBOptIn, "openelb"), func(s *corev1.Service) { s.Spec.LoadBalancerClass = ptr("x") }), false, false},
		{"ClusterIP", lbService("a", func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeClusterIP }), true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Handles(tt.svc, tt.defaultClass); got != tt.want {
				t.Errorf("Handles = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestReadService(t *testing.T) {
	a := func(s ...string) []netip.Addr {
		var out []netip.Addr
		for _, x := range s {
			out = append(out, netip.MustParseAddr(x))
		}
		return out
	}
	tests := []struct {
		name    string
		svc     *corev1.Service
		want    allocator.Request
		mode    routing.Mode
		comms   string
		local   bool
		wantErr string
	}{
		{name: "plain", svc: lbService("s"),
			want: allocator.Request{Families: []allocator.Family{allocator.IPv4}}},
		{name: "require dual", svc: lbService("s", func(s *corev1.Service) {
			s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv6Protocol, corev1.IPv4Protocol}
			s.Spec.IPFamilyPolicy = ptr(corev1.IPFamilyPolicyRequireDualStack)
		}), want: allocator.Request{Families: []allocator.Family{allocator.IPv6, allocator.IPv4}, RequireAll: true}},
		{name: "prefer dual", svc: lbService("s", func(s *corev1.Service) {
			s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol}
			s.Spec.IPFamilyPolicy = ptr(corev1.IPFamilyPolicyPreferDualStack)
		}), want: allocator.Request{Families: []allocator.Family{allocator.IPv4, allocator.IPv6}}},
		{name: "our annotations win", svc: lbService("s",
			ann(AnnotationPool, "p1"), ann(MetalLBPool, "p2"), ann(OpenELBPool, "p3"),
			ann(AnnotationAddresses, "203.0.113.1, 2001:db8::1"), ann(MetalLBAddresses, "203.0.113.2"),
			ann(AnnotationAllowSharedIP, "k1"), ann(MetalLBAllowSharedIP, "k2"),
			ann(AnnotationMode, "layer2"), ann(OpenELBProtocol, "bgp"),
			ann(AnnotationCommunities, "65000:2,no-export, 65000:1,large:65000:1:2"),
			func(s *corev1.Service) { s.Spec.LoadBalancerIP = "203.0.113.9" }),
			want: allocator.Request{Families: []allocator.Family{allocator.IPv4}, Pool: "p1",
				Addresses: a("203.0.113.1", "2001:db8::1"), SharingKey: "k1"},
			mode: routing.ModeLayer2, comms: "65000:1,65000:2,65535:65281|65000:1:2"},
		{name: "MetalLB", svc: lbService("s", ann(MetalLBPool, "p2"), ann(MetalLBAddresses, "203.0.113.2"), ann(MetalLBAllowSharedIP, "k2")),
			want: allocator.Request{Families: []allocator.Family{allocator.IPv4}, Pool: "p2", Addresses: a("203.0.113.2"), SharingKey: "k2"}},
		{name: "MetalLB before v0.13", svc: lbService("s", ann(MetalLBOldPool, "p2"), ann(MetalLBOldAddresses, "203.0.113.2"), ann(MetalLBOldAllowSharedIP, "k2")),
			want: allocator.Request{Families: []allocator.Family{allocator.IPv4}, Pool: "p2", Addresses: a("203.0.113.2"), SharingKey: "k2"}},
		{name: "OpenELB", svc: lbService("s", noClass, ann(OpenELBOptIn, "openelb"), ann(OpenELBPool, "eip"), ann(OpenELBAddress, "203.0.113.3"), ann(OpenELBProtocol, "layer2")),
			want: allocator.Request{Families: []allocator.Family{allocator.IPv4}, Pool: "eip", Addresses: a("203.0.113.3")}, mode: routing.ModeLayer2},
		{name: "loadBalancerIP", svc: lbService("s", func(s *corev1.Service) { s.Spec.LoadBalancerIP = "203.0.113.9" }),
			want: allocator.Request{Families: []allocator.Family{allocator.IPv4}, Addresses: a("203.0.113.9")}},
		{name: "local", svc: lbService("s", func(s *corev1.Service) {
			s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
		}), want: allocator.Request{Families: []allocator.Family{allocator.IPv4}}, local: true},
		{name: "bad address", svc: lbService("s", ann(AnnotationAddresses, "203.0.113.1,224.0.0.1")),
			want: allocator.Request{Families: []allocator.Family{allocator.IPv4}}, wantErr: "annotation vipspeaker.io/addresses: \"224.0.0.1\" is not a unicast address usable as a VIP"},
		{name: "bad community", svc: lbService("s", ann(AnnotationCommunities, "65000:70000")),
			want: allocator.Request{Families: []allocator.Family{allocator.IPv4}}, wantErr: "annotation vipspeaker.io/communities: \"65000:70000\": \"70000\" is not a number in 0..65535"},
		{name: "bad mode", svc: lbService("s", ann(OpenELBProtocol, "vrrp")),
			want: allocator.Request{Families: []allocator.Family{allocator.IPv4}}, wantErr: "annotation protocol.openelb.kubesphere.io/v1alpha1: \"vrrp\" is not a mode (bgp or layer2)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ReadService(tt.svc)
			tt.want.Service, tt.want.Namespace = "demo/s", "demo"
			tt.want.Ports = []allocator.Port{{Protocol: "TCP", Port: 80}}
			if diff := cmp.Diff(tt.want, got.Request, cmp.Comparer(func(x, y netip.Addr) bool { return x == y })); diff != "" {
				t.Errorf("request (-want +got):\n%s", diff)
			}
			if got.Mode != tt.mode || got.Local != tt.local {
				t.Errorf("mode %q local %v, want %q %v", got.Mode, got.Local, tt.mode, tt.local)
			}
			if c := strings.Join(got.Communities, ",") + "|" + strings.Join(got.LargeCommunities, ","); tt.comms != "" && c != tt.comms {
				t.Errorf("communities %s, want %s", c, tt.comms)
			}
			var errs []string
			for _, e := range got.Errors {
				errs = append(errs, e.Error())
			}
			if fmt.Sprint(errs) != fmt.Sprint(nonEmpty(tt.wantErr)) {
				t.Errorf("errors %q, want %q", errs, tt.wantErr)
			}
		})
	}
}

func nonEmpty(s string) []string {
	if s == "" {
		return nil
	}
	return []string{s}
}

func TestIngress(t *testing.T) {
	s := lbService("s", status("2001:db8::1", "203.0.113.5", "bogus", "203.0.113.5", "203.0.113.1"))
	if got := fmt.Sprint(Ingress(s)); got != "[203.0.113.1 203.0.113.5 2001:db8::1]" {
		t.Errorf("Ingress = %s", got)
	}
}
