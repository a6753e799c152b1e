package migrate

import (
	"fmt"
	"strconv"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// OpenELB's custom resources (network.kubesphere.io/v1alpha2), the fields
// this conversion reads.

type oelbEip struct {
	Address           string            `json:"address"`
	Protocol          string            `json:"protocol"`
	Interface         string            `json:"interface"`
	Disable           bool              `json:"disable"`
	Namespaces        []string          `json:"namespaces"`
	NamespaceSelector map[string]string `json:"namespaceSelector"`
	Priority          int               `json:"priority"`
}

type oelbConf struct {
	AS         uint32 `json:"as"`
	RouterID   string `json:"routerId"`
	ListenPort int32  `json:"listenPort"`
}

type oelbPeer struct {
	Conf *struct {
		NeighborAddress string `json:"neighborAddress"`
		PeerAs          uint32 `json:"peerAs"`
		LocalAs         uint32 `json:"localAs"`
		AuthPassword    string `json:"authPassword"`
	} `json:"conf"`
	EbgpMultihop *struct {
		Enabled bool `json:"enabled"`
	} `json:"ebgpMultihop"`
	Timers *struct {
		Config *struct {
			ConnectRetry      string `json:"connectRetry"`
			HoldTime          string `json:"holdTime"`
			KeepaliveInterval string `json:"keepaliveInterval"`
		} `json:"config"`
	} `json:"timers"`
	Transport *struct {
		PassiveMode bool   `json:"passiveMode"`
		RemotePort  uint32 `json:"remotePort"`
	} `json:"transport"`
	GracefulRestart *struct {
		Enabled bool `json:"enabled"`
	} `json:"gracefulRestart"`
	AfiSafis []struct {
		Config *struct {
			Family *struct {
				Afi string `json:"afi"`
			} `json:"family"`
		} `json:"config"`
	} `json:"afiSafis"`
	NodeSelector *metav1.LabelSelector `json:"nodeSelector"`
}

// openelb converts what the documents of group network.kubesphere.io hold.
func (c *converter) openelb() {
	for _, d := range c.of("network.kubesphere.io", "Eip") {
		var s oelbEip
		if !c.spec(d, &s) {
			continue
		}
		if s.Disable {
			c.note(d, "disabled in OpenELB: not carried over")
			continue
		}
		p := &pool{name: d.name, addresses: []string{strings.TrimSpace(s.Address)}, autoAssign: true, namespaces: s.Namespaces}
		switch s.Protocol {
		case "", "bgp":
			p.mode = "bgp"
		case "layer2":
			p.mode = "layer2"
			if s.Interface != "" && !strings.HasPrefix(s.Interface, "can_reach:") {
				p.interfaces = []string{s.Interface}
			} else if s.Interface != "" {
				c.note(d, fmt.Sprintf("interface %q: OpenELB's can_reach: form is not carried over; name the interface", s.Interface))
			}
		default:
			c.note(d, fmt.Sprintf("protocol %q (keepalived) has no equivalent; the pool becomes a layer2 pool", s.Protocol))
			p.mode = "layer2"
		}
		if len(s.NamespaceSelector) > 0 || s.Priority != 0 {
			c.note(d, "namespaceSelector and priority are not carried over (a pool here lists its namespaces)")
		}
		// OpenELB Services pick their Eip by annotation; only the Eip
		// marked default serves the others.
		p.autoAssign = d.annotations["eip.openelb.kubesphere.io/is-default-eip"] == "true"
		c.pools = append(c.pools, p)
	}
	if confs := c.of("network.kubesphere.io", "BgpConf"); len(confs) > 0 {
		var s oelbConf
		if c.spec(confs[0], &s) {
			c.globalAS = s.AS
			c.routerID = s.RouterID
			if s.ListenPort != 0 && s.ListenPort != 179 {
				c.note(confs[0], fmt.Sprintf("listenPort %d: the agent listens on port 179 only if gobgp.conf sets [global.config] port; not carried over", s.ListenPort))
			}
		}
	}
	for _, d := range c.of("network.kubesphere.io", "BgpPeer") {
		var s oelbPeer
		if !c.spec(d, &s) {
			continue
		}
		if s.Conf == nil || s.Conf.NeighborAddress == "" || s.Conf.PeerAs == 0 {
			c.note(d, "no conf.neighborAddress or conf.peerAs: skipped")
			continue
		}
		n := neighbor{address: s.Conf.NeighborAddress, peerAS: s.Conf.PeerAs, localAS: s.Conf.LocalAs,
			password: s.Conf.AuthPassword, from: d.ref()}
		if s.EbgpMultihop != nil {
			n.multihop = s.EbgpMultihop.Enabled
		}
		if s.GracefulRestart != nil {
			n.gracefulRestart = s.GracefulRestart.Enabled
		}
		if s.Transport != nil {
			n.port = uint16(s.Transport.RemotePort)
			if s.Transport.PassiveMode {
				c.note(d, "transport.passiveMode is not carried over (the agent dials)")
			}
		}
		if s.Timers != nil && s.Timers.Config != nil {
			t := s.Timers.Config
			n.hold = c.seconds(d, "holdTime", t.HoldTime)
			n.keepalive = c.seconds(d, "keepaliveInterval", t.KeepaliveInterval)
			n.connectRetry = c.seconds(d, "connectRetry", t.ConnectRetry)
		}
		if s.NodeSelector != nil {
			sel, err := metav1.LabelSelectorAsSelector(s.NodeSelector)
			if err != nil {
				c.note(d, fmt.Sprintf("nodeSelector: %v", err))
			} else if !sel.Empty() {
				n.nodeSelector = sel.String()
			}
		}
		c.neighbors = append(c.neighbors, n)
	}
}

// seconds reads OpenELB's timer strings ("90").
func (c *converter) seconds(d doc, field, s string) float64 {
	if s == "" {
		return 0
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0 {
		c.note(d, fmt.Sprintf("timers.config.%s %q is not a number of seconds: left at the default", field, s))
		return 0
	}
	return f
}
