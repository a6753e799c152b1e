package kube

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/vipspeaker/vipspeaker/routing"
)

// Service annotations and the load balancer class (INTERFACE.md).
const (
	LoadBalancerClass = "vipspeaker.io/lb"

	AnnotationPool          = "vipspeaker.io/pool"
	AnnotationAddresses     = "vipspeaker.io/addresses"
	AnnotationMode          = "vipspeaker.io/mode"
	AnnotationAllowSharedIP = "vipspeaker.io/allow-shared-ip"
	AnnotationCommunities   = "vipspeaker.io/communities"
	AnnotationAllocatedFrom = "vipspeaker.io/allocated-from"

	// Read for migration from OpenELB.
	OpenELBOptIn      = "lb.kubesphere.io/v1alpha1" // value "openelb"
	OpenELBOptInValue = "openelb"
	OpenELBPool       = "eip.openelb.kubesphere.io/v1alpha2"
	OpenELBAddress    = "eip.openelb.kubesphere.io/v1alpha1"
	OpenELBProtocol   = "protocol.openelb.kubesphere.io/v1alpha1"

	// Read for migration from MetalLB.
	MetalLBPool          = "metallb.io/address-pool"
	MetalLBAddresses     = "metallb.io/loadBalancerIPs"
	MetalLBAllowSharedIP = "metallb.io/allow-shared-ip"
	// MetalLB before v0.13 (and many Services written since) used the
	// metallb.universe.tf prefix.
	MetalLBOldPool          = "metallb.universe.tf/address-pool"
	MetalLBOldAddresses     = "metallb.universe.tf/loadBalancerIPs"
	MetalLBOldAllowSharedIP = "metallb.universe.tf/allow-shared-ip"
)

// Keys read for each setting, first present wins.
var (
	poolKeys    = []string{AnnotationPool, MetalLBPool, MetalLBOldPool, OpenELBPool}
	addressKeys = []string{AnnotationAddresses, MetalLBAddresses, MetalLBOldAddresses, OpenELBAddress}
	modeKeys    = []string{AnnotationMode, OpenELBProtocol}
	sharingKeys = []string{AnnotationAllowSharedIP, MetalLBAllowSharedIP, MetalLBOldAllowSharedIP}
)

// AnnotationError is one invalid annotation.
type AnnotationError struct {
	Key, Value, Msg string
}

func (e *AnnotationError) Error() string {
	return fmt.Sprintf("annotation %s: %s", e.Key, e.Msg)
}

// firstOf returns the key and trimmed value of the first non-empty
// annotation of keys.
func firstOf(ann map[string]string, keys []string) (string, string) {
	for _, k := range keys {
		if v := strings.TrimSpace(ann[k]); v != "" {
			return k, v
		}
	}
	return "", ""
}

// SplitList splits an annotation value at commas and white space.
func SplitList(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool {
		return r == ',' || r == ' ' || r == '\t' || r == '\n' || r == '\r'
	})
}

// ParseVIP accepts a unicast IPv4 or IPv6 host address usable as a VIP.
func ParseVIP(s string) (netip.Addr, error) {
	if strings.Contains(s, "/") {
		return netip.Addr{}, fmt.Errorf("%q is a prefix, not an address", s)
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%q is not an IP address", s)
	}
	switch {
	case a.Zone() != "":
		return netip.Addr{}, fmt.Errorf("%q has a zone", s)
	case a.Is4In6():
		return netip.Addr{}, fmt.Errorf("%q is IPv4-mapped; write %s", s, a.Unmap())
	case a.IsUnspecified(), a.IsLoopback(), a.IsMulticast(), a.IsLinkLocalUnicast(),
		a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return netip.Addr{}, fmt.Errorf("%q is not a unicast address usable as a VIP", s)
	}
	return a, nil
}

// ParseAddresses parses a list of VIPs (an addresses annotation).
func ParseAddresses(s string) ([]netip.Addr, error) {
	var out []netip.Addr
	for _, tok := range SplitList(s) {
		a, err := ParseVIP(tok)
		if err != nil {
			return nil, err
		}
		if !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out, nil
}

// ParseMode reads a mode annotation value.
func ParseMode(s string) (routing.Mode, error) {
	switch m := routing.Mode(strings.ToLower(strings.TrimSpace(s))); m {
	case routing.ModeBGP, routing.ModeLayer2:
		return m, nil
	}
	return "", fmt.Errorf("%q is not a mode (bgp or layer2)", s)
}

// ParseCommunities reads a vipspeaker.io/communities value (a list split
// at commas and white space) as routing.ParseCommunities does; the first
// invalid entry is the error.
func ParseCommunities(s string) (std, large []string, err error) {
	std, large, errs := routing.ParseCommunities(SplitList(s))
	if len(errs) > 0 {
		return nil, nil, errs[0]
	}
	return std, large, nil
}
