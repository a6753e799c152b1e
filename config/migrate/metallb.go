package migrate

import (
	"fmt"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// MetalLB's custom resources (metallb.io), the fields this conversion
// reads. Written from MetalLB's API documentation; unknown fields are
// ignored here and reported by name where they matter.

type mlbPool struct {
	Addresses         []string `json:"addresses"`
	AutoAssign        *bool    `json:"autoAssign"`
	AvoidBuggyIPs     bool     `json:"avoidBuggyIPs"`
	ServiceAllocation *struct {
		Priority           int                    `json:"priority"`
		Namespaces         []string               `json:"namespaces"`
		NamespaceSelectors []metav1.LabelSelector `json:"namespaceSelectors"`
		ServiceSelectors   []metav1.LabelSelector `json:"serviceSelectors"`
	} `json:"serviceAllocation"`
}

type mlbBGPAdv struct {
	AggregationLength      *int                   `json:"aggregationLength"`
	AggregationLengthV6    *int                   `json:"aggregationLengthV6"`
	LocalPref              uint32                 `json:"localPref"`
	Communities            []string               `json:"communities"`
	IPAddressPools         []string               `json:"ipAddressPools"`
	IPAddressPoolSelectors []metav1.LabelSelector `json:"ipAddressPoolSelectors"`
	NodeSelectors          []metav1.LabelSelector `json:"nodeSelectors"`
	Peers                  []string               `json:"peers"`
}

type mlbL2Adv struct {
	IPAddressPools         []string               `json:"ipAddressPools"`
	IPAddressPoolSelectors []metav1.LabelSelector `json:"ipAddressPoolSelectors"`
	NodeSelectors          []metav1.LabelSelector `json:"nodeSelectors"`
	Interfaces             []string               `json:"interfaces"`
}

type mlbPeer struct {
	MyASN          uint32                 `json:"myASN"`
	PeerASN        uint32                 `json:"peerASN"`
	DynamicASN     string                 `json:"dynamicASN"`
	PeerAddress    string                 `json:"peerAddress"`
	SourceAddress  string                 `json:"sourceAddress"`
	PeerPort       uint16                 `json:"peerPort"`
	HoldTime       *metav1.Duration       `json:"holdTime"`
	KeepaliveTime  *metav1.Duration       `json:"keepaliveTime"`
	ConnectTime    *metav1.Duration       `json:"connectTime"`
	RouterID       string                 `json:"routerID"`
	NodeSelectors  []metav1.LabelSelector `json:"nodeSelectors"`
	Password       string                 `json:"password"`
	PasswordSecret *struct {
		Name string `json:"name"`
	} `json:"passwordSecret"`
	BFDProfile            string `json:"bfdProfile"`
	EnableGracefulRestart bool   `json:"enableGracefulRestart"`
	EBGPMultiHop          bool   `json:"ebgpMultiHop"`
	VRFName               string `json:"vrf"`
	DisableMP             bool   `json:"disableMP"`
}

type mlbCommunity struct {
	Communities []struct {
		Name  string `json:"name"`
		Value string `json:"value"`
	} `json:"communities"`
}

type mlbBFD struct {
	ReceiveInterval  *uint32 `json:"receiveInterval"`
	TransmitInterval *uint32 `json:"transmitInterval"`
	DetectMultiplier *uint32 `json:"detectMultiplier"`
	EchoMode         bool    `json:"echoMode"`
	PassiveMode      bool    `json:"passiveMode"`
	MinimumTTL       *uint32 `json:"minimumTtl"`
}

// metallb converts what the documents of group metallb.io hold.
func (c *converter) metallb() {
	aliases := map[string]string{}
	for _, d := range c.of("metallb.io", "Community") {
		var s mlbCommunity
		if !c.spec(d, &s) {
			continue
		}
		for _, e := range s.Communities {
			aliases[e.Name] = e.Value
		}
	}
	bfd := map[string]mlbBFD{}
	for _, d := range c.of("metallb.io", "BFDProfile") {
		var s mlbBFD
		if c.spec(d, &s) {
			bfd[d.name] = s
		}
	}
	pools := c.of("metallb.io", "IPAddressPool")
	byName := map[string]*pool{}
	for _, d := range pools {
		var s mlbPool
		if !c.spec(d, &s) {
			continue
		}
		p := &pool{name: d.name, addresses: s.Addresses, autoAssign: s.AutoAssign == nil || *s.AutoAssign,
			avoidBuggy: s.AvoidBuggyIPs, labels: d.labels}
		if a := s.ServiceAllocation; a != nil {
			p.namespaces, p.priority = a.Namespaces, a.Priority
			p.serviceSelector = c.firstSelector(d, "serviceAllocation.serviceSelectors", a.ServiceSelectors)
			p.namespaceSelector = c.firstSelector(d, "serviceAllocation.namespaceSelectors", a.NamespaceSelectors)
		}
		c.pools = append(c.pools, p)
		byName[d.name] = p
	}
	selected := func(d doc, names []string, sels []metav1.LabelSelector) []*pool {
		if len(names) == 0 && len(sels) == 0 {
			return c.pools // MetalLB: an advertisement that names no pool covers them all
		}
		var out []*pool
		for _, n := range names {
			if p := byName[n]; p != nil {
				out = append(out, p)
			} else {
				c.note(d, fmt.Sprintf("ipAddressPools: no IPAddressPool %q among the documents", n))
			}
		}
		for _, ls := range sels {
			sel, err := metav1.LabelSelectorAsSelector(&ls)
			if err != nil {
				c.note(d, fmt.Sprintf("ipAddressPoolSelectors: %v", err))
				continue
			}
			for _, p := range c.pools {
				if sel.Matches(labels.Set(p.labels)) && !slices.Contains(out, p) {
					out = append(out, p)
				}
			}
		}
		return out
	}
	for _, d := range c.of("metallb.io", "L2Advertisement") {
		var s mlbL2Adv
		if !c.spec(d, &s) {
			continue
		}
		for _, p := range selected(d, s.IPAddressPools, s.IPAddressPoolSelectors) {
			c.advertise(d, p, "layer2")
			p.interfaces = mergeStrings(p.interfaces, s.Interfaces)
			c.nodeSelector(d, p, s.NodeSelectors)
		}
	}
	for _, d := range c.of("metallb.io", "BGPAdvertisement") {
		var s mlbBGPAdv
		if !c.spec(d, &s) {
			continue
		}
		if len(s.Peers) > 0 {
			c.note(d, "spec.peers: a pool's own peer list is not carried over (every session gets the pool; a policy in gobgp.conf with a prefix-set can limit it)")
		}
		for _, p := range selected(d, s.IPAddressPools, s.IPAddressPoolSelectors) {
			c.advertise(d, p, "bgp")
			for _, v := range s.Communities {
				if a, ok := aliases[v]; ok {
					v = a
				}
				p.communities = mergeStrings(p.communities, []string{v})
			}
			if s.LocalPref != 0 {
				p.localPref = s.LocalPref
			}
			if l := s.AggregationLength; l != nil && *l < 32 {
				p.aggregation = *l
			}
			if l := s.AggregationLengthV6; l != nil && *l < 128 {
				p.aggregationV6 = *l
			}
			c.nodeSelector(d, p, s.NodeSelectors)
		}
	}
	for _, p := range c.pools {
		if p.mode == "" {
			c.notef("IPAddressPool/%s: no BGPAdvertisement or L2Advertisement selects it, so MetalLB does not announce it; here it becomes a bgp pool with auto-assign = false", p.name)
			p.mode, p.autoAssign = "bgp", false
		}
	}
	for _, d := range c.of("metallb.io", "BGPPeer") {
		var s mlbPeer
		if c.spec(d, &s) {
			c.mlbPeer(d, s, bfd)
		}
	}
}

// advertise sets p's mode from an advertisement, noting a second mode.
func (c *converter) advertise(d doc, p *pool, mode string) {
	switch {
	case p.mode == "":
		p.mode = mode
	case p.mode != mode:
		c.note(d, fmt.Sprintf("pool %q is advertised in both modes by MetalLB; here a pool has one mode: it stays %s (a Service can ask for the other with vipspeaker.io/mode)", p.name, p.mode))
	}
	if p.advertisedBy != "" && p.advertisedBy != d.ref() && p.mode == mode {
		c.note(d, fmt.Sprintf("pool %q has another advertisement (%s); their settings are merged into one [pools.advertise]", p.name, p.advertisedBy))
	}
	p.advertisedBy = d.ref()
}

// nodeSelector takes the first of MetalLB's node selectors (any of them
// selects a node there; here a pool has one).
func (c *converter) nodeSelector(d doc, p *pool, sels []metav1.LabelSelector) {
	if len(sels) == 0 {
		return
	}
	sel, err := metav1.LabelSelectorAsSelector(&sels[0])
	if err != nil {
		c.note(d, fmt.Sprintf("nodeSelectors: %v", err))
		return
	}
	if len(sels) > 1 {
		c.note(d, "nodeSelectors: only the first of several selectors is carried over (here a pool has one selector; write it with \"in (a, b)\")")
	}
	if p.nodeSelector != "" && p.nodeSelector != sel.String() {
		c.note(d, fmt.Sprintf("pool %q: node selector %q replaces %q from another advertisement", p.name, sel.String(), p.nodeSelector))
	}
	p.nodeSelector = sel.String()
}

// mlbPeer converts one BGPPeer.
func (c *converter) mlbPeer(d doc, s mlbPeer, bfd map[string]mlbBFD) {
	n := neighbor{address: s.PeerAddress, peerAS: s.PeerASN, localAS: s.MyASN, port: s.PeerPort,
		multihop: s.EBGPMultiHop, gracefulRestart: s.EnableGracefulRestart, source: s.SourceAddress, from: d.ref()}
	if s.HoldTime != nil {
		n.hold = s.HoldTime.Seconds()
	}
	if s.KeepaliveTime != nil {
		n.keepalive = s.KeepaliveTime.Seconds()
	}
	if s.ConnectTime != nil {
		n.connectRetry = s.ConnectTime.Seconds()
	}
	switch {
	case s.PasswordSecret != nil && s.PasswordSecret.Name != "":
		// MetalLB's password Secret keeps it under "password"; the Secret
		// must be in the agent's namespace (vipspeaker-system).
		n.password = "secret:" + s.PasswordSecret.Name + "/password"
		c.note(d, fmt.Sprintf("passwordSecret: read from Secret %q key \"password\" in the agent's namespace; copy it there from metallb-system", s.PasswordSecret.Name))
	case s.Password != "":
		n.password = s.Password
	}
	if s.BFDProfile != "" {
		p, ok := bfd[s.BFDProfile]
		if !ok {
			c.note(d, fmt.Sprintf("bfdProfile: no BFDProfile %q among the documents; BFD left off", s.BFDProfile))
		} else {
			n.bfd = true
			n.bfdRx, n.bfdTx, n.bfdMult = 300, 300, 3 // MetalLB's defaults, ms
			if p.ReceiveInterval != nil {
				n.bfdRx = *p.ReceiveInterval
			}
			if p.TransmitInterval != nil {
				n.bfdTx = *p.TransmitInterval
			}
			if p.DetectMultiplier != nil {
				n.bfdMult = *p.DetectMultiplier
			}
			if p.EchoMode || p.PassiveMode || p.MinimumTTL != nil {
				c.note(d, fmt.Sprintf("BFDProfile/%s: echoMode, passiveMode and minimumTtl are not carried over (GoBGP's BFD has no such settings)", s.BFDProfile))
			}
		}
	}
	if len(s.NodeSelectors) > 0 {
		sel, err := metav1.LabelSelectorAsSelector(&s.NodeSelectors[0])
		if err != nil {
			c.note(d, fmt.Sprintf("nodeSelectors: %v", err))
		} else {
			n.nodeSelector = sel.String()
		}
		if len(s.NodeSelectors) > 1 {
			c.note(d, "nodeSelectors: only the first of several selectors is carried over")
		}
	}
	var dropped []string
	for _, f := range []struct {
		set  bool
		name string
	}{{s.RouterID != "", "routerID (the node's own address is the router-id)"}, {s.VRFName != "", "vrf (not supported yet)"},
		{s.DynamicASN != "", "dynamicASN (write the peer's AS)"}, {s.DisableMP, "disableMP"}} {
		if f.set {
			dropped = append(dropped, f.name)
		}
	}
	if len(dropped) > 0 {
		c.note(d, "not carried over: "+strings.Join(dropped, ", "))
	}
	if s.PeerAddress == "" || s.PeerASN == 0 && s.DynamicASN == "" {
		c.note(d, "no peerAddress or peerASN: skipped")
		return
	}
	c.neighbors = append(c.neighbors, n)
}

// firstSelector is the first of a list of MetalLB label selectors, as a
// selector string ("" for none); the others are noted, as a pool here has
// one.
func (c *converter) firstSelector(d doc, field string, sels []metav1.LabelSelector) string {
	if len(sels) == 0 {
		return ""
	}
	if len(sels) > 1 {
		c.note(d, field+": only the first of several selectors is carried over")
	}
	sel, err := metav1.LabelSelectorAsSelector(&sels[0])
	if err != nil {
		c.note(d, fmt.Sprintf("%s: %v", field, err))
		return ""
	}
	return sel.String()
}
