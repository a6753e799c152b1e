package nodestate

import (
	"fmt"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ConditionType is the Service condition the allocator sets.
const ConditionType = "vipspeaker.io/Announced"

// Reasons of the condition.
const (
	ReasonAnnounced         = "Announced"
	ReasonNoAddress         = "NoAddress"
	ReasonNoSpeaker         = "NoSpeaker"
	ReasonPoolNotAdvertised = "PoolNotAdvertised"
	ReasonNoBGPSession      = "NoBGPSession"
	ReasonNoEndpoints       = "NoEndpoints"
	ReasonNoNodeAnnounces   = "NoNodeAnnounces"
)

// Service is what the condition is computed from.
type Service struct {
	Addrs []string
	Mode  string // bgp or layer2
	Pool  string
	// Local is externalTrafficPolicy: Local.
	Local bool
	// ReadyEndpoints counts the Service's ready endpoints (asked only
	// when no node announces a Local Service).
	ReadyEndpoints func() (int, error)
}

// Holder is a node drawing traffic for an address.
type Holder struct {
	Node string `json:"node"`
	Role string `json:"role"`
}

// Index is the VIPSpeakerNode objects, by address.
type Index struct {
	objs   []Object // by node name
	byAddr map[string][]Holder
}

// NewIndex indexes the objects. When two nodes say they own one layer2
// address, the later report wins: the earlier is from an owner that lost
// the address without writing again (its agent was killed).
func NewIndex(objs []Object) *Index {
	ix := &Index{objs: slices.Clone(objs), byAddr: map[string][]Holder{}}
	slices.SortFunc(ix.objs, func(a, b Object) int { return strings.Compare(a.Node, b.Node) })
	owned := map[string]metav1.Time{} // address -> the latest owner's report
	for _, o := range ix.objs {
		for _, v := range o.Status.VIPs {
			if v.Role == RoleOwner {
				if t, ok := owned[v.Address]; ok && o.Status.Updated.Before(&t) {
					continue
				}
				owned[v.Address] = o.Status.Updated
			}
			ix.byAddr[v.Address] = append(ix.byAddr[v.Address], Holder{o.Node, v.Role})
		}
	}
	for a, t := range owned {
		ix.byAddr[a] = slices.DeleteFunc(ix.byAddr[a], func(h Holder) bool {
			if h.Role != RoleOwner {
				return false
			}
			i := slices.IndexFunc(ix.objs, func(o Object) bool { return o.Node == h.Node })
			return ix.objs[i].Status.Updated.Before(&t)
		})
	}
	return ix
}

// Holders are the nodes drawing traffic for addr, by node name.
func (ix *Index) Holders(addr string) []Holder { return ix.byAddr[addr] }

// Objects are the indexed objects, by node name.
func (ix *Index) Objects() []Object { return ix.objs }

// Condition is the vipspeaker.io/Announced condition of s (type, status,
// reason and message; the caller sets the times). ok is false when the
// objects cannot tell (a node lists only part of its VIPs).
func (ix *Index) Condition(s Service) (c metav1.Condition, ok bool) {
	c.Type = ConditionType
	if len(s.Addrs) == 0 {
		return ix.no(ReasonNoAddress, "no address allocated yet (see the Service's AllocationFailed Events)"), true
	}
	var held, missing []string
	for _, a := range s.Addrs {
		hs := ix.byAddr[a]
		if len(hs) == 0 {
			missing = append(missing, a)
			continue
		}
		held = append(held, a+" "+describe(hs))
	}
	if len(missing) == 0 {
		c.Status, c.Reason, c.Message = metav1.ConditionTrue, ReasonAnnounced, strings.Join(held, "; ")
		return c, true
	}
	for _, o := range ix.objs {
		if o.Status.VIPCount > len(o.Status.VIPs) {
			return c, false
		}
	}
	c = ix.why(s, strings.Join(missing, ", "))
	if len(held) > 0 {
		c.Message += "; " + strings.Join(held, "; ")
	}
	return c, true
}

func (ix *Index) no(reason, msg string) metav1.Condition {
	return metav1.Condition{Type: ConditionType, Status: metav1.ConditionFalse, Reason: reason, Message: msg}
}

// why says why no node draws traffic for the addresses missing.
func (ix *Index) why(s Service, missing string) metav1.Condition {
	if len(ix.objs) == 0 {
		return ix.no(ReasonNoSpeaker, missing+": no vipspeaker node has reported (no "+Kind+" object; is the DaemonSet running?)")
	}
	var may []Object // nodes that may announce the pool
	for _, o := range ix.objs {
		if s.Pool == "" || slices.Contains(o.Status.Pools, s.Pool) {
			may = append(may, o)
		}
	}
	if len(may) == 0 {
		return ix.no(ReasonPoolNotAdvertised, fmt.Sprintf("%s: no node may announce pool %s (of %d nodes reporting, none is Ready, not excluded and selected by the pool's node-selector)",
			missing, s.Pool, len(ix.objs)))
	}
	if s.Mode != "layer2" {
		var down []string
		for _, o := range may {
			if len(o.Status.Sessions) == 0 || slices.ContainsFunc(o.Status.Sessions, Session.Established) {
				down = nil
				break
			}
			down = append(down, o.Node)
		}
		if len(down) > 0 {
			return ix.no(ReasonNoBGPSession, missing+": no BGP session is established on "+names(down))
		}
	}
	if s.Local && s.ReadyEndpoints != nil {
		if n, err := s.ReadyEndpoints(); err == nil && n == 0 {
			return ix.no(ReasonNoEndpoints, missing+": externalTrafficPolicy is Local and the Service has no ready endpoint")
		}
	}
	msg := missing + ": no node announces it"
	if s.Mode == "layer2" {
		msg = missing + ": no node owns it (no healthy candidate elected)"
	}
	if s.Local {
		msg += "; externalTrafficPolicy is Local: only nodes with a ready endpoint may"
	}
	return ix.no(ReasonNoNodeAnnounces, msg)
}

// describe is "announced by n1, n2" or "owned by n1".
func describe(hs []Holder) string {
	var ann, own []string
	for _, h := range hs {
		if h.Role == RoleOwner {
			own = append(own, h.Node)
		} else {
			ann = append(ann, h.Node)
		}
	}
	var parts []string
	if len(own) > 0 {
		parts = append(parts, "owned by "+names(own))
	}
	if len(ann) > 0 {
		parts = append(parts, "announced by "+names(ann))
	}
	return strings.Join(parts, ", ")
}

// names lists up to eight nodes, then how many more.
func names(ns []string) string {
	if len(ns) <= 8 {
		return strings.Join(ns, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(ns[:8], ", "), len(ns)-8)
}
