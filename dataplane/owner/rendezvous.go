package owner

import (
	"crypto/sha256"
	"encoding/binary"
	"net/netip"
	"slices"
)

// VIP is one layer2 address and the nodes that may own it.
type VIP struct {
	Addr netip.Addr
	// Eligible lists the nodes allowed to own the VIP (Ready, not
	// excluded, with a local endpoint when the Service asks for it). nil
	// means every healthy node; an empty non-nil slice means none.
	Eligible []string
	// Interfaces are where the VIP is answered when this node owns it (the
	// pool's [pools.layer2] interfaces). Only Controller uses them.
	Interfaces []string
	// Checked: the VIP follows the nodes' health checks (the control-plane
	// VIP; see checked).
	Checked bool
}

// weight is the rendezvous score of node for addr.
func weight(node string, addr netip.Addr) uint64 {
	h := sha256.New()
	h.Write([]byte(node))
	h.Write([]byte{0})
	b, _ := addr.Unmap().MarshalBinary()
	h.Write(b)
	var sum [sha256.Size]byte
	return binary.BigEndian.Uint64(h.Sum(sum[:0]))
}

// Owner returns the node among candidates with the highest weight for
// addr (ties, which need a hash collision, go to the smaller name), and
// false when there is no candidate. The order of candidates does not
// matter.
func Owner(addr netip.Addr, candidates []string) (string, bool) {
	best, bestW, found := "", uint64(0), false
	for _, n := range candidates {
		if n == "" {
			continue
		}
		w := weight(n, addr)
		if !found || w > bestW || (w == bestW && n < best) {
			best, bestW, found = n, w, true
		}
	}
	return best, found
}

// Assign returns the owner of every VIP that has one: the winner among the
// VIP's eligible nodes that are healthy (Elect without link states).
func Assign(vips []VIP, healthy []string) map[netip.Addr]string {
	owners, _ := Elect(vips, healthy, nil, nil)
	return owners
}

// Owned returns, sorted, the VIPs that self owns.
func Owned(self string, vips []VIP, healthy []string) []netip.Addr {
	var out []netip.Addr
	for a, o := range Assign(vips, healthy) {
		if o == self {
			out = append(out, a)
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}
