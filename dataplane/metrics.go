package dataplane

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Path label values of the reply counters.
const (
	PathUserspace = "userspace"
	PathXDP       = "xdp"
)

type metrics struct {
	arpRequests      *prometheus.CounterVec
	arpReplies       *prometheus.CounterVec
	ndpSolicits      *prometheus.CounterVec
	ndpAdverts       *prometheus.CounterVec
	gratuitous       *prometheus.CounterVec
	conflicts        *prometheus.CounterVec
	sendErrors       *prometheus.CounterVec
	staleCorrections *prometheus.CounterVec
	ownedVIPs        *prometheus.GaugeVec
	groupsJoined     *prometheus.GaugeVec
	sysctlChanged    *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		arpRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vipspeaker_arp_requests_received_total",
			Help: "Well-formed ARP requests received on a layer2 interface, whatever their target.",
		}, []string{"interface"}),
		arpReplies: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vipspeaker_arp_replies_sent_total",
			Help: "ARP replies sent for owned VIPs, by interface and path (userspace or xdp).",
		}, []string{"interface", "path"}),
		ndpSolicits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vipspeaker_ndp_solicitations_received_total",
			Help: "Well-formed neighbour solicitations received on a layer2 interface, whatever their target.",
		}, []string{"interface"}),
		ndpAdverts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vipspeaker_ndp_advertisements_sent_total",
			Help: "Solicited neighbour advertisements sent for owned VIPs, by interface and path.",
		}, []string{"interface", "path"}),
		gratuitous: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vipspeaker_gratuitous_sent_total",
			Help: "Gratuitous ARP frames (request and reply forms count one each) and unsolicited neighbour advertisements sent, by interface and path (userspace: the packet socket; xdp: BPF_PROG_RUN live frames).",
		}, []string{"interface", "path"}),
		conflicts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vipspeaker_l2_conflicts_total",
			Help: "Frames from another station claiming a VIP this node owns (ARP reply or gratuitous ARP, neighbour advertisement, or a request sourced from the VIP).",
		}, []string{"interface"}),
		sendErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vipspeaker_l2_send_errors_total",
			Help: "Frames the layer2 responder failed to send.",
		}, []string{"interface"}),
		staleCorrections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vipspeaker_l2_stale_corrections_total",
			Help: "Unicast ARP replies / NAs sent by a previous owner to senders still using its MAC for a VIP it gave up.",
		}, []string{"interface"}),
		ownedVIPs: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "vipspeaker_l2_owned_vips",
			Help: "VIPs this node answers ARP/NDP for, by interface.",
		}, []string{"interface"}),
		groupsJoined: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "vipspeaker_ndp_multicast_groups",
			Help: "Solicited-node multicast groups joined by the responder, by interface.",
		}, []string{"interface"}),
		sysctlChanged: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "vipspeaker_l2_sysctl_changed",
			Help: "1 when the responder changed this interface's arp_ignore/arp_announce and will restore them on exit.",
		}, []string{"interface"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.arpRequests, m.arpReplies, m.ndpSolicits, m.ndpAdverts,
		m.gratuitous, m.conflicts, m.sendErrors, m.staleCorrections, m.ownedVIPs, m.groupsJoined, m.sysctlChanged} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register dataplane metrics: %w", err)
		}
	}
	return m, nil
}

// AddFastPathCounts adds to the reply counters, with path="xdp", what the
// eBPF fast path sent on iface since the caller last asked (deltas): the
// program counts in its own maps, and this family is the one place
// operators read replies from, whichever path sent them.
func (r *Responder) AddFastPathCounts(iface string, arpReplies, ndpAdverts, gratuitous uint64) {
	r.m.arpReplies.WithLabelValues(iface, PathXDP).Add(float64(arpReplies))
	r.m.ndpAdverts.WithLabelValues(iface, PathXDP).Add(float64(ndpAdverts))
	r.m.gratuitous.WithLabelValues(iface, PathXDP).Add(float64(gratuitous))
}
