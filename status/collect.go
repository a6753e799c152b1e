package status

import (
	"net/netip"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/vipspeaker/vipspeaker/bgp"
	"github.com/vipspeaker/vipspeaker/routing"
)

// Sources are the parts a report reads. Every field may be left empty.
type Sources struct {
	Node, Version          string
	ConfigDir, ServicesDir string
	// Table lists the node's VIPs (*routing.Table).
	Table interface{ List() []routing.VIP }
	// BGP is the embedded speaker (*bgp.Server).
	BGP interface {
		Ready() bool
		Peers() []bgp.PeerStatus
		PeersBrief() []bgp.PeerStatus
	}
	// Brief leaves out what is costly to gather: the prefixes sent to
	// each peer and the receive counters (the agent's VIPSpeakerNode
	// object is built from a brief report every second).
	Brief bool
	// BGPConfigured says whether a gobgp.conf was accepted.
	BGPConfigured func() bool
	// Gatherer holds the per-VIP receive counters.
	Gatherer prometheus.Gatherer
	Reloads  *Reloads
	// Owners is the layer2 owner election's answer, false when none runs.
	Owners func() (map[netip.Addr]string, bool)
	// NotReady lists the readiness conditions not met yet.
	NotReady func() []string
}

// Collect gathers the report. It reads only what the parts publish
// (table.List, bgp.Peers, the registry) and never blocks on them for long.
func Collect(s Sources) Report {
	r := Report{Node: s.Node, Version: s.Version, Time: time.Now().UTC(), VIPs: []VIP{}}
	r.BGP.Peers = []Peer{}
	r.Config.ConfigDir, r.Config.ServicesDir = s.ConfigDir, s.ServicesDir

	if s.BGPConfigured != nil {
		r.BGP.Configured = s.BGPConfigured()
	}
	if s.BGP != nil {
		r.BGP.Running = s.BGP.Ready()
		peers := s.BGP.Peers
		if s.Brief {
			peers = s.BGP.PeersBrief
		}
		for _, p := range peers() {
			r.BGP.Peers = append(r.BGP.Peers, Peer{
				Peer:             p.Name(),
				PeerAS:           p.PeerAS,
				LocalAS:          p.LocalAS,
				State:            p.State,
				AdminDown:        p.AdminDown,
				UptimeSeconds:    p.Uptime.Seconds(),
				PrefixesSent:     p.PrefixesSent,
				PrefixesReceived: p.PrefixesReceived,
				PrefixesAccepted: p.PrefixesAccepted,
				BFD:              p.BFD,
				GracefulRestart:  p.GracefulRestart,
				Flaps:            p.Flaps,
			})
		}
	}

	rx := map[string]map[string]uint64{} // family -> vip -> value
	if s.Gatherer != nil && !s.Brief {
		mfs, err := s.Gatherer.Gather()
		if err != nil {
			r.Errors = append(r.Errors, Error{Part: "metrics", Error: err.Error()})
		}
		for _, mf := range mfs {
			switch mf.GetName() {
			case "vipspeaker_vip_receive_packets_total", "vipspeaker_vip_receive_bytes_total":
				m := map[string]uint64{}
				for _, mt := range mf.GetMetric() {
					if v := labelValue(mt, "vip"); v != "" {
						m[v] += uint64(mt.GetCounter().GetValue())
					}
				}
				rx[mf.GetName()] = m
			}
		}
	}
	var owners map[netip.Addr]string
	election := false
	if s.Owners != nil {
		owners, election = s.Owners()
	}
	if s.Table != nil {
		for _, v := range s.Table.List() {
			mode := v.Attrs.Mode
			if mode == "" {
				mode = routing.ModeBGP
			}
			vs := VIP{
				Address: v.Addr.String(),
				Service: v.Attrs.Service,
				Mode:    string(mode),
				Pool:    v.Attrs.Pool,
			}
			if mode == routing.ModeLayer2 {
				vs.Owner = owners[v.Addr]
				vs.Role = layer2Role(vs.Owner, r.Node, election)
			} else {
				vs.Role = bgpRole(r.BGP.Configured && r.BGP.Running)
			}
			if n, ok := rx["vipspeaker_vip_receive_packets_total"][vs.Address]; ok {
				vs.RxPackets = &n
			}
			if n, ok := rx["vipspeaker_vip_receive_bytes_total"][vs.Address]; ok {
				vs.RxBytes = &n
			}
			r.VIPs = append(r.VIPs, vs)
		}
	}
	s.Reloads.fill(&r.Config)
	if s.NotReady != nil {
		r.Ready = s.NotReady()
	}
	return r
}

// bgpRole is this node's part for a bgp VIP: every node with the VIP
// announces it while its speaker runs.
func bgpRole(bgpRunning bool) string {
	if bgpRunning {
		return "announcing"
	}
	return "not-announced"
}

// layer2Role is this node's part for a layer2 VIP owned by owner.
func layer2Role(owner, node string, election bool) string {
	switch {
	case !election:
		return "unknown"
	case owner == "":
		return "no-owner"
	case owner == node:
		return "owner"
	default:
		return "standby"
	}
}

func labelValue(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}
