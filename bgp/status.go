package bgp

import (
	"context"
	"net/netip"
	"sort"
	"strings"
	"time"

	api "github.com/osrg/gobgp/v4/api"
)

// PeerStatus is what the status command and the metrics show of a peer.
type PeerStatus struct {
	Address   netip.Addr
	Interface string // for unnumbered neighbors
	PeerAS    uint32
	LocalAS   uint32
	// State is the BGP FSM state in lower case: idle, connect, active,
	// opensent, openconfirm, established.
	State     string
	AdminDown bool
	// Uptime is how long the session has been Established (0 when not).
	Uptime           time.Duration
	PrefixesSent     uint64
	PrefixesReceived uint64
	PrefixesAccepted uint64
	// BFD is "" when BFD is off for the peer, else up, down, init or
	// admin-down.
	BFD string
	// GracefulRestart is true when it is configured for the peer.
	GracefulRestart bool
	// Flaps counts the session's transitions out of Established.
	Flaps uint32
}

// Name is the peer's label in metrics and tables.
func (p PeerStatus) Name() string {
	if p.Address.IsValid() {
		return p.Address.String()
	}
	return p.Interface
}

// Peers reports every configured (and dynamic) peer, sorted by address. It
// is empty before Run has started the speaker.
func (s *Server) Peers() []PeerStatus { return s.peers(true) }

// PeersBrief is Peers without the prefixes advertised to each peer:
// counting those runs the export policy over every VIP inside GoBGP's
// main loop, which a caller that only wants the peers' addresses (every
// few seconds) should not pay, nor make path updates wait for.
func (s *Server) PeersBrief() []PeerStatus { return s.peers(false) }

func (s *Server) peers(advertised bool) []PeerStatus {
	b := s.running.Load()
	if b == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var out []PeerStatus
	_ = b.ListPeer(ctx, &api.ListPeerRequest{EnableAdvertised: advertised}, func(p *api.Peer) {
		out = append(out, peerStatus(p))
	})
	sort.Slice(out, func(i, j int) bool {
		if out[i].Address != out[j].Address {
			return out[i].Address.Less(out[j].Address)
		}
		return out[i].Interface < out[j].Interface
	})
	return out
}

func peerStatus(p *api.Peer) PeerStatus {
	st := p.GetState()
	ps := PeerStatus{
		Interface: p.GetConf().GetNeighborInterface(),
		PeerAS:    p.GetConf().GetPeerAsn(),
		LocalAS:   st.GetLocalAsn(),
		State:     strings.ToLower(strings.TrimPrefix(st.GetSessionState().String(), "SESSION_STATE_")),
		AdminDown: st.GetAdminState() == api.PeerState_ADMIN_STATE_DOWN,
		Flaps:     st.GetFlops(),
	}
	if st.GetSessionState() == api.PeerState_SESSION_STATE_UNSPECIFIED {
		ps.State = "idle"
	}
	if a, err := netip.ParseAddr(st.GetNeighborAddress()); err == nil {
		ps.Address = a
	} else if a, err := netip.ParseAddr(p.GetConf().GetNeighborAddress()); err == nil {
		ps.Address = a
	}
	if ps.Interface == "" && ps.Address.Is6() && ps.Address.Zone() != "" {
		ps.Interface = ps.Address.Zone() // an unnumbered neighbor
	}
	if ps.State == "established" {
		if up := p.GetTimers().GetState().GetUptime(); up != nil && up.GetSeconds() > 0 {
			ps.Uptime = time.Since(up.AsTime()).Truncate(time.Second)
		}
	}
	for _, af := range p.GetAfiSafis() {
		ps.PrefixesSent += af.GetState().GetAdvertised()
		ps.PrefixesReceived += af.GetState().GetReceived()
		ps.PrefixesAccepted += af.GetState().GetAccepted()
	}
	if p.GetBfd().GetEnabled() {
		switch p.GetState().GetBfdState().GetSessionState() {
		case api.BfdSessionState_BFD_SESSION_STATE_UP:
			ps.BFD = "up"
		case api.BfdSessionState_BFD_SESSION_STATE_INIT:
			ps.BFD = "init"
		case api.BfdSessionState_BFD_SESSION_STATE_ADMIN_DOWN:
			ps.BFD = "admin-down"
		default:
			ps.BFD = "down"
		}
	}
	ps.GracefulRestart = p.GetGracefulRestart().GetEnabled()
	return ps
}
