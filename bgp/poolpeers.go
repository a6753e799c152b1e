package bgp

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"

	"github.com/osrg/gobgp/v4/pkg/config/oc"

	"github.com/vipspeaker/vipspeaker/routing"
)

// A pool's [pools.advertise] peers become an export policy of the
// speaker's own, poolPeersPolicy, last in the global export list (after
// the user's policies, like the zebra only-VIPs policy): for each such pool
// and family, a statement rejects a locally originated path inside the
// pool's prefixes towards a neighbor outside the pool's neighbor set. It
// decides nothing else, so what the user's policies accept or reject
// first stays decided, and paths learned from peers are left to them.
// Changing it is a policy change: defined sets and policies are replaced
// and the peers soft-reset, with no session reset.
const poolPeersPolicy = "vipspeaker-pool-peers"

// poolNobody stands in a pool's neighbor set while none of its peers has
// an address yet (an unnumbered neighbor whose router was not heard): no
// peer is ever at the unspecified address, so the pool goes nowhere.
const poolNobody = "::/128"

// SetPoolPeers makes the paths of each listed pool go only to its peers
// (gobgp.conf neighbors by address, or by interface for unnumbered ones);
// pools not listed go to every neighbor. A change applies the last
// accepted gobgp.conf again with the new policy, by the same diff as a
// reload: a soft reset out, no session reset.
func (s *Server) SetPoolPeers(ctx context.Context, pools []routing.PoolPeers) error {
	s.opMu.Lock()
	defer s.opMu.Unlock()
	if slices.EqualFunc(pools, s.poolPeers, routing.PoolPeers.Equal) {
		return nil
	}
	s.poolPeers = slices.Clone(pools)
	return s.reapplyLocked(ctx)
}

// reapplyLocked applies the last accepted gobgp.conf again, with what the
// agent adds to it now (hidden neighbors, pool peers). Callers hold opMu.
func (s *Server) reapplyLocked(ctx context.Context) error {
	if s.wanted == nil || s.stopped {
		return nil
	}
	cfg := s.withoutHidden(s.wanted)
	if s.bgp == nil {
		s.pending = cfg
		return nil
	}
	return s.applyLocked(ctx, cfg)
}

// addPoolPeers adds the pool-peers policy and its sets to cfg, built from
// s.poolPeers and the routers' addresses of unnumbered neighbors known
// now (recorded in cfg.poolLinkLocal). The slices it appends to are
// clipped first: cfg shares them with the accepted config. Calling it
// again on the same config changes nothing. Callers hold opMu.
func (s *Server) addPoolPeers(cfg *parsedConfig) {
	if len(s.poolPeers) == 0 || slices.ContainsFunc(cfg.set.PolicyDefinitions, func(p oc.PolicyDefinition) bool {
		return p.Name == poolPeersPolicy
	}) {
		return
	}
	ds := &cfg.set.DefinedSets
	prefixSets, neighborSets := slices.Clip(ds.PrefixSets), slices.Clip(ds.NeighborSets)
	pol := oc.PolicyDefinition{Name: poolPeersPolicy}
	cfg.poolLinkLocal = map[string]netip.Addr{}
	for _, pp := range s.poolPeers {
		nset := poolNeighborSet(pp.Pool)
		neighborSets = append(neighborSets, oc.NeighborSet{NeighborSetName: nset, NeighborInfoList: s.poolNeighbors(pp.Peers, cfg.poolLinkLocal)})
		for _, v := range []int{4, 6} {
			name := fmt.Sprintf("vipspeaker-pool-%s-v%d", pp.Pool, v)
			var list []oc.Prefix
			for _, p := range pp.Prefixes {
				if p.Addr().Is4() == (v == 4) {
					list = append(list, oc.Prefix{IpPrefix: p, MasklengthRange: fmt.Sprintf("%d..%d", p.Bits(), p.Addr().BitLen())})
				}
			}
			if len(list) == 0 {
				continue // a set holds one family, and none of this one
			}
			prefixSets = append(prefixSets, oc.PrefixSet{PrefixSetName: name, PrefixList: list})
			pol.Statements = append(pol.Statements, oc.Statement{
				Name: name, // statement names are global in GoBGP
				Conditions: oc.Conditions{
					MatchPrefixSet:   oc.MatchPrefixSet{PrefixSet: name, MatchSetOptions: oc.MATCH_SET_OPTIONS_RESTRICTED_TYPE_ANY},
					MatchNeighborSet: oc.MatchNeighborSet{NeighborSet: nset, MatchSetOptions: oc.MATCH_SET_OPTIONS_RESTRICTED_TYPE_INVERT},
					BgpConditions:    oc.BgpConditions{RouteType: oc.ROUTE_TYPE_LOCAL},
				},
				Actions: oc.Actions{RouteDisposition: oc.ROUTE_DISPOSITION_REJECT_ROUTE},
			})
		}
	}
	ds.PrefixSets, ds.NeighborSets = prefixSets, neighborSets
	cfg.set.PolicyDefinitions = append(slices.Clip(cfg.set.PolicyDefinitions), pol)
	ap := &cfg.set.Global.ApplyPolicy.Config
	ap.ExportPolicyList = append(slices.Clip(ap.ExportPolicyList), poolPeersPolicy)
}

// poolNeighbors are the neighbor-set entries of peers: each address as a
// host prefix, each unnumbered neighbor's interface as the link-local
// address GoBGP has for its router (noted in used), poolNobody when there
// is none. Callers hold opMu.
func (s *Server) poolNeighbors(peers []string, used map[string]netip.Addr) []string {
	var out []string
	for _, p := range peers {
		a, err := netip.ParseAddr(p)
		if err != nil {
			r, ok := s.linkLocal[p]
			if !ok {
				continue
			}
			used[p] = r
			a = r.WithZone("") // GoBGP matches the address without its zone
		}
		out = append(out, netip.PrefixFrom(a, a.BitLen()).String())
	}
	if len(out) == 0 {
		out = []string{poolNobody}
	}
	return out
}

// poolNeighborSet names the neighbor set of a pool's peers.
func poolNeighborSet(pool string) string { return "vipspeaker-pool-" + pool + "-peers" }

// followRoutersLocked puts the routers' addresses GoBGP has now for the
// unnumbered neighbors the pools name into the pool neighbor sets of the
// config in force, when they changed: a policy change, applied by soft
// reset. Only those sets change (never the global section), so this
// cannot restart the speaker. Callers hold opMu.
func (s *Server) followRoutersLocked(ctx context.Context) error {
	if !s.poolPeersStaleLocked() {
		return nil
	}
	cfg, set := *s.cur, *s.cur.set
	used := map[string]netip.Addr{}
	sets := slices.Clone(set.DefinedSets.NeighborSets)
	for _, pp := range s.poolPeers {
		for i := range sets {
			if sets[i].NeighborSetName == poolNeighborSet(pp.Pool) {
				sets[i].NeighborInfoList = s.poolNeighbors(pp.Peers, used)
			}
		}
	}
	set.DefinedSets.NeighborSets = sets
	cfg.set, cfg.poolLinkLocal = &set, used
	return s.applyLocked(ctx, &cfg)
}

// poolPeersStaleLocked says an unnumbered neighbor named by a pool's peers
// got its router's address (or another one) since the policy in force was
// built. Callers hold opMu.
func (s *Server) poolPeersStaleLocked() bool {
	if len(s.poolPeers) == 0 || s.cur == nil {
		return false
	}
	now := map[string]netip.Addr{}
	for _, pp := range s.poolPeers {
		s.poolNeighbors(pp.Peers, now)
	}
	return !maps.Equal(now, s.cur.poolLinkLocal)
}
