package owner

import (
	"net/netip"
	"slices"
)

// Link is the state of one of a node's layer2 interfaces, as the node
// tells the other speakers in its membership metadata.
type Link struct {
	// Up: the interface is administratively up and its operational state
	// is up (or unknown, for drivers that do not report one). A node is a
	// candidate for a VIP only on an interface that is up.
	Up bool `json:"up"`
	// Prefixes are the subnets of the interface's addresses (masked) that
	// overlap a layer2 pool answered on it. They decide the subnet check:
	// see Elect.
	Prefixes []netip.Prefix `json:"p,omitempty"`
}

// Links are a node's layer2 interfaces by name.
type Links map[string]Link

// Equal reports whether l and o hold the same states.
func (l Links) Equal(o Links) bool {
	if len(l) != len(o) {
		return false
	}
	for name, a := range l {
		b, ok := o[name]
		if !ok || a.Up != b.Up || !slices.Equal(a.Prefixes, b.Prefixes) {
			return false
		}
	}
	return true
}

// covers reports whether one of l's prefixes contains a.
func (l Link) covers(a netip.Addr) bool {
	for _, p := range l.Prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// usable returns the interfaces of v on which a node with links can answer
// it: those that are up and, when subnet is set, whose prefixes contain the
// VIP. A node whose links are unknown (an agent that publishes none) can
// answer on all of v's interfaces.
func usable(v VIP, links Links, subnet bool) []string {
	if links == nil {
		return v.Interfaces
	}
	var out []string
	for _, name := range v.Interfaces {
		l, ok := links[name]
		if ok && l.Up && (!subnet || l.covers(v.Addr)) {
			out = append(out, name)
		}
	}
	return out
}

// Elect returns the owner of every VIP that has one and the interfaces it
// answers on. The candidates of a VIP are its eligible nodes that are
// healthy and whose links allow it:
//
//   - a node whose interfaces for the VIP are all down is no candidate;
//   - subnet check: when some candidate has an up interface of the VIP
//     whose subnet contains the VIP, only such nodes are candidates, and
//     the owner answers on those interfaces only. When none has (routed
//     VIPs announced on a segment of another subnet), every node with an
//     up interface is a candidate.
//
// A node missing from links (no state published) is a candidate on all
// the VIP's interfaces; so is every node for a VIP without interfaces.
// Of a Checked VIP's candidates, checks (each node's health check state)
// keeps those the rule of checked names.
func Elect(vips []VIP, healthy []string, links map[string]Links, checks map[string]Check) (map[netip.Addr]string, map[netip.Addr][]string) {
	up := make(map[string]bool, len(healthy))
	for _, n := range healthy {
		up[n] = true
	}
	owners := make(map[netip.Addr]string, len(vips))
	ifaces := make(map[netip.Addr][]string, len(vips))
	var cand, ok []string
	for _, v := range vips {
		v.Addr = v.Addr.Unmap()
		cand = cand[:0]
		if v.Eligible == nil {
			cand = append(cand, healthy...)
		} else {
			for _, n := range v.Eligible {
				if up[n] {
					cand = append(cand, n)
				}
			}
		}
		if len(v.Interfaces) == 0 || links == nil {
			if v.Checked {
				cand = checked(v.Addr, cand, checks)
			}
			if o, found := Owner(v.Addr, cand); found {
				owners[v.Addr], ifaces[v.Addr] = o, v.Interfaces
			}
			continue
		}
		subnet := false
		for _, n := range cand {
			if links[n] != nil && len(usable(v, links[n], true)) > 0 {
				subnet = true
				break
			}
		}
		ok = ok[:0]
		for _, n := range cand {
			if len(usable(v, links[n], subnet)) > 0 {
				ok = append(ok, n)
			}
		}
		if v.Checked {
			ok = checked(v.Addr, ok, checks)
		}
		if o, found := Owner(v.Addr, ok); found {
			owners[v.Addr], ifaces[v.Addr] = o, usable(v, links[o], subnet)
		}
	}
	return owners, ifaces
}
