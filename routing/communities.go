package routing

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// wellKnownCommunities are the RFC 1997 / RFC 7999 / RFC 8326 names a
// user may write instead of numbers.
var wellKnownCommunities = map[string]string{
	"graceful-shutdown":   "65535:0",
	"blackhole":           "65535:666",
	"no-export":           "65535:65281",
	"no-advertise":        "65535:65282",
	"no-export-subconfed": "65535:65283",
	"local-as":            "65535:65283",
	"no-peer":             "65535:65284",
}

// ParseCommunities reads BGP communities as users write them (the entries
// of a vipspeaker.io/communities annotation, a pool's
// advertise.communities): standard ones "A:B" (16-bit numbers) or
// well-known names, large ones "large:A:B:C" (32-bit numbers). Valid
// entries come back numeric ("65535:0"; large ones without "large:"),
// sorted numerically and deduplicated; each invalid one is an error.
func ParseCommunities(list []string) (std, large []string, errs []error) {
	var stdN, largeN [][3]uint64
	for _, tok := range list {
		tok = strings.TrimSpace(tok)
		lower := strings.ToLower(tok)
		if v, ok := wellKnownCommunities[lower]; ok {
			lower = v
		}
		if rest, ok := strings.CutPrefix(lower, "large:"); ok {
			parts := strings.Split(rest, ":")
			if len(parts) != 3 {
				errs = append(errs, fmt.Errorf("%q: a large community is large:A:B:C", tok))
				continue
			}
			if n, err := numbers(tok, parts, 32); err != nil {
				errs = append(errs, err)
			} else {
				largeN = append(largeN, n)
			}
			continue
		}
		parts := strings.Split(lower, ":")
		if len(parts) != 2 {
			errs = append(errs, fmt.Errorf("%q is not a community (ASN:value, large:A:B:C or a well-known name)", tok))
			continue
		}
		if n, err := numbers(tok, parts, 16); err != nil {
			errs = append(errs, err)
		} else {
			stdN = append(stdN, n)
		}
	}
	return communityText(stdN, false), communityText(largeN, true), errs
}

func numbers(tok string, parts []string, bits int) ([3]uint64, error) {
	var n [3]uint64
	for i, p := range parts {
		v, err := strconv.ParseUint(p, 10, bits)
		if err != nil {
			return n, fmt.Errorf("%q: %q is not a number in 0..%d", tok, p, uint64(1)<<bits-1)
		}
		n[i] = v
	}
	return n, nil
}

// MergeCommunities is the union of numeric community lists as
// ParseCommunities returns them (a "large:" prefix is dropped), sorted
// numerically and deduplicated: standard ones, then large ones, then any
// entry that is not numeric, as it is.
func MergeCommunities(lists ...[]string) []string {
	var std, large [][3]uint64
	var other []string
	for _, l := range lists {
		for _, s := range l {
			s = strings.TrimPrefix(s, "large:")
			parts := strings.Split(s, ":")
			var n [3]uint64
			ok := len(parts) == 2 || len(parts) == 3
			for i := 0; ok && i < len(parts); i++ {
				var err error
				n[i], err = strconv.ParseUint(parts[i], 10, 32)
				ok = err == nil
			}
			switch {
			case !ok:
				other = append(other, s)
			case len(parts) == 2:
				std = append(std, n)
			default:
				large = append(large, n)
			}
		}
	}
	slices.Sort(other)
	out := append(append(communityText(std, false), communityText(large, true)...), slices.Compact(other)...)
	if len(out) == 0 {
		return nil
	}
	return out
}

// communityText sorts and deduplicates ns and writes them as "A:B", or
// "A:B:C" when large.
func communityText(ns [][3]uint64, large bool) []string {
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
