package routing

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// wellKnownCommunities are the RFC 1997 / RFC 8326 / RFC 7999 names a
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

// ParseCommunities reads BGP communities as users write them (the
// vipspeaker.io/communities annotation, a pool's advertise.communities):
// standard ones "A:B" (16-bit numbers) or well-known names, large ones
// "large:A:B:C" (32-bit numbers). The results are numeric ("65535:0",
// "1:2:3" without the large: prefix), sorted and deduplicated. The first
// invalid entry is an error.
func ParseCommunities(list []string) (std, large []string, err error) {
	var sn, ln [][3]uint64
	for _, tok := range list {
		t := strings.ToLower(strings.TrimSpace(tok))
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
	return communityText(sn, false), communityText(ln, true), nil
}

// MergeCommunities is the sorted, deduplicated union of communities as
// ParseCommunities returns them (standard or large lists, not mixed; a
// "large:" prefix is dropped). Entries that are not numeric stay as they
// are, after the numeric ones.
func MergeCommunities(lists ...[]string) []string {
	var ns [][3]uint64
	var other []string
	large := false
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
			if !ok {
				other = append(other, s)
				continue
			}
			large = len(parts) == 3
			ns = append(ns, n)
		}
	}
	slices.Sort(other)
	out := append(communityText(ns, large), slices.Compact(other)...)
	if len(out) == 0 {
		return nil
	}
	return out
}

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
