package bgp

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	api "github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/config/oc"
	"github.com/osrg/gobgp/v4/pkg/server"
)

// addPeers adds the neighbors of the running config. With graceful restart
// the speaker tells its peers it is restarting (R and F bits), so they keep
// our routes as they were until we have sent ours again.
func (s *Server) addPeers(ctx context.Context) error {
	s.opMu.Lock()
	defer s.opMu.Unlock()
	s.peersAdded = true
	err := s.addPeersLocked(ctx, true)
	// the routers of unnumbered neighbors are known now: the pools that
	// name them get them before the sessions are up
	return errors.Join(err, s.followRoutersLocked(ctx))
}

func (s *Server) addPeersLocked(ctx context.Context, restarting bool) error {
	var errs []error
	for _, n := range s.cur.set.Neighbors {
		n := n
		if restarting && n.GracefulRestart.Config.Enabled && !n.GracefulRestart.Config.HelperOnly {
			n.GracefulRestart.State.LocalRestarting = true
		}
		n = s.withBFDHeld(n)
		if err := s.addPeer(ctx, n); err != nil {
			errs = append(errs, fmt.Errorf("add neighbor %s: %w", peerName(&n), err))
			continue
		}
		if s.isWaiting(&n) {
			continue
		}
		s.logPeer("neighbor added", &n)
	}
	return errors.Join(errs...)
}

// bfdHoldOff is how long a session must have been Established before BFD
// is started for it.
const bfdHoldOff = time.Second

// withBFDHeld returns n with BFD off when it is configured, and remembers to
// turn it on later (releaseBFD). GoBGP v4.8.0 starts BFD with the peer and,
// when the router's BFD session only appears once BGP is up (FRR creates it
// then), GoBGP keeps a stale discriminator, never reaches Up, and after the
// detection time tears the fresh BGP session down with a Cease ("BFD is
// down"): a flap at every start, and a lost route after a graceful restart.
// Started once the session is up, BFD comes up at once.
func (s *Server) withBFDHeld(n oc.Neighbor) oc.Neighbor {
	if n.Bfd.Config.Enabled {
		s.bfdHeld[n.State.NeighborAddress] = true
		n.Bfd.Config.Enabled = false
	} else {
		delete(s.bfdHeld, n.State.NeighborAddress)
	}
	return n
}

// releaseBFD turns BFD on for the held neighbors whose session has been
// Established for bfdHoldOff.
func (s *Server) releaseBFD(ctx context.Context) {
	s.opMu.Lock()
	defer s.opMu.Unlock()
	if len(s.bfdHeld) == 0 || s.bgp == nil {
		return
	}
	up := map[netip.Addr]bool{}
	_ = s.bgp.ListPeer(ctx, &api.ListPeerRequest{}, func(p *api.Peer) {
		if p.GetState().GetSessionState() != api.PeerState_SESSION_STATE_ESTABLISHED {
			return
		}
		if ts := p.GetTimers().GetState().GetUptime(); ts != nil && time.Since(ts.AsTime()) >= bfdHoldOff {
			if a, err := netip.ParseAddr(p.GetState().GetNeighborAddress()); err == nil {
				up[a] = true
			}
		}
	})
	for i := range s.cur.set.Neighbors {
		n := s.cur.set.Neighbors[i]
		a := n.State.NeighborAddress
		if !s.bfdHeld[a] || !up[a] {
			continue
		}
		if _, err := s.bgp.UpdatePeer(ctx, &api.UpdatePeerRequest{Peer: oc.NewPeerFromConfigStruct(&n)}); err != nil {
			s.log.Warn("start BFD", "peer", a, "err", err)
			continue
		}
		delete(s.bfdHeld, a)
		s.log.Info("BFD started", "peer", a)
	}
}

func (s *Server) logPeer(msg string, n *oc.Neighbor, args ...any) {
	args = append([]any{"peer", peerName(n), "peer-as", n.Config.PeerAs}, args...)
	if f := s.cur.passwordFiles[peerName(n)]; f != "" {
		args = append(args, "password-file", f)
	}
	s.log.Info(msg, args...)
}

func setPolicies(ctx context.Context, b *server.BgpServer, c *oc.BgpConfigSet) error {
	sets, policies, err := apiPolicies(c)
	if err != nil {
		return err
	}
	if err := b.SetPolicies(ctx, &api.SetPoliciesRequest{DefinedSets: sets, Policies: policies}); err != nil {
		return fmt.Errorf("set policies: %w", err)
	}
	return nil
}

func setGlobalAssignment(ctx context.Context, b *server.BgpServer, a *oc.ApplyPolicyConfig) error {
	for _, as := range []*api.PolicyAssignment{
		apiAssignment("global", api.PolicyDirection_POLICY_DIRECTION_IMPORT, a.ImportPolicyList, a.DefaultImportPolicy),
		apiAssignment("global", api.PolicyDirection_POLICY_DIRECTION_EXPORT, a.ExportPolicyList, a.DefaultExportPolicy),
	} {
		if err := b.SetPolicyAssignment(ctx, &api.SetPolicyAssignmentRequest{Assignment: as}); err != nil {
			return fmt.Errorf("set global %s policy: %w", as.Direction, err)
		}
	}
	return nil
}
