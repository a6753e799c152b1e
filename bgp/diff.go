package bgp

import (
	"context"
	"errors"
	"fmt"
	"sort"

	api "github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/config/oc"
)

// neighborChange is one neighbor present in both configs but different.
type neighborChange struct {
	n oc.Neighbor
	// reset: its session parameters changed (address family, AS, transport,
	// timers of the OPEN, password, multihop, TTL security, graceful
	// restart...), so GoBGP must reset the session.
	reset bool
	// policy: its apply-policy changed.
	policy bool
}

// plan is what it takes to go from one config to the next.
type plan struct {
	// restart: the global section (AS, router-id, listen port/addresses,
	// families) or zebra changed. GoBGP cannot change these while running,
	// so the speaker restarts and every session with it.
	restart      bool
	policies     bool // defined sets or policy definitions changed
	globalPolicy bool // global apply-policy changed
	pgAdd        []oc.PeerGroup
	pgDel        []oc.PeerGroup
	pgUpd        []oc.PeerGroup
	dynAdd       []oc.DynamicNeighbor
	dynDel       []oc.DynamicNeighbor
	add          []oc.Neighbor
	del          []oc.Neighbor
	update       []neighborChange
}

func (p *plan) empty() bool {
	return !p.restart && !p.policies && !p.globalPolicy && len(p.pgAdd)+len(p.pgDel)+len(p.pgUpd)+
		len(p.dynAdd)+len(p.dynDel)+len(p.add)+len(p.del)+len(p.update) == 0
}

// diffConfig compares two parsed configs (router-ids resolved).
func diffConfig(old, new *oc.BgpConfigSet) plan {
	var p plan
	og, ng := old.Global, new.Global
	og.ApplyPolicy, ng.ApplyPolicy = oc.ApplyPolicy{}, oc.ApplyPolicy{}
	if !og.Equal(&ng) || !old.Zebra.Equal(&new.Zebra) {
		p.restart = true
		return p
	}
	p.policies = !oc.ConfigSetToRoutingPolicy(old).Equal(oc.ConfigSetToRoutingPolicy(new))
	p.globalPolicy = !old.Global.ApplyPolicy.Config.Equal(&new.Global.ApplyPolicy.Config)

	oldPG := map[string]*oc.PeerGroup{}
	for i := range old.PeerGroups {
		oldPG[old.PeerGroups[i].Config.PeerGroupName] = &old.PeerGroups[i]
	}
	newPG := map[string]bool{}
	for i := range new.PeerGroups {
		pg := &new.PeerGroups[i]
		newPG[pg.Config.PeerGroupName] = true
		if o, ok := oldPG[pg.Config.PeerGroupName]; !ok {
			p.pgAdd = append(p.pgAdd, *pg)
		} else if !o.Equal(pg) {
			p.pgUpd = append(p.pgUpd, *pg)
		}
	}
	for i := range old.PeerGroups {
		if !newPG[old.PeerGroups[i].Config.PeerGroupName] {
			p.pgDel = append(p.pgDel, old.PeerGroups[i])
		}
	}

	type dkey struct{ prefix, pg string }
	oldDyn := map[dkey]bool{}
	for _, d := range old.DynamicNeighbors {
		oldDyn[dkey{d.Config.Prefix.String(), d.Config.PeerGroup}] = true
	}
	newDyn := map[dkey]bool{}
	for _, d := range new.DynamicNeighbors {
		k := dkey{d.Config.Prefix.String(), d.Config.PeerGroup}
		newDyn[k] = true
		if !oldDyn[k] {
			p.dynAdd = append(p.dynAdd, d)
		}
	}
	for _, d := range old.DynamicNeighbors {
		if !newDyn[dkey{d.Config.Prefix.String(), d.Config.PeerGroup}] {
			p.dynDel = append(p.dynDel, d)
		}
	}

	oldN := map[string]*oc.Neighbor{}
	for i := range old.Neighbors {
		oldN[neighborKey(&old.Neighbors[i])] = &old.Neighbors[i]
	}
	newN := map[string]bool{}
	for i := range new.Neighbors {
		n := &new.Neighbors[i]
		k := neighborKey(n)
		newN[k] = true
		o, ok := oldN[k]
		switch {
		case !ok:
			p.add = append(p.add, *n)
		case !o.Equal(n) && !cosmeticOnly(o, n):
			p.update = append(p.update, neighborChange{
				n:      *n,
				reset:  o.NeedsResendOpenMessage(n),
				policy: !o.ApplyPolicy.Equal(&n.ApplyPolicy),
			})
		}
	}
	for i := range old.Neighbors {
		if !newN[neighborKey(&old.Neighbors[i])] {
			p.del = append(p.del, old.Neighbors[i])
		}
	}
	sortNeighbors(p.add)
	sortNeighbors(p.del)
	sort.Slice(p.update, func(i, j int) bool {
		return neighborKey(&p.update[i].n) < neighborKey(&p.update[j].n)
	})
	return p
}

// cosmeticOnly reports whether two neighbor configs differ only in their
// description, which GoBGP would count as a reason to reset the session.
func cosmeticOnly(a, b *oc.Neighbor) bool {
	x, y := *a, *b
	x.Config.Description, x.State.Description = "", ""
	y.Config.Description, y.State.Description = "", ""
	return x.Equal(&y)
}

// applyLocked makes cfg the running config. Everything was validated; what
// fails here is GoBGP refusing an operation, which is reported but does not
// stop the other changes.
func (s *Server) applyLocked(ctx context.Context, cfg *parsedConfig) error {
	if err := s.resolve(cfg); err != nil {
		return err
	}
	p := diffConfig(s.cur.set, cfg.set)
	if !s.peersAdded {
		// Run has not added the neighbors yet; it will add cfg's
		p.add, p.del, p.update = nil, nil, nil
	}
	if p.empty() {
		s.cur = cfg
		s.log.Debug("config unchanged", "file", cfg.File)
		return nil
	}
	if p.restart {
		return s.restartLocked(ctx, cfg)
	}
	b := s.bgp
	var errs []error
	fail := func(err error) {
		if err != nil {
			errs = append(errs, err)
			s.log.Error("apply config", "err", err)
		}
	}
	for i := range p.pgAdd {
		pg := &p.pgAdd[i]
		if err := b.AddPeerGroup(ctx, &api.AddPeerGroupRequest{PeerGroup: oc.NewPeerGroupFromConfigStruct(pg)}); err != nil {
			fail(fmt.Errorf("add peer-group %s: %w", pg.Config.PeerGroupName, err))
		}
	}
	if p.policies {
		fail(setPolicies(ctx, b, cfg.set))
		s.refillZebraVIPs(ctx, b, cfg)
	}
	if p.globalPolicy {
		fail(setGlobalAssignment(ctx, b, &cfg.set.Global.ApplyPolicy.Config))
	}
	for i := range p.del {
		n := &p.del[i]
		if r := s.deleteRequest(n); r != nil {
			if err := b.DeletePeer(ctx, r); err != nil {
				fail(fmt.Errorf("delete neighbor %s: %w", peerName(n), err))
				continue
			}
		}
		s.logPeer("neighbor deleted", n)
	}
	for i := range p.del {
		s.forget(&p.del[i])
	}
	for i := range p.add {
		n := &p.add[i]
		held := s.withBFDHeld(*n)
		if err := s.addPeer(ctx, held); err != nil {
			fail(fmt.Errorf("add neighbor %s: %w", peerName(n), err))
			continue
		}
		if s.isWaiting(n) {
			continue
		}
		s.logPeer("neighbor added", n)
	}
	var softReset []string
	for i := range p.update {
		u := &p.update[i]
		n := u.n
		if s.bfdHeld[n.State.NeighborAddress] || u.reset {
			// not yet started, or the session restarts: hold BFD again
			n = s.withBFDHeld(n)
		}
		if iface := n.Config.NeighborInterface; iface != "" {
			if _, waiting := s.waiting[iface]; waiting {
				s.waiting[iface] = n // not in GoBGP yet: added as it is now
				continue
			}
		}
		n = s.forGoBGP(n)
		r, err := b.UpdatePeer(ctx, &api.UpdatePeerRequest{Peer: oc.NewPeerFromConfigStruct(&n)})
		if err != nil {
			fail(fmt.Errorf("update neighbor %s: %w", peerName(&u.n), err))
			continue
		}
		s.logPeer("neighbor updated", &u.n, "session-reset", u.reset)
		if !u.reset && (u.policy || r.GetNeedsSoftResetIn()) {
			if r := s.deleteRequest(&u.n); r != nil {
				softReset = append(softReset, r.Address)
			}
		}
	}
	for _, d := range p.dynDel {
		if err := b.DeleteDynamicNeighbor(ctx, &api.DeleteDynamicNeighborRequest{Prefix: d.Config.Prefix.String(), PeerGroup: d.Config.PeerGroup}); err != nil {
			fail(fmt.Errorf("delete dynamic-neighbor %s: %w", d.Config.Prefix, err))
		}
	}
	for _, d := range p.dynAdd {
		if err := b.AddDynamicNeighbor(ctx, &api.AddDynamicNeighborRequest{DynamicNeighbor: &api.DynamicNeighbor{
			Prefix: d.Config.Prefix.String(), PeerGroup: d.Config.PeerGroup,
		}}); err != nil {
			fail(fmt.Errorf("add dynamic-neighbor %s: %w", d.Config.Prefix, err))
		}
	}
	for i := range p.pgUpd {
		pg := &p.pgUpd[i]
		// GoBGP re-applies the member configs it stored when they were
		// added, which may be older than what runs now; members listed in
		// the file were updated above from the new file, so only groups
		// without static members (dynamic neighbors) go through GoBGP.
		if hasMembers(cfg.set, pg.Config.PeerGroupName) {
			continue
		}
		if _, err := b.UpdatePeerGroup(ctx, &api.UpdatePeerGroupRequest{PeerGroup: oc.NewPeerGroupFromConfigStruct(pg)}); err != nil {
			fail(fmt.Errorf("update peer-group %s: %w", pg.Config.PeerGroupName, err))
		}
	}
	for i := range p.pgDel {
		pg := &p.pgDel[i]
		if err := b.DeletePeerGroup(ctx, &api.DeletePeerGroupRequest{Name: pg.Config.PeerGroupName}); err != nil {
			fail(fmt.Errorf("delete peer-group %s: %w", pg.Config.PeerGroupName, err))
		}
	}
	// Changed policies reach the peers by a soft reset: outbound so they
	// see the new attributes, inbound so import policies re-run. Sessions
	// stay up.
	if p.policies || p.globalPolicy {
		softReset = []string{""} // all peers
	}
	for _, addr := range softReset {
		if err := b.ResetPeer(ctx, &api.ResetPeerRequest{Address: addr, Soft: true, Direction: api.ResetPeerRequest_DIRECTION_BOTH}); err != nil {
			fail(fmt.Errorf("soft reset %q: %w", addr, err))
		}
	}
	old6 := s.nh6
	s.cur = cfg
	s.nh6 = cfg.nh6
	if s.nh6 != old6 {
		s.log.Info("ipv6 next hop changed", "from", old6, "to", s.nh6)
		s.reannounce6()
	}
	s.log.Info("config applied", "file", cfg.File, "neighbors-added", len(p.add), "neighbors-deleted", len(p.del),
		"neighbors-updated", len(p.update), "policies-changed", p.policies || p.globalPolicy, "errors", len(errs))
	return errors.Join(errs...)
}

func hasMembers(c *oc.BgpConfigSet, pg string) bool {
	for _, n := range c.Neighbors {
		if n.Config.PeerGroup == pg {
			return true
		}
	}
	return false
}

// restartLocked replaces the GoBGP instance: needed when the global section
// changed. The VIP paths are added to the new instance before its peers.
func (s *Server) restartLocked(ctx context.Context, cfg *parsedConfig) error {
	s.log.Warn("global BGP settings changed: restarting the speaker, all sessions reset", "file", cfg.File)
	old := s.bgp
	if err := old.StopBgp(ctx, &api.StopBgpRequest{}); err != nil {
		s.log.Warn("stop bgp", "err", err)
	}
	s.quiet.Store(true)
	old.Stop()
	s.quiet.Store(false)
	s.bgp = nil
	s.running.Store(nil)
	clear(s.waiting)
	clear(s.linkLocal)
	if err := s.startLocked(ctx, cfg); err != nil {
		// the old config cannot come back either: try it, report both
		if err2 := s.startLocked(ctx, s.cur); err2 != nil {
			return fmt.Errorf("restart with new config: %w; and with the previous one: %v", err, err2)
		}
		cfg = s.cur
		err = fmt.Errorf("restart with new config: %w (previous config restored)", err)
		s.readdLocked(ctx)
		return err
	}
	s.cur = cfg
	s.readdLocked(ctx)
	return nil
}

func (s *Server) readdLocked(ctx context.Context) {
	s.pushPaths(s.rebuildAllLocked(), nil)
	if !s.peersAdded {
		return
	}
	if err := s.addPeersLocked(ctx, false); err != nil {
		s.log.Error("add neighbors after restart", "err", err)
	}
}
