package bgp

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/osrg/gobgp/v4/pkg/apiutil"

	"github.com/vipspeaker/vipspeaker/routing"
)

// The native feed keeps one path per announced prefix: a VIP's host
// prefix, or, for a VIP whose pool aggregates (routing.Attrs.AggregateBits),
// the covering prefix, shared by every VIP of this node inside it. s.vips
// holds the VIPs, s.paths the paths by prefix, s.agg the members of each
// covering prefix and s.sigs what each path carries, so that a member
// coming or going with the same attributes sends nothing.

// setVIPLocked records v (replacing what was known of its address) and
// returns the prefixes whose path may have changed.
func (s *Server) setVIPLocked(v routing.VIP, touched map[netip.Prefix]bool) {
	if old, had := s.vips[v.Addr]; had {
		s.dropVIPLocked(old, touched)
	}
	s.vips[v.Addr] = v
	k := v.AnnouncedPrefix()
	touched[k] = true
	if k != v.Prefix() {
		if s.agg[k] == nil {
			s.agg[k] = make(map[netip.Addr]struct{})
		}
		s.agg[k][v.Addr] = struct{}{}
	}
}

// dropVIPLocked forgets v.
func (s *Server) dropVIPLocked(v routing.VIP, touched map[netip.Prefix]bool) {
	delete(s.vips, v.Addr)
	k := v.AnnouncedPrefix()
	touched[k] = true
	if m := s.agg[k]; m != nil {
		delete(m, v.Addr)
		if len(m) == 0 {
			delete(s.agg, k)
		}
	}
}

// membersLocked are the VIPs announced through prefix k, in address order.
func (s *Server) membersLocked(k netip.Prefix) []routing.VIP {
	if m := s.agg[k]; m != nil {
		out := make([]routing.VIP, 0, len(m))
		for a := range m {
			out = append(out, s.vips[a])
		}
		slices.SortFunc(out, func(a, b routing.VIP) int { return a.Addr.Compare(b.Addr) })
		return out
	}
	if v, ok := s.vips[k.Addr()]; ok && v.AnnouncedPrefix() == k {
		return []routing.VIP{v}
	}
	return nil
}

// rebuildLocked brings the paths of the touched prefixes up to date and
// returns what to add and delete. A prefix whose path cannot be built (a
// bad community) is withdrawn, its VIPs forgotten and the error logged.
func (s *Server) rebuildLocked(touched map[netip.Prefix]bool) (add, del []*apiutil.Path) {
	for k := range touched {
		members := s.membersLocked(k)
		old := s.paths[k]
		if len(members) == 0 {
			if old != nil {
				del = append(del, old)
				delete(s.paths, k)
				delete(s.sigs, k)
			}
			continue
		}
		attrs := mergeAttrs(members)
		sig := fmt.Sprint(attrs.Communities, attrs.LargeCommunities, attrs.LocalPref, attrs.Weight, attrs.Prepend, s.nh6)
		if old != nil && s.sigs[k] == sig {
			continue
		}
		p, err := prefixPath(k, attrs, s.nh6)
		if err == nil && attrs.Prepend > 0 {
			err = prepend(p, s.localAS(), attrs.Prepend)
		}
		if err != nil {
			s.log.Error("not announcing vip", "vip", k, "service", attrs.Service, "err", err)
			if old != nil {
				del = append(del, old)
				delete(s.paths, k)
				delete(s.sigs, k)
			}
			for _, v := range members {
				s.dropVIPLocked(v, map[netip.Prefix]bool{})
			}
			continue
		}
		// a new path for the same prefix replaces the old one (implicit
		// withdraw), so a change is one AddPath
		add = append(add, p)
		s.paths[k] = p
		s.sigs[k] = sig
	}
	return add, del
}

// rebuildAllLocked builds every path again (after a restart of the
// speaker or a new IPv6 next hop) and returns them.
func (s *Server) rebuildAllLocked() []*apiutil.Path {
	clear(s.paths)
	clear(s.sigs)
	touched := make(map[netip.Prefix]bool, len(s.vips))
	for _, v := range s.vips {
		touched[v.AnnouncedPrefix()] = true
	}
	add, _ := s.rebuildLocked(touched)
	return add
}

// forgetAllLocked drops every VIP and path (after withdrawing them).
func (s *Server) forgetAllLocked() {
	clear(s.paths)
	clear(s.sigs)
	clear(s.agg)
	clear(s.vips)
}

// mergeAttrs are the attributes of one path for members: the union of
// their communities, the highest local-pref, the sum of their weights,
// their Services.
func mergeAttrs(members []routing.VIP) routing.Attrs {
	if len(members) == 1 {
		return members[0].Attrs
	}
	var a routing.Attrs
	var svcs, std, large []string
	for _, v := range members {
		svcs = append(svcs, v.Attrs.Service)
		std = append(std, v.Attrs.Communities...)
		large = append(large, v.Attrs.LargeCommunities...)
		a.LocalPref = max(a.LocalPref, v.Attrs.LocalPref)
		a.Weight += v.Attrs.Weight
		a.Prepend = max(a.Prepend, v.Attrs.Prepend)
	}
	a.Service = strings.Join(svcs, ",")
	a.Communities = routing.MergeCommunities(std)
	a.LargeCommunities = routing.MergeCommunities(large)
	return a
}
