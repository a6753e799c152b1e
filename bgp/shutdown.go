package bgp

import (
	"context"
	"time"

	api "github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/config/oc"
)

// shutdown stops the speaker (see Run).
func (s *Server) shutdown() {
	s.opMu.Lock()
	defer s.opMu.Unlock()
	s.ready.Store(false)
	s.stopped = true
	b := s.bgp
	if b == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.ShutdownTimeout)
	defer cancel()
	var gr, plain []oc.Neighbor
	for _, n := range s.cur.set.Neighbors {
		if n.GracefulRestart.Config.Enabled {
			gr = append(gr, n)
		} else {
			plain = append(plain, n)
		}
	}
	switch {
	case len(gr) == 0:
		s.withdrawAll(ctx)
	default:
		// Withdrawing would take the routes from the graceful-restart
		// peers too; the others get a Cease, which makes them drop every
		// route of the session.
		for _, n := range plain {
			if r := s.deleteRequest(&n); r == nil {
				continue
			} else if err := b.DeletePeer(ctx, r); err != nil {
				s.log.Warn("delete peer at shutdown", "peer", peerName(&n), "err", err)
			}
		}
	}
	if err := b.StopBgp(ctx, &api.StopBgpRequest{AllowGracefulRestart: len(gr) > 0}); err != nil {
		s.log.Warn("stop bgp", "err", err)
	}
	s.quiet.Store(true)
	b.Stop() // BFD and gRPC
	s.bgp = nil
	s.running.Store(nil)
	if s.routers != nil {
		_ = s.routers.Close()
		s.routers = nil
	}
	if len(gr) > 0 {
		s.log.Info("bgp speaker stopped; graceful-restart peers keep the routes", "peers", len(gr))
	} else {
		s.log.Info("bgp speaker stopped; routes withdrawn")
	}
}

// withdrawAll deletes every VIP path and waits until each established peer
// has been sent an UPDATE since (its sent-update counter moved), or ctx ends.
func (s *Server) withdrawAll(ctx context.Context) {
	if len(s.paths) == 0 || s.zebraModeLocked() {
		// zebra mode: no path of ours to withdraw; the Cease at stop
		// takes zebra's away
		return
	}
	before := map[string]uint64{}
	_ = s.bgp.ListPeer(ctx, &api.ListPeerRequest{EnableAdvertised: true}, func(p *api.Peer) {
		if p.GetState().GetSessionState() != api.PeerState_SESSION_STATE_ESTABLISHED {
			return
		}
		var adv uint64
		for _, af := range p.GetAfiSafis() {
			adv += af.GetState().GetAdvertised()
		}
		if adv > 0 {
			before[p.GetState().GetNeighborAddress()] = p.GetState().GetMessages().GetSent().GetUpdate()
		}
	})
	del := make([]*apiutil.Path, 0, len(s.paths))
	for _, p := range s.paths {
		del = append(del, p)
	}
	s.pushPaths(nil, del)
	s.forgetAllLocked()
	s.announced.Store(0)
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for len(before) > 0 {
		_ = s.bgp.ListPeer(ctx, &api.ListPeerRequest{}, func(p *api.Peer) {
			a := p.GetState().GetNeighborAddress()
			if n, ok := before[a]; ok && (p.GetState().GetMessages().GetSent().GetUpdate() > n ||
				p.GetState().GetSessionState() != api.PeerState_SESSION_STATE_ESTABLISHED) {
				delete(before, a)
			}
		})
		select {
		case <-ctx.Done():
			s.log.Warn("withdrawals not confirmed before shutdown timeout", "peers", len(before))
			return
		case <-t.C:
		}
	}
	// the counter moves when the message is handed to the socket; give the
	// kernel a moment to put it on the wire before the Cease follows
	time.Sleep(50 * time.Millisecond)
}
