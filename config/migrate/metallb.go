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
	for _, d := range c.docs {
		c.defaultClass = c.defaultClass || d.group == "metallb.io"
	}
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
		p := &pool{name: d.name, addresses: c.addresses(d, s.Addresses), autoAssign: s.AutoAssign == nil || *s.AutoAssign,
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
	// BGPPeers first: a BGPAdvertisement's peers are their names
	peerAddr := map[string]string{}
	var ibgp string
	for _, d := range c.of("metallb.io", "BGPPeer") {
		var s mlbPeer
		if !c.spec(d, &s) {
			continue
		}
		if c.mlbPeer(d, s, bfd) {
			peerAddr[d.name] = s.PeerAddress
		}
		if s.MyASN != 0 && s.MyASN == s.PeerASN && ibgp == "" {
			ibgp = d.ref()
		}
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
	bgpAds := map[*pool][]bgpAd{}
	for _, d := range c.of("metallb.io", "BGPAdvertisement") {
		var s mlbBGPAdv
		if !c.spec(d, &s) {
			continue
		}
		peers := c.advertisedPeers(d, s.Peers, peerAddr)
		for _, p := range selected(d, s.IPAddressPools, s.IPAddressPoolSelectors) {
			bgpAds[p] = append(bgpAds[p], bgpAd{d, s, peers})
		}
	}
	for _, p := range c.pools {
		for _, a := range c.keptAds(p, bgpAds[p]) {
			c.advertise(a.d, p, "bgp")
			if len(a.peers) == 0 {
				p.allPeers = true // MetalLB: an advertisement naming no peer goes to all
			}
			p.peers = mergeStrings(p.peers, a.peers)
			for _, v := range a.s.Communities {
				if a, ok := aliases[v]; ok {
					v = a
				}
				p.communities = mergeStrings(p.communities, []string{v})
			}
			if a.s.LocalPref != 0 {
				p.localPref = a.s.LocalPref
			}
			p.aggregation, p.aggregationV6 = a.lengths()
			c.nodeSelector(a.d, p, a.s.NodeSelectors)
		}
	}
	for _, p := range c.pools {
		if p.mode == "" {
			c.notef("IPAddressPool/%s: no BGPAdvertisement or L2Advertisement selects it, so MetalLB does not announce it; here it becomes a bgp pool with auto-assign = false", p.name)
			p.mode, p.autoAssign = "bgp", false
		}
	}
	for _, p := range c.pools {
		if p.mode != "bgp" || len(bgpAds[p]) == 0 {
			continue
		}
		if p.aggregation != 0 || p.aggregationV6 != 0 {
			c.notef("IPAddressPool/%s: aggregation: here Services with externalTrafficPolicy Local keep their host routes, from the nodes with a ready endpoint (MetalLB announces the aggregate for them too, from those nodes)", p.name)
		}
		if p.localPref == 0 && ibgp != "" {
			c.notef("IPAddressPool/%s: no localPref: MetalLB's native mode sends LOCAL_PREF 0 to iBGP peers (%s), the agent GoBGP's 100; set [pools.advertise] local-pref if the router compares them", p.name, ibgp)
		}
	}
}

// bgpAd is one BGPAdvertisement as it applies to a pool, with the
// addresses of the BGPPeers it names.
type bgpAd struct {
	d     doc
	s     mlbBGPAdv
	peers []string
}

// lengths are the advertisement's aggregation lengths as the pool's
// settings: 0 for host routes (MetalLB's default 32 and 128).
func (a bgpAd) lengths() (v4, v6 int) {
	if l := a.s.AggregationLength; l != nil && *l < 32 {
		v4 = *l
	}
	if l := a.s.AggregationLengthV6; l != nil && *l < 128 {
		v6 = *l
	}
	return v4, v6
}

// keptAds are the advertisements of p that carry over. MetalLB announces
// a VIP once per advertisement, so several with different aggregation
// lengths announce the host route and the aggregate side by side (its
// documentation's example: a /32 with no-advertise for the router, the /24
// for transit). Here a pool announces one prefix per VIP: the
// advertisements with the longest lengths (host routes first) are kept,
// with their attributes only, and each other one is a note. Merging them
// would put the /32's communities on the /24.
func (c *converter) keptAds(p *pool, ads []bgpAd) []bgpAd {
	if len(ads) < 2 {
		return ads
	}
	best := ads[0]
	for _, a := range ads[1:] {
		b4, b6 := best.lengths()
		a4, a6 := a.lengths()
		if longer(a4, b4) || a4 == b4 && longer(a6, b6) {
			best = a
		}
	}
	w4, w6 := best.lengths()
	var kept []bgpAd
	for _, a := range ads {
		if a4, a6 := a.lengths(); a4 == w4 && a6 == w6 {
			kept = append(kept, a)
			continue
		}
		c.note(a.d, fmt.Sprintf("pool %q: also announced by %s with other aggregation lengths; a pool here announces one prefix per VIP, so %s's %s and its attributes are not carried over (announce it from the router, e.g. an aggregate route, or split the pool)",
			p.name, best.d.ref(), a.d.ref(), describeLengths(a)))
	}
	return kept
}

// longer compares aggregation lengths as the pool's settings (0: host
// routes, the longest).
func longer(a, b int) bool {
	if a == 0 || b == 0 {
		return a == 0 && b != 0
	}
	return a > b
}

func describeLengths(a bgpAd) string {
	v4, v6 := a.lengths()
	var out []string
	if v4 != 0 {
		out = append(out, fmt.Sprintf("/%d aggregate", v4))
	}
	if v6 != 0 {
		out = append(out, fmt.Sprintf("/%d IPv6 aggregate", v6))
	}
	if len(out) == 0 {
		return "host routes"
	}
	return strings.Join(out, " and ")
}

// advertisedPeers are the addresses of the BGPPeers a BGPAdvertisement
// names (MetalLB's spec.peers), for [pools.advertise] peers; a name no
// BGPPeer document carries is noted and left out.
func (c *converter) advertisedPeers(d doc, names []string, peerAddr map[string]string) []string {
	var out []string
	for _, name := range names {
		if a, ok := peerAddr[name]; ok {
			out = append(out, a)
		} else {
			c.note(d, fmt.Sprintf("spec.peers: no BGPPeer %q (with a peerAddress and peerASN) among the documents; left out", name))
		}
	}
	if len(names) > 0 && len(out) == 0 {
		c.note(d, "spec.peers: none of the named BGPPeers is here, so the pools of this advertisement go to every neighbor")
	}
	return out
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

// mlbPeer converts one BGPPeer; false when it is skipped.
func (c *converter) mlbPeer(d doc, s mlbPeer, bfd map[string]mlbBFD) bool {
	n := neighbor{address: s.PeerAddress, peerAS: s.PeerASN, localAS: s.MyASN, port: s.PeerPort,
		multihop: s.EBGPMultiHop, gracefulRestart: s.EnableGracefulRestart, source: s.SourceAddress, from: d.ref()}
	if s.HoldTime != nil {
		n.hold = s.HoldTime.Seconds()
	}
	if s.KeepaliveTime != nil {
		n.keepalive = s.KeepaliveTime.Seconds()
		if n.keepalive == 0 {
			c.note(d, "keepaliveTime 0s: not carried over (GoBGP sends keepalives every third of the hold time)")
		}
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
		return false
	}
	c.neighbors = append(c.neighbors, n)
	return true
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
