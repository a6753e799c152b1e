package kube

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/vipspeaker/vipspeaker/config"
	"github.com/vipspeaker/vipspeaker/routing"
)

// LabelExcludeFromLB keeps a node from announcing any VIP.
const LabelExcludeFromLB = "node.kubernetes.io/exclude-from-external-load-balancers"

// NodeEligible reports whether a node may carry VIPs: its Ready condition
// is True and it lacks the exclude-from-external-load-balancers label.
func NodeEligible(n *corev1.Node) bool {
	if n == nil {
		return false
	}
	if _, excluded := n.Labels[LabelExcludeFromLB]; excluded {
		return false
	}
	return ready(n)
}

// ServingEndpointNodes returns the nodes where the traffic of a Service
// (its EndpointSlices) is served, with how many endpoints serve it there:
// a node's ready endpoints or, where it has none ready, its terminating
// endpoints that still serve — kube-proxy sends a Local Service's traffic
// to those then (KEP-1669), so a lone backend shutting down keeps its
// route until it stops serving instead of leaving the Service with no
// route while its successor starts. MetalLB counts serving endpoints too.
func ServingEndpointNodes(slices []*discoveryv1.EndpointSlice) map[string]int {
	ready, serving := map[string]int{}, map[string]int{}
	for _, s := range slices {
		for _, ep := range s.Endpoints {
			if ep.NodeName == nil || *ep.NodeName == "" {
				continue
			}
			c := ep.Conditions
			switch {
			case c.Ready == nil || *c.Ready:
				ready[*ep.NodeName]++
			case c.Serving != nil && *c.Serving:
				serving[*ep.NodeName]++
			}
		}
	}
	for n, k := range serving {
		if ready[n] == 0 {
			ready[n] = k
		}
	}
	return ready
}

// announceInput is what the speaker side decides from: a snapshot of the
// informers' caches.
type announceInput struct {
	node     string
	cfg      *config.Config // nil: no valid configuration seen
	services []*corev1.Service
	nodes    map[string]*corev1.Node
	// endpoints returns the nodes with a ready endpoint of a Service and
	// how many each has.
	endpoints func(namespace, name string) map[string]int
	// lastGood holds the attributes of Services whose annotations were
	// valid before; updated in place.
	lastGood map[string]svcAttrs
}

type svcAttrs struct {
	mode        routing.Mode
	communities []string
	large       []string
}

// announcement is the decision for one Service on this node.
type announcement struct {
	addrs []netip.Addr
	mode  routing.Mode
}

// announceResult is the speaker's decision.
type announceResult struct {
	// vips for this node: BGP VIPs it announces and layer2 VIPs it is a
	// candidate for.
	vips []routing.VIP
	// services this node announces (or is a layer2 candidate for), by key.
	services map[string]announcement
	// layer2 candidates (node names, sorted) per layer2 VIP.
	layer2 map[netip.Addr][]string
	// invalid Services skipped for lack of a good earlier reading.
	invalid []string
}

// decide computes what this node carries.
func decide(in announceInput) announceResult {
	// Sized for every Service once: at thousands of Services, growing
	// these maps and the VIP list pass after pass was most of what a
	// burst of creates allocated.
	res := announceResult{services: make(map[string]announcement, len(in.services)), layer2: map[netip.Addr][]string{}}
	type acc struct {
		services []string
		mode     routing.Mode
		pool     string
		comms    []string
		large    []string
		local    bool // a Service of the address is externalTrafficPolicy Local
		// weight: this node's ready endpoints of the address's Local
		// Services, when its pool is weighted-by-endpoints.
		weight uint32
	}
	byAddr := make(map[netip.Addr]*acc, len(in.services))
	defaultClass := in.cfg != nil && in.cfg.DefaultClass
	type keyed struct {
		key string
		svc *corev1.Service
	}
	svcs := make([]keyed, 0, len(in.services))
	for _, svc := range in.services {
		if Handles(svc, defaultClass) && len(svc.Status.LoadBalancer.Ingress) > 0 {
			svcs = append(svcs, keyed{ServiceKey(svc), svc})
		}
	}
	slices.SortFunc(svcs, func(a, b keyed) int { return strings.Compare(a.key, b.key) })
	for _, ks := range svcs {
		key, svc := ks.key, ks.svc
		addrs := Ingress(svc)
		if len(addrs) == 0 {
			continue
		}
		spec := ReadService(svc)
		attrs := svcAttrs{mode: spec.Mode, communities: spec.Communities, large: spec.LargeCommunities}
		if bad := attrErrors(spec.Errors); bad {
			g, ok := in.lastGood[key]
			if !ok {
				res.invalid = append(res.invalid, key)
				continue
			}
			attrs = g
		} else {
			in.lastGood[key] = attrs
		}
		pool := svc.Annotations[AnnotationAllocatedFrom]
		if pool == "" && in.cfg != nil {
			// The allocator writes the status first and the annotation
			// right after: the pool of the address says the same.
			if p := in.cfg.PoolOf(addrs[0]); p != nil {
				pool = p.Name
			}
		}
		mode := attrs.mode
		if mode == "" && in.cfg != nil {
			if p := in.cfg.Pool(pool); p != nil {
				mode = p.Mode
			} else if p := in.cfg.PoolOf(addrs[0]); p != nil {
				mode = p.Mode
			}
		}
		if mode == "" {
			mode = routing.ModeBGP
		}
		var local map[string]int
		if spec.Local {
			local = in.endpoints(svc.Namespace, svc.Name)
		}
		var poolCfg *config.Pool
		if in.cfg != nil {
			poolCfg = in.cfg.Pool(pool)
		}
		eligible := func(node string) bool {
			n := in.nodes[node]
			return NodeEligible(n) && (local == nil || local[node] > 0) && poolCfg.SelectsNode(n.Labels)
		}
		if mode == routing.ModeLayer2 {
			var cands []string
			for name := range in.nodes {
				if eligible(name) {
					cands = append(cands, name)
				}
			}
			slices.Sort(cands)
			cands = withoutDraining(cands, in.nodes)
			for _, a := range addrs {
				res.layer2[a] = mergeSorted(res.layer2[a], cands)
			}
		}
		if !eligible(in.node) {
			continue
		}
		// A cordoned node (kubectl drain) hands the Service to the nodes
		// that are not, when there are any; otherwise it keeps it, its
		// paths marked GRACEFUL_SHUTDOWN (RFC 8326) so routers that honour
		// the community prefer any other path.
		gshut := false
		if draining(in.nodes[in.node]) {
			if anyActive(in.nodes, eligible) {
				continue
			}
			gshut = mode == routing.ModeBGP
		}
		res.services[key] = announcement{addrs: addrs, mode: mode}
		for _, a := range addrs {
			x := byAddr[a]
			if x == nil {
				x = &acc{mode: mode, pool: pool}
				byAddr[a] = x
			}
			x.services = append(x.services, key)
			x.comms = append(x.comms, attrs.communities...)
			if gshut {
				x.comms = append(x.comms, "graceful-shutdown")
			}
			x.large = append(x.large, attrs.large...)
			x.local = x.local || spec.Local
			if spec.Local && poolCfg != nil && poolCfg.Advertise.WeightedByEndpoints {
				x.weight += uint32(local[in.node])
			}
		}
	}
	res.vips = make([]routing.VIP, 0, len(byAddr))
	for a, x := range byAddr {
		std, large, _ := ParseCommunities(strings.Join(x.comms, ","))
		if len(x.large) > 0 {
			_, large, _ = ParseCommunities("large:" + strings.Join(x.large, ",large:"))
		}
		attrs := routing.Attrs{
			Service:          strings.Join(x.services, ","),
			Mode:             x.mode,
			Pool:             x.pool,
			Communities:      std,
			LargeCommunities: large,
		}
		if in.cfg != nil {
			attrs = in.cfg.Pool(x.pool).Advertised(attrs, a, x.local)
		}
		if x.mode == routing.ModeBGP && attrs.AggregateBits == 0 {
			attrs.Weight = x.weight
		}
		res.vips = append(res.vips, routing.VIP{Addr: a, Attrs: attrs})
	}
	slices.SortFunc(res.vips, func(a, b routing.VIP) int { return a.Addr.Compare(b.Addr) })
	return res
}

// draining reports whether a node is cordoned (spec.unschedulable, as
// kubectl cordon and drain set it).
func draining(n *corev1.Node) bool { return n != nil && n.Spec.Unschedulable }

// HandoverTargets returns the InternalIP addresses of the node whose
// connections this node should carry on for it: the one node, other than
// this one, that is cordoned while still Ready (kubectl drain, before it
// powers off). The others took its VIPs over, and the segments of the
// connections it still carries reach them (dataplane.Handover sends them
// back to it). None when this node drains itself, when no node or more
// than one does (a segment could belong to either; guessing would reset
// it), or when the node has no InternalIP.
func HandoverTargets(nodes map[string]*corev1.Node, self string) []netip.Addr {
	if draining(nodes[self]) {
		return nil
	}
	var leaving *corev1.Node
	for name, n := range nodes {
		if name == self || !draining(n) || !ready(n) {
			continue
		}
		if leaving != nil {
			return nil
		}
		leaving = n
	}
	if leaving == nil {
		return nil
	}
	var out []netip.Addr
	for _, a := range leaving.Status.Addresses {
		if ip, err := netip.ParseAddr(a.Address); err == nil && a.Type == corev1.NodeInternalIP {
			out = append(out, ip)
		}
	}
	return out
}

// ready reports whether a node's Ready condition is True.
func ready(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// anyActive reports whether a node that is not draining is eligible.
func anyActive(nodes map[string]*corev1.Node, eligible func(string) bool) bool {
	for name, n := range nodes {
		if !draining(n) && eligible(name) {
			return true
		}
	}
	return false
}

// withoutDraining drops the draining nodes from cands unless that would
// leave none.
func withoutDraining(cands []string, nodes map[string]*corev1.Node) []string {
	var out []string
	for _, c := range cands {
		if !draining(nodes[c]) {
			out = append(out, c)
		}
	}
	if len(out) == 0 {
		return cands
	}
	return out
}

// attrErrors reports whether errs touch what the speaker needs (mode,
// communities); address errors only matter to the allocator.
func attrErrors(errs []*AnnotationError) bool {
	for _, e := range errs {
		if e.Key == AnnotationCommunities || slices.Contains(modeKeys, e.Key) {
			return true
		}
	}
	return false
}

func mergeSorted(a, b []string) []string {
	out := append(slices.Clone(a), b...)
	slices.Sort(out)
	return slices.Compact(out)
}

func (a announcement) String() string {
	var s []string
	for _, x := range a.addrs {
		s = append(s, x.String())
	}
	return fmt.Sprintf("%s (%s)", strings.Join(s, ","), a.mode)
}
