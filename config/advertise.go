package config

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"k8s.io/apimachinery/pkg/labels"

	"github.com/vipspeaker/vipspeaker/routing"
)

// PoolAdvertise is a pool's [pools.advertise] section: how its VIPs leave
// the nodes, without a policy of the user's own in gobgp.conf.
type PoolAdvertise struct {
	// NodeSelector is a Kubernetes label selector (as written; empty:
	// every node). Only the nodes it matches announce the pool's VIPs
	// (bgp) or may own them (layer2).
	NodeSelector string
	// Communities and LargeCommunities are added to every path of the
	// pool, numeric as routing.ParseCommunities returns them.
	Communities      []string
	LargeCommunities []string
	// LocalPref is set on the pool's paths (iBGP peers only); 0: not set.
	LocalPref uint32
	// AggregationLength and AggregationLengthV6 (0: host routes) make the
	// nodes announce the covering prefix of that length for Services whose
	// traffic any node may take (externalTrafficPolicy Cluster); Local
	// Services keep their host routes.
	AggregationLength   int
	AggregationLengthV6 int
	// WeightedByEndpoints makes each node announce the pool's
	// externalTrafficPolicy Local Services with a link-bandwidth extended
	// community proportional to its ready endpoints, so routers that honour
	// it (FRR) split the traffic by backends instead of equally by node.
	WeightedByEndpoints bool
	// Peers are the gobgp.conf neighbors the pool's paths go to (a
	// neighbor-address as an address, or a neighbor-interface's interface
	// name); empty: every neighbor.
	Peers []string
}

type filePoolAdvertise struct {
	WeightedByEndpoints bool     `toml:"weighted-by-endpoints"`
	NodeSelector        string   `toml:"node-selector"`
	Communities         []string `toml:"communities"`
	LocalPref           *int64   `toml:"local-pref"`
	AggregationLength   *int64   `toml:"aggregation-length"`
	AggregationLengthV6 *int64   `toml:"aggregation-length-v6"`
	Peers               []string `toml:"peers"`
}

// SelectsNode reports whether a node with these labels announces (bgp) or
// may own (layer2) the pool's VIPs. A nil pool selects every node.
func (p *Pool) SelectsNode(nodeLabels map[string]string) bool {
	return p == nil || selectorMatches(p.Advertise.NodeSelector, nodeLabels)
}

// AllowsNamespace reports whether Services of namespace ns, whose Namespace
// carries nsLabels, may use the pool: ns is listed in namespaces or nsLabels
// match namespace-selector; with neither set, every namespace may.
func (p *Pool) AllowsNamespace(ns string, nsLabels map[string]string) bool {
	if len(p.Namespaces) == 0 && p.NamespaceSelector == "" {
		return true
	}
	return slices.Contains(p.Namespaces, ns) ||
		(p.NamespaceSelector != "" && selectorMatches(p.NamespaceSelector, nsLabels))
}

// SelectsService reports whether a Service with these labels may get
// addresses from the pool (its service-selector; none: every Service).
func (p *Pool) SelectsService(svcLabels map[string]string) bool {
	return selectorMatches(p.ServiceSelector, svcLabels)
}

// selector checks a label selector as written at field and returns it
// trimmed ("" for none).
func (v *validator) selector(field, raw string) string {
	sel := strings.TrimSpace(raw)
	if sel != "" {
		if _, err := labels.Parse(sel); err != nil {
			v.errorf(field, nil, "%q is not a label selector: %v", raw, err)
		}
	}
	return sel
}

// selectorMatches reports whether l matches a label selector as written in
// the config (empty: everything). Validation has parsed every selector; one
// that does not parse (a hand-built Config) matches nothing.
func selectorMatches(selector string, l map[string]string) bool {
	if selector == "" {
		return true
	}
	sel, ok := selectors.Load(selector)
	if !ok {
		parsed, err := labels.Parse(selector)
		if err != nil {
			return false
		}
		sel, _ = selectors.LoadOrStore(selector, parsed)
	}
	return sel.(labels.Selector).Matches(labels.Set(l))
}

// selectors caches parsed selectors by their text (they are matched for
// every Service and node at each decision).
var selectors sync.Map

// Advertised fills in what the pool adds to a VIP's BGP path: its
// communities (merged with the Service's), local-pref and, when local is
// false, the aggregation length of the VIP's family. A nil pool changes
// nothing.
func (p *Pool) Advertised(a routing.Attrs, addr netip.Addr, local bool) routing.Attrs {
	if p == nil {
		return a
	}
	ad := p.Advertise
	if len(ad.Communities) > 0 {
		a.Communities = routing.MergeCommunities(a.Communities, ad.Communities)
	}
	if len(ad.LargeCommunities) > 0 {
		a.LargeCommunities = routing.MergeCommunities(a.LargeCommunities, ad.LargeCommunities)
	}
	a.LocalPref = ad.LocalPref
	a.AggregateBits = 0
	if !local {
		if addr.Is4() {
			a.AggregateBits = ad.AggregationLength
		} else {
			a.AggregateBits = ad.AggregationLengthV6
		}
	}
	return a
}

func (v *validator) advertise(at string, raw filePoolAdvertise, p *Pool) {
	at += ".advertise"
	ad := PoolAdvertise{NodeSelector: strings.TrimSpace(raw.NodeSelector), WeightedByEndpoints: raw.WeightedByEndpoints}
	if ad.WeightedByEndpoints && p.Mode == routing.ModeLayer2 {
		v.errorf(at+".weighted-by-endpoints", []string{at[:len(at)-len(".advertise")] + ".mode"},
			"a layer2 pool's VIP is carried by one node at a time: weights apply to bgp pools")
	}
	v.selector(at+".node-selector", raw.NodeSelector)
	if len(raw.Communities) > 0 {
		std, large, errs := routing.ParseCommunities(raw.Communities)
		for _, err := range errs {
			v.errorf(at+".communities", nil, "%v", err)
		}
		ad.Communities, ad.LargeCommunities = std, large
	}
	if lp := raw.LocalPref; lp != nil {
		if *lp < 0 || *lp > 0xFFFFFFFF {
			v.errorf(at+".local-pref", nil, "%d is not a LOCAL_PREF (0..4294967295)", *lp)
		} else {
			ad.LocalPref = uint32(*lp)
		}
	}
	ad.AggregationLength = v.aggregation(at+".aggregation-length", raw.AggregationLength, p, 32)
	ad.AggregationLengthV6 = v.aggregation(at+".aggregation-length-v6", raw.AggregationLengthV6, p, 128)
	ad.Peers = v.peers(at+".peers", raw.Peers, p)
	p.Advertise = ad
}

// peers checks a pool's peers: each an address (IPv4 or IPv6, no zone) or
// an interface name, listed once, on a bgp pool. Whether gobgp.conf has
// them is CheckWithGoBGP's to say. Addresses come back in their canonical
// form.
func (v *validator) peers(field string, raw []string, p *Pool) []string {
	if len(raw) > 0 && p.Mode == routing.ModeLayer2 {
		v.errorf(field, nil, "a layer2 pool is not announced over BGP: peers apply to bgp pools")
		return nil
	}
	var out []string
	seen := map[string]int{}
	for i, s := range raw {
		at := fmt.Sprintf("%s[%d]", field, i)
		s = strings.TrimSpace(s)
		if a, err := netip.ParseAddr(s); err == nil {
			if a.Zone() != "" {
				v.errorf(at, nil, "%q: name an unnumbered neighbor by its interface (neighbor-interface), not a zoned address", s)
				continue
			}
			s = a.Unmap().String()
		} else if err := checkIfName(s); err != nil {
			v.errorf(at, nil, "%q is neither a neighbor address nor an interface name (neighbor-interface)", s)
			continue
		}
		if j, dup := seen[s]; dup {
			v.errorf(at, nil, "peer %s is already listed (line %d)", s, v.pos.lineOf(fmt.Sprintf("%s[%d]", field, j)))
			continue
		}
		seen[s] = i
		out = append(out, s)
	}
	return out
}

// aggregation checks an aggregation length: within the family, and no
// shorter than any block of the pool, so the covering prefix of a VIP never
// reaches addresses outside the pool.
func (v *validator) aggregation(field string, raw *int64, p *Pool, bits int) int {
	if raw == nil {
		return 0
	}
	n := int(*raw)
	if *raw < 1 || *raw > int64(bits) {
		v.errorf(field, nil, "%d is not a prefix length (1..%d)", *raw, bits)
		return 0
	}
	for _, r := range p.Blocks() {
		if r.First.BitLen() != bits {
			continue
		}
		cover := netip.PrefixFrom(r.First, n).Masked()
		if cover.Addr() != r.First || lastOf(netip.PrefixFrom(r.Last, n).Masked()) != r.Last {
			v.errorf(field, nil, "/%d would announce addresses outside the pool: %s is not made of whole /%d blocks (use a longer length or align the pool)", n, r, n)
			return 0
		}
	}
	return n
}
