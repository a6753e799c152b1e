package bgp

import (
	"context"
	"maps"
	"net/netip"
)

// SetHiddenNeighbors keeps the gobgp.conf neighbors at these addresses out
// of the running config ([[peer-nodes]] of vipspeaker.toml: neighbors meant
// for other nodes, such as another rack's top-of-rack router). A change
// applies the last accepted gobgp.conf again without them (or with them
// back), by the same diff as a reload: other sessions are not touched.
func (s *Server) SetHiddenNeighbors(ctx context.Context, addrs []netip.Addr) error {
	hidden := make(map[netip.Addr]bool, len(addrs))
	for _, a := range addrs {
		hidden[a] = true
	}
	s.opMu.Lock()
	defer s.opMu.Unlock()
	if maps.Equal(hidden, s.hidden) {
		return nil
	}
	s.hidden = hidden
	return s.reapplyLocked(ctx)
}

// withoutHidden is cfg without the hidden neighbors (a copy; cfg is kept
// as accepted). Callers hold opMu.
func (s *Server) withoutHidden(cfg *parsedConfig) *parsedConfig {
	c := *cfg
	set := *cfg.set
	set.Neighbors = nil
	for _, n := range cfg.set.Neighbors {
		if !s.hidden[n.State.NeighborAddress] && !s.hidden[n.Config.NeighborAddress] {
			set.Neighbors = append(set.Neighbors, n)
		}
	}
	c.set = &set
	return &c
}
