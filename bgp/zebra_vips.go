package bgp

import (
	"context"
	"fmt"
	"net/netip"
	"slices"

	api "github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/config/oc"
	bgppkt "github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"github.com/osrg/gobgp/v4/pkg/server"
)

// In zebra mode GoBGP's zebra client takes every connected route of the
// node from zebra (redistribute-route-type-list = ["connect"]): the VIPs on
// kube-lb0, but also the uplinks, the management network, the pod network,
// kube-proxy's IPVS addresses. Without an export policy of the user's own
// all of them would go to the peers. So the speaker adds one of its own,
// last in the global export list: a locally originated path whose prefix
// is not a VIP the agent announces in bgp mode is rejected. Paths learned
// from peers and the VIPs are left to the user's policies and default.
// An explicit accept-route in a policy of the user's own comes first and
// lets a connected network out: that is the opt-out.
const (
	zebraOnlyVIPsPolicy = "vipspeaker-zebra-only-vips"
	zebraVIPs4Set       = "vipspeaker-zebra-vips4"
	zebraVIPs6Set       = "vipspeaker-zebra-vips6"
)

// zebraSentinel is the one prefix each VIP set always holds: GoBGP takes a
// prefix set's family from its prefixes, and a set that holds none matches
// no family, so its inverted condition would never reject. The unspecified
// addresses are never a connected route.
var zebraSentinel = map[string]netip.Prefix{
	zebraVIPs4Set: netip.MustParsePrefix("0.0.0.0/32"),
	zebraVIPs6Set: netip.MustParsePrefix("::/128"),
}

func zebraVIPSet(p netip.Prefix) string {
	if p.Addr().Is4() {
		return zebraVIPs4Set
	}
	return zebraVIPs6Set
}

// addZebraOnlyVIPs adds, in zebra mode, the VIP sets (holding only their
// sentinels: the VIPs come and go at run time, see syncZebraVIPsLocked) and
// the policy rejecting every other locally originated path, last in the
// global export list. Calling it again on the same config changes nothing.
func addZebraOnlyVIPs(cfg *parsedConfig) {
	if !cfg.set.Zebra.Config.Enabled {
		return
	}
	for _, p := range cfg.set.PolicyDefinitions {
		if p.Name == zebraOnlyVIPsPolicy {
			return
		}
	}
	pol := oc.PolicyDefinition{Name: zebraOnlyVIPsPolicy}
	for _, f := range []struct {
		set string
		afi oc.AfiSafiType
	}{{zebraVIPs4Set, oc.AFI_SAFI_TYPE_IPV4_UNICAST}, {zebraVIPs6Set, oc.AFI_SAFI_TYPE_IPV6_UNICAST}} {
		s := zebraSentinel[f.set]
		ml := fmt.Sprintf("%d..%d", s.Bits(), s.Bits())
		cfg.set.DefinedSets.PrefixSets = append(cfg.set.DefinedSets.PrefixSets, oc.PrefixSet{
			PrefixSetName: f.set,
			PrefixList:    []oc.Prefix{{IpPrefix: s, MasklengthRange: ml}},
		})
		pol.Statements = append(pol.Statements, oc.Statement{
			Name: f.set, // statement names are global in GoBGP
			Conditions: oc.Conditions{
				MatchPrefixSet: oc.MatchPrefixSet{PrefixSet: f.set, MatchSetOptions: oc.MATCH_SET_OPTIONS_RESTRICTED_TYPE_INVERT},
				BgpConditions: oc.BgpConditions{
					AfiSafiInList: []oc.AfiSafiType{f.afi},
					RouteType:     oc.ROUTE_TYPE_LOCAL,
				},
			},
			Actions: oc.Actions{RouteDisposition: oc.ROUTE_DISPOSITION_REJECT_ROUTE},
		})
	}
	cfg.set.PolicyDefinitions = append(cfg.set.PolicyDefinitions, pol)
	ap := &cfg.set.Global.ApplyPolicy.Config
	ap.ExportPolicyList = append(ap.ExportPolicyList, zebraOnlyVIPsPolicy)
}

// refillZebraVIPs puts every VIP back into the sets of b after its defined
// sets were set from cfg (a new speaker, a policy change). Callers hold
// opMu.
func (s *Server) refillZebraVIPs(ctx context.Context, b *server.BgpServer, cfg *parsedConfig) {
	if !cfg.set.Zebra.Config.Enabled {
		return
	}
	clear(s.zebraSet)
	s.syncZebraVIPs(ctx, b)
}

// syncZebraVIPsLocked is syncZebraVIPs on the running speaker, in zebra
// mode. Callers hold opMu.
func (s *Server) syncZebraVIPsLocked(ctx context.Context) {
	if s.bgp != nil && s.zebraModeLocked() {
		s.syncZebraVIPs(ctx, s.bgp)
	}
}

// pruneZebraVIPs takes out of the VIP sets the prefixes zebra has withdrawn
// since (run's ticker).
func (s *Server) pruneZebraVIPs(ctx context.Context) {
	s.opMu.Lock()
	defer s.opMu.Unlock()
	if s.zebraPendingLocked() {
		s.syncZebraVIPsLocked(ctx)
	}
}

// syncZebraVIPs makes the VIP sets of the only-VIPs policy hold the
// prefix of every VIP announced in bgp mode (s.vips). A prefix leaves the
// set only once its path has left the RIB: GoBGP runs a withdrawal
// through the export policy too, and a VIP taken out of the set before
// zebra withdraws it would have its withdrawal rejected, leaving the route
// at the peers. When zebra redistributed a new VIP before it was in the
// set, the export policy has already rejected it and GoBGP does not
// evaluate it again by itself: then the peers are soft-reset outbound.
// Callers hold opMu.
func (s *Server) syncZebraVIPs(ctx context.Context, b *server.BgpServer) {
	if s.zebraSet == nil {
		s.zebraSet = make(map[netip.Prefix]bool)
	}
	var add, gone []netip.Prefix
	want := make(map[netip.Prefix]bool, len(s.vips))
	for _, v := range s.vips {
		p := v.Prefix()
		want[p] = true
		if !s.zebraSet[p] {
			add = append(add, p)
		}
	}
	for p := range s.zebraSet {
		if !want[p] {
			gone = append(gone, p)
		}
	}
	inRIB := ribHas(b, append(slices.Clone(add), gone...))
	var del []netip.Prefix
	for _, p := range gone {
		if !inRIB[p] {
			del = append(del, p)
		}
	}
	if err := changeZebraVIPSets(ctx, b, add, del); err != nil {
		s.log.Error("update the VIP sets of the zebra export policy", "component", "zebra", "err", err)
		return
	}
	for _, p := range add {
		s.zebraSet[p] = true
	}
	for _, p := range del {
		delete(s.zebraSet, p)
	}
	early := 0
	for _, p := range add {
		if inRIB[p] {
			early++
		}
	}
	if early > 0 && s.peersAdded {
		s.log.Debug("zebra redistributed VIPs before they were in the export sets: soft reset out", "component", "zebra", "vips", early)
		if err := b.ResetPeer(ctx, &api.ResetPeerRequest{Soft: true, Direction: api.ResetPeerRequest_DIRECTION_OUT}); err != nil {
			s.log.Error("soft reset out after the VIP sets changed", "component", "zebra", "err", err)
		}
	}
}

// zebraPendingLocked reports whether a prefix waits for zebra's withdrawal before
// it leaves the VIP sets (run's ticker then calls pruneZebraVIPs).
// Callers hold opMu.
func (s *Server) zebraPendingLocked() bool {
	for p := range s.zebraSet {
		if _, ok := s.vips[p.Addr()]; !ok {
			return true
		}
	}
	return false
}

// changeZebraVIPSets adds and removes prefixes of the VIP sets.
func changeZebraVIPSets(ctx context.Context, b interface {
	AddDefinedSet(context.Context, *api.AddDefinedSetRequest) error
	DeleteDefinedSet(context.Context, *api.DeleteDefinedSetRequest) error
}, add, del []netip.Prefix) error {
	for name, ps := range bySet(add) {
		if err := b.AddDefinedSet(ctx, &api.AddDefinedSetRequest{DefinedSet: apiPrefixSet(name, ps)}); err != nil {
			return fmt.Errorf("add to %s: %w", name, err)
		}
	}
	for name, ps := range bySet(del) {
		if err := b.DeleteDefinedSet(ctx, &api.DeleteDefinedSetRequest{DefinedSet: apiPrefixSet(name, ps)}); err != nil {
			return fmt.Errorf("remove from %s: %w", name, err)
		}
	}
	return nil
}

func bySet(ps []netip.Prefix) map[string][]netip.Prefix {
	out := map[string][]netip.Prefix{}
	for _, p := range ps {
		out[zebraVIPSet(p)] = append(out[zebraVIPSet(p)], p)
	}
	return out
}

func apiPrefixSet(name string, ps []netip.Prefix) *api.DefinedSet {
	d := &api.DefinedSet{DefinedType: api.DefinedType_DEFINED_TYPE_PREFIX, Name: name}
	for _, p := range ps {
		d.Prefixes = append(d.Prefixes, &api.Prefix{IpPrefix: p.String(), MaskLengthMin: uint32(p.Bits()), MaskLengthMax: uint32(p.Bits())})
	}
	return d
}

// ribHas reports which of ps have a path in b's global RIB.
func ribHas(b *server.BgpServer, ps []netip.Prefix) map[netip.Prefix]bool {
	out := make(map[netip.Prefix]bool, len(ps))
	for _, fam := range []bgppkt.Family{bgppkt.RF_IPv4_UC, bgppkt.RF_IPv6_UC} {
		var look []*apiutil.LookupPrefix
		for _, p := range ps {
			if p.Addr().Is4() == (fam == bgppkt.RF_IPv4_UC) {
				look = append(look, &apiutil.LookupPrefix{Prefix: p.String(), LookupOption: apiutil.LOOKUP_EXACT})
			}
		}
		if len(look) == 0 {
			continue
		}
		_ = b.ListPath(apiutil.ListPathRequest{TableType: api.TableType_TABLE_TYPE_GLOBAL, Family: fam, Prefixes: look},
			func(n bgppkt.NLRI, paths []*apiutil.Path) {
				if p, err := netip.ParsePrefix(n.String()); err == nil && len(paths) > 0 {
					out[p] = true
				}
			})
	}
	return out
}
