package kube

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
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
)

// Keys read for each setting, first present wins.
var (
	poolKeys    = []string{AnnotationPool, MetalLBPool, OpenELBPool}
	addressKeys = []string{AnnotationAddresses, MetalLBAddresses, OpenELBAddress}
	modeKeys    = []string{AnnotationMode, OpenELBProtocol}
	sharingKeys = []string{AnnotationAllowSharedIP, MetalLBAllowSharedIP}
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

var wellKnownCommunities = map[string]string{
	"graceful-shutdown":   "65535:0",
	"blackhole":           "65535:666",
	"no-export":           "65535:65281",
	"no-advertise":        "65535:65282",
	"no-export-subconfed": "65535:65283",
	"local-as":            "65535:65283",
	"no-peer":             "65535:65284",
}

// ParseCommunities reads a vipspeaker.io/communities value: standard
// communities "A:B" (16-bit numbers) or well-known names, large ones
// "large:A:B:C" (32-bit numbers). The results are numeric, sorted and
// deduplicated. The first invalid entry is an error.
func ParseCommunities(s string) (std, large []string, err error) {
	var sn, ln [][3]uint64
	for _, tok := range SplitList(s) {
		t := strings.ToLower(tok)
		if v, ok := wellKnownCommunities[t]; ok {
			t = v
		}
		parts, bitSize, isLarge := strings.Split(t, ":"), 16, false
		if rest, ok := strings.CutPrefix(t, "large:"); ok {
			parts, bitSize, isLarge = strings.Split(rest, ":"), 32, true
		}
		if (isLarge && len(parts) != 3) || (!isLarge && len(parts) != 2) {
			return nil, nil, fmt.Errorf("%q is not a community (A:B, large:A:B:C or a well-known name)", tok)
		}
		var n [3]uint64
		for i, p := range parts {
			v, perr := strconv.ParseUint(p, 10, bitSize)
			if perr != nil {
				return nil, nil, fmt.Errorf("%q: %q is not a number of %d bits", tok, p, bitSize)
			}
			n[i] = v
		}
		if isLarge {
			ln = append(ln, n)
		} else {
			sn = append(sn, n)
		}
	}
	text := func(ns [][3]uint64, large bool) []string {
		slices.SortFunc(ns, func(a, b [3]uint64) int {
			return cmp.Or(cmp.Compare(a[0], b[0]), cmp.Compare(a[1], b[1]), cmp.Compare(a[2], b[2]))
		})
		ns = slices.Compact(ns)
		var out []string
		for _, n := range ns {
			if large {
				out = append(out, fmt.Sprintf("%d:%d:%d", n[0], n[1], n[2]))
			} else {
				out = append(out, fmt.Sprintf("%d:%d", n[0], n[1]))
			}
		}
		return out
	}
	return text(sn, false), text(ln, true), nil
}
