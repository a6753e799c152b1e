package migrate

import (
	"fmt"
	"strconv"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
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
	AS         uint32            `json:"as"`
	AsPerRack  map[string]uint32 `json:"asPerRack"`
	RouterID   string            `json:"routerId"`
	ListenPort int32             `json:"listenPort"`
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
		AddPaths *struct {
			Config *struct {
				SendMax int `json:"sendMax"`
			} `json:"config"`
		} `json:"addPaths"`
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
		p := &pool{name: d.name, addresses: c.addresses(d, []string{s.Address}), namespaces: s.Namespaces}
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
		if len(s.NamespaceSelector) > 0 {
			p.namespaceSelector = labels.SelectorFromSet(s.NamespaceSelector).String()
		}
		// OpenELB gives a Service that names no Eip the first Eip, by
		// priority (lower first, 0 by default), whose namespaces or
		// namespaceSelector take the Service's namespace, else the Eip
		// marked default. Here: the scoped Eips are auto-assign pools with
		// priority+1 (a priority here is 1 or more), the default one an
		// auto-assign pool without priority (tried last), and any other Eip
		// serves only Services that name it.
		isDefault := d.annotations["eip.openelb.kubesphere.io/is-default-eip"] == "true"
		scoped := len(p.namespaces) > 0 || p.namespaceSelector != ""
		p.autoAssign = scoped || isDefault
		if scoped {
			p.priority = min(max(s.Priority+1, 1), 1000000)
			if p.priority != s.Priority+1 {
				c.note(d, fmt.Sprintf("priority %d: written as %d (here 1..1000000, lower first)", s.Priority, p.priority))
			}
			c.note(d, "namespaces/namespaceSelector: here they also keep Services of other namespaces from naming the pool by annotation (OpenELB: they only steer automatic assignment)")
			if isDefault {
				c.note(d, "the default Eip is also scoped to namespaces: here it serves only those")
			}
		}
		if s.Disable {
			// OpenELB: no new Services; those that have its addresses keep them.
			p.autoAssign = false
			c.note(d, "disabled in OpenELB: kept with auto-assign = false so the Services that have its addresses keep them, but a Service that names it by annotation gets an address here")
		}
		c.pools = append(c.pools, p)
	}
	if confs := c.of("network.kubesphere.io", "BgpConf"); len(confs) > 0 {
		var s oelbConf
		if c.spec(confs[0], &s) {
			c.globalAS = s.AS
			if s.RouterID != "" {
				// OpenELB gives every speaker this one router-id; gobgp.conf
				// is shared by the nodes too, and identical router-ids from
				// several nodes break iBGP at the router.
				c.note(confs[0], fmt.Sprintf("routerId %s: not carried over: each node uses its own address as router-id", s.RouterID))
			}
			if len(s.AsPerRack) > 0 {
				c.note(confs[0], "asPerRack: not carried over (one AS for every node; a rack's own AS needs its own gobgp.conf)")
			}
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
		for _, af := range s.AfiSafis {
			if af.AddPaths != nil && af.AddPaths.Config != nil && af.AddPaths.Config.SendMax > 0 {
				c.note(d, "afiSafis[].addPaths: not carried over (here each node announces its own path; the router needs no add-path for ECMP)")
				break
			}
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
