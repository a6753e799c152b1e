package bgp

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/osrg/gobgp/v4/pkg/apiutil"
	bgppkt "github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"github.com/vipspeaker/vipspeaker/routing"
)

// announced reports whether a VIP of this mode goes out over BGP.
func announced(m routing.Mode) bool { return m == "" || m == routing.ModeBGP }

// parseCommunity reads "65000:100", a plain number or a well-known name.
func parseCommunity(s string) (uint32, error) {
	if n, err := strconv.ParseUint(s, 10, 32); err == nil {
		return uint32(n), nil
	}
	if hi, lo, ok := strings.Cut(s, ":"); ok {
		h, err1 := strconv.ParseUint(hi, 10, 16)
		l, err2 := strconv.ParseUint(lo, 10, 16)
		if err1 == nil && err2 == nil {
			return uint32(h<<16 | l), nil
		}
	}
	if c, ok := bgppkt.WellKnownCommunityValueMap[strings.ToLower(s)]; ok {
		return uint32(c), nil
	}
	return 0, fmt.Errorf("community %q: want ASN:VALUE (16-bit each), a number or a well-known name", s)
}

// vipPath builds the one path of a VIP. nh6 is the next hop for IPv6 VIPs
// (the unspecified address lets GoBGP use each session's local address).
func vipPath(v routing.VIP, nh6 netip.Addr) (*apiutil.Path, error) {
	pfx := v.Prefix()
	nlri, err := bgppkt.NewIPAddrPrefix(pfx)
	if err != nil {
		return nil, fmt.Errorf("vip %s: %w", v.Addr, err)
	}
	attrs := []bgppkt.PathAttributeInterface{bgppkt.NewPathAttributeOrigin(bgppkt.BGP_ORIGIN_ATTR_TYPE_IGP)}
	fam := bgppkt.RF_IPv4_UC
	if v.Addr.Is4() {
		nh, err := bgppkt.NewPathAttributeNextHop(netip.IPv4Unspecified())
		if err != nil {
			return nil, err
		}
		attrs = append(attrs, nh)
	} else {
		fam = bgppkt.RF_IPv6_UC
		if !nh6.IsValid() {
			nh6 = netip.IPv6Unspecified()
		}
		mp, err := bgppkt.NewPathAttributeMpReachNLRI(fam, []bgppkt.PathNLRI{{NLRI: nlri}}, nh6)
		if err != nil {
			return nil, fmt.Errorf("vip %s: %w", v.Addr, err)
		}
		attrs = append(attrs, mp)
	}
	if len(v.Attrs.Communities) > 0 {
		cs := make([]uint32, 0, len(v.Attrs.Communities))
		for _, s := range v.Attrs.Communities {
			c, err := parseCommunity(s)
			if err != nil {
				return nil, fmt.Errorf("vip %s: %w", v.Addr, err)
			}
			cs = append(cs, c)
		}
		attrs = append(attrs, bgppkt.NewPathAttributeCommunities(cs))
	}
	if len(v.Attrs.LargeCommunities) > 0 {
		ls := make([]*bgppkt.LargeCommunity, 0, len(v.Attrs.LargeCommunities))
		for _, s := range v.Attrs.LargeCommunities {
			l, err := bgppkt.ParseLargeCommunity(strings.TrimPrefix(s, "large:"))
			if err != nil {
				return nil, fmt.Errorf("vip %s: large community %q: %w", v.Addr, s, err)
			}
			ls = append(ls, l)
		}
		attrs = append(attrs, bgppkt.NewPathAttributeLargeCommunities(ls))
	}
	return &apiutil.Path{
		Family:         fam,
		Nlri:           nlri,
		Attrs:          attrs,
		IsFromExternal: true,
	}, nil
}
