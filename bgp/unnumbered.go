package bgp

import (
	"bytes"
	"context"
	"net/netip"
	"regexp"
	"sort"
	"time"

	api "github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/config/oc"
	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
)

// Unnumbered neighbors (neighbor-interface): GoBGP's config reader looks the
// router's IPv6 link-local address up in this host's neighbor cache while it
// reads the file, so a file naming an interface failed `vipspeaker check`
// everywhere but on the node, and failed on the node too when the router had
// not been seen yet. We read the file with a stand-in address instead, and
// find the router ourselves when the neighbor is added.

// unnumberedStandIn is the neighbor-address the reader sees in place of a
// neighbor-interface; it never reaches GoBGP.
var unnumberedStandIn = netip.MustParseAddr("fe80::1")

var neighborInterfaceRE = regexp.MustCompile(`neighbor-interface([ \t]*=[ \t]*)("[^"]*"|'[^']*')`)

// standInUnnumbered rewrites, line by line (so lines keep their numbers),
// each neighbor's neighbor-interface into a neighbor-address the reader can
// take without looking at the host. It returns the new document and the
// interface of each rewritten neighbor by index.
func standInUnnumbered(v *validator, data []byte, raw map[string]any) ([]byte, map[int]string) {
	ifaces := map[int]string{}
	lines := bytes.Split(data, []byte("\n"))
	for i, n := range asList(getPath(raw, "neighbors")) {
		name := getString(n, "config", "neighbor-interface")
		if name == "" {
			continue
		}
		if getString(n, "config", "neighbor-address") != "" {
			v.add(v.at("neighbors", idx(i), "config", "neighbor-interface"), "neighbor %d: set neighbor-address or neighbor-interface, not both", i+1)
			continue
		}
		if getPath(n, "route-server", "config", "route-server-client") == true {
			v.add(v.at("neighbors", idx(i), "route-server", "config", "route-server-client"), "neighbor %s: a route-server client cannot be unnumbered (GoBGP)", name)
		}
		if getPath(n, "bfd", "config", "enabled") == true {
			v.add(v.at("neighbors", idx(i), "bfd", "config", "enabled"), "neighbor %s: BFD is not supported with neighbor-interface", name)
		}
		line := v.at("neighbors", idx(i), "config", "neighbor-interface") - 1
		if line < 0 || line >= len(lines) || !neighborInterfaceRE.Match(lines[line]) {
			v.add(line+1, "neighbor %s: write neighbor-interface as a key of its own line under [neighbors.config]", name)
			continue
		}
		lines[line] = neighborInterfaceRE.ReplaceAll(lines[line], []byte(`neighbor-address${1}"`+unnumberedStandIn.String()+`"`))
		ifaces[i] = name
	}
	return bytes.Join(lines, []byte("\n")), ifaces
}

// restoreUnnumbered undoes standInUnnumbered on the decoded config: the
// neighbor names its interface again, with no address, no local address
// unless the file gave one, and both unicast families unless the file
// listed some for it or its peer group (GoBGP's default for an unnumbered
// neighbor).
func restoreUnnumbered(set *oc.BgpConfigSet, raw map[string]any, ifaces map[int]string) {
	rawNeighbors := asList(getPath(raw, "neighbors"))
	groupFamilies := map[string]bool{}
	for _, pg := range asList(getPath(raw, "peer-groups")) {
		groupFamilies[getString(pg, "config", "peer-group-name")] = getPath(pg, "afi-safis") != nil
	}
	for i, name := range ifaces {
		n := &set.Neighbors[i]
		n.Config.NeighborInterface = name
		n.Config.NeighborAddress = netip.Addr{}
		n.State.NeighborAddress = netip.Addr{}
		if getString(rawNeighbors[i], "transport", "config", "local-address") == "" {
			n.Transport.Config.LocalAddress = netip.Addr{}
		}
		if getPath(rawNeighbors[i], "afi-safis") == nil && !groupFamilies[getString(rawNeighbors[i], "config", "peer-group")] {
			n.AfiSafis = nil
			for _, t := range []oc.AfiSafiType{oc.AFI_SAFI_TYPE_IPV4_UNICAST, oc.AFI_SAFI_TYPE_IPV6_UNICAST} {
				af := oc.AfiSafi{Config: oc.AfiSafiConfig{AfiSafiName: t, Enabled: true},
					State: oc.AfiSafiState{AfiSafiName: t, Family: bgp.AddressFamilyValueMap[string(t)]}}
				af.AddPaths.Config.Receive, af.AddPaths.State.Receive = n.AddPaths.Config.Receive, n.AddPaths.Config.Receive
				af.AddPaths.Config.SendMax, af.AddPaths.State.SendMax = n.AddPaths.Config.SendMax, n.AddPaths.Config.SendMax
				n.AfiSafis = append(n.AfiSafis, af)
			}
		}
	}
}

// neighborKey names a neighbor across configs: its address, or for an
// unnumbered one its interface.
func neighborKey(n *oc.Neighbor) string {
	if i := n.Config.NeighborInterface; i != "" {
		return "interface " + i
	}
	return n.State.NeighborAddress.String()
}

// peerName is how logs name a neighbor.
func peerName(n *oc.Neighbor) string {
	if i := n.Config.NeighborInterface; i != "" {
		return i
	}
	return n.State.NeighborAddress.String()
}

func sortNeighbors(l []oc.Neighbor) {
	sort.Slice(l, func(i, j int) bool { return neighborKey(&l[i]) < neighborKey(&l[j]) })
}

// unnumberedRetry is how often a neighbor-interface whose router is not
// known yet (or whose session is down) solicits the router again;
// raInterval how often a router advertisement goes out on each unnumbered
// neighbor's interface.
const (
	unnumberedRetry = time.Second
	raInterval      = 10 * time.Second
)

// GoBGP would look an unnumbered neighbor's router up in the kernel's
// neighbor cache, once, when the neighbor is added, and refuses when it
// finds two entries (an old router's beside a new one's). We take the
// router's address from its router advertisements instead (routerWatch)
// and hand GoBGP the neighbor as that zoned link-local address; a router
// whose address changes is followed.

// numbered is the unnumbered neighbor n as GoBGP gets it: at the router's
// link-local address r (zoned with the interface).
func numbered(n oc.Neighbor, r netip.Addr) oc.Neighbor {
	n.Config.NeighborInterface = ""
	n.Config.NeighborAddress = r
	n.State.NeighborAddress = r
	return n
}

// forGoBGP is n as GoBGP has it (see numbered). Callers hold opMu.
func (s *Server) forGoBGP(n oc.Neighbor) oc.Neighbor {
	if r, ok := s.linkLocal[n.Config.NeighborInterface]; ok && n.Config.NeighborInterface != "" {
		return numbered(n, r)
	}
	return n
}

// addPeer adds n to GoBGP. An unnumbered neighbor whose router has not
// been heard yet is not an error: it waits, and tickUnnumbered adds it
// once the router is known. Callers hold opMu.
func (s *Server) addPeer(ctx context.Context, n oc.Neighbor) error {
	iface := n.Config.NeighborInterface
	if iface == "" {
		return s.bgp.AddPeer(ctx, &api.AddPeerRequest{Peer: oc.NewPeerFromConfigStruct(&n)})
	}
	r, ok := s.routerOn(iface)
	if !ok {
		if _, waiting := s.waiting[iface]; !waiting {
			s.log.Info("unnumbered neighbor: waiting for the router's advertisement", "iface", iface)
			s.solicit(iface)
		}
		s.waiting[iface] = n
		return nil
	}
	g := numbered(n, r)
	if err := s.bgp.AddPeer(ctx, &api.AddPeerRequest{Peer: oc.NewPeerFromConfigStruct(&g)}); err != nil {
		return err
	}
	delete(s.waiting, iface)
	s.linkLocal[iface] = r
	s.advertise(iface)
	return nil
}

// routerOn is the router last heard on iface. Callers hold opMu.
func (s *Server) routerOn(iface string) (netip.Addr, bool) {
	if s.routers == nil {
		w, err := watchRouters()
		if err != nil {
			s.log.Error("unnumbered neighbor: cannot listen for router advertisements", "err", err)
			return netip.Addr{}, false
		}
		s.routers = w
	}
	return s.routers.router(iface)
}

// isWaiting says n is an unnumbered neighbor not in GoBGP yet.
func (s *Server) isWaiting(n *oc.Neighbor) bool {
	_, ok := s.waiting[n.Config.NeighborInterface]
	return ok && n.Config.NeighborInterface != ""
}

// deleteRequest is the DeletePeer request for n; nil for an unnumbered
// neighbor GoBGP does not have (still waiting).
func (s *Server) deleteRequest(n *oc.Neighbor) *api.DeletePeerRequest {
	if iface := n.Config.NeighborInterface; iface != "" {
		a, ok := s.linkLocal[iface]
		if !ok {
			return nil
		}
		return &api.DeletePeerRequest{Address: a.String()}
	}
	return &api.DeletePeerRequest{Address: n.State.NeighborAddress.String()}
}

// forget drops what is kept about a deleted neighbor.
func (s *Server) forget(n *oc.Neighbor) {
	if iface := n.Config.NeighborInterface; iface != "" {
		delete(s.waiting, iface)
		delete(s.linkLocal, iface)
		delete(s.lastRA, iface)
		return
	}
	delete(s.bfdHeld, n.State.NeighborAddress)
}

// tickUnnumbered adds the waiting unnumbered neighbors whose router has
// been heard, moves a neighbor to its router's new address, solicits the
// routers not heard (or whose session is down) and sends the periodic
// router advertisements.
func (s *Server) tickUnnumbered(ctx context.Context) {
	s.opMu.Lock()
	defer s.opMu.Unlock()
	if s.bgp == nil || s.cur == nil || !s.peersAdded {
		return
	}
	now := time.Now()
	retry := func(iface string) bool {
		if now.Sub(s.lastTry[iface]) < unnumberedRetry {
			return false
		}
		s.lastTry[iface] = now
		return true
	}
	for iface, n := range s.waiting {
		if _, heard := s.routerOn(iface); !heard {
			if retry(iface) {
				s.solicit(iface)
			}
			continue
		}
		if err := s.addPeer(ctx, n); err != nil {
			s.log.Error("unnumbered neighbor: add", "iface", iface, "err", err)
			continue
		}
		s.log.Info("unnumbered neighbor added", "iface", iface, "peer", s.linkLocal[iface])
	}
	for _, n := range s.cur.set.Neighbors {
		iface := n.Config.NeighborInterface
		if iface == "" {
			continue
		}
		if now.Sub(s.lastRA[iface]) >= raInterval {
			s.advertise(iface)
		}
		old, added := s.linkLocal[iface]
		if !added {
			continue
		}
		if r, ok := s.routerOn(iface); ok && r != old {
			s.log.Info("unnumbered neighbor: the router's link-local address changed", "iface", iface, "from", old, "to", r)
			if err := s.bgp.DeletePeer(ctx, &api.DeletePeerRequest{Address: old.String()}); err != nil {
				s.log.Warn("unnumbered neighbor: delete the old address", "iface", iface, "err", err)
			}
			delete(s.linkLocal, iface)
			if err := s.addPeer(ctx, n); err != nil {
				s.log.Error("unnumbered neighbor: add", "iface", iface, "err", err)
			}
			continue
		}
		if retry(iface) && !s.established(ctx, old) {
			s.solicit(iface) // a replaced router answers with its new address
		}
	}
	// a pool's unnumbered peer has a router now (or a new one): until its
	// neighbor set says so, the pool's paths are held back from it
	if err := s.followRoutersLocked(ctx); err != nil {
		s.log.Error("pool peers: follow an unnumbered neighbor's router", "err", err)
	}
}

// established says GoBGP's session with addr is up.
func (s *Server) established(ctx context.Context, addr netip.Addr) bool {
	up := false
	_ = s.bgp.ListPeer(ctx, &api.ListPeerRequest{Address: addr.String()}, func(p *api.Peer) {
		up = up || p.GetState().GetSessionState() == api.PeerState_SESSION_STATE_ESTABLISHED
	})
	return up
}

// advertise sends a router advertisement on iface: routers that peer by
// interface (FRR's `neighbor IFNAME interface`) learn our link-local
// address from it. Its router lifetime is 0, so hosts never take the node
// for a default router.
func (s *Server) advertise(iface string) {
	s.lastRA[iface] = time.Now()
	if err := sendRouterAdvertisement(iface); err != nil {
		s.log.Warn("unnumbered neighbor: send router advertisement", "iface", iface, "err", err)
	}
}

// solicit sends a router solicitation on iface, so the router answers with
// an advertisement at once.
func (s *Server) solicit(iface string) {
	if err := sendRouterSolicitation(iface); err != nil {
		s.log.Debug("unnumbered neighbor: send router solicitation", "iface", iface, "err", err)
	}
}
