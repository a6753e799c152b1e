package kube

import (
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"

	"github.com/vipspeaker/vipspeaker/kube/allocator"
	"github.com/vipspeaker/vipspeaker/routing"
)

// ServiceKey is "namespace/name".
func ServiceKey(svc *corev1.Service) string { return svc.Namespace + "/" + svc.Name }

// Handles reports whether vipspeaker serves the Service: a LoadBalancer with
// class vipspeaker.io/lb; with no class when defaultClass is set or the
// Service carries OpenELB's opt-in annotation.
func Handles(svc *corev1.Service, defaultClass bool) bool {
	if svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
		return false
	}
	if c := svc.Spec.LoadBalancerClass; c != nil {
		return *c == LoadBalancerClass
	}
	return defaultClass || svc.Annotations[OpenELBOptIn] == OpenELBOptInValue
}

// Spec is what vipspeaker reads from one Service.
type Spec struct {
	// Request for the allocator (without Current).
	Request allocator.Request
	// Mode asked for by annotation; empty: the pool's.
	Mode             routing.Mode
	Communities      []string
	LargeCommunities []string
	// Local: externalTrafficPolicy Local.
	Local bool
	// Errors are the invalid annotations; when there is any, the Service
	// must not get new addresses.
	Errors []*AnnotationError
}

// ReadService reads a Service's wishes.
func ReadService(svc *corev1.Service) Spec {
	ann := svc.Annotations
	s := Spec{
		Request: allocator.Request{Service: ServiceKey(svc), Namespace: svc.Namespace, Labels: svc.Labels},
		Local:   svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal,
	}
	bad := func(key, value string, err error) {
		s.Errors = append(s.Errors, &AnnotationError{Key: key, Value: value, Msg: err.Error()})
	}
	r := &s.Request
	for _, f := range svc.Spec.IPFamilies {
		fam := allocator.IPv4
		if f == corev1.IPv6Protocol {
			fam = allocator.IPv6
		}
		if !slices.Contains(r.Families, fam) {
			r.Families = append(r.Families, fam)
		}
	}
	switch p := svc.Spec.IPFamilyPolicy; {
	case p == nil || *p == corev1.IPFamilyPolicySingleStack:
		if len(r.Families) > 1 {
			r.Families = r.Families[:1]
		}
	case *p == corev1.IPFamilyPolicyRequireDualStack:
		r.RequireAll = true
	}
	_, r.Pool = firstOf(ann, poolKeys)
	if key, v := firstOf(ann, addressKeys); key != "" {
		addrs, err := ParseAddresses(v)
		if err != nil {
			bad(key, v, err)
		}
		r.Addresses = addrs
	} else if v := svc.Spec.LoadBalancerIP; v != "" {
		a, err := ParseVIP(v)
		if err != nil {
			bad("spec.loadBalancerIP", v, err)
		} else {
			r.Addresses = []netip.Addr{a}
		}
	}
	_, r.SharingKey = firstOf(ann, sharingKeys)
	for _, p := range svc.Spec.Ports {
		r.Ports = append(r.Ports, allocator.Port{Protocol: string(p.Protocol), Port: p.Port})
	}
	if key, v := firstOf(ann, modeKeys); key != "" {
		m, err := ParseMode(v)
		if err != nil {
			bad(key, v, err)
		}
		s.Mode = m
	}
	if v, ok := ann[AnnotationCommunities]; ok {
		std, large, err := ParseCommunities(v)
		if err != nil {
			bad(AnnotationCommunities, v, err)
		}
		s.Communities, s.LargeCommunities = std, large
	}
	return s
}

// Ingress returns the IPs of status.loadBalancer.ingress that parse,
// deduplicated, IPv4 first.
func Ingress(svc *corev1.Service) []netip.Addr {
	var out []netip.Addr
	for _, ing := range svc.Status.LoadBalancer.Ingress {
		a, err := netip.ParseAddr(ing.IP)
		if err != nil || slices.Contains(out, a) {
			continue
		}
		out = append(out, a.Unmap())
	}
	slices.SortFunc(out, func(x, y netip.Addr) int {
		if x.BitLen() != y.BitLen() {
			return x.BitLen() - y.BitLen()
		}
		return x.Compare(y)
	})
	return out
}
