package bgp

import (
	"context"
	"errors"
	"fmt"
	"math"
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

// prefixPath builds the path announcing pfx (a VIP's host prefix or its
// pool's covering prefix) with attrs. nh6 is the next hop for IPv6 (the
// unspecified address lets GoBGP use each session's local address).
func prefixPath(pfx netip.Prefix, a routing.Attrs, nh6 netip.Addr) (*apiutil.Path, error) {
	nlri, err := bgppkt.NewIPAddrPrefix(pfx)
	if err != nil {
		return nil, fmt.Errorf("vip %s: %w", pfx, err)
	}
	attrs := []bgppkt.PathAttributeInterface{bgppkt.NewPathAttributeOrigin(bgppkt.BGP_ORIGIN_ATTR_TYPE_IGP)}
	fam := bgppkt.RF_IPv4_UC
	if pfx.Addr().Is4() {
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
			return nil, fmt.Errorf("vip %s: %w", pfx, err)
		}
		attrs = append(attrs, mp)
	}
	if a.LocalPref > 0 {
		attrs = append(attrs, bgppkt.NewPathAttributeLocalPref(a.LocalPref))
	}
	if len(a.Communities) > 0 {
		cs := make([]uint32, 0, len(a.Communities))
		for _, s := range a.Communities {
			c, err := parseCommunity(s)
			if err != nil {
				return nil, fmt.Errorf("vip %s: %w", pfx, err)
			}
			cs = append(cs, c)
		}
		attrs = append(attrs, bgppkt.NewPathAttributeCommunities(cs))
	}
	if len(a.LargeCommunities) > 0 {
		ls := make([]*bgppkt.LargeCommunity, 0, len(a.LargeCommunities))
		for _, s := range a.LargeCommunities {
			l, err := bgppkt.ParseLargeCommunity(strings.TrimPrefix(s, "large:"))
			if err != nil {
				return nil, fmt.Errorf("vip %s: large community %q: %w", pfx, s, err)
			}
			ls = append(ls, l)
		}
		attrs = append(attrs, bgppkt.NewPathAttributeLargeCommunities(ls))
	}
	if a.Weight > 0 {
		attrs = append(attrs, bgppkt.NewPathAttributeExtendedCommunities([]bgppkt.ExtendedCommunityInterface{linkBandwidth(a.Weight)}))
	}
	return &apiutil.Path{
		Family:         fam,
		Nlri:           nlri,
		Attrs:          attrs,
		IsFromExternal: true,
	}, nil
}

// prepend gives p an AS_PATH of as repeated n times (the speaker adds its
// own once more towards eBGP peers), which makes routers prefer other
// nodes' paths for the prefix while keeping this one.
func prepend(p *apiutil.Path, as uint32, n int) error {
	if as == 0 {
		return errors.New("as-path prepend: the speaker has no AS yet")
	}
	seq := make([]uint32, n)
	for i := range seq {
		seq[i] = as
	}
	p.Attrs = append(p.Attrs, bgppkt.NewPathAttributeAsPath([]bgppkt.AsPathParamInterface{
		bgppkt.NewAs4PathParam(bgppkt.BGP_ASPATH_ATTR_TYPE_SEQ, seq)}))
	return nil
}

// localAS is the speaker's AS from the config in force (0 before one);
// callers hold opMu.
func (s *Server) localAS() uint32 {
	if s.cur == nil {
		return 0
	}
	return s.cur.set.Global.Config.As
}

// BandwidthPerWeight is the link bandwidth one unit of routing.Attrs.Weight
// (one ready endpoint) announces: 1 Mbit/s, in bytes per second as the
// community carries it. Routers use the ratio between paths, not the value.
const BandwidthPerWeight = 125_000

// linkBandwidth is the link-bandwidth extended community (RFC 10005) for
// weight w, in its transitive form (type 0x00, sub-type 0x04), which FRR
// 8.4 turns into kernel next-hop weights from eBGP peers
// (test/e2e/realnodes TestWeightedByEndpoints); GoBGP's
// LinkBandwidthExtended is the non-transitive form (0x40), not tried. The
// AS field is informational (AS_TRANS here: the community has two octets
// for it).
func linkBandwidth(w uint32) bgppkt.ExtendedCommunityInterface {
	return &bgppkt.TwoOctetAsSpecificExtended{
		SubType:      bgppkt.EC_SUBTYPE_LINK_BANDWIDTH,
		AS:           23456,
		LocalAdmin:   math.Float32bits(float32(w) * BandwidthPerWeight),
		IsTransitive: true,
	}
}

// handle applies VIP events to the RIB: one AddPath call for everything
// new or changed, one DeletePath call (by path) for everything gone.
func (s *Server) handle(evs []routing.Event) {
	if len(evs) == 0 {
		return
	}
	s.opMu.Lock()
	defer s.opMu.Unlock()
	if s.bgp == nil {
		return
	}
	want := make(map[netip.Addr]*routing.VIP)
	for _, ev := range evs {
		v := ev.VIP
		switch {
		case ev.Kind == routing.Removed || !announced(v.Attrs.Mode):
			want[v.Addr] = nil
		default:
			want[v.Addr] = &v
		}
	}
	touched := make(map[netip.Prefix]bool, len(want))
	for a, v := range want {
		old, had := s.vips[a]
		switch {
		case v == nil && had:
			s.dropVIPLocked(old, touched)
		case v != nil && !(had && old.Attrs.Equal(v.Attrs)):
			s.setVIPLocked(*v, touched)
		}
	}
	add, del := s.rebuildLocked(touched)
	s.pushPaths(add, del)
	s.syncZebraVIPsLocked(context.Background())
	s.announced.Store(int64(len(s.vips)))
}

// pushPaths is the native feed: it adds and deletes VIP paths in the RIB.
// In zebra mode it does nothing: the VIP paths are zebra's redistribution
// of the VIP interface's connected routes (see zebraModeLocked). Callers
// hold opMu.
func (s *Server) pushPaths(add, del []*apiutil.Path) {
	if s.zebraModeLocked() {
		return
	}
	s.nativeUpdates.Add(float64(len(add) + len(del)))
	if len(del) > 0 {
		if err := s.bgp.DeletePath(apiutil.DeletePathRequest{Paths: del}); err != nil {
			s.log.Error("withdraw vips", "count", len(del), "err", err)
		}
	}
	if len(add) > 0 {
		resps, err := s.bgp.AddPath(apiutil.AddPathRequest{Paths: add})
		for i, r := range resps {
			if r.Error != nil && i < len(add) {
				s.log.Error("announce vip", "vip", add[i].Nlri.String(), "err", r.Error)
			}
		}
		if err != nil && len(resps) == 0 {
			s.log.Error("announce vips", "count", len(add), "err", err)
		}
	}
	if len(add)+len(del) > 0 {
		s.log.Debug("vip paths updated", "announced", len(add), "withdrawn", len(del))
	}
}

// reannounce6 rebuilds the IPv6 paths after the next hop changed.
func (s *Server) reannounce6() {
	touched := make(map[netip.Prefix]bool)
	for k := range s.paths {
		if k.Addr().Is6() {
			touched[k] = true
			delete(s.sigs, k)
		}
	}
	add, _ := s.rebuildLocked(touched)
	s.pushPaths(add, nil)
}

func (s *Server) announcedCount() int { return int(s.announced.Load()) }
