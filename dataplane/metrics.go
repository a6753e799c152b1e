package dataplane

import (
	"fmt"
	"reflect"
	"sync/atomic"

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
	// fastPath is what SetFastPath gave (nil: none, or not told yet);
	// replies reads its counts at scrape time.
	fastPath atomic.Pointer[fastPathRef]
	// fastPathTold says SetFastPath was called: only then is
	// vipspeaker_l2_fast_path_active exported.
	fastPathTold atomic.Bool
}

var descFastPathActive = prometheus.NewDesc("vipspeaker_l2_fast_path_active",
	"1 when the XDP fast path answers ARP/NDP for the owned VIPs (the userspace responder answers what it passes on); 0 when the userspace responder answers them all (fast-path = \"off\", or the fast path could not be loaded: the log says why).",
	nil, nil)

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
	rc := &replies{m: m, arp: descOf(m.arpReplies), ndp: descOf(m.ndpAdverts), grat: descOf(m.gratuitous)}
	for _, c := range []prometheus.Collector{m.arpRequests, rc, m.ndpSolicits,
		m.conflicts, m.sendErrors, m.staleCorrections, m.ownedVIPs, m.groupsJoined, m.sysctlChanged} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register dataplane metrics: %w", err)
		}
	}
	return m, nil
}

// FastPathCounts is what the reply counters read from the eBPF fast path
// (*bpf.FastPath): the interfaces it is attached to, and what its program
// sent on one of them, kept in the kernel's maps.
type FastPathCounts interface {
	Interfaces() map[string]string
	SentCounts(iface string) (arpReplies, ndpAdverts, gratuitous uint64, err error)
}

type fastPathRef struct{ FastPathCounts }

// SetFastPath says which fast path answers next to the responder (nil:
// none, the responder answers everything). From then on the reply counters
// report, with path="xdp", what its program sent: read from its maps when
// Prometheus scrapes, so a scrape is exact and nothing polls in between.
// They are the program's counts since it was attached to the interface,
// carried over agent restarts while the maps stay pinned.
// vipspeaker_l2_fast_path_active (exported once this has been called) says
// which path answers.
func (r *Responder) SetFastPath(fp FastPathCounts) {
	if v := reflect.ValueOf(fp); fp == nil || (v.Kind() == reflect.Pointer && v.IsNil()) {
		r.m.fastPath.Store(nil)
	} else {
		r.m.fastPath.Store(&fastPathRef{fp})
	}
	r.m.fastPathTold.Store(true)
}

// replies collects the three reply families: what the responder sent
// (path="userspace", counted as it sends) and what the fast path sent
// (path="xdp", read from the program's maps at scrape time), one family
// being one place to read replies from, whichever path sent them; and
// vipspeaker_l2_fast_path_active.
type replies struct {
	m              *metrics
	arp, ndp, grat *prometheus.Desc // the CounterVecs' own
}

// descOf is the descriptor of a one-family collector (a CounterVec).
func descOf(c prometheus.Collector) *prometheus.Desc {
	ch := make(chan *prometheus.Desc, 1)
	c.Describe(ch)
	return <-ch
}

func (c *replies) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.arp
	ch <- c.ndp
	ch <- c.grat
	ch <- descFastPathActive
}

func (c *replies) Collect(ch chan<- prometheus.Metric) {
	c.m.arpReplies.Collect(ch)
	c.m.ndpAdverts.Collect(ch)
	c.m.gratuitous.Collect(ch)
	fp := c.m.fastPath.Load()
	if c.m.fastPathTold.Load() {
		active := 0.0
		if fp != nil {
			active = 1
		}
		ch <- prometheus.MustNewConstMetric(descFastPathActive, prometheus.GaugeValue, active)
	}
	if fp == nil {
		return
	}
	for iface := range fp.Interfaces() {
		arp, ndp, grat, err := fp.SentCounts(iface)
		if err != nil {
			continue // detached or closed meanwhile
		}
		ch <- prometheus.MustNewConstMetric(c.arp, prometheus.CounterValue, float64(arp), iface, PathXDP)
		ch <- prometheus.MustNewConstMetric(c.ndp, prometheus.CounterValue, float64(ndp), iface, PathXDP)
		ch <- prometheus.MustNewConstMetric(c.grat, prometheus.CounterValue, float64(grat), iface, PathXDP)
	}
}
