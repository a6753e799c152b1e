package standalone

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/vipspeaker/vipspeaker/routing"
)

// Annotations read from Services.
const (
	AnnotationAddresses   = "vipspeaker.io/addresses"
	AnnotationMode        = "vipspeaker.io/mode"
	AnnotationCommunities = "vipspeaker.io/communities"

	MetalLBLoadBalancerIPs = "metallb.io/loadBalancerIPs"
	OpenELBAddress         = "eip.openelb.kubesphere.io/v1alpha1"
	OpenELBProtocol        = "protocol.openelb.kubesphere.io/v1alpha1"

	// LoadBalancerClass is vipspeaker's spec.loadBalancerClass.
	LoadBalancerClass = "vipspeaker.io/lb"
)

// wanted is what one Service asks for.
type wanted struct {
	service     string
	addrs       []netip.Addr
	mode        routing.Mode
	communities []string
	large       []string
}

// evaluation is a Service read from one document.
type evaluation struct {
	w        wanted
	errs     []*Error
	attrsBad bool // mode or communities invalid: the Service cannot be used as is
}

func serviceKey(svc *corev1.Service) string {
	ns := svc.Namespace
	if ns == "" {
		ns = "default"
	}
	return ns + "/" + svc.Name
}

func annotationField(key string) string {
	return "metadata.annotations[" + strconv.Quote(key) + "]"
}

// evaluate reads a LoadBalancer Service's addresses and attributes. mkErr
// builds an error located in the document; needle helps find the line.
func evaluate(svc *corev1.Service, mkErr func(field, needle, msg string) *Error) evaluation {
	ev := evaluation{w: wanted{service: serviceKey(svc)}}
	bad := func(field, needle, format string, args ...any) {
		ev.errs = append(ev.errs, mkErr(field, needle, fmt.Sprintf(format, args...)))
	}
	ann := svc.Annotations

	// Addresses: the first source present wins.
	var tokens []string
	var field string
	for _, key := range []string{AnnotationAddresses, MetalLBLoadBalancerIPs, OpenELBAddress} {
		if v := strings.TrimSpace(ann[key]); v != "" {
			tokens, field = splitList(v), annotationField(key)
			break
		}
	}
	addField := func(int) string { return field }
	if field == "" && svc.Spec.LoadBalancerIP != "" {
		tokens, field = []string{strings.TrimSpace(svc.Spec.LoadBalancerIP)}, "spec.loadBalancerIP"
	}
	if field == "" {
		for _, ing := range svc.Status.LoadBalancer.Ingress {
			if ing.IP != "" {
				tokens = append(tokens, strings.TrimSpace(ing.IP))
			}
		}
		ingressIdx := []int{}
		for i, ing := range svc.Status.LoadBalancer.Ingress {
			if ing.IP != "" {
				ingressIdx = append(ingressIdx, i)
			}
		}
		addField = func(i int) string { return fmt.Sprintf("status.loadBalancer.ingress[%d].ip", ingressIdx[i]) }
	}
	for i, tok := range tokens {
		a, err := parseVIP(tok)
		if err != nil {
			bad(addField(i), tok, "%v", err)
			continue
		}
		if !slices.Contains(ev.w.addrs, a) {
			ev.w.addrs = append(ev.w.addrs, a)
		}
	}
	slices.SortFunc(ev.w.addrs, netip.Addr.Compare)

	// Mode.
	for _, key := range []string{AnnotationMode, OpenELBProtocol} {
		v := ann[key]
		if strings.TrimSpace(v) == "" {
			continue
		}
		switch m := routing.Mode(strings.TrimSpace(v)); m {
		case routing.ModeBGP, routing.ModeLayer2:
			ev.w.mode = m
		default:
			bad(annotationField(key), key, "%q is not a mode (bgp or layer2)", v)
			ev.attrsBad = true
		}
		break
	}

	// Communities.
	if v, ok := ann[AnnotationCommunities]; ok {
		std, large, errs := parseCommunities(v)
		for _, err := range errs {
			bad(annotationField(AnnotationCommunities), AnnotationCommunities, "%v", err)
			ev.attrsBad = true
		}
		ev.w.communities, ev.w.large = std, large
	}
	return ev
}

// splitList splits at commas and white space, dropping empty entries.
func splitList(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool {
		return r == ',' || r == ' ' || r == '\t' || r == '\n' || r == '\r'
	})
}

var limitedBroadcast = netip.AddrFrom4([4]byte{255, 255, 255, 255})

// parseVIP accepts a unicast IPv4 or IPv6 address usable as a VIP.
func parseVIP(s string) (netip.Addr, error) {
	if strings.Contains(s, "/") {
		return netip.Addr{}, fmt.Errorf("%q is a prefix, not an address", s)
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%q is not an IP address", s)
	}
	var why string
	switch {
	case a.Zone() != "":
		why = "has a zone"
	case a.Is4In6():
		why = "is IPv4-mapped IPv6 (write " + a.Unmap().String() + ")"
	case a.IsUnspecified():
		why = "is the unspecified address"
	case a.IsLoopback():
		why = "is a loopback address"
	case a.IsMulticast():
		why = "is a multicast address"
	case a.IsLinkLocalUnicast():
		why = "is a link-local address"
	case a == limitedBroadcast:
		why = "is the limited broadcast address"
	default:
		return a, nil
	}
	return netip.Addr{}, fmt.Errorf("%q %s, not a unicast VIP", s, why)
}

// parseCommunities reads a vipspeaker.io/communities value
// (routing.ParseCommunities of its entries).
func parseCommunities(s string) (std, large []string, errs []error) {
	return routing.ParseCommunities(splitList(s))
}
